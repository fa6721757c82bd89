//! Which analyzer a connection gets: decided from its first bytes, never from its port.
//!
//! [`Detect`] holds the first bytes of both directions (bounded) and asks every protocol's probe
//! until one claims the connection; then it hands the held bytes, in the order they came, to that
//! protocol's analyzer and steps aside. When no probe can claim it (every probe said no, the
//! bound was reached, or a gap came first) the connection gets the raw-stream analyzer, so its
//! bytes are never lost.

use super::stream::RawStream;
use super::{ftp, http, rtmp, rtsp, sip, smtp, tls, Cx, StreamAnalyzer};
use crate::record::{Close, Dir};

/// A probe's answer about the bytes seen so far in one direction.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// This is my protocol.
    Match,
    /// It is not.
    NoMatch,
    /// Cannot tell yet.
    NeedMore,
}

/// A protocol's entry in the detection table: `probe(dir, first_bytes_of_dir)`, and how to make
/// its analyzer.
pub struct Protocol {
    pub name: &'static str,
    pub probe: fn(Dir, &[u8]) -> Verdict,
    pub make: fn() -> Box<dyn StreamAnalyzer>,
}

/// Every protocol tapir understands, most specific probe first.
pub fn protocols() -> &'static [Protocol] {
    static P: [Protocol; 7] = [
        Protocol { name: "tls", probe: tls::probe, make: tls::analyzer },
        // Before HTTP: an RTSP request line has HTTP's shape with another version.
        Protocol { name: "rtsp", probe: rtsp::probe, make: rtsp::analyzer },
        // Before HTTP too: a SIP request line ends in `SIP/2.0`.
        Protocol { name: "sip", probe: sip::probe, make: sip::analyzer },
        Protocol { name: "http", probe: http::probe, make: http::analyzer },
        Protocol { name: "smtp", probe: smtp::probe, make: smtp::analyzer },
        Protocol { name: "ftp", probe: ftp::probe, make: ftp::analyzer },
        Protocol { name: "rtmp", probe: rtmp::probe, make: rtmp::analyzer },
    ];
    &P
}

/// Bytes held per direction while undecided.
const HOLD: usize = 4096;

enum Held {
    Data(Dir, u64, Vec<u8>),
    Gap(Dir, u64, u64),
}

pub struct Detect {
    held: Vec<Held>,
    /// The first bytes of each direction, contiguous from offset 0 (what probes see).
    first: [Vec<u8>; 2],
    chosen: Option<Box<dyn StreamAnalyzer>>,
}

impl Default for Detect {
    fn default() -> Self {
        Detect::new()
    }
}

impl Detect {
    pub fn new() -> Detect {
        Detect { held: Vec::new(), first: [Vec::new(), Vec::new()], chosen: None }
    }

    /// Decides if possible: a probe matched, or nothing can match any more.
    fn decide(&mut self, force: bool) -> Option<Box<dyn StreamAnalyzer>> {
        let mut undecided = false;
        for p in protocols() {
            let mut all_no = true;
            for dir in [Dir::Orig, Dir::Resp] {
                let bytes = &self.first[dir.index()];
                if bytes.is_empty() {
                    all_no = false;
                    continue;
                }
                match (p.probe)(dir, bytes) {
                    Verdict::Match => return Some((p.make)()),
                    Verdict::NeedMore => all_no = false,
                    Verdict::NoMatch => {}
                }
            }
            if !all_no {
                undecided = true;
            }
        }
        let full = self.first.iter().any(|b| b.len() >= HOLD);
        if force || !undecided || full {
            return Some(Box::new(RawStream::new()));
        }
        None
    }

    fn replay(&mut self, mut a: Box<dyn StreamAnalyzer>, cx: &mut Cx) {
        // Each held event is where its object bytes come from (see `FileLayer::stream_position`).
        for h in self.held.drain(..) {
            match h {
                Held::Data(dir, off, bytes) => {
                    cx.files.stream_position(cx.cin, dir, off, off + bytes.len() as u64);
                    a.data(dir, off, &bytes, cx);
                }
                Held::Gap(dir, off, len) => {
                    cx.files.stream_position(cx.cin, dir, off, off.saturating_add(len));
                    a.gap(dir, off, len, cx);
                }
            }
        }
        self.first = [Vec::new(), Vec::new()];
        self.chosen = Some(a);
    }
}

impl StreamAnalyzer for Detect {
    fn data(&mut self, dir: Dir, offset: u64, bytes: &[u8], cx: &mut Cx) {
        if let Some(a) = self.chosen.as_mut() {
            return a.data(dir, offset, bytes, cx);
        }
        let first = &mut self.first[dir.index()];
        if offset == first.len() as u64 && first.len() < HOLD {
            let n = bytes.len().min(HOLD - first.len());
            first.extend_from_slice(&bytes[..n]);
        }
        self.held.push(Held::Data(dir, offset, bytes.to_vec()));
        if let Some(a) = self.decide(false) {
            self.replay(a, cx);
        }
    }

    fn gap(&mut self, dir: Dir, offset: u64, len: u64, cx: &mut Cx) {
        if let Some(a) = self.chosen.as_mut() {
            return a.gap(dir, offset, len, cx);
        }
        // A hole before anything was recognised: what follows cannot be parsed from its start.
        self.held.push(Held::Gap(dir, offset, len));
        let a = self.decide(true).unwrap_or_else(|| Box::new(RawStream::new()));
        self.replay(a, cx);
    }

    fn close(&mut self, how: Close, cx: &mut Cx) {
        if self.chosen.is_none() {
            let a = self.decide(true).unwrap_or_else(|| Box::new(RawStream::new()));
            self.replay(a, cx);
        }
        if let Some(a) = self.chosen.as_mut() {
            a.close(how, cx);
        }
    }
}
