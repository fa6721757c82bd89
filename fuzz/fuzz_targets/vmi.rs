#![no_main]
//! VM image inspection on arbitrary bytes (qcow2 headers and tables, partition tables, ext4 via
//! ext4-view, QEMU migration streams, carving): must never panic and stay bounded.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tapir::fuzzing::vmi(data);
});
