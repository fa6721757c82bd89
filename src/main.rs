//! `tapir`: the command line. Parses arguments and calls into the library; nothing else.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use tapir::capture::file::{CaptureFile, Merge};
use tapir::decode::DecodeConfig;
use tapir::deliver::case::CaseWriter;
use tapir::deliver::manifest::{self, SigningKey};
use tapir::deliver::threaded::Threaded;
use tapir::flow::FlowConfig;
use tapir::pipeline::Pipeline;
use tapir::select::{load_events, load_warrants};
use tapir::timestamp::Timestamp;

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
    },
    /// Check a case's signed manifest: signature, every file's SHA-256, no unlisted file.
    Verify {
        case: PathBuf,
        /// The signer's public key (hex, or a file holding it). Without it only the case's
        /// self-consistency is checked.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// ETSI TS 102 232 PS-PDUs (a raw BER stream, as on an HI2/HI3 connection) to JSON lines.
    Decode {
        /// A file of PS-PDUs, or `-` for standard input.
        input: PathBuf,
    },
    /// Make an Ed25519 signing key (PKCS#8, mode 0600) and write its public key to OUT.pub.
    Keygen { out: PathBuf },
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Replay { captures, warrants, associations, out, signing_key, quiet } => {
            replay(&captures, &warrants, associations.as_deref(), &out, signing_key.as_deref(), quiet)
        }
        Cmd::Verify { case, public_key } => verify(&case, public_key.as_deref()),
        Cmd::Decode { input } => decode(&input),
        Cmd::Keygen { out } => SigningKey::generate_to(&out)
            .map(|public| {
                println!("wrote {} and {} (public key {public})", out.display(), out.with_extension("pub").display())
            })
            .map_err(Into::into),
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

fn replay(
    captures: &[PathBuf],
    warrants: &Path,
    associations: Option<&Path>,
    out: &Path,
    signing_key: Option<&Path>,
    quiet: bool,
) -> Result<()> {
    let started = Instant::now();
    let warrants = load_warrants(warrants)?.warrants;
    let events = match associations {
        Some(p) => load_events(p)?,
        None => Vec::new(),
    };
    let key = match signing_key {
        Some(p) => SigningKey::load(p)?,
        None => SigningKey::ephemeral(),
    };
    let files = captures.iter().map(|p| CaptureFile::open(p)).collect::<Result<Vec<_>, _>>()?;
    let total: u64 = files.iter().map(|f| f.size()).sum();
    let liids: Vec<_> = warrants.iter().map(|w| w.liid.clone()).collect();

    let case = CaseWriter::create(out).with_context(|| format!("creating case directory {}", out.display()))?;
    // The case is written on its own thread, overlapping I/O with the pipeline.
    let mut case = Threaded::spawn(case);
    let mut pipeline = Pipeline::new(warrants, events, DecodeConfig::default(), FlowConfig::default());

    let bar = if quiet || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}")
                .expect("static template"),
        );
        b
    };
    let mut merge = Merge::new(files.iter().map(|f| f.frames()).collect());
    let mut last_update = Instant::now();
    let mut frames_at_update = 0u64;
    while let Some((idx, item)) = merge.next() {
        match item {
            Ok(frame) => pipeline.frame(&frame, &mut case),
            Err(d) => pipeline.damage(format!("{}: {d}", captures[idx].display())),
        }
        if pipeline.summary.frames & 0xffff == 0 && !bar.is_hidden() {
            let el = last_update.elapsed().as_secs_f64();
            if el > 0.2 {
                let rate = (pipeline.summary.frames - frames_at_update) as f64 / el;
                bar.set_message(format!("{:.0} packets/s", rate));
                bar.set_position(merge.position());
                last_update = Instant::now();
                frames_at_update = pipeline.summary.frames;
            }
        }
    }
    pipeline.finish(&mut case);
    bar.finish_and_clear();
    let case = case.finish().map_err(|_| anyhow::anyhow!("the case writer thread panicked"))?;
    let (totals, written) = case.finish().with_context(|| format!("writing case {}", out.display()))?;
    let now = Timestamp::from_secs(chrono::Utc::now().timestamp()).to_rfc3339();
    let signed = manifest::write(out, &key, &now, &written)?;

    // The closing summary.
    let s = &pipeline.summary;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!("replayed {} capture file(s): {} packets, {} bytes", captures.len(), s.frames, s.bytes);
    println!("elapsed {:.3} s: {:.0} packets/s, {:.1} MB/s", secs, s.frames as f64 / secs, s.bytes as f64 / secs / 1e6);
    println!("matched {} packets", s.matched_frames);
    for liid in &liids {
        let t = totals.get(liid).cloned().unwrap_or_default();
        println!(
            "  {liid}: {} packets, {} IRI records, {} CC frames, {} objects",
            s.matched.get(liid).copied().unwrap_or(0),
            t.iri,
            t.cc,
            t.objects
        );
    }
    let fs = pipeline.flows().stats();
    let e = &fs.ended;
    println!(
        "flows: {} sessions (ended: {} fin, {} rst, {} idle, {} absolute, {} window end, {} evicted, {} at end of input)",
        fs.created, e.fin, e.rst, e.idle_timeout, e.absolute_timeout, e.window_end, e.evicted, e.shutdown
    );
    println!(
        "tcp reassembly: {} gaps ({} bytes), {} overlap conflicts, {} memory-bound flushes, peak buffered {} bytes",
        fs.tcp.gaps, fs.tcp.gap_bytes, fs.tcp.overlap_conflicts, fs.tcp.bound_flushes, fs.tcp.buffered_peak
    );
    if s.decode_errors.is_empty() {
        println!("decode errors: none");
    } else {
        let parts: Vec<String> = s.decode_errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("decode errors: {}", parts.join(", "));
    }
    println!("association events applied: {}", s.association_events);
    if s.capture_damage.is_empty() {
        println!("capture damage: none");
    } else {
        println!("capture damage: {} region(s)", s.capture_damage.len());
        for d in &s.capture_damage {
            println!("  {d}");
        }
    }
    println!(
        "case {}: {} files signed ({}key {})",
        out.display(),
        signed,
        if key.ephemeral { "ephemeral " } else { "" },
        key.public_hex()
    );
    Ok(())
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
    println!(
        "{}: OK, {} files, signed by {}{}",
        case.display(),
        v.files,
        v.signer,
        if v.signer_trusted { " (the key given)" } else { " (key not checked against a trusted one)" }
    );
    Ok(())
}
