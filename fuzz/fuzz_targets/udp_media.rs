#![no_main]
//! A UDP flow's analyzers (detection, RTP with its reorder window and writers, MPEG-TS) on
//! arbitrary datagrams: must never panic, and stay within their bounds.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tapir::fuzzing::datagrams(data);
});
