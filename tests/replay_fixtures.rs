//! End to end: `tapir replay` on the fixtures in `pcaps/`, checked against independent tools.
//!
//! For every fixture and every warrant of `pcaps/warrants.toml`:
//! - the CC frames tapir writes are exactly the frames Wireshark (sharkd) selects with the
//!   warrant's display filter restricted to its window (`frame.time_epoch`), in order, byte for
//!   byte (frame hashes by `pcaps/tools/pcapread.py`, a reader that shares nothing with tapir);
//! - the stream objects are exactly the non-empty directions of the TCP streams tshark puts in
//!   that selection, with the SHA-256 the fixture script recorded (for raw transfers: sha256sum of
//!   the file the client sent), complete and without gaps;
//! - `tapir verify` accepts the case and `capinfos` reads every CC pcap.

use crate::common;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pcaps() -> PathBuf {
    root().join("pcaps")
}

fn tapir(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tapir")).args(args).output().expect("run tapir")
}

fn sha256(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

/// Frames of a classic pcap as tapir writes it (our own output: read plainly).
fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).unwrap();
    assert!(b.len() >= 24, "{}: short", path.display());
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= b.len() {
        let incl = u32::from_le_bytes(b[off + 8..off + 12].try_into().unwrap()) as usize;
        off += 16;
        out.push(b[off..off + incl].to_vec());
        off += incl;
    }
    assert_eq!(off, b.len(), "{}: trailing bytes", path.display());
    out
}

struct Warrant {
    liid: String,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
}

fn shipped_warrants() -> Vec<Warrant> {
    let t: toml::Table = toml::from_str(&std::fs::read_to_string(pcaps().join("warrants.toml")).unwrap()).unwrap();
    t["warrant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| Warrant {
            liid: w["liid"].as_str().unwrap().into(),
            start: w["start"].as_str().unwrap().parse().unwrap(),
            end: w["end"].as_str().unwrap().parse().unwrap(),
        })
        .collect()
}

fn epoch(t: &chrono::DateTime<chrono::Utc>) -> String {
    format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos())
}

/// Wireshark's selection: (frame number, tcp.stream if any) for `filter` inside `[start, end)`,
/// from the capture `sharkd` has loaded (one sharkd for the fixture's warrants: the display
/// filter engine of `tshark -Y`, without a tshark start-up per warrant).
fn wireshark_select(sharkd: &mut common::Sharkd, filter: &str, w: &Warrant) -> Vec<(u64, Option<u64>)> {
    let y = format!("({filter}) && frame.time_epoch >= {} && frame.time_epoch < {}", epoch(&w.start), epoch(&w.end));
    sharkd
        .frames(Some(&y), &["tcp.stream"])
        .expect("short columns")
        .into_iter()
        .map(|(n, f)| (n, f[0].split(',').next().and_then(|s| s.parse().ok())))
        .collect()
}

/// Every frame's SHA-256 by tshark frame number, from `pcaps/tools/pcapread.py` (a reader that
/// shares nothing with tapir).
fn frame_hashes(capture: &Path) -> BTreeMap<u64, String> {
    let out = Command::new("python3").arg(pcaps().join("tools/pcapread.py")).arg(capture).output().expect("python3");
    assert!(out.status.success(), "pcapread: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse().unwrap(), f[3].to_string())
        })
        .collect()
}

/// The fixtures' filters select by address. `seed.events.jsonl` also gives vm-42's port MAC
/// (fa:16:3e:00:00:01, VNI 5001) to the warrant on subscriber joe, so the VM's non-IP frames (ARP)
/// are the target's too: add them to that warrant's filter.
fn with_associated_macs(liid: &str, filter: &str) -> String {
    if liid == "LIID-JOE-0001" {
        format!("({filter}) || (vxlan.vni==5001 && eth.addr==fa:16:3e:00:00:01)")
    } else {
        filter.to_string()
    }
}

fn expect(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(pcaps().join(format!("{name}.expect.json"))).unwrap()).unwrap()
}

fn objects(case: &Path, liid: &str) -> Vec<Value> {
    match std::fs::read_to_string(case.join(liid).join("objects.jsonl")) {
        Ok(s) => s.lines().map(|l| serde_json::from_str(l).unwrap()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Replays `fixture` with the shipped warrants and events, then checks every LIID as described at
/// the top of this file.
fn check_fixture(fixture: &str, expect_name: &str) {
    let exp = expect(expect_name);
    let capture = pcaps().join(fixture);
    let case = tempfile::tempdir().unwrap();
    let case_dir = case.path().join("case");
    let out = tapir(&[
        "replay",
        capture.to_str().unwrap(),
        "--warrants",
        pcaps().join("warrants.toml").to_str().unwrap(),
        "--associations",
        pcaps().join("seed.events.jsonl").to_str().unwrap(),
        "--out",
        case_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{fixture}: {}", String::from_utf8_lossy(&out.stderr));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("decode errors: none"), "{fixture}: {summary}");

    let hashes = frame_hashes(&capture);
    let mut sharkd = common::Sharkd::spawn();
    sharkd.load(&capture);
    for w in shipped_warrants() {
        let sel = exp["selections"].as_array().unwrap().iter().find(|s| s["liid"] == w.liid.as_str()).unwrap();
        let filter = sel["filter"].as_str().unwrap();
        let filter = with_associated_macs(&w.liid, filter);
        let chosen = wireshark_select(&mut sharkd, &filter, &w);
        let want: Vec<&str> = chosen
            .iter()
            .map(|(n, _)| hashes.get(n).map(String::as_str).unwrap_or_else(|| panic!("{fixture}: no frame {n}")))
            .collect();
        let cc_path = case_dir.join(&w.liid).join("cc.pcap");
        let got: Vec<String> =
            if cc_path.exists() { read_pcap(&cc_path).iter().map(|f| sha256(f)).collect() } else { Vec::new() };
        assert_eq!(got.len(), want.len(), "{fixture} {}: CC frame count vs tshark -Y '{filter}' in window", w.liid);
        assert_eq!(want.is_empty(), sel["packets"] == 0 || w.liid == "LIID-OLD-0003", "{fixture} {}", w.liid);
        assert!(got.iter().zip(&want).all(|(a, b)| a == b), "{fixture} {}: CC frames differ from tshark's", w.liid);
        if cc_path.exists() {
            let c = Command::new("capinfos").arg("-c").arg(&cc_path).output().unwrap();
            assert!(c.status.success(), "capinfos cannot read {}", cc_path.display());
        }

        // Connections an analyzer understands (HTTP, FTP control and data) yield `file`
        // objects; every other selected connection yields one raw `stream` object per non-empty
        // direction, with the bytes tshark's follow-stream gave.
        let streams: BTreeSet<u64> = chosen.iter().filter_map(|(_, s)| *s).collect();
        let mut protocol_streams = BTreeSet::new();
        let mut want_files: Vec<(String, String)> = Vec::new();
        for f in exp["files"].as_array().unwrap() {
            let kind = f["kind"].as_str().unwrap();
            if kind == "raw" {
                continue;
            }
            let data = f["tcp_stream"].as_u64().unwrap();
            protocol_streams.insert(data);
            if let Some(c) = f["control"]["tcp_stream"].as_u64() {
                protocol_streams.insert(c);
            }
            if streams.contains(&data) {
                want_files.push((f["name"].as_str().unwrap().into(), f["sha256"].as_str().unwrap().into()));
            }
        }
        let mut want_streams: Vec<String> = Vec::new();
        for s in exp["tcp_streams"].as_array().unwrap() {
            let n = s["tcp_stream"].as_u64().unwrap();
            if !streams.contains(&n) || protocol_streams.contains(&n) {
                continue;
            }
            for dir in ["initiator_to_responder", "responder_to_initiator"] {
                if s[dir]["bytes"].as_u64().unwrap() > 0 {
                    want_streams.push(s[dir]["sha256"].as_str().unwrap().into());
                }
            }
        }
        want_streams.sort();
        let objs = objects(&case_dir, &w.liid);
        let mut got_streams: Vec<String> =
            objs.iter().filter(|o| o["kind"] == "stream").map(|o| o["sha256"].as_str().unwrap().to_string()).collect();
        got_streams.sort();
        assert_eq!(got_streams, want_streams, "{fixture} {}: raw stream objects", w.liid);
        for (name, sha) in &want_files {
            let found = objs.iter().any(|o| o["kind"] == "file" && o["sha256"] == sha.as_str());
            assert!(found, "{fixture} {}: file {name} ({sha}) not among the objects", w.liid);
        }
        for o in &objs {
            assert_eq!(o["gaps"], serde_json::json!([]), "{fixture}: {o}");
            assert_eq!(o["complete"], true, "{fixture}: {o}");
            let path = case_dir.join(&w.liid).join(o["path"].as_str().unwrap());
            let stored = std::fs::read(&path).unwrap();
            assert_eq!(sha256(&stored), o["sha256"].as_str().unwrap());
            // A disk image, raw streams too, carries MD5 and SHA-512 of its stored bytes; any
            // other object SHA-256 alone.
            let mut want = serde_json::json!({});
            for (tool, field) in [("md5sum", "md5"), ("sha512sum", "sha512")] {
                let out = Command::new(tool).arg(&path).output().unwrap();
                let sum = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string();
                want[field] = sum.into();
            }
            let image = common::disk_image(o["name"].as_str(), &path);
            let kind = if image { common::Digests::Image } else { common::Digests::Sha256 };
            common::assert_image_digests(o, &want, kind, &format!("{fixture}: {o}"));
        }
    }
    // Every file the clients sent is found for a target, and never for a non-target.
    let all: BTreeSet<String> = shipped_warrants()
        .iter()
        .flat_map(|w| objects(&case_dir, &w.liid))
        .map(|o| o["sha256"].as_str().unwrap().to_string())
        .collect();
    for f in exp["files"].as_array().unwrap() {
        let h = f["stream_sha256"].as_str().or(f["sha256"].as_str()).unwrap();
        let target = !f["note"].as_str().unwrap_or("").contains("NOT a target")
            && !f["flow"]["client"].as_str().unwrap_or("").starts_with("198.51.100.8:");
        assert_eq!(all.contains(h), target, "{fixture}: file {} (target: {target})", f["name"]);
    }
    let v = tapir(&["verify", case_dir.to_str().unwrap()]);
    assert!(v.status.success(), "verify: {}", String::from_utf8_lossy(&v.stderr));
}

#[test]
fn http_put() {
    check_fixture("http-put.pcap", "http-put");
}

#[test]
fn ftp_upload_active_and_passive() {
    check_fixture("ftp-upload.pcap", "ftp-upload");
}

#[test]
fn gzip_capture() {
    check_fixture("ftp-upload.pcap.gz", "ftp-upload.pcap.gz");
}

#[test]
fn ipv6_ncat_ping_and_fragments() {
    check_fixture("ncat-ipv6.pcap", "ncat-ipv6");
}

#[test]
fn lossy_upload_with_retransmissions() {
    check_fixture("lossy.pcap", "lossy");
}

#[test]
fn vxlan_tenants_with_the_same_address() {
    check_fixture("vxlan.pcap", "vxlan");
}

#[test]
fn vlan_tagged() {
    check_fixture("vlan.pcap", "vlan");
}

#[test]
fn qinq_tagged() {
    check_fixture("qinq.pcap", "qinq");
}

#[test]
fn pcapng() {
    check_fixture("mixed.pcapng", "mixed");
}

#[test]
fn linux_cooked_sll() {
    check_fixture("sll.pcap", "sll");
}

#[test]
fn linux_cooked_sll2() {
    check_fixture("sll2.pcap", "sll2");
}
