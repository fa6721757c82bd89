//! The identity-association feed: typed events from JSON lines, sorted by time, and errors that
//! name the line.

use std::path::Path;

use tapir::select::{load_events, parse_events, AssocEventKind, EventError, Port};
use tapir::timestamp::Timestamp;

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/select/seed_events.jsonl");

#[test]
fn seed_feed_parses_and_sorts_by_time() {
    let evs = load_events(Path::new(SEED)).unwrap();
    assert_eq!(evs.len(), 11, "the blank line is skipped");
    // Line 4 (access.stop, 09:10) precedes line 3 (image.share, 09:20) once sorted.
    let lines: Vec<usize> = evs.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![1, 2, 4, 3, 6, 7, 8, 9, 10, 11, 12]);
    assert!(evs.windows(2).all(|w| w[0].ts <= w[1].ts));
    // `date -u -d 2026-03-01T09:10:00+00:00 +%s` = 1772356200
    assert_eq!(evs[2].ts, Timestamp::from_secs(1_772_356_200));

    match &evs[1].kind {
        AssocEventKind::ImageCreate { image, owner, name, sha256, md5, sha512, from_instance, from_image } => {
            assert_eq!((image.as_str(), owner.as_str()), ("img-9", "joe"));
            assert_eq!(name.as_deref(), Some("x.qcow2"));
            // Digests of the bytes `x.qcow2 content` from sha256sum / md5sum / sha512sum.
            assert_eq!(
                hex::encode(sha256.unwrap()),
                "af670e1aa76b3f05f47151dceed7a01991eef70c02d1530409b7dfae4f2e9d6c"
            );
            assert_eq!(hex::encode(md5.unwrap()), "55c0e0e3d06f63a54f2307f95386350b");
            assert!(hex::encode(sha512.unwrap()).starts_with("2602b82b093a355c"));
            assert_eq!(*from_instance, None);
            assert_eq!(*from_image, None);
        }
        other => panic!("{other:?}"),
    }
    match &evs[4].kind {
        AssocEventKind::InstanceStart { instance, owner, image, ports } => {
            assert_eq!(instance, "vm-42");
            assert_eq!(owner, "ann");
            assert_eq!(image.as_deref(), Some("img-9"));
            assert_eq!(
                ports,
                &vec![Port {
                    mac: [0xfa, 0x16, 0x3e, 0, 0, 1],
                    ips: vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()],
                    vni: Some(5001)
                }]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&evs[5].kind, AssocEventKind::ImageCreate { from_instance: Some(v), .. } if v == "vm-42"));
    assert!(matches!(&evs[7].kind, AssocEventKind::InstanceStart { ports, .. } if ports[0].vni.is_none()));
    assert_eq!(evs[9].raw["extra"]["flavor"], "m1.small", "raw keeps unknown keys");
}

#[test]
fn equal_times_keep_file_order() {
    let text = r#"{"time":"2026-03-01T10:00:00Z","event":"instance.stop","instance":"b"}
{"time":"2026-03-01T09:00:00Z","event":"instance.stop","instance":"z"}
{"time":"2026-03-01T10:00:00Z","event":"instance.stop","instance":"a"}
{"time":"2026-03-01T12:00:00+02:00","event":"instance.stop","instance":"c"}"#;
    let evs = parse_events(text, "f").unwrap();
    let ids: Vec<&str> = evs
        .iter()
        .map(|e| match &e.kind {
            AssocEventKind::InstanceStop { instance } => instance.as_str(),
            _ => "",
        })
        .collect();
    assert_eq!(ids, vec!["z", "b", "a", "c"]);
}

#[test]
fn errors_name_the_line_and_field() {
    let ok = r#"{"time":"2026-03-01T10:00:00Z","event":"instance.stop","instance":"vm-1"}"#;
    let cases: Vec<(&str, &str)> = vec![
        ("{not json", "not a JSON object"),
        ("[1,2]", "expected an object"),
        (r#"{"event":"instance.stop","instance":"a"}"#, "missing field \"time\""),
        (r#"{"time":"yesterday","event":"instance.stop","instance":"a"}"#, "bad \"time\""),
        (r#"{"time":"2026-03-01T10:00:00","event":"instance.stop","instance":"a"}"#, "bad \"time\""),
        (r#"{"time":"2026-03-01T10:00:00Z","instance":"a"}"#, "missing field \"event\""),
        (
            r#"{"time":"2026-03-01T10:00:00Z","event":"instance.reboot","instance":"a"}"#,
            "unknown event \"instance.reboot\"",
        ),
        (r#"{"time":"2026-03-01T10:00:00Z","event":"instance.stop"}"#, "missing field \"instance\""),
        (r#"{"time":"2026-03-01T10:00:00Z","event":"instance.stop","instance":""}"#, "bad \"instance\""),
        (r#"{"time":"2026-03-01T10:00:00Z","event":"instance.stop","instance":7}"#, "bad \"instance\""),
        (r#"{"time":"2026-03-01T10:00:00Z","event":"access.start","subscriber":"joe","ip":"1.2.3"}"#, "bad \"ip\""),
        (
            r#"{"time":"2026-03-01T10:00:00Z","event":"image.create","image":"i","owner":"o","sha256":"abcd"}"#,
            "bad \"sha256\"",
        ),
        (r#"{"time":"2026-03-01T10:00:00Z","event":"image.create","image":"i","owner":"o","md5":"zz"}"#, "bad \"md5\""),
        (
            r#"{"time":"2026-03-01T10:00:00Z","event":"instance.start","instance":"v","owner":"o","ports":{}}"#,
            "bad \"ports\"",
        ),
        (
            r#"{"time":"2026-03-01T10:00:00Z","event":"instance.start","instance":"v","owner":"o","ports":[{"ips":[]}]}"#,
            "missing field \"ports[].mac\"",
        ),
        (
            r#"{"time":"2026-03-01T10:00:00Z","event":"instance.start","instance":"v","owner":"o","ports":[{"mac":"fa:16:3e:00:00"}]}"#,
            "bad \"ports[].mac\"",
        ),
        (
            r#"{"time":"2026-03-01T10:00:00Z","event":"instance.start","instance":"v","owner":"o","ports":[{"mac":"fa:16:3e:00:00:01","ips":["x"]}]}"#,
            "bad \"ports[].ips\"",
        ),
        (
            r#"{"time":"2026-03-01T10:00:00Z","event":"instance.start","instance":"v","owner":"o","ports":[{"mac":"fa:16:3e:00:00:01","vni":4294967296}]}"#,
            "bad \"ports[].vni\"",
        ),
        (
            r#"{"time":"2026-03-01T10:00:00Z","event":"instance.start","instance":"v","owner":"o","ports":[{"mac":"fa:16:3e:00:00:01","vni":-1}]}"#,
            "bad \"ports[].vni\"",
        ),
    ];
    for (bad, needle) in cases {
        // The bad line is line 4, after two good lines and a blank one.
        let text = format!("{ok}\n\n{ok}\n{bad}\n{ok}\n");
        let e = parse_events(&text, "feed.jsonl").unwrap_err();
        assert_eq!(e.line(), 4, "{e}");
        let msg = e.to_string();
        assert!(msg.starts_with("feed.jsonl:4: "), "{msg}");
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }
    assert!(matches!(load_events(Path::new("/nonexistent.jsonl")), Err(EventError::Io { .. })));
}
