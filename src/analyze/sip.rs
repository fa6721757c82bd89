//! SIP (RFC 3261) over UDP and TCP: who calls whom, and where the call's media goes. Over UDP
//! each datagram is one message; over TCP (SIP trunks, and messages too large for UDP, RFC 3261
//! 18.1.1) each direction's stream is cut into messages by their `Content-Length` (18.3), CRLF
//! keep-alives (RFC 5626 4.4.1) skipped, and after a gap or an over-long message reading resumes
//! at the next start line. A message's IRI says method or status, Call-ID, From, To, CSeq and
//! User-Agent (never an Authorization or Proxy-Authorization header). An SDP body (the offer in
//! an INVITE, the answer in a 18x/200, or in an ACK) announces RTP: each `m=` line's address and port becomes
//! an expected UDP connection (as RTSP's SETUP makes them) analysed by [`super::rtp::Rtp`] told that
//! media's payload formats, so the call's audio becomes a WAV (G.711) or Matroska (Opus) file.

use serde::{Deserialize, Serialize};

use super::detect::Verdict;
use super::{Cx, StreamAnalyzer};
use crate::media::sdp;
use crate::record::{de, Close, Dir};

/// How long an announced media port waits for its first packet.
const EXPECT_NS: i64 = 300_000_000_000;
/// Messages reported per flow (a flood of REGISTERs is counted past it).
const MAX_EVENTS: u64 = 10_000;
/// Longest message read over TCP, headers and body; a longer one is skipped, and counted.
const MAX_MESSAGE: usize = 64 << 10;
/// Longest start line looked for (a request URI is rarely over a few hundred bytes).
const MAX_START_LINE: usize = 1024;

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

/// Whether a TCP connection's first bytes in `first` are SIP: its first line, once whole.
pub fn probe(_dir: Dir, first: &[u8]) -> Verdict {
    match first.iter().position(|&b| b == b'\n') {
        Some(_) if looks_sip(first) => Verdict::Match,
        Some(_) => Verdict::NoMatch,
        None if first.len() < MAX_START_LINE => Verdict::NeedMore,
        None => Verdict::NoMatch,
    }
}

/// The analyzer of a TCP connection the probe claimed.
pub fn analyzer() -> Box<dyn StreamAnalyzer> {
    Box::new(Sip { tcp: Some(Default::default()), ..Default::default() })
}

/// One direction of a TCP connection, cut into whole messages.
#[derive(Default)]
struct Framer {
    buf: Vec<u8>,
    /// After a gap, or headers too long or unreadable: what comes before the next start line is
    /// dropped.
    resync: bool,
    /// Bytes still to drop of a message longer than [`MAX_MESSAGE`] (its length was readable:
    /// the next message begins right after it).
    skip: usize,
    /// How far the front message's head was looked through for its end.
    scanned: usize,
    /// The front message's whole length, once its head is read.
    want: Option<usize>,
}

impl Framer {
    /// The next whole message; `skipped` counts messages given up as over-long or unreadable.
    fn next(&mut self, skipped: &mut u64) -> Option<Vec<u8>> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.buf.len());
                self.drop_front(n);
                self.skip -= n;
                if self.skip > 0 {
                    return None;
                }
            }
            if self.resync || self.buf.first().is_some_and(|b| matches!(b, b'\r' | b'\n')) {
                match start_line(&self.buf) {
                    Some(at) => {
                        self.drop_front(at);
                        self.resync = false;
                    }
                    None => {
                        // Keep the last line, which may be a start line not yet whole.
                        let keep = self.buf.iter().rposition(|&b| b == b'\n').map_or(0, |n| n + 1);
                        self.drop_front(keep);
                        if self.buf.len() > MAX_START_LINE {
                            self.drop_front(self.buf.len());
                        }
                        self.resync = true;
                        return None;
                    }
                }
            }
            let n = match self.want {
                Some(n) => n,
                None => {
                    // Looked for from where the last look stopped: a head that comes a byte at
                    // a time is read once, not once per byte.
                    let from = self.scanned.saturating_sub(3);
                    let Some(at) = self.buf[from..].windows(4).position(|w| w == b"\r\n\r\n") else {
                        self.scanned = self.buf.len();
                        if self.buf.len() > MAX_MESSAGE {
                            self.give_up(skipped);
                            continue;
                        }
                        return None;
                    };
                    let end = from + at;
                    match content_length(&self.buf[..end]).and_then(|len| (end + 4).checked_add(len)) {
                        Some(n) if n <= MAX_MESSAGE => {
                            self.want = Some(n);
                            n
                        }
                        Some(n) => {
                            *skipped += 1;
                            self.skip = n;
                            continue;
                        }
                        None => {
                            self.give_up(skipped);
                            continue;
                        }
                    }
                }
            };
            if self.buf.len() < n {
                return None;
            }
            let message = self.buf[..n].to_vec();
            self.drop_front(n);
            return Some(message);
        }
    }

    /// Drops the first `n` bytes; what was learnt of the message there is forgotten.
    fn drop_front(&mut self, n: usize) {
        self.buf.drain(..n);
        self.scanned = 0;
        self.want = None;
    }

    /// Drops the message begun at the front (headers over-long, or its length unreadable) and
    /// reads on from the next start line.
    fn give_up(&mut self, skipped: &mut u64) {
        *skipped += 1;
        self.drop_front(1);
        self.resync = true;
    }
}

/// Where the first line that starts like a SIP message begins (a whole line: its `\n` is there).
fn start_line(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < buf.len() {
        let end = at + buf[at..].iter().position(|&b| b == b'\n')?;
        if looks_sip(&buf[at..=end]) {
            return Some(at);
        }
        at = end + 1;
    }
    None
}

/// A message head's `Content-Length` (or compact `l`); none given is 0 (RFC 3261 20.14: a
/// stream must give it, but a message without a body is read as one).
fn content_length(head: &[u8]) -> Option<usize> {
    let head = String::from_utf8_lossy(head);
    let value = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find_map(|(k, v)| expand(k.trim()).eq_ignore_ascii_case("Content-Length").then(|| v.trim().to_string()));
    match value {
        Some(v) => v.parse().ok(),
        None => Some(0),
    }
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
    /// At the flow's end over TCP: messages given up as longer than 64 KiB or with an unreadable
    /// `Content-Length` (reading went on at the next start line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<u64>,
}

#[derive(Default)]
pub struct Sip {
    events: u64,
    dropped: u64,
    /// Over TCP, each direction's framing; `None` over UDP, where a datagram is a message.
    tcp: Option<[Framer; 2]>,
    /// Messages over TCP given up as over-long or unreadable.
    skipped: u64,
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
    fn data(&mut self, dir: Dir, _offset: u64, bytes: &[u8], cx: &mut Cx) {
        let Some(framers) = &mut self.tcp else {
            if looks_sip(bytes) {
                self.message(bytes, cx);
            }
            return;
        };
        let framer = &mut framers[dir.index()];
        framer.buf.extend_from_slice(bytes);
        let mut messages = Vec::new();
        while let Some(m) = framer.next(&mut self.skipped) {
            messages.push(m);
        }
        for m in messages {
            self.message(&m, cx);
        }
    }

    fn gap(&mut self, dir: Dir, _offset: u64, _len: u64, _cx: &mut Cx) {
        if let Some(framers) = &mut self.tcp {
            let framer = &mut framers[dir.index()];
            framer.buf.clear();
            framer.resync = true;
        }
    }

    fn close(&mut self, _how: Close, cx: &mut Cx) {
        if self.dropped > 0 || self.skipped > 0 {
            let e = SipEvent {
                kind: "summary",
                not_reported: Some(self.dropped),
                skipped: (self.skipped > 0).then_some(self.skipped),
                ..Default::default()
            };
            cx.emit_app(cx.cin, "sip", e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two messages (the second with an SDP body) in pieces of every size, with keep-alives
    /// between them, come out whole and in order.
    #[test]
    fn tcp_messages_are_cut_by_their_content_length() {
        let body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n";
        let invite = format!(
            "INVITE sip:b@192.0.2.2 SIP/2.0\r\nCall-ID: 1\r\nContent-Type: application/sdp\r\nl: {}\r\n\r\n{body}",
            body.len()
        );
        let ok = "SIP/2.0 100 Trying\r\nCall-ID: 1\r\nContent-Length: 0\r\n\r\n";
        let stream = format!("{invite}\r\n\r\n{ok}");
        for piece in 1..stream.len() {
            let (mut f, mut got, mut skipped) = (Framer::default(), Vec::new(), 0);
            for chunk in stream.as_bytes().chunks(piece) {
                f.buf.extend_from_slice(chunk);
                while let Some(m) = f.next(&mut skipped) {
                    got.push(String::from_utf8(m).unwrap());
                }
            }
            assert_eq!(got, vec![invite.clone(), ok.to_string()], "pieces of {piece}");
            assert_eq!(skipped, 0);
            assert!(f.buf.is_empty());
        }
    }

    /// A message whose length is over the bound, or unreadable, is skipped and counted; so are
    /// bytes after a gap, up to the next start line. Memory stays within the bound meanwhile.
    #[test]
    fn tcp_framing_resyncs_after_a_gap_or_an_over_long_message() {
        let ok = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        let mut f = Framer::default();
        let mut skipped = 0;
        // A body of 200,000 bytes, in segments: dropped as it comes, never held.
        f.buf.extend_from_slice(b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 200000\r\n\r\n");
        for _ in 0..200 {
            f.buf.extend_from_slice(&[b'x'; 1000]);
            assert!(f.next(&mut skipped).is_none());
            assert!(f.buf.len() <= 1000);
        }
        f.buf.extend_from_slice(ok);
        assert_eq!(f.next(&mut skipped).as_deref(), Some(&ok[..]));
        assert_eq!(skipped, 1);
        // A length that does not read: resynced at the next start line.
        f.buf.extend_from_slice(b"INFO sip:x SIP/2.0\r\nContent-Length: many\r\n\r\nbody\r\n");
        f.buf.extend_from_slice(ok);
        assert_eq!(f.next(&mut skipped).as_deref(), Some(&ok[..]));
        assert_eq!(skipped, 2);
        // Headers that never end.
        f.buf.extend_from_slice(b"BYE sip:x SIP/2.0\r\n");
        for _ in 0..10_000 {
            f.buf.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaa\r\n");
            while f.next(&mut skipped).is_some() {}
            assert!(f.buf.len() <= MAX_MESSAGE + 64, "{}", f.buf.len());
        }
        assert_eq!(skipped, 3);
        // A gap: the rest of a body, then a whole message.
        f.buf.clear();
        f.resync = true;
        f.buf.extend_from_slice(b"a=rtpmap:0 PCMU/8000\r\n");
        f.buf.extend_from_slice(ok);
        assert_eq!(f.next(&mut skipped).as_deref(), Some(&ok[..]));
        assert!(probe(Dir::Orig, b"OPTIONS sip:x SIP/2.0\r\n") == Verdict::Match);
        assert!(probe(Dir::Orig, b"OPTIONS sip:x SIP") == Verdict::NeedMore);
        assert!(probe(Dir::Orig, b"GET / HTTP/1.1\r\n") == Verdict::NoMatch);
    }

    /// A head that comes a byte at a time is looked through once (the look resumes where the
    /// last one stopped), not once per byte.
    #[test]
    fn a_head_a_byte_at_a_time_is_read_once() {
        let mut f = Framer::default();
        let mut skipped = 0;
        let head = format!("OPTIONS sip:x SIP/2.0\r\n{}", "X-Pad: y\r\n".repeat(6000));
        for b in head.bytes() {
            f.buf.push(b);
            assert!(f.next(&mut skipped).is_none());
        }
        assert!(f.scanned >= head.len() - 3);
        f.buf.extend_from_slice(b"\r\n");
        assert_eq!(f.next(&mut skipped).map(|m| m.len()), Some(head.len() + 2));
        assert_eq!(skipped, 0);
    }

    #[test]
    fn request_and_status_lines() {
        assert!(looks_sip(b"INVITE sip:x@192.0.2.1 SIP/2.0\r\nVia: x\r\n"));
        assert!(looks_sip(b"SIP/2.0 200 OK\r\n"));
        assert!(!looks_sip(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_sip(b"INVITE sip:x HTTP/2.0\r\n"));
        assert!(!looks_sip(&[0x80, 0, 1, 2]));
    }
}
