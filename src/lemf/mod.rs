//! The reference LEMF: the LEA side of HI2 (IRI) and HI3 (CC) over TCP or mutual TLS 1.3.
//!
//! It accepts any number of connections on both listeners, cuts each stream into PS-PDUs
//! ([`framing`]), answers keep-alives, checks sequence continuity and integrity-check PDUs, and
//! writes a case directory ([`case`]) with a `report.json` ([`report`]).
//!
//! The decisions are made in [`core::Core`], which does no I/O; this module owns the sockets, the
//! tokio runtime (on its own thread) and the files.
//!
//! No-panic contract: bytes from the network only reach the bounded [`framing::Framer`] and the
//! checked decoder; a connection that sends an unframeable stream or an oversized PDU is closed
//! and counted, the others go on.

pub mod case;
pub mod core;
pub mod framing;
pub mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use self::core::{Channel, Core, VerifyKey};
use crate::timestamp::Timestamp;
pub use case::CaseDir;
pub use framing::{FrameError, Framer};
pub use report::Report;

/// Default bound on one PDU (16 MiB).
pub const DEFAULT_MAX_PDU: usize = 16 << 20;

/// PEM files for mutual TLS: `ca` the CA client certificates must chain to, `cert` and `key`
/// the LEMF's own.
pub use crate::deliver::handover::TlsFiles;

#[derive(Clone, Debug)]
pub struct LemfConfig {
    pub listen_hi2: SocketAddr,
    pub listen_hi3: SocketAddr,
    /// HI2 and HI3 on one listener at `listen_hi2` (`listen_hi3` is not used): each connection
    /// is filed by what it carries. An X1 destination is one address for both.
    pub one_port: bool,
    pub out: PathBuf,
    pub tls: Option<TlsFiles>,
    /// Public key for signed integrity checks; without it signatures are counted unverified.
    pub verify_key: Option<VerifyKey>,
    pub max_pdu: usize,
    /// Connections served at once over both listeners; more are closed at once and counted, so
    /// that memory stays below about `max_connections * max_pdu`.
    pub max_connections: usize,
}

impl LemfConfig {
    pub fn new(listen_hi2: SocketAddr, listen_hi3: SocketAddr, out: &Path) -> LemfConfig {
        LemfConfig {
            listen_hi2,
            listen_hi3,
            one_port: false,
            out: out.into(),
            tls: None,
            verify_key: None,
            max_pdu: DEFAULT_MAX_PDU,
            max_connections: 256,
        }
    }

    /// HI2 and HI3 on one port, as an X1 destination's `ipAddressAndPort` gives them.
    pub fn one_port(listen: SocketAddr, out: &Path) -> LemfConfig {
        LemfConfig { one_port: true, ..LemfConfig::new(listen, listen, out) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LemfError {
    #[error("listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("TLS {what} {path}: {detail}")]
    Tls { what: &'static str, path: PathBuf, detail: String },
    #[error(transparent)]
    Case(#[from] case::CaseError),
    #[error("runtime: {0}")]
    Runtime(String),
}

struct Shared {
    core: Core,
    case: CaseDir,
    last_report: Instant,
    error: Option<String>,
}

impl Shared {
    fn save_report(&mut self) {
        if let Err(e) = self.case.write_report(&self.core.report) {
            self.error.get_or_insert(e.to_string());
        }
        self.last_report = Instant::now();
    }
}

type SharedRef = Arc<Mutex<Shared>>;

fn lock(s: &SharedRef) -> std::sync::MutexGuard<'_, Shared> {
    // A poisoned lock means a panic elsewhere; the state is still the best record we have.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running LEMF.
pub struct Lemf {
    hi2: SocketAddr,
    hi3: SocketAddr,
    stop_tx: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<Result<Report, LemfError>>>,
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp::from_secs_nanos(i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos())
}

fn tls_acceptor(t: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, LemfError> {
    crate::deliver::tls::acceptor(t).map_err(|e| LemfError::Tls { what: e.what, path: e.path, detail: e.detail })
}

/// Which channel a connection's PDUs are filed under.
#[derive(Copy, Clone, Debug)]
enum Route {
    /// A listener of its own.
    Fixed(Channel),
    /// One listener for HI2 and HI3: each connection is decided by its first telling PDU
    /// ([`Channel::of_pdu`]).
    ByContent,
}

/// PDUs a one-port connection may send before it tells HI2 from HI3; beyond them (or at its
/// end) what is held is filed as HI2 and the guess is reported.
const HOLD_PDUS: usize = 256;
const HOLD_BYTES: usize = 8 << 20;

/// A connection's channel as far as it is known, and the PDUs waiting for it.
struct Routing {
    channel: Option<Channel>,
    held: Vec<Vec<u8>>,
    held_bytes: usize,
}

impl Routing {
    fn new(route: Route) -> Routing {
        let channel = match route {
            Route::Fixed(ch) => Some(ch),
            Route::ByContent => None,
        };
        Routing { channel, held: Vec::new(), held_bytes: 0 }
    }
}

/// One PDU into the core; its answer (a keep-alive response) into `replies`.
fn feed(sh: &mut Shared, ch: Channel, peer: &str, pdu: &[u8], replies: &mut Vec<Vec<u8>>) {
    let out = sh.core.pdu(ch, peer, pdu, now());
    if let Some(r) = out.reply {
        replies.push(r);
    }
    for w in out.writes {
        if let Err(e) = sh.case.write(w) {
            sh.error.get_or_insert(e.to_string());
        }
    }
}

/// Decides a held connection's channel: counts the connection and files what was held.
fn decide(sh: &mut Shared, r: &mut Routing, ch: Channel, peer: &str, replies: &mut Vec<Vec<u8>>) {
    r.channel = Some(ch);
    sh.core.connection(ch);
    for p in std::mem::take(&mut r.held) {
        feed(sh, ch, peer, &p, replies);
    }
    r.held_bytes = 0;
}

/// One PDU of a connection, routed: filed at once when the channel is known, else held until a
/// PDU tells it. A keep-alive is answered at once either way, or the sender would drop an idle
/// connection that has nothing else to tell.
fn route_pdu(sh: &mut Shared, r: &mut Routing, peer: &str, pdu: &[u8], replies: &mut Vec<Vec<u8>>) {
    if let Some(ch) = r.channel {
        return feed(sh, ch, peer, pdu, replies);
    }
    match Channel::of_pdu(pdu) {
        core::Tells::Channel(ch) => {
            decide(sh, r, ch, peer, replies);
            return feed(sh, ch, peer, pdu, replies);
        }
        core::Tells::KeepAlive => return feed(sh, Channel::Hi2, peer, pdu, replies),
        core::Tells::Nothing => {}
    }
    r.held_bytes += pdu.len();
    r.held.push(pdu.to_vec());
    if r.held.len() >= HOLD_PDUS || r.held_bytes >= HOLD_BYTES {
        let n = r.held.len();
        sh.core.channel_guessed(Channel::Hi2, peer, format!("{n} PDUs without IRI, CC or integrity check"));
        decide(sh, r, Channel::Hi2, peer, replies);
    }
}

async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    route: Route,
    peer: String,
    shared: SharedRef,
    max_pdu: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut framer = Framer::new(max_pdu);
    let mut buf = vec![0u8; 64 * 1024];
    let mut routing = Routing::new(route);
    loop {
        let n = tokio::select! {
            r = s.read(&mut buf) => match r { Ok(0) | Err(_) => break, Ok(n) => n },
            _ = stop.changed() => break,
        };
        framer.push(buf.get(..n).unwrap_or_default());
        let mut replies = Vec::new();
        let mut failed = false;
        {
            let mut sh = lock(&shared);
            loop {
                match framer.next_pdu() {
                    Ok(Some(pdu)) => route_pdu(&mut sh, &mut routing, &peer, pdu, &mut replies),
                    Ok(None) => break,
                    Err(e) => {
                        let ch = routing.channel.unwrap_or(Channel::Hi2);
                        eprintln!("lemf: {} {peer}: stream dropped: {e}", ch.name());
                        sh.core.framing_error(ch, &peer, e.to_string());
                        failed = true;
                        break;
                    }
                }
            }
            if let Err(e) = sh.case.flush() {
                sh.error.get_or_insert(e.to_string());
            }
            // Before an answer goes out the report is on disk: what the sender sees acknowledged
            // by a keep-alive response survives a kill -9 of the LEMF.
            if failed || !replies.is_empty() || sh.last_report.elapsed() > Duration::from_millis(200) {
                sh.save_report();
            }
        }
        for r in replies {
            if s.write_all(&r).await.is_err() {
                failed = true;
                break;
            }
        }
        if failed {
            break;
        }
    }
    if !routing.held.is_empty() {
        // The connection ended before it told its channel: what it sent is kept, as HI2.
        let mut sh = lock(&shared);
        let n = routing.held.len();
        sh.core.channel_guessed(
            Channel::Hi2,
            &peer,
            format!("ended after {n} PDUs without IRI, CC or integrity check"),
        );
        decide(&mut sh, &mut routing, Channel::Hi2, &peer, &mut Vec::new());
        if let Err(e) = sh.case.flush() {
            sh.error.get_or_insert(e.to_string());
        }
        sh.save_report();
    }
    let _ = s.shutdown().await;
}

async fn accept_loop(
    l: TcpListener,
    route: Route,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: SharedRef,
    max_pdu: usize,
    slots: Arc<tokio::sync::Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    // A one-port listener's log lines and refusals say "hi2+hi3".
    let (label, tag) = match route {
        Route::Fixed(ch) => (ch.name(), ch),
        Route::ByContent => ("hi2+hi3", Channel::Hi2),
    };
    loop {
        let (sock, peer) = tokio::select! {
            r = l.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = stop.changed() => return,
        };
        let _ = sock.set_nodelay(true);
        let peer = peer.to_string();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            eprintln!("lemf: {label} {peer}: refused, too many connections");
            lock(&shared).core.report.connections_refused += 1;
            continue;
        };
        let (shared, stop, tls) = (shared.clone(), stop.clone(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => {
                    if let Route::Fixed(ch) = route {
                        lock(&shared).core.connection(ch);
                    }
                    serve_conn(sock, route, peer, shared, max_pdu, stop).await
                }
                Some(acc) => match tokio::time::timeout(Duration::from_secs(10), acc.accept(sock)).await {
                    Ok(Ok(s)) => {
                        if let Route::Fixed(ch) = route {
                            lock(&shared).core.connection(ch);
                        }
                        serve_conn(s, route, peer, shared, max_pdu, stop).await
                    }
                    Ok(Err(e)) => refuse(&shared, tag, &peer, e.to_string()),
                    Err(_) => refuse(&shared, tag, &peer, "handshake timed out".into()),
                },
            }
        });
    }
}

fn refuse(shared: &SharedRef, ch: Channel, peer: &str, why: String) {
    eprintln!("lemf: {} {peer}: TLS client refused: {why}", ch.name());
    let mut sh = lock(shared);
    sh.core.tls_refused(ch, peer, why);
    sh.save_report();
}

impl Lemf {
    /// Binds both listeners and starts serving on a runtime thread of its own.
    pub fn start(cfg: LemfConfig) -> Result<Lemf, LemfError> {
        let case = CaseDir::open(&cfg.out)?;
        let mut report = case.load_report().unwrap_or_default();
        report.runs += 1;
        let tls = cfg.tls.as_ref().map(tls_acceptor).transpose()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| LemfError::Runtime(e.to_string()))?;
        // std listeners, so that `start` may be called from inside another tokio runtime.
        let bind = |addr: SocketAddr| {
            let l = std::net::TcpListener::bind(addr).map_err(|source| LemfError::Listen { addr, source })?;
            l.set_nonblocking(true).map_err(|source| LemfError::Listen { addr, source })?;
            let local = l.local_addr().map_err(|source| LemfError::Listen { addr, source })?;
            Ok::<_, LemfError>((l, local))
        };
        let (l2, hi2) = bind(cfg.listen_hi2)?;
        let (l3, hi3) = match cfg.one_port {
            true => (None, hi2),
            false => bind(cfg.listen_hi3).map(|(l, a)| (Some(l), a))?,
        };
        let shared = Arc::new(Mutex::new(Shared {
            core: Core::new(report, cfg.verify_key.clone()),
            case,
            last_report: Instant::now(),
            error: None,
        }));
        lock(&shared).save_report();
        let (stop_tx, stop_rx) = watch::channel(false);
        let max = cfg.max_pdu;
        let slots = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections.max(1)));
        let thread = std::thread::Builder::new()
            .name("lemf".into())
            .spawn(move || {
                rt.block_on(async {
                    let listeners = match (TcpListener::from_std(l2), l3.map(TcpListener::from_std).transpose()) {
                        (Ok(a), Ok(b)) => (a, b),
                        (Err(e), _) | (_, Err(e)) => {
                            lock(&shared).error.get_or_insert(format!("listener: {e}"));
                            return;
                        }
                    };
                    let mut loops = Vec::new();
                    let routes = match listeners {
                        (l2, Some(l3)) => vec![(l2, Route::Fixed(Channel::Hi2)), (l3, Route::Fixed(Channel::Hi3))],
                        (l, None) => vec![(l, Route::ByContent)],
                    };
                    for (l, route) in routes {
                        let (tls, shared, slots, stop) = (tls.clone(), shared.clone(), slots.clone(), stop_rx.clone());
                        loops.push(tokio::spawn(accept_loop(l, route, tls, shared, max, slots, stop)));
                    }
                    let mut stop = stop_rx;
                    let mut tick = tokio::time::interval(Duration::from_millis(500));
                    loop {
                        tokio::select! {
                            _ = tick.tick() => lock(&shared).save_report(),
                            _ = stop.changed() => break,
                        }
                    }
                    for l in loops {
                        let _ = l.await;
                    }
                    // Let connections see the stop and finish their batch.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
                let mut sh = lock(&shared);
                let _ = sh.case.flush();
                sh.save_report();
                match sh.error.take() {
                    Some(e) => Err(LemfError::Runtime(e)),
                    None => Ok(sh.core.report.clone()),
                }
            })
            .map_err(|e| LemfError::Runtime(e.to_string()))?;
        Ok(Lemf { hi2, hi3, stop_tx, thread: Some(thread) })
    }

    pub fn hi2_addr(&self) -> SocketAddr {
        self.hi2
    }

    pub fn hi3_addr(&self) -> SocketAddr {
        self.hi3
    }

    /// Stops accepting, closes connections, writes the final report and returns it.
    pub fn stop(mut self) -> Result<Report, LemfError> {
        let _ = self.stop_tx.send(true);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(LemfError::Runtime("LEMF thread panicked".into())),
            None => Err(LemfError::Runtime("already stopped".into())),
        }
    }

    /// Serves until `stop` becomes true (e.g. set by a signal handler), then returns the report.
    pub fn run(cfg: LemfConfig, stop: Arc<AtomicBool>) -> Result<Report, LemfError> {
        let l = Lemf::start(cfg)?;
        eprintln!("lemf: HI2 on {}, HI3 on {}", l.hi2, l.hi3);
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        l.stop()
    }
}

impl Lemf {
    /// Serves until SIGINT or SIGTERM, then writes the final report and returns it (for the CLI).
    pub fn run_until_signal(cfg: LemfConfig) -> Result<Report, LemfError> {
        let l = Lemf::start(cfg)?;
        eprintln!("lemf: HI2 on {}, HI3 on {}", l.hi2, l.hi3);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LemfError::Runtime(e.to_string()))?;
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        });
        l.stop()
    }
}

impl Drop for Lemf {
    fn drop(&mut self) {
        let _ = self.stop_tx.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::etsi::{Encoder, EtsiConfig, PayloadDirection, PduHeader};

    fn shared(dir: &Path) -> Shared {
        Shared {
            core: Core::new(Report::default(), None),
            case: CaseDir::open(dir).unwrap(),
            last_report: Instant::now(),
            error: None,
        }
    }

    fn pdus() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let enc = Encoder::new(EtsiConfig::new("OP")).unwrap();
        let hdr = PduHeader { liid: "L1", cin: Some(7), seq: 0, ts: Timestamp::from_secs(1_700_000_000) };
        let (mut reset, mut ka, mut cc) = (Vec::new(), Vec::new(), Vec::new());
        enc.cin_reset(&mut reset, &hdr).unwrap();
        enc.keep_alive(&mut ka, &hdr).unwrap();
        let ip = [0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        enc.ipcc(&mut cc, &hdr, &ip, PayloadDirection::FromTarget).unwrap();
        (reset, ka, cc)
    }

    #[test]
    fn a_one_port_connection_holds_until_a_pdu_tells_its_channel() {
        let d = tempfile::tempdir().unwrap();
        let mut sh = shared(d.path());
        let (reset, ka, cc) = pdus();
        assert_eq!(Channel::of_pdu(&cc), core::Tells::Channel(Channel::Hi3));
        assert_eq!(Channel::of_pdu(&reset), core::Tells::Nothing);
        assert_eq!(Channel::of_pdu(&ka), core::Tells::KeepAlive);
        let mut r = Routing::new(Route::ByContent);
        let mut replies = Vec::new();
        route_pdu(&mut sh, &mut r, "p", &reset, &mut replies);
        // The cINReset waits; the keep-alive is answered at once.
        assert_eq!(r.held.len(), 1);
        route_pdu(&mut sh, &mut r, "p", &ka, &mut replies);
        assert_eq!(replies.len(), 1);
        route_pdu(&mut sh, &mut r, "p", &cc, &mut replies);
        assert_eq!(r.channel, Some(Channel::Hi3));
        assert!(r.held.is_empty());
        let rep = &sh.core.report;
        // The held cINReset was filed on HI3, before the CC it precedes.
        assert_eq!(rep.pdus.get("hi3/L1/cin-reset"), Some(&1), "{:?}", rep.pdus);
        assert_eq!(rep.pdus.get("hi3/L1/cc"), Some(&1), "{:?}", rep.pdus);
        assert_eq!(rep.connections.get("hi3"), Some(&1));
        assert_eq!(rep.channel_guesses, 0);
    }

    #[test]
    fn a_connection_that_never_tells_is_filed_as_hi2_and_reported() {
        let d = tempfile::tempdir().unwrap();
        let mut sh = shared(d.path());
        let (reset, _, _) = pdus();
        let mut r = Routing::new(Route::ByContent);
        let mut replies = Vec::new();
        for _ in 0..HOLD_PDUS {
            route_pdu(&mut sh, &mut r, "p", &reset, &mut replies);
        }
        // The hold is bounded: at the limit everything goes to HI2 and the guess is on record.
        assert_eq!(r.channel, Some(Channel::Hi2));
        assert!(r.held.is_empty());
        assert_eq!(sh.core.report.channel_guesses, 1);
        assert_eq!(sh.core.report.pdus.get("hi2/L1/cin-reset"), Some(&(HOLD_PDUS as u64)));
    }
}
