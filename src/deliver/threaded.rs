//! Runs an output on its own thread, so that writing (and hashing what is written) overlaps with
//! decoding, reassembly and object hashing on the pipeline thread.
//!
//! Records borrow from the capture; crossing a thread needs owned copies, so records are copied
//! into batches ([`Records`]: one buffer for a batch's bytes) and sent over a bounded channel:
//! when the output falls behind, the pipeline waits (back-pressure), nothing is dropped. Emptied
//! batches come back over a second channel and are filled again, so that the copy costs no
//! allocation in the steady state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::record::{Record, RecordSink, Records};

/// Records per batch, bytes per batch (past which it goes before it is full), and batches in
/// flight: at most about 64 x 1 MiB queued.
const BATCH: usize = 256;
const BATCH_BYTES: usize = 1 << 20;
const IN_FLIGHT: usize = 64;

/// A [`RecordSink`] that hands records to `S` on a thread of its own.
pub struct Threaded<S: RecordSink + Send + 'static> {
    batch: Records,
    tx: Option<SyncSender<Records>>,
    /// Emptied batches back from the output thread.
    spare: Receiver<Records>,
    worker: Option<JoinHandle<S>>,
    /// Batches sent, and batches the output thread has taken (for [`Threaded::wait_taken`]).
    sent: u64,
    taken: Arc<AtomicU64>,
}

/// The output thread's end: batches in, emptied batches back.
struct Ends {
    rx: Receiver<Records>,
    back: SyncSender<Records>,
    taken: Arc<AtomicU64>,
}

impl Ends {
    fn take(&self, mut batch: Records, sink: &mut dyn RecordSink) {
        batch.replay(sink);
        self.taken.fetch_add(1, Ordering::Release);
        // The pipeline may have gone (finish): the batch is then dropped.
        let _ = self.back.try_send(batch);
    }
}

impl<S: RecordSink + Send + 'static> Threaded<S> {
    fn channels() -> (SyncSender<Records>, Receiver<Records>, Ends) {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let (back, spare) = sync_channel(IN_FLIGHT);
        (tx, spare, Ends { rx, back, taken: Arc::new(AtomicU64::new(0)) })
    }

    fn new(tx: SyncSender<Records>, spare: Receiver<Records>, taken: Arc<AtomicU64>, worker: JoinHandle<S>) -> Self {
        Threaded { batch: Records::default(), tx: Some(tx), spare, worker: Some(worker), sent: 0, taken }
    }

    pub fn spawn(mut sink: S) -> Threaded<S> {
        let (tx, spare, ends) = Self::channels();
        let taken = ends.taken.clone();
        let worker = std::thread::Builder::new()
            .name("tapir-output".into())
            .spawn(move || {
                while let Ok(batch) = ends.rx.recv() {
                    ends.take(batch, &mut sink);
                }
                sink
            })
            .expect("spawning the output thread");
        Self::new(tx, spare, taken, worker)
    }

    /// As [`Threaded::spawn`], and `observe` is called with the output on its own thread about
    /// every `every` (between batches, also while no record comes): how the daemon reads a
    /// delivery's state (spool depth, connections) for its metrics without a lock on the path.
    pub fn spawn_observed(
        mut sink: S,
        every: std::time::Duration,
        mut observe: impl FnMut(&S) + Send + 'static,
    ) -> Threaded<S> {
        use std::sync::mpsc::RecvTimeoutError;
        use std::time::Instant;
        let (tx, spare, ends) = Self::channels();
        let taken = ends.taken.clone();
        let worker = std::thread::Builder::new()
            .name("tapir-output".into())
            .spawn(move || {
                observe(&sink);
                let mut last = Instant::now();
                loop {
                    match ends.rx.recv_timeout(every) {
                        Ok(batch) => ends.take(batch, &mut sink),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                    if last.elapsed() >= every {
                        observe(&sink);
                        last = Instant::now();
                    }
                }
                observe(&sink);
                sink
            })
            .expect("spawning the output thread");
        Self::new(tx, spare, taken, worker)
    }

    fn send(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let next = self.spare.try_recv().unwrap_or_default();
        let batch = std::mem::replace(&mut self.batch, next);
        if let Some(tx) = &self.tx {
            // The receiver only goes away if the output thread panicked; `finish` reports that.
            if tx.send(batch).is_ok() {
                self.sent += 1;
            }
        }
    }

    /// Hands what is gathered on and waits until the output has taken every record so far (an
    /// MDF's checkpoint: what it numbered is then in the spools). `false`: the output thread
    /// is gone (it panicked).
    pub fn wait_taken(&mut self) -> bool {
        self.send();
        while self.taken.load(Ordering::Acquire) < self.sent {
            if self.worker.as_ref().is_none_or(|w| w.is_finished()) {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        true
    }

    /// Hands the records gathered so far to the output thread now, not when the batch is full:
    /// a live daemon calls it on a timer so that a quiet target's records reach the case and the
    /// LEA within a fraction of a second.
    pub fn flush(&mut self) {
        self.send();
    }

    /// Sends what is pending, waits for the output to take everything and gives it back.
    pub fn finish(mut self) -> std::thread::Result<S> {
        self.send();
        drop(self.tx.take());
        self.worker.take().expect("joined once").join()
    }
}

impl<S: RecordSink + Send + 'static> RecordSink for Threaded<S> {
    fn record(&mut self, rec: Record<'_>) {
        self.batch.record(rec);
        if self.batch.len() >= BATCH || self.batch.byte_len() >= BATCH_BYTES {
            self.send();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::LinkType;
    use crate::record::{CcRecord, Cin, Liid, VecSink};
    use crate::timestamp::Timestamp;

    #[test]
    fn records_arrive_in_order_and_complete() {
        let mut t = Threaded::spawn(VecSink::default());
        let liid = Liid::new("L").unwrap();
        for i in 0..1000u32 {
            let data = i.to_be_bytes();
            t.record(Record::Cc(CcRecord {
                liid: &liid,
                cin: Cin::FIRST,
                ts: Timestamp(i as i64),
                link: LinkType::Raw,
                data: &data,
                orig_len: 4,
                dir: None,
                target: None,
            }));
        }
        let sink = t.finish().unwrap();
        assert_eq!(sink.cc.len(), 1000);
        assert!(sink.cc.iter().enumerate().all(|(i, c)| c.3 == (i as u32).to_be_bytes()));
    }

    /// A sink that takes its time: what `wait_taken` waits for.
    #[derive(Default)]
    struct Slow(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl RecordSink for Slow {
        fn record(&mut self, _: Record<'_>) {
            std::thread::sleep(std::time::Duration::from_micros(200));
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn wait_taken_returns_once_the_output_has_every_record() {
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut t = Threaded::spawn(Slow(seen.clone()));
        let liid = Liid::new("L").unwrap();
        for round in 1..=3usize {
            for _ in 0..300 {
                t.record(Record::Cc(CcRecord {
                    liid: &liid,
                    cin: Cin::FIRST,
                    ts: Timestamp(0),
                    link: LinkType::Raw,
                    data: b"x",
                    orig_len: 1,
                    dir: None,
                    target: None,
                }));
            }
            assert!(t.wait_taken());
            assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 300 * round);
        }
        t.finish().unwrap();
    }
}
