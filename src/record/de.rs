//! Reading records back from the JSON they are written as, where serde's derive alone cannot:
//! for a node that receives another's records (an MDF rebuilding its POI's IRI from X2) and must
//! get the very values back, not look-alikes.
//!
//! - `&'static str` fields (names a protocol's code spells out: `stream-begin`, `h264`, `***`)
//!   cannot borrow from a message that goes away. [`static_str`] and its `Option`/`Vec` forms
//!   give the same text back as a `&'static str` from an interner: each distinct text is kept
//!   once for the life of the process, at most [`MAX_INTERNED`] of them of at most
//!   [`MAX_INTERNED_LEN`] bytes, so a peer that sends ever new names cannot grow it without
//!   bound (past it, the field does not deserialise).
//! - [`present`] reads an `Option` written only when `Some` (`skip_serializing_if =
//!   "Option::is_none"`) whose value may be `null`: the key's presence, not its value, says
//!   `Some`.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use serde::de::{Deserialize, Deserializer, Error};

/// A `&'static str`, spelled so that serde's derive does not take it for text borrowed from
/// the input (which would make the type readable only from `'static` input): a field of this
/// type is read with [`static_str`] or [`option_static_str`].
pub type StaticStr = &'static str;

/// Distinct texts the interner keeps at most.
pub const MAX_INTERNED: usize = 4096;
/// Longest text the interner keeps, in bytes.
pub const MAX_INTERNED_LEN: usize = 256;

/// The `&'static str` equal to `s`: one already handed out, or a new one kept for the rest of
/// the process. `None` past the interner's bounds.
pub fn intern(s: &str) -> Option<&'static str> {
    static TEXTS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut texts = TEXTS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = texts.get(s) {
        return Some(*t);
    }
    if s.len() > MAX_INTERNED_LEN || texts.len() >= MAX_INTERNED {
        return None;
    }
    let t: &'static str = Box::leak(s.into());
    texts.insert(t);
    Some(t)
}

fn interned<E: Error>(s: &str) -> Result<&'static str, E> {
    intern(s).ok_or_else(|| {
        E::custom(format_args!("name of {} bytes not kept: the bound of names read back is reached", s.len()))
    })
}

/// `#[serde(deserialize_with = "...")]` for a `&'static str` field.
pub fn static_str<'de, D: Deserializer<'de>>(d: D) -> Result<StaticStr, D::Error> {
    interned(&String::deserialize(d)?)
}

/// The same for an `Option<&'static str>` (with `#[serde(default)]` when it may be absent).
pub fn option_static_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<StaticStr>, D::Error> {
    Option::<String>::deserialize(d)?.map(|s| interned(&s)).transpose()
}

/// The same for a `Vec<&'static str>`.
pub fn vec_static_str<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<&'static str>, D::Error> {
    Vec::<String>::deserialize(d)?.iter().map(|s| interned(s)).collect()
}

/// `#[serde(default, deserialize_with = "...")]` for an `Option<T>` written only when `Some`:
/// present is `Some`, even when the value is `null` (a `Some(Value::Null)`).
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct S {
        #[serde(deserialize_with = "static_str")]
        a: StaticStr,
        #[serde(default, deserialize_with = "option_static_str")]
        b: Option<StaticStr>,
        #[serde(default, deserialize_with = "vec_static_str")]
        c: Vec<&'static str>,
        #[serde(default, deserialize_with = "present")]
        d: Option<serde_json::Value>,
    }

    #[test]
    fn static_texts_come_back_once_each() {
        let s: S =
            serde_json::from_value(serde_json::json!({"a": "x-de-test", "b": "y", "c": ["x-de-test", "z"]})).unwrap();
        assert_eq!(s, S { a: "x-de-test", b: Some("y"), c: vec!["x-de-test", "z"], d: None });
        assert!(std::ptr::eq(s.a, s.c[0]), "one copy of a text");
        let t: S = serde_json::from_value(serde_json::json!({"a": "x-de-test", "b": null, "d": null})).unwrap();
        assert_eq!(t, S { a: "x-de-test", b: None, c: vec![], d: Some(serde_json::Value::Null) });
        assert!(serde_json::from_value::<S>(serde_json::json!({"a": 1})).is_err());
        assert!(serde_json::from_value::<S>(serde_json::json!({"a": "x".repeat(MAX_INTERNED_LEN + 1)})).is_err());
    }
}
