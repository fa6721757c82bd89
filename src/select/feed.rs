//! The live association feed: the daemon's control-plane socket, and the journal that makes what
//! it accepted survive a restart.
//!
//! A client writes the same JSON lines as an `--associations` file, one event per line, and gets
//! one reply per non-blank line: `ok N` once the event is durable in the journal and handed to the
//! daemon, or `error N: reason` (N is the 1-based line number on this connection). A bad event does
//! not end the connection; an overlong line, a bad token or a closed daemon does.
//!
//! Access control: a Unix socket is created with mode 0600 (bound in a private directory and
//! renamed into place, so it is never reachable with looser permissions); TCP is accepted only on
//! a loopback address and only with a token, sent as the first line `TOKEN <secret>`. The token is
//! compared in constant time and never appears in a log, an error or a `Debug` output.
//!
//! Bounds: lines of at most [`MAX_LINE`] octets, [`MAX_CONNECTIONS`] clients at a time, the token
//! line within [`TOKEN_TIMEOUT`]. Lines are untrusted input; [`parse_event`] validates them.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc::Sender;

use super::association::{forgettable, over_cap, parse_event, AssocEvent, EventError};
use crate::timestamp::Timestamp;

/// Longest accepted line, newline excluded. An `instance.start` with many ports stays far below.
pub const MAX_LINE: usize = 64 * 1024;
/// Clients served at once; one more is told `error 0: too many connections` and closed.
pub const MAX_CONNECTIONS: usize = 8;
/// Time a TCP client has to send its `TOKEN` line.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("feed address {addr:?}: {reason}")]
    BadAddr { addr: String, reason: &'static str },
    #[error("feed address {addr}: not a loopback address; the feed is local only")]
    NotLoopback { addr: SocketAddr },
    #[error("feed on {addr}: a TCP feed needs a token")]
    TokenRequired { addr: SocketAddr },
    #[error("feed: cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("feed socket {path}: exists and is not a socket; refusing to replace it")]
    NotASocket { path: String },
    #[error("journal {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {path}:{line}: {reason}")]
    JournalCorrupt { path: String, line: usize, reason: String },
}

/// Where the feed listens. The TCP token is a secret: `Debug` and `Display` leave it out.
#[derive(Clone, PartialEq, Eq)]
pub enum FeedAddr {
    Unix(PathBuf),
    Tcp(SocketAddr, String /* token */),
}

impl FeedAddr {
    /// `unix:/run/tapir/feed.sock` or `tcp:127.0.0.1:PORT` / `tcp:[::1]:PORT`. A TCP address gets
    /// an empty token here (secrets do not belong on a command line); set it with
    /// [`FeedAddr::with_token`] or pass it to [`serve_feed`].
    pub fn parse(s: &str) -> Result<FeedAddr, FeedError> {
        let bad = |reason| FeedError::BadAddr { addr: s.to_string(), reason };
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() || p.contains('\0') {
                return Err(bad("empty socket path or NUL in it"));
            }
            Ok(FeedAddr::Unix(PathBuf::from(p)))
        } else if let Some(a) = s.strip_prefix("tcp:") {
            let addr: SocketAddr = a.parse().map_err(|_| bad("expected tcp:IP:PORT"))?;
            if !addr.ip().is_loopback() {
                return Err(FeedError::NotLoopback { addr });
            }
            Ok(FeedAddr::Tcp(addr, String::new()))
        } else {
            Err(bad("expected unix:PATH or tcp:IP:PORT"))
        }
    }

    /// The same address with this token (ignored for a Unix socket, whose access is its mode).
    pub fn with_token(self, token: impl Into<String>) -> FeedAddr {
        match self {
            FeedAddr::Tcp(a, _) => FeedAddr::Tcp(a, token.into()),
            u => u,
        }
    }
}

impl fmt::Display for FeedAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            FeedAddr::Tcp(a, _) => write!(f, "tcp:{a}"),
        }
    }
}

impl fmt::Debug for FeedAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedAddr::Unix(p) => f.debug_tuple("Unix").field(p).finish(),
            FeedAddr::Tcp(a, _) => f.debug_tuple("Tcp").field(a).field(&"<token redacted>").finish(),
        }
    }
}

/// Constant-time equality that also hides the lengths: both sides are hashed first.
fn token_eq(given: &[u8], expected: &[u8]) -> bool {
    let a = ring::digest::digest(&ring::digest::SHA256, given);
    let b = ring::digest::digest(&ring::digest::SHA256, expected);
    let diff = a.as_ref().iter().zip(b.as_ref()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // A zero-length expected token would accept the empty string: never allowed.
    diff == 0 && !expected.is_empty()
}

/// The append-only journal of accepted events: one JSON line per event, each fsync'd before the
/// event is acknowledged or applied.
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    /// Appends since it was opened or last compacted.
    appended: AtomicU64,
    compact_every: u64,
}

/// Appends after which [`Journal::compact_due`] says a compaction is due (about 10 MB of RADIUS
/// events): rare enough that rewriting the file costs little per event.
pub const COMPACT_EVERY: u64 = 65_536;

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens (creating with mode 0600) the journal for appending. A torn last line (what
    /// [`load_journal`] counts in `torn`: a crash mid-append) is cut off first so that it does
    /// not become a corrupt line in the middle; a good last line without its newline gets one.
    /// Call [`load_journal`] before this to count it.
    pub fn open(path: &Path) -> Result<Journal, FeedError> {
        let io = |source| FeedError::Io { path: path.display().to_string(), source };
        let mut file = OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        // The last non-blank line, as load_journal sees it.
        let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |p| p + 1);
        let start = bytes[..end].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if end > 0 {
            let last = &bytes[start..end];
            let good = std::str::from_utf8(last).ok().is_some_and(|s| parse_event(s, "journal", 0).is_ok());
            if !good {
                file.set_len(start as u64).map_err(io)?;
                file.sync_all().map_err(io)?;
            } else if !bytes[end..].contains(&b'\n') {
                file.write_all(b"\n").map_err(io)?;
                file.sync_data().map_err(io)?;
            }
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            appended: AtomicU64::new(0),
            compact_every: COMPACT_EVERY,
        })
    }

    /// Compaction due after `n` appends instead of [`COMPACT_EVERY`].
    pub fn with_compact_every(mut self, n: u64) -> Journal {
        self.compact_every = n.max(1);
        self
    }

    /// Whether enough events were appended since the journal was opened or compacted.
    pub fn compact_due(&self) -> bool {
        self.appended.load(Ordering::Relaxed) >= self.compact_every
    }

    /// [`compact_journal`] on this journal, appends held meanwhile; returns the events forgotten.
    pub fn compact(&self, until: Timestamp) -> Result<usize, FeedError> {
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        self.appended.store(0, Ordering::Relaxed);
        let n = compact_journal(&self.path, until)?;
        if n > 0 {
            // The old handle points at the replaced file.
            let io = |source| FeedError::Io { path: self.path.display().to_string(), source };
            *f = OpenOptions::new().append(true).mode(0o600).open(&self.path).map_err(io)?;
        }
        Ok(n)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `ev.raw` as one line and waits until it is on disk. Blocking: from async code, call
    /// it through `spawn_blocking`.
    pub fn append(&self, ev: &AssocEvent) -> Result<(), FeedError> {
        let mut line = ev.raw.to_string();
        line.push('\n');
        // A poisoned lock means a panic mid-append in another thread; the file itself is fine and
        // a torn line is handled at the next start.
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let io = |source| FeedError::Io { path: self.path.display().to_string(), source };
        f.write_all(line.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)?;
        self.appended.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Rewrites the journal at `path` without the events that change nothing when it is replayed
/// ([`forgettable`]: ended access sessions whose stop is at or before `until`, Interim-Update
/// repeats), keeping the others in journal order. Crash-safe: the new journal is written beside
/// it, synced, renamed over it and the directory synced, so a crash leaves the old or the new
/// one. A torn last line is dropped, as [`Journal::open`] would. Nothing is written when nothing
/// can be forgotten. Returns the events forgotten.
pub fn compact_journal(path: &Path, until: Timestamp) -> Result<usize, FeedError> {
    compact_journal_capped(path, until, MAX_JOURNAL_EVENTS)
}

/// Events a compacted journal keeps at most, as the pipeline's history
/// (the pipeline's `MAX_HELD_EVENTS`): past it, after forgetting, the oldest open access
/// sessions' starts go too (a flood of starts without stops), down to three quarters of it.
pub const MAX_JOURNAL_EVENTS: usize = 1 << 18;

/// [`compact_journal`] with another cap than [`MAX_JOURNAL_EVENTS`].
pub fn compact_journal_capped(path: &Path, until: Timestamp, cap: usize) -> Result<usize, FeedError> {
    let replay = load_journal(path)?;
    // Applied by time, stably: judge them in that order.
    let mut order: Vec<usize> = (0..replay.events.len()).collect();
    order.sort_by_key(|&i| replay.events.get(i).map(|e| e.ts));
    let by_time: Vec<&AssocEvent> = order.iter().filter_map(|&i| replay.events.get(i)).collect();
    let mut verdict = forgettable(&by_time, until);
    over_cap(&by_time, &mut verdict, cap, |_| true);
    let mut forget = vec![false; replay.events.len()];
    for (&i, &f) in order.iter().zip(&verdict) {
        if let Some(slot) = forget.get_mut(i) {
            *slot = f;
        }
    }
    let n = forget.iter().filter(|f| **f).count();
    if n == 0 {
        return Ok(0);
    }
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| FeedError::Io { path: p, source }
    };
    let tmp = path.with_extension("compact.tmp");
    let mut text = String::new();
    for (ev, f) in replay.events.iter().zip(&forget) {
        if !f {
            text.push_str(&ev.raw.to_string());
            text.push('\n');
        }
    }
    let mut out =
        OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
    out.write_all(text.as_bytes()).map_err(io(&tmp))?;
    out.sync_all().map_err(io(&tmp))?;
    drop(out);
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(n)
}

/// What a journal replays to.
#[derive(Debug, Default)]
pub struct JournalReplay {
    /// In journal (acceptance) order; sort stably by `ts` to apply them like `--associations`.
    pub events: Vec<AssocEvent>,
    /// Torn last lines ignored (0 or 1).
    pub torn: usize,
}

/// Reads a journal back. A missing file is an empty journal (first start). A last line that does
/// not parse (cut by a crash, with or without its newline) is ignored and counted in `torn`; a bad
/// line before it is corruption and an error, since silently losing an association could lose an
/// interception.
pub fn load_journal(path: &Path) -> Result<JournalReplay, FeedError> {
    let p = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(JournalReplay::default()),
        Err(source) => return Err(FeedError::Io { path: p, source }),
    };
    let mut lines: Vec<(usize, &[u8])> = bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.iter().all(|b| b.is_ascii_whitespace()))
        .collect();
    let mut replay = JournalReplay::default();
    let last = lines.pop();
    for (n, l) in lines {
        let ev = std::str::from_utf8(l)
            .map_err(|_| "not UTF-8".to_string())
            .and_then(|s| parse_event(s, &p, n).map_err(|e| reason(&e)))
            .map_err(|reason| FeedError::JournalCorrupt { path: p.clone(), line: n, reason })?;
        replay.events.push(ev);
    }
    if let Some((n, l)) = last {
        match std::str::from_utf8(l).ok().and_then(|s| parse_event(s, &p, n).ok()) {
            Some(ev) => replay.events.push(ev),
            None => replay.torn = 1,
        }
    }
    Ok(replay)
}

/// An [`EventError`] without its `file:line` prefix (the reply carries the line).
fn reason(e: &EventError) -> String {
    match e {
        EventError::Io { source, .. } => source.to_string(),
        EventError::Json { message, .. } => format!("not a JSON object: {message}"),
        EventError::Missing { field, .. } => format!("missing field {field:?}"),
        EventError::BadField { field, value, reason, .. } => format!("bad {field:?} value {value}: {reason}"),
        EventError::UnknownEvent { event, .. } => format!("unknown event {event:?}"),
    }
}

/// A bound feed socket, before serving: binding first lets the daemon fail early and tests learn
/// the port.
pub enum FeedListener {
    Unix { listener: UnixListener, path: PathBuf, token: Option<String> },
    Tcp { listener: TcpListener, token: String },
}

impl fmt::Debug for FeedListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedListener::Unix { path, .. } => write!(f, "FeedListener(unix:{})", path.display()),
            FeedListener::Tcp { listener, .. } => write!(f, "FeedListener(tcp:{:?})", listener.local_addr().ok()),
        }
    }
}

impl FeedListener {
    /// Binds `addr`. `token` overrides the one in a `FeedAddr::Tcp`; TCP without a non-empty
    /// token is refused. On a Unix socket a token is optional and, if given, required as well.
    pub async fn bind(addr: &FeedAddr, token: Option<String>) -> Result<FeedListener, FeedError> {
        let token = token.filter(|t| !t.is_empty());
        match addr {
            FeedAddr::Tcp(a, t) => {
                if !a.ip().is_loopback() {
                    return Err(FeedError::NotLoopback { addr: *a });
                }
                let token = token.or_else(|| Some(t.clone()).filter(|t| !t.is_empty()));
                let token = token.ok_or(FeedError::TokenRequired { addr: *a })?;
                let listener =
                    TcpListener::bind(a).await.map_err(|source| FeedError::Bind { addr: a.to_string(), source })?;
                Ok(FeedListener::Tcp { listener, token })
            }
            FeedAddr::Unix(path) => {
                let listener = bind_unix_private(path)?;
                Ok(FeedListener::Unix { listener, path: path.clone(), token })
            }
        }
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            FeedListener::Tcp { listener, .. } => listener.local_addr().ok(),
            FeedListener::Unix { .. } => None,
        }
    }
}

/// Binds a Unix socket at `path` that is 0600 from the moment it is reachable: bound inside a
/// fresh 0700 directory next to it, chmod'ed, then renamed over `path` (replacing a stale socket,
/// never another kind of file).
fn bind_unix_private(path: &Path) -> Result<UnixListener, FeedError> {
    let shown = path.display().to_string();
    let bind_err = |source| FeedError::Bind { addr: format!("unix:{shown}"), source };
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => return Err(FeedError::NotASocket { path: shown }),
        _ => {}
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = tempfile::Builder::new().prefix(".tapir-feed-").tempdir_in(parent).map_err(bind_err)?;
    let tmp = dir.path().join("s");
    let listener = UnixListener::bind(&tmp).map_err(bind_err)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    std::fs::rename(&tmp, path).map_err(bind_err)?;
    Ok(listener)
}

/// Binds `addr` and serves the feed until `shutdown` completes (see the module documentation).
pub async fn serve_feed(
    addr: FeedAddr,
    token: Option<String>,
    journal: Arc<Journal>,
    tx: Sender<AssocEvent>,
    shutdown: impl Future,
) -> Result<(), FeedError> {
    let listener = FeedListener::bind(&addr, token).await?;
    serve_feed_on(listener, journal, tx, shutdown).await;
    Ok(())
}

/// Serves an already bound feed until `shutdown` completes; connections still open then are
/// dropped (an event being journalled finishes its fsync; its client may miss the `ok`). The Unix
/// socket file is removed at the end.
pub async fn serve_feed_on(
    listener: FeedListener,
    journal: Arc<Journal>,
    tx: Sender<AssocEvent>,
    shutdown: impl Future,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Both arms yield a boxed duplex stream and the token it must present.
        let accepted: std::io::Result<(Box<dyn Duplex>, Option<String>)> = tokio::select! {
            _ = &mut shutdown => break,
            r = accept(&listener) => r,
        };
        let (stream, token) = match accepted {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (journal, tx) = (journal.clone(), tx.clone());
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                conns.spawn(async move {
                    let _permit = permit;
                    connection(stream, token, journal, tx).await;
                });
            }
            Err(_) => {
                conns.spawn(async move {
                    let mut s = stream;
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        s.write_all(b"error 0: too many connections\n").await?;
                        s.shutdown().await
                    })
                    .await;
                });
            }
        }
        while conns.try_join_next().is_some() {}
    }
    conns.abort_all();
    if let FeedListener::Unix { path, .. } = &listener {
        let _ = std::fs::remove_file(path);
    }
}

trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

async fn accept(l: &FeedListener) -> std::io::Result<(Box<dyn Duplex>, Option<String>)> {
    match l {
        FeedListener::Unix { listener, token, .. } => {
            let (s, _) = listener.accept().await?;
            Ok((Box::new(s), token.clone()))
        }
        FeedListener::Tcp { listener, token } => {
            let (s, _) = listener.accept().await?;
            Ok((Box::new(s), Some(token.clone())))
        }
    }
}

enum Line {
    Eof,
    TooLong,
    Text,
}

/// Reads one line into `buf` (newline stripped) without ever holding more than `MAX_LINE + 1`
/// octets of it.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    buf.clear();
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() { Line::Eof } else { Line::Text });
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(p) => (p, true),
            None => (avail.len(), false),
        };
        if buf.len().saturating_add(take) > MAX_LINE {
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(&avail[..take]);
        r.consume(if done { take + 1 } else { take });
        if done {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Line::Text);
        }
    }
}

async fn connection(stream: Box<dyn Duplex>, token: Option<String>, journal: Arc<Journal>, tx: Sender<AssocEvent>) {
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::new(rd);
    let mut buf = Vec::new();
    let mut n = 0usize;
    if let Some(expected) = token {
        n += 1;
        let ok = match tokio::time::timeout(TOKEN_TIMEOUT, read_line(&mut rd, &mut buf)).await {
            Ok(Ok(Line::Text)) => buf.strip_prefix(b"TOKEN ").is_some_and(|t| token_eq(t, expected.as_bytes())),
            _ => false,
        };
        // The line may be a mistyped secret: never echoed.
        buf.iter_mut().for_each(|b| *b = 0);
        if !ok {
            let _ = wr.write_all(b"error 1: bad or missing token\n").await;
            let _ = wr.shutdown().await;
            return;
        }
        if wr.write_all(b"ok 1\n").await.is_err() {
            return;
        }
    }
    loop {
        let line = match read_line(&mut rd, &mut buf).await {
            Ok(l) => l,
            Err(_) => return,
        };
        n += 1;
        let reply = match line {
            Line::Eof => break,
            Line::TooLong => {
                let _ = wr.write_all(format!("error {n}: line longer than {MAX_LINE} octets\n").as_bytes()).await;
                break;
            }
            Line::Text if buf.iter().all(|b| b.is_ascii_whitespace()) => continue,
            Line::Text => match std::str::from_utf8(&buf) {
                Err(_) => format!("error {n}: not UTF-8\n"),
                Ok(text) => match parse_event(text, "feed", n) {
                    Err(e) => format!("error {n}: {}\n", reason(&e)),
                    Ok(ev) => {
                        let j = journal.clone();
                        let (ev, res) = match tokio::task::spawn_blocking(move || {
                            let r = j.append(&ev);
                            (ev, r)
                        })
                        .await
                        {
                            Ok(x) => x,
                            Err(_) => return,
                        };
                        if let Err(e) = res {
                            format!("error {n}: {e}\n")
                        } else if tx.send(ev).await.is_err() {
                            let _ = wr.write_all(format!("error {n}: daemon is shutting down\n").as_bytes()).await;
                            break;
                        } else {
                            format!("ok {n}\n")
                        }
                    }
                },
            },
        };
        if wr.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(matches!(FeedAddr::parse("unix:/run/x.sock"), Ok(FeedAddr::Unix(p)) if p == Path::new("/run/x.sock")));
        assert!(
            matches!(FeedAddr::parse("tcp:127.0.0.1:7000"), Ok(FeedAddr::Tcp(a, t)) if a.port() == 7000 && t.is_empty())
        );
        assert!(matches!(FeedAddr::parse("tcp:[::1]:7000"), Ok(FeedAddr::Tcp(..))));
        assert!(matches!(FeedAddr::parse("tcp:0.0.0.0:7000"), Err(FeedError::NotLoopback { .. })));
        assert!(matches!(FeedAddr::parse("tcp:192.0.2.1:7000"), Err(FeedError::NotLoopback { .. })));
        assert!(matches!(FeedAddr::parse("tcp:[::ffff:127.0.0.1]:7000"), Err(FeedError::NotLoopback { .. })));
        assert!(matches!(FeedAddr::parse("unix:"), Err(FeedError::BadAddr { .. })));
        assert!(matches!(FeedAddr::parse("udp:127.0.0.1:1"), Err(FeedError::BadAddr { .. })));
        let a = FeedAddr::parse("tcp:127.0.0.1:7000").unwrap().with_token("s3cr3t-tok");
        assert!(!format!("{a:?} {a}").contains("s3cr3t"));
    }

    #[test]
    fn token_comparison() {
        assert!(token_eq(b"abc", b"abc"));
        assert!(!token_eq(b"abd", b"abc"));
        assert!(!token_eq(b"abcd", b"abc"));
        assert!(!token_eq(b"", b""));
    }
}
