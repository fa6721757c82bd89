//! TS 102 232-1 PS-PDU: the header every HI2/HI3 PDU carries and the payload choice.
//!
//! Module `LI-PS-PDU` version43 by default; the version is a per-LEA setting and the
//! `li-psDomainId` OID is derived from it, as are the relative OIDs of the IPAccessPDU (-3) and
//! EmailPDU (-2) contents. Tags follow `schemas/etsi/LI-PS-PDU.asn` (IMPLICIT TAGS; a tag on a
//! CHOICE is explicit, hence the constructed `[2]` around `Payload`, `CCContents`, ...).

use super::ber::{self, put_cons, put_null, put_prim, put_uint, Tag};
use super::email::{EmailCc, EmailIri};
use super::ipaccess::IpIriContents;
use crate::timestamp::Timestamp;

/// The ASN.1 module versions agreed with one LEA. The OIDs in every PDU follow them exactly.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Versions {
    /// `LI-PS-PDU` genHeader version: `li-psDomainId` = 0.4.0.2.2.5.1.<this>.
    pub li_ps_pdu: u32,
    /// `IPAccessPDU` version: iPIRIObjId = {5 3 <this> 1}, iPCCObjId = {5 3 <this> 2}.
    pub ip_access: u32,
    /// `EmailPDU` version: eIRIObjId = {5 2 <this> 1}, eCCObjId = {5 2 <this> 2}.
    pub email: u32,
}

impl Default for Versions {
    fn default() -> Self {
        // version43 of LI-PS-PDU is the schema in hand; IPAccessPDU version18 likewise (TS 33.128
        // r19 imports it). LI-PS-PDU version43 imports EmailPDU version20.
        Versions { li_ps_pdu: 43, ip_access: 18, email: 20 }
    }
}

impl Versions {
    /// `{itu-t(0) identified-organization(4) etsi(0) securityDomain(2) lawfulIntercept(2) li-ps(5) genHeader(1) versionN}`.
    pub fn li_ps_domain_id(&self) -> [u32; 8] {
        [0, 4, 0, 2, 2, 5, 1, self.li_ps_pdu]
    }
    pub fn ip_iri_obj_id(&self) -> [u32; 4] {
        [5, 3, self.ip_access, 1]
    }
    pub fn ip_cc_obj_id(&self) -> [u32; 4] {
        [5, 3, self.ip_access, 2]
    }
    pub fn email_iri_obj_id(&self) -> [u32; 4] {
        [5, 2, self.email, 1]
    }
    pub fn email_cc_obj_id(&self) -> [u32; 4] {
        [5, 2, self.email, 2]
    }
}

/// Which header time fields to send (clause 5.2.6: timeStamp, or microSecondTimeStamp).
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeStampMode {
    /// `timeStamp [5] GeneralizedTime`, UTC, microsecond fraction.
    Generalized,
    /// `microSecondTimeStamp [7]` (seconds + microseconds since the epoch).
    MicroSecond,
    Both,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeStampQualifier {
    Unknown = 0,
    TimeOfInterception = 1,
    TimeOfMediation = 2,
    TimeOfAggregation = 3,
}

/// Per-LEA header settings (what does not change from PDU to PDU).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtsiConfig {
    #[serde(default)]
    pub versions: Versions,
    /// networkIdentifier.operatorIdentifier, 1..16 octets.
    pub operator_id: String,
    /// networkIdentifier.networkElementIdentifier, 1..16 octets.
    #[serde(default)]
    pub network_element_id: Option<String>,
    /// Two-letter ISO 3166-1 code of the authorising country.
    #[serde(default)]
    pub authorization_country_code: Option<String>,
    #[serde(default)]
    pub delivery_country_code: Option<String>,
    /// interceptionPointID: 1..8 printable characters.
    #[serde(default)]
    pub interception_point_id: Option<String>,
    #[serde(default = "default_ts_mode")]
    pub timestamps: TimeStampMode,
    #[serde(default = "default_tsq")]
    pub time_stamp_qualifier: Option<TimeStampQualifier>,
}

fn default_ts_mode() -> TimeStampMode {
    TimeStampMode::MicroSecond
}
fn default_tsq() -> Option<TimeStampQualifier> {
    Some(TimeStampQualifier::TimeOfInterception)
}

impl EtsiConfig {
    pub fn new(operator_id: &str) -> EtsiConfig {
        EtsiConfig {
            versions: Versions::default(),
            operator_id: operator_id.into(),
            network_element_id: None,
            authorization_country_code: None,
            delivery_country_code: None,
            interception_point_id: None,
            timestamps: default_ts_mode(),
            time_stamp_qualifier: default_tsq(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{field}: {value:?} must be {rule}")]
    Invalid { field: &'static str, value: String, rule: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("LIID {liid:?}: must be 1..25 octets")]
    Liid { liid: String },
    #[error("CIN {0} does not fit INTEGER (0..4294967295)")]
    Cin(u64),
    #[error("{field}: value {value:?} out of range ({rule})")]
    Field { field: &'static str, value: String, rule: &'static str },
}

/// ASN.1 PrintableString alphabet (X.680 41.4).
pub fn is_printable(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b))
}

/// UTC GeneralizedTime text, kept inline (no allocation). `YYYYMMDDHHMMSS[.f+]Z` when built
/// from a [`Timestamp`]; [`GeneralizedTime::from_ascii`] takes other forms as given.
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct GeneralizedTime {
    buf: [u8; 32],
    len: u8,
}

impl std::fmt::Debug for GeneralizedTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GeneralizedTime({:?})", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Civil date from days since 1970-01-01 (H. Hinnant's algorithm), valid for any i64 input that
/// a Timestamp can produce.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl GeneralizedTime {
    /// UTC with a microsecond fraction, trailing zeros (and a bare '.') dropped as DER asks.
    /// Years outside 0..=9999 are clamped, GeneralizedTime has four year digits.
    pub fn utc(ts: Timestamp) -> GeneralizedTime {
        let secs = ts.secs();
        let (mut y, mut mo, mut d) = civil(secs.div_euclid(86_400));
        let mut sod = secs.rem_euclid(86_400) as u32;
        let mut micros = ts.subsec_nanos() / 1000;
        if y < 0 {
            (y, mo, d, sod, micros) = (0, 1, 1, 0, 0);
        } else if y > 9999 {
            (y, mo, d, sod, micros) = (9999, 12, 31, 86_399, 999_999);
        }
        let mut g = GeneralizedTime { buf: [0; 32], len: 0 };
        let mut put = |v: u32, digits: u32| {
            for i in (0..digits).rev() {
                g.buf[usize::from(g.len)] = b'0' + ((v / 10u32.pow(i)) % 10) as u8;
                g.len += 1;
            }
        };
        put(y as u32, 4);
        put(mo, 2);
        put(d, 2);
        put(sod / 3600, 2);
        put(sod / 60 % 60, 2);
        put(sod % 60, 2);
        if micros != 0 {
            let mut digits = 6;
            while micros % 10 == 0 {
                micros /= 10;
                digits -= 1;
            }
            g.buf[usize::from(g.len)] = b'.';
            g.len += 1;
            let mut put = |v: u32, digits: u32| {
                for i in (0..digits).rev() {
                    g.buf[usize::from(g.len)] = b'0' + ((v / 10u32.pow(i)) % 10) as u8;
                    g.len += 1;
                }
            };
            put(micros, digits);
        }
        g.buf[usize::from(g.len)] = b'Z';
        g.len += 1;
        g
    }

    /// Any text of the GeneralizedTime shape (14 digits, optional fraction, optional `Z` or
    /// offset), e.g. a local time without zone as some peers send it.
    pub fn from_ascii(s: &str) -> Option<GeneralizedTime> {
        let b = s.as_bytes();
        if b.len() < 14 || b.len() > 32 || !b[..14].iter().all(u8::is_ascii_digit) {
            return None;
        }
        if !b[14..].iter().all(|c| c.is_ascii_digit() || b".,Z+-".contains(c)) {
            return None;
        }
        let mut g = GeneralizedTime { buf: [0; 32], len: b.len() as u8 };
        g.buf[..b.len()].copy_from_slice(b);
        Some(g)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// What changes from PDU to PDU in the header.
#[derive(Copy, Clone, Debug)]
pub struct PduHeader<'a> {
    pub liid: &'a str,
    /// communicationIdentityNumber; `None` only where clause 5.2.4 allows (no session).
    pub cin: Option<u64>,
    pub seq: u32,
    pub ts: Timestamp,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PayloadDirection {
    FromTarget = 0,
    ToTarget = 1,
    Indeterminate = 2,
    Combined = 3,
    NotApplicable = 4,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum IriType {
    Begin = 1,
    End = 2,
    Continue = 3,
    Report = 4,
}

/// One IRIPayload; its time is the header's unless `ts` is given (aggregated IRI).
#[derive(Clone, Debug)]
pub struct IriPayload<'a> {
    pub iri_type: IriType,
    pub ts: Option<Timestamp>,
    pub contents: IriContents<'a>,
}

#[derive(Copy, Clone, Debug)]
pub enum IriContents<'a> {
    /// `iPIRI [2]` (TS 102 232-3).
    IpIri(&'a IpIriContents),
    /// `emailIRI [1]` (TS 102 232-2).
    EmailIri(&'a EmailIri),
}

/// One CCPayload.
#[derive(Copy, Clone, Debug)]
pub struct CcPayload<'a> {
    pub direction: Option<PayloadDirection>,
    /// For aggregated CC (several payloads per PDU); `None` for one payload per PDU.
    pub ts: Option<Timestamp>,
    pub contents: CcContents<'a>,
}

#[derive(Copy, Clone, Debug)]
pub enum CcContents<'a> {
    /// `iPCC [2]` with `iPPackets`: one IP packet, from its IP header on.
    IpPacket(&'a [u8]),
    /// `iPCC [2]` with `iPTruncatedPacket`.
    IpTruncated { packet: &'a [u8], original_len: u64 },
    /// `emailCC [1]`.
    Email(EmailCc<'a>),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CheckType {
    Hash = 1,
    Signature = 2,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DataType {
    Iri = 1,
    Cc = 2,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HashAlgorithm {
    Sha1 = 1,
    Sha256 = 2,
    Sha384 = 3,
    Sha512 = 4,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SignatureAlgorithm {
    Dsa = 1,
    Ecdsa = 2,
    EdDsa = 3,
}

/// TRIPayload.integrityCheck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrityCheck {
    /// In the order the PDUs were processed.
    pub included: Vec<u32>,
    pub check_type: CheckType,
    pub data_type: DataType,
    pub check_value: Vec<u8>,
    pub hash_algorithm: Option<HashAlgorithm>,
    pub signature_algorithm: Option<SignatureAlgorithm>,
}

/// TRIPayload alternatives tapir sends or answers.
#[derive(Copy, Clone, Debug)]
pub enum Tri<'a> {
    IntegrityCheck(&'a IntegrityCheck),
    TestPdu,
    Padding(&'a [u8]),
    KeepAlive,
    KeepAliveResponse,
    FirstSegmentFlag,
    LastSegmentFlag,
    CinReset,
}

#[derive(Copy, Clone, Debug)]
pub enum Payload<'a> {
    Iri(&'a [IriPayload<'a>]),
    Cc(&'a [CcPayload<'a>]),
    Tri(Tri<'a>),
    /// `hI1-Operation [3]`: a warrant notification (see [`super::hi1`]).
    Hi1(&'a super::hi1::Hi1Notification<'a>),
}

/// Encodes PS-PDUs for one LEA: the validated config with its OIDs pre-encoded.
#[derive(Clone, Debug)]
pub struct Encoder {
    cfg: EtsiConfig,
    domain_id: Vec<u8>,
    pub(crate) ip_iri_obj_id: Vec<u8>,
    pub(crate) ip_cc_obj_id: Vec<u8>,
    pub(crate) email_iri_obj_id: Vec<u8>,
    pub(crate) email_cc_obj_id: Vec<u8>,
}

fn check_len(field: &'static str, v: &str, max: usize) -> Result<(), ConfigError> {
    if v.is_empty() || v.len() > max {
        return Err(ConfigError::Invalid {
            field,
            value: v.into(),
            rule: match max {
                16 => "1..16 octets",
                _ => "1..8 printable characters",
            },
        });
    }
    Ok(())
}

fn check_cc(field: &'static str, v: &Option<String>) -> Result<(), ConfigError> {
    match v {
        Some(c) if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) => {
            Err(ConfigError::Invalid { field, value: c.clone(), rule: "two upper-case letters (ISO 3166-1)" })
        }
        _ => Ok(()),
    }
}

impl Encoder {
    pub fn new(cfg: EtsiConfig) -> Result<Encoder, ConfigError> {
        check_len("operator_id", &cfg.operator_id, 16)?;
        if let Some(ne) = &cfg.network_element_id {
            check_len("network_element_id", ne, 16)?;
        }
        check_cc("authorization_country_code", &cfg.authorization_country_code)?;
        check_cc("delivery_country_code", &cfg.delivery_country_code)?;
        if let Some(ip) = &cfg.interception_point_id {
            check_len("interception_point_id", ip, 8)?;
            if !is_printable(ip) {
                return Err(ConfigError::Invalid {
                    field: "interception_point_id",
                    value: ip.clone(),
                    rule: "PrintableString",
                });
            }
        }
        let v = &cfg.versions;
        let domain_id = ber::oid_content(&v.li_ps_domain_id()).unwrap_or_default();
        Ok(Encoder {
            domain_id,
            ip_iri_obj_id: ber::relative_oid_content(&v.ip_iri_obj_id()),
            ip_cc_obj_id: ber::relative_oid_content(&v.ip_cc_obj_id()),
            email_iri_obj_id: ber::relative_oid_content(&v.email_iri_obj_id()),
            email_cc_obj_id: ber::relative_oid_content(&v.email_cc_obj_id()),
            cfg,
        })
    }

    pub fn config(&self) -> &EtsiConfig {
        &self.cfg
    }

    /// Appends one PS-PDU to `out`.
    pub fn encode(&self, out: &mut Vec<u8>, hdr: &PduHeader<'_>, payload: &Payload<'_>) -> Result<(), EncodeError> {
        if hdr.liid.is_empty() || hdr.liid.len() > 25 {
            return Err(EncodeError::Liid { liid: hdr.liid.into() });
        }
        let cin = match hdr.cin {
            Some(c) => Some(u32::try_from(c).map_err(|_| EncodeError::Cin(c))?),
            None => None,
        };
        let ts = time_parts(hdr.ts)?;
        let hint = payload_hint(payload);
        let start = out.len();
        let mut result = Ok(());
        put_cons(out, Tag::SEQUENCE, hint + 64, |o| {
            put_cons(o, Tag::ctx_cons(1), 48, |o| self.header(o, hdr, cin, ts));
            put_cons(o, Tag::ctx_cons(2), hint, |o| result = self.payload(o, payload));
        });
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn header(&self, o: &mut Vec<u8>, hdr: &PduHeader<'_>, cin: Option<u32>, ts: (u64, u32)) {
        let c = &self.cfg;
        put_prim(o, Tag::ctx(0), &self.domain_id);
        put_prim(o, Tag::ctx(1), hdr.liid.as_bytes());
        if let Some(cc) = &c.authorization_country_code {
            put_prim(o, Tag::ctx(2), cc.as_bytes());
        }
        put_cons(o, Tag::ctx_cons(3), 8, |o| {
            put_cons(o, Tag::ctx_cons(0), c.operator_id.len() + 2, |o| {
                put_prim(o, Tag::ctx(0), c.operator_id.as_bytes());
                if let Some(ne) = &c.network_element_id {
                    put_prim(o, Tag::ctx(1), ne.as_bytes());
                }
            });
            if let Some(cin) = cin {
                put_uint(o, Tag::ctx(1), cin.into());
            }
            if let Some(cc) = &c.delivery_country_code {
                put_prim(o, Tag::ctx(2), cc.as_bytes());
            }
        });
        put_uint(o, Tag::ctx(4), hdr.seq.into());
        if matches!(c.timestamps, TimeStampMode::Generalized | TimeStampMode::Both) {
            put_prim(o, Tag::ctx(5), GeneralizedTime::utc(hdr.ts).as_bytes());
        }
        if let Some(ip) = &c.interception_point_id {
            put_prim(o, Tag::ctx(6), ip.as_bytes());
        }
        if matches!(c.timestamps, TimeStampMode::MicroSecond | TimeStampMode::Both) {
            put_micro(o, Tag::ctx_cons(7), ts);
        }
        if let Some(q) = c.time_stamp_qualifier {
            put_uint(o, Tag::ctx(8), q as u64);
        }
    }

    fn payload(&self, o: &mut Vec<u8>, p: &Payload<'_>) -> Result<(), EncodeError> {
        match p {
            Payload::Iri(items) => {
                let mut r = Ok(());
                put_cons(o, Tag::ctx_cons(0), 0, |o| {
                    for it in items.iter() {
                        if let Err(e) = self.iri_payload(o, it) {
                            r = Err(e);
                        }
                    }
                });
                r
            }
            Payload::Cc(items) => {
                let hint = items.iter().map(cc_hint).sum();
                let mut r = Ok(());
                put_cons(o, Tag::ctx_cons(1), hint, |o| {
                    for it in items.iter() {
                        if let Err(e) = self.cc_payload(o, it) {
                            r = Err(e);
                        }
                    }
                });
                r
            }
            Payload::Tri(t) => {
                // TRIPayload is a CHOICE: its [2] is explicit.
                let hint = match t {
                    Tri::Padding(p) => p.len(),
                    Tri::IntegrityCheck(ic) => ic.check_value.len(),
                    _ => 0,
                };
                put_cons(o, Tag::ctx_cons(2), hint, |o| tri(o, t));
                Ok(())
            }
            Payload::Hi1(n) => {
                // HI1-Operation is a CHOICE: its [3] is explicit around the alternative.
                let mut r = Ok(());
                put_cons(o, Tag::ctx_cons(3), 48, |o| r = n.encode(o));
                r
            }
        }
    }

    fn iri_payload(&self, o: &mut Vec<u8>, it: &IriPayload<'_>) -> Result<(), EncodeError> {
        let ts = it.ts.map(time_parts).transpose()?;
        let mut r = Ok(());
        put_cons(o, Tag::SEQUENCE, 0, |o| {
            put_uint(o, Tag::ctx(0), it.iri_type as u64);
            // IRIContents is a CHOICE: [2] explicit around the alternative.
            put_cons(o, Tag::ctx_cons(2), 0, |o| match it.contents {
                IriContents::IpIri(c) => {
                    put_cons(o, Tag::ctx_cons(2), 0, |o| {
                        put_prim(o, Tag::ctx(0), &self.ip_iri_obj_id);
                        let country = self.cfg.authorization_country_code.as_deref();
                        put_cons(o, Tag::ctx_cons(1), 0, |o| r = c.encode(o, country));
                    });
                }
                IriContents::EmailIri(e) => {
                    put_cons(o, Tag::ctx_cons(1), 0, |o| r = e.encode(o, &self.email_iri_obj_id));
                }
            });
            if let Some(ts) = ts {
                put_micro(o, Tag::ctx_cons(3), ts);
            }
        });
        r
    }

    fn cc_payload(&self, o: &mut Vec<u8>, it: &CcPayload<'_>) -> Result<(), EncodeError> {
        let ts = it.ts.map(time_parts).transpose()?;
        put_cons(o, Tag::SEQUENCE, cc_hint(it), |o| {
            if let Some(d) = it.direction {
                put_uint(o, Tag::ctx(0), d as u64);
            }
            let hint = cc_hint(it);
            put_cons(o, Tag::ctx_cons(2), hint, |o| match it.contents {
                CcContents::IpPacket(p) => put_cons(o, Tag::ctx_cons(2), hint, |o| {
                    put_prim(o, Tag::ctx(0), &self.ip_cc_obj_id);
                    put_cons(o, Tag::ctx_cons(1), p.len(), |o| put_prim(o, Tag::ctx(0), p));
                }),
                CcContents::IpTruncated { packet, original_len } => put_cons(o, Tag::ctx_cons(2), hint, |o| {
                    put_prim(o, Tag::ctx(0), &self.ip_cc_obj_id);
                    put_cons(o, Tag::ctx_cons(1), packet.len(), |o| {
                        put_cons(o, Tag::ctx_cons(1), packet.len(), |o| {
                            put_prim(o, Tag::ctx(0), packet);
                            put_uint(o, Tag::ctx(1), original_len);
                        })
                    });
                }),
                CcContents::Email(e) => put_cons(o, Tag::ctx_cons(1), hint, |o| e.encode(o, &self.email_cc_obj_id)),
            });
            if let Some(ts) = ts {
                put_micro(o, Tag::ctx_cons(3), ts);
            }
        });
        Ok(())
    }

    /// A keep-alive TRI PDU.
    pub fn keep_alive(&self, out: &mut Vec<u8>, hdr: &PduHeader<'_>) -> Result<(), EncodeError> {
        self.encode(out, hdr, &Payload::Tri(Tri::KeepAlive))
    }

    /// The answer to a keep-alive (clause 6.3: the same header as the keep-alive).
    pub fn keep_alive_response(&self, out: &mut Vec<u8>, hdr: &PduHeader<'_>) -> Result<(), EncodeError> {
        self.encode(out, hdr, &Payload::Tri(Tri::KeepAliveResponse))
    }

    /// cINReset: after a restart, tells the LEMF that sequence numbers of this (LIID, CIN) start again.
    pub fn cin_reset(&self, out: &mut Vec<u8>, hdr: &PduHeader<'_>) -> Result<(), EncodeError> {
        self.encode(out, hdr, &Payload::Tri(Tri::CinReset))
    }
}

fn payload_hint(p: &Payload<'_>) -> usize {
    match p {
        Payload::Cc(items) => items.iter().map(cc_hint).sum(),
        Payload::Tri(Tri::Padding(b)) => b.len(),
        _ => 0,
    }
}

fn cc_hint(c: &CcPayload<'_>) -> usize {
    match c.contents {
        CcContents::IpPacket(p) => p.len(),
        CcContents::IpTruncated { packet, .. } => packet.len(),
        CcContents::Email(e) => e.content.len(),
    }
}

fn time_parts(ts: Timestamp) -> Result<(u64, u32), EncodeError> {
    let secs = u64::try_from(ts.secs()).map_err(|_| EncodeError::Field {
        field: "timeStamp",
        value: ts.0.to_string(),
        rule: "not before 1970",
    })?;
    Ok((secs, ts.subsec_nanos() / 1000))
}

fn put_micro(o: &mut Vec<u8>, tag: Tag, (secs, micros): (u64, u32)) {
    put_cons(o, tag, 8, |o| {
        put_uint(o, Tag::ctx(0), secs);
        put_uint(o, Tag::ctx(1), micros.into());
    });
}

fn tri(o: &mut Vec<u8>, t: &Tri<'_>) {
    match t {
        Tri::IntegrityCheck(ic) => put_cons(o, Tag::ctx_cons(0), ic.check_value.len(), |o| {
            put_cons(o, Tag::ctx_cons(0), 0, |o| {
                for &n in &ic.included {
                    put_uint(o, Tag::INTEGER, n.into());
                }
            });
            put_uint(o, Tag::ctx(1), ic.check_type as u64);
            put_uint(o, Tag::ctx(2), ic.data_type as u64);
            put_prim(o, Tag::ctx(3), &ic.check_value);
            if let Some(h) = ic.hash_algorithm {
                put_uint(o, Tag::ctx(4), h as u64);
            }
            if let Some(s) = ic.signature_algorithm {
                put_uint(o, Tag::ctx(5), s as u64);
            }
        }),
        Tri::TestPdu => put_null(o, Tag::ctx(1)),
        Tri::Padding(p) => put_prim(o, Tag::ctx(2), p),
        Tri::KeepAlive => put_null(o, Tag::ctx(3)),
        Tri::KeepAliveResponse => put_null(o, Tag::ctx(4)),
        Tri::FirstSegmentFlag => put_null(o, Tag::ctx(5)),
        Tri::LastSegmentFlag => put_null(o, Tag::ctx(6)),
        Tri::CinReset => put_null(o, Tag::ctx(7)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalized_time_is_utc_der_form() {
        // 1700000000 = 2023-11-14T22:13:20Z (date -u -d @1700000000).
        let t = Timestamp::from_secs_nanos(1_700_000_000, 123_456_000);
        assert_eq!(GeneralizedTime::utc(t).as_bytes(), b"20231114221320.123456Z");
        let t = Timestamp::from_secs_nanos(1_700_000_000, 500_000_000);
        assert_eq!(GeneralizedTime::utc(t).as_bytes(), b"20231114221320.5Z");
        assert_eq!(GeneralizedTime::utc(Timestamp::from_secs(951_782_400)).as_bytes(), b"20000229000000Z");
        // i64::MIN ns: python datetime(1970,1,1)+timedelta(seconds=-9223372037, microseconds=145224).
        assert_eq!(GeneralizedTime::utc(Timestamp::MIN).as_bytes(), b"16770921001243.145224Z");
    }

    #[test]
    fn config_is_validated() {
        assert!(Encoder::new(EtsiConfig::new("")).is_err());
        assert!(Encoder::new(EtsiConfig::new("12345678901234567")).is_err());
        let mut c = EtsiConfig::new("OP");
        c.authorization_country_code = Some("nz".into());
        assert!(Encoder::new(c).is_err());
        let mut c = EtsiConfig::new("OP");
        c.interception_point_id = Some("a_b".into());
        assert!(Encoder::new(c).is_err());
    }
}
