//! FTP end to end on real captures: `tapir replay` with a warrant on every address, then the
//! case's `objects.jsonl` and `iri.jsonl` against independent truth:
//! - `pcaps/ftp-upload.pcap` (lftp PASV, lftp PORT, curl EPSV to pyftpdlib): every uploaded file
//!   with the name and sha256sum the fixture script recorded in `ftp-upload.expect.json`;
//! - public captures in `../shared/pcaps/` with peer-tool truth (`truth/**.json`: tshark
//!   `--export-objects ftp-data`, Suricata 7 `fileinfo` with `app_proto: ftp-data`).

use crate::common;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn sha256(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

fn shared() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/pcaps"))
}

struct Case {
    _dir: tempfile::TempDir,
    liid_dir: PathBuf,
    objects: Vec<Value>,
    iri: Vec<Value>,
}

impl Case {
    fn stored(&self, o: &Value) -> Vec<u8> {
        std::fs::read(self.liid_dir.join(o["path"].as_str().unwrap())).unwrap()
    }

    fn ftp_files(&self) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["protocol"] == "ftp" && o["kind"] == "file").collect()
    }

    fn transfers(&self) -> Vec<&Value> {
        self.iri.iter().filter(|r| r["event"] == "ftp" && r["action"] == "transfer").collect()
    }
}

fn replay(capture: &Path) -> Case {
    assert!(capture.exists(), "{} missing (CI clones shared/ next to the repo)", capture.display());
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.toml");
    std::fs::write(
        &w,
        "[[warrant]]\nliid = \"ALL\"\nstart = \"1970-01-01T00:00:00Z\"\nend = \"2200-01-01T00:00:00Z\"\n\
         scope = \"iri+cc\"\ntargets = [\"cidr:0.0.0.0/0\", \"cidr:::/0\"]\n",
    )
    .unwrap();
    let out = dir.path().join("case");
    let r = Command::new(env!("CARGO_BIN_EXE_tapir"))
        .arg("replay")
        .arg(capture)
        .args(["--warrants", w.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}: {}", capture.display(), String::from_utf8_lossy(&r.stderr));
    let liid_dir = out.join("ALL");
    let lines = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(liid_dir.join(name))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (objects, iri) = (lines("objects.jsonl"), lines("iri.jsonl"));
    Case { _dir: dir, liid_dir, objects, iri }
}

#[test]
fn ftp_upload_fixture_every_file_and_transfer_iri() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcaps");
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("ftp-upload.expect.json")).unwrap()).unwrap();
    let case = replay(&root.join("ftp-upload.pcap"));
    let files = exp["files"].as_array().unwrap();
    assert_eq!(case.ftp_files().len(), files.len());
    for f in files {
        let name = f["name"].as_str().unwrap();
        let sha = f["sha256"].as_str().unwrap();
        let o = case
            .ftp_files()
            .into_iter()
            .find(|o| o["sha256"] == sha)
            .unwrap_or_else(|| panic!("{name}: no ftp file object with sha256sum's {sha}"));
        assert_eq!(o["name"], name);
        assert_eq!(o["size"], f["size"]);
        let image = common::disk_image(Some(name), &case.liid_dir.join(o["path"].as_str().unwrap()));
        common::assert_image_digests(o, f, if image { common::Digests::Image } else { common::Digests::Sha256 }, name);
        assert_eq!(o["complete"], true);
        assert_eq!(sha256(&case.stored(o)), sha);
        // The data connection: the expect file names the file's sender (client) and receiver;
        // in active mode the server opened it, so the client is the flow's responder.
        let (client, server) = (f["flow"]["client"].as_str().unwrap(), f["flow"]["server"].as_str().unwrap());
        let active = f["flow"]["initiated_by"] == "server";
        let (orig, resp) = if active { (server, client) } else { (client, server) };
        assert_eq!((o["flow"]["orig"].as_str(), o["flow"]["resp"].as_str()), (Some(orig), Some(resp)), "{name}");
        assert_eq!(o["direction"], if active { "resp" } else { "orig" });
        assert_eq!(o["context"]["mode"], if active { "active" } else { "passive" });
        assert_eq!(o["context"]["user"], "joe");
        let ctl = &f["control"];
        assert_eq!(o["context"]["control"]["orig"], ctl["client"]);

        let t = case.transfers().into_iter().find(|t| t["transfer"]["sha256"] == sha).expect("transfer IRI");
        assert_eq!(
            (t["user"].as_str(), t["command"].as_str(), t["path"].as_str()),
            (Some("joe"), Some("STOR"), Some(name))
        );
        assert_eq!(t["reply"]["code"], 226);
        assert_eq!(t["transfer"]["data_flow"]["orig"], orig);
        assert_eq!(t["transfer"]["size"], f["size"]);
    }
    // The notes say which command announced each: PASV, PORT, EPSV.
    let mut by: Vec<&str> = case.transfers().iter().map(|t| t["transfer"]["announced_by"].as_str().unwrap()).collect();
    by.sort();
    assert_eq!(by, ["EPSV", "PASV", "PORT"]);
    let logins = case.iri.iter().filter(|r| r["action"] == "login" && r["success"] == true).count();
    assert_eq!(logins, 3);
    // PASS is never recorded (the fixture's password is "secret").
    for r in case.iri.iter().chain(&case.objects) {
        assert!(!r.to_string().contains("secret"), "{r}");
    }
}

/// One public capture, and what the peers found in it.
struct Public {
    capture: &'static str,
}

fn truth(capture: &str) -> Value {
    let p = shared().join("truth").join(format!("{capture}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// Where tapir and a peer tool legitimately differ, and how the test checks instead.
enum Divergence {
    /// The peer's bytes are the first `len` bytes of tapir's object.
    Prefix(usize),
}

fn divergence(capture: &str, tool: &str) -> Option<Divergence> {
    match (capture, tool) {
        // The capture stops mid-transfer (109,440 of 1,048,576 bytes, per the 150 reply): tapir
        // and Suricata keep every captured byte; tshark's export leaves out the last 1,440-byte
        // segment. tshark's file is tapir's object up to there.
        ("ndpi/tests/cfgs/default/pcap/ftp.pcap", "tshark") => Some(Divergence::Prefix(108_000)),
        // A 5.4 GB RETR of which the capture holds a few segments: tapir keeps holes as holes
        // (zero-filled, listed in `gaps`) so the object is not complete and no peer hash can
        // match; Suricata stops at the first hole (its file is tapir's first 14,480 bytes).
        ("zeek/testing/btest/Traces/ftp/bigtransfer.pcap", "suricata") => Some(Divergence::Prefix(14_480)),
        // tshark glues every captured segment together, holes removed (23,822 bytes). tapir's
        // reassembly drops segments too far ahead of the hole (flow layer bound), so even its
        // gap-free bytes differ: checked through Suricata's prefix above instead.
        ("zeek/testing/btest/Traces/ftp/bigtransfer.pcap", "tshark") => Some(Divergence::Prefix(0)),
        _ => None,
    }
}

fn check_public(p: &Public) {
    let t = truth(p.capture);
    let case = replay(&shared().join(p.capture));
    let files = case.ftp_files();
    let mut seen = 0;
    let peers = [
        ("tshark", t["tshark"]["objects"]["ftp-data"].as_array().cloned().unwrap_or_default(), "name"),
        (
            "suricata",
            t["suricata"]["fileinfo"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["app_proto"] == "ftp-data")
                .cloned()
                .collect::<Vec<_>>(),
            "filename",
        ),
    ];
    for (tool, list, name_key) in peers {
        // How many times each file was sent: tapir must have at least as many objects.
        let mut want: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &list {
            *want.entry(f["sha256"].as_str().unwrap()).or_default() += 1;
        }
        for f in &list {
            let sha = f["sha256"].as_str().unwrap();
            seen += 1;
            match divergence(p.capture, tool) {
                Some(Divergence::Prefix(len)) => {
                    let name = f[name_key].as_str().unwrap();
                    let o =
                        files.iter().find(|o| o["name"] == name).unwrap_or_else(|| panic!("{}: no {name}", p.capture));
                    assert_eq!(o["complete"], false, "{}: {o}", p.capture);
                    if len > 0 {
                        let b = case.stored(o);
                        assert_eq!(sha256(&b[..len.min(b.len())]), sha, "{} {tool}: prefix of {name}", p.capture);
                    }
                }
                None => {
                    let got: Vec<&&Value> = files.iter().filter(|o| o["sha256"] == sha).collect();
                    assert!(
                        got.len() >= want[sha].min(if tool == "tshark" { 1 } else { usize::MAX }),
                        "{} {tool}: {} ({sha}) found {} times, peer {}",
                        p.capture,
                        f[name_key],
                        got.len(),
                        want[sha]
                    );
                    // Suricata names the file by the command's argument, as tapir does; tshark
                    // adds "(1)" to repeated names, so only Suricata's names are compared.
                    if tool == "suricata" {
                        assert!(got.iter().any(|o| o["name"] == f[name_key]), "{} {f}", p.capture);
                    }
                }
            }
        }
    }
    assert!(seen > 0, "{}: the truth lists no ftp-data file", p.capture);
    // Every file object has its transfer IRI, with the same hash.
    for o in &files {
        if o["complete"] == true {
            assert!(
                case.transfers()
                    .iter()
                    .any(|t| t["transfer"]["object"] == o["id"] && t["transfer"]["sha256"] == o["sha256"]),
                "{}: no transfer IRI for {o}",
                p.capture
            );
        }
    }
}

macro_rules! public {
    ($($name:ident: $path:literal;)*) => {$(
        #[test]
        fn $name() {
            check_public(&Public { capture: $path });
        }
    )*};
}

// Where tapir finds more than the peers (a comment per capture; asserted above only as "at least"):
// - firewall-116: tapir also stores the APPE and STOU uploads (44 bytes each, passive and active)
//   and the LIST/NLST/MLSD listings (kind "listing"); Suricata stores no STOU/APPE file and tshark
//   no STOU file and no listing.
// - every capture with LIST/NLST: listings are objects of kind "listing", not files.
public! {
    ndpi_ftp_truncated_retr: "ndpi/tests/cfgs/default/pcap/ftp.pcap";
    suricata_bug_4877_active_stor_and_retr: "suricata-verify/tests/bug-4877/input.pcap";
    suricata_filestore_active: "suricata-verify/tests/filestore-ftp-active-mode/ftp-active-mode.pcap";
    suricata_filestore_passive: "suricata-verify/tests/filestore-ftp-passive-mode/ftp-passive-mode.pcap";
    suricata_all_data_stor_appe_stou: "suricata-verify/tests/firewall/ruletype-firewall-116-ftp-all-data-ipv4/input.pcap";
    suricata_download_active: "suricata-verify/tests/ftp/ftp-download-active/input.pcap";
    suricata_download_passive: "suricata-verify/tests/ftp/ftp-download-passive/input.pcap";
    suricata_ippair_leak_ten_retr: "suricata-verify/tests/ftp/ftp-ippair-leak-5204/input.pcap";
    suricata_upload_active: "suricata-verify/tests/ftp/ftp-upload-active/input.pcap";
    suricata_upload_passive: "suricata-verify/tests/ftp/ftp-upload-passive/input.pcap";
    suricata_output_eve_ftp_data: "suricata-verify/tests/output-eve-ftp-data/input.pcap";
    zeek_bigtransfer_with_holes: "zeek/testing/btest/Traces/ftp/bigtransfer.pcap";
    zeek_ipv4_passive_and_active: "zeek/testing/btest/Traces/ftp/ipv4.pcap";
    zeek_ipv6_epsv_and_eprt: "zeek/testing/btest/Traces/ftp/ipv6.pcap";
    zeek_retr: "zeek/testing/btest/Traces/ftp/retr.pcap";
}

#[test]
fn firewall_116_appe_and_stou_are_files_too() {
    // Suricata stores no APPE/STOU upload; tshark's export has no STOU. The bytes are the client's
    // data connection direction, checked here against tshark's follow of those streams.
    let cap = "suricata-verify/tests/firewall/ruletype-firewall-116-ftp-all-data-ipv4/input.pcap";
    let case = replay(&shared().join(cap));
    for cmd in ["APPE", "STOU"] {
        let objs: Vec<&Value> = case.ftp_files().into_iter().filter(|o| o["context"]["command"] == cmd).collect();
        assert_eq!(objs.len(), 2, "{cmd}: passive and active");
        for o in objs {
            let f = &o["flow"];
            let hex = follow_tcp(
                &shared().join(cap),
                f["orig"].as_str().unwrap(),
                f["resp"].as_str().unwrap(),
                o["direction"] == "orig",
            );
            assert_eq!(o["sha256"].as_str().unwrap(), sha256(&hex), "{cmd} {o}");
        }
    }
    let modes: Vec<&str> = case
        .transfers()
        .iter()
        .filter(|t| t["command"] == "STOU")
        .map(|t| t["transfer"]["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["passive", "active"]);
}

/// The bytes one side sent in a TCP connection, by tshark's `follow,tcp,raw`.
fn follow_tcp(capture: &Path, orig: &str, resp: &str, from_orig: bool) -> Vec<u8> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(capture)
        .args(["-q", "-z", &format!("follow,tcp,raw,{orig},{resp}")])
        .output()
        .expect("run tshark");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut bytes = Vec::new();
    let mut body = false;
    for line in text.lines() {
        if line.starts_with("Node 1:") {
            body = true;
            continue;
        }
        if !body || line.starts_with("====") || line.is_empty() {
            continue;
        }
        // Lines of node 1 (the responder) are indented by a tab.
        let resp_line = line.starts_with('\t');
        if resp_line != from_orig {
            bytes.extend(hex::decode(line.trim()).unwrap());
        }
    }
    bytes
}

#[test]
fn zeek_auth_tls_is_metadata_only() {
    // tshark sees one 234 reply (AUTH TLS accepted); after it, nothing is parsed as FTP.
    let cap = shared().join("zeek/testing/btest/Traces/ftp/ftp-auth-tls.pcap");
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&cap)
        .args(["-Y", "ftp.response.code == 234", "-T", "fields", "-e", "frame.number"])
        .output()
        .expect("run tshark");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let case = replay(&cap);
    let ftp: Vec<&Value> = case.iri.iter().filter(|r| r["event"] == "ftp").collect();
    assert_eq!(ftp.len(), 1, "{ftp:?}");
    assert_eq!((ftp[0]["action"].as_str(), ftp[0]["success"].as_bool()), (Some("auth-tls"), Some(true)));
    assert_eq!(ftp[0]["reply"]["code"], 234);
    assert!(case.ftp_files().is_empty());
}
