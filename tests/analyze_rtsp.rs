//! RTSP RECORD sessions between real FFmpeg processes (tests/media/rtsp-session.sh: two network
//! namespaces, a veth pair, tcpdump on the server's end), with the RTP over UDP on the ports
//! SETUP negotiated, and interleaved in the RTSP connection. The H.264 parameter sets travel
//! only in the SDP (sprop-parameter-sets), as FFmpeg sends them.
//!
//! Oracles: FFmpeg on the source clip (decoded pictures' framemd5; its own ADTS framing of the
//! AAC), tshark's RTSP dissection. Needs root, ffmpeg, tcpdump, tshark.

use crate::common;

use std::path::{Path, PathBuf};

use common::media::{
    make_clip, md5s, packet_md5s, picture_md5s, replay_sender, run, video_fingerprint, video_packet_times,
};
use serde_json::Value;

const LIID: &str = "LIID-RTSP";

/// An RTSP RECORD of WORK/src.mp4 (tests/media/rtsp-session.sh over `transport`, with `env`),
/// replayed under one warrant on the client.
struct Recorded {
    work: tempfile::TempDir,
    _case: tempfile::TempDir,
    root: PathBuf,
}

fn recorded(work: tempfile::TempDir, transport: &str, env: &[(&str, &str)]) -> Recorded {
    common::media::session("rtsp-session.sh", &[work.path().to_str().unwrap(), transport], env);
    let (case, root) = replay_sender(&work.path().join("cap.pcap"), LIID);
    Recorded { work, _case: case, root }
}

impl Recorded {
    fn pcap(&self) -> PathBuf {
        self.work.path().join("cap.pcap")
    }
    fn src(&self) -> PathBuf {
        self.work.path().join("src.mp4")
    }
    fn iri(&self) -> Vec<Value> {
        common::json_lines(&self.root.join(LIID).join("iri.jsonl"))
    }
    fn objects(&self) -> Vec<Value> {
        common::json_lines(&self.root.join(LIID).join("objects.jsonl"))
    }
    /// The file of the stream object whose name ends in `ext`.
    fn file(&self, ext: &str) -> PathBuf {
        let objects = self.objects();
        let o = objects
            .iter()
            .find(|o| o["name"].as_str().is_some_and(|n| n.ends_with(ext)))
            .unwrap_or_else(|| panic!("no {ext}: {objects:?}"));
        assert_eq!((o["kind"].as_str(), o["protocol"].as_str()), (Some("stream"), Some("rtp")));
        self.root.join(LIID).join("objects").join(o["sha256"].as_str().unwrap())
    }
}

/// The MD5 of each packet of `file` as FFmpeg reads it (`-c copy -f framemd5`).
fn frame_md5s(file: &Path) -> Vec<String> {
    md5s(&["-v", "error", "-i", file.to_str().unwrap(), "-c", "copy", "-f", "framemd5", "-"])
}

/// FFmpeg's own ADTS framing of `src`'s AAC (written into `work`), frame by frame: what AAC
/// rebuilt as ADTS must hold.
fn source_adts_md5s(work: &Path, src: &Path) -> Vec<String> {
    let reference = work.join("ref.aac");
    let args = ["-v", "error", "-i", src.to_str().unwrap(), "-map", "0:a", "-c", "copy", "-f", "adts", "-y"];
    run("ffmpeg", &[&args[..], &[reference.to_str().unwrap()]].concat());
    frame_md5s(&reference)
}

/// A work directory holding the test clip.
fn with_clip() -> tempfile::TempDir {
    let w = tempfile::tempdir().unwrap();
    make_clip(w.path());
    w
}

fn record(transport: &str) {
    let r = recorded(with_clip(), transport, &[]);
    let pcap = r.pcap();
    let root = &r.root;
    let w = &r.work;
    let iri = r.iri();
    let objects = r.objects();

    // Signalling: every request tshark sees, answered 200, in order.
    let requests: Vec<String> =
        run("tshark", &["-r", pcap.to_str().unwrap(), "-Y", "rtsp.request", "-T", "fields", "-e", "rtsp.method"])
            .lines()
            .map(String::from)
            .collect();
    let rtsp: Vec<&Value> = iri.iter().filter(|r| r["event"] == "rtsp").collect();
    let methods: Vec<&str> = rtsp.iter().filter_map(|r| r["method"].as_str()).collect();
    assert_eq!(methods, requests.iter().map(String::as_str).collect::<Vec<_>>());
    let statuses: Vec<u64> =
        run("tshark", &["-r", pcap.to_str().unwrap(), "-Y", "rtsp.response", "-T", "fields", "-e", "rtsp.status"])
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
    assert_eq!(rtsp.iter().map(|r| r["status"].as_u64().unwrap_or(0)).collect::<Vec<_>>(), statuses);
    assert!(statuses[..statuses.len() - 1].iter().all(|&s| s == 200), "{statuses:?}");
    let announce = rtsp.iter().find(|r| r["method"] == "ANNOUNCE").unwrap();
    assert_eq!(announce["url"], "rtsp://198.51.100.10:8554/cam/live");
    let media: Vec<(String, String)> = announce["media"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["media"].as_str().unwrap().to_string(), m["encoding"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(media, [("video".into(), "H264".into()), ("audio".into(), "MPEG4-GENERIC".into())]);
    let setups: Vec<&&Value> = rtsp.iter().filter(|r| r["method"] == "SETUP").collect();
    assert_eq!(setups.len(), 2);
    let want = if transport == "tcp" { "interleaved=" } else { "server_port=" };
    assert!(setups.iter().all(|s| s["transport"].as_str().unwrap().contains(want)), "{setups:?}");

    // The media: H.264 whose parameter sets came from the SDP decodes to the source's pictures.
    let path = |ext: &str| -> PathBuf {
        let o = objects
            .iter()
            .find(|o| o["name"].as_str().is_some_and(|n| n.ends_with(ext)))
            .unwrap_or_else(|| panic!("no {ext}: {objects:?}"));
        assert_eq!((o["kind"].as_str(), o["protocol"].as_str()), (Some("stream"), Some("rtp")));
        root.join(LIID).join("objects").join(o["sha256"].as_str().unwrap())
    };
    let src = w.path().join("src.mp4");
    let pictures = |f: &Path| picture_md5s(f);
    let want = pictures(&src);
    assert_eq!(want.len(), 150);
    let mkv = path(".mkv");
    assert!(pictures(&mkv) == want, "the source's 150 pictures");
    // Its pictures fingerprinted as FFmpeg's own Annex B of the source gives them, so that a
    // clip found in an image is known again in the stream (`context.video`); named by content.
    let mkv_object = objects.iter().find(|o| o["name"].as_str().is_some_and(|n| n.ends_with(".mkv"))).unwrap();
    let (sha, frames) = video_fingerprint(&src, "h264");
    assert_eq!(
        (mkv_object["context"]["video"]["sha256"].as_str(), mkv_object["context"]["video"]["frames"].as_u64()),
        (Some(sha.as_str()), Some(frames))
    );
    assert_eq!(mkv_object["format"]["format"], "matroska");
    // At the source's times (RTP timestamps kept), and as the source's packets.
    let times = |f: &Path| video_packet_times(f);
    assert_eq!(times(&mkv), times(&src));
    let packets = |f: &Path| packet_md5s(f, "v");
    assert!(packets(&mkv) == packets(&src), "the source's H.264 packets");
    // AAC as ADTS frames: FFmpeg's own ADTS framing of the source's packets.
    let want = source_adts_md5s(w.path(), &src);
    let got = frame_md5s(&path(".aac"));
    assert!(got.len() > 250 && got[..] == want[..got.len()], "{} of {} AAC frames", got.len(), want.len());

    let rtp: Vec<&Value> = iri.iter().filter(|r| r["event"] == "rtp" && r["what"] == "stream-end").collect();
    let video = rtp.iter().find(|r| r["codec"] == "h264").unwrap();
    assert_eq!(video["clock_rate_assumed"], false, "the SDP said 90000");
    let m = &video["media"];
    assert_eq!((m["width"].as_u64(), m["height"].as_u64(), m["frames"].as_u64()), (Some(320), Some(240), Some(150)));
    let audio = rtp.iter().find(|r| r["codec"] == "aac").unwrap();
    assert_eq!(audio["clock_rate"], 44100);
    assert_eq!(audio["media"]["frames"].as_u64(), Some(got.len() as u64));
    assert_eq!(audio["stats"]["lost"], 0);
}

#[test]
fn rtsp_record_with_rtp_over_udp_is_followed_to_its_negotiated_ports() {
    record("udp");
}

#[test]
fn rtsp_record_with_rtp_interleaved_in_the_connection() {
    record("tcp");
}

#[test]
fn frames_whose_packets_were_lost_are_left_out_not_spliced() {
    // The client's link drops every 12th video RTP packet from the 6th (the listener gives the
    // first stream server ports 5000-5001).
    let r = recorded(with_clip(), "udp", &[("NFT_DROP", "udp dport 5000 numgen inc mod 12 == 5")]);
    let pcap = r.pcap();
    let mkv = r.file(".mkv");
    let src = r.src();
    // (packet MD5, presentation time) of each H.264 packet.
    let packets = |f: &Path| -> Vec<(String, String)> {
        let times = video_packet_times(f);
        let sums = packet_md5s(f, "v");
        sums.into_iter().zip(times).collect()
    };
    let want = packets(&src);
    let got = packets(&mkv);
    assert!(got.len() < want.len(), "{} of {}", got.len(), want.len());
    // Every frame written is the source's frame at the source's time, in order: a subsequence.
    let mut it = want.iter();
    for g in &got {
        assert!(it.any(|w| w == g), "frame {g:?} is not the source's, or out of order");
    }
    // IRI: the frames written; those known damaged plus the packets lost between frames
    // account for every frame left out; the packets lost are those tshark sees missing.
    let iri = r.iri();
    let video = iri.iter().find(|r| r["event"] == "rtp" && r["what"] == "stream-end" && r["codec"] == "h264").unwrap();
    let m = &video["media"];
    assert_eq!(m["frames"].as_u64(), Some(got.len() as u64));
    let left_out = (want.len() - got.len()) as u64;
    let damaged = m["lost_frames"].as_u64().unwrap();
    let between = m["lost_packets_between_frames"].as_u64().unwrap();
    assert!(damaged <= left_out && left_out <= damaged + between, "{left_out} left out: {video}");
    let seqs: Vec<u32> = run(
        "tshark",
        &[
            "-r",
            pcap.to_str().unwrap(),
            "-d",
            "udp.port==5000,rtp",
            "-Y",
            "udp.dstport==5000 && rtp",
            "-T",
            "fields",
            "-e",
            "rtp.seq",
        ],
    )
    .lines()
    .map(|l| l.parse().unwrap())
    .collect();
    let span = seqs.last().unwrap().wrapping_sub(seqs[0]) as u64 + 1;
    let missing = span - seqs.len() as u64;
    assert!(missing >= 10, "{missing}");
    assert_eq!(video["stats"]["lost"].as_u64(), Some(missing));
}

#[test]
fn rtsp_play_from_gstreamers_server_gives_the_served_media() {
    // DESCRIBE (the SDP in the server's answer), SETUP per track with client ports, PLAY,
    // TEARDOWN: the RTP comes from the server to the target, as a viewer receives it.
    let w = with_clip();
    common::media::session("rtsp-play-session.sh", &[w.path().to_str().unwrap()], &[]);
    let (_case, root) = replay_sender(&w.path().join("cap.pcap"), LIID);
    let r = Recorded { work: w, _case, root };
    let pcap = r.pcap();
    let requests: Vec<String> =
        run("tshark", &["-r", pcap.to_str().unwrap(), "-Y", "rtsp.request", "-T", "fields", "-e", "rtsp.method"])
            .lines()
            .map(String::from)
            .collect();
    assert_eq!(requests, ["OPTIONS", "DESCRIBE", "SETUP", "SETUP", "PLAY", "TEARDOWN"]);
    let iri = r.iri();
    let methods: Vec<&str> = iri.iter().filter(|e| e["event"] == "rtsp").filter_map(|e| e["method"].as_str()).collect();
    assert_eq!(methods, requests.iter().map(String::as_str).collect::<Vec<_>>());
    let describe = iri.iter().find(|e| e["method"] == "DESCRIBE").unwrap();
    let encodings: Vec<&str> =
        describe["media"].as_array().unwrap().iter().filter_map(|m| m["encoding"].as_str()).collect();
    assert_eq!(encodings, ["H264", "MPEG4-GENERIC"]);
    // Two files, both from the server: FFmpeg's NAT-opening empty packets open nothing.
    let objects: Vec<Value> = r.objects().into_iter().filter(|o| o["protocol"] == "rtp").collect();
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert!(objects.iter().all(|o| o["direction"] == "resp"), "{objects:?}");
    let src = r.src();
    let pictures = picture_md5s(&src);
    assert_eq!(pictures.len(), 150);
    assert!(picture_md5s(&r.file(".mkv")) == pictures, "the served clip's 150 pictures");
    let (want, got) = (source_adts_md5s(r.work.path(), &src), frame_md5s(&r.file(".aac")));
    // GStreamer's demuxer applies the MP4's edit list: the encoder's priming frame is not sent.
    assert!(
        got.len() > 250 && got[..] == want[1..=got.len()],
        "{} of {} AAC frames, from the second",
        got.len(),
        want.len()
    );
}

#[test]
fn aac_in_latm_over_rtsp_becomes_adts_with_the_sources_frames() {
    // `-rtpflags latm`: the AAC goes as MP4A-LATM (RFC 6416), its config only in the SDP.
    let r = recorded(with_clip(), "udp", &[("CODEC_ARGS", "-c copy -rtpflags latm")]);
    let iri = r.iri();
    let announce = iri.iter().find(|e| e["event"] == "rtsp" && e["method"] == "ANNOUNCE").unwrap();
    assert!(announce["media"].as_array().unwrap().iter().any(|m| m["encoding"] == "MP4A-LATM"), "{announce}");
    let adts = r.file(".aac");
    let src = r.src();
    let want = source_adts_md5s(r.work.path(), &src);
    let got = frame_md5s(&adts);
    // Every AAC frame of the source, in order (the sender may stop before its last ones).
    assert!(got.len() > 250 && got[..] == want[..got.len()], "{} of {} AAC frames", got.len(), want.len());
    let end =
        iri.iter().find(|e| e["event"] == "rtp" && e["what"] == "stream-end" && e["codec"] == "aac_latm").unwrap();
    assert_eq!(
        (end["media"]["frames"].as_u64(), end["media"]["lost_frames"].as_u64()),
        (Some(got.len() as u64), Some(0))
    );
}

#[test]
fn opus_over_rtsp_becomes_matroska_with_the_encoders_packets() {
    // The client encodes the audio to Opus on the way (libopus, 48 kb/s); FFmpeg's own encoding
    // of the same source with the same options is the reference (libopus is deterministic).
    let r = recorded(with_clip(), "udp", &[("CODEC_ARGS", "-c:v copy -c:a libopus -b:a 48k")]);
    let w = &r.work;
    let mka = r.file(".mka");
    let reference = w.path().join("ref.mka");
    let src = w.path().join("src.mp4");
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            src.to_str().unwrap(),
            "-vn",
            "-c:a",
            "libopus",
            "-b:a",
            "48k",
            "-f",
            "matroska",
            "-y",
            reference.to_str().unwrap(),
        ],
    );
    let want = frame_md5s(&reference);
    assert!(want.len() > 290, "{}", want.len());
    assert!(frame_md5s(&mka) == want, "the encoder's Opus packets");
    let probe = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,sample_rate,channels",
            "-of",
            "csv=p=0",
            mka.to_str().unwrap(),
        ],
    );
    assert_eq!(probe.trim(), "opus,48000,2");
    let iri = r.iri();
    let opus = iri.iter().find(|r| r["event"] == "rtp" && r["what"] == "stream-end" && r["codec"] == "opus").unwrap();
    assert_eq!((opus["clock_rate"].as_u64(), opus["media"]["frames"].as_u64()), (Some(48000), Some(want.len() as u64)));
}

#[test]
fn h265_over_rtsp_becomes_matroska_with_the_sources_packets() {
    // The clip re-encoded to H.265 (libx265), sent as is: the VPS/SPS/PPS only in the SDP
    // (sprop-vps, sprop-sps, sprop-pps).
    let w = with_clip();
    let h264 = w.path().join("h264.mp4");
    std::fs::rename(w.path().join("src.mp4"), &h264).unwrap();
    let src = w.path().join("src.mp4");
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            h264.to_str().unwrap(),
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error",
            "-g",
            "25",
            "-c:a",
            "copy",
            "-y",
            src.to_str().unwrap(),
        ],
    );
    let r = recorded(w, "udp", &[]);
    let mkv = r.file(".mkv");
    let packets = |f: &Path| packet_md5s(f, "v");
    let pictures = |f: &Path| picture_md5s(f);
    let want = packets(&src);
    assert_eq!(want.len(), 150);
    assert!(packets(&mkv) == want, "the source's H.265 packets");
    assert!(pictures(&mkv) == pictures(&src), "the source's pictures");
    let probe = run(
        "ffprobe",
        &["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", mkv.to_str().unwrap()],
    );
    assert_eq!(probe.trim(), "hevc,320,240");
    let o = r.objects().into_iter().find(|o| o["name"].as_str().is_some_and(|n| n.ends_with(".mkv"))).unwrap();
    let (sha, frames) = video_fingerprint(&src, "hevc");
    assert_eq!(
        (
            o["context"]["video"]["codec"].as_str(),
            o["context"]["video"]["sha256"].as_str(),
            o["context"]["video"]["frames"].as_u64()
        ),
        (Some("hevc"), Some(sha.as_str()), Some(frames))
    );
    let iri = r.iri();
    let v = iri.iter().find(|r| r["event"] == "rtp" && r["what"] == "stream-end" && r["codec"] == "hevc").unwrap();
    let m = &v["media"];
    assert_eq!(
        (m["width"].as_u64(), m["height"].as_u64(), m["frames"].as_u64(), m["keyframes"].as_u64()),
        (Some(320), Some(240), Some(150), Some(6))
    );
}
