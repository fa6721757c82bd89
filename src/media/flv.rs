//! FLV (Adobe Flash Video File Format, version 10, annex E): the container RTMP's audio, video
//! and data messages are the tags of. An RTMP publish becomes a playable file by writing its
//! message bodies as tags with their timestamps, behind the 9-byte header.
//!
//! Also what the first bytes of a tag body say: codec, key frame, sequence header, and for AAC
//! and AVC what their decoder configuration says (sample rate, channels, profile, level).

/// Tag types (E.4.1).
pub const TAG_AUDIO: u8 = 8;
pub const TAG_VIDEO: u8 = 9;
pub const TAG_SCRIPT: u8 = 18;

/// The file header and PreviousTagSize0: signature, version 1, which streams it has.
pub fn header(audio: bool, video: bool) -> [u8; 13] {
    let flags = if audio { 4 } else { 0 } | if video { 1 } else { 0 };
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// One tag and the PreviousTagSize that follows it. `body` is at most 2^24 - 1 bytes (an RTMP
/// message cannot be longer); the timestamp is in milliseconds, its top byte in the extension.
pub fn tag(tag_type: u8, timestamp_ms: u32, body: &[u8]) -> Vec<u8> {
    let len = body.len().min(0xff_ffff);
    let mut t = Vec::with_capacity(15 + len);
    t.push(tag_type);
    t.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    t.extend_from_slice(&timestamp_ms.to_be_bytes()[1..]);
    t.push((timestamp_ms >> 24) as u8);
    t.extend_from_slice(&[0, 0, 0]);
    t.extend_from_slice(&body[..len]);
    t.extend_from_slice(&(11 + len as u32).to_be_bytes());
    t
}

/// What a video tag's first bytes say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTag {
    /// `h264`, `hevc`, `av1`, `vp9`, `vp6`, `h263`, `screen`...
    pub codec: &'static str,
    pub keyframe: bool,
    /// A decoder configuration (AVC/HEVC sequence header), not a frame.
    pub config: bool,
    /// A coded frame (not a configuration, an end of sequence or a command frame).
    pub frame: bool,
}

/// Reads a video tag body's header (E.4.3.1, and Enhanced RTMP's FourCC header).
pub fn video_tag(body: &[u8]) -> Option<VideoTag> {
    let b0 = *body.first()?;
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: frame type in bits 4-6, packet type in bits 0-3, then a FourCC.
        let fourcc = body.get(1..5)?;
        let codec = match fourcc {
            b"avc1" => "h264",
            b"hvc1" => "hevc",
            b"av01" => "av1",
            b"vp09" => "vp9",
            _ => "unknown",
        };
        let packet_type = b0 & 0x0f;
        let frame_type = (b0 >> 4) & 0x07;
        return Some(VideoTag {
            codec,
            keyframe: frame_type == 1,
            config: packet_type == 0,
            // 1 coded frames, 3 coded frames with composition time 0.
            frame: matches!(packet_type, 1 | 3) && frame_type != 5,
        });
    }
    let frame_type = b0 >> 4;
    let codec_id = b0 & 0x0f;
    let codec = match codec_id {
        2 => "h263",
        3 => "screen",
        4 => "vp6",
        5 => "vp6a",
        6 => "screen2",
        7 => "h264",
        12 => "hevc",
        _ => "unknown",
    };
    // Frame type 5: a video info/command frame, not a picture.
    let (config, frame) = match codec_id {
        7 | 12 => {
            let packet_type = *body.get(1)?;
            (packet_type == 0, packet_type == 1 && frame_type != 5)
        }
        _ => (false, frame_type != 5),
    };
    Some(VideoTag { codec, keyframe: frame_type == 1, config, frame })
}

/// An AVC or HEVC video tag body split into what it carries: the decoder configuration record
/// (`avcC`/`hvcC`), or a coded frame as length-prefixed NAL units with its composition offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoPacket<'a> {
    pub hevc: bool,
    pub keyframe: bool,
    /// The body is the decoder configuration record.
    pub config: bool,
    /// Composition time offset, ms (legacy AVC packets and Enhanced RTMP's CodedFrames).
    pub cts_offset: i32,
    pub data: &'a [u8],
}

/// Splits a video tag body of H.264 or H.265 (legacy codec ids 7 and 12, Enhanced RTMP `avc1`
/// and `hvc1`); `None` for other codecs, end-of-sequence and command frames.
pub fn video_packet(body: &[u8]) -> Option<VideoPacket<'_>> {
    let b0 = *body.first()?;
    let cts = |at: usize| -> Option<i32> {
        let b = body.get(at..at + 3)?;
        // 24-bit signed.
        Some(i32::from_be_bytes([b[0], b[1], b[2], 0]) >> 8)
    };
    let (hevc, keyframe, packet_type, cts_offset, data_at) = if b0 & 0x80 != 0 {
        let hevc = match body.get(1..5)? {
            b"avc1" => false,
            b"hvc1" => true,
            _ => return None,
        };
        let frame_type = (b0 >> 4) & 0x07;
        // 0 sequence start; 1 coded frames with a composition time; 3 coded frames without.
        match b0 & 0x0f {
            0 => (hevc, false, 0, 0, 5),
            1 if frame_type != 5 => (hevc, frame_type == 1, 1, cts(5)?, 8),
            3 if frame_type != 5 => (hevc, frame_type == 1, 1, 0, 5),
            _ => return None,
        }
    } else {
        let hevc = match b0 & 0x0f {
            7 => false,
            12 => true,
            _ => return None,
        };
        let frame_type = b0 >> 4;
        match *body.get(1)? {
            0 => (hevc, false, 0, 0, 5),
            1 if frame_type != 5 => (hevc, frame_type == 1, 1, cts(2)?, 5),
            _ => return None,
        }
    };
    Some(VideoPacket { hevc, keyframe, config: packet_type == 0, cts_offset, data: body.get(data_at..)? })
}

/// What an audio tag's first bytes say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTag {
    /// `aac`, `mp3`, `pcm_alaw`, `pcm_mulaw`, `speex`, `nellymoser`, `pcm`, `adpcm`, `opus`...
    pub codec: &'static str,
    /// Nominal rate of the tag header (AAC's real rate is in its configuration).
    pub sample_rate: u32,
    pub channels: u8,
    /// An AAC AudioSpecificConfig, not a frame.
    pub config: bool,
    pub frame: bool,
}

/// Reads an audio tag body's header (E.4.2.1).
pub fn audio_tag(body: &[u8]) -> Option<AudioTag> {
    let b0 = *body.first()?;
    let format = b0 >> 4;
    if format == 9 {
        // Enhanced RTMP audio: packet type in bits 0-3, then a FourCC.
        let codec = match body.get(1..5)? {
            b"Opus" => "opus",
            b"mp4a" => "aac",
            b"ac-3" => "ac3",
            b"ec-3" => "eac3",
            b"fLaC" => "flac",
            b".mp3" => "mp3",
            _ => "unknown",
        };
        let packet_type = b0 & 0x0f;
        return Some(AudioTag {
            codec,
            sample_rate: 0,
            channels: 0,
            config: packet_type == 0,
            frame: packet_type == 1,
        });
    }
    let codec = match format {
        0 | 3 => "pcm",
        1 => "adpcm",
        2 | 14 => "mp3",
        4..=6 => "nellymoser",
        7 => "pcm_alaw",
        8 => "pcm_mulaw",
        10 => "aac",
        11 => "speex",
        _ => "unknown",
    };
    let sample_rate = match format {
        14 => 8000,
        4 => 16000,
        5 => 8000,
        _ => [5512, 11025, 22050, 44100][usize::from((b0 >> 2) & 3)],
    };
    let channels = if b0 & 1 == 1 { 2 } else { 1 };
    let (config, frame) = if format == 10 {
        let packet_type = *body.get(1)?;
        (packet_type == 0, packet_type == 1)
    } else {
        (false, true)
    };
    Some(AudioTag { codec, sample_rate, channels, config, frame })
}

/// What an AAC AudioSpecificConfig (ISO 14496-3, 1.6.2.1) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
}

/// Reads an AudioSpecificConfig's first fields.
pub fn aac_config(asc: &[u8]) -> Option<AacConfig> {
    let mut bits = Bits { b: asc, pos: 0 };
    let mut object_type = bits.take(5)? as u8;
    if object_type == 31 {
        object_type = 32 + bits.take(6)? as u8;
    }
    const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    let index = bits.take(4)? as usize;
    let sample_rate = if index == 15 { bits.take(24)? } else { *RATES.get(index)? };
    let channels = bits.take(4)? as u8;
    Some(AacConfig { object_type, sample_rate, channels })
}

/// What an AVCDecoderConfigurationRecord (ISO 14496-15, 5.3.3.1) says, with its first SPS and
/// PPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    pub profile: u8,
    pub level: u8,
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
}

/// Reads an AVCDecoderConfigurationRecord.
pub fn avc_config(rec: &[u8]) -> Option<AvcConfig> {
    if *rec.first()? != 1 {
        return None;
    }
    let profile = *rec.get(1)?;
    let level = *rec.get(3)?;
    let n_sps = rec.get(5)? & 0x1f;
    let mut i = 6;
    let mut sps = Vec::new();
    for k in 0..n_sps {
        let len = usize::from(u16::from_be_bytes([*rec.get(i)?, *rec.get(i + 1)?]));
        if k == 0 {
            sps = rec.get(i + 2..i + 2 + len)?.to_vec();
        }
        i += 2 + len;
    }
    let n_pps = *rec.get(i)?;
    i += 1;
    let mut pps = Vec::new();
    if n_pps > 0 {
        let len = usize::from(u16::from_be_bytes([*rec.get(i)?, *rec.get(i + 1)?]));
        pps = rec.get(i + 2..i + 2 + len)?.to_vec();
    }
    Some(AvcConfig { profile, level, sps, pps })
}

/// A big-endian bit reader over a byte slice.
struct Bits<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn take(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.b.get(self.pos / 8)?;
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = v << 1 | u32::from(bit);
            self.pos += 1;
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_carry_their_size_twice_and_the_top_byte_of_time_apart() {
        let t = tag(TAG_VIDEO, 0x0102_0304, b"abc");
        assert_eq!(t, [9, 0, 0, 3, 2, 3, 4, 1, 0, 0, 0, b'a', b'b', b'c', 0, 0, 0, 14]);
        assert_eq!(header(true, true), [b'F', b'L', b'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0]);
    }

    #[test]
    fn codec_headers_as_ffmpeg_writes_them() {
        // AVC key frame sequence header, AVC inter frame, AAC config and frame.
        assert_eq!(
            video_tag(&[0x17, 0, 0, 0, 0]),
            Some(VideoTag { codec: "h264", keyframe: true, config: true, frame: false })
        );
        assert_eq!(
            video_tag(&[0x27, 1, 0, 0, 0]),
            Some(VideoTag { codec: "h264", keyframe: false, config: false, frame: true })
        );
        let a = audio_tag(&[0xaf, 0, 0x12, 0x10]).unwrap();
        assert_eq!((a.codec, a.config), ("aac", true));
        // AAC LC, 44100 Hz (index 4), stereo: 00010 0100 0010 000
        assert_eq!(aac_config(&[0x12, 0x10]), Some(AacConfig { object_type: 2, sample_rate: 44100, channels: 2 }));
        assert!(audio_tag(&[0xaf, 1, 0x21]).unwrap().frame);
        assert_eq!(audio_tag(&[0x82]).unwrap().codec, "pcm_mulaw");
        assert_eq!(video_tag(&[]), None);
        assert_eq!(avc_config(&[1, 0x64, 0, 0x1e, 0xff, 0xe1, 0, 2]), None, "SPS longer than the record");
    }
}
