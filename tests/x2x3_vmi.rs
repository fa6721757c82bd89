//! The second use case across X2/X3: a POI replays `pcaps/app/vmi.pcap` (joe uploads a qcow2
//! over FTP, the control plane registers the image and a VM starts from it, the outbox message
//! goes out over SMTP) and sends it all to an MDF, which inspects the image: its record stage
//! needs every POI's records. The findings reach the LEA while the MDF keeps running (no PDU
//! comes after the upload's end to move capture time on, so the quiet MDF moves its clock itself),
//! and the LEA gets the IRI the all-in-one delivers for the same capture: findings, cross-links
//! and numbering. Expected values from the fixture (`vmi.expect.json`: debugfs, sha256sum).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{free_port, vmi_fixture_events, wait_listening, Lemf};
use crate::x2x3_roles::{mdf, mdf_config, poi_config, root, run_poi};

fn lines(lemf: &Path) -> Vec<String> {
    let mut l: Vec<String> = std::fs::read_to_string(lemf.join("LIID-V/iri.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    l.sort();
    l
}

fn warrants(d: &Path, hi2: u16, hi3: u16) -> std::path::PathBuf {
    let w = d.join("w.toml");
    std::fs::write(
        &w,
        format!(
            "[[warrant]]\nliid = \"LIID-V\"\nstart = \"2026-01-01T00:00:00Z\"\nend = \"2028-01-01T00:00:00Z\"\n\
             scope = \"iri+cc\"\ntargets = [\"ipv4:198.51.100.7\", \"subscriber:joe\"]\nlea = \"lea\"\n\
             [[lea]]\nname = \"lea\"\nhi2 = \"127.0.0.1:{hi2}\"\nhi3 = \"127.0.0.1:{hi3}\"\noperator_id = \"OPER-O\"\n\
             network_element_id = \"tapir-1\"\ncountry = \"NZ\"\nkeepalive = 1\n"
        ),
    )
    .unwrap();
    w
}

/// Whether an LEMF line is the image's findings (a `vmi` case record).
fn is_finding(line: &str) -> bool {
    fn find(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(m) => {
                m.get("caseRecord").is_some_and(|r| r["event"] == "vmi") || m.values().any(find)
            }
            serde_json::Value::Array(a) => a.iter().any(find),
            _ => false,
        }
    }
    find(&serde_json::from_str(line).unwrap())
}

/// The whole capture: the findings are due (by capture time) while the POI still sends.
#[test]
fn an_image_a_poi_saw_is_inspected_at_the_mdf_and_its_findings_arrive_while_it_runs() {
    image_across_x2x3(None, true);
}

/// The capture cut after the upload (frames 1-619, its FTP session closed, before the mail): nothing comes after the
/// image to move capture time on, so only the quiet MDF's own clock brings the findings.
#[test]
fn a_quiet_mdf_moves_its_clock_on_and_delivers_the_findings_without_more_traffic() {
    image_across_x2x3(Some("1-619"), false);
}

fn image_across_x2x3(frames: Option<&str>, control_plane: bool) {
    let e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("pcaps/app/vmi.expect.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let events = match control_plane {
        true => vmi_fixture_events(d, &e).0,
        false => {
            std::fs::write(d.join("none.jsonl"), "").unwrap();
            d.join("none.jsonl")
        }
    };
    let pcap = match frames {
        None => root().join("pcaps/app/vmi.pcap"),
        Some(r) => {
            let cut = d.join("upload.pcap");
            let o = std::process::Command::new("editcap")
                .arg("-r")
                .arg(root().join("pcaps/app/vmi.pcap"))
                .arg(&cut)
                .arg(r)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            cut
        }
    };
    let (hi2, hi3, port) = (free_port(), free_port(), free_port());
    let w = warrants(d, hi2, hi3);
    let lemf_out = d.join("lemf");
    let lemf = Lemf::start(hi2, Some(hi3), &lemf_out);
    let mut m = mdf(&mdf_config(d, &w, port, ""));
    wait_listening(port);
    let c = poi_config(d, &w, "poi-1", 1, port, &[pcap.to_str().unwrap()], "");
    let text = std::fs::read_to_string(&c).unwrap() + &format!("[associations]\nevents = \"{}\"\n", events.display());
    std::fs::write(&c, text).unwrap();
    run_poi(&c);
    // The POI is done and gone; the MDF runs on, and the image's findings come by themselves.
    let t = Instant::now();
    let finding = |l: &String| is_finding(l);
    while !lines(&lemf_out).iter().any(finding) {
        assert!(t.elapsed() < Duration::from_secs(30), "no findings at the LEA while the MDF runs");
        std::thread::sleep(Duration::from_millis(200));
    }
    let vmi: Vec<String> = lines(&lemf_out).into_iter().filter(finding).collect();
    // The fixture's two images (the upload, and the copy the control plane registers).
    assert_eq!(vmi.len(), 2);
    assert!(vmi.iter().any(|l| l.contains(e["vmi"]["hostname"].as_str().unwrap())), "{vmi:?}");
    m.stop();
    let report = lemf.stop();
    for (name, s) in report["streams"].as_object().unwrap() {
        assert_eq!(s["gaps"], serde_json::json!([]), "{name}: {s}");
        assert_eq!(s["duplicates"], 0, "{name}: {s}");
    }

    // The all-in-one of the same capture, into an LEMF of its own.
    let (a2, a3) = (free_port(), free_port());
    let aio = d.join("aio");
    std::fs::create_dir_all(&aio).unwrap();
    let wa = warrants(&aio, a2, a3);
    let aio_out = aio.join("lemf");
    let aio_lemf = Lemf::start(a2, Some(a3), &aio_out);
    crate::x2x3_roles::replay_deliver(&aio, &wa, &[pcap], &["--associations".as_ref(), events.as_os_str()]);
    aio_lemf.stop();
    let (x, a) = (lines(&lemf_out), lines(&aio_out));
    assert!(a.iter().any(finding) && a.len() > 20, "{}", a.len());
    // HI1 notices carry the time each run began; everything else is the same, line for line.
    let hi1 = |l: &&String| !l.contains("hI1-Operation");
    let (x, a): (Vec<&String>, Vec<&String>) = (x.iter().filter(hi1).collect(), a.iter().filter(hi1).collect());
    assert_eq!(x.len(), a.len());
    for (x, a) in x.iter().zip(&a) {
        assert_eq!(x, a);
    }
}
