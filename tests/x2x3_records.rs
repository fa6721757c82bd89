//! Records across X2/X3 on real captures: every record the library makes from the shipped
//! fixtures is encoded as a POI sends it (`PoiEncoder`), taken back as an MDF does
//! (`MdfIntake`), and is the same record: IRI with the same JSON (the case's line), CC with the
//! same IP packet and direction, objects with the same metadata, bytes and end. Only the
//! numbers differ, by design: the MDF numbers sessions itself, one for one with the POI's, and
//! gives the POI's objects (numbered in the POI's range, 1) the ids an all-in-one would.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use serde_json::{json, Value};
use tapir::capture::CaptureFile;
use tapir::decode::DecodeConfig;
use tapir::deliver::etsi::inner_ip_packet;
use tapir::deliver::x2x3::pdu::{X2x3Codec, Xid};
use tapir::deliver::x2x3::records::{set_position, MdfIntake, PoiEncoder, Task};
use tapir::flow::FlowConfig;
use tapir::pipeline::{Engine, Pipeline};
use tapir::record::{Liid, Record, RecordSink, Scope};
use tapir::select::parse_warrants;
use tokio_util::codec::Decoder;

use crate::x2_events::captures;

const LIID: &str = "X2X3";

fn warrant(scope: &str) -> String {
    format!(
        "[[warrant]]\nliid = \"{LIID}\"\nstart = \"1970-01-01T00:00:00Z\"\nend = \"2200-01-01T00:00:00Z\"\n\
         scope = \"{scope}\"\ntargets = [\"cidr:0.0.0.0/0\", \"cidr:::/0\"]\n"
    )
}

/// A record as an output sees it, in a form to compare: CINs left as they are.
fn canonical(rec: &Record<'_>) -> Value {
    match rec {
        Record::Iri(r) => json!({"iri": serde_json::to_value(r).unwrap(), "provenance": *r.provenance}),
        Record::Cc(c) => {
            let ip = inner_ip_packet(c.link, c.data).unwrap_or(c.data);
            json!({"cc": hex::encode(ip), "cin": c.cin, "ts": c.ts, "from_target": c.from_target()})
        }
        Record::ObjectBegin { id, meta, .. } => json!({"begin": id, "meta": meta}),
        Record::ObjectData { id, offset, data, .. } => {
            json!({"data": id, "offset": offset, "bytes": hex::encode(data)})
        }
        Record::ObjectGap { id, offset, len, .. } => json!({"gap": id, "offset": offset, "len": len}),
        Record::ObjectEnd(o, id) => json!({"end": id, "object": o, "provenance": *o.provenance}),
        Record::SessionClosed { cin, ts, .. } => json!({"closed": cin, "ts": ts}),
    }
}

/// Object bytes cross in chunks: consecutive data of one object are joined before comparing.
fn join_data(v: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for x in v {
        if let (Some(last), Some(id)) = (out.last_mut(), x.get("data")) {
            if last.get("data") == Some(id) {
                let end = last["offset"].as_u64().unwrap() + last["bytes"].as_str().unwrap().len() as u64 / 2;
                if x["offset"].as_u64() == Some(end) {
                    let joined = format!("{}{}", last["bytes"].as_str().unwrap(), x["bytes"].as_str().unwrap());
                    last["bytes"] = joined.into();
                    continue;
                }
            }
        }
        out.push(x);
    }
    out
}

/// Every `"cin"` value in `v` through `map`, which must be one to one.
fn rename_cins(v: &mut Value, map: &mut HashMap<u64, u64>, seen: &mut HashMap<u64, u64>, mdf: &Value) {
    match (v, mdf) {
        (Value::Object(o), Value::Object(m)) => {
            for (k, x) in o.iter_mut() {
                let Some(y) = m.get(k) else { continue };
                if matches!(k.as_str(), "object" | "parent" | "id" | "begin" | "data" | "gap" | "end") {
                    if let Some(n) = x.as_u64().filter(|n| *n >= 1 << 48) {
                        assert_eq!(n >> 48, 1, "an object id out of the POI's range");
                        *x = (n & ((1 << 48) - 1)).into();
                        continue;
                    }
                }
                if k == "cin" || k == "closed" {
                    if let (Some(poi), Some(mdf)) = (x.as_u64(), y.as_u64()) {
                        let to = *map.entry(poi).or_insert(mdf);
                        let back = *seen.entry(to).or_insert(poi);
                        assert_eq!(back, poi, "MDF CIN {to} stands for POI CINs {back} and {poi}");
                        *x = to.into();
                        continue;
                    }
                }
                rename_cins(x, map, seen, y);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (x, y) in a.iter_mut().zip(b) {
                rename_cins(x, map, seen, y);
            }
        }
        _ => {}
    }
}

/// The records of `capture` under one warrant of `scope`: as made (the POI's) and as the MDF
/// rebuilt them from the PDUs, which cross as one byte stream framed by the codec.
fn both_sides(capture: &Path, scope: &str) -> (Vec<Value>, Vec<Value>, u64) {
    struct Poi {
        made: Vec<Value>,
        enc: PoiEncoder,
        wire: BytesMut,
        /// Where the next PDU starts in the stream (as a spool's offsets would say).
        pos: u64,
    }
    impl RecordSink for Poi {
        fn record(&mut self, rec: Record<'_>) {
            self.made.push(canonical(&rec));
            let mut pdus = BytesMut::new();
            self.enc.encode(&rec, &mut pdus);
            while let Some(mut pdu) = X2x3Codec::default().decode(&mut pdus).unwrap() {
                set_position(&mut pdu, self.pos);
                self.pos += pdu.len() as u64;
                self.wire.extend_from_slice(&pdu);
            }
        }
    }
    #[derive(Default)]
    struct Mdf(Vec<Value>);
    impl RecordSink for Mdf {
        fn record(&mut self, rec: Record<'_>) {
            self.0.push(canonical(&rec));
        }
    }
    let w = parse_warrants(&warrant(scope), "w.toml").unwrap();
    let xid = w.warrants[0].xid;
    let p = Pipeline::new(w.warrants.clone(), Vec::new(), DecodeConfig::default(), FlowConfig::default());
    p.numbers().set_object_range(1);
    let mut engine = Engine::start(vec![p]).unwrap();
    let mut recorder = engine.recorder(&w.warrants, FlowConfig::default().content, None);
    recorder.pass_through();
    let xids: HashMap<Liid, Xid> = [(Liid::new(LIID).unwrap(), xid)].into();
    let mut poi = Poi { made: Vec::new(), enc: PoiEncoder::new(xids, Some("poi-test")), wire: BytesMut::new(), pos: 1 };
    let file = CaptureFile::open(capture).unwrap();
    let mut frames = file.frames();
    while let Some(f) = frames.next_frame() {
        if let Ok(f) = f {
            engine.frame(&f, &mut recorder, &mut poi);
        }
    }
    engine.finish(&mut recorder, &mut poi);
    let scope = w.warrants[0].scope;
    let tasks = [(xid, Task { liid: Liid::new(LIID).unwrap(), scope })].into();
    let mut intake = MdfIntake::new(tasks, 1 << 16, Default::default());
    let mut mdf = Mdf::default();
    let name: Arc<str> = Arc::from("poi-test");
    let mut codec = X2x3Codec::default();
    let mut refused = 0;
    let mut again = poi.wire.clone();
    let mut pdus = 0;
    while let Some(frame) = codec.decode(&mut poi.wire).unwrap() {
        pdus += 1;
        if let Err(e) = intake.pdu(&name, &frame, &mut mdf) {
            eprintln!("{}: refused: {e}", capture.display());
            refused += 1;
        }
    }
    assert!(poi.wire.is_empty(), "PDUs left unframed");
    // The whole stream sent again (a POI that lost its connection before any confirmation):
    // every PDU is recognised by its position and dropped.
    let before = mdf.0.len();
    while let Some(frame) = codec.decode(&mut again).unwrap() {
        intake.pdu(&name, &frame, &mut mdf).unwrap();
    }
    assert_eq!(mdf.0.len(), before, "a resent PDU was taken twice");
    assert_eq!(intake.counts.resent, pdus);
    assert_eq!(poi.enc.counts.no_xid + poi.enc.counts.encode_errors, 0, "{:?}", poi.enc.counts);
    (join_data(poi.made), join_data(mdf.0), refused)
}

#[test]
fn every_record_of_the_shipped_captures_crosses_x2x3_unchanged_but_for_its_cin() {
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for capture in captures() {
        let (made, mut got, refused) = both_sides(&capture, "iri+cc");
        assert_eq!(refused, 0, "{}", capture.display());
        // CC frames without IP (ARP) do not cross as IP: the only records allowed to differ.
        let made: Vec<Value> =
            made.into_iter().filter(|v| v.get("cc").is_none() || !v["cc"].as_str().unwrap().is_empty()).collect();
        assert_eq!(made.len(), got.len(), "{}: record counts", capture.display());
        if made.iter().any(|v| v.get("begin").is_some()) {
            assert!(
                made.iter().all(|v| v.get("begin").is_none_or(|b| b.as_u64().unwrap() >> 48 == 1)),
                "the POI numbers its objects in its range"
            );
        }
        let (mut map, mut seen) = (HashMap::new(), HashMap::new());
        for (m, g) in made.iter().zip(got.iter_mut()) {
            let mut renamed = m.clone();
            rename_cins(&mut renamed, &mut map, &mut seen, g);
            assert_eq!(&renamed, g, "{}: a record changed across X2/X3", capture.display());
            let kind = match m.pointer("/iri/event").and_then(Value::as_str) {
                Some(e) => format!("iri:{e}"),
                None => ["cc", "begin", "data", "gap", "end", "closed"]
                    .into_iter()
                    .find(|k| m.get(k).is_some())
                    .unwrap()
                    .to_string(),
            };
            *kinds.entry(kind).or_default() += 1;
        }
    }
    eprintln!("crossed: {kinds:?}");
    for k in [
        "cc",
        "begin",
        "data",
        "end",
        "closed",
        "iri:session-begin",
        "iri:session-end",
        "iri:object",
        "iri:ftp",
        "iri:http",
        "iri:smtp",
        "iri:tls",
        "iri:warrant",
    ] {
        assert!(kinds.contains_key(k), "no {k} record crossed: {kinds:?}");
    }
}

#[test]
fn an_iri_only_warrant_sends_no_content_and_the_mdf_would_refuse_it() {
    for capture in captures().into_iter().filter(|c| c.to_string_lossy().contains("ftp")) {
        let (made, got, refused) = both_sides(&capture, "iri");
        assert_eq!(refused, 0);
        assert!(made.iter().all(|v| v.get("cc").is_none() && v.get("data").is_none()), "the gate let content through");
        assert_eq!(made.len(), got.len());
    }
    // What an IRI-only task's PDUs may not carry, the MDF refuses even if a POI sends it.
    let w = parse_warrants(&warrant("iri+cc"), "w.toml").unwrap();
    let xid = w.warrants[0].xid;
    let mut enc = PoiEncoder::new([(Liid::new(LIID).unwrap(), xid)].into(), None);
    let capture = captures().into_iter().find(|c| c.to_string_lossy().contains("ftp")).unwrap();
    let mut wire = BytesMut::new();
    let file = CaptureFile::open(&capture).unwrap();
    let mut frames = file.frames();
    let f = frames.next_frame().unwrap().unwrap();
    let liid = Liid::new(LIID).unwrap();
    let cc = tapir::record::CcRecord {
        liid: &liid,
        cin: tapir::record::Cin::FIRST,
        ts: f.ts,
        link: f.link,
        data: f.data,
        orig_len: f.orig_len,
        dir: None,
        target: None,
    };
    assert_eq!(enc.encode(&Record::Cc(cc), &mut wire), 1);
    let mut intake =
        MdfIntake::new([(xid, Task { liid: liid.clone(), scope: Scope::Iri })].into(), 16, Default::default());
    let frame = X2x3Codec::default().decode(&mut wire).unwrap().unwrap();
    let e = intake.pdu(&Arc::from("p"), &frame, &mut tapir::record::VecSink::default()).unwrap_err();
    assert!(e.to_string().contains("outside the warrant's scope"), "{e}");
    assert_eq!(intake.counts.refused, 1);
    // And an XID it does not know.
    let mut other = MdfIntake::new(HashMap::new(), 16, Default::default());
    let mut wire = BytesMut::new();
    enc.encode(&Record::SessionClosed { liid: &liid, cin: tapir::record::Cin::FIRST, ts: f.ts }, &mut wire);
    let frame = X2x3Codec::default().decode(&mut wire).unwrap().unwrap();
    let e = other.pdu(&Arc::from("p"), &frame, &mut tapir::record::VecSink::default()).unwrap_err();
    assert!(e.to_string().starts_with("unknown XID"), "{e}");
}
