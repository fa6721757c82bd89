//! Random bytes never make format detection panic, and the sniffer never holds more than its
//! bound: each case plants a format's magic at its offset, pokes random values into the header
//! fields the detectors read, then streams the bytes in random chunks with random holes.

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use tapir::content::format::{detect, Sample, Sniffer, MAX_RETAINED, MAX_TAR_ENTRIES, PREFIX_LEN};

const MAGICS: &[(usize, &[u8])] = &[
    (0, b"QFI\xfb\0\0\0\x03"),
    (0, b"QFI\xfb\0\0\0\x02"),
    (0, b"QFI\xfb\0\0\0\x01"),
    (0, b"KDMV\x01\0\0\0"),
    (0, b"# Disk DescriptorFile\nRW 10 SPARSE \"a\" 5\nCID=zz\n"),
    (0, b"vhdxfile"),
    (0, b"<<< x\0"),
    (0, b"conectix"),
    (32769, b"CD001"),
    (512, b"EFI PART"),
    (510, b"\x55\xaa"),
    (0, b"\x1f\x8b\x08"),
    (0, b"\xfd7zXZ\0\0\x04"),
    (0, b"\x28\xb5\x2f\xfd"),
    (0, b"BZh91AY&SY"),
    (0, b"PK\x03\x04"),
    (0, b"PK\x05\x06"),
    (257, b"ustar\0"),
    (257, b"ustar  \0"),
];

/// Offsets of header fields the detectors read (qcow2, VMDK, VHD, VDI, MBR, GPT, ISO, VHDX).
const FIELDS: &[usize] = &[
    1024 + 128,
    1024 + 256,
    1024 + 288,
    210_010,
    210_048,
    210_052,
    116,
    16 + 512,
    4,
    5,
    8,
    12,
    16,
    20,
    24,
    26,
    28,
    32,
    36,
    40,
    44,
    48,
    56,
    60,
    64,
    72,
    77,
    80,
    84,
    88,
    96,
    100,
    104,
    124,
    148,
    156,
    0x40,
    0x44,
    0x4c,
    0x170,
    0x178,
    446,
    454,
    458,
    462,
    470,
    474,
    512 + 12,
    512 + 16,
    512 + 28,
    512 + 32,
    512 + 72,
    512 + 80,
    512 + 84,
    1024 + 32,
    1024 + 40,
    32768,
    32768 + 80,
    32768 + 128,
    34816,
    36864,
    196608 + 8,
    196608 + 32,
];

fn plant(size: usize, base: &[u8], magic: usize, pokes: &[(usize, u64)], tail_vhd: bool) -> Vec<u8> {
    let mut b: Vec<u8> =
        if base.is_empty() { vec![0; size] } else { base.iter().copied().cycle().take(size).collect() };
    let (at, m) = MAGICS[magic % MAGICS.len()];
    if at + m.len() <= b.len() {
        b[at..at + m.len()].copy_from_slice(m);
    }
    // Plausible values for the fields that lead deeper into each format, before the pokes.
    let mut put = |at: usize, v: &[u8]| {
        if at + v.len() <= b.len() {
            b[at..at + v.len()].copy_from_slice(v);
        }
    };
    match m {
        b"EFI PART" => {
            put(510, b"\x55\xaa");
            put(450, b"\xee");
            put(512 + 12, &92u32.to_le_bytes());
            put(512 + 72, &2u64.to_le_bytes());
            put(512 + 80, &8u32.to_le_bytes());
            put(512 + 84, &128u32.to_le_bytes());
        }
        b"KDMV\x01\0\0\0" => {
            put(28, &1u64.to_le_bytes());
            put(36, &1u64.to_le_bytes());
            put(512, b"# Disk DescriptorFile\ncreateType=\"x\"\nRW 5 FLAT \"f\" 9\nddb.a = \"b\"\n");
        }
        b"conectix" => {
            put(16, &512u64.to_be_bytes());
            put(60, &4u32.to_be_bytes());
            put(512, b"cxsparse");
        }
        b"CD001" => {
            put(32768, &[1]);
            put(34816, b"\x02CD001");
            put(34816 + 88, b"%/E");
            put(36864, b"\xffCD001");
            put(38912, b"\x00BEA01");
        }
        b"vhdxfile" => {
            put(196608, b"regi");
            put(196608 + 8, &1u32.to_le_bytes());
            put(
                196608 + 16,
                &[0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e],
            );
            put(196608 + 32, &210_000u64.to_le_bytes());
            put(210_000, b"metadata");
            put(210_010, &1u16.to_le_bytes());
            put(
                210_032,
                &[0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8],
            );
            put(210_048, &30_000u32.to_le_bytes());
            put(210_052, &8u32.to_le_bytes());
        }
        _ if m.starts_with(b"QFI") => {
            put(100, &112u32.to_be_bytes());
            put(112, &0xe279_2acau32.to_be_bytes());
            put(116, &3u32.to_be_bytes());
        }
        _ => {}
    }
    if m == b"<<< x\0" && b.len() >= 0x44 {
        b[0x40..0x44].copy_from_slice(&0xbeda_107fu32.to_le_bytes());
    }
    for &(f, v) in pokes {
        let at = FIELDS[f % FIELDS.len()];
        let bytes = v.to_le_bytes();
        let n = (v as usize % 8) + 1;
        if at + n <= b.len() {
            b[at..at + n].copy_from_slice(&bytes[..n]);
        }
    }
    if tail_vhd && b.len() >= 512 {
        let t = b.len() - 512;
        b[t..t + 8].copy_from_slice(b"conectix");
    }
    b
}

fn stream(bytes: &[u8], chunks: &[usize], holes: &[(usize, usize)]) -> Sniffer {
    let mut s = Sniffer::new();
    let mut off = 0usize;
    let mut i = 0usize;
    while off < bytes.len() {
        let n = chunks[i % chunks.len()].max(1).min(bytes.len() - off);
        // A hole replaces chunk number `h % 16`.
        match holes.iter().find(|(h, _)| h % 16 == i % 16 && i < 16) {
            Some(&(_, len)) => s.gap(off as u64, len.min(bytes.len() - off) as u64),
            None => s.data(off as u64, &bytes[off..off + n]),
        }
        i += 1;
        assert!(s.retained() <= MAX_RETAINED, "retained {} > {MAX_RETAINED}", s.retained());
        off = s.sample().size as usize;
    }
    s
}

fn check_bounded(v: &tapir::content::format::FormatVerdict) {
    let json = serde_json::to_string(v).unwrap();
    assert!(json.len() <= 256 * 1024, "verdict JSON {} bytes", json.len());
    if let Some(e) = v.details.get("entries").and_then(|e| e.as_array()) {
        assert!(e.len() <= MAX_TAR_ENTRIES);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn planted_headers_never_panic_and_stay_bounded(
        size in prop_oneof![0usize..2048, 2048usize..70_000, 190_000usize..300_000],
        base in proptest::collection::vec(any::<u8>(), 0..600),
        magic in any::<usize>(),
        pokes in proptest::collection::vec((any::<usize>(), any::<u64>()), 0..16),
        tail_vhd in any::<bool>(),
        chunks in proptest::collection::vec(1usize..9000, 1..8),
        holes in proptest::collection::vec((any::<usize>(), 1usize..5000), 0..3),
    ) {
        let bytes = plant(size, &base, magic, &pokes, tail_vhd);
        let whole = detect(&Sample::whole(&bytes));
        check_bounded(&whole);
        let s = stream(&bytes, &chunks, &[]);
        let v = s.verdict();
        check_bounded(&v);
        // Without holes, streaming sees the same as the whole object, except what only the
        // streaming parts find (tar walker past the prefix, VHDX windows).
        if bytes.len() <= PREFIX_LEN && !matches!(v.format.as_str(), "tar" | "ova" | "vhdx") {
            prop_assert_eq!(&v, &whole);
        }
        let s = stream(&bytes, &chunks, &holes);
        check_bounded(&s.verdict());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096), split in any::<usize>()) {
        check_bounded(&detect(&Sample::whole(&bytes)));
        let mut s = Sniffer::new();
        let k = if bytes.is_empty() { 0 } else { split % bytes.len() };
        s.data(0, &bytes[..k]);
        s.data(k as u64, &bytes[k..]);
        check_bounded(&s.verdict());
    }

    /// Tar headers with valid checksums and random sizes, types and names: the walker follows
    /// them, never panics, and its listing stays within the caps.
    #[test]
    fn random_tar_headers_stay_bounded(
        members in proptest::collection::vec((any::<u8>(), 0u64..3000, proptest::collection::vec(any::<u8>(), 0..120), any::<bool>()), 1..40),
        chunks in proptest::collection::vec(1usize..3000, 1..6),
    ) {
        let mut out = Vec::new();
        for (t, size, name, huge) in &members {
            let mut h = [0u8; 512];
            let n = name.len().min(100);
            h[..n].copy_from_slice(&name[..n]);
            if *huge {
                h[124] = 0x80; // base-256 size
                h[128..136].copy_from_slice(&size.to_be_bytes());
            } else {
                h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
            }
            h[156] = [b'0', b'5', b'L', b'x', b'g', *t][(*t % 6) as usize];
            h[257..263].copy_from_slice(b"ustar\0");
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
            h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
            out.extend_from_slice(&h);
            let data_len = (*size as usize).div_ceil(512) * 512;
            out.extend((0..data_len).map(|i| name.get(i % name.len().max(1)).copied().unwrap_or(0)));
        }
        out.extend_from_slice(&[0; 1024]);
        let s = stream(&out, &chunks, &[]);
        let v = s.verdict();
        check_bounded(&v);
    }
}

/// 1500 members: the listing stops at the cap and says so.
#[test]
fn tar_listing_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("sh")
        .args(["-ec", "mkdir m; cd m; for i in $(seq 1 1500); do : > f$i; done; cd ..; tar -cf many.tar m"])
        .current_dir(dir.path())
        .status()
        .expect("sh and tar");
    assert!(status.success());
    let bytes = std::fs::read(Path::new(dir.path()).join("many.tar")).unwrap();
    let s = stream(&bytes, &[777, 3, 5000], &[]);
    let v = s.verdict();
    assert_eq!(v.format, "tar");
    assert_eq!(v.details["entries"].as_array().unwrap().len(), MAX_TAR_ENTRIES);
    assert_eq!(v.details["truncated"], true);
    assert_eq!(v.details["stopped"], format!("listing capped at {MAX_TAR_ENTRIES} entries"));
    assert!(s.retained() <= MAX_RETAINED);
}
