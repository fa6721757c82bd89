//! RTMP (Adobe RTMP 1.0): a published or played stream becomes an FLV file a player opens, and
//! IRI says who streamed what, where, in which codecs, for how long.
//!
//! Found by its handshake on any port ([`probe`]). After the handshake (3073 bytes each way)
//! each direction is a chunk stream ([`chunk`]) of messages: AMF0 commands ([`amf0`]) name the
//! application (`connect`), the stream (`publish`, `play`) and its end (`FCUnpublish`,
//! `deleteStream`); audio, video and data messages of a message stream are FLV tag bodies
//! already, so each (direction, message stream) that carries media becomes one `stream`
//! object: the FLV header, then the messages as tags with their timestamps
//! ([`crate::media::flv`]).
//!
//! The stream name of a publish is usually the stream key, a credential: IRI says `***` and a
//! SHA-256 fingerprint (to link two sessions of one key without holding it), as FTP's PASS is
//! never kept. Credentials in tcUrl (user info, token-like query values) are masked too.
//!
//! A hole in a direction (loss, a memory bound) breaks its chunk stream for good: chunk
//! headers compress against earlier ones, so nothing after the hole can be read with
//! confidence. The streams of that direction end incomplete there, IRI says so, and the
//! direction's remaining bytes are kept as a raw `stream` object; nothing is spliced. The same
//! happens when the chunk stream breaks a bound ([`chunk::Limits`]) or stops making sense.

pub mod amf0;
pub mod chunk;
pub mod mp4;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::amf0::Amf;
use self::chunk::{ChunkReader, Limits, Message};
use super::detect::Verdict;
use super::{Cx, StreamAnalyzer};
use crate::media::fingerprint::VideoPrint;
use crate::media::flv;
use crate::record::{de, Close, Dir, ObjectId, ObjectMeta};

/// C0+C1+C2 (and S0+S1+S2): what precedes each direction's chunk stream.
pub const HANDSHAKE: u64 = 1 + 1536 + 1536;

/// Message streams with media followed per connection; more are counted, not written.
const MAX_STREAMS: usize = 16;

const AUDIO: u8 = 8;
const VIDEO: u8 = 9;
const DATA_AMF3: u8 = 15;
const COMMAND_AMF3: u8 = 17;
const DATA_AMF0: u8 = 18;
const COMMAND_AMF0: u8 = 20;

/// Claims a connection whose client starts with version 3 and a whole C1 (RTMPE's 6 and 8 are
/// encrypted: left to the raw analyzer).
pub fn probe(_dir: Dir, first: &[u8]) -> Verdict {
    match first.first() {
        None => Verdict::NeedMore,
        Some(3) if first.len() as u64 > 1536 => Verdict::Match,
        Some(3) => Verdict::NeedMore,
        Some(_) => Verdict::NoMatch,
    }
}

pub fn analyzer() -> Box<dyn StreamAnalyzer> {
    Box::new(Rtmp::default())
}

/// What an RTMP event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RtmpWhat {
    /// The client's `connect`: application and URL.
    Connect,
    /// `publish` or `play` of a named stream.
    StreamBegin,
    /// A stream's media ended: what it held.
    StreamEnd,
    /// The server's verdict (`onStatus`, or `_result`/`_error` of `connect`).
    Status,
    /// A direction could not be followed further.
    Error,
}

/// What RTMP adds to the IRI.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RtmpEvent {
    pub what: RtmpWhat,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Credentials masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tc_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flash_ver: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    /// `publish` (the client sends) or `play` (the server sends).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::option_static_str")]
    pub mode: Option<de::StaticStr>,
    /// `***`: the stream name is the stream key.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::option_static_str")]
    pub stream_name: Option<de::StaticStr>,
    /// SHA-256 of the stream name, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_name_sha256: Option<String>,
    /// `live`, `record`, `append`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_type: Option<String>,
    /// The RTMP message stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_stream: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RtmpEvent {
    fn new(what: RtmpWhat) -> RtmpEvent {
        RtmpEvent {
            what,
            app: None,
            tc_url: None,
            flash_ver: None,
            page_url: None,
            mode: None,
            stream_name: None,
            stream_name_sha256: None,
            publish_type: None,
            message_stream: None,
            status: None,
            level: None,
            media: None,
            error: None,
        }
    }
}

/// What one stream's media held.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MediaFacts {
    /// The `stream` object (FLV).
    pub object: ObjectId,
    #[serde(deserialize_with = "de::static_str")]
    pub container: de::StaticStr,
    /// The direction that carried it.
    pub direction: Dir,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioFacts>,
    /// Message timestamps (ms) of the first and last audio or video message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ms: Option<u32>,
    pub duration_ms: u64,
    /// Every message of the stream was read to its end (no hole, no broken chunk stream).
    pub complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `onMetaData` as the sender described the stream.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
    /// The MP4 copy, where the codecs allow one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mp4: Option<mp4::Mp4Facts>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VideoFacts {
    #[serde(deserialize_with = "de::static_str")]
    pub codec: de::StaticStr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    pub frames: u64,
    pub keyframes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AudioFacts {
    #[serde(deserialize_with = "de::static_str")]
    pub codec: de::StaticStr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
    pub frames: u64,
}

/// A stream named by `publish` or `play`.
#[derive(Clone)]
struct Named {
    mode: &'static str,
    name_sha256: String,
}

/// One (direction, message stream) being written as FLV.
struct Out {
    id: ObjectId,
    written: u64,
    facts: MediaFacts,
    named: Option<Named>,
    /// The message stream `named` came from (not always the media's own).
    named_stream: Option<u32>,
    /// The pictures sent, for the clip they may be (`context.video`).
    print: VideoPrint,
    /// The FLV object's metadata, for its MP4 copy.
    meta: ObjectMeta,
    mp4: mp4::Mp4Copy,
}

/// One direction's chunk stream, or its raw remainder once it cannot be followed.
struct Side {
    reader: ChunkReader,
    broken: Option<String>,
    raw: Option<ObjectId>,
}

impl Default for Side {
    fn default() -> Self {
        Side { reader: ChunkReader::new(Limits::default()), broken: None, raw: None }
    }
}

#[derive(Default)]
pub struct Rtmp {
    sides: [Side; 2],
    app: Option<String>,
    tc_url: Option<String>,
    /// Streams named by the client, by message stream id.
    named: BTreeMap<u32, Named>,
    outs: BTreeMap<(usize, u32), Out>,
    /// Media messages of streams past [`MAX_STREAMS`].
    refused_messages: u64,
    /// `onMetaData` of each (direction, message stream), until its object opens.
    metadata: BTreeMap<(usize, u32), Value>,
}

impl Rtmp {
    fn message(&mut self, dir: Dir, m: Message, cx: &mut Cx) {
        match m.type_id {
            COMMAND_AMF0 => self.command(dir, &m, &m.payload, cx),
            // AMF3 command and data messages start with a format byte, then AMF0.
            COMMAND_AMF3 if !m.payload.is_empty() => self.command(dir, &m, &m.payload[1..], cx),
            DATA_AMF0 => self.data(dir, &m, &m.payload, cx),
            DATA_AMF3 if !m.payload.is_empty() => self.data(dir, &m, &m.payload[1..], cx),
            AUDIO | VIDEO => self.media(dir, &m, cx),
            _ => {}
        }
    }

    fn command(&mut self, dir: Dir, m: &Message, body: &[u8], cx: &mut Cx) {
        let Ok(v) = amf0::decode_all(body) else { return };
        let Some(name) = v.first().and_then(Amf::as_str) else { return };
        let obj = v.get(2);
        let arg = |i: usize| v.get(i + 3);
        match (dir, name) {
            (Dir::Orig, "connect") => {
                let s = |k: &str| obj.and_then(|o| o.get(k)).and_then(Amf::as_str).map(String::from);
                self.app = s("app").map(|a| mask_url(&a));
                self.tc_url = s("tcUrl").map(|u| mask_url(&u));
                let mut e = RtmpEvent::new(RtmpWhat::Connect);
                e.app = self.app.clone();
                e.tc_url = self.tc_url.clone();
                e.flash_ver = s("flashVer");
                e.page_url = s("pageUrl").map(|u| mask_url(&u));
                cx.emit_app(cx.cin, "rtmp", e);
            }
            (Dir::Orig, "publish" | "play") => {
                let Some(stream) = arg(0).and_then(Amf::as_str) else { return };
                let mode = if name == "publish" { "publish" } else { "play" };
                let named = Named { mode, name_sha256: sha256_hex(stream.as_bytes()) };
                if self.named.len() < MAX_STREAMS || self.named.contains_key(&m.stream_id) {
                    self.named.insert(m.stream_id, named.clone());
                }
                let mut e = self.stream_event(RtmpWhat::StreamBegin, m.stream_id, &named);
                e.publish_type = if mode == "publish" { arg(1).and_then(Amf::as_str).map(String::from) } else { None };
                cx.emit_app(cx.cin, "rtmp", e);
            }
            (Dir::Orig, "FCUnpublish" | "deleteStream" | "closeStream") => {
                // deleteStream names its stream in its argument; the others run on it.
                let id = match name {
                    "deleteStream" => arg(0).and_then(Amf::as_f64).map_or(m.stream_id, |n| n as u32),
                    _ => m.stream_id,
                };
                if name != "FCUnpublish" || id != 0 {
                    for d in [Dir::Orig, Dir::Resp] {
                        self.end_stream(d, id, cx);
                    }
                } else {
                    // FCUnpublish runs on stream 0: it ends what the client published.
                    let published: Vec<u32> =
                        self.outs.keys().filter(|(d, _)| *d == Dir::Orig.index()).map(|(_, s)| *s).collect();
                    for s in published {
                        self.end_stream(Dir::Orig, s, cx);
                    }
                }
            }
            (Dir::Resp, "onStatus") => {
                let info = arg(0);
                let s = |k: &str| info.and_then(|o| o.get(k)).and_then(Amf::as_str).map(String::from);
                let mut e = RtmpEvent::new(RtmpWhat::Status);
                e.status = s("code");
                e.level = s("level");
                e.message_stream = Some(m.stream_id);
                cx.emit_app(cx.cin, "rtmp", e);
            }
            (Dir::Resp, "_result" | "_error") if v.get(1).and_then(Amf::as_f64) == Some(1.0) => {
                // The answer to connect (transaction 1).
                let info = arg(0);
                let s = |k: &str| info.and_then(|o| o.get(k)).and_then(Amf::as_str).map(String::from);
                let mut e = RtmpEvent::new(RtmpWhat::Status);
                e.status = s("code");
                e.level = s("level");
                cx.emit_app(cx.cin, "rtmp", e);
            }
            _ => {}
        }
    }

    fn stream_event(&self, what: RtmpWhat, stream: u32, named: &Named) -> RtmpEvent {
        let mut e = RtmpEvent::new(what);
        e.app = self.app.clone();
        e.tc_url = self.tc_url.clone();
        e.mode = Some(named.mode);
        e.stream_name = Some("***");
        e.stream_name_sha256 = Some(named.name_sha256.clone());
        e.message_stream = Some(stream);
        e
    }

    /// `@setDataFrame`/`onMetaData`: kept with the stream, and written as the FLV's script tag
    /// (without `@setDataFrame`, as a file holds it).
    fn data(&mut self, dir: Dir, m: &Message, body: &[u8], cx: &mut Cx) {
        let mut body = body;
        if amf0::decode_all(body).ok().and_then(|v| v.first().and_then(|f| f.as_str().map(String::from))).as_deref()
            == Some("@setDataFrame")
        {
            body = &body[amf0::first_len(body).unwrap_or(0)..];
        }
        let Ok(v) = amf0::decode_all(body) else { return };
        if v.first().and_then(Amf::as_str) != Some("onMetaData") {
            return;
        }
        let meta = v.get(1).map(Amf::to_json).unwrap_or(Value::Null);
        self.metadata.insert((dir.index(), m.stream_id), meta.clone());
        if let Some(out) = self.out(dir, m.stream_id, cx) {
            out.facts.metadata = meta;
            Self::write(out, flv::TAG_SCRIPT, m.timestamp, body, cx);
        }
    }

    fn media(&mut self, dir: Dir, m: &Message, cx: &mut Cx) {
        let Some(out) = self.out(dir, m.stream_id, cx) else { return };
        let f = &mut out.facts;
        if m.type_id == VIDEO {
            out.print.flv_video(&m.payload);
            if let Some(t) = flv::video_tag(&m.payload) {
                let v = f.video.get_or_insert_with(VideoFacts::default);
                v.codec = t.codec;
                if t.config && t.codec == "h264" {
                    if let Some(c) = m.payload.get(5..).and_then(flv::avc_config) {
                        v.profile = Some(c.profile);
                        v.level = Some(c.level);
                    }
                }
                if t.frame {
                    v.frames += 1;
                    v.keyframes += u64::from(t.keyframe);
                }
            }
        } else if let Some(t) = flv::audio_tag(&m.payload) {
            let a = f.audio.get_or_insert_with(AudioFacts::default);
            a.codec = t.codec;
            if t.config && t.codec == "aac" {
                if let Some(c) = m.payload.get(2..).and_then(flv::aac_config) {
                    a.sample_rate = Some(c.sample_rate);
                    a.channels = Some(c.channels);
                }
            } else if a.sample_rate.is_none() && t.codec != "aac" && t.sample_rate > 0 {
                a.sample_rate = Some(t.sample_rate);
                a.channels = Some(t.channels);
            }
            a.frames += u64::from(t.frame);
        }
        f.first_ms.get_or_insert(m.timestamp);
        f.last_ms = Some(m.timestamp);
        Self::write(out, m.type_id, m.timestamp, &m.payload, cx);
        let num = |k: &str| out.facts.metadata.get(k).and_then(Value::as_f64).map_or(0, |x| x as u32);
        let size = (num("width"), num("height"));
        out.mp4.message(m.type_id, m.timestamp, &m.payload, &out.meta, size, cx);
    }

    /// The FLV being written for (`dir`, `stream`), opened at its first tag.
    fn out(&mut self, dir: Dir, stream: u32, cx: &mut Cx) -> Option<&mut Out> {
        let key = (dir.index(), stream);
        if !self.outs.contains_key(&key) {
            if self.outs.len() >= MAX_STREAMS {
                self.refused_messages += 1;
                return None;
            }
            // Who sends the media of a named stream: the client for publish, the server for play.
            // Media normally runs on the stream the command named; FFmpeg serving a play sends
            // it on stream 0, so the last stream named in that mode and not yet written counts.
            let sends = |n: &Named| (n.mode == "publish") == (dir == Dir::Orig);
            let bound: Vec<u32> = self.outs.values().filter_map(|o| o.named_stream).collect();
            let named_stream = self
                .named
                .get(&stream)
                .filter(|n| sends(n))
                .map(|_| stream)
                .or_else(|| self.named.iter().rev().find(|(s, n)| sends(n) && !bound.contains(s)).map(|(s, _)| *s));
            let named = named_stream.and_then(|s| self.named.get(&s)).cloned();
            let mut meta = ObjectMeta::new("stream", "rtmp", cx.flow, dir, cx.cin, cx.now);
            meta.name = Some(format!("rtmp-{}-{stream}.flv", named.as_ref().map_or("stream", |n| n.mode)));
            meta.context = serde_json::json!({
                "container": "flv",
                "app": self.app,
                "tc_url": self.tc_url,
                "mode": named.as_ref().map(|n| n.mode),
                "stream_name": named.as_ref().map(|_| "***"),
                "stream_name_sha256": named.as_ref().map(|n| n.name_sha256.clone()),
                "message_stream": stream,
            });
            let id = cx.open_object(meta.clone());
            let metadata = self.metadata.get(&key).cloned().unwrap_or(Value::Null);
            let (audio, video) = flags(&metadata);
            cx.object_data(id, 0, &flv::header(audio, video));
            let facts = MediaFacts {
                object: id,
                container: "flv",
                direction: dir,
                video: None,
                audio: None,
                first_ms: None,
                last_ms: None,
                duration_ms: 0,
                complete: true,
                sha256: None,
                size: None,
                metadata,
                mp4: None,
            };
            let (print, mp4) = (VideoPrint::default(), mp4::Mp4Copy::default());
            self.outs.insert(key, Out { id, written: 13, facts, named, named_stream, print, meta, mp4 });
        }
        self.outs.get_mut(&key)
    }

    fn write(out: &mut Out, tag_type: u8, ts: u32, body: &[u8], cx: &mut Cx) {
        let t = flv::tag(tag_type, ts, body);
        cx.object_data(out.id, out.written, &t);
        out.written += t.len() as u64;
    }

    /// Ends the FLV of (`dir`, `stream`), if one is open, and says what it held.
    fn end_stream(&mut self, dir: Dir, stream: u32, cx: &mut Cx) {
        // The media of a named stream may run on another message stream (see `out`).
        let key = self
            .outs
            .iter()
            .find(|((d, s), o)| *d == dir.index() && (*s == stream || o.named_stream == Some(stream)))
            .map(|(k, _)| *k);
        let Some(mut out) = key.and_then(|k| self.outs.remove(&k)) else { return };
        let video = std::mem::take(&mut out.print).finish().map(|v| serde_json::json!(v));
        if let Some(v) = &video {
            cx.object_context(out.id, "video", v.clone());
        }
        let ended = cx.object_end(out.id, true);
        out.facts.mp4 = out.mp4.end(video.as_ref(), out.facts.complete, cx);
        let f = &mut out.facts;
        if let (Some(a), Some(b)) = (f.first_ms, f.last_ms) {
            f.duration_ms = u64::from(b.wrapping_sub(a));
        }
        if let Some(v) = f.video.as_mut() {
            let num = |k: &str| f.metadata.get(k).and_then(Value::as_f64);
            v.width = num("width").map(|x| x as u32);
            v.height = num("height").map(|x| x as u32);
            v.frame_rate = num("framerate");
        }
        if let Some(e) = ended {
            f.complete &= e.complete;
            f.sha256 = Some(e.sha256);
            f.size = Some(e.size);
        }
        let mut e = match &out.named {
            Some(n) => self.stream_event(RtmpWhat::StreamEnd, out.named_stream.unwrap_or(stream), n),
            None => {
                let mut e = RtmpEvent::new(RtmpWhat::StreamEnd);
                e.app = self.app.clone();
                e.message_stream = Some(stream);
                e
            }
        };
        e.media = Some(out.facts);
        cx.emit_app(cx.cin, "rtmp", e);
    }

    /// `dir` cannot be followed further: its streams end incomplete, IRI says why.
    fn break_side(&mut self, dir: Dir, why: String, cx: &mut Cx) {
        let streams: Vec<u32> = self.outs.keys().filter(|(d, _)| *d == dir.index()).map(|(_, s)| *s).collect();
        for s in streams {
            if let Some(o) = self.outs.get_mut(&(dir.index(), s)) {
                o.facts.complete = false;
            }
            self.end_stream(dir, s, cx);
        }
        let mut e = RtmpEvent::new(RtmpWhat::Error);
        e.error = Some(format!("{} direction: {why}", if dir == Dir::Orig { "client" } else { "server" }));
        cx.emit_app(cx.cin, "rtmp", e);
        self.sides[dir.index()].broken = Some(why);
    }

    /// Keeps a broken direction's bytes as they came, at their stream offsets.
    fn raw(&mut self, dir: Dir, offset: u64, bytes: Option<&[u8]>, len: u64, cx: &mut Cx) {
        let side = &mut self.sides[dir.index()];
        let id = *side.raw.get_or_insert_with(|| {
            let meta = ObjectMeta::new("stream", "tcp", cx.flow, dir, cx.cin, cx.now);
            cx.open_object(meta)
        });
        match bytes {
            Some(b) => cx.object_data(id, offset, b),
            None => cx.object_gap(id, offset, len),
        }
    }
}

/// FLV header flags from `onMetaData` (both when it says nothing).
fn flags(meta: &Value) -> (bool, bool) {
    let has = |k: &str| meta.get(k).is_some_and(|v| !v.is_null());
    match (has("audiocodecid"), has("videocodecid")) {
        (false, false) => (true, true),
        (a, v) => (a, v),
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

/// A URL or application name with its credentials masked: user info, and token-like query
/// values (as HTTP targets are).
pub(crate) fn mask_url(u: &str) -> String {
    let (scheme, rest) = match u.find("://") {
        Some(i) => (&u[..i + 3], &u[i + 3..]),
        None => ("", u),
    };
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let rest = match rest[..host_end].rfind('@') {
        Some(at) => format!("***@{}", &rest[at + 1..]),
        None => rest.to_string(),
    };
    format!("{scheme}{}", super::http::parse::mask_target(&rest))
}

impl StreamAnalyzer for Rtmp {
    fn data(&mut self, dir: Dir, offset: u64, bytes: &[u8], cx: &mut Cx) {
        if self.sides[dir.index()].broken.is_some() {
            return self.raw(dir, offset, Some(bytes), 0, cx);
        }
        let skip = HANDSHAKE.saturating_sub(offset).min(bytes.len() as u64) as usize;
        let chunks = &bytes[skip..];
        if chunks.is_empty() {
            return;
        }
        let mut messages = Vec::new();
        let r = self.sides[dir.index()].reader.push(chunks, &mut |m| messages.push(m));
        for m in messages {
            self.message(dir, m, cx);
        }
        if let Err(e) = r {
            self.break_side(dir, e.to_string(), cx);
            self.raw(dir, offset + skip as u64, Some(chunks), 0, cx);
        }
    }

    fn gap(&mut self, dir: Dir, offset: u64, len: u64, cx: &mut Cx) {
        if self.sides[dir.index()].broken.is_none() {
            self.break_side(dir, format!("{len} bytes missing at stream offset {offset}"), cx);
        }
        self.raw(dir, offset, None, len, cx);
    }

    fn close(&mut self, _how: Close, cx: &mut Cx) {
        let open: Vec<(usize, u32)> = self.outs.keys().copied().collect();
        for (d, s) in open {
            let dir = if d == Dir::Orig.index() { Dir::Orig } else { Dir::Resp };
            self.end_stream(dir, s, cx);
        }
        for side in &mut self.sides {
            if let Some(id) = side.raw.take() {
                cx.object_end(id, true);
            }
        }
        if self.refused_messages > 0 {
            let mut e = RtmpEvent::new(RtmpWhat::Error);
            e.error =
                Some(format!("{} media messages of streams past {MAX_STREAMS} not written", self.refused_messages));
            cx.emit_app(cx.cin, "rtmp", e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_masked() {
        assert_eq!(mask_url("rtmp://joe:pw@host:1935/live?token=abc&x=1"), "rtmp://***@host:1935/live?token=***&x=1");
        assert_eq!(mask_url("live"), "live");
        assert_eq!(mask_url("rtmp://host/app/inst"), "rtmp://host/app/inst");
    }

    #[test]
    fn the_handshake_is_what_claims_a_connection() {
        let mut c = vec![3u8];
        c.extend_from_slice(&[0; 1536]);
        assert_eq!(probe(Dir::Orig, &c), Verdict::Match);
        assert_eq!(probe(Dir::Orig, &c[..100]), Verdict::NeedMore);
        assert_eq!(probe(Dir::Orig, b"GET / HTTP/1.1\r\n"), Verdict::NoMatch);
        assert_eq!(probe(Dir::Orig, &[6; 1537]), Verdict::NoMatch, "RTMPE");
    }
}
