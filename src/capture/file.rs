//! pcap and pcapng files, read as a stream through a bounded window.
//!
//! A [`CaptureFile`] is an opened capture whose format is known; [`Frames`] reads it front to
//! back through a window of at most a few tens of MiB and lends out [`Frame`]s that borrow
//! their bytes from that window until the next frame is asked for. [`Merge`] interleaves several
//! captures in timestamp order the same way.
//!
//! Why a window and not a memory map: a mapped file that shrinks while it is read (a capture cut
//! by its writer, a file replaced on a network share) kills the reader with `SIGBUS`, and a
//! gzip'd capture would first have to be inflated whole somewhere (an 8 MB bomb is gigabytes).
//! Read through a window, a shrinking file is a truncated capture reported as damage, and gzip
//! input is inflated as it is read: its magic is checked on the first bytes that come out, and
//! nothing is ever written to disk. The one copy per frame costs far less than the pipeline.
//!
//! The parsers are written here rather than taken from `pcap-parser`: its pcapng blocks collect
//! their options into a `Vec` (one allocation per packet with options, which dumpcap writes), and
//! its `nom` errors do not say which length was wrong or where; both matter here.
//!
//! # No-panic contract
//! File contents are untrusted. Every read goes through a length-checked accessor and every length
//! is checked before it is added to an offset; damage (a truncated record, a garbage block, a
//! length field pointing past the end) becomes a [`CaptureDamage`] carrying its byte offset and
//! kind, and whatever frames can still be read are yielded. pcapng can resynchronise on the next
//! well-formed block. Legacy pcap has no block markers: after a record header that cannot be
//! right, reading resumes at the next offset where two records in a row are plausible (lengths
//! that fit, a time near the last good one), or where the last record of the file is.
//!
//! # Bounded memory
//! Lengths are capped ([`MAX_PCAP_CAPLEN`], [`MAX_BLOCK_LEN`]) before any byte is read for them,
//! and the window drops everything before the record being parsed (or, while resynchronising,
//! before the candidate being tried), so it never holds more than about two records plus one read
//! chunk, whatever the file says.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

use super::{Frame, LinkType};
use crate::timestamp::Timestamp;

/// Largest captured length accepted in a legacy pcap record. Real snap lengths stay far below it
/// (262144 is libpcap's maximum, BIG TCP super-packets are under 512 KiB); a bigger value is a
/// garbage length field, and reporting it as such beats treating the rest of the file as one frame.
pub const MAX_PCAP_CAPLEN: u32 = 16 << 20;

/// Largest pcapng block accepted: a packet of [`MAX_PCAP_CAPLEN`] with room for its options.
pub const MAX_BLOCK_LEN: u32 = MAX_PCAP_CAPLEN + (1 << 16);

/// Interface descriptions kept per pcapng section; more is a hostile file, not a capture.
pub const MAX_INTERFACES: usize = 1 << 16;

/// Bytes asked of the input at a time.
const READ_CHUNK: usize = 1 << 20;

/// Bytes of the start of a capture that tell its format (a pcap header is 24, an SHB's first 12).
const FORMAT_PREFIX: usize = 64;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const PCAP_HEADER_LEN: usize = 24;
const PCAP_RECORD_HEADER_LEN: usize = 16;

const SHB_TYPE_BYTES: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const BLOCK_IDB: u32 = 1;
const BLOCK_PB: u32 = 2;
const BLOCK_SPB: u32 = 3;
const BLOCK_NRB: u32 = 4;
const BLOCK_ISB: u32 = 5;
const BLOCK_EPB: u32 = 6;
const BLOCK_DSB: u32 = 0x0a;
const BLOCK_CUSTOM: u32 = 0x0bad;
const BLOCK_CUSTOM_NOCOPY: u32 = 0x4000_0bad;
const BLOCK_SHB: u32 = 0x0a0d_0d0a;
/// Block header (type, length) plus trailing length.
const BLOCK_OVERHEAD: usize = 12;
const OPT_ENDOFOPT: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// Why a capture could not be opened at all.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: gzip stream unreadable before the capture header ({source})", path.display())]
    Gzip {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a pcap or pcapng capture (first bytes: {magic})", path.display())]
    NotACapture { path: PathBuf, magic: String },
    #[error("{}: capture header truncated ({len} bytes, {needed} needed)", path.display())]
    TruncatedHeader { path: PathBuf, len: u64, needed: u64 },
    #[error("{}: pcapng section header has byte-order magic {magic:#010x}", path.display())]
    BadByteOrderMagic { path: PathBuf, magic: u32 },
}

/// Damage found while reading frames: where, and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("capture damaged at byte {offset}: {kind}")]
pub struct CaptureDamage {
    /// Offset in the (decompressed) capture of the record or block that is damaged.
    pub offset: u64,
    pub kind: DamageKind,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DamageKind {
    /// The record or block needs more bytes than the file has: a cut capture.
    #[error("truncated record: {needed} bytes needed, {available} left")]
    Truncated { needed: u64, available: u64 },
    /// A pcap record claims more captured bytes than any real capture holds.
    #[error("captured length {len} exceeds the {max}-byte limit")]
    CapLenTooLarge { len: u32, max: u32 },
    /// A pcapng block length is below the minimum, not a multiple of 4, above
    /// [`MAX_BLOCK_LEN`], or runs past the end while later data still parses.
    #[error("block length {len} is invalid")]
    BadBlockLength { len: u32 },
    /// A pcapng block's trailing length differs from its leading one.
    #[error("block trailer length {trailer} differs from header length {header}")]
    TrailerMismatch { header: u32, trailer: u32 },
    /// A pcapng block is too short for its fixed fields.
    #[error("block of type {block_type:#x} is {len} bytes, too short for its fields")]
    ShortBlock { block_type: u32, len: u32 },
    /// A section header whose byte-order magic is neither order.
    #[error("section header byte-order magic {magic:#010x} is invalid")]
    BadByteOrderMagic { magic: u32 },
    /// A packet block names an interface no description block defined.
    #[error("packet block refers to interface {id}, {known} defined")]
    UnknownInterface { id: u32, known: usize },
    /// A packet block's captured length runs past the block.
    #[error("captured length {cap_len} exceeds the {room} bytes of its block")]
    PacketOverrunsBlock { cap_len: u32, room: u32 },
    /// More interface descriptions in one section than [`MAX_INTERFACES`].
    #[error("more than {max} interfaces in one section")]
    TooManyInterfaces { max: usize },
    /// The gzip stream ended early or is corrupt; the capture is what decompressed before it.
    #[error("gzip stream damaged after {decompressed} decompressed bytes: {reason}")]
    Gzip { decompressed: u64, reason: String },
    /// Reading the file failed (an I/O error); the capture is what was read before it.
    #[error("reading failed after {read} bytes: {reason}")]
    Read { read: u64, reason: String },
}

/// Which format a capture is in, from its header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Legacy pcap: one link type for the whole file.
    Pcap { big_endian: bool, nanos: bool, version: (u16, u16), snaplen: u32, link: LinkType },
    /// pcapng; the byte order is that of the first section (later sections may differ).
    Pcapng { big_endian: bool },
}

/// Where a capture's bytes are.
#[derive(Clone)]
enum Source {
    /// Read with `pread`, so every [`Frames`] has its own offset in the one open file.
    File(Arc<File>),
    Memory(Arc<[u8]>),
}

/// One opened capture file.
pub struct CaptureFile {
    path: PathBuf,
    source: Source,
    format: CaptureFormat,
    gzip: bool,
    size: u64,
}

impl fmt::Debug for CaptureFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureFile")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("format", &self.format)
            .field("gzip", &self.gzip)
            .finish()
    }
}

impl CaptureFile {
    /// Opens a pcap or pcapng capture, gzip-compressed or not (told by magic, not name), and reads
    /// its format from the first bytes. Nothing more is read (or inflated) until [`frames`].
    ///
    /// [`frames`]: CaptureFile::frames
    pub fn open(path: &Path) -> Result<CaptureFile, CaptureError> {
        let io_err = |source| CaptureError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        CaptureFile::new(path.to_path_buf(), Source::File(Arc::new(file)), size)
    }

    /// A capture held in memory (`name` is used in messages). gzip is detected as in [`open`].
    ///
    /// [`open`]: CaptureFile::open
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<CaptureFile, CaptureError> {
        let size = bytes.len() as u64;
        CaptureFile::new(name.into(), Source::Memory(bytes.into()), size)
    }

    fn new(path: PathBuf, source: Source, size: u64) -> Result<CaptureFile, CaptureError> {
        // The stored bytes' prefix tells gzip; only then is a second one, inflated, read.
        let mut prefix = [0u8; FORMAT_PREFIX];
        let stored = read_up_to(&mut reader(&source, false, Arc::default()), &mut prefix)
            .map_err(|source| CaptureError::Io { path: path.clone(), source })?;
        let gzip = prefix.get(..stored).is_some_and(|p| p.starts_with(&GZIP_MAGIC));
        let (len, gzip_error) = if gzip {
            match read_up_to(&mut reader(&source, true, Arc::default()), &mut prefix) {
                Ok(n) => (n, None),
                Err(e) => (0, Some(e)),
            }
        } else {
            (stored, None)
        };
        let bytes = prefix.get(..len).unwrap_or_default();
        let format = match detect(bytes) {
            Ok(f) => f,
            Err(e) => {
                // A gzip stream that broke before a whole header came out is not a capture with
                // damage, it is no capture: say why.
                if let Some(source) = gzip_error {
                    return Err(if gzip {
                        CaptureError::Gzip { path, source }
                    } else {
                        CaptureError::Io { path, source }
                    });
                }
                return Err(e.into_error(path, bytes));
            }
        };
        Ok(CaptureFile { path, source, format, gzip, size })
    }

    /// Reads the frames from the start of the capture. Each call starts a reader of its own.
    pub fn frames(&self) -> Frames {
        let (pos, state) = match self.format {
            CaptureFormat::Pcap { big_endian, nanos, link, .. } => (
                PCAP_HEADER_LEN as u64,
                State::Pcap { endian: Endian::from_big(big_endian), frac_ns: if nanos { 1 } else { 1000 }, link },
            ),
            CaptureFormat::Pcapng { big_endian } => (
                0,
                State::Pcapng {
                    endian: Endian::from_big(big_endian),
                    ifaces: Vec::new(),
                    last_ts: Timestamp::default(),
                },
            ),
        };
        let consumed = Arc::new(AtomicU64::new(0));
        let input = reader(&self.source, self.gzip, consumed.clone());
        let win = Window { input, buf: Vec::new(), held: 0, base: 0, eof: false, failure: None, gzip: self.gzip };
        Frames { win, pos, state, done: false, last_sec: None, consumed }
    }

    /// Bytes of the capture as stored (compressed, for gzip input), for progress against
    /// [`Frames::position`].
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// Whether the file was gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }
}

/// The stored bytes of a [`Source`] from offset 0, counting what was read into `consumed`.
struct Input {
    source: Source,
    pos: u64,
    consumed: Arc<AtomicU64>,
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &self.source {
            Source::File(f) => f.read_at(buf, self.pos)?,
            Source::Memory(m) => {
                let rest = usize::try_from(self.pos).ok().and_then(|p| m.get(p..)).unwrap_or_default();
                let n = rest.len().min(buf.len());
                if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
                    dst.copy_from_slice(src);
                }
                n
            }
        };
        self.pos = self.pos.saturating_add(n as u64);
        self.consumed.store(self.pos, Ordering::Relaxed);
        Ok(n)
    }
}

/// The capture's bytes: the stored ones, or for gzip input what inflating them gives, member
/// after member, as it is asked for.
fn reader(source: &Source, gzip: bool, consumed: Arc<AtomicU64>) -> Box<dyn Read + Send> {
    let input = Input { source: source.clone(), pos: 0, consumed };
    if gzip {
        Box::new(MultiGzDecoder::new(io::BufReader::with_capacity(1 << 16, input)))
    } else {
        Box::new(input)
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else { break };
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The part of the capture being parsed: `buf[..held]` holds the capture's bytes from offset
/// `base`. Offsets given to it are offsets in the (decompressed) capture.
struct Window {
    input: Box<dyn Read + Send>,
    /// Zeroed once as it grows, then reused: bytes past `held` are stale, never read. (Growing
    /// a `Vec` by the read's size before every read zeroed each byte of the capture once more.)
    buf: Vec<u8>,
    held: usize,
    base: u64,
    eof: bool,
    /// Why reading stopped before the input's end (a broken gzip stream, an I/O error): reported
    /// after the last frame.
    failure: Option<CaptureDamage>,
    gzip: bool,
}

impl Window {
    /// Offset just past the last byte held.
    fn end(&self) -> u64 {
        self.base + self.held as u64
    }

    /// Makes the capture's bytes before `to` available, as far as the input has them. Bytes before
    /// `keep` may be dropped: callers never go back before it.
    fn fill(&mut self, keep: u64, to: u64) {
        if to <= self.end() || self.eof {
            return;
        }
        let drop = usize::try_from(keep.saturating_sub(self.base)).unwrap_or(usize::MAX).min(self.held);
        if drop > 0 {
            self.buf.copy_within(drop..self.held, 0);
            self.held -= drop;
            self.base += drop as u64;
        }
        while self.end() < to && !self.eof {
            let want = usize::try_from(to - self.end()).unwrap_or(usize::MAX).max(READ_CHUNK);
            let old = self.held;
            if self.buf.len() < old + want {
                self.buf.resize(old + want, 0);
            }
            let got = match self.input.read(self.buf.get_mut(old..old + want).unwrap_or_default()) {
                Ok(0) => {
                    self.eof = true;
                    0
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => {
                    self.eof = true;
                    let at = self.base + old as u64;
                    let kind = if self.gzip {
                        DamageKind::Gzip { decompressed: at, reason: e.to_string() }
                    } else {
                        DamageKind::Read { read: at, reason: e.to_string() }
                    };
                    self.failure = Some(CaptureDamage { offset: at, kind });
                    0
                }
            };
            self.held = old + got;
        }
    }

    /// The bytes held from `at` on (empty if `at` is not held).
    fn from(&self, at: u64) -> &[u8] {
        at.checked_sub(self.base)
            .and_then(|o| usize::try_from(o).ok())
            .and_then(|o| self.buf.get(o..self.held))
            .unwrap_or_default()
    }

    /// Whether the capture ends exactly at `at`.
    fn ends_at(&mut self, keep: u64, at: u64) -> bool {
        self.fill(keep, at.saturating_add(1));
        self.eof && self.end() == at
    }
}

enum DetectError {
    NotACapture,
    Truncated { needed: u64 },
    BadByteOrderMagic(u32),
}

impl DetectError {
    fn into_error(self, path: PathBuf, bytes: &[u8]) -> CaptureError {
        match self {
            DetectError::NotACapture => {
                CaptureError::NotACapture { path, magic: hex::encode(bytes.get(..4).unwrap_or(bytes)) }
            }
            DetectError::Truncated { needed } => {
                CaptureError::TruncatedHeader { path, len: bytes.len() as u64, needed }
            }
            DetectError::BadByteOrderMagic(magic) => CaptureError::BadByteOrderMagic { path, magic },
        }
    }
}

fn detect(b: &[u8]) -> Result<CaptureFormat, DetectError> {
    let magic: [u8; 4] = match b.get(..4).and_then(|m| m.try_into().ok()) {
        Some(m) => m,
        None => return Err(DetectError::NotACapture),
    };
    if magic == SHB_TYPE_BYTES {
        let Some(bom) = b.get(8..12) else { return Err(DetectError::Truncated { needed: 12 }) };
        return match Endian::from_byte_order_magic(bom) {
            Ok(e) => Ok(CaptureFormat::Pcapng { big_endian: e == Endian::Big }),
            Err(m) => Err(DetectError::BadByteOrderMagic(m)),
        };
    }
    let (endian, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (Endian::Little, false),
        [0xa1, 0xb2, 0xc3, 0xd4] => (Endian::Big, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (Endian::Little, true),
        [0xa1, 0xb2, 0x3c, 0x4d] => (Endian::Big, true),
        _ => return Err(DetectError::NotACapture),
    };
    let Some(h) = b.get(..PCAP_HEADER_LEN) else {
        return Err(DetectError::Truncated { needed: PCAP_HEADER_LEN as u64 });
    };
    let major = endian.u16(h, 4).unwrap_or(0);
    let minor = endian.u16(h, 6).unwrap_or(0);
    let snaplen = endian.u32(h, 16).unwrap_or(0);
    // The top bits carry FCS information (libpcap's LT_LINKTYPE mask).
    let link = LinkType::from_linktype(endian.u32(h, 20).unwrap_or(0) & 0x03ff_ffff);
    Ok(CaptureFormat::Pcap { big_endian: endian == Endian::Big, nanos, version: (major, minor), snaplen, link })
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn from_big(big: bool) -> Endian {
        if big {
            Endian::Big
        } else {
            Endian::Little
        }
    }

    /// The byte order a section header's magic announces, or the magic (read little-endian).
    fn from_byte_order_magic(b: &[u8]) -> Result<Endian, u32> {
        match Endian::Little.u32(b, 0) {
            Some(BYTE_ORDER_MAGIC) => Ok(Endian::Little),
            Some(m) if m.swap_bytes() == BYTE_ORDER_MAGIC => Ok(Endian::Big),
            Some(m) => Err(m),
            None => Err(0),
        }
    }

    #[inline]
    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let a: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        })
    }

    #[inline]
    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let a: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(self.u32_of(a))
    }

    #[inline]
    fn u32_of(self, a: [u8; 4]) -> u32 {
        match self {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        }
    }

    #[inline]
    fn u64(self, b: &[u8], at: usize) -> Option<u64> {
        let a: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u64::from_le_bytes(a),
            Endian::Big => u64::from_be_bytes(a),
        })
    }
}

/// A pcapng interface's timestamp unit, reduced to what converting to nanoseconds needs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum TsUnit {
    /// 10^-k s with k <= 9: this many nanoseconds per unit.
    NanosPer(u64),
    /// 10^-k s with k > 9: this many units per nanosecond (0: finer than u128 can hold).
    PerNano(u128),
    /// 2^-k s.
    Pow2(u32),
}

impl TsUnit {
    /// From an `if_tsresol` value (RFC draft-ietf-opsawg-pcapng: MSB clear = power of 10).
    fn from_tsresol(v: u8) -> TsUnit {
        let k = u32::from(v & 0x7f);
        if v & 0x80 != 0 {
            TsUnit::Pow2(k)
        } else if k <= 9 {
            TsUnit::NanosPer(10u64.pow(9 - k))
        } else {
            TsUnit::PerNano(10u128.checked_pow(k - 9).unwrap_or(0))
        }
    }

    /// Nanoseconds in `units`, truncated as Wireshark does, saturated to i64.
    #[inline]
    fn to_nanos(self, units: u64) -> i64 {
        let ns: u128 = match self {
            TsUnit::NanosPer(m) => u128::from(units) * u128::from(m),
            TsUnit::PerNano(0) => 0,
            TsUnit::PerNano(d) => u128::from(units) / d,
            // units < 2^64 and 10^9 < 2^30, so the product fits; k <= 127 keeps the shift in range.
            TsUnit::Pow2(k) => (u128::from(units) * 1_000_000_000) >> k,
        };
        i64::try_from(ns).unwrap_or(i64::MAX)
    }
}

#[derive(Copy, Clone, Debug)]
struct Iface {
    link: LinkType,
    snaplen: u32,
    unit: TsUnit,
    offset_ns: i64,
}

impl Iface {
    /// Parses an interface description block body (fields after the block header).
    fn parse(e: Endian, body: &[u8]) -> Option<Iface> {
        let link = LinkType::from_linktype(u32::from(e.u16(body, 0)?));
        let snaplen = e.u32(body, 4)?;
        let mut unit = TsUnit::NanosPer(1000);
        let mut offset_ns = 0i64;
        let mut opts = body.get(8..).unwrap_or_default();
        // Options are lenient: a malformed option list ends the list, the interface stays usable.
        while let (Some(code), Some(len)) = (e.u16(opts, 0), e.u16(opts, 2)) {
            if code == OPT_ENDOFOPT {
                break;
            }
            let len = usize::from(len);
            let Some(value) = opts.get(4..4 + len) else { break };
            match (code, value) {
                (OPT_IF_TSRESOL, [v]) => unit = TsUnit::from_tsresol(*v),
                (OPT_IF_TSOFFSET, v) if v.len() == 8 => {
                    let secs = e.u64(v, 0).unwrap_or(0) as i64;
                    offset_ns = secs.saturating_mul(1_000_000_000);
                }
                _ => {}
            }
            // len <= 65535, so no overflow; options are padded to 32 bits.
            opts = opts.get(4 + ((len + 3) & !3)..).unwrap_or_default();
        }
        Some(Iface { link, snaplen, unit, offset_ns })
    }

    #[inline]
    fn timestamp(&self, hi: u32, lo: u32) -> Timestamp {
        let units = (u64::from(hi) << 32) | u64::from(lo);
        Timestamp(self.unit.to_nanos(units).saturating_add(self.offset_ns))
    }
}

enum State {
    Pcap {
        endian: Endian,
        /// Nanoseconds per unit of the record's fractional timestamp.
        frac_ns: i64,
        link: LinkType,
    },
    Pcapng {
        endian: Endian,
        ifaces: Vec<Iface>,
        /// Time of the last timed packet, given to simple packet blocks (which carry none) so the
        /// pipeline's clock does not jump back to 1970.
        last_ts: Timestamp,
    },
}

/// A frame found in the window: its bytes are `len` bytes at offset `at` of the capture.
#[derive(Copy, Clone, Debug)]
struct Found {
    ts: Timestamp,
    link: LinkType,
    at: u64,
    len: usize,
    orig_len: u32,
}

enum Step {
    Frame(Found),
    /// Damage after which reading goes on.
    Damage(CaptureDamage),
    /// Damage after which nothing more can be read.
    Fatal(CaptureDamage),
    End,
}

/// One frame with its own copy of the bytes, for callers that want an [`Iterator`] (tests, tools)
/// rather than [`Frames::next_frame`]'s borrowed frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedFrame {
    pub ts: Timestamp,
    pub link: LinkType,
    pub data: Vec<u8>,
    pub orig_len: u32,
}

impl OwnedFrame {
    pub fn of(f: &Frame<'_>) -> OwnedFrame {
        OwnedFrame { ts: f.ts, link: f.link, data: f.data.to_vec(), orig_len: f.orig_len }
    }

    pub fn frame(&self) -> Frame<'_> {
        Frame { ts: self.ts, link: self.link, data: &self.data, orig_len: self.orig_len }
    }
}

/// The frames of one capture, in file order. Yields `Err` for damage; after damage that cannot
/// be resynchronised it ends.
///
/// [`next_frame`](Frames::next_frame) lends each frame out of the window (no copy); the
/// [`Iterator`] gives [`OwnedFrame`]s.
pub struct Frames {
    win: Window,
    /// Offset in the capture of the next record or block.
    pos: u64,
    state: State,
    done: bool,
    /// Seconds of the last good pcap record, what a resynchronised record's time must be near.
    last_sec: Option<u32>,
    /// Stored bytes read so far (compressed ones, for gzip input).
    consumed: Arc<AtomicU64>,
}

impl Frames {
    /// Bytes of the stored capture read so far (compressed ones for gzip input), for progress
    /// against [`CaptureFile::size`]. Reading runs up to one chunk ahead of the frames handed out.
    pub fn position(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }

    /// The next frame, borrowed until the next call, or the next damage.
    #[inline]
    pub fn next_frame(&mut self) -> Option<Result<Frame<'_>, CaptureDamage>> {
        match self.advance()? {
            Ok(f) => Some(Ok(self.frame(&f))),
            Err(d) => Some(Err(d)),
        }
    }

    fn frame(&self, f: &Found) -> Frame<'_> {
        let data = self.win.from(f.at).get(..f.len).unwrap_or_default();
        Frame { ts: f.ts, link: f.link, data, orig_len: f.orig_len }
    }

    #[inline]
    fn advance(&mut self) -> Option<Result<Found, CaptureDamage>> {
        if self.done {
            return self.win.failure.take().map(Err);
        }
        let step = match self.state {
            State::Pcap { endian, frac_ns, link } => self.next_pcap(endian, frac_ns, link),
            State::Pcapng { .. } => self.next_pcapng(),
        };
        match step {
            Step::Frame(f) => Some(Ok(f)),
            Step::Damage(d) => Some(Err(d)),
            Step::Fatal(d) => {
                self.done = true;
                Some(Err(d))
            }
            Step::End => {
                self.done = true;
                self.win.failure.take().map(Err)
            }
        }
    }

    fn damage(&self, offset: u64, kind: DamageKind) -> CaptureDamage {
        CaptureDamage { offset, kind }
    }

    #[inline]
    fn next_pcap(&mut self, endian: Endian, frac_ns: i64, link: LinkType) -> Step {
        let pos = self.pos;
        self.win.fill(pos, pos + PCAP_RECORD_HEADER_LEN as u64);
        let rest = self.win.from(pos);
        if rest.is_empty() {
            return Step::End;
        }
        let Some(h) = rest.get(..PCAP_RECORD_HEADER_LEN) else {
            let kind = DamageKind::Truncated { needed: PCAP_RECORD_HEADER_LEN as u64, available: rest.len() as u64 };
            return Step::Fatal(self.damage(pos, kind));
        };
        let (Some(sec), Some(frac), Some(incl), Some(orig)) =
            (endian.u32(h, 0), endian.u32(h, 4), endian.u32(h, 8), endian.u32(h, 12))
        else {
            return Step::End;
        };
        if incl > MAX_PCAP_CAPLEN {
            let kind = DamageKind::CapLenTooLarge { len: incl, max: MAX_PCAP_CAPLEN };
            return self.resync_pcap(pos, kind, endian, frac_ns);
        }
        let end = PCAP_RECORD_HEADER_LEN + incl as usize;
        self.win.fill(pos, pos + end as u64);
        let available = self.win.from(pos).len();
        if available < end {
            // Past the end: a cut capture, unless a damaged length hides records after it.
            let kind = DamageKind::Truncated { needed: end as u64, available: available as u64 };
            return self.resync_pcap(pos, kind, endian, frac_ns);
        }
        self.pos = pos + end as u64;
        self.last_sec = Some(sec);
        // sec < 2^32 and frac * 1000 < 2^42: the sum stays far inside i64.
        let ts = Timestamp(i64::from(sec) * 1_000_000_000 + i64::from(frac) * frac_ns);
        Step::Frame(Found { ts, link, at: pos + PCAP_RECORD_HEADER_LEN as u64, len: incl as usize, orig_len: orig })
    }

    fn next_pcapng(&mut self) -> Step {
        loop {
            let pos = self.pos;
            self.win.fill(pos, pos + BLOCK_OVERHEAD as u64);
            let State::Pcapng { endian, .. } = &mut self.state else { return Step::End };
            let rest = self.win.from(pos);
            if rest.is_empty() {
                return Step::End;
            }
            let Some(head) = rest.get(..BLOCK_OVERHEAD) else {
                let kind = DamageKind::Truncated { needed: BLOCK_OVERHEAD as u64, available: rest.len() as u64 };
                return Step::Fatal(CaptureDamage { offset: pos, kind });
            };
            if head.get(..4) == Some(&SHB_TYPE_BYTES[..]) {
                match Endian::from_byte_order_magic(head.get(8..12).unwrap_or_default()) {
                    Ok(e) => *endian = e,
                    Err(magic) => return self.resync(pos, DamageKind::BadByteOrderMagic { magic }),
                }
            }
            let e = *endian;
            let (Some(btype), Some(blen)) = (e.u32(head, 0), e.u32(head, 4)) else { return Step::End };
            let len = blen as usize;
            if len < BLOCK_OVERHEAD || len % 4 != 0 || blen > MAX_BLOCK_LEN {
                return self.resync(pos, DamageKind::BadBlockLength { len: blen });
            }
            self.win.fill(pos, pos + len as u64);
            let available = self.win.from(pos).len();
            if available < len {
                // Either the capture was cut or the length is garbage; if a good block follows,
                // it was garbage.
                let kind = DamageKind::Truncated { needed: u64::from(blen), available: available as u64 };
                return match self.find_block(pos) {
                    Some(next) => {
                        self.pos = next;
                        Step::Damage(CaptureDamage { offset: pos, kind: DamageKind::BadBlockLength { len: blen } })
                    }
                    None => Step::Fatal(CaptureDamage { offset: pos, kind }),
                };
            }
            let State::Pcapng { ifaces, last_ts, .. } = &mut self.state else { return Step::End };
            let block = self.win.from(pos).get(..len).unwrap_or_default();
            let trailer = e.u32(block, len - 4).unwrap_or(0);
            if trailer != blen {
                return self.resync(pos, DamageKind::TrailerMismatch { header: blen, trailer });
            }
            let body = block.get(8..len - 4).unwrap_or_default();
            let body_at = pos + 8;
            self.pos = pos + len as u64;
            let short = |min: usize| -> Option<Step> {
                (body.len() < min).then_some(Step::Damage(CaptureDamage {
                    offset: pos,
                    kind: DamageKind::ShortBlock { block_type: btype, len: blen },
                }))
            };
            match btype {
                BLOCK_SHB => {
                    if let Some(s) = short(16) {
                        return s;
                    }
                    ifaces.clear();
                }
                BLOCK_IDB => {
                    if ifaces.len() >= MAX_INTERFACES {
                        let kind = DamageKind::TooManyInterfaces { max: MAX_INTERFACES };
                        return Step::Damage(CaptureDamage { offset: pos, kind });
                    }
                    match Iface::parse(e, body) {
                        Some(i) => ifaces.push(i),
                        None => return short(8).unwrap_or(Step::End),
                    }
                }
                BLOCK_EPB | BLOCK_PB => {
                    if let Some(s) = short(20) {
                        return s;
                    }
                    let id = if btype == BLOCK_EPB {
                        e.u32(body, 0).unwrap_or(u32::MAX)
                    } else {
                        u32::from(e.u16(body, 0).unwrap_or(u16::MAX))
                    };
                    let (Some(hi), Some(lo), Some(cap), Some(orig)) =
                        (e.u32(body, 4), e.u32(body, 8), e.u32(body, 12), e.u32(body, 16))
                    else {
                        return Step::End;
                    };
                    let Some(iface) = ifaces.get(id as usize) else {
                        let kind = DamageKind::UnknownInterface { id, known: ifaces.len() };
                        return Step::Damage(CaptureDamage { offset: pos, kind });
                    };
                    let room = body.len().saturating_sub(20);
                    if cap as usize > room {
                        let kind = DamageKind::PacketOverrunsBlock { cap_len: cap, room: room as u32 };
                        return Step::Damage(CaptureDamage { offset: pos, kind });
                    }
                    let ts = iface.timestamp(hi, lo);
                    *last_ts = ts;
                    let at = body_at + 20;
                    return Step::Frame(Found { ts, link: iface.link, at, len: cap as usize, orig_len: orig });
                }
                BLOCK_SPB => {
                    if let Some(s) = short(4) {
                        return s;
                    }
                    let orig = e.u32(body, 0).unwrap_or(0);
                    let Some(iface) = ifaces.first() else {
                        let kind = DamageKind::UnknownInterface { id: 0, known: 0 };
                        return Step::Damage(CaptureDamage { offset: pos, kind });
                    };
                    // The captured length is implied: the original length cut to the snap length
                    // (0 = none), and never past the block.
                    let room = body.len().saturating_sub(4);
                    let mut cap = (orig as usize).min(room);
                    if iface.snaplen != 0 {
                        cap = cap.min(iface.snaplen as usize);
                    }
                    let found = Found { ts: *last_ts, link: iface.link, at: body_at + 4, len: cap, orig_len: orig };
                    return Step::Frame(found);
                }
                _ => {}
            }
        }
    }

    /// Reports damage at `at` and continues at the next plausible pcap record, or ends if none.
    fn resync_pcap(&mut self, at: u64, kind: DamageKind, endian: Endian, frac_ns: i64) -> Step {
        let d = CaptureDamage { offset: at, kind };
        // A record that runs past the end is most often a cut capture, whose last bytes are part
        // of one packet: searching them is worth it only with a good record's time to hold on to.
        let search = !matches!(d.kind, DamageKind::Truncated { .. }) || self.last_sec.is_some();
        let mut q = at + 1;
        let found = loop {
            if !search {
                break None;
            }
            self.win.fill(q, q + PCAP_RECORD_HEADER_LEN as u64);
            if self.win.from(q).len() < PCAP_RECORD_HEADER_LEN {
                break None;
            }
            // Two plausible records in a row, or a last one that ends the file exactly near the
            // last good record's time: one alone is too easily found in packet bytes.
            if let Some(end) = self.pcap_record_end(q, q, endian, frac_ns) {
                if (self.last_sec.is_some() && self.win.ends_at(q, end))
                    || self.pcap_record_end(q, end, endian, frac_ns).is_some()
                {
                    break Some(q);
                }
            }
            q += 1;
        };
        match found {
            Some(next) => {
                self.pos = next;
                Step::Damage(d)
            }
            None => Step::Fatal(d),
        }
    }

    /// The end of a plausible pcap record at `q`: its lengths fit the file and each other, its
    /// fraction is below one second, and its time is within a day before and a year after the
    /// last good record's (any time when there was none). Bytes before `keep` may be dropped.
    fn pcap_record_end(&mut self, keep: u64, q: u64, endian: Endian, frac_ns: i64) -> Option<u64> {
        self.win.fill(keep, q.checked_add(PCAP_RECORD_HEADER_LEN as u64)?);
        let h = self.win.from(q).get(..PCAP_RECORD_HEADER_LEN)?;
        let (sec, frac, incl, orig) = (endian.u32(h, 0)?, endian.u32(h, 4)?, endian.u32(h, 8)?, endian.u32(h, 12)?);
        let end = q.checked_add(PCAP_RECORD_HEADER_LEN as u64)?.checked_add(u64::from(incl))?;
        let frac_ok = i64::from(frac) * frac_ns < 1_000_000_000;
        let time_ok = self.last_sec.is_none_or(|last| {
            let (sec, last) = (i64::from(sec), i64::from(last));
            (last - 86_400..=last + 366 * 86_400).contains(&sec)
        });
        if !(incl > 0 && incl <= MAX_PCAP_CAPLEN && orig >= incl && frac_ok && time_ok) {
            return None;
        }
        self.win.fill(keep, end);
        (self.win.end() >= end).then_some(end)
    }

    /// Reports damage at `at` and continues at the next well-formed block, or ends if none.
    fn resync(&mut self, at: u64, kind: DamageKind) -> Step {
        let d = CaptureDamage { offset: at, kind };
        match self.find_block(at) {
            Some(next) => {
                self.pos = next;
                Step::Damage(d)
            }
            None => Step::Fatal(d),
        }
    }

    /// The offset of the first plausible block after `at`, at 4-byte steps (blocks are multiples
    /// of 4 bytes). Plausible: a known type, a length that fits and matches its trailer, and for
    /// packet blocks a known interface and a captured length inside the block. Scans never
    /// overlap (the next damage is past the block found), so the total work stays linear.
    fn find_block(&mut self, at: u64) -> Option<u64> {
        let State::Pcapng { endian, ifaces, .. } = &self.state else { return None };
        let mut q = at.checked_add(4)?;
        loop {
            self.win.fill(q, q + BLOCK_OVERHEAD as u64);
            if self.win.from(q).len() < BLOCK_OVERHEAD {
                return None;
            }
            if plausible_block(&mut self.win, q, *endian, ifaces) {
                return Some(q);
            }
            q += 4;
        }
    }
}

fn plausible_block(win: &mut Window, q: u64, section_endian: Endian, ifaces: &[Iface]) -> bool {
    let rest = win.from(q);
    let mut e = section_endian;
    if rest.get(..4) == Some(&SHB_TYPE_BYTES[..]) {
        match Endian::from_byte_order_magic(rest.get(8..12).unwrap_or_default()) {
            Ok(se) => e = se,
            Err(_) => return false,
        }
    }
    let (Some(t), Some(l)) = (e.u32(rest, 0), e.u32(rest, 4)) else { return false };
    let known = matches!(
        t,
        BLOCK_EPB
            | BLOCK_PB
            | BLOCK_SPB
            | BLOCK_IDB
            | BLOCK_SHB
            | BLOCK_NRB
            | BLOCK_ISB
            | BLOCK_DSB
            | BLOCK_CUSTOM
            | BLOCK_CUSTOM_NOCOPY
    );
    let len = l as usize;
    if !known || len < BLOCK_OVERHEAD || len % 4 != 0 || l > MAX_BLOCK_LEN {
        return false;
    }
    win.fill(q, q + len as u64);
    let rest = win.from(q);
    if len > rest.len() || e.u32(rest, len - 4) != Some(l) {
        return false;
    }
    let body = rest.get(8..len - 4).unwrap_or_default();
    match t {
        BLOCK_EPB | BLOCK_PB => {
            let id = if t == BLOCK_EPB { e.u32(body, 0) } else { e.u16(body, 0).map(u32::from) };
            match (id, e.u32(body, 12)) {
                (Some(id), Some(cap)) => {
                    (id as usize) < ifaces.len() && (cap as usize) <= body.len().saturating_sub(20)
                }
                _ => false,
            }
        }
        BLOCK_SPB => !ifaces.is_empty() && body.len() >= 4,
        BLOCK_IDB => body.len() >= 8,
        BLOCK_SHB => body.len() >= 16,
        _ => true,
    }
}

impl Iterator for Frames {
    type Item = Result<OwnedFrame, CaptureDamage>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_frame()?.map(|f| OwnedFrame::of(&f)))
    }
}

impl std::iter::FusedIterator for Frames {}

/// Several captures merged in timestamp order (k-way; equal times keep file order). Items carry
/// the index of the source they came from. Damage is passed on as soon as it is read.
///
/// Each source holds its next frame in its own window; the one handed out stays valid until the
/// next call.
pub struct Merge {
    sources: Vec<Frames>,
    heads: Vec<Option<Found>>,
    /// Sources whose head must be read before the next pick.
    stale: Vec<bool>,
}

impl Merge {
    pub fn new(sources: Vec<Frames>) -> Merge {
        let n = sources.len();
        Merge { sources, heads: vec![None; n], stale: vec![true; n] }
    }

    /// Merges the frames of `files`; item indices are positions in `files`.
    pub fn of(files: &[CaptureFile]) -> Merge {
        Merge::new(files.iter().map(CaptureFile::frames).collect())
    }

    /// Stored bytes read so far over all sources.
    pub fn position(&self) -> u64 {
        self.sources.iter().map(Frames::position).sum()
    }

    /// Number of sources.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// The next frame in time order (borrowed until the next call) or damage, with the index of
    /// its source.
    pub fn next_frame(&mut self) -> Option<(usize, Result<Frame<'_>, CaptureDamage>)> {
        for (i, ((src, head), stale)) in
            self.sources.iter_mut().zip(self.heads.iter_mut()).zip(self.stale.iter_mut()).enumerate()
        {
            if !*stale {
                continue;
            }
            match src.advance() {
                Some(Ok(f)) => {
                    *head = Some(f);
                    *stale = false;
                }
                // Stays stale: the source is read again on the next call.
                Some(Err(d)) => return Some((i, Err(d))),
                None => {
                    *head = None;
                    *stale = false;
                }
            }
        }
        // A linear scan: captures merged are few, and strict `<` keeps ties in file order.
        let mut best: Option<(usize, Timestamp)> = None;
        for (i, h) in self.heads.iter().enumerate() {
            if let Some(f) = h {
                if best.is_none_or(|(_, t)| f.ts < t) {
                    best = Some((i, f.ts));
                }
            }
        }
        let (i, _) = best?;
        let f = self.heads.get_mut(i)?.take()?;
        if let Some(s) = self.stale.get_mut(i) {
            *s = true;
        }
        Some((i, Ok(self.sources.get(i)?.frame(&f))))
    }
}

impl Iterator for Merge {
    type Item = (usize, Result<OwnedFrame, CaptureDamage>);

    fn next(&mut self) -> Option<Self::Item> {
        let (i, r) = self.next_frame()?;
        Some((i, r.map(|f| OwnedFrame::of(&f))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol_extremes_do_not_overflow() {
        // 2^-127 s: any 64-bit count is under a nanosecond.
        assert_eq!(TsUnit::from_tsresol(0xff).to_nanos(u64::MAX), 0);
        // 10^-127 s: the divisor does not fit u128; the time is 0.
        assert_eq!(TsUnit::from_tsresol(0x7f).to_nanos(u64::MAX), 0);
        // 1 s units: u64::MAX seconds saturates.
        assert_eq!(TsUnit::from_tsresol(0).to_nanos(u64::MAX), i64::MAX);
        // 2^0 s, the same.
        assert_eq!(TsUnit::from_tsresol(0x80).to_nanos(3), 3_000_000_000);
        // 10^-38 s still has a u128 divisor: 10^29 units per ns.
        assert_eq!(TsUnit::from_tsresol(38), TsUnit::PerNano(10u128.pow(29)));
    }

    #[test]
    fn endian_reads_are_checked() {
        let b = [1, 2, 3];
        assert_eq!(Endian::Little.u16(&b, 1), Some(0x0302));
        assert_eq!(Endian::Big.u16(&b, 1), Some(0x0203));
        assert_eq!(Endian::Little.u32(&b, 0), None);
        assert_eq!(Endian::Big.u64(&b, usize::MAX), None);
    }

    #[test]
    fn idb_options_past_the_block_end_the_list() {
        // linktype 1, snaplen 0, then an option claiming 200 bytes.
        let body = [1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 200, 0, 3];
        let i = Iface::parse(Endian::Little, &body).unwrap();
        assert_eq!(i.link, LinkType::Ethernet);
        assert_eq!(i.unit, TsUnit::NanosPer(1000));
    }
}
