//! The encoder against the reference encodings that Python asn1tools made from the derived
//! subset schema (shared/schemas/etsi/derived/golden-vectors-asn1tools.txt): same field values,
//! same bytes.

use tapir::deliver::etsi::ipaccess::{AccessEventType, InternetAccessType, IpAddress, IpAssignment, IpVersion};
use tapir::deliver::etsi::ps_pdu::{CheckType, HashAlgorithm};
use tapir::deliver::etsi::{
    DataType, Encoder, EtsiConfig, GeneralizedTime, IntegrityCheck, IpIriContents, IriType, MappedIri,
    PayloadDirection, PduHeader,
};
use tapir::timestamp::Timestamp;

const GOLDEN: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/schemas/etsi/derived/golden-vectors-asn1tools.txt");

fn golden(prefix: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(GOLDEN).expect("golden vectors (ln -sfn /work/shared ../shared)");
    let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no vector {prefix}"));
    let hex = line.rsplit(": ").next().unwrap().trim();
    hex::decode(hex).unwrap()
}

/// The header the file's comment describes: version43, LIID-TEST-1, NZ, OPER/col-1, CIN 7,
/// microSecondTimeStamp 1700000000.123456, timeOfInterception.
fn encoder() -> Encoder {
    let mut c = EtsiConfig::new("OPER");
    c.network_element_id = Some("col-1".into());
    c.authorization_country_code = Some("NZ".into());
    c.delivery_country_code = Some("NZ".into());
    Encoder::new(c).unwrap()
}

fn hdr(seq: u32) -> PduHeader<'static> {
    PduHeader { liid: "LIID-TEST-1", cin: Some(7), seq, ts: Timestamp::from_secs_nanos(1_700_000_000, 123_456_000) }
}

#[test]
fn keepalive_matches_asn1tools() {
    let mut out = Vec::new();
    encoder().keep_alive(&mut out, &hdr(0)).unwrap();
    assert_eq!(hex::encode(&out), hex::encode(golden("keepalive seq=0")));
}

#[test]
fn ipcc_matches_asn1tools() {
    // The vector's packet: a 20-byte IPv4 header 192.0.2.1 -> 192.0.2.2, UDP, total length 28.
    let packet = hex::decode("4500001c0001000040110000c0000201c0000202").unwrap();
    let mut out = Vec::new();
    encoder().ipcc(&mut out, &hdr(1), &packet, PayloadDirection::FromTarget).unwrap();
    assert_eq!(hex::encode(&out), hex::encode(golden("IPCC seq=1")));
}

#[test]
fn ipiri_begin_matches_asn1tools() {
    let mut c = IpIriContents::new(AccessEventType::AccessAccept, b"alice", IpVersion::V4);
    c.internet_access_type = InternetAccessType::FTTx;
    c.target_ip_address =
        Some(IpAddress { assignment: Some(IpAssignment::Dynamic), ..IpAddress::host("192.0.2.1".parse().unwrap()) });
    // asn1tools wrote a naive datetime: no zone designator.
    c.start_time = GeneralizedTime::from_ascii("20231114221320");
    let mut out = Vec::new();
    encoder().ipiri(&mut out, &hdr(0), &MappedIri { iri_type: IriType::Begin, contents: c }).unwrap();
    assert_eq!(hex::encode(&out), hex::encode(golden("IPIRI iRI-Begin")));
}

#[test]
fn integrity_hash_matches_asn1tools() {
    let ic = IntegrityCheck {
        included: vec![1, 2, 3, 4],
        check_type: CheckType::Hash,
        data_type: DataType::Cc,
        check_value: vec![0; 32],
        hash_algorithm: Some(HashAlgorithm::Sha256),
        signature_algorithm: None,
    };
    let mut out = Vec::new();
    encoder().integrity_check(&mut out, &hdr(5), &ic).unwrap();
    assert_eq!(hex::encode(&out), hex::encode(golden("integrityCheck hash")));
}

#[test]
fn domain_oid_follows_the_configured_version() {
    // version 42 -> last OID arc 0x2a; IPAccess version 17 -> relative OID 05 03 11 02.
    let mut c = EtsiConfig::new("OPER");
    c.versions.li_ps_pdu = 42;
    c.versions.ip_access = 17;
    let mut out = Vec::new();
    Encoder::new(c).unwrap().ipcc(&mut out, &hdr(1), &[0x45], PayloadDirection::ToTarget).unwrap();
    let h = hex::encode(&out);
    assert!(h.contains("80070400020205012a"), "{h}");
    assert!(h.contains("800405031102"), "{h}");
}
