//! Checked wire views (smoltcp style) for the link and network headers the decoder walks itself.
//!
//! No-panic contract: `new_checked` verifies the length once; every accessor reads through
//! [`rd8`]/[`rd16`]/[`rd32`], which return 0 instead of panicking, so even a view built on a short
//! buffer cannot panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use super::{DecodeError, Mac, MacPair};

/// Reads one byte at `i`, 0 when out of range.
#[inline]
pub fn rd8(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// Reads a big-endian u16 at `r`, 0 when out of range.
#[inline]
pub fn rd16(b: &[u8], r: Range<usize>) -> u16 {
    match b.get(r) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

/// Reads a big-endian u32 at `r`, 0 when out of range.
#[inline]
pub fn rd32(b: &[u8], r: Range<usize>) -> u32 {
    match b.get(r) {
        Some(&[a, b2, c, d]) => u32::from_be_bytes([a, b2, c, d]),
        _ => 0,
    }
}

/// `Truncated` unless `b` holds at least `needed` bytes.
#[inline]
pub fn need(layer: &'static str, b: &[u8], needed: usize) -> Result<(), DecodeError> {
    if b.len() < needed {
        Err(DecodeError::Truncated { layer, needed, have: b.len() })
    } else {
        Ok(())
    }
}

/// `&b[from..]`, or `Truncated` naming `layer`.
#[inline]
pub fn tail<'a>(layer: &'static str, b: &'a [u8], from: usize) -> Result<&'a [u8], DecodeError> {
    b.get(from..).ok_or(DecodeError::Truncated { layer, needed: from, have: b.len() })
}

fn mac_at(b: &[u8], r: Range<usize>) -> Mac {
    let mut m = [0u8; 6];
    if let Some(s) = b.get(r) {
        if s.len() == 6 {
            m.copy_from_slice(s);
        }
    }
    m
}

/// Ethernet II header.
pub struct EthernetFrame<'a> {
    buf: &'a [u8],
}

mod eth {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const HEADER_LEN: usize = 14;
}

impl<'a> EthernetFrame<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, DecodeError> {
        need("ethernet", buf, eth::HEADER_LEN)?;
        Ok(EthernetFrame { buf })
    }
    pub fn macs(&self) -> MacPair {
        MacPair { src: mac_at(self.buf, eth::SRC), dst: mac_at(self.buf, eth::DST) }
    }
    pub fn ethertype(&self) -> u16 {
        rd16(self.buf, eth::ETHERTYPE)
    }
    pub fn payload(&self) -> &'a [u8] {
        self.buf.get(eth::HEADER_LEN..).unwrap_or(&[])
    }
}

/// IPv4 header.
pub struct Ipv4Packet<'a> {
    buf: &'a [u8],
}

mod ipv4 {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    pub const MIN_LEN: usize = 20;
}

impl<'a> Ipv4Packet<'a> {
    /// Checks version 4, IHL >= 5, and that the whole header (with options) is present.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, DecodeError> {
        need("ipv4", buf, ipv4::MIN_LEN)?;
        let p = Ipv4Packet { buf };
        let v = rd8(buf, ipv4::VER_IHL) >> 4;
        if v != 4 {
            return Err(DecodeError::BadField { layer: "ipv4", field: "version", value: v.into() });
        }
        let hl = p.header_len();
        if hl < ipv4::MIN_LEN {
            return Err(DecodeError::BadField { layer: "ipv4", field: "ihl", value: (hl / 4) as u64 });
        }
        need("ipv4", buf, hl)?;
        Ok(p)
    }
    pub fn header_len(&self) -> usize {
        usize::from(rd8(self.buf, ipv4::VER_IHL) & 0x0f) * 4
    }
    pub fn total_len(&self) -> u16 {
        rd16(self.buf, ipv4::LENGTH)
    }
    pub fn ident(&self) -> u16 {
        rd16(self.buf, ipv4::IDENT)
    }
    pub fn more_frags(&self) -> bool {
        rd16(self.buf, ipv4::FLG_OFF) & 0x2000 != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u32 {
        u32::from(rd16(self.buf, ipv4::FLG_OFF) & 0x1fff) * 8
    }
    pub fn ttl(&self) -> u8 {
        rd8(self.buf, ipv4::TTL)
    }
    pub fn protocol(&self) -> u8 {
        rd8(self.buf, ipv4::PROTOCOL)
    }
    pub fn src(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(rd32(self.buf, ipv4::SRC)))
    }
    pub fn dst(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(rd32(self.buf, ipv4::DST)))
    }
    /// The IP payload: up to the total length when the frame holds it all (Ethernet padding is
    /// cut off), the captured rest when the frame was snapped, and the captured rest when the
    /// total length is 0 (segmentation offload and BIG TCP captures write 0 there).
    pub fn payload(&self) -> Result<&'a [u8], DecodeError> {
        let hl = self.header_len();
        let total = usize::from(self.total_len());
        let end = if total == 0 {
            self.buf.len()
        } else if total < hl {
            return Err(DecodeError::BadField { layer: "ipv4", field: "total-length", value: total as u64 });
        } else {
            total.min(self.buf.len())
        };
        Ok(self.buf.get(hl..end).unwrap_or(&[]))
    }
    /// Whether the capture holds fewer bytes than the header's total length says.
    pub fn is_snapped(&self) -> bool {
        usize::from(self.total_len()) > self.buf.len()
    }
}

/// IPv6 fixed header.
pub struct Ipv6Packet<'a> {
    buf: &'a [u8],
}

mod ipv6 {
    use std::ops::Range;
    pub const VER_TC_FLOW: usize = 0;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
    pub const HEADER_LEN: usize = 40;
}

fn v6_at(b: &[u8], r: Range<usize>) -> IpAddr {
    let mut a = [0u8; 16];
    if let Some(s) = b.get(r) {
        if s.len() == 16 {
            a.copy_from_slice(s);
        }
    }
    IpAddr::V6(Ipv6Addr::from(a))
}

impl<'a> Ipv6Packet<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, DecodeError> {
        need("ipv6", buf, ipv6::HEADER_LEN)?;
        let v = rd8(buf, ipv6::VER_TC_FLOW) >> 4;
        if v != 6 {
            return Err(DecodeError::BadField { layer: "ipv6", field: "version", value: v.into() });
        }
        Ok(Ipv6Packet { buf })
    }
    pub fn payload_len(&self) -> u16 {
        rd16(self.buf, ipv6::LENGTH)
    }
    pub fn next_header(&self) -> u8 {
        rd8(self.buf, ipv6::NXT_HDR)
    }
    pub fn hop_limit(&self) -> u8 {
        rd8(self.buf, ipv6::HOP_LIMIT)
    }
    pub fn src(&self) -> IpAddr {
        v6_at(self.buf, ipv6::SRC)
    }
    pub fn dst(&self) -> IpAddr {
        v6_at(self.buf, ipv6::DST)
    }
    /// Bytes after the fixed header, cut at the payload length (0 means a jumbogram or an
    /// offloaded capture: take what was captured).
    pub fn payload(&self) -> &'a [u8] {
        let plen = usize::from(self.payload_len());
        let end = if plen == 0 { self.buf.len() } else { (ipv6::HEADER_LEN + plen).min(self.buf.len()) };
        self.buf.get(ipv6::HEADER_LEN..end).unwrap_or(&[])
    }
    pub fn is_snapped(&self) -> bool {
        ipv6::HEADER_LEN + usize::from(self.payload_len()) > self.buf.len()
    }
}

/// IPv6 fragment extension header (RFC 8200 section 4.5).
pub struct Ipv6FragHeader<'a> {
    buf: &'a [u8],
}

mod ipv6frag {
    use std::ops::Range;
    pub const NXT_HDR: usize = 0;
    pub const OFF_M: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..8;
    pub const LEN: usize = 8;
}

impl<'a> Ipv6FragHeader<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, DecodeError> {
        need("ipv6-frag", buf, ipv6frag::LEN)?;
        Ok(Ipv6FragHeader { buf })
    }
    pub fn next_header(&self) -> u8 {
        rd8(self.buf, ipv6frag::NXT_HDR)
    }
    /// Fragment offset in bytes.
    pub fn offset(&self) -> u32 {
        u32::from(rd16(self.buf, ipv6frag::OFF_M) >> 3) * 8
    }
    pub fn more(&self) -> bool {
        rd16(self.buf, ipv6frag::OFF_M) & 1 != 0
    }
    pub fn ident(&self) -> u32 {
        rd32(self.buf, ipv6frag::IDENT)
    }
    pub fn payload(&self) -> &'a [u8] {
        self.buf.get(ipv6frag::LEN..).unwrap_or(&[])
    }
}

/// Length of a generic IPv6 extension header (hop-by-hop, routing, destination options: units
/// of 8 octets not counting the first; AH: units of 4 octets not counting the first two).
pub fn ipv6_ext_len(next_header: u8, buf: &[u8]) -> Result<usize, DecodeError> {
    need("ipv6-ext", buf, 2)?;
    let n = usize::from(rd8(buf, 1));
    let len = if next_header == 51 { (n + 2) * 4 } else { (n + 1) * 8 };
    need("ipv6-ext", buf, len)?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_buffers_read_zero() {
        assert_eq!(rd16(&[1], 0..2), 0);
        assert_eq!(rd32(&[1, 2, 3], 0..4), 0);
        assert_eq!(rd8(&[], 5), 0);
    }

    #[test]
    fn ipv4_rejects_bad_ihl_and_version() {
        let mut h = [0u8; 20];
        h[0] = 0x44;
        assert!(matches!(Ipv4Packet::new_checked(&h), Err(DecodeError::BadField { field: "ihl", value: 4, .. })));
        h[0] = 0x55;
        assert!(matches!(Ipv4Packet::new_checked(&h), Err(DecodeError::BadField { field: "version", value: 5, .. })));
        h[0] = 0x46; // 24-byte header, only 20 present
        assert!(matches!(Ipv4Packet::new_checked(&h), Err(DecodeError::Truncated { needed: 24, have: 20, .. })));
    }
}
