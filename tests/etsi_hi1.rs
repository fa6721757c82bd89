//! HI1 notifications (warrant activated / modified / deactivated) decoded by an independent
//! decoder: Python asn1tools with the shared LI-PS-PDU subset, extended by our reading of
//! TS 101 671 HI1-Operation (schemas/tapir-hi2.asn, via tools/tapir_asn1.py); and walked as BER by
//! `openssl asn1parse`. Needs python3 with asn1tools, and openssl.

use std::process::Command;

use serde_json::Value;
use tapir::deliver::etsi::{decode_stream, Encoder, EtsiConfig, Hi1Notification, PduHeader};
use tapir::record::WarrantOp;
use tapir::timestamp::Timestamp;

/// Decodes with the shared subset merged with tapir's additions (`schemas/tapir-hi2.asn`:
/// `hI1-Operation [3]` put back into Payload, the HI1 types added).
const TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/tapir_asn1.py");

fn asn1tools(dir: &std::path::Path, bytes: &[u8]) -> Vec<Value> {
    let f = dir.join("pdus.ber");
    std::fs::write(&f, bytes).unwrap();
    let out = Command::new("python3").arg(TOOL).arg("decode").arg(&f).output().expect("python3");
    assert!(out.status.success(), "asn1tools: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn hi1_notifications_decode_with_asn1tools_and_walk_as_ber() {
    let mut c = EtsiConfig::new("OPER-O");
    c.network_element_id = Some("tapir-1".into());
    c.authorization_country_code = Some("NZ".into());
    let enc = Encoder::new(c).unwrap();
    // 1700000000 = 2023-11-14T22:13:20Z (date -u -d @1700000000).
    let mut bytes = Vec::new();
    let ops = [WarrantOp::Activated, WarrantOp::Modified, WarrantOp::Deactivated];
    for (i, op) in ops.iter().enumerate() {
        let ts = Timestamp::from_secs_nanos(1_700_000_000 + 60 * i as i64, 250_000_000);
        let hdr = PduHeader { liid: "LIID-HI1", cin: None, seq: i as u32, ts };
        enc.hi1(&mut bytes, &hdr, &Hi1Notification { op: *op, liid: "LIID-HI1", ts }).unwrap();
    }
    let d = tempfile::tempdir().unwrap();
    let v = asn1tools(d.path(), &bytes);
    assert_eq!(v.len(), 3);
    let names = ["liActivated", "liModified", "liDeactivated"];
    let times = ["2023-11-14T22:13:20", "2023-11-14T22:14:20", "2023-11-14T22:15:20"];
    for (i, pdu) in v.iter().enumerate() {
        assert_eq!(pdu["pSHeader"]["sequenceNumber"], i as u64);
        assert_eq!(pdu["pSHeader"]["lawfulInterceptionIdentifier"], hex::encode("LIID-HI1"));
        assert!(pdu["pSHeader"]["communicationIdentifier"].get("communicationIdentityNumber").is_none());
        let n = &pdu["payload"]["hI1-Operation"][names[i]];
        assert_eq!(n["domainID"], "0.4.0.2.2.0.1.7", "{pdu}");
        assert_eq!(n["lawfulInterceptionIdentifier"], hex::encode("LIID-HI1"));
        let utc = n["timeStamp"]["utcTime"].as_str().unwrap();
        assert!(utc.starts_with(times[i]), "{utc}");
    }

    // tapir's own decoder reads the same.
    let ours: Vec<Value> = decode_stream(&bytes).map(|r| r.unwrap()).collect();
    assert_eq!(ours[2]["payload"]["hI1-Operation"]["liDeactivated"]["timeStamp"]["utcTime"], "231114221520Z");

    // Every PDU is well-formed BER to a generic walker.
    let mut off = 0;
    for _ in 0..3 {
        let f = d.path().join("one.ber");
        let len = {
            let b = &bytes[off..];
            // Definite short or long form length after a one-octet tag.
            if b[1] & 0x80 == 0 {
                2 + b[1] as usize
            } else {
                let n = (b[1] & 0x7f) as usize;
                2 + n + b[2..2 + n].iter().fold(0usize, |a, &x| a << 8 | x as usize)
            }
        };
        std::fs::write(&f, &bytes[off..off + len]).unwrap();
        let o = Command::new("openssl").args(["asn1parse", "-inform", "DER", "-i", "-in"]).arg(&f).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && !text.contains("Error"), "{text}{}", String::from_utf8_lossy(&o.stderr));
        // payload [2] { hI1-Operation [3] { liX [n] { .., timeStamp [3] { utcTime [1] } } } }:
        // the walker reaches the time five levels down.
        assert!(text.lines().any(|l| l.contains("d=5") && l.contains("l=  13 prim")), "{text}");
        off += len;
    }
    assert_eq!(off, bytes.len());
}
