//! SMTP analyzer (RFC 5321): mail transactions, each message as a `mail` object with its MIME
//! attachments as `file` objects and its text (plain and HTML parts, transfer encoding undone)
//! as `text` objects, and IRI for every message, AUTH and STARTTLS.
//!
//! Covers PIPELINING (commands and replies matched in order through a bounded queue), 8BITMIME
//! (bytes kept as they are), BDAT/CHUNKING (RFC 3030), AUTH (RFC 4954: the user name is kept, the
//! secret never leaves this module), STARTTLS (RFC 3207: what follows is handed to the TLS
//! analyzer: metadata only), RSET, and any number of messages per connection.
//!
//! The message bytes are the RFC 5322 message as submitted: dot-unstuffed for DATA, the chunks
//! concatenated for BDAT. They stream to the file layer and through the streaming MIME decoder
//! ([`crate::content::mime`]) as they arrive: no message is ever buffered.
//!
//! Bounds: a command or reply line of [`MAX_LINE`] bytes (longer lines are dropped and counted;
//! body lines are never buffered), [`MAX_RCPTS`] recipients per message, [`MAX_PENDING`]
//! commands awaiting their reply, [`MAX_TXS`] transactions awaiting their verdict, and the MIME
//! decoder's own bounds (header block 256 KiB, depth 20).
//!
//! No panic on any input: wire bytes are only read after a length check.

pub mod parse;

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use self::parse::{auth_response, parse_command, parse_reply_line, AuthFacts, Command};
use super::detect::Verdict;
use super::{Cx, StreamAnalyzer};
use crate::content::mime::{Encoding, MessageHeaders, MimeHandler, MimeParser, PartInfo};
use crate::record::{de, Close, Dir, ObjectId, ObjectMeta};

/// Longest command or reply line kept (RFC 5321 allows 512; extensions make them longer).
pub const MAX_LINE: usize = 4096;
/// Recipients kept per transaction; more are counted, not stored.
pub const MAX_RCPTS: usize = 1000;
/// Commands awaiting their reply.
pub const MAX_PENDING: usize = 1024;
/// Transactions kept while they wait for their replies.
pub const MAX_TXS: usize = 16;
/// Bytes of reply text kept.
const MAX_REPLY_TEXT: usize = 1024;
/// EHLO keywords kept.
const MAX_EXTENSIONS: usize = 64;

/// A server reply: code and text (multi-line replies joined by `\n`, bounded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// A recipient and the server's answer to its RCPT TO.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub addr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
}

/// A MIME part stored as its own object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub object: ObjectId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub content_type: String,
    pub size: u64,
}

/// What the event is about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SmtpWhat {
    /// A mail transaction: envelope, message, verdict.
    #[default]
    Mail,
    /// An AUTH exchange.
    Auth,
    /// A STARTTLS request and its answer.
    StartTls,
    /// Anomalies of the session (counted, reported at its end).
    Anomaly,
}

/// What SMTP adds to the IRI.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SmtpEvent {
    pub what: SmtpWhat,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helo: Option<String>,
    /// MAIL FROM (envelope sender; empty for the null reverse-path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail_from_reply: Option<Reply>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rcpt_to: Vec<Recipient>,
    /// Recipients beyond [`MAX_RCPTS`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rcpt_dropped: u64,
    /// `data` or `bdat`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::option_static_str")]
    pub transfer: Option<de::StaticStr>,
    /// The `mail` object holding the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The message's end was seen (final dot, BDAT LAST) with nothing missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
    #[serde(flatten)]
    pub headers: MessageHeaders,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// The text parts (plain, HTML) stored as `text` objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub texts: Vec<Attachment>,
    /// The server's verdict: on the message, the AUTH or the STARTTLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `***` when a secret was sent (it is never recorded).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::option_static_str")]
    pub secret: Option<de::StaticStr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub anomalies: BTreeMap<String, u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Claims a connection on the client's first command: `EHLO`/`HELO`/`LHLO`, or a mid-stream
/// `MAIL FROM:`/`RCPT TO:`. A server's `220` banner alone cannot tell SMTP from FTP.
pub fn probe(dir: Dir, first: &[u8]) -> Verdict {
    match dir {
        Dir::Resp => {
            // A complete 220 banner naming (E)SMTP as a word is SMTP's convention (RFC 5321
            // 4.3.1); FTP banners do not say it. It lets a long banner or a one-sided capture
            // be recognised before the client speaks.
            if let Some(end) = first.iter().position(|&b| b == b'\n') {
                let line = first.get(..end).unwrap_or(&[]);
                if line.starts_with(b"220")
                    && line
                        .split(|&b| b == b' ' || b == b'-' || b == b'\r')
                        .any(|w| w.eq_ignore_ascii_case(b"ESMTP") || w.eq_ignore_ascii_case(b"SMTP"))
                {
                    return Verdict::Match;
                }
            }
            let digits = first.iter().take(3).all(u8::is_ascii_digit);
            match first.get(3) {
                _ if !digits => Verdict::NoMatch,
                None => Verdict::NeedMore,
                Some(b' ' | b'-' | b'\r') => Verdict::NeedMore,
                Some(_) => Verdict::NoMatch,
            }
        }
        Dir::Orig => {
            const STARTS: [&[u8]; 5] = [b"EHLO ", b"HELO ", b"LHLO ", b"MAIL FROM:", b"RCPT TO:"];
            let line_end = first.iter().position(|&b| b == b'\n');
            let line = first.get(..line_end.unwrap_or(first.len())).unwrap_or(&[]);
            for s in STARTS {
                let n = s.len().min(line.len());
                let (Some(have), Some(want)) = (line.get(..n), s.get(..n)) else { continue };
                if have.eq_ignore_ascii_case(want) {
                    if n == s.len() {
                        return Verdict::Match;
                    }
                    if line_end.is_none() {
                        return Verdict::NeedMore;
                    }
                }
            }
            // `EHLO` alone on its line (no domain) is still SMTP.
            let bare = line.strip_suffix(b"\r").unwrap_or(line);
            if line_end.is_some() && (bare.eq_ignore_ascii_case(b"EHLO") || bare.eq_ignore_ascii_case(b"HELO")) {
                return Verdict::Match;
            }
            Verdict::NoMatch
        }
    }
}

pub fn analyzer() -> Box<dyn StreamAnalyzer> {
    Box::new(Smtp::new())
}

// ---------------------------------------------------------------------------------------------

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Pending {
    Banner,
    Helo,
    Mail(u64),
    Rcpt(u64, Option<usize>),
    Data(u64),
    DataEnd(u64),
    Bdat(u64, bool),
    Auth,
    StartTls,
    Other,
}

impl Pending {
    fn tx(self) -> Option<u64> {
        match self {
            Pending::Mail(t) | Pending::Rcpt(t, _) | Pending::Data(t) | Pending::DataEnd(t) | Pending::Bdat(t, _) => {
                Some(t)
            }
            _ => None,
        }
    }
}

/// Where a DATA body stands with respect to dot-stuffing.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Dot {
    /// At the start of a line.
    Bol,
    Mid,
    /// A `.` at the start of a line.
    Period,
    /// `.\r` at the start of a line.
    PeriodCr,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Client {
    Command,
    /// Dropping the rest of a line (too long, or after a gap).
    SkipLine,
    Data {
        tx: u64,
        dot: Dot,
    },
    Bdat {
        tx: u64,
        left: u64,
        last: bool,
    },
    /// Lines are AUTH responses until the final reply.
    Auth,
    /// After STARTTLS: the TLS analyzer has the bytes.
    Tls,
}

/// MIME part objects of one message.
#[derive(Default)]
struct Parts {
    parent: Option<ObjectId>,
    cur: Option<(ObjectId, u64)>,
    attachments: Vec<Attachment>,
    texts: Vec<Attachment>,
    headers: Option<MessageHeaders>,
}

struct Msg {
    transfer: &'static str,
    object: Option<ObjectId>,
    size: u64,
    declared: u64,
    mime: MimeParser,
    parts: Parts,
    ended: bool,
    gaps: bool,
}

struct Tx {
    seq: u64,
    mail_from: Option<String>,
    mail_reply: Option<Reply>,
    rcpts: Vec<Recipient>,
    rcpt_dropped: u64,
    msg: Option<Msg>,
    verdict: Option<Reply>,
    /// No more commands will refer to it.
    closed: bool,
    /// Pending replies that refer to it.
    refs: u32,
}

#[derive(Default)]
struct AuthState {
    mechanism: String,
    initial: bool,
    responses: u32,
    facts: AuthFacts,
}

/// The SMTP analyzer of one connection.
pub struct Smtp {
    client: Client,
    cline: Vec<u8>,
    sline: Vec<u8>,
    sskip: bool,
    /// The reply being read (multi-line): code and text.
    reply: Option<(u16, String)>,
    pending: VecDeque<Pending>,
    txs: VecDeque<Tx>,
    cur: Option<u64>,
    next_seq: u64,
    helo: Option<String>,
    extensions: Vec<String>,
    auth: Option<AuthState>,
    auth_user: Option<String>,
    tls: Option<Box<dyn StreamAnalyzer>>,
    anomalies: BTreeMap<String, u64>,
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp::new()
    }
}

struct PartSink<'a, 'c> {
    cx: &'a mut Cx<'c>,
    parts: &'a mut Parts,
}

impl MimeHandler for PartSink<'_, '_> {
    fn message_headers(&mut self, h: &MessageHeaders) {
        self.parts.headers = Some(h.clone());
        if let Some(meta) = self.parts.parent.and_then(|p| self.cx.object_meta(p)) {
            if let (Value::Object(ctx), Value::Object(hv)) = (&mut meta.context, json!(h)) {
                ctx.extend(hv);
            }
        }
    }

    fn part_begin(&mut self, part: &PartInfo) -> bool {
        let text = part.is_text_body();
        if !part.is_file() && !text {
            return false;
        }
        let cx = &mut *self.cx;
        let kind = if text { "text" } else { "file" };
        let mut meta = ObjectMeta::new(kind, "smtp", cx.flow, Dir::Orig, cx.cin, cx.now);
        meta.name = part.filename.clone();
        meta.parent = self.parts.parent;
        meta.context = json!({
            "content_type": part.content_type,
            "disposition": part.disposition,
            "encoding": match part.encoding {
                Encoding::Identity => "identity",
                Encoding::Base64 => "base64",
                Encoding::QuotedPrintable => "quoted-printable",
            },
            "part": part.index,
            "depth": part.depth,
        });
        let id = cx.open_object(meta);
        self.parts.cur = Some((id, 0));
        let list = if text { &mut self.parts.texts } else { &mut self.parts.attachments };
        list.push(Attachment {
            object: id,
            name: part.filename.clone(),
            content_type: part.content_type.clone(),
            size: 0,
        });
        true
    }

    fn part_data(&mut self, data: &[u8]) {
        if let Some((id, off)) = self.parts.cur.as_mut() {
            self.cx.object_data(*id, *off, data);
            *off += data.len() as u64;
        }
    }

    fn part_end(&mut self, complete: bool) {
        if let Some((id, size)) = self.parts.cur.take() {
            self.cx.object_end(id, complete);
            let all = self.parts.attachments.iter_mut().chain(self.parts.texts.iter_mut());
            if let Some(a) = all.filter(|a| a.object == id).last() {
                a.size = size;
            }
        }
    }
}

fn emit(cx: &mut Cx, ev: SmtpEvent) {
    cx.emit_app(cx.cin, "smtp", ev);
}

fn reply_json(r: &Option<Reply>) -> Value {
    match r {
        Some(r) => json!({"code": r.code, "text": r.text}),
        None => Value::Null,
    }
}

impl Smtp {
    pub fn new() -> Smtp {
        let mut pending = VecDeque::new();
        pending.push_back(Pending::Banner);
        Smtp {
            client: Client::Command,
            cline: Vec::new(),
            sline: Vec::new(),
            sskip: false,
            reply: None,
            pending,
            txs: VecDeque::new(),
            cur: None,
            next_seq: 0,
            helo: None,
            extensions: Vec::new(),
            auth: None,
            auth_user: None,
            tls: None,
            anomalies: BTreeMap::new(),
        }
    }

    fn anomaly(&mut self, what: &str) {
        *self.anomalies.entry(what.to_string()).or_default() += 1;
    }

    fn tx_mut(&mut self, seq: u64) -> Option<&mut Tx> {
        self.txs.iter_mut().find(|t| t.seq == seq)
    }

    fn new_tx(&mut self, cx: &mut Cx) -> u64 {
        if let Some(c) = self.cur.take() {
            if let Some(t) = self.tx_mut(c) {
                t.closed = true;
            }
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        self.txs.push_back(Tx {
            seq,
            mail_from: None,
            mail_reply: None,
            rcpts: Vec::new(),
            rcpt_dropped: 0,
            msg: None,
            verdict: None,
            closed: false,
            refs: 0,
        });
        self.cur = Some(seq);
        while self.txs.len() > MAX_TXS {
            self.anomaly("transactions_without_reply");
            if let Some(old) = self.txs.front().map(|t| t.seq) {
                self.finish_tx(old, cx);
            }
        }
        self.reap(cx);
        seq
    }

    fn current_tx(&mut self, cx: &mut Cx) -> u64 {
        match self.cur {
            Some(c) if self.txs.iter().any(|t| t.seq == c) => c,
            _ => self.new_tx(cx),
        }
    }

    fn close_current(&mut self, cx: &mut Cx) {
        if let Some(c) = self.cur.take() {
            if let Some(t) = self.tx_mut(c) {
                t.closed = true;
            }
        }
        self.reap(cx);
    }

    fn push_pending(&mut self, p: Pending) {
        if self.pending.len() >= MAX_PENDING {
            self.anomaly("too_many_pending_commands");
            return;
        }
        if let Some(t) = p.tx().and_then(|s| self.tx_mut(s)) {
            t.refs += 1;
        }
        self.pending.push_back(p);
    }

    /// Finalises closed transactions that no reply refers to any more.
    fn reap(&mut self, cx: &mut Cx) {
        while let Some(seq) = self.txs.iter().find(|t| t.closed && t.refs == 0).map(|t| t.seq) {
            self.finish_tx(seq, cx);
        }
    }

    fn ensure_msg(&mut self, seq: u64, transfer: &'static str) {
        if let Some(t) = self.tx_mut(seq) {
            if t.msg.is_none() {
                t.msg = Some(Msg {
                    transfer,
                    object: None,
                    size: 0,
                    declared: 0,
                    mime: MimeParser::new(),
                    parts: Parts::default(),
                    ended: false,
                    gaps: false,
                });
            }
        }
    }

    fn envelope_json(&self, t: &Tx, transfer: &str) -> Value {
        json!({
            "transfer": transfer,
            "helo": self.helo,
            "auth_user": self.auth_user,
            "mail_from": t.mail_from,
            "rcpt_to": t.rcpts.iter().map(|r| r.addr.clone()).collect::<Vec<_>>(),
        })
    }

    /// Opens the message object at its first byte (or at its end, for an empty message).
    fn open_msg(&mut self, seq: u64, cx: &mut Cx) {
        let Some(t) = self.txs.iter().find(|t| t.seq == seq) else { return };
        let Some(m) = t.msg.as_ref() else { return };
        if m.object.is_some() {
            return;
        }
        let mut meta = ObjectMeta::new("mail", "smtp", cx.flow, Dir::Orig, cx.cin, cx.now);
        meta.context = self.envelope_json(t, m.transfer);
        let id = cx.open_object(meta);
        if let Some(m) = self.tx_mut(seq).and_then(|t| t.msg.as_mut()) {
            m.object = Some(id);
            m.parts.parent = Some(id);
        }
    }

    fn msg_bytes(&mut self, seq: u64, bytes: &[u8], cx: &mut Cx) {
        if bytes.is_empty() {
            return;
        }
        self.open_msg(seq, cx);
        let Some(m) = self.tx_mut(seq).and_then(|t| t.msg.as_mut()) else { return };
        if let Some(id) = m.object {
            cx.object_data(id, m.size, bytes);
        }
        m.size += bytes.len() as u64;
        m.mime.feed(bytes, &mut PartSink { cx, parts: &mut m.parts });
    }

    fn msg_gap(&mut self, seq: u64, len: u64, cx: &mut Cx) {
        self.open_msg(seq, cx);
        let Some(m) = self.tx_mut(seq).and_then(|t| t.msg.as_mut()) else { return };
        if let Some(id) = m.object {
            cx.object_gap(id, m.size, len);
        }
        m.size = m.size.saturating_add(len);
        m.gaps = true;
        m.mime.gap(&mut PartSink { cx, parts: &mut m.parts });
    }

    /// The message's last byte came (final dot, last chunk): attachments end now.
    fn msg_end(&mut self, seq: u64, cx: &mut Cx) {
        self.open_msg(seq, cx);
        if let Some(m) = self.tx_mut(seq).and_then(|t| t.msg.as_mut()) {
            if !m.ended {
                m.ended = true;
                m.mime.finish(&mut PartSink { cx, parts: &mut m.parts });
            }
        }
        self.close_current(cx);
    }

    /// Ends the transaction's objects and reports it.
    fn finish_tx(&mut self, seq: u64, cx: &mut Cx) {
        let Some(pos) = self.txs.iter().position(|t| t.seq == seq) else { return };
        let Some(mut t) = self.txs.remove(pos) else { return };
        if self.cur == Some(seq) {
            self.cur = None;
        }
        let mut ev = SmtpEvent {
            what: SmtpWhat::Mail,
            helo: self.helo.clone(),
            mail_from: t.mail_from.clone(),
            mail_from_reply: t.mail_reply.clone(),
            rcpt_dropped: t.rcpt_dropped,
            reply: t.verdict.clone(),
            user: self.auth_user.clone(),
            ..SmtpEvent::default()
        };
        if let Some(mut m) = t.msg.take() {
            if !m.ended {
                m.mime.finish(&mut PartSink { cx, parts: &mut m.parts });
            }
            for (k, v) in
                serde_json::to_value(&m.mime.anomalies).ok().and_then(|v| v.as_object().cloned()).unwrap_or_default()
            {
                if let Some(n) = v.as_u64().filter(|n| *n > 0) {
                    ev.anomalies.insert(format!("mime_{k}"), n);
                }
            }
            if let Some(id) = m.object {
                let transfer = m.transfer;
                let env = self.envelope_json(&t, transfer);
                if let Some(meta) = cx.object_meta(id) {
                    if let (Value::Object(ctx), Value::Object(e)) = (&mut meta.context, env) {
                        ctx.extend(e);
                        ctx.insert(
                            "rcpt_replies".into(),
                            t.rcpts.iter().map(|r| reply_json(&r.reply)).collect::<Vec<_>>().into(),
                        );
                        ctx.insert("mail_from_reply".into(), reply_json(&t.mail_reply));
                        ctx.insert("verdict".into(), reply_json(&t.verdict));
                        if t.rcpt_dropped > 0 {
                            ctx.insert("rcpt_dropped".into(), t.rcpt_dropped.into());
                        }
                    }
                    if transfer == "bdat" {
                        meta.declared_size = Some(m.declared);
                    }
                }
                cx.object_end(id, m.ended);
            }
            ev.transfer = Some(m.transfer);
            ev.object = m.object;
            ev.size = Some(m.size);
            ev.complete = Some(m.ended && !m.gaps);
            ev.headers = m.parts.headers.take().unwrap_or_default();
            ev.attachments = m.parts.attachments;
            ev.texts = m.parts.texts;
        }
        ev.rcpt_to = t.rcpts;
        if ev.mail_from.is_some() || ev.object.is_some() || !ev.rcpt_to.is_empty() {
            emit(cx, ev);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Client direction

    fn client_data(&mut self, offset: u64, bytes: &[u8], cx: &mut Cx) {
        let mut i = 0usize;
        while i < bytes.len() {
            let rest = bytes.get(i..).unwrap_or(&[]);
            match self.client {
                Client::Tls => {
                    if let Some(t) = self.tls.as_mut() {
                        t.data(Dir::Orig, offset + i as u64, rest, cx);
                    }
                    return;
                }
                Client::Data { tx, dot } => {
                    let (used, end) = self.dot_body(tx, dot, rest, cx);
                    i += used;
                    if end {
                        self.client = Client::Command;
                        self.push_pending(Pending::DataEnd(tx));
                        self.msg_end(tx, cx);
                    }
                }
                Client::Bdat { tx, left, last } => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    self.msg_bytes(tx, rest.get(..n).unwrap_or(&[]), cx);
                    i += n;
                    let left = left - n as u64;
                    self.client = Client::Bdat { tx, left, last };
                    if left == 0 {
                        self.chunk_done(tx, last, cx);
                    }
                }
                Client::Command | Client::Auth | Client::SkipLine => {
                    let lf = rest.iter().position(|&b| b == b'\n');
                    let piece = rest.get(..lf.unwrap_or(rest.len())).unwrap_or(&[]);
                    i += piece.len() + usize::from(lf.is_some());
                    if self.client == Client::SkipLine {
                        if lf.is_some() {
                            self.client = if self.auth.is_some() { Client::Auth } else { Client::Command };
                        }
                        continue;
                    }
                    if self.cline.len() + piece.len() > MAX_LINE {
                        self.anomaly("command_line_too_long");
                        self.cline.clear();
                        // The server answers it (500 line too long): keep replies in step.
                        if self.client == Client::Command {
                            self.push_pending(Pending::Other);
                        }
                        if lf.is_none() {
                            self.client = Client::SkipLine;
                        }
                        continue;
                    }
                    self.cline.extend_from_slice(piece);
                    if lf.is_some() {
                        let mut line = std::mem::take(&mut self.cline);
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        if self.client == Client::Auth && self.auth_missed(&line, cx) {
                            self.client = Client::Command;
                        }
                        if self.client == Client::Auth {
                            self.auth_line(&line);
                        } else {
                            self.command(&line, cx);
                        }
                        line.clear();
                        self.cline = line;
                    }
                }
            }
        }
    }

    fn chunk_done(&mut self, tx: u64, last: bool, cx: &mut Cx) {
        self.client = Client::Command;
        if last {
            self.msg_end(tx, cx);
        }
    }

    /// Unstuffs DATA bytes; returns the bytes consumed and whether the final dot line ended.
    fn dot_body(&mut self, tx: u64, mut dot: Dot, bytes: &[u8], cx: &mut Cx) -> (usize, bool) {
        let mut out_start = 0usize; // start of the run of bytes to pass on as they are
        let mut i = 0usize;
        let mut end = false;
        while i < bytes.len() {
            let c = bytes.get(i).copied().unwrap_or(0);
            match dot {
                Dot::Mid => {
                    match bytes.get(i..).and_then(|r| r.iter().position(|&b| b == b'\n')) {
                        Some(p) => {
                            i += p + 1;
                            dot = Dot::Bol;
                        }
                        None => i = bytes.len(),
                    }
                    continue;
                }
                Dot::Bol => {
                    if c == b'.' {
                        self.msg_bytes(tx, bytes.get(out_start..i).unwrap_or(&[]), cx);
                        dot = Dot::Period;
                        out_start = i + 1;
                    } else {
                        dot = if c == b'\n' { Dot::Bol } else { Dot::Mid };
                    }
                }
                Dot::Period => match c {
                    b'\r' => {
                        dot = Dot::PeriodCr;
                        out_start = i + 1;
                    }
                    b'\n' => {
                        end = true;
                        i += 1;
                        out_start = i;
                        break;
                    }
                    // The leading dot was stuffing: the byte after it starts the run.
                    _ => dot = Dot::Mid,
                },
                Dot::PeriodCr => {
                    if c == b'\n' {
                        end = true;
                        i += 1;
                        out_start = i;
                        break;
                    }
                    // `.\r` not followed by LF: the dot goes, the CR stays.
                    self.msg_bytes(tx, b"\r", cx);
                    out_start = i;
                    dot = if c == b'\n' { Dot::Bol } else { Dot::Mid };
                }
            }
            i += 1;
        }
        if !end {
            let upto =
                if dot == Dot::PeriodCr || dot == Dot::Period { out_start.min(bytes.len()) } else { bytes.len() };
            self.msg_bytes(tx, bytes.get(out_start..upto).unwrap_or(&[]), cx);
            self.client = Client::Data { tx, dot };
            return (bytes.len(), false);
        }
        (i, true)
    }

    fn command(&mut self, line: &[u8], cx: &mut Cx) {
        match parse_command(line) {
            Command::Helo { name, .. } => {
                self.helo = Some(name.chars().take(255).collect());
                self.close_current(cx);
                self.push_pending(Pending::Helo);
            }
            Command::Mail { path, .. } => {
                let seq = self.new_tx(cx);
                if let Some(t) = self.tx_mut(seq) {
                    t.mail_from = Some(path.chars().take(MAX_LINE).collect());
                }
                self.push_pending(Pending::Mail(seq));
            }
            Command::Rcpt { path } => {
                let seq = self.current_tx(cx);
                let mut idx = None;
                let mut dropped = false;
                if let Some(t) = self.tx_mut(seq) {
                    if t.rcpts.len() < MAX_RCPTS {
                        idx = Some(t.rcpts.len());
                        t.rcpts.push(Recipient { addr: path, reply: None });
                    } else {
                        t.rcpt_dropped += 1;
                        dropped = true;
                    }
                }
                if dropped {
                    self.anomaly("too_many_recipients");
                }
                self.push_pending(Pending::Rcpt(seq, idx));
            }
            Command::Data => {
                let seq = self.current_tx(cx);
                self.ensure_msg(seq, "data");
                self.push_pending(Pending::Data(seq));
                // The body follows once 354 comes; a refusal takes us back to commands.
                self.client = Client::Data { tx: seq, dot: Dot::Bol };
            }
            Command::Bdat { size, last } => {
                let seq = self.current_tx(cx);
                self.ensure_msg(seq, "bdat");
                if let Some(m) = self.tx_mut(seq).and_then(|t| t.msg.as_mut()) {
                    m.declared = m.declared.saturating_add(size);
                }
                self.push_pending(Pending::Bdat(seq, last));
                if size == 0 {
                    self.chunk_done(seq, last, cx);
                } else {
                    self.client = Client::Bdat { tx: seq, left: size, last };
                }
            }
            Command::BdatInvalid => {
                self.anomaly("bdat_invalid");
                self.push_pending(Pending::Other);
            }
            Command::Rset => {
                self.close_current(cx);
                self.push_pending(Pending::Other);
            }
            Command::Auth { mechanism, initial } => {
                let mut st = AuthState { mechanism, initial: initial.is_some(), ..AuthState::default() };
                if let Some(r) = initial {
                    auth_response(&st.mechanism, r, 0, true, &mut st.facts);
                }
                self.auth = Some(st);
                self.client = Client::Auth;
                self.push_pending(Pending::Auth);
            }
            Command::StartTls => self.push_pending(Pending::StartTls),
            Command::Quit => {
                self.close_current(cx);
                self.push_pending(Pending::Other);
            }
            Command::Other(v) => {
                const KNOWN: [&str; 8] = ["NOOP", "VRFY", "EXPN", "HELP", "TURN", "ETRN", "XCLIENT", "XFORWARD"];
                if !KNOWN.iter().any(|k| k.eq_ignore_ascii_case(v)) {
                    self.anomaly("unknown_command");
                }
                self.push_pending(Pending::Other);
            }
        }
    }

    /// A command line where an AUTH response was expected means the final reply to AUTH was
    /// missed (lost, or hidden by an overlap): the exchange is reported without a verdict.
    /// Responses are base64, so a command verb (with its blank or colon) cannot be one.
    fn auth_missed(&mut self, line: &[u8], cx: &mut Cx) -> bool {
        let is_command = matches!(
            parse_command(line),
            Command::Helo { .. }
                | Command::Mail { .. }
                | Command::Rcpt { .. }
                | Command::Data
                | Command::Bdat { .. }
                | Command::Rset
                | Command::Quit
                | Command::StartTls
        );
        if !is_command {
            return false;
        }
        self.anomaly("auth_reply_missing");
        if let Some(pos) = self.pending.iter().position(|p| *p == Pending::Auth) {
            self.pending.remove(pos);
        }
        if let Some(st) = self.auth.take() {
            emit(cx, self.auth_event(st, None));
        }
        true
    }

    fn auth_event(&self, st: AuthState, reply: Option<Reply>) -> SmtpEvent {
        let mut ev = SmtpEvent {
            what: SmtpWhat::Auth,
            helo: self.helo.clone(),
            mechanism: Some(st.mechanism),
            user: st.facts.user,
            secret: st.facts.secret_sent.then_some("***"),
            success: reply.as_ref().map(|r| (200..300).contains(&r.code)),
            reply,
            ..SmtpEvent::default()
        };
        if st.facts.cancelled {
            ev.anomalies.insert("auth_cancelled".into(), 1);
        }
        ev
    }

    fn auth_line(&mut self, line: &[u8]) {
        let Some(st) = self.auth.as_mut() else { return };
        st.responses += 1;
        let text = String::from_utf8_lossy(line);
        auth_response(&st.mechanism, &text, st.responses, st.initial, &mut st.facts);
    }

    // -----------------------------------------------------------------------------------------
    // Server direction

    fn server_data(&mut self, offset: u64, bytes: &[u8], cx: &mut Cx) {
        let mut i = 0usize;
        while i < bytes.len() {
            let rest = bytes.get(i..).unwrap_or(&[]);
            if let Some(t) = self.tls.as_mut() {
                t.data(Dir::Resp, offset + i as u64, rest, cx);
                return;
            }
            let lf = rest.iter().position(|&b| b == b'\n');
            let piece = rest.get(..lf.unwrap_or(rest.len())).unwrap_or(&[]);
            i += piece.len() + usize::from(lf.is_some());
            if !self.sskip {
                let room = MAX_LINE.saturating_sub(self.sline.len());
                if piece.len() > room {
                    self.anomaly("reply_line_too_long");
                }
                self.sline.extend_from_slice(piece.get(..room.min(piece.len())).unwrap_or(&[]));
            }
            if lf.is_some() {
                if self.sskip {
                    self.sskip = false;
                    self.sline.clear();
                    continue;
                }
                let mut line = std::mem::take(&mut self.sline);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.reply_line(&line, cx);
                line.clear();
                self.sline = line;
            }
        }
    }

    fn reply_line(&mut self, line: &[u8], cx: &mut Cx) {
        let Some((code, last, text)) = parse_reply_line(line) else {
            self.anomaly("invalid_reply");
            return;
        };
        let text = String::from_utf8_lossy(text);
        if matches!(self.pending.front(), Some(Pending::Helo)) && self.extensions.len() < MAX_EXTENSIONS {
            if let Some(kw) = text.split_ascii_whitespace().next().filter(|_| self.reply.is_some()) {
                self.extensions.push(kw.to_ascii_uppercase());
            }
        }
        let (c, t) = self.reply.get_or_insert_with(|| (code, String::new()));
        if *c != code {
            *c = code;
        }
        if t.len() < MAX_REPLY_TEXT {
            if !t.is_empty() {
                t.push('\n');
            }
            t.extend(text.chars().take(MAX_REPLY_TEXT));
        }
        if last {
            if let Some((code, text)) = self.reply.take() {
                self.reply_done(Reply { code, text }, cx);
            }
        }
    }

    fn reply_done(&mut self, r: Reply, cx: &mut Cx) {
        // A greeting is 220 (or a 421/554 refusal); anything else means the capture missed it
        // and this reply answers the first command.
        if self.pending.front() == Some(&Pending::Banner) && !matches!(r.code, 220 | 421 | 554) {
            self.pending.pop_front();
        }
        let Some(&front) = self.pending.front() else {
            self.anomaly("reply_without_command");
            return;
        };
        // Intermediate replies leave the command waiting for its final reply.
        if (front == Pending::Auth && r.code == 334) || (matches!(front, Pending::Data(_)) && r.code == 354) {
            if let Pending::Data(_) = front {
                self.pending.pop_front();
                self.release(front, cx);
            }
            return;
        }
        self.pending.pop_front();
        match front {
            Pending::Banner | Pending::Other => {}
            Pending::Helo => {
                if r.code == 250 {
                    self.extensions.retain(|e| !e.is_empty());
                }
            }
            Pending::Mail(seq) => {
                if let Some(t) = self.tx_mut(seq) {
                    t.mail_reply = Some(r);
                }
            }
            Pending::Rcpt(seq, idx) => {
                if let Some(rc) = idx.and_then(|i| self.tx_mut(seq).and_then(|t| t.rcpts.get_mut(i))) {
                    rc.reply = Some(r);
                }
            }
            Pending::Data(seq) => {
                // DATA refused: no body follows.
                if let Client::Data { tx, .. } = self.client {
                    if tx == seq {
                        self.client = Client::Command;
                    }
                }
                if let Some(t) = self.tx_mut(seq) {
                    if t.msg.as_ref().is_some_and(|m| m.object.is_none()) {
                        t.msg = None;
                    }
                    t.verdict = Some(r);
                }
                if self.cur == Some(seq) {
                    self.close_current(cx);
                }
            }
            Pending::DataEnd(seq) => {
                if let Some(t) = self.tx_mut(seq) {
                    t.verdict = Some(r);
                }
            }
            Pending::Bdat(seq, last) => {
                if let Some(t) = self.tx_mut(seq) {
                    let failed_before = t.verdict.as_ref().is_some_and(|v| !v.positive());
                    if !failed_before && (last || !r.positive()) {
                        t.verdict = Some(r);
                    }
                }
            }
            Pending::Auth => {
                if self.client == Client::Auth {
                    self.client = Client::Command;
                }
                let st = self.auth.take().unwrap_or_default();
                let success = (200..300).contains(&r.code);
                if success {
                    self.auth_user = st.facts.user.clone();
                }
                let ev = self.auth_event(st, Some(r));
                emit(cx, ev);
            }
            Pending::StartTls => {
                let accepted = r.code == 220;
                emit(
                    cx,
                    SmtpEvent {
                        what: SmtpWhat::StartTls,
                        helo: self.helo.clone(),
                        success: Some(accepted),
                        reply: Some(r),
                        ..SmtpEvent::default()
                    },
                );
                if accepted {
                    // RFC 3207: the session starts afresh inside TLS; what was open is over.
                    self.close_current(cx);
                    self.client = Client::Tls;
                    self.tls = Some(super::tls::tls_after_starttls());
                    let left: Vec<Pending> = self.pending.drain(..).collect();
                    for p in left {
                        self.release(p, cx);
                    }
                }
            }
        }
        self.release(front, cx);
    }

    /// A pending entry is gone: its transaction may be finished.
    fn release(&mut self, p: Pending, cx: &mut Cx) {
        if let Some(t) = p.tx().and_then(|s| self.tx_mut(s)) {
            t.refs = t.refs.saturating_sub(1);
        }
        self.reap(cx);
    }
}

impl StreamAnalyzer for Smtp {
    fn data(&mut self, dir: Dir, offset: u64, bytes: &[u8], cx: &mut Cx) {
        match dir {
            Dir::Orig => self.client_data(offset, bytes, cx),
            Dir::Resp => self.server_data(offset, bytes, cx),
        }
    }

    fn gap(&mut self, dir: Dir, offset: u64, len: u64, cx: &mut Cx) {
        if let Some(t) = self.tls.as_mut() {
            if dir == Dir::Resp || self.client == Client::Tls {
                return t.gap(dir, offset, len, cx);
            }
        }
        self.anomaly(if dir == Dir::Orig { "client_gap" } else { "server_gap" });
        match dir {
            Dir::Resp => {
                // Replies were lost: which command they answered is unknown from here on.
                self.sline.clear();
                self.sskip = true;
                self.reply = None;
                let left: Vec<Pending> = self.pending.drain(..).collect();
                for p in left {
                    self.release(p, cx);
                }
            }
            Dir::Orig => match self.client {
                Client::Data { tx, .. } => {
                    self.msg_gap(tx, len, cx);
                    // Where the next line starts is unknown: wait for a line feed.
                    self.client = Client::Data { tx, dot: Dot::Mid };
                }
                Client::Bdat { tx, left, last } => {
                    self.msg_gap(tx, len.min(left), cx);
                    if len < left {
                        self.client = Client::Bdat { tx, left: left - len, last };
                    } else {
                        self.chunk_done(tx, last, cx);
                        if len > left {
                            self.client = Client::SkipLine;
                        }
                    }
                }
                Client::Tls => {}
                Client::Command | Client::Auth | Client::SkipLine => {
                    self.cline.clear();
                    self.client = Client::SkipLine;
                }
            },
        }
    }

    fn close(&mut self, how: Close, cx: &mut Cx) {
        if let Some(t) = self.tls.as_mut() {
            t.close(how, cx);
        }
        let left: Vec<Pending> = self.pending.drain(..).collect();
        for p in left {
            if let Some(t) = p.tx().and_then(|s| self.tx_mut(s)) {
                t.refs = t.refs.saturating_sub(1);
            }
        }
        if let Some(st) = self.auth.take() {
            let ev = self.auth_event(st, None);
            emit(cx, ev);
        }
        while let Some(seq) = self.txs.front().map(|t| t.seq) {
            self.finish_tx(seq, cx);
        }
        if !self.anomalies.is_empty() {
            let ev = SmtpEvent {
                what: SmtpWhat::Anomaly,
                helo: self.helo.clone(),
                anomalies: std::mem::take(&mut self.anomalies),
                ..SmtpEvent::default()
            };
            emit(cx, ev);
        }
    }
}
