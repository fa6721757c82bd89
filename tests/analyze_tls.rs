//! TLS metadata end to end: `tapir replay` on real captures, checked against tshark.
//!
//! Truth comes from `tests/data/tls/tshark_tls.py`, run at test time: tshark parses the hellos
//! (SNI, ALPN, versions, cipher), the JA4/JA4S are computed in Python from tshark's fields
//! following FoxIO's JA4.md (this tshark, 4.0, has no `tls.handshake.ja4`), and the server
//! certificate facts are `openssl x509`'s reading of the DER bytes tshark reassembled.
//!
//! Captures: two made on loopback by `openssl s_server`/`s_client` in a network namespace
//! (`tests/data/tls/make.sh`; TLS 1.2 and TLS 1.3, SNI/ALPN/certificate as configured there),
//! and the public captures of `../shared/pcaps` that carry TLS.
//!
//! Needs: tshark, python3, openssl.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shared(p: &str) -> PathBuf {
    root().join("../shared/pcaps").join(p)
}

fn local(p: &str) -> PathBuf {
    root().join("tests/data/tls").join(p)
}

const WARRANT: &str = "[[warrant]]\nliid = \"T\"\nstart = \"1970-01-01T00:00:00Z\"\nend = \"2200-01-01T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [\"cidr:0.0.0.0/0\", \"cidr:::/0\"]\n";

struct Run {
    /// TLS events with the flow of their session: (orig, resp, event).
    tls: Vec<(String, String, Value)>,
    /// Flows (orig, resp) of the content objects.
    objects: Vec<(String, String)>,
}

fn tapir(capture: &Path) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.toml");
    std::fs::write(&w, WARRANT).unwrap();
    let out = dir.path().join("case");
    let o = Command::new(env!("CARGO_BIN_EXE_tapir"))
        .args(["replay", capture.to_str().unwrap(), "--warrants", w.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .expect("run tapir");
    assert!(o.status.success(), "{}: {}", capture.display(), String::from_utf8_lossy(&o.stderr));
    let iri = std::fs::read_to_string(out.join("T/iri.jsonl")).unwrap_or_default();
    let mut flows: HashMap<u64, (String, String)> = HashMap::new();
    let mut events = Vec::new();
    for line in iri.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        match v["event"].as_str() {
            Some("session-begin") => {
                let f = &v["flow"];
                flows.insert(
                    v["cin"].as_u64().unwrap(),
                    (f["orig"].as_str().unwrap().to_string(), f["resp"].as_str().unwrap().to_string()),
                );
            }
            Some("tls") => events.push(v),
            _ => {}
        }
    }
    let tls = events
        .into_iter()
        .map(|e| {
            let (o, r) =
                flows.get(&e["cin"].as_u64().unwrap()).cloned().expect("session-begin for the TLS event's CIN");
            (o, r, e)
        })
        .collect();
    let objects = std::fs::read_to_string(out.join("T/objects.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["flow"]["orig"].as_str().unwrap().to_string(), v["flow"]["resp"].as_str().unwrap().to_string())
        })
        .collect();
    Run { tls, objects }
}

fn tshark_truth(capture: &Path) -> Vec<Value> {
    let o = Command::new("python3")
        .arg(local("tshark_tls.py"))
        .arg(capture)
        .output()
        .expect("python3 (tshark_tls.py needs python3, tshark and openssl)");
    assert!(o.status.success(), "tshark_tls.py {}: {}", capture.display(), String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice::<Value>(&o.stdout).unwrap().as_array().unwrap().clone()
}

fn opt_str(v: &Value) -> Option<&str> {
    v.as_str()
}

/// Compares every TLS-from-the-first-byte session tshark sees with tapir's event for the same
/// flow; returns tapir's events by client address for extra checks.
fn compare(capture: &Path) -> HashMap<String, Value> {
    let run = tapir(capture);
    let truth = tshark_truth(capture);
    let want: Vec<&Value> = truth.iter().filter(|s| s["tls_from_start"] == true).collect();
    let name = capture.display();
    assert_eq!(
        run.tls.len(),
        want.len(),
        "{name}: one TLS event per session that is TLS from its first byte; tapir {:?}, tshark {:?}",
        run.tls.iter().map(|t| &t.0).collect::<Vec<_>>(),
        want.iter().map(|s| &s["client"]).collect::<Vec<_>>()
    );
    let mut by_client = HashMap::new();
    for s in want {
        let client = s["client"].as_str().unwrap();
        let (_, resp, e) =
            run.tls.iter().find(|(o, _, _)| o == client).unwrap_or_else(|| panic!("{name}: no TLS event for {client}"));
        assert_eq!(resp, s["server"].as_str().unwrap(), "{name} {client}");
        assert_eq!(opt_str(&e["sni"]), opt_str(&s["sni"]), "{name} {client}: SNI");
        assert_eq!(
            e.get("alpn_offered").cloned().unwrap_or(Value::Array(vec![])),
            s["alpn_offered"],
            "{name} {client}"
        );
        assert_eq!(e["ja4"], s["ja4"], "{name} {client}: JA4");
        if s.get("version").is_some() {
            assert_eq!(e["version"], s["version"], "{name} {client}: version");
            assert_eq!(e["cipher_suite_id"], s["cipher_suite_id"], "{name} {client}: cipher");
            assert_eq!(opt_str(&e["alpn_selected"]), opt_str(&s["alpn_selected"]), "{name} {client}: ALPN selected");
            assert_eq!(e["ja4s"], s["ja4s"], "{name} {client}: JA4S");
        }
        if s["version"] == "TLS 1.3" {
            assert_eq!(e["certificate_status"], "not visible", "{name} {client}");
        }
        if let Some(c) = s.get("cert") {
            assert_eq!(e["certificate_status"], "visible", "{name} {client}");
            let t = &e["certificate"];
            assert_eq!(t["sha256"], c["sha256"], "{name} {client}: fingerprint");
            let serial = t["serial"].as_str().unwrap().replace(':', "");
            assert_eq!(serial.trim_start_matches('0'), c["serial"].as_str().unwrap().trim_start_matches('0'), "{name}");
            assert_eq!(t["not_before"], c["not_before"], "{name} {client}");
            assert_eq!(t["not_after"], c["not_after"], "{name} {client}");
            let dns: Vec<String> = t["sans"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()?.strip_prefix("DNS:").map(str::to_string)).collect())
                .unwrap_or_default();
            let want_dns: Vec<String> =
                c["dns_sans"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
            assert_eq!(dns, want_dns, "{name} {client}: DNS SANs");
            for (field, key) in [("subject", "subject_cn"), ("issuer", "issuer_cn")] {
                let dn = t[field].as_str().unwrap();
                for cn in c[key].as_array().unwrap() {
                    assert!(
                        dn.contains(&format!("CN={}", cn.as_str().unwrap())),
                        "{name} {client}: {field} {dn} lacks {cn}"
                    );
                }
            }
        }
        by_client.insert(client.to_string(), e.clone());
    }
    for (o, r, _) in &run.tls {
        assert!(
            !run.objects.iter().any(|(oo, rr)| oo == o && rr == r),
            "{name}: TLS sessions are metadata only (bytes stay in the CC pcap), yet {o} -> {r} has an object"
        );
    }
    by_client
}

/// Own TLS 1.2 capture: everything `make.sh` configured is in the event.
#[test]
fn loopback_tls12_matches_tshark_and_configuration() {
    let evs = compare(&local("tls1_2-loopback.pcap"));
    assert_eq!(evs.len(), 1);
    let e = evs.values().next().unwrap();
    assert_eq!(e["sni"], "files.example.test");
    assert_eq!(e["alpn_offered"], serde_json::json!(["h2", "http/1.1"]));
    assert_eq!(e["alpn_selected"], "h2");
    assert_eq!(e["version"], "TLS 1.2");
    assert_eq!(e["complete"], true);
    let c = &e["certificate"];
    assert_eq!(c["subject"], "C=DE, O=Tapir Test, CN=files.example.test");
    assert_eq!(c["serial"], "1a:2b:3c:4d:5e:6f");
    assert_eq!(c["sans"], serde_json::json!(["DNS:files.example.test", "DNS:www.example.test", "IP:192.0.2.7"]));
}

/// Own TLS 1.3 capture: SNI and offered ALPN in clear; the selected ALPN travels in the
/// encrypted EncryptedExtensions and the certificate is encrypted: "not visible".
#[test]
fn loopback_tls13_matches_tshark_and_configuration() {
    let evs = compare(&local("tls1_3-loopback.pcap"));
    assert_eq!(evs.len(), 1);
    let e = evs.values().next().unwrap();
    assert_eq!(e["sni"], "files.example.test");
    assert_eq!(e["alpn_offered"], serde_json::json!(["h2", "http/1.1"]));
    assert_eq!(e["version"], "TLS 1.3");
    assert_eq!(e["certificate_status"], "not visible");
    assert!(e.get("certificate").is_none());
    assert!(e.get("alpn_selected").is_none());
    assert_eq!(e["complete"], true);
}

/// Public captures with TLS over plain TCP, IPv6, 6in4, VXLAN, Geneve and PPPoE-over-QinQ.
#[test]
fn public_captures_match_tshark() {
    for p in [
        "zeek/testing/btest/Traces/pppoe-over-qinq.pcap",
        "zeek/testing/btest/Traces/smtp.pcap",
        "zeek/testing/btest/Traces/tunnels/geneve-47101.pcap",
        "ndpi/tests/cfgs/default/pcap/6in4tunnel.pcap",
        "ndpi/tests/cfgs/default/pcap/http_ipv6.pcap",
        "ndpi/tests/cfgs/default/pcap/vxlan.pcap",
        "ndpi/tests/cfgs/default/pcap/youtubeupload.pcap",
    ] {
        let evs = compare(&shared(p));
        assert!(!evs.is_empty(), "{p}: has TLS sessions");
        for e in evs.values() {
            assert_eq!(e["complete"], true, "{p}: {e}");
        }
    }
}

/// A client that sends a ClientHello to a server speaking plain SMTP on 465: the event keeps
/// the client's side and says the server's bytes are not TLS.
#[test]
fn smtps_client_hello_to_plain_smtp_server() {
    let evs = compare(&shared("ndpi/tests/cfgs/default/pcap/smtps.pcapng"));
    assert_eq!(evs.len(), 1);
    let e = evs.values().next().unwrap();
    assert_eq!(e["complete"], false);
    assert_eq!(e["certificate_status"], "not seen");
    assert!(e["anomalies"][0].as_str().unwrap().contains("server bytes are not a TLS record"), "{e}");
}

/// TLS that starts mid-connection: SMTP STARTTLS and FTP AUTH TLS hand the rest of their
/// connection to the TLS analyzer (`tls_after_upgrade`), whose event must agree with tshark's
/// view of that session and say how it began. A TLS tunnel after HTTP CONNECT (bug-2430) is not
/// handed over yet: the HTTP analyzer stores it as a raw stream, so no TLS event.
#[test]
fn mid_connection_tls_after_starttls_and_auth_tls() {
    for (p, how) in [
        ("zeek/testing/btest/Traces/tls/smtp-starttls.pcap", "starttls"),
        ("zeek/testing/btest/Traces/ftp/ftp-auth-tls.pcap", "auth-tls"),
    ] {
        let truth = tshark_truth(&shared(p));
        let mid: Vec<&Value> = truth.iter().filter(|s| s["tls_from_start"] == false).collect();
        assert_eq!(mid.len(), 1, "{p}: tshark sees one mid-connection TLS session");
        let t = mid[0];
        let run = tapir(&shared(p));
        assert_eq!(run.tls.len(), 1, "{p}: {:?}", run.tls);
        let (orig, _, e) = &run.tls[0];
        assert_eq!(orig.as_str(), t["client"].as_str().unwrap(), "{p}");
        assert_eq!(e["upgraded_from"], how, "{p}");
        for (ours, theirs) in
            [("version", "version"), ("cipher_suite_id", "cipher_suite_id"), ("ja4", "ja4"), ("ja4s", "ja4s")]
        {
            if !t[theirs].is_null() {
                assert_eq!(e[ours], t[theirs], "{p}: {ours}");
            }
        }
        if let Some(sha) = t["cert"]["sha256"].as_str() {
            assert_eq!(e["certificate"]["sha256"], sha, "{p}: certificate");
        }
    }
    let p = "suricata-verify/tests/bug-2430/backwards.pcap";
    let truth = tshark_truth(&shared(p));
    assert!(truth.iter().any(|s| s["tls_from_start"] == false), "{p}: tshark sees TLS after CONNECT");
    assert!(tapir(&shared(p)).tls.is_empty(), "{p}: CONNECT tunnels are not handed to TLS yet");
}
