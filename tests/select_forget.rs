//! Months of RADIUS accounting must not grow the pipeline without end: applied association
//! events whose absence changes nothing are forgotten (ended access sessions, Interim-Update
//! repeats), and a reload after that still finds every session that is open. The expected
//! matches follow from the events' meaning (a session is its first start to its stop), not from
//! this code.

use etherparse::PacketBuilder;
use tapir::capture::{Frame, LinkType};
use tapir::decode::DecodeConfig;
use tapir::flow::FlowConfig;
use tapir::pipeline::Pipeline;
use tapir::record::VecSink;
use tapir::select::{parse_event, parse_warrants, AssocEvent, Warrant};
use tapir::timestamp::Timestamp;

const T0: i64 = 1_800_000_000; // 2027-01-15T08:00:00Z

fn ev(ms: i64, what: &str, subscriber: &str, ip: &str) -> AssocEvent {
    let t = Timestamp::from_secs(T0).add_nanos(ms * 1_000_000).to_rfc3339();
    let line = format!(r#"{{"time":"{t}","event":"{what}","subscriber":"{subscriber}","ip":"{ip}"}}"#);
    parse_event(&line, "test", 1).unwrap()
}

fn warrants(targets: &[(&str, &str)]) -> Vec<Warrant> {
    let text: String = targets
        .iter()
        .map(|(liid, t)| {
            format!(
                "[[warrant]]\nliid = \"{liid}\"\nstart = \"2027-01-01T00:00:00Z\"\n\
                 end = \"2027-02-01T00:00:00Z\"\nscope = \"cc\"\ntargets = [\"{t}\"]\n\n"
            )
        })
        .collect();
    parse_warrants(&text, "w").unwrap().warrants
}

/// A UDP packet from `src` at `ms`; the LIIDs it was intercepted for.
fn send(p: &mut Pipeline, ms: i64, src: [u8; 4]) -> Vec<String> {
    let mut data = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, [10, 2, 0, 1], 64)
        .udp(4000, 5000)
        .write(&mut data, b"data")
        .unwrap();
    let ts = Timestamp::from_secs(T0).add_nanos(ms * 1_000_000);
    let mut sink = VecSink::default();
    p.frame(&Frame { ts, link: LinkType::Ethernet, data: &data, orig_len: data.len() as u32 }, &mut sink);
    let mut liids: Vec<String> = sink.cc.iter().map(|c| c.0.to_string()).collect();
    liids.sort();
    liids
}

#[test]
fn ended_sessions_and_interim_repeats_are_forgotten_and_open_ones_survive_a_reload() {
    // ann (a target from the start) and bob (not yet) log on and stay, with an Interim-Update
    // every 10 ms; carol logs on and off early; 20 000 other sessions start, update and stop.
    let mut events = vec![
        ev(0, "access.start", "ann", "10.1.0.5"),
        ev(0, "access.start", "bob", "10.1.0.6"),
        ev(1, "access.start", "carol", "10.1.0.7"),
        ev(2, "access.stop", "carol", "10.1.0.7"),
    ];
    for i in 0..10_000i64 {
        events.push(ev(10 + i * 10, "access.start", "ann", "10.1.0.5"));
        events.push(ev(10 + i * 10, "access.start", "bob", "10.1.0.6"));
    }
    for i in 0..20_000i64 {
        let (sub, ip) = (format!("u{i}"), format!("10.9.{}.{}", i / 200, i % 200 + 1));
        events.push(ev(5 * i, "access.start", &sub, &ip));
        events.push(ev(5 * i + 1, "access.start", &sub, &ip));
        events.push(ev(5 * i + 2, "access.stop", &sub, &ip));
    }
    let total = events.len();
    assert_eq!(total, 4 + 20_000 + 60_000);
    let mut p =
        Pipeline::new(warrants(&[("L-ANN", "subscriber:ann")]), events, DecodeConfig::default(), FlowConfig::default());

    assert_eq!(send(&mut p, 150, [10, 1, 0, 5]), ["L-ANN"]);
    // All applied by 100 s of capture time.
    assert_eq!(send(&mut p, 100_500, [10, 1, 0, 5]), ["L-ANN"]);
    assert_eq!(p.summary.association_events, total as u64);
    let held = p.association_events_held();
    // Of 80 004 events only ann's and bob's first starts are still needed; a forgetting pass
    // runs whenever the applied part reaches 4096 or doubles, so never more than that is held.
    assert!(held <= 4096, "{held} events held");
    assert_eq!(p.summary.association_events_forgotten as usize, total - held);

    // A reload: new warrants see only what is left, and must find the same sessions open.
    p.set_warrants(
        warrants(&[
            ("L-ANN", "subscriber:ann"),
            ("L-BOB", "subscriber:bob"),
            ("L-CAROL", "subscriber:carol"),
            ("L-U", "subscriber:u5"),
        ]),
        &mut VecSink::default(),
    );
    assert_eq!(send(&mut p, 100_600, [10, 1, 0, 5]), ["L-ANN"], "ann's session is open");
    assert_eq!(send(&mut p, 100_600, [10, 1, 0, 6]), ["L-BOB"], "bob's session began before L-BOB existed");
    assert!(send(&mut p, 100_600, [10, 1, 0, 7]).is_empty(), "carol logged off");
    assert!(send(&mut p, 100_600, [10, 9, 0, 6]).is_empty(), "u5 logged off");

    // bob logs off: the reload's view ends there too.
    p.push_event(ev(100_700, "access.stop", "bob", "10.1.0.6"));
    assert!(send(&mut p, 100_800, [10, 1, 0, 6]).is_empty());
}

/// A flood of starts without stops (a misbehaving NAS, or packets injected on the tap) cannot
/// grow the history past its cap: open sessions' starts are dropped, those of subscribers no
/// warrant names first, and the drop is counted. The selector table is not touched, so interception
/// goes on; a reload still finds the targeted subscriber, whose start was the oldest of all.
#[test]
fn a_flood_of_open_sessions_is_capped_and_targets_are_dropped_last() {
    const CAP: usize = 1000;
    let mut events = vec![ev(0, "access.start", "ann", "10.1.0.5")];
    for i in 0..5_000i64 {
        events.push(ev(1 + i, "access.start", &format!("f{i}"), &format!("10.8.{}.{}", i / 250, i % 250 + 1)));
    }
    let mut p =
        Pipeline::new(warrants(&[("L-ANN", "subscriber:ann")]), events, DecodeConfig::default(), FlowConfig::default());
    p.limit_held_events(CAP);
    assert_eq!(send(&mut p, 10_000, [10, 1, 0, 5]), ["L-ANN"]);
    assert_eq!(p.summary.association_events, 5_001);
    let held = p.association_events_held();
    assert!(held < CAP, "{held} held");
    assert_eq!(p.summary.association_events_dropped as usize, 5_001 - held);
    assert_eq!(p.summary.association_events_forgotten, 0, "nothing had ended");
    // The newest flood sessions are still in the history: a warrant on one of them finds it.
    p.set_warrants(warrants(&[("L-ANN", "subscriber:ann"), ("L-F", "subscriber:f4999")]), &mut VecSink::default());
    assert_eq!(send(&mut p, 10_100, [10, 1, 0, 5]), ["L-ANN"], "ann's start was kept");
    assert_eq!(send(&mut p, 10_100, [10, 8, 19, 250]), ["L-F"]);
    // The oldest flood sessions were dropped: a warrant added now misses f0 until it restates.
    p.set_warrants(warrants(&[("L-ANN", "subscriber:ann"), ("L-F0", "subscriber:f0")]), &mut VecSink::default());
    assert!(send(&mut p, 10_200, [10, 8, 0, 1]).is_empty());
    p.push_event(ev(10_250, "access.start", "f0", "10.8.0.1"));
    assert_eq!(send(&mut p, 10_300, [10, 8, 0, 1]), ["L-F0"], "its next Interim-Update restates it");
}
