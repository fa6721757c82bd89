//! The reference LEMF over real TCP sockets on 127.0.0.1, fed by tapir's encoder and by
//! asn1tools' reference encodings; results checked with asn1tools, capinfos and tshark.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tapir::deliver::etsi::integrity::{IntegrityConfig, IntegrityState, Signer};
use tapir::deliver::etsi::{DataType, Encoder, EtsiConfig, PayloadDirection, PduHeader};
use tapir::lemf::{Lemf, LemfConfig, VerifyKey};
use tapir::timestamp::Timestamp;

const GOLDEN: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/schemas/etsi/derived/golden-vectors-asn1tools.txt");
const SCHEMA: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/schemas/etsi/derived/LI-PS-PDU-IPAccess-subset.asn");

fn golden(prefix: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(GOLDEN).expect("golden vectors");
    let line = text.lines().find(|l| l.starts_with(prefix)).expect("vector");
    hex::decode(line.rsplit(' ').next().unwrap()).unwrap()
}

/// A 32-byte IPv4/UDP packet 10.0.0.1:1000 -> 10.0.0.2:2000 whose payload is `n` in 4 bytes.
fn udp_packet(n: u32) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 32, 0, n as u8, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    let mut sum: u32 = p.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let ck = !(sum as u16);
    p[10..12].copy_from_slice(&ck.to_be_bytes());
    p.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 12, 0, 0]);
    p.extend_from_slice(&n.to_be_bytes());
    p
}

fn start(dir: &Path, key: Option<VerifyKey>) -> Lemf {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut cfg = LemfConfig::new(any, any, dir);
    cfg.verify_key = key;
    Lemf::start(cfg).expect("lemf starts")
}

fn connect(a: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads one complete TLV (short or long definite length).
fn read_pdu(s: &mut TcpStream) -> Vec<u8> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    let mut out = h.to_vec();
    let len = if h[1] < 0x80 {
        usize::from(h[1])
    } else {
        let mut l = vec![0u8; usize::from(h[1] & 0x7f)];
        s.read_exact(&mut l).unwrap();
        out.extend_from_slice(&l);
        l.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    out.extend_from_slice(&body);
    out
}

fn asn1tools_decode(pdu: &[u8]) -> serde_json::Value {
    let py = format!(
        "import asn1tools,json,sys\ns=asn1tools.compile_files('{SCHEMA}','ber')\nv=s.decode('PS-PDU',bytes.fromhex(sys.argv[1]))\nprint(json.dumps(v,default=lambda o: o.hex() if isinstance(o,bytes) else str(o)))"
    );
    let out = Command::new("python3").args(["-c", &py, &hex::encode(pdu)]).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn hdr(seq: u32, cin: u64) -> PduHeader<'static> {
    PduHeader {
        liid: "LIID-A",
        cin: Some(cin),
        seq,
        ts: Timestamp::from_secs_nanos(1_700_000_000 + u64::from(seq) as i64, 250_000),
    }
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn keepalives_sequences_integrity_and_pcap() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("case");
    let signer = Signer::ed25519_seed(&[7u8; 32]).unwrap();
    let lemf = start(&dir, Some(VerifyKey::Ed25519(signer.public_key().to_vec())));
    let enc = Encoder::new(EtsiConfig::new("OPER")).unwrap();

    // Keep-alive from asn1tools' reference encoding: the answer decodes with asn1tools and
    // carries the same header.
    let mut hi2 = connect(lemf.hi2_addr());
    hi2.write_all(&golden("keepalive seq=0")).unwrap();
    let resp = asn1tools_decode(&read_pdu(&mut hi2));
    let h = &resp["pSHeader"];
    assert_eq!(h["lawfulInterceptionIdentifier"], hex::encode("LIID-TEST-1"));
    assert_eq!(h["sequenceNumber"], 0);
    assert_eq!(h["communicationIdentifier"]["communicationIdentityNumber"], 7);
    assert_eq!(h["microSecondTimeStamp"]["seconds"], 1_700_000_000u64);
    assert_eq!(resp["payload"][0], "tRIPayload");
    assert_eq!(resp["payload"][1][0], "keep-aliveResponse");
    // One from tapir's encoder, seq 9.
    let mut ka = Vec::new();
    enc.keep_alive(&mut ka, &hdr(9, 3)).unwrap();
    hi2.write_all(&ka).unwrap();
    let resp = asn1tools_decode(&read_pdu(&mut hi2));
    assert_eq!(resp["pSHeader"]["sequenceNumber"], 9);
    assert_eq!(resp["payload"][1][0], "keep-aliveResponse");
    // An IRI PDU from asn1tools.
    hi2.write_all(&golden("IPIRI iRI-Begin")).unwrap();

    // HI3: IPCC seq 0,1,2,4 (3 missing), 1 again (a resend), one split across writes.
    let mut hi3 = connect(lemf.hi3_addr());
    let mut integ = IntegrityState::new(IntegrityConfig::default(), DataType::Cc);
    let mut sent = Vec::new();
    for seq in [0u32, 1, 2, 4] {
        let mut b = Vec::new();
        enc.ipcc(&mut b, &hdr(seq, 5), &udp_packet(seq), PayloadDirection::FromTarget).unwrap();
        integ.add_pdu(seq, &b, Timestamp::from_secs(0));
        sent.push(b);
    }
    for b in &sent {
        let (a, z) = b.split_at(b.len() / 2);
        hi3.write_all(a).unwrap();
        hi3.flush().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        hi3.write_all(z).unwrap();
    }
    hi3.write_all(&sent[1]).unwrap();
    // Hash over 0,1,2,4 and its signature: both pass.
    let (hseq, hash) = integ.take_hash(Timestamp::from_secs(0)).unwrap();
    let mut b = Vec::new();
    enc.integrity_check(&mut b, &hdr(hseq, 5), &hash).unwrap();
    hi3.write_all(&b).unwrap();
    let (sseq, sig) = integ.take_signature(&signer).unwrap().unwrap();
    b.clear();
    enc.integrity_check(&mut b, &hdr(sseq, 5), &sig).unwrap();
    hi3.write_all(&b).unwrap();
    // PDU 5 tampered in transit (one packet byte changed after hashing): its hash check fails.
    let mut p5 = Vec::new();
    enc.ipcc(&mut p5, &hdr(5, 5), &udp_packet(5), PayloadDirection::FromTarget).unwrap();
    integ.add_pdu(5, &p5, Timestamp::from_secs(0));
    let last = p5.len() - 1;
    p5[last] ^= 0xff;
    hi3.write_all(&p5).unwrap();
    let (hseq, hash) = integ.take_hash(Timestamp::from_secs(0)).unwrap();
    b.clear();
    enc.integrity_check(&mut b, &hdr(hseq, 5), &hash).unwrap();
    hi3.write_all(&b).unwrap();
    // A forged signature (one bit flipped) over that hash fails.
    let (sseq, mut sig) = integ.take_signature(&signer).unwrap().unwrap();
    sig.check_value[0] ^= 1;
    b.clear();
    enc.integrity_check(&mut b, &hdr(sseq, 5), &sig).unwrap();
    hi3.write_all(&b).unwrap();
    // asn1tools' IPCC vector (LIID-TEST-1).
    hi3.write_all(&golden("IPCC seq=1")).unwrap();
    // Keep-alive round trip on HI3 too, which also proves everything before it was processed.
    hi3.write_all(&ka).unwrap();
    read_pdu(&mut hi3);
    drop(hi2);
    drop(hi3);
    let rep = lemf.stop().unwrap();
    assert_eq!(rep.keepalives_answered, 3);

    let r = report(&dir);
    let s = &r["streams"]["hi3/LIID-A/5/cc"];
    assert_eq!(s["received"], serde_json::json!([[0, 2], [4, 5]]));
    assert_eq!(s["gaps"], serde_json::json!([[3, 3]]));
    assert_eq!(s["duplicates"], 1);
    assert_eq!(s["duplicate_samples"], serde_json::json!([{"seq": 1, "identical": true}]));
    assert_eq!(r["integrity"]["hash_passed"], 1);
    assert_eq!(r["integrity"]["hash_failed"], 1);
    assert_eq!(r["integrity"]["signature_passed"], 1);
    assert_eq!(r["integrity"]["signature_failed"], 1);
    assert_eq!(r["streams"]["hi3/LIID-A/5/integrity-cc"]["received"], serde_json::json!([[0, 3]]));
    assert_eq!(r["pdus"]["hi2/LIID-TEST-1/iri"], 1);
    assert_eq!(r["undecodable"], 0);

    // cc.pcap: capinfos and tshark see the 5 packets (the resend is not written twice), raw IP,
    // with the PDU timestamps and payloads.
    let pcap = dir.join("LIID-A/cc.pcap");
    let ci = Command::new("capinfos").args(["-c", "-E", "-M"]).arg(&pcap).output().unwrap();
    let ci = String::from_utf8_lossy(&ci.stdout);
    assert!(ci.contains("Number of packets:   5") || ci.contains("Number of packets: 5"), "{ci}");
    assert!(ci.contains("rawip") || ci.contains("Raw IP"), "{ci}");
    let ts = Command::new("tshark")
        .args(["-r"])
        .arg(&pcap)
        .args(["-T", "fields", "-e", "frame.time_epoch", "-e", "ip.src", "-e", "udp.dstport", "-e", "data.data"])
        .output()
        .unwrap();
    let got = String::from_utf8_lossy(&ts.stdout);
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 5, "{got}");
    for (line, seq) in lines.iter().zip([0u32, 1, 2, 4, 5]) {
        let f: Vec<&str> = line.split('\t').collect();
        assert!(f[0].starts_with(&format!("{}.000250", 1_700_000_000 + seq)), "{line}");
        assert_eq!(f[1], "10.0.0.1");
        assert_eq!(f[2], "2000");
        let mut payload = seq.to_be_bytes();
        if seq == 5 {
            payload[3] ^= 0xff; // the tampered byte is what arrived
        }
        assert_eq!(f[3], hex::encode(payload), "{line}");
    }
    // The asn1tools IPCC vector's 20-byte packet went to its own LIID's pcap.
    let ci = Command::new("capinfos").args(["-c", "-M"]).arg(dir.join("LIID-TEST-1/cc.pcap")).output().unwrap();
    assert!(String::from_utf8_lossy(&ci.stdout).contains("1"), "{:?}", ci);
    let iri = std::fs::read_to_string(dir.join("LIID-TEST-1/iri.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(iri.lines().next().unwrap()).unwrap();
    assert_eq!((line["seq"].as_u64(), line["cin"].as_u64()), (Some(0), Some(7)));
    assert_eq!(line["iri"][0]["iRIType"], "iRI-Begin");
}

#[test]
fn hostile_length_drops_only_that_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("case");
    let lemf = start(&dir, None);
    let mut bad = connect(lemf.hi3_addr());
    bad.write_all(&[0x30, 0x88, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(bad.read(&mut buf).unwrap_or(0), 0, "connection closed");
    // 17 MiB announced: over the 16 MiB bound.
    let mut bad = connect(lemf.hi3_addr());
    bad.write_all(&[0x30, 0x84, 0x01, 0x10, 0x00, 0x00, 0]).unwrap();
    assert_eq!(bad.read(&mut buf).unwrap_or(0), 0, "connection closed");
    // Others are still served.
    let enc = Encoder::new(EtsiConfig::new("OPER")).unwrap();
    let mut good = connect(lemf.hi3_addr());
    let mut ka = Vec::new();
    enc.keep_alive(&mut ka, &hdr(1, 1)).unwrap();
    good.write_all(&ka).unwrap();
    assert!(read_pdu(&mut good).len() > 10);
    let rep = lemf.stop().unwrap();
    assert_eq!(rep.framing_errors, 2);
    assert_eq!(report(&dir)["framing_errors"], 2);
}

#[test]
fn restart_appends_and_repairs_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("case");
    let enc = Encoder::new(EtsiConfig::new("OPER")).unwrap();
    let send = |lemf: &Lemf, seqs: &[u32]| {
        let mut s = connect(lemf.hi3_addr());
        for &seq in seqs {
            let mut b = Vec::new();
            enc.ipcc(&mut b, &hdr(seq, 9), &udp_packet(seq), PayloadDirection::ToTarget).unwrap();
            s.write_all(&b).unwrap();
        }
        let mut ka = Vec::new();
        enc.keep_alive(&mut ka, &hdr(0, 9)).unwrap();
        s.write_all(&ka).unwrap();
        read_pdu(&mut s);
    };
    let lemf = start(&dir, None);
    send(&lemf, &[0, 1, 2]);
    lemf.stop().unwrap();
    // What a kill -9 in the middle of a record leaves.
    let pcap = dir.join("LIID-A/cc.pcap");
    std::fs::OpenOptions::new().append(true).open(&pcap).unwrap().write_all(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
    let lemf = start(&dir, None);
    send(&lemf, &[2, 3, 4]);
    lemf.stop().unwrap();
    let ci = Command::new("capinfos").args(["-c", "-M"]).arg(&pcap).output().unwrap();
    let ci = String::from_utf8_lossy(&ci.stdout);
    // 0,1,2 then 2 (resent across the LEMF restart: written, flagged in the report), 3, 4.
    assert!(ci.contains("Number of packets:   6") || ci.contains("Number of packets: 6"), "{ci}");
    let r = report(&dir);
    assert_eq!(r["runs"], 2);
    let s = &r["streams"]["hi3/LIID-A/9/cc"];
    assert_eq!(s["received"], serde_json::json!([[0, 4]]));
    assert_eq!(s["duplicate_samples"], serde_json::json!([{"seq": 2, "identical": null}]));
}
