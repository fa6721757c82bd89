//! Checked wire views of the overlay headers: VXLAN (RFC 7348), GENEVE (RFC 8926), GRE
//! (RFC 2784/2890, and the PPTP variant of RFC 2637), ERSPAN types II and III.
//!
//! No-panic contract: each `parse` checks every length it relies on and reports a
//! [`DecodeError`]; the returned `inner` slice is always in bounds.

use super::wire::{need, rd16, rd32, rd8, tail};
use super::DecodeError;

/// What a tunnel header says follows it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Inner {
    Ethernet,
    Ipv4,
    Ipv6,
    /// IPv4 or IPv6, by the version nibble.
    Ip,
    Mpls,
    /// Something the decoder does not follow; the carrier is reported as `Transport::Other`.
    Unknown(u16),
}

/// Ethertypes used as tunnel protocol types.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    pub const TEB: u16 = 0x6558;
    pub const ERSPAN_2: u16 = 0x88be;
    pub const ERSPAN_3: u16 = 0x22eb;
    pub const MPLS_UC: u16 = 0x8847;
    pub const MPLS_MC: u16 = 0x8848;
    pub const PPP: u16 = 0x880b;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const QINQ_OLD: u16 = 0x9100;
    pub const PPPOE_SESSION: u16 = 0x8864;
    pub const CISCO_METADATA: u16 = 0x8909;
    pub const VNTAG: u16 = 0x8926;
}

/// Cisco MetaData (CMD, carries the SGT): version, length in 4-byte option units, the options,
/// then the next ethertype. Returns the next ethertype and what follows.
pub fn cisco_metadata(buf: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    need("cmd", buf, 2)?;
    let hl = 2 + usize::from(rd8(buf, 1)) * 4;
    need("cmd", buf, hl + 2)?;
    Ok((rd16(buf, hl..hl + 2), tail("cmd", buf, hl + 2)?))
}

/// Cisco MetaData as a GRE payload (protocol type 0x8909): there the next ethertype comes first,
/// then version, length and the options.
pub fn cisco_metadata_gre(buf: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    need("cmd", buf, 4)?;
    let hl = 4 + usize::from(rd8(buf, 3)) * 4;
    Ok((rd16(buf, 0..2), tail("cmd", buf, hl)?))
}

/// A VXLAN header (8 bytes): flags with the I bit, 24-bit VNI.
pub struct Vxlan {
    pub vni: Option<u32>,
}

mod vxlan {
    use std::ops::Range;
    pub const FLAGS: usize = 0;
    pub const VNI_RSVD: Range<usize> = 4..8;
    pub const LEN: usize = 8;
    pub const FLAG_I: u8 = 0x08;
}

impl Vxlan {
    pub fn parse(buf: &[u8]) -> Result<(Vxlan, &[u8]), DecodeError> {
        need("vxlan", buf, vxlan::LEN)?;
        let vni = (rd8(buf, vxlan::FLAGS) & vxlan::FLAG_I != 0).then(|| rd32(buf, vxlan::VNI_RSVD) >> 8);
        Ok((Vxlan { vni }, tail("vxlan", buf, vxlan::LEN)?))
    }
}

/// A GENEVE header: version, option length, protocol type, VNI; options are skipped.
pub struct Geneve {
    pub vni: u32,
    pub inner: Inner,
}

mod geneve {
    use std::ops::Range;
    pub const VER_OPTLEN: usize = 0;
    pub const PROTO: Range<usize> = 2..4;
    pub const VNI_RSVD: Range<usize> = 4..8;
    pub const LEN: usize = 8;
}

impl Geneve {
    pub fn parse(buf: &[u8]) -> Result<(Geneve, &[u8]), DecodeError> {
        need("geneve", buf, geneve::LEN)?;
        let b0 = rd8(buf, geneve::VER_OPTLEN);
        let ver = b0 >> 6;
        if ver != 0 {
            return Err(DecodeError::BadField { layer: "geneve", field: "version", value: ver.into() });
        }
        let hl = geneve::LEN + usize::from(b0 & 0x3f) * 4;
        need("geneve", buf, hl)?;
        let inner = match rd16(buf, geneve::PROTO) {
            ethertype::TEB => Inner::Ethernet,
            ethertype::IPV4 => Inner::Ipv4,
            ethertype::IPV6 => Inner::Ipv6,
            other => Inner::Unknown(other),
        };
        Ok((Geneve { vni: rd32(buf, geneve::VNI_RSVD) >> 8, inner }, tail("geneve", buf, hl)?))
    }
}

/// A GRE header of version 0 (RFC 2784 with the RFC 2890 key and sequence extensions, and the
/// RFC 1701 routing field) or version 1 (PPTP, RFC 2637).
pub struct Gre {
    pub version: u8,
    pub protocol: u16,
    /// The key (version 0) or the call id (version 1).
    pub key: Option<u32>,
    pub has_seq: bool,
}

mod gre {
    use std::ops::Range;
    pub const FLAGS: Range<usize> = 0..2;
    pub const PROTO: Range<usize> = 2..4;
    pub const BASE_LEN: usize = 4;
    pub const F_CSUM: u16 = 0x8000;
    pub const F_ROUTING: u16 = 0x4000;
    pub const F_KEY: u16 = 0x2000;
    pub const F_SEQ: u16 = 0x1000;
    pub const F_ACK: u16 = 0x0080;
    pub const VERSION: u16 = 0x0007;
    /// Bound on RFC 1701 source route entries walked.
    pub const MAX_SRE: usize = 16;
}

impl Gre {
    pub fn parse(buf: &[u8]) -> Result<(Gre, &[u8]), DecodeError> {
        need("gre", buf, gre::BASE_LEN)?;
        let flags = rd16(buf, gre::FLAGS);
        let protocol = rd16(buf, gre::PROTO);
        let version = (flags & gre::VERSION) as u8;
        let mut off = gre::BASE_LEN;
        let mut key = None;
        match version {
            0 => {
                if flags & (gre::F_CSUM | gre::F_ROUTING) != 0 {
                    off += 4;
                }
                if flags & gre::F_KEY != 0 {
                    need("gre", buf, off + 4)?;
                    key = Some(rd32(buf, off..off + 4));
                    off += 4;
                }
                if flags & gre::F_SEQ != 0 {
                    off += 4;
                }
                if flags & gre::F_ROUTING != 0 {
                    // Source route entries: family(2) offset(1) length(1) data; a NULL entry ends.
                    let mut n = 0;
                    loop {
                        need("gre", buf, off + 4)?;
                        let af = rd16(buf, off..off + 2);
                        let len = usize::from(rd8(buf, off + 3));
                        off += 4 + len;
                        n += 1;
                        if af == 0 && len == 0 {
                            break;
                        }
                        if n > gre::MAX_SRE {
                            return Err(DecodeError::BadField { layer: "gre", field: "routing", value: n as u64 });
                        }
                    }
                }
            }
            1 => {
                if flags & gre::F_KEY == 0 {
                    return Err(DecodeError::BadField { layer: "gre", field: "key-flag", value: 0 });
                }
                need("gre", buf, off + 4)?;
                key = Some(u32::from(rd16(buf, off + 2..off + 4)));
                off += 4;
                if flags & gre::F_SEQ != 0 {
                    off += 4;
                }
                if flags & gre::F_ACK != 0 {
                    off += 4;
                }
            }
            v => return Err(DecodeError::BadField { layer: "gre", field: "version", value: v.into() }),
        }
        need("gre", buf, off)?;
        let g = Gre { version, protocol, key, has_seq: flags & gre::F_SEQ != 0 };
        Ok((g, tail("gre", buf, off)?))
    }
}

/// ERSPAN type II header (8 bytes, after a GRE header with the sequence bit).
pub struct Erspan2 {
    pub session: u32,
}

mod erspan {
    use std::ops::Range;
    pub const VER_VLAN: Range<usize> = 0..2;
    pub const SESSION: Range<usize> = 2..4;
    pub const SESSION_MASK: u16 = 0x03ff;
    pub const II_LEN: usize = 8;
    pub const III_LEN: usize = 12;
    pub const III_FT: usize = 10;
    pub const III_O: usize = 11;
    pub const III_SUBHDR_LEN: usize = 8;
}

impl Erspan2 {
    pub fn parse(buf: &[u8]) -> Result<(Erspan2, &[u8]), DecodeError> {
        need("erspan2", buf, erspan::II_LEN)?;
        let ver = rd16(buf, erspan::VER_VLAN) >> 12;
        if ver != 1 {
            return Err(DecodeError::BadField { layer: "erspan2", field: "version", value: ver.into() });
        }
        let session = u32::from(rd16(buf, erspan::SESSION) & erspan::SESSION_MASK);
        Ok((Erspan2 { session }, tail("erspan2", buf, erspan::II_LEN)?))
    }
}

/// ERSPAN type III header (12 bytes, plus an 8-byte platform subheader when O is set).
pub struct Erspan3 {
    pub session: u32,
    pub inner: Inner,
}

impl Erspan3 {
    pub fn parse(buf: &[u8]) -> Result<(Erspan3, &[u8]), DecodeError> {
        need("erspan3", buf, erspan::III_LEN)?;
        let ver = rd16(buf, erspan::VER_VLAN) >> 12;
        if ver != 2 {
            return Err(DecodeError::BadField { layer: "erspan3", field: "version", value: ver.into() });
        }
        let session = u32::from(rd16(buf, erspan::SESSION) & erspan::SESSION_MASK);
        let ft = (rd8(buf, erspan::III_FT) >> 2) & 0x1f;
        let mut hl = erspan::III_LEN;
        if rd8(buf, erspan::III_O) & 1 != 0 {
            hl += erspan::III_SUBHDR_LEN;
        }
        // Frame type 0 is an Ethernet frame, 2 an IP packet; others are vendor specific.
        let inner = match ft {
            0 => Inner::Ethernet,
            2 => Inner::Ip,
            other => Inner::Unknown(other.into()),
        };
        Ok((Erspan3 { session, inner }, tail("erspan3", buf, hl)?))
    }
}

/// The network protocol inside a PPP frame (RFC 1661), after the optional address/control
/// bytes and a 1- or 2-byte protocol field.
pub fn ppp(buf: &[u8]) -> Result<(Inner, &[u8]), DecodeError> {
    let mut off = 0;
    if rd8(buf, 0) == 0xff && rd8(buf, 1) == 0x03 {
        off = 2;
    }
    need("ppp", buf, off + 1)?;
    // A protocol field whose first byte is odd was compressed to one byte (RFC 1661 section 6.5).
    let (proto, plen) = if rd8(buf, off) & 1 == 1 {
        (u16::from(rd8(buf, off)), 1)
    } else {
        need("ppp", buf, off + 2)?;
        (rd16(buf, off..off + 2), 2)
    };
    let inner = match proto {
        0x0021 => Inner::Ipv4,
        0x0057 => Inner::Ipv6,
        0x0281 => Inner::Mpls,
        other => Inner::Unknown(other),
    };
    Ok((inner, tail("ppp", buf, off + plen)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gre_key_and_seq_offsets() {
        // C|K|S, proto IPv4: 4 base + 4 csum + 4 key + 4 seq = 16.
        let mut b = vec![0xb0, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0, 0, 0, 9];
        b.push(0x45);
        let (g, inner) = Gre::parse(&b).unwrap();
        assert_eq!(g.key, Some(0x1234));
        assert_eq!(g.protocol, 0x0800);
        assert_eq!(inner, &[0x45]);
        assert!(Gre::parse(&b[..10]).is_err());
    }

    #[test]
    fn ppp_compressed_protocol() {
        assert_eq!(ppp(&[0x21, 0x45]).unwrap(), (Inner::Ipv4, &[0x45][..]));
        assert_eq!(ppp(&[0xff, 0x03, 0x00, 0x57, 0x60]).unwrap(), (Inner::Ipv6, &[0x60][..]));
        assert!(ppp(&[0xff, 0x03, 0x00]).is_err());
    }
}
