//! The case writer's file writes, on a thread of their own.
//!
//! With every packet targeted, the case writer spent about half its time in the kernel, copying
//! CC and object bytes into the page cache (perf: 2.4 of 4.7 µs a packet), and a fifth hashing
//! its files for the manifest, on the one thread that every worker's records pass through.
//! However many cores a box has, a run could go no faster than that thread. So the case writer
//! numbers and formats; [`Disk`] takes each file's SHA-256 over its buffers as they are handed
//! over, on a thread of its own (`tapir-hash`), and makes the system calls, in the order they
//! were asked for, on another (`tapir-disk`).
//!
//! - **No copy:** a full buffer is handed over whole, and comes back emptied to a small pool.
//! - **Bounded:** at most [`IN_FLIGHT`] operations wait for each of the two threads; past that
//!   the case writer waits for the disk (back-pressure, never a drop), and the pool keeps at most
//!   [`POOL`] buffers.
//! - **Errors:** as the case writer's own, the first is kept and every later one counted.
//!   [`Disk::barrier`] waits for everything asked so far and hands them over: the case writer
//!   calls it before it reads back what it wrote (an S3 upload's parts) and before the case is
//!   listed for signing, so a failed write still fails the run.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// Operations queued for each of the hashing and the disk thread at most.
pub const IN_FLIGHT: usize = 4;
/// Emptied buffers kept for reuse at most.
pub const POOL: usize = 8;

/// What the disk did since the last [`Disk::barrier`].
#[derive(Debug, Default)]
pub struct DiskReport {
    /// The first error, and how many there were.
    pub first: Option<io::Error>,
    pub count: u64,
    /// Files closed: by the id of their [`Out`], their size and SHA-256 (hex).
    pub closed: HashMap<u32, (u64, String)>,
}

impl DiskReport {
    fn add(&mut self, e: io::Error) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(e);
        }
    }
}

enum Op {
    /// Creates (or empties) the file at the path, kept open as `id` for appends.
    Open(u32, PathBuf),
    Append(u32, Vec<u8>),
    /// Syncs and closes `id`.
    Close(u32),
    /// Creates an empty file, not kept open (a partial object, written at offsets later).
    Create(PathBuf),
    /// Writes `data` at `offset` into the file at `path`, then sets its length to `len` if given
    /// (a hole after the data: a seek past the end costs no disk).
    WriteAt {
        path: PathBuf,
        offset: u64,
        data: Vec<u8>,
        len: Option<u64>,
    },
    /// Moves `src` to `dest`; removes `src` instead when `dest` exists (objects are named by
    /// their content: the same bytes are kept once).
    Store {
        src: PathBuf,
        dest: PathBuf,
    },
    /// Answers, once everything before it is done, with what was done since the last barrier.
    Barrier(SyncSender<DiskReport>),
}

type Pool = Arc<Mutex<Vec<Vec<u8>>>>;

/// An emptied buffer from the pool (or a new one), with room for `capacity` bytes.
fn buffer(pool: &Pool, capacity: usize) -> Vec<u8> {
    let mut b = pool.lock().ok().and_then(|mut p| p.pop()).unwrap_or_default();
    b.reserve(capacity);
    b
}

fn recycle(pool: &Pool, mut b: Vec<u8>) {
    b.clear();
    if let Ok(mut p) = pool.lock() {
        if p.len() < POOL {
            p.push(b);
        }
    }
}

fn gone() -> io::Error {
    io::Error::other("the case's disk thread is gone")
}

fn gone_report() -> DiskReport {
    DiskReport { first: Some(gone()), count: 1, closed: HashMap::new() }
}

/// The way to the disk thread. The thread ends when this and every [`Out`] are gone, once it has
/// done what they asked; [`Disk::barrier`] is how to know that it has.
pub struct Disk {
    tx: SyncSender<Op>,
    pool: Pool,
    next_id: u32,
}

impl Disk {
    pub fn start() -> io::Result<Disk> {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let (to_disk, disk_rx) = sync_channel(IN_FLIGHT);
        let pool = Pool::default();
        let p = pool.clone();
        std::thread::Builder::new().name("tapir-disk".into()).spawn(move || write(disk_rx, p))?;
        std::thread::Builder::new().name("tapir-hash".into()).spawn(move || hash(rx, to_disk))?;
        Ok(Disk { tx, pool, next_id: 0 })
    }

    fn send(&self, op: Op) -> io::Result<()> {
        self.tx.send(op).map_err(|_| gone())
    }

    /// A file created at `path`, written through buffers of `capacity` bytes.
    pub fn open(&mut self, path: PathBuf, capacity: usize) -> io::Result<Out> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(Op::Open(id, path))?;
        Ok(Out { id, buf: buffer(&self.pool, capacity), capacity, tx: self.tx.clone(), pool: self.pool.clone() })
    }

    /// Creates an empty file at `path`.
    pub fn create(&self, path: PathBuf) -> io::Result<()> {
        self.send(Op::Create(path))
    }

    /// Writes `data` at `offset` of the file at `path`, then sets its length to `len` if given.
    /// `data` comes back to the pool.
    pub fn write_at(&self, path: PathBuf, offset: u64, data: Vec<u8>, len: Option<u64>) -> io::Result<()> {
        self.send(Op::WriteAt { path, offset, data, len })
    }

    /// Moves `src` to `dest`, or removes it when `dest` exists.
    pub fn store(&self, src: PathBuf, dest: PathBuf) -> io::Result<()> {
        self.send(Op::Store { src, dest })
    }

    /// Waits until everything asked so far is done; what was done since the last barrier.
    pub fn barrier(&self) -> DiskReport {
        let (reply, answer) = sync_channel(1);
        if self.send(Op::Barrier(reply)).is_err() {
            return gone_report();
        }
        answer.recv().unwrap_or_else(|_| gone_report())
    }
}

/// The hashing thread: each file's SHA-256 over its buffers, in order, then on to the disk.
fn hash(rx: Receiver<Op>, disk: SyncSender<Op>) {
    let mut open: HashMap<u32, (ring::digest::Context, u64)> = HashMap::new();
    let mut closed = HashMap::new();
    for op in rx {
        match &op {
            Op::Open(id, _) => {
                open.insert(*id, (ring::digest::Context::new(&ring::digest::SHA256), 0));
            }
            Op::Append(id, data) => {
                if let Some((sha256, len)) = open.get_mut(id) {
                    sha256.update(data);
                    *len += data.len() as u64;
                }
            }
            Op::Close(id) => {
                if let Some((sha256, len)) = open.remove(id) {
                    closed.insert(*id, (len, hex::encode(sha256.finish().as_ref())));
                }
            }
            Op::Barrier(reply) => {
                // Answered once the disk has done everything before it, with the digests added.
                let (disk_reply, answer) = sync_channel(1);
                let mut report = match disk.send(Op::Barrier(disk_reply)) {
                    Ok(()) => answer.recv().unwrap_or_else(|_| gone_report()),
                    Err(_) => gone_report(),
                };
                report.closed = std::mem::take(&mut closed);
                let _ = reply.send(report);
                continue;
            }
            Op::Create(_) | Op::WriteAt { .. } | Op::Store { .. } => {}
        }
        if disk.send(op).is_err() {
            return;
        }
    }
}

/// The disk thread: the system calls, in order.
fn write(rx: Receiver<Op>, pool: Pool) {
    let mut files: HashMap<u32, File> = HashMap::new();
    let mut errors = DiskReport::default();
    let never_opened = |id| io::Error::other(format!("case file {id} was never opened"));
    for op in rx {
        let r = match op {
            Op::Open(id, path) => File::create(&path).map(|f| {
                files.insert(id, f);
            }),
            Op::Append(id, data) => {
                let r = files.get_mut(&id).ok_or_else(|| never_opened(id)).and_then(|f| f.write_all(&data));
                recycle(&pool, data);
                r
            }
            Op::Close(id) => files.remove(&id).ok_or_else(|| never_opened(id)).and_then(|f| f.sync_all()),
            Op::Create(path) => File::create(&path).map(drop),
            Op::WriteAt { path, offset, data, len } => {
                let r = (|| {
                    let mut f = OpenOptions::new().write(true).open(&path)?;
                    f.seek(SeekFrom::Start(offset))?;
                    f.write_all(&data)?;
                    if let Some(len) = len {
                        f.set_len(len)?;
                    }
                    Ok(())
                })();
                recycle(&pool, data);
                r
            }
            Op::Store { src, dest } => {
                if dest.exists() {
                    fs::remove_file(&src)
                } else {
                    fs::rename(&src, &dest)
                }
            }
            Op::Barrier(reply) => {
                let _ = reply.send(std::mem::take(&mut errors));
                Ok(())
            }
        };
        if let Err(e) = r {
            errors.add(e);
        }
    }
}

/// A file being written through the disk thread, hashed on the way.
pub struct Out {
    id: u32,
    buf: Vec<u8>,
    capacity: usize,
    tx: SyncSender<Op>,
    pool: Pool,
}

impl Out {
    /// Hands the buffer to the disk thread, and takes an emptied one.
    fn hand_over(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, buffer(&self.pool, self.capacity));
        self.tx.send(Op::Append(self.id, full)).map_err(|_| gone())
    }

    /// Hands over the rest and asks for the file to be synced and closed. Its id: the next
    /// [`Disk::barrier`] tells its size and SHA-256, and whether the disk did it.
    pub fn close(mut self) -> io::Result<u32> {
        self.hand_over()?;
        self.tx.send(Op::Close(self.id)).map_err(|_| gone())?;
        Ok(self.id)
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= self.capacity {
            self.hand_over()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_land_in_order_with_the_hash_of_what_was_handed_over() {
        let d = tempfile::tempdir().unwrap();
        let mut disk = Disk::start().unwrap();
        let mut out = disk.open(d.path().join("f"), 10).unwrap();
        let mut want = Vec::new();
        for i in 0..100u8 {
            let chunk = vec![i; usize::from(i % 7) + 1];
            out.write_all(&chunk).unwrap();
            want.extend_from_slice(&chunk);
        }
        let id = out.close().unwrap();
        disk.create(d.path().join("p")).unwrap();
        disk.write_at(d.path().join("p"), 4, b"xy".to_vec(), Some(10)).unwrap();
        disk.store(d.path().join("p"), d.path().join("q")).unwrap();
        let report = disk.barrier();
        assert!(report.first.is_none(), "{report:?}");
        assert_eq!(std::fs::read(d.path().join("f")).unwrap(), want);
        let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, &want).as_ref());
        assert_eq!(report.closed.get(&id), Some(&(want.len() as u64, sha)));
        assert_eq!(std::fs::read(d.path().join("q")).unwrap(), b"\0\0\0\0xy\0\0\0\0");
        assert!(!d.path().join("p").exists());
        // The same content stored again: the second copy goes.
        disk.create(d.path().join("p2")).unwrap();
        disk.store(d.path().join("p2"), d.path().join("q")).unwrap();
        let report = disk.barrier();
        assert!(report.first.is_none() && report.closed.is_empty(), "{report:?}");
        assert!(!d.path().join("p2").exists());
        assert!(disk.pool.lock().unwrap().len() <= POOL);
    }

    #[test]
    fn a_failed_write_is_kept_and_counted_until_the_barrier() {
        let d = tempfile::tempdir().unwrap();
        let mut disk = Disk::start().unwrap();
        let mut out = disk.open(d.path().join("missing-dir").join("f"), 4).unwrap();
        out.write_all(b"12345678").unwrap();
        out.close().unwrap();
        let report = disk.barrier();
        // The open failed; the append and the close that follow it fail too.
        assert_eq!(report.count, 3, "{report:?}");
        assert_eq!(report.first.unwrap().kind(), io::ErrorKind::NotFound);
        // Taken: the next barrier starts afresh.
        assert_eq!(disk.barrier().count, 0);
    }
}
