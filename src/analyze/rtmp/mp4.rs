//! The MP4 copy of an RTMP stream, where its codecs allow it: H.264 or H.265 video and AAC
//! audio, the same messages as the FLV, as a fragmented MP4 ([`crate::media::mp4`]). Other
//! codecs (Sorenson, VP6, MP3, Speex...) stay in the FLV only, and IRI says why no MP4 came.
//!
//! The file opens at the first coded frame: an RTMP sender sends its decoder configurations
//! (sequence headers) before any frame, so by then the tracks are known. A track whose
//! configuration never came is left out, not guessed.

use serde::{Deserialize, Serialize};

use super::{AUDIO, VIDEO};
use crate::analyze::Cx;
use crate::media::mp4::{Fmp4, TrackKind};
use crate::media::{flv, h264};
use crate::record::{de, ObjectId, ObjectMeta};

/// What IRI says of the MP4 copy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mp4Facts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `h264`, `hevc`, `aac`: the tracks written.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "de::vec_static_str")]
    pub tracks: Vec<&'static str>,
    /// Why there is no MP4, or what it lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

struct Open {
    id: ObjectId,
    written: u64,
    writer: Fmp4,
    video: Option<usize>,
    audio: Option<usize>,
    tracks: Vec<&'static str>,
}

/// The MP4 copy of one (direction, message stream).
#[derive(Default)]
pub(super) struct Mp4Copy {
    /// (HEVC, `avcC`/`hvcC`) of the last video sequence header.
    video_config: Option<(bool, Vec<u8>)>,
    aac_config: Option<Vec<u8>>,
    /// Coded frames of codecs an MP4 here does not take.
    other_codecs: Vec<&'static str>,
    open: Option<Open>,
    /// No file will come (no track it can take at the first frame).
    refused: bool,
}

impl Mp4Copy {
    /// One audio or video message. `meta` is the FLV object's; `size` the picture size
    /// `onMetaData` gave, for when the SPS cannot say.
    pub fn message(&mut self, type_id: u8, ts: u32, body: &[u8], meta: &ObjectMeta, size: (u32, u32), cx: &mut Cx) {
        let frame = match type_id {
            VIDEO => match flv::video_packet(body) {
                Some(p) if p.config => {
                    self.video_config = Some((p.hevc, p.data.to_vec()));
                    None
                }
                Some(p) => Some((true, p.keyframe, p.cts_offset, p.data)),
                None => {
                    let t = flv::video_tag(body);
                    self.other(t.as_ref().map(|t| t.codec), t.is_some_and(|t| t.frame));
                    None
                }
            },
            AUDIO => match flv::audio_tag(body) {
                Some(t) if t.codec == "aac" && body.first().is_some_and(|b| b >> 4 == 10) => {
                    let data = body.get(2..).unwrap_or_default();
                    if t.config {
                        self.aac_config = Some(data.to_vec());
                        None
                    } else {
                        Some((false, true, 0, data))
                    }
                }
                t => {
                    self.other(t.as_ref().map(|t| t.codec), t.as_ref().is_some_and(|t| t.frame));
                    None
                }
            },
            _ => None,
        };
        let Some((is_video, keyframe, cts, data)) = frame else { return };
        if self.open.is_none() && !self.refused {
            self.start(meta, size, cx);
        }
        let Some(o) = self.open.as_mut() else { return };
        let Some(track) = (if is_video { o.video } else { o.audio }) else { return };
        let bytes = o.writer.sample(track, i64::from(ts), cts, keyframe, data);
        write(o, &bytes, cx);
    }

    fn other(&mut self, codec: Option<&'static str>, frame: bool) {
        if let Some(c) = codec.filter(|_| frame) {
            if !self.other_codecs.contains(&c) && self.other_codecs.len() < 4 {
                self.other_codecs.push(c);
            }
        }
    }

    fn start(&mut self, meta: &ObjectMeta, size: (u32, u32), cx: &mut Cx) {
        let mut kinds = Vec::new();
        let mut tracks = Vec::new();
        let (mut video, mut audio) = (None, None);
        if let Some((hevc, config)) = &self.video_config {
            // The SPS's size where it can be read, else what onMetaData said.
            let sps_size = (!hevc)
                .then(|| flv::avc_config(config))
                .flatten()
                .and_then(|c| h264::parse_sps(&c.sps).ok())
                .map(|s| (s.width, s.height));
            let (width, height) = sps_size.unwrap_or(size);
            video = Some(kinds.len());
            kinds.push(TrackKind::Video { hevc: *hevc, config: config.clone(), width, height });
            tracks.push(if *hevc { "hevc" } else { "h264" });
        }
        if let Some(config) = &self.aac_config {
            if let Some(c) = flv::aac_config(config) {
                audio = Some(kinds.len());
                kinds.push(TrackKind::Aac { config: config.clone(), sample_rate: c.sample_rate, channels: c.channels });
                tracks.push("aac");
            }
        }
        if kinds.is_empty() {
            self.refused = true;
            return;
        }
        let mut m = meta.clone();
        m.name = m.name.map(|n| format!("{}.mp4", n.strip_suffix(".flv").unwrap_or(&n)));
        if let Some(c) = m.context.as_object_mut() {
            c.insert("container".into(), "mp4".into());
        }
        let writer = Fmp4::new(kinds);
        let id = cx.open_object(m);
        let mut o = Open { id, written: 0, writer, video, audio, tracks };
        let head = o.writer.header();
        write(&mut o, &head, cx);
        self.open = Some(o);
    }

    /// Ends the copy: the last fragment, the object, what IRI says. `video` is the FLV's
    /// fingerprint: the MP4 holds the same pictures.
    pub fn end(&mut self, video: Option<&serde_json::Value>, complete: bool, cx: &mut Cx) -> Option<Mp4Facts> {
        let note =
            |s: String| Some(Mp4Facts { object: None, sha256: None, size: None, tracks: Vec::new(), note: Some(s) });
        let Some(mut o) = self.open.take() else {
            if self.other_codecs.is_empty() {
                return None;
            }
            return note(format!(
                "no MP4: {} is not written to MP4 here; the FLV holds it",
                self.other_codecs.join(", ")
            ));
        };
        let last = o.writer.finish();
        write(&mut o, &last, cx);
        if let Some(v) = video {
            cx.object_context(o.id, "video", v.clone());
        }
        let ended = cx.object_end(o.id, complete);
        let mut lacks = self.other_codecs.clone();
        lacks.retain(|c| !o.tracks.contains(c));
        Some(Mp4Facts {
            object: Some(o.id),
            sha256: ended.as_ref().map(|e| e.sha256.clone()),
            size: ended.map(|e| e.size),
            tracks: o.tracks,
            note: (!lacks.is_empty()).then(|| format!("{} left out (the FLV holds it)", lacks.join(", "))),
        })
    }
}

fn write(o: &mut Open, bytes: &[u8], cx: &mut Cx) {
    if !bytes.is_empty() {
        cx.object_data(o.id, o.written, bytes);
        o.written += bytes.len() as u64;
    }
}
