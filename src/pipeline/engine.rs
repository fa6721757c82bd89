//! What a run hands its frames to: one [`Pipeline`], or several workers over a share of the
//! flows each ([`Sharded`]). `tapir replay` and `tapir run` drive either the same way, with
//! the [`Recorder`] after it.

use super::shard::{self, Sharded};
use super::{Pipeline, Recorder, Summary};
use crate::capture::Frame;
use crate::content::ContentLimits;
use crate::flow::FlowStats;
use crate::record::RecordSink;
use crate::select::{AssocEvent, Warrant};
use crate::timestamp::Timestamp;
use crate::vmi::intake::Intake;

/// One pipeline, or several workers (see the module documentation).
pub enum Engine {
    One(Box<Pipeline>),
    Sharded(Box<Sharded>),
}

/// The counters of a finished run.
pub struct Totals {
    pub summary: Summary,
    pub flows: FlowStats,
    pub objects: u64,
}

impl Engine {
    /// One worker for each of `pipelines` (one: the plain pipeline).
    pub fn start(mut pipelines: Vec<Pipeline>) -> std::io::Result<Engine> {
        if pipelines.len() > 1 {
            return Ok(Engine::Sharded(Box::new(Sharded::start(pipelines)?)));
        }
        let p = pipelines.pop().ok_or_else(|| std::io::Error::other("no pipeline"))?;
        Ok(Engine::One(Box::new(p)))
    }

    /// The record stage after this engine: inspections numbered with the one pipeline's
    /// sessions, or from a slot of their own after several workers.
    pub fn recorder(&self, warrants: &[Warrant], limits: ContentLimits, intake: Option<Intake>) -> Recorder {
        let numbers = match self {
            Engine::One(p) => p.numbers(),
            Engine::Sharded(s) => shard::recorder_numbers(s.workers()),
        };
        Recorder::new(warrants, numbers, limits, intake)
    }

    /// One captured frame.
    pub fn frame(&mut self, f: &Frame<'_>, recorder: &mut Recorder, sink: &mut dyn RecordSink) {
        match self {
            Engine::One(p) => {
                recorder.due(f.ts, sink);
                p.frame(f, &mut recorder.sink(sink));
            }
            Engine::Sharded(s) => s.frame(f, recorder, sink),
        }
    }

    /// Capture time moves on without a frame (a quiet live link).
    pub fn advance(&mut self, now: Timestamp, recorder: &mut Recorder, sink: &mut dyn RecordSink) {
        match self {
            Engine::One(p) => p.advance(now, &mut recorder.sink(sink)),
            Engine::Sharded(s) => s.advance(now, recorder, sink),
        }
    }

    /// Records what the workers hold back (a live daemon's timer); nothing for one pipeline,
    /// which records as it goes.
    pub fn flush(&mut self, recorder: &mut Recorder, sink: &mut dyn RecordSink) {
        if let Engine::Sharded(s) = self {
            s.flush(recorder, sink);
        }
    }

    /// A damaged region of a capture.
    pub fn damage(&mut self, what: String) {
        match self {
            Engine::One(p) => p.damage(what),
            Engine::Sharded(s) => s.damage(what),
        }
    }

    /// Frames taken so far.
    pub fn frames(&self) -> u64 {
        match self {
            Engine::One(p) => p.summary.frames,
            Engine::Sharded(s) => s.frames(),
        }
    }

    /// Capture time so far.
    pub fn now(&self) -> Timestamp {
        match self {
            Engine::One(p) => p.now(),
            Engine::Sharded(s) => s.now(),
        }
    }

    /// An association event from a live feed.
    pub fn push_event(&mut self, ev: AssocEvent) {
        match self {
            Engine::One(p) => p.push_event(ev),
            Engine::Sharded(s) => s.push_event(ev),
        }
    }

    /// A daemon's reload ([`Pipeline::set_warrants`]).
    pub fn set_warrants(&mut self, warrants: Vec<Warrant>, recorder: &mut Recorder, sink: &mut dyn RecordSink) {
        recorder.set_warrants(&warrants);
        match self {
            Engine::One(p) => p.set_warrants(warrants, &mut recorder.sink(sink)),
            Engine::Sharded(s) => s.set_warrants(warrants),
        }
    }

    /// The warrants in force.
    pub fn warrants(&self) -> &[Warrant] {
        match self {
            Engine::One(p) => p.warrants(),
            Engine::Sharded(s) => s.warrants(),
        }
    }

    /// See [`Pipeline::keep_radius_events`].
    pub fn keep_radius_events(&mut self, keep: bool) {
        match self {
            Engine::One(p) => p.keep_radius_events(keep),
            Engine::Sharded(s) => s.keep_radius_events(keep),
        }
    }

    /// See [`Pipeline::take_radius_events`].
    pub fn take_radius_events(&mut self) -> Vec<AssocEvent> {
        match self {
            Engine::One(p) => p.take_radius_events(),
            Engine::Sharded(s) => s.take_radius_events(),
        }
    }

    /// The counters so far (a sharded run's as of its last merged epoch).
    pub fn summary(&self) -> Summary {
        match self {
            Engine::One(p) => p.summary.clone(),
            Engine::Sharded(s) => s.summary(),
        }
    }

    /// The flow counters so far.
    pub fn flow_stats(&self) -> FlowStats {
        match self {
            Engine::One(p) => p.flows().stats().clone(),
            Engine::Sharded(s) => s.flow_stats(),
        }
    }

    /// Objects finished so far.
    pub fn objects_finished(&self) -> u64 {
        match self {
            Engine::One(p) => p.objects_finished(),
            Engine::Sharded(s) => s.objects_finished(),
        }
    }

    /// Starts of open access sessions dropped over the cap of held events (worker 0's: each
    /// drops the same).
    pub fn association_events_dropped(&self) -> u64 {
        match self {
            Engine::One(p) => p.summary.association_events_dropped,
            Engine::Sharded(s) => s.association_events_dropped(),
        }
    }

    /// Association events held (per worker: each holds the same).
    pub fn association_events_held(&self) -> usize {
        match self {
            Engine::One(p) => p.association_events_held(),
            Engine::Sharded(s) => s.association_events_held(),
        }
    }

    /// End of input: every flow ended, everything recorded.
    pub fn finish(self, recorder: &mut Recorder, sink: &mut dyn RecordSink) -> Totals {
        match self {
            Engine::One(mut p) => {
                p.finish(&mut recorder.sink(sink));
                let flows = p.flows().stats().clone();
                let objects = p.objects_finished();
                Totals { summary: p.summary, flows, objects }
            }
            Engine::Sharded(s) => (*s).finish(recorder, sink),
        }
    }
}
