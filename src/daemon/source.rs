//! Frame sources for the daemon, and the batches that carry their frames to the pipeline thread.
//!
//! HOOK (live capture): `capture::live::LiveCapture` implements [`Source`] through a small
//! adapter (its `poll` has the same shape; `clock()` is the wall clock). One per worker.
//! With the cargo feature `libpcap`, `PcapSource` does the same for `capture::pcap_live`.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::clock::{SharedClock, SystemClock};

use crate::capture::{CaptureFile, Frame, LinkType, Merge};
use crate::timestamp::Timestamp;

/// Something that yields captured frames: a ring on a tap port, or capture files.
pub trait Source: Send {
    /// Calls `f` with each frame available within about `timeout`; returns how many.
    fn poll(&mut self, timeout: Duration, f: &mut dyn FnMut(&Frame<'_>)) -> usize;
    /// The source's present time when no frame comes: the wall clock for a live source, the
    /// paced position of a real-time replay, `None` when only packet times count (fast replay).
    /// The pipeline advances to it so windows end and flows expire on a quiet link.
    fn clock(&self) -> Option<Timestamp>;
    /// Nothing more will come (a replay after its last frame).
    fn exhausted(&self) -> bool {
        false
    }
    /// Damage seen since the last call (unreadable capture-file regions), one line each.
    fn take_damage(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Re-reads the kernel's counters now (a live source reads them about once a second while
    /// it polls); called once more when capture stops, so that the closing counts are final.
    fn read_counters(&mut self) {}
    /// Frames lost before they reached us (ring drops), as of the last read of the counters.
    fn dropped(&self) -> u64 {
        0
    }
    /// Times the kernel found the ring full (a live source's queue freezes).
    fn freezes(&self) -> u64 {
        0
    }
    /// The tap interface this source reads, for the `interface` label of the kernel-drop metric
    /// (whose value is [`Source::dropped`]); `None` for a replay.
    fn interface(&self) -> Option<String> {
        None
    }
    /// For logs.
    fn name(&self) -> String;
}

/// Wall-clock now as a [`Timestamp`].
pub fn wall_clock() -> Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2_000_000_000);
    Timestamp::from_secs_nanos(secs, d.subsec_nanos())
}

#[derive(Copy, Clone, Debug)]
struct Meta {
    ts: Timestamp,
    link: LinkType,
    orig_len: u32,
    start: usize,
    end: usize,
}

/// Frames copied out of a source into one buffer, handed between threads and reused, so the
/// steady state allocates nothing per packet.
#[derive(Default)]
pub struct Batch {
    data: Vec<u8>,
    meta: Vec<Meta>,
    /// The capture thread it belongs to: the pipeline hands it back there for reuse, so each
    /// thread's buffers stay its own (no allocation per batch, no drift of memory between
    /// threads' allocator arenas).
    origin: usize,
}

/// Frames per batch before it is sent on.
pub const BATCH_FRAMES: usize = 256;

impl Batch {
    pub fn with_capacity(frames: usize) -> Batch {
        Batch { data: Vec::with_capacity(frames * 1600), meta: Vec::with_capacity(frames), origin: 0 }
    }

    pub fn push(&mut self, f: &Frame<'_>) {
        let start = self.data.len();
        self.data.extend_from_slice(f.data);
        self.meta.push(Meta { ts: f.ts, link: f.link, orig_len: f.orig_len, start, end: self.data.len() });
    }

    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    pub fn origin(&self) -> usize {
        self.origin
    }

    pub fn set_origin(&mut self, origin: usize) {
        self.origin = origin;
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.meta.clear();
    }

    pub fn frames(&self) -> impl Iterator<Item = Frame<'_>> {
        self.meta.iter().map(|m| Frame {
            ts: m.ts,
            link: m.link,
            data: self.data.get(m.start..m.end).unwrap_or(&[]),
            orig_len: m.orig_len,
        })
    }
}

enum Read {
    Batch(Batch),
    Damage(String),
}

/// Capture files replayed as a source (tests, demonstrations): `pace = "fast"` hands frames on
/// as fast as the pipeline takes them; `"realtime"` releases each at its capture time offset
/// from the first frame, starting when the source is opened. The files are read on a thread of
/// their own (their frames borrow the reader's window, so they are copied into batches there).
pub struct ReplaySource {
    rx: Receiver<Read>,
    current: Batch,
    next: usize,
    realtime: bool,
    /// What paces a realtime replay (see [`ReplaySource::on_clock`]).
    clock: SharedClock,
    /// (first frame's time, the instant it was released).
    origin: Option<(Timestamp, Instant)>,
    started: Instant,
    done: bool,
    damage: Vec<String>,
    names: String,
}

impl ReplaySource {
    pub fn open(files: &[PathBuf], realtime: bool) -> Result<ReplaySource, crate::capture::CaptureError> {
        let opened = files.iter().map(|p| CaptureFile::open(p)).collect::<Result<Vec<_>, _>>()?;
        let names = files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(",");
        let (tx, rx) = sync_channel::<Read>(8);
        let paths = files.to_vec();
        std::thread::Builder::new()
            .name("tapir-replay".into())
            .spawn(move || read_files(opened, paths, tx))
            .map_err(|e| crate::capture::CaptureError::Io { path: PathBuf::from(&names), source: e })?;
        Ok(ReplaySource {
            rx,
            current: Batch::default(),
            next: 0,
            realtime,
            clock: Arc::new(SystemClock),
            origin: None,
            started: Instant::now(),
            done: false,
            damage: Vec::new(),
            names: names.clone(),
        })
    }

    /// Paced by `clock` instead of the system's, from its present instant on (a virtual clock
    /// replays a long quiet link at once).
    pub fn on_clock(mut self, clock: SharedClock) -> ReplaySource {
        self.started = clock.now();
        self.clock = clock;
        self
    }

    /// When the frame with time `ts` is due (realtime pacing).
    fn due(&mut self, ts: Timestamp) -> Instant {
        let (t0, i0) = *self.origin.get_or_insert((ts, self.started));
        let off = ts.nanos().saturating_sub(t0.nanos()).max(0);
        i0 + Duration::from_nanos(u64::try_from(off).unwrap_or(0))
    }
}

fn read_files(files: Vec<CaptureFile>, paths: Vec<PathBuf>, tx: SyncSender<Read>) {
    let mut merge = Merge::new(files.iter().map(|f| f.frames()).collect());
    let mut batch = Batch::with_capacity(BATCH_FRAMES);
    while let Some((idx, item)) = merge.next_frame() {
        match item {
            Ok(frame) => batch.push(&frame),
            Err(d) => {
                let name = paths.get(idx).map_or_else(String::new, |p| p.display().to_string());
                if tx.send(Read::Damage(format!("{name}: {d}"))).is_err() {
                    return;
                }
            }
        }
        if batch.len() >= BATCH_FRAMES {
            let full = std::mem::replace(&mut batch, Batch::with_capacity(BATCH_FRAMES));
            if tx.send(Read::Batch(full)).is_err() {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Read::Batch(batch));
    }
}

impl Source for ReplaySource {
    fn poll(&mut self, timeout: Duration, f: &mut dyn FnMut(&Frame<'_>)) -> usize {
        let clock = self.clock.clone();
        let deadline = clock.now() + timeout;
        let mut n = 0;
        loop {
            if self.next >= self.current.len() {
                if self.done {
                    return n;
                }
                // A real wait for the reader thread: bounded, it decides nothing.
                let wait = deadline.saturating_duration_since(clock.now()).max(Duration::from_millis(1));
                match self.rx.recv_timeout(wait) {
                    Ok(Read::Batch(b)) => {
                        self.current = b;
                        self.next = 0;
                        continue;
                    }
                    Ok(Read::Damage(d)) => {
                        self.damage.push(d);
                        continue;
                    }
                    Err(RecvTimeoutError::Timeout) => return n,
                    Err(RecvTimeoutError::Disconnected) => {
                        self.done = true;
                        return n;
                    }
                }
            }
            let Some(meta) = self.current.meta.get(self.next).copied() else { return n };
            if self.realtime {
                let due = self.due(meta.ts);
                if due > clock.now() {
                    if n > 0 {
                        // What is due goes on now, not with the next frame.
                        return n;
                    }
                    clock.sleep_until(deadline.min(due));
                    if due > clock.now() {
                        // Not this poll's (or a virtual clock's wait ended early).
                        return n;
                    }
                }
            }
            let frame = Frame {
                ts: meta.ts,
                link: meta.link,
                data: self.current.data.get(meta.start..meta.end).unwrap_or(&[]),
                orig_len: meta.orig_len,
            };
            f(&frame);
            self.next += 1;
            n += 1;
            if n >= BATCH_FRAMES || clock.now() >= deadline {
                return n;
            }
        }
    }

    fn clock(&self) -> Option<Timestamp> {
        if !self.realtime || self.done {
            return None;
        }
        let (t0, i0) = self.origin?;
        let el = i64::try_from(self.clock.now().saturating_duration_since(i0).as_nanos()).unwrap_or(i64::MAX);
        Some(t0.add_nanos(el))
    }

    fn exhausted(&self) -> bool {
        self.done && self.next >= self.current.len()
    }

    fn take_damage(&mut self) -> Vec<String> {
        std::mem::take(&mut self.damage)
    }

    fn name(&self) -> String {
        format!("replay:{}", self.names)
    }
}

/// A worker's AF_PACKET rings (one per interface, one fanout group per interface) as a
/// [`Source`]. Kernel counters are read and reset by `PACKET_STATISTICS`, so they are taken about
/// once a second from the capture thread and kept here as totals.
pub struct LiveSource {
    cap: crate::capture::live::LiveCapture,
    worker: usize,
    last_stats: Instant,
    stats: crate::capture::live::LiveStats,
    errors: u64,
}

impl LiveSource {
    pub fn open(
        interfaces: &[String],
        cfg: &crate::capture::live::RingConfig,
        worker: usize,
    ) -> Result<LiveSource, crate::capture::live::LiveError> {
        let cap = crate::capture::live::LiveCapture::open(interfaces, cfg)?;
        Ok(LiveSource {
            cap,
            worker,
            last_stats: Instant::now(),
            stats: crate::capture::live::LiveStats::default(),
            errors: 0,
        })
    }

    /// Kernel counters as of the last read (per interface: packets, drops, freezes).
    pub fn stats(&self) -> &crate::capture::live::LiveStats {
        &self.stats
    }
}

impl Source for LiveSource {
    fn poll(&mut self, timeout: Duration, f: &mut dyn FnMut(&Frame<'_>)) -> usize {
        let n = match self.cap.poll(timeout, f) {
            Ok(n) => n,
            Err(e) => {
                // An interface going down is reported and retried, never fatal: the tap may
                // come back, and the other interfaces keep flowing.
                self.errors += 1;
                if self.errors.is_power_of_two() {
                    tracing::warn!(worker = self.worker, error = %e, count = self.errors, "capture error");
                }
                std::thread::sleep(timeout.min(Duration::from_millis(100)));
                0
            }
        };
        if self.last_stats.elapsed() >= Duration::from_secs(1) {
            self.read_counters();
        }
        n
    }

    fn read_counters(&mut self) {
        self.last_stats = Instant::now();
        if let Ok(s) = self.cap.stats() {
            self.stats = s;
        }
    }

    fn clock(&self) -> Option<Timestamp> {
        Some(wall_clock())
    }

    fn dropped(&self) -> u64 {
        self.stats.drops()
    }

    fn freezes(&self) -> u64 {
        self.stats.freezes()
    }

    /// The metric label of its kernel drops: the interface (a worker on several interfaces
    /// reports them together, named `a,b`).
    fn interface(&self) -> Option<String> {
        Some(self.cap.interfaces().collect::<Vec<_>>().join(","))
    }

    fn name(&self) -> String {
        let ifs: Vec<&str> = self.cap.interfaces().collect();
        format!("live worker {} on {}", self.worker, ifs.join(","))
    }
}

/// The interfaces read through libpcap (`[capture] backend = "libpcap"`, cargo feature
/// `libpcap`) as a [`Source`]: one per daemon, since libpcap cannot share an interface between
/// workers. libpcap's counters are cumulative; they are read about once a second, as
/// [`LiveSource`] does.
#[cfg(feature = "libpcap")]
pub struct PcapSource {
    cap: crate::capture::pcap_live::PcapCapture,
    last_stats: Instant,
    stats: crate::capture::pcap_live::PcapStats,
    errors: u64,
}

#[cfg(feature = "libpcap")]
impl PcapSource {
    pub fn open(
        interfaces: &[String],
        promiscuous: bool,
        snaplen: u32,
        buffer_size: u32,
        timeout_ms: u32,
    ) -> Result<PcapSource, crate::capture::pcap_live::PcapLiveError> {
        let cap =
            crate::capture::pcap_live::PcapCapture::open(interfaces, promiscuous, snaplen, buffer_size, timeout_ms)?;
        Ok(PcapSource {
            cap,
            last_stats: Instant::now(),
            stats: crate::capture::pcap_live::PcapStats::default(),
            errors: 0,
        })
    }

    /// libpcap's counters as of the last read.
    pub fn stats(&self) -> &crate::capture::pcap_live::PcapStats {
        &self.stats
    }
}

#[cfg(feature = "libpcap")]
impl Source for PcapSource {
    fn poll(&mut self, timeout: Duration, f: &mut dyn FnMut(&Frame<'_>)) -> usize {
        let n = match self.cap.poll(timeout, f) {
            Ok(n) => n,
            Err(e) => {
                // As for the AF_PACKET rings: reported and retried, the interface may come back.
                self.errors += 1;
                if self.errors.is_power_of_two() {
                    tracing::warn!(error = %e, count = self.errors, "libpcap capture error");
                }
                std::thread::sleep(timeout.min(Duration::from_millis(100)));
                0
            }
        };
        if self.last_stats.elapsed() >= Duration::from_secs(1) {
            self.read_counters();
        }
        n
    }

    fn read_counters(&mut self) {
        self.last_stats = Instant::now();
        if let Ok(s) = self.cap.stats() {
            self.stats = s;
        }
    }

    fn clock(&self) -> Option<Timestamp> {
        Some(wall_clock())
    }

    /// Frames lost because the capture buffer was full (`ps_drop`), as the AF_PACKET source
    /// reports its ring drops; the interface's own drops (`ps_ifdrop`) are not ours to count.
    fn dropped(&self) -> u64 {
        self.stats.dropped()
    }

    fn interface(&self) -> Option<String> {
        Some(self.cap.interfaces().collect::<Vec<_>>().join(","))
    }

    fn name(&self) -> String {
        format!("libpcap on {}", self.cap.interfaces().collect::<Vec<_>>().join(","))
    }
}
