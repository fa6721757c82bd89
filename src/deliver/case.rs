//! The case directory: what an LEA analyst receives for offline use.
//!
//! ```text
//! CASE_DIR/<LIID>/iri.jsonl          one IRI record a line, with its sequence number
//! CASE_DIR/<LIID>/cc.pcap            every target frame, as captured, in order
//! CASE_DIR/<LIID>/cc-linktype-N.pcap frames of a second link type, if any
//! CASE_DIR/<LIID>/objects.jsonl      one line per content object
//! CASE_DIR/<LIID>/objects/<sha256>   the object's bytes (holes zero-filled)
//! CASE_DIR/<LIID>/damage.jsonl       damage in the input, if any (see `write_damage`)
//! CASE_DIR/MANIFEST.json(.sig)       see `manifest` (each LIID directory has its own too)
//! CASE_DIR/README.txt                what each file is and how to verify it (`readme`)
//! ```
//!
//! Writing is I/O and can fail while [`RecordSink::record`] cannot return an error: the first
//! failure is kept, every later one counted, and [`CaseWriter::finish`] reports it, so a full disk
//! ends the run with an error instead of a silently short case.
//!
//! Object bytes are written as they arrive. Small objects are buffered in memory up to
//! `OBJECT_BUFFER` bytes each and `TOTAL_BUFFER` bytes overall, then appended to a partial file,
//! so neither memory nor open file descriptors grow with the number of flows.
//!
//! The hashing of the files, their writes and their syncs are two stages of their own
//! ([`super::disk`]), on threads of their own where the box has cores for them: this writer
//! numbers and formats.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::record::{reserve_head, ByIds, Cin, IriRecord, Liid, LinkType, ObjectId, ObjectRecord, Record, RecordSink};
use crate::timestamp::Timestamp;

use super::disk::{Disk, Out};
use super::pcap::PcapWriter;

const OBJECT_BUFFER: usize = 256 * 1024;
/// Bytes of CC handed to the disk thread at a time: with [`super::disk::IN_FLIGHT`] of them
/// queued for each of its two threads and [`super::disk::POOL`] kept for reuse, a disk that
/// falls behind costs a few MiB, not tens.
const CC_BUFFER: usize = 256 * 1024;
const TOTAL_BUFFER: usize = 64 << 20;
const PARTIAL_DIR: &str = ".partial";

/// Ended sessions whose IRI counters are still kept, per LIID.
const ENDED_KEPT: usize = 4096;

/// What the case writer wrote: relative path -> (size, SHA-256).
pub type Written = std::collections::BTreeMap<String, (u64, String)>;

struct LiidOut {
    name: String,
    dir: PathBuf,
    iri: Out,
    /// Next IRI sequence number per CIN (0: association events and warrant notices, which
    /// have no CIN).
    iri_seq: ByIds<Cin, u64>,
    /// CINs whose session ended, oldest first; their counters go after [`ENDED_KEPT`] more.
    ended: std::collections::VecDeque<Cin>,
    /// LINKTYPE -> (file name, writer).
    cc: ByIds<u32, (String, PcapWriter<Out>)>,
    objects: Out,
    iri_count: u64,
    object_count: u64,
}

struct PartialObject {
    path: PathBuf,
    buf: Vec<u8>,
    /// Bytes already in the partial file.
    on_disk: u64,
    /// Gap bytes not yet materialised (written as a hole when the next data or the end comes).
    pending_hole: u64,
}

/// Totals of what a case holds, per LIID, for the run summary.
#[derive(Clone, Debug, Default)]
pub struct CaseTotals {
    pub iri: u64,
    pub cc: u64,
    pub objects: u64,
}

pub struct CaseWriter {
    root: PathBuf,
    disk: Disk,
    liids: ByIds<Liid, LiidOut>,
    partial: ByIds<(Liid, ObjectId), PartialObject>,
    buffered: usize,
    first_error: Option<io::Error>,
    errors: u64,
    written: Written,
    s3: super::assemble::S3Uploads,
    s3_incomplete: u64,
    /// The highest object id seen per LIID, so that joined objects get ids of their own.
    max_id: HashMap<Liid, ObjectId>,
}

impl CaseWriter {
    /// Creates `root` (which must not exist or be empty).
    pub fn create(root: &Path) -> io::Result<CaseWriter> {
        if root.exists() && fs::read_dir(root)?.next().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not empty; a case is never written over another", root.display()),
            ));
        }
        fs::create_dir_all(root)?;
        Ok(CaseWriter {
            root: root.to_path_buf(),
            disk: Disk::start(super::disk::threads_by_default())?,
            liids: ByIds::default(),
            partial: ByIds::default(),
            buffered: 0,
            first_error: None,
            errors: 0,
            written: Written::new(),
            s3: Default::default(),
            s3_incomplete: 0,
            max_id: HashMap::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn fail(&mut self, e: io::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }

    /// The LIID's files, made at its first record; and the disk, for a file more.
    fn liid_out(&mut self, liid: &Liid) -> io::Result<(&mut LiidOut, &mut Disk)> {
        if !self.liids.contains_key(liid) {
            let name = liid_dir_name(liid);
            let dir = self.root.join(&name);
            fs::create_dir_all(dir.join("objects").join(PARTIAL_DIR))?;
            let iri = self.disk.open(dir.join("iri.jsonl"), 64 * 1024)?;
            let objects = self.disk.open(dir.join("objects.jsonl"), 64 * 1024)?;
            self.liids.insert(
                liid.clone(),
                LiidOut {
                    name,
                    dir,
                    iri,
                    iri_seq: ByIds::default(),
                    ended: std::collections::VecDeque::new(),
                    cc: ByIds::default(),
                    objects,
                    iri_count: 0,
                    object_count: 0,
                },
            );
        }
        Ok((self.liids.get_mut(liid).expect("inserted above"), &mut self.disk))
    }

    fn write_iri(&mut self, r: &IriRecord) -> io::Result<()> {
        self.s3.iri(r);
        let (out, _) = self.liid_out(&r.liid)?;
        let key = r.cin.unwrap_or(Cin::NONE);
        let seq = out.iri_seq.entry(key).or_insert(0);
        let n = *seq;
        *seq += 1;
        // A months-long run must not keep one entry per session it ever saw: an ended session's
        // counter is forgotten once 4096 more have ended (late records of a session, such as an
        // FTP transfer reported after its control connection closed, still number on).
        if matches!(r.event, crate::record::IriEvent::SessionEnd { .. }) && key != Cin::NONE {
            out.ended.push_back(key);
            if out.ended.len() > ENDED_KEPT {
                if let Some(old) = out.ended.pop_front() {
                    out.iri_seq.remove(&old);
                }
            }
        }
        out.iri_count += 1;
        let body = serde_json::to_vec(r).map_err(io::Error::other)?;
        // `{"seq":n,` + the record without its opening brace keeps the record's own field order.
        write!(out.iri, "{{\"seq\":{n},")?;
        out.iri.write_all(body.get(1..).unwrap_or_default())?;
        out.iri.write_all(b"\n")
    }

    fn write_cc(&mut self, liid: &Liid, ts: Timestamp, link: LinkType, data: &[u8], orig_len: u32) -> io::Result<()> {
        let (out, disk) = self.liid_out(liid)?;
        let n = link.to_linktype();
        if !out.cc.contains_key(&n) {
            let name = if out.cc.is_empty() { "cc.pcap".to_string() } else { format!("cc-linktype-{n}.pcap") };
            let w = PcapWriter::new(disk.open(out.dir.join(&name), CC_BUFFER)?, link)?;
            out.cc.insert(n, (name, w));
        }
        out.cc.get_mut(&n).expect("inserted above").1.write(ts, data, orig_len)
    }

    fn object_begin(&mut self, liid: &Liid, id: ObjectId) -> io::Result<()> {
        let dir = self.liid_out(liid)?.0.dir.join("objects").join(PARTIAL_DIR);
        let path = dir.join(format!("{id}"));
        self.disk.create(path.clone())?;
        self.partial.insert((liid.clone(), id), PartialObject { path, buf: Vec::new(), on_disk: 0, pending_hole: 0 });
        Ok(())
    }

    fn object_data(&mut self, liid: &Liid, id: ObjectId, data: &[u8]) -> io::Result<()> {
        let Some(p) = self.partial.get_mut(&(liid.clone(), id)) else { return Ok(()) };
        if p.pending_hole > 0 {
            Self::spill(&self.disk, p)?;
        }
        reserve_head(&mut p.buf, data.len(), OBJECT_BUFFER);
        p.buf.extend_from_slice(data);
        self.buffered += data.len();
        if p.buf.len() >= OBJECT_BUFFER || self.buffered >= TOTAL_BUFFER {
            self.buffered -= p.buf.len();
            Self::spill(&self.disk, p)?;
        }
        Ok(())
    }

    fn object_gap(&mut self, liid: &Liid, id: ObjectId, len: u64) -> io::Result<()> {
        let Some(p) = self.partial.get_mut(&(liid.clone(), id)) else { return Ok(()) };
        let n = p.buf.len();
        Self::spill(&self.disk, p)?;
        self.buffered -= n;
        p.pending_hole += len;
        Ok(())
    }

    /// Appends the buffer and any pending hole to the partial file. A hole is a length set past
    /// the end (a sparse region reads as zeros), so a large gap costs no disk. The buffer is
    /// handed to the disk stage whole.
    fn spill(disk: &Disk, p: &mut PartialObject) -> io::Result<()> {
        if p.buf.is_empty() && p.pending_hole == 0 {
            return Ok(());
        }
        let offset = p.on_disk;
        p.on_disk += p.buf.len() as u64;
        let len = (p.pending_hole > 0).then(|| p.on_disk + p.pending_hole);
        p.on_disk += std::mem::take(&mut p.pending_hole);
        disk.write_at(p.path.clone(), offset, std::mem::take(&mut p.buf), len)
    }

    fn object_end(&mut self, r: &ObjectRecord, id: ObjectId) -> io::Result<()> {
        let Some(mut p) = self.partial.remove(&(r.liid.clone(), id)) else { return Ok(()) };
        self.buffered -= p.buf.len();
        Self::spill(&self.disk, &mut p)?;
        debug_assert_eq!(p.on_disk, r.size);
        let max = self.max_id.entry(r.liid.clone()).or_insert(0);
        *max = (*max).max(r.id);
        let dest = self.list_object(&r.liid, r, &p.path)?;
        self.s3.object(r, &dest);
        Ok(())
    }

    /// Moves the finished bytes at `src` to `objects/<sha256>` and lists the object; returns
    /// where the bytes now are.
    fn list_object(&mut self, liid: &Liid, r: &ObjectRecord, src: &Path) -> io::Result<PathBuf> {
        let (out, disk) = self.liid_out(liid)?;
        let dest = out.dir.join("objects").join(&r.sha256);
        // Same bytes already stored (objects are named by content): one copy is kept.
        disk.store(src.to_path_buf(), dest.clone())?;
        // The hash was computed over exactly the bytes written here (holes as zeros, as stored).
        let rel = format!("{}/objects/{}", out.name, r.sha256);
        out.object_count += 1;
        let mut line = serde_json::to_value(r).map_err(io::Error::other)?;
        if let Some(m) = line.as_object_mut() {
            m.insert("liid".into(), r.liid.as_str().into());
            m.insert("provenance".into(), serde_json::to_value(&r.provenance).map_err(io::Error::other)?);
            m.insert("path".into(), format!("objects/{}", r.sha256).into());
        }
        serde_json::to_writer(&mut out.objects, &line).map_err(io::Error::other)?;
        out.objects.write_all(b"\n")?;
        self.written.insert(rel, (r.size, r.sha256.clone()));
        Ok(dest)
    }

    /// Joins the S3 multipart uploads completed during the run (see `assemble`).
    fn join_uploads(&mut self) -> io::Result<()> {
        let root = self.root.clone();
        let (joined, incomplete) =
            self.s3.join(|liid| root.join(liid_dir_name(liid)).join("objects").join(PARTIAL_DIR), &mut self.max_id)?;
        self.s3_incomplete += incomplete;
        for j in joined {
            if let Err(e) = self.list_object(&j.liid, &j.record, &j.path) {
                super::assemble::discard(&j.path);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Completed S3 uploads that could not be joined because a part is not in the case.
    pub fn s3_incomplete(&self) -> u64 {
        self.s3_incomplete
    }

    /// Flushes and closes everything. Returns the per-LIID totals and what was written (with
    /// hashes, for the manifest), or the first write error.
    pub fn finish(mut self) -> io::Result<(HashMap<Liid, CaseTotals>, Written)> {
        // Objects still open here were never ended: keep their bytes rather than lose them.
        let ids: Vec<(Liid, ObjectId)> = self.partial.keys().cloned().collect();
        for id in ids {
            if let Some(mut p) = self.partial.remove(&id) {
                if let Err(e) = Self::spill(&self.disk, &mut p) {
                    self.fail(e);
                }
            }
        }
        // Joining S3 uploads reads back the parts just written.
        self.take_disk_errors();
        if let Err(e) = self.join_uploads() {
            self.fail(e);
        }
        let mut totals = HashMap::new();
        let mut written = std::mem::take(&mut self.written);
        let mut dirs = Vec::new();
        // Files asked to be closed: their names in the case, and their ids on the disk.
        let mut closing = Vec::new();
        let liids: Vec<(Liid, LiidOut)> = self.liids.drain().collect();
        for (liid, out) in liids {
            let mut cc = 0;
            let LiidOut { name, dir, iri, cc: cc_files, objects, iri_count, object_count, .. } = out;
            let r = (|| {
                closing.push((format!("{name}/iri.jsonl"), iri.close()?));
                closing.push((format!("{name}/objects.jsonl"), objects.close()?));
                for (file, w) in cc_files.into_values() {
                    cc += w.frames;
                    closing.push((format!("{name}/{file}"), w.into_inner().close()?));
                }
                Ok::<_, io::Error>(())
            })();
            if let Err(e) = r {
                self.fail(e);
            }
            dirs.push(dir);
            totals.insert(liid, CaseTotals { iri: iri_count, cc, objects: object_count });
        }
        // Every write and sync made, and its errors known, before the directories are read.
        let mut closed = self.take_disk_errors();
        for (name, id) in closing {
            match closed.remove(&id) {
                Some(done) => {
                    written.insert(name, done);
                }
                None => self.fail(io::Error::other(format!("{name} was not closed"))),
            }
        }
        for dir in dirs {
            // No empty directories in a signed case (verify refuses them: one could be added):
            // an IRI-only warrant's case has no objects at all.
            let r = [dir.join("objects").join(PARTIAL_DIR), dir.join("objects")].iter().try_for_each(|d| {
                if fs::read_dir(d)?.next().is_none() {
                    fs::remove_dir(d)?;
                }
                Ok(())
            });
            if let Err(e) = r {
                self.fail(e);
            }
        }
        match self.first_error {
            Some(e) => {
                Err(io::Error::new(e.kind(), format!("writing the case failed ({} errors), first: {e}", self.errors)))
            }
            None => Ok((totals, written)),
        }
    }

    /// Waits for the disk thread to have made every write asked of it, and takes its errors as
    /// this writer's own; the files closed since the last call, by id, with size and SHA-256.
    fn take_disk_errors(&mut self) -> HashMap<u32, (u64, String)> {
        let report = self.disk.barrier();
        self.errors += report.count;
        if self.first_error.is_none() {
            self.first_error = report.first;
        }
        report.closed
    }
}

impl RecordSink for CaseWriter {
    fn record(&mut self, rec: Record<'_>) {
        let r = match &rec {
            Record::Iri(r) => self.write_iri(r),
            Record::Cc(c) => self.write_cc(c.liid, c.ts, c.link, c.data, c.orig_len),
            Record::ObjectBegin { liid, id, .. } => self.object_begin(liid, *id),
            Record::ObjectData { liid, id, data, .. } => self.object_data(liid, *id, data),
            Record::ObjectGap { liid, id, len, .. } => self.object_gap(liid, *id, *len),
            Record::ObjectEnd(r, id) => self.object_end(r, *id),
            Record::SessionClosed { .. } => Ok(()),
        };
        if let Err(e) = r {
            self.fail(e);
        }
    }
}

/// Writes `damage.jsonl` (one line per damaged region of the input: `after`, the capture time
/// reached, and `what`) into every LIID directory of the case at `root`: damage in the input may
/// have hidden any warrant's traffic, and the LEA is told so with the case it receives. Nothing
/// is written when there was no damage.
pub fn write_damage<T: serde::Serialize>(root: &Path, damage: &[T]) -> io::Result<()> {
    if damage.is_empty() {
        return Ok(());
    }
    let mut lines = Vec::new();
    for d in damage {
        serde_json::to_writer(&mut lines, d).map_err(io::Error::other)?;
        lines.push(b'\n');
    }
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            let p = entry.path().join("damage.jsonl");
            let mut f = File::create(&p)?;
            f.write_all(&lines)?;
            f.sync_all()?;
        }
    }
    Ok(())
}

/// LIIDs are printable ASCII but may hold `/` or `..`: map anything but `[A-Za-z0-9._-]` to `_`
/// (and a leading `.` too) so a LIID can never name a path outside the case.
pub fn liid_dir_name(liid: &str) -> String {
    let mut s: String =
        liid.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    if s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liid_never_escapes_the_case() {
        assert_eq!(liid_dir_name("LIID-JOE-0001"), "LIID-JOE-0001");
        assert_eq!(liid_dir_name("../etc"), "_._etc");
        assert_eq!(liid_dir_name("a/b c"), "a_b_c");
    }

    #[test]
    fn refuses_a_non_empty_directory() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("x"), b"1").unwrap();
        let e = CaseWriter::create(d.path()).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    }
}
