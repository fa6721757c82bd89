#![no_main]
//! Capture-file parsing on arbitrary bytes: must never panic and always end.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = tapir::capture::file::CaptureFile::from_bytes("fuzz", data.to_vec()) {
        let mut frames = f.frames();
        while frames.next_frame().is_some() {}
    }
});
