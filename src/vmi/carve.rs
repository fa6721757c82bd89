//! Carving memory for what the use case hides on a RAM disk: RFC 5322 messages, crontab lines
//! and media files (MP4, FLV, Matroska, PNG, JPEG...), each with its offset.
//!
//! Memory holds a file contiguously only as far as its pages happen to be: a tmpfs file larger
//! than a page may be scattered over guest RAM, and is then found cut (its size says so). What
//! is carved is bounded: [`MAX_ARTIFACT`] bytes each, [`MAX_ARTIFACTS`] in all.

use serde::Serialize;

use super::disk::Disk;
use super::linux::{mail_headers, media_format};

/// Bytes of one carved artifact at most.
pub const MAX_ARTIFACT: usize = 64 << 20;
/// Artifacts carved at most from one memory image.
pub const MAX_ARTIFACTS: usize = 10_000;
/// Bytes read at a time; consecutive windows overlap by [`OVERLAP`] so an artifact across a
/// window edge is still seen whole (up to that size).
const WINDOW: u64 = 16 << 20;
const OVERLAP: u64 = 1 << 20;

#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    /// `mail`, `crontab` or `media`.
    pub kind: &'static str,
    /// Where it was found: `snapshot 1 "name" block pc.ram`, or `memory dump`.
    pub source: String,
    pub offset: u64,
    pub size: u64,
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
    /// The crontab line, or the mail's From/To/Subject/Message-ID.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

const HEADERS: [&[u8]; 8] =
    [b"From: ", b"Received: ", b"Return-Path: ", b"Message-ID: ", b"Date: ", b"To: ", b"Subject: ", b"MIME-Version: "];
const CRON_SPECIALS: [&[u8]; 9] = [
    b"@reboot ",
    b"@yearly ",
    b"@annually ",
    b"@monthly ",
    b"@weekly ",
    b"@daily ",
    b"@midnight ",
    b"@hourly ",
    b"@every ",
];

/// Carves `ranges` (offset, length) of `d`; offsets in the artifacts are `d`'s.
pub fn carve(d: &mut dyn Disk, ranges: &[(u64, u64)], source: &str, out: &mut Vec<Artifact>) {
    for &(start, len) in ranges {
        let end = start.saturating_add(len).min(d.size());
        let mut at = start;
        // Past this offset, nothing is carved again (the overlap of the previous window).
        let mut covered = start;
        while at < end && out.len() < MAX_ARTIFACTS {
            let n = (end - at).min(WINDOW) as usize;
            let mut buf = vec![0u8; n];
            if d.read_at(at, &mut buf).is_err() {
                return;
            }
            covered = carve_buf(&buf, at, covered, source, out);
            if at + n as u64 >= end {
                break;
            }
            at += n as u64 - OVERLAP.min(n as u64 / 2);
        }
    }
}

/// The bytes anything carved can begin with: the first byte of a mail header of [`HEADERS`],
/// of a crontab line (`@`, a digit, `*`), or of a signature [`media_format`] knows, but for
/// MP4's and MOV's, whose `ftyp` is 4 bytes in ([`may_begin`] looks there). Memory is mostly
/// zeros and other bytes none of these begin with: they are passed over by one table lookup
/// each instead of some twenty comparisons (17 MB/s before, in a debug build).
const BEGINS: [bool; 256] = {
    let mut t = [false; 256];
    let firsts = b"FRMDTS@*0123456789GIO\x1a\x89\xff";
    let mut i = 0;
    while i < firsts.len() {
        t[firsts[i] as usize] = true;
        i += 1;
    }
    t
};

/// Whether something carved may begin at `b[p]`; false only where nothing can.
fn may_begin(b: &[u8], p: usize) -> bool {
    b.get(p).is_some_and(|c| BEGINS[usize::from(*c)]) || b.get(p + 4) == Some(&b'f')
}

/// Carves one window `b` found at `base`; artifacts starting before `covered` were found
/// already. Returns the new `covered`.
fn carve_buf(b: &[u8], base: u64, mut covered: u64, source: &str, out: &mut Vec<Artifact>) -> u64 {
    let mut p = covered.saturating_sub(base) as usize;
    while out.len() < MAX_ARTIFACTS {
        p = (p..b.len()).find(|&q| may_begin(b, q)).unwrap_or(b.len());
        if p >= b.len() {
            covered = base + p as u64;
            break;
        }
        let line_start = p == 0 || matches!(b.get(p - 1), Some(b'\n' | b'\0'));
        let rest = b.get(p..).unwrap_or_default();
        let found = if line_start && HEADERS.iter().any(|h| rest.starts_with(h)) {
            mail(rest)
        } else if line_start
            && (rest.first() == Some(&b'@') || rest.first().is_some_and(|c| c.is_ascii_digit() || *c == b'*'))
        {
            cron(rest)
        } else if media_format(rest).is_some() {
            media(rest)
        } else {
            None
        };
        match found {
            Some((kind, len, format, detail)) => {
                let bytes = rest.get(..len).unwrap_or_default().to_vec();
                out.push(Artifact {
                    kind,
                    source: source.to_string(),
                    offset: base + p as u64,
                    size: len as u64,
                    sha256: sha256_hex(&bytes),
                    format,
                    detail,
                    bytes,
                });
                p += len.max(1);
            }
            None => p += 1,
        }
        covered = base + p as u64;
    }
    covered
}

type Found = (&'static str, usize, Option<&'static str>, serde_json::Value);

/// A message: its header block parses with From and To or Subject; it ends at the first NUL.
fn mail(b: &[u8]) -> Option<Found> {
    let len = b.iter().take(MAX_ARTIFACT).position(|c| *c == 0).unwrap_or(b.len().min(MAX_ARTIFACT));
    let text = b.get(..len)?;
    let h = mail_headers(text)?;
    let pick = |k: &str| h.get(k).cloned().map(serde_json::Value::String).unwrap_or(serde_json::Value::Null);
    let detail = serde_json::json!({
        "from": pick("from"), "to": pick("to"), "subject": pick("subject"), "message_id": pick("message-id"),
    });
    Some(("mail", len, None, detail))
}

/// A crontab line: a special schedule or five time fields, then a printable command.
fn cron(b: &[u8]) -> Option<Found> {
    let len = b.iter().take(1024).position(|c| *c == b'\n' || *c == 0)?;
    let line = std::str::from_utf8(b.get(..len)?).ok()?;
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return None;
    }
    let ok = if CRON_SPECIALS.iter().any(|s| line.as_bytes().starts_with(s)) {
        line.split_whitespace().nth(1).is_some()
    } else {
        let f: Vec<&str> = line.split_whitespace().collect();
        let time = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || "*/,-".contains(c));
        f.len() >= 6
            && f.iter().take(5).all(|s| time(s))
            && f.iter().take(5).any(|s| s.contains('*') || s.contains('/'))
    };
    ok.then(|| ("crontab", len, None, serde_json::json!({ "line": line })))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).and_then(|s| s.try_into().ok()).map(u32::from_be_bytes)
}

/// A media file's length, from its own structure (boxes, chunks, tags, markers).
fn media(b: &[u8]) -> Option<Found> {
    let format = media_format(b)?;
    let cap = b.len().min(MAX_ARTIFACT);
    let len = match format {
        "png" => {
            let mut p = 8usize;
            loop {
                let n = be32(b, p)? as usize;
                let t = b.get(p + 4..p + 8)?;
                p = p.checked_add(12)?.checked_add(n)?;
                if p > cap {
                    return None;
                }
                if t == b"IEND" {
                    break p;
                }
            }
        }
        "jpeg" => 2 + b.get(2..cap)?.windows(2).position(|w| w == [0xff, 0xd9])? + 2,
        "mp4" | "mov" => {
            // Top-level boxes while their types are printable and their sizes fit.
            let mut p = 0usize;
            while let (Some(n), Some(t)) = (be32(b, p), b.get(p + 4..p + 8)) {
                if n < 8 || !t.iter().all(|c| c.is_ascii_alphanumeric() || *c == b' ') || p + n as usize > cap {
                    break;
                }
                p += n as usize;
            }
            if p == 0 {
                return None;
            }
            p
        }
        "flv" => {
            // Header, then (previous tag size, tag) pairs of audio, video and script tags.
            let mut p = be32(b, 5)? as usize;
            loop {
                let (Some(kind), Some(size)) = (b.get(p + 4), b.get(p + 5..p + 8)) else { break p + 4 };
                let size = (usize::from(size[0]) << 16) | (usize::from(size[1]) << 8) | usize::from(size[2]);
                if !matches!(kind & 0x1f, 8 | 9 | 18) || p + 4 + 11 + size > cap {
                    break p + 4;
                }
                p += 4 + 11 + size;
            }
        }
        _ => return None,
    };
    let len = len.min(cap);
    (len > 0).then_some(("media", len, Some(format), serde_json::Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each signature `media_format` knows, each mail header and each crontab beginning passes
    /// `may_begin` (a new signature needs its first byte in `BEGINS`).
    #[test]
    fn every_beginning_the_carver_looks_for_passes_the_prefilter() {
        let mut ts = vec![0u8; 400];
        for at in [0, 188, 376] {
            ts[at] = 0x47;
        }
        let signatures: [&[u8]; 14] = [
            b"\0\0\0\x18ftypisom",
            b"\0\0\0\x14ftypqt  ",
            b"FLV\x01",
            &[0x1a, 0x45, 0xdf, 0xa3],
            b"\x89PNG\r\n\x1a\n",
            &[0xff, 0xd8, 0xff],
            b"GIF87a",
            b"GIF89a",
            b"RIFF\0\0\0\0WAVE",
            b"RIFF\0\0\0\0AVI ",
            b"RIFF\0\0\0\0WEBP",
            b"OggS",
            b"ID3",
            &ts,
        ];
        for sig in signatures {
            let mut b = sig.to_vec();
            b.resize(400, 0);
            assert!(media_format(&b).is_some(), "{sig:x?}");
            assert!(may_begin(&b, 0), "{sig:x?}");
        }
        for h in HEADERS {
            assert!(may_begin(h, 0), "{h:?}");
        }
        for c in b"@*0123456789" {
            assert!(may_begin(&[*c, b' '], 0));
        }
        assert!(!may_begin(&[0; 8], 0));
    }

    /// What lies after long runs of zeros (which are passed over) is carved at its offset.
    #[test]
    fn what_follows_zeros_is_found_at_its_offset() {
        let mut b = vec![0u8; 3 << 20];
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\0IEND\xae\x42\x60\x82";
        b[1 << 20..(1 << 20) + png.len()].copy_from_slice(png);
        let cron = b"*/5 * * * * /usr/local/bin/beacon\n";
        let at = (2 << 20) + 17;
        b[at..at + cron.len()].copy_from_slice(cron);
        let mut out = Vec::new();
        let covered = carve_buf(&b, 4096, 4096, "memory dump", &mut out);
        assert_eq!(covered, 4096 + b.len() as u64);
        let found: Vec<(&str, u64, u64)> = out.iter().map(|a| (a.kind, a.offset, a.size)).collect();
        assert_eq!(
            found,
            [("media", 4096 + (1 << 20), png.len() as u64), ("crontab", 4096 + at as u64, cron.len() as u64 - 1)]
        );
    }
}
