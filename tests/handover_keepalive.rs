//! Keep-alive behaviour against a scripted LEA end (`tests/data/handover/ka_peer.py`, asn1tools):
//! a keep-alive from the LEA is answered with the same header; an LEA that never answers our
//! keep-alive is reconnected to.

use crate::handover_common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use handover_common::*;
use tapir::deliver::handover::Delivery;

fn peer(port: u16, mode: &str) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut c = Command::new("python3")
        .arg(format!("{DATA}/ka_peer.py"))
        .arg(port.to_string())
        .arg(mode)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "listening");
    (c, out)
}

#[test]
fn keep_alive_from_the_lea_is_answered_with_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let (hi2, hi3) = (free_port(), free_port());
    let (mut child, out) = peer(hi2, "ask");
    let (leas, warrants) = setup(&warrants_text(hi2, hi3, ""));
    let d = Delivery::start(leas, &warrants, &dir.path().join("spool")).unwrap();
    let st = child.wait().unwrap();
    let lines: Vec<String> = out.lines().map_while(Result::ok).collect();
    drop(d);
    assert!(st.success(), "{lines:?}");
    // Our own idle keep-alives may come first; the answer carries the LEA's header.
    assert_eq!(lines.last().map(String::as_str), Some("keep-aliveResponse liid=KA-LIID cin=5 seq=42"), "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("keep-alive")), "{lines:?}");
}

#[test]
fn unanswered_keep_alive_makes_the_sender_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let (hi2, hi3) = (free_port(), free_port());
    let (mut child, out) = peer(hi2, "silent");
    let (leas, warrants) = setup(&warrants_text(hi2, hi3, ""));
    let t0 = std::time::Instant::now();
    let d = Delivery::start(leas, &warrants, &dir.path().join("spool")).unwrap();
    let st = child.wait().unwrap();
    let elapsed = t0.elapsed();
    let rep = d.finish(Duration::ZERO);
    let lines: Vec<String> = out.lines().map_while(Result::ok).collect();
    assert!(st.success());
    assert_eq!(lines, vec!["conn", "conn", "conn"]);
    // keepalive = 1 s: idle 1 s, then 1 s without an answer, before each reconnect; a sender
    // that reconnected for another reason would have been faster.
    assert!(elapsed >= Duration::from_secs(4), "{elapsed:?}");
    let hi2 = &rep.leas[0].hi2;
    assert!(hi2.connects >= 3 && hi2.errors >= 2, "{rep:#?}");
}
