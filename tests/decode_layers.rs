//! Hand-built packets for each layer, link type and tunnel; expectations written from the RFCs'
//! field layouts, not from this decoder.

use crate::decode_util;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use decode_util::build::*;
use etherparse::PacketBuilder;
use tapir::capture::{Frame, LinkType};
use tapir::decode::{
    tcp_flags, DecodeConfig, DecodeError, Decoder, IpInfo, MacPair, Overlay, TcpInfo, Transport, TunnelKind,
};
use tapir::timestamp::Timestamp;

#[derive(Debug)]
struct Got {
    overlay: Overlay,
    mac: Option<MacPair>,
    ip: Option<IpInfo>,
    transport: Transport,
    payload: Vec<u8>,
}

fn run_cfg(link: LinkType, data: &[u8], cfg: DecodeConfig) -> Result<Got, DecodeError> {
    let mut dec = Decoder::new(cfg);
    let frame = Frame { ts: Timestamp(0), link, data, orig_len: data.len() as u32 };
    let d = dec.decode(&frame)?;
    Ok(Got { overlay: d.overlay, mac: d.mac, ip: d.ip, transport: d.transport, payload: d.payload.to_vec() })
}

fn run(link: LinkType, data: &[u8]) -> Result<Got, DecodeError> {
    run_cfg(link, data, DecodeConfig::default())
}

const A4: [u8; 4] = [192, 0, 2, 1];
const B4: [u8; 4] = [198, 51, 100, 2];
const C4: [u8; 4] = [10, 1, 1, 1];
const D4: [u8; 4] = [10, 2, 2, 2];
const A6: [u16; 8] = [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1];
const B6: [u16; 8] = [0x2001, 0xdb8, 0, 0, 0, 0, 0, 2];

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}
fn v6(a: [u16; 8]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]))
}
fn macs(src: [u8; 6], dst: [u8; 6]) -> Option<MacPair> {
    Some(MacPair { src, dst })
}

#[test]
fn ethernet_ipv4_tcp_from_etherparse_builder() {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(A4, B4, 17).tcp(40000, 80, 1000, 4096).syn().ack(77);
    let mut pkt = Vec::new();
    b.write(&mut pkt, b"hello").unwrap();
    pkt.extend([0u8; 6]); // Ethernet padding after the IP datagram must not reach the payload
    let g = run(LinkType::Ethernet, &pkt).unwrap();
    assert_eq!(g.mac, macs(MAC_A, MAC_B));
    // 20 + 20 + 5: the padding is not the target's, and the lengths are the wire's.
    assert_eq!(g.ip, Some(IpInfo { src: v4(A4), dst: v4(B4), proto: 6, ttl: 17, len: 45, payload_len: 5 }));
    assert_eq!(
        g.transport,
        Transport::Tcp(TcpInfo {
            src_port: 40000,
            dst_port: 80,
            seq: 1000,
            ack: 77,
            flags: tcp_flags::SYN | tcp_flags::ACK,
            window: 4096,
            mss: None
        })
    );
    assert_eq!(g.payload, b"hello");
    assert!(g.overlay.tunnels.is_empty() && g.overlay.vlans.is_empty());
}

#[test]
fn ipv4_options_and_udp() {
    let opts = [1, 1, 1, 0]; // NOP NOP NOP EOL: IHL 6
    let pkt = eth(MAC_B, MAC_A, 0x0800, &ipv4_full(A4, B4, 17, 1, false, 0, &opts, &udp(53, 5353, b"q")));
    let g = run(LinkType::Ethernet, &pkt).unwrap();
    assert_eq!(g.transport, Transport::Udp { src_port: 53, dst_port: 5353 });
    assert_eq!(g.payload, b"q");
}

#[test]
fn qinq_and_depth_limit() {
    let inner = ipv4(A4, B4, 17, &udp(1, 2, b""));
    let pkt = cat(&[&MAC_B, &MAC_A, &[0x88, 0xa8], &vlan(100, 0x8100), &vlan(200, 0x0800), &inner]);
    let g = run(LinkType::Ethernet, &pkt).unwrap();
    assert_eq!(&g.overlay.vlans[..], &[100, 200]);
    assert_eq!(g.transport, Transport::Udp { src_port: 1, dst_port: 2 });
    let cfg = DecodeConfig { max_depth: 1, ..DecodeConfig::default() };
    assert_eq!(run_cfg(LinkType::Ethernet, &pkt, cfg).unwrap_err(), DecodeError::TooDeep(2));
}

#[test]
fn mpls_stack_then_ipv6_by_nibble() {
    // Label 16 (S=0) then label 17 (S=1), TTL 255: label << 12 | S << 8 | TTL.
    let l1 = ((16u32 << 12) | 0xff).to_be_bytes();
    let l2 = ((17u32 << 12) | 0x100 | 0xff).to_be_bytes();
    let pkt = eth(MAC_B, MAC_A, 0x8847, &cat(&[&l1, &l2, &ipv6(A6, B6, 17, &udp(7, 9, b"x"))]));
    let g = run(LinkType::Ethernet, &pkt).unwrap();
    assert_eq!(&g.overlay.mpls[..], &[16, 17]);
    assert_eq!(g.ip.map(|i| (i.src, i.dst, i.proto)), Some((v6(A6), v6(B6), 17)));
    assert_eq!(g.transport, Transport::Udp { src_port: 7, dst_port: 9 });
}

#[test]
fn ipv6_extension_header_chain() {
    // Hop-by-hop (8 bytes: nh, len 0, PadN 4), routing type 0 segments-left 0 (8 bytes),
    // destination options (16 bytes, len 1), AH (len 4 -> (4+2)*4 = 24 bytes), then UDP.
    let hbh = [43, 0, 1, 4, 0, 0, 0, 0];
    let rh = [60, 0, 0, 0, 0, 0, 0, 0];
    let mut dst = vec![51, 1, 1, 12];
    dst.extend([0u8; 12]);
    let mut ah = vec![17, 4, 0, 0];
    ah.extend([0u8; 20]);
    let pkt = ipv6(A6, B6, 0, &cat(&[&hbh, &rh, &dst, &ah, &udp(500, 4500, b"ike")]));
    let g = run(LinkType::Ipv6, &pkt).unwrap();
    assert_eq!(g.ip.map(|i| i.proto), Some(17));
    assert_eq!(g.transport, Transport::Udp { src_port: 500, dst_port: 4500 });
    assert_eq!(g.payload, b"ike");
    // The same chain cut inside the AH header is a truncation, not a panic.
    let cut = &pkt[..40 + 8 + 8 + 16 + 10];
    assert!(matches!(run(LinkType::Raw, cut), Err(DecodeError::Truncated { layer: "ipv6-ext", .. })));
}

#[test]
fn icmp_and_icmpv6() {
    let echo = [8, 0, 0, 0, 0, 1, 0, 1, b'p'];
    let g = run(LinkType::Ipv4, &ipv4(A4, B4, 1, &echo)).unwrap();
    assert_eq!(g.transport, Transport::Icmp { icmp_type: 8, code: 0 });
    assert_eq!(g.payload, b"p");
    let ns = [135, 0, 0, 0, 0, 0, 0, 0];
    let g = run(LinkType::Ipv6, &ipv6(A6, B6, 58, &ns)).unwrap();
    assert_eq!(g.transport, Transport::Icmpv6 { icmp_type: 135, code: 0 });
}

#[test]
fn link_types() {
    let p4 = ipv4(A4, B4, 17, &udp(1, 2, b""));
    let p6 = ipv6(A6, B6, 17, &udp(3, 4, b""));
    let src4 = Some(v4(A4));
    let src6 = Some(v6(A6));
    let ip_src = |l, d: &[u8]| run(l, d).unwrap().ip.map(|i| i.src);
    assert_eq!(ip_src(LinkType::Raw, &p4), src4);
    assert_eq!(ip_src(LinkType::Raw, &p6), src6);
    assert_eq!(ip_src(LinkType::Ipv4, &p4), src4);
    assert_eq!(ip_src(LinkType::Ipv6, &p6), src6);
    // Linux cooked v1: packet type, ARPHRD, address length, 8-byte address, protocol.
    let sll = cat(&[&[0, 0, 0, 1, 0, 6], &MAC_A, &[0, 0], &[0x86, 0xdd], &p6]);
    assert_eq!(ip_src(LinkType::LinuxSll, &sll), src6);
    // Linux cooked v2: protocol, reserved, ifindex, ARPHRD, packet type, address length, address.
    let sll2 = cat(&[&[0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6], &MAC_A, &[0, 0], &p4]);
    assert_eq!(ip_src(LinkType::LinuxSll2, &sll2), src4);
    // BSD Null: family in either byte order; 2 = IPv4, 24/28/30 = IPv6 (NetBSD/FreeBSD/Darwin).
    assert_eq!(ip_src(LinkType::Null, &cat(&[&2u32.to_le_bytes(), &p4])), src4);
    assert_eq!(ip_src(LinkType::Null, &cat(&[&2u32.to_be_bytes(), &p4])), src4);
    for af in [24u32, 28, 30] {
        assert_eq!(ip_src(LinkType::Null, &cat(&[&af.to_le_bytes(), &p6])), src6);
        assert_eq!(ip_src(LinkType::Null, &cat(&[&af.to_be_bytes(), &p6])), src6);
        assert_eq!(ip_src(LinkType::Loop, &cat(&[&af.to_be_bytes(), &p6])), src6);
    }
    // LOOP is always network byte order.
    assert!(matches!(
        run(LinkType::Loop, &cat(&[&2u32.to_le_bytes(), &p4])),
        Err(DecodeError::BadField { layer: "null", field: "family", value: 0x0200_0000 })
    ));
    assert_eq!(run(LinkType::Other(147), &p4).unwrap_err(), DecodeError::UnsupportedLinkType(147));
    assert!(matches!(run(LinkType::Raw, &[0x50; 30]), Err(DecodeError::BadField { field: "version", value: 5, .. })));
}

#[test]
fn non_ip_and_truncation() {
    let arp = eth([0xff; 6], MAC_A, 0x0806, &[0u8; 28]);
    let g = run(LinkType::Ethernet, &arp).unwrap();
    assert_eq!((g.ip, g.transport, g.mac), (None, Transport::None, macs(MAC_A, [0xff; 6])));
    assert_eq!(
        run(LinkType::Ethernet, &arp[..10]).unwrap_err(),
        DecodeError::Truncated { layer: "ethernet", needed: 14, have: 10 }
    );
    let short_tcp = ipv4(A4, B4, 6, &[0u8; 12]);
    assert_eq!(
        run(LinkType::Ipv4, &short_tcp).unwrap_err(),
        DecodeError::Truncated { layer: "tcp", needed: 20, have: 12 }
    );
}

/// Outer Ethernet MAC_A->MAC_B / IPv4 C4->D4 / UDP -> VXLAN VNI 0x123456 -> inner Ethernet
/// MAC_C->MAC_D with VLAN 7 -> IPv4 A4->B4 / TCP.
#[test]
fn vxlan_with_inner_vlan() {
    let inner_ip = ipv4(A4, B4, 6, &tcp(1234, 443, 1, 0, tcp_flags::SYN, 100, b""));
    let inner = cat(&[&MAC_D, &MAC_C, &[0x81, 0x00], &vlan(7, 0x0800), &inner_ip]);
    let outer = eth(MAC_B, MAC_A, 0x0800, &ipv4(C4, D4, 17, &udp(50000, 4789, &cat(&[&vxlan(0x123456), &inner]))));
    let g = run(LinkType::Ethernet, &outer).unwrap();
    assert_eq!(g.overlay.tunnels.len(), 1);
    let t = g.overlay.tunnels[0];
    assert_eq!((t.kind, t.outer_src, t.outer_dst, t.vni), (TunnelKind::Vxlan, v4(C4), v4(D4), Some(0x123456)));
    assert_eq!(t.outer_mac, macs(MAC_A, MAC_B));
    assert_eq!(g.mac, macs(MAC_C, MAC_D));
    assert_eq!(&g.overlay.vlans[..], &[7]);
    assert_eq!(g.overlay.vni(), Some(0x123456));
    assert_eq!(g.ip.map(|i| (i.src, i.dst)), Some((v4(A4), v4(B4))));
    assert!(matches!(g.transport, Transport::Tcp(TcpInfo { src_port: 1234, dst_port: 443, .. })));
    // Another port is plain UDP; a configured one decapsulates.
    let other = eth(MAC_B, MAC_A, 0x0800, &ipv4(C4, D4, 17, &udp(50000, 4790, &cat(&[&vxlan(1), &inner]))));
    assert_eq!(run(LinkType::Ethernet, &other).unwrap().transport, Transport::Udp { src_port: 50000, dst_port: 4790 });
    let cfg = DecodeConfig { vxlan_port: 4790, ..DecodeConfig::default() };
    assert_eq!(run_cfg(LinkType::Ethernet, &other, cfg).unwrap().overlay.vni(), Some(1));
}

#[test]
fn geneve_with_options_ethernet_and_ip() {
    let opts = [0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef]; // one option: class, type, length 1, 4 bytes of data
    let inner_ip = ipv6(A6, B6, 17, &udp(10, 20, b"g"));
    let inner_eth = eth(MAC_D, MAC_C, 0x86dd, &inner_ip);
    let pkt = ipv4(C4, D4, 17, &udp(1, 6081, &cat(&[&geneve(0xabcdef, 0x6558, &opts), &inner_eth])));
    let g = run(LinkType::Ipv4, &pkt).unwrap();
    let t = g.overlay.tunnels[0];
    assert_eq!((t.kind, t.vni, t.outer_mac), (TunnelKind::Geneve, Some(0xabcdef), None));
    assert_eq!(g.mac, macs(MAC_C, MAC_D));
    assert_eq!(g.transport, Transport::Udp { src_port: 10, dst_port: 20 });
    assert_eq!(g.payload, b"g");
    let pkt = ipv4(C4, D4, 17, &udp(1, 6081, &cat(&[&geneve(5, 0x86dd, &[]), &inner_ip])));
    let g = run(LinkType::Ipv4, &pkt).unwrap();
    assert_eq!((g.overlay.vni(), g.mac, g.ip.map(|i| i.src)), (Some(5), None, Some(v6(A6))));
}

fn gre_packet(gre: &[u8], inner: &[u8]) -> Vec<u8> {
    eth(MAC_B, MAC_A, 0x0800, &ipv4(C4, D4, 47, &cat(&[gre, inner])))
}

#[test]
fn gre_variants() {
    let inner4 = ipv4(A4, B4, 17, &udp(1, 2, b""));
    // C, K, S flags (0xb000), IPv4: checksum+reserved, key 0xabcd, sequence 5.
    let gre = [0xb0, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0xab, 0xcd, 0, 0, 0, 5];
    let g = run(LinkType::Ethernet, &gre_packet(&gre, &inner4)).unwrap();
    let t = g.overlay.tunnels[0];
    assert_eq!((t.kind, t.vni, t.outer_src, t.outer_mac), (TunnelKind::Gre, Some(0xabcd), v4(C4), macs(MAC_A, MAC_B)));
    assert_eq!(g.ip.map(|i| i.src), Some(v4(A4)));
    // No flags, IPv6 inner.
    let g = run(LinkType::Ethernet, &gre_packet(&[0, 0, 0x86, 0xdd], &ipv6(A6, B6, 59, &[]))).unwrap();
    assert_eq!((g.overlay.tunnels[0].vni, g.ip.map(|i| i.src)), (None, Some(v6(A6))));
    // Transparent Ethernet bridging with key 9.
    let teb = [0x20, 0x00, 0x65, 0x58, 0, 0, 0, 9];
    let g = run(LinkType::Ethernet, &gre_packet(&teb, &eth(MAC_D, MAC_C, 0x0800, &inner4))).unwrap();
    assert_eq!(
        (g.overlay.tunnels[0].kind, g.overlay.vni(), g.mac),
        (TunnelKind::GreEthernet, Some(9), macs(MAC_C, MAC_D))
    );
    // ERSPAN type II: GRE with S, then version 1, VLAN 0, session 0x155 (10 bits), index.
    let gre_s = [0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 1];
    let erspan2 = [0x10, 0x00, 0x01, 0x55, 0, 0, 0, 0];
    let g =
        run(LinkType::Ethernet, &gre_packet(&gre_s, &cat(&[&erspan2, &eth(MAC_D, MAC_C, 0x0800, &inner4)]))).unwrap();
    assert_eq!(
        (g.overlay.tunnels[0].kind, g.overlay.vni(), g.mac),
        (TunnelKind::Erspan2, Some(0x155), macs(MAC_C, MAC_D))
    );
    // ERSPAN type III with the O bit: 12-byte header + 8-byte platform subheader, session 0x2aa.
    let mut erspan3 = vec![0x20, 0x00, 0x02, 0xaa, 0, 0, 0, 0, 0, 0, 0x00, 0x01];
    erspan3.extend([0u8; 8]);
    let gre3 = [0x10, 0x00, 0x22, 0xeb, 0, 0, 0, 1];
    let g =
        run(LinkType::Ethernet, &gre_packet(&gre3, &cat(&[&erspan3, &eth(MAC_D, MAC_C, 0x0800, &inner4)]))).unwrap();
    assert_eq!((g.overlay.tunnels[0].kind, g.overlay.vni()), (TunnelKind::Erspan3, Some(0x2aa)));
    assert_eq!(g.transport, Transport::Udp { src_port: 1, dst_port: 2 });
    // Unknown protocol type: the GRE packet itself is the payload of the outer IP.
    let g = run(LinkType::Ethernet, &gre_packet(&[0, 0, 0x12, 0x34], b"zz")).unwrap();
    assert_eq!((g.transport, g.ip.map(|i| i.proto), g.overlay.tunnels.len()), (Transport::Other, Some(47), 0));
    // GRE version 2 does not exist.
    assert!(matches!(
        run(LinkType::Ethernet, &gre_packet(&[0, 2, 8, 0], &inner4)),
        Err(DecodeError::BadField { layer: "gre", field: "version", value: 2 })
    ));
}

#[test]
fn ip_in_ip_family() {
    let in4 = ipv4(A4, B4, 17, &udp(1, 2, b""));
    let in6 = ipv6(A6, B6, 17, &udp(3, 4, b""));
    let cases = [
        (ipv4(C4, D4, 4, &in4), TunnelKind::IpInIp, v4(A4)),
        (ipv4(C4, D4, 41, &in6), TunnelKind::SixInFour, v6(A6)),
        (ipv6(B6, A6, 4, &in4), TunnelKind::IpInIp, v4(A4)),
        (ipv6(B6, A6, 41, &in6), TunnelKind::SixInFour, v6(A6)),
    ];
    for (pkt, kind, src) in cases {
        let g = run(LinkType::Raw, &pkt).unwrap();
        assert_eq!(g.overlay.tunnels.len(), 1);
        assert_eq!((g.overlay.tunnels[0].kind, g.ip.map(|i| i.src)), (kind, Some(src)));
    }
    // Proto 4 carrying an IPv6 packet is a bad inner version.
    assert!(matches!(run(LinkType::Raw, &ipv4(C4, D4, 4, &in6)), Err(DecodeError::BadField { layer: "ipv4", .. })));
}

#[test]
fn nested_tunnels_and_depth() {
    // VXLAN (VNI 1) carrying Ethernet/IPv4 GRE key 2 carrying IPv4/UDP.
    let innermost = ipv4(A4, B4, 17, &udp(5, 6, b""));
    let gre = ipv4(C4, D4, 47, &cat(&[&[0x20, 0, 8, 0, 0, 0, 0, 2], &innermost]));
    let vx = ipv4(D4, C4, 17, &udp(9, 4789, &cat(&[&vxlan(1), &eth(MAC_D, MAC_C, 0x0800, &gre)])));
    let pkt = eth(MAC_B, MAC_A, 0x0800, &vx);
    let g = run(LinkType::Ethernet, &pkt).unwrap();
    let kinds: Vec<_> = g.overlay.tunnels.iter().map(|t| (t.kind, t.vni, t.outer_src, t.outer_mac)).collect();
    assert_eq!(
        kinds,
        vec![
            (TunnelKind::Vxlan, Some(1), v4(D4), macs(MAC_A, MAC_B)),
            (TunnelKind::Gre, Some(2), v4(C4), macs(MAC_C, MAC_D)),
        ]
    );
    assert_eq!(g.overlay.vni(), Some(2));
    assert_eq!(g.mac, macs(MAC_C, MAC_D), "innermost Ethernet header");
    let cfg = DecodeConfig { max_depth: 1, ..DecodeConfig::default() };
    assert_eq!(run_cfg(LinkType::Ethernet, &pkt, cfg).unwrap_err(), DecodeError::TooDeep(2));
}
