//! The spool on its own: a torn tail is truncated (records written by python's zlib.crc32, not
//! by this code); a full spool pushes back until the LEA confirms, and refuses (with an alarm)
//! only when told to give up; the wait at the end is bounded whatever the LEA does.

use crate::handover_common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use handover_common::*;
use tapir::deliver::handover::{Channel, Delivery, Spool, SpoolError};
use tapir::select::Liid;

#[test]
fn crc_corrupted_tail_is_truncated_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hi3.0000000000000000.seg");
    // Three records [len u32 LE][crc32 u32 LE][bytes]; the third's last byte flipped after its CRC.
    let py = r#"
import struct, sys, zlib
out = b''
for i, p in enumerate([b'hello', b'world!', b'torn record']):
    rec = struct.pack('<II', len(p), zlib.crc32(p)) + p
    if i == 2:
        rec = rec[:-1] + bytes([rec[-1] ^ 1])
    out += rec
open(sys.argv[1], 'wb').write(out)
"#;
    let st = Command::new("python3").args(["-c", py]).arg(&path).status().unwrap();
    assert!(st.success());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 13 + 14 + 19);
    let sp = Spool::open(dir.path(), "hi3", 1 << 20).unwrap();
    assert_eq!(sp.truncated_records, 1);
    assert_eq!(sp.truncated_bytes, 19);
    assert_eq!(sp.end(), 13 + 14);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 13 + 14, "the torn tail is cut off on disk");
    let (pdus, n, next) = sp.read_from(0, 1 << 20).unwrap();
    assert_eq!((pdus, n, next), (b"helloworld!".to_vec(), 2, 27));

    // A half-written header (crash in the middle of the 8-byte prefix) is a torn tail too.
    drop(sp);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[5, 0, 0]);
    std::fs::write(&path, &bytes).unwrap();
    let sp = Spool::open(dir.path(), "hi3", 1 << 20).unwrap();
    assert_eq!((sp.truncated_records, sp.truncated_bytes, sp.end()), (1, 3, 27));
}

#[test]
fn delivery_after_restart_reports_the_truncated_tail_and_sends_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (hi2, hi3) = (free_port(), free_port());
    let (leas, warrants) = setup(&warrants_text(hi2, hi3, ""));
    let spool = dir.path().join("spool");
    let a = Liid::new("LIID-A").unwrap();
    {
        let mut d = Delivery::start(leas.clone(), &warrants, &spool).unwrap();
        feed_cc(&mut d, &a, 1, [10, 0, 0, 5], 0..10);
        d.sync().unwrap();
        drop(d);
    }
    // Corrupt the last PDU byte: its record fails the CRC, so sequence number 9 is gone.
    let segs = segments(&spool.join("lemf"), "hi3");
    assert_eq!(segs.len(), 1);
    let file = &segs[0];
    let mut bytes = std::fs::read(file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(file, &bytes).unwrap();
    let lemf = Lemf::start(hi2, hi3, &dir.path().join("r.json"), 60.0);
    let d = Delivery::start(leas, &warrants, &spool).unwrap();
    let rep = d.finish(Duration::from_secs(60));
    assert!(rep.complete(), "{rep:#?}");
    assert_eq!(rep.leas[0].hi3.truncated_records, 1);
    let (r, s) = lemf.wait();
    assert_eq!(seqs(&s, "hi3|LIID-A|1|cc"), (0..9).collect::<Vec<_>>());
    assert_eq!(r["undecodable"], 0);
}

#[test]
fn a_full_spool_pushes_back_and_everything_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (hi2, hi3) = (free_port(), free_port());
    // 3000 bytes hold about 20 CC PDUs: 460 of them can only pass if the spool waits for room.
    let (leas, warrants) = setup(&warrants_text(hi2, hi3, "spool = { max_bytes = 3000 }"));
    let lemf = Lemf::start(hi2, hi3, &dir.path().join("r.json"), 120.0);
    let spool = dir.path().join("spool");
    let mut d = Delivery::start(leas, &warrants, &spool).unwrap();
    let a = Liid::new("LIID-A").unwrap();
    for i in 0..460u32 {
        let p = packet([10, 0, 0, 5], i);
        d.deliver(&cc(&a, 1, i, &p)).unwrap();
        let size = segment_bytes(&spool.join("lemf"), "hi3");
        assert!(size <= 3000, "the spool holds {size} bytes, over its bound");
    }
    let rep = d.finish(Duration::from_secs(30));
    let l = &rep.leas[0];
    assert!(rep.complete(), "{rep:#?}");
    assert_eq!((l.counts.refused, rep.alarm_count, l.hi3.spooled), (0, 0, 460));
    assert!(l.hi3.full_waits > 0, "the spool never filled: the test proves nothing");
    let (r, s) = lemf.wait();
    assert_eq!(seqs(&s, "hi3|LIID-A|1|cc"), (0..460).collect::<Vec<_>>());
    assert_eq!(r["undecodable"], 0);
}

#[test]
fn a_full_spool_refuses_only_once_told_to_give_up() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on these ports: the spool only fills.
    let (hi2, hi3) = (free_port(), free_port());
    let (leas, warrants) = setup(&warrants_text(hi2, hi3, "spool = { max_bytes = 3000 }"));
    let mut d = Delivery::start(leas, &warrants, &dir.path().join("spool")).unwrap();
    let give_up = d.give_up_handle();
    let a = Liid::new("LIID-A").unwrap();
    let t0 = Instant::now();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(600));
        give_up.store(true, Ordering::Relaxed);
    });
    let mut refused = 0;
    let mut first_refusal = None;
    for i in 0..100u32 {
        let p = packet([10, 0, 0, 5], i);
        match d.deliver(&cc(&a, 1, i, &p)) {
            Ok(()) => assert_eq!(refused, 0, "accepted after a refusal"),
            Err(SpoolError::Full { max, .. }) => {
                assert_eq!(max, 3000);
                first_refusal.get_or_insert_with(|| t0.elapsed());
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    stopper.join().unwrap();
    let first_refusal = first_refusal.expect("a 3000-byte spool took 100 PDUs with no LEA");
    assert!(first_refusal >= Duration::from_millis(550), "refused after {first_refusal:?}: it did not wait");
    let size = segment_bytes(&dir.path().join("spool/lemf"), "hi3");
    assert!(size <= 3000 && size > 3000 - 200, "{size}");
    let rep = d.finish(Duration::from_millis(200));
    let l = &rep.leas[0];
    assert_eq!(l.counts.refused, refused);
    assert_eq!(l.counts.pdus + refused, 100);
    assert_eq!(l.hi3.spooled, l.counts.pdus);
    assert_eq!(l.hi3.full_waits, 1, "one wait, then refusals without waiting");
    assert_eq!(rep.alarm_count, refused);
    assert!(rep.alarms[0].starts_with("ALARM spool") && rep.alarms[0].contains("max_bytes 3000"), "{:?}", rep.alarms);
    assert!(!rep.complete() && l.hi3.still_spooled_bytes == size);
}

/// An IPv4/UDP packet of 1400 bytes from 10.0.0.5.
fn big_packet(n: u32) -> Vec<u8> {
    let mut p = packet([10, 0, 0, 5], n);
    p[2..4].copy_from_slice(&1400u16.to_be_bytes());
    p[24..26].copy_from_slice(&1380u16.to_be_bytes());
    p.resize(1400, 0xcd);
    p
}

#[test]
fn the_wait_at_the_end_is_bounded_against_an_lea_that_never_reads() {
    let dir = tempfile::tempdir().unwrap();
    // An "LEA" that accepts and then never reads: the socket buffers fill, writes block.
    let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let l3 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (hi2, hi3) = (l2.local_addr().unwrap().port(), l3.local_addr().unwrap().port());
    let held = std::thread::spawn(move || {
        let a = l2.accept().unwrap();
        let b = l3.accept().unwrap();
        std::thread::sleep(Duration::from_secs(30));
        drop((a, b));
    });
    let (leas, warrants) = setup(&warrants_text(hi2, hi3, ""));
    let mut d = Delivery::start(leas, &warrants, &dir.path().join("spool")).unwrap();
    let a = Liid::new("LIID-A").unwrap();
    // 40 MB: more than loopback's socket buffers on both sides can take.
    for i in 0..28_000u32 {
        let p = big_packet(i);
        d.deliver(&cc(&a, 1, i, &p)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.connected(0, Channel::Hi3) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d.connected(0, Channel::Hi3), "the sender never connected");
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let rep = d.finish(Duration::from_secs(1));
    let took = t0.elapsed();
    // The sender stops in the middle of its write: no need for the 2 s after which it is left behind.
    assert!(took < Duration::from_millis(2500), "finish(1 s) took {took:?}");
    assert!(!rep.complete());
    let l = &rep.leas[0];
    assert!(l.hi3.sent < 28_000 && l.hi3.still_spooled_bytes > 0, "{l:#?}");
    drop(held);
}
