//! Entry points for the fuzz targets in `fuzz/` (kept in the library so they build with it and
//! cannot rot).

use crate::analyze::harness::Harness;
use crate::analyze::StreamAnalyzer;
use crate::capture::file::CaptureFile;
use crate::decode::DecodeConfig;
use crate::flow::FlowConfig;
use crate::pipeline::Pipeline;
use crate::record::{Close, Dir, VecSink};
use crate::select::parse_warrants;

/// Plays `data` as a conversation: each chunk starts with a control byte whose low bit picks the
/// direction, bit 1 makes it a gap instead of data, and the next byte gives the chunk length.
pub fn conversation(mut a: Box<dyn StreamAnalyzer>, mut data: &[u8]) {
    let mut h = Harness::new("192.0.2.1:40000", "192.0.2.2:80");
    while let [ctl, len, rest @ ..] = data {
        let dir = if ctl & 1 == 0 { Dir::Orig } else { Dir::Resp };
        let n = (*len as usize).min(rest.len());
        if ctl & 2 != 0 {
            h.gap(a.as_mut(), dir, *len as u64);
        } else {
            h.send(a.as_mut(), dir, &rest[..n]);
        }
        data = &rest[n..];
    }
    h.close(a.as_mut(), Close::Fin);
}

/// Runs `data` as a capture file through the pipeline with a warrant on every IPv4 and IPv6
/// address.
pub fn pipeline(data: &[u8]) {
    let Ok(file) = CaptureFile::from_bytes("fuzz", data.to_vec()) else { return };
    let w = parse_warrants(
        "[[warrant]]\nliid = \"F\"\nstart = \"1970-01-01T00:00:00Z\"\nend = \"2200-01-01T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [\"cidr:0.0.0.0/0\", \"cidr:::/0\"]\n",
        "fuzz.toml",
    )
    .expect("static warrant");
    let mut p = Pipeline::new(w.warrants, Vec::new(), DecodeConfig::default(), FlowConfig::default());
    let mut sink = VecSink::default();
    for f in file.frames().flatten() {
        p.frame(&f, &mut sink);
    }
    p.finish(&mut sink);
}

#[cfg(test)]
mod tests {
    #[test]
    fn pipeline_entry_takes_a_real_capture_and_garbage() {
        let real = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/http-put.pcap")).unwrap();
        super::pipeline(&real);
        super::pipeline(&real[..real.len() / 2]);
        super::pipeline(b"\xd4\xc3\xb2\xa1garbage");
        super::conversation(Box::new(crate::analyze::stream::RawStream::new()), &[0, 3, b'a', b'b', b'c', 3, 9]);
    }
}
