//! VHDX (Hyper-V), read-only, from Microsoft's VHDX Format Specification v1.0.
//!
//! `vhdxfile` at 0; two headers (64 and 128 KiB; the higher sequence number is current); two
//! region tables (192 and 256 KiB) locating the BAT and the metadata region. Metadata items give
//! the block size, the virtual size and the logical sector size. The BAT holds one 64-bit entry
//! per payload block (state in the low 3 bits, file offset in MiB from bit 20), with a sector
//! bitmap entry after every `chunk ratio` payload entries. A header naming a log means writes
//! not yet applied: they are not replayed here, and the report says so. Differencing disks
//! (`HasParent`) need their parent and are refused.

use super::disk::field::{le16, le32, le64};
use super::disk::{check, read_blocks, read_vec, Disk};

const KIB64: u64 = 64 << 10;
/// Block states whose data is in the file.
const FULLY_PRESENT: u64 = 6;
const PARTIALLY_PRESENT: u64 = 7;
const MAX_BAT: u64 = 1 << 24;
const MAX_SIZE: u64 = 1 << 56;
const BAT_GUID: &str = "2DC27766-F623-4200-9D64-115E9BFD4A08";
const METADATA_GUID: &str = "8B7CA206-4790-4B9A-B8FE-575F050F886E";
const FILE_PARAMETERS: &str = "CAA16737-FA36-4D43-B3B6-33F0AA44E76B";
const VIRTUAL_DISK_SIZE: &str = "2FA54224-CD1B-4876-B211-5DBED83BF4B8";
const LOGICAL_SECTOR_SIZE: &str = "8141BF1D-A96F-4709-BA47-F233A8FAAB5F";

/// A GUID as stored (first three fields little-endian), printed the usual way.
fn guid(b: &[u8]) -> String {
    let g = |r: std::ops::Range<usize>| b.get(r).unwrap_or_default().to_vec();
    let rev = |mut v: Vec<u8>| {
        v.reverse();
        v
    };
    format!(
        "{}-{}-{}-{}-{}",
        hex::encode(rev(g(0..4))),
        hex::encode(rev(g(4..6))),
        hex::encode(rev(g(6..8))),
        hex::encode(g(8..10)),
        hex::encode(g(10..16))
    )
    .to_uppercase()
}

fn bad(m: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m)
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Header {
    pub virtual_size: u64,
    pub block_size: u64,
    pub logical_sector_size: u32,
    /// The header names a log: writes it holds were not applied (the image was not closed).
    pub log_pending: bool,
}

pub struct Vhdx<D: Disk> {
    file: D,
    pub header: Header,
    /// Payload block -> byte offset in the file (`None`: zeros).
    blocks: Vec<Option<u64>>,
}

pub fn is_vhdx(b: &[u8]) -> bool {
    b.starts_with(b"vhdxfile")
}

impl<D: Disk> Vhdx<D> {
    pub fn open(mut file: D) -> std::io::Result<Vhdx<D>> {
        let id = read_vec(&mut file, 0, 8)?;
        if !is_vhdx(&id) {
            return Err(bad("no vhdxfile identifier".into()));
        }
        // The current header: the valid one with the higher sequence number.
        let mut current: Option<(u64, Vec<u8>)> = None;
        for at in [KIB64, 2 * KIB64] {
            if let Ok(h) = read_vec(&mut file, at, 4096) {
                if h.starts_with(b"head") && current.as_ref().is_none_or(|(s, _)| le64(&h, 8) > *s) {
                    current = Some((le64(&h, 8), h));
                }
            }
        }
        let (_, head) = current.ok_or_else(|| bad("no VHDX header".into()))?;
        let log_pending = head.get(48..64).is_some_and(|g| g.iter().any(|b| *b != 0));
        let regions = read_vec(&mut file, 3 * KIB64, 4096)?;
        if !regions.starts_with(b"regi") {
            return Err(bad("no VHDX region table".into()));
        }
        let (mut bat, mut meta) = (None, None);
        for i in 0..le32(&regions, 8).min(2047) as usize {
            let e = regions.get(16 + i * 32..16 + (i + 1) * 32).unwrap_or_default();
            let (g, off, len) = (guid(e), le64(e, 16), u64::from(le32(e, 24)));
            if g == BAT_GUID {
                bat = Some((off, len));
            } else if g == METADATA_GUID {
                meta = Some((off, len));
            }
        }
        let (Some((bat_at, bat_len)), Some((meta_at, meta_len))) = (bat, meta) else {
            return Err(bad("VHDX region table without BAT or metadata".into()));
        };
        let m = read_vec(&mut file, meta_at, meta_len.min(1 << 20) as usize)?;
        if !m.starts_with(b"metadata") {
            return Err(bad("VHDX metadata table without its signature".into()));
        }
        let item = |name: &str| -> Option<&[u8]> {
            (0..usize::from(le16(&m, 10)).min(2047)).find_map(|i| {
                let e = m.get(32 + i * 32..32 + (i + 1) * 32)?;
                (guid(e) == name).then(|| {
                    let (off, len) = (le32(e, 16) as usize, le32(e, 20) as usize);
                    m.get(off..off.checked_add(len)?)
                })?
            })
        };
        let params = item(FILE_PARAMETERS).ok_or_else(|| bad("VHDX without file parameters".into()))?;
        let (block, flags) = (u64::from(le32(params, 0)), le32(params, 4));
        if flags & 2 != 0 {
            return Err(bad("VHDX differencing disk: its parent is needed".into()));
        }
        let virtual_size = item(VIRTUAL_DISK_SIZE).map_or(0, |v| le64(v, 0));
        let sector = item(LOGICAL_SECTOR_SIZE).map_or(512, |v| le32(v, 0));
        if !(1 << 20..=256 << 20).contains(&block) || virtual_size > MAX_SIZE || !matches!(sector, 512 | 4096) {
            return Err(bad(format!("VHDX of {virtual_size} bytes, blocks of {block}, sectors of {sector}")));
        }
        let chunk_ratio = ((1u64 << 23) * u64::from(sector)) / block;
        let payload = virtual_size.div_ceil(block);
        let entries = (payload + payload.saturating_sub(1) / chunk_ratio.max(1) + 1).min(bat_len / 8);
        if entries > MAX_BAT {
            return Err(bad(format!("VHDX BAT of {entries} entries")));
        }
        let raw = read_vec(&mut file, bat_at, (entries * 8) as usize)?;
        let blocks = (0..payload)
            .map(|i| {
                let e = le64(&raw, ((i + i / chunk_ratio.max(1)) * 8) as usize);
                matches!(e & 7, FULLY_PRESENT | PARTIALLY_PRESENT).then_some((e >> 20) << 20)
            })
            .collect();
        let header = Header { virtual_size, block_size: block, logical_sector_size: sector, log_pending };
        Ok(Vhdx { file, header, blocks })
    }
}

impl<D: Disk> Disk for Vhdx<D> {
    fn size(&self) -> u64 {
        self.header.virtual_size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        check(offset, buf.len(), self.header.virtual_size)?;
        read_blocks(&mut self.file, &self.blocks, self.header.block_size, offset, buf)
    }
}
