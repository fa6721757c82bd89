#![no_main]
//! RTP header view, SSRC statistics, H.264 depacketiser and SDP reader on arbitrary bytes: must
//! never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tapir::media::fuzz::media_rtp(data);
});
