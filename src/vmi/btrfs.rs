//! btrfs (Fedora and openSUSE roots, Synology-style data volumes) through the `lambutter` crate.
//!
//! Why `lambutter`: a read-only, pure-Rust btrfs reader in the manner of `ext4-view` (which
//! tapir reads ext4 with), MIT/Apache-2.0, over any positioned reader: the chunk tree, the
//! default subvolume and nested ones as a mount shows them, inline, regular, preallocated and
//! sparse extents, and zstd, zlib and LZO compression, with a bound on each extent's
//! decompressed size (16 MiB), on tree depth and on the whole superblock's geometry; files are
//! read in chunks, never whole. It is used only through [`super::linux::Tree`], whose callers
//! bound every read, and inside the reader-panic containment every filesystem has
//! (`vmi::filesystem_on`). It does not give an inode's times: btrfs files are listed without
//! one, so they are left out of "recently changed".
//!
//! RAID0/10/5/6 volumes (data striped over devices tapir never has all of) are refused by the
//! crate with a typed error, reported as the filesystem's error.

use std::cell::RefCell;
use std::collections::HashMap;

use lambutter::{Btrfs, Inode, Path};

use super::disk::{uuid_text, Disk};
use super::linux::{pump, Entry, Kind, Tree};

/// Where the primary superblock lies, and its magic.
const SUPERBLOCK: u64 = 0x10000;
const MAGIC: &[u8; 8] = b"_BHRfS_M";
/// Entries of one directory listed at most (the crate lists a directory whole).
const MAX_DIR_ENTRIES: usize = 1 << 17;
/// Regular files whose inode is remembered at most (what the walk lists).
const MAX_FILES: usize = 200_000;

/// Whether `d` holds a btrfs primary superblock.
pub fn is_btrfs(d: &mut dyn Disk) -> bool {
    let mut b = [0u8; 8];
    d.read_at(SUPERBLOCK + 0x40, &mut b).is_ok() && b == *MAGIC
}

/// A [`Disk`] as the crate reads devices.
struct Device<D: Disk>(D);

impl<D: Disk> lambutter::BlockRead for Device<D> {
    type Error = std::io::Error;

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), std::io::Error> {
        self.0.read_at(offset, buf)
    }
}

/// A btrfs filesystem (its default subvolume, as mounted) as a [`Tree`].
pub struct BtrfsTree<D: Disk> {
    fs: RefCell<Btrfs<Device<D>>>,
    /// The regular files listed, by path: the crate finds a path from the root, one B-tree
    /// search (its nodes' CRC32C checked each time) a component, so the walk's reads go
    /// straight to the inode the listing gave.
    files: RefCell<HashMap<String, Inode>>,
    label: String,
    uuid: String,
}

impl<D: Disk> BtrfsTree<D> {
    pub fn open(mut disk: D) -> Result<BtrfsTree<D>, lambutter::Error> {
        let mut sb = vec![0u8; 0x22B];
        let (label, uuid) = match disk.read_at(SUPERBLOCK, &mut sb) {
            Ok(()) => {
                let label = sb.get(0x12B..).unwrap_or_default();
                let label = label.split(|b| *b == 0).next().unwrap_or_default();
                (String::from_utf8_lossy(label).into_owned(), uuid_text(sb.get(0x20..0x30).unwrap_or_default()))
            }
            Err(_) => (String::new(), String::new()),
        };
        let size = disk.size();
        let fs = Btrfs::open(Device(disk), size)?;
        Ok(BtrfsTree { fs: RefCell::new(fs), files: RefCell::new(HashMap::new()), label, uuid })
    }

    pub fn label(&self) -> String {
        self.label.clone()
    }

    pub fn uuid(&self) -> String {
        self.uuid.clone()
    }

    /// Streams the regular file at `path`, up to `max` bytes.
    fn each_chunk(&self, path: &str, max: u64, f: &mut dyn FnMut(&[u8])) -> Option<u64> {
        let mut fs = self.fs.borrow_mut();
        let known = self.files.borrow().get(path).copied();
        let inode = match known {
            Some(i) => i,
            None => {
                let i = fs.resolve(Path::new(path.as_bytes())?).ok()?;
                fs.metadata(&i).ok()?.is_file().then_some(i)?
            }
        };
        let mut at = 0u64;
        Some(pump(
            max,
            &mut |b| {
                let n = fs.read_file_at(&inode, at, b).ok()?;
                at += n as u64;
                Some(n)
            },
            f,
        ))
    }
}

impl<D: Disk> Tree for BtrfsTree<D> {
    fn read(&self, path: &str, max: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.each_chunk(path, max as u64, &mut |b| out.extend_from_slice(b))?;
        Some(out)
    }

    fn list(&self, path: &str) -> Vec<Entry> {
        let mut fs = self.fs.borrow_mut();
        let Some(p) = Path::new(path.as_bytes()) else { return Vec::new() };
        let Ok(entries) = fs.read_dir(p) else { return Vec::new() };
        let mut files = self.files.borrow_mut();
        entries
            .into_iter()
            .filter(|e| e.name != b"." && e.name != b"..")
            .take(MAX_DIR_ENTRIES)
            .map(|e| {
                let (kind, size) = match fs.metadata(&e.inode) {
                    Ok(m) if m.is_dir() => (Kind::Dir, m.size),
                    Ok(m) if m.is_file() => {
                        if files.len() < MAX_FILES {
                            files.insert(
                                format!("{}/{}", path.trim_end_matches('/'), String::from_utf8_lossy(&e.name)),
                                e.inode,
                            );
                        }
                        (Kind::File, m.size)
                    }
                    Ok(m) if m.is_symlink() => (Kind::Symlink, m.size),
                    Ok(m) => (Kind::Other, m.size),
                    Err(_) => (Kind::Other, 0),
                };
                // Inode numbers repeat across subvolumes: no id.
                Entry { name: String::from_utf8_lossy(&e.name).into_owned(), kind, size, mtime: None, id: None }
            })
            .collect()
    }

    fn stream(&self, path: &str, max: u64, f: &mut dyn FnMut(&[u8])) -> u64 {
        self.each_chunk(path, max, f).unwrap_or(0)
    }

    fn read_link(&self, path: &str) -> Option<String> {
        let target = self.fs.borrow_mut().read_link(Path::new(path.as_bytes())?).ok()?;
        Some(String::from_utf8_lossy(&target).into_owned())
    }
}
