#![no_main]
//! The btrfs reader of VM image inspection on arbitrary bytes: must never panic and stay bounded.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tapir::fuzzing::vmi_reader("btrfs", data);
});
