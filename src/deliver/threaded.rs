//! Runs an output on its own thread, so that writing (and hashing what is written) overlaps with
//! decoding, reassembly and object hashing on the pipeline thread.
//!
//! Records borrow from the capture; crossing a thread needs owned copies, so records are copied
//! into batches and sent over a bounded channel: when the output falls behind, the pipeline
//! waits (back-pressure), nothing is dropped.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::capture::LinkType;
use crate::record::{CcRecord, Cin, Dir, IriRecord, Liid, ObjectId, ObjectMeta, ObjectRecord, Record, RecordSink};
use crate::timestamp::Timestamp;

enum Owned {
    Iri(Box<IriRecord>),
    Cc {
        liid: Liid,
        cin: Cin,
        ts: Timestamp,
        link: LinkType,
        data: Vec<u8>,
        orig_len: u32,
        dir: Option<Dir>,
        target: Option<Dir>,
    },
    Begin {
        liid: Liid,
        id: ObjectId,
        meta: Box<ObjectMeta>,
    },
    Data {
        liid: Liid,
        id: ObjectId,
        offset: u64,
        data: Vec<u8>,
    },
    Gap {
        liid: Liid,
        id: ObjectId,
        offset: u64,
        len: u64,
    },
    End(Box<ObjectRecord>, ObjectId),
    Closed {
        liid: Liid,
        cin: Cin,
        ts: Timestamp,
    },
}

impl Owned {
    fn of(rec: Record<'_>) -> Owned {
        match rec {
            Record::Iri(r) => Owned::Iri(Box::new(r)),
            Record::Cc(c) => Owned::Cc {
                liid: c.liid.clone(),
                cin: c.cin,
                ts: c.ts,
                link: c.link,
                data: c.data.to_vec(),
                orig_len: c.orig_len,
                dir: c.dir,
                target: c.target,
            },
            Record::ObjectBegin { liid, id, meta } => {
                Owned::Begin { liid: liid.clone(), id, meta: Box::new(meta.clone()) }
            }
            Record::ObjectData { liid, id, offset, data } => {
                Owned::Data { liid: liid.clone(), id, offset, data: data.to_vec() }
            }
            Record::ObjectGap { liid, id, offset, len } => Owned::Gap { liid: liid.clone(), id, offset, len },
            Record::ObjectEnd(r, id) => Owned::End(Box::new(r), id),
            Record::SessionClosed { liid, cin, ts } => Owned::Closed { liid: liid.clone(), cin, ts },
        }
    }

    fn replay(&self, sink: &mut dyn RecordSink) {
        let rec = match self {
            Owned::Iri(r) => Record::Iri((**r).clone()),
            Owned::Cc { liid, cin, ts, link, data, orig_len, dir, target } => Record::Cc(CcRecord {
                liid,
                cin: *cin,
                ts: *ts,
                link: *link,
                data,
                orig_len: *orig_len,
                dir: *dir,
                target: *target,
            }),
            Owned::Begin { liid, id, meta } => Record::ObjectBegin { liid, id: *id, meta },
            Owned::Data { liid, id, offset, data } => Record::ObjectData { liid, id: *id, offset: *offset, data },
            Owned::Gap { liid, id, offset, len } => Record::ObjectGap { liid, id: *id, offset: *offset, len: *len },
            Owned::End(r, id) => Record::ObjectEnd((**r).clone(), *id),
            Owned::Closed { liid, cin, ts } => Record::SessionClosed { liid, cin: *cin, ts: *ts },
        };
        sink.record(rec);
    }
}

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
                    for r in &batch {
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
                            for r in &batch {
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
    use crate::record::VecSink;

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
