//! A POI's output: every record as X2/X3 PDUs to its MDF, through a durable spool.
//!
//! The same machinery as HI delivery ([`Channels`]): a PDU counts as sent once in the spool;
//! the sender streams the spool over TCP or mutual TLS 1.3 and moves the spool's confirmed
//! offset when the MDF acknowledges a keepalive, which it does only after taking everything
//! sent before it. A lost connection resends from that offset; the MDF drops what it had taken
//! already by the stream position each PDU carries (the spool offset it was appended at, which
//! only grows, across restarts too). A full spool holds the pipeline back (see `handover`).
//!
//! Which MDF: a warrant that came over X1 goes to its task's destination (the MDF the ADMF
//! named, [`MdfRoutes`]); any other to the POI's own (`[node] mdf`). Each MDF has a spool and a
//! connection of its own (`spool_dir/x2x3` for the POI's own, `spool_dir/x2x3-<address>` for
//! the others), so that one MDF down holds back only its warrants.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use super::pdu::{X2x3Codec, Xid, DEFAULT_MAX_PDU};
use super::records::{set_position, PoiCounts, PoiEncoder, Xids};
use crate::deliver::handover::sender::{tls_config, X2x3Link};
use crate::deliver::handover::{ChannelReport, ChannelSpec, Channels, Spool, TlsFiles};
use crate::record::{Liid, Record, RecordSink};

/// Where and how a POI sends.
#[derive(Clone, Debug)]
pub struct ForwardConfig {
    /// `host:port` of the MDF.
    pub mdf: String,
    /// Interception Point ID written in every PDU.
    pub name: String,
    pub tls: Option<TlsFiles>,
    pub keepalive: Duration,
    pub max_spool_bytes: u64,
    /// One write per PDU (see [`X2x3Link::write_per_pdu`]).
    pub write_per_pdu: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("X2/X3 to {mdf}: {message}")]
    Setup { mdf: String, message: String },
    #[error(transparent)]
    Spool(#[from] crate::deliver::handover::SpoolError),
}

/// Where each warrant's X2/X3 goes, by LIID: an MDF's `host:port` (its X1 task's
/// destination). A LIID not in it goes to the POI's own MDF. Changed on a reload.
pub type MdfRoutes = Arc<RwLock<HashMap<Liid, String>>>;

/// What the forwarding did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ForwardReport {
    /// The POI's own MDF and its channel.
    pub mdf: String,
    pub channel: ChannelReport,
    /// The other MDFs X1 tasks named, and their channels.
    pub others: Vec<(String, ChannelReport)>,
    pub counts: PoiCounts,
    /// Everything spooled was confirmed by every MDF.
    pub complete: bool,
    pub alarms: Vec<String>,
}

impl ForwardReport {
    /// Bytes spooled and not confirmed, over every MDF.
    pub fn still_spooled_bytes(&self) -> u64 {
        self.others.iter().fold(self.channel.still_spooled_bytes, |n, (_, c)| n.saturating_add(c.still_spooled_bytes))
    }
}

/// One MDF's channel.
struct MdfLink {
    addr: String,
    channels: Channels,
}

/// The running forwarder: a [`RecordSink`].
pub struct Forward {
    cfg: ForwardConfig,
    spool_dir: PathBuf,
    tls: Option<Arc<rustls::ClientConfig>>,
    encoder: PoiEncoder,
    routes: MdfRoutes,
    /// The POI's own MDF first.
    mdfs: Vec<MdfLink>,
    pdus: BytesMut,
    give_up: Arc<AtomicBool>,
    alarms: Vec<String>,
}

/// A directory name for an MDF's spool, as an LEA's is made.
fn spool_name(addr: &str) -> String {
    format!("x2x3-{}", crate::deliver::handover::dir_name(addr))
}

impl Forward {
    /// Opens the spool `spool_dir/x2x3` and starts the sender to the POI's own MDF, and one to
    /// each MDF `routes` names.
    pub fn start(
        cfg: &ForwardConfig,
        xids: HashMap<Liid, Xid>,
        routes: HashMap<Liid, String>,
        spool_dir: &Path,
    ) -> Result<Forward, ForwardError> {
        let setup = |message: String| ForwardError::Setup { mdf: cfg.mdf.clone(), message };
        let tls = cfg.tls.as_ref().map(tls_config).transpose().map_err(setup)?;
        let mut f = Forward {
            cfg: cfg.clone(),
            spool_dir: spool_dir.to_path_buf(),
            tls,
            encoder: PoiEncoder::new(xids, Some(&cfg.name)),
            routes: Arc::new(RwLock::new(HashMap::new())),
            mdfs: Vec::new(),
            pdus: BytesMut::new(),
            give_up: Arc::new(AtomicBool::new(false)),
            alarms: Vec::new(),
        };
        f.open(&cfg.mdf, "x2x3")?;
        let mut others: Vec<&String> = routes.values().filter(|a| **a != cfg.mdf).collect();
        others.sort();
        others.dedup();
        for a in others {
            f.open(a, &spool_name(a))?;
        }
        if let Ok(mut r) = f.routes.write() {
            *r = routes;
        }
        Ok(f)
    }

    /// Starts the channel to the MDF at `addr`, spooled in `spool_dir/<dir>`.
    fn open(&mut self, addr: &str, dir: &str) -> Result<usize, ForwardError> {
        let setup = |message: String| ForwardError::Setup { mdf: addr.to_string(), message };
        let spool = Spool::open(&self.spool_dir.join(dir), "x2x3", self.cfg.max_spool_bytes)?;
        let spec = ChannelSpec {
            label: format!("x2x3 {addr}"),
            spool,
            addr: addr.to_string(),
            tls: self.tls.clone(),
            link: Arc::new(X2x3Link { max_pdu: DEFAULT_MAX_PDU, write_per_pdu: self.cfg.write_per_pdu }),
            keepalive: self.cfg.keepalive,
        };
        let channels = Channels::start(vec![spec], "tapir-x2x3").map_err(|e| setup(e.to_string()))?;
        self.mdfs.push(MdfLink { addr: addr.to_string(), channels });
        Ok(self.mdfs.len() - 1)
    }

    /// The channel of the MDF at `addr`, started on first use (a task a reload brought).
    fn link(&mut self, addr: &str) -> Option<usize> {
        if let Some(i) = self.mdfs.iter().position(|m| m.addr == addr) {
            return Some(i);
        }
        match self.open(addr, &spool_name(addr)) {
            Ok(i) => Some(i),
            Err(e) => {
                alarm(&mut self.alarms, e.to_string());
                None
            }
        }
    }

    /// The map of XIDs to change when the warrants change.
    pub fn xids(&self) -> Xids {
        self.encoder.xids()
    }

    /// The map of MDFs to change when the warrants change.
    pub fn routes(&self) -> MdfRoutes {
        self.routes.clone()
    }

    /// Uses `flag` as the give-up flag (see `Delivery::with_give_up`).
    pub fn with_give_up(mut self, flag: Arc<AtomicBool>) -> Forward {
        self.give_up = flag;
        self
    }

    /// fsync, then waits until every MDF confirmed everything or `wait` has passed; what is
    /// not confirmed stays in the spools for the next run.
    pub fn finish(mut self, wait: Duration) -> ForwardReport {
        let deadline = Instant::now() + wait;
        for m in &mut self.mdfs {
            if let Err(e) = m.channels.sync() {
                alarm(&mut self.alarms, e.to_string());
            }
        }
        for m in &self.mdfs {
            m.channels.wait_confirmed(deadline);
        }
        for m in &mut self.mdfs {
            m.channels.stop();
        }
        self.report()
    }

    pub fn report(&self) -> ForwardReport {
        let mut channels = self.mdfs.iter().map(|m| (m.addr.clone(), m.channels.report(0)));
        let (mdf, channel) = channels.next().unwrap_or_default();
        let others: Vec<(String, ChannelReport)> = channels.collect();
        let complete = channel.still_spooled_bytes == 0 && others.iter().all(|(_, c)| c.still_spooled_bytes == 0);
        ForwardReport {
            mdf,
            channel,
            others,
            counts: self.encoder.counts.clone(),
            complete,
            alarms: self.alarms.clone(),
        }
    }
}

/// Keeps `a`, among the first 100.
fn alarm(alarms: &mut Vec<String>, a: String) {
    if alarms.len() < 100 {
        alarms.push(a);
    }
}

impl RecordSink for Forward {
    fn record(&mut self, rec: Record<'_>) {
        self.pdus.clear();
        if self.encoder.encode(&rec, &mut self.pdus) == 0 {
            return;
        }
        let routed = self.routes.read().ok().and_then(|r| r.get(rec.liid()).cloned());
        let at = match routed.filter(|a| *a != self.cfg.mdf) {
            None => Some(0),
            Some(addr) => self.link(&addr),
        };
        let Forward { mdfs, pdus, give_up, alarms, .. } = self;
        let Some(channels) = at.and_then(|i| mdfs.get_mut(i)).map(|m| &mut m.channels) else {
            return alarm(alarms, "X2/X3: a record for an MDF whose spool did not open: not sent".into());
        };
        let give_up = || give_up.load(Ordering::Relaxed);
        // The encoder's own output: framed whole, within the maximum.
        while let Ok(Some(mut pdu)) = X2x3Codec::new(usize::MAX).decode(pdus) {
            let Some(at) = channels.end(0) else {
                return alarm(alarms, "x2x3 spool lock poisoned".into());
            };
            set_position(&mut pdu, at);
            if let Err(e) = channels.append(0, &pdu, &give_up) {
                alarm(alarms, e.to_string());
            }
        }
    }
}
