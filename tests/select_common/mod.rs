//! Hand-built decoded packets and warrants for the select tests (the real decoder is written
//! in parallel; selection only reads these fields).

use std::net::IpAddr;

use smallvec::SmallVec;
use tapir::decode::{Decoded, IpInfo, Mac, MacPair, Overlay, Transport, Tunnel, TunnelKind};
use tapir::select::{Liid, Match, Scope, TargetId, Targeting, Warrant};
use tapir::timestamp::Timestamp;

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

pub fn warrant(liid: &str, start: &str, end: &str, targets: &[&str]) -> Warrant {
    Warrant {
        liid: Liid::new(liid).unwrap(),
        start: ts(start),
        end: ts(end),
        scope: Scope::IriAndCc,
        targets: targets.iter().map(|t| t.parse::<TargetId>().unwrap()).collect(),
        lea: None,
        xid: tapir::record::Xid::derived(&Liid::new(liid).unwrap()),
        line: 1,
    }
}

/// A year-long warrant.
pub fn warrant_2026(liid: &str, targets: &[&str]) -> Warrant {
    warrant(liid, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", targets)
}

/// An untunnelled IPv4/IPv6 packet in an Ethernet frame.
pub fn plain(src: &str, dst: &str, macs: Option<(Mac, Mac)>) -> Decoded<'static> {
    Decoded {
        overlay: Overlay::default(),
        mac: macs.map(|(s, d)| MacPair { src: s, dst: d }),
        ip: Some(IpInfo { src: ip(src), dst: ip(dst), proto: 17, ttl: 64, len: 28, payload_len: 0 }),
        transport: Transport::Udp { src_port: 1000, dst_port: 2000 },
        payload: &[],
        wire: Default::default(),
        fragment: Default::default(),
    }
}

/// A VXLAN-encapsulated packet: outer addresses (and optional outer MACs), VNI, inner addresses.
pub fn vxlan(
    outer: (&str, &str),
    outer_mac: Option<(Mac, Mac)>,
    vni: u32,
    inner: (&str, &str),
    inner_mac: Option<(Mac, Mac)>,
) -> Decoded<'static> {
    let mut d = plain(inner.0, inner.1, inner_mac);
    d.overlay.tunnels.push(Tunnel {
        kind: TunnelKind::Vxlan,
        outer_src: ip(outer.0),
        outer_dst: ip(outer.1),
        outer_mac: outer_mac.map(|(s, d)| MacPair { src: s, dst: d }),
        vni: Some(vni),
    });
    d
}

pub const MAC_A: Mac = [0x52, 0x54, 0, 0, 0, 0xa];
pub const MAC_B: Mac = [0x52, 0x54, 0, 0, 0, 0xb];

pub fn select(t: &Targeting, d: &Decoded<'_>, now: &str) -> SmallVec<[Match; 2]> {
    let mut out = SmallVec::new();
    t.select(d, ts(now), &mut out);
    out
}

pub fn liids(m: &[Match]) -> Vec<String> {
    m.iter().map(|m| m.liid.to_string()).collect()
}
