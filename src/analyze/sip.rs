//! SIP (RFC 3261) over UDP: who calls whom, and where the call's media goes. Each datagram is
//! one message; its IRI says method or status, Call-ID, From, To, CSeq and User-Agent (never an
//! Authorization or Proxy-Authorization header). An SDP body (the offer in an INVITE, the
//! answer in a 18x/200, or in an ACK) announces RTP: each `m=` line's address and port becomes
//! an expected UDP connection (as RTSP's SETUP makes them) analysed by [`super::rtp::Rtp`] told that
//! media's payload formats, so the call's audio becomes a WAV (G.711) or Matroska (Opus) file.

use serde::{Deserialize, Serialize};

use super::{Cx, StreamAnalyzer};
use crate::media::sdp;
use crate::record::{de, Close, Dir};

/// How long an announced media port waits for its first packet.
const EXPECT_NS: i64 = 300_000_000_000;
/// Messages reported per flow (a flood of REGISTERs is counted past it).
const MAX_EVENTS: u64 = 10_000;

const METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "REFER",
    "MESSAGE",
    "UPDATE",
];

/// Whether a datagram starts like a SIP message: a request line ending in `SIP/2.0` with a
/// known method, or a `SIP/2.0` status line.
pub fn looks_sip(datagram: &[u8]) -> bool {
    let end = datagram.iter().position(|&b| b == b'\n').unwrap_or(datagram.len()).min(1024);
    let Ok(line) = std::str::from_utf8(&datagram[..end]) else { return false };
    let line = line.trim_end_matches('\r');
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        return rest.len() >= 3 && rest.as_bytes()[..3].iter().all(u8::is_ascii_digit);
    }
    let mut parts = line.split(' ');
    matches!((parts.next(), parts.next(), parts.next(), parts.next()), (Some(m), Some(_), Some("SIP/2.0"), None) if METHODS.contains(&m))
}

/// One SIP message, for IRI.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SipEvent {
    /// `request` or `response`.
    #[serde(deserialize_with = "de::static_str")]
    pub kind: de::StaticStr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cseq: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The SDP's media: `audio 198.51.100.7:6000 PCMU/8000`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<String>,
    /// At the flow's end (`kind` `summary`): messages past the report bound, counted only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_reported: Option<u64>,
}

#[derive(Default)]
pub struct Sip {
    events: u64,
    dropped: u64,
}

impl Sip {
    fn message(&mut self, datagram: &[u8], cx: &mut Cx) {
        let Some(split) = datagram.windows(4).position(|w| w == b"\r\n\r\n") else { return };
        let head = String::from_utf8_lossy(&datagram[..split]);
        let mut lines = head.split("\r\n");
        let start = lines.next().unwrap_or_default();
        let headers: Vec<(String, String)> =
            lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (expand(k.trim()), v.trim().to_string())).collect();
        let header = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
        let mut e = SipEvent {
            call_id: header("Call-ID"),
            from: header("From"),
            to: header("To"),
            cseq: header("CSeq"),
            user_agent: header("User-Agent").or_else(|| header("Server")),
            ..Default::default()
        };
        if let Some(rest) = start.strip_prefix("SIP/2.0 ") {
            e.kind = "response";
            e.status = rest.get(..3).and_then(|s| s.parse().ok());
        } else {
            let mut p = start.split(' ');
            e.kind = "request";
            e.method = p.next().map(String::from);
            e.request_uri = p.next().map(String::from);
        }
        if let Some(s) = sdp::in_message(datagram) {
            e.media = super::rtp::expect_sdp_media(&s, EXPECT_NS, cx);
        }
        if self.events >= MAX_EVENTS {
            self.dropped += 1;
            return;
        }
        self.events += 1;
        cx.emit_app(cx.cin, "sip", e);
    }
}

/// SIP's compact header names (RFC 3261 7.3.3), in full.
fn expand(name: &str) -> String {
    match name {
        "i" => "Call-ID",
        "f" => "From",
        "t" => "To",
        "c" => "Content-Type",
        "l" => "Content-Length",
        "m" => "Contact",
        "v" => "Via",
        _ => name,
    }
    .to_string()
}

impl StreamAnalyzer for Sip {
    fn data(&mut self, _dir: Dir, _offset: u64, bytes: &[u8], cx: &mut Cx) {
        if looks_sip(bytes) {
            self.message(bytes, cx);
        }
    }

    fn gap(&mut self, _dir: Dir, _offset: u64, _len: u64, _cx: &mut Cx) {}

    fn close(&mut self, _how: Close, cx: &mut Cx) {
        if self.dropped > 0 {
            let e = SipEvent { kind: "summary", not_reported: Some(self.dropped), ..Default::default() };
            cx.emit_app(cx.cin, "sip", e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_status_lines() {
        assert!(looks_sip(b"INVITE sip:x@192.0.2.1 SIP/2.0\r\nVia: x\r\n"));
        assert!(looks_sip(b"SIP/2.0 200 OK\r\n"));
        assert!(!looks_sip(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_sip(b"INVITE sip:x HTTP/2.0\r\n"));
        assert!(!looks_sip(&[0x80, 0, 1, 2]));
    }
}
