//! A warrant's scope, enforced once (`record::gate`), checked for each protocol: three warrants
//! on the same target, one per scope, over FTP, HTTP, SMTP, TLS and a raw stream (SSH), each
//! replay delivering to `tapir lemf`. For every (scope, protocol), what the case holds and what
//! the LEMF received:
//!
//! | | case IRI | case CC | case objects | LEMF IRI | LEMF CC |
//! |---|---|---|---|---|---|
//! | iri+cc | all | every target frame | bytes, named | all | IPCC (and EmailCC) |
//! | iri | all, objects as IRI with their digests | none | none | all | none |
//! | cc | warrant notices only | every target frame | bytes, no name or context | HI1 only | IPCC (and EmailCC) |
//!
//! Expected frame counts come from tshark on the fixtures, digests from the fixtures' expect files
//! (sha256sum of the files the clients sent).

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

const SCOPES: [(&str, &str); 3] = [("iri+cc", "IC"), ("iri", "I"), ("cc", "C")];

/// (protocol, fixture, the case's event for its IRI if the protocol has an analyzer, whether it
/// yields content objects: TLS ciphertext stays CC only)
const PROTOCOLS: [(&str, &str, Option<&str>, bool); 5] = [
    ("FTP", "ftp", Some("ftp"), true),
    ("HTTP", "http", Some("http"), true),
    ("SMTP", "smtp", Some("smtp"), true),
    ("TLS", "tls", Some("tls"), false),
    ("RAW", "ssh", None, true),
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/app").join(format!("{name}.pcap"))
}

fn liid(proto: &str, scope_tag: &str) -> String {
    format!("{proto}-{scope_tag}")
}

/// Every file below `dir`, relative, sorted (none if it does not exist).
fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn cc_frames(pcap: &Path) -> usize {
    frame_count(pcap)
}

#[test]
fn three_scopes_by_five_protocols_reach_the_case_and_the_lemf_as_the_scope_allows() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let lemf_out = d.path().join("lemf");
    let lemf = Lemf::start(port, None, &lemf_out);

    // One replay per protocol, three warrants each, all at once.
    let mut runs = Vec::new();
    for (proto, fx, _, _) in PROTOCOLS {
        let mut w = String::new();
        for (scope, tag) in SCOPES {
            w += &format!(
                "[[warrant]]\nliid = \"{}\"\nstart = \"2026-11-01T00:00:00Z\"\nend = \"2027-01-01T00:00:00Z\"\n\
                 scope = \"{scope}\"\ntargets = [\"ipv4:198.51.100.7\", \"ipv6:2001:db8::7\"]\nlea = \"lemf\"\n\n",
                liid(proto, tag)
            );
        }
        w += &format!(
            "[[lea]]\nname = \"lemf\"\nhi2 = \"127.0.0.1:{port}\"\nhi3 = \"127.0.0.1:{port}\"\noperator_id = \"OPER-O\"\n\
             network_element_id = \"tapir-1\"\nkeepalive = 2\n"
        );
        let wp = d.path().join(format!("{fx}.toml"));
        std::fs::write(&wp, w).unwrap();
        let case = d.path().join(format!("case-{fx}"));
        let child = Command::new(TAPIR)
            .arg("replay")
            .arg(fixture(fx))
            .arg("--warrants")
            .arg(&wp)
            .arg("--out")
            .arg(&case)
            .arg("--deliver")
            .arg(d.path().join(format!("spool-{fx}")))
            .args(["--deliver-wait", "30", "--quiet"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        runs.push((proto, fx, case, child));
    }
    for (proto, _, _, child) in runs.iter_mut() {
        let o = std::mem::replace(child, Command::new("true").spawn().unwrap()).wait_with_output().unwrap();
        assert!(o.status.success(), "{proto}: {}", String::from_utf8_lossy(&o.stderr));
    }
    lemf.stop();

    for ((proto, fx, case, _), (_, _, event, has_objects)) in runs.iter().zip(PROTOCOLS) {
        let frames = cc_frames(&fixture(fx));
        assert!(frames > 10, "{fx}");
        let expect: Value =
            serde_json::from_str(&std::fs::read_to_string(fixture(fx).with_extension("expect.json")).unwrap()).unwrap();
        // The files the clients sent or fetched in clear, as the analyzers store them: an FTP
        // TYPE A file with its line ends undone (the client's own file), not the S3 object that
        // only the case writer assembles from its parts at the end.
        let files: BTreeSet<String> = expect["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["visible"] != false && f["kind"] != "http-object")
            .map(|f| f.get("local_file").unwrap_or(f)["sha256"].as_str().unwrap().to_string())
            .collect();
        for (scope, tag) in SCOPES {
            let l = liid(proto, tag);
            let cell = format!("{proto} x {scope}");
            let dir = case.join(&l);
            let iri = json_lines(&dir.join("iri.jsonl"));
            let events: BTreeSet<&str> = iri.iter().map(|r| r["event"].as_str().unwrap()).collect();
            let objects = json_lines(&dir.join("objects.jsonl"));
            let lemf_dir = lemf_out.join(&l);
            let lemf_iri = json_lines(&lemf_dir.join("iri.jsonl"));
            let case_cc = dir.join("cc.pcap");
            let lemf_cc = lemf_dir.join("cc.pcap");
            // What the IRI says of the content: the digests of the object records.
            let object_iri: BTreeSet<String> = iri
                .iter()
                .filter(|r| r["event"] == "object")
                .map(|r| r["sha256"].as_str().unwrap().to_string())
                .collect();
            match scope {
                "iri+cc" => {
                    assert!(events.contains("session-begin") && events.contains("session-end"), "{cell}: {events:?}");
                    if let Some(e) = event {
                        assert!(events.contains(e), "{cell}: no {e} IRI");
                    }
                    assert_eq!(!objects.is_empty(), has_objects, "{cell}: objects");
                    for o in &objects {
                        let bytes = std::fs::read(dir.join(o["path"].as_str().unwrap())).unwrap();
                        assert_eq!(bytes.len() as u64, o["size"].as_u64().unwrap(), "{cell}");
                    }
                    let stored: BTreeSet<String> =
                        objects.iter().map(|o| o["sha256"].as_str().unwrap().to_string()).collect();
                    assert!(object_iri.is_subset(&stored), "{cell}: every object described as IRI is stored");
                    assert_eq!(cc_frames(&case_cc), frames, "{cell}: every target frame");
                    assert_eq!(lemf_iri.len(), iri.len(), "{cell}: every IRI record reaches the LEMF");
                    assert_eq!(cc_frames(&lemf_cc), frames, "{cell}: IPCC of every frame");
                    assert!(files.is_subset(&object_iri), "{cell}: the files sent are objects");
                }
                "iri" => {
                    assert!(events.contains("session-begin") && events.contains("session-end"), "{cell}: {events:?}");
                    if let Some(e) = event {
                        assert!(events.contains(e), "{cell}: no {e} IRI: analyzers run for IRI-only warrants");
                    }
                    assert_eq!(!object_iri.is_empty(), has_objects, "{cell}: objects are described as IRI");
                    // Every file the client sent is known by its digests, and not one byte of it
                    // is anywhere: no CC, no object files, in the case or at the LEMF.
                    assert!(files.is_subset(&object_iri), "{cell}: {files:?} vs {object_iri:?}");
                    // Each by the digests its kind gets: a disk image all three, anything else
                    // SHA-256 alone.
                    let sent = expect["files"].as_array().unwrap().iter();
                    for f in sent.filter(|f| {
                        f["visible"] != false && f["kind"] != "http-object" && f.get("local_file").is_none()
                    }) {
                        let name = f["name"].as_str().unwrap();
                        let r = iri.iter().find(|r| r["event"] == "object" && r["sha256"] == f["sha256"]);
                        let r = r.unwrap_or_else(|| panic!("{cell}: {name} is described"));
                        common::assert_image_digests(r, f, common::Digests::of_expected(f), &format!("{cell}: {name}"));
                    }
                    assert!(objects.is_empty(), "{cell}: {objects:?}");
                    let held = files_below(&dir);
                    assert!(
                        held.iter().all(|f| [
                            "iri.jsonl",
                            "objects.jsonl",
                            "MANIFEST.json",
                            "MANIFEST.json.sig",
                            "signing-key.pub",
                            "README.txt"
                        ]
                        .contains(&f.as_str())),
                        "{cell}: {held:?}"
                    );
                    assert_eq!(lemf_iri.len(), iri.len(), "{cell}");
                    let at_lemf = files_below(&lemf_dir);
                    assert_eq!(at_lemf, ["iri.jsonl"], "{cell}: no CC, no e-mail content at the LEMF");
                }
                "cc" => {
                    assert_eq!(events, BTreeSet::from(["warrant"]), "{cell}: no IRI but the warrant's notices");
                    assert_eq!(!objects.is_empty(), has_objects, "{cell}");
                    for o in &objects {
                        assert!(o.get("name").is_none() && o.get("context").is_none(), "{cell}: {o}");
                        assert!(dir.join(o["path"].as_str().unwrap()).is_file());
                    }
                    let digests: BTreeSet<String> =
                        objects.iter().map(|o| o["sha256"].as_str().unwrap().to_string()).collect();
                    assert!(files.is_subset(&digests), "{cell}: the files sent are objects");
                    assert_eq!(cc_frames(&case_cc), frames, "{cell}");
                    assert_eq!(cc_frames(&lemf_cc), frames, "{cell}");
                    // At the LEMF: HI1 notifications only on HI2.
                    assert!(lemf_iri.iter().all(|l| l.get("hI1-Operation").is_some()), "{cell}: {lemf_iri:?}");
                    assert_eq!(lemf_iri.len(), iri.len(), "{cell}");
                }
                _ => unreachable!(),
            }
            // Mail content goes to the LEMF as EmailCC exactly where CC is in scope.
            if *fx == "smtp" {
                let mails = json_lines(&lemf_dir.join("objects.jsonl"));
                if scope == "iri" {
                    assert!(mails.is_empty(), "{cell}");
                } else {
                    assert!(mails.len() >= 8, "{cell}: {} mails", mails.len());
                }
            }
        }
    }
}
