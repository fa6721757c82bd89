#![no_main]
//! Decoding arbitrary frames of every link type: must never panic.
use libfuzzer_sys::fuzz_target;
use tapir::capture::{Frame, LinkType};
use tapir::decode::{DecodeConfig, Decoder};
use tapir::timestamp::Timestamp;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let links = [1u32, 0, 101, 108, 113, 228, 229, 276];
    let link = LinkType::from_linktype(links[sel as usize % links.len()]);
    let mut d = Decoder::new(DecodeConfig::default());
    // Two passes so fragments of the first can meet the second.
    for i in 0..2 {
        let frame = Frame { ts: Timestamp::from_secs(i), link, data: rest, orig_len: rest.len() as u32 };
        let _ = d.decode(&frame);
    }
});
