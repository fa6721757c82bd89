//! Inspection of the images targets upload, inside `replay` and `run`, off the packet path.
//!
//! The [`Intake`] watches the records on their way to the outputs (after the scope gate, so it
//! only ever sees the bytes of warrants that may have content). An object whose first bytes say
//! "disk image" (or "memory dump") is copied to a spool file as its bytes pass; when it ends, a
//! job goes to the inspection thread. The packet path never waits: a full queue keeps jobs
//! waiting (a bounded number; past it an image is refused and reported so), and the copy costs
//! a write per object byte of images only.
//!
//! The inspection thread runs [`super::inspect_extracting`] (bounded in time by
//! [`IntakeConfig::time_limit`], in memory by the readers' own caches), writes each artifact it
//! finds to a spool file and hands back an [`Inspection`]: the summary ([`VmiEvent`], the IRI),
//! the whole report (JSON) and the artifacts, each readable once. The pipeline turns it into
//! objects and records (`Pipeline::inspected`); the spool files are removed
//! as they are read.
//!
//! Why a copy and not the case's own file: the case writer is an output, further down the
//! pipeline; an analyzer reading back what an output wrote would make data flow upwards. The
//! copy is made sparse (all-zero blocks are skipped), so a raw image costs what it holds.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize};

use super::{linux, Place};
use crate::content::format::inspectable;
use crate::record::{de, reserve_head, ByIds, Liid, ObjectId, ObjectRecord, Record, RecordSink};
use crate::timestamp::Timestamp;

/// Bytes of an object looked at before deciding whether it is an image.
const HEAD: usize = 64 * 1024;

/// Capture time after an image's end from which a replay waits for its inspection
/// ([`Intake::wait_due`]).
pub const REPLAY_GRACE_NS: i64 = 1_000_000_000;

/// Where and how much.
#[derive(Clone, Debug)]
pub struct IntakeConfig {
    /// Spool files live here (created if absent; removed by [`Intake::finish`] when empty).
    pub work_dir: PathBuf,
    /// Images larger than this are not copied nor inspected; reported as too large.
    pub max_image_bytes: u64,
    /// How long one inspection may walk filesystems.
    pub time_limit: Duration,
    /// Jobs handed to the inspection thread at most at a time, and jobs kept waiting beyond
    /// those at most (each a file name and a record: a few hundred bytes).
    pub queue: usize,
    pub waiting: usize,
    /// A replay's choice: when the queue and the waiting list are full, wait for room instead
    /// of refusing the image (what a replay finds must not depend on the speed of the machine).
    pub wait_when_full: bool,
    /// Artifacts extracted per image at most, and their bytes at most.
    pub max_artifacts: usize,
    pub max_artifact_bytes: u64,
    /// Copies of inspected images kept for the run, at most, so that an overlay uploaded later
    /// is read with its backing image (matched by file name or digest within the LIID).
    pub keep_bytes: u64,
}

impl IntakeConfig {
    pub fn new(work_dir: PathBuf) -> IntakeConfig {
        IntakeConfig {
            work_dir,
            max_image_bytes: 64 << 30,
            time_limit: super::DEFAULT_TIME_LIMIT,
            queue: 2,
            waiting: 256,
            wait_when_full: false,
            max_artifacts: 10_000,
            max_artifact_bytes: 4 << 30,
            keep_bytes: 16 << 30,
        }
    }
}

/// What the run's summary says of the intake.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IntakeStats {
    /// Images copied and queued.
    pub queued: u64,
    pub inspected: u64,
    /// Images not inspected: larger than the bound, queue full, or unreadable spool.
    pub refused: u64,
    /// Most bytes held in spool files at once.
    pub spool_peak: u64,
    /// The longest time from an image's end to the end of its inspection, in seconds.
    pub slowest_seconds: f64,
}

enum Tracked {
    /// Deciding: the first bytes so far.
    Head(Vec<u8>),
    /// An image: its bytes go to `path`; `next` is the offset written up to.
    Spool { file: BufWriter<File>, path: PathBuf, next: u64 },
    /// Too large: no bytes kept.
    TooLarge,
    /// Its copy failed (the work directory's disk is full?): no bytes kept.
    Failed(String),
}

/// An image to inspect: its record and its copy.
struct Job {
    image: Box<ObjectRecord>,
    spool: PathBuf,
    /// Images of the same LIID inspected before and kept, where a backing file this image
    /// names is looked for.
    backings: Vec<Kept>,
    queued_at: Instant,
}

/// Why an image was not inspected.
enum Refusal {
    /// Larger than [`IntakeConfig::max_image_bytes`] (its copy stopped there).
    TooLarge,
    /// Writing its copy failed.
    Copy(String),
}

impl Refusal {
    fn describe(&self, max: u64) -> String {
        match self {
            Refusal::TooLarge => format!("larger than {max} bytes: not inspected"),
            Refusal::Copy(e) => format!("could not be copied for inspection: {e}"),
        }
    }
}

/// The inspection of an image that was not inspected: the summary says why.
fn refusal(image: Box<ObjectRecord>, outcome: &'static str, why: String) -> Inspection {
    let mut event = VmiEvent::new(&image, outcome);
    event.notes.push(why);
    Inspection { image, event, report: Vec::new(), artifacts: Vec::new(), spool: None }
}

/// One artifact, readable once (its spool file goes when the reader is dropped).
pub struct Artifact {
    /// `mail`, `crontab`, `ssh-keys`, `media`.
    pub kind: &'static str,
    pub place: Place,
    pub size: u64,
    pub sha256: String,
    pub bytes: Box<dyn Read + Send>,
}

impl std::fmt::Debug for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifact")
            .field("kind", &self.kind)
            .field("place", &self.place)
            .field("size", &self.size)
            .finish()
    }
}

/// A finished inspection, for the pipeline to deliver.
#[derive(Debug)]
pub struct Inspection {
    pub image: Box<ObjectRecord>,
    pub event: VmiEvent,
    /// The whole report, JSON (the `report` object).
    pub report: Vec<u8>,
    pub artifacts: Vec<Artifact>,
    /// The image's copy, for the intake to keep (a later overlay's backing) or remove.
    spool: Option<PathBuf>,
}

/// A user account, as the summary gives it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmiUser {
    pub name: String,
    pub uid: u32,
    /// `set`, `locked`, `empty` or `unknown`; never the hash.
    #[serde(deserialize_with = "de::static_str")]
    pub password: de::StaticStr,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// A crontab line, and where it was found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmiCron {
    /// The path, or `source @ offset` for a line carved from memory.
    pub place: String,
    pub user: Option<String>,
    pub line: String,
    /// `@reboot`, `@daily`..., or the five time fields (absent for a carved line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// An authorized SSH key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmiKey {
    pub user: String,
    pub key_type: String,
    pub comment: String,
    pub fingerprint: String,
}

/// An artifact, as the summary gives it: what, where, its digest and the object it became.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmiFound {
    #[serde(deserialize_with = "de::static_str")]
    pub kind: de::StaticStr,
    pub place: String,
    pub from_memory: bool,
    pub size: u64,
    pub sha256: String,
    /// The artifact's object id in the case (set when delivered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectId>,
    /// An object the target sent before the inspection ended with the same SHA-256 (set when
    /// delivered): the link from this side, when the traffic came first.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::present")]
    pub equals_object: Option<serde_json::Value>,
    /// Media: `mp4`, `png`...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Media: an MP4, FLV or Matroska file's H.264/H.265 pictures, for the stream that sends
    /// them re-wrapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<crate::media::fingerprint::Fingerprint>,
    /// Mail: its headers.
    #[serde(flatten, skip_serializing_if = "Option::is_none", deserialize_with = "mail_headers")]
    pub mail: Option<linux::MailHeaders>,
}

/// [`VmiFound::mail`] read back. Flattened, `None` writes no key and `Some` writes all five
/// (`null` for a header the message lacks): any of them present is `Some`, even all `null`.
fn mail_headers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<linux::MailHeaders>, D::Error> {
    #[derive(Deserialize)]
    struct Keys {
        #[serde(default, deserialize_with = "de::present")]
        from: Option<Option<String>>,
        #[serde(default, deserialize_with = "de::present")]
        to: Option<Option<String>>,
        #[serde(default, deserialize_with = "de::present")]
        subject: Option<Option<String>>,
        #[serde(default, deserialize_with = "de::present")]
        message_id: Option<Option<String>>,
        #[serde(default, deserialize_with = "de::present")]
        date: Option<Option<String>>,
    }
    let k = Keys::deserialize(d)?;
    let any = [&k.from, &k.to, &k.subject, &k.message_id, &k.date].iter().any(|v| v.is_some());
    Ok(any.then(|| linux::MailHeaders {
        from: k.from.flatten(),
        to: k.to.flatten(),
        subject: k.subject.flatten(),
        message_id: k.message_id.flatten(),
        date: k.date.flatten(),
    }))
}

/// The IRI of one image inspection (`event: vmi`): what an analyst needs first, with the
/// report object for the rest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmiEvent {
    /// The image's object id and digest.
    pub image_object: ObjectId,
    pub image_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// `inspected`, `too-large`, `queue-full`, `unreadable` or `failed`.
    #[serde(deserialize_with = "de::static_str")]
    pub outcome: de::StaticStr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<u64>,
    /// The backing images read under this one (an overlay's base, uploaded before it), by the
    /// name the image gives, nearest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backing_chain: Vec<String>,
    /// `partition N: ext4 "label"`, one each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filesystems: Vec<String>,
    /// Internal snapshots (`id "name"`, with `+ RAM` when it saved the VM's state).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<VmiUser>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sudoers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<VmiKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crontabs: Vec<VmiCron>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enabled_units: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rc_local: Vec<String>,
    /// Every artifact extracted (mail, crontabs, key files, media), each an object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<VmiFound>,
    /// The report object (set when delivered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_object: Option<ObjectId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_sha256: Option<String>,
    /// What could not be read, bounds reached, why not inspected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Time from the image's end to the end of its inspection: for the run's summary, not the
    /// evidence (a record must not depend on the machine's speed). Not written: 0 in an event
    /// read back from its JSON.
    #[serde(skip)]
    pub seconds: f64,
}

impl VmiEvent {
    fn new(image: &ObjectRecord, outcome: &'static str) -> VmiEvent {
        VmiEvent {
            image_object: image.id,
            image_sha256: image.sha256.clone(),
            image_name: image.meta.name.clone(),
            outcome,
            container: None,
            virtual_size: None,
            backing_chain: Vec::new(),
            filesystems: Vec::new(),
            snapshots: Vec::new(),
            os: None,
            hostname: None,
            timezone: None,
            users: Vec::new(),
            sudoers: Vec::new(),
            ssh_keys: Vec::new(),
            crontabs: Vec::new(),
            enabled_units: Vec::new(),
            rc_local: Vec::new(),
            artifacts: Vec::new(),
            report_object: None,
            report_sha256: None,
            notes: Vec::new(),
            seconds: 0.0,
        }
    }
}

/// Watches records for images, copies them, and runs their inspection on its own thread.
pub struct Intake {
    cfg: IntakeConfig,
    tracked: ByIds<(Liid, ObjectId), Tracked>,
    jobs: Option<SyncSender<Job>>,
    waiting: VecDeque<Job>,
    /// Refusals, reported at the next poll.
    ready: Vec<Inspection>,
    /// Results taken while waiting to hand the thread a job, in order.
    early: VecDeque<Inspection>,
    /// The capture time each job handed on (waiting or sent) ended at, in order: results come
    /// back in this order.
    outstanding: VecDeque<Timestamp>,
    results: Receiver<Inspection>,
    worker: Option<JoinHandle<()>>,
    next_file: u64,
    /// Bytes in spool files now (image copies being written or waiting).
    spooled: u64,
    /// Copies kept after their inspection, per LIID, for overlays uploaded later; at most
    /// [`IntakeConfig::keep_bytes`] in all.
    kept: HashMap<Liid, Vec<Kept>>,
    kept_bytes: u64,
    pub stats: IntakeStats,
}

impl Intake {
    /// Starts the inspection thread. The work directory is made now: failing that is the
    /// operator's to fix before any traffic is read.
    pub fn start(cfg: IntakeConfig) -> io::Result<Intake> {
        std::fs::create_dir_all(&cfg.work_dir)?;
        let (jobs, job_rx) = sync_channel::<Job>(cfg.queue.max(1));
        let (res_tx, results) = sync_channel::<Inspection>(1);
        let worker_cfg = cfg.clone();
        let worker = std::thread::Builder::new()
            .name("tapir-vmi".into())
            .spawn(move || inspector(worker_cfg, job_rx, res_tx))?;
        Ok(Intake {
            cfg,
            tracked: ByIds::default(),
            jobs: Some(jobs),
            waiting: VecDeque::new(),
            ready: Vec::new(),
            early: VecDeque::new(),
            outstanding: VecDeque::new(),
            results,
            worker: Some(worker),
            next_file: 0,
            spooled: 0,
            kept: HashMap::new(),
            kept_bytes: 0,
            stats: IntakeStats::default(),
        })
    }

    /// A sink that shows every record to the intake, then passes it to `inner`.
    pub fn tap<'a>(&'a mut self, inner: &'a mut dyn RecordSink) -> Tap<'a> {
        Tap { intake: self, inner }
    }

    /// Shows a record to the intake (what [`Intake::tap`] does for every record it passes).
    pub fn observe(&mut self, rec: &Record<'_>) {
        match rec {
            // What an inspection produced is not inspected again.
            Record::ObjectBegin { liid, id, meta } if meta.protocol != "vmi" => {
                self.tracked.insert(((*liid).clone(), *id), Tracked::Head(Vec::new()));
            }
            Record::ObjectData { liid, id, offset, data } => self.bytes(liid, *id, *offset, Some(data), 0),
            Record::ObjectGap { liid, id, offset, len } => self.bytes(liid, *id, *offset, None, *len),
            Record::ObjectEnd(o, id) => {
                let Some(t) = self.tracked.remove(&(o.liid.clone(), *id)) else { return };
                self.ended(t, o);
            }
            _ => {}
        }
    }

    fn bytes(&mut self, liid: &Liid, id: ObjectId, offset: u64, data: Option<&[u8]>, gap: u64) {
        let key = (liid.clone(), id);
        let Some(t) = self.tracked.get_mut(&key) else { return };
        let len = data.map_or(gap, |d| d.len() as u64);
        match t {
            Tracked::Head(head) => {
                reserve_head(head, data.map_or(0, <[u8]>::len), HEAD);
                match data {
                    Some(d) => head.extend_from_slice(d),
                    None => head.resize(head.len() + gap.min(HEAD as u64) as usize, 0),
                }
                if head.len() >= HEAD {
                    let head = std::mem::take(head);
                    self.decide(key, head);
                }
            }
            Tracked::Spool { file, path, next } => {
                let end = offset.saturating_add(len);
                if end > self.cfg.max_image_bytes {
                    let _ = std::fs::remove_file(&*path);
                    self.spooled = self.spooled.saturating_sub(*next);
                    *t = Tracked::TooLarge;
                    return;
                }
                if let Some(Err(e)) = data.map(|d| sparse_write(file, *next, offset, d)) {
                    let _ = std::fs::remove_file(&*path);
                    self.spooled = self.spooled.saturating_sub(*next);
                    *t = Tracked::Failed(e.to_string());
                    return;
                }
                if end > *next {
                    self.spooled += end - *next;
                    self.stats.spool_peak = self.stats.spool_peak.max(self.spooled);
                    *next = end;
                }
            }
            Tracked::TooLarge | Tracked::Failed(_) => {}
        }
    }

    /// The head is in: an image starts its copy, anything else is forgotten.
    fn decide(&mut self, key: (Liid, ObjectId), head: Vec<u8>) {
        if inspectable(&head).is_none() {
            self.tracked.remove(&key);
            return;
        }
        self.next_file += 1;
        let path = self.cfg.work_dir.join(format!("image-{}", self.next_file));
        let t = match File::create(&path) {
            Ok(f) => {
                let mut file = BufWriter::with_capacity(1 << 20, f);
                match sparse_write(&mut file, 0, 0, &head) {
                    Ok(()) => {
                        self.spooled += head.len() as u64;
                        self.stats.spool_peak = self.stats.spool_peak.max(self.spooled);
                        Tracked::Spool { file, path, next: head.len() as u64 }
                    }
                    Err(e) => Tracked::Failed(e.to_string()),
                }
            }
            Err(e) => Tracked::Failed(e.to_string()),
        };
        self.tracked.insert(key, t);
    }

    fn ended(&mut self, t: Tracked, o: &ObjectRecord) {
        let max = self.cfg.max_image_bytes;
        let (spool, refused) = match t {
            Tracked::Head(head) => {
                // Shorter than the head: decided now, and small enough to copy at once.
                if inspectable(&head).is_none() {
                    return;
                }
                self.next_file += 1;
                let path = self.cfg.work_dir.join(format!("image-{}", self.next_file));
                match std::fs::write(&path, &head) {
                    Ok(()) => (Some(path), None),
                    Err(e) => (None, Some(Refusal::Copy(e.to_string()))),
                }
            }
            Tracked::Spool { file, path, next } => {
                let closed = file.into_inner().map_err(|e| e.into_error()).and_then(|f| f.set_len(o.size.max(next)));
                match closed {
                    Ok(()) => (Some(path), None),
                    Err(e) => {
                        let _ = std::fs::remove_file(&path);
                        self.spooled = self.spooled.saturating_sub(next);
                        (None, Some(Refusal::Copy(e.to_string())))
                    }
                }
            }
            Tracked::TooLarge => (None, Some(Refusal::TooLarge)),
            Tracked::Failed(e) => (None, Some(Refusal::Copy(e))),
        };
        let image = Box::new(o.clone());
        if let Some(why) = refused {
            self.stats.refused += 1;
            let outcome = if matches!(why, Refusal::TooLarge) { "too-large" } else { "unreadable" };
            self.ready.push(refusal(image, outcome, why.describe(max)));
            return;
        }
        let Some(spool) = spool else { return };
        self.stats.queued += 1;
        self.outstanding.push_back(image.last_seen);
        let backings = self.kept.get(&image.liid).cloned().unwrap_or_default();
        // Kept from now on (within the bound): an overlay that ends before this one's
        // inspection does is inspected after it, on the same thread, and finds it.
        let size = std::fs::metadata(&spool).map_or(image.size, |m| m.len());
        if self.kept_bytes + size <= self.cfg.keep_bytes {
            self.kept_bytes += size;
            let kept = Kept {
                name: image.meta.name.as_deref().and_then(|n| n.rsplit('/').next()).map(str::to_string),
                digests: [Some(&image.sha256), image.md5.as_ref()].into_iter().flatten().cloned().collect(),
                path: spool.clone(),
            };
            self.kept.entry(image.liid.clone()).or_default().push(kept);
        }
        self.waiting.push_back(Job { image, spool, backings, queued_at: Instant::now() });
        self.push_waiting();
        while self.cfg.wait_when_full && self.waiting.len() > self.cfg.waiting {
            if let Some(job) = self.waiting.pop_front() {
                self.send_draining(job);
            }
        }
        if self.waiting.len() > self.cfg.waiting {
            // The thread's queue is full and so is the waiting list: this one is reported,
            // not inspected.
            if let Some(job) = self.waiting.pop_back() {
                let _ = std::fs::remove_file(&job.spool);
                if let Some(v) = self.kept.get_mut(&job.image.liid) {
                    v.retain(|k| k.path != job.spool);
                }
                self.outstanding.pop_back();
                self.stats.queued -= 1;
                self.stats.refused += 1;
                let why = format!("{} images already waiting for inspection: not inspected", self.cfg.waiting);
                self.ready.push(refusal(job.image, "queue-full", why));
            }
        }
    }

    /// Hands waiting jobs to the thread as far as its queue takes them.
    fn push_waiting(&mut self) {
        let Some(tx) = &self.jobs else { return };
        while let Some(job) = self.waiting.pop_front() {
            match tx.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                    self.waiting.push_front(job);
                    break;
                }
            }
        }
    }

    /// The capture time at which the next inspection falls due for [`Intake::wait_due`] (its
    /// image's end plus [`REPLAY_GRACE_NS`]), if any is waiting.
    pub fn next_due(&self) -> Option<Timestamp> {
        let ready = self.ready.iter().map(|i| i.image.last_seen).min();
        let first = match (ready, self.outstanding.front().copied()) {
            (Some(r), Some(o)) => r.min(o),
            (r, o) => r.or(o)?,
        };
        Some(Timestamp(first.nanos().saturating_add(REPLAY_GRACE_NS)))
    }

    /// Inspections finished since the last call (never waits).
    pub fn poll(&mut self) -> Vec<Inspection> {
        self.push_waiting();
        let mut out = std::mem::take(&mut self.ready);
        while let Some(i) = self.early.pop_front() {
            out.push(self.done(i));
        }
        while let Ok(i) = self.results.try_recv() {
            out.push(self.done(i));
        }
        out
    }

    /// A replay's barrier: the inspections of images that ended more than [`REPLAY_GRACE_NS`]
    /// of capture time before `now` are waited for, so that what follows them in the capture
    /// (the mail the VM sends later) meets their findings whatever the speed of the replay.
    /// Live capture never calls this.
    pub fn wait_due(&mut self, now: Timestamp) -> Vec<Inspection> {
        let mut out = Vec::new();
        while let Some(i) = self.next_in_order(now.nanos()) {
            out.push(i);
        }
        out
    }

    /// The next inspection (or refusal) in the order the images ended, if its image ended at
    /// least [`REPLAY_GRACE_NS`] before `until` (ns); waits for its inspection. The same order
    /// and the same points in the capture whatever the speed of the run: what a replay
    /// delivers does not depend on timing.
    fn next_in_order(&mut self, until: i64) -> Option<Inspection> {
        let due = |t: Timestamp| t.nanos().saturating_add(REPLAY_GRACE_NS) <= until;
        let ready = self.ready.first().map(|i| i.image.last_seen);
        let job = self.outstanding.front().copied();
        if let Some(r) = ready.filter(|r| job.is_none_or(|j| *r <= j)) {
            return due(r).then(|| self.ready.remove(0));
        }
        if !due(job?) {
            return None;
        }
        loop {
            if let Some(i) = self.early.pop_front() {
                return Some(self.done(i));
            }
            if let Some(job) = self.waiting.pop_front() {
                self.send_draining(job);
                continue;
            }
            match self.results.recv() {
                Ok(i) => return Some(self.done(i)),
                Err(_) => {
                    self.outstanding.clear();
                    return None;
                }
            }
        }
    }

    /// Hands `job` to the thread, waiting for room; results that arrive meanwhile are kept in
    /// order (the thread may be waiting for one of them to be taken).
    fn send_draining(&mut self, mut job: Job) {
        let Some(tx) = self.jobs.clone() else { return };
        loop {
            match tx.try_send(job) {
                Ok(()) => return,
                Err(TrySendError::Full(j)) => {
                    job = j;
                    if let Ok(i) = self.results.recv_timeout(Duration::from_millis(10)) {
                        self.early.push_back(i);
                    }
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    fn done(&mut self, mut i: Inspection) -> Inspection {
        self.outstanding.pop_front();
        // A copy is removed once read, unless kept for the overlays that may follow.
        if let Some(spool) = i.spool.take() {
            let kept = self.kept.get(&i.image.liid).is_some_and(|v| v.iter().any(|k| k.path == spool));
            if !kept {
                let _ = std::fs::remove_file(spool);
            }
        }
        if i.event.outcome == "inspected" {
            self.stats.inspected += 1;
        }
        self.stats.slowest_seconds = self.stats.slowest_seconds.max(i.event.seconds);
        self.spooled = self.spooled.saturating_sub(i.image.size);
        i
    }

    /// End of input: every waiting image is inspected; `each` gets the inspections as they
    /// finish. The work directory is removed if nothing else is in it.
    pub fn finish(mut self, each: &mut dyn FnMut(Inspection)) -> IntakeStats {
        // Objects still open at the end were ended by the pipeline before this; any left are
        // not images any more.
        for (_, t) in self.tracked.drain() {
            if let Tracked::Spool { path, .. } = t {
                let _ = std::fs::remove_file(path);
            }
        }
        while let Some(i) = self.next_in_order(i64::MAX) {
            each(i);
        }
        self.jobs = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        for k in self.kept.drain().flat_map(|(_, v)| v) {
            let _ = std::fs::remove_file(k.path);
        }
        let _ = std::fs::remove_dir(&self.cfg.work_dir);
        self.stats.clone()
    }
}

/// Writes `data` at `offset` of a file written up to `next`, skipping whole zero blocks (they
/// are read back as zeros: the file is extended at the end).
fn sparse_write(file: &mut BufWriter<File>, next: u64, offset: u64, data: &[u8]) -> io::Result<()> {
    if offset != next {
        file.seek(SeekFrom::Start(offset))?;
    }
    let mut pos = offset;
    let mut skipped = false;
    for block in data.chunks(4096) {
        if block.len() == 4096 && block.iter().all(|b| *b == 0) {
            pos += 4096;
            skipped = true;
            continue;
        }
        if skipped {
            file.seek(SeekFrom::Start(pos))?;
            skipped = false;
        }
        file.write_all(block)?;
        pos += block.len() as u64;
    }
    if skipped {
        file.seek(SeekFrom::Start(pos))?;
    }
    Ok(())
}

/// Passes records on, showing each to the intake first.
pub struct Tap<'a> {
    intake: &'a mut Intake,
    inner: &'a mut dyn RecordSink,
}

impl RecordSink for Tap<'_> {
    fn record(&mut self, rec: Record<'_>) {
        self.intake.observe(&rec);
        self.inner.record(rec);
    }
}

/// Reads a spool file once; removes it when dropped.
struct SpoolReader {
    file: File,
    path: PathBuf,
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Drop for SpoolReader {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes what an inspection finds to spool files, hashing as it goes.
struct Extractor<'a> {
    dir: &'a Path,
    prefix: String,
    n: usize,
    bytes: u64,
    cfg: &'a IntakeConfig,
    out: Vec<(Artifact, VmiFound)>,
    notes: Vec<String>,
}

impl super::Extract for Extractor<'_> {
    fn artifact(&mut self, kind: &'static str, place: Place, bytes: super::ArtifactBytes<'_>) {
        if self.out.len() >= self.cfg.max_artifacts || self.bytes >= self.cfg.max_artifact_bytes {
            self.notes.push(format!("{} ({kind}): not extracted, bound on artifacts reached", place.describe()));
            return;
        }
        self.n += 1;
        let path = self.dir.join(format!("{}-{}", self.prefix, self.n));
        // Read back by the pipeline through the same handle: opened for both.
        let opened = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path);
        let Ok(f) = opened else {
            self.notes.push(format!("{} ({kind}): could not be extracted", place.describe()));
            return;
        };
        let mut w = BufWriter::with_capacity(1 << 16, f);
        let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
        let mut head: Vec<u8> = Vec::new();
        let mut failed = false;
        let room = self.cfg.max_artifact_bytes.saturating_sub(self.bytes);
        let mut taken = 0u64;
        bytes(&mut |chunk| {
            let chunk = chunk.get(..(room.saturating_sub(taken)).min(chunk.len() as u64) as usize).unwrap_or_default();
            taken += chunk.len() as u64;
            sha.update(chunk);
            if head.len() < HEAD {
                head.extend_from_slice(chunk.get(..(HEAD - head.len()).min(chunk.len())).unwrap_or_default());
            }
            failed |= w.write_all(chunk).is_err();
        });
        let file = w.into_inner().ok();
        let (Some(mut file), false) = (file, failed) else {
            let _ = std::fs::remove_file(&path);
            self.notes.push(format!("{} ({kind}): could not be extracted", place.describe()));
            return;
        };
        if file.seek(SeekFrom::Start(0)).is_err() {
            let _ = std::fs::remove_file(&path);
            return;
        }
        self.bytes += taken;
        let sha256 = hex::encode(sha.finish());
        let mut found = VmiFound {
            kind,
            place: place.describe(),
            from_memory: matches!(place, Place::Memory { .. }),
            size: taken,
            sha256: sha256.clone(),
            object: None,
            equals_object: None,
            format: None,
            video: None,
            mail: None,
        };
        match kind {
            "mail" => found.mail = linux::MailHeaders::of(&head),
            "media" => {
                found.format = linux::media_format(&head).map(str::to_string);
                found.video = match found.format.as_deref() {
                    Some("mp4" | "mov") => crate::media::fingerprint::of_mp4(&mut file, taken),
                    Some("flv") => crate::media::fingerprint::of_flv(&mut BufReader::new(&mut file)),
                    Some("matroska") => crate::media::fingerprint::of_matroska(&mut BufReader::new(&mut file), taken),
                    _ => None,
                };
                if file.seek(SeekFrom::Start(0)).is_err() {
                    let _ = std::fs::remove_file(&path);
                    return;
                }
            }
            _ => {}
        }
        let artifact = Artifact { kind, place, size: taken, sha256, bytes: Box::new(SpoolReader { file, path }) };
        self.out.push((artifact, found));
    }
}

/// An image copy kept for the overlays uploaded after it.
#[derive(Clone, Debug)]
struct Kept {
    /// The file name it was uploaded under, if the protocol gave one.
    name: Option<String>,
    /// Its SHA-256 and MD5, lower-case hex.
    digests: Vec<String>,
    path: PathBuf,
}

/// The kept image an overlay's backing file name means: the latest uploaded under that file
/// name, else one whose SHA-256 or MD5 the name holds (content-addressed stores name a base
/// image by its digest: `sha256:HEX`, `.../blobs/sha256/HEX`, `HEX.qcow2`).
fn backing_for<'k>(kept: &'k [Kept], name: &str) -> Option<&'k Kept> {
    let file = Path::new(name).file_name()?.to_str()?;
    if let Some(k) = kept.iter().rev().find(|k| k.name.as_deref() == Some(file)) {
        return Some(k);
    }
    let lower = name.to_ascii_lowercase();
    let hex_runs: Vec<&str> =
        lower.split(|c: char| !c.is_ascii_hexdigit()).filter(|r| r.len() == 64 || r.len() == 32).collect();
    kept.iter().rev().find(|k| k.digests.iter().any(|d| hex_runs.contains(&d.as_str())))
}

/// The inspection thread: one job at a time, until the intake hangs up.
fn inspector(cfg: IntakeConfig, jobs: Receiver<Job>, results: SyncSender<Inspection>) {
    let mut n = 0u64;
    for job in jobs {
        n += 1;
        let insp = inspect_job(&cfg, job, n);
        if results.send(insp).is_err() {
            return;
        }
    }
}

fn inspect_job(cfg: &IntakeConfig, job: Job, n: u64) -> Inspection {
    let Job { image, spool, backings, queued_at } = job;
    let mut event = VmiEvent::new(&image, "inspected");
    let disk = match super::disk::FileDisk::open(&spool) {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&spool);
            return refusal(image, "unreadable", format!("the copy could not be read: {e}"));
        }
    };
    let mut ex = Extractor {
        dir: &cfg.work_dir,
        prefix: format!("artifact-{n}"),
        n: 0,
        bytes: 0,
        cfg,
        out: Vec::new(),
        notes: Vec::new(),
    };
    // A reader bug must cost this image's inspection, not the run: the panic is caught and
    // reported as the outcome.
    // A backing file is looked for among the LIID's earlier images: the path an image names
    // is never opened.
    let resolve = |name: &str| -> Option<(String, Box<dyn super::disk::Disk>)> {
        let k = backing_for(&backings, name)?;
        let disk = super::disk::FileDisk::open(&k.path).ok()?;
        Some((k.path.display().to_string(), Box::new(disk)))
    };
    let identity = spool.display().to_string();
    let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        super::inspect_extracting(Box::new(disk), &identity, &resolve, cfg.time_limit, Some(&mut ex))
    }));
    let report = match report {
        Ok(r) => r,
        Err(_) => {
            let _ = std::fs::remove_file(&spool);
            let why = "the inspection failed (a reader error); the image is in the case unread".to_string();
            return refusal(image, "failed", why);
        }
    };
    summarise(&report, &mut event);
    event.notes.extend(ex.notes);
    let (artifacts, found): (Vec<Artifact>, Vec<VmiFound>) = ex.out.into_iter().unzip();
    event.artifacts = found;
    event.seconds = queued_at.elapsed().as_secs_f64();
    let doc = serde_json::json!({
        "image": { "object": image.id, "sha256": image.sha256, "name": image.meta.name, "size": image.size },
        "inspection": report,
    });
    let report = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    Inspection { image, event, report, artifacts, spool: Some(spool) }
}

/// The summary's fields from the report.
fn summarise(r: &super::Report, e: &mut VmiEvent) {
    e.container = Some(r.container.format.clone());
    e.virtual_size = Some(r.container.virtual_size);
    e.backing_chain = r.container.backing_chain.clone();
    e.snapshots = r
        .container
        .snapshots
        .iter()
        .map(|s| format!("{} {:?}{}", s.id, s.name, if s.vm_state_size > 0 { " + RAM" } else { "" }))
        .collect();
    for fs in &r.filesystems {
        let label = if fs.label.is_empty() { String::new() } else { format!(" {:?}", fs.label) };
        let place = if fs.partition == 0 { "whole disk".to_string() } else { format!("partition {}", fs.partition) };
        e.filesystems.push(format!("{place}: {}{label}", fs.kind));
        // A Windows system volume is named by its registry.
        if let Some(d) = &fs.data {
            e.os = e.os.take().or_else(|| d.os.pretty_name.clone());
        }
        let Some(l) = &fs.linux else { continue };
        e.os = e.os.take().or_else(|| l.os.pretty_name.clone());
        e.hostname = e.hostname.take().or_else(|| l.hostname.clone());
        e.timezone = e.timezone.take().or_else(|| l.timezone.clone());
        e.users.extend(l.users.iter().map(|u| VmiUser {
            name: u.name.clone(),
            uid: u.uid,
            password: u.password,
            groups: u.groups.clone(),
        }));
        e.sudoers.extend(l.sudoers.iter().cloned());
        e.ssh_keys.extend(l.ssh_keys.iter().map(|k| VmiKey {
            user: k.user.clone(),
            key_type: k.key_type.clone(),
            comment: k.comment.clone(),
            fingerprint: k.fingerprint.clone(),
        }));
        e.crontabs.extend(l.crontabs.iter().map(|c| VmiCron {
            place: c.path.clone(),
            user: Some(c.user.clone()),
            line: c.line.clone(),
            schedule: Some(c.schedule.clone()),
            command: Some(c.command.clone()),
        }));
        e.enabled_units.extend(l.enabled_units.iter().cloned());
        // A systemd timer is a crontab by another name: listed with them.
        e.crontabs.extend(l.timers.iter().map(|tm| VmiCron {
            place: tm.path.clone(),
            user: None,
            line: format!("{}: {} -> {}", tm.name, tm.schedule.join(" "), tm.exec_start.join("; ")),
            schedule: Some(tm.schedule.join(" ")),
            command: tm.exec_start.first().cloned(),
        }));
        e.rc_local.extend(l.rc_local.iter().cloned());
        e.notes.extend(l.notes.iter().cloned());
    }
    for a in r.memory.iter().filter(|a| a.kind == "crontab") {
        if let Some(line) = a.detail.get("line").and_then(|l| l.as_str()) {
            e.crontabs.push(VmiCron {
                place: format!("{} @ {:#x}", a.source, a.offset),
                user: None,
                line: line.to_string(),
                schedule: None,
                command: None,
            });
        }
    }
    e.notes.extend(r.notes.iter().cloned());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Cin, Dir, FlowDescr, ObjectMeta, Provenance};

    /// An object of `bytes` through the intake, as the file layer hands it on.
    fn object(intake: &mut Intake, id: ObjectId, bytes: &[u8]) {
        named_object(intake, id, None, String::new(), bytes)
    }

    /// The same, uploaded under `name`, with its SHA-256.
    fn named_object(intake: &mut Intake, id: ObjectId, name: Option<&str>, sha256: String, bytes: &[u8]) {
        let liid = Liid::new("L").unwrap();
        let a: std::net::SocketAddr = "10.0.0.1:1".parse().unwrap();
        let flow = FlowDescr { proto: "tcp".into(), orig: a, resp: a, vlans: vec![], tunnels: vec![] };
        let ts = Timestamp::from_secs(1);
        let mut meta = ObjectMeta::new("file", "ftp", &flow, Dir::Orig, Cin::FIRST, ts);
        meta.name = name.map(str::to_string);
        intake.observe(&Record::ObjectBegin { liid: &liid, id, meta: &meta });
        intake.observe(&Record::ObjectData { liid: &liid, id, offset: 0, data: bytes });
        let rec = ObjectRecord {
            liid: liid.clone(),
            id,
            meta,
            sha256,
            md5: None,
            sha512: None,
            format: None,
            size: bytes.len() as u64,
            gaps: vec![],
            wire_conflicts: vec![],
            complete: true,
            last_seen: ts,
            provenance: std::sync::Arc::new(Provenance {
                selector: String::new(),
                target: String::new(),
                chain: vec![],
            }),
        };
        intake.observe(&Record::ObjectEnd(rec, id));
    }

    #[test]
    fn a_full_queue_refuses_images_and_never_waits() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = IntakeConfig::new(d.path().join("work"));
        (cfg.queue, cfg.waiting) = (1, 0);
        let mut intake = Intake::start(cfg).unwrap();
        // A qcow2 header and nothing else: quick to inspect, unreadable past its header. Never
        // polled, the thread stops after two (one result held, one waiting to be held), one
        // more fits its queue: the rest are refused at once.
        let mut img = b"QFI\xfb\0\0\0\x03".to_vec();
        img.resize(4096, 0);
        let started = Instant::now();
        for id in 1..=8 {
            object(&mut intake, id, &img);
            // Time for the thread to take the first three (it inspects one in microseconds).
            if id <= 3 {
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        // Text is never an image: not copied, not inspected.
        object(&mut intake, 9, &[b'x'; 100_000]);
        assert!(started.elapsed() < Duration::from_secs(5), "the intake waited");
        let stats = intake.stats.clone();
        assert_eq!((stats.queued, stats.refused), (3, 5), "{stats:?}");
        let mut outcomes = Vec::new();
        let end = intake.finish(&mut |i| outcomes.push((i.image.id, i.event.outcome)));
        outcomes.sort();
        let refused: Vec<ObjectId> = outcomes.iter().filter(|o| o.1 == "queue-full").map(|o| o.0).collect();
        assert_eq!(refused, [4, 5, 6, 7, 8]);
        assert_eq!(outcomes.len(), 8, "{outcomes:?}");
        assert_eq!(end.inspected, 3);
        assert!(!d.path().join("work").exists(), "every copy removed, and the work directory");
    }

    #[test]
    fn an_overlay_finds_its_base_by_the_digest_its_backing_name_holds() {
        let d = tempfile::tempdir().unwrap();
        // A base image with a message in its outbox, uploaded under a name of its own; an
        // overlay (qemu-img create -u: the base is not opened) naming it as a content-addressed
        // store does, by its SHA-256 as sha256sum gives it; another naming a digest never seen.
        let script = r#"
            mkdir -p root/etc root/home/joe/Mail/outbox
            printf 'root:x:0:0:root:/root:/bin/bash\n' > root/etc/passwd
            printf 'From: joe@example.org\nTo: p@example.net\nSubject: in the base\n\nx\n' > root/home/joe/Mail/outbox/1.eml
            mkfs.ext4 -q -F -d root base.raw 8M >/dev/null
            qemu-img convert -f raw -O qcow2 base.raw base.qcow2
            sha=$(sha256sum base.qcow2 | cut -d' ' -f1)
            echo "$sha"
            qemu-img create -q -f qcow2 -F qcow2 -u -b "/var/lib/store/blobs/sha256/$sha" overlay.qcow2 8M
            qemu-img create -q -f qcow2 -F qcow2 -u -b "sha256:$(echo other | sha256sum | cut -d' ' -f1)" stray.qcow2 8M
        "#;
        let out = std::process::Command::new("bash").arg("-euc").arg(script).current_dir(d.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let sha = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let read = |f: &str| std::fs::read(d.path().join(f)).unwrap();
        let mut cfg = IntakeConfig::new(d.path().join("work"));
        cfg.wait_when_full = true;
        let mut intake = Intake::start(cfg).unwrap();
        named_object(&mut intake, 1, Some("golden-2026-12.img"), sha.clone(), &read("base.qcow2"));
        named_object(&mut intake, 2, Some("overlay.qcow2"), "0".repeat(64), &read("overlay.qcow2"));
        named_object(&mut intake, 3, Some("stray.qcow2"), "1".repeat(64), &read("stray.qcow2"));
        let mut done = Vec::new();
        intake.finish(&mut |i| done.push(i));
        done.sort_by_key(|i| i.image.id);
        let mail = |i: &Inspection| i.event.artifacts.iter().filter(|a| a.kind == "mail").count();
        assert_eq!(done[1].event.backing_chain, [format!("/var/lib/store/blobs/sha256/{sha}")]);
        assert_eq!(mail(&done[1]), 1, "the base's message, read through the overlay: {:?}", done[1].event);
        assert!(done[2].event.backing_chain.is_empty());
        assert!(done[2].event.notes.iter().any(|n| n.contains("not found")), "{:?}", done[2].event.notes);
        assert_eq!(mail(&done[2]), 0);
    }

    #[test]
    fn only_images_and_memory_are_inspectable() {
        assert_eq!(inspectable(b"QFI\xfb\0\0\0\x03"), Some("qcow2"));
        assert_eq!(inspectable(b"KDMV"), Some("vmdk"));
        assert_eq!(inspectable(b"hello world"), None);
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[16] = 4;
        assert_eq!(inspectable(&elf), Some("elf-core"));
        elf[16] = 2; // an executable
        assert_eq!(inspectable(&elf), None);
        // A FAT boot sector ends in 55 AA but has no partition entries.
        let mut fat = vec![0u8; 512];
        fat[510] = 0x55;
        fat[511] = 0xaa;
        assert_eq!(inspectable(&fat), None);
        fat[446] = 0x80;
        fat[450] = 0x83;
        fat[454] = 1;
        fat[458] = 100;
        assert_eq!(inspectable(&fat), Some("mbr"));
    }
}
