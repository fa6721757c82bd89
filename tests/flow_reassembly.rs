//! Property tests of one-direction TCP reassembly against a model: a byte stream cut into
//! segments, reordered, duplicated, retransmitted with overlaps, with an ISN anywhere (often just
//! below the 32-bit wrap), and with some segments lost.

use proptest::prelude::*;
use tapir::flow::tcp::{Assembler, Budget, Event};

/// A small deterministic generator so one proptest seed drives cuts, order and losses.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// A segment to send: stream offset, length, FIN.
#[derive(Clone, Copy, Debug)]
struct Seg {
    off: usize,
    len: usize,
    fin: bool,
}

#[derive(Debug, PartialEq)]
enum Ev {
    Data(u64, Vec<u8>),
    Gap(u64, u64),
}

struct Plan {
    segs: Vec<Seg>,
    /// Which stream bytes some sent segment carries.
    received: Vec<bool>,
}

/// Cuts `n` bytes into segments, adds duplicates and overlapping retransmissions, drops the
/// original segments listed by `lose` (retransmissions of lost ranges are not sent), shuffles,
/// and always sends a FIN segment.
fn plan(n: usize, rng: &mut Rng, loss_pct: u64) -> Plan {
    let mut segs = Vec::new();
    let mut off = 0;
    while off < n {
        let len = 1 + rng.below(300.min(n as u64 - off as u64)) as usize;
        segs.push(Seg { off, len, fin: false });
        off += len;
    }
    let mut received = vec![false; n];
    let mut sent: Vec<Seg> = Vec::new();
    for s in &segs {
        if rng.below(100) < loss_pct {
            continue;
        }
        sent.push(*s);
        if rng.below(10) == 0 {
            sent.push(*s); // exact duplicate
        }
        received[s.off..s.off + s.len].iter_mut().for_each(|r| *r = true);
    }
    // Overlapping retransmissions (same bytes) of received ranges only, so they never fill a loss.
    for _ in 0..rng.below(8) {
        if n == 0 {
            break;
        }
        let a = rng.below(n as u64) as usize;
        let mut b = a;
        while b < n && b - a < 500 && received[b] {
            b += 1;
        }
        if b > a {
            let b = a + 1 + rng.below((b - a) as u64) as usize;
            sent.push(Seg { off: a, len: b - a, fin: false });
        }
    }
    sent.push(Seg { off: n, len: 0, fin: true });
    // Shuffle (Fisher-Yates), then move a random few back to their original place to keep a
    // realistic mostly-in-order mix.
    for i in (1..sent.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        if rng.below(3) == 0 {
            sent.swap(i, j);
        }
    }
    Plan { segs: sent, received }
}

fn run(stream: &[u8], isn: u32, segs: &[Seg], per_dir: usize, global: usize) -> (Vec<Ev>, Budget) {
    let mut budget = Budget::new(global);
    let mut asm = Assembler::new(per_dir);
    let mut evs = Vec::new();
    let mut emit = |e: Event<'_>| match e {
        Event::Data { offset, bytes } => evs.push(Ev::Data(offset, bytes.to_vec())),
        Event::Gap { offset, len } => evs.push(Ev::Gap(offset, len)),
        // Every retransmission here carries the same bytes.
        Event::Conflict(c) => panic!("a conflict where the wire always agreed: {c:?}"),
    };
    asm.syn(isn);
    for s in segs {
        let seq = isn.wrapping_add(1).wrapping_add(s.off as u32);
        asm.segment(seq, &stream[s.off..s.off + s.len], s.fin, &mut budget, &mut emit);
        assert!(asm.buffered() <= per_dir, "per-direction bound exceeded");
        assert!(budget.stats.buffered <= global, "global bound exceeded");
    }
    asm.close(&mut budget, &mut emit);
    assert_eq!(budget.stats.buffered, 0, "everything held was handed on at close");
    (evs, budget)
}

/// Checks that the events tile [0, n) in order, that data equals the stream, and returns the
/// gap ranges.
fn check_tiling(stream: &[u8], evs: &[Ev]) -> Vec<(usize, usize)> {
    let mut pos = 0usize;
    let mut gaps = Vec::new();
    for e in evs {
        match e {
            Ev::Data(o, b) => {
                assert_eq!(*o as usize, pos, "data is contiguous");
                assert!(!b.is_empty());
                assert_eq!(&stream[pos..pos + b.len()], &b[..], "data bytes at {pos}");
                pos += b.len();
            }
            Ev::Gap(o, l) => {
                assert_eq!(*o as usize, pos, "gap is contiguous");
                assert!(*l > 0);
                gaps.push((pos, pos + *l as usize));
                pos += *l as usize;
            }
        }
    }
    assert_eq!(pos, stream.len(), "events cover exactly [0, len)");
    gaps
}

/// The maximal runs of `false` in `received`.
fn missing_runs(received: &[bool]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < received.len() {
        if !received[i] {
            let s = i;
            while i < received.len() && !received[i] {
                i += 1;
            }
            runs.push((s, i));
        } else {
            i += 1;
        }
    }
    runs
}

/// Merges adjacent gap ranges (two gaps may abut when a hole is declared in two steps).
fn merged(gaps: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &(s, e) in gaps {
        match out.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => out.push((s, e)),
        }
    }
    out
}

fn isn_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), (u32::MAX - 4000)..=u32::MAX, 0u32..16]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn lossless_stream_reassembles_exactly(
        stream in proptest::collection::vec(any::<u8>(), 0..4000),
        isn in isn_strategy(),
        seed in 1u64..,
    ) {
        let mut rng = Rng(seed);
        let p = plan(stream.len(), &mut rng, 0);
        let (evs, budget) = run(&stream, isn, &p.segs, 1 << 20, 1 << 20);
        let mut joined = Vec::new();
        for e in &evs {
            match e {
                Ev::Data(_, b) => joined.extend_from_slice(b),
                Ev::Gap(o, l) => panic!("unexpected gap {o}+{l}"),
            }
        }
        prop_assert_eq!(joined, stream);
        prop_assert_eq!(budget.stats.overlap_conflicts, 0);
        prop_assert_eq!(budget.stats.gaps, 0);
    }

    #[test]
    fn losses_become_gaps_exactly_where_bytes_are_missing(
        stream in proptest::collection::vec(any::<u8>(), 1..4000),
        isn in isn_strategy(),
        seed in 1u64..,
        loss in 0u64..40,
    ) {
        let mut rng = Rng(seed);
        let p = plan(stream.len(), &mut rng, loss);
        let (evs, budget) = run(&stream, isn, &p.segs, 1 << 20, 1 << 20);
        let gaps = check_tiling(&stream, &evs);
        prop_assert_eq!(merged(&gaps), missing_runs(&p.received));
        let missing: usize = p.received.iter().filter(|r| !**r).count();
        prop_assert_eq!(budget.stats.gap_bytes as usize, missing);
        prop_assert_eq!(budget.stats.bound_flushes, 0);
    }

    #[test]
    fn memory_bounds_hold_and_flushes_are_counted(
        stream in proptest::collection::vec(any::<u8>(), 1..4000),
        isn in isn_strategy(),
        seed in 1u64..,
        per_dir in 0usize..600,
        loss in 0u64..20,
    ) {
        let mut rng = Rng(seed);
        let p = plan(stream.len(), &mut rng, loss);
        let (evs, budget) = run(&stream, isn, &p.segs, per_dir, 1 << 20);
        let gaps = check_tiling(&stream, &evs);
        // Every byte never received is in a gap; a received byte is in a gap only because a
        // bound forced the hole it sat behind.
        let m = merged(&gaps);
        for (s, e) in missing_runs(&p.received) {
            prop_assert!(m.iter().any(|&(gs, ge)| gs <= s && e <= ge), "missing {}..{} not in a gap", s, e);
        }
        let gap_bytes: usize = gaps.iter().map(|(s, e)| e - s).sum();
        let missing = p.received.iter().filter(|r| !**r).count();
        if gap_bytes > missing {
            prop_assert!(budget.stats.bound_flushes > 0, "extra gap bytes without a counted flush");
        }
    }
}

#[test]
fn fin_reports_missing_tail() {
    // Bytes 0..10 sent, 10..20 lost, FIN at 20 seen: the tail is a gap.
    let stream: Vec<u8> = (0u8..20).collect();
    let segs = [Seg { off: 0, len: 10, fin: false }, Seg { off: 20, len: 0, fin: true }];
    let (evs, budget) = run(&stream, u32::MAX - 3, &segs, 1 << 20, 1 << 20);
    assert_eq!(evs, vec![Ev::Data(0, stream[..10].to_vec()), Ev::Gap(10, 10)]);
    assert_eq!((budget.stats.gaps, budget.stats.gap_bytes), (1, 10));
}

#[test]
fn global_budget_forces_flush() {
    // The direction may hold 1 MiB but the table only 5 bytes: the second held segment forces
    // the hole below the first one to be given up.
    let stream: Vec<u8> = (0u8..30).collect();
    let segs = [
        Seg { off: 10, len: 4, fin: false },
        Seg { off: 20, len: 4, fin: false },
        Seg { off: 0, len: 10, fin: false },
        Seg { off: 14, len: 6, fin: false },
        Seg { off: 24, len: 6, fin: true },
    ];
    let (evs, budget) = run(&stream, 7, &segs, 1 << 20, 5);
    assert_eq!(evs[0], Ev::Gap(0, 10));
    assert_eq!(evs[1], Ev::Data(10, stream[10..14].to_vec()));
    assert_eq!(budget.stats.bound_flushes, 1);
    let gaps = check_tiling(&stream, &evs);
    assert_eq!(gaps, vec![(0, 10)]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Conflicting overlaps, some segments failing their checksum, against a model of what the
    /// receiver accepts (first valid byte per offset): `tapir::fuzzing::reassembly_against_receiver`
    /// (also the `reassembly` fuzz target) panics on any difference.
    #[test]
    fn conflicting_overlaps_are_resolved_as_the_receiver_resolves_them(data in proptest::collection::vec(any::<u8>(), 4..600)) {
        tapir::fuzzing::reassembly_against_receiver(&data);
    }
}
