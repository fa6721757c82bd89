//! `tapir run` end to end, on replay sources: same case as `tapir replay`, SIGHUP adds a
//! warrant that takes effect at the next packets, a warrant ends at its end time with no reload
//! (also on a quiet link, by the source clock), SIGTERM leaves a verified case and exit 0, and
//! sd_notify READY=1 / WATCHDOG=1 arrive. Packet counts and times are read back with tshark and
//! sha256sum, expected values are counted by hand from the synthetic captures made here.

use crate::common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tapir::daemon::Control;

use common::{
    epoch_us, frame_count, rfc3339, run_command, signal, the_case, tshark, udp_frame, verify_case, with_pipelines,
    write_pcap, Daemon, VirtualRun, T0, TAPIR,
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `tapir run` with a watchdog of `watchdog_usec` (0: none) and no WATCHDOG_PID, once ready.
fn start_run(config: &Path, watchdog_usec: u64) -> (Daemon, Instant) {
    Daemon::start(run_command(config).env("WATCHDOG_USEC", watchdog_usec.to_string()).env_remove("WATCHDOG_PID"))
}

const A_SRC: [u8; 4] = [10, 1, 0, 1];
const B_SRC: [u8; 4] = [10, 1, 0, 2];
const OTHER: [u8; 4] = [10, 9, 9, 9];

/// Packets every 100 ms from T0 for `count` steps, from each of `srcs`.
fn every_100ms(srcs: &[[u8; 4]], count: u32) -> Vec<(u32, u32, Vec<u8>)> {
    let mut v = Vec::new();
    for i in 0..count {
        for (k, s) in srcs.iter().enumerate() {
            let dst = [10, 2, 0, s[3]];
            v.push((i / 10, (i % 10) * 100_000, udp_frame(*s, dst, format!("pkt {i} from {k}").as_bytes())));
        }
    }
    v
}

fn warrant(liid: &str, ip: [u8; 4], end_after_t0: i64) -> String {
    format!(
        "[[warrant]]\nliid = \"{liid}\"\nstart = \"{}\"\nend = \"{}\"\nscope = \"iri+cc\"\ntargets = [\"ipv4:{}.{}.{}.{}\"]\n\n",
        rfc3339(-86_400),
        rfc3339(end_after_t0),
        ip[0],
        ip[1],
        ip[2],
        ip[3]
    )
}

fn write_config(dir: &Path, replay: &[PathBuf], pace: &str, end: &str, events: Option<&Path>) -> PathBuf {
    let files: Vec<String> = replay.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
    let mut text = format!(
        "[capture]\nreplay = [{}]\npace = \"{pace}\"\nreplay_end = \"{end}\"\n[paths]\nwarrants = \"warrants.toml\"\ncase_dir = \"case\"\nspool_dir = \"spool\"\n",
        files.join(", ")
    );
    if let Some(e) = events {
        text.push_str(&format!("[associations]\nevents = {:?}\n", e.display().to_string()));
    }
    let p = dir.join("tapir.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Capture times (µs since the epoch) of a pcap's packets, by tshark.
fn tshark_times_us(pcap: &Path) -> Vec<i64> {
    tshark(pcap, None, &["frame.time_epoch"]).iter().map(|l| epoch_us(l)).collect()
}

fn us(secs_after_t0: f64) -> i64 {
    i64::from(T0) * 1_000_000 + (secs_after_t0 * 1e6).round() as i64
}

fn iri_lines(case: &Path, liid: &str) -> Vec<serde_json::Value> {
    let p = case.join(liid).join("iri.jsonl");
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// SHA-256 of every object file of a LIID, by sha256sum.
fn object_hashes(case: &Path, liid: &str) -> BTreeSet<String> {
    let dir = case.join(liid).join("objects");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    if files.is_empty() {
        return BTreeSet::new();
    }
    let o = Command::new("sha256sum").args(&files).output().unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap().lines().map(|l| l.split_whitespace().next().unwrap().to_string()).collect()
}

#[test]
fn run_on_a_replay_source_writes_the_same_case_as_replay() {
    run_equals_replay(1);
}

/// The same with two pipeline workers in the daemon (and one in the replay).
#[test]
fn run_with_two_pipelines_writes_the_same_case_as_replay() {
    run_equals_replay(2);
}

fn run_equals_replay(pipelines: u32) {
    let dir = tempfile::tempdir().unwrap();
    let pcaps = ["vxlan.pcap", "http-put.pcap", "ftp-upload.pcap"].map(|p| Path::new(ROOT).join("pcaps").join(p));
    let warrants = Path::new(ROOT).join("pcaps/warrants.toml");
    let events = Path::new(ROOT).join("pcaps/seed.events.jsonl");
    std::fs::copy(&warrants, dir.path().join("warrants.toml")).unwrap();

    let replay_out = dir.path().join("replayed");
    let o = Command::new(TAPIR)
        .arg("replay")
        .args(&pcaps)
        .arg("--warrants")
        .arg(&warrants)
        .arg("--associations")
        .arg(&events)
        .arg("--out")
        .arg(&replay_out)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let config = write_config(dir.path(), &pcaps, "fast", "exit", Some(&events));
    with_pipelines(&config, pipelines);
    let o = Command::new(TAPIR).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let case = the_case(dir.path(), "case");
    verify_case(&case);

    let mut compared = 0;
    for liid in ["LIID-JOE-0001", "LIID-VM-0002"] {
        let a = object_hashes(&replay_out, liid);
        let b = object_hashes(&case, liid);
        assert!(!a.is_empty(), "{liid}: replay found no objects");
        assert_eq!(a, b, "{liid}: objects differ");
        let ca = tshark_times_us(&replay_out.join(liid).join("cc.pcap"));
        let cb = tshark_times_us(&case.join(liid).join("cc.pcap"));
        assert!(!ca.is_empty());
        assert_eq!(ca.len(), cb.len(), "{liid}: CC packet counts differ");
        assert_eq!(ca, cb, "{liid}: CC packet times differ");
        compared += 1;
    }
    assert_eq!(compared, 2);
    // LIID-OLD-0003 ended before the captures: neither writes anything for it.
    assert!(!replay_out.join("LIID-OLD-0003").exists());
    assert!(!case.join("LIID-OLD-0003").exists());
}

#[test]
fn a_warrant_stops_at_its_end_without_reload() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("a.pcap");
    write_pcap(&pcap, &every_100ms(&[A_SRC], 61)); // T0+0.0 .. T0+6.0
    std::fs::write(dir.path().join("warrants.toml"), warrant("LIID-A", A_SRC, 3)).unwrap();
    let config = write_config(dir.path(), &[pcap], "fast", "exit", None);
    let o = Command::new(TAPIR).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let case = the_case(dir.path(), "case");
    verify_case(&case);
    let times = tshark_times_us(&case.join("LIID-A/cc.pcap"));
    // [start, end): the packets at T0+0.0 .. T0+2.9, 30 of them; none at or after T0+3.
    assert_eq!(times.len(), 30, "{times:?}");
    assert_eq!(times.last().copied(), Some(us(2.9)));
    let ends: Vec<_> = iri_lines(&case, "LIID-A").into_iter().filter(|v| v["event"] == "session-end").collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["reason"], "window-end");
    assert_eq!(ends[0]["ts"], format!("{}", rfc3339(3).replace('Z', ".000000000Z")));
}

/// On a quiet link the flow of a warrant that ends must still end at the warrant's end: the
/// source's clock (capture time moving on without packets) ends it, not the next packet.
#[test]
fn on_a_quiet_link_the_source_clock_ends_the_window() {
    quiet_link_clock(1);
}

/// The same with two pipeline workers: the clock reaches every worker.
#[test]
fn on_a_quiet_link_the_source_clock_ends_the_window_in_every_worker() {
    quiet_link_clock(2);
}

fn quiet_link_clock(pipelines: u32) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("quiet.pcap");
    // A talks until T0+1.5, then the link is quiet until a stranger's packet at T0+20.
    let mut frames = every_100ms(&[A_SRC], 16);
    frames.push((20, 0, udp_frame(OTHER, [10, 2, 0, 9], b"late")));
    write_pcap(&pcap, &frames);
    std::fs::write(dir.path().join("warrants.toml"), warrant("LIID-A", A_SRC, 3)).unwrap();
    let config = write_config(dir.path(), &[pcap], "realtime", "wait", None);
    with_pipelines(&config, pipelines);
    // 4.5 s of the link, on the virtual clock, then a stop: the stranger's packet is never due.
    let run = VirtualRun::start(&config);
    run.advance_to(4.5, Duration::from_millis(20));
    let report = run.stop();
    assert_eq!(report.totals.summary.frames, 16, "every frame due by T0+4.5, and none after");
    let case = the_case(dir.path(), "case");
    verify_case(&case);
    assert_eq!(tshark_times_us(&case.join("LIID-A/cc.pcap")).len(), 16);
    let ends: Vec<_> = iri_lines(&case, "LIID-A").into_iter().filter(|v| v["event"] == "session-end").collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
    // Without the clock the flow would only end at the stop, as "shutdown" at T0+1.5.
    assert_eq!(ends[0]["reason"], "window-end", "{ends:?}");
    assert_eq!(ends[0]["ts"], rfc3339(3).replace('Z', ".000000000Z"));
}

/// A reload (what SIGHUP and X1 order) takes effect at the next packets in every pipeline
/// worker; on the virtual clock the packets due before and after it are known exactly.
#[test]
fn a_reload_reaches_every_pipeline_worker_at_the_next_packets() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("ab.pcap");
    write_pcap(&pcap, &every_100ms(&[A_SRC, B_SRC], 80)); // T0+0.0 .. T0+7.9
    let wpath = dir.path().join("warrants.toml");
    std::fs::write(&wpath, warrant("LIID-A", A_SRC, 86_400)).unwrap();
    let config = write_config(dir.path(), &[pcap], "realtime", "exit", None);
    with_pipelines(&config, 2);
    let mut run = VirtualRun::start(&config);
    run.advance_to(2.0, Duration::from_millis(10));
    let mut f = std::fs::OpenOptions::new().append(true).open(&wpath).unwrap();
    f.write_all(warrant("LIID-B", B_SRC, 86_400).as_bytes()).unwrap();
    drop(f);
    run.control.send(Control::Reload).unwrap();
    run.expect_notify("STATUS=running, 2 warrant(s)");
    run.advance_to(4.5, Duration::from_millis(10));
    let report = run.stop();
    assert_eq!(report.reloads, 1);
    assert!(
        report.incomplete.as_deref().is_some_and(|r| r.starts_with("stopped after 92 packets")),
        "{:?}",
        report.incomplete
    );

    let case = the_case(dir.path(), "case");
    verify_case(&case);
    let a = tshark_times_us(&case.join("LIID-A/cc.pcap"));
    let b = tshark_times_us(&case.join("LIID-B/cc.pcap"));
    // A: every packet from T0 to the stop at T0+4.5, none missing.
    let want_a: Vec<i64> = (0..=45).map(|i| us(f64::from(i) / 10.0)).collect();
    assert_eq!(a, want_a);
    // B: every packet after the reload, from T0+2.1 to the stop, and none before it.
    let want_b: Vec<i64> = (21..=45).map(|i| us(f64::from(i) / 10.0)).collect();
    assert_eq!(b, want_b);
    // The stop ended every flow.
    for liid in ["LIID-A", "LIID-B"] {
        let ends = iri_lines(&case, liid).into_iter().filter(|v| v["event"] == "session-end").count();
        assert_eq!(ends, 1, "{liid}");
    }
}

#[test]
fn sighup_adds_a_warrant_at_the_next_packets_and_sigterm_leaves_a_complete_case() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("ab.pcap");
    write_pcap(&pcap, &every_100ms(&[A_SRC, B_SRC], 80)); // T0+0.0 .. T0+7.9, real time
    let wpath = dir.path().join("warrants.toml");
    std::fs::write(&wpath, warrant("LIID-A", A_SRC, 86_400)).unwrap();
    let config = write_config(dir.path(), &[pcap], "realtime", "exit", None);
    let (mut d, ready) = start_run(&config, 400_000);
    let mut seen = Vec::new();
    assert!(d.notify.wait_for("WATCHDOG=1", &mut seen, Duration::from_secs(5)), "{seen:?}");

    std::thread::sleep(Duration::from_millis(2000).saturating_sub(ready.elapsed()));
    let mut f = std::fs::OpenOptions::new().append(true).open(&wpath).unwrap();
    f.write_all(warrant("LIID-B", B_SRC, 86_400).as_bytes()).unwrap();
    drop(f);
    let hup_at = ready.elapsed().as_secs_f64();
    signal(&d.child, "HUP");
    assert!(d.notify.wait_for("RELOADING=1", &mut seen, Duration::from_secs(5)), "{seen:?}");

    std::thread::sleep(Duration::from_millis(4500).saturating_sub(ready.elapsed()));
    let term_at = ready.elapsed().as_secs_f64();
    d.stop();
    assert!(
        seen.iter().any(|m| m.lines().any(|l| l == "STOPPING=1"))
            || d.notify.wait_for("STOPPING=1", &mut seen, Duration::from_secs(1))
    );

    let case = the_case(dir.path(), "case");
    verify_case(&case);
    let a = tshark_times_us(&case.join("LIID-A/cc.pcap"));
    let b = tshark_times_us(&case.join("LIID-B/cc.pcap"));
    // A: every packet from T0 on, none missing, up to about the stop.
    assert_eq!(a.first().copied(), Some(us(0.0)));
    for (i, t) in a.iter().enumerate() {
        assert_eq!(*t, us(i as f64 / 10.0), "A packet {i}");
    }
    assert!(a.len() as f64 >= (term_at - 0.5) * 10.0, "A: {} packets, stop at {term_at:.1}s", a.len());
    assert!(a.len() < 80, "stopped before the end of the capture");
    // B: nothing before the reload; from the first packet after it, every packet.
    let first_b = *b.first().expect("B intercepted after SIGHUP");
    let first_b_s = (first_b - us(0.0)) as f64 / 1e6;
    assert!(first_b_s >= hup_at - 0.3, "B's first packet at T0+{first_b_s:.1}, SIGHUP at {hup_at:.1}s");
    assert!(first_b_s <= hup_at + 1.0, "B started late: T0+{first_b_s:.1}, SIGHUP at {hup_at:.1}s");
    for (i, t) in b.iter().enumerate() {
        assert_eq!(*t, first_b + i as i64 * 100_000, "B packet {i} missing");
    }
    // The stop ended every flow.
    for liid in ["LIID-A", "LIID-B"] {
        let ends = iri_lines(&case, liid).into_iter().filter(|v| v["event"] == "session-end").count();
        assert_eq!(ends, 1, "{liid}");
    }
}

/// Keep-alives asking for delivery confirmation follow the wall clock (at most one per 500 ms
/// per channel), not the traffic: a target packet every 100 ms, replayed in real time, used to
/// cost a keep-alive each.
#[test]
fn keep_alives_follow_the_clock_not_the_packets() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("paced.pcap");
    write_pcap(&pcap, &every_100ms(&[A_SRC], 40)); // T0+0.0 .. T0+3.9
    let port = common::free_port();
    let lemf = common::Lemf::start(port, None, &dir.path().join("lemf"));
    let w = warrant("LIID-A", A_SRC, 60).replace("scope", "lea = \"lemf\"\nscope")
        + &format!(
            "[[lea]]\nname = \"lemf\"\nhi2 = \"127.0.0.1:{port}\"\nhi3 = \"127.0.0.1:{port}\"\noperator_id = \"OPER-O\"\nkeepalive = 10\n"
        );
    std::fs::write(dir.path().join("warrants.toml"), w).unwrap();
    let config = write_config(dir.path(), &[pcap], "realtime", "exit", None);
    let t = Instant::now();
    let o = Command::new(TAPIR).args(["run", "--config"]).arg(&config).output().unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = lemf.stop();
    let kas = report["keepalives_answered"].as_u64().unwrap();
    // Two channels, each at most one per 500 ms and one at the end.
    let bound = (2.0 * (secs / 0.5 + 2.0)) as u64;
    assert!(kas >= 1 && kas <= bound && kas < 40, "{kas} keep-alives in {secs:.1} s (bound {bound})");
    let cc = frame_count(&the_case(dir.path(), "case").join("LIID-A/cc.pcap"));
    assert_eq!(cc, 40);
}

/// `TAPIR_LOG` sets the levels: `warn` hides the daemon's info lines, a per-module level
/// (`tapir::daemon=debug,warn`) shows them again, and a value it cannot read is said on the
/// log, which then runs at the default, `info`.
#[test]
fn tapir_log_sets_the_levels_and_an_unreadable_one_is_said() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(Path::new(ROOT).join("pcaps/warrants.toml"), dir.path().join("warrants.toml")).unwrap();
    let config = write_config(dir.path(), &[Path::new(ROOT).join("pcaps/http-put.pcap")], "fast", "exit", None);
    let log = |value: Option<&str>| {
        let mut cmd = Command::new(TAPIR);
        cmd.args(["run", "--config"]).arg(&config).current_dir(dir.path()).env_remove("WATCHDOG_USEC");
        match value {
            Some(v) => cmd.env("TAPIR_LOG", v),
            None => cmd.env_remove("TAPIR_LOG"),
        };
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let _ = std::fs::remove_dir_all(dir.path().join("case"));
        String::from_utf8(o.stderr).unwrap()
    };
    let running = " INFO tapir running ";
    assert!(log(None).contains(running), "info by default");
    assert!(log(Some("")).contains(running), "an empty value is the default");
    let warn = log(Some("warn"));
    assert!(!warn.contains(" INFO "), "warn hides info: {warn}");
    assert!(log(Some("tapir::daemon=debug,warn")).contains(running), "a module's own level");
    let bad = log(Some("tapir=loud=really"));
    assert!(bad.contains(" WARN TAPIR_LOG not understood"), "{bad}");
    assert!(bad.contains(running), "an unreadable value logs at info: {bad}");
}
