//! Durable spool of encoded PDUs, one per (LEA, channel).
//!
//! A PDU counts as sent only once it is in the spool; the sender streams the spool to the LEA
//! and moves a persisted "delivered" offset. Layout in `<dir>/<lea>/`:
//! - `hi2.<start>.seg`, `hi3.<start>.seg`: append-only segment files of records
//!   `[len u32 LE][crc32 u32 LE][PDU bytes]`; `<start>` (16 hex digits) is the logical offset of
//!   the segment's first byte. Logical offsets only grow, so an offset names one record forever.
//!   A new segment starts when the current one reaches the segment size; segments wholly
//!   delivered are deleted.
//! - `hi2.delivered`, `hi3.delivered`: 8-byte little-endian logical offset of the first record
//!   not yet confirmed by the LEA (written to a temporary file and renamed).
//!
//! "Confirmed" is stronger than "written to the socket": bytes a killed LEMF had in its receive
//! buffer are lost on a plain TCP write. The sender therefore moves the offset when the LEA
//! answers a keep-alive sent after those bytes (TCP keeps order, so the answer proves the LEMF
//! read them), and rewinds to it after a connection loss. Duplicates are possible across a
//! loss or a crash; the LEMF recognises them by sequence number. Nothing is lost.
//!
//! `max_bytes` bounds the bytes on disk (all segments): beyond it `append` fails with
//! [`SpoolError::Full`], and the caller waits for the LEA to confirm (back-pressure; see
//! `Delivery`). Space comes back a segment at a time, so a segment is at most a quarter of
//! `max_bytes`: a full spool always holds confirmed segments to delete once the LEA catches up.
//!
//! On open every segment's records are checked; a tail whose length or CRC does not hold (a
//! crash in the middle of a write) is truncated and counted. The reader checks every length: a
//! corrupt file cannot panic it.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Records between two fsyncs.
pub const SYNC_EVERY: u32 = 64;
/// Largest PDU the spool takes (a PS-PDU carrying a jumbo frame is far below this).
pub const MAX_RECORD: u32 = 16 << 20;
/// Segment size: a new segment file starts once the current one is this large.
pub const SEGMENT_BYTES: u64 = 64 << 20;
const HEADER: u64 = 8;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ALARM spool {path} full: {size} + {add} bytes would exceed max_bytes {max}; PDU refused")]
    Full { path: PathBuf, size: u64, add: u64, max: u64 },
    #[error("spool {path}: PDU of {len} bytes exceeds the record limit {MAX_RECORD}")]
    TooLarge { path: PathBuf, len: usize },
}

fn crc32(b: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(b);
    c.sum()
}

#[derive(Debug)]
struct Segment {
    /// Logical offset of its first byte.
    start: u64,
    len: u64,
    path: PathBuf,
    file: File,
}

/// One channel's segments and its delivered offset.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    channel: String,
    offset_path: PathBuf,
    /// Oldest first; never empty after `open`; the last one is written to.
    segments: VecDeque<Segment>,
    /// First logical byte not yet confirmed by the LEA.
    delivered: u64,
    max_bytes: u64,
    segment_bytes: u64,
    unsynced: u32,
    /// One record being written (reused: no allocation per PDU).
    scratch: Vec<u8>,
    /// Torn records dropped at open (one per segment with a bad tail).
    pub truncated_records: u64,
    /// Bytes dropped from corrupt tails at open.
    pub truncated_bytes: u64,
    /// Whether the spool existed before (a restart).
    pub existed: bool,
    /// Held: the sender reads only records before this offset ([`Spool::hold_at`]).
    readable: Option<u64>,
}

fn seg_path(dir: &Path, channel: &str, start: u64) -> PathBuf {
    dir.join(format!("{channel}.{start:016x}.seg"))
}

impl Spool {
    /// Opens (or creates) the spool of `channel` in `dir`, checking every record.
    pub fn open(dir: &Path, channel: &str, max_bytes: u64) -> Result<Spool, SpoolError> {
        Self::open_with_segment_size(dir, channel, max_bytes, SEGMENT_BYTES)
    }

    /// As [`Spool::open`], with segments of `segment_bytes` (tests use small ones).
    pub fn open_with_segment_size(
        dir: &Path,
        channel: &str,
        max_bytes: u64,
        segment_bytes: u64,
    ) -> Result<Spool, SpoolError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let segment_bytes = segment_bytes.min(max_bytes / 4).max(1);
        let offset_path = dir.join(format!("{channel}.delivered"));
        let mut starts = Vec::new();
        let prefix = format!("{channel}.");
        for e in std::fs::read_dir(dir).map_err(io(dir))? {
            let name = e.map_err(io(dir))?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(hex) = name.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".seg")) {
                if let Ok(start) = u64::from_str_radix(hex, 16) {
                    starts.push(start);
                }
            }
        }
        starts.sort_unstable();
        let existed = !starts.is_empty() || offset_path.exists();
        let mut sp = Spool {
            dir: dir.to_path_buf(),
            channel: channel.to_string(),
            offset_path,
            segments: VecDeque::new(),
            delivered: 0,
            max_bytes,
            segment_bytes: segment_bytes.max(1),
            unsynced: 0,
            scratch: Vec::new(),
            truncated_records: 0,
            truncated_bytes: 0,
            existed,
            readable: None,
        };
        let delivered = std::fs::read(&sp.offset_path).ok().and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        let mut d = delivered.unwrap_or(0);
        for start in starts {
            let path = seg_path(dir, channel, start);
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(false)
                .truncate(false)
                .open(&path)
                .map_err(io(&path))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(io(&path))?;
            let end = scan(&bytes);
            let len = bytes.len() as u64;
            if end < len {
                sp.truncated_bytes += len - end;
                // The tail after the first bad record cannot be framed any more: one torn record.
                sp.truncated_records += 1;
                file.set_len(end).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
            }
            file.seek(SeekFrom::Start(end)).map_err(io(&path))?;
            // Never resume in the middle of a record: resend that segment from its start instead.
            if d > start && d < start + end && !is_boundary(&bytes, d - start) {
                d = start;
            }
            sp.segments.push_back(Segment { start, len: end, path, file });
        }
        let first = sp.segments.front().map_or(0, |s| s.start);
        let end = sp.segments.back().map_or(0, |s| s.start + s.len);
        sp.delivered = d.clamp(first, end.max(first));
        if sp.segments.is_empty() {
            sp.new_segment(d)?;
        }
        Ok(sp)
    }

    fn new_segment(&mut self, start: u64) -> Result<(), SpoolError> {
        let path = seg_path(&self.dir, &self.channel, start);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|source| SpoolError::Io { path: path.clone(), source })?;
        self.segments.push_back(Segment { start, len: 0, path, file });
        Ok(())
    }

    /// The segment being written.
    pub fn path(&self) -> &Path {
        self.segments.back().map_or(&self.dir, |s| &s.path)
    }

    /// Bytes on disk, over all segments.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Appends one PDU. Durable at the next [`Spool::sync`] (every [`SYNC_EVERY`] records).
    pub fn append(&mut self, pdu: &[u8]) -> Result<(), SpoolError> {
        let len = u32::try_from(pdu.len())
            .ok()
            .filter(|&l| l <= MAX_RECORD)
            .ok_or_else(|| SpoolError::TooLarge { path: self.path().to_path_buf(), len: pdu.len() })?;
        let add = HEADER + u64::from(len);
        let size = self.disk_bytes();
        if size.saturating_add(add) > self.max_bytes {
            return Err(SpoolError::Full { path: self.path().to_path_buf(), size, add, max: self.max_bytes });
        }
        if self.segments.back().is_some_and(|s| s.len >= self.segment_bytes) {
            self.sync()?;
            let end = self.end();
            self.new_segment(end)?;
        }
        let Some(seg) = self.segments.back_mut() else { return Ok(()) };
        let mut rec = std::mem::take(&mut self.scratch);
        rec.clear();
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&crc32(pdu).to_le_bytes());
        rec.extend_from_slice(pdu);
        let r = seg.file.write_all(&rec);
        self.scratch = rec;
        r.map_err(|source| SpoolError::Io { path: seg.path.clone(), source })?;
        seg.len += add;
        self.unsynced += 1;
        if self.unsynced >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if self.unsynced > 0 {
            if let Some(seg) = self.segments.back() {
                seg.file.sync_data().map_err(|source| SpoolError::Io { path: seg.path.clone(), source })?;
            }
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Bytes of records not yet confirmed.
    pub fn pending_bytes(&self) -> u64 {
        self.end().saturating_sub(self.delivered)
    }

    /// Logical offset after the last record.
    pub fn end(&self) -> u64 {
        self.segments.back().map_or(self.delivered, |s| s.start + s.len)
    }

    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Holds the sender at `off`: records appended after it are kept back until
    /// [`Spool::publish`] lets them go. An MDF holds its HI spools at its last checkpoint, so
    /// that nothing reaches the LEA that a crash could make it produce again (see
    /// `deliver::x2x3::journal`).
    pub fn hold_at(&mut self, off: u64) {
        self.readable = Some(off.min(self.end()));
    }

    /// A held spool's records before `off` may go (`off` is a record boundary: an `end()` read
    /// earlier).
    pub fn publish(&mut self, off: u64) {
        let end = self.end();
        if let Some(r) = &mut self.readable {
            *r = (*r).max(off.min(end));
        }
    }

    /// Whether the sender is held (an MDF's spool).
    pub fn held(&self) -> bool {
        self.readable.is_some()
    }

    /// No hold any more: everything appended may go.
    pub fn release(&mut self) {
        self.readable = None;
    }

    /// The end of what the sender may read: [`Spool::end`], or where it is held.
    pub fn readable_end(&self) -> u64 {
        self.readable.unwrap_or_else(|| self.end())
    }

    /// Drops every record from logical offset `off` on (a record boundary at or after what the
    /// far end confirmed): what an MDF appended after its last checkpoint, which it will
    /// produce again. Returns the bytes dropped.
    pub fn truncate_to(&mut self, off: u64) -> Result<u64, SpoolError> {
        let end = self.end();
        if off >= end {
            return Ok(0);
        }
        let off = off.max(self.delivered);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError::Io { path, source }
        };
        while self.segments.len() > 1 && self.segments.back().is_some_and(|s| s.start >= off) {
            if let Some(s) = self.segments.pop_back() {
                std::fs::remove_file(&s.path).map_err(io(&s.path))?;
            }
        }
        if let Some(seg) = self.segments.back_mut() {
            let keep = off.saturating_sub(seg.start).min(seg.len);
            seg.file.set_len(keep).map_err(io(&seg.path))?;
            seg.file.seek(SeekFrom::Start(keep)).map_err(io(&seg.path))?;
            seg.file.sync_all().map_err(io(&seg.path))?;
            seg.len = keep;
        }
        self.unsynced = 0;
        if let Some(r) = &mut self.readable {
            *r = (*r).min(off);
        }
        Ok(end - self.end())
    }

    /// PDUs from logical offset `from` on (within one segment), about `max` bytes of them (at
    /// least one whole PDU), concatenated without their record headers: (bytes, number of
    /// PDUs, logical offset after the last).
    pub fn read_from(&self, from: u64, max: usize) -> Result<(Vec<u8>, usize, u64), SpoolError> {
        // The segment holding `from`, or the next one (a truncated tail leaves a hole).
        let Some(seg) = self.segments.iter().find(|s| from < s.start + s.len) else {
            return Ok((Vec::new(), 0, from));
        };
        let from = from.max(seg.start);
        let io = |source| SpoolError::Io { path: seg.path.clone(), source };
        let rel = from - seg.start;
        let seg_end = (seg.start + seg.len).min(self.readable_end());
        let avail = usize::try_from(seg_end.saturating_sub(from)).unwrap_or(usize::MAX);
        if avail < HEADER as usize {
            return Ok((Vec::new(), 0, from));
        }
        // At least the first record whole, even when it is larger than `max`.
        let mut head = [0u8; 8];
        read_exact_at(&seg.file, &mut head, rel).map_err(io)?;
        let first = HEADER as usize + u32::from_le_bytes([head[0], head[1], head[2], head[3]]).min(MAX_RECORD) as usize;
        let mut buf = vec![0u8; avail.min(max.max(first))];
        read_exact_at(&seg.file, &mut buf, rel).map_err(io)?;
        // Strip the headers in place: the PDUs move down over them, no copy per PDU.
        let (mut at, mut write, mut n) = (0usize, 0usize, 0usize);
        while let Some((pdu, next)) = record_at(&buf, at) {
            let (start, len) = (next - pdu.len(), pdu.len());
            buf.copy_within(start..next, write);
            write += len;
            n += 1;
            at = next;
            if write >= max {
                break;
            }
        }
        buf.truncate(write);
        Ok((buf, n, from + at as u64))
    }

    /// The LEA confirmed everything before logical offset `off`: persist it, and delete the
    /// segments it covers (the one being written stays).
    pub fn confirm(&mut self, off: u64) -> Result<(), SpoolError> {
        if off <= self.delivered || off > self.end() {
            return Ok(());
        }
        self.delivered = off;
        let tmp = self.offset_path.with_extension("delivered.tmp");
        let io = |source| SpoolError::Io { path: self.offset_path.clone(), source };
        std::fs::write(&tmp, self.delivered.to_le_bytes()).map_err(io)?;
        std::fs::rename(&tmp, &self.offset_path).map_err(io)?;
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.start + s.len <= off) {
            if let Some(s) = self.segments.pop_front() {
                std::fs::remove_file(&s.path).map_err(|source| SpoolError::Io { path: s.path.clone(), source })?;
            }
        }
        // The last segment, wholly delivered and full: start afresh so that it can go too.
        if self.segments.back().is_some_and(|s| s.start + s.len == off && s.len >= self.segment_bytes) {
            self.sync()?;
            self.new_segment(off)?;
            if let Some(s) = self.segments.pop_front() {
                std::fs::remove_file(&s.path).map_err(|source| SpoolError::Io { path: s.path.clone(), source })?;
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn read_exact_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, off)
}

#[cfg(not(unix))]
fn read_exact_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    let mut f = f.try_clone()?;
    f.seek(SeekFrom::Start(off))?;
    f.read_exact(buf)
}

/// The record at `at`, if complete and its CRC holds: (PDU, offset after it).
fn record_at(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let h = b.get(at..at.checked_add(8)?)?;
    let len = u32::from_le_bytes(h.get(..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(h.get(4..8)?.try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let start = at + 8;
    let end = start.checked_add(len as usize)?;
    let pdu = b.get(start..end)?;
    (crc32(pdu) == crc).then_some((pdu, end))
}

/// End of the valid prefix.
fn scan(b: &[u8]) -> u64 {
    let mut at = 0usize;
    while let Some((_, next)) = record_at(b, at) {
        at = next;
    }
    at as u64
}

fn is_boundary(b: &[u8], off: u64) -> bool {
    let mut at = 0usize;
    loop {
        if at as u64 == off {
            return true;
        }
        match record_at(b, at) {
            Some((_, next)) if (next as u64) <= off => at = next,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_confirm_resume() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), "hi3", 1 << 20).unwrap();
        assert!(!s.existed);
        s.append(b"one").unwrap();
        s.append(b"two!").unwrap();
        assert_eq!(s.end(), 8 + 3 + 8 + 4);
        let (pdus, n, next) = s.read_from(0, 1).unwrap();
        assert_eq!((pdus, n, next), (b"one".to_vec(), 1, 11));
        s.confirm(11).unwrap();
        drop(s);
        let mut s = Spool::open(d.path(), "hi3", 1 << 20).unwrap();
        assert!(s.existed);
        assert_eq!(s.delivered(), 11);
        let (pdus, n, next) = s.read_from(11, 1000).unwrap();
        assert_eq!((pdus, n), (b"two!".to_vec(), 1));
        s.confirm(next).unwrap();
        assert_eq!(s.pending_bytes(), 0);
    }

    #[test]
    fn segments_rotate_and_delivered_ones_are_deleted() {
        let d = tempfile::tempdir().unwrap();
        let segs = |d: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(".seg"))
                .collect();
            v.sort();
            v
        };
        let mut s = Spool::open_with_segment_size(d.path(), "hi2", 1 << 20, 30).unwrap();
        for i in 0..10u8 {
            s.append(&[i; 12]).unwrap(); // 20-byte records: a new segment every 2 records
        }
        assert_eq!(segs(d.path()).len(), 5);
        assert_eq!(s.disk_bytes(), 200);
        // Confirm the first 5 records (100 bytes): segments at 0 and 40 go, 80 holds record 5.
        s.confirm(100).unwrap();
        assert_eq!(
            segs(d.path()),
            vec!["hi2.0000000000000050.seg", "hi2.0000000000000078.seg", "hi2.00000000000000a0.seg"]
        );
        drop(s);
        let mut s = Spool::open_with_segment_size(d.path(), "hi2", 1 << 20, 30).unwrap();
        assert_eq!((s.delivered(), s.end(), s.disk_bytes()), (100, 200, 120));
        let mut got = Vec::new();
        let mut at = s.delivered();
        loop {
            let (b, n, next) = s.read_from(at, 1000).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&b);
            at = next;
        }
        let want: Vec<u8> = (5..10u8).flat_map(|i| [i; 12]).collect();
        assert_eq!(got, want);
        s.confirm(at).unwrap();
        assert_eq!(s.disk_bytes(), 0, "{:?}", segs(d.path()));
        assert_eq!(segs(d.path()).len(), 1);
    }

    #[test]
    fn a_held_spool_is_read_only_to_what_is_published_and_cut_back_across_segments() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open_with_segment_size(d.path(), "hi3", 1 << 20, 30).unwrap();
        s.append(&[1; 12]).unwrap();
        s.hold_at(s.end());
        for i in 2..8u8 {
            s.append(&[i; 12]).unwrap(); // 20-byte records, 2 per segment
        }
        // Held at 20: one record readable, though 140 bytes are there.
        let (b, n, next) = s.read_from(0, 1000).unwrap();
        assert_eq!((b, n, next), (vec![1; 12], 1, 20));
        assert_eq!(s.read_from(20, 1000).unwrap().1, 0);
        s.publish(60);
        let (_, n, next) = s.read_from(20, 1000).unwrap();
        assert_eq!((n, next), (1, 40), "within one segment");
        assert_eq!(s.read_from(40, 1000).unwrap().1, 1);
        assert_eq!(s.read_from(60, 1000).unwrap().1, 0);
        // A crash's recovery: everything after 60 goes, segments with it.
        assert_eq!(s.truncate_to(60).unwrap(), 80);
        assert_eq!(s.end(), 60);
        s.append(&[9; 12]).unwrap();
        drop(s);
        let s = Spool::open_with_segment_size(d.path(), "hi3", 1 << 20, 30).unwrap();
        assert_eq!(s.end(), 80);
        assert_eq!(s.truncated_records, 0, "cut on record boundaries");
        let mut got = Vec::new();
        let mut at = 0;
        while let Ok((b, n, next)) = s.read_from(at, 1000) {
            if n == 0 {
                break;
            }
            got.extend(b.chunks(12).map(|c| c[0]));
            at = next;
        }
        assert_eq!(got, vec![1, 2, 3, 9]);
    }
}
