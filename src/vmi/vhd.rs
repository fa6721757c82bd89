//! VHD (Microsoft Virtual Hard Disk, what qemu calls `vpc`) fixed and dynamic, and VDI
//! (VirtualBox) fixed and dynamic: both a header and a table of fixed-size blocks.
//!
//! VHD, from the VHD Image Format Specification: a 512-byte big-endian footer (`conectix`) at the
//! end (and, for dynamic disks, a copy at the start) gives the size and the type; a dynamic disk
//! has a header (`cxsparse`) pointing at the block allocation table, whose entries give each
//! block's sector, where a sector bitmap precedes the block's data; `0xFFFFFFFF`: not allocated.
//! A differencing disk needs its parent and is reported, not read.
//!
//! VDI, from VirtualBox's `VDICore.h`: a text banner, signature `0xBEDA107F` at 0x40, then the
//! header with the block map's and the data's offsets, the disk size and the block size; map
//! entries are block numbers in the data area, `0xFFFFFFFF` (never written) and `0xFFFFFFFE`
//! (zeroed) read as zeros.

use super::disk::field::{be32, be64, le32, le64};
use super::disk::{check, read_blocks, read_vec, Disk};

const SECTOR: u64 = 512;
const UNALLOCATED: u32 = 0xffff_ffff;
const VDI_ZERO: u32 = 0xffff_fffe;
const VDI_SIGNATURE: u32 = 0xbeda_107f;
/// Block table entries read at most.
const MAX_BLOCKS: u64 = 1 << 24;
/// Largest block accepted (VHD uses 2 MiB, VDI 1 MiB).
const MAX_BLOCK: u64 = 64 << 20;
const MAX_SIZE: u64 = 1 << 56;

fn bad(m: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m)
}

/// Which format and how its blocks are found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Header {
    /// `vhd` or `vdi`.
    pub format: &'static str,
    /// `fixed` or `dynamic`.
    pub kind: &'static str,
    pub virtual_size: u64,
    pub block_size: u64,
}

/// A VHD or VDI image opened for reading.
pub struct Blocked<D: Disk> {
    file: D,
    pub header: Header,
    /// For dynamic images: each block's byte offset in the file (`None`: zeros).
    table: Vec<Option<u64>>,
}

pub fn is_vhd_footer(b: &[u8]) -> bool {
    b.starts_with(b"conectix")
}

pub fn is_vdi(b: &[u8]) -> bool {
    le32(b, 0x40) == VDI_SIGNATURE
}

impl<D: Disk> Blocked<D> {
    /// A VHD: its footer is the last 512 bytes (511 for some old writers).
    pub fn open_vhd(mut file: D) -> std::io::Result<Blocked<D>> {
        let size = file.size();
        if size < SECTOR {
            return Err(bad("VHD shorter than its footer".into()));
        }
        let mut footer = read_vec(&mut file, size - SECTOR, SECTOR as usize)?;
        if !is_vhd_footer(&footer) {
            footer = read_vec(&mut file, 0, SECTOR as usize)?;
            if !is_vhd_footer(&footer) {
                return Err(bad("no VHD footer (conectix)".into()));
            }
        }
        let virtual_size = be64(&footer, 48);
        if virtual_size > MAX_SIZE {
            return Err(bad(format!("VHD of {virtual_size} bytes claimed")));
        }
        match be32(&footer, 60) {
            2 => Ok(Blocked {
                file,
                header: Header { format: "vhd", kind: "fixed", virtual_size, block_size: 0 },
                table: Vec::new(),
            }),
            3 => {
                let dyn_at = be64(&footer, 16);
                let h = read_vec(&mut file, dyn_at, 1024).map_err(|e| bad(format!("VHD dynamic header: {e}")))?;
                if !h.starts_with(b"cxsparse") {
                    return Err(bad("VHD dynamic header without cxsparse".into()));
                }
                let (bat_at, entries, block) = (be64(&h, 16), u64::from(be32(&h, 28)), u64::from(be32(&h, 32)));
                if block == 0 || block > MAX_BLOCK || block % SECTOR != 0 || entries > MAX_BLOCKS {
                    return Err(bad(format!("VHD with {entries} blocks of {block} bytes")));
                }
                let needed = virtual_size.div_ceil(block).min(entries);
                let raw = read_vec(&mut file, bat_at, (needed * 4) as usize)
                    .map_err(|e| bad(format!("VHD block table: {e}")))?;
                // Each block's data follows its sector bitmap (one bit per sector, padded to a sector).
                let bitmap = (block / SECTOR).div_ceil(8).div_ceil(SECTOR) * SECTOR;
                let table = raw
                    .chunks_exact(4)
                    .map(|c| be32(c, 0))
                    .map(|s| (s != UNALLOCATED).then(|| u64::from(s) * SECTOR + bitmap))
                    .collect();
                Ok(Blocked {
                    file,
                    header: Header { format: "vhd", kind: "dynamic", virtual_size, block_size: block },
                    table,
                })
            }
            4 => Err(bad("VHD differencing disk: its parent is needed".into())),
            t => Err(bad(format!("VHD disk type {t}"))),
        }
    }

    pub fn open_vdi(mut file: D) -> std::io::Result<Blocked<D>> {
        let h = read_vec(&mut file, 0, 512)?;
        if !is_vdi(&h) {
            return Err(bad("no VDI signature".into()));
        }
        let (kind, bmap_at, data_at) = (le32(&h, 0x4c), u64::from(le32(&h, 0x154)), u64::from(le32(&h, 0x158)));
        let (virtual_size, block, extra, blocks) =
            (le64(&h, 0x170), u64::from(le32(&h, 0x178)), u64::from(le32(&h, 0x17c)), u64::from(le32(&h, 0x180)));
        if virtual_size > MAX_SIZE || block == 0 || block > MAX_BLOCK || blocks > MAX_BLOCKS {
            return Err(bad(format!("VDI of {virtual_size} bytes in {blocks} blocks of {block}")));
        }
        let needed = virtual_size.div_ceil(block).min(blocks);
        let raw =
            read_vec(&mut file, bmap_at, (needed * 4) as usize).map_err(|e| bad(format!("VDI block map: {e}")))?;
        let table = raw
            .chunks_exact(4)
            .map(|c| le32(c, 0))
            .map(|b| (b != UNALLOCATED && b != VDI_ZERO).then(|| data_at + u64::from(b) * (block + extra) + extra))
            .collect();
        let kind = if kind == 2 { "fixed" } else { "dynamic" };
        Ok(Blocked { file, header: Header { format: "vdi", kind, virtual_size, block_size: block }, table })
    }
}

impl<D: Disk> Disk for Blocked<D> {
    fn size(&self) -> u64 {
        self.header.virtual_size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        check(offset, buf.len(), self.header.virtual_size)?;
        if self.header.block_size == 0 {
            // A fixed VHD: the data from byte 0, then the footer.
            return self.file.read_at(offset, buf);
        }
        read_blocks(&mut self.file, &self.table, self.header.block_size, offset, buf)
    }
}
