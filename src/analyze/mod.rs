//! Protocol analyzers: one file each, one trait for all.
//!
//! The flow layer hands every analyzer the ordered bytes of each direction of a TCP connection,
//! with holes said out loud (`gap`) and an end (`close`). Analyzers never see packets, sockets or
//! files; they emit [`Record`](crate::record::Record)s and hand content to the file layer through
//! [`Cx`].

pub mod detect;
pub mod ftp;
pub mod harness;
pub mod http;
pub mod mpegts;
pub mod rtmp;
pub mod rtp;
pub mod rtsp;
pub mod sip;
pub mod smtp;
pub mod stream;
pub mod tls;
pub mod udp;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::content::{Ended, FileLayer};
use crate::record::{
    AppEvent, Cin, Close, Dir, FlowDescr, IriEvent, IriRecord, Liid, ObjectId, ObjectMeta, Provenance, Record,
    RecordSink, Scope,
};
use crate::timestamp::Timestamp;

/// What an analyzer may use while handling one event: who the flow belongs to, the time, and
/// where its output goes.
pub struct Cx<'s> {
    pub now: Timestamp,
    pub liid: &'s Liid,
    pub cin: Cin,
    pub flow: &'s FlowDescr,
    pub provenance: &'s Arc<Provenance>,
    /// What the warrant is entitled to. Analyzers emit everything they know whatever it is;
    /// `sink` is the scope's [`Gate`](crate::record::Gate), which alone decides what passes.
    pub scope: Scope,
    pub files: &'s mut FileLayer,
    /// Connections announced by this one (FTP data channels), for the flow layer to claim.
    pub expect: &'s mut Expectations,
    pub sink: &'s mut dyn RecordSink,
}

impl Cx<'_> {
    /// Starts a content object of this flow's LIID (see [`FileLayer::open`]).
    pub fn open_object(&mut self, meta: ObjectMeta) -> ObjectId {
        let prov = self.provenance;
        self.files.open(meta, self.liid, prov, self.sink)
    }

    /// Starts an object whose selector is not this flow's (an FTP transfer opened by its control
    /// connection).
    pub fn open_object_as(&mut self, meta: ObjectMeta, provenance: &Arc<Provenance>) -> ObjectId {
        self.files.open(meta, self.liid, provenance, self.sink)
    }

    pub fn object_data(&mut self, id: ObjectId, offset: u64, bytes: &[u8]) {
        self.files.data(self.liid, id, offset, bytes, self.now, self.sink);
    }

    pub fn object_gap(&mut self, id: ObjectId, offset: u64, len: u64) {
        self.files.gap(self.liid, id, offset, len, self.now, self.sink);
    }

    /// Ends object `id`; its digests, size and completeness, for the IRI that names it.
    pub fn object_end(&mut self, id: ObjectId, seen_end: bool) -> Option<Ended> {
        self.files.end(self.liid, id, seen_end, self.now, self.sink)
    }

    pub fn object_meta(&mut self, id: ObjectId) -> Option<&mut ObjectMeta> {
        self.files.meta_mut(self.liid, id)
    }

    /// Adds `key` to object `id`'s context (what its IRI says of it), before it ends.
    pub fn object_context(&mut self, id: ObjectId, key: &str, value: serde_json::Value) {
        if let Some(m) = self.object_meta(id) {
            if !m.context.is_object() {
                m.context = serde_json::json!({});
            }
            m.context[key] = value;
        }
    }

    /// Emits an application event as IRI of session `cin` (this flow's, or the control
    /// connection's for an FTP transfer).
    pub fn emit_app(&mut self, cin: Cin, protocol: &'static str, event: impl AppIri) {
        self.sink.record(Record::Iri(IriRecord {
            liid: self.liid.clone(),
            cin: Some(cin),
            ts: self.now,
            event: IriEvent::App(AppEvent::new(protocol, event)),
            provenance: self.provenance.clone(),
        }));
    }
}

/// What an analyzer's event type must be to travel as an [`AppEvent`].
pub trait AppIri: serde::Serialize + std::fmt::Debug + Send + Sync + 'static {}
impl<T: serde::Serialize + std::fmt::Debug + Send + Sync + 'static> AppIri for T {}

/// Receives one TCP connection's bytes, per direction, in order; or one UDP flow's datagrams,
/// one per `data` call (the offset counts the payload bytes before it), never a `gap`.
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

/// Makes the analyzer of an expected connection.
pub type MakeAnalyzer = Box<dyn FnOnce(&FlowDescr) -> Box<dyn StreamAnalyzer> + Send>;

/// Where an announced connection will go: its responder's address and port, within one LIID
/// and one overlay zone (tenant addresses repeat across VNIs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExpectKey {
    pub liid: Liid,
    pub zone: Option<u32>,
    pub addr: IpAddr,
    pub port: u16,
}

struct Expectation {
    expires: Timestamp,
    make: MakeAnalyzer,
}

/// Connections that an analyzer announced (FTP PASV/EPSV/PORT/EPRT), waiting to be opened
/// (Zeek's expected connections). Entries expire, and their number is capped so that a hostile
/// control channel cannot grow the table.
pub struct Expectations {
    entries: HashMap<ExpectKey, Expectation>,
    cap: usize,
    /// Announcements refused because the table was full.
    pub refused: u64,
    /// Announcements that expired unclaimed.
    pub expired: u64,
    /// Connections that found their expectation.
    pub claimed: u64,
}

impl Default for Expectations {
    fn default() -> Self {
        Expectations::new(4096)
    }
}

impl Expectations {
    pub fn new(cap: usize) -> Expectations {
        Expectations { entries: HashMap::new(), cap, refused: 0, expired: 0, claimed: 0 }
    }

    /// The zone of a flow: the innermost tunnel's VNI/key, if any.
    pub fn zone_of(flow: &FlowDescr) -> Option<u32> {
        flow.tunnels.iter().rev().find_map(|t| t.vni)
    }

    /// Announces that a connection to `key` will come before `expires`; the connection gets the
    /// analyzer `make` builds. A newer announcement for the same key replaces the older one.
    /// Returns false (and counts it) when the table is full.
    pub fn expect(&mut self, key: ExpectKey, expires: Timestamp, make: MakeAnalyzer) -> bool {
        if self.entries.len() >= self.cap && !self.entries.contains_key(&key) {
            self.refused += 1;
            return false;
        }
        self.entries.insert(key, Expectation { expires, make });
        true
    }

    /// The analyzer for a new connection of `liid` whose responder is `flow.resp`, if one was
    /// announced and has not expired.
    pub fn claim(&mut self, liid: &Liid, flow: &FlowDescr, now: Timestamp) -> Option<Box<dyn StreamAnalyzer>> {
        if self.entries.is_empty() {
            return None;
        }
        let key =
            ExpectKey { liid: liid.clone(), zone: Self::zone_of(flow), addr: flow.resp.ip(), port: flow.resp.port() };
        let e = self.entries.remove(&key)?;
        if e.expires <= now {
            self.expired += 1;
            return None;
        }
        self.claimed += 1;
        Some((e.make)(flow))
    }

    /// Drops announcements whose time has passed.
    pub fn expire(&mut self, now: Timestamp) {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.expires > now);
        self.expired += (before - self.entries.len()) as u64;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
