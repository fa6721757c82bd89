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

pub mod config;
pub mod mdf;
pub mod sender;
pub mod spool;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

struct LeaRt {
    name: String,
    hi2: Arc<ChannelShared>,
    hi3: Arc<ChannelShared>,
    spooled: [u64; 2],
    truncated: [u64; 2],
    full_waits: [u64; 2],
    full_wait: [Duration; 2],
}

/// How long stopping waits for the sender thread.
const SENDER_STOP: Duration = Duration::from_secs(2);
/// How often a PDU waiting for spool room tries again.
const FULL_RETRY: Duration = Duration::from_millis(5);

/// The running handover: a [`RecordSink`] on the caller's thread, senders on their own.
pub struct Delivery {
    mdf: Mdf,
    leas: Vec<LeaRt>,
    stop: tokio::sync::watch::Sender<bool>,
    runtime: Option<std::thread::JoinHandle<()>>,
    /// Set from outside: stop waiting for spool room (see the module notes).
    give_up: Arc<AtomicBool>,
    alarms: Vec<String>,
    alarm_count: u64,
    last_ts: Timestamp,
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

/// A directory name for an LEA: its name with anything but `[A-Za-z0-9._-]` replaced.
fn dir_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
}

impl Delivery {
    /// Opens the spools under `spool_dir/<lea>/`, starts one sender thread (tokio) for all LEAs.
    pub fn start(leas: Vec<LeaConfig>, warrants: &[Warrant], spool_dir: &Path) -> Result<Delivery, DeliveryError> {
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
        let mut rts = Vec::new();
        let mut tasks = Vec::new();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
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
            let dir: PathBuf = spool_dir.join(dir_name(&l.name));
            let mut chans = Vec::new();
            let mut truncated = [0; 2];
            for (k, (ch, addr)) in [("hi2", &l.hi2), ("hi3", &l.hi3)].into_iter().enumerate() {
                let sp = Spool::open_with_segment_size(&dir, ch, l.max_spool_bytes, l.spool_segment_bytes)?;
                restarted |= sp.existed;
                truncated[k] = sp.truncated_records;
                let shared = Arc::new(ChannelShared::new(sp));
                tasks.push(sender::ChannelTask {
                    shared: shared.clone(),
                    addr: addr.clone(),
                    tls: tls.clone(),
                    link: Arc::new(sender::EtsiLink {
                        encoder: encoder.clone(),
                        keepalive_liid: first_liid[i].clone().unwrap_or_else(|| l.name.chars().take(25).collect()),
                    }),
                    keepalive: Duration::from_secs(l.keepalive_secs),
                    stop: stop_rx.clone(),
                });
                chans.push(shared);
            }
            let hi3 = chans.pop().ok_or_else(|| lea_err(&l.name, "no hi3"))?;
            let hi2 = chans.pop().ok_or_else(|| lea_err(&l.name, "no hi2"))?;
            rts.push(LeaRt {
                name: l.name.clone(),
                hi2,
                hi3,
                spooled: [0; 2],
                truncated,
                full_waits: [0; 2],
                full_wait: [Duration::ZERO; 2],
            });
        }
        let mdf = Mdf::new(&leas, signers, route, restarted).map_err(|e| lea_err("?", e.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(DeliveryError::Runtime)?;
        let runtime = std::thread::Builder::new()
            .name("tapir-handover".into())
            .spawn(move || {
                rt.block_on(async move {
                    let handles: Vec<_> = tasks.into_iter().map(|t| tokio::spawn(sender::run(t))).collect();
                    for h in handles {
                        let _ = h.await;
                    }
                })
            })
            .map_err(DeliveryError::Runtime)?;
        Ok(Delivery {
            mdf,
            leas: rts,
            stop,
            runtime: Some(runtime),
            give_up: Arc::new(AtomicBool::new(false)),
            alarms: Vec::new(),
            alarm_count: 0,
            last_ts: Timestamp::from_secs(0),
        })
    }

    fn channel(&self, lea: usize, ch: Channel) -> Option<&Arc<ChannelShared>> {
        self.leas.get(lea).map(|l| if ch == Channel::Hi2 { &l.hi2 } else { &l.hi3 })
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

    /// Appends one PDU; on a full spool waits for the sender to free room, unless `give_up`.
    fn emit_into(
        leas: &mut [LeaRt],
        give_up: &dyn Fn() -> bool,
        lea: usize,
        ch: Channel,
        pdu: &[u8],
    ) -> Result<(), SpoolError> {
        let Some(l) = leas.get_mut(lea) else { return Ok(()) };
        let (shared, k) = if ch == Channel::Hi2 { (&l.hi2, 0) } else { (&l.hi3, 1) };
        let mut waiting: Option<Instant> = None;
        let r = loop {
            let r = match shared.spool.lock() {
                Ok(mut sp) => sp.append(pdu),
                Err(_) => Err(SpoolError::Io {
                    path: PathBuf::from(&l.name),
                    source: std::io::Error::other("spool lock poisoned"),
                }),
            };
            match r {
                Err(SpoolError::Full { .. }) if !give_up() => {
                    if waiting.is_none() {
                        waiting = Some(Instant::now());
                        l.full_waits[k] += 1;
                        // The sender asks for confirmation at once instead of after its usual gap.
                        shared.full.store(true, Ordering::Relaxed);
                        tracing::warn!(lea = %l.name, channel = ?ch, "spool full: waiting for the LEA to confirm");
                    }
                    shared.notify.notify_one();
                    std::thread::sleep(FULL_RETRY);
                }
                r => break r,
            }
        };
        if let Some(t) = waiting {
            l.full_wait[k] += t.elapsed();
            shared.full.store(false, Ordering::Relaxed);
        }
        r?;
        l.spooled[k] += 1;
        shared.notify.notify_one();
        Ok(())
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
        let (leas, flag) = (&mut self.leas, &*self.give_up);
        let give_up = || flag.load(Ordering::Relaxed);
        let r = self.mdf.record(rec, &mut |lea, ch, pdu| Self::emit_into(leas, &give_up, lea, ch, pdu));
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
        for l in &self.leas {
            for c in [&l.hi2, &l.hi3] {
                if let Ok(mut sp) = c.spool.lock() {
                    sp.sync()?;
                }
            }
        }
        Ok(())
    }

    /// End of input: the pending integrity checks, fsync, then waits until every PDU is
    /// confirmed or `wait` has passed, whatever the LEA does (one that accepts and never reads
    /// included); what is not delivered stays in the spool.
    pub fn finish(mut self, wait: Duration) -> DeliveryReport {
        let deadline = Instant::now() + wait;
        let now = self.last_ts;
        let (leas, flag) = (&mut self.leas, &*self.give_up);
        let give_up = || flag.load(Ordering::Relaxed) || Instant::now() >= deadline;
        if let Err(e) = self.mdf.flush(now, &mut |lea, ch, pdu| Self::emit_into(leas, &give_up, lea, ch, pdu)) {
            self.alarm(e.to_string());
        }
        if let Err(e) = self.sync() {
            self.alarm(e.to_string());
        }
        for l in &self.leas {
            l.hi2.notify.notify_one();
            l.hi3.notify.notify_one();
        }
        while Instant::now() < deadline && !self.all_confirmed() {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop_senders();
        self.report()
    }

    /// Tells the senders to stop and waits for them a little: a sender stops in the middle of
    /// a write, but should one not, it is left behind rather than holding the caller.
    fn stop_senders(&mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.runtime.take() {
            let deadline = Instant::now() + SENDER_STOP;
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                tracing::error!("a handover sender did not stop within {SENDER_STOP:?}; left behind");
            }
        }
    }

    fn all_confirmed(&self) -> bool {
        self.leas.iter().all(|l| [&l.hi2, &l.hi3].iter().all(|c| c.spool.lock().is_ok_and(|s| s.pending_bytes() == 0)))
    }

    /// The state now (also usable while running).
    pub fn report(&self) -> DeliveryReport {
        let chan = |c: &ChannelShared, spooled: u64, truncated: u64, waits: u64, waited: Duration| ChannelReport {
            spooled,
            sent: c.sent_pdus.load(Ordering::Relaxed),
            still_spooled_bytes: c.spool.lock().map_or(u64::MAX, |s| s.pending_bytes()),
            connected: c.connected.load(Ordering::Relaxed),
            connects: c.connects.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            last_error: c.last_error.lock().ok().and_then(|e| e.clone()),
            truncated_records: truncated,
            full_waits: waits,
            full_wait_secs: waited.as_secs_f64(),
        };
        let leas = self
            .leas
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let hi2 = chan(&l.hi2, l.spooled[0], l.truncated[0], l.full_waits[0], l.full_wait[0]);
                let hi3 = chan(&l.hi3, l.spooled[1], l.truncated[1], l.full_waits[1], l.full_wait[1]);
                let complete = hi2.still_spooled_bytes == 0 && hi3.still_spooled_bytes == 0;
                LeaReport {
                    name: l.name.clone(),
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
        self.channel(lea, ch).is_some_and(|c| c.connected.load(Ordering::Relaxed))
    }
}

impl RecordSink for Delivery {
    fn record(&mut self, rec: Record<'_>) {
        // Refusals are kept as alarms (`alarms()`, the report); the pipeline goes on.
        let _ = self.deliver(&rec);
    }
}

impl Drop for Delivery {
    /// Without `finish` (a crash stand-in): stop the senders, sync nothing more.
    fn drop(&mut self) {
        self.stop_senders();
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
