//! Which TCP segments the receiver accepted: checksums, with checksum offload told apart.
//!
//! A receiver drops a segment whose checksum fails, so such a segment must not reach the
//! analyzers or an object: a target could otherwise send `EVIL` with a bad checksum, then the
//! `GOOD` the receiver takes, and leave `EVIL` in the evidence. But a capture taken on a
//! sending host holds its outgoing segments before the NIC fills in their checksums (checksum
//! offload), and a capture on a receiving host holds segments the NIC or the kernel merged
//! (GRO) under the first one's checksum: there, a failing checksum says nothing.
//!
//! Suricata's `checksum-validation: auto` samples the first 1000 packets of a capture and turns
//! validation off for all of it when more than a tenth fail. That drops the sampled packets of
//! an offloaded capture and trusts everything of a mixed one. Here the decision is per
//! direction of each session, where offload shows itself:
//! - A direction is *verified* once one of its segments that carries data or SYN passes its
//!   checksum. Offload leaves every such segment of a direction failing, so an offloaded
//!   direction is never verified, and its segments are taken, counted as unverified. (Resets and
//!   TIME-WAIT ACKs an offloading host computes in software: they do not verify.) A SYN that starts a new attempt
//!   (another ISN, before any data) starts the direction afresh (suricata-verify bug-7657-01:
//!   spoofed SYNs with valid checksums, then the real client's, offloaded).
//! - A direction that has already taken a failing data or SYN segment (offload shown) is never
//!   verified afterwards. An offloading Linux sender still computes a checksum in software now
//!   and then (a retransmission, a segment after a full window): on a veth capture of a 3 MB
//!   FTP upload, one data segment in the middle passed, and refusing every offloaded segment
//!   after it cut the file at 1.3 MB. On a wire, where checksums hold, the SYN verifies the
//!   direction before any data, so this changes nothing there.
//! - In a verified direction a failing segment is refused (counted, compared with the accepted
//!   bytes by the reassembler), unless it is larger than a segment can be on the wire: more
//!   payload than the MSS the peer announced (or, without a handshake, than the largest verified
//!   segment and 1460 bytes). That one was coalesced by the capturing host; it is taken,
//!   counted as unverified.
//! - A segment whose checksum cannot be computed (cut by the snap length, an IP length of 0) is
//!   taken, counted as unverified.
//!
//! What remains open: a hostile segment in a direction that has not yet verified (before its
//! first valid segment: in practice only on a session caught mid-stream), or larger than the
//! peer's MSS, is taken; it is counted, and a conflict with the valid version is still
//! reported by the reassembler.

use crate::decode::Checksum;

/// Whether checksums decide what enters a stream (configured: `[capture]
/// checksum_validation`, `tapir replay --checksums`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChecksumValidation {
    /// Per direction, as the module notes say.
    #[default]
    Auto,
    /// Every segment is taken and nothing is counted (Suricata's `-k none`): for captures
    /// edited without fixing their checksums. Conflicts are still compared and reported.
    Off,
}

/// Without a SYN's MSS option: the largest payload of one Ethernet-sized IPv4 segment.
const DEFAULT_MSS: u32 = 1460;

/// What to do with one segment.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Its checksum holds.
    Accept,
    /// Taken although no checksum vouches for it (see the module notes).
    AcceptUnverified,
    /// Its checksum fails where checksums hold: the receiver dropped it.
    Refuse,
}

/// One direction's checksum state.
#[derive(Clone, Debug, Default)]
pub struct DirTrust {
    verified: bool,
    /// A data or SYN segment of this direction failed before it verified: offload.
    offloaded: bool,
    /// The MSS the peer announced: no segment of this direction is larger on the wire.
    mss: Option<u16>,
    /// The largest payload of a segment of this direction that passed its checksum.
    largest_verified: u32,
}

impl DirTrust {
    /// The peer's SYN announced `mss`.
    pub fn peer_mss(&mut self, mss: u16) {
        self.mss = Some(mss);
    }

    /// A SYN with another initial sequence number, before any byte of the direction: a new
    /// attempt on the same addresses and ports (reassembly anchors on it). What verified the
    /// earlier attempts (spoofed SYNs, say, ahead of a client whose own checksums are
    /// offloaded) says nothing about this one.
    pub fn new_attempt(&mut self) {
        self.verified = false;
        self.offloaded = false;
        self.largest_verified = 0;
    }

    /// Judges one segment of `payload_len` bytes whose checksums say `c`. `syn`: it carries
    /// SYN.
    pub fn judge(&mut self, c: Checksum, payload_len: usize, syn: bool) -> Verdict {
        let payload_len = u32::try_from(payload_len).unwrap_or(u32::MAX);
        match c {
            Checksum::Good => {
                // Only what the connection's own path sends verifies: a host whose NIC fills
                // in checksums still computes them itself for the resets and TIME-WAIT ACKs
                // it answers for a connection (Linux `ip_send_unicast_reply`).
                if (payload_len > 0 || syn) && !self.offloaded {
                    self.verified = true;
                }
                self.largest_verified = self.largest_verified.max(payload_len);
                Verdict::Accept
            }
            Checksum::Unchecked => Verdict::AcceptUnverified,
            Checksum::Bad if !self.verified => {
                if payload_len > 0 || syn {
                    self.offloaded = true;
                }
                Verdict::AcceptUnverified
            }
            Checksum::Bad => {
                let most = self.mss.map_or(self.largest_verified.max(DEFAULT_MSS), u32::from);
                if payload_len > most {
                    Verdict::AcceptUnverified
                } else {
                    Verdict::Refuse
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_is_told_from_a_forged_segment() {
        // Offloaded: nothing ever verifies, everything is taken.
        let mut t = DirTrust::default();
        assert_eq!(t.judge(Checksum::Bad, 0, true), Verdict::AcceptUnverified);
        assert_eq!(t.judge(Checksum::Bad, 1000, false), Verdict::AcceptUnverified);
        // A valid pure ACK (a software-made reply) does not verify.
        assert_eq!(t.judge(Checksum::Good, 0, false), Verdict::Accept);
        assert_eq!(t.judge(Checksum::Bad, 1000, false), Verdict::AcceptUnverified);
        // Offloaded, then one data segment checksummed in software (seen on a veth capture):
        // the direction stays offloaded, what follows is still taken.
        let mut t = DirTrust::default();
        assert_eq!(t.judge(Checksum::Bad, 0, true), Verdict::AcceptUnverified);
        assert_eq!(t.judge(Checksum::Bad, 1448, false), Verdict::AcceptUnverified);
        assert_eq!(t.judge(Checksum::Good, 1448, false), Verdict::Accept);
        assert_eq!(t.judge(Checksum::Bad, 1448, false), Verdict::AcceptUnverified);
        // A new attempt (another ISN) starts afresh: its valid SYN verifies.
        t.new_attempt();
        assert_eq!(t.judge(Checksum::Good, 0, true), Verdict::Accept);
        assert_eq!(t.judge(Checksum::Bad, 4, false), Verdict::Refuse);
        // Verified: a failing segment is refused, unless larger than the wire allows (GRO).
        let mut t = DirTrust::default();
        t.peer_mss(1448);
        assert_eq!(t.judge(Checksum::Good, 0, true), Verdict::Accept);
        assert_eq!(t.judge(Checksum::Bad, 4, false), Verdict::Refuse);
        assert_eq!(t.judge(Checksum::Bad, 1448, false), Verdict::Refuse);
        assert_eq!(t.judge(Checksum::Bad, 2896, false), Verdict::AcceptUnverified);
        assert_eq!(t.judge(Checksum::Unchecked, 4, false), Verdict::AcceptUnverified);
        // No MSS known (mid-stream): the largest verified segment, at least 1460 bytes.
        let mut t = DirTrust::default();
        assert_eq!(t.judge(Checksum::Good, 8948, false), Verdict::Accept);
        assert_eq!(t.judge(Checksum::Bad, 8948, false), Verdict::Refuse);
        assert_eq!(t.judge(Checksum::Bad, 8949, false), Verdict::AcceptUnverified);
    }
}
