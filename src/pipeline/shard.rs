//! Several workers, each a whole [`Pipeline`] (decode, select, flow, analyze, content) over a
//! share of the flows, and one record stage after them.
//!
//! **Which worker.** A frame goes to the worker its innermost IP address pair hashes to, the
//! pair taken in either order: both directions of a flow, an FTP session's control and data
//! connections, an RTSP session and its RTP all meet in one worker (they share the pair), and
//! overlay traffic is spread by what it carries, not by the two tunnel endpoints (a VXLAN link
//! between two VTEPs carries every VM behind them). The dispatch decodes each frame to find
//! the pair; non-IP frames and frames that do not decode go to worker 0. A connection that a
//! flow announced between another pair (an FTP 227 naming a third host, SIP media sent to a
//! relay) goes to the announcing flow's worker instead ([`super::announced`]).
//!
//! **What every worker knows.** Association state (warrants, access sessions, VMs, images) is
//! each worker's own copy, fed the same events: the associations file, and the RADIUS
//! accounting seen on the tap, which is handed to every worker (one analyzes the frame, the
//! others only learn its events), so that every selector table moves at the same packet time.
//! Worker 0 alone emits what they all know alike (warrant notices, association IRI).
//!
//! **Numbers.** Each worker numbers its sessions and objects in a slot of its own
//! ([`Numbers::slot`]), the record stage (image inspections) in the last: no two meet, and
//! the numbers do not depend on thread timing.
//!
//! **Order.** Frames are handed out in epochs of [`EPOCH_FRAMES`]. Every worker is told the
//! time of every frame, its own or not, and advances its clock there: its warrant windows
//! open and close, its events fall due and its flows expire at the same capture times as one
//! pipeline's would (worker 0 stamps a warrant's notice with the time of the capture's first
//! frame in force, not its own first frame's). At an epoch's end every worker hands back the
//! epoch's records. The record stage takes epoch after epoch, and within one merges the
//! workers' records by capture time (each worker's in the order it made them; ties to the
//! lower worker). A session lives in one worker, so its
//! records keep their order; and the merged stream is the same whatever the threads' speed:
//! the same capture makes the same case.
//!
//! IP fragments (IPv4 and IPv6) go where their first fragment's inner packet went, those that
//! come before their first waiting in the dispatch for it ([`super::fragments`]), so a
//! tunnel's underlay fragments are reassembled by the worker of the packet they carry.
//!
//! **Known limits.** An announcement the dispatch cannot read (encrypted, or split across
//! segments other than an HTTP message's SDP body) leaves its connection to its pair
//! ([`super::announced`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use super::announced::Routes;
use super::fragments::{Fragment, FragmentRoutes, HeldFrame};
use super::{is_radius, Damage, Pipeline, Recorder, Summary, Totals};
use crate::capture::{Frame, LinkType};
use crate::decode::{DecodeConfig, Decoder, Transport};
use crate::flow::FlowStats;
use crate::record::{Numbers, Record, RecordSink, Records};
use crate::select::{AssocEvent, Warrant};
use crate::timestamp::Timestamp;

/// Frames handed out per epoch (all workers together).
pub const EPOCH_FRAMES: usize = 1024;

/// Epochs a worker may be ahead of the record stage.
const AHEAD: usize = 2;

/// Announced endpoints and pinned connections are kept at least this long unused.
const ROUTE_MIN_IDLE_NS: i64 = 300_000_000_000;

/// One epoch's frames for one worker, in one buffer.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    frames: Vec<Slot>,
}

struct Slot {
    ts: Timestamp,
    link: LinkType,
    orig_len: u32,
    end: usize,
    use_: Use,
}

/// What a worker does with a frame of its batch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Its own: the whole pipeline.
    Analyze,
    /// A RADIUS accounting frame another worker analyzes: only its events are learnt.
    LearnOnly,
    /// Another worker's frame: only its time is passed on (no bytes are copied).
    TimeOnly,
}

impl Batch {
    fn push(&mut self, f: &Frame<'_>, use_: Use) {
        if use_ != Use::TimeOnly {
            self.bytes.extend_from_slice(f.data);
        }
        self.frames.push(Slot { ts: f.ts, link: f.link, orig_len: f.orig_len, end: self.bytes.len(), use_ });
    }
}

enum ToWorker {
    /// The epoch's frames, and an emptied record batch (one the record stage merged) for the
    /// worker to fill next.
    Epoch {
        batch: Batch,
        records: Records,
        until: Timestamp,
    },
    /// Association events from a live feed, applied in time order with the others.
    Events(Vec<AssocEvent>),
    /// A daemon's reload, between two epochs.
    Warrants(Vec<Warrant>),
    /// Keep the events learnt from RADIUS for the journal (worker 0 only: every worker learns
    /// the same ones).
    KeepRadius(bool),
    Finish,
}

/// A worker's counters after an epoch, for a daemon's metrics and summary.
#[derive(Clone, Default)]
struct Progress {
    summary: Summary,
    flows: FlowStats,
    objects: u64,
    held: usize,
}

enum FromWorker {
    /// The epoch's records, and its frame batch back (emptied) for the next epoch: the
    /// buffers go round instead of being allocated (and faulted in) afresh.
    Epoch {
        records: Records,
        progress: Box<Progress>,
        radius: Vec<AssocEvent>,
        batch: Batch,
    },
    /// Part of what the end of input made (every flow ended): sent as it fills, so that a
    /// million flows ending at once are never held all together.
    Ending(Records),
    Done {
        records: Records,
        progress: Box<Progress>,
    },
}

fn progress(p: &Pipeline) -> Box<Progress> {
    Box::new(Progress {
        summary: p.summary.clone(),
        flows: p.flows().stats().clone(),
        objects: p.objects_finished(),
        held: p.association_events_held(),
    })
}

fn work(mut p: Pipeline, rx: Receiver<ToWorker>, tx: SyncSender<FromWorker>) {
    // What reloads and events between epochs emit goes with the next epoch's records.
    let mut out = Records::default();
    for msg in rx {
        match msg {
            ToWorker::Epoch { mut batch, records, until } => {
                let mut start = 0;
                for s in &batch.frames {
                    let data = batch.bytes.get(start..s.end).unwrap_or_default();
                    start = s.end;
                    let f = Frame { ts: s.ts, link: s.link, data, orig_len: s.orig_len };
                    match s.use_ {
                        Use::Analyze => p.frame(&f, &mut out),
                        Use::LearnOnly => p.learn_radius(&f, &mut out),
                        Use::TimeOnly => p.advance(f.ts, &mut out),
                    }
                }
                p.advance(until, &mut out);
                let records = std::mem::replace(&mut out, records);
                let radius = p.take_radius_events();
                batch.bytes.clear();
                batch.frames.clear();
                if tx.send(FromWorker::Epoch { records, progress: progress(&p), radius, batch }).is_err() {
                    return;
                }
            }
            ToWorker::Events(evs) => evs.into_iter().for_each(|ev| p.push_event(ev)),
            ToWorker::Warrants(w) => p.set_warrants(w, &mut out),
            ToWorker::KeepRadius(keep) => p.keep_radius_events(keep),
            ToWorker::Finish => break,
        }
    }
    let mut ending = Ending { out, tx: &tx };
    p.finish(&mut ending);
    let _ = tx.send(FromWorker::Done { records: ending.out, progress: progress(&p) });
}

/// Records per part of what a worker's end of input makes.
const ENDING_PART: usize = 4096;

/// A worker's sink at the end of input: sends its records on in parts of [`ENDING_PART`].
struct Ending<'a> {
    out: Records,
    tx: &'a SyncSender<FromWorker>,
}

impl RecordSink for Ending<'_> {
    fn record(&mut self, rec: Record<'_>) {
        self.out.record(rec);
        if self.out.len() >= ENDING_PART {
            // The record stage gone (it panicked): the rest is dropped with it.
            let _ = self.tx.send(FromWorker::Ending(std::mem::take(&mut self.out)));
        }
    }
}

struct Worker {
    tx: SyncSender<ToWorker>,
    rx: Receiver<FromWorker>,
    handle: Option<JoinHandle<()>>,
}

/// N workers and the dispatch in front of them (see the module documentation). The record
/// stage runs on the caller's thread, in [`Sharded::frame`] and [`Sharded::finish`].
pub struct Sharded {
    workers: Vec<Worker>,
    batches: Vec<Batch>,
    in_epoch: usize,
    /// Epochs handed out and epochs merged.
    sent: usize,
    merged: usize,
    dispatch: Decoder,
    /// Connections announced on one pair that run on another, kept with their announcer.
    routes: Routes,
    /// Fragmented datagrams, with the worker their first fragment's inner packet went to.
    frags: FragmentRoutes,
    /// Held fragments to hand out before the frame at hand, each with its worker.
    released: Vec<(usize, HeldFrame)>,
    last_ts: Timestamp,
    frames: u64,
    damage: Vec<Damage>,
    /// Each worker's counters after the last epoch merged.
    progress: Vec<Progress>,
    /// Live-feed events not handed to the workers yet.
    events: Vec<AssocEvent>,
    /// RADIUS-learnt events (from worker 0) not taken yet.
    radius: Vec<AssocEvent>,
    warrants: Vec<Warrant>,
    /// Emptied frame batches back from each worker, for its next epochs.
    spare: Vec<Vec<Batch>>,
    /// Each worker's record batches, emptied by the merge, for it to fill again.
    spare_records: Vec<Vec<Records>>,
}

/// The slot of the record stage of a run with `workers` workers.
pub fn recorder_numbers(workers: usize) -> Numbers {
    let n = workers as u32;
    Numbers::slot(n, n + 1)
}

impl Sharded {
    /// Starts `pipelines.len()` workers (at least 2; one is the plain [`Pipeline`]). The
    /// record stage must number from [`recorder_numbers`].
    pub fn start(pipelines: Vec<Pipeline>) -> std::io::Result<Sharded> {
        let n = pipelines.len();
        let warrants = pipelines.first().map(|p| p.warrants().to_vec()).unwrap_or_default();
        // An announced endpoint outlives every expectation (SIP's and HTTP SDP's 300 s are the
        // longest) and a pinned connection its flow (the idle timeouts).
        let idle_ns = pipelines.first().map_or(0, |p| {
            let c = p.flows().config();
            c.tcp_idle_ns.max(c.udp_idle_ns)
        });
        let idle_ns = idle_ns.max(ROUTE_MIN_IDLE_NS);
        let mut workers = Vec::with_capacity(n);
        for (i, mut p) in pipelines.into_iter().enumerate() {
            p.set_shard(i, Numbers::slot(i as u32, n as u32 + 1));
            let (tx, wrx) = sync_channel(AHEAD + 1);
            let (wtx, rx) = sync_channel(AHEAD + 1);
            let handle =
                std::thread::Builder::new().name(format!("tapir-worker-{i}")).spawn(move || work(p, wrx, wtx))?;
            workers.push(Worker { tx, rx, handle: Some(handle) });
        }
        Ok(Sharded {
            batches: (0..n).map(|_| Batch::default()).collect(),
            workers,
            in_epoch: 0,
            sent: 0,
            merged: 0,
            dispatch: Decoder::new(DecodeConfig::default()),
            routes: Routes::new(idle_ns),
            frags: FragmentRoutes::new(DecodeConfig::default()),
            released: Vec::new(),
            last_ts: Timestamp::MIN,
            frames: 0,
            damage: Vec::new(),
            progress: vec![Progress::default(); n],
            events: Vec::new(),
            radius: Vec::new(),
            warrants,
            spare: (0..n).map(|_| Vec::new()).collect(),
            spare_records: (0..n).map(|_| Vec::new()).collect(),
        })
    }

    /// How many workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Frames handed out so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Capture time so far.
    pub fn now(&self) -> Timestamp {
        self.last_ts
    }

    /// The worker of a frame (none: the dispatch holds it, [`super::fragments`]), and whether
    /// it is RADIUS accounting (which every worker learns).
    fn route(&mut self, f: &Frame<'_>) -> (Option<usize>, bool) {
        let n = self.workers.len();
        let Ok(d) = self.dispatch.decode(f) else { return (Some(0), false) };
        let radius = is_radius(&d.transport);
        let Some(ip) = &d.ip else { return (Some(0), radius) };
        let held = matches!(d.transport, Transport::Fragment);
        let home = if d.fragment.ip_header.is_empty() {
            home_of(&mut self.routes, n, ip.src, ip.dst, &d.transport, f.ts)
        } else {
            // An IP fragment, held or completing its datagram here: where its first fragment's
            // inner packet went.
            match self.frags.classify(f, d.fragment) {
                Fragment::Known(w) => w.min(n - 1),
                Fragment::First(datagram, inner) => {
                    let home = home_of(&mut self.routes, n, inner.src, inner.dst, &inner.transport, f.ts);
                    let early = self.frags.remember(datagram, home, f.ts);
                    self.released.extend(early.into_iter().map(|h| (home, h)));
                    home
                }
                Fragment::Early(datagram) if held => {
                    let pair = pair_worker(ip.src, ip.dst, n);
                    if self.frags.hold(datagram, f, pair) {
                        return (None, radius);
                    }
                    pair
                }
                Fragment::Unknown if held => pair_worker(ip.src, ip.dst, n),
                // Completing a datagram whose first fragment the table does not know (it told
                // nothing of its inner packet): by the reassembled packet, as any other.
                Fragment::Early(_) | Fragment::Unknown => {
                    home_of(&mut self.routes, n, ip.src, ip.dst, &d.transport, f.ts)
                }
            }
        };
        // A datagram the dispatch reassembled is read too: a SIP message with SDP may be
        // larger than the path MTU.
        if matches!(d.transport, Transport::Tcp(_) | Transport::Udp { .. }) {
            self.routes.learn(&d.transport, d.payload, ip.src, ip.dst, home, f.ts);
        }
        (Some(home), radius)
    }

    /// One captured frame, handed to its worker; the record stage takes the records of the
    /// epochs the workers have finished, through `recorder` into `sink`.
    pub fn frame(&mut self, f: &Frame<'_>, recorder: &mut Recorder, sink: &mut dyn RecordSink) {
        self.send_events();
        self.frags.expire(f.ts, &mut self.released);
        let (home, radius) = self.route(f);
        self.hand_out_released();
        for (i, b) in self.batches.iter_mut().enumerate() {
            let use_ = if Some(i) == home {
                Use::Analyze
            } else if radius {
                Use::LearnOnly
            } else {
                Use::TimeOnly
            };
            b.push(f, use_);
        }
        self.frames += 1;
        if f.ts > self.last_ts {
            self.last_ts = f.ts;
        }
        self.in_epoch += 1;
        if self.in_epoch >= EPOCH_FRAMES {
            self.end_epoch();
            while self.sent - self.merged > AHEAD {
                self.merge_one(recorder, sink);
            }
        }
    }

    /// Held fragments the dispatch let go, each to its worker alone (the others saw their
    /// time when they came).
    fn hand_out_released(&mut self) {
        for (w, h) in self.released.drain(..) {
            if let Some(b) = self.batches.get_mut(w) {
                b.push(&h.frame(), Use::Analyze);
                self.in_epoch += 1;
            }
        }
    }

    /// Capture time moves to `now` without a frame (a quiet live link): the epoch ends there,
    /// so every worker's timers run, and what the workers made so far is recorded.
    pub fn advance(&mut self, now: Timestamp, recorder: &mut Recorder, sink: &mut dyn RecordSink) {
        self.send_events();
        self.frags.expire(now, &mut self.released);
        self.hand_out_released();
        if now > self.last_ts {
            self.last_ts = now;
        }
        self.end_epoch();
        self.flush(recorder, sink);
    }

    /// Ends the epoch being filled and records everything the workers were handed (a live
    /// daemon's timer: a quiet target's records do not wait for a full epoch).
    pub fn flush(&mut self, recorder: &mut Recorder, sink: &mut dyn RecordSink) {
        self.send_events();
        if self.in_epoch > 0 {
            self.end_epoch();
        }
        while self.merged < self.sent {
            self.merge_one(recorder, sink);
        }
    }

    /// An association event from a live feed: every worker applies it, in time order.
    pub fn push_event(&mut self, ev: AssocEvent) {
        self.events.push(ev);
    }

    /// Hands the pending feed events to every worker, between two epochs (every worker then
    /// applies them before the same frame).
    fn send_events(&mut self) {
        if self.events.is_empty() {
            return;
        }
        if self.in_epoch > 0 {
            self.end_epoch();
        }
        let evs = std::mem::take(&mut self.events);
        for w in &self.workers {
            let _ = w.tx.send(ToWorker::Events(evs.clone()));
        }
    }

    /// Replaces the warrants without losing flows (a daemon's reload), in every worker at the
    /// same point of the capture; what that emits is recorded with the next epoch.
    pub fn set_warrants(&mut self, warrants: Vec<Warrant>) {
        self.send_events();
        if self.in_epoch > 0 {
            self.end_epoch();
        }
        for w in &self.workers {
            let _ = w.tx.send(ToWorker::Warrants(warrants.clone()));
        }
        self.warrants = warrants;
    }

    /// The warrants in force.
    pub fn warrants(&self) -> &[Warrant] {
        &self.warrants
    }

    /// Keep RADIUS-learnt events for [`Sharded::take_radius_events`] (worker 0 keeps them).
    pub fn keep_radius_events(&mut self, keep: bool) {
        if let Some(w) = self.workers.first() {
            let _ = w.tx.send(ToWorker::KeepRadius(keep));
        }
    }

    /// The events learnt from RADIUS accounting in the epochs merged since the last call.
    pub fn take_radius_events(&mut self) -> Vec<AssocEvent> {
        std::mem::take(&mut self.radius)
    }

    /// The workers' counters as of the last epoch merged, added up.
    pub fn summary(&self) -> Summary {
        let mut s = add_up(self.progress.iter().map(|p| p.summary.clone()).collect());
        s.capture_damage.extend(self.damage.iter().cloned());
        self.dispatch_counts(&mut s);
        s
    }

    /// What the dispatch itself counted, into a summary of the workers'.
    fn dispatch_counts(&self, s: &mut Summary) {
        s.announced_routes = self.routes.stats();
        s.fragment_routes = self.frags.stats();
    }

    /// The workers' flow counters as of the last epoch merged, added up.
    pub fn flow_stats(&self) -> FlowStats {
        let mut f = FlowStats::default();
        self.progress.iter().for_each(|p| f.add(&p.flows));
        f
    }

    /// Objects the workers finished, as of the last epoch merged.
    pub fn objects_finished(&self) -> u64 {
        self.progress.iter().map(|p| p.objects).sum()
    }

    /// Starts of open access sessions worker 0 dropped over the cap (each drops the same).
    pub fn association_events_dropped(&self) -> u64 {
        self.progress.first().map_or(0, |p| p.summary.association_events_dropped)
    }

    /// Association events held by worker 0 (each worker holds the same).
    pub fn association_events_held(&self) -> usize {
        self.progress.first().map_or(0, |p| p.held)
    }

    /// A damaged region of a capture file.
    pub fn damage(&mut self, what: String) {
        let after = (self.last_ts != Timestamp::MIN).then_some(self.last_ts);
        self.damage.push(Damage { after, what });
    }

    fn end_epoch(&mut self) {
        for (i, (w, b)) in self.workers.iter().zip(self.batches.iter_mut()).enumerate() {
            let batch = std::mem::replace(b, self.spare.get_mut(i).and_then(Vec::pop).unwrap_or_default());
            let records = self.spare_records.get_mut(i).and_then(Vec::pop).unwrap_or_default();
            // A worker gone (it panicked) is reported when it is joined.
            let _ = w.tx.send(ToWorker::Epoch { batch, records, until: self.last_ts });
        }
        self.in_epoch = 0;
        self.sent += 1;
    }

    /// The oldest epoch not merged yet: each worker's records, merged by capture time.
    fn merge_one(&mut self, recorder: &mut Recorder, sink: &mut dyn RecordSink) {
        let mut parts = Vec::with_capacity(self.workers.len());
        for (i, w) in self.workers.iter().enumerate() {
            match w.rx.recv() {
                Ok(FromWorker::Epoch { records, progress, radius, batch }) => {
                    parts.push(records);
                    if let Some(s) = self.spare.get_mut(i) {
                        s.push(batch);
                    }
                    if let Some(p) = self.progress.get_mut(i) {
                        *p = *progress;
                    }
                    self.radius.extend(radius);
                }
                _ => parts.push(Records::default()),
            }
        }
        self.merged += 1;
        merge(&mut parts, |_, _| false, recorder, sink);
        for (spare, mut r) in self.spare_records.iter_mut().zip(parts) {
            r.clear();
            spare.push(r);
        }
    }

    /// End of input: the last epoch, every flow ended, the remaining records merged. The totals
    /// add up the workers' counters, with the dispatch's damage; association counters are
    /// worker 0's (every worker applies the same events).
    pub fn finish(mut self, recorder: &mut Recorder, sink: &mut dyn RecordSink) -> Totals {
        self.frags.release_all(&mut self.released);
        self.hand_out_released();
        self.flush(recorder, sink);
        for w in &self.workers {
            let _ = w.tx.send(ToWorker::Finish);
        }
        // Each worker's ending comes in parts, merged as they come: a part is asked for when
        // the worker's last one is used up, until its `Done`.
        let n = self.workers.len();
        let mut parts: Vec<Records> = (0..n).map(|_| Records::default()).collect();
        let mut done = vec![false; n];
        let mut progresses: Vec<Option<Box<Progress>>> = (0..n).map(|_| None).collect();
        let workers = &self.workers;
        let refill = |i: usize, part: &mut Records| -> bool {
            if done[i] {
                return false;
            }
            match workers.get(i).map(|w| w.rx.recv()) {
                Some(Ok(FromWorker::Ending(r))) => *part = r,
                Some(Ok(FromWorker::Done { records, progress })) => {
                    *part = records;
                    progresses[i] = Some(progress);
                    done[i] = true;
                }
                // An epoch's or a gone worker's: nothing more comes from it.
                _ => done[i] = true,
            }
            true
        };
        merge(&mut parts, refill, recorder, sink);
        let mut summaries = Vec::new();
        let mut flows = FlowStats::default();
        let mut objects = 0;
        for (w, p) in self.workers.iter_mut().zip(progresses) {
            match p {
                Some(p) => {
                    flows.add(&p.flows);
                    objects += p.objects;
                    summaries.push(p.summary);
                }
                None => summaries.push(Summary::default()),
            }
            if let Some(h) = w.handle.take() {
                if h.join().is_err() {
                    self.damage.push(Damage { after: None, what: "a pipeline worker panicked".into() });
                }
            }
        }
        let mut summary = add_up(summaries);
        summary.capture_damage.extend(std::mem::take(&mut self.damage));
        self.dispatch_counts(&mut summary);
        Totals { summary, flows, objects }
    }
}

/// The workers' records, merged by capture time into the record stage: an epoch's, or the
/// end of input's in parts (`refill(i, part)` puts worker `i`'s next part in `part` when its
/// last is used up, and says false when none comes any more).
fn merge(
    parts: &mut [Records],
    mut refill: impl FnMut(usize, &mut Records) -> bool,
    recorder: &mut Recorder,
    sink: &mut dyn RecordSink,
) {
    // A record without a time (object bytes) goes with the one before it.
    let mut clock: Vec<Timestamp> = vec![Timestamp::MIN; parts.len()];
    loop {
        let mut best: Option<(Timestamp, usize)> = None;
        for (i, part) in parts.iter_mut().enumerate() {
            let ts = loop {
                match part.peek() {
                    Some(ts) => break Some(ts),
                    None => {
                        part.clear();
                        if !refill(i, part) {
                            break None;
                        }
                    }
                }
            };
            let Some(ts) = ts else { continue };
            let ts = ts.unwrap_or(clock[i]);
            if best.is_none_or(|(b, _)| ts < b) {
                best = Some((ts, i));
            }
        }
        let Some((ts, i)) = best else { return };
        clock[i] = ts;
        recorder.due(ts, sink);
        if !parts[i].replay_first(&mut recorder.sink(sink)) {
            return;
        }
    }
}

fn add_up(parts: Vec<Summary>) -> Summary {
    let mut it = parts.into_iter();
    let mut s = it.next().unwrap_or_default();
    for p in it {
        s.frames += p.frames;
        s.bytes += p.bytes;
        s.matched_frames += p.matched_frames;
        for (k, v) in p.matched {
            *s.matched.entry(k).or_insert(0) += v;
        }
        for (k, v) in p.decode_errors {
            *s.decode_errors.entry(k).or_insert(0) += v;
        }
        s.capture_damage.extend(p.capture_damage);
    }
    s
}

/// The worker of a packet between `src` and `dst`: its connection's if that is pinned to the
/// worker of its announcer ([`super::announced`]), else its address pair's.
fn home_of(routes: &mut Routes, n: usize, src: IpAddr, dst: IpAddr, t: &Transport, now: Timestamp) -> usize {
    let ports = match *t {
        Transport::Tcp(t) => Some((t.src_port, t.dst_port)),
        Transport::Udp { src_port, dst_port } => Some((src_port, dst_port)),
        _ => None,
    };
    let pinned = ports.and_then(|(sp, dp)| routes.worker(t, SocketAddr::new(src, sp), SocketAddr::new(dst, dp), now));
    pinned.map_or(pair_worker(src, dst, n), |w| w.min(n - 1))
}

/// The worker of the address pair of `src` and `dst`, of `n`.
fn pair_worker(src: IpAddr, dst: IpAddr, n: usize) -> usize {
    pair_hash(src, dst) as usize % n
}

/// A hash of an address pair that is the same in either order.
fn pair_hash(a: IpAddr, b: IpAddr) -> u64 {
    let bits = |ip: IpAddr| match ip {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    };
    let (x, y) = (bits(a), bits(b));
    let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
    let fold = |v: u128| (v as u64) ^ ((v >> 64) as u64);
    // Two rounds of a multiplicative mix: nearby addresses land far apart.
    let h = fold(lo).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ fold(hi);
    let h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_hashes_alike_in_either_order_and_pairs_spread() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(pair_hash(ip("10.0.0.1"), ip("10.0.0.2")), pair_hash(ip("10.0.0.2"), ip("10.0.0.1")));
        assert_eq!(pair_hash(ip("fe80::1"), ip("10.0.0.2")), pair_hash(ip("10.0.0.2"), ip("fe80::1")));
        // 256 clients of one server over 2 workers: neither gets fewer than a third.
        let server = ip("192.0.2.1");
        let on_one = (0..256u32)
            .filter(|i| pair_hash(IpAddr::from([10, 0, (i / 256) as u8, *i as u8]), server) % 2 == 1)
            .count();
        assert!((86..=170).contains(&on_one), "{on_one}");
    }
}
