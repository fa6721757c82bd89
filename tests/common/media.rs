//! Helpers of the media tests: FFmpeg's clip, FFmpeg's per-packet and per-picture MD5s, the
//! session scripts of tests/media/, and a replay under one warrant on the sender (198.51.100.7).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `cmd`; panics with its stderr if it fails; returns its stdout.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(o.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Makes WORK/src.mp4: 6 s, 25 fps, 320x240 H.264 (libx264, a key frame every 25) with AAC.
///
/// FFmpeg encodes it once per test process (0.75 s of CPU; a dozen tests use it); each test
/// gets a copy of those bytes.
pub fn make_clip(work: &Path) {
    static CLIP: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let clip = CLIP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        encode_clip(&dir.path().join("src.mp4"));
        std::fs::read(dir.path().join("src.mp4")).unwrap()
    });
    std::fs::write(work.join("src.mp4"), clip).unwrap();
}

fn encode_clip(src: &Path) {
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

/// The MD5 column of FFmpeg's framemd5 for `args` (`-i FILE ... -f framemd5 -`): fields are
/// stream, dts, pts, duration, size, hash, then any side data.
pub fn md5s(args: &[&str]) -> Vec<String> {
    run("ffmpeg", args)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(',').nth(5))
        .map(|s| s.trim().to_string())
        .collect()
}

/// Per-packet MD5s (`-c copy`) of stream `which` (`v`, `a`) of `file`.
pub fn packet_md5s(file: &Path, which: &str) -> Vec<String> {
    md5s(&[
        "-v",
        "error",
        "-i",
        file.to_str().unwrap(),
        "-map",
        &format!("0:{which}"),
        "-c",
        "copy",
        "-f",
        "framemd5",
        "-",
    ])
}

/// Per-picture MD5s of `file`'s video, decoded.
pub fn picture_md5s(file: &Path) -> Vec<String> {
    md5s(&["-v", "error", "-i", file.to_str().unwrap(), "-map", "0:v", "-f", "framemd5", "-"])
}

/// The presentation time (ffprobe's `pts_time`, seconds) of each video packet of `file`.
pub fn video_packet_times(file: &Path) -> Vec<String> {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
            file.to_str().unwrap(),
        ],
    );
    out.lines().map(String::from).collect()
}

/// Runs tests/media/`script` with `args` (and `env`), as root; panics with its output if it fails.
pub fn session(script: &str, args: &[&str], env: &[(&str, &str)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/media").join(script);
    let o = Command::new("bash").arg(path).args(args).envs(env.iter().copied()).output().unwrap();
    assert!(
        o.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `pcap` replayed under one iri+cc warrant `liid` on the sender; the case root (kept while
/// the returned directory lives).
pub fn replay_sender(pcap: &Path, liid: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("case");
    super::replay_one_warrant(d.path(), liid, &["ipv4:198.51.100.7"], pcap, &root, &[]);
    (d, root)
}

/// FFmpeg's own view of `file`'s video as a fingerprint: its Annex B stream (`-c copy` through
/// `h264_mp4toannexb`/`hevc_mp4toannexb`) split at start codes, the slice NAL units (H.264
/// types 1-5, H.265 types 0-31) hashed each behind its 4-byte big-endian length; the pictures
/// are ffprobe's video packet count. `codec`: `h264` or `hevc`.
pub fn video_fingerprint(file: &Path, codec: &str) -> (String, u64) {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i", file.to_str().unwrap(), "-map", "0:v", "-c", "copy", "-bsf:v"])
        .arg(format!("{codec}_mp4toannexb"))
        .args(["-f", codec, "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&o.stderr));
    let b = o.stdout;
    // Start code positions (00 00 01); a NAL unit runs to the next one, less trailing zeros.
    let starts: Vec<usize> =
        (0..b.len().saturating_sub(2)).filter(|&i| b[i..i + 3] == [0, 0, 1]).map(|i| i + 3).collect();
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    for (k, &at) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(b.len(), |&n| n - 3);
        let mut nal = &b[at..end];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        let Some(&h) = nal.first() else { continue };
        let vcl = if codec == "h264" { (1..=5).contains(&(h & 0x1f)) } else { (h >> 1) & 0x3f < 32 };
        if vcl {
            sha.update(&(nal.len() as u32).to_be_bytes());
            sha.update(nal);
        }
    }
    let frames = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_packets",
            "-of",
            "csv=p=0",
            file.to_str().unwrap(),
        ],
    );
    let hex: String = sha.finish().as_ref().iter().map(|x| format!("{x:02x}")).collect();
    (hex, frames.trim().parse().unwrap())
}
