#![no_main]
//! The smtp analyzer on arbitrary conversations: must never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tapir::fuzzing::conversation(tapir::analyze::smtp::analyzer(), data);
});
