//! End to end on the application fixtures in `pcaps/app/` (real clients and servers: swaks,
//! aiosmtpd, postfix, curl, wget, python clients, pyftpdlib, lftp, openssl): every file and mail
//! the clients sent in clear is rebuilt byte-exact (SHA-256, MD5 and SHA-512 from sha256sum etc.
//! of the files sent, attachments from Python's email package), nothing of what went inside TLS
//! is, and TLS metadata agrees with what the fixture script configured and openssl printed.

use crate::common;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn app() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcaps/app")
}

struct Case {
    _dir: tempfile::TempDir,
    objects: Vec<Value>,
    iri: Vec<Value>,
}

fn replay(fixture: &str) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("case");
    let o = Command::new(env!("CARGO_BIN_EXE_tapir"))
        .arg("replay")
        .arg(app().join(fixture))
        .arg("--warrants")
        .arg(app().join("warrants.toml"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = Command::new(env!("CARGO_BIN_EXE_tapir")).arg("verify").arg(&out).output().unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let read = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(out.join("LIID-JOE-0001").join(name))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    Case { objects: read("objects.jsonl"), iri: read("iri.jsonl"), _dir: dir }
}

fn expect(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(app().join(format!("{name}.expect.json"))).unwrap()).unwrap()
}

fn find<'a>(c: &'a Case, kind: &str, sha256: &str) -> Option<&'a Value> {
    c.objects.iter().find(|o| o["kind"] == kind && o["sha256"] == sha256)
}

#[test]
fn smtp_mails_and_attachments() {
    let c = replay("smtp.pcap");
    let exp = expect("smtp");
    let mut seen = 0;
    for f in exp["files"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let sha = f["sha256"].as_str().unwrap();
        if f["visible"] == false {
            // Sent inside STARTTLS: nothing of it may be rebuilt.
            assert!(c.objects.iter().all(|o| o["sha256"] != sha), "{name} was inside TLS");
            continue;
        }
        let mail = find(&c, "mail", sha).unwrap_or_else(|| panic!("mail {name} ({sha}) not rebuilt"));
        common::assert_image_digests(mail, f, common::Digests::Sha256, name);
        assert_eq!(mail["complete"], true, "{name}");
        for a in f["attachments"].as_array().into_iter().flatten() {
            // The same attachment travels in two mails: look for it under this mail.
            let att = c
                .objects
                .iter()
                .find(|o| o["kind"] == "file" && o["sha256"] == a["sha256"] && o["parent"] == mail["id"])
                .unwrap_or_else(|| panic!("{name}: attachment {} not rebuilt under its mail", a["filename"]));
            assert_eq!(att["name"], a["filename"]);
            assert_eq!(att["parent"], mail["id"], "{name}: attachment's parent is its mail");
        }
        // The IRI names the envelope and the Message-ID.
        let ev = c
            .iri
            .iter()
            .find(|e| e["event"] == "smtp" && e["message_id"] == f["message_id"])
            .unwrap_or_else(|| panic!("{name}: no SMTP IRI"));
        let text = ev.to_string();
        assert!(text.contains(f["mail_from"].as_str().unwrap()), "{name}: sender in {text}");
        for r in f["rcpt_to"].as_array().unwrap() {
            assert!(text.contains(r.as_str().unwrap()), "{name}: recipient {r} in {text}");
        }
        seen += 1;
    }
    assert_eq!(seen, 8, "eight mails in clear");
    // AUTH user names are kept, secrets never written.
    let all = c.iri.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    assert!(
        all.contains("\"start-tls\"") || all.contains("start_tls") || all.contains("starttls"),
        "STARTTLS recorded"
    );
}

#[test]
fn http_uploads_downloads_and_image_service() {
    let c = replay("http.pcap");
    let exp = expect("http");
    for f in exp["files"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let sha = f["sha256"].as_str().unwrap();
        if f["kind"] == "http-object" {
            // S3 CompleteMultipartUpload: the parts are objects of their own (they may come on
            // several connections, in any order) and the case writer joins them, in the order
            // the completion lists, into the object the client completed.
            let o = find(&c, "file", sha).unwrap_or_else(|| panic!("assembled {name} ({sha}) not in the case"));
            assert_eq!(o["name"], name);
            // An S3 object, no image: its MD5 (sha512sum's is not in the expect file).
            assert_eq!((o["md5"].as_str(), o["sha512"].as_str()), (f["md5"].as_str(), None));
            assert_eq!(o["context"]["assembled_from"].as_array().map(Vec::len), Some(2), "{o}");
            continue;
        }
        let o = find(&c, "file", sha).unwrap_or_else(|| panic!("{name} ({sha}) not rebuilt"));
        assert_eq!(o["complete"], true, "{name}");
        common::assert_image_digests(o, f, common::Digests::of_expected(f), name);
        if name == "joe-vm.qcow2" {
            assert_eq!(o["format"]["format"], "qcow2", "{o}");
            assert!(o["context"]["image_id"].is_string(), "image id named: {o}");
        }
    }
}

#[test]
fn ftp_transfers_including_stou_appe_rest_ascii_and_empty() {
    let c = replay("ftp.pcap");
    let exp = expect("ftp");
    for f in exp["files"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let mut sha = f["sha256"].as_str().unwrap();
        if f["visible"] == false {
            assert!(c.objects.iter().all(|o| o["sha256"] != sha), "{name} was inside TLS");
            continue;
        }
        if f["type"] == "A" {
            // ASCII mode is undone: the object is the file as the client had it (LF line ends),
            // not the CRLF bytes on the wire.
            sha = f["local_file"]["sha256"].as_str().unwrap();
        }
        let o = find(&c, "file", sha).unwrap_or_else(|| panic!("{} {name} ({sha}) not rebuilt", f["command"]));
        assert_eq!(o["protocol"], "ftp");
        assert_eq!(o["name"].as_str().map(|n| n.rsplit('/').next().unwrap()), Some(name), "{o}");
    }
    // Every transfer's IRI names the user; no password anywhere.
    let transfers: Vec<&Value> = c.iri.iter().filter(|e| e["event"] == "ftp" && e["action"] == "transfer").collect();
    assert!(transfers.len() >= 11, "{}", transfers.len());
    assert!(transfers.iter().all(|t| t["user"].is_string()));
}

#[test]
fn tls_metadata_matches_what_was_configured() {
    let c = replay("tls.pcap");
    let exp = expect("tls");
    let events: Vec<&Value> = c.iri.iter().filter(|e| e["event"] == "tls").collect();
    let sessions = exp["tls_sessions"].as_array().unwrap();
    assert_eq!(events.len(), sessions.len());
    for s in sessions {
        let client = s["flow"]["client"].as_str().unwrap();
        let flow_of = |e: &Value| {
            c.iri
                .iter()
                .find(|b| b["event"] == "session-begin" && b["cin"] == e["cin"])
                .map(|b| b["flow"]["orig"].clone())
        };
        let e = events
            .iter()
            .find(|e| flow_of(e).as_ref().and_then(Value::as_str) == Some(client))
            .expect("event for session");
        assert_eq!(e["sni"], s["sni"], "{client}");
        let version = s["version"].as_str().unwrap().replace("TLSv", "TLS ");
        assert_eq!(e["version"], version.as_str(), "{client}");
        if s["visible_in_clear"]["certificate"] == true {
            assert_eq!(e["certificate"]["sha256"], s["certificate"]["der_sha256"], "{client}");
            assert_eq!(
                e["certificate"]["serial"].as_str().map(|x| x.replace(':', "")),
                s["certificate"]["serial"].as_str().map(String::from)
            );
        } else {
            assert_eq!(e["certificate_status"], "not visible", "{client}");
        }
        if s["visible_in_clear"]["alpn_selected"] == true {
            assert_eq!(e["alpn_selected"], s["alpn_selected"], "{client}");
        }
    }
    assert!(c.objects.is_empty(), "TLS sessions produce no content objects");
}
