//! `tapir run` as an MDF (`[node] role = "mdf"`): no capture; POIs send X2/X3, the MDF numbers
//! their sessions, runs the record stage over all of them (cross-links and image inspection
//! need every POI's records), writes the case and delivers HI2/HI3.
//!
//! One thread takes every POI's PDUs ([`MdfIntake`]), in the order each POI sent them, and
//! journals them first; the listener acknowledges a POI's keepalive once this thread has taken
//! what came before it, the delivery has spooled it and a checkpoint made all of it durable
//! (see `deliver::x2x3::journal`: a crash then resumes where the checkpoint was).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::{channel, sync_channel, RecvTimeoutError, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::clock::Every;
use super::config::{Config, MdfConfig};
use super::feeds::{DeliveryStatus, Feeds, X2x3Snapshot};
use super::run::{
    finish_delivery, inspection, liids, new_case_dir, redacted, redeliver, signing_key, spawn_delivery, stop_signals,
    warrants_provider, Control, Hooks, Outputs, RunReport, Say,
};
use crate::deliver::handover::{parse_leas, Delivery, Held, SpoolHandle};
use crate::deliver::x2x3::journal::{Entry, Epoch, Journal, Recovery, TaskEntry};
use crate::deliver::x2x3::listen::{Batch, Handoff, ListenConfig, Listening};
use crate::deliver::x2x3::records::{capture_time, MdfIntake, Task};
use crate::pipeline::{Recorder, Totals};
use crate::record::{Liid, Numbers, Xid};
use crate::select::Warrant;
use crate::timestamp::Timestamp;

/// Refusals logged one by one before only their count goes on (a POI gone wrong could
/// otherwise fill the log).
const LOGGED_REFUSALS: u64 = 20;

/// No PDU for this long: the MDF's clock may move on by itself (see the loop).
const QUIET: Duration = Duration::from_secs(1);

fn tasks_of(w: &[Warrant]) -> HashMap<Xid, Task> {
    w.iter().map(|w| (w.xid, Task { liid: w.liid.clone(), scope: w.scope })).collect()
}

/// The tasks as the journal keeps them.
fn task_entries(w: &[Warrant]) -> Vec<TaskEntry> {
    w.iter().map(|w| (w.xid.to_string(), w.liid.to_string(), w.scope)).collect()
}

/// What the MDF's thread works with: PDUs in, records through the record stage to the
/// outputs.
struct Taker {
    intake: MdfIntake,
    recorder: Recorder,
    out: Outputs,
    /// The delivery's spools, held at the last checkpoint; the flag that mutes it.
    spools: Vec<SpoolHandle>,
    mute: Option<Arc<AtomicBool>>,
    logged: u64,
}

fn journal_given_up(e: &dyn std::fmt::Display) {
    tracing::error!(error = %e, "ALARM intake journal given up: a crash from now on restarts the numbering");
}

impl Taker {
    /// One PDU from `poi`: journaled (when `journal` is given), then taken. The record stage's
    /// inspections fall due by capture time, not by the clock (so that a recovery meets them at
    /// the same points), before the PDU whose time they fall due by, as in a replay.
    fn take(&mut self, journal: Option<&mut Journal>, poi: &Arc<str>, pdu: &[u8]) {
        if let Some(Err(e)) = journal.map(|j| j.pdu(poi, pdu)) {
            journal_given_up(&e);
        }
        if let Some(t) = capture_time(pdu).filter(|&t| self.recorder.next_due().is_some_and(|d| d <= t)) {
            self.recorder.due(t, &mut self.out);
        }
        let mut sink = self.recorder.sink(&mut self.out);
        if let Err(e) = self.intake.pdu(poi, pdu, &mut sink) {
            self.logged += 1;
            if self.logged <= LOGGED_REFUSALS {
                tracing::warn!(poi = %poi, error = %e, "X2/X3 PDU refused");
            }
        }
    }

    /// A quiet MDF's clock moves to `ts` (journaled, so that a recovery moves it at the same
    /// point): the inspections due by then are recorded.
    fn tick(&mut self, journal: Option<&mut Journal>, ts: Timestamp) {
        if let Some(Err(e)) = journal.map(|j| j.append(&Entry::Tick(ts.nanos()))) {
            journal_given_up(&e);
        }
        self.recorder.due(ts, &mut self.out);
    }

    fn set_tasks(&mut self, tasks: &[TaskEntry]) {
        let mut map = HashMap::new();
        let mut scopes = Vec::new();
        for (xid, liid, scope) in tasks {
            if let (Some(xid), Ok(liid)) = (Xid::parse(xid), Liid::new(liid)) {
                map.insert(xid, Task { liid: liid.clone(), scope: *scope });
                scopes.push((liid, *scope));
            }
        }
        self.intake.set_tasks(map);
        self.recorder.set_scopes(scopes);
    }

    /// A checkpoint: everything taken so far spooled and synced, the spools' ends journaled
    /// and synced, and only then the senders let go up to them. `false`: the delivery thread
    /// is gone.
    fn checkpoint(&mut self, journal: &mut Journal) -> bool {
        self.out.out.flush();
        if !self.out.out.wait_delivery_taken() {
            return false;
        }
        let mut ends = HashMap::new();
        for h in &self.spools {
            match h.sync_end() {
                Ok(end) => {
                    ends.insert(h.label.clone(), end);
                }
                Err(e) => tracing::error!(error = %e, "checkpoint: spool sync"),
            }
        }
        if let Err(e) = journal.checkpoint(ends.clone()) {
            journal_given_up(&e);
        }
        for h in &self.spools {
            if let Some(&end) = ends.get(&h.label) {
                h.publish(end);
            }
        }
        true
    }

    /// What an acknowledgement needs: a checkpoint with a journal, else what is gathered handed
    /// to the outputs. `false`: the delivery thread is gone.
    fn commit(&mut self, journal: Option<&mut Journal>) -> bool {
        match journal {
            Some(j) => self.checkpoint(j),
            None => {
                self.out.out.flush();
                true
            }
        }
    }

    /// A crashed epoch's PDUs taken again, with delivery muted (their PDUs are spooled), into
    /// this run's case. Returns the PDUs taken.
    fn recover(&mut self, journal: &Journal, r: &Recovery) -> Result<u64> {
        if let Some(m) = &self.mute {
            m.store(true, Ordering::Relaxed);
        }
        let mut pdus = 0u64;
        for e in journal.replay(r) {
            match e.context("reading the intake journal")? {
                Entry::Pdu { poi, pdu } => {
                    self.take(None, &poi, &pdu);
                    pdus += 1;
                }
                Entry::Tasks(t) => self.set_tasks(&t),
                Entry::Tick(t) => self.tick(None, Timestamp(t)),
                Entry::Epoch(_) | Entry::Checkpoint(_) => {}
            }
        }
        if !self.out.out.wait_delivery_taken() {
            bail!("the delivery thread ended during the recovery");
        }
        if let Some(m) = &self.mute {
            m.store(false, Ordering::Relaxed);
        }
        Ok(pdus)
    }
}

/// A clean end of the journal's epoch: each POI's last position kept, the journal deleted.
fn close_journal(j: Journal, intake: &MdfIntake) {
    let taken: HashMap<String, u64> = intake.taken().map(|(p, o)| (p.to_string(), o)).collect();
    if let Err(e) = j.close(&taken) {
        tracing::error!(error = %e, "closing the intake journal");
    }
}

/// Notes in a crashed run's case (never signed) that `by` holds its records.
fn supersede(old: &Path, by: &Path) {
    if old.is_dir() && old != by {
        let note = format!(
            "This case was not closed: its MDF stopped without a clean stop. Every record it holds, and what came after, is in {}\n",
            by.display()
        );
        if let Err(e) = std::fs::write(old.join("SUPERSEDED"), note) {
            tracing::warn!(case = %old.display(), error = %e, "marking the crashed run's case");
        }
    }
}

pub fn run(config: &Config, m: &MdfConfig, mut hooks: Hooks) -> Result<RunReport> {
    if hooks.replay.is_some() {
        bail!("an MDF replays nothing: its POIs capture");
    }
    let notifier = Say::new(hooks.notify.take(), false);
    let say = |s: &str| notifier.say(s);
    let clock = hooks.clock.clone();
    let (control_tx, control_rx) = (hooks.control.0.clone(), std::mem::replace(&mut hooks.control.1, channel().1));
    let x1 = super::x1::X1Service::open(config)?;
    let mut provider = warrants_provider(config, hooks.warrants.take(), x1.as_ref());
    let all = provider.load().map_err(|e| anyhow!("loading warrants: {}", redacted(&e, &provider.describe())))?;
    let key = signing_key(config)?;
    let tls = m.tls.as_ref().map(crate::deliver::tls::acceptor).transpose().context("[node] X2/X3 TLS")?;
    let give_up = Arc::new(AtomicBool::new(false));
    let signalled = Arc::new(AtomicI32::new(0));
    if hooks.signals {
        stop_signals(control_tx.clone(), give_up.clone(), signalled.clone(), true)?;
    }

    // The journal first: a crashed epoch decides where the HI spools are cut back to.
    let spool_dir = &config.paths.spool_dir;
    let journal_dir = spool_dir.join("x2x3-journal");
    let (mut journal, recovery) = match m.journal_max_bytes {
        0 => (None, None),
        max => {
            let (j, r) = Journal::open(&journal_dir, max).context("opening the intake journal")?;
            (Some(j), r)
        }
    };
    let held = Held {
        cut_to: recovery.as_ref().map(|r| r.checkpoint.clone()).unwrap_or_default(),
        restarted: recovery.as_ref().map(|r| r.epoch.restarted),
    };

    let case_root = new_case_dir(&config.paths.case_dir)?;
    let wfile = provider.describe();
    let status = DeliveryStatus::default();
    let leas = parse_leas(&all.lea, &wfile)?;
    let (delivery, spools, mute, restarted) = if leas.is_empty() {
        (None, Vec::new(), None, false)
    } else {
        std::fs::create_dir_all(spool_dir).with_context(|| format!("creating spool {}", spool_dir.display()))?;
        // Held at checkpoints only with a journal to make them: without one, nothing would let
        // the senders go until the stop.
        let held = journal.is_some().then_some(&held);
        let d = Delivery::start_held(leas, &all.warrants, spool_dir, held)?.with_give_up(give_up.clone());
        let (spools, mute, restarted) = (d.spool_handles(), d.mute_handle(), d.restarted());
        (Some(spawn_delivery(d, &all, &status)), spools, Some(mute), restarted)
    };
    let mut out = Outputs {
        out: crate::deliver::outputs::Outputs::create(&case_root)?,
        xids: None,
        mdf_routes: None,
        delivery: None,
        status,
        give_up,
        intercepts: HashMap::new(),
        count_intercepts: x1.is_some(),
    };
    out.deliver_to(delivery, Duration::ZERO);
    // Inspections are waited for at points fixed by capture time (`Taker::take`), never
    // refused for a full queue: what the MDF makes depends only on what it took.
    let intake_cfg = inspection(config, &case_root, true)?;
    let content_limits = config.limits.flow_config().content;
    let recorder = Recorder::new(&all.warrants, Numbers::default(), content_limits, intake_cfg);
    let mut intake = MdfIntake::new(tasks_of(&all.warrants), m.max_sessions, recorder.numbers());
    if journal.is_some() {
        intake.restore_taken(Journal::positions(&journal_dir));
    }
    let mut feeds = Feeds::start_mdf(config, out.status.clone())?;
    let mut taker = Taker { intake, recorder, out, spools, mute, logged: 0 };
    let mut warrants = all.warrants.clone();

    if let (Some(j), Some(r)) = (&mut journal, &recovery) {
        let started = Instant::now();
        let pdus = taker.recover(j, r)?;
        supersede(&r.epoch.case, &case_root);
        tracing::info!(
            pdus, dropped_after_checkpoint = r.dropped_bytes, crashed_case = %r.epoch.case.display(),
            secs = started.elapsed().as_secs_f64(), "intake journal: a crashed epoch taken again, numbering resumed"
        );
        // The warrants now in force, whatever the crashed epoch's last reload said.
        taker.set_tasks(&task_entries(&warrants));
        if let Err(e) = j.append(&Entry::Tasks(task_entries(&warrants))) {
            journal_given_up(&e);
        }
    }
    if let Some(j) = &mut journal {
        // A recovery continues the crashed epoch's numbering, whether or not an LEA is there now.
        let restarted = recovery.as_ref().map_or(restarted, |r| r.epoch.restarted);
        if let Err(e) = j.append(&Entry::Epoch(Epoch { case: case_root.clone(), restarted })) {
            journal_given_up(&e);
        }
        taker.checkpoint(j);
    }

    // POIs' batches come to this thread through a bounded queue: a full one holds the POIs'
    // connections back (their spools keep what waits).
    let (tx, rx) = sync_channel::<Batch>(config.limits.queue_batches);
    let handoff: Handoff = Arc::new(move |b: Batch| match tx.try_send(b) {
        Ok(()) => Ok(true),
        Err(TrySendError::Full(b)) => Err(b),
        Err(TrySendError::Disconnected(_)) => Ok(false),
    });
    let mut listener = Listening::start(
        ListenConfig { addr: m.listen, tls, max_pdu: m.max_pdu, keepalive: Duration::from_secs(30) },
        handoff,
    )
    .with_context(|| format!("X2/X3 listener on {}", m.listen))?;
    let x1_running = x1.map(|x| x.start(control_tx.clone())).transpose()?;
    tracing::info!(
        config = %config.file.display(), listen = %listener.addr, tls = m.tls.is_some(),
        warrants = %liids(&warrants), case = %case_root.display(), delivery = taker.out.out.delivers(),
        journal = journal.is_some(), "tapir MDF running"
    );
    say(&format!("READY=1\nSTATUS=MDF, {} warrant(s)", warrants.len()));
    feeds.ready();
    let snapshot = |t: &Taker, l: &Listening, j: &Option<Journal>| {
        let (c, st) = (&t.intake.counts, &l.stats);
        X2x3Snapshot {
            x2: c.x2,
            x3: c.x3,
            refused: c.refused,
            resent: c.resent,
            connections: st.connections.load(Ordering::Relaxed),
            framing_errors: st.framing_errors.load(Ordering::Relaxed),
            tls_refused: st.refused.load(Ordering::Relaxed),
            journal: j.as_ref().is_some_and(Journal::active),
        }
    };

    let mut reloads = 0u64;
    let mut flush = Every::new(Duration::from_millis(100), clock.now());
    let mut last_batch = clock.now();
    let wait = Duration::from_secs(config.limits.deliver_wait_secs);
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(batch) => {
                last_batch = clock.now();
                for pdu in &batch.pdus {
                    taker.take(journal.as_mut(), &batch.poi, pdu);
                }
                if let Some(ack) = batch.ack {
                    // Taken, spooled, and durable in a checkpoint: the POI may let it go.
                    if taker.commit(journal.as_mut()) {
                        let _ = ack.send(());
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                // Quiet: capture time stands still, and an inspection that fell due after the
                // last PDU would wait for the next. Live capture's time is the wall clock's, so
                // it moves on to that (journaled), and what it records is released at once.
                let wall = Timestamp(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX));
                let due = taker.recorder.next_due().filter(|&t| t <= wall && t > taker.intake.latest);
                if due.is_some() && clock.now().saturating_duration_since(last_batch) >= QUIET {
                    taker.tick(journal.as_mut(), wall);
                    taker.commit(journal.as_mut());
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if flush.due(clock.now()) {
            taker.out.out.flush();
        }
        if let Some(x) = &x1_running {
            x.note_intercepts(taker.out.intercepts.drain());
        }
        feeds.poll_mdf(&snapshot(&taker, &listener, &journal), clock.now());
        let mut stopping = false;
        loop {
            match control_rx.try_recv() {
                Ok(Control::Stop) => stopping = true,
                Ok(c @ (Control::Reload | Control::Warrants(_))) => {
                    let loaded = match c {
                        Control::Warrants(w) => Ok(w),
                        _ => provider.load(),
                    };
                    match loaded.and_then(|new| Ok((parse_leas(&new.lea, &wfile)?, new))) {
                        Ok((leas, new)) => {
                            if redeliver(&mut taker.out, &warrants, &new, &leas, &wfile, spool_dir, wait) {
                                // The new delivery's numbering starts afresh and is not held: a
                                // crash cannot resume it.
                                if let Some(j) = journal.take() {
                                    close_journal(j, &taker.intake);
                                    tracing::warn!("[[lea]] or routes changed: the intake journal ends with this epoch's numbering");
                                }
                                taker.spools.clear();
                                taker.mute = None;
                            }
                            taker.set_tasks(&task_entries(&new.warrants));
                            if let Some(Err(e)) =
                                journal.as_mut().map(|j| j.append(&Entry::Tasks(task_entries(&new.warrants))))
                            {
                                journal_given_up(&e);
                            }
                            warrants = new.warrants;
                            reloads += 1;
                            tracing::info!(warrants = %liids(&warrants), "warrants reloaded");
                        }
                        Err(e) => tracing::error!(error = %redacted(&e, &provider.describe()), "reload refused"),
                    }
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if stopping {
            say("STOPPING=1");
            feeds.stopping();
            break;
        }
    }
    // No more POI input; what was handed over is taken (the POIs' positions are kept, so what
    // they send again after a restart is known as a resend).
    listener.stop();
    while let Ok(batch) = rx.try_recv() {
        for pdu in &batch.pdus {
            taker.take(journal.as_mut(), &batch.poi, pdu);
        }
    }
    let inspected = taker.recorder.finish(&mut taker.out);
    if let Some(j) = &mut journal {
        taker.checkpoint(j);
    }
    feeds.close();
    let Taker { intake, out, .. } = taker;
    let c = &intake.counts;
    let st = &listener.stats;
    tracing::info!(
        x2 = c.x2,
        x3 = c.x3,
        refused = c.refused,
        resent = c.resent,
        notices_repeated = c.notices_repeated,
        connections = st.connections.load(Ordering::Relaxed),
        tls_refused = st.refused.load(Ordering::Relaxed),
        framing_errors = st.framing_errors.load(Ordering::Relaxed),
        "X2/X3 intake"
    );
    let now = Timestamp::from_secs(chrono::Utc::now().timestamp()).to_rfc3339();
    let damage: [String; 0] = [];
    let closed = out.out.close(&damage, &key, &now, None)?;
    // The case is signed: the epoch ends. Each POI's position is kept; the journal goes.
    if let Some(j) = journal {
        close_journal(j, &intake);
    }
    let delivery = match closed.delivery {
        Some(d) => Some(finish_delivery(d, wait).ok_or_else(|| anyhow!("the delivery thread panicked"))?),
        None => None,
    };
    let sig = signalled.load(Ordering::Relaxed);
    tracing::info!(case = %case_root.display(), files_signed = closed.signed, signer = %key.public_hex(), "tapir MDF stopped");
    Ok(RunReport {
        case: case_root,
        dropped: 0,
        reloads,
        files_signed: closed.signed,
        totals: Totals { summary: Default::default(), flows: Default::default(), objects: 0 },
        liids: warrants.iter().map(|w| w.liid.clone()).collect(),
        cases: closed.totals,
        inspected,
        delivery,
        incomplete: None,
        signal: (sig != 0).then_some(sig),
        signer: (key.public_hex(), key.ephemeral),
        forward: None,
    })
}
