//! LEMF case content: e-mail objects reassembled from EmailCC segments, ECDSA P-256 signed
//! integrity checks with a key from openssl, and cINReset.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tapir::deliver::etsi::integrity::{IntegrityConfig, IntegrityState, Signer};
use tapir::deliver::etsi::{
    DataType, EmailCc, EmailFormat, Encoder, EtsiConfig, Payload, PayloadDirection, PduHeader, Tri,
};
use tapir::lemf::{Lemf, LemfConfig, VerifyKey};
use tapir::timestamp::Timestamp;

fn hdr(liid: &str, seq: u32, cin: u64) -> PduHeader<'_> {
    PduHeader { liid, cin: Some(cin), seq, ts: Timestamp::from_secs(1_700_000_100) }
}

/// A keep-alive round trip: everything sent before it on `s` has been processed.
fn sync(enc: &Encoder, s: &mut TcpStream) {
    let mut ka = Vec::new();
    enc.keep_alive(&mut ka, &hdr("SYNC", 0, 0)).unwrap();
    s.write_all(&ka).unwrap();
    let mut b = [0u8; 256];
    assert!(s.read(&mut b).unwrap() > 0);
}

fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl").args(args).current_dir(dir).status().expect("openssl");
    assert!(st.success(), "openssl {args:?}");
}

#[test]
fn email_objects_ecdsa_signatures_and_cin_reset() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    openssl(d, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "k.pem"]);
    openssl(d, &["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in", "k.pem", "-out", "k.der"]);
    openssl(d, &["pkey", "-in", "k.pem", "-pubout", "-out", "pub.pem"]);
    let signer = Signer::ecdsa_p256_pkcs8(&std::fs::read(d.join("k.der")).unwrap()).unwrap();
    let key = VerifyKey::from_pem_file(&d.join("pub.pem")).expect("P-256 public key");
    assert!(matches!(key, VerifyKey::EcdsaP256(_)));

    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut cfg = LemfConfig::new(any, any, &d.join("case"));
    cfg.verify_key = Some(key);
    let lemf = Lemf::start(cfg).unwrap();
    let enc = Encoder::new(EtsiConfig::new("OPER")).unwrap();
    let mut s = TcpStream::connect(lemf.hi3_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = Vec::new();

    // A mail in three EmailCC pieces between segment flags, then a one-PDU mail.
    let mail = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nthree pieces of body\r\n";
    enc.encode(&mut b, &hdr("LIID-M", 0, 2), &Payload::Tri(Tri::FirstSegmentFlag)).unwrap();
    let mut seq = 1;
    for piece in mail.chunks(30) {
        let cc = EmailCc { format: EmailFormat::Application, content: piece };
        enc.email_cc(&mut b, &hdr("LIID-M", seq, 2), Some(PayloadDirection::FromTarget), cc).unwrap();
        seq += 1;
    }
    enc.encode(&mut b, &hdr("LIID-M", seq, 2), &Payload::Tri(Tri::LastSegmentFlag)).unwrap();
    let small = b"Subject: short\r\n\r\nx\r\n";
    let cc = EmailCc { format: EmailFormat::Application, content: small };
    enc.email_cc(&mut b, &hdr("LIID-M", seq + 1, 2), None, cc).unwrap();
    s.write_all(&b).unwrap();

    // ECDSA-signed integrity over IPCC PDUs 0..2 of CIN 8; then a cINReset and 0, 1 again.
    let mut st = IntegrityState::new(IntegrityConfig::default(), DataType::Cc);
    let pkt = [0x45u8, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    for n in [0u32, 1, 3] {
        b.clear();
        enc.ipcc(&mut b, &hdr("LIID-M", n, 8), &pkt, PayloadDirection::ToTarget).unwrap();
        st.add_pdu(n, &b, Timestamp::from_secs(0));
        s.write_all(&b).unwrap();
    }
    let (hseq, h) = st.take_hash(Timestamp::from_secs(0)).unwrap();
    b.clear();
    enc.integrity_check(&mut b, &hdr("LIID-M", hseq, 8), &h).unwrap();
    let (sseq, sig) = st.take_signature(&signer).unwrap().unwrap();
    enc.integrity_check(&mut b, &hdr("LIID-M", sseq, 8), &sig).unwrap();
    enc.cin_reset(&mut b, &hdr("LIID-M", 0, 8)).unwrap();
    for n in [0u32, 1] {
        enc.ipcc(&mut b, &hdr("LIID-M", n, 8), &pkt, PayloadDirection::ToTarget).unwrap();
    }
    s.write_all(&b).unwrap();
    sync(&enc, &mut s);
    drop(s);
    let rep = lemf.stop().unwrap();

    assert_eq!(rep.integrity.hash_passed, 1, "{:?}", rep.integrity);
    assert_eq!(rep.integrity.signature_passed, 1, "{:?}", rep.integrity);
    assert_eq!(rep.integrity.signature_failed + rep.integrity.hash_failed, 0);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("case/report.json")).unwrap()).unwrap();
    let cc8 = &r["streams"]["hi3/LIID-M/8/cc"];
    assert_eq!(cc8["duplicates"], 0, "{cc8}");
    assert_eq!(cc8["gaps_before_reset"], serde_json::json!([[2, 2]]));
    assert_eq!(cc8["received"], serde_json::json!([[0, 1]]));
    assert_eq!(cc8["cin_resets"], 1);

    // Objects: named by sha256sum's digest of what was sent, listed in objects.jsonl.
    let case = d.join("case/LIID-M");
    for content in [&mail[..], &small[..]] {
        let f = d.join("sent");
        std::fs::write(&f, content).unwrap();
        let out = Command::new("sha256sum").arg(&f).output().unwrap();
        let sum = String::from_utf8_lossy(&out.stdout).split(' ').next().unwrap().to_string();
        assert_eq!(std::fs::read(case.join("objects").join(&sum)).unwrap(), content);
    }
    let lines = std::fs::read_to_string(case.join("objects.jsonl")).unwrap();
    let objs: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objs.len(), 2);
    assert_eq!((objs[0]["size"].as_u64(), objs[0]["pieces"].as_u64()), (Some(mail.len() as u64), Some(3)));
    assert_eq!((objs[0]["first_seq"].as_u64(), objs[0]["last_seq"].as_u64()), (Some(0), Some(4)));
}
