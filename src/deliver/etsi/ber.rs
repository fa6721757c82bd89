//! A small BER writer and reader for exactly the ETSI LI types tapir uses.
//!
//! Writer: definite lengths, minimal length octets, minimal integer contents (what DER asks of
//! these types), so that the same field values always give the same bytes. Constructed values
//! are written forward: the caller gives a lower bound of the content length (`hint`), the
//! writer reserves that many length octets and only moves the content when the bound was wrong,
//! which keeps a 1.4 KB packet from being copied once per nesting level.
//!
//! Reader: no-panic contract. Every length is checked against the bytes in hand before it is
//! used, indefinite lengths and over-long tag or length forms are errors, never panics.

use std::fmt;

/// Tag class, the two top bits of the identifier octet.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    Universal,
    Application,
    Context,
    Private,
}

impl Class {
    fn bits(self) -> u8 {
        match self {
            Class::Universal => 0x00,
            Class::Application => 0x40,
            Class::Context => 0x80,
            Class::Private => 0xc0,
        }
    }
    fn from_bits(b: u8) -> Class {
        match b & 0xc0 {
            0x00 => Class::Universal,
            0x40 => Class::Application,
            0x80 => Class::Context,
            _ => Class::Private,
        }
    }
}

/// An identifier: class, primitive/constructed and tag number.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tag {
    pub class: Class,
    pub constructed: bool,
    pub number: u32,
}

impl Tag {
    /// `[n]` IMPLICIT on a primitive type.
    pub const fn ctx(number: u32) -> Tag {
        Tag { class: Class::Context, constructed: false, number }
    }
    /// `[n]` on a SEQUENCE/SEQUENCE OF (implicit) or on a CHOICE (always explicit).
    pub const fn ctx_cons(number: u32) -> Tag {
        Tag { class: Class::Context, constructed: true, number }
    }
    pub const fn universal(number: u32) -> Tag {
        Tag { class: Class::Universal, constructed: false, number }
    }
    pub const SEQUENCE: Tag = Tag { class: Class::Universal, constructed: true, number: 16 };
    pub const INTEGER: Tag = Tag::universal(2);
    pub const UTF8_STRING: Tag = Tag::universal(12);
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match self.class {
            Class::Universal => "UNIVERSAL ",
            Class::Application => "APPLICATION ",
            Class::Context => "",
            Class::Private => "PRIVATE ",
        };
        write!(f, "[{c}{}]{}", self.number, if self.constructed { "c" } else { "" })
    }
}

// ---------------------------------------------------------------------------------------------
// Writer

/// Appends identifier octets.
pub fn put_tag(out: &mut Vec<u8>, tag: Tag) {
    let first = tag.class.bits() | if tag.constructed { 0x20 } else { 0 };
    if tag.number < 31 {
        out.push(first | tag.number as u8);
        return;
    }
    out.push(first | 0x1f);
    let n = tag.number;
    let mut started = false;
    for shift in (0..5).rev() {
        let septet = ((n >> (shift * 7)) & 0x7f) as u8;
        if septet != 0 || started || shift == 0 {
            started = true;
            out.push(if shift == 0 { septet } else { septet | 0x80 });
        }
    }
}

/// How many length octets a definite length of `n` takes (the initial octet included).
pub fn len_octets(n: usize) -> usize {
    if n < 0x80 {
        1
    } else {
        1 + (usize::BITS as usize / 8 - n.leading_zeros() as usize / 8)
    }
}

fn write_len_at(dst: &mut [u8], n: usize) {
    // `dst.len() == len_octets(n)` is guaranteed by every caller.
    if n < 0x80 {
        if let Some(b) = dst.first_mut() {
            *b = n as u8;
        }
        return;
    }
    let k = dst.len().saturating_sub(1);
    if let Some((first, rest)) = dst.split_first_mut() {
        *first = 0x80 | k as u8;
        let be = n.to_be_bytes();
        let from = be.len().saturating_sub(k);
        if let Some(src) = be.get(from..) {
            rest.copy_from_slice(src);
        }
    }
}

/// Appends definite length octets.
pub fn put_len(out: &mut Vec<u8>, n: usize) {
    let k = len_octets(n);
    let at = out.len();
    out.resize(at + k, 0);
    write_len_at(&mut out[at..], n);
}

/// A primitive TLV with the given content.
pub fn put_prim(out: &mut Vec<u8>, tag: Tag, content: &[u8]) {
    put_tag(out, tag);
    put_len(out, content.len());
    out.extend_from_slice(content);
}

/// A constructed TLV whose content `f` writes. `hint` is a lower bound of the content length
/// (0 if unknown); a good bound saves moving the content once its length is known.
pub fn put_cons<F: FnOnce(&mut Vec<u8>)>(out: &mut Vec<u8>, tag: Tag, hint: usize, f: F) {
    put_tag(out, tag);
    let reserved = len_octets(hint);
    let len_at = out.len();
    out.resize(len_at + reserved, 0);
    let start = out.len();
    f(out);
    let n = out.len() - start;
    let need = len_octets(n);
    if need > reserved {
        let extra = need - reserved;
        let end = out.len();
        out.resize(end + extra, 0);
        out.copy_within(start..end, start + extra);
    } else if need < reserved {
        let less = reserved - need;
        out.copy_within(start.., start - less);
        out.truncate(out.len() - less);
    }
    write_len_at(&mut out[len_at..len_at + need], n);
}

/// Minimal two's-complement content octets of a non-negative integer (at most 9 bytes).
pub fn uint_content(v: u64) -> ([u8; 9], usize) {
    let mut buf = [0u8; 9];
    buf[1..].copy_from_slice(&v.to_be_bytes());
    // Skip leading zero octets, but keep one if the next octet has its top bit set.
    let mut i = 0;
    while i < 8 && buf[i] == 0 && buf[i + 1] & 0x80 == 0 {
        i += 1;
    }
    (buf, i)
}

/// An INTEGER or ENUMERATED with a non-negative value.
pub fn put_uint(out: &mut Vec<u8>, tag: Tag, v: u64) {
    let (buf, i) = uint_content(v);
    put_prim(out, tag, &buf[i..]);
}

pub fn put_null(out: &mut Vec<u8>, tag: Tag) {
    put_tag(out, tag);
    out.push(0);
}

pub fn put_bool(out: &mut Vec<u8>, tag: Tag, v: bool) {
    put_prim(out, tag, &[if v { 0xff } else { 0x00 }]);
}

fn put_arc(out: &mut Vec<u8>, arc: u64) {
    let mut started = false;
    for shift in (0..10).rev() {
        let septet = ((arc >> (shift * 7)) & 0x7f) as u8;
        if septet != 0 || started || shift == 0 {
            started = true;
            out.push(if shift == 0 { septet } else { septet | 0x80 });
        }
    }
}

/// Content octets of an OBJECT IDENTIFIER. `None` if the first two arcs are not a valid pair.
pub fn oid_content(arcs: &[u32]) -> Option<Vec<u8>> {
    let (&a, rest) = arcs.split_first()?;
    let (&b, rest) = rest.split_first()?;
    if a > 2 || (a < 2 && b >= 40) {
        return None;
    }
    let mut out = Vec::with_capacity(arcs.len() + 4);
    put_arc(&mut out, u64::from(a) * 40 + u64::from(b));
    for &arc in rest {
        put_arc(&mut out, arc.into());
    }
    Some(out)
}

/// Content octets of a RELATIVE-OID.
pub fn relative_oid_content(arcs: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(arcs.len() + 2);
    for &arc in arcs {
        put_arc(&mut out, arc.into());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Reader

/// Why bytes are not the BER this reader accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BerError {
    #[error("at offset {offset}: truncated {what}: need {need} bytes, have {have}")]
    Truncated { offset: usize, what: &'static str, need: usize, have: usize },
    #[error("at offset {offset}: indefinite length is not accepted")]
    Indefinite { offset: usize },
    #[error("at offset {offset}: length field of {octets} octets is too long")]
    LengthTooLong { offset: usize, octets: usize },
    #[error("at offset {offset}: tag number too large")]
    TagTooLarge { offset: usize },
}

/// One TLV borrowed from the input.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: Tag,
    /// The content octets.
    pub value: &'a [u8],
    /// Offset of the identifier octet in the buffer the reader started from.
    pub offset: usize,
    /// Header plus content length.
    pub total_len: usize,
}

/// Reads TLVs one after the other out of a buffer; `base` is the buffer's offset in the
/// outermost input, so that errors and TLVs carry absolute offsets.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], base: usize) -> Reader<'a> {
        Reader { buf, pos: 0, base }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Absolute offset of the next TLV.
    pub fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    fn byte(&self, i: usize, what: &'static str) -> Result<u8, BerError> {
        self.buf.get(i).copied().ok_or(BerError::Truncated {
            offset: self.base.saturating_add(i),
            what,
            need: i.saturating_sub(self.pos).saturating_add(1),
            have: self.buf.len().saturating_sub(self.pos),
        })
    }

    /// The next TLV, or `None` at the end of the buffer.
    pub fn next_tlv(&mut self) -> Option<Result<Tlv<'a>, BerError>> {
        if self.is_empty() {
            return None;
        }
        let r = self.read();
        if r.is_err() {
            // Nothing after a malformed TLV can be framed.
            self.pos = self.buf.len();
        }
        Some(r)
    }

    fn read(&mut self) -> Result<Tlv<'a>, BerError> {
        let start = self.pos;
        let off = self.base.saturating_add(start);
        let id = self.byte(start, "identifier")?;
        let class = Class::from_bits(id);
        let constructed = id & 0x20 != 0;
        let mut i = start + 1;
        let mut number = u32::from(id & 0x1f);
        if number == 0x1f {
            number = 0;
            let mut n = 0;
            loop {
                let b = self.byte(i, "tag number")?;
                i += 1;
                n += 1;
                if n > 5 || number > (u32::MAX >> 7) {
                    return Err(BerError::TagTooLarge { offset: off });
                }
                number = (number << 7) | u32::from(b & 0x7f);
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        let first = self.byte(i, "length")?;
        i += 1;
        let len = if first < 0x80 {
            usize::from(first)
        } else if first == 0x80 {
            return Err(BerError::Indefinite { offset: off });
        } else {
            let k = usize::from(first & 0x7f);
            if k > std::mem::size_of::<usize>() || k > 8 {
                return Err(BerError::LengthTooLong { offset: off, octets: k });
            }
            let mut n: usize = 0;
            for _ in 0..k {
                let b = self.byte(i, "length")?;
                i += 1;
                n = n.checked_shl(8).ok_or(BerError::LengthTooLong { offset: off, octets: k })? | usize::from(b);
            }
            n
        };
        let have = self.buf.len().saturating_sub(i);
        if len > have {
            return Err(BerError::Truncated { offset: off, what: "content", need: len, have });
        }
        let end = i + len;
        let value =
            self.buf.get(i..end).ok_or(BerError::Truncated { offset: off, what: "content", need: len, have })?;
        self.pos = end;
        Ok(Tlv { tag: Tag { class, constructed, number }, value, offset: off, total_len: end - start })
    }
}

impl<'a> Tlv<'a> {
    /// A reader over this TLV's content (for constructed values).
    pub fn children(&self) -> Reader<'a> {
        let header = self.total_len.saturating_sub(self.value.len());
        Reader::new(self.value, self.offset.saturating_add(header))
    }
}

/// An unsigned INTEGER/ENUMERATED value, if it fits in a u64 and is not negative.
pub fn read_uint(v: &[u8]) -> Option<u64> {
    let (first, _) = v.split_first()?;
    if first & 0x80 != 0 {
        return None;
    }
    let v = if v.len() > 1 && *first == 0 { &v[1..] } else { v };
    if v.len() > 8 {
        return None;
    }
    Some(v.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// A signed INTEGER, if it fits in an i64.
pub fn read_int(v: &[u8]) -> Option<i64> {
    if v.is_empty() || v.len() > 8 {
        return None;
    }
    let neg = v.first().is_some_and(|b| b & 0x80 != 0);
    let init: i64 = if neg { -1 } else { 0 };
    Some(v.iter().fold(init, |acc, &b| (acc << 8) | i64::from(b)))
}

fn arcs(v: &[u8]) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    let mut cur: u64 = 0;
    let mut in_arc = false;
    for &b in v {
        if !in_arc && b == 0x80 {
            return None; // non-minimal arc
        }
        if cur > (u64::MAX >> 7) {
            return None;
        }
        cur = (cur << 7) | u64::from(b & 0x7f);
        in_arc = b & 0x80 != 0;
        if !in_arc {
            out.push(cur);
            cur = 0;
        }
    }
    if in_arc {
        return None;
    }
    Some(out)
}

/// Dotted form of OBJECT IDENTIFIER content.
pub fn read_oid(v: &[u8]) -> Option<String> {
    let a = arcs(v)?;
    let (&first, rest) = a.split_first()?;
    let (x, y) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut s = format!("{x}.{y}");
    for arc in rest {
        s.push('.');
        s.push_str(&arc.to_string());
    }
    Some(s)
}

/// Dotted form of RELATIVE-OID content.
pub fn read_relative_oid(v: &[u8]) -> Option<String> {
    let a = arcs(v)?;
    if a.is_empty() {
        return None;
    }
    Some(a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_minimal() {
        // X.690 8.1.3: short form below 128, long form with the fewest octets above.
        for (n, want) in [(0usize, vec![0x00]), (127, vec![0x7f]), (128, vec![0x81, 0x80]), (256, vec![0x82, 1, 0])] {
            let mut v = Vec::new();
            put_len(&mut v, n);
            assert_eq!(v, want, "length {n}");
        }
    }

    #[test]
    fn integers_are_minimal() {
        // X.690 8.3.2: no leading 0x00 unless the next bit would make the value negative.
        for (n, want) in [(0u64, vec![0u8]), (127, vec![0x7f]), (128, vec![0, 0x80]), (123456, vec![0x01, 0xe2, 0x40])]
        {
            let (b, i) = uint_content(n);
            assert_eq!(b[i..].to_vec(), want, "value {n}");
        }
        let (b, i) = uint_content(u64::MAX);
        assert_eq!(b[i..].to_vec(), [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn cons_fixes_a_wrong_hint_both_ways() {
        for (hint, n) in [(0usize, 300usize), (70000, 5), (200, 200)] {
            let mut v = Vec::new();
            put_cons(&mut v, Tag::SEQUENCE, hint, |o| o.extend(std::iter::repeat_n(0xabu8, n)));
            let t = Reader::new(&v, 0).next_tlv().unwrap().unwrap();
            assert_eq!(t.value.len(), n);
            assert_eq!(t.total_len, v.len());
            assert_eq!(v.len(), 1 + len_octets(n) + n);
        }
    }

    #[test]
    fn oid_of_version43_domain() {
        // 0.4.0.2.2.5.1.43 -> 04 00 02 02 05 01 2b (first octet 0*40+4).
        assert_eq!(oid_content(&[0, 4, 0, 2, 2, 5, 1, 43]).unwrap(), [4, 0, 2, 2, 5, 1, 0x2b]);
        assert_eq!(read_oid(&[4, 0, 2, 2, 5, 1, 0x2b]).unwrap(), "0.4.0.2.2.5.1.43");
        assert_eq!(relative_oid_content(&[5, 3, 200]), [5, 3, 0x81, 0x48]);
    }

    #[test]
    fn high_tag_numbers_round_trip() {
        let mut v = Vec::new();
        put_prim(&mut v, Tag::ctx(200), b"x");
        assert_eq!(v, [0x9f, 0x81, 0x48, 1, b'x']);
        let t = Reader::new(&v, 0).next_tlv().unwrap().unwrap();
        assert_eq!(t.tag, Tag::ctx(200));
    }
}
