//! VMDK sparse extents (VMware's "hosted sparse extent" format): monolithicSparse and
//! streamOptimized (the form OVA appliances carry), read-only.
//!
//! Layout, from VMware's Virtual Disk Format 5.0: a little-endian header (`KDMV`) gives the
//! capacity and grain size in sectors and where the grain directory is; directory entries point
//! at grain tables, whose entries point at grains (0: never written, 1: zeros). A
//! streamOptimized extent writes its directory last, says so with `gdOffset = -1`, and keeps the
//! real header in a footer 1024 bytes before the end; its grains are deflate-compressed, each
//! behind a 12-byte marker (its LBA and compressed size).

use std::io::Read;

use super::disk::field::{le32, le64};
use super::disk::{read_vec, Disk};

const MAGIC: &[u8; 4] = b"KDMV";
const SECTOR: u64 = 512;
const GD_AT_END: u64 = u64::MAX;
const FLAG_COMPRESSED: u32 = 1 << 16;
/// Grain directory entries read at most (covers 2 PiB at the default 64 KiB grains).
const MAX_GD_ENTRIES: u64 = 1 << 24;
/// Largest grain accepted: 16 MiB (the default is 64 KiB).
const MAX_GRAIN: u64 = 16 << 20;
/// Largest virtual size accepted.
const MAX_CAPACITY: u64 = 1 << 56;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Header {
    pub version: u32,
    pub capacity: u64,
    pub grain_size: u64,
    pub compressed: bool,
    pub stream_optimized: bool,
    /// The embedded text descriptor (createType, extents, the disk's UUID...).
    pub descriptor: String,
}

pub struct Vmdk<D: Disk> {
    file: D,
    pub header: Header,
    gd: Vec<u32>,
    gt_entries: u64,
    gt_cache: Option<(u32, Vec<u32>)>,
    grain_cache: Option<(u64, Vec<u8>)>,
}

pub fn is_vmdk(b: &[u8]) -> bool {
    b.starts_with(MAGIC)
}

fn bad(m: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m)
}

impl<D: Disk> Vmdk<D> {
    pub fn open(mut file: D) -> std::io::Result<Vmdk<D>> {
        let mut h = read_vec(&mut file, 0, 512)?;
        if !is_vmdk(&h) {
            return Err(bad("not a VMDK sparse extent".into()));
        }
        if le64(&h, 56) == GD_AT_END {
            // streamOptimized: the footer's copy of the header is the one with the directory.
            let size = file.size();
            if size < 1536 {
                return Err(bad("streamOptimized VMDK without a footer".into()));
            }
            let footer = read_vec(&mut file, size - 1024, 512)?;
            if !is_vmdk(&footer) {
                return Err(bad("streamOptimized VMDK footer has no KDMV magic".into()));
            }
            h = footer;
        }
        let (capacity, grain_size) = (le64(&h, 12), le64(&h, 20));
        let gt_entries = u64::from(le32(&h, 44));
        if capacity.saturating_mul(SECTOR) > MAX_CAPACITY {
            return Err(bad(format!("capacity of {capacity} sectors, above the limit")));
        }
        // Checked: a grain of 2^55 sectors would wrap to 0 bytes (fuzz: a division by zero).
        if grain_size == 0
            || !grain_size.is_power_of_two()
            || grain_size.checked_mul(SECTOR).is_none_or(|g| g > MAX_GRAIN)
        {
            return Err(bad(format!("grain of {grain_size} sectors")));
        }
        if gt_entries == 0 || gt_entries > 1 << 16 {
            return Err(bad(format!("{gt_entries} entries per grain table")));
        }
        let flags = le32(&h, 8);
        let (desc_off, desc_len) = (le64(&h, 28), le64(&h, 36));
        let descriptor = if desc_off > 0 && desc_len > 0 && desc_len <= 2048 {
            let d =
                read_vec(&mut file, desc_off.saturating_mul(SECTOR), (desc_len * SECTOR) as usize).unwrap_or_default();
            String::from_utf8_lossy(&d).trim_end_matches('\0').to_string()
        } else {
            String::new()
        };
        let header = Header {
            version: le32(&h, 4),
            capacity,
            grain_size,
            compressed: flags & FLAG_COMPRESSED != 0
                && u16::from_le_bytes([h.get(77).copied().unwrap_or(0), h.get(78).copied().unwrap_or(0)]) == 1,
            stream_optimized: descriptor.contains("streamOptimized"),
            descriptor,
        };
        let grains = capacity.div_ceil(grain_size);
        let gd_len = grains.div_ceil(gt_entries);
        if gd_len > MAX_GD_ENTRIES {
            return Err(bad(format!("grain directory of {gd_len} entries")));
        }
        let gd_off = le64(&h, 56);
        let raw = read_vec(&mut file, gd_off.saturating_mul(SECTOR), (gd_len * 4) as usize)
            .map_err(|e| bad(format!("grain directory at sector {gd_off}: {e}")))?;
        let gd = raw.chunks_exact(4).map(|c| le32(c, 0)).collect();
        Ok(Vmdk { file, header, gd, gt_entries, gt_cache: None, grain_cache: None })
    }

    fn grain_size_bytes(&self) -> u64 {
        self.header.grain_size * SECTOR
    }

    /// The grain table entry of grain `g`.
    fn gte(&mut self, g: u64) -> std::io::Result<u32> {
        let gde = self.gd.get((g / self.gt_entries) as usize).copied().unwrap_or(0);
        if gde == 0 {
            return Ok(0);
        }
        if self.gt_cache.as_ref().is_none_or(|(at, _)| *at != gde) {
            let raw = read_vec(&mut self.file, u64::from(gde) * SECTOR, (self.gt_entries * 4) as usize)
                .map_err(|e| bad(format!("grain table at sector {gde}: {e}")))?;
            self.gt_cache = Some((gde, raw.chunks_exact(4).map(|c| le32(c, 0)).collect()));
        }
        Ok(self.gt_cache.as_ref().and_then(|(_, t)| t.get((g % self.gt_entries) as usize).copied()).unwrap_or(0))
    }

    /// Grain `g`'s bytes, inflated when compressed (cached: reads are sequential).
    fn grain(&mut self, g: u64, sector: u32) -> std::io::Result<&[u8]> {
        let size = self.grain_size_bytes();
        if self.grain_cache.as_ref().is_none_or(|(at, _)| *at != g) {
            let at = u64::from(sector) * SECTOR;
            let data = if self.header.compressed {
                let marker = read_vec(&mut self.file, at, 12)?;
                let clen = u64::from(le32(&marker, 8));
                if clen > 2 * size + 1024 {
                    return Err(bad(format!("compressed grain at sector {sector} claims {clen} bytes")));
                }
                let raw = read_vec(&mut self.file, at + 12, clen as usize)?;
                let mut out = Vec::with_capacity(size as usize);
                flate2::read::ZlibDecoder::new(raw.as_slice())
                    .take(size)
                    .read_to_end(&mut out)
                    .map_err(|e| bad(format!("compressed grain at sector {sector}: {e}")))?;
                // The last grain of a disk may be short; the rest reads as zeros.
                out.resize(size as usize, 0);
                out
            } else {
                read_vec(&mut self.file, at, size as usize)?
            };
            self.grain_cache = Some((g, data));
        }
        Ok(self.grain_cache.as_ref().map(|(_, d)| d.as_slice()).unwrap_or_default())
    }
}

impl<D: Disk> Disk for Vmdk<D> {
    fn size(&self) -> u64 {
        self.header.capacity * SECTOR
    }

    fn read_at(&mut self, mut offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        super::disk::check(offset, buf.len(), self.size())?;
        let gs = self.grain_size_bytes();
        let mut done = 0usize;
        while done < buf.len() {
            let (g, within) = (offset / gs, offset % gs);
            let n = ((gs - within) as usize).min(buf.len() - done);
            let sector = self.gte(g)?;
            let dst = buf.get_mut(done..done + n).unwrap_or_default();
            if sector <= 1 {
                dst.fill(0);
            } else {
                let data = self.grain(g, sector)?;
                // A grain that inflates short reads as zeros past its end.
                let have = data.get(within as usize..).unwrap_or_default();
                let k = have.len().min(n);
                dst[..k].copy_from_slice(&have[..k]);
                dst[k..].fill(0);
            }
            done += n;
            offset += n as u64;
        }
        Ok(())
    }
}
