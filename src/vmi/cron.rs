//! When a crontab line runs: Vixie cron's schedule syntax (five fields with lists, ranges, steps
//! and names; `@reboot` and the other specials), and the next runs after a given time.
//!
//! For an LEA the question is "a VM started from this image at 08:05: what will it do, and
//! when". `@reboot sleep 3600 && mailclient --flush-outbox` is read as "at boot, plus 3600 s".
//! Cron runs in the VM's local time zone; the times here are in UTC, and the caller says which
//! zone the image names.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

/// Minutes searched for the next run at most: a schedule that matches nothing (31 February)
/// ends the search instead of looping.
const SEARCH_MINUTES: i64 = 4 * 366 * 24 * 60;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// At boot (plus the leading `sleep`, if the command starts with one).
    Reboot {
        delay_secs: u64,
    },
    Times(Fields),
}

/// Which values each field allows (bit sets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fields {
    minute: u64,
    hour: u32,
    dom: u32,
    month: u16,
    dow: u8,
    /// Day of month and day of week both restricted: either matches (cron's rule).
    either_day: bool,
}

fn field(s: &str, lo: u32, hi: u32, names: &[&str]) -> Option<u64> {
    let value = |v: &str| -> Option<u32> {
        let v = v.to_ascii_lowercase();
        match names.iter().position(|n| *n == v) {
            Some(i) => Some(lo + i as u32),
            None => v.parse().ok(),
        }
    };
    let mut bits = 0u64;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (r, st.parse::<u32>().ok().filter(|s| *s > 0)?),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let a = value(range)?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return None;
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Some(bits)
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// The schedule of a crontab entry (`schedule` as [`super::linux::CronEntry`] has it, and its
/// command for `@reboot`'s delay).
pub fn parse(schedule: &str, command: &str) -> Option<Schedule> {
    let expanded = match schedule {
        "@reboot" => {
            let mut w = command.split_whitespace();
            let delay_secs = match (w.next(), w.next()) {
                (Some("sleep"), Some(n)) => n.trim_end_matches(';').parse().unwrap_or(0),
                _ => 0,
            };
            return Some(Schedule::Reboot { delay_secs });
        }
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        s => s,
    };
    let f: Vec<&str> = expanded.split_whitespace().collect();
    let [m, h, dom, mon, dow] = f.as_slice() else { return None };
    let mut dow_bits = field(dow, 0, 7, &DAYS)?;
    // 7 is Sunday too.
    if dow_bits & (1 << 7) != 0 {
        dow_bits |= 1;
    }
    Some(Schedule::Times(Fields {
        minute: field(m, 0, 59, &[])?,
        hour: field(h, 0, 23, &[])? as u32,
        dom: field(dom, 1, 31, &[])? as u32,
        month: field(mon, 1, 12, &MONTHS)? as u16,
        dow: (dow_bits & 0x7f) as u8,
        either_day: *dom != "*" && *dow != "*",
    }))
}

impl Fields {
    fn matches(&self, t: &DateTime<Utc>) -> bool {
        let dom_ok = self.dom & (1 << t.day()) != 0;
        let dow_ok = self.dow & (1 << t.weekday().num_days_from_sunday()) != 0;
        let day_ok = if self.either_day { dom_ok || dow_ok } else { dom_ok && dow_ok };
        self.minute & (1 << t.minute()) != 0
            && self.hour & (1 << t.hour()) != 0
            && self.month & (1 << t.month()) != 0
            && day_ok
    }
}

/// The first `n` runs at or after `start` (a boot at `start` for `@reboot`).
pub fn next_runs(s: &Schedule, start: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    match s {
        Schedule::Reboot { delay_secs } => {
            vec![start + Duration::seconds(i64::try_from(*delay_secs).unwrap_or(i64::MAX / 2).min(10 * 366 * 86_400))]
        }
        Schedule::Times(f) => {
            // Cron fires at whole minutes: from the first whole minute not before `start`.
            let mut t = start.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(start);
            if t < start {
                t += Duration::minutes(1);
            }
            let mut out = Vec::new();
            for _ in 0..SEARCH_MINUTES {
                if f.matches(&t) {
                    out.push(t);
                    if out.len() == n {
                        break;
                    }
                }
                t += Duration::minutes(1);
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn specials_fields_and_the_either_day_rule() {
        let start = at("2026-11-22T08:05:30Z"); // a Sunday
        let s = parse("@reboot", "sleep 3600 && mailclient --flush-outbox").unwrap();
        assert_eq!(next_runs(&s, start, 1), vec![at("2026-11-22T09:05:30Z")]);
        let s = parse("*/20 9-10 * * *", "").unwrap();
        let got: Vec<_> = next_runs(&s, start, 4).iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(
            got,
            [
                "2026-11-22T09:00:00+00:00",
                "2026-11-22T09:20:00+00:00",
                "2026-11-22T09:40:00+00:00",
                "2026-11-22T10:00:00+00:00"
            ]
        );
        // Day of month 1 or Mondays: the next Monday comes before the 1st.
        let s = parse("30 6 1 * mon", "").unwrap();
        assert_eq!(next_runs(&s, start, 2), vec![at("2026-11-23T06:30:00Z"), at("2026-11-30T06:30:00Z")]);
        let s = parse("@monthly", "").unwrap();
        assert_eq!(next_runs(&s, start, 1), vec![at("2026-12-01T00:00:00Z")]);
        // Sunday as 7, names, and nothing for 31 February.
        assert_eq!(parse("0 12 * jan-mar 7", ""), parse("0 12 * 1-3 sun", ""));
        assert!(next_runs(&parse("0 0 31 feb *", "").unwrap(), start, 1).is_empty());
        assert_eq!(parse("61 * * * *", ""), None);
        assert_eq!(parse("* * * *", ""), None);
    }
}
