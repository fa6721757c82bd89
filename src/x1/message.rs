//! X1 (ETSI TS 103 221-1 v1.22.1) requests in, responses out.
//!
//! Parsing is in two steps. [`parse_dom`] turns the body into a small element tree under hard
//! limits: a size limit, no DTD (a `<!DOCTYPE` or `<!ENTITY` anywhere refuses the body before the
//! XML reader sees it, so no entity is ever expanded), only the five predefined entities and
//! character references, a depth limit and an element-count limit. Then the typed readers walk
//! the tree strictly in the XSD's sequence order: an element the schema does not allow where it
//! stands is a syntax error (1010), one the schema allows but tapir cannot honour is refused with
//! the matching clause 6.7 code rather than ignored, because an ignored constraint on a task is a
//! warrant that intercepts more (or other) than it says.
//!
//! No-panic contract: nothing here indexes without a check or unwraps a value derived from the
//! body; every failure is an [`X1Fault`] (answered per message) or a [`ParseError`] (answered with
//! `X1TopLevelErrorResponse`).
//!
//! Error texts never quote target identifiers: they end up in audit records.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;
use quick_xml::name::{QName, ResolveResult};
use quick_xml::NsReader;
use serde::{Deserialize, Serialize};

use crate::select::TargetId;
use crate::timestamp::Timestamp;

pub const NS_X1: &str = "http://uri.etsi.org/03221/X1/2017/10";
pub const NS_280: &str = "http://uri.etsi.org/03280/common/2017/07";
pub const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// tapir's own namespace for `targetIdentifierExtension` content (`schemas/tapir-x1-ext.xsd`).
pub const NS_TAPIR: &str = "urn:tapir:x1:target-extension:1";
/// The `Owner` tapir writes and expects in a `targetIdentifierExtension`.
pub const TAPIR_OWNER: &str = "tapir";
/// The X1 version tapir speaks (the shared schema's).
pub const X1_VERSION: &str = "v1.22.1";

/// Bounds on what the core parses; the HTTPS server has its own, usually smaller, body limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
    pub max_attributes: usize,
    /// `x1RequestMessage`s per `X1Request`.
    pub max_messages: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_body_bytes: 1 << 20, max_depth: 32, max_elements: 20_000, max_attributes: 16, max_messages: 64 }
    }
}

/// Why a body is not X1 at all; answered with `X1TopLevelErrorResponse`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("body is not UTF-8 (byte {at})")]
    NotUtf8 { at: usize },
    #[error("DTDs are refused (DOCTYPE or ENTITY declaration at byte {at})")]
    Dtd { at: usize },
    #[error("malformed XML at byte {at}: {message}")]
    Xml { at: u64, message: String },
    #[error("elements nested deeper than {limit}")]
    TooDeep { limit: usize },
    #[error("more than {limit} elements")]
    TooManyElements { limit: usize },
    #[error("an element has more than {limit} attributes")]
    TooManyAttributes { limit: usize },
    #[error("more than {limit} x1RequestMessage elements")]
    TooManyMessages { limit: usize },
    #[error("not an X1 request: {0}")]
    NotX1(String),
}

/// The clause 6.7 error codes tapir emits.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Generic = 1000,
    Syntax = 1010,
    AdmfIdentifierMismatch = 1030,
    UnexpectedAdmfIdentifier = 1040,
    UnexpectedNeIdentifier = 1060,
    UnsupportedRequest = 1080,
    XidAlreadyExists = 2010,
    XidDoesNotExist = 2020,
    DidAlreadyExists = 2030,
    DidDoesNotExist = 2040,
    ActivateTaskFailure = 3000,
    ModifyTaskFailure = 3001,
    UnsupportedTargetType = 3010,
    MultipleDestinationsNotSupported = 3030,
    DeliveryTypeAndDestinations = 3040,
    UnsupportedServiceType = 3050,
    CreateDestinationFailure = 6000,
    ModifyDestinationFailure = 6001,
    UnsupportedDeliveryAddress = 6020,
    DestinationInUse = 7010,
    DestinationsInUse = 8010,
    NonTerminatingFault = 9020,
}

impl ErrorCode {
    pub fn number(self) -> u32 {
        self as u32
    }
}

/// A per-message failure: answered with an `ErrorResponse` carrying `code`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X1Fault {
    pub code: ErrorCode,
    pub description: String,
}

impl X1Fault {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> X1Fault {
        X1Fault { code, description: description.into() }
    }
    fn syntax(description: impl Into<String>) -> X1Fault {
        X1Fault::new(ErrorCode::Syntax, description)
    }
}

impl fmt::Display for X1Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.number(), self.description)
    }
}

// ------------------------------------------------------------------------------------------
// The element tree
// ------------------------------------------------------------------------------------------

/// One element: resolved namespace, local name, `xsi:type` (resolved) and content.
#[derive(Debug, Default)]
pub(crate) struct Node {
    pub ns: Option<String>,
    pub name: String,
    pub xsi_type: Option<(Option<String>, String)>,
    pub children: Vec<Node>,
    pub text: String,
}

impl Node {
    fn is(&self, ns: &str, name: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.name == name
    }
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
}

fn ns_of(r: ResolveResult<'_>) -> Result<Option<String>, String> {
    match r {
        ResolveResult::Bound(ns) => Ok(Some(String::from_utf8_lossy(ns.as_ref()).into_owned())),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(p) => Err(format!("undeclared namespace prefix {:?}", String::from_utf8_lossy(&p))),
    }
}

/// Parses `body` into an element tree under `limits`.
pub(crate) fn parse_dom(body: &[u8], limits: &Limits) -> Result<Node, ParseError> {
    if body.len() > limits.max_body_bytes {
        return Err(ParseError::TooLarge { size: body.len(), limit: limits.max_body_bytes });
    }
    // Refused before any parsing: a DTD is the only way to declare entities, and X1 has none.
    for needle in [&b"<!DOCTYPE"[..], b"<!ENTITY"] {
        if let Some(at) = find_ci(body, needle) {
            return Err(ParseError::Dtd { at });
        }
    }
    let text = std::str::from_utf8(body).map_err(|e| ParseError::NotUtf8 { at: e.valid_up_to() })?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    let xml_err = |reader: &NsReader<&[u8]>, message: String| ParseError::Xml { at: reader.buffer_position(), message };

    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut elements = 0usize;
    loop {
        let (resolved, event) = match reader.read_resolved_event() {
            Ok(x) => x,
            Err(e) => return Err(ParseError::Xml { at: reader.error_position(), message: e.to_string() }),
        };
        let ns = ns_of(resolved);
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let ns = ns.map_err(|m| xml_err(&reader, m))?;
                elements += 1;
                if elements > limits.max_elements {
                    return Err(ParseError::TooManyElements { limit: limits.max_elements });
                }
                if stack.len() >= limits.max_depth {
                    return Err(ParseError::TooDeep { limit: limits.max_depth });
                }
                if root.is_some() {
                    return Err(xml_err(&reader, "a second root element".into()));
                }
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                let mut xsi_type = None;
                for (n, attr) in e.attributes().enumerate() {
                    if n >= limits.max_attributes {
                        return Err(ParseError::TooManyAttributes { limit: limits.max_attributes });
                    }
                    let attr = attr.map_err(|e| xml_err(&reader, e.to_string()))?;
                    let (ans, local) = reader.resolver().resolve_attribute(attr.key);
                    let ans = ns_of(ans).map_err(|m| xml_err(&reader, m))?;
                    if ans.as_deref() == Some(NS_XSI) && local.as_ref() == b"type" {
                        let v = attr
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .map_err(|e| xml_err(&reader, e.to_string()))?;
                        let v = v.trim();
                        let (tns, tlocal) = reader.resolver().resolve_element(QName(v.as_bytes()));
                        let tns = ns_of(tns).map_err(|m| xml_err(&reader, m))?;
                        xsi_type = Some((tns, String::from_utf8_lossy(tlocal.as_ref()).into_owned()));
                    }
                }
                let node = Node { ns, name, xsi_type, children: Vec::new(), text: String::new() };
                if empty {
                    attach(&mut stack, &mut root, node);
                } else {
                    stack.push(node);
                }
            }
            Event::End(_) => match stack.pop() {
                Some(node) => attach(&mut stack, &mut root, node),
                None => return Err(xml_err(&reader, "end tag without start".into())),
            },
            Event::Text(t) => {
                let s = t.decode().map_err(|e| xml_err(&reader, e.to_string()))?;
                push_text(&mut stack, &s).map_err(|m| xml_err(&reader, m))?;
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| xml_err(&reader, e.to_string()))?;
                push_text(&mut stack, &s).map_err(|m| xml_err(&reader, m))?;
            }
            Event::GeneralRef(r) => {
                let ch = r.resolve_char_ref().map_err(|e| xml_err(&reader, e.to_string()))?;
                let s = match ch {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| xml_err(&reader, e.to_string()))?;
                        match resolve_predefined_entity(&name) {
                            Some(v) => v.to_string(),
                            None => return Err(xml_err(&reader, format!("undeclared entity &{name};"))),
                        }
                    }
                };
                if stack.is_empty() {
                    return Err(xml_err(&reader, "reference outside the root element".into()));
                }
                push_text(&mut stack, &s).map_err(|m| xml_err(&reader, m))?;
            }
            Event::DocType(_) => return Err(ParseError::Dtd { at: reader.buffer_position() as usize }),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(ParseError::Xml { at: reader.buffer_position(), message: "unclosed element".into() });
    }
    root.ok_or_else(|| ParseError::NotX1("no root element".into()))
}

fn attach(stack: &mut [Node], root: &mut Option<Node>, node: Node) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None => *root = Some(node),
    }
}

fn push_text(stack: &mut [Node], s: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(top) => {
            top.text.push_str(s);
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err("text outside the root element".into()),
    }
}

// ------------------------------------------------------------------------------------------
// Strict sequence reading
// ------------------------------------------------------------------------------------------

/// Reads an element's children in schema order.
struct Seq<'a> {
    parent: &'a str,
    kids: &'a [Node],
    i: usize,
}

impl<'a> Seq<'a> {
    fn of(node: &'a Node) -> Result<Seq<'a>, X1Fault> {
        if !node.text.trim().is_empty() {
            return Err(X1Fault::syntax(format!("<{}> has text where only elements are allowed", node.name)));
        }
        Ok(Seq { parent: &node.name, kids: &node.children, i: 0 })
    }
    fn peek(&self) -> Option<&'a Node> {
        self.kids.get(self.i)
    }
    fn opt_ns(&mut self, ns: &str, name: &str) -> Option<&'a Node> {
        match self.kids.get(self.i) {
            Some(k) if k.is(ns, name) => {
                self.i += 1;
                Some(k)
            }
            _ => None,
        }
    }
    fn opt(&mut self, name: &str) -> Option<&'a Node> {
        self.opt_ns(NS_X1, name)
    }
    fn req_ns(&mut self, ns: &str, name: &str) -> Result<&'a Node, X1Fault> {
        let parent = self.parent;
        let found = self.peek().map(|k| format!(", found <{}>", k.name)).unwrap_or_default();
        self.opt_ns(ns, name).ok_or_else(|| X1Fault::syntax(format!("<{parent}>: expected <{name}>{found}")))
    }
    fn req(&mut self, name: &str) -> Result<&'a Node, X1Fault> {
        self.req_ns(NS_X1, name)
    }
    fn many(&mut self, name: &str, max: usize) -> Result<Vec<&'a Node>, X1Fault> {
        let mut out = Vec::new();
        while let Some(k) = self.opt(name) {
            if out.len() >= max {
                return Err(X1Fault::syntax(format!("more than {max} <{name}> in <{}>", self.parent)));
            }
            out.push(k);
        }
        Ok(out)
    }
    /// Refuses a schema-valid element tapir cannot honour.
    fn unsupported(&mut self, name: &str, code: ErrorCode) -> Result<(), X1Fault> {
        if self.peek().is_some_and(|k| k.is(NS_X1, name)) {
            return Err(X1Fault::new(code, format!("<{name}> is not supported by tapir")));
        }
        Ok(())
    }
    fn end(&self) -> Result<(), X1Fault> {
        match self.peek() {
            Some(k) => Err(X1Fault::syntax(format!("unexpected <{}> in <{}>", k.name, self.parent))),
            None => Ok(()),
        }
    }
}

/// The trimmed text of an element that must not have children.
fn leaf(node: &Node) -> Result<&str, X1Fault> {
    if let Some(k) = node.children.first() {
        return Err(X1Fault::syntax(format!("<{}> must not contain <{}>", node.name, k.name)));
    }
    Ok(node.text.trim())
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

fn uuid(node: &Node) -> Result<String, X1Fault> {
    let s = leaf(node)?;
    if !is_uuid(s) {
        return Err(X1Fault::syntax(format!("<{}> is not a lower-case UUID", node.name)));
    }
    Ok(s.to_string())
}

fn token(node: &Node) -> Result<String, X1Fault> {
    let s = leaf(node)?;
    if s.is_empty() || s.len() > 256 || s.chars().any(|c| c.is_control()) {
        return Err(X1Fault::syntax(format!("<{}> must be 1..256 printable characters", node.name)));
    }
    Ok(s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `QualifiedMicrosecondDateTime`: `YYYY-MM-DDTHH:MM:SS.ffffff` then `Z` or `+hh:mm`.
fn is_qualified_micro(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    let head = b.len() >= 27
        && digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19)
        && b.get(19) == Some(&b'.')
        && digits(20..26);
    let tail = b.get(26..).unwrap_or_default();
    head && (tail == b"Z"
        || (tail.len() == 6
            && (tail[0] == b'+' || tail[0] == b'-')
            && tail[1..3].iter().all(u8::is_ascii_digit)
            && tail[3] == b':'
            && tail[4..6].iter().all(u8::is_ascii_digit)))
}

fn date_time(node: &Node) -> Result<String, X1Fault> {
    let s = leaf(node)?;
    if !is_qualified_micro(s) || Timestamp::parse_rfc3339(s).is_none() {
        return Err(X1Fault::syntax(format!("<{}> is not a date-time with microseconds and offset", node.name)));
    }
    Ok(s.to_string())
}

/// Formats `t` as a `QualifiedMicrosecondDateTime` in UTC.
pub fn x1_time(t: Timestamp) -> String {
    match chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()) {
        Some(dt) => dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        None => "1970-01-01T00:00:00.000000Z".to_string(),
    }
}

fn boolean(node: &Node) -> Result<bool, X1Fault> {
    match leaf(node)? {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(X1Fault::syntax(format!("<{}> is not a boolean", node.name))),
    }
}

// ------------------------------------------------------------------------------------------
// Typed requests
// ------------------------------------------------------------------------------------------

/// The five fields every request message starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub admf_identifier: String,
    pub ne_identifier: String,
    pub message_timestamp: String,
    pub version: String,
    pub transaction_id: String,
}

/// `DeliveryType` of a task or destination (X2 = IRI, X3 = CC).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryType {
    X2Only,
    X3Only,
    X2andX3,
}

impl DeliveryType {
    fn parse(node: &Node) -> Result<DeliveryType, X1Fault> {
        match leaf(node)? {
            "X2Only" => Ok(DeliveryType::X2Only),
            "X3Only" => Ok(DeliveryType::X3Only),
            "X2andX3" => Ok(DeliveryType::X2andX3),
            _ => Err(X1Fault::syntax(format!("<{}> is not a DeliveryType", node.name))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryType::X2Only => "X2Only",
            DeliveryType::X3Only => "X3Only",
            DeliveryType::X2andX3 => "X2andX3",
        }
    }
    /// (IRI, CC)
    pub fn parts(self) -> (bool, bool) {
        match self {
            DeliveryType::X2Only => (true, false),
            DeliveryType::X3Only => (false, true),
            DeliveryType::X2andX3 => (true, true),
        }
    }
}

/// `MediationDeliveryType` (HI2 = IRI, HI3 = CC).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediationDeliveryType {
    HI2Only,
    HI3Only,
    HI2andHI3,
}

impl MediationDeliveryType {
    fn parse(node: &Node) -> Result<MediationDeliveryType, X1Fault> {
        match leaf(node)? {
            "HI2Only" => Ok(MediationDeliveryType::HI2Only),
            "HI3Only" => Ok(MediationDeliveryType::HI3Only),
            "HI2andHI3" => Ok(MediationDeliveryType::HI2andHI3),
            _ => Err(X1Fault::syntax(format!("<{}> is not a MediationDeliveryType", node.name))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            MediationDeliveryType::HI2Only => "HI2Only",
            MediationDeliveryType::HI3Only => "HI3Only",
            MediationDeliveryType::HI2andHI3 => "HI2andHI3",
        }
    }
    /// (IRI, CC)
    pub fn parts(self) -> (bool, bool) {
        match self {
            MediationDeliveryType::HI2Only => (true, false),
            MediationDeliveryType::HI3Only => (false, true),
            MediationDeliveryType::HI2andHI3 => (true, true),
        }
    }
}

/// A target identifier tapir can intercept on. Values are kept in tapir's canonical text form
/// (what follows `kind:` in a warrants file), so conversion to [`TargetId`] reuses its checks.
/// `Debug` prints the kind only: target identities must not reach logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum X1Target {
    Ipv4(String),
    Ipv6(String),
    Ipv4Cidr(String),
    Ipv6Cidr(String),
    Mac(String),
    Email(String),
    Subscriber(String),
    Vm(String),
    Image(String),
    ImageSha256(String),
    Vni { vni: u32, address: String },
}

impl fmt::Debug for X1Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "X1Target::{}(<redacted>)", self.kind())
    }
}

impl X1Target {
    pub fn kind(&self) -> &'static str {
        match self {
            X1Target::Ipv4(_) => "ipv4Address",
            X1Target::Ipv6(_) => "ipv6Address",
            X1Target::Ipv4Cidr(_) => "ipv4Cidr",
            X1Target::Ipv6Cidr(_) => "ipv6Cidr",
            X1Target::Mac(_) => "macAddress",
            X1Target::Email(_) => "emailAddress",
            X1Target::Subscriber(_) => "subscriber",
            X1Target::Vm(_) => "vm",
            X1Target::Image(_) => "image",
            X1Target::ImageSha256(_) => "imageSha256",
            X1Target::Vni { .. } => "vniAddress",
        }
    }

    /// The warrant target; the error names the problem, never the value.
    pub fn target_id(&self) -> Result<TargetId, String> {
        let text = match self {
            X1Target::Ipv4(v) => format!("ipv4:{v}"),
            X1Target::Ipv6(v) => format!("ipv6:{v}"),
            X1Target::Ipv4Cidr(v) | X1Target::Ipv6Cidr(v) => format!("cidr:{v}"),
            X1Target::Mac(v) => format!("mac:{v}"),
            X1Target::Email(v) => format!("email:{v}"),
            X1Target::Subscriber(v) => format!("subscriber:{v}"),
            X1Target::Vm(v) => format!("vm:{v}"),
            X1Target::Image(v) => format!("image:{v}"),
            X1Target::ImageSha256(v) => format!("image-sha256:{v}"),
            X1Target::Vni { vni, address } => format!("vni:{vni}/{address}"),
        };
        text.parse::<TargetId>().map_err(|reason| {
            if reason.starts_with("host bits set") {
                "host bits set".to_string()
            } else {
                "not a valid value".to_string()
            }
        })
    }
}

/// The full lower-case form TS 103 280 `IPv6Address` requires (no `::`).
pub fn ipv6_full(a: &Ipv6Addr) -> String {
    let s = a.segments();
    format!("{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}", s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
}

fn bad_target(n: usize, kind: &str) -> X1Fault {
    X1Fault::syntax(format!("targetIdentifier #{n}: <{kind}> is not a valid value"))
}

fn parse_target(n: usize, node: &Node) -> Result<X1Target, X1Fault> {
    let mut seq = Seq::of(node)?;
    let Some(choice) = seq.peek() else {
        return Err(X1Fault::syntax(format!("targetIdentifier #{n} is empty")));
    };
    seq.i += 1;
    seq.end()?;
    if choice.ns.as_deref() != Some(NS_X1) {
        return Err(X1Fault::syntax(format!("targetIdentifier #{n}: unexpected <{}>", choice.name)));
    }
    let kind = choice.name.as_str();
    let t = match kind {
        "ipv4Address" => {
            let v = leaf(choice)?;
            let a: Ipv4Addr = v.parse().map_err(|_| bad_target(n, kind))?;
            X1Target::Ipv4(a.to_string())
        }
        "ipv6Address" => {
            let a: Ipv6Addr = leaf(choice)?.parse().map_err(|_| bad_target(n, kind))?;
            X1Target::Ipv6(a.to_string())
        }
        "ipv4Cidr" => {
            let mut inner = Seq::of(choice)?;
            let c = inner.req_ns(NS_280, "IPv4CIDR").map_err(|_| bad_target(n, kind))?;
            inner.end()?;
            let v = leaf(c)?;
            let net: ipnet::Ipv4Net = v.parse().map_err(|_| bad_target(n, kind))?;
            X1Target::Ipv4Cidr(net.to_string())
        }
        "ipv6Cidr" => {
            let net: ipnet::Ipv6Net = leaf(choice)?.parse().map_err(|_| bad_target(n, kind))?;
            X1Target::Ipv6Cidr(net.to_string())
        }
        "macAddress" => {
            let v = leaf(choice)?;
            let m = crate::select::warrant::parse_mac(v).ok_or_else(|| bad_target(n, kind))?;
            X1Target::Mac(crate::select::warrant::MacDisplay(&m).to_string())
        }
        "emailAddress" => X1Target::Email(leaf(choice)?.to_string()),
        "targetIdentifierExtension" => parse_extension(n, choice)?,
        other => {
            return Err(X1Fault::new(
                ErrorCode::UnsupportedTargetType,
                format!("targetIdentifier #{n}: type {other} is not supported by tapir"),
            ))
        }
    };
    Ok(t)
}

fn parse_extension(n: usize, node: &Node) -> Result<X1Target, X1Fault> {
    let unsupported = || {
        X1Fault::new(
            ErrorCode::UnsupportedTargetType,
            format!("targetIdentifier #{n}: only tapir's cloudTarget extension ({NS_TAPIR}) is supported"),
        )
    };
    let mut seq = Seq::of(node)?;
    let owner = seq.req("Owner")?;
    if leaf(owner)? != TAPIR_OWNER {
        return Err(unsupported());
    }
    let ct = seq.opt_ns(NS_TAPIR, "cloudTarget").ok_or_else(unsupported)?;
    if let Some(k) = seq.peek() {
        if k.ns.as_deref() == Some(NS_X1) {
            return Err(X1Fault::syntax(format!("unexpected <{}> in targetIdentifierExtension", k.name)));
        }
        return Err(unsupported());
    }
    let mut inner = Seq::of(ct)?;
    let Some(c) = inner.peek() else {
        return Err(bad_target(n, "cloudTarget"));
    };
    inner.i += 1;
    inner.end()?;
    if c.ns.as_deref() != Some(NS_TAPIR) {
        return Err(bad_target(n, "cloudTarget"));
    }
    let kind = c.name.as_str();
    let t = match kind {
        "subscriber" => X1Target::Subscriber(leaf(c)?.to_string()),
        "vm" => X1Target::Vm(leaf(c)?.to_string()),
        "image" => X1Target::Image(leaf(c)?.to_string()),
        "imageSha256" => X1Target::ImageSha256(leaf(c)?.to_string()),
        "vniAddress" => {
            let mut s = Seq::of(c)?;
            let vni = s.req_ns(NS_TAPIR, "vni")?;
            let addr = s.req_ns(NS_TAPIR, "address")?;
            s.end()?;
            let vni: u32 = leaf(vni)?.parse().map_err(|_| bad_target(n, "vni"))?;
            if vni > 0x00ff_ffff {
                return Err(bad_target(n, "vni"));
            }
            let a: IpAddr = leaf(addr)?.parse().map_err(|_| bad_target(n, "address"))?;
            X1Target::Vni { vni, address: a.to_string() }
        }
        _ => return Err(bad_target(n, "cloudTarget")),
    };
    // Cloud ids, hashes and addresses are checked by TargetId's own parser.
    t.target_id().map_err(|_| bad_target(n, kind))?;
    Ok(t)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediationDetails {
    pub liid: String,
    pub delivery: MediationDeliveryType,
    pub start: Option<String>,
    pub end: Option<String>,
    pub dids: Option<Vec<String>>,
}

/// `TaskDetails`, as much of it as tapir honours (everything else is refused).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDetails {
    pub xid: String,
    pub targets: Vec<X1Target>,
    pub delivery: DeliveryType,
    pub dids: Vec<String>,
    pub mediation: Option<Vec<MediationDetails>>,
    pub correlation_id: Option<String>,
    pub implicit_deactivation_allowed: Option<bool>,
    pub product_id: Option<String>,
}

const MAX_LIST: usize = 256;

fn list_of_dids(node: &Node) -> Result<Vec<String>, X1Fault> {
    let mut seq = Seq::of(node)?;
    let dids = seq.many("dId", MAX_LIST)?.into_iter().map(uuid).collect::<Result<Vec<_>, _>>()?;
    if seq.peek().is_some_and(|k| k.is(NS_X1, "dSId")) {
        return Err(X1Fault::new(ErrorCode::DeliveryTypeAndDestinations, "destination sets (dSId) are not supported"));
    }
    seq.end()?;
    Ok(dids)
}

fn parse_liid(node: &Node) -> Result<String, X1Fault> {
    let s = leaf(node)?;
    let short = (1..=25).contains(&s.len()) && s.bytes().all(|b| (b'!'..=b'~').contains(&b));
    let long = (26..=50).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !(short || long) {
        return Err(X1Fault::syntax("LIID must be 1..25 printable characters or 26..50 hex digits"));
    }
    Ok(s.to_string())
}

fn parse_mediation(node: &Node) -> Result<MediationDetails, X1Fault> {
    let mut seq = Seq::of(node)?;
    let liid = parse_liid(seq.req("LIID")?)?;
    let delivery = MediationDeliveryType::parse(seq.req("deliveryType")?)?;
    let start = seq.opt("StartTime").map(date_time).transpose()?;
    let end = seq.opt("EndTime").map(date_time).transpose()?;
    let dids = seq.opt("listOfDIDs").map(list_of_dids).transpose()?;
    for name in ["mediationDetailsExtensions", "serviceScopingOptions", "listOfTrafficPolicyReferences"] {
        seq.unsupported(name, ErrorCode::ActivateTaskFailure)?;
    }
    seq.end()?;
    Ok(MediationDetails { liid, delivery, start, end, dids })
}

fn parse_task_details(node: &Node) -> Result<TaskDetails, X1Fault> {
    let mut seq = Seq::of(node)?;
    let xid = uuid(seq.req("xId")?)?;
    let tnode = seq.req("targetIdentifiers")?;
    let mut tseq = Seq::of(tnode)?;
    let tis = tseq.many("targetIdentifier", MAX_LIST)?;
    tseq.end()?;
    if tis.is_empty() {
        return Err(X1Fault::syntax("targetIdentifiers is empty"));
    }
    let targets = tis.iter().enumerate().map(|(i, t)| parse_target(i + 1, t)).collect::<Result<Vec<_>, _>>()?;
    let delivery = DeliveryType::parse(seq.req("deliveryType")?)?;
    let dids = list_of_dids(seq.req("listOfDIDs")?)?;
    let mediation = match seq.opt("listOfMediationDetails") {
        Some(l) => {
            let mut ms = Seq::of(l)?;
            let items = ms.many("mediationDetails", MAX_LIST)?;
            ms.end()?;
            Some(items.into_iter().map(parse_mediation).collect::<Result<Vec<_>, _>>()?)
        }
        None => None,
    };
    let correlation_id = match seq.opt("correlationID") {
        Some(c) => {
            let v = leaf(c)?;
            if v.is_empty() || v.len() > 40 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(X1Fault::syntax("correlationID is not a non-negative integer"));
            }
            Some(v.to_string())
        }
        None => None,
    };
    let implicit_deactivation_allowed = seq.opt("implicitDeactivationAllowed").map(boolean).transpose()?;
    let product_id = seq.opt("productID").map(uuid).transpose()?;
    seq.unsupported("listOfServiceTypes", ErrorCode::UnsupportedServiceType)?;
    seq.unsupported("taskDetailsExtensions", ErrorCode::ActivateTaskFailure)?;
    seq.unsupported("listOfTrafficPolicyReferences", ErrorCode::ActivateTaskFailure)?;
    seq.end()?;
    Ok(TaskDetails {
        xid,
        targets,
        delivery,
        dids,
        mediation,
        correlation_id,
        implicit_deactivation_allowed,
        product_id,
    })
}

/// `DestinationDetails` with an `ipAddressAndPort` delivery address (TCP).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationDetails {
    pub did: String,
    pub friendly_name: Option<String>,
    pub delivery: DeliveryType,
    pub address: IpAddr,
    pub port: u16,
}

fn parse_destination(node: &Node) -> Result<DestinationDetails, X1Fault> {
    let mut seq = Seq::of(node)?;
    let did = uuid(seq.req("dId")?)?;
    let friendly_name = match seq.opt("friendlyName") {
        Some(f) => {
            let v = leaf(f)?;
            if v.len() > 255 || v.chars().any(char::is_control) {
                return Err(X1Fault::syntax("friendlyName must be at most 255 printable characters"));
            }
            Some(v.to_string())
        }
        None => None,
    };
    let delivery = DeliveryType::parse(seq.req("deliveryType")?)?;
    let da = seq.req("deliveryAddress")?;
    seq.unsupported("destinationDetailsExtensions", ErrorCode::CreateDestinationFailure)?;
    seq.end()?;
    let mut dseq = Seq::of(da)?;
    let Some(choice) = dseq.peek() else {
        return Err(X1Fault::syntax("deliveryAddress is empty"));
    };
    dseq.i += 1;
    dseq.end()?;
    if !choice.is(NS_X1, "ipAddressAndPort") {
        return Err(X1Fault::new(
            ErrorCode::UnsupportedDeliveryAddress,
            format!("deliveryAddress {} is not supported (only ipAddressAndPort)", choice.name),
        ));
    }
    let mut ap = Seq::of(choice)?;
    let addr = ap.req_ns(NS_280, "address")?;
    let port = ap.req_ns(NS_280, "port")?;
    ap.end()?;
    let mut aseq = Seq::of(addr)?;
    let address: IpAddr = if let Some(a) = aseq.opt_ns(NS_280, "IPv4Address") {
        IpAddr::V4(leaf(a)?.parse().map_err(|_| X1Fault::syntax("IPv4Address is not an IPv4 address"))?)
    } else {
        let a = aseq.req_ns(NS_280, "IPv6Address")?;
        IpAddr::V6(leaf(a)?.parse().map_err(|_| X1Fault::syntax("IPv6Address is not an IPv6 address"))?)
    };
    aseq.end()?;
    let mut pseq = Seq::of(port)?;
    if pseq.peek().is_some_and(|k| k.is(NS_280, "UDPPort")) {
        return Err(X1Fault::new(ErrorCode::UnsupportedDeliveryAddress, "UDP delivery is not supported (TCP only)"));
    }
    let p = pseq.req_ns(NS_280, "TCPPort")?;
    pseq.end()?;
    // TS 103 280 TCPPort is minExclusive 1.
    let port: u16 = leaf(p)?.parse().ok().filter(|&p| p > 1).ok_or_else(|| X1Fault::syntax("TCPPort out of range"))?;
    Ok(DestinationDetails { did, friendly_name, delivery, address, port })
}

/// One request message, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    ActivateTask(TaskDetails),
    ModifyTask(TaskDetails),
    DeactivateTask(String),
    DeactivateAllTasks,
    GetTaskDetails(String),
    GetAllTaskDetails,
    CreateDestination(DestinationDetails),
    ModifyDestination(DestinationDetails),
    RemoveDestination(String),
    RemoveAllDestinations,
    GetDestinationDetails(String),
    GetAllDestinationDetails,
    GetNEStatus,
    GetAllDetails,
    ListAllDetails,
    Ping,
    Keepalive,
}

/// Every `RequestMessageType` of the schema that has a `...Request` type.
const REQUEST_TYPES: &[&str] = &[
    "ActivateTask",
    "ModifyTask",
    "DeactivateTask",
    "DeactivateAllTasks",
    "GetTaskDetails",
    "CreateDestination",
    "ModifyDestination",
    "RemoveDestination",
    "RemoveAllDestinations",
    "GetDestinationDetails",
    "GetNEStatus",
    "GetAllDetails",
    "GetAllTaskDetails",
    "GetAllDestinationDetails",
    "GetAllGenericObjectDetails",
    "ListAllDetails",
    "ReportTaskIssue",
    "ReportDestinationIssue",
    "ReportNEIssue",
    "Ping",
    "Keepalive",
    "CreateObject",
    "ModifyObject",
    "GetObject",
    "DeleteObject",
    "ListObjectsOfType",
    "DeleteAllObjects",
];

/// A request message: its header, its `RequestMessageType` and its body (or why not).
#[derive(Clone, Debug)]
pub struct Message {
    pub header: Header,
    pub kind: &'static str,
    pub body: Result<Request, X1Fault>,
}

fn parse_body(kind: &str, seq: &mut Seq<'_>) -> Result<Request, X1Fault> {
    let r = match kind {
        "ActivateTask" => Request::ActivateTask(parse_task_details(seq.req("taskDetails")?)?),
        "ModifyTask" => Request::ModifyTask(parse_task_details(seq.req("taskDetails")?)?),
        "DeactivateTask" => Request::DeactivateTask(uuid(seq.req("xId")?)?),
        "DeactivateAllTasks" => Request::DeactivateAllTasks,
        "GetTaskDetails" => Request::GetTaskDetails(uuid(seq.req("xId")?)?),
        "GetAllTaskDetails" => Request::GetAllTaskDetails,
        "CreateDestination" => Request::CreateDestination(parse_destination(seq.req("destinationDetails")?)?),
        "ModifyDestination" => Request::ModifyDestination(parse_destination(seq.req("destinationDetails")?)?),
        "RemoveDestination" => Request::RemoveDestination(uuid(seq.req("dId")?)?),
        "RemoveAllDestinations" => Request::RemoveAllDestinations,
        "GetDestinationDetails" => Request::GetDestinationDetails(uuid(seq.req("dId")?)?),
        "GetAllDestinationDetails" => Request::GetAllDestinationDetails,
        "GetNEStatus" => Request::GetNEStatus,
        "GetAllDetails" => Request::GetAllDetails,
        "ListAllDetails" => Request::ListAllDetails,
        "Ping" => Request::Ping,
        "Keepalive" => Request::Keepalive,
        other => return Err(X1Fault::new(ErrorCode::UnsupportedRequest, format!("{other} is not supported by tapir"))),
    };
    seq.end()?;
    Ok(r)
}

fn parse_header(seq: &mut Seq<'_>) -> Result<Header, X1Fault> {
    let admf_identifier = token(seq.req("admfIdentifier")?)?;
    let ne_identifier = token(seq.req("neIdentifier")?)?;
    let message_timestamp = date_time(seq.req("messageTimestamp")?)?;
    let vnode = seq.req("version")?;
    let version = leaf(vnode)?.to_string();
    let ok = version.strip_prefix("v1.").and_then(|r| r.split_once('.')).is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit())
    });
    if !ok {
        return Err(X1Fault::syntax("version must look like v1.N.N"));
    }
    let transaction_id = uuid(seq.req("x1TransactionId")?)?;
    Ok(Header { admf_identifier, ne_identifier, message_timestamp, version, transaction_id })
}

/// Parses an `X1Request`. A message whose header or type cannot be read makes the whole body
/// unanswerable per message (there is no transaction id to answer on): that is a [`ParseError`].
pub fn parse_request(body: &[u8], limits: &Limits) -> Result<Vec<Message>, ParseError> {
    let root = parse_dom(body, limits)?;
    if !root.is(NS_X1, "X1Request") {
        return Err(ParseError::NotX1(format!("root element is <{}>, not X1Request", root.name)));
    }
    if !root.text.trim().is_empty() {
        return Err(ParseError::NotX1("text directly inside X1Request".into()));
    }
    if root.children.is_empty() {
        return Err(ParseError::NotX1("X1Request has no x1RequestMessage".into()));
    }
    if root.children.len() > limits.max_messages {
        return Err(ParseError::TooManyMessages { limit: limits.max_messages });
    }
    let mut out = Vec::with_capacity(root.children.len());
    for (i, m) in root.children.iter().enumerate() {
        let n = i + 1;
        if !m.is(NS_X1, "x1RequestMessage") {
            return Err(ParseError::NotX1(format!("child #{n} of X1Request is <{}>", m.name)));
        }
        let kind = match &m.xsi_type {
            Some((Some(ns), local)) if ns == NS_X1 => local
                .strip_suffix("Request")
                .and_then(|k| REQUEST_TYPES.iter().find(|t| **t == k))
                .copied()
                .ok_or_else(|| {
                    ParseError::NotX1(format!("message #{n}: xsi:type {local} is not an X1 request type"))
                })?,
            _ => return Err(ParseError::NotX1(format!("message #{n} has no xsi:type in the X1 namespace"))),
        };
        let mut seq = Seq::of(m).map_err(|f| ParseError::NotX1(format!("message #{n}: {}", f.description)))?;
        let header =
            parse_header(&mut seq).map_err(|f| ParseError::NotX1(format!("message #{n}: {}", f.description)))?;
        let body = parse_body(kind, &mut seq);
        out.push(Message { header, kind, body });
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// Responses
// ------------------------------------------------------------------------------------------

/// Appends `<name>text</name>` (text escaped).
pub(crate) fn el(out: &mut String, name: &str, text: &str) {
    let _ = write!(out, "<{name}>{}</{name}>", escape(text));
}

/// The response envelope fields.
pub struct Envelope<'a> {
    pub admf_identifier: &'a str,
    pub ne_identifier: &'a str,
    pub now: Timestamp,
    pub transaction_id: &'a str,
}

/// Opens an `x1ResponseMessage` of `xsi:type` `ty` with its header.
pub(crate) fn open_response(out: &mut String, ty: &str, env: &Envelope<'_>) {
    let _ = write!(out, "<x1ResponseMessage xsi:type=\"{ty}\">");
    el(out, "admfIdentifier", env.admf_identifier);
    el(out, "neIdentifier", env.ne_identifier);
    el(out, "messageTimestamp", &x1_time(env.now));
    el(out, "version", X1_VERSION);
    el(out, "x1TransactionId", env.transaction_id);
}

pub(crate) fn close_response(out: &mut String) {
    out.push_str("</x1ResponseMessage>");
}

/// A whole `ErrorResponse` message.
pub(crate) fn error_response(out: &mut String, env: &Envelope<'_>, kind: &str, fault: &X1Fault) {
    open_response(out, "ErrorResponse", env);
    el(out, "requestMessageType", kind);
    out.push_str("<errorInformation>");
    el(out, "errorCode", &fault.code.number().to_string());
    el(out, "errorDescription", &fault.description);
    out.push_str("</errorInformation>");
    close_response(out);
}

const ROOT_NS: &str = concat!(
    " xmlns=\"http://uri.etsi.org/03221/X1/2017/10\"",
    " xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"",
    " xmlns:c=\"http://uri.etsi.org/03280/common/2017/07\"",
    " xmlns:t=\"urn:tapir:x1:target-extension:1\""
);

/// Wraps response messages in an `X1Response` document.
pub fn response_document(messages: &str) -> Vec<u8> {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<X1Response{ROOT_NS}>{messages}</X1Response>\n").into_bytes()
}

/// An `X1TopLevelErrorResponse` document.
pub fn top_level_error(admf_identifier: &str, ne_identifier: &str, now: Timestamp) -> Vec<u8> {
    let mut s = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<X1TopLevelErrorResponse{ROOT_NS}>");
    el(&mut s, "admfIdentifier", admf_identifier);
    el(&mut s, "neIdentifier", ne_identifier);
    el(&mut s, "messageTimestamp", &x1_time(now));
    el(&mut s, "version", X1_VERSION);
    s.push_str("</X1TopLevelErrorResponse>\n");
    s.into_bytes()
}

fn write_target(out: &mut String, t: &X1Target) {
    out.push_str("<targetIdentifier>");
    let ext = |out: &mut String, inner: &str| {
        let _ = write!(
            out,
            "<targetIdentifierExtension><Owner>{TAPIR_OWNER}</Owner><t:cloudTarget>{inner}</t:cloudTarget></targetIdentifierExtension>"
        );
    };
    match t {
        X1Target::Ipv4(v) => el(out, "ipv4Address", v),
        X1Target::Ipv6(v) => {
            let full = v.parse::<Ipv6Addr>().map(|a| ipv6_full(&a)).unwrap_or_else(|_| v.clone());
            el(out, "ipv6Address", &full)
        }
        X1Target::Ipv4Cidr(v) => {
            out.push_str("<ipv4Cidr>");
            el(out, "c:IPv4CIDR", v);
            out.push_str("</ipv4Cidr>");
        }
        X1Target::Ipv6Cidr(v) => {
            let full = v
                .parse::<ipnet::Ipv6Net>()
                .map(|n| format!("{}/{}", ipv6_full(&n.addr()), n.prefix_len()))
                .unwrap_or_else(|_| v.clone());
            el(out, "ipv6Cidr", &full)
        }
        X1Target::Mac(v) => el(out, "macAddress", v),
        X1Target::Email(v) => el(out, "emailAddress", v),
        X1Target::Subscriber(v) => ext(out, &format!("<t:subscriber>{}</t:subscriber>", escape(v.as_str()))),
        X1Target::Vm(v) => ext(out, &format!("<t:vm>{}</t:vm>", escape(v.as_str()))),
        X1Target::Image(v) => ext(out, &format!("<t:image>{}</t:image>", escape(v.as_str()))),
        X1Target::ImageSha256(v) => ext(out, &format!("<t:imageSha256>{}</t:imageSha256>", escape(v.as_str()))),
        X1Target::Vni { vni, address } => {
            let a = match address.parse::<IpAddr>() {
                Ok(IpAddr::V6(a)) => ipv6_full(&a),
                _ => address.clone(),
            };
            ext(out, &format!("<t:vniAddress><t:vni>{vni}</t:vni><t:address>{}</t:address></t:vniAddress>", escape(a)))
        }
    }
    out.push_str("</targetIdentifier>");
}

fn write_dids(out: &mut String, dids: &[String]) {
    out.push_str("<listOfDIDs>");
    for d in dids {
        el(out, "dId", d);
    }
    out.push_str("</listOfDIDs>");
}

/// `<taskDetails>` echoing what was provisioned.
pub(crate) fn write_task_details(out: &mut String, t: &TaskDetails) {
    out.push_str("<taskDetails>");
    el(out, "xId", &t.xid);
    out.push_str("<targetIdentifiers>");
    for target in &t.targets {
        write_target(out, target);
    }
    out.push_str("</targetIdentifiers>");
    el(out, "deliveryType", t.delivery.as_str());
    write_dids(out, &t.dids);
    if let Some(ms) = &t.mediation {
        out.push_str("<listOfMediationDetails>");
        for m in ms {
            out.push_str("<mediationDetails>");
            el(out, "LIID", &m.liid);
            el(out, "deliveryType", m.delivery.as_str());
            if let Some(s) = &m.start {
                el(out, "StartTime", s);
            }
            if let Some(e) = &m.end {
                el(out, "EndTime", e);
            }
            if let Some(d) = &m.dids {
                write_dids(out, d);
            }
            out.push_str("</mediationDetails>");
        }
        out.push_str("</listOfMediationDetails>");
    }
    if let Some(c) = &t.correlation_id {
        el(out, "correlationID", c);
    }
    if let Some(b) = t.implicit_deactivation_allowed {
        el(out, "implicitDeactivationAllowed", if b { "true" } else { "false" });
    }
    if let Some(p) = &t.product_id {
        el(out, "productID", p);
    }
    out.push_str("</taskDetails>");
}

/// `<destinationDetails>`.
pub(crate) fn write_destination_details(out: &mut String, d: &DestinationDetails) {
    out.push_str("<destinationDetails>");
    el(out, "dId", &d.did);
    if let Some(f) = &d.friendly_name {
        el(out, "friendlyName", f);
    }
    el(out, "deliveryType", d.delivery.as_str());
    out.push_str("<deliveryAddress><ipAddressAndPort><c:address>");
    match d.address {
        IpAddr::V4(a) => el(out, "c:IPv4Address", &a.to_string()),
        IpAddr::V6(a) => el(out, "c:IPv6Address", &ipv6_full(&a)),
    }
    out.push_str("</c:address><c:port>");
    el(out, "c:TCPPort", &d.port.to_string());
    out.push_str("</c:port></ipAddressAndPort></deliveryAddress></destinationDetails>");
}

/// `<listOfFaults>` with one `unresolvedFault` per entry.
pub(crate) fn write_faults(out: &mut String, faults: &[X1Fault]) {
    out.push_str("<listOfFaults>");
    for f in faults {
        out.push_str("<unresolvedFault>");
        el(out, "errorCode", &f.code.number().to_string());
        el(out, "errorDescription", &f.description);
        out.push_str("</unresolvedFault>");
    }
    out.push_str("</listOfFaults>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_micro_pattern() {
        assert!(is_qualified_micro("2024-01-01T00:00:00.000000Z"));
        assert!(is_qualified_micro("2024-01-01T00:00:00.123456+02:00"));
        assert!(!is_qualified_micro("2024-01-01T00:00:00Z"));
        assert!(!is_qualified_micro("2024-01-01T00:00:00.123Z"));
        assert!(!is_qualified_micro("2024-01-01T00:00:00.123456"));
    }

    #[test]
    fn uuid_is_lower_case_only() {
        assert!(is_uuid("29f28e1c-f230-486a-a860-f5a784ab9172"));
        assert!(!is_uuid("29F28E1C-F230-486A-A860-F5A784AB9172"));
        assert!(!is_uuid("29f28e1c-f230-486a-a860-f5a784ab917"));
    }

    #[test]
    fn ipv6_full_form() {
        assert_eq!(ipv6_full(&"2001:db8::7".parse().unwrap()), "2001:0db8:0000:0000:0000:0000:0000:0007");
    }

    #[test]
    fn debug_of_a_target_hides_the_value() {
        let t = X1Target::Email("joe@example.net".into());
        assert!(!format!("{t:?}").contains("joe"));
    }

    #[test]
    fn undeclared_entity_is_refused() {
        let e = parse_dom(b"<a>&foo;</a>", &Limits::default()).unwrap_err();
        assert!(matches!(e, ParseError::Xml { .. }), "{e}");
        let ok = parse_dom(b"<a>&lt;&#x41;&amp;</a>", &Limits::default()).unwrap();
        assert_eq!(ok.text, "<A&");
    }
}
