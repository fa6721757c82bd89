//! `report.json`: what the LEMF received, kept across restarts on the same out dir.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most entries kept in each list of samples (counts are always exact).
pub const MAX_SAMPLES: usize = 1000;

/// Inclusive ranges of sequence numbers received, merged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<[u32; 2]>", into = "Vec<[u32; 2]>")]
pub struct RangeSet(BTreeMap<u32, u32>);

impl From<Vec<[u32; 2]>> for RangeSet {
    fn from(v: Vec<[u32; 2]>) -> Self {
        let mut s = RangeSet::default();
        for [a, b] in v {
            let (a, b) = (a.min(b), a.max(b));
            // Bounded by what the file says; inserting a range point by point could be 2^32 steps.
            s.insert_range(a, b);
        }
        s
    }
}

impl From<RangeSet> for Vec<[u32; 2]> {
    fn from(s: RangeSet) -> Self {
        s.0.into_iter().map(|(a, b)| [a, b]).collect()
    }
}

impl RangeSet {
    pub fn contains(&self, n: u32) -> bool {
        self.0.range(..=n).next_back().is_some_and(|(_, &e)| e >= n)
    }

    /// Adds `n`; false if it was already there.
    pub fn insert(&mut self, n: u32) -> bool {
        if self.contains(n) {
            return false;
        }
        self.insert_range(n, n);
        true
    }

    fn insert_range(&mut self, mut a: u32, mut b: u32) {
        // Merge with every range that overlaps or touches [a, b].
        let lo = a.saturating_sub(1);
        let touching: Vec<(u32, u32)> =
            self.0.range(..=b.saturating_add(1)).rev().take_while(|(_, &e)| e >= lo).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in touching {
            self.0.remove(&s);
            a = a.min(s);
            b = b.max(e);
        }
        self.0.insert(a, b);
    }

    pub fn min(&self) -> Option<u32> {
        self.0.keys().next().copied()
    }

    pub fn max(&self) -> Option<u32> {
        self.0.values().next_back().copied()
    }

    /// The holes between the lowest and highest number received.
    pub fn holes(&self) -> Vec<[u32; 2]> {
        let mut v = Vec::new();
        let mut prev: Option<u32> = None;
        for (&s, &e) in &self.0 {
            if let Some(p) = prev {
                if s > p.saturating_add(1) {
                    v.push([p + 1, s - 1]);
                }
            }
            prev = Some(e);
        }
        v
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// One duplicate PDU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicate {
    pub seq: u32,
    /// Same bytes as the first copy (a sender resending after a crash), `None` when the first
    /// copy is too old to compare (or arrived before a LEMF restart).
    pub identical: Option<bool>,
}

/// One sequence-number stream: (channel, LIID, CIN, kind).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamReport {
    pub channel: String,
    pub liid: String,
    pub cin: Option<u64>,
    /// `iri`, `cc`, `integrity-iri`, `integrity-cc`.
    pub kind: String,
    pub pdus: u64,
    pub received: RangeSet,
    /// Filled in when the report is written: holes in `received`.
    pub gaps: Vec<[u32; 2]>,
    /// Holes the stream had when a cINReset restarted its numbering.
    #[serde(default)]
    pub gaps_before_reset: Vec<[u32; 2]>,
    /// Gaps as they happened: a jump forward past the highest number received so far.
    pub gap_events: u64,
    pub duplicates: u64,
    pub duplicate_samples: Vec<Duplicate>,
    pub cin_resets: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrityFailure {
    pub channel: String,
    pub liid: String,
    pub cin: Option<u64>,
    pub data_type: String,
    pub check_type: String,
    /// The integrity-check PDU's own sequence number.
    pub seq: Option<u32>,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrityReport {
    pub hash_passed: u64,
    pub hash_failed: u64,
    pub signature_passed: u64,
    pub signature_failed: u64,
    /// Signature PDUs received with no public key configured.
    pub signature_unverified: u64,
    pub failures: Vec<IntegrityFailure>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub channel: String,
    pub peer: String,
    pub error: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// PDUs per `channel/LIID/kind` (kind: iri, cc, keep-alive, integrity, segment, cin-reset, tri).
    pub pdus: BTreeMap<String, u64>,
    /// Keyed `channel/LIID/CIN/kind` (CIN `-` when absent).
    pub streams: BTreeMap<String, StreamReport>,
    pub integrity: IntegrityReport,
    pub keepalives_answered: u64,
    pub undecodable: u64,
    pub undecodable_samples: Vec<Problem>,
    /// Streams dropped because they could not be framed (hostile or broken lengths).
    pub framing_errors: u64,
    pub framing_samples: Vec<Problem>,
    pub tls_refused: u64,
    pub tls_refused_samples: Vec<Problem>,
    pub connections: BTreeMap<String, u64>,
    /// Connections to a one-port listener ([`super::LemfConfig::one_port`]) that never told HI2
    /// from HI3 before their hold limit or their end: their PDUs were filed as HI2.
    pub channel_guesses: u64,
    pub channel_guess_samples: Vec<Problem>,
    /// Connections closed at once because `max_connections` were being served.
    pub connections_refused: u64,
    pub objects: u64,
    /// Runs of the LEMF that wrote into this directory.
    pub runs: u64,
}

pub(crate) fn push_sample<T>(v: &mut Vec<T>, x: T) {
    if v.len() < MAX_SAMPLES {
        v.push(x);
    }
}

impl Report {
    /// Fills the derived fields before writing.
    pub fn finalize(&mut self) {
        for s in self.streams.values_mut() {
            s.gaps = s.received.holes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_show_holes() {
        let mut r = RangeSet::default();
        for n in [0, 1, 2, 5, 7, 6, 10] {
            assert!(r.insert(n));
        }
        assert!(!r.insert(6));
        assert_eq!(r.holes(), vec![[3, 4], [8, 9]]);
        assert!(r.insert(3) && r.insert(4));
        assert_eq!(Vec::<[u32; 2]>::from(r.clone()), vec![[0, 7], [10, 10]]);
        assert!(r.insert(u32::MAX) && r.contains(u32::MAX) && !r.contains(u32::MAX - 1));
        let back: RangeSet = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
