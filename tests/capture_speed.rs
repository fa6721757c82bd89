//! Reading speed from the page cache: `cargo test --release --test it capture_speed:: -- --ignored
//! --nocapture`. Ignored by default: it writes ~200 MB per format and means nothing in debug.

use std::io::Write;
use std::time::Instant;

use tapir::capture::file::CaptureFile;

const FRAMES: u32 = 2_600_000; // 60-byte frames: ~200 MB of pcap

fn measure(label: &str, path: &std::path::Path) {
    let f = CaptureFile::open(path).unwrap();
    // The first pass may also read the file from disk into the page cache.
    let t0 = Instant::now();
    let mut first = 0usize;
    let mut it = f.frames();
    while it.next_frame().is_some() {
        first += 1;
    }
    let s0 = t0.elapsed().as_secs_f64();
    assert_eq!(first, FRAMES as usize);
    println!("{label}: first pass: {:.1} M frames/s", first as f64 / s0 / 1e6);
    if !cfg!(debug_assertions) {
        assert!(first as f64 / s0 > 5e6, "{label}: first pass {s0:.3} s");
    }
    let start = Instant::now();
    let mut n = 0u64;
    let mut bytes = 0u64;
    let mut check = 0u64;
    let mut it = f.frames();
    while let Some(r) = it.next_frame() {
        let fr = r.unwrap();
        n += 1;
        bytes += fr.data.len() as u64;
        // Touch the packet as a decoder would.
        check = check.wrapping_add(u64::from(fr.data.first().copied().unwrap_or(0))) ^ fr.ts.nanos() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(n, u64::from(FRAMES));
    assert_eq!(bytes, 60 * u64::from(FRAMES));
    let rate = n as f64 / secs;
    println!(
        "{label}: {n} frames, {} MB in {secs:.3} s: {:.1} M frames/s, {:.0} MB/s (check {check:x})",
        f.size() >> 20,
        rate / 1e6,
        f.size() as f64 / secs / 1e6
    );
    if !cfg!(debug_assertions) {
        assert!(rate > 5e6, "{label}: {rate:.0} frames/s");
    }
}

#[test]
#[ignore]
fn read_speed() {
    let dir = tempfile::tempdir().unwrap();
    let frame = [0x5au8; 60];

    let pcap = dir.path().join("big.pcap");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&pcap).unwrap());
    w.write_all(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0]).unwrap();
    for i in 0..FRAMES {
        w.write_all(&(1_700_000_000 + i / 1000).to_le_bytes()).unwrap();
        w.write_all(&(i % 1000 * 1000).to_le_bytes()).unwrap();
        w.write_all(&60u32.to_le_bytes()).unwrap();
        w.write_all(&60u32.to_le_bytes()).unwrap();
        w.write_all(&frame).unwrap();
    }
    w.into_inner().unwrap().sync_all().unwrap();
    measure("pcap", &pcap);
    std::fs::remove_file(&pcap).unwrap();

    let ng = dir.path().join("big.pcapng");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&ng).unwrap());
    let block = |w: &mut dyn Write, t: u32, body: &[u8]| {
        let len = body.len() as u32 + 12;
        w.write_all(&t.to_le_bytes()).unwrap();
        w.write_all(&len.to_le_bytes()).unwrap();
        w.write_all(body).unwrap();
        w.write_all(&len.to_le_bytes()).unwrap();
    };
    block(&mut w, 0x0a0d_0d0a, &[0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    block(&mut w, 1, &[1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
    let mut body = Vec::with_capacity(80);
    for i in 0..FRAMES {
        let units = 1_700_000_000_000_000_000u64 + u64::from(i) * 1000;
        body.clear();
        body.extend(0u32.to_le_bytes());
        body.extend(((units >> 32) as u32).to_le_bytes());
        body.extend((units as u32).to_le_bytes());
        body.extend(60u32.to_le_bytes());
        body.extend(60u32.to_le_bytes());
        body.extend(frame);
        block(&mut w, 6, &body);
    }
    w.into_inner().unwrap().sync_all().unwrap();
    measure("pcapng", &ng);
}
