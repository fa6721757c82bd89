//! The metrics endpoint, fetched with curl and parsed by the reference Python client
//! (`prometheus_client.parser.text_string_to_metric_families`), an independent reading of the
//! text exposition format.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::Value;
use tapir::metrics::{serve, Metrics, TapirMetrics};

/// Parses exposition text with prometheus_client and prints
/// `[{name, type, samples: [{name, labels, value}]}]` as JSON.
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})
print(json.dumps(out))
"#;

fn python_parse(text: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with the pip package prometheus-client; see .ci/install-deps.sh)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

/// `curl` status code and body.
fn curl(url: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8(out.stdout).unwrap();
    let (body, code) = s.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

struct Server {
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    base: String,
}

impl Server {
    fn start(m: Metrics) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(serve(listener, m, async move {
            let _ = rx.await;
        }));
        Server { rt, stop: Some(tx), task: Some(task), base }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = self.rt.block_on(t);
        }
    }
}

fn family<'a>(fams: &'a [Value], name: &str) -> &'a Value {
    fams.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("no family {name} in {fams:?}"))
}

#[test]
fn standard_metrics_parse_with_prometheus_client() {
    let reg = Metrics::new();
    let m = TapirMetrics::new(reg.clone());
    m.packets.add(1234);
    m.bytes.add(987_654_321);
    m.flows.set(17);
    m.objects.add(2);
    m.announced_connections.add(5);
    m.fragments_refused.add(3);
    m.spool_bytes.set(4096);
    m.reassembly_bytes.set(65536);
    m.kernel_drops("eth0").unwrap().raise_to(7);
    m.decode_errors("truncated").unwrap().add(3);
    m.matched_packets("LIID-1").unwrap().add(42);
    m.matched_packets("LIID-2").unwrap().inc();
    m.lea_connected("lea-a", "hi2").unwrap().set(1);
    m.lea_connected("lea-a", "hi3").unwrap().set(0);

    let srv = Server::start(reg);
    let (code, body) = curl(&format!("{}/metrics", srv.base), &[]);
    assert_eq!(code, 200);
    let fams = python_parse(&body);

    // prometheus_client strips `_total` from counter family names and keeps it on samples.
    let expect_single = [
        ("tapir_packets", "counter", "tapir_packets_total", 1234.0),
        ("tapir_bytes", "counter", "tapir_bytes_total", 987_654_321.0),
        ("tapir_flows", "gauge", "tapir_flows", 17.0),
        ("tapir_objects", "counter", "tapir_objects_total", 2.0),
        ("tapir_announced_connections", "counter", "tapir_announced_connections_total", 5.0),
        ("tapir_announced_refused", "counter", "tapir_announced_refused_total", 0.0),
        ("tapir_fragments_refused", "counter", "tapir_fragments_refused_total", 3.0),
        ("tapir_spool_bytes", "gauge", "tapir_spool_bytes", 4096.0),
        ("tapir_reassembly_bytes", "gauge", "tapir_reassembly_bytes", 65536.0),
    ];
    for (fam, ty, sample, v) in expect_single {
        let f = family(&fams, fam);
        assert_eq!(f["type"], ty, "{fam}");
        assert_eq!(f["samples"].as_array().unwrap().len(), 1, "{fam}");
        assert_eq!(f["samples"][0]["name"], sample);
        assert_eq!(f["samples"][0]["value"].as_f64(), Some(v), "{fam}");
    }
    assert_eq!(family(&fams, "tapir_packets")["help"], "Packets captured.");

    let drops = family(&fams, "tapir_kernel_drops");
    assert_eq!(drops["type"], "counter");
    assert_eq!(drops["samples"][0]["labels"]["interface"], "eth0");
    assert_eq!(drops["samples"][0]["value"].as_f64(), Some(7.0));
    assert_eq!(family(&fams, "tapir_decode_errors")["samples"][0]["labels"]["kind"], "truncated");

    let matched = family(&fams, "tapir_matched_packets")["samples"].as_array().unwrap().clone();
    let got: Vec<(String, f64)> = matched
        .iter()
        .map(|s| (s["labels"]["liid"].as_str().unwrap().to_string(), s["value"].as_f64().unwrap()))
        .collect();
    assert_eq!(got, vec![("LIID-1".to_string(), 42.0), ("LIID-2".to_string(), 1.0)]);

    let lea = family(&fams, "tapir_lea_connected");
    assert_eq!(lea["type"], "gauge");
    let got: Vec<(String, String, f64)> = lea["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["labels"]["lea"].as_str().unwrap().to_string(),
                s["labels"]["channel"].as_str().unwrap().to_string(),
                s["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![("lea-a".into(), "hi2".into(), 1.0), ("lea-a".into(), "hi3".into(), 0.0)]);
}

#[test]
fn label_values_and_help_are_escaped() {
    let reg = Metrics::new();
    let nasty = "a\"b\\c\nd}e,f=g";
    reg.counter("tapir_test_total", "help with \\ and\nnewline", &[("kind", nasty)]).unwrap().add(5);
    reg.gauge("tapir_test_gauge", "g", &[("interface", "eth\"0"), ("lea", "x\\")]).unwrap().set(-3);
    let srv = Server::start(reg);
    let (code, body) = curl(&format!("{}/metrics", srv.base), &[]);
    assert_eq!(code, 200);
    // Escapes by hand from the 0.0.4 format: \" \\ \n in label values, \\ \n in HELP.
    assert!(body.contains(r#"tapir_test_total{kind="a\"b\\c\nd}e,f=g"} 5"#), "{body}");
    assert!(body.contains(r"# HELP tapir_test_total help with \\ and\nnewline"), "{body}");
    let fams = python_parse(&body);
    let f = family(&fams, "tapir_test");
    assert_eq!(f["help"], "help with \\ and\nnewline");
    assert_eq!(f["samples"][0]["labels"]["kind"], nasty);
    assert_eq!(f["samples"][0]["value"].as_f64(), Some(5.0));
    let g = family(&fams, "tapir_test_gauge");
    assert_eq!(g["samples"][0]["labels"]["interface"], "eth\"0");
    assert_eq!(g["samples"][0]["labels"]["lea"], "x\\");
    assert_eq!(g["samples"][0]["value"].as_f64(), Some(-3.0));
}

#[test]
fn healthz_flips_and_other_paths_are_404() {
    let reg = Metrics::new();
    let srv = Server::start(reg.clone());
    assert_eq!(curl(&format!("{}/healthz", srv.base), &[]), (503, "unhealthy\n".to_string()));
    reg.set_healthy(true);
    assert_eq!(curl(&format!("{}/healthz", srv.base), &[]), (200, "ok\n".to_string()));
    reg.set_healthy(false);
    assert_eq!(curl(&format!("{}/healthz", srv.base), &[]).0, 503);
    assert_eq!(curl(&format!("{}/", srv.base), &[]).0, 404);
    assert_eq!(curl(&format!("{}/metricsx", srv.base), &[]).0, 404);
    assert_eq!(curl(&format!("{}/metrics", srv.base), &["-X", "POST"]).0, 405);
    // A request head over the bound is refused, not buffered.
    let big = format!("X-Big: {}", "a".repeat(20_000));
    assert_eq!(curl(&format!("{}/metrics", srv.base), &["-H", &big]).0, 431);
}

#[test]
fn idle_client_does_not_block_others() {
    let reg = Metrics::new();
    reg.set_healthy(true);
    let srv = Server::start(reg);
    let addr = srv.base.trim_start_matches("http://").to_string();
    // A client that connects and sends half a request, then nothing.
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /metr").unwrap();
    assert_eq!(curl(&format!("{}/healthz", srv.base), &[]).0, 200);
    // The server's dropping the idle client after REQUEST_TIMEOUT is timed on a virtual clock
    // (metrics::tests::an_idle_client_is_dropped_after_the_request_timeout); here, on real
    // sockets, it is still connected and another client is served meanwhile.
    assert_eq!(curl(&format!("{}/metrics", srv.base), &[]).0, 200);
    drop(idle);
}

#[test]
fn concurrent_increments_add_up() {
    let reg = Metrics::new();
    let c = reg.counter("tapir_packets_total", "p", &[]).unwrap();
    let g = reg.gauge("tapir_flows", "f", &[]).unwrap();
    let threads = 8;
    let per = 100_000u64;
    let barrier = Arc::new(std::sync::Barrier::new(threads));
    let hs: Vec<_> = (0..threads)
        .map(|i| {
            let (c, g, b, reg) = (c.clone(), g.clone(), barrier.clone(), reg.clone());
            std::thread::spawn(move || {
                b.wait();
                // Half the threads register the same series again: same value behind it.
                let c = if i % 2 == 0 { reg.counter("tapir_packets_total", "p", &[]).unwrap() } else { c };
                for _ in 0..per {
                    c.inc();
                    g.inc();
                    g.dec();
                }
                g.add(1);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let srv = Server::start(reg);
    let fams = python_parse(&curl(&format!("{}/metrics", srv.base), &[]).1);
    assert_eq!(family(&fams, "tapir_packets")["samples"][0]["value"].as_f64(), Some((threads as u64 * per) as f64));
    assert_eq!(family(&fams, "tapir_flows")["samples"][0]["value"].as_f64(), Some(threads as f64));
}
