//! The RTMP chunk stream (Adobe RTMP 1.0, section 5.3): one direction's bytes after the
//! handshake, cut into chunks of at most the sender's chunk size, interleaved across chunk
//! streams, reassembled here into whole messages.
//!
//! The reader is fed bytes in any slicing and never needs a chunk whole: payload bytes go into
//! their message as they come, so memory is bounded by what messages declare, and that is
//! bounded too ([`Limits`]). Set Chunk Size and Abort are the sender's instructions to its
//! receiver about this very stream, so the reader obeys them itself, at the message boundary
//! where the receiver would.
//!
//! Timestamps follow what FFmpeg's reader does (`rtmppkt.c`), the sender tapir meets most: a
//! type-0 header carries the absolute time, types 1 and 2 a delta added to the chunk stream's
//! previous time, and a type-3 header that starts a new message repeats the previous field.

use std::collections::HashMap;

/// Chunk size before any Set Chunk Size (section 5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;

/// Protocol control message types the reader obeys.
const SET_CHUNK_SIZE: u8 = 1;
const ABORT: u8 = 2;

/// Bounds on what one direction may make the reader hold.
#[derive(Copy, Clone, Debug)]
pub struct Limits {
    /// Largest message accepted (the wire allows 16 MiB - 1).
    pub max_message: u32,
    /// Chunk streams tracked at once (the wire allows 65599).
    pub max_chunk_streams: usize,
    /// Bytes held in unfinished messages across all chunk streams.
    pub max_buffered: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message: 8 << 20, max_chunk_streams: 64, max_buffered: 16 << 20 }
    }
}

/// Why a direction's chunk stream cannot be followed any further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Set Chunk Size of 0, or with the reserved top bit set.
    #[error("invalid chunk size {0}")]
    ChunkSize(u32),
    /// A message longer than [`Limits::max_message`].
    #[error("message of {0} bytes over the limit")]
    MessageTooLong(u32),
    /// More chunk streams than [`Limits::max_chunk_streams`].
    #[error("more than {0} chunk streams")]
    TooManyChunkStreams(usize),
    /// Unfinished messages would hold more than [`Limits::max_buffered`] bytes.
    #[error("unfinished messages over {0} bytes")]
    Buffered(usize),
    /// A type 1, 2 or 3 header on a chunk stream that never had a type-0 header: its fields
    /// are unknown (a stream caught mid-way, or not RTMP).
    #[error("chunk stream {0} continues a header never seen")]
    NoPreviousHeader(u32),
}

/// One reassembled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub chunk_stream: u32,
    /// Milliseconds, wrapping at 2^32.
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Vec<u8>,
}

/// What a chunk stream remembers of its last header (header compression) and its message in
/// progress.
#[derive(Default)]
struct ChunkStream {
    timestamp: u32,
    /// The last header's timestamp field: absolute (type 0) or delta.
    ts_field: u32,
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The message being assembled (empty between messages).
    partial: Vec<u8>,
    in_message: bool,
}

/// Where the reader is within the byte stream.
enum State {
    /// Collecting a chunk header (at most 18 bytes).
    Header,
    /// `left` payload bytes of the current chunk go to chunk stream `csid`.
    Payload { csid: u32, left: u32 },
}

/// Reassembles one direction's messages.
pub struct ChunkReader {
    limits: Limits,
    chunk_size: u32,
    streams: HashMap<u32, ChunkStream>,
    header: Vec<u8>,
    state: State,
    buffered: usize,
    failed: Option<ChunkError>,
    /// Messages handed out.
    pub messages: u64,
}

impl ChunkReader {
    pub fn new(limits: Limits) -> ChunkReader {
        ChunkReader {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
            header: Vec::with_capacity(18),
            state: State::Header,
            buffered: 0,
            failed: None,
            messages: 0,
        }
    }

    /// The error that stopped the reader, if any: nothing more is read after it.
    pub fn failed(&self) -> Option<&ChunkError> {
        self.failed.as_ref()
    }

    /// The sender's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Reads `bytes`, handing every message completed to `out`. Returns the error that stopped
    /// the reader (now or earlier); the bytes after it are not read.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut dyn FnMut(Message)) -> Result<(), ChunkError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        while !bytes.is_empty() {
            let r = match self.state {
                State::Header => self.header_byte(&mut bytes),
                State::Payload { csid, left } => self.payload(csid, left, &mut bytes, out),
            };
            if let Err(e) = r {
                self.failed = Some(e.clone());
                return Err(e);
            }
        }
        Ok(())
    }

    /// Adds header bytes until a whole header is present, then applies it.
    fn header_byte(&mut self, bytes: &mut &[u8]) -> Result<(), ChunkError> {
        loop {
            let Some(need) = header_len(&self.header, &self.streams) else {
                let Some((&b, rest)) = bytes.split_first() else { return Ok(()) };
                self.header.push(b);
                *bytes = rest;
                continue;
            };
            if self.header.len() < need {
                let take = (need - self.header.len()).min(bytes.len());
                self.header.extend_from_slice(&bytes[..take]);
                *bytes = &bytes[take..];
                if self.header.len() < need {
                    return Ok(());
                }
            }
            return self.apply_header();
        }
    }

    fn apply_header(&mut self) -> Result<(), ChunkError> {
        let h = std::mem::take(&mut self.header);
        let fmt = h[0] >> 6;
        let (csid, mut i) = match h[0] & 0x3f {
            0 => (u32::from(h[1]) + 64, 2),
            1 => (u32::from(h[1]) + u32::from(h[2]) * 256 + 64, 3),
            n => (u32::from(n), 1),
        };
        if !self.streams.contains_key(&csid) {
            if fmt != 0 {
                return Err(ChunkError::NoPreviousHeader(csid));
            }
            if self.streams.len() >= self.limits.max_chunk_streams {
                return Err(ChunkError::TooManyChunkStreams(self.limits.max_chunk_streams));
            }
        }
        let cs = self.streams.entry(csid).or_default();
        let u24 = |b: &[u8]| u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        // Types 0 and 1 always start a message; one left unfinished on the chunk stream is
        // dropped (not what a sender does, but nothing may make the reader inconsistent).
        let starts_message = !cs.in_message || fmt <= 1;
        if cs.in_message && fmt <= 1 {
            self.buffered -= cs.partial.len();
            cs.partial = Vec::new();
            cs.in_message = false;
        }
        if fmt <= 2 {
            cs.ts_field = u24(&h[i..]);
            cs.extended = cs.ts_field == 0xff_ffff;
            i += 3;
        }
        if fmt <= 1 {
            cs.length = u24(&h[i..]);
            cs.type_id = h[i + 3];
            i += 4;
        }
        if fmt == 0 {
            cs.stream_id = u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
            i += 4;
        }
        if cs.extended {
            cs.ts_field = u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        }
        if starts_message {
            cs.timestamp = if fmt == 0 { cs.ts_field } else { cs.timestamp.wrapping_add(cs.ts_field) };
            if cs.length > self.limits.max_message {
                return Err(ChunkError::MessageTooLong(cs.length));
            }
            cs.in_message = true;
            cs.partial.clear();
        }
        let left = (cs.length as usize).saturating_sub(cs.partial.len()).min(self.chunk_size as usize) as u32;
        self.header = h;
        self.header.clear();
        self.state = State::Payload { csid, left };
        if left == 0 {
            // A zero-length message is whole at once.
            self.state = State::Header;
            return self.finish_if_whole(csid, &mut |_| {});
        }
        Ok(())
    }

    fn payload(
        &mut self,
        csid: u32,
        left: u32,
        bytes: &mut &[u8],
        out: &mut dyn FnMut(Message),
    ) -> Result<(), ChunkError> {
        let take = (left as usize).min(bytes.len());
        if self.buffered + take > self.limits.max_buffered {
            return Err(ChunkError::Buffered(self.limits.max_buffered));
        }
        let cs = self.streams.get_mut(&csid).expect("chunk stream of the current chunk");
        cs.partial.extend_from_slice(&bytes[..take]);
        self.buffered += take;
        *bytes = &bytes[take..];
        let left = left - take as u32;
        if left > 0 {
            self.state = State::Payload { csid, left };
            return Ok(());
        }
        self.state = State::Header;
        self.finish_if_whole(csid, out)
    }

    fn finish_if_whole(&mut self, csid: u32, out: &mut dyn FnMut(Message)) -> Result<(), ChunkError> {
        let cs = self.streams.get_mut(&csid).expect("chunk stream of the current chunk");
        if cs.partial.len() < cs.length as usize {
            return Ok(());
        }
        cs.in_message = false;
        self.buffered -= cs.partial.len();
        let m = Message {
            chunk_stream: csid,
            timestamp: cs.timestamp,
            type_id: cs.type_id,
            stream_id: cs.stream_id,
            payload: std::mem::take(&mut cs.partial),
        };
        self.messages += 1;
        // The sender's instructions about this stream take effect from the next chunk.
        if m.stream_id == 0 && m.payload.len() >= 4 {
            let v = u32::from_be_bytes([m.payload[0], m.payload[1], m.payload[2], m.payload[3]]);
            match m.type_id {
                SET_CHUNK_SIZE => {
                    if v == 0 || v & 0x8000_0000 != 0 {
                        return Err(ChunkError::ChunkSize(v));
                    }
                    self.chunk_size = v;
                }
                ABORT => {
                    if let Some(a) = self.streams.get_mut(&v) {
                        self.buffered -= a.partial.len();
                        a.partial = Vec::new();
                        a.in_message = false;
                    }
                }
                _ => {}
            }
        }
        out(m);
        Ok(())
    }
}

/// The length of the chunk header that `h` starts, once enough of it is there to tell.
fn header_len(h: &[u8], streams: &HashMap<u32, ChunkStream>) -> Option<usize> {
    let first = *h.first()?;
    let (basic, csid) = match first & 0x3f {
        0 => (2, u32::from(*h.get(1)?) + 64),
        1 => (3, u32::from(*h.get(1)?) + u32::from(*h.get(2)?) * 256 + 64),
        n => (1, u32::from(n)),
    };
    let fmt = first >> 6;
    let message = [11, 7, 3, 0][fmt as usize];
    // The timestamp field says whether 4 bytes of extended timestamp follow; a type-3 header
    // has one when its chunk stream's last header had one.
    let extended = if fmt <= 2 {
        let ts = h.get(basic..basic + 3)?;
        ts == [0xff, 0xff, 0xff]
    } else {
        streams.get(&csid).is_some_and(|c| c.extended)
    };
    Some(basic + message + if extended { 4 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A type-0 chunk header for chunk stream `csid` (< 64).
    fn fmt0(csid: u8, ts: u32, len: u32, type_id: u8, stream: u32) -> Vec<u8> {
        let mut h = vec![csid];
        h.extend_from_slice(&ts.min(0xff_ffff).to_be_bytes()[1..]);
        h.extend_from_slice(&len.to_be_bytes()[1..]);
        h.push(type_id);
        h.extend_from_slice(&stream.to_le_bytes());
        if ts >= 0xff_ffff {
            h.extend_from_slice(&ts.to_be_bytes());
        }
        h
    }

    fn read_all(r: &mut ChunkReader, bytes: &[u8], step: usize) -> Vec<Message> {
        let mut v = Vec::new();
        for c in bytes.chunks(step) {
            r.push(c, &mut |m| v.push(m)).unwrap();
        }
        v
    }

    #[test]
    fn messages_split_into_chunks_and_interleaved_come_back_whole_in_any_slicing() {
        // A 300-byte video message on csid 6 split at 128 bytes, with an audio message on csid 4
        // between its chunks, a type-1 header with a delta, and a type-3 new message.
        let video: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut s = fmt0(6, 1000, 300, 9, 1);
        s.extend_from_slice(&video[..128]);
        s.extend(fmt0(4, 1010, 3, 8, 1));
        s.extend_from_slice(b"aud");
        s.push(0xc6); // type 3, csid 6: continues the video message
        s.extend_from_slice(&video[128..256]);
        s.push(0xc6);
        s.extend_from_slice(&video[256..]);
        s.extend([0x44, 0, 0, 23, 0, 0, 2, 8]); // type 1, csid 4: +23 ms, 2 bytes, audio
        s.extend_from_slice(b"xy");
        s.push(0xc4); // type 3 new message on csid 4: the same delta again
        s.extend_from_slice(b"zw");
        for step in [1, 7, s.len()] {
            let mut r = ChunkReader::new(Limits::default());
            let m = read_all(&mut r, &s, step);
            let got: Vec<(u32, u32, u8, &[u8])> =
                m.iter().map(|m| (m.chunk_stream, m.timestamp, m.type_id, &m.payload[..])).collect();
            assert_eq!(
                got,
                vec![(4, 1010, 8, &b"aud"[..]), (6, 1000, 9, &video[..]), (4, 1033, 8, b"xy"), (4, 1056, 8, b"zw")],
                "step {step}"
            );
        }
    }

    #[test]
    fn set_chunk_size_and_extended_timestamps_and_long_chunk_stream_ids() {
        let mut s = fmt0(2, 0, 4, 1, 0);
        s.extend_from_slice(&4096u32.to_be_bytes());
        let body = vec![7u8; 5000];
        // csid 300: two-byte form (1, 300-64 = 236 -> [236, 0]); timestamp past 24 bits.
        let mut h = fmt0(1, 0x0100_0000, 5000, 9, 1);
        h.splice(1..1, [236, 0]);
        s.extend(h);
        s.extend_from_slice(&body[..4096]);
        s.extend([0xc1, 236, 0]);
        s.extend_from_slice(&0x0100_0000u32.to_be_bytes()); // a type-3 chunk repeats the extended field
        s.extend_from_slice(&body[4096..]);
        let mut r = ChunkReader::new(Limits::default());
        let m = read_all(&mut r, &s, 3);
        assert_eq!(r.chunk_size(), 4096);
        assert_eq!(m.len(), 2);
        assert_eq!((m[1].chunk_stream, m[1].timestamp, m[1].payload.len()), (300, 0x0100_0000, 5000));
    }

    #[test]
    fn hostile_headers_stop_the_reader_with_a_reason() {
        let mut r = ChunkReader::new(Limits::default());
        assert_eq!(r.push(&[0x43, 0, 0, 0, 0, 0, 1, 9], &mut |_| {}), Err(ChunkError::NoPreviousHeader(3)));
        assert!(r.push(b"more", &mut |_| {}).is_err(), "nothing is read after the error");

        let mut r = ChunkReader::new(Limits::default());
        assert_eq!(r.push(&fmt0(3, 0, 0xff_ffff, 9, 1), &mut |_| {}), Err(ChunkError::MessageTooLong(0xff_ffff)));

        let mut r = ChunkReader::new(Limits { max_chunk_streams: 4, ..Limits::default() });
        let mut s = Vec::new();
        for csid in 3..10 {
            s.extend(fmt0(csid, 0, 100, 9, 1));
            s.extend_from_slice(&[0; 100]);
        }
        assert_eq!(r.push(&s, &mut |_| {}), Err(ChunkError::TooManyChunkStreams(4)));

        // Endless unfinished messages: bounded by what is buffered.
        let mut r = ChunkReader::new(Limits { max_buffered: 1000, ..Limits::default() });
        let mut s = Vec::new();
        for csid in 3..20 {
            s.extend(fmt0(csid, 0, 1_000_000, 9, 1));
            s.extend_from_slice(&[0; 128]);
        }
        assert_eq!(r.push(&s, &mut |_| {}), Err(ChunkError::Buffered(1000)));

        let mut r = ChunkReader::new(Limits::default());
        let mut s = fmt0(2, 0, 4, 1, 0);
        s.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(r.push(&s, &mut |_| {}), Err(ChunkError::ChunkSize(0)));
    }

    #[test]
    fn abort_drops_the_unfinished_message() {
        let mut s = fmt0(6, 0, 300, 9, 1);
        s.extend_from_slice(&[1; 128]);
        s.extend(fmt0(2, 0, 4, 2, 0));
        s.extend_from_slice(&6u32.to_be_bytes());
        s.extend(fmt0(6, 40, 2, 9, 1));
        s.extend_from_slice(b"ok");
        let mut r = ChunkReader::new(Limits::default());
        let m = read_all(&mut r, &s, 5);
        assert_eq!(m.len(), 2);
        assert_eq!((m[1].timestamp, &m[1].payload[..]), (40, &b"ok"[..]));
        assert_eq!(r.buffered, 0);
    }
}
