//! An 80 MiB upload over FTP (passive) and over HTTP PUT, with about 1% of segments dropped on
//! the way (nftables rule), captured from real clients and servers in network namespaces by
//! `pcaps/tools/make-big-upload.sh` at test time (180 MB: too big to ship). Both copies must be
//! rebuilt byte-exact (sha256sum of the file sent) despite the loss and retransmissions, and the
//! replay must not hold the file in memory. The generator runs `LEAN=1`: the file sent's digests
//! and tshark's count of retransmissions are all this test reads, and the full expectation's
//! tshark passes over 180 MB took most of its time (about 45 of 55 s here).
//!
//! Needs root (network namespaces), as CI runs; tools come from `.ci/install-deps.sh`.

use crate::common;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn eighty_megabyte_uploads_through_loss_are_rebuilt_exactly() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let gen = Command::new("bash")
        .arg(root.join("pcaps/tools/make-big-upload.sh"))
        .arg(work.path())
        .env("LEAN", "1")
        .output()
        .expect("bash");
    assert!(
        gen.status.success(),
        "make-big-upload.sh failed (needs root and .ci/install-deps.sh):\n{}\n{}",
        String::from_utf8_lossy(&gen.stdout),
        String::from_utf8_lossy(&gen.stderr)
    );
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.path().join("big.expect.json")).unwrap()).unwrap();
    let case = work.path().join("case");
    let o = Command::new("/usr/bin/time")
        .args(["-f", "peak-rss-kb %M"])
        .arg(env!("CARGO_BIN_EXE_tapir"))
        .arg("replay")
        .arg(work.path().join("big.pcap"))
        .arg("--warrants")
        .arg(work.path().join("warrants.toml"))
        .arg("--out")
        .arg(&case)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let objects: Vec<serde_json::Value> = std::fs::read_to_string(case.join("LIID-JOE-0001/objects.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let files = exp["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    for f in files {
        let want = f["sha256"].as_str().unwrap();
        let proto = f["kind"].as_str().unwrap();
        let o = objects
            .iter()
            .find(|o| o["protocol"] == proto && o["sha256"] == want)
            .unwrap_or_else(|| panic!("{proto} upload of {} not rebuilt", f["name"]));
        assert_eq!(o["size"], f["size"]);
        assert_eq!(o["complete"], true);
        // Random bytes named .bin: no disk image, so SHA-256 alone names it.
        common::assert_image_digests(o, f, common::Digests::Sha256, proto);
    }
    // The loss was real: the capture holds retransmissions (counted by the generator with tshark).
    assert!(exp["counts"]["retransmissions"]["packets"].as_u64().unwrap_or(0) > 100, "{}", exp["counts"]);
    // Objects stream to disk: peak memory stays far below the 80 MiB file (the capture itself is
    // memory-mapped and counts in RSS, so compare with capture + 64 MB).
    let rss_kb: u64 = String::from_utf8_lossy(&o.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kb ").map(|n| n.trim().parse().unwrap()))
        .unwrap();
    let capture_kb = std::fs::metadata(work.path().join("big.pcap")).unwrap().len() / 1024;
    assert!(rss_kb < capture_kb + 64 * 1024, "peak RSS {rss_kb} kB for a {capture_kb} kB capture");
}
