//! One file layer for every protocol (Zeek's file-analysis model).
//!
//! Analyzers hand object bytes with offsets, holes and an end; this layer hashes them once,
//! keeps the gap list and forwards the bytes to the outputs as `Object*` records. It holds no
//! object bytes itself, so an object of any size costs its hash states and a gap list.
//!
//! # Digests
//! Every object gets its SHA-256: it names the object everywhere (the case's file, the
//! manifests, the cross-links, the LEA's IRI). MD5 and SHA-512 are kept where they serve, as
//! they cost three times what SHA-256 does here (SHA-256 has this CPU's SHA instructions, the
//! other two do not):
//! - a disk image's: they are what image services record (Glance's `checksum` and
//!   `os_hash_value`), so an analyst can match the upload to the cloud's image. An object is
//!   taken for an image by its first 64 KiB ([`format::disk_image`], the test the image
//!   inspection uses), by its name (`.qcow2`, `.vmdk`, `.iso`... compressed or not) or by being
//!   an image-service upload (`context.image_id`);
//! - an S3 object's MD5: it is its ETag, and a multipart upload's parts are checked by it.
//!
//! The head is what the format sniffer keeps anyway: once it has passed, the digests the object
//! needs start on it and catch up, so that nothing is hashed twice and an object that needs
//! only SHA-256 costs only that. A head with holes cannot tell, so such an object keeps all
//! three.
//! [`ContentLimits::every_digest`] (`[limits] every_digest`, `replay --every-digest`: a case
//! that wants all three of everything) keeps them for every object.
//!
//! Object ids are numbered per LIID. An object whose bytes no output may have (an IRI-only
//! warrant's: see [`crate::record::gate`]) is handled in metadata-only mode: it is hashed
//! here as any other, and its description reaches the LEA as IRI while its bytes reach no one.
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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use md5::{Digest, Md5};
use ring::digest;

use crate::record::{
    ByIds, Cin, Dir, Liid, Numbers, ObjectId, ObjectMeta, ObjectRecord, Provenance, Record, RecordSink, WireConflict,
};
use crate::timestamp::Timestamp;

struct OpenObject {
    meta: ObjectMeta,
    provenance: Arc<Provenance>,
    sha256: digest::Context,
    /// MD5 and SHA-512 once the object is known to need them (see the module's notes on
    /// digests).
    md5: Option<Md5>,
    sha512: Option<digest::Context>,
    /// Whether the object's digests are decided (its head has passed, or it ended).
    decided: bool,
    /// Next offset expected; everything below it is hashed.
    next: u64,
    gaps: Vec<(u64, u64)>,
    last_seen: Timestamp,
    sniff: format::Sniffer,
    /// The stream offsets its bytes came from (see [`FileLayer::stream_position`]).
    span: Option<(u64, u64)>,
}

/// Where the bytes being handled come from: a direction of a session, stream offsets.
#[derive(Copy, Clone, Debug)]
struct StreamPos {
    cin: Cin,
    dir: Dir,
    from: u64,
    to: u64,
}

/// Most wire conflicts kept per session (the flow layer reports at most 64 per direction).
const MAX_STREAM_CONFLICTS: usize = 128;
/// Sessions whose conflicts are kept for the objects they carry; the oldest go first.
const MAX_CONFLICT_STREAMS: usize = 4096;

/// What an analyzer learns of an object it ended (the record itself went to the outputs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ended {
    pub sha256: String,
    pub md5: String,
    pub size: u64,
    pub complete: bool,
}

/// Bounds on what decoding content may cost (configured: `[limits]` `max_decoded_bytes`,
/// `max_decode_ratio`). Analyzers that undo a content coding (HTTP gzip/deflate) stop at them;
/// the bytes as sent are kept whole beside what was decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentLimits {
    /// Most bytes one decoded object may grow to.
    pub max_decoded_bytes: u64,
    /// Most decoded bytes per encoded byte, past `RATIO_FLOOR` (deflate alone reaches ~1032:1).
    pub max_decode_ratio: u64,
    /// MD5 and SHA-512 of every object, not only where they serve (see the module's notes on
    /// digests): the hashing then costs about three times as much.
    pub every_digest: bool,
}

/// Decoded bytes allowed whatever the ratio (small bodies compress well).
pub const RATIO_FLOOR: u64 = 1 << 20;

impl Default for ContentLimits {
    fn default() -> Self {
        ContentLimits { max_decoded_bytes: 1 << 30, max_decode_ratio: 250, every_digest: false }
    }
}

impl ContentLimits {
    /// Decoded bytes allowed after `encoded` bytes of input.
    pub fn decoded_allowed(&self, encoded: u64) -> u64 {
        encoded.saturating_mul(self.max_decode_ratio).saturating_add(RATIO_FLOOR).min(self.max_decoded_bytes)
    }
}

/// Hashes and forwards content objects. One per worker.
#[derive(Default)]
pub struct FileLayer {
    /// What decoding may cost (read by the analyzers that decode).
    pub limits: ContentLimits,
    open: ByIds<(Liid, ObjectId), OpenObject>,
    /// Where object ids come from: each LIID numbers its objects from 1 (per worker slot:
    /// [`FileLayer::set_numbers`]).
    numbers: Numbers,
    /// Objects finished so far.
    pub finished: u64,
    pos: Option<StreamPos>,
    /// Wire conflicts per session, for the objects their streams carry; bounded (oldest
    /// sessions dropped first: the IRI has every conflict anyway).
    conflicts: HashMap<(Liid, Cin), Vec<WireConflict>>,
    conflict_order: VecDeque<(Liid, Cin)>,
}

const ZEROS: [u8; 4096] = [0; 4096];

/// The head by which an object's digests are decided: what the sniffer keeps of it.
const HEAD: u64 = format::PREFIX_LEN as u64;

/// What came past the head in the call that decided an object's digests (and how a hole's
/// zeros are hashed).
enum Past<'a> {
    Bytes(&'a [u8]),
    /// A hole: zeros.
    Zeros(u64),
}

impl Past<'_> {
    fn len(&self) -> u64 {
        match self {
            Past::Bytes(b) => b.len() as u64,
            Past::Zeros(n) => *n,
        }
    }

    fn feed(&self, mut f: impl FnMut(&[u8])) {
        match self {
            Past::Bytes(b) => f(b),
            Past::Zeros(n) => {
                let mut left = *n;
                while left > 0 {
                    let k = left.min(ZEROS.len() as u64) as usize;
                    f(&ZEROS[..k]);
                    left -= k as u64;
                }
            }
        }
    }
}

/// File-name endings of disk images, as image services and hypervisors name them.
const IMAGE_EXTENSIONS: &[&str] =
    &["qcow2", "qcow", "img", "raw", "vmdk", "vhd", "vhdx", "vdi", "iso", "ova", "ami", "aki", "ari"];
/// Endings of a compression around one.
const COMPRESSION_EXTENSIONS: &[&str] = &["gz", "xz", "zst", "bz2", "zip"];

/// Whether `name` (a path or a URL's last segment) names a disk image, compressed or not.
fn image_name(name: &str) -> bool {
    let name = name.rsplit(['/', '\\']).next().unwrap_or(name).to_ascii_lowercase();
    let mut parts = name.rsplit('.');
    let (Some(mut ext), Some(_)) = (parts.next(), parts.clone().next()) else { return false };
    if COMPRESSION_EXTENSIONS.contains(&ext) {
        match parts.next() {
            Some(inner) if parts.next().is_some() => ext = inner,
            _ => return false,
        }
    }
    IMAGE_EXTENSIONS.contains(&ext)
}

impl FileLayer {
    pub fn new() -> FileLayer {
        FileLayer::default()
    }

    pub fn with_limits(limits: ContentLimits) -> FileLayer {
        FileLayer { limits, ..FileLayer::default() }
    }

    /// Numbers the objects from `numbers` (a worker's slot: [`Numbers::slot`]).
    pub fn set_numbers(&mut self, numbers: Numbers) {
        self.numbers = numbers;
    }

    /// Starts an object of `liid`; the id is unique within that LIID. Whether its bytes go on
    /// is the scope gate's to say (`sink`): an object without is hashed and sniffed all the same,
    /// and only its description goes on (metadata-only mode).
    pub fn open(
        &mut self,
        mut meta: ObjectMeta,
        liid: &Liid,
        provenance: &Arc<Provenance>,
        sink: &mut dyn RecordSink,
    ) -> ObjectId {
        let id = self.numbers.object(liid);
        meta.from_target = Some(meta.flow.target_side(provenance) == meta.direction);
        sink.record(Record::ObjectBegin { liid, id, meta: &meta });
        let last_seen = meta.first_seen;
        self.open.insert(
            (liid.clone(), id),
            OpenObject {
                meta,
                provenance: provenance.clone(),
                sha256: digest::Context::new(&digest::SHA256),
                md5: self.limits.every_digest.then(Md5::new),
                sha512: self.limits.every_digest.then(|| digest::Context::new(&digest::SHA512)),
                decided: self.limits.every_digest,
                next: 0,
                gaps: Vec::new(),
                last_seen,
                sniff: format::Sniffer::new(),
                span: None,
            },
        );
        id
    }

    /// The analyzer is about to handle bytes `from..to` of direction `dir` of session `cin`:
    /// the object bytes it hands on meanwhile come from there. This is how an object learns its
    /// stream span, to which the wire conflicts it is given at its end are matched.
    pub fn stream_position(&mut self, cin: Cin, dir: Dir, from: u64, to: u64) {
        self.pos = Some(StreamPos { cin, dir, from, to });
    }

    /// The wire disagreed with itself in direction `c.direction` of session `cin` of `liid`:
    /// kept for the objects that stream carries whose span it touches.
    pub fn wire_conflict(&mut self, liid: &Liid, cin: Cin, c: &WireConflict) {
        let key = (liid.clone(), cin);
        if let Some(v) = self.conflicts.get_mut(&key) {
            if v.len() < MAX_STREAM_CONFLICTS {
                v.push(c.clone());
            }
            return;
        }
        if self.conflict_order.len() >= MAX_CONFLICT_STREAMS {
            if let Some(old) = self.conflict_order.pop_front() {
                self.conflicts.remove(&old);
            }
        }
        self.conflict_order.push_back(key.clone());
        self.conflicts.insert(key, vec![c.clone()]);
    }

    /// Widens the stream span of `o` by the current position, if its bytes come from there.
    fn note_span(pos: Option<StreamPos>, o: &mut OpenObject) {
        if let Some(p) = pos.filter(|p| p.cin == o.meta.cin && p.dir == o.meta.direction) {
            o.span = Some(o.span.map_or((p.from, p.to), |(a, b)| (a.min(p.from), b.max(p.to))));
        }
    }

    /// Bytes of object `id` starting at `offset`.
    pub fn data(
        &mut self,
        liid: &Liid,
        id: ObjectId,
        offset: u64,
        bytes: &[u8],
        now: Timestamp,
        sink: &mut dyn RecordSink,
    ) {
        let Some(o) = self.open.get_mut(&(liid.clone(), id)) else { return };
        o.last_seen = now;
        Self::note_span(self.pos, o);
        if offset > o.next {
            let (at, len) = (o.next, offset - o.next);
            Self::hole(o, liid, at, len, sink, id);
        }
        let skip = (o.next - offset).min(bytes.len() as u64) as usize;
        let fresh = &bytes[skip..];
        if fresh.is_empty() {
            return;
        }
        Self::hash(o, fresh);
        let start = o.next;
        o.sniff.data(start, fresh);
        sink.record(Record::ObjectData { liid, id, offset: start, data: fresh });
        o.next += fresh.len() as u64;
        if !o.decided && o.next >= HEAD {
            // Undecided means the head had not passed before this chunk: start < HEAD.
            let past_head = fresh.get((HEAD - start) as usize..).unwrap_or_default();
            Self::decide(o, Past::Bytes(past_head));
        }
    }

    /// `len` bytes of object `id` at `offset` are missing.
    pub fn gap(&mut self, liid: &Liid, id: ObjectId, offset: u64, len: u64, now: Timestamp, sink: &mut dyn RecordSink) {
        let Some(o) = self.open.get_mut(&(liid.clone(), id)) else { return };
        o.last_seen = now;
        Self::note_span(self.pos, o);
        let end = offset.saturating_add(len);
        if end <= o.next {
            return;
        }
        let at = o.next;
        Self::hole(o, liid, at, end - at, sink, id);
    }

    fn hash(o: &mut OpenObject, bytes: &[u8]) {
        o.sha256.update(bytes);
        if let Some(h) = &mut o.md5 {
            h.update(bytes);
        }
        if let Some(h) = &mut o.sha512 {
            h.update(bytes);
        }
    }

    /// Starts the digests `o` needs beside its SHA-256, once its head has passed (or it ended
    /// shorter): they catch up on the head the sniffer kept (holes as zeros, as hashed and
    /// stored), then on what `past` the head the bytes that decided it brought.
    fn decide(o: &mut OpenObject, past: Past<'_>) {
        if o.decided {
            return;
        }
        o.decided = true;
        let sample = o.sniff.sample();
        debug_assert_eq!(sample.prefix.len() as u64 + past.len(), o.next);
        let context = |k: &str| o.meta.context.get(k).is_some_and(|v| !v.is_null());
        let image = sample.prefix_missing > 0
            || format::disk_image(sample.prefix)
            || o.meta.name.as_deref().is_some_and(image_name)
            || context("image_id");
        if image {
            let mut h = digest::Context::new(&digest::SHA512);
            h.update(sample.prefix);
            past.feed(|b| h.update(b));
            o.sha512 = Some(h);
        }
        if image || context("s3") {
            let mut h = Md5::new();
            h.update(sample.prefix);
            past.feed(|b| h.update(b));
            o.md5 = Some(h);
        }
    }

    fn hole(o: &mut OpenObject, liid: &Liid, at: u64, len: u64, sink: &mut dyn RecordSink, id: ObjectId) {
        match o.gaps.last_mut() {
            Some((s, l)) if *s + *l == at => *l += len,
            _ => o.gaps.push((at, len)),
        }
        Past::Zeros(len).feed(|b| Self::hash(o, b));
        o.sniff.gap(at, len);
        sink.record(Record::ObjectGap { liid, id, offset: at, len });
        o.next = at + len;
        if !o.decided && o.next >= HEAD {
            Self::decide(o, Past::Zeros(o.next - HEAD.max(at)));
        }
    }

    /// Ends object `id`. `seen_end` says the protocol saw the object's proper end (a FIN, a
    /// complete body); the record is `complete` only if that holds and nothing is missing.
    pub fn end(
        &mut self,
        liid: &Liid,
        id: ObjectId,
        seen_end: bool,
        now: Timestamp,
        sink: &mut dyn RecordSink,
    ) -> Option<Ended> {
        let mut o = self.open.remove(&(liid.clone(), id))?;
        Self::decide(&mut o, Past::Bytes(&[]));
        self.finished += 1;
        // The conflicts of its stream that touch the stream bytes it came from.
        let wire_conflicts = match (o.span, self.conflicts.get(&(liid.clone(), o.meta.cin))) {
            (Some((from, to)), Some(all)) => all
                .iter()
                .filter(|c| c.direction == o.meta.direction && c.offset < to && c.offset.saturating_add(c.len) > from)
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        let last_seen = if now > o.last_seen { now } else { o.last_seen };
        let rec = ObjectRecord {
            liid: liid.clone(),
            id,
            meta: o.meta,
            sha256: hex::encode(o.sha256.finish().as_ref()),
            md5: o.md5.map(|h| hex::encode(h.finalize())),
            sha512: o.sha512.map(|h| hex::encode(h.finish().as_ref())),
            format: Some(o.sniff.verdict()),
            size: o.next,
            complete: seen_end && o.gaps.is_empty(),
            gaps: o.gaps,
            wire_conflicts,
            last_seen,
            provenance: o.provenance,
        };
        let ended = Ended {
            sha256: rec.sha256.clone(),
            md5: rec.md5.clone().unwrap_or_default(),
            size: rec.size,
            complete: rec.complete,
        };
        sink.record(Record::ObjectEnd(rec, id));
        Some(ended)
    }

    /// The metadata of open object `id`, for facts learnt after it started (an FTP data
    /// connection seen before its command, a mail's headers and the server's verdict). Outputs
    /// get the final metadata with `ObjectEnd`.
    pub fn meta_mut(&mut self, liid: &Liid, id: ObjectId) -> Option<&mut ObjectMeta> {
        self.open.get_mut(&(liid.clone(), id)).map(|o| &mut o.meta)
    }

    /// Objects still open.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}
