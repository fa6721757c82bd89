//! Records to X2/X3 PDUs on a POI, and back to records on the MDF: both sans-I/O.
//!
//! | record | PDU | payload format | payload |
//! |---|---|---|---|
//! | CC frame with an IP packet inside | X3 | IPv4 / IPv6 packet (5, 6) | the innermost IP packet, as HI3 IPCC carries it |
//! | CC frame without IP (ARP...) on Ethernet | X3 | Ethernet frame (7) | the frame |
//! | object begins, bytes, gap, ends; a session's close | X3 | proprietary (4) | a tapir part ([`Part`]) |
//! | IRI (session, application, association, warrant, object IRI) | X2 | proprietary (4) | a tapir part: the record as JSON |
//!
//! Why a proprietary payload for X2: the MDF must rebuild the record whole, as the all-in-one
//! case writer and HI2 encoder see it (provenance, the application event's own fields, object
//! digests), and TS 102 232-1 or TS 33.128 payloads would either lose what tapir's national
//! HI2 parameters carry or fix the LEA's module version on the POI. The JSON is the case's
//! own (`iri.jsonl`), without the LIID and the CIN, which the XID and correlation ID carry.
//!
//! Every PDU has the XID of the record's warrant, the correlation ID (the POI's CIN of the
//! session; zero outside a session), the sequence number (from 0 per XID and correlation ID),
//! the record's timestamp, the POI's name (Interception Point ID) and, first, tapir's stream
//! position ([`POSITION`]): where the PDU starts in the POI's durable stream to this MDF, which
//! only grows, across reconnects and restarts, and is how the MDF recognises a resend.
//!
//! The MDF numbers sessions and objects itself, per LIID, as the all-in-one does: a CIN per
//! (POI, XID, correlation ID), an object id per (POI, object id) at first sight. A POI numbers
//! its objects in a range of its own (`[node] object_range` in the top 16 bits,
//! `Numbers::set_object_range`), so that where its records cite an object (an FTP event's
//! upload, an attachment's mail, an inspection's image: numbers under the keys `object`,
//! `parent` and `id`) the MDF can tell the citation from any other number, which it never
//! touches, and renumber it. Sessions are cited by CIN under `data_cin` and `control_cin` (an
//! FTP transfer's data and control connections): those are renumbered too.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;

use super::events::app_event_from_json;
use super::pdu::{encode, Attribute, Header, PayloadDirection, PayloadFormat, PduError, PduType, PduView, Xid};
use crate::deliver::etsi::inner_ip_packet;
use crate::record::{
    Cin, Close, Counters, Dir, FlowDescr, IriEvent, IriRecord, Liid, LinkType, Numbers, ObjectId, ObjectMeta,
    ObjectRecord, Provenance, Record, RecordSink, Scope, WarrantOp, WireConflict,
};
use crate::timestamp::Timestamp;

/// The least object id a POI gives (object range 1 and up, in the top 16 bits).
const POI_RANGED: u64 = 1 << 48;

/// Notices an MDF remembers to deliver each once (a bound on what a POI can make it keep).
const MAX_NOTICES: usize = 4096;

/// Object bytes per PDU: a large upload crosses in pieces a receiver can bound, each PDU
/// within one TCP segment of a loopback or jumbo-frame link.
pub const OBJECT_CHUNK: usize = 32 << 10;

/// The first octets of every tapir proprietary payload, then the part's kind.
const MAGIC: &[u8; 3] = b"TPR";

/// The stream position attribute: a proprietary attribute (type 4) of 12 octets, `TPR`, 0x01,
/// then the position (8 octets). Always the first attribute, so that the sender can write the
/// position into an encoded PDU at [`POSITION`] once it knows where the PDU goes.
const POSITION_TAG: &[u8; 4] = b"TPR\x01";
/// Where the position's 8 octets are in every PDU a [`PoiEncoder`] writes.
pub const POSITION: std::ops::Range<usize> = 48..56;

/// What a proprietary payload holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Part {
    /// An IRI record as JSON.
    Iri = 1,
    /// An object begins: id (8 octets), then its metadata as JSON.
    ObjectBegin = 2,
    /// Object bytes: id, offset (8 octets each), then the bytes.
    ObjectData = 3,
    /// Bytes never seen: id, offset, length (8 octets each).
    ObjectGap = 4,
    /// An object ends: id (8 octets), then its record as JSON.
    ObjectEnd = 5,
    /// The session of the correlation ID is over.
    SessionClosed = 6,
}

impl Part {
    fn from_code(c: u8) -> Option<Part> {
        Some(match c {
            1 => Part::Iri,
            2 => Part::ObjectBegin,
            3 => Part::ObjectData,
            4 => Part::ObjectGap,
            5 => Part::ObjectEnd,
            6 => Part::SessionClosed,
            _ => return None,
        })
    }
}

/// What a POI's encoder could not send, and what it sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoiCounts {
    pub x2: u64,
    pub x3: u64,
    /// Records of a LIID without an XID here (a warrant withdrawn while its records drained).
    pub no_xid: u64,
    /// CC frames with neither an IP packet nor an Ethernet frame to send.
    pub cc_not_sendable: u64,
    /// Records that would not encode (a JSON or size error).
    pub encode_errors: u64,
}

/// The XID of each warrant in force, shared with whoever reloads the warrants.
pub type Xids = Arc<std::sync::RwLock<HashMap<Liid, Xid>>>;

/// A POI's side: records in, PDUs appended to a buffer (the caller's spool).
pub struct PoiEncoder {
    xids: Xids,
    /// The Interception Point ID attribute, when configured.
    ipid: Option<Vec<u8>>,
    /// The next sequence number per (XID, correlation ID); a session's is dropped at its close.
    seqs: HashMap<(Xid, u64), u32>,
    /// The latest record time: the timestamp of what has none of its own (object bytes).
    last_ts: Timestamp,
    /// Each open object's direction, which its bytes' PDUs carry too.
    object_dirs: HashMap<(Liid, ObjectId), PayloadDirection>,
    pub counts: PoiCounts,
    scratch: Vec<u8>,
}

impl PoiEncoder {
    /// Every PDU has a stream position of 0 until the sender sets it ([`set_position`]).
    pub fn new(xids: HashMap<Liid, Xid>, ipid: Option<&str>) -> PoiEncoder {
        PoiEncoder {
            xids: Arc::new(std::sync::RwLock::new(xids)),
            ipid: ipid.map(|s| s.as_bytes().to_vec()),
            seqs: HashMap::new(),
            last_ts: Timestamp(0),
            object_dirs: HashMap::new(),
            counts: PoiCounts::default(),
            scratch: Vec::new(),
        }
    }

    /// The map to change when the warrants change: records of a LIID no longer in it are
    /// counted, not sent.
    pub fn xids(&self) -> Xids {
        self.xids.clone()
    }

    /// The direction object `id`'s bytes go in (unknown for an object not begun here).
    fn object_dir(&self, liid: &Liid, id: ObjectId) -> PayloadDirection {
        self.object_dirs.get(&(liid.clone(), id)).copied().unwrap_or(PayloadDirection::Unknown)
    }

    /// Appends the PDUs for `rec` to `out`; returns how many.
    pub fn encode(&mut self, rec: &Record<'_>, out: &mut BytesMut) -> usize {
        let liid = rec.liid();
        let xid = self.xids.read().ok().and_then(|m| m.get(liid).copied());
        let Some(xid) = xid else {
            self.counts.no_xid += 1;
            return 0;
        };
        let ts = match rec {
            Record::Iri(r) => r.ts,
            Record::Cc(c) => c.ts,
            Record::ObjectBegin { meta, .. } => meta.first_seen,
            Record::ObjectEnd(o, _) => o.last_seen,
            Record::SessionClosed { ts, .. } => *ts,
            Record::ObjectData { .. } | Record::ObjectGap { .. } => self.last_ts,
        };
        self.last_ts = self.last_ts.max(ts);
        match rec {
            Record::Cc(c) => {
                let dir = direction(c.from_target());
                let (format, payload) = match inner_ip_packet(c.link, c.data) {
                    Some(p) if p.first().is_some_and(|b| b >> 4 == 4) => (PayloadFormat::Ipv4, p),
                    Some(p) if p.first().is_some_and(|b| b >> 4 == 6) => (PayloadFormat::Ipv6, p),
                    _ if c.link == LinkType::Ethernet => (PayloadFormat::Ethernet, c.data),
                    _ => {
                        self.counts.cc_not_sendable += 1;
                        return 0;
                    }
                };
                self.put(PduType::X3, format, dir, xid, c.cin.get().into(), c.ts, payload, out)
            }
            Record::Iri(r) => {
                let dir = iri_direction(r);
                let body = match iri_json(r) {
                    Ok(b) => b,
                    Err(_) => {
                        self.counts.encode_errors += 1;
                        return 0;
                    }
                };
                let cid = r.cin.map_or(0, |c| c.get().into());
                self.part(PduType::X2, Part::Iri, dir, xid, cid, r.ts, &[], &body, out)
            }
            Record::ObjectBegin { id, meta, .. } => {
                let Ok(body) = serde_json::to_vec(meta) else {
                    self.counts.encode_errors += 1;
                    return 0;
                };
                let dir = direction(meta.from_target);
                self.object_dirs.insert((liid.clone(), *id), dir);
                self.part(
                    PduType::X3,
                    Part::ObjectBegin,
                    dir,
                    xid,
                    meta.cin.get().into(),
                    meta.first_seen,
                    &id.to_be_bytes(),
                    &body,
                    out,
                )
            }
            Record::ObjectData { id, offset, data, .. } => {
                let dir = self.object_dir(liid, *id);
                let mut n = 0;
                for (i, chunk) in data.chunks(OBJECT_CHUNK).enumerate() {
                    let mut head = [0u8; 16];
                    head[..8].copy_from_slice(&id.to_be_bytes());
                    head[8..].copy_from_slice(&(offset + (i * OBJECT_CHUNK) as u64).to_be_bytes());
                    // The session is the object's: the MDF knows it from the object's begin.
                    n += self.part(PduType::X3, Part::ObjectData, dir, xid, 0, ts, &head, chunk, out);
                }
                n
            }
            Record::ObjectGap { id, offset, len, .. } => {
                let dir = self.object_dir(liid, *id);
                let mut head = [0u8; 24];
                head[..8].copy_from_slice(&id.to_be_bytes());
                head[8..16].copy_from_slice(&offset.to_be_bytes());
                head[16..].copy_from_slice(&len.to_be_bytes());
                self.part(PduType::X3, Part::ObjectGap, dir, xid, 0, ts, &head, &[], out)
            }
            Record::ObjectEnd(o, id) => {
                self.object_dirs.remove(&(o.liid.clone(), *id));
                let Ok(body) = serde_json::to_vec(&ObjectWire::from(o)) else {
                    self.counts.encode_errors += 1;
                    return 0;
                };
                let dir = direction(o.meta.from_target);
                self.part(
                    PduType::X3,
                    Part::ObjectEnd,
                    dir,
                    xid,
                    o.meta.cin.get().into(),
                    o.last_seen,
                    &id.to_be_bytes(),
                    &body,
                    out,
                )
            }
            Record::SessionClosed { cin, ts, .. } => self.part(
                PduType::X3,
                Part::SessionClosed,
                PayloadDirection::NotApplicable,
                xid,
                cin.get().into(),
                *ts,
                &[],
                &[],
                out,
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn part(
        &mut self,
        kind: PduType,
        part: Part,
        dir: PayloadDirection,
        xid: Xid,
        cid: u64,
        ts: Timestamp,
        head: &[u8],
        body: &[u8],
        out: &mut BytesMut,
    ) -> usize {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend_from_slice(MAGIC);
        scratch.push(part as u8);
        scratch.extend_from_slice(head);
        scratch.extend_from_slice(body);
        let n = self.put(kind, PayloadFormat::Proprietary, dir, xid, cid, ts, &scratch, out);
        self.scratch = scratch;
        n
    }

    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        kind: PduType,
        format: PayloadFormat,
        direction: PayloadDirection,
        xid: Xid,
        correlation_id: u64,
        ts: Timestamp,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> usize {
        let header = Header { pdu_type: kind, format, direction, xid, correlation_id };
        let next = self.seqs.entry((xid, correlation_id)).or_insert(0);
        let seq = *next;
        let position = [POSITION_TAG[0], POSITION_TAG[1], POSITION_TAG[2], POSITION_TAG[3], 0, 0, 0, 0, 0, 0, 0, 0];
        let mut attrs = [
            Attribute::Other { kind: 4, value: &position },
            Attribute::SequenceNumber(seq),
            Attribute::timestamp(ts),
            Attribute::IpProtocol(0),
        ];
        let n = match self.ipid.as_deref() {
            Some(a) => {
                attrs[3] = Attribute::InterceptionPointId(a);
                4
            }
            None => 3,
        };
        match encode(&header, &attrs[..n], payload, out) {
            Ok(()) => {
                *next = seq.wrapping_add(1);
                match kind {
                    PduType::X2 => self.counts.x2 += 1,
                    _ => self.counts.x3 += 1,
                }
                1
            }
            Err(_) => {
                self.counts.encode_errors += 1;
                0
            }
        }
    }
}

/// Writes `position` into `pdu`, one PDU as a [`PoiEncoder`] wrote it.
pub fn set_position(pdu: &mut [u8], position: u64) {
    if let Some(p) = pdu.get_mut(POSITION) {
        p.copy_from_slice(&position.to_be_bytes());
    }
}

/// The stream position of a PDU, if it has one (a third party's has none).
pub fn position(v: &PduView<'_>) -> Option<u64> {
    v.attributes().find_map(|a| match a {
        Attribute::Other { kind: 4, value } if value.len() == 12 && &value[..4] == POSITION_TAG => {
            Some(u64::from_be_bytes(value[4..].try_into().ok()?))
        }
        _ => None,
    })
}

/// The capture time a framed PDU carries (its timestamp attribute), if it parses and has one.
pub fn capture_time(frame: &[u8]) -> Option<Timestamp> {
    PduView::parse(frame).ok()?.0.timestamp()
}

/// To or from the target, or unknown.
fn direction(from_target: Option<bool>) -> PayloadDirection {
    match from_target {
        Some(true) => PayloadDirection::FromTarget,
        Some(false) => PayloadDirection::ToTarget,
        None => PayloadDirection::Unknown,
    }
}

fn iri_direction(r: &IriRecord) -> PayloadDirection {
    match &r.event {
        IriEvent::Association { .. } | IriEvent::Warrant { .. } => PayloadDirection::NotApplicable,
        IriEvent::Object(o) => direction(o.meta.from_target),
        IriEvent::WireConflict(w) => direction(Some(w.from_target)),
        _ => PayloadDirection::Both,
    }
}

/// The X2 JSON of an IRI record: its timestamp, provenance and event.
fn iri_json(r: &IriRecord) -> serde_json::Result<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct Wire<'a> {
        ts: Timestamp,
        provenance: &'a Provenance,
        iri: &'a IriEvent,
    }
    serde_json::to_vec(&Wire { ts: r.ts, provenance: &r.provenance, iri: &r.event })
}

/// A finished object as it crosses: its record without the LIID and provenance (which the
/// XID and the object's begin say).
#[derive(serde::Serialize, serde::Deserialize)]
struct ObjectWire {
    #[serde(default)]
    id: ObjectId,
    /// In an object's end; an `object` IRI record has it beside the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provenance: Option<Provenance>,
    #[serde(flatten)]
    meta: ObjectMeta,
    sha256: String,
    #[serde(default)]
    md5: Option<String>,
    #[serde(default)]
    sha512: Option<String>,
    #[serde(default)]
    format: Option<crate::record::FormatVerdict>,
    size: u64,
    gaps: Vec<(u64, u64)>,
    #[serde(default)]
    wire_conflicts: Vec<WireConflict>,
    complete: bool,
    last_seen: Timestamp,
}

impl From<&ObjectRecord> for ObjectWire {
    fn from(o: &ObjectRecord) -> ObjectWire {
        ObjectWire {
            id: o.id,
            provenance: Some((*o.provenance).clone()),
            meta: o.meta.clone(),
            sha256: o.sha256.clone(),
            md5: o.md5.clone(),
            sha512: o.sha512.clone(),
            format: o.format.clone(),
            size: o.size,
            gaps: o.gaps.clone(),
            wire_conflicts: o.wire_conflicts.clone(),
            complete: o.complete,
            last_seen: o.last_seen,
        }
    }
}

impl ObjectWire {
    fn into_record(self, liid: Liid, provenance: Arc<Provenance>) -> ObjectRecord {
        ObjectRecord {
            liid,
            id: self.id,
            meta: self.meta,
            sha256: self.sha256,
            md5: self.md5,
            sha512: self.sha512,
            format: self.format,
            size: self.size,
            gaps: self.gaps,
            wire_conflicts: self.wire_conflicts,
            complete: self.complete,
            last_seen: self.last_seen,
            provenance,
        }
    }
}

/// The built-in IRI events, read back from the JSON they serialise to.
// Read once per record and turned into an IriEvent at once: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(serde::Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
enum BuiltinIri {
    SessionBegin {
        flow: FlowDescr,
        first_seen: Timestamp,
    },
    SessionContinue {
        flow: FlowDescr,
        first_seen: Timestamp,
        counters: Counters,
    },
    SessionEnd {
        flow: FlowDescr,
        first_seen: Timestamp,
        last_seen: Timestamp,
        counters: Counters,
        reason: Close,
        gaps: [Vec<(u64, u64)>; 2],
    },
    Object(ObjectWire),
    WireConflict(WireConflict),
    Association {
        what: String,
        detail: serde_json::Value,
        #[serde(default)]
        selectors_added: Vec<String>,
        #[serde(default)]
        selectors_removed: Vec<String>,
    },
    Warrant {
        op: WarrantOp,
        start: Timestamp,
        end: Timestamp,
    },
}

const BUILTIN: &[&str] =
    &["session-begin", "session-continue", "session-end", "object", "wire-conflict", "association", "warrant"];

/// Why the MDF did not take a PDU. Each is counted; the connection goes on (framing is intact).
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Pdu(#[from] PduError),
    /// No task with this XID here.
    #[error("unknown XID {0}")]
    UnknownXid(Xid),
    /// The task's scope does not allow what the PDU carries (IRI for a CC-only warrant, CC for
    /// an IRI-only one).
    #[error("XID {xid}: {what} outside the warrant's scope")]
    OutOfScope { xid: Xid, what: &'static str },
    /// A payload format this MDF does not take on this PDU type.
    #[error("{kind:?} with payload format {format}")]
    Format { kind: PduType, format: u16 },
    /// A proprietary payload that is not one of tapir's parts, or one cut short.
    #[error("proprietary payload: {0}")]
    Part(&'static str),
    /// A part's JSON does not fit its type.
    #[error("{what}: {source}")]
    Json { what: &'static str, source: serde_json::Error },
    #[error(transparent)]
    Event(#[from] super::events::EventError),
    /// Object bytes or an end for an object whose begin did not come.
    #[error("object {0} was not begun")]
    UnknownObject(ObjectId),
    /// More objects open at once than the bound on open sessions.
    #[error("more than {0} objects open")]
    TooManyObjects(usize),
    /// A keepalive reached the record layer (the connection answers those).
    #[error("keepalive")]
    Keepalive,
}

/// One task as the MDF knows it.
#[derive(Clone, Debug)]
pub struct Task {
    pub liid: Liid,
    pub scope: Scope,
}

/// Per session and object state for one POI stream, bounded.
struct Open {
    cin: Cin,
}

/// The MDF's side: PDUs from POIs in, records out; CINs numbered here.
pub struct MdfIntake {
    tasks: HashMap<Xid, Task>,
    /// (POI, XID, correlation ID) -> the MDF's CIN.
    sessions: HashMap<(Arc<str>, Xid, u64), Open>,
    /// Sessions closed lately, the most recent `max_sessions`: records still cite them (an FTP
    /// transfer's event names its data connection after that is closed).
    closed: HashMap<(Arc<str>, Xid, u64), Cin>,
    closed_order: std::collections::VecDeque<(Arc<str>, Xid, u64)>,
    /// Objects begun and not ended, by LIID and the MDF's id.
    objects: std::collections::HashSet<(Liid, ObjectId)>,
    /// (POI, LIID, the POI's object id) -> the MDF's, the most recent `max_sessions` of them:
    /// records cite objects after their end (a mail's IRI, an attachment's parent).
    object_ids: HashMap<(Arc<str>, Liid, ObjectId), ObjectId>,
    object_order: std::collections::VecDeque<(Arc<str>, Liid, ObjectId)>,
    /// Where CINs come from: shared with the MDF's record stage (inspections), so that none
    /// is given twice.
    numbers: Numbers,
    /// Notices every POI sends alike (warrant state, association changes), seen recently: the
    /// LEA gets each once.
    notices: std::collections::HashSet<String>,
    notice_order: std::collections::VecDeque<String>,
    /// Per POI, the stream position of the last PDU taken: a PDU at or before it is a resend.
    taken: HashMap<Arc<str>, u64>,
    max_sessions: usize,
    pub counts: IntakeCounts,
    /// The latest capture time of a PDU taken: the record stage's clock (its inspection
    /// barrier), so that what an MDF makes depends on what it took, not on when.
    pub latest: Timestamp,
}

/// What the MDF took, refused and forgot.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IntakeCounts {
    pub x2: u64,
    pub x3: u64,
    pub refused: u64,
    /// PDUs sent again after a reconnect that were taken before: dropped, not duplicated.
    pub resent: u64,
    /// Sessions forgotten to stay within the bound (their next PDU opens a new CIN).
    pub sessions_evicted: u64,
    /// Warrant and association notices a second POI sent again: delivered once.
    pub notices_repeated: u64,
}

impl MdfIntake {
    /// Keeps at most `max_sessions` open sessions across all POIs; numbers CINs from `numbers`.
    pub fn new(tasks: HashMap<Xid, Task>, max_sessions: usize, numbers: Numbers) -> MdfIntake {
        MdfIntake {
            tasks,
            sessions: HashMap::new(),
            closed: HashMap::new(),
            closed_order: Default::default(),
            objects: Default::default(),
            object_ids: HashMap::new(),
            object_order: Default::default(),
            numbers,
            notices: Default::default(),
            notice_order: Default::default(),
            taken: HashMap::new(),
            max_sessions: max_sessions.max(1),
            counts: IntakeCounts::default(),
            latest: Timestamp::default(),
        }
    }

    /// Per POI, the stream position of the last PDU taken (what a clean stop keeps).
    pub fn taken(&self) -> impl Iterator<Item = (&str, u64)> {
        self.taken.iter().map(|(p, &o)| (&**p, o))
    }

    /// Positions taken in an earlier run: PDUs at or before them are resends.
    pub fn restore_taken(&mut self, marks: impl IntoIterator<Item = (String, u64)>) {
        for (poi, pos) in marks {
            let e = self.taken.entry(Arc::from(poi.as_str())).or_insert(pos);
            *e = (*e).max(pos);
        }
    }

    pub fn set_tasks(&mut self, tasks: HashMap<Xid, Task>) {
        self.tasks = tasks;
    }

    /// The MDF's id for `poi`'s object `id`, given at first sight.
    fn object_id(&mut self, poi: &Arc<str>, liid: &Liid, id: ObjectId) -> ObjectId {
        let key = (poi.clone(), liid.clone(), id);
        if let Some(&m) = self.object_ids.get(&key) {
            return m;
        }
        let m = self.numbers.object(liid);
        self.object_ids.insert(key.clone(), m);
        self.object_order.push_back(key);
        if self.object_order.len() > self.max_sessions {
            if let Some(old) = self.object_order.pop_front() {
                self.object_ids.remove(&old);
            }
        }
        m
    }

    /// The MDF's id of `poi`'s object `id`, which must be open (begun, not ended).
    fn open_object(&self, poi: &Arc<str>, liid: &Liid, id: ObjectId) -> Result<ObjectId, IntakeError> {
        self.object_ids
            .get(&(poi.clone(), liid.clone(), id))
            .copied()
            .filter(|m| self.objects.contains(&(liid.clone(), *m)))
            .ok_or(IntakeError::UnknownObject(id))
    }

    /// Renumbers the objects and sessions `v` cites (see the module documentation).
    fn renumber(&mut self, poi: &Arc<str>, xid: Xid, liid: &Liid, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    match (k.as_str(), x.as_u64()) {
                        ("object" | "parent" | "id", Some(n)) if n >= POI_RANGED => {
                            *x = self.object_id(poi, liid, n).into();
                        }
                        ("data_cin" | "control_cin", Some(n)) if n > 0 && n <= u64::from(u32::MAX) => {
                            *x = self.cin(poi, xid, n, liid).get().into();
                        }
                        _ => self.renumber(poi, xid, liid, x),
                    }
                }
            }
            serde_json::Value::Array(a) => {
                for x in a {
                    self.renumber(poi, xid, liid, x);
                }
            }
            _ => {}
        }
    }

    fn cin(&mut self, poi: &Arc<str>, xid: Xid, cid: u64, liid: &Liid) -> Cin {
        if cid == 0 {
            return Cin::NONE;
        }
        let key = (poi.clone(), xid, cid);
        if let Some(o) = self.sessions.get(&key) {
            return o.cin;
        }
        if let Some(&c) = self.closed.get(&key) {
            return c;
        }
        if self.sessions.len() >= self.max_sessions {
            // Forget one: its session continues under a new CIN, counted.
            if let Some(k) = self.sessions.keys().next().cloned() {
                self.sessions.remove(&k);
                self.counts.sessions_evicted += 1;
            }
        }
        let cin = self.numbers.cin(liid);
        self.sessions.insert(key, Open { cin });
        cin
    }

    /// Takes one whole PDU (as [`super::pdu::X2x3Codec`] frames it) from `poi` (the
    /// authenticated name of the connection), handing its record to `sink`.
    pub fn pdu(&mut self, poi: &Arc<str>, frame: &[u8], sink: &mut dyn RecordSink) -> Result<(), IntakeError> {
        let r = self.take(poi, frame, sink);
        if r.is_err() {
            self.counts.refused += 1;
        }
        r
    }

    fn take(&mut self, poi: &Arc<str>, frame: &[u8], sink: &mut dyn RecordSink) -> Result<(), IntakeError> {
        let (v, _) = PduView::parse(frame)?;
        let h = v.header;
        if matches!(h.pdu_type, PduType::Keepalive | PduType::KeepaliveAck) {
            return Err(IntakeError::Keepalive);
        }
        if let Some(pos) = position(&v) {
            match self.taken.get_mut(poi) {
                Some(last) if pos <= *last => {
                    self.counts.resent += 1;
                    return Ok(());
                }
                Some(last) => *last = pos,
                None => {
                    self.taken.insert(poi.clone(), pos);
                }
            }
        }
        let task = self.tasks.get(&h.xid).cloned().ok_or(IntakeError::UnknownXid(h.xid))?;
        let ts = v.timestamp().unwrap_or_default();
        self.latest = self.latest.max(ts);
        let liid = task.liid;
        match (h.pdu_type, h.format) {
            (PduType::X3, PayloadFormat::Ipv4 | PayloadFormat::Ipv6 | PayloadFormat::Ethernet) => {
                if !task.scope.cc() {
                    return Err(IntakeError::OutOfScope { xid: h.xid, what: "CC" });
                }
                let cin = self.cin(poi, h.xid, h.correlation_id, &liid);
                // Direction relative to the target, as CcRecord says it: the target is the
                // originator, the packet goes its way or the other.
                let dir = match h.direction {
                    PayloadDirection::FromTarget => Some(Dir::Orig),
                    PayloadDirection::ToTarget => Some(Dir::Resp),
                    _ => None,
                };
                let link = if h.format == PayloadFormat::Ethernet { LinkType::Ethernet } else { LinkType::Raw };
                sink.record(Record::Cc(crate::record::CcRecord {
                    liid: &liid,
                    cin,
                    ts,
                    link,
                    data: v.payload,
                    orig_len: v.payload.len() as u32,
                    dir,
                    target: dir.map(|_| Dir::Orig),
                }));
                self.counts.x3 += 1;
                Ok(())
            }
            (kind, PayloadFormat::Proprietary) => {
                let p = v.payload;
                if p.len() < 4 || &p[..3] != MAGIC {
                    return Err(IntakeError::Part("not a tapir part"));
                }
                let part = Part::from_code(p[3]).ok_or(IntakeError::Part("unknown part"))?;
                let body = &p[4..];
                match (kind, part) {
                    (PduType::X2, Part::Iri) => self.iri(poi, h.xid, h.correlation_id, &liid, task.scope, body, sink),
                    // A session's close passes every scope (see `record::gate`).
                    (PduType::X3, p) if p != Part::SessionClosed && !task.scope.cc() => {
                        Err(IntakeError::OutOfScope { xid: h.xid, what: "CC" })
                    }
                    (PduType::X3, Part::ObjectBegin) => {
                        let (id, json) = split_u64(body)?;
                        let mut meta: serde_json::Value = from_json(json, "object begin")?;
                        if self.objects.len() >= self.max_sessions {
                            return Err(IntakeError::TooManyObjects(self.max_sessions));
                        }
                        self.renumber(poi, h.xid, &liid, &mut meta);
                        let mut meta: ObjectMeta = serde_json::from_value(meta)
                            .map_err(|source| IntakeError::Json { what: "object begin", source })?;
                        let id = self.object_id(poi, &liid, id);
                        meta.cin = self.cin(poi, h.xid, h.correlation_id, &liid);
                        self.objects.insert((liid.clone(), id));
                        sink.record(Record::ObjectBegin { liid: &liid, id, meta: &meta });
                        self.counts.x3 += 1;
                        Ok(())
                    }
                    (PduType::X3, Part::ObjectData) => {
                        let (id, rest) = split_u64(body)?;
                        let (offset, data) = split_u64(rest)?;
                        let id = self.open_object(poi, &liid, id)?;
                        sink.record(Record::ObjectData { liid: &liid, id, offset, data });
                        self.counts.x3 += 1;
                        Ok(())
                    }
                    (PduType::X3, Part::ObjectGap) => {
                        let (id, rest) = split_u64(body)?;
                        let (offset, rest) = split_u64(rest)?;
                        let (len, _) = split_u64(rest)?;
                        let id = self.open_object(poi, &liid, id)?;
                        sink.record(Record::ObjectGap { liid: &liid, id, offset, len });
                        self.counts.x3 += 1;
                        Ok(())
                    }
                    (PduType::X3, Part::ObjectEnd) => {
                        let (poi_id, json) = split_u64(body)?;
                        let mut wire: serde_json::Value = from_json(json, "object end")?;
                        if wire.get("id").and_then(|i| i.as_u64()) != Some(poi_id) {
                            return Err(IntakeError::UnknownObject(poi_id));
                        }
                        self.renumber(poi, h.xid, &liid, &mut wire);
                        let mut wire: ObjectWire = serde_json::from_value(wire)
                            .map_err(|source| IntakeError::Json { what: "object end", source })?;
                        let id = wire.id;
                        if !self.objects.remove(&(liid.clone(), id)) {
                            return Err(IntakeError::UnknownObject(poi_id));
                        }
                        let provenance =
                            Arc::new(wire.provenance.take().ok_or(IntakeError::Part("object end without provenance"))?);
                        let mut rec = wire.into_record(liid.clone(), provenance);
                        rec.meta.cin = self.cin(poi, h.xid, h.correlation_id, &liid);
                        sink.record(Record::ObjectEnd(rec, id));
                        self.counts.x3 += 1;
                        Ok(())
                    }
                    (PduType::X3, Part::SessionClosed) => {
                        let key = (poi.clone(), h.xid, h.correlation_id);
                        if let Some(o) = self.sessions.remove(&key) {
                            sink.record(Record::SessionClosed { liid: &liid, cin: o.cin, ts });
                            self.closed.insert(key.clone(), o.cin);
                            self.closed_order.push_back(key);
                            if self.closed_order.len() > self.max_sessions {
                                if let Some(old) = self.closed_order.pop_front() {
                                    self.closed.remove(&old);
                                }
                            }
                        }
                        self.counts.x3 += 1;
                        Ok(())
                    }
                    _ => Err(IntakeError::Format { kind, format: h.format.code() }),
                }
            }
            (kind, f) => Err(IntakeError::Format { kind, format: f.code() }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn iri(
        &mut self,
        poi: &Arc<str>,
        xid: Xid,
        cid: u64,
        liid: &Liid,
        scope: Scope,
        body: &[u8],
        sink: &mut dyn RecordSink,
    ) -> Result<(), IntakeError> {
        #[derive(serde::Deserialize)]
        struct Wire {
            ts: Timestamp,
            provenance: Provenance,
            iri: serde_json::Map<String, serde_json::Value>,
        }
        let mut w: Wire = from_json(body, "IRI")?;
        let name = w.iri.get("event").and_then(|e| e.as_str()).unwrap_or("").to_string();
        let mut iri = serde_json::Value::Object(std::mem::take(&mut w.iri));
        self.renumber(poi, xid, liid, &mut iri);
        let serde_json::Value::Object(iri) = iri else { return Err(IntakeError::Part("IRI is not an object")) };
        w.iri = iri;
        let provenance = Arc::new(w.provenance);
        let event = if BUILTIN.contains(&name.as_str()) {
            let b: BuiltinIri = serde_json::from_value(serde_json::Value::Object(w.iri))
                .map_err(|source| IntakeError::Json { what: "IRI event", source })?;
            match b {
                BuiltinIri::SessionBegin { flow, first_seen } => IriEvent::SessionBegin { flow, first_seen },
                BuiltinIri::SessionContinue { flow, first_seen, counters } => {
                    IriEvent::SessionContinue { flow, first_seen, counters }
                }
                BuiltinIri::SessionEnd { flow, first_seen, last_seen, counters, reason, gaps } => {
                    IriEvent::SessionEnd { flow, first_seen, last_seen, counters, reason, gaps }
                }
                BuiltinIri::Object(o) => {
                    let mut rec = o.into_record(liid.clone(), provenance.clone());
                    rec.meta.cin = self.cin(poi, xid, cid, liid);
                    IriEvent::Object(Box::new(rec))
                }
                BuiltinIri::WireConflict(w) => IriEvent::WireConflict(Box::new(w)),
                BuiltinIri::Association { what, detail, selectors_added, selectors_removed } => {
                    IriEvent::Association { what, detail, selectors_added, selectors_removed }
                }
                BuiltinIri::Warrant { op, start, end } => IriEvent::Warrant { op, start, end },
            }
        } else {
            let mut fields = w.iri;
            fields.remove("event");
            IriEvent::App(app_event_from_json(&name, serde_json::Value::Object(fields))?)
        };
        if !scope.iri() && !matches!(event, IriEvent::Warrant { .. }) {
            return Err(IntakeError::OutOfScope { xid, what: "IRI" });
        }
        // Every POI of the warrant makes its notices (its state, the control plane's events):
        // the first to arrive is the LEA's. A warrant notice is the same whatever packet time
        // it came at; an association is one event of the control plane, at its own time.
        let notice = match &event {
            IriEvent::Warrant { op, start, end } => Some(format!("{liid}|warrant|{op:?}|{start}|{end}")),
            IriEvent::Association { .. } => serde_json::to_string(&event).ok().map(|e| format!("{liid}|{}|{e}", w.ts)),
            _ => None,
        };
        if let Some(key) = notice {
            if !self.notices.insert(key.clone()) {
                self.counts.notices_repeated += 1;
                return Ok(());
            }
            self.notice_order.push_back(key);
            if self.notice_order.len() > MAX_NOTICES {
                if let Some(old) = self.notice_order.pop_front() {
                    self.notices.remove(&old);
                }
            }
        }
        let cin = (cid != 0).then(|| self.cin(poi, xid, cid, liid));
        sink.record(Record::Iri(IriRecord { liid: liid.clone(), cin, ts: w.ts, event, provenance }));
        self.counts.x2 += 1;
        Ok(())
    }
}

fn split_u64(b: &[u8]) -> Result<(u64, &[u8]), IntakeError> {
    let (head, rest) = b.split_at_checked(8).ok_or(IntakeError::Part("cut short"))?;
    Ok((u64::from_be_bytes(head.try_into().map_err(|_| IntakeError::Part("cut short"))?), rest))
}

fn from_json<T: serde::de::DeserializeOwned>(b: &[u8], what: &'static str) -> Result<T, IntakeError> {
    serde_json::from_slice(b).map_err(|source| IntakeError::Json { what, source })
}
