//! What an object's bytes are, from their content (never their name).
//!
//! The [`Sniffer`] rides along with an object as its bytes stream through the file layer and keeps
//! a bounded sample: the first [`PREFIX_LEN`] bytes, the last [`TAIL_LEN`] bytes, a streaming tar
//! walker (for tar/OVA listings) and a few small windows at offsets learnt from earlier bytes
//! (VHDX keeps its size 1 MiB or more into the file). [`detect`] turns such a sample into a
//! [`FormatVerdict`]: the format, the evidence, and the header facts.
//!
//! No-panic contract: every parser here reads object bytes only through checked accessors
//! (`slice.get`, checked arithmetic on offsets and sizes taken from the bytes); any byte string
//! yields a verdict, `data` when nothing is recognised. Output is bounded: listings are capped
//! (partitions, tar entries, extents) and strings taken from the bytes are truncated.
//!
//! Partition tables are parsed here from the prefix rather than with `gpt`/`mbrman`: those crates
//! want a `Read + Seek` device, and the few fields needed are simpler to read with checked
//! accessors than to fake a device over a prefix that may have holes.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::media::sdp;
use crate::record::reserve_head;
pub use crate::record::FormatVerdict;

/// Bytes kept from the start of each object: enough for GPT entries (LBA 2..33) and the ISO 9660
/// volume descriptors (from 32 KiB).
pub const PREFIX_LEN: usize = 64 * 1024;
/// Bytes kept from the end of each object: a VHD footer.
pub const TAIL_LEN: usize = 512;
/// Tar members listed at most.
pub const MAX_TAR_ENTRIES: usize = 1000;
/// Bytes of member names kept at most across a tar listing.
pub const MAX_TAR_NAME_BYTES: usize = 64 * 1024;
/// One member name (after GNU long-name / pax `path`) is cut to this many bytes.
pub const MAX_NAME: usize = 1024;
/// Follow-up windows per object, and bytes per window.
pub const MAX_WINDOWS: usize = 8;
pub const WINDOW_LEN: usize = 4096;
/// Upper bound of what a [`Sniffer`] holds, whatever the bytes: prefix, tail, tar header and
/// long-name buffers, the tar listing (names plus per-entry bookkeeping), the windows.
pub const MAX_RETAINED: usize = PREFIX_LEN
    + TAIL_LEN
    + 512
    + MAX_NAME
    + MAX_TAR_NAME_BYTES
    + MAX_TAR_ENTRIES * std::mem::size_of::<TarEntry>()
    + MAX_WINDOWS * WINDOW_LEN;

const MAX_PARTITIONS: usize = 256;
const MAX_STRING: usize = 512;

// ---------------------------------------------------------------------------------------------
// Checked readers.

fn get(b: &[u8], at: usize, n: usize) -> Option<&[u8]> {
    b.get(at..at.checked_add(n)?)
}
fn arr<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    get(b, at, N)?.try_into().ok()
}
fn u8_at(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}
fn be16(b: &[u8], at: usize) -> Option<u16> {
    arr(b, at).map(u16::from_be_bytes)
}
fn be32(b: &[u8], at: usize) -> Option<u32> {
    arr(b, at).map(u32::from_be_bytes)
}
fn be64(b: &[u8], at: usize) -> Option<u64> {
    arr(b, at).map(u64::from_be_bytes)
}
fn le16(b: &[u8], at: usize) -> Option<u16> {
    arr(b, at).map(u16::from_le_bytes)
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    arr(b, at).map(u32::from_le_bytes)
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    arr(b, at).map(u64::from_le_bytes)
}
fn has(b: &[u8], at: usize, magic: &[u8]) -> bool {
    get(b, at, magic.len()) == Some(magic)
}
fn usize_of(v: u64) -> Option<usize> {
    usize::try_from(v).ok()
}

/// Text from a fixed-size field: up to the first NUL, trailing spaces dropped, cut to a bound.
fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let b = &b[..end.min(MAX_STRING)];
    String::from_utf8_lossy(b).trim_end().to_string()
}
fn utf16(b: &[u8], big_endian: bool) -> String {
    let units = b.chunks_exact(2).map(|c| {
        if big_endian {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_le_bytes([c[0], c[1]])
        }
    });
    let s: String = char::decode_utf16(units.take_while(|&u| u != 0).take(MAX_STRING))
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    s.trim_end().to_string()
}
/// A GUID in the mixed-endian layout of GPT, VHDX and VDI (first three fields little-endian).
fn guid_mixed(b: &[u8; 16]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}
/// A GUID stored byte for byte in RFC 4122 order (VHD).
fn guid_be(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut c = flate2::Crc::new();
    for p in parts {
        c.update(p);
    }
    c.sum()
}
// ---------------------------------------------------------------------------------------------
// The sample of an object.

/// What [`detect`] looks at: the bounded sample of one object.
#[derive(Clone, Copy, Debug)]
pub struct Sample<'a> {
    /// The first bytes (up to [`PREFIX_LEN`]); holes read as zeros.
    pub prefix: &'a [u8],
    /// The last bytes (up to [`TAIL_LEN`]); they end at `size`.
    pub tail: &'a [u8],
    /// The object's size.
    pub size: u64,
    /// Bytes of the prefix that were holes (zero-filled).
    pub prefix_missing: u64,
    /// Whether a hole reaches into the tail.
    pub tail_missing: bool,
    /// The streaming tar walker's result, if one ran.
    pub tar: Option<&'a TarWalker>,
    /// Facts gathered by follow-up windows (VHDX metadata).
    pub vhdx: Option<&'a VhdxFacts>,
}

impl<'a> Sample<'a> {
    /// A whole object held in memory (tests, small objects).
    pub fn whole(bytes: &'a [u8]) -> Sample<'a> {
        Sample {
            prefix: &bytes[..bytes.len().min(PREFIX_LEN)],
            tail: &bytes[bytes.len().saturating_sub(TAIL_LEN)..],
            size: bytes.len() as u64,
            prefix_missing: 0,
            tail_missing: false,
            tar: None,
            vhdx: None,
        }
    }
}

/// Keeps the bounded sample of one object as its bytes stream by, in offset order.
#[derive(Debug, Default)]
pub struct Sniffer {
    prefix: Vec<u8>,
    tail: Vec<u8>,
    pos: u64,
    prefix_missing: u64,
    /// End of the last hole: decides whether the tail has missing bytes.
    last_hole_end: u64,
    tar: TarWalker,
    windows: Vec<Window>,
    windows_made: usize,
    armed: bool,
    vhdx: Option<VhdxFacts>,
}

static ZEROS: [u8; 4096] = [0; 4096];

impl Sniffer {
    pub fn new() -> Sniffer {
        Sniffer::default()
    }

    /// Bytes at `offset`. Offsets are expected in order; a jump forward is a hole, bytes below
    /// the current position were already seen and are ignored.
    pub fn data(&mut self, offset: u64, bytes: &[u8]) {
        if offset > self.pos {
            self.gap(self.pos, offset - self.pos);
        }
        let skip = usize_of(self.pos - offset.min(self.pos)).unwrap_or(usize::MAX).min(bytes.len());
        let fresh = &bytes[skip..];
        if fresh.is_empty() {
            return;
        }
        self.take(fresh);
        self.tar.data(self.pos, fresh);
        self.feed_windows(fresh);
        self.pos = self.pos.saturating_add(fresh.len() as u64);
        self.arm();
    }

    /// `len` bytes at `offset` are missing; they count as zeros, as outputs store them.
    pub fn gap(&mut self, offset: u64, len: u64) {
        let end = offset.saturating_add(len);
        if end <= self.pos {
            return;
        }
        let at = self.pos.max(offset);
        let len = end - at;
        if at > self.pos {
            // A hole starting past the position: the bytes between are missing as well.
            return self.gap(self.pos, end - self.pos);
        }
        let room = PREFIX_LEN.saturating_sub(self.prefix.len());
        let in_prefix = usize_of(len).unwrap_or(usize::MAX).min(room);
        self.prefix.resize(self.prefix.len() + in_prefix, 0);
        self.prefix_missing += in_prefix as u64;
        let in_tail = usize_of(len).unwrap_or(usize::MAX).min(TAIL_LEN);
        self.push_tail(&ZEROS[..in_tail]);
        self.tar.gap(at, len);
        for w in &mut self.windows {
            if w.done.is_none() && at < w.end() && end > w.next() {
                w.done = Some(false);
            }
        }
        self.last_hole_end = end;
        self.pos = end;
        self.arm();
    }

    fn take(&mut self, bytes: &[u8]) {
        let room = PREFIX_LEN.saturating_sub(self.prefix.len());
        if room > 0 {
            let n = room.min(bytes.len());
            reserve_head(&mut self.prefix, n, PREFIX_LEN);
            self.prefix.extend_from_slice(&bytes[..n]);
        }
        self.push_tail(bytes);
    }

    fn push_tail(&mut self, bytes: &[u8]) {
        if bytes.len() >= TAIL_LEN {
            self.tail.clear();
            self.tail.extend_from_slice(&bytes[bytes.len() - TAIL_LEN..]);
            return;
        }
        let over = (self.tail.len() + bytes.len()).saturating_sub(TAIL_LEN);
        self.tail.drain(..over);
        self.tail.extend_from_slice(bytes);
    }

    /// Starts follow-ups once the prefix shows a format that keeps facts far into the file.
    fn arm(&mut self) {
        if self.armed || self.prefix.len() < 8 {
            return;
        }
        self.armed = true;
        if has(&self.prefix, 0, b"vhdxfile") {
            self.vhdx = Some(VhdxFacts::default());
            self.window(VHDX_REGION_TABLE, 4096, Purpose::Regions);
        }
    }

    fn window(&mut self, at: u64, len: usize, purpose: Purpose) {
        if self.windows_made >= MAX_WINDOWS {
            if let Some(v) = &mut self.vhdx {
                v.note("too many follow-up reads");
            }
            return;
        }
        self.windows_made += 1;
        let len = len.min(WINDOW_LEN);
        let done = if at < self.pos { Some(false) } else { None };
        self.windows.push(Window { at, len, buf: Vec::new(), purpose, done });
    }

    fn feed_windows(&mut self, bytes: &[u8]) {
        // A follow-up may open a window inside this very chunk: feed again until none is added.
        loop {
            let made = self.windows_made;
            self.feed_windows_once(bytes);
            if self.windows_made == made {
                return;
            }
        }
    }

    fn feed_windows_once(&mut self, bytes: &[u8]) {
        let start = self.pos;
        let end = start.saturating_add(bytes.len() as u64);
        let mut finished = Vec::new();
        for (i, w) in self.windows.iter_mut().enumerate() {
            if w.done.is_some() || w.next() >= end || w.end() <= start {
                continue;
            }
            if w.next() < start {
                w.done = Some(false);
                continue;
            }
            let from = usize_of(w.next() - start).unwrap_or(usize::MAX).min(bytes.len());
            let take = (w.len - w.buf.len()).min(bytes.len() - from);
            w.buf.extend_from_slice(&bytes[from..from + take]);
            if w.buf.len() == w.len {
                w.done = Some(true);
                finished.push(i);
            }
        }
        for i in finished {
            let (purpose, buf) = match self.windows.get_mut(i) {
                Some(w) => (w.purpose, std::mem::take(&mut w.buf)),
                None => continue,
            };
            self.follow_up(purpose, &buf);
        }
    }

    fn follow_up(&mut self, purpose: Purpose, buf: &[u8]) {
        let Some(v) = self.vhdx.as_mut() else { return };
        let mut next = Vec::new();
        vhdx_follow_up(v, purpose, buf, &mut next);
        for (at, len, p) in next {
            self.window(at, len, p);
        }
    }

    /// Bytes held for this object (bounded by [`MAX_RETAINED`]).
    pub fn retained(&self) -> usize {
        self.prefix.len()
            + self.tail.len()
            + self.tar.retained()
            + self.windows.iter().map(|w| w.buf.len()).sum::<usize>()
    }

    /// The sample as it stands.
    pub fn sample(&self) -> Sample<'_> {
        let tail_from = self.pos.saturating_sub(self.tail.len() as u64);
        Sample {
            prefix: &self.prefix,
            tail: &self.tail,
            size: self.pos,
            prefix_missing: self.prefix_missing,
            tail_missing: self.last_hole_end > tail_from,
            tar: Some(&self.tar),
            vhdx: self.vhdx.as_ref(),
        }
    }

    /// The verdict on what was seen.
    pub fn verdict(&self) -> FormatVerdict {
        detect(&self.sample())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Purpose {
    Regions,
    MetaTable { region: u64 },
    Item(VhdxItem),
}

#[derive(Debug)]
struct Window {
    at: u64,
    len: usize,
    buf: Vec<u8>,
    purpose: Purpose,
    /// `Some(true)` filled, `Some(false)` missed (passed already or hit by a hole).
    done: Option<bool>,
}

impl Window {
    fn next(&self) -> u64 {
        self.at.saturating_add(self.buf.len() as u64)
    }
    fn end(&self) -> u64 {
        self.at.saturating_add(self.len as u64)
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming tar walker.

/// One tar member as listed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TarEntry {
    pub name: String,
    pub size: u64,
    /// The typeflag as a character (`0` file, `5` directory, `2` symlink...).
    #[serde(rename = "type")]
    pub kind: char,
    /// Offset of the member's header in the archive.
    pub offset: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum TarState {
    /// Reading the header at `next`.
    #[default]
    Header,
    /// Reading a GNU long name or pax header's data.
    Capture,
    /// Two zero blocks seen.
    End,
    /// The first block is not a tar header.
    NotTar,
    /// Lost sync (bad checksum, hole on a header, size overflow) or listing cap reached.
    Stopped,
}

/// Follows tar headers as the bytes stream by: each header says how far the next one is.
#[derive(Debug, Default)]
pub struct TarWalker {
    state: TarState,
    /// Offset of the header (or captured data) being read.
    next: u64,
    hdr: Vec<u8>,
    /// Captured long-name / pax data, and how much of it to keep / where the next header is.
    capture: Vec<u8>,
    capture_want: usize,
    capture_kind: u8,
    after_capture: u64,
    long_name: Option<String>,
    pax_size: Option<u64>,
    zero_blocks: u8,
    entries: Vec<TarEntry>,
    name_bytes: usize,
    truncated: bool,
    stop_reason: Option<String>,
    first_magic: Option<&'static str>,
}

impl TarWalker {
    fn retained(&self) -> usize {
        self.hdr.capacity()
            + self.capture.capacity()
            + self.name_bytes
            + self.entries.capacity() * std::mem::size_of::<TarEntry>()
    }

    /// Whether the walker recognised the object as a tar archive.
    pub fn is_tar(&self) -> bool {
        !matches!(self.state, TarState::NotTar) && (!self.entries.is_empty() || self.state == TarState::End)
    }

    pub fn entries(&self) -> &[TarEntry] {
        &self.entries
    }

    fn stop(&mut self, why: String) {
        self.state = TarState::Stopped;
        self.stop_reason = Some(why);
    }

    fn gap(&mut self, at: u64, len: u64) {
        let end = at.saturating_add(len);
        match self.state {
            TarState::Header => {
                let want = self.next.saturating_add(self.hdr.len() as u64);
                if at < self.next.saturating_add(512) && end > want {
                    if self.next == 0 {
                        self.state = TarState::NotTar;
                    } else {
                        self.stop(format!("hole over the header at {}", self.next));
                    }
                }
            }
            TarState::Capture => {
                let want = self.next.saturating_add(self.capture.len() as u64);
                if at < self.next.saturating_add(self.capture_want as u64) && end > want {
                    self.stop(format!("hole over the long name at {}", self.next));
                }
            }
            _ => {}
        }
    }

    fn data(&mut self, mut pos: u64, mut bytes: &[u8]) {
        loop {
            let (base, have, want) = match self.state {
                TarState::Header => (self.next, self.hdr.len(), 512),
                TarState::Capture => (self.next, self.capture.len(), self.capture_want),
                _ => return,
            };
            let need = base.saturating_add(have as u64);
            let end = pos.saturating_add(bytes.len() as u64);
            if end <= need {
                return;
            }
            if pos < need {
                let skip = usize_of(need - pos).unwrap_or(usize::MAX).min(bytes.len());
                bytes = &bytes[skip..];
                pos = need;
            }
            if pos > need {
                // Cannot happen with in-order feeding; never trust it.
                return self.stop(format!("bytes missing at {need}"));
            }
            let take = (want - have).min(bytes.len());
            if self.state == TarState::Header {
                self.hdr.extend_from_slice(&bytes[..take]);
            } else {
                self.capture.extend_from_slice(&bytes[..take]);
            }
            bytes = &bytes[take..];
            pos += take as u64;
            if have + take == want {
                if self.state == TarState::Header {
                    self.header();
                } else {
                    self.captured();
                }
            }
        }
    }

    fn header(&mut self) {
        let at = self.next;
        let h: [u8; 512] = match self.hdr.as_slice().try_into() {
            Ok(a) => a,
            Err(_) => return self.stop(format!("short header at {at}")),
        };
        self.hdr.clear();
        if h.iter().all(|&b| b == 0) {
            if at == 0 {
                self.state = TarState::NotTar;
                return;
            }
            self.zero_blocks += 1;
            self.next = at + 512;
            if self.zero_blocks >= 2 {
                self.state = TarState::End;
            }
            return;
        }
        self.zero_blocks = 0;
        let stored = octal(&h[148..156]);
        let unsigned: u64 =
            h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) }).sum();
        // Some old tars summed signed bytes; POSIX allows readers to accept both.
        let signed: i64 =
            h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { i64::from(b as i8) }).sum();
        if stored.is_none() || (stored != Some(unsigned) && stored.map(|v| v as i64) != Some(signed)) {
            if at == 0 {
                self.state = TarState::NotTar;
            } else {
                self.stop(format!("bad header checksum at {at}"));
            }
            return;
        }
        if at == 0 {
            self.first_magic = Some(tar_magic(&h));
        }
        let typeflag = h[156];
        let meta = matches!(typeflag, b'L' | b'K' | b'x' | b'g');
        let field_size = tar_size(&h[124..136]);
        let size = if meta { field_size } else { self.pax_size.take().or(field_size) };
        let Some(size) = size else { return self.stop(format!("bad size field at {at}")) };
        let after = size.checked_add(511).map(|v| v & !511).and_then(|d| at.checked_add(512)?.checked_add(d));
        let Some(after) = after else { return self.stop(format!("size {size} at {at} overflows")) };
        if meta {
            self.capture_kind = typeflag;
            self.capture_want = usize_of(size).unwrap_or(usize::MAX).min(MAX_CAPTURE);
            self.after_capture = after;
            self.next = at + 512;
            self.state = TarState::Capture;
            if self.capture_want == 0 {
                self.captured();
            }
            return;
        }
        let name = match self.long_name.take() {
            Some(n) => n,
            None => {
                let name = text(&h[0..100]);
                let prefix =
                    if self.first_magic.is_some_and(|m| m == "ustar") { text(&h[345..500]) } else { String::new() };
                if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                }
            }
        };
        let name = cut(name, MAX_NAME);
        if self.entries.len() >= MAX_TAR_ENTRIES || self.name_bytes + name.len() > MAX_TAR_NAME_BYTES {
            self.truncated = true;
            return self.stop(format!("listing capped at {} entries", self.entries.len()));
        }
        self.name_bytes += name.len();
        let kind = if typeflag == 0 { '0' } else { char::from(typeflag) };
        self.entries.push(TarEntry { name, size, kind, offset: at });
        self.next = after;
    }

    fn captured(&mut self) {
        let data = std::mem::take(&mut self.capture);
        match self.capture_kind {
            b'L' => self.long_name = Some(cut(text(&data), MAX_NAME)),
            b'x' => {
                for (k, v) in pax_records(&data) {
                    match k {
                        b"path" => self.long_name = Some(cut(String::from_utf8_lossy(v).into_owned(), MAX_NAME)),
                        b"size" => self.pax_size = std::str::from_utf8(v).ok().and_then(|t| t.parse().ok()),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        self.capture = data;
        self.capture.clear();
        self.next = self.after_capture;
        self.state = TarState::Header;
    }

    fn details(&self) -> Value {
        let mut d = Map::new();
        d.insert("header".into(), json!(self.first_magic.unwrap_or("v7")));
        d.insert("entries".into(), json!(self.entries));
        d.insert("end_of_archive".into(), json!(self.state == TarState::End));
        if self.truncated {
            d.insert("truncated".into(), json!(true));
        }
        if let Some(r) = &self.stop_reason {
            d.insert("stopped".into(), json!(r));
        }
        Value::Object(d)
    }
}

// ---------------------------------------------------------------------------------------------
// VHDX follow-ups.

const VHDX_REGION_TABLE: u64 = 192 * 1024;
const VHDX_METADATA_REGION: &str = "8B7CA206-4790-4B9A-B8FE-575F050F886E";

#[derive(Clone, Copy, Debug, PartialEq)]
enum VhdxItem {
    FileParameters,
    VirtualDiskSize,
    LogicalSectorSize,
    PhysicalSectorSize,
}

/// What the VHDX region table and metadata said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VhdxFacts {
    pub metadata_offset: Option<u64>,
    pub block_size: Option<u32>,
    pub has_parent: Option<bool>,
    pub virtual_size: Option<u64>,
    pub logical_sector_size: Option<u32>,
    pub physical_sector_size: Option<u32>,
    pub notes: Vec<String>,
}

impl VhdxFacts {
    fn note(&mut self, s: &str) {
        if self.notes.len() < 8 {
            self.notes.push(s.to_string());
        }
    }
}

fn vhdx_follow_up(v: &mut VhdxFacts, purpose: Purpose, buf: &[u8], next: &mut Vec<(u64, usize, Purpose)>) {
    match purpose {
        Purpose::Regions => {
            if !has(buf, 0, b"regi") {
                return v.note("no region table signature at 192 KiB");
            }
            let count = le32(buf, 8).unwrap_or(0).min(2047) as usize;
            for i in 0..count {
                let Some(e) = i.checked_mul(32).and_then(|o| o.checked_add(16)).and_then(|o| get(buf, o, 32)) else {
                    break;
                };
                let (Some(g), Some(off)) = (arr::<16>(e, 0), le64(e, 16)) else { break };
                if guid_mixed(&g) == VHDX_METADATA_REGION {
                    v.metadata_offset = Some(off);
                    next.push((off, 4096, Purpose::MetaTable { region: off }));
                }
            }
            if v.metadata_offset.is_none() {
                v.note("no metadata region in the region table");
            }
        }
        Purpose::MetaTable { region } => {
            if !has(buf, 0, b"metadata") {
                return v.note("no metadata table signature");
            }
            let count = usize::from(le16(buf, 10).unwrap_or(0)).min(2047);
            for i in 0..count {
                let Some(e) = i.checked_mul(32).and_then(|o| o.checked_add(32)).and_then(|o| get(buf, o, 32)) else {
                    break;
                };
                let (Some(g), Some(off), Some(len)) = (arr::<16>(e, 0), le32(e, 16), le32(e, 20)) else { break };
                let item = match guid_mixed(&g).as_str() {
                    "CAA16737-FA36-4D43-B3B6-33F0AA44E76B" => VhdxItem::FileParameters,
                    "2FA54224-CD1B-4876-B211-5DBED83BF4B8" => VhdxItem::VirtualDiskSize,
                    "8141BF1D-A96F-4709-BA47-F233A8FAAB5F" => VhdxItem::LogicalSectorSize,
                    "CDA348C7-445D-4471-9CC9-E9885251C556" => VhdxItem::PhysicalSectorSize,
                    _ => continue,
                };
                if let Some(at) = region.checked_add(u64::from(off)) {
                    next.push((at, (len as usize).min(8), Purpose::Item(item)));
                }
            }
        }
        Purpose::Item(item) => match item {
            VhdxItem::FileParameters => {
                v.block_size = le32(buf, 0);
                v.has_parent = le32(buf, 4).map(|f| f & 2 != 0);
            }
            VhdxItem::VirtualDiskSize => v.virtual_size = le64(buf, 0),
            VhdxItem::LogicalSectorSize => v.logical_sector_size = le32(buf, 0),
            VhdxItem::PhysicalSectorSize => v.physical_sector_size = le32(buf, 0),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Tar field helpers.

const MAX_CAPTURE: usize = 4096;

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// An octal field (digits, then NUL or space); leading spaces allowed.
fn octal(b: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    let mut digits = 0;
    for &c in b {
        match c {
            b' ' if digits == 0 => continue,
            b'0'..=b'7' => {
                v = v.checked_mul(8)?.checked_add(u64::from(c - b'0'))?;
                digits += 1;
            }
            0 | b' ' => break,
            _ => return None,
        }
    }
    (digits > 0).then_some(v)
}

/// The size field: octal, or GNU base-256 (high bit set) for members of 8 GiB and more.
fn tar_size(b: &[u8]) -> Option<u64> {
    let (&first, rest) = b.split_first()?;
    if first & 0x80 == 0 {
        return octal(b);
    }
    if first & 0x40 != 0 {
        return None; // negative
    }
    let mut v = u64::from(first & 0x3f);
    for &c in rest {
        v = v.checked_mul(256)?.checked_add(u64::from(c))?;
    }
    Some(v)
}

fn tar_magic(h: &[u8]) -> &'static str {
    if has(h, 257, b"ustar\0") {
        "ustar"
    } else if has(h, 257, b"ustar  \0") {
        "gnu"
    } else {
        "v7"
    }
}

/// pax extended header records: `LEN key=value\n`, LEN counting the whole record.
fn pax_records(data: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && out.len() < 64 {
        let Some(sp) = rest.iter().position(|&c| c == b' ') else { break };
        let Some(len) = std::str::from_utf8(&rest[..sp]).ok().and_then(|t| t.parse::<usize>().ok()) else { break };
        let Some(rec) = rest.get(..len) else { break };
        let body = rec.get(sp + 1..).unwrap_or_default();
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        if let Some(eq) = body.iter().position(|&c| c == b'=') {
            out.push((&body[..eq], &body[eq + 1..]));
        }
        if len == 0 {
            break;
        }
        rest = &rest[len..];
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Detection.

fn verdict(format: &str, reason: String, details: Value) -> Option<FormatVerdict> {
    Some(FormatVerdict { format: format.into(), reason, details })
}

/// The verdict on a sample. Detectors run from the most specific evidence (long magics at fixed
/// offsets, checksummed headers) to the weakest (short compression magics, tar's checksum).
pub fn detect(s: &Sample<'_>) -> FormatVerdict {
    if s.size == 0 {
        return FormatVerdict { format: "empty".into(), reason: "no bytes".into(), details: Value::Null };
    }
    let detectors: [fn(&Sample<'_>) -> Option<FormatVerdict>; 17] = [
        qcow,
        vmdk_sparse,
        vmdk_text,
        vhdx,
        vdi,
        vhd,
        iso9660,
        gpt,
        mbr,
        gzip,
        xz,
        zstd,
        bzip2,
        zip_or_tar,
        picture,
        media,
        session_description,
    ];
    let mut v = detectors.iter().find_map(|d| d(s)).unwrap_or_else(|| FormatVerdict {
        format: "data".into(),
        reason: format!("no known signature in the first {} or the last {} bytes", s.prefix.len(), s.tail.len()),
        details: Value::Null,
    });
    if s.prefix_missing > 0 {
        v.reason.push_str(&format!(
            "; {} of the first {} bytes were missing (read as zeros)",
            s.prefix_missing,
            s.prefix.len()
        ));
    }
    if s.tail_missing {
        v.reason.push_str("; bytes missing in the last 512 (read as zeros)");
    }
    v
}

// --- session descriptions (WHIP/WHEP offers and answers, SDP files uploaded) ------------------

/// An SDP (RFC 8866) held whole in the prefix: it must begin with its `v=0` line and carry the
/// mandatory `o=` line, and the whole object must read as one. What an analyst looks for in it
/// is given: who made the offer (origin), where the media go (connections, ports) and in what
/// formats, so that a media session's object can be matched with the streams it set up without
/// opening it.
fn session_description(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    if !(has(p, 0, b"v=0\r\n") || has(p, 0, b"v=0\n")) || s.prefix_missing > 0 {
        return None;
    }
    let whole = p.get(..usize_of(s.size)?)?;
    let session = sdp::parse_bytes(whole).ok()?;
    let origin = session.origin.as_ref()?;
    let connection = |c: &Option<sdp::Connection>| c.as_ref().map(|c| bounded(&c.address));
    let media: Vec<Value> = session
        .media
        .iter()
        .map(|m| {
            let rtpmap: Vec<String> = m
                .payload_formats
                .iter()
                .filter_map(|f| {
                    let name = f.encoding_name.as_deref()?;
                    let rate = f.clock_rate.map(|r| format!("/{r}")).unwrap_or_default();
                    let channels = f.channels.map(|c| format!("/{c}")).unwrap_or_default();
                    Some(bounded(&format!("{} {name}{rate}{channels}", f.payload_type)))
                })
                .collect();
            json!({
                "media": bounded(&m.media),
                "port": m.port,
                "proto": bounded(&m.proto),
                "formats": m.formats.iter().map(|f| bounded(f)).collect::<Vec<_>>(),
                "rtpmap": rtpmap,
                "connection": connection(&m.connection),
            })
        })
        .collect();
    let summary: Vec<String> = session.media.iter().map(|m| format!("{} {}", m.media, m.port)).collect();
    verdict(
        "sdp",
        format!("SDP v=0 and o= lines, {} media ({})", media.len(), bounded(&summary.join(", "))),
        json!({
            "origin": { "username": bounded(&origin.username), "address": bounded(&origin.address) },
            "session_name": session.name.as_deref().map(bounded),
            "connection": connection(&session.connection),
            "media": media,
        }),
    )
}

/// A string of a session description, cut to [`MAX_STRING`] bytes as the others taken from the
/// bytes are.
fn bounded(s: &str) -> String {
    cut(s.to_string(), MAX_STRING)
}

// --- pictures (screenshots uploaded, frames found in images) ------------------------------------

/// PNG, JPEG, GIF and WebP by their signatures, with the size in pixels where the header says
/// it (an analyst's report shows pictures as thumbnails; the size tells a tracking pixel from a
/// photograph).
fn picture(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    let sized = |w: Option<u32>, h: Option<u32>| json!({ "width": w, "height": h });
    if has(p, 0, b"\x89PNG\r\n\x1a\n") {
        // The first chunk is IHDR: width and height, big-endian, at 16 and 20.
        let (w, h) = if has(p, 12, b"IHDR") { (be32(p, 16), be32(p, 20)) } else { (None, None) };
        return verdict("png", "PNG signature at 0".into(), sized(w, h));
    }
    if has(p, 0, b"GIF87a") || has(p, 0, b"GIF89a") {
        let (w, h) = (le16(p, 6).map(u32::from), le16(p, 8).map(u32::from));
        return verdict("gif", format!("{} signature at 0", text(get(p, 0, 6)?)), sized(w, h));
    }
    if has(p, 0, &[0xff, 0xd8, 0xff]) {
        let (w, h) = jpeg_size(p).map_or((None, None), |(w, h)| (Some(w), Some(h)));
        return verdict("jpeg", "JPEG start of image at 0".into(), sized(w, h));
    }
    if has(p, 0, b"RIFF") && has(p, 8, b"WEBP") {
        return verdict("webp", "RIFF WEBP header at 0".into(), Value::Null);
    }
    None
}

/// A JPEG's size from its start-of-frame segment, walking the segments in the prefix.
fn jpeg_size(p: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    loop {
        if u8_at(p, at)? != 0xff {
            return None;
        }
        let marker = u8_at(p, at + 1)?;
        // SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC): height, then width, after precision.
        if (0xc0..=0xcf).contains(&marker) && ![0xc4, 0xc8, 0xcc].contains(&marker) {
            return Some((u32::from(be16(p, at + 7)?), u32::from(be16(p, at + 5)?)));
        }
        at += 2 + usize::from(be16(p, at + 2)?);
    }
}

// --- media containers (what the stream analyzers write, and clips uploaded) ------------------

/// FLV, Matroska/WebM, ISO BMFF (MP4, MOV), WAV, MPEG-TS and AAC in ADTS: the last detector, as
/// a transport stream's and ADTS's evidence (sync bytes) is the weakest.
fn media(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    if has(p, 0, b"FLV\x01") && be32(p, 5) == Some(9) {
        let flags = u8_at(p, 4)?;
        let d = json!({ "audio": flags & 4 != 0, "video": flags & 1 != 0 });
        return verdict("flv", "FLV version 1 header at 0".into(), d);
    }
    if has(p, 0, &[0x1a, 0x45, 0xdf, 0xa3]) {
        // The EBML header's DocType (element 0x4282) says Matroska or WebM.
        let doctype = p.get(..64.min(p.len())).and_then(|h| {
            let at = h.windows(2).position(|w| w == [0x42, 0x82])?;
            let len = usize::from(u8_at(h, at + 2)? & 0x7f);
            get(h, at + 3, len).map(text)
        });
        let format = if doctype.as_deref() == Some("webm") { "webm" } else { "matroska" };
        return verdict(format, format!("EBML header at 0, DocType {doctype:?}"), json!({ "doctype": doctype }));
    }
    if has(p, 4, b"ftyp") {
        let brand = get(p, 8, 4).map(text).unwrap_or_default();
        let format = if brand == "qt  " { "mov" } else { "mp4" };
        return verdict(format, format!("ftyp box at 0, major brand {brand:?}"), json!({ "major_brand": brand }));
    }
    if has(p, 0, b"RIFF") && has(p, 8, b"WAVE") {
        return verdict(
            "wav",
            "RIFF WAVE header at 0".into(),
            json!({ "format_tag": le16(p, 20), "channels": le16(p, 22), "sample_rate": le32(p, 24) }),
        );
    }
    if (0..4).all(|k| u8_at(p, k * 188) == Some(0x47)) {
        return verdict("mpeg-ts", "sync byte 0x47 at 0, 188, 376 and 564".into(), Value::Null);
    }
    // ADTS: a 12-bit sync word, layer 0; the next frame's sync where the first frame's length says.
    let adts = |at: usize| be16(p, at).is_some_and(|w| w & 0xfff6 == 0xfff0);
    if adts(0) {
        let len = usize::from(u8_at(p, 3)? & 3) << 11 | usize::from(u8_at(p, 4)?) << 3 | usize::from(u8_at(p, 5)? >> 5);
        if len >= 7 && adts(len) {
            return verdict("aac-adts", format!("ADTS frames at 0 and {len}"), Value::Null);
        }
    }
    None
}

// --- qcow / qcow2 -----------------------------------------------------------------------------

fn qcow(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    if !has(p, 0, b"QFI\xfb") {
        return None;
    }
    let version = be32(p, 4)?;
    let reason = format!("magic \"QFI\\xfb\" at 0; version {version}");
    if version == 1 {
        let d = json!({ "version": 1, "virtual_size": be64(p, 24), "cluster_size": u8_at(p, 32).filter(|b| (9..=21).contains(b)).map(|b| 1u64 << b) });
        return verdict("qcow", reason, d);
    }
    if version != 2 && version != 3 {
        return verdict("qcow2", format!("{reason} (unknown version)"), json!({ "version": version }));
    }
    let mut d = Map::new();
    let mut notes: Vec<String> = Vec::new();
    d.insert("version".into(), json!(version));
    d.insert("compat".into(), json!(if version == 2 { "0.10" } else { "1.1" }));
    d.insert("virtual_size".into(), json!(be64(p, 24)));
    let cluster_bits = be32(p, 20);
    let cluster_size = cluster_bits.filter(|b| (9..=21).contains(b)).map(|b| 1u64 << b);
    if cluster_size.is_none() {
        notes.push(format!("invalid cluster_bits {cluster_bits:?}"));
    }
    d.insert("cluster_size".into(), json!(cluster_size));
    d.insert(
        "encryption".into(),
        json!(match be32(p, 32) {
            Some(0) => "none".to_string(),
            Some(1) => "aes".to_string(),
            Some(2) => "luks".to_string(),
            other => format!("unknown ({other:?})"),
        }),
    );
    d.insert("l1_size".into(), json!(be32(p, 36)));
    d.insert("snapshots".into(), json!(be32(p, 60)));
    let (header_len, refcount_order) = if version == 3 {
        let incompat = be64(p, 72).unwrap_or(0);
        let compat = be64(p, 80).unwrap_or(0);
        d.insert("dirty".into(), json!(incompat & 1 != 0));
        d.insert("corrupt".into(), json!(incompat & 2 != 0));
        d.insert("extended_l2".into(), json!(incompat & 16 != 0));
        d.insert("lazy_refcounts".into(), json!(compat & 1 != 0));
        d.insert("incompatible_features".into(), json!(incompat));
        let header_len = be32(p, 100).unwrap_or(104);
        let ctype = if header_len > 104 { u8_at(p, 104) } else { Some(0) };
        d.insert(
            "compression_type".into(),
            json!(match ctype {
                Some(0) => "zlib".to_string(),
                Some(1) => "zstd".to_string(),
                other => format!("unknown ({other:?})"),
            }),
        );
        (header_len, be32(p, 96).unwrap_or(4))
    } else {
        d.insert("compression_type".into(), json!("zlib"));
        (72, 4)
    };
    d.insert("refcount_bits".into(), json!(1u64.checked_shl(refcount_order).filter(|_| refcount_order <= 6)));
    // Backing file name: stored at an offset in the first cluster; read if retained.
    let boff = be64(p, 8).unwrap_or(0);
    let blen = be32(p, 16).unwrap_or(0);
    if boff != 0 && blen != 0 {
        let name = usize_of(boff).and_then(|o| get(p, o, (blen as usize).min(4096)));
        match name {
            Some(n) => {
                d.insert("backing_file".into(), json!(cut(String::from_utf8_lossy(n).into_owned(), MAX_STRING)));
            }
            None => {
                notes.push(format!("backing file name at offset {boff} ({blen} bytes) is beyond the retained prefix"))
            }
        }
    }
    // Header extensions (backing format, external data file, encryption header).
    let mut off = header_len as usize;
    let mut exts = Vec::new();
    for _ in 0..64 {
        let (Some(t), Some(len)) = (be32(p, off), be32(p, off.saturating_add(4))) else {
            notes.push("header extensions run past the retained prefix".into());
            break;
        };
        if t == 0 {
            break;
        }
        let data = get(p, off + 8, len as usize);
        match (t, data) {
            (0xe279_2aca, Some(b)) => {
                d.insert("backing_format".into(), json!(text(b)));
            }
            (0x4441_5441, Some(b)) => {
                d.insert("data_file".into(), json!(text(b)));
            }
            (0x0537_be77, _) => exts.push("full-disk-encryption"),
            (0x6803_f857, _) => exts.push("feature-names"),
            (0x2385_2875, _) => exts.push("bitmaps"),
            _ => exts.push("other"),
        }
        let Some(n) = (len as usize).checked_add(7).map(|l| l & !7).and_then(|l| off.checked_add(8 + l)) else { break };
        off = n;
    }
    d.insert("header_extensions".into(), json!(exts));
    if !notes.is_empty() {
        d.insert("notes".into(), json!(notes));
    }
    verdict("qcow2", reason, Value::Object(d))
}

// --- VMDK -------------------------------------------------------------------------------------

fn vmdk_sparse(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    if !has(p, 0, b"KDMV") {
        return None;
    }
    let version = le32(p, 4)?;
    let flags = le32(p, 8).unwrap_or(0);
    let capacity = le64(p, 12);
    let grain = le64(p, 20);
    let desc_off = le64(p, 28).unwrap_or(0);
    let desc_len = le64(p, 36).unwrap_or(0);
    let compress = le16(p, 77);
    let mut d = Map::new();
    d.insert("version".into(), json!(version));
    d.insert("flags".into(), json!(format!("{flags:#x}")));
    d.insert("capacity_sectors".into(), json!(capacity));
    d.insert("virtual_size".into(), json!(capacity.and_then(|c| c.checked_mul(512))));
    d.insert("grain_size".into(), json!(grain.and_then(|g| g.checked_mul(512))));
    d.insert(
        "compression".into(),
        json!(match compress {
            Some(0) => "none".to_string(),
            Some(1) => "deflate".to_string(),
            other => format!("unknown ({other:?})"),
        }),
    );
    d.insert("unclean_shutdown".into(), json!(u8_at(p, 72).map(|b| b != 0)));
    let mut reason = format!("magic \"KDMV\" at 0; version {version}");
    let mut stream = compress == Some(1) && flags & (1 << 16) != 0;
    if desc_off != 0 && desc_len != 0 {
        let at = desc_off.checked_mul(512).and_then(usize_of);
        let len = desc_len.checked_mul(512).and_then(usize_of).map(|l| l.min(PREFIX_LEN));
        let body = at.zip(len).and_then(|(a, l)| p.get(a..a.checked_add(l)?.min(p.len())));
        match body {
            Some(b) if !b.is_empty() => {
                let desc = vmdk_descriptor(b);
                if desc.get("create_type").and_then(Value::as_str) == Some("streamOptimized") {
                    stream = true;
                }
                reason.push_str(&format!("; embedded descriptor at {}", desc_off.saturating_mul(512)));
                d.insert("descriptor".into(), Value::Object(desc));
            }
            _ => {
                d.insert("notes".into(), json!(["embedded descriptor beyond the retained prefix"]));
            }
        }
    }
    d.insert("stream_optimized".into(), json!(stream));
    if stream {
        reason.push_str("; stream-optimised (compressed grains)");
    }
    verdict("vmdk", reason, Value::Object(d))
}

fn vmdk_text(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    if !has(p, 0, b"# Disk DescriptorFile") {
        return None;
    }
    let d = vmdk_descriptor(p);
    let reason = format!(
        "text \"# Disk DescriptorFile\" at 0; createType {}",
        d.get("create_type").and_then(Value::as_str).unwrap_or("missing")
    );
    let mut out = Map::new();
    out.insert("descriptor".into(), Value::Object(d));
    verdict("vmdk-descriptor", reason, Value::Object(out))
}

/// The key/value and extent lines of a VMDK text descriptor (up to the first NUL).
fn vmdk_descriptor(b: &[u8]) -> Map<String, Value> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let body = String::from_utf8_lossy(&b[..end]);
    let mut d = Map::new();
    let mut extents = Vec::new();
    let mut ddb = Map::new();
    for line in body.lines().take(1024) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        if matches!(first, "RW" | "RDONLY" | "NOACCESS") {
            if extents.len() < 64 {
                extents.push(vmdk_extent(line));
            }
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        let (k, v) = (k.trim(), cut(v.trim().trim_matches('"').to_string(), MAX_STRING));
        match k {
            "version" => {
                d.insert("version".into(), json!(v));
            }
            "CID" => {
                d.insert("cid".into(), json!(u32::from_str_radix(&v, 16).ok()));
            }
            "parentCID" => {
                d.insert("parent_cid".into(), json!(u32::from_str_radix(&v, 16).ok()));
            }
            "createType" => {
                d.insert("create_type".into(), json!(v));
            }
            "parentFileNameHint" => {
                d.insert("parent_file_name_hint".into(), json!(v));
            }
            k if k.starts_with("ddb.") && ddb.len() < 32 => {
                ddb.insert(cut(k[4..].to_string(), 64), json!(v));
            }
            _ => {}
        }
    }
    d.insert("extents".into(), json!(extents));
    if !ddb.is_empty() {
        d.insert("ddb".into(), Value::Object(ddb));
    }
    d
}

/// `RW 131072 SPARSE "disk.vmdk" [offset]`.
fn vmdk_extent(line: &str) -> Value {
    let mut parts = line.splitn(4, char::is_whitespace).filter(|t| !t.is_empty());
    let access = parts.next().unwrap_or("");
    let sectors = parts.next().and_then(|t| t.parse::<u64>().ok());
    let kind = parts.next().unwrap_or("");
    let rest = line.splitn(4, char::is_whitespace).nth(3).unwrap_or("").trim();
    let (file, offset) = match rest.strip_prefix('"').and_then(|r| r.split_once('"')) {
        Some((f, after)) => (Some(cut(f.to_string(), MAX_STRING)), after.trim().parse::<u64>().ok()),
        None => (None, None),
    };
    json!({
        "access": access,
        "sectors": sectors,
        "size": sectors.and_then(|n| n.checked_mul(512)),
        "type": cut(kind.to_string(), 32),
        "file": file,
        "offset": offset,
    })
}

// --- VHDX, VDI, VHD ---------------------------------------------------------------------------

fn vhdx(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    if !has(p, 0, b"vhdxfile") {
        return None;
    }
    let creator = utf16(get(p, 8, 512).unwrap_or(&p[8..]), false);
    let mut reason = format!("signature \"vhdxfile\" at 0; creator {creator:?}");
    let mut d = Map::new();
    d.insert("creator".into(), json!(creator));
    if let Some(v) = s.vhdx {
        if let Some(m) = v.metadata_offset {
            d.insert("metadata_offset".into(), json!(m));
        }
        if v.virtual_size.is_some() {
            reason.push_str("; sizes from the metadata region");
        }
        d.insert("virtual_size".into(), json!(v.virtual_size));
        d.insert("block_size".into(), json!(v.block_size));
        d.insert("logical_sector_size".into(), json!(v.logical_sector_size));
        d.insert("physical_sector_size".into(), json!(v.physical_sector_size));
        d.insert("has_parent".into(), json!(v.has_parent));
        if !v.notes.is_empty() {
            d.insert("notes".into(), json!(v.notes));
        }
    }
    verdict("vhdx", reason, Value::Object(d))
}

fn vdi(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    if !has(p, 0, b"<<< ") || le32(p, 0x40) != Some(0xbeda_107f) {
        return None;
    }
    let version = le32(p, 0x44).unwrap_or(0);
    let (major, minor) = (version >> 16, version & 0xffff);
    let mut d = Map::new();
    d.insert("text".into(), json!(text(get(p, 0, 0x40).unwrap_or_default()).trim_end_matches('\n')));
    d.insert("version".into(), json!(format!("{major}.{minor}")));
    if major == 1 {
        let t = le32(p, 0x4c);
        d.insert(
            "image_type".into(),
            json!(match t {
                Some(1) => "dynamic".to_string(),
                Some(2) => "fixed".to_string(),
                Some(3) => "undo".to_string(),
                Some(4) => "differencing".to_string(),
                other => format!("unknown ({other:?})"),
            }),
        );
        d.insert("disk_size".into(), json!(le64(p, 0x170)));
        d.insert("block_size".into(), json!(le32(p, 0x178)));
        d.insert("blocks".into(), json!(le32(p, 0x180)));
        d.insert("blocks_allocated".into(), json!(le32(p, 0x184)));
        d.insert("uuid".into(), json!(arr::<16>(p, 0x188).map(|g| guid_mixed(&g))));
        if t == Some(4) {
            d.insert("parent_uuid".into(), json!(arr::<16>(p, 0x1a8).map(|g| guid_mixed(&g))));
        }
    }
    verdict(
        "vdi",
        format!("text \"<<< \" at 0 and signature 0xbeda107f at 0x40; version {major}.{minor}"),
        Value::Object(d),
    )
}

struct VhdFooter {
    disk_type: u32,
    data_offset: u64,
    checksum_ok: bool,
    facts: Map<String, Value>,
}

/// A VHD footer: "conectix", big-endian fields, one's-complement checksum at 64.
fn vhd_footer(b: &[u8]) -> Option<VhdFooter> {
    if !has(b, 0, b"conectix") || b.len() < 85 {
        return None;
    }
    let stored = be32(b, 64)?;
    let sum = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .fold(0u32, |a, (_, &c)| a.wrapping_add(u32::from(c)));
    let checksum_ok = !sum == stored;
    let disk_type = be32(b, 60)?;
    if !checksum_ok && !(2..=4).contains(&disk_type) {
        return None;
    }
    let mut f = Map::new();
    f.insert(
        "disk_type".into(),
        json!(match disk_type {
            2 => "fixed".to_string(),
            3 => "dynamic".to_string(),
            4 => "differencing".to_string(),
            n => format!("unknown ({n})"),
        }),
    );
    f.insert("current_size".into(), json!(be64(b, 48)));
    f.insert("original_size".into(), json!(be64(b, 40)));
    f.insert(
        "geometry".into(),
        json!({ "cylinders": be16(b, 56), "heads": u8_at(b, 58), "sectors_per_track": u8_at(b, 59) }),
    );
    f.insert("creator_application".into(), json!(text(get(b, 28, 4).unwrap_or_default())));
    f.insert("creator_version".into(), json!(be32(b, 32).map(|v| format!("{}.{}", v >> 16, v & 0xffff))));
    f.insert("creator_host_os".into(), json!(text(get(b, 36, 4).unwrap_or_default())));
    f.insert("uuid".into(), json!(arr::<16>(b, 68).map(|g| guid_be(&g))));
    f.insert("saved_state".into(), json!(u8_at(b, 84).map(|v| v != 0)));
    f.insert("checksum_ok".into(), json!(checksum_ok));
    Some(VhdFooter { disk_type, data_offset: be64(b, 16)?, checksum_ok, facts: f })
}

fn vhd(s: &Sample<'_>) -> Option<FormatVerdict> {
    let t = s.tail;
    // Virtual PC 2004 wrote 511-byte footers; look for the 512-byte one first.
    let at_end = [512usize, 511].into_iter().find_map(|n| {
        let from = t.len().checked_sub(n)?;
        (s.size >= n as u64).then(|| vhd_footer(&t[from..])).flatten()
    });
    let at_start = vhd_footer(get(s.prefix, 0, 512).unwrap_or(s.prefix));
    let (footer, mut reason) = match (&at_end, &at_start) {
        (Some(f), Some(_)) => (f, "\"conectix\" footer in the last 512 bytes and its copy at 0".to_string()),
        (Some(f), None) => (f, "\"conectix\" footer in the last 512 bytes".to_string()),
        (None, Some(f)) => (f, "\"conectix\" footer copy at 0 (no footer at the end)".to_string()),
        (None, None) => return None,
    };
    let mut d = footer.facts.clone();
    reason.push_str(&format!(
        "; disk type {}; checksum {}",
        d.get("disk_type").and_then(Value::as_str).unwrap_or("?"),
        if footer.checksum_ok { "ok" } else { "bad" }
    ));
    if footer.disk_type == 3 || footer.disk_type == 4 {
        let hdr = usize_of(footer.data_offset).and_then(|o| get(s.prefix, o, 1024));
        match hdr {
            Some(h) if has(h, 0, b"cxsparse") => {
                d.insert("block_size".into(), json!(be32(h, 32)));
                d.insert("max_table_entries".into(), json!(be32(h, 28)));
                d.insert("table_offset".into(), json!(be64(h, 16)));
                if footer.disk_type == 4 {
                    d.insert("parent_uuid".into(), json!(arr::<16>(h, 40).map(|g| guid_be(&g))));
                    d.insert("parent_name".into(), json!(utf16(get(h, 64, 512).unwrap_or_default(), true)));
                }
                reason.push_str(&format!("; dynamic header \"cxsparse\" at {}", footer.data_offset));
            }
            _ => {
                d.insert("notes".into(), json!(["dynamic header not found in the retained prefix"]));
            }
        }
    }
    if footer.disk_type == 2 {
        // A fixed VHD is the raw disk followed by the footer: say what the disk holds.
        if let Some(inner) = iso9660(s).or_else(|| gpt(s)).or_else(|| mbr(s)) {
            d.insert("contents".into(), json!(inner));
        }
    }
    verdict("vhd", reason, Value::Object(d))
}

// --- ISO 9660 ---------------------------------------------------------------------------------

fn iso9660(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    if !has(p, 32769, b"CD001") {
        return None;
    }
    let mut d = Map::new();
    let mut kinds = Vec::new();
    let mut terminated = false;
    for i in 16usize..32 {
        let Some(v) = get(p, i * 2048, 2048) else { break };
        if terminated {
            // The volume recognition sequence of UDF follows the ISO 9660 terminator.
            if has(v, 1, b"NSR02") || has(v, 1, b"NSR03") {
                d.insert("udf".into(), json!(true));
            }
            if !(has(v, 1, b"BEA01") || has(v, 1, b"NSR0") || has(v, 1, b"TEA01")) {
                break;
            }
            continue;
        }
        if !has(v, 1, b"CD001") {
            break;
        }
        match v[0] {
            0 => {
                kinds.push("boot");
                if has(v, 7, b"EL TORITO SPECIFICATION") {
                    d.insert("el_torito".into(), json!(true));
                }
            }
            1 if !d.contains_key("volume_id") => {
                kinds.push("primary");
                let blocks = le32(v, 80);
                let bs = le16(v, 128);
                d.insert("system_id".into(), json!(text(&v[8..40])));
                d.insert("volume_id".into(), json!(text(&v[40..72])));
                d.insert("volume_space_size".into(), json!(blocks));
                d.insert("logical_block_size".into(), json!(bs));
                d.insert("size".into(), json!(blocks.zip(bs).map(|(b, s)| u64::from(b) * u64::from(s))));
                d.insert("volume_set_id".into(), json!(text(&v[190..318])));
                d.insert("publisher".into(), json!(text(&v[318..446])));
                d.insert("preparer".into(), json!(text(&v[446..574])));
                d.insert("application".into(), json!(text(&v[574..702])));
                d.insert("creation_date".into(), json!(text(&v[813..829])));
            }
            2 => {
                kinds.push("supplementary");
                let level = match get(v, 88, 3) {
                    Some(b"%/@") => Some(1),
                    Some(b"%/C") => Some(2),
                    Some(b"%/E") => Some(3),
                    _ => None,
                };
                if let Some(l) = level {
                    d.insert("joliet_level".into(), json!(l));
                }
            }
            255 => {
                kinds.push("terminator");
                terminated = true;
            }
            _ => kinds.push("other"),
        }
    }
    d.insert("descriptors".into(), json!(kinds));
    if let Some(pt) = gpt(s).or_else(|| mbr(s)) {
        d.insert("partition_table".into(), json!(pt));
    }
    let reason = format!(
        "\"CD001\" at 32769 (volume descriptor at sector 16){}",
        if d.contains_key("partition_table") { "; also a partition table at 0 (hybrid image)" } else { "" }
    );
    verdict("iso9660", reason, Value::Object(d))
}

// --- Partition tables -------------------------------------------------------------------------

fn gpt_type_name(g: &str) -> Option<&'static str> {
    Some(match g {
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => "EFI System",
        "21686148-6449-6E6F-744E-656564454649" => "BIOS boot",
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4" => "Linux filesystem",
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => "Linux swap",
        "E6D6D379-F507-44C2-A23C-238F2A3DF928" => "Linux LVM",
        "A19D880F-05FC-4D3B-A006-743F0F84911E" => "Linux RAID",
        "933AC7E1-2EB4-4F13-B844-0E14E2AEF915" => "Linux home",
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => "Linux root (x86-64)",
        "B921B045-1DF0-41C3-AF44-4C6F280D3FAE" => "Linux root (ARM-64)",
        "BC13C2FF-59E6-4262-A352-B275FD6F7172" => "Linux extended boot",
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => "Microsoft basic data",
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE" => "Microsoft reserved",
        "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC" => "Windows recovery environment",
        "516E7CB4-6ECF-11D6-8FF8-00022D09712B" => "FreeBSD",
        "48465300-0000-11AA-AA11-00306543ECAC" => "Apple HFS/HFS+",
        _ => return None,
    })
}

fn mbr_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        0x01 => "FAT12",
        0x04 | 0x06 | 0x0e => "FAT16",
        0x05 | 0x0f => "Extended",
        0x07 => "HPFS/NTFS/exFAT",
        0x0b | 0x0c => "W95 FAT32",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x85 => "Linux extended",
        0x8e => "Linux LVM",
        0xa5 => "FreeBSD",
        0xee => "GPT protective",
        0xef => "EFI System",
        0xfd => "Linux raid autodetect",
        _ => return None,
    })
}

fn gpt(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    let ss = [512usize, 4096].into_iter().find(|&ss| has(p, ss, b"EFI PART"))?;
    let h = get(p, ss, 92)?;
    let header_size = le32(h, 12)? as usize;
    let header_crc_ok = (92..=ss).contains(&header_size)
        && get(p, ss, header_size)
            .is_some_and(|full| crc32(&[&full[..16], &[0; 4], &full[20..]]) == le32(h, 16).unwrap_or(0));
    let entries_lba = le64(h, 72)?;
    let count = le32(h, 80)?;
    let entry_size = le32(h, 84)? as usize;
    let mut d = Map::new();
    let mut notes: Vec<String> = Vec::new();
    d.insert("sector_size".into(), json!(ss));
    d.insert("revision".into(), json!(le32(h, 8).map(|r| format!("{}.{}", r >> 16, r & 0xffff))));
    d.insert("disk_guid".into(), json!(arr::<16>(h, 56).map(|g| guid_mixed(&g))));
    d.insert("header_crc_ok".into(), json!(header_crc_ok));
    d.insert("current_lba".into(), json!(le64(h, 24)));
    d.insert("backup_lba".into(), json!(le64(h, 32)));
    d.insert("first_usable_lba".into(), json!(le64(h, 40)));
    d.insert("last_usable_lba".into(), json!(le64(h, 48)));
    d.insert("partition_entries_lba".into(), json!(entries_lba));
    d.insert("partition_entry_count".into(), json!(count));
    d.insert("partition_entry_size".into(), json!(entry_size));
    let protective = mbr_entries(p).is_some_and(|es| es.iter().any(|e| e.kind == 0xee));
    d.insert("protective_mbr".into(), json!(protective));
    let mut parts = Vec::new();
    if (128..=4096).contains(&entry_size) && entry_size % 8 == 0 {
        let start = entries_lba.checked_mul(ss as u64).and_then(usize_of);
        let total = (count as usize).checked_mul(entry_size);
        match start.zip(total).and_then(|(a, t)| get(p, a, t)) {
            Some(all) => {
                d.insert("entries_crc_ok".into(), json!(crc32(&[all]) == le32(h, 88).unwrap_or(0)));
            }
            None => notes.push("partition entries run past the retained prefix (CRC not checked)".into()),
        }
        for i in 0..count as usize {
            let Some(e) = start.and_then(|a| a.checked_add(i.checked_mul(entry_size)?)).and_then(|o| get(p, o, 128))
            else {
                break;
            };
            let Some(tg) = arr::<16>(e, 0) else { break };
            if tg == [0; 16] {
                continue;
            }
            if parts.len() >= MAX_PARTITIONS {
                notes.push(format!("listing capped at {MAX_PARTITIONS} partitions"));
                break;
            }
            let type_guid = guid_mixed(&tg);
            let first = le64(e, 32);
            let last = le64(e, 40);
            parts.push(json!({
                "number": i + 1,
                "type_guid": type_guid,
                "type_name": gpt_type_name(&type_guid),
                "guid": arr::<16>(e, 16).map(|g| guid_mixed(&g)),
                "first_lba": first,
                "last_lba": last,
                "sectors": first.zip(last).and_then(|(f, l)| l.checked_sub(f)?.checked_add(1)),
                "attributes": le64(e, 48),
                "name": utf16(get(e, 56, 72).unwrap_or_default(), false),
            }));
        }
    } else {
        notes.push(format!("invalid partition entry size {entry_size}"));
    }
    let reason = format!(
        "\"EFI PART\" at {ss} (LBA 1){}; header CRC {}; {} partitions",
        if protective { "; protective MBR (type 0xEE)" } else { "" },
        if header_crc_ok { "ok" } else { "bad" },
        parts.len()
    );
    d.insert("partitions".into(), json!(parts));
    if !notes.is_empty() {
        d.insert("notes".into(), json!(notes));
    }
    verdict("gpt", reason, Value::Object(d))
}

struct MbrEntry {
    number: usize,
    status: u8,
    kind: u8,
    start: u32,
    sectors: u32,
}

/// The four primary entries, if the sector looks like an MBR (0x55AA, sane status bytes).
fn mbr_entries(p: &[u8]) -> Option<Vec<MbrEntry>> {
    if get(p, 510, 2)? != [0x55, 0xaa] {
        return None;
    }
    let mut out = Vec::new();
    for i in 0..4 {
        let e = get(p, 446 + 16 * i, 16)?;
        let (status, kind, start, sectors) = (e[0], e[4], le32(e, 8)?, le32(e, 12)?);
        if status != 0 && status != 0x80 {
            return None;
        }
        if kind != 0 && sectors != 0 {
            out.push(MbrEntry { number: i + 1, status, kind, start, sectors });
        }
    }
    (!out.is_empty()).then_some(out)
}

fn mbr(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    let entries = mbr_entries(p)?;
    let parts: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "number": e.number,
                "bootable": e.status == 0x80,
                "type": format!("{:x}", e.kind),
                "type_name": mbr_type_name(e.kind),
                "start_lba": e.start,
                "sectors": e.sectors,
            })
        })
        .collect();
    let mut d = Map::new();
    d.insert("disk_signature".into(), json!(le32(p, 440).map(|v| format!("{v:#010x}"))));
    d.insert("partitions".into(), json!(parts));
    if entries.iter().any(|e| matches!(e.kind, 0x05 | 0x0f | 0x85)) {
        d.insert("notes".into(), json!(["logical partitions inside the extended partition are not listed"]));
    }
    verdict("mbr", format!("0x55AA at 510 with {} valid partition entries", entries.len()), Value::Object(d))
}

// --- Compression and archives -----------------------------------------------------------------

fn gzip(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    if !has(p, 0, &[0x1f, 0x8b, 8]) {
        return None;
    }
    let flags = u8_at(p, 3)?;
    if flags & 0xe0 != 0 {
        return None;
    }
    let mut d = Map::new();
    d.insert("method".into(), json!("deflate"));
    d.insert("mtime".into(), json!(le32(p, 4)));
    d.insert("os".into(), json!(u8_at(p, 9)));
    let mut off = 10usize;
    if flags & 4 != 0 {
        off = le16(p, 10).map(|x| 12 + usize::from(x)).unwrap_or(usize::MAX);
    }
    if flags & 8 != 0 {
        if let Some(rest) = p.get(off..) {
            d.insert("original_name".into(), json!(text(rest)));
        }
    }
    if s.size >= 18 && s.tail.len() >= 8 {
        d.insert("isize".into(), json!(le32(s.tail, s.tail.len() - 4)));
        d.insert("crc32".into(), json!(le32(s.tail, s.tail.len() - 8).map(|c| format!("{c:08x}"))));
    }
    verdict("gzip", format!("magic 1f 8b 08 at 0; flags {flags:#04x}"), Value::Object(d))
}

fn xz(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    if !has(p, 0, b"\xfd7zXZ\0") {
        return None;
    }
    let flags = get(p, 6, 2)?;
    let crc_ok = le32(p, 8).is_some_and(|c| c == crc32(&[flags]));
    if flags[0] != 0 || flags[1] > 0x0f {
        return None;
    }
    let check = match flags[1] {
        0 => "None",
        1 => "CRC32",
        4 => "CRC64",
        10 => "SHA-256",
        _ => "reserved",
    };
    let footer = s.tail.ends_with(b"YZ");
    let d = json!({ "check": check, "stream_flags_crc_ok": crc_ok, "footer_magic_at_end": footer });
    verdict("xz", format!("magic fd 37 7a 58 5a 00 at 0; check {check}"), d)
}

fn zstd(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    if !has(p, 0, &[0x28, 0xb5, 0x2f, 0xfd]) {
        return None;
    }
    let fhd = u8_at(p, 4)?;
    if fhd & 0x08 != 0 {
        return None; // reserved bit
    }
    let single = fhd & 0x20 != 0;
    let mut off = 5usize;
    let mut window = None;
    if !single {
        let w = u8_at(p, 5)?;
        let exp = u32::from(w >> 3) + 10;
        let base = 1u64.checked_shl(exp)?;
        window = Some(base + (base / 8) * u64::from(w & 7));
        off += 1;
    }
    let did_len = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let did = get(p, off, did_len).map(|b| b.iter().rev().fold(0u64, |a, &c| (a << 8) | u64::from(c)));
    off += did_len;
    let fcs_len = match fhd >> 6 {
        0 => usize::from(single),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let fcs = get(p, off, fcs_len).map(|b| {
        let v = b.iter().rev().fold(0u64, |a, &c| (a << 8) | u64::from(c));
        if fcs_len == 2 {
            v + 256
        } else {
            v
        }
    });
    let d = json!({
        "content_size": if fcs_len == 0 { None } else { fcs },
        "window_size": window,
        "checksum": fhd & 4 != 0,
        "dictionary_id": if did_len == 0 { None } else { did },
    });
    verdict("zstd", format!("magic 28 b5 2f fd at 0; frame header descriptor {fhd:#04x}"), d)
}

fn bzip2(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    let level = u8_at(p, 3)?;
    if !has(p, 0, b"BZh") || !(b'1'..=b'9').contains(&level) {
        return None;
    }
    let block = has(p, 4, &[0x31, 0x41, 0x59, 0x26, 0x53, 0x59]);
    let eos = has(p, 4, &[0x17, 0x72, 0x45, 0x38, 0x50, 0x90]);
    if !block && !eos {
        return None;
    }
    let d = json!({ "block_size": u32::from(level - b'0') * 100_000, "empty": eos });
    verdict(
        "bzip2",
        format!(
            "magic \"BZh{}\" at 0 and a {} magic at 4",
            char::from(level),
            if block { "block" } else { "end-of-stream" }
        ),
        d,
    )
}

fn zip_method(m: u16) -> String {
    match m {
        0 => "stored".into(),
        8 => "deflate".into(),
        9 => "deflate64".into(),
        12 => "bzip2".into(),
        14 => "lzma".into(),
        93 => "zstd".into(),
        95 => "xz".into(),
        99 => "aes".into(),
        n => format!("method {n}"),
    }
}

fn zip_or_tar(s: &Sample<'_>) -> Option<FormatVerdict> {
    zip(s).or_else(|| tar(s))
}

fn zip(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    let local = has(p, 0, b"PK\x03\x04");
    let empty = has(p, 0, b"PK\x05\x06");
    if !local && !empty {
        return None;
    }
    let mut d = Map::new();
    if local {
        let nlen = usize::from(le16(p, 26)?);
        let flags = le16(p, 6)?;
        d.insert(
            "first_entry".into(),
            json!({
                "name": get(p, 30, nlen).map(|n| cut(String::from_utf8_lossy(n).into_owned(), MAX_STRING)),
                "method": zip_method(le16(p, 8)?),
                "compressed_size": le32(p, 18),
                "size": le32(p, 22),
                "encrypted": flags & 1 != 0,
            }),
        );
    }
    // End of central directory: 22 bytes plus a comment that ends the file.
    let t = s.tail;
    let eocd = (0..t.len().saturating_sub(21))
        .rev()
        .find(|&i| has(t, i, b"PK\x05\x06") && le16(t, i + 20).is_some_and(|c| i + 22 + usize::from(c) == t.len()));
    match eocd {
        Some(i) => {
            d.insert("entries".into(), json!(le16(t, i + 10)));
            d.insert("central_directory_size".into(), json!(le32(t, i + 12)));
            d.insert("central_directory_offset".into(), json!(le32(t, i + 16)));
        }
        None => {
            d.insert("notes".into(), json!(["no end-of-central-directory record in the last 512 bytes"]));
        }
    }
    let reason = if local {
        "local file header \"PK\\x03\\x04\" at 0"
    } else {
        "end of central directory \"PK\\x05\\x06\" at 0 (empty archive)"
    };
    verdict("zip", reason.into(), Value::Object(d))
}

fn tar(s: &Sample<'_>) -> Option<FormatVerdict> {
    let p = s.prefix;
    let magic = if has(p, 257, b"ustar\0") {
        Some("\"ustar\\0\" at 257")
    } else if has(p, 257, b"ustar  \0") {
        Some("\"ustar  \\0\" at 257 (GNU)")
    } else {
        None
    };
    let walker = s.tar.filter(|w| w.is_tar());
    let details = match walker {
        Some(w) => w.details(),
        None => {
            // A whole object in memory (no walker ran): list what the prefix holds.
            let mut w = TarWalker::default();
            w.data(0, p);
            if !w.is_tar() && magic.is_none() {
                return None;
            }
            let mut d = w.details();
            if let Value::Object(m) = &mut d {
                if (p.len() as u64) < s.size {
                    m.insert("notes".into(), json!(["listing from the retained prefix only"]));
                }
            }
            d
        }
    };
    let mut reason = match magic {
        Some(m) => m.to_string(),
        None => "valid tar header checksum at 0 (no ustar magic)".to_string(),
    };
    let first = details.get("entries").and_then(|e| e.get(0)).and_then(|e| e.get("name")).and_then(Value::as_str);
    if first.is_some_and(|n| n.to_ascii_lowercase().ends_with(".ovf")) {
        reason.push_str(&format!("; first member {:?} is an OVF descriptor", first.unwrap_or_default()));
        return verdict("ova", reason, details);
    }
    verdict("tar", reason, details)
}

// ---------------------------------------------------------------------------------------------
// Disk images: what the inspection reads, and what gets an image service's digests.

/// What the first bytes of an object say it is, if it is something to inspect: a disk image
/// container, a partitioned or formatted raw disk, an OVA, a QEMU migration stream or an ELF
/// core (a memory dump). The image inspection (vmi's intake) copies what this names;
/// [`PREFIX_LEN`] bytes are enough to tell.
pub fn inspectable(head: &[u8]) -> Option<&'static str> {
    let at = |o: usize, m: &[u8]| head.get(o..o + m.len()) == Some(m);
    Some(if at(0, b"QFI\xfb") {
        "qcow2"
    } else if at(0, b"KDMV") || at(0, b"# Disk DescriptorFile") {
        "vmdk"
    } else if at(0, b"vhdxfile") {
        "vhdx"
    } else if at(0x40, &[0x7f, 0x10, 0xda, 0xbe]) {
        "vdi"
    } else if at(0, b"conectix") {
        "vhd"
    } else if at(512, b"EFI PART") {
        "gpt"
    } else if at(512, b"LABELONE") {
        "lvm2"
    } else if at(1080, &[0x53, 0xef]) {
        "ext"
    } else if at(0, b"QEVM") {
        "qemu-migration-stream"
    } else if at(0, b"\x7fELF") && head.get(16) == Some(&4) {
        "elf-core"
    } else if at(257, b"ustar") && ova_like(head) {
        "ova"
    } else if at(510, &[0x55, 0xaa]) && mbr_like(head) {
        "mbr"
    } else {
        return None;
    })
}

/// A tar whose first member is an OVF descriptor or a disk.
fn ova_like(head: &[u8]) -> bool {
    let name = String::from_utf8_lossy(head.get(..100).unwrap_or_default()).to_ascii_lowercase();
    let name = name.trim_end_matches('\0');
    name.ends_with(".ovf") || name.ends_with(".vmdk") || name.ends_with(".mf")
}

/// A boot sector with at least one partition entry that is sane (status 0 or 0x80, a type, a
/// start and a length): FAT and NTFS boot sectors end in 55 AA too, without partitions.
fn mbr_like(head: &[u8]) -> bool {
    (0..4).any(|i| {
        let e = head.get(446 + 16 * i..462 + 16 * i).unwrap_or_default();
        let (Some(&status), Some(&kind)) = (e.first(), e.get(4)) else { return false };
        let le = |o: usize| e.get(o..o + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        (status == 0 || status == 0x80) && kind != 0 && le(8) != 0 && le(12) != 0
    })
}

/// Whether the head of an object says "disk image": one [`inspectable`] names (memory dumps
/// and ELF cores aside), or an ISO 9660 volume.
pub fn disk_image(head: &[u8]) -> bool {
    matches!(inspectable(head), Some(k) if k != "qemu-migration-stream" && k != "elf-core")
        || has(head, 32769, b"CD001")
}
