//! `tapir`: the command line. Parses arguments and calls into the library; nothing else.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use tapir::daemon::config::{AssociationsConfig, CaptureConfig, Limits, Pace, PathsConfig, ReplayEnd};
use tapir::daemon::run::ReplayRun;
use tapir::daemon::{Config, RunReport};
use tapir::deliver::manifest::{self, SigningKey};
use tapir::flow::evidence::ChecksumValidation;
use tapir::flow::FlowConfig;

#[derive(Parser)]
#[command(name = "tapir", version, about = "Lawful interception: select a warrant's traffic, rebuild it, deliver it")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay captures (pcap/pcapng, optionally gzip'd) through the pipeline and write a signed case.
    Replay {
        /// Capture files; several are read together in timestamp order.
        #[arg(required = true)]
        captures: Vec<PathBuf>,
        /// Warrants (TOML).
        #[arg(long)]
        warrants: PathBuf,
        /// Identity-association events (JSON lines).
        #[arg(long)]
        associations: Option<PathBuf>,
        /// Case directory to create (must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Ed25519 key to sign the manifest with (from `tapir keygen`); default: an ephemeral key
        /// whose public half is written into the case.
        #[arg(long)]
        signing_key: Option<PathBuf>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        /// Also deliver to the warrants' LEAs (`[[lea]]` in the warrants file) over ETSI HI2/HI3,
        /// spooling every PDU durably in this directory first.
        #[arg(long, value_name = "SPOOL_DIR")]
        deliver: Option<PathBuf>,
        /// With --deliver: how long to wait for an unreachable LEA before leaving the rest in
        /// the spool (and exiting non-zero).
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        deliver_wait: u64,
        /// `auto`: a TCP segment whose checksum fails where its direction's checksums hold is
        /// refused, as the receiver refused it (checksum offload is told apart); `off`: every
        /// segment is taken, for captures edited without fixing their checksums (Suricata's
        /// `-k none`).
        #[arg(long, default_value = "auto", value_parser = ["auto", "off"])]
        checksums: String,
        /// Most bytes a content-coded body (HTTP gzip/deflate) is decoded to; past it the
        /// decoded object ends incomplete (`decoding-capped`), the bytes as sent stay whole.
        #[arg(long, default_value_t = tapir::content::ContentLimits::default().max_decoded_bytes, value_name = "BYTES")]
        max_decoded_bytes: u64,
        /// Most decoded bytes per byte as sent (past the first MiB).
        #[arg(long, default_value_t = tapir::content::ContentLimits::default().max_decode_ratio, value_name = "N")]
        max_decode_ratio: u64,
        /// MD5 and SHA-512 of every object; by default only disk images get them (and S3
        /// objects their MD5, their ETag), SHA-256 every object.
        #[arg(long)]
        every_digest: bool,
        /// Do not look inside the VM images and memory dumps targets upload (by default each is
        /// inspected on a thread of its own: findings, artifacts and a report join the case).
        #[arg(long)]
        no_inspect: bool,
        /// How long one image's inspection may walk its filesystems.
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        inspect_time_limit: u64,
        /// Images larger than this are reported, not inspected.
        #[arg(long, default_value_t = 64 << 30, value_name = "BYTES")]
        inspect_max_bytes: u64,
        /// Pipeline workers, each over a share of the flows (by inner address pair); the case
        /// is the same whatever the number, but its CINs and object ids are numbered per
        /// worker. 0: one per core.
        #[arg(long, default_value_t = 1, value_name = "N")]
        workers: usize,
        /// Most flows held at once (all workers together); the least recently used is ended
        /// (`evicted`, counted) past it.
        #[arg(long, default_value_t = FlowConfig::default().max_flows, value_name = "N")]
        max_flows: usize,
    },
    /// Reference LEMF: receive HI2/HI3, answer keep-alives, check sequences and integrity, and
    /// write what arrives as a case directory plus report.json. Stops on SIGINT/SIGTERM.
    Lemf {
        #[arg(long, required_unless_present = "listen", requires = "listen_hi3")]
        listen_hi2: Option<std::net::SocketAddr>,
        #[arg(long, required_unless_present = "listen", requires = "listen_hi2")]
        listen_hi3: Option<std::net::SocketAddr>,
        /// HI2 and HI3 on one port, as an X1 destination gives them: each connection is filed
        /// as HI2 or HI3 by what it carries.
        #[arg(long, conflicts_with_all = ["listen_hi2", "listen_hi3"])]
        listen: Option<std::net::SocketAddr>,
        #[arg(long)]
        out: PathBuf,
        /// Mutual TLS 1.3: the CA that signs clients' certificates, and ours.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// Public key (PEM) that signs the integrity checks.
        #[arg(long)]
        verify_key: Option<PathBuf>,
        #[arg(long)]
        max_pdu: Option<usize>,
    },
    /// Check a case's signed manifest: signature, every file's SHA-256, no unlisted file.
    Verify {
        case: PathBuf,
        /// The signer's public key (hex, or a file holding it). Without it only the case's
        /// self-consistency is checked.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// A case as one self-contained HTML page for an analyst: the verification verdict, and per
    /// LIID the warrant, identities and why, a timeline, sessions and objects.
    Report {
        case: PathBuf,
        /// Where to write it (default: CASE.html beside the case directory; not inside it,
        /// where it would be a file the manifest does not list).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// ETSI TS 102 232 PS-PDUs (a raw BER stream, as on an HI2/HI3 connection) to JSON lines.
    Decode {
        /// A file of PS-PDUs, or `-` for standard input.
        input: PathBuf,
    },
    /// Run the appliance: capture, select, deliver; reload warrants on SIGHUP, stop on SIGTERM.
    Run {
        #[arg(long, default_value = "/etc/tapir/tapir.toml")]
        config: PathBuf,
    },
    /// Check a daemon configuration and the warrants file it names; `file:line: error` if bad.
    CheckConfig {
        #[arg(long, default_value = "/etc/tapir/tapir.toml")]
        config: PathBuf,
    },
    /// Make an Ed25519 signing key (PKCS#8, mode 0600) and write its public key to OUT.pub.
    Keygen { out: PathBuf },
    /// The X1 audit log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Virtual machine images: what is inside one.
    Vmi {
        #[command(subcommand)]
        cmd: VmiCmd,
    },
}

#[derive(Subcommand)]
enum VmiCmd {
    /// Read an image (qcow2 or raw; MBR/GPT; ext2/3/4) without mounting it and report its OS,
    /// hostname, users, SSH keys, crontabs, enabled units, outgoing mail, shell histories, media
    /// files and the most recently changed files.
    Inspect {
        image: PathBuf,
        /// The whole report as JSON instead of a summary.
        #[arg(long)]
        json: bool,
        /// A VM started from this image at this time (RFC 3339): when its crontabs run.
        #[arg(long, value_name = "TIME")]
        started_at: Option<String>,
        /// Seconds the filesystem walk may take; past them it stops with a note.
        #[arg(long, default_value_t = tapir::vmi::DEFAULT_TIME_LIMIT.as_secs(), value_name = "SECS")]
        time_limit: u64,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain, sequence and signatures of an audit log. Exit 0: intact; 1: tampered
    /// (the first bad line is named); 2: usage or I/O error.
    Verify {
        file: PathBuf,
        /// The signer's public key (hex, or a file holding it, e.g. KEY.pub from `tapir keygen`).
        #[arg(long)]
        key: Option<String>,
    },
    /// Repair a log whose last line is torn (a crash in the middle of a write) or damaged: the
    /// bad bytes are moved into FILE.cut-<time> beside it, and an `audit-repair` entry in the
    /// log says what was cut. The rest of the log is not touched.
    Repair {
        file: PathBuf,
        /// The log's signing key (from `tapir keygen`), to sign the repair entry.
        #[arg(long)]
        signing_key: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Replay {
            captures,
            warrants,
            associations,
            out,
            signing_key,
            quiet,
            deliver,
            deliver_wait,
            checksums,
            max_decoded_bytes,
            max_decode_ratio,
            every_digest,
            no_inspect,
            inspect_time_limit,
            inspect_max_bytes,
            workers,
            max_flows,
        } => {
            let deliver = deliver.map(|d| (d, std::time::Duration::from_secs(deliver_wait)));
            let limits = Limits {
                max_flows,
                content: tapir::content::ContentLimits { max_decoded_bytes, max_decode_ratio, every_digest },
                // 0: no inspection.
                inspect_time_limit_secs: if no_inspect { 0 } else { inspect_time_limit.max(1) },
                inspect_max_image_bytes: inspect_max_bytes,
                ..Limits::default()
            };
            let checksums = if checksums == "off" { ChecksumValidation::Off } else { ChecksumValidation::Auto };
            replay(
                &captures,
                &warrants,
                associations.as_deref(),
                &out,
                signing_key.as_deref(),
                quiet,
                deliver,
                limits,
                checksums,
                workers,
            )
        }
        Cmd::Lemf { listen_hi2, listen_hi3, listen, out, tls_ca, tls_cert, tls_key, verify_key, max_pdu } => {
            let cfg = match (listen, listen_hi2, listen_hi3) {
                (Some(one), _, _) => Ok(tapir::lemf::LemfConfig::one_port(one, &out)),
                (None, Some(hi2), Some(hi3)) => Ok(tapir::lemf::LemfConfig::new(hi2, hi3, &out)),
                _ => Err(anyhow::anyhow!("--listen, or --listen-hi2 with --listen-hi3")),
            };
            cfg.and_then(|cfg| lemf(cfg, &out, (tls_ca, tls_cert, tls_key), verify_key, max_pdu))
        }
        Cmd::Verify { case, public_key } => verify(&case, public_key.as_deref()),
        Cmd::Report { case, out } => report(&case, out),
        Cmd::Decode { input } => decode(&input),
        Cmd::Run { config } => tapir::daemon::load_config(&config).map_err(Into::into).and_then(|c| {
            tapir::daemon::init_logging();
            tapir::daemon::run(&c, tapir::daemon::Hooks::default()).map(|_| ())
        }),
        Cmd::CheckConfig { config } => tapir::daemon::check(&config).map_err(Into::into).and_then(|c| {
            let x1 = tapir::daemon::x1::check(&c.config)?;
            println!("{}: OK ({} warrant(s), {} LEA(s))", config.display(), c.warrants.warrants.len(), c.leas);
            if let Some(x1) = x1 {
                println!("{x1}");
            }
            Ok(())
        }),
        Cmd::Keygen { out } => SigningKey::generate_to(&out)
            .map(|public| {
                println!(
                    "wrote {} and {} (public key {public})",
                    out.display(),
                    tapir::deliver::manifest::public_key_path(&out).display()
                )
            })
            .map_err(Into::into),
        Cmd::Audit { cmd: AuditCmd::Verify { file, key } } => std::process::exit(audit_verify(&file, key.as_deref())),
        Cmd::Audit { cmd: AuditCmd::Repair { file, signing_key } } => audit_repair(&file, signing_key.as_deref()),
        Cmd::Vmi { cmd: VmiCmd::Inspect { image, json, started_at, time_limit } } => {
            vmi_inspect(&image, json, started_at.as_deref(), std::time::Duration::from_secs(time_limit))
        }
    };
    if let Err(e) = r {
        eprintln!("tapir: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// The error and its causes on one line, skipping a cause whose text the message already holds
/// (library errors often quote their source).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

fn lemf(
    mut cfg: tapir::lemf::LemfConfig,
    out: &Path,
    tls: (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>),
    verify_key: Option<PathBuf>,
    max_pdu: Option<usize>,
) -> Result<()> {
    match tls {
        (Some(ca), Some(cert), Some(key)) => cfg.tls = Some(tapir::lemf::TlsFiles { ca, cert, key }),
        (None, None, None) => {}
        _ => bail!("--tls-ca, --tls-cert and --tls-key go together"),
    }
    if let Some(p) = verify_key {
        cfg.verify_key = Some(
            tapir::lemf::VerifyKey::from_file(&p).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: neither an Ed25519 or P-256 PUBLIC KEY PEM nor an Ed25519 public key in hex (KEY.pub of `tapir keygen KEY`)",
                    p.display()
                )
            })?,
        );
    }
    if let Some(m) = max_pdu {
        cfg.max_pdu = m;
    }
    let report = tapir::lemf::Lemf::run_until_signal(cfg)?;
    eprintln!(
        "lemf: {} integrity failures, {} undecodable, {} TLS refused; report in {}/report.json",
        report.integrity.hash_failed + report.integrity.signature_failed,
        report.undecodable,
        report.tls_refused,
        out.display()
    );
    Ok(())
}

/// `tapir replay`: the daemon's loop over capture files that end (`tapir run` with a replay
/// source), with the case where the operator asked and a summary on standard output.
#[allow(clippy::too_many_arguments)]
fn replay(
    captures: &[PathBuf],
    warrants: &Path,
    associations: Option<&Path>,
    out: &Path,
    signing_key: Option<&Path>,
    quiet: bool,
    deliver: Option<(PathBuf, std::time::Duration)>,
    limits: Limits,
    checksums: ChecksumValidation,
    workers: usize,
) -> Result<()> {
    let workers = match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let started = Instant::now();
    let config = Config {
        file: warrants.to_path_buf(),
        capture: CaptureConfig {
            pipelines: workers,
            replay: captures.to_vec(),
            pace: Pace::Fast,
            replay_end: ReplayEnd::Exit,
            checksum_validation: checksums,
            ..CaptureConfig::none()
        },
        paths: PathsConfig {
            warrants: warrants.to_path_buf(),
            case_dir: out.to_path_buf(),
            spool_dir: deliver.as_ref().map_or_else(|| out.to_path_buf(), |(spool, _)| spool.clone()),
            signing_key: signing_key.map(Path::to_path_buf),
        },
        associations: AssociationsConfig { events: associations.map(Path::to_path_buf), ..Default::default() },
        metrics: None,
        x1: None,
        limits: Limits { deliver_wait_secs: deliver.as_ref().map_or(0, |(_, w)| w.as_secs()), ..limits },
        role: Default::default(),
    };
    let bar = if quiet || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        // Its length comes with the first report: the loop opens the files.
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}")
                .expect("static template"),
        );
        b
    };
    let progress = (!bar.is_hidden()).then(|| {
        let bar = bar.clone();
        let mut last = (Instant::now(), 0u64);
        Box::new(move |frames: u64, position: u64, total: u64| {
            bar.set_length(total);
            let el = last.0.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{:.0} packets/s", (frames - last.1.min(frames)) as f64 / el));
            bar.set_position(position);
            last = (Instant::now(), frames);
        }) as tapir::daemon::run::Progress
    });
    let hooks = tapir::daemon::Hooks {
        replay: Some(ReplayRun { case: out.to_path_buf(), deliver: deliver.is_some(), progress }),
        ..Default::default()
    };
    let report = tapir::daemon::run(&config, hooks)?;
    bar.finish_and_clear();
    print_summary(captures.len(), &report, started.elapsed().as_secs_f64());

    if let (Some(rep), Some((spool, _))) = (&report.delivery, &deliver) {
        for l in &rep.leas {
            println!(
                "LEA {}: HI2 {} of {} PDUs sent, HI3 {} of {} sent{}",
                l.name,
                l.hi2.sent,
                l.hi2.spooled,
                l.hi3.sent,
                l.hi3.spooled,
                if l.complete { "" } else { " (the rest stays in the spool)" }
            );
            let waits = l.hi2.full_waits + l.hi3.full_waits;
            if waits > 0 {
                println!(
                    "  the spool was full {waits} time(s): the replay waited {:.1} s for the LEA to confirm",
                    l.hi2.full_wait_secs + l.hi3.full_wait_secs
                );
            }
        }
        for a in &rep.alarms {
            eprintln!("tapir: {}{a}", if a.starts_with("ALARM") { "" } else { "ALARM " });
        }
        let failed = if rep.alarm_count > 0 {
            Some(anyhow::anyhow!("{} PDUs refused by the spool (see the alarms above)", rep.alarm_count))
        } else if !rep.complete() {
            Some(anyhow::anyhow!(
                "an LEA stayed unreachable: the undelivered PDUs are safe in {}; the next run delivers them",
                spool.display()
            ))
        } else {
            None
        };
        match (failed, report.signal) {
            (Some(e), None) => return Err(e),
            (Some(e), Some(_)) => eprintln!("tapir: {e:#}"),
            (None, _) => {}
        }
    }
    if let Some(sig) = report.signal {
        match &report.incomplete {
            Some(why) => eprintln!("tapir: case {} is signed and marked incomplete: {why}", out.display()),
            // The signal came after the input was read, while delivering: the case is whole.
            None => eprintln!("tapir: case {} is signed and complete; delivery was interrupted", out.display()),
        }
        // As a shell reports a process the signal stopped.
        std::process::exit(128 + sig);
    }
    Ok(())
}

/// The closing summary of a replay: what was read, matched, rebuilt, signed.
fn print_summary(files: usize, report: &RunReport, secs: f64) {
    let s = &report.totals.summary;
    let secs = secs.max(1e-9);
    println!("replayed {files} capture file(s): {} packets, {} bytes", s.frames, s.bytes);
    println!("elapsed {:.3} s: {:.0} packets/s, {:.1} MB/s", secs, s.frames as f64 / secs, s.bytes as f64 / secs / 1e6);
    println!("matched {} packets", s.matched_frames);
    for liid in &report.liids {
        let t = report.cases.get(liid).cloned().unwrap_or_default();
        println!(
            "  {liid}: {} packets, {} IRI records, {} CC frames, {} objects",
            s.matched.get(liid).copied().unwrap_or(0),
            t.iri,
            t.cc,
            t.objects
        );
    }
    if let Some(st) = &report.inspected {
        println!(
            "images: {} inspected, {} refused (too large, unreadable or queue full); spool peak {} bytes; slowest {:.2} s from an image's end to its findings",
            st.inspected, st.refused, st.spool_peak, st.slowest_seconds
        );
    }
    let fs = &report.totals.flows;
    let e = &fs.ended;
    println!(
        "flows: {} sessions (ended: {} fin, {} rst, {} idle, {} absolute, {} window end, {} evicted, {} at end of input)",
        fs.created, e.fin, e.rst, e.idle_timeout, e.absolute_timeout, e.window_end, e.evicted, e.shutdown
    );
    println!(
        "tcp reassembly: {} gaps ({} bytes), {} overlap conflicts, {} memory-bound flushes, peak buffered {} bytes",
        fs.tcp.gaps, fs.tcp.gap_bytes, fs.tcp.overlap_conflicts, fs.tcp.bound_flushes, fs.tcp.buffered_peak
    );
    println!(
        "tcp evidence: {} segments refused (checksum failed), {} taken unverified (offload, coalesced, snapped), {} retransmitted bytes not compared",
        fs.checksum_refused, fs.unverified, fs.tcp.uncompared_bytes
    );
    if s.decode_errors.is_empty() {
        println!("decode errors: none");
    } else {
        let parts: Vec<String> = s.decode_errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("decode errors: {}", parts.join(", "));
    }
    println!(
        "association events applied: {} ({} from RADIUS; {} no longer needed and forgotten, {} dropped over the cap)",
        s.association_events, s.radius_events, s.association_events_forgotten, s.association_events_dropped
    );
    let r = &s.announced_routes;
    if r.announced > 0 || r.refused > 0 {
        println!(
            "workers: {} connection(s) to {} endpoint(s) announced on another address pair kept with their announcer; {} refused over the caps",
            r.pinned, r.announced, r.refused
        );
    }
    let f = &s.fragment_routes;
    if f.datagrams > 0 || f.refused > 0 {
        println!(
            "workers: {} fragmented datagram(s) sent whole to the worker of the packet inside, {} fragment(s) held until their first came; {} refused over the cap, {} datagram(s) forgotten early to make room",
            f.datagrams, f.early, f.refused, f.evicted
        );
    }
    if s.capture_damage.is_empty() {
        println!("capture damage: none");
    } else {
        println!("capture damage: {} region(s)", s.capture_damage.len());
        for d in &s.capture_damage {
            println!("  {}", d.what);
        }
    }
    let (public, ephemeral) = &report.signer;
    println!(
        "case {}: {} files signed ({}key {public})",
        report.case.display(),
        report.files_signed,
        if *ephemeral { "ephemeral " } else { "" },
    );
}

fn decode(input: &Path) -> Result<()> {
    use std::io::{Read, Write};
    let mut bytes = Vec::new();
    if input.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).context("reading standard input")?;
    } else {
        bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (mut good, mut bad) = (0u64, 0u64);
    for pdu in tapir::deliver::etsi::decode_stream(&bytes) {
        match pdu {
            Ok(v) => {
                good += 1;
                writeln!(out, "{v}")?;
            }
            Err(e) => {
                // The stream cannot be trusted past a framing error: say where and stop.
                bad += 1;
                out.flush()?;
                eprintln!("tapir: {}: {e}", input.display());
                break;
            }
        }
    }
    out.flush()?;
    if bad > 0 {
        bail!("{good} PDUs decoded before the error");
    }
    Ok(())
}

fn verify(case: &Path, public_key: Option<&str>) -> Result<()> {
    let trusted = match public_key {
        None => None,
        Some(k) if Path::new(k).is_file() => {
            Some(std::fs::read_to_string(k).with_context(|| format!("reading {k}"))?.trim().to_string())
        }
        Some(k) => Some(k.trim().to_string()),
    };
    if let Some(k) = &trusted {
        if k.len() != 64 || hex::decode(k).is_err() {
            bail!("--public-key: expected 64 hex digits (or a file holding them), got {k:?}");
        }
    }
    let v = manifest::verify(case, trusted.as_deref())?;
    if !v.signer_trusted {
        // The manifest carries its signer's key: without a trust anchor, a case re-signed after
        // a change by anyone with a key of their own verifies too.
        eprintln!(
            "tapir: WARNING: signer {} NOT CHECKED: anyone who can write the case can re-sign it; \
             give --public-key with the operator's key to know who signed it",
            v.signer
        );
    }
    let mut line = format!(
        "{}: OK, {} files, signed by {}{}\n",
        case.display(),
        v.files,
        v.signer,
        if v.signer_trusted { " (the key given)" } else { " (key not checked against a trusted one)" }
    );
    if let Some(why) = &v.incomplete {
        eprintln!("tapir: WARNING: the case is INCOMPLETE: {why}");
        line.push_str(&format!("INCOMPLETE: {why}\n"));
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), line.as_bytes());
    Ok(())
}

/// `tapir report`.
fn report(case: &Path, out: Option<PathBuf>) -> Result<()> {
    let case = case.components().as_path().to_path_buf();
    let out = match out {
        Some(o) => o,
        None => {
            let name = case.file_name().ok_or_else(|| anyhow::anyhow!("{}: not a directory name", case.display()))?;
            case.with_file_name(format!("{}.html", name.to_string_lossy()))
        }
    };
    let verdict = tapir::report::verdict_of(&case);
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let page = tapir::report::render(&case, &verdict, dir)?;
    std::fs::write(&out, page).with_context(|| format!("writing {}", out.display()))?;
    println!("{}", out.display());
    Ok(())
}

/// `tapir audit repair`.
fn audit_repair(file: &Path, signing_key: Option<&Path>) -> Result<()> {
    let key = signing_key.map(SigningKey::load).transpose()?;
    let r = tapir::audit::repair(file, key).with_context(|| format!("repairing {}", file.display()))?;
    println!(
        "{}: cut {} bytes at byte {}, kept in {}; recorded as entry seq {}",
        file.display(),
        r.cut,
        r.offset,
        r.kept_in.display(),
        r.entry_seq
    );
    Ok(())
}

/// `tapir audit verify`: the exit code.
fn audit_verify(file: &Path, key: Option<&str>) -> i32 {
    let key = match key {
        None => None,
        Some(k) if Path::new(k).is_file() => match std::fs::read_to_string(k) {
            Ok(t) => Some(t.trim().to_string()),
            Err(e) => {
                eprintln!("tapir: {k}: {e}");
                return 2;
            }
        },
        Some(k) => Some(k.trim().to_string()),
    };
    if let Some(k) = &key {
        if k.len() != 64 || hex::decode(k).is_err() {
            eprintln!("tapir: --key: expected 64 hex digits (or a file holding them), got {k:?}");
            return 2;
        }
    }
    let rep = match tapir::audit::verify(file, key.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tapir: {e}");
            return 2;
        }
    };
    // One write of the whole report: a reader that stops early (`| head`) closes the pipe, and
    // that must neither panic nor change the verdict (the exit code).
    use std::fmt::Write as _;
    let mut out = String::new();
    let name = file.display();
    let _ = match rep.last_signed {
        Some(s) if s == rep.lines => {
            writeln!(out, "{name}: {} lines, all signed (last signature: line {s})", rep.lines)
        }
        Some(s) => writeln!(
            out,
            "{name}: {} lines, last signed line {s}; lines {}-{} are only hash-chained",
            rep.lines,
            s + 1,
            rep.lines
        ),
        None => writeln!(out, "{name}: {} lines, no signature line: the lines are only hash-chained", rep.lines),
    };
    if !rep.keys.is_empty() {
        let trust = if key.is_some() { "the key given" } else { "not checked against a trusted key" };
        let _ = writeln!(out, "signed by {} ({trust})", rep.keys.join(", "));
    }
    if let Some((seq, when)) = &rep.head {
        let _ = writeln!(out, "sealed head: line seq {seq}, sealed {when}");
    }
    let code = if rep.ok() {
        let _ = writeln!(out, "OK");
        0
    } else {
        let _ = writeln!(
            out,
            "TAMPERED: {} problem(s); the first bad line is line {}",
            rep.problems.len(),
            rep.problems[0].line
        );
        for p in rep.problems.iter().take(50) {
            let _ = writeln!(out, "  {p}");
        }
        if rep.problems.len() > 50 {
            let _ = writeln!(out, "  ... and {} more", rep.problems.len() - 50);
        }
        1
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    code
}

fn vmi_inspect(
    image: &Path,
    json: bool,
    started_at: Option<&str>,
    time_limit: std::time::Duration,
) -> anyhow::Result<()> {
    let started = started_at
        .map(|s| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&chrono::Utc)))
        .transpose()
        .with_context(|| format!("--started-at {}: not an RFC 3339 time", started_at.unwrap_or_default()))?;
    let file = tapir::vmi::disk::FileDisk::open(image).with_context(|| format!("opening {}", image.display()))?;
    // A backing image is looked for by its file name in the image's own directory, never
    // anywhere else the image's header might point (a path it names is not followed).
    let dir = image.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |name: &str| -> Option<(String, Box<dyn tapir::vmi::disk::Disk>)> {
        let file_name = Path::new(name).file_name()?;
        let path = dir.join(file_name).canonicalize().ok()?;
        let disk = tapir::vmi::disk::FileDisk::open(&path).ok()?;
        Some((path.display().to_string(), Box::new(disk)))
    };
    let identity = image.canonicalize().map(|p| p.display().to_string()).unwrap_or_default();
    let mut report = tapir::vmi::inspect_with(Box::new(file), &identity, &resolve, time_limit);
    if let Some(t) = started {
        for fs in &mut report.filesystems {
            if let Some(l) = fs.linux.as_mut() {
                tapir::vmi::linux::plan(l, t);
            }
        }
    }
    // One write of the whole report, so that a reader stopping early (`| head`) is no panic.
    let mut out = String::new();
    if json {
        out = serde_json::to_string_pretty(&report)? + "\n";
    } else {
        vmi_summary(&mut out, image, &report);
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    Ok(())
}

fn vmi_summary(out: &mut String, image: &Path, report: &tapir::vmi::Report) {
    use std::fmt::Write as _;
    let c = &report.container;
    let _ = writeln!(out, "{}: {} image, {} bytes virtual", image.display(), c.format, c.virtual_size);
    for b in &c.backing_chain {
        let _ = writeln!(out, "  backing image: {b}");
    }
    for s in &c.snapshots {
        let _ = writeln!(out, "  snapshot {} {:?}: {} bytes of VM state", s.id, s.name, s.vm_state_size);
    }
    for p in &report.partitions {
        let _ = writeln!(
            out,
            "  partition {} ({}): {} bytes at {}, type {} {}",
            p.number, p.scheme, p.size, p.start, p.kind, p.name
        );
    }
    for fs in &report.filesystems {
        let _ = writeln!(
            out,
            "filesystem on partition {}{} ({}, label {:?}, uuid {})",
            fs.partition,
            fs.volume.as_deref().map(|v| format!(", LVM volume {v}")).unwrap_or_default(),
            fs.kind,
            fs.label,
            fs.uuid
        );
        if let Some(e) = &fs.error {
            let _ = writeln!(out, "  unreadable: {e}");
        }
        let Some(l) = fs.linux.as_ref().or(fs.data.as_ref()) else { continue };
        if fs.linux.is_some() {
            let _ = writeln!(out, "  os: {}", l.os.pretty_name.as_deref().unwrap_or("?"));
            let _ = writeln!(out, "  hostname: {}", l.hostname.as_deref().unwrap_or("?"));
        } else if let Some(os) = &l.os.pretty_name {
            let _ = writeln!(out, "  os: {os}");
        }
        for u in l.users.iter().filter(|u| u.uid == 0 || u.uid >= 1000 || u.password == "set" || u.password == "empty")
        {
            let _ = writeln!(
                out,
                "  user {} (uid {}, {}, password {}, groups {})",
                u.name,
                u.uid,
                u.home,
                u.password,
                u.groups.join(",")
            );
        }
        for k in &l.ssh_keys {
            let _ = writeln!(out, "  ssh key for {}: {} {} {}", k.user, k.key_type, k.fingerprint, k.comment);
        }
        if let Some(z) = &l.timezone {
            let _ = writeln!(out, "  time zone: {z}");
        }
        for c in &l.crontabs {
            let _ = writeln!(out, "  cron ({}, {}): {}", c.path, c.user, c.line);
            if !c.next_runs.is_empty() {
                let _ = writeln!(out, "    runs (UTC): {}", c.next_runs.join(", "));
            }
        }
        for u in &l.enabled_units {
            let _ = writeln!(out, "  enabled unit: {u}");
        }
        for tm in &l.timers {
            let _ = writeln!(
                out,
                "  timer {} ({}): {} -> {}",
                tm.name,
                tm.schedule.join(", "),
                tm.unit,
                tm.exec_start.join("; ")
            );
        }
        for m in &l.mail {
            let _ = writeln!(
                out,
                "  mail {}: from {} to {} subject {:?} sha256 {}",
                m.path,
                m.headers.from.as_deref().unwrap_or("?"),
                m.headers.to.as_deref().unwrap_or("?"),
                m.headers.subject.as_deref().unwrap_or(""),
                m.sha256
            );
        }
        for h in &l.histories {
            let _ = writeln!(out, "  history {} ({} lines)", h.path, h.lines);
        }
        for m in &l.media {
            let _ = writeln!(out, "  media {} ({}, {} bytes) sha256 {}", m.path, m.format, m.size, m.sha256);
        }
        for n in &l.notes {
            let _ = writeln!(out, "  note: {n}");
        }
    }
    for r in &report.ram {
        let blocks: Vec<String> = r
            .blocks
            .iter()
            .map(|b| format!("{} ({} of {} pages saved)", b.name, b.pages_saved, b.size / 4096))
            .collect();
        let _ = writeln!(out, "saved RAM in {}: {}", r.snapshot, blocks.join(", "));
    }
    for a in &report.memory {
        let what = match a.kind {
            "media" => a.format.unwrap_or("media").to_string(),
            _ => a.detail.to_string(),
        };
        let _ = writeln!(
            out,
            "  carved {} at {:#x} in {} ({} bytes, sha256 {}): {what}",
            a.kind, a.offset, a.source, a.size, a.sha256
        );
    }
    for n in &report.notes {
        let _ = writeln!(out, "note: {n}");
    }
}
