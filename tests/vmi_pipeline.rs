//! Images inspected inside `replay`: the second use case in small (`pcaps/app/vmi.pcap`, made
//! by `make-app-fixtures.sh vmi`): joe uploads a qcow2 over FTP (lftp to pyftpdlib) whose
//! outbox holds a message and whose crontab flushes it an hour after boot; then the message
//! goes out over SMTP (swaks). The control plane registers the image and ann starts a VM from
//! it.
//!
//! Expected values are the fixture's (`vmi.expect.json`: sha256sum of the files put into the
//! image, read back from the raw disk by debugfs; `ssh-keygen -l`; tshark for the capture),
//! never tapir's. Checked: the findings and every artifact as an object of the case (bytes,
//! digest, parent), the cross-links (the mail sent is the outbox message; the image.create is
//! the upload; the VM's crontab plan), HI2 as asn1tools reads it with tapir's additions
//! (TapirVmi, TapirObject.equalsArtifact), the outbox message as EmailCC on HI3, and the scope:
//! an IRI-only warrant gets no inspection at all, a CC-only one the objects and no IRI.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn expect() -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("pcaps/app/vmi.expect.json")).unwrap()).unwrap()
}

fn sha256_file(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap().to_string()
}

fn warrant(liid: &str, scope: &str, lea: Option<&str>) -> String {
    format!(
        "[[warrant]]\nliid = \"{liid}\"\nstart = \"2026-01-01T00:00:00Z\"\nend = \"2028-01-01T00:00:00Z\"\n\
         scope = \"{scope}\"\ntargets = [\"ipv4:198.51.100.7\", \"subscriber:joe\"]\n{}\n",
        lea.map(|l| format!("lea = \"{l}\"\n")).unwrap_or_default()
    )
}

fn replay(dir: &Path, warrants: &str, events: &Path, deliver: bool) -> PathBuf {
    let w = dir.join("w.toml");
    std::fs::write(&w, warrants).unwrap();
    let case = dir.join("case");
    let mut cmd = Command::new(TAPIR);
    cmd.arg("replay").arg(root().join("pcaps/app/vmi.pcap")).arg("--warrants").arg(&w);
    cmd.arg("--associations").arg(events).arg("--out").arg(&case).arg("-q");
    if deliver {
        cmd.arg("--deliver").arg(dir.join("spool")).args(["--deliver-wait", "30"]);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("images: 2 inspected, 0 refused") || !warrants.contains("iri+cc"), "{out}");
    verify_case(&case);
    assert!(!case.join(".vmi-work").exists(), "the spool is removed before the case is signed");
    case
}

#[test]
fn an_uploaded_image_is_inspected_linked_and_delivered() {
    let e = expect();
    let truth = &e["vmi"];
    let d = tempfile::tempdir().unwrap();
    let (events, vm_start) = vmi_fixture_events(d.path(), &e);
    let (py_hi2, py_hi3) = (free_port(), free_port());
    let py = PyLemf::start(py_hi2, py_hi3, &d.path().join("report.json"));
    let lea = format!(
        "[[lea]]\nname = \"py\"\nhi2 = \"127.0.0.1:{py_hi2}\"\nhi3 = \"127.0.0.1:{py_hi3}\"\noperator_id = \"OPER-O\"\n\
         network_element_id = \"tapir-1\"\ncountry = \"NZ\"\nkeepalive = 2\n"
    );
    let case = replay(d.path(), &(warrant("LIID-V", "iri+cc", Some("py")) + &lea), &events, true);
    let (report, pdus) = py.finish();
    let dir = case.join("LIID-V");
    let iri = json_lines(&dir.join("iri.jsonl"));
    let objects = json_lines(&dir.join("objects.jsonl"));

    // ---- the upload, and its inspection ----
    let image = objects.iter().find(|o| o["sha256"] == truth["image_sha256"]).expect("the image is an object");
    assert_eq!(image["name"], "joe-vm.qcow2");
    let vmi: Vec<&Value> = iri.iter().filter(|r| r["event"] == "vmi").collect();
    assert_eq!(vmi.len(), 2, "the image and its overlay");
    let v = vmi.iter().find(|v| v["image_sha256"] == truth["image_sha256"]).unwrap();
    assert_eq!(v["outcome"], "inspected");
    assert_eq!(v["image_object"], image["id"]);
    assert_eq!(v["container"], "qcow2");
    assert_eq!(v["os"], truth["os_pretty_name"]);
    assert_eq!(v["hostname"], truth["hostname"]);
    let users: Vec<&str> = v["users"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    let want_users: Vec<&str> = truth["users"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
    assert_eq!(users, want_users);
    assert!(!v.to_string().contains("notarealhash"), "a password hash never leaves the image");
    assert_eq!(v["crontabs"][0]["line"], truth["crontab_line"]);
    assert_eq!(v["ssh_keys"][0]["fingerprint"], truth["ssh_fingerprint"]);
    // The report object, and each artifact an object whose bytes are what was put in the image.
    let by_id = |id: &Value| objects.iter().find(|o| o["id"] == *id).unwrap_or_else(|| panic!("no object {id}"));
    let rep = by_id(&v["report_object"]);
    assert_eq!(rep["parent"], image["id"]);
    let rep_json: Value =
        serde_json::from_slice(&std::fs::read(dir.join(rep["path"].as_str().unwrap())).unwrap()).unwrap();
    assert_eq!(rep_json["inspection"]["filesystems"][0]["linux"]["hostname"], truth["hostname"]);
    let want = [
        ("mail", truth["outbox"]["path"].as_str().unwrap(), truth["outbox"]["sha256"].as_str().unwrap()),
        ("crontab", "/var/spool/cron/crontabs/joe", truth["crontab_sha256"].as_str().unwrap()),
        ("ssh-keys", "/home/joe/.ssh/authorized_keys", truth["authorized_keys_sha256"].as_str().unwrap()),
        ("media", truth["media"]["path"].as_str().unwrap(), truth["media"]["sha256"].as_str().unwrap()),
    ];
    let arts = v["artifacts"].as_array().unwrap();
    assert_eq!(arts.len(), want.len(), "{arts:?}");
    for (kind, place, sha) in want {
        let a = arts.iter().find(|a| a["kind"] == kind).unwrap_or_else(|| panic!("no {kind} artifact"));
        assert_eq!((a["place"].as_str(), a["sha256"].as_str()), (Some(place), Some(sha)), "{a}");
        let o = by_id(&a["object"]);
        assert_eq!(
            (o["parent"].clone(), o["name"].as_str(), o["protocol"].as_str()),
            (image["id"].clone(), Some(place), Some("vmi"))
        );
        assert_eq!(sha256_file(&dir.join(o["path"].as_str().unwrap())), sha, "{place}: stored bytes");
    }
    let mail_art = arts.iter().find(|a| a["kind"] == "mail").unwrap();
    assert_eq!(mail_art["message_id"], "<outbox.1@joe-vm.example.org>");
    // The overlay uploaded after it names it as its backing file: it is read through it (alone
    // it holds no filesystem at all), and finds the same.
    let ov = vmi.iter().find(|v| v["image_sha256"] == truth["overlay"]["sha256"]).expect("the overlay is inspected");
    assert_eq!(ov["image_name"], truth["overlay"]["name"]);
    assert_eq!(ov["backing_chain"][0], truth["overlay"]["backing_file"], "{ov}");
    assert_eq!(
        (ov["hostname"].clone(), ov["os"].clone()),
        (truth["hostname"].clone(), truth["os_pretty_name"].clone())
    );

    // ---- cross-links ----
    // The message sent over SMTP two seconds after the upload is the outbox message.
    let sent = iri
        .iter()
        .find(|r| r["event"] == "object" && r["protocol"] == "smtp" && r["kind"] == "mail")
        .expect("the mail sent is an object");
    assert_eq!(sent["sha256"], truth["outbox"]["sha256"]);
    let link = &sent["context"]["equals_artifact"];
    assert_eq!(link["place"], truth["outbox"]["path"], "{sent}");
    assert_eq!(link["image_object"], image["id"]);
    assert_eq!(link["uploaded_by"], "joe");
    assert!(link["says"].as_str().unwrap().starts_with("equals /home/joe/Mail/outbox/1.eml in image "), "{link}");
    // The image registered with the upload's digest names the upload.
    let create = iri.iter().find(|r| r["what"] == "image.create").unwrap();
    assert_eq!(create["detail"]["equals_intercepted_upload"]["object"], image["id"]);
    // The VM started from it: its crontab will flush the outbox an hour after boot.
    let plan = iri.iter().find(|r| r["what"] == "instance.crontab-plan").expect("a crontab plan");
    assert_eq!(plan["detail"]["instance"], "vm-77");
    let next = plan["detail"]["runs"][0]["next_runs"][0].as_str().unwrap();
    let want_next =
        chrono::DateTime::from_timestamp(vm_start + 3600, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    assert_eq!(next, want_next);
    assert_eq!(plan["detail"]["runs"][0]["line"], truth["crontab_line"]);

    // ---- HI2 and HI3, as asn1tools reads them ----
    assert!(pdus.iter().all(|p| p.get("error").is_none()), "PDUs the merged schema does not decode");
    assert_eq!(report["undecodable"], 0, "{report}");
    let tapir_iri = hi2_tapir(&pdus);
    let tv = tapir_iri.iter().find_map(|t| t["event"].get("vmi")).expect("TapirVmi on HI2");
    assert_eq!(tv["hostname"], truth["hostname"]);
    assert_eq!(tv["os"], truth["os_pretty_name"]);
    assert_eq!(tv["imageSHA256"], truth["image_sha256"]);
    assert_eq!(tv["crontabs"][0]["line"], truth["crontab_line"]);
    let hi2_arts = tv["artifacts"].as_array().unwrap();
    assert!(hi2_arts
        .iter()
        .any(|a| a["sha256"] == truth["outbox"]["sha256"] && a["messageID"] == "<outbox.1@joe-vm.example.org>"));
    let eq = tapir_iri
        .iter()
        .find_map(|t| t["event"].get("object").and_then(|o| o.get("equalsArtifact")))
        .expect("TapirObject.equalsArtifact on HI2");
    assert_eq!(eq, &link["says"]);
    // HI3: the sent mail and the outbox message are both EmailCC, each in its own CIN (the
    // SMTP session's, the inspection's).
    let email_cins: std::collections::BTreeSet<u64> = pdus
        .iter()
        .filter(|p| p["channel"] == "hi3")
        .filter(|p| {
            p["pdu"]["payload"]["cCPayloadSequence"]
                .as_array()
                .is_some_and(|s| s.iter().any(|c| c["cCContents"].get("emailCC").is_some()))
        })
        .filter_map(|p| p["pdu"]["pSHeader"]["communicationIdentifier"]["communicationIdentityNumber"].as_u64())
        .collect();
    let cins = [v["cin"].as_u64().unwrap(), sent["cin"].as_u64().unwrap()];
    assert!(cins.iter().all(|c| email_cins.contains(c)), "EmailCC CINs {email_cins:?}, want {cins:?}");
}

#[test]
fn scope_decides_who_gets_an_inspection() {
    let e = expect();
    let d = tempfile::tempdir().unwrap();
    let (events, _) = vmi_fixture_events(d.path(), &e);
    let case = replay(d.path(), &(warrant("LIID-IRI", "iri", None) + &warrant("LIID-CC", "cc", None)), &events, false);
    // IRI only: the image's bytes never reach an output, so nothing is inspected; its
    // description as IRI, as for any object.
    let iri = json_lines(&case.join("LIID-IRI/iri.jsonl"));
    assert!(iri.iter().any(|r| r["event"] == "object" && r["sha256"] == e["vmi"]["image_sha256"]));
    assert!(iri.iter().all(|r| r["event"] != "vmi" && r["what"] != "instance.crontab-plan"), "IRI-only: no inspection");
    assert!(json_lines(&case.join("LIID-IRI/objects.jsonl")).is_empty());
    // CC only: the report and artifacts as objects, without names or context; no IRI but the
    // warrant notices.
    let objects = json_lines(&case.join("LIID-CC/objects.jsonl"));
    for sha in [&e["vmi"]["outbox"]["sha256"], &e["vmi"]["crontab_sha256"], &e["vmi"]["media"]["sha256"]] {
        let o = objects.iter().find(|o| o["sha256"] == *sha).unwrap_or_else(|| panic!("CC-only: no artifact {sha}"));
        assert!(o.get("name").is_none() && o.get("context").is_none(), "{o}");
    }
    assert!(objects.iter().any(|o| o["kind"] == "report"));
    let cc_iri = json_lines(&case.join("LIID-CC/iri.jsonl"));
    assert!(cc_iri.iter().all(|r| r["event"] == "warrant"), "{cc_iri:?}");
}

#[test]
fn the_daemon_inspects_too_and_a_zero_time_limit_turns_it_off() {
    let e = expect();
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("warrants.toml"), warrant("LIID-V", "iri+cc", None)).unwrap();
    let pcap = root().join("pcaps/app/vmi.pcap");
    for (name, extra) in [("on", ""), ("off", "[limits]\ninspect_time_limit_secs = 0\n")] {
        let text = format!(
            "[capture]\nreplay = [{:?}]\npace = \"fast\"\nreplay_end = \"exit\"\n[paths]\nwarrants = \"warrants.toml\"\n\
             case_dir = \"case-{name}\"\nspool_dir = \"spool-{name}\"\n{extra}",
            pcap.display().to_string()
        );
        let config = d.path().join(format!("tapir-{name}.toml"));
        std::fs::write(&config, text).unwrap();
        let o = Command::new(TAPIR).args(["run", "--config"]).arg(&config).current_dir(d.path()).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let case = the_case(d.path(), &format!("case-{name}"));
        verify_case(&case);
        let iri = json_lines(&case.join("LIID-V/iri.jsonl"));
        let vmi: Vec<&Value> = iri.iter().filter(|r| r["event"] == "vmi").collect();
        let objects = json_lines(&case.join("LIID-V/objects.jsonl"));
        let outbox = objects.iter().filter(|o| o["sha256"] == e["vmi"]["outbox"]["sha256"]).count();
        if name == "on" {
            assert_eq!(vmi.len(), 2, "{iri:?}");
            assert_eq!(vmi[0]["hostname"], e["vmi"]["hostname"]);
            assert_eq!(outbox, 3, "the outbox message (in the image and its overlay) and the mail sent");
        } else {
            assert!(vmi.is_empty());
            assert_eq!(outbox, 1, "the mail sent only");
        }
        assert!(!case.join(".vmi-work").exists());
    }
}

#[test]
fn an_image_over_the_bound_is_reported_not_inspected() {
    let e = expect();
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("w.toml");
    std::fs::write(&w, warrant("LIID-V", "iri+cc", None)).unwrap();
    let case = d.path().join("case");
    // A bound between the overlay's size and the image's (sizes from the fixture's record).
    let size = |name: &str| {
        e["files"].as_array().unwrap().iter().find(|f| f["name"] == name).unwrap()["size"].as_u64().unwrap()
    };
    let (big, small) = (size("joe-vm.qcow2"), size("joe-vm-overlay.qcow2"));
    assert!(small < big);
    let bound = (small + big) / 2;
    let o = Command::new(TAPIR)
        .arg("replay")
        .arg(root().join("pcaps/app/vmi.pcap"))
        .arg("--warrants")
        .arg(&w)
        .arg("--out")
        .arg(&case)
        .args(["-q", "--inspect-max-bytes", &bound.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The image is over the bound; its overlay is not, and is read without its base, which was
    // not kept: what it holds not, it says.
    assert!(String::from_utf8_lossy(&o.stdout).contains("images: 1 inspected, 1 refused"));
    verify_case(&case);
    let iri = json_lines(&case.join("LIID-V/iri.jsonl"));
    let v = iri
        .iter()
        .find(|r| r["event"] == "vmi" && r["image_sha256"] == e["vmi"]["image_sha256"])
        .expect("the refusal is IRI");
    assert_eq!(v["outcome"], "too-large");
    assert_eq!(v["image_sha256"], e["vmi"]["image_sha256"]);
    assert!(v["notes"][0].as_str().unwrap().contains(&format!("larger than {bound} bytes")), "{v}");
    assert!(v.get("artifacts").is_none() && v.get("report_object").is_none());
    // The image itself is in the case whole, as any object.
    let objects = json_lines(&case.join("LIID-V/objects.jsonl"));
    assert!(objects.iter().any(|o| o["sha256"] == e["vmi"]["image_sha256"] && o["complete"] == true));
    assert!(!case.join(".vmi-work").exists());
    let ov = iri.iter().find(|r| r["event"] == "vmi" && r["image_name"] == "joe-vm-overlay.qcow2").unwrap();
    let notes: Vec<&str> = ov["notes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).collect();
    assert!(notes.iter().any(|n| n.starts_with("backing file \"joe-vm.qcow2\" not found")), "{ov}");
}

#[test]
fn mail_sent_before_the_upload_is_named_by_the_image_artifact() {
    // The same capture with the SMTP session moved (editcap -t) to ten seconds before the
    // first FTP packet: the traffic comes first, so the link is made from the image's side
    // (the artifact says which object it equals).
    let e = expect();
    let truth = &e["vmi"];
    let d = tempfile::tempdir().unwrap();
    let src = root().join("pcaps/app/vmi.pcap");
    let sh = |script: &str| {
        let o = Command::new("bash").arg("-euc").arg(script).current_dir(d.path()).output().unwrap();
        assert!(o.status.success(), "{script}: {}", String::from_utf8_lossy(&o.stderr));
    };
    sh(&format!(
        "tshark -r {src} -Y 'tcp.port == 25' -w smtp.pcap
         tshark -r {src} -Y 'not tcp.port == 25' -w rest.pcap
         editcap -t -12.3 smtp.pcap smtp-early.pcap
         mergecap -w mail-first.pcap smtp-early.pcap rest.pcap",
        src = src.display()
    ));
    let first_proto = Command::new("tshark")
        .arg("-r")
        .arg(d.path().join("mail-first.pcap"))
        .args(["-c", "1", "-T", "fields", "-e", "tcp.dstport"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&first_proto.stdout).trim(), "25", "the mail comes first");
    let w = d.path().join("w.toml");
    std::fs::write(&w, warrant("LIID-V", "iri+cc", None)).unwrap();
    let case = d.path().join("case");
    replay_into([d.path().join("mail-first.pcap")], [std::ffi::OsStr::new("--warrants"), w.as_os_str()], &case);
    verify_case(&case);
    let iri = json_lines(&case.join("LIID-V/iri.jsonl"));
    let sent = iri
        .iter()
        .find(|r| r["event"] == "object" && r["protocol"] == "smtp" && r["kind"] == "mail")
        .expect("the mail sent is an object");
    assert_eq!(sent["sha256"], truth["outbox"]["sha256"]);
    assert!(sent["context"].get("equals_artifact").is_none(), "no image was inspected yet when it was sent");
    let v = iri
        .iter()
        .find(|r| r["event"] == "vmi" && r["image_sha256"] == truth["image_sha256"])
        .expect("the image is inspected");
    let outbox = v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["place"].as_str().unwrap().ends_with(truth["outbox"]["path"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(outbox["sha256"], truth["outbox"]["sha256"]);
    let seen = &outbox["equals_object"];
    let objects = json_lines(&case.join("LIID-V/objects.jsonl"));
    let mail_object = objects
        .iter()
        .find(|o| o["sha256"] == truth["outbox"]["sha256"] && o["protocol"] == "smtp")
        .expect("the mail sent is in objects.jsonl");
    assert_eq!(seen["object"], mail_object["id"], "{outbox:#}");
    assert_eq!(seen["protocol"], "smtp", "{outbox:#}");
}
