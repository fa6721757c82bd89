//! `tapir run` with its side channels: association events sent live on the feed socket (Unix,
//! and TCP with a token) start an interception at once; RADIUS accounting seen on the tap does
//! the same and a Stop ends it; both survive a restart through the journal; `/metrics` carries
//! the counters Prometheus expects and no target identity.
//!
//! Captures are synthetic (made here, at T0 = 2027-01-15T08:00:00Z); what tapir intercepted is
//! read back with tshark, RADIUS packets are checked to decode as such by tshark, the metrics are
//! parsed with Python's prometheus_client and compared with tshark's counts of the capture.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    epoch_us, frame_count, free_port, ip_s, rfc3339, run_command, signal, the_case, tshark, verify_case, wait_exit,
    with_pipelines, write_pcap, Daemon, Lemf, T0, TAPIR,
};

const JOE: [u8; 4] = [10, 1, 0, 1];
const VM: [u8; 4] = [10, 1, 0, 2];
const BOB: [u8; 4] = [10, 1, 0, 3];
const OTHER: [u8; 4] = [10, 9, 9, 9];
const NAS: [u8; 4] = [10, 8, 0, 1];
const RADIUS_SERVER: [u8; 4] = [10, 8, 0, 2];

/// An Ethernet/IPv4/UDP frame (MACs 02:00:<source IP>, 02:ff:<destination IP>: an
/// `instance.start` event names a VM's port by its MAC) with a correct IPv4 checksum.
fn udp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let src_mac = [0x02, 0, src[0], src[1], src[2], src[3]];
    let dst_mac = [0x02, 0xff, dst[0], dst[1], dst[2], dst[3]];
    common::udp_frame_macs(src_mac, dst_mac, src, dst, sport, dport, payload)
}

/// A subscriber's datagram (port 4000 -> 5000).
fn data(src: [u8; 4], n: u32) -> Vec<u8> {
    udp_frame(src, [10, 2, 0, src[3]], 4000, 5000, format!("packet {n}").as_bytes())
}

/// An RFC 2866 Accounting-Request: Code 4, attributes User-Name (1), Framed-IP-Address (8),
/// Acct-Status-Type (40: 1 Start, 2 Stop), Acct-Session-Id (44). The authenticator is left zero
/// (the tap does not know the shared secret; tapir does not check it).
fn accounting(id: u8, status: u32, user: &str, framed: [u8; 4]) -> Vec<u8> {
    let mut attrs = Vec::new();
    attrs.extend_from_slice(&[1, (2 + user.len()) as u8]);
    attrs.extend_from_slice(user.as_bytes());
    attrs.extend_from_slice(&[8, 6]);
    attrs.extend_from_slice(&framed);
    attrs.extend_from_slice(&[40, 6]);
    attrs.extend_from_slice(&status.to_be_bytes());
    attrs.extend_from_slice(&[44, 8]);
    attrs.extend_from_slice(b"sess-1");
    let len = (20 + attrs.len()) as u16;
    let mut p = vec![4, id, (len >> 8) as u8, len as u8];
    p.extend_from_slice(&[0; 16]);
    p.extend_from_slice(&attrs);
    udp_frame(NAS, RADIUS_SERVER, 32000, 1813, &p)
}

/// Packets every 100 ms from T0 + `from_tenths`/10 for `count` steps, from each of `srcs`.
fn every_100ms(srcs: &[[u8; 4]], from_tenths: u32, count: u32) -> Vec<(u32, u32, Vec<u8>)> {
    let mut v = Vec::new();
    for i in from_tenths..from_tenths + count {
        for s in srcs {
            v.push((i / 10, (i % 10) * 100_000, data(*s, i)));
        }
    }
    v
}

fn warrant(liid: &str, target: &str, lea: Option<&str>) -> String {
    let lea = lea.map(|l| format!("lea = \"{l}\"\n")).unwrap_or_default();
    format!(
        "[[warrant]]\nliid = \"{liid}\"\nstart = \"{}\"\nend = \"{}\"\nscope = \"iri+cc\"\ntargets = [\"{target}\"]\n{lea}\n",
        rfc3339(-86_400),
        rfc3339(86_400),
    )
}

struct Cfg<'a> {
    replay: &'a [PathBuf],
    pace: &'a str,
    end: &'a str,
    case_dir: &'a str,
    extra: &'a str,
}

fn write_config(dir: &Path, c: &Cfg) -> PathBuf {
    let files: Vec<String> = c.replay.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
    let text = format!(
        "[capture]\nreplay = [{}]\npace = \"{}\"\nreplay_end = \"{}\"\n[paths]\nwarrants = \"warrants.toml\"\ncase_dir = \"{}\"\nspool_dir = \"spool\"\n{}",
        files.join(", "),
        c.pace,
        c.end,
        c.case_dir,
        c.extra
    );
    let p = dir.join("tapir.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Capture times (µs since the epoch, offset from T0) of a pcap's packets, by tshark.
fn times_after_t0_us(pcap: &Path, filter: Option<&str>) -> Vec<i64> {
    tshark(pcap, filter, &["frame.time_epoch"]).iter().map(|l| epoch_us(l) - i64::from(T0) * 1_000_000).collect()
}

/// Sends `input` with socat to `addr` (a socat address) and returns what came back.
fn socat(addr: &str, input: &str) -> String {
    let mut child = Command::new("socat")
        .args(["-t", "3", "-", addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("socat");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "socat: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Every packet of the subscriber from `first` on, 100 ms apart, and the first near `at_s`.
fn assert_from(times: &[i64], at_s: f64, last_us: i64, what: &str) {
    let first = *times.first().unwrap_or_else(|| panic!("{what}: nothing intercepted"));
    let first_s = first as f64 / 1e6;
    assert!(first_s >= at_s - 0.3, "{what}: first packet at T0+{first_s:.1}, event sent at {at_s:.1}s");
    assert!(first_s <= at_s + 1.0, "{what}: interception started late: T0+{first_s:.1}, event at {at_s:.1}s");
    for (i, t) in times.iter().enumerate() {
        assert_eq!(*t, first + i as i64 * 100_000, "{what}: packet {i} missing");
    }
    assert_eq!(times.last().copied(), Some(last_us), "{what}: did not run to the end of the capture");
}

#[test]
fn events_sent_on_the_unix_feed_start_interception_at_once() {
    feed_starts_interception(1);
}

/// The same with two pipeline workers: each applies the feed's events before the same frame.
#[test]
fn events_sent_on_the_unix_feed_start_interception_at_once_in_every_worker() {
    feed_starts_interception(2);
}

fn feed_starts_interception(pipelines: u32) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("live.pcap");
    write_pcap(&pcap, &every_100ms(&[JOE, VM, OTHER], 0, 50)); // T0+0.0 .. T0+4.9, real time
    let mut w = warrant("LIID-JOE", "subscriber:joe", None);
    w.push_str(&warrant("LIID-VM", "vm:vm-7", None));
    std::fs::write(dir.path().join("warrants.toml"), w).unwrap();
    let sock = dir.path().join("feed.sock");
    let extra = format!("[associations]\nlisten = \"unix:{}\"\n", sock.display());
    let config = write_config(
        dir.path(),
        &Cfg { replay: std::slice::from_ref(&pcap), pace: "realtime", end: "exit", case_dir: "case", extra: &extra },
    );
    with_pipelines(&config, pipelines);
    let (mut d, ready) = Daemon::start(&mut run_command(&config));
    std::thread::sleep(Duration::from_millis(1500));
    let sent_at = ready.elapsed().as_secs_f64();
    let lines = format!(
        "{}\n{}\n",
        serde_json::json!({"time": rfc3339(-60), "event": "access.start", "subscriber": "joe", "ip": ip_s(JOE)}),
        serde_json::json!({"time": rfc3339(-60), "event": "instance.start", "instance": "vm-7", "owner": "ann",
            "ports": [{"mac": "02:00:0a:01:00:02", "ips": [ip_s(VM)]}]}),
    );
    let reply = socat(&format!("UNIX-CONNECT:{}", sock.display()), &lines);
    assert_eq!(reply, "ok 1\nok 2\n");
    let st = wait_exit(&mut d.child, Duration::from_secs(20));
    assert!(st.success(), "{st:?}");
    // The socket is gone after the stop.
    assert!(!sock.exists());

    let case = the_case(dir.path(), "case");
    verify_case(&case);
    let joe = times_after_t0_us(&case.join("LIID-JOE/cc.pcap"), None);
    let vm = times_after_t0_us(&case.join("LIID-VM/cc.pcap"), None);
    assert_from(&joe, sent_at, 4_900_000, "joe");
    assert_from(&vm, sent_at, 4_900_000, "vm-7");
    // Only the target's own packets (tshark reads the addresses).
    assert!(tshark(&case.join("LIID-JOE/cc.pcap"), None, &["ip.src"]).iter().all(|s| *s == ip_s(JOE)));
    assert!(tshark(&case.join("LIID-VM/cc.pcap"), None, &["ip.src"]).iter().all(|s| *s == ip_s(VM)));
}

#[test]
fn the_tcp_feed_takes_events_with_the_token_and_refuses_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("live.pcap");
    write_pcap(&pcap, &every_100ms(&[JOE, OTHER], 0, 40)); // T0+0.0 .. T0+3.9
    std::fs::write(dir.path().join("warrants.toml"), warrant("LIID-JOE", "subscriber:joe", None)).unwrap();
    std::fs::write(dir.path().join("feed.token"), "s3cret-feed-token\n").unwrap();
    let port = free_port();
    let extra = format!("[associations]\nlisten = \"tcp:127.0.0.1:{port}\"\ntoken_file = \"feed.token\"\n");
    let config = write_config(
        dir.path(),
        &Cfg { replay: std::slice::from_ref(&pcap), pace: "realtime", end: "exit", case_dir: "case", extra: &extra },
    );
    let (mut d, ready) = Daemon::start(&mut run_command(&config));
    let ev = serde_json::json!({"time": rfc3339(-60), "event": "access.start", "subscriber": "joe", "ip": ip_s(JOE)});
    let addr = format!("TCP:127.0.0.1:{port}");
    // A wrong token: refused, the event not taken.
    let reply = socat(&addr, &format!("TOKEN not-the-token\n{ev}\n"));
    assert_eq!(reply, "error 1: bad or missing token\n");
    let reply = socat(&addr, &format!("{ev}\n"));
    assert_eq!(reply, "error 1: bad or missing token\n");
    std::thread::sleep(Duration::from_millis(1000).saturating_sub(ready.elapsed()));
    let sent_at = ready.elapsed().as_secs_f64();
    let reply = socat(&addr, &format!("TOKEN s3cret-feed-token\n{ev}\n"));
    assert_eq!(reply, "ok 1\nok 2\n");
    let st = wait_exit(&mut d.child, Duration::from_secs(20));
    assert!(st.success(), "{st:?}");
    let case = the_case(dir.path(), "case");
    verify_case(&case);
    let joe = times_after_t0_us(&case.join("LIID-JOE/cc.pcap"), None);
    assert_from(&joe, sent_at, 3_900_000, "joe");
    // The journal holds the one accepted event, never the token.
    let journal = std::fs::read_to_string(dir.path().join("spool/associations.journal")).unwrap();
    assert_eq!(journal.lines().count(), 1, "{journal}");
    assert!(!journal.contains("s3cret"));
}

/// The RADIUS capture: joe's traffic T0+0.0 .. T0+5.9 every 100 ms, an Accounting Start giving
/// joe his address at T0+2.05 and a Stop at T0+4.05, and a stranger's traffic throughout.
fn radius_capture(path: &Path) {
    let mut frames = every_100ms(&[JOE, OTHER], 0, 60);
    frames.push((2, 50_000, accounting(1, 1, "joe", JOE)));
    frames.push((4, 50_000, accounting(2, 2, "joe", JOE)));
    frames.sort_by_key(|(s, us, _)| (*s, *us));
    write_pcap(path, &frames);
    // tshark agrees these are Accounting-Requests for joe's address.
    let seen = tshark(
        path,
        Some("radius"),
        &["frame.time_epoch", "radius.code", "radius.User_Name", "radius.Framed-IP-Address", "radius.Acct_Status_Type"],
    );
    let got: Vec<(f64, String)> = seen
        .iter()
        .map(|l| {
            let (t, rest) = l.split_once('|').unwrap();
            (t.parse::<f64>().unwrap() - f64::from(T0), rest.to_string())
        })
        .collect();
    assert_eq!(got.len(), 2, "{seen:?}");
    assert!((got[0].0 - 2.05).abs() < 1e-3 && got[0].1 == "4|joe|10.1.0.1|1", "{seen:?}");
    assert!((got[1].0 - 4.05).abs() < 1e-3 && got[1].1 == "4|joe|10.1.0.1|2", "{seen:?}");
}

#[test]
fn radius_accounting_on_the_tap_starts_and_stops_interception() {
    radius_starts_and_stops(1);
}

/// The same with three pipeline workers: every worker learns the accounting (one analyzes
/// it), and the journal holds each event once.
#[test]
fn radius_accounting_on_the_tap_reaches_every_pipeline_worker() {
    radius_starts_and_stops(3);
}

fn radius_starts_and_stops(pipelines: u32) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("radius.pcap");
    radius_capture(&pcap);
    std::fs::write(dir.path().join("warrants.toml"), warrant("LIID-JOE", "subscriber:joe", None)).unwrap();
    let config = write_config(
        dir.path(),
        &Cfg { replay: std::slice::from_ref(&pcap), pace: "fast", end: "exit", case_dir: "case", extra: "" },
    );
    with_pipelines(&config, pipelines);
    let o = Command::new(TAPIR).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let case = the_case(dir.path(), "case");
    verify_case(&case);
    // After the Start (T0+2.05) and before the Stop (T0+4.05): T0+2.1 .. T0+4.0, 20 packets.
    let joe = times_after_t0_us(&case.join("LIID-JOE/cc.pcap"), None);
    let want: Vec<i64> = (21..=40).map(|i| i * 100_000).collect();
    assert_eq!(joe, want);
    // Both events persist: the journal holds them as feed lines, marked as from RADIUS.
    let journal = std::fs::read_to_string(dir.path().join("spool/associations.journal")).unwrap();
    let evs: Vec<serde_json::Value> = journal.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(evs.len(), 2, "{journal}");
    assert_eq!(evs[0]["event"], "access.start");
    assert_eq!(evs[1]["event"], "access.stop");
    for e in &evs {
        assert_eq!(e["subscriber"], "joe");
        assert_eq!(e["ip"], ip_s(JOE));
        assert_eq!(e["source"], "radius");
    }
    // The IRI says when joe got and lost the address.
    let iri = std::fs::read_to_string(case.join("LIID-JOE/iri.jsonl")).unwrap();
    assert!(iri.contains("2027-01-15T08:00:02.050000000Z"), "{iri}");
    assert!(iri.contains("2027-01-15T08:00:04.050000000Z"), "{iri}");
}

#[test]
fn feed_and_radius_associations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = warrant("LIID-JOE", "subscriber:joe", None);
    w.push_str(&warrant("LIID-BOB", "subscriber:bob", None));
    std::fs::write(dir.path().join("warrants.toml"), w).unwrap();

    // Run 1: RADIUS gives joe his address; bob's comes on the feed. Nobody talks yet.
    let first = dir.path().join("first.pcap");
    write_pcap(&first, &[(0, 0, data(OTHER, 0)), (0, 500_000, accounting(7, 1, "joe", JOE)), (1, 0, data(OTHER, 1))]);
    let sock = dir.path().join("feed.sock");
    let extra = format!("[associations]\nlisten = \"unix:{}\"\n", sock.display());
    let config = write_config(
        dir.path(),
        &Cfg { replay: std::slice::from_ref(&first), pace: "fast", end: "wait", case_dir: "case1", extra: &extra },
    );
    let (mut d, _) = Daemon::start(&mut run_command(&config));
    let ev = serde_json::json!({"time": rfc3339(2), "event": "access.start", "subscriber": "bob", "ip": ip_s(BOB)});
    assert_eq!(socat(&format!("UNIX-CONNECT:{}", sock.display()), &format!("{ev}\n")), "ok 1\n");
    std::thread::sleep(Duration::from_millis(300));
    d.stop();
    let journal = std::fs::read_to_string(dir.path().join("spool/associations.journal")).unwrap();
    assert_eq!(journal.lines().count(), 2, "{journal}");

    // Run 2, same spool: joe and bob talk from T0+10; nothing is resent.
    let second = dir.path().join("second.pcap");
    write_pcap(&second, &every_100ms(&[JOE, BOB, OTHER], 100, 20)); // T0+10.0 .. T0+11.9
    let config = write_config(
        dir.path(),
        &Cfg { replay: std::slice::from_ref(&second), pace: "fast", end: "exit", case_dir: "case2", extra: "" },
    );
    let o = Command::new(TAPIR).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let case = the_case(dir.path(), "case2");
    verify_case(&case);
    for (liid, ip) in [("LIID-JOE", JOE), ("LIID-BOB", BOB)] {
        let got = times_after_t0_us(&case.join(liid).join("cc.pcap"), None);
        let want = times_after_t0_us(&second, Some(&format!("ip.src == {}", ip_s(ip))));
        assert_eq!(want.len(), 20);
        assert_eq!(got, want, "{liid}: every packet from the first on");
    }
}

/// One HTTP GET with curl: (status, body).
fn curl(url: &str) -> (u16, String) {
    let o =
        Command::new("curl").args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "5", url]).output().unwrap();
    let out = String::from_utf8(o.stdout).unwrap();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The samples of a text exposition, parsed by prometheus_client: "name{k=v,...}" -> value.
fn parse_prometheus(text: &str) -> std::collections::BTreeMap<String, f64> {
    let script = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "prometheus_client refused the exposition:\n{text}");
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn metrics_count_what_tshark_counts_and_name_no_target() {
    let dir = tempfile::tempdir().unwrap();
    // The LEA: tapir's reference LEMF (answers keep-alives).
    let (hi2, hi3) = (free_port(), free_port());
    let mut lemf = Lemf::start(hi2, Some(hi3), &dir.path().join("lemf"));
    let mut w = warrant("LIID-M", "subscriber:joe", Some("lemf"));
    w.push_str(&format!(
        "[[lea]]\nname = \"lemf\"\nhi2 = \"127.0.0.1:{hi2}\"\nhi3 = \"127.0.0.1:{hi3}\"\noperator_id = \"tapir-test\"\nnetwork_element_id = \"mdf1\"\ncountry = \"DE\"\nkeepalive = 1\n"
    ));
    std::fs::write(dir.path().join("warrants.toml"), w).unwrap();
    // RADIUS gives joe his address at T0+0.05; joe and a stranger talk T0+0.1 .. T0+1.9.
    let pcap = dir.path().join("m.pcap");
    let mut frames = every_100ms(&[JOE, OTHER], 1, 19);
    frames.insert(0, (0, 50_000, accounting(1, 1, "joe", JOE)));
    write_pcap(&pcap, &frames);
    let mport = free_port();
    let extra = format!("[metrics]\nlisten = \"127.0.0.1:{mport}\"\n");
    let config = write_config(
        dir.path(),
        &Cfg { replay: std::slice::from_ref(&pcap), pace: "realtime", end: "wait", case_dir: "case", extra: &extra },
    );
    let (mut d, _) = Daemon::start(&mut run_command(&config));
    let base = format!("http://127.0.0.1:{mport}");
    assert_eq!(curl(&format!("{base}/healthz")).0, 200);

    // The independent counts.
    let frames_n = tshark(&pcap, None, &["frame.len"]);
    let bytes: u64 = frames_n.iter().map(|l| l.parse::<u64>().unwrap()).sum();
    let joe_n = tshark(&pcap, Some(&format!("ip.src == {} && udp.port == 5000", ip_s(JOE))), &["frame.number"]).len();
    assert_eq!(joe_n, 19);

    // After the replay (2 s) the totals settle; the LEA connects meanwhile.
    let t = Instant::now();
    let (text, m) = loop {
        let (code, text) = curl(&format!("{base}/metrics"));
        assert_eq!(code, 200);
        let m = parse_prometheus(&text);
        let settled = m.get("tapir_packets_total{}") == Some(&(frames_n.len() as f64))
            && m.get("tapir_lea_connected{channel=hi3,lea=lemf}") == Some(&1.0)
            && m.get("tapir_lea_connected{channel=hi2,lea=lemf}") == Some(&1.0);
        if settled || t.elapsed() > Duration::from_secs(15) {
            break (text, m);
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("{k} missing in\n{text}"));
    assert_eq!(get("tapir_packets_total{}"), frames_n.len() as f64, "{text}");
    assert_eq!(get("tapir_bytes_total{}"), bytes as f64, "{text}");
    assert_eq!(get("tapir_matched_packets_total{liid=LIID-M}"), joe_n as f64, "{text}");
    // joe's one UDP flow, still open (idle timeout 60 s).
    assert_eq!(get("tapir_flows{}"), 1.0, "{text}");
    assert_eq!(get("tapir_objects_total{}"), 0.0, "{text}");
    assert_eq!(get("tapir_reassembly_bytes{}"), 0.0, "{text}");
    assert!(get("tapir_spool_bytes{}") >= 0.0);
    assert_eq!(get("tapir_lea_connected{channel=hi2,lea=lemf}"), 1.0, "{text}");
    assert_eq!(get("tapir_lea_connected{channel=hi3,lea=lemf}"), 1.0, "{text}");
    // No target identity anywhere: not the subscriber, not an address.
    for secret in ["joe", &ip_s(JOE), &ip_s(OTHER), "10.2.0.1", "sess-1", "subscriber"] {
        assert!(!text.contains(secret), "{secret:?} in the metrics:\n{text}");
    }
    // Only the allowed label names.
    for k in m.keys() {
        let labels = k.split_once('{').unwrap().1.trim_end_matches('}');
        for l in labels.split(',').filter(|l| !l.is_empty()) {
            let name = l.split_once('=').unwrap().0;
            assert!(["liid", "interface", "kind", "lea", "channel"].contains(&name), "label {name} in {k}");
        }
    }

    // Delivery is near real time: while the daemon still runs (no stop, no full batch), every
    // one of joe's packets already reached the LEA's HI3 (the LEMF flushes per socket read).
    let lemf_cc = dir.path().join("lemf/LIID-M/cc.pcap");
    let t = Instant::now();
    let mut delivered = 0;
    while t.elapsed() < Duration::from_secs(10) {
        delivered = frame_count(&lemf_cc);
        if delivered == joe_n {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(delivered, joe_n, "HI3 behind while running");

    d.stop();
    // Stopped: the endpoint is gone.
    assert_ne!(curl(&format!("{base}/healthz")).0, 200);
    signal(&lemf.child, "TERM");
    let _ = wait_exit(&mut lemf.child, Duration::from_secs(10));
}
