//! AMF0 (Adobe Action Message Format 0), the encoding of RTMP commands and stream metadata:
//! enough to read `connect`, `publish`, `play`, `onStatus` and `onMetaData`.
//!
//! Decoding is bounded: nesting depth, values per message, and every length is checked against
//! what is left, so a hostile message costs at most its own size.

/// An AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf {
    Number(f64),
    Bool(bool),
    String(String),
    /// Object, ECMA array and typed object: properties in wire order.
    Object(Vec<(String, Amf)>),
    Array(Vec<Amf>),
    Null,
    Undefined,
    /// Milliseconds since the epoch.
    Date(f64),
}

/// Why a message is not AMF0 tapir can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmfError {
    /// The message ends inside a value.
    #[error("truncated AMF0 value")]
    Truncated,
    /// A type marker tapir does not read (AVM+ switch, reference, record set...).
    #[error("unsupported AMF0 type marker {0:#04x}")]
    Marker(u8),
    /// Deeper nesting or more values than the bounds allow.
    #[error("AMF0 nesting or value count over the bound")]
    Bound,
}

const MAX_DEPTH: usize = 16;
const MAX_VALUES: usize = 4096;

impl Amf {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// Property `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Amf> {
        match self {
            Amf::Object(p) => p.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// As JSON, for IRI (dates as numbers, non-finite numbers as null).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Amf::Number(n) | Amf::Date(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
            Amf::Bool(b) => Value::Bool(*b),
            Amf::String(s) => Value::String(s.clone()),
            Amf::Object(p) => Value::Object(p.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            Amf::Array(a) => Value::Array(a.iter().map(Amf::to_json).collect()),
            Amf::Null | Amf::Undefined => Value::Null,
        }
    }
}

/// Decodes every value of `bytes` (a command or data message body).
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Amf>, AmfError> {
    let mut r = Reader { b: bytes, values: 0 };
    let mut v = Vec::new();
    while !r.b.is_empty() {
        v.push(r.value(0)?);
    }
    Ok(v)
}

/// The length of the first value of `bytes`, if it is one (to strip `@setDataFrame`).
pub fn first_len(bytes: &[u8]) -> Option<usize> {
    let mut r = Reader { b: bytes, values: 0 };
    r.value(0).ok()?;
    Some(bytes.len() - r.b.len())
}

struct Reader<'a> {
    b: &'a [u8],
    values: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AmfError> {
        if self.b.len() < n {
            return Err(AmfError::Truncated);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn u16(&mut self) -> Result<usize, AmfError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<usize, AmfError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn f64(&mut self) -> Result<f64, AmfError> {
        let b = self.take(8)?;
        Ok(f64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    fn string(&mut self, long: bool) -> Result<String, AmfError> {
        let n = if long { self.u32()? } else { self.u16()? };
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    /// Properties up to the empty key and object-end marker.
    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Amf)>, AmfError> {
        let mut p = Vec::new();
        loop {
            let k = self.string(false)?;
            if k.is_empty() && self.b.first() == Some(&9) {
                self.take(1)?;
                return Ok(p);
            }
            p.push((k, self.value(depth + 1)?));
        }
    }

    fn value(&mut self, depth: usize) -> Result<Amf, AmfError> {
        self.values += 1;
        if depth > MAX_DEPTH || self.values > MAX_VALUES {
            return Err(AmfError::Bound);
        }
        let marker = self.take(1)?[0];
        Ok(match marker {
            0 => Amf::Number(self.f64()?),
            1 => Amf::Bool(self.take(1)?[0] != 0),
            2 => Amf::String(self.string(false)?),
            3 => Amf::Object(self.properties(depth)?),
            5 => Amf::Null,
            6 => Amf::Undefined,
            8 => {
                // ECMA array: the count is a hint only; properties end like an object's.
                self.u32()?;
                Amf::Object(self.properties(depth)?)
            }
            10 => {
                let n = self.u32()?;
                // Every value takes at least one byte: a count past that is a lie.
                if n > self.b.len() {
                    return Err(AmfError::Truncated);
                }
                let mut a = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    a.push(self.value(depth + 1)?);
                }
                Amf::Array(a)
            }
            11 => {
                let ms = self.f64()?;
                self.take(2)?;
                Amf::Date(ms)
            }
            12 | 15 => Amf::String(self.string(true)?),
            16 => {
                self.string(false)?;
                Amf::Object(self.properties(depth)?)
            }
            m => return Err(AmfError::Marker(m)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Vec<u8> {
        let mut b = vec![2];
        b.extend_from_slice(&(v.len() as u16).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
        b
    }

    #[test]
    fn a_connect_command_as_ffmpeg_sends_it() {
        // "connect", 1, {app: "live", type: "nonprivate", tcUrl: "rtmp://h/live", fpad: false}
        let mut b = s("connect");
        b.push(0);
        b.extend_from_slice(&1f64.to_be_bytes());
        b.push(3);
        for (k, v) in [("app", "live"), ("type", "nonprivate"), ("tcUrl", "rtmp://h/live")] {
            b.extend_from_slice(&(k.len() as u16).to_be_bytes());
            b.extend_from_slice(k.as_bytes());
            b.extend(s(v));
        }
        b.extend_from_slice(&[0, 4]);
        b.extend_from_slice(b"fpad");
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&[0, 0, 9]);
        let v = decode_all(&b).unwrap();
        assert_eq!(v[0].as_str(), Some("connect"));
        assert_eq!(v[1].as_f64(), Some(1.0));
        assert_eq!(v[2].get("tcUrl").and_then(Amf::as_str), Some("rtmp://h/live"));
        assert_eq!(v[2].get("fpad"), Some(&Amf::Bool(false)));
        assert_eq!(first_len(&b), Some(10));
    }

    #[test]
    fn hostile_values_are_refused_not_followed() {
        assert_eq!(decode_all(&[2, 0xff, 0xff, b'a']), Err(AmfError::Truncated));
        assert_eq!(decode_all(&[10, 0xff, 0xff, 0xff, 0xff, 5]), Err(AmfError::Truncated));
        assert_eq!(decode_all(&[0x11]), Err(AmfError::Marker(0x11)));
        // Objects nested past the bound.
        let mut deep = Vec::new();
        for _ in 0..40 {
            deep.extend_from_slice(&[3, 0, 1, b'k']);
        }
        assert_eq!(decode_all(&deep), Err(AmfError::Bound));
        // Many nulls in a strict array: bounded by the value count.
        let mut many = vec![10, 0, 0, 0x20, 0];
        many.extend(std::iter::repeat_n(5u8, 0x2000));
        assert_eq!(decode_all(&many), Err(AmfError::Bound));
    }
}
