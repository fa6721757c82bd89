//! EmailPDU (TS 102 232-2) PDUs have no schema in hand: check that they are well-formed BER with
//! an independent parser (`openssl asn1parse`, which walks every nested TLV; pyasn1 cannot decode
//! context tags without a schema) and that the tags sit where the
//! issue's tag list puts them; segmentation brackets large content with TRI flags.

use std::process::Command;

use tapir::deliver::etsi::email::segments;
use tapir::deliver::etsi::{
    decode_stream, EmailCc, EmailEventType, EmailFormat, EmailIri, EmailProtocol, EmailStatus, Encoder, EtsiConfig,
    IriType, Payload, PayloadDirection, PduHeader, Segment, Tri,
};
use tapir::timestamp::Timestamp;

fn email_iri() -> EmailIri {
    let mut e = EmailIri::new(EmailEventType::Send, EmailProtocol::Smtp);
    e.client = Some("10.0.0.5:40100".parse().unwrap());
    e.server = Some("198.51.100.25:25".parse().unwrap());
    e.server_octets_sent = Some(512);
    e.client_octets_sent = Some(70_000);
    e.sender = Some("ann@example.org".into());
    e.recipients = vec!["bob@example.net".into(), "carol@example.com".into()];
    e.status = Some(EmailStatus::Succeeded);
    e.total_recipient_count = Some(2);
    e.message_id = Some(b"<1@example.org>".to_vec());
    e
}

fn pdus() -> Vec<u8> {
    let enc = Encoder::new(EtsiConfig::new("tapir-op")).unwrap();
    let hdr = |seq| PduHeader { liid: "LIID-7", cin: Some(9), seq, ts: Timestamp::from_secs(1_772_359_200) };
    let mut out = Vec::new();
    enc.email_iri(&mut out, &hdr(0), IriType::Report, &email_iri()).unwrap();
    let mail = b"From: ann@example.org\r\nTo: bob@example.net\r\nSubject: x\r\n\r\nhello\r\n".repeat(10);
    for (seq, s) in (0u32..).zip(segments(&mail, 200)) {
        match s {
            Segment::First => enc.encode(&mut out, &hdr(seq), &Payload::Tri(Tri::FirstSegmentFlag)).unwrap(),
            Segment::Last => enc.encode(&mut out, &hdr(seq), &Payload::Tri(Tri::LastSegmentFlag)).unwrap(),
            Segment::Piece(p) => enc
                .email_cc(
                    &mut out,
                    &hdr(seq),
                    Some(PayloadDirection::FromTarget),
                    EmailCc { format: EmailFormat::Application, content: p },
                )
                .unwrap(),
        }
    }
    out
}

#[test]
fn email_pdus_walk_as_ber_with_openssl() {
    let bytes = pdus();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("email.ber");
    std::fs::write(&f, &bytes).unwrap();
    // asn1parse reads one top-level TLV per call: walk them all by offset.
    let mut off = 0;
    let mut n = 0;
    while off < bytes.len() {
        let mut cmd = Command::new("openssl");
        cmd.args(["asn1parse", "-inform", "DER", "-i"]);
        if off > 0 {
            // openssl refuses an explicit offset of 0.
            cmd.args(["-offset", &off.to_string()]);
        }
        let out = cmd.arg("-in").arg(&f).output().expect("openssl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "openssl at {off}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains("Error"), "{text}");
        // First line: "    0:d=0  hl=2 l= 123 cons: SEQUENCE": header + content length.
        let first = text.lines().next().unwrap();
        let hl: usize = first.split("hl=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
        let l: usize = first.split("l=").nth(2).unwrap().split_whitespace().next().unwrap().parse().unwrap();
        if n == 0 {
            // EmailIRI: the recipients SEQUENCE OF UTF8String under [10], the sender under [9].
            assert!(text.contains("cont [ 10 ]"), "{text}");
            assert!(text.contains("UTF8STRING        :bob@example.net"), "{text}");
            assert!(text.contains("UTF8STRING        :carol@example.com"), "{text}");
        }
        off += hl + l;
        n += 1;
    }
    assert_eq!(off, bytes.len());
    // 1 IRI + first flag + 4 pieces (610 bytes in pieces of 200) + last flag.
    assert_eq!(n, 1 + 1 + 4 + 1);
}

#[test]
fn email_iri_fields_sit_under_the_issue_tags() {
    let bytes = pdus();
    let v: Vec<_> = decode_stream(&bytes).map(|r| r.unwrap()).collect();
    let e = &v[0]["payload"]["iRIPayloadSequence"][0]["iRIContents"]["emailIRI"];
    assert_eq!(e["eIRIObjId"], "5.2.20.1");
    assert_eq!(e["eventType"], "send");
    assert_eq!(e["client-Address"]["iP-value"]["iPBinaryAddress"], "10.0.0.5");
    assert_eq!(e["server-Address"]["iP-value"]["iPBinaryAddress"], "198.51.100.25");
    assert_eq!(e["client-Port"], 40100);
    assert_eq!(e["server-Port"], 25);
    assert_eq!(e["server-Octets-Sent"], 512);
    assert_eq!(e["client-Octets-Sent"], 70000);
    assert_eq!(e["protocol-ID"], "smtp");
    assert_eq!(e["e-mail-Sender"], "ann@example.org");
    assert_eq!(e["e-mail-Recipients"], serde_json::json!(["bob@example.net", "carol@example.com"]));
    assert_eq!(e["status"], "succeeded");
    assert_eq!(e["total-Recipient-Count"], 2);
    assert_eq!(e["message-ID"], "<1@example.org>");
    assert_eq!(v[1]["payload"]["tRIPayload"]["firstSegmentFlag"], serde_json::Value::Null);
    let cc = &v[2]["payload"]["cCPayloadSequence"][0]["cCContents"]["emailCC"];
    assert_eq!(cc["eCCObjId"], "5.2.20.2");
    assert_eq!(cc["email-Format"], "application");
    assert_eq!(cc["content"].as_str().unwrap().len(), 400);
    assert!(v[6]["payload"]["tRIPayload"].get("lastSegmentFlag").is_some());
}
