//! IP fragments sent to the worker their reassembled packet goes to.
//!
//! The sharded dispatch ([`super::shard`]) picks a worker by the innermost address pair, which
//! a fragment of a tunnel's underlay does not show: only the fragment that completes the
//! datagram decodes to the packet inside. Had the others gone by the underlay pair, the inner
//! pair's worker could not reassemble and the underlay pair's worker had nothing to finish.
//! With 2 workers, an upload over Linux VXLAN on a smaller underlay MTU lost its first 5
//! packets (7,240 bytes) that way.
//!
//! The first fragment (offset 0) carries the tunnel and inner headers. The dispatch decodes it
//! as if it were unfragmented and cut short, with a decoder of its own (no reassembly state is
//! touched), picks the worker as for the inner packet, and remembers the datagram (source,
//! destination, protocol, IPv4 identification) with that worker; the fragments after it go
//! there, and the completing one goes there by its inner pair anyway.
//!
//! - **Bounded:** at most [`MAX_DATAGRAMS`], each dropped after the reassembly timeout.
//! - **Not covered:** fragments that arrive before their first fragment (they go by their
//!   pair, as before), and IPv6 underlays (whose identification is in a fragment header).

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;

use crate::capture::Frame;
use crate::decode::frag::FragKey;
use crate::decode::wire::Ipv4Packet;
use crate::decode::{DecodeConfig, Decoder, Transport};
use crate::timestamp::Timestamp;

/// Datagrams remembered at most.
pub const MAX_DATAGRAMS: usize = 65_536;

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
    /// Neither: it goes by its own pair.
    Unknown,
}

pub struct FragmentRoutes {
    peek: Decoder,
    /// Keyed as the decoder's reassembly keys datagrams, without the zone: the fragments seen
    /// here are of the outermost IPv4 header in the frame.
    datagrams: HashMap<FragKey, (usize, Timestamp)>,
    timeout_ns: i64,
    next_sweep: Timestamp,
    buf: Vec<u8>,
}

impl FragmentRoutes {
    pub fn new(cfg: DecodeConfig) -> FragmentRoutes {
        let timeout_ns = cfg.frag_timeout_ns;
        FragmentRoutes {
            peek: Decoder::new(cfg),
            datagrams: HashMap::new(),
            timeout_ns,
            next_sweep: Timestamp::MIN,
            buf: Vec::new(),
        }
    }

    /// A frame the dispatch decoded as a held fragment, whose fragmented IPv4 header is
    /// `frame.data[header]`.
    pub fn classify(&mut self, frame: &Frame<'_>, header: Range<usize>) -> Fragment {
        let Some(h) = frame.data.get(header.clone()).and_then(|h| Ipv4Packet::new_checked(h).ok()) else {
            return Fragment::Unknown;
        };
        let key = FragKey { src: h.src(), dst: h.dst(), proto: h.protocol(), id: h.ident().into(), zone: None };
        self.sweep(frame.ts);
        if h.frag_offset() != 0 {
            return self.datagrams.get(&key).map_or(Fragment::Unknown, |(w, _)| Fragment::Known(*w));
        }
        // The first fragment as an unfragmented packet cut short: no more-fragments flag, no
        // offset, and total length 0 (the capture's length, as for segmentation offload).
        self.buf.clear();
        self.buf.extend_from_slice(frame.data);
        let at = header.start;
        if let Some(b) = self.buf.get_mut(at + 2..at + 8) {
            b[0] = 0;
            b[1] = 0;
            b[4] &= 0x40;
            b[5] = 0;
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

    /// The worker a first fragment went to, for the fragments after it.
    pub fn remember(&mut self, datagram: FragKey, worker: usize, now: Timestamp) {
        if self.datagrams.len() < MAX_DATAGRAMS || self.datagrams.contains_key(&datagram) {
            self.datagrams.insert(datagram, (worker, now));
        }
    }

    /// Drops datagrams older than the reassembly timeout, at most once a second.
    fn sweep(&mut self, now: Timestamp) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now.add_nanos(1_000_000_000);
        let timeout = self.timeout_ns;
        self.datagrams.retain(|_, (_, first)| first.add_nanos(timeout) > now);
    }
}

/// Where `inner` lies within `outer` (a slice of it), if it does.
pub fn range_in(outer: &[u8], inner: &[u8]) -> Option<Range<usize>> {
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

    #[test]
    fn later_fragments_follow_their_first_and_strangers_go_by_their_pair() {
        let mut r = FragmentRoutes::new(DecodeConfig::default());
        // Ethernet, then an IPv4 header of a later fragment (offset 185 x 8) of datagram 0x1234.
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&[0x45, 0, 0, 40, 0x12, 0x34, 0x00, 185, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
        frame.resize(14 + 40, 0xab);
        let ts = Timestamp::from_secs_nanos(1_780_000_000, 0);
        let f = Frame { ts, link: LinkType::Ethernet, data: &frame, orig_len: frame.len() as u32 };
        assert!(matches!(r.classify(&f, 14..34), Fragment::Unknown));
        let key = FragKey { src: [192, 0, 2, 1].into(), dst: [192, 0, 2, 2].into(), proto: 17, id: 0x1234, zone: None };
        r.remember(key, 3, ts);
        assert!(matches!(r.classify(&f, 14..34), Fragment::Known(3)));
        // Past the reassembly timeout it is forgotten.
        let late = Frame { ts: ts.add_nanos(DecodeConfig::default().frag_timeout_ns + 1), ..f };
        assert!(matches!(r.classify(&late, 14..34), Fragment::Unknown));
        // A header cut short is nobody's.
        assert!(matches!(r.classify(&f, 14..30), Fragment::Unknown));
    }
}
