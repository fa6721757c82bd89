//! The command-line contract of `tapir replay` and `tapir verify`: exit codes, one-line reasons
//! with file:line, damaged captures processed as far as they can be read, several files read in
//! timestamp order, the warrant window enforced to the packet, tampering named.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pcaps() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcaps")
}

fn tapir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tapir")).args(args).output().expect("run tapir")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Frame timestamps (ns) of a pcap tapir wrote.
fn pcap_times(path: &Path) -> Vec<i128> {
    let b = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= b.len() {
        let sec = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as i128;
        let ns = u32::from_le_bytes(b[off + 4..off + 8].try_into().unwrap()) as i128;
        let incl = u32::from_le_bytes(b[off + 8..off + 12].try_into().unwrap()) as usize;
        out.push(sec * 1_000_000_000 + ns);
        off += 16 + incl;
    }
    out
}

/// tshark's count of frames matching `filter` in `capture`.
fn tshark_count(capture: &Path, filter: &str) -> usize {
    let o = Command::new("tshark")
        .arg("-r")
        .arg(capture)
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .output()
        .unwrap();
    // tshark exits non-zero on a capture cut short, after printing the frames it could read.
    assert!(o.status.success() || stderr(&o).contains("cut short"), "tshark: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).lines().count()
}

fn warrants(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("w.toml");
    std::fs::write(&p, body).unwrap();
    p
}

const JOE: &str = r#"
[[warrant]]
liid = "LIID-JOE-0001"
start = "2026-01-01T00:00:00Z"
end   = "2027-01-01T00:00:00Z"
scope = "iri+cc"
targets = ["ipv4:198.51.100.7", "ipv6:2001:db8::7"]
"#;

#[test]
fn a_bad_warrant_file_is_refused_with_its_line() {
    let d = tempfile::tempdir().unwrap();
    let w = warrants(d.path(), &JOE.replace("ipv4:198.51.100.7", "ipv4:198.51.100.700"));
    let o = tapir(&["replay", s(&pcaps().join("http-put.pcap")), "--warrants", s(&w), "--out", s(&d.path().join("c"))]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    // The targets line is line 7 of the file.
    assert!(e.contains("w.toml:7"), "{e}");
    assert!(!d.path().join("c").exists(), "nothing written on a usage error");
}

#[test]
fn a_missing_capture_or_a_bad_association_line_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let w = warrants(d.path(), JOE);
    let o = tapir(&["replay", "/nonexistent.pcap", "--warrants", s(&w), "--out", s(&d.path().join("c"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent.pcap"), "{}", stderr(&o));

    let ev = d.path().join("e.jsonl");
    std::fs::write(&ev, "{\"time\":\"2026-01-01T00:00:00Z\",\"event\":\"access.start\",\"subscriber\":\"joe\",\"ip\":\"1.2.3.4\"}\n{\"time\":\"nope\"}\n").unwrap();
    let o = tapir(&[
        "replay",
        s(&pcaps().join("http-put.pcap")),
        "--warrants",
        s(&w),
        "--associations",
        s(&ev),
        "--out",
        s(&d.path().join("c2")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("e.jsonl:2"), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_2() {
    let o = tapir(&["replay"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn an_existing_case_is_never_overwritten() {
    let d = tempfile::tempdir().unwrap();
    let w = warrants(d.path(), JOE);
    let c = d.path().join("c");
    std::fs::create_dir(&c).unwrap();
    std::fs::write(c.join("evidence"), b"keep me").unwrap();
    let o = tapir(&["replay", s(&pcaps().join("http-put.pcap")), "--warrants", s(&w), "--out", s(&c)]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read(c.join("evidence")).unwrap(), b"keep me");
}

#[test]
fn a_truncated_capture_is_processed_up_to_the_damage() {
    let d = tempfile::tempdir().unwrap();
    let full = std::fs::read(pcaps().join("http-put.pcap")).unwrap();
    let cut = d.path().join("cut.pcap");
    std::fs::write(&cut, &full[..full.len() * 2 / 3]).unwrap();
    let w = warrants(d.path(), JOE);
    let c = d.path().join("c");
    let o = tapir(&["replay", s(&cut), "--warrants", s(&w), "--out", s(&c)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("capture damage: 1 region(s)"), "{out}");
    // tshark reads the same complete frames before the cut.
    let want = tshark_count(&cut, "ip.addr==198.51.100.7 || ipv6.addr==2001:db8::7");
    assert!(want > 0);
    assert_eq!(pcap_times(&c.join("LIID-JOE-0001/cc.pcap")).len(), want);
    // The LEA is told, in its own directory, signed with the rest: which file, where, and the
    // capture time reached (the last frame before the cut, as tshark reads it).
    let damage = std::fs::read_to_string(c.join("LIID-JOE-0001/damage.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = damage.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{damage}");
    assert!(lines[0]["what"].as_str().unwrap().starts_with("cut.pcap: capture damaged at byte"), "{damage}");
    assert!(!damage.contains(&d.path().display().to_string()), "the operator's paths stay out: {damage}");
    let t =
        Command::new("tshark").arg("-r").arg(&cut).args(["-T", "fields", "-e", "frame.time_epoch"]).output().unwrap();
    let last = String::from_utf8_lossy(&t.stdout).lines().last().unwrap().trim().to_string();
    let (secs, frac) = last.split_once('.').unwrap();
    let last_us = secs.parse::<i64>().unwrap() * 1_000_000 + frac[..6].parse::<i64>().unwrap();
    let after = lines[0]["after"].as_str().unwrap();
    let after = chrono::DateTime::parse_from_rfc3339(after).unwrap().timestamp_micros();
    assert_eq!(after, last_us, "the last frame's time");
    let m = std::fs::read_to_string(c.join("LIID-JOE-0001/MANIFEST.json")).unwrap();
    assert!(m.contains("\"damage.jsonl\""), "{m}");
    assert!(tapir(&["verify", s(&c.join("LIID-JOE-0001"))]).status.success());
}

#[test]
fn several_captures_are_read_in_timestamp_order() {
    let d = tempfile::tempdir().unwrap();
    let w = warrants(d.path(), JOE);
    let c = d.path().join("c");
    // Given newest first: the case must still be in capture-time order.
    let a = pcaps().join("ncat-ipv6.pcap");
    let b = pcaps().join("http-put.pcap");
    let o = tapir(&["replay", s(&a), s(&b), "--warrants", s(&w), "--out", s(&c)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let times = pcap_times(&c.join("LIID-JOE-0001/cc.pcap"));
    let f = "ip.addr==198.51.100.7 || ipv6.addr==2001:db8::7";
    assert_eq!(times.len(), tshark_count(&a, f) + tshark_count(&b, f));
    assert!(times.windows(2).all(|p| p[0] <= p[1]), "CC frames out of time order");
}

/// The window is enforced to the packet: a warrant that starts in the middle of a capture gets
/// exactly the frames tshark finds after that instant.
#[test]
fn the_window_is_enforced_to_the_packet() {
    let cap = pcaps().join("http-put.pcap");
    let o = Command::new("tshark")
        .arg("-r")
        .arg(&cap)
        .args(["-Y", "ip.addr==198.51.100.7", "-T", "fields", "-e", "frame.time_epoch"])
        .output()
        .unwrap();
    let times: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect();
    assert!(times.len() > 20);
    // Start at the 10th target frame's time and end at the 20th's: [start, end).
    let (start, end) = (&times[9], &times[19]);
    let to_rfc3339 = |t: &str| {
        let (sec, frac) = t.split_once('.').unwrap();
        let dt = chrono::DateTime::from_timestamp(sec.parse().unwrap(), 0).unwrap();
        format!("{}.{}Z", dt.format("%Y-%m-%dT%H:%M:%S"), frac)
    };
    let body = format!(
        "[[warrant]]\nliid = \"W\"\nstart = \"{}\"\nend = \"{}\"\nscope = \"iri+cc\"\ntargets = [\"ipv4:198.51.100.7\"]\n",
        to_rfc3339(start),
        to_rfc3339(end)
    );
    let d = tempfile::tempdir().unwrap();
    let w = warrants(d.path(), &body);
    let c = d.path().join("c");
    let o = tapir(&["replay", s(&cap), "--warrants", s(&w), "--out", s(&c)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = tshark_count(
        &cap,
        &format!("ip.addr==198.51.100.7 && frame.time_epoch >= {start} && frame.time_epoch < {end}"),
    );
    assert_eq!(pcap_times(&c.join("W/cc.pcap")).len(), want);
    // Sessions cut by the window end say so.
    let iri = std::fs::read_to_string(c.join("W/iri.jsonl")).unwrap();
    assert!(iri.contains("\"reason\":\"window-end\""), "{iri}");
    // The warrant's entering into and leaving force are on record, stamped with its bounds.
    let when = |op: &str| -> Vec<chrono::DateTime<chrono::FixedOffset>> {
        iri.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["event"] == "warrant" && v["op"] == op)
            .map(|v| chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).unwrap())
            .collect()
    };
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(&to_rfc3339(t)).unwrap();
    assert_eq!(when("activated"), vec![at(start)], "{iri}");
    assert_eq!(when("deactivated"), vec![at(end)], "{iri}");
}

#[test]
fn verify_names_a_tampered_file_and_checks_the_signer() {
    let d = tempfile::tempdir().unwrap();
    let w = warrants(d.path(), JOE);
    let c = d.path().join("c");
    let key = d.path().join("op.key");
    let k = tapir(&["keygen", s(&key)]);
    assert!(k.status.success(), "{}", stderr(&k));
    let o = tapir(&[
        "replay",
        s(&pcaps().join("http-put.pcap")),
        "--warrants",
        s(&w),
        "--out",
        s(&c),
        "--signing-key",
        s(&key),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let public = d.path().join("op.key.pub");
    let ok = tapir(&["verify", s(&c), "--public-key", s(&public)]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("the key given"));

    // Another operator's key is refused.
    let other = d.path().join("other.key");
    tapir(&["keygen", s(&other)]);
    let bad = tapir(&["verify", s(&c), "--public-key", s(&d.path().join("other.key.pub"))]);
    assert_eq!(bad.status.code(), Some(1));

    // One flipped byte in the CC is named.
    let cc = c.join("LIID-JOE-0001/cc.pcap");
    let mut b = std::fs::read(&cc).unwrap();
    let last = b.len() - 1;
    b[last] ^= 1;
    std::fs::write(&cc, b).unwrap();
    let t = tapir(&["verify", s(&c)]);
    assert_eq!(t.status.code(), Some(1));
    assert!(stderr(&t).contains("LIID-JOE-0001/cc.pcap"), "{}", stderr(&t));
}

/// What verify must notice beyond changed bytes: a case re-signed by someone else (it verifies,
/// but says loudly that the signer was not checked), an added empty directory, and a symbolic
/// link in place of a listed file (which would verify with the bytes it points to).
#[test]
fn verify_warns_of_an_unchecked_signer_and_refuses_added_directories_and_links() {
    let d = tempfile::tempdir().unwrap();
    let w = warrants(d.path(), JOE);
    let c = d.path().join("c");
    let o = tapir(&["replay", s(&pcaps().join("http-put.pcap")), "--warrants", s(&w), "--out", s(&c)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ok = tapir(&["verify", s(&c)]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stderr(&ok).contains("WARNING") && stderr(&ok).contains("NOT CHECKED"), "{}", stderr(&ok));

    std::fs::create_dir(c.join("LIID-JOE-0001/extra")).unwrap();
    let t = tapir(&["verify", s(&c)]);
    assert_eq!(t.status.code(), Some(1));
    assert!(stderr(&t).contains("LIID-JOE-0001/extra/: a directory with no file"), "{}", stderr(&t));
    std::fs::remove_dir(c.join("LIID-JOE-0001/extra")).unwrap();

    // An object replaced by a link to a copy of itself: same bytes, still refused.
    let objects = c.join("LIID-JOE-0001/objects");
    let obj = std::fs::read_dir(&objects).unwrap().next().unwrap().unwrap().path();
    let copy = d.path().join("copy");
    std::fs::copy(&obj, &copy).unwrap();
    std::fs::remove_file(&obj).unwrap();
    std::os::unix::fs::symlink(&copy, &obj).unwrap();
    let t = tapir(&["verify", s(&c)]);
    assert_eq!(t.status.code(), Some(1));
    assert!(stderr(&t).contains("a symbolic link in the case"), "{}", stderr(&t));
}

/// `tapir decode` reads PS-PDUs that Python asn1tools encoded (the shared reference vectors) and
/// prints one JSON line per PDU with the fields the vectors' header states; a cut stream ends
/// with a one-line error and a non-zero exit after what could be decoded.
#[test]
fn decode_prints_reference_pdus_as_json_lines() {
    let golden = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/schemas/etsi/derived/golden-vectors-asn1tools.txt"),
    )
    .unwrap();
    let bytes: Vec<u8> = golden
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(':'))
        .flat_map(|l| hex::decode(l.rsplit(':').next().unwrap().trim()).unwrap())
        .collect();
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("hi.ber");
    std::fs::write(&f, &bytes).unwrap();
    let o = tapir(&["decode", s(&f)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["pSHeader"]["lawfulInterceptionIdentifier"], "LIID-TEST-1");
        assert_eq!(v["pSHeader"]["communicationIdentifier"]["communicationIdentityNumber"], 7);
        assert_eq!(v["pSHeader"]["li-psDomainId"], "0.4.0.2.2.5.1.43");
        assert!(v["payload"].is_object(), "PDU {i}");
    }
    assert!(lines[0]["payload"]["tRIPayload"]["keep-alive"].is_null());
    std::fs::write(&f, &bytes[..100]).unwrap();
    let cut = tapir(&["decode", s(&f)]);
    assert_eq!(cut.status.code(), Some(1));
    assert_eq!(stdout(&cut).lines().count(), 1);
}

/// SIGINT (Ctrl-C) or SIGTERM during a replay: reading stops, every flow is ended, the case is
/// written and signed with its manifests saying it is incomplete and why, and tapir exits with
/// 128 + the signal. Before, the process died and left an unsigned partial case.
#[test]
fn an_interrupted_replay_leaves_a_signed_case_marked_incomplete() {
    let d = tempfile::tempdir().unwrap();
    // 1.5 million UDP packets from the target, one a millisecond: long enough to interrupt.
    let pcap = d.path().join("long.pcap");
    {
        const PACKETS: u32 = 1_500_000;
        let mut f = Vec::with_capacity(24 + 48 * PACKETS as usize);
        f.extend_from_slice(&[
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 101, 0, 0, 0,
        ]);
        let t0 = 1_795_000_000u32; // 2026-11-19
        let ip_udp = [
            0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0, 198, 51, 100, 7, 203, 0, 113, 10, 0x0f, 0xa0, 0, 53, 0, 12, 0,
            0,
        ];
        for i in 0..PACKETS {
            for v in [t0 + i / 1000, (i % 1000) * 1000, 32, 32] {
                f.extend_from_slice(&v.to_le_bytes());
            }
            f.extend_from_slice(&ip_udp);
            f.extend_from_slice(&i.to_be_bytes());
        }
        std::fs::write(&pcap, f).unwrap();
    }
    let w = warrants(d.path(), JOE);
    let c = d.path().join("c");
    for (sig, code) in [("INT", 130), ("TERM", 143)] {
        let case = c.join(sig);
        let mut child = Command::new(env!("CARGO_BIN_EXE_tapir"))
            .args(["replay", s(&pcap), "--warrants", s(&w), "--out", s(&case), "--quiet"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Once it is well into the capture (its case directory exists and has had time to fill).
        let t = std::time::Instant::now();
        while !case.join("LIID-JOE-0001/cc.pcap").exists() && t.elapsed() < std::time::Duration::from_secs(30) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(child.try_wait().unwrap().is_none(), "the replay ended before it could be interrupted");
        Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status().unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
        assert!(stderr(&o).contains("signed and marked incomplete"), "{}", stderr(&o));
        // The case verifies, and says it is incomplete.
        let v = tapir(&["verify", s(&case)]);
        assert!(v.status.success(), "{}", stderr(&v));
        assert!(stdout(&v).contains("INCOMPLETE: interrupted by signal"), "{}", stdout(&v));
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("LIID-JOE-0001/MANIFEST.json")).unwrap()).unwrap();
        assert!(m["incomplete"].as_str().unwrap().contains("the rest of the input was not read"), "{m}");
        // What was read is all there: the frames up to the stop, and the session ended.
        // Every packet of the input is the target's, so capinfos' count (which, unlike
        // tshark's, does not dissect a few hundred thousand frames) is the CC's.
        let frames = crate::common::frame_count(&case.join("LIID-JOE-0001/cc.pcap"));
        assert!(frames > 0 && frames < 1_500_000, "{frames}");
        let iri = std::fs::read_to_string(case.join("LIID-JOE-0001/iri.jsonl")).unwrap();
        assert!(iri.contains("\"reason\":\"shutdown\""), "{iri}");
    }
}

/// The case's hashing and writes give the same case on threads of their own as on the case
/// writer's (`TAPIR_DISK_THREADS`; this 2-core machine runs them inline by default): every file
/// of the FTP, HTTP and SMTP fixtures' case has the same `sha256sum` but the signed manifests
/// (which say when) and the run's ephemeral signing key, and both cases verify.
#[test]
fn the_case_is_the_same_with_and_without_disk_threads() {
    let d = tempfile::tempdir().unwrap();
    let app = pcaps().join("app");
    let case = |threads: &str| {
        let c = d.path().join(format!("case-{threads}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tapir"));
        cmd.env("TAPIR_DISK_THREADS", threads).args(["replay", "-q", "--warrants"]).arg(app.join("warrants.toml"));
        cmd.arg("--out").arg(&c).args(["ftp.pcap", "http.pcap", "smtp.pcap"].map(|f| app.join(f)));
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let v = tapir(&["verify", s(&c)]);
        assert!(v.status.success(), "{}", stderr(&v));
        let sums = Command::new("sh")
            .arg("-c")
            .arg("find . -type f ! -name 'MANIFEST*' ! -name signing-key.pub | sort | xargs sha256sum")
            .current_dir(&c)
            .output()
            .unwrap();
        assert!(sums.status.success());
        String::from_utf8(sums.stdout).unwrap()
    };
    let (inline, threads) = (case("0"), case("1"));
    assert!(inline.lines().filter(|l| l.contains("/objects/")).count() >= 3, "{inline}");
    assert!(inline.contains("LIID-JOE-0001/cc.pcap"), "{inline}");
    assert_eq!(inline, threads);
}

/// A case that fills its disk fails the run with the disk's own error, counted, whether the
/// case writer or threads of their own make the writes; nothing hangs and nothing is signed.
/// The disk is a 2 MiB tmpfs mounted for the test (root).
#[test]
fn a_full_disk_fails_the_run_with_its_error_with_and_without_disk_threads() {
    struct Mount(PathBuf);
    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let d = tempfile::tempdir().unwrap();
    let mnt = d.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let m = Command::new("mount").args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"]).arg(&mnt).status().unwrap();
    assert!(m.success(), "mount a 2 MiB tmpfs (root needed)");
    let _mounted = Mount(mnt.clone());
    let app = pcaps().join("app");
    for threads in ["0", "1"] {
        let c = mnt.join(format!("case-{threads}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tapir"));
        cmd.env("TAPIR_DISK_THREADS", threads).args(["replay", "-q", "--warrants"]).arg(app.join("warrants.toml"));
        cmd.arg("--out").arg(&c).args(["ftp.pcap", "http.pcap", "vmi.pcap"].map(|f| app.join(f)));
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(1), "threads {threads}: {}", stderr(&o));
        assert!(stderr(&o).contains("writing the case failed"), "{}", stderr(&o));
        assert!(stderr(&o).contains("No space left on device"), "{}", stderr(&o));
        assert!(!c.join("MANIFEST.json").exists(), "a failed case is not signed");
        std::fs::remove_dir_all(&c).unwrap();
    }
}
