//! Partition tables: MBR (with extended partitions) and GPT, read from a [`Disk`].
//!
//! Written here rather than taken from `mbrman`/`gpt`: both want a `Read + Seek` device they own
//! and both fail a whole table on one bad entry; here a bad entry is skipped with a note, a loop
//! in the extended-partition chain ends it, and only the fields a reader needs are parsed.

use super::disk::{read_vec, Disk};

const SECTOR: u64 = 512;
/// Logical partitions followed at most in an extended chain.
const MAX_LOGICAL: usize = 128;
/// GPT entries read at most.
const MAX_GPT_ENTRIES: u32 = 1024;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Partition {
    /// 1-based, as `fdisk` and `sgdisk` number them (logical MBR partitions from 5).
    pub number: u32,
    pub scheme: &'static str,
    /// Byte offset and length in the disk.
    pub start: u64,
    pub size: u64,
    /// MBR type byte as hex, or GPT type GUID.
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// The partitions of `d`, and notes on entries that could not be used.
pub fn partitions(d: &mut dyn Disk) -> (Vec<Partition>, Vec<String>) {
    let mut notes = Vec::new();
    let Ok(mbr) = read_vec(d, 0, SECTOR as usize) else { return (Vec::new(), notes) };
    if mbr.get(510..512) != Some(&[0x55, 0xaa][..]) {
        return (Vec::new(), notes);
    }
    let entries: Vec<(u8, u64, u64)> = (0..4)
        .filter_map(|i| {
            let e = mbr.get(446 + i * 16..446 + (i + 1) * 16)?;
            let kind = *e.get(4)?;
            let start = u64::from(u32::from_le_bytes(e.get(8..12)?.try_into().ok()?));
            let count = u64::from(u32::from_le_bytes(e.get(12..16)?.try_into().ok()?));
            Some((kind, start, count))
        })
        .collect();
    if entries.iter().any(|(k, _, _)| *k == 0xee) {
        return gpt(d, &mut notes).map_or_else(|| (Vec::new(), notes.clone()), |p| (p, notes.clone()));
    }
    let mut out = Vec::new();
    for (i, (kind, start, count)) in entries.iter().enumerate() {
        if *kind == 0 || *count == 0 {
            continue;
        }
        if matches!(kind, 0x05 | 0x0f | 0x85) {
            logical(d, *start, &mut out, &mut notes);
            continue;
        }
        push(d, &mut out, &mut notes, i as u32 + 1, "mbr", *start, *count, format!("{kind:02x}"), String::new());
    }
    (out, notes)
}

#[allow(clippy::too_many_arguments)]
fn push(
    d: &dyn Disk,
    out: &mut Vec<Partition>,
    notes: &mut Vec<String>,
    number: u32,
    scheme: &'static str,
    start_lba: u64,
    sectors: u64,
    kind: String,
    name: String,
) {
    let (start, size) = (start_lba.saturating_mul(SECTOR), sectors.saturating_mul(SECTOR));
    match start.checked_add(size) {
        Some(end) if end <= d.size() => out.push(Partition { number, scheme, start, size, kind, name }),
        _ => notes.push(format!("{scheme} partition {number} ({start}+{size} bytes) runs past the disk's end")),
    }
}

/// Logical partitions of the extended partition starting at LBA `base`: a chain of EBRs.
fn logical(d: &mut dyn Disk, base: u64, out: &mut Vec<Partition>, notes: &mut Vec<String>) {
    let mut next = 0u64;
    let mut seen = Vec::new();
    for n in 0..MAX_LOGICAL {
        let ebr_lba = base + next;
        if seen.contains(&ebr_lba) {
            notes.push(format!("extended partition chain loops at LBA {ebr_lba}"));
            return;
        }
        seen.push(ebr_lba);
        let Ok(ebr) = read_vec(d, ebr_lba.saturating_mul(SECTOR), SECTOR as usize) else {
            notes.push(format!("extended partition record at LBA {ebr_lba} past the disk's end"));
            return;
        };
        if ebr.get(510..512) != Some(&[0x55, 0xaa][..]) {
            return;
        }
        let field = |i: usize, at: usize| -> u64 {
            ebr.get(446 + i * 16 + at..446 + i * 16 + at + 4)
                .and_then(|s| s.try_into().ok())
                .map_or(0, |b| u64::from(u32::from_le_bytes(b)))
        };
        let kind = ebr.get(446 + 4).copied().unwrap_or(0);
        if kind != 0 && field(0, 12) != 0 {
            let number = 5 + n as u32;
            push(
                d,
                out,
                notes,
                number,
                "mbr",
                ebr_lba + field(0, 8),
                field(0, 12),
                format!("{kind:02x}"),
                String::new(),
            );
        }
        next = field(1, 8);
        if next == 0 {
            return;
        }
    }
    notes.push(format!("more than {MAX_LOGICAL} logical partitions: the rest not read"));
}

fn guid(b: &[u8]) -> String {
    let g = |r: std::ops::Range<usize>| b.get(r).unwrap_or_default().to_vec();
    let (mut a, mut b2, mut c) = (g(0..4), g(4..6), g(6..8));
    a.reverse();
    b2.reverse();
    c.reverse();
    format!(
        "{}-{}-{}-{}-{}",
        hex::encode(a),
        hex::encode(b2),
        hex::encode(c),
        hex::encode(g(8..10)),
        hex::encode(g(10..16))
    )
    .to_uppercase()
}

fn gpt(d: &mut dyn Disk, notes: &mut Vec<String>) -> Option<Vec<Partition>> {
    let h = read_vec(d, SECTOR, SECTOR as usize).ok()?;
    if h.get(..8) != Some(b"EFI PART") {
        notes.push("protective MBR without a GPT header".into());
        return None;
    }
    let le64 = |b: &[u8], at: usize| b.get(at..at + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes);
    let le32 = |b: &[u8], at: usize| b.get(at..at + 4).and_then(|s| s.try_into().ok()).map_or(0, u32::from_le_bytes);
    let (entries_lba, count, entry_size) = (le64(&h, 72), le32(&h, 80), le32(&h, 84));
    if !(128..=4096).contains(&entry_size) || count > MAX_GPT_ENTRIES {
        notes.push(format!("GPT with {count} entries of {entry_size} bytes: not read"));
        return None;
    }
    let table = read_vec(d, entries_lba.saturating_mul(SECTOR), (count * entry_size) as usize).ok()?;
    let mut out = Vec::new();
    for (i, e) in table.chunks_exact(entry_size as usize).enumerate() {
        let kind = guid(e.get(..16).unwrap_or_default());
        if e.get(..16).is_none_or(|t| t.iter().all(|b| *b == 0)) {
            continue;
        }
        let (first, last) = (le64(e, 32), le64(e, 40));
        if last < first {
            notes.push(format!("GPT partition {}: last LBA {last} before first {first}", i + 1));
            continue;
        }
        let name: Vec<u16> =
            e.get(56..128).unwrap_or_default().chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        let name = String::from_utf16_lossy(&name).trim_end_matches('\0').to_string();
        push(d, &mut out, notes, i as u32 + 1, "gpt", first, last - first + 1, kind, name);
    }
    Some(out)
}
