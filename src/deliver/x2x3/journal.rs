//! An MDF's intake journal: how an MDF killed with SIGKILL starts again where it was, so that
//! its LEAs get every record once, numbered as if it had never stopped.
//!
//! What an MDF holds in memory is a function of the PDUs it took, in the order it took them:
//! the CINs and object ids it gave ([`super::records::MdfIntake`]), the record stage's
//! cross-links and inspections (whose findings it records at points fixed by the PDUs' capture
//! times, not the clock), the HI sequence numbers and integrity chains. So the journal keeps
//! those PDUs, and a restart takes them again.
//!
//! ## The protocol
//! - Every PDU is appended to the journal (`spool_dir/x2x3-journal/`, the HI spools' record
//!   format: length, CRC-32, bytes) before it is taken.
//! - A **checkpoint** comes with each POI keepalive the MDF acknowledges: every record taken
//!   so far is in the HI spools (the delivery thread has taken them: [`Threaded::wait_taken`]),
//!   the HI spools are synced, their ends go into the journal as a checkpoint record, the
//!   journal is synced; only then are the HI senders let go up to those ends
//!   ([`crate::deliver::handover::Held`]) and the POI's keepalive answered.
//! - **After a crash** the journal is read to its last checkpoint: what follows it was neither
//!   acknowledged to a POI nor sent to an LEA, and is dropped, from the journal and from the HI
//!   spools (cut back to the checkpoint's ends). The PDUs up to it are taken again with the HI
//!   delivery muted (their PDUs are in the spools already) into a new case, which holds the
//!   whole epoch; the crashed run's case, never signed, gets a `SUPERSEDED` note naming it.
//!   The POIs then resend what was not acknowledged, and the MDF goes on numbering where it
//!   was.
//! - **A clean stop** ends the epoch: the case is signed, HI delivery finishes, each POI's
//!   last stream position taken is kept (`positions.json`) and the journal is deleted. PDUs a
//!   POI sends again after it are recognised as resends. Sessions open across a clean stop
//!   continue under new CINs after a cINReset, as an all-in-one's do.
//!
//! [`Threaded::wait_taken`]: crate::deliver::threaded::Threaded::wait_taken

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::deliver::handover::{Spool, SpoolError};
use crate::record::Scope;

/// Largest record the journal takes: a PDU plus the POI's name.
const RECORD_MAX: usize = (crate::deliver::handover::spool::MAX_RECORD as usize) - 256;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("journal {}: record at offset {offset}: {why}", path.display())]
    Corrupt { path: PathBuf, offset: u64, why: &'static str },
    #[error("journal {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The start of an epoch (or its continuation after a recovery).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Epoch {
    /// The case the records go to.
    pub case: PathBuf,
    /// Whether the epoch's HI numbering began with cINResets.
    pub restarted: bool,
}

/// One task as a reload left it: XID, LIID, scope.
pub type TaskEntry = (String, String, Scope);

/// One journal record.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Epoch(Epoch),
    /// A PDU from a POI, as framed.
    Pdu {
        poi: Arc<str>,
        pdu: Vec<u8>,
    },
    /// The tasks after a reload.
    Tasks(Vec<TaskEntry>),
    /// The HI spools' ends (by channel label) when everything before was taken.
    Checkpoint(HashMap<String, u64>),
    /// A quiet MDF's clock moved to this capture time (ns): the inspections due by then were
    /// recorded here.
    Tick(i64),
}

impl Entry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        // Plain structs, maps of strings and numbers: serialising cannot fail.
        let _ = match self {
            Entry::Epoch(e) => {
                out.push(b'E');
                serde_json::to_writer(&mut *out, e)
            }
            Entry::Tasks(t) => {
                out.push(b'T');
                serde_json::to_writer(&mut *out, t)
            }
            Entry::Checkpoint(c) => {
                out.push(b'C');
                serde_json::to_writer(&mut *out, c)
            }
            Entry::Pdu { poi, pdu } => {
                put_pdu(out, poi, pdu);
                Ok(())
            }
            Entry::Tick(t) => {
                out.push(b'K');
                out.extend_from_slice(&t.to_be_bytes());
                Ok(())
            }
        };
    }

    fn decode(b: &[u8]) -> Result<Entry, &'static str> {
        let (&tag, rest) = b.split_first().ok_or("empty record")?;
        let bad = |_| "bad JSON";
        Ok(match tag {
            b'E' => Entry::Epoch(serde_json::from_slice(rest).map_err(bad)?),
            b'T' => Entry::Tasks(serde_json::from_slice(rest).map_err(bad)?),
            b'C' => Entry::Checkpoint(serde_json::from_slice(rest).map_err(bad)?),
            b'K' => Entry::Tick(i64::from_be_bytes(rest.try_into().map_err(|_| "tick of the wrong length")?)),
            b'P' => {
                let (&n, rest) = rest.split_first().ok_or("PDU record without a POI")?;
                let name = rest.get(..usize::from(n)).ok_or("POI name past the record")?;
                let name = std::str::from_utf8(name).map_err(|_| "POI name not UTF-8")?;
                Entry::Pdu { poi: Arc::from(name), pdu: rest.get(usize::from(n)..).unwrap_or_default().to_vec() }
            }
            _ => return Err("unknown record type"),
        })
    }
}

/// A PDU record: `P`, the POI's name (length octet, at most 255 octets), the PDU.
fn put_pdu(out: &mut Vec<u8>, poi: &str, pdu: &[u8]) {
    out.clear();
    out.push(b'P');
    let name = poi.as_bytes();
    let name = name.get(..255).unwrap_or(name);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(pdu);
}

/// What a crashed epoch left: where to pick up.
#[derive(Clone, Debug, PartialEq)]
pub struct Recovery {
    /// The crashed run's epoch record (its case, its numbering's start).
    pub epoch: Epoch,
    /// The last checkpoint: where each HI spool is cut back to.
    pub checkpoint: HashMap<String, u64>,
    /// Bytes of records after the checkpoint, dropped.
    pub dropped_bytes: u64,
    /// The journal's end after the drop: records before it are taken again.
    end: u64,
    start: u64,
}

/// The journal of a running MDF.
pub struct Journal {
    dir: PathBuf,
    spool: Option<Spool>,
    scratch: Vec<u8>,
    /// Records appended in this run.
    pub appended: u64,
}

fn positions_path(dir: &Path) -> PathBuf {
    dir.join("positions.json")
}

impl Journal {
    /// Opens the journal in `dir` (at most `max_bytes` on disk). A journal with records in it
    /// is a crashed epoch's: it is cut back to its last checkpoint and returned as a
    /// [`Recovery`], whose records [`Journal::replay`] gives.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Journal, Option<Recovery>), JournalError> {
        let mut spool = Spool::open(dir, "intake", max_bytes)?;
        let start = spool.delivered();
        let mut epoch = None;
        let mut checkpoint = None;
        let mut at = start;
        let end = spool.end();
        while at < end {
            let (bytes, n, next) = spool.read_from(at, 1)?;
            if n == 0 {
                break;
            }
            // Only the small records are decoded here; a PDU's type octet is enough.
            if let Some(b'E' | b'C') = bytes.first() {
                match Entry::decode(&bytes) {
                    Ok(Entry::Epoch(e)) => epoch = Some(e),
                    Ok(Entry::Checkpoint(c)) => checkpoint = Some((c, next)),
                    Ok(_) => {}
                    Err(why) => return Err(JournalError::Corrupt { path: dir.to_path_buf(), offset: at, why }),
                }
            }
            at = next;
        }
        let recovery = match (epoch, checkpoint) {
            (Some(epoch), Some((checkpoint, cut))) => {
                let dropped_bytes = spool.truncate_to(cut)?;
                Some(Recovery { epoch, checkpoint, dropped_bytes, end: cut, start })
            }
            // Records but no checkpoint: the epoch died before its first one, and nothing it
            // took was acknowledged or sent. Start afresh.
            _ if end > start => {
                drop(spool);
                Self::remove_segments(dir)?;
                spool = Spool::open(dir, "intake", max_bytes)?;
                None
            }
            _ => None,
        };
        Ok((Journal { dir: dir.to_path_buf(), spool: Some(spool), scratch: Vec::new(), appended: 0 }, recovery))
    }

    /// The crashed epoch's records up to its last checkpoint, in order.
    pub fn replay<'a>(&'a self, r: &Recovery) -> impl Iterator<Item = Result<Entry, JournalError>> + 'a {
        let (mut at, end) = (r.start, r.end);
        std::iter::from_fn(move || {
            let spool = self.spool.as_ref()?;
            if at >= end {
                return None;
            }
            let item = match spool.read_from(at, 1) {
                Ok((_, 0, _)) => return None,
                Ok((bytes, _, next)) => {
                    let r = Entry::decode(&bytes).map_err(|why| JournalError::Corrupt {
                        path: self.dir.clone(),
                        offset: at,
                        why,
                    });
                    at = next;
                    r
                }
                Err(e) => {
                    at = end;
                    Err(e.into())
                }
            };
            Some(item)
        })
    }

    /// Appends one record (durable at the next checkpoint). A journal that cannot take it
    /// (full, an I/O error) is given up: deleted, with the error returned once; the run goes
    /// on without one, and a crash from then on restarts as an all-in-one does.
    pub fn append(&mut self, e: &Entry) -> Result<(), JournalError> {
        if self.spool.is_none() {
            return Ok(());
        }
        let mut b = std::mem::take(&mut self.scratch);
        e.encode(&mut b);
        let r = self.write(&b);
        self.scratch = b;
        r
    }

    /// A PDU from `poi` (as [`Journal::append`] of an [`Entry::Pdu`], without its copy).
    pub fn pdu(&mut self, poi: &str, pdu: &[u8]) -> Result<(), JournalError> {
        if self.spool.is_none() {
            return Ok(());
        }
        let mut b = std::mem::take(&mut self.scratch);
        put_pdu(&mut b, poi, pdu);
        let r = self.write(&b);
        self.scratch = b;
        r
    }

    fn write(&mut self, record: &[u8]) -> Result<(), JournalError> {
        let Some(spool) = self.spool.as_mut() else { return Ok(()) };
        // A PDU this large was refused by the listener's framing first; never journal past it.
        if record.len() > RECORD_MAX {
            return Ok(());
        }
        match spool.append(record) {
            Ok(()) => {
                self.appended += 1;
                Ok(())
            }
            Err(e) => {
                self.give_up();
                Err(e.into())
            }
        }
    }

    /// A checkpoint: `ends` (the HI spools', synced), then the journal made durable.
    pub fn checkpoint(&mut self, ends: HashMap<String, u64>) -> Result<(), JournalError> {
        self.append(&Entry::Checkpoint(ends))?;
        let r = self.spool.as_mut().map_or(Ok(()), Spool::sync);
        if r.is_err() {
            self.give_up();
        }
        Ok(r?)
    }

    /// Whether the journal is still kept.
    pub fn active(&self) -> bool {
        self.spool.is_some()
    }

    fn give_up(&mut self) {
        self.spool = None;
        if let Err(e) = Self::remove_segments(&self.dir) {
            tracing::error!(error = %e, "removing the given-up journal");
        }
    }

    fn remove_segments(dir: &Path) -> Result<(), JournalError> {
        let io = |source| JournalError::Io { path: dir.to_path_buf(), source };
        for e in std::fs::read_dir(dir).map_err(io)? {
            let p = e.map_err(io)?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with("intake.") {
                std::fs::remove_file(&p).map_err(io)?;
            }
        }
        Ok(())
    }

    /// A clean stop: `taken` (each POI's last stream position) kept, the journal deleted.
    pub fn close(mut self, taken: &HashMap<String, u64>) -> Result<(), JournalError> {
        let path = positions_path(&self.dir);
        let io = |source| JournalError::Io { path: path.clone(), source };
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(taken).unwrap_or_default();
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        self.spool = None;
        Self::remove_segments(&self.dir)
    }

    /// The positions an earlier clean stop kept (empty if none).
    pub fn positions(dir: &Path) -> HashMap<String, u64> {
        std::fs::read(positions_path(dir)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(case: &str) -> Entry {
        Entry::Epoch(Epoch { case: case.into(), restarted: false })
    }

    fn pdu(n: u8) -> Entry {
        Entry::Pdu { poi: Arc::from("poi-1"), pdu: vec![n; 40] }
    }

    fn ends(hi2: u64) -> HashMap<String, u64> {
        HashMap::from([("lea/hi2".to_string(), hi2), ("lea/hi3".to_string(), 7)])
    }

    #[test]
    fn every_record_round_trips() {
        let tasks = Entry::Tasks(vec![("0f".into(), "LIID-1".into(), Scope::Iri)]);
        for e in [epoch("/cases/a"), pdu(3), tasks, Entry::Checkpoint(ends(9)), Entry::Tick(-5)] {
            let mut b = Vec::new();
            e.encode(&mut b);
            assert_eq!(Entry::decode(&b).unwrap(), e);
        }
        for bad in [&b""[..], b"X", b"P", b"P\x05ab", b"C{", b"E[]", b"K\x00\x01"] {
            assert!(Entry::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_crash_is_recovered_to_the_last_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let (mut j, r) = Journal::open(d.path(), 1 << 30).unwrap();
        assert_eq!(r, None);
        j.append(&epoch("/cases/a")).unwrap();
        j.checkpoint(ends(0)).unwrap();
        j.pdu("poi-1", &[1; 40]).unwrap();
        j.append(&pdu(2)).unwrap();
        j.checkpoint(ends(100)).unwrap();
        // After the last checkpoint: neither acknowledged nor sent.
        j.append(&pdu(3)).unwrap();
        drop(j);
        let (j, r) = Journal::open(d.path(), 1 << 30).unwrap();
        let r = r.expect("a recovery");
        assert_eq!(r.epoch.case, PathBuf::from("/cases/a"));
        assert_eq!(r.checkpoint, ends(100));
        assert!(r.dropped_bytes > 40);
        let got: Vec<Entry> = j.replay(&r).map(Result::unwrap).collect();
        assert_eq!(
            got,
            vec![epoch("/cases/a"), Entry::Checkpoint(ends(0)), pdu(1), pdu(2), Entry::Checkpoint(ends(100))]
        );
        // The dropped record stays dropped: a second crash recovers the same.
        drop(j);
        let (j, r2) = Journal::open(d.path(), 1 << 30).unwrap();
        assert_eq!(r2.as_ref().map(|r| &r.checkpoint), Some(&ends(100)));
        assert_eq!(j.replay(&r2.unwrap()).count(), 5);
    }

    #[test]
    fn a_journal_without_a_checkpoint_starts_afresh_and_a_clean_stop_keeps_positions() {
        let d = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(d.path(), 1 << 30).unwrap();
        j.append(&epoch("/cases/a")).unwrap();
        j.append(&pdu(1)).unwrap();
        drop(j);
        let (j, r) = Journal::open(d.path(), 1 << 30).unwrap();
        assert_eq!(r, None);
        j.close(&HashMap::from([("poi-1".to_string(), 4096)])).unwrap();
        assert_eq!(Journal::positions(d.path()), HashMap::from([("poi-1".to_string(), 4096)]));
        let (_, r) = Journal::open(d.path(), 1 << 30).unwrap();
        assert_eq!(r, None);
    }

    #[test]
    fn a_full_journal_is_given_up_not_fatal() {
        let d = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(d.path(), 4096).unwrap();
        j.append(&epoch("/cases/a")).unwrap();
        let mut failed = 0;
        for _ in 0..200 {
            failed += usize::from(j.append(&pdu(1)).is_err());
        }
        assert_eq!(failed, 1, "the error is returned once");
        assert!(!j.active());
        let (_, r) = Journal::open(d.path(), 4096).unwrap();
        assert_eq!(r, None);
    }

    #[test]
    fn a_corrupt_journal_is_an_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let mut sp = Spool::open(d.path(), "intake", 1 << 20).unwrap();
        sp.append(b"E{not json").unwrap();
        sp.sync().unwrap();
        drop(sp);
        let e = Journal::open(d.path(), 1 << 20).err().expect("an error");
        assert!(e.to_string().contains("bad JSON"), "{e}");
    }
}
