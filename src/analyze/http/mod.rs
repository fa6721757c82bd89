//! HTTP/1.x analyzer: every request and response on any port (found by [`probe`], never by port
//! number) becomes one [`HttpEvent`] IRI; every body becomes a content object.
//!
//! - Bodies: Content-Length, chunked, until-close (responses); `Expect: 100-continue`; keep-alive
//!   and pipelining (requests queue up, responses pair with them in order).
//! - Object bytes are the body after transfer decoding *and* content decoding (gzip, x-gzip,
//!   deflate, stacked; other codings are stored as sent and named in the object's context).
//! - multipart/form-data: each part is its own `file` object named by its `filename` (else the
//!   last path segment of the URI). The whole body is **not** stored as an object, so parts have
//!   no `parent`; the part number and form field are in their `context`.
//! - Response bodies (downloads) are objects too (direction `resp`), named by
//!   `Content-Disposition` filename, else the URI's last path segment.
//! - OpenStack image service data uploads (`PUT /v2/images/<id>/file`, `/stage`): the object is
//!   named after the image id and carries `context.image_id`; the event carries `image_id`.
//! - S3 (`x-amz-*` headers, AWS signatures, or `uploadId`/`partNumber` queries): `context.s3`
//!   with bucket and key. Multipart upload parts (`?partNumber=N&uploadId=X`) can travel on
//!   several connections, in parallel and out of order, so assembling them would need buffering
//!   beyond the file layer's in-order contract: **each part is its own object** with
//!   `context.s3.{upload_id, part_number}`, and the event of the CompleteMultipartUpload request
//!   lists the parts in the order the client gave (part number, ETag = MD5 of the part for
//!   unencrypted uploads, and sha256/size of the parts seen on this connection).
//!
//! - **SDP.** A body of type `application/sdp` (a WHIP-style offer and its answer, a camera's
//!   `stream.sdp`) announces RTP: its media are listed in the IRI (`sdp_media`) and expected as
//!   UDP flows with their payload formats, as SIP's and RTSP's are ([`super::rtp`]).
//!
//! Bounds (Suricata-like): header block 64 KiB, 100 headers, 64 pending requests. Past one of
//! them an anomaly is recorded and the analyzer degrades: the rest of each direction becomes a
//! raw `stream` object. After a gap, the message in progress is marked (object gap, incomplete)
//! and parsing resumes only at a line that looks like a request line (client) or a status line
//! (server), never inside a body.
//!
//! No-panic contract: wire bytes reach only the checked parsers in [`parse`] and [`body`];
//! buffers are bounded as above.

pub mod body;
pub mod parse;

use std::collections::VecDeque;

use serde_json::json;

use self::body::{Body, Framing, GapOutcome, Inflate, Multipart, ObjRef, ObjTemplate, Out, Progress, Slot};
use self::parse::{push_once, Head, HeadError, Shape};
use super::detect::Verdict;
use super::{Cx, StreamAnalyzer};
use crate::record::{Close, Dir, ObjectId, ObjectMeta};

/// Largest header block (start line included).
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 100;
/// Requests waiting for their response.
pub const MAX_PENDING: usize = 64;
/// Carry kept while looking for a resync point.
const MAX_RESYNC_CARRY: usize = 8 * 1024;
/// S3 parts remembered per connection (for the CompleteMultipartUpload listing).
const MAX_S3_PARTS: usize = 10_000;
const MAX_ANOMALIES: usize = 32;

/// S3 facts of a request.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct S3Facts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part_number: Option<u32>,
}

/// One part of a completed S3 multipart upload, in the order the client listed it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct S3Part {
    pub part_number: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Set when the part's upload was seen on this connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A CompleteMultipartUpload: the parts that make the object.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct S3Complete {
    pub upload_id: String,
    pub parts: Vec<S3Part>,
}

/// What HTTP adds to the IRI: one request and its response.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HttpEvent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request target, credential-like query values masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Body bytes after transfer decoding (before content decoding).
    pub request_body_len: u64,
    pub response_body_len: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_objects: Vec<ObjRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_objects: Vec<ObjRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Facts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_complete: Option<S3Complete>,
    /// The RTP media an SDP body announced (`video 198.51.100.10:5004 H264/90000`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sdp_media: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<String>,
}

/// How long the RTP an SDP body announces is expected.
const SDP_EXPECT_NS: i64 = 300_000_000_000;

fn is_sdp_type(content_type: &str) -> bool {
    content_type.trim_start().to_ascii_lowercase().starts_with("application/sdp")
}

/// A message whose body is an SDP: kept (up to [`body::MAX_CAPTURE`]) to be read at its end.
fn is_sdp(head: &Head) -> bool {
    head.get("content-type").is_some_and(is_sdp_type)
}

impl HttpEvent {
    fn anomaly(&mut self, a: &str) {
        if self.anomalies.len() < MAX_ANOMALIES && !self.anomalies.iter().any(|x| x == a) {
            self.anomalies.push(a.to_string());
        }
    }
}

/// Claims a direction that starts with a request line of a known method (client) or an HTTP/1
/// status line (server: a connection caught after its request).
pub fn probe(_dir: Dir, first: &[u8]) -> Verdict {
    match (parse::request_line_shape(first), parse::status_line_shape(first)) {
        (Shape::Yes, _) | (_, Shape::Yes) => Verdict::Match,
        (Shape::No, Shape::No) => Verdict::NoMatch,
        _ => Verdict::NeedMore,
    }
}

pub fn analyzer() -> Box<dyn StreamAnalyzer> {
    Box::new(Http::new())
}

struct Tx {
    seq: u64,
    ev: HttpEvent,
    head: bool,
    connect: bool,
    expect_continue: bool,
    req_done: bool,
    resp_started: bool,
    resp_done: bool,
}

enum State {
    /// Waiting for (or reading) a start line and headers in `buf`.
    Head,
    Body(Box<Body>, u64),
    /// Lost after a gap or a parse error: looking for a message start.
    Lost,
    Raw,
}

struct Side {
    state: State,
    buf: Vec<u8>,
    /// Header-end search resumes here.
    scanned: usize,
    /// Next stream offset expected.
    next: u64,
    /// While lost: the next byte starts a line.
    line_start: bool,
    raw: Option<ObjectId>,
    raw_off: u64,
}

impl Side {
    fn new() -> Side {
        Side { state: State::Head, buf: Vec::new(), scanned: 0, next: 0, line_start: false, raw: None, raw_off: 0 }
    }
}

/// The HTTP/1.x connection state (see the module doc).
pub struct Http {
    sides: [Side; 2],
    client: Dir,
    roles_known: bool,
    txs: VecDeque<Tx>,
    next_seq: u64,
    degraded: bool,
    degrade_reason: Option<&'static str>,
    s3_parts: Vec<(String, u32, ObjRef)>,
    /// Anomalies with no transaction to carry them yet (given to the next event).
    loose: Vec<&'static str>,
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Http {
    pub fn new() -> Http {
        Http {
            sides: [Side::new(), Side::new()],
            client: Dir::Orig,
            roles_known: false,
            txs: VecDeque::new(),
            next_seq: 0,
            degraded: false,
            degrade_reason: None,
            s3_parts: Vec::new(),
            loose: Vec::new(),
        }
    }

    fn is_client(&self, d: Dir) -> bool {
        d == self.client
    }

    fn tx_mut(&mut self, seq: u64) -> Option<&mut Tx> {
        self.txs.iter_mut().find(|t| t.seq == seq)
    }

    fn emit(&mut self, mut ev: HttpEvent, cx: &mut Cx) {
        for a in self.loose.drain(..) {
            ev.anomaly(a);
        }
        cx.emit_app(cx.cin, "http", ev);
    }

    /// Emits finished transactions, oldest first (pipelined responses come in request order).
    fn drain_done(&mut self, cx: &mut Cx) {
        while self.txs.front().is_some_and(|t| t.req_done && t.resp_done) {
            if let Some(t) = self.txs.pop_front() {
                self.emit(t.ev, cx);
            }
        }
    }

    fn flush_all(&mut self, anomaly: Option<&'static str>, cx: &mut Cx) {
        while let Some(mut t) = self.txs.pop_front() {
            if let Some(a) = anomaly {
                t.ev.anomaly(a);
            }
            if !t.resp_started && !self.degraded {
                t.ev.anomaly("no-response");
            }
            self.emit(t.ev, cx);
        }
        if !self.loose.is_empty() {
            let ev = HttpEvent::default();
            self.emit(ev, cx);
        }
    }

    /// Anomaly on the message a side is working on, else kept for the next event.
    fn side_anomaly(&mut self, d: Dir, a: &'static str) {
        let seq = match &self.sides[d.index()].state {
            State::Body(_, seq) => Some(*seq),
            _ => None,
        };
        let seq = seq.or_else(|| if self.is_client(d) { self.txs.back().map(|t| t.seq) } else { None });
        match seq.and_then(|s| self.tx_mut(s)) {
            Some(t) => t.ev.anomaly(a),
            None => push_once(&mut self.loose, a),
        }
    }

    // ---- raw fallback ------------------------------------------------------------------------

    fn raw_data(&mut self, d: Dir, b: &[u8], cx: &mut Cx) {
        if b.is_empty() {
            return;
        }
        let reason = self.degrade_reason.unwrap_or("degraded");
        let side = &mut self.sides[d.index()];
        let id = *side.raw.get_or_insert_with(|| {
            let mut meta = ObjectMeta::new("stream", "http", cx.flow, d, cx.cin, cx.now);
            // Everything of this direction from the degradation point on (buffered headers first).
            meta.context = json!({ "degraded": reason });
            cx.open_object(meta)
        });
        cx.object_data(id, side.raw_off, b);
        side.raw_off = side.raw_off.saturating_add(b.len() as u64);
    }

    /// Stops parsing: messages in progress end incomplete, pending events go out, and the rest of
    /// both directions (from what is buffered now) becomes raw stream objects.
    fn degrade(&mut self, reason: &'static str, anomaly: bool, cx: &mut Cx) {
        if self.degraded {
            return;
        }
        for d in [Dir::Orig, Dir::Resp] {
            if let State::Body(..) = self.sides[d.index()].state {
                self.end_body(d, false, cx);
            }
        }
        self.degraded = true;
        self.degrade_reason = Some(reason);
        self.flush_all(anomaly.then_some(reason), cx);
        if anomaly {
            // The raw objects say why in their context; the last event already does too.
            self.loose.clear();
        }
        for d in [Dir::Orig, Dir::Resp] {
            let carry = std::mem::take(&mut self.sides[d.index()].buf);
            self.sides[d.index()].state = State::Raw;
            self.raw_data(d, &carry, cx);
        }
    }

    // ---- message starts ----------------------------------------------------------------------

    fn on_request(&mut self, head: &Head, cx: &mut Cx) -> Result<(), &'static str> {
        let rl = parse::parse_request_line(&head.start_line).ok_or("bad-request-line")?;
        if self.txs.len() >= MAX_PENDING {
            return Err("too-many-pending-requests");
        }
        let method = String::from_utf8_lossy(rl.method).into_owned();
        let target = String::from_utf8_lossy(rl.target).into_owned();
        let host = head.get("host").map(str::to_string);
        let mut ev = HttpEvent {
            method: Some(method.clone()),
            uri: Some(parse::mask_target(&target)),
            version: Some(format!("1.{}", rl.minor)),
            host: host.clone(),
            user_agent: head.get("user-agent").map(str::to_string),
            request_content_type: head.get("content-type").map(str::to_string),
            ..HttpEvent::default()
        };
        for a in &head.anomalies {
            ev.anomaly(a);
        }
        let seq = self.next_seq;
        self.next_seq += 1;

        // OpenStack image service and S3 facts.
        let image_id = parse::glance_image_id(&method, &target);
        let upload_id = parse::query_param(&target, "uploadId");
        let part_number = parse::query_param(&target, "partNumber").and_then(|p| p.parse::<u32>().ok());
        let auth = head.get("authorization").unwrap_or("");
        let is_s3 = head.headers.iter().any(|h| h.name.starts_with("x-amz-"))
            || auth.starts_with("AWS4-HMAC-SHA256")
            || auth.starts_with("AWS ")
            || upload_id.is_some();
        let s3 = is_s3.then(|| {
            let t = parse::s3_target(host.as_deref(), &target);
            S3Facts { bucket: t.bucket, key: t.key, upload_id: upload_id.clone(), part_number }
        });
        ev.image_id = image_id.clone();
        ev.s3 = s3.clone();
        let s3_complete = method == "POST" && part_number.is_none() && upload_id.is_some();

        let mut context = json!({ "method": method, "uri": ev.uri, });
        if let Some(o) = context.as_object_mut() {
            if let Some(h) = &host {
                o.insert("host".into(), h.clone().into());
            }
            if let Some(t) = head.get("content-type") {
                o.insert("content_type".into(), t.into());
            }
            if let Some(e) = head.get("content-encoding") {
                o.insert("content_encoding".into(), e.into());
            }
            if let Some(id) = &image_id {
                o.insert("image_id".into(), id.clone().into());
            }
            if let Some(s) = &s3 {
                o.insert("s3".into(), serde_json::to_value(s).unwrap_or_default());
            }
        }
        let name = image_id.clone().or_else(|| parse::last_segment(&target));

        let framing = self.request_framing(head, &mut ev)?;
        let expect_continue = head.list("expect").iter().any(|e| e == "100-continue");
        let client = self.client;
        let mut tx = Tx {
            seq,
            ev,
            head: method == "HEAD",
            connect: method == "CONNECT",
            expect_continue,
            req_done: false,
            resp_started: false,
            resp_done: false,
        };
        match framing {
            None => tx.req_done = true,
            Some(f) => {
                let declared = match f {
                    Framing::Length(n) => Some(n),
                    _ => None,
                };
                let tmpl = ObjTemplate { dir: client, name, declared_size: declared, context, parent: None };
                let body = self.make_body(head, f, tmpl, true, s3_complete || is_sdp(head), &mut tx.ev);
                self.sides[client.index()].state = State::Body(Box::new(body), seq);
            }
        }
        self.txs.push_back(tx);
        let _ = cx;
        Ok(())
    }

    /// `None`: no body. Requests without length have none (RFC 9112 §6.3).
    fn request_framing(&self, head: &Head, ev: &mut HttpEvent) -> Result<Option<Framing>, &'static str> {
        let te = head.list("transfer-encoding");
        let cl = parse::content_length(head);
        if !te.is_empty() {
            if cl.as_ref().is_ok_and(|c| c.is_some()) || cl.is_err() {
                ev.anomaly("transfer-encoding-and-content-length");
            }
            if te.last().map(String::as_str) == Some("chunked") {
                return Ok(Some(Framing::Chunked(body::Chunk::Size)));
            }
            return Err("bad-transfer-encoding");
        }
        match cl {
            Ok(Some(0)) | Ok(None) => Ok(None),
            Ok(Some(n)) => Ok(Some(Framing::Length(n))),
            Err(_) => Err("bad-content-length"),
        }
    }

    fn make_body(
        &self,
        head: &Head,
        framing: Framing,
        tmpl: ObjTemplate,
        request: bool,
        capture: bool,
        ev: &mut HttpEvent,
    ) -> Body {
        let mut layers = Vec::new();
        let codings = head.list("content-encoding");
        let known = codings.iter().all(|c| matches!(c.as_str(), "gzip" | "x-gzip" | "deflate" | "identity"));
        if known && codings.len() <= 4 {
            // Listed in the order applied: undo from the last.
            for c in codings.iter().rev() {
                match c.as_str() {
                    "gzip" | "x-gzip" => layers.push(Inflate::gzip()),
                    "deflate" => layers.push(Inflate::deflate()),
                    _ => {}
                }
            }
        } else {
            ev.anomaly("unsupported-content-encoding");
        }
        let ct = head.get("content-type").unwrap_or("");
        let boundary = (request && ct.trim_start().to_ascii_lowercase().starts_with("multipart/"))
            .then(|| parse::header_param(ct, "boundary"))
            .flatten()
            .filter(|b| !b.is_empty() && b.len() <= 200);
        // The bytes as sent, content coding kept: said in its context.
        let wire = (!layers.is_empty()).then(|| {
            let mut context = tmpl.context.clone();
            if let Some(c) = context.as_object_mut() {
                c.insert("content_encoding".into(), serde_json::json!(codings));
                c.insert("as_sent".into(), serde_json::json!(true));
            }
            ObjTemplate { context, ..tmpl.clone() }
        });
        let out = match boundary {
            Some(b) => Out::Multipart(Box::new(Multipart::new(&b, ObjTemplate { declared_size: None, ..tmpl }))),
            // The declared size (Content-Length) is the size as sent.
            None if wire.is_some() => Out::Whole(Slot::new(ObjTemplate { declared_size: None, ..tmpl })),
            None => Out::Whole(Slot::new(tmpl)),
        };
        Body::new(framing, layers, out, wire, capture)
    }

    fn on_response(&mut self, head: &Head, cx: &mut Cx) -> Result<(), &'static str> {
        let (minor, status) = parse::parse_status_line(&head.start_line).ok_or("bad-status-line")?;
        if (100..200).contains(&status) {
            if status == 101 {
                self.degrade("protocol-upgrade", false, cx);
            }
            return Ok(());
        }
        let idx = match self.txs.iter().position(|t| !t.resp_started) {
            Some(i) => i,
            None => {
                if self.txs.len() >= MAX_PENDING {
                    return Err("too-many-pending-requests");
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                let mut ev = HttpEvent { version: Some(format!("1.{minor}")), ..HttpEvent::default() };
                ev.anomaly("response-without-request");
                self.txs.push_back(Tx {
                    seq,
                    ev,
                    head: false,
                    connect: false,
                    expect_continue: false,
                    req_done: true,
                    resp_started: false,
                    resp_done: false,
                });
                self.txs.len() - 1
            }
        };
        let server = self.client.reverse();
        let Some(tx) = self.txs.get_mut(idx) else { return Err("internal") };
        tx.resp_started = true;
        tx.ev.status = Some(status);
        tx.ev.response_content_type = head.get("content-type").map(str::to_string);
        for a in &head.anomalies {
            tx.ev.anomaly(a);
        }
        let seq = tx.seq;
        if tx.connect && (200..300).contains(&status) {
            tx.resp_done = true;
            self.degrade("connect-tunnel", false, cx);
            return Ok(());
        }
        let te = head.list("transfer-encoding");
        let cl = parse::content_length(head);
        let framing = if tx.head || status == 204 || status == 304 {
            None
        } else if !te.is_empty() {
            if cl.as_ref().is_ok_and(|c| c.is_some()) {
                tx.ev.anomaly("transfer-encoding-and-content-length");
            }
            if te.last().map(String::as_str) == Some("chunked") {
                Some(Framing::Chunked(body::Chunk::Size))
            } else {
                Some(Framing::UntilClose)
            }
        } else {
            match cl {
                Ok(Some(0)) => None,
                Ok(Some(n)) => Some(Framing::Length(n)),
                Ok(None) => Some(Framing::UntilClose),
                Err(_) => {
                    tx.ev.anomaly("bad-content-length");
                    Some(Framing::UntilClose)
                }
            }
        };
        let Some(framing) = framing else {
            tx.resp_done = true;
            self.drain_done(cx);
            return Ok(());
        };
        let uri_name = tx.ev.uri.as_deref().and_then(parse::last_segment);
        let name = head
            .get("content-disposition")
            .and_then(parse::disposition_filename)
            .filter(|n| !n.is_empty())
            .or(uri_name);
        let mut context = json!({ "status": status });
        if let Some(o) = context.as_object_mut() {
            if let Some(m) = &tx.ev.method {
                o.insert("method".into(), m.clone().into());
            }
            if let Some(u) = &tx.ev.uri {
                o.insert("uri".into(), u.clone().into());
            }
            if let Some(h) = &tx.ev.host {
                o.insert("host".into(), h.clone().into());
            }
            if let Some(t) = head.get("content-type") {
                o.insert("content_type".into(), t.into());
            }
            if let Some(e) = head.get("content-encoding") {
                o.insert("content_encoding".into(), e.into());
            }
        }
        let declared = match framing {
            Framing::Length(n) => Some(n),
            _ => None,
        };
        let tmpl = ObjTemplate { dir: server, name, declared_size: declared, context, parent: None };
        let mut ev = std::mem::take(&mut tx.ev);
        let body = self.make_body(head, framing, tmpl, false, is_sdp(head), &mut ev);
        if let Some(tx) = self.txs.get_mut(idx) {
            tx.ev = ev;
        }
        self.sides[server.index()].state = State::Body(Box::new(body), seq);
        Ok(())
    }

    /// The body of direction `d` ended (`complete`: as its framing said).
    fn end_body(&mut self, d: Dir, complete: bool, cx: &mut Cx) {
        let State::Body(mut body, seq) = std::mem::replace(&mut self.sides[d.index()].state, State::Head) else {
            return;
        };
        let objs = body.finish(complete, cx);
        let client = self.is_client(d);
        if !complete {
            push_once(&mut body.anomalies, "body-incomplete");
        }
        // An SDP announces RTP: expect it.
        let sdp_media = body
            .capture
            .as_deref()
            .filter(|_| complete && !body.gapped)
            .filter(|_| {
                self.txs.iter().find(|t| t.seq == seq).is_some_and(|t| {
                    let ct = if client { &t.ev.request_content_type } else { &t.ev.response_content_type };
                    ct.as_deref().is_some_and(is_sdp_type)
                })
            })
            .and_then(|b| crate::media::sdp::parse_bytes(b).ok())
            .map(|s| super::rtp::expect_sdp_media(&s, SDP_EXPECT_NS, cx))
            .unwrap_or_default();
        // S3: remember parts, list them at CompleteMultipartUpload.
        let mut complete_listing = None;
        if let Some(t) = self.txs.iter().find(|t| t.seq == seq) {
            if let Some(s3) = t.ev.s3.as_ref().filter(|_| client) {
                if let (Some(up), Some(n)) = (&s3.upload_id, s3.part_number) {
                    if let Some(o) = objs.first() {
                        if self.s3_parts.len() < MAX_S3_PARTS {
                            self.s3_parts.push((up.clone(), n, o.clone()));
                        }
                    }
                } else if let (Some(up), Some(xml)) = (&s3.upload_id, body.capture.as_ref()) {
                    let parts = parse::s3_complete_parts(xml, MAX_S3_PARTS)
                        .into_iter()
                        .map(|(n, etag)| {
                            let seen = self.s3_parts.iter().rev().find(|(u, p, _)| u == up && *p == n).map(|x| &x.2);
                            S3Part {
                                part_number: n,
                                etag,
                                object: seen.map(|o| o.id),
                                sha256: seen.map(|o| o.sha256.clone()),
                                md5: seen.map(|o| o.md5.clone()),
                                size: seen.map(|o| o.size),
                            }
                        })
                        .collect();
                    complete_listing = Some(S3Complete { upload_id: up.clone(), parts });
                }
            }
        }
        if let Some(t) = self.tx_mut(seq) {
            for a in &body.anomalies {
                t.ev.anomaly(a);
            }
            for m in sdp_media {
                if t.ev.sdp_media.len() < 16 && !t.ev.sdp_media.contains(&m) {
                    t.ev.sdp_media.push(m);
                }
            }
            if client {
                t.ev.request_body_len = body.transfer_len;
                t.ev.request_objects.extend(objs);
                t.req_done = true;
                if complete_listing.is_some() {
                    t.ev.s3_complete = complete_listing;
                }
            } else {
                t.ev.response_body_len = body.transfer_len;
                t.ev.response_objects.extend(objs);
                t.resp_done = true;
            }
        }
        self.drain_done(cx);
    }

    // ---- per-direction byte handling ---------------------------------------------------------

    fn fix_roles(&mut self, d: Dir, b: &[u8]) {
        if self.roles_known || b.is_empty() {
            return;
        }
        self.roles_known = true;
        self.client = if parse::request_line_shape(b) != Shape::No {
            d
        } else if parse::status_line_shape(b) != Shape::No {
            d.reverse()
        } else {
            Dir::Orig
        };
    }

    fn feed(&mut self, d: Dir, mut input: &[u8], cx: &mut Cx) {
        let i = d.index();
        while !input.is_empty() {
            match &mut self.sides[i].state {
                State::Raw => {
                    self.raw_data(d, input, cx);
                    return;
                }
                State::Body(body, seq) => {
                    let (seq, fresh) = (*seq, body.wire_len == 0);
                    // curl & co. skip the body when a final response came before `100 Continue`.
                    if fresh && self.is_client(d) && parse::request_line_shape(input) == Shape::Yes {
                        let skip = self.txs.iter().find(|t| t.seq == seq).is_some_and(|t| {
                            t.expect_continue && t.resp_started && t.ev.status.is_some_and(|s| s >= 200)
                        });
                        if skip {
                            self.side_anomaly(d, "expect-continue-body-not-sent");
                            self.end_body(d, true, cx);
                            continue;
                        }
                    }
                    let State::Body(body, _) = &mut self.sides[i].state else { return };
                    match body.data(input, cx) {
                        Progress::More => return,
                        Progress::Done(n) => {
                            input = input.get(n..).unwrap_or(&[]);
                            self.end_body(d, true, cx);
                        }
                        Progress::Broken(n, why) => {
                            input = input.get(n..).unwrap_or(&[]);
                            self.side_anomaly(d, why);
                            self.end_body(d, false, cx);
                            self.lose(d, false);
                        }
                    }
                }
                State::Lost => {
                    input = self.resync(d, input);
                }
                State::Head => {
                    input = self.head_bytes(d, input, cx);
                }
            }
        }
    }

    fn lose(&mut self, d: Dir, line_start: bool) {
        let s = &mut self.sides[d.index()];
        s.state = State::Lost;
        s.buf.clear();
        s.scanned = 0;
        s.line_start = line_start;
    }

    /// Looks for a message start; returns the input left once found (state is then `Head` with
    /// the start in `buf`), or nothing.
    fn resync<'a>(&mut self, d: Dir, input: &'a [u8]) -> &'a [u8] {
        let client = self.is_client(d);
        let shape = |b: &[u8]| if client { parse::request_line_shape(b) } else { parse::status_line_shape(b) };
        let s = &mut self.sides[d.index()];
        // Candidates: the carry (a line start that could not be judged yet), or the line starts
        // in the input.
        if !s.buf.is_empty() {
            let carry = s.buf.len();
            let take = input.len().min(MAX_RESYNC_CARRY.saturating_sub(carry).max(1));
            s.buf.extend_from_slice(&input[..take]);
            match shape(&s.buf) {
                Shape::Yes => {
                    // Header parsing takes the input from here, after the carry.
                    s.buf.truncate(carry);
                    s.state = State::Head;
                    s.scanned = 0;
                    return input;
                }
                Shape::Maybe if take == input.len() && s.buf.len() < MAX_RESYNC_CARRY => return &[],
                _ => {
                    // Not a start, and the carry holds no line end: scan the input itself.
                    s.buf.clear();
                    s.line_start = false;
                    return input;
                }
            }
        }
        let mut p = if s.line_start { Some(0) } else { None };
        let mut from = 0usize;
        loop {
            let cand = match p.take() {
                Some(c) => Some(c),
                None => input.get(from..).and_then(|r| r.iter().position(|&c| c == b'\n')).map(|lf| from + lf + 1),
            };
            let Some(c) = cand else {
                s.line_start = false;
                return &[];
            };
            from = c;
            if c >= input.len() {
                s.line_start = true;
                return &[];
            }
            let rest = &input[c..];
            match shape(rest) {
                Shape::Yes => {
                    s.state = State::Head;
                    s.scanned = 0;
                    return rest;
                }
                Shape::Maybe => {
                    let lf_later = rest.contains(&b'\n');
                    if !lf_later && rest.len() < MAX_RESYNC_CARRY {
                        s.buf.extend_from_slice(rest);
                        return &[];
                    }
                }
                Shape::No => {}
            }
        }
    }

    /// Header bytes: returns the input not yet used.
    fn head_bytes<'a>(&mut self, d: Dir, mut input: &'a [u8], cx: &mut Cx) -> &'a [u8] {
        let s = &mut self.sides[d.index()];
        if s.buf.is_empty() {
            // Tolerate blank lines between messages (RFC 9112 §2.2).
            let skip = input.iter().position(|&c| c != b'\r' && c != b'\n').unwrap_or(input.len());
            input = &input[skip..];
            if input.is_empty() {
                return input;
            }
        }
        let old = s.buf.len();
        let take = input.len().min((MAX_HEADER_BLOCK + 1).saturating_sub(old));
        s.buf.extend_from_slice(&input[..take]);
        let from = s.scanned.saturating_sub(3);
        match parse::header_block_end(&s.buf, from) {
            None => {
                s.scanned = s.buf.len();
                if s.buf.len() > MAX_HEADER_BLOCK {
                    self.side_anomaly(d, "header-block-too-large");
                    self.degrade("header-block-too-large", true, cx);
                    // The buffered part went to the raw object; the rest follows.
                    return &input[take..];
                }
                &input[take..]
            }
            Some(end) => {
                let used = end.saturating_sub(old).min(take);
                let block = std::mem::take(&mut s.buf);
                s.scanned = 0;
                let head = match parse::parse_head(&block[..end.min(block.len())], MAX_HEADERS) {
                    Ok(h) => h,
                    Err(HeadError::TooManyHeaders) => {
                        self.sides[d.index()].buf = block[..end.min(block.len())].to_vec();
                        self.side_anomaly(d, "too-many-headers");
                        self.degrade("too-many-headers", true, cx);
                        return &input[used..];
                    }
                    Err(HeadError::Empty) => return &input[used..],
                };
                let r = if self.is_client(d) { self.on_request(&head, cx) } else { self.on_response(&head, cx) };
                if let Err(why) = r {
                    if why == "too-many-pending-requests" {
                        self.sides[d.index()].buf = block[..end.min(block.len())].to_vec();
                        self.side_anomaly(d, why);
                        self.degrade(why, true, cx);
                    } else {
                        self.side_anomaly(d, why);
                        self.lose(d, false);
                    }
                }
                &input[used..]
            }
        }
    }
}

impl StreamAnalyzer for Http {
    fn data(&mut self, dir: Dir, offset: u64, bytes: &[u8], cx: &mut Cx) {
        let next = self.sides[dir.index()].next;
        if offset > next {
            self.gap(dir, next, offset - next, cx);
        }
        let skip = usize::try_from(self.sides[dir.index()].next.saturating_sub(offset)).unwrap_or(usize::MAX);
        let Some(bytes) = bytes.get(skip..) else { return };
        if bytes.is_empty() {
            return;
        }
        self.sides[dir.index()].next = self.sides[dir.index()].next.saturating_add(bytes.len() as u64);
        self.fix_roles(dir, bytes);
        self.feed(dir, bytes, cx);
    }

    fn gap(&mut self, dir: Dir, offset: u64, len: u64, cx: &mut Cx) {
        let i = dir.index();
        let end = offset.saturating_add(len);
        if end <= self.sides[i].next {
            return;
        }
        let len = end - self.sides[i].next.max(offset);
        self.sides[i].next = end;
        if !self.roles_known {
            // The first thing seen is a hole: no way to tell roles; assume the usual.
            self.roles_known = true;
        }
        match &mut self.sides[i].state {
            State::Raw => {
                let s = &mut self.sides[i];
                if let Some(id) = s.raw {
                    cx.object_gap(id, s.raw_off, len);
                    s.raw_off = s.raw_off.saturating_add(len);
                }
            }
            State::Body(body, _) => match body.gap(len, cx) {
                GapOutcome::Inside => self.side_anomaly(dir, "gap"),
                GapOutcome::EndedExactly => {
                    self.side_anomaly(dir, "gap");
                    self.end_body(dir, false, cx);
                }
                GapOutcome::Overran => {
                    self.side_anomaly(dir, "gap");
                    self.end_body(dir, false, cx);
                    self.lose(dir, true);
                }
            },
            State::Head => {
                if !self.sides[i].buf.is_empty() {
                    self.side_anomaly(dir, "gap-in-headers");
                } else {
                    push_once(&mut self.loose, "gap");
                }
                self.lose(dir, true);
            }
            State::Lost => self.lose(dir, true),
        }
    }

    fn close(&mut self, how: Close, cx: &mut Cx) {
        for d in [Dir::Orig, Dir::Resp] {
            let until_close =
                matches!(&self.sides[d.index()].state, State::Body(b, _) if b.framing == Framing::UntilClose);
            if let State::Body(..) = self.sides[d.index()].state {
                let complete = until_close && how == Close::Fin;
                if !complete {
                    self.side_anomaly(d, "connection-closed-mid-body");
                }
                self.end_body(d, complete, cx);
            }
        }
        self.flush_all(None, cx);
        for s in &mut self.sides {
            if let Some(id) = s.raw.take() {
                cx.object_end(id, how == Close::Fin);
            }
        }
    }
}

#[cfg(test)]
mod tests;
