//! The spool on its own: a torn tail is truncated (records written by python's zlib.crc32, not
//! by this code), and a full spool refuses PDUs with an alarm instead of dropping them.

mod common;
mod handover_common;

use std::process::Command;
use std::time::Duration;

use handover_common::*;
use tapir::deliver::handover::{Delivery, Spool, SpoolError};
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
    let lemf = Lemf::start(hi2, hi3, &dir.path().join("r.json"), 3.0, 60.0);
    let d = Delivery::start(leas, &warrants, &spool).unwrap();
    let rep = d.finish(Duration::from_secs(60));
    assert!(rep.complete(), "{rep:#?}");
    assert_eq!(rep.leas[0].hi3.truncated_records, 1);
    let (r, s) = lemf.wait();
    assert_eq!(seqs(&s, "hi3|LIID-A|1|cc"), (0..9).collect::<Vec<_>>());
    assert_eq!(r["undecodable"], 0);
}

#[test]
fn full_spool_refuses_with_an_alarm() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on these ports: the spool only fills.
    let (hi2, hi3) = (free_port(), free_port());
    let (leas, warrants) = setup(&warrants_text(hi2, hi3, "spool = { max_bytes = 3000 }"));
    let mut d = Delivery::start(leas, &warrants, &dir.path().join("spool")).unwrap();
    let a = Liid::new("LIID-A").unwrap();
    let mut refused = 0;
    for i in 0..100u32 {
        let p = packet([10, 0, 0, 5], i);
        match d.deliver(&cc(&a, 1, i, &p)) {
            Ok(()) => assert_eq!(refused, 0, "accepted after a refusal"),
            Err(SpoolError::Full { max, .. }) => {
                assert_eq!(max, 3000);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let size = segment_bytes(&dir.path().join("spool/lemf"), "hi3");
    assert!(size <= 3000 && size > 3000 - 200, "{size}");
    let rep = d.finish(Duration::from_millis(200));
    let l = &rep.leas[0];
    assert!(refused > 0);
    assert_eq!(l.counts.refused, refused);
    assert_eq!(l.counts.pdus + refused, 100);
    assert_eq!(l.hi3.spooled, l.counts.pdus);
    assert_eq!(rep.alarm_count, refused);
    assert!(rep.alarms[0].starts_with("ALARM spool") && rep.alarms[0].contains("max_bytes 3000"), "{:?}", rep.alarms);
    assert!(!rep.complete() && l.hi3.still_spooled_bytes == size);
}
