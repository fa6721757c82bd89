//! A real capture through the library pipeline into the handover, to the independent LEMF:
//! pcaps/vxlan.pcap (two tenants in VXLAN, the warrant on VNI 5001's 10.0.0.5). Every IPCC the
//! LEMF decodes is one tshark counts for that VNI and address, sequence numbers are gap-free per
//! (LIID, CIN), and there is one CC stream per TCP session tshark sees.

use crate::handover_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use handover_common::*;
use tapir::capture::{CaptureFile, Merge};
use tapir::decode::DecodeConfig;
use tapir::deliver::handover::Delivery;
use tapir::flow::FlowConfig;
use tapir::pipeline::Pipeline;

const PCAP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/vxlan.pcap");
const FILTER: &str = "vxlan.vni == 5001 && ip.addr == 10.0.0.5";

fn tshark_fields(field: &str) -> Vec<String> {
    let o = Command::new("tshark").args(["-r", PCAP, "-Y", FILTER, "-T", "fields", "-e", field]).output().unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn vxlan_fixture_delivered_as_inner_ipcc() {
    let dir = tempfile::tempdir().unwrap();
    let (hi2, hi3) = (free_port(), free_port());
    let warrants_file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/warrants.toml")).unwrap();
    // The only [[lea]] is every warrant's default.
    let text = format!(
        "{warrants_file}\n[[lea]]\nname = \"lemf\"\nhi2 = \"127.0.0.1:{hi2}\"\nhi3 = \"127.0.0.1:{hi3}\"\noperator_id = \"tapir-test\"\n# lemf_check's schema subset has no HI1-Operation.\nhi1 = false\n"
    );
    let (leas, warrants) = setup(&text);
    let lemf = Lemf::start(hi2, hi3, &dir.path().join("r.json"), 60.0);
    let mut d = Delivery::start(leas, &warrants, &dir.path().join("spool")).unwrap();
    let mut p = Pipeline::new(warrants, Vec::new(), DecodeConfig::default(), FlowConfig::default());
    let files = vec![CaptureFile::open(Path::new(PCAP)).unwrap()];
    for (_, item) in Merge::of(&files) {
        p.frame(&item.unwrap().frame(), &mut d);
    }
    p.finish(&mut d);
    let rep = d.finish(Duration::from_secs(60));
    assert!(rep.complete(), "{rep:#?}");
    assert!(rep.alarms.is_empty());
    let (r, s) = lemf.wait();
    assert_eq!(r["undecodable"], 0, "{r}");
    let expected = tshark_fields("frame.number").len();
    assert_eq!(r["ipcc_packets"]["LIID-VM-0002"].as_u64(), Some(expected as u64), "{r}");
    assert!(r["sequence_gaps"].as_object().unwrap().values().all(|g| g == 0), "{r}");
    let cc_streams: Vec<&String> =
        s.as_object().unwrap().keys().filter(|k| k.starts_with("hi3|LIID-VM-0002|") && k.ends_with("|cc")).collect();
    let mut tcp_streams = tshark_fields("tcp.stream");
    tcp_streams.sort();
    tcp_streams.dedup();
    assert_eq!(cc_streams.len(), tcp_streams.len(), "{cc_streams:?} vs tshark {tcp_streams:?}");
    for k in cc_streams {
        let v = seqs(&s, k);
        assert_eq!(v, (0..v.len() as u64).collect::<Vec<_>>(), "{k}");
    }
    // The inner packets, not the VXLAN underlay: tshark's inner address pairs, with counts.
    let mut want = std::collections::BTreeMap::new();
    let pairs = Command::new("tshark")
        .args(["-r", PCAP, "-Y", FILTER, "-T", "fields", "-E", "occurrence=l", "-e", "ip.src", "-e", "ip.dst"])
        .output()
        .unwrap();
    for l in String::from_utf8(pairs.stdout).unwrap().lines() {
        let (a, b) = l.split_once('\t').unwrap();
        *want.entry(format!("{a}>{b}")).or_insert(0u64) += 1;
    }
    let got: std::collections::BTreeMap<String, u64> = serde_json::from_value(s["_ipcc_pairs"].clone()).unwrap();
    assert_eq!(got, want);
    // Session IRI went to HI2 as IPIRI (begin + end per session at least).
    assert!(r["iri_records"]["LIID-VM-0002"].as_u64().unwrap() >= 2 * tcp_streams.len() as u64, "{r}");
}
