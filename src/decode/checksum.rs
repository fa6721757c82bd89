//! IPv4 header and TCP/UDP checksums of a decoded packet.
//!
//! A receiver drops a packet whose checksum fails, so bytes that fail theirs never reached the
//! application: they must not reach the evidence either (the flow layer decides, see
//! `flow::evidence`). This module only says what the checksums say, computed with etherparse's
//! one's-complement sum over the bytes as captured.
//!
//! `Unchecked` when the check cannot be made: the capture cut the segment short (snap length),
//! the IP header gave no length (segmentation offload), a UDP sender sent no checksum (0), or
//! the transport is neither TCP nor UDP (then only the IPv4 header is checked).

use std::net::IpAddr;

use etherparse::checksum::Sum16BitWords;

use super::{Decoded, Transport};

/// What a packet's checksums say.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// Every checksum that could be computed holds.
    Good,
    /// The IPv4 header or the TCP/UDP checksum fails.
    Bad,
    /// The transport checksum could not be checked (see the module notes); the IPv4 header's, if
    /// any, holds.
    Unchecked,
}

impl Decoded<'_> {
    /// The packet's checksums (costs one pass over the segment: call it for target traffic only).
    pub fn checksum(&self) -> Checksum {
        let w = &self.wire;
        if !w.ipv4_header.is_empty() && Sum16BitWords::new().add_slice(w.ipv4_header).ones_complement() != 0 {
            return Checksum::Bad;
        }
        let (proto, field) = match self.transport {
            Transport::Tcp(_) => (6u8, 16..18),
            Transport::Udp { .. } => (17u8, 6..8),
            _ => return Checksum::Unchecked,
        };
        let (Some(ip), Some(len)) = (self.ip, w.segment_len) else { return Checksum::Unchecked };
        let Some(seg) = w.segment.get(..len as usize) else { return Checksum::Unchecked };
        // A UDP checksum of 0 means none was computed (RFC 768; tunnels over IPv6, RFC 6935).
        if proto == 17 && seg.get(field).is_some_and(|c| c == [0, 0]) {
            return Checksum::Unchecked;
        }
        let pseudo = match (ip.src, ip.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Sum16BitWords::new()
                .add_4bytes(s.octets())
                .add_4bytes(d.octets())
                .add_2bytes([0, proto])
                .add_2bytes((len as u16).to_be_bytes()),
            (IpAddr::V6(s), IpAddr::V6(d)) => Sum16BitWords::new()
                .add_16bytes(s.octets())
                .add_16bytes(d.octets())
                .add_4bytes(len.to_be_bytes())
                .add_4bytes([0, 0, 0, proto]),
            _ => return Checksum::Unchecked,
        };
        // Summed with its own checksum field, a correct segment sums to 0xffff.
        if pseudo.add_slice(seg).ones_complement() == 0 {
            Checksum::Good
        } else {
            Checksum::Bad
        }
    }
}
