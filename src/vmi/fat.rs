//! FAT12/16/32 (EFI system partitions, small data disks) through the `fatfs` crate.
//!
//! Why `fatfs`: the maintained pure-Rust FAT reader (rafalh/rust-fatfs), with long file names,
//! over any `Read + Write + Seek`. It is a read-write library: it is handed a view whose writes
//! fail, so nothing can ever be written to the evidence, and it is used only through
//! [`super::linux::Tree`], whose callers bound every read (bytes per file, entries per
//! directory, depth).

use std::io::{self, Read, Seek, SeekFrom, Write};

use super::disk::Disk;
use super::linux::{pump, Entry, Kind, Tree};

/// Entries listed at most per directory (a cluster chain that loops lists forever otherwise).
const MAX_DIR_ENTRIES: usize = 65_536;

/// A [`Disk`] as the stream `fatfs` and `ntfs` read: a position, and writes that fail.
pub struct ReadOnlyIo<D: Disk> {
    disk: D,
    pos: u64,
    /// Reads past the end, or that fail, give zeros instead of an error or a short read.
    padded: bool,
}

impl<D: Disk> ReadOnlyIo<D> {
    pub fn new(disk: D) -> ReadOnlyIo<D> {
        ReadOnlyIo { disk, pos: 0, padded: false }
    }

    /// For a reader that cannot take an I/O error (the `ntfs` crate turns one met inside a
    /// structure into a panic): what cannot be read reads as zeros, which its checks refuse
    /// as a corrupt structure, with an error.
    pub fn padded(disk: D) -> ReadOnlyIo<D> {
        ReadOnlyIo { disk, pos: 0, padded: true }
    }
}

impl<D: Disk> Read for ReadOnlyIo<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.disk.size().saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if self.padded {
            let (inside, past) = buf.split_at_mut(n);
            if self.disk.read_at(self.pos, inside).is_err() {
                inside.fill(0);
            }
            past.fill(0);
            self.pos = self.pos.saturating_add(buf.len() as u64);
            return Ok(buf.len());
        }
        if n == 0 {
            return Ok(0);
        }
        self.disk.read_at(self.pos, buf.get_mut(..n).unwrap_or_default())?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<D: Disk> Seek for ReadOnlyIo<D> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.disk.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = match (base, self.padded) {
            (Some(p), _) => p,
            (None, true) => u64::MAX,
            (None, false) => return Err(io::Error::new(io::ErrorKind::InvalidInput, "seek out of range")),
        };
        Ok(self.pos)
    }
}

impl<D: Disk> Write for ReadOnlyIo<D> {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(io::ErrorKind::PermissionDenied, "evidence is read-only"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether `d` starts with a FAT boot sector: a jump, 55 AA, a power-of-two sector size, a
/// FAT type string where FAT12/16 or FAT32 keep it.
pub fn is_fat(d: &mut dyn Disk) -> bool {
    let mut b = [0u8; 512];
    if d.read_at(0, &mut b).is_err() {
        return false;
    }
    let jump = b[0] == 0xeb || b[0] == 0xe9;
    let sig = b[510] == 0x55 && b[511] == 0xaa;
    let bps = u16::from_le_bytes([b[11], b[12]]);
    let named = b[54..59] == *b"FAT12" || b[54..59] == *b"FAT16" || b[82..87] == *b"FAT32";
    jump && sig && (512..=4096).contains(&bps) && bps.is_power_of_two() && named
}

/// A FAT filesystem as a [`Tree`].
pub struct FatTree<D: Disk>(pub fatfs::FileSystem<ReadOnlyIo<D>>);

impl<D: Disk> FatTree<D> {
    pub fn open(disk: D) -> io::Result<FatTree<D>> {
        fatfs::FileSystem::new(ReadOnlyIo::new(disk), fatfs::FsOptions::new()).map(FatTree)
    }

    /// `FAT12`, `FAT16` or `FAT32`.
    pub fn kind(&self) -> &'static str {
        match self.0.fat_type() {
            fatfs::FatType::Fat12 => "fat12",
            fatfs::FatType::Fat16 => "fat16",
            fatfs::FatType::Fat32 => "fat32",
        }
    }

    pub fn label(&self) -> String {
        self.0.volume_label().trim_end().to_string()
    }

    fn dir(&self, path: &str) -> Option<fatfs::Dir<'_, ReadOnlyIo<D>>> {
        let rel = path.trim_start_matches('/');
        if rel.is_empty() {
            Some(self.0.root_dir())
        } else {
            self.0.root_dir().open_dir(rel).ok()
        }
    }

    fn file(&self, path: &str) -> Option<fatfs::File<'_, ReadOnlyIo<D>>> {
        let rel = path.trim_start_matches('/');
        (!rel.is_empty()).then(|| self.0.root_dir().open_file(rel).ok()).flatten()
    }
}

/// Seconds since the epoch of a DOS time (FAT keeps local time without a zone: read as UTC).
fn epoch(t: fatfs::DateTime) -> i64 {
    chrono::NaiveDate::from_ymd_opt(i32::from(t.date.year), u32::from(t.date.month), u32::from(t.date.day))
        .and_then(|d| d.and_hms_opt(u32::from(t.time.hour), u32::from(t.time.min), u32::from(t.time.sec)))
        .map_or(0, |dt| dt.and_utc().timestamp())
}

impl<D: Disk> Tree for FatTree<D> {
    fn read(&self, path: &str, max: usize) -> Option<Vec<u8>> {
        let mut file = self.file(path)?;
        let mut out = Vec::new();
        pump(max as u64, &mut |b| file.read(b).ok(), &mut |b| out.extend_from_slice(b));
        Some(out)
    }

    fn list(&self, path: &str) -> Vec<Entry> {
        let Some(d) = self.dir(path) else { return Vec::new() };
        d.iter()
            .take(MAX_DIR_ENTRIES)
            .map_while(Result::ok)
            .filter_map(|e| {
                let name = e.file_name();
                if name == "." || name == ".." || e.attributes().contains(fatfs::FileAttributes::VOLUME_ID) {
                    return None;
                }
                let kind = if e.is_dir() { Kind::Dir } else { Kind::File };
                Some(Entry { name, kind, size: e.len(), mtime: Some(epoch(e.modified())), id: None })
            })
            .collect()
    }

    fn stream(&self, path: &str, max: u64, f: &mut dyn FnMut(&[u8])) -> u64 {
        let Some(mut file) = self.file(path) else { return 0 };
        pump(max, &mut |b| file.read(b).ok(), f)
    }

    fn read_link(&self, _path: &str) -> Option<String> {
        None
    }
}
