//! The X1 endpoint: HTTPS POST of X1 XML, mutual TLS 1.3, roles from the client certificate.
//!
//! Only TLS 1.3 with a client certificate chaining to the configured client CA gets past the
//! handshake; the certificate's subject CN must then be listed (`[[x1.client]]`) or every request
//! is answered 403. The XML handler sees only requests from listed clients that passed every
//! transport check. Every outcome is written to the audit log before the client hears of it:
//! failed handshakes (with the peer address and, when one was presented, the certificate's
//! fingerprint and CN, said to be unverified: `who` names only verified clients), refused
//! requests and the handler's own entries.
//!
//! No unauthenticated client can lock the ADMF out:
//! - connections past the handshake (mutual TLS done) have their own slots
//!   (`max_connections`), which a connection still in its handshake never holds;
//! - handshakes have a short deadline and few slots (`max_handshakes`); when they are all taken,
//!   the oldest handshake is dropped for the newcomer, so idle connections cannot hold them;
//! - one address holds at most `max_per_peer` connections, in handshake or past it.
//!
//! Transport refusals are audited one by one up to [`AUDIT_BURST`] per [`AUDIT_WINDOW`]; past
//! that they are counted, and one line per window says how many, why, and from which addresses,
//! so that a flood of connections cannot flood the audit log.
//!
//! HTTP is a deliberately small, strict HTTP/1.1 subset read by [`parse_head`] (a pure function
//! that never panics on any input): a bounded head, CRLF only, no obs-fold, one Host, one
//! Content-Length and it is required (a transfer coding is answered 411, so no chunked parsing
//! exists to get wrong), keep-alive, `Expect: 100-continue`. A body over the limit is answered
//! 413 from its Content-Length, without reading it. Each phase has a total deadline, not a
//! per-read one, so a client trickling bytes (slowloris) is cut off.
//! Written here rather than with hyper: X1 needs one route and no streaming, and a few hundred
//! lines we can read whole are easier to bound than a general HTTP stack.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::audit::{AuditEntry, AuditLog};

/// What a client may do; from its certificate's subject CN (one type with the X1 core's).
pub use super::Role;

/// The authenticated client of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId {
    pub subject_cn: String,
    /// SHA-256 (lowercase hex) of the client certificate's DER.
    pub fingerprint: String,
    pub role: Role,
}

/// The handler's answer: HTTP status, body (X1 response XML) and what to audit. The server fills
/// in `who`, `fingerprint` and `peer` of each entry itself; with no entry it audits the request
/// as `x1-request` with the status.
#[derive(Debug, Clone, Default)]
pub struct HandlerReply {
    pub status: u16,
    pub body: Vec<u8>,
    pub audit: Vec<AuditEntry>,
}

/// The X1 XML core, seen from the transport. Called on a blocking thread.
pub trait X1Handler: Send + Sync + 'static {
    fn handle(&self, client: &ClientId, body: &[u8]) -> HandlerReply;
}

/// `[[x1.client]]`: a subject CN and its role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X1Client {
    pub subject_cn: String,
    pub role: Role,
}

/// Bounds on what one client may cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Request line and headers together.
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    pub handshake_timeout: Duration,
    /// From a request's first byte to the end of its head.
    pub header_timeout: Duration,
    /// For the whole body.
    pub body_timeout: Duration,
    /// Between requests on a kept-alive connection.
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    /// Connections past the handshake (mutual TLS done): slots only authenticated clients hold.
    pub max_connections: usize,
    /// Connections still in their TLS handshake; when full, the oldest is dropped for a new one.
    pub max_handshakes: usize,
    /// Connections from one IP address, in handshake or past it.
    pub max_per_peer: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 4 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(3),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_connections: 64,
            max_handshakes: 16,
            max_per_peer: 8,
        }
    }
}

/// Transport refusals audited one by one per window; the rest are summed up.
pub const AUDIT_BURST: u32 = 20;
pub const AUDIT_WINDOW: Duration = Duration::from_secs(10);

/// Transport refusals of the current window past [`AUDIT_BURST`]: why, and from where.
#[derive(Default)]
struct RefusalTally {
    window_start: Option<Instant>,
    written: u32,
    reasons: BTreeMap<&'static str, u64>,
    peers: HashMap<IpAddr, u64>,
}

impl RefusalTally {
    /// The summary line of what was counted, if anything was; starts a new window.
    fn summary(&mut self) -> Option<AuditEntry> {
        self.window_start = None;
        self.written = 0;
        let total: u64 = self.reasons.values().sum();
        let reasons = std::mem::take(&mut self.reasons);
        let peers = std::mem::take(&mut self.peers);
        if total == 0 {
            return None;
        }
        let mut top: Vec<(IpAddr, u64)> = peers.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let addresses = top.len();
        let top: Vec<String> = top.iter().take(8).map(|(ip, n)| format!("{ip} {n}")).collect();
        let why: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let mut e = AuditEntry::new("tls-refusals", "refused");
        e.detail = Some(format!(
            "{total} more refused connections not audited one by one: {}; from {addresses} address(es), most: {}",
            why.join(", "),
            top.join(", ")
        ));
        Some(e)
    }
}

/// One address's connections; the count goes down when the guard is dropped.
struct PeerGuard {
    ip: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counts.lock() {
            if let Some(n) = c.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.remove(&self.ip);
                }
            }
        }
    }
}

/// The server's certificate and key, the CA that signs clients, the clients and their roles.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X1TlsConfig {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificate(s) that client certificates must chain to.
    pub client_ca: PathBuf,
    #[serde(rename = "client", default)]
    pub clients: Vec<X1Client>,
    #[serde(skip)]
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum X1ServeError {
    #[error("{path}: {what}: {detail}")]
    Tls { what: &'static str, path: PathBuf, detail: String },
    #[error("x1 config: client {cn:?} listed twice")]
    DuplicateClient { cn: String },
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::AuditError),
}

/// A verifier that remembers the certificate a client presented, so a refused handshake can be
/// audited with the certificate's CN and fingerprint. One per connection.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ClientCertVerifier>,
    seen: Mutex<Option<CertificateDer<'static>>>,
}

impl ClientCertVerifier for Recording {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(end_entity.clone().into_owned());
        }
        self.inner.verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// What every connection's TLS configuration is made from.
struct TlsBase {
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<dyn ClientCertVerifier>,
    cert: Arc<OneCert>,
}

impl TlsBase {
    fn load(t: &X1TlsConfig) -> Result<TlsBase, X1ServeError> {
        use rustls::pki_types::pem::PemObject;
        let err = |what, path: &Path, detail: String| X1ServeError::Tls { what, path: path.into(), detail };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let cas =
            CertificateDer::pem_file_iter(&t.client_ca).map_err(|e| err("client CA", &t.client_ca, e.to_string()))?;
        for c in cas {
            let c = c.map_err(|e| err("client CA", &t.client_ca, e.to_string()))?;
            roots.add(c).map_err(|e| err("client CA", &t.client_ca, e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(err("client CA", &t.client_ca, "no certificate".into()));
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| err("client CA", &t.client_ca, e.to_string()))?;
        let certs = CertificateDer::pem_file_iter(&t.cert)
            .map_err(|e| err("certificate", &t.cert, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err("certificate", &t.cert, e.to_string()))?;
        if certs.is_empty() {
            return Err(err("certificate", &t.cert, "no certificate".into()));
        }
        // The key's error text names the file and the PEM problem, never key material.
        let key = PrivateKeyDer::from_pem_file(&t.key).map_err(|e| err("key", &t.key, e.to_string()))?;
        let ck = CertifiedKey::from_der(certs, key, &provider)
            .map_err(|e| err("certificate/key", &t.cert, e.to_string()))?;
        let base = TlsBase { provider, verifier, cert: Arc::new(OneCert(Arc::new(ck))) };
        base.config().map_err(|e| err("config", &t.cert, e.to_string()))?;
        Ok(base)
    }

    fn config(&self) -> Result<(Arc<rustls::ServerConfig>, Arc<Recording>), rustls::Error> {
        let rec = Arc::new(Recording { inner: self.verifier.clone(), seen: Mutex::new(None) });
        let mut cfg = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(rec.clone())
            .with_cert_resolver(self.cert.clone());
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        // No resumption: every connection shows its certificate and is checked afresh.
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Ok((Arc::new(cfg), rec))
    }
}

/// SHA-256 hex of the DER and the subject CN (None when absent, several, or not a string).
fn identify(der: &[u8]) -> (String, Option<String>) {
    let fingerprint = hex::encode(ring::digest::digest(&ring::digest::SHA256, der));
    let cn = x509_parser::parse_x509_certificate(der).ok().and_then(|(_, cert)| {
        let mut cns = cert.subject().iter_common_name();
        let first = cns.next()?.as_str().ok()?.to_string();
        cns.next().is_none().then_some(first)
    });
    (fingerprint, cn)
}

struct Shared {
    handler: Arc<dyn X1Handler>,
    audit: Arc<AuditLog>,
    clients: Vec<X1Client>,
    limits: Limits,
    tally: Mutex<RefusalTally>,
    /// Slots of connections past the handshake.
    established: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    /// Audits a transport refusal (`why` names its kind in the summaries), one by one up to
    /// [`AUDIT_BURST`] per window, counted past that.
    async fn refused(&self, entry: AuditEntry, why: &'static str, peer: IpAddr) {
        let (write, summary) = {
            let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let summary = match t.window_start {
                Some(s) if now.duration_since(s) >= AUDIT_WINDOW => t.summary(),
                _ => None,
            };
            t.window_start.get_or_insert(now);
            if t.written < AUDIT_BURST {
                t.written += 1;
                (true, summary)
            } else {
                *t.reasons.entry(why).or_default() += 1;
                *t.peers.entry(peer).or_default() += 1;
                (false, summary)
            }
        };
        if let Some(s) = summary {
            self.audit(s).await;
        }
        if write {
            self.audit(entry).await;
        }
    }

    /// Writes the summary of the window if it is over (or `now_anyway`, at shutdown).
    async fn flush_refusals(&self, now_anyway: bool) {
        let summary = {
            let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
            let over = t.window_start.is_some_and(|s| Instant::now().duration_since(s) >= AUDIT_WINDOW);
            if over || now_anyway {
                t.summary()
            } else {
                None
            }
        };
        if let Some(s) = summary {
            self.audit(s).await;
        }
    }

    async fn audit(&self, entry: AuditEntry) -> bool {
        let log = self.audit.clone();
        match tokio::task::spawn_blocking(move || log.append(entry)).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                eprintln!("tapir: x1: AUDIT LOG WRITE FAILED: {e}");
                false
            }
            Err(e) => {
                eprintln!("tapir: x1: audit task failed: {e}");
                false
            }
        }
    }
}

/// Serves X1 on `listener` until `shutdown` completes, then lets open requests finish (a few
/// seconds at most) and returns.
/// Loads the certificate, key and client CA exactly as [`serve`] will (the key must match the
/// certificate), without binding anything: for `tapir check-config` and the daemon's start.
pub fn check_tls(t: &X1TlsConfig) -> Result<(), X1ServeError> {
    TlsBase::load(t).map(|_| ())
}

pub async fn serve(
    listener: TcpListener,
    tls: X1TlsConfig,
    handler: Arc<dyn X1Handler>,
    audit: Arc<AuditLog>,
    shutdown: impl Future,
) -> Result<(), X1ServeError> {
    let base = Arc::new(TlsBase::load(&tls)?);
    let mut seen = std::collections::HashSet::new();
    for c in &tls.clients {
        if !seen.insert(c.subject_cn.as_str()) {
            return Err(X1ServeError::DuplicateClient { cn: c.subject_cn.clone() });
        }
    }
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let established = Arc::new(tokio::sync::Semaphore::new(tls.limits.max_connections.max(1)));
    let shared = Arc::new(Shared {
        handler,
        audit,
        clients: tls.clients,
        limits: tls.limits,
        tally: Mutex::new(RefusalTally::default()),
        established,
    });
    let mut start = AuditEntry::new("x1-server", "started");
    start.detail = Some(format!("listening on {local}"));
    // Fail closed: no X1 service without a working audit log.
    let log = shared.audit.clone();
    tokio::task::spawn_blocking(move || log.append(start)).await.unwrap_or_else(|e| {
        Err(crate::audit::AuditError::Io { path: PathBuf::new(), source: std::io::Error::other(e) })
    })?;

    let handshakes = Arc::new(tokio::sync::Semaphore::new(shared.limits.max_handshakes.max(1)));
    // The handshakes in progress, oldest first: each can be told to give up its slot.
    let mut in_handshake: VecDeque<Weak<tokio::sync::Notify>> = VecDeque::new();
    let per_peer: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(AUDIT_WINDOW);
    tokio::pin!(shutdown);
    loop {
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    eprintln!("tapir: x1: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = tick.tick() => {
                shared.flush_refusals(false).await;
                continue;
            }
            _ = &mut shutdown => break,
        };
        while tasks.try_join_next().is_some() {}
        let _ = sock.set_nodelay(true);
        let refusal = |detail: &str| {
            let mut e = AuditEntry::new("tls-handshake", "refused");
            e.peer = Some(peer.to_string());
            e.detail = Some(detail.into());
            e
        };
        // One address holds at most max_per_peer connections.
        let guard = {
            let mut counts = per_peer.lock().unwrap_or_else(|p| p.into_inner());
            let n = counts.entry(peer.ip()).or_default();
            if *n >= shared.limits.max_per_peer.max(1) {
                None
            } else {
                *n += 1;
                Some(PeerGuard { ip: peer.ip(), counts: per_peer.clone() })
            }
        };
        let Some(guard) = guard else {
            drop(sock);
            shared.refused(refusal("too many connections from this address"), "per-address limit", peer.ip()).await;
            continue;
        };
        // A handshake slot; when all are taken, the oldest handshake gives its up.
        let permit = match handshakes.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                while let Some(oldest) = in_handshake.pop_front() {
                    if let Some(n) = oldest.upgrade() {
                        n.notify_one();
                        break;
                    }
                }
                tokio::time::timeout(Duration::from_millis(500), handshakes.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        let Some(permit) = permit else {
            drop(sock);
            shared.refused(refusal("no handshake slot"), "handshake slots full", peer.ip()).await;
            continue;
        };
        let evict = Arc::new(tokio::sync::Notify::new());
        in_handshake.retain(|w| w.strong_count() > 0);
        in_handshake.push_back(Arc::downgrade(&evict));
        let (shared, base, stop) = (shared.clone(), base.clone(), stop_rx.clone());
        tasks.spawn(async move {
            let _guard = guard;
            connection(sock, peer, &shared, &base, stop, permit, evict).await;
        });
    }
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain).await.is_err() {
        tasks.abort_all();
    }
    shared.flush_refusals(true).await;
    let mut stop = AuditEntry::new("x1-server", "stopped");
    stop.detail = Some(format!("was listening on {local}"));
    shared.audit(stop).await;
    Ok(())
}

async fn connection(
    sock: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    base: &TlsBase,
    stop: tokio::sync::watch::Receiver<bool>,
    handshake_slot: tokio::sync::OwnedSemaphorePermit,
    evict: Arc<tokio::sync::Notify>,
) {
    // A certificate that failed the handshake is not an identity: its CN goes in the detail,
    // said to be unverified, and `who` stays empty.
    let refused = |presented: Option<(String, Option<String>)>, detail: String| {
        let mut e = AuditEntry::new("tls-handshake", "refused");
        e.peer = Some(peer.to_string());
        let mut detail = detail;
        if let Some((fp, cn)) = presented {
            e.fingerprint = Some(fp);
            if let Some(cn) = cn {
                detail = format!("{detail}; certificate presented, not verified: CN {cn:?}");
            }
        }
        e.detail = Some(detail);
        e
    };
    let (cfg, rec) = match base.config() {
        Ok(x) => x,
        Err(e) => {
            shared.audit(refused(None, format!("server TLS configuration: {e}"))).await;
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let presented = || rec.seen.lock().ok().and_then(|s| s.as_ref().map(|c| identify(c)));
    let handshake = tokio::time::timeout(shared.limits.handshake_timeout, acceptor.accept(sock));
    let stream = tokio::select! {
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                shared.refused(refused(presented(), e.to_string()), "handshake failed", peer.ip()).await;
                return;
            }
            Err(_) => {
                shared.refused(refused(presented(), "handshake timed out".into()), "handshake timed out", peer.ip()).await;
                return;
            }
        },
        _ = evict.notified() => {
            let e = refused(presented(), "handshake dropped: its slot went to a newer connection".into());
            shared.refused(e, "handshake dropped for a newer one", peer.ip()).await;
            return;
        }
    };
    drop(handshake_slot);
    let Some(der) = stream.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        // Unreachable with a mandatory verifier; refuse anyway rather than trust that.
        shared.audit(refused(None, "no client certificate after the handshake".into())).await;
        return;
    };
    let (fingerprint, cn) = identify(der);
    let role = cn.as_ref().and_then(|cn| shared.clients.iter().find(|c| &c.subject_cn == cn)).map(|c| c.role);
    let who = Who { cn, fingerprint, role, peer: peer.to_string() };
    // Past the handshake: a slot of its own, out of reach of unauthenticated connections.
    let Ok(_slot) = shared.established.clone().try_acquire_owned() else {
        let mut e = AuditEntry::new("tls-handshake", "refused");
        e.detail =
            Some(format!("all {} connection slots of authenticated clients are taken", shared.limits.max_connections));
        shared.audit(who.entry(e)).await;
        return;
    };
    Http { s: stream, buf: Vec::new(), shared, who, stop }.run().await;
}

struct Who {
    cn: Option<String>,
    fingerprint: String,
    role: Option<Role>,
    peer: String,
}

impl Who {
    fn entry(&self, mut e: AuditEntry) -> AuditEntry {
        e.who = self.cn.clone();
        e.fingerprint = Some(self.fingerprint.clone());
        e.peer = Some(self.peer.clone());
        e
    }
}

/// One parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    /// Minor version: 0 or 1 (of HTTP/1.x).
    pub minor: u8,
    pub content_length: Option<u64>,
    pub close: bool,
    pub expect_continue: bool,
}

/// Why a head was refused: the status to answer and a reason for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadError {
    pub status: u16,
    pub reason: String,
}

fn bad(status: u16, reason: impl Into<String>) -> HeadError {
    HeadError { status, reason: reason.into() }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Parses a request head: its bytes up to, not including, the CRLF CRLF that ends it.
pub fn parse_head(head: &[u8]) -> Result<RequestHead, HeadError> {
    let mut rest = Some(head);
    let mut next_line = move || -> Option<Result<&[u8], HeadError>> {
        let r = rest?;
        let (line, after) = match r.windows(2).position(|w| w == b"\r\n") {
            Some(i) => (r.get(..i)?, r.get(i + 2..)),
            None => (r, None),
        };
        rest = after;
        Some(if line.iter().any(|&c| c == b'\r' || c == b'\n') {
            Err(bad(400, "a line not ended by CRLF, or a bare CR or LF"))
        } else {
            Ok(line)
        })
    };
    let request_line = next_line().ok_or_else(|| bad(400, "empty request"))??;
    let mut parts = request_line.split(|&c| c == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(400, "request line is not METHOD SP TARGET SP VERSION"));
    };
    if method.is_empty() || method.len() > 16 || !method.iter().all(|&c| is_tchar(c)) {
        return Err(bad(400, "bad method"));
    }
    if target.is_empty() || target.len() > 2048 || !target.iter().all(|&c| c.is_ascii_graphic()) {
        return Err(bad(400, "bad request target"));
    }
    let minor = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        v if v.starts_with(b"HTTP/") => return Err(bad(505, "HTTP version not supported")),
        _ => return Err(bad(400, "bad HTTP version")),
    };
    let mut h = RequestHead {
        method: String::from_utf8_lossy(method).into_owned(),
        target: String::from_utf8_lossy(target).into_owned(),
        minor,
        content_length: None,
        close: minor == 0,
        expect_continue: false,
    };
    let mut hosts = 0;
    while let Some(line) = next_line() {
        let line = line?;
        let colon = line.iter().position(|&c| c == b':').ok_or_else(|| bad(400, "header line without a colon"))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&c| is_tchar(c)) {
            // Also refuses obs-fold (a line starting with whitespace) and "Name :".
            return Err(bad(400, "bad header name"));
        }
        if !value.iter().all(|&c| c == b'\t' || c == b' ' || c >= 0x21 && c != 0x7f) {
            return Err(bad(400, "control character in a header value"));
        }
        let value = value.trim_ascii();
        match name.to_ascii_lowercase().as_slice() {
            b"content-length" => {
                if h.content_length.is_some() {
                    return Err(bad(400, "Content-Length given twice"));
                }
                if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                    return Err(bad(400, "bad Content-Length"));
                }
                let n = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                h.content_length = Some(n.ok_or_else(|| bad(400, "bad Content-Length"))?);
            }
            b"transfer-encoding" => {
                return Err(bad(411, "Transfer-Encoding is not accepted: send Content-Length"));
            }
            b"host" => hosts += 1,
            b"connection" => {
                for tok in value.split(|&c| c == b',') {
                    match tok.trim_ascii().to_ascii_lowercase().as_slice() {
                        b"close" => h.close = true,
                        b"keep-alive" if minor == 0 => h.close = false,
                        _ => {}
                    }
                }
            }
            b"expect" => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    h.expect_continue = true;
                } else {
                    return Err(bad(417, "unsupported Expect"));
                }
            }
            _ => {}
        }
    }
    if minor == 1 && hosts != 1 {
        return Err(bad(400, "HTTP/1.1 needs exactly one Host header"));
    }
    Ok(h)
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// How reading a head ended.
enum Read {
    Head(Vec<u8>),
    /// The client closed, stayed idle, or the server stops: close without a word.
    Gone,
    Refuse(HeadError),
}

struct Http<'a, S> {
    s: S,
    buf: Vec<u8>,
    shared: &'a Shared,
    who: Who,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Http<'_, S> {
    async fn run(mut self) {
        loop {
            let head = match self.read_head().await {
                Read::Head(h) => h,
                Read::Gone => break,
                Read::Refuse(e) => {
                    self.refuse(e, None).await;
                    break;
                }
            };
            let req = match parse_head(&head) {
                Ok(r) => r,
                Err(e) => {
                    self.refuse(e, None).await;
                    break;
                }
            };
            if !self.request(req).await {
                break;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.s.shutdown()).await;
    }

    /// Reads up to the end of a head: no deadline before its first byte but the idle timeout,
    /// then the header deadline for all of it.
    async fn read_head(&mut self) -> Read {
        let limits = &self.shared.limits;
        let mut deadline = None;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = self.buf.get(..end).unwrap_or_default().to_vec();
                self.buf.drain(..end + 4);
                return Read::Head(head);
            }
            if self.buf.len() > limits.max_header_bytes {
                return Read::Refuse(bad(431, format!("request head over {} bytes", limits.max_header_bytes)));
            }
            if !self.buf.is_empty() && deadline.is_none() {
                deadline = Some(Instant::now() + limits.header_timeout);
            }
            let until = deadline.unwrap_or_else(|| Instant::now() + limits.idle_timeout);
            let r = tokio::select! {
                r = tokio::time::timeout_at(until, self.s.read(&mut chunk)) => r,
                _ = self.stop.changed(), if deadline.is_none() => return Read::Gone,
            };
            match r {
                Ok(Ok(0)) | Ok(Err(_)) => return Read::Gone,
                Ok(Ok(n)) => self.buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(_) if deadline.is_some() => return Read::Refuse(bad(408, "request head not complete in time")),
                Err(_) => return Read::Gone,
            }
        }
    }

    /// Serves one request; false when the connection must close.
    async fn request(&mut self, req: RequestHead) -> bool {
        let line = format!("{} {}", req.method, req.target);
        let Some(role) = self.who.role else {
            let why = match &self.who.cn {
                Some(cn) => format!("subject CN {cn:?} is not a listed X1 client"),
                None => "the certificate has no single subject CN".into(),
            };
            self.refuse(bad(403, why), Some(&line)).await;
            return false;
        };
        if req.target != "/X1/NE" && req.target != "/" {
            return self.refuse_keep(bad(404, "no such path"), &line, &req).await;
        }
        if req.method != "POST" {
            return self.refuse_keep(bad(405, "only POST"), &line, &req).await;
        }
        let Some(len) = req.content_length else {
            self.refuse(bad(411, "Content-Length required"), Some(&line)).await;
            return false;
        };
        let limits = &self.shared.limits;
        if len > limits.max_body_bytes {
            let e = bad(413, format!("Content-Length {len} over the limit of {} bytes", limits.max_body_bytes));
            self.refuse(e, Some(&line)).await;
            return false;
        }
        if req.expect_continue && self.buf.is_empty() && self.write(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
            return false;
        }
        // `len` is at most max_body_bytes, which fits in memory by configuration.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let deadline = Instant::now() + limits.body_timeout;
        let mut chunk = vec![0u8; 16 * 1024];
        while self.buf.len() < len {
            match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return false,
                Ok(Ok(n)) => self.buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(_) => {
                    self.refuse(bad(408, "request body not complete in time"), Some(&line)).await;
                    return false;
                }
            }
        }
        let rest = self.buf.split_off(len);
        let body = std::mem::replace(&mut self.buf, rest);

        if !self.shared.audit.healthy() {
            // An action that could not be recorded must not happen.
            eprintln!("tapir: x1: audit log unusable: refusing {line}");
            let _ = self.respond(503, b"audit log unavailable\n", true, "text/plain").await;
            return false;
        }
        let client = ClientId {
            subject_cn: self.who.cn.clone().unwrap_or_default(),
            fingerprint: self.who.fingerprint.clone(),
            role,
        };
        let handler = self.shared.handler.clone();
        let reply = match tokio::task::spawn_blocking(move || handler.handle(&client, &body)).await {
            Ok(r) => r,
            Err(e) => {
                let mut r = HandlerReply { status: 500, ..Default::default() };
                r.audit.push(AuditEntry {
                    detail: Some(format!("handler failed: {e}")),
                    ..AuditEntry::new("x1-request", "error")
                });
                r
            }
        };
        let mut reply = reply;
        if !(200..=599).contains(&reply.status) {
            // 1xx would break the framing; anything else is not HTTP.
            reply.audit.push(AuditEntry {
                detail: Some(format!("handler returned status {}", reply.status)),
                ..AuditEntry::new("x1-request", "error")
            });
            reply.status = 500;
        }
        let mut entries = reply.audit;
        if entries.is_empty() {
            entries.push(AuditEntry::new("x1-request", if reply.status < 400 { "ok" } else { "refused" }));
            if let Some(e) = entries.first_mut() {
                e.detail = Some(format!("{line}: {}", reply.status));
            }
        }
        for e in entries {
            // Logged before the client is answered: an acknowledged action is always on record.
            if !self.shared.audit(self.who.entry(e)).await {
                let _ = self.respond(500, b"audit log unavailable\n", true, "text/plain").await;
                return false;
            }
        }
        let close = req.close || *self.stop.borrow();
        self.respond(reply.status, &reply.body, close, "text/xml; charset=utf-8").await.is_ok() && !close
    }

    /// A refusal on a request whose body can be skipped cheaply keeps the connection.
    async fn refuse_keep(&mut self, e: HeadError, line: &str, req: &RequestHead) -> bool {
        let keep = req.content_length.unwrap_or(0) == 0 && !req.close;
        self.audit_refusal(&e, Some(line)).await;
        self.respond(e.status, format!("{}\n", e.reason).as_bytes(), !keep, "text/plain").await.is_ok() && keep
    }

    async fn audit_refusal(&self, e: &HeadError, line: Option<&str>) {
        let mut entry = AuditEntry::new("x1-request", "refused");
        entry.detail = Some(match line {
            Some(l) => format!("{} {}: {l}: {}", e.status, reason(e.status), e.reason),
            None => format!("{} {}: {}", e.status, reason(e.status), e.reason),
        });
        self.shared.audit(self.who.entry(entry)).await;
    }

    /// Answers `e`, audits it, and closes: drains what the client still sends for a moment so
    /// the answer is not lost to a TCP reset.
    async fn refuse(&mut self, e: HeadError, line: Option<&str>) {
        self.audit_refusal(&e, line).await;
        if self.respond(e.status, format!("{}\n", e.reason).as_bytes(), true, "text/plain").await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.s.shutdown()).await;
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut chunk = vec![0u8; 64 * 1024];
        let mut drained = 0usize;
        while drained < 8 * 1024 * 1024 {
            match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => break,
            }
        }
    }

    async fn respond(&mut self, status: u16, body: &[u8], close: bool, ctype: &str) -> std::io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n",
            reason(status),
            body.len()
        );
        if status == 405 {
            out.push_str("Allow: POST\r\n");
        }
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        self.write(&bytes).await
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let w = async {
            self.s.write_all(bytes).await?;
            self.s.flush().await
        };
        tokio::time::timeout(self.shared.limits.write_timeout, w)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The X1 server's HTTP layer over an in-memory pipe on tokio's paused clock: the runtime
    /// jumps to the next deadline when every task waits, so the default limits (10 s for a
    /// head, 60 s idle) are checked to the nanosecond in no wall time. TLS and the handler are
    /// not involved: a head that never ends and a client that never speaks reach neither.
    mod deadlines {
        use super::*;

        struct NoHandler;
        impl X1Handler for NoHandler {
            fn handle(&self, _: &ClientId, _: &[u8]) -> HandlerReply {
                unreachable!("no request is whole in these tests")
            }
        }

        fn shared(dir: &std::path::Path) -> Shared {
            Shared {
                handler: Arc::new(NoHandler),
                audit: Arc::new(AuditLog::open(&dir.join("audit.jsonl"), None, 0).unwrap()),
                clients: Vec::new(),
                limits: Limits::default(),
                tally: Mutex::new(RefusalTally::default()),
                established: Arc::new(tokio::sync::Semaphore::new(1)),
            }
        }

        /// Serves one connection whose client writes `sent` (pieces, `gap` apart) and then
        /// waits; what the client read until the server closed, and when that was.
        async fn exchange(sent: &[&[u8]], gap: Duration) -> (String, Duration) {
            let d = tempfile::tempdir().unwrap();
            let shared = shared(d.path());
            let (client, server) = tokio::io::duplex(1 << 16);
            let (_stop_tx, stop) = tokio::sync::watch::channel(false);
            let who =
                Who { cn: Some("admf".into()), fingerprint: "00".into(), role: None, peer: "192.0.2.1:4000".into() };
            let start = Instant::now();
            let serve = Http { s: server, buf: Vec::new(), shared: &shared, who, stop }.run();
            let (mut rx, mut tx) = tokio::io::split(client);
            let write = async {
                for (i, piece) in sent.iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(gap).await;
                    }
                    // The server may have closed already: the rest is not sent.
                    if tx.write_all(piece).await.is_err() {
                        break;
                    }
                }
            };
            let read = async {
                let mut got = Vec::new();
                let _ = rx.read_to_end(&mut got).await;
                (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
            };
            let talk = async { tokio::join!(write, read).1 };
            tokio::join!(serve, talk).1
        }

        #[tokio::test(start_paused = true)]
        async fn a_head_that_never_ends_is_answered_408_at_the_header_deadline_from_its_first_byte() {
            // Slowloris: a piece of the head every 2 s; the deadline counts from the first byte.
            let pieces: [&[u8]; 8] =
                [b"POST /X1/", b"NE HTTP/1", b".1\r\nHo", b"st: a\r\n", b"X: 1\r\n", b"Y", b"Z", b"W"];
            let (got, at) = exchange(&pieces, Duration::from_secs(2)).await;
            assert!(got.starts_with("HTTP/1.1 408 "), "{got}");
            assert_eq!(at, Limits::default().header_timeout, "{got}");
        }

        #[tokio::test(start_paused = true)]
        async fn a_client_that_never_speaks_is_closed_at_the_idle_timeout_without_a_word() {
            let (got, at) = exchange(&[], Duration::ZERO).await;
            assert_eq!(got, "");
            assert_eq!(at, Limits::default().idle_timeout);
        }
    }

    fn p(s: &str) -> Result<RequestHead, u16> {
        parse_head(s.as_bytes()).map_err(|e| e.status)
    }

    #[test]
    fn heads() {
        let h = p("POST /X1/NE HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nExpect: 100-continue").unwrap();
        assert_eq!(
            (h.method.as_str(), h.target.as_str(), h.content_length, h.close),
            ("POST", "/X1/NE", Some(12), false)
        );
        assert!(h.expect_continue);
        assert!(p("POST / HTTP/1.0\r\nContent-Length: 0").unwrap().close);
        assert!(p("POST / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, close").unwrap().close);
        assert_eq!(p("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"), Err(411));
        assert_eq!(p("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1"), Err(400));
        assert_eq!(p("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1"), Err(400));
        assert_eq!(p("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999"), Err(400));
        assert_eq!(p("POST / HTTP/1.1\r\nHost: a\r\n folded"), Err(400));
        assert_eq!(p("POST / HTTP/1.1\r\nHost : a"), Err(400));
        assert_eq!(p("POST / HTTP/1.1\nHost: a"), Err(400));
        assert_eq!(p("POST / HTTP/1.1"), Err(400), "no Host");
        assert_eq!(p("POST / HTTP/2.0\r\nHost: a"), Err(505));
        assert_eq!(p("POST  / HTTP/1.1\r\nHost: a"), Err(400));
        assert_eq!(p("POST / HTTP/1.1\r\nHost: a\r\nX: a\x01b"), Err(400));
        assert_eq!(p("POST / HTTP/1.1\r\nHost: a\r\nExpect: nonsense"), Err(417));
    }

    proptest::proptest! {
        #[test]
        fn parse_head_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_head(&b);
        }
    }
}
