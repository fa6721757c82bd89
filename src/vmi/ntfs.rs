//! NTFS (Windows images) through the `ntfs` crate.
//!
//! Why `ntfs`: Colin Finck's read-only, pure-Rust NTFS reader (from the ReactOS project), over
//! any `Read + Seek`, returning errors for corrupt structures. It is used only through
//! [`super::linux::Tree`], whose callers bound every read; DOS 8.3 aliases are skipped so that
//! each file is listed once, and the NTFS metafiles (`$MFT`, `$LogFile`...) are not files an
//! investigator looks for.

use std::cell::RefCell;

use std::collections::HashMap;

use ntfs::structured_values::NtfsFileNamespace;
use ntfs::{Ntfs, NtfsFile, NtfsFileReference, NtfsReadSeek};

use super::disk::Disk;
use super::fat::ReadOnlyIo;
use super::linux::{pump, Entry, Kind, Tree};

/// Index entries read at most per directory listing, kept or skipped: a corrupt index whose
/// subnodes point back up is walked by the crate without end, each step holding an index
/// record (4 KiB) on its stack (fuzz: 23 GB in a minute), so the steps are what is bounded
/// (128 MiB at most).
const MAX_DIR_ENTRIES: usize = 32_768;
/// Paths whose file reference is remembered at most (what the walk visits).
const MAX_REFS: usize = 200_000;
/// Seconds between 1601-01-01 (NTFS time) and 1970-01-01.
const NT_EPOCH_OFFSET: i64 = 11_644_473_600;

/// Whether `d` starts with an NTFS boot sector (OEM id `NTFS    `).
pub fn is_ntfs(d: &mut dyn Disk) -> bool {
    let mut b = [0u8; 11];
    d.read_at(0, &mut b).is_ok() && b[3..11] == *b"NTFS    "
}

/// An NTFS filesystem as a [`Tree`].
pub struct NtfsTree<D: Disk> {
    ntfs: Ntfs,
    io: RefCell<ReadOnlyIo<D>>,
    /// File references by lower-cased path, learnt from the listings: a path is resolved
    /// through them, never through the crate's index search, which follows a corrupt index's
    /// subnodes without a bound.
    refs: RefCell<HashMap<String, NtfsFileReference>>,
}

/// One entry of a directory index, as listed.
struct Listed {
    entry: Entry,
    reference: NtfsFileReference,
}

impl<D: Disk> NtfsTree<D> {
    pub fn open(disk: D) -> Result<NtfsTree<D>, ntfs::NtfsError> {
        let mut io = ReadOnlyIo::padded(disk);
        let mut ntfs = Ntfs::new(&mut io)?;
        // Names are compared case-insensitively through the volume's own upcase table.
        ntfs.read_upcase_table(&mut io)?;
        Ok(NtfsTree { ntfs, io: RefCell::new(io), refs: RefCell::new(HashMap::new()) })
    }

    pub fn label(&self) -> String {
        let mut io = self.io.borrow_mut();
        match self.ntfs.volume_name(&mut *io) {
            Some(Ok(n)) => n.name().to_string_lossy(),
            _ => String::new(),
        }
    }

    pub fn serial(&self) -> String {
        format!("{:016X}", self.ntfs.serial_number())
    }

    /// The entries of directory `dir` (at `path`), bounded in index steps; their references are
    /// remembered for [`NtfsTree::find`].
    fn entries(&self, dir: &NtfsFile<'_>, path: &str, io: &mut ReadOnlyIo<D>) -> Vec<Listed> {
        let Ok(index) = dir.directory_index(io) else { return Vec::new() };
        let mut entries = index.entries();
        let mut out = Vec::new();
        let root = path.trim_matches('/').is_empty();
        for _ in 0..MAX_DIR_ENTRIES {
            let Some(Ok(e)) = entries.next(io) else { break };
            let Some(Ok(name)) = e.key() else { continue };
            if name.namespace() == NtfsFileNamespace::Dos {
                continue;
            }
            let n = name.name().to_string_lossy();
            if n == "." || (root && n.starts_with('$')) {
                continue;
            }
            let kind = if name.is_directory() { Kind::Dir } else { Kind::File };
            let mtime = (name.modification_time().nt_timestamp() / 10_000_000) as i64 - NT_EPOCH_OFFSET;
            out.push(Listed {
                entry: Entry {
                    name: n,
                    kind,
                    size: name.data_size(),
                    mtime: Some(mtime),
                    id: Some(e.file_reference().file_record_number()),
                },
                reference: e.file_reference(),
            });
        }
        let mut refs = self.refs.borrow_mut();
        for l in &out {
            if refs.len() >= MAX_REFS {
                break;
            }
            let child = format!("{}/{}", path.trim_end_matches('/'), l.entry.name).to_lowercase();
            refs.insert(child, l.reference);
        }
        out
    }

    /// The file or directory at `path` (`/`-separated, from the root), found through the
    /// listings of its parents (each bounded), case-insensitively as Windows does.
    fn find(&self, path: &str, io: &mut ReadOnlyIo<D>) -> Option<NtfsFile<'_>> {
        let mut cur = self.ntfs.root_directory(io).ok()?;
        let mut at = String::new();
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            let child = format!("{at}/{comp}");
            let key = child.to_lowercase();
            let known = self.refs.borrow().get(&key).copied();
            let reference = match known {
                Some(r) => r,
                None => {
                    let listed = self.entries(&cur, if at.is_empty() { "/" } else { &at }, io);
                    listed.iter().find(|l| l.entry.name.to_lowercase() == comp.to_lowercase())?.reference
                }
            };
            cur = reference.to_file(&self.ntfs, io).ok()?;
            at = child;
        }
        Some(cur)
    }

    /// Streams the unnamed data stream of `path`, up to `max` bytes.
    fn each_chunk(&self, path: &str, max: u64, f: &mut dyn FnMut(&[u8])) -> Option<u64> {
        let mut io = self.io.borrow_mut();
        let io = &mut *io;
        let file = self.find(path, io)?;
        if file.is_directory() {
            return None;
        }
        let item = file.data(io, "")?.ok()?;
        let attr = item.to_attribute().ok()?;
        let mut value = attr.value(io).ok()?;
        Some(pump(max, &mut |b| value.read(io, b).ok(), f))
    }
}

impl<D: Disk> Tree for NtfsTree<D> {
    fn read(&self, path: &str, max: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.each_chunk(path, max as u64, &mut |b| out.extend_from_slice(b))?;
        Some(out)
    }

    fn list(&self, path: &str) -> Vec<Entry> {
        let mut io = self.io.borrow_mut();
        let io = &mut *io;
        let Some(dir) = self.find(path, io) else { return Vec::new() };
        self.entries(&dir, path, io).into_iter().map(|l| l.entry).collect()
    }

    fn stream(&self, path: &str, max: u64, f: &mut dyn FnMut(&[u8])) -> u64 {
        self.each_chunk(path, max, f).unwrap_or(0)
    }

    fn read_link(&self, _path: &str) -> Option<String> {
        None
    }
}
