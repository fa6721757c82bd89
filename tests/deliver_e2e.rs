//! End to end over the ETSI handover: `tapir replay --deliver` to `tapir lemf` on loopback.
//! What the LEMF writes must agree with the offline case: the same target IP packets in the same
//! order (tshark reads both pcaps), one IPIRI begin and end per session, no sequence gap, no
//! integrity failure; and the run returns once everything is delivered.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{free_port, ip_packets, Lemf, TAPIR};

fn lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn replay_delivers_to_the_reference_lemf_what_the_case_holds() {
    deliver_and_compare(false, "");
}

/// A spool of 40 kB (a few dozen PDUs) for two captures of 0.7 MB: the replay waits for the
/// LEMF to confirm, again and again, and the LEMF still gets every packet, in order.
#[test]
fn a_small_spool_slows_the_replay_down_and_loses_nothing() {
    let (_report, stdout) = deliver_and_compare(false, "spool = { max_bytes = 40000 }\n");
    assert!(stdout.contains("the spool was full"), "{stdout}");
}

/// An X1 destination is one address for HI2 and HI3: the LEMF tells them apart by what each
/// connection carries, and files everything as two separate ports would.
#[test]
fn one_port_lemf_files_hi2_and_hi3_as_two_ports_would() {
    let (report, _) = deliver_and_compare(true, "");
    let text = report.to_string();
    assert_eq!(report["channel_guesses"], 0, "{text}");
    assert!(report["connections"]["hi2"].as_u64().unwrap() >= 1, "{text}");
    assert!(report["connections"]["hi3"].as_u64().unwrap() >= 1, "{text}");
    let streams = report["streams"].as_object().unwrap();
    assert!(streams.keys().any(|k| k.starts_with("hi3/LIID-JOE-0001/") && k.ends_with("/cc")), "{text}");
    assert!(streams.keys().any(|k| k.starts_with("hi2/LIID-JOE-0001/") && k.ends_with("/iri")), "{text}");
    assert!(!streams.keys().any(|k| k.starts_with("hi2/") && k.ends_with("/cc")), "{text}");
    assert!(!streams.keys().any(|k| k.starts_with("hi3/") && k.ends_with("/iri")), "{text}");
}

/// Replays two fixtures with delivery to `tapir lemf` (on one port or two), checks that the LEMF
/// holds what the case holds, and returns the LEMF's report and tapir's standard output.
/// `lea_extra` goes into the `[[lea]]` table.
fn deliver_and_compare(one_port: bool, lea_extra: &str) -> (serde_json::Value, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let d = tempfile::tempdir().unwrap();
    let (hi2, hi3) = (free_port(), free_port());
    let hi3 = if one_port { hi2 } else { hi3 };
    let lemf_out = d.path().join("lemf");
    let lemf = Lemf::start(hi2, if one_port { None } else { Some(hi3) }, &lemf_out);
    let warrants = d.path().join("w.toml");
    std::fs::write(
        &warrants,
        format!(
            "[[warrant]]\nliid = \"LIID-JOE-0001\"\nstart = \"2026-01-01T00:00:00Z\"\nend = \"2027-01-01T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [\"ipv4:198.51.100.7\", \"ipv6:2001:db8::7\"]\nlea = \"lea-p\"\n\n[[lea]]\nname = \"lea-p\"\nhi2 = \"127.0.0.1:{hi2}\"\nhi3 = \"127.0.0.1:{hi3}\"\noperator_id = \"OPER-O\"\nnetwork_element_id = \"tapir-1\"\ncountry = \"NZ\"\nkeepalive = 1\n{lea_extra}"
        ),
    )
    .unwrap();
    let case = d.path().join("case");
    let o = Command::new(TAPIR)
        .arg("replay")
        .arg(root.join("pcaps/http-put.pcap"))
        .arg(root.join("pcaps/ncat-ipv6.pcap"))
        .arg("--warrants")
        .arg(&warrants)
        .arg("--out")
        .arg(&case)
        .arg("--deliver")
        .arg(d.path().join("spool"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("LEA lea-p:"), "{out}");
    // Let the LEMF write its last batch, then stop it.
    std::thread::sleep(Duration::from_millis(1500));
    let _ = Command::new("kill").args(["-TERM", &lemf.child.id().to_string()]).status();
    std::thread::sleep(Duration::from_millis(1000));
    drop(lemf);

    // CC: the LEMF's raw-IP pcap holds the inner IP packets of the case's frames, in order.
    let offline = ip_packets(&case.join("LIID-JOE-0001/cc.pcap"));
    let received = ip_packets(&lemf_out.join("LIID-JOE-0001/cc.pcap"));
    assert!(!offline.is_empty());
    assert_eq!(received, offline, "HI3 packets differ from the case's CC");

    // IRI: one IPIRI begin and end per session of the case.
    let case_iri = lines(&case.join("LIID-JOE-0001/iri.jsonl"));
    let sessions = case_iri.iter().filter(|e| e["event"] == "session-begin").count();
    let ends = case_iri.iter().filter(|e| e["event"] == "session-end").count();
    let lemf_iri = std::fs::read_to_string(lemf_out.join("LIID-JOE-0001/iri.jsonl")).unwrap();
    assert_eq!(lemf_iri.matches("iRI-Begin").count(), sessions, "{lemf_iri}");
    assert_eq!(lemf_iri.matches("iRI-End").count(), ends);

    // HI1: the warrant's activation (in force from the first packet) reached the LEMF on HI2,
    // with the LIID and the second the case records.
    let activated: Vec<&serde_json::Value> =
        case_iri.iter().filter(|e| e["event"] == "warrant" && e["op"] == "activated").collect();
    assert_eq!(activated.len(), 1, "{case_iri:?}");
    let hi1: Vec<serde_json::Value> = lemf_iri
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("hI1-Operation").is_some())
        .collect();
    assert_eq!(hi1.len(), 1, "{lemf_iri}");
    let n = &hi1[0]["hI1-Operation"]["liActivated"];
    assert_eq!(n["lawfulInterceptionIdentifier"], "LIID-JOE-0001", "{n}");
    assert_eq!(hi1[0]["channel"], "hi2");
    let case_ts = chrono::DateTime::parse_from_rfc3339(activated[0]["ts"].as_str().unwrap()).unwrap();
    assert_eq!(n["timeStamp"]["utcTime"], case_ts.format("%y%m%d%H%M%SZ").to_string(), "{n}");

    // The LEMF saw no sequence gap and no failed integrity check.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lemf_out.join("report.json")).unwrap()).unwrap();
    let text = report.to_string();
    assert!(!text.contains("\"gaps\":[["), "{text}");
    assert_eq!(report["integrity"]["hash_failed"], 0, "{text}");
    assert_eq!(report["undecodable"], 0, "{text}");
    (report, out)
}

/// A warrant for 198.51.100.7 in force around `common::T0`, delivering to `hi2`/`hi3`.
fn t0_warrants(dir: &Path, hi2: u16, hi3: u16, lea_extra: &str) -> PathBuf {
    let w = dir.join("w.toml");
    std::fs::write(
        &w,
        format!(
            "[[warrant]]\nliid = \"LIID-JOE-0001\"\nstart = \"2027-01-01T00:00:00Z\"\nend = \"2028-01-01T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [\"ipv4:198.51.100.7\"]\nlea = \"lea-p\"\n\n[[lea]]\nname = \"lea-p\"\nhi2 = \"127.0.0.1:{hi2}\"\nhi3 = \"127.0.0.1:{hi3}\"\noperator_id = \"OPER-O\"\nnetwork_element_id = \"tapir-1\"\ncountry = \"NZ\"\nkeepalive = 1\n{lea_extra}"
        ),
    )
    .unwrap();
    w
}

/// `n` UDP frames of `size` bytes from the target, one every 100 µs.
fn target_udp_capture(path: &Path, n: u32, size: usize) {
    let frames: Vec<(u32, u32, Vec<u8>)> = (0..n)
        .map(|i| {
            let mut payload = i.to_be_bytes().to_vec();
            payload.resize(size - 14 - 28, 0x5a);
            (i / 10_000, (i % 10_000) * 100, common::udp_frame([198, 51, 100, 7], [203, 0, 113, 10], &payload))
        })
        .collect();
    common::write_pcap(path, &frames);
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An LEA that accepts both connections and never reads: tapir's writes block once the socket
/// buffers are full. `--deliver-wait 1` must still bound the run, and the case is signed.
#[test]
fn deliver_wait_bounds_the_run_against_an_lea_that_never_reads() {
    let d = tempfile::tempdir().unwrap();
    let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let l3 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (hi2, hi3) = (l2.local_addr().unwrap().port(), l3.local_addr().unwrap().port());
    let _held = std::thread::spawn(move || {
        let held = (l2.accept().unwrap(), l3.accept().unwrap());
        std::thread::sleep(Duration::from_secs(120));
        drop(held);
    });
    let pcap = d.path().join("big.pcap");
    // 42 MB of CC: far more than loopback's socket buffers hold.
    target_udp_capture(&pcap, 30_000, 1400);
    let w = t0_warrants(d.path(), hi2, hi3, "");
    let case = d.path().join("case");
    let t0 = std::time::Instant::now();
    let o = Command::new(common::TAPIR)
        .arg("replay")
        .arg(&pcap)
        .args(["--warrants".as_ref(), w.as_os_str(), "--out".as_ref(), case.as_os_str(), "--quiet".as_ref()])
        .arg("--deliver")
        .arg(d.path().join("spool"))
        .args(["--deliver-wait", "1"])
        .output()
        .unwrap();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(20), "the run took {took:?} with --deliver-wait 1");
    // Not everything reached the LEA: said, and the exit status says so too.
    assert!(!o.status.success());
    assert!(stderr(&o).contains("undelivered PDUs are safe in"), "{}", stderr(&o));
    common::verify_case(&case);
}

/// A full spool and no LEA: the replay waits (back-pressure, no refusal) until stopped; SIGTERM
/// then ends the wait, the PDUs that do not fit are refused with alarms, the case is signed.
#[test]
fn a_replay_held_by_a_full_spool_stops_on_sigterm_with_a_signed_case() {
    let d = tempfile::tempdir().unwrap();
    // Nobody listens there.
    let (hi2, hi3) = (free_port(), free_port());
    let pcap = d.path().join("c.pcap");
    // More records than the pipeline queues ahead of delivery: the replay itself waits.
    target_udp_capture(&pcap, 40_000, 200);
    let w = t0_warrants(d.path(), hi2, hi3, "spool = { max_bytes = 100000 }\n");
    let case = d.path().join("case");
    let mut child = Command::new(common::TAPIR)
        .arg("replay")
        .arg(&pcap)
        .args(["--warrants".as_ref(), w.as_os_str(), "--out".as_ref(), case.as_os_str(), "--quiet".as_ref()])
        .arg("--deliver")
        .arg(d.path().join("spool"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.try_wait().unwrap().is_none(), "the replay did not wait on its full spool");
    common::signal(&child, "TERM");
    let st = common::wait_exit(&mut child, Duration::from_secs(20));
    let o = child.wait_with_output().unwrap();
    assert_eq!(st.code(), Some(143), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("ALARM") && err.contains("full"), "{err}");
    assert!(err.contains("signed and marked incomplete"), "{err}");
    common::verify_case(&case);
    // The case holds what was read before the stop, whatever the spool refused: more than the
    // spool could take, less than the capture.
    let frames = common::tshark(&case.join("LIID-JOE-0001/cc.pcap"), Some("udp"), &["frame.number"]).len();
    assert!(frames > 500 && frames < 40_000, "{frames}");
}
