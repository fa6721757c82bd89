//! The XID: how X1 names a task, and X2/X3 the task a PDU belongs to (a UUID).

use std::fmt;

use super::Liid;

/// The XID of the X1 task a PDU belongs to: a UUID, written in X1 as 36 lower-case characters.
#[derive(Copy, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Xid(pub [u8; 16]);

impl Xid {
    /// Keepalives carry the all-zero XID.
    pub const NIL: Xid = Xid([0; 16]);

    /// Parses the 8-4-4-4-12 hexadecimal form (either case).
    pub fn parse(s: &str) -> Option<Xid> {
        let b = s.as_bytes();
        if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
            return None;
        }
        let hex: Vec<u8> = b.iter().copied().filter(|&c| c != b'-').collect();
        let mut out = [0u8; 16];
        hex::decode_to_slice(&hex, &mut out).ok()?;
        Some(Xid(out))
    }
}

impl fmt::Display for Xid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        write!(f, "{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }
}

impl fmt::Debug for Xid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Xid {
    /// The XID of a warrant that names none (a warrants file without `xid`): derived from its
    /// LIID, so that a POI and an MDF given the same warrant agree on it without X1. A UUID of
    /// RFC 9562 version 8 (vendor-defined) over SHA-256 of the LIID.
    pub fn derived(liid: &Liid) -> Xid {
        let d = ring::digest::digest(&ring::digest::SHA256, format!("tapir-xid:{liid}").as_bytes());
        let mut b = [0u8; 16];
        b.copy_from_slice(&d.as_ref()[..16]);
        b[6] = (b[6] & 0x0f) | 0x80;
        b[8] = (b[8] & 0x3f) | 0x80;
        Xid(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xids_read_and_print_as_uuids() {
        let x = Xid::parse("2B36A78B-B628-416D-BD22-404E68A0CD36").unwrap();
        assert_eq!(x.to_string(), "2b36a78b-b628-416d-bd22-404e68a0cd36");
        for bad in [
            "",
            "2b36a78b-b628-416d-bd22-404e68a0cd3",
            "2b36a78bxb628-416d-bd22-404e68a0cd36",
            "zb36a78b-b628-416d-bd22-404e68a0cd36",
        ] {
            assert_eq!(Xid::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_derived_xid_is_a_version_8_uuid_fixed_by_the_liid() {
        let a = Xid::derived(&Liid::new("LIID-1").unwrap());
        assert_eq!(a, Xid::derived(&Liid::new("LIID-1").unwrap()));
        assert_ne!(a, Xid::derived(&Liid::new("LIID-2").unwrap()));
        let s = a.to_string();
        assert_eq!(&s[14..15], "8");
        assert!("89ab".contains(&s[19..20]), "{s}");
    }
}
