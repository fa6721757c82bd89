//! Each session's integrity tail is hashed when the session ends, whatever the warrant's scope.
//!
//! A CC-only warrant gets no iRI-End, which is what used to tell the MDF a session was over: its
//! sessions' last PDUs went unhashed until the run ended (a daemon's months later), and their
//! per-session state was kept as long. The flow layer's `SessionClosed` now tells every output.
//! pcaps/app/smtp.pcap (eight SMTP sessions from real clients) through the library pipeline into
//! an MDF whose LEA hashes every 1000 PDUs: fewer than any session has, so every hash seen
//! before the end-of-run flush is a session's tail.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use tapir::capture::{CaptureFile, Merge};
use tapir::decode::DecodeConfig;
use tapir::deliver::etsi::decode_stream;
use tapir::deliver::handover::{parse_leas, Mdf};
use tapir::flow::FlowConfig;
use tapir::pipeline::Pipeline;
use tapir::record::{Record, RecordSink};
use tapir::select::parse_warrants;

const PCAP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/app/smtp.pcap");

struct ToMdf {
    mdf: Mdf,
    pdus: Vec<Vec<u8>>,
}

impl RecordSink for ToMdf {
    fn record(&mut self, rec: Record<'_>) {
        let pdus = &mut self.pdus;
        self.mdf
            .record(&rec, &mut |_, _, pdu| {
                pdus.push(pdu.to_vec());
                Ok::<(), ()>(())
            })
            .unwrap();
    }
}

/// (CIN, kind) of each PDU: `cc`, `iri`, `hash-cc`, `hash-iri`, `hi1`, `tri`.
fn kinds(pdus: &[Vec<u8>]) -> Vec<(Option<u64>, String)> {
    pdus.iter()
        .map(|p| {
            let v = decode_stream(p).next().unwrap().unwrap();
            let cin = v["pSHeader"]["communicationIdentifier"]["communicationIdentityNumber"].as_u64();
            let pl = &v["payload"];
            let kind = if pl.get("cCPayloadSequence").is_some() {
                "cc".to_string()
            } else if pl.get("iRIPayloadSequence").is_some() {
                "iri".to_string()
            } else if let Some(ic) = pl["tRIPayload"].get("integrityCheck") {
                format!("hash-{}", ic["dataType"].as_str().unwrap().to_lowercase())
            } else if pl.get("hI1-Operation").is_some() {
                "hi1".to_string()
            } else {
                "tri".to_string()
            };
            (cin, kind)
        })
        .collect()
}

fn run(scope: &str) -> (Vec<(Option<u64>, String)>, usize) {
    let text = format!(
        "[[warrant]]\nliid = \"L\"\nstart = \"2026-11-01T00:00:00Z\"\nend = \"2027-01-01T00:00:00Z\"\nscope = \"{scope}\"\n\
         targets = [\"ipv4:198.51.100.7\"]\nlea = \"lea\"\n\n\
         [[lea]]\nname = \"lea\"\nhi2 = \"127.0.0.1:9\"\nhi3 = \"127.0.0.1:9\"\noperator_id = \"OPER-O\"\n\
         integrity = {{ hash_every = 1000 }}\n"
    );
    let w = parse_warrants(&text, "w.toml").unwrap();
    let leas = parse_leas(&w.lea, "w.toml").unwrap();
    let route = w.warrants.iter().map(|w| (w.liid.clone(), 0)).collect::<HashMap<_, _>>();
    let mut sink = ToMdf { mdf: Mdf::new(&leas, vec![None], route, false).unwrap(), pdus: Vec::new() };
    let mut p = Pipeline::new(w.warrants, Vec::new(), DecodeConfig::default(), FlowConfig::default());
    let files = vec![CaptureFile::open(Path::new(PCAP)).unwrap()];
    for (_, item) in Merge::of(&files) {
        p.frame(&item.unwrap().frame(), &mut sink);
    }
    p.finish(&mut sink);
    let before_flush = sink.pdus.len();
    let pdus = &mut sink.pdus;
    sink.mdf
        .flush(p.now(), &mut |_, _, pdu| {
            pdus.push(pdu.to_vec());
            Ok::<(), ()>(())
        })
        .unwrap();
    (kinds(&sink.pdus), before_flush)
}

#[test]
fn every_sessions_cc_is_hashed_at_its_end_whatever_the_scope() {
    for scope in ["cc", "iri+cc"] {
        let (pdus, before_flush) = run(scope);
        let sessions: BTreeSet<u64> = pdus.iter().filter(|(_, k)| k == "cc").filter_map(|(c, _)| *c).collect();
        assert_eq!(sessions.len(), 8, "{scope}: eight SMTP sessions");
        // Each session's CC tail is hashed once, before the end-of-run flush, right after its
        // last CC PDU: no CC of that session follows its hash.
        let mut hashed: BTreeMap<u64, usize> = BTreeMap::new();
        for (i, (cin, k)) in pdus.iter().enumerate() {
            if k == "hash-cc" {
                let cin = cin.unwrap();
                assert!(hashed.insert(cin, i).is_none(), "{scope}: session {cin} hashed twice");
                assert!(i < before_flush, "{scope}: session {cin} hashed only at the end of the run");
            }
        }
        assert_eq!(hashed.keys().copied().collect::<BTreeSet<_>>(), sessions, "{scope}");
        for (cin, at) in hashed {
            let later_cc = pdus[at..].iter().any(|(c, k)| k == "cc" && *c == Some(cin));
            assert!(!later_cc, "{scope}: CC of session {cin} after its tail was hashed");
        }
        // Sessions' IRI streams (the CIN-less one is the warrant's HI1 notices').
        let iri_hashes = pdus.iter().filter(|(c, k)| k == "hash-iri" && c.is_some()).count();
        if scope == "cc" {
            assert_eq!(iri_hashes, 0, "no session IRI to hash");
            assert!(pdus.iter().all(|(_, k)| k != "iri"));
        } else {
            assert!(iri_hashes >= 8, "{iri_hashes}");
        }
    }
}
