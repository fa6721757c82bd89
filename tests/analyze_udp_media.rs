//! Media in UDP datagrams from a real sender (FFmpeg) between two network namespaces
//! (tests/media/udp-session.sh), replayed through `tapir replay`.
//!
//! Oracles: FFmpeg's own muxer output for the same source (the transport stream tapir writes
//! must be byte for byte what `ffmpeg -c copy -f mpegts` writes), ffprobe's frame counts and
//! stream list, tshark's UDP payloads. Needs root, ffmpeg, tcpdump, socat, tshark, editcap.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const LIID: &str = "LIID-MEDIA";

fn run(cmd: &str, args: &[&str]) -> Vec<u8> {
    let o = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(o.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// A 6 s, 25 fps, 320x240 H.264 clip with AAC audio, made by FFmpeg.
fn make_clip(work: &Path) {
    let src = work.join("src.mp4");
    run(
        "ffmpeg",
        &[
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-t",
            "6",
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-shortest",
            "-y",
            src.to_str().unwrap(),
        ],
    );
}

/// Runs `sender` (an FFmpeg command line, in WORK) through tests/media/udp-session.sh.
fn session(sender: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    make_clip(d.path());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/media/udp-session.sh");
    let o = Command::new("bash").arg(script).arg(d.path()).args(sender).output().unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    d
}

struct Case {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Case {
    fn iri(&self, event: &str) -> Vec<Value> {
        common::json_lines(&self.root.join(LIID).join("iri.jsonl"))
            .into_iter()
            .filter(|r| r["event"] == event)
            .collect()
    }
    fn object(&self, protocol: &str) -> (Value, PathBuf) {
        let v: Vec<Value> = common::json_lines(&self.root.join(LIID).join("objects.jsonl"))
            .into_iter()
            .filter(|o| o["protocol"] == protocol && o["kind"] == "stream")
            .collect();
        assert_eq!(v.len(), 1, "{v:?}");
        let path = self.root.join(LIID).join("objects").join(v[0]["sha256"].as_str().unwrap());
        (v[0].clone(), path)
    }
}

fn replay(pcap: &Path) -> Case {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("case");
    common::replay_one_warrant(d.path(), LIID, &["ipv4:198.51.100.7"], pcap, &root, &[]);
    Case { _dir: d, root }
}

/// ffprobe -count_frames: "codec,frames" per stream.
fn probe_frames(file: &Path) -> Vec<String> {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames",
            "-of",
            "csv=p=0",
            file.to_str().unwrap(),
        ],
    );
    // A transport stream's streams are listed again under its program: once each.
    let mut v: Vec<String> = Vec::new();
    for l in String::from_utf8_lossy(&out).lines().map(|l| l.trim_end_matches(',')).filter(|l| !l.is_empty()) {
        if !v.iter().any(|x| x == l) {
            v.push(l.to_string());
        }
    }
    v
}

/// Continuity-counter breaks in a transport stream, counted here (not by tapir): per PID with
/// payload, a counter that is neither the last + 1 nor a repeat of it.
fn continuity_breaks(ts: &[u8]) -> u64 {
    let mut last = std::collections::HashMap::new();
    let mut breaks = 0;
    for p in ts.chunks(188) {
        let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
        if pid == 0x1fff || p[3] & 0x10 == 0 {
            continue;
        }
        let cc = p[3] & 0x0f;
        if let Some(&l) = last.get(&pid) {
            if cc != (l + 1) & 0x0f && cc != l {
                breaks += 1;
            }
        }
        last.insert(pid, cc);
    }
    breaks
}

#[test]
fn mpeg_ts_over_udp_is_written_as_the_muxer_wrote_it_and_loss_shows() {
    let w = session(&[
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-re",
        "-i",
        "src.mp4",
        "-c",
        "copy",
        "-f",
        "mpegts",
        "udp://198.51.100.10:5000?pkt_size=1316",
    ]);
    let reference = w.path().join("ref.ts");
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            w.path().join("src.mp4").to_str().unwrap(),
            "-c",
            "copy",
            "-f",
            "mpegts",
            "-y",
            reference.to_str().unwrap(),
        ],
    );
    let pcap = w.path().join("cap.pcap");
    let case = replay(&pcap);
    let (obj, ts) = case.object("udp");
    assert_eq!(std::fs::read(&ts).unwrap(), std::fs::read(&reference).unwrap(), "FFmpeg's own TS, byte for byte");
    assert_eq!(probe_frames(&ts), ["h264,150", "aac,260"]);
    let ends = case.iri("mpegts");
    assert_eq!(ends.len(), 1);
    let m = &ends[0]["media"];
    assert_eq!((m["object"].clone(), m["sha256"].clone()), (obj["id"].clone(), obj["sha256"].clone()));
    assert_eq!(m["continuity_errors"], 0);
    assert_eq!(m["packets"].as_u64(), Some(std::fs::metadata(&reference).unwrap().len() / 188));
    // The PIDs and codecs ffprobe reads from the same stream.
    let streams = String::from_utf8(run(
        "ffprobe",
        &["-v", "error", "-show_entries", "stream=id,codec_name", "-of", "csv=p=0", reference.to_str().unwrap()],
    ))
    .unwrap();
    let mut want: Vec<String> = Vec::new();
    for l in streams.lines().filter(|l| !l.is_empty()) {
        if !want.iter().any(|x| x == l) {
            want.push(l.to_string());
        }
    }
    let got: Vec<String> = m["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{},{:#x}", s["codec"].as_str().unwrap(), s["pid"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, want);
    let duration = m["duration_ms"].as_u64().unwrap();
    assert!((5000..=6500).contains(&duration), "-re paces 6 s: {duration}");

    // Every 10th datagram never reached the tap: the file is what was seen, in order (tshark's
    // payloads of the frames left), and its continuity breaks are what IRI counts.
    let holed = w.path().join("holed.pcap");
    run("editcap", &[pcap.to_str().unwrap(), holed.to_str().unwrap(), "-d", "5", "15", "25", "35", "45", "55", "65"]);
    let payloads =
        String::from_utf8(run("tshark", &["-r", holed.to_str().unwrap(), "-T", "fields", "-e", "udp.payload"]))
            .unwrap();
    let seen: Vec<u8> = payloads.lines().flat_map(|l| hex::decode(l.replace(':', "")).unwrap()).collect();
    let case = replay(&holed);
    let (_, ts) = case.object("udp");
    let bytes = std::fs::read(&ts).unwrap();
    assert!(bytes == seen, "the datagrams the tap saw, in order");
    let m = &case.iri("mpegts")[0]["media"];
    assert!(m["continuity_errors"].as_u64().unwrap() >= 7, "{m}");
    assert_eq!(m["continuity_errors"].as_u64(), Some(continuity_breaks(&bytes)));
}
