//! PDUs built from tapir records, decoded by an independent decoder (Python asn1tools against
//! the derived ETSI subset schema) and checked field by field; hashes checked with sha256sum,
//! signatures verified with Python `cryptography`. Needs python3 with asn1tools and
//! cryptography (`pip install asn1tools cryptography`), sha256sum and openssl.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use serde_json::{json, Value};
use tapir::deliver::etsi::integrity::HashAlgorithmName;
use tapir::deliver::etsi::national::FlowSide;
use tapir::deliver::etsi::ps_pdu::TimeStampMode;
use tapir::deliver::etsi::{
    decode_stream, map_iri, CcContents, CcPayload, DataType, Encoder, EtsiConfig, IntegrityConfig, IntegrityState,
    Payload, PayloadDirection, PduHeader, Signer,
};
use tapir::record::{Cin, Close, Counters, FlowDescr, IriEvent, IriRecord, Liid, Provenance, TunnelDescr};
use tapir::timestamp::Timestamp;

const SCHEMA: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/schemas/etsi/derived/LI-PS-PDU-IPAccess-subset.asn");
/// Decodes with the shared subset alone (`--plain`): what an LEMF without tapir's additions reads.
const TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/tapir_asn1.py");

fn asn1tools(bytes: &[u8]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pdus.ber");
    std::fs::write(&f, bytes).unwrap();
    let out = Command::new("python3")
        .arg(TOOL)
        .arg("--subset")
        .arg(SCHEMA)
        .args(["--plain", "decode"])
        .arg(&f)
        .output()
        .expect("python3");
    assert!(out.status.success(), "asn1tools: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn encoder() -> Encoder {
    let mut c = EtsiConfig::new("tapir-op");
    c.network_element_id = Some("poi-1".into());
    c.authorization_country_code = Some("DE".into());
    c.delivery_country_code = Some("DE".into());
    c.interception_point_id = Some("IP01".into());
    c.timestamps = TimeStampMode::Both;
    Encoder::new(c).unwrap()
}

fn flow(orig: &str, resp: &str, vni: Option<u32>) -> FlowDescr {
    FlowDescr {
        proto: "tcp".into(),
        orig: orig.parse::<SocketAddr>().unwrap(),
        resp: resp.parse::<SocketAddr>().unwrap(),
        vlans: vec![],
        tunnels: vni
            .map(|v| TunnelDescr {
                kind: tapir::decode::TunnelKind::Vxlan,
                outer_src: "192.0.2.10".parse().unwrap(),
                outer_dst: "192.0.2.11".parse().unwrap(),
                vni: Some(v),
            })
            .into_iter()
            .collect(),
    }
}

fn iri(cin: Option<u32>, ts: Timestamp, selector: &str, event: IriEvent) -> IriRecord {
    IriRecord {
        liid: Liid::new("LIID-7").unwrap(),
        cin: cin.map(Cin::new),
        ts,
        event,
        provenance: Arc::new(Provenance {
            selector: selector.into(),
            target: "subscriber:ann".into(),
            chain: vec!["2026-03-01T10:00:00Z instance.start vm-42 (owner ann)".into()],
        }),
    }
}

fn t(s: i64, us: u32) -> Timestamp {
    Timestamp::from_secs_nanos(s, us * 1000)
}

#[test]
fn ipiri_records_decode_field_for_field_with_asn1tools() {
    let enc = encoder();
    let t0 = t(1_772_359_200, 250_000); // 2026-03-01T10:00:00.25Z
    let f1 = flow("10.0.0.5:40000", "198.51.100.7:21", Some(5001));
    let f2 = flow("203.0.113.9:5555", "198.51.100.7:443", None);
    let recs = [
        iri(Some(42), t0, "vni:5001/10.0.0.5", IriEvent::SessionBegin { flow: f1.clone(), first_seen: t0 }),
        iri(
            Some(42),
            t(1_772_359_260, 0),
            "vni:5001/10.0.0.5",
            IriEvent::SessionContinue {
                flow: f1.clone(),
                first_seen: t0,
                counters: Counters {
                    packets: [10, 40],
                    bytes: [1000, 50000],
                    payload: [480, 47920],
                    ..Counters::default()
                },
            },
        ),
        // The target is the responder here: its transmitted octets are the responder's bytes.
        iri(
            Some(43),
            t(1_772_359_300, 0),
            "ipv4:198.51.100.7",
            IriEvent::SessionEnd {
                flow: f2,
                first_seen: t0,
                last_seen: t(1_772_359_300, 0),
                counters: Counters { packets: [3, 4], bytes: [100, 2000], payload: [0, 1880], ..Counters::default() },
                reason: Close::Fin,
                gaps: [vec![], vec![]],
            },
        ),
        iri(
            None,
            t(1_772_359_100, 0),
            "vm:vm-42",
            IriEvent::Association {
                what: "instance.start".into(),
                detail: json!({"instance": "vm-42", "owner": "ann", "ip": "10.0.0.5"}),
                selectors_added: vec!["ipv4:10.0.0.5".into()],
                selectors_removed: vec![],
            },
        ),
        // An access session given a delegated prefix: the address is the prefix's, with its length.
        iri(
            None,
            t(1_772_359_400, 0),
            "cidr:2001:db8:ff00::/56",
            IriEvent::Association {
                what: "access.start".into(),
                detail: json!({"subscriber": "joe", "prefix": "2001:db8:ff00::/56"}),
                selectors_added: vec!["cidr:2001:db8:ff00::/56".into()],
                selectors_removed: vec![],
            },
        ),
    ];
    let mut bytes = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        let m = map_iri(r, None).expect("session and association records map to IPIRI");
        let hdr = PduHeader { liid: &r.liid, cin: r.cin.map(u64::from), seq: i as u32, ts: r.ts };
        enc.ipiri(&mut bytes, &hdr, &m).unwrap();
    }
    let v = asn1tools(&bytes);
    assert_eq!(v.len(), 5);

    let h = &v[0]["pSHeader"];
    assert_eq!(h["li-psDomainId"], "0.4.0.2.2.5.1.43");
    assert_eq!(h["lawfulInterceptionIdentifier"], hex::encode("LIID-7"));
    assert_eq!(h["authorizationCountryCode"], "DE");
    assert_eq!(h["communicationIdentifier"]["networkIdentifier"]["operatorIdentifier"], hex::encode("tapir-op"));
    assert_eq!(h["communicationIdentifier"]["networkIdentifier"]["networkElementIdentifier"], hex::encode("poi-1"));
    assert_eq!(h["communicationIdentifier"]["communicationIdentityNumber"], 42);
    assert_eq!(h["communicationIdentifier"]["deliveryCountryCode"], "DE");
    assert_eq!(h["sequenceNumber"], 0);
    assert_eq!(h["timeStamp"], "2026-03-01T10:00:00.250000+00:00");
    assert_eq!(h["interceptionPointID"], "IP01");
    assert_eq!(h["microSecondTimeStamp"], json!({"seconds": 1_772_359_200u64, "microSeconds": 250_000}));
    assert_eq!(h["timeStampQualifier"], "timeOfInterception");

    let begin = &v[0]["payload"]["iRIPayloadSequence"][0];
    assert_eq!(begin["iRIType"], "iRI-Begin");
    let ipiri = &begin["iRIContents"]["iPIRI"];
    assert_eq!(ipiri["iPIRIObjId"], "05031201"); // {li-ps(5) iPAccess(3) version18 iRI(1)}
    let c = &ipiri["iPIRIContents"];
    assert_eq!(c["accessEventType"], "sessionStart");
    assert_eq!(c["targetUsername"], hex::encode("subscriber:ann"));
    assert_eq!(c["internetAccessType"], "lAN");
    assert_eq!(c["iPVersion"], "iPV4");
    assert_eq!(c["targetIPAddress"]["iP-type"], "iPV4");
    assert_eq!(c["targetIPAddress"]["iP-value"], json!({"iPBinaryAddress": "0a000005"}));
    assert_eq!(c["targetIPAddress"]["iPv4SubnetMask"], "ffffffff");
    assert_eq!(c["targetNetworkID"], "vni:5001");
    assert_eq!(c["startTime"], "2026-03-01T10:00:00.250000+00:00");
    let aaa: Value = serde_json::from_slice(&hex::decode(c["rawAAAData"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(aaa["provenance"]["selector"], "vni:5001/10.0.0.5");
    assert_eq!(aaa["provenance"]["target"], "subscriber:ann");

    let cont = &v[1]["payload"]["iRIPayloadSequence"][0];
    assert_eq!(cont["iRIType"], "iRI-Continue");
    let c = &cont["iRIContents"]["iPIRI"]["iPIRIContents"];
    assert_eq!(c["accessEventType"], "interimUpdate");
    assert_eq!(c["octetsTransmitted"], 1000);
    assert_eq!(c["octetsReceived"], 50000);

    let end = &v[2]["payload"]["iRIPayloadSequence"][0];
    assert_eq!(end["iRIType"], "iRI-End");
    assert_eq!(v[2]["pSHeader"]["communicationIdentifier"]["communicationIdentityNumber"], 43);
    let c = &end["iRIContents"]["iPIRI"]["iPIRIContents"];
    assert_eq!(c["accessEventType"], "sessionEnd");
    assert_eq!(c["targetIPAddress"]["iP-value"], json!({"iPBinaryAddress": "c6336407"}));
    assert_eq!(c["endTime"], "2026-03-01T10:01:40+00:00");
    assert_eq!(c["endReason"], "regularLogoff");
    assert_eq!(c["octetsTransmitted"], 2000);
    assert_eq!(c["octetsReceived"], 100);

    let rep = &v[3]["payload"]["iRIPayloadSequence"][0];
    assert_eq!(rep["iRIType"], "iRI-Report");
    assert!(v[3]["pSHeader"]["communicationIdentifier"].get("communicationIdentityNumber").is_none());
    let c = &rep["iRIContents"]["iPIRI"]["iPIRIContents"];
    assert_eq!(c["accessEventType"], "accessAccept");
    assert_eq!(c["targetCPEID"], "vm-42");
    assert_eq!(c["targetIPAddress"]["iP-assignment"], "dynamic");
    let aaa: Value = serde_json::from_slice(&hex::decode(c["rawAAAData"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(aaa["event"], "instance.start");
    assert_eq!(aaa["detail"]["instance"], "vm-42");

    let pd = &v[4]["payload"]["iRIPayloadSequence"][0];
    let c = &pd["iRIContents"]["iPIRI"]["iPIRIContents"];
    assert_eq!(c["accessEventType"], "sessionStart");
    assert_eq!(c["iPVersion"], "iPV6");
    assert_eq!(c["targetIPAddress"]["iP-type"], "iPV6");
    assert_eq!(c["targetIPAddress"]["iP-value"], json!({"iPBinaryAddress": "20010db8ff0000000000000000000000"}));
    assert_eq!(c["targetIPAddress"]["iPv6PrefixLength"], 56);

    // Our own decoder agrees with asn1tools on the same bytes.
    let ours: Vec<Value> = decode_stream(&bytes).map(|r| r.unwrap()).collect();
    assert_eq!(ours.len(), 5);
    assert_eq!(
        ours[2]["payload"]["iRIPayloadSequence"][0]["iRIContents"]["iPIRI"]["iPIRIContents"]["octetsTransmitted"],
        2000
    );
    assert_eq!(ours[0]["pSHeader"]["timeStamp"], "20260301100000.25Z");
    assert_eq!(ours[0]["pSHeader"]["lawfulInterceptionIdentifier"], "LIID-7");
}

/// A 1400-byte IPv6 packet 2001:db8::1 -> 2001:db8::2 with a recognisable body.
fn ipv6_packet() -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0x05, 0x50, 17, 64];
    p.extend_from_slice(&"2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&"2001:db8::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    p.extend((0..1360u32).map(|i| (i % 251) as u8));
    p
}

fn sha256sum(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("in");
    std::fs::write(&f, bytes).unwrap();
    let out = Command::new("sha256sum").arg(&f).output().expect("sha256sum");
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

fn verify_signature(kind: &str, public: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let code = r#"
import sys
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives import hashes
kind, pk, msg, sig = sys.argv[1], *(bytes.fromhex(a) for a in sys.argv[2:5])
if kind == 'ed25519':
    ed25519.Ed25519PublicKey.from_public_bytes(pk).verify(sig, msg)
else:
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pk).verify(sig, msg, ec.ECDSA(hashes.SHA256()))
print('ok')
"#;
    let out = Command::new("python3")
        .args(["-c", code, kind, &hex::encode(public), &hex::encode(msg), &hex::encode(sig)])
        .output()
        .expect("python3");
    out.status.success() && out.stdout.starts_with(b"ok")
}

fn p256_key() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("k.pem");
    let der = dir.path().join("k.der");
    let st = Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
        .arg(&pem)
        .status()
        .expect("openssl");
    assert!(st.success());
    // genpkey's DER form is SEC1; the PKCS#8 the signer loads comes from `pkcs8 -topk8`.
    let st = Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
        .arg(&pem)
        .arg("-out")
        .arg(&der)
        .status()
        .expect("openssl");
    assert!(st.success());
    std::fs::read(&der).unwrap()
}

#[test]
fn ipcc_tri_and_integrity_decode_with_asn1tools_and_verify() {
    let enc = encoder();
    let ts = t(1_772_359_200, 1);
    let pkt = ipv6_packet();
    let mut stream = Vec::new();
    let mut cc_pdus = Vec::new();
    let cfg = IntegrityConfig {
        hash_algorithm: HashAlgorithmName::Sha256,
        hash_every_pdus: 2,
        hash_every_secs: 10,
        sign_every_hashes: 1,
        sign_every_secs: 60,
    };
    let mut ed_state = IntegrityState::new(cfg.clone(), DataType::Cc);
    let mut ec_state = IntegrityState::new(cfg, DataType::Cc);
    let hdr = |seq| PduHeader { liid: "LIID-7", cin: Some(42), seq, ts };

    // 0: IPCC toTarget; 1: IPCC truncated, fromTarget.
    let mut p = Vec::new();
    enc.ipcc(&mut p, &hdr(0), &pkt, PayloadDirection::ToTarget).unwrap();
    cc_pdus.push(p);
    let mut p = Vec::new();
    let cc = [CcPayload {
        direction: Some(PayloadDirection::FromTarget),
        ts: Some(ts),
        contents: CcContents::IpTruncated { packet: &pkt[..100], original_len: 1400 },
    }];
    enc.encode(&mut p, &hdr(1), &Payload::Cc(&cc)).unwrap();
    cc_pdus.push(p);
    let mut due = Default::default();
    for (i, p) in cc_pdus.iter().enumerate() {
        stream.extend_from_slice(p);
        due = ed_state.add_pdu(i as u32, p, ts);
        ec_state.add_pdu(i as u32, p, ts);
    }
    assert!(due.hash, "2 PDUs with hash_every_pdus = 2");
    let (hseq, hash) = ed_state.take_hash(ts).unwrap();
    ec_state.take_hash(ts).unwrap();
    enc.integrity_check(&mut stream, &hdr(hseq), &hash).unwrap();
    assert!(ed_state.due(ts).signature);
    let ed = Signer::ed25519_seed(&[7u8; 32]).unwrap();
    let (sseq, sig) = ed_state.take_signature(&ed).unwrap().unwrap();
    enc.integrity_check(&mut stream, &hdr(sseq), &sig).unwrap();
    let ec = Signer::ecdsa_p256_pkcs8(&p256_key()).unwrap();
    let (eseq, esig) = ec_state.take_signature(&ec).unwrap().unwrap();
    enc.integrity_check(&mut stream, &hdr(eseq), &esig).unwrap();
    enc.keep_alive(&mut stream, &hdr(7)).unwrap();
    enc.keep_alive_response(&mut stream, &hdr(7)).unwrap();
    enc.cin_reset(&mut stream, &hdr(0)).unwrap();

    let v = asn1tools(&stream);
    assert_eq!(v.len(), 8);
    let cc0 = &v[0]["payload"]["cCPayloadSequence"][0];
    assert_eq!(cc0["payloadDirection"], "toTarget");
    assert_eq!(cc0["cCContents"]["iPCC"]["iPCCObjId"], "05031202");
    assert_eq!(cc0["cCContents"]["iPCC"]["iPCCContents"]["iPPackets"], hex::encode(&pkt));
    let cc1 = &v[1]["payload"]["cCPayloadSequence"][0];
    assert_eq!(cc1["payloadDirection"], "fromTarget");
    assert_eq!(cc1["microSecondTimeStamp"], json!({"seconds": 1_772_359_200u64, "microSeconds": 1}));
    let tr = &cc1["cCContents"]["iPCC"]["iPCCContents"]["iPTruncatedPacket"];
    assert_eq!(tr["truncatedPacket"], hex::encode(&pkt[..100]));
    assert_eq!(tr["originalLength"], 1400);

    // Hash: sha256sum over the two CC PDUs as sent, in order.
    let ic = &v[2]["payload"]["tRIPayload"]["integrityCheck"];
    assert_eq!(ic["includedSequenceNumbers"], json!([0, 1]));
    assert_eq!(ic["checkType"], "hash");
    assert_eq!(ic["dataType"], "cC");
    assert_eq!(ic["hashAlgorithm"], "sHA-256");
    assert_eq!(ic["checkValue"], sha256sum(&cc_pdus.concat()));
    assert_eq!(v[2]["pSHeader"]["sequenceNumber"], hseq);

    // Signatures over the hash PDU's checkValue, verified by Python cryptography.
    let hash_value = hex::decode(ic["checkValue"].as_str().unwrap()).unwrap();
    for (i, kind, signer) in [(3, "ed25519", &ed), (4, "ecdsa", &ec)] {
        let s = &v[i]["payload"]["tRIPayload"]["integrityCheck"];
        assert_eq!(s["checkType"], "signature");
        assert_eq!(s["includedSequenceNumbers"], json!([hseq]));
        assert_eq!(s["signatureAlgorithm"], if kind == "ed25519" { "edDSA" } else { "eCDSA" });
        let sigv = hex::decode(s["checkValue"].as_str().unwrap()).unwrap();
        assert!(verify_signature(kind, signer.public_key(), &hash_value, &sigv), "{kind} signature");
        assert!(!verify_signature(kind, signer.public_key(), b"other", &sigv), "{kind} signature binds the hash");
    }
    assert_eq!(v[5]["payload"], json!({"tRIPayload": {"keep-alive": null}}));
    assert_eq!(v[6]["payload"], json!({"tRIPayload": {"keep-aliveResponse": null}}));
    assert_eq!(v[7]["payload"], json!({"tRIPayload": {"cINReset": null}}));

    // Our decoder reads the same values.
    let ours: Vec<Value> = decode_stream(&stream).map(|r| r.unwrap()).collect();
    assert_eq!(ours.len(), 8);
    assert_eq!(
        ours[0]["payload"]["cCPayloadSequence"][0]["cCContents"]["iPCC"]["iPCCContents"]["iPPackets"],
        hex::encode(&pkt)
    );
    assert_eq!(ours[0]["payload"]["cCPayloadSequence"][0]["cCContents"]["iPCC"]["iPCCObjId"], "5.3.18.2");
    assert_eq!(ours[2]["payload"]["tRIPayload"]["integrityCheck"], *ic);
    assert_eq!(ours[5]["payload"], v[5]["payload"]);
    assert_eq!(ours[7]["payload"], v[7]["payload"]);
}

/// The same bytes decoded against the shared subset merged with tapir's additions
/// (`schemas/tapir-hi2.asn`): every field of tapir's national parameters.
fn asn1tools_merged(bytes: &[u8]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pdus.ber");
    std::fs::write(&f, bytes).unwrap();
    let out = Command::new("python3").arg(TOOL).arg("decode").arg(&f).output().expect("python3");
    assert!(out.status.success(), "asn1tools: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Cloud control-plane events and content objects on HI2: TS 102 232-3's fields wherever they
/// exist (an instance's addresses, VNI and id), tapir's national parameters for the rest (what
/// an image event names, an object's digests and format).
#[test]
fn cloud_events_and_objects_use_the_standard_fields_and_tapirs_parameters() {
    let enc = encoder();
    let ts = t(1_772_359_200, 0);
    let start = iri(
        None,
        ts,
        "subscriber:ann",
        IriEvent::Association {
            what: "instance.start".into(),
            detail: json!({"instance": "vm-42", "owner": "ann", "image": "img-9", "ports": [
                {"mac": "fa:16:3e:00:00:01", "ips": ["10.0.0.5", "2001:db8::5"], "vni": 5001},
                {"ips": ["10.0.1.9"], "vni": 5001}]}),
            selectors_added: vec!["vni:5001/10.0.0.5".into()],
            selectors_removed: vec![],
        },
    );
    let image = iri(
        None,
        ts,
        "subscriber:joe",
        IriEvent::Association {
            what: "image.create".into(),
            detail: json!({"image": "img-9", "owner": "joe", "name": "debian12-joe.qcow2", "sha256": "ab".repeat(32)}),
            selectors_added: vec!["image:img-9".into()],
            selectors_removed: vec![],
        },
    );
    let f = flow("198.51.100.7:40000", "203.0.113.10:60001", None);
    // A segment with a bad checksum that disagreed with the accepted bytes.
    let conflict = tapir::record::WireConflict {
        direction: tapir::record::Dir::Orig,
        from_target: true,
        offset: 70_000,
        len: 4,
        kind: tapir::record::ConflictKind::BadChecksum,
        kept_sha256: Some("a1".repeat(32)),
        other_sha256: "b2".repeat(32),
    };
    let mut meta = tapir::record::ObjectMeta::new("file", "ftp", &f, tapir::record::Dir::Orig, Cin::new(2), ts);
    meta.name = Some("debian12-joe.qcow2".into());
    let rec = tapir::record::ObjectRecord {
        liid: Liid::new("LIID-7").unwrap(),
        id: 3,
        meta,
        sha256: "cd".repeat(32),
        md5: Some("ef".repeat(16)),
        sha512: None,
        format: Some(tapir::record::FormatVerdict {
            format: "qcow2".into(),
            reason: "magic QFI\\xfb".into(),
            details: Value::Null,
        }),
        size: 1 << 20,
        gaps: vec![(4096, 1000)],
        wire_conflicts: vec![conflict.clone()],
        complete: false,
        last_seen: ts,
        provenance: Arc::new(Provenance {
            selector: "ipv4:198.51.100.7".into(),
            target: "subscriber:joe".into(),
            chain: vec![],
        }),
    };
    let object = iri(Some(2), ts, "ipv4:198.51.100.7", IriEvent::Object(Box::new(rec)));
    let wire = iri(Some(2), ts, "ipv4:198.51.100.7", IriEvent::WireConflict(Box::new(conflict)));
    // The session's end counts refused, unverified and conflicting segments per direction.
    let end = iri(
        Some(2),
        ts,
        "ipv4:198.51.100.7",
        IriEvent::SessionEnd {
            flow: f.clone(),
            first_seen: ts,
            last_seen: ts,
            counters: Counters {
                packets: [900, 400],
                bytes: [1_100_000, 20_000],
                payload: [1 << 20, 0],
                checksum_failed: [1, 0],
                unverified: [0, 3],
                conflicts: [1, 0],
            },
            reason: Close::Fin,
            gaps: [vec![], vec![]],
        },
    );
    let session = FlowSide { flow: &f, target: tapir::record::Dir::Orig };
    let mut bytes = Vec::new();
    for (i, r) in [&start, &image, &object, &wire, &end].iter().enumerate() {
        let m = map_iri(r, (i == 3).then_some(session)).unwrap();
        enc.ipiri(&mut bytes, &PduHeader { liid: &r.liid, cin: r.cin.map(u64::from), seq: i as u32, ts }, &m).unwrap();
    }
    let v = asn1tools_merged(&bytes);
    let contents = |i: usize| &v[i]["payload"]["iRIPayloadSequence"][0]["iRIContents"]["iPIRI"]["iPIRIContents"];

    let c = contents(0);
    assert_eq!(c["accessEventType"], "accessAccept");
    assert_eq!(c["iPVersion"], "iPV4andV6");
    assert_eq!(c["targetIPAddress"]["iP-value"]["iPBinaryAddress"], "0a000005");
    let others: Vec<&Value> = c["otherTargetIdentifiers"].as_array().unwrap().iter().collect();
    assert_eq!(others.len(), 2);
    assert_eq!(others[0]["iPAddress"]["iP-value"]["iPBinaryAddress"], "20010db8000000000000000000000005");
    assert_eq!(others[1]["iPAddress"]["iP-value"]["iPBinaryAddress"], "0a000109");
    assert_eq!(c["targetNetworkID"], "vni:5001");
    assert_eq!(c["targetCPEID"], "vm-42");
    let n = &c["nationalIPIRIParameters"];
    assert_eq!(
        (n["countryCode"].as_str(), n["vendor"].as_str(), n["version"].as_u64()),
        (Some("DE"), Some("tapir"), Some(1))
    );
    let a = &n["tapir"]["event"]["association"];
    assert_eq!(a["event"], "instance.start");
    assert_eq!(a["selectorsAdded"], json!(["vni:5001/10.0.0.5"]));
    let ids = identifiers(a);
    assert!(ids.contains(&("instance", "vm-42")) && ids.contains(&("owner", "ann")), "{ids:?}");

    let c = contents(1);
    assert_eq!(c["accessEventType"], "unknown");
    let a = &c["nationalIPIRIParameters"]["tapir"]["event"]["association"];
    assert_eq!(a["event"], "image.create");
    let ids = identifiers(a);
    assert!(ids.contains(&("name", "debian12-joe.qcow2")) && ids.contains(&("image", "img-9")), "{ids:?}");
    assert_eq!(c["nationalIPIRIParameters"]["tapir"]["provenance"]["selector"], "subscriber:joe");

    let c = contents(2);
    assert_eq!(c["targetIPAddress"]["iP-value"]["iPBinaryAddress"], "c6336407");
    let t = &c["nationalIPIRIParameters"]["tapir"];
    assert_eq!(t["recordType"], "object");
    assert_eq!(t["flow"]["otherPort"], 60001);
    assert_eq!(t["flow"]["targetOriginated"], true);
    let o = &t["event"]["object"];
    assert_eq!(
        (o["objectID"].as_u64(), o["kind"].as_str(), o["protocol"].as_str()),
        (Some(3), Some("file"), Some("ftp"))
    );
    assert_eq!(o["name"], "debian12-joe.qcow2");
    assert_eq!(o["fromTarget"], true);
    assert_eq!(o["size"], 1 << 20);
    assert_eq!(o["sha256"], "cd".repeat(32));
    assert_eq!(o["md5"], "ef".repeat(16));
    assert_eq!(o["format"], "qcow2");
    assert_eq!(o["gaps"], json!([{"offset": 4096, "length": 1000}]));
    assert_eq!(o["complete"], false);
    let wire = json!({
        "fromTarget": true, "offset": 70_000, "length": 4, "kind": "bad-checksum",
        "keptSHA256": "a1".repeat(32), "otherSHA256": "b2".repeat(32)
    });
    assert_eq!(o["wireConflicts"], json!([wire]));

    // The conflict as IRI of its own, about the session it happened in.
    let c = contents(3);
    assert_eq!(c["accessEventType"], "unknown");
    let t = &c["nationalIPIRIParameters"]["tapir"];
    assert_eq!(t["recordType"], "wire-conflict");
    assert_eq!(t["flow"]["otherPort"], 60001);
    assert_eq!(t["event"]["wireConflict"], wire);

    let t = &contents(4)["nationalIPIRIParameters"]["tapir"];
    assert_eq!(t["counters"]["wireFromTarget"], json!({"checksumFailed": 1, "unverified": 0, "conflicts": 1}));
    assert_eq!(t["counters"]["wireToTarget"], json!({"checksumFailed": 0, "unverified": 3, "conflicts": 0}));

    // tapir's own decoder reads the same.
    let ours: Vec<Value> = decode_stream(&bytes).map(|r| r.unwrap()).collect();
    let t = |i: usize| {
        ours[i]["payload"]["iRIPayloadSequence"][0]["iRIContents"]["iPIRI"]["iPIRIContents"]["nationalIPIRIParameters"]
            ["tapir"]
            .clone()
    };
    assert_eq!(t(2)["event"]["object"]["wireConflicts"], json!([wire]));
    assert_eq!(t(3)["event"]["wireConflict"], wire);
    assert_eq!(t(4)["counters"]["wireToTarget"]["unverified"], 3);
}

/// An association event's identifiers as (name, value) pairs.
fn identifiers(a: &serde_json::Value) -> Vec<(&str, &str)> {
    a["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["value"].as_str().unwrap()))
        .collect()
}
