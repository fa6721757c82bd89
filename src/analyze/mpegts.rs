//! MPEG-TS (ISO/IEC 13818-1) carried in datagrams: over plain UDP (188-byte packets, usually 7
//! per datagram) or as RTP payload type 33 (RFC 2250). The transport stream is already a file a
//! player opens: its packets are written, in the order they came, as one `stream` object.
//!
//! What the stream holds comes from its own tables (PAT, then each program's PMT: stream types
//! per PID) and loss from its continuity counters: a packet missing from a PID's sequence is
//! counted, and the file keeps the break where it was (a player, or ffprobe, sees it too).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Cx, StreamAnalyzer};
use crate::media::fingerprint::{VideoCodec, VideoPrint};
use crate::record::{de, Close, Dir, ObjectId, ObjectMeta};
use crate::timestamp::Timestamp;

/// The TS packet size and sync byte.
pub const PACKET: usize = 188;
const SYNC: u8 = 0x47;
/// PIDs whose continuity is followed (a hostile stream cannot grow the table past it).
const MAX_PIDS: usize = 64;

/// Whether `datagram` is whole TS packets.
pub fn is_ts(datagram: &[u8]) -> bool {
    !datagram.is_empty() && datagram.len() % PACKET == 0 && datagram.chunks(PACKET).all(|p| p[0] == SYNC)
}

/// What a PMT stream type is, in FFmpeg's codec names.
fn codec(stream_type: u8) -> &'static str {
    match stream_type {
        0x01 | 0x02 => "mpeg2video",
        0x03 | 0x04 => "mp2",
        0x0f => "aac",
        0x11 => "aac_latm",
        0x1b => "h264",
        0x24 => "hevc",
        0x81 => "ac3",
        0x06 => "private",
        _ => "unknown",
    }
}

/// One elementary stream of the transport stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TsStream {
    pub pid: u16,
    pub stream_type: u8,
    #[serde(deserialize_with = "de::static_str")]
    pub codec: de::StaticStr,
}

/// What the transport stream held, for IRI.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TsFacts {
    pub object: ObjectId,
    #[serde(deserialize_with = "de::static_str")]
    pub container: de::StaticStr,
    /// `udp` or `rtp`.
    #[serde(deserialize_with = "de::static_str")]
    pub transport: de::StaticStr,
    pub direction: Dir,
    pub streams: Vec<TsStream>,
    pub packets: u64,
    /// Packets missing by the continuity counters (a packet lost, or a run of them).
    pub continuity_errors: u64,
    /// Datagrams that were not whole TS packets (not written).
    pub malformed: u64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// The IRI of a media stream carried in datagrams.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TsEvent {
    #[serde(deserialize_with = "de::static_str")]
    pub what: de::StaticStr,
    pub media: TsFacts,
}

/// A transport stream's packets, written as they come, with its tables and counters read.
pub struct TsWriter {
    id: ObjectId,
    written: u64,
    facts: TsFacts,
    pmt_pids: Vec<u16>,
    /// Last continuity counter per PID.
    continuity: BTreeMap<u16, u8>,
    /// The pictures of the first H.264/H.265 stream, for the clip they may be (`context.video`).
    video: VideoPes,
}

/// The PES packets of the video stream put together, each an access unit for the fingerprint.
#[derive(Default)]
struct VideoPes {
    /// The PID and codec the PMT gave.
    stream: Option<(u16, VideoCodec)>,
    pes: Vec<u8>,
    print: VideoPrint,
    /// A continuity error or an oversized PES on the video PID: its pictures are not all known.
    damaged: bool,
}

/// The largest video PES put together (a 4K key frame fits).
const MAX_PES: usize = 8 << 20;

impl VideoPes {
    fn payload(&mut self, unit_start: bool, payload: &[u8]) {
        if unit_start {
            self.flush();
        } else if self.pes.is_empty() {
            return;
        }
        if self.pes.len() + payload.len() > MAX_PES {
            self.damaged = true;
            self.pes.clear();
            return;
        }
        self.pes.extend_from_slice(payload);
    }

    /// The PES put together so far is one access unit: its data after the PES header.
    fn flush(&mut self) {
        let pes = std::mem::take(&mut self.pes);
        let Some((_, codec)) = self.stream else { return };
        if pes.get(..3) != Some(&[0, 0, 1]) {
            return;
        }
        let header = 9 + pes.get(8).map_or(0, |n| usize::from(*n));
        if let Some(data) = pes.get(header..) {
            self.print.annex_b(codec, data);
        }
    }
}

impl TsWriter {
    /// Opens the `stream` object of direction `dir` (`transport`: `udp` or `rtp`).
    pub fn open(transport: &'static str, dir: Dir, cx: &mut Cx) -> TsWriter {
        let mut meta = ObjectMeta::new("stream", transport, cx.flow, dir, cx.cin, cx.now);
        meta.name = Some(format!("{transport}-mpegts.ts"));
        meta.context = serde_json::json!({ "container": "mpegts", "transport": transport });
        let id = cx.open_object(meta);
        TsWriter {
            id,
            written: 0,
            facts: TsFacts {
                object: id,
                container: "mpegts",
                transport,
                direction: dir,
                streams: Vec::new(),
                packets: 0,
                continuity_errors: 0,
                malformed: 0,
                first_seen: cx.now,
                last_seen: cx.now,
                duration_ms: 0,
                sha256: None,
                size: None,
            },
            pmt_pids: Vec::new(),
            continuity: BTreeMap::new(),
            video: VideoPes::default(),
        }
    }

    /// Writes the TS packets of one datagram (or RTP payload).
    pub fn packets(&mut self, bytes: &[u8], cx: &mut Cx) {
        self.facts.last_seen = cx.now;
        if !is_ts(bytes) {
            self.facts.malformed += 1;
            return;
        }
        for p in bytes.chunks(PACKET) {
            self.packet(p);
        }
        cx.object_data(self.id, self.written, bytes);
        self.written += bytes.len() as u64;
    }

    fn packet(&mut self, p: &[u8]) {
        self.facts.packets += 1;
        let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
        let unit_start = p[1] & 0x40 != 0;
        let adaptation = (p[3] >> 4) & 3;
        let cc = p[3] & 0x0f;
        let has_payload = adaptation & 1 == 1;
        // Continuity: +1 per packet with payload; a repeat (duplicate) is allowed once.
        if pid != 0x1fff && has_payload {
            match self.continuity.get(&pid) {
                Some(&last) if cc != (last + 1) & 0x0f && cc != last => {
                    self.facts.continuity_errors += 1;
                    if self.video.stream.is_some_and(|(v, _)| v == pid) {
                        self.video.damaged = true;
                    }
                }
                _ => {}
            }
            if self.continuity.len() < MAX_PIDS || self.continuity.contains_key(&pid) {
                self.continuity.insert(pid, cc);
            }
        }
        if !has_payload {
            return;
        }
        let start = if adaptation == 3 { 5 + usize::from(p[4]) } else { 4 };
        let Some(payload) = p.get(start..) else { return };
        if self.video.stream.is_some_and(|(v, _)| v == pid) {
            self.video.payload(unit_start, payload);
            return;
        }
        if !unit_start {
            return;
        }
        // PSI: a pointer field, then the section.
        let Some(section) = payload.get(1 + usize::from(*payload.first().unwrap_or(&0))..) else { return };
        if pid == 0 {
            self.pat(section);
        } else if self.pmt_pids.contains(&pid) {
            self.pmt(section);
        }
    }

    fn section_body(section: &[u8], table_id: u8) -> Option<&[u8]> {
        if *section.first()? != table_id {
            return None;
        }
        let len = usize::from(u16::from(section.get(1)? & 0x0f) << 8 | u16::from(*section.get(2)?));
        // Header fields to the last section number (8 bytes), the CRC (4) at the end.
        section.get(8..(3 + len).checked_sub(4)?)
    }

    fn pat(&mut self, section: &[u8]) {
        let Some(body) = Self::section_body(section, 0x00) else { return };
        for e in body.chunks_exact(4) {
            let program = u16::from_be_bytes([e[0], e[1]]);
            let pid = u16::from(e[2] & 0x1f) << 8 | u16::from(e[3]);
            if program != 0 && !self.pmt_pids.contains(&pid) && self.pmt_pids.len() < 16 {
                self.pmt_pids.push(pid);
            }
        }
    }

    fn pmt(&mut self, section: &[u8]) {
        let Some(body) = Self::section_body(section, 0x02) else { return };
        let Some(info_len) = body.get(2..4).map(|b| usize::from(u16::from(b[0] & 0x0f) << 8 | u16::from(b[1]))) else {
            return;
        };
        let mut rest = body.get(4 + info_len..).unwrap_or(&[]);
        while let [stream_type, p0, p1, l0, l1, more @ ..] = rest {
            let pid = u16::from(p0 & 0x1f) << 8 | u16::from(*p1);
            if !self.facts.streams.iter().any(|s| s.pid == pid) && self.facts.streams.len() < MAX_PIDS {
                self.facts.streams.push(TsStream { pid, stream_type: *stream_type, codec: codec(*stream_type) });
                let video = match stream_type {
                    0x1b => Some(VideoCodec::H264),
                    0x24 => Some(VideoCodec::Hevc),
                    _ => None,
                };
                if self.video.stream.is_none() && !self.pmt_pids.contains(&pid) && pid != 0 {
                    self.video.stream = video.map(|c| (pid, c));
                }
            }
            let es_info = usize::from(u16::from(l0 & 0x0f) << 8 | u16::from(*l1));
            rest = more.get(es_info..).unwrap_or(&[]);
        }
    }

    /// Ends the object and says what it held.
    pub fn end(mut self, cx: &mut Cx) -> TsFacts {
        self.video.flush();
        let video = std::mem::take(&mut self.video);
        if let Some(v) = video.print.finish().filter(|_| !video.damaged) {
            cx.object_context(self.id, "video", serde_json::json!(v));
        }
        if let Some(e) = cx.object_end(self.id, true) {
            self.facts.sha256 = Some(e.sha256);
            self.facts.size = Some(e.size);
        }
        let f = &mut self.facts;
        f.duration_ms = (f.last_seen.nanos().saturating_sub(f.first_seen.nanos()) / 1_000_000) as u64;
        self.facts
    }
}

/// MPEG-TS over plain UDP: each direction that carries TS becomes one `.ts` object.
#[derive(Default)]
pub struct MpegTsUdp {
    writers: [Option<TsWriter>; 2],
}

impl StreamAnalyzer for MpegTsUdp {
    fn data(&mut self, dir: Dir, _offset: u64, bytes: &[u8], cx: &mut Cx) {
        if self.writers[dir.index()].is_none() {
            let w = TsWriter::open("udp", dir, cx);
            cx.emit_app(cx.cin, "mpegts", TsEvent { what: "stream-begin", media: w.facts.clone() });
            self.writers[dir.index()] = Some(w);
        }
        if let Some(w) = self.writers[dir.index()].as_mut() {
            w.packets(bytes, cx);
        }
    }

    fn gap(&mut self, _dir: Dir, _offset: u64, _len: u64, _cx: &mut Cx) {}

    fn close(&mut self, _how: Close, cx: &mut Cx) {
        for w in self.writers.iter_mut().filter_map(Option::take) {
            let media = w.end(cx);
            cx.emit_app(cx.cin, "mpegts", TsEvent { what: "stream-end", media });
        }
    }
}
