//! Delivery faults, end to end between `tapir replay --deliver` and the reference `tapir lemf`,
//! against the offline case of the same replay (tshark reads both pcaps): tapir killed with
//! SIGKILL while its LEA is away, then run again once the LEA is back; the PDUs of the killed
//! run come out of the spool, none lost, numbering continuous.
//!
//! The 30 s network stall on HI2/HI3 is in `network_stalls`, with this file's helpers.
//!
//! Needs tshark.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::handover_common;
use handover_common::{free_port, wait_listening};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tapir")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn lemf(hi2: u16, hi3: u16, out: &Path) -> Kid {
    let k = Kid(Command::new(bin())
        .args(["lemf", "--listen-hi2", &format!("127.0.0.1:{hi2}"), "--listen-hi3", &format!("127.0.0.1:{hi3}")])
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    wait_listening(hi2);
    wait_listening(hi3);
    k
}

/// SIGTERM, so that the LEMF writes its report, then wait for it.
pub(crate) fn stop(mut k: Kid) {
    let _ = Command::new("kill").args(["-TERM", &k.0.id().to_string()]).status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = k.0.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn warrants(dir: &Path, hi2: u16, hi3: u16) -> PathBuf {
    let p = dir.join("w.toml");
    std::fs::write(
        &p,
        format!(
            "[[warrant]]\nliid = \"LIID-F\"\nstart = \"2026-01-01T00:00:00Z\"\nend = \"2027-01-01T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [\"ipv4:198.51.100.7\"]\n\n[[lea]]\nname = \"lea-f\"\nhi2 = \"127.0.0.1:{hi2}\"\nhi3 = \"127.0.0.1:{hi3}\"\noperator_id = \"OPER-O\"\nnetwork_element_id = \"tapir-1\"\ncountry = \"NZ\"\nkeepalive = 2\nintegrity = {{ hash_every = 50 }}\n"
        ),
    )
    .unwrap();
    p
}

pub(crate) fn replay(captures: &[&str], w: &Path, out: &Path, deliver: Option<(&Path, u64)>) -> Command {
    let mut c = Command::new(bin());
    c.arg("replay");
    for cap in captures {
        c.arg(root().join("pcaps").join(cap));
    }
    c.arg("--warrants").arg(w).arg("--out").arg(out).arg("--quiet");
    if let Some((spool, wait)) = deliver {
        c.arg("--deliver").arg(spool).args(["--deliver-wait", &wait.to_string()]);
    }
    c
}

pub(crate) fn ok(o: &Output) {
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

/// Per packet: addresses, length, IP id and TCP sequence number, by tshark; the LEMF's pcap
/// holds raw IP, the case's Ethernet frames, so only IP-level fields compare.
pub(crate) fn ip_packets(pcap: &Path) -> Vec<String> {
    crate::common::tshark(pcap, None, &["ip.src", "ip.dst", "ip.len", "ip.id", "tcp.seq_raw"])
}

pub(crate) fn report(lemf_out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(lemf_out.join("report.json")).unwrap()).unwrap()
}

/// Every stream the LEMF saw is gap-free (after any cINReset), and no integrity check failed.
pub(crate) fn assert_continuous(r: &serde_json::Value) {
    let streams = r["streams"].as_object().unwrap();
    assert!(!streams.is_empty());
    for (k, s) in streams {
        assert_eq!(s["gaps"], serde_json::json!([]), "stream {k}: {s}");
        assert_eq!(s["gaps_before_reset"], serde_json::json!([]), "stream {k}: {s}");
        // A duplicate, if any, is the same PDU again (same number, same bytes).
        for d in s["duplicate_samples"].as_array().unwrap() {
            assert_eq!(d["identical"], true, "stream {k}: {d}");
        }
    }
    let i = &r["integrity"];
    assert_eq!(i["hash_failed"], 0, "{i}");
    assert!(i["hash_passed"].as_u64().unwrap() > 0, "{i}");
    assert_eq!(r["undecodable"], 0, "{r}");
}

fn spool_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            n += if m.is_dir() { spool_bytes(&e.path()) } else { m.len() };
        }
    }
    n
}

#[test]
fn sigkill_while_the_lea_is_away_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (hi2, hi3) = (free_port(), free_port());
    let w = warrants(d.path(), hi2, hi3);
    // The offline truth: the same replay without delivery.
    ok(&replay(&["http-put.pcap"], &w, &d.path().join("case0"), None).output().unwrap());
    let want = ip_packets(&d.path().join("case0/LIID-F/cc.pcap"));
    assert!(want.len() > 20);

    // Run 1: the LEA is not there; tapir spools and waits. Killed with SIGKILL once the spool
    // stops growing (everything is spooled, the wait for the LEA has begun).
    let spool = d.path().join("spool");
    let run1 = Kid(replay(&["http-put.pcap"], &w, &d.path().join("case1"), Some((&spool, 120)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let t = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        let n = spool_bytes(&spool);
        if n != last.0 {
            last = (n, Instant::now());
        } else if n > 0 && last.1.elapsed() > Duration::from_millis(1500) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "spool never settled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill").args(["-KILL", &run1.0.id().to_string()]).status();
    drop(run1);

    // Run 2, with the LEA back: a capture without target traffic, same spool. It delivers what
    // run 1 left, after a cINReset for the streams it restarts.
    let lemf_out = d.path().join("lemf");
    let l = lemf(hi2, hi3, &lemf_out);
    let o = replay(&["ncat-ipv6.pcap"], &w, &d.path().join("case2"), Some((&spool, 60))).output().unwrap();
    ok(&o);
    // The LEMF gets run 1's spooled CC first, then whatever run 2 itself intercepted.
    let mut want = want;
    want.extend(ip_packets(&d.path().join("case2/LIID-F/cc.pcap")));
    std::thread::sleep(Duration::from_millis(1500));
    stop(l);

    let got = ip_packets(&lemf_out.join("LIID-F/cc.pcap"));
    assert_eq!(got, want, "HI3 after the crash differs from the offline cases' CC");
    let r = report(&lemf_out);
    assert_continuous(&r);
    // Both runs' warrant activations arrived as HI1 (run 2's after its cINReset).
    let iri = std::fs::read_to_string(lemf_out.join("LIID-F/iri.jsonl")).unwrap();
    assert_eq!(iri.matches("liActivated").count(), 2, "{iri}");
}
