//! When each warrant is in force in this POI, as capture time passes: the source of the HI1
//! notifications (liActivated, liModified, liDeactivated) the LEA receives.
//!
//! A warrant is *in force* from `max(start, first time seen)` until `end`: a replay that begins
//! inside a window activates the warrant at its first packet; one whose window opens later
//! activates it at `start`; a window that closed before the first packet never activates. The
//! deactivation is stamped with `end`, even when the next packet comes much later.
//!
//! Sans-I/O like the pipeline: handed `now`, returns notices. `replace` is for a running daemon
//! whose warrants were reloaded: new LIIDs activate, vanished ones deactivate, changed ones are
//! modified (and may activate or deactivate when their window moved across `now`).

use std::collections::HashMap;

use super::{Liid, Warrant};
use crate::record::WarrantOp;
use crate::timestamp::Timestamp;

/// One change in a warrant's state, stamped with the time it took effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub liid: Liid,
    pub op: WarrantOp,
    pub ts: Timestamp,
    pub start: Timestamp,
    pub end: Timestamp,
}

#[derive(Clone, Debug)]
struct Entry {
    start: Timestamp,
    end: Timestamp,
    /// The warrant's terms, to tell a modification from a reload that changed nothing.
    terms: String,
    active: bool,
    /// Its window closed (after being in force, or before it could be).
    done: bool,
}

#[derive(Debug, Default)]
pub struct Lifecycle {
    entries: HashMap<Liid, Entry>,
    /// The first `now` handed in: nothing was intercepted before it.
    first: Option<Timestamp>,
    /// The earliest start or end still to come, so that `advance` is O(1) between changes.
    next_due: Option<Timestamp>,
}

fn terms(w: &Warrant) -> String {
    // Targets, window, scope and LEA: what an LEA would call the warrant's terms.
    let mut t: Vec<String> = w.targets.iter().map(|t| t.to_string()).collect();
    t.sort();
    format!("{:?}|{:?}|{:?}|{:?}|{}", w.start, w.end, w.scope, w.lea, t.join(","))
}

impl Lifecycle {
    pub fn new(warrants: &[Warrant]) -> Lifecycle {
        let mut l = Lifecycle::default();
        for w in warrants {
            l.entries.insert(
                w.liid.clone(),
                Entry { start: w.start, end: w.end, terms: terms(w), active: false, done: false },
            );
        }
        l.recompute_due();
        l
    }

    fn recompute_due(&mut self) {
        self.next_due = self.entries.values().filter(|e| !e.done).map(|e| if e.active { e.end } else { e.start }).min();
    }

    /// Capture time moved to `now`: the warrants whose window opened or closed, in time order.
    pub fn advance(&mut self, now: Timestamp, out: &mut Vec<Notice>) {
        let first = *self.first.get_or_insert(now);
        if self.next_due.is_none_or(|d| d > now) {
            return;
        }
        let before = out.len();
        for (liid, e) in self.entries.iter_mut() {
            step(liid, e, first, now, out);
        }
        out[before..].sort_by(|a, b| (a.ts, a.op as u8, &a.liid).cmp(&(b.ts, b.op as u8, &b.liid)));
        self.recompute_due();
    }

    /// The warrant set was reloaded at `now`: notices for what changed.
    pub fn replace(&mut self, warrants: &[Warrant], now: Timestamp, out: &mut Vec<Notice>) {
        let first = *self.first.get_or_insert(now);
        let before = out.len();
        let mut seen: HashMap<Liid, ()> = HashMap::new();
        for w in warrants {
            seen.insert(w.liid.clone(), ());
            let t = terms(w);
            match self.entries.get_mut(&w.liid) {
                Some(e) if e.terms == t => {}
                Some(e) => {
                    let was_active = e.active;
                    e.start = w.start;
                    e.end = w.end;
                    e.terms = t;
                    e.done = false;
                    let in_force = w.start <= now && now < w.end;
                    if was_active && in_force {
                        out.push(notice(&w.liid, e, WarrantOp::Modified, now));
                    } else if was_active {
                        // Its new window no longer covers now.
                        e.active = false;
                        e.done = w.end <= now;
                        out.push(notice(&w.liid, e, WarrantOp::Deactivated, now));
                    } else {
                        step(&w.liid, e, first, now, out);
                    }
                }
                None => {
                    let mut e = Entry { start: w.start, end: w.end, terms: t, active: false, done: false };
                    // Provisioned now: in force from now at the earliest.
                    step(&w.liid, &mut e, first.max(now), now, out);
                    self.entries.insert(w.liid.clone(), e);
                }
            }
        }
        let gone: Vec<Liid> = self.entries.keys().filter(|l| !seen.contains_key(*l)).cloned().collect();
        for liid in gone {
            if let Some(e) = self.entries.remove(&liid) {
                if e.active {
                    out.push(notice(&liid, &e, WarrantOp::Deactivated, now));
                }
            }
        }
        out[before..].sort_by(|a, b| (a.ts, a.op as u8, &a.liid).cmp(&(b.ts, b.op as u8, &b.liid)));
        self.recompute_due();
    }

    /// LIIDs in force now.
    pub fn active(&self) -> impl Iterator<Item = &Liid> {
        self.entries.iter().filter(|(_, e)| e.active).map(|(l, _)| l)
    }
}

fn notice(liid: &Liid, e: &Entry, op: WarrantOp, ts: Timestamp) -> Notice {
    Notice { liid: liid.clone(), op, ts, start: e.start, end: e.end }
}

/// Brings one warrant up to `now`; `first` is when the POI started looking.
fn step(liid: &Liid, e: &mut Entry, first: Timestamp, now: Timestamp, out: &mut Vec<Notice>) {
    if e.done {
        return;
    }
    if !e.active {
        let from = e.start.max(first);
        if from >= e.end {
            // Its window closed before the POI saw it: never in force here.
            e.done = e.end <= now;
            return;
        }
        if from > now {
            return;
        }
        e.active = true;
        out.push(notice(liid, e, WarrantOp::Activated, from));
    }
    if e.end <= now {
        e.active = false;
        e.done = true;
        out.push(notice(liid, e, WarrantOp::Deactivated, e.end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::parse_warrants;

    fn ws(text: &str) -> Vec<Warrant> {
        parse_warrants(text, "t.toml").unwrap().warrants
    }

    const TWO: &str = r#"
[[warrant]]
liid = "EARLY"
start = "2026-01-01T00:00:00Z"
end = "2026-01-01T00:00:10Z"
scope = "iri+cc"
targets = ["ipv4:10.0.0.1"]

[[warrant]]
liid = "LATE"
start = "2026-01-01T00:00:20Z"
end = "2026-01-01T00:00:30Z"
scope = "iri+cc"
targets = ["ipv4:10.0.0.2"]

[[warrant]]
liid = "OLD"
start = "2025-01-01T00:00:00Z"
end = "2025-01-02T00:00:00Z"
scope = "iri+cc"
targets = ["ipv4:10.0.0.3"]
"#;

    fn t(s: i64) -> Timestamp {
        // 2026-01-01T00:00:00Z = 1767225600 (date -u -d 2026-01-01 +%s).
        Timestamp::from_secs(1_767_225_600 + s)
    }

    fn ops(v: &[Notice]) -> Vec<(String, WarrantOp, Timestamp)> {
        v.iter().map(|n| (n.liid.to_string(), n.op, n.ts)).collect()
    }

    #[test]
    fn windows_open_and_close_with_capture_time() {
        let mut l = Lifecycle::new(&ws(TWO));
        let mut out = Vec::new();
        l.advance(t(5), &mut out);
        // Capture starts inside EARLY's window: in force from the first packet.
        assert_eq!(ops(&out), vec![("EARLY".into(), WarrantOp::Activated, t(5))]);
        out.clear();
        l.advance(t(6), &mut out);
        assert!(out.is_empty());
        // One packet long after: EARLY ended at its end, LATE began and ended at its bounds.
        l.advance(t(40), &mut out);
        assert_eq!(
            ops(&out),
            vec![
                ("EARLY".into(), WarrantOp::Deactivated, t(10)),
                ("LATE".into(), WarrantOp::Activated, t(20)),
                ("LATE".into(), WarrantOp::Deactivated, t(30)),
            ]
        );
        out.clear();
        l.advance(t(100), &mut out);
        assert!(out.is_empty(), "OLD never in force: {out:?}");
    }

    #[test]
    fn reload_activates_modifies_and_deactivates() {
        let mut l = Lifecycle::new(&ws(TWO));
        let mut out = Vec::new();
        l.advance(t(5), &mut out);
        out.clear();
        let changed = TWO.replace("targets = [\"ipv4:10.0.0.1\"]", "targets = [\"ipv4:10.0.0.9\"]");
        let changed = changed.replace("liid = \"LATE\"", "liid = \"NEW\"").replace(":20Z", ":00Z");
        l.replace(&ws(&changed), t(7), &mut out);
        assert_eq!(
            ops(&out),
            vec![("NEW".into(), WarrantOp::Activated, t(7)), ("EARLY".into(), WarrantOp::Modified, t(7))]
        );
        out.clear();
        // The same set again changes nothing; dropping EARLY deactivates it.
        l.replace(&ws(&changed), t(8), &mut out);
        assert!(out.is_empty());
        let only_new: Vec<Warrant> = ws(&changed).into_iter().filter(|w| &*w.liid == "NEW").collect();
        l.replace(&only_new, t(9), &mut out);
        assert_eq!(ops(&out), vec![("EARLY".into(), WarrantOp::Deactivated, t(9))]);
    }
}
