//! RTP (RFC 3550): a UDP flow the [`udp`](super::udp) detector confirmed as RTP (one SSRC,
//! advancing sequence numbers), or one RTSP or SIP announced with its SDP's payload formats
//! ([`Rtp::with_formats`]). Per SSRC: a `stream-begin` IRI at its first packet, receive
//! statistics (RFC 3550 A.1, A.3, A.8: packets, expected, lost, reordered, duplicates, jitter)
//! in its `stream-end`, and, where the codec is known, a file a player opens:
//! - H.264 (RFC 6184) and H.265 (RFC 7798): Matroska, one block per access unit at its RTP
//!   time, parameter sets from SDP or in band; a damaged access unit is left out and counted,
//!   never spliced (see [`crate::media::h264`]). Without SDP, H.264 is recognised by its NAL
//!   unit headers;
//! - Opus: Matroska audio; AAC (RFC 3640 AAC-hbr): ADTS frames;
//! - G.711 u-law and A-law (payload types 0 and 8): a WAV file; a lost packet becomes silence of
//!   its duration (by RTP timestamps), so the recording keeps its timing and IRI lists the gap;
//! - MPEG-TS (payload type 33, RFC 2250): the transport stream, as [`mpegts`](super::mpegts)
//!   writes it.
//!
//! Without SDP a dynamic payload type's clock rate is not known: 90 kHz (every video payload
//! format's) is assumed for jitter, and IRI says so. Packets that arrive out of order are put
//! back in sequence within a window of [`REORDER_WINDOW`] packets; one later than that (or a
//! copy) is counted as late and left out of the file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::mpegts::{TsFacts, TsWriter};
use super::{Cx, ExpectKey, Expectations, StreamAnalyzer};
use crate::media::fingerprint::{VideoCodec, VideoPrint};
use crate::media::h264::{self, Depacketizer, Event};
use crate::media::rtp::{self, Packet, Received, SsrcTable, Stats};
use crate::media::sdp::PayloadFormat;
use crate::media::{flv, mkv};
use crate::record::{de, Close, Dir, ObjectId, ObjectMeta};

/// SSRCs followed per direction (a flood of fake ones is counted, not kept).
const MAX_SSRCS: usize = 16;
/// Silence inserted for one gap at most (G.711): 10 s.
const MAX_SILENCE_SAMPLES: u64 = 80_000;
/// Packets held per SSRC waiting for an earlier one (reordering); past it, the hole is loss.
const REORDER_WINDOW: usize = 32;
/// Gaps listed per stream in IRI (all are counted).
const MAX_LISTED_GAPS: usize = 64;

/// Whether a payload looks like an RFC 6184 H.264 payload: forbidden bit clear, a NAL unit type
/// a packetization mode 0/1 sender uses.
fn looks_h264(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| b & 0x80 == 0 && matches!(b & 0x1f, 1..=23 | 24 | 28))
}

/// What an RTP event is about.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RtpEvent {
    #[serde(deserialize_with = "de::static_str")]
    pub what: de::StaticStr,
    pub direction: Dir,
    pub ssrc: u32,
    pub payload_type: u8,
    /// FFmpeg's codec name, when the payload says it.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::option_static_str")]
    pub codec: Option<de::StaticStr>,
    pub clock_rate: u32,
    /// The clock rate is a guess (dynamic payload type, no SDP).
    pub clock_rate_assumed: bool,
    /// At the stream's end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<RtpMedia>,
    /// Why there is no file, when a codec was known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Packets of SSRCs past the bound, not followed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused_ssrc_packets: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The file one SSRC became.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RtpMedia {
    pub object: ObjectId,
    #[serde(deserialize_with = "de::static_str")]
    pub container: de::StaticStr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Video: access units written, key frames among them, and those known damaged (left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyframes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_frames: Option<u64>,
    /// Video: packets lost between frames (each whole frames, how many RTP cannot tell: a frame
    /// may be one packet or many).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_packets_between_frames: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_rate: Option<f64>,
    /// Audio: samples written (silence included), and the gaps filled with silence as
    /// (sample offset in the file, samples).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silence: Vec<(u64, u64)>,
    /// Packets that came after later ones and were left out of the file.
    pub late_packets: u64,
    pub duration_ms: u64,
    /// The transport stream's own view (payload type 33).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mpegts: Option<TsFacts>,
}

/// What one SSRC's payloads are written as.
enum Writer {
    Ts(Box<TsWriter>),
    G711 {
        id: ObjectId,
        written: u64,
        law: u8,
        next_ts: Option<u32>,
        samples: u64,
        silence: Vec<(u64, u64)>,
    },
    H264(Box<H264Writer>),
    /// RFC 7587 Opus: each payload is one Opus packet, a Matroska block at its RTP time.
    Opus {
        id: ObjectId,
        written: u64,
        clusters: mkv::Clusters,
        first_ts: Option<u32>,
        frames: u64,
    },
    /// RFC 3640 AAC-hbr: each access unit becomes one ADTS frame.
    Aac {
        id: ObjectId,
        written: u64,
        fixed: [u8; 4],
        size_len: u32,
        index_len: u32,
        frames: u64,
        malformed: u64,
        /// MP4A-LATM (RFC 6416) instead of RFC 3640's AU headers.
        latm: Option<Latm>,
    },
    /// Statistics only.
    None,
}

struct Ssrc {
    payload_type: u8,
    codec: Option<&'static str>,
    clock_rate: u32,
    assumed: bool,
    writer: Writer,
    late: u64,
    /// RTP timestamp of the first packet, and the furthest any later one went past it (with
    /// B-frames timestamps go back and forth), for duration and frame rate.
    first_ts: Option<u32>,
    span: u32,
    /// The next sequence number to write, and packets that came ahead of it (a reorder window).
    next_seq: Option<u64>,
    reorder: BTreeMap<u64, (u32, bool, Vec<u8>)>,
}

#[derive(Default)]
struct Side {
    table: Option<SsrcTable>,
    ssrcs: BTreeMap<u32, Ssrc>,
    refused: u64,
}

/// The RTP analyzer of one UDP flow (or of the RTP interleaved in an RTSP connection).
#[derive(Default)]
pub struct Rtp {
    sides: [Side; 2],
    /// What signalling (SDP) said about the payload types.
    formats: Vec<PayloadFormat>,
}

/// A payload type's codec, from SDP's encoding name (RFC 4855: case-insensitive).
fn sdp_codec(f: &PayloadFormat) -> Option<&'static str> {
    let name = f.encoding_name.as_deref()?.to_ascii_uppercase();
    Some(match name.as_str() {
        "H264" => "h264",
        "H265" => "hevc",
        "MPEG4-GENERIC" if f.fmtp_param("mode").is_some_and(|m| m.eq_ignore_ascii_case("AAC-hbr")) => "aac",
        "MP4A-LATM" if f.fmtp_param("cpresent") == Some("0") => "aac_latm",
        "MPEG4-GENERIC" | "MP4A-LATM" => "aac_unsupported",
        "PCMU" => "pcm_mulaw",
        "PCMA" => "pcm_alaw",
        "MP2T" => "mpegts",
        "OPUS" => "opus",
        _ => return None,
    })
}

impl Rtp {
    /// An RTP analyzer told, by SDP, what the payload types carry.
    pub fn with_formats(formats: Vec<PayloadFormat>) -> Rtp {
        Rtp { sides: Default::default(), formats }
    }

    fn open(&self, dir: Dir, packet: &Packet<'_>, cx: &mut Cx) -> Ssrc {
        let pt = packet.payload_type();
        let described = self.formats.iter().find(|f| f.payload_type == pt);
        let (codec, clock_rate, assumed) = match (pt, described) {
            (_, Some(f)) if f.clock_rate.is_some_and(|r| r > 0) => {
                (sdp_codec(f), f.clock_rate.unwrap_or(90_000), false)
            }
            (0, _) => (Some("pcm_mulaw"), 8000, false),
            (8, _) => (Some("pcm_alaw"), 8000, false),
            (33, _) => (Some("mpegts"), 90_000, false),
            (96..=127, _) if looks_h264(packet.payload()) => (Some("h264"), 90_000, true),
            _ => (None, 90_000, true),
        };
        let mut object = |name: String, container: &str| {
            let mut meta = ObjectMeta::new("stream", "rtp", cx.flow, dir, cx.cin, cx.now);
            meta.name = Some(name);
            meta.context = serde_json::json!({
                "container": container,
                "ssrc": packet.ssrc(),
                "payload_type": pt,
                "codec": codec,
            });
            cx.open_object(meta)
        };
        let ssrc = packet.ssrc();
        let writer = match codec {
            Some("mpegts") => Writer::Ts(Box::new(TsWriter::open("rtp", dir, cx))),
            Some("pcm_mulaw" | "pcm_alaw") => {
                let id = object(format!("rtp-{ssrc:08x}.wav"), "wav");
                let law = if codec == Some("pcm_mulaw") { 0 } else { 8 };
                let header = wav_header(if law == 0 { 7 } else { 6 });
                cx.object_data(id, 0, &header);
                Writer::G711 { id, written: header.len() as u64, law, next_ts: None, samples: 0, silence: Vec::new() }
            }
            Some(video @ ("h264" | "hevc")) => {
                let hevc = video == "hevc";
                let mut meta = ObjectMeta::new("stream", "rtp", cx.flow, dir, cx.cin, cx.now);
                meta.name = Some(format!("rtp-{ssrc:08x}.mkv"));
                meta.context = serde_json::json!({
                    "container": "matroska", "ssrc": ssrc, "payload_type": pt, "codec": codec,
                });
                let mut w = H264Writer::new(meta, clock_rate, hevc);
                // Parameter sets often travel only in SDP (FFmpeg senders): seed them.
                let keys: &[&str] =
                    if hevc { &["sprop-vps", "sprop-sps", "sprop-pps"] } else { &["sprop-parameter-sets"] };
                for k in keys {
                    if let Some(sprop) = described.and_then(|f| f.fmtp_param(k)) {
                        let _ = w.depack.seed_parameter_sets(sprop);
                    }
                }
                Writer::H264(Box::new(w))
            }
            Some("opus") => {
                let channels = described.and_then(|f| f.channels).unwrap_or(2).clamp(1, 2) as u8;
                let mut meta = ObjectMeta::new("stream", "rtp", cx.flow, dir, cx.cin, cx.now);
                meta.name = Some(format!("rtp-{ssrc:08x}.mka"));
                meta.context = serde_json::json!({
                    "container": "matroska", "ssrc": ssrc, "payload_type": pt, "codec": codec,
                });
                let track = mkv::Track {
                    codec_id: "A_OPUS",
                    codec_private: Some(opus_head(channels)),
                    video: None,
                    audio: Some((48_000.0, channels)),
                };
                let id = cx.open_object(meta);
                let header = mkv::header(&track);
                cx.object_data(id, 0, &header);
                Writer::Opus {
                    id,
                    written: header.len() as u64,
                    clusters: mkv::Clusters::default(),
                    first_ts: None,
                    frames: 0,
                }
            }
            Some("aac") => {
                let config = described
                    .and_then(|f| f.fmtp_param("config"))
                    .and_then(|c| hex::decode(c).ok())
                    .and_then(|c| flv::aac_config(&c));
                let size_len = described.and_then(|f| f.fmtp_param("sizelength")).and_then(|v| v.parse().ok());
                let index_len = described.and_then(|f| f.fmtp_param("indexlength")).and_then(|v| v.parse().ok());
                match (config.and_then(|c| adts_fixed(&c)), size_len, index_len) {
                    (Some(fixed), Some(size_len), Some(index_len)) => {
                        let id = object(format!("rtp-{ssrc:08x}.aac"), "adts");
                        Writer::Aac { id, written: 0, fixed, size_len, index_len, frames: 0, malformed: 0, latm: None }
                    }
                    _ => Writer::None,
                }
            }
            Some("aac_latm") => {
                // The StreamMuxConfig is out of band (cpresent=0): its AudioSpecificConfig.
                let config = described.and_then(|f| f.fmtp_param("config")).and_then(latm_config);
                match config.as_ref().and_then(adts_fixed) {
                    Some(fixed) => {
                        let id = object(format!("rtp-{ssrc:08x}.aac"), "adts");
                        let latm = Some(Latm::default());
                        Writer::Aac { id, written: 0, fixed, size_len: 0, index_len: 0, frames: 0, malformed: 0, latm }
                    }
                    None => Writer::None,
                }
            }
            _ => Writer::None,
        };
        Ssrc {
            payload_type: pt,
            codec,
            clock_rate,
            assumed,
            writer,
            late: 0,
            first_ts: None,
            span: 0,
            next_seq: None,
            reorder: BTreeMap::new(),
        }
    }

    fn packet(&mut self, dir: Dir, datagram: &[u8], cx: &mut Cx) {
        if rtp::is_rtcp(datagram) {
            return;
        }
        let Ok(p) = Packet::new_checked(datagram) else { return };
        let side = &mut self.sides[dir.index()];
        if !side.ssrcs.contains_key(&p.ssrc()) {
            // A header without payload opens nothing: FFmpeg's RTSP client sends such packets
            // from its ports to the server's to open NAT bindings (RFC 6263 keepalives too).
            if p.payload().is_empty() {
                return;
            }
            if side.ssrcs.len() >= MAX_SSRCS {
                side.refused += 1;
                return;
            }
            let s = self.open(dir, &p, cx);
            // Said at once: a call or a stream can last hours before its end is reported.
            cx.emit_app(
                cx.cin,
                "rtp",
                RtpEvent {
                    what: "stream-begin",
                    direction: dir,
                    ssrc: p.ssrc(),
                    payload_type: s.payload_type,
                    codec: s.codec,
                    clock_rate: s.clock_rate,
                    clock_rate_assumed: s.assumed,
                    stats: None,
                    media: None,
                    note: None,
                    refused_ssrc_packets: 0,
                },
            );
            self.sides[dir.index()].ssrcs.insert(p.ssrc(), s);
        }
        let side = &mut self.sides[dir.index()];
        let Some(s) = side.ssrcs.get_mut(&p.ssrc()) else { return };
        let table = side.table.get_or_insert_with(|| SsrcTable::new(MAX_SSRCS));
        let Some(r) = table.receive(&p, cx.now, s.clock_rate) else { return };
        let ext = match r {
            Received::Probation { extended_seq }
            | Received::InOrder { extended_seq }
            | Received::Reordered { extended_seq } => extended_seq,
            Received::Duplicate { .. } | Received::Jump => {
                s.late += 1;
                return;
            }
        };
        let next = *s.next_seq.get_or_insert(ext);
        if ext < next || s.reorder.contains_key(&ext) {
            // Behind what was already written (later than the window waits), or a copy.
            s.late += 1;
            return;
        }
        if ext == next && s.reorder.is_empty() {
            s.next_seq = Some(ext + 1);
            return s.deliver(ext, p.timestamp(), p.marker(), p.payload(), cx);
        }
        s.reorder.insert(ext, (p.timestamp(), p.marker(), p.payload().to_vec()));
        s.release(false, cx);
    }
}

impl Ssrc {
    /// Hands buffered packets on in sequence order: those that follow on from the last one, and,
    /// once the window is full (or at the end), the oldest past a hole: the hole is loss.
    fn release(&mut self, all: bool, cx: &mut Cx) {
        loop {
            let Some((&first, _)) = self.reorder.first_key_value() else { return };
            let next = self.next_seq.unwrap_or(first);
            let waited_enough = all || self.reorder.len() > REORDER_WINDOW;
            if first != next && !waited_enough {
                return;
            }
            let Some((ext, (ts, marker, payload))) = self.reorder.pop_first() else { return };
            self.next_seq = Some(ext + 1);
            self.deliver(ext, ts, marker, &payload, cx);
        }
    }

    /// One packet, in sequence order, to the file being written.
    fn deliver(&mut self, ext: u64, ts: u32, marker: bool, payload: &[u8], cx: &mut Cx) {
        let s = self;
        let first = *s.first_ts.get_or_insert(ts);
        let ahead = ts.wrapping_sub(first);
        if (ahead as i32) > 0 {
            s.span = s.span.max(ahead);
        }
        match &mut s.writer {
            Writer::Ts(w) => w.packets(payload, cx),
            Writer::G711 { id, written, law, next_ts, samples, silence } => {
                // A timestamp ahead of the one expected: samples never received.
                if let Some(want) = *next_ts {
                    let missing = u64::from(ts.wrapping_sub(want));
                    if missing > 0 && missing <= MAX_SILENCE_SAMPLES {
                        let quiet = if *law == 0 { 0xff } else { 0xd5 };
                        let fill = vec![quiet; missing as usize];
                        cx.object_data(*id, *written, &fill);
                        if silence.len() < MAX_LISTED_GAPS {
                            silence.push((*samples, missing));
                        }
                        *written += missing;
                        *samples += missing;
                    }
                }
                cx.object_data(*id, *written, payload);
                *written += payload.len() as u64;
                *samples += payload.len() as u64;
                *next_ts = Some(ts.wrapping_add(payload.len() as u32));
            }
            Writer::H264(w) => {
                w.depack.push(ext, ts, marker, payload);
                w.drain(cx);
            }
            Writer::Opus { id, written, clusters, first_ts, frames } => {
                let first = *first_ts.get_or_insert(ts);
                // Opus's RTP clock is always 48 kHz (RFC 7587 4.1).
                let ms = i64::from(ts.wrapping_sub(first) as i32) / 48;
                let block = clusters.block(ms, true, payload);
                cx.object_data(*id, *written, &block);
                *written += block.len() as u64;
                *frames += 1;
            }
            Writer::Aac { id, written, fixed, frames, malformed, latm: Some(l), .. } => {
                for frame in l.push(ext, marker, payload, malformed) {
                    let frame = adts_frame(fixed, &frame);
                    cx.object_data(*id, *written, &frame);
                    *written += frame.len() as u64;
                    *frames += 1;
                }
            }
            Writer::Aac { id, written, fixed, size_len, index_len, frames, malformed, latm: None } => {
                match aac_units(payload, *size_len, *index_len) {
                    Some(units) => {
                        for au in units {
                            let frame = adts_frame(fixed, au);
                            cx.object_data(*id, *written, &frame);
                            *written += frame.len() as u64;
                            *frames += 1;
                        }
                    }
                    None => *malformed += 1,
                }
            }
            Writer::None => {}
        }
    }
}

impl Rtp {
    fn end(&mut self, cx: &mut Cx) {
        for dir in [Dir::Orig, Dir::Resp] {
            let side = &mut self.sides[dir.index()];
            let refused = side.refused;
            for (ssrc, mut s) in std::mem::take(&mut side.ssrcs) {
                s.release(true, cx);
                let Some(stats) = side.table.as_ref().and_then(|t| t.get(ssrc)).map(|src| src.stats()) else {
                    continue;
                };
                let duration_ms = |s: &Ssrc| u64::from(s.span) * 1000 / u64::from(s.clock_rate);
                let mut note = None;
                let media = match std::mem::replace(&mut s.writer, Writer::None) {
                    Writer::Ts(w) => {
                        let f = w.end(cx);
                        let mut m = media(f.object, "mpegts", &s, duration_ms(&s));
                        m.sha256 = f.sha256.clone();
                        m.size = f.size;
                        m.mpegts = Some(f);
                        Some(m)
                    }
                    Writer::G711 { id, samples, silence, .. } => {
                        let ended = cx.object_end(id, true);
                        let mut m = media(id, "wav", &s, samples * 1000 / 8000);
                        m.samples = Some(samples);
                        m.silence = silence;
                        if let Some(e) = ended {
                            m.sha256 = Some(e.sha256);
                            m.size = Some(e.size);
                        }
                        Some(m)
                    }
                    Writer::H264(mut w) => {
                        w.depack.finish();
                        w.drain(cx);
                        let (frames, lost) = (w.frames, w.lost + w.before_parameter_sets);
                        match w.id {
                            // Nothing decodable came (no parameter sets): no file.
                            None => {
                                note = Some(format!(
                                    "no {} parameter sets (in SDP or in band): {} access units cannot be decoded, none written",
                                    if w.hevc { "H.265" } else { "H.264" },
                                    w.before_parameter_sets
                                ));
                                None
                            }
                            Some(id) => {
                                if let Some(video) = std::mem::take(&mut w.print).finish() {
                                    cx.object_context(id, "video", serde_json::json!(video));
                                }
                                let ended = cx.object_end(id, true);
                                let mut m = media(id, "matroska", &s, duration_ms(&s));
                                m.frames = Some(frames);
                                m.keyframes = Some(w.keyframes);
                                m.lost_frames = Some(lost);
                                m.lost_packets_between_frames = Some(w.depack.counters().gap_packets);
                                if let Some((width, height)) = w.size() {
                                    m.width = Some(width);
                                    m.height = Some(height);
                                }
                                if frames + lost > 1 && s.span > 0 {
                                    let rate = (frames + lost - 1) as f64 * f64::from(s.clock_rate) / f64::from(s.span);
                                    m.frame_rate = Some((rate * 1000.0).round() / 1000.0);
                                }
                                if let Some(e) = ended {
                                    m.sha256 = Some(e.sha256);
                                    m.size = Some(e.size);
                                }
                                Some(m)
                            }
                        }
                    }
                    Writer::Opus { id, frames, .. } => {
                        let ended = cx.object_end(id, true);
                        let mut m = media(id, "matroska", &s, duration_ms(&s));
                        m.frames = Some(frames);
                        if let Some(e) = ended {
                            m.sha256 = Some(e.sha256);
                            m.size = Some(e.size);
                        }
                        Some(m)
                    }
                    Writer::Aac { id, frames, malformed, .. } => {
                        let ended = cx.object_end(id, true);
                        let mut m = media(id, "adts", &s, duration_ms(&s));
                        m.frames = Some(frames);
                        m.lost_frames = Some(malformed);
                        if let Some(e) = ended {
                            m.sha256 = Some(e.sha256);
                            m.size = Some(e.size);
                        }
                        Some(m)
                    }
                    Writer::None => None,
                };
                cx.emit_app(
                    cx.cin,
                    "rtp",
                    RtpEvent {
                        what: "stream-end",
                        direction: dir,
                        ssrc,
                        payload_type: s.payload_type,
                        codec: s.codec,
                        clock_rate: s.clock_rate,
                        clock_rate_assumed: s.assumed,
                        stats: Some(stats),
                        media,
                        note,
                        refused_ssrc_packets: refused,
                    },
                );
            }
        }
    }
}

/// Each RTP `m=` line of an SDP with the address its media go to (the media-level `c=`, else
/// the session-level one; an `m=` line with port 0 is refused or disabled media): what
/// [`expect_sdp_media`] expects, and what the sharded dispatch (`pipeline::announced`) keeps
/// with the flow that carried the SDP.
pub fn sdp_rtp_endpoints(
    s: &crate::media::sdp::Session,
) -> impl Iterator<Item = (&crate::media::sdp::Media, std::net::IpAddr)> {
    s.media.iter().filter(|m| m.is_rtp() && m.port != 0).filter_map(|m| {
        let conn = m.connection.as_ref().or(s.connection.as_ref())?;
        let addr = conn.address.split('/').next()?.parse::<std::net::IpAddr>().ok()?;
        Some((m, addr))
    })
}

/// RTP an SDP offer or answer announces (SIP bodies, SDP over HTTP): each RTP `m=` line's port
/// at its address (media-level `c=`, else session-level) is where the media goes; a UDP flow
/// there is expected, with the payload formats the SDP names (an H.264 file needs the
/// `sprop-parameter-sets` an SDP often alone carries). Returns the media as IRI lists them
/// (`video 198.51.100.10:5004 H264/90000`), at most 16.
pub fn expect_sdp_media(s: &crate::media::sdp::Session, lifetime_ns: i64, cx: &mut Cx) -> Vec<String> {
    let mut listed = Vec::new();
    for (m, addr) in sdp_rtp_endpoints(s) {
        let codecs: Vec<String> = m
            .payload_formats
            .iter()
            .map(|f| match (&f.encoding_name, f.clock_rate) {
                (Some(n), Some(r)) => format!("{n}/{r}"),
                _ => f.payload_type.to_string(),
            })
            .collect();
        if listed.len() < 16 {
            listed.push(format!("{} {} {}", m.media, std::net::SocketAddr::new(addr, m.port), codecs.join(",")));
        }
        let key = ExpectKey { liid: cx.liid.clone(), zone: Expectations::zone_of(cx.flow), addr, port: m.port };
        let formats = m.payload_formats.clone();
        let expires = cx.now.add_nanos(lifetime_ns);
        cx.expect.expect(key, expires, Box::new(move |_| Box::new(Rtp::with_formats(formats))));
    }
    listed
}

fn media(object: ObjectId, container: &'static str, s: &Ssrc, duration_ms: u64) -> RtpMedia {
    RtpMedia {
        object,
        container,
        sha256: None,
        size: None,
        frames: None,
        keyframes: None,
        lost_frames: None,
        lost_packets_between_frames: None,
        width: None,
        height: None,
        frame_rate: None,
        samples: None,
        silence: Vec::new(),
        late_packets: s.late,
        duration_ms,
        mpegts: None,
    }
}

/// H.264 (or H.265) access units into Matroska, at their RTP presentation times. The file opens once the
/// parameter sets are known (from SDP, or in band): its header carries them (avcC). Access
/// units before that cannot be decoded by anyone; they are counted, not written.
pub struct H264Writer {
    hevc: bool,
    meta: ObjectMeta,
    clock_rate: u32,
    depack: Depacketizer,
    id: Option<ObjectId>,
    written: u64,
    clusters: mkv::Clusters,
    first_ts: Option<u32>,
    frames: u64,
    keyframes: u64,
    lost: u64,
    before_parameter_sets: u64,
    /// The pictures written, for the clip they may be (`context.video`).
    print: VideoPrint,
}

impl H264Writer {
    fn new(meta: ObjectMeta, clock_rate: u32, hevc: bool) -> H264Writer {
        H264Writer {
            hevc,
            meta,
            clock_rate: clock_rate.max(1),
            depack: if hevc { Depacketizer::hevc() } else { Depacketizer::new() },
            id: None,
            written: 0,
            clusters: mkv::Clusters::default(),
            first_ts: None,
            frames: 0,
            keyframes: 0,
            lost: 0,
            before_parameter_sets: 0,
            print: VideoPrint::default(),
        }
    }

    /// The Matroska track, once the parameter sets it needs are known.
    fn track(&self) -> Option<mkv::Track> {
        let (sps, pps) = (self.depack.sps()?, self.depack.pps()?);
        let (codec_id, private, size) = if self.hevc {
            let vps = self.depack.vps()?;
            let record = h264::hevc_decoder_configuration_record(vps, sps, pps).ok()?;
            ("V_MPEGH/ISO/HEVC", record, h264::parse_hevc_sps(sps).ok().map(|s| (s.width, s.height)))
        } else {
            let record = h264::avc_decoder_configuration_record(sps, pps).ok()?;
            ("V_MPEG4/ISO/AVC", record, h264::parse_sps(sps).ok().map(|s| (s.width, s.height)))
        };
        Some(mkv::Track { codec_id, codec_private: Some(private), video: Some(size.unwrap_or((0, 0))), audio: None })
    }

    /// The picture size the SPS gives.
    fn size(&self) -> Option<(u32, u32)> {
        let sps = self.depack.sps()?;
        if self.hevc {
            h264::parse_hevc_sps(sps).ok().map(|s| (s.width, s.height))
        } else {
            h264::parse_sps(sps).ok().map(|s| (s.width, s.height))
        }
    }

    fn write(&mut self, id: ObjectId, bytes: &[u8], cx: &mut Cx) {
        cx.object_data(id, self.written, bytes);
        self.written += bytes.len() as u64;
    }

    /// Writes the access units the depacketiser finished; counts the lost ones.
    fn drain(&mut self, cx: &mut Cx) {
        while let Some(e) = self.depack.pop() {
            let au = match e {
                Event::AccessUnit(au) => au,
                Event::Lost { .. } => {
                    self.lost += 1;
                    continue;
                }
                Event::Gap { .. } => continue,
            };
            let id = match self.id {
                Some(id) => id,
                None => {
                    let Some(track) = self.track() else {
                        self.before_parameter_sets += 1;
                        continue;
                    };
                    let id = cx.open_object(self.meta.clone());
                    self.id = Some(id);
                    self.write(id, &mkv::header(&track), cx);
                    id
                }
            };
            let first = *self.first_ts.get_or_insert(au.rtp_ts);
            let ticks = i64::from(au.rtp_ts.wrapping_sub(first) as i32);
            let ms = ticks * 1000 / i64::from(self.clock_rate);
            let block = self.clusters.block(ms, au.keyframe, &au.avcc_sample());
            self.write(id, &block, cx);
            let codec = if self.hevc { VideoCodec::Hevc } else { VideoCodec::H264 };
            self.print.access_unit(codec, au.nals.iter().map(Vec::as_slice));
            self.frames += 1;
            self.keyframes += u64::from(au.keyframe);
        }
    }
}

/// The OpusHead a Matroska Opus track carries (RFC 7845 5.1): version 1, the channels, a
/// pre-skip of 312 samples (what libopus encoders use; RTP does not carry it), 48 kHz input,
/// no gain, mapping family 0.
fn opus_head(channels: u8) -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1);
    h.push(channels);
    h.extend_from_slice(&312u16.to_le_bytes());
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes());
    h.push(0);
    h
}

/// The first four bytes of an ADTS header that every frame of a stream shares (ISO 14496-3
/// 1.A.2.2): MPEG-4, no CRC, profile, sampling frequency index and channel configuration.
fn adts_fixed(c: &flv::AacConfig) -> Option<[u8; 4]> {
    const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    let index = RATES.iter().position(|&r| r == c.sample_rate)? as u8;
    let profile = c.object_type.checked_sub(1).filter(|p| *p < 4)?;
    let ch = c.channels & 7;
    Some([0xff, 0xf1, profile << 6 | index << 2 | ch >> 2, (ch & 3) << 6])
}

/// One ADTS frame: the fixed header, the frame length, buffer fullness "variable", one block.
fn adts_frame(fixed: &[u8; 4], au: &[u8]) -> Vec<u8> {
    let len = (au.len() + 7).min(0x1fff) as u16;
    let mut f = Vec::with_capacity(7 + au.len());
    f.extend_from_slice(&fixed[..3]);
    f.push(fixed[3] | (len >> 11) as u8);
    f.push((len >> 3) as u8);
    f.push(((len & 7) as u8) << 5 | 0x1f);
    f.push(0xfc);
    f.extend_from_slice(au);
    f
}

/// The AudioSpecificConfig's first fields from an MP4A-LATM `config` (a StreamMuxConfig in
/// hex, ISO 14496-3 1.7.3): only audioMuxVersion 0 with one program and one layer, where the
/// AudioSpecificConfig starts at bit 15.
fn latm_config(hex_config: &str) -> Option<flv::AacConfig> {
    let b = hex::decode(hex_config).ok()?;
    let bit = |i: usize| b.get(i / 8).map(|x| x >> (7 - i % 8) & 1);
    // audioMuxVersion (1), allStreamsSameTimeFraming (1), numSubFrames (6), numProgram (4),
    // numLayer (3): version, program and layer must be 0.
    if bit(0)? != 0 || (8..15).any(|i| bit(i) != Some(0)) {
        return None;
    }
    // The rest, shifted to start at bit 15.
    let asc: Vec<u8> = (0..b.len().saturating_sub(2))
        .map(|k| (0..8).fold(0u8, |acc, j| acc << 1 | bit(15 + 8 * k + j).unwrap_or(0)))
        .collect();
    flv::aac_config(&asc)
}

/// MP4A-LATM payloads being put together: an AudioMuxElement may span packets (the marker bit
/// ends it); each holds PayloadLengthInfo (bytes of 255 summed, then the last) and that many
/// bytes of one AAC frame, possibly more than one element per packet.
#[derive(Default)]
struct Latm {
    pending: Vec<u8>,
    last_ext: Option<u64>,
}

/// The longest AudioMuxElement put together (an AAC frame is at most 6144 bits per channel).
const MAX_LATM_ELEMENT: usize = 64 * 1024;

impl Latm {
    /// The AAC frames the packet `ext` completes; a loss inside an element drops it, counted.
    fn push(&mut self, ext: u64, marker: bool, payload: &[u8], malformed: &mut u64) -> Vec<Vec<u8>> {
        if !self.pending.is_empty() && self.last_ext.is_some_and(|l| l + 1 != ext) {
            self.pending.clear();
            *malformed += 1;
        }
        self.last_ext = Some(ext);
        if self.pending.len() + payload.len() > MAX_LATM_ELEMENT {
            self.pending.clear();
            *malformed += 1;
            return Vec::new();
        }
        self.pending.extend_from_slice(payload);
        if !marker {
            return Vec::new();
        }
        let data = std::mem::take(&mut self.pending);
        let mut frames = Vec::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let mut len = 0usize;
            let mut used = 0;
            while let Some(&b) = rest.get(used) {
                used += 1;
                len += usize::from(b);
                if b != 255 {
                    break;
                }
            }
            match rest.get(used..used + len) {
                Some(frame) if used > 0 && len > 0 => {
                    frames.push(frame.to_vec());
                    rest = &rest[used + len..];
                }
                _ => {
                    *malformed += 1;
                    break;
                }
            }
        }
        frames
    }
}

/// The access units of an RFC 3640 payload: AU-headers-length (bits), AU headers of
/// `size_len` + `index_len` bits, then the units. `None` if the sizes do not add up (a unit
/// fragmented across packets is among these: not written, counted).
fn aac_units(payload: &[u8], size_len: u32, index_len: u32) -> Option<Vec<&[u8]>> {
    let header_bits = u32::from(u16::from_be_bytes([*payload.first()?, *payload.get(1)?]));
    let per = size_len + index_len;
    if per == 0 || per > 32 || header_bits % per != 0 {
        return None;
    }
    let header_bytes = header_bits.div_ceil(8) as usize;
    let headers = payload.get(2..2 + header_bytes)?;
    let mut data = payload.get(2 + header_bytes..)?;
    let mut units = Vec::new();
    for i in 0..header_bits / per {
        let mut v = 0u32;
        for b in i * per..i * per + size_len {
            let bit = (headers[(b / 8) as usize] >> (7 - b % 8)) & 1;
            v = v << 1 | u32::from(bit);
        }
        let n = v as usize;
        if n > data.len() {
            return None;
        }
        let (au, rest) = data.split_at(n);
        units.push(au);
        data = rest;
    }
    Some(units)
}

/// A WAV header for 8 kHz mono G.711 (`format` 7 u-law, 6 A-law) whose sizes say "unknown"
/// (all ones): the file is written as the packets come, its length known only at the end.
fn wav_header(format: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(46);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&u32::MAX.to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&18u32.to_le_bytes());
    h.extend_from_slice(&format.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // channels
    h.extend_from_slice(&8000u32.to_le_bytes()); // sample rate
    h.extend_from_slice(&8000u32.to_le_bytes()); // bytes per second
    h.extend_from_slice(&1u16.to_le_bytes()); // block align
    h.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    h.extend_from_slice(&0u16.to_le_bytes()); // cbSize
    h.extend_from_slice(b"data");
    h.extend_from_slice(&u32::MAX.to_le_bytes());
    h
}

impl StreamAnalyzer for Rtp {
    fn data(&mut self, dir: Dir, _offset: u64, bytes: &[u8], cx: &mut Cx) {
        self.packet(dir, bytes, cx);
    }

    fn gap(&mut self, _dir: Dir, _offset: u64, _len: u64, _cx: &mut Cx) {}

    fn close(&mut self, _how: Close, cx: &mut Cx) {
        self.end(cx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::harness::Harness;

    #[test]
    fn latm_config_and_elements_across_packets() {
        // FFmpeg's config for 44.1 kHz mono AAC-LC.
        let c = latm_config("400024103fc0").unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 44100, 1));
        assert!(latm_config("c00024103fc0").is_none(), "audioMuxVersion 1");
        let mut l = Latm::default();
        let mut bad = 0;
        // A 300-byte frame (length 255 + 45) over two packets, then two small ones in one.
        let mut first = vec![255, 45];
        first.extend(std::iter::repeat_n(7u8, 200));
        assert!(l.push(1, false, &first, &mut bad).is_empty());
        let done = l.push(2, true, &[7; 100], &mut bad);
        assert_eq!((done.len(), done[0].len(), bad), (1, 300, 0));
        assert_eq!(l.push(3, true, &[2, 1, 1, 1, 9], &mut bad), vec![vec![1, 1], vec![9]]);
        // A lost packet inside an element: the element is dropped, counted.
        assert!(l.push(4, false, &first, &mut bad).is_empty());
        assert_eq!(l.push(6, true, &[3, 1, 2, 3], &mut bad), vec![vec![1, 2, 3]]);
        assert_eq!(bad, 1);
        // A length past the element.
        assert!(l.push(7, true, &[9, 1], &mut bad).is_empty());
        assert_eq!(bad, 2);
    }

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn a_flood_of_fake_ssrcs_opens_at_most_the_bound_of_files() {
        let mut h = Harness::new("192.0.2.1:4000", "192.0.2.2:5004");
        let mut a = Rtp::default();
        for i in 0..10_000u32 {
            h.send(&mut a, Dir::Orig, &packet(0, i as u16, i * 160, 0x1000 + i, &[0xff; 160]));
        }
        h.close(&mut a, Close::Fin);
        assert_eq!(h.sink.objects.len(), MAX_SSRCS, "one WAV per SSRC followed, no more");
        let events: Vec<serde_json::Value> = h
            .sink
            .iri
            .iter()
            .filter(|r| matches!(r.event, crate::record::IriEvent::App(_)))
            .map(|r| serde_json::to_value(r).unwrap())
            .collect();
        let count = |what: &str| events.iter().filter(|e| e["what"] == what).count();
        assert_eq!((count("stream-begin"), count("stream-end")), (MAX_SSRCS, MAX_SSRCS));
        let end = events.iter().find(|e| e["what"] == "stream-end").unwrap();
        assert_eq!(end["refused_ssrc_packets"], 10_000 - MAX_SSRCS as u64, "{end}");
    }
}
