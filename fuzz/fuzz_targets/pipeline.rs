#![no_main]
//! A capture file of arbitrary bytes through the whole pipeline, every packet a target's.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tapir::fuzzing::pipeline(data);
});
