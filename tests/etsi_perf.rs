//! Encoding throughput of 1.4 KB IPCC PDUs (target: > 1 M PDUs/s in release). Ignored by
//! default: `cargo test --release --test it etsi_perf:: -- --ignored --nocapture`.

use std::time::Instant;

use tapir::deliver::etsi::{Encoder, EtsiConfig, PayloadDirection, PduHeader};
use tapir::timestamp::Timestamp;

#[test]
#[ignore]
fn ipcc_encoding_rate() {
    let mut c = EtsiConfig::new("tapir-op");
    c.network_element_id = Some("poi-1".into());
    c.authorization_country_code = Some("DE".into());
    c.delivery_country_code = Some("DE".into());
    let enc = Encoder::new(c).unwrap();
    let packet = vec![0x45u8; 1400];
    let mut out = Vec::with_capacity(1 << 20);
    let n = 2_000_000u32;
    let t0 = Instant::now();
    let mut bytes = 0usize;
    for seq in 0..n {
        out.clear();
        let hdr = PduHeader {
            liid: "LIID-0000001",
            cin: Some(u64::from(seq >> 8)),
            seq,
            ts: Timestamp::from_secs_nanos(1_772_359_200, seq),
        };
        enc.ipcc(&mut out, &hdr, &packet, PayloadDirection::FromTarget).unwrap();
        bytes += out.len();
    }
    let dt = t0.elapsed().as_secs_f64();
    let rate = f64::from(n) / dt;
    println!(
        "{n} IPCC PDUs of {} bytes in {dt:.3} s: {:.2} M PDUs/s, {:.2} GB/s",
        out.len(),
        rate / 1e6,
        bytes as f64 / dt / 1e9
    );
    assert!(out.len() > 1400);
}
