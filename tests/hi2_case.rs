//! What reaches the LEA on HI2 is what the case holds, read by independent decoders.
//!
//! One replay of the use cases' protocols (FTP, HTTP, SMTP, TLS and an SSH login, from real
//! clients and servers: `pcaps/app/`, `pcaps/ftp-upload.pcap`) delivers to two LEAs: one is the
//! shared `lemf_check.py` (asn1tools with the plain ETSI subset) with every PDU also decoded by
//! asn1tools against the subset merged with tapir's additions (`tools/tapir_asn1.py`); the other
//! is `tapir lemf`. Checked:
//! - every IRI record of the case is one PDU on HI2: IPIRI carrying the record, EmailIRI for a
//!   mail or an AUTH, HI1 for a warrant notice; per LIID, as many IRI on HI2 as in the case;
//! - per-flow IRI names the other party, the ports and the protocol, seen from the target;
//! - the session counters are tshark's: packets, `ip.len` (IPv6: `ipv6.plen` + 40) and
//!   `tcp.len` per direction, for every TCP flow of the captures;
//! - integrity checks verify with both LEMFs, signatures with the key `tapir keygen` wrote.
//!
//! Needs python3 with asn1tools and cryptography, and tshark.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

const CAPTURES: [&str; 6] = [
    "pcaps/app/ftp.pcap",
    "pcaps/app/http.pcap",
    "pcaps/app/smtp.pcap",
    "pcaps/app/tls.pcap",
    "pcaps/app/ssh.pcap",
    "pcaps/ftp-upload.pcap",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The record as the case writes it, without the case's own numbering.
fn without_seq(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("seq");
    }
    v
}

/// (client, server) as "ip:port" strings, for a flow of the case.
fn flow_key(flow: &Value) -> (String, String) {
    (flow["orig"].as_str().unwrap().to_string(), flow["resp"].as_str().unwrap().to_string())
}

/// Per direction (from the initiator, from the responder): packets, IP bytes, TCP payload bytes.
type FlowCounts = [[u64; 3]; 2];

/// tshark's view of every TCP flow in `pcap`: (initiator, responder) -> its counts.
fn tshark_flows(pcap: &Path) -> BTreeMap<(String, String), FlowCounts> {
    let rows = tshark(
        pcap,
        Some("tcp"),
        &[
            "tcp.stream",
            "ip.src",
            "ipv6.src",
            "tcp.srcport",
            "ip.dst",
            "ipv6.dst",
            "tcp.dstport",
            "ip.len",
            "ipv6.plen",
            "tcp.len",
        ],
    );
    let mut by_stream: BTreeMap<u64, ((String, String), FlowCounts)> = BTreeMap::new();
    for r in rows {
        let f: Vec<&str> = r.split('|').collect();
        let (src_ip, dst_ip) = if f[1].is_empty() { (f[2], f[5]) } else { (f[1], f[4]) };
        let sock = |ip: &str, port: &str| {
            if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            }
        };
        let (src, dst) = (sock(src_ip, f[3]), sock(dst_ip, f[6]));
        let ip_len: u64 = if f[7].is_empty() { 40 + f[8].parse::<u64>().unwrap() } else { f[7].parse().unwrap() };
        let tcp_len: u64 = f[9].parse().unwrap();
        let e = by_stream.entry(f[0].parse().unwrap()).or_insert_with(|| ((src.clone(), dst.clone()), [[0; 3]; 2]));
        let d = usize::from(src != e.0 .0);
        e.1[d][0] += 1;
        e.1[d][1] += ip_len;
        e.1[d][2] += tcp_len;
    }
    by_stream.into_values().collect()
}

fn warrants(dir: &Path, py: (u16, u16), tapir_lemf: u16, key: &Path) -> PathBuf {
    let lea = |name: &str, hi2: u16, hi3: u16| {
        format!(
            "[[lea]]\nname = \"{name}\"\nhi2 = \"127.0.0.1:{hi2}\"\nhi3 = \"127.0.0.1:{hi3}\"\noperator_id = \"OPER-O\"\n\
             network_element_id = \"tapir-1\"\ncountry = \"NZ\"\nkeepalive = 2\n\
             integrity = {{ hash_every = 16, sign_every = 2, key = \"{}\" }}\n\n",
            key.display()
        )
    };
    let warrant = |liid: &str, lea: &str| {
        format!(
            "[[warrant]]\nliid = \"{liid}\"\nstart = \"2026-11-01T00:00:00Z\"\nend = \"2027-01-01T00:00:00Z\"\n\
             scope = \"iri+cc\"\ntargets = [\"ipv4:198.51.100.7\", \"ipv6:2001:db8::7\"]\nlea = \"{lea}\"\n\n"
        )
    };
    let text = warrant("LIID-PY", "py")
        + &warrant("LIID-TAPIR", "tapir")
        + &lea("py", py.0, py.1)
        + &lea("tapir", tapir_lemf, tapir_lemf);
    let p = dir.join("warrants.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn every_iri_record_of_the_case_reaches_hi2_as_asn1tools_reads_it() {
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("lea.key");
    let o = Command::new(TAPIR).arg("keygen").arg(&key).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (py_hi2, py_hi3, tl) = (free_port(), free_port(), free_port());
    let py = PyLemf::start(py_hi2, py_hi3, &d.path().join("report.json"));
    let lemf_out = d.path().join("lemf");
    // The LEMF checks signatures with KEY.pub as `tapir keygen KEY` wrote it.
    let mut lemf_cmd = Command::new(TAPIR);
    lemf_cmd.args(["lemf", "--listen", &format!("127.0.0.1:{tl}"), "--verify-key"]);
    lemf_cmd.arg(d.path().join("lea.key.pub")).arg("--out").arg(&lemf_out);
    let mut lemf = lemf_cmd.stdout(std::process::Stdio::null()).spawn().unwrap();
    wait_listening(tl);

    let w = warrants(d.path(), (py_hi2, py_hi3), tl, &key);
    let case = d.path().join("case");
    let mut cmd = Command::new(TAPIR);
    cmd.arg("replay");
    for c in CAPTURES {
        cmd.arg(root().join(c));
    }
    let o = cmd
        .arg("--warrants")
        .arg(&w)
        .arg("--out")
        .arg(&case)
        .arg("--deliver")
        .arg(d.path().join("spool"))
        .args(["--deliver-wait", "30", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let (report, pdus) = py.finish();
    let _ = Command::new("kill").args(["-TERM", &lemf.id().to_string()]).status();
    assert!(lemf.wait().unwrap().success());

    // ---- the case: every IRI record, as written ----
    let case_iri: Vec<Value> = json_lines(&case.join("LIID-PY/iri.jsonl")).into_iter().map(without_seq).collect();
    let kinds = |v: &[Value]| {
        let mut k: BTreeMap<String, usize> = BTreeMap::new();
        for r in v {
            *k.entry(r["event"].as_str().unwrap().to_string()).or_default() += 1;
        }
        k
    };
    let case_kinds = kinds(&case_iri);
    for k in ["session-begin", "session-end", "ftp", "http", "smtp", "tls", "object", "warrant"] {
        assert!(case_kinds.contains_key(k), "the case has no {k} record: {case_kinds:?}");
    }

    // ---- HI2 as asn1tools reads it with tapir's additions ----
    let errors: Vec<&Value> = pdus.iter().filter(|p| p.get("error").is_some()).collect();
    assert!(errors.is_empty(), "PDUs the merged schema does not decode: {errors:?}");
    let mine = |p: &&Value| p["pdu"]["pSHeader"]["lawfulInterceptionIdentifier"] == hex::encode("LIID-PY");
    let hi2: Vec<&Value> = pdus.iter().filter(|p| p["channel"] == "hi2").filter(mine).collect();
    let (mut ipiri, mut email, mut hi1) = (Vec::new(), Vec::new(), Vec::new());
    for p in &hi2 {
        let payload = &p["pdu"]["payload"];
        if let Some(seq) = payload.get("iRIPayloadSequence") {
            assert_eq!(seq.as_array().unwrap().len(), 1, "one record per PDU");
            let c = &seq[0]["iRIContents"];
            if let Some(ip) = c.get("iPIRI") {
                ipiri.push(&ip["iPIRIContents"]);
            } else if let Some(e) = c.get("emailIRI") {
                email.push(e);
            } else {
                panic!("IRI that is neither IPIRI nor EmailIRI: {c}");
            }
        } else if let Some(h) = payload.get("hI1-Operation") {
            hi1.push(h);
        }
    }
    // Every IPIRI carries the record it stands for; together with the EmailIRI (mail, AUTH)
    // and the HI1 notifications (warrant), that is the case's iri.jsonl, record for record.
    let mut from_hi2: Vec<Value> = Vec::new();
    for c in &ipiri {
        let t = &c["nationalIPIRIParameters"];
        assert_eq!(
            (t["vendor"].as_str(), t["version"].as_u64(), t["countryCode"].as_str()),
            (Some("tapir"), Some(1), Some("NZ"))
        );
        let rec = t["tapir"]["caseRecord"].clone();
        assert_eq!(t["tapir"]["recordType"], rec["event"]);
        from_hi2.push(rec);
    }
    let smtp_mail_auth: Vec<&Value> =
        case_iri.iter().filter(|r| r["event"] == "smtp" && (r["what"] == "mail" || r["what"] == "auth")).collect();
    let warrant_records = case_kinds["warrant"];
    let mut want: Vec<String> = case_iri
        .iter()
        .filter(|r| r["event"] != "warrant" && !(r["event"] == "smtp" && (r["what"] == "mail" || r["what"] == "auth")))
        .map(|r| r.to_string())
        .collect();
    let mut got: Vec<String> = from_hi2.iter().map(|r| r.to_string()).collect();
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len(), "IPIRI on HI2 vs records of the case");
    assert!(got == want, "the records carried on HI2 differ from the case's");
    assert_eq!(email.len(), smtp_mail_auth.len(), "one EmailIRI per mail and AUTH");
    assert_eq!(hi1.len(), warrant_records);
    assert_eq!(ipiri.len() + email.len() + hi1.len(), case_iri.len(), "every record of the case, once");
    // EmailIRI in the envelope's words: the senders and recipients of the case's mails.
    let mut senders: Vec<&str> = email.iter().filter_map(|e| e["e-mail-Sender"].as_str()).collect();
    let mut case_senders: Vec<&str> = smtp_mail_auth.iter().filter_map(|r| r["mail_from"].as_str()).collect();
    senders.sort();
    case_senders.sort();
    assert_eq!(senders, case_senders);

    // The plain ETSI subset (lemf_check's own decoding) reads the same IRI: tapir's parameters
    // sit after an extension marker it skips.
    assert_eq!(report["undecodable"], 0, "{report}");
    assert_eq!(report["iri_records"]["LIID-PY"].as_u64(), Some((ipiri.len() + email.len()) as u64), "{report}");
    let ok = report["integrity_hash_matches_concatenation"]["ok"].as_u64().unwrap();
    assert!(ok > 10, "{report}");
    assert_eq!(report["integrity_hash_matches_concatenation"]["differs"], 0, "{report}");

    // tapir lemf files as many IRI lines for its LIID as the case holds, signatures verified
    // with the keygen's KEY.pub.
    let lemf_iri = json_lines(&lemf_out.join("LIID-TAPIR/iri.jsonl"));
    let case_tapir = json_lines(&case.join("LIID-TAPIR/iri.jsonl"));
    assert_eq!(lemf_iri.len(), case_tapir.len());
    assert_eq!(case_tapir.len(), case_iri.len(), "the two LIIDs see the same");
    let lemf_report: Value =
        serde_json::from_str(&std::fs::read_to_string(lemf_out.join("report.json")).unwrap()).unwrap();
    let integrity = &lemf_report["integrity"];
    assert!(integrity["signature_passed"].as_u64().unwrap() > 0, "{integrity}");
    assert_eq!((integrity["hash_failed"].as_u64(), integrity["signature_failed"].as_u64()), (Some(0), Some(0)));
    assert_eq!(integrity["signature_unverified"], 0);

    // tapir's own decoder (`tapir decode`, `tapir lemf`) reads tapir's parameters as asn1tools
    // does.
    let mut compared = 0;
    for p in &hi2 {
        let asn1 = &p["pdu"]["payload"]["iRIPayloadSequence"][0]["iRIContents"]["iPIRI"]["iPIRIContents"];
        let theirs = &asn1["nationalIPIRIParameters"]["tapir"];
        if !theirs.is_object() {
            continue;
        }
        let bytes = hex::decode(p["hex"].as_str().unwrap()).unwrap();
        let ours = tapir::deliver::etsi::decode_stream(&bytes).next().unwrap().unwrap();
        let ours = &ours["payload"]["iRIPayloadSequence"][0]["iRIContents"]["iPIRI"]["iPIRIContents"]
            ["nationalIPIRIParameters"]["tapir"];
        assert_eq!(ours["recordType"], theirs["recordType"]);
        assert_eq!(ours["caseRecord"], theirs["caseRecord"]);
        for k in ["protocol", "targetPort", "otherPort", "targetOriginated"] {
            assert_eq!(ours["flow"][k], theirs["flow"][k], "{k}");
        }
        assert_eq!(ours["counters"], theirs["counters"]);
        let names = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        assert_eq!(names(&ours["event"]), names(&theirs["event"]));
        compared += 1;
    }
    assert_eq!(compared, ipiri.len());

    // ---- per-flow IRI: the other party, the ports, the protocol, seen from the target ----
    let target = |a: &str| a.starts_with("198.51.100.7:") || a.starts_with("[2001:db8::7]:");
    let mut begins = 0;
    for c in &ipiri {
        let t = &c["nationalIPIRIParameters"]["tapir"];
        let rec = &t["caseRecord"];
        if rec["event"] != "session-begin" {
            continue;
        }
        begins += 1;
        let (orig, resp) = flow_key(&rec["flow"]);
        let (mine, other) = if target(&orig) { (&orig, &resp) } else { (&resp, &orig) };
        let f = &t["flow"];
        assert_eq!(f["protocol"], 6, "{f}");
        assert_eq!(f["targetOriginated"], Value::Bool(target(&orig)));
        assert_eq!(f["targetPort"].as_u64().unwrap().to_string(), mine.rsplit(':').next().unwrap());
        assert_eq!(f["otherPort"].as_u64().unwrap().to_string(), other.rsplit(':').next().unwrap());
        let other_ip = other.rsplit_once(':').unwrap().0.trim_matches(|c| c == '[' || c == ']');
        let bin = f["otherAddress"]["iP-value"]["iPBinaryAddress"].as_str().unwrap();
        let parsed: std::net::IpAddr = other_ip.parse().unwrap();
        let want_bin = match parsed {
            std::net::IpAddr::V4(a) => hex::encode(a.octets()),
            std::net::IpAddr::V6(a) => hex::encode(a.octets()),
        };
        assert_eq!(bin, want_bin);
        assert!(c["targetIPAddress"].is_object(), "{c}");
    }
    assert!(begins >= 30, "{begins} session begins");

    // The use case's uploads on HI2: user, command, path, reply, size and SHA-256 of each
    // STOR of ftp-upload.pcap, as sha256sum computed them when the fixture was made.
    let expect: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("pcaps/ftp-upload.expect.json")).unwrap()).unwrap();
    for f in expect["files"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let ftp = ipiri
            .iter()
            .map(|c| &c["nationalIPIRIParameters"]["tapir"]["event"]["ftp"])
            .find(|e| e["action"] == "transfer" && e["path"].as_str().is_some_and(|p| p.ends_with(name)))
            .unwrap_or_else(|| panic!("no FTP transfer IRI for {name}"));
        assert_eq!(ftp["user"], "joe");
        assert_eq!(ftp["command"], "STOR");
        assert_eq!(ftp["replyCode"], 226);
        assert_eq!(ftp["transfer"]["sha256"], f["sha256"]);
        assert_eq!(ftp["transfer"]["size"], f["size"]);
    }

    // ---- HI3: every packet is from or to the target, the last ACK after a close included ----
    let mut directions: BTreeMap<String, usize> = BTreeMap::new();
    for p in pdus.iter().filter(|p| p["channel"] == "hi3").filter(mine) {
        for cc in p["pdu"]["payload"]["cCPayloadSequence"].as_array().into_iter().flatten() {
            *directions.entry(cc["payloadDirection"].as_str().unwrap_or("absent").to_string()).or_default() += 1;
        }
    }
    let frames: usize = CAPTURES.iter().map(|c| frame_count(&root().join(c))).sum();
    assert_eq!(directions.keys().collect::<Vec<_>>(), ["fromTarget", "toTarget"], "{directions:?}");
    assert!(directions.values().sum::<usize>() >= frames, "{directions:?} vs {frames} frames");

    // ---- counters: tshark's, per TCP flow and direction, every packet included ----
    let mut flows = BTreeMap::new();
    for c in CAPTURES {
        flows.extend(tshark_flows(&root().join(c)));
    }
    let ends: Vec<&Value> = case_iri.iter().filter(|r| r["event"] == "session-end").collect();
    assert_eq!(ends.len(), flows.len(), "one session per TCP flow tshark sees");
    for e in ends {
        let key = flow_key(&e["flow"]);
        let want = flows.get(&key).unwrap_or_else(|| panic!("tshark has no flow {key:?}"));
        let c = &e["counters"];
        for d in 0..2 {
            let got =
                [c["packets"][d].as_u64().unwrap(), c["bytes"][d].as_u64().unwrap(), c["payload"][d].as_u64().unwrap()];
            assert_eq!(got, want[d], "{key:?} direction {d}: packets, ip bytes, tcp.len");
        }
    }
    // The same numbers on HI2, seen from the target: octetsTransmitted is what it sent.
    for c in &ipiri {
        let t = &c["nationalIPIRIParameters"]["tapir"];
        if t["recordType"] != "session-end" {
            continue;
        }
        let rec = &t["caseRecord"];
        let from_orig = t["flow"]["targetOriginated"].as_bool().unwrap();
        let (tx, rx) = if from_orig { (0, 1) } else { (1, 0) };
        assert_eq!(c["octetsTransmitted"], rec["counters"]["bytes"][tx]);
        assert_eq!(c["octetsReceived"], rec["counters"]["bytes"][rx]);
        assert_eq!(t["counters"]["packetsFromTarget"], rec["counters"]["packets"][tx]);
        assert_eq!(t["counters"]["payloadOctetsToTarget"], rec["counters"]["payload"][rx]);
    }
}
