//! Records that own their bytes: what crosses a thread (an output on its own thread, the
//! workers of a sharded run handing their records to the record stage).
//!
//! [`Records`] keeps the bytes of a batch (CC frames, object bytes: nearly all of it) in one
//! buffer, and keeps its buffers when emptied. A batch that goes back and forth between two
//! threads then costs no allocation per record: with a `Vec` per record, every packet of a
//! target cost two allocations on the pipeline thread and two frees on the output thread, and
//! the two threads contended for the allocator's lock (a tenth of the run's time).

use std::collections::VecDeque;
use std::ops::Range;

use crate::record::{
    CcRecord, Cin, Dir, IriRecord, Liid, LinkType, ObjectId, ObjectMeta, ObjectRecord, Record, RecordSink,
};
use crate::timestamp::Timestamp;

/// An owned copy of a [`Record`], its bytes a range of its batch's buffer.
enum Owned {
    Iri(Box<IriRecord>),
    Cc {
        liid: Liid,
        cin: Cin,
        ts: Timestamp,
        link: LinkType,
        data: Range<usize>,
        orig_len: u32,
        dir: Option<Dir>,
        target: Option<Dir>,
    },
    Begin {
        liid: Liid,
        id: ObjectId,
        meta: Box<ObjectMeta>,
    },
    Data {
        liid: Liid,
        id: ObjectId,
        offset: u64,
        data: Range<usize>,
    },
    Gap {
        liid: Liid,
        id: ObjectId,
        offset: u64,
        len: u64,
    },
    End(Box<ObjectRecord>, ObjectId),
    Closed {
        liid: Liid,
        cin: Cin,
        ts: Timestamp,
    },
}

/// Copies `b` to the end of `bytes`; where it went.
fn keep(bytes: &mut Vec<u8>, b: &[u8]) -> Range<usize> {
    let at = bytes.len();
    bytes.extend_from_slice(b);
    at..bytes.len()
}

impl Owned {
    fn of(rec: Record<'_>, bytes: &mut Vec<u8>) -> Owned {
        match rec {
            Record::Iri(r) => Owned::Iri(Box::new(r)),
            Record::Cc(c) => Owned::Cc {
                liid: c.liid.clone(),
                cin: c.cin,
                ts: c.ts,
                link: c.link,
                data: keep(bytes, c.data),
                orig_len: c.orig_len,
                dir: c.dir,
                target: c.target,
            },
            Record::ObjectBegin { liid, id, meta } => {
                Owned::Begin { liid: liid.clone(), id, meta: Box::new(meta.clone()) }
            }
            Record::ObjectData { liid, id, offset, data } => {
                Owned::Data { liid: liid.clone(), id, offset, data: keep(bytes, data) }
            }
            Record::ObjectGap { liid, id, offset, len } => Owned::Gap { liid: liid.clone(), id, offset, len },
            Record::ObjectEnd(r, id) => Owned::End(Box::new(r), id),
            Record::SessionClosed { liid, cin, ts } => Owned::Closed { liid: liid.clone(), cin, ts },
        }
    }

    /// Hands the record to `sink`, giving up what it owns (no copy of IRI and object records);
    /// `bytes` is its batch's buffer.
    fn replay(self, bytes: &[u8], sink: &mut dyn RecordSink) {
        let rec = match self {
            Owned::Iri(r) => Record::Iri(*r),
            Owned::Cc { liid, cin, ts, link, data, orig_len, dir, target } => {
                return sink.record(Record::Cc(CcRecord {
                    liid: &liid,
                    cin,
                    ts,
                    link,
                    data: bytes.get(data).unwrap_or_default(),
                    orig_len,
                    dir,
                    target,
                }))
            }
            Owned::Begin { liid, id, meta } => {
                return sink.record(Record::ObjectBegin { liid: &liid, id, meta: &meta })
            }
            Owned::Data { liid, id, offset, data } => {
                let data = bytes.get(data).unwrap_or_default();
                return sink.record(Record::ObjectData { liid: &liid, id, offset, data });
            }
            Owned::Gap { liid, id, offset, len } => {
                return sink.record(Record::ObjectGap { liid: &liid, id, offset, len })
            }
            Owned::End(r, id) => Record::ObjectEnd(*r, id),
            Owned::Closed { liid, cin, ts } => return sink.record(Record::SessionClosed { liid: &liid, cin, ts }),
        };
        sink.record(rec);
    }
}

impl Owned {
    /// The capture time the record is about, where it carries one (object bytes and gaps do
    /// not: they belong to the time of the records around them).
    fn ts(&self) -> Option<Timestamp> {
        match self {
            Owned::Iri(r) => Some(r.ts),
            Owned::Cc { ts, .. } | Owned::Closed { ts, .. } => Some(*ts),
            Owned::Begin { meta, .. } => Some(meta.first_seen),
            Owned::End(r, _) => Some(r.last_seen),
            Owned::Data { .. } | Owned::Gap { .. } => None,
        }
    }
}

/// A batch of owned records, in order, their bytes in one buffer.
#[derive(Default)]
pub struct Records {
    list: VecDeque<Owned>,
    bytes: Vec<u8>,
}

impl Records {
    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Bytes the batch holds (CC frames and object bytes).
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Hands every record to `sink`, in order, and leaves the batch empty with its buffers.
    pub fn replay(&mut self, sink: &mut dyn RecordSink) {
        while self.replay_first(sink) {}
        self.bytes.clear();
    }

    /// Whether a record is left, and the capture time of the first where it carries one
    /// (object bytes and gaps do not: they belong to the time of the records around them).
    pub fn peek(&self) -> Option<Option<Timestamp>> {
        self.list.front().map(Owned::ts)
    }

    /// Hands the first record to `sink`; false when none was left. Its bytes stay in the
    /// buffer until [`Records::clear`] (or [`Records::replay`]).
    pub fn replay_first(&mut self, sink: &mut dyn RecordSink) -> bool {
        match self.list.pop_front() {
            Some(r) => {
                r.replay(&self.bytes, sink);
                true
            }
            None => false,
        }
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.list.clear();
        self.bytes.clear();
    }
}

impl RecordSink for Records {
    fn record(&mut self, rec: Record<'_>) {
        let o = Owned::of(rec, &mut self.bytes);
        self.list.push_back(o);
    }
}
