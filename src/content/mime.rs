//! A streaming MIME decoder (push parser), modelled on Suricata's `rust/src/mime/smtp.rs`.
//!
//! Feed a message's bytes in chunks of any size with [`MimeParser::feed`]; the parser calls a
//! [`MimeHandler`] when a leaf part's header block has been read (content type, file name,
//! transfer encoding), with the part's decoded bytes (base64 and quoted-printable undone), and at
//! the part's end. It keeps no part bytes: memory is one bounded line buffer, the few header
//! values it needs, and one boundary per nesting level, whatever the size of the message.
//!
//! The part body follows RFC 2046 and Python's `email` package (used as the oracle in tests): a
//! boundary line is exactly `--boundary`, optionally `--`, optionally trailing blanks; the line
//! break before a boundary line belongs to the boundary; base64 ignores characters outside its
//! alphabet and stops after padding; quoted-printable decodes as `binascii.a2b_qp` does.
//!
//! Bounds: header block [`MAX_HEADER_BLOCK`], one kept header line [`MAX_HEADER_LINE`], nesting
//! [`MAX_DEPTH`]. Body lines longer than [`MAX_PROBE_LINE`] are streamed without buffering (such a
//! line cannot be a boundary). Exceeding a bound is counted in [`MimeAnomalies`].
//!
//! No panic on any input: every index is after a length check.

use serde::Serialize;

/// Largest header block (all header lines of one part) read as headers; the rest is body.
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// Bytes kept of one header line (a longer line is truncated).
pub const MAX_HEADER_LINE: usize = 16 * 1024;
/// Bytes kept of one interesting header's unfolded value.
pub const MAX_HEADER_VALUE: usize = 8 * 1024;
/// Body lines longer than this are streamed as data, never compared with a boundary.
pub const MAX_PROBE_LINE: usize = 1024;
/// Longest boundary accepted (RFC 2046 allows 70).
pub const MAX_BOUNDARY: usize = 256;
/// Deepest nesting of multiparts / enclosed messages; deeper containers become opaque leaves.
pub const MAX_DEPTH: usize = 20;

/// Content-Transfer-Encoding, as far as decoding goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// 7bit, 8bit, binary, absent or unknown: bytes as they are.
    #[default]
    Identity,
    Base64,
    QuotedPrintable,
}

/// What a leaf part's header block says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartInfo {
    /// 0 = the message itself is the leaf; 1 = a part of the top multipart; ...
    pub depth: usize,
    /// 1-based ordinal of the leaf within the message.
    pub index: u32,
    /// Lower-case `type/subtype` (`text/plain` when absent).
    pub content_type: String,
    /// Content-Disposition's type, lower case (`attachment`, `inline`).
    pub disposition: Option<String>,
    /// Content-Disposition `filename`, else Content-Type `name` (RFC 2231 decoded).
    pub filename: Option<String>,
    pub encoding: Encoding,
}

impl PartInfo {
    /// An attachment, or an inline part with a file name: what becomes a file object.
    pub fn is_file(&self) -> bool {
        self.filename.is_some() || self.disposition.as_deref() == Some("attachment")
    }

    /// The mail's text as the recipient reads it (a `text/plain` or `text/html` part that is no
    /// attachment): an object too, decoded like an attachment.
    pub fn is_text_body(&self) -> bool {
        !self.is_file() && matches!(self.content_type.as_str(), "text/plain" | "text/html")
    }
}

/// The top-level headers an investigator asks for first (unfolded, trimmed, bounded).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MessageHeaders {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}

/// Bounds hit and malformations seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MimeAnomalies {
    pub header_block_too_long: u32,
    pub header_line_truncated: u32,
    pub depth_exceeded: u32,
    pub boundary_too_long: u32,
    pub missing_close_boundary: u32,
    pub invalid_base64: u32,
    pub gaps: u32,
}

impl MimeAnomalies {
    pub fn any(&self) -> bool {
        *self != MimeAnomalies::default()
    }
}

/// Receives what the parser finds.
pub trait MimeHandler {
    /// The top-level header block was read.
    fn message_headers(&mut self, _headers: &MessageHeaders) {}
    /// A leaf part starts; return true to receive its decoded bytes.
    fn part_begin(&mut self, part: &PartInfo) -> bool;
    /// Decoded bytes of the current leaf part, in order.
    fn part_data(&mut self, data: &[u8]);
    /// The current leaf part ended; `complete` is false when a gap cut it.
    fn part_end(&mut self, complete: bool);
}

// ---------------------------------------------------------------------------------------------
// Decoders (streaming: state carries over between chunks)

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Streaming base64 decoder: ignores bytes outside the alphabet, stops after padding (as
/// Python's non-strict `binascii.a2b_base64`), decodes a trailing partial quantum of 2 or 3
/// symbols (as `email` does by adding the missing padding).
#[derive(Clone, Debug, Default)]
pub struct Base64Decoder {
    quad: [u8; 4],
    n: usize,
    pad_wanted: bool,
    done: bool,
    /// A trailing single symbol could not be decoded.
    pub invalid: bool,
}

impl Base64Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    fn flush_partial(&mut self, out: &mut impl FnMut(&[u8])) {
        let q = self.quad;
        match self.n {
            2 => out(&[(q[0] << 2) | (q[1] >> 4)]),
            3 => out(&[(q[0] << 2) | (q[1] >> 4), (q[1] << 4) | (q[2] >> 2)]),
            1 => self.invalid = true,
            _ => {}
        }
        self.n = 0;
    }

    /// Decodes `input`, handing decoded bytes to `out` in pieces of at most 3 KiB.
    pub fn decode(&mut self, input: &[u8], out: &mut impl FnMut(&[u8])) {
        let mut buf = [0u8; 3072];
        let mut len = 0usize;
        for &c in input {
            if self.done {
                break;
            }
            if c == b'=' {
                if self.n == 3 || (self.n == 2 && self.pad_wanted) {
                    if len > 0 {
                        out(&buf[..len]);
                        len = 0;
                    }
                    self.flush_partial(out);
                    self.done = true;
                } else if self.n == 2 {
                    self.pad_wanted = true;
                }
                continue;
            }
            let Some(v) = b64_value(c) else { continue };
            self.pad_wanted = false;
            if let Some(slot) = self.quad.get_mut(self.n) {
                *slot = v;
            }
            self.n += 1;
            if self.n == 4 {
                let q = self.quad;
                if len + 3 > buf.len() {
                    out(&buf[..len]);
                    len = 0;
                }
                if let Some(dst) = buf.get_mut(len..len + 3) {
                    dst.copy_from_slice(&[(q[0] << 2) | (q[1] >> 4), (q[1] << 4) | (q[2] >> 2), (q[2] << 6) | q[3]]);
                }
                len += 3;
                self.n = 0;
            }
        }
        if len > 0 {
            out(&buf[..len]);
        }
    }

    /// The input ended: decode what is left.
    pub fn finish(&mut self, out: &mut impl FnMut(&[u8])) {
        if !self.done {
            self.flush_partial(out);
        }
        self.done = true;
    }
}

/// Decodes a whole base64 value (AUTH exchanges and the like).
pub fn decode_base64(input: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut d = Base64Decoder::new();
    d.decode(input, &mut |b| v.extend_from_slice(b));
    d.finish(&mut |b| v.extend_from_slice(b));
    v
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
enum QpState {
    #[default]
    Normal,
    /// After `=`.
    Eq,
    /// After `=\r`: a soft line break whose `\n` is still to come (anything before it is skipped).
    EqCr,
    /// After `=` and one hex digit.
    EqHex(u8),
}

/// Streaming quoted-printable decoder with the behaviour of Python's `binascii.a2b_qp`: `=XX`
/// decoded (either case), `=` before a line break is a soft break, a malformed `=` is kept.
#[derive(Clone, Debug, Default)]
pub struct QpDecoder {
    state: QpState,
}

impl QpDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn decode(&mut self, input: &[u8], out: &mut impl FnMut(&[u8])) {
        let mut buf = [0u8; 4096];
        let mut len = 0usize;
        let push = |b: u8, buf: &mut [u8; 4096], len: &mut usize, out: &mut dyn FnMut(&[u8])| {
            if *len >= buf.len() {
                out(&buf[..]);
                *len = 0;
            }
            if let Some(slot) = buf.get_mut(*len) {
                *slot = b;
            }
            *len += 1;
        };
        let mut emit = |b: &[u8]| out(b);
        for &c in input {
            match self.state {
                QpState::Normal => {
                    if c == b'=' {
                        self.state = QpState::Eq;
                    } else {
                        push(c, &mut buf, &mut len, &mut emit);
                    }
                }
                QpState::Eq => match c {
                    b'\n' => self.state = QpState::Normal,
                    b'\r' => self.state = QpState::EqCr,
                    b'=' => {
                        push(b'=', &mut buf, &mut len, &mut emit);
                        self.state = QpState::Normal;
                    }
                    _ if hex_value(c).is_some() => self.state = QpState::EqHex(c),
                    _ => {
                        push(b'=', &mut buf, &mut len, &mut emit);
                        push(c, &mut buf, &mut len, &mut emit);
                        self.state = QpState::Normal;
                    }
                },
                QpState::EqCr => {
                    if c == b'\n' {
                        self.state = QpState::Normal;
                    }
                }
                QpState::EqHex(h1) => {
                    match (hex_value(h1), hex_value(c)) {
                        (Some(a), Some(b)) => {
                            push((a << 4) | b, &mut buf, &mut len, &mut emit);
                            self.state = QpState::Normal;
                        }
                        _ => {
                            push(b'=', &mut buf, &mut len, &mut emit);
                            push(h1, &mut buf, &mut len, &mut emit);
                            // `c` is read afresh, as a2b_qp does.
                            if c == b'=' {
                                self.state = QpState::Eq;
                            } else {
                                push(c, &mut buf, &mut len, &mut emit);
                                self.state = QpState::Normal;
                            }
                        }
                    }
                }
            }
        }
        if len > 0 {
            emit(&buf[..len]);
        }
    }

    pub fn finish(&mut self, out: &mut impl FnMut(&[u8])) {
        if let QpState::EqHex(h1) = self.state {
            out(&[b'=', h1]);
        }
        self.state = QpState::Normal;
    }
}

#[derive(Clone, Debug)]
enum Decoder {
    Identity,
    Base64(Base64Decoder),
    Qp(QpDecoder),
}

impl Decoder {
    fn new(e: Encoding) -> Decoder {
        match e {
            Encoding::Identity => Decoder::Identity,
            Encoding::Base64 => Decoder::Base64(Base64Decoder::new()),
            Encoding::QuotedPrintable => Decoder::Qp(QpDecoder::new()),
        }
    }

    fn decode(&mut self, input: &[u8], out: &mut impl FnMut(&[u8])) {
        match self {
            Decoder::Identity => {
                if !input.is_empty() {
                    out(input)
                }
            }
            Decoder::Base64(d) => d.decode(input, out),
            Decoder::Qp(d) => d.decode(input, out),
        }
    }

    fn finish(&mut self, out: &mut impl FnMut(&[u8])) -> bool {
        match self {
            Decoder::Identity => true,
            Decoder::Base64(d) => {
                d.finish(out);
                !d.invalid
            }
            Decoder::Qp(d) => {
                d.finish(out);
                true
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Header values

/// Splits a structured header value into its main token (lower case) and `name=value`
/// parameters (names lower case, values unquoted).
pub fn split_params(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for ch in value.chars() {
        if escaped {
            cur.push(ch);
            escaped = false;
            continue;
        }
        match ch {
            '\\' if quoted => {
                cur.push(ch);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                cur.push(ch);
            }
            ';' if !quoted => pieces.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
        if pieces.len() > 64 {
            break;
        }
    }
    pieces.push(cur);
    let mut it = pieces.into_iter();
    let main = it.next().unwrap_or_default().trim().to_ascii_lowercase();
    let params = it
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
                let inner = v.get(1..v.len() - 1).unwrap_or("");
                let mut s = String::with_capacity(inner.len());
                let mut esc = false;
                for c in inner.chars() {
                    if !esc && c == '\\' {
                        esc = true;
                        continue;
                    }
                    esc = false;
                    s.push(c);
                }
                s
            } else {
                v.to_string()
            };
            Some((k.trim().to_ascii_lowercase(), v))
        })
        .collect();
    (main, params)
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b.get(i).copied().unwrap_or(0);
        if c == b'%' {
            if let (Some(h), Some(l)) =
                (b.get(i + 1).copied().and_then(hex_value), b.get(i + 2).copied().and_then(hex_value))
            {
                out.push((h << 4) | l);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Drops an RFC 2231 `charset'language'` prefix.
fn strip_charset(s: &str) -> &str {
    let mut parts = s.splitn(3, '\'');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(_), Some(rest)) => rest,
        _ => s,
    }
}

/// The value of parameter `name`, RFC 2231 extended (`name*`) and continued (`name*0*`) forms
/// included.
pub fn param(params: &[(String, String)], name: &str) -> Option<String> {
    if let Some((_, v)) = params.iter().find(|(k, _)| k == name) {
        return Some(v.clone());
    }
    let ext = format!("{name}*");
    if let Some((_, v)) = params.iter().find(|(k, _)| *k == ext) {
        return Some(String::from_utf8_lossy(&percent_decode(strip_charset(v))).into_owned());
    }
    let mut bytes = Vec::new();
    let mut found = false;
    for n in 0..64u32 {
        let plain = format!("{name}*{n}");
        let star = format!("{name}*{n}*");
        if let Some((_, v)) = params.iter().find(|(k, _)| *k == star) {
            let v = if n == 0 { strip_charset(v) } else { v.as_str() };
            bytes.extend_from_slice(&percent_decode(v));
        } else if let Some((_, v)) = params.iter().find(|(k, _)| *k == plain) {
            bytes.extend_from_slice(v.as_bytes());
        } else {
            break;
        }
        found = true;
    }
    found.then(|| String::from_utf8_lossy(&bytes).into_owned())
}

// ---------------------------------------------------------------------------------------------
// The parser

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Field {
    ContentType,
    Disposition,
    Cte,
    MessageId,
    Subject,
    From,
    To,
    Date,
}

fn field_of(name: &[u8]) -> Option<Field> {
    let n = name.trim_ascii();
    let eq = |s: &str| n.eq_ignore_ascii_case(s.as_bytes());
    if eq("content-type") {
        Some(Field::ContentType)
    } else if eq("content-disposition") {
        Some(Field::Disposition)
    } else if eq("content-transfer-encoding") {
        Some(Field::Cte)
    } else if eq("message-id") {
        Some(Field::MessageId)
    } else if eq("subject") {
        Some(Field::Subject)
    } else if eq("from") {
        Some(Field::From)
    } else if eq("to") {
        Some(Field::To)
    } else if eq("date") {
        Some(Field::Date)
    } else {
        None
    }
}

/// The header block being read.
#[derive(Default)]
struct Headers {
    block_len: usize,
    /// The header whose value is being collected (None: not one we keep).
    current: Option<Field>,
    in_header: bool,
    values: Vec<(Field, Vec<u8>)>,
}

impl Headers {
    fn value(&self, f: Field) -> Option<String> {
        self.values.iter().find(|(k, _)| *k == f).map(|(_, v)| String::from_utf8_lossy(v.trim_ascii()).into_owned())
    }

    fn append(&mut self, bytes: &[u8]) {
        let Some(f) = self.current else { return };
        if let Some((_, v)) = self.values.iter_mut().rev().find(|(k, _)| *k == f) {
            let room = MAX_HEADER_VALUE.saturating_sub(v.len());
            v.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or(&[]));
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Mode {
    Headers,
    /// In a leaf part's body.
    Body,
    /// Preamble, epilogue, or lost after a gap: only boundaries matter.
    Ignore,
}

struct Level {
    /// `--` + boundary.
    delim: Vec<u8>,
    /// Depth of the parts this multipart contains.
    child_depth: usize,
}

struct Leaf {
    want: bool,
    decoder: Decoder,
}

/// The push parser. See the module documentation.
pub struct MimeParser {
    mode: Mode,
    line: Vec<u8>,
    /// The current body line outgrew the probe and is being streamed.
    line_long: bool,
    /// A `\r` withheld at the end of a streamed piece (it may start the line break).
    held_cr: bool,
    /// The current header line outgrew its buffer.
    line_truncated: bool,
    /// Drop bytes up to the next line feed (after a gap).
    skip_line: bool,
    /// The line break after the last body line, sent only if no boundary follows.
    pending_eol: &'static [u8],
    depth: usize,
    headers: Headers,
    stack: Vec<Level>,
    leaf: Option<Leaf>,
    index: u32,
    top_done: bool,
    pub anomalies: MimeAnomalies,
}

impl Default for MimeParser {
    fn default() -> Self {
        MimeParser::new()
    }
}

fn match_boundary(line: &[u8], delim: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(delim)?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    rest.iter().all(|&c| c == b' ' || c == b'\t').then_some(close)
}

fn is_header_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&c| (33..=126).contains(&c) && c != b':')
}

impl MimeParser {
    pub fn new() -> MimeParser {
        MimeParser {
            mode: Mode::Headers,
            line: Vec::new(),
            line_long: false,
            held_cr: false,
            line_truncated: false,
            skip_line: false,
            pending_eol: b"",
            depth: 0,
            headers: Headers::default(),
            stack: Vec::new(),
            leaf: None,
            index: 0,
            top_done: false,
            anomalies: MimeAnomalies::default(),
        }
    }

    /// Bytes of buffer capacity held (bounded whatever the input: for memory tests).
    pub fn buffer_capacity(&self) -> usize {
        self.line.capacity()
            + self.headers.values.iter().map(|(_, v)| v.capacity()).sum::<usize>()
            + self.stack.iter().map(|l| l.delim.capacity()).sum::<usize>()
    }

    /// The next bytes of the message.
    pub fn feed(&mut self, mut data: &[u8], h: &mut dyn MimeHandler) {
        while !data.is_empty() {
            let lf = data.iter().position(|&b| b == b'\n');
            let (piece, rest, has_lf) = match lf {
                Some(p) => (data.get(..p).unwrap_or(&[]), data.get(p + 1..).unwrap_or(&[]), true),
                None => (data, &[][..], false),
            };
            data = rest;
            if self.skip_line {
                if has_lf {
                    self.skip_line = false;
                }
                continue;
            }
            self.take_piece(piece, h);
            if has_lf {
                self.line_end(h);
            }
        }
    }

    /// Bytes of the message are missing: the current part ends incomplete, and parsing resumes
    /// at the next boundary line.
    pub fn gap(&mut self, h: &mut dyn MimeHandler) {
        self.anomalies.gaps += 1;
        self.end_leaf(false, h);
        if self.mode == Mode::Headers && self.depth == 0 && !self.top_done {
            self.top_done = true;
        }
        self.mode = Mode::Ignore;
        self.line.clear();
        self.line_long = false;
        self.held_cr = false;
        self.skip_line = true;
    }

    /// The message ended.
    pub fn finish(&mut self, h: &mut dyn MimeHandler) {
        if self.skip_line {
            self.line.clear();
        } else if self.line_long {
            if self.held_cr {
                self.emit(b"\r", h);
            }
        } else if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, b"", h);
            self.line = line;
            self.line.clear();
        }
        if self.mode == Mode::Headers {
            self.headers_done(h);
        }
        if self.leaf.is_some() {
            let eol = std::mem::take(&mut self.pending_eol);
            self.emit(eol, h);
            self.end_leaf(true, h);
        }
        if !self.stack.is_empty() {
            self.anomalies.missing_close_boundary += 1;
            self.stack.clear();
        }
        self.line_long = false;
        self.held_cr = false;
        self.mode = Mode::Ignore;
    }

    fn take_piece(&mut self, piece: &[u8], h: &mut dyn MimeHandler) {
        if piece.is_empty() {
            return;
        }
        if self.line_long {
            self.stream_piece(piece, h);
            return;
        }
        let cap = if self.mode == Mode::Headers { MAX_HEADER_LINE } else { MAX_PROBE_LINE };
        let room = cap.saturating_sub(self.line.len());
        if piece.len() <= room {
            self.line.extend_from_slice(piece);
            return;
        }
        if self.mode == Mode::Headers {
            let (keep, drop) = piece.split_at(room);
            self.line.extend_from_slice(keep);
            self.headers.block_len = self.headers.block_len.saturating_add(drop.len());
            self.line_truncated = true;
            return;
        }
        // Too long to be a boundary: what is held so far is data, the rest of the line streams.
        let eol = std::mem::take(&mut self.pending_eol);
        self.emit(eol, h);
        let held = std::mem::take(&mut self.line);
        self.emit(&held, h);
        self.line = held;
        self.line.clear();
        self.line_long = true;
        self.held_cr = false;
        self.stream_piece(piece, h);
    }

    fn stream_piece(&mut self, piece: &[u8], h: &mut dyn MimeHandler) {
        if self.held_cr {
            self.held_cr = false;
            self.emit(b"\r", h);
        }
        match piece.split_last() {
            Some((b'\r', head)) => {
                self.emit(head, h);
                self.held_cr = true;
            }
            _ => self.emit(piece, h),
        }
    }

    fn line_end(&mut self, h: &mut dyn MimeHandler) {
        if self.line_long {
            self.pending_eol = if self.held_cr { b"\r\n" } else { b"\n" };
            self.held_cr = false;
            self.line_long = false;
            return;
        }
        let mut line = std::mem::take(&mut self.line);
        let eol: &'static [u8] = if line.last() == Some(&b'\r') {
            line.pop();
            b"\r\n"
        } else {
            b"\n"
        };
        if self.mode == Mode::Headers {
            self.headers.block_len = self.headers.block_len.saturating_add(line.len() + eol.len());
        }
        self.process_line(&line, eol, h);
        line.clear();
        self.line = line;
        self.line_truncated = false;
    }

    fn emit(&mut self, bytes: &[u8], h: &mut dyn MimeHandler) {
        if self.mode != Mode::Body || bytes.is_empty() {
            return;
        }
        if let Some(leaf) = self.leaf.as_mut() {
            if leaf.want {
                leaf.decoder.decode(bytes, &mut |d| h.part_data(d));
            }
        }
    }

    fn end_leaf(&mut self, complete: bool, h: &mut dyn MimeHandler) {
        self.pending_eol = b"";
        if let Some(mut leaf) = self.leaf.take() {
            if leaf.want {
                let ok = leaf.decoder.finish(&mut |d| h.part_data(d));
                if !ok {
                    self.anomalies.invalid_base64 += 1;
                }
                h.part_end(complete);
            }
        }
    }

    fn process_line(&mut self, line: &[u8], eol: &'static [u8], h: &mut dyn MimeHandler) {
        // A boundary of any enclosing multipart ends whatever is open inside it.
        for i in (0..self.stack.len()).rev() {
            let Some(level) = self.stack.get(i) else { continue };
            if let Some(close) = match_boundary(line, &level.delim) {
                let child_depth = level.child_depth;
                if self.mode == Mode::Headers {
                    self.headers_done(h);
                }
                self.end_leaf(true, h);
                if close {
                    self.stack.truncate(i);
                    self.mode = Mode::Ignore;
                } else {
                    self.stack.truncate(i + 1);
                    self.start_headers(child_depth);
                }
                return;
            }
        }
        match self.mode {
            Mode::Headers => self.header_line(line, eol, h),
            Mode::Body => {
                let prev = std::mem::replace(&mut self.pending_eol, eol);
                self.emit(prev, h);
                self.emit(line, h);
            }
            Mode::Ignore => {}
        }
    }

    fn start_headers(&mut self, depth: usize) {
        self.mode = Mode::Headers;
        self.depth = depth;
        self.headers.block_len = 0;
        self.headers.current = None;
        self.headers.in_header = false;
        self.headers.values.clear();
    }

    fn header_line(&mut self, line: &[u8], eol: &'static [u8], h: &mut dyn MimeHandler) {
        if self.line_truncated {
            self.anomalies.header_line_truncated += 1;
        }
        if line.is_empty() {
            self.headers_done(h);
            return;
        }
        if self.headers.block_len > MAX_HEADER_BLOCK {
            self.anomalies.header_block_too_long += 1;
            self.headers_done(h);
            return;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) && self.headers.in_header {
            self.headers.append(line);
            return;
        }
        if let Some(colon) = line.iter().position(|&c| c == b':') {
            let name = line.get(..colon).unwrap_or(&[]);
            if is_header_name(name.trim_ascii_end()) {
                self.headers.in_header = true;
                let f = field_of(name);
                let known = f.is_some_and(|f| self.headers.values.iter().any(|(k, _)| *k == f));
                // The first occurrence counts, as `Message.get` does.
                self.headers.current = if known { None } else { f };
                if let Some(f) = self.headers.current {
                    self.headers.values.push((f, Vec::new()));
                    self.headers.append(line.get(colon + 1..).unwrap_or(&[]));
                }
                return;
            }
        }
        if self.depth == 0 && !self.headers.in_header && line.starts_with(b"From ") {
            return; // mbox separator
        }
        // Not a header: the header block ended without its blank line; this is body.
        self.headers_done(h);
        self.process_line(line, eol, h);
    }

    fn headers_done(&mut self, h: &mut dyn MimeHandler) {
        let hd = &self.headers;
        if self.depth == 0 && !self.top_done {
            self.top_done = true;
            let top = MessageHeaders {
                message_id: hd.value(Field::MessageId),
                subject: hd.value(Field::Subject),
                from: hd.value(Field::From),
                to: hd.value(Field::To),
                date: hd.value(Field::Date),
            };
            h.message_headers(&top);
        }
        let (ctype, ct_params) = hd.value(Field::ContentType).map(|v| split_params(&v)).unwrap_or_default();
        let ctype = if ctype.contains('/') { ctype } else { "text/plain".to_string() };
        let (disp, cd_params) = match hd.value(Field::Disposition) {
            Some(v) => {
                let (d, p) = split_params(&v);
                (Some(d).filter(|d| !d.is_empty()), p)
            }
            None => (None, Vec::new()),
        };
        let encoding = match hd.value(Field::Cte).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            Some("base64") => Encoding::Base64,
            Some("quoted-printable") => Encoding::QuotedPrintable,
            _ => Encoding::Identity,
        };
        let filename = param(&cd_params, "filename").or_else(|| param(&ct_params, "name"));
        let filename = filename.map(|f| f.trim().to_string()).filter(|f| !f.is_empty());
        self.headers.values.clear();
        self.headers.current = None;
        let child_depth = self.depth + 1;

        if ctype.starts_with("multipart/") {
            if let Some(b) = param(&ct_params, "boundary").filter(|b| !b.is_empty()) {
                if b.len() > MAX_BOUNDARY {
                    self.anomalies.boundary_too_long += 1;
                } else if child_depth > MAX_DEPTH {
                    self.anomalies.depth_exceeded += 1;
                } else {
                    let mut delim = Vec::with_capacity(b.len() + 2);
                    delim.extend_from_slice(b"--");
                    delim.extend_from_slice(b.as_bytes());
                    self.stack.push(Level { delim, child_depth });
                    self.mode = Mode::Ignore;
                    return;
                }
            }
        }
        let attachment = filename.is_some() || disp.as_deref() == Some("attachment");
        if ctype == "message/rfc822" && !attachment {
            if child_depth > MAX_DEPTH {
                self.anomalies.depth_exceeded += 1;
            } else {
                // An enclosed message: its own header block follows.
                self.mode = Mode::Headers;
                self.depth = child_depth;
                self.headers.block_len = 0;
                self.headers.in_header = false;
                return;
            }
        }
        self.index = self.index.saturating_add(1);
        let info = PartInfo {
            depth: self.depth,
            index: self.index,
            content_type: ctype,
            disposition: disp,
            filename,
            encoding,
        };
        let want = h.part_begin(&info);
        self.leaf = Some(Leaf { want, decoder: Decoder::new(encoding) });
        self.pending_eol = b"";
        self.mode = Mode::Body;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        parts: Vec<(PartInfo, Vec<u8>, Option<bool>)>,
        top: Option<MessageHeaders>,
    }

    impl MimeHandler for Collect {
        fn message_headers(&mut self, h: &MessageHeaders) {
            self.top = Some(h.clone());
        }
        fn part_begin(&mut self, part: &PartInfo) -> bool {
            self.parts.push((part.clone(), Vec::new(), None));
            true
        }
        fn part_data(&mut self, data: &[u8]) {
            if let Some(p) = self.parts.last_mut() {
                p.1.extend_from_slice(data);
            }
        }
        fn part_end(&mut self, complete: bool) {
            if let Some(p) = self.parts.last_mut() {
                p.2 = Some(complete);
            }
        }
    }

    fn parse_in_chunks(msg: &[u8], chunk: usize) -> Collect {
        let mut c = Collect::default();
        let mut p = MimeParser::new();
        for piece in msg.chunks(chunk.max(1)) {
            p.feed(piece, &mut c);
        }
        p.finish(&mut c);
        c
    }

    #[test]
    fn base64_matches_python_binascii() {
        // Expected values from Python 3.11: binascii.a2b_base64 / email's decode_b.
        assert_eq!(decode_base64(b"aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(decode_base64(b"aGVs\r\nbG8g d29y\nbGQ"), b"hello world");
        assert_eq!(decode_base64(b"YQ==YQ=="), b"a");
        assert_eq!(decode_base64(b"YWI="), b"ab");
    }

    #[test]
    fn qp_matches_python_a2b_qp() {
        // python3 -c "import binascii;print(binascii.a2b_qp(b'a=\r\nb=41=4=zz= \r\nc=\nd=3'))"
        // -> b'abA=4=zz= \r\ncd=3'
        for chunk in [1, 2, 3, 100] {
            let mut out = Vec::new();
            let mut d = QpDecoder::new();
            for piece in b"a=\r\nb=41=4=zz= \r\nc=\nd=3".chunks(chunk) {
                d.decode(piece, &mut |b| out.extend_from_slice(b));
            }
            d.finish(&mut |b| out.extend_from_slice(b));
            assert_eq!(out, b"abA=4=zz= \r\ncd=3", "chunk {chunk}");
        }
    }

    #[test]
    fn rfc2231_filename() {
        let (_, p) = split_params("attachment; filename*0*=utf-8''a%20b; filename*1=\"c.txt\"");
        assert_eq!(param(&p, "filename").as_deref(), Some("a bc.txt"));
        let (main, p) = split_params("Multipart/Mixed; boundary=\"x;y\"");
        assert_eq!(main, "multipart/mixed");
        assert_eq!(param(&p, "boundary").as_deref(), Some("x;y"));
    }

    #[test]
    fn crlf_before_boundary_belongs_to_boundary_and_chunking_does_not_matter() {
        let msg = b"Subject: hi\r\nMessage-ID: <1@x>\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n\
preamble\r\n--B\r\nContent-Type: text/plain\r\n\r\nbody\r\n--B\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\nAw==\r\n--B--\r\nepilogue\r\n";
        for chunk in [1, 5, 7, 1000] {
            let c = parse_in_chunks(msg, chunk);
            assert_eq!(c.top.as_ref().and_then(|t| t.message_id.as_deref()), Some("<1@x>"));
            assert_eq!(c.parts.len(), 2, "chunk {chunk}");
            assert_eq!(c.parts[0].1, b"body");
            assert_eq!(c.parts[1].0.filename.as_deref(), Some("a.bin"));
            assert_eq!(c.parts[1].1, [0, 1, 2, 3]);
            assert_eq!(c.parts[1].2, Some(true));
        }
    }

    #[test]
    fn long_lines_stream_without_growing_the_buffer() {
        let mut msg = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Disposition: attachment; filename=x\r\n\r\n"
            .to_vec();
        let long = vec![b'x'; 100_000];
        msg.extend_from_slice(&long);
        msg.extend_from_slice(b"\r\nshort\r\n");
        msg.extend_from_slice(&long);
        msg.extend_from_slice(b"\r\n--b--\r\n");
        for chunk in [3, 4096, 1 << 20] {
            let mut c = Collect::default();
            let mut p = MimeParser::new();
            for piece in msg.chunks(chunk) {
                p.feed(piece, &mut c);
                assert!(p.buffer_capacity() <= 2 * MAX_HEADER_LINE);
            }
            p.finish(&mut c);
            let mut want = long.clone();
            want.extend_from_slice(b"\r\nshort\r\n");
            want.extend_from_slice(&long);
            assert_eq!(c.parts.len(), 1);
            assert_eq!(c.parts[0].1, want, "chunk {chunk}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let mut msg = Vec::new();
        for i in 0..40 {
            msg.extend_from_slice(format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").as_bytes());
        }
        msg.extend_from_slice(b"Content-Disposition: attachment; filename=deep\r\n\r\nDEEP\r\n");
        let mut p = MimeParser::new();
        let mut c = Collect::default();
        p.feed(&msg, &mut c);
        p.finish(&mut c);
        assert!(p.stack.len() <= MAX_DEPTH);
        assert_eq!(p.anomalies.depth_exceeded, 1);
        assert_eq!(c.parts.len(), 1);
    }
}
