//! IP fragment reassembly: hand-built fragment sets (in order, reverse, overlapping, duplicate,
//! timeout, memory and count bounds, overlay zones, hostile offsets) and real fragmented
//! captures whose reassembled payload must equal tshark's.

use crate::decode_util;

use std::process::Command;

use decode_util::build::*;
use decode_util::{read_capture, shared_pcap};
use tapir::capture::{Frame, LinkType};
use tapir::decode::{DecodeConfig, DecodeError, Decoder, Transport};
use tapir::timestamp::Timestamp;

const A4: [u8; 4] = [192, 0, 2, 1];
const B4: [u8; 4] = [198, 51, 100, 2];

/// What one decode call said, owned.
#[derive(Debug, PartialEq)]
enum Out {
    Fragment,
    Udp(u16, u16, Vec<u8>),
    Err(DecodeError),
}

fn feed(dec: &mut Decoder, ts: i64, link: LinkType, pkt: &[u8]) -> Out {
    let f = Frame { ts: Timestamp(ts), link, data: pkt, orig_len: pkt.len() as u32 };
    match dec.decode(&f) {
        Ok(d) => match d.transport {
            Transport::Fragment => {
                assert!(d.ip.is_some(), "a held fragment still carries its addresses");
                assert!(d.payload.is_empty());
                Out::Fragment
            }
            Transport::Udp { src_port, dst_port } => Out::Udp(src_port, dst_port, d.payload.to_vec()),
            t => panic!("unexpected {t:?}"),
        },
        Err(e) => Out::Err(e),
    }
}

/// A UDP datagram 1234 -> 53 with `n` payload bytes 0, 1, 2, ... (mod 251).
fn datagram(n: usize) -> (Vec<u8>, Vec<u8>) {
    let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    (udp(1234, 53, &body), body)
}

/// IPv4 fragment of `ip_payload[off..off+len]` (offset in bytes, a multiple of 8).
fn frag4(id: u16, ip_payload: &[u8], off: usize, len: usize, last: bool) -> Vec<u8> {
    let end = (off + len).min(ip_payload.len());
    ipv4_full(A4, B4, 17, id, !last, (off / 8) as u16, &[], &ip_payload[off..end])
}

fn cfg() -> DecodeConfig {
    DecodeConfig::default()
}

#[test]
fn in_order_and_reverse() {
    let (dg, body) = datagram(100); // 108 bytes of IP payload: fragments 0..48, 48..96, 96..108
    let f = [frag4(7, &dg, 0, 48, false), frag4(7, &dg, 48, 48, false), frag4(7, &dg, 96, 12, true)];
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let mut dec = Decoder::new(cfg());
        assert_eq!(feed(&mut dec, 0, LinkType::Ipv4, &f[order[0]]), Out::Fragment);
        assert_eq!(dec.stats().frag_datagrams_held, 1);
        assert_eq!(feed(&mut dec, 1, LinkType::Ipv4, &f[order[1]]), Out::Fragment);
        assert_eq!(dec.stats().frag_fragments_held, 2);
        assert_eq!(feed(&mut dec, 2, LinkType::Ipv4, &f[order[2]]), Out::Udp(1234, 53, body.clone()), "{order:?}");
        let s = dec.stats();
        assert_eq!((s.frag_reassembled, s.frag_datagrams_held, s.frag_fragments_held, s.frag_bytes_held), (1, 0, 0, 0));
    }
}

#[test]
fn overlap_first_wins_and_duplicates_counted() {
    let (dg, body) = datagram(100);
    let mut dec = Decoder::new(cfg());
    assert_eq!(feed(&mut dec, 0, LinkType::Ipv4, &frag4(9, &dg, 0, 48, false)), Out::Fragment);
    // A later fragment rewriting bytes 40..56 with 0xee: the first copy of 40..48 must win,
    // 48..56 is new and taken from it.
    let mut evil = dg.clone();
    evil[40..56].fill(0xee);
    assert_eq!(feed(&mut dec, 0, LinkType::Ipv4, &frag4(9, &evil, 40, 16, false)), Out::Fragment);
    // An exact duplicate of the first fragment.
    assert_eq!(feed(&mut dec, 0, LinkType::Ipv4, &frag4(9, &dg, 0, 48, false)), Out::Fragment);
    assert_eq!(feed(&mut dec, 0, LinkType::Ipv4, &frag4(9, &dg, 56, 40, false)), Out::Fragment);
    let got = feed(&mut dec, 0, LinkType::Ipv4, &frag4(9, &dg, 96, 12, true));
    let mut want = body.clone();
    want[48 - 8..56 - 8].fill(0xee); // UDP payload = IP payload minus the 8-byte UDP header
    assert_eq!(got, Out::Udp(1234, 53, want));
    assert_eq!(dec.stats().frag_overlaps, 2);
}

#[test]
fn timeout_expires_lazily() {
    let (dg, _) = datagram(100);
    let cfg = DecodeConfig { frag_timeout_ns: 1_000, ..cfg() };
    let mut dec = Decoder::new(cfg);
    assert_eq!(feed(&mut dec, 0, LinkType::Ipv4, &frag4(3, &dg, 0, 48, false)), Out::Fragment);
    assert_eq!(feed(&mut dec, 999, LinkType::Ipv4, &frag4(3, &dg, 48, 48, false)), Out::Fragment);
    assert_eq!(dec.stats().frag_expired, 0);
    // At 1000 ns after the first fragment the datagram is gone: the last one starts afresh.
    assert_eq!(feed(&mut dec, 1_000, LinkType::Ipv4, &frag4(3, &dg, 96, 12, true)), Out::Fragment);
    let s = dec.stats();
    assert_eq!((s.frag_expired, s.frag_reassembled, s.frag_datagrams_held, s.frag_fragments_held), (1, 0, 1, 1));
    // Any later frame, fragment or not, expires the rest.
    let plain = ipv4(A4, B4, 17, &udp(1, 2, b""));
    assert_eq!(feed(&mut dec, 5_000, LinkType::Ipv4, &plain), Out::Udp(1, 2, vec![]));
    assert_eq!((dec.stats().frag_expired, dec.stats().frag_bytes_held), (2, 0));
}

#[test]
fn memory_and_count_bounds_evict_oldest() {
    let (dg, body) = datagram(100);
    // 100 bytes: one 48-byte first fragment fits, a second datagram's does not without eviction.
    let mut dec = Decoder::new(DecodeConfig { frag_max_bytes: 100, ..cfg() });
    assert_eq!(feed(&mut dec, 0, LinkType::Ipv4, &frag4(1, &dg, 0, 48, false)), Out::Fragment);
    assert_eq!(feed(&mut dec, 1, LinkType::Ipv4, &frag4(2, &dg, 0, 96, false)), Out::Fragment);
    let s = dec.stats();
    assert_eq!((s.frag_dropped_memory, s.frag_datagrams_held, s.frag_bytes_held), (1, 1, 96));
    // Datagram 1 was evicted: its remaining fragments cannot complete it.
    assert_eq!(feed(&mut dec, 2, LinkType::Ipv4, &frag4(1, &dg, 48, 60, true)), Out::Fragment);
    // A datagram larger than the whole budget is refused, and counted.
    let (big, _) = datagram(300);
    assert_eq!(feed(&mut dec, 3, LinkType::Ipv4, &frag4(5, &big, 0, 200, false)), Out::Fragment);
    assert!(dec.stats().frag_bytes_held <= 100);

    let mut dec = Decoder::new(DecodeConfig { frag_max_datagrams: 2, ..cfg() });
    for id in 1..=3 {
        assert_eq!(feed(&mut dec, id, LinkType::Ipv4, &frag4(id as u16, &dg, 0, 48, false)), Out::Fragment);
    }
    assert_eq!((dec.stats().frag_datagrams_held, dec.stats().frag_dropped_memory), (2, 1));
    // 2 and 3 are still held and complete; 1 was the oldest and went.
    assert_eq!(feed(&mut dec, 9, LinkType::Ipv4, &frag4(3, &dg, 48, 60, true)), Out::Udp(1234, 53, body));
}

/// The same inner addresses and IP id in two VXLAN segments: fragments must not mix.
#[test]
fn overlay_zones_do_not_mix() {
    let (dg, body) = datagram(100);
    let wrap = |vni: u32, inner: &[u8]| {
        let e = eth(MAC_D, MAC_C, 0x0800, inner);
        eth(MAC_B, MAC_A, 0x0800, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, &udp(1, 4789, &cat(&[&vxlan(vni), &e]))))
    };
    let mut dec = Decoder::new(cfg());
    assert_eq!(feed(&mut dec, 0, LinkType::Ethernet, &wrap(100, &frag4(4, &dg, 0, 48, false))), Out::Fragment);
    assert_eq!(feed(&mut dec, 0, LinkType::Ethernet, &wrap(200, &frag4(4, &dg, 48, 60, true))), Out::Fragment);
    assert_eq!(dec.stats().frag_datagrams_held, 2);
    assert_eq!(
        feed(&mut dec, 0, LinkType::Ethernet, &wrap(100, &frag4(4, &dg, 48, 60, true))),
        Out::Udp(1234, 53, body)
    );
}

#[test]
fn hostile_fragments_are_errors() {
    let mut dec = Decoder::new(cfg());
    // Offset 8189*8 = 65512 plus 48 bytes runs past 65535.
    let f = ipv4_full(A4, B4, 17, 1, true, 8189, &[], &[0u8; 48]);
    assert_eq!(
        feed(&mut dec, 0, LinkType::Ipv4, &f),
        Out::Err(DecodeError::Fragment("fragment ends beyond 65535 bytes"))
    );
    // Final fragment says 0..64, then another final says 0..72: total length changed.
    let (dg, _) = datagram(100);
    assert_eq!(feed(&mut dec, 0, LinkType::Ipv4, &frag4(2, &dg, 48, 16, true)), Out::Fragment);
    assert!(matches!(
        feed(&mut dec, 0, LinkType::Ipv4, &frag4(2, &dg, 48, 24, true)),
        Out::Err(DecodeError::Fragment(_))
    ));
    // A non-final fragment past the known end.
    assert!(matches!(
        feed(&mut dec, 0, LinkType::Ipv4, &frag4(2, &dg, 64, 8, false)),
        Out::Err(DecodeError::Fragment(_))
    ));
    assert_eq!(dec.stats().frag_rejected, 3);
}

#[test]
fn ipv6_fragments_and_atomic() {
    let (dg, body) = datagram(100);
    let a6 = [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1];
    let b6 = [0x2001, 0xdb8, 0, 0, 0, 0, 0, 2];
    // Fragment header (RFC 8200 4.5): next header, reserved, offset<<3 | M, identification.
    let frag6 = |off: usize, len: usize, more: bool| {
        let end = (off + len).min(dg.len());
        let om = ((off / 8) as u16) << 3 | u16::from(more);
        let mut h = vec![17, 0];
        h.extend(om.to_be_bytes());
        h.extend(0xdead_beefu32.to_be_bytes());
        h.extend(&dg[off..end]);
        ipv6(a6, b6, 44, &h)
    };
    let mut dec = Decoder::new(cfg());
    assert_eq!(feed(&mut dec, 0, LinkType::Ipv6, &frag6(56, 60, false)), Out::Fragment);
    assert_eq!(feed(&mut dec, 0, LinkType::Ipv6, &frag6(0, 56, true)), Out::Udp(1234, 53, body));
    // An atomic fragment (offset 0, M 0) is a whole datagram and never touches the table.
    assert_eq!(feed(&mut dec, 0, LinkType::Ipv6, &frag6(0, 108, false)), Out::Udp(1234, 53, datagram(100).1));
    assert_eq!(dec.stats().frag_reassembled, 1);
}

/// Real fragmented captures: for every frame where tshark shows a (reassembled) UDP or TCP
/// payload, this decoder's payload has the same bytes.
#[test]
fn reassembled_payloads_equal_tsharks() {
    let files = [
        "zeek/testing/btest/Traces/ipv6-fragmented-dns.pcap",
        "ndpi/tests/cfgs/default/pcap/dns_fragmented.pcap",
        "fq/format/pcap/testdata/tcp-ipv4frag.pcap",
        "fq/format/pcap/testdata/ipv4frags.pcap",
        "suricata-verify/tests/defrag/bug-6887-defrag-eth-vlan-ipv6-tcp/frag-eth-vlan-ipv6-tcp.pcap",
        "suricata-verify/tests/defrag/bug-6942-6887-defrag-eth-ip-gre-ppp-ip-udp-data/eth-ip-gre-ppp-max-ip-packet.pcap",
    ];
    let mut reassembled = 0;
    for rel in files {
        let path = shared_pcap(rel);
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&path)
            .args(["-o", "ip.defragment:TRUE", "-o", "ipv6.defragment:TRUE", "-T", "fields"])
            .args(["-E", "occurrence=l", "-e", "udp.payload", "-e", "tcp.payload"])
            .output()
            .expect("tshark runs");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let want: Vec<String> = text.lines().map(|l| l.replace(['\t', ':'], "")).collect();
        let pkts = read_capture(&path);
        assert_eq!(pkts.len(), want.len(), "{rel}");
        let mut dec = Decoder::new(DecodeConfig::default());
        for (i, (p, w)) in pkts.iter().zip(&want).enumerate() {
            let d = dec.decode(&p.frame()).unwrap_or_else(|e| panic!("{rel} frame {}: {e}", i + 1));
            if w.is_empty() {
                continue;
            }
            assert_eq!(&hex::encode(d.payload), w, "{rel} frame {}", i + 1);
        }
        reassembled += dec.stats().frag_reassembled;
    }
    assert!(reassembled >= 8, "only {reassembled} datagrams reassembled");
}

/// zeek's fragmented-4: an overlapping fragment rewrites part of an HTTP request. tshark keeps
/// the later bytes, this decoder the earlier ones (first wins). The expectation is built from
/// tshark's per-fragment offsets and lengths (reassembly off) applied to the file's bytes in
/// arrival order, first writer wins, then cut after tshark's TCP header length.
#[test]
fn overlapping_capture_keeps_first_bytes() {
    let rel = "zeek/testing/btest/Traces/ipv4/fragmented-4.pcap";
    let path = shared_pcap(rel);
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-o", "ip.defragment:FALSE", "-T", "fields", "-e", "ip.frag_offset", "-e", "ip.hdr_len"])
        .args(["-e", "ip.len", "-e", "ip.flags.mf", "-e", "tcp.hdr_len"])
        .output()
        .expect("tshark runs");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let pkts = read_capture(&path);
    let mut buf = vec![0u8; 65536];
    let mut filled = vec![false; 65536];
    let mut tcp_hl = 0;
    let mut last_frag_frame = 0;
    for (i, line) in text.lines().enumerate() {
        let f: Vec<usize> = line.split('\t').map(|x| x.parse().unwrap_or(0)).collect();
        // tshark 4.0 prints ip.frag_offset in 8-byte units.
        let (off, hl, len, mf) = (f[0] * 8, f[1], f[2], f[3]);
        if off == 0 && mf == 0 {
            continue; // not a fragment
        }
        if off == 0 {
            tcp_hl = f[4];
        }
        last_frag_frame = i;
        let data = &pkts[i].data[14 + hl..14 + len];
        for (k, b) in data.iter().enumerate() {
            if !filled[off + k] {
                buf[off + k] = *b;
                filled[off + k] = true;
            }
        }
    }
    let total = filled.iter().rposition(|x| *x).expect("fragments") + 1;
    assert!(filled[..total].iter().all(|x| *x), "no holes");
    let want = &buf[tcp_hl..total];
    let mut dec = Decoder::new(DecodeConfig::default());
    let mut got = None;
    for (i, p) in pkts.iter().enumerate() {
        let d = dec.decode(&p.frame()).expect("decodes");
        if i == last_frag_frame {
            got = Some(d.payload.to_vec());
        }
    }
    assert_eq!(got.as_deref(), Some(want));
    assert!(dec.stats().frag_overlaps >= 1);
    assert!(String::from_utf8_lossy(want).contains("cmd.exe"), "the first-sent bytes are the request's");
}
