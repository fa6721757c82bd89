//! The JSON decoder: round-trips what the encoder makes, reports damage without panicking, and
//! never panics on random or mutated input.

use proptest::prelude::*;
use serde_json::json;
use tapir::deliver::etsi::ipaccess::{AccessEventType, IpAddress, IpVersion};
use tapir::deliver::etsi::{
    decode_stream, DecodeError, Encoder, EtsiConfig, IpIriContents, IriType, MappedIri, PayloadDirection, PduHeader,
};
use tapir::timestamp::Timestamp;

fn sample() -> Vec<u8> {
    let enc = Encoder::new(EtsiConfig::new("op")).unwrap();
    let hdr =
        |seq| PduHeader { liid: "L1", cin: Some(5), seq, ts: Timestamp::from_secs_nanos(1_772_359_200, 999_999_999) };
    let mut out = Vec::new();
    let mut c = IpIriContents::new(AccessEventType::SessionStart, b"u", IpVersion::V6);
    c.target_ip_address = Some(IpAddress::host("2001:db8::5".parse().unwrap()));
    c.octets_received = Some(u64::MAX);
    enc.ipiri(&mut out, &hdr(0), &MappedIri { iri_type: IriType::Begin, contents: c }).unwrap();
    enc.ipcc(&mut out, &hdr(1), &[0x45, 0, 0, 20], PayloadDirection::Indeterminate).unwrap();
    enc.keep_alive(&mut out, &hdr(2)).unwrap();
    out
}

#[test]
fn decoder_round_trips_the_encoder() {
    let bytes = sample();
    let v: Vec<_> = decode_stream(&bytes).collect::<Result<_, _>>().unwrap();
    assert_eq!(v.len(), 3);
    let h = &v[0]["pSHeader"];
    assert_eq!(h["li-psDomainId"], "0.4.0.2.2.5.1.43");
    assert_eq!(h["lawfulInterceptionIdentifier"], "L1");
    assert_eq!(h["communicationIdentifier"]["communicationIdentityNumber"], 5);
    assert_eq!(h["microSecondTimeStamp"], json!({"seconds": 1_772_359_200u64, "microSeconds": 999_999}));
    let c = &v[0]["payload"]["iRIPayloadSequence"][0]["iRIContents"]["iPIRI"]["iPIRIContents"];
    assert_eq!(c["accessEventType"], "sessionStart");
    assert_eq!(c["iPVersion"], "iPV6");
    assert_eq!(c["targetIPAddress"]["iP-value"]["iPBinaryAddress"], "2001:db8::5");
    assert_eq!(c["targetIPAddress"]["iPv6PrefixLength"], 128);
    assert_eq!(c["octetsReceived"], u64::MAX);
    let cc = &v[1]["payload"]["cCPayloadSequence"][0];
    assert_eq!(cc["payloadDirection"], "indeterminate");
    assert_eq!(cc["cCContents"]["iPCC"]["iPCCContents"]["iPPackets"], "45000014");
    assert_eq!(v[2]["payload"], json!({"tRIPayload": {"keep-alive": null}}));
    let total: u64 = v.iter().map(|p| p["length"].as_u64().unwrap()).sum();
    assert_eq!(total, bytes.len() as u64);
}

#[test]
fn truncation_ends_the_stream_with_one_error() {
    let bytes = sample();
    let cut = &bytes[..bytes.len() - 3];
    let v: Vec<_> = decode_stream(cut).collect();
    assert_eq!(v.len(), 3);
    assert!(v[0].is_ok() && v[1].is_ok());
    assert!(matches!(v[2], Err(DecodeError::Ber(_))), "{:?}", v[2]);
}

#[test]
fn hostile_lengths_and_forms_are_errors() {
    for bad in [
        &[0x30, 0x80, 0, 0][..],                         // indefinite length
        &[0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9][..],    // 9 length octets
        &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0][..],    // 4 GiB claimed
        &[0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f][..], // tag number overflow
        &[0x04, 0x00][..],                               // not a SEQUENCE
        &[0x30, 0x00][..],                               // empty PS-PDU
    ] {
        let v: Vec<_> = decode_stream(bad).collect();
        assert_eq!(v.len(), 1, "{bad:02x?}");
        assert!(v[0].is_err(), "{bad:02x?}");
    }
    // Unknown constructed nesting far deeper than MAX_DEPTH inside a valid header: bounded.
    let mut inner = vec![0x05, 0x00];
    for _ in 0..200 {
        let mut w = vec![0xbf, 0x63];
        let n = inner.len();
        if n < 128 {
            w.push(n as u8);
        } else {
            w.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
        }
        w.extend_from_slice(&inner);
        inner = w;
    }
    let mut pdu = sample();
    let first_len = decode_stream(&pdu).next().unwrap().unwrap()["length"].as_u64().unwrap() as usize;
    pdu.truncate(first_len);
    // Append the deep value to the PS-PDU SEQUENCE (it becomes an unknown field) and fix the length.
    let hl = if pdu[1] & 0x80 == 0 { 2 } else { 2 + (pdu[1] & 0x7f) as usize };
    let mut content = pdu[hl..].to_vec();
    content.extend_from_slice(&inner);
    let mut p = vec![0x30, 0x82, (content.len() >> 8) as u8, content.len() as u8];
    p.extend_from_slice(&content);
    let v: Vec<_> = decode_stream(&p).collect();
    assert_eq!(v.len(), 1);
    let s = v[0].as_ref().unwrap().to_string();
    assert!(s.contains("[99]c"), "unknown field kept");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for r in decode_stream(&bytes) {
            let _ = r;
        }
    }

    #[test]
    fn mutated_pdus_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut bytes = sample();
        for (i, b) in flips {
            let n = bytes.len();
            bytes[i % n] = b;
        }
        let n = bytes.len();
        bytes.truncate(cut % (n + 1));
        for r in decode_stream(&bytes) {
            let _ = r;
        }
    }
}
