//! RADIUS accounting seen on the tap (RFC 2865 wire format, RFC 2866 accounting), turned into
//! identity-association events the way OpenLI does: a Start or Interim-Update says the subscriber
//! (User-Name) now holds the framed address, a Stop says it no longer does.
//!
//! No-panic contract: [`parse_accounting`] reads untrusted UDP payloads. Every length (the header's
//! Length, each attribute's Length) is checked against the bytes present before it is used; a
//! malformed packet is a [`RadiusError`] naming the offending value, never a panic. The parser is
//! pure: no I/O, no clock, and no allocation for packets that are not Accounting-Requests.
//!
//! Not verified here: the Request Authenticator. The tap usually does not know the NAS's shared
//! secret; where it does, [`verify_request_authenticator`] checks it (a forged Start would
//! otherwise point an interception at someone else's traffic).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use md5::{Digest, Md5};
use serde_json::json;

use super::association::{parse_event, AssocEvent};
use crate::timestamp::Timestamp;

pub const CODE_ACCOUNTING_REQUEST: u8 = 4;
pub const CODE_ACCOUNTING_RESPONSE: u8 = 5;

/// RFC 2865 3: the header is 20 octets and a packet at most 4096.
pub const HEADER_LEN: usize = 20;
pub const MAX_PACKET_LEN: usize = 4096;

pub const ATTR_USER_NAME: u8 = 1;
pub const ATTR_NAS_IP_ADDRESS: u8 = 4;
pub const ATTR_FRAMED_IP_ADDRESS: u8 = 8;
pub const ATTR_ACCT_STATUS_TYPE: u8 = 40;
pub const ATTR_ACCT_SESSION_ID: u8 = 44;
pub const ATTR_NAS_IDENTIFIER: u8 = 32;
pub const ATTR_ACCT_INPUT_OCTETS: u8 = 42;
pub const ATTR_ACCT_OUTPUT_OCTETS: u8 = 43;
/// RFC 2869: how many times Acct-Input-Octets wrapped past 2^32.
pub const ATTR_ACCT_INPUT_GIGAWORDS: u8 = 52;
pub const ATTR_ACCT_OUTPUT_GIGAWORDS: u8 = 53;
pub const ATTR_NAS_PORT_ID: u8 = 87;
pub const ATTR_FRAMED_IPV6_PREFIX: u8 = 97;
/// RFC 4818: the prefix delegated to the subscriber's router (DHCPv6-PD); same format as 97.
pub const ATTR_DELEGATED_IPV6_PREFIX: u8 = 123;
/// RFC 6911.
pub const ATTR_FRAMED_IPV6_ADDRESS: u8 = 168;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RadiusError {
    #[error("RADIUS: {len} octets, shorter than the 20-octet header")]
    ShortHeader { len: usize },
    #[error("RADIUS: header Length {length} outside 20..=4096")]
    BadLength { length: u16 },
    #[error("RADIUS: header Length {length} but only {available} octets in the datagram")]
    Truncated { length: u16, available: usize },
    #[error("RADIUS: attribute at offset {offset}: Length {length} is below 2")]
    AttributeTooShort { offset: usize, length: u8 },
    #[error("RADIUS: attribute {attr} at offset {offset}: Length {length} runs past the packet end {end}")]
    AttributeOverrun { attr: u8, offset: usize, length: u8, end: usize },
    #[error("RADIUS: attribute header at offset {offset} cut by the packet end {end}")]
    AttributeHeaderCut { offset: usize, end: usize },
    #[error("RADIUS: attribute {attr} at offset {offset}: value of {len} octets, expected {expected}")]
    BadAttributeValue { attr: u8, offset: usize, len: usize, expected: &'static str },
    #[error("RADIUS: IPv6 prefix attribute at offset {offset}: prefix length {prefix_len} needs more than {len} octets or exceeds 128")]
    BadIpv6Prefix { offset: usize, prefix_len: u8, len: usize },
    #[error("RADIUS: Accounting-Request id {identifier} without Acct-Status-Type")]
    MissingStatusType { identifier: u8 },
}

/// Acct-Status-Type (RFC 2866 5.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AcctStatus {
    Start,
    Stop,
    InterimUpdate,
    AccountingOn,
    AccountingOff,
    Other(u32),
}

impl AcctStatus {
    pub fn from_u32(v: u32) -> AcctStatus {
        match v {
            1 => AcctStatus::Start,
            2 => AcctStatus::Stop,
            3 => AcctStatus::InterimUpdate,
            7 => AcctStatus::AccountingOn,
            8 => AcctStatus::AccountingOff,
            v => AcctStatus::Other(v),
        }
    }

    pub fn to_u32(self) -> u32 {
        match self {
            AcctStatus::Start => 1,
            AcctStatus::Stop => 2,
            AcctStatus::InterimUpdate => 3,
            AcctStatus::AccountingOn => 7,
            AcctStatus::AccountingOff => 8,
            AcctStatus::Other(v) => v,
        }
    }
}

/// What one Accounting-Request says about a subscriber session. Where an attribute occurs more
/// than once the first one counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountingRecord {
    pub identifier: u8,
    pub status: AcctStatus,
    /// User-Name as sent (RFC 2865 does not promise UTF-8).
    pub user_name: Option<Vec<u8>>,
    pub framed_ip: Option<Ipv4Addr>,
    /// Framed-IPv6-Prefix (RFC 3162 2.3): the prefix with bits past its length cleared.
    pub framed_ipv6_prefix: Option<(Ipv6Addr, u8)>,
    /// Delegated-IPv6-Prefix (RFC 4818), as `framed_ipv6_prefix`.
    pub delegated_ipv6_prefix: Option<(Ipv6Addr, u8)>,
    /// Framed-IPv6-Address (RFC 6911 3.1).
    pub framed_ipv6_address: Option<Ipv6Addr>,
    pub session_id: Option<Vec<u8>>,
    pub nas_ip: Option<Ipv4Addr>,
    pub nas_identifier: Option<Vec<u8>>,
    pub nas_port_id: Option<Vec<u8>>,
    /// Acct-Input-Octets with Acct-Input-Gigawords: what the NAS received from the user.
    pub input_octets: Option<u64>,
    /// Acct-Output-Octets with Acct-Output-Gigawords: what the NAS sent to the user.
    pub output_octets: Option<u64>,
}

impl AccountingRecord {
    /// The exact addresses this session holds: Framed-IP-Address, Framed-IPv6-Address and a
    /// Framed- or Delegated-IPv6-Prefix of length 128. Shorter prefixes are in [`Self::prefixes`].
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::with_capacity(3);
        let cands = [
            self.framed_ip.map(IpAddr::V4),
            self.framed_ipv6_address.map(IpAddr::V6),
            self.framed_ipv6_prefix.filter(|&(_, l)| l == 128).map(|(a, _)| IpAddr::V6(a)),
            self.delegated_ipv6_prefix.filter(|&(_, l)| l == 128).map(|(a, _)| IpAddr::V6(a)),
        ];
        for a in cands.into_iter().flatten() {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }

    /// The IPv6 prefixes shorter than 128 this session was given (Framed-IPv6-Prefix, the
    /// subscriber's link; Delegated-IPv6-Prefix, the range behind its router): every address in
    /// them is the subscriber's.
    pub fn prefixes(&self) -> Vec<(Ipv6Addr, u8)> {
        let mut out = Vec::with_capacity(2);
        for p in [self.framed_ipv6_prefix, self.delegated_ipv6_prefix].into_iter().flatten() {
            if p.1 < 128 && !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }
}

/// Checked view of the RADIUS header; the slice is cut to the header's Length.
fn packet(udp_payload: &[u8]) -> Result<&[u8], RadiusError> {
    let Some(hdr) = udp_payload.get(..HEADER_LEN) else {
        return Err(RadiusError::ShortHeader { len: udp_payload.len() });
    };
    let length = u16::from_be_bytes([hdr[2], hdr[3]]);
    let l = usize::from(length);
    if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&l) {
        return Err(RadiusError::BadLength { length });
    }
    // RFC 2865 3: octets past Length are padding and ignored; fewer than Length is a discard.
    udp_payload.get(..l).ok_or(RadiusError::Truncated { length, available: udp_payload.len() })
}

/// Walks the attributes of `pkt` (already cut to Length), calling `f(type, offset, value)`.
fn for_each_attribute(
    pkt: &[u8],
    mut f: impl FnMut(u8, usize, &[u8]) -> Result<(), RadiusError>,
) -> Result<(), RadiusError> {
    let end = pkt.len();
    let mut off = HEADER_LEN;
    while off < end {
        let (Some(&attr), Some(&alen)) = (pkt.get(off), pkt.get(off + 1)) else {
            return Err(RadiusError::AttributeHeaderCut { offset: off, end });
        };
        if alen < 2 {
            return Err(RadiusError::AttributeTooShort { offset: off, length: alen });
        }
        let next = off + usize::from(alen);
        let Some(value) = pkt.get(off + 2..next) else {
            return Err(RadiusError::AttributeOverrun { attr, offset: off, length: alen, end });
        };
        f(attr, off, value)?;
        off = next;
    }
    Ok(())
}

fn fixed<const N: usize>(attr: u8, offset: usize, v: &[u8], expected: &'static str) -> Result<[u8; N], RadiusError> {
    v.try_into().map_err(|_| RadiusError::BadAttributeValue { attr, offset, len: v.len(), expected })
}

/// A Framed-IPv6-Prefix or Delegated-IPv6-Prefix value: reserved octet, Prefix-Length, then as
/// many prefix octets as the length needs (RFC 3162 2.3; RFC 8044 3.10 allows trailing octets up
/// to 16). Bits past the length are cleared.
fn ipv6_prefix(attr: u8, off: usize, v: &[u8]) -> Result<(Ipv6Addr, u8), RadiusError> {
    let (Some(&plen), Some(bits)) = (v.get(1), v.get(2..)) else {
        return Err(RadiusError::BadAttributeValue { attr, offset: off, len: v.len(), expected: "2..=18" });
    };
    let needed = usize::from(plen).div_ceil(8);
    if plen > 128 || bits.len() < needed || bits.len() > 16 {
        return Err(RadiusError::BadIpv6Prefix { offset: off, prefix_len: plen, len: bits.len() });
    }
    let mut a = [0u8; 16];
    a[..bits.len()].copy_from_slice(bits);
    let mask = if plen == 0 { 0 } else { u128::MAX << (128 - u32::from(plen)) };
    Ok((Ipv6Addr::from(u128::from_be_bytes(a) & mask), plen))
}

/// Parses one UDP payload. `Ok(None)` for a well-formed RADIUS header of any other code (Access-*,
/// Accounting-Response, ...): not an error, just nothing to learn.
pub fn parse_accounting(udp_payload: &[u8]) -> Result<Option<AccountingRecord>, RadiusError> {
    let pkt = packet(udp_payload)?;
    if pkt[0] != CODE_ACCOUNTING_REQUEST {
        return Ok(None);
    }
    let identifier = pkt[1];
    let mut status = None;
    let mut rec = AccountingRecord {
        identifier,
        status: AcctStatus::Other(0),
        user_name: None,
        framed_ip: None,
        framed_ipv6_prefix: None,
        delegated_ipv6_prefix: None,
        framed_ipv6_address: None,
        session_id: None,
        nas_ip: None,
        nas_identifier: None,
        nas_port_id: None,
        input_octets: None,
        output_octets: None,
    };
    let (mut gigawords_in, mut gigawords_out) = (0u64, 0u64);
    for_each_attribute(pkt, |attr, off, v| {
        match attr {
            ATTR_ACCT_STATUS_TYPE if status.is_none() => {
                status = Some(AcctStatus::from_u32(u32::from_be_bytes(fixed::<4>(attr, off, v, "4 (integer)")?)));
            }
            ATTR_USER_NAME if rec.user_name.is_none() => {
                if v.is_empty() {
                    return Err(RadiusError::BadAttributeValue { attr, offset: off, len: 0, expected: "1..=253" });
                }
                rec.user_name = Some(v.to_vec());
            }
            ATTR_ACCT_SESSION_ID if rec.session_id.is_none() => rec.session_id = Some(v.to_vec()),
            ATTR_FRAMED_IP_ADDRESS if rec.framed_ip.is_none() => {
                rec.framed_ip = Some(Ipv4Addr::from(fixed::<4>(attr, off, v, "4 (ipv4addr)")?));
            }
            ATTR_NAS_IP_ADDRESS if rec.nas_ip.is_none() => {
                rec.nas_ip = Some(Ipv4Addr::from(fixed::<4>(attr, off, v, "4 (ipv4addr)")?));
            }
            ATTR_NAS_IDENTIFIER if rec.nas_identifier.is_none() => rec.nas_identifier = Some(v.to_vec()),
            ATTR_NAS_PORT_ID if rec.nas_port_id.is_none() => rec.nas_port_id = Some(v.to_vec()),
            ATTR_ACCT_INPUT_OCTETS if rec.input_octets.is_none() => {
                rec.input_octets = Some(u32::from_be_bytes(fixed::<4>(attr, off, v, "4 (integer)")?).into());
            }
            ATTR_ACCT_OUTPUT_OCTETS if rec.output_octets.is_none() => {
                rec.output_octets = Some(u32::from_be_bytes(fixed::<4>(attr, off, v, "4 (integer)")?).into());
            }
            ATTR_ACCT_INPUT_GIGAWORDS => {
                gigawords_in = u32::from_be_bytes(fixed::<4>(attr, off, v, "4 (integer)")?).into();
            }
            ATTR_ACCT_OUTPUT_GIGAWORDS => {
                gigawords_out = u32::from_be_bytes(fixed::<4>(attr, off, v, "4 (integer)")?).into();
            }
            ATTR_FRAMED_IPV6_ADDRESS if rec.framed_ipv6_address.is_none() => {
                rec.framed_ipv6_address = Some(Ipv6Addr::from(fixed::<16>(attr, off, v, "16 (ipv6addr)")?));
            }
            ATTR_FRAMED_IPV6_PREFIX if rec.framed_ipv6_prefix.is_none() => {
                rec.framed_ipv6_prefix = Some(ipv6_prefix(attr, off, v)?);
            }
            ATTR_DELEGATED_IPV6_PREFIX if rec.delegated_ipv6_prefix.is_none() => {
                rec.delegated_ipv6_prefix = Some(ipv6_prefix(attr, off, v)?);
            }
            _ => {}
        }
        Ok(())
    })?;
    rec.status = status.ok_or(RadiusError::MissingStatusType { identifier })?;
    rec.input_octets = rec.input_octets.map(|n| n + (gigawords_in << 32));
    rec.output_octets = rec.output_octets.map(|n| n + (gigawords_out << 32));
    Ok(Some(rec))
}

/// RFC 2866 3: Request Authenticator = MD5(Code + Identifier + Length + 16 zero octets +
/// Attributes + shared secret). False for anything that is not a well-formed RADIUS packet.
pub fn verify_request_authenticator(udp_payload: &[u8], secret: &[u8]) -> bool {
    let Ok(pkt) = packet(udp_payload) else { return false };
    let mut h = Md5::new();
    h.update(&pkt[..4]);
    h.update([0u8; 16]);
    h.update(&pkt[HEADER_LEN..]);
    h.update(secret);
    let want = h.finalize();
    // Not a secret comparison: the authenticator is on the wire for anyone to see.
    pkt[4..HEADER_LEN] == want[..]
}

/// The association events an accounting record implies, as if read from an `--associations`
/// line: Start and Interim-Update give `access.start` per exact address, Stop gives `access.stop`;
/// other status types, records without a User-Name or address, and User-Names the feed format
/// would refuse (empty, whitespace, control characters, not UTF-8, over 255 octets) give none.
/// `raw` carries the feed line (with `"source":"radius"` and the Acct-Session-Id), so a journal
/// of these events replays through `parse_event` to the same values.
pub fn assoc_events(rec: &AccountingRecord, ts: Timestamp) -> Vec<AssocEvent> {
    let event = match rec.status {
        AcctStatus::Start | AcctStatus::InterimUpdate => "access.start",
        AcctStatus::Stop => "access.stop",
        _ => return Vec::new(),
    };
    let Some(user) = rec.user_name.as_deref().and_then(|u| std::str::from_utf8(u).ok()) else {
        return Vec::new();
    };
    let session = rec.session_id.as_deref().map(|s| String::from_utf8_lossy(s).into_owned());
    let mut out = Vec::new();
    let addresses = rec.addresses().into_iter().map(|ip| ("ip", ip.to_string()));
    let prefixes = rec.prefixes().into_iter().map(|(a, l)| ("prefix", format!("{a}/{l}")));
    for (field, value) in addresses.chain(prefixes) {
        let mut raw = json!({
            "time": ts.to_rfc3339(),
            "event": event,
            "subscriber": user,
            field: value,
            "source": "radius",
        });
        if let Some(o) = raw.as_object_mut() {
            // What the accounting record says beyond who holds the address: carried to the IRI
            // (the NAS as pOPIdentifier/pOPIPAddress, the octets, the port), never to selection.
            let status = match rec.status {
                AcctStatus::Start => "start",
                AcctStatus::InterimUpdate => "interim-update",
                _ => "stop",
            };
            o.insert("acct_status".to_string(), json!(status));
            let text = |b: &Option<Vec<u8>>| b.as_deref().map(|v| String::from_utf8_lossy(v).into_owned());
            let extra = [
                ("acct_session_id", session.clone().map(serde_json::Value::from)),
                ("nas_ip", rec.nas_ip.map(|a| json!(a.to_string()))),
                ("nas_identifier", text(&rec.nas_identifier).map(serde_json::Value::from)),
                ("nas_port_id", text(&rec.nas_port_id).map(serde_json::Value::from)),
                ("input_octets", rec.input_octets.map(serde_json::Value::from)),
                ("output_octets", rec.output_octets.map(serde_json::Value::from)),
            ];
            for (k, v) in extra {
                if let Some(v) = v {
                    o.insert(k.to_string(), v);
                }
            }
        }
        // One validation for both paths: what the feed format refuses is not produced here.
        if let Ok(ev) = parse_event(&raw.to_string(), "radius", 0) {
            out.push(ev);
        }
    }
    out
}
