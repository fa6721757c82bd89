//! XFS (the root filesystem of RHEL-family images), read-only, never mounted.
//!
//! The on-disk structures are parsed by `xfs-core`'s pure parsers (superblock, inode core,
//! extent records, short-form and data directory blocks: bounds-checked, no `unsafe`); the
//! I/O is done here, over a [`Disk`], because that crate's own readers take the whole image as
//! one byte slice (an uploaded image is gigabytes) and, in 0.1.6, make two mistakes this file
//! avoids:
//! - an extent's or B+tree pointer's block number is an XFS *filesystem block number*: the AG
//!   number shifted by `sb_agblklog`, or'ed with the block in the AG. It equals the linear
//!   block only in AG 0 (or when an AG's size is a power of two, which mkfs rarely makes), so
//!   every file past the first AG would read as another file's bytes;
//! - the data fork ends where the attribute fork begins (`di_forkoff`), and a B+tree root's
//!   pointers sit after as many keys as the *data fork* holds: every file with an extended
//!   attribute (all of them, on an SELinux system) has one.
//!
//! Unwritten (preallocated) extents read as zeros, as the kernel reads them. Every walk is
//! bounded: B+tree blocks visited, extents kept, directory blocks read and entries listed.

use std::cell::RefCell;
use std::collections::HashMap;

use xfs_core::{read_block_dir, read_data_dir_block, read_extents, read_shortform_dir};
use xfs_core::{BmbtRec, DirEntry, Inode, InodeFormat, Superblock};

use super::disk::{field, uuid_text, Disk};
use super::linux::{pump, Entry, Kind, Tree};

/// B+tree blocks read at most per file, extents kept at most per file.
const MAX_BMBT_BLOCKS: usize = 1 << 16;
const MAX_EXTENTS: usize = 1 << 20;
const MAX_BMBT_DEPTH: u16 = 8;
/// Directory blocks read at most per listing, entries kept at most per listing.
const MAX_DIR_BLOCKS: u64 = 1 << 16;
const MAX_DIR_ENTRIES: usize = 1 << 17;
/// Paths whose inode number is remembered at most (what the walk visits).
const MAX_PATHS: usize = 200_000;
/// Symbolic link targets read at most (PATH_MAX).
const MAX_LINK: u64 = 4096;
/// Where a directory's leaf and free-index blocks start: entries live below (32 GiB).
const DIR_LEAF_OFFSET: u64 = 1 << 35;

/// Whether `d` starts with an XFS superblock (`XFSB`).
pub fn is_xfs(d: &mut dyn Disk) -> bool {
    let mut b = [0u8; 4];
    d.read_at(0, &mut b).is_ok() && b == *b"XFSB"
}

/// Why an XFS volume cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum XfsError {
    #[error("XFS superblock: {0}")]
    Superblock(String),
    #[error("XFS geometry impossible: {0}")]
    Geometry(String),
    #[error("XFS root directory unreadable: {0}")]
    Root(String),
    #[error("reading the volume: {0}")]
    Io(#[from] std::io::Error),
}

/// An XFS filesystem as a [`Tree`].
pub struct XfsTree<D: Disk> {
    disk: RefCell<D>,
    sb: Superblock,
    /// Filesystem blocks per directory block (`sb_dirblklog`).
    dir_blocks: u64,
    label: String,
    uuid: String,
    /// Inode numbers by path, learnt from the listings.
    paths: RefCell<HashMap<String, u64>>,
}

impl<D: Disk> XfsTree<D> {
    pub fn open(mut disk: D) -> Result<XfsTree<D>, XfsError> {
        let mut raw = [0u8; 512];
        disk.read_at(0, &mut raw)?;
        let sb = Superblock::parse(&raw).map_err(|e| XfsError::Superblock(e.to_string()))?;
        // Geometry every address is computed from: a hostile superblock must not make them
        // overflow or divide by zero, and blocks must fit the volume.
        let bs = sb.blocksize;
        let sane = bs.is_power_of_two()
            && (512..=65536).contains(&bs)
            && u32::from(sb.blocklog) == bs.trailing_zeros()
            && sb.agblocks > 0
            && sb.agcount > 0
            && u32::from(sb.agblklog) < 32
            && u64::from(sb.agblocks) <= 1u64 << sb.agblklog
            && sb.inodesize.is_power_of_two()
            && (256..=2048).contains(&sb.inodesize)
            && u32::from(sb.inodesize) <= bs;
        if !sane {
            return Err(XfsError::Geometry(format!(
                "block size {bs}, AG of {} blocks (log {}), {} AGs, inode size {}",
                sb.agblocks, sb.agblklog, sb.agcount, sb.inodesize
            )));
        }
        let dirblklog = raw.get(192).copied().unwrap_or(0);
        if u32::from(dirblklog) + bs.trailing_zeros() > 16 {
            return Err(XfsError::Geometry(format!("directory blocks of 2^{dirblklog} blocks")));
        }
        let label_bytes = raw.get(108..120).unwrap_or_default();
        let label = String::from_utf8_lossy(label_bytes).trim_end_matches('\0').to_string();
        let uuid = uuid_text(raw.get(32..48).unwrap_or_default());
        let t = XfsTree {
            disk: RefCell::new(disk),
            dir_blocks: 1 << dirblklog,
            sb,
            label,
            uuid,
            paths: RefCell::new(HashMap::new()),
        };
        let root = t.inode(t.sb.rootino).map_err(|e| XfsError::Root(e.to_string()))?;
        if !root.is_dir() {
            return Err(XfsError::Root(format!("inode {} is not a directory", t.sb.rootino)));
        }
        Ok(t)
    }

    pub fn label(&self) -> String {
        self.label.clone()
    }

    pub fn uuid(&self) -> String {
        self.uuid.clone()
    }

    /// The inode `ino`, if it lies in an AG of this volume and has the inode magic.
    fn inode(&self, ino: u64) -> Result<Inode, XfsError> {
        let loc = self.sb.inode_to_location(ino);
        if loc.agno >= u64::from(self.sb.agcount) || loc.agblock >= u64::from(self.sb.agblocks) {
            return Err(XfsError::Geometry(format!("inode {ino} lies outside every AG")));
        }
        let mut raw = vec![0u8; usize::from(self.sb.inodesize)];
        self.disk.borrow_mut().read_at(loc.byte_offset, &mut raw)?;
        Inode::parse(&raw).map_err(|e| XfsError::Superblock(format!("inode {ino}: {e}")))
    }

    /// The data fork of `inode`: up to the attribute fork, if it has one.
    fn data_fork<'i>(&self, inode: &'i Inode) -> &'i [u8] {
        let fork = inode.data_fork.as_slice();
        match inode.forkoff {
            0 => fork,
            off => fork.get(..usize::from(off) * 8).unwrap_or(fork),
        }
    }

    /// The byte offset of filesystem block `fsb` (AG number and block in the AG), if it lies
    /// in the volume's AGs.
    fn fsb_offset(&self, fsb: u64) -> Option<u64> {
        let agno = fsb >> self.sb.agblklog;
        let agbno = fsb & ((1u64 << self.sb.agblklog) - 1);
        if agno >= u64::from(self.sb.agcount) || agbno >= u64::from(self.sb.agblocks) {
            return None;
        }
        (agno * u64::from(self.sb.agblocks) + agbno).checked_mul(u64::from(self.sb.blocksize))
    }

    /// The extents of `inode`'s data, sorted by file offset (none for a local or device
    /// inode).
    fn extents(&self, inode: &Inode) -> Vec<BmbtRec> {
        let fork = self.data_fork(inode);
        let mut out = match inode.format {
            InodeFormat::Extents => read_extents(fork, inode.nextents),
            InodeFormat::Btree => {
                let mut out = Vec::new();
                let mut budget = MAX_BMBT_BLOCKS;
                // The root in the inode: level, count, then as many keys as the fork could
                // hold, then the pointers.
                let (level, count) = (field::be16(fork, 0), usize::from(field::be16(fork, 2)));
                let slots = fork.len().saturating_sub(4) / 16;
                for i in 0..count.min(slots) {
                    let ptr = field::be64(fork, 4 + slots * 8 + i * 8);
                    self.bmbt_walk(ptr, level.saturating_sub(1), 1, &mut out, &mut budget);
                }
                out
            }
            _ => Vec::new(),
        };
        out.truncate(MAX_EXTENTS);
        out.sort_by_key(|e| e.startoff);
        out
    }

    /// Collects the extent records under B+tree block `fsb`.
    fn bmbt_walk(&self, fsb: u64, level: u16, depth: u16, out: &mut Vec<BmbtRec>, budget: &mut usize) {
        if depth > MAX_BMBT_DEPTH || *budget == 0 || out.len() >= MAX_EXTENTS {
            return;
        }
        *budget -= 1;
        let Some(at) = self.fsb_offset(fsb) else { return };
        let bs = self.sb.blocksize as usize;
        let mut block = vec![0u8; bs];
        if self.disk.borrow_mut().read_at(at, &mut block).is_err() {
            return;
        }
        let header = match block.get(..4) {
            Some(b"BMA3") => 72,
            Some(b"BMAP") => 24,
            _ => return,
        };
        // A block's own level must be the one its parent promised: a pointer back up the
        // tree would otherwise be walked as a leaf of the wrong kind.
        if field::be16(&block, 4) != level {
            return;
        }
        let count = usize::from(field::be16(&block, 6));
        let slots = (bs - header) / 16;
        if level == 0 {
            let records = block.get(header..).unwrap_or_default();
            out.extend(read_extents(records, count.min(slots) as u32));
            return;
        }
        for i in 0..count.min(slots) {
            let ptr = field::be64(&block, header + slots * 8 + i * 8);
            self.bmbt_walk(ptr, level - 1, depth + 1, out, budget);
        }
    }

    /// Fills `buf` from byte `offset` of a file mapped by `extents` (holes and unwritten
    /// extents read as zeros).
    fn read_mapped(&self, extents: &[BmbtRec], offset: u64, buf: &mut [u8]) -> Option<()> {
        let bs = u64::from(self.sb.blocksize);
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let (block, within) = (at / bs, at % bs);
            let n = ((bs - within) as usize).min(buf.len() - done);
            let dst = buf.get_mut(done..done + n)?;
            // The extent holding `block`: the last one starting at or before it.
            let i = extents.partition_point(|e| e.startoff <= block);
            let hit = i.checked_sub(1).and_then(|i| extents.get(i)).filter(|e| block - e.startoff < e.blockcount);
            match hit {
                Some(e) if !e.unwritten => {
                    let fsb = e.startblock.checked_add(block - e.startoff)?;
                    let byte = self.fsb_offset(fsb)?;
                    self.disk.borrow_mut().read_at(byte + within, dst).ok()?;
                }
                _ => dst.fill(0),
            }
            done += n;
        }
        Some(())
    }

    /// The entries of directory inode `dir`, bounded in blocks read and entries kept.
    fn dir_entries(&self, dir: &Inode) -> Vec<DirEntry> {
        let ftype = self.sb.has_ftype();
        let mut out = match dir.format {
            InodeFormat::Local => read_shortform_dir(self.data_fork(dir), ftype),
            InodeFormat::Extents | InodeFormat::Btree => {
                let extents = self.extents(dir);
                let bs = u64::from(self.sb.blocksize);
                let dir_bytes = self.dir_blocks * bs;
                let leaf_block = DIR_LEAF_OFFSET / bs;
                let mut out = Vec::new();
                let mut read = 0u64;
                let mut block = vec![0u8; dir_bytes as usize];
                'extents: for e in &extents {
                    // Data blocks start on directory-block boundaries of the logical space.
                    let first = e.startoff.div_ceil(self.dir_blocks) * self.dir_blocks;
                    let end = e.startoff.saturating_add(e.blockcount).min(leaf_block);
                    let mut b = first;
                    while b < end {
                        read += 1;
                        if read > MAX_DIR_BLOCKS || out.len() >= MAX_DIR_ENTRIES {
                            break 'extents;
                        }
                        if self.read_mapped(&extents, b * bs, &mut block).is_some() {
                            let parsed = match block.get(..4) {
                                Some(b"XDB3" | b"XD2B") => read_block_dir(&block, ftype).ok(),
                                Some(b"XDD3" | b"XD2D") => read_data_dir_block(&block, ftype).ok(),
                                _ => None,
                            };
                            out.extend(parsed.unwrap_or_default());
                        }
                        b += self.dir_blocks;
                    }
                }
                out
            }
            _ => Vec::new(),
        };
        out.retain(|e| e.name != b"." && e.name != b"..");
        out.truncate(MAX_DIR_ENTRIES);
        out
    }

    /// The inode number at `path`, through the listings of its parents (each bounded).
    fn lookup(&self, path: &str) -> Option<u64> {
        let mut ino = self.sb.rootino;
        let mut at = String::new();
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            at = format!("{at}/{comp}");
            let known = self.paths.borrow().get(&at).copied();
            ino = match known {
                Some(i) => i,
                None => {
                    let dir = self.inode(ino).ok().filter(|i| i.is_dir())?;
                    let found = self.dir_entries(&dir).into_iter().find(|e| e.name == comp.as_bytes())?;
                    found.inode
                }
            };
        }
        Some(ino)
    }

    /// Streams the regular file at `path`, up to `max` bytes.
    fn each_chunk(&self, path: &str, max: u64, f: &mut dyn FnMut(&[u8])) -> Option<u64> {
        let inode = self.inode(self.lookup(path)?).ok().filter(|i| i.is_reg())?;
        let extents = self.extents(&inode);
        let mut at = 0u64;
        let size = inode.size;
        Some(pump(
            max.min(size),
            &mut |b| {
                let n = (b.len() as u64).min(size - at) as usize;
                self.read_mapped(&extents, at, b.get_mut(..n)?)?;
                at += n as u64;
                Some(n)
            },
            f,
        ))
    }
}

impl<D: Disk> Tree for XfsTree<D> {
    fn read(&self, path: &str, max: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.each_chunk(path, max as u64, &mut |b| out.extend_from_slice(b))?;
        Some(out)
    }

    fn list(&self, path: &str) -> Vec<Entry> {
        let Some(dir) = self.lookup(path).and_then(|i| self.inode(i).ok()).filter(|i| i.is_dir()) else {
            return Vec::new();
        };
        let entries = self.dir_entries(&dir);
        let mut out = Vec::with_capacity(entries.len());
        let mut paths = self.paths.borrow_mut();
        for e in entries {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            // Size, time and kind come from the entry's inode; one that cannot be read is
            // listed as what its directory says it is.
            let (kind, size, mtime) = match self.inode(e.inode) {
                Ok(i) => (kind_of(i.mode), i.size, Some(i.mtime.secs)),
                Err(_) => (Kind::Other, 0, None),
            };
            if paths.len() < MAX_PATHS {
                paths.insert(format!("{}/{name}", path.trim_end_matches('/')), e.inode);
            }
            out.push(Entry { name, kind, size, mtime, id: Some(e.inode) });
        }
        out
    }

    fn stream(&self, path: &str, max: u64, f: &mut dyn FnMut(&[u8])) -> u64 {
        self.each_chunk(path, max, f).unwrap_or(0)
    }

    fn read_link(&self, path: &str) -> Option<String> {
        let inode = self.inode(self.lookup(path)?).ok()?;
        if kind_of(inode.mode) != Kind::Symlink {
            return None;
        }
        let size = inode.size.min(MAX_LINK);
        let target = match inode.format {
            // Short targets live in the inode.
            InodeFormat::Local => self.data_fork(&inode).get(..size as usize)?.to_vec(),
            _ => {
                let extents = self.extents(&inode);
                let mut buf = vec![0u8; size as usize];
                self.read_mapped(&extents, 0, &mut buf)?;
                // v5 remote symlink blocks start with a 56-byte header (`XSLM`).
                match buf.get(..4) {
                    Some(b"XSLM") => {
                        let len = field::be32(&buf, 8) as usize;
                        let mut whole = vec![0u8; (56 + len).min(MAX_LINK as usize + 56)];
                        self.read_mapped(&extents, 0, &mut whole)?;
                        whole.get(56..)?.to_vec()
                    }
                    _ => buf,
                }
            }
        };
        Some(String::from_utf8_lossy(&target).into_owned())
    }
}

fn kind_of(mode: u16) -> Kind {
    match mode & 0o170000 {
        0o100000 => Kind::File,
        0o040000 => Kind::Dir,
        0o120000 => Kind::Symlink,
        _ => Kind::Other,
    }
}
