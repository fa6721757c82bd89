//! The flow table: sessions, CINs, session IRI, CC, and TCP reassembly feeding analyzers.
//!
//! A flow is keyed by (LIID, overlay zone, IP protocol, unordered endpoint pair). Each LIID that
//! claims a packet gets its own flow, CIN and records. Flows live in a slab threaded on three
//! intrusive LRU lists (open TCP, open other, closed-and-lingering), most recent first, so a
//! lookup, a touch, an eviction and each idle expiry are O(1).
//!
//! What is counted (`Counters`): every packet of the session, per direction, with its IP bytes
//! on the wire (every header byte) and its transport payload bytes, from the first packet to the
//! last, including those that come after the close.
//!
//! After FIN/RST the analyzer is closed at once, and the flow lingers, closed, for a short while
//! so that the last ACKs and retransmissions are still delivered as CC under the session's CIN
//! (with the session's direction) instead of opening a spurious new session; a SYN on a closed
//! flow starts a new session. The session's end (`SessionEnd`) is reported when the flow leaves
//! the table, so that its counters hold those late packets too; it is stamped with the time the
//! session closed (its `last_seen` says when its last packet came).
//!
//! Everything a flow emits (its IRI, its CC, what its analyzer and the file layer make of its
//! bytes) goes through the [`Gate`] of its warrant's scope. Analyzers run whatever the scope: an
//! IRI-only warrant's FTP transfer or mail is IRI.
//!
//! The absolute timeout is enforced exactly when a flow's next packet arrives (that packet opens
//! the next session); `tick` also ends overdue silent flows, scanning the table at most every
//! `absolute_ns / 16` of `now`.

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::analyze::{Cx, Expectations, StreamAnalyzer};
use crate::capture::Frame;
use crate::content::FileLayer;
use crate::decode::{tcp_flags, Decoded, Overlay, Transport};
use crate::record::{
    CcRecord, Cin, Close, Counters, Dir, FlowDescr, Gate, IriEvent, IriRecord, Liid, Numbers, Provenance, Record,
    RecordSink, Scope, TunnelDescr, WireConflict,
};
use crate::select::Match;
use crate::timestamp::Timestamp;

use super::evidence::{ChecksumValidation, DirTrust, Verdict};
use super::tcp::{Assembler, Budget, Event, ReassemblyStats};

/// How long a closed (FIN/RST) flow is kept to attribute late packets, capped by `tcp_idle_ns`.
pub const CLOSED_LINGER_NS: i64 = 10_000_000_000;

/// Timeouts and memory bounds.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// A TCP session with no packet for this long ends (`IdleTimeout`).
    pub tcp_idle_ns: i64,
    /// Same for UDP, ICMP and other protocols.
    pub udp_idle_ns: i64,
    /// A session older than this ends (`AbsoluteTimeout`); traffic that goes on opens a new one.
    pub absolute_ns: i64,
    /// Most bytes held ahead of holes per TCP direction.
    pub per_direction_buffer: usize,
    /// Most bytes held ahead of holes over the whole table.
    pub global_buffer: usize,
    /// Most flows (open or lingering); the least recently used is evicted past it.
    pub max_flows: usize,
    /// Emit `SessionContinue` this often during a session, if set.
    pub interim_ns: Option<i64>,
    /// Whether a TCP segment whose checksum fails is refused (see [`super::evidence`]).
    pub checksums: ChecksumValidation,
    /// What decoding content may cost (the analyzers' file layer applies it).
    pub content: crate::content::ContentLimits,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            tcp_idle_ns: 300_000_000_000,
            udp_idle_ns: 60_000_000_000,
            absolute_ns: 3_600_000_000_000,
            per_direction_buffer: 4 << 20,
            global_buffer: 256 << 20,
            max_flows: 262_144,
            interim_ns: None,
            checksums: ChecksumValidation::Auto,
            content: crate::content::ContentLimits::default(),
        }
    }
}

impl FlowConfig {
    /// The share of one of `workers` pipeline workers: the box-wide bounds (flows held, bytes
    /// held ahead of holes) divided among them, so that N workers together hold what one would.
    pub fn share(&self, workers: usize) -> FlowConfig {
        let n = workers.max(1);
        FlowConfig {
            global_buffer: (self.global_buffer / n).max(self.per_direction_buffer),
            max_flows: (self.max_flows / n).max(1),
            ..self.clone()
        }
    }
}

/// Sessions ended, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EndedCounts {
    pub fin: u64,
    pub rst: u64,
    pub idle_timeout: u64,
    pub absolute_timeout: u64,
    pub window_end: u64,
    pub evicted: u64,
    pub shutdown: u64,
}

impl EndedCounts {
    fn count(&mut self, how: Close) {
        let c = match how {
            Close::Fin => &mut self.fin,
            Close::Rst => &mut self.rst,
            Close::IdleTimeout => &mut self.idle_timeout,
            Close::AbsoluteTimeout => &mut self.absolute_timeout,
            Close::WindowEnd => &mut self.window_end,
            Close::Evicted => &mut self.evicted,
            Close::Shutdown => &mut self.shutdown,
        };
        *c += 1;
    }

    pub fn total(&self) -> u64 {
        self.fin + self.rst + self.idle_timeout + self.absolute_timeout + self.window_end + self.evicted + self.shutdown
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowStats {
    /// Sessions begun.
    pub created: u64,
    /// Sessions open now.
    pub active: u64,
    pub ended: EndedCounts,
    /// Open sessions evicted to stay within `max_flows` (also in `ended.evicted`).
    pub evictions: u64,
    /// Closed flows dropped early to make room (no records: their session had already ended).
    pub closed_dropped: u64,
    /// Packets that arrived for a session already closed by FIN/RST (delivered as CC under its
    /// CIN, and counted in its counters).
    pub late_packets: u64,
    /// Frames that have no flow (non-IP, IP fragments): CC with CIN 0 where CC is in scope.
    pub cc_without_flow: u64,
    /// TCP reassembly: gaps, overlap conflicts, bytes held now and at peak, memory-bound flushes.
    pub tcp: ReassemblyStats,
    /// TCP segments refused: their checksum failed where their direction's checksums hold.
    pub checksum_refused: u64,
    /// TCP segments taken although no checksum vouched for them (see `flow::evidence`).
    pub unverified: u64,
}

impl FlowStats {
    /// Adds another worker's counters (peaks add up too: the most the workers could have
    /// held together).
    pub fn add(&mut self, o: &FlowStats) {
        self.created += o.created;
        self.active += o.active;
        let (e, f) = (&mut self.ended, &o.ended);
        e.fin += f.fin;
        e.rst += f.rst;
        e.idle_timeout += f.idle_timeout;
        e.absolute_timeout += f.absolute_timeout;
        e.window_end += f.window_end;
        e.evicted += f.evicted;
        e.shutdown += f.shutdown;
        self.evictions += o.evictions;
        self.closed_dropped += o.closed_dropped;
        self.late_packets += o.late_packets;
        self.cc_without_flow += o.cc_without_flow;
        let (t, u) = (&mut self.tcp, &o.tcp);
        t.buffered += u.buffered;
        t.buffered_peak += u.buffered_peak;
        t.gaps += u.gaps;
        t.gap_bytes += u.gap_bytes;
        t.overlap_conflicts += u.overlap_conflicts;
        t.duplicate_bytes += u.duplicate_bytes;
        t.bound_flushes += u.bound_flushes;
        t.out_of_window += u.out_of_window;
        t.history += u.history;
        t.history_peak += u.history_peak;
        t.uncompared_bytes += u.uncompared_bytes;
        self.checksum_refused += o.checksum_refused;
        self.unverified += o.unverified;
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    liid: Liid,
    zone: Option<u32>,
    proto: u8,
    /// The endpoints, lower first, so both directions find the same key.
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
}

const NIL: u32 = u32::MAX;
const LIST_TCP: usize = 0;
const LIST_OTHER: usize = 1;
const LIST_CLOSED: usize = 2;

#[derive(Copy, Clone, Debug)]
struct List {
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
}

struct Flow {
    key: FlowKey,
    cin: Cin,
    scope: Scope,
    provenance: Arc<Provenance>,
    descr: FlowDescr,
    /// The target's side (see [`FlowDescr::target_side`]).
    target: Dir,
    orig: (IpAddr, u16),
    first_seen: Timestamp,
    last_seen: Timestamp,
    next_interim: Timestamp,
    counters: Counters,
    /// Closed (lingering after FIN/RST, its `SessionEnd` not yet reported): why, and when.
    closed: Option<(Close, Timestamp)>,
    /// FIN seen per direction (used when there is no reassembly).
    fin_seen: [bool; 2],
    /// The peer acknowledged this direction's FIN: nothing before it will be retransmitted.
    fin_acked: [bool; 2],
    /// Per direction: do checksums hold, so that a failing one is refused?
    trust: [DirTrust; 2],
    /// TCP reassembly, for every TCP flow: with IRI only, analyzers still need the bytes.
    asm: Reassembly,
    /// The flow's analyzer; a TCP flow's is made with its assemblers ([`Reassembly`]).
    analyzer: Option<Box<dyn StreamAnalyzer>>,
    /// UDP: payload bytes handed to the analyzer so far per direction (each `data` call is one
    /// datagram, at this offset).
    datagram_offset: [u64; 2],
}

/// A flow's TCP reassembly.
enum Reassembly {
    /// Not TCP.
    None,
    /// TCP, and nothing but SYNs without payload seen so far: the sequence number of each
    /// direction's latest SYN. The assemblers and the analyzer (about 400 bytes on the heap)
    /// wait for a segment that needs them, so that a flood of SYNs costs a table slot per flow.
    Syn([Option<u32>; 2]),
    On(Box<[Assembler; 2]>),
}

impl Reassembly {
    /// The assemblers, made now if only SYNs were seen (each anchored on its SYN, as if it had
    /// been given it); `None` if not TCP.
    fn on(&mut self, limit: usize) -> Option<&mut [Assembler; 2]> {
        if let Reassembly::Syn(syns) = *self {
            let mut asm = Box::new([Assembler::new(limit), Assembler::new(limit)]);
            for (a, syn) in asm.iter_mut().zip(syns) {
                if let Some(seq) = syn {
                    a.syn(seq);
                }
            }
            *self = Reassembly::On(asm);
        }
        match self {
            Reassembly::On(asm) => Some(asm),
            _ => None,
        }
    }

    /// The assemblers, if made.
    fn made(&mut self) -> Option<&mut [Assembler; 2]> {
        match self {
            Reassembly::On(asm) => Some(asm),
            _ => None,
        }
    }

    /// Whether a SYN of direction `di` with sequence number `seq` starts a new attempt (see
    /// [`Assembler::is_new_attempt`]).
    fn is_new_attempt(&self, di: usize, seq: u32) -> bool {
        match self {
            Reassembly::None => false,
            // Nothing was handed on: another ISN is a new attempt.
            Reassembly::Syn(syns) => syns.get(di).copied().flatten().is_some_and(|s| s != seq),
            Reassembly::On(asm) => asm.get(di).is_some_and(|a| a.is_new_attempt(seq)),
        }
    }
}

/// The flow table's index: slot numbers, found by the key their flow holds. A `HashMap` keyed
/// by `FlowKey` would keep a second copy of every key (about 80 bytes a flow with its bucket);
/// this keeps 4 bytes and a control byte. Keys come from the wire, so the hash stays keyed
/// (`RandomState`): a flood of crafted addresses cannot make every key collide.
#[derive(Default)]
struct FlowIndex {
    table: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
}

fn key_of(slots: &[Slot], i: u32) -> Option<&FlowKey> {
    slots.get(i as usize).and_then(|s| s.flow.as_ref()).map(|f| &f.key)
}

impl FlowIndex {
    fn len(&self) -> usize {
        self.table.len()
    }

    fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    fn get(&self, key: &FlowKey, slots: &[Slot]) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        self.table.find(h, |&i| key_of(slots, i) == Some(key)).copied()
    }

    /// Indexes slot `i`, which holds the flow of `key` already.
    fn insert(&mut self, key: &FlowKey, i: u32, slots: &[Slot]) {
        let FlowIndex { table, hasher } = self;
        let rehash = |&j: &u32| key_of(slots, j).map_or(0, |k| hasher.hash_one(k));
        table.insert_unique(hasher.hash_one(key), i, rehash);
    }

    /// Forgets slot `i`, whose flow had `key` (the slot may be empty by now).
    fn remove(&mut self, key: &FlowKey, i: u32) {
        if let Ok(e) = self.table.find_entry(self.hasher.hash_one(key), |&j| j == i) {
            e.remove();
        }
    }
}

struct Slot {
    flow: Option<Flow>,
    prev: u32,
    next: u32,
    list: usize,
}

/// Makes the analyzer of a new TCP connection.
pub type AnalyzerFactory = Box<dyn Fn(&FlowDescr) -> Box<dyn StreamAnalyzer> + Send>;

/// The flows of one worker.
pub struct FlowTable {
    cfg: FlowConfig,
    analyzers: AnalyzerFactory,
    index: FlowIndex,
    slots: Vec<Slot>,
    free: Vec<u32>,
    lists: [List; 3],
    /// Where the CINs come from ([`FlowTable::set_numbers`]).
    numbers: Numbers,
    budget: Budget,
    stats: FlowStats,
    next_abs_scan: Timestamp,
    /// Connections announced by analyzers (FTP data channels).
    expect: Expectations,
}

/// Hands one reassembly event to the analyzer; a conflict goes out as IRI and into the
/// metadata of the objects its stream carries.
fn feed(analyzer: &mut Option<Box<dyn StreamAnalyzer>>, dir: Dir, e: Event<'_>, cx: &mut Cx<'_>) {
    match e {
        Event::Data { offset, bytes } => {
            if let Some(a) = analyzer.as_mut() {
                cx.files.stream_position(cx.cin, dir, offset, offset + bytes.len() as u64);
                a.data(dir, offset, bytes, cx);
            }
        }
        Event::Gap { offset, len } => {
            if let Some(a) = analyzer.as_mut() {
                cx.files.stream_position(cx.cin, dir, offset, offset.saturating_add(len));
                a.gap(dir, offset, len, cx);
            }
        }
        Event::Conflict(c) => {
            let conflict = WireConflict {
                direction: dir,
                from_target: cx.flow.target_side(cx.provenance) == dir,
                offset: c.offset,
                len: c.len,
                kind: c.kind,
                kept_sha256: c.kept.map(hex::encode),
                other_sha256: hex::encode(c.other),
            };
            cx.files.wire_conflict(cx.liid, cx.cin, &conflict);
            cx.sink.record(Record::Iri(IriRecord {
                liid: cx.liid.clone(),
                cin: Some(cx.cin),
                ts: cx.now,
                event: IriEvent::WireConflict(Box::new(conflict)),
                provenance: cx.provenance.clone(),
            }));
        }
    }
}

impl Flow {
    fn iri(&self, ts: Timestamp, event: IriEvent) -> Record<'static> {
        Record::Iri(IriRecord {
            liid: self.key.liid.clone(),
            cin: Some(self.cin),
            ts,
            event,
            provenance: self.provenance.clone(),
        })
    }

    /// Closes the session: flushes reassembly and closes the analyzer. Its end is reported by
    /// [`Flow::report_end`] when the flow leaves the table. False if it was closed already.
    fn close(
        &mut self,
        how: Close,
        now: Timestamp,
        budget: &mut Budget,
        expect: &mut Expectations,
        files: &mut FileLayer,
        sink: &mut dyn RecordSink,
    ) -> bool {
        if self.closed.is_some() {
            return false;
        }
        self.closed = Some((how, now));
        self.drive(now, files, expect, sink, |cx, asm, analyzer, _| {
            if let Some(asm) = asm.made() {
                for dir in [Dir::Orig, Dir::Resp] {
                    asm[dir.index()].close(budget, &mut |e| feed(analyzer, dir, e, &mut *cx));
                }
            }
            if let Some(mut a) = analyzer.take() {
                a.close(how, cx);
            }
        });
        true
    }

    /// Runs `f` with the analyzers' context of this flow (its scope's gate in front of `sink`),
    /// its reassembly, its analyzer and which FINs were acknowledged.
    fn drive<R>(
        &mut self,
        now: Timestamp,
        files: &mut FileLayer,
        expect: &mut Expectations,
        sink: &mut dyn RecordSink,
        f: impl FnOnce(&mut Cx<'_>, &mut Reassembly, &mut Option<Box<dyn StreamAnalyzer>>, &mut [bool; 2]) -> R,
    ) -> R {
        let Flow { key, cin, scope, provenance, descr, asm, analyzer, fin_acked, .. } = self;
        let mut gate = Gate::new(*scope, sink);
        let mut cx = Cx {
            now,
            liid: &key.liid,
            cin: *cin,
            flow: descr,
            provenance,
            scope: *scope,
            files,
            expect,
            sink: &mut gate,
        };
        f(&mut cx, asm, analyzer, fin_acked)
    }

    /// Reports the end of the closed session (`SessionEnd`, with its final counters), stamped
    /// with the time it closed.
    fn report_end(&mut self, sink: &mut dyn RecordSink) {
        let Some((reason, at)) = self.closed else { return };
        let mut gaps: [Vec<(u64, u64)>; 2] = Default::default();
        if let Reassembly::On(asm) = std::mem::replace(&mut self.asm, Reassembly::None) {
            for dir in [Dir::Orig, Dir::Resp] {
                gaps[dir.index()] = asm[dir.index()].gaps().to_vec();
                self.counters.conflicts[dir.index()] = asm[dir.index()].conflicts();
            }
        }
        let event = IriEvent::SessionEnd {
            flow: self.descr.clone(),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            counters: self.counters.clone(),
            reason,
            gaps,
        };
        Gate::new(self.scope, sink).record(self.iri(at, event));
        sink.record(Record::SessionClosed { liid: &self.key.liid, cin: self.cin, ts: at });
    }
}

/// The overlay as records describe it: VLAN ids and the tunnels the flow came through.
fn overlay_parts(overlay: &Overlay) -> (Vec<u16>, Vec<TunnelDescr>) {
    let tunnels = overlay
        .tunnels
        .iter()
        .map(|t| TunnelDescr { kind: t.kind, outer_src: t.outer_src, outer_dst: t.outer_dst, vni: t.vni })
        .collect();
    (overlay.vlans.to_vec(), tunnels)
}

impl FlowTable {
    pub fn new(cfg: FlowConfig, analyzers: AnalyzerFactory) -> FlowTable {
        let budget = Budget::new(cfg.global_buffer);
        FlowTable {
            cfg,
            analyzers,
            index: FlowIndex::default(),
            slots: Vec::new(),
            free: Vec::new(),
            lists: [List { head: NIL, tail: NIL }; 3],
            numbers: Numbers::default(),
            budget,
            stats: FlowStats::default(),
            next_abs_scan: Timestamp::MIN,
            expect: Expectations::default(),
        }
    }

    pub fn stats(&self) -> &FlowStats {
        &self.stats
    }

    /// Flows held (open and lingering).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    // ---- intrusive LRU lists over the slab ----

    fn unlink(&mut self, i: u32) {
        let Some(s) = self.slots.get(i as usize) else { return };
        let (prev, next, l) = (s.prev, s.next, s.list);
        match self.slots.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => self.lists[l].head = next,
        }
        match self.slots.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => self.lists[l].tail = prev,
        }
    }

    fn link_front(&mut self, i: u32, l: usize) {
        let head = self.lists[l].head;
        if let Some(s) = self.slots.get_mut(i as usize) {
            s.prev = NIL;
            s.next = head;
            s.list = l;
        }
        match self.slots.get_mut(head as usize) {
            Some(h) => h.prev = i,
            None => self.lists[l].tail = i,
        }
        self.lists[l].head = i;
    }

    fn touch(&mut self, i: u32, l: usize) {
        self.unlink(i);
        self.link_front(i, l);
    }

    fn flow_mut(&mut self, i: u32) -> Option<&mut Flow> {
        self.slots.get_mut(i as usize).and_then(|s| s.flow.as_mut())
    }

    /// Removes flow `i` from the table, reporting its session's end (it must be closed).
    fn remove(&mut self, i: u32, sink: &mut dyn RecordSink) {
        self.unlink(i);
        let Some(mut flow) = self.slots.get_mut(i as usize).and_then(|s| s.flow.take()) else { return };
        flow.report_end(sink);
        self.index.remove(&flow.key, i);
        self.free.push(i);
    }

    /// Closes flow `i`'s session with `how` (if still open); true if it was open.
    fn close(&mut self, i: u32, how: Close, now: Timestamp, files: &mut FileLayer, sink: &mut dyn RecordSink) -> bool {
        let FlowTable { slots, budget, stats, expect, .. } = self;
        let Some(flow) = slots.get_mut(i as usize).and_then(|s| s.flow.as_mut()) else { return false };
        let closed = flow.close(how, now, budget, expect, files, sink);
        if closed {
            stats.ended.count(how);
            stats.active = stats.active.saturating_sub(1);
        }
        closed
    }

    /// Ends flow `i`'s session (if open) with `how`, then removes it.
    fn end_and_remove(&mut self, i: u32, how: Close, now: Timestamp, files: &mut FileLayer, sink: &mut dyn RecordSink) {
        self.close(i, how, now, files, sink);
        self.remove(i, sink);
        self.sync_stats();
    }

    /// Ends flow `i`'s session by FIN or RST and keeps it, closed, for late packets.
    fn end_and_linger(&mut self, i: u32, how: Close, now: Timestamp, files: &mut FileLayer, sink: &mut dyn RecordSink) {
        self.close(i, how, now, files, sink);
        self.touch(i, LIST_CLOSED);
        self.sync_stats();
    }

    /// Makes flow `i`'s assemblers and analyzer if only SYNs came so far (see [`Reassembly`]).
    /// An open TCP flow without an analyzer is one whose analyzer was not made yet (a refused
    /// segment can make the assemblers alone).
    fn make_reassembly(&mut self, i: u32) {
        let FlowTable { slots, analyzers, cfg, .. } = self;
        let Some(flow) = slots.get_mut(i as usize).and_then(|s| s.flow.as_mut()) else { return };
        if matches!(flow.asm, Reassembly::None) || flow.closed.is_some() {
            return;
        }
        flow.asm.on(cfg.per_direction_buffer);
        if flow.analyzer.is_none() {
            flow.analyzer = Some(analyzers(&flow.descr));
        }
    }

    fn sync_stats(&mut self) {
        self.stats.tcp = self.budget.stats;
    }

    /// Makes room for one more flow: drops the oldest closed flow, or evicts the least recently
    /// used open one.
    fn make_room(&mut self, now: Timestamp, files: &mut FileLayer, sink: &mut dyn RecordSink) {
        let max = self.cfg.max_flows.max(1);
        while self.index.len() >= max {
            let closed = self.lists[LIST_CLOSED].tail;
            if closed != NIL {
                self.remove(closed, sink);
                self.stats.closed_dropped += 1;
                continue;
            }
            let last_seen = |t: &FlowTable, i: u32| {
                t.slots.get(i as usize).and_then(|s| s.flow.as_ref()).map_or(Timestamp::MAX, |f| f.last_seen)
            };
            let (a, b) = (self.lists[LIST_TCP].tail, self.lists[LIST_OTHER].tail);
            let victim = match (a, b) {
                (NIL, NIL) => return,
                (NIL, b) => b,
                (a, NIL) => a,
                (a, b) if last_seen(self, b) < last_seen(self, a) => b,
                (a, _) => a,
            };
            self.stats.evictions += 1;
            self.end_and_remove(victim, Close::Evicted, now, files, sink);
        }
    }

    /// A CIN of `liid` for a communication that is no flow (an image's inspection): numbered
    /// with the LIID's sessions, so that it is never one of theirs.
    pub fn new_cin(&mut self, liid: &Liid) -> Cin {
        self.next_cin(liid)
    }

    fn next_cin(&mut self, liid: &Liid) -> Cin {
        self.numbers.cin(liid)
    }

    /// Numbers the sessions from `numbers` (a worker's slot: [`Numbers::slot`]).
    pub fn set_numbers(&mut self, numbers: Numbers) {
        self.numbers = numbers;
    }

    /// Opens a new session for `key` with `orig` as originator.
    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        key: FlowKey,
        orig: (IpAddr, u16),
        m: &Match,
        d: &Decoded<'_>,
        now: Timestamp,
        files: &mut FileLayer,
        sink: &mut dyn RecordSink,
    ) -> u32 {
        self.make_room(now, files, sink);
        let cin = self.next_cin(&key.liid);
        let resp = if orig == key.lo { key.hi } else { key.lo };
        let (vlans, tunnels) = overlay_parts(&d.overlay);
        let descr = FlowDescr {
            proto: FlowDescr::proto_name(key.proto),
            orig: SocketAddr::new(orig.0, orig.1),
            resp: SocketAddr::new(resp.0, resp.1),
            vlans,
            tunnels,
        };
        let tcp = key.proto == 6;
        let udp = key.proto == 17;
        // A connection an analyzer announced is claimed now; a TCP flow's own analyzer is made
        // with its assemblers, at its first segment past the SYNs.
        let claimed = if tcp || udp { self.expect.claim(&key.liid, &descr, now) } else { None };
        let analyzer = match claimed {
            Some(a) => Some(a),
            None if udp => Some((self.analyzers)(&descr)),
            None => None,
        };
        let asm = if tcp { Reassembly::Syn([None; 2]) } else { Reassembly::None };
        let target = descr.target_side(&m.provenance);
        let flow = Flow {
            key: key.clone(),
            cin,
            scope: m.scope,
            provenance: m.provenance.clone(),
            descr,
            target,
            orig,
            first_seen: now,
            last_seen: now,
            next_interim: self.cfg.interim_ns.map_or(Timestamp::MAX, |iv| now.add_nanos(iv)),
            counters: Counters::default(),
            closed: None,
            fin_seen: [false; 2],
            fin_acked: [false; 2],
            trust: Default::default(),
            asm,
            analyzer,
            datagram_offset: [0; 2],
        };
        Gate::new(m.scope, sink)
            .record(flow.iri(now, IriEvent::SessionBegin { flow: flow.descr.clone(), first_seen: now }));
        let slot = Slot { flow: Some(flow), prev: NIL, next: NIL, list: LIST_OTHER };
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = slot;
                }
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.link_front(i, if tcp { LIST_TCP } else { LIST_OTHER });
        self.index.insert(&key, i, &self.slots);
        self.stats.created += 1;
        self.stats.active += 1;
        i
    }

    /// One target packet on behalf of one LIID (a packet matching two LIIDs is given twice: each
    /// LIID has its own flow state, CINs and records).
    pub fn packet(
        &mut self,
        m: &Match,
        frame: &Frame<'_>,
        d: &Decoded<'_>,
        files: &mut FileLayer,
        sink: &mut dyn RecordSink,
    ) {
        let now = frame.ts;
        let interim = self.cfg.interim_ns.unwrap_or(i64::MAX);
        let Some(ip) = d.ip else { return self.cc_without_flow(m, frame, sink) };
        let (sport, dport) = match d.transport {
            Transport::Tcp(t) => (t.src_port, t.dst_port),
            Transport::Udp { src_port, dst_port } => (src_port, dst_port),
            Transport::Icmp { .. } | Transport::Icmpv6 { .. } | Transport::Other => (0, 0),
            Transport::Fragment | Transport::None => return self.cc_without_flow(m, frame, sink),
        };
        let tcp = match d.transport {
            Transport::Tcp(t) => Some(t),
            _ => None,
        };
        let src = (ip.src, sport);
        let dst = (ip.dst, dport);
        let (lo, hi) = if src <= dst { (src, dst) } else { (dst, src) };
        let key = FlowKey { liid: m.liid.clone(), zone: d.overlay.vni(), proto: ip.proto, lo, hi };
        let flags = tcp.map_or(0, |t| t.flags);
        let syn = flags & tcp_flags::SYN != 0;
        let ack = flags & tcp_flags::ACK != 0;

        // Find the session, ending it first if it is over.
        let mut orig_hint = None;
        let mut found = self.index.get(&key, &self.slots);
        if let Some(i) = found {
            let (closed, first_seen, orig) = match self.flow_mut(i) {
                Some(f) => (f.closed.is_some(), f.first_seen, f.orig),
                None => (false, now, src),
            };
            // A SYN, or a SYN-ACK, on a closed flow is a new handshake on the same 4-tuple
            // (suricata-verify bug-3286: an RST before the SYN-ACK, then the real connection).
            if closed && syn {
                self.remove(i, sink);
                found = None;
            } else if !closed && now.nanos().saturating_sub(first_seen.nanos()) >= self.cfg.absolute_ns {
                self.end_and_remove(i, Close::AbsoluteTimeout, now, files, sink);
                orig_hint = Some(orig);
                found = None;
            }
        }
        let i = match found {
            Some(i) => i,
            None => {
                let orig = match orig_hint {
                    Some(o) => o,
                    // A SYN-ACK seen first comes from the responder.
                    None if syn && ack => dst,
                    None => src,
                };
                self.create(key, orig, m, d, now, files, sink)
            }
        };

        let Some(flow) = self.flow_mut(i) else { return };
        let dir = if src == flow.orig { Dir::Orig } else { Dir::Resp };
        let mut gate = Gate::new(flow.scope, sink);
        gate.record(Record::Cc(CcRecord {
            liid: &flow.key.liid,
            cin: flow.cin,
            ts: now,
            link: frame.link,
            data: frame.data,
            orig_len: frame.orig_len,
            dir: Some(dir),
            target: Some(flow.target),
        }));
        flow.last_seen = now;
        let di = dir.index();
        flow.counters.packets[di] += 1;
        flow.counters.bytes[di] += u64::from(ip.len);
        flow.counters.payload[di] += u64::from(ip.payload_len);
        if flow.closed.is_some() {
            self.stats.late_packets += 1;
            self.touch(i, LIST_CLOSED);
            return;
        }
        if now >= flow.next_interim {
            let event = IriEvent::SessionContinue {
                flow: flow.descr.clone(),
                first_seen: flow.first_seen,
                counters: flow.counters.clone(),
            };
            gate.record(flow.iri(now, event));
            flow.next_interim = now.add_nanos(interim);
        }
        let list = if tcp.is_some() { LIST_TCP } else { LIST_OTHER };
        self.touch(i, list);

        let Some(t) = tcp else {
            if matches!(d.transport, Transport::Udp { .. }) && !d.payload.is_empty() {
                self.datagram(i, dir, d.payload, now, files, sink);
            }
            return;
        };
        if !self.accepted(i, di, syn, t, d, now, files, sink) {
            return;
        }
        if flags & tcp_flags::RST != 0 {
            self.end_and_linger(i, Close::Rst, now, files, sink);
            return;
        }
        let fin = flags & tcp_flags::FIN != 0;
        if !syn || !d.payload.is_empty() || fin {
            self.make_reassembly(i);
        }
        let FlowTable { slots, budget, expect, .. } = self;
        let Some(flow) = slots.get_mut(i as usize).and_then(|s| s.flow.as_mut()) else { return };
        if fin {
            flow.fin_seen[di] = true;
        }
        if let Reassembly::Syn(syns) = &mut flow.asm {
            // A bare SYN (or SYN-ACK): its sequence number is all there is to keep. The latest
            // anchors the stream, as the assembler would (a new attempt replaces the old).
            if let Some(s) = syns.get_mut(di) {
                *s = Some(t.seq);
            }
            self.sync_stats();
            return;
        }
        let done = if matches!(flow.asm, Reassembly::None) {
            flow.fin_seen[0] && flow.fin_seen[1]
        } else {
            flow.drive(now, files, expect, sink, |cx, asm, analyzer, fin_acked| {
                let Some(asm) = asm.made() else { return false };
                let mut emit = |e: Event<'_>| feed(analyzer, dir, e, &mut *cx);
                let a = &mut asm[di];
                if syn {
                    a.syn(t.seq);
                    if !d.payload.is_empty() || fin {
                        a.segment(t.seq.wrapping_add(1), d.payload, fin, budget, &mut emit);
                    }
                } else {
                    a.segment(t.seq, d.payload, fin, budget, &mut emit);
                }
                let peer = 1 - di;
                if ack {
                    asm[peer].ack(t.ack, budget);
                    if asm[peer].fin_acked(t.ack) {
                        fin_acked[peer] = true;
                    }
                }
                let done = |k: usize| asm[k].is_complete() || (asm[k].fin_offset().is_some() && fin_acked[k]);
                done(0) && done(1)
            })
        };
        if done {
            self.end_and_linger(i, Close::Fin, now, files, sink);
        } else {
            self.sync_stats();
        }
    }

    /// One UDP datagram of flow `i` to its analyzer, whole: datagram protocols (RTP, MPEG-TS
    /// over UDP) are framed by the datagram.
    fn datagram(
        &mut self,
        i: u32,
        dir: Dir,
        payload: &[u8],
        now: Timestamp,
        files: &mut FileLayer,
        sink: &mut dyn RecordSink,
    ) {
        let FlowTable { slots, expect, .. } = self;
        let Some(flow) = slots.get_mut(i as usize).and_then(|s| s.flow.as_mut()) else { return };
        let offset = flow.datagram_offset[dir.index()];
        flow.datagram_offset[dir.index()] = offset.saturating_add(payload.len() as u64);
        flow.drive(now, files, expect, sink, |cx, _, analyzer, _| {
            if let Some(a) = analyzer.as_mut() {
                a.data(dir, offset, payload, cx);
            }
        });
    }

    /// Whether the receiver accepted this segment of flow `i` (see [`super::evidence`]). A
    /// refused one is counted, and its bytes compared with the accepted ones, nothing more: its
    /// flags (a RST, a FIN) and its bytes are as if never sent.
    #[allow(clippy::too_many_arguments)]
    fn accepted(
        &mut self,
        i: u32,
        di: usize,
        syn: bool,
        t: crate::decode::TcpInfo,
        d: &Decoded<'_>,
        now: Timestamp,
        files: &mut FileLayer,
        sink: &mut dyn RecordSink,
    ) -> bool {
        let FlowTable { slots, budget, expect, cfg, .. } = self;
        let Some(flow) = slots.get_mut(i as usize).and_then(|s| s.flow.as_mut()) else { return false };
        let new_attempt = syn && flow.asm.is_new_attempt(di, t.seq);
        if let (true, Some(trust)) = (new_attempt, flow.trust.get_mut(di)) {
            trust.new_attempt();
        }
        let verdict = match (cfg.checksums, flow.trust.get_mut(di)) {
            (ChecksumValidation::Off, _) => Verdict::Accept,
            (ChecksumValidation::Auto, Some(trust)) => trust.judge(d.checksum(), d.payload.len(), syn),
            (ChecksumValidation::Auto, None) => Verdict::AcceptUnverified,
        };
        match verdict {
            Verdict::Accept => {}
            Verdict::AcceptUnverified => {
                flow.counters.unverified[di] += 1;
                self.stats.unverified += 1;
            }
            Verdict::Refuse => {
                flow.counters.checksum_failed[di] += 1;
                self.stats.checksum_refused += 1;
                let dir = if di == 0 { Dir::Orig } else { Dir::Resp };
                let limit = cfg.per_direction_buffer;
                flow.drive(now, files, expect, sink, |cx, asm, analyzer, _| {
                    if let Some(a) = asm.on(limit).and_then(|a| a.get_mut(di)) {
                        a.refused(t.seq, d.payload, syn, budget, &mut |e| feed(analyzer, dir, e, &mut *cx));
                    }
                });
                self.sync_stats();
                return false;
            }
        }
        if let (true, Some(mss), Some(peer)) = (syn, t.mss, flow.trust.get_mut(1 - di)) {
            peer.peer_mss(mss);
        }
        true
    }

    fn cc_without_flow(&mut self, m: &Match, frame: &Frame<'_>, sink: &mut dyn RecordSink) {
        self.stats.cc_without_flow += 1;
        Gate::new(m.scope, sink).record(Record::Cc(CcRecord {
            liid: &m.liid,
            cin: Cin::NONE,
            ts: frame.ts,
            link: frame.link,
            data: frame.data,
            orig_len: frame.orig_len,
            dir: None,
            target: None,
        }));
    }

    /// Expire flows idle past their timeout or older than absolute_ns (emit session end, close
    /// analyzers). Call with a monotonically advancing now (packet time in replay).
    pub fn tick(&mut self, now: Timestamp, files: &mut FileLayer, sink: &mut dyn RecordSink) {
        self.expect.expire(now);
        let linger = CLOSED_LINGER_NS.min(self.cfg.tcp_idle_ns);
        for (l, idle) in [(LIST_TCP, self.cfg.tcp_idle_ns), (LIST_OTHER, self.cfg.udp_idle_ns), (LIST_CLOSED, linger)] {
            loop {
                let i = self.lists[l].tail;
                let Some(f) = self.slots.get(i as usize).and_then(|s| s.flow.as_ref()) else { break };
                if f.last_seen.add_nanos(idle) > now {
                    break;
                }
                if l == LIST_CLOSED {
                    self.remove(i, sink);
                } else {
                    self.end_and_remove(i, Close::IdleTimeout, now, files, sink);
                }
            }
        }
        if now >= self.next_abs_scan {
            self.next_abs_scan = now.add_nanos((self.cfg.absolute_ns / 16).max(1));
            let abs = self.cfg.absolute_ns;
            let overdue: Vec<u32> = (0..self.slots.len() as u32)
                .filter(|&i| {
                    self.slots
                        .get(i as usize)
                        .and_then(|s| s.flow.as_ref())
                        .is_some_and(|f| f.closed.is_none() && now.nanos().saturating_sub(f.first_seen.nanos()) >= abs)
                })
                .collect();
            for i in overdue {
                self.end_and_remove(i, Close::AbsoluteTimeout, now, files, sink);
            }
        }
    }

    /// End every flow of `liid` (its window ended or the warrant was removed), reason
    /// `Close::WindowEnd`.
    pub fn end_liid(&mut self, liid: &Liid, now: Timestamp, files: &mut FileLayer, sink: &mut dyn RecordSink) {
        let mine: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| self.slots.get(i as usize).and_then(|s| s.flow.as_ref()).is_some_and(|f| f.key.liid == *liid))
            .collect();
        for i in mine {
            self.end_and_remove(i, Close::WindowEnd, now, files, sink);
        }
    }

    /// The timeouts and bounds this table was made with.
    pub fn config(&self) -> &FlowConfig {
        &self.cfg
    }

    /// Announced connections (FTP data channels) and what became of them.
    pub fn expectations(&self) -> &Expectations {
        &self.expect
    }

    /// End everything (`Close::Shutdown`), e.g. end of replay.
    pub fn finish(&mut self, now: Timestamp, files: &mut FileLayer, sink: &mut dyn RecordSink) {
        for i in 0..self.slots.len() as u32 {
            if self.slots.get(i as usize).is_some_and(|s| s.flow.is_some()) {
                self.end_and_remove(i, Close::Shutdown, now, files, sink);
            }
        }
    }
}
