//! IP fragments sent to the worker their reassembled packet goes to.
//!
//! The sharded dispatch ([`super::shard`]) picks a worker by the innermost address pair, which
//! a fragment of a tunnel's underlay does not show: only the fragment that completes the
//! datagram decodes to the packet inside. Had the others gone by the underlay pair, the inner
//! pair's worker could not reassemble and the underlay pair's worker had nothing to finish.
//! With 2 workers, an upload over Linux VXLAN on a smaller underlay MTU lost its first 5
//! packets (7,240 bytes) that way.
//!
//! Every fragment is routed here, the one that completes its datagram in the dispatch's own
//! decoder too (the dispatch reassembles to read what a datagram announces: a SIP message with
//! SDP may exceed the path MTU). The first fragment (offset 0) carries the tunnel and inner
//! headers. The dispatch decodes it as if it were unfragmented and cut short, with a decoder of its own (no reassembly state is
//! touched), picks the worker as for the inner packet, and remembers the datagram (source,
//! destination, protocol, identification: IPv4's, or IPv6's fragment header's) with that
//! worker; the fragments after it go there, and the completing one goes there by its inner
//! pair anyway.
//!
//! A fragment that comes before its datagram's first (reordered on the way: an ECMP hash over
//! ports sends the first fragment, which alone has them, on another path than the rest) is
//! held here, a copy of its bytes, until the first comes; it is then handed to the first's
//! worker just before it, so that worker still sees the datagram's fragments in capture order.
//! A first that does not come within [`EARLY_HOLD_NS`] releases them to their pair's worker (as
//! does the end of input), where they time out as they would have in one pipeline.
//!
//! - **Bounded:** at most [`MAX_DATAGRAMS`] datagrams remembered, each forgotten after the
//!   reassembly timeout or, on a link busier than that, to make room for the newest (the
//!   oldest first: a datagram's fragments follow each other within microseconds, so the last
//!   65,536 datagrams are plenty; counted). At most [`MAX_EARLY_BYTES`] held: over it a
//!   fragment goes by its pair, as without this module, and is counted ([`FragmentStats`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::ops::Range;

use crate::capture::{Frame, LinkType};
use crate::decode::frag::FragKey;
use crate::decode::wire::{Ipv4Packet, Ipv6FragHeader, Ipv6Packet};
use crate::decode::{DecodeConfig, Decoder, FragmentHeaders, Transport};
use crate::timestamp::Timestamp;

/// Datagrams remembered at most.
pub const MAX_DATAGRAMS: usize = 65_536;

/// Bytes of fragments held before their datagram's first fragment, at most.
pub const MAX_EARLY_BYTES: usize = 8 << 20;

/// How long fragments wait for their datagram's first fragment (checked once a second, so up
/// to twice that). A reordered first comes microseconds to milliseconds after the rest; one a
/// second late is taken for lost, and the rest go on (to their pair) rather than hold a
/// target's CC back for the whole reassembly timeout.
pub const EARLY_HOLD_NS: i64 = 1_000_000_000;

/// What the first fragment showed of the packet inside it.
pub struct Inner {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport,
}

/// Where a held fragment goes.
pub enum Fragment {
    /// A later fragment of a datagram whose first fragment went to this worker.
    Known(usize),
    /// A first fragment: the worker is the inner packet's; [`FragmentRoutes::remember`] it.
    First(FragKey, Inner),
    /// A later fragment whose first has not come yet: [`FragmentRoutes::hold`] it.
    Early(FragKey),
    /// Neither: it goes by its own pair.
    Unknown,
}

/// The dispatch's fragment counters, for the summary and the daemon's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentStats {
    /// Datagrams whose later fragments followed their first fragment's inner packet.
    pub datagrams: u64,
    /// Fragments held until their datagram's first fragment came.
    pub early: u64,
    /// Fragments that went by their pair because [`MAX_EARLY_BYTES`] were held.
    pub refused: u64,
    /// Datagrams forgotten before the reassembly timeout to make room for newer ones.
    pub evicted: u64,
}

/// A captured frame the dispatch holds a copy of.
pub struct HeldFrame {
    pub ts: Timestamp,
    pub link: LinkType,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

impl HeldFrame {
    pub fn frame(&self) -> Frame<'_> {
        Frame { ts: self.ts, link: self.link, data: &self.data, orig_len: self.orig_len }
    }
}

/// A fragment's datagram, and its place in it.
struct Place {
    key: FragKey,
    /// At offset 0.
    first: bool,
    /// The bytes of the frame to mask (where, bits kept) that make a first fragment whole.
    edits: [(usize, u8); 4],
}

/// Fragments of a datagram whose first fragment has not come.
struct Early {
    /// The worker of the fragments' own pair, should the first never come.
    pair: usize,
    since: Timestamp,
    frames: Vec<HeldFrame>,
}

pub struct FragmentRoutes {
    peek: Decoder,
    /// Keyed as the decoder's reassembly keys datagrams, without the zone: the fragments seen
    /// here are of the outermost fragmented header in the frame.
    /// Each datagram's worker and the number it was remembered under.
    datagrams: HashMap<FragKey, (usize, u64)>,
    /// The datagrams in the order they were remembered, oldest first, with when and under
    /// which number, for expiry and eviction; an entry whose number is not the map's was
    /// remembered again later and is skipped.
    order: VecDeque<(FragKey, Timestamp, u64)>,
    remembered: u64,
    early: HashMap<FragKey, Early>,
    early_bytes: usize,
    timeout_ns: i64,
    next_sweep: Timestamp,
    buf: Vec<u8>,
    stats: FragmentStats,
}

impl FragmentRoutes {
    pub fn new(cfg: DecodeConfig) -> FragmentRoutes {
        let timeout_ns = cfg.frag_timeout_ns;
        FragmentRoutes {
            peek: Decoder::new(cfg),
            datagrams: HashMap::new(),
            order: VecDeque::new(),
            remembered: 0,
            early: HashMap::new(),
            early_bytes: 0,
            timeout_ns,
            next_sweep: Timestamp::MIN,
            buf: Vec::new(),
            stats: FragmentStats::default(),
        }
    }

    pub fn stats(&self) -> FragmentStats {
        self.stats
    }

    /// A frame the dispatch decoded as an IP fragment (held, or completing its datagram), with
    /// the headers that make it one (as borrowed from `frame`).
    pub fn classify(&mut self, frame: &Frame<'_>, held: FragmentHeaders<'_>) -> Fragment {
        let Some(Place { key, first, edits }) = self.datagram(frame, held) else { return Fragment::Unknown };
        if !first {
            return match self.datagrams.get(&key) {
                Some((w, _)) => Fragment::Known(*w),
                None => Fragment::Early(key),
            };
        }
        // The first fragment read as an unfragmented packet cut short: the fragment's marks
        // cleared and the length left to the capture (0, as segmentation offload leaves it).
        self.buf.clear();
        self.buf.extend_from_slice(frame.data);
        for (at, keep) in edits {
            if let Some(b) = self.buf.get_mut(at) {
                *b &= keep;
            }
        }
        let whole = Frame { ts: frame.ts, link: frame.link, data: &self.buf, orig_len: frame.orig_len };
        let Ok(d) = self.peek.decode(&whole) else { return Fragment::Unknown };
        match (&d.ip, d.transport) {
            (Some(ip), transport) if !matches!(transport, Transport::Fragment) => {
                Fragment::First(key, Inner { src: ip.src, dst: ip.dst, transport })
            }
            _ => Fragment::Unknown,
        }
    }

    /// The datagram a fragment belongs to, and its place in it.
    fn datagram(&self, frame: &Frame<'_>, held: FragmentHeaders<'_>) -> Option<Place> {
        let ip = range_in(frame.data, held.ip_header)?.start;
        if held.frag_header.is_empty() {
            let h = Ipv4Packet::new_checked(held.ip_header).ok()?;
            let key = FragKey { src: h.src(), dst: h.dst(), proto: h.protocol(), id: h.ident().into(), zone: None };
            // Total length, then flags and offset (don't-fragment kept).
            let edits = [(ip + 2, 0), (ip + 3, 0), (ip + 6, 0x40), (ip + 7, 0)];
            return Some(Place { key, first: h.frag_offset() == 0, edits });
        }
        let fh = range_in(frame.data, held.frag_header)?.start;
        let h = Ipv6Packet::new_checked(held.ip_header).ok()?;
        let f = Ipv6FragHeader::new_checked(held.frag_header).ok()?;
        let key = FragKey { src: h.src(), dst: h.dst(), proto: f.next_header(), id: f.ident(), zone: None };
        // Payload length, then the fragment header's offset and more-fragments flag: a first
        // fragment becomes an atomic fragment (RFC 6946), which the decoder reads through.
        let edits = [(ip + 4, 0), (ip + 5, 0), (fh + 2, 0), (fh + 3, 0)];
        Some(Place { key, first: f.offset() == 0, edits })
    }

    /// The worker a first fragment went to, for the fragments after it; returns the fragments
    /// held before it, to be handed to that worker ahead of it, in capture order.
    pub fn remember(&mut self, datagram: FragKey, worker: usize, now: Timestamp) -> Vec<HeldFrame> {
        self.remembered += 1;
        let n = self.remembered;
        if self.datagrams.insert(datagram, (worker, n)).is_none() {
            self.stats.datagrams += 1;
        }
        self.order.push_back((datagram, now, n));
        while self.datagrams.len() > MAX_DATAGRAMS {
            if !self.forget_oldest() {
                break;
            }
            self.stats.evicted += 1;
        }
        // The same first fragment over and over leaves stale entries behind: drop them.
        if self.order.len() > 2 * MAX_DATAGRAMS {
            let map = &self.datagrams;
            self.order.retain(|(k, _, n)| map.get(k).is_some_and(|(_, at)| at == n));
        }
        match self.early.remove(&datagram) {
            Some(e) => {
                self.early_bytes -= e.frames.iter().map(|f| f.data.len()).sum::<usize>();
                e.frames
            }
            None => Vec::new(),
        }
    }

    /// Forgets the oldest datagram remembered, if there is one.
    fn forget_oldest(&mut self) -> bool {
        while let Some((k, _, n)) = self.order.pop_front() {
            if self.datagrams.get(&k).is_some_and(|(_, at)| *at == n) {
                self.datagrams.remove(&k);
                return true;
            }
        }
        false
    }

    /// Holds a copy of a fragment that came before its datagram's first. False, and counted,
    /// when that would pass [`MAX_EARLY_BYTES`]: it goes by `pair`.
    pub fn hold(&mut self, datagram: FragKey, frame: &Frame<'_>, pair: usize) -> bool {
        let bytes = frame.data.len();
        if self.early_bytes + bytes > MAX_EARLY_BYTES {
            self.stats.refused += 1;
            return false;
        }
        let e = self.early.entry(datagram).or_insert_with(|| Early { pair, since: frame.ts, frames: Vec::new() });
        e.frames.push(HeldFrame {
            ts: frame.ts,
            link: frame.link,
            orig_len: frame.orig_len,
            data: frame.data.to_vec(),
        });
        self.early_bytes += bytes;
        self.stats.early += 1;
        true
    }

    /// Forgets datagrams older than the reassembly timeout, at most once a second, and
    /// releases the fragments held longer than [`EARLY_HOLD_NS`] for a first, each with the
    /// worker of its pair, into `out`.
    pub fn expire(&mut self, now: Timestamp, out: &mut Vec<(usize, HeldFrame)>) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now.add_nanos(1_000_000_000);
        let timeout = self.timeout_ns;
        while let Some(&(k, t, n)) = self.order.front() {
            if t.add_nanos(timeout) > now {
                break;
            }
            self.order.pop_front();
            if self.datagrams.get(&k).is_some_and(|(_, at)| *at == n) {
                self.datagrams.remove(&k);
            }
        }
        if self.early.is_empty() {
            return;
        }
        let late: Vec<FragKey> =
            self.early.iter().filter(|(_, e)| e.since.add_nanos(EARLY_HOLD_NS) <= now).map(|(k, _)| *k).collect();
        self.release(late, out);
    }

    /// Releases every fragment still held (the end of input), each with the worker of its pair.
    pub fn release_all(&mut self, out: &mut Vec<(usize, HeldFrame)>) {
        let all: Vec<FragKey> = self.early.keys().copied().collect();
        self.release(all, out);
    }

    fn release(&mut self, keys: Vec<FragKey>, out: &mut Vec<(usize, HeldFrame)>) {
        let mut frames: Vec<(usize, HeldFrame)> = Vec::new();
        for k in keys {
            if let Some(e) = self.early.remove(&k) {
                self.early_bytes -= e.frames.iter().map(|f| f.data.len()).sum::<usize>();
                frames.extend(e.frames.into_iter().map(|f| (e.pair, f)));
            }
        }
        // In capture order across datagrams, as they came.
        frames.sort_by_key(|(_, f)| f.ts);
        out.extend(frames);
    }
}

/// Where `inner` lies within `outer` (a slice of it), if it does.
fn range_in(outer: &[u8], inner: &[u8]) -> Option<Range<usize>> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (!inner.is_empty() && end <= outer.len()).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::LinkType;

    #[test]
    fn a_slice_is_found_only_inside_its_buffer() {
        let buf = [0u8; 64];
        assert_eq!(range_in(&buf, &buf[14..34]), Some(14..34));
        assert_eq!(range_in(&buf[..20], &buf[14..34]), None);
        assert_eq!(range_in(&buf[20..], &buf[..4]), None);
        assert_eq!(range_in(&buf, &[]), None);
    }

    /// Ethernet, then an IPv4 header of datagram 0x1234 from 192.0.2.1 to .2 (UDP) at
    /// `offset` (units of 8 bytes), more fragments after it, then `payload`.
    fn v4_fragment(offset: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let len = (20 + payload.len()) as u16;
        let flags = 0x2000 | offset;
        f.extend_from_slice(&[0x45, 0, (len >> 8) as u8, len as u8, 0x12, 0x34, (flags >> 8) as u8, flags as u8]);
        f.extend_from_slice(&[64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
        f.extend_from_slice(payload);
        f
    }

    /// Ethernet, then IPv6 from 2001:db8::1 to ::2 with a fragment header (identification
    /// 0xabcdef01, UDP) at `offset` bytes, more fragments after it, then `payload`.
    fn v6_fragment(offset: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x86, 0xdd]);
        let len = (8 + payload.len()) as u16;
        f.extend_from_slice(&[0x60, 0, 0, 0, (len >> 8) as u8, len as u8, 44, 64]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        let om = offset | 1;
        f.extend_from_slice(&[17, 0, (om >> 8) as u8, om as u8, 0xab, 0xcd, 0xef, 0x01]);
        f.extend_from_slice(payload);
        f
    }

    /// A UDP header from port 1000 to 2000 of a 1,000-byte datagram, and some of its bytes.
    fn udp_start() -> Vec<u8> {
        let mut u = vec![0x03, 0xe8, 0x07, 0xd0, 0x03, 0xe8, 0, 0];
        u.extend_from_slice(&[0x5a; 64]);
        u
    }

    fn at(ts: Timestamp, data: &[u8]) -> Frame<'_> {
        Frame { ts, link: LinkType::Ethernet, data, orig_len: data.len() as u32 }
    }

    /// What the routes make of a frame, as the dispatch asks: after its own decode.
    fn classify(r: &mut FragmentRoutes, f: &Frame<'_>) -> Fragment {
        let mut d = Decoder::new(DecodeConfig::default());
        let held = d.decode(f).map(|d| d.fragment).unwrap_or_default();
        r.classify(f, held)
    }

    #[test]
    fn later_fragments_follow_their_first_and_earlier_ones_wait_for_it() {
        for (first, later) in [
            (v4_fragment(0, &udp_start()), v4_fragment(9, &[1; 64])),
            (v6_fragment(0, &udp_start()), v6_fragment(72, &[1; 64])),
        ] {
            let mut r = FragmentRoutes::new(DecodeConfig::default());
            let ts = Timestamp::from_secs_nanos(1_780_000_000, 0);
            // The later fragment first: held, not routed.
            let Fragment::Early(key) = classify(&mut r, &at(ts, &later)) else { panic!("not early") };
            assert!(r.hold(key, &at(ts, &later), 1));
            // Its first: read through to the UDP packet inside, and the held one comes back.
            let Fragment::First(k, inner) = classify(&mut r, &at(ts.add_nanos(10), &first)) else {
                panic!("not first")
            };
            assert_eq!(k, key);
            assert!(matches!(inner.transport, Transport::Udp { src_port: 1000, dst_port: 2000 }));
            assert_ne!(inner.src, inner.dst);
            let back = r.remember(key, 3, ts);
            assert_eq!(back.len(), 1);
            assert_eq!(back[0].data, later);
            assert_eq!(back[0].ts, ts);
            // Another later fragment now follows the first's worker.
            assert!(matches!(classify(&mut r, &at(ts, &later)), Fragment::Known(3)));
            assert_eq!(r.stats(), FragmentStats { datagrams: 1, early: 1, refused: 0, evicted: 0 });
            // Past the reassembly timeout it is forgotten.
            let mut out = Vec::new();
            r.expire(ts.add_nanos(DecodeConfig::default().frag_timeout_ns + 1), &mut out);
            assert!(out.is_empty());
            assert!(matches!(classify(&mut r, &at(ts, &later)), Fragment::Early(_)));
        }
    }

    #[test]
    fn fragments_whose_first_never_comes_go_to_their_pair_and_the_caps_hold() {
        let mut r = FragmentRoutes::new(DecodeConfig::default());
        let ts = Timestamp::from_secs_nanos(1_780_000_000, 0);
        let later = v4_fragment(9, &[1; 1400]);
        let Fragment::Early(key) = classify(&mut r, &at(ts, &later)) else { panic!("not early") };
        assert!(r.hold(key, &at(ts, &later), 1));
        assert!(r.hold(key, &at(ts.add_nanos(1), &later), 1));
        // Before the timeout nothing is let go; after it, both, to their pair, in order.
        let mut out = Vec::new();
        r.expire(ts.add_nanos(1_000), &mut out);
        assert!(out.is_empty());
        r.expire(ts.add_nanos(1_000 + EARLY_HOLD_NS), &mut out);
        assert_eq!(out.iter().map(|(w, f)| (*w, f.ts)).collect::<Vec<_>>(), [(1, ts), (1, ts.add_nanos(1))]);
        // The bytes held are capped; what is over goes by its pair, counted.
        let mut held = 0;
        while r.hold(key, &at(ts, &later), 0) {
            held += later.len();
        }
        assert!(held <= MAX_EARLY_BYTES && held + later.len() > MAX_EARLY_BYTES, "{held}");
        assert_eq!(r.stats().refused, 1);
        let mut out = Vec::new();
        r.release_all(&mut out);
        assert_eq!(out.len() * later.len(), held);
        assert!(r.hold(key, &at(ts, &later), 0));
        // A header cut short is nobody's.
        let cut = at(ts, &later[..30]);
        assert!(matches!(
            r.classify(&cut, FragmentHeaders { ip_header: &later[14..30], frag_header: &[] }),
            Fragment::Unknown
        ));
    }

    #[test]
    fn a_full_table_forgets_its_oldest_datagram() {
        let mut r = FragmentRoutes::new(DecodeConfig::default());
        let ts = Timestamp::from_secs_nanos(1_780_000_000, 0);
        let key =
            |id: u32| FragKey { src: [192, 0, 2, 1].into(), dst: [192, 0, 2, 2].into(), proto: 17, id, zone: None };
        for id in 0..=MAX_DATAGRAMS as u32 {
            r.remember(key(id), 1, ts.add_nanos(i64::from(id)));
        }
        assert_eq!(r.stats().evicted, 1);
        assert!(!r.datagrams.contains_key(&key(0)));
        assert_eq!(r.datagrams.get(&key(MAX_DATAGRAMS as u32)).map(|e| e.0), Some(1));
        // The same datagram again and again leaves no more than twice the table behind.
        for _ in 0..3 * MAX_DATAGRAMS {
            r.remember(key(7), 2, ts);
        }
        assert!(r.order.len() <= 2 * MAX_DATAGRAMS + 1, "{}", r.order.len());
        assert_eq!(r.datagrams.len(), MAX_DATAGRAMS);
    }
}
