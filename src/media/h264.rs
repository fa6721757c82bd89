//! H.264 over RTP (RFC 6184, packetization-mode 0 and 1) and H.265 over RTP (RFC 7798,
//! [`Depacketizer::hevc`]): access units out of RTP payloads, and what a container needs from
//! the parameter sets.
//!
//! [`Depacketizer`] takes packets in arrival order as (extended sequence number, RTP timestamp,
//! marker, payload) and reassembles single NAL unit packets, STAP-A and FU-A into
//! [`AccessUnit`]s. An access unit ends with the marker bit or when the RTP timestamp changes.
//! A missing sequence number inside an access unit damages it: it is dropped whole and reported
//! as [`Event::Lost`] with its RTP timestamp, because a decoder given a spliced access unit shows
//! garbage where it should show nothing.
//!
//! The SPS and PPS last seen in band are kept, seeded from SDP's `sprop-parameter-sets` when the
//! sender only signals them out of band (ffmpeg's default). [`parse_sps`] reads the picture size
//! from an SPS (a small exp-Golomb reader written here: `h264-reader` is not among the crate's
//! dependencies and only the size fields are needed), [`avc_decoder_configuration_record`] builds
//! the ISO 14496-15 `avcC`, and [`AccessUnit::avcc_sample`] / [`AccessUnit::annex_b`] write the
//! bytes of an MP4 sample or of a raw `.h264` stream.

use std::collections::VecDeque;

use base64::Engine;
use thiserror::Error;

/// Largest access unit reassembled; a bigger one is dropped as damaged (a 4K intra frame is
/// well under this; an endless FU-A is an attack).
pub const MAX_ACCESS_UNIT_BYTES: usize = 4 << 20;
/// NAL units kept per access unit; more is a flood of tiny STAP-A entries, not video.
pub const MAX_NALS_PER_ACCESS_UNIT: usize = 4096;

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// Why H.264 parameter data could not be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A `sprop-parameter-sets` entry is not valid base64.
    #[error("sprop-parameter-sets entry {0} is not base64")]
    Base64(usize),
    /// The SPS ends before the fields being read.
    #[error("SPS truncated")]
    SpsTruncated,
    /// A NAL unit given as an SPS or PPS has another type.
    #[error("NAL unit type {0} where a {1} was expected")]
    NotParameterSet(u8, &'static str),
    /// An SPS field is out of the range the standard allows (an exp-Golomb code over 32 bits,
    /// a size that overflows, cropping larger than the picture).
    #[error("SPS field {0} out of range")]
    SpsRange(&'static str),
    /// A parameter set longer than the 16-bit lengths of `avcC` can carry.
    #[error("parameter set of {0} bytes does not fit avcC")]
    TooLong(usize),
}

/// One decoded picture's NAL units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub rtp_ts: u32,
    /// Extended sequence number of the access unit's first packet.
    pub first_seq: u64,
    /// NAL units without start codes or length prefixes, in decoding order.
    pub nals: Vec<Vec<u8>>,
    /// An IDR slice is present: a decoder can start here.
    pub keyframe: bool,
}

impl AccessUnit {
    /// The MP4 sample: each NAL unit prefixed by its 4-byte big-endian length (AVCC, matching
    /// `lengthSizeMinusOne = 3` in [`avc_decoder_configuration_record`]).
    pub fn avcc_sample(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.nals.iter().map(|n| n.len() + 4).sum());
        for nal in &self.nals {
            out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            out.extend_from_slice(nal);
        }
        out
    }

    /// The Annex B bytes of this access unit, written the way ffmpeg's `h264_mp4toannexb` does so
    /// that a raw `.h264` file is byte-identical to ffmpeg's: a keyframe without in-band SPS or PPS
    /// gets the given ones (from [`Depacketizer::sps`] / [`Depacketizer::pps`]) before its first IDR
    /// slice; the first NAL unit and every SPS/PPS get a 4-byte start code, the others 3 bytes.
    pub fn annex_b(&self, sps: Option<&[u8]>, pps: Option<&[u8]>) -> Vec<u8> {
        let has = |t: u8| self.nals.iter().any(|n| nal_type(n) == Some(t));
        let mut inject: Vec<&[u8]> = Vec::new();
        if self.keyframe {
            if !has(NAL_SPS) {
                inject.extend(sps);
            }
            if !has(NAL_PPS) {
                inject.extend(pps);
            }
        }
        let mut out = Vec::new();
        let put = |nal: &[u8], out: &mut Vec<u8>| {
            if out.is_empty() || matches!(nal_type(nal), Some(NAL_SPS | NAL_PPS)) {
                out.push(0);
            }
            out.extend_from_slice(&[0, 0, 1]);
            out.extend_from_slice(nal);
        };
        for nal in &self.nals {
            if nal_type(nal) == Some(NAL_IDR) {
                for p in inject.drain(..) {
                    put(p, &mut out);
                }
            }
            put(nal, &mut out);
        }
        out
    }
}

fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// What the depacketiser hands back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    AccessUnit(AccessUnit),
    /// An access unit that was dropped because packets of it are missing or malformed.
    Lost {
        rtp_ts: u32,
        reason: LossReason,
    },
    /// Packets missing between access units that are themselves complete: whole access units
    /// were lost, whose RTP timestamps no received packet tells.
    Gap {
        packets: u64,
    },
}

/// Why an access unit was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// A sequence number inside it (or right before it, where its start should be) is missing.
    MissingPackets,
    /// A FU-A fragment out of order (continuation without a start, start during another).
    BrokenFragment,
    /// A STAP-A whose sizes run past the packet, or an empty NAL unit.
    Malformed,
    /// A packet type packetization-mode 0/1 does not use (STAP-B, MTAP, FU-B).
    Unsupported,
    /// Larger than [`MAX_ACCESS_UNIT_BYTES`] or [`MAX_NALS_PER_ACCESS_UNIT`].
    TooLarge,
}

/// Counters of what the depacketiser did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub access_units: u64,
    pub lost_access_units: u64,
    /// Packets that arrived with a sequence number at or below one already handled: the
    /// depacketiser has no reorder buffer, so they come too late.
    pub late_packets: u64,
    /// Packets missing between complete access units.
    pub gap_packets: u64,
    /// Packets of the reserved NAL types 0, 30, 31, which RFC 6184 says to ignore.
    pub ignored_packets: u64,
}

#[derive(Debug)]
struct Pending {
    rtp_ts: u32,
    first_seq: u64,
    nals: Vec<Vec<u8>>,
    bytes: usize,
    /// A FU-A NAL unit being reassembled.
    fragment: Option<Vec<u8>>,
    damage: Option<LossReason>,
}

/// RFC 6184 depacketiser (non-interleaved: packetization-mode 0 and 1).
#[derive(Debug, Default)]
pub struct Depacketizer {
    /// H.265 (RFC 7798) instead of H.264: two-byte NAL headers, AP and FU packets, VPS.
    hevc: bool,
    vps: Option<Vec<u8>>,
    pending: Option<Pending>,
    /// Extended sequence number of the last packet handled.
    last_seq: Option<u64>,
    /// The last packet handled carried the marker bit (its access unit is complete).
    last_marker: bool,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    events: VecDeque<Event>,
    counters: Counters,
}

impl Depacketizer {
    pub fn new() -> Depacketizer {
        Depacketizer::default()
    }

    /// An RFC 7798 (H.265) depacketiser: the same access-unit and loss rules, H.265's packets.
    pub fn hevc() -> Depacketizer {
        Depacketizer { hevc: true, ..Depacketizer::default() }
    }

    /// Seeds parameter sets given as base64 NAL units (H.265's `sprop-vps`, `sprop-sps`,
    /// `sprop-pps`: each a comma-separated list).
    pub fn seed_parameter_sets(&mut self, value: &str) -> Result<(), Error> {
        self.seed_sprop_parameter_sets(value)
    }

    /// The last VPS seen (H.265).
    pub fn vps(&self) -> Option<&[u8]> {
        self.vps.as_deref()
    }

    /// The NAL unit type, by the codec's header layout.
    fn kind(&self, nal: &[u8]) -> Option<u8> {
        if self.hevc {
            nal.first().map(|b| (b >> 1) & 0x3f)
        } else {
            nal_type(nal)
        }
    }

    fn is_parameter_set(&self, nal: &[u8]) -> bool {
        match self.kind(nal) {
            Some(t) if self.hevc => (32..=34).contains(&t),
            Some(t) => t == NAL_SPS || t == NAL_PPS,
            None => false,
        }
    }

    /// H.264 IDR, H.265 IRAP (BLA, IDR, CRA: types 16 to 21).
    fn is_key(&self, nal: &[u8]) -> bool {
        match self.kind(nal) {
            Some(t) if self.hevc => (16..=21).contains(&t),
            Some(t) => t == NAL_IDR,
            None => false,
        }
    }

    /// Seeds SPS and PPS from an SDP `sprop-parameter-sets` value; parameter sets seen in band
    /// later replace them.
    pub fn seed_sprop_parameter_sets(&mut self, value: &str) -> Result<(), Error> {
        for nal in sprop_parameter_sets(value)? {
            self.note_parameter_set(&nal);
        }
        Ok(())
    }

    fn note_parameter_set(&mut self, nal: &[u8]) {
        match (self.hevc, self.kind(nal)) {
            (false, Some(NAL_SPS)) | (true, Some(33)) => self.sps = Some(nal.to_vec()),
            (false, Some(NAL_PPS)) | (true, Some(34)) => self.pps = Some(nal.to_vec()),
            (true, Some(32)) => self.vps = Some(nal.to_vec()),
            _ => {}
        }
    }

    /// The last SPS seen (in band or seeded).
    pub fn sps(&self) -> Option<&[u8]> {
        self.sps.as_deref()
    }

    /// The last PPS seen (in band or seeded).
    pub fn pps(&self) -> Option<&[u8]> {
        self.pps.as_deref()
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The next access unit or loss report, in stream order.
    pub fn pop(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Handles one RTP packet's payload. `seq` is the extended sequence number (see
    /// [`super::rtp::Received::extended_seq`]).
    pub fn push(&mut self, seq: u64, rtp_ts: u32, marker: bool, payload: &[u8]) {
        let missing = match self.last_seq {
            Some(last) if seq <= last => {
                self.counters.late_packets += 1;
                return;
            }
            Some(last) => seq - last - 1,
            None => 0,
        };
        if self.pending.as_ref().is_some_and(|p| p.rtp_ts != rtp_ts) {
            // The timestamp changed without a marker: the access unit ended (its marker packet
            // may be among the missing ones, so it is damaged if anything is missing).
            if missing > 0 {
                self.damage(LossReason::MissingPackets);
            }
            self.close();
        } else if missing > 0 && self.pending.is_some() {
            self.damage(LossReason::MissingPackets);
        }
        let new_unit = self.pending.is_none();
        if new_unit {
            self.pending =
                Some(Pending { rtp_ts, first_seq: seq, nals: Vec::new(), bytes: 0, fragment: None, damage: None });
        }
        self.last_seq = Some(seq);
        self.handle_payload(payload);
        if new_unit && missing > 0 {
            // Packets are missing before the first packet of this access unit. The fewest
            // damaged access units that explain them are assumed: a FU-A continuation means this
            // unit's head was among them; otherwise this unit is taken as whole, and the missing
            // packets were the tail of the unit before (already dropped when it had no marker)
            // or, after a marker, whole access units (the RTP header cannot tell which: a lost
            // leading single-NAL packet of this unit looks the same).
            let head_lost = self.pending.as_ref().is_some_and(|p| p.damage == Some(LossReason::BrokenFragment));
            if head_lost {
                if let Some(p) = self.pending.as_mut() {
                    p.damage = Some(LossReason::MissingPackets);
                }
            } else if self.last_marker {
                self.counters.gap_packets += missing;
                self.events.push_back(Event::Gap { packets: missing });
            }
        }
        self.last_marker = marker;
        if marker {
            self.close();
        }
    }

    /// Ends the stream: an access unit still open (no marker seen) is emitted if it is whole.
    pub fn finish(&mut self) {
        self.close();
    }

    fn damage(&mut self, reason: LossReason) {
        if let Some(p) = self.pending.as_mut() {
            p.damage.get_or_insert(reason);
        }
    }

    fn close(&mut self) {
        let Some(p) = self.pending.take() else { return };
        let damage = match p.damage {
            Some(d) => Some(d),
            None if p.fragment.is_some() => Some(LossReason::BrokenFragment),
            None if p.nals.is_empty() => return,
            None => None,
        };
        if let Some(reason) = damage {
            self.counters.lost_access_units += 1;
            self.events.push_back(Event::Lost { rtp_ts: p.rtp_ts, reason });
            return;
        }
        for nal in &p.nals {
            if self.is_parameter_set(nal) {
                self.note_parameter_set(nal);
            }
        }
        let keyframe = p.nals.iter().any(|n| self.is_key(n));
        self.counters.access_units += 1;
        self.events.push_back(Event::AccessUnit(AccessUnit {
            rtp_ts: p.rtp_ts,
            first_seq: p.first_seq,
            nals: p.nals,
            keyframe,
        }));
    }

    fn handle_payload(&mut self, payload: &[u8]) {
        if self.hevc {
            return self.handle_hevc_payload(payload);
        }
        let Some(&indicator) = payload.first() else {
            self.counters.ignored_packets += 1;
            return;
        };
        let result = match indicator & 0x1f {
            0 | 30 | 31 => {
                self.counters.ignored_packets += 1;
                Ok(())
            }
            1..=23 => self.add_nal(payload),
            STAP_A => self.stap_a(&payload[1..]),
            FU_A => self.fu_a(indicator, &payload[1..]),
            _ => Err(LossReason::Unsupported),
        };
        if let Err(reason) = result {
            self.damage(reason);
        }
    }

    /// RFC 7798 4.4: single NAL unit packets (types 0-47), aggregation packets (48: a 2-byte
    /// header, then 16-bit sizes and NAL units, as STAP-A) and fragmentation units (49).
    fn handle_hevc_payload(&mut self, payload: &[u8]) {
        let [b0, b1, rest @ ..] = payload else {
            self.counters.ignored_packets += 1;
            return;
        };
        let result = match (b0 >> 1) & 0x3f {
            0..=47 => self.add_nal(payload),
            48 => self.stap_a(rest),
            49 => self.fu_hevc([*b0, *b1], rest),
            _ => Err(LossReason::Unsupported),
        };
        if let Err(reason) = result {
            self.damage(reason);
        }
    }

    fn fu_hevc(&mut self, header: [u8; 2], rest: &[u8]) -> Result<(), LossReason> {
        let Some((&fu, data)) = rest.split_first() else { return Err(LossReason::Malformed) };
        // The NAL header: F and layer id from the payload header, the type from the FU header.
        let nal_header = [(header[0] & 0x81) | (fu & 0x3f) << 1, header[1]];
        self.fragment(fu & 0x80 != 0, fu & 0x40 != 0, &nal_header, data)
    }

    fn stap_a(&mut self, mut rest: &[u8]) -> Result<(), LossReason> {
        while !rest.is_empty() {
            let [hi, lo, tail @ ..] = rest else { return Err(LossReason::Malformed) };
            let size = u16::from_be_bytes([*hi, *lo]) as usize;
            if size == 0 || size > tail.len() {
                return Err(LossReason::Malformed);
            }
            self.add_nal(&tail[..size])?;
            rest = &tail[size..];
        }
        Ok(())
    }

    fn fu_a(&mut self, indicator: u8, rest: &[u8]) -> Result<(), LossReason> {
        let Some((&header, data)) = rest.split_first() else { return Err(LossReason::Malformed) };
        // The NAL header is rebuilt from the indicator's F and NRI and the FU header's type.
        self.fragment(header & 0x80 != 0, header & 0x40 != 0, &[(indicator & 0xe0) | (header & 0x1f)], data)
    }

    /// One fragment of a NAL unit (FU-A, or H.265's FU): `nal_header` starts it when `start`.
    fn fragment(&mut self, start: bool, end: bool, nal_header: &[u8], data: &[u8]) -> Result<(), LossReason> {
        let p = self.pending.as_mut().ok_or(LossReason::BrokenFragment)?;
        if start {
            if p.fragment.is_some() {
                p.fragment = None;
                return Err(LossReason::BrokenFragment);
            }
            p.fragment = Some(nal_header.to_vec());
        }
        let Some(fragment) = p.fragment.as_mut() else { return Err(LossReason::BrokenFragment) };
        if p.bytes + fragment.len() + data.len() > MAX_ACCESS_UNIT_BYTES {
            p.fragment = None;
            return Err(LossReason::TooLarge);
        }
        fragment.extend_from_slice(data);
        if end {
            let nal = p.fragment.take().unwrap_or_default();
            return self.add_nal(&nal);
        }
        Ok(())
    }

    fn add_nal(&mut self, nal: &[u8]) -> Result<(), LossReason> {
        let p = self.pending.as_mut().ok_or(LossReason::Malformed)?;
        if p.damage.is_some() {
            // Already going to be dropped: keep no bytes for it.
            return Ok(());
        }
        if p.fragment.is_some() {
            // A whole NAL unit while a FU-A was open: the fragment's end is missing. (A completed
            // fragment comes here after `take`, so `fragment` is None for it.)
            p.fragment = None;
            return Err(LossReason::BrokenFragment);
        }
        if nal.is_empty() {
            return Err(LossReason::Malformed);
        }
        if p.bytes + nal.len() > MAX_ACCESS_UNIT_BYTES || p.nals.len() >= MAX_NALS_PER_ACCESS_UNIT {
            return Err(LossReason::TooLarge);
        }
        p.bytes += nal.len();
        p.nals.push(nal.to_vec());
        Ok(())
    }
}

/// Decodes SDP's `sprop-parameter-sets` (RFC 6184 8.1): base64 NAL units separated by commas.
pub fn sprop_parameter_sets(value: &str) -> Result<Vec<Vec<u8>>, Error> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, s)| base64::engine::general_purpose::STANDARD.decode(s).map_err(|_| Error::Base64(i)))
        .collect()
}

/// ISO/IEC 14496-15 5.3.3.1 `AVCDecoderConfigurationRecord` (the `avcC` box's contents) for one
/// SPS and one PPS, with 4-byte NAL lengths. High profiles get the chroma format and bit depth
/// fields the standard adds for them (as ffmpeg's MP4 muxer writes them).
pub fn avc_decoder_configuration_record(sps: &[u8], pps: &[u8]) -> Result<Vec<u8>, Error> {
    if nal_type(sps) != Some(NAL_SPS) {
        return Err(Error::NotParameterSet(nal_type(sps).unwrap_or(0), "SPS"));
    }
    if nal_type(pps) != Some(NAL_PPS) {
        return Err(Error::NotParameterSet(nal_type(pps).unwrap_or(0), "PPS"));
    }
    let sps_len = u16::try_from(sps.len()).map_err(|_| Error::TooLong(sps.len()))?;
    let pps_len = u16::try_from(pps.len()).map_err(|_| Error::TooLong(pps.len()))?;
    let info = parse_sps(sps)?;
    let mut out = vec![1, info.profile_idc, info.constraint_flags, info.level_idc, 0xfc | 3, 0xe0 | 1];
    out.extend_from_slice(&sps_len.to_be_bytes());
    out.extend_from_slice(sps);
    out.push(1);
    out.extend_from_slice(&pps_len.to_be_bytes());
    out.extend_from_slice(pps);
    if matches!(info.profile_idc, 100 | 110 | 122 | 144) {
        out.push(0xfc | info.chroma_format_idc);
        out.push(0xf8 | info.bit_depth_luma.saturating_sub(8));
        out.push(0xf8 | info.bit_depth_chroma.saturating_sub(8));
        out.push(0); // numOfSequenceParameterSetExt
    }
    Ok(out)
}

/// What a container needs from a sequence parameter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sps {
    pub profile_idc: u8,
    /// The byte between profile and level (constraint_set0..5 flags and reserved bits).
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    pub frame_mbs_only: bool,
    /// Displayed size: macroblocks times 16, field pairs doubled, frame cropping removed.
    pub width: u32,
    pub height: u32,
}

/// Reads the size fields of an SPS NAL unit (H.264 7.3.2.1.1), emulation prevention removed.
pub fn parse_sps(nal: &[u8]) -> Result<Sps, Error> {
    if nal_type(nal) != Some(NAL_SPS) {
        return Err(Error::NotParameterSet(nal_type(nal).unwrap_or(0), "SPS"));
    }
    let rbsp = unescape(&nal[1..]);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8)? as u8;
    let constraint_flags = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    r.ue("seq_parameter_set_id")?;
    let (mut chroma_format_idc, mut separate_colour_plane, mut depth_luma, mut depth_chroma) = (1u32, false, 0, 0);
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = r.ue("chroma_format_idc")?;
        if chroma_format_idc > 3 {
            return Err(Error::SpsRange("chroma_format_idc"));
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        depth_luma = r.ue("bit_depth_luma_minus8")?;
        depth_chroma = r.ue("bit_depth_chroma_minus8")?;
        if depth_luma > 6 || depth_chroma > 6 {
            return Err(Error::SpsRange("bit_depth"));
        }
        r.flag()?; // qpprime_y_zero_transform_bypass_flag
        if r.flag()? {
            // seq_scaling_matrix_present_flag: the lists are skipped, but must be read through.
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue("log2_max_frame_num_minus4")?;
    match r.ue("pic_order_cnt_type")? {
        0 => {
            r.ue("log2_max_pic_order_cnt_lsb_minus4")?;
        }
        1 => {
            r.flag()?;
            r.se()?;
            r.se()?;
            let n = r.ue("num_ref_frames_in_pic_order_cnt_cycle")?;
            if n > 255 {
                return Err(Error::SpsRange("num_ref_frames_in_pic_order_cnt_cycle"));
            }
            for _ in 0..n {
                r.se()?;
            }
        }
        2 => {}
        _ => return Err(Error::SpsRange("pic_order_cnt_type")),
    }
    r.ue("max_num_ref_frames")?;
    r.flag()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue("pic_width_in_mbs_minus1")? as u64 + 1;
    let height_map_units = r.ue("pic_height_in_map_units_minus1")? as u64 + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.flag()?; // mb_adaptive_frame_field_flag
    }
    r.flag()?; // direct_8x8_inference_flag
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let (mut crop_x, mut crop_y) = (0u64, 0u64);
    if r.flag()? {
        let (left, right, top, bottom) = (r.ue("crop")?, r.ue("crop")?, r.ue("crop")?, r.ue("crop")?);
        // Table 6-1 and equations 7-19..7-22: cropping is counted in chroma sample units.
        let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
        let (unit_x, unit_y) = match chroma_array_type {
            0 => (1, field_factor),
            1 => (2, 2 * field_factor),
            2 => (2, field_factor),
            _ => (1, field_factor),
        };
        crop_x = unit_x * (left as u64 + right as u64);
        crop_y = unit_y * (top as u64 + bottom as u64);
    }
    let full_width = width_mbs * 16;
    let full_height = field_factor * height_map_units * 16;
    let width = full_width.checked_sub(crop_x).filter(|w| *w > 0).ok_or(Error::SpsRange("frame_crop"))?;
    let height = full_height.checked_sub(crop_y).filter(|h| *h > 0).ok_or(Error::SpsRange("frame_crop"))?;
    Ok(Sps {
        profile_idc,
        constraint_flags,
        level_idc,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma: depth_luma as u8 + 8,
        bit_depth_chroma: depth_chroma as u8 + 8,
        frame_mbs_only,
        width: u32::try_from(width).map_err(|_| Error::SpsRange("width"))?,
        height: u32::try_from(height).map_err(|_| Error::SpsRange("height"))?,
    })
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), Error> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Removes emulation prevention bytes: `00 00 03` becomes `00 00` (H.264 7.4.1).
fn unescape(ebsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ebsp.len());
    let mut zeros = 0;
    for &b in ebsp {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> BitReader<'a> {
        BitReader { data, pos: 0 }
    }

    fn flag(&mut self) -> Result<bool, Error> {
        let byte = self.data.get(self.pos / 8).ok_or(Error::SpsTruncated)?;
        let bit = byte >> (7 - self.pos % 8) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    fn bits(&mut self, n: u32) -> Result<u32, Error> {
        let mut v = 0u32;
        for _ in 0..n {
            v = v << 1 | self.flag()? as u32;
        }
        Ok(v)
    }

    /// Unsigned exp-Golomb; codes of more than 31 leading zeros do not fit the fields read here.
    fn ue(&mut self, field: &'static str) -> Result<u32, Error> {
        let mut zeros = 0;
        while !self.flag()? {
            zeros += 1;
            if zeros > 31 {
                return Err(Error::SpsRange(field));
            }
        }
        Ok(((1u64 << zeros) - 1 + self.bits(zeros)? as u64) as u32)
    }

    fn se(&mut self) -> Result<i64, Error> {
        let k = self.ue("se")? as i64;
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(d: &mut Depacketizer) -> Vec<Event> {
        std::iter::from_fn(|| d.pop()).collect()
    }

    fn au(ts: u32, seq: u64, nals: &[&[u8]]) -> Event {
        Event::AccessUnit(AccessUnit {
            rtp_ts: ts,
            first_seq: seq,
            nals: nals.iter().map(|n| n.to_vec()).collect(),
            keyframe: nals.iter().any(|n| n[0] & 0x1f == 5),
        })
    }

    #[test]
    fn single_stap_a_and_fu_a() {
        let mut d = Depacketizer::new();
        // STAP-A with SPS and PPS, then an IDR in three FU-A fragments.
        d.push(1, 100, false, &[0x78, 0, 3, 0x67, 1, 2, 0, 2, 0x68, 3]);
        d.push(2, 100, false, &[0x7c, 0x85, 0xaa]);
        d.push(3, 100, false, &[0x7c, 0x05, 0xbb]);
        d.push(4, 100, true, &[0x7c, 0x45, 0xcc]);
        d.push(5, 200, true, &[0x41, 0xdd]);
        assert_eq!(
            drain(&mut d),
            vec![au(100, 1, &[&[0x67, 1, 2], &[0x68, 3], &[0x65, 0xaa, 0xbb, 0xcc]]), au(200, 5, &[&[0x41, 0xdd]])]
        );
        assert_eq!(d.sps(), Some(&[0x67, 1, 2][..]));
    }

    #[test]
    fn timestamp_change_closes_without_marker() {
        let mut d = Depacketizer::new();
        d.push(1, 100, false, &[0x41, 1]);
        d.push(2, 200, false, &[0x41, 2]);
        d.finish();
        assert_eq!(drain(&mut d), vec![au(100, 1, &[&[0x41, 1]]), au(200, 2, &[&[0x41, 2]])]);
    }

    #[test]
    fn missing_fragment_drops_the_unit() {
        let mut d = Depacketizer::new();
        d.push(1, 100, false, &[0x7c, 0x85, 0xaa]);
        d.push(3, 100, true, &[0x7c, 0x45, 0xcc]);
        d.push(4, 200, true, &[0x41, 0xdd]);
        assert_eq!(
            drain(&mut d),
            vec![Event::Lost { rtp_ts: 100, reason: LossReason::MissingPackets }, au(200, 4, &[&[0x41, 0xdd]])]
        );
    }

    #[test]
    fn lost_head_and_lost_whole_units() {
        let mut d = Depacketizer::new();
        d.push(1, 100, true, &[0x41, 1]);
        // 2 lost (the FU-A start of ts 200)
        d.push(3, 200, true, &[0x7c, 0x41, 0xcc]);
        // 4 lost: a whole unit (ts 300)
        d.push(5, 400, true, &[0x41, 4]);
        assert_eq!(
            drain(&mut d),
            vec![
                au(100, 1, &[&[0x41, 1]]),
                Event::Lost { rtp_ts: 200, reason: LossReason::MissingPackets },
                Event::Gap { packets: 1 },
                au(400, 5, &[&[0x41, 4]]),
            ]
        );
    }

    #[test]
    fn lost_marker_packet_damages_the_unit_before() {
        let mut d = Depacketizer::new();
        d.push(1, 100, false, &[0x7c, 0x81, 1]);
        d.push(2, 100, false, &[0x7c, 0x01, 2]);
        // 3 lost: the FU-A end with the marker
        d.push(4, 200, true, &[0x41, 4]);
        assert_eq!(
            drain(&mut d),
            vec![Event::Lost { rtp_ts: 100, reason: LossReason::MissingPackets }, au(200, 4, &[&[0x41, 4]])]
        );
    }

    #[test]
    fn malformed_stap_and_late_packets() {
        let mut d = Depacketizer::new();
        d.push(1, 100, true, &[0x78, 0, 9, 0x67]);
        d.push(1, 100, true, &[0x41]);
        assert_eq!(drain(&mut d), vec![Event::Lost { rtp_ts: 100, reason: LossReason::Malformed }]);
        assert_eq!(d.counters().late_packets, 1);
    }

    #[test]
    fn annex_b_injects_parameter_sets_before_the_idr() {
        let a = AccessUnit { rtp_ts: 0, first_seq: 0, nals: vec![vec![0x06, 1], vec![0x65, 2]], keyframe: true };
        assert_eq!(
            a.annex_b(Some(&[0x67, 9]), Some(&[0x68, 8])),
            vec![0, 0, 0, 1, 6, 1, 0, 0, 0, 1, 0x67, 9, 0, 0, 0, 1, 0x68, 8, 0, 0, 1, 0x65, 2]
        );
        assert_eq!(a.avcc_sample(), vec![0, 0, 0, 2, 6, 1, 0, 0, 0, 2, 0x65, 2]);
    }

    #[test]
    fn sps_size_with_cropping() {
        // ffmpeg/x264's SPS for 320x180 (High profile, 12 rows cropped), from the fixture's SDP.
        let sets = sprop_parameter_sets("Z2QADKyyAoM/PgIgAAADACAAAAZB4oVJ,aOvDyyLA").unwrap();
        let sps = parse_sps(&sets[0]).unwrap();
        assert_eq!((sps.width, sps.height, sps.profile_idc, sps.level_idc), (320, 180, 100, 12));
        assert!(sps.frame_mbs_only);
    }

    #[test]
    fn hostile_sps_does_not_panic() {
        for len in 0..64 {
            let mut v = vec![0x67];
            v.extend((0..len).map(|i| if i % 3 == 0 { 0 } else { 0xff }));
            let _ = parse_sps(&v);
            let _ = parse_sps(&vec![0x67; len]);
            let _ = parse_sps(&vec![0x67, 100, 0, 10, 0, 0, 0, 0, 0, 0][..len.min(10)]);
        }
    }
}

/// What an H.265 SPS says (H.265 7.3.2.2): the profile_tier_level bytes an `hvcC` repeats, the
/// chroma format and bit depths, and the displayed size. Only SPSs of a single sub-layer
/// (`sps_max_sub_layers_minus1` = 0, what encoders write for ordinary streams) are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HevcSps {
    /// general_profile_space, tier, profile_idc; compatibility flags; constraint flags; level.
    pub profile_tier_level: [u8; 12],
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    pub width: u32,
    pub height: u32,
}

/// Reads an H.265 SPS NAL unit (its 2-byte header included).
pub fn parse_hevc_sps(nal: &[u8]) -> Result<HevcSps, Error> {
    let rbsp = unescape(nal.get(2..).ok_or(Error::SpsTruncated)?);
    let mut r = BitReader::new(&rbsp);
    r.bits(4)?; // sps_video_parameter_set_id
    if r.bits(3)? != 0 {
        return Err(Error::SpsRange("sps_max_sub_layers_minus1"));
    }
    r.flag()?; // sps_temporal_id_nesting_flag
    let mut ptl = [0u8; 12];
    for b in ptl.iter_mut() {
        *b = r.bits(8)? as u8;
    }
    r.ue("sps_seq_parameter_set_id")?;
    let chroma = r.ue("chroma_format_idc")?;
    if chroma > 3 {
        return Err(Error::SpsRange("chroma_format_idc"));
    }
    if chroma == 3 {
        r.flag()?; // separate_colour_plane_flag
    }
    let mut width = r.ue("pic_width_in_luma_samples")?;
    let mut height = r.ue("pic_height_in_luma_samples")?;
    if r.flag()? {
        // conformance_window: offsets in chroma samples.
        let (sx, sy) = match chroma {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let (l, rt, t, b) = (r.ue("conf_win")?, r.ue("conf_win")?, r.ue("conf_win")?, r.ue("conf_win")?);
        width = width.checked_sub((l + rt).saturating_mul(sx)).ok_or(Error::SpsRange("conf_win"))?;
        height = height.checked_sub((t + b).saturating_mul(sy)).ok_or(Error::SpsRange("conf_win"))?;
    }
    let luma = r.ue("bit_depth_luma_minus8")?;
    let chroma_depth = r.ue("bit_depth_chroma_minus8")?;
    if luma > 8 || chroma_depth > 8 {
        return Err(Error::SpsRange("bit_depth"));
    }
    Ok(HevcSps {
        profile_tier_level: ptl,
        chroma_format_idc: chroma as u8,
        bit_depth_luma: 8 + luma as u8,
        bit_depth_chroma: 8 + chroma_depth as u8,
        width,
        height,
    })
}

/// The ISO 14496-15 `hvcC` (8.3.3.1) for one VPS, SPS and PPS, with 4-byte NAL lengths.
pub fn hevc_decoder_configuration_record(vps: &[u8], sps: &[u8], pps: &[u8]) -> Result<Vec<u8>, Error> {
    let s = parse_hevc_sps(sps)?;
    let mut c = vec![1];
    c.extend_from_slice(&s.profile_tier_level[..11]); // space/tier/idc, 32 + 48 flag bits
    c.push(s.profile_tier_level[11]); // general_level_idc
    c.extend_from_slice(&[0xf0, 0x00]); // min_spatial_segmentation_idc 0
    c.push(0xfc); // parallelismType unknown
    c.push(0xfc | s.chroma_format_idc);
    c.push(0xf8 | (s.bit_depth_luma - 8));
    c.push(0xf8 | (s.bit_depth_chroma - 8));
    c.extend_from_slice(&[0, 0]); // avgFrameRate unknown
                                  // constantFrameRate 0, numTemporalLayers 1, temporalIdNested 1, lengthSizeMinusOne 3.
    c.push(0b0000_1111);
    c.push(3);
    for (t, nal) in [(32u8, vps), (33, sps), (34, pps)] {
        let len = u16::try_from(nal.len()).map_err(|_| Error::TooLong(nal.len()))?;
        c.push(0x80 | t); // array_completeness
        c.extend_from_slice(&1u16.to_be_bytes());
        c.extend_from_slice(&len.to_be_bytes());
        c.extend_from_slice(nal);
    }
    Ok(c)
}

#[cfg(test)]
mod hevc_tests {
    use super::*;

    /// The parameter sets FFmpeg's RTSP client put in its SDP for a libx265 320x240 stream.
    const VPS: &str = "QAEMAf//AWAAAAMAkAAAAwAAAwA8lZgJ";
    const SPS: &str = "QgEBAWAAAAMAkAAAAwAAAwA8oAoIDxZZWaSTK8BacIAAAAMAgAAADIQ=";
    const PPS: &str = "RAHBcrRiQA==";

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    #[test]
    fn an_sps_gives_its_size_and_the_hvcc_its_profile() {
        let sps = parse_hevc_sps(&b64(SPS)).unwrap();
        assert_eq!((sps.width, sps.height, sps.chroma_format_idc, sps.bit_depth_luma), (320, 240, 1, 8));
        // Main profile (1), level 2 (60 = 30 * 2).
        assert_eq!((sps.profile_tier_level[0] & 0x1f, sps.profile_tier_level[11]), (1, 60));
        let c = hevc_decoder_configuration_record(&b64(VPS), &b64(SPS), &b64(PPS)).unwrap();
        assert_eq!((c[0], c[1] & 0x1f, c[12], c[21] & 3, c[22]), (1, 1, 60, 3, 3));
    }

    #[test]
    fn aggregation_and_fragmentation_units_give_whole_nal_units() {
        let mut d = Depacketizer::hevc();
        // An AP with two NAL units (types 32 and 33), then an FU carrying an IDR (19) in 3 parts.
        let mut ap = vec![48 << 1, 1];
        for nal in [vec![32 << 1, 1, 0xaa], vec![33 << 1, 1, 0xbb, 0xcc]] {
            ap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            ap.extend(nal);
        }
        d.push(1, 100, false, &ap);
        d.push(2, 100, false, &[49 << 1, 1, 0x80 | 19, 1, 2]);
        d.push(3, 100, false, &[49 << 1, 1, 19, 3]);
        d.push(4, 100, true, &[49 << 1, 1, 0x40 | 19, 4]);
        let Some(Event::AccessUnit(au)) = d.pop() else { panic!("an access unit") };
        assert_eq!(au.nals, vec![vec![64, 1, 0xaa], vec![66, 1, 0xbb, 0xcc], vec![19 << 1, 1, 1, 2, 3, 4]]);
        assert!(au.keyframe);
        assert_eq!(d.vps(), Some(&[64u8, 1, 0xaa][..]));
        // A lost middle fragment drops the access unit.
        d.push(5, 200, false, &[49 << 1, 1, 0x80 | 1, 1]);
        d.push(7, 200, true, &[49 << 1, 1, 0x40 | 1, 3]);
        assert!(matches!(d.pop(), Some(Event::Lost { rtp_ts: 200, .. })));
    }
}
