//! What each object digest costs per byte on this CPU (issue 15: with every packet targeted, the
//! three digests of every object are the file layer's main cost). For `bench/digests.sh`.
//!
//! `digest_cost [MEGABYTES]` hashes MEGABYTES (default 512) of pseudo-random bytes in 64 KiB
//! updates (the size the file layer's writes come in at most) with ring's SHA-256 and SHA-512
//! and md-5's MD5, as `content::Files` does, and prints one line each:
//! `name ns_per_byte MB_per_s`.

use std::time::Instant;

use md5::{Digest, Md5};

fn main() {
    let mb: usize = std::env::args().nth(1).map(|s| s.parse().expect("megabytes")).unwrap_or(512);
    // xorshift bytes: not compressible, no page of zeros.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let chunk: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let rounds = mb * 16;
    let bytes = (rounds * chunk.len()) as f64;
    let report = |name: &str, secs: f64| {
        println!("{name:8} {:6.3} ns/byte {:8.0} MB/s", secs * 1e9 / bytes, bytes / secs / 1e6);
    };
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    let mut out = Vec::new();
    let s = time(&mut || {
        let mut c = ring::digest::Context::new(&ring::digest::SHA256);
        for _ in 0..rounds {
            c.update(&chunk);
        }
        out.push(c.finish().as_ref()[0]);
    });
    report("sha256", s);
    let s = time(&mut || {
        let mut c = Md5::new();
        for _ in 0..rounds {
            c.update(&chunk);
        }
        out.push(c.finalize()[0]);
    });
    report("md5", s);
    let s = time(&mut || {
        let mut c = ring::digest::Context::new(&ring::digest::SHA512);
        for _ in 0..rounds {
            c.update(&chunk);
        }
        out.push(c.finish().as_ref()[0]);
    });
    report("sha512", s);
    let s = time(&mut || {
        let (mut a, mut b, mut c) = (
            ring::digest::Context::new(&ring::digest::SHA256),
            Md5::new(),
            ring::digest::Context::new(&ring::digest::SHA512),
        );
        for _ in 0..rounds {
            a.update(&chunk);
            b.update(&chunk);
            c.update(&chunk);
        }
        out.extend([a.finish().as_ref()[0], b.finalize()[0], c.finish().as_ref()[0]]);
    });
    report("all3", s);
    // Keep the results alive so nothing is optimised away.
    eprintln!("{out:?}");
}
