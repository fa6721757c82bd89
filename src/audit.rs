//! The tamper-evident audit log: who did what over X1, and who was refused.
//!
//! One JSON object per line, appended and fsynced before the action is acknowledged. Every line
//! carries `seq` (1, 2, ...) and `prev`, the SHA-256 (hex) of the exact bytes of the previous line
//! including its newline (64 zeros for the first line). Editing, removing or reordering a line
//! therefore breaks the chain at or right after that line.
//!
//! Every `sign_every` entries, and when the log is closed, a signature line is appended:
//!
//! ```text
//! {"seq":N,"prev":"<hex>","when":"...","what":"audit-signature","signed_lines":N-1,"key":"<hex>","sig":"<hex>"}
//! ```
//!
//! `sig` is Ed25519 over the line's bytes up to (not including) `,"sig":"`. Those bytes hold
//! `prev`, so the signature covers the whole chain before it, and the line's own fields. Lines
//! after the last signature are only hash-chained: whoever can write the file can cut them off
//! or rewrite them consistently; [`verify`] reports the last signed line for that reason.
//!
//! **Sealed head.** Cutting the newest lines at a line boundary leaves a valid chain. So after
//! every line the log also rewrites `<log>.head` (atomically: a temporary file renamed over it):
//!
//! ```text
//! {"seq":N,"line_sha256":"<hex of line N>","when":"...","key":"<hex>","sig":"<hex>"}
//! ```
//!
//! signed like a signature line when the log has a key. [`verify`] checks that line `N` is in
//! the log with that hash: a log cut behind its head is reported. (Whoever holds an old head
//! could cut back to it; `tapir audit verify` prints the head's sequence number and time, to be
//! compared with what was seen before.)
//!
//! **Repair.** A crash in the middle of a write leaves a torn last line; the log then refuses to
//! open ([`AuditError::TornTail`]) until [`repair`] (`tapir audit repair`) has moved the torn
//! bytes into a file beside the log and recorded, in the log itself, what was cut.
//!
//! The log holds entries only, never request bodies or key material. Field values are capped in
//! length so one line stays small; serde_json escapes control characters so no value can forge
//! a line break. Reading a log ([`verify`]) never panics on any file content.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

use crate::deliver::manifest::SigningKey;
use crate::timestamp::Timestamp;

/// `what` of a signature line.
pub const SIGNATURE_WHAT: &str = "audit-signature";
const GENESIS: [u8; 32] = [0; 32];
/// Longest `detail` kept; longer ones are cut (at a character boundary) and marked.
pub const MAX_DETAIL: usize = 4096;
/// Longest value of any other field.
pub const MAX_FIELD: usize = 512;
/// Longest line [`AuditLog::open`] accepts as the last one (far above what `append` writes).
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: the last line (at byte {offset}) has no newline: a torn write. Repair it with `tapir audit repair {path}` (the torn bytes are kept beside the log and the repair is recorded in it)")]
    TornTail { path: PathBuf, offset: u64 },
    #[error("{path}: the last line (at byte {offset}) is not an audit line: {detail}. Repair it with `tapir audit repair {path}` (the cut bytes are kept beside the log and the repair is recorded in it)")]
    BadTail { path: PathBuf, offset: u64, detail: String },
    #[error("{path}: nothing to repair: the last line is a whole audit line")]
    NothingToRepair { path: PathBuf },
    #[error("{path}: an earlier write failed ({detail}); the log refuses appends until reopened")]
    Broken { path: PathBuf, detail: String },
    #[error("{path}: the log is closed")]
    Closed { path: PathBuf },
}

/// One action. `when`, `seq` and `prev` are added by the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Client certificate subject CN (None: no certificate, e.g. a failed handshake).
    pub who: Option<String>,
    /// SHA-256 hex of the client certificate's DER.
    pub fingerprint: Option<String>,
    /// Peer address (`ip:port`).
    pub peer: Option<String>,
    /// The action: `x1-request`, `tls-handshake`, an X1 request type, ...
    pub what: String,
    pub xid: Option<String>,
    pub liid: Option<String>,
    /// `ok`, `refused`, `error`, or an X1 result.
    pub result: String,
    pub detail: Option<String>,
}

impl AuditEntry {
    pub fn new(what: impl Into<String>, result: impl Into<String>) -> AuditEntry {
        AuditEntry { what: what.into(), result: result.into(), ..Default::default() }
    }
}

/// The bytes of an entry line, in this field order.
#[derive(Serialize)]
struct EntryLine<'a> {
    seq: u64,
    prev: &'a str,
    when: &'a str,
    what: &'a str,
    result: &'a str,
    who: Option<&'a str>,
    fingerprint: Option<&'a str>,
    peer: Option<&'a str>,
    xid: Option<&'a str>,
    liid: Option<&'a str>,
    detail: Option<&'a str>,
}

/// The sealed head's fields before its signature.
#[derive(Serialize)]
struct HeadLine<'a> {
    seq: u64,
    line_sha256: &'a str,
    when: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
}

/// `<log>.head`.
pub fn head_path(log: &Path) -> PathBuf {
    let mut name = log.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".head");
    log.with_file_name(name)
}

#[derive(Serialize)]
struct SignatureHead<'a> {
    seq: u64,
    prev: &'a str,
    when: &'a str,
    what: &'a str,
    signed_lines: u64,
    key: &'a str,
}

fn capped(o: &Option<String>) -> Option<std::borrow::Cow<'_, str>> {
    o.as_deref().map(|s| cap(s, MAX_FIELD))
}

fn cap(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...[{} bytes cut]", &s[..end], s.len() - end).into()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp::from_secs_nanos(i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos())
}

struct Inner {
    file: File,
    next_seq: u64,
    prev: [u8; 32],
    since_signature: u32,
    broken: Option<String>,
    closed: bool,
}

/// An open audit log. Appends are serialised by a mutex and each is fsynced before it returns.
pub struct AuditLog {
    path: PathBuf,
    key: Option<SigningKey>,
    sign_every: u32,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of any debug output.
        f.debug_struct("AuditLog").field("path", &self.path).field("signed", &self.key.is_some()).finish()
    }
}

/// The next sequence number and the hash to chain on, from a non-empty log's last line; a torn
/// or unreadable last line is refused (the log is never continued past damage).
fn continuation(file: &mut File, len: u64, path: &Path) -> Result<(u64, [u8; 32]), AuditError> {
    let (offset, line) =
        read_last_line(file, len).map_err(|source| AuditError::Io { path: path.to_path_buf(), source })?;
    if line.last() != Some(&b'\n') {
        return Err(AuditError::TornTail { path: path.to_path_buf(), offset });
    }
    let bad = |detail: String| AuditError::BadTail { path: path.to_path_buf(), offset, detail };
    let v: serde_json::Value = serde_json::from_slice(&line).map_err(|e| bad(e.to_string()))?;
    let seq = v.get("seq").and_then(|s| s.as_u64()).ok_or_else(|| bad("no numeric \"seq\"".into()))?;
    let next = seq.checked_add(1).ok_or_else(|| bad(format!("seq {seq} cannot grow")))?;
    Ok((next, sha256(&line)))
}

impl AuditLog {
    /// Opens (creating it, mode 0600) the log at `path` and continues its chain. With a key, a
    /// signature line is written every `sign_every` entries (0: only on close) and on close.
    pub fn open(path: &Path, signing_key: Option<SigningKey>, sign_every: u32) -> Result<AuditLog, AuditError> {
        let io_err = |source| AuditError::Io { path: path.to_path_buf(), source };
        let mut opts = OpenOptions::new();
        opts.read(true).append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let (next_seq, prev) = if len == 0 {
            // A new file: make its directory entry durable too.
            file.sync_all().map_err(io_err)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if let Ok(d) = File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            (1, GENESIS)
        } else {
            continuation(&mut file, len, path)?
        };
        Ok(AuditLog {
            path: path.to_path_buf(),
            key: signing_key,
            sign_every,
            inner: Mutex::new(Inner { file, next_seq, prev, since_signature: 0, broken: None, closed: false }),
        })
    }

    /// What [`AuditLog::open`] would continue from, without creating or writing anything (for
    /// `tapir check-config`): the next entry's sequence number, 1 for a log not yet written.
    pub fn inspect(path: &Path) -> Result<u64, AuditError> {
        let io_err = |source| AuditError::Io { path: path.to_path_buf(), source };
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(1),
            Err(e) => return Err(io_err(e)),
        };
        let len = file.metadata().map_err(io_err)?.len();
        if len == 0 {
            return Ok(1);
        }
        continuation(&mut file, len, path).map(|(next, _)| next)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The signing key's public half (hex), if the log signs.
    pub fn public_key_hex(&self) -> Option<String> {
        self.key.as_ref().map(|k| k.public_hex())
    }

    /// False once a write failed or the log was closed: appends will fail.
    pub fn healthy(&self) -> bool {
        let inner = self.lock();
        inner.broken.is_none() && !inner.closed
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves `Inner` consistent: state only advances
        // after a successful write.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `entry` stamped with the current time; returns its sequence number once durable.
    pub fn append(&self, entry: AuditEntry) -> Result<u64, AuditError> {
        self.append_at(entry, now())
    }

    /// Appends `entry` stamped `when`.
    pub fn append_at(&self, entry: AuditEntry, when: Timestamp) -> Result<u64, AuditError> {
        let mut inner = self.lock();
        self.check(&inner)?;
        let when = when.to_rfc3339();
        let prev = hex::encode(inner.prev);
        let (who, fingerprint, peer, xid, liid) = (
            capped(&entry.who),
            capped(&entry.fingerprint),
            capped(&entry.peer),
            capped(&entry.xid),
            capped(&entry.liid),
        );
        let detail = entry.detail.as_deref().map(|s| cap(s, MAX_DETAIL));
        let what = cap(&entry.what, MAX_FIELD);
        let result = cap(&entry.result, MAX_FIELD);
        let line = EntryLine {
            seq: inner.next_seq,
            prev: &prev,
            when: &when,
            what: &what,
            result: &result,
            who: who.as_deref(),
            fingerprint: fingerprint.as_deref(),
            peer: peer.as_deref(),
            xid: xid.as_deref(),
            liid: liid.as_deref(),
            detail: detail.as_deref(),
        };
        let mut bytes = serde_json::to_vec(&line).expect("strings and integers serialise");
        bytes.push(b'\n');
        let seq = self.write_line(&mut inner, &bytes)?;
        inner.since_signature = inner.since_signature.saturating_add(1);
        if self.sign_every > 0 && inner.since_signature >= self.sign_every {
            self.sign(&mut inner)?;
        }
        Ok(seq)
    }

    /// Writes a signature line now if there is a key and anything unsigned.
    pub fn sign_now(&self) -> Result<(), AuditError> {
        let mut inner = self.lock();
        self.check(&inner)?;
        if inner.since_signature > 0 {
            self.sign(&mut inner)?;
        }
        Ok(())
    }

    /// Signs what is unsigned and refuses further appends. Also done (errors ignored) on drop.
    pub fn close(&self) -> Result<(), AuditError> {
        let mut inner = self.lock();
        if inner.closed {
            return Ok(());
        }
        self.check(&inner)?;
        if inner.since_signature > 0 {
            self.sign(&mut inner)?;
        }
        inner.closed = true;
        Ok(())
    }

    fn check(&self, inner: &Inner) -> Result<(), AuditError> {
        if let Some(d) = &inner.broken {
            return Err(AuditError::Broken { path: self.path.clone(), detail: d.clone() });
        }
        if inner.closed {
            return Err(AuditError::Closed { path: self.path.clone() });
        }
        Ok(())
    }

    fn sign(&self, inner: &mut Inner) -> Result<(), AuditError> {
        let Some(key) = &self.key else { return Ok(()) };
        let prev = hex::encode(inner.prev);
        let when = now().to_rfc3339();
        let public = key.public_hex();
        let head = SignatureHead {
            seq: inner.next_seq,
            prev: &prev,
            when: &when,
            what: SIGNATURE_WHAT,
            signed_lines: inner.next_seq.saturating_sub(1),
            key: &public,
        };
        let mut bytes = serde_json::to_vec(&head).expect("strings and integers serialise");
        // `{...}` -> `{...,"sig":"<hex>"}`: the signed message is everything before `,"sig":"`.
        bytes.pop();
        let sig = hex::encode(key.sign(&bytes));
        bytes.extend_from_slice(format!(",\"sig\":\"{sig}\"}}\n").as_bytes());
        self.write_line(inner, &bytes)?;
        inner.since_signature = 0;
        Ok(())
    }

    fn write_line(&self, inner: &mut Inner, bytes: &[u8]) -> Result<u64, AuditError> {
        let r = inner.file.write_all(bytes).and_then(|()| inner.file.sync_data());
        if let Err(source) = r {
            // A partial line may be on disk: stop here rather than chain onto it.
            inner.broken = Some(source.to_string());
            return Err(AuditError::Io { path: self.path.clone(), source });
        }
        let seq = inner.next_seq;
        inner.prev = sha256(bytes);
        inner.next_seq = seq.saturating_add(1);
        self.write_head(inner, seq)?;
        Ok(seq)
    }

    /// Seals line `seq` (see the module notes): `<log>.head`, replaced atomically.
    fn write_head(&self, inner: &mut Inner, seq: u64) -> Result<(), AuditError> {
        let hash = hex::encode(inner.prev);
        let when = now().to_rfc3339();
        let public = self.key.as_ref().map(|k| k.public_hex());
        let head = HeadLine { seq, line_sha256: &hash, when: &when, key: public.as_deref() };
        let mut bytes = serde_json::to_vec(&head).expect("strings and integers serialise");
        if let Some(key) = &self.key {
            bytes.pop();
            let sig = hex::encode(key.sign(&bytes));
            bytes.extend_from_slice(format!(",\"sig\":\"{sig}\"}}").as_bytes());
        }
        bytes.push(b'\n');
        let path = head_path(&self.path);
        let tmp = path.with_extension("head.tmp");
        let r = write_private(&tmp, &bytes).and_then(|()| fs::rename(&tmp, &path));
        if let Err(source) = r {
            inner.broken = Some(format!("sealing the head: {source}"));
            return Err(AuditError::Io { path, source });
        }
        Ok(())
    }
}

/// Writes `bytes` to a new file at `path` (mode 0600).
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_data()
}

/// What [`repair`] did.
#[derive(Debug)]
pub struct Repair {
    /// Byte offset where the log was cut, and how many bytes were cut.
    pub offset: u64,
    pub cut: u64,
    /// Where the cut bytes are kept.
    pub kept_in: PathBuf,
    /// The sequence number of the `audit-repair` entry that records it.
    pub entry_seq: u64,
}

/// Repairs a log whose last line is torn or not an audit line: moves those bytes into
/// `<log>.cut-<UTC time>` (mode 0600), truncates the log before them, and appends an
/// `audit-repair` entry saying what was cut (offset, length, SHA-256), signed with `key` if
/// given. Refuses a log whose tail is intact ([`AuditError::NothingToRepair`]).
pub fn repair(path: &Path, key: Option<SigningKey>) -> Result<Repair, AuditError> {
    let io_err = |source| AuditError::Io { path: path.to_path_buf(), source };
    let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let offset = match continuation(&mut file, len, path) {
        Ok(_) => return Err(AuditError::NothingToRepair { path: path.to_path_buf() }),
        Err(AuditError::TornTail { offset, .. } | AuditError::BadTail { offset, .. }) => offset,
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
    let mut cut = Vec::new();
    Read::by_ref(&mut file).take(len - offset).read_to_end(&mut cut).map_err(io_err)?;
    let stamp = now().to_rfc3339().replace(':', "");
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".cut-{stamp}"));
    let kept_in = path.with_file_name(name);
    write_private(&kept_in, &cut).map_err(|source| AuditError::Io { path: kept_in.clone(), source })?;
    file.set_len(offset).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    drop(file);
    let log = AuditLog::open(path, key, 0)?;
    let mut e = AuditEntry::new("audit-repair", "ok");
    e.detail = Some(format!(
        "cut {} bytes at byte {offset} (sha256 {}): a torn or damaged last line; kept in {}",
        cut.len(),
        hex::encode(sha256(&cut)),
        kept_in.display()
    ));
    let entry_seq = log.append(e)?;
    log.close()?;
    Ok(Repair { offset, cut: cut.len() as u64, kept_in, entry_seq })
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            eprintln!("tapir: audit log: closing: {e}");
        }
    }
}

/// The last line of the file (with its newline, if any) and its byte offset.
fn read_last_line(file: &mut File, len: u64) -> io::Result<(u64, Vec<u8>)> {
    let window = len.min(MAX_LINE as u64 + 1);
    let start = len - window;
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity(window as usize);
    Read::by_ref(file).take(window).read_to_end(&mut buf)?;
    // Skip the final newline when looking for the one that ends the line before.
    let body_end = if buf.last() == Some(&b'\n') { buf.len() - 1 } else { buf.len() };
    let from = match buf.get(..body_end).and_then(|b| b.iter().rposition(|&c| c == b'\n')) {
        Some(i) => i + 1,
        None if start == 0 => 0,
        None => return Err(io::Error::new(io::ErrorKind::InvalidData, "last line longer than 64 KiB")),
    };
    Ok((start + from as u64, buf.split_off(from)))
}

/// One problem [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number.
    pub line: usize,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    BadJson(String),
    /// `seq` is not the previous line's plus one (a line removed, inserted or moved).
    SequenceGap {
        expected: u64,
        found: u64,
    },
    /// `prev` is not the hash of the line before: that line was changed (or lines removed).
    BadPrevHash,
    BadSignature(String),
    /// Signed, but not by the key the caller trusts.
    WrongKey {
        found: String,
    },
    /// The file does not end with a newline.
    TornLastLine,
    /// No `<log>.head`: lines cut from the end could not be told.
    NoHead,
    /// `<log>.head` unreadable, badly signed, or signed by another key than the lines.
    BadHead(String),
    /// The head seals line `seq`, which is not in the log: the log was cut after line `last`.
    CutBehindHead {
        sealed: u64,
        last: u64,
    },
    /// The line the head seals is not the line in the log.
    HeadMismatch {
        seq: u64,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.line;
        match &self.kind {
            ProblemKind::BadJson(e) => write!(f, "line {n}: bad JSON: {e}"),
            ProblemKind::SequenceGap { expected, found } => write!(
                f,
                "line {n}: sequence gap: expected seq {expected}, found {found} (a line removed, inserted or moved here)"
            ),
            ProblemKind::BadPrevHash if n == 1 => {
                write!(f, "line 1: bad prev hash: not the genesis hash (the head of the log was cut)")
            }
            ProblemKind::BadPrevHash => write!(
                f,
                "line {n}: bad prev hash: it does not match line {} (line {} was edited, or lines removed before line {n})",
                n - 1,
                n - 1
            ),
            ProblemKind::BadSignature(e) => write!(f, "line {n}: bad signature: {e}"),
            ProblemKind::WrongKey { found } => write!(f, "line {n}: signed by key {found}, not the key given"),
            ProblemKind::TornLastLine => write!(f, "line {n}: no newline at the end (truncated or torn)"),
            ProblemKind::NoHead => {
                write!(f, "line {n}: no sealed head (.head file): whether lines were cut from the end cannot be told")
            }
            ProblemKind::BadHead(e) => write!(f, "line {n}: the sealed head: {e}"),
            ProblemKind::CutBehindHead { sealed, last } => write!(
                f,
                "line {n}: CUT: the sealed head names line seq {sealed}, the log ends at seq {last} (lines removed from the end)"
            ),
            ProblemKind::HeadMismatch { seq } => {
                write!(f, "line {n}: the line with seq {seq} is not the one the sealed head names (edited)")
            }
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub lines: usize,
    pub signature_lines: usize,
    /// The last line holding a good signature: it and every line before it are covered.
    pub last_signed: Option<usize>,
    /// Keys (hex) that made good signatures, in order of first use.
    pub keys: Vec<String>,
    /// In line order; empty when the log is intact.
    pub problems: Vec<Problem>,
    /// The sealed head's line and time, when there is a good head.
    pub head: Option<(u64, String)>,
    /// (seq, SHA-256) of each line, for the head check.
    seqs: Vec<(u64, [u8; 32])>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the chain, the sequence and every signature of the log in `bytes`. With
/// `trusted_key` (hex), every signature must also be by that key, and a log with no signature
/// at all is a problem.
pub fn verify_bytes(bytes: &[u8], trusted_key: Option<&str>) -> VerifyReport {
    let mut rep = VerifyReport::default();
    let trusted = trusted_key.map(|k| k.trim().to_ascii_lowercase());
    let mut prev = GENESIS;
    let mut expected: u64 = 1;
    let mut rest = bytes;
    let mut n = 0usize;
    while !rest.is_empty() {
        n += 1;
        let (line, torn) = match rest.iter().position(|&c| c == b'\n') {
            Some(i) => (&rest[..=i], false),
            None => (rest, true),
        };
        rest = &rest[line.len()..];
        let problem = check_line(line, &prev, expected, trusted.as_deref(), &mut rep, n);
        if torn {
            rep.problems.push(Problem { line: n, kind: ProblemKind::TornLastLine });
        }
        if let Ok(seq) | Err((_, Some(seq))) = &problem {
            rep.seqs.push((*seq, sha256(line)));
        }
        match problem {
            Ok(seq) => expected = seq.saturating_add(1),
            Err((kind, seq)) => {
                // Resynchronise on what the line says so one removal is one problem.
                expected = seq.map(|s| s.saturating_add(1)).unwrap_or(expected.saturating_add(1));
                rep.problems.push(Problem { line: n, kind });
            }
        }
        prev = sha256(line);
    }
    rep.lines = n;
    if trusted.is_some() && rep.signature_lines == 0 && rep.problems.is_empty() && n > 0 {
        rep.problems.push(Problem {
            line: n,
            kind: ProblemKind::BadSignature("no signature line in the log, but a key was given".into()),
        });
    }
    rep.problems.sort_by_key(|p| p.line);
    rep
}

/// Checks one line; its seq when good, else the problem and the seq it claims (if any).
fn check_line(
    line: &[u8],
    prev: &[u8; 32],
    expected: u64,
    trusted: Option<&str>,
    rep: &mut VerifyReport,
    n: usize,
) -> Result<u64, (ProblemKind, Option<u64>)> {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    let v: serde_json::Value = serde_json::from_slice(text).map_err(|e| (ProblemKind::BadJson(e.to_string()), None))?;
    let obj = v.as_object().ok_or((ProblemKind::BadJson("not an object".into()), None))?;
    let seq = obj.get("seq").and_then(|s| s.as_u64()).ok_or((ProblemKind::BadJson("no numeric seq".into()), None))?;
    if seq != expected {
        return Err((ProblemKind::SequenceGap { expected, found: seq }, Some(seq)));
    }
    let p = obj.get("prev").and_then(|s| s.as_str()).ok_or((ProblemKind::BadJson("no prev".into()), Some(seq)))?;
    if !p.eq_ignore_ascii_case(&hex::encode(prev)) {
        return Err((ProblemKind::BadPrevHash, Some(seq)));
    }
    if obj.get("what").and_then(|w| w.as_str()) == Some(SIGNATURE_WHAT) {
        rep.signature_lines += 1;
        let key = check_signature(text, obj).map_err(|e| (ProblemKind::BadSignature(e), Some(seq)))?;
        if let Some(t) = trusted {
            if t != key {
                return Err((ProblemKind::WrongKey { found: key }, Some(seq)));
            }
        }
        if !rep.keys.contains(&key) {
            rep.keys.push(key);
        }
        rep.last_signed = Some(n);
    }
    Ok(seq)
}

/// The key (lowercase hex) whose good signature the line holds.
fn check_signature(text: &[u8], obj: &serde_json::Map<String, serde_json::Value>) -> Result<String, String> {
    const MARK: &[u8] = b",\"sig\":\"";
    let at = text.windows(MARK.len()).rposition(|w| w == MARK).ok_or("no \"sig\" field at the end")?;
    let msg = &text[..at];
    let tail = &text[at + MARK.len()..];
    let sig_hex = tail.strip_suffix(b"\"}").ok_or("the line does not end with the \"sig\" field")?;
    let sig = std::str::from_utf8(sig_hex).ok().and_then(|s| hex::decode(s).ok()).ok_or("sig is not hex")?;
    if sig.len() != 64 {
        return Err(format!("sig is {} bytes, not 64", sig.len()));
    }
    let key = obj.get("key").and_then(|k| k.as_str()).ok_or("no key")?.to_ascii_lowercase();
    let public = hex::decode(&key).map_err(|_| "key is not hex".to_string())?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public)
        .verify(msg, &sig)
        .map_err(|_| format!("does not verify with key {key}"))?;
    Ok(key)
}

/// Reads and checks the log at `path` ([`verify_bytes`]) and its sealed head.
pub fn verify(path: &Path, trusted_key: Option<&str>) -> Result<VerifyReport, AuditError> {
    let bytes = fs::read(path).map_err(|source| AuditError::Io { path: path.to_path_buf(), source })?;
    let mut rep = verify_bytes(&bytes, trusted_key);
    let head = match fs::read(head_path(path)) {
        Ok(h) => Some(h),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => return Err(AuditError::Io { path: head_path(path), source }),
    };
    check_head(&mut rep, head.as_deref(), trusted_key);
    rep.problems.sort_by_key(|p| p.line);
    Ok(rep)
}

/// Checks the sealed head against the lines of `rep`.
fn check_head(rep: &mut VerifyReport, head: Option<&[u8]>, trusted: Option<&str>) {
    let n = rep.lines.max(1);
    let mut problem = |kind| rep.problems.push(Problem { line: n, kind });
    let Some(head) = head else {
        if rep.lines > 0 {
            problem(ProblemKind::NoHead);
        }
        return;
    };
    let text = head.strip_suffix(b"\n").unwrap_or(head);
    let v: serde_json::Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        Err(e) => return problem(ProblemKind::BadHead(format!("bad JSON: {e}"))),
    };
    let Some(obj) = v.as_object() else { return problem(ProblemKind::BadHead("not an object".into())) };
    let (Some(seq), Some(hash), when) = (
        obj.get("seq").and_then(|s| s.as_u64()),
        obj.get("line_sha256").and_then(|s| s.as_str()),
        obj.get("when").and_then(|s| s.as_str()).unwrap_or_default().to_string(),
    ) else {
        return problem(ProblemKind::BadHead("no seq or line_sha256".into()));
    };
    if obj.contains_key("sig") {
        match check_signature(text, obj) {
            Ok(key) => {
                let expected = trusted.map(|t| t.trim().to_ascii_lowercase()).or_else(|| rep.keys.last().cloned());
                if expected.is_some_and(|k| k != key) {
                    return problem(ProblemKind::BadHead(format!("signed by key {key}, not the log's")));
                }
            }
            Err(e) => return problem(ProblemKind::BadHead(e)),
        }
    } else if trusted.is_some() {
        // Anyone who can write the files can write an unsigned head: with a trusted key, the
        // head must carry its signature.
        return problem(ProblemKind::BadHead(
            "not signed by the key given (a writer without the key, or a forged head)".into(),
        ));
    }
    // Without a trusted key, an unsigned head (a writer without a key) protects what a hash
    // chain protects: nothing past the last signature line, which the report names.
    let last = rep.seqs.last().map_or(0, |(s, _)| *s);
    match rep.seqs.iter().find(|(s, _)| *s == seq) {
        Some((_, h)) if hex::encode(h).eq_ignore_ascii_case(hash) => rep.head = Some((seq, when)),
        Some(_) => problem(ProblemKind::HeadMismatch { seq }),
        None if seq > last => problem(ProblemKind::CutBehindHead { sealed: seq, last }),
        None => problem(ProblemKind::HeadMismatch { seq }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> AuditEntry {
        AuditEntry {
            who: Some("admf-1".into()),
            xid: Some(format!("xid-{i}")),
            detail: Some("a\nb".into()),
            ..AuditEntry::new("ActivateTask", "ok")
        }
    }

    #[test]
    fn chain_signatures_and_reopen() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.jsonl");
        let key = SigningKey::ephemeral();
        let public = key.public_hex();
        {
            let log = AuditLog::open(&p, Some(key), 2).unwrap();
            for i in 0..3 {
                log.append(entry(i)).unwrap();
            }
        }
        // 1 2 sig(3) 4 sig(5)
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text.lines().all(|l| !l.contains("a\nb")), "newlines inside values are escaped");
        let rep = verify(&p, Some(&public)).unwrap();
        assert!(rep.ok(), "{:?}", rep.problems);
        assert_eq!(rep.last_signed, Some(5));
        // Reopen without a key: the chain continues.
        let log = AuditLog::open(&p, None, 0).unwrap();
        assert_eq!(log.append(entry(9)).unwrap(), 6);
        drop(log);
        let rep = verify(&p, None).unwrap();
        assert!(rep.ok(), "{:?}", rep.problems);
        assert_eq!((rep.lines, rep.last_signed), (6, Some(5)));
    }

    #[test]
    fn a_torn_tail_is_refused_on_open_and_reported() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a");
        AuditLog::open(&p, None, 0).unwrap().append(entry(1)).unwrap();
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"seq\":2").unwrap();
        assert!(matches!(AuditLog::open(&p, None, 0), Err(AuditError::TornTail { .. })));
        let rep = verify(&p, None).unwrap();
        assert_eq!(rep.problems.first().map(|p| p.line), Some(2));
    }

    #[test]
    fn garbage_never_panics() {
        for b in [&b""[..], b"\n", b"{}", b"[1]\n", b"{\"seq\":18446744073709551615,\"prev\":1}\n", b"\xff\xfe\n"] {
            let _ = verify_bytes(b, Some("00"));
        }
    }
}
