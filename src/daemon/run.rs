//! `tapir run`: capture threads, the pipeline thread, reloads and a graceful stop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::clock::{Every, SharedClock, SystemClock};
use super::config::{Config, Pace, ReplayEnd, Role};
use super::feeds::{self, DeliveryStatus, DropsSlot, Feeds};
use super::notify::{self, Notifier};
use super::source::{Batch, LiveSource, ReplaySource, Source, BATCH_FRAMES};
use crate::capture::live::RingConfig;
use crate::capture::{CaptureFile, Merge};
use crate::decode::DecodeConfig;
use crate::deliver::handover::{parse_leas, Delivery, DeliveryReport};
use crate::deliver::manifest::SigningKey;
use crate::deliver::threaded::Threaded;
use crate::deliver::x2x3::forward::{Forward, ForwardConfig};
use crate::pipeline::{Engine, Pipeline, Recorder, Totals};
use crate::record::{Record, RecordSink};
use crate::select::{load_events, load_warrants, AssocEvent, EventFile, Liid, Warrant, Warrants};
use crate::timestamp::Timestamp;

/// How much longer than the ring's block timeout a live source must be quiet after a stop
/// order before its capture thread ends (see `spawn_capture`).
const STOP_QUIET_MARGIN: Duration = Duration::from_millis(50);

/// Orders for the pipeline thread. Signals become these; so can X1 (clone [`Hooks::control`]).
#[derive(Debug)]
pub enum Control {
    /// Re-read the warrants (and LEAs) from the provider (SIGHUP).
    Reload,
    /// Install these warrants now (a provider that pushes, e.g. the X1 task store).
    Warrants(Warrants),
    /// Graceful stop (SIGTERM, SIGINT).
    Stop,
}

/// A warrants error fit for the log: where, and what kind, but not the offending value (it
/// may be a target's identity). `tapir check-config` prints the whole message.
pub(super) fn redacted(e: &anyhow::Error, source: &str) -> String {
    use crate::select::WarrantError as W;
    match e.downcast_ref::<W>() {
        Some(w) => {
            let what = match w {
                W::Io { file, source } => return format!("{file}: {}", source.kind()),
                W::Syntax { .. } => "syntax error",
                W::BadLiid { .. } => "bad LIID",
                W::DuplicateLiid { .. } => "duplicate LIID",
                W::BadTime { .. } => "bad time",
                W::EmptyWindow { .. } => "end not after start",
                W::BadScope { .. } => "bad scope",
                W::BadTarget { .. } => "bad target",
                W::NoTargets { .. } => "warrant has no targets",
                W::BadLea { .. } => "bad lea name",
                W::BadXid { .. } => "bad xid",
                W::NotUtf8 { .. } => "not UTF-8",
            };
            format!("{source}:{}: {what}", w.line())
        }
        None => format!("{source}: {e:#}"),
    }
}

/// Where warrants come from. HOOK (X1): the X1 task store implements this and sends
/// [`Control::Reload`] (or [`Control::Warrants`]) when a task changes.
pub trait WarrantsProvider: Send {
    fn load(&mut self) -> Result<Warrants>;
    /// For logs.
    fn describe(&self) -> String;
}

/// The warrants file of `[paths] warrants`, re-read on each reload.
pub struct FileWarrants(pub PathBuf);

impl WarrantsProvider for FileWarrants {
    fn load(&mut self) -> Result<Warrants> {
        Ok(load_warrants(&self.0)?)
    }
    fn describe(&self) -> String {
        self.0.display().to_string()
    }
}

/// What the lead plugs in after merging live capture, X1, metrics and the association feed.
pub struct Hooks {
    /// `None`: from the config (`replay` files; live interfaces need [`live_sources`]).
    pub sources: Option<Vec<Box<dyn Source>>>,
    /// `None`: [`FileWarrants`] on `[paths] warrants`.
    pub warrants: Option<Box<dyn WarrantsProvider>>,
    /// HOOK (association feed): events from `select::feed`'s socket, applied as they arrive.
    pub assoc_rx: Option<Receiver<AssocEvent>>,
    /// The control channel; keep a clone of the sender to reload or stop from elsewhere.
    pub control: (Sender<Control>, Receiver<Control>),
    /// Install SIGHUP/SIGTERM/SIGINT handlers that feed `control` (off in in-process tests).
    pub signals: bool,
    /// `tapir replay`: this loop over capture files that end (see [`ReplayRun`]).
    pub replay: Option<ReplayRun>,
    /// What paces a realtime replay and times the loop's duties (see [`super::clock`]): the
    /// system's clock, or a test's virtual one.
    pub clock: SharedClock,
    /// Where sd_notify messages go; `None`: `$NOTIFY_SOCKET`, when set (see [`Say`]).
    pub notify: Option<Notifier>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            sources: None,
            warrants: None,
            assoc_rx: None,
            control: channel(),
            signals: true,
            replay: None,
            clock: Arc::new(SystemClock),
            notify: None,
        }
    }
}

/// How `tapir replay` differs from the daemon it runs: the same loop, outputs and stop, over
/// the files of `[capture] replay` read to their end, and nothing carried from one run to the
/// next (no association journal, no reload), so that the same input makes the same case.
pub struct ReplayRun {
    /// The case directory itself (the daemon makes a fresh one under `[paths] case_dir`).
    pub case: PathBuf,
    /// Deliver to the warrants' LEAs, spooled in `[paths] spool_dir`; off: the case only.
    pub deliver: bool,
    /// Called about every 0.2 s while the files are read, with (packets read, bytes read,
    /// bytes in all files): a progress bar.
    pub progress: Option<Progress>,
}

/// See [`ReplayRun::progress`].
pub type Progress = Box<dyn FnMut(u64, u64, u64) + Send>;

/// One [`LiveSource`] per worker: every worker opens a ring on every interface, and the rings of
/// one interface share a fanout group (`[capture] fanout`: by innermost address pair unless
/// set to the kernel's flow hash), so both directions of a VM's connection come through one
/// ring, in wire order. The frames of all workers then go to the one pipeline thread, whose
/// engine shares the analysis out among the pipeline workers: in capture order, with RADIUS
/// handed to every worker, which a fanout (one ring per frame) cannot do. The fanout spreads
/// the ring-draining and copying.
///
/// With `backend = "libpcap"` (cargo feature `libpcap`) it is one libpcap source instead (the
/// config refuses more workers): its buffer is the ring's size (`block_size` × `block_count`
/// bytes, at most 2 GiB) and its read timeout `block_timeout_ms`.
pub fn live_sources(config: &Config) -> Result<Vec<Box<dyn Source>>> {
    let r = &config.capture.ring;
    #[cfg(feature = "libpcap")]
    if config.capture.backend == super::config::Backend::Libpcap {
        if config.capture.workers > 1 {
            bail!("{}: backend = \"libpcap\" takes workers = 1 (libpcap has no fanout)", config.file.display());
        }
        let buffer = u32::try_from(u64::from(r.block_size).saturating_mul(u64::from(r.block_count)))
            .unwrap_or(u32::MAX)
            .min(i32::MAX as u32);
        // 262144: libpcap's own default snapshot length, every frame whole.
        let src = super::source::PcapSource::open(
            &config.capture.interfaces,
            config.capture.promiscuous,
            262_144,
            buffer,
            r.block_timeout_ms,
        )
        .with_context(|| format!("{}: opening the interfaces with libpcap", config.file.display()))?;
        return Ok(vec![Box::new(src)]);
    }
    let workers = config.capture.workers.max(1);
    // A group id per daemon: two daemons on one host must not share a fanout group.
    let group = (std::process::id() & 0xffff) as u16;
    let cfg = RingConfig {
        block_size: r.block_size,
        block_count: r.block_count,
        frame_size: r.frame_size,
        block_timeout_ms: r.block_timeout_ms,
        promiscuous: config.capture.promiscuous,
        fanout_group: (workers > 1).then_some(group),
        fanout: config.capture.fanout,
    };
    let mut out: Vec<Box<dyn Source>> = Vec::with_capacity(workers);
    for w in 0..workers {
        let src = LiveSource::open(&config.capture.interfaces, &cfg, w)
            .with_context(|| format!("{}: opening the capture rings", config.file.display()))?;
        out.push(Box::new(src));
    }
    Ok(out)
}

/// Once the rings are open, live capture needs no privilege: started as root with
/// `[capture] user`, become that user; in every case keep no capability at all (under systemd
/// the unit's ambient CAP_NET_RAW is dropped here too). Must run before any thread is spawned,
/// since capabilities are per thread.
fn drop_privileges(config: &Config) -> Result<()> {
    // The effective uid, from /proc (no unsafe needed here).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().nth(1));
    let user = config.capture.user.as_deref().filter(|_| euid == Some("0"));
    let d = crate::privs::drop_privileges(user, &[])
        .with_context(|| format!("dropping privileges{}", user.map(|u| format!(" to {u:?}")).unwrap_or_default()))?;
    tracing::info!(uid = d.uid, gid = d.gid, capabilities = d.caps, "privileges dropped");
    Ok(())
}

/// What a run did, for the closing log line, `tapir replay`'s summary and tests.
pub struct RunReport {
    pub case: PathBuf,
    /// Frames the kernel dropped before capture (live sources).
    pub dropped: u64,
    pub reloads: u64,
    pub files_signed: usize,
    /// The pipeline's counters at the end.
    pub totals: Totals,
    /// The LIIDs of the warrants in force at the end, in the order they were given.
    pub liids: Vec<Liid>,
    /// What each LIID's case holds.
    pub cases: HashMap<Liid, crate::deliver::case::CaseTotals>,
    /// Image inspection, when it ran.
    pub inspected: Option<crate::vmi::intake::IntakeStats>,
    /// Delivery as it stood when the run stopped waiting for the LEAs.
    pub delivery: Option<crate::deliver::handover::DeliveryReport>,
    /// Why the case is marked incomplete: a replay stopped before the end of its files.
    pub incomplete: Option<String>,
    /// The signal that stopped the run, if one did.
    pub signal: Option<i32>,
    /// The manifest signer's public key (hex), and whether the key was made for this run only.
    pub signer: (String, bool),
    /// A POI's X2/X3 to its MDF as it stood when the run stopped waiting for the MDF.
    pub forward: Option<crate::deliver::x2x3::forward::ForwardReport>,
}

enum Input {
    Frames(Batch),
    Clock(Timestamp),
    Damage(String),
    Ended,
}

/// (LIID, LEA) of each warrant: what delivery routing depends on.
pub(super) type Routes = Vec<(String, Option<String>)>;

/// A running delivery, with the `[[lea]]` tables and routes it was started with.
pub(super) type Running = (Threaded<Delivery>, Vec<toml::Value>, Routes);

/// The run's outputs (the case and, when the warrants name LEAs, the ETSI delivery: the type
/// `tapir replay` writes through too), with what the daemon keeps beside them.
pub(super) struct Outputs {
    pub(super) out: crate::deliver::outputs::Outputs,
    /// A POI's: the XIDs its forwarder names warrants by, changed on a reload.
    pub(super) xids: Option<crate::deliver::x2x3::records::Xids>,
    /// A POI's: the MDF of each warrant an X1 task brought, changed on a reload.
    pub(super) mdf_routes: Option<crate::deliver::x2x3::forward::MdfRoutes>,
    /// The `[[lea]]` tables and routes the running delivery was started with (a reload
    /// restarts it when they change).
    pub(super) delivery: Option<(Vec<toml::Value>, Routes)>,
    /// Where the running delivery publishes its state (for the metrics).
    pub(super) status: DeliveryStatus,
    /// Shared with every delivery started (see `start_delivery`).
    pub(super) give_up: Arc<AtomicBool>,
    /// Per LIID since the last hand-over to X1: IRI bytes (as written to the case), CC bytes,
    /// and the last record's time, for X1 TaskStatus.
    pub(super) intercepts: HashMap<Liid, (u64, u64, Timestamp)>,
    pub(super) count_intercepts: bool,
}

impl RecordSink for Outputs {
    fn record(&mut self, rec: Record<'_>) {
        if self.count_intercepts {
            let seen = match &rec {
                Record::Iri(r) if !matches!(r.event, crate::record::IriEvent::Warrant { .. }) => {
                    // The length of its case line, counted without building it.
                    let mut n = ByteCount(1);
                    if serde_json::to_writer(&mut n, r).is_err() {
                        n.0 = 0;
                    }
                    let n = n.0;
                    Some((&r.liid, n, 0, r.ts))
                }
                Record::Cc(c) => Some((c.liid, 0, c.data.len() as u64, c.ts)),
                _ => None,
            };
            if let Some((liid, x2, x3, ts)) = seen {
                let e = match self.intercepts.get_mut(liid) {
                    Some(e) => e,
                    None => self.intercepts.entry(liid.clone()).or_insert((0, 0, ts)),
                };
                e.0 += x2;
                e.1 += x3;
                e.2 = e.2.max(ts);
            }
        }
        self.out.record(rec);
    }
}

impl Outputs {
    /// Delivers through `running` from now on; the delivery it replaces is finished, waiting
    /// at most `wait` for its LEAs.
    pub(super) fn deliver_to(&mut self, running: Option<Running>, wait: Duration) {
        let (d, kept) = match running {
            Some((d, leas, routes)) => (Some(d), Some((leas, routes))),
            None => (None, None),
        };
        self.delivery = kept;
        if let Some(old) = self.out.deliver_to(d) {
            let _ = finish_delivery(old, wait);
        }
    }
}

/// A sink that only counts what is written to it.
struct ByteCount(u64);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// (LIID, LEA) of each warrant: what delivery routing depends on.
pub(super) fn routes(w: &[Warrant]) -> Routes {
    let mut r: Vec<_> = w.iter().map(|w| (w.liid.to_string(), w.lea.clone())).collect();
    r.sort();
    r
}

pub(super) fn start_delivery(
    all: &Warrants,
    file: &str,
    spool: &Path,
    status: &DeliveryStatus,
    give_up: &Arc<AtomicBool>,
) -> Result<Option<Running>> {
    let leas = parse_leas(&all.lea, file)?;
    if leas.is_empty() {
        return Ok(None);
    }
    std::fs::create_dir_all(spool).with_context(|| format!("creating spool {}", spool.display()))?;
    let d = Delivery::start(leas, &all.warrants, spool)?.with_give_up(give_up.clone());
    Ok(Some(spawn_delivery(d, all, status)))
}

/// A started delivery on its output thread, publishing its state to `status`.
pub(super) fn spawn_delivery(d: Delivery, all: &Warrants, status: &DeliveryStatus) -> Running {
    let status = status.clone();
    let d = Threaded::spawn_observed(d, feeds::UPDATE_EVERY, move |d: &Delivery| status.publish(d.report()));
    (d, all.lea.clone(), routes(&all.warrants))
}

/// Finishes `d`, waiting at most `wait` for its LEAs; `None` if its thread panicked.
pub(super) fn finish_delivery(d: Threaded<Delivery>, wait: Duration) -> Option<DeliveryReport> {
    match d.finish() {
        Ok(d) => {
            let rep = d.finish(wait);
            for a in &rep.alarms {
                tracing::error!(alarm = %a, "delivery alarm");
            }
            for l in &rep.leas {
                tracing::info!(
                    lea = %l.name, hi2_sent = l.hi2.sent, hi2_spooled = l.hi2.spooled,
                    hi3_sent = l.hi3.sent, hi3_spooled = l.hi3.spooled, complete = l.complete,
                    "delivery stopped"
                );
            }
            Some(rep)
        }
        Err(_) => {
            tracing::error!("the delivery thread panicked");
            None
        }
    }
}

/// A fresh directory under `case_dir` named by the UTC start time (`-N` added if taken): a
/// restart never writes into a signed case.
pub(super) fn new_case_dir(case_dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(case_dir).with_context(|| format!("creating {}", case_dir.display()))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    for n in 0..1000 {
        let name = if n == 0 { stamp.clone() } else { format!("{stamp}-{n}") };
        let p = case_dir.join(name);
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", p.display())),
        }
    }
    bail!("{}: no free case directory name", case_dir.display())
}

/// A signal that asks tapir to reload or to stop.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    Hup,
    Term,
    Int,
}

impl Signal {
    /// The signal's number (the exit status of a process it stopped is 128 + it).
    pub fn number(self) -> i32 {
        match self {
            Signal::Hup => 1,
            Signal::Int => 2,
            Signal::Term => 15,
        }
    }
}

/// Calls `on` for each SIGHUP, SIGTERM and SIGINT, on a thread with a small tokio runtime, until
/// it returns false. Returns once the handlers are installed (so a signal right after cannot kill
/// us with the default action).
pub fn spawn_signals(on: impl Fn(Signal) -> bool + Send + 'static) -> Result<()> {
    let (ok_tx, ok_rx) = sync_channel::<std::io::Result<()>>(1);
    std::thread::Builder::new().name("tapir-signals".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ok_tx.send(Err(e));
                return;
            }
        };
        rt.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (mut hup, mut term, mut int) = match (
                signal(SignalKind::hangup()),
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(h), Ok(t), Ok(i)) => (h, t, i),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    let _ = ok_tx.send(Err(e));
                    return;
                }
            };
            let _ = ok_tx.send(Ok(()));
            loop {
                let s = tokio::select! {
                    _ = hup.recv() => Signal::Hup,
                    _ = term.recv() => Signal::Term,
                    _ = int.recv() => Signal::Int,
                };
                if !on(s) {
                    return;
                }
            }
        });
    })?;
    ok_rx.recv().map_err(|_| anyhow!("the signal thread died"))??;
    Ok(())
}

/// One capture thread: polls its source, ships frames in batches, and the source's clock when
/// it is quiet.
///
/// When the pipeline falls behind, the thread waits on the full queue, live or replay alike.
/// A live burst then waits in the kernel's capture buffer (the AF_PACKET ring or libpcap's
/// buffer, sized by `[capture.ring]`, 256 MiB by default), which is far larger than the
/// queue, and whatever that buffer cannot hold the kernel counts as the source's drops. A
/// queue that dropped batches instead would lose a burst the buffer had room for, and count it
/// nowhere the metrics look. The pipeline keeps draining the queue until every capture thread
/// has ended, so a waiting thread always sees the stop order.
///
/// At a stop order a live source is read until it has been quiet for `stop_quiet`, for at most
/// a second or twice that: what the kernel already held when the order came is intercepted
/// traffic, and a graceful stop hands it on rather than leaving it in a ring about to be
/// closed. An AF_PACKET ring shows a block's frames only once the block is full or its
/// timeout expired, so `stop_quiet` is a little more than the block timeout.
#[allow(clippy::too_many_arguments)]
fn spawn_capture(
    mut src: Box<dyn Source>,
    origin: usize,
    tx: SyncSender<Input>,
    recycle: Receiver<Batch>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    drops: DropsSlot,
    stop_quiet: Duration,
    clock: SharedClock,
) -> Result<JoinHandle<()>> {
    let name = src.name();
    let h = std::thread::Builder::new().name("tapir-capture".into()).spawn(move || {
        let fresh = |recycle: &Receiver<Batch>| {
            let mut b = match recycle.try_recv() {
                Ok(mut b) => {
                    b.clear();
                    b
                }
                Err(_) => Batch::with_capacity(BATCH_FRAMES),
            };
            b.set_origin(origin);
            b
        };
        let mut batch = fresh(&recycle);
        // A quiet source's clock is sent at least every 200 ms (and whenever a poll is empty).
        let mut clock_every = Every::new(Duration::from_millis(200), clock.now());
        let mut drops_every = Every::new(feeds::UPDATE_EVERY, clock.now());
        // One poll, its frames sent on in batches; `None` once the pipeline is gone. A full
        // batch is sent from inside the poll, so that one poll over a full ring (up to 256 MiB
        // by default) holds at most the queue's batches in memory, not a copy of the ring.
        let mut pump = |src: &mut Box<dyn Source>, timeout: Duration| -> Option<usize> {
            let mut gone = false;
            let n = src.poll(timeout, &mut |f| {
                batch.push(f);
                if batch.len() >= BATCH_FRAMES {
                    let b = std::mem::replace(&mut batch, fresh(&recycle));
                    gone = gone || tx.send(Input::Frames(b)).is_err();
                }
            });
            for d in src.take_damage() {
                let _ = tx.send(Input::Damage(d));
            }
            if !batch.is_empty() && !gone {
                let b = std::mem::replace(&mut batch, fresh(&recycle));
                gone = tx.send(Input::Frames(b)).is_err();
            }
            (!gone).then_some(n)
        };
        while !stop.load(Ordering::Relaxed) {
            let Some(n) = pump(&mut src, Duration::from_millis(100)) else { return };
            if clock_every.due(clock.now()) || n == 0 {
                if let Some(t) = src.clock() {
                    if tx.send(Input::Clock(t)).is_err() {
                        return;
                    }
                }
            }
            if drops_every.due(clock.now()) {
                drops.publish(&*src);
            }
            if src.exhausted() {
                let _ = tx.send(Input::Ended);
                return;
            }
        }
        // Live sources are the ones with an interface; a replay's file has nothing in flight.
        if src.interface().is_some() {
            let until = Instant::now() + (2 * stop_quiet).max(Duration::from_secs(1));
            loop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match pump(&mut src, stop_quiet.min(left)) {
                    Some(0) | None => break,
                    Some(_) => {}
                }
            }
        }
        src.read_counters();
        drops.publish(&*src);
        dropped.fetch_add(src.dropped(), Ordering::Relaxed);
        tracing::debug!(source = %name, "capture stopped");
    })?;
    Ok(h)
}

/// The MDF of each warrant whose `lea` is an X1 destination (DID): where a POI sends it.
fn mdfs_of(all: &Warrants) -> HashMap<Liid, String> {
    all.warrants
        .iter()
        .filter_map(|w| Some((w.liid.clone(), all.destinations.get(w.lea.as_deref()?)?.to_string())))
        .collect()
}

/// The XID of each warrant, by LIID: what a POI's PDUs name them by.
fn xids_of(w: &[Warrant]) -> HashMap<Liid, crate::record::Xid> {
    w.iter().map(|w| (w.liid.clone(), w.xid)).collect()
}

pub(super) fn liids(w: &[Warrant]) -> String {
    w.iter().map(|w| w.liid.as_ref()).collect::<Vec<_>>().join(",")
}

/// Capture files read on the pipeline thread itself (a fast replay): each frame goes to the
/// pipeline where it lies in the file's window, with no copy and no thread in between.
struct FileInput {
    merge: Merge,
    /// File names for damage lines: the case goes to an LEA, the operator's paths need not.
    names: Vec<String>,
    total: u64,
    done: bool,
}

/// Frames taken from a [`FileInput`] between two looks at the loop's orders and timers.
const FILE_FRAMES: usize = 1024;

impl FileInput {
    fn open(paths: &[PathBuf]) -> Result<FileInput> {
        let files = paths.iter().map(|p| CaptureFile::open(p)).collect::<Result<Vec<_>, _>>()?;
        let names = paths
            .iter()
            .map(|p| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned()))
            .collect();
        Ok(FileInput {
            total: files.iter().map(|f| f.size()).sum(),
            merge: Merge::new(files.iter().map(|f| f.frames()).collect()),
            names,
            done: false,
        })
    }

    /// Up to [`FILE_FRAMES`] frames into the pipeline; [`Input::Ended`] after the last.
    fn read(&mut self, engine: &mut Engine, recorder: &mut Recorder, out: &mut Outputs) -> Option<Input> {
        for _ in 0..FILE_FRAMES {
            match self.merge.next_frame() {
                Some((_, Ok(frame))) => engine.frame(&frame, recorder, out),
                Some((idx, Err(d))) => {
                    let d = format!("{}: {d}", self.names.get(idx).map_or("", String::as_str));
                    tracing::warn!(damage = %d, "capture damage");
                    engine.damage(d);
                }
                None => {
                    self.done = true;
                    return Some(Input::Ended);
                }
            }
        }
        None
    }
}

/// The associations file: applied as it is read (by each worker, from its own reader) when it
/// is in time order, as a control plane's log is; one out of order is loaded whole and sorted.
fn open_events(path: Option<&Path>) -> Result<(Vec<AssocEvent>, Option<EventFile>)> {
    let Some(p) = path else { return Ok((Vec::new(), None)) };
    let file = EventFile::open(p)?;
    if file.in_time_order() {
        return Ok((Vec::new(), Some(file)));
    }
    eprintln!(
        "tapir: {}: lines not in time order: all {} events are loaded and sorted first",
        p.display(),
        file.events()
    );
    Ok((load_events(p)?, None))
}

/// Runs the daemon until a stop order (or the end of a replay with `replay_end = "exit"`).
/// `tapir replay` is this loop too, with [`Hooks::replay`].
/// What a run tells systemd (`sd_notify`), when it runs under it.
pub(super) struct Say(Option<Notifier>);

impl Say {
    /// To the hook's socket; else `tapir replay` is a command, not a service, and says nothing.
    pub(super) fn new(hook: Option<Notifier>, replaying: bool) -> Say {
        Say(hook.or_else(|| if replaying { None } else { Notifier::from_env() }))
    }

    pub(super) fn say(&self, s: &str) {
        if let Some(n) = &self.0 {
            if let Err(e) = n.notify(s) {
                tracing::warn!(error = %e, "sd_notify failed");
            }
        }
    }
}

/// Where the warrants come from: the hook's provider, else X1's, else the warrants file.
pub(super) fn warrants_provider(
    config: &Config,
    hooked: Option<Box<dyn WarrantsProvider>>,
    x1: Option<&super::x1::X1Service>,
) -> Box<dyn WarrantsProvider> {
    hooked.or_else(|| x1.map(|x| x.provider())).unwrap_or_else(|| Box::new(FileWarrants(config.paths.warrants.clone())))
}

/// Image inspection for the case at `case_root`, as `[limits]` sets it (none when
/// `inspect_time_limit_secs` is 0): images are copied under the case while they pass, and
/// inspected on a thread of its own. `wait_when_full`: wait for room rather than refuse.
pub(super) fn inspection(
    config: &Config,
    case_root: &Path,
    wait_when_full: bool,
) -> Result<Option<crate::vmi::intake::Intake>> {
    if config.limits.inspect_time_limit_secs == 0 {
        return Ok(None);
    }
    let mut c = crate::vmi::intake::IntakeConfig::new(case_root.join(".vmi-work"));
    c.time_limit = Duration::from_secs(config.limits.inspect_time_limit_secs);
    c.max_image_bytes = config.limits.inspect_max_image_bytes;
    c.wait_when_full = wait_when_full;
    let intake = crate::vmi::intake::Intake::start(c)
        .with_context(|| format!("starting image inspection in {}", case_root.display()))?;
    Ok(Some(intake))
}

/// The case's signing key: `[paths] signing_key`, or one made for this run.
pub(super) fn signing_key(config: &Config) -> Result<SigningKey> {
    Ok(match &config.paths.signing_key {
        Some(p) => SigningKey::load(p)?,
        None => SigningKey::ephemeral(),
    })
}

/// SIGHUP reloads (unless `reloads` is off: a replay's warrants are those it started with);
/// the first SIGTERM/SIGINT stops (and delivery waiting on a full spool stops waiting:
/// `give_up`), its number kept in `signalled`; a second exits at once.
pub(super) fn stop_signals(
    tx: Sender<Control>,
    give_up: Arc<AtomicBool>,
    signalled: Arc<AtomicI32>,
    reloads: bool,
) -> Result<()> {
    spawn_signals(move |s| {
        if s == Signal::Hup {
            return !reloads || tx.send(Control::Reload).is_ok();
        }
        give_up.store(true, Ordering::Relaxed);
        if signalled.swap(s.number(), Ordering::Relaxed) != 0 {
            // Asked twice: the operator does not want to wait for the case to be finished.
            eprintln!("tapir: second stop signal: exiting now; the case is left unsigned");
            std::process::exit(128 + s.number());
        }
        tx.send(Control::Stop).is_ok()
    })
}

pub fn run(config: &Config, mut hooks: Hooks) -> Result<RunReport> {
    if let Role::Mdf(m) = &config.role {
        return super::mdf::run(config, m, hooks);
    }
    let mut replay = hooks.replay.take();
    let replaying = replay.is_some();
    let notifier = Say::new(hooks.notify.take(), replaying);
    let clock = hooks.clock.clone();
    let say = |s: &str| notifier.say(s);
    let (control_tx, control_rx) = (hooks.control.0.clone(), std::mem::replace(&mut hooks.control.1, channel().1));

    // Warrants, LEAs, associations, signing key: all before anything is written.
    let x1 = super::x1::X1Service::open(config)?;
    let mut provider = warrants_provider(config, hooks.warrants.take(), x1.as_ref());
    let all = match provider.load() {
        Ok(w) => w,
        // The operator's own command: the whole message, where a log gets it redacted.
        Err(e) if replaying => return Err(e),
        Err(e) => bail!("loading warrants: {}", redacted(&e, &provider.describe())),
    };
    let (events, event_file) = open_events(config.associations.events.as_deref())?;
    let key = signing_key(config)?;
    // A fast replay's files are read on this thread; a paced one, and live rings, on capture
    // threads of their own.
    let mut files = None;
    // Capture files end; a case cut short of their end is marked incomplete.
    let finite = hooks.sources.is_none() && !config.capture.replay.is_empty();
    let sources = match hooks.sources.take() {
        Some(s) => s,
        None if !config.capture.replay.is_empty() && config.capture.pace == Pace::Fast => {
            files = Some(FileInput::open(&config.capture.replay)?);
            Vec::new()
        }
        None if !config.capture.replay.is_empty() => {
            let src = ReplaySource::open(&config.capture.replay, config.capture.pace == Pace::Realtime)?
                .on_clock(clock.clone());
            vec![Box::new(src) as Box<dyn Source>]
        }
        None => live_sources(config)?,
    };
    if sources.is_empty() && files.is_none() {
        bail!("no capture source");
    }
    if !config.capture.interfaces.is_empty() {
        drop_privileges(config)?;
    }
    // Set by a stop signal: a delivery waiting on a full spool gives up (see `Delivery`).
    let give_up = Arc::new(AtomicBool::new(false));
    // The first stop signal's number.
    let signalled = Arc::new(AtomicI32::new(0));
    // Threads only from here on: capabilities are per thread, and none may keep them.
    if hooks.signals {
        stop_signals(control_tx.clone(), give_up.clone(), signalled.clone(), !replaying)?;
    }

    // A POI writes no case: everything goes to its MDF, through the spool.
    let poi = match &config.role {
        Role::Poi(p) => Some(p.clone()),
        _ => None,
    };
    let case_root = match (&replay, &poi) {
        (_, Some(_)) => config.paths.spool_dir.clone(),
        (Some(r), None) => r.case.clone(),
        (None, None) => new_case_dir(&config.paths.case_dir)?,
    };
    let flow_config =
        crate::flow::FlowConfig { checksums: config.capture.checksum_validation, ..config.limits.flow_config() };
    let content_limits = flow_config.content;
    // One pipeline, or several workers over a share of the flows each (`[capture] pipelines`).
    let pipelines = (0..config.capture.pipelines)
        .map(|_| {
            let share = flow_config.share(config.capture.pipelines);
            let mut p = Pipeline::new(all.warrants.clone(), events.clone(), DecodeConfig::default(), share);
            if let Some(poi) = &poi {
                p.numbers().set_object_range(poi.object_range);
            }
            // Applied events are kept for a reload to apply again; a replay never reloads.
            p.keep_applied_events(!replaying);
            if let Some(f) = &event_file {
                p.set_event_feed(Box::new(f.stream()?));
            }
            Ok(p)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut engine = Engine::start(pipelines).context("starting the pipeline workers")?;
    let wfile = provider.describe();
    let status = DeliveryStatus::default();
    let delivery = match &replay {
        _ if poi.is_some() => None,
        Some(r) if !r.deliver => None,
        Some(_) => match start_delivery(&all, &wfile, &config.paths.spool_dir, &status, &give_up)? {
            Some(d) => Some(d),
            None => bail!("--deliver: {wfile} has no [[lea]]"),
        },
        None => start_delivery(&all, &wfile, &config.paths.spool_dir, &status, &give_up)?,
    };
    let (outputs, maps) = match &poi {
        Some(p) => {
            let cfg = ForwardConfig {
                mdf: p.mdf.clone(),
                name: p.name.clone(),
                tls: p.tls.clone(),
                keepalive: Duration::from_secs(p.keepalive_secs),
                max_spool_bytes: p.max_spool_bytes,
                write_per_pdu: p.write_per_pdu,
            };
            let f = Forward::start(&cfg, xids_of(&all.warrants), mdfs_of(&all), &config.paths.spool_dir)?
                .with_give_up(give_up.clone());
            let maps = (f.xids(), f.routes());
            (crate::deliver::outputs::Outputs::forward_only(&case_root, f), Some(maps))
        }
        None => (crate::deliver::outputs::Outputs::create(&case_root)?, None),
    };
    let (xids, mdf_routes) = maps.unzip();
    let mut out = Outputs {
        out: outputs,
        xids,
        mdf_routes,
        delivery: None,
        status,
        give_up,
        intercepts: HashMap::new(),
        count_intercepts: x1.is_some(),
    };
    out.deliver_to(delivery, Duration::ZERO);
    // Capture never waits for an inspection; a fast replay's inspection waits for room rather
    // than refuse an image: its case must not depend on the machine. A POI inspects nothing.
    let intake = match poi {
        None => inspection(config, &case_root, files.is_some())?,
        Some(_) => None,
    };
    let mut recorder = engine.recorder(&all.warrants, content_limits, intake);
    if poi.is_some() {
        recorder.pass_through();
    }

    // HOOK (metrics, association feed, X1): bind their listeners here, before READY=1. A
    // replay keeps no association journal: nothing of one run may leak into the next.
    let mut feeds = if replaying {
        Feeds::none(out.status.clone())
    } else {
        Feeds::start(config, &mut engine, out.status.clone())?
    };
    let x1_running = x1.map(|x| x.start(control_tx.clone())).transpose()?;
    // The loop's duties, each at its period of the run's clock.
    let mut x1_duties = Every::new(Duration::from_secs(1), clock.now());
    let mut flush = Every::new(Duration::from_millis(100), clock.now());
    let mut progress = Every::new(Duration::from_millis(200), clock.now());

    let (tx, rx) = sync_channel::<Input>(config.limits.queue_batches);
    // One recycle queue per capture thread: a batch goes back to the thread that filled it.
    let stop = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicU64::new(0));
    let n_sources = sources.len() + usize::from(files.is_some());
    // Quiet for longer than the ring's block timeout: the kernel has handed over its last block.
    let stop_quiet = Duration::from_millis(u64::from(config.capture.ring.block_timeout_ms)) + STOP_QUIET_MARGIN;
    let mut captures = Vec::new();
    let mut recycle_tx: Vec<SyncSender<Batch>> = Vec::with_capacity(n_sources);
    for src in sources {
        tracing::info!(source = %src.name(), "capture started");
        let (rtx, r) = sync_channel::<Batch>(config.limits.queue_batches);
        recycle_tx.push(rtx);
        let origin = captures.len();
        let slot = feeds.drops_slot(origin);
        let (stop, dropped) = (stop.clone(), dropped.clone());
        captures.push(spawn_capture(src, origin, tx.clone(), r, stop, dropped, slot, stop_quiet, clock.clone())?);
    }
    drop(tx);

    tracing::info!(
        config = %config.file.display(), warrants = %liids(&all.warrants), case = %case_root.display(),
        delivery = out.delivery.is_some(), "tapir running"
    );
    say(&format!("READY=1\nSTATUS=running, {} warrant(s)", all.warrants.len()));
    feeds.ready();
    let mut watchdog = notify::watchdog_interval().map(|iv| Every::new(iv, clock.now()));
    if watchdog.is_some() {
        say("WATCHDOG=1");
    }

    let mut ended = 0usize;
    let mut reloads = 0u64;
    let mut stopping = false;
    let wait = Duration::from_secs(config.limits.deliver_wait_secs);
    loop {
        let next = match files.as_mut().filter(|f| !f.done) {
            Some(f) => {
                let next = f.read(&mut engine, &mut recorder, &mut out);
                if let Some(p) = replay.as_mut().and_then(|r| r.progress.as_mut()) {
                    if progress.due(clock.now()) {
                        p(engine.frames(), f.merge.position(), f.total);
                    }
                }
                next.ok_or(RecvTimeoutError::Timeout)
            }
            None => match rx.try_recv() {
                Ok(i) => Ok(i),
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {
                    clock.idle();
                    rx.recv_timeout(Duration::from_millis(50))
                }
            },
        };
        match next {
            Ok(Input::Frames(b)) => {
                for f in b.frames() {
                    engine.frame(&f, &mut recorder, &mut out);
                }
                if let Some(back) = recycle_tx.get(b.origin()) {
                    let _ = back.try_send(b);
                }
            }
            Ok(Input::Clock(t)) => engine.advance(t, &mut recorder, &mut out),
            Ok(Input::Damage(d)) => {
                tracing::warn!(damage = %d, "capture damage");
                engine.damage(d);
            }
            Ok(Input::Ended) => {
                ended += 1;
                if ended == n_sources {
                    match config.capture.replay_end {
                        ReplayEnd::Exit => {
                            tracing::info!("replay ended: stopping");
                            stopping = true;
                        }
                        ReplayEnd::Wait => tracing::info!("replay ended: waiting for SIGTERM"),
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Every capture thread is gone: only a stop order is left to wait for.
            Err(RecvTimeoutError::Disconnected) => {
                if stopping {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Some(assoc) = &hooks.assoc_rx {
            while let Ok(ev) = assoc.try_recv() {
                engine.push_event(ev);
            }
        }
        feeds.poll(&mut engine, out.delivery.is_some(), clock.now());
        // Files read as fast as they go follow packet time alone: neither the workers' epochs
        // nor the inspections' findings may land where the wall clock put them, or the same
        // capture would make another case on another run (both are taken at the end).
        if files.is_none() {
            recorder.poll(&mut out);
        }
        // Batches go to the case writer and the LEA at least every 100 ms, full or not: delivery
        // is near real time even for a target that sends little.
        if files.is_none() && flush.due(clock.now()) {
            engine.flush(&mut recorder, &mut out);
            out.out.flush();
        }
        if let Some(x) = &x1_running {
            x.note_present(engine.now());
            if x1_duties.due(clock.now()) {
                x.tick();
                x.note_intercepts(out.intercepts.drain());
                match &out.delivery {
                    Some(_) => {
                        if let Some(r) = out.status.latest() {
                            x.note_delivery(Some(&r));
                        }
                    }
                    None => x.note_delivery(None),
                }
            }
        }
        loop {
            let c = match control_rx.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => break,
            };
            match c {
                Control::Stop => {
                    if !stopping {
                        tracing::info!("stop requested");
                    }
                    stopping = true;
                }
                Control::Reload | Control::Warrants(_) => {
                    say("RELOADING=1");
                    let loaded = match c {
                        Control::Warrants(w) => Ok(w),
                        _ => provider.load(),
                    };
                    match loaded {
                        Ok(new) => {
                            reload(&mut engine, &mut recorder, &mut out, new, &wfile, &config.paths.spool_dir, wait);
                            reloads += 1;
                        }
                        // A bad file leaves the warrants in force as they were.
                        Err(e) => tracing::error!(
                            error = %redacted(&e, &provider.describe()),
                            "reload refused; warrants unchanged (tapir check-config says why)"
                        ),
                    }
                    say(&format!("READY=1\nSTATUS=running, {} warrant(s)", engine.warrants().len()));
                }
            }
        }
        if let Some(ping) = watchdog.as_mut() {
            if ping.due(clock.now()) {
                say("WATCHDOG=1");
            }
        }
        if stopping && !stop.swap(true, Ordering::Relaxed) {
            say("STOPPING=1");
            feeds.stopping();
        }
        // After a stop order, drain what the capture threads still hand over, then leave.
        if stopping && captures.iter().all(|h| h.is_finished()) {
            while let Ok(i) = rx.try_recv() {
                match i {
                    Input::Frames(b) => {
                        for f in b.frames() {
                            engine.frame(&f, &mut recorder, &mut out);
                        }
                    }
                    Input::Clock(t) => engine.advance(t, &mut recorder, &mut out),
                    Input::Damage(d) => engine.damage(d),
                    Input::Ended => {}
                }
            }
            break;
        }
    }
    for h in captures {
        if h.join().is_err() {
            tracing::error!("a capture thread panicked");
        }
    }
    // Files not read to their end: the case says what it lacks.
    let sig = signalled.load(Ordering::Relaxed);
    let last_ts = engine.now();
    let incomplete = (finite && ended < n_sources).then(|| {
        let by = if sig != 0 { format!("interrupted by signal {sig}") } else { "stopped".to_string() };
        format!(
            "{by} after {} packets (capture time {}): the rest of the input was not read",
            engine.frames(),
            last_ts.to_rfc3339()
        )
    });

    // Every worker's records and RADIUS-learnt events in before the feeds' last look.
    engine.flush(&mut recorder, &mut out);
    feeds.finish(&mut engine, clock.now());
    let in_force = engine.warrants().iter().map(|w| w.liid.clone()).collect();
    // Graceful stop: flows ended, objects finished, spool synced, the manifest signed.
    let totals = engine.finish(&mut recorder, &mut out);
    // Images still waiting are inspected before the case is signed.
    let inspected = recorder.finish(&mut out);
    if let Some(stats) = &inspected {
        tracing::info!(inspected = stats.inspected, refused = stats.refused, "image inspection");
    }
    let now = Timestamp::from_secs(chrono::Utc::now().timestamp()).to_rfc3339();
    let closed = out.out.close(&totals.summary.capture_damage, &key, &now, incomplete.as_deref())?;
    let signed = closed.signed;
    // Signed before the wait for the LEA: the evidence does not depend on it. A replay that was
    // interrupted does not wait: the spool keeps the rest for its next run.
    let wait = if replaying && sig != 0 { Duration::ZERO } else { wait };
    let delivery = match closed.delivery {
        Some(d) => Some(finish_delivery(d, wait).ok_or_else(|| anyhow!("the delivery thread panicked"))?),
        None => None,
    };
    let forward = match closed.forward {
        Some(f) => {
            let f = f.finish().map_err(|_| anyhow!("the X2/X3 forwarder thread panicked"))?;
            let r = f.finish(wait);
            tracing::info!(mdf = %r.mdf, other_mdfs = r.others.len(), complete = r.complete, x2 = r.counts.x2,
                x3 = r.counts.x3, still_spooled = r.still_spooled_bytes(), "X2/X3 forwarding");
            Some(r)
        }
        None => None,
    };
    let s = &totals.summary;
    for (liid, n) in &s.matched {
        tracing::info!(liid = %liid, packets = n, "matched");
    }
    tracing::info!(
        frames = s.frames, matched = s.matched_frames, dropped = dropped.load(Ordering::Relaxed),
        reloads, case = %case_root.display(), files_signed = signed, signer = %key.public_hex(),
        "tapir stopped"
    );
    Ok(RunReport {
        case: case_root,
        dropped: dropped.load(Ordering::Relaxed),
        reloads,
        files_signed: signed,
        liids: in_force,
        cases: closed.totals,
        inspected,
        delivery,
        incomplete,
        signal: (sig != 0).then_some(sig),
        signer: (key.public_hex(), key.ephemeral),
        totals,
        forward,
    })
}

/// New warrants into the running pipeline; delivery is restarted when its routing changed (the
/// spool carries what is not yet confirmed over to the new one).
fn reload(
    engine: &mut Engine,
    recorder: &mut Recorder,
    out: &mut Outputs,
    new: Warrants,
    wfile: &str,
    spool: &Path,
    wait: Duration,
) {
    let old = engine.warrants().to_vec();
    let added: Vec<&str> =
        new.warrants.iter().filter(|w| !old.iter().any(|o| o.liid == w.liid)).map(|w| w.liid.as_ref()).collect();
    let removed: Vec<&str> =
        old.iter().filter(|o| !new.warrants.iter().any(|w| w.liid == o.liid)).map(|w| w.liid.as_ref()).collect();
    let leas = match parse_leas(&new.lea, wfile) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "reload refused: bad [[lea]]; warrants unchanged");
            return;
        }
    };
    tracing::info!(added = %added.join(","), removed = %removed.join(","), total = new.warrants.len(), "warrants reloaded");
    // A POI names the new warrants by their XIDs from the next record on; it has no LEA.
    if let Some(x) = out.xids.clone() {
        if let Ok(mut m) = x.write() {
            // The removed ones' last records (flow ends, deactivation) still go out.
            m.extend(xids_of(&new.warrants));
        }
        if let Some(Ok(mut r)) = out.mdf_routes.as_ref().map(|r| r.write()) {
            // Only ever added to: a removed warrant's last records, still queued for the
            // forwarder, go where the warrant went, never to another MDF.
            r.extend(mdfs_of(&new));
        }
        engine.set_warrants(new.warrants.clone(), recorder, out);
        if let Ok(mut m) = x.write() {
            *m = xids_of(&new.warrants);
        }
        return;
    }
    let _ = redeliver(out, &old, &new, &leas, wfile, spool, wait);
    engine.set_warrants(new.warrants.clone(), recorder, out);
}

/// A reload's delivery: restarted when the LEAs or the routes changed, routing the old
/// warrants too (their last records still go out). Whether it was restarted.
pub(super) fn redeliver(
    out: &mut Outputs,
    old: &[Warrant],
    new: &Warrants,
    leas: &[crate::deliver::handover::LeaConfig],
    wfile: &str,
    spool: &Path,
    wait: Duration,
) -> bool {
    let delivery_changed = match &out.delivery {
        Some((old_leas, old_routes)) => *old_leas != new.lea || *old_routes != routes(&new.warrants),
        None => !leas.is_empty(),
    };
    if delivery_changed {
        out.deliver_to(None, wait.min(Duration::from_secs(1)));
        // Restarted before the pipeline takes the new warrants, and routing the old ones too:
        // `set_warrants` emits the added warrants' HI1 activations and the removed ones' flow
        // ends and deactivations, and each must reach its LEA. The routes kept for the next
        // comparison are the new warrants' only.
        let mut routed = new.clone();
        routed.warrants.extend(old.iter().filter(|o| !new.warrants.iter().any(|w| w.liid == o.liid)).cloned());
        match start_delivery(&routed, wfile, spool, &out.status, &out.give_up) {
            Ok(d) => out.deliver_to(d.map(|(d, leas, _)| (d, leas, routes(&new.warrants))), Duration::ZERO),
            Err(e) => tracing::error!(error = %format!("{e:#}"), "delivery not restarted; records go to the case only"),
        }
    }
    delivery_changed
}
