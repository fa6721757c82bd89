//! Drives one analyzer by hand, for tests and fuzz targets: no packets, no flow table.
//!
//! Transcripts in Suricata's style make protocol tests short: a line `>>>` starts client bytes,
//! `<<<` server bytes, `--- gap N` a hole of N bytes in the direction last written; everything
//! else is sent as is, each line ending in CRLF.
//!
//! ```text
//! >>>
//! USER joe
//! <<<
//! 331 Password required
//! ```

use std::sync::Arc;

use super::{Cx, Expectations, StreamAnalyzer};
use crate::content::FileLayer;
use crate::record::{Cin, Close, Dir, FlowDescr, Liid, Provenance, Scope, VecSink};
use crate::timestamp::Timestamp;

pub struct Harness {
    pub files: FileLayer,
    pub expect: Expectations,
    pub sink: VecSink,
    pub flow: FlowDescr,
    pub liid: Liid,
    pub provenance: Arc<Provenance>,
    pub cin: Cin,
    /// The scope analyzers are told (IRI+CC unless a test sets it). The harness has no gate:
    /// its sink sees everything the analyzer emits.
    pub scope: Scope,
    pub now: Timestamp,
    offsets: [u64; 2],
}

impl Harness {
    /// A connection from `orig` to `resp` (`"ip:port"`), LIID `TEST`.
    pub fn new(orig: &str, resp: &str) -> Harness {
        Harness {
            files: FileLayer::new(),
            expect: Expectations::default(),
            sink: VecSink::default(),
            flow: FlowDescr {
                proto: "tcp".into(),
                orig: orig.parse().expect("orig ip:port"),
                resp: resp.parse().expect("resp ip:port"),
                vlans: Vec::new(),
                tunnels: Vec::new(),
            },
            liid: Liid::new("TEST").expect("a valid LIID"),
            provenance: Arc::new(Provenance { selector: "test".into(), target: "test".into(), chain: Vec::new() }),
            cin: Cin::FIRST,
            scope: Scope::IriAndCc,
            now: Timestamp::from_secs(1_767_225_600),
            offsets: [0, 0],
        }
    }

    fn with_cx<R>(&mut self, f: impl FnOnce(&mut Cx) -> R) -> R {
        let mut cx = Cx {
            now: self.now,
            liid: &self.liid,
            cin: self.cin,
            flow: &self.flow,
            provenance: &self.provenance,
            scope: self.scope,
            files: &mut self.files,
            expect: &mut self.expect,
            sink: &mut self.sink,
        };
        f(&mut cx)
    }

    /// Bytes in direction `dir`, at the next offset.
    pub fn send(&mut self, a: &mut dyn StreamAnalyzer, dir: Dir, bytes: &[u8]) {
        let off = self.offsets[dir.index()];
        self.offsets[dir.index()] += bytes.len() as u64;
        self.now = self.now.add_nanos(1_000);
        self.with_cx(|cx| a.data(dir, off, bytes, cx));
    }

    pub fn client(&mut self, a: &mut dyn StreamAnalyzer, bytes: &[u8]) {
        self.send(a, Dir::Orig, bytes)
    }

    pub fn server(&mut self, a: &mut dyn StreamAnalyzer, bytes: &[u8]) {
        self.send(a, Dir::Resp, bytes)
    }

    /// A hole of `len` bytes in direction `dir`.
    pub fn gap(&mut self, a: &mut dyn StreamAnalyzer, dir: Dir, len: u64) {
        let off = self.offsets[dir.index()];
        self.offsets[dir.index()] += len;
        self.with_cx(|cx| a.gap(dir, off, len, cx));
    }

    pub fn close(&mut self, a: &mut dyn StreamAnalyzer, how: Close) {
        self.with_cx(|cx| a.close(how, cx));
    }

    /// Plays a transcript (see the module doc), then closes with `Close::Fin`.
    pub fn transcript(&mut self, a: &mut dyn StreamAnalyzer, text: &str) {
        let mut dir = Dir::Orig;
        let mut pending: Vec<u8> = Vec::new();
        let mut started = false;
        for line in text.lines() {
            let marker = match line.trim_end() {
                ">>>" => Some(Dir::Orig),
                "<<<" => Some(Dir::Resp),
                _ => None,
            };
            if let Some(d) = marker {
                if started && !pending.is_empty() {
                    self.send(a, dir, &std::mem::take(&mut pending));
                }
                dir = d;
                started = true;
                continue;
            }
            if let Some(n) = line.trim_end().strip_prefix("--- gap ") {
                if !pending.is_empty() {
                    self.send(a, dir, &std::mem::take(&mut pending));
                }
                self.gap(a, dir, n.trim().parse().expect("gap length"));
                continue;
            }
            if started {
                pending.extend_from_slice(line.as_bytes());
                pending.extend_from_slice(b"\r\n");
            }
        }
        if !pending.is_empty() {
            self.send(a, dir, &pending);
        }
        self.close(a, Close::Fin);
    }

    /// The stored bytes of the finished object with this SHA-256.
    pub fn object_bytes(&self, sha256: &str) -> Option<&[u8]> {
        let rec = self.sink.objects.iter().find(|o| o.sha256 == sha256)?;
        self.sink.object_bytes.get(&(rec.liid.clone(), rec.id)).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::stream::RawStream;

    #[test]
    fn transcript_feeds_both_directions_with_crlf_and_gaps() {
        let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:21");
        let mut a = RawStream::new();
        h.transcript(&mut a, ">>>\nUSER joe\n<<<\n331 ok\n>>>\nPASS x\n--- gap 5\nQUIT\n");
        let client = h.sink.objects.iter().find(|o| o.meta.direction == Dir::Orig).unwrap();
        assert_eq!(client.size, 10 + 8 + 5 + 6);
        assert_eq!(client.gaps, vec![(18, 5)]);
        let bytes = h.sink.bytes("TEST", client.id).unwrap();
        assert_eq!(&bytes[..18], b"USER joe\r\nPASS x\r\n");
        assert_eq!(&bytes[23..], b"QUIT\r\n");
    }
}
