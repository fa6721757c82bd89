//! Random access to the bytes of an image, a container's guest view and a partition: the one
//! interface every reader below the filesystem works on.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Bytes readable at any offset. Reads past [`Disk::size`] are errors, never short reads, so
/// every layer can trust the lengths it asked for.
pub trait Disk {
    /// Bytes addressable.
    fn size(&self) -> u64;

    /// Fills `buf` from `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// A file on disk.
pub struct FileDisk {
    file: File,
    size: u64,
}

impl FileDisk {
    pub fn open(path: &std::path::Path) -> io::Result<FileDisk> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        Ok(FileDisk { file, size })
    }
}

impl Disk for FileDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check(offset, buf.len(), self.size)?;
        self.file.read_exact_at(buf, offset)
    }
}

/// Bytes in memory.
pub struct MemDisk(pub Arc<[u8]>);

impl Disk for MemDisk {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check(offset, buf.len(), self.size())?;
        let at = usize::try_from(offset).map_err(|_| past_end(offset, buf.len(), self.size()))?;
        let src = self.0.get(at..at + buf.len()).ok_or_else(|| past_end(offset, buf.len(), self.size()))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A read cache over another disk: 64 KiB chunks, the oldest dropped past `capacity` bytes.
/// Filesystem readers read the same metadata blocks again and again (inode tables, directory
/// blocks); under a compressed qcow2 each miss is a cluster to inflate.
pub struct Cached<D> {
    inner: D,
    chunks: std::collections::HashMap<u64, Vec<u8>>,
    order: std::collections::VecDeque<u64>,
    capacity: usize,
}

const CHUNK: u64 = 64 * 1024;

impl<D: Disk> Cached<D> {
    pub fn new(inner: D, capacity: usize) -> Cached<D> {
        Cached { inner, chunks: Default::default(), order: Default::default(), capacity: capacity.max(CHUNK as usize) }
    }

    fn chunk(&mut self, index: u64) -> io::Result<&Vec<u8>> {
        if !self.chunks.contains_key(&index) {
            let start = index * CHUNK;
            let len = CHUNK.min(self.inner.size().saturating_sub(start)) as usize;
            let mut b = vec![0u8; len];
            self.inner.read_at(start, &mut b)?;
            while self.order.len() * CHUNK as usize >= self.capacity {
                match self.order.pop_front() {
                    Some(old) => {
                        self.chunks.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(index);
            self.chunks.insert(index, b);
        }
        self.chunks.get(&index).ok_or_else(|| io::Error::other("cache"))
    }
}

impl<D: Disk> Disk for Cached<D> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check(offset, buf.len(), self.inner.size())?;
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let within = (at % CHUNK) as usize;
            let chunk = self.chunk(at / CHUNK)?;
            let n = chunk.len().saturating_sub(within).min(buf.len() - done);
            if n == 0 {
                return Err(past_end(offset, buf.len(), self.inner.size()));
            }
            buf.get_mut(done..done + n)
                .unwrap_or_default()
                .copy_from_slice(chunk.get(within..within + n).unwrap_or_default());
            done += n;
        }
        Ok(())
    }
}

/// A window of another disk: a partition.
pub struct Slice<D> {
    pub inner: D,
    pub start: u64,
    pub len: u64,
}

impl<D: Disk> Disk for Slice<D> {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check(offset, buf.len(), self.len)?;
        self.inner.read_at(self.start + offset, buf)
    }
}

impl<D: Disk + ?Sized> Disk for Box<D> {
    fn size(&self) -> u64 {
        (**self).size()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }
}

/// `offset + len` inside `size`, or the error every reader gives for it.
pub fn check(offset: u64, len: usize, size: u64) -> io::Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(past_end(offset, len, size)),
    }
}

fn past_end(offset: u64, len: usize, size: u64) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, format!("read of {len} bytes at {offset} past the end ({size} bytes)"))
}

/// Reads `len` bytes at `offset` into a new buffer (`len` is the caller's bound).
pub fn read_vec(d: &mut dyn Disk, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; len];
    d.read_at(offset, &mut v)?;
    Ok(v)
}

/// A 16-byte UUID as `8-4-4-4-12` hex (empty if `b` is not 16 bytes).
pub fn uuid_text(b: &[u8]) -> String {
    let h = hex::encode(b);
    if h.len() != 32 {
        return String::new();
    }
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Fixed-width fields of on-disk structures: 0 when `at` is past the buffer (callers check
/// lengths first; a zero is what a short, hostile header reads as, never a panic).
pub mod field {
    macro_rules! reader {
        ($name:ident, $t:ty, $from:ident) => {
            pub fn $name(b: &[u8], at: usize) -> $t {
                b.get(at..at + std::mem::size_of::<$t>()).and_then(|s| s.try_into().ok()).map_or(0, <$t>::$from)
            }
        };
    }
    reader!(be16, u16, from_be_bytes);
    reader!(be32, u32, from_be_bytes);
    reader!(be64, u64, from_be_bytes);
    reader!(le16, u16, from_le_bytes);
    reader!(le32, u32, from_le_bytes);
    reader!(le64, u64, from_le_bytes);
}

/// Reads `buf` at guest `offset` of an image made of fixed-size blocks, `table[i]` giving block
/// i's byte offset in `file` (`None`: never written, zeros): VHD, VHDX and VDI alike.
pub fn read_blocks(
    file: &mut dyn Disk,
    table: &[Option<u64>],
    block: u64,
    mut offset: u64,
    buf: &mut [u8],
) -> io::Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let (b, within) = (offset / block, offset % block);
        let n = ((block - within) as usize).min(buf.len() - done);
        let dst = buf.get_mut(done..done + n).unwrap_or_default();
        match table.get(b as usize).copied().flatten() {
            Some(at) => file.read_at(at + within, dst)?,
            None => dst.fill(0),
        }
        done += n;
        offset += n as u64;
    }
    Ok(())
}
