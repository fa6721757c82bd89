//! Real captures from public test suites (see `../shared/pcaps/MANIFEST.tsv`), read by tapir and by
//! Wireshark (sharkd, tshark's engine) at test time: same frames, times, lengths, link types and
//! bytes. Covers pcapng (several interfaces with different link types, nanosecond interfaces),
//! pcap with Ethernet, BSD loopback, raw IPv4/IPv6, Linux SLL and SLL2, PPP, nanosecond pcap, and
//! gzip-compressed pcap.

use std::path::{Path, PathBuf};
use std::process::Command;

use tapir::capture::file::{CaptureFile, Merge};
use tapir::capture::LinkType;

use crate::common::Sharkd;

fn shared(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/pcaps")).join(rel)
}

/// (file under shared/pcaps, link type expected for its frames when there is one for all).
const CAPTURES: &[(&str, Option<LinkType>)] = &[
    // pcapng
    ("fq/format/pcap/testdata/many_interfaces.pcapng", None), // 11 interfaces, Ethernet and NULL
    ("ndpi/tests/cfgs/default/pcap/stun_dtls_rtp.pcapng", Some(LinkType::Ethernet)), // ns resolution
    ("ndpi/tests/cfgs/default/pcap/rtsp.pcap", Some(LinkType::LinuxSll)), // pcapng despite the name
    ("fq/format/pcap/testdata/dhcp_little_endian.pcapng", Some(LinkType::Ethernet)),
    ("zeek/testing/btest/Traces/smtp/smtp-bdat-cmd-invalid.pcapng", Some(LinkType::Ethernet)),
    ("ndpi/tests/cfgs/default/pcap/youtubeupload.pcap", Some(LinkType::Ethernet)),
    ("zeek/testing/btest/Traces/vlan-pcp-dei.pcapng", Some(LinkType::Ethernet)),
    // pcap
    ("suricata-verify/tests/alert-testmyids-async/input.pcap", Some(LinkType::Ethernet)),
    ("tcpdump/tests/tcp-handshake-nano.pcap", Some(LinkType::LinuxSll)), // nanosecond magic
    ("tcpdump/tests/mptcp-v1.pcap", Some(LinkType::LinuxSll)),
    ("fq/format/pcap/testdata/sll2_tcp.pcap", Some(LinkType::LinuxSll2)),
    ("suricata-verify/tests/http-ipv6/input.pcap", Some(LinkType::Null)),
    ("zeek/testing/btest/Traces/tcp/timeout-with-pings.pcap", Some(LinkType::Ipv4)),
    ("zeek/testing/btest/Traces/tcp/payload-syn.pcap", Some(LinkType::Raw)),
    ("suricata-verify/tests/defrag/bug-6887-defrag-ipv6-tcp/frag-ip-tcp.pcap", Some(LinkType::Ipv6)),
    (
        "suricata-verify/tests/defrag/bug-6887-defrag-ppp-ipv4-tcp-syn/frag-ppp-ip-tcp-syn.pcap",
        Some(LinkType::Other(9)),
    ),
    // gzip
    ("zeek/testing/btest/Traces/smtp/smtp-many-addresses.pcap.gz", Some(LinkType::Ethernet)),
    ("zeek/testing/btest/Traces/trunc/mpls-6in6-broken.pcap.gz", Some(LinkType::Ethernet)),
];

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A frame as Wireshark sees it.
#[derive(Debug, PartialEq)]
struct Seen {
    ns: i64,
    cap_len: u32,
    len: u32,
    /// Wiretap's name of the frame's encapsulation (`frame.encap_type` as Wireshark shows it).
    encap: String,
}

/// `frame.time_epoch` ("secs.nnnnnnnnn") to nanoseconds, by string, not float. Times past
/// 2262-04-11 do not fit `Timestamp` and saturate to its maximum (dhcp_little_endian.pcapng has
/// timestamps in the year 151989).
fn epoch_ns(s: &str) -> i64 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let mut frac = frac.to_owned();
    assert!(frac.len() <= 9, "{s}");
    while frac.len() < 9 {
        frac.push('0');
    }
    secs.parse::<i64>()
        .unwrap()
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac.parse::<i64>().unwrap()))
        .unwrap_or(i64::MAX)
}

/// Each frame as Wireshark reads it, with its raw bytes: asked of one sharkd for every capture
/// rather than of a tshark run each (`tshark -T json -x -j frame`, 0.3 s of CPU per run before
/// the first frame). Both gave the same times, lengths, encapsulations and bytes for all 5342
/// frames of these captures when the change was made.
fn wireshark_frames(sharkd: &mut Sharkd, path: &Path) -> Vec<(Seen, Vec<u8>)> {
    sharkd.load(path);
    let fields = ["frame.time_epoch", "frame.cap_len", "frame.len", "frame.encap_type"];
    let rows = sharkd.frames(None, &fields).expect("these columns are short");
    rows.into_iter()
        .map(|(num, c)| {
            let seen = Seen {
                ns: epoch_ns(&c[0]),
                cap_len: c[1].parse().unwrap(),
                len: c[2].parse().unwrap(),
                encap: c[3].clone(),
            };
            (seen, sharkd.frame_bytes(num))
        })
        .collect()
}

/// Wiretap's encapsulations (wiretap/wtap.c, by the names Wireshark shows) for the link types
/// in these captures.
fn link_of_encap(name: &str) -> LinkType {
    match name {
        "Ethernet" => LinkType::Ethernet,
        "PPP" => LinkType::Other(9), // WTAP_ENCAP_PPP, LINKTYPE_PPP
        "Raw IP" => LinkType::Raw,
        "NULL/Loopback" => LinkType::Null,
        "Linux cooked-mode capture v1" => LinkType::LinuxSll,
        "Raw IPv4" => LinkType::Ipv4,
        "Raw IPv6" => LinkType::Ipv6,
        "Linux cooked-mode capture v2" => LinkType::LinuxSll2,
        other => panic!("no mapping for wiretap encapsulation {other}"),
    }
}

#[test]
fn real_captures_match_tshark() {
    let mut sharkd = Sharkd::spawn();
    for (rel, link) in CAPTURES {
        let path = shared(rel);
        let f = CaptureFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.is_gzip(), rel.ends_with(".gz"), "{rel}");
        let ours: Vec<_> = f.frames().map(|r| r.unwrap_or_else(|d| panic!("{rel}: {d}"))).collect();
        let theirs = wireshark_frames(&mut sharkd, &path);
        assert!(!theirs.is_empty(), "{rel}");
        assert_eq!(ours.len(), theirs.len(), "{rel}: frame count");
        for (i, (o, (t, b))) in ours.iter().zip(&theirs).enumerate() {
            let n = i + 1;
            assert_eq!(o.ts.nanos(), t.ns, "{rel} frame {n}: time");
            assert_eq!(o.data.len() as u32, t.cap_len, "{rel} frame {n}: captured length");
            assert_eq!(o.orig_len, t.len, "{rel} frame {n}: wire length");
            assert_eq!(o.link, link_of_encap(&t.encap), "{rel} frame {n}: link type");
            if let Some(l) = link {
                assert_eq!(o.link, *l, "{rel} frame {n}");
            }
            assert_eq!(o.data, &b[..], "{rel} frame {n}: bytes");
        }
        let mut it = f.frames();
        it.by_ref().for_each(drop);
        assert_eq!(it.position(), f.size(), "{rel}: consumed all");
    }
}

#[test]
fn many_interfaces_pcapng_has_both_link_types() {
    let f = CaptureFile::open(&shared("fq/format/pcap/testdata/many_interfaces.pcapng")).unwrap();
    let links: Vec<LinkType> = f.frames().map(|r| r.unwrap().link).collect();
    // capinfos: "Ethernet (62)", "NULL/Loopback (2)".
    assert_eq!(links.iter().filter(|l| **l == LinkType::Ethernet).count(), 62);
    assert_eq!(links.iter().filter(|l| **l == LinkType::Null).count(), 2);
}

#[test]
fn gzip_is_read_as_a_stream_to_the_same_frames_as_gzip_d() {
    // The size is the file's as stored (progress counts stored bytes); the frames are those of
    // the decompressed capture, as `gzip -dc` gives it to tshark.
    let rel = "zeek/testing/btest/Traces/smtp/smtp-many-addresses.pcap.gz";
    let plain = Command::new("gzip").arg("-dc").arg(shared(rel)).output().unwrap().stdout;
    let f = CaptureFile::open(&shared(rel)).unwrap();
    assert_eq!(f.size(), std::fs::metadata(shared(rel)).unwrap().len());
    let g = CaptureFile::from_bytes("plain.pcap", plain).unwrap();
    let (a, b): (Vec<_>, Vec<_>) = (f.frames().map(Result::unwrap).collect(), g.frames().map(Result::unwrap).collect());
    assert!(!a.is_empty());
    assert_eq!(a, b);
    let mut it = f.frames();
    it.by_ref().for_each(drop);
    assert_eq!(it.position(), f.size(), "read to the end");
}

/// Split a real capture into odd and even frames with editcap, merge them back with tapir and with
/// mergecap: same sequence.
#[test]
fn merge_matches_mergecap() {
    let src = shared("ndpi/tests/cfgs/default/pcap/rtsp.pcap");
    let dir = tempfile::tempdir().unwrap();
    let mut sharkd = Sharkd::spawn();
    let total = wireshark_frames(&mut sharkd, &src).len();
    let odd: Vec<String> = (1..=total).step_by(2).map(|n| n.to_string()).collect();
    let even: Vec<String> = (2..=total).step_by(2).map(|n| n.to_string()).collect();
    let a = dir.path().join("odd.pcapng");
    let b = dir.path().join("even.pcapng");
    run(Command::new("editcap").arg("-r").arg(&src).arg(&a).args(&odd));
    run(Command::new("editcap").arg("-r").arg(&src).arg(&b).args(&even));
    let merged = dir.path().join("merged.pcapng");
    run(Command::new("mergecap").arg("-w").arg(&merged).arg(&a).arg(&b));
    let want = wireshark_frames(&mut sharkd, &merged);

    let files = [CaptureFile::open(&a).unwrap(), CaptureFile::open(&b).unwrap()];
    let mut m = Merge::of(&files);
    let mut got = Vec::new();
    let mut from = [0usize; 2];
    for (i, r) in m.by_ref() {
        let f = r.unwrap();
        from[i] += 1;
        got.push((f.ts.nanos(), f.data.len() as u32, f.orig_len));
    }
    let want: Vec<_> = want.iter().map(|(s, _)| (s.ns, s.cap_len, s.len)).collect();
    assert_eq!(got.len(), total);
    assert_eq!(from, [odd.len(), even.len()]);
    assert_eq!(got, want);
    assert_eq!(m.position(), files[0].size() + files[1].size());
}
