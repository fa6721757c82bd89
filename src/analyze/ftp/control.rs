//! The FTP control connection: commands from the originator, replies from the responder.
//!
//! Replies are matched to commands in order (RFC 959 is lock-step; pipelined commands are
//! answered in order). 1xx replies are preliminary and leave their command waiting. After a gap
//! the pending commands are dropped (replies could no longer be matched) and each direction
//! resyncs on the first line that looks like a command (client) or a reply (server).
//!
//! No-panic contract: lines are bounded by [`MAX_LINE`]; all parsing goes through [`parse`];
//! offsets use saturating arithmetic.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use super::parse;
use super::transfer::{emit, lock, Announce, DataChannel, DataSide, Order, Shared, Transfer};
use super::{
    is_ftp_verb, FtpAction, FtpAnomalies, FtpEvent, FtpMode, FtpReply, EXPECT_SECS, MAX_EXPECT, MAX_LINE, MAX_PENDING,
    MAX_REPLY_TEXT,
};
use crate::analyze::stream::RawStream;
use crate::analyze::{tls, Cx, ExpectKey, Expectations, StreamAnalyzer};
use crate::record::{Close, Dir};
use crate::timestamp::Timestamp;

const TRANSFER_VERBS: &[&str] = &["STOR", "STOU", "APPE", "RETR", "LIST", "NLST", "MLSD"];

#[derive(Default)]
struct LineBuf {
    buf: Vec<u8>,
    /// Inside a line longer than [`MAX_LINE`]: its first bytes are kept, the rest dropped up to
    /// its end.
    skipping: bool,
    /// After a gap: lines are dropped until one looks like a command/reply.
    resync: bool,
}

struct Pending {
    verb: String,
    /// The argument; empty for PASS and ACCT, whose argument is never kept.
    arg: String,
    transfer: Option<Shared>,
    /// The type before a TYPE command, restored if the server refuses it.
    prev_type: Option<char>,
}

/// The rest of the connection goes to another analyzer (TLS after AUTH, raw after degrading),
/// with offsets counted from `base`.
struct Handoff {
    base: [u64; 2],
    inner: Box<dyn StreamAnalyzer>,
}

impl Handoff {
    fn data(&mut self, dir: Dir, offset: u64, bytes: &[u8], cx: &mut Cx) {
        let base = self.base[dir.index()];
        let skip = base.saturating_sub(offset);
        let Some(bytes) = usize::try_from(skip).ok().and_then(|s| bytes.get(s..)) else { return };
        if !bytes.is_empty() {
            self.inner.data(dir, offset.saturating_add(skip) - base, bytes, cx);
        }
    }

    fn gap(&mut self, dir: Dir, offset: u64, len: u64, cx: &mut Cx) {
        let base = self.base[dir.index()];
        let end = offset.saturating_add(len);
        if end > base {
            let start = offset.max(base);
            self.inner.gap(dir, start - base, end - start, cx);
        }
    }
}

/// The control-connection analyzer.
pub struct Control {
    lines: [LineBuf; 2],
    /// Next stream offset per direction.
    next_off: [u64; 2],
    /// A multi-line reply being read: its code and text so far.
    multi: Option<(u16, String)>,
    pending: VecDeque<Pending>,
    user: Option<String>,
    /// The TYPE the client set; `None` until it sets one (see `Order::type_code`).
    type_code: Option<char>,
    rest: Option<u64>,
    rnfr: Option<String>,
    cwd: Option<String>,
    /// The last SIZE answer: path and size, announced size of a RETR of that path.
    size: Option<(String, u64)>,
    /// Announced data connections no command has used yet, with their expiry.
    announced: VecDeque<(Timestamp, Shared)>,
    /// Transfers bound to a command (or with a data connection), until their IRI is out.
    transfers: VecDeque<Shared>,
    /// Client offset just after the last AUTH command (where TLS starts if it is accepted).
    auth_end: Option<u64>,
    handoff: Option<Handoff>,
    anomalies: FtpAnomalies,
}

impl Default for Control {
    fn default() -> Self {
        Control::new()
    }
}

impl Control {
    pub fn new() -> Control {
        Control {
            lines: [LineBuf::default(), LineBuf::default()],
            next_off: [0, 0],
            multi: None,
            pending: VecDeque::new(),
            user: None,
            type_code: None,
            rest: None,
            rnfr: None,
            cwd: None,
            size: None,
            announced: VecDeque::new(),
            transfers: VecDeque::new(),
            auth_end: None,
            handoff: None,
            anomalies: FtpAnomalies::default(),
        }
    }

    fn line(&mut self, dir: Dir, line: &[u8], end_off: u64, cx: &mut Cx) {
        let lb = &mut self.lines[dir.index()];
        if lb.resync {
            let ok = match dir {
                Dir::Orig => parse::command(line).is_some_and(|c| is_ftp_verb(&c.verb)),
                Dir::Resp => parse::reply_line(line).is_some(),
            };
            if !ok {
                return;
            }
            lb.resync = false;
        }
        match dir {
            Dir::Orig => self.command(line, end_off, cx),
            Dir::Resp => self.reply_line(line, cx),
        }
    }

    fn command(&mut self, line: &[u8], end_off: u64, cx: &mut Cx) {
        let Some(c) = parse::command(line) else { return };
        let verb = c.verb;
        let mut arg = c.arg;
        let mut transfer = None;
        let prev_type = self.type_code;
        match verb.as_str() {
            "USER" => self.user = Some(arg.trim().to_string()),
            "PASS" | "ACCT" => arg = String::new(),
            "AUTH" => self.auth_end = Some(end_off),
            "TYPE" => {
                if let Some(t) = parse::type_code(&arg) {
                    self.type_code = Some(t);
                }
            }
            "REST" => self.rest = parse::rest_offset(&arg),
            "PORT" => {
                if let Some(a) = parse::host_port(&arg) {
                    self.announce(FtpMode::Active, "PORT", a, cx);
                }
            }
            "EPRT" => {
                if let Some(a) = parse::eprt(&arg) {
                    self.announce(FtpMode::Active, "EPRT", a, cx);
                }
            }
            v if TRANSFER_VERBS.contains(&v) => transfer = Some(self.bind(&verb, &arg, cx)),
            _ => {}
        }
        if self.pending.len() >= MAX_PENDING {
            self.anomalies.pending_overflow += 1;
            let base = [end_off, self.next_off[Dir::Resp.index()]];
            self.handoff = Some(Handoff { base, inner: Box::new(RawStream::new()) });
            return;
        }
        self.pending.push_back(Pending { verb, arg, transfer, prev_type });
    }

    /// Announces a data connection to the flow layer.
    fn announce(&mut self, mode: FtpMode, by: &'static str, addr: SocketAddr, cx: &mut Cx) {
        self.prune(cx.now);
        let unused = self.announced.iter().filter(|(_, t)| matches!(lock(t).data, DataSide::NotSeen)).count();
        if unused >= MAX_EXPECT {
            self.anomalies.expect_refused += 1;
            return;
        }
        let t: Shared = Arc::new(Mutex::new(Transfer::new(cx.cin, cx.flow.clone(), Some(Announce { mode, by, addr }))));
        // The side that will accept the data connection, as the control connection shows it: a
        // NAT may rewrite addresses without rewriting the announcement, so both are expected.
        let seen = match mode {
            FtpMode::Passive => cx.flow.resp.ip(),
            FtpMode::Active => cx.flow.orig.ip(),
        };
        let mut ips: Vec<IpAddr> = Vec::with_capacity(2);
        if !addr.ip().is_unspecified() {
            ips.push(addr.ip());
        }
        if !ips.contains(&seen) {
            ips.push(seen);
        }
        let zone = Expectations::zone_of(cx.flow);
        let expires = cx.now.add_secs(EXPECT_SECS);
        for ip in ips {
            let key = ExpectKey { liid: cx.liid.clone(), zone, addr: ip, port: addr.port() };
            let tc = t.clone();
            if !cx.expect.expect(key, expires, Box::new(move |f| DataChannel::make(tc, f))) {
                self.anomalies.expect_refused += 1;
            }
        }
        self.announced.push_back((expires, t));
    }

    /// Drops announcements that expired unused; keeps those whose connection came (a command may
    /// still name them). Bounded: the oldest leave our care, marked closed so that their data side
    /// reports on its own.
    fn prune(&mut self, now: Timestamp) {
        self.announced.retain(|(exp, t)| *exp > now || !matches!(lock(t).data, DataSide::NotSeen));
        while self.announced.len() > 2 * MAX_EXPECT {
            if let Some((_, t)) = self.announced.pop_front() {
                lock(&t).control_closed = true;
            }
        }
        self.transfers.retain(|t| !lock(t).emitted);
        while self.transfers.len() > MAX_PENDING + MAX_EXPECT {
            if let Some(t) = self.transfers.pop_front() {
                lock(&t).control_closed = true;
            }
        }
    }

    /// Ties a transfer command to the newest announced data connection.
    fn bind(&mut self, verb: &str, arg: &str, cx: &mut Cx) -> Shared {
        self.prune(cx.now);
        let arg = arg.trim();
        let order = Order {
            verb: verb.to_string(),
            path: (!arg.is_empty()).then(|| arg.to_string()),
            user: self.user.clone(),
            type_code: self.type_code,
            offset: self.rest.take(),
            cwd: self.cwd.clone(),
        };
        let t = match self.announced.pop_back() {
            Some((_, t)) => t,
            None => Arc::new(Mutex::new(Transfer::new(cx.cin, cx.flow.clone(), None))),
        };
        {
            let mut g = lock(&t);
            if verb == "RETR" {
                g.declared_size = self.size.take().filter(|(p, _)| p == arg).map(|(_, n)| n);
            }
            g.order = Some(order);
        }
        self.transfers.push_back(t.clone());
        t
    }

    fn reply_line(&mut self, line: &[u8], cx: &mut Cx) {
        if let Some((code, text)) = &mut self.multi {
            let code = *code;
            match parse::reply_line(line) {
                Some(r) if r.code == code && !r.more => {
                    push_text(text, r.text);
                    let text = std::mem::take(text);
                    self.multi = None;
                    self.reply(code, text, cx);
                }
                // Intermediate lines may repeat the code with a hyphen (RFC 959 4.2): drop it.
                Some(r) if r.code == code => push_text(text, r.text),
                _ => push_text(text, parse::trim_eol(line)),
            }
            return;
        }
        match parse::reply_line(line) {
            None => self.anomalies.bad_replies += 1,
            Some(r) if r.more => {
                let mut text = String::new();
                push_text(&mut text, r.text);
                self.multi = Some((r.code, text));
            }
            Some(r) => {
                let mut text = String::new();
                push_text(&mut text, r.text);
                self.reply(r.code, text, cx);
            }
        }
    }

    fn reply(&mut self, code: u16, text: String, cx: &mut Cx) {
        let reply = FtpReply { code, text };
        if code < 200 {
            if let Some(t) = self.pending.front().and_then(|p| p.transfer.as_ref()) {
                let mut g = lock(t);
                g.declared_size = g.declared_size.or_else(|| parse::announced_size(&reply.text));
                name_stou(&mut g, &reply.text);
                g.preliminary = Some(reply);
            }
            return;
        }
        // 227/229 say all that is needed on their own, even when pairing with commands was lost.
        match code {
            227 => {
                if let Some(a) = parse::host_port(&reply.text) {
                    self.announce(FtpMode::Passive, "PASV", a, cx);
                }
            }
            229 => {
                if let Some(port) = parse::epsv_port(&reply.text) {
                    // RFC 2428: the data connection goes to the control connection's server address.
                    self.announce(FtpMode::Passive, "EPSV", SocketAddr::new(cx.flow.resp.ip(), port), cx);
                }
            }
            _ => {}
        }
        let Some(p) = self.pending.pop_front() else {
            // The greeting (220, 120, 421) answers the connection, not a command.
            if !matches!(code, 220 | 120 | 421) {
                self.anomalies.unmatched_replies += 1;
            }
            return;
        };
        let ok = (200..300).contains(&code);
        match p.verb.as_str() {
            "USER" | "PASS" => match code {
                230 | 202 => self.simple(FtpAction::Login, &p.verb, None, None, Some(true), reply, cx),
                331 | 332 => {}
                c if c >= 400 => self.simple(FtpAction::Login, &p.verb, None, None, Some(false), reply, cx),
                _ => {}
            },
            "AUTH" => {
                let accepted = code == 234;
                if accepted || code >= 400 {
                    let mech = Some(p.arg.trim().to_string());
                    self.simple(FtpAction::AuthTls, "AUTH", mech, None, Some(accepted), reply, cx);
                }
                if accepted {
                    let orig = self.auth_end.unwrap_or(self.next_off[Dir::Orig.index()]);
                    // Set by the caller's loop: the server's TLS starts right after this line.
                    self.handoff = Some(Handoff { base: [orig, u64::MAX], inner: tls::tls_after_upgrade("auth-tls") });
                }
            }
            "TYPE" if !ok => self.type_code = p.prev_type,
            "REST" if code >= 400 => self.rest = None,
            "RNFR" => {
                if code == 350 {
                    self.rnfr = Some(p.arg);
                } else {
                    self.simple(FtpAction::Rename, "RNFR", Some(p.arg), None, Some(false), reply, cx);
                }
            }
            "RNTO" => {
                let from = self.rnfr.take();
                self.simple(FtpAction::Rename, "RNTO", from, Some(p.arg), Some(ok), reply, cx);
            }
            "DELE" => self.simple(FtpAction::Delete, "DELE", Some(p.arg), None, Some(ok), reply, cx),
            "MKD" | "XMKD" => self.simple(FtpAction::Mkdir, &p.verb, Some(p.arg), None, Some(ok), reply, cx),
            "RMD" | "XRMD" => self.simple(FtpAction::Rmdir, &p.verb, Some(p.arg), None, Some(ok), reply, cx),
            "PWD" | "XPWD" if code == 257 => self.cwd = parse::quoted_path(&reply.text),
            "CWD" | "XCWD" if ok => self.cwd = join(self.cwd.as_deref(), p.arg.trim()),
            "CDUP" | "XCUP" if ok => self.cwd = join(self.cwd.as_deref(), ".."),
            "REIN" if ok => self.user = None,
            "SIZE" if code == 213 => {
                self.size = parse::rest_offset(&reply.text).map(|n| (p.arg.trim().to_string(), n));
            }
            _ => {
                if let Some(t) = p.transfer {
                    let mut g = lock(&t);
                    name_stou(&mut g, &reply.text);
                    g.reply = Some(reply);
                    g.finish_parked(cx);
                    g.try_emit(cx);
                }
            }
        }
        self.prune(cx.now);
    }

    #[allow(clippy::too_many_arguments)]
    fn simple(
        &mut self,
        action: FtpAction,
        verb: &str,
        path: Option<String>,
        to: Option<String>,
        success: Option<bool>,
        reply: FtpReply,
        cx: &mut Cx,
    ) {
        let mut ev = FtpEvent::new(action);
        ev.user = self.user.clone();
        ev.command = Some(verb.to_string());
        ev.path = path.filter(|p| !p.is_empty());
        ev.to = to;
        ev.cwd = self.cwd.clone();
        ev.success = success;
        ev.reply = Some(reply);
        let cin = cx.cin;
        emit(cx, cin, ev);
    }

    fn feed(&mut self, dir: Dir, offset: u64, bytes: &[u8], cx: &mut Cx) {
        let d = dir.index();
        self.next_off[d] = offset.saturating_add(bytes.len() as u64);
        let mut pos = 0usize;
        while pos < bytes.len() {
            let Some(rest) = bytes.get(pos..) else { break };
            let Some(i) = rest.iter().position(|&b| b == b'\n') else {
                let lb = &mut self.lines[d];
                if !lb.skipping {
                    if lb.buf.len().saturating_add(rest.len()) > MAX_LINE {
                        // Too long: keep its first MAX_LINE bytes (the verb or reply code is
                        // there) and drop the rest up to the line's end.
                        self.anomalies.long_lines += 1;
                        let room = MAX_LINE.saturating_sub(lb.buf.len()).min(rest.len());
                        lb.buf.extend_from_slice(rest.get(..room).unwrap_or(&[]));
                        lb.skipping = true;
                    } else {
                        lb.buf.extend_from_slice(rest);
                    }
                }
                break;
            };
            let end = pos + i + 1;
            let part = bytes.get(pos..end).unwrap_or(&[]);
            let end_off = offset.saturating_add(end as u64);
            let lb = &mut self.lines[d];
            if lb.skipping {
                lb.skipping = false;
            } else if lb.buf.len().saturating_add(part.len()) > MAX_LINE + 2 {
                self.anomalies.long_lines += 1;
                let room = MAX_LINE.saturating_sub(lb.buf.len()).min(part.len());
                lb.buf.extend_from_slice(part.get(..room).unwrap_or(&[]));
            } else if lb.buf.is_empty() {
                self.line(dir, part, end_off, cx);
            } else {
                lb.buf.extend_from_slice(part);
            }
            let lb = &mut self.lines[d];
            if !lb.buf.is_empty() {
                let mut buf = std::mem::take(&mut lb.buf);
                self.line(dir, &buf, end_off, cx);
                buf.clear();
                self.lines[d].buf = buf;
            }
            pos = end;
            if let Some(h) = self.handoff.as_mut() {
                // The server's side of a TLS handoff starts right after the 234 line.
                if h.base[d] == u64::MAX {
                    h.base[d] = end_off;
                }
                if h.base[1 - d] == u64::MAX {
                    h.base[1 - d] = self.next_off[1 - d];
                }
                if let Some(rest) = bytes.get(pos..) {
                    h.data(dir, end_off, rest, cx);
                }
                return;
            }
        }
    }
}

fn name_stou(t: &mut Transfer, text: &str) {
    if let Some(o) = t.order.as_mut() {
        if o.verb == "STOU" && o.path.is_none() {
            o.path = parse::stou_name(text);
        }
    }
}

/// Appends a reply line to a reply's text, bounded.
fn push_text(text: &mut String, line: &[u8]) {
    if text.len() >= MAX_REPLY_TEXT {
        return;
    }
    if !text.is_empty() {
        text.push('\n');
    }
    let room = MAX_REPLY_TEXT.saturating_sub(text.len());
    let line = line.get(..line.len().min(room)).unwrap_or(&[]);
    text.push_str(&String::from_utf8_lossy(line));
}

/// The working directory after `CWD arg` from `cwd` (when known or when `arg` is absolute).
fn join(cwd: Option<&str>, arg: &str) -> Option<String> {
    let start = if arg.starts_with('/') { "/" } else { cwd? };
    let mut parts: Vec<&str> = start.split('/').filter(|s| !s.is_empty()).collect();
    for p in arg.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

impl StreamAnalyzer for Control {
    fn data(&mut self, dir: Dir, offset: u64, bytes: &[u8], cx: &mut Cx) {
        if let Some(h) = self.handoff.as_mut() {
            if h.base[dir.index()] == u64::MAX {
                h.base[dir.index()] = offset;
            }
            return h.data(dir, offset, bytes, cx);
        }
        self.feed(dir, offset, bytes, cx);
    }

    fn gap(&mut self, dir: Dir, offset: u64, len: u64, cx: &mut Cx) {
        if let Some(h) = self.handoff.as_mut() {
            return h.gap(dir, offset, len, cx);
        }
        let d = dir.index();
        self.anomalies.gaps += 1;
        self.next_off[d] = offset.saturating_add(len);
        let lb = &mut self.lines[d];
        lb.buf.clear();
        lb.skipping = false;
        lb.resync = true;
        if dir == Dir::Resp {
            self.multi = None;
        }
        // Replies can no longer be matched to commands.
        self.pending.clear();
    }

    fn close(&mut self, how: Close, cx: &mut Cx) {
        if let Some(h) = self.handoff.as_mut() {
            h.inner.close(how, cx);
        }
        let all: Vec<Shared> = self.announced.drain(..).map(|(_, t)| t).chain(self.transfers.drain(..)).collect();
        for t in all {
            let mut g = lock(&t);
            g.control_closed = true;
            g.finish_parked(cx);
            g.try_emit(cx);
        }
        if !self.anomalies.is_empty() {
            let mut ev = FtpEvent::new(FtpAction::Anomaly);
            ev.user = self.user.clone();
            ev.anomalies = self.anomalies.clone();
            let cin = cx.cin;
            emit(cx, cin, ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cwd_join() {
        assert_eq!(join(None, "/a/b"), Some("/a/b".into()));
        assert_eq!(join(Some("/a"), "b/../c"), Some("/a/c".into()));
        assert_eq!(join(Some("/"), ".."), Some("/".into()));
        assert_eq!(join(None, "x"), None);
    }
}
