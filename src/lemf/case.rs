//! The LEMF's case directory, appended to across restarts.
//!
//! ```text
//! OUT/<LIID>/iri.jsonl          one decoded IRI PDU a line (channel, LIID, CIN, seq, ts)
//! OUT/<LIID>/cc.pcap            IPCC packets, LINKTYPE_RAW (101), PDU timestamps
//! OUT/<LIID>/objects.jsonl      one line per reassembled e-mail object
//! OUT/<LIID>/objects/<sha256>   its bytes
//! OUT/report.json               see `report::Report`
//! OUT/README.txt                the same, for whoever opens the directory
//! ```
//!
//! Files are opened in append mode and flushed after every batch (one socket read), so a
//! `kill -9` loses at most the batch being written. On open, a torn tail left by such a kill (a
//! partial JSON line, a partial pcap record) is cut off so that appending keeps the files valid.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::core::Write;
use super::report::Report;
use crate::timestamp::Timestamp;

/// LINKTYPE_RAW: the packet starts with an IPv4 or IPv6 header.
pub const LINKTYPE_RAW: u32 = 101;
const SNAPLEN: u32 = 262_144;

#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CaseError + '_ {
    move |source| CaseError::Io { path: path.to_path_buf(), source }
}

/// A directory name for a LIID: kept as is when it is safe, otherwise hex-escaped.
pub fn liid_dir(liid: &str) -> String {
    let safe = !liid.is_empty()
        && liid != "."
        && liid != ".."
        && liid.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if safe {
        liid.to_string()
    } else {
        format!("liid-{}", hex::encode(liid.as_bytes()))
    }
}

struct LiidFiles {
    dir: PathBuf,
    iri: Option<BufWriter<File>>,
    cc: Option<BufWriter<File>>,
    objects: Option<BufWriter<File>>,
}

/// What an analyst opening the directory reads first.
const README: &str = "WHAT A TAPIR LEMF RECEIVED

What arrived over the ETSI handover interfaces (TS 102 232-1: HI2 for IRI, HI3 for CC),
decoded by `tapir lemf`. The directory is appended to across the LEMF's restarts.

<LIID>/iri.jsonl
    One decoded HI2 PDU a line: channel, LIID, CIN (communication identity number),
    sequence number, timestamp, and the PDU's IRI. tapir's own records travel whole inside
    it (caseRecord), so `tapir report` shows them as the sender's case does.
<LIID>/cc.pcap
    The IPCC packets of HI3 (pcap, LINKTYPE_RAW: each packet starts with its IP header), with
    the PDUs' timestamps.
<LIID>/objects.jsonl, <LIID>/objects/<sha256>
    E-mails reassembled from HI3 (EmailCC), one line each, their bytes named by SHA-256.
report.json
    The LEMF's account: PDUs per channel, LIID and kind; per sequence-number stream
    (channel/LIID/CIN/kind) the numbers received, the gaps, repeats and numbering restarts;
    the integrity checks (TS 102 232-1 integrity-check PDUs: hashes over the PDUs sent, and
    their signatures) that passed and failed; connections, framing and decoding problems.

HOW TO VERIFY

What was received is whole when report.json lists no gap in any stream and no failed
integrity check. The hashes and signatures were checked as the PDUs arrived, against the
sender's public key when `tapir lemf --verify-key` was given (`signature_unverified` counts
signatures received without one). `tapir report THIS_DIRECTORY` shows all of it per LIID.
";

pub struct CaseDir {
    root: PathBuf,
    liids: HashMap<String, LiidFiles>,
}

/// Cuts `f` after its last newline.
fn repair_jsonl(path: &Path) -> io::Result<()> {
    let Ok(mut f) = OpenOptions::new().read(true).write(true).open(path) else { return Ok(()) };
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut keep = 0u64;
    let mut pos = len;
    let mut buf = vec![0u8; 64 * 1024];
    while pos > 0 {
        let n = (pos.min(buf.len() as u64)) as usize;
        pos -= n as u64;
        f.seek(SeekFrom::Start(pos))?;
        let chunk = buf.get_mut(..n).unwrap_or_default();
        f.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            keep = pos + i as u64 + 1;
            break;
        }
    }
    if keep != len {
        f.set_len(keep)?;
    }
    Ok(())
}

/// Walks the record headers of a pcap and cuts a torn last record; false if the file is not a
/// pcap this writer made (then it is left alone and a new file name is used).
fn repair_pcap(path: &Path) -> io::Result<bool> {
    let Ok(mut f) = OpenOptions::new().read(true).write(true).open(path) else { return Ok(true) };
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    let mut gh = [0u8; 24];
    if len < 24 {
        f.set_len(0)?;
        return Ok(true);
    }
    f.read_exact(&mut gh)?;
    if gh[..4] != [0xd4, 0xc3, 0xb2, 0xa1] || gh[20..24] != LINKTYPE_RAW.to_le_bytes() {
        return Ok(false);
    }
    let mut pos = 24u64;
    let mut rh = [0u8; 16];
    while pos < len {
        if len - pos < 16 {
            break;
        }
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut rh)?;
        let incl = u64::from(u32::from_le_bytes([rh[8], rh[9], rh[10], rh[11]]));
        if incl > u64::from(SNAPLEN) || len - pos - 16 < incl {
            break;
        }
        pos += 16 + incl;
    }
    if pos != len {
        f.set_len(pos)?;
    }
    Ok(true)
}

fn open_append(path: &Path) -> Result<BufWriter<File>, CaseError> {
    let f = OpenOptions::new().create(true).append(true).open(path).map_err(io_err(path))?;
    Ok(BufWriter::with_capacity(256 * 1024, f))
}

impl CaseDir {
    pub fn open(root: &Path) -> Result<CaseDir, CaseError> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        let readme = root.join("README.txt");
        fs::write(&readme, README).map_err(io_err(&readme))?;
        Ok(CaseDir { root: root.to_path_buf(), liids: HashMap::new() })
    }

    pub fn report_path(&self) -> PathBuf {
        self.root.join("report.json")
    }

    /// The report left by an earlier run, if any.
    pub fn load_report(&self) -> Option<Report> {
        let s = fs::read(self.report_path()).ok()?;
        serde_json::from_slice(&s).ok()
    }

    /// Writes report.json atomically (temp file + rename).
    pub fn write_report(&self, report: &Report) -> Result<(), CaseError> {
        let mut r = report.clone();
        r.finalize();
        let path = self.report_path();
        let tmp = self.root.join(".report.json.tmp");
        let body = serde_json::to_vec_pretty(&r).unwrap_or_default();
        fs::write(&tmp, body).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    fn files(&mut self, liid: &str) -> Result<&mut LiidFiles, CaseError> {
        if !self.liids.contains_key(liid) {
            let dir = self.root.join(liid_dir(liid));
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            self.liids.insert(liid.to_string(), LiidFiles { dir, iri: None, cc: None, objects: None });
        }
        // Just inserted above when missing.
        self.liids
            .get_mut(liid)
            .ok_or_else(|| CaseError::Io { path: PathBuf::from(liid), source: io::Error::other("LIID entry vanished") })
    }

    pub fn write(&mut self, w: Write) -> Result<(), CaseError> {
        match w {
            Write::IriLine { liid, line } => self.iri(&liid, &line),
            Write::CcPacket { liid, ts, packet } => self.cc(&liid, ts, &packet),
            Write::Object { liid, bytes, meta } => self.object(&liid, &bytes, &meta),
        }
    }

    fn iri(&mut self, liid: &str, line: &Value) -> Result<(), CaseError> {
        let lf = self.files(liid)?;
        let path = lf.dir.join("iri.jsonl");
        if lf.iri.is_none() {
            repair_jsonl(&path).map_err(io_err(&path))?;
            lf.iri = Some(open_append(&path)?);
        }
        if let Some(f) = lf.iri.as_mut() {
            serde_json::to_writer(&mut *f, line).map_err(|e| io_err(&path)(e.into()))?;
            f.write_all(b"\n").map_err(io_err(&path))?;
        }
        Ok(())
    }

    fn cc(&mut self, liid: &str, ts: Timestamp, packet: &[u8]) -> Result<(), CaseError> {
        let lf = self.files(liid)?;
        if lf.cc.is_none() {
            let mut path = lf.dir.join("cc.pcap");
            if !repair_pcap(&path).map_err(io_err(&path))? {
                path = lf.dir.join("cc-lemf.pcap");
                repair_pcap(&path).map_err(io_err(&path))?;
            }
            let mut f = open_append(&path)?;
            let empty = fs::metadata(&path).map(|m| m.len() == 0).unwrap_or(true);
            if empty {
                let mut gh = Vec::with_capacity(24);
                gh.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
                gh.extend_from_slice(&2u16.to_le_bytes());
                gh.extend_from_slice(&4u16.to_le_bytes());
                gh.extend_from_slice(&0i32.to_le_bytes());
                gh.extend_from_slice(&0u32.to_le_bytes());
                gh.extend_from_slice(&SNAPLEN.to_le_bytes());
                gh.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
                f.write_all(&gh).map_err(io_err(&path))?;
            }
            lf.cc = Some(f);
        }
        let path = lf.dir.join("cc.pcap");
        let n = packet.len().min(SNAPLEN as usize);
        let orig = u32::try_from(packet.len()).unwrap_or(u32::MAX);
        let secs = u32::try_from(ts.secs().max(0)).unwrap_or(u32::MAX);
        let mut rh = [0u8; 16];
        rh[0..4].copy_from_slice(&secs.to_le_bytes());
        rh[4..8].copy_from_slice(&(ts.subsec_nanos() / 1000).to_le_bytes());
        rh[8..12].copy_from_slice(&(n as u32).to_le_bytes());
        rh[12..16].copy_from_slice(&orig.to_le_bytes());
        if let Some(f) = lf.cc.as_mut() {
            f.write_all(&rh).map_err(io_err(&path))?;
            f.write_all(packet.get(..n).unwrap_or_default()).map_err(io_err(&path))?;
        }
        Ok(())
    }

    fn object(&mut self, liid: &str, bytes: &[u8], meta: &Value) -> Result<(), CaseError> {
        let lf = self.files(liid)?;
        let odir = lf.dir.join("objects");
        fs::create_dir_all(&odir).map_err(io_err(&odir))?;
        let sha = meta["sha256"].as_str().unwrap_or("unknown");
        let p = odir.join(sha);
        let tmp = odir.join(format!(".{sha}.tmp"));
        fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &p).map_err(io_err(&p))?;
        let path = lf.dir.join("objects.jsonl");
        if lf.objects.is_none() {
            repair_jsonl(&path).map_err(io_err(&path))?;
            lf.objects = Some(open_append(&path)?);
        }
        if let Some(f) = lf.objects.as_mut() {
            serde_json::to_writer(&mut *f, meta).map_err(|e| io_err(&path)(e.into()))?;
            f.write_all(b"\n").map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Hands everything written so far to the kernel.
    pub fn flush(&mut self) -> Result<(), CaseError> {
        for lf in self.liids.values_mut() {
            for f in [lf.iri.as_mut(), lf.cc.as_mut(), lf.objects.as_mut()].into_iter().flatten() {
                f.flush().map_err(io_err(&lf.dir))?;
            }
        }
        Ok(())
    }
}
