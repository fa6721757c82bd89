//! The two identifiers every record carries: the LIID of the warrant it belongs to and the CIN of
//! the communication (session) within it.
//!
//! Both are checked once, where they are made, so that no later stage (case writer, PS-PDU
//! encoder, LEMF) meets one that its format cannot hold: a [`Liid`] fits TS 103 280's
//! `LIID ::= OCTET STRING (SIZE (1..25))` and is printable, a [`Cin`] fits TS 102 232-1's
//! `communicationIdentityNumber INTEGER (0..4294967295)`.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// Why a string is not a LIID.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LiidError {
    /// Empty, or longer than the 25 octets TS 103 280 allows.
    #[error("must be 1 to 25 characters")]
    Length,
    /// A byte outside printable ASCII (0x20..=0x7e).
    #[error("must be printable ASCII")]
    NotPrintable,
    /// A leading or trailing space, which no operator would see when reading it back.
    #[error("must not start or end with a space")]
    Padded,
}

/// A Lawful Interception IDentifier: 1..25 printable ASCII characters, no leading or trailing
/// space. Cheap to clone (shared), compared and hashed as its text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Liid(Arc<str>);

impl Liid {
    pub fn new(s: &str) -> Result<Liid, LiidError> {
        if s.is_empty() || s.len() > 25 {
            return Err(LiidError::Length);
        }
        if !s.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(LiidError::NotPrintable);
        }
        if s.starts_with(' ') || s.ends_with(' ') {
            return Err(LiidError::Padded);
        }
        Ok(Liid(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Liid {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Liid {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Liid {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Liid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Liid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for Liid {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Liid {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl TryFrom<&str> for Liid {
    type Error = LiidError;
    fn try_from(s: &str) -> Result<Liid, LiidError> {
        Liid::new(s)
    }
}

impl serde::Serialize for Liid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A Communication Identity Number: one per (LIID, session), numbered from 1 per LIID; 0 stands
/// for content that belongs to no session (non-IP frames, IP fragments held for reassembly).
/// A `u32`, as TS 102 232-1 carries it, so that it never has to be folded on the way out.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Cin(u32);

impl Cin {
    /// Content outside any session.
    pub const NONE: Cin = Cin(0);
    /// The first session of a LIID.
    pub const FIRST: Cin = Cin(1);

    pub const fn new(n: u32) -> Cin {
        Cin(n)
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    /// The CIN of the LIID's next session: after 2^32 - 1 sessions the numbers start again at
    /// 1 (0 is never a session's).
    pub fn next(self) -> Cin {
        match self.0.checked_add(1) {
            Some(n) => Cin(n),
            None => Cin::FIRST,
        }
    }
}

impl fmt::Display for Cin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<Cin> for u64 {
    fn from(c: Cin) -> u64 {
        c.0.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liids_outside_ts_103_280_are_refused() {
        assert_eq!(Liid::new("LIID-JOE-0001").unwrap().as_str(), "LIID-JOE-0001");
        assert_eq!(Liid::new(""), Err(LiidError::Length));
        assert_eq!(Liid::new(&"x".repeat(26)), Err(LiidError::Length));
        assert!(Liid::new(&"x".repeat(25)).is_ok());
        assert_eq!(Liid::new("a\tb"), Err(LiidError::NotPrintable));
        assert_eq!(Liid::new("é"), Err(LiidError::NotPrintable));
        assert_eq!(Liid::new(" a"), Err(LiidError::Padded));
    }

    #[test]
    fn cins_wrap_past_zero() {
        assert_eq!(Cin::NONE.next(), Cin::FIRST);
        assert_eq!(Cin::new(u32::MAX).next(), Cin::FIRST);
        assert_eq!(Cin::new(7).next().get(), 8);
    }
}

/// Hands out the CINs and object ids of each LIID: from 1, one after the other, for a single
/// pipeline. A run with several workers gives each a slot of its own (`slot(i, n)`: `i + 1`,
/// `i + 1 + n`, ...), so that numbers never collide and do not depend on which thread ran
/// first: the same capture makes the same case. Clones share their counters (the record stage
/// of a one-worker run numbers an image's inspection with that worker's sessions).
#[derive(Clone, Debug)]
pub struct Numbers(Arc<std::sync::Mutex<Numbering>>);

#[derive(Debug)]
struct Numbering {
    first: u32,
    stride: u32,
    cins: std::collections::HashMap<Liid, u32>,
    objects: std::collections::HashMap<Liid, u64>,
    /// Added to every object id: a POI's range (see [`Numbers::set_object_range`]).
    object_base: u64,
}

impl Default for Numbers {
    fn default() -> Numbers {
        Numbers::slot(0, 1)
    }
}

impl Numbers {
    /// Slot `index` of `count` (both at least 1; `index < count`).
    pub fn slot(index: u32, count: u32) -> Numbers {
        let stride = count.max(1);
        Numbers(Arc::new(std::sync::Mutex::new(Numbering {
            first: index.min(stride - 1) + 1,
            stride,
            cins: Default::default(),
            objects: Default::default(),
            object_base: 0,
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Numbering) -> T) -> T {
        // A panic elsewhere while holding the lock leaves the counters as they were: go on.
        let mut n = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut n)
    }

    /// The CIN of `liid`'s next session. Past 2^32 - 1 the numbers start again at the slot's
    /// first (0 is never a session's).
    pub fn cin(&self, liid: &Liid) -> Cin {
        self.with(|n| {
            let (first, stride) = (n.first, n.stride);
            let c = match n.cins.get_mut(liid) {
                Some(c) => {
                    *c = c.checked_add(stride).unwrap_or(first);
                    *c
                }
                None => {
                    n.cins.insert(liid.clone(), first);
                    first
                }
            };
            Cin(c)
        })
    }

    /// The id of `liid`'s next object.
    pub fn object(&self, liid: &Liid) -> u64 {
        self.with(|n| {
            let (first, stride) = (u64::from(n.first), u64::from(n.stride));
            let o = match n.objects.get_mut(liid) {
                Some(o) => {
                    *o = o.saturating_add(stride);
                    *o
                }
                None => {
                    n.objects.insert(liid.clone(), first);
                    first
                }
            };
            n.object_base | o
        })
    }

    /// Numbers objects in range `range` (1..=65535; 0 is the all-in-one's): the range in the
    /// top 16 bits of every id. Each POI of an MDF has a range of its own, so that object ids
    /// (which records refer to each other by) never collide at the MDF and need no renumbering.
    pub fn set_object_range(&self, range: u16) {
        self.with(|n| n.object_base = u64::from(range) << 48)
    }
}

#[cfg(test)]
mod numbers_tests {
    use super::*;

    #[test]
    fn slots_never_meet_and_one_slot_counts_from_one() {
        let l = Liid::new("L").unwrap();
        let one = Numbers::default();
        assert_eq!([one.cin(&l), one.cin(&l)], [Cin(1), Cin(2)]);
        assert_eq!([one.object(&l), one.object(&l)], [1, 2]);
        let (a, b, c) = (Numbers::slot(0, 3), Numbers::slot(1, 3), Numbers::slot(2, 3));
        let mut all: Vec<u32> = (0..4).flat_map(|_| [a.cin(&l).0, b.cin(&l).0, c.cin(&l).0]).collect();
        all.sort();
        assert_eq!(all, (1..=12).collect::<Vec<_>>());
        let shared = a.clone();
        assert_eq!(shared.cin(&l), Cin(13));
        let poi = Numbers::slot(1, 2);
        poi.set_object_range(3);
        assert_eq!([poi.object(&l), poi.object(&l)], [(3 << 48) | 2, (3 << 48) | 4]);
        let m = Numbers::slot(1, 2);
        m.with(|n| n.cins.insert(l.clone(), u32::MAX - 1));
        assert_eq!(m.cin(&l), Cin(2), "wraps to the slot's first");
    }
}
