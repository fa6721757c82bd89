//! RTSP (RFC 2326, RFC 7826): the signalling of a media session. Its SDP (DESCRIBE's answer,
//! ANNOUNCE's body) says what each payload type carries; its SETUP exchanges say where the RTP
//! goes. From those:
//! - RTP over UDP on the negotiated ports becomes an expected connection (as an FTP data
//!   channel is) whose analyzer is [`Rtp`] told the session's payload formats: codec, clock
//!   rate, H.264 parameter sets from `sprop-parameter-sets`, AAC configuration;
//! - RTP interleaved in the RTSP connection (`$`, channel, length) is handed to one such
//!   [`Rtp`] directly.
//!
//! IRI: every request with its answer (method, URL with credentials masked, status, session,
//! transport), and the SDP's session name and media. The RTP itself reports per SSRC, as
//! [`Rtp`] does.

use serde::{Deserialize, Serialize};

use super::detect::Verdict;
use super::rtmp::mask_url;
use super::rtp::Rtp;
use super::{Cx, ExpectKey, Expectations, StreamAnalyzer};
use crate::media::sdp::{self, PayloadFormat};
use crate::record::{Close, Dir};

/// Start line and headers of one message, at most.
const MAX_HEAD: usize = 16 << 10;
/// A message body (SDP) at most.
const MAX_BODY: usize = 64 << 10;
/// How long an announced RTP port waits for its first packet.
const EXPECT_NS: i64 = 120_000_000_000;
/// Requests remembered while unanswered.
const MAX_PENDING: usize = 32;

const METHODS: [&[u8]; 11] = [
    b"OPTIONS",
    b"DESCRIBE",
    b"ANNOUNCE",
    b"SETUP",
    b"PLAY",
    b"RECORD",
    b"PAUSE",
    b"TEARDOWN",
    b"GET_PARAMETER",
    b"SET_PARAMETER",
    b"REDIRECT",
];

/// Claims a connection whose client starts with an RTSP request line (`METHOD url RTSP/1.0`)
/// or whose server answers with an RTSP status line.
pub fn probe(dir: Dir, first: &[u8]) -> Verdict {
    let line_end = first.iter().position(|&b| b == b'\n');
    let line = &first[..line_end.unwrap_or(first.len()).min(first.len())];
    match dir {
        Dir::Resp => {
            if first.starts_with(b"RTSP/") {
                Verdict::Match
            } else if b"RTSP/".starts_with(first) {
                Verdict::NeedMore
            } else {
                Verdict::NoMatch
            }
        }
        Dir::Orig => {
            let method = line.split(|&b| b == b' ').next().unwrap_or(&[]);
            let known = METHODS.contains(&method);
            let prefix = METHODS.iter().any(|m| m.starts_with(method)) && !line.contains(&b' ');
            if known && line_end.is_some() {
                let l = line.strip_suffix(b"\r").unwrap_or(line);
                if l.ends_with(b" RTSP/1.0") || l.ends_with(b" RTSP/2.0") {
                    Verdict::Match
                } else {
                    Verdict::NoMatch
                }
            } else if (known || prefix) && line_end.is_none() && first.len() < 2048 {
                Verdict::NeedMore
            } else {
                Verdict::NoMatch
            }
        }
    }
}

pub fn analyzer() -> Box<dyn StreamAnalyzer> {
    Box::<Rtsp>::default()
}

/// What RTSP adds to the IRI: one request and its answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RtspEvent {
    pub method: String,
    /// Credentials masked.
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// SETUP: the transport the server answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// DESCRIBE/ANNOUNCE: the SDP's session name and its media.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdp_session: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<SdpMedia>,
}

/// One `m=` line of the session's SDP.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SdpMedia {
    pub media: String,
    pub payload_type: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
}

/// One parsed message.
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

enum Parsed {
    Message(Message),
    Interleaved(u8, Vec<u8>),
}

/// One direction's bytes, cut into messages and interleaved frames.
#[derive(Default)]
struct Reader {
    buf: Vec<u8>,
    broken: bool,
}

impl Reader {
    fn next(&mut self) -> Option<Parsed> {
        if self.broken {
            return None;
        }
        if self.buf.first() == Some(&b'$') {
            let len = usize::from(u16::from_be_bytes([*self.buf.get(2)?, *self.buf.get(3)?]));
            if self.buf.len() < 4 + len {
                return None;
            }
            let channel = self.buf[1];
            let packet = self.buf[4..4 + len].to_vec();
            self.buf.drain(..4 + len);
            return Some(Parsed::Interleaved(channel, packet));
        }
        let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n");
        let Some(end) = end else {
            if self.buf.len() > MAX_HEAD {
                self.broken = true;
            }
            return None;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let start = lines.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        if len > MAX_BODY {
            self.broken = true;
            return None;
        }
        if self.buf.len() < end + 4 + len {
            return None;
        }
        let body = self.buf[end + 4..end + 4 + len].to_vec();
        self.buf.drain(..end + 4 + len);
        Some(Parsed::Message(Message { start, headers, body }))
    }
}

struct Pending {
    cseq: String,
    event: RtspEvent,
    /// The media (index in the SDP) a SETUP is for.
    media: Option<usize>,
}

#[derive(Default)]
pub struct Rtsp {
    readers: [Reader; 2],
    pending: Vec<Pending>,
    sdp: Option<sdp::Session>,
    /// The RTP interleaved in this connection, and which channels carry RTP (not RTCP).
    interleaved: Option<Rtp>,
    rtp_channels: Vec<u8>,
}

impl Rtsp {
    fn formats(&self) -> Vec<PayloadFormat> {
        self.sdp.as_ref().map(|s| s.media.iter().flat_map(|m| m.payload_formats.clone()).collect()).unwrap_or_default()
    }

    fn sdp_of(&mut self, m: &Message, e: &mut RtspEvent) {
        let is_sdp = m.header("Content-Type").is_some_and(|t| t.to_ascii_lowercase().starts_with("application/sdp"));
        if !is_sdp || m.body.is_empty() {
            return;
        }
        if let Ok(s) = sdp::parse_bytes(&m.body) {
            e.sdp_session = s.name.clone();
            e.media = s
                .media
                .iter()
                .flat_map(|md| {
                    md.payload_formats.iter().map(|f| SdpMedia {
                        media: md.media.clone(),
                        payload_type: f.payload_type,
                        encoding: f.encoding_name.clone(),
                        clock_rate: f.clock_rate,
                        control: md.control.clone(),
                    })
                })
                .collect();
            self.sdp = Some(s);
        }
    }

    /// The SDP media a SETUP URL names (by its `a=control`), or the only one.
    fn media_for(&self, url: &str) -> Option<usize> {
        let s = self.sdp.as_ref()?;
        s.media
            .iter()
            .position(|m| m.control.as_deref().is_some_and(|c| !c.is_empty() && (url.ends_with(c) || c == url)))
            .or_else(|| (s.media.len() == 1).then_some(0))
    }

    fn request(&mut self, m: Message, cx: &mut Cx) {
        let mut parts = m.start.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let url = parts.next().unwrap_or_default().to_string();
        let mut event = RtspEvent {
            method: method.clone(),
            url: mask_url(&url),
            user_agent: m.header("User-Agent").map(String::from),
            session: m.header("Session").map(|s| s.split(';').next().unwrap_or(s).to_string()),
            ..Default::default()
        };
        if method == "ANNOUNCE" {
            self.sdp_of(&m, &mut event);
        }
        let media = if method == "SETUP" { self.media_for(&url) } else { None };
        let cseq = m.header("CSeq").unwrap_or_default().to_string();
        if self.pending.len() >= MAX_PENDING {
            let old = self.pending.remove(0);
            cx.emit_app(cx.cin, "rtsp", old.event);
        }
        self.pending.push(Pending { cseq, event, media });
    }

    fn response(&mut self, m: Message, cx: &mut Cx) {
        // Answers come in order; one without CSeq (FFmpeg's listener answers TEARDOWN on an
        // interleaved session with a bare 501) answers the oldest request.
        let i = match m.header("CSeq") {
            Some(cseq) => self.pending.iter().position(|p| p.cseq == cseq),
            None => (!self.pending.is_empty()).then_some(0),
        };
        let Some(i) = i else { return };
        let Pending { mut event, media, .. } = self.pending.remove(i);
        event.status = m.start.split(' ').nth(1).and_then(|s| s.parse().ok());
        if event.session.is_none() {
            event.session = m.header("Session").map(|s| s.split(';').next().unwrap_or(s).to_string());
        }
        if event.method == "DESCRIBE" {
            self.sdp_of(&m, &mut event);
        }
        let ok = event.status.is_some_and(|s| (200..300).contains(&s));
        if event.method == "SETUP" && ok {
            if let Some(t) = m.header("Transport") {
                event.transport = Some(t.to_string());
                self.transport(t, media, cx);
            }
        }
        cx.emit_app(cx.cin, "rtsp", event);
    }

    /// Where the RTP of a SETUP goes: expected UDP connections on both ends' RTP ports (the
    /// sender is whichever side sends first), or interleaved channels.
    fn transport(&mut self, t: &str, media: Option<usize>, cx: &mut Cx) {
        let params: Vec<(&str, &str)> =
            t.split(';').map(|p| p.split_once('=').unwrap_or((p, ""))).map(|(k, v)| (k.trim(), v.trim())).collect();
        let get = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| *v);
        let first_port = |v: &str| v.split('-').next().and_then(|p| p.parse::<u16>().ok());
        if let Some(ch) = get("interleaved").and_then(|v| v.split('-').next()).and_then(|c| c.parse::<u8>().ok()) {
            if self.rtp_channels.len() < 64 {
                self.rtp_channels.push(ch);
            }
            if self.interleaved.is_none() {
                self.interleaved = Some(Rtp::with_formats(self.formats()));
            }
            return;
        }
        let ends = [(cx.flow.orig.ip(), get("client_port")), (cx.flow.resp.ip(), get("server_port"))];
        for (addr, ports) in ends {
            let Some(port) = ports.and_then(first_port) else { continue };
            let key = ExpectKey { liid: cx.liid.clone(), zone: Expectations::zone_of(cx.flow), addr, port };
            // The formats of the media this SETUP is for (all of them if it cannot be told).
            let formats = match (media, self.sdp.as_ref()) {
                (Some(i), Some(s)) => s.media.get(i).map(|m| m.payload_formats.clone()).unwrap_or_default(),
                _ => self.formats(),
            };
            let expires = cx.now.add_nanos(EXPECT_NS);
            cx.expect.expect(key, expires, Box::new(move |_| Box::new(Rtp::with_formats(formats))));
        }
    }
}

impl StreamAnalyzer for Rtsp {
    fn data(&mut self, dir: Dir, _offset: u64, bytes: &[u8], cx: &mut Cx) {
        let r = &mut self.readers[dir.index()];
        if r.broken {
            return;
        }
        r.buf.extend_from_slice(bytes);
        while let Some(p) = self.readers[dir.index()].next() {
            match p {
                Parsed::Interleaved(ch, packet) => {
                    if self.rtp_channels.contains(&ch) {
                        if let Some(rtp) = self.interleaved.as_mut() {
                            rtp.data(dir, 0, &packet, cx);
                        }
                    }
                }
                Parsed::Message(m) if m.start.starts_with("RTSP/") => self.response(m, cx),
                Parsed::Message(m) => self.request(m, cx),
            }
        }
    }

    fn gap(&mut self, dir: Dir, _offset: u64, _len: u64, _cx: &mut Cx) {
        // Messages and interleaved frames cannot be found again after a hole.
        self.readers[dir.index()].broken = true;
        self.readers[dir.index()].buf = Vec::new();
    }

    fn close(&mut self, how: Close, cx: &mut Cx) {
        for p in std::mem::take(&mut self.pending) {
            cx.emit_app(cx.cin, "rtsp", p.event);
        }
        if let Some(mut rtp) = self.interleaved.take() {
            rtp.close(how, cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_status_lines_claim_a_connection() {
        assert_eq!(probe(Dir::Orig, b"OPTIONS rtsp://h/x RTSP/1.0\r\n"), Verdict::Match);
        assert_eq!(probe(Dir::Orig, b"DESCR"), Verdict::NeedMore);
        assert_eq!(probe(Dir::Orig, b"OPTIONS / HTTP/1.1\r\n"), Verdict::NoMatch);
        assert_eq!(probe(Dir::Orig, b"GET / HTTP/1.1\r\n"), Verdict::NoMatch);
        assert_eq!(probe(Dir::Resp, b"RTSP/1.0 200 OK\r\n"), Verdict::Match);
        assert_eq!(probe(Dir::Resp, b"HTTP/1.1 200 OK\r\n"), Verdict::NoMatch);
    }
}
