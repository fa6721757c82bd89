//! The fuzz entry point for the media modules (`fuzz/fuzz_targets/media_rtp.rs`), kept in the
//! library so that it builds, and is run by the tests, with it.

use super::h264::{self, Depacketizer, Event};
use super::rtp::{self, Packet, SsrcTable, SsrcTracker};
use super::sdp;
use crate::timestamp::Timestamp;

/// Plays `data` through every media parser; must never panic.
///
/// `data` is a series of records `[len, ...len bytes]`. Each record is: an RTP packet for the
/// header view, the tracker, a small SSRC table and the depacketiser it feeds; and, read as
/// `[seq_hi, seq_lo, flags, payload...]`, a payload pushed straight into a second depacketiser
/// (so that payload bugs are reached without valid RTP headers), and into an H.265 one; and an
/// SPS of either codec. The whole input is also an SDP, a `sprop-parameter-sets` value, and an
/// MP4, FLV and Matroska file to fingerprint.
pub fn media_rtp(data: &[u8]) {
    if let Some(f) = super::fingerprint::of_mp4(&mut std::io::Cursor::new(data), data.len() as u64) {
        assert!(f.frames as usize <= data.len());
    }
    if let Some(f) = super::fingerprint::of_flv(&mut std::io::Cursor::new(data)) {
        assert!(f.frames as usize <= data.len());
    }
    if let Some(f) = super::fingerprint::of_matroska(&mut std::io::Cursor::new(data), data.len() as u64) {
        assert!(f.frames as usize <= data.len());
    }
    let _ = sdp::parse_bytes(data);
    let text = String::from_utf8_lossy(data);
    let _ = sdp::parse(&text);
    let _ = h264::sprop_parameter_sets(&text);

    let mut table = SsrcTable::new(4);
    let mut tracker = SsrcTracker::new(3);
    let mut from_rtp = Depacketizer::new();
    let mut direct = Depacketizer::new();
    let _ = direct.seed_sprop_parameter_sets(&text);
    // The same payloads as H.265 (RFC 7798: other NAL header, AP and FU).
    let mut hevc = Depacketizer::hevc();
    let _ = hevc.seed_parameter_sets(&text);
    let mut seq = 0u64;
    let mut rest = data;
    let mut i = 0i64;
    while let [len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let record = &tail[..n];
        rest = &tail[n..];
        i += 1;
        let _ = (rtp::probe(record), rtp::is_rtcp(record), tracker.observe(record));
        if let Ok(p) = Packet::new_checked(record) {
            let _ = (p.csrcs().count(), p.extension_header(), p.padding_len(), p.version(), p.padding());
            // Arrival times that wander with the bytes, so the jitter sees large and negative
            // differences too.
            let arrival = Timestamp(i * 20_000_000 + (p.sequence_number() as i64 % 97) * 1_000_000);
            if let Some(r) = table.receive(&p, arrival, 90_000) {
                if let Some(ext) = r.extended_seq() {
                    from_rtp.push(ext, p.timestamp(), p.marker(), p.payload());
                }
            }
        }
        if let [hi, lo, flags, payload @ ..] = record {
            // Sequence numbers mostly advance, sometimes jump or go back, as the flags say.
            seq = match flags & 3 {
                0 => seq + 1,
                1 => seq + u16::from_be_bytes([*hi, *lo]) as u64,
                2 => seq.saturating_sub(*lo as u64),
                _ => seq,
            };
            direct.push(seq, u32::from(*hi) << 8 | u32::from(flags >> 4), flags & 4 != 0, payload);
            hevc.push(seq, u32::from(*hi) << 8 | u32::from(flags >> 4), flags & 4 != 0, payload);
        }
        if let Ok(sps) = h264::parse_sps(record) {
            assert!(sps.width > 0 && sps.height > 0);
        }
        let _ = h264::avc_decoder_configuration_record(record, record);
        if let Ok(sps) = h264::parse_hevc_sps(record) {
            assert!(sps.bit_depth_luma >= 8 && sps.bit_depth_chroma >= 8);
        }
        let _ = h264::hevc_decoder_configuration_record(record, record, record);
    }
    for d in [&mut from_rtp, &mut direct, &mut hevc] {
        d.finish();
        while let Some(e) = d.pop() {
            if let Event::AccessUnit(a) = e {
                assert!(!a.nals.is_empty() && a.nals.iter().all(|n| !n.is_empty()));
                let _ = (a.annex_b(d.sps(), d.pps()), a.avcc_sample());
            }
        }
    }
    for s in table.sources() {
        let st = s.stats();
        assert!(st.jitter_ms.is_finite() && st.jitter_ms >= 0.0);
    }
    assert!(table.len() <= 4);
}
