//! Captures are read as streams: a file cut while it is being read is damage, not `SIGBUS`, and a
//! gzip'd capture is inflated as it is read, its magic checked first, with nothing written to
//! `$TMPDIR` and memory bounded whatever the decompressed size.
//!
//! The expected frame counts are arithmetic on what the test wrote, not tapir's output.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use tapir::capture::file::{CaptureError, CaptureFile, DamageKind};

use crate::common;

const PCAP_HEADER: usize = 24;
const RECORD_HEADER: usize = 16;

fn pcap_header() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&262_144u32.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
    v
}

/// One record of `len` bytes: an Ethernet header to nowhere, then a counter pattern.
fn record(i: u32, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(RECORD_HEADER + len);
    v.extend_from_slice(&(1_700_000_000 + i / 1000).to_le_bytes());
    v.extend_from_slice(&(i % 1000 * 1000).to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    // Byte k is (k ^ i) as u8: 256 bytes that repeat, copied whole (the test crate is built
    // unoptimised, and a loop per byte over 256 MiB was 40% of this file's CPU).
    let period: Vec<u8> = (0..=255u8).map(|k| k ^ i as u8).collect();
    while v.len() < RECORD_HEADER + len {
        let n = (RECORD_HEADER + len - v.len()).min(period.len());
        v.extend_from_slice(&period[..n]);
    }
    v
}

/// `tapir replay` with a warrant on an address none of these captures has.
fn replay(dir: &Path) -> Command {
    let warrants = dir.join("warrants.toml");
    std::fs::write(
        &warrants,
        "[[warrant]]\nliid = \"NOBODY\"\nstart = \"2000-01-01T00:00:00Z\"\nend = \"2100-01-01T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [\"ipv4:192.0.2.99\"]\n",
    )
    .unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_tapir"));
    c.env("TMPDIR", dir.join("no-such-dir")).args(["replay", "--quiet", "--warrants"]).arg(warrants).arg("--out");
    c
}

/// Writes `plain` (produced by `write`) through `gzip -1` into `out`.
fn gzip_into(out: &Path, write: impl FnOnce(&mut dyn Write)) {
    let file = std::fs::File::create(out).unwrap();
    let mut gz = Command::new("gzip").arg("-1c").stdin(Stdio::piped()).stdout(file).spawn().expect("gzip");
    {
        let mut stdin = std::io::BufWriter::new(gz.stdin.take().unwrap());
        write(&mut stdin);
        stdin.flush().unwrap();
    }
    assert!(gz.wait().unwrap().success());
}

#[test]
fn a_capture_cut_while_it_is_read_ends_in_damage_not_sigbus() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("growing.pcap");
    let len = 1000usize;
    let records = 8 * 1024; // ~8 MiB, several read chunks
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    f.write_all(&pcap_header()).unwrap();
    for i in 0..records {
        f.write_all(&record(i, len)).unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();

    let cap = CaptureFile::open(&path).unwrap();
    let mut frames = cap.frames();
    for i in 0..10u32 {
        let fr = frames.next_frame().unwrap().unwrap();
        assert_eq!(fr.data, &record(i, len)[RECORD_HEADER..]);
    }
    // The writer (or a rotation script) cuts the file while it is read: with a memory map, the
    // next page touched past the new end raised SIGBUS and killed the process.
    let cut = 3 << 20;
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(cut as u64).unwrap();
    let mut n = 10u32;
    let mut damage = Vec::new();
    while let Some(item) = frames.next_frame() {
        match item {
            Ok(fr) => {
                assert_eq!(fr.data, &record(n, len)[RECORD_HEADER..], "frame {n}");
                n += 1;
            }
            Err(d) => damage.push(d),
        }
    }
    let whole = (cut - PCAP_HEADER) / (RECORD_HEADER + len);
    assert_eq!(n as usize, whole, "every record complete before the cut, no more");
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].offset as usize, PCAP_HEADER + whole * (RECORD_HEADER + len));
    assert!(matches!(damage[0].kind, DamageKind::Truncated { .. }), "{damage:?}");
}

#[test]
fn gzip_captures_are_inflated_as_read_never_into_tmpdir() {
    let dir = tempfile::tempdir().unwrap();

    // Not a capture: 256 MiB of zeros. The magic is checked on the first bytes that come out,
    // before anything else is inflated (it used to inflate all of it into $TMPDIR first).
    let bomb = dir.path().join("zeros.pcap.gz");
    gzip_into(&bomb, |w| {
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            w.write_all(&zeros).unwrap();
        }
    });
    match CaptureFile::open(&bomb) {
        Err(CaptureError::NotACapture { magic, .. }) => assert_eq!(magic, "00000000"),
        other => panic!("{other:?}"),
    }
    let (out, bomb_rss_kib) =
        common::output_and_peak_rss_kib(replay(dir.path()).arg(dir.path().join("case0")).arg(&bomb));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a pcap or pcapng capture"), "{err}");

    // A real capture of 256 MiB decompressed (~3 MiB compressed): replayed with no $TMPDIR to
    // write to, and with a peak RSS far below the decompressed size.
    let frames = 4096u32;
    let len = 65_000usize;
    let gz = dir.path().join("big.pcap.gz");
    gzip_into(&gz, |w| {
        w.write_all(&pcap_header()).unwrap();
        for i in 0..frames {
            w.write_all(&record(i, len)).unwrap();
        }
    });
    let compressed = std::fs::metadata(&gz).unwrap().len();
    let decompressed = PCAP_HEADER + frames as usize * (RECORD_HEADER + len);
    assert!(decompressed as u64 > 50 * compressed, "{compressed} -> {decompressed}");
    let (out, rss_kib) = common::output_and_peak_rss_kib(replay(dir.path()).arg(dir.path().join("case1")).arg(&gz));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!(": {frames} packets,")), "{stdout}");
    // The larger of the two replays' peaks.
    let rss_mib = bomb_rss_kib.max(rss_kib) / 1024;
    assert!(rss_mib < 128, "peak RSS {rss_mib} MiB for a {} MiB capture", decompressed >> 20);
    assert!(!dir.path().join("no-such-dir").exists());

    // The same stream, damaged: cut in the middle of the compressed bytes. Everything inflated
    // before the cut is read, and the break is reported as damage (in the case too).
    let bytes = std::fs::read(&gz).unwrap();
    let cut = dir.path().join("cut.pcap.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let f = CaptureFile::open(&cut).unwrap();
    let mut frames_read = 0usize;
    let mut damage = Vec::new();
    let mut it = f.frames();
    while let Some(item) = it.next_frame() {
        match item {
            Ok(fr) => {
                assert_eq!(fr.data.len(), len);
                frames_read += 1;
            }
            Err(d) => damage.push(d.kind),
        }
    }
    assert!(frames_read > 0 && frames_read < frames as usize, "{frames_read}");
    assert!(damage.iter().any(|k| matches!(k, DamageKind::Gzip { .. })), "{damage:?}");
}
