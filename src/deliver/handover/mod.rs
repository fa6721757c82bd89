//! ETSI handover (the MDF side): records -> numbered PS-PDUs -> durable spool -> HI2/HI3.
//!
//! - [`config`]: `[[lea]]` tables as [`LeaConfig`].
//! - [`mdf`]: the sans-I/O core ([`Mdf`]): routing by warrant, sequence numbers per
//!   (LIID, CIN, IRI|CC), integrity checks, cINReset after a restart.
//! - [`spool`]: per LEA and channel, append-only checksummed records and a delivered offset.
//! - [`sender`]: a tokio runtime on its own thread; per LEA one HI2 and one HI3 connection
//!   (TCP or mutual TLS 1.3), backoff, keep-alives.
//!
//! A PDU is appended to the spool before it counts as sent; the sender only reads the spool.
//! So an LEA outage or a crash loses nothing: delivery resumes from the confirmed offset, and
//! what may arrive twice carries the same sequence number.
//!
//! Back-pressure: a full spool is never a reason to drop. [`Delivery::deliver`] waits until the
//! LEA has confirmed enough to free a segment; the caller's thread waits with it, so a replay
//! slows to the LEA's pace and a live capture leaves the burst in the kernel ring, which counts
//! what it cannot hold. Only when told to give up (a stop signal: [`Delivery::give_up_handle`])
//! does a full spool refuse, and each refusal is an alarm.
//!
//! Routing: a warrant goes to the LEA its `lea` names; a warrant without `lea` goes to the only
//! LEA when exactly one is configured, and is not delivered otherwise.

pub mod channels;
pub mod config;
pub mod mdf;
pub mod sender;
pub mod spool;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use channels::{ChannelSpec, Channels, SpoolHandle};
pub use config::{parse_leas, IntegrityFiles, LeaConfig, LeaError, TlsFiles};
pub use mdf::{Channel, Mdf, MdfCounts};
pub use sender::ChannelShared;
pub use spool::{Spool, SpoolError};

use crate::deliver::etsi::{Encoder, Signer};
use crate::record::{Record, RecordSink};
use crate::select::{Liid, Warrant};
use crate::timestamp::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("warrant {liid} (line {line}) names lea {lea:?}, which no [[lea]] table defines")]
    UnknownLea { liid: String, line: usize, lea: String },
    #[error("lea {lea}: {message}")]
    Lea { lea: String, message: String },
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("starting the delivery runtime: {0}")]
    Runtime(std::io::Error),
}

/// One channel's state at the end.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ChannelReport {
    /// PDUs appended to the spool in this run.
    pub spooled: u64,
    /// PDUs written to the socket in this run (a resend after a loss counts again).
    pub sent: u64,
    /// Bytes still in the spool, not confirmed by the LEA (kept for the next run).
    pub still_spooled_bytes: u64,
    pub connected: bool,
    pub connects: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    /// Torn records truncated from the spool's tail when it was opened.
    pub truncated_records: u64,
    /// Times a PDU found the spool full and waited for the LEA to confirm (back-pressure).
    pub full_waits: u64,
    /// Seconds spent in those waits.
    pub full_wait_secs: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct LeaReport {
    pub name: String,
    pub hi2: ChannelReport,
    pub hi3: ChannelReport,
    pub counts: MdfCounts,
    /// Everything spooled was confirmed by the LEA.
    pub complete: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DeliveryReport {
    pub leas: Vec<LeaReport>,
    /// Alarms raised (spool full, spool I/O errors), in order; the first 100.
    pub alarms: Vec<String>,
    pub alarm_count: u64,
}

impl DeliveryReport {
    pub fn complete(&self) -> bool {
        self.leas.iter().all(|l| l.complete)
    }
}

/// The running handover: a [`RecordSink`] on the caller's thread, senders on their own.
pub struct Delivery {
    mdf: Mdf,
    /// The LEAs' names; LEA `i`'s HI2 is channel `2i`, its HI3 `2i + 1`.
    leas: Vec<String>,
    channels: Channels,
    /// Set from outside: stop waiting for spool room (see the module notes).
    give_up: Arc<AtomicBool>,
    alarms: Vec<String>,
    alarm_count: u64,
    last_ts: Timestamp,
    /// Set: records are numbered and encoded but nothing is appended (an MDF rebuilding its
    /// state from its journal: those PDUs are in the spool already).
    mute: Arc<AtomicBool>,
}

/// How an MDF starts its delivery (see `deliver::x2x3::journal`): every spool held at its end,
/// so that the senders send only what a checkpoint covers.
#[derive(Clone, Debug, Default)]
pub struct Held {
    /// A crash recovery: each channel (by label, `lea1/hi2`) is cut back to its checkpoint.
    pub cut_to: HashMap<String, u64>,
    /// Whether the numbering starts with a cINReset per stream (the spools existed when the
    /// epoch began). A recovery continues the crashed epoch's numbering and passes its value.
    pub restarted: Option<bool>,
}

fn lea_err(lea: &str, message: impl Into<String>) -> DeliveryError {
    DeliveryError::Lea { lea: lea.into(), message: message.into() }
}

fn load_signer(lea: &str, path: &Path) -> Result<Signer, DeliveryError> {
    let der = std::fs::read(path).map_err(|e| lea_err(lea, format!("{}: {e}", path.display())))?;
    Signer::ed25519_pkcs8(&der)
        .or_else(|_| Signer::ecdsa_p256_pkcs8(&der))
        .map_err(|e| lea_err(lea, format!("{}: {e} (PKCS#8 DER Ed25519 or P-256 expected)", path.display())))
}

/// A directory name for an LEA (or an MDF's address): anything but `[A-Za-z0-9._-]` replaced.
pub(crate) fn dir_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
}

impl Delivery {
    /// Opens the spools under `spool_dir/<lea>/`, starts one sender thread (tokio) for all LEAs.
    pub fn start(leas: Vec<LeaConfig>, warrants: &[Warrant], spool_dir: &Path) -> Result<Delivery, DeliveryError> {
        Self::start_held(leas, warrants, spool_dir, None)
    }

    /// As [`Delivery::start`]; `held`: an MDF's (see [`Held`]).
    pub fn start_held(
        leas: Vec<LeaConfig>,
        warrants: &[Warrant],
        spool_dir: &Path,
        held: Option<&Held>,
    ) -> Result<Delivery, DeliveryError> {
        let mut route: HashMap<Liid, usize> = HashMap::new();
        let mut first_liid: Vec<Option<String>> = vec![None; leas.len()];
        for w in warrants {
            let idx = match &w.lea {
                Some(name) => Some(leas.iter().position(|l| &l.name == name).ok_or_else(|| {
                    DeliveryError::UnknownLea { liid: w.liid.to_string(), line: w.line, lea: name.clone() }
                })?),
                None if leas.len() == 1 => Some(0),
                None => None,
            };
            if let Some(i) = idx {
                route.insert(w.liid.clone(), i);
                first_liid[i].get_or_insert_with(|| w.liid.to_string());
            }
        }
        let mut signers = Vec::new();
        let mut specs = Vec::new();
        let mut restarted = false;
        for (i, l) in leas.iter().enumerate() {
            signers.push(match l.integrity.as_ref().and_then(|ic| ic.key.as_ref().filter(|_| ic.sign_every > 0)) {
                Some(k) => Some(load_signer(&l.name, k)?),
                None => None,
            });
            let tls = match &l.tls {
                Some(f) => Some(sender::tls_config(f).map_err(|e| lea_err(&l.name, e))?),
                None => None,
            };
            let encoder = Encoder::new(l.etsi.clone()).map_err(|e| lea_err(&l.name, e.to_string()))?;
            let link: Arc<dyn sender::Link> = Arc::new(sender::EtsiLink {
                encoder,
                keepalive_liid: first_liid[i].clone().unwrap_or_else(|| l.name.chars().take(25).collect()),
            });
            let dir: PathBuf = spool_dir.join(dir_name(&l.name));
            for (ch, addr) in [("hi2", &l.hi2), ("hi3", &l.hi3)] {
                let mut spool = Spool::open_with_segment_size(&dir, ch, l.max_spool_bytes, l.spool_segment_bytes)?;
                restarted |= spool.existed;
                let label = format!("{}/{ch}", l.name);
                if let Some(h) = held {
                    if let Some(&off) = h.cut_to.get(&label) {
                        let cut = spool.truncate_to(off)?;
                        if cut > 0 {
                            tracing::info!(channel = %label, bytes = cut, "spool cut back to the last checkpoint");
                        }
                    }
                    let end = spool.end();
                    spool.hold_at(end);
                }
                specs.push(ChannelSpec {
                    label,
                    spool,
                    addr: addr.clone(),
                    tls: tls.clone(),
                    link: link.clone(),
                    keepalive: Duration::from_secs(l.keepalive_secs),
                });
            }
        }
        let restarted = held.and_then(|h| h.restarted).unwrap_or(restarted);
        let mdf = Mdf::new(&leas, signers, route, restarted).map_err(|e| lea_err("?", e.to_string()))?;
        let channels = Channels::start(specs, "tapir-handover").map_err(DeliveryError::Runtime)?;
        Ok(Delivery {
            mdf,
            leas: leas.iter().map(|l| l.name.clone()).collect(),
            channels,
            give_up: Arc::new(AtomicBool::new(false)),
            alarms: Vec::new(),
            alarm_count: 0,
            last_ts: Timestamp::from_secs(0),
            mute: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Whether the numbering began with cINResets (the spools existed at the start).
    pub fn restarted(&self) -> bool {
        self.mdf.restarted()
    }

    /// Handles on the spools, for an MDF's checkpoints (see [`Held`]).
    pub fn spool_handles(&self) -> Vec<SpoolHandle> {
        self.channels.handles()
    }

    /// The flag that mutes this delivery (see the field).
    pub fn mute_handle(&self) -> Arc<AtomicBool> {
        self.mute.clone()
    }

    fn index(lea: usize, ch: Channel) -> usize {
        2 * lea + usize::from(ch == Channel::Hi3)
    }

    /// A flag that, once set (a stop signal, the daemon stopping), ends every wait for spool
    /// room: PDUs that find the spool full from then on are refused, each with an alarm.
    pub fn give_up_handle(&self) -> Arc<AtomicBool> {
        self.give_up.clone()
    }

    /// Uses `flag` as the give-up flag (one flag for deliveries restarted on a reload).
    pub fn with_give_up(mut self, flag: Arc<AtomicBool>) -> Delivery {
        self.give_up = flag;
        self
    }

    /// One record. Waits while the spool is full (see the module notes); a refused PDU (spool
    /// full after `give_up`, I/O error) is returned and kept as an alarm.
    pub fn deliver(&mut self, rec: &Record<'_>) -> Result<(), SpoolError> {
        let ts = match rec {
            Record::Iri(r) => r.ts,
            Record::Cc(c) => c.ts,
            _ => self.last_ts,
        };
        self.last_ts = self.last_ts.max(ts);
        let (channels, flag) = (&mut self.channels, &*self.give_up);
        let give_up = || flag.load(Ordering::Relaxed);
        let muted = self.mute.load(Ordering::Relaxed);
        let r = self.mdf.record(rec, &mut |lea, ch, pdu| match muted {
            true => Ok(()),
            false => channels.append(Self::index(lea, ch), pdu, &give_up),
        });
        if let Err(e) = &r {
            self.alarm(e.to_string());
        }
        r
    }

    fn alarm(&mut self, a: String) {
        self.alarm_count += 1;
        if self.alarms.len() < 100 {
            self.alarms.push(a);
        }
    }

    /// Alarms so far (spool full, ...): the caller reports them.
    pub fn alarms(&self) -> &[String] {
        &self.alarms
    }

    /// Makes everything spooled so far durable.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        self.channels.sync()
    }

    /// End of input: the pending integrity checks, fsync, then waits until every PDU is
    /// confirmed or `wait` has passed, whatever the LEA does (one that accepts and never reads
    /// included); what is not delivered stays in the spool.
    pub fn finish(mut self, wait: Duration) -> DeliveryReport {
        let deadline = Instant::now() + wait;
        let now = self.last_ts;
        let (channels, flag) = (&mut self.channels, &*self.give_up);
        let give_up = || flag.load(Ordering::Relaxed) || Instant::now() >= deadline;
        if let Err(e) = self.mdf.flush(now, &mut |lea, ch, pdu| channels.append(Self::index(lea, ch), pdu, &give_up)) {
            self.alarm(e.to_string());
        }
        if let Err(e) = self.sync() {
            self.alarm(e.to_string());
        }
        self.channels.wait_confirmed(deadline);
        self.channels.stop();
        self.report()
    }

    /// The state now (also usable while running).
    pub fn report(&self) -> DeliveryReport {
        let leas = self
            .leas
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let hi2 = self.channels.report(Self::index(i, Channel::Hi2));
                let hi3 = self.channels.report(Self::index(i, Channel::Hi3));
                let complete = hi2.still_spooled_bytes == 0 && hi3.still_spooled_bytes == 0;
                LeaReport {
                    name: name.clone(),
                    hi2,
                    hi3,
                    counts: self.mdf.counts(i).cloned().unwrap_or_default(),
                    complete,
                }
            })
            .collect();
        DeliveryReport { leas, alarms: self.alarms.clone(), alarm_count: self.alarm_count }
    }

    /// Whether (LEA index, channel) currently has a connection (for tests and status).
    pub fn connected(&self, lea: usize, ch: Channel) -> bool {
        self.channels.shared(Self::index(lea, ch)).is_some_and(|c| c.connected.load(Ordering::Relaxed))
    }
}

impl RecordSink for Delivery {
    fn record(&mut self, rec: Record<'_>) {
        // Refusals are kept as alarms (`alarms()`, the report); the pipeline goes on.
        let _ = self.deliver(&rec);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn delivery_can_run_on_the_output_thread() {
        fn send<T: Send + 'static>() {}
        // `Threaded<Delivery>` needs this.
        send::<super::Delivery>();
    }
}
