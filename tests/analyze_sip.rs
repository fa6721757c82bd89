//! A SIP call between real SIPp user agents (tests/media/sip-call.sh: two network namespaces,
//! a veth pair, tcpdump on the callee's end), the caller streaming a tone as G.711 RTP to the
//! port the callee's SDP answer named. Replayed through `tapir replay`.
//!
//! Oracles: tshark's SIP dissection (methods, statuses, Call-ID) and its RTP payloads; FFmpeg's
//! u-law encoding of the tone. Needs root, sipp (sip-tester), ffmpeg, tcpdump, tshark.

use crate::common;

use common::media::{replay_sender, run};
use serde_json::Value;

const LIID: &str = "LIID-SIP";

#[test]
fn a_sip_call_gives_its_signalling_as_iri_and_its_audio_as_a_wav() {
    call_gives_iri_and_wav(&[]);
}

/// The same call with its signalling over TCP (SIPp `-t t1`): one connection carries every
/// message, which tapir cuts by their Content-Length, so the IRI and the WAV are the UDP call's.
/// Before, the connection was a nameless byte stream and the call had no SIP IRI at all.
#[test]
fn a_sip_call_over_tcp_gives_the_same_iri_and_wav() {
    call_gives_iri_and_wav(&[("TRANSPORT", "tcp")]);
}

fn call_gives_iri_and_wav(env: &[(&str, &str)]) {
    let w = tempfile::tempdir().unwrap();
    let tone = w.path().join("tone.wav");
    let tone_s = tone.to_str().unwrap();
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=8000",
            "-t",
            "3",
            "-c:a",
            "pcm_mulaw",
            "-y",
            tone_s,
        ],
    );
    common::media::session("sip-call.sh", &[w.path().to_str().unwrap()], env);
    let pcap = w.path().join("cap.pcap");
    let p = pcap.to_str().unwrap();
    let over_tcp = run("tshark", &["-r", p, "-Y", "sip && tcp", "-T", "fields", "-e", "frame.number"]);
    assert_eq!(over_tcp.lines().count() > 0, !env.is_empty(), "SIP over TCP: {over_tcp}");
    let (_case, root) = replay_sender(&pcap, LIID);
    let iri = common::json_lines(&root.join(LIID).join("iri.jsonl"));

    // Signalling: tshark's messages, in order.
    let want: Vec<String> = run(
        "tshark",
        &["-r", p, "-Y", "sip", "-T", "fields", "-e", "sip.Method", "-e", "sip.Status-Code", "-e", "sip.Call-ID"],
    )
    .lines()
    .map(|l| l.split('\t').filter(|f| !f.is_empty()).collect::<Vec<_>>().join(" "))
    .collect();
    let sip: Vec<&Value> = iri.iter().filter(|r| r["event"] == "sip").collect();
    let got: Vec<String> = sip
        .iter()
        .map(|r| {
            let what = r["method"].as_str().map(String::from).unwrap_or_else(|| r["status"].to_string());
            format!("{what} {}", r["call_id"].as_str().unwrap())
        })
        .collect();
    assert_eq!(got, want);
    assert!(want.iter().any(|m| m.starts_with("INVITE")) && want.iter().any(|m| m.starts_with("BYE")), "{want:?}");
    let invite = sip.iter().find(|r| r["method"] == "INVITE").unwrap();
    assert_eq!(invite["media"][0], "audio 198.51.100.7:7000 PCMU/8000");
    let answer = sip.iter().find(|r| r["status"] == 200 && r["media"].is_array()).unwrap();
    assert_eq!(answer["media"][0], "audio 198.51.100.10:6000 PCMU/8000");

    // Media: the flow the SDP announced, its RTP payloads (tshark's) as the WAV's samples.
    let payloads: Vec<u8> =
        run("tshark", &["-r", p, "-d", "udp.port==6000,rtp", "-Y", "rtp", "-T", "fields", "-e", "rtp.payload"])
            .lines()
            .flat_map(|l| hex::decode(l.replace(':', "")).unwrap())
            .collect();
    let objects = common::json_lines(&root.join(LIID).join("objects.jsonl"));
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0]["protocol"], "rtp");
    let wav = std::fs::read(root.join(LIID).join("objects").join(objects[0]["sha256"].as_str().unwrap())).unwrap();
    assert!(wav[46..] == payloads[..], "the RTP payloads, in order");
    // And what was sent is the tone (SIPp streams the WAV file's bytes after a 44-byte header).
    let ulaw = w.path().join("tone.ul");
    run("ffmpeg", &["-v", "error", "-i", tone_s, "-f", "mulaw", "-y", ulaw.to_str().unwrap()]);
    let tone = std::fs::read(&ulaw).unwrap();
    assert!(wav[46..].windows(tone.len()).any(|win| win == &tone[..]), "the tone is in the recording");
    let rtp = iri.iter().find(|r| r["event"] == "rtp" && r["what"] == "stream-end").unwrap();
    assert_eq!((rtp["codec"].as_str(), rtp["clock_rate_assumed"].as_bool()), (Some("pcm_mulaw"), Some(false)));
    assert_eq!(rtp["stats"]["lost"], 0);
}
