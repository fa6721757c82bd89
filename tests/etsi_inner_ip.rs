//! The IP packet IPCC delivers is the innermost one: compared with what tshark dissects as the
//! last IP layer of each frame (addresses and length) in public tunnel captures.

use std::process::Command;

use tapir::capture::file::CaptureFile;
use tapir::deliver::etsi::inner_ip_packet;
use tapir::deliver::etsi::ipaccess::packet_direction;
use tapir::deliver::etsi::PayloadDirection;

fn pcap(rel: &str) -> String {
    format!("{}/../shared/pcaps/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// Per frame: (src, dst, total length) of the innermost IPv4 or IPv6 layer tshark sees, not
/// counting a packet quoted in an ICMP error; `None` when a tunnel after it carries no IP (ARP
/// inside VXLAN: IPCC has nothing to carry).
fn tshark_inner(path: &str) -> Vec<Option<(String, String, usize)>> {
    let out = Command::new("tshark")
        .args(["-r", path, "-T", "fields", "-E", "occurrence=a", "-E", "separator=|", "-E", "aggregator=,"])
        .args(["-e", "ip.src", "-e", "ip.dst", "-e", "ip.len", "-e", "ipv6.src", "-e", "ipv6.dst", "-e", "ipv6.plen"])
        .args(["-e", "frame.protocols"])
        .output()
        .expect("tshark");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<Vec<&str>> = l.split('|').map(|x| x.split(',').collect()).collect();
            let protos: Vec<&str> = f[6][0].split(':').collect();
            let cut = protos.iter().position(|p| *p == "icmp" || *p == "icmpv6").unwrap_or(protos.len());
            let protos = &protos[..cut];
            let last = protos.iter().rposition(|p| *p == "ip" || *p == "ipv6")?;
            if protos[last..].iter().any(|p| ["vxlan", "geneve", "gre"].contains(p)) {
                return None;
            }
            let fam = protos[last];
            let idx = protos[..=last].iter().filter(|p| **p == fam).count() - 1;
            if fam == "ip" {
                Some((f[0][idx].to_string(), f[1][idx].to_string(), f[2][idx].parse().ok()?))
            } else {
                Some((f[3][idx].to_string(), f[4][idx].to_string(), 40 + f[5][idx].parse::<usize>().ok()?))
            }
        })
        .collect()
}

fn check(rel: &str) -> usize {
    let path = pcap(rel);
    let want = tshark_inner(&path);
    let cap = CaptureFile::open(std::path::Path::new(&path)).unwrap();
    let mut checked = 0;
    for (i, fr) in cap.frames().enumerate() {
        let fr = fr.unwrap();
        let Some((src, dst, len)) = want.get(i).cloned().flatten() else {
            assert_eq!(inner_ip_packet(fr.link, &fr.data), None, "{rel} frame {}: no inner IP", i + 1);
            continue;
        };
        let p = inner_ip_packet(fr.link, &fr.data).unwrap_or_else(|| panic!("{rel} frame {}: no inner packet", i + 1));
        assert_eq!(p.len(), len, "{rel} frame {}", i + 1);
        let (s, d): (std::net::IpAddr, std::net::IpAddr) = if p[0] >> 4 == 4 {
            (<[u8; 4]>::try_from(&p[12..16]).unwrap().into(), <[u8; 4]>::try_from(&p[16..20]).unwrap().into())
        } else {
            (<[u8; 16]>::try_from(&p[8..24]).unwrap().into(), <[u8; 16]>::try_from(&p[24..40]).unwrap().into())
        };
        assert_eq!((s.to_string(), d.to_string()), (src, dst), "{rel} frame {}", i + 1);
        assert_eq!(packet_direction(p, s), PayloadDirection::FromTarget);
        checked += 1;
    }
    checked
}

#[test]
fn vxlan_inner_packets_match_tshark() {
    assert!(check("suricata-verify/tests/vxlan-decoder-02/vxlan.pcap") >= 5);
}

#[test]
fn geneve_inner_packets_match_tshark() {
    assert!(check("suricata-verify/tests/geneve-decoder/input.pcap") >= 5);
}

#[test]
fn gre_inner_packets_match_tshark() {
    assert!(check("suricata-verify/tests/bug-5633-gre-02/gre-sample.pcap") >= 20);
}

#[test]
fn ethernet_padding_is_not_delivered() {
    // A 28-byte IPv4/UDP packet in a minimum 60-byte Ethernet frame: 18 bytes of padding.
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    let ip = hex::decode("4500001c0001000040110000c0000201c000020204d204d200080000").unwrap();
    f.extend_from_slice(&ip);
    f.resize(60, 0);
    assert_eq!(inner_ip_packet(tapir::capture::LinkType::Ethernet, &f), Some(&ip[..]));
    assert_eq!(inner_ip_packet(tapir::capture::LinkType::Ethernet, &f[..20]), None);
}
