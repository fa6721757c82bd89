//! The warrants file: which LIIDs exist, their windows, scopes and target identifiers.
//!
//! The file is TOML written by people, so every error names `file:line` and the offending value;
//! nothing in it may panic the parser. Top-level `[[lea]]` tables belong to delivery (a later
//! issue): they are kept raw and not interpreted here.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::{Liid, Scope};
use crate::decode::Mac;
use crate::record::Xid;
use crate::timestamp::Timestamp;

/// A target identifier as written in a warrant (`kind:value`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TargetId {
    /// A cloud subscriber (tenant / user) id.
    Subscriber(String),
    /// `ipv4:` or `ipv6:`, matched in the underlay and inside any overlay.
    Ip(IpAddr),
    Cidr(IpNet),
    Mac(Mac),
    /// An address that only means something inside one overlay network.
    VniAddr(u32, IpAddr),
    Email(String),
    Vm(String),
    Image(String),
    ImageSha256([u8; 32]),
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetId::Subscriber(s) => write!(f, "subscriber:{s}"),
            TargetId::Ip(IpAddr::V4(a)) => write!(f, "ipv4:{a}"),
            TargetId::Ip(IpAddr::V6(a)) => write!(f, "ipv6:{a}"),
            TargetId::Cidr(n) => write!(f, "cidr:{n}"),
            TargetId::Mac(m) => write!(f, "mac:{}", MacDisplay(m)),
            TargetId::VniAddr(v, a) => write!(f, "vni:{v}/{a}"),
            TargetId::Email(e) => write!(f, "email:{e}"),
            TargetId::Vm(v) => write!(f, "vm:{v}"),
            TargetId::Image(i) => write!(f, "image:{i}"),
            TargetId::ImageSha256(h) => write!(f, "image-sha256:{}", hex::encode(h)),
        }
    }
}

/// Formats a MAC as `02:00:00:00:00:07`.
pub struct MacDisplay<'a>(pub &'a Mac);

impl fmt::Display for MacDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

/// Parses `02:00:00:00:00:07` (or with `-` separators), case-insensitive.
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for byte in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(out)
}

/// Cloud identifiers (subscriber, VM, image ids) are opaque, but never empty and never contain
/// whitespace or control characters: those are typos, not ids.
fn valid_cloud_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn valid_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && s.len() <= 320
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

impl FromStr for TargetId {
    type Err = String;

    /// Parses `kind:value`; the error says what is wrong with the value.
    fn from_str(s: &str) -> Result<TargetId, String> {
        let (kind, value) = s.split_once(':').ok_or_else(|| "expected kind:value".to_string())?;
        match kind {
            "subscriber" | "vm" | "image" => {
                if !valid_cloud_id(value) {
                    return Err(format!("{kind} id must be non-empty without whitespace"));
                }
                Ok(match kind {
                    "subscriber" => TargetId::Subscriber(value.to_string()),
                    "vm" => TargetId::Vm(value.to_string()),
                    _ => TargetId::Image(value.to_string()),
                })
            }
            "ipv4" => value
                .parse::<std::net::Ipv4Addr>()
                .map(|a| TargetId::Ip(IpAddr::V4(a)))
                .map_err(|_| "not an IPv4 address".to_string()),
            "ipv6" => value
                .parse::<std::net::Ipv6Addr>()
                .map(|a| TargetId::Ip(IpAddr::V6(a)))
                .map_err(|_| "not an IPv6 address".to_string()),
            "cidr" => {
                let net: IpNet = value.parse().map_err(|_| "not an address/prefix".to_string())?;
                // A set host part usually means a mistyped prefix; widening it silently would
                // intercept more than the warrant says.
                if net.trunc() != net {
                    return Err(format!("host bits set; the network is {}", net.trunc()));
                }
                Ok(TargetId::Cidr(net))
            }
            "mac" => parse_mac(value).map(TargetId::Mac).ok_or_else(|| "not a MAC address".to_string()),
            "vni" => {
                let (vni, addr) = value.split_once('/').ok_or_else(|| "expected vni:N/address".to_string())?;
                let vni: u32 = vni.parse().map_err(|_| format!("VNI {vni:?} is not a 32-bit number"))?;
                let addr: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
                Ok(TargetId::VniAddr(vni, addr))
            }
            "email" => {
                if !valid_email(value) {
                    return Err("not an email address".to_string());
                }
                Ok(TargetId::Email(value.to_string()))
            }
            "image-sha256" => {
                let mut h = [0u8; 32];
                if value.len() != 64 || hex::decode_to_slice(value, &mut h).is_err() {
                    return Err("expected 64 hex digits".to_string());
                }
                Ok(TargetId::ImageSha256(h))
            }
            other => Err(format!("unknown target kind {other:?}")),
        }
    }
}

/// One warrant (task).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warrant {
    pub liid: Liid,
    /// Interception only inside `[start, end)`.
    pub start: Timestamp,
    pub end: Timestamp,
    pub scope: Scope,
    pub targets: Vec<TargetId>,
    /// Name of the `[[lea]]` this warrant delivers to, if not the default.
    pub lea: Option<String>,
    /// The X1 task's XID, which X2/X3 PDUs carry instead of the LIID: given (`xid`, or the X1
    /// task's), else derived from the LIID ([`Xid::derived`]).
    pub xid: Xid,
    /// Line of the warrant's table in its file, for messages.
    pub line: usize,
}

impl Warrant {
    /// Whether the warrant is in force at `now`.
    pub fn active(&self, now: Timestamp) -> bool {
        self.start <= now && now < self.end
    }
}

/// The content of a warrants file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Warrants {
    pub warrants: Vec<Warrant>,
    /// The `[[lea]]` tables, uninterpreted (each a `toml::Value::Table`).
    pub lea: Vec<toml::Value>,
    /// X1 destinations by DID (a warrant from X1 names its DID as `lea`): where a POI sends a
    /// task's X2/X3 (its MDF). Empty for a warrants file.
    pub destinations: std::collections::BTreeMap<String, std::net::SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum WarrantError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Syntax { file: String, line: usize, message: String },
    #[error("{file}:{line}: bad LIID {liid:?}: {reason}")]
    BadLiid { file: String, line: usize, liid: String, reason: crate::record::LiidError },
    #[error("{file}:{line}: LIID {liid:?} already used at line {first_line}")]
    DuplicateLiid { file: String, line: usize, liid: String, first_line: usize },
    #[error("{file}:{line}: bad {field} time {value:?}: expected RFC 3339 with offset, e.g. 2026-01-01T00:00:00Z")]
    BadTime { file: String, line: usize, field: &'static str, value: String },
    #[error("{file}:{line}: end {end} is not after start {start}")]
    EmptyWindow { file: String, line: usize, start: String, end: String },
    #[error("{file}:{line}: bad scope {value:?}: expected \"iri+cc\", \"iri\" or \"cc\"")]
    BadScope { file: String, line: usize, value: String },
    #[error("{file}:{line}: bad target {value:?}: {reason}")]
    BadTarget { file: String, line: usize, value: String, reason: String },
    #[error("{file}:{line}: warrant has no targets")]
    NoTargets { file: String, line: usize },
    #[error("{file}:{line}: bad lea name {value:?}")]
    BadLea { file: String, line: usize, value: String },
    #[error("{file}:{line}: bad xid {value:?}: expected a UUID such as 2b36a78b-b628-416d-bd22-404e68a0cd36")]
    BadXid { file: String, line: usize, value: String },
    /// The file is not UTF-8 (TOML must be): where the first bad byte is.
    #[error("{file}:{line}: not UTF-8 (byte {offset} of the file)")]
    NotUtf8 { file: String, line: usize, offset: usize },
}

impl WarrantError {
    /// The 1-based line the error points at (0 for I/O errors).
    pub fn line(&self) -> usize {
        match self {
            WarrantError::Io { .. } => 0,
            WarrantError::Syntax { line, .. }
            | WarrantError::BadLiid { line, .. }
            | WarrantError::DuplicateLiid { line, .. }
            | WarrantError::BadTime { line, .. }
            | WarrantError::EmptyWindow { line, .. }
            | WarrantError::BadScope { line, .. }
            | WarrantError::BadTarget { line, .. }
            | WarrantError::NoTargets { line, .. }
            | WarrantError::BadLea { line, .. }
            | WarrantError::BadXid { line, .. }
            | WarrantError::NotUtf8 { line, .. } => *line,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    warrant: Vec<Spanned<RawWarrant>>,
    #[serde(default)]
    lea: Vec<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWarrant {
    liid: Spanned<String>,
    start: Spanned<toml::Value>,
    end: Spanned<toml::Value>,
    scope: Spanned<String>,
    targets: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    lea: Option<Spanned<String>>,
    #[serde(default)]
    xid: Option<Spanned<String>>,
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    LineIndex::new(text).line(offset)
}

/// Where each line of a text starts, so that the line of any offset is a binary search: a
/// warrants file with thousands of warrants, or one with 100 000 targets, asks it once per
/// value, and scanning from the start each time made parsing quadratic.
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// 1-based line of a byte offset (the last line for an offset past the end).
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset).max(1)
    }
}

fn parse_time(v: &toml::Value) -> Option<Timestamp> {
    match v {
        toml::Value::String(s) => Timestamp::parse_rfc3339(s),
        // A bare TOML offset date-time; local ones have no offset and are refused by the parser.
        toml::Value::Datetime(d) => Timestamp::parse_rfc3339(&d.to_string()),
        _ => None,
    }
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses a warrants file. `file` is only used in error messages.
pub fn parse_warrants(text: &str, file: &str) -> Result<Warrants, WarrantError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        let mut message = e.message().trim_end().to_string();
        // toml's messages do not say which key a type error is about; quoting the line does.
        if let Some(src) = text.lines().nth(line.saturating_sub(1)).map(str::trim).filter(|l| !l.is_empty()) {
            let src: String = src.chars().take(80).collect();
            message.push_str(&format!(" (in `{src}`)"));
        }
        WarrantError::Syntax { file: file.to_string(), line, message }
    })?;
    let f = || file.to_string();
    let lines = LineIndex::new(text);
    let at = |span: std::ops::Range<usize>| lines.line(span.start);
    let mut warrants: Vec<Warrant> = Vec::with_capacity(raw.warrant.len());
    let mut seen_liids: std::collections::HashMap<Liid, usize> = std::collections::HashMap::new();
    for rw in raw.warrant {
        // The span of an array-of-tables element is its `[[warrant]]` header.
        let line = at(rw.span());
        let rw = rw.into_inner();

        let liid_line = at(rw.liid.span());
        let text_liid = rw.liid.into_inner();
        let liid = Liid::new(&text_liid).map_err(|reason| WarrantError::BadLiid {
            file: f(),
            line: liid_line,
            liid: text_liid.clone(),
            reason,
        })?;
        if let Some(&first_line) = seen_liids.get(&liid) {
            return Err(WarrantError::DuplicateLiid { file: f(), line: liid_line, liid: text_liid, first_line });
        }
        seen_liids.insert(liid.clone(), line);

        let start = parse_time(rw.start.get_ref()).ok_or_else(|| WarrantError::BadTime {
            file: f(),
            line: at(rw.start.span()),
            field: "start",
            value: value_text(rw.start.get_ref()),
        })?;
        let end = parse_time(rw.end.get_ref()).ok_or_else(|| WarrantError::BadTime {
            file: f(),
            line: at(rw.end.span()),
            field: "end",
            value: value_text(rw.end.get_ref()),
        })?;
        if end <= start {
            return Err(WarrantError::EmptyWindow {
                file: f(),
                line: at(rw.end.span()),
                start: value_text(rw.start.get_ref()),
                end: value_text(rw.end.get_ref()),
            });
        }

        let scope = match rw.scope.get_ref().as_str() {
            "iri+cc" => Scope::IriAndCc,
            "iri" => Scope::Iri,
            "cc" => Scope::Cc,
            other => {
                return Err(WarrantError::BadScope { file: f(), line: at(rw.scope.span()), value: other.to_string() })
            }
        };

        let targets_line = at(rw.targets.span());
        let mut targets = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for t in rw.targets.into_inner() {
            let tl = at(t.span());
            let id = t.get_ref().parse::<TargetId>().map_err(|reason| WarrantError::BadTarget {
                file: f(),
                line: tl,
                value: t.get_ref().clone(),
                reason,
            })?;
            if seen.insert(id.clone()) {
                targets.push(id);
            }
        }
        if targets.is_empty() {
            return Err(WarrantError::NoTargets { file: f(), line: targets_line });
        }

        let lea = match rw.lea {
            Some(l) => {
                if !valid_cloud_id(l.get_ref()) {
                    return Err(WarrantError::BadLea { file: f(), line: at(l.span()), value: l.into_inner() });
                }
                Some(l.into_inner())
            }
            None => None,
        };

        let xid = match rw.xid {
            Some(x) => Xid::parse(x.get_ref()).ok_or_else(|| WarrantError::BadXid {
                file: f(),
                line: at(x.span()),
                value: x.into_inner(),
            })?,
            None => Xid::derived(&liid),
        };
        warrants.push(Warrant { liid, start, end, scope, targets, lea, xid, line });
    }
    Ok(Warrants {
        warrants,
        lea: raw.lea.into_iter().map(toml::Value::Table).collect(),
        destinations: Default::default(),
    })
}

/// Reads and parses a warrants file.
pub fn load_warrants(path: &Path) -> Result<Warrants, WarrantError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| WarrantError::Io { file: file.clone(), source })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes().get(..offset).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count()) + 1;
        WarrantError::NotUtf8 { file: file.clone(), line, offset }
    })?;
    parse_warrants(&text, &file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_ids_round_trip_through_display() {
        for s in [
            "subscriber:joe",
            "ipv4:198.51.100.7",
            "ipv6:2001:db8::7",
            "cidr:10.9.0.0/24",
            "mac:02:00:00:00:00:07",
            "vni:5001/10.0.0.5",
            "email:joe@example.net",
            "vm:vm-42",
            "image:img-9",
            "image-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            let t: TargetId = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
        }
    }

    #[test]
    fn bad_target_ids_are_refused() {
        for s in [
            "ipv4:2001:db8::1",
            "ipv6:1.2.3.4",
            "cidr:10.9.0.1/24",
            "cidr:10.9.0.0/33",
            "mac:02:00:00:00:00",
            "mac:02:00:00:00:00:07:08",
            "mac:0g:00:00:00:00:07",
            "vni:5001",
            "vni:x/10.0.0.5",
            "vni:4294967296/10.0.0.5",
            "email:joe",
            "email:@example.net",
            "subscriber:",
            "subscriber:jo e",
            "image-sha256:abcd",
            "phone:123",
            "joe",
        ] {
            assert!(s.parse::<TargetId>().is_err(), "{s} accepted");
        }
    }

    #[test]
    fn line_of_counts_newlines() {
        let t = "a\nb\nc";
        assert_eq!(line_of(t, 0), 1);
        assert_eq!(line_of(t, 2), 2);
        assert_eq!(line_of(t, 4), 3);
        assert_eq!(line_of(t, 99), 3);
    }
}
