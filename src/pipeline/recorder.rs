//! The record stage: what ties records of different flows together, after the workers.
//!
//! Workers ([`super::Pipeline`], one or several: [`super::shard`]) each see a share of the
//! flows. What no single flow sees is done here, on the one stream of records they make
//! together, in capture order:
//! - the cross-links ([`super::links`]): an `image.create` names the upload it registered, an
//!   object equal to an artifact of an inspected image says so, a VM started gets the plan of
//!   its image's crontabs;
//! - image inspection ([`crate::vmi::intake`]): images are copied as their bytes pass, and a
//!   finished inspection becomes the LIID's records (report, artifacts, `vmi` IRI) in a CIN of
//!   its own, numbered from the record stage's own slot ([`Numbers`]).
//!
//! Everything here comes after the scope gate: it only ever sees what the warrant allows.

use crate::content::{ContentLimits, FileLayer};
use crate::record::{AppEvent, Gate, IriEvent, IriRecord, Liid, Numbers, ObjectMeta, Record, RecordSink, Scope};
use crate::select::Warrant;
use crate::timestamp::Timestamp;
use crate::vmi::intake::{Inspection, Intake, IntakeStats};

use super::links::{self, ImageCrontabs, Links};

/// The record stage of a run (see the module documentation).
pub struct Recorder {
    links: Links,
    /// The objects an inspection makes (report, artifacts).
    files: FileLayer,
    numbers: Numbers,
    scopes: Vec<(Liid, Scope)>,
    intake: Option<Intake>,
    pass_through: bool,
}

impl Recorder {
    /// `numbers` is where inspections take their CINs and object ids: shared with the worker
    /// of a one-worker run, a slot of its own in a sharded one.
    pub fn new(warrants: &[Warrant], numbers: Numbers, limits: ContentLimits, intake: Option<Intake>) -> Recorder {
        let mut files = FileLayer::with_limits(limits);
        files.set_numbers(numbers.clone());
        let mut r =
            Recorder { links: Links::default(), files, numbers, scopes: Vec::new(), intake, pass_through: false };
        r.set_warrants(warrants);
        r
    }

    /// The warrants in force changed (a daemon's reload): a warrant withdrawn gets no more
    /// inspections.
    pub fn set_warrants(&mut self, warrants: &[Warrant]) {
        self.set_scopes(warrants.iter().map(|w| (w.liid.clone(), w.scope)).collect());
    }

    /// As [`Recorder::set_warrants`], from each LIID's scope (what an MDF's journal keeps).
    pub fn set_scopes(&mut self, scopes: Vec<(Liid, Scope)>) {
        self.scopes = scopes;
    }

    fn scope(&self, liid: &Liid) -> Option<Scope> {
        self.scopes.iter().find(|(l, _)| l == liid).map(|(_, s)| *s)
    }

    /// The sink the workers' records go through on their way to `inner`.
    pub fn sink<'a>(&'a mut self, inner: &'a mut dyn RecordSink) -> Stage<'a> {
        let links = (!self.pass_through).then_some(&mut self.links);
        Stage { links, intake: self.intake.as_mut(), inner }
    }

    /// A POI's: records pass untouched. The cross-links need every flow's records, which only
    /// the MDF's record stage sees; done here too, they would be done twice.
    pub fn pass_through(&mut self) {
        self.pass_through = true;
        self.intake = None;
    }

    /// Where inspections take their CINs: an MDF numbers its POIs' sessions from the same.
    pub fn numbers(&self) -> Numbers {
        self.numbers.clone()
    }

    /// A replay's barrier at capture time `now`: the inspections of images that ended long
    /// enough before are waited for and recorded ([`Intake::wait_due`]), so that what follows
    /// in the capture meets their findings whatever the speed of the run.
    pub fn due(&mut self, now: Timestamp, inner: &mut dyn RecordSink) {
        let Some(intake) = self.intake.as_mut() else { return };
        for done in intake.wait_due(now) {
            self.inspected(done, inner);
        }
    }

    /// When the next inspection falls due for [`Recorder::due`], if one is waiting.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.intake.as_ref()?.next_due()
    }

    /// Live capture: the inspections finished by now, never waiting.
    pub fn poll(&mut self, inner: &mut dyn RecordSink) {
        let Some(intake) = self.intake.as_mut() else { return };
        for done in intake.poll() {
            self.inspected(done, inner);
        }
    }

    /// End of input: the images still waiting are inspected and recorded.
    pub fn finish(&mut self, inner: &mut dyn RecordSink) -> Option<IntakeStats> {
        let intake = self.intake.take()?;
        Some(intake.finish(&mut |done| self.inspected(done, inner)))
    }

    /// Objects the inspections made, finished so far.
    pub fn objects_finished(&self) -> u64 {
        self.files.finished
    }

    /// Copies an artifact's bytes (read from the inspection's spool) into object `id`: the
    /// bytes copied, and whether the read ended cleanly.
    fn copy_artifact(
        &mut self,
        liid: &Liid,
        id: crate::record::ObjectId,
        bytes: &mut (dyn std::io::Read + Send),
        ts: Timestamp,
        gate: &mut Gate<'_>,
    ) -> (u64, bool) {
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        loop {
            match bytes.read(&mut buf) {
                Ok(0) => return (at, true),
                Ok(n) => {
                    self.files.data(liid, id, at, buf.get(..n).unwrap_or_default(), ts, gate);
                    at += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return (at, false),
            }
        }
    }

    /// A finished image inspection ([`crate::vmi::intake`]) becomes the LIID's records, in a
    /// CIN of its own: the report and every artifact as objects (`parent` = the image), the
    /// summary as a `vmi` IRI, and the crontab plan of VMs already started from the image.
    /// Each passes the warrant's scope gate; a warrant withdrawn since gets nothing. The
    /// records carry the image's capture time: they are about what was intercepted then.
    fn inspected(&mut self, mut i: Inspection, sink: &mut dyn RecordSink) {
        let liid = i.image.liid.clone();
        let Some(scope) = self.scope(&liid) else { return };
        let ts = i.image.last_seen;
        let cin = self.numbers.cin(&liid);
        let prov = i.image.provenance.clone();
        let image_ref = serde_json::json!({
            "object": i.image.id,
            "sha256": i.image.sha256,
            "name": i.image.meta.name,
        });
        let meta = |kind: &str, name: String, context: serde_json::Value| {
            let mut m = ObjectMeta::new(kind, "vmi", &i.image.meta.flow, i.image.meta.direction, cin, ts);
            m.name = Some(name);
            m.parent = Some(i.image.id);
            m.context = context;
            m
        };
        let mut gate = Gate::new(scope, sink);
        if !i.report.is_empty() {
            let m = meta("report", "vmi-report.json".into(), serde_json::json!({ "image": image_ref }));
            let id = self.files.open(m, &liid, &prov, &mut gate);
            self.files.data(&liid, id, 0, &i.report, ts, &mut gate);
            if let Some(e) = self.files.end(&liid, id, true, ts, &mut gate) {
                i.event.report_object = Some(id);
                i.event.report_sha256 = Some(e.sha256);
            }
        }
        let uploaded_by = i.image.meta.context.get("user").and_then(|u| u.as_str()).map(str::to_string);
        for (a, found) in i.artifacts.iter_mut().zip(i.event.artifacts.iter_mut()) {
            // A message found in the image is a mail like any other (EmailCC on HI3).
            let kind = if a.kind == "mail" { "mail" } else { "artifact" };
            let context = serde_json::json!({ "artifact": a.kind, "place": a.place, "image": image_ref });
            let id = self.files.open(meta(kind, a.place.describe(), context), &liid, &prov, &mut gate);
            let (at, whole) = self.copy_artifact(&liid, id, a.bytes.as_mut(), ts, &mut gate);
            self.files.end(&liid, id, whole && at == a.size, ts, &mut gate);
            found.object = Some(id);
            // A clip's pictures are what a stream of it sends, re-wrapped (`links::video_key`).
            let video = found.video.as_ref().map(links::video_key);
            // The traffic came first (the inspection ended after the object was seen): the
            // link is told from this side.
            let seen = [Some(&a.sha256), video.as_ref()]
                .into_iter()
                .flatten()
                .find_map(|k| self.links.upload(&liid, k).filter(|s| s["object"] != i.image.id));
            if let Some(seen) = seen {
                found.equals_object = Some(seen.clone());
            }
            let link = serde_json::json!({
                "artifact_object": id,
                "kind": a.kind,
                "place": a.place.describe(),
                "image_object": i.image.id,
                "image_sha256": i.image.sha256,
                "image_name": i.image.meta.name,
                "uploaded_by": uploaded_by,
                "uploaded_at": i.image.meta.first_seen,
                "upload_flow": format!("{} {} -> {}", i.image.meta.flow.proto, i.image.meta.flow.orig, i.image.meta.flow.resp),
            });
            if let (Some(key), Some(v)) = (&video, &found.video) {
                let mut link = link.clone();
                link["video"] = serde_json::json!(v);
                self.links.artifact(&liid, key, link);
            }
            self.links.artifact(&liid, &a.sha256, link);
        }
        let crons = ImageCrontabs {
            image_object: i.image.id,
            timezone: i.event.timezone.clone(),
            crontabs: i.event.crontabs.clone(),
        };
        gate.record(Record::Iri(IriRecord {
            liid: liid.clone(),
            cin: Some(cin),
            ts,
            event: IriEvent::App(AppEvent::new("vmi", i.event)),
            provenance: prov.clone(),
        }));
        gate.record(Record::SessionClosed { liid: &liid, cin, ts });
        // VMs started from this image before its inspection ended get their plan now.
        for s in self.links.take_starts(&liid, &i.image.sha256) {
            let detail = links::crontab_plan(&crons, &s.instance, &s.image, s.ts);
            gate.record(links::crontab_plan_record(s.liid, s.ts, detail, s.provenance));
        }
        self.links.image_inspected(&liid, &i.image.sha256, crons);
    }
}

/// The record stage's sink ([`Recorder::sink`]).
pub struct Stage<'a> {
    links: Option<&'a mut Links>,
    intake: Option<&'a mut Intake>,
    inner: &'a mut dyn RecordSink,
}

impl Stage<'_> {
    fn out(&mut self, rec: Record<'_>) {
        if let Some(i) = self.intake.as_mut() {
            i.observe(&rec);
        }
        self.inner.record(rec);
    }
}

impl RecordSink for Stage<'_> {
    fn record(&mut self, mut rec: Record<'_>) {
        let then = self.links.as_mut().and_then(|l| l.pass(&mut rec));
        self.out(rec);
        if let Some(then) = then {
            self.out(then);
        }
    }
}
