//! An MDF's X2/X3 listener: POIs connect (mutual TLS 1.3, or plain TCP in a lab), PDUs are
//! framed and handed on in batches to the thread that takes them ([`super::records::MdfIntake`]
//! behind the case and HI delivery).
//!
//! Acknowledgement: a keepalive from a POI is answered only after every PDU read before it has
//! been taken by that thread (the batch that ends with the keepalive carries an `ack` the
//! taker fires when done). That answer is what moves the POI's spool forward, so a PDU is
//! confirmed only once the MDF holds it. The MDF sends keepalives of its own on a quiet
//! connection and closes one whose POI answers nothing.
//!
//! Incoming octets are untrusted: a framing error (wrong version, unknown type, a length past
//! the maximum) closes the connection and is counted; a PDU framed but malformed inside is the
//! taker's to count; nothing a POI sends can panic the listener or make it buffer more than one
//! PDU of at most `max_pdu` octets per connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_util::codec::Decoder;

use super::pdu::{encode, Attribute, Header, PduType, PduView, X2x3Codec};

/// PDUs per batch handed on (about 256 CC packets), when no keepalive ends it first.
const BATCH: usize = 256;
/// How often a full hand-over is tried again.
const RETRY: Duration = Duration::from_millis(2);

/// PDUs of one POI, in the order read.
pub struct Batch {
    /// The POI: its certificate's subject CN over TLS; in plain TCP, the Interception Point ID
    /// of its first PDU (or its address).
    pub poi: Arc<str>,
    pub pdus: Vec<BytesMut>,
    /// Fire once every PDU of this batch (and of those before it) is taken: the POI's
    /// keepalive is then acknowledged.
    pub ack: Option<oneshot::Sender<()>>,
}

/// Where batches go: `Err` gives the batch back when the taker is busy (it is offered again),
/// `Ok(false)` when the taker is gone.
pub type Handoff = Arc<dyn Fn(Batch) -> Result<bool, Batch> + Send + Sync>;

/// What the listener saw.
#[derive(Debug, Default)]
pub struct ListenStats {
    pub connections: AtomicU64,
    /// Connections refused: TLS handshake failed (a certificate from another CA), no CN.
    pub refused: AtomicU64,
    /// Connections closed for a framing error (wrong version, length past the maximum).
    pub framing_errors: AtomicU64,
    pub pdus: AtomicU64,
    pub keepalives: AtomicU64,
    /// Connections closed because the POI answered no keepalive.
    pub timeouts: AtomicU64,
}

/// The running listener.
pub struct Listening {
    pub addr: SocketAddr,
    pub stats: Arc<ListenStats>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How the listener runs.
#[derive(Clone)]
pub struct ListenConfig {
    pub addr: SocketAddr,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub max_pdu: usize,
    /// Quiet this long: the MDF sends a keepalive; unanswered as long again: closed.
    pub keepalive: Duration,
}

impl Listening {
    /// Binds `cfg.addr` (before returning, so that a caller may say it is ready) and serves on
    /// a thread of its own.
    pub fn start(cfg: ListenConfig, handoff: Handoff) -> std::io::Result<Listening> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let listener = rt.block_on(TcpListener::bind(cfg.addr))?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(ListenStats::default());
        let (stop, stop_rx) = watch::channel(false);
        let st = stats.clone();
        let thread = std::thread::Builder::new().name("tapir-x2x3-listen".into()).spawn(move || {
            rt.block_on(accept_loop(listener, cfg, handoff, st, stop_rx));
        })?;
        Ok(Listening { addr, stats, stop, thread: Some(thread) })
    }

    /// Stops accepting and closes every connection.
    pub fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(
    listener: TcpListener,
    cfg: ListenConfig,
    handoff: Handoff,
    stats: Arc<ListenStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "X2/X3 accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let (cfg, handoff, stats, stop) = (cfg.clone(), handoff.clone(), stats.clone(), stop.clone());
        conns.spawn(async move {
            stats.connections.fetch_add(1, Ordering::Relaxed);
            let r = match &cfg.tls {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(tls) => match crate::deliver::tls::peer_cn(tls.get_ref().1.peer_certificates()) {
                        Some(cn) => serve(tls, Some(Arc::from(cn)), peer, &cfg, &handoff, &stats, stop).await,
                        None => {
                            stats.refused.fetch_add(1, Ordering::Relaxed);
                            Err("client certificate without a single subject CN".to_string())
                        }
                    },
                    Err(e) => {
                        // A peer gone during the handshake (a port probe, a POI stopping) is
                        // not a refusal; a certificate that does not verify is.
                        if e.kind() != std::io::ErrorKind::UnexpectedEof {
                            stats.refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(format!("TLS: {e}"))
                    }
                },
                None => serve(tcp, None, peer, &cfg, &handoff, &stats, stop).await,
            };
            if let Err(e) = r {
                tracing::warn!(peer = %peer, error = %e, "X2/X3 connection closed");
            }
        });
        // Reap the finished ones as we go: a long-lived MDF sees many reconnects.
        while conns.try_join_next().is_some() {}
    }
    conns.shutdown().await;
}

/// Hands `batch` on, waiting while the taker is busy. `false`: the taker is gone.
async fn hand(handoff: &Handoff, mut batch: Batch) -> bool {
    loop {
        match handoff(batch) {
            Ok(alive) => return alive,
            Err(b) => {
                batch = b;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    mut poi: Option<Arc<str>>,
    peer: SocketAddr,
    cfg: &ListenConfig,
    handoff: &Handoff,
    stats: &ListenStats,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut codec = X2x3Codec::new(cfg.max_pdu);
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut pending: Vec<BytesMut> = Vec::new();
    // The number of our keepalive while it waits for its acknowledgement.
    let mut ours: Option<u64> = None;
    let mut ka_seq = 0u64;
    loop {
        let quiet = tokio::time::sleep(cfg.keepalive);
        let n = tokio::select! {
            r = rd.read_buf(&mut buf) => r.map_err(|e| format!("read: {e}"))?,
            _ = quiet => {
                if ours.is_some() {
                    stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    return Err(format!("no keepalive acknowledgement within {:?}", cfg.keepalive));
                }
                ka_seq += 1;
                ours = Some(ka_seq);
                let mut out = BytesMut::new();
                encode(&Header::keepalive(false, ka_seq), &[], &[], &mut out).map_err(|e| e.to_string())?;
                wr.write_all(&out).await.map_err(|e| format!("write: {e}"))?;
                continue;
            }
            _ = stop.changed() => return Ok(()),
        };
        if n == 0 {
            if !pending.is_empty() {
                hand(handoff, batch(&poi, peer, &mut pending, None)).await;
            }
            return Ok(());
        }
        loop {
            let frame = match codec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    stats.framing_errors.fetch_add(1, Ordering::Relaxed);
                    // What was framed before the error is still the POI's: hand it on.
                    if !pending.is_empty() {
                        hand(handoff, batch(&poi, peer, &mut pending, None)).await;
                    }
                    return Err(format!("framing: {e}"));
                }
            };
            // Data PDUs are checked whole by the taker; here only keepalives (answered here) and,
            // until the POI is named, the first PDU that names it are.
            let control = peek_type(&frame).is_some_and(|t| matches!(t, PduType::Keepalive | PduType::KeepaliveAck));
            let header = (control || poi.is_none()).then(|| PduView::parse(&frame).ok()).flatten();
            if poi.is_none() {
                if let Some(name) = header.as_ref().and_then(ipid) {
                    poi = Some(Arc::from(name.as_str()));
                }
            }
            match header.map(|v| v.0.header).filter(|_| control) {
                Some(h) if h.pdu_type == PduType::Keepalive => {
                    stats.keepalives.fetch_add(1, Ordering::Relaxed);
                    let (tx, rx) = oneshot::channel();
                    if !hand(handoff, batch(&poi, peer, &mut pending, Some(tx))).await {
                        return Ok(());
                    }
                    // Taken: acknowledge. A taker gone (stopping) acknowledges nothing.
                    if rx.await.is_err() {
                        return Ok(());
                    }
                    let mut out = BytesMut::new();
                    encode(&Header::keepalive(true, h.correlation_id), &[], &[], &mut out)
                        .map_err(|e| e.to_string())?;
                    wr.write_all(&out).await.map_err(|e| format!("write: {e}"))?;
                }
                Some(h) if h.pdu_type == PduType::KeepaliveAck => {
                    if ours == Some(h.correlation_id) {
                        ours = None;
                    }
                }
                _ => {
                    stats.pdus.fetch_add(1, Ordering::Relaxed);
                    pending.push(frame);
                    if pending.len() >= BATCH && !hand(handoff, batch(&poi, peer, &mut pending, None)).await {
                        return Ok(());
                    }
                }
            }
        }
        // Anything read says the POI is alive: our keepalive need not be answered.
        ours = None;
        if !pending.is_empty() && !hand(handoff, batch(&poi, peer, &mut pending, None)).await {
            return Ok(());
        }
    }
}

/// What is pending, handed on as `poi`'s (or, not named yet, as `peer`'s address's).
fn batch(
    poi: &Option<Arc<str>>,
    peer: SocketAddr,
    pending: &mut Vec<BytesMut>,
    ack: Option<oneshot::Sender<()>>,
) -> Batch {
    let poi = poi.clone().unwrap_or_else(|| Arc::from(peer.ip().to_string()));
    Batch { poi, pdus: std::mem::take(pending), ack }
}

/// The PDU type of a framed PDU (the codec checked it).
fn peek_type(frame: &[u8]) -> Option<PduType> {
    PduType::from_code(u16::from_be_bytes([*frame.get(2)?, *frame.get(3)?]))
}

/// The Interception Point ID of a PDU, as text.
fn ipid((v, _): &(PduView<'_>, usize)) -> Option<String> {
    v.attributes().find_map(|a| match a {
        Attribute::InterceptionPointId(b) => std::str::from_utf8(b).ok().map(str::to_string),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn cfg() -> ListenConfig {
        ListenConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            tls: None,
            max_pdu: 1 << 20,
            keepalive: Duration::from_secs(30),
        }
    }

    /// A taker that takes every batch at once and fires its acknowledgement.
    fn taker() -> Handoff {
        Arc::new(|b: Batch| {
            if let Some(ack) = b.ack {
                let _ = ack.send(());
            }
            Ok(true)
        })
    }

    fn keepalive(ack: bool, n: u64) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(&Header::keepalive(ack, n), &[], &[], &mut out).unwrap();
        out.to_vec()
    }

    /// The PDUs the MDF wrote, each with when it came, until the connection closed.
    async fn read_all(mut rd: impl AsyncRead + Unpin, start: Instant) -> Vec<(u64, PduType, u64)> {
        let mut codec = X2x3Codec::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        while rd.read_buf(&mut buf).await.is_ok_and(|n| n > 0) {
            while let Ok(Some(f)) = codec.decode(&mut buf) {
                let h = PduView::parse(&f).unwrap().0.header;
                got.push((start.elapsed().as_secs(), h.pdu_type, h.correlation_id));
            }
        }
        got
    }

    // On a paused clock: the runtime jumps to each timer when every task waits.
    #[tokio::test(start_paused = true)]
    async fn a_poi_that_answers_nothing_is_closed_one_keepalive_period_after_the_mdfs_keepalive() {
        let (mdf, poi) = tokio::io::duplex(1 << 16);
        let stats = ListenStats::default();
        let (_stop_tx, stop) = watch::channel(false);
        let start = Instant::now();
        let (rd, _wr) = tokio::io::split(poi);
        let reader = tokio::spawn(read_all(rd, start));
        let r =
            serve(mdf, Some(Arc::from("poi-1")), "127.0.0.1:1".parse().unwrap(), &cfg(), &taker(), &stats, stop).await;
        assert_eq!(start.elapsed().as_secs(), 60, "{r:?}");
        assert!(r.is_err_and(|e| e.contains("no keepalive acknowledgement")));
        assert_eq!(stats.timeouts.load(Ordering::Relaxed), 1);
        // One keepalive of the MDF's, after 30 s of quiet.
        assert_eq!(reader.await.unwrap(), vec![(30, PduType::Keepalive, 1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn keepalives_go_both_ways_and_an_answering_poi_stays_connected() {
        let (mdf, poi) = tokio::io::duplex(1 << 16);
        let stats = ListenStats::default();
        let (stop_tx, stop) = watch::channel(false);
        let start = Instant::now();
        let (rd, mut wr) = tokio::io::split(poi);
        // The POI: a keepalive of its own every 20 s (each answered by the MDF), and the
        // MDF's keepalives answered as they come.
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, PduType, u64)>();
        let reader = tokio::spawn(async move {
            let mut codec = X2x3Codec::new(1 << 20);
            let mut buf = BytesMut::new();
            let mut rd = rd;
            while rd.read_buf(&mut buf).await.is_ok_and(|n| n > 0) {
                while let Ok(Some(f)) = codec.decode(&mut buf) {
                    let h = PduView::parse(&f).unwrap().0.header;
                    let _ = seen_tx.send((start.elapsed().as_secs(), h.pdu_type, h.correlation_id));
                }
            }
        });
        let poi_side = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut n = 0u64;
            loop {
                let next = start + Duration::from_secs(45 * (n + 1));
                tokio::select! {
                    _ = tokio::time::sleep_until(next), if n < 4 => {
                        n += 1;
                        wr.write_all(&keepalive(false, n)).await.unwrap();
                    }
                    _ = tokio::time::sleep_until(start + Duration::from_secs(200)) => break,
                    Some((t, ty, k)) = seen_rx.recv() => {
                        seen.push((t, ty, k));
                        if ty == PduType::Keepalive {
                            wr.write_all(&keepalive(true, k)).await.unwrap();
                        }
                    }
                }
            }
            let _ = stop_tx.send(true);
            seen
        });
        let r =
            serve(mdf, Some(Arc::from("poi-1")), "127.0.0.1:1".parse().unwrap(), &cfg(), &taker(), &stats, stop).await;
        assert_eq!(r, Ok(()));
        let seen = poi_side.await.unwrap();
        reader.abort();
        assert_eq!(stats.timeouts.load(Ordering::Relaxed), 0);
        // The POI's keepalives (every 45 s) acknowledged at once, each with its number; the
        // MDF's own after each 30 s of quiet, each answered, so none closes the connection.
        let of = |ty: PduType| seen.iter().filter(|s| s.1 == ty).map(|s| (s.0, s.2)).collect::<Vec<_>>();
        assert_eq!(of(PduType::KeepaliveAck), [(45, 1), (90, 2), (135, 3), (180, 4)], "{seen:?}");
        assert_eq!(of(PduType::Keepalive), [(30, 1), (75, 2), (120, 3), (165, 4)], "{seen:?}");
        assert_eq!(stats.keepalives.load(Ordering::Relaxed), 4);
    }
}
