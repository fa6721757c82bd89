//! IPv4 and IPv6 fragment reassembly.
//!
//! Datagrams are keyed by (source, destination, protocol / next header, identification) and the
//! overlay zone (the innermost VNI or GRE key), so two tenants reusing the same inner addresses
//! never mix. Received ranges are tracked exactly; where fragments overlap the bytes that arrived
//! first win (the policy of BSD-right-less stacks is irrelevant here: an interception system must
//! be deterministic and must not let a later fragment rewrite what was already seen) and the
//! overlap is counted.
//!
//! State is bounded: at most `frag_max_datagrams` incomplete datagrams and `frag_max_bytes` of
//! buffer, the oldest datagram evicted first; a datagram is dropped `frag_timeout_ns` after its
//! first fragment, checked lazily with the `now` of each call (sans-I/O: no clock is read).
//!
//! No-panic contract: offsets and lengths come from the wire; all arithmetic is checked and a
//! datagram can never extend beyond 65535 bytes of IP payload.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use smallvec::SmallVec;

use super::DecodeError;

/// Largest IP payload a fragmented datagram can carry.
pub const MAX_DATAGRAM: u32 = 65535;

/// Identifies one datagram under reassembly.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 protocol or the IPv6 fragment header's next header.
    pub proto: u8,
    /// IPv4 identification (16 bits) or IPv6 fragment identification (32 bits).
    pub id: u32,
    /// The overlay zone ([`Overlay::vni`](super::Overlay::vni)) the fragment arrived in.
    pub zone: Option<u32>,
}

/// Decoder counters. Gauges (`*_held`) describe the reassembly state now; the rest count events
/// since the decoder was created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Incomplete datagrams held.
    pub frag_datagrams_held: usize,
    /// Fragments held in those datagrams.
    pub frag_fragments_held: usize,
    /// Buffer bytes held for them (the span from offset 0 to the highest byte received).
    pub frag_bytes_held: usize,
    /// Datagrams completed.
    pub frag_reassembled: u64,
    /// Datagrams dropped because their timeout passed.
    pub frag_expired: u64,
    /// Datagrams evicted, or fragments refused, to keep within the memory and count bounds.
    pub frag_dropped_memory: u64,
    /// Fragments that overlapped bytes already held (exact duplicates included).
    pub frag_overlaps: u64,
    /// Fragments rejected as hostile or inconsistent (see [`DecodeError::Fragment`]).
    pub frag_rejected: u64,
}

/// What became of one fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum FragOutcome {
    /// Stored; the datagram is still incomplete.
    Held,
    /// This fragment completed the datagram: its payload, `total` bytes long.
    Complete(Vec<u8>),
    /// Not stored: the datagram alone would exceed the memory or count bound.
    Dropped,
}

struct Datagram {
    seq: u64,
    first_ns: i64,
    /// Bytes `[0, buf.len())` of the payload; holes are zero until filled.
    buf: Vec<u8>,
    /// Received ranges `[start, end)`, sorted and merged.
    have: SmallVec<[(u32, u32); 4]>,
    /// Payload length, known once the last fragment arrived.
    total: Option<u32>,
    fragments: usize,
}

impl Datagram {
    fn max_end(&self) -> u32 {
        self.have.last().map_or(0, |r| r.1)
    }
}

/// The reassembly table.
pub struct FragTable {
    map: HashMap<FragKey, Datagram>,
    /// Datagrams in arrival order, for eviction and expiry; entries whose `seq` no longer
    /// matches the map are stale and skipped.
    order: VecDeque<(u64, FragKey)>,
    next_seq: u64,
    max_bytes: usize,
    max_datagrams: usize,
    timeout_ns: i64,
    stats: DecodeStats,
}

fn reject(stats: &mut DecodeStats, why: &'static str) -> DecodeError {
    stats.frag_rejected += 1;
    DecodeError::Fragment(why)
}

impl FragTable {
    pub fn new(max_bytes: usize, max_datagrams: usize, timeout_ns: i64) -> FragTable {
        FragTable {
            map: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            max_bytes,
            max_datagrams,
            timeout_ns,
            stats: DecodeStats::default(),
        }
    }

    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    fn remove(&mut self, key: &FragKey) -> Option<Datagram> {
        let d = self.map.remove(key)?;
        self.stats.frag_bytes_held = self.stats.frag_bytes_held.saturating_sub(d.buf.len());
        self.stats.frag_fragments_held = self.stats.frag_fragments_held.saturating_sub(d.fragments);
        self.stats.frag_datagrams_held = self.map.len();
        Some(d)
    }

    /// Evicts the oldest datagram; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((seq, key)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|d| d.seq == seq) {
                self.remove(&key);
                return true;
            }
        }
        false
    }

    /// Drops every datagram whose first fragment is at least the timeout older than `now`.
    pub fn expire(&mut self, now: i64) {
        while let Some(&(seq, key)) = self.order.front() {
            match self.map.get(&key) {
                Some(d) if d.seq == seq => {
                    if now.saturating_sub(d.first_ns) < self.timeout_ns {
                        break;
                    }
                    self.remove(&key);
                    self.stats.frag_expired += 1;
                }
                _ => {}
            }
            self.order.pop_front();
        }
        // Completed datagrams leave stale entries behind a long-lived oldest one; keep the queue
        // proportional to the table.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order.retain(|(s, k)| map.get(k).is_some_and(|d| d.seq == *s));
        }
    }

    /// Adds the fragment `data` at byte `offset` of datagram `key`; `more` is the MF / M flag.
    pub fn insert(
        &mut self,
        key: FragKey,
        offset: u32,
        data: &[u8],
        more: bool,
        now: i64,
    ) -> Result<FragOutcome, DecodeError> {
        let len = u32::try_from(data.len()).map_err(|_| reject(&mut self.stats, "fragment longer than 4 GiB"))?;
        let end = match offset.checked_add(len) {
            Some(e) if e <= MAX_DATAGRAM => e,
            _ => return Err(reject(&mut self.stats, "fragment ends beyond 65535 bytes")),
        };
        if more && len == 0 {
            return Err(reject(&mut self.stats, "empty non-final fragment"));
        }
        if more && len % 8 != 0 {
            return Err(reject(&mut self.stats, "non-final fragment length not a multiple of 8"));
        }
        if let Some(d) = self.map.get(&key) {
            match (d.total, more) {
                (Some(t), false) if t != end => {
                    return Err(reject(&mut self.stats, "final fragment changes the total length"))
                }
                (None, false) if d.max_end() > end => {
                    return Err(reject(&mut self.stats, "final fragment ends before data already held"))
                }
                (Some(t), true) if end > t => {
                    return Err(reject(&mut self.stats, "fragment extends beyond the final fragment"))
                }
                _ => {}
            }
        }

        // Make room, oldest first. If the oldest is this very datagram it goes too, and this
        // fragment starts it afresh.
        loop {
            let cur = self.map.get(&key).map(|d| d.buf.len());
            let growth = (end as usize).saturating_sub(cur.unwrap_or(0));
            let over_count = cur.is_none() && self.map.len() >= self.max_datagrams;
            let over_bytes = self.stats.frag_bytes_held.saturating_add(growth) > self.max_bytes;
            if !over_count && !over_bytes {
                break;
            }
            self.stats.frag_dropped_memory += 1;
            if !self.evict_oldest() {
                return Ok(FragOutcome::Dropped);
            }
        }

        if !self.map.contains_key(&key) {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.order.push_back((seq, key));
            let d = Datagram { seq, first_ns: now, buf: Vec::new(), have: SmallVec::new(), total: None, fragments: 0 };
            self.map.insert(key, d);
        }
        let Some(d) = self.map.get_mut(&key) else {
            return Err(DecodeError::Fragment("reassembly table lost a datagram"));
        };

        let old_len = d.buf.len();
        if old_len < end as usize {
            d.buf.resize(end as usize, 0);
        }
        self.stats.frag_bytes_held += d.buf.len() - old_len;

        // First wins: copy only into the holes of [offset, end).
        let mut cursor = offset;
        let mut overlapped = false;
        for &(a, b) in d.have.iter() {
            if b <= cursor {
                continue;
            }
            if a >= end {
                break;
            }
            overlapped = true;
            if a > cursor {
                copy_range(&mut d.buf, data, offset, cursor, a);
            }
            cursor = cursor.max(b);
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            copy_range(&mut d.buf, data, offset, cursor, end);
        }
        if overlapped {
            self.stats.frag_overlaps += 1;
        }
        add_range(&mut d.have, offset, end);
        if !more {
            d.total = Some(end);
        }
        d.fragments += 1;
        self.stats.frag_fragments_held += 1;

        let complete = matches!(d.total, Some(t) if d.have.len() == 1 && d.have.first() == Some(&(0, t)));
        if complete {
            let Some(mut d) = self.remove(&key) else {
                return Err(DecodeError::Fragment("reassembly table lost a datagram"));
            };
            self.stats.frag_reassembled += 1;
            d.buf.truncate(d.total.unwrap_or(0) as usize);
            return Ok(FragOutcome::Complete(d.buf));
        }
        self.stats.frag_datagrams_held = self.map.len();
        Ok(FragOutcome::Held)
    }
}

/// Copies datagram bytes `[from, to)` out of a fragment that starts at `frag_off`.
fn copy_range(buf: &mut [u8], data: &[u8], frag_off: u32, from: u32, to: u32) {
    let (s, e) = ((from - frag_off) as usize, (to - frag_off) as usize);
    if let (Some(dst), Some(src)) = (buf.get_mut(from as usize..to as usize), data.get(s..e)) {
        dst.copy_from_slice(src);
    }
}

/// Inserts `[a, b)` into a sorted list of disjoint ranges, merging touching ones.
fn add_range(have: &mut SmallVec<[(u32, u32); 4]>, a: u32, b: u32) {
    if a == b {
        return;
    }
    let mut out: SmallVec<[(u32, u32); 4]> = SmallVec::with_capacity(have.len() + 1);
    let (mut na, mut nb) = (a, b);
    let mut placed = false;
    for &(x, y) in have.iter() {
        if y < na {
            out.push((x, y));
        } else if x > nb {
            if !placed {
                out.push((na, nb));
                placed = true;
            }
            out.push((x, y));
        } else {
            na = na.min(x);
            nb = nb.max(y);
        }
    }
    if !placed {
        out.push((na, nb));
    }
    *have = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(id: u32) -> FragKey {
        FragKey {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            proto: 17,
            id,
            zone: None,
        }
    }

    #[test]
    fn ranges_merge() {
        let mut h = SmallVec::new();
        add_range(&mut h, 16, 24);
        add_range(&mut h, 0, 8);
        assert_eq!(&h[..], &[(0, 8), (16, 24)]);
        add_range(&mut h, 8, 16);
        assert_eq!(&h[..], &[(0, 24)]);
    }

    #[test]
    fn first_wins_on_overlap() {
        let mut t = FragTable::new(1 << 20, 16, 1_000);
        assert_eq!(t.insert(key(1), 8, &[2; 8], true, 0), Ok(FragOutcome::Held));
        // Overlaps [8,16) with different bytes: the earlier 2s must stay.
        assert_eq!(t.insert(key(1), 0, &[1; 16], true, 0), Ok(FragOutcome::Held));
        let mut want = vec![1u8; 8];
        want.extend([2; 8]);
        want.extend([3; 4]);
        assert_eq!(t.insert(key(1), 16, &[3; 4], false, 0), Ok(FragOutcome::Complete(want)));
        assert_eq!(t.stats().frag_overlaps, 1);
        assert_eq!(t.stats().frag_bytes_held, 0);
    }

    #[test]
    fn hostile_offsets_are_errors() {
        let mut t = FragTable::new(1 << 20, 16, 1_000);
        assert!(t.insert(key(1), 65528, &[0; 16], true, 0).is_err());
        assert!(t.insert(key(1), u32::MAX - 3, &[0; 8], false, 0).is_err());
        assert_eq!(t.insert(key(1), 0, &[0; 8], true, 0), Ok(FragOutcome::Held));
        assert_eq!(t.insert(key(1), 8, &[0; 8], false, 0), Ok(FragOutcome::Complete(vec![0; 16])));
    }
}
