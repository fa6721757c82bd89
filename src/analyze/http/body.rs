//! One HTTP message body: transfer framing (Content-Length, chunked, until close), content
//! decoding (gzip/deflate, streamed through a fixed buffer) and the objects it becomes (the whole
//! body, or one object per multipart part).
//!
//! Memory is bounded whatever the body size: a chunk-size line and a trailer line are capped, the
//! inflater writes through a 32 KiB stack buffer, the multipart splitter keeps at most a
//! delimiter's length (or a capped preamble / part header) of carry. No-panic contract: wire bytes
//! are only indexed after a length check.
//!
//! A content-coded body is two objects: the bytes as sent (transfer coding undone, content
//! coding kept: the evidence) and what they decode to, whose `parent` is the first. Decoding
//! stops at the limits of [`crate::content::ContentLimits`] (size, and ratio to the bytes as
//! sent): the decoded object then ends incomplete, flagged `decoding-capped`, and the bytes as
//! sent are still whole.

use flate2::{Decompress, FlushDecompress, Status};

use super::parse::{self, push_once};
use crate::analyze::Cx;
use crate::record::{Dir, ObjectId, ObjectMeta};

/// Longest chunk-size line (with extensions) and trailer block accepted.
const MAX_CHUNK_LINE: usize = 1024;
const MAX_TRAILER: usize = 64 * 1024;
/// Multipart: preamble kept while looking for the first delimiter, part header bytes and lines,
/// parts per body.
const MAX_PREAMBLE: usize = 64 * 1024;
const MAX_PART_HEADER: usize = 8 * 1024;
const MAX_PART_LINES: usize = 100;
const MAX_PARTS: usize = 10_000;
/// Bytes of a body kept for parsing (S3 CompleteMultipartUpload).
pub const MAX_CAPTURE: usize = 64 * 1024;

/// A finished object as the IRI names it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ObjRef {
    pub id: ObjectId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub sha256: String,
    /// For the analyzer's own use (an S3 part's MD5 in `s3_complete`), not written: empty in an
    /// event read back from its JSON.
    #[serde(skip)]
    pub md5: String,
    pub size: u64,
    pub complete: bool,
}

/// What an object will be when its first byte comes.
#[derive(Clone, Debug)]
pub struct ObjTemplate {
    pub dir: Dir,
    pub name: Option<String>,
    pub declared_size: Option<u64>,
    pub context: serde_json::Value,
    /// The object this one is decoded from.
    pub parent: Option<ObjectId>,
}

/// Ends object `id` and returns its reference for the IRI.
pub fn end_object(id: ObjectId, name: Option<String>, seen_end: bool, cx: &mut Cx) -> ObjRef {
    let crate::content::Ended { sha256, md5, size, complete } = cx.object_end(id, seen_end).unwrap_or_default();
    ObjRef { id, name, sha256, md5, size, complete }
}

/// One object being written in order.
pub struct Slot {
    pub tmpl: ObjTemplate,
    id: Option<ObjectId>,
    off: u64,
}

impl Slot {
    pub fn new(tmpl: ObjTemplate) -> Slot {
        Slot { tmpl, id: None, off: 0 }
    }

    pub fn open(&mut self, cx: &mut Cx) -> ObjectId {
        if let Some(id) = self.id {
            return id;
        }
        let mut meta = ObjectMeta::new("file", "http", cx.flow, self.tmpl.dir, cx.cin, cx.now);
        meta.name = self.tmpl.name.clone();
        meta.declared_size = self.tmpl.declared_size;
        meta.context = self.tmpl.context.clone();
        meta.parent = self.tmpl.parent;
        let id = cx.open_object(meta);
        self.id = Some(id);
        id
    }

    pub fn data(&mut self, b: &[u8], cx: &mut Cx) {
        if b.is_empty() {
            return;
        }
        let id = self.open(cx);
        cx.object_data(id, self.off, b);
        self.off = self.off.saturating_add(b.len() as u64);
    }

    pub fn gap(&mut self, len: u64, cx: &mut Cx) {
        if len == 0 {
            return;
        }
        let id = self.open(cx);
        cx.object_gap(id, self.off, len);
        self.off = self.off.saturating_add(len);
    }

    pub fn finish(&mut self, complete: bool, cx: &mut Cx) -> Option<ObjRef> {
        let id = self.id.take()?;
        Some(end_object(id, self.tmpl.name.clone(), complete, cx))
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum MpState {
    Preamble,
    AfterDelim,
    Headers,
    Part,
    Epilogue,
}

/// Splits a multipart body into one object per part (RFC 2046 §5.1.1), streaming.
pub struct Multipart {
    /// `CRLF -- boundary`.
    delim: Vec<u8>,
    buf: Vec<u8>,
    state: MpState,
    /// Template for parts; `name` is the fallback when a part has no filename.
    base: ObjTemplate,
    part: Option<Slot>,
    part_gapped: bool,
    hdr_lines: usize,
    part_disposition: Option<String>,
    part_type: Option<String>,
    parts: usize,
    /// No delimiter within the preamble bound: the body is written whole instead.
    fallback: Option<Slot>,
    pub anomalies: Vec<&'static str>,
    pub finished: Vec<ObjRef>,
}

impl Multipart {
    pub fn new(boundary: &str, base: ObjTemplate) -> Multipart {
        let mut delim = b"\r\n--".to_vec();
        delim.extend_from_slice(boundary.as_bytes());
        Multipart {
            delim,
            // The first delimiter may open the body: pretend a line ended just before it.
            buf: b"\r\n".to_vec(),
            state: MpState::Preamble,
            base,
            part: None,
            part_gapped: false,
            hdr_lines: 0,
            part_disposition: None,
            part_type: None,
            parts: 0,
            fallback: None,
            anomalies: Vec::new(),
            finished: Vec::new(),
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        if needle.is_empty() || hay.len() < needle.len() {
            return None;
        }
        hay.windows(needle.len()).position(|w| w == needle)
    }

    /// Length of the longest suffix of `hay` that is a proper prefix of `needle`.
    fn partial_tail(hay: &[u8], needle: &[u8]) -> usize {
        let max = needle.len().saturating_sub(1).min(hay.len());
        (1..=max).rev().find(|&k| hay.get(hay.len() - k..).is_some_and(|t| needle.starts_with(t))).unwrap_or(0)
    }

    fn end_part(&mut self, complete: bool, cx: &mut Cx) {
        if let Some(mut p) = self.part.take() {
            if let Some(r) = p.finish(complete && !self.part_gapped, cx) {
                self.finished.push(r);
            }
        }
        self.part_gapped = false;
    }

    fn start_part(&mut self, cx: &mut Cx) {
        self.parts += 1;
        let filename = self.part_disposition.as_deref().and_then(parse::disposition_filename);
        let field = self.part_disposition.as_deref().and_then(|d| parse::header_param(d, "name"));
        let mut ctx = self.base.context.clone();
        if let Some(o) = ctx.as_object_mut() {
            o.insert("multipart_part".into(), self.parts.into());
            if let Some(f) = &field {
                o.insert("field".into(), f.clone().into());
            }
            if let Some(t) = &self.part_type {
                o.insert("part_content_type".into(), t.clone().into());
            }
        }
        let has_file = filename.as_deref().is_some_and(|f| !f.is_empty());
        let name = if has_file { filename } else { self.base.name.clone() };
        let mut slot = Slot::new(ObjTemplate {
            dir: self.base.dir,
            name,
            declared_size: None,
            context: ctx,
            parent: self.base.parent,
        });
        if has_file {
            // A named file of zero bytes is still an upload worth an object.
            slot.open(cx);
        }
        self.part = Some(slot);
        self.part_disposition = None;
        self.part_type = None;
    }

    pub fn data(&mut self, input: &[u8], cx: &mut Cx) {
        if let Some(f) = self.fallback.as_mut() {
            return f.data(input, cx);
        }
        self.buf.extend_from_slice(input);
        loop {
            match self.state {
                MpState::Preamble | MpState::Part => {
                    if let Some(i) = Self::find(&self.buf, &self.delim) {
                        if self.state == MpState::Part {
                            if let Some(p) = self.part.as_mut() {
                                p.data(&self.buf[..i], cx);
                            }
                            self.end_part(true, cx);
                        }
                        self.buf.drain(..i + self.delim.len());
                        self.state = MpState::AfterDelim;
                        continue;
                    }
                    if self.state == MpState::Preamble {
                        if self.buf.len() > MAX_PREAMBLE {
                            // Not multipart after all: keep every byte as one object.
                            push_once(&mut self.anomalies, "multipart-boundary-not-found");
                            let mut slot = Slot::new(self.base.clone());
                            slot.data(self.buf.get(2..).unwrap_or(&[]), cx);
                            self.buf = Vec::new();
                            self.fallback = Some(slot);
                        }
                        return;
                    }
                    let keep = Self::partial_tail(&self.buf, &self.delim);
                    let upto = self.buf.len() - keep;
                    if let Some(p) = self.part.as_mut() {
                        p.data(&self.buf[..upto], cx);
                    }
                    self.buf.drain(..upto);
                    return;
                }
                MpState::AfterDelim => {
                    if self.buf.len() < 2 {
                        return;
                    }
                    if self.buf.starts_with(b"--") {
                        self.state = MpState::Epilogue;
                        continue;
                    }
                    match self.buf.iter().position(|&c| c == b'\n') {
                        Some(lf) => {
                            if !parse::trim(&self.buf[..lf]).is_empty() {
                                push_once(&mut self.anomalies, "multipart-junk-after-boundary");
                            }
                            self.buf.drain(..=lf);
                            self.state = MpState::Headers;
                            self.hdr_lines = 0;
                        }
                        None if self.buf.len() > MAX_PART_HEADER => {
                            push_once(&mut self.anomalies, "multipart-bad-boundary-line");
                            self.buf.clear();
                            self.state = MpState::Preamble;
                        }
                        None => return,
                    }
                }
                MpState::Headers => match self.buf.iter().position(|&c| c == b'\n') {
                    Some(lf) => {
                        let line = self.buf[..lf].strip_suffix(b"\r").unwrap_or(&self.buf[..lf]);
                        if line.is_empty() {
                            self.buf.drain(..=lf);
                            if self.parts >= MAX_PARTS {
                                push_once(&mut self.anomalies, "multipart-too-many-parts");
                                self.state = MpState::Epilogue;
                                continue;
                            }
                            self.start_part(cx);
                            self.state = MpState::Part;
                            continue;
                        }
                        let text = String::from_utf8_lossy(line);
                        if let Some((n, v)) = text.split_once(':') {
                            let n = n.trim();
                            if n.eq_ignore_ascii_case("content-disposition") {
                                self.part_disposition = Some(v.trim().to_string());
                            } else if n.eq_ignore_ascii_case("content-type") {
                                self.part_type = Some(v.trim().to_string());
                            }
                        }
                        self.buf.drain(..=lf);
                        self.hdr_lines += 1;
                        if self.hdr_lines > MAX_PART_LINES {
                            push_once(&mut self.anomalies, "multipart-too-many-part-headers");
                            self.state = MpState::Preamble;
                        }
                    }
                    None if self.buf.len() > MAX_PART_HEADER => {
                        push_once(&mut self.anomalies, "multipart-part-header-too-long");
                        self.buf.clear();
                        self.state = MpState::Preamble;
                        return;
                    }
                    None => return,
                },
                MpState::Epilogue => {
                    self.buf.clear();
                    return;
                }
            }
        }
    }

    pub fn gap(&mut self, len: u64, cx: &mut Cx) {
        if let Some(f) = self.fallback.as_mut() {
            return f.gap(len, cx);
        }
        match self.state {
            MpState::Part => {
                // The carry may be the start of a delimiter whose rest is lost: it is part data.
                if let Some(p) = self.part.as_mut() {
                    p.data(&self.buf, cx);
                    p.gap(len, cx);
                }
                self.buf.clear();
                self.part_gapped = true;
            }
            MpState::Epilogue => {}
            _ => {
                push_once(&mut self.anomalies, "gap-in-multipart-headers");
                self.buf.clear();
                self.state = MpState::Preamble;
            }
        }
    }

    pub fn finish(&mut self, complete: bool, cx: &mut Cx) {
        if let Some(mut f) = self.fallback.take() {
            if let Some(r) = f.finish(complete, cx) {
                self.finished.push(r);
            }
            return;
        }
        if self.state == MpState::Part {
            if let Some(p) = self.part.as_mut() {
                p.data(&self.buf, cx);
            }
            self.buf.clear();
            // A part without its closing delimiter did not end as the protocol says.
            push_once(&mut self.anomalies, "multipart-unterminated");
            self.end_part(false, cx);
        } else if self.state != MpState::Epilogue && complete {
            push_once(&mut self.anomalies, "multipart-unterminated");
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum GzStage {
    Fixed(usize),
    XLen(usize, u16),
    XSkip(u16),
    Name,
    Comment,
    Hcrc(u8),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Stage {
    Gz(GzStage),
    /// Deflate: the first two bytes tell zlib from raw deflate (both are sent as "deflate").
    Sniff,
    Stream,
    GzTrailer(u8),
    Done,
}

/// One content-coding layer, streamed.
pub struct Inflate {
    gzip: bool,
    stage: Stage,
    z: Decompress,
    hdr: [u8; 10],
    flags: u8,
    sniff: Vec<u8>,
    pub trailing: bool,
}

impl Inflate {
    pub fn gzip() -> Inflate {
        Inflate {
            gzip: true,
            stage: Stage::Gz(GzStage::Fixed(0)),
            z: Decompress::new(false),
            hdr: [0; 10],
            flags: 0,
            sniff: Vec::new(),
            trailing: false,
        }
    }

    pub fn deflate() -> Inflate {
        Inflate {
            gzip: false,
            stage: Stage::Sniff,
            z: Decompress::new(false),
            hdr: [0; 10],
            flags: 0,
            sniff: Vec::new(),
            trailing: false,
        }
    }

    pub fn done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Runs `input` through the stream; `out` gets decoded bytes in order.
    pub fn feed(&mut self, mut input: &[u8], out: &mut dyn FnMut(&[u8])) -> Result<(), &'static str> {
        while let [c, rest @ ..] = input {
            let c = *c;
            match self.stage {
                Stage::Gz(g) => {
                    input = rest;
                    self.stage = match g {
                        GzStage::Fixed(n) => {
                            if let Some(slot) = self.hdr.get_mut(n) {
                                *slot = c;
                            }
                            if n + 1 < 10 {
                                Stage::Gz(GzStage::Fixed(n + 1))
                            } else {
                                if self.hdr[0] != 0x1f || self.hdr[1] != 0x8b || self.hdr[2] != 8 {
                                    return Err("bad-gzip-header");
                                }
                                self.flags = self.hdr[3];
                                self.after_gz_field(0)
                            }
                        }
                        GzStage::XLen(0, _) => Stage::Gz(GzStage::XLen(1, u16::from(c))),
                        GzStage::XLen(_, lo) => {
                            let n = lo | (u16::from(c) << 8);
                            if n == 0 {
                                self.after_gz_field(1)
                            } else {
                                Stage::Gz(GzStage::XSkip(n))
                            }
                        }
                        GzStage::XSkip(n) if n > 1 => Stage::Gz(GzStage::XSkip(n - 1)),
                        GzStage::XSkip(_) => self.after_gz_field(1),
                        GzStage::Name if c != 0 => Stage::Gz(GzStage::Name),
                        GzStage::Name => self.after_gz_field(2),
                        GzStage::Comment if c != 0 => Stage::Gz(GzStage::Comment),
                        GzStage::Comment => self.after_gz_field(3),
                        GzStage::Hcrc(0) => Stage::Gz(GzStage::Hcrc(1)),
                        GzStage::Hcrc(_) => self.after_gz_field(4),
                    };
                }
                Stage::Sniff => {
                    self.sniff.push(c);
                    input = rest;
                    if self.sniff.len() == 2 {
                        let (a, b) = (self.sniff[0], self.sniff[1]);
                        let zlib = a & 0x0f == 8 && a >> 4 <= 7 && (u16::from(a) << 8 | u16::from(b)) % 31 == 0;
                        self.z = Decompress::new(zlib);
                        self.stage = Stage::Stream;
                        let held = std::mem::take(&mut self.sniff);
                        self.inflate(&held, out)?;
                    }
                }
                Stage::Stream => {
                    let used = self.inflate(input, out)?;
                    input = input.get(used..).unwrap_or(&[]);
                    if self.stage == Stage::Stream && used == 0 {
                        // The inflater wants nothing more from these bytes yet.
                        return Ok(());
                    }
                }
                Stage::GzTrailer(n) => {
                    input = rest;
                    self.stage = if n + 1 < 8 { Stage::GzTrailer(n + 1) } else { Stage::Done };
                }
                Stage::Done => {
                    if self.gzip && c == 0x1f {
                        // Another gzip member follows (RFC 1952 §2.2).
                        self.stage = Stage::Gz(GzStage::Fixed(0));
                        self.z = Decompress::new(false);
                        continue;
                    }
                    self.trailing = true;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The gzip header stage after field `done` (0 fixed, 1 extra, 2 name, 3 comment, 4 hcrc).
    fn after_gz_field(&self, done: u8) -> Stage {
        const FHCRC: u8 = 2;
        const FEXTRA: u8 = 4;
        const FNAME: u8 = 8;
        const FCOMMENT: u8 = 16;
        if done < 1 && self.flags & FEXTRA != 0 {
            return Stage::Gz(GzStage::XLen(0, 0));
        }
        if done < 2 && self.flags & FNAME != 0 {
            return Stage::Gz(GzStage::Name);
        }
        if done < 3 && self.flags & FCOMMENT != 0 {
            return Stage::Gz(GzStage::Comment);
        }
        if done < 4 && self.flags & FHCRC != 0 {
            return Stage::Gz(GzStage::Hcrc(0));
        }
        Stage::Stream
    }

    /// Inflates from `input`; returns the bytes consumed.
    fn inflate(&mut self, mut input: &[u8], out: &mut dyn FnMut(&[u8])) -> Result<usize, &'static str> {
        let mut buf = [0u8; 32 * 1024];
        let mut consumed = 0usize;
        loop {
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let st = self.z.decompress(input, &mut buf, FlushDecompress::None).map_err(|_| "content-decoding-error")?;
            let used = usize::try_from(self.z.total_in() - in0).unwrap_or(usize::MAX).min(input.len());
            let made = usize::try_from(self.z.total_out() - out0).unwrap_or(usize::MAX).min(buf.len());
            input = &input[used..];
            consumed += used;
            if made > 0 {
                out(&buf[..made]);
            }
            if st == Status::StreamEnd {
                self.stage = if self.gzip { Stage::GzTrailer(0) } else { Stage::Done };
                return Ok(consumed);
            }
            if used == 0 && made == 0 {
                return Ok(consumed);
            }
            if input.is_empty() && made < buf.len() {
                return Ok(consumed);
            }
        }
    }
}

/// Runs bytes through the content-coding layers (outermost first) into `sink`.
fn run_chain(layers: &mut [Inflate], input: &[u8], sink: &mut dyn FnMut(&[u8])) -> Result<(), &'static str> {
    match layers.split_first_mut() {
        None => {
            sink(input);
            Ok(())
        }
        Some((first, rest)) => {
            let mut err = None;
            first.feed(input, &mut |chunk| {
                if err.is_none() {
                    if let Err(e) = run_chain(rest, chunk, sink) {
                        err = Some(e);
                    }
                }
            })?;
            err.map_or(Ok(()), Err)
        }
    }
}

/// Where decoded body bytes go.
pub enum Out {
    Whole(Slot),
    Multipart(Box<Multipart>),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Content-Length: bytes left.
    Length(u64),
    Chunked(Chunk),
    /// Ends with the connection (responses without length).
    UntilClose,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

/// What a `data` call achieved.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// All input taken; the body goes on.
    More,
    /// The body ended as its framing says, after `consumed` bytes of the input.
    Done(usize),
    /// The framing is broken (bad chunk line): stop after `consumed` bytes.
    Broken(usize, &'static str),
}

/// What a gap did to the body.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GapOutcome {
    /// Inside the body; it goes on.
    Inside,
    /// The gap ended exactly at the body's end: the next byte starts a new message.
    EndedExactly,
    /// The gap went past the end (or hit framing bytes): where the stream stands is unknown.
    Overran,
}

pub struct Body {
    pub framing: Framing,
    layers: Vec<Inflate>,
    decode_failed: bool,
    /// The bytes as sent, when a content coding is undone.
    wire: Option<Slot>,
    pub out: Out,
    /// Body bytes after transfer decoding (before content decoding).
    pub transfer_len: u64,
    /// Bytes after content decoding.
    pub decoded_len: u64,
    /// Wire bytes of the body taken so far (framing included).
    pub wire_len: u64,
    line: Vec<u8>,
    trailer_len: usize,
    trailer_cur: usize,
    pub capture: Option<Vec<u8>>,
    pub gapped: bool,
    pub anomalies: Vec<&'static str>,
}

impl Body {
    /// `wire`: the template of the object of the bytes as sent (with content codings).
    pub fn new(framing: Framing, layers: Vec<Inflate>, out: Out, wire: Option<ObjTemplate>, capture: bool) -> Body {
        Body {
            framing,
            wire: wire.filter(|_| !layers.is_empty()).map(Slot::new),
            layers,
            decode_failed: false,
            out,
            transfer_len: 0,
            decoded_len: 0,
            wire_len: 0,
            line: Vec::new(),
            trailer_len: 0,
            trailer_cur: 0,
            capture: capture.then(Vec::new),
            gapped: false,
            anomalies: Vec::new(),
        }
    }

    /// The decoded objects' parent: the object of the bytes as sent, opened now.
    fn wire_parent(&mut self, cx: &mut Cx) -> Option<ObjectId> {
        let id = self.wire.as_mut().map(|w| w.open(cx));
        match &mut self.out {
            Out::Whole(s) => s.tmpl.parent = id,
            Out::Multipart(m) => m.base.parent = id,
        }
        id
    }

    /// Transfer-decoded bytes: kept as sent when content-coded, content-decoded (within the
    /// limits) and handed on.
    fn payload(&mut self, b: &[u8], cx: &mut Cx) {
        if b.is_empty() {
            return;
        }
        if self.transfer_len == 0 && self.wire.is_some() {
            self.wire_parent(cx);
        }
        if let Some(w) = self.wire.as_mut() {
            w.data(b, cx);
        }
        self.transfer_len = self.transfer_len.saturating_add(b.len() as u64);
        if self.decode_failed {
            return;
        }
        let allowed = cx.files.limits.decoded_allowed(self.transfer_len);
        let mut capped = false;
        let Body { layers, out, capture, decoded_len, .. } = self;
        let mut sink = |d: &[u8]| {
            let room = usize::try_from(allowed.saturating_sub(*decoded_len)).unwrap_or(usize::MAX);
            if d.len() > room {
                capped = true;
            }
            let d = &d[..d.len().min(room)];
            if d.is_empty() {
                return;
            }
            *decoded_len = decoded_len.saturating_add(d.len() as u64);
            if let Some(c) = capture.as_mut() {
                let room = MAX_CAPTURE.saturating_sub(c.len());
                c.extend_from_slice(&d[..d.len().min(room)]);
            }
            match out {
                Out::Whole(s) => s.data(d, cx),
                Out::Multipart(m) => m.data(d, cx),
            }
        };
        if let Err(e) = run_chain(layers, b, &mut sink) {
            push_once(&mut self.anomalies, e);
            if e == "bad-gzip-header" && !b.starts_with(&[0x1f, 0x8b]) && self.transfer_len == b.len() as u64 {
                // The body does not even start like gzip: the header lied (an evasion, or a
                // broken server). Keep the body as sent rather than nothing. A body that starts
                // like gzip and then breaks stays a decoding error.
                push_once(&mut self.anomalies, "content-encoding-not-applied");
                self.layers.clear();
                self.decoded_len = b.len() as u64;
                // The object of the bytes as sent, which has them already, is the body.
                match (&mut self.out, self.wire.take()) {
                    (Out::Whole(s), Some(w)) => *s = w,
                    (Out::Whole(s), None) => s.data(b, cx),
                    (Out::Multipart(m), w) => {
                        if let Some(mut w) = w {
                            w.finish(true, cx);
                        }
                        m.base.parent = None;
                        m.data(b, cx)
                    }
                }
                return;
            }
            self.decode_failed = true;
        }
        if capped {
            push_once(&mut self.anomalies, "decoding-capped");
            self.decode_failed = true;
        }
        if self.layers.iter().any(|l| l.trailing) {
            push_once(&mut self.anomalies, "data-after-compressed-stream");
        }
    }

    fn payload_gap(&mut self, len: u64, cx: &mut Cx) {
        self.gapped = true;
        if self.transfer_len == 0 && self.wire.is_some() {
            self.wire_parent(cx);
        }
        if let Some(w) = self.wire.as_mut() {
            w.gap(len, cx);
        }
        self.transfer_len = self.transfer_len.saturating_add(len);
        if !self.layers.is_empty() {
            // Decoded length of lost compressed bytes is unknowable: stop decoding here.
            if !self.decode_failed {
                push_once(&mut self.anomalies, "gap-in-encoded-body");
            }
            self.decode_failed = true;
            return;
        }
        match &mut self.out {
            Out::Whole(s) => s.gap(len, cx),
            Out::Multipart(m) => m.gap(len, cx),
        }
    }

    pub fn data(&mut self, input: &[u8], cx: &mut Cx) -> Progress {
        let mut i = 0usize;
        let p = loop {
            let rest = input.get(i..).unwrap_or(&[]);
            match self.framing {
                Framing::UntilClose => {
                    self.payload(rest, cx);
                    i = input.len();
                    break Progress::More;
                }
                Framing::Length(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    self.payload(&rest[..n], cx);
                    i += n;
                    let left = left - n as u64;
                    self.framing = Framing::Length(left);
                    break if left == 0 { Progress::Done(i) } else { Progress::More };
                }
                Framing::Chunked(Chunk::Data(left)) => {
                    if rest.is_empty() {
                        break Progress::More;
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    self.payload(&rest[..n], cx);
                    i += n;
                    let left = left - n as u64;
                    self.framing = Framing::Chunked(if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) });
                }
                Framing::Chunked(Chunk::DataEnd) => match rest {
                    [] => break Progress::More,
                    [b'\r', ..] if self.line.is_empty() => {
                        self.line.push(b'\r');
                        i += 1;
                    }
                    [b'\n', ..] => {
                        self.line.clear();
                        i += 1;
                        self.framing = Framing::Chunked(Chunk::Size);
                    }
                    _ => {
                        // Sloppy senders omit the CRLF; read on as a size line.
                        push_once(&mut self.anomalies, "chunk-missing-crlf");
                        self.line.clear();
                        self.framing = Framing::Chunked(Chunk::Size);
                    }
                },
                Framing::Chunked(Chunk::Size) => match rest.iter().position(|&c| c == b'\n') {
                    None => {
                        if self.line.len() + rest.len() > MAX_CHUNK_LINE {
                            break Progress::Broken(i, "chunk-size-line-too-long");
                        }
                        self.line.extend_from_slice(rest);
                        i = input.len();
                        break Progress::More;
                    }
                    Some(lf) => {
                        if self.line.len() + lf > MAX_CHUNK_LINE {
                            break Progress::Broken(i, "chunk-size-line-too-long");
                        }
                        self.line.extend_from_slice(&rest[..lf]);
                        i += lf + 1;
                        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
                        let size = parse::parse_chunk_size(line);
                        self.line.clear();
                        match size {
                            None => break Progress::Broken(i, "bad-chunk-size"),
                            Some(0) => {
                                self.trailer_len = 0;
                                self.trailer_cur = 0;
                                self.framing = Framing::Chunked(Chunk::Trailer);
                            }
                            Some(n) => self.framing = Framing::Chunked(Chunk::Data(n)),
                        }
                    }
                },
                Framing::Chunked(Chunk::Trailer) => match rest.iter().position(|&c| c == b'\n') {
                    None => {
                        self.trailer_len += rest.len();
                        self.trailer_cur += rest.iter().filter(|&&c| c != b'\r').count();
                        if self.trailer_len > MAX_TRAILER {
                            break Progress::Broken(i, "trailer-too-long");
                        }
                        i = input.len();
                        break Progress::More;
                    }
                    Some(lf) => {
                        self.trailer_cur += rest[..lf].iter().filter(|&&c| c != b'\r').count();
                        let empty = self.trailer_cur == 0;
                        self.trailer_cur = 0;
                        self.trailer_len += lf + 1;
                        i += lf + 1;
                        if empty {
                            break Progress::Done(i);
                        }
                        if self.trailer_len > MAX_TRAILER {
                            break Progress::Broken(i, "trailer-too-long");
                        }
                    }
                },
            }
        };
        let used = match p {
            Progress::More => i,
            Progress::Done(n) | Progress::Broken(n, _) => n,
        };
        self.wire_len = self.wire_len.saturating_add(used as u64);
        p
    }

    pub fn gap(&mut self, len: u64, cx: &mut Cx) -> GapOutcome {
        self.wire_len = self.wire_len.saturating_add(len);
        match self.framing {
            Framing::UntilClose => {
                self.payload_gap(len, cx);
                GapOutcome::Inside
            }
            Framing::Length(left) => {
                let n = len.min(left);
                self.payload_gap(n, cx);
                self.framing = Framing::Length(left - n);
                match len.cmp(&left) {
                    std::cmp::Ordering::Less => GapOutcome::Inside,
                    std::cmp::Ordering::Equal => GapOutcome::EndedExactly,
                    std::cmp::Ordering::Greater => GapOutcome::Overran,
                }
            }
            Framing::Chunked(Chunk::Data(left)) if len < left => {
                self.payload_gap(len, cx);
                self.framing = Framing::Chunked(Chunk::Data(left - len));
                GapOutcome::Inside
            }
            Framing::Chunked(Chunk::Data(left)) => {
                self.payload_gap(left, cx);
                GapOutcome::Overran
            }
            Framing::Chunked(_) => {
                self.gapped = true;
                GapOutcome::Overran
            }
        }
    }

    /// Ends the body's objects. `complete`: the framing said the body ended here.
    pub fn finish(&mut self, complete: bool, cx: &mut Cx) -> Vec<ObjRef> {
        let decoded_ok = !self.decode_failed && self.layers.iter().all(Inflate::done);
        if complete && !self.decode_failed && !decoded_ok {
            push_once(&mut self.anomalies, "truncated-compressed-stream");
        }
        let ok = complete && decoded_ok && !self.gapped;
        // The bytes as sent first: they are the decoded objects' parent.
        let mut objs: Vec<ObjRef> =
            self.wire.as_mut().and_then(|w| w.finish(complete && !self.gapped, cx)).into_iter().collect();
        match &mut self.out {
            Out::Whole(s) => objs.extend(s.finish(ok, cx)),
            Out::Multipart(m) => {
                m.finish(ok, cx);
                for a in &m.anomalies {
                    push_once(&mut self.anomalies, a);
                }
                objs.append(&mut m.finished);
            }
        }
        objs
    }
}
