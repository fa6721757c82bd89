//! The long-running appliance: `tapir run --config FILE` and `tapir check-config --config FILE`.
//!
//! # Threads
//! ```text
//!  capture thread 1 (Source) ─┐  bounded queue of            ┌─> case writer thread ─> disk thread
//!  capture thread 2 (Source) ─┼─ frame batches ─> pipeline ──┤
//!  ...                        ┘  (+ source clocks)  thread   └─> delivery (spool, senders)
//!  signal thread (SIGHUP/TERM/INT) ─> control channel ─────────^   assoc_rx (feed) ─^
//! ```
//! **Capture and pipeline threads.** `[capture] workers = N` runs N capture threads (live: one
//! AF_PACKET ring each, in one fanout group per interface), which copy frames out of the ring
//! into reused batches (no allocation per packet in the steady state) and feed the pipeline
//! thread through a bounded queue. When the queue is full a capture thread waits, so a live
//! burst waits in the kernel's ring (far larger than the queue), and what the ring cannot hold
//! the kernel counts as drops. The pipeline thread runs an `Engine`: one pipeline, or
//! `[capture] pipelines = M` workers over a share of the flows each (by inner address pair, so
//! an FTP session's control and data connections meet; see `pipeline::shard`).
//!
//! **Time.** The pipeline's clock is packet time. A source also reports its own present time
//! when quiet (`Source::clock`: the wall clock live, the paced position for a real-time replay),
//! sent every ~200 ms, so a warrant ends at its end time and idle flows expire on a quiet link.
//! What reads a clock around the pipeline (a real-time replay's pacing, that source clock, the
//! 100 ms flush and the other periodic duties) reads [`run::Hooks::clock`]: the system's, or a
//! test's virtual [`clock::ManualClock`], on which seconds of a paced replay take milliseconds
//! and nothing depends on how busy the machine is.
//!
//! **Reload.** SIGHUP (or [`run::Control::Reload`] from X1) re-reads the warrants through the
//! [`run::WarrantsProvider`]; `Pipeline::set_warrants` installs them without losing flows
//! (unchanged warrants keep theirs; removed or changed ones end theirs now). Delivery restarts
//! only if the `[[lea]]` tables or the LIID -> LEA routes changed; the spool carries over. A
//! file that does not parse is logged and the warrants in force stay.
//!
//! **Stop.** SIGTERM/SIGINT: capture stops, queued frames are processed, every flow is ended,
//! objects finished, the spool synced, the manifest signed; exit 0.
//!
//! **Case.** Each run writes `case_dir/<UTC start, YYYYMMDDTHHMMSSZ>/`, laid out as replay's
//! `--out`, so a restart never writes into a signed case.
//!
//! **Replay source** (tests, demonstrations): `[capture] replay = ["a.pcap", ...]` reads capture
//! files instead of interfaces; `pace = "fast"` (default: as fast as the pipeline goes, read on
//! the pipeline thread without a copy, and the case taken in packet time alone, so the same
//! files make the same case) or `"realtime"` (frames released at their capture-time offsets
//! from the start, from a capture thread); `replay_end = "exit"` (default: stop as on SIGTERM
//! after the last frame) or `"wait"` (keep running, reloads included, until SIGTERM). A stop
//! before the files' end marks the case incomplete.
//!
//! **`tapir replay`** is this loop with [`run::Hooks::replay`]: a fast replay source that exits
//! at its end, the case in `--out` itself, delivery only with `--deliver`, no association
//! journal, no listener, no reload; its summary is printed from the [`RunReport`]. A second
//! stop signal exits at once (the case left unsigned), here as in the daemon.
//!
//! **systemd.** `Type=notify`: `READY=1` once warrants are loaded, the case is open and capture
//! has started (`RELOADING=1`/`READY=1` around a reload, `STOPPING=1`), `WATCHDOG=1` at half of
//! `WATCHDOG_USEC` from the pipeline thread, so a stuck pipeline is restarted.
//!
//! **Side channels** ([`feeds`]): `[metrics] listen` serves Prometheus `/metrics` and `/healthz`
//! (200 from READY=1 until stopping); `[associations] listen` takes association events live
//! (Unix socket 0600, or loopback TCP with `token_file`). Events from the feed and from RADIUS
//! accounting seen on the tap (UDP 1813/1646) are journalled (`[associations] journal`, default
//! `<spool_dir>/associations.journal`) and replayed at the next start.
//!
//! **Logs** go to stderr through `tracing` (journald captures them under systemd). They carry
//! LIIDs, counts and paths only: never payload, target identities, tokens or keys.
//!
//! Hooks for what merges later are marked `HOOK` ([`run::live_sources`], [`run::Hooks`]).

pub mod clock;
pub mod config;
pub mod feeds;
pub mod mdf;
pub mod notify;
pub mod run;
pub mod source;
pub mod x1;

pub use config::{check, load_config, parse_config, Config, ConfigError, Role};
pub use run::{run, spawn_signals, Control, FileWarrants, Hooks, RunReport, Signal, WarrantsProvider};
pub use source::{ReplaySource, Source};

/// Logs to stderr; the levels from `TAPIR_LOG` (default `info`): a default level and/or
/// `target=level` pairs, comma-separated, as in `debug` or `tapir::deliver=debug,info`
/// (tracing-subscriber's `Targets`; its regex-based env-filter cost the build a regex engine
/// for no directive tapir's operators use). An unreadable value logs at `info` and says so.
/// Under systemd (`JOURNAL_STREAM` set) without timestamps: journald adds its own.
pub fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let given = std::env::var("TAPIR_LOG").ok().filter(|v| !v.trim().is_empty());
    let (filter, unreadable) = match given.as_deref().map(str::parse::<Targets>) {
        Some(Ok(t)) => (t, None),
        Some(Err(e)) => (Targets::new().with_default(LevelFilter::INFO), Some(e)),
        None => (Targets::new().with_default(LevelFilter::INFO), None),
    };
    let b = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false);
    let r = if std::env::var_os("JOURNAL_STREAM").is_some() {
        b.without_time().with_ansi(false).finish().with(filter).try_init()
    } else {
        b.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).finish().with(filter).try_init()
    };
    // Already initialised (tests): keep the first.
    if let (Ok(()), Some(e)) = (r, unreadable) {
        tracing::warn!("TAPIR_LOG not understood ({e}): logging at info");
    }
}
