//! A POI's output: every record as X2/X3 PDUs to its MDF, through a durable spool.
//!
//! The same machinery as HI delivery ([`Channels`]): a PDU counts as sent once in the spool;
//! the sender streams the spool over TCP or mutual TLS 1.3 and moves the spool's confirmed
//! offset when the MDF acknowledges a keepalive, which it does only after taking everything
//! sent before it. A lost connection resends from that offset; the MDF drops what it had taken
//! already by the stream position each PDU carries (the spool offset it was appended at, which
//! only grows, across restarts too). A full spool holds the pipeline back (see `handover`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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

/// What the forwarding did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ForwardReport {
    pub mdf: String,
    pub channel: ChannelReport,
    pub counts: PoiCounts,
    /// Everything spooled was confirmed by the MDF.
    pub complete: bool,
    pub alarms: Vec<String>,
}

/// The running forwarder: a [`RecordSink`].
pub struct Forward {
    mdf: String,
    encoder: PoiEncoder,
    channels: Channels,
    pdus: BytesMut,
    give_up: Arc<AtomicBool>,
    alarms: Vec<String>,
}

impl Forward {
    /// Opens the spool `spool_dir/x2x3` and starts the sender.
    pub fn start(cfg: &ForwardConfig, xids: HashMap<Liid, Xid>, spool_dir: &Path) -> Result<Forward, ForwardError> {
        let setup = |message: String| ForwardError::Setup { mdf: cfg.mdf.clone(), message };
        let tls = cfg.tls.as_ref().map(tls_config).transpose().map_err(setup)?;
        let spool = Spool::open(&spool_dir.join("x2x3"), "x2x3", cfg.max_spool_bytes)?;
        let spec = ChannelSpec {
            label: format!("x2x3 {}", cfg.mdf),
            spool,
            addr: cfg.mdf.clone(),
            tls,
            link: Arc::new(X2x3Link { max_pdu: DEFAULT_MAX_PDU, write_per_pdu: cfg.write_per_pdu }),
            keepalive: cfg.keepalive,
        };
        let channels = Channels::start(vec![spec], "tapir-x2x3").map_err(|e| setup(e.to_string()))?;
        Ok(Forward {
            mdf: cfg.mdf.clone(),
            encoder: PoiEncoder::new(xids, Some(&cfg.name)),
            channels,
            pdus: BytesMut::new(),
            give_up: Arc::new(AtomicBool::new(false)),
            alarms: Vec::new(),
        })
    }

    /// The map of XIDs to change when the warrants change.
    pub fn xids(&self) -> Xids {
        self.encoder.xids()
    }

    /// Uses `flag` as the give-up flag (see `Delivery::with_give_up`).
    pub fn with_give_up(mut self, flag: Arc<AtomicBool>) -> Forward {
        self.give_up = flag;
        self
    }

    /// fsync, then waits until the MDF confirmed everything or `wait` has passed; what is not
    /// confirmed stays in the spool for the next run.
    pub fn finish(mut self, wait: Duration) -> ForwardReport {
        if let Err(e) = self.channels.sync() {
            alarm(&mut self.alarms, e.to_string());
        }
        self.channels.wait_confirmed(Instant::now() + wait);
        self.channels.stop();
        self.report()
    }

    pub fn report(&self) -> ForwardReport {
        let channel = self.channels.report(0);
        ForwardReport {
            mdf: self.mdf.clone(),
            complete: channel.still_spooled_bytes == 0,
            channel,
            counts: self.encoder.counts.clone(),
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
        let Forward { channels, pdus, give_up, alarms, .. } = self;
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
