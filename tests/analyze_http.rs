//! The HTTP analyzer on real captures, through the binary (`tapir replay`), checked against
//! independent tools: the fixtures' `*.expect.json` (sha256sum of the files the clients sent) and,
//! for public captures, what tshark (`--export-objects http`), Suricata 7 (`fileinfo`) and the
//! source projects themselves (`truth/public_agreement.tsv`) extracted. Tapir's own earlier output
//! is never used as an expectation.

use crate::common;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/pcaps");

const ALL: &str = "[[warrant]]\nliid = \"ALL\"\nstart = \"1970-01-01T00:00:00Z\"\nend = \"2200-01-01T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [\"cidr:0.0.0.0/0\", \"cidr:::/0\"]\n";

struct Case {
    _dir: tempfile::TempDir,
    objects: Vec<Value>,
    http: Vec<Value>,
}

/// Replays `capture` with a warrant on every address; returns objects and HTTP IRI of LIID ALL.
fn replay(capture: &Path) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.toml");
    std::fs::write(&w, ALL).unwrap();
    let out = dir.path().join("case");
    let o = Command::new(env!("CARGO_BIN_EXE_tapir"))
        .arg("replay")
        .arg(capture)
        .arg("--warrants")
        .arg(&w)
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .output()
        .expect("run tapir");
    assert!(o.status.success(), "{}: {}", capture.display(), String::from_utf8_lossy(&o.stderr));
    let lines = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(out.join("ALL").join(name))
            .map(|s| s.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
            .unwrap_or_default()
    };
    let http = lines("iri.jsonl").into_iter().filter(|r| r["event"] == "http").collect();
    Case { objects: lines("objects.jsonl"), http, _dir: dir }
}

fn files(c: &Case) -> Vec<&Value> {
    c.objects.iter().filter(|o| o["kind"] == "file").collect()
}

fn expect(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcaps").join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn http_put_fixture_every_upload_by_sha256() {
    let exp = expect("http-put.expect.json");
    let c = replay(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcaps/http-put.pcap"));
    let f = files(&c);
    for want in exp["files"].as_array().unwrap() {
        let sha = want["sha256"].as_str().unwrap();
        let o = f.iter().find(|o| o["sha256"] == sha).unwrap_or_else(|| panic!("{} not found", want["name"]));
        assert_eq!(o["name"], want["name"], "name: multipart filename or last URI segment");
        assert_eq!(o["size"], want["size"]);
        let name = want["name"].as_str().unwrap();
        common::assert_image_digests(o, want, common::Digests::of_expected(want), name);
        assert_eq!(o["direction"], "orig");
        assert_eq!(o["complete"], true);
        assert_eq!(o["context"]["method"], want["method"]);
        assert_eq!(o["context"]["uri"], want["uri"]);
        assert!(o.get("parent").is_none(), "multipart parts have no parent: the whole body is not stored");
        match want["transfer_encoding"].as_str() {
            Some("chunked") => assert!(o.get("declared_size").is_none()),
            _ if want["content_type"].is_null() => assert_eq!(o["declared_size"], want["size"]),
            _ => {}
        }
        // Its IRI event names it with the same hash, with the server's status.
        let ev = c
            .http
            .iter()
            .find(|e| e["request_objects"].as_array().is_some_and(|v| v.iter().any(|r| r["sha256"] == sha)))
            .unwrap_or_else(|| panic!("no event for {}", want["name"]));
        assert_eq!(ev["method"], want["method"]);
        assert_eq!(ev["uri"], want["uri"]);
        assert_eq!(ev["status"], 201, "tools/http_upload_server.py replies 201");
        if let Some(n) = want["body_bytes"].as_u64() {
            assert_eq!(ev["request_body_len"], n, "multipart body size on the wire");
        }
        assert!(ev.get("anomalies").is_none(), "{ev}");
    }
    // 4 requests (PUT, POST, chunked PUT, the other host's GET), one event each.
    assert_eq!(c.http.len(), 4);
    assert!(c.objects.iter().all(|o| o["kind"] != "stream"), "every connection parsed as HTTP");
}

#[test]
fn vxlan_fixture_put_inside_the_overlay() {
    let exp = expect("vxlan.expect.json");
    let c = replay(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcaps/vxlan.pcap"));
    for want in exp["files"].as_array().unwrap() {
        let sha = want["sha256"].as_str().unwrap();
        let o = c.objects.iter().find(|o| o["sha256"] == sha).unwrap_or_else(|| panic!("{} not found", want["name"]));
        if want["kind"] == "http" {
            assert_eq!(o["kind"], "file");
            assert_eq!(o["name"], want["name"]);
            assert_eq!(o["context"]["uri"], want["uri"]);
            assert_eq!(o["complete"], true);
            assert!(o["flow"]["tunnels"].as_array().is_some_and(|t| !t.is_empty()), "overlay kept in the flow");
        } else {
            // ncat's raw bytes are not HTTP: the probe must leave them to the stream fallback.
            assert_eq!(o["kind"], "stream", "{}", want["name"]);
        }
    }
}

/// Which peer results a public capture is held to.
#[derive(Clone, Copy)]
struct Src {
    tshark: bool,
    suricata: bool,
    stated: bool,
}
const ALL_SRC: Src = Src { tshark: true, suricata: true, stated: true };
/// tshark exports a multipart body whole; tapir stores its parts instead (see the analyzer doc).
const NOT_TSHARK: Src = Src { tshark: false, suricata: true, stated: true };

fn truth(rel: &str) -> Value {
    let p = format!("{SHARED}/truth/{rel}.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))).unwrap()
}

/// The sha256 values the chosen peers found in `rel` (non-empty files; Suricata's only when it
/// saw the file whole: it hashes a file with gaps without the missing bytes, tapir zero-fills
/// them).
fn expected(rel: &str, src: Src) -> BTreeMap<String, String> {
    let t = truth(rel);
    let mut out = BTreeMap::new();
    if src.tshark {
        for o in t["tshark"]["objects"]["http"].as_array().into_iter().flatten() {
            if o["size"].as_u64().unwrap_or(0) > 0 {
                out.insert(o["sha256"].as_str().unwrap().to_string(), format!("tshark {}", o["name"]));
            }
        }
    }
    if src.suricata {
        for o in t["suricata"]["fileinfo"].as_array().into_iter().flatten() {
            if o["app_proto"] == "http"
                && o["size"].as_u64().unwrap_or(0) > 0
                && o["gaps"] == false
                && o["state"] == "CLOSED"
            {
                out.insert(o["sha256"].as_str().unwrap().to_string(), format!("suricata {}", o["filename"]));
            }
        }
    }
    if src.stated {
        let tsv = std::fs::read_to_string(format!("{SHARED}/truth/public_agreement.tsv")).unwrap();
        for line in tsv.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.get(1).is_some_and(|c| c.strip_prefix("public/") == Some(rel)) {
                out.insert(cols[4].to_string(), format!("stated by {} {}", cols[0], cols[3]));
            }
        }
    }
    out
}

/// Every file the peers list is among tapir's file objects, except `diverge` (sha256 prefix,
/// reason), which must then really be absent (so the comment stays true).
fn check_public(rel: &str, src: Src, diverge: &[(&str, &str)]) {
    let c = replay(Path::new(&format!("{SHARED}/{rel}")));
    let got: BTreeSet<&str> = files(&c).iter().filter_map(|o| o["sha256"].as_str()).collect();
    let want = expected(rel, src);
    assert!(!want.is_empty(), "{rel}: no truth to compare with");
    for (sha, who) in &want {
        if let Some((_, why)) = diverge.iter().find(|(p, _)| sha.starts_with(p)) {
            assert!(!got.contains(sha.as_str()), "{rel}: {who} now found; drop the divergence ({why})");
            continue;
        }
        assert!(got.contains(sha.as_str()), "{rel}: {who} sha256 {sha} not found; tapir has {got:?}");
    }
    assert!(!c.http.is_empty(), "{rel}: no HTTP event");
}

#[test]
fn public_zeek_pipelined_requests() {
    check_public("zeek/testing/btest/Traces/http/pipelined-requests.pcap", ALL_SRC, &[]);
}

#[test]
fn public_zeek_post() {
    check_public("zeek/testing/btest/Traces/http/post.pcap", ALL_SRC, &[]);
}

#[test]
fn public_zeek_multipart_parts() {
    // Zeek states each of the 3 form fields as a file (1-file..3-file) and the response (4-file).
    check_public("zeek/testing/btest/Traces/http/multipart.pcap", NOT_TSHARK, &[]);
}

#[test]
fn public_zeek_100_continue() {
    check_public("zeek/testing/btest/Traces/http/100-continue.pcap", ALL_SRC, &[]);
}

#[test]
fn public_zeek_putty_upload() {
    check_public("zeek/testing/btest/Traces/http/putty-upload.pcap", ALL_SRC, &[]);
}

#[test]
fn public_zeek_smuggled_request() {
    check_public("zeek/testing/btest/Traces/http/smuggle-http-request.pcap", ALL_SRC, &[]);
}

#[test]
fn public_zeek_deeply_nested_mime() {
    check_public("zeek/testing/btest/Traces/http/deeply-nested-mime.pcap", ALL_SRC, &[]);
}

#[test]
fn public_zeek_post_large() {
    check_public("zeek/testing/btest/Traces/http/http-post-large.pcap", ALL_SRC, &[]);
}

#[test]
fn public_zeek_vxlan_encapsulated() {
    check_public("zeek/testing/btest/Traces/tunnels/vxlan-encapsulated-http.pcap", ALL_SRC, &[]);
}

#[test]
fn public_suricata_multipart_post() {
    check_public("suricata-verify/tests/file-match-crossed/http-multipart-post.pcap", NOT_TSHARK, &[]);
}

#[test]
fn public_suricata_post_file() {
    check_public("suricata-verify/tests/http-post-file/input.pcap", ALL_SRC, &[]);
}

#[test]
fn public_suricata_post_data_decompression() {
    check_public("suricata-verify/tests/http-post-data-decompression/input.pcap", ALL_SRC, &[]);
}

#[test]
fn public_suricata_issue_3703_pdf() {
    check_public("suricata-verify/tests/issue-3703/input.pcap", ALL_SRC, &[]);
}

#[test]
fn public_suricata_ipv6() {
    check_public("suricata-verify/tests/http-ipv6/input.pcap", ALL_SRC, &[]);
}

#[test]
fn public_suricata_rst_unacked_stream() {
    // Suricata-verify also states b6e5d831... for the second download, which Suricata saw with
    // gaps (state TRUNCATED): it hashes only the bytes it had, tapir zero-fills the 5 holes
    // (the object is incomplete with its gap list), so the hashes cannot agree.
    check_public(
        "suricata-verify/tests/tcp-rst-unacked-stream-11/TLPW1-tcp-47.32.209.86-10.11.23.101-tcp-80-49470.pcap",
        ALL_SRC,
        &[("b6e5d8314e3c", "suricata hashes a gapped file without its holes")],
    );
}

#[test]
fn public_ndpi_webdav() {
    check_public("ndpi/tests/cfgs/default/pcap/webdav.pcap", ALL_SRC, &[]);
}

#[test]
fn public_fq_gzip_download() {
    // tshark and Suricata both store the gunzipped body, as tapir does.
    check_public("fq/format/pcap/testdata/http_gzip.cap", ALL_SRC, &[]);
}
