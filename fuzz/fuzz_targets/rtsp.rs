#![no_main]
//! The rtsp analyzer on arbitrary conversations (messages, SDP bodies, interleaved RTP): must
//! never panic, and holds at most its bounded buffers.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tapir::fuzzing::conversation(tapir::analyze::rtsp::analyzer(), data);
});
