//! Delivery to an independent LEMF (`shared/tools/lemf_check.py`: asn1tools decoding of every
//! PS-PDU, keep-alive answers, hash verification): completeness, sequence continuity per
//! (LIID, CIN, IRI|CC), integrity checks, an LEMF outage, a sender crash, and mutual TLS.
//! Needs python3 with asn1tools, and openssl for the TLS test.

use crate::common;
use crate::handover_common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use handover_common::*;
use tapir::deliver::handover::Delivery;
use tapir::select::Liid;

fn sum(v: &serde_json::Value) -> u64 {
    v.as_object().map_or(0, |m| m.values().filter_map(|x| x.as_u64()).sum())
}

fn all_zero(v: &serde_json::Value) -> bool {
    v.as_object().is_some_and(|m| m.values().all(|x| x.as_u64() == Some(0)))
}

#[test]
fn every_pdu_decodes_in_sequence_with_verified_integrity() {
    let dir = tempfile::tempdir().unwrap();
    common::sh(dir.path(), "openssl genpkey -algorithm ed25519 -outform DER -out sig.der");
    let (hi2, hi3) = (free_port(), free_port());
    let extra = format!(
        "integrity = {{ hash_every = 10, sign_every = 2, key = \"{}\" }}",
        dir.path().join("sig.der").display()
    );
    let (leas, warrants) = setup(&warrants_text(hi2, hi3, &extra));
    let key = dir.path().join("sig.der");
    let lemf = Lemf::start_env(hi2, hi3, &dir.path().join("r.json"), 60.0, &[("LEMF_SIGN_KEY", &key)]);
    let mut d = Delivery::start(leas, &warrants, &dir.path().join("spool")).unwrap();
    let (a, b) = (Liid::new("LIID-A").unwrap(), Liid::new("LIID-B").unwrap());
    d.deliver(&begin(&a, 1, [10, 0, 0, 5])).unwrap();
    feed_cc(&mut d, &a, 1, [10, 0, 0, 5], 0..250);
    d.deliver(&end(&a, 1, [10, 0, 0, 5], 250)).unwrap();
    d.deliver(&begin(&b, 7, [10, 0, 0, 6])).unwrap();
    feed_cc(&mut d, &b, 7, [10, 0, 0, 6], 0..40);
    let rep = d.finish(Duration::from_secs(60));
    assert!(rep.complete(), "{rep:#?}");
    let (r, s) = lemf.wait();
    assert_eq!(r["undecodable"], 0, "{r}");
    assert_eq!(r["bad_ber"], 0);
    assert_eq!(r["pdus"], r["decoded"]);
    assert_eq!(r["ipcc_packets"]["LIID-A"], 250);
    assert_eq!(r["ipcc_packets"]["LIID-B"], 40);
    assert_eq!(r["iri_records"]["LIID-A"], 2);
    assert_eq!(r["iri_records"]["LIID-B"], 1);
    assert!(all_zero(&r["sequence_gaps"]) && all_zero(&r["sequence_duplicates"]), "{r}");
    assert_eq!(seqs(&s, "hi3|LIID-A|1|cc"), (0..250).collect::<Vec<_>>());
    assert_eq!(seqs(&s, "hi3|LIID-B|7|cc"), (0..40).collect::<Vec<_>>());
    assert_eq!(seqs(&s, "hi2|LIID-A|1|iri"), vec![0, 1]);
    // Hand count: hashes every 10 PDUs per stream plus one at the end for a partial tail:
    // A/CC 250 -> 25, A/IRI 2 -> 1, B/CC 40 -> 4, B/IRI 1 -> 1 = 31 hashes.
    // Signatures every 2 hashes, plus one for an unsigned remainder at the end:
    // A/CC 12+1, A/IRI 1, B/CC 2, B/IRI 1 = 17.
    // Recomputed by tests/data/handover/lemf_seqs.py (hashlib, cryptography) from the PDUs
    // as the LEMF received them.
    let i = &s["_integrity"];
    assert_eq!(
        (i["hash_ok"].as_u64(), i["hash_differs"].as_u64(), i["hash_incomplete"].as_u64()),
        (Some(31), Some(0), Some(0)),
        "{i}"
    );
    assert_eq!(
        (i["sig_ok"].as_u64(), i["sig_bad"].as_u64(), i["sig_unchecked"].as_u64()),
        (Some(17), Some(0), Some(0)),
        "{i}"
    );
    assert_eq!(sum(&r["integrity_checks"]), 31 + 17);
    // lemf_check recomputes every hash PDU (one SHA-256 over the concatenated encodings of
    // the included PDUs, as OpenLI's mediator does): all 31 match.
    assert_eq!(r["integrity_hash_matches_concatenation"]["ok"], 31, "{r}");
    assert_eq!(r["integrity_hash_matches_concatenation"]["differs"], 0, "{r}");
    assert_eq!(r["oids"].as_object().unwrap().keys().collect::<Vec<_>>(), vec!["0.4.0.2.2.5.1.43"]);
    // Our keep-alives (delivery confirmations) were answered by the LEMF.
    assert!(r["keepalives_answered"].as_u64().unwrap() >= 2, "{r}");
    let l = &rep.leas[0];
    assert_eq!(l.hi3.spooled, 250 + 40 + 29 + 15);
    assert_eq!(l.counts.pdus, 250 + 40 + 3);
}

#[test]
fn lemf_outage_mid_delivery_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (hi2, hi3) = (free_port(), free_port());
    let (leas, warrants) = setup(&warrants_text(hi2, hi3, ""));
    // The first LEMF stops 2 s after it started, in the middle of a 4 s delivery.
    let first = Lemf::start(hi2, hi3, &dir.path().join("r1.json"), 2.0);
    let mut d = Delivery::start(leas, &warrants, &dir.path().join("spool")).unwrap();
    let a = Liid::new("LIID-A").unwrap();
    const N: u32 = 3000;
    for batch in 0..30 {
        feed_cc(&mut d, &a, 1, [10, 0, 0, 5], batch * 100..(batch + 1) * 100);
        std::thread::sleep(Duration::from_millis(130));
    }
    let (r1, s1) = first.wait();
    let second = Lemf::start(hi2, hi3, &dir.path().join("r2.json"), 60.0);
    let rep = d.finish(Duration::from_secs(60));
    assert!(rep.complete(), "{rep:#?}");
    assert!(rep.leas[0].hi3.errors >= 1, "the outage was seen: {rep:#?}");
    let (r2, s2) = second.wait();
    let got1 = seqs(&s1, "hi3|LIID-A|1|cc");
    let got2 = seqs(&s2, "hi3|LIID-A|1|cc");
    assert!(!got1.is_empty() && got1.len() < N as usize, "first LEMF got {} of {N}", got1.len());
    eprintln!("first LEMF: {} PDUs, second: {}, errors: {:?}", got1.len(), got2.len(), rep.leas[0].hi3.last_error);
    let mut union: Vec<u64> = got1.iter().chain(&got2).copied().collect();
    union.sort();
    union.dedup();
    assert_eq!(union, (0..u64::from(N)).collect::<Vec<_>>(), "lost PDUs");
    for r in [&r1, &r2] {
        assert_eq!(r["undecodable"], 0);
        assert_eq!(r["bad_ber"], 0);
    }
    // Duplicates are allowed only as a resend of what the first LEMF may have had in flight.
    assert!(got1.len() + got2.len() - N as usize <= 3000, "{} resent", got1.len() + got2.len() - N as usize);
}

#[test]
fn lemf_killed_with_sigkill_mid_burst_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (hi2, hi3) = (free_port(), free_port());
    // Small segments: rotation and deletion of delivered segments happen during the test.
    let (leas, warrants) = setup(&warrants_text(hi2, hi3, "spool = { segment_bytes = 65536 }"));
    let log = dir.path().join("lemf1.log");
    let first = Lemf::start_env(hi2, hi3, &dir.path().join("r1.json"), 60.0, &[("LEMF_SEQ_LOG", &log)]);
    let mut d = Delivery::start(leas, &warrants, &dir.path().join("spool")).unwrap();
    let a = Liid::new("LIID-A").unwrap();
    const N: u32 = 20_000;
    feed_cc(&mut d, &a, 1, [10, 0, 0, 5], 0..N);
    // Kill it while it is still reading: some PDUs processed, others in its socket buffers.
    let key = "hi3|LIID-A|1|cc";
    let t0 = std::time::Instant::now();
    while logged_seqs(&log, key).len() < 2000 {
        assert!(t0.elapsed() < Duration::from_secs(60), "LEMF received nothing");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut child = first.child;
    child.kill().unwrap();
    child.wait().unwrap();
    let got1 = logged_seqs(&log, key);
    let second = Lemf::start(hi2, hi3, &dir.path().join("r2.json"), 120.0);
    let rep = d.finish(Duration::from_secs(120));
    assert!(rep.complete(), "{rep:#?}");
    // 20000 PDUs made dozens of 64 KiB segments: the delivered ones are gone, the one left
    // starts (its name is its logical offset) beyond the first megabyte.
    let segs = segments(&dir.path().join("spool/lemf"), "hi3");
    assert!(segs.len() <= 2, "{segs:?}");
    let name = segs[0].file_name().unwrap().to_string_lossy().to_string();
    let start = u64::from_str_radix(name.trim_start_matches("hi3.").trim_end_matches(".seg"), 16).unwrap();
    assert!(start > 1 << 20, "{name}");
    let (r2, s2) = second.wait();
    let got2 = seqs(&s2, key);
    eprintln!("killed LEMF had {} PDUs, second got {}", got1.len(), got2.len());
    assert!(got1.len() < N as usize, "the kill came too late to test anything");
    let mut union: Vec<u64> = got1.iter().chain(&got2).copied().collect();
    union.sort();
    union.dedup();
    assert_eq!(union.len(), N as usize, "lost PDUs");
    assert_eq!(union, (0..u64::from(N)).collect::<Vec<_>>());
    assert_eq!(r2["undecodable"], 0);
    // The second LEMF, slow behind a backlog, got everything once: no spurious reconnect.
    assert!(all_zero(&r2["sequence_duplicates"]), "{r2}");
    assert_eq!(rep.leas[0].hi3.connects, 2, "{rep:#?}");
}

#[test]
fn sender_crash_resumes_from_the_spool_with_cin_reset() {
    let dir = tempfile::tempdir().unwrap();
    let (hi2, hi3) = (free_port(), free_port());
    let (leas, warrants) = setup(&warrants_text(hi2, hi3, ""));
    let spool = dir.path().join("spool");
    let a = Liid::new("LIID-A").unwrap();
    {
        // No LEMF yet: everything stays in the spool; then the sender "crashes" (no finish).
        let mut d = Delivery::start(leas.clone(), &warrants, &spool).unwrap();
        feed_cc(&mut d, &a, 1, [10, 0, 0, 5], 0..500);
        drop(d);
    }
    let spooled = segment_bytes(&spool.join("lemf"), "hi3");
    assert!(spooled >= 500 * (8 + 68), "spool holds the PDUs: {spooled} bytes");
    let lemf = Lemf::start(hi2, hi3, &dir.path().join("r.json"), 60.0);
    let mut d = Delivery::start(leas, &warrants, &spool).unwrap();
    d.deliver(&begin(&a, 2, [10, 0, 0, 5])).unwrap();
    feed_cc(&mut d, &a, 2, [10, 0, 0, 5], 0..20);
    let rep = d.finish(Duration::from_secs(60));
    assert!(rep.complete(), "{rep:#?}");
    let (r, s) = lemf.wait();
    assert_eq!(seqs(&s, "hi3|LIID-A|1|cc"), (0..500).collect::<Vec<_>>());
    assert_eq!(seqs(&s, "hi3|LIID-A|2|cc"), (0..20).collect::<Vec<_>>());
    assert_eq!(r["undecodable"], 0);
    assert_eq!(seqs(&s, "hi2|LIID-A|2|iri"), vec![0]);
    // After the restart, one cINReset before the first PDU of each stream of the (LIID, CIN)
    // used again: IRI on HI2, CC on HI3.
    assert_eq!(r["by_payload"]["tri.cINReset"], 2, "{r}");
    assert_eq!(rep.leas[0].counts.cin_resets, 2);
    assert_eq!(rep.leas[0].hi3.still_spooled_bytes, 0);
}

/// CA `ca` (the `tls_ca` the sender trusts) and `rogue`; the LEMF's server certificates `srv`
/// from `ca` and `rsrv` from `rogue` (IP SAN 127.0.0.1), the sender's client certificate `client`
/// (DNS SAN tapir-mdf) from `ca`.
fn make_certs(dir: &std::path::Path) {
    std::fs::write(dir.join("ip.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(dir.join("client.ext"), "subjectAltName=DNS:tapir-mdf\n").unwrap();
    common::make_pki(
        dir,
        &["ca", "rogue"],
        &[
            ("srv", "srv", "ca", "ip.ext"),
            ("client", "client", "ca", "client.ext"),
            ("rsrv", "rsrv", "rogue", "ip.ext"),
        ],
    );
}

/// TLS fronts for HI2 and HI3 in front of the LEMF, with `cert` as the server certificate.
fn proxies(dir: &std::path::Path, cert: &str, up2: u16, up3: u16) -> (u16, u16, Vec<std::process::Child>) {
    let (p2, p3) = (free_port(), free_port());
    let mut kids = Vec::new();
    for (p, up) in [(p2, up2), (p3, up3)] {
        let mut c = Command::new("python3")
            .arg(format!("{DATA}/tls_proxy.py"))
            .arg(p.to_string())
            .arg(dir.join(format!("{cert}.pem")))
            .arg(dir.join(format!("{cert}.key")))
            .arg(dir.join("ca.pem"))
            .arg(up.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(c.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "listening");
        kids.push(c);
    }
    (p2, p3, kids)
}

fn tls_extra(dir: &std::path::Path) -> String {
    let p = |f: &str| dir.join(f).display().to_string();
    format!("tls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"", p("ca.pem"), p("client.pem"), p("client.key"))
}

fn proxy_output(mut kids: Vec<std::process::Child>) -> String {
    let mut out = String::new();
    for c in &mut kids {
        let _ = c.kill();
        let _ = c.wait();
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(c.stdout.as_mut().unwrap(), &mut s);
        out.push_str(&s);
    }
    out
}

#[test]
fn mutual_tls_delivers_and_refuses_a_foreign_lemf_certificate() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let a = Liid::new("LIID-A").unwrap();

    // Good LEMF certificate (signed by tls_ca): delivered over TLS 1.3 with our client certificate.
    let (hi2, hi3) = (free_port(), free_port());
    let lemf = Lemf::start(hi2, hi3, &dir.path().join("r.json"), 60.0);
    let (p2, p3, kids) = proxies(dir.path(), "srv", hi2, hi3);
    let (leas, warrants) = setup(&warrants_text(p2, p3, &tls_extra(dir.path())));
    let mut d = Delivery::start(leas, &warrants, &dir.path().join("spool1")).unwrap();
    d.deliver(&begin(&a, 1, [10, 0, 0, 5])).unwrap();
    feed_cc(&mut d, &a, 1, [10, 0, 0, 5], 0..50);
    let rep = d.finish(Duration::from_secs(60));
    assert!(rep.complete(), "{rep:#?}");
    let (r, s) = lemf.wait();
    let out = proxy_output(kids);
    assert!(out.contains("client: {'commonName': 'client'} TLSv1.3"), "{out}");
    assert_eq!(r["undecodable"], 0);
    assert_eq!(seqs(&s, "hi3|LIID-A|1|cc"), (0..50).collect::<Vec<_>>());
    assert_eq!(seqs(&s, "hi2|LIID-A|1|iri"), vec![0]);

    // An LEMF whose certificate another CA signed: no PDU leaves, everything stays spooled.
    let (hi2, hi3) = (free_port(), free_port());
    let (p2, p3, kids) = proxies(dir.path(), "rsrv", hi2, hi3);
    let (leas, warrants) = setup(&warrants_text(p2, p3, &tls_extra(dir.path())));
    let mut d = Delivery::start(leas, &warrants, &dir.path().join("spool2")).unwrap();
    feed_cc(&mut d, &a, 1, [10, 0, 0, 5], 0..10);
    let rep = d.finish(Duration::from_secs(3));
    let out = proxy_output(kids);
    let l = &rep.leas[0];
    assert!(!rep.complete() && !l.hi3.connected && l.hi3.sent == 0, "{rep:#?}");
    assert!(l.hi3.still_spooled_bytes > 0);
    let err = l.hi3.last_error.clone().unwrap_or_default();
    assert!(err.contains("UnknownIssuer"), "{err}");
    // The LEMF side saw our alert: its handshake failed, no client was accepted.
    assert!(out.contains("handshake-failed") && !out.contains("client:"), "{out}");
}
