//! One transfer, as the control connection and its data connection both see it.
//!
//! The control side creates the [`Transfer`] when it announces the data connection (227/229,
//! PORT/EPRT) and fills in the command, user, type and replies; the data side ([`DataChannel`],
//! made by the flow layer when the announced connection opens) streams the bytes into a content
//! object. Either side may come first: see the module doc of `ftp` for the ordering rules.
//!
//! No-panic contract: data bytes are only copied and hashed; offsets use checked/saturating
//! arithmetic; the lock is taken poison-tolerant.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::json;

use super::{FtpAction, FtpEvent, FtpMode, FtpReply, FtpTransfer, HOLD_BEFORE_COMMAND};
use crate::analyze::stream::RawStream;
use crate::analyze::{Cx, StreamAnalyzer};
use crate::record::{Cin, Close, Dir, FlowDescr, ObjectId, ObjectMeta, Provenance};
use crate::timestamp::Timestamp;

pub type Shared = Arc<Mutex<Transfer>>;

/// Locks the shared state; a panic elsewhere never makes this one panic.
pub fn lock(t: &Shared) -> MutexGuard<'_, Transfer> {
    t.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The transfer command and what held at the time it was sent.
#[derive(Clone, Debug)]
pub struct Order {
    pub verb: String,
    pub path: Option<String>,
    pub user: Option<String>,
    /// The TYPE in force. `None` when the session never set one: RFC 959's default is ASCII, but
    /// many servers store such uploads as sent (vsftpd's `ascii_upload_enable=NO`) and a capture
    /// may begin after the TYPE command, so the bytes are kept as sent.
    pub type_code: Option<char>,
    pub offset: Option<u64>,
    pub cwd: Option<String>,
}

impl Order {
    /// Whether the file goes from client to server.
    pub fn upload(&self) -> bool {
        matches!(self.verb.as_str(), "STOR" | "STOU" | "APPE")
    }

    fn kind(&self) -> &'static str {
        match self.verb.as_str() {
            "LIST" | "NLST" | "MLSD" => "listing",
            _ => "file",
        }
    }
}

/// The data connection as the transfer knows it.
pub enum DataSide {
    /// Not (yet) opened.
    NotSeen,
    /// Claimed by the flow layer; its analyzer is running.
    Open,
    /// Closed before its command was known: the control side finishes it.
    Parked(Box<Writer>, bool),
    /// Finished.
    Done(Summary),
}

/// What the finished object was.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub object: Option<ObjectId>,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub complete: bool,
    pub wire_bytes: u64,
    pub ascii: bool,
    pub direction: Option<Dir>,
}

/// How a data connection was announced.
#[derive(Copy, Clone, Debug)]
pub struct Announce {
    pub mode: FtpMode,
    /// PASV, EPSV, PORT or EPRT.
    pub by: &'static str,
    pub addr: SocketAddr,
}

/// State shared by a control connection and one data connection.
pub struct Transfer {
    pub control_cin: Cin,
    pub control_flow: FlowDescr,
    /// How the data connection was announced; `None` for a transfer command that followed no
    /// announcement (its data connection cannot be found).
    pub announce: Option<Announce>,
    pub order: Option<Order>,
    pub declared_size: Option<u64>,
    pub preliminary: Option<FtpReply>,
    pub reply: Option<FtpReply>,
    pub control_closed: bool,
    pub data: DataSide,
    pub data_flow: Option<FlowDescr>,
    pub data_cin: Option<Cin>,
    pub reverse_bytes: u64,
    pub emitted: bool,
}

impl Transfer {
    pub fn new(control_cin: Cin, control_flow: FlowDescr, announce: Option<Announce>) -> Transfer {
        Transfer {
            control_cin,
            control_flow,
            announce,
            order: None,
            declared_size: None,
            preliminary: None,
            reply: None,
            control_closed: false,
            data: DataSide::NotSeen,
            data_flow: None,
            data_cin: None,
            reverse_bytes: 0,
            emitted: false,
        }
    }

    /// The direction of the file within the data connection when nothing was sent: passive
    /// connections are opened by the client, active ones by the server.
    fn expected_dir(&self) -> Dir {
        let upload = self.order.as_ref().is_none_or(Order::upload);
        match (self.announce.map_or(FtpMode::Passive, |a| a.mode), upload) {
            (FtpMode::Passive, true) | (FtpMode::Active, false) => Dir::Orig,
            _ => Dir::Resp,
        }
    }

    /// The object's metadata from what is known now.
    fn meta(&self, w: &Writer) -> ObjectMeta {
        let kind = self.order.as_ref().map_or("file", Order::kind);
        let mut m = ObjectMeta::new(kind, "ftp", &w.flow, w.dir, w.cin, w.first_seen);
        m.name = self.order.as_ref().and_then(|o| o.path.clone());
        m.declared_size = self.declared_size;
        let mut ctx = json!({
            "control": self.control_flow,
            "control_cin": self.control_cin,
        });
        if let Some(a) = self.announce {
            ctx["mode"] = json!(a.mode);
            ctx["announced_by"] = json!(a.by);
            ctx["announced"] = json!(a.addr);
        }
        match &self.order {
            Some(o) => {
                ctx["command"] = json!(o.verb);
                if let Some(t) = o.type_code {
                    ctx["type"] = json!(t.to_string());
                }
                ctx["ascii_crlf_to_lf"] = json!(w.ascii);
                if let Some(u) = &o.user {
                    ctx["user"] = json!(u);
                }
                if let Some(p) = &o.path {
                    ctx["path"] = json!(p);
                }
                if let Some(off) = o.offset {
                    ctx["offset"] = json!(off);
                }
                if let Some(c) = &o.cwd {
                    ctx["cwd"] = json!(c);
                }
            }
            None => ctx["command"] = serde_json::Value::Null,
        }
        m.context = ctx;
        m
    }

    /// Everything needed for the IRI is in: the final reply (or the control connection's end)
    /// and the data connection's end (or no data connection).
    fn ready(&self) -> bool {
        !self.emitted
            && (self.order.is_some() || matches!(self.data, DataSide::Done(_)))
            && (self.reply.is_some() || self.control_closed)
            && matches!(self.data, DataSide::NotSeen | DataSide::Done(_))
    }

    /// Emits the transfer IRI if everything is in.
    pub fn try_emit(&mut self, cx: &mut Cx) {
        if !self.ready() {
            return;
        }
        self.emitted = true;
        let summary = match &self.data {
            DataSide::Done(s) => s.clone(),
            _ => Summary::default(),
        };
        let mut ev = FtpEvent::new(FtpAction::Transfer);
        if let Some(o) = &self.order {
            ev.user = o.user.clone();
            ev.command = Some(o.verb.clone());
            ev.path = o.path.clone();
            ev.cwd = o.cwd.clone();
        }
        ev.success = self.reply.as_ref().map(|r| (200..300).contains(&r.code));
        ev.reply = self.reply.clone();
        ev.anomalies.reverse_data_bytes = self.reverse_bytes;
        ev.transfer = Some(Box::new(FtpTransfer {
            mode: self.announce.map(|a| a.mode),
            announced_by: self.announce.map(|a| a.by.to_string()),
            announced: self.announce.map(|a| a.addr),
            data_flow: self.data_flow.clone(),
            data_cin: self.data_cin,
            type_code: self.order.as_ref().and_then(|o| o.type_code).map(String::from),
            ascii_crlf_to_lf: summary.ascii,
            offset: self.order.as_ref().and_then(|o| o.offset),
            declared_size: self.declared_size,
            wire_bytes: summary.wire_bytes,
            size: summary.size,
            sha256: summary.sha256,
            object: summary.object,
            complete: summary.complete,
            direction: summary.direction,
            preliminary: self.preliminary.clone(),
        }));
        emit(cx, self.control_cin, ev);
    }

    /// Finishes a data connection that closed before its command was known.
    pub fn finish_parked(&mut self, cx: &mut Cx) {
        if !matches!(self.data, DataSide::Parked(..)) {
            return;
        }
        if let DataSide::Parked(w, seen_end) = std::mem::replace(&mut self.data, DataSide::NotSeen) {
            let s = w.finish(self, seen_end, cx);
            self.data = DataSide::Done(s);
        }
    }
}

/// Records an FTP IRI for the control connection `cin`.
pub fn emit(cx: &mut Cx, cin: Cin, ev: FtpEvent) {
    cx.emit_app(cin, "ftp", ev);
}

enum Held {
    Data(u64, Vec<u8>),
    Gap(u64, u64),
}

/// Writes one direction of a data connection into a content object: held until the command is
/// known (bounded), then streamed; ASCII mode undone on the way.
pub struct Writer {
    dir: Dir,
    flow: FlowDescr,
    cin: Cin,
    provenance: Arc<Provenance>,
    first_seen: Timestamp,
    held: Vec<Held>,
    held_bytes: usize,
    id: Option<ObjectId>,
    /// The object was opened before its command was known: metadata to complete at the end.
    partial_meta: bool,
    ascii: bool,
    /// A CR ended the last chunk (ASCII mode): it may start a CRLF.
    pending_cr: bool,
    /// Wire offset of the first byte (0 after a SYN).
    base: Option<u64>,
    /// Next object offset (differs from the wire offset in ASCII mode).
    out: u64,
    wire: u64,
    scratch: Vec<u8>,
}

impl Writer {
    fn new(dir: Dir, cx: &Cx) -> Writer {
        Writer {
            dir,
            flow: cx.flow.clone(),
            cin: cx.cin,
            provenance: cx.provenance.clone(),
            first_seen: cx.now,
            held: Vec::new(),
            held_bytes: 0,
            id: None,
            partial_meta: false,
            ascii: false,
            pending_cr: false,
            base: None,
            out: 0,
            wire: 0,
            scratch: Vec::new(),
        }
    }

    fn open(&mut self, t: &Transfer, cx: &mut Cx) -> ObjectId {
        if let Some(id) = self.id {
            return id;
        }
        self.ascii = t.order.as_ref().is_some_and(|o| o.type_code == Some('A'));
        self.partial_meta = t.order.is_none();
        let meta = t.meta(self);
        let id = cx.open_object_as(meta, &self.provenance);
        self.id = Some(id);
        for h in std::mem::take(&mut self.held) {
            match h {
                Held::Data(off, b) => self.write(id, off, &b, cx),
                Held::Gap(off, len) => self.hole(id, off, len, cx),
            }
        }
        self.held_bytes = 0;
        id
    }

    fn data(&mut self, t: &Transfer, offset: u64, bytes: &[u8], cx: &mut Cx) {
        self.base.get_or_insert(offset);
        self.wire = self.wire.saturating_add(bytes.len() as u64);
        if self.id.is_none() && t.order.is_none() && self.held_bytes.saturating_add(bytes.len()) <= HOLD_BEFORE_COMMAND
        {
            self.held_bytes += bytes.len();
            self.held.push(Held::Data(offset, bytes.to_vec()));
            return;
        }
        let id = self.open(t, cx);
        self.write(id, offset, bytes, cx);
    }

    fn gap(&mut self, t: &Transfer, offset: u64, len: u64, cx: &mut Cx) {
        self.base.get_or_insert(offset);
        if self.id.is_none() && t.order.is_none() {
            self.held.push(Held::Gap(offset, len));
            return;
        }
        let id = self.open(t, cx);
        self.hole(id, offset, len, cx);
    }

    fn write(&mut self, id: ObjectId, offset: u64, bytes: &[u8], cx: &mut Cx) {
        let base = self.base.unwrap_or(offset);
        if !self.ascii {
            let at = offset.saturating_sub(base);
            cx.object_data(id, at, bytes);
            self.out = self.out.max(at.saturating_add(bytes.len() as u64));
            return;
        }
        // ASCII: CRLF -> LF (RFC 959 3.1.1.1, NVT-ASCII end of line). A CR at a chunk's end is held
        // until the next byte says whether it starts a CRLF.
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        for &b in bytes {
            if self.pending_cr {
                self.pending_cr = false;
                if b != b'\n' {
                    out.push(b'\r');
                }
            }
            if b == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(b);
            }
        }
        cx.object_data(id, self.out, &out);
        self.out = self.out.saturating_add(out.len() as u64);
        self.scratch = out;
    }

    fn flush_cr(&mut self, id: ObjectId, cx: &mut Cx) {
        if std::mem::take(&mut self.pending_cr) {
            cx.object_data(id, self.out, b"\r");
            self.out = self.out.saturating_add(1);
        }
    }

    fn hole(&mut self, id: ObjectId, offset: u64, len: u64, cx: &mut Cx) {
        if self.ascii {
            // The converted length of missing bytes is unknown: the hole keeps the wire length.
            self.flush_cr(id, cx);
            cx.object_gap(id, self.out, len);
            self.out = self.out.saturating_add(len);
        } else {
            let at = offset.saturating_sub(self.base.unwrap_or(offset));
            cx.object_gap(id, at, len);
            self.out = self.out.max(at.saturating_add(len));
        }
    }

    /// Ends the object (opening it first if nothing forced that yet) and says what it was.
    pub fn finish(mut self: Box<Self>, t: &Transfer, seen_end: bool, cx: &mut Cx) -> Summary {
        let id = self.open(t, cx);
        self.flush_cr(id, cx);
        if self.partial_meta && t.order.is_some() {
            let mut meta = t.meta(&self);
            meta.context["opened_before_command"] = json!(true);
            if let Some(m) = cx.object_meta(id) {
                *m = meta;
            }
        }
        let ended = cx.object_end(id, seen_end);
        let mut s = Summary {
            object: Some(id),
            wire_bytes: self.wire,
            ascii: self.ascii,
            direction: Some(self.dir),
            ..Summary::default()
        };
        if let Some(e) = ended {
            s.sha256 = Some(e.sha256);
            s.size = Some(e.size);
            s.complete = e.complete;
        }
        s
    }
}

/// The analyzer of a data connection.
pub struct DataChannel {
    t: Shared,
    w: Option<Box<Writer>>,
}

impl DataChannel {
    /// The analyzer for the announced connection `flow`; a second connection to the same
    /// announcement (a NAT double announce, a hostile reuse) gets a raw stream instead.
    pub fn make(t: Shared, flow: &FlowDescr) -> Box<dyn StreamAnalyzer> {
        {
            let mut g = lock(&t);
            if !matches!(g.data, DataSide::NotSeen) || g.emitted {
                return Box::new(RawStream::new());
            }
            g.data = DataSide::Open;
            g.data_flow = Some(flow.clone());
        }
        Box::new(DataChannel { t, w: None })
    }

    fn writer(&mut self, dir: Dir, t: &mut Transfer, cx: &Cx) -> Option<&mut Writer> {
        t.data_cin.get_or_insert(cx.cin);
        let w = self.w.get_or_insert_with(|| Box::new(Writer::new(dir, cx)));
        (w.dir == dir).then_some(&mut **w)
    }
}

impl StreamAnalyzer for DataChannel {
    fn data(&mut self, dir: Dir, offset: u64, bytes: &[u8], cx: &mut Cx) {
        if bytes.is_empty() {
            return;
        }
        let t = self.t.clone();
        let mut t = lock(&t);
        match self.writer(dir, &mut t, cx) {
            Some(w) => w.data(&t, offset, bytes, cx),
            None => t.reverse_bytes = t.reverse_bytes.saturating_add(bytes.len() as u64),
        }
    }

    fn gap(&mut self, dir: Dir, offset: u64, len: u64, cx: &mut Cx) {
        let t = self.t.clone();
        let mut t = lock(&t);
        if let Some(w) = self.writer(dir, &mut t, cx) {
            w.gap(&t, offset, len, cx);
        }
    }

    fn close(&mut self, how: Close, cx: &mut Cx) {
        let t = self.t.clone();
        let mut t = lock(&t);
        t.data_cin.get_or_insert(cx.cin);
        // An empty transfer is still a file (an empty upload): open it in the expected direction.
        let w = self.w.take().unwrap_or_else(|| Box::new(Writer::new(t.expected_dir(), cx)));
        let seen_end = how == Close::Fin;
        if t.order.is_some() || t.control_closed {
            let s = w.finish(&t, seen_end, cx);
            t.data = DataSide::Done(s);
        } else {
            t.data = DataSide::Parked(w, seen_end);
        }
        t.try_emit(cx);
    }
}
