//! SMTP over the ETSI handover: pcaps/app/smtp.pcap through the library pipeline into the
//! delivery and the in-process LEMF. Every mail the capture shows in clear (per
//! pcaps/app/smtp.expect.json, whose sha256 are sha256sum of the .eml files the client sent)
//! must arrive as an EmailCC object with that sha256, with one EmailIRI send event naming its
//! envelope sender and recipients; openssl asn1parse must walk every EmailPDU tapir emits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tapir::capture::{CaptureFile, Merge};
use tapir::decode::DecodeConfig;
use tapir::deliver::handover::{parse_leas, Channel, Delivery, Mdf};
use tapir::flow::FlowConfig;
use tapir::lemf::{Lemf, LemfConfig};
use tapir::pipeline::Pipeline;
use tapir::record::{Record, RecordSink};
use tapir::select::parse_warrants;

const PCAP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/app/smtp.pcap");
const EXPECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/app/smtp.expect.json");
const WARRANTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/app/warrants.toml");
const LIID: &str = "LIID-JOE-0001";

/// Hands every record to the delivery and to a second MDF of the same configuration whose PDUs
/// are kept, so that the exact bytes on the wire can be given to openssl.
struct Tee {
    d: Delivery,
    mdf: Mdf,
    /// (channel, from an SMTP IRI or a mail object, PDU)
    pdus: Vec<(Channel, bool, Vec<u8>)>,
}

impl RecordSink for Tee {
    fn record(&mut self, rec: Record<'_>) {
        let email = match &rec {
            Record::Iri(r) => r.event.app::<tapir::analyze::smtp::SmtpEvent>().is_some(),
            Record::Cc(_) => false,
            _ => true,
        };
        let pdus = &mut self.pdus;
        self.mdf
            .record(&rec, &mut |_, ch, pdu| {
                pdus.push((ch, email, pdu.to_vec()));
                Ok::<(), ()>(())
            })
            .unwrap();
        self.d.record(rec);
    }
}

/// Every JSON object under `v` that has `key`.
fn with_key<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            if m.contains_key(key) {
                out.push(v);
            }
            m.values().for_each(|x| with_key(x, key, out));
        }
        Value::Array(a) => a.iter().for_each(|x| with_key(x, key, out)),
        _ => {}
    }
}

fn strip(s: &str) -> &str {
    s.trim().trim_start_matches('<').trim_end_matches('>')
}

#[test]
fn smtp_capture_delivered_as_email_iri_and_email_cc() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("lemf");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let lemf = Lemf::start(LemfConfig::new(any, any, &out)).unwrap();
    let text = format!(
        "{}\n[[lea]]\nname = \"lemf\"\nhi2 = \"{}\"\nhi3 = \"{}\"\noperator_id = \"tapir-test\"\n",
        std::fs::read_to_string(WARRANTS).unwrap(),
        lemf.hi2_addr(),
        lemf.hi3_addr()
    );
    let w = parse_warrants(&text, "w.toml").unwrap();
    let leas = parse_leas(&w.lea, "w.toml").unwrap();
    let route = w.warrants.iter().map(|w| (w.liid.clone(), 0)).collect::<HashMap<_, _>>();
    let mdf = Mdf::new(&leas, vec![None], route, false).unwrap();
    let d = Delivery::start(leas, &w.warrants, &tmp.path().join("spool")).unwrap();
    let mut tee = Tee { d, mdf, pdus: Vec::new() };
    let mut p = Pipeline::new(w.warrants, Vec::new(), DecodeConfig::default(), FlowConfig::default());
    let files = vec![CaptureFile::open(Path::new(PCAP)).unwrap()];
    for (_, item) in Merge::of(&files) {
        p.frame(&item.unwrap().frame(), &mut tee);
    }
    p.finish(&mut tee);
    let rep = tee.d.finish(Duration::from_secs(60));
    assert!(rep.complete(), "{rep:#?}");
    assert!(rep.alarms.is_empty(), "{rep:#?}");

    let expect: Value = serde_json::from_str(&std::fs::read_to_string(EXPECT).unwrap()).unwrap();
    let visible: Vec<&Value> = expect["files"].as_array().unwrap().iter().filter(|f| f["visible"] == true).collect();
    assert_eq!(visible.len(), 8);
    let dir = out.join(LIID);
    // The LEMF writes what it has processed; wait for every expected object before stopping it.
    let t0 = Instant::now();
    while visible.iter().any(|f| !dir.join("objects").join(f["sha256"].as_str().unwrap()).exists())
        && t0.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let report = lemf.stop().unwrap();
    let report = serde_json::to_value(&report).unwrap();

    // CC: each visible mail, byte for byte (sha256sum of the client's .eml).
    for f in &visible {
        let p = dir.join("objects").join(f["sha256"].as_str().unwrap());
        assert!(p.exists(), "{} ({}) not among the LEMF's objects; report {report}", f["name"], f["sha256"]);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), f["size"].as_u64().unwrap(), "{}", f["name"]);
    }

    // Mails over one PDU's worth go segmented: firstSegmentFlag, pieces as the mail's bytes
    // arrive (at most `seg` each, so at least size/seg of them), lastSegmentFlag.
    let seg = tapir::deliver::handover::mdf::EMAIL_SEGMENT_BYTES as u64;
    let objects: Vec<Value> = std::fs::read_to_string(dir.join("objects.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), visible.len(), "{objects:#?}");
    let mut split = 0;
    for f in &visible {
        let size = f["size"].as_u64().unwrap();
        let o = objects.iter().find(|o| o["sha256"] == f["sha256"]).unwrap();
        let pieces = o["pieces"].as_u64().unwrap();
        if size > seg {
            assert!(pieces >= size.div_ceil(seg), "{o}");
        } else {
            assert_eq!(pieces, 1, "{o}");
        }
        split += u64::from(size > seg);
    }
    assert!(split >= 2, "the fixture's two attachment mails exceed one piece");
    assert_eq!(report["pdus"][format!("hi3/{LIID}/segment")].as_u64(), Some(2 * split), "{report}");

    // IRI: one EmailIRI send event per visible mail, with its envelope and message-ID.
    let iri = std::fs::read_to_string(dir.join("iri.jsonl")).unwrap();
    let mut sends = Vec::new();
    let lines: Vec<Value> = iri.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for l in &lines {
        let mut found = Vec::new();
        with_key(l, "eventType", &mut found);
        sends.extend(found.into_iter().filter(|e| e["eventType"] == "send").cloned());
    }
    assert_eq!(sends.len(), visible.len(), "{sends:#?}");
    for f in &visible {
        let mid = strip(f["message_id"].as_str().unwrap());
        let e = sends
            .iter()
            .find(|e| e["message-ID"].as_str().map(strip) == Some(mid))
            .unwrap_or_else(|| panic!("no EmailIRI for {mid}: {sends:#?}"));
        assert_eq!(e["e-mail-Sender"], f["mail_from"], "{mid}");
        assert_eq!(e["e-mail-Recipients"], f["rcpt_to"], "{mid}");
        assert_eq!(e["total-Recipient-Count"].as_u64(), Some(f["rcpt_to"].as_array().unwrap().len() as u64));
        assert_eq!(e["status"], "succeeded", "{mid}");
        assert_eq!(e["protocol-ID"], "smtp");
        assert_eq!(
            e["client-Port"].as_u64(),
            f["flow"]["client"].as_str().unwrap().rsplit(':').next().unwrap().parse().ok()
        );
        assert_eq!(e["server-Port"], 25);
    }
    // AUTH PLAIN and AUTH LOGIN with the right password: two logons.
    let mut events = Vec::new();
    for l in &lines {
        with_key(l, "eventType", &mut events);
    }
    assert_eq!(events.iter().filter(|e| e["eventType"] == "logon").count(), 2, "{events:#?}");
    assert!(!report.to_string().contains("\"gaps\":[["), "{report}");

    // Every EmailPDU, as DER, walked by openssl: one top-level object spanning the whole PDU.
    let email: Vec<&(Channel, bool, Vec<u8>)> = tee.pdus.iter().filter(|p| p.1).collect();
    assert!(email.iter().filter(|p| p.0 == Channel::Hi2).count() >= visible.len());
    assert!(email.iter().filter(|p| p.0 == Channel::Hi3).count() >= visible.len());
    let f = tmp.path().join("pdu.der");
    let mut recipients_seen = 0;
    for (_, _, pdu) in email {
        std::fs::write(&f, pdu).unwrap();
        let o = Command::new("openssl").args(["asn1parse", "-inform", "DER", "-in"]).arg(&f).output().unwrap();
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && !s.contains("Error"), "{s}{}", String::from_utf8_lossy(&o.stderr));
        let first = s.lines().next().unwrap();
        let hl: usize = first.split("hl=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
        let l: usize = first.split(" l=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
        assert_eq!(hl + l, pdu.len(), "{s}");
        if s.contains("UTF8STRING        :bob@example.net") || s.contains(":bob@example.net") {
            recipients_seen += 1;
        }
    }
    assert_eq!(recipients_seen, visible.len(), "openssl saw the recipients of each mail's EmailIRI");
}
