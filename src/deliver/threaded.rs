//! Runs an output on its own thread, so that writing (and hashing what is written) overlaps with
//! decoding, reassembly and object hashing on the pipeline thread.
//!
//! Records borrow from the capture; crossing a thread needs owned copies, so records are copied
//! into batches and sent over a bounded channel: when the output falls behind, the pipeline
//! waits (back-pressure), nothing is dropped.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::record::{Owned, Record, RecordSink};

/// Records per batch, and batches in flight: about 256 x 1.5 KB x 64 = 24 MB at most queued.
const BATCH: usize = 256;
const IN_FLIGHT: usize = 64;

/// A [`RecordSink`] that hands records to `S` on a thread of its own.
pub struct Threaded<S: RecordSink + Send + 'static> {
    batch: Vec<Owned>,
    tx: Option<SyncSender<Vec<Owned>>>,
    worker: Option<JoinHandle<S>>,
}

impl<S: RecordSink + Send + 'static> Threaded<S> {
    pub fn spawn(mut sink: S) -> Threaded<S> {
        let (tx, rx): (SyncSender<Vec<Owned>>, Receiver<Vec<Owned>>) = sync_channel(IN_FLIGHT);
        let worker = std::thread::Builder::new()
            .name("tapir-output".into())
            .spawn(move || {
                for batch in rx {
                    for r in batch {
                        r.replay(&mut sink);
                    }
                }
                sink
            })
            .expect("spawning the output thread");
        Threaded { batch: Vec::with_capacity(BATCH), tx: Some(tx), worker: Some(worker) }
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
        let (tx, rx): (SyncSender<Vec<Owned>>, Receiver<Vec<Owned>>) = sync_channel(IN_FLIGHT);
        let worker = std::thread::Builder::new()
            .name("tapir-output".into())
            .spawn(move || {
                observe(&sink);
                let mut last = Instant::now();
                loop {
                    match rx.recv_timeout(every) {
                        Ok(batch) => {
                            for r in batch {
                                r.replay(&mut sink);
                            }
                        }
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
        Threaded { batch: Vec::with_capacity(BATCH), tx: Some(tx), worker: Some(worker) }
    }

    fn send(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        if let Some(tx) = &self.tx {
            // The receiver only goes away if the output thread panicked; `finish` reports that.
            let _ = tx.send(batch);
        }
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
        self.batch.push(Owned::of(rec));
        if self.batch.len() >= BATCH {
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
}
