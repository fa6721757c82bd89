//! Issue 5's live acceptance: `tapir run` capturing on a veth port (one AF_PACKET ring, two
//! pipeline workers sharded by address pair: issue 15) while real clients upload over FTP and HTTP and send a mail across it
//! (tests/live/live-clients.sh). tcpdump captures the same interface at the same time; the
//! case `tapir run` writes must equal what `tapir replay` writes for tcpdump's capture: the same
//! objects by SHA-256 (and those are the files the clients sent, by sha256sum), and the same CC
//! packet count (tshark). tapir opens its rings as root and captures as nobody with no
//! capability (read from /proc while it runs). Needs root, iproute2, ethtool, tcpdump, tshark, curl, swaks,
//! python3 with pyftpdlib and aiosmtpd.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tapir")
}

fn objects(case: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(case.join("LIID-LIVE/objects.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v["sha256"].as_str().map(String::from))
        .collect()
}

/// One line per object: digest, kind, protocol, name, size, completeness and gaps.
fn object_table(case: &Path) -> String {
    let text = std::fs::read_to_string(case.join("LIID-LIVE/objects.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            format!(
                "{} {} {} {} size={} complete={} gaps={}",
                v["sha256"], v["kind"], v["protocol"], v["name"], v["size"], v["complete"], v["gaps"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn frames(pcap: &Path, filter: &str) -> usize {
    crate::common::frames(pcap, Some(filter), &["frame.number"]).len()
}

fn only_subdir(p: &Path) -> PathBuf {
    let v: Vec<PathBuf> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    assert_eq!(v.len(), 1, "{v:?}");
    v[0].clone()
}

fn live(workers: u32, pipelines: u32) {
    let d = tempfile::tempdir().unwrap();
    let work = d.path();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/live/live-clients.sh");
    let o = Command::new("bash")
        .arg(script)
        .arg(work)
        .arg(bin())
        .arg(workers.to_string())
        .arg(pipelines.to_string())
        .output()
        .unwrap();
    let log = std::fs::read_to_string(work.join("run.log")).unwrap_or_default();
    assert!(
        o.status.success(),
        "live script failed:\n{}\n{}\ntapir run:\n{log}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let live_case = only_subdir(&work.join("case"));
    // The same warrant over tcpdump's capture, offline.
    let replay_case = work.join("replay");
    let r = Command::new(bin())
        .arg("replay")
        .arg(work.join("cap.pcap"))
        .arg("--warrants")
        .arg(work.join("w.toml"))
        .arg("--out")
        .arg(&replay_case)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));

    let sent: BTreeSet<String> = std::fs::read_to_string(work.join("sent.sha256"))
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    // The reference must have seen everything: a drop in tcpdump is no fault of tapir's.
    let tcpdump = std::fs::read_to_string(work.join("tcpdump.log")).unwrap_or_default();
    let dropped = tcpdump
        .lines()
        .find_map(|l| l.strip_suffix(" packets dropped by kernel"))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert_eq!(dropped, Some(0), "tcpdump, the reference, dropped packets: {tcpdump}");
    let live_objects = objects(&live_case);
    let replay_objects = objects(&replay_case);
    if live_objects != replay_objects || !sent.is_subset(&live_objects) {
        // Seen once in CI, never here in 40 runs: keep what explains it.
        let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("live_run-failed");
        let _ = Command::new("rm").arg("-rf").arg(&keep).status();
        let _ = Command::new("cp").arg("-a").arg(work).arg(&keep).status();
        panic!(
            "live and replayed cases differ, or miss a sent file (work kept in {})\nsent:\n{}\nlive objects:\n{}\nreplayed objects:\n{}\nmetrics:\n{}\nlink:\n{}\n{log}",
            keep.display(),
            std::fs::read_to_string(work.join("sent.sha256")).unwrap_or_default(),
            object_table(&live_case),
            object_table(&replay_case),
            std::fs::read_to_string(work.join("metrics.txt")).unwrap_or_default(),
            std::fs::read_to_string(work.join("link.txt")).unwrap_or_default(),
        );
    }
    let target = frames(&work.join("cap.pcap"), "ip.addr==198.51.100.7");
    assert!(target > 3000, "{target}");
    assert_eq!(frames(&live_case.join("LIID-LIVE/cc.pcap"), "frame"), target, "live CC count\n{log}");
    assert_eq!(frames(&replay_case.join("LIID-LIVE/cc.pcap"), "frame"), target, "replayed CC count");
    // The kernel's drop and freeze counters are exported per interface (none dropped at this rate), and
    // the matched count is the CC count.
    let metrics = std::fs::read_to_string(work.join("metrics.txt")).unwrap_or_default();
    let value = |prefix: &str| -> Option<f64> {
        metrics.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    assert_eq!(value("tapir_kernel_drops_total{interface=\"tls"), Some(0.0), "{metrics}");
    assert_eq!(value("tapir_kernel_freezes_total{interface=\"tls"), Some(0.0), "{metrics}");
    assert_eq!(value("tapir_matched_packets_total{liid=\"LIID-LIVE\"}"), Some(target as f64), "{metrics}");
    // Capturing as nobody with no capability in any thread (the rings were opened as root).
    let privs = std::fs::read_to_string(work.join("privs.txt")).unwrap();
    let nobody = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    let uid = String::from_utf8_lossy(&nobody.stdout).trim().to_string();
    assert!(privs.lines().filter(|l| l.starts_with("Uid:")).count() >= 3, "{privs}");
    for l in privs.lines() {
        let mut f = l.split_whitespace();
        match f.next() {
            Some("Uid:") => assert!(f.all(|v| v == uid), "{privs}"),
            Some(_) => assert_eq!(f.next(), Some("0000000000000000"), "{privs}"),
            None => {}
        }
    }
    // The live case is complete and signed.
    let v = Command::new(bin()).arg("verify").arg(&live_case).output().unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

/// One ring read in the wire's order, two pipeline workers sharded by address pair: what an
/// operator runs to use two cores (see `etc/tapir.toml`).
#[test]
fn live_capture_with_two_pipelines_equals_replay_of_tcpdump() {
    live(1, 2);
}
