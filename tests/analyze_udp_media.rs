//! Media in UDP datagrams from a real sender (FFmpeg) between two network namespaces
//! (tests/media/udp-session.sh), replayed through `tapir replay`.
//!
//! Oracles: FFmpeg's own muxer output for the same source (the transport stream tapir writes
//! must be byte for byte what `ffmpeg -c copy -f mpegts` writes), ffprobe's frame counts and
//! stream list, tshark's UDP payloads. Needs root, ffmpeg, tcpdump, socat, tshark, editcap.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::media::{make_clip, packet_md5s, picture_md5s, replay_sender, run};
use serde_json::Value;

const LIID: &str = "LIID-MEDIA";

/// Runs `sender` (an FFmpeg command line, in WORK) through tests/media/udp-session.sh.
fn session(sender: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    make_clip(d.path());
    let mut args = vec![d.path().to_str().unwrap()];
    args.extend(sender);
    common::media::session("udp-session.sh", &args, &[]);
    d
}

/// A 4 s 440 Hz tone sent by FFmpeg as G.711 u-law RTP in 160-sample packets to port 5004
/// (`drop`: an nftables expression the sender's link drops), and FFmpeg's own u-law encoding
/// of the same tone (WORK/src.ul), the oracle.
fn g711_session(drop: Option<&str>) -> (tempfile::TempDir, Vec<u8>) {
    let d = tempfile::tempdir().unwrap();
    let work = d.path().to_str().unwrap();
    let tone = [
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=8000",
        "-t",
        "4",
        "-af",
        "asetnsamples=n=160",
        "-c:a",
        "pcm_mulaw",
    ];
    let mut args = vec![work, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re"];
    args.extend(tone);
    args.extend(["-f", "rtp", "rtp://198.51.100.10:5004"]);
    let env: Vec<(&str, &str)> = drop.map(|e| ("NFT_DROP", e)).into_iter().collect();
    common::media::session("udp-session.sh", &args, &env);
    let ulaw = d.path().join("src.ul");
    let mut args = vec!["-v", "error"];
    args.extend(tone);
    args.extend(["-f", "mulaw", "-y", ulaw.to_str().unwrap()]);
    run("ffmpeg", &args);
    let source = std::fs::read(&ulaw).unwrap();
    assert_eq!(source.len(), 32000);
    (d, source)
}

struct Case {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Case {
    /// The stream-end records of `event` (each stream also has a stream-begin).
    fn iri(&self, event: &str) -> Vec<Value> {
        common::json_lines(&self.root.join(LIID).join("iri.jsonl"))
            .into_iter()
            .filter(|r| r["event"] == event && r["what"] == "stream-end")
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
    let (d, root) = replay_sender(pcap, LIID);
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
    for l in out.lines().map(|l| l.trim_end_matches(',')).filter(|l| !l.is_empty()) {
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
    // Its pictures are the clip's (a clip found in an image is known again in this stream).
    let (sha, frames) = common::media::video_fingerprint(&w.path().join("src.mp4"), "h264");
    assert_eq!(
        (obj["context"]["video"]["sha256"].as_str(), obj["context"]["video"]["frames"].as_u64()),
        (Some(sha.as_str()), Some(frames))
    );
    let ends = case.iri("mpegts");
    assert_eq!(ends.len(), 1);
    let m = &ends[0]["media"];
    assert_eq!((m["object"].clone(), m["sha256"].clone()), (obj["id"].clone(), obj["sha256"].clone()));
    assert_eq!(m["continuity_errors"], 0);
    assert_eq!(m["packets"].as_u64(), Some(std::fs::metadata(&reference).unwrap().len() / 188));
    // The PIDs and codecs ffprobe reads from the same stream.
    let streams = run(
        "ffprobe",
        &["-v", "error", "-show_entries", "stream=id,codec_name", "-of", "csv=p=0", reference.to_str().unwrap()],
    );
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
    let payloads = run("tshark", &["-r", holed.to_str().unwrap(), "-T", "fields", "-e", "udp.payload"]);
    let seen: Vec<u8> = payloads.lines().flat_map(|l| hex::decode(l.replace(':', "")).unwrap()).collect();
    let case = replay(&holed);
    let (obj, ts) = case.object("udp");
    let bytes = std::fs::read(&ts).unwrap();
    assert!(bytes == seen, "the datagrams the tap saw, in order");
    assert!(obj["context"].get("video").is_none(), "pictures were lost: no fingerprint claims them");
    let m = &case.iri("mpegts")[0]["media"];
    assert!(m["continuity_errors"].as_u64().unwrap() >= 7, "{m}");
    assert_eq!(m["continuity_errors"].as_u64(), Some(continuity_breaks(&bytes)));
}

/// RTP sequence numbers of the capture's RTP packets to `port`, as tshark decodes them.
fn tshark_rtp_seqs(pcap: &Path, port: u16) -> Vec<u32> {
    let out = run(
        "tshark",
        &[
            "-r",
            pcap.to_str().unwrap(),
            "-d",
            &format!("udp.port=={port},rtp"),
            "-Y",
            "rtp",
            "-T",
            "fields",
            "-e",
            "rtp.seq",
        ],
    );
    out.lines().map(|l| l.trim().parse().unwrap()).collect()
}

/// tshark's RTP stream analysis of `port`: (packets, lost, max jitter ms).
fn tshark_rtp_stream(pcap: &Path, port: u16) -> (u64, u64, f64) {
    let out = run(
        "tshark",
        &["-r", pcap.to_str().unwrap(), "-d", &format!("udp.port=={port},rtp"), "-q", "-z", "rtp,streams"],
    );
    let row = out.lines().find(|l| l.contains("198.51.100.7")).unwrap_or_else(|| panic!("{out}"));
    // ... SSRC Payload Pkts Lost (pct) MinDelta MeanDelta MaxDelta MinJitter MeanJitter MaxJitter [X]
    let f: Vec<&str> = row.split_whitespace().collect();
    let payload = f.iter().position(|x| x.starts_with("0x")).unwrap() + 1;
    let pkts = f[payload + 1].parse().unwrap();
    let lost = f[payload + 2].parse().unwrap();
    let max_jitter = f[payload + 9].parse().unwrap();
    (pkts, lost, max_jitter)
}

#[test]
fn g711_over_rtp_becomes_a_wav_whose_lost_packets_are_silence() {
    // 20 ms packets (160 samples); the sender's link drops every 50th from the 8th: 2%.
    let (d, source) = g711_session(Some("udp dport 5004 numgen inc mod 50 == 7"));
    let pcap = d.path().join("cap.pcap");

    let seqs = tshark_rtp_seqs(&pcap, 5004);
    let first = seqs[0];
    let present: Vec<usize> = seqs.iter().map(|s| (s.wrapping_sub(first) & 0xffff) as usize).collect();
    let missing: Vec<usize> = (0..200).filter(|i| !present.contains(i)).collect();
    assert_eq!(missing, [7, 57, 107, 157], "the packets nftables dropped, by tshark");

    let case = replay(&pcap);
    let (obj, wav) = case.object("rtp");
    assert_eq!(obj["name"].as_str().map(|n| n.ends_with(".wav")), Some(true));
    let bytes = std::fs::read(&wav).unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    let data = &bytes[46..];
    assert_eq!(data.len(), source.len(), "timing kept: silence stands in for what was lost");
    for (i, (got, want)) in data.chunks(160).zip(source.chunks(160)).enumerate() {
        if missing.contains(&i) {
            assert!(got.iter().all(|&b| b == 0xff), "packet {i} lost: u-law silence");
        } else {
            assert_eq!(got, want, "packet {i}");
        }
    }
    let probe = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,sample_rate:format=duration",
            "-of",
            "csv=p=0",
            wav.to_str().unwrap(),
        ],
    );
    assert_eq!(probe.split_whitespace().collect::<Vec<_>>(), ["pcm_mulaw,8000", "4.000000"]);

    let ev = case.iri("rtp");
    assert_eq!(ev.len(), 1, "{ev:?}");
    let e = &ev[0];
    // Said when the stream started too, long before its end.
    let begins: Vec<Value> = common::json_lines(&case.root.join(LIID).join("iri.jsonl"))
        .into_iter()
        .filter(|r| r["event"] == "rtp" && r["what"] == "stream-begin")
        .collect();
    assert_eq!(begins.len(), 1);
    assert_eq!((begins[0]["ssrc"].clone(), begins[0]["codec"].as_str()), (e["ssrc"].clone(), Some("pcm_mulaw")));
    assert!(begins[0]["ts"].as_str() < e["ts"].as_str(), "{} then {}", begins[0]["ts"], e["ts"]);
    assert_eq!(
        (e["payload_type"].as_u64(), e["codec"].as_str(), e["clock_rate"].as_u64()),
        (Some(0), Some("pcm_mulaw"), Some(8000))
    );
    let silence: Vec<(u64, u64)> = serde_json::from_value(e["media"]["silence"].clone()).unwrap();
    assert_eq!(silence, missing.iter().map(|&i| (i as u64 * 160, 160)).collect::<Vec<_>>());
    // Loss and jitter as tshark's RTP analysis has them.
    let (_, lost, max_jitter) = tshark_rtp_stream(&pcap, 5004);
    assert_eq!(e["stats"]["lost"].as_u64(), Some(lost));
    assert_eq!(lost, 4);
    let ours = e["stats"]["max_jitter_ms"].as_f64().unwrap();
    assert!((ours - max_jitter).abs() < 0.01, "max jitter: tapir {ours}, tshark {max_jitter}");
}

#[test]
fn h264_and_mpeg_ts_over_rtp_become_files_with_the_sources_frames() {
    // Video as RFC 6184 H.264 (parameter sets in band before each key frame), audio as MPEG-TS
    // over RTP (RFC 2250), from one FFmpeg.
    let w = session(&[
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-re",
        "-i",
        "src.mp4",
        "-map",
        "0:v",
        "-c",
        "copy",
        "-bsf:v",
        "h264_mp4toannexb,dump_extra=freq=keyframe",
        "-f",
        "rtp",
        "rtp://198.51.100.10:5006",
        "-map",
        "0:a",
        "-c",
        "copy",
        "-f",
        "rtp_mpegts",
        "rtp://198.51.100.10:5002",
    ]);
    let src = w.path().join("src.mp4");
    let case = replay(&w.path().join("cap.pcap"));
    let objects: Vec<Value> = common::json_lines(&case.root.join(LIID).join("objects.jsonl"))
        .into_iter()
        .filter(|o| o["protocol"] == "rtp")
        .collect();
    assert_eq!(objects.len(), 2, "{objects:?}");
    let path = |name_end: &str| {
        let o = objects.iter().find(|o| o["name"].as_str().unwrap().ends_with(name_end)).unwrap();
        case.root.join(LIID).join("objects").join(o["sha256"].as_str().unwrap())
    };
    // Decoded frame by decoded frame, the source's pictures (framemd5 of decoded video).
    let decoded = |f: &Path| picture_md5s(f);
    let h264 = path(".mkv");
    let want = decoded(&src);
    assert_eq!(want.len(), 150);
    assert!(decoded(&h264) == want, "tapir's H.264 decodes to the source's 150 pictures");
    // The audio: every AAC packet of the source, from the transport stream.
    let ts = path("-mpegts.ts");
    let packets = |f: &Path| packet_md5s(f, "a");
    // The TS muxer frames AAC as ADTS: the reference is FFmpeg's own TS of the source's audio.
    let reference = w.path().join("audio.ts");
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            src.to_str().unwrap(),
            "-map",
            "0:a",
            "-c",
            "copy",
            "-f",
            "mpegts",
            "-y",
            reference.to_str().unwrap(),
        ],
    );
    let want = packets(&reference);
    let got = packets(&ts);
    // FFmpeg's rtp_mpegts does not send all its TS muxer holds at the end: the
    // file is what the wire carried (tshark's RTP payloads), and that is the source's packets
    // up to there.
    let wire = run(
        "tshark",
        &[
            "-r",
            w.path().join("cap.pcap").to_str().unwrap(),
            "-d",
            "udp.port==5002,rtp",
            "-Y",
            "udp.dstport==5002 && rtp",
            "-T",
            "fields",
            "-e",
            "rtp.payload",
        ],
    );
    let wire: Vec<u8> = wire.lines().flat_map(|l| hex::decode(l.replace(':', "")).unwrap()).collect();
    assert!(std::fs::read(&ts).unwrap() == wire, "the RTP payloads tshark reads, in order");
    // (The last one is cut where the sender stopped.)
    let whole = got.len() - 1;
    assert!(whole > 240 && got[..whole] == want[..whole], "{} of the source's {} AAC packets", got.len(), want.len());

    let ev = case.iri("rtp");
    let video = ev.iter().find(|e| e["codec"] == "h264").unwrap();
    let m = &video["media"];
    assert_eq!((m["width"].as_u64(), m["height"].as_u64()), (Some(320), Some(240)));
    assert_eq!(
        (m["frames"].as_u64(), m["keyframes"].as_u64(), m["lost_frames"].as_u64()),
        (Some(150), Some(6), Some(0))
    );
    assert_eq!(m["frame_rate"].as_f64(), Some(25.0));
    assert_eq!(video["clock_rate_assumed"], true, "dynamic payload type, no SDP");
    assert_eq!(video["stats"]["lost"], 0);
    let audio = ev.iter().find(|e| e["codec"] == "mpegts").unwrap();
    assert_eq!(audio["media"]["mpegts"]["streams"][0]["codec"], "aac");
    assert_eq!(audio["media"]["mpegts"]["continuity_errors"], 0);
}

#[test]
fn rtp_announced_by_an_sdp_posted_over_http_decodes_with_its_parameter_sets() {
    // The sender POSTs its SDP (FFmpeg's own, made beforehand for the same stream: sprop-
    // parameter-sets, the only place the SPS/PPS are, as the MP4 holds them out of band), then
    // streams the clip's H.264 as RTP with -c copy. Without the SDP nothing can decode it:
    // the same capture without its HTTP gives no file, and IRI says why.
    let d = tempfile::tempdir().unwrap();
    make_clip(d.path());
    // FFmpeg writes the SDP of the stream while it sends one frame of it over loopback; the
    // address in it is then the receiver's.
    let w = d.path();
    let local = w.join("local.sdp");
    let src = w.join("src.mp4");
    let q =
        ["-hide_banner", "-nostdin", "-loglevel", "error", "-i", src.to_str().unwrap(), "-map", "0:v", "-c", "copy"];
    let out = ["-frames:v", "1", "-f", "rtp", "-sdp_file", local.to_str().unwrap(), "rtp://127.0.0.1:5004"];
    run("ffmpeg", &[&q[..], &out[..]].concat());
    let sdp = std::fs::read_to_string(&local).unwrap().replace("127.0.0.1", "198.51.100.10");
    std::fs::write(w.join("stream.sdp"), &sdp).unwrap();
    let sender = "curl -sS -o answer.sdp -H 'Content-Type: application/sdp' --data-binary @stream.sdp \
                  http://198.51.100.10:8080/whip && sleep 0.5 && \
                  ffmpeg -hide_banner -nostdin -loglevel error -i src.mp4 -map 0:v -c copy -f rtp \
                  rtp://198.51.100.10:5004";
    common::media::session("udp-session.sh", &[w.to_str().unwrap(), "sh", "-c", sender], &[("SDP_SERVER", "1")]);
    assert!(sdp.contains("sprop-parameter-sets="), "{sdp}");
    assert_eq!(std::fs::read_to_string(w.join("answer.sdp")).unwrap(), sdp, "the server's answer");
    let case = replay(&w.join("cap.pcap"));
    let http: Vec<Value> = common::json_lines(&case.root.join(LIID).join("iri.jsonl"))
        .into_iter()
        .filter(|r| r["event"] == "http")
        .collect();
    assert_eq!(http.len(), 1, "{http:?}");
    assert_eq!(http[0]["sdp_media"], serde_json::json!(["video 198.51.100.10:5004 H264/90000"]));
    let (o, mkv) = case.object("rtp");
    assert_eq!(o["format"]["format"], "matroska");
    assert!(picture_md5s(&mkv) == picture_md5s(&src), "the source's 150 pictures");
    let ev = case.iri("rtp");
    let video = ev.iter().find(|e| e["what"] == "stream-end").unwrap();
    assert_eq!(
        (video["codec"].as_str(), video["clock_rate_assumed"].as_bool()),
        (Some("h264"), Some(false)),
        "{video}"
    );

    let udp_only = w.join("udp-only.pcap");
    run("tshark", &["-r", w.join("cap.pcap").to_str().unwrap(), "-Y", "udp", "-w", udp_only.to_str().unwrap()]);
    let case = replay(&udp_only);
    let ev = case.iri("rtp");
    assert!(ev[0]["note"].as_str().is_some_and(|n| n.starts_with("no H.264 parameter sets")), "{ev:?}");
    let objects = common::json_lines(&case.root.join(LIID).join("objects.jsonl"));
    assert!(objects.iter().all(|o| o["protocol"] != "rtp"), "{objects:?}");
}

/// Rewrites a classic pcap with frames `i` and `i + 1` swapped for every `i` in `at`
/// (python3 here, not tapir's reader).
fn swap_frames(pcap: &Path, out: &Path, at: &[usize]) {
    let script = r#"
import struct, sys
src, dst, at = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3].split(',')]
data = open(src, 'rb').read()
endian = '<' if data[:4] in (b'\xd4\xc3\xb2\xa1', b'\x4d\x3c\xb2\xa1') else '>'
recs, off = [], 24
while off + 16 <= len(data):
    n = struct.unpack(endian + 'I', data[off + 8:off + 12])[0]
    recs.append(data[off:off + 16 + n]); off += 16 + n
for i in at:
    a, b = recs[i], recs[i + 1]
    # the records keep their places in time: swap the packets, not the timestamps
    recs[i], recs[i + 1] = a[:8] + b[8:], b[:8] + a[8:]
open(dst, 'wb').write(data[:24] + b''.join(recs))
"#;
    let at: Vec<String> = at.iter().map(|i| i.to_string()).collect();
    let o = Command::new("python3")
        .args(["-c", script, pcap.to_str().unwrap(), out.to_str().unwrap(), &at.join(",")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn reordered_rtp_is_put_back_in_sequence() {
    let (d, source) = g711_session(None);

    // Swap 7 pairs of adjacent RTP packets, and move one packet two places later.
    let pcap = d.path().join("cap.pcap");
    let rtp_frames: Vec<usize> = run(
        "tshark",
        &["-r", pcap.to_str().unwrap(), "-Y", "udp.dstport == 5004", "-T", "fields", "-e", "frame.number"],
    )
    .lines()
    .map(|l| l.parse::<usize>().unwrap() - 1)
    .collect();
    let mut at: Vec<usize> = (0..7).map(|k| rtp_frames[20 + 25 * k]).collect();
    at.extend([rtp_frames[190], rtp_frames[191], rtp_frames[192]]);
    let reordered = d.path().join("reordered.pcap");
    swap_frames(&pcap, &reordered, &at);
    let seqs = tshark_rtp_seqs(&reordered, 5004);
    let backwards = seqs.windows(2).filter(|w| (w[1].wrapping_sub(w[0]) & 0xffff) > 0x8000).count();
    assert_eq!(backwards, 8, "tshark sees the sequence go back 8 times");

    let case = replay(&reordered);
    let (_, wav) = case.object("rtp");
    let bytes = std::fs::read(&wav).unwrap();
    assert!(bytes[46..] == source[..], "every sample in its place: nothing late, nothing silent");
    let e = &case.iri("rtp")[0];
    assert_eq!(e["stats"]["reordered"], 8, "{e}");
    assert_eq!(e["stats"]["lost"], 0);
    assert_eq!(e["media"]["late_packets"], 0);
    assert!(e["media"].get("silence").is_none(), "{e}");
}
