//! The scope gate: what a warrant's scope lets through, enforced in one place.
//!
//! Every record a flow, an analyzer, the file layer or the association table produces for a
//! LIID passes a [`Gate`] built from that warrant's [`Scope`] before any output (case writer,
//! MDF, LEMF) sees it. The producers emit everything they know; the gate alone decides.
//!
//! | record | `iri+cc` | `iri` | `cc` |
//! |---|---|---|---|
//! | session begin / continue / end, FTP, HTTP, SMTP, TLS, association IRI | yes | yes | no |
//! | wire conflicts (`event: wire-conflict`: where two versions of a stream's bytes differed) | yes | yes | no |
//! | warrant notices (HI1 liActivated/liModified/liDeactivated) | yes | yes | yes |
//! | CC frames (IPCC, `cc.pcap`) | yes | no | yes |
//! | object bytes (`ObjectBegin`/`Data`/`Gap`: `objects/`, EmailCC) | yes | no | yes |
//! | the finished object's record (`objects.jsonl`, its wire conflicts included) | yes | no | yes, without `name` and `context` |
//! | the finished object as IRI (`event: object`: digests, size, format, gaps) | yes | yes | no |
//! | a session's close (`SessionClosed`: outputs release its state) | yes | yes | yes |
//!
//! - IRI-only: analyzers still run (the IRI of an FTP transfer or a mail needs them) and the
//!   file layer still hashes and sniffs, in metadata-only mode; not one byte of content passes.
//! - CC-only: the content and its description as content (digests, size, format, gaps, the
//!   flow it travelled in, whose addresses every IPCC packet carries anyway), and no IRI: not
//!   what the protocol said about it (`name`, and `context`: method and URI, FTP user, mail
//!   envelope). Warrant notices are HI1, not IRI: they tell the LEA when interception was in
//!   force, which CC delivery needs as much as IRI delivery.

use super::{IriEvent, IriRecord, Record, RecordSink, Scope};

/// A [`RecordSink`] that passes on what `scope` allows (see the module table).
pub struct Gate<'s> {
    scope: Scope,
    inner: &'s mut dyn RecordSink,
}

impl<'s> Gate<'s> {
    pub fn new(scope: Scope, inner: &'s mut dyn RecordSink) -> Gate<'s> {
        Gate { scope, inner }
    }
}

impl RecordSink for Gate<'_> {
    fn record(&mut self, rec: Record<'_>) {
        let (iri, cc) = (self.scope.iri(), self.scope.cc());
        match rec {
            Record::Iri(r) => {
                if iri || matches!(r.event, IriEvent::Warrant { .. }) {
                    self.inner.record(Record::Iri(r));
                }
            }
            Record::SessionClosed { .. } => self.inner.record(rec),
            Record::Cc(_) | Record::ObjectBegin { .. } | Record::ObjectData { .. } | Record::ObjectGap { .. } => {
                if cc {
                    self.inner.record(rec);
                }
            }
            Record::ObjectEnd(mut o, id) => {
                if iri {
                    self.inner.record(Record::Iri(IriRecord {
                        liid: o.liid.clone(),
                        cin: Some(o.meta.cin),
                        ts: o.last_seen,
                        provenance: o.provenance.clone(),
                        event: IriEvent::Object(Box::new(o.clone())),
                    }));
                }
                if cc {
                    if !iri {
                        o.meta.name = None;
                        o.meta.context = serde_json::Value::Null;
                    }
                    self.inner.record(Record::ObjectEnd(o, id));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use super::*;
    use crate::record::{
        CcRecord, Cin, Dir, FlowDescr, Liid, LinkType, ObjectMeta, ObjectRecord, Provenance, VecSink, WarrantOp,
    };
    use crate::timestamp::Timestamp;

    fn all_kinds(sink: &mut dyn RecordSink) {
        let liid = Liid::new("L").unwrap();
        let prov = Arc::new(Provenance { selector: "ipv4:10.0.0.1".into(), target: "t".into(), chain: vec![] });
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:2".parse().unwrap();
        let flow = FlowDescr { proto: "tcp".into(), orig: a, resp: b, vlans: vec![], tunnels: vec![] };
        let ts = Timestamp::from_secs(1);
        let iri = |event| {
            Record::Iri(IriRecord { liid: liid.clone(), cin: Some(Cin::FIRST), ts, event, provenance: prov.clone() })
        };
        sink.record(iri(IriEvent::SessionBegin { flow: flow.clone(), first_seen: ts }));
        sink.record(iri(IriEvent::Warrant { op: WarrantOp::Activated, start: ts, end: ts }));
        sink.record(Record::Cc(CcRecord {
            liid: &liid,
            cin: Cin::FIRST,
            ts,
            link: LinkType::Raw,
            data: b"x",
            orig_len: 1,
            dir: Some(Dir::Orig),
            target: Some(Dir::Orig),
        }));
        let mut meta = ObjectMeta::new("file", "ftp", &flow, Dir::Orig, Cin::FIRST, ts);
        meta.name = Some("secret.txt".into());
        meta.context = serde_json::json!({"user": "joe"});
        sink.record(Record::ObjectBegin { liid: &liid, id: 1, meta: &meta });
        sink.record(Record::ObjectData { liid: &liid, id: 1, offset: 0, data: b"abc" });
        sink.record(Record::ObjectGap { liid: &liid, id: 1, offset: 3, len: 1 });
        let rec = ObjectRecord {
            liid: liid.clone(),
            id: 1,
            meta,
            sha256: "00".into(),
            md5: None,
            sha512: None,
            format: None,
            size: 4,
            gaps: vec![(3, 1)],
            wire_conflicts: vec![],
            complete: false,
            last_seen: ts,
            provenance: prov.clone(),
        };
        sink.record(Record::ObjectEnd(rec, 1));
    }

    fn through(scope: Scope) -> VecSink {
        let mut out = VecSink::default();
        all_kinds(&mut Gate::new(scope, &mut out));
        out
    }

    fn events(v: &VecSink) -> Vec<String> {
        v.iri.iter().map(|r| serde_json::to_value(r).unwrap()["event"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn iri_and_cc_get_everything_and_the_object_as_iri() {
        let v = through(Scope::IriAndCc);
        assert_eq!(events(&v), ["session-begin", "warrant", "object"]);
        assert_eq!(v.cc.len(), 1);
        assert_eq!(v.bytes("L", 1).unwrap(), &b"abc\0".to_vec());
        assert_eq!(v.objects[0].meta.name.as_deref(), Some("secret.txt"));
    }

    #[test]
    fn iri_only_gets_no_content_byte() {
        let v = through(Scope::Iri);
        assert_eq!(events(&v), ["session-begin", "warrant", "object"]);
        assert!(v.cc.is_empty() && v.object_bytes.is_empty() && v.objects.is_empty());
        let IriEvent::Object(o) = &v.iri[2].event else { panic!() };
        assert_eq!((o.size, o.sha256.as_str(), o.gaps.as_slice()), (4, "00", &[(3, 1)][..]));
    }

    #[test]
    fn cc_only_gets_no_iri_but_the_warrant_notice() {
        let v = through(Scope::Cc);
        assert_eq!(events(&v), ["warrant"]);
        assert_eq!(v.cc.len(), 1);
        assert_eq!(v.bytes("L", 1).unwrap(), &b"abc\0".to_vec());
        assert_eq!(v.objects[0].meta.name, None);
        assert!(v.objects[0].meta.context.is_null());
    }
}
