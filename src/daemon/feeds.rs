//! The daemon's side channels: the Prometheus endpoint, the live association feed, and the
//! journal that keeps what the feed and RADIUS accounting taught across restarts.
//!
//! ```text
//!  feed socket ──(journal fsync, then)──> tokio mpsc ──> Feeds::poll ──> Pipeline::push_event
//!  Pipeline (RADIUS on the tap) ──take_radius_events──> Feeds::poll ──> journal thread (fsync)
//!  journal at start ──load_journal──> Pipeline::push_event
//!  Pipeline::summary, flow stats, delivery probe, source drops ──(every 250 ms)──> metrics
//! ```
//! The listeners run on one small tokio runtime thread (`tapir-feeds`) and are bound before
//! `READY=1`, so a daemon that cannot listen fails at start. The pipeline thread never blocks on
//! an fsync: RADIUS-learnt events are journalled by a thread of their own.
//!
//! Privacy: metric labels are LIIDs, interfaces, error kinds, LEA names and channels only (the
//! registry refuses any other label); logs carry counts and paths, never an event's content.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use super::clock::Every;
use super::config::{Config, ListenAddr};
use super::source::{wall_clock, Source};
use crate::deliver::handover::DeliveryReport;
use crate::metrics::{Counter, Gauge, Metrics, TapirMetrics, X2x3Metrics};
use crate::pipeline::Engine;
use crate::select::feed::{compact_journal, load_journal, serve_feed_on, FeedAddr, FeedListener, Journal};
use crate::select::{AssocEvent, Liid};

/// How often the metrics are brought up to date from the pipeline thread.
pub const UPDATE_EVERY: Duration = Duration::from_millis(250);

/// RADIUS-learnt events waiting for the journal thread; beyond this they are logged as lost
/// for persistence (they are still applied).
const JOURNAL_QUEUE: usize = 4096;

/// Events from the feed waiting for the pipeline thread (the feed waits when it is full).
const FEED_QUEUE: usize = 1024;

/// The journal's default name under `[paths] spool_dir`.
pub const JOURNAL_NAME: &str = "associations.journal";

/// Ended access sessions are kept in the journal for a day after their stop: a live pipeline's
/// capture time is the wall clock, so a session that ended a day ago can no longer select a
/// packet, while a replay source or a clock step has that margin.
pub const JOURNAL_KEEP_SECS: i64 = 24 * 3600;

/// The latest delivery report, written by the delivery's output thread
/// ([`crate::deliver::threaded::Threaded::spawn_observed`]), read by the metrics updater.
#[derive(Clone, Debug, Default)]
pub struct DeliveryStatus(Arc<Mutex<Option<DeliveryReport>>>);

impl DeliveryStatus {
    pub fn publish(&self, r: DeliveryReport) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    }
    pub fn latest(&self) -> Option<DeliveryReport> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Kernel drop counts per capture source, published by the capture threads.
#[derive(Clone, Debug, Default)]
pub struct KernelDrops(Arc<Mutex<BTreeMap<usize, SourceCounters>>>);

/// One source's interface label, kernel drops and ring freezes.
type SourceCounters = (String, u64, u64);

/// One capture source's place in [`KernelDrops`].
#[derive(Clone, Debug)]
pub struct DropsSlot {
    drops: KernelDrops,
    index: usize,
}

impl DropsSlot {
    /// Records the source's interface and drop count (a no-op for sources without interface).
    pub fn publish(&self, src: &dyn Source) {
        if let Some(iface) = src.interface() {
            let (n, f) = (src.dropped(), src.freezes());
            self.drops.0.lock().unwrap_or_else(|p| p.into_inner()).insert(self.index, (iface, n, f));
        }
    }
}

/// An association feed to serve: its address, its token (TCP), the journal its events go to and
/// where the pipeline takes them.
type Feed = (FeedAddr, Option<String>, Arc<Journal>, tokio::sync::mpsc::Sender<AssocEvent>);

/// What an MDF's metrics show of its X2/X3 intake (counts so far).
#[derive(Clone, Copy, Debug, Default)]
pub struct X2x3Snapshot {
    pub x2: u64,
    pub x3: u64,
    pub refused: u64,
    pub resent: u64,
    pub connections: u64,
    pub framing_errors: u64,
    pub tls_refused: u64,
    pub journal: bool,
}

/// The metric handles, created once per label value and kept.
struct Updater {
    m: TapirMetrics,
    matched: HashMap<Liid, Counter>,
    decode_errors: HashMap<String, Counter>,
    /// Per interface: (drops, freezes).
    kernel: HashMap<String, (Counter, Counter)>,
    lea: BTreeMap<(String, &'static str), Gauge>,
    /// When the metrics are next brought up to date (`None`: at once).
    every: Option<Every>,
}

impl Updater {
    /// Whether the metrics are due at `now` (the run's clock): at most every [`UPDATE_EVERY`].
    fn due(&mut self, now: Instant) -> bool {
        match &mut self.every {
            Some(e) => e.due(now),
            None => {
                self.every = Some(Every::new(UPDATE_EVERY, now));
                true
            }
        }
    }

    fn new(m: TapirMetrics) -> Updater {
        Updater {
            m,
            matched: HashMap::new(),
            decode_errors: HashMap::new(),
            kernel: HashMap::new(),
            lea: BTreeMap::new(),
            every: None,
        }
    }

    fn update(&mut self, p: &Engine, delivery: Option<&DeliveryReport>, drops: &KernelDrops) {
        self.update_pipeline(p);
        self.update_delivery(delivery);
        self.update_kernel(drops);
    }

    fn update_pipeline(&mut self, p: &Engine) {
        let s = &p.summary();
        self.m.packets.raise_to(s.frames);
        self.m.bytes.raise_to(s.bytes);
        for (liid, n) in &s.matched {
            if !self.matched.contains_key(liid) {
                match self.m.matched_packets(liid) {
                    Ok(c) => {
                        self.matched.insert(liid.clone(), c);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "metric not registered");
                        continue;
                    }
                }
            }
            if let Some(c) = self.matched.get(liid) {
                c.raise_to(*n);
            }
        }
        for (kind, n) in &s.decode_errors {
            if !self.decode_errors.contains_key(kind) {
                match self.m.decode_errors(kind) {
                    Ok(c) => {
                        self.decode_errors.insert(kind.clone(), c);
                    }
                    Err(_) => continue,
                }
            }
            if let Some(c) = self.decode_errors.get(kind) {
                c.raise_to(*n);
            }
        }
        self.m.announced_connections.raise_to(s.announced_routes.pinned);
        self.m.announced_refused.raise_to(s.announced_routes.refused);
        self.m.fragments_refused.raise_to(s.fragment_routes.refused);
        let fs = p.flow_stats();
        self.m.flows.set(i64::try_from(fs.active).unwrap_or(i64::MAX));
        self.m.reassembly_bytes.set(i64::try_from(fs.tcp.buffered).unwrap_or(i64::MAX));
        self.m.objects.raise_to(p.objects_finished());
    }

    fn update_delivery(&mut self, delivery: Option<&DeliveryReport>) {
        let mut spool = 0u64;
        let mut seen: Vec<(String, &'static str)> = Vec::new();
        for l in delivery.map(|d| d.leas.as_slice()).unwrap_or(&[]) {
            for (ch, r) in [("hi2", &l.hi2), ("hi3", &l.hi3)] {
                // u64::MAX marks a spool that could not be read: not a depth.
                if r.still_spooled_bytes != u64::MAX {
                    spool = spool.saturating_add(r.still_spooled_bytes);
                }
                let key = (l.name.clone(), ch);
                if !self.lea.contains_key(&key) {
                    match self.m.lea_connected(&l.name, ch) {
                        Ok(g) => {
                            self.lea.insert(key.clone(), g);
                        }
                        Err(_) => continue,
                    }
                }
                if let Some(g) = self.lea.get(&key) {
                    g.set(i64::from(r.connected));
                }
                seen.push(key);
            }
        }
        // An LEA no longer delivered to (reload) is not connected.
        for (k, g) in &self.lea {
            if !seen.contains(k) {
                g.set(0);
            }
        }
        self.m.spool_bytes.set(i64::try_from(spool).unwrap_or(i64::MAX));
    }

    fn update_kernel(&mut self, drops: &KernelDrops) {
        let mut per_iface: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (iface, n, f) in drops.0.lock().unwrap_or_else(|p| p.into_inner()).values() {
            let e = per_iface.entry(iface.clone()).or_insert((0, 0));
            e.0 = e.0.saturating_add(*n);
            e.1 = e.1.saturating_add(*f);
        }
        for (iface, (n, f)) in per_iface {
            if !self.kernel.contains_key(&iface) {
                match (self.m.kernel_drops(&iface), self.m.kernel_freezes(&iface)) {
                    (Ok(d), Ok(z)) => {
                        self.kernel.insert(iface.clone(), (d, z));
                    }
                    _ => continue,
                }
            }
            if let Some((d, z)) = self.kernel.get(&iface) {
                d.raise_to(n);
                z.raise_to(f);
            }
        }
    }
}

/// The running side channels. Made by [`Feeds::start`] once the pipeline exists, driven by
/// [`Feeds::poll`] from the pipeline loop, closed by [`Feeds::finish`].
pub struct Feeds {
    registry: Option<Metrics>,
    updater: Option<Updater>,
    /// An MDF's X2/X3 intake metrics.
    x2x3: Option<X2x3Metrics>,
    assoc_rx: Option<tokio::sync::mpsc::Receiver<AssocEvent>>,
    journal_tx: Option<SyncSender<AssocEvent>>,
    journal_thread: Option<JoinHandle<()>>,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    runtime: Option<JoinHandle<()>>,
    journal_path: PathBuf,
    /// Association events the pipeline had dropped at the last poll (logged when it grows).
    dropped_seen: u64,
    /// Where the delivery publishes its state; hand it to `start_delivery`.
    pub delivery: DeliveryStatus,
    pub kernel: KernelDrops,
    /// The metrics endpoint's bound address.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

fn read_token(path: &std::path::Path) -> Result<String> {
    let t = std::fs::read_to_string(path).with_context(|| format!("reading feed token {}", path.display()))?;
    let t = t.trim().to_string();
    if t.is_empty() {
        return Err(anyhow!("feed token {}: empty", path.display()));
    }
    Ok(t)
}

impl Feeds {
    /// None of them: no journal, no listener (`tapir replay`, whose case must depend on its
    /// input alone).
    pub fn none(delivery: DeliveryStatus) -> Feeds {
        Feeds {
            registry: None,
            updater: None,
            x2x3: None,
            assoc_rx: None,
            journal_tx: None,
            journal_thread: None,
            shutdown: None,
            runtime: None,
            journal_path: PathBuf::new(),
            dropped_seen: 0,
            delivery,
            kernel: KernelDrops::default(),
            metrics_addr: None,
        }
    }

    /// Replays the journal into `pipeline`, opens it for appending, binds the metrics endpoint
    /// and the feed (per `config`) and starts serving them. Errors here stop the daemon before
    /// `READY=1`.
    pub fn start(config: &Config, pipeline: &mut Engine, delivery: DeliveryStatus) -> Result<Feeds> {
        let journal_path = match &config.associations.journal {
            Some(p) => p.clone(),
            None => config.paths.spool_dir.join(JOURNAL_NAME),
        };
        if let Some(dir) = journal_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let until = wall_clock().add_secs(-JOURNAL_KEEP_SECS);
        match compact_journal(&journal_path, until) {
            Ok(0) => {}
            Ok(n) => tracing::info!(journal = %journal_path.display(), forgotten = n, "association journal compacted"),
            // Not fatal: the journal is read as it is below, and an error there stops the start.
            Err(e) => tracing::warn!(error = %e, "association journal not compacted"),
        }
        let replay = load_journal(&journal_path)?;
        let n = replay.events.len();
        for ev in replay.events {
            pipeline.push_event(ev);
        }
        tracing::info!(journal = %journal_path.display(), events = n, torn = replay.torn, "association journal replayed");
        let journal = Arc::new(Journal::open(&journal_path)?);
        pipeline.keep_radius_events(true);

        // RADIUS-learnt events: fsync'd off the pipeline thread.
        let (jtx, jrx) = sync_channel::<AssocEvent>(JOURNAL_QUEUE);
        let j = journal.clone();
        let journal_thread = std::thread::Builder::new().name("tapir-journal".into()).spawn(move || loop {
            match jrx.recv_timeout(Duration::from_secs(1)) {
                Ok(ev) => {
                    if let Err(e) = j.append(&ev) {
                        tracing::error!(error = %e, "journal append failed: an association will not survive a restart");
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // The feed appends too: whoever appended, the compaction runs here, off the feed's and
            // the pipeline's threads.
            if j.compact_due() {
                match j.compact(wall_clock().add_secs(-JOURNAL_KEEP_SECS)) {
                    Ok(n) => {
                        tracing::info!(journal = %j.path().display(), forgotten = n, "association journal compacted")
                    }
                    Err(e) => tracing::error!(error = %e, "association journal compaction failed; it keeps growing"),
                }
            }
        })?;

        let feed_addr = match &config.associations.listen {
            None => None,
            Some(ListenAddr::Unix(p)) => Some((FeedAddr::Unix(p.clone()), None)),
            Some(ListenAddr::Tcp(a)) => {
                let token = match &config.associations.token_file {
                    Some(f) => read_token(f)?,
                    None => return Err(anyhow!("{}: a tcp: association feed needs token_file", config.file.display())),
                };
                Some((FeedAddr::Tcp(*a, String::new()), Some(token)))
            }
        };
        let registry = config.metrics.map(|_| Metrics::new());
        let updater = registry.clone().map(|r| Updater::new(TapirMetrics::new(r)));

        let mut feeds = Feeds::none(delivery);
        feeds.registry = registry.clone();
        feeds.updater = updater;
        feeds.journal_tx = Some(jtx);
        feeds.journal_thread = Some(journal_thread);
        feeds.journal_path = journal_path;
        if feed_addr.is_none() && config.metrics.is_none() {
            return Ok(feeds);
        }

        let (ev_tx, ev_rx) = tokio::sync::mpsc::channel::<AssocEvent>(FEED_QUEUE);
        let feed = feed_addr.map(|(addr, token)| (addr, token, journal, ev_tx));
        feeds.serve(config.metrics, registry, feed)?;
        if let Some(l) = &config.associations.listen {
            tracing::info!(listen = %l, "association feed listening");
        }
        feeds.assoc_rx = Some(ev_rx);
        Ok(feeds)
    }

    /// An MDF's: the metrics endpoint alone (an MDF takes no association feed), with its X2/X3
    /// intake beside the standard metrics.
    pub fn start_mdf(config: &Config, delivery: DeliveryStatus) -> Result<Feeds> {
        let mut feeds = Feeds::none(delivery);
        if config.metrics.is_none() {
            return Ok(feeds);
        }
        let registry = Metrics::new();
        feeds.registry = Some(registry.clone());
        feeds.updater = Some(Updater::new(TapirMetrics::new(registry.clone())));
        feeds.x2x3 = Some(X2x3Metrics::new(&registry));
        feeds.serve(config.metrics, Some(registry), None)?;
        Ok(feeds)
    }

    /// Binds the metrics endpoint and the association feed (either may be absent) and serves
    /// them on a thread of their own.
    fn serve(
        &mut self,
        metrics_listen: Option<std::net::SocketAddr>,
        registry: Option<Metrics>,
        feed: Option<Feed>,
    ) -> Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (ok_tx, ok_rx) = sync_channel::<Result<Option<std::net::SocketAddr>>>(1);
        let runtime = std::thread::Builder::new().name("tapir-feeds".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ok_tx.send(Err(anyhow!("feeds runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let bound = async {
                    let m = match metrics_listen {
                        Some(a) => Some(
                            tokio::net::TcpListener::bind(a)
                                .await
                                .with_context(|| format!("metrics: cannot listen on {a}"))?,
                        ),
                        None => None,
                    };
                    let f = match &feed {
                        Some((addr, token, ..)) => Some(FeedListener::bind(addr, token.clone()).await?),
                        None => None,
                    };
                    anyhow::Ok((m, f))
                }
                .await;
                let (m, f) = match bound {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = ok_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ok_tx.send(Ok(m.as_ref().and_then(|l| l.local_addr().ok())));
                let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                let metrics_task = async {
                    if let (Some(l), Some(reg)) = (m, registry) {
                        crate::metrics::serve(l, reg, stopped(stop_rx.clone())).await;
                    }
                };
                let feed_task = async {
                    if let (Some(l), Some((_, _, journal, ev_tx))) = (f, feed) {
                        serve_feed_on(l, journal, ev_tx, stopped(stop_rx.clone())).await;
                    }
                };
                tokio::join!(metrics_task, feed_task);
            });
        })?;
        let addr = ok_rx.recv().map_err(|_| anyhow!("the feeds thread died"))??;
        self.metrics_addr = addr;
        if let Some(a) = addr {
            tracing::info!(listen = %a, "metrics listening");
        }
        self.shutdown = Some(stop_tx);
        self.runtime = Some(runtime);
        Ok(())
    }

    /// The slot capture source number `index` publishes its drops in.
    pub fn drops_slot(&self, index: usize) -> DropsSlot {
        DropsSlot { drops: self.kernel.clone(), index }
    }

    /// From the pipeline loop, each turn: feed events into the pipeline, RADIUS-learnt events to
    /// the journal, and (at most every [`UPDATE_EVERY`] of the run's clock, `now`) the metrics.
    /// `delivering`: whether a delivery runs now (its last report is stale otherwise).
    pub fn poll(&mut self, pipeline: &mut Engine, delivering: bool, now: Instant) {
        if let Some(rx) = &mut self.assoc_rx {
            while let Ok(ev) = rx.try_recv() {
                pipeline.push_event(ev);
            }
        }
        let dropped = pipeline.association_events_dropped();
        if dropped > self.dropped_seen {
            tracing::warn!(
                dropped = dropped - self.dropped_seen,
                total = dropped,
                held = pipeline.association_events_held(),
                "association events over the cap: oldest open access sessions dropped from the history (a reload \
                 misses them until their next Interim-Update)"
            );
            self.dropped_seen = dropped;
        }
        let learnt = pipeline.take_radius_events();
        if !learnt.is_empty() {
            if let Some(tx) = &self.journal_tx {
                for ev in learnt {
                    match tx.try_send(ev) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            tracing::error!(journal = %self.journal_path.display(), "journal queue full: a RADIUS association will not survive a restart")
                        }
                        Err(TrySendError::Disconnected(_)) => break,
                    }
                }
            }
        }
        if let Some(u) = &mut self.updater {
            if u.due(now) {
                let report = if delivering { self.delivery.latest() } else { None };
                u.update(pipeline, report.as_ref(), &self.kernel);
            }
        }
    }

    /// From an MDF's loop: its X2/X3 intake and delivery in the metrics (at most every
    /// [`UPDATE_EVERY`]).
    pub fn poll_mdf(&mut self, x: &X2x3Snapshot, now: Instant) {
        let (Some(u), Some(m)) = (&mut self.updater, &self.x2x3) else { return };
        if !u.due(now) {
            return;
        }
        u.update_delivery(self.delivery.latest().as_ref());
        m.x2.raise_to(x.x2);
        m.x3.raise_to(x.x3);
        m.refused.raise_to(x.refused);
        m.resent.raise_to(x.resent);
        m.connections.raise_to(x.connections);
        m.framing_errors.raise_to(x.framing_errors);
        m.tls_refused.raise_to(x.tls_refused);
        m.journal_active.set(i64::from(x.journal));
    }

    /// `/healthz` answers 200 from now on (after `READY=1`).
    pub fn ready(&self) {
        if let Some(r) = &self.registry {
            r.set_healthy(true);
        }
    }

    /// `/healthz` answers 503 from now on (stopping).
    pub fn stopping(&self) {
        if let Some(r) = &self.registry {
            r.set_healthy(false);
        }
    }

    /// After the last frame: the last events journalled, the metrics brought up to date, the
    /// listeners closed (the feed's socket file removed) and the threads joined.
    pub fn finish(mut self, pipeline: &mut Engine, now: Instant) {
        self.stopping();
        if let Some(u) = &mut self.updater {
            u.every = None;
        }
        self.poll(pipeline, false, now);
        self.close();
    }

    /// The listeners closed and the threads joined.
    pub fn close(mut self) {
        self.stopping();
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(true);
        }
        if let Some(h) = self.runtime.take() {
            if h.join().is_err() {
                tracing::error!("the feeds thread panicked");
            }
        }
        drop(self.journal_tx.take());
        if let Some(h) = self.journal_thread.take() {
            if h.join().is_err() {
                tracing::error!("the journal thread panicked");
            }
        }
    }
}

impl Drop for Feeds {
    /// An early return from `run` (after the feeds started) still closes the listeners.
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(true);
        }
    }
}
