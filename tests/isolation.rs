//! Nothing one LEA receives depends on another warrant's existence.
//!
//! The same replay (the use cases' protocols from `pcaps/app/`) runs twice: with warrant A
//! alone, then with A and two others: B on the same target (IRI only), C on the server the
//! target talks to (so every packet of A's is also C's), both delivered to another LEA. A's
//! case directory and every PDU A's LEMF received are byte for byte the same in both runs,
//! except what carries the wall clock: the manifest's creation time (and so its signature) and
//! the keep-alives. Object ids, CINs, sequence numbers, integrity hashes and signatures included.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const CAPTURES: [&str; 4] = ["pcaps/app/ftp.pcap", "pcaps/app/smtp.pcap", "pcaps/app/http.pcap", "pcaps/app/ssh.pcap"];

fn warrant(liid: &str, scope: &str, target: &str, lea: &str) -> String {
    format!(
        "[[warrant]]\nliid = \"{liid}\"\nstart = \"2026-11-01T00:00:00Z\"\nend = \"2027-01-01T00:00:00Z\"\n\
         scope = \"{scope}\"\ntargets = [\"{target}\"]\nlea = \"{lea}\"\n\n"
    )
}

/// An LEA whose ports are placeholders `run` fills in.
fn lea(name: &str, hi2: &str, hi3: &str, key: &Path) -> String {
    format!(
        "[[lea]]\nname = \"{name}\"\nhi2 = \"127.0.0.1:{hi2}\"\nhi3 = \"127.0.0.1:{hi3}\"\noperator_id = \"OPER-O\"\n\
         network_element_id = \"tapir-1\"\ncountry = \"NZ\"\nkeepalive = 5\n\
         integrity = {{ hash_every = 8, sign_every = 2, key = \"{}\" }}\n\n",
        key.display()
    )
}

/// Replays the captures under `warrants_text` (with `{A2}`/`{A3}`/`{B2}`/`{B3}` standing for the
/// ports of LEA A's and LEA B's LEMFs); returns the case and the PDUs LEA A's LEMF received, as
/// (channel, hex) in order, keep-alives left out.
fn run(dir: &Path, name: &str, warrants_text: &str, key: &Path) -> (PathBuf, Vec<(String, String)>) {
    let (a2, a3, b2, b3) = (free_port(), free_port(), free_port(), free_port());
    let lemf_a = PyLemf::start(a2, a3, &dir.join(format!("{name}-a.json")));
    let lemf_b = PyLemf::start(b2, b3, &dir.join(format!("{name}-b.json")));
    let text = warrants_text
        .replace("{A2}", &a2.to_string())
        .replace("{A3}", &a3.to_string())
        .replace("{B2}", &b2.to_string())
        .replace("{B3}", &b3.to_string());
    let w = dir.join(format!("{name}.toml"));
    std::fs::write(&w, text).unwrap();
    let case = dir.join(format!("case-{name}"));
    let mut cmd = Command::new(TAPIR);
    cmd.arg("replay");
    for c in CAPTURES {
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(c));
    }
    let o = cmd
        .arg("--warrants")
        .arg(&w)
        .arg("--out")
        .arg(&case)
        .arg("--signing-key")
        .arg(key)
        .arg("--deliver")
        .arg(dir.join(format!("spool-{name}")))
        .args(["--deliver-wait", "30", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, pdus) = lemf_a.finish();
    drop(lemf_b);
    let received = pdus
        .iter()
        .filter(|p| p["pdu"]["payload"]["tRIPayload"].get("keep-alive").is_none())
        .map(|p| (p["channel"].as_str().unwrap().to_string(), p["hex"].as_str().unwrap().to_string()))
        .collect();
    (case, received)
}

/// Every file of a LIID's case directory but its manifest (which records the signing time), as
/// (path, bytes).
fn liid_files(case: &Path, liid: &str) -> Vec<(String, Vec<u8>)> {
    let root = case.join(liid);
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(&root).unwrap().display().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if !rel.starts_with("MANIFEST.json") {
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_warrants_case_and_deliveries_are_the_same_whether_or_not_other_warrants_exist() {
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("op.key");
    assert!(Command::new(TAPIR).arg("keygen").arg(&key).output().unwrap().status.success());
    let a = warrant("LIID-A", "iri+cc", "ipv4:198.51.100.7", "lea-a") + &lea("lea-a", "{A2}", "{A3}", &key);
    let b = lea("lea-b", "{B2}", "{B3}", &key);
    // B and C come first: they open their flows and objects before A does at every packet.
    let abc = warrant("LIID-B", "iri", "ipv4:198.51.100.7", "lea-b")
        + &warrant("LIID-C", "iri+cc", "ipv4:203.0.113.10", "lea-b")
        + &a
        + &b;

    let (alone, pdus_alone) = run(d.path(), "alone", &a, &key);
    let (with, pdus_with) = run(d.path(), "with", &abc, &key);

    // The others did get traffic: A's sameness is not for lack of company.
    assert!(!json_lines(&with.join("LIID-B/iri.jsonl")).is_empty());
    assert!(!json_lines(&with.join("LIID-C/objects.jsonl")).is_empty());

    let (fa, fw) = (liid_files(&alone, "LIID-A"), liid_files(&with, "LIID-A"));
    assert!(fa.iter().any(|(p, _)| p.starts_with("objects/")), "A has objects");
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(names(&fa), names(&fw));
    for ((p, x), (_, y)) in fa.iter().zip(&fw) {
        if x != y {
            let keep = std::env::var("ISOLATION_KEEP").is_ok();
            if keep {
                let _ = d.keep();
            }
            panic!("LIID-A/{p} differs when other warrants exist");
        }
    }
    // A's own manifest verifies alone and lists the same files with the same digests.
    for case in [&alone, &with] {
        let o = Command::new(TAPIR).arg("verify").arg(case.join("LIID-A")).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let m = std::fs::read_to_string(case.join("LIID-A/MANIFEST.json")).unwrap();
        assert!(!m.contains("LIID-B") && !m.contains("LIID-C"), "A's manifest names another LIID");
    }

    // HI2 and HI3 as A's LEMF received them: the same PDUs, byte for byte, in the same order.
    assert!(pdus_alone.len() > 1000, "{} PDUs", pdus_alone.len());
    for ch in ["hi2", "hi3"] {
        let pick =
            |v: &[(String, String)]| v.iter().filter(|(c, _)| c == ch).map(|(_, h)| h.clone()).collect::<Vec<_>>();
        let (x, y) = (pick(&pdus_alone), pick(&pdus_with));
        assert_eq!(x.len(), y.len(), "{ch}: PDU count");
        if let Some(i) = x.iter().zip(&y).position(|(a, b)| a != b) {
            panic!("{ch}: PDU {i} differs:\n alone {}\n with  {}", x[i], y[i]);
        }
    }
}
