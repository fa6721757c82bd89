#![no_main]
//! The tls analyzer on arbitrary conversations: must never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tapir::fuzzing::conversation(tapir::analyze::tls::analyzer(), data);
});
