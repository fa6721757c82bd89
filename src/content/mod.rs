//! One file layer for every protocol (Zeek's file-analysis model).
//!
//! Analyzers hand object bytes with offsets, holes and an end; this layer hashes them once
//! (SHA-256 and MD5; the case writer adds SHA-512 on its own thread), keeps the gap list and
//! forwards the bytes to the outputs as `Object*` records. It holds no object bytes itself, so an
//! object of any size costs two hash states and a gap list.
//!
//! Bytes are taken in offset order. A hole (an offset past the expected one, or an explicit gap)
//! counts as zeros in the hash, exactly as outputs store it, so that the recorded SHA-256 is the
//! hash of the stored file. Bytes before the expected offset (an overlap) were already accounted
//! for and are ignored.
//!
//! Formats are told from content: each open object carries a [`format::Sniffer`] that keeps a
//! bounded sample (a prefix, a tail, a tar walker; at most [`format::MAX_RETAINED`] bytes), and
//! the finished record gets its [`format::FormatVerdict`].

pub mod format;
pub mod mime;

use std::collections::HashMap;
use std::sync::Arc;

use md5::{Digest, Md5};
use ring::digest;

use crate::record::{ObjectId, ObjectMeta, ObjectRecord, Record, RecordSink};
use crate::select::{Liid, Provenance};
use crate::timestamp::Timestamp;

struct OpenObject {
    liid: Liid,
    meta: ObjectMeta,
    provenance: Arc<Provenance>,
    sha256: digest::Context,
    /// MD5 here because analyzers need it (an S3 part's ETag is its MD5); SHA-512 the case
    /// writer computes on the output thread. Each costs more than the SHA-256: with both here
    /// this thread was the bottleneck of an upload, with both there the output thread was.
    md5: Md5,
    /// Next offset expected; everything below it is hashed.
    next: u64,
    gaps: Vec<(u64, u64)>,
    last_seen: Timestamp,
    sniff: format::Sniffer,
}

/// Hashes and forwards content objects. One per worker.
#[derive(Default)]
pub struct FileLayer {
    open: HashMap<ObjectId, OpenObject>,
    next_id: ObjectId,
    /// Objects finished so far.
    pub finished: u64,
}

const ZEROS: [u8; 4096] = [0; 4096];

impl FileLayer {
    pub fn new() -> FileLayer {
        FileLayer::default()
    }

    /// Starts an object; the id is unique within this layer.
    pub fn open(
        &mut self,
        meta: ObjectMeta,
        liid: &Liid,
        provenance: &Arc<Provenance>,
        sink: &mut dyn RecordSink,
    ) -> ObjectId {
        self.next_id += 1;
        let id = self.next_id;
        sink.record(Record::ObjectBegin { liid, id, meta: &meta });
        let last_seen = meta.first_seen;
        self.open.insert(
            id,
            OpenObject {
                liid: liid.clone(),
                meta,
                provenance: provenance.clone(),
                sha256: digest::Context::new(&digest::SHA256),
                md5: Md5::new(),
                next: 0,
                gaps: Vec::new(),
                last_seen,
                sniff: format::Sniffer::new(),
            },
        );
        id
    }

    /// Bytes of object `id` starting at `offset`.
    pub fn data(&mut self, id: ObjectId, offset: u64, bytes: &[u8], now: Timestamp, sink: &mut dyn RecordSink) {
        let Some(o) = self.open.get_mut(&id) else { return };
        o.last_seen = now;
        if offset > o.next {
            let (at, len) = (o.next, offset - o.next);
            Self::hole(o, at, len, sink, id);
        }
        let skip = (o.next - offset).min(bytes.len() as u64) as usize;
        let fresh = &bytes[skip..];
        if fresh.is_empty() {
            return;
        }
        Self::hash(o, fresh);
        o.sniff.data(o.next, fresh);
        sink.record(Record::ObjectData { liid: &o.liid, id, offset: o.next, data: fresh });
        o.next += fresh.len() as u64;
    }

    /// `len` bytes of object `id` at `offset` are missing.
    pub fn gap(&mut self, id: ObjectId, offset: u64, len: u64, now: Timestamp, sink: &mut dyn RecordSink) {
        let Some(o) = self.open.get_mut(&id) else { return };
        o.last_seen = now;
        let end = offset.saturating_add(len);
        if end <= o.next {
            return;
        }
        let at = o.next;
        Self::hole(o, at, end - at, sink, id);
    }

    fn hash(o: &mut OpenObject, bytes: &[u8]) {
        o.sha256.update(bytes);
        o.md5.update(bytes);
    }

    fn hole(o: &mut OpenObject, at: u64, len: u64, sink: &mut dyn RecordSink, id: ObjectId) {
        match o.gaps.last_mut() {
            Some((s, l)) if *s + *l == at => *l += len,
            _ => o.gaps.push((at, len)),
        }
        let mut left = len;
        while left > 0 {
            let n = left.min(ZEROS.len() as u64) as usize;
            Self::hash(o, &ZEROS[..n]);
            left -= n as u64;
        }
        o.sniff.gap(at, len);
        sink.record(Record::ObjectGap { liid: &o.liid, id, offset: at, len });
        o.next = at + len;
    }

    /// Ends object `id`. `seen_end` says the protocol saw the object's proper end (a FIN, a
    /// complete body); the record is `complete` only if that holds and nothing is missing.
    pub fn end(&mut self, id: ObjectId, seen_end: bool, now: Timestamp, sink: &mut dyn RecordSink) {
        let Some(o) = self.open.remove(&id) else { return };
        self.finished += 1;
        let last_seen = if now > o.last_seen { now } else { o.last_seen };
        let rec = ObjectRecord {
            liid: o.liid,
            id,
            meta: o.meta,
            sha256: hex::encode(o.sha256.finish().as_ref()),
            md5: Some(hex::encode(o.md5.finalize())),
            sha512: None,
            format: Some(o.sniff.verdict()),
            size: o.next,
            complete: seen_end && o.gaps.is_empty(),
            gaps: o.gaps,
            last_seen,
            provenance: o.provenance,
        };
        sink.record(Record::ObjectEnd(rec, id));
    }

    /// The metadata of open object `id`, for facts learnt after it started (an FTP data
    /// connection seen before its command, a mail's headers and the server's verdict). Outputs
    /// get the final metadata with `ObjectEnd`.
    pub fn meta_mut(&mut self, id: ObjectId) -> Option<&mut ObjectMeta> {
        self.open.get_mut(&id).map(|o| &mut o.meta)
    }

    /// Objects still open.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}
