//! Link, network and transport decoding, tunnels and IP fragment reassembly.
//!
//! Input: a [`Frame`]. Output: a [`Decoded`] view of the innermost packet plus the overlay it came
//! through (VLAN tags, MPLS labels, tunnel outer addresses and VNI/key).
//!
//! No-panic contract: every function in this module takes untrusted bytes. Lengths are checked
//! before every access; a malformed header is a [`DecodeError`] that names the layer and the
//! offending value, never a panic.

pub mod checksum;
pub mod frag;
pub mod packet;
pub mod tunnel;
pub mod wire;

pub use checksum::Checksum;
pub use frag::DecodeStats;
pub use packet::Decoder;

use std::net::IpAddr;

use smallvec::SmallVec;

/// A MAC address.
pub type Mac = [u8; 6];

/// Source and destination MAC of one Ethernet header.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct MacPair {
    pub src: Mac,
    pub dst: Mac,
}

pub use crate::record::TunnelKind;

/// One layer of encapsulation that was removed to reach the inner packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tunnel {
    pub kind: TunnelKind,
    /// Outer IP addresses (underlay).
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
    /// The outer Ethernet addresses, when the tunnel packet was itself in an Ethernet frame.
    pub outer_mac: Option<MacPair>,
    /// VXLAN/GENEVE VNI, GRE key or ERSPAN session id.
    pub vni: Option<u32>,
}

/// What was peeled off on the way to the inner packet, outermost first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overlay {
    pub vlans: SmallVec<[u16; 2]>,
    pub mpls: SmallVec<[u32; 2]>,
    pub tunnels: SmallVec<[Tunnel; 1]>,
}

impl Overlay {
    /// The VNI (or GRE key / ERSPAN session) of the innermost tunnel that has one: the "zone" in
    /// which the inner addresses are meaningful. `None` in the underlay.
    pub fn vni(&self) -> Option<u32> {
        self.tunnels.iter().rev().find_map(|t| t.vni)
    }
}

/// The innermost IP header's essentials.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IpInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol / IPv6 next header of the transport (after extension headers).
    pub proto: u8,
    pub ttl: u8,
    /// Bytes of the IP packet on the wire, every header byte included: IPv4 Total Length, IPv6
    /// 40 + Payload Length (tshark's `ip.len`); for a reassembled datagram, the whole datagram.
    /// What a snapped capture cut off counts: this is what the target sent.
    pub len: u32,
    /// Of those, the transport payload's bytes on the wire (tshark's `tcp.len`; UDP length - 8):
    /// IP, extension and transport headers taken off.
    pub payload_len: u32,
}

/// TCP control bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// See [`tcp_flags`].
    pub flags: u8,
    pub window: u16,
    /// The Maximum Segment Size option of a SYN: the largest segment the sender will accept.
    pub mss: Option<u16>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp(TcpInfo),
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    Icmp {
        icmp_type: u8,
        code: u8,
    },
    Icmpv6 {
        icmp_type: u8,
        code: u8,
    },
    /// A fragment held for reassembly: the addresses are known (so the frame can still be
    /// selected and delivered as CC) but not the transport. The frame that completes the datagram
    /// yields the reassembled transport.
    Fragment,
    /// Another IP protocol; `IpInfo::proto` says which.
    Other,
    /// Not an IP packet (ARP, LLDP, ...): only `Decoded::mac` and the overlay are known.
    None,
}

/// A decoded packet: borrowed views, no allocation for the common case.
#[derive(Clone, Debug)]
pub struct Decoded<'a> {
    pub overlay: Overlay,
    /// The innermost Ethernet header's addresses, if the inner packet had one.
    pub mac: Option<MacPair>,
    /// `None` for non-IP frames.
    pub ip: Option<IpInfo>,
    pub transport: Transport,
    /// Transport payload (TCP/UDP data, ICMP body, or the IP payload for `Other`). For a
    /// reassembled datagram it borrows the decoder's reassembly buffer.
    pub payload: &'a [u8],
    /// What the checksums are computed over ([`Decoded::checksum`]).
    pub wire: Wire<'a>,
    /// For a frame that is an IP fragment, held for reassembly or completing its datagram: the
    /// headers that make it one.
    pub fragment: FragmentHeaders<'a>,
}

/// The headers that make a frame an IP fragment, as captured (the outermost fragmented header
/// in the frame): what a reader needs to tell its datagram (source, destination, protocol,
/// identification) and its place in it, and to read a first fragment as the packet it begins.
/// Both empty for a frame that is no fragment.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FragmentHeaders<'a> {
    /// The fragmented packet's IP header: IPv4 with its options, or IPv6's fixed 40 bytes.
    pub ip_header: &'a [u8],
    /// IPv6's fragment extension header; empty for IPv4.
    pub frag_header: &'a [u8],
}

/// The bytes a TCP or UDP packet's checksums cover, as captured.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Wire<'a> {
    /// The innermost IPv4 header (empty for IPv6, which has no header checksum).
    pub ipv4_header: &'a [u8],
    /// The TCP or UDP segment, header and payload (empty for other transports).
    pub segment: &'a [u8],
    /// The segment's length by the IP or UDP header; `None` when the header gave no length (a
    /// segmentation-offload packet whose IP length is 0), so that the capture's length stood in.
    pub segment_len: Option<u32>,
}

/// Which layer a decode failure happened in and why; the summary counts these by [`kind`](DecodeError::kind).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("frame of link type {0} is not decoded")]
    UnsupportedLinkType(u32),
    #[error("{layer} header truncated: need {needed} bytes, have {have}")]
    Truncated { layer: &'static str, needed: usize, have: usize },
    #[error("{layer}: bad value {value} in field {field}")]
    BadField { layer: &'static str, field: &'static str, value: u64 },
    #[error("IP fragment rejected: {0}")]
    Fragment(&'static str),
    #[error("too many nested encapsulations ({0})")]
    TooDeep(usize),
    #[error("{layer}: {reason}")]
    Malformed { layer: &'static str, reason: String },
}

impl DecodeError {
    /// A short stable name for counting (e.g. `truncated-tcp`).
    pub fn kind(&self) -> String {
        match self {
            DecodeError::UnsupportedLinkType(_) => "unsupported-linktype".into(),
            DecodeError::Truncated { layer, .. } => format!("truncated-{layer}"),
            DecodeError::BadField { layer, field, .. } => format!("bad-{layer}-{field}"),
            DecodeError::Fragment(_) => "bad-fragment".into(),
            DecodeError::TooDeep(_) => "too-deep".into(),
            DecodeError::Malformed { layer, .. } => format!("malformed-{layer}"),
        }
    }
}

/// Limits of the decoder's state.
#[derive(Clone, Debug)]
pub struct DecodeConfig {
    /// Most bytes held in incomplete IP datagrams at once, over all of them.
    pub frag_max_bytes: usize,
    /// Most incomplete datagrams held at once.
    pub frag_max_datagrams: usize,
    /// An incomplete datagram is dropped (and counted) this long after its first fragment.
    pub frag_timeout_ns: i64,
    /// Most encapsulation layers peeled before giving up.
    pub max_depth: usize,
    /// Decapsulate VXLAN arriving on this UDP port.
    pub vxlan_port: u16,
    pub geneve_port: u16,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            frag_max_bytes: 64 << 20,
            frag_max_datagrams: 8192,
            frag_timeout_ns: 30_000_000_000,
            max_depth: 8,
            vxlan_port: 4789,
            geneve_port: 6081,
        }
    }
}

// The decoder itself (`Decoder::new(DecodeConfig)` and
// `Decoder::decode<'a>(&'a mut self, frame: &Frame<'a>) -> Result<Decoded<'a>, DecodeError>`)
// lives in `packet.rs`; fragment reassembly in `frag.rs`; tunnel wire views in `tunnel.rs`.
