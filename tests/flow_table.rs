//! Flow table behaviour on real IPv4/TCP/UDP packets (built with etherparse, decoded back with
//! etherparse into `Decoded` views): sessions, CINs, IRI, CC and reassembled stream objects.
//! Expected hashes are computed with `ring` over the data the test sent; expected byte counters
//! are the IP packet lengths (these packets carry no IP or TCP options).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use ring::digest;
use tapir::analyze::stream::RawStream;
use tapir::capture::{Frame, LinkType};
use tapir::content::FileLayer;
use tapir::decode::{tcp_flags, Decoded, IpInfo, Overlay, TcpInfo, Transport};
use tapir::flow::{FlowConfig, FlowTable};
use tapir::record::{Cin, Close, Dir, IriEvent, IriRecord, ObjectId, ObjectRecord, Record, RecordSink, VecSink};
use tapir::select::{Liid, Match, Provenance, Scope};
use tapir::timestamp::Timestamp;

const C: [u8; 4] = [10, 0, 0, 5];
const S: [u8; 4] = [192, 0, 2, 80];
const CP: u16 = 40000;
const SP: u16 = 21;

fn m(liid: &str, scope: Scope) -> Match {
    Match {
        liid: Liid::new(liid).unwrap(),
        scope,
        provenance: Arc::new(Provenance { selector: "ipv4:10.0.0.5".into(), target: "test".into(), chain: vec![] }),
    }
}

/// A flow table whose TCP connections become raw stream objects; UDP flows get the pipeline's
/// datagram analyzer (which leaves datagrams that are no media protocol to the CC).
fn table(cfg: FlowConfig) -> FlowTable {
    FlowTable::new(
        cfg,
        Box::new(|d| match &*d.proto {
            "udp" => tapir::analyze::udp::analyzer(),
            _ => Box::new(RawStream::new()),
        }),
    )
}

/// A raw IPv4/TCP packet. `flags` from `tcp_flags`; ACK uses `ack`.
#[allow(clippy::too_many_arguments)]
fn tcp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sp, dp, seq, 65535);
    if flags & tcp_flags::SYN != 0 {
        b = b.syn();
    }
    if flags & tcp_flags::ACK != 0 {
        b = b.ack(ack);
    }
    if flags & tcp_flags::FIN != 0 {
        b = b.fin();
    }
    if flags & tcp_flags::RST != 0 {
        b = b.rst();
    }
    if flags & tcp_flags::PSH != 0 {
        b = b.psh();
    }
    let mut v = Vec::new();
    b.write_to_vec(&mut v, payload).unwrap();
    v
}

fn udp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 64).udp(sp, dp).write_to_vec(&mut v, payload).unwrap();
    v
}

/// Decodes a raw IP packet into the view the flow table takes.
fn decode(bytes: &[u8]) -> Decoded<'_> {
    let sp = SlicedPacket::from_ip(bytes).unwrap();
    let Some(NetSlice::Ipv4(v4)) = sp.net else { panic!("ipv4 expected") };
    let h = v4.header();
    let ip = IpInfo {
        src: IpAddr::V4(h.source_addr()),
        dst: IpAddr::V4(h.destination_addr()),
        proto: h.protocol().0,
        ttl: h.ttl(),
        len: u32::from(h.total_len()),
        payload_len: 0,
    };
    let (transport, payload) = match sp.transport {
        Some(TransportSlice::Tcp(t)) => {
            let mut flags = 0;
            for (on, f) in [
                (t.fin(), tcp_flags::FIN),
                (t.syn(), tcp_flags::SYN),
                (t.rst(), tcp_flags::RST),
                (t.psh(), tcp_flags::PSH),
                (t.ack(), tcp_flags::ACK),
            ] {
                if on {
                    flags |= f;
                }
            }
            let info = TcpInfo {
                src_port: t.source_port(),
                dst_port: t.destination_port(),
                seq: t.sequence_number(),
                ack: t.acknowledgment_number(),
                flags,
                window: t.window_size(),
                mss: None,
            };
            (Transport::Tcp(info), t.payload())
        }
        Some(TransportSlice::Udp(u)) => {
            (Transport::Udp { src_port: u.source_port(), dst_port: u.destination_port() }, u.payload())
        }
        _ => panic!("tcp or udp expected"),
    };
    let ip = IpInfo { payload_len: payload.len() as u32, ..ip };
    // No checksum material: this tests the table, not what `flow::evidence` refuses.
    Decoded {
        overlay: Overlay::default(),
        mac: None,
        ip: Some(ip),
        transport,
        payload,
        wire: Default::default(),
        fragment: Default::default(),
    }
}

struct Rig {
    t: FlowTable,
    files: FileLayer,
    sink: Sink,
}

impl Rig {
    fn new(cfg: FlowConfig) -> Rig {
        Rig { t: table(cfg), files: FileLayer::new(), sink: Sink::default() }
    }
    fn feed(&mut self, m: &Match, secs: i64, pkt: &[u8]) {
        let frame =
            Frame { ts: Timestamp::from_secs(secs), link: LinkType::Raw, data: pkt, orig_len: pkt.len() as u32 };
        let d = decode(pkt);
        self.t.packet(m, &frame, &d, &mut self.files, &mut self.sink);
    }
    /// Lets capture time pass `secs`: closed flows leave the table and report their end.
    fn settle(&mut self, secs: i64) {
        self.t.tick(Timestamp::from_secs(secs), &mut self.files, &mut self.sink);
    }
    fn ends(&self) -> Vec<&IriRecord> {
        self.sink.iri.iter().filter(|r| matches!(r.event, IriEvent::SessionEnd { .. })).collect()
    }
    fn object(&self, dir: Dir) -> &ObjectRecord {
        self.sink.objects.iter().find(|o| o.meta.direction == dir).expect("object for direction")
    }
    /// The stored bytes of the (single) object of direction `dir`, as the sink assembled them.
    fn bytes_of(&self, dir: Dir) -> Vec<u8> {
        let ids: Vec<_> = self.sink.dirs.iter().filter(|(_, d)| **d == dir).map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), 1, "one {dir:?} object");
        self.sink.object_bytes.iter().find(|((_, i), _)| *i == ids[0]).map(|(_, b)| b.clone()).unwrap()
    }
}

/// A `VecSink` that also remembers each object's direction, to find its stored bytes.
#[derive(Default)]
struct Sink {
    inner: VecSink,
    dirs: HashMap<ObjectId, Dir>,
}

impl RecordSink for Sink {
    fn record(&mut self, rec: Record<'_>) {
        if let Record::ObjectBegin { id, meta, .. } = &rec {
            self.dirs.insert(*id, meta.direction);
        }
        self.inner.record(rec);
    }
}

impl std::ops::Deref for Sink {
    type Target = VecSink;
    fn deref(&self) -> &VecSink {
        &self.inner
    }
}

fn sha256(b: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, b).as_ref())
}

fn end_fields(r: &IriRecord) -> (&tapir::record::Counters, Close, &[Vec<(u64, u64)>; 2]) {
    match &r.event {
        IriEvent::SessionEnd { counters, reason, gaps, .. } => (counters, *reason, gaps),
        e => panic!("not an end: {e:?}"),
    }
}

/// Client sends `up` in `chunks` segments (sent in `order`), server answers `down`; both FIN.
/// Returns the packets in send order and which side sent each.
fn conversation(isn_c: u32, isn_s: u32, up: &[u8], down: &[u8], chunk: usize) -> Vec<(bool, Vec<u8>)> {
    let (a, p) = (tcp_flags::ACK, tcp_flags::PSH);
    let mut v = vec![
        (true, tcp(C, CP, S, SP, isn_c, 0, tcp_flags::SYN, b"")),
        (false, tcp(S, SP, C, CP, isn_s, isn_c.wrapping_add(1), tcp_flags::SYN | a, b"")),
        (true, tcp(C, CP, S, SP, isn_c.wrapping_add(1), isn_s.wrapping_add(1), a, b"")),
    ];
    let c0 = isn_c.wrapping_add(1);
    let s0 = isn_s.wrapping_add(1);
    for (k, piece) in up.chunks(chunk).enumerate() {
        let seq = c0.wrapping_add((k * chunk) as u32);
        v.push((true, tcp(C, CP, S, SP, seq, s0, a | p, piece)));
    }
    let c_end = c0.wrapping_add(up.len() as u32);
    v.push((false, tcp(S, SP, C, CP, s0, c_end, a | p, down)));
    let s_end = s0.wrapping_add(down.len() as u32);
    v.push((true, tcp(C, CP, S, SP, c_end, s_end, a | tcp_flags::FIN, b"")));
    v.push((false, tcp(S, SP, C, CP, s_end, c_end.wrapping_add(1), a | tcp_flags::FIN, b"")));
    v.push((true, tcp(C, CP, S, SP, c_end.wrapping_add(1), s_end.wrapping_add(1), a, b"")));
    v
}

fn payload(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8).collect()
}

#[test]
fn complete_conversation() {
    let up = payload(5000, 1);
    let down = b"226 Transfer complete\r\n".to_vec();
    let pkts = conversation(1000, 7_000_000, &up, &down, 1460);
    let mut r = Rig::new(FlowConfig::default());
    let a = m("LIID-A", Scope::IriAndCc);
    let (mut want_pkts, mut want_bytes, mut want_payload) = ([0u64; 2], [0u64; 2], [0u64; 2]);
    for (k, (from_c, p)) in pkts.iter().enumerate() {
        r.feed(&a, 100 + k as i64, p);
        // The final ACK arrives after both FINs closed the session: it counts all the same.
        let d = if *from_c { 0 } else { 1 };
        want_pkts[d] += 1;
        want_bytes[d] += p.len() as u64;
        want_payload[d] += (p.len() - 40) as u64;
    }
    assert!(r.ends().is_empty(), "the end is reported when the closed flow leaves the table");
    r.settle(100 + pkts.len() as i64 + 11);
    assert_eq!(r.sink.cc.len(), pkts.len(), "one CC per packet");
    assert!(r.sink.cc.iter().all(|(l, cin, _, _)| &**l == "LIID-A" && *cin == Cin::FIRST));
    assert_eq!(r.sink.cc[4].3, pkts[4].1, "CC is the frame as captured");
    assert!(matches!(r.sink.iri[0].event, IriEvent::SessionBegin { .. }));
    assert_eq!(r.sink.iri[0].cin, Some(Cin::FIRST));
    let ends = r.ends();
    assert_eq!(ends.len(), 1);
    let (counters, reason, gaps) = end_fields(ends[0]);
    assert_eq!(reason, Close::Fin);
    assert_eq!(counters.packets, want_pkts);
    assert_eq!(counters.bytes, want_bytes);
    assert_eq!(counters.payload, want_payload);
    assert_eq!(counters.payload, [up.len() as u64, down.len() as u64]);
    assert!(gaps[0].is_empty() && gaps[1].is_empty());
    if let IriEvent::SessionEnd { flow, .. } = &ends[0].event {
        assert_eq!(flow.orig.ip(), IpAddr::V4(Ipv4Addr::from(C)));
        assert_eq!(flow.resp.port(), SP);
        assert_eq!(flow.proto, "tcp");
    }
    assert_eq!(r.sink.objects.len(), 2);
    for (dir, data) in [(Dir::Orig, &up), (Dir::Resp, &down)] {
        let o = r.object(dir);
        assert_eq!(o.sha256, sha256(data));
        assert_eq!(o.size, data.len() as u64);
        assert!(o.complete && o.gaps.is_empty());
        assert_eq!(&r.bytes_of(dir), data);
    }
    assert_eq!(r.t.stats().ended.fin, 1);
    assert_eq!(r.t.stats().late_packets, 1);
    assert_eq!(r.t.stats().active, 0);
}

#[test]
fn reordered_and_retransmitted_segments() {
    let up = payload(4000, 9);
    let mut pkts = conversation(55, 66, &up, b"ok", 500);
    // Data segments are packets 3..11: send them backwards, and one twice.
    pkts[3..11].reverse();
    let dup = pkts[5].clone();
    pkts.insert(8, dup);
    let mut r = Rig::new(FlowConfig::default());
    let a = m("L", Scope::IriAndCc);
    for (k, (_, p)) in pkts.iter().enumerate() {
        r.feed(&a, k as i64, p);
    }
    assert_eq!(r.bytes_of(Dir::Orig), up);
    assert_eq!(r.object(Dir::Orig).sha256, sha256(&up));
    assert!(r.t.stats().tcp.duplicate_bytes >= 500);
    assert_eq!(r.t.stats().tcp.buffered, 0);
    assert!(r.t.stats().tcp.buffered_peak >= 3500);
}

#[test]
fn mid_stream_flow_is_followed() {
    // No handshake: the server's data is seen first, so the server is the originator.
    let down = payload(3000, 3);
    let up = b"STOR x\r\n".to_vec();
    let (a, p) = (tcp_flags::ACK, tcp_flags::PSH);
    let pkts = [
        tcp(S, SP, C, CP, 900_000, 77, a | p, &down[..1000]),
        tcp(C, CP, S, SP, 77, 901_000, a, &up),
        tcp(S, SP, C, CP, 901_000, 85, a | p, &down[1000..]),
    ];
    let mut r = Rig::new(FlowConfig::default());
    let mm = m("L", Scope::IriAndCc);
    for (k, pk) in pkts.iter().enumerate() {
        r.feed(&mm, k as i64, pk);
    }
    r.t.finish(Timestamp::from_secs(10), &mut r.files, &mut r.sink);
    let ends = r.ends();
    let (counters, reason, _) = end_fields(ends[0]);
    assert_eq!(reason, Close::Shutdown);
    assert_eq!(counters.packets, [2, 1]);
    if let IriEvent::SessionEnd { flow, .. } = &ends[0].event {
        assert_eq!(flow.orig.ip(), IpAddr::V4(Ipv4Addr::from(S)), "first sender is the originator");
    }
    assert_eq!(r.bytes_of(Dir::Orig), down);
    assert_eq!(r.bytes_of(Dir::Resp), up);
}

#[test]
fn loss_is_a_gap_in_object_and_session_end() {
    let up = payload(3000, 5);
    let mut pkts = conversation(u32::MAX - 100, 42, &up, b"bye", 1000);
    // Packet 4 carries up[1000..2000]; the capture lost it (the server got it: its ACKs cover it).
    pkts.remove(4);
    let mut r = Rig::new(FlowConfig::default());
    let a = m("L", Scope::IriAndCc);
    for (k, (_, p)) in pkts.iter().enumerate() {
        r.feed(&a, k as i64, p);
    }
    r.settle(pkts.len() as i64 + 11);
    let ends = r.ends();
    assert_eq!(ends.len(), 1);
    let (counters, reason, gaps) = end_fields(ends[0]);
    assert_eq!(reason, Close::Fin, "the FIN was acknowledged: nothing more can come");
    assert_eq!(gaps[0], vec![(1000, 1000)]);
    assert!(gaps[1].is_empty());
    // SYN, ACK, two of the three data segments, FIN, and the last ACK after the close.
    assert_eq!(counters.packets[0], 6);
    let o = r.object(Dir::Orig);
    assert_eq!(o.gaps, vec![(1000, 1000)]);
    assert!(!o.complete);
    let mut expect = up.clone();
    expect[1000..2000].fill(0);
    assert_eq!(o.sha256, sha256(&expect));
    assert_eq!(r.bytes_of(Dir::Orig), expect);
    assert_eq!((r.t.stats().tcp.gaps, r.t.stats().tcp.gap_bytes), (1, 1000));
}

#[test]
fn two_liids_get_independent_sessions_and_copies() {
    let pkts = conversation(1, 2, b"hello", b"world", 100);
    let mut r = Rig::new(FlowConfig::default());
    let (a, b) = (m("A", Scope::IriAndCc), m("B", Scope::IriAndCc));
    // A has an earlier session of its own, so its CIN for this one is 2; B's is 1.
    r.feed(&a, 0, &udp(C, 5353, S, 53, b"q"));
    for (k, (_, p)) in pkts.iter().enumerate() {
        r.feed(&a, k as i64 + 1, p);
        r.feed(&b, k as i64 + 1, p);
    }
    r.settle(pkts.len() as i64 + 12);
    let cc_a: Vec<_> = r.sink.cc.iter().filter(|c| &*c.0 == "A").collect();
    let cc_b: Vec<_> = r.sink.cc.iter().filter(|c| &*c.0 == "B").collect();
    assert_eq!(cc_a.len(), pkts.len() + 1);
    assert_eq!(cc_b.len(), pkts.len());
    assert!(cc_a[1..].iter().all(|c| c.1 == Cin::new(2)));
    assert!(cc_b.iter().all(|c| c.1 == Cin::FIRST));
    let ends: Vec<_> = r.ends().into_iter().map(|e| (e.liid.to_string(), e.cin)).collect();
    assert_eq!(ends, vec![("A".to_string(), Some(Cin::new(2))), ("B".to_string(), Some(Cin::FIRST))]);
    assert_eq!(r.sink.objects.len(), 4, "each LIID gets its own two stream objects");
    assert_eq!(r.sink.objects.iter().filter(|o| &*o.liid == "B").count(), 2);
}

#[test]
fn idle_timeout_ends_udp_and_tcp() {
    let cfg = FlowConfig { tcp_idle_ns: 100_000_000_000, udp_idle_ns: 30_000_000_000, ..FlowConfig::default() };
    let mut r = Rig::new(cfg);
    let a = m("L", Scope::IriAndCc);
    r.feed(&a, 0, &udp(C, 5000, S, 53, b"query"));
    r.feed(&a, 1, &udp(S, 53, C, 5000, b"answer!"));
    // A TCP flow with a hole: the timeout flushes it as a gap.
    r.feed(&a, 0, &tcp(C, CP, S, SP, 10, 0, tcp_flags::SYN, b""));
    r.feed(&a, 1, &tcp(C, CP, S, SP, 21, 0, tcp_flags::ACK, b"later"));
    r.t.tick(Timestamp::from_secs(30), &mut r.files, &mut r.sink);
    assert!(r.ends().is_empty(), "not idle long enough");
    r.t.tick(Timestamp::from_secs(31), &mut r.files, &mut r.sink);
    let ends = r.ends();
    assert_eq!(ends.len(), 1);
    let (counters, reason, _) = end_fields(ends[0]);
    assert_eq!(reason, Close::IdleTimeout);
    assert_eq!(counters.packets, [1, 1]);
    assert_eq!(counters.bytes, [28 + 5, 28 + 7]);
    r.t.tick(Timestamp::from_secs(101), &mut r.files, &mut r.sink);
    let ends = r.ends();
    assert_eq!(ends.len(), 2);
    let (_, reason, gaps) = end_fields(ends[1]);
    assert_eq!(reason, Close::IdleTimeout);
    assert_eq!(gaps[0], vec![(0, 10)]);
    assert_eq!(r.bytes_of(Dir::Orig), b"\0\0\0\0\0\0\0\0\0\0later");
    assert_eq!(r.t.stats().ended.idle_timeout, 2);
    assert!(r.t.is_empty());
}

#[test]
fn lru_flow_is_evicted() {
    let cfg = FlowConfig { max_flows: 2, ..FlowConfig::default() };
    let mut r = Rig::new(cfg);
    let a = m("L", Scope::Iri);
    r.feed(&a, 0, &udp(C, 1, S, 53, b"a"));
    r.feed(&a, 1, &udp(C, 2, S, 53, b"b"));
    r.feed(&a, 2, &udp(C, 1, S, 53, b"a again")); // flow 1 is now the most recent
    r.feed(&a, 3, &udp(C, 3, S, 53, b"c")); // evicts flow 2
    let ends = r.ends();
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].cin, Some(Cin::new(2)));
    assert_eq!(end_fields(ends[0]).1, Close::Evicted);
    assert_eq!(r.t.stats().evictions, 1);
    assert_eq!(r.t.len(), 2);
    assert!(r.sink.cc.is_empty(), "IRI-only scope: no CC");
}

#[test]
fn memory_bound_flushes_with_a_gap() {
    let cfg = FlowConfig { per_direction_buffer: 1500, ..FlowConfig::default() };
    let mut r = Rig::new(cfg);
    let a = m("L", Scope::Cc);
    let data = payload(4000, 7);
    r.feed(&a, 0, &tcp(C, CP, S, SP, 0, 0, tcp_flags::SYN, b""));
    // Bytes 0..1000 lost; 1000..2000 and 2000..3000 arrive: the second exceeds the bound.
    r.feed(&a, 1, &tcp(C, CP, S, SP, 1001, 0, tcp_flags::ACK, &data[1000..2000]));
    r.feed(&a, 2, &tcp(C, CP, S, SP, 2001, 0, tcp_flags::ACK, &data[2000..3000]));
    assert_eq!(r.t.stats().tcp.bound_flushes, 1);
    assert_eq!((r.t.stats().tcp.gaps, r.t.stats().tcp.gap_bytes), (1, 1000));
    // The late segment is below the flushed point: dropped as a duplicate.
    r.feed(&a, 3, &tcp(C, CP, S, SP, 1, 0, tcp_flags::ACK, &data[..1000]));
    r.feed(&a, 4, &tcp(C, CP, S, SP, 3001, 0, tcp_flags::ACK | tcp_flags::FIN, &data[3000..]));
    r.t.finish(Timestamp::from_secs(5), &mut r.files, &mut r.sink);
    let o = r.object(Dir::Orig);
    assert_eq!(o.gaps, vec![(0, 1000)]);
    let mut expect = data.clone();
    expect[..1000].fill(0);
    assert_eq!(o.sha256, sha256(&expect));
    assert!(r.sink.iri.is_empty(), "CC-only scope: no IRI");
    assert_eq!(r.sink.cc.len(), 5);
}

#[test]
fn sequence_numbers_wrap() {
    let up = payload(10_000, 11);
    let pkts = conversation(u32::MAX - 3000, u32::MAX, &up, b"x", 1400);
    let mut r = Rig::new(FlowConfig::default());
    let a = m("L", Scope::IriAndCc);
    for (k, (_, p)) in pkts.iter().enumerate() {
        r.feed(&a, k as i64, p);
    }
    r.settle(pkts.len() as i64 + 11);
    assert_eq!(end_fields(r.ends()[0]).1, Close::Fin);
    assert_eq!(r.bytes_of(Dir::Orig), up);
    assert_eq!(r.object(Dir::Orig).sha256, sha256(&up));
    assert_eq!(r.bytes_of(Dir::Resp), b"x");
}

#[test]
fn rst_then_new_syn_starts_new_session() {
    let mut r = Rig::new(FlowConfig::default());
    let a = m("L", Scope::IriAndCc);
    r.feed(&a, 0, &tcp(C, CP, S, SP, 100, 0, tcp_flags::SYN, b""));
    r.feed(&a, 1, &tcp(S, SP, C, CP, 0, 101, tcp_flags::RST | tcp_flags::ACK, b""));
    r.feed(&a, 2, &tcp(S, SP, C, CP, 0, 101, tcp_flags::RST | tcp_flags::ACK, b"")); // late
    r.feed(&a, 3, &tcp(C, CP, S, SP, 5000, 0, tcp_flags::SYN, b""));
    let begins: Vec<_> =
        r.sink.iri.iter().filter(|i| matches!(i.event, IriEvent::SessionBegin { .. })).map(|i| i.cin).collect();
    assert_eq!(begins, vec![Some(Cin::FIRST), Some(Cin::new(2))]);
    assert_eq!(end_fields(r.ends()[0]).1, Close::Rst);
    let cins: Vec<u32> = r.sink.cc.iter().map(|c| c.1.get()).collect();
    assert_eq!(cins, vec![1, 1, 1, 2]);
}

#[test]
fn interim_and_absolute_timeout() {
    let cfg = FlowConfig { absolute_ns: 100_000_000_000, interim_ns: Some(30_000_000_000), ..FlowConfig::default() };
    let mut r = Rig::new(cfg);
    let a = m("L", Scope::Iri);
    for s in (0..=120).step_by(10) {
        r.feed(&a, s, &udp(C, 7000, S, 7000, b"rtp"));
    }
    let kinds: Vec<(&str, Option<u64>, i64)> = r
        .sink
        .iri
        .iter()
        .map(|i| {
            let k = match &i.event {
                IriEvent::SessionBegin { .. } => "begin",
                IriEvent::SessionContinue { .. } => "continue",
                IriEvent::SessionEnd { reason: Close::AbsoluteTimeout, .. } => "end-absolute",
                _ => "other",
            };
            (k, i.cin.map(u64::from), i.ts.secs())
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("begin", Some(1), 0),
            ("continue", Some(1), 30),
            ("continue", Some(1), 60),
            ("continue", Some(1), 90),
            ("end-absolute", Some(1), 100),
            ("begin", Some(2), 100),
        ]
    );
}

#[test]
fn end_liid_and_flowless_frames() {
    let mut r = Rig::new(FlowConfig::default());
    let (a, b) = (m("A", Scope::IriAndCc), m("B", Scope::IriAndCc));
    r.feed(&a, 0, &udp(C, 1, S, 2, b"x"));
    r.feed(&b, 0, &udp(C, 1, S, 2, b"x"));
    // An ARP frame: no IP, CC with CIN 0.
    let arp = [0u8; 28];
    let d = Decoded {
        overlay: Overlay::default(),
        mac: None,
        ip: None,
        transport: Transport::None,
        payload: &[],
        wire: Default::default(),
        fragment: Default::default(),
    };
    let frame = Frame { ts: Timestamp::from_secs(1), link: LinkType::Ethernet, data: &arp, orig_len: 28 };
    r.t.packet(&a, &frame, &d, &mut r.files, &mut r.sink);
    assert_eq!(r.sink.cc.last().map(|c| c.1), Some(Cin::NONE));
    assert_eq!(r.t.stats().cc_without_flow, 1);
    r.t.end_liid(&Liid::new("A").unwrap(), Timestamp::from_secs(2), &mut r.files, &mut r.sink);
    let ends = r.ends();
    assert_eq!(ends.len(), 1);
    assert_eq!(&*ends[0].liid, "A");
    assert_eq!(end_fields(ends[0]).1, Close::WindowEnd);
    assert_eq!(r.t.len(), 1);
}
