//! PS-PDU BER stream -> JSON values, for analysts (`tapir decode`) and tests.
//!
//! Keys are the ASN.1 identifiers of the schema (`pSHeader`, `lawfulInterceptionIdentifier`,
//! `iPPackets`...), enumerations are decoded to their identifiers, IP packets and other binary
//! octet strings to lower-case hex. Text-like octet strings (LIID, operator id, user name...)
//! become a string when they are UTF-8 without control characters, `{"hex": ...}` otherwise.
//! A field the decoder does not know is kept as `"[N]"`: hex (or its children), so nothing in a
//! PDU is silently dropped.
//!
//! No-panic contract: every TLV comes from [`ber::Reader`], which checks lengths against the
//! input; nesting is bounded by the schema and, for unknown constructed values, by
//! [`MAX_DEPTH`]. After a TLV that cannot be framed the stream ends with one error (nothing
//! after it can be found again); a framed PDU that does not match the schema yields an error
//! and decoding goes on with the next PDU.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use super::ber::{self, BerError, Class, Reader, Tag, Tlv};

/// Deepest nesting of unknown constructed values rendered as a tree; deeper ones become hex.
pub const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Ber(#[from] BerError),
    #[error("at offset {offset}: {what}: {detail}")]
    Schema { offset: usize, what: &'static str, detail: String },
}

fn schema(t: &Tlv<'_>, what: &'static str, detail: impl Into<String>) -> DecodeError {
    DecodeError::Schema { offset: t.offset, what, detail: detail.into() }
}

/// Decodes a stream of concatenated PS-PDUs, one JSON value per PDU.
pub fn decode_stream(bytes: &[u8]) -> impl Iterator<Item = Result<Value, DecodeError>> + '_ {
    let mut r = Reader::new(bytes, 0);
    std::iter::from_fn(move || {
        let t = match r.next_tlv()? {
            Ok(t) => t,
            Err(e) => return Some(Err(e.into())),
        };
        Some(decode_pdu(&t))
    })
}

/// Decodes one PS-PDU (a framed TLV).
pub fn decode_pdu(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    if t.tag != Tag::SEQUENCE {
        return Err(schema(t, "PS-PDU", format!("expected SEQUENCE, found {}", t.tag)));
    }
    let mut m = Map::new();
    m.insert("offset".into(), t.offset.into());
    m.insert("length".into(), t.total_len.into());
    let mut seen_header = false;
    let mut seen_payload = false;
    for c in kids(t)? {
        match ctx(&c) {
            Some((1, true)) => {
                m.insert("pSHeader".into(), header(&c)?);
                seen_header = true;
            }
            Some((2, true)) => {
                m.insert("payload".into(), payload(&c)?);
                seen_payload = true;
            }
            _ => unknown(&mut m, &c, 0),
        }
    }
    if !seen_header || !seen_payload {
        return Err(schema(t, "PS-PDU", "pSHeader or payload missing"));
    }
    Ok(Value::Object(m))
}

fn kids<'a>(t: &Tlv<'a>) -> Result<Vec<Tlv<'a>>, DecodeError> {
    if !t.tag.constructed {
        return Err(schema(t, "constructed value", format!("{} is primitive", t.tag)));
    }
    let mut r = t.children();
    let mut v = Vec::new();
    while let Some(c) = r.next_tlv() {
        v.push(c?);
    }
    Ok(v)
}

/// A SEQUENCE OF: each element through `f`, as a JSON array.
fn seq_of<'a>(t: &Tlv<'a>, f: impl Fn(&Tlv<'a>) -> Result<Value, DecodeError>) -> Result<Value, DecodeError> {
    kids(t)?.iter().map(f).collect::<Result<Vec<_>, _>>().map(Value::Array)
}

/// The context tag number and constructed bit, `None` for other classes.
fn ctx(t: &Tlv<'_>) -> Option<(u32, bool)> {
    (t.tag.class == Class::Context).then_some((t.tag.number, t.tag.constructed))
}

fn one_child<'a>(t: &Tlv<'a>, what: &'static str) -> Result<Tlv<'a>, DecodeError> {
    let mut v = kids(t)?;
    if v.len() != 1 {
        return Err(schema(t, what, format!("CHOICE holds {} values", v.len())));
    }
    v.pop().ok_or_else(|| schema(t, what, "empty"))
}

fn unknown(m: &mut Map<String, Value>, t: &Tlv<'_>, depth: usize) {
    m.insert(t.tag.to_string(), generic(t, depth));
}

fn generic(t: &Tlv<'_>, depth: usize) -> Value {
    if t.tag.constructed && depth < MAX_DEPTH {
        if let Ok(v) = kids(t) {
            let mut m = Map::new();
            for c in &v {
                unknown(&mut m, c, depth + 1);
            }
            return Value::Object(m);
        }
    }
    Value::String(hex::encode(t.value))
}

fn prim<'a>(t: &Tlv<'a>, what: &'static str) -> Result<&'a [u8], DecodeError> {
    if t.tag.constructed {
        return Err(schema(t, what, "constructed where primitive expected"));
    }
    Ok(t.value)
}

fn text(t: &Tlv<'_>, what: &'static str) -> Result<Value, DecodeError> {
    let v = prim(t, what)?;
    Ok(match std::str::from_utf8(v) {
        Ok(s) if !s.chars().any(char::is_control) => Value::String(s.into()),
        _ => json!({ "hex": hex::encode(v) }),
    })
}

fn hexv(t: &Tlv<'_>, what: &'static str) -> Result<Value, DecodeError> {
    Ok(Value::String(hex::encode(prim(t, what)?)))
}

fn uint(t: &Tlv<'_>, what: &'static str) -> Result<Value, DecodeError> {
    let v = prim(t, what)?;
    ber::read_uint(v)
        .map(Value::from)
        .ok_or_else(|| schema(t, what, format!("bad unsigned INTEGER {}", hex::encode(v))))
}

fn enumerated(t: &Tlv<'_>, what: &'static str, names: &[&str]) -> Result<Value, DecodeError> {
    let v = prim(t, what)?;
    let n = ber::read_int(v).ok_or_else(|| schema(t, what, format!("bad ENUMERATED {}", hex::encode(v))))?;
    Ok(usize::try_from(n)
        .ok()
        .and_then(|i| names.get(i))
        .filter(|s| !s.is_empty())
        .map(|s| Value::String((*s).into()))
        .unwrap_or_else(|| Value::from(n)))
}

fn boolean(t: &Tlv<'_>, what: &'static str) -> Result<Value, DecodeError> {
    match prim(t, what)? {
        [b] => Ok(Value::Bool(*b != 0)),
        _ => Err(schema(t, what, "BOOLEAN of wrong length")),
    }
}

fn null(t: &Tlv<'_>, what: &'static str) -> Result<Value, DecodeError> {
    if prim(t, what)?.is_empty() {
        Ok(Value::Null)
    } else {
        Err(schema(t, what, "NULL with content"))
    }
}

fn oid(t: &Tlv<'_>, what: &'static str) -> Result<Value, DecodeError> {
    let v = prim(t, what)?;
    ber::read_oid(v).map(Value::String).ok_or_else(|| schema(t, what, format!("bad OID {}", hex::encode(v))))
}

fn rel_oid(t: &Tlv<'_>, what: &'static str) -> Result<Value, DecodeError> {
    let v = prim(t, what)?;
    ber::read_relative_oid(v)
        .map(Value::String)
        .ok_or_else(|| schema(t, what, format!("bad RELATIVE-OID {}", hex::encode(v))))
}

fn time(t: &Tlv<'_>, what: &'static str) -> Result<Value, DecodeError> {
    let v = prim(t, what)?;
    match std::str::from_utf8(v) {
        Ok(s) if s.len() >= 14 && s.bytes().all(|b| b.is_ascii_digit() || b".,Z+-".contains(&b)) => Ok(s.into()),
        _ => Err(schema(t, what, format!("bad GeneralizedTime {}", hex::encode(v)))),
    }
}

/// A SEQUENCE decoded field by field: `f` maps (tag number, constructed) to a key and a value.
type Field<'a> = Option<(&'static str, Result<Value, DecodeError>)>;

fn seq<'a>(t: &Tlv<'a>, depth: usize, f: impl Fn(&Tlv<'a>) -> Field<'a>) -> Result<Value, DecodeError> {
    let mut m = Map::new();
    for c in kids(t)? {
        match f(&c) {
            Some((k, v)) => {
                m.insert(k.into(), v?);
            }
            None => unknown(&mut m, &c, depth),
        }
    }
    Ok(Value::Object(m))
}

const TSQ: &[&str] = &["unknown", "timeOfInterception", "timeOfMediation", "timeOfAggregation"];
const DIRECTION: &[&str] = &["fromTarget", "toTarget", "indeterminate", "combined", "notapplicable"];

fn micro(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    seq(t, 3, |c| match ctx(c)? {
        (0, false) => Some(("seconds", uint(c, "seconds"))),
        (1, false) => Some(("microSeconds", uint(c, "microSeconds"))),
        _ => None,
    })
}

fn header(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    seq(t, 1, |c| match ctx(c)? {
        (0, false) => Some(("li-psDomainId", oid(c, "li-psDomainId"))),
        (1, false) => Some(("lawfulInterceptionIdentifier", text(c, "lawfulInterceptionIdentifier"))),
        (2, false) => Some(("authorizationCountryCode", text(c, "authorizationCountryCode"))),
        (3, true) => Some(("communicationIdentifier", communication_id(c))),
        (4, false) => Some(("sequenceNumber", uint(c, "sequenceNumber"))),
        (5, false) => Some(("timeStamp", time(c, "timeStamp"))),
        (6, false) => Some(("interceptionPointID", text(c, "interceptionPointID"))),
        (7, true) => Some(("microSecondTimeStamp", micro(c))),
        (8, false) => Some(("timeStampQualifier", enumerated(c, "timeStampQualifier", TSQ))),
        (9, false) => Some(("extendedInterceptionPointID", hexv(c, "extendedInterceptionPointID"))),
        (10, false) => Some(("networkFunctionIdentifier", hexv(c, "networkFunctionIdentifier"))),
        _ => None,
    })
}

fn communication_id(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    seq(t, 2, |c| match ctx(c)? {
        (0, true) => Some((
            "networkIdentifier",
            seq(c, 3, |c| match ctx(c)? {
                (0, false) => Some(("operatorIdentifier", text(c, "operatorIdentifier"))),
                (1, false) => Some(("networkElementIdentifier", text(c, "networkElementIdentifier"))),
                _ => None,
            }),
        )),
        (1, false) => Some(("communicationIdentityNumber", uint(c, "communicationIdentityNumber"))),
        (2, false) => Some(("deliveryCountryCode", text(c, "deliveryCountryCode"))),
        _ => None,
    })
}

fn payload(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    let c = one_child(t, "Payload")?;
    let (k, v) = match ctx(&c) {
        Some((0, true)) => {
            ("iRIPayloadSequence", Value::Array(kids(&c)?.iter().map(iri_payload).collect::<Result<_, _>>()?))
        }
        Some((1, true)) => {
            ("cCPayloadSequence", Value::Array(kids(&c)?.iter().map(cc_payload).collect::<Result<_, _>>()?))
        }
        Some((2, true)) => ("tRIPayload", tri(&one_child(&c, "TRIPayload")?)?),
        Some((3, true)) => ("hI1-Operation", hi1_operation(&one_child(&c, "HI1-Operation")?)?),
        _ => {
            let mut m = Map::new();
            unknown(&mut m, &c, 1);
            return Ok(Value::Object(m));
        }
    };
    Ok(json!({ k: v }))
}

/// HI1-Operation as read in [`super::hi1`] (TS 101 671; not among the schemas in hand).
fn hi1_operation(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    let name = match ctx(t) {
        Some((1, true)) => "liActivated",
        Some((2, true)) => "liDeactivated",
        Some((3, true)) => "liModified",
        _ => {
            let mut m = Map::new();
            unknown(&mut m, t, 2);
            return Ok(Value::Object(m));
        }
    };
    let v = seq(t, 3, |c| match ctx(c)? {
        (0, false) => Some(("domainID", oid(c, "domainID"))),
        (1, false) => Some(("lawfulInterceptionIdentifier", text(c, "lawfulInterceptionIdentifier"))),
        (3, true) => Some((
            "timeStamp",
            one_child(c, "TimeStamp").and_then(|ts| match ctx(&ts) {
                Some((1, false)) => text(&ts, "utcTime").map(|v| json!({ "utcTime": v })),
                Some((0, true)) => seq(&ts, 4, |l| match ctx(l)? {
                    (0, false) => Some(("generalizedTime", time(l, "generalizedTime"))),
                    _ => None,
                })
                .map(|v| json!({ "localTime": v })),
                _ => Err(schema(&ts, "TimeStamp", "neither localTime nor utcTime")),
            }),
        )),
        _ => None,
    })?;
    Ok(json!({ name: v }))
}

fn tri(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    let (k, v) = match ctx(t) {
        Some((0, true)) => ("integrityCheck", integrity_check(t)?),
        Some((1, false)) => ("testPDU", null(t, "testPDU")?),
        Some((2, false)) => ("paddingPDU", hexv(t, "paddingPDU")?),
        Some((3, false)) => ("keep-alive", null(t, "keep-alive")?),
        Some((4, false)) => ("keep-aliveResponse", null(t, "keep-aliveResponse")?),
        Some((5, false)) => ("firstSegmentFlag", null(t, "firstSegmentFlag")?),
        Some((6, false)) => ("lastSegmentFlag", null(t, "lastSegmentFlag")?),
        Some((7, false)) => ("cINReset", null(t, "cINReset")?),
        Some((11, false)) => ("optionComplete", null(t, "optionComplete")?),
        Some((12, false)) => ("pDUAcknowledgementRequest", null(t, "pDUAcknowledgementRequest")?),
        Some((13, false)) => ("pDUAcknowledgementResponse", null(t, "pDUAcknowledgementResponse")?),
        _ => {
            let mut m = Map::new();
            unknown(&mut m, t, 2);
            return Ok(Value::Object(m));
        }
    };
    Ok(json!({ k: v }))
}

fn integrity_check(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    seq(t, 3, |c| match ctx(c)? {
        (0, true) => Some((
            "includedSequenceNumbers",
            seq_of(c, |n| {
                if n.tag == Tag::INTEGER {
                    uint(n, "includedSequenceNumbers")
                } else {
                    Err(schema(n, "includedSequenceNumbers", format!("{} is not INTEGER", n.tag)))
                }
            }),
        )),
        (1, false) => Some(("checkType", enumerated(c, "checkType", &["", "hash", "signature"]))),
        (2, false) => Some(("dataType", enumerated(c, "dataType", &["", "iRI", "cC", "iLHI"]))),
        (3, false) => Some(("checkValue", hexv(c, "checkValue"))),
        (4, false) => {
            Some(("hashAlgorithm", enumerated(c, "hashAlgorithm", &["", "sHA-1", "sHA-256", "sHA-384", "sHA-512"])))
        }
        (5, false) => Some(("signatureAlgorithm", enumerated(c, "signatureAlgorithm", &["", "dSA", "eCDSA", "edDSA"]))),
        _ => None,
    })
}

fn iri_payload(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    if t.tag != Tag::SEQUENCE {
        return Err(schema(t, "IRIPayload", format!("expected SEQUENCE, found {}", t.tag)));
    }
    seq(t, 3, |c| match ctx(c)? {
        (0, false) => {
            Some(("iRIType", enumerated(c, "iRIType", &["", "iRI-Begin", "iRI-End", "iRI-Continue", "iRI-Report"])))
        }
        (1, false) => Some(("timeStamp", time(c, "timeStamp"))),
        (2, true) => Some(("iRIContents", iri_contents(c))),
        (3, true) => Some(("microSecondTimeStamp", micro(c))),
        (4, false) => Some(("timeStampQualifier", enumerated(c, "timeStampQualifier", TSQ))),
        (5, false) => Some(("sessionDirection", enumerated(c, "sessionDirection", DIRECTION))),
        (6, false) => Some(("payloadDirection", enumerated(c, "payloadDirection", DIRECTION))),
        _ => None,
    })
}

fn iri_contents(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    let c = one_child(t, "IRIContents")?;
    let (k, v) = match ctx(&c) {
        Some((2, true)) => (
            "iPIRI",
            seq(&c, 5, |c| match ctx(c)? {
                (0, false) => Some(("iPIRIObjId", rel_oid(c, "iPIRIObjId"))),
                (1, true) => Some(("iPIRIContents", ipiri_contents(c))),
                _ => None,
            })?,
        ),
        Some((1, true)) => ("emailIRI", email_iri(&c)?),
        _ => {
            let mut m = Map::new();
            unknown(&mut m, &c, 4);
            return Ok(Value::Object(m));
        }
    };
    Ok(json!({ k: v }))
}

const ACCESS_EVENT: &[&str] = &[
    "accessAttempt",
    "accessAccept",
    "accessReject",
    "accessFailed",
    "sessionStart",
    "sessionEnd",
    "interimUpdate",
    "startOfInterceptionWithSessionActive",
    "accessEnd",
    "endOfInterceptionWithSessionActive",
    "unknown",
];
const ACCESS_TYPE: &[&str] = &[
    "undefined",
    "dialUp",
    "xDSL",
    "cableModem",
    "lAN",
    "wirelessLAN",
    "fTTx",
    "wIMAX-HIPERMAN",
    "satellite",
    "wireless-other",
];

fn ipiri_contents(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    seq(t, 6, |c| match ctx(c)? {
        (0, false) => Some(("accessEventType", enumerated(c, "accessEventType", ACCESS_EVENT))),
        (1, false) => Some(("targetUsername", text(c, "targetUsername"))),
        (2, false) => Some(("internetAccessType", enumerated(c, "internetAccessType", ACCESS_TYPE))),
        (3, false) => Some(("iPVersion", enumerated(c, "iPVersion", &["", "iPV4", "iPV6", "iPV4andV6"]))),
        (4, true) => Some(("targetIPAddress", ip_address(c))),
        (5, false) => Some(("targetNetworkID", text(c, "targetNetworkID"))),
        (6, false) => Some(("targetCPEID", text(c, "targetCPEID"))),
        (7, false) => Some(("targetLocation", text(c, "targetLocation"))),
        (8, false) => Some(("pOPPortNumber", uint(c, "pOPPortNumber"))),
        (9, false) => Some(("callBackNumber", text(c, "callBackNumber"))),
        (10, false) => Some(("startTime", time(c, "startTime"))),
        (11, false) => Some(("endTime", time(c, "endTime"))),
        (12, false) => Some((
            "endReason",
            enumerated(
                c,
                "endReason",
                &["undefined", "regularLogoff", "connectionLoss", "connectionTimeout", "leaseExpired"],
            ),
        )),
        (13, false) => Some(("octetsReceived", uint(c, "octetsReceived"))),
        (14, false) => Some(("octetsTransmitted", uint(c, "octetsTransmitted"))),
        (15, false) => Some(("rawAAAData", text(c, "rawAAAData"))),
        (16, false) => Some(("expectedEndTime", time(c, "expectedEndTime"))),
        (18, true) => Some((
            "pOPIdentifier",
            one_child(c, "IPIRIIDType").and_then(|v| match ctx(&v) {
                Some((0, false)) => Ok(json!({ "printableIDType": text(&v, "printableIDType")? })),
                Some((1, false)) => Ok(json!({ "macAddressType": hexv(&v, "macAddressType")? })),
                Some((2, true)) => Ok(json!({ "ipAddressType": ip_address(&v)? })),
                _ => Ok(generic(&v, 7)),
            }),
        )),
        (19, true) => Some(("pOPIPAddress", ip_address(c))),
        (20, true) => Some(("nationalIPIRIParameters", national(c))),
        (21, true) => Some(("additionalIPAddress", ip_address(c))),
        (22, false) => Some((
            "authenticationType",
            enumerated(c, "authenticationType", &["unknown", "static", "radiusAAA", "dhcpAAA", "diameterAAA"]),
        )),
        (23, true) => Some((
            "otherTargetIdentifiers",
            seq_of(c, |t| match ctx(t) {
                Some((0, true)) => ip_address(t).map(|a| json!({ "iPAddress": a })),
                _ => Ok(generic(t, 7)),
            }),
        )),
        (25, false) => Some(("pOPPortID", text(c, "pOPPortID"))),
        _ => None,
    })
}

/// NationalIPIRIParameters with tapir's parameters (`schemas/tapir-hi2.asn`, `super::national`).
fn national(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    seq(t, 7, |c| match ctx(c)? {
        (1, false) => Some(("countryCode", text(c, "countryCode"))),
        (2, false) => Some(("vendor", text(c, "vendor"))),
        (3, false) => Some(("version", uint(c, "version"))),
        (4, true) => Some(("tapir", tapir_iri(c))),
        _ => None,
    })
}

fn utf8s(t: &Tlv<'_>, what: &'static str) -> Result<Value, DecodeError> {
    seq_of(t, |s| text(s, what))
}

fn gaps(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    seq_of(t, |g| {
        seq(g, 12, |c| match ctx(c)? {
            (0, false) => Some(("offset", uint(c, "offset"))),
            (1, false) => Some(("length", uint(c, "length"))),
            _ => None,
        })
    })
}

fn wire_counts(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    seq(t, 10, |c| match ctx(c)? {
        (0, false) => Some(("checksumFailed", uint(c, "checksumFailed"))),
        (1, false) => Some(("unverified", uint(c, "unverified"))),
        (2, false) => Some(("conflicts", uint(c, "conflicts"))),
        _ => None,
    })
}

/// TapirWireConflict, at `depth`.
fn wire_conflict(t: &Tlv<'_>, depth: usize) -> Result<Value, DecodeError> {
    seq(t, depth, |c| match ctx(c)? {
        (0, false) => Some(("fromTarget", boolean(c, "fromTarget"))),
        (1, false) => Some(("offset", uint(c, "offset"))),
        (2, false) => Some(("length", uint(c, "length"))),
        (3, false) => Some(("kind", text(c, "kind"))),
        (4, false) => Some(("keptSHA256", hexv(c, "keptSHA256"))),
        (5, false) => Some(("otherSHA256", hexv(c, "otherSHA256"))),
        _ => None,
    })
}

fn tapir_iri(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    seq(t, 8, |c| match ctx(c)? {
        (0, false) => Some(("recordType", text(c, "recordType"))),
        (1, true) => Some((
            "flow",
            seq(c, 9, |c| match ctx(c)? {
                (0, false) => Some(("protocol", uint(c, "protocol"))),
                (1, false) => Some(("targetPort", uint(c, "targetPort"))),
                (2, true) => Some(("otherAddress", ip_address(c))),
                (3, false) => Some(("otherPort", uint(c, "otherPort"))),
                (4, false) => Some(("targetOriginated", boolean(c, "targetOriginated"))),
                (5, true) => Some(("vlans", seq_of(c, |n| uint(n, "vlans")))),
                (6, true) => Some((
                    "tunnels",
                    seq_of(c, |t| {
                        seq(t, 11, |c| match ctx(c)? {
                            (0, false) => Some(("kind", text(c, "kind"))),
                            (1, true) => Some(("outerSource", ip_address(c))),
                            (2, true) => Some(("outerDestination", ip_address(c))),
                            (3, false) => Some(("vni", uint(c, "vni"))),
                            _ => None,
                        })
                    }),
                )),
                _ => None,
            }),
        )),
        (2, true) => Some((
            "counters",
            seq(c, 9, |c| match ctx(c)? {
                (0, false) => Some(("packetsFromTarget", uint(c, "packetsFromTarget"))),
                (1, false) => Some(("packetsToTarget", uint(c, "packetsToTarget"))),
                (2, false) => Some(("payloadOctetsFromTarget", uint(c, "payloadOctetsFromTarget"))),
                (3, false) => Some(("payloadOctetsToTarget", uint(c, "payloadOctetsToTarget"))),
                (4, true) => Some(("gapsFromTarget", gaps(c))),
                (5, true) => Some(("gapsToTarget", gaps(c))),
                (6, true) => Some(("wireFromTarget", wire_counts(c))),
                (7, true) => Some(("wireToTarget", wire_counts(c))),
                _ => None,
            }),
        )),
        (3, true) => Some((
            "provenance",
            seq(c, 9, |c| match ctx(c)? {
                (0, false) => Some(("selector", text(c, "selector"))),
                (1, false) => Some(("target", text(c, "target"))),
                (2, true) => Some(("chain", utf8s(c, "chain"))),
                _ => None,
            }),
        )),
        (4, true) => Some(("event", tapir_event(c))),
        (5, false) => Some((
            "caseRecord",
            prim(c, "caseRecord").map(|b| {
                serde_json::from_slice(b).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
            }),
        )),
        _ => None,
    })
}

fn tapir_event(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    let c = one_child(t, "TapirEvent")?;
    let (k, v) = match ctx(&c) {
        Some((0, true)) => (
            "ftp",
            seq(&c, 10, |c| match ctx(c)? {
                (0, false) => Some(("action", text(c, "action"))),
                (1, false) => Some(("user", text(c, "user"))),
                (2, false) => Some(("command", text(c, "command"))),
                (3, false) => Some(("path", text(c, "path"))),
                (4, false) => Some(("renamedTo", text(c, "renamedTo"))),
                (5, false) => Some(("workingDirectory", text(c, "workingDirectory"))),
                (6, false) => Some(("replyCode", uint(c, "replyCode"))),
                (7, false) => Some(("replyText", text(c, "replyText"))),
                (8, false) => Some(("success", boolean(c, "success"))),
                (9, true) => Some((
                    "transfer",
                    seq(c, 11, |c| match ctx(c)? {
                        (0, false) => Some(("mode", text(c, "mode"))),
                        (1, true) => Some(("dataAddress", ip_address(c))),
                        (2, false) => Some(("dataPort", uint(c, "dataPort"))),
                        (3, false) => Some(("dataCIN", uint(c, "dataCIN"))),
                        (4, false) => Some(("size", uint(c, "size"))),
                        (5, false) => Some(("wireOctets", uint(c, "wireOctets"))),
                        (6, false) => Some(("sha256", hexv(c, "sha256"))),
                        (7, false) => Some(("objectID", uint(c, "objectID"))),
                        (8, false) => Some(("complete", boolean(c, "complete"))),
                        (9, false) => Some(("restOffset", uint(c, "restOffset"))),
                        _ => None,
                    }),
                )),
                _ => None,
            })?,
        ),
        Some((1, true)) => (
            "http",
            seq(&c, 10, |c| match ctx(c)? {
                (0, false) => Some(("method", text(c, "method"))),
                (1, false) => Some(("uri", text(c, "uri"))),
                (2, false) => Some(("version", text(c, "version"))),
                (3, false) => Some(("host", text(c, "host"))),
                (4, false) => Some(("userAgent", text(c, "userAgent"))),
                (5, false) => Some(("status", uint(c, "status"))),
                (6, false) => Some(("requestBodyOctets", uint(c, "requestBodyOctets"))),
                (7, false) => Some(("responseBodyOctets", uint(c, "responseBodyOctets"))),
                (8, false) => Some(("requestContentType", text(c, "requestContentType"))),
                (9, false) => Some(("responseContentType", text(c, "responseContentType"))),
                (10, true) => Some((
                    "objects",
                    seq_of(c, |r| {
                        seq(r, 12, |c| match ctx(c)? {
                            (0, false) => Some(("objectID", uint(c, "objectID"))),
                            (1, false) => Some(("fromClient", boolean(c, "fromClient"))),
                            (2, false) => Some(("name", text(c, "name"))),
                            (3, false) => Some(("sha256", hexv(c, "sha256"))),
                            (4, false) => Some(("size", uint(c, "size"))),
                            (5, false) => Some(("complete", boolean(c, "complete"))),
                            _ => None,
                        })
                    }),
                )),
                (11, false) => Some(("imageID", text(c, "imageID"))),
                (12, true) => Some(("sdpMedia", utf8s(c, "sdpMedia"))),
                _ => None,
            })?,
        ),
        Some((2, true)) => (
            "tls",
            seq(&c, 10, |c| match ctx(c)? {
                (0, false) => Some(("version", text(c, "version"))),
                (1, false) => Some(("serverName", text(c, "serverName"))),
                (2, true) => Some(("alpnOffered", utf8s(c, "alpnOffered"))),
                (3, false) => Some(("alpnSelected", text(c, "alpnSelected"))),
                (4, false) => Some(("cipherSuite", text(c, "cipherSuite"))),
                (5, false) => Some(("certificateSubject", text(c, "certificateSubject"))),
                (6, false) => Some(("certificateIssuer", text(c, "certificateIssuer"))),
                (7, true) => Some(("certificateNames", utf8s(c, "certificateNames"))),
                (8, false) => Some(("certificateSHA256", hexv(c, "certificateSHA256"))),
                (9, false) => Some(("ja4", text(c, "ja4"))),
                (10, false) => Some(("ja4s", text(c, "ja4s"))),
                (11, false) => Some(("upgradedFrom", text(c, "upgradedFrom"))),
                (12, false) => Some(("complete", boolean(c, "complete"))),
                _ => None,
            })?,
        ),
        Some((3, true)) => (
            "smtp",
            seq(&c, 10, |c| match ctx(c)? {
                (0, false) => Some(("what", text(c, "what"))),
                (1, false) => Some(("helo", text(c, "helo"))),
                (2, false) => Some(("replyCode", uint(c, "replyCode"))),
                (3, false) => Some(("replyText", text(c, "replyText"))),
                (4, false) => Some(("success", boolean(c, "success"))),
                (5, true) => Some((
                    "anomalies",
                    seq_of(c, |a| {
                        seq(a, 12, |c| match ctx(c)? {
                            (0, false) => Some(("name", text(c, "name"))),
                            (1, false) => Some(("count", uint(c, "count"))),
                            _ => None,
                        })
                    }),
                )),
                _ => None,
            })?,
        ),
        Some((4, true)) => (
            "object",
            seq(&c, 10, |c| match ctx(c)? {
                (0, false) => Some(("objectID", uint(c, "objectID"))),
                (1, false) => Some(("kind", text(c, "kind"))),
                (2, false) => Some(("protocol", text(c, "protocol"))),
                (3, false) => Some(("name", text(c, "name"))),
                (4, false) => Some(("fromTarget", boolean(c, "fromTarget"))),
                (5, false) => Some(("size", uint(c, "size"))),
                (6, false) => Some(("sha256", hexv(c, "sha256"))),
                (7, false) => Some(("md5", hexv(c, "md5"))),
                (8, false) => Some(("sha512", hexv(c, "sha512"))),
                (9, false) => Some(("format", text(c, "format"))),
                (10, false) => Some(("formatReason", text(c, "formatReason"))),
                (11, false) => Some(("complete", boolean(c, "complete"))),
                (12, true) => Some(("gaps", gaps(c))),
                (13, false) => Some(("parentID", uint(c, "parentID"))),
                (14, false) => Some(("declaredSize", uint(c, "declaredSize"))),
                (15, true) => Some(("wireConflicts", seq_of(c, |w| wire_conflict(w, 12)))),
                (16, false) => Some(("equalsArtifact", text(c, "equalsArtifact"))),
                _ => None,
            })?,
        ),
        Some((6, true)) => ("wireConflict", wire_conflict(&c, 10)?),
        Some((7, true)) => ("vmi", tapir_vmi(&c)?),
        Some((8, true)) => ("media", tapir_media(&c)?),
        Some((5, true)) => (
            "association",
            seq(&c, 10, |c| match ctx(c)? {
                (0, false) => Some(("event", text(c, "event"))),
                (1, true) => Some((
                    "identifiers",
                    seq_of(c, |i| {
                        seq(i, 12, |c| match ctx(c)? {
                            (0, false) => Some(("name", text(c, "name"))),
                            (1, false) => Some(("value", text(c, "value"))),
                            _ => None,
                        })
                    }),
                )),
                (2, true) => Some(("selectorsAdded", utf8s(c, "selectorsAdded"))),
                (3, true) => Some(("selectorsRemoved", utf8s(c, "selectorsRemoved"))),
                _ => None,
            })?,
        ),
        _ => {
            let mut m = Map::new();
            unknown(&mut m, &c, 8);
            return Ok(Value::Object(m));
        }
    };
    Ok(json!({ k: v }))
}

fn int(t: &Tlv<'_>, what: &'static str) -> Result<Value, DecodeError> {
    let v = prim(t, what)?;
    ber::read_int(v).map(Value::from).ok_or_else(|| schema(t, what, format!("bad INTEGER {}", hex::encode(v))))
}

/// TapirMedia: an RTMP, RTSP, RTP or SIP event.
fn tapir_media(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    seq(t, 10, |c| match ctx(c)? {
        (0, false) => Some(("protocol", text(c, "protocol"))),
        (1, false) => Some(("what", text(c, "what"))),
        (2, false) => Some(("url", text(c, "url"))),
        (3, false) => Some(("application", text(c, "application"))),
        (4, false) => Some(("mode", text(c, "mode"))),
        (5, false) => Some(("streamNameSHA256", hexv(c, "streamNameSHA256"))),
        (6, false) => Some(("method", text(c, "method"))),
        (7, false) => Some(("status", text(c, "status"))),
        (8, false) => Some(("callID", text(c, "callID"))),
        (9, false) => Some(("from", text(c, "from"))),
        (10, false) => Some(("to", text(c, "to"))),
        (11, true) => Some(("sdpMedia", utf8s(c, "sdpMedia"))),
        (12, false) => Some(("ssrc", int(c, "ssrc"))),
        (13, true) => Some(("codecs", utf8s(c, "codecs"))),
        (14, false) => Some(("width", uint(c, "width"))),
        (15, false) => Some(("height", uint(c, "height"))),
        (16, false) => Some(("frameRateMilli", uint(c, "frameRateMilli"))),
        (17, false) => Some(("durationMs", uint(c, "durationMs"))),
        (18, false) => Some(("frames", uint(c, "frames"))),
        (19, false) => Some(("lostFrames", uint(c, "lostFrames"))),
        (20, false) => Some(("packets", uint(c, "packets"))),
        (21, false) => Some(("lostPackets", int(c, "lostPackets"))),
        (22, false) => Some(("jitterMicros", uint(c, "jitterMicros"))),
        (23, false) => Some(("objectID", uint(c, "objectID"))),
        (24, false) => Some(("objectSHA256", hexv(c, "objectSHA256"))),
        (25, false) => Some(("complete", boolean(c, "complete"))),
        (26, false) => Some(("note", text(c, "note"))),
        (27, false) => Some(("mp4ObjectID", uint(c, "mp4ObjectID"))),
        _ => None,
    })
}

/// TapirVmi: one image inspection's summary.
fn tapir_vmi(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    seq(t, 10, |c| match ctx(c)? {
        (0, false) => Some(("imageObjectID", uint(c, "imageObjectID"))),
        (1, false) => Some(("imageSHA256", hexv(c, "imageSHA256"))),
        (2, false) => Some(("outcome", text(c, "outcome"))),
        (3, false) => Some(("container", text(c, "container"))),
        (4, false) => Some(("os", text(c, "os"))),
        (5, false) => Some(("hostname", text(c, "hostname"))),
        (6, true) => Some((
            "users",
            seq_of(c, |u| {
                seq(u, 12, |c| match ctx(c)? {
                    (0, false) => Some(("name", text(c, "name"))),
                    (1, false) => Some(("uid", uint(c, "uid"))),
                    (2, false) => Some(("password", text(c, "password"))),
                    (3, true) => Some(("groups", utf8s(c, "groups"))),
                    _ => None,
                })
            }),
        )),
        (7, true) => Some((
            "crontabs",
            seq_of(c, |u| {
                seq(u, 12, |c| match ctx(c)? {
                    (0, false) => Some(("place", text(c, "place"))),
                    (1, false) => Some(("user", text(c, "user"))),
                    (2, false) => Some(("line", text(c, "line"))),
                    _ => None,
                })
            }),
        )),
        (8, true) => Some((
            "sshKeys",
            seq_of(c, |u| {
                seq(u, 12, |c| match ctx(c)? {
                    (0, false) => Some(("user", text(c, "user"))),
                    (1, false) => Some(("keyType", text(c, "keyType"))),
                    (2, false) => Some(("comment", text(c, "comment"))),
                    (3, false) => Some(("fingerprint", text(c, "fingerprint"))),
                    _ => None,
                })
            }),
        )),
        (9, true) => Some((
            "artifacts",
            seq_of(c, |u| {
                seq(u, 12, |c| match ctx(c)? {
                    (0, false) => Some(("kind", text(c, "kind"))),
                    (1, false) => Some(("place", text(c, "place"))),
                    (2, false) => Some(("fromMemory", boolean(c, "fromMemory"))),
                    (3, false) => Some(("size", uint(c, "size"))),
                    (4, false) => Some(("sha256", hexv(c, "sha256"))),
                    (5, false) => Some(("objectID", uint(c, "objectID"))),
                    (6, false) => Some(("format", text(c, "format"))),
                    (7, false) => Some(("mailFrom", text(c, "mailFrom"))),
                    (8, false) => Some(("mailTo", text(c, "mailTo"))),
                    (9, false) => Some(("subject", text(c, "subject"))),
                    (10, false) => Some(("messageID", text(c, "messageID"))),
                    (11, false) => Some(("date", text(c, "date"))),
                    (12, false) => Some(("equalsObject", text(c, "equalsObject"))),
                    _ => None,
                })
            }),
        )),
        (10, false) => Some(("reportObjectID", uint(c, "reportObjectID"))),
        (11, false) => Some(("reportSHA256", hexv(c, "reportSHA256"))),
        (12, true) => Some(("notes", utf8s(c, "notes"))),
        (13, false) => Some(("imageName", text(c, "imageName"))),
        (14, false) => Some(("timezone", text(c, "timezone"))),
        _ => None,
    })
}

fn ip_address(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    seq(t, 8, |c| match ctx(c)? {
        (1, false) => Some(("iP-type", enumerated(c, "iP-type", &["iPV4", "iPV6"]))),
        (2, true) => Some((
            "iP-value",
            one_child(c, "IP-value").and_then(|v| match ctx(&v) {
                Some((1, false)) => {
                    let b = prim(&v, "iPBinaryAddress")?;
                    let a = match b.len() {
                        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
                        _ => None,
                    };
                    let s = a.map(|a| a.to_string()).unwrap_or_else(|| hex::encode(b));
                    Ok(json!({ "iPBinaryAddress": s }))
                }
                Some((2, false)) => Ok(json!({ "iPTextAddress": text(&v, "iPTextAddress")? })),
                _ => Ok(generic(&v, 9)),
            }),
        )),
        (3, false) => Some(("iP-assignment", enumerated(c, "iP-assignment", &["", "static", "dynamic", "notKnown"]))),
        (4, false) => Some(("iPv6PrefixLength", uint(c, "iPv6PrefixLength"))),
        (5, false) => Some(("iPv4SubnetMask", hexv(c, "iPv4SubnetMask"))),
        (6, false) => Some(("iP-NAT-translated", boolean(c, "iP-NAT-translated"))),
        _ => None,
    })
}

fn cc_payload(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    if t.tag != Tag::SEQUENCE {
        return Err(schema(t, "CCPayload", format!("expected SEQUENCE, found {}", t.tag)));
    }
    seq(t, 3, |c| match ctx(c)? {
        (0, false) => Some(("payloadDirection", enumerated(c, "payloadDirection", DIRECTION))),
        (1, false) => Some(("timeStamp", time(c, "timeStamp"))),
        (2, true) => Some(("cCContents", cc_contents(c))),
        (3, true) => Some(("microSecondTimeStamp", micro(c))),
        (4, false) => Some(("timeStampQualifier", enumerated(c, "timeStampQualifier", TSQ))),
        _ => None,
    })
}

fn cc_contents(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    let c = one_child(t, "CCContents")?;
    let (k, v) = match ctx(&c) {
        Some((2, true)) => (
            "iPCC",
            seq(&c, 5, |c| match ctx(c)? {
                (0, false) => Some(("iPCCObjId", rel_oid(c, "iPCCObjId"))),
                (1, true) => Some((
                    "iPCCContents",
                    one_child(c, "IPCCContents").and_then(|v| match ctx(&v) {
                        Some((0, false)) => Ok(json!({ "iPPackets": hexv(&v, "iPPackets")? })),
                        Some((1, true)) => Ok(json!({ "iPTruncatedPacket": seq(&v, 7, |c| match ctx(c)? {
                            (0, false) => Some(("truncatedPacket", hexv(c, "truncatedPacket"))),
                            (1, false) => Some(("originalLength", uint(c, "originalLength"))),
                            _ => None,
                        })? })),
                        _ => Ok(generic(&v, 7)),
                    }),
                )),
                _ => None,
            })?,
        ),
        Some((1, true)) => (
            "emailCC",
            seq(&c, 5, |c| match ctx(c)? {
                (0, false) => Some(("eCCObjId", rel_oid(c, "eCCObjId"))),
                (1, false) => Some(("email-Format", enumerated(c, "email-Format", &["", "ip-packet", "application"]))),
                (2, false) => Some(("content", hexv(c, "content"))),
                _ => None,
            })?,
        ),
        _ => {
            let mut m = Map::new();
            unknown(&mut m, &c, 4);
            return Ok(Value::Object(m));
        }
    };
    Ok(json!({ k: v }))
}

fn email_iri(t: &Tlv<'_>) -> Result<Value, DecodeError> {
    const EVENT: &[&str] = &[
        "",
        "send",
        "receive",
        "download",
        "logon-attempt",
        "logon",
        "logon-failure",
        "logoff",
        "partial-download",
        "upload",
    ];
    seq(t, 5, |c| match ctx(c)? {
        (0, false) => Some(("eIRIObjId", rel_oid(c, "eIRIObjId"))),
        (1, false) => Some(("eventType", enumerated(c, "eventType", EVENT))),
        (2, true) => Some(("client-Address", ip_address(c))),
        (3, true) => Some(("server-Address", ip_address(c))),
        (4, false) => Some(("client-Port", uint(c, "client-Port"))),
        (5, false) => Some(("server-Port", uint(c, "server-Port"))),
        (6, false) => Some(("server-Octets-Sent", uint(c, "server-Octets-Sent"))),
        (7, false) => Some(("client-Octets-Sent", uint(c, "client-Octets-Sent"))),
        (8, false) => Some(("protocol-ID", enumerated(c, "protocol-ID", &["", "smtp", "pop3", "imap"]))),
        (9, false) => Some(("e-mail-Sender", text(c, "e-mail-Sender"))),
        (10, true) => Some(("e-mail-Recipients", seq_of(c, |r| text(r, "e-mail-Recipients")))),
        (11, false) => Some(("status", enumerated(c, "status", &["", "unknown", "failed", "succeeded"]))),
        (12, false) => Some(("total-Recipient-Count", uint(c, "total-Recipient-Count"))),
        (13, false) => Some(("message-ID", text(c, "message-ID"))),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::analyze::rtp::RtpEvent;
    use crate::analyze::sip::SipEvent;
    use crate::media::rtp::Stats;
    use crate::record::{AppEvent, Dir, IriEvent, IriRecord, Liid, Provenance};
    use crate::timestamp::Timestamp;

    /// TapirIRI as the encoder writes it for `event`, read back by this decoder.
    fn round_trip(
        protocol: &'static str,
        event: impl serde::Serialize + std::fmt::Debug + Send + Sync + 'static,
    ) -> Value {
        let rec = IriRecord {
            liid: Liid::new("L1").unwrap(),
            cin: Some(crate::record::Cin::FIRST),
            ts: Timestamp::from_secs_nanos(1_772_359_200, 0),
            event: IriEvent::App(AppEvent::new(protocol, event)),
            provenance: Arc::new(Provenance {
                selector: "ipv4:198.51.100.7".into(),
                target: "t".into(),
                chain: vec![],
            }),
        };
        let mut wrapped = Vec::new();
        ber::put_prim(&mut wrapped, ber::Tag::SEQUENCE, &crate::deliver::etsi::national::tapir_iri(&rec, None));
        let t = ber::Reader::new(&wrapped, 0).next_tlv().unwrap().unwrap();
        tapir_iri(&t).unwrap()["event"]["media"].clone()
    }

    #[test]
    fn tapir_media_round_trips_signed_and_text_fields() {
        let stats = Stats {
            ssrc: 0xdead_beef,
            packets: 998,
            expected: 1000,
            lost: -2,
            reordered: 0,
            duplicates: 4,
            jitter_ms: 1.5,
            max_jitter_ms: 2.0,
            first_seq: 1,
            last_seq: 1000,
            first_ts: 0,
            last_ts: 90_000,
            restarts: 0,
        };
        let e = RtpEvent {
            what: "stream-end",
            direction: Dir::Orig,
            ssrc: 0xdead_beef,
            payload_type: 0,
            codec: Some("pcm_mulaw"),
            clock_rate: 8000,
            clock_rate_assumed: false,
            stats: Some(stats),
            media: None,
            note: Some("n".into()),
            refused_ssrc_packets: 0,
        };
        let m = round_trip("rtp", e);
        assert_eq!(m["protocol"], "rtp");
        assert_eq!(m["ssrc"], 0xdead_beef_u32);
        assert_eq!(m["lostPackets"], -2);
        assert_eq!(m["jitterMicros"], 1500);
        assert_eq!(m["codecs"], serde_json::json!(["pcm_mulaw"]));
        let s = SipEvent {
            kind: "request",
            method: Some("INVITE".into()),
            call_id: Some("c@h".into()),
            media: vec!["audio 198.51.100.7:6000 PCMU/8000".into()],
            ..Default::default()
        };
        let m = round_trip("sip", s);
        assert_eq!(
            (m["what"].as_str(), m["method"].as_str(), m["callID"].as_str()),
            (Some("request"), Some("INVITE"), Some("c@h"))
        );
        assert_eq!(m["sdpMedia"][0], "audio 198.51.100.7:6000 PCMU/8000");
    }
}
