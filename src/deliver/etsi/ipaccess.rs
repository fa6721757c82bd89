//! TS 102 232-3 (IPAccessPDU, version18 by default): IPIRI contents, the mapping from tapir's
//! session and association records, and the inner IP packet that IPCC carries.
//!
//! No-panic contract: [`inner_ip_packet`] reads untrusted frame bytes through checked views
//! (`decode::tunnel`, `get`), and answers `None` for anything it cannot follow.

use std::net::IpAddr;

use super::ber::{put_bool, put_cons, put_prim, put_uint, Tag};
use super::national::FlowSide;
use super::ps_pdu::{EncodeError, GeneralizedTime, IriType, PayloadDirection};
use crate::analyze::smtp::{SmtpEvent, SmtpWhat};
use crate::capture::LinkType;
use crate::decode::tunnel::{self, ethertype, Erspan2, Erspan3, Geneve, Gre, Vxlan};
use crate::record::{selector_addr, Close, Counters, Dir, FlowDescr, IriEvent, IriRecord, Provenance};

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum AccessEventType {
    AccessAttempt = 0,
    AccessAccept = 1,
    AccessReject = 2,
    AccessFailed = 3,
    SessionStart = 4,
    SessionEnd = 5,
    InterimUpdate = 6,
    StartOfInterceptionWithSessionActive = 7,
    AccessEnd = 8,
    EndOfInterceptionWithSessionActive = 9,
    Unknown = 10,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum InternetAccessType {
    Undefined = 0,
    DialUp = 1,
    XDsl = 2,
    CableModem = 3,
    Lan = 4,
    WirelessLan = 5,
    FTTx = 6,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum IpVersion {
    V4 = 1,
    V6 = 2,
    V4AndV6 = 3,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum EndReason {
    Undefined = 0,
    RegularLogoff = 1,
    ConnectionLoss = 2,
    ConnectionTimeout = 3,
    LeaseExpired = 4,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum IpAssignment {
    Static = 1,
    Dynamic = 2,
    NotKnown = 3,
}

/// LI-PS-PDU `IPAddress` with a binary value.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IpAddress {
    pub addr: IpAddr,
    pub assignment: Option<IpAssignment>,
    /// IPv4: sent as iPv4SubnetMask; IPv6: iPv6PrefixLength (mandatory for IPv6 binary values,
    /// so [`IpAddress::host`] sets 128).
    pub prefix_len: Option<u8>,
    pub nat_translated: Option<bool>,
}

impl IpAddress {
    /// One host address: /32 or /128.
    pub fn host(addr: IpAddr) -> IpAddress {
        let prefix_len = Some(if addr.is_ipv4() { 32 } else { 128 });
        IpAddress { addr, assignment: None, prefix_len, nat_translated: None }
    }

    pub fn encode(&self, o: &mut Vec<u8>, tag: Tag) {
        put_cons(o, tag, 8, |o| {
            let (ty, bytes): (u64, ([u8; 16], usize)) = match self.addr {
                IpAddr::V4(a) => {
                    let mut b = [0; 16];
                    b[..4].copy_from_slice(&a.octets());
                    (0, (b, 4))
                }
                IpAddr::V6(a) => (1, (a.octets(), 16)),
            };
            put_uint(o, Tag::ctx(1), ty);
            // IP-value is a CHOICE: explicit [2] around iPBinaryAddress [1].
            put_cons(o, Tag::ctx_cons(2), bytes.1 + 2, |o| put_prim(o, Tag::ctx(1), &bytes.0[..bytes.1]));
            if let Some(a) = self.assignment {
                put_uint(o, Tag::ctx(3), a as u64);
            }
            match (self.addr, self.prefix_len) {
                (IpAddr::V6(_), Some(p)) => put_uint(o, Tag::ctx(4), p.clamp(1, 128).into()),
                (IpAddr::V4(_), Some(p)) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(p.min(32))).unwrap_or(0);
                    put_prim(o, Tag::ctx(5), &mask.to_be_bytes());
                }
                _ => {}
            }
            if let Some(n) = self.nat_translated {
                put_bool(o, Tag::ctx(6), n);
            }
        });
    }
}

/// IPIRIContents, the fields tapir fills.
#[derive(Clone, Debug, PartialEq)]
pub struct IpIriContents {
    pub access_event_type: AccessEventType,
    /// ASCII; tapir sends the warrant target (e.g. `subscriber:ann`).
    pub target_username: Vec<u8>,
    pub internet_access_type: InternetAccessType,
    pub ip_version: IpVersion,
    pub target_ip_address: Option<IpAddress>,
    /// UTF8String (SIZE (1..20)); tapir: `vni:<VNI>` of the target's overlay.
    pub target_network_id: Option<String>,
    /// UTF8String (SIZE (1..128)); tapir: the VM instance id when known.
    pub target_cpe_id: Option<String>,
    pub pop_port_number: Option<u32>,
    pub start_time: Option<GeneralizedTime>,
    pub end_time: Option<GeneralizedTime>,
    pub end_reason: Option<EndReason>,
    pub octets_received: Option<u64>,
    pub octets_transmitted: Option<u64>,
    /// tapir: JSON of the control-plane event and the selector's provenance.
    pub raw_aaa_data: Option<Vec<u8>>,
    /// The identifier of the point of presence: tapir sends the RADIUS NAS.
    pub pop_identifier: Option<PopIdentifier>,
    pub pop_ip_address: Option<IpAddress>,
    pub authentication_type: Option<AuthenticationType>,
    /// The target's second and later addresses (a VM with several).
    pub other_target_identifiers: Vec<IpAddress>,
    /// RADIUS NAS-Port-Id, as sent.
    pub pop_port_id: Option<Vec<u8>>,
    /// TapirIRI content octets (see [`super::national`]), sent in nationalIPIRIParameters.
    pub national: Option<Vec<u8>>,
}

/// IPIRIIDType: how the point of presence is named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PopIdentifier {
    /// `printableIDType [0] UTF8String (SIZE (1..128))`.
    Printable(String),
    /// `ipAddressType [2] IPAddress`.
    Ip(IpAddress),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum AuthenticationType {
    Unknown = 0,
    Static = 1,
    RadiusAaa = 2,
    DhcpAaa = 3,
    DiameterAaa = 4,
}

impl IpIriContents {
    pub fn new(event: AccessEventType, username: &[u8], ip_version: IpVersion) -> IpIriContents {
        IpIriContents {
            access_event_type: event,
            target_username: username.to_vec(),
            internet_access_type: InternetAccessType::Lan,
            ip_version,
            target_ip_address: None,
            target_network_id: None,
            target_cpe_id: None,
            pop_port_number: None,
            start_time: None,
            end_time: None,
            end_reason: None,
            octets_received: None,
            octets_transmitted: None,
            raw_aaa_data: None,
            pop_identifier: None,
            pop_ip_address: None,
            authentication_type: None,
            other_target_identifiers: Vec::new(),
            pop_port_id: None,
            national: None,
        }
    }

    /// The content octets of `iPIRIContents` (the caller writes its `[1]`). `country` is the
    /// LEA's authorizationCountryCode, for the national parameters.
    pub fn encode(&self, o: &mut Vec<u8>, country: Option<&str>) -> Result<(), EncodeError> {
        let utf8 = |field: &'static str, v: &Option<String>, max: usize| match v {
            Some(s) if s.is_empty() || s.chars().count() > max => Err(EncodeError::Field {
                field,
                value: s.clone(),
                rule: if max == 20 { "1..20 characters" } else { "1..128 characters" },
            }),
            _ => Ok(()),
        };
        utf8("targetNetworkID", &self.target_network_id, 20)?;
        utf8("targetCPEID", &self.target_cpe_id, 128)?;
        put_uint(o, Tag::ctx(0), self.access_event_type as u64);
        put_prim(o, Tag::ctx(1), &self.target_username);
        put_uint(o, Tag::ctx(2), self.internet_access_type as u64);
        put_uint(o, Tag::ctx(3), self.ip_version as u64);
        if let Some(a) = &self.target_ip_address {
            a.encode(o, Tag::ctx_cons(4));
        }
        if let Some(s) = &self.target_network_id {
            put_prim(o, Tag::ctx(5), s.as_bytes());
        }
        if let Some(s) = &self.target_cpe_id {
            put_prim(o, Tag::ctx(6), s.as_bytes());
        }
        if let Some(p) = self.pop_port_number {
            put_uint(o, Tag::ctx(8), p.into());
        }
        if let Some(t) = &self.start_time {
            put_prim(o, Tag::ctx(10), t.as_bytes());
        }
        if let Some(t) = &self.end_time {
            put_prim(o, Tag::ctx(11), t.as_bytes());
        }
        if let Some(r) = self.end_reason {
            put_uint(o, Tag::ctx(12), r as u64);
        }
        if let Some(n) = self.octets_received {
            put_uint(o, Tag::ctx(13), n);
        }
        if let Some(n) = self.octets_transmitted {
            put_uint(o, Tag::ctx(14), n);
        }
        if let Some(d) = &self.raw_aaa_data {
            put_prim(o, Tag::ctx(15), d);
        }
        match &self.pop_identifier {
            // IPIRIIDType is a CHOICE: [18] explicit around the alternative.
            Some(PopIdentifier::Printable(s)) if !s.is_empty() && s.chars().count() <= 128 => {
                put_cons(o, Tag::ctx_cons(18), s.len() + 2, |o| put_prim(o, Tag::ctx(0), s.as_bytes()))
            }
            Some(PopIdentifier::Ip(a)) => put_cons(o, Tag::ctx_cons(18), 24, |o| a.encode(o, Tag::ctx_cons(2))),
            _ => {}
        }
        if let Some(a) = &self.pop_ip_address {
            a.encode(o, Tag::ctx_cons(19));
        }
        if let Some(t) = &self.national {
            let country = country.unwrap_or(super::national::NO_COUNTRY);
            put_cons(o, Tag::ctx_cons(20), t.len() + 16, |o| super::national::national_parameters(o, country, t));
        }
        if let Some(a) = self.authentication_type {
            put_uint(o, Tag::ctx(22), a as u64);
        }
        if !self.other_target_identifiers.is_empty() {
            // SEQUENCE OF OtherTargetIdentifiers, each the CHOICE's iPAddress [0].
            put_cons(o, Tag::ctx_cons(23), 0, |o| {
                for a in &self.other_target_identifiers {
                    a.encode(o, Tag::ctx_cons(0));
                }
            });
        }
        if let Some(p) = &self.pop_port_id {
            put_prim(o, Tag::ctx(25), p);
        }
        Ok(())
    }
}

/// An IRI record as IPIRI: the IRI type and the contents.
#[derive(Clone, Debug, PartialEq)]
pub struct MappedIri {
    pub iri_type: IriType,
    pub contents: IpIriContents,
}

/// fromTarget/toTarget of a packet travelling in `dir` of a flow whose target is `target`.
pub fn payload_direction(dir: Option<Dir>, target: Option<Dir>) -> PayloadDirection {
    match (dir, target) {
        (Some(d), Some(t)) if d == t => PayloadDirection::FromTarget,
        (Some(_), Some(_)) => PayloadDirection::ToTarget,
        _ => PayloadDirection::Indeterminate,
    }
}

/// fromTarget/toTarget of an IP packet by its addresses (the packet as [`inner_ip_packet`] gives it).
pub fn packet_direction(packet: &[u8], target: IpAddr) -> PayloadDirection {
    let (src, dst) = match ip_addrs(packet) {
        Some(a) => a,
        None => return PayloadDirection::Indeterminate,
    };
    if src == target && dst != target {
        PayloadDirection::FromTarget
    } else if dst == target && src != target {
        PayloadDirection::ToTarget
    } else {
        PayloadDirection::Indeterminate
    }
}

fn ip_addrs(p: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match p.first()? >> 4 {
        4 => {
            let s: [u8; 4] = p.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d)))
        }
        6 => {
            let s: [u8; 16] = p.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d)))
        }
        _ => None,
    }
}

fn end_reason(c: Close) -> EndReason {
    match c {
        Close::Fin => EndReason::RegularLogoff,
        Close::Rst => EndReason::ConnectionLoss,
        Close::IdleTimeout | Close::AbsoluteTimeout => EndReason::ConnectionTimeout,
        Close::WindowEnd | Close::Evicted | Close::Shutdown => EndReason::Undefined,
    }
}

fn version_of(a: IpAddr) -> IpVersion {
    if a.is_ipv4() {
        IpVersion::V4
    } else {
        IpVersion::V6
    }
}

fn provenance_json(prov: &Provenance, extra: Option<(&str, &serde_json::Value)>) -> Vec<u8> {
    let mut m = serde_json::Map::new();
    if let Some((what, detail)) = extra {
        m.insert("event".into(), what.into());
        m.insert("detail".into(), detail.clone());
    }
    m.insert("provenance".into(), serde_json::to_value(prov).unwrap_or(serde_json::Value::Null));
    serde_json::to_vec(&serde_json::Value::Object(m)).unwrap_or_default()
}

fn session_iri(rec: &IriRecord, flow: &FlowDescr, counters: Option<&Counters>) -> IpIriContents {
    let side = flow.target_side(&rec.provenance);
    let mut c = flow_iri(rec, AccessEventType::SessionStart, FlowSide { flow, target: side });
    if let Some(k) = counters {
        // Counters are per flow direction; the target transmits in its own direction.
        let t = side.index();
        let r = side.reverse().index();
        c.octets_transmitted = k.bytes.get(t).copied();
        c.octets_received = k.bytes.get(r).copied();
    }
    c
}

/// IPIRIContents of a record about a flow: the target's address and overlay.
fn flow_iri(rec: &IriRecord, event: AccessEventType, s: FlowSide<'_>) -> IpIriContents {
    let addr = super::national::target_addr(s);
    let mut c = IpIriContents::new(event, rec.provenance.target.as_bytes(), version_of(addr));
    c.target_ip_address = Some(IpAddress::host(addr));
    c.target_network_id = s.flow.tunnels.iter().rev().find_map(|t| t.vni).map(|v| format!("vni:{v}"));
    c
}

/// The addresses a control-plane event gives the target: `ip`, or the `ips` of an instance's
/// `ports`, in order.
fn detail_addresses(detail: &serde_json::Value) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut add = |v: &serde_json::Value| {
        if let Some(a) = v.as_str().and_then(|s| s.parse::<IpAddr>().ok()) {
            if seen.insert(a) {
                out.push(a);
            }
        }
    };
    if let Some(ip) = detail.get("ip") {
        add(ip);
    }
    for port in detail.get("ports").and_then(|p| p.as_array()).into_iter().flatten() {
        for ip in port.get("ips").and_then(|i| i.as_array()).into_iter().flatten() {
            add(ip);
        }
    }
    out
}

fn association_iri(rec: &IriRecord, what: &str, detail: &serde_json::Value) -> IpIriContents {
    let str_of = |k: &str| detail.get(k).and_then(|v| v.as_str());
    let u64_of = |k: &str| detail.get(k).and_then(|v| v.as_u64());
    let interim = str_of("acct_status") == Some("interim-update");
    let event = match what {
        "instance.start" => AccessEventType::AccessAccept,
        "instance.stop" => AccessEventType::AccessEnd,
        "access.start" if interim => AccessEventType::InterimUpdate,
        "access.start" => AccessEventType::SessionStart,
        "access.stop" => AccessEventType::SessionEnd,
        _ => AccessEventType::Unknown,
    };
    let mut addrs = detail_addresses(detail);
    if addrs.is_empty() {
        addrs.extend(selector_addr(&rec.provenance.selector));
    }
    let first = addrs.first().copied();
    let mut c =
        IpIriContents::new(event, rec.provenance.target.as_bytes(), first.map(version_of).unwrap_or(IpVersion::V4));
    let dynamic = |a: IpAddr| IpAddress { assignment: Some(IpAssignment::Dynamic), ..IpAddress::host(a) };
    c.target_ip_address = first.map(dynamic);
    c.other_target_identifiers = addrs.iter().skip(1).map(|a| dynamic(*a)).collect();
    if addrs.iter().any(|a| a.is_ipv4()) && addrs.iter().any(|a| a.is_ipv6()) {
        c.ip_version = IpVersion::V4AndV6;
    }
    // A session given a prefix: its network address with the prefix length (IPAddress
    // iPv6PrefixLength / iPv4SubnetMask, TS 102 232-3).
    if let Some(net) = str_of("prefix").and_then(|s| s.parse::<ipnet::IpNet>().ok()) {
        c.ip_version = version_of(net.addr());
        c.target_ip_address = Some(IpAddress {
            assignment: Some(IpAssignment::Dynamic),
            prefix_len: Some(net.prefix_len()),
            ..IpAddress::host(net.addr())
        });
    }
    let vni = detail
        .get("vni")
        .and_then(|v| v.as_u64())
        .or_else(|| detail.get("ports")?.as_array()?.iter().find_map(|p| p.get("vni")?.as_u64()));
    c.target_network_id = vni.map(|v| format!("vni:{v}"));
    c.target_cpe_id = str_of("instance").filter(|s| !s.is_empty() && s.chars().count() <= 128).map(str::to_string);
    // What a RADIUS accounting record adds (see `select::radius`): the NAS, the octets, the port.
    if str_of("source") == Some("radius") {
        c.authentication_type = Some(AuthenticationType::RadiusAaa);
    }
    if let Some(nas) = str_of("nas_ip").and_then(|s| s.parse::<IpAddr>().ok()) {
        c.pop_ip_address = Some(IpAddress::host(nas));
        c.pop_identifier = Some(match str_of("nas_identifier") {
            Some(id) => PopIdentifier::Printable(id.to_string()),
            None => PopIdentifier::Ip(IpAddress::host(nas)),
        });
    }
    c.pop_port_id = str_of("nas_port_id").map(|p| p.as_bytes().to_vec());
    // Acct-Input-Octets count what the NAS received from the user: what the target sent.
    c.octets_transmitted = u64_of("input_octets");
    c.octets_received = u64_of("output_octets");
    match event {
        AccessEventType::AccessAccept | AccessEventType::SessionStart | AccessEventType::InterimUpdate => {
            c.start_time = Some(GeneralizedTime::utc(rec.ts))
        }
        AccessEventType::AccessEnd | AccessEventType::SessionEnd => c.end_time = Some(GeneralizedTime::utc(rec.ts)),
        _ => {}
    }
    c.raw_aaa_data = Some(provenance_json(&rec.provenance, Some((what, detail))));
    c
}

/// Maps an IRI record to IPIRI, tapir's national parameters (TapirIRI) included. `session` is
/// the flow of the record's CIN, for records that name their session by CIN only (FTP, HTTP,
/// TLS, SMTP events). `None` for warrant notices (HI1) and SMTP mail transactions and AUTH
/// (EmailIRI, see `email`): those go in other forms.
pub fn map_iri(rec: &IriRecord, session: Option<FlowSide<'_>>) -> Option<MappedIri> {
    let (iri_type, mut c) = match &rec.event {
        IriEvent::SessionBegin { flow, first_seen } => {
            let mut c = session_iri(rec, flow, None);
            c.start_time = Some(GeneralizedTime::utc(*first_seen));
            c.raw_aaa_data = Some(provenance_json(&rec.provenance, None));
            (IriType::Begin, c)
        }
        IriEvent::SessionContinue { flow, first_seen, counters } => {
            let mut c = session_iri(rec, flow, Some(counters));
            c.access_event_type = AccessEventType::InterimUpdate;
            c.start_time = Some(GeneralizedTime::utc(*first_seen));
            (IriType::Continue, c)
        }
        IriEvent::SessionEnd { flow, first_seen, last_seen, counters, reason, .. } => {
            let mut c = session_iri(rec, flow, Some(counters));
            c.access_event_type = if *reason == Close::WindowEnd {
                AccessEventType::EndOfInterceptionWithSessionActive
            } else {
                AccessEventType::SessionEnd
            };
            c.start_time = Some(GeneralizedTime::utc(*first_seen));
            c.end_time = Some(GeneralizedTime::utc(*last_seen));
            c.end_reason = Some(end_reason(*reason));
            (IriType::End, c)
        }
        IriEvent::Association { what, detail, .. } => (IriType::Report, association_iri(rec, what, detail)),
        IriEvent::Object(o) => {
            let s = FlowSide { flow: &o.meta.flow, target: o.meta.flow.target_side(&rec.provenance) };
            (IriType::Report, flow_iri(rec, AccessEventType::Unknown, s))
        }
        IriEvent::App(_) | IriEvent::WireConflict(_) => {
            if let Some(e) = rec.event.app::<SmtpEvent>() {
                if matches!(e.what, SmtpWhat::Mail | SmtpWhat::Auth) {
                    return None;
                }
            }
            let c = match session {
                Some(s) => flow_iri(rec, AccessEventType::Unknown, s),
                None => {
                    let addr = selector_addr(&rec.provenance.selector);
                    let mut c = IpIriContents::new(
                        AccessEventType::Unknown,
                        rec.provenance.target.as_bytes(),
                        addr.map(version_of).unwrap_or(IpVersion::V4),
                    );
                    c.target_ip_address = addr.map(IpAddress::host);
                    c
                }
            };
            (IriType::Report, c)
        }
        IriEvent::Warrant { .. } => return None,
    };
    c.national = Some(super::national::tapir_iri(rec, session));
    Some(MappedIri { iri_type, contents: c })
}

// ---------------------------------------------------------------------------------------------
// The inner IP packet of a captured frame

const VXLAN_PORT: u16 = 4789;
const GENEVE_PORT: u16 = 6081;
/// Encapsulations peeled at most; deeper frames are not delivered as IPCC.
const MAX_DEPTH: usize = 8;

enum Layer {
    Eth,
    Ether(u16),
    Ip,
}

fn layer_of(inner: tunnel::Inner) -> Option<Layer> {
    match inner {
        tunnel::Inner::Ethernet => Some(Layer::Eth),
        tunnel::Inner::Ipv4 | tunnel::Inner::Ipv6 | tunnel::Inner::Ip => Some(Layer::Ip),
        tunnel::Inner::Mpls => Some(Layer::Ether(ethertype::MPLS_UC)),
        tunnel::Inner::Unknown(_) => None,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The target's IP packet inside a captured frame: link layer, VLAN/MPLS/PPPoE and tunnel
/// headers (VXLAN, GENEVE, GRE, ERSPAN, IP-in-IP, 6in4) removed, Ethernet padding trimmed to the
/// IP length. TS 102 232-3 IPCC carries IP packets, and the LEA's warrant is on the VM, not on
/// the operator's underlay: the innermost packet is what gets delivered.
pub fn inner_ip_packet(link: LinkType, frame: &[u8]) -> Option<&[u8]> {
    let (mut layer, mut buf) = match link {
        LinkType::Ethernet => (Layer::Eth, frame),
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => (Layer::Ip, frame),
        LinkType::Null | LinkType::Loop => (Layer::Ip, frame.get(4..)?),
        LinkType::LinuxSll => (Layer::Ether(be16(frame, 14)?), frame.get(16..)?),
        LinkType::LinuxSll2 => (Layer::Ether(be16(frame, 0)?), frame.get(20..)?),
        LinkType::Other(_) => return None,
    };
    for _ in 0..MAX_DEPTH * 4 {
        match layer {
            Layer::Eth => {
                layer = Layer::Ether(be16(buf, 12)?);
                buf = buf.get(14..)?;
            }
            Layer::Ether(et) => match et {
                ethertype::IPV4 | ethertype::IPV6 => layer = Layer::Ip,
                ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD => {
                    layer = Layer::Ether(be16(buf, 2)?);
                    buf = buf.get(4..)?;
                }
                ethertype::MPLS_UC | ethertype::MPLS_MC => {
                    // Labels until bottom of stack, then IP by its version nibble.
                    let mut i = 0;
                    loop {
                        let bos = buf.get(i + 2)? & 1;
                        i += 4;
                        if bos == 1 {
                            break;
                        }
                        if i > 4 * MAX_DEPTH {
                            return None;
                        }
                    }
                    buf = buf.get(i..)?;
                    layer = Layer::Ip;
                }
                ethertype::PPPOE_SESSION => {
                    let (inner, rest) = tunnel::ppp(buf.get(6..)?).ok()?;
                    buf = rest;
                    layer = match inner {
                        tunnel::Inner::Ipv4 | tunnel::Inner::Ipv6 => Layer::Ip,
                        _ => return None,
                    };
                }
                ethertype::TEB => layer = Layer::Eth,
                ethertype::ERSPAN_2 => {
                    buf = Erspan2::parse(buf).ok()?.1;
                    layer = Layer::Eth;
                }
                ethertype::ERSPAN_3 => {
                    let (h, rest) = Erspan3::parse(buf).ok()?;
                    buf = rest;
                    layer = layer_of(h.inner)?;
                }
                _ => return None,
            },
            Layer::Ip => {
                let (pkt, proto, payload) = ip_packet(buf)?;
                let next = match proto {
                    4 | 41 => Some((Layer::Ip, payload)),
                    47 => {
                        let (g, rest) = Gre::parse(payload).ok()?;
                        Some((Layer::Ether(g.protocol), rest))
                    }
                    17 => {
                        let dport = be16(payload, 2)?;
                        let udp_payload = payload.get(8..)?;
                        match dport {
                            VXLAN_PORT => Some((Layer::Eth, Vxlan::parse(udp_payload).ok()?.1)),
                            GENEVE_PORT => {
                                let (g, rest) = Geneve::parse(udp_payload).ok()?;
                                Some((layer_of(g.inner)?, rest))
                            }
                            _ => None,
                        }
                    }
                    _ => None,
                };
                match next {
                    Some((l, b)) => {
                        layer = l;
                        buf = b;
                    }
                    None => return Some(pkt),
                }
            }
        }
    }
    None
}

/// An IP packet trimmed to its own length, its protocol and its payload. Fragments other than
/// the first are never tunnels.
fn ip_packet(b: &[u8]) -> Option<(&[u8], u8, &[u8])> {
    match b.first()? >> 4 {
        4 => {
            let ihl = usize::from(b.first()? & 0x0f) * 4;
            // Zero: a segmentation-offloaded packet captured before the NIC split it.
            let total = match usize::from(be16(b, 2)?) {
                0 => b.len(),
                n => n,
            };
            if ihl < 20 || total < ihl {
                return None;
            }
            let pkt = b.get(..total)?;
            let frag = be16(b, 6)?;
            let proto = if frag & 0x3fff != 0 { 0 } else { *b.get(9)? };
            Some((pkt, proto, pkt.get(ihl..)?))
        }
        6 => {
            let pkt = match usize::from(be16(b, 4)?) {
                0 => b.get(..b.len().max(40))?,
                plen => b.get(..40 + plen)?,
            };
            // Extension headers are not walked: a tunnel behind one is delivered as the outer packet.
            Some((pkt, *b.get(6)?, pkt.get(40..)?))
        }
        _ => None,
    }
}
