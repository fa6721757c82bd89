//! TLS metadata: version, SNI, ALPN, cipher suite, the server certificate (when in clear) and
//! JA4/JA4S fingerprints, written as one [`TlsEvent`] IRI per session.
//!
//! The encrypted bytes are not content objects: they stay in the CC capture. This analyzer only
//! reads the handshake, per direction: records are reassembled across segments, handshake
//! messages across records (at most [`MAX_HANDSHAKE`] bytes buffered per direction), and parsing
//! of a direction stops at its ChangeCipherSpec or first application-data record (after that
//! everything is encrypted). The event goes out as soon as the metadata is complete — after the
//! ServerHello for TLS 1.3 (whose Certificate is encrypted: "not visible"), after the server
//! Certificate for TLS 1.0–1.2 — or at close with what was seen.
//!
//! No-panic contract: wire bytes are read only through the checked parsers of [`wire`]; buffers
//! are bounded; a malformed or oversized message is an anomaly in the event and ends parsing of
//! that direction, never a panic.
//!
//! # STARTTLS and AUTH TLS
//!
//! SMTP `STARTTLS` and FTP `AUTH TLS` switch a connection to TLS mid-stream. The analyzer that
//! saw the switch creates [`tls_after_starttls`] (or [`tls_after_upgrade`] with a label such as
//! `"ftp-auth-tls"`) when the server accepts (SMTP `220` to STARTTLS, FTP `234` to AUTH TLS), and
//! from then on forwards every `data`, `gap` and `close` call of *both* directions to it,
//! unchanged (same `dir`, same stream `offset`): the first byte it gets in each direction must be
//! the first TLS byte of that direction (the client byte after the `STARTTLS\r\n` line, the
//! server byte after the reply line). Offsets need not start at 0. It emits its own `TlsEvent`
//! (with `upgraded_from` set) and no content objects.

pub mod cert;
pub mod ja4;
pub mod wire;

use super::detect::Verdict;
use super::{Cx, StreamAnalyzer};
use crate::record::{Close, Dir};
use cert::CertInfo;
use wire::{ClientHello, ServerHello};

/// Handshake bytes buffered per direction while a message is incomplete (a certificate chain
/// is the largest thing expected; 64 KiB holds any sane one).
pub const MAX_HANDSHAKE: usize = 64 * 1024;
/// Anomalies kept per event (further ones are only counted).
const MAX_ANOMALIES: usize = 8;

/// Whether the server certificate could be read.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CertStatus {
    /// Not yet known (never in an emitted event unless the handshake was cut short).
    #[serde(rename = "not seen")]
    NotSeen,
    /// Parsed from the clear-text Certificate message (TLS 1.0–1.2).
    #[serde(rename = "visible")]
    Visible,
    /// TLS 1.3 encrypts the Certificate message.
    #[serde(rename = "not visible")]
    NotVisible,
    /// Abbreviated handshake (session resumption): the server sent no certificate.
    #[serde(rename = "resumed")]
    Resumed,
    /// Full handshake without a certificate (anonymous or PSK suites).
    #[serde(rename = "not sent")]
    NotSent,
    /// A Certificate message was seen but its leaf is not valid X.509.
    #[serde(rename = "unparsable")]
    Unparsable,
}

/// What TLS adds to the IRI: one per session.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TlsEvent {
    /// Negotiated version (ServerHello, supported_versions first), e.g. `TLS 1.3`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Highest version the client offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn_offered: Vec<String>,
    /// The server's choice, from a TLS 1.0–1.2 ServerHello (TLS 1.3 sends it encrypted, in
    /// EncryptedExtensions: absent then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpn_selected: Option<String>,
    /// IANA name when known, else `0xNNNN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher_suite: Option<String>,
    /// The suite's number, `0xNNNN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher_suite_id: Option<String>,
    pub certificate_status: CertStatus,
    /// The server's leaf certificate, when visible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Box<CertInfo>>,
    /// Certificates the server sent (leaf included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_len: Option<usize>,
    /// The client's certificate, when the server asked for one and it went in clear.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<Box<CertInfo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
    /// JA4 before hashing (sorted lists), for analysts comparing near matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4_r: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4s: Option<String>,
    /// The server answered with a HelloRetryRequest first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hello_retry: bool,
    /// A clear-text alert seen during the handshake, e.g. `fatal 40 from server`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// Set when TLS started mid-connection (`starttls`, `ftp-auth-tls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgraded_from: Option<String>,
    /// The handshake metadata was complete (false: emitted at close or after a gap with what
    /// was seen).
    pub complete: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<String>,
    /// Anomalies beyond the ones listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub anomalies_dropped: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Claims a connection whose first bytes are a TLS handshake record (record version 0x0300 to
/// 0x0304) carrying a ClientHello (client side) or a ServerHello (server side). SSLv2-format
/// hellos are not claimed.
pub fn probe(dir: Dir, first: &[u8]) -> Verdict {
    let want = match dir {
        Dir::Orig => wire::HS_CLIENT_HELLO,
        Dir::Resp => wire::HS_SERVER_HELLO,
    };
    let ok = |i: usize, f: &dyn Fn(u8) -> bool| first.get(i).is_none_or(|b| f(*b));
    let consistent = ok(0, &|b| b == wire::CT_HANDSHAKE)
        && ok(1, &|b| b == 3)
        && ok(2, &|b| b <= 4)
        && ok(5, &|b| b == want)
        // The record length (bytes 3-4) is at most 2^14 + 2048, so byte 3 is at most 0x48.
        && ok(3, &|b| b <= 0x48)
        // A hello body is at least 38 bytes and well under 16 MiB: byte 6 (the top of the
        // 24-bit length) is 0.
        && ok(6, &|b| b == 0);
    if !consistent {
        return Verdict::NoMatch;
    }
    let Some(h) = wire::record_header(first) else { return Verdict::NeedMore };
    if h.len == 0 || !h.plausible() {
        return Verdict::NoMatch;
    }
    if h.len < 4 {
        // A hello fragmented into tiny records (legal, rare): the type byte already matched.
        return Verdict::Match;
    }
    match first.get(5..9).and_then(wire::handshake_header) {
        Some((_, len)) if len >= 38 => Verdict::Match,
        Some(_) => Verdict::NoMatch,
        None => Verdict::NeedMore,
    }
}

/// The analyzer for a connection that is TLS from its first byte.
pub fn analyzer() -> Box<dyn StreamAnalyzer> {
    Box::new(TlsAnalyzer::new())
}

/// The analyzer for the rest of a connection after SMTP STARTTLS (see the module doc).
pub fn tls_after_starttls() -> Box<dyn StreamAnalyzer> {
    tls_after_upgrade("starttls")
}

/// The analyzer for the rest of a connection after an upgrade named `how` (`"smtp-starttls"`,
/// `"ftp-auth-tls"`...).
pub fn tls_after_upgrade(how: &str) -> Box<dyn StreamAnalyzer> {
    Box::new(TlsAnalyzer::after_upgrade(how))
}

/// One direction's parsing state.
#[derive(Default)]
struct Side {
    /// The record being assembled (header included), at most 5 + `wire::MAX_RECORD` bytes.
    rec: Vec<u8>,
    /// Handshake bytes not yet forming a whole message, at most `MAX_HANDSHAKE`.
    hs: Vec<u8>,
    /// The stream offset the next byte should have.
    next: Option<u64>,
    /// No more parsing in this direction (encrypted from here, a gap, or an error).
    done: bool,
}

impl Side {
    fn stop(&mut self) {
        self.done = true;
        self.rec = Vec::new();
        self.hs = Vec::new();
    }
}

/// Per-connection TLS handshake state (the Suricata split: pure parsers in [`wire`], state here).
pub struct TlsAnalyzer {
    sides: [Side; 2],
    client_hello: Option<ClientHello>,
    server_hello: Option<ServerHello>,
    ev: TlsEvent,
    /// The server sent a CertificateRequest (TLS 1.2): wait for the client's answer.
    cert_requested: bool,
    client_cert_done: bool,
    seen_any: bool,
    emitted: bool,
}

impl Default for TlsAnalyzer {
    fn default() -> Self {
        TlsAnalyzer::new()
    }
}

impl TlsAnalyzer {
    pub fn new() -> TlsAnalyzer {
        TlsAnalyzer {
            sides: [Side::default(), Side::default()],
            client_hello: None,
            server_hello: None,
            ev: TlsEvent {
                version: None,
                client_version: None,
                sni: None,
                alpn_offered: Vec::new(),
                alpn_selected: None,
                cipher_suite: None,
                cipher_suite_id: None,
                certificate_status: CertStatus::NotSeen,
                certificate: None,
                chain_len: None,
                client_certificate: None,
                ja4: None,
                ja4_r: None,
                ja4s: None,
                hello_retry: false,
                alert: None,
                upgraded_from: None,
                complete: false,
                anomalies: Vec::new(),
                anomalies_dropped: 0,
            },
            cert_requested: false,
            client_cert_done: false,
            seen_any: false,
            emitted: false,
        }
    }

    /// For a connection that switched to TLS mid-stream (see the module doc).
    pub fn after_upgrade(how: &str) -> TlsAnalyzer {
        let mut a = TlsAnalyzer::new();
        a.ev.upgraded_from = Some(how.to_string());
        a
    }

    fn anomaly(&mut self, what: String) {
        if self.ev.anomalies.len() < MAX_ANOMALIES {
            self.ev.anomalies.push(what);
        } else {
            self.ev.anomalies_dropped = self.ev.anomalies_dropped.saturating_add(1);
        }
    }

    fn side_name(dir: Dir) -> &'static str {
        match dir {
            Dir::Orig => "client",
            Dir::Resp => "server",
        }
    }

    /// The negotiated version is TLS 1.3 (or a 1.3 draft): everything after ServerHello is
    /// encrypted.
    fn is_tls13(&self) -> bool {
        self.server_hello.as_ref().is_some_and(|sh| {
            let v = sh.version();
            v >= 0x0304 && (v == 0x0304 || v >> 8 == 0x7f)
        })
    }

    fn feed(&mut self, dir: Dir, mut bytes: &[u8], cx: &mut Cx) {
        while !bytes.is_empty() && !self.emitted && !self.sides[dir.index()].done {
            let side = &mut self.sides[dir.index()];
            if side.rec.len() < 5 {
                let n = (5 - side.rec.len()).min(bytes.len());
                side.rec.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                let Some(h) = wire::record_header(&side.rec) else { return };
                if !h.plausible() {
                    let msg = format!(
                        "{} bytes are not a TLS record (type {}, version 0x{:04x}, length {})",
                        Self::side_name(dir),
                        h.content_type,
                        h.version,
                        h.len
                    );
                    self.sides[dir.index()].stop();
                    self.anomaly(msg);
                    break;
                }
            }
            let Some(h) = wire::record_header(&side.rec) else { return };
            let total = 5 + h.len;
            let n = total.saturating_sub(side.rec.len()).min(bytes.len());
            side.rec.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if side.rec.len() < total {
                return;
            }
            let rec = std::mem::take(&mut side.rec);
            self.record(dir, h, rec.get(5..total).unwrap_or(&[]));
            let side = &mut self.sides[dir.index()];
            if !side.done {
                // Reuse the allocation for the next record.
                side.rec = rec;
                side.rec.clear();
            }
            self.maybe_emit(cx);
        }
        self.maybe_emit(cx);
    }

    fn record(&mut self, dir: Dir, h: wire::RecordHeader, payload: &[u8]) {
        self.seen_any = true;
        match h.content_type {
            wire::CT_HANDSHAKE => self.handshake_bytes(dir, payload),
            wire::CT_CHANGE_CIPHER_SPEC => {
                // After a HelloRetryRequest a TLS 1.3 peer may send its compatibility CCS and
                // then a second hello in clear: keep reading that direction until it comes.
                let awaiting_hello = self.ev.hello_retry && !self.is_tls13() && dir == Dir::Resp;
                if awaiting_hello {
                    return;
                }
                if dir == Dir::Resp
                    && self.ev.certificate_status == CertStatus::NotSeen
                    && self.server_hello.is_some()
                    && !self.is_tls13()
                {
                    self.ev.certificate_status = CertStatus::Resumed;
                }
                if dir == Dir::Orig {
                    self.client_cert_done = true;
                }
                self.sides[dir.index()].stop();
            }
            wire::CT_APPLICATION_DATA => {
                if dir == Dir::Orig {
                    self.client_cert_done = true;
                }
                self.sides[dir.index()].stop();
            }
            wire::CT_ALERT => {
                if let [level, desc] = payload {
                    let level = match level {
                        1 => "warning".to_string(),
                        2 => "fatal".to_string(),
                        l => format!("level {l}"),
                    };
                    self.ev.alert = Some(format!("{level} {desc} from {}", Self::side_name(dir)));
                }
            }
            _ => {}
        }
    }

    fn handshake_bytes(&mut self, dir: Dir, payload: &[u8]) {
        let side = &mut self.sides[dir.index()];
        if side.hs.len().saturating_add(payload.len()) > MAX_HANDSHAKE {
            let msg = format!("{} handshake message exceeds {} bytes", Self::side_name(dir), MAX_HANDSHAKE);
            side.stop();
            self.anomaly(msg);
            return;
        }
        side.hs.extend_from_slice(payload);
        let mut hs = std::mem::take(&mut side.hs);
        let mut used = 0;
        while let Some((ty, len)) = hs.get(used..).and_then(wire::handshake_header) {
            if len > MAX_HANDSHAKE - 4 {
                let msg =
                    format!("{} handshake message type {ty} of {len} bytes exceeds the bound", Self::side_name(dir));
                self.sides[dir.index()].stop();
                self.anomaly(msg);
                return;
            }
            let Some(body) = hs.get(used + 4..used + 4 + len) else { break };
            used += 4 + len;
            self.message(dir, ty, body);
            if self.sides[dir.index()].done {
                return;
            }
        }
        hs.drain(..used);
        self.sides[dir.index()].hs = hs;
    }

    fn message(&mut self, dir: Dir, ty: u8, body: &[u8]) {
        match (dir, ty) {
            (Dir::Orig, wire::HS_CLIENT_HELLO) => {
                if self.client_hello.is_some() {
                    // The second hello after a HelloRetryRequest: JA4 stays on the first.
                    return;
                }
                match wire::client_hello(body) {
                    Some((ch, ok)) => {
                        if !ok {
                            self.anomaly("malformed ClientHello extensions".into());
                        }
                        self.ev.sni = ch.sni.clone();
                        self.ev.alpn_offered = ch.alpn.iter().map(|a| wire::printable(a)).collect();
                        let offered = ch
                            .supported_versions
                            .iter()
                            .copied()
                            .filter(|v| !wire::is_grease(*v))
                            .max()
                            .unwrap_or(ch.legacy_version);
                        self.ev.client_version = Some(wire::version_name(offered));
                        let (fp, raw) = ja4::ja4(&ch);
                        self.ev.ja4 = Some(fp);
                        self.ev.ja4_r = Some(raw);
                        self.client_hello = Some(ch);
                    }
                    None => {
                        self.anomaly(format!("malformed ClientHello ({} bytes)", body.len()));
                        self.sides[dir.index()].stop();
                    }
                }
            }
            (Dir::Resp, wire::HS_SERVER_HELLO) => {
                if self.server_hello.is_some() {
                    return;
                }
                let Some((sh, ok)) = wire::server_hello(body) else {
                    self.anomaly(format!("malformed ServerHello ({} bytes)", body.len()));
                    self.sides[dir.index()].stop();
                    return;
                };
                if !ok {
                    self.anomaly("malformed ServerHello extensions".into());
                }
                if sh.retry {
                    self.ev.hello_retry = true;
                    return;
                }
                self.ev.version = Some(wire::version_name(sh.version()));
                self.ev.alpn_selected = sh.alpn.as_deref().map(wire::printable);
                self.ev.cipher_suite_id = Some(format!("0x{:04x}", sh.cipher));
                self.ev.cipher_suite =
                    Some(wire::cipher_name(sh.cipher).map_or_else(|| format!("0x{:04x}", sh.cipher), str::to_string));
                self.ev.ja4s = Some(ja4::ja4s(&sh));
                self.server_hello = Some(sh);
                if self.is_tls13() {
                    self.ev.certificate_status = CertStatus::NotVisible;
                    // Everything after is encrypted (the client's side too, after its CCS).
                    self.sides[dir.index()].stop();
                }
            }
            (Dir::Resp, wire::HS_CERTIFICATE) if self.server_hello.is_some() && !self.is_tls13() => {
                let Some(list) = wire::certificate_list(body) else {
                    self.ev.certificate_status = CertStatus::Unparsable;
                    self.anomaly("malformed Certificate message".into());
                    return;
                };
                self.ev.chain_len = Some(list.len());
                match list.first().map(|der| cert::summarise(der)) {
                    Some(Some(c)) => {
                        self.ev.certificate = Some(Box::new(c));
                        self.ev.certificate_status = CertStatus::Visible;
                    }
                    Some(None) => {
                        self.ev.certificate_status = CertStatus::Unparsable;
                        self.anomaly("server certificate is not valid X.509".into());
                    }
                    None => self.ev.certificate_status = CertStatus::NotSent,
                }
            }
            (Dir::Resp, 13) => self.cert_requested = true,
            (Dir::Resp, wire::HS_SERVER_HELLO_DONE) => {
                if self.ev.certificate_status == CertStatus::NotSeen {
                    self.ev.certificate_status = CertStatus::NotSent;
                }
                self.sides[dir.index()].stop();
            }
            (Dir::Orig, wire::HS_CERTIFICATE) if !self.is_tls13() => {
                if let Some(der) = wire::certificate_list(body).and_then(|l| l.first().copied()) {
                    self.ev.client_certificate = cert::summarise(der).map(Box::new);
                }
                self.client_cert_done = true;
            }
            _ => {}
        }
    }

    fn metadata_complete(&self) -> bool {
        self.client_hello.is_some()
            && self.server_hello.is_some()
            && self.ev.certificate_status != CertStatus::NotSeen
            && (!self.cert_requested || self.client_cert_done || self.is_tls13())
    }

    fn maybe_emit(&mut self, cx: &mut Cx) {
        if self.emitted {
            return;
        }
        if self.metadata_complete() {
            self.ev.complete = true;
            self.emit(cx);
        } else if self.sides.iter().all(|s| s.done) && self.seen_any {
            // Nothing more can be learnt from this connection.
            self.emit(cx);
        }
    }

    fn emit(&mut self, cx: &mut Cx) {
        self.emitted = true;
        for s in &mut self.sides {
            s.stop();
        }
        let ev = std::mem::replace(&mut self.ev, TlsAnalyzer::new().ev);
        cx.emit_app(cx.cin, "tls", ev);
    }
}

impl StreamAnalyzer for TlsAnalyzer {
    fn data(&mut self, dir: Dir, offset: u64, bytes: &[u8], cx: &mut Cx) {
        if self.emitted || self.sides[dir.index()].done {
            return;
        }
        let side = &mut self.sides[dir.index()];
        let mut bytes = bytes;
        match side.next {
            Some(next) if offset > next => {
                // A hole the flow layer did not announce: same as a gap.
                self.gap(dir, next, offset - next, cx);
                return;
            }
            Some(next) if offset < next => {
                // Overlap with what was already parsed: keep only the new part.
                let skip = usize::try_from(next - offset).unwrap_or(usize::MAX);
                bytes = bytes.get(skip..).unwrap_or(&[]);
                side.next = Some(next + bytes.len() as u64);
            }
            _ => side.next = Some(offset.saturating_add(bytes.len() as u64)),
        }
        self.feed(dir, bytes, cx);
    }

    fn gap(&mut self, dir: Dir, _offset: u64, len: u64, cx: &mut Cx) {
        if self.emitted || self.sides[dir.index()].done {
            return;
        }
        // A record boundary cannot be found again reliably inside a handshake: stop this
        // direction and report what was seen.
        self.anomaly(format!("gap of {len} bytes in the {} handshake", Self::side_name(dir)));
        self.seen_any = true;
        self.sides[dir.index()].stop();
        self.maybe_emit(cx);
    }

    fn close(&mut self, _how: Close, cx: &mut Cx) {
        if !self.emitted && self.seen_any {
            self.ev.complete = self.metadata_complete();
            self.emit(cx);
        }
    }
}

#[cfg(test)]
mod tests;
