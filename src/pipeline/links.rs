//! Cross-links: what ties one record to another that no single flow sees.
//!
//! - An `image.create` whose SHA-256 equals an upload a target made is linked to that upload.
//! - An object seen in the traffic whose SHA-256 equals an artifact of an inspected image (the
//!   mail a VM sends an hour after its image was uploaded is the message in its outbox) says so
//!   in its IRI: `context.equals_artifact`.
//! - A stream whose pictures are a clip found in an image (`ffmpeg -i clip.mp4 -c copy -f flv
//!   rtmp://...` re-wraps them: no byte digest can meet) says so too: the stream object's
//!   `context.video` fingerprint ([`crate::media::fingerprint`]) equals the clip's.
//! - A VM started from an inspected image gets an IRI of what its crontabs will do and when
//!   (`instance.crontab-plan`), at its start, or when the inspection ends if that is later.
//!
//! Everything here is per LIID: a link never points into another warrant's case. Every table
//! is bounded; the oldest entries go first.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::media::fingerprint::Fingerprint;
use crate::record::{IriEvent, IriRecord, Liid, Provenance, Record};
use crate::timestamp::Timestamp;
use crate::vmi::intake::VmiCron;

/// Entries kept at most in each table.
const REMEMBERED: usize = 1 << 16;

/// A map that forgets its oldest keys past [`REMEMBERED`].
struct Bounded<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: std::hash::Hash + Eq + Clone, V> Default for Bounded<K, V> {
    fn default() -> Self {
        Bounded { map: HashMap::new(), order: VecDeque::new() }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V> Bounded<K, V> {
    fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            if self.order.len() > REMEMBERED {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }
}

/// The crontabs of an inspected image, for planning the VMs started from it.
#[derive(Clone, Debug)]
pub struct ImageCrontabs {
    pub image_object: u64,
    pub timezone: Option<String>,
    pub crontabs: Vec<VmiCron>,
}

/// A VM start not planned yet: its image's inspection had not ended.
#[derive(Clone, Debug)]
pub struct PendingStart {
    pub liid: Liid,
    pub ts: Timestamp,
    pub instance: String,
    pub image: String,
    pub provenance: Arc<Provenance>,
}

/// What the cross-links remember.
#[derive(Default)]
pub struct Links {
    /// Complete objects targets sent, by (LIID, SHA-256).
    uploads: Bounded<(Liid, String), Value>,
    /// Artifacts of inspected images, by (LIID, SHA-256).
    artifacts: Bounded<(Liid, String), Value>,
    /// Crontabs of inspected images, by (LIID, image SHA-256).
    crontabs: Bounded<(Liid, String), Arc<ImageCrontabs>>,
    /// Cloud image ids to the SHA-256 their `image.create` gave, and back.
    image_sha: Bounded<String, String>,
    image_id: Bounded<String, String>,
    /// VM starts waiting for their image's inspection, oldest first.
    starts: VecDeque<PendingStart>,
}

impl Links {
    /// The upload of `liid` whose SHA-256 is `sha256`, if one was seen.
    pub fn upload(&self, liid: &Liid, sha256: &str) -> Option<&Value> {
        self.uploads.get(&(liid.clone(), sha256.to_ascii_lowercase()))
    }

    /// An `image.create` gave image `image` the digest `sha256`.
    pub fn image_created(&mut self, image: &str, sha256: &str) {
        let sha = sha256.to_ascii_lowercase();
        self.image_sha.insert(image.to_string(), sha.clone());
        self.image_id.insert(sha, image.to_string());
    }

    /// An artifact of an inspected image: what an equal object later in the traffic names. The
    /// first image it was found in is kept (an overlay finds its base's files again).
    pub fn artifact(&mut self, liid: &Liid, sha256: &str, link: Value) {
        let key = (liid.clone(), sha256.to_ascii_lowercase());
        if self.artifacts.get(&key).is_none() {
            self.artifacts.insert(key, link);
        }
    }

    /// The crontabs an inspection found in the image `image_sha256` of `liid`.
    pub fn image_inspected(&mut self, liid: &Liid, image_sha256: &str, c: ImageCrontabs) {
        self.crontabs.insert((liid.clone(), image_sha256.to_ascii_lowercase()), Arc::new(c));
    }

    /// The crontabs of cloud image `image` for `liid`, if it was inspected.
    pub fn crontabs_of(&self, liid: &Liid, image: &str) -> Option<Arc<ImageCrontabs>> {
        let sha = self.image_sha.get(&image.to_string())?;
        self.crontabs.get(&(liid.clone(), sha.clone())).cloned()
    }

    /// A VM started from an image not (yet) inspected: kept for when it is.
    pub fn start_pending(&mut self, s: PendingStart) {
        if self.starts.len() >= REMEMBERED {
            self.starts.pop_front();
        }
        self.starts.push_back(s);
    }

    /// The pending starts of `liid` from the image whose SHA-256 is `image_sha256`, taken.
    pub fn take_starts(&mut self, liid: &Liid, image_sha256: &str) -> Vec<PendingStart> {
        let sha = image_sha256.to_ascii_lowercase();
        let image_sha = &self.image_sha;
        let (hit, keep): (Vec<_>, Vec<_>) =
            self.starts.drain(..).partition(|s| &s.liid == liid && image_sha.get(&s.image).is_some_and(|h| *h == sha));
        self.starts = keep.into();
        hit
    }

    /// The cloud image id an `image.create` gave the digest `sha256`, if any.
    pub fn image_id_of(&self, sha256: &str) -> Option<&String> {
        self.image_id.get(&sha256.to_ascii_lowercase())
    }
}

/// The key under which a video fingerprint is remembered beside byte digests (never a hex
/// SHA-256 alone, so the two never meet).
pub fn video_key(f: &Fingerprint) -> String {
    format!("video:{}", f.key())
}

/// The video fingerprint a stream object's context carries.
fn video_of(context: &Value) -> Option<String> {
    let f: Fingerprint = serde_json::from_value(context.get("video")?.clone()).ok()?;
    Some(video_key(&f))
}

/// What an analyst reads of a link to an artifact.
fn says(link: &Value, image: Option<&str>) -> String {
    let what = match link.get("video") {
        Some(v) => format!(
            "its video equals the video of {} ({} pictures)",
            link["place"].as_str().unwrap_or("?"),
            v["frames"].as_u64().unwrap_or(0)
        ),
        None => format!("equals {}", link["place"].as_str().unwrap_or("?")),
    };
    format!(
        "{what} in image {}, uploaded{} at {}",
        image.or(link["image_name"].as_str()).unwrap_or("?"),
        link["uploaded_by"].as_str().map(|u| format!(" by {u}")).unwrap_or_default(),
        link["uploaded_at"].as_str().unwrap_or("?"),
    )
}

/// What a VM started at `started` from an image with `c`'s crontabs will run, and when: the
/// detail of an `instance.crontab-plan` IRI.
pub fn crontab_plan(c: &ImageCrontabs, instance: &str, image: &str, started: Timestamp) -> Value {
    let Some(start) = chrono::DateTime::from_timestamp(started.secs(), 0) else { return Value::Null };
    let mut runs = Vec::new();
    let mut expect = Vec::new();
    for e in &c.crontabs {
        let (Some(schedule), Some(command)) = (&e.schedule, &e.command) else { continue };
        let Some(s) = crate::vmi::cron::parse(schedule, command) else { continue };
        let next: Vec<String> = crate::vmi::cron::next_runs(&s, start, 3)
            .iter()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .collect();
        if let Some(first) = next.first() {
            expect.push(format!("{first}: {} (user {}, {})", e.line, e.user.as_deref().unwrap_or("?"), e.place));
        }
        runs.push(json!({ "place": e.place, "user": e.user, "line": e.line, "next_runs": next }));
    }
    let mut d = json!({
        "instance": instance,
        "image": image,
        "image_object": c.image_object,
        "started": started,
        "runs": runs,
        "expect": expect,
    });
    if let Some(tz) = c.timezone.as_deref().filter(|z| !matches!(*z, "UTC" | "Etc/UTC" | "Universal" | "Zulu")) {
        d["clock"] = json!(format!("times assume the VM clock in UTC; the image's zone is {tz}"));
    }
    d
}

impl Links {
    /// Looks at a record on its way to the outputs: remembers the complete objects targets
    /// sent, marks the IRI of an object equal to an artifact, names the upload an
    /// `image.create` registered, and plans (or holds) the crontabs of a VM started. The record
    /// is changed in place; what must follow it (a crontab plan) is returned. Everything seen
    /// here has passed its warrant's scope gate, so what follows an IRI may be IRI too.
    pub fn pass(&mut self, rec: &mut Record<'_>) -> Option<Record<'static>> {
        match rec {
            Record::ObjectEnd(o, _) if o.complete && o.meta.from_target == Some(true) => {
                let key = (o.liid.clone(), o.sha256.to_ascii_lowercase());
                let seen = json!({
                    "object": o.id,
                    "cin": o.meta.cin,
                    "name": o.meta.name,
                    "protocol": o.meta.protocol,
                    "flow": format!("{} {} -> {}", o.meta.flow.proto, o.meta.flow.orig, o.meta.flow.resp),
                    "first_seen": o.meta.first_seen,
                    "last_seen": o.last_seen,
                    "size": o.size,
                    "user": o.meta.context.get("user"),
                });
                if let Some(video) = video_of(&o.meta.context) {
                    self.uploads.insert((o.liid.clone(), video), seen.clone());
                }
                self.uploads.insert(key, seen);
                None
            }
            Record::Iri(r) => match &mut r.event {
                IriEvent::Object(o) => {
                    let key = (r.liid.clone(), o.sha256.to_ascii_lowercase());
                    let by_video = || video_of(&o.meta.context).and_then(|v| self.artifacts.get(&(r.liid.clone(), v)));
                    if let Some(link) = self.artifacts.get(&key).or_else(by_video) {
                        let mut link = link.clone();
                        // Named now: the image.create may have come after the inspection.
                        let image_id = link["image_sha256"].as_str().and_then(|s| self.image_id_of(s)).cloned();
                        if let Some(id) = &image_id {
                            link["image_id"] = json!(id);
                        }
                        link["says"] = json!(says(&link, image_id.as_deref()));
                        match &mut o.meta.context {
                            Value::Object(m) => {
                                m.insert("equals_artifact".into(), link);
                            }
                            other => *other = json!({ "equals_artifact": link }),
                        }
                    }
                    None
                }
                IriEvent::Association { what, detail, .. } => {
                    let text = |k: &str| detail.get(k).and_then(|v| v.as_str()).map(str::to_string);
                    match what.as_str() {
                        "image.create" => {
                            // An image registered with the digest of an upload this LIID
                            // intercepted: say which.
                            if let (Some(image), Some(sha)) = (text("image"), text("sha256")) {
                                self.image_created(&image, &sha);
                            }
                            let up = text("sha256").and_then(|d| self.upload(&r.liid, &d)).cloned();
                            if let (Some(up), Value::Object(m)) = (up, detail) {
                                m.insert("equals_intercepted_upload".into(), up);
                            }
                            None
                        }
                        "instance.start" => {
                            let (Some(image), Some(instance)) = (text("image"), text("instance")) else { return None };
                            match self.crontabs_of(&r.liid, &image) {
                                Some(crons) => Some(crontab_plan_record(
                                    r.liid.clone(),
                                    r.ts,
                                    crontab_plan(&crons, &instance, &image, r.ts),
                                    r.provenance.clone(),
                                )),
                                None => {
                                    self.start_pending(PendingStart {
                                        liid: r.liid.clone(),
                                        ts: r.ts,
                                        instance,
                                        image,
                                        provenance: r.provenance.clone(),
                                    });
                                    None
                                }
                            }
                        }
                        _ => None,
                    }
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// The IRI of what a VM's crontabs will do (see [`crontab_plan`]).
pub fn crontab_plan_record(liid: Liid, ts: Timestamp, detail: Value, provenance: Arc<Provenance>) -> Record<'static> {
    Record::Iri(IriRecord {
        liid,
        cin: None,
        ts,
        event: IriEvent::Association {
            what: "instance.crontab-plan".into(),
            detail,
            selectors_added: Vec::new(),
            selectors_removed: Vec::new(),
        },
        provenance,
    })
}
