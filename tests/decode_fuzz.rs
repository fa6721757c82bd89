//! Random bytes and mutated real frames never panic the decoder, for any link type; and a
//! quick timing of the hot path (ignored: run with `--release -- --ignored --nocapture`).

use crate::decode_util;

use std::sync::OnceLock;

use decode_util::{read_capture, shared_pcap};
use proptest::prelude::*;
use tapir::capture::{Frame, LinkType};
use tapir::decode::{DecodeConfig, Decoder, Transport};
use tapir::timestamp::Timestamp;

const LINKS: [LinkType; 10] = [
    LinkType::Ethernet,
    LinkType::Raw,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Null,
    LinkType::Loop,
    LinkType::Other(147),
    LinkType::Other(9),
];

/// Frames from captures rich in tunnels and fragments, as seeds for mutation.
fn seeds() -> &'static Vec<(LinkType, Vec<u8>)> {
    static SEEDS: OnceLock<Vec<(LinkType, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        [
            "tcpdump/tests/various_gre.pcap",
            "tcpdump/tests/geneve.pcap",
            "tcpdump/tests/erspan-type-iii-ft-0.pcap",
            "zeek/testing/btest/Traces/tunnels/vxlan-triple-v2.pcap",
            "zeek/testing/btest/Traces/mixed-vlan-mpls.pcap",
            "zeek/testing/btest/Traces/ipv6-fragmented-dns.pcap",
            "zeek/testing/btest/Traces/trunc/mpls-6in6-6in6-4in6-trunc.pcap",
            "fq/format/pcap/testdata/sll2_tcp.pcap",
            "tcpdump/tests/quic_handshake_truncated.pcap",
        ]
        .iter()
        .flat_map(|rel| read_capture(&shared_pcap(rel)))
        .map(|p| (p.link, p.data))
        .collect()
    })
}

fn decode_all_links(dec: &mut Decoder, ts: i64, data: &[u8]) {
    for link in LINKS {
        let f = Frame { ts: Timestamp(ts), link, data, orig_len: data.len() as u32 };
        if let Ok(d) = dec.decode(&f) {
            // Whatever came out must be internally consistent.
            if d.ip.is_none() {
                assert!(matches!(d.transport, Transport::None), "{:?} without IP", d.transport);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let cfg = DecodeConfig { frag_max_bytes: 4096, frag_max_datagrams: 4, ..DecodeConfig::default() };
        let mut dec = Decoder::new(cfg);
        decode_all_links(&mut dec, 0, &data);
    }

    #[test]
    fn mutated_real_frames_never_panic(
        pick in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let seeds = seeds();
        let (link, frame) = &seeds[pick.index(seeds.len())];
        let mut data = frame.clone();
        for (at, val) in flips {
            if !data.is_empty() {
                let i = at.index(data.len());
                data[i] = val;
            }
        }
        let cfg = DecodeConfig { frag_max_bytes: 8192, frag_max_datagrams: 4, max_depth: 4, ..DecodeConfig::default() };
        let mut dec = Decoder::new(cfg);
        // Whole, then truncated, then as every other link type; fragments accumulate across calls.
        let f = Frame { ts: Timestamp(0), link: *link, data: &data, orig_len: data.len() as u32 };
        let _ = dec.decode(&f);
        let short = &data[..cut.index(data.len() + 1)];
        decode_all_links(&mut dec, 1, short);
        decode_all_links(&mut dec, 2, &data);
        prop_assert!(dec.stats().frag_bytes_held <= 8192);
        prop_assert!(dec.stats().frag_datagrams_held <= 4);
    }
}

/// ns/packet for a plain Ethernet/IPv4/TCP frame (the hot path). Timing only; not run by
/// default: `cargo test --release --test it decode_fuzz:: -- --ignored --nocapture`.
#[test]
#[ignore]
fn hot_path_timing() {
    let mut pkt = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 80, 1, 65535)
        .ack(1)
        .write(&mut pkt, &[0u8; 1000])
        .unwrap();
    let mut dec = Decoder::new(DecodeConfig::default());
    let n = 5_000_000u32;
    let mut sum = 0u64;
    let start = std::time::Instant::now();
    for i in 0..n {
        let f = Frame { ts: Timestamp(i64::from(i)), link: LinkType::Ethernet, data: &pkt, orig_len: pkt.len() as u32 };
        let d = dec.decode(std::hint::black_box(&f)).unwrap();
        sum += d.payload.len() as u64;
    }
    let el = start.elapsed();
    assert_eq!(sum, u64::from(n) * 1000);
    println!("decode Ethernet/IPv4/TCP: {:.1} ns/packet", el.as_nanos() as f64 / f64::from(n));
}
