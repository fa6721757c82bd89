//! The X1 HTTPS endpoint driven by real clients: curl for the ordinary requests, a raw
//! tokio-rustls client where curl cannot misbehave enough (100 MB Content-Length, slowloris,
//! malformed heads). Certificates are made with openssl at test time; fingerprints are checked
//! against `openssl x509 -outform DER | sha256sum`.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tapir::audit::{AuditEntry, AuditLog};
use tapir::deliver::manifest::SigningKey;
use tapir::x1::https::{serve, ClientId, HandlerReply, Limits, Role, X1Client, X1Handler, X1TlsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{fingerprint, make_x1_pki, sh, tls_connector};

/// Records what reached it; answers 200 with the role, audits the body's first line as the XID.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(ClientId, Vec<u8>)>>,
}

impl X1Handler for Recorder {
    fn handle(&self, client: &ClientId, body: &[u8]) -> HandlerReply {
        self.calls.lock().unwrap().push((client.clone(), body.to_vec()));
        let xid = String::from_utf8_lossy(body).lines().next().unwrap_or_default().to_string();
        let role = match client.role {
            Role::Admf => "admf",
            Role::Auditor => "auditor",
        };
        HandlerReply {
            status: 200,
            body: format!("<ok role=\"{role}\"/>").into_bytes(),
            audit: vec![AuditEntry {
                xid: Some(xid),
                liid: Some("LIID-1".into()),
                ..AuditEntry::new("TestRequest", "ok")
            }],
        }
    }
}

struct Server {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    handler: Arc<Recorder>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    public_key: String,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || make_x1_pki(&d, &[("unlisted", "unlisted-cn")])).await.unwrap();
        let d = dir.path();
        let key_path = d.join("audit.key");
        let public_key = SigningKey::generate_to(&key_path).unwrap();
        let audit =
            Arc::new(AuditLog::open(&d.join("audit.jsonl"), Some(SigningKey::load(&key_path).unwrap()), 5).unwrap());
        // The `[[x1.client]]` list as the daemon's TOML would give it.
        #[derive(serde::Deserialize)]
        struct Top {
            x1: X1TlsConfig,
        }
        let toml = format!(
            "[x1]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\
             [[x1.client]]\nsubject_cn = \"admf-1\"\nrole = \"admf\"\n\
             [[x1.client]]\nsubject_cn = \"auditor-1\"\nrole = \"auditor\"\n",
            d.join("srv.pem"),
            d.join("srv.key"),
            d.join("ca.pem")
        );
        let mut tls = toml::from_str::<Top>(&toml).unwrap().x1;
        assert_eq!(tls.clients[1], X1Client { subject_cn: "auditor-1".into(), role: Role::Auditor });
        tls.limits = Limits {
            max_body_bytes: 1 << 20,
            header_timeout: Duration::from_millis(1500),
            idle_timeout: Duration::from_secs(5),
            ..Limits::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(Recorder::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let h: Arc<dyn X1Handler> = handler.clone();
        let task = tokio::spawn(async move {
            serve(listener, tls, h, audit, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Server { dir, addr, handler, stop: Some(tx), task: Some(task), public_key }
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    /// curl with the client certificate `cert` (None: none); returns (exit code, HTTP status,
    /// body). Status 0 when curl got no answer.
    async fn curl(&self, cert: Option<&str>, args: &[&str], path: &str, body: &[u8]) -> (i32, u16, String) {
        let d = self.d().to_path_buf();
        let bodyfile = d.join(format!("body-{}", rand_suffix()));
        std::fs::write(&bodyfile, body).unwrap();
        let url = format!("https://127.0.0.1:{}{path}", self.addr.port());
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "10", "--cacert"]).arg(d.join("ca.pem"));
        if let Some(n) = cert {
            c.arg("--cert").arg(d.join(format!("{n}.pem"))).arg("--key").arg(d.join(format!("{n}.key")));
        }
        c.args(["-o", "-", "-w", "\n%{http_code}"]).args(args);
        if !args.contains(&"-X") {
            c.args(["-X", "POST"]).arg("--data-binary").arg(format!("@{}", bodyfile.display()));
        }
        c.arg(url);
        let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (out.status.code().unwrap_or(-1), code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// A good request from admf-1: the server still serves.
    async fn still_serves(&self) {
        let n = self.handler.calls.lock().unwrap().len();
        let (rc, status, body) = self.curl(Some("admf"), &[], "/X1/NE", b"still-serving\n").await;
        assert_eq!((rc, status, body.as_str()), (0, 200, "<ok role=\"admf\"/>"));
        assert_eq!(self.handler.calls.lock().unwrap().len(), n + 1);
    }

    fn connector(&self, cert: &str) -> tokio_rustls::TlsConnector {
        tls_connector(self.d(), Some(cert))
    }

    async fn raw(&self, cert: &str) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        self.connector(cert).connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap()
    }

    /// Stops the server (which signs the log on drop) and returns the audit log's lines.
    async fn stop(mut self) -> (tempfile::TempDir, Vec<serde_json::Value>, String) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
        let text = std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap();
        let lines = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (self.dir, lines, self.public_key)
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Reads one response (head + Content-Length body) or until EOF/timeout; its status and text.
async fn read_response<R: tokio::io::AsyncRead + Unpin>(r: &mut R, limit: Duration) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                let text = String::from_utf8_lossy(&buf[..end + 4 + len]).to_string();
                return (status, text);
            }
        }
        match tokio::time::timeout_at(deadline, r.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return (0, String::from_utf8_lossy(&buf).to_string()),
        }
    }
}

fn find<'a>(
    lines: &'a [serde_json::Value],
    what: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|l| l["what"] == what && f(l))
        .unwrap_or_else(|| panic!("no audit line {what} as expected in {lines:#?}"))
}

fn detail(l: &serde_json::Value) -> String {
    l["detail"].as_str().unwrap_or_default().to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_refused_certificates() {
    let s = Server::start().await;
    let d = s.d().to_path_buf();

    // admf-1 reaches the handler with its role, CN and the fingerprint openssl computes.
    let (rc, status, body) = s.curl(Some("admf"), &[], "/X1/NE", b"xid-admf\n<X1Request/>").await;
    assert_eq!((rc, status, body.as_str()), (0, 200, "<ok role=\"admf\"/>"));
    let admf_fp = fingerprint(&d, "admf");
    {
        let calls = s.handler.calls.lock().unwrap();
        let (c, b) = calls.last().unwrap();
        assert_eq!(c, &ClientId { subject_cn: "admf-1".into(), fingerprint: admf_fp.clone(), role: Role::Admf });
        assert_eq!(b, b"xid-admf\n<X1Request/>");
    }
    // auditor-1, on `/`, gets its role passed.
    let (rc, status, body) = s.curl(Some("auditor"), &[], "/", b"xid-auditor\n").await;
    assert_eq!((rc, status, body.as_str()), (0, 200, "<ok role=\"auditor\"/>"));
    assert_eq!(s.handler.calls.lock().unwrap().last().unwrap().0.role, Role::Auditor);

    // No certificate, another CA's certificate (even with a listed CN), an expired one: the
    // handshake fails, curl gets no HTTP answer at all.
    for cert in [None, Some("rogue"), Some("expired")] {
        let calls_before = s.handler.calls.lock().unwrap().len();
        let (rc, status, _) = s.curl(cert, &[], "/X1/NE", b"xid-never\n").await;
        assert!(rc != 0 && status == 0, "{cert:?}: curl exit {rc}, status {status}");
        assert_eq!(s.handler.calls.lock().unwrap().len(), calls_before, "{cert:?} reached the handler");
        s.still_serves().await;
    }
    // TLS 1.2, even with a good certificate: refused in the handshake.
    let (rc, status, _) = s.curl(Some("admf"), &["--tls-max", "1.2"], "/X1/NE", b"xid-never\n").await;
    assert!(rc != 0 && status == 0, "TLS 1.2: curl exit {rc}, status {status}");
    s.still_serves().await;

    // A certificate from the CA whose CN is not listed: 403, never the handler.
    let n = s.handler.calls.lock().unwrap().len();
    let (rc, status, _) = s.curl(Some("unlisted"), &[], "/X1/NE", b"xid-never\n").await;
    assert_eq!((rc, status), (0, 403));
    assert_eq!(s.handler.calls.lock().unwrap().len(), n);
    s.still_serves().await;

    let rogue_fp = fingerprint(&d, "rogue");
    let expired_fp = fingerprint(&d, "expired");
    let unlisted_fp = fingerprint(&d, "unlisted");
    let (dir, lines, public) = s.stop().await;

    let ok = find(&lines, "TestRequest", |l| l["xid"] == "xid-admf");
    assert_eq!((ok["who"].as_str(), ok["fingerprint"].as_str()), (Some("admf-1"), Some(admf_fp.as_str())));
    assert!(ok["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(ok["liid"], "LIID-1");
    find(&lines, "TestRequest", |l| l["xid"] == "xid-auditor" && l["who"] == "auditor-1");
    let hs =
        |l: &serde_json::Value| l["result"] == "refused" && l["peer"].as_str().unwrap_or("").starts_with("127.0.0.1:");
    let none = find(&lines, "tls-handshake", |l| hs(l) && l["fingerprint"].is_null());
    assert!(detail(none).contains("no certificate"), "{none}");
    let rogue = find(&lines, "tls-handshake", |l| hs(l) && l["fingerprint"] == rogue_fp.as_str());
    assert!(detail(rogue).contains("unknownissuer"), "{rogue}");
    // The rogue certificate claims CN admf-1: said, as unverified, and never as `who`.
    assert!(rogue["who"].is_null(), "{rogue}");
    assert!(detail(rogue).contains("not verified: cn \"admf-1\""), "{rogue}");
    let expired = find(&lines, "tls-handshake", |l| hs(l) && l["fingerprint"] == expired_fp.as_str());
    assert!(detail(expired).contains("expired"), "{expired}");
    let v12 = find(&lines, "tls-handshake", |l| hs(l) && detail(l).contains("version"));
    assert!(v12["fingerprint"].is_null(), "{v12}");
    let unlisted = find(&lines, "x1-request", |l| l["fingerprint"] == unlisted_fp.as_str());
    assert_eq!((unlisted["who"].as_str(), unlisted["result"].as_str()), (Some("unlisted-cn"), Some("refused")));
    assert!(detail(unlisted).starts_with("403"), "{unlisted}");
    // No request body ever lands in the audit log.
    let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(!text.contains("X1Request") && !text.contains("xid-never"));
    // The log the server wrote verifies with its key (signed on close).
    let out = Command::new(env!("CARGO_BIN_EXE_tapir"))
        .args(["audit", "verify"])
        .arg(dir.path().join("audit.jsonl"))
        .args(["--key", &public])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("all signed"), "{report}");
}

/// `n` TCP connections to `addr` from `source` (a loopback address: all of 127/8 is ours) that
/// never send a byte, held open until the returned vector is dropped.
async fn idle_connections(addr: SocketAddr, sources: &[std::net::Ipv4Addr], n: usize) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::new();
    for i in 0..n {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::from((sources[i % sources.len()], 0))).unwrap();
        if let Ok(c) = s.connect(addr).await {
            held.push(c);
        }
    }
    held
}

/// One address opening 100 idle connections cannot keep the ADMF (another address) out; the
/// refusals do not write 100 audit lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_lock_the_admf_out() {
    let s = Server::start().await;
    let held = idle_connections(s.addr, &["127.0.0.2".parse().unwrap()], 100).await;
    let t = Instant::now();
    s.still_serves().await;
    assert!(t.elapsed() < Duration::from_secs(5), "the ADMF waited {:?}", t.elapsed());
    drop(held);
    let (_dir, lines, _) = s.stop().await;
    let from_attacker: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.2:"))).collect();
    // 92 refused for the address limit, 8 more when their handshake timed out: one by one up
    // to the burst, then one summary.
    assert!(from_attacker.len() <= tapir::x1::https::AUDIT_BURST as usize, "{}", from_attacker.len());
    let summary = lines.iter().find(|l| l["what"] == "tls-refusals").expect("a summary of the refusals");
    let d = detail(summary);
    assert!(d.contains("per-address limit") && d.contains("127.0.0.2 "), "{d}");
}

/// Idle connections from 60 addresses take every handshake slot; the oldest give theirs up to
/// newcomers, so the ADMF still gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_addresses_cannot_hold_the_handshake_slots() {
    let s = Server::start().await;
    let sources: Vec<std::net::Ipv4Addr> = (10..70).map(|i| std::net::Ipv4Addr::new(127, 0, 0, i)).collect();
    let held = idle_connections(s.addr, &sources, 60).await;
    let t = Instant::now();
    s.still_serves().await;
    assert!(t.elapsed() < Duration::from_secs(5), "the ADMF waited {:?}", t.elapsed());
    drop(held);
    let (_dir, lines, _) = s.stop().await;
    let dropped = lines.iter().filter(|l| detail(l).contains("handshake dropped")).count();
    let summed = lines.iter().filter(|l| l["what"] == "tls-refusals").map(detail).collect::<Vec<_>>().join(" ");
    assert!(dropped > 0 || summed.contains("handshake dropped for a newer one"), "{summed}");
}

/// A thousand connections opened and closed at once: a few dozen audit lines, not a thousand,
/// and the count is all there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_audited_in_aggregate() {
    let s = Server::start().await;
    for _ in 0..1000 {
        let s2 = tokio::net::TcpSocket::new_v4().unwrap();
        s2.bind(SocketAddr::from(([127, 0, 0, 3], 0))).unwrap();
        if let Ok(c) = s2.connect(s.addr).await {
            drop(c);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.still_serves().await;
    let (_dir, lines, _) = s.stop().await;
    assert!(lines.len() < 60, "{} audit lines", lines.len());
    let one_by_one = lines.iter().filter(|l| l["what"] == "tls-handshake" && l["result"] == "refused").count();
    let summed: u64 = lines
        .iter()
        .filter(|l| l["what"] == "tls-refusals")
        .filter_map(|l| detail(l).split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .sum();
    assert_eq!(one_by_one as u64 + summed, 1000, "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_http() {
    let s = Server::start().await;

    // Other path, other method, chunked.
    assert_eq!(s.curl(Some("admf"), &[], "/other", b"x").await.1, 404);
    assert_eq!(s.curl(Some("admf"), &["-X", "GET"], "/X1/NE", b"").await.1, 405);
    assert_eq!(s.curl(Some("admf"), &["-H", "Transfer-Encoding: chunked"], "/X1/NE", b"xid\n").await.1, 411);
    s.still_serves().await;

    // A 100 MB body: 413 from the Content-Length, long before 100 MB could be sent.
    let calls = s.handler.calls.lock().unwrap().len();
    let started = Instant::now();
    let (mut r, mut w) = tokio::io::split(s.raw("admf").await);
    const BIG: u64 = 100 * 1024 * 1024;
    let writer = tokio::spawn(async move {
        let head = format!("POST /X1/NE HTTP/1.1\r\nHost: x\r\nContent-Length: {BIG}\r\n\r\n");
        w.write_all(head.as_bytes()).await.unwrap();
        let zeros = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < BIG {
            if w.write_all(&zeros).await.is_err() {
                break;
            }
            sent += zeros.len() as u64;
        }
        sent
    });
    let (status, text) = read_response(&mut r, Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("Connection: close"));
    assert!(took < Duration::from_secs(3), "413 took {took:?}");
    let sent = tokio::time::timeout(Duration::from_secs(10), writer).await.expect("the server closed").unwrap();
    assert!(sent < BIG, "the client could send all of the body: {sent}");
    assert_eq!(s.handler.calls.lock().unwrap().len(), calls);
    s.still_serves().await;

    // Same through curl: a sparse 100 MB file uploaded as it is read; curl's
    // `Expect: 100-continue` gets the 413 before any body byte is sent.
    let out = tokio::task::spawn_blocking({
        let (d, port) = (s.d().to_path_buf(), s.addr.port());
        move || {
            sh(
                &d,
                &format!(
                    "truncate -s {BIG} big && curl -sS --max-time 10 --cacert ca.pem --cert admf.pem \
                     --key admf.key -o /dev/null -w '%{{http_code}}' -X POST -T big \
                     https://127.0.0.1:{port}/X1/NE || true"
                ),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(out.trim(), "413");

    // Malformed heads: 400, and the server keeps serving.
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"POST /X1/NE HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"POST /X1/NE HTTP/1.1\r\nHost: x\r\n folded: header\r\nContent-Length: 0\r\n\r\n",
        b"POST /X1/NE HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    ] {
        let mut c = s.raw("admf").await;
        c.write_all(bad).await.unwrap();
        let (status, text) = read_response(&mut c, Duration::from_secs(5)).await;
        assert_eq!(status, 400, "{:?}: {text}", String::from_utf8_lossy(bad));
        s.still_serves().await;
    }
    // An oversized head: 431.
    let mut c = s.raw("admf").await;
    let mut big = b"POST /X1/NE HTTP/1.1\r\nHost: x\r\n".to_vec();
    big.extend(std::iter::repeat_n(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 1000).flatten());
    let _ = c.write_all(&big).await;
    assert_eq!(read_response(&mut c, Duration::from_secs(5)).await.0, 431);

    // Keep-alive: two requests, two answers, one connection.
    let mut c = s.raw("auditor").await;
    for xid in ["ka-1", "ka-2"] {
        let req = format!("POST /X1/NE HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{xid}", xid.len());
        c.write_all(req.as_bytes()).await.unwrap();
        let (status, text) = read_response(&mut c, Duration::from_secs(5)).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.ends_with("<ok role=\"auditor\"/>"));
    }

    // Slowloris: one header byte every 200 ms. The head deadline (1.5 s) cuts it off with 408
    // though no single read waits long.
    let started = Instant::now();
    let (mut r, mut w) = tokio::io::split(s.raw("admf").await);
    let trickle = tokio::spawn(async move {
        w.write_all(b"POST /X1/NE HTTP/1.1\r\n").await.unwrap();
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if w.write_all(b"X").await.is_err() {
                break;
            }
        }
    });
    let (status, _) = read_response(&mut r, Duration::from_secs(10)).await;
    assert_eq!(status, 408);
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    trickle.abort();
    s.still_serves().await;

    let (_dir, lines, _) = s.stop().await;
    for code in ["404", "405", "411", "413", "400", "431", "408"] {
        find(&lines, "x1-request", |l| l["result"] == "refused" && detail(l).starts_with(code) && l["who"] == "admf-1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_refused_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(AuditLog::open(&dir.path().join("a.jsonl"), None, 0).unwrap());
    let missing = PathBuf::from("/nonexistent/x1.pem");
    let tls = X1TlsConfig {
        cert: missing.clone(),
        key: missing.clone(),
        client_ca: missing,
        clients: vec![],
        limits: Limits::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = serve(listener, tls, Arc::new(Recorder::default()), audit, std::future::pending::<()>()).await.unwrap_err();
    assert!(e.to_string().contains("/nonexistent/x1.pem"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_service_without_a_working_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || make_x1_pki(&d, &[("unlisted", "unlisted-cn")])).await.unwrap();
    let d = dir.path();
    let audit = Arc::new(AuditLog::open(&d.join("a.jsonl"), None, 0).unwrap());
    audit.close().unwrap();
    let tls = X1TlsConfig {
        cert: d.join("srv.pem"),
        key: d.join("srv.key"),
        client_ca: d.join("ca.pem"),
        clients: vec![X1Client { subject_cn: "admf-1".into(), role: Role::Admf }],
        limits: Limits::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handler = Arc::new(Recorder::default());
    let e = serve(listener, tls, handler.clone(), audit, std::future::pending::<()>()).await.unwrap_err();
    assert!(e.to_string().contains("closed"), "{e}");
}
