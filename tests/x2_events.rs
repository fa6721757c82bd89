//! X2's application events on real captures: every application event the library makes from
//! the shipped fixtures (`pcaps/`, `pcaps/app/`, and the RTP and TLS captures of `tests/data/`)
//! is rebuilt from its JSON, as a value and as the text X2 carries, by
//! `deliver::x2x3::events::app_event_from_json`, and is the same event: same protocol name, same
//! JSON, same value (its `Debug`), but for the two fields its JSON never held (an HTTP object's
//! MD5, an inspection's duration), which come back empty.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tapir::analyze::http::HttpEvent;
use tapir::capture::CaptureFile;
use tapir::decode::DecodeConfig;
use tapir::deliver::x2x3::events::{app_event_from_json, REGISTRY};
use tapir::flow::FlowConfig;
use tapir::pipeline::{Engine, Pipeline};
use tapir::record::{AppEvent, IriEvent, VecSink};
use tapir::select::parse_warrants;
use tapir::vmi::intake::{Intake, IntakeConfig, VmiEvent};

/// Every address, for all time: every flow of a capture is analysed.
const EVERYONE: &str = "[[warrant]]\nliid = \"X2\"\nstart = \"1970-01-01T00:00:00Z\"\nend = \"2200-01-01T00:00:00Z\"\n\
                        scope = \"iri+cc\"\ntargets = [\"cidr:0.0.0.0/0\", \"cidr:::/0\"]\n";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The captures: every one in `pcaps/` and `pcaps/app/`, and the RTP and TLS ones of
/// `tests/data/` (no capture in `pcaps/` has RTP).
pub fn captures() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["pcaps", "pcaps/app"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".pcap") || name.ends_with(".pcapng") || name.ends_with(".pcap.gz") {
                out.push(p);
            }
        }
    }
    for f in ["media/h264.pcap", "tls/tls1_2-loopback.pcap", "tls/tls1_3-loopback.pcap"] {
        out.push(root().join("tests/data").join(f));
    }
    out.sort();
    out
}

/// The application events the library makes from `capture`, images inspected (as `tapir
/// replay` does: one pipeline, the record stage after it).
fn app_events(capture: &Path) -> Vec<AppEvent> {
    let w = parse_warrants(EVERYONE, "everyone.toml").unwrap();
    let p = Pipeline::new(w.warrants.clone(), Vec::new(), DecodeConfig::default(), FlowConfig::default());
    let mut engine = Engine::start(vec![p]).unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut cfg = IntakeConfig::new(work.path().join("vmi"));
    cfg.wait_when_full = true;
    let intake = Intake::start(cfg).unwrap();
    let mut recorder = engine.recorder(&w.warrants, FlowConfig::default().content, Some(intake));
    let mut sink = VecSink::default();
    let file = CaptureFile::open(capture).unwrap();
    let mut frames = file.frames();
    while let Some(f) = frames.next_frame() {
        if let Ok(f) = f {
            engine.frame(&f, &mut recorder, &mut sink);
        }
    }
    engine.finish(&mut recorder, &mut sink);
    recorder.finish(&mut sink);
    sink.iri
        .into_iter()
        .filter_map(|r| match r.event {
            IriEvent::App(a) => Some(a),
            _ => None,
        })
        .collect()
}

/// `a`'s `Debug` without what its JSON never held (an HTTP object's MD5, the time an
/// inspection took): what an event read back from its JSON must print.
fn debug_as_sent(a: &AppEvent) -> String {
    if let Some(h) = a.get::<HttpEvent>() {
        let mut h = h.clone();
        for o in h.request_objects.iter_mut().chain(h.response_objects.iter_mut()) {
            o.md5 = String::new();
        }
        return format!("{:?}", AppEvent::new(a.protocol(), h));
    }
    if let Some(v) = a.get::<VmiEvent>() {
        let mut v = v.clone();
        v.seconds = 0.0;
        return format!("{:?}", AppEvent::new(a.protocol(), v));
    }
    format!("{a:?}")
}

#[test]
fn every_app_event_of_the_fixtures_comes_back_from_its_json() {
    let mut seen = BTreeSet::new();
    let mut count = 0;
    for capture in captures() {
        let name = capture.strip_prefix(root()).unwrap().display().to_string();
        for a in app_events(&capture) {
            let json = a.to_json();
            let text: Value = serde_json::from_str(&json.to_string()).unwrap();
            for fields in [json.clone(), text] {
                let b = app_event_from_json(a.protocol(), fields).unwrap_or_else(|e| panic!("{name}: {e}: {json}"));
                assert_eq!(b.protocol(), a.protocol(), "{name}");
                assert_eq!(b.to_json(), json, "{name}");
                assert_eq!(format!("{b:?}"), debug_as_sent(&a), "{name}: {json}");
            }
            seen.insert(a.protocol());
            count += 1;
        }
    }
    // Every protocol these captures carry. RTSP, SIP, RTMP and MPEG-TS have no capture here
    // (their tests need FFmpeg and root); `deliver::x2x3::events`' unit tests make theirs with
    // the analyzers.
    let want: BTreeSet<&str> = ["ftp", "http", "rtp", "smtp", "tls", "vmi"].into();
    assert_eq!(seen, want, "{count} events");
    let registered: BTreeSet<&str> = REGISTRY.iter().map(|(n, _)| *n).collect();
    let without: Vec<&&str> = registered.difference(&seen).collect();
    assert_eq!(without, [&"mpegts", &"rtmp", &"rtsp", &"sip"]);
}
