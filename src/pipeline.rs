//! The replay pipeline: one frame at a time through decode -> select -> flow, records out.
//!
//! [`Pipeline`] is sans-I/O: it is handed frames (with their capture time, which is `now`) and a
//! [`RecordSink`], and never touches files or the clock. `replay` in the CLI wires it to capture
//! files and the case writer; live capture will wire the same pipeline to a ring.
//!
//! Time-driven work happens as capture time passes: identity-association events whose time has
//! come are applied before the frame that follows them, a warrant whose window has closed has its
//! flows ended at its end time, and idle flows expire. Each warrant's entering into and leaving
//! force is itself an IRI record (`IriEvent::Warrant`), which delivery sends as HI1.

use std::collections::BTreeMap;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::analyze::detect::Detect;
use crate::capture::Frame;
use crate::content::FileLayer;
use crate::decode::{DecodeConfig, Decoder, Transport};
use crate::flow::{FlowConfig, FlowTable};
use crate::record::{IriEvent, IriRecord, Record, RecordSink};
use crate::select::lifecycle::{Lifecycle, Notice};
use crate::select::{AssocChange, AssocEvent, Liid, Match, Provenance, Targeting, Warrant};
use crate::timestamp::Timestamp;

/// How often (capture time) flows are checked for timeouts.
const TICK_NS: i64 = 1_000_000_000;

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
    /// Capture-file damage, one line each (file, offset, what).
    pub capture_damage: Vec<String>,
    pub association_events: u64,
    /// Association events learnt from RADIUS Accounting-Requests seen on the tap.
    pub radius_events: u64,
}

/// UDP ports of RADIUS accounting: 1813 (RFC 2866) and the historical 1646.
const RADIUS_ACCT_PORTS: [u16; 2] = [1813, 1646];

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
    flows: FlowTable,
    files: FileLayer,
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
        Pipeline {
            decoder: Decoder::new(decode),
            targeting: Targeting::new(warrants),
            events,
            next_event: 0,
            flows: FlowTable::new(flow, Box::new(|_| Box::new(Detect::new()))),
            files: FileLayer::new(),
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
        self.lifecycle.advance(now, &mut self.notices);
        self.emit_notices(sink);
        while let Some(ev) = self.events.get(self.next_event) {
            if ev.ts > now {
                break;
            }
            self.next_event += 1;
            self.summary.association_events += 1;
            let changes = self.targeting.apply(ev);
            self.emit_changes(changes, sink);
        }
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
    fn emit_changes(&mut self, changes: Vec<AssocChange>, sink: &mut dyn RecordSink) {
        for c in changes {
            let Some(w) = self.targeting.warrants().iter().find(|w| w.liid == c.liid) else { continue };
            if !w.scope.iri() || c.ts < w.start || c.ts >= w.end {
                continue;
            }
            sink.record(Record::Iri(IriRecord {
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
        if let Transport::Udp { src_port, dst_port } = d.transport {
            if RADIUS_ACCT_PORTS.contains(&src_port) || RADIUS_ACCT_PORTS.contains(&dst_port) {
                radius(
                    d.payload,
                    frame.ts,
                    &mut self.events,
                    self.next_event,
                    &mut self.summary,
                    self.keep_radius.then_some(&mut self.radius_out),
                );
            }
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

    /// A damaged region of a capture file (counted, reported, not fatal).
    pub fn damage(&mut self, what: String) {
        self.summary.capture_damage.push(what);
    }

    /// End of input: remaining association events are applied (they are part of the record even
    /// after the last packet) and every flow is ended at the last capture time.
    pub fn finish(&mut self, sink: &mut dyn RecordSink) {
        let now = self.now;
        self.flows.finish(now, &mut self.files, sink);
        while let Some(ev) = self.events.get(self.next_event) {
            self.next_event += 1;
            self.summary.association_events += 1;
            let changes = self.targeting.apply(ev);
            self.emit_changes(changes, sink);
        }
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
