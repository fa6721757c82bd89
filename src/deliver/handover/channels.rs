//! Spooled channels and the runtime that streams them: what HI2/HI3 delivery to an LEA and a
//! POI's X2/X3 to its MDF have in common.
//!
//! Each channel is a durable [`Spool`] and a sender task ([`sender::run`]) on one tokio runtime
//! thread. A PDU counts as sent once appended; a full spool makes the appender wait for the far
//! end to confirm, unless told to give up (see the `handover` module notes).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::sender::{self, ChannelShared, ChannelTask, Link};
use super::spool::{Spool, SpoolError};
use super::ChannelReport;

/// How long stopping waits for the sender thread.
const SENDER_STOP: Duration = Duration::from_secs(2);
/// How often a PDU waiting for spool room tries again.
const FULL_RETRY: Duration = Duration::from_millis(5);

/// One channel to open.
pub struct ChannelSpec {
    /// For logs: `lea1/hi2`, `mdf-a/x2x3`.
    pub label: String,
    pub spool: Spool,
    pub addr: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub link: Arc<dyn Link>,
    pub keepalive: Duration,
}

struct Chan {
    label: String,
    shared: Arc<ChannelShared>,
    spooled: u64,
    truncated: u64,
    full_waits: u64,
    full_wait: Duration,
}

/// One running channel's spool, seen from another thread: an MDF's checkpoint syncs it, reads
/// its end and lets its sender go up to a checkpoint (see `deliver::x2x3::journal`).
#[derive(Clone, Debug)]
pub struct SpoolHandle {
    /// `lea1/hi2`: how a checkpoint names the channel.
    pub label: String,
    shared: Arc<ChannelShared>,
}

impl SpoolHandle {
    fn lock_err(&self) -> SpoolError {
        SpoolError::Io { path: PathBuf::from(&self.label), source: std::io::Error::other("spool lock poisoned") }
    }

    /// Makes what is appended durable and returns the end.
    pub fn sync_end(&self) -> Result<u64, SpoolError> {
        let mut sp = self.shared.spool.lock().map_err(|_| self.lock_err())?;
        sp.sync()?;
        Ok(sp.end())
    }

    /// The sender may send what lies before `off`.
    pub fn publish(&self, off: u64) {
        if let Ok(mut sp) = self.shared.spool.lock() {
            sp.publish(off);
        }
        self.shared.notify.notify_one();
    }
}

/// The running channels.
pub struct Channels {
    chans: Vec<Chan>,
    stop: tokio::sync::watch::Sender<bool>,
    runtime: Option<std::thread::JoinHandle<()>>,
}

impl Channels {
    /// Starts one sender per spec on a runtime thread named `thread`.
    pub fn start(specs: Vec<ChannelSpec>, thread: &str) -> std::io::Result<Channels> {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut chans = Vec::new();
        let mut tasks = Vec::new();
        for s in specs {
            let truncated = s.spool.truncated_records;
            let shared = Arc::new(ChannelShared::new(s.spool));
            tasks.push(ChannelTask {
                shared: shared.clone(),
                addr: s.addr,
                tls: s.tls,
                link: s.link,
                keepalive: s.keepalive,
                stop: stop_rx.clone(),
            });
            chans.push(Chan {
                label: s.label,
                shared,
                spooled: 0,
                truncated,
                full_waits: 0,
                full_wait: Duration::ZERO,
            });
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let runtime = std::thread::Builder::new().name(thread.into()).spawn(move || {
            rt.block_on(async move {
                let handles: Vec<_> = tasks.into_iter().map(|t| tokio::spawn(sender::run(t))).collect();
                for h in handles {
                    let _ = h.await;
                }
            })
        })?;
        Ok(Channels { chans, stop, runtime: Some(runtime) })
    }

    pub fn len(&self) -> usize {
        self.chans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chans.is_empty()
    }

    pub fn shared(&self, i: usize) -> Option<&Arc<ChannelShared>> {
        self.chans.get(i).map(|c| &c.shared)
    }

    /// Handles on every channel's spool, in order.
    pub fn handles(&self) -> Vec<SpoolHandle> {
        self.chans.iter().map(|c| SpoolHandle { label: c.label.clone(), shared: c.shared.clone() }).collect()
    }

    /// The logical offset the next PDU appended to channel `i` will have.
    pub fn end(&self, i: usize) -> Option<u64> {
        self.chans.get(i)?.shared.spool.lock().ok().map(|s| s.end())
    }

    /// Appends one PDU to channel `i`; on a full spool waits for the sender to free room,
    /// unless `give_up`.
    pub fn append(&mut self, i: usize, pdu: &[u8], give_up: &dyn Fn() -> bool) -> Result<(), SpoolError> {
        let Some(c) = self.chans.get_mut(i) else { return Ok(()) };
        let mut waiting: Option<Instant> = None;
        let r = loop {
            let r = match c.shared.spool.lock() {
                Ok(mut sp) => sp.append(pdu),
                Err(_) => Err(SpoolError::Io {
                    path: PathBuf::from(&c.label),
                    source: std::io::Error::other("spool lock poisoned"),
                }),
            };
            match r {
                Err(SpoolError::Full { .. }) if !give_up() => {
                    if waiting.is_none() {
                        waiting = Some(Instant::now());
                        c.full_waits += 1;
                        // The sender asks for confirmation at once instead of after its usual gap.
                        c.shared.full.store(true, Ordering::Relaxed);
                        tracing::warn!(channel = %c.label, "spool full: waiting for the far end to confirm");
                    }
                    c.shared.notify.notify_one();
                    std::thread::sleep(FULL_RETRY);
                }
                r => break r,
            }
        };
        if let Some(t) = waiting {
            c.full_wait += t.elapsed();
            c.shared.full.store(false, Ordering::Relaxed);
        }
        r?;
        c.spooled += 1;
        c.shared.notify.notify_one();
        Ok(())
    }

    /// Makes everything spooled so far durable.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        for c in &self.chans {
            if let Ok(mut sp) = c.shared.spool.lock() {
                sp.sync()?;
            }
        }
        Ok(())
    }

    /// Wakes every sender (what was spooled goes now).
    pub fn notify_all(&self) {
        for c in &self.chans {
            c.shared.notify.notify_one();
        }
    }

    /// Whether the far ends confirmed everything spooled.
    pub fn all_confirmed(&self) -> bool {
        self.chans.iter().all(|c| c.shared.spool.lock().is_ok_and(|s| s.pending_bytes() == 0))
    }

    /// Waits until everything is confirmed or `deadline` passes; a held spool is let go first.
    pub fn wait_confirmed(&self, deadline: Instant) {
        for c in &self.chans {
            if let Ok(mut sp) = c.shared.spool.lock() {
                sp.release();
            }
        }
        self.notify_all();
        while Instant::now() < deadline && !self.all_confirmed() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Tells the senders to stop and waits for them a little: a sender stops in the middle of
    /// a write, but should one not, it is left behind rather than holding the caller.
    pub fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.runtime.take() {
            let deadline = Instant::now() + SENDER_STOP;
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                tracing::error!("a sender did not stop within {SENDER_STOP:?}; left behind");
            }
        }
    }

    /// Channel `i`'s state now.
    pub fn report(&self, i: usize) -> ChannelReport {
        let Some(c) = self.chans.get(i) else { return ChannelReport::default() };
        let s = &c.shared;
        ChannelReport {
            spooled: c.spooled,
            sent: s.sent_pdus.load(Ordering::Relaxed),
            still_spooled_bytes: s.spool.lock().map_or(u64::MAX, |s| s.pending_bytes()),
            connected: s.connected.load(Ordering::Relaxed),
            connects: s.connects.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            last_error: s.last_error.lock().ok().and_then(|e| e.clone()),
            truncated_records: c.truncated,
            full_waits: c.full_waits,
            full_wait_secs: c.full_wait.as_secs_f64(),
        }
    }
}

impl Drop for Channels {
    /// Without an orderly stop (a crash stand-in): stop the senders, sync nothing more.
    fn drop(&mut self) {
        self.stop();
    }
}
