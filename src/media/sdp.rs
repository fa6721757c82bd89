//! A small SDP (RFC 8866, formerly RFC 4566) reader: what an RTP depacketiser needs from a
//! session description, and nothing else.
//!
//! Read: `s=` (session name), `o=` (origin), `c=` (connection, session and media level), and per
//! `m=` line the media type, port (and port count), proto and formats, with the media's
//! `a=rtpmap` (encoding name, clock rate, channels), `a=fmtp` (split into key/value parameters),
//! `a=control` and `a=rtcp-mux`. Other lines are skipped.
//!
//! Written here rather than taken from a crate: the `sdp-types` crate is not among tapir's
//! dependencies, and what this reader must guarantee on hostile input (bounded line count and
//! length, a bounded number of media and formats, no panic, lenient on the attribute lines real
//! senders get wrong) is easier to state and test on a hundred lines than to audit in a general
//! parser. Descriptions come from captured SIP/RTSP bodies, so any byte sequence is possible.

use thiserror::Error;

/// Largest description accepted, in bytes.
pub const MAX_SDP_LEN: usize = 64 << 10;
/// Lines accepted; real descriptions have a few dozen.
pub const MAX_LINES: usize = 1024;
/// Longest line accepted (long `sprop-parameter-sets` and ICE candidates stay far below).
pub const MAX_LINE_LEN: usize = 8192;
/// `m=` sections accepted.
pub const MAX_MEDIA: usize = 64;
/// Formats (payload types) per `m=` line; RTP has 128 payload types.
pub const MAX_FORMATS: usize = 128;
/// `fmtp` parameters per format.
pub const MAX_FMTP_PARAMS: usize = 64;

/// Why a description was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// Longer than [`MAX_SDP_LEN`].
    #[error("SDP of {0} bytes exceeds the limit")]
    TooLong(usize),
    /// More than [`MAX_LINES`] lines.
    #[error("SDP has more than {MAX_LINES} lines")]
    TooManyLines,
    /// A line longer than [`MAX_LINE_LEN`] (1-based line number).
    #[error("SDP line {0} exceeds {MAX_LINE_LEN} bytes")]
    LineTooLong(usize),
    /// More than [`MAX_MEDIA`] media sections.
    #[error("SDP has more than {MAX_MEDIA} media sections")]
    TooManyMedia,
    /// Not UTF-8 (RFC 8866 5: the description is UTF-8 text).
    #[error("SDP is not UTF-8")]
    NotUtf8,
    /// An `m=` line without media, port, proto and at least one format, or with a bad port
    /// (1-based line number). Fatal because the attributes after it would be misattributed.
    #[error("SDP line {0}: malformed m= line")]
    BadMedia(usize),
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: String,
    pub session_version: String,
    pub net_type: String,
    pub addr_type: String,
    pub address: String,
}

/// `c=<nettype> <addrtype> <connection-address>`; the address keeps any `/ttl/count` suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub net_type: String,
    pub addr_type: String,
    pub address: String,
}

/// One payload type's `rtpmap` and `fmtp`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PayloadFormat {
    pub payload_type: u8,
    /// As written (`H264`, `opus`); compare case-insensitively (RFC 4855 3).
    pub encoding_name: Option<String>,
    pub clock_rate: Option<u32>,
    /// Audio channels, when the rtpmap gives them.
    pub channels: Option<u16>,
    /// The `fmtp` parameters, in order, keys as written.
    pub fmtp: Vec<(String, String)>,
}

impl PayloadFormat {
    /// An fmtp parameter's value; keys compared case-insensitively.
    pub fn fmtp_param(&self, key: &str) -> Option<&str> {
        self.fmtp.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, `application`...
    pub media: String,
    pub port: u16,
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVPF`...
    pub proto: String,
    /// The format list as written.
    pub formats: Vec<String>,
    /// Per RTP payload type in the format list (non-numeric formats have none), its rtpmap/fmtp.
    pub payload_formats: Vec<PayloadFormat>,
    pub connection: Option<Connection>,
    pub control: Option<String>,
    pub rtcp_mux: bool,
}

impl Media {
    pub fn payload_format(&self, payload_type: u8) -> Option<&PayloadFormat> {
        self.payload_formats.iter().find(|f| f.payload_type == payload_type)
    }

    /// Whether the proto carries RTP (`RTP/AVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVPF`, ...).
    pub fn is_rtp(&self) -> bool {
        self.proto.split('/').any(|p| p.eq_ignore_ascii_case("RTP"))
    }
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    pub origin: Option<Origin>,
    pub name: Option<String>,
    pub connection: Option<Connection>,
    /// Session-level `a=control`.
    pub control: Option<String>,
    pub media: Vec<Media>,
}

/// The SDP body of a message held whole in `bytes` that is shaped like SIP, HTTP/1.x and RTSP
/// messages are: a start line, header lines, an empty line, then a body of `Content-Type:
/// application/sdp`, cut at its `Content-Length` (SIP's compact `c` and `l` are read too).
/// `None` when there is no such body or it does not parse. For readers of one datagram or
/// segment: the SIP analyzer, and the sharded dispatch (`pipeline::announced`), which keeps
/// media sent to a third address with the flow that carried their SDP.
pub fn in_message(bytes: &[u8]) -> Option<Session> {
    let (start, len) = sdp_body_at(bytes)?;
    let body = bytes.get(start..).unwrap_or_default();
    parse_bytes(body.get(..len.unwrap_or(body.len()).min(body.len()))?).ok()
}

/// The whole length of a message that `bytes` begins, when its start line and headers are all
/// there and announce an SDP body of `Content-Length` bytes of which fewer are: what a reader of
/// one segment at a time gathers before [`in_message`] reads the message. `None` when the
/// message is whole, carries no SDP, or its headers are not all there.
pub fn short_message_len(bytes: &[u8]) -> Option<usize> {
    let (start, len) = sdp_body_at(bytes)?;
    let end = start.checked_add(len?)?;
    (end > bytes.len()).then_some(end)
}

/// Where the SDP body of the message `bytes` begins, and its `Content-Length` if given; `None`
/// when the headers are not all there or do not say `application/sdp`.
fn sdp_body_at(bytes: &[u8]) -> Option<(usize, Option<usize>)> {
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(bytes.get(..split)?);
    let header = |full: &str, compact: &str| {
        head.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| {
                let k = k.trim();
                k.eq_ignore_ascii_case(full) || k == compact
            })
            .map(|(_, v)| v.trim())
    };
    let is_sdp = |t: &str| t.to_ascii_lowercase().starts_with("application/sdp");
    if !header("Content-Type", "c").is_some_and(is_sdp) {
        return None;
    }
    Some((split + 4, header("Content-Length", "l").and_then(|v| v.parse::<usize>().ok())))
}

/// Parses a description given as bytes (as captured).
pub fn parse_bytes(sdp: &[u8]) -> Result<Session, Error> {
    if sdp.len() > MAX_SDP_LEN {
        return Err(Error::TooLong(sdp.len()));
    }
    parse(std::str::from_utf8(sdp).map_err(|_| Error::NotUtf8)?)
}

/// Parses a description. Lines end in CRLF or LF; lines that are not `<letter>=<value>`, and
/// attribute lines that cannot be read, are skipped.
pub fn parse(sdp: &str) -> Result<Session, Error> {
    if sdp.len() > MAX_SDP_LEN {
        return Err(Error::TooLong(sdp.len()));
    }
    let mut session = Session::default();
    for (i, line) in sdp.split('\n').enumerate() {
        let number = i + 1;
        if number > MAX_LINES {
            return Err(Error::TooManyLines);
        }
        if line.len() > MAX_LINE_LEN {
            return Err(Error::LineTooLong(number));
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((kind, value)) = line.split_once('=') else { continue };
        match (kind, session.media.last_mut()) {
            ("s", None) => session.name = Some(value.to_string()),
            ("o", None) => session.origin = parse_origin(value),
            ("c", None) => session.connection = parse_connection(value),
            ("c", Some(m)) => m.connection = parse_connection(value),
            ("m", _) => {
                if session.media.len() >= MAX_MEDIA {
                    return Err(Error::TooManyMedia);
                }
                session.media.push(parse_media(value).ok_or(Error::BadMedia(number))?);
            }
            ("a", None) => {
                if let Some(c) = value.strip_prefix("control:") {
                    session.control = Some(c.to_string());
                }
            }
            ("a", Some(m)) => media_attribute(m, value),
            _ => {}
        }
    }
    Ok(session)
}

fn parse_origin(value: &str) -> Option<Origin> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [username, session_id, session_version, net_type, addr_type, address] = f[..] else { return None };
    Some(Origin {
        username: username.to_string(),
        session_id: session_id.to_string(),
        session_version: session_version.to_string(),
        net_type: net_type.to_string(),
        addr_type: addr_type.to_string(),
        address: address.to_string(),
    })
}

fn parse_connection(value: &str) -> Option<Connection> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [net_type, addr_type, address] = f[..] else { return None };
    Some(Connection { net_type: net_type.to_string(), addr_type: addr_type.to_string(), address: address.to_string() })
}

/// `m=<media> <port>[/<number of ports>] <proto> <fmt> ...`
fn parse_media(value: &str) -> Option<Media> {
    let mut f = value.split_ascii_whitespace();
    let media = f.next()?.to_string();
    let port_field = f.next()?;
    let (port, port_count) = match port_field.split_once('/') {
        Some((p, n)) => (p.parse().ok()?, Some(n.parse().ok()?)),
        None => (port_field.parse().ok()?, None),
    };
    let proto = f.next()?.to_string();
    let formats: Vec<String> = f.take(MAX_FORMATS).map(str::to_string).collect();
    if formats.is_empty() {
        return None;
    }
    let mut m = Media {
        media,
        port,
        port_count,
        proto,
        formats,
        payload_formats: Vec::new(),
        connection: None,
        control: None,
        rtcp_mux: false,
    };
    if m.is_rtp() {
        let pts: Vec<u8> = m.formats.iter().filter_map(|f| f.parse::<u8>().ok()).filter(|pt| *pt < 128).collect();
        for pt in pts {
            if m.payload_format(pt).is_none() {
                m.payload_formats.push(PayloadFormat { payload_type: pt, ..PayloadFormat::default() });
            }
        }
    }
    Some(m)
}

fn media_attribute(m: &mut Media, value: &str) {
    let (name, rest) = value.split_once(':').unwrap_or((value, ""));
    match name {
        "rtcp-mux" => m.rtcp_mux = true,
        "control" => m.control = Some(rest.to_string()),
        "rtpmap" => {
            // a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]
            let Some((pt, map)) = rest.split_once(' ') else { return };
            let Some(format) = format_of(m, pt) else { return };
            let mut parts = map.trim().split('/');
            format.encoding_name = parts.next().map(str::to_string);
            format.clock_rate = parts.next().and_then(|r| r.trim().parse().ok());
            format.channels = parts.next().and_then(|c| c.trim().parse().ok());
        }
        "fmtp" => {
            // a=fmtp:<format> <parameters>, parameters `key=value` separated by `;`.
            let Some((pt, params)) = rest.split_once(' ') else { return };
            let Some(format) = format_of(m, pt) else { return };
            format.fmtp = params
                .split(';')
                .filter_map(|p| {
                    let p = p.trim();
                    if p.is_empty() {
                        return None;
                    }
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    Some((k.trim().to_string(), v.trim().to_string()))
                })
                .take(MAX_FMTP_PARAMS)
                .collect();
        }
        _ => {}
    }
}

/// The format entry of a payload type listed on the `m=` line (attributes for unlisted ones are
/// ignored, so the number of entries stays bounded by the format list).
fn format_of<'m>(m: &'m mut Media, pt: &str) -> Option<&'m mut PayloadFormat> {
    let pt: u8 = pt.trim().parse().ok()?;
    m.payload_formats.iter_mut().find(|f| f.payload_type == pt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdp_body_of_a_message() {
        let sdp = "v=0\r\nc=IN IP4 198.51.100.11\r\nm=audio 6000 RTP/AVP 0\r\n";
        let sip = format!("SIP/2.0 200 OK\r\nc: application/sdp\r\nl: {}\r\n\r\n{sdp}trailing junk", sdp.len());
        let s = in_message(sip.as_bytes()).unwrap();
        assert_eq!((s.media.len(), s.media[0].port), (1, 6000));
        let http = format!("HTTP/1.0 201 Created\r\nContent-Type: Application/SDP\r\n\r\n{sdp}");
        assert_eq!(in_message(http.as_bytes()).unwrap().connection.unwrap().address, "198.51.100.11");
        assert!(in_message(format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n{sdp}").as_bytes()).is_none());
        assert!(in_message(b"SIP/2.0 200 OK\r\nContent-Type: application/sdp\r\n").is_none());
        assert!(in_message(b"\r\n\r\n").is_none());
        assert!(in_message(&[0xff; 64]).is_none());
    }

    #[test]
    fn a_voip_offer() {
        let s = parse(
            "v=0\r\no=alice 2890844526 2890844527 IN IP4 198.51.100.1\r\ns=call\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n\
             m=audio 49170 RTP/AVP 0 8 97 101\r\na=rtpmap:97 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-15\r\na=rtcp-mux\r\nm=video 51372/2 RTP/AVPF 99\r\nc=IN IP6 2001:db8::1\r\n\
             a=rtpmap:99 H264/90000\r\na=fmtp:99 profile-level-id=42e01f;packetization-mode=1\r\na=control:trackID=2\r\n",
        )
        .unwrap();
        assert_eq!(s.name.as_deref(), Some("call"));
        assert_eq!(s.origin.as_ref().unwrap().address, "198.51.100.1");
        assert_eq!(s.connection.as_ref().unwrap().address, "198.51.100.1");
        let audio = &s.media[0];
        assert_eq!(
            (audio.media.as_str(), audio.port, audio.proto.as_str(), audio.rtcp_mux),
            ("audio", 49170, "RTP/AVP", true)
        );
        assert_eq!(audio.payload_formats.len(), 4);
        let opus = audio.payload_format(97).unwrap();
        assert_eq!(
            (opus.encoding_name.as_deref(), opus.clock_rate, opus.channels),
            (Some("opus"), Some(48000), Some(2))
        );
        assert_eq!(audio.payload_format(101).unwrap().fmtp, vec![("0-15".to_string(), String::new())]);
        let video = &s.media[1];
        assert_eq!((video.port, video.port_count, video.control.as_deref()), (51372, Some(2), Some("trackID=2")));
        assert_eq!(video.connection.as_ref().unwrap().addr_type, "IP6");
        assert_eq!(video.payload_format(99).unwrap().fmtp_param("packetization-mode"), Some("1"));
    }

    #[test]
    fn limits_and_garbage() {
        assert_eq!(parse(&"a=x\n".repeat(MAX_LINES + 1)), Err(Error::TooManyLines));
        assert_eq!(parse(&format!("s={}", "x".repeat(MAX_LINE_LEN))), Err(Error::LineTooLong(1)));
        assert_eq!(parse("m=audio notaport RTP/AVP 0"), Err(Error::BadMedia(1)));
        assert_eq!(parse_bytes(&[0xff, 0xfe]), Err(Error::NotUtf8));
        assert_eq!(parse(&"m=audio 1 RTP/AVP 0\n".repeat(MAX_MEDIA + 1)), Err(Error::TooManyMedia));
        let s = parse("garbage\n=\na=rtpmap:\nm=audio 1 RTP/AVP 0 300 x\na=rtpmap:300 X/1\na=fmtp:0\n").unwrap();
        assert_eq!(s.media[0].payload_formats.len(), 1);
    }
}
