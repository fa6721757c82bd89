//! X1 in the daemon: the HTTPS server (`x1::https`) in front of the task store (`x1::X1Core`),
//! the audit log, and the warrants the pipeline gets from both the warrants file and X1.
//!
//! ```text
//!  ADMF ──mTLS── https::serve ──> Handler ──> Mutex<X1Core> ──(generation moved)──> Control::Reload
//!                     │                                                                   │
//!                 AuditLog  <── run loop's 1 s tick (implicit deactivation, four-eyes)    v
//!                                            run loop: X1Warrants::load() = file ∪ X1 ─> Pipeline
//! ```
//! **Time.** X1's `now` is the run's present: the capture time the pipeline has reached (the
//! latest packet or source clock, handed over by the run loop with [`X1Running::note_present`]).
//! On a live link that is the wall clock; in a replay it is the replay's own time, so a task
//! activated two seconds into a replay intercepts from there, whatever the capture's age, just as
//! a warrants file's window is read in packet time. Before the run has a present (a replay whose
//! first frame has not come), the wall clock. The tick runs on the run loop's clock
//! ([`super::clock`]): a test on a virtual clock moves X1's timers with everything else.
//! **Merge.** The warrants in force are the file's plus X1's (docs/x1.md, "In the daemon"). A
//! change over X1 does not re-read the file: it reuses the file's warrants last loaded, so a file
//! being edited (or broken) never blocks nor reverts an X1 change. SIGHUP re-reads the file as
//! before. Why `Control::Reload` and not `Control::Warrants`: a `Warrants` message computed from
//! the file as it was would, if a SIGHUP sat in the queue before it, undo that SIGHUP; a `Reload`
//! is computed when the run loop gets to it, from the state at that moment.
//!
//! **LEAs.** Each X1 destination becomes a `[[lea]]` named by its DID, built on `[x1]
//! lea_template` or, without one, on the file's first `[[lea]]` (its name/hi2/hi3 replaced). A
//! file `[[lea]]` named like a DID wins (full control of that destination's TLS and options).
//!
//! Nothing here logs a target identity: only XIDs, DIDs, LIIDs and counts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};

use super::config::{Config, X1Config};
use super::run::{Control, WarrantsProvider};
use super::source::wall_clock;
use crate::audit::{AuditEntry, AuditLog};
use crate::deliver::handover::{ChannelReport, DeliveryReport, LeaReport};
use crate::deliver::manifest::SigningKey;
use crate::select::{load_warrants, Warrants};
use crate::timestamp::Timestamp;
use crate::x1::https::{self, ClientId, HandlerReply, X1Handler, X1TlsConfig};
use crate::x1::{Action, Caller, X1Core, X1CoreConfig};

/// What the handler, the tick and the warrants provider share.
struct Shared {
    core: Mutex<X1Core>,
    /// The warrants file as last loaded successfully.
    file: Mutex<Warrants>,
    file_path: PathBuf,
    lea_template: Option<toml::Table>,
    audit: Arc<AuditLog>,
    /// The core generation the pipeline was last told about.
    told: AtomicU64,
    /// `Control::Reload`s sent for X1 changes and not yet served: those reuse the cached file.
    x1_reloads: AtomicU64,
    control: Mutex<Option<Sender<Control>>>,
    /// The run's present, in nanoseconds ([`Timestamp`]); `i64::MIN` until the run has one.
    present: AtomicI64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every mutation of the guarded values completes before the guard drops; a panic elsewhere
    // leaves them consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// X1's `now`: the run's present, else the wall clock (see the module's notes).
    fn now(&self) -> Timestamp {
        match self.present.load(Ordering::SeqCst) {
            i64::MIN => wall_clock(),
            t => Timestamp(t),
        }
    }

    /// Tells the run loop when tasks or destinations changed.
    fn notify_if_changed(&self, core: &X1Core) {
        let g = core.generation();
        if self.told.swap(g, Ordering::SeqCst) == g {
            return;
        }
        tracing::info!(generation = g, "X1 tasks or destinations changed: reloading warrants");
        if let Some(tx) = lock(&self.control).as_ref() {
            self.x1_reloads.fetch_add(1, Ordering::SeqCst);
            if tx.send(Control::Reload).is_err() {
                self.x1_reloads.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    fn merged(&self, file: &Warrants) -> Warrants {
        let core = lock(&self.core);
        self.told.store(core.generation(), Ordering::SeqCst);
        merge(file, &core, self.lea_template.as_ref(), self.now())
    }
}

static NO_TEMPLATE_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The LEA template: `[x1] lea_template`, else the file's first `[[lea]]` less name/hi2/hi3.
pub fn lea_template(configured: Option<&toml::Table>, file: &Warrants) -> Option<toml::Table> {
    if let Some(t) = configured {
        return Some(t.clone());
    }
    let mut t = file.lea.first()?.as_table()?.clone();
    for k in ["name", "hi2", "hi3"] {
        t.remove(k);
    }
    Some(t)
}

/// The warrants in force: the file's, then X1's (an X1 LIID the file already has is left out,
/// logged); the file's `[[lea]]`, then one per X1 destination the file does not name.
pub fn merge(file: &Warrants, core: &X1Core, configured_template: Option<&toml::Table>, now: Timestamp) -> Warrants {
    let x1 = core.warrants(now);
    let mut out = file.clone();
    out.destinations = x1.destinations;
    for w in x1.warrants {
        if file.warrants.iter().any(|f| f.liid == w.liid) {
            tracing::error!(liid = %w.liid, "an X1 task uses a LIID of the warrants file: the file's warrant applies");
            continue;
        }
        out.warrants.push(w);
    }
    let named = |n: &str| file.lea.iter().any(|l| l.get("name").and_then(|v| v.as_str()) == Some(n));
    match lea_template(configured_template, file) {
        Some(t) => {
            for l in core.leas() {
                if !named(&l.name) {
                    out.lea.push(l.to_lea_table(&t));
                }
            }
        }
        None => {
            if !core.leas().is_empty() && file.lea.is_empty() && !NO_TEMPLATE_WARNED.swap(true, Ordering::Relaxed) {
                // No LEA at all: delivery stays off and the case gets everything.
                tracing::warn!("X1 destinations have no [x1] lea_template nor a file [[lea]]: no delivery");
            }
        }
    }
    out
}

/// `[paths] warrants` merged with the X1 store.
struct X1Warrants(Arc<Shared>);

impl WarrantsProvider for X1Warrants {
    fn load(&mut self) -> Result<Warrants> {
        let s = &self.0;
        // An X1 change: the file as last loaded. SIGHUP (or the first load): the file re-read.
        let x1_change = s.x1_reloads.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if !x1_change {
            let f = load_warrants(&s.file_path)?;
            *lock(&s.file) = f;
        }
        let file = lock(&s.file).clone();
        Ok(s.merged(&file))
    }
    fn describe(&self) -> String {
        self.0.file_path.display().to_string()
    }
}

/// The X1 request handler: the core under a mutex, its actions as audit entries.
struct Handler(Arc<Shared>);

/// An action of the core as an audit entry (identifiers only; the server adds who/peer).
pub fn audit_entry(a: &Action) -> AuditEntry {
    let detail = match (&a.did, &a.detail) {
        (Some(d), Some(t)) => Some(format!("dId {d}: {t}")),
        (Some(d), None) => Some(format!("dId {d}")),
        (None, t) => t.clone(),
    };
    AuditEntry { xid: a.xid.clone(), liid: a.liid.clone(), detail, ..AuditEntry::new(&a.what, &a.result) }
}

impl X1Handler for Handler {
    fn handle(&self, client: &ClientId, body: &[u8]) -> HandlerReply {
        let caller = Caller { subject_cn: &client.subject_cn, fingerprint: &client.fingerprint, role: client.role };
        let mut core = lock(&self.0.core);
        let reply = core.handle(&caller, body, self.0.now());
        self.0.notify_if_changed(&core);
        drop(core);
        for a in &reply.actions {
            tracing::info!(
                request = %a.what, xid = a.xid.as_deref().unwrap_or("-"), did = a.did.as_deref().unwrap_or("-"),
                liid = a.liid.as_deref().unwrap_or("-"), result = %a.result, client = %client.subject_cn, "X1"
            );
        }
        HandlerReply {
            status: reply.http_status,
            body: reply.body,
            audit: reply.actions.iter().map(audit_entry).collect(),
        }
    }
}

/// X1 opened (store loaded, audit log open) but not serving yet: open it before the warrants are
/// first loaded, so they include X1's; start it where the daemon binds its listeners.
pub struct X1Service {
    shared: Arc<Shared>,
    cfg: X1Config,
}

impl X1Service {
    /// `None` without `[x1]`.
    pub fn open(config: &Config) -> Result<Option<X1Service>> {
        let Some(x) = &config.x1 else { return Ok(None) };
        let mut cc = X1CoreConfig::new(&x.ne_id);
        cc.four_eyes = x.four_eyes;
        cc.four_eyes_timeout_secs = x.four_eyes_timeout_secs;
        cc.bind_admf_identifier = x.bind_admf_identifier;
        let core = X1Core::open(&x.store, cc).with_context(|| format!("opening the X1 store {}", x.store.display()))?;
        let key_path = x.signing_key.as_ref().or(config.paths.signing_key.as_ref());
        let key = match key_path {
            Some(p) => Some(SigningKey::load(p).with_context(|| format!("X1 audit signing key {}", p.display()))?),
            None => {
                tracing::warn!("no [x1] signing_key nor [paths] signing_key: the X1 audit log is only hash-chained");
                None
            }
        };
        let audit = AuditLog::open(&x.audit_log, key, x.sign_every)
            .with_context(|| format!("opening the X1 audit log {}", x.audit_log.display()))?;
        let told = AtomicU64::new(core.generation());
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            file: Mutex::new(Warrants::default()),
            file_path: config.paths.warrants.clone(),
            lea_template: x.lea_template.clone(),
            audit: Arc::new(audit),
            told,
            x1_reloads: AtomicU64::new(0),
            control: Mutex::new(None),
            present: AtomicI64::new(i64::MIN),
        });
        Ok(Some(X1Service { shared, cfg: x.clone() }))
    }

    /// The warrants provider: the file merged with the X1 tasks.
    pub fn provider(&self) -> Box<dyn WarrantsProvider> {
        Box::new(X1Warrants(self.shared.clone()))
    }

    /// Binds `[x1] listen` (an error here stops the daemon before READY=1) and serves X1 on a
    /// thread of its own until the returned [`X1Running`] is dropped.
    pub fn start(self, control: Sender<Control>) -> Result<X1Running> {
        let x = &self.cfg;
        let tls = tls_config(x);
        https::check_tls(&tls).context("[x1]")?;
        let listener =
            std::net::TcpListener::bind(x.listen).with_context(|| format!("[x1] listen {}: binding", x.listen))?;
        listener.set_nonblocking(true).context("[x1] listen: non-blocking")?;
        let local = listener.local_addr().unwrap_or(x.listen);
        *lock(&self.shared.control) = Some(control);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new().name("tapir-x1".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "X1: no runtime; X1 is not served");
                    return;
                }
            };
            rt.block_on(serve(listener, tls, shared, stop_rx));
        })?;
        tracing::info!(listen = %local, store = %x.store.display(), audit_log = %x.audit_log.display(), "X1 serving");
        Ok(X1Running { stop: stop_tx, thread: Some(thread), shared: self.shared, local })
    }
}

fn tls_config(x: &X1Config) -> X1TlsConfig {
    X1TlsConfig {
        cert: x.cert.clone(),
        key: x.key.clone(),
        client_ca: x.client_ca.clone(),
        clients: x.clients.iter().map(|c| https::X1Client { subject_cn: c.subject_cn.clone(), role: c.role }).collect(),
        // The transport refuses from Content-Length what the core would refuse after reading.
        limits: https::Limits {
            max_body_bytes: u64::try_from(crate::x1::Limits::default().max_body_bytes).unwrap_or(u64::MAX),
            ..https::Limits::default()
        },
    }
}

/// `tapir check-config` for `[x1]`: everything `tapir run` opens for X1 before READY=1, opened
/// without creating or changing anything. The TLS files load and the key matches the
/// certificate; the store and the audit log's tail parse; the signing key loads;
/// `lea_template` makes valid `[[lea]]` tables. `None` without `[x1]`, else a summary line.
pub fn check(config: &Config) -> Result<Option<String>> {
    let Some(x) = &config.x1 else { return Ok(None) };
    https::check_tls(&tls_config(x)).context("[x1]")?;
    let (tasks, destinations) =
        X1Core::inspect(&x.store).with_context(|| format!("[x1] store {}", x.store.display()))?;
    let next = AuditLog::inspect(&x.audit_log).with_context(|| format!("[x1] audit_log {}", x.audit_log.display()))?;
    // `tapir run` creates the store's directory, not others.
    if let Some(dir) = x.audit_log.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir() && *d != x.store) {
        bail!("[x1] audit_log {}: directory {} does not exist", x.audit_log.display(), dir.display());
    }
    if let Some(p) = x.signing_key.as_ref().or(config.paths.signing_key.as_ref()) {
        SigningKey::load(p).with_context(|| format!("X1 audit signing key {}", p.display()))?;
    }
    if let Some(t) = &x.lea_template {
        let probe = crate::x1::X1Lea {
            name: "lea-template-check".into(),
            friendly_name: None,
            address: SocketAddr::from(([127, 0, 0, 1], 1)),
            delivery: crate::x1::DeliveryType::X2andX3,
        };
        crate::deliver::handover::parse_leas(&[probe.to_lea_table(t)], "[x1] lea_template")
            .map_err(|e| anyhow!("{e}"))?;
    }
    Ok(Some(format!(
        "X1 on {}: {tasks} task(s), {destinations} destination(s) in the store, audit log at entry {next}",
        x.listen
    )))
}

async fn serve(
    listener: std::net::TcpListener,
    tls: X1TlsConfig,
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "X1: listener; X1 is not served");
            return;
        }
    };
    let handler: Arc<dyn X1Handler> = Arc::new(Handler(shared.clone()));
    let server = https::serve(listener, tls, handler, shared.audit.clone(), async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    // The server ends on the stop order, after draining open requests.
    if let Err(e) = server.await {
        tracing::error!(error = %e, "X1 server stopped; provisioning is unavailable, warrants in force stay");
    }
}

/// X1 being served; dropping it stops the server, waits for it, and signs and closes the audit
/// log.
pub struct X1Running {
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    local: SocketAddr,
}

impl X1Running {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The capture time the run has reached: X1's `now` from here on (see the module's notes);
    /// [`Timestamp::MIN`] while it has none.
    pub fn note_present(&self, t: Timestamp) {
        self.shared.present.store(t.nanos(), Ordering::SeqCst);
    }

    /// Implicit deactivation and four-eyes expiry at X1's `now`, audited as `who = "tapir"`:
    /// the run loop's duty once a second of its clock. The core persists (fsync) only when
    /// something expired.
    pub fn tick(&self) {
        let shared = &self.shared;
        let mut core = lock(&shared.core);
        let actions = core.tick(shared.now());
        shared.notify_if_changed(&core);
        drop(core);
        for a in &actions {
            tracing::info!(request = %a.what, xid = a.xid.as_deref().unwrap_or("-"), result = %a.result, "X1");
            let mut e = audit_entry(a);
            e.who = Some("tapir".into());
            if let Err(err) = shared.audit.append(e) {
                tracing::error!(error = %err, "X1 audit log write failed");
            }
        }
    }

    /// What the pipeline intercepted per LIID since the last call: (X2 bytes, X3 bytes, time
    /// of the last intercept), for TaskStatus.
    pub fn note_intercepts(&self, per_liid: impl Iterator<Item = (crate::select::Liid, (u64, u64, Timestamp))>) {
        let mut core = lock(&self.shared.core);
        for (liid, (x2, x3, last)) in per_liid {
            core.note_intercept(&liid, last, x2, x3);
        }
    }

    /// The delivery's health into TaskStatus and NE status (TS 103 221-1 faults): a destination
    /// whose HI2 or HI3 tried to connect and is not connected has a fault, with the channel's
    /// last error; one that connects again is cleared. `report` is `None` while there is no
    /// delivery at all, and then every destination has a fault: nothing reaches its LEA.
    pub fn note_delivery(&self, report: Option<&DeliveryReport>) {
        let mut core = lock(&self.shared.core);
        let changed = core.update_destination_faults(|did| match report {
            None => Some(Some("not delivered: tapir has no [[lea]] for it (set [x1] lea_template)".into())),
            // A destination added since this report was made: wait for the next one.
            Some(r) => r.leas.iter().find(|l| l.name == did).map(destination_fault),
        });
        drop(core);
        for (did, fault) in changed {
            match fault {
                Some(f) => tracing::warn!(did = %did, fault = %f, "X1 destination fault"),
                None => tracing::info!(did = %did, "X1 destination fault cleared"),
            }
        }
    }
}

/// The fault of one LEA's delivery, if any: a channel that failed to connect (or lost its
/// connection) and is not connected now. A channel still making its first attempt has none.
fn destination_fault(l: &LeaReport) -> Option<String> {
    let down = |name: &str, c: &ChannelReport| {
        (!c.connected && c.errors > 0)
            .then(|| format!("{name} not connected: {}", c.last_error.as_deref().unwrap_or("no connection")))
    };
    let faults: Vec<String> = [down("HI2", &l.hi2), down("HI3", &l.hi3)].into_iter().flatten().collect();
    (!faults.is_empty()).then(|| faults.join("; "))
}

impl Drop for X1Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the X1 thread panicked");
            }
        }
        *lock(&self.shared.control) = None;
        if let Err(e) = self.shared.audit.close() {
            tracing::error!(error = %e, "closing the X1 audit log");
        }
    }
}
