//! Captures built byte by byte from the pcap and pcapng specifications (draft-ietf-opsawg-pcap,
//! draft-ietf-opsawg-pcapng), read back field by field. Expected values are written out by hand
//! from what each image encodes; tshark reads the same images to show they are valid captures.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use tapir::capture::file::{CaptureDamage, CaptureError, CaptureFile, DamageKind, Merge};
use tapir::capture::{CaptureFormat, LinkType};
use tapir::timestamp::Timestamp;

// ---------------------------------------------------------------------------------------------
// Image builders

fn u16b(big: bool, v: u16) -> [u8; 2] {
    if big {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    }
}

fn u32b(big: bool, v: u32) -> [u8; 4] {
    if big {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    }
}

fn pcap_header(big: bool, nanos: bool, link: u32, snaplen: u32) -> Vec<u8> {
    let magic = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    let mut v = Vec::new();
    v.extend(u32b(big, magic));
    v.extend(u16b(big, 2));
    v.extend(u16b(big, 4));
    v.extend(u32b(big, 0)); // thiszone
    v.extend(u32b(big, 0)); // sigfigs
    v.extend(u32b(big, snaplen));
    v.extend(u32b(big, link));
    v
}

fn pcap_record(v: &mut Vec<u8>, big: bool, sec: u32, frac: u32, data: &[u8], orig: u32) {
    v.extend(u32b(big, sec));
    v.extend(u32b(big, frac));
    v.extend(u32b(big, data.len() as u32));
    v.extend(u32b(big, orig));
    v.extend(data);
}

fn block(big: bool, btype: u32, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    while body.len() % 4 != 0 {
        body.push(0);
    }
    let len = body.len() as u32 + 12;
    let mut v = Vec::new();
    v.extend(u32b(big, btype));
    v.extend(u32b(big, len));
    v.extend(body);
    v.extend(u32b(big, len));
    v
}

fn options(big: bool, opts: &[(u16, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    if opts.is_empty() {
        return v;
    }
    for (code, val) in opts {
        v.extend(u16b(big, *code));
        v.extend(u16b(big, val.len() as u16));
        v.extend(*val);
        while v.len() % 4 != 0 {
            v.push(0);
        }
    }
    v.extend([0, 0, 0, 0]); // opt_endofopt
    v
}

fn shb(big: bool) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(u32b(big, 0x1a2b_3c4d));
    b.extend(u16b(big, 1));
    b.extend(u16b(big, 0));
    b.extend([0xff; 8]); // section length unknown
    b.extend(options(big, &[(4, b"tapir-test")])); // shb_userappl
    block(big, 0x0a0d_0d0a, &b)
}

fn idb(big: bool, link: u16, snaplen: u32, opts: &[(u16, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(u16b(big, link));
    b.extend(u16b(big, 0));
    b.extend(u32b(big, snaplen));
    b.extend(options(big, opts));
    block(big, 1, &b)
}

fn epb(big: bool, iface: u32, units: u64, data: &[u8], orig: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(u32b(big, iface));
    b.extend(u32b(big, (units >> 32) as u32));
    b.extend(u32b(big, units as u32));
    b.extend(u32b(big, data.len() as u32));
    b.extend(u32b(big, orig));
    b.extend(data);
    while b.len() % 4 != 0 {
        b.push(0);
    }
    b.extend(options(big, &[(2, &u32b(big, 1))])); // epb_flags: inbound
    block(big, 6, &b)
}

fn spb(big: bool, orig: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(u32b(big, orig));
    b.extend(data);
    block(big, 3, &b)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write_tmp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A frame as owned values: (time, link, captured bytes, wire length).
type Owned = (Timestamp, LinkType, Vec<u8>, u32);

fn read_all(f: &CaptureFile) -> (Vec<Owned>, Vec<CaptureDamage>) {
    let mut frames = Vec::new();
    let mut damage = Vec::new();
    for item in f.frames() {
        match item {
            Ok(fr) => frames.push((fr.ts, fr.link, fr.data.to_vec(), fr.orig_len)),
            Err(d) => damage.push(d),
        }
    }
    (frames, damage)
}

/// `frame.time_epoch`, `frame.cap_len`, `frame.len` and `frame.interface_id` as tshark reads `path`.
fn tshark(path: &Path) -> Vec<String> {
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(path)
        .args(["-T", "fields", "-e", "frame.time_epoch", "-e", "frame.cap_len", "-e", "frame.len"])
        .output()
        .expect("tshark is installed");
    assert!(out.status.success(), "tshark failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

// Frame payloads: distinct bytes so a wrong offset shows.
const P1: &[u8] = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x08\x00first";
const P2: &[u8] = b"\x45\x00\x00\x14second-ip";
const P3: &[u8] = b"third!";

// ---------------------------------------------------------------------------------------------
// pcap

fn sample_pcap(big: bool, nanos: bool) -> Vec<u8> {
    let mut v = pcap_header(big, nanos, 1, 65535);
    let f = if nanos { 123_456_789 } else { 123_456 };
    pcap_record(&mut v, big, 1_700_000_000, f, P1, P1.len() as u32);
    // Snapped: captured 6 of 1500.
    pcap_record(&mut v, big, 1_700_000_001, 0, P3, 1500);
    // Captured longer than the wire length: still yielded whole.
    pcap_record(&mut v, big, 1_700_000_002, 1, P2, 4);
    v
}

#[test]
fn pcap_all_byte_orders_and_resolutions() {
    let dir = tempfile::tempdir().unwrap();
    for big in [false, true] {
        for nanos in [false, true] {
            let bytes = sample_pcap(big, nanos);
            let path = write_tmp(dir.path(), &format!("s-{big}-{nanos}.pcap"), &bytes);
            let f = CaptureFile::open(&path).unwrap();
            assert_eq!(f.size(), bytes.len() as u64);
            assert_eq!(f.path(), path);
            assert!(!f.is_gzip());
            assert_eq!(
                f.format(),
                CaptureFormat::Pcap {
                    big_endian: big,
                    nanos,
                    version: (2, 4),
                    snaplen: 65535,
                    link: LinkType::Ethernet
                }
            );
            let (frames, damage) = read_all(&f);
            assert!(damage.is_empty(), "{damage:?}");
            let first_ns = if nanos { 123_456_789 } else { 123_456_000 };
            let last_ns = if nanos { 1 } else { 1000 };
            assert_eq!(
                frames,
                vec![
                    (Timestamp(1_700_000_000_000_000_000 + first_ns), LinkType::Ethernet, P1.to_vec(), P1.len() as u32),
                    (Timestamp(1_700_000_001_000_000_000), LinkType::Ethernet, P3.to_vec(), 1500),
                    (Timestamp(1_700_000_002_000_000_000 + last_ns), LinkType::Ethernet, P2.to_vec(), 4),
                ]
            );
            let mut it = f.frames();
            assert_eq!(it.position(), 0, "nothing read before the first frame is asked for");
            it.by_ref().for_each(drop);
            assert_eq!(it.position(), bytes.len() as u64);

            let first = if nanos { "1700000000.123456789" } else { "1700000000.123456000" };
            let last = if nanos { "1700000002.000000001" } else { "1700000002.000001000" };
            assert_eq!(
                tshark(&path),
                vec![
                    format!("{first}\t{}\t{}", P1.len(), P1.len()),
                    "1700000001.000000000\t6\t1500".to_owned(),
                    format!("{last}\t{}\t4", P2.len()),
                ]
            );
        }
    }
}

#[test]
fn pcap_link_types_map() {
    // (LINKTYPE number in the header, expected mapping), from the tcpdump.org registry.
    let cases = [
        (0, LinkType::Null),
        (1, LinkType::Ethernet),
        (101, LinkType::Raw),
        (12, LinkType::Raw),
        (108, LinkType::Loop),
        (113, LinkType::LinuxSll),
        (228, LinkType::Ipv4),
        (229, LinkType::Ipv6),
        (276, LinkType::LinuxSll2),
        (9, LinkType::Other(9)),
        // FCS-length bits above the link type (libpcap LT_FCS_DATALEN) do not change it.
        (1 | (0x1 << 28) | (4 << 26), LinkType::Ethernet),
    ];
    for (n, want) in cases {
        let mut v = pcap_header(false, false, n, 0);
        pcap_record(&mut v, false, 1, 2, P2, 100);
        let f = CaptureFile::from_bytes("mem.pcap", v).unwrap();
        let (frames, damage) = read_all(&f);
        assert!(damage.is_empty());
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].1, want, "linktype {n:#x}");
    }
}

// ---------------------------------------------------------------------------------------------
// pcapng

/// Two sections; the first has interfaces Ethernet (default µs) and Raw IPv4 (`if_tsresol` 9,
/// i.e. ns), an EPB on each, an SPB, and blocks to skip (NRB, ISB). The second section,
/// in the other byte order, redefines interface 0 as Linux SLL with 2^-10 s units, a 100 s
/// `if_tsoffset` and a snap length of 4, with an EPB and an SPB.
fn sample_pcapng_full(big: bool) -> Vec<u8> {
    let big2 = !big;
    let mut v = shb(big);
    v.extend(idb(big, 1, 0, &[(2, b"eth0")]));
    v.extend(block(big, 4, &[0, 0, 0, 0]));
    v.extend(idb(big, 228, 5, &[(9, &[9])]));
    v.extend(epb(big, 0, 1_700_000_000_123_456, P1, 60));
    v.extend(epb(big, 1, 1_700_000_000_987_654_321, P2, P2.len() as u32));
    let mut isb = Vec::new();
    isb.extend(u32b(big, 0));
    isb.extend([0u8; 8]);
    v.extend(block(big, 5, &isb));
    v.extend(spb(big, P3.len() as u32, P3));
    v.extend(shb(big2));
    let off = if big2 { 100u64.to_be_bytes() } else { 100u64.to_le_bytes() };
    v.extend(idb(big2, 113, 4, &[(9, &[0x80 | 10]), (14, &off)]));
    // 1_700_000_000.5 s in 1/1024 s units.
    v.extend(epb(big2, 0, 1_700_000_000 * 1024 + 512, P3, 6));
    // A writer stores only the snapped bytes: 4 of 6.
    v.extend(spb(big2, 6, &P3[..4]));
    v
}

#[test]
fn pcapng_interfaces_blocks_and_sections() {
    let dir = tempfile::tempdir().unwrap();
    for big in [false, true] {
        let bytes = sample_pcapng_full(big);
        let path = write_tmp(dir.path(), &format!("s-{big}.pcapng"), &bytes);
        let f = CaptureFile::open(&path).unwrap();
        assert_eq!(f.format(), CaptureFormat::Pcapng { big_endian: big });
        assert_eq!(f.size(), bytes.len() as u64);
        let (frames, damage) = read_all(&f);
        assert!(damage.is_empty(), "{damage:?}");
        let t0 = Timestamp(1_700_000_000_123_456_000);
        let t1 = Timestamp(1_700_000_000_987_654_321);
        let t2 = Timestamp(1_700_000_100_500_000_000);
        assert_eq!(
            frames,
            vec![
                (t0, LinkType::Ethernet, P1.to_vec(), 60),
                // Captured length is the EPB's, not the interface's snap length of 5.
                (t1, LinkType::Ipv4, P2.to_vec(), P2.len() as u32),
                // SPB: no timestamp of its own, it keeps the previous packet's.
                (t1, LinkType::Ethernet, P3.to_vec(), 6),
                (t2, LinkType::LinuxSll, P3.to_vec(), 6),
                // SPB on an interface with snaplen 4: 4 of 6 bytes captured.
                (t2, LinkType::LinuxSll, P3[..4].to_vec(), 6),
            ]
        );
        let mut it = f.frames();
        it.by_ref().for_each(drop);
        assert_eq!(it.position(), bytes.len() as u64);

        // tshark agrees on the timed packets' times and on every length (it shows SPBs without a
        // time, so only their lengths are compared).
        let t = tshark(&path);
        assert_eq!(t.len(), 5, "{t:?}");
        assert_eq!(t[0], format!("1700000000.123456000\t{}\t60", P1.len()));
        assert_eq!(t[1], format!("1700000000.987654321\t{}\t{}", P2.len(), P2.len()));
        assert!(t[2].ends_with("\t6\t6"), "{}", t[2]);
        assert_eq!(t[3], "1700000100.500000000\t6\t6");
        assert!(t[4].ends_with("\t4\t6"), "{}", t[4]);
    }
}

#[test]
fn pcapng_custom_and_unknown_blocks_are_skipped() {
    // tshark 4.0 lists custom blocks as records, so this image is checked by hand only.
    let mut v = shb(false);
    v.extend(block(false, 0x0bad, b"\0\0\x7e\xd9custom")); // PEN 32473, the documentation PEN
    v.extend(block(false, 0x4000_0bad, b"\0\0\x7e\xd9no-copy"));
    v.extend(idb(false, 1, 0, &[]));
    v.extend(block(false, 0x0a, b"TLSK\0\0\0\0")); // decryption secrets, empty
    v.extend(block(false, 0x1234_5678, b"unknown type"));
    v.extend(epb(false, 0, 5, P1, 60));
    let f = CaptureFile::from_bytes("c.pcapng", v).unwrap();
    let (frames, damage) = read_all(&f);
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(frames, vec![(Timestamp(5_000), LinkType::Ethernet, P1.to_vec(), 60)]);
}

#[test]
fn pcapng_tsresol_powers() {
    // (if_tsresol, units, expected ns): 10^-3, 10^-12 (truncated), 2^-20 (10^9 / 2^20 = 953.67 ns
    // per unit, truncated), 2^-0.
    let cases: [(u8, u64, i64); 4] = [
        (3, 1_700_000_000_123, 1_700_000_000_123_000_000),
        (12, 1_700_000_000_123_456_789, 1_700_000_000_123_456),
        (0x80 | 20, (1_700_000_000u64 << 20) + (1 << 19) + 1, 1_700_000_000_500_000_953),
        (0x80, 42, 42_000_000_000),
    ];
    for (res, units, ns) in cases {
        let mut v = shb(false);
        v.extend(idb(false, 1, 0, &[(9, &[res])]));
        v.extend(epb(false, 0, units, P1, 60));
        let f = CaptureFile::from_bytes("mem.pcapng", v).unwrap();
        let (frames, damage) = read_all(&f);
        assert!(damage.is_empty());
        assert_eq!(frames[0].0, Timestamp(ns), "tsresol {res:#x}");
    }
}

// ---------------------------------------------------------------------------------------------
// gzip

#[test]
fn gzip_detected_by_magic_not_name() {
    let dir = tempfile::tempdir().unwrap();
    for (name, plain) in [("a.pcapng", sample_pcapng_full(true)), ("b.dat", sample_pcap(true, true))] {
        let path = write_tmp(dir.path(), name, &gzip(&plain));
        let f = CaptureFile::open(&path).unwrap();
        assert!(f.is_gzip());
        assert_eq!(f.size(), gzip(&plain).len() as u64, "the size as stored");
        let plain_f = CaptureFile::from_bytes("plain", plain).unwrap();
        let (a, da) = read_all(&f);
        let (b, db) = read_all(&plain_f);
        assert!(da.is_empty() && db.is_empty());
        assert_eq!(a, b);
        assert!(a.len() >= 3);
    }
    // A ".gz" name on a plain file changes nothing.
    let path = write_tmp(dir.path(), "plain.pcap.gz", &sample_pcap(false, false));
    let f = CaptureFile::open(&path).unwrap();
    assert!(!f.is_gzip());
    assert_eq!(read_all(&f).0.len(), 3);
}

#[test]
fn gzip_cut_short_yields_what_decompressed_then_damage() {
    // Many frames so the cut gzip still holds some whole ones.
    let mut plain = pcap_header(false, false, 1, 0);
    for i in 0..2000u32 {
        pcap_record(&mut plain, false, i, 0, &i.to_le_bytes().repeat(20), 80);
    }
    let gz = gzip(&plain);
    let cut = &gz[..gz.len() / 2];
    let f = CaptureFile::from_bytes("cut.pcap.gz", cut.to_vec()).unwrap();
    let (frames, damage) = read_all(&f);
    assert!(!frames.is_empty() && frames.len() < 2000);
    for (i, fr) in frames.iter().enumerate() {
        assert_eq!(fr.0, Timestamp::from_secs(i as i64));
        assert_eq!(fr.2, (i as u32).to_le_bytes().repeat(20));
    }
    let last = damage.last().expect("damage reported");
    // The break is after the frames read and inside the capture that was compressed.
    let read = 24 + frames.len() as u64 * (16 + 80);
    assert!(
        matches!(last.kind, DamageKind::Gzip { decompressed, .. } if decompressed >= read && decompressed < plain.len() as u64),
        "{damage:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors and damage

#[test]
fn not_a_capture_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8]); 4] = [
        ("text.pcap", b"GET / HTTP/1.1\r\n\r\n"),
        ("empty.pcap", b""),
        ("short.pcap", &[0xd4, 0xc3, 0xb2, 0xa1, 2, 0]),
        ("badbom.pcapng", &[0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 1, 2, 3, 4]),
    ];
    for (name, bytes) in cases {
        let path = write_tmp(dir.path(), name, bytes);
        let err = CaptureFile::open(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        match name {
            "short.pcap" => assert!(matches!(err, CaptureError::TruncatedHeader { len: 6, needed: 24, .. })),
            "badbom.pcapng" => assert!(matches!(err, CaptureError::BadByteOrderMagic { magic: 0x0403_0201, .. })),
            _ => assert!(matches!(err, CaptureError::NotACapture { .. }), "{err:?}"),
        }
    }
    let missing = dir.path().join("missing.pcap");
    let err = CaptureFile::open(&missing).unwrap_err();
    assert!(matches!(err, CaptureError::Io { .. }) && err.to_string().contains("missing.pcap"));
    // A gzip file whose content is not a capture.
    let path = write_tmp(dir.path(), "text.gz", &gzip(b"hello, not a capture"));
    assert!(matches!(CaptureFile::open(&path), Err(CaptureError::NotACapture { .. })));
}

#[test]
fn pcap_truncated_last_record() {
    let full = sample_pcap(false, false);
    // Cut 3 bytes into the third record's data.
    let third = 24 + 16 + P1.len() + 16 + P3.len();
    let cut = full[..third + 16 + 3].to_vec();
    let f = CaptureFile::from_bytes("t.pcap", cut).unwrap();
    let (frames, damage) = read_all(&f);
    assert_eq!(frames.len(), 2);
    assert_eq!(
        damage,
        vec![CaptureDamage {
            offset: third as u64,
            kind: DamageKind::Truncated { needed: 16 + P2.len() as u64, available: 19 }
        }]
    );
    // Cut inside the record header.
    let f = CaptureFile::from_bytes("t.pcap", full[..third + 5].to_vec()).unwrap();
    let (frames, damage) = read_all(&f);
    assert_eq!(frames.len(), 2);
    assert_eq!(damage[0].kind, DamageKind::Truncated { needed: 16, available: 5 });
}

#[test]
fn pcap_hostile_length_is_reported() {
    let mut v = sample_pcap(true, false);
    let second = 24 + 16 + P1.len();
    v[second + 8..second + 12].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
    let f = CaptureFile::from_bytes("h.pcap", v).unwrap();
    let (frames, damage) = read_all(&f);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        damage,
        vec![CaptureDamage {
            offset: second as u64,
            kind: DamageKind::CapLenTooLarge { len: 0xffff_fff0, max: 16 << 20 }
        }]
    );
}

#[test]
fn pcapng_garbage_block_is_skipped_and_reading_resumes() {
    let big = false;
    let mut v = shb(big);
    v.extend(idb(big, 1, 0, &[]));
    v.extend(epb(big, 0, 1, P1, 60));
    let garbage_at = v.len();
    v.extend(b"\xde\xad\xbe\xef\x07\x00\x00\x00garbage!"); // length 7: not a multiple of 4
    v.extend(epb(big, 0, 2, P2, 61));
    let hostile_at = v.len();
    let mut hostile = epb(big, 0, 3, P3, 62);
    hostile[4..8].copy_from_slice(&0x7fff_fff0u32.to_le_bytes()); // runs past the end
    v.extend(hostile);
    // Resynchronising skips blocks that do not look sound, so a sound one follows each.
    v.extend(epb(big, 0, 3, P2, 62));
    let mismatch_at = v.len();
    let mut mismatch = epb(big, 0, 4, P3, 63);
    let n = mismatch.len();
    mismatch[n - 4..].copy_from_slice(&8u32.to_le_bytes()); // trailer disagrees
    v.extend(&mismatch);
    v.extend(epb(big, 0, 4, P2, 63));
    let unknown_at = v.len();
    v.extend(epb(big, 7, 5, P3, 64)); // interface 7 undefined
    let overrun_at = v.len();
    let mut overrun = epb(big, 0, 6, P3, 65);
    overrun[20..24].copy_from_slice(&1000u32.to_le_bytes()); // cap_len past the block
    v.extend(overrun);
    v.extend(epb(big, 0, 7, P1, 66));
    let trunc_at = v.len();
    let last = epb(big, 0, 8, P1, 67);
    v.extend(&last[..last.len() - 5]);

    let f = CaptureFile::from_bytes("g.pcapng", v.clone()).unwrap();
    let items: Vec<_> = f.frames().map(|r| r.map(|fr| fr.orig_len)).collect();
    let off = |o: usize| o as u64;
    assert_eq!(
        items,
        vec![
            Ok(60),
            Err(CaptureDamage { offset: off(garbage_at), kind: DamageKind::BadBlockLength { len: 7 } }),
            Ok(61),
            Err(CaptureDamage { offset: off(hostile_at), kind: DamageKind::BadBlockLength { len: 0x7fff_fff0 } }),
            Ok(62),
            Err(CaptureDamage {
                offset: off(mismatch_at),
                kind: DamageKind::TrailerMismatch { header: mismatch.len() as u32, trailer: 8 }
            }),
            Ok(63),
            Err(CaptureDamage { offset: off(unknown_at), kind: DamageKind::UnknownInterface { id: 7, known: 1 } }),
            Err(CaptureDamage {
                offset: off(overrun_at),
                kind: DamageKind::PacketOverrunsBlock { cap_len: 1000, room: 20 }
            }),
            Ok(66),
            Err(CaptureDamage {
                offset: off(trunc_at),
                kind: DamageKind::Truncated { needed: last.len() as u64, available: last.len() as u64 - 5 }
            }),
        ]
    );
}

#[test]
fn damage_messages_carry_offset() {
    let d = CaptureDamage { offset: 1234, kind: DamageKind::TrailerMismatch { header: 40, trailer: 8 } };
    assert_eq!(d.to_string(), "capture damaged at byte 1234: block trailer length 8 differs from header length 40");
}

// ---------------------------------------------------------------------------------------------
// Merge

#[test]
fn merge_interleaves_by_time_ties_in_file_order() {
    // File A (pcap, µs): t = 1, 3, 5, 7 s. File B (pcapng, ns): t = 2, 3, 4, 8 s.
    let mut a = pcap_header(false, false, 1, 0);
    for s in [1u32, 3, 5, 7] {
        pcap_record(&mut a, false, s, 0, b"A", 1);
    }
    let mut b = shb(true);
    b.extend(idb(true, 101, 0, &[(9, &[9])]));
    for s in [2u64, 3, 4, 8] {
        b.extend(epb(true, 0, s * 1_000_000_000, b"B", 1));
    }
    let files = [CaptureFile::from_bytes("a", a).unwrap(), CaptureFile::from_bytes("b", b).unwrap()];
    let mut m = Merge::of(&files);
    assert_eq!(m.sources(), 2);
    let mut got = Vec::new();
    for (i, r) in m.by_ref() {
        let fr = r.unwrap();
        got.push((i, fr.ts.secs(), fr.data.to_vec()));
    }
    let want: Vec<(usize, i64, Vec<u8>)> = [(0, 1), (1, 2), (0, 3), (1, 3), (1, 4), (0, 5), (0, 7), (1, 8)]
        .into_iter()
        .map(|(i, s)| (i, s, if i == 0 { b"A".to_vec() } else { b"B".to_vec() }))
        .collect();
    assert_eq!(got, want);
    assert_eq!(m.position(), files[0].size() + files[1].size());
}

#[test]
fn merge_passes_damage_on_with_its_source() {
    let mut a = pcap_header(false, false, 1, 0);
    pcap_record(&mut a, false, 1, 0, b"A", 1);
    a.extend([1, 2, 3]); // a cut record header
    let mut b = pcap_header(false, false, 1, 0);
    pcap_record(&mut b, false, 2, 0, b"B", 1);
    let files = [CaptureFile::from_bytes("a", a).unwrap(), CaptureFile::from_bytes("b", b).unwrap()];
    let got: Vec<_> = Merge::of(&files).map(|(i, r)| (i, r.map(|f| f.ts.secs()).map_err(|d| d.offset))).collect();
    assert_eq!(got, vec![(0, Ok(1)), (0, Err(24 + 17)), (1, Ok(2))]);
}

// ---------------------------------------------------------------------------------------------
// Never panics

fn drain(bytes: Vec<u8>) {
    // Damage offsets are offsets in the capture, decompressed for gzip input: as far as any
    // decoder gets before the stream breaks.
    let mut inflated = Vec::new();
    let capture_len = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut d = flate2::read::MultiGzDecoder::new(bytes.as_slice());
        let _ = std::io::Read::read_to_end(&mut d, &mut inflated);
        inflated.len() as u64
    } else {
        bytes.len() as u64
    };
    if let Ok(f) = CaptureFile::from_bytes("fuzz", bytes) {
        let size = f.size();
        let mut it = f.frames();
        let mut last = it.position();
        let mut n = 0usize;
        while let Some(item) = it.next() {
            if let Err(d) = item {
                assert!(d.offset <= capture_len, "{d} in a capture of {capture_len} bytes");
            }
            assert!(it.position() >= last && it.position() <= size);
            last = it.position();
            n += 1;
            assert!(n <= size as usize + 2, "iterator does not end");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..600), kind in 0u8..4) {
        let mut v = match kind {
            0 => pcap_header(false, false, 1, 0),
            1 => pcap_header(true, true, 1, 0),
            2 => shb(false),
            _ => Vec::new(),
        };
        v.extend(tail);
        drain(v);
    }

    #[test]
    fn mutated_captures_never_panic(
        which in 0u8..4,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..12),
        cut in any::<usize>(),
    ) {
        let mut v = match which {
            0 => sample_pcap(false, false),
            1 => sample_pcap(true, true),
            2 => sample_pcapng_full(false),
            _ => gzip(&sample_pcapng_full(true)),
        };
        for (at, b) in edits {
            let i = at % v.len();
            v[i] = b;
        }
        v.truncate(cut % (v.len() + 1));
        drain(v);
    }
}
