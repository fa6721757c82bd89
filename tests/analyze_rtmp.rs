//! RTMP sessions between real FFmpeg processes (tests/media/rtmp-session.sh: two network
//! namespaces, a veth pair, tcpdump on the server's end), replayed through `tapir replay`.
//!
//! The oracle is the source clip, never tapir: FFmpeg makes a 6-second H.264 + AAC clip (150
//! video frames); the FLV tapir writes must hold, per stream, exactly the source's packets
//! (`ffmpeg -c copy -f framemd5`: one MD5 per packet), and `ffprobe -count_frames` must decode
//! as many frames from it as from the source. The stream key must appear nowhere in IRI or
//! object metadata, only as its SHA-256 (sha256sum's). Needs root, ffmpeg, tcpdump, editcap.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::media::{make_clip, packet_md5s, replay_sender, run, session as session_script};
use serde_json::Value;

const KEY: &str = "sk_live_9f8e7d6c5b4a";
const LIID: &str = "LIID-RTMP";

/// One RTMP session of `mode` captured into WORK/cap.pcap.
fn session(mode: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    make_clip(d.path());
    session_script("rtmp-session.sh", &[d.path().to_str().unwrap(), mode, KEY], &[]);
    d
}

/// `ffprobe -count_frames`: (codec, frames decoded) per stream, video first.
fn probe_frames(file: &Path) -> Vec<(String, u64)> {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,codec_name,nb_read_frames",
            "-of",
            "csv=p=0",
            file.to_str().unwrap(),
        ],
    );
    let mut v: Vec<(String, String, u64)> = out
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_string(), f[0].to_string(), f[2].parse().unwrap())
        })
        .collect();
    v.sort_by(|a, b| b.0.cmp(&a.0));
    v.into_iter().map(|(_, c, n)| (c, n)).collect()
}

struct Case {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Case {
    fn iri(&self) -> Vec<Value> {
        common::json_lines(&self.root.join(LIID).join("iri.jsonl"))
    }
    fn rtmp(&self, what: &str) -> Vec<Value> {
        self.iri().into_iter().filter(|r| r["event"] == "rtmp" && r["what"] == what).collect()
    }
    fn objects(&self) -> Vec<Value> {
        common::json_lines(&self.root.join(LIID).join("objects.jsonl"))
    }
    fn object_path(&self, o: &Value) -> PathBuf {
        self.root.join(LIID).join("objects").join(o["sha256"].as_str().unwrap())
    }
}

fn replay(pcap: &Path) -> Case {
    let (d, root) = replay_sender(pcap, LIID);
    Case { _dir: d, root }
}

fn sha256_of(s: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(format!("printf %s '{s}' | sha256sum")).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// The FLV object of the case, and the stream-end IRI that describes it.
fn the_stream(case: &Case) -> (Value, Value) {
    let flv: Vec<Value> = case
        .objects()
        .into_iter()
        .filter(|o| o["protocol"] == "rtmp" && o["name"].as_str().is_some_and(|n| n.ends_with(".flv")))
        .collect();
    assert_eq!(flv.len(), 1, "{flv:?}");
    let ends = case.rtmp("stream-end");
    assert_eq!(ends.len(), 1, "{ends:?}");
    (flv[0].clone(), ends[0].clone())
}

fn same_media_as_the_source(work: &Path, case: &Case, mode: &str, direction: &str) {
    let (obj, end) = the_stream(case);
    let src = work.join("src.mp4");
    let flv = case.object_path(&obj);
    assert_eq!((obj["kind"].as_str(), obj["direction"].as_str()), (Some("stream"), Some(direction)));
    // Every packet of both streams, in order, byte for byte.
    for s in ["v", "a"] {
        let want = packet_md5s(&src, s);
        assert!(want.len() > 100, "{s}: {}", want.len());
        let got = packet_md5s(&flv, s);
        let first_difference = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!((got.len(), first_difference), (want.len(), None), "stream {s} of tapir's FLV");
    }
    let frames = probe_frames(&flv);
    assert_eq!(frames, probe_frames(&work.join("recv.flv")), "as many frames as the receiver got");
    assert_eq!(frames[0], ("h264".to_string(), 150));
    // The MP4 copy (H.264 and AAC allow one): the source's packets, at the times the wire gave
    // them (those of FFmpeg's receiver's file: the source's edit list does not cross RTMP).
    let mp4 =
        case.objects().into_iter().find(|o| o["name"].as_str().is_some_and(|n| n.ends_with(".mp4"))).expect("an MP4");
    assert_eq!((mp4["kind"].as_str(), mp4["format"]["format"].as_str()), (Some("stream"), Some("mp4")));
    let mp4_path = case.object_path(&mp4);
    for s in ["v", "a"] {
        assert!(packet_md5s(&mp4_path, s) == packet_md5s(&src, s), "stream {s} of tapir's MP4");
    }
    assert_eq!(common::media::video_packet_times(&mp4_path), common::media::video_packet_times(&work.join("recv.flv")));
    assert_eq!(probe_frames(&mp4_path), frames, "ffprobe decodes as many frames from the MP4");
    assert_eq!(end["media"]["mp4"]["object"], mp4["id"]);
    assert_eq!(end["media"]["mp4"]["tracks"], serde_json::json!(["h264", "aac"]));
    // What IRI says, against what the sender's tools say.
    let m = &end["media"];
    assert_eq!(m["complete"], true, "{end}");
    assert_eq!(m["object"], obj["id"]);
    assert_eq!(m["sha256"], obj["sha256"]);
    assert_eq!(m["video"]["codec"], "h264");
    assert_eq!((m["video"]["width"].as_u64(), m["video"]["height"].as_u64()), (Some(320), Some(240)));
    assert_eq!(m["video"]["frames"], 150);
    assert_eq!(m["video"]["keyframes"], 6, "-g 25 over 150 frames");
    assert_eq!(m["audio"]["codec"], "aac");
    assert_eq!(m["audio"]["sample_rate"], 44100);
    assert_eq!(m["audio"]["frames"].as_u64(), Some(packet_md5s(&src, "a").len() as u64));
    let duration = m["duration_ms"].as_u64().unwrap();
    assert!((5900..=6000).contains(&duration), "{duration}");
    assert_eq!(end["mode"], mode);

    // Who, to where: the application and URL; the key only as its digest.
    let connect = case.rtmp("connect");
    assert_eq!(connect.len(), 1);
    assert_eq!(connect[0]["app"], "live");
    assert_eq!(connect[0]["tc_url"], "rtmp://198.51.100.10:1935/live");
    let begin = case.rtmp("stream-begin");
    assert_eq!(begin.len(), 1);
    assert_eq!(begin[0]["mode"], mode);
    assert_eq!(begin[0]["stream_name"], "***");
    assert_eq!(begin[0]["stream_name_sha256"], sha256_of(KEY));
    assert_eq!(end["message_stream"], begin[0]["message_stream"], "the end names the stream the begin named");
    for f in ["iri.jsonl", "objects.jsonl"] {
        let text = std::fs::read_to_string(case.root.join(LIID).join(f)).unwrap();
        assert!(!text.contains(KEY), "the stream key is in {f}");
    }
}

#[test]
fn a_published_stream_becomes_an_flv_with_every_packet_of_the_source() {
    let w = session("publish");
    let case = replay(&w.path().join("cap.pcap"));
    same_media_as_the_source(w.path(), &case, "publish", "orig");
    let status: Vec<String> =
        case.rtmp("status").iter().filter_map(|s| s["status"].as_str().map(String::from)).collect();
    assert_eq!(status, ["NetConnection.Connect.Success", "NetStream.Publish.Start"]);
    assert_eq!(case.rtmp("stream-begin")[0]["publish_type"], "live");

    // A hole in the client's bytes: the stream ends there, incomplete, holding exactly the
    // source's packets up to it (a prefix, nothing spliced); the rest is kept raw.
    let pcap = w.path().join("cap.pcap");
    let data = common::tshark(&pcap, Some("ip.src == 198.51.100.7 && tcp.len > 1000"), &["frame.number"]);
    assert!(data.len() > 50, "{}", data.len());
    let cut = &data[data.len() / 2];
    let holed = w.path().join("holed.pcap");
    run("editcap", &[pcap.to_str().unwrap(), holed.to_str().unwrap(), "-d", cut]);
    let case = replay(&holed);
    let (obj, end) = the_stream(&case);
    assert_eq!(end["media"]["complete"], false, "{end}");
    let flv = case.object_path(&obj);
    for s in ["v", "a"] {
        let want = packet_md5s(&w.path().join("src.mp4"), s);
        let got = packet_md5s(&flv, s);
        assert!(!got.is_empty() && got.len() < want.len(), "{s}: {} of {}", got.len(), want.len());
        assert!(got[..] == want[..got.len()], "stream {s} is the source's prefix");
    }
    let errors = case.rtmp("error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0]["error"].as_str().unwrap().contains("missing"), "{errors:?}");
    let raw: Vec<Value> =
        case.objects().into_iter().filter(|o| o["protocol"] == "tcp" && o["direction"] == "orig").collect();
    assert_eq!(raw.len(), 1, "the client's bytes after the hole are kept raw");
    assert_eq!(raw[0]["gaps"].as_array().map(Vec::len), Some(1), "{}", raw[0]);
}

#[test]
fn a_played_stream_is_written_from_the_server_side() {
    let w = session("play");
    let case = replay(&w.path().join("cap.pcap"));
    same_media_as_the_source(w.path(), &case, "play", "resp");
}
