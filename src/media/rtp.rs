//! RTP (RFC 3550): a checked header view, a signalling-free probe, and per-SSRC receive
//! statistics.
//!
//! [`Packet`] follows smoltcp's wire types: [`Packet::new_checked`] validates every length once
//! (fixed header, CSRC list, header extension, padding) so the accessors index without checks
//! that could fail and never panic.
//!
//! Without signalling (no SDP, no SIP) a UDP flow is only *probably* RTP: [`probe`] rejects what
//! cannot be RTP, and [`SsrcTracker`] confirms a flow only after several packets of one SSRC whose
//! sequence numbers advance by small steps, which random payloads almost never do.
//!
//! [`SsrcTable`] keeps one [`Source`] per SSRC with the receiver algorithms of RFC 3550 Appendix
//! A: A.1 (sequence number validation and extension: probation, `MAX_DROPOUT`, `MAX_MISORDER`),
//! A.3 (expected and lost) and A.8 (interarrival jitter). The table is bounded: a flood of forged
//! SSRCs is refused and counted, it does not grow memory.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::timestamp::Timestamp;

/// Bytes of the fixed RTP header (V, P, X, CC, M, PT, sequence number, timestamp, SSRC).
pub const HEADER_LEN: usize = 12;

/// RFC 3550 A.1: a jump forward of fewer sequence numbers than this is taken as loss.
pub const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a step back of at most this many sequence numbers is a late packet, not a restart.
pub const MAX_MISORDER: u16 = 100;
/// RFC 3550 A.1: sequential packets needed before a new source is valid.
pub const MIN_SEQUENTIAL: u32 = 2;
const RTP_SEQ_MOD: u32 = 1 << 16;

/// Sequence numbers remembered below the highest one, to tell a duplicate from a late packet.
const SEEN_WINDOW: u64 = 1024;

/// Why bytes are not an RTP packet.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the fixed header, the CSRC list or the header extension announce.
    #[error("truncated RTP packet: {needed} bytes needed, {got} present")]
    Truncated { needed: usize, got: usize },
    /// The version field is not 2 (RFC 3550 only defines version 2).
    #[error("RTP version {0}, expected 2")]
    Version(u8),
    /// The padding bit is set but the last byte (the padding count, which counts itself) is 0
    /// or larger than what follows the header.
    #[error("RTP padding of {padding} bytes but only {available} bytes follow the header")]
    Padding { padding: usize, available: usize },
}

/// A checked view of an RTP packet.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    buf: &'a [u8],
    /// Offset of the payload: after the fixed header, the CSRC list and the extension.
    payload_start: usize,
    /// End of the payload: before the padding.
    payload_end: usize,
}

impl<'a> Packet<'a> {
    /// Validates the header, CSRC list, header extension and padding of `buf`.
    pub fn new_checked(buf: &'a [u8]) -> Result<Packet<'a>, Error> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated { needed: HEADER_LEN, got: buf.len() });
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(Error::Version(version));
        }
        let csrc_count = (buf[0] & 0x0f) as usize;
        let mut start = HEADER_LEN + 4 * csrc_count;
        if buf.len() < start {
            return Err(Error::Truncated { needed: start, got: buf.len() });
        }
        if buf[0] & 0x10 != 0 {
            // RFC 3550 5.3.1: 16 bits profile-defined, 16 bits length in 32-bit words (not
            // counting this 4-byte header).
            let ext_header_end = start + 4;
            if buf.len() < ext_header_end {
                return Err(Error::Truncated { needed: ext_header_end, got: buf.len() });
            }
            let words = u16::from_be_bytes([buf[start + 2], buf[start + 3]]) as usize;
            let end = ext_header_end + 4 * words;
            if buf.len() < end {
                return Err(Error::Truncated { needed: end, got: buf.len() });
            }
            start = end;
        }
        let mut end = buf.len();
        if buf[0] & 0x20 != 0 {
            // The last byte counts the padding, itself included: 0 is not a valid count.
            let padding = buf[buf.len() - 1] as usize;
            let available = buf.len() - start;
            if padding == 0 || padding > available {
                return Err(Error::Padding { padding, available });
            }
            end -= padding;
        }
        Ok(Packet { buf, payload_start: start, payload_end: end })
    }

    pub fn version(&self) -> u8 {
        self.buf[0] >> 6
    }

    pub fn padding(&self) -> bool {
        self.buf[0] & 0x20 != 0
    }

    /// Bytes of padding removed from the end (0 without the padding bit).
    pub fn padding_len(&self) -> usize {
        self.buf.len() - self.payload_end
    }

    pub fn extension(&self) -> bool {
        self.buf[0] & 0x10 != 0
    }

    /// The header extension's profile-defined field and its data, when present.
    pub fn extension_header(&self) -> Option<(u16, &'a [u8])> {
        if !self.extension() {
            return None;
        }
        let at = HEADER_LEN + 4 * self.csrc_count() as usize;
        let profile = u16::from_be_bytes([self.buf[at], self.buf[at + 1]]);
        Some((profile, &self.buf[at + 4..self.payload_start]))
    }

    pub fn csrc_count(&self) -> u8 {
        self.buf[0] & 0x0f
    }

    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }

    pub fn payload_type(&self) -> u8 {
        self.buf[1] & 0x7f
    }

    pub fn sequence_number(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }

    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
    }

    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]])
    }

    /// The contributing sources, in order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let list = &self.buf[HEADER_LEN..HEADER_LEN + 4 * self.csrc_count() as usize];
        list.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// The payload, without header, CSRCs, extension or padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.payload_start..self.payload_end]
    }
}

/// Whether `buf` looks like RTCP sharing the RTP port (RFC 5761 demultiplexing): version 2 and
/// the second byte one of the RTCP packet types SR, RR, SDES, BYE, APP (200..=204).
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 8 && buf[0] >> 6 == 2 && (200..=204).contains(&buf[1])
}

/// Whether `buf` could be an RTP packet, without signalling: at least a fixed header, version 2,
/// and a payload type outside 72..=76, which RTCP's 200..=204 become once the marker bit is masked
/// off (RFC 5761 4 reserves them for that reason). A cheap first filter; [`SsrcTracker`] confirms.
pub fn probe(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] >> 6 == 2 && !(72..=76).contains(&(buf[1] & 0x7f))
}

/// Confirms a flow as RTP after `required` packets in a row that carry the same SSRC and whose
/// sequence numbers advance by 1..=`max_step` (a little loss allowed). Stays confirmed once it is.
#[derive(Debug, Clone)]
pub struct SsrcTracker {
    required: u32,
    max_step: u16,
    candidate: Option<(u32, u16)>,
    run: u32,
    confirmed: Option<u32>,
}

impl SsrcTracker {
    /// Sequence numbers a confirming packet may advance by: small loss, not random numbers.
    pub const DEFAULT_MAX_STEP: u16 = 16;

    pub fn new(required: u32) -> SsrcTracker {
        SsrcTracker {
            required: required.max(1),
            max_step: Self::DEFAULT_MAX_STEP,
            candidate: None,
            run: 0,
            confirmed: None,
        }
    }

    /// Looks at one datagram of the flow; returns whether the flow is confirmed as RTP. RTCP
    /// multiplexed on the port is passed over without breaking the run.
    pub fn observe(&mut self, datagram: &[u8]) -> bool {
        if self.confirmed.is_some() {
            return true;
        }
        if is_rtcp(datagram) {
            return false;
        }
        let packet = match Packet::new_checked(datagram) {
            Ok(p) if probe(datagram) => p,
            _ => {
                self.candidate = None;
                self.run = 0;
                return false;
            }
        };
        let (ssrc, seq) = (packet.ssrc(), packet.sequence_number());
        match self.candidate {
            Some((s, last)) if s == ssrc && (1..=self.max_step).contains(&seq.wrapping_sub(last)) => self.run += 1,
            _ => self.run = 1,
        }
        self.candidate = Some((ssrc, seq));
        if self.run >= self.required {
            self.confirmed = Some(ssrc);
        }
        self.confirmed.is_some()
    }

    /// The SSRC whose packets confirmed the flow.
    pub fn confirmed_ssrc(&self) -> Option<u32> {
        self.confirmed
    }
}

/// What RFC 3550 A.1 made of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// The source is still in probation (not yet `MIN_SEQUENTIAL` packets in sequence); the
    /// packet is not counted, but its extended sequence number (no cycles yet) is given so that
    /// a depacketiser can still use it.
    Probation { extended_seq: u64 },
    /// Counted, in order (possibly after a gap).
    InOrder { extended_seq: u64 },
    /// Counted, but its sequence number is below the highest seen: it arrived late.
    Reordered { extended_seq: u64 },
    /// Counted (as A.1 does), but this sequence number was already received.
    Duplicate { extended_seq: u64 },
    /// A jump larger than `MAX_DROPOUT`: ignored until the next packet confirms it (then the
    /// source restarts).
    Jump,
}

impl Received {
    /// The extended sequence number, except for a packet ignored as a jump.
    pub fn extended_seq(self) -> Option<u64> {
        match self {
            Received::Probation { extended_seq }
            | Received::InOrder { extended_seq }
            | Received::Reordered { extended_seq }
            | Received::Duplicate { extended_seq } => Some(extended_seq),
            Received::Jump => None,
        }
    }
}

/// Receive statistics of one SSRC, as RFC 3550 Appendix A computes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub ssrc: u32,
    /// Packets received since the source became valid (A.1's `received`: probation packets but
    /// the last are not counted, duplicates are).
    pub packets: u64,
    /// A.3: highest extended sequence number minus the first plus one.
    pub expected: u64,
    /// A.3: expected minus received; negative when duplicates outnumber losses.
    pub lost: i64,
    /// Packets that arrived with a sequence number below the highest already seen.
    pub reordered: u64,
    /// Packets whose sequence number was already received (within the last 1024).
    pub duplicates: u64,
    /// A.8 interarrival jitter, converted from RTP timestamp units to milliseconds.
    pub jitter_ms: f64,
    /// The largest value the jitter estimate reached.
    pub max_jitter_ms: f64,
    /// Extended sequence number of the first counted packet (A.1's `base_seq`).
    pub first_seq: u64,
    /// Highest extended sequence number received.
    pub last_seq: u64,
    /// RTP timestamp of the first counted packet.
    pub first_ts: u32,
    /// RTP timestamp of the packet with the highest sequence number.
    pub last_ts: u32,
    /// Sequence jumps beyond `MAX_DROPOUT` that restarted the source (A.1 `init_seq` after two
    /// sequential packets).
    pub restarts: u64,
}

/// One SSRC's receiver state (RFC 3550 A.1 `source` plus the A.8 jitter and our counters).
#[derive(Debug, Clone)]
pub struct Source {
    ssrc: u32,
    max_seq: u16,
    cycles: u64,
    base_seq: u64,
    bad_seq: u32,
    probation: u32,
    received: u64,
    reordered: u64,
    duplicates: u64,
    restarts: u64,
    /// Previous packet's arrival (ns) and RTP timestamp, for A.8's transit difference.
    last_arrival: Option<(i64, u32)>,
    /// A.8 jitter in RTP timestamp units, kept as a float as in A.8's first formula.
    jitter: f64,
    max_jitter: f64,
    clock_rate: u32,
    first_ts: u32,
    last_ts: u32,
    /// Bit `s % SEEN_WINDOW` is set when extended sequence number `s` (within the window below
    /// the highest) was received.
    seen: [u64; (SEEN_WINDOW / 64) as usize],
}

impl Source {
    /// A new source whose first packet has sequence number `seq` (A.1: probation starts).
    pub fn new(ssrc: u32, seq: u16, clock_rate: u32) -> Source {
        let mut s = Source {
            ssrc,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: 0,
            probation: MIN_SEQUENTIAL,
            received: 0,
            reordered: 0,
            duplicates: 0,
            restarts: 0,
            last_arrival: None,
            jitter: 0.0,
            max_jitter: 0.0,
            clock_rate,
            first_ts: 0,
            last_ts: 0,
            seen: [0; (SEEN_WINDOW / 64) as usize],
        };
        s.init_seq(seq);
        s.max_seq = seq.wrapping_sub(1);
        s.probation = MIN_SEQUENTIAL;
        s
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = seq as u64;
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.seen = [0; (SEEN_WINDOW / 64) as usize];
    }

    fn extended_max(&self) -> u64 {
        self.cycles + self.max_seq as u64
    }

    fn mark_seen(&mut self, ext: u64) -> bool {
        let (word, bit) = (((ext % SEEN_WINDOW) / 64) as usize, ext % 64);
        let was = self.seen[word] & (1 << bit) != 0;
        self.seen[word] |= 1 << bit;
        was
    }

    /// Clears the window's bits for the sequence numbers between the old highest and `new_max`.
    fn advance_window(&mut self, old_max: u64, new_max: u64) {
        if new_max.saturating_sub(old_max) >= SEEN_WINDOW {
            self.seen = [0; (SEEN_WINDOW / 64) as usize];
            return;
        }
        for s in old_max + 1..=new_max {
            let (word, bit) = (((s % SEEN_WINDOW) / 64) as usize, s % 64);
            self.seen[word] &= !(1 << bit);
        }
    }

    /// A.1 `update_seq`, plus the A.8 jitter for the packet arriving at `arrival` with RTP
    /// timestamp `rtp_ts`.
    pub fn receive(&mut self, seq: u16, rtp_ts: u32, arrival: Timestamp) -> Received {
        let outcome = self.update_seq(seq, rtp_ts);
        if outcome != Received::Jump {
            self.update_jitter(rtp_ts, arrival.nanos());
        }
        outcome
    }

    fn update_seq(&mut self, seq: u16, rtp_ts: u32) -> Received {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    self.mark_seen(seq as u64);
                    self.first_ts = rtp_ts;
                    self.last_ts = rtp_ts;
                    return Received::InOrder { extended_seq: seq as u64 };
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return Received::Probation { extended_seq: seq as u64 };
        }
        if udelta < MAX_DROPOUT {
            let old = self.extended_max();
            if seq < self.max_seq {
                // Sequence number wrapped: one more 64K cycle.
                self.cycles += RTP_SEQ_MOD as u64;
            }
            self.max_seq = seq;
            let ext = self.extended_max();
            self.received += 1;
            if ext == old {
                // udelta 0: the highest one again.
                self.duplicates += 1;
                return Received::Duplicate { extended_seq: ext };
            }
            self.advance_window(old, ext);
            self.mark_seen(ext);
            self.last_ts = rtp_ts;
            return Received::InOrder { extended_seq: ext };
        }
        if udelta as u32 <= RTP_SEQ_MOD - MAX_MISORDER as u32 {
            // A very large jump: restart only if the next packet follows it.
            if seq as u32 == self.bad_seq {
                self.init_seq(seq);
                self.restarts += 1;
                // A restarted sender's timestamps have nothing to do with the old ones: a
                // transit difference across the restart would be a spike, not jitter.
                self.last_arrival = None;
                self.received += 1;
                self.mark_seen(seq as u64);
                self.first_ts = rtp_ts;
                self.last_ts = rtp_ts;
                return Received::InOrder { extended_seq: seq as u64 };
            }
            self.bad_seq = (seq as u32 + 1) & (RTP_SEQ_MOD - 1);
            return Received::Jump;
        }
        // Duplicate or reordered packet (at most MAX_MISORDER behind the highest).
        self.received += 1;
        let back = self.max_seq.wrapping_sub(seq) as u64;
        let ext = self.extended_max().saturating_sub(back);
        if back >= SEEN_WINDOW || ext < self.base_seq {
            self.reordered += 1;
            return Received::Reordered { extended_seq: ext };
        }
        if self.mark_seen(ext) {
            self.duplicates += 1;
            Received::Duplicate { extended_seq: ext }
        } else {
            self.reordered += 1;
            Received::Reordered { extended_seq: ext }
        }
    }

    /// A.8: `D(i-1,i) = (R_i - R_{i-1}) - (S_i - S_{i-1})`, `J += (|D| - J) / 16`, with the
    /// arrival difference converted to RTP units by the clock rate and the timestamp difference
    /// taken modulo 2^32 (timestamps wrap).
    fn update_jitter(&mut self, rtp_ts: u32, arrival_ns: i64) {
        if let Some((prev_ns, prev_ts)) = self.last_arrival {
            let arrival_units = (arrival_ns as f64 - prev_ns as f64) * self.clock_rate as f64 / 1e9;
            let ts_units = rtp_ts.wrapping_sub(prev_ts) as i32 as f64;
            let d = (arrival_units - ts_units).abs();
            self.jitter += (d - self.jitter) / 16.0;
            if self.jitter > self.max_jitter {
                self.max_jitter = self.jitter;
            }
        }
        self.last_arrival = Some((arrival_ns, rtp_ts));
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Whether the source passed probation.
    pub fn valid(&self) -> bool {
        self.probation == 0
    }

    /// The statistics so far (A.3 expected and lost; zero counts while in probation).
    pub fn stats(&self) -> Stats {
        let valid = self.valid();
        let expected = if valid { self.extended_max() + 1 - self.base_seq } else { 0 };
        let to_ms = |units: f64| if self.clock_rate == 0 { 0.0 } else { units * 1000.0 / self.clock_rate as f64 };
        Stats {
            ssrc: self.ssrc,
            packets: self.received,
            expected,
            lost: expected as i64 - self.received as i64,
            reordered: self.reordered,
            duplicates: self.duplicates,
            jitter_ms: to_ms(self.jitter),
            max_jitter_ms: to_ms(self.max_jitter),
            first_seq: if valid { self.base_seq } else { 0 },
            last_seq: if valid { self.extended_max() } else { 0 },
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            restarts: self.restarts,
        }
    }
}

/// The sources of one flow, at most `cap` of them.
#[derive(Debug, Clone)]
pub struct SsrcTable {
    cap: usize,
    sources: Vec<Source>,
    refused: u64,
}

impl SsrcTable {
    /// A table that keeps at most `cap` SSRCs; packets of further SSRCs are counted as refused.
    pub fn new(cap: usize) -> SsrcTable {
        SsrcTable { cap, sources: Vec::new(), refused: 0 }
    }

    /// Accounts one packet that arrived at `arrival`, with `clock_rate` the RTP clock of its
    /// payload type (from the SDP's rtpmap, or the static assignment; the one given with an
    /// SSRC's first packet is kept for it). `None` when the table is full and this SSRC is new.
    pub fn receive(&mut self, packet: &Packet<'_>, arrival: Timestamp, clock_rate: u32) -> Option<Received> {
        let ssrc = packet.ssrc();
        let source = match self.sources.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => &mut self.sources[i],
            None if self.sources.len() < self.cap => {
                self.sources.push(Source::new(ssrc, packet.sequence_number(), clock_rate));
                let last = self.sources.len() - 1;
                &mut self.sources[last]
            }
            None => {
                self.refused = self.refused.saturating_add(1);
                return None;
            }
        };
        Some(source.receive(packet.sequence_number(), packet.timestamp(), arrival))
    }

    pub fn get(&self, ssrc: u32) -> Option<&Source> {
        self.sources.iter().find(|s| s.ssrc == ssrc)
    }

    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.sources.iter()
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Packets refused because their SSRC was new and the table full.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80, 96 | if marker { 0x80 } else { 0 }];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn header_fields() {
        let b = rtp(0x1234, 0xdeadbeef, 0x01020304, true, b"hello");
        let p = Packet::new_checked(&b).unwrap();
        assert_eq!((p.version(), p.marker(), p.payload_type()), (2, true, 96));
        assert_eq!((p.sequence_number(), p.timestamp(), p.ssrc()), (0x1234, 0xdeadbeef, 0x01020304));
        assert_eq!(p.payload(), b"hello");
        assert!(p.extension_header().is_none());
    }

    #[test]
    fn csrc_extension_and_padding_are_stripped() {
        let mut b = rtp(1, 2, 3, false, b"");
        b[0] = 0x80 | 0x20 | 0x10 | 2; // padding, extension, 2 CSRCs
        b.extend_from_slice(&7u32.to_be_bytes());
        b.extend_from_slice(&8u32.to_be_bytes());
        b.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // one-word extension
        b.extend_from_slice(b"data");
        b.extend_from_slice(&[0, 0, 3]);
        let p = Packet::new_checked(&b).unwrap();
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![7, 8]);
        assert_eq!(p.extension_header(), Some((0xbede, &[9u8, 9, 9, 9][..])));
        assert_eq!(p.payload(), b"data");
        assert_eq!(p.padding_len(), 3);
    }

    #[test]
    fn bad_lengths_are_refused() {
        assert!(matches!(Packet::new_checked(&[0x80; 11]), Err(Error::Truncated { .. })));
        let mut b = rtp(1, 2, 3, false, b"ab");
        b[0] |= 0x20;
        *b.last_mut().unwrap() = 3; // 3 bytes of padding, only 2 follow the header
        assert!(matches!(Packet::new_checked(&b), Err(Error::Padding { padding: 3, available: 2 })));
        *b.last_mut().unwrap() = 0;
        assert!(matches!(Packet::new_checked(&b), Err(Error::Padding { padding: 0, .. })));
        let mut b = rtp(1, 2, 3, false, &[0xbe, 0xde, 0, 5]);
        b[0] |= 0x10;
        assert!(matches!(Packet::new_checked(&b), Err(Error::Truncated { needed: 36, got: 16 })));
        let mut b = rtp(1, 2, 3, false, b"");
        b[0] = 0x40;
        assert_eq!(Packet::new_checked(&b).unwrap_err(), Error::Version(1));
    }

    #[test]
    fn probe_and_rtcp() {
        assert!(probe(&rtp(1, 2, 3, true, b"")));
        let rr = [0x81, 201, 0, 7, 1, 2, 3, 4];
        assert!(is_rtcp(&rr));
        assert!(!probe(&[0x81, 201, 0, 7, 1, 2, 3, 4, 0, 0, 0, 0]));
        assert!(!probe(&[0x00; 12]));
    }

    #[test]
    fn tracker_confirms_a_run_of_one_ssrc() {
        let mut t = SsrcTracker::new(3);
        assert!(!t.observe(&rtp(10, 0, 5, false, b"")));
        assert!(!t.observe(&rtp(11, 0, 5, false, b"")));
        assert!(!t.observe(&rtp(500, 0, 5, false, b""))); // a big step restarts the run
        assert!(!t.observe(&rtp(502, 0, 5, false, b"")));
        assert!(!t.observe(&[0x81, 200, 0, 6, 0, 0, 0, 5])); // RTCP in between
        assert!(t.observe(&rtp(503, 0, 5, false, b"")));
        assert_eq!(t.confirmed_ssrc(), Some(5));
        let mut t = SsrcTracker::new(3);
        for i in 0..10u16 {
            assert!(!t.observe(&rtp(i, 0, i as u32, false, b"")), "a new SSRC each packet never confirms");
        }
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp(ms * 1_000_000)
    }

    #[test]
    fn a1_probation_loss_wrap_reorder_duplicate() {
        let mut s = Source::new(1, 65530, 8000);
        assert_eq!(s.receive(65530, 0, at(0)), Received::Probation { extended_seq: 65530 });
        assert_eq!(s.receive(65531, 160, at(20)), Received::InOrder { extended_seq: 65531 });
        for (i, seq) in [65532u16, 65533, 65535, 0, 2, 1, 1, 3].into_iter().enumerate() {
            s.receive(seq, 320 + 160 * i as u32, at(40 + 20 * i as i64));
        }
        let st = s.stats();
        // Counted from 65531 up to 65536+3: 9 expected; received 65531..=65533, 65535, 0, 2, 1, 1(dup), 3.
        assert_eq!((st.first_seq, st.last_seq, st.expected), (65531, 65539, 9));
        assert_eq!((st.packets, st.lost, st.reordered, st.duplicates), (9, 0, 1, 1));
    }

    #[test]
    fn a1_jump_needs_two_packets_to_restart() {
        let mut s = Source::new(1, 100, 8000);
        s.receive(100, 0, at(0));
        s.receive(101, 160, at(20));
        assert_eq!(s.receive(30000, 999_999, at(40)), Received::Jump);
        assert_eq!(s.receive(30001, 1_000_159, at(60)), Received::InOrder { extended_seq: 30001 });
        let st = s.stats();
        assert_eq!((st.packets, st.first_seq, st.restarts), (1, 30001, 1));
        assert_eq!(st.jitter_ms, 0.0, "the restart's timestamp jump is not jitter");
    }

    #[test]
    fn a8_jitter_of_regular_arrival_is_zero_and_grows_with_variation() {
        let mut s = Source::new(1, 0, 8000);
        for i in 0..50u16 {
            s.receive(i, 160 * i as u32, at(20 * i as i64));
        }
        assert_eq!(s.stats().jitter_ms, 0.0);
        // One packet 16 ms late: |D| = 128 units, J = 128/16 = 8 units = 1 ms.
        s.receive(50, 160 * 50, at(20 * 50 + 16));
        assert!((s.stats().jitter_ms - 1.0).abs() < 1e-9);
    }

    #[test]
    fn table_is_bounded() {
        let mut t = SsrcTable::new(4);
        for ssrc in 0..1000u32 {
            let b = rtp(1, 0, ssrc, false, b"");
            t.receive(&Packet::new_checked(&b).unwrap(), at(0), 90000);
        }
        assert_eq!((t.len(), t.refused()), (4, 996));
    }
}
