//! tapir's national IP IRI parameters: what TS 102 232-3 has no field for, in
//! `IPIRIContents.nationalIPIRIParameters [20]` after its extension marker, as the standard
//! invites ("national parameters ... defined using the ASN.1 syntax and added after the extension
//! marker", with a version and a vendor identification).
//!
//! The ASN.1 is `schemas/tapir-hi2.asn` (`TapirIRI` and the types under it), which
//! `tools/tapir_asn1.py` merges into the shared LI-PS-PDU subset so that Python asn1tools decodes
//! every field. A decoder with the plain subset skips these parameters and reads the rest of the
//! PDU as usual. Keep this encoder and that file in step: `tests/etsi_national.rs` decodes what
//! this writes with asn1tools.
//!
//! Pure: records in, BER content octets out.

use std::net::IpAddr;

use super::ber::{put_bool, put_cons, put_prim, put_uint, Tag};
use super::ipaccess::IpAddress;
use crate::analyze::ftp::{FtpEvent, FtpMode};
use crate::analyze::http::HttpEvent;
use crate::analyze::mpegts::TsEvent;
use crate::analyze::rtmp::RtmpEvent;
use crate::analyze::rtp::RtpEvent;
use crate::analyze::rtsp::RtspEvent;
use crate::analyze::sip::SipEvent;
use crate::analyze::smtp::SmtpEvent;
use crate::analyze::tls::TlsEvent;
use crate::record::{Counters, Dir, FlowDescr, IriEvent, IriRecord, ObjectRecord, Provenance, WireConflict};
use crate::vmi::intake::VmiEvent;

/// The vendor identification written in every TapirIRI.
pub const VENDOR: &str = "tapir";
/// The version of these parameters (`schemas/tapir-hi2.asn`).
pub const VERSION: u64 = 1;
/// countryCode when the LEA has no `country`: ISO 3166-1's user-assigned "unknown".
pub const NO_COUNTRY: &str = "ZZ";

/// The flow a record is about, and which side of it is the target.
#[derive(Copy, Clone, Debug)]
pub struct FlowSide<'a> {
    pub flow: &'a FlowDescr,
    pub target: Dir,
}

/// The content octets of `NationalIPIRIParameters`: country, vendor, version, then TapirIRI
/// (`tapir`: its content octets, from [`tapir_iri`]).
pub fn national_parameters(o: &mut Vec<u8>, country: &str, tapir: &[u8]) {
    put_prim(o, Tag::ctx(1), country.as_bytes());
    put_prim(o, Tag::ctx(2), VENDOR.as_bytes());
    put_uint(o, Tag::ctx(3), VERSION);
    put_prim(o, Tag::ctx_cons(4), tapir);
}

/// The content octets of TapirIRI for `rec`. `flow` is the flow the record is about when the
/// record does not say it itself (an FTP or HTTP event names its session by CIN only).
pub fn tapir_iri(rec: &IriRecord, flow: Option<FlowSide<'_>>) -> Vec<u8> {
    let mut o = Vec::with_capacity(512);
    let record_type = record_type(&rec.event);
    put_prim(&mut o, Tag::ctx(0), record_type.as_bytes());
    let own_flow = match &rec.event {
        IriEvent::SessionBegin { flow, .. }
        | IriEvent::SessionContinue { flow, .. }
        | IriEvent::SessionEnd { flow, .. } => Some(FlowSide { flow, target: flow.target_side(&rec.provenance) }),
        IriEvent::Object(obj) => {
            Some(FlowSide { flow: &obj.meta.flow, target: obj.meta.flow.target_side(&rec.provenance) })
        }
        _ => None,
    };
    let side = own_flow.or(flow);
    if let Some(s) = side {
        put_cons(&mut o, Tag::ctx_cons(1), 64, |o| flow_info(o, s));
    }
    match (&rec.event, side) {
        (IriEvent::SessionContinue { counters, .. }, Some(s)) => {
            put_cons(&mut o, Tag::ctx_cons(2), 32, |o| counters_info(o, counters, &[], s.target));
        }
        (IriEvent::SessionEnd { counters, gaps, .. }, Some(s)) => {
            put_cons(&mut o, Tag::ctx_cons(2), 32, |o| counters_info(o, counters, gaps, s.target));
        }
        _ => {}
    }
    if !matches!(rec.event, IriEvent::Warrant { .. }) {
        put_cons(&mut o, Tag::ctx_cons(3), 64, |o| provenance(o, &rec.provenance));
    }
    let mut event = Vec::new();
    event_choice(&mut event, &rec.event, side);
    if !event.is_empty() {
        put_prim(&mut o, Tag::ctx_cons(4), &event);
    }
    if let Ok(json) = serde_json::to_string(rec) {
        put_prim(&mut o, Tag::ctx(5), json.as_bytes());
    }
    o
}

/// The record's `event` as the case writes it.
pub fn record_type(e: &IriEvent) -> &'static str {
    match e {
        IriEvent::SessionBegin { .. } => "session-begin",
        IriEvent::SessionContinue { .. } => "session-continue",
        IriEvent::SessionEnd { .. } => "session-end",
        IriEvent::Object(_) => "object",
        IriEvent::Association { .. } => "association",
        IriEvent::Warrant { .. } => "warrant",
        IriEvent::WireConflict(_) => "wire-conflict",
        IriEvent::App(a) => a.protocol(),
    }
}

fn utf8(o: &mut Vec<u8>, n: u32, v: Option<&str>) {
    if let Some(s) = v {
        put_prim(o, Tag::ctx(n), s.as_bytes());
    }
}

fn uint(o: &mut Vec<u8>, n: u32, v: Option<u64>) {
    if let Some(v) = v {
        put_uint(o, Tag::ctx(n), v);
    }
}

fn boolean(o: &mut Vec<u8>, n: u32, v: Option<bool>) {
    if let Some(v) = v {
        put_bool(o, Tag::ctx(n), v);
    }
}

/// A digest written in hex in the case, as its octets; `None` if it is not hex.
fn digest(o: &mut Vec<u8>, n: u32, hex_text: Option<&str>) {
    if let Some(b) = hex_text.and_then(|h| hex::decode(h).ok()) {
        put_prim(o, Tag::ctx(n), &b);
    }
}

fn strings<'s>(o: &mut Vec<u8>, n: u32, v: impl IntoIterator<Item = &'s str>) {
    put_cons(o, Tag::ctx_cons(n), 0, |o| {
        for s in v {
            put_prim(o, Tag::UTF8_STRING, s.as_bytes());
        }
    });
}

fn gaps(o: &mut Vec<u8>, n: u32, g: &[(u64, u64)]) {
    put_cons(o, Tag::ctx_cons(n), 0, |o| {
        for (off, len) in g {
            put_cons(o, Tag::SEQUENCE, 8, |o| {
                put_uint(o, Tag::ctx(0), *off);
                put_uint(o, Tag::ctx(1), *len);
            });
        }
    });
}

/// The IANA protocol number of a flow's `proto` name.
fn proto_number(p: &str) -> u64 {
    match p {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" => 58,
        n => n.parse().unwrap_or(0),
    }
}

fn flow_info(o: &mut Vec<u8>, s: FlowSide<'_>) {
    let (target, other) = (s.flow.side(s.target), s.flow.side(s.target.reverse()));
    let proto = proto_number(&s.flow.proto);
    let ports = proto == 6 || proto == 17;
    put_uint(o, Tag::ctx(0), proto);
    uint(o, 1, ports.then_some(target.port().into()));
    IpAddress::host(other.ip()).encode(o, Tag::ctx_cons(2));
    uint(o, 3, ports.then_some(other.port().into()));
    put_bool(o, Tag::ctx(4), s.target == Dir::Orig);
    if !s.flow.vlans.is_empty() {
        put_cons(o, Tag::ctx_cons(5), 0, |o| {
            for v in &s.flow.vlans {
                put_uint(o, Tag::INTEGER, (*v).into());
            }
        });
    }
    if !s.flow.tunnels.is_empty() {
        put_cons(o, Tag::ctx_cons(6), 0, |o| {
            for t in &s.flow.tunnels {
                put_cons(o, Tag::SEQUENCE, 48, |o| {
                    let kind = serde_json::to_value(t.kind).ok();
                    utf8(o, 0, kind.as_ref().and_then(|k| k.as_str()));
                    IpAddress::host(t.outer_src).encode(o, Tag::ctx_cons(1));
                    IpAddress::host(t.outer_dst).encode(o, Tag::ctx_cons(2));
                    uint(o, 3, t.vni.map(u64::from));
                });
            }
        });
    }
}

fn counters_info(o: &mut Vec<u8>, c: &Counters, g: &[Vec<(u64, u64)>], target: Dir) {
    let (t, r) = (target.index(), target.reverse().index());
    put_uint(o, Tag::ctx(0), c.packets[t]);
    put_uint(o, Tag::ctx(1), c.packets[r]);
    put_uint(o, Tag::ctx(2), c.payload[t]);
    put_uint(o, Tag::ctx(3), c.payload[r]);
    for (n, k) in [(4, t), (5, r)] {
        if let Some(list) = g.get(k).filter(|l| !l.is_empty()) {
            gaps(o, n, list);
        }
    }
    for (n, k) in [(6, t), (7, r)] {
        let w = [c.checksum_failed[k], c.unverified[k], c.conflicts[k]];
        if w != [0; 3] {
            put_cons(o, Tag::ctx_cons(n), 12, |o| {
                for (i, v) in w.into_iter().enumerate() {
                    put_uint(o, Tag::ctx(i as u32), v);
                }
            });
        }
    }
}

/// TapirWireConflict's content octets.
fn wire_conflict(o: &mut Vec<u8>, c: &WireConflict) {
    put_bool(o, Tag::ctx(0), c.from_target);
    put_uint(o, Tag::ctx(1), c.offset);
    put_uint(o, Tag::ctx(2), c.len);
    let kind = serde_json::to_value(c.kind).ok();
    put_prim(o, Tag::ctx(3), kind.as_ref().and_then(|k| k.as_str()).unwrap_or("").as_bytes());
    digest(o, 4, c.kept_sha256.as_deref());
    digest(o, 5, Some(&c.other_sha256));
}

fn provenance(o: &mut Vec<u8>, p: &Provenance) {
    put_prim(o, Tag::ctx(0), p.selector.as_bytes());
    put_prim(o, Tag::ctx(1), p.target.as_bytes());
    strings(o, 2, p.chain.iter().map(String::as_str));
}

/// TapirEvent (a CHOICE: the alternative's own tag, constructed), or nothing for the records
/// that TapirFlow and TapirCounters describe whole (sessions).
fn event_choice(o: &mut Vec<u8>, e: &IriEvent, side: Option<FlowSide<'_>>) {
    match e {
        IriEvent::App(a) => {
            if let Some(f) = a.get::<FtpEvent>() {
                put_cons(o, Tag::ctx_cons(0), 128, |o| ftp(o, f));
            } else if let Some(h) = a.get::<HttpEvent>() {
                put_cons(o, Tag::ctx_cons(1), 128, |o| http(o, h));
            } else if let Some(t) = a.get::<TlsEvent>() {
                put_cons(o, Tag::ctx_cons(2), 128, |o| tls(o, t));
            } else if let Some(s) = a.get::<SmtpEvent>() {
                put_cons(o, Tag::ctx_cons(3), 64, |o| smtp(o, s));
            } else if let Some(v) = a.get::<VmiEvent>() {
                put_cons(o, Tag::ctx_cons(7), 512, |o| vmi(o, v));
            } else if let Some(m) = a.get::<RtmpEvent>() {
                put_cons(o, Tag::ctx_cons(8), 128, |o| media::rtmp(o, m));
            } else if let Some(m) = a.get::<RtpEvent>() {
                put_cons(o, Tag::ctx_cons(8), 128, |o| media::rtp(o, m));
            } else if let Some(m) = a.get::<RtspEvent>() {
                put_cons(o, Tag::ctx_cons(8), 128, |o| media::rtsp(o, m));
            } else if let Some(m) = a.get::<SipEvent>() {
                put_cons(o, Tag::ctx_cons(8), 128, |o| media::sip(o, m));
            } else if let Some(m) = a.get::<TsEvent>() {
                put_cons(o, Tag::ctx_cons(8), 128, |o| media::mpegts(o, m));
            }
        }
        IriEvent::Object(obj) => put_cons(o, Tag::ctx_cons(4), 256, |o| object(o, obj, side)),
        IriEvent::WireConflict(c) => put_cons(o, Tag::ctx_cons(6), 96, |o| wire_conflict(o, c)),
        IriEvent::Association { what, detail, selectors_added, selectors_removed } => {
            put_cons(o, Tag::ctx_cons(5), 128, |o| {
                put_prim(o, Tag::ctx(0), what.as_bytes());
                put_cons(o, Tag::ctx_cons(1), 0, |o| {
                    for (k, v) in detail.as_object().into_iter().flatten() {
                        let text = match v {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Null => continue,
                            other => other.to_string(),
                        };
                        put_cons(o, Tag::SEQUENCE, k.len() + text.len() + 4, |o| {
                            put_prim(o, Tag::ctx(0), k.as_bytes());
                            put_prim(o, Tag::ctx(1), text.as_bytes());
                        });
                    }
                });
                if !selectors_added.is_empty() {
                    strings(o, 2, selectors_added.iter().map(String::as_str));
                }
                if !selectors_removed.is_empty() {
                    strings(o, 3, selectors_removed.iter().map(String::as_str));
                }
            });
        }
        IriEvent::SessionBegin { .. }
        | IriEvent::SessionContinue { .. }
        | IriEvent::SessionEnd { .. }
        | IriEvent::Warrant { .. } => {}
    }
}

fn ftp(o: &mut Vec<u8>, f: &FtpEvent) {
    let action = serde_json::to_value(f.action).ok();
    put_prim(o, Tag::ctx(0), action.as_ref().and_then(|a| a.as_str()).unwrap_or("").as_bytes());
    utf8(o, 1, f.user.as_deref());
    utf8(o, 2, f.command.as_deref());
    utf8(o, 3, f.path.as_deref());
    utf8(o, 4, f.to.as_deref());
    utf8(o, 5, f.cwd.as_deref());
    uint(o, 6, f.reply.as_ref().map(|r| r.code.into()));
    utf8(o, 7, f.reply.as_ref().map(|r| r.text.as_str()));
    boolean(o, 8, f.success);
    if let Some(t) = &f.transfer {
        put_cons(o, Tag::ctx_cons(9), 96, |o| {
            let mode = t.mode.map(|m| match m {
                FtpMode::Passive => "passive",
                FtpMode::Active => "active",
            });
            utf8(o, 0, mode);
            if let Some(a) = t.announced {
                IpAddress::host(a.ip()).encode(o, Tag::ctx_cons(1));
                put_uint(o, Tag::ctx(2), a.port().into());
            }
            uint(o, 3, t.data_cin.map(u64::from));
            uint(o, 4, t.size);
            put_uint(o, Tag::ctx(5), t.wire_bytes);
            digest(o, 6, t.sha256.as_deref());
            uint(o, 7, t.object);
            put_bool(o, Tag::ctx(8), t.complete);
            uint(o, 9, t.offset);
        });
    }
}

fn http(o: &mut Vec<u8>, h: &HttpEvent) {
    utf8(o, 0, h.method.as_deref());
    utf8(o, 1, h.uri.as_deref());
    utf8(o, 2, h.version.as_deref());
    utf8(o, 3, h.host.as_deref());
    utf8(o, 4, h.user_agent.as_deref());
    uint(o, 5, h.status.map(u64::from));
    put_uint(o, Tag::ctx(6), h.request_body_len);
    put_uint(o, Tag::ctx(7), h.response_body_len);
    utf8(o, 8, h.request_content_type.as_deref());
    utf8(o, 9, h.response_content_type.as_deref());
    let objects: Vec<(bool, &crate::analyze::http::body::ObjRef)> =
        h.request_objects.iter().map(|r| (true, r)).chain(h.response_objects.iter().map(|r| (false, r))).collect();
    if !objects.is_empty() {
        put_cons(o, Tag::ctx_cons(10), 0, |o| {
            for (from_client, r) in objects {
                put_cons(o, Tag::SEQUENCE, 64, |o| {
                    put_uint(o, Tag::ctx(0), r.id);
                    put_bool(o, Tag::ctx(1), from_client);
                    utf8(o, 2, r.name.as_deref());
                    let sha = hex::decode(&r.sha256).unwrap_or_default();
                    put_prim(o, Tag::ctx(3), &sha);
                    put_uint(o, Tag::ctx(4), r.size);
                    put_bool(o, Tag::ctx(5), r.complete);
                });
            }
        });
    }
    utf8(o, 11, h.image_id.as_deref());
    if !h.sdp_media.is_empty() {
        strings(o, 12, h.sdp_media.iter().map(String::as_str));
    }
}

/// TapirMedia: one layout for the four media protocols' events.
mod media {
    use super::{boolean, digest, strings, uint, utf8};
    use crate::analyze::mpegts::TsEvent;
    use crate::analyze::rtmp::RtmpEvent;
    use crate::analyze::rtp::RtpEvent;
    use crate::analyze::rtsp::RtspEvent;
    use crate::analyze::sip::SipEvent;
    use crate::deliver::etsi::ber::{put_prim, Tag};

    /// A signed INTEGER, in the fewest octets.
    fn int(o: &mut Vec<u8>, n: u32, v: Option<i64>) {
        let Some(v) = v else { return };
        let b = v.to_be_bytes();
        let mut i = 0;
        while i < 7 && ((b[i] == 0 && b[i + 1] & 0x80 == 0) || (b[i] == 0xff && b[i + 1] & 0x80 != 0)) {
            i += 1;
        }
        put_prim(o, Tag::ctx(n), &b[i..]);
    }

    fn head(o: &mut Vec<u8>, protocol: &str, what: &str) {
        put_prim(o, Tag::ctx(0), protocol.as_bytes());
        put_prim(o, Tag::ctx(1), what.as_bytes());
    }

    pub fn rtmp(o: &mut Vec<u8>, e: &RtmpEvent) {
        let what = serde_json::to_value(e.what).ok();
        head(o, "rtmp", what.as_ref().and_then(|w| w.as_str()).unwrap_or(""));
        utf8(o, 2, e.tc_url.as_deref());
        utf8(o, 3, e.app.as_deref());
        utf8(o, 4, e.mode);
        digest(o, 5, e.stream_name_sha256.as_deref());
        utf8(o, 7, e.status.as_deref());
        let Some(m) = &e.media else {
            utf8(o, 26, e.error.as_deref());
            return;
        };
        let codecs: Vec<&str> = m.video.iter().map(|v| v.codec).chain(m.audio.iter().map(|a| a.codec)).collect();
        if !codecs.is_empty() {
            strings(o, 13, codecs);
        }
        if let Some(v) = &m.video {
            uint(o, 14, v.width.map(u64::from));
            uint(o, 15, v.height.map(u64::from));
            uint(o, 16, v.frame_rate.map(|r| (r * 1000.0).round() as u64));
        }
        uint(o, 17, Some(m.duration_ms));
        uint(o, 18, m.video.as_ref().map(|v| v.frames));
        uint(o, 23, Some(m.object));
        digest(o, 24, m.sha256.as_deref());
        boolean(o, 25, Some(m.complete));
        let note = e.error.clone().or_else(|| m.mp4.as_ref().and_then(|x| x.note.clone()));
        utf8(o, 26, note.as_deref());
        uint(o, 27, m.mp4.as_ref().and_then(|x| x.object));
    }

    pub fn rtp(o: &mut Vec<u8>, e: &RtpEvent) {
        head(o, "rtp", e.what);
        int(o, 12, Some(i64::from(e.ssrc)));
        if let Some(c) = e.codec {
            strings(o, 13, [c]);
        }
        // Context tags in the order the SEQUENCE defines them.
        let m = e.media.as_ref();
        uint(o, 14, m.and_then(|m| m.width).map(u64::from));
        uint(o, 15, m.and_then(|m| m.height).map(u64::from));
        uint(o, 16, m.and_then(|m| m.frame_rate).map(|r| (r * 1000.0).round() as u64));
        uint(o, 17, m.map(|m| m.duration_ms));
        uint(o, 18, m.and_then(|m| m.frames));
        uint(o, 19, m.and_then(|m| m.lost_frames));
        if let Some(s) = &e.stats {
            uint(o, 20, Some(s.packets));
            int(o, 21, Some(s.lost));
            uint(o, 22, Some((s.jitter_ms * 1000.0).round() as u64));
        }
        uint(o, 23, m.map(|m| m.object));
        digest(o, 24, m.and_then(|m| m.sha256.as_deref()));
        utf8(o, 26, e.note.as_deref());
    }

    pub fn rtsp(o: &mut Vec<u8>, e: &RtspEvent) {
        head(o, "rtsp", "request");
        utf8(o, 2, Some(&e.url));
        utf8(o, 6, Some(&e.method));
        utf8(o, 7, e.status.map(|s| s.to_string()).as_deref());
        if !e.media.is_empty() {
            let listed: Vec<String> = e
                .media
                .iter()
                .map(|m| match (&m.encoding, m.clock_rate) {
                    (Some(n), Some(r)) => format!("{} {n}/{r}", m.media),
                    _ => format!("{} {}", m.media, m.payload_type),
                })
                .collect();
            strings(o, 11, listed.iter().map(String::as_str));
        }
    }

    pub fn mpegts(o: &mut Vec<u8>, e: &TsEvent) {
        head(o, "mpegts", e.what);
        let m = &e.media;
        if !m.streams.is_empty() {
            strings(o, 13, m.streams.iter().map(|s| s.codec));
        }
        uint(o, 17, Some(m.duration_ms));
        uint(o, 20, Some(m.packets));
        uint(o, 23, Some(m.object));
        digest(o, 24, m.sha256.as_deref());
        let errors = (m.continuity_errors, m.malformed);
        let note =
            (errors != (0, 0)).then(|| format!("{} continuity errors, {} malformed packets", errors.0, errors.1));
        utf8(o, 26, note.as_deref());
    }

    pub fn sip(o: &mut Vec<u8>, e: &SipEvent) {
        head(o, "sip", e.kind);
        utf8(o, 2, e.request_uri.as_deref());
        utf8(o, 6, e.method.as_deref());
        utf8(o, 7, e.status.map(|s| s.to_string()).as_deref());
        utf8(o, 8, e.call_id.as_deref());
        utf8(o, 9, e.from.as_deref());
        utf8(o, 10, e.to.as_deref());
        if !e.media.is_empty() {
            strings(o, 11, e.media.iter().map(String::as_str));
        }
    }
}

fn tls(o: &mut Vec<u8>, t: &TlsEvent) {
    utf8(o, 0, t.version.as_deref());
    utf8(o, 1, t.sni.as_deref());
    if !t.alpn_offered.is_empty() {
        strings(o, 2, t.alpn_offered.iter().map(String::as_str));
    }
    utf8(o, 3, t.alpn_selected.as_deref());
    utf8(o, 4, t.cipher_suite.as_deref());
    if let Some(c) = &t.certificate {
        put_prim(o, Tag::ctx(5), c.subject.as_bytes());
        put_prim(o, Tag::ctx(6), c.issuer.as_bytes());
        if !c.sans.is_empty() {
            strings(o, 7, c.sans.iter().map(String::as_str));
        }
        digest(o, 8, Some(&c.sha256));
    }
    utf8(o, 9, t.ja4.as_deref());
    utf8(o, 10, t.ja4s.as_deref());
    utf8(o, 11, t.upgraded_from.as_deref());
    put_bool(o, Tag::ctx(12), t.complete);
}

fn smtp(o: &mut Vec<u8>, s: &SmtpEvent) {
    let what = serde_json::to_value(s.what).ok();
    put_prim(o, Tag::ctx(0), what.as_ref().and_then(|w| w.as_str()).unwrap_or("").as_bytes());
    utf8(o, 1, s.helo.as_deref());
    uint(o, 2, s.reply.as_ref().map(|r| r.code.into()));
    utf8(o, 3, s.reply.as_ref().map(|r| r.text.as_str()));
    boolean(o, 4, s.success.or_else(|| s.reply.as_ref().map(|r| r.positive())));
    if !s.anomalies.is_empty() {
        put_cons(o, Tag::ctx_cons(5), 0, |o| {
            for (name, n) in &s.anomalies {
                put_cons(o, Tag::SEQUENCE, name.len() + 8, |o| {
                    put_prim(o, Tag::ctx(0), name.as_bytes());
                    put_uint(o, Tag::ctx(1), *n);
                });
            }
        });
    }
}

fn object(o: &mut Vec<u8>, r: &ObjectRecord, side: Option<FlowSide<'_>>) {
    put_uint(o, Tag::ctx(0), r.id);
    put_prim(o, Tag::ctx(1), r.meta.kind.as_bytes());
    put_prim(o, Tag::ctx(2), r.meta.protocol.as_bytes());
    utf8(o, 3, r.meta.name.as_deref());
    boolean(o, 4, side.map(|s| s.target == r.meta.direction));
    put_uint(o, Tag::ctx(5), r.size);
    digest(o, 6, Some(&r.sha256));
    digest(o, 7, r.md5.as_deref());
    digest(o, 8, r.sha512.as_deref());
    utf8(o, 9, r.format.as_ref().map(|f| f.format.as_str()));
    utf8(o, 10, r.format.as_ref().map(|f| f.reason.as_str()));
    put_bool(o, Tag::ctx(11), r.complete);
    if !r.gaps.is_empty() {
        gaps(o, 12, &r.gaps);
    }
    uint(o, 13, r.meta.parent);
    uint(o, 14, r.meta.declared_size);
    if !r.wire_conflicts.is_empty() {
        put_cons(o, Tag::ctx_cons(15), 0, |o| {
            for c in &r.wire_conflicts {
                put_cons(o, Tag::SEQUENCE, 96, |o| wire_conflict(o, c));
            }
        });
    }
    // The cross-link to an inspected image's artifact, as the case says it.
    utf8(o, 16, r.meta.context.get("equals_artifact").and_then(|l| l.get("says")).and_then(|s| s.as_str()));
}

/// TapirVmi: the summary of one image inspection.
fn vmi(o: &mut Vec<u8>, v: &VmiEvent) {
    put_uint(o, Tag::ctx(0), v.image_object);
    digest(o, 1, Some(&v.image_sha256));
    put_prim(o, Tag::ctx(2), v.outcome.as_bytes());
    utf8(o, 3, v.container.as_deref());
    utf8(o, 4, v.os.as_deref());
    utf8(o, 5, v.hostname.as_deref());
    if !v.users.is_empty() {
        put_cons(o, Tag::ctx_cons(6), 0, |o| {
            for u in &v.users {
                put_cons(o, Tag::SEQUENCE, 32, |o| {
                    put_prim(o, Tag::ctx(0), u.name.as_bytes());
                    put_uint(o, Tag::ctx(1), u.uid.into());
                    put_prim(o, Tag::ctx(2), u.password.as_bytes());
                    if !u.groups.is_empty() {
                        strings(o, 3, u.groups.iter().map(String::as_str));
                    }
                });
            }
        });
    }
    if !v.crontabs.is_empty() {
        put_cons(o, Tag::ctx_cons(7), 0, |o| {
            for c in &v.crontabs {
                put_cons(o, Tag::SEQUENCE, 64, |o| {
                    put_prim(o, Tag::ctx(0), c.place.as_bytes());
                    utf8(o, 1, c.user.as_deref());
                    put_prim(o, Tag::ctx(2), c.line.as_bytes());
                });
            }
        });
    }
    if !v.ssh_keys.is_empty() {
        put_cons(o, Tag::ctx_cons(8), 0, |o| {
            for k in &v.ssh_keys {
                put_cons(o, Tag::SEQUENCE, 96, |o| {
                    put_prim(o, Tag::ctx(0), k.user.as_bytes());
                    put_prim(o, Tag::ctx(1), k.key_type.as_bytes());
                    put_prim(o, Tag::ctx(2), k.comment.as_bytes());
                    put_prim(o, Tag::ctx(3), k.fingerprint.as_bytes());
                });
            }
        });
    }
    if !v.artifacts.is_empty() {
        put_cons(o, Tag::ctx_cons(9), 0, |o| {
            for a in &v.artifacts {
                put_cons(o, Tag::SEQUENCE, 128, |o| {
                    put_prim(o, Tag::ctx(0), a.kind.as_bytes());
                    put_prim(o, Tag::ctx(1), a.place.as_bytes());
                    put_bool(o, Tag::ctx(2), a.from_memory);
                    put_uint(o, Tag::ctx(3), a.size);
                    digest(o, 4, Some(&a.sha256));
                    uint(o, 5, a.object);
                    utf8(o, 6, a.format.as_deref());
                    let mail = a.mail.clone().unwrap_or_default();
                    utf8(o, 7, mail.from.as_deref());
                    utf8(o, 8, mail.to.as_deref());
                    utf8(o, 9, mail.subject.as_deref());
                    utf8(o, 10, mail.message_id.as_deref());
                    utf8(o, 11, mail.date.as_deref());
                    let seen = a.equals_object.as_ref().map(|s| {
                        format!(
                            "equals object {} ({}, {}) seen at {}",
                            s["object"],
                            s["protocol"].as_str().unwrap_or("?"),
                            s["flow"].as_str().unwrap_or("?"),
                            s["first_seen"].as_str().unwrap_or("?")
                        )
                    });
                    utf8(o, 12, seen.as_deref());
                });
            }
        });
    }
    uint(o, 10, v.report_object);
    digest(o, 11, v.report_sha256.as_deref());
    if !v.notes.is_empty() {
        strings(o, 12, v.notes.iter().map(String::as_str));
    }
    utf8(o, 13, v.image_name.as_deref());
    utf8(o, 14, v.timezone.as_deref());
}

/// The address of the target side of `s`.
pub fn target_addr(s: FlowSide<'_>) -> IpAddr {
    s.flow.side(s.target).ip()
}
