//! `tapir run` as an MDF (`[node] role = "mdf"`): no capture; POIs send X2/X3, the MDF numbers
//! their sessions, runs the record stage over all of them (cross-links and image inspection
//! need every POI's records), writes the case and delivers HI2/HI3.
//!
//! One thread takes every POI's PDUs ([`MdfIntake`]), in the order each POI sent them; the
//! listener acknowledges a POI's keepalive once this thread has taken what came before it and
//! handed it to the case writer and the delivery (see `deliver::x2x3::listen`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::{channel, sync_channel, RecvTimeoutError, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::config::{Config, MdfConfig};
use super::feeds::DeliveryStatus;
use super::run::{
    finish_delivery, inspection, liids, new_case_dir, redacted, redeliver, signing_key, start_delivery, stop_signals,
    warrants_provider, Control, Hooks, Outputs, RunReport, Say,
};
use crate::deliver::handover::parse_leas;
use crate::deliver::x2x3::listen::{Batch, Handoff, ListenConfig, Listening};
use crate::deliver::x2x3::records::{MdfIntake, Task};
use crate::pipeline::{Recorder, Totals};
use crate::record::{Numbers, Xid};
use crate::select::Warrant;
use crate::timestamp::Timestamp;

/// Refusals logged one by one before only their count goes on (a POI gone wrong could
/// otherwise fill the log).
const LOGGED_REFUSALS: u64 = 20;

fn tasks_of(w: &[Warrant]) -> HashMap<Xid, Task> {
    w.iter().map(|w| (w.xid, Task { liid: w.liid.clone(), scope: w.scope })).collect()
}

pub fn run(config: &Config, m: &MdfConfig, mut hooks: Hooks) -> Result<RunReport> {
    if hooks.replay.is_some() {
        bail!("an MDF replays nothing: its POIs capture");
    }
    let notifier = Say::new(false);
    let say = |s: &str| notifier.say(s);
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

    let case_root = new_case_dir(&config.paths.case_dir)?;
    let wfile = provider.describe();
    let status = DeliveryStatus::default();
    let delivery = start_delivery(&all, &wfile, &config.paths.spool_dir, &status, &give_up)?;
    let mut out = Outputs {
        out: crate::deliver::outputs::Outputs::create(&case_root)?,
        xids: None,
        delivery: None,
        status,
        give_up,
        intercepts: HashMap::new(),
        count_intercepts: x1.is_some(),
    };
    out.deliver_to(delivery, Duration::ZERO);
    let intake_cfg = inspection(config, &case_root, false)?;
    let content_limits = config.limits.flow_config().content;
    let mut recorder = Recorder::new(&all.warrants, Numbers::default(), content_limits, intake_cfg);
    let mut intake = MdfIntake::new(tasks_of(&all.warrants), m.max_sessions, recorder.numbers());
    let mut warrants = all.warrants.clone();

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
        warrants = %liids(&warrants), case = %case_root.display(), delivery = out.delivery.is_some(), "tapir MDF running"
    );
    say(&format!("READY=1\nSTATUS=MDF, {} warrant(s)", warrants.len()));

    let mut reloads = 0u64;
    let mut last_flush = Instant::now();
    let mut logged = 0u64;
    let wait = Duration::from_secs(config.limits.deliver_wait_secs);
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(batch) => {
                let mut sink = recorder.sink(&mut out);
                for pdu in &batch.pdus {
                    if let Err(e) = intake.pdu(&batch.poi, pdu, &mut sink) {
                        logged += 1;
                        if logged <= LOGGED_REFUSALS {
                            tracing::warn!(poi = %batch.poi, error = %e, "X2/X3 PDU refused");
                        }
                    }
                }
                if let Some(ack) = batch.ack {
                    // Taken: in the case writer's and the delivery's hands.
                    out.out.flush();
                    let _ = ack.send(());
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        recorder.poll(&mut out);
        if last_flush.elapsed() >= Duration::from_millis(100) {
            last_flush = Instant::now();
            out.out.flush();
        }
        if let Some(x) = &x1_running {
            x.note_intercepts(out.intercepts.drain());
        }
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
                            redeliver(&mut out, &warrants, &new, &leas, &wfile, &config.paths.spool_dir, wait);
                            intake.set_tasks(tasks_of(&new.warrants));
                            recorder.set_warrants(&new.warrants);
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
            break;
        }
    }
    // No more POI input; what was handed over is taken.
    listener.stop();
    while let Ok(batch) = rx.try_recv() {
        let mut sink = recorder.sink(&mut out);
        for pdu in &batch.pdus {
            let _ = intake.pdu(&batch.poi, pdu, &mut sink);
        }
    }
    let inspected = recorder.finish(&mut out);
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
