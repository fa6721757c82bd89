//! Random association feeds never panic the model, never yield a LIID twice for one packet, and
//! once every VM has stopped and every access session has closed only the warrants' static
//! selectors remain. Random text never panics the parsers.

use crate::select_common;

use proptest::prelude::*;
use select_common::*;
use tapir::select::{parse_event, parse_events, parse_warrants, Targeting, Warrant};

const SUBS: [&str; 3] = ["s0", "s1", "s2"];
const IPS: [&str; 5] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::1", "198.51.100.7"];
const MACS: [&str; 3] = ["fa:16:3e:00:00:00", "fa:16:3e:00:00:01", "02:00:00:00:00:07"];
const SHAS: [&str; 2] = [
    "af670e1aa76b3f05f47151dceed7a01991eef70c02d1530409b7dfae4f2e9d6c",
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
];
const VMS: usize = 5;
const IMAGES: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    AccessStart(usize, usize),
    AccessStop(usize, usize),
    ImageCreate { img: usize, owner: usize, from_vm: Option<usize>, from_img: Option<usize>, sha: Option<usize> },
    ImageShare(usize),
    ImageDelete(usize),
    InstanceStart { vm: usize, owner: usize, img: Option<usize>, ports: Vec<(usize, Vec<usize>, Option<u32>)> },
    InstanceStop(usize),
    Packet { src: usize, dst: usize, vni: Option<u32>, mac: usize, outer: bool },
}

fn op() -> impl Strategy<Value = Op> {
    let port = (0..MACS.len(), prop::collection::vec(0..IPS.len(), 0..3), prop::option::of(1u32..3));
    prop_oneof![
        (0..SUBS.len(), 0..IPS.len()).prop_map(|(s, i)| Op::AccessStart(s, i)),
        (0..SUBS.len(), 0..IPS.len()).prop_map(|(s, i)| Op::AccessStop(s, i)),
        (0..IMAGES, 0..SUBS.len(), prop::option::of(0..VMS), prop::option::of(0..IMAGES), prop::option::of(0..2usize))
            .prop_map(|(img, owner, from_vm, from_img, sha)| Op::ImageCreate { img, owner, from_vm, from_img, sha }),
        (0..IMAGES).prop_map(Op::ImageShare),
        (0..IMAGES).prop_map(Op::ImageDelete),
        (0..VMS, 0..SUBS.len(), prop::option::of(0..IMAGES), prop::collection::vec(port, 0..3))
            .prop_map(|(vm, owner, img, ports)| Op::InstanceStart { vm, owner, img, ports }),
        (0..VMS).prop_map(Op::InstanceStop),
        (0..IPS.len(), 0..IPS.len(), prop::option::of(1u32..3), 0..MACS.len(), any::<bool>())
            .prop_map(|(src, dst, vni, mac, outer)| Op::Packet { src, dst, vni, mac, outer }),
    ]
}

fn warrants() -> Vec<Warrant> {
    vec![
        warrant_2026("J", &["subscriber:s0"]),
        warrant_2026("V", &["vm:vm1"]),
        warrant_2026("I", &["image:img2"]),
        warrant_2026("H", &[&format!("image-sha256:{}", SHAS[0])]),
        warrant_2026("S", &["ipv4:10.0.0.1", "mac:fa:16:3e:00:00:01", "vni:1/10.0.0.2", "cidr:10.0.0.0/30"]),
        warrant("W", "2026-01-01T00:00:30Z", "2026-01-01T00:01:00Z", &["subscriber:s1"]),
    ]
}

fn time(i: usize) -> String {
    // Starts before the warrants so that some events fall outside every window.
    let t = tapir::timestamp::Timestamp::from_secs(1_767_225_600 - 10 + i as i64);
    t.to_rfc3339()
}

fn json(op: &Op, t: &str) -> Option<String> {
    let s = |x: Option<String>| x.map_or("null".to_string(), |v| format!("\"{v}\""));
    Some(match op {
        Op::AccessStart(u, i) => {
            format!(r#"{{"time":"{t}","event":"access.start","subscriber":"{}","ip":"{}"}}"#, SUBS[*u], IPS[*i])
        }
        Op::AccessStop(u, i) => {
            format!(r#"{{"time":"{t}","event":"access.stop","subscriber":"{}","ip":"{}"}}"#, SUBS[*u], IPS[*i])
        }
        Op::ImageCreate { img, owner, from_vm, from_img, sha } => format!(
            r#"{{"time":"{t}","event":"image.create","image":"img{img}","owner":"{}","from_instance":{},"from_image":{},"sha256":{}}}"#,
            SUBS[*owner],
            s(from_vm.map(|v| format!("vm{v}"))),
            s(from_img.map(|v| format!("img{v}"))),
            s(sha.map(|h| SHAS[h].to_string())),
        ),
        Op::ImageShare(i) => {
            format!(r#"{{"time":"{t}","event":"image.share","image":"img{i}","visibility":"public"}}"#)
        }
        Op::ImageDelete(i) => format!(r#"{{"time":"{t}","event":"image.delete","image":"img{i}"}}"#),
        Op::InstanceStart { vm, owner, img, ports } => {
            let ports: Vec<String> = ports
                .iter()
                .map(|(m, ips, vni)| {
                    let ips: Vec<String> = ips.iter().map(|i| format!("\"{}\"", IPS[*i])).collect();
                    let vni = vni.map_or("null".to_string(), |v| v.to_string());
                    format!(r#"{{"mac":"{}","ips":[{}],"vni":{vni}}}"#, MACS[*m], ips.join(","))
                })
                .collect();
            format!(
                r#"{{"time":"{t}","event":"instance.start","instance":"vm{vm}","owner":"{}","image":{},"ports":[{}]}}"#,
                SUBS[*owner],
                s(img.map(|i| format!("img{i}"))),
                ports.join(",")
            )
        }
        Op::InstanceStop(v) => format!(r#"{{"time":"{t}","event":"instance.stop","instance":"vm{v}"}}"#),
        Op::Packet { .. } => return None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_feeds_end_with_only_static_selectors(ops in prop::collection::vec(op(), 0..80)) {
        let mut t = Targeting::new(warrants());
        let baseline = t.selectors();
        for (i, op) in ops.iter().enumerate() {
            let now = time(i);
            match json(op, &now) {
                Some(line) => {
                    let e = parse_event(&line, "prop", i + 1).unwrap();
                    let changes = t.apply(&e);
                    let mut seen: Vec<&str> = changes.iter().map(|c| &*c.liid).collect();
                    let n = seen.len();
                    seen.sort();
                    seen.dedup();
                    prop_assert_eq!(seen.len(), n, "one change per LIID");
                }
                None => {
                    let Op::Packet { src, dst, vni, mac, outer } = op else { unreachable!() };
                    let m = tapir::select::warrant::parse_mac(MACS[*mac]).unwrap();
                    let d = match (vni, outer) {
                        (Some(v), true) => vxlan((IPS[*src], IPS[*dst]), Some((m, MAC_B)), *v, ("192.0.2.1", "192.0.2.2"), None),
                        (Some(v), false) => vxlan(("192.0.2.1", "192.0.2.2"), None, *v, (IPS[*src], IPS[*dst]), Some((m, MAC_B))),
                        (None, _) => plain(IPS[*src], IPS[*dst], Some((MAC_A, m))),
                    };
                    let got = select(&t, &d, &now);
                    let mut l = liids(&got);
                    let n = l.len();
                    l.sort();
                    l.dedup();
                    prop_assert_eq!(l.len(), n, "a LIID twice for one packet");
                }
            }
        }
        let end = time(ops.len());
        for v in 0..VMS {
            t.apply(&parse_event(&format!(r#"{{"time":"{end}","event":"instance.stop","instance":"vm{v}"}}"#), "p", 1).unwrap());
        }
        for u in SUBS {
            for i in IPS {
                let line = format!(r#"{{"time":"{end}","event":"access.stop","subscriber":"{u}","ip":"{i}"}}"#);
                t.apply(&parse_event(&line, "p", 1).unwrap());
            }
        }
        prop_assert_eq!(t.selectors(), baseline);
    }

    #[test]
    fn event_parser_never_panics(text in "\\PC{0,200}") {
        let _ = parse_events(&text, "fuzz");
    }

    #[test]
    fn event_parser_never_panics_on_near_valid_lines(
        ev in prop::sample::select(vec!["access.start", "image.create", "instance.start", "instance.stop", "x"]),
        field in prop::sample::select(vec!["ip", "mac", "ports", "vni", "sha256", "image", "owner", "time", "instance"]),
        value in prop_oneof![Just("null".to_string()), Just("[]".to_string()), Just("{}".to_string()),
                             Just("-1".to_string()), Just("1e99".to_string()), "\"\\PC{0,20}\"", Just("[{\"mac\":7}]".to_string())],
    ) {
        let line = format!(r#"{{"time":"2026-01-01T00:00:00Z","event":"{ev}","instance":"v","owner":"o","{field}":{value}}}"#);
        let _ = parse_events(&line, "fuzz");
    }

    #[test]
    fn warrant_parser_never_panics(text in "\\PC{0,300}") {
        let _ = parse_warrants(&text, "fuzz");
    }

    #[test]
    fn warrant_parser_never_panics_on_near_valid_files(
        liid in "\\PC{0,30}", target in "\\PC{0,40}", start in "\\PC{0,25}",
    ) {
        let text = format!("[[warrant]]\nliid = {liid:?}\nstart = {start:?}\nend = \"2027-01-01T00:00:00Z\"\nscope = \"cc\"\ntargets = [{target:?}]\n");
        let _ = parse_warrants(&text, "fuzz");
    }
}
