//! Cuts a PS-PDU byte stream into PDUs: each PDU is one BER TLV with a definite length.
//!
//! No-panic contract: the header is parsed with checked arithmetic from the bytes at hand; a
//! length above the configured bound is refused before any buffer grows for it, so a hostile
//! length costs nothing but the connection.

/// Why a stream cannot be framed; the connection is dropped after one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("at stream offset {offset}: indefinite length is not accepted")]
    Indefinite { offset: u64 },
    #[error("at stream offset {offset}: length field of {octets} octets")]
    LengthTooLong { offset: u64, octets: usize },
    #[error("at stream offset {offset}: PDU of {len} bytes exceeds the bound of {max}")]
    TooLarge { offset: u64, len: u64, max: usize },
    #[error("at stream offset {offset}: tag number too long")]
    TagTooLong { offset: u64 },
}

/// Total length (header + content) of the TLV at the start of `buf`, `Ok(None)` if more bytes
/// are needed to know it.
pub fn tlv_len(buf: &[u8], offset: u64, max: usize) -> Result<Option<usize>, FrameError> {
    let Some(&id) = buf.first() else { return Ok(None) };
    let mut i = 1usize;
    if id & 0x1f == 0x1f {
        loop {
            let Some(&b) = buf.get(i) else { return Ok(None) };
            i += 1;
            if i > 6 {
                return Err(FrameError::TagTooLong { offset });
            }
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    let Some(&first) = buf.get(i) else { return Ok(None) };
    i += 1;
    let len: u64 = if first < 0x80 {
        u64::from(first)
    } else if first == 0x80 {
        return Err(FrameError::Indefinite { offset });
    } else {
        let k = usize::from(first & 0x7f);
        if k > 8 {
            return Err(FrameError::LengthTooLong { offset, octets: k });
        }
        let Some(bytes) = buf.get(i..i + k) else { return Ok(None) };
        i += k;
        bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b))
    };
    let total = len.saturating_add(i as u64);
    if total > max as u64 {
        return Err(FrameError::TooLarge { offset, len: total, max });
    }
    Ok(Some(total as usize))
}

/// Incremental framer for one connection.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out as PDUs.
    start: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    max: usize,
}

impl Framer {
    pub fn new(max_pdu: usize) -> Framer {
        Framer { buf: Vec::new(), start: 0, base: 0, max: max_pdu }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.base = self.base.saturating_add(self.start as u64);
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.base = self.base.saturating_add(self.start as u64);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete PDU (its full TLV bytes), `Ok(None)` if more bytes are needed.
    pub fn next_pdu(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let rest = self.buf.get(self.start..).unwrap_or_default();
        let offset = self.base.saturating_add(self.start as u64);
        match tlv_len(rest, offset, self.max)? {
            Some(n) if n <= rest.len() => {
                let s = self.start;
                self.start += n;
                Ok(self.buf.get(s..s + n))
            }
            _ => Ok(None),
        }
    }

    /// Bytes received but not yet part of a complete PDU.
    pub fn pending(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_across_pushes_and_refuses_hostile_lengths() {
        let mut f = Framer::new(1000);
        // Two TLVs: 30 03 010203, and 30 81 02 aabb (long-form length), split mid-header.
        f.push(&[0x30, 0x03, 1, 2]);
        assert_eq!(f.next_pdu().unwrap(), None);
        f.push(&[3, 0x30, 0x81]);
        assert_eq!(f.next_pdu().unwrap(), Some(&[0x30, 0x03, 1, 2, 3][..]));
        assert_eq!(f.next_pdu().unwrap(), None);
        f.push(&[0x02, 0xaa, 0xbb]);
        assert_eq!(f.next_pdu().unwrap(), Some(&[0x30, 0x81, 0x02, 0xaa, 0xbb][..]));
        assert_eq!(f.pending(), 0);
        // 2^64-1 bytes announced: refused without waiting for them.
        let mut f = Framer::new(1000);
        f.push(&[0x30, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(f.next_pdu(), Err(FrameError::TooLarge { offset: 0, .. })));
        let mut f = Framer::new(1000);
        f.push(&[0x30, 0x80]);
        assert_eq!(f.next_pdu(), Err(FrameError::Indefinite { offset: 0 }));
        let mut f = Framer::new(1000);
        f.push(&[0x30, 0x89]);
        assert!(matches!(f.next_pdu(), Err(FrameError::LengthTooLong { octets: 9, .. })));
    }
}
