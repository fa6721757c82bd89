//! A record that owns its bytes: what crosses a thread (an output on its own thread, the
//! workers of a sharded run handing their records to the record stage).

use crate::record::{
    CcRecord, Cin, Dir, IriRecord, Liid, LinkType, ObjectId, ObjectMeta, ObjectRecord, Record, RecordSink,
};
use crate::timestamp::Timestamp;

/// An owned copy of a [`Record`].
pub enum Owned {
    Iri(Box<IriRecord>),
    Cc {
        liid: Liid,
        cin: Cin,
        ts: Timestamp,
        link: LinkType,
        data: Vec<u8>,
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
        data: Vec<u8>,
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

impl Owned {
    pub fn of(rec: Record<'_>) -> Owned {
        match rec {
            Record::Iri(r) => Owned::Iri(Box::new(r)),
            Record::Cc(c) => Owned::Cc {
                liid: c.liid.clone(),
                cin: c.cin,
                ts: c.ts,
                link: c.link,
                data: c.data.to_vec(),
                orig_len: c.orig_len,
                dir: c.dir,
                target: c.target,
            },
            Record::ObjectBegin { liid, id, meta } => {
                Owned::Begin { liid: liid.clone(), id, meta: Box::new(meta.clone()) }
            }
            Record::ObjectData { liid, id, offset, data } => {
                Owned::Data { liid: liid.clone(), id, offset, data: data.to_vec() }
            }
            Record::ObjectGap { liid, id, offset, len } => Owned::Gap { liid: liid.clone(), id, offset, len },
            Record::ObjectEnd(r, id) => Owned::End(Box::new(r), id),
            Record::SessionClosed { liid, cin, ts } => Owned::Closed { liid: liid.clone(), cin, ts },
        }
    }

    /// Hands the record to `sink`, giving up what it owns (no copy of IRI and object records).
    pub fn replay(self, sink: &mut dyn RecordSink) {
        let rec = match self {
            Owned::Iri(r) => Record::Iri(*r),
            Owned::Cc { liid, cin, ts, link, data, orig_len, dir, target } => {
                return sink.record(Record::Cc(CcRecord {
                    liid: &liid,
                    cin,
                    ts,
                    link,
                    data: &data,
                    orig_len,
                    dir,
                    target,
                }))
            }
            Owned::Begin { liid, id, meta } => {
                return sink.record(Record::ObjectBegin { liid: &liid, id, meta: &meta })
            }
            Owned::Data { liid, id, offset, data } => {
                return sink.record(Record::ObjectData { liid: &liid, id, offset, data: &data })
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
    pub fn ts(&self) -> Option<Timestamp> {
        match self {
            Owned::Iri(r) => Some(r.ts),
            Owned::Cc { ts, .. } | Owned::Closed { ts, .. } => Some(*ts),
            Owned::Begin { meta, .. } => Some(meta.first_seen),
            Owned::End(r, _) => Some(r.last_seen),
            Owned::Data { .. } | Owned::Gap { .. } => None,
        }
    }
}
