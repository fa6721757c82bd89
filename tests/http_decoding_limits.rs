//! A gzip bomb in an HTTP body, sent by curl to a Python server on loopback and captured by
//! tcpdump: tapir keeps the body as sent whole (its SHA-256 is `sha256sum` of the file curl sent)
//! and decodes it only up to the limits (`--max-decoded-bytes`, `--max-decode-ratio`), flagging
//! the cap; the decoded bytes it keeps are the first bytes of what `gunzip` makes.

use crate::common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// A server that reads a POST's body whole and answers 200.
const SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers['Content-Length'])
        while n > 0:
            n -= len(self.rfile.read(min(n, 1 << 16)))
        self.send_response(200)
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'ok')
    def log_message(self, *a):
        pass
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
"#;

/// Captures one `curl` POST of `body` (sent with `Content-Encoding: gzip`) on loopback.
fn capture_post(dir: &Path, body: &Path) -> std::path::PathBuf {
    let port = common::free_port();
    let mut server = Command::new("python3").args(["-c", SERVER, &port.to_string()]).spawn().unwrap();
    common::wait_listening(port);
    let pcap = dir.join("post.pcap");
    let port_s = port.to_string();
    common::capture_lo(&pcap, &["tcp", "port", &port_s], || {
        let st = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-H",
                "Content-Encoding: gzip",
                "-H",
                "Content-Type: application/octet-stream",
            ])
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg(format!("http://127.0.0.1:{port}/upload"))
            .status()
            .unwrap();
        assert!(st.success());
    });
    let _ = server.kill();
    let _ = server.wait();
    pcap
}

fn replay(dir: &Path, pcap: &Path, args: &[&str]) -> (Vec<Value>, Vec<Value>, std::path::PathBuf) {
    let out = dir.join(format!("case{}", args.len()));
    common::replay_one_warrant(dir, "L", &["ipv4:127.0.0.1"], pcap, &out, args);
    let root = out.join("L");
    (common::json_lines(&root.join("objects.jsonl")), common::json_lines(&root.join("iri.jsonl")), root)
}

#[test]
fn a_gzip_bomb_is_decoded_only_to_the_limits_and_kept_as_sent() {
    let d = tempfile::tempdir().unwrap();
    // 64 MiB of zeros: about 64 KiB of gzip.
    common::sh(d.path(), "head -c 67108864 /dev/zero | gzip -9 > bomb.gz");
    let sent = common::sh(d.path(), "sha256sum bomb.gz | cut -d' ' -f1").trim().to_string();
    let sent_len = std::fs::metadata(d.path().join("bomb.gz")).unwrap().len();
    let pcap = capture_post(d.path(), &d.path().join("bomb.gz"));

    // An explicit size cap of 4 MB.
    let (objects, iri, root) = replay(d.path(), &pcap, &["--max-decoded-bytes", "4000000"]);
    let as_sent = objects.iter().find(|o| o["sha256"] == sent.as_str()).expect("the body as sent, whole");
    assert_eq!(as_sent["size"], sent_len);
    assert_eq!(as_sent["complete"], true);
    assert_eq!(as_sent["context"]["as_sent"], true);
    assert_eq!(as_sent["context"]["content_encoding"], serde_json::json!(["gzip"]));
    let decoded = objects.iter().find(|o| o["parent"] == as_sent["id"]).expect("the decoded body");
    assert_eq!(decoded["size"], 4_000_000);
    assert_eq!(decoded["complete"], false);
    let first = common::sh(d.path(), "gunzip -c bomb.gz | head -c 4000000 | sha256sum | cut -d' ' -f1");
    assert_eq!(decoded["sha256"], first.trim());
    assert_eq!(std::fs::metadata(root.join(decoded["path"].as_str().unwrap())).unwrap().len(), 4_000_000);
    let http = iri.iter().find(|r| r["event"] == "http").expect("the request's IRI");
    assert!(http["anomalies"].as_array().unwrap().iter().any(|a| a == "decoding-capped"), "{http}");

    // The defaults: the ratio (250 decoded bytes per byte sent so far, past 1 MiB) stops it,
    // at the first segment that would pass it.
    let (objects, _, _) = replay(d.path(), &pcap, &[]);
    let as_sent = objects.iter().find(|o| o["sha256"] == sent.as_str()).expect("the body as sent");
    let decoded = objects.iter().find(|o| o["parent"] == as_sent["id"]).expect("the decoded body");
    let size = decoded["size"].as_u64().unwrap();
    assert!(size > 1 << 20 && size <= sent_len * 250 + (1 << 20), "{size}");
    assert_eq!((size - (1 << 20)) % 250, 0, "cut exactly at the ratio: {size}");
    assert_eq!(decoded["complete"], false);
    let first = common::sh(d.path(), &format!("gunzip -c bomb.gz | head -c {size} | sha256sum | cut -d' ' -f1"));
    assert_eq!(decoded["sha256"], first.trim());
}
