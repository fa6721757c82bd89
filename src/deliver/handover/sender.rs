//! The I/O side: one tokio task per (LEA, channel) streams its spool over TCP or mutual TLS.
//! The same task streams a POI's X2/X3 to its MDF: what differs (framing, keep-alives and their
//! answers) is a [`Link`]; [`EtsiLink`] is HI2/HI3's.
//!
//! Reconnects with exponential backoff (100 ms doubling, capped at 5 s). Keep-alive TRI PDUs
//! serve two purposes: the idle keep-alive of TS 102 232-1 clause 6.3 (no answer within the
//! timeout: reconnect), and the delivery confirmation that moves the spool's persisted offset
//! (see `spool.rs`). Keep-alives from the LEA are answered with the same header.
//!
//! Incoming bytes are untrusted: framing is length-checked, a TLV longer than 64 KiB or one that
//! does not decode closes the connection; nothing read from the LEA can panic the task.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};
// tokio's clock, not the system's: the keep-alive schedule runs on the runtime's time, which
// a test can pause and advance (virtual time), as it does below.
use tokio::time::Instant;

use super::config::TlsFiles;
use super::spool::Spool;
use crate::deliver::etsi::ber::Reader;
use crate::deliver::etsi::decode::decode_pdu;
use crate::deliver::etsi::{Encoder, PduHeader};
use crate::deliver::x2x3::pdu as x2x3;
use crate::timestamp::Timestamp;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes sent before a keep-alive asks for confirmation (bounds what a loss makes us resend).
const PROBE_EVERY: u64 = 1 << 20;
/// Least wall-clock time between two keep-alives sent to confirm delivery. Records come in
/// bursts (a replay's capture-time gaps, a live link's quiet moments): without it, every drained
/// burst would cost a keep-alive, so their number would follow the traffic, not the clock.
const PROBE_MIN_GAP: Duration = Duration::from_millis(500);
/// Bytes per second an LEMF is assumed to read at least, when it owes a keep-alive response.
const MIN_LEMF_RATE: u64 = 50_000;
const READ_BATCH: usize = 256 << 10;
const MAX_INCOMING_PDU: usize = 64 << 10;

/// One channel's spool and what its sender reports.
#[derive(Debug)]
pub struct ChannelShared {
    pub spool: Mutex<Spool>,
    pub notify: Notify,
    pub connected: AtomicBool,
    /// PDUs written to the socket (resends after a loss count again).
    pub sent_pdus: AtomicU64,
    pub connects: AtomicU64,
    pub errors: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// The spool is full and a PDU waits for room: ask the LEA to confirm now.
    pub full: AtomicBool,
}

impl ChannelShared {
    pub fn new(spool: Spool) -> ChannelShared {
        ChannelShared {
            spool: Mutex::new(spool),
            notify: Notify::new(),
            connected: AtomicBool::new(false),
            sent_pdus: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
            full: AtomicBool::new(false),
        }
    }

    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some(e);
        }
    }
}

/// What one channel task needs.
pub struct ChannelTask {
    pub shared: Arc<ChannelShared>,
    pub addr: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The protocol on the connection: its framing and keep-alives.
    pub link: Arc<dyn Link>,
    pub keepalive: Duration,
    pub stop: watch::Receiver<bool>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Builds the mutual-TLS client config (TLS 1.3 only) from PEM files.
pub fn tls_config(files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>, String> {
    crate::deliver::tls::client_config(files).map_err(|e| e.to_string())
}

/// The connection, and its socket (for [`wait_sent`]).
async fn connect(addr: &str, tls: &Option<Arc<rustls::ClientConfig>>) -> Result<(Box<dyn Io>, RawFd), String> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("{addr}: connect timed out"))?
        .map_err(|e| format!("{addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let fd = tcp.as_raw_fd();
    let Some(cfg) = tls else { return Ok((Box::new(tcp), fd)) };
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{addr}: server name {host:?}: {e}"))?;
    let conn = tokio_rustls::TlsConnector::from(cfg.clone());
    let s = tokio::time::timeout(CONNECT_TIMEOUT, conn.connect(name, tcp))
        .await
        .map_err(|_| format!("{addr}: TLS handshake timed out"))?
        .map_err(|e| format!("{addr}: TLS: {e}"))?;
    Ok((Box::new(s), fd))
}

/// Waits (a few seconds at most) until the peer has acknowledged every byte written to the
/// socket `fd`: the next write then leaves in a TCP segment of its own, joined to nothing
/// queued before it (see [`Link::write_per_pdu`]).
// The kernel interface (an ioctl) is the only way to know what the socket still holds.
#[allow(unsafe_code)]
async fn wait_sent(fd: RawFd) {
    for _ in 0..20_000 {
        let mut queued: libc::c_int = 0;
        // SAFETY: `fd` is the open TCP socket of the connection this task is writing (it lives
        // as long as the session that calls this); TIOCOUTQ writes one int, here a local.
        let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
        if r != 0 || queued == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
}

/// Runs until `stop` turns true.
pub async fn run(mut t: ChannelTask) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if *t.stop.borrow() {
            return;
        }
        match connect(&t.addr, &t.tls).await {
            Ok((io, fd)) => {
                backoff = BACKOFF_MIN;
                t.shared.connects.fetch_add(1, Ordering::Relaxed);
                t.shared.connected.store(true, Ordering::Relaxed);
                let r = session(&mut t, io, Some(fd)).await;
                t.shared.connected.store(false, Ordering::Relaxed);
                match r {
                    Ok(()) => return,
                    Err(e) => t.shared.error(e),
                }
            }
            Err(e) => t.shared.error(e),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = t.stop.changed() => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// What the far end sent that the sender acts on.
pub enum Event {
    /// A keep-alive: these octets answer it.
    KeepAlive(Vec<u8>),
    /// The answer to our keep-alive: everything sent before it was taken.
    KeepAliveResponse,
    Closed(String),
}

/// The protocol a channel speaks: how incoming octets are framed, which of them are keep-alives
/// and their answers, and how ours are written. Incoming octets are untrusted.
pub trait Link: Send + Sync {
    /// The length of the whole PDU at the start of `b`; `Ok(None)` if more octets are needed; an
    /// error when framing is lost (the connection is closed).
    fn frame_len(&self, b: &[u8]) -> Result<Option<usize>, String>;
    /// What a framed incoming PDU means to the sender, if anything.
    fn classify(&self, pdu: &[u8]) -> Option<Event>;
    /// Appends keep-alive number `n`.
    fn keep_alive(&self, n: u32, out: &mut Vec<u8>) -> Result<(), String>;
    /// Write each PDU on its own (see [`X2x3Link::write_per_pdu`]).
    fn write_per_pdu(&self) -> bool {
        false
    }
}

/// HI2/HI3 (TS 102 232-1): BER TLVs; keep-alives are TRI PDUs with the LEA's first LIID.
pub struct EtsiLink {
    pub encoder: Encoder,
    /// LIID the keep-alives carry (the LEA's first warrant).
    pub keepalive_liid: String,
}

impl Link for EtsiLink {
    fn frame_len(&self, b: &[u8]) -> Result<Option<usize>, String> {
        tlv_len(b)
    }

    fn classify(&self, pdu: &[u8]) -> Option<Event> {
        let t = Reader::new(pdu, 0).next_tlv()?.ok()?;
        let v = decode_pdu(&t).ok()?;
        let tri = v.pointer("/payload/tRIPayload")?;
        if tri.get("keep-aliveResponse").is_some() {
            return Some(Event::KeepAliveResponse);
        }
        tri.get("keep-alive")?;
        let h = v.get("pSHeader")?;
        let liid = h.get("lawfulInterceptionIdentifier")?.as_str()?.to_string();
        let cin = h.pointer("/communicationIdentifier/communicationIdentityNumber").and_then(|c| c.as_u64());
        let seq = u32::try_from(h.get("sequenceNumber")?.as_u64()?).ok()?;
        let mut out = Vec::new();
        let hdr = PduHeader { liid: &liid, cin, seq, ts: now_ts() };
        self.encoder.keep_alive_response(&mut out, &hdr).ok()?;
        Some(Event::KeepAlive(out))
    }

    fn keep_alive(&self, n: u32, out: &mut Vec<u8>) -> Result<(), String> {
        let hdr = PduHeader { liid: &self.keepalive_liid, cin: None, seq: n, ts: now_ts() };
        self.encoder.keep_alive(out, &hdr).map_err(|e| e.to_string())
    }
}

/// X2/X3 (TS 103 221-2) from a POI to its MDF. The MDF answers a keepalive with a keepalive
/// acknowledgement once it has taken every PDU sent before it: that answer is what confirms
/// the POI's spool (see the `x2x3` module documentation).
pub struct X2x3Link {
    pub max_pdu: usize,
    /// One write per PDU, each once the one before is acknowledged: on a link whose MTU holds a
    /// PDU, one TCP segment per PDU, for a capture of X2/X3 read by a dissector that does not
    /// reassemble (tshark's `5gli`). A round trip per PDU: for such captures, not for speed.
    /// Off, PDUs go in batches, far fewer writes for the same bytes.
    pub write_per_pdu: bool,
}

impl Link for X2x3Link {
    fn frame_len(&self, b: &[u8]) -> Result<Option<usize>, String> {
        x2x3::frame_len(b, self.max_pdu).map_err(|e| e.to_string())
    }

    fn classify(&self, pdu: &[u8]) -> Option<Event> {
        let (v, _) = x2x3::PduView::parse(pdu).ok()?;
        match v.header.pdu_type {
            x2x3::PduType::KeepaliveAck => Some(Event::KeepAliveResponse),
            x2x3::PduType::Keepalive => {
                let mut out = bytes::BytesMut::new();
                x2x3::encode(&x2x3::Header::keepalive(true, v.header.correlation_id), &[], &[], &mut out).ok()?;
                Some(Event::KeepAlive(out.to_vec()))
            }
            _ => None,
        }
    }

    fn write_per_pdu(&self) -> bool {
        self.write_per_pdu
    }

    fn keep_alive(&self, n: u32, out: &mut Vec<u8>) -> Result<(), String> {
        let mut b = bytes::BytesMut::new();
        x2x3::encode(&x2x3::Header::keepalive(false, n.into()), &[], &[], &mut b).map_err(|e| e.to_string())?;
        out.extend_from_slice(&b);
        Ok(())
    }
}

/// Length of the complete BER TLV at the start of `b`, `Ok(None)` if more bytes are needed.
fn tlv_len(b: &[u8]) -> Result<Option<usize>, String> {
    let Some(&first) = b.first() else { return Ok(None) };
    let mut i = 1usize;
    if first & 0x1f == 0x1f {
        loop {
            let Some(&c) = b.get(i) else { return Ok(None) };
            i += 1;
            if i > 6 {
                return Err("tag number too long".into());
            }
            if c & 0x80 == 0 {
                break;
            }
        }
    }
    let Some(&l) = b.get(i) else { return Ok(None) };
    i += 1;
    let len = if l < 0x80 {
        usize::from(l)
    } else if l == 0x80 {
        return Err("indefinite length".into());
    } else {
        let n = usize::from(l & 0x7f);
        if n > 4 {
            return Err(format!("length of {n} octets"));
        }
        let Some(octets) = b.get(i..i + n) else { return Ok(None) };
        i += n;
        octets.iter().fold(0usize, |a, &o| (a << 8) | usize::from(o))
    };
    if len > MAX_INCOMING_PDU {
        return Err(format!("incoming PDU of {len} bytes"));
    }
    Ok((b.len() >= i + len).then_some(i + len))
}

async fn read_loop(mut rd: impl AsyncRead + Unpin, link: Arc<dyn Link>, tx: mpsc::Sender<Event>) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 << 10];
    loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) => {
                let _ = tx.send(Event::Closed("closed by the LEA".into())).await;
                return;
            }
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Event::Closed(format!("read: {e}"))).await;
                return;
            }
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        loop {
            match link.frame_len(&buf) {
                Ok(Some(len)) => {
                    let pdu: Vec<u8> = buf.drain(..len).collect();
                    if let Some(ev) = link.classify(&pdu) {
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Event::Closed(format!("bad PDU from the LEA: {e}"))).await;
                    return;
                }
            }
        }
    }
}

/// Writes and flushes `b`, unless asked to stop first: `Ok(false)`. An LEA that accepts and
/// never reads fills the socket buffers, and a write would then wait for ever.
async fn write_or_stop(
    wr: &mut (impl AsyncWrite + Unpin),
    b: &[u8],
    stop: &mut watch::Receiver<bool>,
    addr: &str,
) -> Result<bool, String> {
    let write = async {
        wr.write_all(b).await.map_err(|e| format!("{addr}: write: {e}"))?;
        wr.flush().await.map_err(|e| format!("{addr}: flush: {e}"))
    };
    tokio::select! {
        r = write => r.map(|()| true),
        _ = stop.wait_for(|s| *s) => Ok(false),
    }
}

fn now_ts() -> Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp::from_secs_nanos(i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos())
}

/// One connection: stream the spool from the confirmed offset, keep-alives, confirmations.
/// `Ok` only when asked to stop.
/// `fd`: the connection's socket, if it is one (tests use in-memory pipes).
async fn session(t: &mut ChannelTask, io: Box<dyn Io>, fd: Option<RawFd>) -> Result<(), String> {
    let (rd, mut wr) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::channel(16);
    let reader = tokio::spawn(read_loop(rd, t.link.clone(), tx));
    let r = session_inner(t, &mut wr, &mut rx, fd).await;
    reader.abort();
    r
}

async fn session_inner(
    t: &mut ChannelTask,
    wr: &mut (impl AsyncWrite + Unpin),
    rx: &mut mpsc::Receiver<Event>,
    fd: Option<RawFd>,
) -> Result<(), String> {
    let sh = t.shared.clone();
    let lock_err = |_| "spool lock poisoned".to_string();
    // Everything not confirmed is (re)sent: what a lost connection had in flight may be gone.
    let mut sent = sh.spool.lock().map_err(lock_err)?.delivered();
    let mut since_probe = 0u64;
    // (offset confirmed by the answer, deadline)
    let mut probe: Option<(u64, Instant)> = None;
    let mut last_send = Instant::now();
    let mut last_ka = Instant::now().checked_sub(PROBE_MIN_GAP).unwrap_or_else(Instant::now);
    let mut ka_seq = 0u32;
    let mut out = Vec::new();
    loop {
        let (bytes, count, next) = {
            let sp = sh.spool.lock().map_err(lock_err)?;
            if sent < sp.readable_end() {
                sp.read_from(sent, READ_BATCH).map_err(|e| e.to_string())?
            } else {
                (Vec::new(), 0, sent)
            }
        };
        let sent_some = count > 0;
        if sent_some {
            // A write per PDU where the link asks for it (a PDU per TCP segment, for readers
            // of the wire that do not reassemble), else the batch in one write.
            let per_pdu = t.link.write_per_pdu();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = match per_pdu {
                    true => t.link.frame_len(rest).ok().flatten().unwrap_or(rest.len()).min(rest.len()),
                    false => rest.len(),
                };
                if !write_or_stop(wr, &rest[..n], &mut t.stop, &t.addr).await? {
                    return Ok(());
                }
                if let (true, Some(fd)) = (per_pdu, fd) {
                    wait_sent(fd).await;
                }
                rest = &rest[n..];
            }
            sh.sent_pdus.fetch_add(count as u64, Ordering::Relaxed);
            since_probe += next - sent;
            sent = next;
            last_send = Instant::now();
        }
        let (unconfirmed, held) = {
            let sp = sh.spool.lock().map_err(lock_err)?;
            (sent > sp.delivered(), sp.held())
        };
        let idle = last_send.elapsed() >= t.keepalive;
        // Confirmation is asked for after every PROBE_EVERY bytes, and when the spool is drained
        // at most once per PROBE_MIN_GAP. A held spool (an MDF's) is let go a checkpoint at a
        // time: each drained checkpoint is confirmed at once, so that what a crash makes it send
        // again is at most what was in flight.
        let drained = !sent_some && (held || last_ka.elapsed() >= PROBE_MIN_GAP || sh.full.load(Ordering::Relaxed));
        if probe.is_none() && (((drained || since_probe >= PROBE_EVERY) && unconfirmed) || idle) {
            out.clear();
            t.link.keep_alive(ka_seq, &mut out)?;
            ka_seq = ka_seq.wrapping_add(1);
            if !write_or_stop(wr, &out, &mut t.stop, &t.addr).await? {
                return Ok(());
            }
            // An LEMF answers after it has read everything before the keep-alive: allow for a
            // slow reader behind a backlog (at least MIN_LEMF_RATE), not only the idle timeout.
            let backlog = sent.saturating_sub(sh.spool.lock().map_err(lock_err)?.delivered());
            let allowance = Duration::from_millis(backlog.saturating_mul(1000) / MIN_LEMF_RATE);
            probe = Some((sent, Instant::now() + t.keepalive + allowance));
            since_probe = 0;
            last_send = Instant::now();
            last_ka = last_send;
        }
        if sent_some {
            // More may be waiting: only look at events without blocking.
            while let Ok(ev) = rx.try_recv() {
                handle(t, wr, ev, &mut probe, &mut sent).await?;
            }
            continue;
        }
        let wake = match probe {
            Some((_, deadline)) => deadline,
            None if unconfirmed => (last_ka + PROBE_MIN_GAP).min(last_send + t.keepalive),
            None => last_send + t.keepalive,
        };
        tokio::select! {
            _ = sh.notify.notified() => {}
            ev = rx.recv() => match ev {
                Some(ev) => handle(t, wr, ev, &mut probe, &mut sent).await?,
                None => return Err(format!("{}: reader ended", t.addr)),
            },
            _ = tokio::time::sleep_until(wake) => {
                if probe.is_some_and(|(_, d)| Instant::now() >= d) {
                    return Err(format!("{}: no keep-alive response within {:?}", t.addr, t.keepalive));
                }
            }
            _ = t.stop.changed() => return Ok(()),
        }
    }
}

async fn handle(
    t: &mut ChannelTask,
    wr: &mut (impl AsyncWrite + Unpin),
    ev: Event,
    probe: &mut Option<(u64, Instant)>,
    sent: &mut u64,
) -> Result<(), String> {
    match ev {
        Event::KeepAlive(answer) => {
            // Stopping is seen by the caller's next wait.
            write_or_stop(wr, &answer, &mut t.stop, &t.addr).await?;
        }
        Event::KeepAliveResponse => {
            if let Some((off, _)) = probe.take() {
                let mut sp = t.shared.spool.lock().map_err(|_| "spool lock poisoned".to_string())?;
                sp.confirm(off).map_err(|e| e.to_string())?;
                // A torn tail skipped at open leaves a hole: never stay behind what is confirmed.
                *sent = (*sent).max(off);
            }
        }
        Event::Closed(e) => return Err(format!("{}: {e}", t.addr)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::etsi::EtsiConfig;
    use std::path::Path;

    #[test]
    fn tlv_framing_is_checked() {
        assert_eq!(tlv_len(&[0x30, 0x03, 1, 2]).unwrap(), None);
        assert_eq!(tlv_len(&[0x30, 0x03, 1, 2, 3, 9]).unwrap(), Some(5));
        assert_eq!(tlv_len(&[0x30, 0x81, 0x02, 1, 2]).unwrap(), Some(5));
        assert_eq!(tlv_len(&[0x30, 0x82, 0x01]).unwrap(), None);
        assert!(tlv_len(&[0x30, 0x80]).is_err());
        assert!(tlv_len(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert_eq!(tlv_len(&[]).unwrap(), None);
    }

    fn task(dir: &Path, keepalive: Duration, stop: watch::Receiver<bool>) -> ChannelTask {
        ChannelTask {
            shared: Arc::new(ChannelShared::new(Spool::open(dir, "hi2", 1 << 20).unwrap())),
            addr: "lemf".into(),
            tls: None,
            link: Arc::new(EtsiLink {
                encoder: Encoder::new(EtsiConfig::new("OPER-O")).unwrap(),
                keepalive_liid: "LIID-1".into(),
            }),
            keepalive,
            stop,
        }
    }

    /// A stand-in LEMF on the far end of an in-memory pipe: records when (on the runtime's
    /// clock, from `start`) each keep-alive arrives, and answers them if `answer`.
    async fn lemf(mut io: tokio::io::DuplexStream, start: Instant, answer: bool) -> Vec<Duration> {
        let link = EtsiLink { encoder: Encoder::new(EtsiConfig::new("LEMF")).unwrap(), keepalive_liid: String::new() };
        let (mut buf, mut seen, mut chunk) = (Vec::new(), Vec::new(), [0u8; 4096]);
        loop {
            while let Ok(Some(n)) = tlv_len(&buf) {
                let pdu: Vec<u8> = buf.drain(..n).collect();
                if let Some(Event::KeepAlive(out)) = link.classify(&pdu) {
                    seen.push(start.elapsed());
                    if answer && io.write_all(&out).await.is_err() {
                        return seen;
                    }
                }
            }
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return seen,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Seconds to a tenth: timers land on the wheel's millisecond ticks.
    fn secs(d: Duration) -> f64 {
        (d.as_secs_f64() * 10.0).round() / 10.0
    }

    // The reconnect back-off on a paused (virtual) clock: an LEMF address where nothing listens
    // is tried at once, then 0.1, 0.2, 0.4 ... s after each refusal, doubling up to 5 s; a stop
    // ends the wait at once.
    #[tokio::test(start_paused = true)]
    async fn refused_connections_are_retried_backing_off_from_100_ms_to_5_s() {
        let dir = tempfile::tempdir().unwrap();
        // A loopback port nobody listens on: each connect is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (stop_tx, stop) = watch::channel(false);
        let mut t = task(dir.path(), Duration::from_secs(30), stop);
        t.addr = format!("127.0.0.1:{port}");
        let shared = t.shared.clone();
        let start = Instant::now();
        let sender = tokio::spawn(run(t));
        let (mut tries, mut seen) = (Vec::new(), 0);
        while start.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let refused = shared.errors.load(Ordering::Relaxed);
            tries.extend((seen..refused).map(|_| secs(start.elapsed())));
            seen = refused;
        }
        assert_eq!(tries, [0.0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3, 11.3, 16.3, 21.3, 26.3]);
        assert!(shared.last_error.lock().unwrap().as_ref().is_some_and(|e| e.contains("refused")));
        assert!(!shared.connected.load(Ordering::Relaxed));
        let stopped = Instant::now();
        stop_tx.send(true).unwrap();
        sender.await.unwrap();
        assert_eq!(stopped.elapsed(), Duration::ZERO, "the stop waited for the back-off");
    }

    // The keep-alive timers on a paused (virtual) clock: the runtime jumps to each timer when
    // every task is waiting, so minutes of schedule take no wall time and land exactly.
    #[tokio::test(start_paused = true)]
    async fn an_unanswered_keep_alive_ends_the_session_one_timeout_later() {
        let dir = tempfile::tempdir().unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        let mut t = task(dir.path(), Duration::from_secs(10), stop);
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let start = Instant::now();
        let far = tokio::spawn(lemf(theirs, start, false));
        let r = session(&mut t, Box::new(ours), None).await;
        assert_eq!(secs(start.elapsed()), 20.0, "{r:?}");
        assert!(r.as_ref().is_err_and(|e| e.contains("no keep-alive response within 10s")), "{r:?}");
        // One keep-alive, after 10 s idle; the session gave up 10 s later.
        assert_eq!(far.await.unwrap().into_iter().map(secs).collect::<Vec<_>>(), [10.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn answered_keep_alives_follow_the_idle_timeout_for_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let mut t = task(dir.path(), Duration::from_secs(30), stop);
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let start = Instant::now();
        let far = tokio::spawn(lemf(theirs, start, true));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3600) + Duration::from_millis(500)).await;
            let _ = stop_tx.send(true);
        });
        let r = session(&mut t, Box::new(ours), None).await;
        assert_eq!(r, Ok(()));
        drop(t);
        let seen: Vec<f64> = far.await.unwrap().into_iter().map(secs).collect();
        let want: Vec<f64> = (1..=120).map(|i| f64::from(i) * 30.0).collect();
        assert_eq!(seen, want);
    }
}
