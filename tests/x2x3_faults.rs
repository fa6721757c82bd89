//! X2/X3 under faults: a POI killed with SIGKILL mid-burst, an MDF killed with SIGKILL twice (the
//! 30 s network stall between POI and MDF is in `network_stalls`). What reaches the LEMF is
//! checked against the input capture by tshark (every target packet, in order, once) and
//! against the LEMF's own account of each stream's sequence numbers (no gap, no duplicate).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{free_port, signal, wait_listening, write_pcap, Lemf, TAPIR};
use crate::x2x3_roles::{all_in_one, mdf, mdf_config, poi_config, root, run_poi, warrants};

/// `http-put.pcap` with its packets `gap` seconds apart (`editcap -S -GAP`): a replay at
/// capture pace that lasts (464 packets).
pub(crate) fn stretched(d: &Path, gap: &str) -> PathBuf {
    let out = d.join("stretched.pcap");
    let o = Command::new("editcap")
        .args(["-S", &format!("-{gap}")])
        .arg(root().join("pcaps/http-put.pcap"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "editcap: {}", String::from_utf8_lossy(&o.stderr));
    out
}

/// The target's IP packets of a capture (source, destination, length, IP id), in order, by
/// tshark.
pub(crate) fn target_packets(pcap: &Path) -> Vec<String> {
    crate::common::tshark(pcap, Some("ip.addr == 198.51.100.7"), &["ip.src", "ip.dst", "ip.len", "ip.id"])
}

/// Every stream the LEMF received has neither a gap nor a duplicate sequence number.
pub(crate) fn no_gap_no_duplicate(report: &Value) {
    let streams = report["streams"].as_object().unwrap();
    assert!(!streams.is_empty());
    for (name, s) in streams {
        assert_eq!(s["duplicates"], 0, "{name}: {s}");
        assert_eq!(s["gaps"], Value::Array(vec![]), "{name}: {s}");
    }
}

/// After an MDF crash: no stream has a gap, and the only repeats are the HI PDUs the LEMF had
/// received but not yet confirmed when the MDF died, sent again byte for byte under their own
/// sequence numbers (HI delivery's at-least-once, as after any reconnect; the LEMF files each
/// once). Nothing arrives twice under two numberings.
fn no_gap_nothing_renumbered(report: &Value) {
    let streams = report["streams"].as_object().unwrap();
    assert!(!streams.is_empty());
    for (name, s) in streams {
        assert_eq!(s["gaps"], Value::Array(vec![]), "{name}: {s}");
        let samples = s["duplicate_samples"].as_array().unwrap();
        assert_eq!(s["duplicates"].as_u64().unwrap(), samples.len() as u64, "{name}: every repeat sampled: {s}");
        assert!(samples.iter().all(|d| d["identical"] == true), "{name}: a repeat that differs: {s}");
    }
}

fn poi_child(config: &Path) -> std::process::Child {
    Command::new(TAPIR)
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A capture with traffic of nobody the warrant names: a POI replaying it only sends what its
/// spool still holds.
fn no_target(d: &Path) -> PathBuf {
    let p = d.join("nobody.pcap");
    let f = crate::common::udp_frame([10, 9, 9, 1], [10, 9, 9, 2], b"not a target");
    write_pcap(&p, &[(1_795_367_303, 0, f)]);
    p
}

/// A stretched capture, an LEMF, an MDF, and a POI's config replaying the capture at its pace
/// (waiting `wait` seconds at the end for the MDF).
struct Rig {
    input: PathBuf,
    lemf: Lemf,
    mdf_toml: PathBuf,
    mdf: crate::common::Daemon,
    poi: PathBuf,
}

fn rig(d: &Path, wait: u32) -> Rig {
    let input = stretched(d, "0.004");
    let (hi2, hi3) = (free_port(), free_port());
    let w = warrants(d, hi2, hi3);
    let lemf = Lemf::start(hi2, Some(hi3), &d.join("lemf"));
    let port = free_port();
    let mdf_toml = mdf_config(d, &w, port, "");
    let m = mdf(&mdf_toml);
    wait_listening(port);
    let poi = poi_config(d, &w, "poi-1", 1, port, &[input.to_str().unwrap()], "");
    let text = std::fs::read_to_string(&poi)
        .unwrap()
        .replace("replay_end = \"exit\"", "replay_end = \"exit\"\npace = \"realtime\"")
        .replace("deliver_wait_secs = 10", &format!("deliver_wait_secs = {wait}"));
    std::fs::write(&poi, text).unwrap();
    Rig { input, lemf, mdf_toml, mdf: m, poi }
}

#[test]
fn a_poi_killed_mid_burst_delivers_what_it_had_spooled_once_after_its_restart() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let Rig { input, lemf, mdf: mut m, poi: c, .. } = rig(d, 10);
    let paced = std::fs::read_to_string(&c).unwrap();
    let mut poi = poi_child(&c);
    std::thread::sleep(Duration::from_millis(900));
    signal(&poi, "KILL");
    poi.wait().unwrap();
    // The same POI (same spool) again, over a capture with nothing of the target: all it sends
    // is what the killed one had spooled and the MDF had not acknowledged.
    let again = paced.replace(input.to_str().unwrap(), no_target(d).to_str().unwrap());
    std::fs::write(&c, again).unwrap();
    run_poi(&c);
    m.stop();
    no_gap_no_duplicate(&lemf.stop());
    let got =
        crate::common::tshark(&d.join("lemf/LIID-JOE-0001/cc.pcap"), None, &["ip.src", "ip.dst", "ip.len", "ip.id"]);
    let all = target_packets(&input);
    assert!(!got.is_empty() && got.len() < all.len(), "killed mid-way: {} of {}", got.len(), all.len());
    // What was delivered is the capture's beginning, each packet once, in order.
    assert_eq!(got[..], all[..got.len()]);
}

/// An MDF killed with SIGKILL mid-burst, twice, and started again each time: its journal
/// (`deliver::x2x3::journal`) takes it back to its last checkpoint, the POI resends what was
/// not acknowledged, and the LEMF gets every target packet once, in order, with the very
/// numbering and IRI the all-in-one delivers for the same capture (HI PDUs it had not
/// confirmed may come again, identical: see `no_gap_nothing_renumbered`). (Without the journal,
/// `journal_max_bytes = 0`, this test fails: packets arrive twice.)
#[test]
fn an_mdf_killed_mid_burst_twice_loses_and_duplicates_nothing() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let Rig { input, lemf, mdf_toml, mdf: mut m, poi: c } = rig(d, 60);
    let (aio_hi2, aio_hi3) = (free_port(), free_port());
    std::fs::create_dir_all(d.join("aio")).unwrap();
    let aio_w = warrants(&d.join("aio"), aio_hi2, aio_hi3);
    let poi = std::thread::spawn(move || run_poi(&c));
    for after in [900, 700] {
        std::thread::sleep(Duration::from_millis(after));
        signal(&m.child, "KILL");
        m.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        m = mdf(&mdf_toml);
    }
    poi.join().unwrap();
    m.stop();
    no_gap_nothing_renumbered(&lemf.stop());
    let lemf_out = d.join("lemf");
    let got =
        crate::common::tshark(&lemf_out.join("LIID-JOE-0001/cc.pcap"), None, &["ip.src", "ip.dst", "ip.len", "ip.id"]);
    let all = target_packets(&input);
    assert!(got == all, "every target packet once, in order: {} delivered of {}", got.len(), all.len());
    // The numbering went on as if the MDF had never stopped: the IRI, CINs and sequence
    // numbers included, is the all-in-one's.
    all_in_one(&d.join("aio"), &aio_w, (aio_hi2, aio_hi3), &[input.to_str().unwrap()]);
    let read = |p: &Path| {
        let mut l: Vec<String> =
            std::fs::read_to_string(p.join("LIID-JOE-0001/iri.jsonl")).unwrap().lines().map(str::to_string).collect();
        l.sort();
        l
    };
    assert_eq!(read(&lemf_out), read(&d.join("aio/lemf-aio")), "the IRI the all-in-one delivers");
    // Three runs, three cases: each crashed one names the case of the run that took its
    // records again, and the last one, signed, verifies.
    let mut cases: Vec<PathBuf> = std::fs::read_dir(d.join("mdf-case")).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    assert_eq!(cases.len(), 3, "{cases:?}");
    for pair in cases.windows(2) {
        let note = std::fs::read_to_string(pair[0].join("SUPERSEDED")).unwrap();
        assert!(note.contains(pair[1].to_str().unwrap()), "{note}");
    }
    assert!(!cases[2].join("SUPERSEDED").exists());
    let o = Command::new(TAPIR).arg("verify").arg(&cases[2]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}
