//! Shared helpers of the decode tests: a minimal pcap/pcapng reader (independent of
//! `src/capture/file.rs`) and Wireshark's view of each frame (tshark's, or sharkd's for many
//! captures) as the expected value.

pub mod build;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::Sharkd;
use tapir::capture::{Frame, LinkType};
use tapir::decode::{Decoded, Transport};
use tapir::timestamp::Timestamp;

/// One captured frame, owned.
pub struct Pkt {
    pub ts: Timestamp,
    pub link: LinkType,
    pub data: Vec<u8>,
    pub orig_len: u32,
}

impl Pkt {
    pub fn frame(&self) -> Frame<'_> {
        Frame { ts: self.ts, link: self.link, data: &self.data, orig_len: self.orig_len }
    }
}

/// A capture in the shared public corpus (`../shared/pcaps/` next to the repository).
pub fn shared_pcap(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps").join(rel)
}

fn u16_at(b: &[u8], o: usize, le: bool) -> u16 {
    let a = [b[o], b[o + 1]];
    if le {
        u16::from_le_bytes(a)
    } else {
        u16::from_be_bytes(a)
    }
}

fn u32_at(b: &[u8], o: usize, le: bool) -> u32 {
    let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
    if le {
        u32::from_le_bytes(a)
    } else {
        u32::from_be_bytes(a)
    }
}

/// Reads a classic pcap or a pcapng file (test inputs are trusted: this panics on a bad file).
pub fn read_capture(path: &Path) -> Vec<Pkt> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(b.len() >= 24, "{}: too short", path.display());
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    match magic {
        0xa1b2c3d4 | 0xa1b23c4d | 0xd4c3b2a1 | 0x4d3cb2a1 => read_pcap(&b, magic),
        0x0a0d0d0a => read_pcapng(&b),
        m => panic!("{}: unknown magic {m:#x}", path.display()),
    }
}

fn read_pcap(b: &[u8], magic: u32) -> Vec<Pkt> {
    let le = matches!(magic, 0xa1b2c3d4 | 0xa1b23c4d);
    let nanos = matches!(magic, 0xa1b23c4d | 0x4d3cb2a1);
    let link = LinkType::from_linktype(u32_at(b, 20, le) & 0x0fff_ffff);
    let mut out = Vec::new();
    let mut o = 24;
    while o + 16 <= b.len() {
        let (sec, frac) = (u32_at(b, o, le), u32_at(b, o + 4, le));
        let (incl, orig) = (u32_at(b, o + 8, le) as usize, u32_at(b, o + 12, le));
        let data = b[o + 16..(o + 16 + incl).min(b.len())].to_vec();
        let ns = if nanos { frac } else { frac.saturating_mul(1000) };
        out.push(Pkt { ts: Timestamp::from_secs_nanos(sec.into(), ns), link, data, orig_len: orig });
        o += 16 + incl;
    }
    out
}

fn read_pcapng(b: &[u8]) -> Vec<Pkt> {
    let mut le = true;
    // (link type, snaplen, units per second)
    let mut ifaces: Vec<(LinkType, u32, u64)> = Vec::new();
    let mut out = Vec::new();
    let mut o = 0;
    while o + 12 <= b.len() {
        let btype = u32_at(b, o, le);
        if btype == 0x0a0d0d0a {
            le = u32_at(b, o + 8, true) == 0x1a2b3c4d;
            ifaces.clear();
        }
        let blen = u32_at(b, o + 4, le) as usize;
        assert!(blen >= 12 && o + blen <= b.len(), "bad pcapng block length {blen} at {o}");
        let body = &b[o + 8..o + blen - 4];
        match btype {
            1 => {
                let link = LinkType::from_linktype(u16_at(body, 0, le).into());
                let snap = u32_at(body, 4, le);
                let mut per_sec = 1_000_000u64;
                let mut p = 8;
                while p + 4 <= body.len() {
                    let (code, len) = (u16_at(body, p, le), u16_at(body, p + 2, le) as usize);
                    if code == 0 {
                        break;
                    }
                    if code == 9 && len >= 1 {
                        let v = body[p + 4];
                        per_sec = if v & 0x80 == 0 { 10u64.pow(u32::from(v)) } else { 1u64 << (v & 0x7f) };
                    }
                    p += 4 + len.div_ceil(4) * 4;
                }
                ifaces.push((link, snap, per_sec));
            }
            6 => {
                let (link, _, per_sec) = ifaces[u32_at(body, 0, le) as usize];
                let units = (u64::from(u32_at(body, 4, le)) << 32) | u64::from(u32_at(body, 8, le));
                let ns = (u128::from(units) * 1_000_000_000 / u128::from(per_sec)) as i64;
                let cap = u32_at(body, 12, le) as usize;
                let orig = u32_at(body, 16, le);
                out.push(Pkt { ts: Timestamp(ns), link, data: body[20..20 + cap].to_vec(), orig_len: orig });
            }
            3 => {
                let (link, snap, _) = ifaces[0];
                let orig = u32_at(body, 0, le);
                let cap = (orig as usize).min(body.len() - 4).min(if snap == 0 { usize::MAX } else { snap as usize });
                out.push(Pkt { ts: Timestamp(0), link, data: body[4..4 + cap].to_vec(), orig_len: orig });
            }
            _ => {}
        }
        o += blen;
    }
    out
}

/// What tshark says about the innermost IP header and transport ports of one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub ports: Option<(u16, u16)>,
}

/// Protocol names after which tshark follows encapsulations this decoder deliberately does not
/// (ICMP errors quote the offending packet; the rest are not in the decoder's scope).
const STOP_AT: &[&str] = &["icmp", "icmpv6", "gtp", "teredo", "l2tp", "nsh", "pptp", "lisp", "cflow", "sflow"];

fn nth(list: &str, k: usize) -> Option<&str> {
    list.split(',').nth(k).filter(|s| !s.is_empty())
}

/// The fields of each frame that [`expect_of`] reads, in its order.
const FIELDS: [&str; 9] = [
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
];

/// Runs tshark on `path` (with `extra` arguments such as `-d udp.port==8472,vxlan`) and returns
/// [`expect_of`] each frame.
pub fn tshark_expect(path: &Path, extra: &[&str]) -> Vec<Expect> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(path).args(["-o", "ip.defragment:TRUE", "-o", "ipv6.defragment:TRUE"]).args(extra);
    cmd.args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark runs (apt-get install tshark)");
    assert!(out.status.success(), "tshark failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    text.lines().map(|l| expect_of(&l.split('\t').collect::<Vec<_>>())).collect()
}

/// [`tshark_expect`] of many captures, read by one [`Sharkd`] (the corpus tests ask about a
/// hundred captures), with tshark's preferences here (IP and IPv6 reassembly on; sharkd resolves
/// no names). A column cut at Wireshark's column limit (hundreds of nested headers, in the
/// evasion captures) is asked of tshark instead.
pub fn sharkd_expect(paths: &[PathBuf]) -> Vec<Vec<Expect>> {
    let mut sharkd = Sharkd::spawn();
    for pref in ["ip.defragment", "ipv6.defragment"] {
        sharkd.set_pref(pref, "TRUE");
    }
    paths
        .iter()
        .map(|path| {
            sharkd.load(path);
            match sharkd.frames(None, &FIELDS) {
                Some(rows) => {
                    rows.iter().map(|(_, r)| expect_of(&r.iter().map(String::as_str).collect::<Vec<_>>())).collect()
                }
                None => tshark_expect(path, &[]),
            }
        })
        .collect()
}

/// Per frame, the last IP header's addresses and the ports of the transport right after it,
/// counting occurrences along `frame.protocols` (nested fields come comma-separated), from the
/// values of [`FIELDS`].
fn expect_of(f: &[&str]) -> Expect {
    let get = |i: usize| f.get(i).copied().unwrap_or("");
    let protos: Vec<&str> = get(0).split(':').collect();
    let cut = protos.iter().position(|p| STOP_AT.contains(p)).unwrap_or(protos.len());
    let protos = &protos[..cut];
    let (mut n4, mut n6, mut ntcp, mut nudp) = (0, 0, 0, 0);
    let mut last_ip = None;
    let mut last_l4 = None;
    for p in protos {
        match *p {
            "ip" => {
                n4 += 1;
                last_ip = Some((4, n4 - 1));
                last_l4 = None;
            }
            "ipv6" => {
                n6 += 1;
                last_ip = Some((6, n6 - 1));
                last_l4 = None;
            }
            "tcp" => {
                ntcp += 1;
                last_l4 = Some(("tcp", ntcp - 1));
            }
            "udp" => {
                nudp += 1;
                last_l4 = Some(("udp", nudp - 1));
            }
            _ => {}
        }
    }
    let (src, dst) = match last_ip {
        Some((4, k)) => (nth(get(1), k), nth(get(2), k)),
        Some((_, k)) => (nth(get(3), k), nth(get(4), k)),
        None => (None, None),
    };
    let ports = match last_l4 {
        Some(("tcp", k)) => nth(get(5), k).zip(nth(get(6), k)),
        Some((_, k)) => nth(get(7), k).zip(nth(get(8), k)),
        None => None,
    }
    .map(|(a, b)| (a.parse().expect("port"), b.parse().expect("port")));
    Expect { src: src.map(|s| s.parse().expect("ip")), dst: dst.map(|s| s.parse().expect("ip")), ports }
}

/// The same view of a decode result. A non-IP packet inside a tunnel (ARP, STP) has no IP
/// header of its own; tshark's innermost IP is then the tunnel's outer one, compared without
/// ports (tshark's would be the outer UDP's).
pub fn observed(d: &Decoded<'_>, want: &Expect) -> Expect {
    if let (None, Transport::None, Some(t)) = (d.ip, d.transport, d.overlay.tunnels.last()) {
        return Expect { src: Some(t.outer_src), dst: Some(t.outer_dst), ports: want.ports };
    }
    let ports = match d.transport {
        Transport::Tcp(t) => Some((t.src_port, t.dst_port)),
        Transport::Udp { src_port, dst_port } => Some((src_port, dst_port)),
        _ => None,
    };
    Expect { src: d.ip.map(|i| i.src), dst: d.ip.map(|i| i.dst), ports }
}
