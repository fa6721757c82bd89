#![no_main]
//! One TCP direction of conflicting, overlapping segments, some failing their checksum, against
//! a model of what the receiver accepts (see `tapir::fuzzing::reassembly_against_receiver`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tapir::fuzzing::reassembly_against_receiver(data);
});
