//! `replay --workers N`: several pipelines, each over a share of the flows, make the case one
//! pipeline makes.
//!
//! The input is six fixtures replayed together (FTP, HTTP and SMTP of real clients, the VM-image
//! use case with its association events, a lossy capture and VXLAN overlay traffic): about 5800
//! frames, several epochs of the dispatch, two warrants that share the overlay target. Truth
//! that is not tapir's: the CC frames each warrant gets are the frames Wireshark (sharkd)
//! selects from the inputs with the fixtures' own display filters (`selections`), and the objects
//! are compared by `sha256sum` with the files the fixtures' clients sent. Against one worker:
//! the same IRI records (less the numbers each worker hands out: CINs, object ids, sequence
//! numbers), the same objects, the same cross-links. And a sharded case does not depend on
//! thread timing: two runs write the same bytes.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

const FIXTURES: [&str; 6] = ["app/ftp", "app/http", "app/smtp", "app/vmi", "lossy", "vxlan"];

fn pcaps() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcaps")
}

fn expect(f: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(pcaps().join(format!("{f}.expect.json"))).unwrap()).unwrap()
}

const WARRANTS: &str = "[[warrant]]\nliid = \"LIID-A\"\nstart = \"2026-01-01T00:00:00Z\"\nend = \"2028-01-01T00:00:00Z\"\n\
scope = \"iri+cc\"\ntargets = [\"subscriber:joe\", \"ipv4:198.51.100.7\", \"ipv6:2001:db8::7\", \"vni:5001/10.0.0.5\"]\n\n\
[[warrant]]\nliid = \"LIID-B\"\nstart = \"2026-01-01T00:00:00Z\"\nend = \"2028-01-01T00:00:00Z\"\n\
scope = \"iri+cc\"\ntargets = [\"vni:5001/10.0.0.5\"]\n";

fn replay(dir: &Path, name: &str, workers: usize) -> PathBuf {
    let w = dir.join("w.toml");
    std::fs::write(&w, WARRANTS).unwrap();
    let case = dir.join(name);
    let mut cmd = Command::new(TAPIR);
    cmd.arg("replay");
    for f in FIXTURES {
        cmd.arg(pcaps().join(format!("{f}.pcap")));
    }
    cmd.arg("--warrants")
        .arg(&w)
        .arg("--associations")
        .arg(vmi_fixture_events(dir, &expect("app/vmi")).0)
        .arg("--out")
        .arg(&case);
    cmd.args(["-q", "--workers", &workers.to_string()]);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    verify_case(&case);
    case
}

/// The numbers a run hands out per worker, taken out of a record: what is left must be equal
/// whatever the number of workers.
fn unnumbered(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| {
                !["seq", "id", "object", "parent"].contains(&k.as_str())
                    && !k.ends_with("cin")
                    && !k.ends_with("_object")
            });
            // An inspection's report names the image by its number: its digests and size are
            // of numbered bytes (the report itself is compared unnumbered, in `objects`).
            if m.get("kind").is_some_and(|k| k == "report") {
                m.retain(|k, _| !["sha256", "md5", "sha512", "size", "format"].contains(&k.as_str()));
            }
            m.remove("report_sha256");
            m.values_mut().for_each(unnumbered);
        }
        Value::Array(a) => a.iter_mut().for_each(unnumbered),
        _ => {}
    }
}

fn iri(case: &Path, liid: &str) -> Vec<Value> {
    std::fs::read_to_string(case.join(liid).join("iri.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The IRI of a LIID, unnumbered, as a sorted list.
fn iri_unnumbered(case: &Path, liid: &str) -> Vec<String> {
    let mut out: Vec<String> = iri(case, liid)
        .into_iter()
        .map(|mut r| {
            unnumbered(&mut r);
            r.to_string()
        })
        .collect();
    out.sort();
    out
}

/// sha256sum of every object file of a LIID (sorted, with repeats). An inspection's report
/// names the image by its object id, a per-worker number: it is compared as JSON, unnumbered.
fn objects(case: &Path, liid: &str) -> Vec<String> {
    let dir = case.join(liid).join("objects");
    let mut out = Vec::new();
    let mut files = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        match serde_json::from_slice::<Value>(&std::fs::read(&p).unwrap()) {
            Ok(mut v) if v.get("image").is_some() && v.get("inspection").is_some() => {
                unnumbered(&mut v);
                out.push(format!("report {v}"));
            }
            _ => files.push(p),
        }
    }
    out.extend(sha256sums(&files));
    out.sort();
    out
}

/// `sha256sum`'s digest of each of `files`, in order: one run for them all (a run each was
/// 700 processes in this test).
fn sha256sums(files: &[PathBuf]) -> Vec<String> {
    if files.is_empty() {
        return Vec::new();
    }
    let o = Command::new("sha256sum").args(files).output().unwrap();
    assert!(o.status.success(), "sha256sum: {}", String::from_utf8_lossy(&o.stderr));
    let sums: Vec<String> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| l.split_whitespace().next().unwrap().to_string()).collect();
    assert_eq!(sums.len(), files.len());
    sums
}

/// What Wireshark says each warrant must get: frames (time, length) from every input, selected
/// with that fixture's own filter for the warrant, sorted. One sharkd for every question (see
/// [`Sharkd`]): a tshark per fixture and warrant spent much of this test's CPU starting up.
fn selected_by_wireshark(sharkd: &mut Sharkd) -> BTreeMap<&'static str, Vec<String>> {
    let mut out: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for f in FIXTURES {
        let e = expect(f);
        sharkd.load(&pcaps().join(format!("{f}.pcap")));
        for (liid, fixture_liid) in [("LIID-A", "LIID-JOE-0001"), ("LIID-B", "LIID-VM-0002")] {
            let sel = e["selections"].as_array().unwrap().iter().find(|s| s["liid"] == fixture_liid).unwrap();
            // The VM warrant's filter is its own target; the subscriber's warrant here also
            // names the VM (as the fixtures' own JOE filter does where the overlay is in them).
            let filter = match liid {
                "LIID-A" => format!("({}) || (vxlan.vni==5001 && ip.addr==10.0.0.5)", sel["filter"].as_str().unwrap()),
                _ => sel["filter"].as_str().unwrap().to_string(),
            };
            let rows = sharkd.frames(Some(&filter), &["frame.time_epoch", "frame.len"]).expect("short columns");
            out.entry(liid).or_default().extend(rows.into_iter().map(|(_, r)| r.join("|")));
        }
    }
    out.values_mut().for_each(|v| v.sort());
    out
}

/// A LIID's CC frames (time, length), sorted; none without a `cc.pcap`.
fn cc_frames(case: &Path, liid: &str) -> Vec<String> {
    let mut rows = tshark(&case.join(liid).join("cc.pcap"), None, &["frame.time_epoch", "frame.len"]);
    rows.sort();
    rows
}

#[test]
fn two_and_three_workers_make_the_case_one_worker_makes() {
    let d = tempfile::tempdir().unwrap();
    let one = replay(d.path(), "one", 1);
    let two = replay(d.path(), "two", 2);
    let three = replay(d.path(), "three", 3);
    let mut sharkd = Sharkd::spawn();
    let truth = selected_by_wireshark(&mut sharkd);
    assert!(
        truth["LIID-A"].len() > 5000 && truth["LIID-B"].len() > 200,
        "{:?}",
        truth.values().map(Vec::len).collect::<Vec<_>>()
    );

    // The files the fixtures' clients sent, as sha256sum wrote them down.
    let sent: BTreeSet<String> = FIXTURES
        .iter()
        .flat_map(|f| {
            expect(f)["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["sha256"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let found = |case: &Path| -> BTreeSet<String> {
        objects(case, "LIID-A").into_iter().filter(|s| sent.contains(s)).collect()
    };
    let found_one = found(&one);
    assert!(found_one.len() >= 35, "one worker rebuilds the fixtures' uploads: {} of {}", found_one.len(), sent.len());

    for case in [&one, &two, &three] {
        for liid in ["LIID-A", "LIID-B"] {
            let cc = cc_frames(case, liid);
            assert_eq!(cc, truth[liid], "{}: {liid}'s CC is what Wireshark selects", case.display());
        }
        assert_eq!(found(case), found_one, "{}: the same uploads rebuilt", case.display());
        for liid in ["LIID-A", "LIID-B"] {
            assert_eq!(objects(case, liid), objects(&one, liid), "{}: {liid}'s objects", case.display());
            assert_eq!(iri_unnumbered(case, liid), iri_unnumbered(&one, liid), "{}: {liid}'s IRI", case.display());
        }
        // Numbers stay unique within a LIID however many workers hand them out.
        for liid in ["LIID-A", "LIID-B"] {
            let recs = iri(case, liid);
            let begins: Vec<u64> =
                recs.iter().filter(|r| r["event"] == "session-begin").map(|r| r["cin"].as_u64().unwrap()).collect();
            let distinct: BTreeSet<u64> = begins.iter().copied().collect();
            assert_eq!(begins.len(), distinct.len(), "{}: {liid}: a CIN per session", case.display());
            let ids: Vec<u64> =
                recs.iter().filter(|r| r["event"] == "object").map(|r| r["id"].as_u64().unwrap()).collect();
            let distinct: BTreeSet<u64> = ids.iter().copied().collect();
            assert_eq!(ids.len(), distinct.len(), "{}: {liid}: an id per object", case.display());
            assert!(!ids.is_empty() && !begins.is_empty());
        }
        // The cross-links meet records of other workers: the upload the image.create registered,
        // the VM's crontab plan, the mail equal to the outbox message.
        let a = std::fs::read_to_string(case.join("LIID-A/iri.jsonl")).unwrap();
        for link in ["equals_intercepted_upload", "instance.crontab-plan", "equals_artifact"] {
            assert!(a.contains(link), "{}: {link}", case.display());
        }
    }

    // The workers' SHA-512 of every disk image is sha512sum's; other objects have SHA-256 only.
    for case in [&two, &three] {
        let (mut images, mut others) = (0, 0);
        for liid in ["LIID-A", "LIID-B"] {
            let listed = std::fs::read_to_string(case.join(liid).join("objects.jsonl")).unwrap();
            for l in listed.lines() {
                let r: Value = serde_json::from_str(l).unwrap();
                let Some(path) = r["path"].as_str() else { continue };
                let stored = case.join(liid).join(path);
                if !common::disk_image(r["name"].as_str(), &stored) {
                    assert_eq!(r["sha512"], Value::Null, "{}: {liid} {path}", case.display());
                    others += 1;
                    continue;
                }
                let o = Command::new("sha512sum").arg(&stored).output().unwrap();
                let want = String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap().to_string();
                assert_eq!(r["sha512"].as_str(), Some(want.as_str()), "{}: {liid} {path}", case.display());
                images += 1;
            }
        }
        assert!(images > 0 && others > 0, "{}: {images} images, {others} other objects", case.display());
    }

    // The same input and the same number of workers: the same bytes, whatever the threads did.
    let again = replay(d.path(), "two-again", 2);
    for liid in ["LIID-A", "LIID-B"] {
        for f in ["iri.jsonl", "cc.pcap", "objects.jsonl"] {
            assert_eq!(
                std::fs::read(two.join(liid).join(f)).unwrap(),
                std::fs::read(again.join(liid).join(f)).unwrap(),
                "{liid}/{f}"
            );
        }
    }
}

/// A session script of tests/media run in a new directory where `name` holds `len` bytes of no
/// pattern a reassembly could fake (the file a client there sends): the directory, the file
/// and the capture the script wrote.
fn session_sending(script: &str, name: &str, len: u32) -> (tempfile::TempDir, PathBuf, PathBuf) {
    session_sending_with(script, name, len, &[])
}

/// The same with the script's environment set to `env`.
fn session_sending_with(
    script: &str,
    name: &str,
    len: u32,
    env: &[(&str, &str)],
) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let w = tempfile::tempdir().unwrap();
    let sent = w.path().join(name);
    let bytes: Vec<u8> = (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&sent, bytes).unwrap();
    common::media::session(script, &[w.path().to_str().unwrap()], env);
    let pcap = w.path().join("cap.pcap");
    (w, sent, pcap)
}

/// `pcap` replayed under one iri+cc warrant on 198.51.100.7 with 1, 2 and 3 workers: the case
/// roots, in that order.
fn replay_with_1_2_3_workers(dir: &Path, pcap: &Path, liid: &str) -> Vec<PathBuf> {
    replay_with_1_2_3_workers_for(dir, pcap, liid, "ipv4:198.51.100.7")
}

/// The same for a warrant on `target`.
fn replay_with_1_2_3_workers_for(dir: &Path, pcap: &Path, liid: &str, target: &str) -> Vec<PathBuf> {
    (1..=3)
        .map(|n| {
            let out = dir.join(format!("case-{n}"));
            replay_one_warrant(dir, liid, &[target], pcap, &out, &["--workers", &n.to_string()]);
            out
        })
        .collect()
}

/// An FTP server behind a NAT names another address in its 227 reply than the one its control
/// connection runs to (tests/media/ftp-nat-pasv.sh: pyftpdlib `--nat-address`, lftp). The
/// data connection's pair hashes to another worker than the control connection's with 2 and 3
/// workers (198.51.100.7 with .10 and with .12); it is analyzed with its control connection
/// all the same: the upload is `upload.bin`, sha256sum's digest of the file lftp sent, and
/// the case's IRI records are one worker's. Needs root, pyftpdlib, lftp, nft.
#[test]
fn an_ftp_upload_to_the_address_a_nat_announced_is_the_same_upload_with_any_workers() {
    let (w, sent, pcap) = session_sending("ftp-nat-pasv.sh", "upload.bin", 300_000);
    // The data connection runs to the announced address, by Wireshark.
    let syns = tshark(&pcap, Some("tcp.flags.syn == 1 && tcp.flags.ack == 0"), &["ip.dst", "tcp.dstport"]);
    assert_eq!(syns.len(), 2, "{syns:?}");
    assert_eq!(syns[0], "198.51.100.10|21");
    assert!(syns[1].starts_with("198.51.100.12|600"), "{syns:?}");
    let want = sha256sums(std::slice::from_ref(&sent));

    let cases = replay_with_1_2_3_workers(w.path(), &pcap, "LIID-FTP");
    for case in &cases {
        let listed = common::json_lines(&case.join("LIID-FTP/objects.jsonl"));
        assert_eq!(listed.len(), 1, "{}: {listed:?}", case.display());
        assert_eq!((listed[0]["name"].as_str(), listed[0]["protocol"].as_str()), (Some("upload.bin"), Some("ftp")));
        assert_eq!(objects(case, "LIID-FTP"), want, "{}", case.display());
        assert_eq!(iri_unnumbered(case, "LIID-FTP"), iri_unnumbered(&cases[0], "LIID-FTP"), "{}", case.display());
    }
}

/// A SIP call whose callee's SDP answer puts its media at another address than its signalling
/// (tests/media/sip-call.sh with MEDIA_IP: SIPp `-mi`, as behind a media relay): with 2 and 3
/// workers the RTP's pair (198.51.100.7 with .11) hashes elsewhere than the signalling's (.7
/// with .10). The RTP is analyzed with the call all the same: the stream begins at the first
/// RTP packet tshark lists (RTP found by its looks alone begins packets later), and the case's
/// IRI records are one worker's (the warrant's activation too, stamped at the capture's first
/// frame, whichever worker that frame went to). Needs root, sipp, ffmpeg, tcpdump, tshark.
#[test]
fn sip_media_sent_to_a_relay_address_are_analyzed_with_their_call_with_any_workers() {
    relay_call_is_one_workers_with_any_workers(&[]);
}

/// The same call on a link whose MTU (400) is below its SIP messages' size: the INVITE and the
/// 200 OK with its SDP answer go in IP fragments (tshark lists them), which the dispatch
/// reassembles to read the answer as one pipeline's SIP analyzer does.
#[test]
fn a_sip_answer_in_ip_fragments_keeps_its_media_with_the_call_with_any_workers() {
    relay_call_is_one_workers_with_any_workers(&[("MTU", "400")]);
}

/// The same relayed call with its signalling over TCP (SIPp `-t t1`): the dispatch reads the
/// SDP answer in the TCP connection's 200 OK, so the RTP to the relay goes with the call.
#[test]
fn sip_over_tcp_media_sent_to_a_relay_address_are_analyzed_with_their_call_with_any_workers() {
    relay_call_is_one_workers_with_any_workers(&[("TRANSPORT", "tcp")]);
}

/// One relayed call (tests/media/sip-call.sh with MEDIA_IP and `env`), replayed with 1, 2 and 3
/// workers: see `sip_media_sent_to_a_relay_address_are_analyzed_with_their_call_with_any_workers`.
fn relay_call_is_one_workers_with_any_workers(env: &[(&str, &str)]) {
    let w = tempfile::tempdir().unwrap();
    let tone = w.path().join("tone.wav");
    let sine = "sine=frequency=440:sample_rate=8000";
    let tone_s = tone.to_str().unwrap();
    common::media::run(
        "ffmpeg",
        &["-v", "error", "-f", "lavfi", "-i", sine, "-t", "3", "-c:a", "pcm_mulaw", "-y", tone_s],
    );
    let env = [&[("MEDIA_IP", "198.51.100.11")], env].concat();
    common::media::session("sip-call.sh", &[w.path().to_str().unwrap()], &env);
    let pcap = w.path().join("cap.pcap");
    let answer_fragments = tshark(&pcap, Some("ip.flags.mf == 1 && ip.src == 198.51.100.10"), &["ip.id"]);
    let fragmented = env.iter().any(|(k, _)| *k == "MTU");
    assert_eq!(answer_fragments.is_empty(), !fragmented, "{answer_fragments:?}");
    let rtp = tshark(&pcap, Some("udp.dstport == 6000"), &["frame.time_epoch", "ip.dst"]);
    assert!(rtp.len() > 100 && rtp.iter().all(|r| r.ends_with("|198.51.100.11")), "{rtp:?}");
    let first_rtp_us = epoch_us(rtp[0].split('|').next().unwrap());
    let first_frame_us = epoch_us(&tshark(&pcap, None, &["frame.time_epoch"])[0]);

    let cases = replay_with_1_2_3_workers(w.path(), &pcap, "LIID-SIP");
    for case in &cases {
        let records = iri(case, "LIID-SIP");
        let at =
            |r: &Value| chrono::DateTime::parse_from_rfc3339(r["ts"].as_str().unwrap()).unwrap().timestamp_micros();
        let begin = records.iter().find(|r| r["event"] == "rtp" && r["what"] == "stream-begin").unwrap();
        assert_eq!(at(begin), first_rtp_us, "{}: {begin}", case.display());
        assert_eq!(begin["codec"], "pcm_mulaw");
        let activated = records.iter().find(|r| r["event"] == "warrant").unwrap();
        assert_eq!(at(activated), first_frame_us, "{}: {activated}", case.display());
        assert_eq!(objects(case, "LIID-SIP"), objects(&cases[0], "LIID-SIP"), "{}", case.display());
        assert_eq!(iri_unnumbered(case, "LIID-SIP"), iri_unnumbered(&cases[0], "LIID-SIP"), "{}", case.display());
    }
}

/// A WHIP-style offer POSTed over HTTP names a media server at another address than the HTTP
/// server's (tests/media/udp-session.sh with SDP_SERVER and MEDIA_IP), and FFmpeg streams the
/// clip's H.264 there. The SDP's sprop-parameter-sets are the only place the SPS/PPS are: a
/// worker without the SDP's expectation cannot decode the stream. With 2 and 3 workers the
/// RTP's pair (198.51.100.7 with .11) hashes elsewhere than the HTTP's (.7 with .10); the
/// stream still becomes the Matroska file of the source's pictures (FFmpeg's decode of both),
/// and the IRI records are one worker's. Needs root, ffmpeg, curl, socat, tcpdump.
#[test]
fn rtp_to_the_media_server_an_sdp_over_http_named_is_decoded_with_any_workers() {
    whip_session_decodes_with_any_workers(&[]);
}

/// The same with the offer's body in a segment after its headers: curl sends `Expect:
/// 100-continue` and waits for the server's word (none comes from an HTTP/1.0 server) before the
/// body, as it does by itself for large bodies. tshark shows the POST in two segments.
#[test]
fn an_sdp_posted_in_a_segment_after_its_headers_routes_the_media_with_any_workers() {
    whip_session_decodes_with_any_workers(&["-H 'Expect: 100-continue'", "--expect100-timeout 0.3"]);
}

/// One WHIP-style session (curl with `curl_args` POSTs the offer, FFmpeg streams), replayed with
/// 1, 2 and 3 workers: see `rtp_to_the_media_server_an_sdp_over_http_named_is_decoded_with_any_workers`.
fn whip_session_decodes_with_any_workers(curl_args: &[&str]) {
    let d = tempfile::tempdir().unwrap();
    let w = d.path();
    common::media::make_clip(w);
    let (src, local) = (w.join("src.mp4"), w.join("local.sdp"));
    let q =
        ["-hide_banner", "-nostdin", "-loglevel", "error", "-i", src.to_str().unwrap(), "-map", "0:v", "-c", "copy"];
    let out = ["-frames:v", "1", "-f", "rtp", "-sdp_file", local.to_str().unwrap(), "rtp://127.0.0.1:5004"];
    common::media::run("ffmpeg", &[&q[..], &out[..]].concat());
    let sdp = std::fs::read_to_string(&local).unwrap().replace("127.0.0.1", "198.51.100.11");
    assert!(sdp.contains("sprop-parameter-sets=") && sdp.contains("c=IN IP4 198.51.100.11"), "{sdp}");
    std::fs::write(w.join("stream.sdp"), &sdp).unwrap();
    let sender = format!(
        "curl -sS {} -o answer.sdp -H 'Content-Type: application/sdp' --data-binary @stream.sdp \
         http://198.51.100.10:8080/whip && sleep 0.5 && \
         ffmpeg -hide_banner -nostdin -loglevel error -i src.mp4 -map 0:v -c copy -f rtp \
         rtp://198.51.100.11:5004",
        curl_args.join(" ")
    );
    common::media::session(
        "udp-session.sh",
        &[w.to_str().unwrap(), "sh", "-c", &sender],
        &[("SDP_SERVER", "1"), ("MEDIA_IP", "198.51.100.11")],
    );
    let pcap = w.join("cap.pcap");
    let rtp = tshark(&pcap, Some("udp.dstport == 5004"), &["ip.dst"]);
    assert!(rtp.len() > 100 && rtp.iter().all(|r| r == "198.51.100.11"), "{} RTP packets", rtp.len());
    let post = tshark(&pcap, Some("tcp.dstport == 8080 && tcp.len > 0"), &["tcp.len"]);
    let split = !curl_args.is_empty();
    assert_eq!(post.len(), if split { 2 } else { 1 }, "the POST's segments: {post:?}");

    let cases = replay_with_1_2_3_workers(w, &pcap, "LIID-WHIP");
    let listed = common::json_lines(&cases[0].join("LIID-WHIP/objects.jsonl"));
    // The offer and the answer are HTTP bodies, named for what they are: each object's media
    // (type and port) is what Wireshark's SDP dissector reads in one of the messages.
    let said = tshark(&pcap, Some("sdp"), &["sdp.media.media", "sdp.media.port"]);
    assert_eq!(said.len(), 2, "the offer and the answer: {said:?}");
    let descriptions: Vec<&Value> = listed.iter().filter(|o| o["protocol"] == "http").collect();
    assert_eq!(descriptions.len(), said.len(), "{said:?}");
    for o in descriptions {
        assert_eq!(o["format"]["format"], "sdp", "{o}");
        let media = o["format"]["details"]["media"].as_array().unwrap();
        let types: Vec<&str> = media.iter().map(|m| m["media"].as_str().unwrap()).collect();
        let ports: Vec<String> = media.iter().map(|m| m["port"].to_string()).collect();
        let ours = format!("{}|{}", types.join(","), ports.join(","));
        assert!(said.contains(&ours), "{ours} not among {said:?}");
    }
    let video = listed.iter().find(|o| o["protocol"] == "rtp").expect("the stream rebuilt");
    assert_eq!(video["format"]["format"], "matroska");
    let mkv = cases[0].join("LIID-WHIP").join(video["path"].as_str().unwrap());
    assert!(common::media::picture_md5s(&mkv) == common::media::picture_md5s(&src), "the source's pictures");
    for case in &cases {
        assert_eq!(objects(case, "LIID-WHIP"), objects(&cases[0], "LIID-WHIP"), "{}", case.display());
        assert_eq!(iri_unnumbered(case, "LIID-WHIP"), iri_unnumbered(&cases[0], "LIID-WHIP"), "{}", case.display());
    }
}

/// An upload between two VMs over Linux VXLAN whose underlay MTU (1200) is below the overlay's
/// (1500): the underlay fragments the first encapsulated data packets (tests/media/vxlan-frag.sh:
/// ncat, tcpdump on the underlay). A first fragment shows the underlay pair (198.51.100.7 with
/// .10), the completing one the inner pair (10.0.0.5 with .7), and the two pairs hash to
/// different workers with 2 and 3 workers; the fragments are reassembled by the worker of the
/// packet they carry all the same, as captured and with every first fragment moved after the
/// rest of its datagram. Needs root, ncat, tcpdump, tshark.
#[test]
fn underlay_fragments_of_vxlan_are_reassembled_by_the_worker_of_the_packet_they_carry() {
    let (w, sent, pcap) = session_sending("vxlan-frag.sh", "sent.bin", 400_000);
    // The underlay fragmented some VXLAN packets, by Wireshark.
    let firsts = tshark(&pcap, Some("ip.flags.mf == 1 && ip.frag_offset == 0 && ip.src == 198.51.100.7"), &["ip.id"]);
    assert!(!firsts.is_empty(), "no underlay fragments in the capture");
    same_upload_with_any_workers(w.path(), &sent, &pcap);
}

/// The same over an IPv6 underlay (2001:db8::6 with ::10, MTU 1280): the sending host fragments
/// the encapsulated packets with IPv6 fragment headers, and the underlay pair hashes to other
/// workers than the inner pair with 2 and 3 workers. Needs root, ncat, tcpdump, tshark.
#[test]
fn ipv6_underlay_fragments_of_vxlan_are_reassembled_by_the_worker_of_the_packet_they_carry() {
    let (w, sent, pcap) = session_sending_with("vxlan-frag.sh", "sent.bin", 400_000, &[("UNDERLAY", "6")]);
    let firsts = tshark(
        &pcap,
        Some("ipv6.fraghdr.more == 1 && ipv6.fraghdr.offset == 0 && ipv6.src == 2001:db8::6"),
        &["ipv6.fraghdr.ident"],
    );
    assert!(!firsts.is_empty(), "no underlay fragments in the capture");
    same_upload_with_any_workers(w.path(), &sent, &pcap);
}

/// `pcap` of `vxlan-frag.sh`, as captured and with its first fragments last, replayed with 1, 2
/// and 3 workers under a warrant on the sending VM: each case has the one stream, whole, whose
/// SHA-256 is `sha256sum`'s digest of what ncat sent (and the receiver got), with as many CC
/// frames and the same IRI records as one worker's case of the same capture.
fn same_upload_with_any_workers(dir: &Path, sent: &Path, pcap: &Path) {
    let want = sha256sums(&[sent.to_path_buf()]);
    assert_eq!(sha256sums(&[dir.join("received.bin")]), want);
    let reordered = dir.join("firsts-last.pcap");
    let moved = first_fragments_last(pcap, &reordered);
    assert!(moved > 0);
    // Wireshark reads the reordered capture's first fragments after the rest of their datagram.
    let order = frames(
        &reordered,
        Some("ip.flags.mf == 1 || ip.frag_offset > 0 || ipv6.fraghdr"),
        &["ip.frag_offset", "ipv6.fraghdr.offset"],
    );
    let first_at = |f: &Vec<String>| f.iter().any(|v| v.split(',').next() == Some("0"));
    assert!(!order.first().is_some_and(first_at), "{order:?}");
    for (n, input) in [pcap, reordered.as_path()].into_iter().enumerate() {
        let out = dir.join(format!("run-{n}"));
        std::fs::create_dir_all(&out).unwrap();
        let cases = replay_with_1_2_3_workers_for(&out, input, "LIID-VX", "vni:5001/10.0.0.5");
        let cc = |case: &Path| tshark(&case.join("LIID-VX/cc.pcap"), None, &["frame.len"]).len();
        for case in &cases {
            let listed = common::json_lines(&case.join("LIID-VX/objects.jsonl"));
            assert_eq!(listed.len(), 1, "{}: {listed:?}", case.display());
            assert_eq!(listed[0]["complete"], true, "{}: {}", case.display(), listed[0]);
            assert_eq!(objects(case, "LIID-VX"), want, "{}", case.display());
            assert_eq!(cc(case), cc(&cases[0]), "{}: CC frames", case.display());
            assert_eq!(iri_unnumbered(case, "LIID-VX"), iri_unnumbered(&cases[0], "LIID-VX"), "{}", case.display());
        }
    }
}

/// Writes `pcap` (classic, Ethernet) to `out` with the first fragment of every fragmented IPv4
/// or IPv6 datagram moved after the datagram's last fragment: a path that reorders them, as an
/// ECMP hash over ports can (only a first fragment has the ports). Every place keeps its
/// timestamp, so time still runs forward. Returns how many first fragments moved.
fn first_fragments_last(pcap: &Path, out: &Path) -> usize {
    let (file_header, records) = classic_pcap_records(pcap);
    // (datagram, first, last) of an Ethernet frame's IP fragment.
    let fragment = |f: &[u8]| -> Option<(Vec<u8>, bool, bool)> {
        match f.get(12..14)? {
            [0x08, 0x00] => {
                let ip = f.get(14..34)?;
                let flags = u16::from_be_bytes([ip[6], ip[7]]);
                let (more, offset) = (flags & 0x2000 != 0, flags & 0x1fff);
                let key = [&ip[4..6], &ip[12..20]].concat();
                (more || offset != 0).then_some((key, offset == 0, !more))
            }
            [0x86, 0xdd] if f.get(20) == Some(&44) => {
                let frag = f.get(54..62)?;
                let om = u16::from_be_bytes([frag[2], frag[3]]);
                let key = [&frag[4..8], &f[22..54]].concat();
                Some((key, om >> 3 == 0, om & 1 == 0))
            }
            _ => None,
        }
    };
    let mut order: Vec<usize> = Vec::new();
    let mut waiting: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    let mut moved = 0;
    for (i, (_, data)) in records.iter().enumerate() {
        match fragment(data) {
            Some((key, true, _)) => {
                waiting.insert(key, i);
            }
            Some((key, false, true)) => {
                order.push(i);
                if let Some(first) = waiting.remove(&key) {
                    order.push(first);
                    moved += 1;
                }
            }
            _ => order.push(i),
        }
    }
    order.extend(waiting.into_values());
    let mut w = file_header;
    for (place, i) in order.into_iter().enumerate() {
        let (header, data) = (&records[place].0, &records[i].1);
        w.extend_from_slice(&header[..8]);
        w.extend_from_slice(&(data.len() as u32).to_le_bytes());
        w.extend_from_slice(&(data.len() as u32).to_le_bytes());
        w.extend_from_slice(data);
    }
    std::fs::write(out, w).unwrap();
    moved
}
