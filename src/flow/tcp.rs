//! Passive reassembly of one direction of a TCP connection.
//!
//! Sequence numbers are unwrapped to 64-bit stream offsets relative to the initial sequence
//! number (offset 0 = the first byte after the SYN, or the first byte seen when the flow was caught
//! mid-stream). In-order bytes are handed on at once, borrowed from the segment; only bytes that
//! arrive ahead of a hole are copied and held (offset-keyed, non-overlapping chunks, as in
//! quinn-proto's assembler).
//!
//! Policies, Suricata-like:
//! - Overlaps: the bytes received first win, as every receiver keeps the bytes it queued first.
//!   A later segment whose bytes differ from held bytes is one [`Conflict`] per held chunk it
//!   disagrees with.
//! - Retransmissions: bytes handed on are kept until the peer acknowledges them ([`ack`]
//!   (Assembler::ack)), so that a retransmission is compared with what was handed on; a
//!   difference is a [`Conflict`] too. Past the history's bounds a retransmission cannot be
//!   compared and is counted ([`ReassemblyStats::uncompared_bytes`]).
//! - A segment the flow layer refused (its checksum failed: the receiver dropped it) never enters
//!   the stream; [`refused`](Assembler::refused) still compares its bytes with the accepted ones
//!   and reports a difference, so the LEA learns where the wire disagreed with itself.
//! - Memory: held bytes are bounded per direction and over all flows ([`Budget`]). When a bound
//!   would be exceeded, the lowest hole is declared a gap and held data is handed on past it.
//!   Every such flush is counted.
//! - A segment starting more than [`MAX_AHEAD`] bytes past the next expected offset is outside any
//!   possible TCP window; it is dropped and counted instead of opening a gigantic hole.
//! - On close, remaining holes become gaps; when the FIN's offset is known, a missing tail before
//!   it is a gap too.
//!
//! No-panic contract: sequence numbers and payloads are untrusted; all offset arithmetic is
//! checked or done in a wider type, and slices are cut only after range checks.

use std::collections::BTreeMap;

use smallvec::SmallVec;

pub use crate::record::ConflictKind;

/// The largest TCP window (65535 << 14): no sender may have bytes this far past the receiver's
/// next expected byte in flight.
pub const MAX_AHEAD: u64 = 65_535 << 14;

/// Most gaps remembered per direction for the session's IRI; gaps past this are still counted in
/// [`ReassemblyStats`] but not listed.
pub const MAX_GAPS_LISTED: usize = 1024;

/// Most conflicts reported per direction as [`Event::Conflict`]; the rest are counted.
pub const MAX_CONFLICTS_LISTED: u64 = 64;

/// What reassembly hands on, data and gaps in offset order.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Data {
        offset: u64,
        bytes: &'a [u8],
    },
    /// `len` bytes at `offset` were never seen and never will be.
    Gap {
        offset: u64,
        len: u64,
    },
    /// Two versions of the same bytes differ (reported before the data it concerns is handed on,
    /// when that is still to come).
    Conflict(Conflict),
}

/// Two versions of the bytes at `offset..offset + len` of one direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub offset: u64,
    pub len: u64,
    pub kind: ConflictKind,
    /// SHA-256 of the version handed on (or held to be), `None` when no accepted bytes were
    /// known for that range yet (a refused segment ahead of the stream).
    pub kept: Option<[u8; 32]>,
    /// SHA-256 of the version that went nowhere.
    pub other: [u8; 32],
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Counters over every direction that shares one [`Budget`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReassemblyStats {
    /// Bytes held ahead of holes now.
    pub buffered: usize,
    /// Highest `buffered` seen.
    pub buffered_peak: usize,
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Overlapping segments whose bytes differ from the bytes first received.
    pub overlap_conflicts: u64,
    /// Bytes received again (already handed on or held).
    pub duplicate_bytes: u64,
    /// Times a memory bound forced a gap.
    pub bound_flushes: u64,
    /// Segments dropped for lying further than [`MAX_AHEAD`] past the expected offset.
    pub out_of_window: u64,
    /// Bytes kept to compare retransmissions with (handed on, not yet acknowledged), now.
    pub history: usize,
    pub history_peak: usize,
    /// Retransmitted bytes that could not be compared: their history was already dropped (a
    /// bound, a gap) or never kept.
    pub uncompared_bytes: u64,
}

/// The memory shared by all directions of one flow table.
#[derive(Clone, Debug)]
pub struct Budget {
    /// Most bytes held over all directions; as much again for the retransmission history.
    pub limit: usize,
    pub stats: ReassemblyStats,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget { limit, stats: ReassemblyStats::default() }
    }

    fn take_history(&mut self, n: usize) {
        self.stats.history = self.stats.history.saturating_add(n);
        self.stats.history_peak = self.stats.history_peak.max(self.stats.history);
    }

    fn take(&mut self, n: usize) {
        self.stats.buffered = self.stats.buffered.saturating_add(n);
        self.stats.buffered_peak = self.stats.buffered_peak.max(self.stats.buffered);
    }

    fn give(&mut self, n: usize) {
        self.stats.buffered = self.stats.buffered.saturating_sub(n);
    }
}

/// One direction's reassembly state.
#[derive(Debug)]
pub struct Assembler {
    /// The sequence number of stream offset 0, once known.
    base: Option<u32>,
    /// Everything below this offset has been handed on (as data or gap).
    next: u64,
    /// Bytes held ahead of a hole; all keys are `> next`, ranges never overlap.
    chunks: BTreeMap<u64, Box<[u8]>>,
    buffered: usize,
    limit: usize,
    /// Offset just past the last byte, from the first FIN seen.
    fin: Option<u64>,
    closed: bool,
    gaps: Vec<(u64, u64)>,
    /// Bytes handed on and not yet acknowledged: `hist[hist_head..]` are the bytes at offsets
    /// `hist_start..next` (contiguous; a gap starts it afresh).
    hist: Vec<u8>,
    hist_head: usize,
    hist_start: u64,
    /// Conflicts found in this direction (the first [`MAX_CONFLICTS_LISTED`] are reported).
    conflicts: u64,
}

impl Assembler {
    /// A direction that holds at most `limit` bytes ahead of holes, and as many behind them.
    pub fn new(limit: usize) -> Assembler {
        Assembler {
            base: None,
            next: 0,
            chunks: BTreeMap::new(),
            buffered: 0,
            limit,
            fin: None,
            closed: false,
            gaps: Vec::new(),
            hist: Vec::new(),
            hist_head: 0,
            hist_start: 0,
            conflicts: 0,
        }
    }

    /// Conflicts found in this direction, reported or not.
    pub fn conflicts(&self) -> u64 {
        self.conflicts
    }

    /// Bytes kept for comparison now.
    pub fn history_len(&self) -> usize {
        self.hist.len() - self.hist_head
    }

    /// The kept bytes of `[from, to)`, if all of them are kept.
    fn history(&self, from: u64, to: u64) -> Option<&[u8]> {
        if from < self.hist_start || to > self.next || from > to {
            return None;
        }
        let a = self.hist_head + usize::try_from(from - self.hist_start).ok()?;
        let b = self.hist_head + usize::try_from(to - self.hist_start).ok()?;
        self.hist.get(a..b)
    }

    /// Drops the kept bytes below offset `to`.
    fn trim_history(&mut self, to: u64, budget: &mut Budget) {
        let to = to.min(self.next);
        if to <= self.hist_start {
            return;
        }
        let n = usize::try_from(to - self.hist_start).unwrap_or(usize::MAX).min(self.history_len());
        self.hist_head += n;
        self.hist_start = to;
        budget.stats.history = budget.stats.history.saturating_sub(n);
        // Compact once the dead prefix dominates: amortised O(1) per byte.
        if self.hist_head > self.hist.len() / 2 {
            self.hist.drain(..self.hist_head);
            self.hist_head = 0;
            if self.hist.capacity() > 4 * self.hist.len().max(4096) {
                self.hist.shrink_to(self.hist.len().max(4096));
            }
        }
    }

    /// The peer acknowledged everything before sequence number `ack`: those bytes are final for
    /// the receiver, and need not be kept for comparison.
    pub fn ack(&mut self, ack: u32, budget: &mut Budget) {
        if let Some(off) = self.offset_of(ack) {
            if off > self.hist_start as i128 {
                self.trim_history(off.min(self.next as i128) as u64, budget);
            }
        }
    }

    /// Hands `bytes` at `offset == next` on, keeping them for comparison within the bounds.
    fn pass_on<F: FnMut(Event<'_>)>(&mut self, offset: u64, bytes: &[u8], budget: &mut Budget, emit: &mut F) {
        if self.hist_start + self.history_len() as u64 == offset {
            let room = |a: &Assembler, b: &Budget| {
                a.limit.saturating_sub(a.history_len()).min(b.limit.saturating_sub(b.stats.history))
            };
            if room(self, budget) < bytes.len() {
                // Oldest first: drop what is needed (all of it if this direction holds too
                // little to make room; then the history restarts after these bytes).
                let need = bytes.len() - room(self, budget);
                let to = self.hist_start + need.min(self.history_len()) as u64;
                self.trim_history(to, budget);
            }
            if room(self, budget) >= bytes.len() {
                self.hist.extend_from_slice(bytes);
                budget.take_history(bytes.len());
            } else {
                self.restart_history(offset + bytes.len() as u64, budget);
            }
        }
        emit(Event::Data { offset, bytes });
        self.next = offset + bytes.len() as u64;
    }

    /// Forgets the kept bytes; the history starts again at `at`.
    fn restart_history(&mut self, at: u64, budget: &mut Budget) {
        budget.stats.history = budget.stats.history.saturating_sub(self.history_len());
        self.hist.clear();
        self.hist_head = 0;
        self.hist_start = at;
        if self.hist.capacity() > 64 << 10 {
            self.hist.shrink_to(4096);
        }
    }

    fn conflict<F: FnMut(Event<'_>)>(
        &mut self,
        offset: u64,
        kind: ConflictKind,
        kept: Option<&[u8]>,
        other: &[u8],
        budget: &mut Budget,
        emit: &mut F,
    ) {
        budget.stats.overlap_conflicts += 1;
        self.conflicts += 1;
        if self.conflicts <= MAX_CONFLICTS_LISTED {
            emit(Event::Conflict(Conflict {
                offset,
                len: other.len() as u64,
                kind,
                kept: kept.map(sha256),
                other: sha256(other),
            }));
        }
    }

    /// Whether a SYN with sequence number `seq` would start a new attempt: another ISN, before
    /// any byte was handed on or held (see [`syn`](Self::syn)).
    pub fn is_new_attempt(&self, seq: u32) -> bool {
        let fresh = self.next == 0 && self.buffered() == 0;
        fresh && self.base.is_some_and(|b| b != seq.wrapping_add(1))
    }

    /// A SYN with sequence number `seq` was seen: the stream starts at `seq + 1`. Ignored once
    /// the start is known (a retransmitted SYN, or a SYN behind data of a mid-stream pickup).
    pub fn syn(&mut self, seq: u32) {
        // A SYN with another ISN before any byte was handed on is a new attempt (a client
        // retrying, or an injected SYN): anchor on the latest, which is the one that carries
        // the data (suricata-verify bug-7657).
        if self.base.is_none() || (self.next == 0 && self.buffered() == 0) {
            self.base = Some(seq.wrapping_add(1));
        }
    }

    /// The stream offset of sequence number `seq`, unwrapped to the value nearest the next
    /// expected offset. `None` before the start is known. Negative for bytes before the start.
    pub fn offset_of(&self, seq: u32) -> Option<i128> {
        let base = self.base?;
        let low = seq.wrapping_sub(base);
        let diff = low.wrapping_sub(self.next as u32) as i32;
        Some(self.next as i128 + diff as i128)
    }

    /// Next offset expected: everything below it has been handed on.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    pub fn fin_offset(&self) -> Option<u64> {
        self.fin
    }

    /// The FIN was seen and every byte before it handed on.
    pub fn is_complete(&self) -> bool {
        self.fin.is_some_and(|f| self.next >= f)
    }

    /// Whether `ack` (from the peer) acknowledges this direction's FIN.
    pub fn fin_acked(&self, ack: u32) -> bool {
        match (self.fin, self.offset_of(ack)) {
            (Some(f), Some(a)) => a > f as i128,
            _ => false,
        }
    }

    /// Bytes held now.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Gaps so far, `(offset, len)`, adjacent ones merged; at most [`MAX_GAPS_LISTED`].
    pub fn gaps(&self) -> &[(u64, u64)] {
        &self.gaps
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// One segment: `payload` starts at sequence number `seq`; `fin` if it carried FIN. A SYN's
    /// payload starts at the SYN's `seq + 1` (call [`syn`](Self::syn) first).
    pub fn segment<F: FnMut(Event<'_>)>(
        &mut self,
        seq: u32,
        payload: &[u8],
        fin: bool,
        budget: &mut Budget,
        emit: &mut F,
    ) {
        if self.closed {
            return;
        }
        if self.base.is_none() {
            self.base = Some(seq);
        }
        let Some(start) = self.offset_of(seq) else { return };
        let end = start + payload.len() as i128;
        if start > self.next as i128 + MAX_AHEAD as i128 {
            budget.stats.out_of_window += 1;
            return;
        }
        if fin && self.fin.is_none() && end >= self.next as i128 {
            // `end <= next + MAX_AHEAD + 2^32`: fits u64.
            self.fin = Some(end as u64);
        }
        let stop = self.fin.map_or(end, |f| end.min(f as i128));
        let lo = start.max(self.next as i128);
        if lo > start {
            let dup = (lo.min(end) - start) as u64;
            budget.stats.duplicate_bytes += dup;
            self.compare_passed(start, payload, ConflictKind::Retransmission, budget, emit);
        }
        if stop <= lo {
            return;
        }
        // Now 0 <= next <= lo < stop <= end, so the cuts are inside `payload`.
        let (lo, stop) = (lo as u64, stop as u64);
        let Some(bytes) = payload.get((lo as i128 - start) as usize..(stop as i128 - start) as usize) else {
            return;
        };
        if lo == self.next && self.chunks.is_empty() {
            self.pass_on(lo, bytes, budget, emit);
            return;
        }
        let pieces = self.uncovered(lo, bytes, ConflictKind::Retransmission, budget, emit);
        for (s, e) in pieces {
            if e <= self.next {
                continue;
            }
            let s = s.max(self.next);
            let Some(piece) = bytes.get((s - lo) as usize..(e - lo) as usize) else { continue };
            self.place(s, piece, budget, emit);
        }
    }

    /// Compares the part of `payload` (at stream offset `start`) below `next` with the bytes
    /// handed on: a difference is a conflict, bytes no longer kept are counted as uncompared.
    fn compare_passed<F: FnMut(Event<'_>)>(
        &mut self,
        start: i128,
        payload: &[u8],
        kind: ConflictKind,
        budget: &mut Budget,
        emit: &mut F,
    ) {
        let end = (start + payload.len() as i128).min(self.next as i128);
        let from = start.max(0);
        if end <= from {
            return;
        }
        let (from, end) = (from as u64, end as u64);
        let kept_from = from.max(self.hist_start);
        if kept_from > from {
            budget.stats.uncompared_bytes += kept_from.min(end) - from;
        }
        if kept_from >= end {
            return;
        }
        let new = payload.get((kept_from as i128 - start) as usize..(end as i128 - start) as usize);
        let (Some(new), Some(old)) = (new, self.history(kept_from, end)) else { return };
        if new != old {
            let old = old.to_vec();
            self.conflict(kept_from, kind, Some(&old), new, budget, emit);
        }
    }

    /// A segment the flow layer refused (its checksum failed): it never enters the stream, but
    /// its bytes are compared with the accepted ones, and a difference, or bytes ahead of
    /// anything accepted, is reported as a [`ConflictKind::BadChecksum`] conflict.
    pub fn refused<F: FnMut(Event<'_>)>(
        &mut self,
        seq: u32,
        payload: &[u8],
        syn: bool,
        budget: &mut Budget,
        emit: &mut F,
    ) {
        if self.closed || payload.is_empty() {
            return;
        }
        let seq = if syn { seq.wrapping_add(1) } else { seq };
        let Some(start) = self.offset_of(seq) else { return };
        let end = start + payload.len() as i128;
        if start > self.next as i128 + MAX_AHEAD as i128 {
            return;
        }
        let before = self.conflicts;
        self.compare_passed(start, payload, ConflictKind::BadChecksum, budget, emit);
        let lo = start.max(self.next as i128);
        if lo >= end {
            return;
        }
        let lo = lo as u64;
        let Some(bytes) = payload.get((lo as i128 - start) as usize..) else { return };
        let pieces = self.uncovered(lo, bytes, ConflictKind::BadChecksum, budget, emit);
        // Bytes ahead of anything accepted: nothing to compare with yet, reported all the same
        // (unless a held version already disagreed with them).
        if self.conflicts == before {
            if let Some(&(s, _)) = pieces.first() {
                let unknown = bytes.get((s - lo) as usize..).unwrap_or_default();
                self.conflict(s, ConflictKind::BadChecksum, None, unknown, budget, emit);
            }
        }
    }

    /// The parts of `[lo, lo + bytes.len())` not already held, comparing overlaps with the held
    /// bytes (first received wins); a difference is a conflict of `kind`.
    fn uncovered<F: FnMut(Event<'_>)>(
        &mut self,
        lo: u64,
        bytes: &[u8],
        kind: ConflictKind,
        budget: &mut Budget,
        emit: &mut F,
    ) -> SmallVec<[(u64, u64); 4]> {
        let hi = lo + bytes.len() as u64;
        let mut pieces = SmallVec::new();
        let mut differ: SmallVec<[(u64, u64, u64); 2]> = SmallVec::new();
        let mut cur = lo;
        let before = self.chunks.range(..lo).next_back().filter(|(s, d)| **s + d.len() as u64 > lo);
        for (&cs, held) in before.into_iter().chain(self.chunks.range(lo..hi)) {
            let ce = cs + held.len() as u64;
            if cs > cur {
                pieces.push((cur, cs));
            }
            let (os, oe) = (cs.max(lo), ce.min(hi));
            if os < oe {
                budget.stats.duplicate_bytes += oe - os;
                let new = bytes.get((os - lo) as usize..(oe - lo) as usize);
                let old = held.get((os - cs) as usize..(oe - cs) as usize);
                if new != old {
                    differ.push((cs, os, oe));
                }
            }
            cur = cur.max(ce);
        }
        if cur < hi {
            pieces.push((cur, hi));
        }
        for (cs, os, oe) in differ {
            let old =
                self.chunks.get(&cs).and_then(|h| h.get((os - cs) as usize..(oe - cs) as usize)).map(<[u8]>::to_vec);
            let new = bytes.get((os - lo) as usize..(oe - lo) as usize).unwrap_or_default();
            self.conflict(os, kind, old.as_deref(), new, budget, emit);
        }
        pieces
    }

    /// Hands on or holds `piece` at offset `s >= next`, which overlaps no held chunk.
    fn place<F: FnMut(Event<'_>)>(&mut self, s: u64, piece: &[u8], budget: &mut Budget, emit: &mut F) {
        let len = piece.len();
        loop {
            if s == self.next {
                self.pass_on(s, piece, budget, emit);
                self.drain(budget, emit);
                return;
            }
            let fits = self.buffered.saturating_add(len) <= self.limit
                && budget.stats.buffered.saturating_add(len) <= budget.limit;
            if fits {
                self.chunks.insert(s, piece.into());
                self.buffered += len;
                budget.take(len);
                return;
            }
            // A bound is hit: give up on the lowest hole.
            budget.stats.bound_flushes += 1;
            match self.chunks.first_key_value() {
                Some((&c, _)) if c < s => {
                    self.gap_to(c, budget, emit);
                    self.drain(budget, emit);
                }
                _ => self.gap_to(s, budget, emit),
            }
        }
    }

    /// Declares `[next, to)` a gap.
    fn gap_to<F: FnMut(Event<'_>)>(&mut self, to: u64, budget: &mut Budget, emit: &mut F) {
        if to <= self.next {
            return;
        }
        let (offset, len) = (self.next, to - self.next);
        budget.stats.gaps += 1;
        budget.stats.gap_bytes += len;
        let listed = self.gaps.len();
        match self.gaps.last_mut() {
            Some((o, l)) if *o + *l == offset => *l += len,
            _ if listed >= MAX_GAPS_LISTED => {}
            _ => self.gaps.push((offset, len)),
        }
        emit(Event::Gap { offset, len });
        self.next = to;
        self.restart_history(to, budget);
    }

    /// Hands on held chunks that start at `next`.
    fn drain<F: FnMut(Event<'_>)>(&mut self, budget: &mut Budget, emit: &mut F) {
        while let Some(entry) = self.chunks.first_entry() {
            if *entry.key() != self.next {
                break;
            }
            let (offset, bytes) = entry.remove_entry();
            self.buffered = self.buffered.saturating_sub(bytes.len());
            budget.give(bytes.len());
            self.pass_on(offset, &bytes, budget, emit);
        }
    }

    /// The direction ended (FIN handled, RST, timeout, end of input): holes become gaps, held
    /// data is handed on, and a missing tail before a known FIN is a gap. Idempotent.
    pub fn close<F: FnMut(Event<'_>)>(&mut self, budget: &mut Budget, emit: &mut F) {
        if self.closed {
            return;
        }
        while let Some((&c, _)) = self.chunks.first_key_value() {
            self.gap_to(c, budget, emit);
            self.drain(budget, emit);
        }
        if let Some(f) = self.fin {
            self.gap_to(f, budget, emit);
        }
        let end = self.next;
        self.restart_history(end, budget);
        self.closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(asm: &mut Assembler, budget: &mut Budget, out: &mut Vec<(u64, Result<Vec<u8>, u64>)>, seq: u32, p: &[u8]) {
        asm.segment(seq, p, false, budget, &mut |e| match e {
            Event::Data { offset, bytes } => out.push((offset, Ok(bytes.to_vec()))),
            Event::Gap { offset, len } => out.push((offset, Err(len))),
            Event::Conflict(_) => {}
        });
    }

    #[test]
    fn in_order_out_of_order_and_conflict() {
        let mut b = Budget::new(1 << 20);
        let mut a = Assembler::new(1 << 20);
        let mut out = Vec::new();
        a.syn(u32::MAX - 2); // stream starts at seq u32::MAX - 1: wraps after 2 bytes
        run(&mut a, &mut b, &mut out, u32::MAX - 1, b"ab");
        run(&mut a, &mut b, &mut out, 3, b"fgh"); // offset 5
        run(&mut a, &mut b, &mut out, 4, b"XYZ"); // offset 6..9: "XY" conflicts with "gh", "Z" is new
        assert_eq!(b.stats.overlap_conflicts, 1);
        assert_eq!(a.buffered(), 4);
        run(&mut a, &mut b, &mut out, 0, b"cde"); // offset 2
        assert_eq!(
            out,
            vec![(0, Ok(b"ab".to_vec())), (2, Ok(b"cde".to_vec())), (5, Ok(b"fgh".to_vec())), (8, Ok(b"Z".to_vec()))]
        );
        assert_eq!(b.stats.buffered, 0);
    }

    #[test]
    fn bound_flush_declares_lowest_hole() {
        let mut b = Budget::new(1 << 20);
        let mut a = Assembler::new(4);
        let mut out = Vec::new();
        a.syn(99);
        run(&mut a, &mut b, &mut out, 110, b"abc"); // offset 10, held
        run(&mut a, &mut b, &mut out, 120, b"de"); // would hold 5 > 4: gap [0,10), abc, then hold de
        assert_eq!(out, vec![(0, Err(10)), (10, Ok(b"abc".to_vec()))]);
        assert_eq!(b.stats.bound_flushes, 1);
        assert_eq!(a.buffered(), 2);
        let mut out2 = Vec::new();
        a.close(&mut b, &mut |e| match e {
            Event::Data { offset, bytes } => out2.push((offset, Ok(bytes.to_vec()))),
            Event::Gap { offset, len } => out2.push((offset, Err(len))),
            Event::Conflict(_) => {}
        });
        assert_eq!(out2, vec![(13, Err(7)), (20, Ok(b"de".to_vec()))]);
        assert_eq!(a.gaps(), &[(0, 10), (13, 7)]);
        assert_eq!(b.stats.buffered, 0);
    }

    #[test]
    fn far_ahead_segment_is_dropped() {
        let mut b = Budget::new(1 << 20);
        let mut a = Assembler::new(1 << 20);
        let mut out = Vec::new();
        a.syn(0);
        run(&mut a, &mut b, &mut out, 1 + (MAX_AHEAD as u32) + 1, b"x");
        assert_eq!(b.stats.out_of_window, 1);
        assert_eq!(a.buffered(), 0);
    }
}
