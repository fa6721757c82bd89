//! `Pipeline::set_warrants` / `push_event`, what the daemon's reload and association feed use,
//! in process: an unchanged warrant keeps its flow across a reload, a removed one ends its flow
//! at the reload time, a new warrant on a subscriber finds that subscriber's current access
//! session from events applied before it existed, and a live event is applied in time order.

use crate::common;

use tapir::capture::{Frame, LinkType};
use tapir::decode::DecodeConfig;
use tapir::flow::FlowConfig;
use tapir::pipeline::Pipeline;
use tapir::record::{Close, IriEvent, VecSink};
use tapir::select::{parse_event, parse_warrants};
use tapir::timestamp::Timestamp;

use common::udp_frame;

const T0: i64 = 1_800_000_000; // 2027-01-15T08:00:00Z

fn at(ms: i64) -> Timestamp {
    Timestamp::from_secs(T0).add_nanos(ms * 1_000_000)
}

fn send(p: &mut Pipeline, sink: &mut VecSink, ms: i64, src: [u8; 4]) {
    let data = udp_frame(src, [10, 2, 0, 1], b"data");
    let f = Frame { ts: at(ms), link: LinkType::Ethernet, data: &data, orig_len: data.len() as u32 };
    p.frame(&f, sink);
}

fn warrant(liid: &str, target: &str) -> String {
    format!(
        "[[warrant]]\nliid = \"{liid}\"\nstart = \"2027-01-01T00:00:00Z\"\nend = \"2027-02-01T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [\"{target}\"]\n"
    )
}

fn cc_count(s: &VecSink, liid: &str) -> usize {
    s.cc.iter().filter(|c| &*c.0 == liid).count()
}

#[test]
fn reload_keeps_unchanged_flows_ends_removed_ones_and_applies_past_events() {
    let a = [10, 1, 0, 1];
    let b = [10, 1, 0, 2];
    let joe = [10, 1, 0, 3];
    let w1 = parse_warrants(&format!("{}{}", warrant("L-A", "ipv4:10.1.0.1"), warrant("L-B", "ipv4:10.1.0.2")), "w1")
        .unwrap();
    let ev = parse_event(
        r#"{"time":"2027-01-15T08:00:00Z","event":"access.start","subscriber":"joe","ip":"10.1.0.3"}"#,
        "ev",
        1,
    )
    .unwrap();
    let mut p = Pipeline::new(w1.warrants, vec![ev], DecodeConfig::default(), FlowConfig::default());
    let mut s = VecSink::default();
    for ms in [0, 100, 200] {
        send(&mut p, &mut s, ms, a);
        send(&mut p, &mut s, ms, b);
        send(&mut p, &mut s, ms, joe);
    }
    assert_eq!((cc_count(&s, "L-A"), cc_count(&s, "L-B")), (3, 3));

    // Reload at T0+0.2: A unchanged, B gone, J new (on joe, whose session began before J existed).
    let w2 =
        parse_warrants(&format!("{}\n\n{}", warrant("L-A", "ipv4:10.1.0.1"), warrant("L-J", "subscriber:joe")), "w2")
            .unwrap();
    p.set_warrants(w2.warrants, &mut s);
    let b_end: Vec<_> = s
        .iri
        .iter()
        .filter(|r| &*r.liid == "L-B")
        .filter_map(|r| match &r.event {
            IriEvent::SessionEnd { reason, .. } => Some((r.ts, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(b_end, vec![(at(200), Close::WindowEnd)]);

    for ms in [300, 400] {
        send(&mut p, &mut s, ms, a);
        send(&mut p, &mut s, ms, b);
        send(&mut p, &mut s, ms, joe);
    }
    assert_eq!(cc_count(&s, "L-A"), 5);
    assert_eq!(cc_count(&s, "L-B"), 3, "nothing of B after its removal");
    assert_eq!(cc_count(&s, "L-J"), 2, "joe's packets from the first after the reload");

    // A live event: joe's session ends at T0+0.45; his packet at T0+0.5 is no longer his.
    p.push_event(
        parse_event(
            r#"{"time":"2027-01-15T08:00:00.450Z","event":"access.stop","subscriber":"joe","ip":"10.1.0.3"}"#,
            "feed",
            1,
        )
        .unwrap(),
    );
    send(&mut p, &mut s, 500, joe);
    send(&mut p, &mut s, 500, a);
    assert_eq!(cc_count(&s, "L-J"), 2);
    p.finish(&mut s);
    let begins = |liid: &str| {
        s.iri.iter().filter(|r| &*r.liid == liid && matches!(r.event, IriEvent::SessionBegin { .. })).count()
    };
    assert_eq!(begins("L-A"), 1, "A's flow went on across the reload");
    assert_eq!(cc_count(&s, "L-A"), 6);
}
