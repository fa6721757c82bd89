//! The video a VM streams is the clip in the image its owner uploaded (the seed's steps h.i and
//! d.xi together): joe uploads a qcow2 over FTP (curl to pyftpdlib) whose `/home/joe/Videos`
//! holds a clip and two unrelated ones (FLV, and H.265 in Matroska); 1.5 s later the same
//! machine publishes the clip over RTMP with `ffmpeg -c copy` (tests/media/rtmp-session.sh with
//! UPLOAD). The FLV tapir rebuilds and the MP4 in the image differ byte for byte; their
//! pictures do not.
//!
//! The oracle is FFmpeg: the fingerprints expected are computed by the test from FFmpeg's own
//! Annex B output of each source file (`common::media::video_fingerprint`), the pictures' equality
//! from `ffmpeg -c copy -f framemd5`. Needs root, ffmpeg, tcpdump, curl, pyftpdlib, mkfs.ext4,
//! qemu-img.

use crate::common;

use std::path::Path;

use common::media::{make_clip, packet_md5s, run, session, video_fingerprint};
use serde_json::Value;

const LIID: &str = "LIID-CLIP";
const KEY: &str = "lesson-key-5d1f";

fn sha256sum(p: &Path) -> String {
    run("sha256sum", &[p.to_str().unwrap()]).split_whitespace().next().unwrap().to_string()
}

#[test]
fn a_stream_of_a_clip_found_in_an_uploaded_image_names_the_clip() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path();
    make_clip(w);
    let src = w.join("src.mp4");
    // The image: a Debian-like root with the clip and an unrelated FLV clip beside it.
    let tree = w.join("tree");
    let videos = tree.join("home/joe/Videos");
    std::fs::create_dir_all(&videos).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hostname"), "media-vm\n").unwrap();
    std::fs::write(tree.join("etc/os-release"), "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n").unwrap();
    std::fs::copy(&src, videos.join("lesson.mp4")).unwrap();
    let other = videos.join("other.flv");
    let q = ["-hide_banner", "-nostdin", "-loglevel", "error"];
    let lavfi = "testsrc2=size=160x120:rate=10";
    let other_args = ["-f", "lavfi", "-i", lavfi, "-t", "2", "-c:v", "libx264", "-g", "10", "-f", "flv", "-y"];
    run("ffmpeg", &[&q[..], &other_args[..], &[other.to_str().unwrap()]].concat());
    let third = videos.join("third.mkv");
    let third_args =
        ["-f", "lavfi", "-i", "testsrc=size=176x144:rate=15", "-t", "1", "-c:v", "libx265", "-x265-params"];
    let third_more = ["log-level=error", "-f", "matroska", "-y", third.to_str().unwrap()];
    run("ffmpeg", &[&q[..], &third_args[..], &third_more[..]].concat());
    let raw = w.join("joe-vm.raw");
    run("mkfs.ext4", &["-q", "-F", "-d", tree.to_str().unwrap(), raw.to_str().unwrap(), "32M"]);
    let image = w.join("joe-vm.qcow2");
    run("qemu-img", &["convert", "-c", "-O", "qcow2", raw.to_str().unwrap(), image.to_str().unwrap()]);

    session("rtmp-session.sh", &[w.to_str().unwrap(), "publish", KEY], &[("UPLOAD", image.to_str().unwrap())]);
    // Replayed as the LEA gets it: delivered to the shared lemf_check.py (asn1tools), each PDU
    // also decoded against the schema merged with tapir's additions.
    let (hi2, hi3) = (common::free_port(), common::free_port());
    let py = common::PyLemf::start(hi2, hi3, &w.join("report.json"));
    let lea = format!(
        "[[lea]]\nname = \"py\"\nhi2 = \"127.0.0.1:{hi2}\"\nhi3 = \"127.0.0.1:{hi3}\"\noperator_id = \"OPER-O\"\n\
         network_element_id = \"tapir-1\"\ncountry = \"NZ\"\nkeepalive = 2\n\n[[warrant]]\nliid = \"{LIID}\"\n\
         start = \"2020-01-01T00:00:00Z\"\nend = \"2100-01-01T00:00:00Z\"\nscope = \"iri+cc\"\n\
         targets = [\"ipv4:198.51.100.7\"]\nlea = \"py\"\n"
    );
    std::fs::write(w.join("w.toml"), lea).unwrap();
    let root = w.join("case");
    let spool = w.join("spool");
    let args = ["replay", "-q", "--deliver", spool.to_str().unwrap(), "--deliver-wait", "30", "--out"];
    let o = std::process::Command::new(common::TAPIR)
        .args(args)
        .arg(&root)
        .arg("--warrants")
        .arg(w.join("w.toml"))
        .arg(w.join("cap.pcap"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (report, pdus) = py.finish();
    let iri = common::json_lines(&root.join(LIID).join("iri.jsonl"));
    let objects = common::json_lines(&root.join(LIID).join("objects.jsonl"));

    let (clip_sha, clip_frames) = video_fingerprint(&src, "h264");
    let (other_sha, other_frames) = video_fingerprint(&other, "h264");
    let (third_sha, third_frames) = video_fingerprint(&third, "hevc");
    assert_eq!((clip_frames, other_frames, third_frames), (150, 20, 15));

    // The inspection names both clips with the fingerprints FFmpeg's bytes give.
    let vmi = iri.iter().find(|r| r["event"] == "vmi").expect("the upload is inspected");
    assert_eq!(vmi["image_sha256"], sha256sum(&image));
    let artifact = |name: &str| -> Value {
        vmi["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["place"].as_str().is_some_and(|p| p.ends_with(name)))
            .unwrap_or_else(|| panic!("no {name}: {vmi}"))
            .clone()
    };
    let lesson = artifact("/home/joe/Videos/lesson.mp4");
    assert_eq!((lesson["kind"].as_str(), lesson["format"].as_str()), (Some("media"), Some("mp4")));
    assert_eq!(lesson["sha256"], sha256sum(&src));
    assert_eq!(
        (lesson["video"]["codec"].as_str(), lesson["video"]["sha256"].as_str(), lesson["video"]["frames"].as_u64()),
        (Some("h264"), Some(clip_sha.as_str()), Some(150))
    );
    let third_art = artifact("/home/joe/Videos/third.mkv");
    assert_eq!(
        (third_art["format"].as_str(), third_art["video"]["codec"].as_str(), third_art["video"]["sha256"].as_str()),
        (Some("matroska"), Some("hevc"), Some(third_sha.as_str()))
    );
    let other_art = artifact("/home/joe/Videos/other.flv");
    assert_eq!(other_art["format"], "flv");
    assert_eq!(
        (other_art["video"]["sha256"].as_str(), other_art["video"]["frames"].as_u64()),
        (Some(other_sha.as_str()), Some(20))
    );

    // The stream: its FLV holds the clip's pictures (FFmpeg's packet MD5s), not its bytes.
    let stream = objects
        .iter()
        .find(|o| o["protocol"] == "rtmp" && o["name"].as_str().is_some_and(|n| n.ends_with(".flv")))
        .expect("the RTMP stream is an object");
    let flv = root.join(LIID).join("objects").join(stream["sha256"].as_str().unwrap());
    assert!(packet_md5s(&flv, "v") == packet_md5s(&src, "v"), "the clip's 150 pictures, as sent");
    assert_ne!(stream["sha256"], lesson["sha256"], "no byte digest can link them");
    assert_eq!(stream["format"]["format"], "flv");

    // Its IRI says which clip of which image it is; the other clip is named nowhere.
    let said = iri
        .iter()
        .find(|r| r["event"] == "object" && r["sha256"] == stream["sha256"])
        .unwrap_or_else(|| panic!("no object IRI for {stream}"));
    assert_eq!(said["context"]["video"]["sha256"], clip_sha.as_str());
    let link = &said["context"]["equals_artifact"];
    assert_eq!(link["image_object"], vmi["image_object"], "{said}");
    assert_eq!(link["artifact_object"], lesson["object"]);
    let says = link["says"].as_str().unwrap();
    assert!(
        says.starts_with("its video equals the video of /home/joe/Videos/lesson.mp4 (150 pictures) in image joe-vm.qcow2, uploaded by "),
        "{says}"
    );
    let all = serde_json::to_string(&iri).unwrap();
    assert!(!all.contains("equals the video of /home/joe/Videos/other.flv"));
    common::verify_case(&root);

    // What the LEA reads: the stream on HI2 (TapirMedia) with its file's digest, the link on
    // the stream's TapirObject; the key nowhere, only its digest.
    assert_eq!(report["undecodable"], 0, "{report}");
    assert!(pdus.iter().all(|p| p.get("error").is_none()), "PDUs the merged schema does not decode");
    let tapir = common::hi2_tapir(&pdus);
    let end = tapir
        .iter()
        .find_map(|t| t["event"].get("media").filter(|m| m["what"] == "stream-end"))
        .expect("TapirMedia stream-end on HI2");
    assert_eq!((end["protocol"].as_str(), end["mode"].as_str()), (Some("rtmp"), Some("publish")));
    assert_eq!(end["url"], "rtmp://198.51.100.10:1935/live");
    assert_eq!(end["streamNameSHA256"], run_sha256(KEY));
    assert_eq!(end["codecs"], serde_json::json!(["h264", "aac"]));
    assert_eq!(
        (end["frames"].as_u64(), end["width"].as_u64(), end["height"].as_u64()),
        (Some(150), Some(320), Some(240))
    );
    assert_eq!(end["objectSHA256"], stream["sha256"]);
    let linked = tapir
        .iter()
        .filter_map(|t| t["event"].get("object"))
        .find(|o| o["sha256"] == stream["sha256"])
        .expect("the stream's TapirObject");
    assert_eq!(linked["equalsArtifact"], link["says"]);
    assert!(!serde_json::to_string(&pdus).unwrap().contains(KEY), "the stream key reached the LEA");
}

fn run_sha256(s: &str) -> String {
    let o = std::process::Command::new("sh").arg("-c").arg(format!("printf %s '{s}' | sha256sum")).output().unwrap();
    String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap().to_string()
}
