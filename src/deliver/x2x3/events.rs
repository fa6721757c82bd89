//! Application events rebuilt, typed, from the JSON they travel as.
//!
//! X2 carries an IRI record as the case writer writes it: an application event is its
//! protocol's name (`event`) and the fields of its analyzer's type ([`AppEvent::to_json`]). The
//! MDF's HI2 encoder asks for the type back ([`AppEvent::get`]), so the MDF must rebuild the
//! event as that type, not as JSON: [`app_event_from_json`] does, through [`REGISTRY`], one
//! type per protocol name (no name is given events of two types: one `emit_app` or
//! `AppEvent::new` call site, or one function wrapping it, per protocol).
//!
//! Every event read back writes the same JSON and is the same value, but for what its JSON
//! never held: an HTTP object's MD5 kept for the analyzer's own use ([`ObjRef::md5`], empty) and
//! the time an image inspection took ([`VmiEvent::seconds`], 0); neither is evidence, nor read
//! by an encoder. Fields the type does not know are ignored (a newer POI's additions).
//!
//! [`ObjRef::md5`]: crate::analyze::http::body::ObjRef::md5

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::analyze::ftp::FtpEvent;
use crate::analyze::http::HttpEvent;
use crate::analyze::mpegts::TsEvent;
use crate::analyze::rtmp::RtmpEvent;
use crate::analyze::rtp::RtpEvent;
use crate::analyze::rtsp::RtspEvent;
use crate::analyze::sip::SipEvent;
use crate::analyze::smtp::SmtpEvent;
use crate::analyze::tls::TlsEvent;
use crate::analyze::AppIri;
use crate::record::AppEvent;
use crate::vmi::intake::VmiEvent;

/// Why an event could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// No analyzer gives its events this protocol name.
    #[error("no application event is named {0:?}")]
    UnknownProtocol(String),
    /// The fields are not an event of the protocol's type.
    #[error("the fields of a {protocol} event do not fit its type: {source}")]
    Fields {
        protocol: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Rebuilds an event of one protocol from its fields.
pub type Rebuild = fn(&'static str, Value) -> Result<AppEvent, serde_json::Error>;

/// Each protocol name an analyzer gives its events, and how its events are rebuilt.
pub const REGISTRY: &[(&str, Rebuild)] = &[
    ("ftp", typed::<FtpEvent>),
    ("http", typed::<HttpEvent>),
    ("smtp", typed::<SmtpEvent>),
    ("tls", typed::<TlsEvent>),
    ("rtsp", typed::<RtspEvent>),
    ("rtp", typed::<RtpEvent>),
    ("sip", typed::<SipEvent>),
    ("rtmp", typed::<RtmpEvent>),
    ("mpegts", typed::<TsEvent>),
    ("vmi", typed::<VmiEvent>),
];

fn typed<E: AppIri + DeserializeOwned>(protocol: &'static str, fields: Value) -> Result<AppEvent, serde_json::Error> {
    Ok(AppEvent::new(protocol, serde_json::from_value::<E>(fields)?))
}

/// The event of `protocol` whose fields are `fields` (what [`AppEvent::to_json`] gives: the
/// record's JSON without its `event` key), as the type its analyzer made, under the same
/// `&'static str` name.
pub fn app_event_from_json(protocol: &str, fields: Value) -> Result<AppEvent, EventError> {
    let Some(&(name, rebuild)) = REGISTRY.iter().find(|(name, _)| *name == protocol) else {
        return Err(EventError::UnknownProtocol(protocol.to_string()));
    };
    rebuild(name, fields).map_err(|source| EventError::Fields { protocol: name, source })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::analyze::harness::Harness;
    use crate::record::{Close, Dir, IriEvent};

    /// The events `h` recorded.
    fn app_events(h: &Harness) -> Vec<AppEvent> {
        h.sink
            .iri
            .iter()
            .filter_map(|r| match &r.event {
                IriEvent::App(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    /// `a` read back from its JSON (as a value, and as the text X2 carries) is `a`: same name,
    /// same JSON, same value. The protocols seen.
    fn assert_round_trips(events: &[AppEvent]) -> BTreeSet<&'static str> {
        let mut seen = BTreeSet::new();
        for a in events {
            let json = a.to_json();
            let text: Value = serde_json::from_str(&json.to_string()).unwrap();
            for fields in [json.clone(), text] {
                let b = app_event_from_json(a.protocol(), fields).unwrap_or_else(|e| panic!("{e}: {json}"));
                assert_eq!(b.protocol(), a.protocol());
                assert_eq!(b.to_json(), json);
                assert_eq!(format!("{b:?}"), format!("{a:?}"));
            }
            seen.insert(a.protocol());
        }
        seen
    }

    fn amf_str(s: &str) -> Vec<u8> {
        let mut v = vec![0x02];
        v.extend_from_slice(&(s.len() as u16).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn amf_num(n: f64) -> Vec<u8> {
        let mut v = vec![0x00];
        v.extend_from_slice(&n.to_be_bytes());
        v
    }

    /// An AMF0 object (`0x03`) or ECMA array (`0x08`) of `(key, encoded value)`.
    fn amf_obj(ecma: bool, kv: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut v = if ecma { vec![0x08, 0, 0, 0, kv.len() as u8] } else { vec![0x03] };
        for (k, val) in kv {
            v.extend_from_slice(&(k.len() as u16).to_be_bytes());
            v.extend_from_slice(k.as_bytes());
            v.extend_from_slice(val);
        }
        v.extend_from_slice(&[0, 0, 9]);
        v
    }

    /// One RTMP message as chunks of the default 128 bytes on chunk stream `csid`.
    fn rtmp_message(csid: u8, type_id: u8, stream: u32, ts: u32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![csid];
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        v.push(type_id);
        v.extend_from_slice(&stream.to_le_bytes());
        for (i, c) in body.chunks(128).enumerate() {
            if i > 0 {
                v.push(0xc0 | csid);
            }
            v.extend_from_slice(c);
        }
        v
    }

    /// An RTMP publish as FFmpeg makes one: connect, publish of a stream key, its metadata and
    /// AAC audio, the server's answers, then the end of the stream.
    fn rtmp_events() -> Vec<AppEvent> {
        let mut a = crate::analyze::rtmp::analyzer();
        let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:1935");
        let handshake = vec![3u8; crate::analyze::rtmp::HANDSHAKE as usize];
        h.send(a.as_mut(), Dir::Orig, &handshake);
        h.send(a.as_mut(), Dir::Resp, &handshake);
        let connect = [
            amf_str("connect"),
            amf_num(1.0),
            amf_obj(
                false,
                &[
                    ("app", amf_str("live")),
                    ("tcUrl", amf_str("rtmp://joe:pw@192.0.2.2/live?token=abc")),
                    ("flashVer", amf_str("FMLE/3.0")),
                ],
            ),
        ]
        .concat();
        h.send(a.as_mut(), Dir::Orig, &rtmp_message(3, 20, 0, 0, &connect));
        let result = [
            amf_str("_result"),
            amf_num(1.0),
            vec![0x05],
            amf_obj(false, &[("level", amf_str("status")), ("code", amf_str("NetConnection.Connect.Success"))]),
        ]
        .concat();
        h.send(a.as_mut(), Dir::Resp, &rtmp_message(3, 20, 0, 0, &result));
        let publish = [amf_str("publish"), amf_num(5.0), vec![0x05], amf_str("sk_live_key"), amf_str("live")].concat();
        h.send(a.as_mut(), Dir::Orig, &rtmp_message(8, 20, 1, 0, &publish));
        let status = [
            amf_str("onStatus"),
            amf_num(0.0),
            vec![0x05],
            amf_obj(false, &[("level", amf_str("status")), ("code", amf_str("NetStream.Publish.Start"))]),
        ]
        .concat();
        h.send(a.as_mut(), Dir::Resp, &rtmp_message(5, 20, 1, 0, &status));
        let meta = [
            amf_str("@setDataFrame"),
            amf_str("onMetaData"),
            amf_obj(
                true,
                &[
                    ("audiocodecid", amf_num(10.0)),
                    ("audiosamplerate", amf_num(44100.0)),
                    ("framerate", amf_num(29.97)),
                    ("encoder", amf_str("Lavf60.3.100")),
                ],
            ),
        ]
        .concat();
        h.send(a.as_mut(), Dir::Orig, &rtmp_message(4, 18, 1, 0, &meta));
        // AAC LC, 44.1 kHz, stereo: its AudioSpecificConfig, then frames every 23 ms.
        h.send(a.as_mut(), Dir::Orig, &rtmp_message(4, 8, 1, 0, &[0xaf, 0x00, 0x12, 0x10]));
        for i in 1..5u32 {
            h.send(a.as_mut(), Dir::Orig, &rtmp_message(4, 8, 1, i * 23, &[0xaf, 0x01, 0x21, 0x10, 0x04, 0x60]));
        }
        let unpublish = [amf_str("deleteStream"), amf_num(6.0), vec![0x05], amf_num(1.0)].concat();
        h.send(a.as_mut(), Dir::Orig, &rtmp_message(3, 20, 0, 200, &unpublish));
        h.close(a.as_mut(), Close::Fin);
        app_events(&h)
    }

    /// An RTSP PLAY of PCMU audio interleaved in the connection: DESCRIBE (SDP), SETUP, PLAY, RTP
    /// packets on channel 0 with one lost, TEARDOWN.
    fn rtsp_events() -> Vec<AppEvent> {
        let mut a = crate::analyze::rtsp::analyzer();
        let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:554");
        let url = "rtsp://joe:pw@192.0.2.2/cam";
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=Camera\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
                   m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=control:track1\r\n";
        let request = |method: &str, url: &str, cseq: u32, more: &str| {
            format!("{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\nUser-Agent: Lavf60.3.100\r\n{more}\r\n")
        };
        h.client(a.as_mut(), request("DESCRIBE", url, 1, "Accept: application/sdp\r\n").as_bytes());
        let answer = format!(
            "RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        h.server(a.as_mut(), answer.as_bytes());
        let transport = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n";
        h.client(a.as_mut(), request("SETUP", &format!("{url}/track1"), 2, transport).as_bytes());
        let setup = format!("RTSP/1.0 200 OK\r\nCSeq: 2\r\nSession: 12345678;timeout=60\r\n{transport}\r\n");
        h.server(a.as_mut(), setup.as_bytes());
        h.client(a.as_mut(), request("PLAY", url, 3, "Session: 12345678\r\n").as_bytes());
        h.server(a.as_mut(), b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: 12345678\r\n\r\n");
        for seq in (0..12u16).filter(|s| *s != 5) {
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            p.extend(std::iter::repeat_n(0xff, 160));
            let mut frame = vec![b'$', 0];
            frame.extend_from_slice(&(p.len() as u16).to_be_bytes());
            frame.extend_from_slice(&p);
            h.now = h.now.add_nanos(20_000_000);
            h.server(a.as_mut(), &frame);
        }
        h.client(a.as_mut(), request("TEARDOWN", url, 4, "Session: 12345678\r\n").as_bytes());
        h.server(a.as_mut(), b"RTSP/1.0 200 OK\r\nCSeq: 4\r\n\r\n");
        h.close(a.as_mut(), Close::Fin);
        app_events(&h)
    }

    /// A SIP INVITE with an SDP offer and its 200 OK with the answer, as datagrams.
    fn sip_events() -> Vec<AppEvent> {
        let mut a = crate::analyze::udp::analyzer();
        let mut h = Harness::new("192.0.2.1:5060", "192.0.2.2:5060");
        h.flow.proto = "udp".into();
        let message = |start: &str, port: u16| {
            let sdp = format!(
                "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                 m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
            );
            format!(
                "{start}\r\nVia: SIP/2.0/UDP 192.0.2.1:5060\r\nf: <sip:joe@192.0.2.1>;tag=1\r\n\
                 t: <sip:ann@192.0.2.2>\r\ni: call-1@192.0.2.1\r\nCSeq: 1 INVITE\r\nUser-Agent: SIPp\r\n\
                 Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            )
        };
        h.send(a.as_mut(), Dir::Orig, message("INVITE sip:ann@192.0.2.2 SIP/2.0", 6000).as_bytes());
        h.send(a.as_mut(), Dir::Resp, message("SIP/2.0 200 OK", 6002).as_bytes());
        h.close(a.as_mut(), Close::IdleTimeout);
        app_events(&h)
    }

    /// One TS packet of `pid` carrying `payload` (padded with 0xff).
    fn ts_packet(pid: u16, start: bool, cc: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x47, (u8::from(start) << 6) | (pid >> 8) as u8, pid as u8, 0x10 | (cc & 0x0f)];
        p.extend_from_slice(payload);
        p.resize(188, 0xff);
        p
    }

    /// MPEG-TS over UDP: a PAT, a PMT (H.264 and AAC), packets of both streams with one
    /// continuity break.
    fn mpegts_events() -> Vec<AppEvent> {
        let mut a = crate::analyze::udp::analyzer();
        let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:1234");
        h.flow.proto = "udp".into();
        // Pointer field, table 0, length 13: stream id, version, sections; program 1 -> PMT 0x1000; CRC.
        let pat = [0, 0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xf0, 0x00, 0, 0, 0, 0];
        // Table 2, length 23: program 1, PCR PID 0x100, no descriptors, H.264 on 0x100, AAC on 0x101.
        let pmt = [
            0, 0x02, 0xb0, 23, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0, 0x1b, 0xe1, 0x00, 0xf0, 0, 0x0f, 0xe1, 0x01,
            0xf0, 0, 0, 0, 0, 0,
        ];
        let mut first = [ts_packet(0, true, 0, &pat), ts_packet(0x1000, true, 0, &pmt)].concat();
        for cc in 0..5 {
            first.extend(ts_packet(0x101, cc == 0, cc, &[0, 0, 1, 0xc0]));
        }
        h.send(a.as_mut(), Dir::Orig, &first);
        let second: Vec<u8> =
            [0u8, 1, 2, 4, 5, 6, 7].iter().flat_map(|cc| ts_packet(0x101, false, *cc + 5, &[])).collect();
        h.now = h.now.add_nanos(40_000_000);
        h.send(a.as_mut(), Dir::Orig, &second);
        h.close(a.as_mut(), Close::IdleTimeout);
        app_events(&h)
    }

    #[test]
    fn events_of_the_protocols_without_a_capture_come_back_as_they_were() {
        let rtmp = rtmp_events();
        assert_eq!(assert_round_trips(&rtmp), ["rtmp"].into());
        let end = rtmp.iter().find_map(|a| a.get::<RtmpEvent>().filter(|e| e.media.is_some())).expect("a stream end");
        let media = end.media.as_ref().unwrap();
        assert_eq!(media.audio.as_ref().map(|a| a.codec), Some("aac"));
        assert_eq!(media.metadata["framerate"], 29.97);
        assert_eq!(end.stream_name, Some("***"));

        let rtsp = rtsp_events();
        assert_eq!(assert_round_trips(&rtsp), ["rtp", "rtsp"].into());
        let rtp_end = rtsp.iter().find_map(|a| a.get::<RtpEvent>().filter(|e| e.what == "stream-end")).unwrap();
        assert!(rtp_end.stats.is_some() && rtp_end.media.is_some(), "{rtp_end:?}");

        let sip = sip_events();
        assert_eq!(assert_round_trips(&sip), ["sip"].into());
        assert_eq!(sip.len(), 2);

        let ts = mpegts_events();
        assert_eq!(assert_round_trips(&ts), ["mpegts"].into());
        let ts_end = ts.iter().find_map(|a| a.get::<TsEvent>().filter(|e| e.what == "stream-end")).unwrap();
        assert_eq!(ts_end.media.streams.iter().map(|s| s.codec).collect::<Vec<_>>(), ["h264", "aac"]);
        assert_eq!(ts_end.media.continuity_errors, 1);
    }

    #[test]
    fn what_the_json_never_held_comes_back_empty() {
        use crate::analyze::http::body::ObjRef;
        let obj = ObjRef { id: 3, name: None, sha256: "ab".into(), md5: "cd".into(), size: 1, complete: true };
        let h = HttpEvent { request_objects: vec![obj], ..Default::default() };
        let a = AppEvent::new("http", h);
        let b = app_event_from_json("http", a.to_json()).unwrap();
        assert_eq!(b.to_json(), a.to_json());
        assert_eq!(b.get::<HttpEvent>().unwrap().request_objects[0].md5, "");
    }

    #[test]
    fn artifacts_keep_whether_they_had_mail_headers_and_links() {
        use crate::vmi::intake::VmiFound;
        use crate::vmi::linux::MailHeaders;
        let found = |kind, mail, equals_object| VmiFound {
            kind,
            place: "/var/spool/postfix/maildrop/1A2B".into(),
            from_memory: false,
            size: 10,
            sha256: "ab".into(),
            object: Some(4),
            equals_object,
            format: None,
            video: None,
            mail,
        };
        let headers = MailHeaders { subject: Some("hi".into()), ..Default::default() };
        let event = VmiEvent {
            image_object: 1,
            image_sha256: "cd".into(),
            image_name: None,
            outcome: "inspected",
            container: Some("qcow2".into()),
            virtual_size: None,
            backing_chain: vec![],
            filesystems: vec![],
            snapshots: vec![],
            os: None,
            hostname: None,
            timezone: None,
            users: vec![],
            sudoers: vec![],
            ssh_keys: vec![],
            crontabs: vec![],
            enabled_units: vec![],
            rc_local: vec![],
            artifacts: vec![
                found("crontab", None, None),
                found("mail", Some(MailHeaders::default()), Some(Value::Null)),
                found("mail", Some(headers), Some(serde_json::json!({"object": 2}))),
            ],
            report_object: None,
            report_sha256: None,
            notes: vec![],
            seconds: 0.0,
        };
        assert_eq!(assert_round_trips(&[AppEvent::new("vmi", event)]), ["vmi"].into());
    }

    #[test]
    fn unknown_protocols_and_ill_fitting_fields_are_errors() {
        for p in ["", "FTP", "ssh", "session-begin", "ftp\0", "x".repeat(10_000).as_str()] {
            match app_event_from_json(p, serde_json::json!({})) {
                Err(EventError::UnknownProtocol(name)) => assert_eq!(name, p),
                other => panic!("{p:?}: {other:?}"),
            }
        }
        let ill = [
            Value::Null,
            serde_json::json!(1),
            serde_json::json!("ftp"),
            serde_json::json!([]),
            serde_json::json!([{"action": "login"}]),
            serde_json::json!({"action": 5, "what": 5, "kind": 5, "method": 5, "image_object": "x", "media": 5}),
            serde_json::json!({"action": "nope", "what": "nope", "direction": "up", "complete": "yes"}),
            serde_json::json!({"certificate_status": "visible", "complete": true, "anomalies": "many"}),
            serde_json::json!({"what": "x".repeat(crate::record::de::MAX_INTERNED_LEN + 1)}),
        ];
        for (protocol, _) in REGISTRY {
            for fields in &ill {
                match app_event_from_json(protocol, fields.clone()) {
                    Err(EventError::Fields { protocol: p, source }) => {
                        assert_eq!(p, *protocol);
                        assert!(!source.to_string().is_empty());
                    }
                    other => panic!("{protocol} {fields}: {other:?}"),
                }
            }
        }
        // An object fits a type whose fields are all optional (an HTTP event says what it saw).
        assert!(app_event_from_json("http", serde_json::json!({"request_body_len": 0, "response_body_len": 0})).is_ok());
    }

    #[test]
    fn every_name_is_registered_once() {
        let names: BTreeSet<&str> = REGISTRY.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), REGISTRY.len());
        for n in names {
            let e = app_event_from_json(n, Value::Null).unwrap_err();
            assert!(matches!(e, EventError::Fields { protocol, .. } if protocol == n), "{e}");
        }
    }
}
