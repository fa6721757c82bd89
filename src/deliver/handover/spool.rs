//! Durable spool of encoded PDUs, one per (LEA, channel).
//!
//! A PDU counts as sent only once it is in the spool; the sender streams the spool to the LEA
//! and moves a persisted "delivered" offset. Layout in `<dir>/<lea>/`:
//! - `hi2.spool`, `hi3.spool`: append-only records `[len u32 LE][crc32 u32 LE][PDU bytes]`;
//! - `hi2.delivered`, `hi3.delivered`: 8-byte little-endian offset of the first record not yet
//!   confirmed by the LEA (written to a temporary file and renamed).
//!
//! "Confirmed" is stronger than "written to the socket": bytes a killed LEMF had in its receive
//! buffer are lost on a plain TCP write. The sender therefore moves the offset when the LEA
//! answers a keep-alive sent after those bytes (TCP keeps order, so the answer proves the LEMF
//! read them), and rewinds to it after a connection loss. Duplicates are possible across a
//! loss or a crash; the LEMF recognises them by sequence number. Nothing is lost.
//!
//! When everything is delivered the file is truncated to zero, so its size is what the LEA
//! still owes us plus what is in flight. `max_bytes` bounds that size: beyond it `append`
//! fails with [`SpoolError::Full`] (an alarm for the caller, never a silent drop).
//!
//! On open the records are checked; a tail whose length or CRC does not hold (a crash in the
//! middle of a write) is truncated and counted. The file is read back with length checks only:
//! a corrupt file cannot panic the reader.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Records between two fsyncs.
pub const SYNC_EVERY: u32 = 64;
/// Largest PDU the spool takes (a PS-PDU carrying a jumbo frame is far below this).
pub const MAX_RECORD: u32 = 16 << 20;
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

/// One channel's spool file and its delivered offset.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    offset_path: PathBuf,
    file: File,
    /// End of the last complete record.
    end: u64,
    /// First byte not yet confirmed by the LEA.
    delivered: u64,
    max_bytes: u64,
    unsynced: u32,
    /// One record being written (reused: no allocation per PDU).
    scratch: Vec<u8>,
    /// Records dropped from a corrupt tail at open.
    pub truncated_records: u64,
    /// Bytes dropped from a corrupt tail at open.
    pub truncated_bytes: u64,
    /// Whether the spool existed before (a restart).
    pub existed: bool,
}

impl Spool {
    /// Opens (or creates) `<dir>/<channel>.spool`, checking every record.
    pub fn open(dir: &Path, channel: &str, max_bytes: u64) -> Result<Spool, SpoolError> {
        let path = dir.join(format!("{channel}.spool"));
        let offset_path = dir.join(format!("{channel}.delivered"));
        let io = |source| SpoolError::Io { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let existed = path.exists();
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let end = scan(&bytes);
        let mut sp = Spool {
            path: path.clone(),
            offset_path,
            file,
            end,
            delivered: 0,
            max_bytes,
            unsynced: 0,
            scratch: Vec::new(),
            truncated_records: 0,
            truncated_bytes: 0,
            existed,
        };
        let len = bytes.len() as u64;
        if end < len {
            sp.truncated_bytes = len - end;
            // The tail after the first bad record cannot be framed any more: one torn record.
            sp.truncated_records = 1;
            sp.file.set_len(end).map_err(io)?;
            sp.file.sync_all().map_err(io)?;
        }
        sp.file.seek(SeekFrom::Start(end)).map_err(io)?;
        let delivered = std::fs::read(&sp.offset_path).ok().and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        // An offset past the end (truncated after full delivery, or a torn tail) means all of it.
        sp.delivered = delivered.unwrap_or(0).min(end);
        if !is_boundary(&bytes, sp.delivered) {
            // Never resume in the middle of a record: resend from the start instead.
            sp.delivered = 0;
        }
        Ok(sp)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one PDU. Durable at the next [`Spool::sync`] (every [`SYNC_EVERY`] records).
    pub fn append(&mut self, pdu: &[u8]) -> Result<(), SpoolError> {
        let len = u32::try_from(pdu.len())
            .ok()
            .filter(|&l| l <= MAX_RECORD)
            .ok_or_else(|| SpoolError::TooLarge { path: self.path.clone(), len: pdu.len() })?;
        let add = HEADER + u64::from(len);
        if self.end.saturating_add(add) > self.max_bytes {
            return Err(SpoolError::Full { path: self.path.clone(), size: self.end, add, max: self.max_bytes });
        }
        let mut rec = std::mem::take(&mut self.scratch);
        rec.clear();
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&crc32(pdu).to_le_bytes());
        rec.extend_from_slice(pdu);
        let r = self.file.write_all(&rec);
        self.scratch = rec;
        r.map_err(|source| SpoolError::Io { path: self.path.clone(), source })?;
        self.end += add;
        self.unsynced += 1;
        if self.unsynced >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if self.unsynced > 0 {
            self.file.sync_data().map_err(|source| SpoolError::Io { path: self.path.clone(), source })?;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Bytes of records not yet confirmed.
    pub fn pending_bytes(&self) -> u64 {
        self.end - self.delivered
    }

    pub fn end(&self) -> u64 {
        self.end
    }

    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// PDUs from `from` on, about `max` bytes of them (at least one whole PDU), concatenated
    /// without their record headers: (bytes, number of PDUs, offset after the last).
    pub fn read_from(&self, from: u64, max: usize) -> Result<(Vec<u8>, usize, u64), SpoolError> {
        let io = |source| SpoolError::Io { path: self.path.clone(), source };
        let avail = usize::try_from(self.end.saturating_sub(from)).unwrap_or(usize::MAX);
        if avail < HEADER as usize {
            return Ok((Vec::new(), 0, from));
        }
        // At least the first record whole, even when it is larger than `max`.
        let mut head = [0u8; 8];
        read_exact_at(&self.file, &mut head, from).map_err(io)?;
        let first = HEADER as usize + u32::from_le_bytes([head[0], head[1], head[2], head[3]]).min(MAX_RECORD) as usize;
        let mut buf = vec![0u8; avail.min(max.max(first))];
        read_exact_at(&self.file, &mut buf, from).map_err(io)?;
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

    /// The LEA confirmed everything before `off`: persist it, and truncate the file if drained.
    pub fn confirm(&mut self, off: u64) -> Result<(), SpoolError> {
        if off <= self.delivered || off > self.end {
            return Ok(());
        }
        self.delivered = off;
        if self.delivered == self.end {
            self.sync()?;
            let io = |source| SpoolError::Io { path: self.path.clone(), source };
            self.file.set_len(0).map_err(io)?;
            self.file.seek(SeekFrom::Start(0)).map_err(io)?;
            self.end = 0;
            self.delivered = 0;
        }
        let tmp = self.offset_path.with_extension("delivered.tmp");
        let io = |source| SpoolError::Io { path: self.offset_path.clone(), source };
        std::fs::write(&tmp, self.delivered.to_le_bytes()).map_err(io)?;
        std::fs::rename(&tmp, &self.offset_path).map_err(io)?;
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
    fn round_trip_confirm_and_truncate_when_drained() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), "hi3", 1 << 20).unwrap();
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
        assert_eq!((s.end(), s.delivered()), (0, 0));
        assert_eq!(std::fs::metadata(d.path().join("hi3.spool")).unwrap().len(), 0);
    }
}
