//! qcow2 (QEMU copy-on-write v2 and v3): the guest's view of a qcow2 file, read-only.
//!
//! Layout, from QEMU's `docs/interop/qcow2.txt`: a big-endian header; a two-level table (L1
//! entries point at L2 tables, L2 entries at data clusters) maps guest clusters to host
//! clusters; an L2 entry may instead describe a compressed cluster (deflate, or zstd when the v3
//! header says `compression_type = 1`), or say "all zeros" (v3). Internal snapshots each have
//! their own L1 table; a snapshot taken with the VM running also holds the VM state (its RAM)
//! in the clusters just past the end of the disk, in that snapshot's table.
//!
//! Written here, not taken from a crate: the `qcow` crate reads no zstd clusters and no
//! snapshot VM state, and panics on some malformed tables; here every offset and length from the
//! file is checked before use, and the worst a hostile file gets is an error naming the field.
//!
//! # Bounds
//! The virtual size is capped at [`MAX_VIRTUAL_SIZE`]; tables are read only as far as they are
//! used, L1 tables up to [`MAX_L1_ENTRIES`]; an L2 cache of at most [`L2_CACHE_BYTES`]; a
//! compressed cluster is read up to twice the cluster size and inflates to exactly one cluster
//! at most (a bomb stops there). A table pointing at itself or past the end is garbage data or
//! an error, never a loop: reading walks a fixed two levels.

use std::io::{self, Read};

use super::disk::field::{be16, be32, be64};
use super::disk::{check, read_vec, Disk};

/// Largest virtual size accepted: 64 PiB, well past any real disk (qemu's limit is 2^61 bytes
/// of table-addressable space, but nobody uploads that).
pub const MAX_VIRTUAL_SIZE: u64 = 1 << 56;
/// L1 entries read at most (256 MiB of table).
pub const MAX_L1_ENTRIES: u64 = 1 << 25;
/// Bytes of L2 tables cached.
pub const L2_CACHE_BYTES: usize = 16 << 20;
/// Bytes of inflated compressed clusters cached.
pub const INFLATED_CACHE_BYTES: usize = 8 << 20;
/// Internal snapshots listed at most (QEMU's own limit).
pub const MAX_SNAPSHOTS: u32 = 65_536;

const MAGIC: [u8; 4] = *b"QFI\xfb";
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2_COMPRESSED: u64 = 1 << 62;
const L2_ZERO: u64 = 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;

#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    #[error("not a qcow2 image (no QFI\\xfb magic)")]
    NotQcow2,
    #[error("qcow2 feature not supported: {0}")]
    Unsupported(String),
    #[error("qcow2 image corrupt: {0}")]
    Corrupt(String),
    #[error("reading the qcow2 file: {0}")]
    Io(#[from] io::Error),
}

/// How compressed clusters are compressed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Deflate,
    Zstd,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    pub virtual_size: u64,
    pub backing_file: Option<String>,
    pub compression: Compression,
    pub dirty: bool,
    /// v3 incompatible feature bits (dirty, corrupt, compression type...).
    pub incompatible_features: u64,
    #[serde(skip)]
    l1_offset: u64,
}

/// One internal snapshot, as `qemu-img snapshot -l` lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Snapshot {
    pub id: String,
    pub name: String,
    /// Seconds since the epoch when it was taken.
    pub date: u64,
    /// Guest run time at the snapshot, nanoseconds.
    pub vm_clock_ns: u64,
    /// Bytes of saved VM state (its RAM and devices); 0 for a disk-only snapshot.
    pub vm_state_size: u64,
    pub disk_size: u64,
    #[serde(skip)]
    l1_offset: u64,
    #[serde(skip)]
    l1_size: u64,
}

/// Which L1 table a read goes through.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Table {
    Active,
    Snapshot(usize),
}

/// A qcow2 image opened for reading.
pub struct Qcow2<D: Disk> {
    file: D,
    pub header: Header,
    pub snapshots: Vec<Snapshot>,
    l1: Vec<u64>,
    snapshot_l1: Vec<Option<Vec<u64>>>,
    l2_cache: Vec<(u64, Vec<u64>)>,
    /// The last decompressed cluster: (its L2 entry, its bytes).
    /// Recently inflated clusters (L2 entry, bytes), newest last, at most [`INFLATED_CACHE_BYTES`]:
    /// filesystem metadata is read again and again from the same few clusters.
    inflated: Vec<(u64, Vec<u8>)>,
    /// Reads that fell on unallocated clusters of an image whose backing file is missing
    /// (zeros given).
    pub backing_reads: u64,
    /// The backing image's guest view, when it was found ([`Qcow2::set_backing`]).
    backing: Option<Box<dyn Disk>>,
}

/// Whether `b` starts like a qcow2 image.
pub fn is_qcow2(b: &[u8]) -> bool {
    b.starts_with(&MAGIC)
}

impl<D: Disk> Qcow2<D> {
    pub fn open(mut file: D) -> Result<Qcow2<D>, Qcow2Error> {
        let len = file.size().min(4096) as usize;
        let h = read_vec(&mut file, 0, len)?;
        if !is_qcow2(&h) || h.len() < 72 {
            return Err(Qcow2Error::NotQcow2);
        }
        let version = be32(&h, 4);
        if version != 2 && version != 3 {
            return Err(Qcow2Error::Unsupported(format!("version {version}")));
        }
        let cluster_bits = be32(&h, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(Qcow2Error::Corrupt(format!("cluster_bits {cluster_bits} outside 9..21")));
        }
        let virtual_size = be64(&h, 24);
        if virtual_size > MAX_VIRTUAL_SIZE {
            return Err(Qcow2Error::Corrupt(format!(
                "virtual size {virtual_size} bytes claimed, above the {MAX_VIRTUAL_SIZE}-byte limit"
            )));
        }
        if be32(&h, 32) != 0 {
            return Err(Qcow2Error::Unsupported("encrypted image".into()));
        }
        let (mut incompatible, mut compression, mut dirty) = (0u64, Compression::Deflate, false);
        if version == 3 {
            incompatible = be64(&h, 72);
            dirty = incompatible & 1 != 0;
            let header_length = be32(&h, 100);
            if incompatible & INCOMPAT_DATA_FILE != 0 {
                return Err(Qcow2Error::Unsupported("external data file".into()));
            }
            if incompatible & INCOMPAT_EXTL2 != 0 {
                return Err(Qcow2Error::Unsupported("extended L2 entries (subclusters)".into()));
            }
            if incompatible & INCOMPAT_COMPRESSION != 0 && header_length > 104 {
                compression = match h.get(104) {
                    Some(0) => Compression::Deflate,
                    Some(1) => Compression::Zstd,
                    other => return Err(Qcow2Error::Unsupported(format!("compression type {other:?}"))),
                };
            }
            if incompatible & !0x1f != 0 {
                return Err(Qcow2Error::Unsupported(format!("incompatible features {incompatible:#x}")));
            }
        }
        let cluster = 1u64 << cluster_bits;
        let l2_entries = cluster / 8;
        let needed_l1 = virtual_size.div_ceil(cluster * l2_entries);
        let l1_size = u64::from(be32(&h, 36));
        if l1_size < needed_l1 || l1_size > MAX_L1_ENTRIES {
            return Err(Qcow2Error::Corrupt(format!("L1 table of {l1_size} entries for {needed_l1} needed")));
        }
        let header = Header {
            version,
            cluster_bits,
            virtual_size,
            backing_file: None,
            compression,
            dirty,
            incompatible_features: incompatible,
            l1_offset: be64(&h, 40),
        };
        let mut q = Qcow2 {
            file,
            header,
            snapshots: Vec::new(),
            l1: Vec::new(),
            snapshot_l1: Vec::new(),
            l2_cache: Vec::new(),
            inflated: Vec::new(),
            backing_reads: 0,
            backing: None,
        };
        q.l1 = q.read_table(q.header.l1_offset, needed_l1, "L1 table")?;
        let (bf_off, bf_len) = (be64(&h, 8), be32(&h, 16));
        if bf_off != 0 && bf_len > 0 {
            if bf_len > 1023 {
                return Err(Qcow2Error::Corrupt(format!("backing file name of {bf_len} bytes")));
            }
            let name = read_vec(&mut q.file, bf_off, bf_len as usize)?;
            q.header.backing_file = Some(String::from_utf8_lossy(&name).into_owned());
        }
        let (nb_snapshots, snapshots_offset) = (be32(&h, 60), be64(&h, 64));
        if nb_snapshots > MAX_SNAPSHOTS {
            return Err(Qcow2Error::Corrupt(format!("{nb_snapshots} snapshots claimed")));
        }
        q.snapshots = q.read_snapshots(snapshots_offset, nb_snapshots)?;
        q.snapshot_l1 = vec![None; q.snapshots.len()];
        Ok(q)
    }

    fn cluster_size(&self) -> u64 {
        1 << self.header.cluster_bits
    }

    /// `n` big-endian u64 entries at `offset`.
    fn read_table(&mut self, offset: u64, n: u64, what: &str) -> Result<Vec<u64>, Qcow2Error> {
        let bytes = n.checked_mul(8).filter(|b| *b <= MAX_L1_ENTRIES * 8);
        let Some(bytes) = bytes else { return Err(Qcow2Error::Corrupt(format!("{what} of {n} entries"))) };
        check(offset, bytes as usize, self.file.size())
            .map_err(|_| Qcow2Error::Corrupt(format!("{what} at {offset} ({n} entries) past the end of the file")))?;
        let raw = read_vec(&mut self.file, offset, bytes as usize)?;
        Ok(raw.chunks_exact(8).map(|c| be64(c, 0)).collect())
    }

    fn read_snapshots(&mut self, mut at: u64, n: u32) -> Result<Vec<Snapshot>, Qcow2Error> {
        let mut out = Vec::new();
        for i in 0..n {
            let bad = |m: &str| Qcow2Error::Corrupt(format!("snapshot {i}: {m}"));
            let fixed = read_vec(&mut self.file, at, 40).map_err(|_| bad("header past the end"))?;
            let (id_len, name_len) = (usize::from(be16(&fixed, 12)), usize::from(be16(&fixed, 14)));
            let extra_len = be32(&fixed, 36) as usize;
            if extra_len > 1024 {
                return Err(bad("extra data too long"));
            }
            let rest = read_vec(&mut self.file, at + 40, extra_len + id_len + name_len)
                .map_err(|_| bad("names past the end"))?;
            let extra = rest.get(..extra_len).unwrap_or_default();
            let mut vm_state_size = u64::from(be32(&fixed, 32));
            if extra.len() >= 8 {
                vm_state_size = be64(extra, 0);
            }
            let disk_size = if extra.len() >= 16 { be64(extra, 8) } else { self.header.virtual_size };
            let text =
                |r: std::ops::Range<usize>| String::from_utf8_lossy(rest.get(r).unwrap_or_default()).into_owned();
            out.push(Snapshot {
                id: text(extra_len..extra_len + id_len),
                name: text(extra_len + id_len..extra_len + id_len + name_len),
                date: u64::from(be32(&fixed, 16)),
                vm_clock_ns: be64(&fixed, 24),
                vm_state_size,
                disk_size,
                l1_offset: be64(&fixed, 0),
                l1_size: u64::from(be32(&fixed, 8)),
            });
            // Each entry is padded to a multiple of 8 bytes.
            at += (40 + rest.len() as u64).div_ceil(8) * 8;
        }
        Ok(out)
    }

    fn l1_entry(&mut self, t: Table, index: u64) -> Result<u64, Qcow2Error> {
        let table = match t {
            Table::Active => &self.l1,
            Table::Snapshot(s) => {
                if self.snapshot_l1.get(s).is_some_and(Option::is_none) {
                    let snap =
                        self.snapshots.get(s).cloned().ok_or_else(|| Qcow2Error::Corrupt("no snapshot".into()))?;
                    if snap.l1_size > MAX_L1_ENTRIES {
                        return Err(Qcow2Error::Corrupt(format!(
                            "snapshot {}: L1 of {} entries",
                            snap.id, snap.l1_size
                        )));
                    }
                    let t = self.read_table(snap.l1_offset, snap.l1_size, "snapshot L1 table")?;
                    if let Some(slot) = self.snapshot_l1.get_mut(s) {
                        *slot = Some(t);
                    }
                }
                match self.snapshot_l1.get(s) {
                    Some(Some(t)) => t,
                    _ => return Err(Qcow2Error::Corrupt("no snapshot".into())),
                }
            }
        };
        Ok(table.get(index as usize).copied().unwrap_or(0))
    }

    fn l2_entry(&mut self, l2_offset: u64, index: u64) -> Result<u64, Qcow2Error> {
        if let Some((_, t)) = self.l2_cache.iter().find(|(o, _)| *o == l2_offset) {
            return Ok(t.get(index as usize).copied().unwrap_or(0));
        }
        let n = self.cluster_size() / 8;
        let t = self.read_table(l2_offset, n, "L2 table")?;
        let e = t.get(index as usize).copied().unwrap_or(0);
        if (self.l2_cache.len() + 1) * self.cluster_size() as usize > L2_CACHE_BYTES {
            self.l2_cache.remove(0);
        }
        self.l2_cache.push((l2_offset, t));
        Ok(e)
    }

    /// Fills `buf` from guest offset `offset`, through table `t`, one cluster at a time.
    fn read_via(&mut self, t: Table, mut offset: u64, buf: &mut [u8], limit: u64) -> Result<(), Qcow2Error> {
        check(offset, buf.len(), limit)?;
        let cluster = self.cluster_size();
        let l2_entries = cluster / 8;
        let mut done = 0usize;
        while done < buf.len() {
            let in_cluster = offset % cluster;
            let n = ((cluster - in_cluster) as usize).min(buf.len() - done);
            let dst = buf.get_mut(done..done + n).unwrap_or_default();
            let index = offset / cluster;
            let l1e = self.l1_entry(t, index / l2_entries)?;
            let l2_offset = l1e & OFFSET_MASK;
            let l2e = if l2_offset == 0 { 0 } else { self.l2_entry(l2_offset, index % l2_entries)? };
            if l2e & L2_COMPRESSED != 0 {
                let data = self.inflate(l2e)?;
                dst.copy_from_slice(data.get(in_cluster as usize..in_cluster as usize + n).unwrap_or_default());
            } else {
                let host = l2e & OFFSET_MASK;
                let zero = self.header.version >= 3 && l2e & L2_ZERO != 0;
                if host == 0 && !zero && t == Table::Active && self.backing.is_some() {
                    // Not in this image: what the backing image holds there (zeros past its end).
                    dst.fill(0);
                    if let Some(b) = self.backing.as_mut() {
                        let avail = b.size().saturating_sub(offset).min(n as u64) as usize;
                        if avail > 0 {
                            b.read_at(offset, dst.get_mut(..avail).unwrap_or_default())?;
                        }
                    }
                } else if zero || host == 0 {
                    if host == 0 && !zero && self.header.backing_file.is_some() {
                        self.backing_reads += 1;
                    }
                    dst.fill(0);
                } else {
                    self.file.read_at(host + in_cluster, dst).map_err(|e| {
                        Qcow2Error::Corrupt(format!("data cluster at {host} for guest offset {offset}: {e}"))
                    })?;
                }
            }
            done += n;
            offset += n as u64;
        }
        Ok(())
    }

    /// The cluster a compressed L2 entry describes, inflated (cached: reads are sequential).
    fn inflate(&mut self, l2e: u64) -> Result<&[u8], Qcow2Error> {
        if let Some(i) = self.inflated.iter().position(|(e, _)| *e == l2e) {
            // Newest last: a hit moves to the end, so eviction takes the least recently used.
            let hit = self.inflated.remove(i);
            self.inflated.push(hit);
        } else {
            let cluster = self.cluster_size();
            let x = 62 - (self.header.cluster_bits - 8);
            let host = l2e & ((1u64 << x) - 1);
            let sectors = (l2e >> x) & ((1u64 << (self.header.cluster_bits - 8)) - 1);
            let csize = ((sectors + 1) * 512 - (host & 511)).min(self.file.size().saturating_sub(host));
            let raw = read_vec(&mut self.file, host, csize as usize)
                .map_err(|e| Qcow2Error::Corrupt(format!("compressed cluster at {host}: {e}")))?;
            let mut out = Vec::with_capacity(cluster as usize);
            let got = match self.header.compression {
                Compression::Deflate => {
                    flate2::read::DeflateDecoder::new(raw.as_slice()).take(cluster).read_to_end(&mut out)
                }
                Compression::Zstd => ruzstd::decoding::StreamingDecoder::new(raw.as_slice())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
                    .and_then(|d| d.take(cluster).read_to_end(&mut out)),
            };
            match got {
                Ok(n) if n as u64 == cluster => {}
                Ok(n) => {
                    return Err(Qcow2Error::Corrupt(format!(
                        "compressed cluster at {host} inflates to {n} bytes, not {cluster}"
                    )))
                }
                Err(e) => return Err(Qcow2Error::Corrupt(format!("compressed cluster at {host}: {e}"))),
            }
            if (self.inflated.len() + 1) * cluster as usize > INFLATED_CACHE_BYTES && !self.inflated.is_empty() {
                self.inflated.remove(0);
            }
            self.inflated.push((l2e, out));
        }
        Ok(self.inflated.last().map(|(_, d)| d.as_slice()).unwrap_or_default())
    }

    /// Reads of clusters this image does not hold go to `backing` (the backing file's guest view).
    pub fn set_backing(&mut self, backing: Box<dyn Disk>) {
        self.backing = Some(backing);
    }

    /// Where a snapshot's VM state starts in its guest address space: the first L1 entry past
    /// the disk (QEMU's `qcow2_vm_state_offset`).
    pub fn vm_state_offset(&self, snapshot: &Snapshot) -> u64 {
        let per_l1 = self.cluster_size() * (self.cluster_size() / 8);
        snapshot.disk_size.div_ceil(per_l1) * per_l1
    }

    /// Reads `buf` from snapshot `s`'s VM state at `offset`.
    pub fn read_vm_state(&mut self, s: usize, offset: u64, buf: &mut [u8]) -> Result<(), Qcow2Error> {
        let snap = self.snapshots.get(s).cloned().ok_or_else(|| Qcow2Error::Corrupt(format!("no snapshot {s}")))?;
        check(offset, buf.len(), snap.vm_state_size)?;
        let base = self.vm_state_offset(&snap);
        self.read_via(Table::Snapshot(s), base + offset, buf, u64::MAX)
    }
}

impl<D: Disk> Disk for Qcow2<D> {
    fn size(&self) -> u64 {
        self.header.virtual_size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let size = self.header.virtual_size;
        self.read_via(Table::Active, offset, buf, size).map_err(|e| match e {
            Qcow2Error::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        })
    }
}
