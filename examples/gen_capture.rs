//! Writes a large synthetic Ethernet/IPv4/TCP capture for benchmarks.
//!
//! `cargo run --release --example gen_capture -- OUT.pcap MEGABYTES`
//!
//! Many concurrent TCP connections (SYN, handshake, 1400-byte segments both ways, FIN), clients
//! in 10.1.0.0/16 and servers in 10.2.0.0/16, so a warrant can target none, one host, or every
//! packet (`cidr:10.0.0.0/8`). Deterministic: the same arguments give the same bytes.

use std::fs::File;
use std::io::{BufWriter, Write};

use etherparse::PacketBuilder;

const FLOWS_AT_ONCE: usize = 256;
const SEGMENTS_PER_FLOW: u32 = 200;

struct Conn {
    client: [u8; 4],
    server: [u8; 4],
    cport: u16,
    cseq: u32,
    sseq: u32,
    sent: u32,
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: gen_capture OUT.pcap MEGABYTES");
        std::process::exit(2);
    }
    let limit: u64 = args[2].parse::<u64>().expect("MEGABYTES") << 20;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&args[1])?);
    let mut hdr = [0u8; 24];
    hdr[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    hdr[4..6].copy_from_slice(&2u16.to_le_bytes());
    hdr[6..8].copy_from_slice(&4u16.to_le_bytes());
    hdr[16..20].copy_from_slice(&65535u32.to_le_bytes());
    hdr[20..24].copy_from_slice(&1u32.to_le_bytes());
    out.write_all(&hdr)?;

    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut payload = vec![0u8; 1400];
    let mut written = 24u64;
    let mut t_us: u64 = 1_767_225_600_000_000;
    let mut n_conn = 0u32;
    let mut new_conn = |next: &mut dyn FnMut() -> u64| {
        n_conn += 1;
        let r = next();
        Conn {
            client: [10, 1, (n_conn >> 8) as u8, n_conn as u8],
            server: [10, 2, (r >> 8) as u8 & 0x0f, r as u8],
            cport: 1024 + (n_conn % 60000) as u16,
            cseq: (r >> 16) as u32,
            sseq: (r >> 32) as u32,
            sent: 0,
        }
    };
    let mut conns: Vec<Conn> = (0..FLOWS_AT_ONCE).map(|_| new_conn(&mut next)).collect();
    let mut buf = Vec::with_capacity(1600);
    let frame = |buf: &mut Vec<u8>, out: &mut BufWriter<File>, t_us: u64| -> std::io::Result<u64> {
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&((t_us / 1_000_000) as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&((t_us % 1_000_000) as u32).to_le_bytes());
        rec[8..12].copy_from_slice(&(buf.len() as u32).to_le_bytes());
        rec[12..16].copy_from_slice(&(buf.len() as u32).to_le_bytes());
        out.write_all(&rec)?;
        out.write_all(buf)?;
        Ok(16 + buf.len() as u64)
    };
    while written < limit {
        let i = (next() as usize) % conns.len();
        t_us += 3;
        let c = &mut conns[i];
        buf.clear();
        let mac_c = [2, 0, 0, 0, 0, 1];
        let mac_s = [2, 0, 0, 0, 0, 2];
        if c.sent == 0 {
            // Handshake.
            PacketBuilder::ethernet2(mac_c, mac_s)
                .ipv4(c.client, c.server, 64)
                .tcp(c.cport, 80, c.cseq, 64240)
                .syn()
                .write(&mut buf, &[])
                .unwrap();
            written += frame(&mut buf, &mut out, t_us)?;
            buf.clear();
            PacketBuilder::ethernet2(mac_s, mac_c)
                .ipv4(c.server, c.client, 64)
                .tcp(80, c.cport, c.sseq, 64240)
                .syn()
                .ack(c.cseq.wrapping_add(1))
                .write(&mut buf, &[])
                .unwrap();
            written += frame(&mut buf, &mut out, t_us)?;
            c.cseq = c.cseq.wrapping_add(1);
            c.sseq = c.sseq.wrapping_add(1);
            c.sent = 1;
            continue;
        }
        if c.sent > SEGMENTS_PER_FLOW {
            PacketBuilder::ethernet2(mac_c, mac_s)
                .ipv4(c.client, c.server, 64)
                .tcp(c.cport, 80, c.cseq, 64240)
                .fin()
                .ack(c.sseq)
                .write(&mut buf, &[])
                .unwrap();
            written += frame(&mut buf, &mut out, t_us)?;
            buf.clear();
            PacketBuilder::ethernet2(mac_s, mac_c)
                .ipv4(c.server, c.client, 64)
                .tcp(80, c.cport, c.sseq, 64240)
                .fin()
                .ack(c.cseq.wrapping_add(1))
                .write(&mut buf, &[])
                .unwrap();
            written += frame(&mut buf, &mut out, t_us)?;
            conns[i] = new_conn(&mut next);
            continue;
        }
        for b in payload.iter_mut().step_by(64) {
            *b = next() as u8;
        }
        let to_server = c.sent % 4 != 0;
        if to_server {
            PacketBuilder::ethernet2(mac_c, mac_s)
                .ipv4(c.client, c.server, 64)
                .tcp(c.cport, 80, c.cseq, 64240)
                .ack(c.sseq)
                .write(&mut buf, &payload)
                .unwrap();
            c.cseq = c.cseq.wrapping_add(payload.len() as u32);
        } else {
            PacketBuilder::ethernet2(mac_s, mac_c)
                .ipv4(c.server, c.client, 64)
                .tcp(80, c.cport, c.sseq, 64240)
                .ack(c.cseq)
                .write(&mut buf, &payload)
                .unwrap();
            c.sseq = c.sseq.wrapping_add(payload.len() as u32);
        }
        written += frame(&mut buf, &mut out, t_us)?;
        c.sent += 1;
    }
    out.flush()?;
    eprintln!("wrote {} ({} bytes, {} connections)", args[1], written, n_conn);
    Ok(())
}
