//! A video's fingerprint: what a stream copy keeps, whatever the container.
//!
//! A cron job that runs `ffmpeg -i clip.mp4 -c copy -f flv rtmp://...` (or `-f rtp`) re-wraps
//! the clip's coded pictures without touching them. The MP4 found in an uploaded image and the
//! FLV or Matroska file tapir rebuilds from the stream differ byte for byte, so their SHA-256s
//! never meet; their slices are the same. The fingerprint is the SHA-256 of the video coding
//! layer (VCL) NAL units in decoding order, each behind its 4-byte big-endian length, with the
//! number of pictures. Parameter sets, SEI and access unit delimiters are left out: a re-wrap
//! moves them (in band or in the `avcC`, an AUD per transport stream packet).
//!
//! Equal fingerprints mean every picture of one is in the other, in the same order: a picture
//! lost in transit changes it. H.264 and H.265 only (the codecs tapir depacketises).
//!
//! [`VideoPrint`] is fed access units (as NAL units, length-prefixed samples, Annex B or FLV
//! tag bodies); [`of_mp4`], [`of_flv`] and [`of_matroska`] read a file's first video track,
//! bounded (a box tree, tag or element past its bound ends the reading with `None`).

use std::io::{Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

/// The codec a fingerprint is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    H264,
    Hevc,
}

impl VideoCodec {
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264",
            VideoCodec::Hevc => "hevc",
        }
    }

    /// A NAL unit of the video coding layer (a slice), from its first header byte.
    fn is_vcl(self, nal: &[u8]) -> bool {
        let Some(b0) = nal.first() else { return false };
        match self {
            VideoCodec::H264 => (1..=5).contains(&(b0 & 0x1f)),
            VideoCodec::Hevc => (b0 >> 1) & 0x3f < 32,
        }
    }
}

/// What a fingerprint says: codec, SHA-256 (lower-case hex) and pictures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub codec: VideoCodec,
    pub sha256: String,
    pub frames: u64,
}

impl Fingerprint {
    /// The key two equal videos share.
    pub fn key(&self) -> String {
        format!("{}:{}", self.codec.name(), self.sha256)
    }
}

/// A fingerprint being computed, fed one access unit at a time.
pub struct VideoPrint {
    codec: Option<VideoCodec>,
    sha: ring::digest::Context,
    frames: u64,
    /// The NAL unit length size of the `avcC`/`hvcC` seen last (FLV, MP4).
    length_size: usize,
}

impl Default for VideoPrint {
    fn default() -> Self {
        VideoPrint { codec: None, sha: ring::digest::Context::new(&ring::digest::SHA256), frames: 0, length_size: 4 }
    }
}

impl std::fmt::Debug for VideoPrint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoPrint").field("codec", &self.codec).field("frames", &self.frames).finish()
    }
}

impl VideoPrint {
    /// One access unit of `codec`, as its NAL units (no start codes, no lengths). The first
    /// access unit's codec is the fingerprint's; one of another codec is not counted.
    pub fn access_unit<'a>(&mut self, codec: VideoCodec, nals: impl IntoIterator<Item = &'a [u8]>) {
        if *self.codec.get_or_insert(codec) != codec {
            return;
        }
        let mut any = false;
        for nal in nals.into_iter().filter(|n| codec.is_vcl(n)) {
            self.sha.update(&(nal.len() as u32).to_be_bytes());
            self.sha.update(nal);
            any = true;
        }
        self.frames += u64::from(any);
    }

    /// One access unit as NAL units behind `length_size`-byte lengths (an MP4 or FLV sample).
    /// A length past the sample ends it there.
    pub fn sample(&mut self, codec: VideoCodec, data: &[u8], length_size: usize) {
        let mut nals = Vec::new();
        let mut rest = data;
        while rest.len() >= length_size && length_size > 0 {
            let len = rest[..length_size].iter().fold(0usize, |n, b| n << 8 | usize::from(*b));
            let Some(nal) = rest.get(length_size..length_size + len) else { break };
            nals.push(nal);
            rest = &rest[length_size + len..];
        }
        self.access_unit(codec, nals);
    }

    /// One access unit in Annex B (start codes: an MPEG-TS PES payload). Trailing zero bytes
    /// before a start code belong to no NAL unit.
    pub fn annex_b(&mut self, codec: VideoCodec, data: &[u8]) {
        let mut starts = Vec::new();
        let mut i = 0;
        while i + 3 <= data.len() {
            if data[i..i + 3] == [0, 0, 1] {
                starts.push(i + 3);
                i += 3;
            } else {
                i += 1;
            }
        }
        let nals = starts.iter().enumerate().map(|(k, &at)| {
            let end = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
            let mut nal = data.get(at..end.max(at)).unwrap_or_default();
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            nal
        });
        self.access_unit(codec, nals.collect::<Vec<_>>());
    }

    /// The body of an FLV video tag or RTMP video message (legacy AVC/HEVC packets and
    /// Enhanced RTMP's `avc1`/`hvc1`): a decoder configuration gives the NAL length size, coded
    /// frames are access units; anything else is not video this reads.
    pub fn flv_video(&mut self, body: &[u8]) {
        let Some(p) = super::flv::video_packet(body) else { return };
        let codec = if p.hevc { VideoCodec::Hevc } else { VideoCodec::H264 };
        if p.config {
            if let Some(n) = length_size(codec, p.data) {
                self.length_size = n;
            }
        } else {
            self.sample(codec, p.data, self.length_size);
        }
    }

    /// Pictures counted so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The fingerprint, if any picture was fed.
    pub fn finish(self) -> Option<Fingerprint> {
        let codec = self.codec.filter(|_| self.frames > 0)?;
        Some(Fingerprint { codec, sha256: hex::encode(self.sha.finish()), frames: self.frames })
    }
}

/// The NAL length size an `avcC` (ISO 14496-15 5.3.3.1) or `hvcC` (8.3.3.1) gives.
fn length_size(codec: VideoCodec, record: &[u8]) -> Option<usize> {
    let at = match codec {
        VideoCodec::H264 => 4,
        VideoCodec::Hevc => 21,
    };
    let n = usize::from(record.get(at)? & 3) + 1;
    (n != 3).then_some(n)
}

/// The largest `moov` box read, and the largest sample or tag.
const MAX_MOOV: u64 = 64 << 20;
const MAX_SAMPLE: u64 = 32 << 20;

/// The fingerprint of the first H.264/H.265 video track of an MP4 (ISO BMFF) file of `len`
/// bytes, if it has one with a sample table (a fragmented MP4's samples are in its fragments:
/// not read).
pub fn of_mp4<R: Read + Seek>(r: &mut R, len: u64) -> Option<Fingerprint> {
    let moov = top_level_box(r, len, b"moov")?;
    let trak = boxes(&moov).filter(|(t, _)| t == b"trak").find_map(|(_, trak)| video_track(trak))?;
    let mut print = VideoPrint::default();
    // Samples do not overlap in a file a muxer wrote: reading more than the file is hostile.
    let mut read = 0u64;
    let mut sample = Vec::new();
    let whole = trak.each_sample(|offset, size| {
        read += size;
        if size > MAX_SAMPLE || offset.saturating_add(size) > len || read > len {
            return false;
        }
        sample.resize(size as usize, 0);
        r.seek(SeekFrom::Start(offset)).is_ok() && r.read_exact(&mut sample).is_ok() && {
            print.sample(trak.codec, &sample, trak.length_size);
            true
        }
    });
    whole.then(|| print.finish())?
}

/// The body of the first top-level box of type `kind`.
fn top_level_box<R: Read + Seek>(r: &mut R, len: u64, kind: &[u8; 4]) -> Option<Vec<u8>> {
    let mut at = 0u64;
    while at.checked_add(8)? <= len {
        r.seek(SeekFrom::Start(at)).ok()?;
        let mut h = [0u8; 16];
        r.read_exact(&mut h[..8]).ok()?;
        let mut size = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
        let mut header = 8;
        if size == 1 {
            r.read_exact(&mut h[8..]).ok()?;
            size = u64::from_be_bytes(h[8..16].try_into().ok()?);
            header = 16;
        } else if size == 0 {
            size = len - at;
        }
        if size < header || at.checked_add(size)? > len {
            return None;
        }
        if &h[4..8] == kind {
            if size - header > MAX_MOOV {
                return None;
            }
            let mut body = vec![0; (size - header) as usize];
            r.read_exact(&mut body).ok()?;
            return Some(body);
        }
        at += size;
    }
    None
}

/// The child boxes of a box body: (type, body). A malformed size ends the list.
fn boxes(body: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut rest = body;
    std::iter::from_fn(move || {
        let size = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let kind: [u8; 4] = rest.get(4..8)?.try_into().ok()?;
        let (header, size) = match size {
            1 => (16, usize::try_from(u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?)).ok()?),
            0 => (8, rest.len()),
            n => (8, n),
        };
        let b = rest.get(header..size)?;
        rest = &rest[size..];
        Some((kind, b))
    })
}

fn child<'a>(body: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(body).find(|(t, _)| t == kind).map(|(_, b)| b)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// What a video track's sample table says.
struct VideoTrack<'a> {
    codec: VideoCodec,
    length_size: usize,
    stsz: &'a [u8],
    stsc: &'a [u8],
    chunk_offsets: Vec<u64>,
}

fn video_track(trak: &[u8]) -> Option<VideoTrack<'_>> {
    let mdia = child(trak, b"mdia")?;
    if child(mdia, b"hdlr")?.get(8..12)? != b"vide" {
        return None;
    }
    let stbl = child(child(mdia, b"minf")?, b"stbl")?;
    let stsd = child(stbl, b"stsd")?;
    // Full box header and entry count, then the first sample entry.
    let (kind, entry) = boxes(stsd.get(8..)?).next()?;
    let codec = match &kind {
        b"avc1" | b"avc3" => VideoCodec::H264,
        b"hvc1" | b"hev1" => VideoCodec::Hevc,
        _ => return None,
    };
    // A VisualSampleEntry's fields take 78 bytes before its child boxes.
    let config = child(entry.get(78..)?, if codec == VideoCodec::H264 { b"avcC" } else { b"hvcC" })?;
    let chunk_offsets = if let Some(stco) = child(stbl, b"stco") {
        let n = be32(stco, 4)? as usize;
        (0..n).map(|i| be32(stco, 8 + 4 * i).map(u64::from)).collect::<Option<Vec<_>>>()?
    } else {
        let co64 = child(stbl, b"co64")?;
        let n = be32(co64, 4)? as usize;
        (0..n)
            .map(|i| Some(u64::from_be_bytes(co64.get(8 + 8 * i..16 + 8 * i)?.try_into().ok()?)))
            .collect::<Option<Vec<_>>>()?
    };
    Some(VideoTrack {
        codec,
        length_size: length_size(codec, config)?,
        stsz: child(stbl, b"stsz")?,
        stsc: child(stbl, b"stsc")?,
        chunk_offsets,
    })
}

impl VideoTrack<'_> {
    /// Hands `f` the (file offset, size) of each sample, in decoding order, until it returns
    /// false (then false). Ends early, with true, where a table does.
    fn each_sample(&self, mut f: impl FnMut(u64, u64) -> bool) -> bool {
        let fixed = be32(self.stsz, 4).unwrap_or(0);
        let count = be32(self.stsz, 8).unwrap_or(0) as usize;
        let size = |i: usize| if fixed != 0 { Some(fixed) } else { be32(self.stsz, 12 + 4 * i) };
        // stsc runs: (first chunk, 1-based; samples per chunk).
        let runs: Vec<(u32, u32)> = (0..be32(self.stsc, 4).unwrap_or(0) as usize)
            .map_while(|i| Some((be32(self.stsc, 8 + 12 * i)?, be32(self.stsc, 12 + 12 * i)?)))
            .collect();
        let mut sample = 0usize;
        for (c, &offset) in self.chunk_offsets.iter().enumerate() {
            let chunk = c as u32 + 1;
            let per_chunk = runs.iter().take_while(|(first, _)| *first <= chunk).last().map_or(0, |r| r.1);
            let mut at = offset;
            for _ in 0..per_chunk {
                if sample >= count {
                    return true;
                }
                let Some(s) = size(sample) else { return true };
                if !f(at, u64::from(s)) {
                    return false;
                }
                at = at.saturating_add(u64::from(s));
                sample += 1;
            }
        }
        true
    }
}

/// The fingerprint of an FLV file's video, read tag by tag.
pub fn of_flv<R: Read>(r: &mut R) -> Option<Fingerprint> {
    let mut h = [0u8; 9];
    r.read_exact(&mut h).ok()?;
    if &h[..3] != b"FLV" {
        return None;
    }
    let skip = u64::from(be32(&h, 5)?).checked_sub(9)?;
    std::io::copy(&mut r.take(skip + 4), &mut std::io::sink()).ok()?;
    let mut print = VideoPrint::default();
    let mut tag = [0u8; 11];
    while r.read_exact(&mut tag).is_ok() {
        let size = u64::from(be32(&[0, tag[1], tag[2], tag[3]], 0)?);
        let mut body = vec![0; size as usize];
        if r.read_exact(&mut body).is_err() {
            break;
        }
        if tag[0] & 0x1f == super::flv::TAG_VIDEO {
            print.flv_video(&body);
        }
        let mut previous = [0u8; 4];
        if r.read_exact(&mut previous).is_err() {
            break;
        }
    }
    print.finish()
}

/// Matroska/WebM element IDs read here (RFC 9559).
mod ebml {
    pub const SEGMENT: u64 = 0x1853_8067;
    pub const TRACKS: u64 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u64 = 0xAE;
    pub const TRACK_NUMBER: u64 = 0xD7;
    pub const CODEC_ID: u64 = 0x86;
    pub const CODEC_PRIVATE: u64 = 0x63A2;
    pub const CLUSTER: u64 = 0x1F43_B675;
    pub const SIMPLE_BLOCK: u64 = 0xA3;
    pub const BLOCK_GROUP: u64 = 0xA0;
    pub const BLOCK: u64 = 0xA1;
}

/// An EBML variable-size integer at the reader: (value, its length). `marker`: keep the length
/// marker (element IDs) or not (sizes). An all-ones size is "unknown" (`u64::MAX`).
fn read_vint<R: Read>(r: &mut R, marker: bool) -> Option<(u64, u64)> {
    let mut first = [0u8];
    r.read_exact(&mut first).ok()?;
    let len = first[0].leading_zeros() + 1;
    if len > 8 {
        return None;
    }
    let mut v = u64::from(first[0]);
    if !marker {
        v &= (1u64 << (8 - len)) - 1;
    }
    let mut all_ones = v == (1u64 << (8 - len)) - 1;
    for _ in 1..len {
        let mut b = [0u8];
        r.read_exact(&mut b).ok()?;
        all_ones &= b[0] == 0xff;
        v = v << 8 | u64::from(b[0]);
    }
    Some((if !marker && all_ones { u64::MAX } else { v }, u64::from(len)))
}

/// The fingerprint of a Matroska file's first H.264/H.265 video track (`V_MPEG4/ISO/AVC`,
/// `V_MPEGH/ISO/HEVC`), from its SimpleBlocks and Blocks, read front to back. Laced blocks (an
/// audio device) are not read as video.
pub fn of_matroska<R: Read + Seek>(r: &mut R, len: u64) -> Option<Fingerprint> {
    use ebml::*;
    let mut at = 0u64;
    let mut track: Option<(u64, VideoCodec, usize)> = None;
    let mut print = VideoPrint::default();
    let mut read = 0u64;
    // Descend into the Segment, Tracks, TrackEntry, Cluster and BlockGroup; step over the rest.
    let mut entry: (Option<u64>, Option<VideoCodec>, Option<Vec<u8>>) = (None, None, None);
    while at < len {
        r.seek(SeekFrom::Start(at)).ok()?;
        let Some((id, id_len)) = read_vint(r, true) else { break };
        let (size, size_len) = read_vint(r, false)?;
        let body = at + id_len + size_len;
        let end = if size == u64::MAX { len } else { body.checked_add(size)?.min(len) };
        match id {
            SEGMENT | TRACKS | CLUSTER | BLOCK_GROUP => {
                at = body;
                continue;
            }
            TRACK_ENTRY => {
                entry = (None, None, None);
                at = body;
                continue;
            }
            TRACK_NUMBER | CODEC_ID | CODEC_PRIVATE if size <= 1 << 20 => {
                let mut v = vec![0; size as usize];
                r.read_exact(&mut v).ok()?;
                match id {
                    TRACK_NUMBER => entry.0 = Some(v.iter().fold(0u64, |n, b| n << 8 | u64::from(*b))),
                    CODEC_ID => {
                        entry.1 = match v.as_slice() {
                            b"V_MPEG4/ISO/AVC" => Some(VideoCodec::H264),
                            b"V_MPEGH/ISO/HEVC" => Some(VideoCodec::Hevc),
                            _ => None,
                        }
                    }
                    _ => entry.2 = Some(v),
                }
                if let (None, (Some(n), Some(c), Some(p))) = (&track, &entry) {
                    track = length_size(*c, p).map(|l| (*n, *c, l));
                }
            }
            SIMPLE_BLOCK | BLOCK if size <= MAX_SAMPLE => {
                read += size;
                if read > len {
                    return None;
                }
                let mut b = vec![0; size as usize];
                r.read_exact(&mut b).ok()?;
                let mut c = std::io::Cursor::new(&b[..]);
                let (number, n_len) = read_vint(&mut c, false)?;
                // Track number, a 16-bit timestamp, flags (lacing in bits 1-2).
                let flags = *b.get(n_len as usize + 2)?;
                if let Some((_, codec, ls)) = track.filter(|t| t.0 == number && flags & 0x06 == 0) {
                    print.sample(codec, b.get(n_len as usize + 3..)?, ls);
                }
            }
            _ => {}
        }
        at = end;
    }
    print.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_slices_count_and_lengths_bound_the_sample() {
        let mut a = VideoPrint::default();
        // SPS, PPS, SEI, IDR slice; then a slice; then a sample whose length runs past its end.
        a.access_unit(VideoCodec::H264, [&[0x67, 1][..], &[0x68, 2], &[0x06, 3], &[0x65, 4]]);
        a.sample(VideoCodec::H264, &[0, 0, 0, 2, 0x41, 5], 4);
        a.sample(VideoCodec::H264, &[0, 0, 0, 9, 0x41], 4);
        let mut b = VideoPrint::default();
        b.access_unit(VideoCodec::H264, [&[0x09, 0xf0][..], &[0x65, 4]]);
        b.access_unit(VideoCodec::H264, [&[0x41, 5][..]]);
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn annex_b_is_the_same_access_unit_as_lengths() {
        let mut a = VideoPrint::default();
        a.annex_b(VideoCodec::H264, &[0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x65, 4, 0, 0, 0, 0, 1, 0x41, 0, 5]);
        let mut b = VideoPrint::default();
        b.sample(VideoCodec::H264, &[0, 0, 0, 2, 0x65, 4, 0, 0, 0, 3, 0x41, 0, 5], 4);
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn hostile_boxes_end_the_reading() {
        // A moov claiming more than the file, then one claiming a 64-bit size past it.
        let mut f = vec![0, 0, 1, 0, b'm', b'o', b'o', b'v'];
        f.extend_from_slice(&[0; 8]);
        assert!(of_mp4(&mut std::io::Cursor::new(&f), f.len() as u64).is_none());
        let g = [0, 0, 0, 1, b'm', b'o', b'o', b'v', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(of_mp4(&mut std::io::Cursor::new(&g), g.len() as u64).is_none());
        assert!(of_flv(&mut std::io::Cursor::new(b"FLV\x01\x01\x00\x00\x00\x00")).is_none());
    }
}
