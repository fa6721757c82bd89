//! The case writer's file writes and the hashing of its files, on threads of their own where
//! the box has cores for them.
//!
//! With every packet targeted, the case writer spent about half its time in the kernel, copying
//! CC and object bytes into the page cache (perf: 2.4 of 4.7 µs a packet), and a fifth hashing
//! its files for the manifest, on the one thread that every worker's records pass through.
//! However many cores a box has, a run could go no faster than that thread. So the case writer
//! numbers and formats; [`Disk`] takes each file's SHA-256 over its buffers as they are handed
//! over (`tapir-hash`), and makes the system calls in the order they were asked for
//! (`tapir-disk`).
//!
//! **Threads or inline.** On two cores the two threads cost more than they give: every buffer
//! is read again from memory on another core, and five threads share two cores. Fully targeted
//! replays of 1 GB, alternating: 2.7-3.4 s before these stages, 3.3-4.1 s with their threads,
//! 2.9-3.2 s with them inline.
//! So the same two stages run on the case writer's own thread unless the box has a core beyond
//! the pipeline's and the case writer's ([`threads_by_default`]); `TAPIR_DISK_THREADS=1` (or
//! `0`) says otherwise, for a bench.
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
/// A buffer grown past this (by one large frame or line) is freed, not kept for reuse.
const MAX_POOLED: usize = 1 << 20;

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
    /// (a hole after the data, which costs no disk).
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
    if b.capacity() > MAX_POOLED {
        return;
    }
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

/// Sends a barrier with `send` and waits for its answer (a stage gone answers that it is).
fn barrier_through(send: impl FnOnce(Op) -> bool) -> DiskReport {
    let (reply, answer) = sync_channel(1);
    if !send(Op::Barrier(reply)) {
        return gone_report();
    }
    answer.recv().unwrap_or_else(|_| gone_report())
}

/// Whether the hashing and the writes get threads of their own: when the box has more than two
/// cores (the pipeline's and the case writer's), or as `TAPIR_DISK_THREADS` says (`1` or `0`).
pub fn threads_by_default() -> bool {
    match std::env::var("TAPIR_DISK_THREADS").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => std::thread::available_parallelism().is_ok_and(|n| n.get() > 2),
    }
}

/// Where operations go: to the hashing thread, or through both stages on the caller's thread.
#[derive(Clone)]
enum Route {
    Threads(SyncSender<Op>),
    Inline(Arc<Mutex<(Hasher, Writer)>>),
}

impl Route {
    fn send(&self, op: Op) -> io::Result<()> {
        match self {
            Route::Threads(tx) => tx.send(op).map_err(|_| gone()),
            Route::Inline(stages) => {
                let mut stages = stages.lock().map_err(|_| gone())?;
                let (hasher, writer) = &mut *stages;
                match op {
                    Op::Barrier(reply) => {
                        let mut report = writer.report();
                        report.closed = hasher.closed();
                        let _ = reply.send(report);
                    }
                    op => {
                        hasher.see(&op);
                        writer.make(op);
                    }
                }
                Ok(())
            }
        }
    }
}

/// The way to the hashing and disk stages. Their threads, if any, end when this and every
/// [`Out`] are gone, once they have done what was asked; [`Disk::barrier`] is how to know that
/// they have.
pub struct Disk {
    route: Route,
    pool: Pool,
    next_id: u32,
}

impl Disk {
    /// The two stages on threads of their own (`threads`), or on the caller's.
    pub fn start(threads: bool) -> io::Result<Disk> {
        let pool = Pool::default();
        let writer = Writer { files: HashMap::new(), report: DiskReport::default(), pool: pool.clone() };
        let route = if threads {
            let (tx, rx) = sync_channel(IN_FLIGHT);
            let (to_disk, disk_rx) = sync_channel(IN_FLIGHT);
            std::thread::Builder::new().name("tapir-disk".into()).spawn(move || write(disk_rx, writer))?;
            std::thread::Builder::new().name("tapir-hash".into()).spawn(move || hash(rx, to_disk))?;
            Route::Threads(tx)
        } else {
            Route::Inline(Arc::new(Mutex::new((Hasher::default(), writer))))
        };
        Ok(Disk { route, pool, next_id: 0 })
    }

    fn send(&self, op: Op) -> io::Result<()> {
        self.route.send(op)
    }

    /// A file created at `path`, written through buffers of `capacity` bytes.
    pub fn open(&mut self, path: PathBuf, capacity: usize) -> io::Result<Out> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(Op::Open(id, path))?;
        Ok(Out { id, buf: buffer(&self.pool, capacity), capacity, route: self.route.clone(), pool: self.pool.clone() })
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
        barrier_through(|op| self.send(op).is_ok())
    }
}

/// Each file's SHA-256 and size, over its buffers in order.
#[derive(Default)]
struct Hasher {
    open: HashMap<u32, (ring::digest::Context, u64)>,
    closed: HashMap<u32, (u64, String)>,
}

impl Hasher {
    fn see(&mut self, op: &Op) {
        match op {
            Op::Open(id, _) => {
                self.open.insert(*id, (ring::digest::Context::new(&ring::digest::SHA256), 0));
            }
            Op::Append(id, data) => {
                if let Some((sha256, len)) = self.open.get_mut(id) {
                    sha256.update(data);
                    *len += data.len() as u64;
                }
            }
            Op::Close(id) => {
                if let Some((sha256, len)) = self.open.remove(id) {
                    self.closed.insert(*id, (len, hex::encode(sha256.finish().as_ref())));
                }
            }
            Op::Create(_) | Op::WriteAt { .. } | Op::Store { .. } | Op::Barrier(_) => {}
        }
    }

    /// The files closed since the last call.
    fn closed(&mut self) -> HashMap<u32, (u64, String)> {
        std::mem::take(&mut self.closed)
    }
}

/// The system calls, in order, and what went wrong.
struct Writer {
    files: HashMap<u32, File>,
    report: DiskReport,
    pool: Pool,
}

impl Writer {
    /// Makes `op` (a barrier is answered by whoever drives the stages).
    fn make(&mut self, op: Op) {
        let never_opened = |id| io::Error::other(format!("case file {id} was never opened"));
        let r = match op {
            Op::Open(id, path) => File::create(&path).map(|f| {
                self.files.insert(id, f);
            }),
            Op::Append(id, data) => {
                let r = self.files.get_mut(&id).ok_or_else(|| never_opened(id)).and_then(|f| f.write_all(&data));
                recycle(&self.pool, data);
                r
            }
            Op::Close(id) => self.files.remove(&id).ok_or_else(|| never_opened(id)).and_then(|f| f.sync_all()),
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
                recycle(&self.pool, data);
                r
            }
            Op::Store { src, dest } => {
                if dest.exists() {
                    fs::remove_file(&src)
                } else {
                    fs::rename(&src, &dest)
                }
            }
            Op::Barrier(_) => Ok(()),
        };
        if let Err(e) = r {
            self.report.add(e);
        }
    }

    /// The errors since the last call.
    fn report(&mut self) -> DiskReport {
        std::mem::take(&mut self.report)
    }
}

/// The hashing thread: hashes, then hands on to the disk thread.
fn hash(rx: Receiver<Op>, disk: SyncSender<Op>) {
    let mut hasher = Hasher::default();
    for op in rx {
        if let Op::Barrier(reply) = op {
            // Answered once the disk has done everything before it, with the digests added.
            let mut report = barrier_through(|op| disk.send(op).is_ok());
            report.closed = hasher.closed();
            let _ = reply.send(report);
            continue;
        }
        hasher.see(&op);
        if disk.send(op).is_err() {
            return;
        }
    }
}

/// The disk thread.
fn write(rx: Receiver<Op>, mut writer: Writer) {
    for op in rx {
        match op {
            Op::Barrier(reply) => {
                let _ = reply.send(writer.report());
            }
            op => writer.make(op),
        }
    }
}

/// A file being written through the disk thread, hashed on the way.
pub struct Out {
    id: u32,
    buf: Vec<u8>,
    capacity: usize,
    route: Route,
    pool: Pool,
}

impl Out {
    /// Hands the buffer to the disk thread, and takes an emptied one.
    fn hand_over(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, buffer(&self.pool, self.capacity));
        self.route.send(Op::Append(self.id, full))
    }

    /// Hands over the rest and asks for the file to be synced and closed. Its id: the next
    /// [`Disk::barrier`] tells its size and SHA-256, and whether the disk did it.
    pub fn close(mut self) -> io::Result<u32> {
        self.hand_over()?;
        self.route.send(Op::Close(self.id))?;
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
        for threads in [true, false] {
            writes_land_in_order(threads);
        }
    }

    fn writes_land_in_order(threads: bool) {
        let d = tempfile::tempdir().unwrap();
        let mut disk = Disk::start(threads).unwrap();
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
    fn a_buffer_one_large_frame_grew_is_not_kept() {
        let pool = Pool::default();
        recycle(&pool, Vec::with_capacity(MAX_POOLED + 1));
        recycle(&pool, Vec::with_capacity(MAX_POOLED));
        assert_eq!(pool.lock().unwrap().len(), 1);
        for _ in 0..2 * POOL {
            recycle(&pool, Vec::with_capacity(16));
        }
        assert_eq!(pool.lock().unwrap().len(), POOL);
    }

    #[test]
    fn a_failed_write_is_kept_and_counted_until_the_barrier() {
        for threads in [true, false] {
            a_failed_write_is_kept(threads);
        }
    }

    fn a_failed_write_is_kept(threads: bool) {
        let d = tempfile::tempdir().unwrap();
        let mut disk = Disk::start(threads).unwrap();
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
