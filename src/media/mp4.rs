//! Fragmented MP4 (ISO/IEC 14496-12 with 14496-14/-15 sample entries), written front to back.
//!
//! A plain MP4 needs its sample table (`moov`) complete before a player can read it, or a size
//! patched into `mdat` when the stream ends: the file layer's objects are append-only and a live
//! stream may never end. A fragmented MP4 puts an empty sample table in `moov` (with `mvex`)
//! and each run of samples in a `moof` + `mdat` pair, so the file is playable up to its last
//! fragment whenever it stops. A fragment is cut at each video key frame, or when what waits
//! passes a bound.
//!
//! Timescale 1000 for every track (RTMP timestamps are milliseconds). A sample's duration is
//! the time to the next sample of its track, so each track keeps its last sample back until
//! the next one (or the end) comes.

/// What a track carries.
#[derive(Debug, Clone)]
pub enum TrackKind {
    /// H.264 (`avc1` with the `avcC` record) or H.265 (`hvc1` with `hvcC`).
    Video { hevc: bool, config: Vec<u8>, width: u32, height: u32 },
    /// AAC (`mp4a` with an `esds` holding the AudioSpecificConfig).
    Aac { config: Vec<u8>, sample_rate: u32, channels: u8 },
}

struct Sample {
    dts: i64,
    cts_offset: i32,
    keyframe: bool,
    data: Vec<u8>,
}

struct Track {
    kind: TrackKind,
    /// Decoding time of the track's first sample: the fragments' times start there.
    first_dts: Option<i64>,
    waiting: Vec<Sample>,
    /// Duration of the last sample written (the last sample of the stream gets it).
    last_duration: u32,
}

/// A `trun` entry: duration, size, flags, composition offset.
type TrunEntry = (u32, u32, u32, i32);

/// Waiting samples' bytes past which a fragment is cut without a key frame.
const MAX_WAITING: usize = 8 << 20;

/// A fragmented MP4 being written: [`Fmp4::header`] once, then what [`Fmp4::sample`] and
/// [`Fmp4::finish`] return, in order.
pub struct Fmp4 {
    tracks: Vec<Track>,
    sequence: u32,
    waiting_bytes: usize,
}

impl Fmp4 {
    /// A file of `tracks` (track IDs are their positions + 1).
    pub fn new(tracks: Vec<TrackKind>) -> Fmp4 {
        let tracks = tracks
            .into_iter()
            .map(|kind| Track { kind, first_dts: None, waiting: Vec::new(), last_duration: 0 })
            .collect();
        Fmp4 { tracks, sequence: 0, waiting_bytes: 0 }
    }

    /// `ftyp` and `moov`.
    pub fn header(&self) -> Vec<u8> {
        let mut out = bx(b"ftyp", &[b"isom".as_slice(), &0x200u32.to_be_bytes(), b"isom", b"iso6", b"mp41"].concat());
        let mut moov = full(b"mvhd", 0, 0, &mvhd(self.tracks.len() as u32 + 1));
        for (i, t) in self.tracks.iter().enumerate() {
            moov.extend(trak(i as u32 + 1, &t.kind));
        }
        let trex: Vec<u8> = (1..=self.tracks.len() as u32)
            .flat_map(|id| {
                full(b"trex", 0, 0, &[id.to_be_bytes(), 1u32.to_be_bytes(), [0; 4], [0; 4], [0; 4]].concat())
            })
            .collect();
        moov.extend(bx(b"mvex", &trex));
        out.extend(bx(b"moov", &moov));
        out
    }

    /// One sample of track `track` (an index into the tracks given to [`Fmp4::new`]): decoding
    /// time and composition offset in ms, the sample's bytes (length-prefixed NAL units as the
    /// config says, or one raw AAC frame). Returns a fragment when one is cut.
    pub fn sample(&mut self, track: usize, dts: i64, cts_offset: i32, keyframe: bool, data: &[u8]) -> Vec<u8> {
        let Some(is_video) = self.tracks.get(track).map(|t| matches!(t.kind, TrackKind::Video { .. })) else {
            return Vec::new();
        };
        // A key frame starts a fragment: everything of its track before it goes out first (its
        // time ends the last one's duration), and of the other tracks all but their last.
        let out = if is_video && keyframe {
            self.fragment(Some((track, dts)), false)
        } else if self.waiting_bytes > MAX_WAITING {
            self.fragment(None, false)
        } else {
            Vec::new()
        };
        if let Some(t) = self.tracks.get_mut(track) {
            t.first_dts.get_or_insert(dts);
            t.waiting.push(Sample { dts, cts_offset, keyframe: keyframe || !is_video, data: data.to_vec() });
            self.waiting_bytes += data.len();
        }
        out
    }

    /// The last fragment: everything still waiting.
    pub fn finish(&mut self) -> Vec<u8> {
        self.fragment(None, true)
    }

    /// A `moof` + `mdat` of the waiting samples. Each track keeps its last one back (its
    /// duration is not known yet), unless `all` (the end), or unless `next` gives the time of
    /// the track's next sample.
    fn fragment(&mut self, next: Option<(usize, i64)>, all: bool) -> Vec<u8> {
        // Per track: its ID, the decoding time of its first sample, and (duration, size, flags,
        // composition offset) per sample.
        let mut trafs: Vec<(u32, i64, Vec<TrunEntry>)> = Vec::new();
        let mut data = Vec::new();
        for (i, t) in self.tracks.iter_mut().enumerate() {
            let known = next.filter(|(track, _)| *track == i).map(|(_, dts)| dts);
            let keep = usize::from(!all && known.is_none() && !t.waiting.is_empty());
            let n = t.waiting.len() - keep;
            if n == 0 {
                continue;
            }
            let taken: Vec<Sample> = t.waiting.drain(..n).collect();
            let base = taken[0].dts - t.first_dts.unwrap_or(taken[0].dts);
            let mut entries = Vec::with_capacity(taken.len());
            for (k, s) in taken.iter().enumerate() {
                let next = taken.get(k + 1).or(t.waiting.first()).map(|x| x.dts).or(known);
                let duration = match next {
                    Some(d) => u32::try_from(d - s.dts).unwrap_or(0),
                    None => t.last_duration,
                };
                t.last_duration = duration;
                // sample_depends_on 2 (a sync sample) or 1 with sample_is_non_sync_sample.
                let flags = if s.keyframe { 0x0200_0000 } else { 0x0101_0000 };
                entries.push((duration, s.data.len() as u32, flags, s.cts_offset));
                data.extend_from_slice(&s.data);
            }
            trafs.push((i as u32 + 1, base, entries));
        }
        self.waiting_bytes = self.tracks.iter().flat_map(|t| &t.waiting).map(|s| s.data.len()).sum();
        if trafs.is_empty() {
            return Vec::new();
        }
        self.sequence += 1;
        // The moof's size is needed for the data offsets: built once with zeros, then again.
        let moof = |offsets: &[u32]| {
            let mut m = full(b"mfhd", 0, 0, &self.sequence.to_be_bytes());
            for ((id, base, entries), offset) in trafs.iter().zip(offsets) {
                let mut traf = full(b"tfhd", 0, 0x02_0000, &id.to_be_bytes());
                traf.extend(full(b"tfdt", 1, 0, &(*base as u64).to_be_bytes()));
                let mut run = (entries.len() as u32).to_be_bytes().to_vec();
                run.extend_from_slice(&offset.to_be_bytes());
                for (duration, size, flags, cts) in entries {
                    for v in [*duration, *size, *flags, *cts as u32] {
                        run.extend_from_slice(&v.to_be_bytes());
                    }
                }
                traf.extend(full(b"trun", 1, 0x0f01, &run));
                m.extend(bx(b"traf", &traf));
            }
            bx(b"moof", &m)
        };
        let size = moof(&vec![0; trafs.len()]).len() as u32;
        let mut offsets = Vec::with_capacity(trafs.len());
        let mut at = size + 8;
        for (_, _, entries) in &trafs {
            offsets.push(at);
            at += entries.iter().map(|e| e.1).sum::<u32>();
        }
        let mut out = moof(&offsets);
        out.extend(bx(b"mdat", &data));
        out
    }
}

fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + body.len());
    b.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

/// A full box: version and 24-bit flags before the body.
fn full(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = vec![version];
    b.extend_from_slice(&flags.to_be_bytes()[1..]);
    b.extend_from_slice(body);
    bx(kind, &b)
}

/// The unity matrix of `mvhd` and `tkhd`.
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn matrix() -> Vec<u8> {
    MATRIX.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn mvhd(next_track: u32) -> Vec<u8> {
    let mut b = Vec::new();
    // Creation and modification time, timescale 1000, duration unknown (fragments say it).
    for v in [0u32, 0, 1000, 0, 0x0001_0000] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(&0x0100u16.to_be_bytes());
    b.extend_from_slice(&[0; 10]);
    b.extend(matrix());
    b.extend_from_slice(&[0; 24]);
    b.extend_from_slice(&next_track.to_be_bytes());
    b
}

fn trak(id: u32, kind: &TrackKind) -> Vec<u8> {
    let (video, (width, height)) = match kind {
        TrackKind::Video { width, height, .. } => (true, (*width, *height)),
        TrackKind::Aac { .. } => (false, (0, 0)),
    };
    let mut tkhd = Vec::new();
    for v in [0u32, 0, id, 0, 0, 0, 0] {
        tkhd.extend_from_slice(&v.to_be_bytes());
    }
    // Layer, alternate group, volume (full for audio), reserved.
    tkhd.extend_from_slice(&[0, 0, 0, 0, if video { 0 } else { 1 }, 0, 0, 0]);
    tkhd.extend(matrix());
    tkhd.extend_from_slice(&(width << 16).to_be_bytes());
    tkhd.extend_from_slice(&(height << 16).to_be_bytes());
    let mut mdhd = Vec::new();
    for v in [0u32, 0, 1000, 0] {
        mdhd.extend_from_slice(&v.to_be_bytes());
    }
    // Language "und" (ISO 639-2/T packed), pre-defined.
    mdhd.extend_from_slice(&[0x55, 0xc4, 0, 0]);
    let (handler, name): (&[u8; 4], &[u8]) =
        if video { (b"vide", b"VideoHandler\0") } else { (b"soun", b"SoundHandler\0") };
    let hdlr = full(b"hdlr", 0, 0, &[&[0u8; 4][..], handler, &[0; 12], name].concat());
    let media_header = if video { full(b"vmhd", 0, 1, &[0; 8]) } else { full(b"smhd", 0, 0, &[0; 4]) };
    let dinf = bx(b"dinf", &full(b"dref", 0, 0, &[&1u32.to_be_bytes()[..], &full(b"url ", 0, 1, &[])].concat()));
    let empty = |k: &[u8; 4]| full(k, 0, 0, &[0; 4]);
    let stbl = [
        full(b"stsd", 0, 0, &[&1u32.to_be_bytes()[..], &sample_entry(kind)].concat()),
        empty(b"stts"),
        empty(b"stsc"),
        full(b"stsz", 0, 0, &[0; 8]),
        empty(b"stco"),
    ]
    .concat();
    let minf = bx(b"minf", &[media_header, dinf, bx(b"stbl", &stbl)].concat());
    let mdia = bx(b"mdia", &[full(b"mdhd", 0, 0, &mdhd), hdlr, minf].concat());
    bx(b"trak", &[full(b"tkhd", 0, 3, &tkhd), mdia].concat())
}

fn sample_entry(kind: &TrackKind) -> Vec<u8> {
    match kind {
        TrackKind::Video { hevc, config, width, height } => {
            let mut e = vec![0; 6];
            e.extend_from_slice(&1u16.to_be_bytes());
            e.extend_from_slice(&[0; 16]);
            e.extend_from_slice(&(*width as u16).to_be_bytes());
            e.extend_from_slice(&(*height as u16).to_be_bytes());
            // 72 dpi both ways, reserved, one frame per sample, no compressor name, depth 24.
            e.extend_from_slice(&0x0048_0000u32.to_be_bytes());
            e.extend_from_slice(&0x0048_0000u32.to_be_bytes());
            e.extend_from_slice(&[0; 4]);
            e.extend_from_slice(&1u16.to_be_bytes());
            e.extend_from_slice(&[0; 32]);
            e.extend_from_slice(&[0x00, 0x18, 0xff, 0xff]);
            let (entry, record) = if *hevc { (b"hvc1", b"hvcC") } else { (b"avc1", b"avcC") };
            e.extend(bx(record, config));
            bx(entry, &e)
        }
        TrackKind::Aac { config, sample_rate, channels } => {
            let mut e = vec![0; 6];
            e.extend_from_slice(&1u16.to_be_bytes());
            e.extend_from_slice(&[0; 8]);
            e.extend_from_slice(&u16::from(*channels).to_be_bytes());
            e.extend_from_slice(&16u16.to_be_bytes());
            e.extend_from_slice(&[0; 4]);
            // 16.16 fixed point: rates above 65535 Hz do not fit; the esds's config is what counts.
            e.extend_from_slice(&(sample_rate.min(&0xffff) << 16).to_be_bytes());
            e.extend(full(b"esds", 0, 0, &es_descriptor(config)));
            bx(b"mp4a", &e)
        }
    }
}

/// An MPEG-4 descriptor (14496-1 8.3.3): tag, a size in 7-bit groups, the body.
fn descriptor(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut d = vec![tag];
    let n = body.len() as u32;
    d.extend_from_slice(&[
        0x80 | (n >> 21 & 0x7f) as u8,
        0x80 | (n >> 14 & 0x7f) as u8,
        0x80 | (n >> 7 & 0x7f) as u8,
        (n & 0x7f) as u8,
    ]);
    d.extend_from_slice(body);
    d
}

/// ES_Descriptor with a DecoderConfigDescriptor for AAC (object type 0x40, audio stream) and
/// the AudioSpecificConfig, and the SL config MP4 files use.
fn es_descriptor(asc: &[u8]) -> Vec<u8> {
    let mut dcd = vec![0x40, 0x15, 0, 0, 0];
    dcd.extend_from_slice(&[0; 8]);
    dcd.extend(descriptor(5, asc));
    let mut es = vec![0, 1, 0];
    es.extend(descriptor(4, &dcd));
    es.extend(descriptor(6, &[2]));
    descriptor(3, &es)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxes(b: &[u8]) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= b.len() {
            let size = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            out.push((String::from_utf8_lossy(&b[at + 4..at + 8]).into_owned(), size));
            assert!(size >= 8 && at + size <= b.len(), "box at {at} runs past the end");
            at += size;
        }
        assert_eq!(at, b.len());
        out
    }

    #[test]
    fn a_key_frame_cuts_a_fragment_and_the_end_flushes_the_rest() {
        let mut f = Fmp4::new(vec![
            TrackKind::Video { hevc: false, config: vec![1, 0x64, 0, 0x1e, 0xff, 0xe0, 0], width: 320, height: 240 },
            TrackKind::Aac { config: vec![0x12, 0x10], sample_rate: 44100, channels: 2 },
        ]);
        let head = f.header();
        assert_eq!(boxes(&head).iter().map(|b| b.0.as_str()).collect::<Vec<_>>(), ["ftyp", "moov"]);
        assert!(f.sample(0, 0, 0, true, &[0, 0, 0, 1, 0x65]).is_empty(), "nothing before the first key frame");
        assert!(f.sample(1, 0, 0, false, &[1, 2, 3]).is_empty());
        assert!(f.sample(0, 40, 0, false, &[0, 0, 0, 1, 0x41]).is_empty());
        let cut = f.sample(0, 80, 0, true, &[0, 0, 0, 1, 0x65]);
        assert_eq!(boxes(&cut).iter().map(|b| b.0.as_str()).collect::<Vec<_>>(), ["moof", "mdat"]);
        // Both video samples before the key frame went out; the audio one waits for its duration.
        assert_eq!(boxes(&cut)[1].1, 8 + 5 + 5);
        let rest = f.finish();
        assert_eq!(boxes(&rest)[1].1, 8 + 3 + 5);
        assert!(f.finish().is_empty());
    }
}
