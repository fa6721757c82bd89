//! The replay pipeline: one frame at a time through decode -> select -> flow, records out.
//!
//! [`Pipeline`] is sans-I/O: it is handed frames (with their capture time, which is `now`) and a
//! [`RecordSink`], and never touches files or the clock. The daemon's loop (`tapir run`, which
//! `tapir replay` runs too) hands it capture files or rings, through an [`Engine`] (one
//! pipeline, or sharded workers), into the outputs (`crate::deliver::outputs`).
//!
//! Time-driven work happens as capture time passes: identity-association events whose time has
//! come are applied before the frame that follows them, a warrant whose window has closed has its
//! flows ended at its end time, and idle flows expire. Each warrant's entering into and leaving
//! force is itself an IRI record (`IriEvent::Warrant`), which delivery sends as HI1.

mod announced;
mod engine;
mod fragments;
mod links;
mod recorder;
pub mod shard;

pub use announced::RouteStats;
pub use engine::{Engine, Totals};
pub use fragments::FragmentStats;
pub use recorder::Recorder;

use std::collections::BTreeMap;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::analyze::detect::Detect;
use crate::capture::Frame;
use crate::content::FileLayer;
use crate::decode::{DecodeConfig, Decoder, Transport};
use crate::flow::{FlowConfig, FlowTable};
use crate::record::{Gate, IriEvent, IriRecord, Numbers, Record, RecordSink};
use crate::select::association;
use crate::select::lifecycle::{Lifecycle, Notice};
use crate::select::{AssocChange, AssocEvent, AssocEventKind, EventError, Liid, Match, Provenance, Targeting, Warrant};
use crate::timestamp::Timestamp;

/// How often (capture time) flows are checked for timeouts.
const TICK_NS: i64 = 1_000_000_000;

/// A damaged region of an input: what it was, and the capture time reached when it was met (the
/// traffic around that time may be missing from every warrant's case).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// Capture time of the last frame before the damage (none before the first frame).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Timestamp>,
    /// Which input and what, e.g. `ftp.pcap: capture damaged at byte 4096: ...`.
    pub what: String,
}

/// Counters for the closing summary.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub frames: u64,
    /// Captured bytes of all frames.
    pub bytes: u64,
    /// Frames that matched at least one warrant.
    pub matched_frames: u64,
    /// Frames matched, per LIID.
    pub matched: BTreeMap<Liid, u64>,
    pub decode_errors: BTreeMap<String, u64>,
    /// Capture-file damage, one each (file, offset, what), with the capture time reached.
    pub capture_damage: Vec<Damage>,
    pub association_events: u64,
    /// Association events learnt from RADIUS Accounting-Requests seen on the tap.
    pub radius_events: u64,
    /// Applied association events no longer kept, since forgetting them changes nothing
    /// ([`crate::select::association::forgettable`]).
    pub association_events_forgotten: u64,
    /// Starts of open access sessions dropped because more events were held than the cap
    /// ([`Pipeline::limit_held_events`]); a reload does not see those sessions until their next
    /// Interim-Update.
    pub association_events_dropped: u64,
    /// What the sharded dispatch kept with the flow that announced it ([`announced`]; zero
    /// with one pipeline, which needs no dispatch).
    pub announced_routes: RouteStats,
    /// Where the sharded dispatch sent IP fragments ([`fragments`]; zero with one pipeline).
    pub fragment_routes: FragmentStats,
}

/// Applied association events kept before the first forgetting pass; after it, a pass runs
/// when the applied part has doubled, so the cost per event stays constant.
const FORGET_FROM: usize = 4096;

/// Applied association events held at most, by default: about 340 MB at the 1.3 kB an event
/// was measured to take (`bench/radius_churn.sh`). Past it only a reload's view of the oldest
/// open sessions is lost (until their next Interim-Update), never the selector table, so the
/// cap errs on the side of memory.
pub const MAX_HELD_EVENTS: usize = 1 << 18;

/// UDP ports of RADIUS accounting: 1813 (RFC 2866) and the historical 1646.
const RADIUS_ACCT_PORTS: [u16; 2] = [1813, 1646];

/// Whether a transport is UDP to or from a RADIUS accounting port.
fn is_radius(t: &Transport) -> bool {
    matches!(t, Transport::Udp { src_port, dst_port }
        if RADIUS_ACCT_PORTS.contains(src_port) || RADIUS_ACCT_PORTS.contains(dst_port))
}

/// Association events read as they fall due, in time order (a replay's associations file).
pub type EventFeed = Box<dyn Iterator<Item = Result<AssocEvent, EventError>> + Send>;

/// Events taken from the feed at a time: pending events stay few whatever the feed holds.
const FEED_BATCH: usize = 1024;

/// `ev` into the pending part (from `next`) of `events`, after those with the same or an
/// earlier time.
fn insert_event(events: &mut Vec<AssocEvent>, next: usize, ev: AssocEvent) {
    let pending = events.get(next..).unwrap_or(&[]);
    let at = next + pending.partition_point(|e| e.ts <= ev.ts);
    events.insert(at, ev);
}

pub struct Pipeline {
    decoder: Decoder,
    targeting: Targeting,
    events: Vec<AssocEvent>,
    next_event: usize,
    /// More events, read as they fall due ([`Pipeline::set_event_feed`]).
    feed: Option<std::iter::Peekable<EventFeed>>,
    /// Whether applied events are kept for a reload ([`Pipeline::keep_applied_events`]).
    keep_applied: bool,
    /// The applied part's length at which the next forgetting pass runs.
    next_forget_at: usize,
    held_cap: usize,
    flows: FlowTable,
    files: FileLayer,
    /// Where sessions and objects are numbered (shared by `flows` and `files`).
    numbers: Numbers,
    /// (end, LIID) of every warrant, by end time; `next_end` is the first not yet passed.
    ends: Vec<(Timestamp, Liid)>,
    next_end: usize,
    lifecycle: Lifecycle,
    notices: Vec<Notice>,
    /// The provenance of warrant notices: the warrant itself, no selector.
    warrant_provenance: Arc<Provenance>,
    last_tick: Option<Timestamp>,
    now: Timestamp,
    matches: SmallVec<[Match; 2]>,
    /// RADIUS-learnt events not yet taken by [`Pipeline::take_radius_events`] (kept only when
    /// [`Pipeline::keep_radius_events`] asked for them).
    radius_out: Vec<AssocEvent>,
    keep_radius: bool,
    /// Whether this pipeline emits what every worker knows alike: warrant notices and
    /// association IRI (one worker of a sharded run does: [`Pipeline::set_shard`]).
    emits_shared: bool,
    pub summary: Summary,
}

impl Pipeline {
    /// `events` need not be sorted: they are applied in time order (stable for equal times).
    pub fn new(
        warrants: Vec<Warrant>,
        mut events: Vec<AssocEvent>,
        decode: DecodeConfig,
        flow: FlowConfig,
    ) -> Pipeline {
        events.sort_by_key(|e| e.ts);
        let mut ends: Vec<(Timestamp, Liid)> = warrants.iter().map(|w| (w.end, w.liid.clone())).collect();
        ends.sort();
        let lifecycle = Lifecycle::new(&warrants);
        let mut files = FileLayer::with_limits(flow.content);
        let numbers = Numbers::default();
        files.set_numbers(numbers.clone());
        let mut flows = FlowTable::new(
            flow,
            Box::new(|d| match &*d.proto {
                "udp" => crate::analyze::udp::analyzer(),
                _ => Box::new(Detect::new()),
            }),
        );
        flows.set_numbers(numbers.clone());
        Pipeline {
            decoder: Decoder::new(decode),
            targeting: Targeting::new(warrants),
            events,
            next_event: 0,
            feed: None,
            keep_applied: true,
            next_forget_at: FORGET_FROM,
            held_cap: MAX_HELD_EVENTS,
            files,
            flows,
            numbers,
            ends,
            next_end: 0,
            lifecycle,
            notices: Vec::new(),
            warrant_provenance: Arc::new(Provenance {
                selector: String::new(),
                target: "warrant".into(),
                chain: Vec::new(),
            }),
            last_tick: None,
            now: Timestamp::MIN,
            matches: SmallVec::new(),
            radius_out: Vec::new(),
            keep_radius: false,
            emits_shared: true,
            summary: Summary::default(),
        }
    }

    /// Moves capture time forward to `now`: events due are applied, closed windows end their
    /// flows, idle flows expire.
    pub fn advance(&mut self, now: Timestamp, sink: &mut dyn RecordSink) {
        if now > self.now {
            self.now = now;
        }
        let now = self.now;
        self.apply_due(now, sink);
        self.lifecycle.advance(now, &mut self.notices);
        self.emit_notices(sink);
        while let Some((end, liid)) = self.ends.get(self.next_end) {
            if *end > now {
                break;
            }
            self.flows.end_liid(liid, *end, &mut self.files, sink);
            self.next_end += 1;
        }
        let due = match self.last_tick {
            None => true,
            Some(t) => now.nanos().saturating_sub(t.nanos()) >= TICK_NS,
        };
        if due {
            self.last_tick = Some(now);
            self.flows.tick(now, &mut self.files, sink);
        }
    }

    fn emit_notices(&mut self, sink: &mut dyn RecordSink) {
        if !self.emits_shared {
            self.notices.clear();
            return;
        }
        for n in self.notices.drain(..) {
            sink.record(Record::Iri(IriRecord {
                liid: n.liid,
                cin: None,
                ts: n.ts,
                event: IriEvent::Warrant { op: n.op, start: n.start, end: n.end },
                provenance: self.warrant_provenance.clone(),
            }));
        }
    }

    /// Association changes become IRI for the warrants they concern, inside their windows.
    /// What they link to (the upload an `image.create` names, the crontab plan of a VM
    /// started) is added by the record stage ([`Recorder`]), which sees every worker's records.
    fn emit_changes(&mut self, changes: Vec<AssocChange>, sink: &mut dyn RecordSink) {
        if !self.emits_shared {
            return;
        }
        for c in changes {
            let Some(w) = self.targeting.warrants().iter().find(|w| w.liid == c.liid) else { continue };
            if c.ts < w.start || c.ts >= w.end {
                continue;
            }
            Gate::new(w.scope, sink).record(Record::Iri(IriRecord {
                liid: c.liid,
                cin: None,
                ts: c.ts,
                event: IriEvent::Association {
                    what: c.what,
                    detail: c.detail,
                    selectors_added: c.selectors_added,
                    selectors_removed: c.selectors_removed,
                },
                provenance: c.provenance,
            }));
        }
    }

    /// One captured frame.
    pub fn frame(&mut self, frame: &Frame<'_>, sink: &mut dyn RecordSink) {
        self.advance(frame.ts, sink);
        self.summary.frames += 1;
        self.summary.bytes += frame.data.len() as u64;
        let d = match self.decoder.decode(frame) {
            Ok(d) => d,
            Err(e) => {
                *self.summary.decode_errors.entry(e.kind()).or_insert(0) += 1;
                return;
            }
        };
        if is_radius(&d.transport) {
            radius(
                d.payload,
                frame.ts,
                &mut self.events,
                self.next_event,
                &mut self.summary,
                self.keep_radius.then_some(&mut self.radius_out),
            );
        }
        self.matches.clear();
        self.targeting.select(&d, frame.ts, &mut self.matches);
        if self.matches.is_empty() {
            // Minimisation: nothing of a non-target frame goes further.
            return;
        }
        self.summary.matched_frames += 1;
        for m in &self.matches {
            match self.summary.matched.get_mut(&m.liid) {
                Some(n) => *n += 1,
                None => {
                    self.summary.matched.insert(m.liid.clone(), 1);
                }
            }
            self.flows.packet(m, frame, &d, &mut self.files, sink);
        }
    }

    /// Makes this pipeline worker `index` of a sharded run ([`shard`]): its sessions and
    /// objects are numbered from `numbers` (the worker's slot), and only worker 0 emits what
    /// every worker knows alike (warrant notices, association IRI); the others apply the same
    /// association events to their own selector tables, silently.
    pub fn set_shard(&mut self, index: usize, numbers: Numbers) {
        self.emits_shared = index == 0;
        self.flows.set_numbers(numbers.clone());
        self.files.set_numbers(numbers.clone());
        self.numbers = numbers;
    }

    /// Where this pipeline numbers sessions and objects: what the [`Recorder`] of a one-worker
    /// run shares, so that an inspection's CIN is the next of the LIID's.
    pub fn numbers(&self) -> Numbers {
        self.numbers.clone()
    }

    /// A RADIUS accounting frame another worker selects and analyzes: only the association
    /// events it teaches are taken, so that every worker's selector table moves at the same
    /// packet time. Nothing is counted but those events.
    pub fn learn_radius(&mut self, frame: &Frame<'_>, sink: &mut dyn RecordSink) {
        self.advance(frame.ts, sink);
        let Ok(d) = self.decoder.decode(frame) else { return };
        if is_radius(&d.transport) {
            let mut scratch = Summary::default();
            let keep = self.keep_radius.then_some(&mut self.radius_out);
            radius(d.payload, frame.ts, &mut self.events, self.next_event, &mut scratch, keep);
            self.summary.radius_events += scratch.radius_events;
        }
    }

    /// A damaged region of a capture file (counted, reported, not fatal).
    pub fn damage(&mut self, what: String) {
        let after = (self.now != Timestamp::MIN).then_some(self.now);
        self.summary.capture_damage.push(Damage { after, what });
    }

    /// End of input: remaining association events are applied (they are part of the record even
    /// after the last packet) and every flow is ended at the last capture time.
    pub fn finish(&mut self, sink: &mut dyn RecordSink) {
        let now = self.now;
        self.flows.finish(now, &mut self.files, sink);
        self.apply_due(Timestamp::MAX, sink);
    }

    /// Applies the association events due by `until`, pending and from the feed, in time order.
    fn apply_due(&mut self, until: Timestamp, sink: &mut dyn RecordSink) {
        loop {
            self.pull_feed(until);
            while let Some(ts) = self.events.get(self.next_event).map(|e| e.ts) {
                if ts > until {
                    break;
                }
                // A warrant enters force no later than the first record it gets: an association
                // event older than this frame comes first.
                self.lifecycle.advance(ts, &mut self.notices);
                self.emit_notices(sink);
                let Some(ev) = self.events.get(self.next_event) else { break };
                self.next_event += 1;
                self.summary.association_events += 1;
                let changes = self.targeting.apply(ev);
                self.emit_changes(changes, sink);
                if self.next_event >= self.next_forget_at {
                    self.forget_settled_events();
                }
            }
            if !self.feed_due(until) {
                break;
            }
        }
    }

    /// Moves up to [`FEED_BATCH`] feed events due by `until` into the pending events.
    fn pull_feed(&mut self, until: Timestamp) {
        let Some(feed) = self.feed.as_mut() else { return };
        for _ in 0..FEED_BATCH {
            if matches!(feed.peek(), Some(Ok(ev)) if ev.ts > until) {
                break;
            }
            match feed.next() {
                Some(Ok(ev)) => insert_event(&mut self.events, self.next_event, ev),
                Some(Err(e)) => {
                    let after = (self.now != Timestamp::MIN).then_some(self.now);
                    self.summary.capture_damage.push(Damage { after, what: format!("associations file: {e}") });
                }
                None => break,
            }
        }
    }

    /// Whether the feed has an event (or an error) due by `until`.
    fn feed_due(&mut self, until: Timestamp) -> bool {
        match self.feed.as_mut().and_then(|f| f.peek()) {
            Some(Ok(ev)) => ev.ts <= until,
            Some(Err(_)) => true,
            None => false,
        }
    }

    /// Events to apply as they fall due, read from `feed` only then, so that a long associations
    /// file costs memory for what is pending, not for its length. The feed must be in time order
    /// ([`crate::select::EventFile::in_time_order`]); an event older than capture time is applied
    /// at once, late.
    pub fn set_event_feed(&mut self, feed: EventFeed) {
        self.feed = Some(feed.peekable());
    }

    /// Whether applied events are kept so that [`Pipeline::set_warrants`] can apply them again
    /// (a daemon's reload; the default). A replay never reloads and need not hold them.
    pub fn keep_applied_events(&mut self, keep: bool) {
        self.keep_applied = keep;
    }

    /// Capture time so far (the latest `now` seen).
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The warrants in force.
    pub fn warrants(&self) -> &[Warrant] {
        self.targeting.warrants()
    }

    /// Replaces the warrants without losing flows (a daemon's reload).
    ///
    /// Flows of warrants that are unchanged go on. A warrant that is gone, or whose definition
    /// changed, has its flows ended now (`WindowEnd`), so what follows is selected under the new
    /// definition only. The association events applied so far are applied again to the new
    /// selector table, silently (their IRI was emitted when they happened), so a new warrant on
    /// `subscriber:joe` finds joe's current sessions and VMs at once.
    pub fn set_warrants(&mut self, warrants: Vec<Warrant>, sink: &mut dyn RecordSink) {
        let now = self.now;
        let same = |a: &Warrant, b: &Warrant| {
            a.liid == b.liid
                && a.start == b.start
                && a.end == b.end
                && a.scope == b.scope
                && a.targets == b.targets
                && a.lea == b.lea
        };
        let gone: Vec<Liid> = self
            .targeting
            .warrants()
            .iter()
            .filter(|old| !warrants.iter().any(|new| same(old, new)))
            .map(|old| old.liid.clone())
            .collect();
        for liid in &gone {
            self.flows.end_liid(liid, now, &mut self.files, sink);
        }
        // HI1: new warrants in force are activated, changed ones modified, vanished ones
        // deactivated, now.
        self.lifecycle.replace(&warrants, now, &mut self.notices);
        self.emit_notices(sink);
        let mut targeting = Targeting::new(warrants);
        for ev in self.events.get(..self.next_event).unwrap_or(&[]) {
            let _ = targeting.apply(ev);
        }
        self.targeting = targeting;
        let mut ends: Vec<(Timestamp, Liid)> =
            self.targeting.warrants().iter().map(|w| (w.end, w.liid.clone())).collect();
        ends.sort();
        // Ends already passed were either handled before (same warrant) or just now (changed).
        self.next_end = ends.partition_point(|(end, _)| *end <= now);
        self.ends = ends;
    }

    /// Drops applied events whose absence changes nothing when they are applied again (a
    /// reload): ended access sessions and repeated starts. Past the cap, open sessions' starts
    /// too, those of subscribers no warrant names first ([`association::over_cap`]); the
    /// selector table keeps every session it holds. Pending events are not touched.
    fn forget_settled_events(&mut self) {
        if !self.keep_applied {
            self.events.drain(..self.next_event);
            self.next_event = 0;
            self.plan_next_forget();
            return;
        }
        let applied = self.events.get(..self.next_event).unwrap_or(&[]);
        let refs: Vec<&AssocEvent> = applied.iter().collect();
        let mut forget = association::forgettable(&refs, Timestamp::MAX);
        let forgotten = forget.iter().filter(|f| **f).count();
        let targeting = &self.targeting;
        let dropped = association::over_cap(&refs, &mut forget, self.held_cap, |ev| match &ev.kind {
            AssocEventKind::AccessStart { subscriber, .. } => !targeting.names_subscriber(subscriber),
            _ => false,
        });
        if forgotten + dropped > 0 {
            let mut i = 0usize;
            self.events.retain(|_| {
                let keep = !forget.get(i).copied().unwrap_or(false);
                i += 1;
                keep
            });
            self.next_event -= forgotten + dropped;
            self.summary.association_events_forgotten += forgotten as u64;
            self.summary.association_events_dropped += dropped as u64;
        }
        self.plan_next_forget();
    }

    /// The next pass when the applied part has doubled (constant cost per event), or reaches
    /// the cap; past the cap with nothing left to drop, only when it has doubled.
    fn plan_next_forget(&mut self) {
        let doubled = FORGET_FROM.max(2 * self.next_event);
        self.next_forget_at = if self.next_event < self.held_cap { doubled.min(self.held_cap) } else { doubled };
    }

    /// At most `n` applied association events are held (default [`MAX_HELD_EVENTS`]).
    pub fn limit_held_events(&mut self, n: usize) {
        self.held_cap = n.max(16);
        self.plan_next_forget();
    }

    /// Association events held: applied ones still needed for a reload, and pending ones.
    pub fn association_events_held(&self) -> usize {
        self.events.len()
    }

    /// An identity-association event arriving while running (a live feed). It is applied in
    /// time order with the others; one already due is applied at the next `advance`.
    pub fn push_event(&mut self, ev: AssocEvent) {
        insert_event(&mut self.events, self.next_event, ev);
    }

    /// Keep the events learnt from RADIUS for [`Pipeline::take_radius_events`] (a daemon that
    /// journals them); off by default, so a replay does not accumulate them.
    pub fn keep_radius_events(&mut self, keep: bool) {
        self.keep_radius = keep;
        if !keep {
            self.radius_out = Vec::new();
        }
    }

    /// The events learnt from RADIUS accounting since the last call, in capture order (they
    /// are already scheduled in the pipeline; the caller persists them).
    pub fn take_radius_events(&mut self) -> Vec<AssocEvent> {
        std::mem::take(&mut self.radius_out)
    }

    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    pub fn objects_finished(&self) -> u64 {
        self.files.finished
    }
}

/// A UDP payload to or from a RADIUS accounting port: an Accounting-Request becomes association
/// events at `ts`, scheduled like [`Pipeline::push_event`] (applied at the next advance, before
/// the next frame). Anything else (responses, other codes) costs a header check and nothing more.
fn radius(
    payload: &[u8],
    ts: Timestamp,
    events: &mut Vec<AssocEvent>,
    next: usize,
    summary: &mut Summary,
    keep: Option<&mut Vec<AssocEvent>>,
) {
    let rec = match crate::select::radius::parse_accounting(payload) {
        Ok(Some(rec)) => rec,
        Ok(None) => return,
        Err(_) => {
            *summary.decode_errors.entry("malformed-radius".to_string()).or_insert(0) += 1;
            return;
        }
    };
    let evs = crate::select::radius::assoc_events(&rec, ts);
    summary.radius_events += evs.len() as u64;
    if let Some(k) = keep {
        k.extend(evs.iter().cloned());
    }
    for ev in evs {
        insert_event(events, next, ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::LinkType;
    use crate::record::VecSink;
    use crate::select::parse_warrants;

    /// 2027-01-15T08:00:00Z plus `ms`.
    fn at(ms: i64) -> Timestamp {
        Timestamp::from_secs(1_800_000_000).add_nanos(ms * 1_000_000)
    }

    /// Ethernet/IPv4/UDP (IPv4 checksum left zero: the decoder does not need it).
    fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = (28 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    /// RFC 2866 Accounting-Request (code 4) or Response (code 5): User-Name "joe",
    /// Framed-IP-Address 10.1.0.1, Acct-Status-Type `status`.
    fn radius(code: u8, status: u8) -> Vec<u8> {
        let attrs = [&[1u8, 5, b'j', b'o', b'e'][..], &[8, 6, 10, 1, 0, 1], &[40, 6, 0, 0, 0, status]].concat();
        let len = (20 + attrs.len()) as u16;
        [&[code, 9, (len >> 8) as u8, len as u8][..], &[0; 16], &attrs].concat()
    }

    fn pipeline() -> Pipeline {
        let w = parse_warrants(
            "[[warrant]]\nliid = \"L\"\nstart = \"2027-01-01T00:00:00Z\"\nend = \"2027-02-01T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [\"subscriber:joe\"]\n",
            "t",
        )
        .unwrap();
        Pipeline::new(w.warrants, Vec::new(), DecodeConfig::default(), FlowConfig::default())
    }

    fn feed(p: &mut Pipeline, sink: &mut VecSink, ms: i64, data: &[u8]) {
        let f = Frame { ts: at(ms), link: LinkType::Ethernet, data, orig_len: data.len() as u32 };
        p.frame(&f, sink);
    }

    #[test]
    fn radius_accounting_starts_and_stops_selection_in_time_order() {
        let mut p = pipeline();
        p.keep_radius_events(true);
        let mut sink = VecSink::default();
        let joe = udp([10, 1, 0, 1], [10, 2, 0, 1], 4000, 5000, b"x");
        let nas = [10, 8, 0, 1];
        let server = [10, 8, 0, 2];
        feed(&mut p, &mut sink, 0, &joe);
        // A response from port 1646 and a request to 1813 with a broken attribute: nothing learnt.
        feed(&mut p, &mut sink, 10, &udp(server, nas, 1646, 32000, &radius(5, 1)));
        let mut bad = radius(4, 1);
        bad[21] = 60;
        feed(&mut p, &mut sink, 20, &udp(nas, server, 32000, 1813, &bad));
        feed(&mut p, &mut sink, 100, &udp(nas, server, 32000, 1813, &radius(4, 1)));
        feed(&mut p, &mut sink, 200, &joe);
        feed(&mut p, &mut sink, 300, &joe);
        feed(&mut p, &mut sink, 400, &udp(nas, server, 32000, 1646, &radius(4, 2)));
        feed(&mut p, &mut sink, 500, &joe);
        // Port 1813 on another protocol's packet that is not RADIUS at all: counted as malformed.
        feed(&mut p, &mut sink, 600, &udp(nas, server, 1813, 1813, b"no"));
        assert_eq!(p.summary.radius_events, 2);
        assert_eq!(p.summary.matched.get("L").copied(), Some(2));
        assert_eq!(p.summary.decode_errors.get("malformed-radius").copied(), Some(2));
        let learnt = p.take_radius_events();
        assert_eq!(learnt.len(), 2);
        assert_eq!((learnt[0].ts, learnt[1].ts), (at(100), at(400)));
        assert!(learnt[0].raw.to_string().contains("access.start"));
        assert!(learnt[1].raw.to_string().contains("access.stop"));
        assert!(p.take_radius_events().is_empty());
        let cc: Vec<Timestamp> = sink.cc.iter().map(|c| c.2).collect();
        assert_eq!(cc, vec![at(200), at(300)]);
    }

    #[test]
    fn radius_events_are_not_kept_unless_asked() {
        let mut p = pipeline();
        let mut sink = VecSink::default();
        feed(&mut p, &mut sink, 100, &udp([10, 8, 0, 1], [10, 8, 0, 2], 32000, 1813, &radius(4, 1)));
        assert_eq!(p.summary.radius_events, 1);
        assert!(p.take_radius_events().is_empty());
    }

    #[test]
    fn a_warrant_is_activated_no_later_than_the_first_record_it_gets() {
        // joe's access session starts (feed) an hour before his first packet is seen.
        let w = parse_warrants(
            "[[warrant]]\nliid = \"L\"\nstart = \"2027-01-01T00:00:00Z\"\nend = \"2027-02-01T00:00:00Z\"\nscope = \"iri\"\ntargets = [\"subscriber:joe\"]\n",
            "t",
        )
        .unwrap();
        let start = at(-3_600_000).to_rfc3339();
        let ev = crate::select::parse_event(
            &format!(r#"{{"time":"{start}","event":"access.start","subscriber":"joe","ip":"10.1.0.1"}}"#),
            "feed",
            1,
        )
        .unwrap();
        let mut p = Pipeline::new(w.warrants, vec![ev], DecodeConfig::default(), FlowConfig::default());
        let mut sink = VecSink::default();
        feed(&mut p, &mut sink, 0, &udp([10, 1, 0, 1], [10, 2, 0, 1], 4000, 5000, b"x"));
        let kinds: Vec<(String, Timestamp)> = sink
            .iri
            .iter()
            .map(|r| (serde_json::to_value(r).unwrap()["event"].as_str().unwrap().to_string(), r.ts))
            .collect();
        assert_eq!(kinds.first().map(|k| k.0.as_str()), Some("warrant"), "{kinds:?}");
        assert_eq!(kinds[1], ("association".to_string(), at(-3_600_000)));
        // Activated when its first record happened, not at the later first packet.
        assert!(kinds.iter().all(|(_, ts)| *ts >= kinds[0].1), "{kinds:?}");
        assert_eq!(kinds[0].1, at(-3_600_000));
    }
}
