//! HI1 notifications in the PS-PDU: `Payload.hI1-Operation [3]`, of type
//! `HI1NotificationOperations.HI1-Operation` (ETSI TS 101 671 annex D, module version7, OID
//! {itu-t(0) identified-organization(4) etsi(0) securityDomain(2) lawfulIntercept(2) hi1(0)
//! notificationOperations(1) version7(7)}, as LI-PS-PDU imports it).
//!
//! That module is not among the schemas in hand (only its import line in LI-PS-PDU is). The
//! structure below is our reading of TS 101 671, kept in this one module so that it can be
//! corrected in one place:
//! ```text
//! HI1-Operation ::= CHOICE { liActivated [1] Notification, liDeactivated [2] Notification,
//!                            liModified [3] Notification, alarms-indicator [4] Alarm-Indicator, ... }
//! Notification ::= SEQUENCE {                  -- IMPLICIT TAGS
//!     domainID                     [0] OBJECT IDENTIFIER OPTIONAL,
//!     lawfulInterceptionIdentifier [1] LawfulInterceptionIdentifier,   -- OCTET STRING (1..25)
//!     communicationIdentifier      [2] CommunicationIdentifier OPTIONAL,
//!     timeStamp                    [3] TimeStamp,  -- CHOICE { localTime [0], utcTime [1] UTCTime }
//!     ... }
//! ```
//! We send domainID (the module's OID), the LIID and the time as utcTime (a CHOICE under a tag
//! is explicit, so `[3] { [1] UTCTime }`). communicationIdentifier is left out: its
//! operator-Identifier is limited to 5 octets in HI2Operations, shorter than operator ids in
//! use; the PSHeader already carries the operator and network element.
//! UTCTime has second precision; the PSHeader's timestamps carry the exact time.

use super::ber::{oid_content, put_cons, put_prim, Tag};
use super::ps_pdu::{EncodeError, GeneralizedTime};
use crate::record::WarrantOp;
use crate::timestamp::Timestamp;

/// {0 4 0 2 2 0 1 7}: HI1NotificationOperations version7.
pub const HI1_NOTIFICATION_OPERATIONS_OID: [u32; 8] = [0, 4, 0, 2, 2, 0, 1, 7];

/// One liActivated / liModified / liDeactivated notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hi1Notification<'a> {
    pub op: WarrantOp,
    pub liid: &'a str,
    pub ts: Timestamp,
}

/// The CHOICE alternative's tag number for each operation.
pub fn choice_tag(op: WarrantOp) -> u32 {
    match op {
        WarrantOp::Activated => 1,
        WarrantOp::Deactivated => 2,
        WarrantOp::Modified => 3,
    }
}

/// The alternative's ASN.1 name.
pub fn choice_name(op: WarrantOp) -> &'static str {
    match op {
        WarrantOp::Activated => "liActivated",
        WarrantOp::Deactivated => "liDeactivated",
        WarrantOp::Modified => "liModified",
    }
}

/// `YYMMDDhhmmssZ`, for years 1950..2049 (X.680: UTCTime's two-digit year).
pub fn utc_time(ts: Timestamp) -> Result<[u8; 13], EncodeError> {
    let g = GeneralizedTime::utc(ts);
    let b = g.as_bytes();
    let year: u32 = std::str::from_utf8(b.get(..4).unwrap_or(b"0000")).ok().and_then(|y| y.parse().ok()).unwrap_or(0);
    if !(1950..2050).contains(&year) || b.len() < 14 {
        return Err(EncodeError::Field { field: "utcTime", value: ts.0.to_string(), rule: "year 1950..2049" });
    }
    let mut out = [b'Z'; 13];
    out[..12].copy_from_slice(&b[2..14]);
    Ok(out)
}

impl Hi1Notification<'_> {
    /// The HI1-Operation value (the alternative's TLV), to go inside `Payload [3]`.
    pub fn encode(&self, o: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.liid.is_empty() || self.liid.len() > 25 {
            return Err(EncodeError::Liid { liid: self.liid.into() });
        }
        let time = utc_time(self.ts)?;
        let oid = oid_content(&HI1_NOTIFICATION_OPERATIONS_OID).unwrap_or_default();
        put_cons(o, Tag::ctx_cons(choice_tag(self.op)), 48, |o| {
            put_prim(o, Tag::ctx(0), &oid);
            put_prim(o, Tag::ctx(1), self.liid.as_bytes());
            put_cons(o, Tag::ctx_cons(3), 15, |o| put_prim(o, Tag::ctx(1), &time));
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_is_two_digit_year_seconds_z() {
        // 1700000000 = 2023-11-14T22:13:20Z (date -u -d @1700000000).
        let t = Timestamp::from_secs_nanos(1_700_000_000, 999_000_000);
        assert_eq!(&utc_time(t).unwrap(), b"231114221320Z");
        assert!(utc_time(Timestamp::from_secs(2_600_000_000)).is_err(), "2052 has no UTCTime");
    }

    #[test]
    fn notification_bytes_by_hand() {
        let n = Hi1Notification { op: WarrantOp::Deactivated, liid: "L1", ts: Timestamp::from_secs(1_700_000_000) };
        let mut o = Vec::new();
        n.encode(&mut o).unwrap();
        // A2 { 80 07 04 00 02 02 00 01 07, 81 02 "L1", A3 { 81 0D "231114221320Z" } }
        let mut want = vec![0xA2, 0x1E, 0x80, 0x07, 0x04, 0x00, 0x02, 0x02, 0x00, 0x01, 0x07, 0x81, 0x02, b'L', b'1'];
        want.extend_from_slice(&[0xA3, 0x0F, 0x81, 0x0D]);
        want.extend_from_slice(b"231114221320Z");
        assert_eq!(o, want);
    }
}
