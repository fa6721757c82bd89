//! Time as the pipeline sees it.
//!
//! The core never reads the system clock (quinn's rule): every stage is handed `now`, which is the
//! packet's capture time in replay and the wall clock in live capture. One type, nanoseconds since
//! the Unix epoch in UTC, so that warrant windows, association validity and flow timeouts compare
//! without conversions.

use std::fmt;

/// Nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    pub fn from_secs_nanos(secs: i64, nanos: u32) -> Timestamp {
        Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(nanos as i64))
    }

    /// A seconds and fraction pair as capture interfaces hand it (libpcap's `timeval`): the
    /// fraction in nanoseconds when `nanos`, else in microseconds. A fraction outside the second,
    /// which a well-behaved source never gives, is clamped into it rather than trusted.
    pub fn from_secs_fraction(secs: i64, fraction: i64, nanos: bool) -> Timestamp {
        let ns = if nanos { fraction } else { fraction.saturating_mul(1000) };
        Timestamp::from_secs_nanos(secs, u32::try_from(ns.clamp(0, 999_999_999)).unwrap_or(0))
    }

    pub fn from_secs(secs: i64) -> Timestamp {
        Timestamp::from_secs_nanos(secs, 0)
    }

    pub fn secs(self) -> i64 {
        self.0.div_euclid(1_000_000_000)
    }

    pub fn subsec_nanos(self) -> u32 {
        self.0.rem_euclid(1_000_000_000) as u32
    }

    pub fn nanos(self) -> i64 {
        self.0
    }

    /// `self + d`, saturating.
    pub fn add_nanos(self, d: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(d))
    }

    pub fn add_secs(self, s: i64) -> Timestamp {
        self.add_nanos(s.saturating_mul(1_000_000_000))
    }

    /// Parses an RFC 3339 date-time such as `2026-01-01T00:00:00Z` or `...+02:00`.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let dt = chrono::DateTime::parse_from_rfc3339(s).ok()?;
        Some(Timestamp::from_secs_nanos(dt.timestamp(), dt.timestamp_subsec_nanos()))
    }

    /// RFC 3339 in UTC with nanoseconds, e.g. `2026-01-01T00:00:00.000000001Z`.
    pub fn to_rfc3339(self) -> String {
        match chrono::DateTime::from_timestamp(self.secs(), self.subsec_nanos()) {
            Some(dt) => dt.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            None => format!("@{}ns", self.0),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

/// Read back from what [`Timestamp::to_rfc3339`] writes: RFC 3339, or `@<n>ns` for an instant
/// outside chrono's range.
impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        let raw = s.strip_prefix('@').and_then(|n| n.strip_suffix("ns")).and_then(|n| n.parse().ok());
        raw.map(Timestamp)
            .or_else(|| Timestamp::parse_rfc3339(&s))
            .ok_or_else(|| serde::de::Error::custom(format_args!("not an RFC 3339 date-time: {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_in_either_precision_and_out_of_range() {
        let t = Timestamp::from_secs_fraction;
        assert_eq!(t(1_700_000_000, 123_456_789, true).nanos(), 1_700_000_000_123_456_789);
        assert_eq!(t(1_700_000_000, 123_456, false).nanos(), 1_700_000_000_123_456_000);
        assert_eq!(t(5, -1, true).nanos(), 5_000_000_000);
        assert_eq!(t(5, 2_000_000, false).nanos(), 5_999_999_999);
        assert_eq!(t(5, i64::MAX, false).nanos(), 5_999_999_999);
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2026-01-01T00:00:00.5Z").unwrap();
        assert_eq!(t.secs(), 1_767_225_600);
        assert_eq!(t.subsec_nanos(), 500_000_000);
        assert_eq!(t.to_rfc3339(), "2026-01-01T00:00:00.500000000Z");
        let off = Timestamp::parse_rfc3339("2026-01-01T02:00:00+02:00").unwrap();
        assert_eq!(off.secs(), 1_767_225_600);
        assert!(Timestamp::parse_rfc3339("yesterday").is_none());
    }

    #[test]
    fn serde_reads_back_what_it_writes() {
        // Not `Timestamp::MIN`: `from_secs_nanos` saturates its seconds before adding the
        // nanoseconds, so the first second after MIN reads back late (no capture is that old).
        let early = Timestamp::MIN.add_secs(1);
        for t in [Timestamp(1_767_225_600_000_000_001), Timestamp(-1), early, Timestamp::MAX] {
            let v = serde_json::to_value(t).unwrap();
            assert_eq!(serde_json::from_value::<Timestamp>(v).unwrap(), t);
        }
        assert_eq!(serde_json::from_value::<Timestamp>("@-5ns".into()).unwrap(), Timestamp(-5));
        assert!(serde_json::from_value::<Timestamp>("yesterday".into()).is_err());
        assert!(serde_json::from_value::<Timestamp>(5.into()).is_err());
    }

    #[test]
    fn negative_times_split_correctly() {
        let t = Timestamp(-1);
        assert_eq!(t.secs(), -1);
        assert_eq!(t.subsec_nanos(), 999_999_999);
    }
}
