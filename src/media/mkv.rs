//! Matroska (RFC 9559), written as a live stream: the EBML header, a Segment and Clusters of
//! unknown size (allowed for live writing, 6.2 and 10.1), Info and one track, then a Cluster per
//! key frame holding SimpleBlocks with their timestamps. Written front to back, never sought
//! back into, so it fits the file layer's append-only objects and a stream that never ends.
//!
//! Timestamps are milliseconds (TimestampScale 1 000 000 ns); a block carries its presentation
//! time, so a frame that never arrived leaves its hole in the timeline, where a player and
//! ffprobe see it.

/// What the one track of a file is.
#[derive(Debug, Clone)]
pub struct Track {
    /// Matroska codec ID: `V_MPEG4/ISO/AVC`, `V_MPEGH/ISO/HEVC`, `A_AAC`, `A_OPUS`.
    pub codec_id: &'static str,
    /// avcC, hvcC, AudioSpecificConfig, OpusHead.
    pub codec_private: Option<Vec<u8>>,
    pub video: Option<(u32, u32)>,
    /// Sampling frequency and channels.
    pub audio: Option<(f64, u8)>,
}

/// An EBML element: its ID (as written, with its length marker), a size, the data.
fn element(id: u32, data: &[u8]) -> Vec<u8> {
    let mut e = id_bytes(id);
    e.extend(size_vint(data.len() as u64));
    e.extend_from_slice(data);
    e
}

fn id_bytes(id: u32) -> Vec<u8> {
    let b = id.to_be_bytes();
    let skip = b.iter().take_while(|&&x| x == 0).count().min(3);
    b[skip..].to_vec()
}

/// The shortest EBML variable-size integer holding `n`.
fn size_vint(n: u64) -> Vec<u8> {
    for len in 1..=8u32 {
        // All ones in the value bits is reserved (unknown size).
        if n < (1u64 << (7 * len)) - 1 {
            let marked = n | 1u64 << (7 * len);
            return marked.to_be_bytes()[(8 - len as usize)..].to_vec();
        }
    }
    vec![0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]
}

/// The unknown size (8 bytes, all value bits set).
const UNKNOWN: [u8; 8] = [0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

fn uint(id: u32, v: u64) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|&&x| x == 0).count().min(7);
    element(id, &b[skip..])
}

fn float(id: u32, v: f64) -> Vec<u8> {
    element(id, &v.to_be_bytes())
}

fn string(id: u32, v: &str) -> Vec<u8> {
    element(id, v.as_bytes())
}

/// The start of the file: EBML header, the Segment's head, Info and Tracks.
pub fn header(track: &Track) -> Vec<u8> {
    let ebml = [
        uint(0x4286, 1),
        uint(0x42F7, 1),
        uint(0x42F2, 4),
        uint(0x42F3, 8),
        string(0x4282, "matroska"),
        uint(0x4287, 4),
        uint(0x4285, 2),
    ]
    .concat();
    let mut out = element(0x1A45DFA3, &ebml);
    out.extend(id_bytes(0x18538067));
    out.extend_from_slice(&UNKNOWN);
    let info = [uint(0x2AD7B1, 1_000_000), string(0x4D80, "tapir"), string(0x5741, "tapir")].concat();
    out.extend(element(0x1549A966, &info));
    let mut entry = [
        uint(0xD7, 1),
        uint(0x73C5, 1),
        uint(0x83, if track.video.is_some() { 1 } else { 2 }),
        string(0x86, track.codec_id),
    ]
    .concat();
    if let Some(p) = &track.codec_private {
        entry.extend(element(0x63A2, p));
    }
    if let Some((w, h)) = track.video {
        entry.extend(element(0xE0, &[uint(0xB0, u64::from(w)), uint(0xBA, u64::from(h))].concat()));
    }
    if let Some((rate, channels)) = track.audio {
        entry.extend(element(0xE1, &[float(0xB5, rate), uint(0x9F, u64::from(channels))].concat()));
    }
    out.extend(element(0x1654AE6B, &element(0xAE, &entry)));
    out
}

/// Cuts blocks into Clusters: a new one at a key frame, and whenever a block's time would not
/// fit the 16-bit offset from its Cluster's.
#[derive(Default)]
pub struct Clusters {
    cluster_ms: Option<i64>,
}

impl Clusters {
    /// The bytes of one frame at `ms` (a new Cluster first, when one starts here).
    pub fn block(&mut self, ms: i64, keyframe: bool, frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(frame.len() + 32);
        let fits = |c: i64| (i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(&(ms - c));
        let start = match self.cluster_ms {
            None => true,
            Some(c) => (keyframe && ms - c >= 1000) || !fits(c),
        };
        if start {
            out.extend(id_bytes(0x1F43B675));
            out.extend_from_slice(&UNKNOWN);
            out.extend(uint(0xE7, ms.max(0) as u64));
            self.cluster_ms = Some(ms.max(0));
        }
        let rel = (ms - self.cluster_ms.unwrap_or(0)) as i16;
        let mut block = vec![0x81]; // track 1
        block.extend_from_slice(&rel.to_be_bytes());
        block.push(if keyframe { 0x80 } else { 0 });
        block.extend_from_slice(frame);
        out.extend(element(0xA3, &block));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_the_shortest_vint_and_never_all_ones() {
        assert_eq!(size_vint(0), [0x80]);
        assert_eq!(size_vint(126), [0xfe]);
        assert_eq!(size_vint(127), [0x40, 0x7f], "0x7f in one byte would read as unknown");
        assert_eq!(size_vint(300), [0x41, 0x2c]);
        assert_eq!(id_bytes(0x1A45DFA3), [0x1a, 0x45, 0xdf, 0xa3]);
        assert_eq!(id_bytes(0xA3), [0xa3]);
    }

    #[test]
    fn a_cluster_starts_at_key_frames_a_second_apart_and_when_the_offset_overflows() {
        let mut c = Clusters::default();
        assert_eq!(&c.block(0, true, b"k")[..4], [0x1f, 0x43, 0xb6, 0x75]);
        assert_eq!(c.block(40, false, b"p")[0], 0xa3);
        assert_eq!(c.block(500, true, b"k")[0], 0xa3, "a key frame within a second stays");
        assert_eq!(&c.block(1000, true, b"k")[..4], [0x1f, 0x43, 0xb6, 0x75]);
        assert_eq!(&c.block(40_000, false, b"p")[..4], [0x1f, 0x43, 0xb6, 0x75], "past i16 milliseconds");
    }
}
