//! The live association feed driven by real clients (socat on the Unix socket, ncat on loopback
//! TCP) with the events of pcaps/seed.events.jsonl, and its journal across restarts.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tapir::select::feed::{load_journal, serve_feed_on, FeedAddr, FeedError, FeedListener, Journal, MAX_LINE};
use tapir::select::{parse_event, AssocEvent};
use tokio::sync::mpsc;

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/seed.events.jsonl");

fn seed_lines() -> Vec<String> {
    std::fs::read_to_string(SEED).unwrap().lines().map(str::to_string).collect()
}

/// What must survive: the time, the typed event and the line as parsed (not the line number,
/// which is per connection or per journal).
fn essence(e: &AssocEvent) -> (tapir::timestamp::Timestamp, tapir::select::AssocEventKind, serde_json::Value) {
    (e.ts, e.kind.clone(), e.raw.clone())
}

struct Feed {
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    rx: mpsc::Receiver<AssocEvent>,
    port: Option<u16>,
}

impl Feed {
    fn start(addr: FeedAddr, token: Option<String>, journal: &Path) -> Result<Feed, FeedError> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = rt.block_on(FeedListener::bind(&addr, token))?;
        let port = listener.local_addr().map(|a| a.port());
        let journal = Arc::new(Journal::open(journal)?);
        let (tx, rx) = mpsc::channel(1000);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(serve_feed_on(listener, journal, tx, async move {
            let _ = stopped.await;
        }));
        Ok(Feed { rt, stop: Some(stop), task: Some(task), rx, port })
    }

    fn events(&mut self) -> Vec<AssocEvent> {
        std::iter::from_fn(|| self.rx.try_recv().ok()).collect()
    }

    fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            self.rt.block_on(t).unwrap();
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a client command with `input` on stdin, returns its stdout.
fn client(cmd: &mut Command, input: &str) -> String {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("client");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn socat(sock: &Path, input: &str) -> String {
    // -t: after sending everything, wait for the replies (each follows an fsync).
    client(Command::new("socat").args(["-t", "30", "-"]).arg(format!("UNIX-CONNECT:{}", sock.display())), input)
}

fn ncat_tcp(port: u16, input: &str) -> String {
    client(Command::new("ncat").args(["127.0.0.1", &port.to_string()]), input)
}

#[test]
fn unix_feed_with_socat_journal_replays_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("feed.sock");
    let jpath = dir.path().join("journal.jsonl");
    let seed = seed_lines();
    assert_eq!(seed.len(), 8);

    let mut feed = Feed::start(FeedAddr::parse(&format!("unix:{}", sock.display())).unwrap(), None, &jpath).unwrap();
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // Seed lines 1-3, a line without "ip", a non-JSON line, a blank line, seed lines 4-8.
    let mut input = seed[..3].join("\n");
    input.push_str("\n{\"time\":\"2026-11-22T17:08:00Z\",\"event\":\"access.start\",\"subscriber\":\"joe\"}\n");
    input.push_str("hello\n\n");
    input.push_str(&seed[3..].join("\n"));
    input.push('\n');
    let replies = socat(&sock, &input);
    let lines: Vec<&str> = replies.lines().collect();
    assert_eq!(lines.len(), 10, "{replies}");
    assert_eq!(&lines[..3], &["ok 1", "ok 2", "ok 3"]);
    assert_eq!(lines[3], "error 4: missing field \"ip\"");
    assert!(lines[4].starts_with("error 5: not a JSON object"), "{}", lines[4]);
    assert_eq!(&lines[5..], &["ok 7", "ok 8", "ok 9", "ok 10", "ok 11"]);

    let want: Vec<_> = seed.iter().enumerate().map(|(i, l)| essence(&parse_event(l, "seed", i + 1).unwrap())).collect();
    let got: Vec<_> = feed.events().iter().map(essence).collect();
    assert_eq!(got, want);
    let lines_seen: Vec<usize> = {
        // Line numbers are those of the connection: the blank and bad lines count.
        let mut f2 = Feed::start(FeedAddr::Unix(dir.path().join("f2.sock")), None, &dir.path().join("j2")).unwrap();
        socat(&dir.path().join("f2.sock"), &format!("\n{}\n", seed[0]));
        f2.events().iter().map(|e| e.line).collect()
    };
    assert_eq!(lines_seen, vec![2]);

    feed.stop();
    assert!(!sock.exists(), "the socket file is removed at shutdown");

    // Restart: the journal gives back the same events, in acceptance order.
    let replay = load_journal(&jpath).unwrap();
    assert_eq!(replay.torn, 0);
    assert_eq!(replay.events.iter().map(essence).collect::<Vec<_>>(), want);

    // A crash mid-append leaves a torn line: ignored and counted, then cut by the next open.
    std::fs::OpenOptions::new().append(true).open(&jpath).unwrap().write_all(b"{\"time\":\"2026-11-").unwrap();
    let replay = load_journal(&jpath).unwrap();
    assert_eq!((replay.events.len(), replay.torn), (8, 1));
    let mut feed = Feed::start(FeedAddr::Unix(sock.clone()), None, &jpath).unwrap();
    let extra = r#"{"time":"2026-11-22T18:00:00Z","event":"instance.stop","instance":"vm-42"}"#;
    assert_eq!(socat(&sock, &format!("{extra}\n")), "ok 1\n");
    feed.stop();
    let replay = load_journal(&jpath).unwrap();
    assert_eq!(replay.torn, 0);
    let mut want2 = want.clone();
    want2.push(essence(&parse_event(extra, "x", 1).unwrap()));
    assert_eq!(replay.events.iter().map(essence).collect::<Vec<_>>(), want2);

    // A torn line that did get its newline (zeros from a crashed write), then blank lines: also
    // counted, and cut before the next append so it never becomes a corrupt middle line.
    std::fs::OpenOptions::new().append(true).open(&jpath).unwrap().write_all(b"\0\0\0\n\n").unwrap();
    assert_eq!(load_journal(&jpath).unwrap().torn, 1);
    let journal = Journal::open(&jpath).unwrap();
    journal.append(&parse_event(extra, "x", 1).unwrap()).unwrap();
    drop(journal);
    let replay = load_journal(&jpath).unwrap();
    assert_eq!((replay.events.len(), replay.torn), (10, 0));
    // A good last line without its newline is kept, and the next append starts a new line.
    let text = std::fs::read_to_string(&jpath).unwrap();
    std::fs::write(&jpath, text.trim_end()).unwrap();
    let journal = Journal::open(&jpath).unwrap();
    journal.append(&parse_event(extra, "x", 1).unwrap()).unwrap();
    drop(journal);
    assert_eq!(load_journal(&jpath).unwrap().events.len(), 11);
}

#[test]
fn tcp_feed_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let jpath = dir.path().join("journal.jsonl");
    let secret = "s3cr3t-feed-token-0123456789";
    let addr = FeedAddr::parse("tcp:127.0.0.1:0").unwrap();
    // No token, no TCP feed.
    assert!(matches!(Feed::start(addr.clone(), None, &jpath), Err(FeedError::TokenRequired { .. })));
    let mut feed = Feed::start(addr.with_token(secret), None, &jpath).unwrap();
    let port = feed.port.unwrap();
    let seed = seed_lines();

    let replies = ncat_tcp(port, &format!("TOKEN {secret}\n{}\n{}\n", seed[0], seed[4]));
    assert_eq!(replies, "ok 1\nok 2\nok 3\n");
    assert_eq!(feed.events().len(), 2);

    for bad in [format!("TOKEN {secret}x"), "TOKEN ".to_string(), format!("token {secret}"), seed[1].clone()] {
        let replies = ncat_tcp(port, &format!("{bad}\n{}\n", seed[1]));
        assert_eq!(replies, "error 1: bad or missing token\n", "for {bad:?}");
        assert!(!replies.contains(secret));
    }
    assert!(feed.events().is_empty(), "nothing accepted without the right token");
    feed.stop();
    assert_eq!(load_journal(&jpath).unwrap().events.len(), 2);
}

#[test]
fn bounds_line_length_and_connections() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("feed.sock");
    let mut feed = Feed::start(FeedAddr::Unix(sock.clone()), None, &dir.path().join("j")).unwrap();

    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let big = vec![b'x'; MAX_LINE + 10];
    // The server may close before reading all of it: a write error is fine.
    let _ = s.write_all(&big);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert_eq!(out, format!("error 1: line longer than {MAX_LINE} octets\n"));

    // A line of exactly MAX_LINE octets is read (and refused as JSON, not as too long).
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = vec![b' '; MAX_LINE - 2];
    line.insert(0, b'{');
    line.push(b'}');
    line.push(b'\n');
    s.write_all(&line).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(out, "error 1: missing field \"time\"\n");

    // Eight idle clients hold every slot; the ninth is told so.
    let idle: Vec<UnixStream> =
        (0..tapir::select::feed::MAX_CONNECTIONS).map(|_| UnixStream::connect(&sock).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut ninth = UnixStream::connect(&sock).unwrap();
    ninth.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = String::new();
    ninth.read_to_string(&mut out).unwrap();
    assert_eq!(out, "error 0: too many connections\n");
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(socat(&sock, &format!("{}\n", seed_lines()[0])), "ok 1\n", "slots come back");
    assert_eq!(feed.events().len(), 1);
}

#[test]
fn corrupt_journal_line_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let seed = seed_lines();
    std::fs::write(&j, format!("{}\nnot json\n{}\n", seed[0], seed[1])).unwrap();
    match load_journal(&j) {
        Err(e @ FeedError::JournalCorrupt { line: 2, .. }) => assert!(e.to_string().contains(":2:")),
        other => panic!("{other:?}"),
    }
    // A missing journal is a first start.
    let r = load_journal(&dir.path().join("none")).unwrap();
    assert_eq!((r.events.len(), r.torn), (0, 0));
    // An existing regular file is never replaced by the socket.
    let f = dir.path().join("plain");
    std::fs::write(&f, "x").unwrap();
    assert!(matches!(Feed::start(FeedAddr::Unix(f.clone()), None, &j), Err(FeedError::NotASocket { .. })));
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "x");
}

/// An event line at `min` minutes after 2027-01-15T08:00:00Z.
fn line(min: i64, what: &str, who: &str, ip: &str) -> String {
    let t = tapir::timestamp::Timestamp::from_secs(1_800_000_000 + min * 60).to_rfc3339();
    format!(r#"{{"time":"{t}","event":"{what}","subscriber":"{who}","ip":"{ip}"}}"#)
}

#[test]
fn journal_compaction_forgets_ended_sessions_and_repeats_and_keeps_the_rest() {
    use tapir::select::feed::compact_journal;
    const EVERY: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("associations.journal");
    let image = r#"{"time":"2027-01-15T08:00:30Z","event":"image.create","image":"img-9","owner":"joe"}"#;
    // Journal (acceptance) order is not time order: ann's stop was accepted before bob's start.
    let lines = [
        line(0, "access.start", "ann", "10.0.0.1"), // ended at 20 (before `until`): forgotten
        line(5, "access.start", "ann", "10.0.0.1"), // Interim-Update repeat: forgotten
        line(20, "access.stop", "ann", "10.0.0.1"), // forgotten
        line(1, "access.start", "bob", "10.0.0.2"), // open: kept
        line(10, "access.start", "bob", "10.0.0.2"), // repeat: forgotten
        image.to_string(),                          // not an access event: kept
        line(40, "access.start", "cat", "10.0.0.3"), // ends at 90, after `until`: kept
        line(90, "access.stop", "cat", "10.0.0.3"), // kept
        line(25, "access.stop", "dan", "10.0.0.4"), // ends nothing: forgotten
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let until = tapir::timestamp::Timestamp::from_secs(1_800_000_000 + 60 * 60);
    assert_eq!(compact_journal(&path, until).unwrap(), 5);
    let kept: Vec<_> = load_journal(&path).unwrap().events.iter().map(essence).collect();
    let want: Vec<_> = [&lines[3], &lines[5], &lines[6], &lines[7]]
        .iter()
        .map(|l| essence(&parse_event(l, "w", 1).unwrap()))
        .collect();
    assert_eq!(kept, want);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(compact_journal(&path, until).unwrap(), 0, "nothing more to forget");

    // A journal in use says a compaction is due after so many appends (COMPACT_EVERY in the
    // daemon), and appends after it go to the new file.
    let j = Journal::open(&path).unwrap().with_compact_every(EVERY);
    let ev = |l: &str| parse_event(l, "feed", 1).unwrap();
    for i in 0..EVERY / 2 {
        assert!(!j.compact_due());
        let ip = format!("10.1.{}.{}", i / 250, i % 250 + 1);
        j.append(&ev(&line(100, "access.start", &format!("u{i}"), &ip))).unwrap();
        j.append(&ev(&line(101, "access.stop", &format!("u{i}"), &ip))).unwrap();
    }
    assert!(j.compact_due());
    let far = tapir::timestamp::Timestamp::from_secs(1_800_000_000 + 3600 * 24);
    assert_eq!(j.compact(far).unwrap() as u64, EVERY + 2, "the sessions and cat's");
    assert!(!j.compact_due());
    j.append(&ev(&line(200, "access.start", "eve", "10.0.0.5"))).unwrap();
    drop(j);
    let after: Vec<String> = load_journal(&path)
        .unwrap()
        .events
        .iter()
        .map(|e| e.raw["subscriber"].as_str().unwrap_or("-").to_string())
        .collect();
    assert_eq!(after, ["bob", "-", "eve"]);
}

/// A flood of starts without stops cannot grow the journal past its cap either: after
/// forgetting, the oldest open sessions' starts go, down to three quarters of the cap.
#[test]
fn journal_compaction_caps_a_flood_of_open_sessions() {
    use tapir::select::feed::compact_journal_capped;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("associations.journal");
    let image = r#"{"time":"2027-01-15T08:00:00Z","event":"image.create","image":"img-9","owner":"joe"}"#;
    let mut lines = vec![image.to_string()];
    lines.extend((0..100).map(|i| line(i, "access.start", &format!("f{i}"), &format!("10.8.0.{}", i + 1))));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let until = tapir::timestamp::Timestamp::from_secs(1_800_000_000);
    assert_eq!(compact_journal_capped(&path, until, 40).unwrap(), 71, "101 lines down to 30");
    let kept: Vec<String> = load_journal(&path)
        .unwrap()
        .events
        .iter()
        .map(|e| e.raw["subscriber"].as_str().or(e.raw["image"].as_str()).unwrap().to_string())
        .collect();
    let want: Vec<String> = std::iter::once("img-9".to_string()).chain((71..100).map(|i| format!("f{i}"))).collect();
    assert_eq!(kept, want, "the image and the 29 newest sessions");
}
