//! Protocol analyzers: one file each, one trait for all.
//!
//! The flow layer hands every analyzer the ordered bytes of each direction of a TCP connection,
//! with holes said out loud (`gap`) and an end (`close`). Analyzers never see packets, sockets or
//! files; they emit [`Record`](crate::record::Record)s and hand content to the file layer through
//! [`Cx`].

pub mod stream;

use crate::content::FileLayer;
use crate::record::{Close, Dir, FlowDescr, RecordSink};
use crate::select::{Liid, Provenance};
use crate::timestamp::Timestamp;
use std::sync::Arc;

/// What an analyzer may use while handling one event: who the flow belongs to, the time, and
/// where its output goes.
pub struct Cx<'s> {
    pub now: Timestamp,
    pub liid: &'s Liid,
    pub cin: u64,
    pub flow: &'s FlowDescr,
    pub provenance: &'s Arc<Provenance>,
    pub files: &'s mut FileLayer,
    pub sink: &'s mut dyn RecordSink,
}

/// Receives one TCP connection's bytes, per direction, in order.
pub trait StreamAnalyzer: Send {
    /// `bytes` start at stream `offset` (0 = first byte after the SYN, or the first byte seen
    /// for a flow caught mid-stream). Offsets of successive calls in one direction are contiguous
    /// except where a `gap` call came in between.
    fn data(&mut self, dir: Dir, offset: u64, bytes: &[u8], cx: &mut Cx);
    /// `len` bytes at `offset` of direction `dir` were never seen (loss, or a memory bound hit).
    fn gap(&mut self, dir: Dir, offset: u64, len: u64, cx: &mut Cx);
    /// The connection ended; no more calls follow.
    fn close(&mut self, how: Close, cx: &mut Cx);
}
