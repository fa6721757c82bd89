#![no_main]
//! The rtmp analyzer on arbitrary conversations (handshake bytes included or not): must never
//! panic, and its memory stays within the chunk reader's bounds.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tapir::fuzzing::rtmp(data);
});
