//! Prometheus metrics of the daemon: a small registry of counters and gauges and an HTTP endpoint
//! serving them in the text exposition format 0.0.4.
//!
//! Updating a metric is one relaxed atomic operation on a handle obtained once at start-up
//! ([`Counter`], [`Gauge`]), so the packet path never takes a lock nor allocates. Only
//! registration and [`Metrics::render`] lock the registry.
//!
//! Labels are a privacy boundary: metrics are scraped by monitoring systems that are not
//! authorised to learn who is intercepted. A label value may therefore only be an operational
//! name: the LIID (an opaque warrant reference), an interface, an error kind, a LEA name or a
//! delivery channel. Registration refuses any other label name ([`MetricsError::LabelNotAllowed`]),
//! so a target identity (subscriber, address, image, instance) cannot be exported by accident.
//!
//! The HTTP side ([`serve`]) is deliberately small: one request per connection, the request head
//! bounded to [`MAX_REQUEST_HEAD`] bytes and read within [`REQUEST_TIMEOUT`], a bounded number of
//! connections at a time.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The only label names a metric may carry (see the module documentation).
pub const ALLOWED_LABELS: &[&str] = &["liid", "interface", "kind", "lea", "channel"];

/// Series per metric family beyond which registration fails: a label value set that grows without
/// bound (a bug) must not eat the daemon's memory.
pub const MAX_SERIES_PER_FAMILY: usize = 4096;

/// Largest request head (request line and headers) the endpoint reads.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Time a client has to send its request head, and then to take the response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once; further ones wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 32;

/// Names of the metrics the daemon exports.
pub mod names {
    pub const PACKETS: &str = "tapir_packets_total";
    pub const BYTES: &str = "tapir_bytes_total";
    pub const KERNEL_DROPS: &str = "tapir_kernel_drops_total";
    pub const KERNEL_FREEZES: &str = "tapir_kernel_freezes_total";
    pub const DECODE_ERRORS: &str = "tapir_decode_errors_total";
    pub const FLOWS: &str = "tapir_flows";
    pub const MATCHED_PACKETS: &str = "tapir_matched_packets_total";
    pub const OBJECTS: &str = "tapir_objects_total";
    pub const ANNOUNCED_CONNECTIONS: &str = "tapir_announced_connections_total";
    pub const ANNOUNCED_REFUSED: &str = "tapir_announced_refused_total";
    pub const FRAGMENTS_REFUSED: &str = "tapir_fragments_refused_total";
    pub const SPOOL_BYTES: &str = "tapir_spool_bytes";
    pub const LEA_CONNECTED: &str = "tapir_lea_connected";
    pub const REASSEMBLY_BYTES: &str = "tapir_reassembly_bytes";
    pub const X2X3_PDUS: &str = "tapir_x2x3_pdus_total";
    pub const X2X3_REFUSED: &str = "tapir_x2x3_refused_total";
    pub const X2X3_RESENT: &str = "tapir_x2x3_resent_total";
    pub const X2X3_CONNECTIONS: &str = "tapir_x2x3_connections_total";
    pub const X2X3_FRAMING_ERRORS: &str = "tapir_x2x3_framing_errors_total";
    pub const X2X3_TLS_REFUSED: &str = "tapir_x2x3_tls_refused_total";
    pub const MDF_JOURNAL_ACTIVE: &str = "tapir_mdf_journal_active";
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetricsError {
    #[error("metric name {0:?} is not [a-zA-Z_:][a-zA-Z0-9_:]*")]
    BadName(String),
    #[error("metric {metric}: label {label:?} is not one of liid, interface, kind, lea, channel")]
    LabelNotAllowed { metric: String, label: String },
    #[error("metric {metric}: label {label:?} given twice")]
    DuplicateLabel { metric: String, label: String },
    #[error("metric {metric} is already registered as a {registered}")]
    TypeConflict { metric: String, registered: &'static str },
    #[error("metric {metric}: labels {got:?} differ from the registered label names {registered:?}")]
    LabelSetConflict { metric: String, registered: Vec<String>, got: Vec<String> },
    #[error("metric {metric}: more than {max} series")]
    TooManySeries { metric: String, max: usize },
}

/// A monotonically increasing count. Cloning shares the value.
#[derive(Clone, Debug)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// For counters maintained elsewhere (e.g. the kernel's drop count): the value only moves up.
    pub fn raise_to(&self, v: u64) {
        self.0.fetch_max(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down. Cloning shares the value.
#[derive(Clone, Debug)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn sub(&self, n: i64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn dec(&self) {
        self.sub(1);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Debug)]
enum Value {
    Counter(Arc<AtomicU64>),
    Gauge(Arc<AtomicI64>),
}

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    is_counter: bool,
    label_names: Vec<String>,
    /// Label values in `label_names` order, and the value.
    series: Vec<(Vec<String>, Value)>,
}

#[derive(Debug, Default)]
struct Inner {
    families: Mutex<Vec<Family>>,
    healthy: AtomicBool,
}

/// The registry. Cloning is cheap and shares the registry.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Registers (or finds) the counter `name` with these labels. Registering the same name and
    /// label values again returns a handle on the same value.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Result<Counter, MetricsError> {
        match self.register(name, help, labels, true)? {
            Value::Counter(v) => Ok(Counter(v)),
            Value::Gauge(_) => Err(MetricsError::TypeConflict { metric: name.to_string(), registered: "gauge" }),
        }
    }

    /// Registers (or finds) the gauge `name` with these labels.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Result<Gauge, MetricsError> {
        match self.register(name, help, labels, false)? {
            Value::Gauge(v) => Ok(Gauge(v)),
            Value::Counter(_) => Err(MetricsError::TypeConflict { metric: name.to_string(), registered: "counter" }),
        }
    }

    fn register(&self, name: &str, help: &str, labels: &[(&str, &str)], counter: bool) -> Result<Value, MetricsError> {
        if !valid_name(name) {
            return Err(MetricsError::BadName(name.to_string()));
        }
        for (i, (l, _)) in labels.iter().enumerate() {
            if !ALLOWED_LABELS.contains(l) {
                return Err(MetricsError::LabelNotAllowed { metric: name.to_string(), label: l.to_string() });
            }
            if labels[..i].iter().any(|(p, _)| p == l) {
                return Err(MetricsError::DuplicateLabel { metric: name.to_string(), label: l.to_string() });
            }
        }
        // A poisoned lock only means another thread panicked mid-registration; the data is a
        // plain Vec that is never left half-updated, so carry on with it.
        let mut families = self.inner.families.lock().unwrap_or_else(|p| p.into_inner());
        let pos = match families.iter().position(|f| f.name == name) {
            Some(p) => p,
            None => {
                families.push(Family {
                    name: name.to_string(),
                    help: help.to_string(),
                    is_counter: counter,
                    label_names: labels.iter().map(|(l, _)| l.to_string()).collect(),
                    series: Vec::new(),
                });
                families.len() - 1
            }
        };
        let fam = &mut families[pos];
        if fam.is_counter != counter {
            let registered = if fam.is_counter { "counter" } else { "gauge" };
            return Err(MetricsError::TypeConflict { metric: name.to_string(), registered });
        }
        // Values in the family's label order, whatever order the caller used.
        let mut values = Vec::with_capacity(fam.label_names.len());
        for ln in &fam.label_names {
            match labels.iter().find(|(l, _)| l == ln) {
                Some((_, v)) => values.push(v.to_string()),
                None => break,
            }
        }
        if values.len() != fam.label_names.len() || labels.len() != fam.label_names.len() {
            return Err(MetricsError::LabelSetConflict {
                metric: name.to_string(),
                registered: fam.label_names.clone(),
                got: labels.iter().map(|(l, _)| l.to_string()).collect(),
            });
        }
        if let Some((_, v)) = fam.series.iter().find(|(vals, _)| *vals == values) {
            return Ok(v.clone());
        }
        if fam.series.len() >= MAX_SERIES_PER_FAMILY {
            return Err(MetricsError::TooManySeries { metric: name.to_string(), max: MAX_SERIES_PER_FAMILY });
        }
        let v = if counter {
            Value::Counter(Arc::new(AtomicU64::new(0)))
        } else {
            Value::Gauge(Arc::new(AtomicI64::new(0)))
        };
        fam.series.push((values, v.clone()));
        Ok(v)
    }

    /// Whether `/healthz` answers 200 (true) or 503 (false). Starts unhealthy: the daemon says
    /// when it is ready.
    pub fn set_healthy(&self, healthy: bool) {
        self.inner.healthy.store(healthy, Ordering::Relaxed);
    }

    pub fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    /// The text exposition format 0.0.4, families in registration order.
    pub fn render(&self) -> String {
        let families = self.inner.families.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for f in families.iter() {
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
            let _ = writeln!(out, "# TYPE {} {}", f.name, if f.is_counter { "counter" } else { "gauge" });
            for (values, v) in &f.series {
                out.push_str(&f.name);
                if !values.is_empty() {
                    out.push('{');
                    for (i, (n, val)) in f.label_names.iter().zip(values).enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{n}=\"{}\"", escape_label_value(val));
                    }
                    out.push('}');
                }
                let _ = match v {
                    Value::Counter(c) => writeln!(out, " {}", c.load(Ordering::Relaxed)),
                    Value::Gauge(g) => writeln!(out, " {}", g.load(Ordering::Relaxed)),
                };
            }
        }
        out
    }
}

/// HELP text: backslash and line feed escaped (format 0.0.4).
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values: backslash, double quote and line feed escaped (format 0.0.4).
fn escape_label_value(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// The daemon's standard metrics, registered once; the labelled ones are created per label value
/// by the methods below, which lock the registry: call them once per LIID / interface / LEA and
/// keep the handle, not per packet.
#[derive(Clone, Debug)]
pub struct TapirMetrics {
    pub registry: Metrics,
    pub packets: Counter,
    pub bytes: Counter,
    pub flows: Gauge,
    pub objects: Counter,
    /// Connections announced on another address pair kept with their announcer's worker, and
    /// announcements or connections the dispatch's full tables let go by their pair
    /// (`pipeline::RouteStats`; zero with one pipeline).
    pub announced_connections: Counter,
    pub announced_refused: Counter,
    /// IP fragments that came before their datagram's first and went by their pair, the
    /// dispatch holding its cap of such (`pipeline::FragmentStats`; zero with one pipeline).
    pub fragments_refused: Counter,
    pub spool_bytes: Gauge,
    pub reassembly_bytes: Gauge,
}

impl TapirMetrics {
    pub fn new(registry: Metrics) -> TapirMetrics {
        // The names and label names below are constants that `register` accepts; a failure here
        // would be a bug in this file, caught by the unit test `standard_metrics_register`.
        let c = |n: &str, h: &str| registry.counter(n, h, &[]).unwrap_or_else(|e| panic!("{e}"));
        let g = |n: &str, h: &str| registry.gauge(n, h, &[]).unwrap_or_else(|e| panic!("{e}"));
        let m = TapirMetrics {
            packets: c(names::PACKETS, "Packets captured."),
            bytes: c(names::BYTES, "Bytes captured (original wire length)."),
            flows: g(names::FLOWS, "Flows currently tracked."),
            objects: c(names::OBJECTS, "Content objects extracted."),
            announced_connections: c(
                names::ANNOUNCED_CONNECTIONS,
                "Connections announced on another address pair (FTP 227/PORT/EPRT, SDP) analyzed by their announcer's pipeline worker.",
            ),
            announced_refused: c(
                names::ANNOUNCED_REFUSED,
                "Announcements and connections sent by their address pair because the dispatch's tables were full.",
            ),
            fragments_refused: c(
                names::FRAGMENTS_REFUSED,
                "IP fragments that came before their datagram's first fragment and were sent by their own address pair, because the dispatch already held its cap of such.",
            ),
            spool_bytes: g(names::SPOOL_BYTES, "Bytes waiting in the delivery spool."),
            reassembly_bytes: g(names::REASSEMBLY_BYTES, "Bytes held by TCP reassembly."),
            registry: registry.clone(),
        };
        // Families with labels appear (HELP/TYPE only) before their first series.
        let mut fams = registry.inner.families.lock().unwrap_or_else(|p| p.into_inner());
        for (name, help, labels, counter) in [
            (names::KERNEL_DROPS, "Packets the kernel dropped before capture.", &["interface"][..], true),
            (
                names::KERNEL_FREEZES,
                "Times the kernel found the capture ring full (TPACKET_V3 queue freezes).",
                &["interface"][..],
                true,
            ),
            (names::DECODE_ERRORS, "Packets that failed to decode, by kind of error.", &["kind"][..], true),
            (names::MATCHED_PACKETS, "Packets selected for a warrant.", &["liid"][..], true),
            (
                names::LEA_CONNECTED,
                "1 while the handover channel to the LEA is connected.",
                &["lea", "channel"][..],
                false,
            ),
        ] {
            if !fams.iter().any(|f| f.name == name) {
                fams.push(Family {
                    name: name.to_string(),
                    help: help.to_string(),
                    is_counter: counter,
                    label_names: labels.iter().map(|s| s.to_string()).collect(),
                    series: Vec::new(),
                });
            }
        }
        drop(fams);
        m
    }

    pub fn kernel_drops(&self, interface: &str) -> Result<Counter, MetricsError> {
        self.registry.counter(names::KERNEL_DROPS, "", &[("interface", interface)])
    }
    pub fn kernel_freezes(&self, interface: &str) -> Result<Counter, MetricsError> {
        self.registry.counter(names::KERNEL_FREEZES, "", &[("interface", interface)])
    }
    pub fn decode_errors(&self, kind: &str) -> Result<Counter, MetricsError> {
        self.registry.counter(names::DECODE_ERRORS, "", &[("kind", kind)])
    }
    pub fn matched_packets(&self, liid: &str) -> Result<Counter, MetricsError> {
        self.registry.counter(names::MATCHED_PACKETS, "", &[("liid", liid)])
    }
    pub fn lea_connected(&self, lea: &str, channel: &str) -> Result<Gauge, MetricsError> {
        self.registry.gauge(names::LEA_CONNECTED, "", &[("lea", lea), ("channel", channel)])
    }
}

/// An MDF's X2/X3 intake (`docs/x2x3.md`), beside the standard metrics.
#[derive(Clone, Debug)]
pub struct X2x3Metrics {
    pub x2: Counter,
    pub x3: Counter,
    pub refused: Counter,
    pub resent: Counter,
    pub connections: Counter,
    pub framing_errors: Counter,
    pub tls_refused: Counter,
    pub journal_active: Gauge,
}

impl X2x3Metrics {
    pub fn new(registry: &Metrics) -> X2x3Metrics {
        // Constant names and labels that `register` accepts (unit test `x2x3_metrics_register`).
        let c = |n: &str, h: &str, l: &[(&str, &str)]| registry.counter(n, h, l).unwrap_or_else(|e| panic!("{e}"));
        let pdus = "X2/X3 PDUs taken from POIs, by kind (x2: IRI, x3: CC and objects).";
        X2x3Metrics {
            x2: c(names::X2X3_PDUS, pdus, &[("kind", "x2")]),
            x3: c(names::X2X3_PDUS, pdus, &[("kind", "x3")]),
            refused: c(names::X2X3_REFUSED, "X2/X3 PDUs refused (unknown XID, malformed, out of scope).", &[]),
            resent: c(names::X2X3_RESENT, "X2/X3 PDUs a POI sent again that were taken before (dropped).", &[]),
            connections: c(names::X2X3_CONNECTIONS, "X2/X3 connections accepted.", &[]),
            framing_errors: c(
                names::X2X3_FRAMING_ERRORS,
                "X2/X3 connections closed for a framing error (version, length).",
                &[],
            ),
            tls_refused: c(names::X2X3_TLS_REFUSED, "X2/X3 connections whose TLS handshake failed.", &[]),
            journal_active: registry
                .gauge(names::MDF_JOURNAL_ACTIVE, "1 while the MDF's intake journal is kept (crash recovery).", &[])
                .unwrap_or_else(|e| panic!("{e}")),
        }
    }
}

/// Serves `GET /metrics` and `GET /healthz` on `listener` until `shutdown` completes.
/// Connections in progress when it does are dropped.
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: impl Future) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                // Out of descriptors and the like: back off rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let m = metrics.clone();
        conns.spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(REQUEST_TIMEOUT * 2, handle(stream, m)).await;
        });
        // Reap finished connection tasks so the set does not grow.
        while conns.try_join_next().is_some() {}
    }
    conns.abort_all();
}

/// The request target of a GET/HEAD request head, or the status to answer.
fn parse_request_head(head: &[u8]) -> Result<(bool, &str), u16> {
    let line_end = head.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| 400u16)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(400);
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(405),
    };
    let path = target.split('?').next().unwrap_or(target);
    Ok((head_only, path))
}

/// One connection: a request head within [`REQUEST_TIMEOUT`] per read, one answer, closed.
/// Generic over the stream so that a test can drive it on a paused (virtual) clock.
async fn handle(mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin, metrics: Metrics) {
    let mut buf = vec![0u8; MAX_REQUEST_HEAD];
    let mut len = 0;
    let complete = loop {
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || buf[..len].windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if len == buf.len() {
            break false;
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, stream.read(&mut buf[len..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => len += n,
        }
    };
    let (status, ctype, body, head_only) = if !complete {
        (431, "text/plain", "request head too large\n".to_string(), false)
    } else {
        match parse_request_head(&buf[..len]) {
            Err(s) => (s, "text/plain", "bad request\n".to_string(), false),
            Ok((head_only, "/metrics")) => {
                (200, "text/plain; version=0.0.4; charset=utf-8", metrics.render(), head_only)
            }
            Ok((head_only, "/healthz")) if metrics.healthy() => (200, "text/plain", "ok\n".to_string(), head_only),
            Ok((head_only, "/healthz")) => (503, "text/plain", "unhealthy\n".to_string(), head_only),
            Ok((head_only, _)) => (404, "text/plain", "not found\n".to_string(), head_only),
        }
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        resp.extend_from_slice(body.as_bytes());
    }
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, async {
        stream.write_all(&resp).await?;
        stream.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x2x3_metrics_register() {
        let r = Metrics::new();
        let m = X2x3Metrics::new(&r);
        m.x3.add(5);
        m.journal_active.set(1);
        let text = r.render();
        assert!(text.contains("tapir_x2x3_pdus_total{kind=\"x3\"} 5"), "{text}");
        assert!(text.contains("tapir_x2x3_pdus_total{kind=\"x2\"} 0"), "{text}");
        assert!(text.contains("tapir_mdf_journal_active 1"), "{text}");
    }

    #[test]
    fn standard_metrics_register() {
        let m = TapirMetrics::new(Metrics::new());
        m.packets.add(3);
        m.matched_packets("L1").unwrap().inc();
        m.lea_connected("lea1", "hi2").unwrap().set(1);
        let r = m.registry.render();
        assert!(r.contains("tapir_packets_total 3\n"), "{r}");
        assert!(r.contains("tapir_matched_packets_total{liid=\"L1\"} 1\n"), "{r}");
        assert!(r.contains("tapir_lea_connected{lea=\"lea1\",channel=\"hi2\"} 1\n"), "{r}");
        assert!(r.contains("# TYPE tapir_kernel_drops_total counter\n"), "{r}");
    }

    #[test]
    fn target_identities_cannot_be_labels() {
        let m = Metrics::new();
        for l in ["subscriber", "ip", "target", "image", "user"] {
            assert!(matches!(m.counter("x_total", "", &[(l, "joe")]), Err(MetricsError::LabelNotAllowed { .. })));
        }
        assert!(matches!(m.counter("1bad", "", &[]), Err(MetricsError::BadName(_))));
        m.counter("c_total", "", &[("liid", "a")]).unwrap();
        assert!(matches!(m.gauge("c_total", "", &[("liid", "a")]), Err(MetricsError::TypeConflict { .. })));
        assert!(matches!(m.counter("c_total", "", &[("kind", "a")]), Err(MetricsError::LabelSetConflict { .. })));
        assert!(matches!(
            m.counter("d_total", "", &[("liid", "a"), ("liid", "b")]),
            Err(MetricsError::DuplicateLabel { .. })
        ));
    }

    // A client that sends half a request and then nothing is dropped one REQUEST_TIMEOUT after
    // its last byte; one that completes its request is answered. On tokio's paused clock: the
    // runtime jumps to the timeout when every task waits, so this takes no wall time.
    #[tokio::test(start_paused = true)]
    async fn an_idle_client_is_dropped_after_the_request_timeout() {
        let metrics = Metrics::new();
        metrics.set_healthy(true);
        let (mut client, server) = tokio::io::duplex(4096);
        let start = tokio::time::Instant::now();
        let served = tokio::spawn(handle(server, metrics.clone()));
        client.write_all(b"GET /metr").await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        client.write_all(b"ics HTTP/1.1\r\n").await.unwrap();
        let mut b = [0u8; 16];
        // Closed: the read ends (0 bytes) one timeout after the last byte, at 3 + 5 s.
        assert_eq!(client.read(&mut b).await.unwrap(), 0);
        assert_eq!(start.elapsed().as_secs(), 3 + REQUEST_TIMEOUT.as_secs());
        served.await.unwrap();

        let (mut client, server) = tokio::io::duplex(1 << 16);
        let served = tokio::spawn(handle(server, metrics));
        client.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&answer));
        served.await.unwrap();
    }

    #[test]
    fn request_heads() {
        assert_eq!(parse_request_head(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n"), Ok((false, "/metrics")));
        assert_eq!(parse_request_head(b"HEAD /healthz HTTP/1.0\r\n\r\n"), Ok((true, "/healthz")));
        assert_eq!(parse_request_head(b"POST /metrics HTTP/1.1\r\n\r\n"), Err(405));
        assert_eq!(parse_request_head(b"GET /metrics\r\n\r\n"), Err(400));
        assert_eq!(parse_request_head(b"\xff\xfe\r\n\r\n"), Err(400));
    }
}
