//! FTP analyzer (RFC 959, RFC 2428 EPSV/EPRT, RFC 3659 REST STREAM): control connection and the
//! data connections it announces.
//!
//! - [`control`]: the control connection. Commands and replies (multi-line too) are parsed line by
//!   line ([`parse`], pure parsers); PASS/ACCT arguments are never kept, so no record can carry
//!   them. 227/229 replies (passive) and PORT/EPRT commands (active) announce the data connection
//!   to the flow layer through [`Expectations`](super::Expectations): key = the data connection's
//!   responder (passive: the server's announced address and port, EPSV: the control connection's
//!   server address; active: the client's announced address and port), within the LIID and zone.
//!   After `AUTH TLS`/`AUTH SSL` is accepted (234) the rest is encrypted: parsing stops, the event
//!   is recorded and the bytes go to the TLS analyzer for metadata.
//! - [`transfer`]: the state that a control connection and its data connection share
//!   (`Arc<Mutex<Transfer>>`, made at announce time), and the data-connection analyzer.
//!
//! Data before the command. The data connection may carry bytes before the STOR/RETR that names
//! them is seen (or before its 150 reply). The data analyzer opens its object lazily at the first
//! byte: when the command is known by then, the object starts with its full metadata; when it is
//! not, up to [`HOLD_BEFORE_COMMAND`] bytes are held waiting for it, then the object is opened
//! without a name and its metadata is completed before the object ends
//! ([`FileLayer::meta_mut`](crate::content::FileLayer::meta_mut)). A data connection that closes
//! before its command is seen is parked in the shared state; the control side finishes the object
//! when the command (or the end of the control connection) comes.
//!
//! The transfer IRI ([`FtpEvent`] with `action: transfer`) is emitted once both the final reply
//! (or the control connection's end) and the data connection's end are in, by whichever side comes
//! last, so that it carries the reply and the object's SHA-256 together.
//!
//! Bounds: lines of at most [`MAX_LINE`] bytes (longer ones are skipped and counted), at most
//! [`MAX_EXPECT`] announced-but-unused data connections and [`MAX_PENDING`] commands waiting for a
//! reply per control connection. Past the pending bound the analyzer degrades: the rest of the
//! connection goes to raw stream objects.
//!
//! No-panic contract: wire bytes are only touched through [`parse`] and checked slicing; the
//! shared state's lock is taken poison-tolerant.

pub mod control;
pub mod parse;
pub mod transfer;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::detect::Verdict;
use super::StreamAnalyzer;
use crate::record::{Dir, FlowDescr, ObjectId};

/// Longest command or reply line kept (RFC 959 sets no limit; Suricata's default is 4 KiB).
pub const MAX_LINE: usize = 8 * 1024;
/// Data connections announced and not yet used, per control connection.
pub const MAX_EXPECT: usize = 16;
/// Commands waiting for their reply, per control connection.
pub const MAX_PENDING: usize = 64;
/// How long an announced data connection is waited for.
pub const EXPECT_SECS: i64 = 60;
/// Bytes of a data connection held while its command is not yet known.
pub const HOLD_BEFORE_COMMAND: usize = 64 * 1024;
/// Longest reply text kept in a record.
pub const MAX_REPLY_TEXT: usize = 1024;

/// What happened, as an FTP IRI.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FtpAction {
    /// USER/PASS answered: `success` says whether the server let the user in.
    Login,
    /// A file stored or retrieved, or a listing, with its data connection.
    Transfer,
    /// RNFR + RNTO.
    Rename,
    /// DELE.
    Delete,
    /// MKD/XMKD.
    Mkdir,
    /// RMD/XRMD.
    Rmdir,
    /// AUTH TLS/SSL: accepted means the rest of the session is encrypted (metadata only).
    AuthTls,
    /// The analyzer hit a bound or lost bytes (see `anomalies`).
    Anomaly,
}

/// A reply: its code and text (multi-line replies joined by `\n`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FtpReply {
    pub code: u16,
    pub text: String,
}

/// How the data connection was set up.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FtpMode {
    /// PASV/EPSV: the client connects to the server.
    Passive,
    /// PORT/EPRT: the server connects to the client.
    Active,
}

/// The facts of one transfer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FtpTransfer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<FtpMode>,
    /// PASV, EPSV, PORT or EPRT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announced_by: Option<String>,
    /// The address and port announced for the data connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announced: Option<SocketAddr>,
    /// The data connection, when it was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_flow: Option<FlowDescr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_cin: Option<crate::record::Cin>,
    /// The representation type at the command: `A` (ASCII), `I` (image/binary), `E`, `L`; absent
    /// when the session never sent TYPE (the bytes are then kept as sent).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_code: Option<String>,
    /// ASCII mode was undone (CRLF -> LF) in the stored object.
    pub ascii_crlf_to_lf: bool,
    /// REST offset the transfer started at (RFC 3659): the object holds only the bytes sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Size announced by the server (150 reply `(N bytes)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_size: Option<u64>,
    /// Bytes seen on the data connection.
    pub wire_bytes: u64,
    /// Bytes in the stored object (after ASCII conversion, holes included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectId>,
    /// The object has holes, or the data connection did not end cleanly.
    pub complete: bool,
    /// The direction of the file's bytes within the data connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Dir>,
    /// The 1xx reply that opened the transfer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preliminary: Option<FtpReply>,
}

/// Anomalies counted on a control connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FtpAnomalies {
    /// Lines longer than [`MAX_LINE`], skipped.
    pub long_lines: u64,
    /// Server lines that are no reply.
    pub bad_replies: u64,
    /// Replies that matched no command.
    pub unmatched_replies: u64,
    /// Announcements refused (per-connection bound or full table).
    pub expect_refused: u64,
    /// More than [`MAX_PENDING`] commands without reply: the rest went to raw streams.
    pub pending_overflow: u64,
    /// Holes in the control connection.
    pub gaps: u64,
    /// Bytes of a data connection in the direction opposite to its file.
    pub reverse_data_bytes: u64,
}

impl FtpAnomalies {
    pub fn is_empty(&self) -> bool {
        *self == FtpAnomalies::default()
    }
}

/// What FTP adds to the IRI: a login, a transfer, a change to the server's files, AUTH TLS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FtpEvent {
    pub action: FtpAction,
    /// The user name (USER); a password is never recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The command that did it (STOR, RETR, APPE, RNTO, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The path as the client gave it (for STOU: as the server named it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The new name (RNTO).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The working directory, when the session showed it (PWD/CWD).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The final reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<FtpReply>,
    /// The server's answer was positive (2xx; 3xx where that is the expected answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Box<FtpTransfer>>,
    #[serde(default, skip_serializing_if = "FtpAnomalies::is_empty")]
    pub anomalies: FtpAnomalies,
}

impl FtpEvent {
    pub fn new(action: FtpAction) -> FtpEvent {
        FtpEvent {
            action,
            user: None,
            command: None,
            path: None,
            to: None,
            cwd: None,
            reply: None,
            success: None,
            transfer: None,
            anomalies: FtpAnomalies::default(),
        }
    }
}

/// Verbs that both FTP and SMTP (or other line protocols) use: they prove nothing.
const SHARED_VERBS: &[&str] = &["NOOP", "QUIT", "HELP", "RSET", "STAT"];

/// FTP verbs (RFC 959, 2228, 2389, 2428, 2640, 3659, 7151 and common X- forms).
const FTP_VERBS: &[&str] = &[
    "USER", "PASS", "ACCT", "AUTH", "FEAT", "OPTS", "SYST", "PWD", "XPWD", "CWD", "XCWD", "CDUP", "XCUP", "TYPE",
    "PASV", "EPSV", "PORT", "EPRT", "LPRT", "LPSV", "LIST", "NLST", "MLSD", "MLST", "RETR", "STOR", "STOU", "APPE",
    "REST", "RNFR", "RNTO", "DELE", "MKD", "XMKD", "RMD", "XRMD", "SIZE", "MDTM", "MFMT", "SITE", "ABOR", "ALLO",
    "MODE", "STRU", "CLNT", "PBSZ", "PROT", "LANG", "HOST", "REIN", "SMNT", "CCC", "ADAT", "MIC", "CONF", "ENC",
];

/// True for a verb that only FTP uses.
pub fn is_ftp_verb(verb: &str) -> bool {
    FTP_VERBS.contains(&verb)
}

/// Claims a connection on the client's first telling command (the `220` banner is also SMTP's).
/// `AUTH` counts only with an FTP mechanism (`TLS`, `SSL`, `TLS-C`, `TLS-P`); shared verbs
/// (`NOOP`, `QUIT`...) are skipped. The server side never claims: it only rules out a
/// connection whose first line is no reply.
pub fn probe(dir: Dir, first: &[u8]) -> Verdict {
    match dir {
        Dir::Orig => probe_client(first),
        Dir::Resp => probe_server(first),
    }
}

fn probe_client(first: &[u8]) -> Verdict {
    let mut rest = first;
    while !rest.is_empty() {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            // An incomplete line: keep waiting while it can still become a command.
            let plausible = rest.len() < 512 && rest.iter().take(5).all(|b| b.is_ascii_alphabetic() || *b == b' ');
            return if plausible { Verdict::NeedMore } else { Verdict::NoMatch };
        };
        let (line, tail) = rest.split_at(nl + 1);
        rest = tail;
        let Some(c) = parse::command(line) else { return Verdict::NoMatch };
        if SHARED_VERBS.contains(&c.verb.as_str()) {
            continue;
        }
        if c.verb == "AUTH" {
            let mech = c.arg.trim().to_ascii_uppercase();
            return if matches!(mech.as_str(), "TLS" | "SSL" | "TLS-C" | "TLS-P") {
                Verdict::Match
            } else {
                Verdict::NoMatch
            };
        }
        return if is_ftp_verb(&c.verb) { Verdict::Match } else { Verdict::NoMatch };
    }
    Verdict::NeedMore
}

fn probe_server(first: &[u8]) -> Verdict {
    let head = first.get(..first.len().min(4)).unwrap_or(&[]);
    let digits = head.iter().take(3).all(u8::is_ascii_digit);
    let sep_ok = head.get(3).is_none_or(|b| matches!(b, b' ' | b'-' | b'\r' | b'\n'));
    if digits && sep_ok {
        Verdict::NeedMore
    } else {
        Verdict::NoMatch
    }
}

/// A new control-connection analyzer.
pub fn analyzer() -> Box<dyn StreamAnalyzer> {
    Box::new(control::Control::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_decides_on_the_client() {
        assert_eq!(probe(Dir::Resp, b"220 pyftpdlib 2.2.0 ready.\r\n"), Verdict::NeedMore);
        assert_eq!(probe(Dir::Resp, b"+OK POP3\r\n"), Verdict::NoMatch);
        assert_eq!(probe(Dir::Orig, b"USER joe\r\n"), Verdict::Match);
        assert_eq!(probe(Dir::Orig, b"USE"), Verdict::NeedMore);
        assert_eq!(probe(Dir::Orig, b"FEAT\r\n"), Verdict::Match);
        assert_eq!(probe(Dir::Orig, b"NOOP\r\nSTOR x\r\n"), Verdict::Match);
        assert_eq!(probe(Dir::Orig, b"NOOP\r\n"), Verdict::NeedMore);
        assert_eq!(probe(Dir::Orig, b"AUTH TLS\r\n"), Verdict::Match);
        assert_eq!(probe(Dir::Orig, b"AUTH PLAIN dGVzdA==\r\n"), Verdict::NoMatch);
        assert_eq!(probe(Dir::Orig, b"EHLO client.example\r\n"), Verdict::NoMatch);
        assert_eq!(probe(Dir::Orig, b"HELO x\r\n"), Verdict::NoMatch);
        assert_eq!(probe(Dir::Orig, b"GET / HTTP/1.1\r\n"), Verdict::NoMatch);
        assert_eq!(probe(Dir::Orig, b"\x16\x03\x01\x02\x00"), Verdict::NoMatch);
    }
}
