//! pcap and pcapng files, memory-mapped and read in place.
//!
//! A [`CaptureFile`] maps the capture (or, for gzip input, its decompressed copy in an anonymous
//! temporary file) and [`Frames`] walks the mapping, handing out [`Frame`]s that borrow their bytes
//! from it: no copy and no allocation per packet. [`Merge`] interleaves several captures in
//! timestamp order.
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

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::iter::FusedIterator;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use memmap2::{Advice, Mmap};

use super::{Frame, LinkType};
use crate::timestamp::Timestamp;

/// Largest captured length accepted in a legacy pcap record. Real snap lengths stay far below it
/// (262144 is libpcap's maximum, BIG TCP super-packets are under 512 KiB); a bigger value is a
/// garbage length field, and reporting it as such beats treating the rest of the file as one frame.
pub const MAX_PCAP_CAPLEN: u32 = 16 << 20;

/// Interface descriptions kept per pcapng section; more is a hostile file, not a capture.
pub const MAX_INTERFACES: usize = 1 << 16;

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
    /// A pcapng block length is below the minimum, not a multiple of 4, or runs past the end
    /// while later data still parses.
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
}

/// Which format a capture is in, from its header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Legacy pcap: one link type for the whole file.
    Pcap { big_endian: bool, nanos: bool, version: (u16, u16), snaplen: u32, link: LinkType },
    /// pcapng; the byte order is that of the first section (later sections may differ).
    Pcapng { big_endian: bool },
}

enum Backing {
    Map(Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// One opened capture file.
pub struct CaptureFile {
    path: PathBuf,
    backing: Backing,
    format: CaptureFormat,
    gzip: bool,
    gzip_damage: Option<CaptureDamage>,
}

impl fmt::Debug for CaptureFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureFile")
            .field("path", &self.path)
            .field("size", &self.size())
            .field("format", &self.format)
            .field("gzip", &self.gzip)
            .finish()
    }
}

impl CaptureFile {
    /// Opens and maps a pcap or pcapng capture, gzip-compressed or not (told by magic, not name).
    pub fn open(path: &Path) -> Result<CaptureFile, CaptureError> {
        let io_err = |source| CaptureError::Io { path: path.to_path_buf(), source };
        let mut file = File::open(path).map_err(io_err)?;
        let mut magic = [0u8; 2];
        let got = read_up_to(&mut file, &mut magic).map_err(io_err)?;
        if got == 2 && magic == GZIP_MAGIC {
            let compressed = File::open(path).map_err(io_err)?;
            // Anonymous and already unlinked: the disk holds the decompressed capture, not the
            // heap, and nothing is left behind if we die.
            let mut tmp = tempfile::tempfile().map_err(io_err)?;
            let (len, damage) = inflate(compressed, &mut tmp).map_err(io_err)?;
            tmp.flush().map_err(io_err)?;
            let backing = if len == 0 { Backing::Owned(Vec::new()) } else { Backing::Map(map(&tmp).map_err(io_err)?) };
            return CaptureFile::new(path.to_path_buf(), backing, true, damage);
        }
        let len = file.metadata().map_err(io_err)?.len();
        let backing = if len == 0 { Backing::Owned(Vec::new()) } else { Backing::Map(map(&file).map_err(io_err)?) };
        CaptureFile::new(path.to_path_buf(), backing, false, None)
    }

    /// A capture held in memory (`name` is used in messages). gzip is detected as in [`open`];
    /// the decompressed copy is kept in memory, so this is for small captures.
    ///
    /// [`open`]: CaptureFile::open
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<CaptureFile, CaptureError> {
        let path = name.into();
        if bytes.starts_with(&GZIP_MAGIC) {
            let mut out = Vec::new();
            let (_, damage) = inflate(bytes.as_slice(), &mut out)
                .map_err(|source| CaptureError::Io { path: path.clone(), source })?;
            return CaptureFile::new(path, Backing::Owned(out), true, damage);
        }
        CaptureFile::new(path, Backing::Owned(bytes), false, None)
    }

    fn new(
        path: PathBuf,
        backing: Backing,
        gzip: bool,
        gzip_error: Option<(u64, io::Error)>,
    ) -> Result<CaptureFile, CaptureError> {
        let bytes = backing.bytes();
        let format = match detect(bytes) {
            Ok(f) => f,
            Err(e) => {
                // A gzip stream that broke before a whole header came out is not a capture with
                // damage, it is no capture: say why.
                if let Some((_, source)) = gzip_error {
                    return Err(CaptureError::Gzip { path, source });
                }
                return Err(e.into_error(path, bytes));
            }
        };
        let gzip_damage = gzip_error.map(|(decompressed, e)| CaptureDamage {
            offset: decompressed,
            kind: DamageKind::Gzip { decompressed, reason: e.to_string() },
        });
        Ok(CaptureFile { path, backing, format, gzip, gzip_damage })
    }

    /// Iterates over the frames from the start of the capture.
    pub fn frames(&self) -> Frames<'_> {
        let data = self.backing.bytes();
        let (pos, state) = match self.format {
            CaptureFormat::Pcap { big_endian, nanos, link, .. } => (
                PCAP_HEADER_LEN,
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
        Frames { data, pos, state, done: false, tail: self.gzip_damage.clone(), last_sec: None }
    }

    /// Bytes of the (decompressed) capture, for progress against [`Frames::position`].
    pub fn size(&self) -> u64 {
        self.backing.bytes().len() as u64
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

// The one unsafe operation of the module, kept to this item.
#[allow(unsafe_code)]
fn map(file: &File) -> io::Result<Mmap> {
    // SAFETY: the map is read-only and only ever viewed as `&[u8]`; the hazard memmap2 names is the
    // file being truncated or rewritten while mapped. For gzip input the file is our own unlinked
    // temporary, which nobody else can reach. For a plain capture, tapir's contract is that offline
    // captures are finished, read-only inputs (evidence is never rewritten in place); a capture
    // still being written must be read through a live source instead.
    let map = unsafe { Mmap::map(file)? };
    // Only a hint: reading works the same if the kernel ignores it.
    let _ = map.advise(Advice::Sequential);
    Ok(map)
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

/// Decompresses all gzip members of `src` into `dst`. A broken stream is not an error here: what
/// came out before the break is returned with the decoder's error, so it can still be read. Only
/// a failure to write `dst` is an error.
fn inflate(src: impl Read, dst: &mut impl Write) -> io::Result<(u64, Option<(u64, io::Error)>)> {
    let mut dec = MultiGzDecoder::new(io::BufReader::with_capacity(1 << 16, src));
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        match dec.read(&mut buf) {
            Ok(0) => return Ok((total, None)),
            Ok(n) => {
                dst.write_all(buf.get(..n).unwrap_or_default())?;
                total = total.saturating_add(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Ok((total, Some((total, e)))),
        }
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

enum Step<'a> {
    Frame(Frame<'a>),
    /// Damage after which reading goes on.
    Damage(CaptureDamage),
    /// Damage after which nothing more can be read.
    Fatal(CaptureDamage),
    End,
}

/// The frames of one capture, in file order. Yields `Err` for damage; after damage that cannot
/// be resynchronised it ends.
pub struct Frames<'a> {
    data: &'a [u8],
    pos: usize,
    state: State,
    done: bool,
    /// Damage to report after the last frame (a broken gzip stream).
    tail: Option<CaptureDamage>,
    /// Seconds of the last good pcap record, what a resynchronised record's time must be near.
    last_sec: Option<u32>,
}

impl<'a> Frames<'a> {
    /// Bytes of the capture consumed so far.
    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    fn damage(&self, offset: usize, kind: DamageKind) -> CaptureDamage {
        CaptureDamage { offset: offset as u64, kind }
    }

    #[inline]
    fn next_pcap(&mut self, endian: Endian, frac_ns: i64, link: LinkType) -> Step<'a> {
        let data = self.data;
        let pos = self.pos;
        let rest = data.get(pos..).unwrap_or_default();
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
        let Some(bytes) = rest.get(PCAP_RECORD_HEADER_LEN..end) else {
            // Past the end: a cut capture, unless a damaged length hides records after it.
            let kind = DamageKind::Truncated { needed: end as u64, available: rest.len() as u64 };
            return self.resync_pcap(pos, kind, endian, frac_ns);
        };
        self.pos = pos + end;
        self.last_sec = Some(sec);
        // sec < 2^32 and frac * 1000 < 2^42: the sum stays far inside i64.
        let ts = Timestamp(i64::from(sec) * 1_000_000_000 + i64::from(frac) * frac_ns);
        Step::Frame(Frame { ts, link, data: bytes, orig_len: orig })
    }

    fn next_pcapng(&mut self) -> Step<'a> {
        loop {
            let data = self.data;
            let pos = self.pos;
            let State::Pcapng { endian, ifaces, last_ts } = &mut self.state else { return Step::End };
            let rest = data.get(pos..).unwrap_or_default();
            if rest.is_empty() {
                return Step::End;
            }
            let Some(head) = rest.get(..BLOCK_OVERHEAD) else {
                let kind = DamageKind::Truncated { needed: BLOCK_OVERHEAD as u64, available: rest.len() as u64 };
                return Step::Fatal(CaptureDamage { offset: pos as u64, kind });
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
            if len < BLOCK_OVERHEAD || len % 4 != 0 {
                return self.resync(pos, DamageKind::BadBlockLength { len: blen });
            }
            let Some(block) = rest.get(..len) else {
                // Either the capture was cut or the length is garbage; if a good block follows,
                // it was garbage.
                let kind = DamageKind::Truncated { needed: u64::from(blen), available: rest.len() as u64 };
                return match self.find_block(pos) {
                    Some(next) => {
                        self.pos = next;
                        Step::Damage(CaptureDamage {
                            offset: pos as u64,
                            kind: DamageKind::BadBlockLength { len: blen },
                        })
                    }
                    None => Step::Fatal(CaptureDamage { offset: pos as u64, kind }),
                };
            };
            let trailer = e.u32(block, len - 4).unwrap_or(0);
            if trailer != blen {
                return self.resync(pos, DamageKind::TrailerMismatch { header: blen, trailer });
            }
            let body = block.get(8..len - 4).unwrap_or_default();
            self.pos = pos + len;
            let short = |min: usize| -> Option<Step<'a>> {
                (body.len() < min).then_some(Step::Damage(CaptureDamage {
                    offset: pos as u64,
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
                        return Step::Damage(CaptureDamage { offset: pos as u64, kind });
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
                        return Step::Damage(CaptureDamage { offset: pos as u64, kind });
                    };
                    let room = body.len().saturating_sub(20);
                    let Some(bytes) = body.get(20..20usize.saturating_add(cap as usize)) else {
                        let kind = DamageKind::PacketOverrunsBlock { cap_len: cap, room: room as u32 };
                        return Step::Damage(CaptureDamage { offset: pos as u64, kind });
                    };
                    let ts = iface.timestamp(hi, lo);
                    *last_ts = ts;
                    return Step::Frame(Frame { ts, link: iface.link, data: bytes, orig_len: orig });
                }
                BLOCK_SPB => {
                    if let Some(s) = short(4) {
                        return s;
                    }
                    let orig = e.u32(body, 0).unwrap_or(0);
                    let Some(iface) = ifaces.first() else {
                        let kind = DamageKind::UnknownInterface { id: 0, known: 0 };
                        return Step::Damage(CaptureDamage { offset: pos as u64, kind });
                    };
                    // The captured length is implied: the original length cut to the snap length
                    // (0 = none), and never past the block.
                    let room = body.len().saturating_sub(4);
                    let mut cap = (orig as usize).min(room);
                    if iface.snaplen != 0 {
                        cap = cap.min(iface.snaplen as usize);
                    }
                    let bytes = body.get(4..4usize.saturating_add(cap)).unwrap_or_default();
                    return Step::Frame(Frame { ts: *last_ts, link: iface.link, data: bytes, orig_len: orig });
                }
                _ => {}
            }
        }
    }

    /// Reports damage at `at` and continues at the next plausible pcap record, or ends if none.
    fn resync_pcap(&mut self, at: usize, kind: DamageKind, endian: Endian, frac_ns: i64) -> Step<'a> {
        let d = CaptureDamage { offset: at as u64, kind };
        // A record that runs past the end is most often a cut capture, whose last bytes are part
        // of one packet: searching them is worth it only with a good record's time to hold on to.
        let search = !matches!(d.kind, DamageKind::Truncated { .. }) || self.last_sec.is_some();
        let found = (at + 1..self.data.len().saturating_sub(PCAP_RECORD_HEADER_LEN - 1)).find(|&q| {
            // Two plausible records in a row, or a last one that ends the file exactly near the
            // last good record's time: one alone is too easily found in packet bytes.
            search
                && self.pcap_record_end(q, endian, frac_ns).is_some_and(|end| {
                    (end == self.data.len() && self.last_sec.is_some())
                        || self.pcap_record_end(end, endian, frac_ns).is_some()
                })
        });
        match found {
            Some(next) => {
                self.pos = next;
                Step::Damage(d)
            }
            None => {
                self.pos = self.data.len();
                Step::Fatal(d)
            }
        }
    }

    /// The end of a plausible pcap record at `q`: its lengths fit the file and each other, its
    /// fraction is below one second, and its time is within a day before and a year after the
    /// last good record's (any time when there was none).
    fn pcap_record_end(&self, q: usize, endian: Endian, frac_ns: i64) -> Option<usize> {
        let h = self.data.get(q..q.checked_add(PCAP_RECORD_HEADER_LEN)?)?;
        let (sec, frac, incl, orig) = (endian.u32(h, 0)?, endian.u32(h, 4)?, endian.u32(h, 8)?, endian.u32(h, 12)?);
        let end = q.checked_add(PCAP_RECORD_HEADER_LEN)?.checked_add(incl as usize)?;
        let frac_ok = i64::from(frac) * frac_ns < 1_000_000_000;
        let time_ok = self.last_sec.is_none_or(|last| {
            let (sec, last) = (i64::from(sec), i64::from(last));
            (last - 86_400..=last + 366 * 86_400).contains(&sec)
        });
        (incl > 0 && incl <= MAX_PCAP_CAPLEN && orig >= incl && frac_ok && time_ok && end <= self.data.len())
            .then_some(end)
    }

    /// Reports damage at `at` and continues at the next well-formed block, or ends if none.
    fn resync(&mut self, at: usize, kind: DamageKind) -> Step<'a> {
        let d = CaptureDamage { offset: at as u64, kind };
        match self.find_block(at) {
            Some(next) => {
                self.pos = next;
                Step::Damage(d)
            }
            None => {
                self.pos = self.data.len();
                Step::Fatal(d)
            }
        }
    }

    /// The offset of the first plausible block after `at`, at 4-byte steps (blocks are multiples
    /// of 4 bytes). Plausible: a known type, a length that fits and matches its trailer, and for
    /// packet blocks a known interface and a captured length inside the block. Scans never
    /// overlap (the next damage is past the block found), so the total work stays linear.
    fn find_block(&self, at: usize) -> Option<usize> {
        let State::Pcapng { endian, ifaces, .. } = &self.state else { return None };
        let mut q = at.checked_add(4)?;
        while q.checked_add(BLOCK_OVERHEAD)? <= self.data.len() {
            if self.plausible_block(q, *endian, ifaces) {
                return Some(q);
            }
            q += 4;
        }
        None
    }

    fn plausible_block(&self, q: usize, section_endian: Endian, ifaces: &[Iface]) -> bool {
        let Some(rest) = self.data.get(q..) else { return false };
        let mut e = section_endian;
        if rest.get(..4) == Some(&SHB_TYPE_BYTES[..]) {
            match Endian::from_byte_order_magic(rest.get(8..12).unwrap_or_default()) {
                Ok(se) => e = se,
                Err(_) => return false,
            }
        }
        let (Some(t), Some(l)) = (e.u32(rest, 0), e.u32(rest, 4)) else { return false };
        let len = l as usize;
        if len < BLOCK_OVERHEAD || len % 4 != 0 || len > rest.len() || e.u32(rest, len - 4) != Some(l) {
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
            BLOCK_NRB | BLOCK_ISB | BLOCK_DSB | BLOCK_CUSTOM | BLOCK_CUSTOM_NOCOPY => true,
            _ => false,
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, CaptureDamage>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return self.tail.take().map(Err);
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
                self.tail.take().map(Err)
            }
        }
    }
}

impl FusedIterator for Frames<'_> {}

/// Several captures merged in timestamp order (k-way; equal times keep file order). Items carry
/// the index of the source they came from. Damage is passed on as soon as it is read.
pub struct Merge<'a> {
    sources: Vec<Frames<'a>>,
    heads: Vec<Option<Frame<'a>>>,
    /// Sources whose head must be read before the next pick.
    stale: Vec<bool>,
}

impl<'a> Merge<'a> {
    pub fn new(sources: Vec<Frames<'a>>) -> Merge<'a> {
        let n = sources.len();
        Merge { sources, heads: vec![None; n], stale: vec![true; n] }
    }

    /// Merges the frames of `files`; item indices are positions in `files`.
    pub fn of(files: &'a [CaptureFile]) -> Merge<'a> {
        Merge::new(files.iter().map(CaptureFile::frames).collect())
    }

    /// Bytes consumed so far over all sources (each reads at most one frame ahead).
    pub fn position(&self) -> u64 {
        self.sources.iter().map(Frames::position).sum()
    }

    /// Number of sources.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }
}

impl<'a> Iterator for Merge<'a> {
    type Item = (usize, Result<Frame<'a>, CaptureDamage>);

    fn next(&mut self) -> Option<Self::Item> {
        for (i, ((src, head), stale)) in
            self.sources.iter_mut().zip(self.heads.iter_mut()).zip(self.stale.iter_mut()).enumerate()
        {
            if !*stale {
                continue;
            }
            match src.next() {
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
        Some((i, Ok(f)))
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
