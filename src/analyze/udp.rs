//! UDP flows: which datagram protocol a flow carries, decided from its first datagrams, never
//! from its port (media ports are negotiated or chosen at will).
//!
//! The flow layer hands a UDP flow's analyzer one datagram per `data` call. Until a protocol is
//! recognised the datagrams are held (a few, bounded), then handed over in order; a flow that
//! nothing recognises keeps only its CC and session IRI, as before. Recognised: MPEG-TS, SIP
//! (whose SDP announces the RTP flows, claimed before detection), RTP.

use super::mpegts::{self, MpegTsUdp};
use super::rtp::Rtp;
use super::sip::{self, Sip};
use super::{Cx, StreamAnalyzer};
use crate::media::rtp::SsrcTracker;
use crate::record::{Close, Dir};

/// Datagrams looked at before giving up on a flow.
const LOOK: usize = 8;

/// Picks the analyzer of a UDP flow.
pub fn analyzer() -> Box<dyn StreamAnalyzer> {
    Box::new(UdpDetect::default())
}

pub struct UdpDetect {
    held: Vec<(Dir, u64, Vec<u8>)>,
    /// RTP is confirmed by a run of packets of one SSRC with advancing sequence numbers.
    rtp: SsrcTracker,
    chosen: Option<Box<dyn StreamAnalyzer>>,
    given_up: bool,
}

impl Default for UdpDetect {
    fn default() -> Self {
        UdpDetect { held: Vec::new(), rtp: SsrcTracker::new(3), chosen: None, given_up: false }
    }
}

impl UdpDetect {
    fn decide(&self) -> Option<Box<dyn StreamAnalyzer>> {
        let (_, _, first) = self.held.first()?;
        // Two TS packets in one datagram, or TS in two datagrams: 0x47 at every 188th byte.
        let ts = self.held.iter().filter(|(_, _, d)| mpegts::is_ts(d)).count();
        if mpegts::is_ts(first) && (first.len() >= 2 * mpegts::PACKET || ts >= 2) {
            return Some(Box::<MpegTsUdp>::default());
        }
        if sip::looks_sip(first) {
            return Some(Box::<Sip>::default());
        }
        if self.rtp.confirmed_ssrc().is_some() {
            return Some(Box::<Rtp>::default());
        }
        None
    }
}

impl StreamAnalyzer for UdpDetect {
    fn data(&mut self, dir: Dir, offset: u64, bytes: &[u8], cx: &mut Cx) {
        if let Some(a) = self.chosen.as_mut() {
            return a.data(dir, offset, bytes, cx);
        }
        if self.given_up {
            return;
        }
        self.rtp.observe(bytes);
        self.held.push((dir, offset, bytes.to_vec()));
        if let Some(mut a) = self.decide() {
            for (d, o, b) in self.held.drain(..) {
                a.data(d, o, &b, cx);
            }
            self.chosen = Some(a);
        } else if self.held.len() >= LOOK {
            self.held = Vec::new();
            self.given_up = true;
        }
    }

    fn gap(&mut self, dir: Dir, offset: u64, len: u64, cx: &mut Cx) {
        if let Some(a) = self.chosen.as_mut() {
            a.gap(dir, offset, len, cx);
        }
    }

    fn close(&mut self, how: Close, cx: &mut Cx) {
        if let Some(a) = self.chosen.as_mut() {
            a.close(how, cx);
        }
    }
}
