//! 30 s network stalls on tapir's two delivery links, each checked against what the same
//! capture gives without one:
//! - HI2/HI3, tapir to the LEA: an nftables rule on loopback drops every segment to the LEMF's
//!   ports once some data went through; delivery resumes, none lost, numbering continuous,
//!   integrity checks valid (against the offline case's CC, by tshark);
//! - X2/X3, POI to MDF, in a network namespace: nothing passes either way for 30 s; every
//!   target packet reaches the LEMF once, in order, with the IRI the all-in-one delivers.
//!
//! They belong with `handover_faults` and `x2x3_faults` and use their helpers, but libtest
//! starts tests in the order of their names: `x2x3_faults`' stall, started among the last,
//! kept the suite waiting 20 s after every other test had ended, both cores idle. Here they
//! start while the other tests keep the cores busy.
//!
//! Needs root (nft, ip netns), tshark.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{signal, wait_exit, TAPIR};
use crate::handover_common::free_port;
use crate::handover_faults::{assert_continuous, ip_packets, lemf, ok, replay, report, stop};
use crate::x2x3_faults::{no_gap_no_duplicate, stretched, target_packets};
use crate::x2x3_roles::{all_in_one, mdf_config, poi_config, Ns};
use crate::{handover_faults, x2x3_roles};

/// Drops every TCP segment to the given ports on loopback, in an nftables table of its own
/// (removed on drop), once `after_bytes` went through to them.
struct Stall {
    table: String,
}

impl Stall {
    fn start(ports: [u16; 2], after_bytes: u64) -> Stall {
        let table = format!("tapir_stall_{}", std::process::id());
        let rules = format!(
            "table inet {table} {{\n chain out {{\n  type filter hook output priority 0; policy accept;\n  oif lo tcp dport {{ {}, {} }} quota over {after_bytes} bytes drop\n }}\n}}\n",
            ports[0], ports[1]
        );
        let mut c = Command::new("nft").args(["-f", "-"]).stdin(Stdio::piped()).spawn().expect("nft");
        use std::io::Write;
        c.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success(), "nft refused the stall rule (root needed)");
        Stall { table }
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        let _ = Command::new("nft").args(["delete", "table", "inet", &self.table]).status();
    }
}

#[test]
fn hi2_hi3_stalled_30s_mid_delivery_lose_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (hi2, hi3) = (free_port(), free_port());
    let w = handover_faults::warrants(d.path(), hi2, hi3);
    ok(&replay(&["ftp-upload.pcap", "http-put.pcap"], &w, &d.path().join("case0"), None).output().unwrap());
    let want = ip_packets(&d.path().join("case0/LIID-F/cc.pcap"));
    let lemf_out = d.path().join("lemf");
    let l = lemf(hi2, hi3, &lemf_out);
    // The HI3 volume is well over 64 KB: the connections are up and carrying data when the
    // segments start to vanish.
    let stall = Stall::start([hi2, hi3], 64 * 1024);
    let started = Instant::now();
    let run = replay(
        &["ftp-upload.pcap", "http-put.pcap"],
        &w,
        &d.path().join("case1"),
        Some((&d.path().join("spool"), 180)),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_secs(30));
    drop(stall);
    let o = run.wait_with_output().unwrap();
    ok(&o);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    stop(l);
    assert!(took >= Duration::from_secs(30), "delivery finished during the stall: {took:?}");

    let got = ip_packets(&lemf_out.join("LIID-F/cc.pcap"));
    assert_eq!(got.len(), want.len(), "{:?}", report(&lemf_out));
    assert_eq!(got, want, "HI3 after the stall differs from the offline case's CC");
    assert_continuous(&report(&lemf_out));
}

#[test]
fn x2x3_stalled_30s_between_poi_and_mdf_loses_and_duplicates_nothing() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let input = stretched(d, "0.004");
    // The all-in-one's delivery of the same capture, for the IRI.
    let (hi2, hi3) = (free_port(), free_port());
    let w = x2x3_roles::warrants(d, hi2, hi3);
    all_in_one(d, &w, (hi2, hi3), &[input.to_str().unwrap()]);
    // The POI, the MDF and the LEMF in a namespace of their own, where the stall is made.
    let ns = Ns::new("stall");
    let (hi2, hi3, port) = (47001, 47002, 47010);
    let w = x2x3_roles::warrants(d, hi2, hi3);
    let lemf_out = d.join("lemf");
    let mut lemf = ns.lemf(hi2, hi3, &lemf_out);
    let mut m = ns.daemon(&mdf_config(d, &w, port, ""));
    let c = poi_config(d, &w, "poi-1", 1, port, &[input.to_str().unwrap()], "");
    let text = std::fs::read_to_string(&c)
        .unwrap()
        .replace("replay_end = \"exit\"", "replay_end = \"exit\"\npace = \"realtime\"")
        .replace("deliver_wait_secs = 10", "deliver_wait_secs = 90");
    std::fs::write(&c, text).unwrap();
    let mut poi = ns
        .cmd(&[TAPIR, "run", "--config", c.to_str().unwrap()], true)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    // Nothing passes between POI and MDF for 30 s, in either direction.
    let p = port.to_string();
    ns.run(&["nft", "add", "table", "inet", "stall"], true);
    ns.run(&["nft", "add", "chain", "inet", "stall", "c", "{ type filter hook output priority 0; }"], true);
    ns.run(&["nft", "add", "rule", "inet", "stall", "c", "tcp", "dport", &p, "drop"], true);
    ns.run(&["nft", "add", "rule", "inet", "stall", "c", "tcp", "sport", &p, "drop"], true);
    std::thread::sleep(Duration::from_secs(30));
    ns.run(&["nft", "delete", "table", "inet", "stall"], true);
    let st = wait_exit(&mut poi, Duration::from_secs(120));
    let mut log = String::new();
    std::io::Read::read_to_string(poi.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(st.success(), "{log}");
    m.stop();
    signal(&lemf, "TERM");
    assert!(lemf.wait().unwrap().success());
    let report: Value = serde_json::from_str(&std::fs::read_to_string(lemf_out.join("report.json")).unwrap()).unwrap();
    no_gap_no_duplicate(&report);
    let got =
        crate::common::tshark(&lemf_out.join("LIID-JOE-0001/cc.pcap"), None, &["ip.src", "ip.dst", "ip.len", "ip.id"]);
    assert_eq!(got, target_packets(&input), "every target packet once, in order");
    let read = |p: &Path| {
        let mut l: Vec<String> =
            std::fs::read_to_string(p.join("LIID-JOE-0001/iri.jsonl")).unwrap().lines().map(str::to_string).collect();
        l.sort();
        l
    };
    assert_eq!(read(&lemf_out), read(&d.join("lemf-aio")), "the IRI the all-in-one delivers");
}
