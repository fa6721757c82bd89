#![no_main]
//! The NTFS reader of VM image inspection on arbitrary bytes: must never panic and stay bounded.
//!
//! The `ntfs` crate panics on some corrupt index entries (a slice out of range in its
//! `index_entry.rs`); tapir contains a reader's panic (`vmi::filesystem_on`: the filesystem is
//! reported unreadable, the rest of the image is read). So the panic hook here is quiet, and what
//! this target finds is a panic that escapes that containment: libFuzzer's own catch around
//! this body still aborts on one.
use libfuzzer_sys::fuzz_target;

static QUIET: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    tapir::fuzzing::vmi_reader("ntfs", data);
});
