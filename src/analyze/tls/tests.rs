//! Hand-built handshakes: the RFC 8448 §3 ClientHello/ServerHello, cut every way the flow layer
//! can cut them, plus a TLS 1.2 Certificate built around a DER made by `openssl req`
//! (`tests/data/tls/make.sh`). Expected values come from the RFCs and from `openssl x509`.

use super::*;
use crate::analyze::harness::Harness;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    hex::decode(s).expect("hex")
}

/// RFC 8448 §3 "{client} construct a ClientHello handshake message".
const RFC8448_CH: &str = "01 00 00 c0 03 03 cb 34 ec b1 e7 81 63 ba 1c 38 c6 da cb 19 6a 6d ff a2 1a 8d 99 12 ec 18 a2
    ef 62 83 02 4d ec e7 00 00 06 13 01 13 03 13 02 01 00 00 91 00 00 00 0b 00 09 00 00 06 73 65 72 76 65 72 ff 01
    00 01 00 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04 00 23 00 00 00 33 00 26 00 24
    00 1d 00 20 99 38 1d e5 60 e4 bd 43 d2 3d 8e 43 5a 7d ba fe b3 c0 6e 51 c1 3c ae 4d 54 13 69 1e 52 9a af 2c 00
    2b 00 03 02 03 04 00 0d 00 20 00 1e 04 03 05 03 06 03 02 03 08 04 08 05 08 06 04 01 05 01 06 01 02 01 04 02 05
    02 06 02 02 02 00 2d 00 02 01 01 00 1c 00 02 40 01";
/// RFC 8448 §3 "{server} construct a ServerHello handshake message".
const RFC8448_SH: &str = "02 00 00 56 03 03 a6 af 06 a4 12 18 60 dc 5e 6e 60 24 9c d3 4c 95 93 0c 8a c5 cb 14 34 da
    c1 55 77 2e d3 e2 69 28 00 13 01 00 00 2e 00 33 00 24 00 1d 00 20 c9 82 88 76 11 20 95 fe 66 76 2b db f7 c6 72
    e1 56 d6 cc 25 3b 83 3d f1 dd 69 b1 b0 4e 75 1f 0f 00 2b 00 02 03 04";

/// JA4 of the RFC 8448 ClientHello, by hand from JA4.md: TLS 1.3 (supported_versions 0304),
/// SNI present, 3 ciphers, 9 extensions, no ALPN;
/// sha256("1301,1302,1303")[..12] = 55b375c5d22e;
/// sha256("000a,000d,001c,0023,002b,002d,0033,ff01_0403,0503,0603,0203,0804,0805,0806,0401,0501,
/// 0601,0201,0402,0502,0602,0202")[..12] = 59cd3dafc54d (python hashlib).
const RFC8448_JA4: &str = "t13d030900_55b375c5d22e_59cd3dafc54d";
/// JA4S of the RFC 8448 ServerHello: TLS 1.3, 2 extensions, no ALPN, 1301,
/// sha256("0033,002b")[..12] = 234ea6891581.
const RFC8448_JA4S: &str = "t130200_1301_234ea6891581";

/// A TLS record of `ty` around `body`.
fn record(ty: u8, version: u16, body: &[u8]) -> Vec<u8> {
    let mut r = vec![ty];
    r.extend_from_slice(&version.to_be_bytes());
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

fn handshake(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

fn tls_events(h: &Harness) -> Vec<&TlsEvent> {
    h.sink.iri.iter().filter_map(|r| r.event.app::<TlsEvent>()).collect()
}

fn rfc8448_flights() -> (Vec<u8>, Vec<u8>) {
    let client = record(22, 0x0301, &unhex(RFC8448_CH));
    let mut server = record(22, 0x0303, &unhex(RFC8448_SH));
    // The encrypted flight: its bytes do not matter, only that it is application data.
    server.extend(record(23, 0x0303, &[0x5a; 40]));
    (client, server)
}

fn check_rfc8448(e: &TlsEvent) {
    assert_eq!(e.version.as_deref(), Some("TLS 1.3"));
    assert_eq!(e.client_version.as_deref(), Some("TLS 1.3"));
    assert_eq!(e.sni.as_deref(), Some("server"));
    assert!(e.alpn_offered.is_empty());
    assert_eq!(e.alpn_selected, None);
    assert_eq!(e.cipher_suite.as_deref(), Some("TLS_AES_128_GCM_SHA256"));
    assert_eq!(e.cipher_suite_id.as_deref(), Some("0x1301"));
    assert_eq!(e.certificate_status, CertStatus::NotVisible);
    assert_eq!(e.certificate, None);
    assert_eq!(e.ja4.as_deref(), Some(RFC8448_JA4));
    assert_eq!(e.ja4s.as_deref(), Some(RFC8448_JA4S));
    assert!(e.complete);
    assert!(e.anomalies.is_empty(), "{:?}", e.anomalies);
}

#[test]
fn rfc8448_one_rtt_gives_one_complete_event_and_no_objects() {
    let (c, s) = rfc8448_flights();
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:443");
    let mut a = TlsAnalyzer::new();
    h.client(&mut a, &c);
    h.server(&mut a, &s);
    h.client(&mut a, &record(23, 0x0303, &[1; 30]));
    h.close(&mut a, Close::Fin);
    let evs = tls_events(&h);
    assert_eq!(evs.len(), 1);
    check_rfc8448(evs[0]);
    assert!(h.sink.objects.is_empty(), "TLS bytes must not become content objects");
    let json = serde_json::to_value(&h.sink.iri[0]).unwrap();
    assert_eq!(json["event"], "tls");
    assert_eq!(json["certificate_status"], "not visible");
}

#[test]
fn rfc8448_one_byte_segments_and_fragmented_records() {
    // Records cut into one-byte segments.
    let (c, s) = rfc8448_flights();
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:443");
    let mut a = TlsAnalyzer::new();
    for b in &c {
        h.client(&mut a, std::slice::from_ref(b));
    }
    for b in &s {
        h.server(&mut a, std::slice::from_ref(b));
    }
    h.close(&mut a, Close::Fin);
    let evs = tls_events(&h);
    assert_eq!(evs.len(), 1);
    check_rfc8448(evs[0]);

    // The ClientHello message spread over three records (RFC 8446 §5.1 allows it).
    let ch = unhex(RFC8448_CH);
    let mut c = Vec::new();
    for part in [&ch[..3], &ch[3..100], &ch[100..]] {
        c.extend(record(22, 0x0301, part));
    }
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:443");
    let mut a = TlsAnalyzer::new();
    h.client(&mut a, &c);
    h.server(&mut a, &s);
    h.close(&mut a, Close::Fin);
    check_rfc8448(tls_events(&h)[0]);
}

#[test]
fn probe_claims_hellos_only() {
    let (c, s) = rfc8448_flights();
    assert_eq!(probe(Dir::Orig, &c), Verdict::Match);
    assert_eq!(probe(Dir::Resp, &s), Verdict::Match);
    for n in 1..9 {
        assert_eq!(probe(Dir::Orig, &c[..n]), Verdict::NeedMore, "{n} bytes");
    }
    // A ServerHello from the client, or a ClientHello from the server, is not claimed.
    assert_eq!(probe(Dir::Orig, &s), Verdict::NoMatch);
    assert_eq!(probe(Dir::Resp, &c), Verdict::NoMatch);
    for other in
        [&b"GET / HTTP/1.1\r\n"[..], b"220 mail ESMTP\r\n", b"SSH-2.0-OpenSSH\r\n", b"\x16\x03\x05\x00\x10\x01"]
    {
        assert_eq!(probe(Dir::Orig, other), Verdict::NoMatch, "{other:?}");
    }
    // Application data or alert first: not a handshake start.
    assert_eq!(probe(Dir::Orig, &record(23, 0x0303, &[0; 40])), Verdict::NoMatch);
    // A record length over 2^14 + 2048.
    assert_eq!(probe(Dir::Orig, &[0x16, 3, 1, 0x49, 0, 1, 0, 0, 40]), Verdict::NoMatch);
}

#[test]
fn gap_in_server_handshake_reports_what_was_seen() {
    let (c, s) = rfc8448_flights();
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:443");
    let mut a = TlsAnalyzer::new();
    h.client(&mut a, &c);
    h.server(&mut a, &s[..20]);
    h.gap(&mut a, Dir::Resp, 50);
    h.server(&mut a, &s[70..]);
    h.close(&mut a, Close::Rst);
    let evs = tls_events(&h);
    assert_eq!(evs.len(), 1);
    let e = evs[0];
    assert!(!e.complete);
    assert_eq!(e.sni.as_deref(), Some("server"));
    assert_eq!(e.ja4.as_deref(), Some(RFC8448_JA4));
    assert_eq!(e.version, None);
    assert_eq!(e.certificate_status, CertStatus::NotSeen);
    assert_eq!(e.anomalies, vec!["gap of 50 bytes in the server handshake".to_string()]);
}

#[test]
fn oversized_and_garbage_input_is_bounded() {
    // A handshake message announcing 16 MiB: refused at once, nothing buffered.
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:443");
    let mut a = TlsAnalyzer::new();
    h.client(&mut a, &record(22, 0x0301, &[1, 0xff, 0xff, 0xff, 3, 3]));
    assert!(a.sides[0].done && a.sides[0].hs.capacity() == 0);
    // A server that sends 70 KiB of handshake records without completing a message.
    let mut big = handshake(11, &[]);
    big[1..4].copy_from_slice(&[0x00, 0xff, 0xf0]);
    h.server(&mut a, &record(22, 0x0303, &big));
    for _ in 0..5 {
        h.server(&mut a, &record(22, 0x0303, &[0u8; 16000]));
    }
    assert!(a.sides.iter().all(|s| s.hs.len() <= MAX_HANDSHAKE));
    h.close(&mut a, Close::Fin);
    let e = tls_events(&h)[0];
    assert!(!e.complete);
    assert!(e.anomalies.iter().any(|m| m.contains("client handshake message type 1")), "{:?}", e.anomalies);
    assert!(e.anomalies.iter().any(|m| m.contains("server handshake message")), "{:?}", e.anomalies);

    // Not TLS at all after the probe's bytes.
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:443");
    let mut a = TlsAnalyzer::new();
    // A record holding the start of a 48-byte ClientHello, then plain text.
    h.client(&mut a, b"\x16\x03\x01\x00\x04\x01\x00\x00\x30GET / HTTP/1.1\r\n");
    h.close(&mut a, Close::Fin);
    let e = tls_events(&h)[0];
    assert!(e.anomalies.iter().any(|m| m.contains("not a TLS record")), "{:?}", e.anomalies);
}

/// RFC 8446 §4.1.4: a ServerHello whose random is SHA-256("HelloRetryRequest") is a retry; the
/// real ServerHello follows (here after the server's compatibility CCS, RFC 8446 §D.4).
#[test]
fn hello_retry_request_then_server_hello() {
    let (c, _) = rfc8448_flights();
    let sh = unhex(RFC8448_SH);
    let mut hrr = sh.clone();
    hrr[6..38].copy_from_slice(&wire::HRR_RANDOM);
    let mut s = record(22, 0x0303, &hrr);
    s.extend(record(20, 0x0303, &[1]));
    s.extend(record(22, 0x0303, &sh));
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:443");
    let mut a = TlsAnalyzer::new();
    h.client(&mut a, &c);
    h.server(&mut a, &s);
    h.close(&mut a, Close::Fin);
    let e = tls_events(&h)[0];
    assert!(e.hello_retry);
    assert!(e.complete);
    assert_eq!(e.version.as_deref(), Some("TLS 1.3"));
    assert_eq!(e.ja4s.as_deref(), Some(RFC8448_JA4S));
}

/// A TLS 1.2 full handshake built by hand: ClientHello without supported_versions but with ALPN,
/// ServerHello choosing c02f and h2, Certificate carrying the DER of `tests/data/tls/server.der`.
/// Expected certificate fields from `openssl x509 -in server.pem -noout -subject -issuer -serial
/// -dates -fingerprint -sha256 -ext subjectAltName` (see make.sh).
#[test]
fn tls12_certificate_is_read_from_clear_text() {
    let der = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls/server.der")).unwrap();
    // ClientHello: version 0303, random, empty session id, ciphers {c02f, 0a0a (GREASE), 009c},
    // null compression, extensions: server_name "files.example.test", ALPN {h2, http/1.1},
    // signature_algorithms {0401, 0403}.
    let mut ch = vec![3, 3];
    ch.extend([7u8; 32]);
    ch.push(0);
    ch.extend([0, 6, 0xc0, 0x2f, 0x0a, 0x0a, 0x00, 0x9c, 1, 0]);
    let name = b"files.example.test";
    let mut sni = vec![0, (name.len() + 3) as u8, 0, 0, name.len() as u8];
    sni.extend(name);
    let alpn = [0u8, 12, 2, b'h', b'2', 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1'];
    let sig = [0u8, 4, 4, 1, 4, 3];
    let mut exts = Vec::new();
    for (ty, data) in [(0u16, &sni[..]), (0x10, &alpn[..]), (0x0d, &sig[..])] {
        exts.extend(ty.to_be_bytes());
        exts.extend((data.len() as u16).to_be_bytes());
        exts.extend(data);
    }
    ch.extend((exts.len() as u16).to_be_bytes());
    ch.extend(exts);
    // ServerHello: 0303, random, empty session id, c02f, null, extensions: ALPN {h2}.
    let mut sh = vec![3, 3];
    sh.extend([9u8; 32]);
    sh.extend([0, 0xc0, 0x2f, 0]);
    sh.extend([0, 9, 0, 0x10, 0, 5, 0, 3, 2, b'h', b'2']);
    // Certificate: one entry.
    let mut cert = Vec::new();
    cert.extend(&((der.len() + 3) as u32).to_be_bytes()[1..]);
    cert.extend(&(der.len() as u32).to_be_bytes()[1..]);
    cert.extend(&der);
    let mut flight = handshake(2, &sh);
    flight.extend(handshake(11, &cert));
    flight.extend(handshake(14, &[]));

    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:443");
    let mut a = TlsAnalyzer::new();
    h.client(&mut a, &record(22, 0x0301, &handshake(1, &ch)));
    let rec = record(22, 0x0303, &flight);
    // The server flight in 100-byte segments.
    for part in rec.chunks(100) {
        h.server(&mut a, part);
    }
    let evs = tls_events(&h);
    assert_eq!(evs.len(), 1, "emitted once the certificate is read, before close");
    let e = evs[0];
    assert!(e.complete);
    assert_eq!(e.version.as_deref(), Some("TLS 1.2"));
    assert_eq!(e.client_version.as_deref(), Some("TLS 1.2"));
    assert_eq!(e.sni.as_deref(), Some("files.example.test"));
    assert_eq!(e.alpn_offered, vec!["h2".to_string(), "http/1.1".to_string()]);
    assert_eq!(e.alpn_selected.as_deref(), Some("h2"));
    assert_eq!(e.cipher_suite.as_deref(), Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"));
    assert_eq!(e.certificate_status, CertStatus::Visible);
    assert_eq!(e.chain_len, Some(1));
    let c = e.certificate.as_ref().unwrap();
    assert_eq!(c.subject, "C=DE, O=Tapir Test, CN=files.example.test");
    assert_eq!(c.issuer, "C=DE, O=Tapir Test, CN=files.example.test");
    assert_eq!(c.serial.replace(':', "").to_uppercase(), "1A2B3C4D5E6F");
    assert_eq!(c.sans, vec!["DNS:files.example.test", "DNS:www.example.test", "IP:192.0.2.7"]);
    assert_eq!(c.not_before, "2026-11-22T17:23:41Z");
    assert_eq!(c.not_after, "2036-11-19T17:23:41Z");
    assert_eq!(c.sha256, "9703f589d8fd95feb75e5b8b07cda9e8e29775471a2da0bc0551245f5aafaa48");
    // JA4 by hand: t12 d, 2 ciphers (GREASE dropped), 3 extensions, h2;
    // sha256("009c,c02f")[..12], sha256("000d_0401,0403")[..12] (python hashlib).
    assert_eq!(e.ja4.as_deref(), Some("t12d0203h2_08dfa304a768_15aec32b043f"));
    h.close(&mut a, Close::Fin);
    assert_eq!(tls_events(&h).len(), 1);
}

/// After SMTP STARTTLS the SMTP analyzer hands the rest of the connection over at non-zero
/// offsets; the event says so.
#[test]
fn after_starttls_offsets_need_not_start_at_zero() {
    let (c, s) = rfc8448_flights();
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:25");
    let mut a = tls_after_starttls();
    let cx_send = |h: &mut Harness, a: &mut Box<dyn StreamAnalyzer>, dir: Dir, off: u64, b: &[u8]| {
        let mut cx = Cx {
            now: h.now,
            liid: &h.liid,
            cin: h.cin,
            flow: &h.flow,
            provenance: &h.provenance,
            scope: h.scope,
            files: &mut h.files,
            expect: &mut h.expect,
            sink: &mut h.sink,
        };
        a.data(dir, off, b, &mut cx);
    };
    cx_send(&mut h, &mut a, Dir::Orig, 250, &c[..10]);
    cx_send(&mut h, &mut a, Dir::Orig, 260, &c[10..]);
    cx_send(&mut h, &mut a, Dir::Resp, 900, &s);
    h.close(a.as_mut(), Close::Fin);
    let e = tls_events(&h)[0];
    check_rfc8448(e);
    assert_eq!(e.upgraded_from.as_deref(), Some("starttls"));
}
