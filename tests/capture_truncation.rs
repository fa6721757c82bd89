//! Real captures cut at every byte offset: opening and reading never panic, the cut is reported as
//! damage, and every frame complete before the cut is yielded with its bytes. Record offsets and
//! frame bytes come from Wireshark (sharkd: `frame.file_off` and the frame's bytes), not from
//! tapir.

use std::path::{Path, PathBuf};

use tapir::capture::file::{CaptureFile, DamageKind};

use crate::common::Sharkd;

fn shared(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/pcaps")).join(rel)
}

/// Per frame: offset of its record/block in the file (`frame.file_off`), and its captured
/// bytes, as Wireshark reads them. One sharkd serves this file's tests (a tshark run each cost
/// 0.3 s of CPU before its first frame); it gave what `tshark -o frame.show_file_off:TRUE -T
/// json -x` gives for all 2419 frames of these captures when the change was made.
fn wireshark_records(path: &Path) -> Vec<(usize, Vec<u8>)> {
    static SHARKD: std::sync::Mutex<Option<Sharkd>> = std::sync::Mutex::new(None);
    let mut guard = SHARKD.lock().unwrap_or_else(|p| p.into_inner());
    let sharkd = guard.get_or_insert_with(|| {
        let mut s = Sharkd::spawn();
        s.set_pref("frame.show_file_off", "TRUE");
        s
    });
    sharkd.load(path);
    let rows = sharkd.frames(None, &["frame.file_off"]).expect("a short column");
    rows.into_iter().map(|(num, c)| (c[0].parse().unwrap(), sharkd.frame_bytes(num))).collect()
}

struct Read {
    frames: Vec<Vec<u8>>,
    damage: Vec<(u64, DamageKind)>,
}

/// Reads a cut capture; every 61st cut goes through a file and the memory map, the rest through
/// memory (same parser, and many times faster).
fn read_cut(dir: &Path, bytes: &[u8]) -> Option<Read> {
    let f = if bytes.len() % 61 == 0 {
        let p = dir.join("cut");
        std::fs::write(&p, bytes).unwrap();
        CaptureFile::open(&p).ok()?
    } else {
        CaptureFile::from_bytes("cut", bytes.to_vec()).ok()?
    };
    let mut r = Read { frames: Vec::new(), damage: Vec::new() };
    for item in f.frames() {
        match item {
            Ok(fr) => r.frames.push(fr.data.to_vec()),
            Err(d) => r.damage.push((d.offset, d.kind)),
        }
    }
    Some(r)
}

#[test]
fn pcap_cut_everywhere() {
    let path = shared("suricata-verify/tests/http-ipv6/input.pcap");
    let full = std::fs::read(&path).unwrap();
    let recs = wireshark_records(&path);
    assert_eq!(recs.len(), 14);
    // A legacy pcap record is a 16-byte header and the captured bytes.
    let ends: Vec<usize> = recs.iter().map(|(off, b)| off + 16 + b.len()).collect();
    assert_eq!(*ends.last().unwrap(), full.len());
    let dir = tempfile::tempdir().unwrap();
    for cut in 0..full.len() {
        let Some(r) = read_cut(dir.path(), &full[..cut]) else {
            assert!(cut < 24, "cut at {cut}: open failed");
            continue;
        };
        assert!(cut >= 24, "cut at {cut}: a cut file header must not open");
        let complete = ends.iter().filter(|e| **e <= cut).count();
        assert_eq!(r.frames.len(), complete, "cut at {cut}");
        for (k, fr) in r.frames.iter().enumerate() {
            assert_eq!(fr, &recs[k].1, "cut at {cut}, frame {k}");
        }
        if cut == 24 || ends.contains(&cut) {
            assert!(r.damage.is_empty(), "cut at {cut} is a record boundary: {:?}", r.damage);
        } else {
            assert_eq!(r.damage.len(), 1, "cut at {cut}");
            let (off, kind) = &r.damage[0];
            assert_eq!(*off as usize, recs[complete].0, "cut at {cut}");
            assert!(matches!(kind, DamageKind::Truncated { .. }), "cut at {cut}: {kind:?}");
        }
    }
}

#[test]
fn pcapng_cut_everywhere() {
    for rel in [
        "zeek/testing/btest/Traces/smtp/smtp-bdat-cmd-invalid.pcapng",
        "fq/format/pcap/testdata/many_interfaces.pcapng",
    ] {
        let path = shared(rel);
        let full = std::fs::read(&path).unwrap();
        let recs = wireshark_records(&path);
        assert!(recs.len() > 10);
        let dir = tempfile::tempdir().unwrap();
        for cut in 0..full.len() {
            let Some(r) = read_cut(dir.path(), &full[..cut]) else {
                // Only a cut inside the first 12 bytes (type, length, byte-order magic) hides what
                // the file is.
                assert!(cut < 12, "{rel}: cut at {cut}: open failed");
                continue;
            };
            // An enhanced packet block is at least 32 bytes plus its data; a frame is surely
            // complete once the next frame's block starts, surely cut inside that minimum.
            let surely: usize = recs.windows(2).filter(|w| w[1].0 <= cut).count();
            let at_most = recs.iter().filter(|(off, b)| off + 32 + b.len() <= cut).count();
            let n = r.frames.len();
            assert!(surely <= n && n <= at_most, "{rel}: cut at {cut}: {n} frames, {surely}..={at_most}");
            for (k, fr) in r.frames.iter().enumerate() {
                assert_eq!(fr, &recs[k].1, "{rel}: cut at {cut}, frame {k}");
            }
            let inside_packet = recs.iter().any(|(off, b)| *off < cut && cut < off + 32 + b.len());
            if inside_packet || cut < 28 {
                assert!(!r.damage.is_empty(), "{rel}: cut at {cut}: no damage reported");
            }
            for (off, kind) in &r.damage {
                assert!(*off as usize <= cut, "{rel}: cut at {cut}: damage at {off}");
                assert!(
                    matches!(kind, DamageKind::Truncated { .. }),
                    "{rel}: cut at {cut}: the only damage is the cut, got {kind:?}"
                );
            }
        }
    }
}

/// A gzip capture cut at every byte (1984 bytes that inflate to 403 kB), and one of 1811 frames
/// (23 kB, 230 kB inflated) cut at every byte of its first and last KiB, where the gzip header,
/// the first deflate block and the trailer lie, and at every 7th byte between (a stride that
/// lines up with no power-of-two structure). Each cut inflates from the start again: every byte
/// of the larger one was 15 s of the suite's CPU.
#[test]
fn gzip_cut_everywhere() {
    gzip_cuts("zeek/testing/btest/Traces/smtp/mime-header-size-limit.pcap.gz", |_, _| true);
    gzip_cuts("zeek/testing/btest/Traces/trunc/mpls-6in6-broken.pcap.gz", |cut, len| {
        cut < 1024 || cut + 1024 >= len || cut % 7 == 0
    });
}

fn gzip_cuts(rel: &str, cut_at: impl Fn(usize, usize) -> bool) {
    let path = shared(rel);
    let full = std::fs::read(&path).unwrap();
    let recs = wireshark_records(&path);
    assert!(!recs.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let mut opened = 0;
    for cut in (0..full.len()).filter(|&c| cut_at(c, full.len())) {
        let Some(r) = read_cut(dir.path(), &full[..cut]) else { continue };
        opened += 1;
        assert!(r.frames.len() <= recs.len());
        for (k, fr) in r.frames.iter().enumerate() {
            assert_eq!(fr, &recs[k].1, "cut at {cut}, frame {k}");
        }
        // Every cut loses at least the gzip trailer (CRC-32 and size), so the stream is damaged.
        assert!(r.damage.iter().any(|(_, k)| matches!(k, DamageKind::Gzip { .. })), "cut at {cut}: {:?}", r.damage);
    }
    assert!(opened > 0, "some cut still holds a capture header");
}

/// One damaged record header in the middle of a pcap (the captured length 0xFFFFFFFF, as a
/// corrupted disk block gives) loses that record only: reading resumes at the next record, and
/// every frame after it is yielded with Wireshark's bytes. Before, the rest of the file was dropped.
#[test]
fn a_bad_pcap_record_header_loses_that_record_only() {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/http-put.pcap"));
    let mut bytes = std::fs::read(&path).unwrap();
    let recs = wireshark_records(&path);
    assert!(recs.len() > 400, "{}", recs.len());
    let bad = recs.len() / 2;
    let at = recs[bad].0;
    // A little-endian file: incl_len is bytes 8..12 of the record header.
    bytes[at + 8..at + 12].copy_from_slice(&[0xff; 4]);
    let dir = tempfile::tempdir().unwrap();
    let r = read_cut(dir.path(), &bytes).unwrap();
    assert_eq!(r.damage.len(), 1, "{:?}", r.damage);
    assert_eq!(r.damage[0].0 as usize, at);
    assert!(matches!(r.damage[0].1, DamageKind::CapLenTooLarge { len: u32::MAX, .. }));
    let want: Vec<&Vec<u8>> = recs.iter().enumerate().filter(|(i, _)| *i != bad).map(|(_, (_, b))| b).collect();
    assert_eq!(r.frames.len(), want.len());
    assert!(r.frames.iter().zip(&want).all(|(a, b)| a == *b), "the frames after the damage are Wireshark's");

    // A damaged length that points past the end is the same: the records after it are read.
    let mut bytes = std::fs::read(&path).unwrap();
    let past_the_end = (bytes.len() as u32).to_le_bytes();
    bytes[at + 8..at + 12].copy_from_slice(&past_the_end);
    let r = read_cut(dir.path(), &bytes).unwrap();
    assert_eq!(r.damage.len(), 1, "{:?}", r.damage);
    assert_eq!(r.frames.len(), want.len());
}

/// Damage to the second-to-last record of a pcap loses that record, not the last one.
#[test]
fn a_bad_header_before_the_last_record_keeps_the_last() {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/http-put.pcap"));
    let mut bytes = std::fs::read(&path).unwrap();
    let recs = wireshark_records(&path);
    let bad = recs.len() - 2;
    let at = recs[bad].0;
    bytes[at + 8..at + 12].copy_from_slice(&[0xff; 4]);
    let dir = tempfile::tempdir().unwrap();
    let r = read_cut(dir.path(), &bytes).unwrap();
    assert_eq!(r.damage.len(), 1, "{:?}", r.damage);
    assert_eq!(r.frames.len(), recs.len() - 1);
    assert_eq!(r.frames.last(), Some(&recs.last().unwrap().1));
}
