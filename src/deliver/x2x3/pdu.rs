//! The X2/X3 PDU of ETSI TS 103 221-2 clause 5: a fixed 40-octet header, conditional attributes
//! as TLVs, then the payload. All integers are big-endian.
//!
//! ```text
//!  0       2       4               8               12      14      16
//!  +-------+-------+---------------+---------------+-------+-------+
//!  |version| type  | header length | payload length|format |  dir  |
//!  +-------+-------+---------------+---------------+-------+-------+
//!  16: XID (16 octets, a UUID)       32: correlation ID (8 octets)
//!  40: conditional attributes: (type: 2, length: 2, value: length) ... up to header length
//!  header length: payload (payload length octets)
//! ```
//!
//! Two halves, as in smoltcp: [`PduView::parse`] checks everything once (version, type, both
//! lengths against the input and the configured maximum, every attribute's framing and the size
//! of the attributes whose size the standard fixes), after which no accessor can fail or panic;
//! [`encode`] writes a PDU into a [`BytesMut`]. [`X2x3Codec`] frames a byte stream into PDUs
//! for tokio-util.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{Buf, BufMut, BytesMut};

pub use crate::record::Xid;
use crate::timestamp::Timestamp;

/// The version this implementation writes and accepts (TS 103 221-2 V1.6.1 and later).
pub const VERSION: u16 = 5;
/// The fixed part of the header: the least a header length can be.
pub const FIXED_HEADER: usize = 40;
/// The largest PDU a receiver takes by default: a CC packet fits many times over; what is
/// larger is refused rather than buffered.
pub const DEFAULT_MAX_PDU: usize = 1 << 20;

/// PDU type (clause 5.2.3).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PduType {
    /// xIRI.
    X2,
    /// xCC.
    X3,
    Keepalive,
    KeepaliveAck,
}

impl PduType {
    pub fn code(self) -> u16 {
        match self {
            PduType::X2 => 1,
            PduType::X3 => 2,
            PduType::Keepalive => 3,
            PduType::KeepaliveAck => 4,
        }
    }

    pub fn from_code(c: u16) -> Option<PduType> {
        Some(match c {
            1 => PduType::X2,
            2 => PduType::X3,
            3 => PduType::Keepalive,
            4 => PduType::KeepaliveAck,
            _ => return None,
        })
    }

    fn is_keepalive(self) -> bool {
        matches!(self, PduType::Keepalive | PduType::KeepaliveAck)
    }
}

/// Payload format (clause 5.2.6): what the payload octets are.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    /// 0: keepalives carry no payload.
    Keepalive,
    /// 1: a TS 102 232-1 defined payload.
    Etsi102232,
    /// 2: a 3GPP TS 33.128 defined payload.
    Ts33128,
    /// 3: a 3GPP TS 33.108 defined payload.
    Ts33108,
    /// 4: a format agreed between POI and MDF (tapir's records: see the module documentation
    /// of `x2x3`).
    Proprietary,
    /// 5: an IPv4 packet, from its header on.
    Ipv4,
    /// 6: an IPv6 packet, from its header on.
    Ipv6,
    /// 7: an Ethernet frame.
    Ethernet,
    /// 8..=13 and any later: carried and counted, not interpreted.
    Other(u16),
}

impl PayloadFormat {
    pub fn code(self) -> u16 {
        match self {
            PayloadFormat::Keepalive => 0,
            PayloadFormat::Etsi102232 => 1,
            PayloadFormat::Ts33128 => 2,
            PayloadFormat::Ts33108 => 3,
            PayloadFormat::Proprietary => 4,
            PayloadFormat::Ipv4 => 5,
            PayloadFormat::Ipv6 => 6,
            PayloadFormat::Ethernet => 7,
            PayloadFormat::Other(c) => c,
        }
    }

    pub fn from_code(c: u16) -> PayloadFormat {
        match c {
            0 => PayloadFormat::Keepalive,
            1 => PayloadFormat::Etsi102232,
            2 => PayloadFormat::Ts33128,
            3 => PayloadFormat::Ts33108,
            4 => PayloadFormat::Proprietary,
            5 => PayloadFormat::Ipv4,
            6 => PayloadFormat::Ipv6,
            7 => PayloadFormat::Ethernet,
            c => PayloadFormat::Other(c),
        }
    }
}

/// Payload direction (clause 5.2.7), relative to the target.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PayloadDirection {
    /// 0: keepalives.
    Keepalive,
    /// 1: the POI does not know.
    Unknown,
    /// 2: sent to (received by) the target.
    ToTarget,
    /// 3: sent by the target.
    FromTarget,
    /// 4: the result of data in both directions (a session's IRI).
    Both,
    /// 5: direction does not apply (a warrant notice, an association change).
    NotApplicable,
    Other(u16),
}

impl PayloadDirection {
    pub fn code(self) -> u16 {
        match self {
            PayloadDirection::Keepalive => 0,
            PayloadDirection::Unknown => 1,
            PayloadDirection::ToTarget => 2,
            PayloadDirection::FromTarget => 3,
            PayloadDirection::Both => 4,
            PayloadDirection::NotApplicable => 5,
            PayloadDirection::Other(c) => c,
        }
    }

    pub fn from_code(c: u16) -> PayloadDirection {
        match c {
            0 => PayloadDirection::Keepalive,
            1 => PayloadDirection::Unknown,
            2 => PayloadDirection::ToTarget,
            3 => PayloadDirection::FromTarget,
            4 => PayloadDirection::Both,
            5 => PayloadDirection::NotApplicable,
            c => PayloadDirection::Other(c),
        }
    }
}

/// A conditional attribute (clause 5.3). Those whose value the standard sizes are checked to
/// that size when parsed; the others are octets.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Attribute<'a> {
    /// 5: Domain ID.
    DomainId(&'a [u8]),
    /// 6: Network Function ID.
    NetworkFunctionId(&'a [u8]),
    /// 7: Interception Point ID.
    InterceptionPointId(&'a [u8]),
    /// 8: sequence number, 4 octets.
    SequenceNumber(u32),
    /// 9: timestamp, 4 octets of seconds since 1970 then 4 octets of nanoseconds.
    Timestamp {
        secs: u32,
        nanos: u32,
    },
    /// 10, 11.
    SourceIpv4(Ipv4Addr),
    DestinationIpv4(Ipv4Addr),
    /// 12, 13.
    SourceIpv6(Ipv6Addr),
    DestinationIpv6(Ipv6Addr),
    /// 14, 15: 2 octets each.
    SourcePort(u16),
    DestinationPort(u16),
    /// 16: 1 octet.
    IpProtocol(u8),
    /// 17: the target identifier that matched.
    MatchedTargetId(&'a [u8]),
    /// 18.
    OtherTargetId(&'a [u8]),
    /// Any other type (1..=4: defined by other specifications; 19 and later).
    Other {
        kind: u16,
        value: &'a [u8],
    },
}

impl<'a> Attribute<'a> {
    /// The timestamp attribute for `ts`: times before 1970 or after 2106 cannot be written and
    /// are clamped to the nearest that can.
    pub fn timestamp(ts: Timestamp) -> Attribute<'static> {
        let secs = u32::try_from(ts.secs().max(0)).unwrap_or(u32::MAX);
        let nanos = if ts.secs() < 0 { 0 } else { ts.subsec_nanos() };
        Attribute::Timestamp { secs, nanos }
    }

    pub fn kind(&self) -> u16 {
        match self {
            Attribute::DomainId(_) => 5,
            Attribute::NetworkFunctionId(_) => 6,
            Attribute::InterceptionPointId(_) => 7,
            Attribute::SequenceNumber(_) => 8,
            Attribute::Timestamp { .. } => 9,
            Attribute::SourceIpv4(_) => 10,
            Attribute::DestinationIpv4(_) => 11,
            Attribute::SourceIpv6(_) => 12,
            Attribute::DestinationIpv6(_) => 13,
            Attribute::SourcePort(_) => 14,
            Attribute::DestinationPort(_) => 15,
            Attribute::IpProtocol(_) => 16,
            Attribute::MatchedTargetId(_) => 17,
            Attribute::OtherTargetId(_) => 18,
            Attribute::Other { kind, .. } => *kind,
        }
    }

    fn value_len(&self) -> usize {
        match self {
            Attribute::DomainId(v)
            | Attribute::NetworkFunctionId(v)
            | Attribute::InterceptionPointId(v)
            | Attribute::MatchedTargetId(v)
            | Attribute::OtherTargetId(v)
            | Attribute::Other { value: v, .. } => v.len(),
            Attribute::SequenceNumber(_) | Attribute::SourceIpv4(_) | Attribute::DestinationIpv4(_) => 4,
            Attribute::Timestamp { .. } => 8,
            Attribute::SourceIpv6(_) | Attribute::DestinationIpv6(_) => 16,
            Attribute::SourcePort(_) | Attribute::DestinationPort(_) => 2,
            Attribute::IpProtocol(_) => 1,
        }
    }

    fn put(&self, out: &mut BytesMut) {
        out.put_u16(self.kind());
        out.put_u16(self.value_len() as u16);
        match *self {
            Attribute::DomainId(v)
            | Attribute::NetworkFunctionId(v)
            | Attribute::InterceptionPointId(v)
            | Attribute::MatchedTargetId(v)
            | Attribute::OtherTargetId(v)
            | Attribute::Other { value: v, .. } => out.put_slice(v),
            Attribute::SequenceNumber(n) => out.put_u32(n),
            Attribute::Timestamp { secs, nanos } => {
                out.put_u32(secs);
                out.put_u32(nanos);
            }
            Attribute::SourceIpv4(a) | Attribute::DestinationIpv4(a) => out.put_slice(&a.octets()),
            Attribute::SourceIpv6(a) | Attribute::DestinationIpv6(a) => out.put_slice(&a.octets()),
            Attribute::SourcePort(p) | Attribute::DestinationPort(p) => out.put_u16(p),
            Attribute::IpProtocol(p) => out.put_u8(p),
        }
    }

    /// Reads one attribute's value; `None` when a sized attribute has another size.
    fn read(kind: u16, v: &'a [u8]) -> Option<Attribute<'a>> {
        let fixed = |n: usize| (v.len() == n).then_some(());
        Some(match kind {
            5 => Attribute::DomainId(v),
            6 => Attribute::NetworkFunctionId(v),
            7 => Attribute::InterceptionPointId(v),
            8 => {
                fixed(4)?;
                Attribute::SequenceNumber(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
            }
            9 => {
                fixed(8)?;
                let secs = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                let nanos = u32::from_be_bytes([v[4], v[5], v[6], v[7]]);
                if nanos >= 1_000_000_000 {
                    return None;
                }
                Attribute::Timestamp { secs, nanos }
            }
            10 | 11 => {
                fixed(4)?;
                let a = Ipv4Addr::new(v[0], v[1], v[2], v[3]);
                if kind == 10 {
                    Attribute::SourceIpv4(a)
                } else {
                    Attribute::DestinationIpv4(a)
                }
            }
            12 | 13 => {
                let a = Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?);
                if kind == 12 {
                    Attribute::SourceIpv6(a)
                } else {
                    Attribute::DestinationIpv6(a)
                }
            }
            14 | 15 => {
                fixed(2)?;
                let p = u16::from_be_bytes([v[0], v[1]]);
                if kind == 14 {
                    Attribute::SourcePort(p)
                } else {
                    Attribute::DestinationPort(p)
                }
            }
            16 => {
                fixed(1)?;
                Attribute::IpProtocol(v[0])
            }
            17 => Attribute::MatchedTargetId(v),
            18 => Attribute::OtherTargetId(v),
            kind => Attribute::Other { kind, value: v },
        })
    }
}

/// The fixed header's fields other than the version and the two lengths.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub pdu_type: PduType,
    pub format: PayloadFormat,
    pub direction: PayloadDirection,
    pub xid: Xid,
    /// Zero when the POI does not correlate; else the same for every PDU of one session.
    pub correlation_id: u64,
}

impl Header {
    /// A keepalive (or, with `ack`, its acknowledgement) numbered `n`: the acknowledgement
    /// carries the number of the keepalive it answers in its correlation ID.
    pub fn keepalive(ack: bool, n: u64) -> Header {
        Header {
            pdu_type: if ack { PduType::KeepaliveAck } else { PduType::Keepalive },
            format: PayloadFormat::Keepalive,
            direction: PayloadDirection::Keepalive,
            xid: Xid::NIL,
            correlation_id: n,
        }
    }
}

/// Why octets are not an X2/X3 PDU this implementation takes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    /// Fewer octets than the header or the lengths call for.
    #[error("truncated: {need} octets needed, {have} present")]
    Truncated { need: usize, have: usize },
    /// A version other than [`VERSION`]: nothing else in the PDU can be trusted.
    #[error("version {0}, expected {VERSION}")]
    Version(u16),
    #[error("unknown PDU type {0}")]
    PduType(u16),
    /// A header length below the fixed 40 octets.
    #[error("header length {0} is less than {FIXED_HEADER}")]
    HeaderLength(u32),
    /// Header and payload together exceed the receiver's maximum.
    #[error("PDU of {len} octets exceeds the maximum of {max}")]
    TooLarge { len: u64, max: usize },
    /// An attribute runs past the end of the header.
    #[error("attribute at header offset {offset} runs past the header")]
    AttributeOverrun { offset: usize },
    /// An attribute whose size the standard fixes has another, or a value out of range.
    #[error("attribute type {kind} at header offset {offset}: bad value of {len} octets")]
    AttributeValue { kind: u16, offset: usize, len: usize },
    /// An attribute longer than its 16-bit length field can say.
    #[error("attribute type {kind} of {len} octets is too long to encode")]
    AttributeTooLong { kind: u16, len: usize },
    /// A keepalive with a payload, a payload format or a direction.
    #[error("keepalive with payload format {format}, direction {direction} or {len} payload octets")]
    Keepalive { format: u16, direction: u16, len: usize },
}

/// Header and payload lengths from the first 12 octets, checked: the PDU's total length, or
/// `None` when fewer than 12 octets are there yet.
pub fn frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, PduError> {
    if buf.len() < 12 {
        return Ok(None);
    }
    let version = u16::from_be_bytes([buf[0], buf[1]]);
    if version != VERSION {
        return Err(PduError::Version(version));
    }
    let kind = u16::from_be_bytes([buf[2], buf[3]]);
    if PduType::from_code(kind).is_none() {
        return Err(PduError::PduType(kind));
    }
    let header = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if (header as usize) < FIXED_HEADER {
        return Err(PduError::HeaderLength(header));
    }
    let payload = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let len = u64::from(header) + u64::from(payload);
    if len > max as u64 {
        return Err(PduError::TooLarge { len, max });
    }
    Ok(Some(len as usize))
}

/// A checked PDU over borrowed octets.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PduView<'a> {
    pub header: Header,
    attributes: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> PduView<'a> {
    /// Checks one whole PDU at the start of `buf`; returns it and the octets it took.
    pub fn parse(buf: &'a [u8]) -> Result<(PduView<'a>, usize), PduError> {
        let Some(len) = frame_len(buf, usize::MAX)? else {
            return Err(PduError::Truncated { need: 12, have: buf.len() });
        };
        if buf.len() < len {
            return Err(PduError::Truncated { need: len, have: buf.len() });
        }
        let hlen = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        let u16_at = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
        let pdu_type = PduType::from_code(u16_at(2)).ok_or(PduError::PduType(u16_at(2)))?;
        let mut xid = [0u8; 16];
        xid.copy_from_slice(&buf[16..32]);
        let mut cid = [0u8; 8];
        cid.copy_from_slice(&buf[32..40]);
        let header = Header {
            pdu_type,
            format: PayloadFormat::from_code(u16_at(12)),
            direction: PayloadDirection::from_code(u16_at(14)),
            xid: Xid(xid),
            correlation_id: u64::from_be_bytes(cid),
        };
        let view = PduView { header, attributes: &buf[FIXED_HEADER..hlen], payload: &buf[hlen..len] };
        if pdu_type.is_keepalive()
            && (view.header.format != PayloadFormat::Keepalive
                || view.header.direction != PayloadDirection::Keepalive
                || !view.payload.is_empty())
        {
            return Err(PduError::Keepalive {
                format: view.header.format.code(),
                direction: view.header.direction.code(),
                len: view.payload.len(),
            });
        }
        let mut at = 0;
        while at < view.attributes.len() {
            let offset = FIXED_HEADER + at;
            let rest = &view.attributes[at..];
            if rest.len() < 4 {
                return Err(PduError::AttributeOverrun { offset });
            }
            let kind = u16::from_be_bytes([rest[0], rest[1]]);
            let alen = u16::from_be_bytes([rest[2], rest[3]]) as usize;
            let value = rest.get(4..4 + alen).ok_or(PduError::AttributeOverrun { offset })?;
            Attribute::read(kind, value).ok_or(PduError::AttributeValue { kind, offset, len: alen })?;
            at += 4 + alen;
        }
        Ok((view, len))
    }

    /// The conditional attributes, in the order they were written.
    pub fn attributes(&self) -> impl Iterator<Item = Attribute<'a>> + 'a {
        let mut rest = self.attributes;
        std::iter::from_fn(move || {
            // Checked in `parse`: every TLV is whole and every value readable.
            let kind = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]);
            let len = u16::from_be_bytes([*rest.get(2)?, *rest.get(3)?]) as usize;
            let value = rest.get(4..4 + len)?;
            rest = &rest[4 + len..];
            Attribute::read(kind, value)
        })
    }

    /// The sequence number attribute, if present (the first, should there be several).
    pub fn sequence_number(&self) -> Option<u32> {
        self.attributes().find_map(|a| match a {
            Attribute::SequenceNumber(n) => Some(n),
            _ => None,
        })
    }

    /// The timestamp attribute, if present.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.attributes().find_map(|a| match a {
            Attribute::Timestamp { secs, nanos } => Some(Timestamp::from_secs_nanos(secs.into(), nanos)),
            _ => None,
        })
    }
}

/// Appends one PDU to `out`.
pub fn encode(
    header: &Header,
    attributes: &[Attribute<'_>],
    payload: &[u8],
    out: &mut BytesMut,
) -> Result<(), PduError> {
    let mut attr_len = 0usize;
    for a in attributes {
        let n = a.value_len();
        if n > usize::from(u16::MAX) {
            return Err(PduError::AttributeTooLong { kind: a.kind(), len: n });
        }
        attr_len += 4 + n;
    }
    let hlen = FIXED_HEADER + attr_len;
    let (Ok(h32), Ok(p32)) = (u32::try_from(hlen), u32::try_from(payload.len())) else {
        return Err(PduError::TooLarge { len: (hlen + payload.len()) as u64, max: u32::MAX as usize });
    };
    out.reserve(hlen + payload.len());
    out.put_u16(VERSION);
    out.put_u16(header.pdu_type.code());
    out.put_u32(h32);
    out.put_u32(p32);
    out.put_u16(header.format.code());
    out.put_u16(header.direction.code());
    out.put_slice(&header.xid.0);
    out.put_u64(header.correlation_id);
    for a in attributes {
        a.put(out);
    }
    out.put_slice(payload);
    Ok(())
}

/// One PDU to write: what [`X2x3Codec`] encodes.
#[derive(Copy, Clone, Debug)]
pub struct Outgoing<'a> {
    pub header: Header,
    pub attributes: &'a [Attribute<'a>],
    pub payload: &'a [u8],
}

/// Frames a byte stream into PDUs (each a whole PDU's octets, to check with
/// [`PduView::parse`]) and writes PDUs into one.
///
/// A framing error (a wrong version, an unknown type, an impossible or too large length) ends
/// the stream: nothing after it can be found again. A PDU framed but malformed inside (a bad
/// attribute) is the receiver's to count; the stream goes on after it.
#[derive(Copy, Clone, Debug)]
pub struct X2x3Codec {
    max: usize,
}

impl X2x3Codec {
    /// Refuses PDUs larger than `max` octets.
    pub fn new(max: usize) -> X2x3Codec {
        X2x3Codec { max: max.max(FIXED_HEADER) }
    }
}

impl Default for X2x3Codec {
    fn default() -> X2x3Codec {
        X2x3Codec::new(DEFAULT_MAX_PDU)
    }
}

/// A stream error: I/O, or framing lost.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Pdu(#[from] PduError),
}

impl tokio_util::codec::Decoder for X2x3Codec {
    type Item = BytesMut;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, CodecError> {
        match frame_len(src, self.max)? {
            Some(len) if src.len() >= len => Ok(Some(src.split_to(len))),
            Some(len) => {
                src.reserve(len - src.len());
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, CodecError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => {
                let have = src.len();
                let need = frame_len(src, self.max)?.unwrap_or(12);
                src.advance(have);
                Err(PduError::Truncated { need, have }.into())
            }
        }
    }
}

impl tokio_util::codec::Encoder<Outgoing<'_>> for X2x3Codec {
    type Error = CodecError;

    fn encode(&mut self, pdu: Outgoing<'_>, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(encode(&pdu.header, pdu.attributes, pdu.payload, dst)?)
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::codec::{Decoder, Encoder};

    use super::*;

    fn x3(payload: &[u8]) -> BytesMut {
        let h = Header {
            pdu_type: PduType::X3,
            format: PayloadFormat::Ipv4,
            direction: PayloadDirection::FromTarget,
            xid: Xid::parse("2b36a78b-b628-416d-bd22-404e68a0cd36").unwrap(),
            correlation_id: 7,
        };
        let attrs = [Attribute::SequenceNumber(42), Attribute::Timestamp { secs: 1_772_359_200, nanos: 5 }];
        let mut out = BytesMut::new();
        encode(&h, &attrs, payload, &mut out).unwrap();
        out
    }

    #[test]
    fn a_pdu_reads_back_as_written() {
        let b = x3(b"\x45abc");
        assert_eq!(&b[..4], &[0, 5, 0, 2]);
        assert_eq!(u32::from_be_bytes(b[4..8].try_into().unwrap()), 40 + 8 + 12);
        let (v, n) = PduView::parse(&b).unwrap();
        assert_eq!(n, b.len());
        assert_eq!(v.header.xid.to_string(), "2b36a78b-b628-416d-bd22-404e68a0cd36");
        assert_eq!(v.header.correlation_id, 7);
        assert_eq!(v.sequence_number(), Some(42));
        assert_eq!(v.timestamp(), Some(Timestamp::from_secs_nanos(1_772_359_200, 5)));
        assert_eq!(v.payload, b"\x45abc");
    }

    #[test]
    fn bad_pdus_are_refused_with_the_reason() {
        let good = x3(b"xy");
        let mut v4 = good.clone();
        v4[1] = 4;
        assert_eq!(PduView::parse(&v4).unwrap_err(), PduError::Version(4));
        let mut t9 = good.clone();
        t9[3] = 9;
        assert_eq!(PduView::parse(&t9).unwrap_err(), PduError::PduType(9));
        assert!(matches!(PduView::parse(&good[..good.len() - 1]), Err(PduError::Truncated { .. })));
        // The sequence number attribute said to be 3 octets long: the timestamp's type is read
        // as part of the value, so both framing and sizes are off.
        let mut seq3 = good.clone();
        seq3[43] = 3;
        assert!(matches!(PduView::parse(&seq3), Err(PduError::AttributeValue { kind: 8, .. })));
        let mut over = good.clone();
        over[51] = 200;
        assert!(matches!(PduView::parse(&over), Err(PduError::AttributeOverrun { .. })));
        let mut hl = good.clone();
        hl[4..8].copy_from_slice(&39u32.to_be_bytes());
        assert_eq!(PduView::parse(&hl).unwrap_err(), PduError::HeaderLength(39));
        let mut ka = BytesMut::new();
        encode(&Header::keepalive(false, 1), &[], b"x", &mut ka).unwrap();
        assert!(matches!(PduView::parse(&ka), Err(PduError::Keepalive { len: 1, .. })));
    }

    #[test]
    fn the_codec_frames_a_stream_cut_anywhere() {
        let mut stream = BytesMut::new();
        let mut codec = X2x3Codec::default();
        let attrs = [Attribute::SequenceNumber(1)];
        for (i, p) in [&b"one"[..], b"", b"three33"].iter().enumerate() {
            let mut h = Header::keepalive(false, 0);
            h.pdu_type = PduType::X2;
            h.format = PayloadFormat::Proprietary;
            h.direction = PayloadDirection::Both;
            h.correlation_id = i as u64;
            codec.encode(Outgoing { header: h, attributes: &attrs, payload: p }, &mut stream).unwrap();
        }
        for cut in 0..stream.len() {
            let mut buf = BytesMut::from(&stream[..cut]);
            let mut got = Vec::new();
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&stream[cut..]);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                got.push(f);
            }
            let ids: Vec<u64> = got.iter().map(|f| PduView::parse(f).unwrap().0.header.correlation_id).collect();
            assert_eq!(ids, [0, 1, 2], "cut at {cut}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn the_codec_refuses_what_exceeds_its_maximum_before_buffering_it() {
        let mut codec = X2x3Codec::new(100);
        let mut buf = x3(&[0u8; 200]);
        buf.truncate(12);
        assert!(matches!(codec.decode(&mut buf), Err(CodecError::Pdu(PduError::TooLarge { len: 260, max: 100 }))));
        let mut cut = x3(b"abc");
        cut.truncate(30);
        assert!(matches!(codec.decode_eof(&mut cut), Err(CodecError::Pdu(PduError::Truncated { .. }))));
    }

    proptest::proptest! {
        /// What is written reads back the same; and no octet changed in it makes the parser
        /// panic or read past the PDU.
        #[test]
        fn pdus_round_trip_and_damage_never_panics(
            kind in 1u16..=4, format in 0u16..20, dir in 0u16..8, xid in proptest::array::uniform16(0u8..), cid in 0u64..,
            seq in 0u32.., secs in 0u32.., nanos in 0u32..1_000_000_000, ipid in proptest::collection::vec(0u8.., 0..40),
            payload in proptest::collection::vec(0u8.., 0..300), flip in 0usize..400, to in 0u8..,
        ) {
            let header = Header {
                pdu_type: PduType::from_code(kind).unwrap(),
                format: PayloadFormat::from_code(format),
                direction: PayloadDirection::from_code(dir),
                xid: Xid(xid),
                correlation_id: cid,
            };
            let keepalive = header.pdu_type.is_keepalive();
            let (header, payload) = if keepalive { (Header::keepalive(kind == 4, cid), Vec::new()) } else { (header, payload) };
            let attrs = [Attribute::SequenceNumber(seq), Attribute::InterceptionPointId(&ipid), Attribute::Timestamp { secs, nanos }, Attribute::IpProtocol(6)];
            let mut b = BytesMut::new();
            encode(&header, &attrs, &payload, &mut b).unwrap();
            let (v, n) = PduView::parse(&b).unwrap();
            proptest::prop_assert_eq!(n, b.len());
            proptest::prop_assert_eq!(v.header, header);
            proptest::prop_assert_eq!(v.attributes().collect::<Vec<_>>(), attrs.to_vec());
            proptest::prop_assert_eq!(v.payload, &payload[..]);
            let mut bad = b.to_vec();
            let at = flip % bad.len();
            bad[at] = to;
            if let Ok((v, n)) = PduView::parse(&bad) {
                proptest::prop_assert!(n <= bad.len());
                let attrs: Vec<Attribute<'_>> = v.attributes().collect();
                let mut again = BytesMut::new();
                encode(&v.header, &attrs, v.payload, &mut again).unwrap();
                proptest::prop_assert_eq!(&again[..], &bad[..n]);
            }
        }
    }
}
