//! The decoder: link layer to the innermost transport header, peeling VLAN tags, MPLS labels
//! and tunnels on the way, and handing IP fragments to [`frag`](super::frag).
//!
//! No-panic contract: every header is read through a checked view ([`wire`](super::wire),
//! [`tunnel`](super::tunnel), etherparse slices); the walk is bounded by `max_depth` for each kind
//! of nesting (VLAN tags, MPLS labels, tunnels) and by a hard step limit.
//!
//! Hot path: an ordinary frame is decoded without touching the heap; `Overlay` keeps its VLAN,
//! MPLS and tunnel lists inline. Only fragments allocate (their reassembly buffers).

use std::slice::IterMut;

use etherparse::{err, TcpHeaderSlice};

use super::frag::{DecodeStats, FragKey, FragOutcome, FragTable};
use super::tunnel::{self, ethertype as et, Erspan2, Erspan3, Geneve, Gre, Inner, Vxlan};
use super::wire::{ipv6_ext_len, need, rd16, rd32, rd8, tail, EthernetFrame, Ipv4Packet, Ipv6FragHeader, Ipv6Packet};
use super::{
    DecodeConfig, DecodeError, Decoded, FragmentHeaders, IpInfo, MacPair, Overlay, TcpInfo, Transport, Tunnel,
    TunnelKind, Wire,
};
use crate::capture::{Frame, LinkType};

/// How many reassembled datagrams one frame may need at once (an outer fragmented datagram
/// carrying an inner fragmented one).
const REASSEMBLY_SLOTS: usize = 2;

/// Hard bound on decoding steps for one frame, whatever the configuration.
const MAX_STEPS: usize = 256;

/// GRE-in-UDP (RFC 8086): reported as a GRE tunnel.
const GRE_IN_UDP_PORT: u16 = 4754;
/// MPLS-in-UDP (RFC 7510): no TunnelKind of its own, reported as GRE.
const MPLS_IN_UDP_PORT: u16 = 6635;

/// IP protocol numbers the decoder follows.
mod proto {
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6: u8 = 41;
    pub const GRE: u8 = 47;
    pub const ICMPV6: u8 = 58;
    pub const IPV6_NONXT: u8 = 59;
    pub const HOPOPT: u8 = 0;
    pub const IPV6_ROUTE: u8 = 43;
    pub const IPV6_FRAG: u8 = 44;
    pub const AH: u8 = 51;
    pub const IPV6_OPTS: u8 = 60;
}

/// Decodes frames; holds the fragment reassembly state of one worker.
pub struct Decoder {
    cfg: DecodeConfig,
    frag: FragTable,
    /// Reassembled datagrams handed out by the last `decode` call (borrowed by its result).
    slots: [Vec<u8>; REASSEMBLY_SLOTS],
}

impl Decoder {
    pub fn new(cfg: DecodeConfig) -> Decoder {
        let frag = FragTable::new(cfg.frag_max_bytes, cfg.frag_max_datagrams, cfg.frag_timeout_ns);
        Decoder { cfg, frag, slots: Default::default() }
    }

    /// Reassembly gauges and counters.
    pub fn stats(&self) -> &DecodeStats {
        self.frag.stats()
    }

    pub fn config(&self) -> &DecodeConfig {
        &self.cfg
    }

    /// Decodes one frame. `frame.ts` is `now` for fragment timeouts. A fragment that does not
    /// complete its datagram yields `Transport::Fragment`; the completing one yields the
    /// reassembled transport, with a payload borrowed from this decoder.
    pub fn decode<'a>(&'a mut self, frame: &Frame<'a>) -> Result<Decoded<'a>, DecodeError> {
        let Decoder { cfg, frag, slots } = self;
        let now = frame.ts.nanos();
        frag.expire(now);
        let mut w = Walk {
            cfg,
            frag,
            slots: slots.iter_mut(),
            now,
            overlay: Overlay::default(),
            mac: None,
            link_mac: None,
            ip: None,
            wire: Wire::default(),
            ip_len_known: false,
            fragment: FragmentHeaders::default(),
        };
        let d = frame.data;
        let mut step = match frame.link {
            LinkType::Ethernet => Step::Eth(d),
            LinkType::Raw => Step::Ip(d),
            LinkType::Ipv4 => Step::V4(d),
            LinkType::Ipv6 => Step::V6(d),
            LinkType::LinuxSll => {
                need("sll", d, 16)?;
                Step::EtherType(rd16(d, 14..16), tail("sll", d, 16)?)
            }
            LinkType::LinuxSll2 => {
                need("sll2", d, 20)?;
                Step::EtherType(rd16(d, 0..2), tail("sll2", d, 20)?)
            }
            LinkType::Null | LinkType::Loop => {
                need("null", d, 4)?;
                let be = rd32(d, 0..4);
                // LINKTYPE_NULL is in the capturing host's byte order, LOOP always big-endian.
                let af = if frame.link == LinkType::Null && !is_af(be) { be.swap_bytes() } else { be };
                let rest = tail("null", d, 4)?;
                match af {
                    2 => Step::V4(rest),
                    24 | 28 | 30 => Step::V6(rest),
                    other => return Err(DecodeError::BadField { layer: "null", field: "family", value: other.into() }),
                }
            }
            LinkType::Other(n) => return Err(DecodeError::UnsupportedLinkType(n)),
        };
        for _ in 0..MAX_STEPS {
            step = match step {
                Step::Eth(b) => w.ethernet(b)?,
                Step::EtherType(t, b) => w.ethertype(t, b)?,
                Step::Ip(b) => match rd8(b, 0) >> 4 {
                    4 => Step::V4(b),
                    6 => Step::V6(b),
                    v => {
                        need("ip", b, 1)?;
                        return Err(DecodeError::BadField { layer: "ip", field: "version", value: v.into() });
                    }
                },
                Step::V4(b) => w.ipv4(b)?,
                Step::V6(b) => w.ipv6(b)?,
                Step::Mpls(b) => w.mpls(b)?,
                Step::Done(t, p) => return Ok(w.finish(t, p)),
            };
        }
        Err(DecodeError::TooDeep(MAX_STEPS))
    }
}

fn tcp_error(e: err::tcp::HeaderSliceError) -> DecodeError {
    match e {
        err::tcp::HeaderSliceError::Len(l) => {
            DecodeError::Truncated { layer: "tcp", needed: l.required_len, have: l.len }
        }
        err::tcp::HeaderSliceError::Content(err::tcp::HeaderError::DataOffsetTooSmall { data_offset }) => {
            DecodeError::BadField { layer: "tcp", field: "data-offset", value: data_offset.into() }
        }
    }
}

/// The fixed 20 bytes of a TCP header (the caller checked they are there).
fn tcp_fixed(b: &[u8]) -> TcpInfo {
    TcpInfo {
        src_port: rd16(b, 0..2),
        dst_port: rd16(b, 2..4),
        seq: rd32(b, 4..8),
        ack: rd32(b, 8..12),
        flags: rd8(b, 13) & 0x3f,
        window: rd16(b, 14..16),
        mss: None,
    }
}

fn is_af(v: u32) -> bool {
    matches!(v, 2 | 24 | 28 | 30)
}

enum Step<'a> {
    Eth(&'a [u8]),
    EtherType(u16, &'a [u8]),
    /// IPv4 or IPv6 by the version nibble.
    Ip(&'a [u8]),
    V4(&'a [u8]),
    V6(&'a [u8]),
    Mpls(&'a [u8]),
    Done(Transport, &'a [u8]),
}

/// The state of one frame's walk from the outside in.
struct Walk<'a, 'c> {
    cfg: &'c DecodeConfig,
    frag: &'a mut FragTable,
    slots: IterMut<'a, Vec<u8>>,
    now: i64,
    overlay: Overlay,
    /// The innermost Ethernet header seen.
    mac: Option<MacPair>,
    /// The Ethernet header carrying the current network layer (for a tunnel's `outer_mac`).
    link_mac: Option<MacPair>,
    /// The current (so far innermost) IP header.
    ip: Option<IpInfo>,
    /// The checksummed bytes of the current IP packet.
    wire: Wire<'a>,
    /// The current IP header gave the packet's length (not 0, as segmentation offload leaves it).
    ip_len_known: bool,
    /// The headers of the outermost fragment on the walk, if there was one.
    fragment: FragmentHeaders<'a>,
}

impl<'a> Walk<'a, '_> {
    fn finish(&mut self, transport: Transport, payload: &'a [u8]) -> Decoded<'a> {
        Decoded {
            overlay: std::mem::take(&mut self.overlay),
            mac: self.mac,
            ip: self.ip,
            transport,
            payload,
            wire: self.wire,
            fragment: self.fragment,
        }
    }

    fn ethernet(&mut self, b: &'a [u8]) -> Result<Step<'a>, DecodeError> {
        let e = EthernetFrame::new_checked(b)?;
        let macs = e.macs();
        self.mac = Some(macs);
        self.link_mac = Some(macs);
        Ok(Step::EtherType(e.ethertype(), e.payload()))
    }

    fn ethertype(&mut self, mut t: u16, mut b: &'a [u8]) -> Result<Step<'a>, DecodeError> {
        loop {
            return Ok(match t {
                et::VLAN | et::QINQ | et::QINQ_OLD | 0x9200 => {
                    need("vlan", b, 4)?;
                    if self.overlay.vlans.len() >= self.cfg.max_depth {
                        return Err(DecodeError::TooDeep(self.overlay.vlans.len() + 1));
                    }
                    self.overlay.vlans.push(rd16(b, 0..2) & 0x0fff);
                    t = rd16(b, 2..4);
                    b = tail("vlan", b, 4)?;
                    continue;
                }
                et::IPV4 => Step::V4(b),
                et::IPV6 => Step::V6(b),
                et::MPLS_UC | et::MPLS_MC => Step::Mpls(b),
                et::CISCO_METADATA => {
                    (t, b) = tunnel::cisco_metadata(b)?;
                    continue;
                }
                et::VNTAG => {
                    // VN-Tag (IEEE 802.1Qbh draft): 4 bytes of tag, then the next ethertype.
                    need("vntag", b, 6)?;
                    t = rd16(b, 4..6);
                    b = tail("vntag", b, 6)?;
                    continue;
                }
                et::PPPOE_SESSION => {
                    // PPPoE session header: ver/type, code, session id, length; then PPP.
                    need("pppoe", b, 6)?;
                    let (inner, rest) = tunnel::ppp(tail("pppoe", b, 6)?)?;
                    match inner {
                        Inner::Ipv4 => Step::V4(rest),
                        Inner::Ipv6 => Step::V6(rest),
                        Inner::Mpls => Step::Mpls(rest),
                        _ => Step::Done(Transport::None, rest),
                    }
                }
                _ => Step::Done(Transport::None, b),
            });
        }
    }

    fn mpls(&mut self, mut b: &'a [u8]) -> Result<Step<'a>, DecodeError> {
        loop {
            need("mpls", b, 4)?;
            if self.overlay.mpls.len() >= self.cfg.max_depth {
                return Err(DecodeError::TooDeep(self.overlay.mpls.len() + 1));
            }
            let entry = rd32(b, 0..4);
            self.overlay.mpls.push(entry >> 12);
            b = tail("mpls", b, 4)?;
            if entry & 0x100 != 0 {
                break;
            }
        }
        // RFC 3032 gives no next-protocol field: the first nibble tells IPv4 from IPv6. Other
        // payloads (pseudowires) are not followed.
        Ok(match rd8(b, 0) >> 4 {
            4 => Step::V4(b),
            6 => Step::V6(b),
            _ => Step::Done(Transport::None, b),
        })
    }

    fn ipv4(&mut self, b: &'a [u8]) -> Result<Step<'a>, DecodeError> {
        let h = Ipv4Packet::new_checked(b)?;
        let payload = h.payload()?;
        let (src, dst, p) = (h.src(), h.dst(), h.protocol());
        let len = match u32::from(h.total_len()) {
            0 => b.len() as u32, // segmentation offload: the length is the capture's
            n => n,
        };
        let payload_len = len.saturating_sub(h.header_len() as u32);
        self.ip = Some(IpInfo { src, dst, proto: p, ttl: h.ttl(), len, payload_len });
        self.wire = Wire { ipv4_header: b.get(..h.header_len()).unwrap_or_default(), ..Wire::default() };
        self.ip_len_known = h.total_len() != 0;
        if h.more_frags() || h.frag_offset() != 0 {
            self.fragmented(FragmentHeaders { ip_header: self.wire.ipv4_header, frag_header: &[] });
            if h.is_snapped() {
                // A snapped fragment cannot be reassembled; its addresses still select it.
                return Ok(Step::Done(Transport::Fragment, &[]));
            }
            let key = FragKey { src, dst, proto: p, id: h.ident().into(), zone: self.overlay.vni() };
            return match self.frag.insert(key, h.frag_offset(), payload, h.more_frags(), self.now)? {
                FragOutcome::Held | FragOutcome::Dropped => Ok(Step::Done(Transport::Fragment, &[])),
                FragOutcome::Complete(buf) => {
                    let data = self.store(buf)?;
                    if let Some(ip) = self.ip.as_mut() {
                        ip.payload_len = data.len() as u32;
                        ip.len = (h.header_len() + data.len()) as u32;
                    }
                    self.ip_len_known = true;
                    self.transport(p, data)
                }
            };
        }
        self.transport(p, payload)
    }

    /// A fragment on the way in: the frame's, unless an outer header was one already (the
    /// frame is that one's fragment; an inner one lies in its reassembled datagram).
    fn fragmented(&mut self, headers: FragmentHeaders<'a>) {
        if self.fragment.ip_header.is_empty() {
            self.fragment = headers;
        }
    }

    /// Keeps a reassembled datagram for the lifetime of the decode result.
    fn store(&mut self, buf: Vec<u8>) -> Result<&'a [u8], DecodeError> {
        let slot = self.slots.next().ok_or(DecodeError::Fragment("fragmented datagram nested too deep"))?;
        *slot = buf;
        let slot: &'a Vec<u8> = slot;
        Ok(slot.as_slice())
    }

    fn ipv6(&mut self, b: &'a [u8]) -> Result<Step<'a>, DecodeError> {
        let h = Ipv6Packet::new_checked(b)?;
        let (src, dst) = (h.src(), h.dst());
        let mut nh = h.next_header();
        let mut rest = h.payload();
        let len = match u32::from(h.payload_len()) {
            0 => b.len() as u32, // a jumbogram or an offloaded packet: the capture's length
            n => 40 + n,
        };
        self.ip = Some(IpInfo { src, dst, proto: nh, ttl: h.hop_limit(), len, payload_len: len.saturating_sub(40) });
        self.wire = Wire::default();
        self.ip_len_known = h.payload_len() != 0;
        // Each extension header is at least 8 bytes, so this walk ends with the buffer.
        loop {
            match nh {
                proto::HOPOPT | proto::IPV6_ROUTE | proto::IPV6_OPTS | proto::AH => {
                    let len = ipv6_ext_len(nh, rest)?;
                    nh = rd8(rest, 0);
                    rest = tail("ipv6-ext", rest, len)?;
                    self.header_bytes(len);
                }
                proto::IPV6_FRAG => {
                    let f = Ipv6FragHeader::new_checked(rest)?;
                    let frag_header = rest.get(..8).unwrap_or_default();
                    nh = f.next_header();
                    rest = f.payload();
                    self.header_bytes(8);
                    if f.offset() == 0 && !f.more() {
                        continue; // an atomic fragment (RFC 6946) is a whole datagram
                    }
                    if let Some(ip) = self.ip.as_mut() {
                        ip.proto = nh;
                    }
                    self.fragmented(FragmentHeaders { ip_header: b.get(..40).unwrap_or_default(), frag_header });
                    if h.is_snapped() {
                        return Ok(Step::Done(Transport::Fragment, &[]));
                    }
                    let key = FragKey { src, dst, proto: nh, id: f.ident(), zone: self.overlay.vni() };
                    match self.frag.insert(key, f.offset(), rest, f.more(), self.now)? {
                        FragOutcome::Held | FragOutcome::Dropped => return Ok(Step::Done(Transport::Fragment, &[])),
                        FragOutcome::Complete(buf) => {
                            rest = self.store(buf)?;
                            if let Some(ip) = self.ip.as_mut() {
                                ip.len = ip.len.saturating_sub(ip.payload_len) + rest.len() as u32;
                                ip.payload_len = rest.len() as u32;
                            }
                            self.ip_len_known = true;
                        }
                    }
                }
                proto::IPV6_NONXT => {
                    if let Some(ip) = self.ip.as_mut() {
                        ip.proto = nh;
                    }
                    return Ok(Step::Done(Transport::Other, &[]));
                }
                _ => break,
            }
        }
        if let Some(ip) = self.ip.as_mut() {
            ip.proto = nh;
        }
        self.transport(nh, rest)
    }

    /// `n` bytes of header (an IPv6 extension header, a transport header) are not payload.
    fn header_bytes(&mut self, n: usize) {
        if let Some(ip) = self.ip.as_mut() {
            ip.payload_len = ip.payload_len.saturating_sub(n as u32);
        }
    }

    /// Records the tunnel whose outer IP is the current one; the inner packet starts afresh.
    fn push_tunnel(&mut self, kind: TunnelKind, vni: Option<u32>) -> Result<(), DecodeError> {
        let n = self.overlay.tunnels.len();
        if n >= self.cfg.max_depth {
            return Err(DecodeError::TooDeep(n + 1));
        }
        let Some(ip) = self.ip.take() else {
            return Err(DecodeError::Malformed { layer: "tunnel", reason: "tunnel without an outer IP header".into() });
        };
        self.overlay.tunnels.push(Tunnel {
            kind,
            outer_src: ip.src,
            outer_dst: ip.dst,
            outer_mac: self.link_mac.take(),
            vni,
        });
        Ok(())
    }

    fn inner_step(inner: Inner, b: &'a [u8]) -> Step<'a> {
        match inner {
            Inner::Ethernet => Step::Eth(b),
            Inner::Ipv4 => Step::V4(b),
            Inner::Ipv6 => Step::V6(b),
            Inner::Ip => Step::Ip(b),
            Inner::Mpls => Step::Mpls(b),
            Inner::Unknown(_) => Step::Done(Transport::Other, b),
        }
    }

    /// The transport segment `b` is what the checksum covers; its length is the IP header's.
    fn segment(&mut self, b: &'a [u8], len: Option<u32>) {
        self.wire.segment = b;
        self.wire.segment_len = len.filter(|_| self.ip_len_known);
    }

    fn transport(&mut self, p: u8, b: &'a [u8]) -> Result<Step<'a>, DecodeError> {
        match p {
            proto::TCP => {
                self.segment(b, self.ip.map(|ip| ip.payload_len));
                let t = match TcpHeaderSlice::from_slice(b) {
                    Ok(t) => t,
                    // Options cut off by the snap length: the fixed header still names the flow.
                    Err(err::tcp::HeaderSliceError::Len(_)) if b.len() >= 20 && rd8(b, 12) >> 4 >= 5 => {
                        self.header_bytes(usize::from(rd8(b, 12) >> 4) * 4);
                        return Ok(Step::Done(Transport::Tcp(tcp_fixed(b)), &[]));
                    }
                    Err(e) => return Err(tcp_error(e)),
                };
                let flags = rd8(b, 13) & 0x3f;
                let mss = if flags & super::tcp_flags::SYN != 0 {
                    t.options_iterator().find_map(|o| match o {
                        Ok(etherparse::TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
                        _ => None,
                    })
                } else {
                    None
                };
                let info = TcpInfo {
                    src_port: t.source_port(),
                    dst_port: t.destination_port(),
                    seq: t.sequence_number(),
                    ack: t.acknowledgment_number(),
                    flags,
                    window: t.window_size(),
                    mss,
                };
                self.header_bytes(t.slice().len());
                Ok(Step::Done(Transport::Tcp(info), tail("tcp", b, t.slice().len())?))
            }
            proto::UDP => {
                need("udp", b, 8)?;
                let (sport, dport, ulen) = (rd16(b, 0..2), rd16(b, 2..4), usize::from(rd16(b, 4..6)));
                // The UDP length cuts padding; a snapped or offloaded (length 0) datagram keeps
                // what was captured.
                let end = if (8..=b.len()).contains(&ulen) { ulen } else { b.len() };
                let payload = b.get(8..end).unwrap_or(&[]);
                let udp = Transport::Udp { src_port: sport, dst_port: dport };
                // The checksum covers the UDP length (what follows it is padding).
                self.segment(b, (8..=0xffff).contains(&ulen).then_some(ulen as u32));
                if dport == GRE_IN_UDP_PORT {
                    match self.gre(payload) {
                        Ok(step) => return Ok(step),
                        Err(e @ DecodeError::TooDeep(_)) => return Err(e),
                        Err(_) => {} // not GRE after all: plain UDP
                    }
                } else if dport == MPLS_IN_UDP_PORT {
                    self.push_tunnel(TunnelKind::Gre, None)?;
                    return Ok(Step::Mpls(payload));
                } else if dport == self.cfg.vxlan_port {
                    if let Ok((v, inner)) = Vxlan::parse(payload) {
                        self.push_tunnel(TunnelKind::Vxlan, v.vni)?;
                        return Ok(Step::Eth(inner));
                    }
                } else if dport == self.cfg.geneve_port {
                    if let Ok((g, inner)) = Geneve::parse(payload) {
                        if !matches!(g.inner, Inner::Unknown(_)) {
                            self.push_tunnel(TunnelKind::Geneve, Some(g.vni))?;
                            return Ok(Self::inner_step(g.inner, inner));
                        }
                    }
                }
                self.header_bytes(8);
                Ok(Step::Done(udp, payload))
            }
            proto::ICMP | proto::ICMPV6 => {
                need(if p == proto::ICMP { "icmp" } else { "icmpv6" }, b, 4)?;
                let (icmp_type, code) = (rd8(b, 0), rd8(b, 1));
                let body = b.get(8..).unwrap_or(&[]);
                let t = if p == proto::ICMP {
                    Transport::Icmp { icmp_type, code }
                } else {
                    Transport::Icmpv6 { icmp_type, code }
                };
                self.header_bytes(8);
                Ok(Step::Done(t, body))
            }
            proto::IPIP => {
                self.push_tunnel(TunnelKind::IpInIp, None)?;
                Ok(Step::V4(b))
            }
            proto::IPV6 => {
                self.push_tunnel(TunnelKind::SixInFour, None)?;
                Ok(Step::V6(b))
            }
            proto::GRE => self.gre(b),
            _ => Ok(Step::Done(Transport::Other, b)),
        }
    }

    fn gre(&mut self, b: &'a [u8]) -> Result<Step<'a>, DecodeError> {
        let (g, inner) = Gre::parse(b)?;
        let (kind, vni, what, rest) = match g.protocol {
            et::IPV4 | et::IPV6 | et::MPLS_UC | et::MPLS_MC => {
                self.push_tunnel(TunnelKind::Gre, g.key)?;
                return Ok(Step::EtherType(g.protocol, inner));
            }
            et::CISCO_METADATA => {
                let (t, rest) = tunnel::cisco_metadata_gre(inner)?;
                self.push_tunnel(TunnelKind::Gre, g.key)?;
                return Ok(Step::EtherType(t, rest));
            }
            et::TEB => (TunnelKind::GreEthernet, g.key, Inner::Ethernet, inner),
            et::ERSPAN_2 if g.has_seq => {
                let (e, rest) = Erspan2::parse(inner)?;
                (TunnelKind::Erspan2, Some(e.session), Inner::Ethernet, rest)
            }
            // ERSPAN type I: no sequence number and no ERSPAN header, the mirrored frame follows.
            et::ERSPAN_2 => (TunnelKind::Erspan2, None, Inner::Ethernet, inner),
            et::ERSPAN_3 => {
                let (e, rest) = Erspan3::parse(inner)?;
                (TunnelKind::Erspan3, Some(e.session), e.inner, rest)
            }
            et::PPP => {
                let (what, rest) = tunnel::ppp(inner)?;
                (TunnelKind::Gre, g.key, what, rest)
            }
            _ => return Ok(Step::Done(Transport::Other, b)),
        };
        if let Inner::Unknown(_) = what {
            return Ok(Step::Done(Transport::Other, b));
        }
        self.push_tunnel(kind, vni)?;
        Ok(Self::inner_step(what, rest))
    }
}
