//! The association model and packet selection, end to end at model level: the seed case (image
//! built by the target, run by someone else), windows, underlay vs overlay, several LIIDs.

use crate::select_common;

use std::path::Path;

use select_common::*;
use tapir::select::{load_events, parse_event, AssocChange, Match, Targeting};

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/select/seed_events.jsonl");

fn ev(json: &str) -> tapir::select::AssocEvent {
    parse_event(json, "inline", 1).unwrap()
}

fn change_for<'a>(changes: &'a [AssocChange], liid: &str) -> &'a AssocChange {
    changes.iter().find(|c| &*c.liid == liid).unwrap_or_else(|| panic!("no change for {liid} in {changes:?}"))
}

fn only<'a>(m: &'a [Match], liid: &str) -> &'a Match {
    assert_eq!(liids(m), vec![liid.to_string()], "{m:?}");
    &m[0]
}

#[test]
fn seed_image_by_target_run_by_another_subscriber() {
    let mut t = Targeting::new(vec![warrant_2026("LIID-JOE", &["subscriber:joe"])]);
    let evs = load_events(Path::new(SEED)).unwrap();
    let mut changes: Vec<(String, Vec<AssocChange>)> = Vec::new();
    // vm-42's packet: VXLAN VNI 5001, inner 10.0.0.5 -> 192.0.2.80, unrelated MACs.
    let vm42 = vxlan(("192.0.2.1", "192.0.2.2"), None, 5001, ("10.0.0.5", "192.0.2.80"), Some((MAC_A, MAC_B)));
    let vm42_other_vni =
        vxlan(("192.0.2.1", "192.0.2.2"), None, 5002, ("10.0.0.5", "192.0.2.80"), Some((MAC_A, MAC_B)));
    let vm42_v6 = vxlan(("192.0.2.1", "192.0.2.2"), None, 5001, ("2001:db8::80", "fd00::5"), None);
    let vm77 = plain("198.18.0.1", "192.168.7.7", None);
    let vm99 = vxlan(("192.0.2.1", "192.0.2.2"), None, 5001, ("10.0.0.9", "192.0.2.80"), None);

    assert!(select(&t, &vm42, "2026-03-01T09:59:59Z").is_empty(), "before instance.start");
    for e in &evs {
        let c = t.apply(e);
        changes.push((e.kind.name().to_string(), c));
        if e.kind.name() == "instance.start" && changes.len() == 5 {
            // Right after vm-42 started (10:00), 30 minutes in.
            let m = select(&t, &vm42, "2026-03-01T10:30:00Z");
            let m = only(&m, "LIID-JOE");
            assert_eq!(m.provenance.selector, "vni:5001/10.0.0.5");
            assert_eq!(m.provenance.target, "subscriber:joe");
            let chain = &m.provenance.chain;
            assert_eq!(chain.len(), 2, "{chain:?}");
            assert!(chain[0].starts_with("2026-03-01T09:05:00Z image.create img-9 owner=joe"), "{chain:?}");
            assert!(
                chain[1].starts_with("2026-03-01T10:00:00Z instance.start vm-42 owner=ann image=img-9"),
                "{chain:?}"
            );
            assert!(select(&t, &vm42_other_vni, "2026-03-01T10:30:00Z").is_empty(), "same inner IP, other VNI");
            only(&select(&t, &vm42_v6, "2026-03-01T10:30:00Z"), "LIID-JOE");
        }
    }

    // The feed, in time order, and what each event did for LIID-JOE.
    let names: Vec<&str> = changes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "access.start",
            "image.create",
            "access.stop",
            "image.share",
            "instance.start",
            "image.create",
            "image.delete",
            "instance.start",
            "instance.stop",
            "instance.start",
            "instance.stop"
        ]
    );
    let c = &changes[0].1;
    assert_eq!(change_for(c, "LIID-JOE").selectors_added, vec!["ipv4:203.0.113.10"]);
    assert_eq!(change_for(&changes[2].1, "LIID-JOE").selectors_removed, vec!["ipv4:203.0.113.10"]);
    let c = change_for(&changes[1].1, "LIID-JOE");
    assert_eq!((c.what.as_str(), c.provenance.selector.as_str()), ("image.create", "image:img-9"));
    assert_eq!(c.detail["name"], "x.qcow2");
    assert!(c.detail.get("time").is_none());
    assert_eq!(change_for(&changes[3].1, "LIID-JOE").detail["visibility"], "public");
    let c = change_for(&changes[4].1, "LIID-JOE");
    assert_eq!(c.selectors_added, vec!["mac:fa:16:3e:00:00:01", "vni:5001/10.0.0.5", "vni:5001/fd00::5"]);
    assert_eq!(c.detail["instance"], "vm-42");
    assert_eq!(c.provenance.chain.len(), 2);
    // The snapshot of vm-42 and the VM bob starts from it are the target's too.
    assert_eq!(change_for(&changes[5].1, "LIID-JOE").provenance.selector, "image:img-10");
    assert_eq!(changes[6].1.len(), 1, "image.delete of a covered image is reported");
    let c = change_for(&changes[7].1, "LIID-JOE");
    assert_eq!(c.selectors_added, vec!["mac:fa:16:3e:00:00:02", "ipv4:192.168.7.7"]);
    assert_eq!(c.provenance.chain.len(), 4, "{:?}", c.provenance.chain);
    assert_eq!(
        change_for(&changes[8].1, "LIID-JOE").selectors_removed,
        vec!["mac:fa:16:3e:00:00:01", "vni:5001/10.0.0.5", "vni:5001/fd00::5"]
    );
    // vm-99 starts from img-9 after its deletion: not covered, nothing reported.
    assert!(changes[9].1.is_empty());
    assert_eq!(change_for(&changes[10].1, "LIID-JOE").selectors_removed.len(), 2);

    // After the whole feed nothing dynamic is left.
    assert!(t.selectors().is_empty(), "{:?}", t.selectors());
    assert!(select(&t, &vm42, "2026-03-01T14:30:00Z").is_empty());
    assert!(select(&t, &vm77, "2026-03-01T14:30:00Z").is_empty());
    assert!(select(&t, &vm99, "2026-03-01T14:30:00Z").is_empty());
}

#[test]
fn seed_timeline_packet_by_packet() {
    let mut t = Targeting::new(vec![warrant_2026("LIID-JOE", &["subscriber:joe"])]);
    let evs = load_events(Path::new(SEED)).unwrap();
    let vm42 = vxlan(("192.0.2.1", "192.0.2.2"), None, 5001, ("192.0.2.80", "10.0.0.5"), None);
    let vm77 = plain("192.168.7.7", "198.18.0.1", None);
    let vm99 = vxlan(("192.0.2.1", "192.0.2.2"), None, 5001, ("10.0.0.9", "192.0.2.80"), None);
    let joe_access = plain("203.0.113.10", "198.18.0.1", None);
    let apply_until = |t: &mut Targeting, until: &str| {
        for e in evs.iter().filter(|e| e.ts <= ts(until)) {
            t.apply(e);
        }
    };
    apply_until(&mut t, "2026-03-01T09:00:00Z");
    only(&select(&t, &joe_access, "2026-03-01T09:01:00Z"), "LIID-JOE");
    let mut t2 = Targeting::new(vec![warrant_2026("LIID-JOE", &["subscriber:joe"])]);
    apply_until(&mut t2, "2026-03-01T12:30:00Z");
    assert!(select(&t2, &joe_access, "2026-03-01T12:30:00Z").is_empty(), "access session closed at 09:10");
    // img-9 deleted at 11:30, vm-42 still running: still selected.
    only(&select(&t2, &vm42, "2026-03-01T12:30:00Z"), "LIID-JOE");
    let m = select(&t2, &vm77, "2026-03-01T12:30:00Z");
    let chain = &only(&m, "LIID-JOE").provenance.chain;
    assert!(chain[0].contains("image.create img-9 owner=joe"));
    assert!(chain[1].contains("instance.start vm-42 owner=ann image=img-9"));
    assert!(
        chain[2].contains("image.create img-10 owner=ann") && chain[2].contains("snapshot of covered instance vm-42")
    );
    assert!(chain[3].contains("instance.start vm-77 owner=bob image=img-10"));
    let mut t3 = Targeting::new(vec![warrant_2026("LIID-JOE", &["subscriber:joe"])]);
    apply_until(&mut t3, "2026-03-01T13:30:00Z");
    assert!(select(&t3, &vm42, "2026-03-01T13:30:00Z").is_empty(), "vm-42 stopped at 13:00");
    assert!(select(&t3, &vm99, "2026-03-01T13:30:00Z").is_empty(), "started from a deleted image");
    only(&select(&t3, &vm77, "2026-03-01T13:30:00Z"), "LIID-JOE");
}

#[test]
fn joe_own_vm_and_snapshot_of_any_covered_vm() {
    let mut t = Targeting::new(vec![warrant_2026("J", &["subscriber:joe"]), warrant_2026("V", &["vm:vm-1"])]);
    // joe's own VM, from someone else's image, on a flat network (no VNI).
    let c = t.apply(&ev(r#"{"time":"2026-02-01T00:00:00Z","event":"instance.start","instance":"vm-5","owner":"joe","image":"ubuntu","ports":[{"mac":"fa:16:3e:00:00:05","ips":["172.16.0.5"]}]}"#));
    assert_eq!(liids_of(&c), vec!["J"]);
    assert!(change_for(&c, "J").provenance.chain[0].contains("owned by target subscriber joe"));
    only(&select(&t, &plain("172.16.0.5", "8.8.8.8", None), "2026-02-01T00:00:01Z"), "J");
    // vm-1 named by warrant V belongs to dave; a snapshot of it (by dave) and a VM from that.
    t.apply(&ev(r#"{"time":"2026-02-01T00:01:00Z","event":"instance.start","instance":"vm-1","owner":"dave","ports":[{"mac":"fa:16:3e:00:00:11","ips":["10.1.0.1"],"vni":77}]}"#));
    t.apply(&ev(r#"{"time":"2026-02-01T00:02:00Z","event":"instance.stop","instance":"vm-1"}"#));
    // Snapshotting a stopped instance still derives from it.
    let c = t.apply(&ev(r#"{"time":"2026-02-01T00:03:00Z","event":"image.create","image":"snap-1","owner":"dave","from_instance":"vm-1"}"#));
    assert_eq!(liids_of(&c), vec!["V"]);
    let c = t.apply(&ev(r#"{"time":"2026-02-01T00:04:00Z","event":"image.create","image":"copy-1","owner":"erin","from_image":"snap-1"}"#));
    assert_eq!(liids_of(&c), vec!["V"]);
    t.apply(&ev(r#"{"time":"2026-02-01T00:05:00Z","event":"instance.start","instance":"vm-2","owner":"erin","image":"copy-1","ports":[{"mac":"fa:16:3e:00:00:12","ips":["10.1.0.2"],"vni":77}]}"#));
    let m = select(
        &t,
        &vxlan(("192.0.2.1", "192.0.2.2"), None, 77, ("10.1.0.9", "10.1.0.2"), None),
        "2026-02-01T00:06:00Z",
    );
    let p = &only(&m, "V").provenance;
    assert_eq!(p.target, "vm:vm-1");
    assert_eq!(p.chain.len(), 4, "{:?}", p.chain);
    // joe's image, snapshotted from his VM, launched by others.
    let c = t.apply(&ev(r#"{"time":"2026-02-01T00:07:00Z","event":"image.create","image":"snap-5","owner":"joe","from_instance":"vm-5"}"#));
    assert_eq!(liids_of(&c), vec!["J"]);
}

fn liids_of(c: &[AssocChange]) -> Vec<&str> {
    c.iter().map(|c| &*c.liid).collect()
}

#[test]
fn window_is_half_open() {
    let w = warrant("W", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", &["ipv4:198.51.100.7"]);
    let t = Targeting::new(vec![w]);
    let d = plain("198.51.100.7", "192.0.2.1", None);
    assert!(select(&t, &d, "2025-12-31T23:59:59.999999999Z").is_empty(), "1 ns before start");
    only(&select(&t, &d, "2026-01-01T00:00:00Z"), "W");
    only(&select(&t, &d, "2026-01-31T23:59:59.999999999Z"), "W");
    assert!(select(&t, &d, "2026-02-01T00:00:00Z").is_empty(), "at end");
}

#[test]
fn association_changes_only_inside_the_window() {
    let w = warrant("W", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", &["subscriber:joe"]);
    let mut t = Targeting::new(vec![w]);
    let start = r#"{"time":"2025-12-31T23:00:00Z","event":"instance.start","instance":"v","owner":"joe","ports":[{"mac":"fa:16:3e:00:00:01","ips":["10.0.0.1"]}]}"#;
    assert!(t.apply(&ev(start)).is_empty(), "before the window: tracked, not reported");
    let d = plain("10.0.0.1", "192.0.2.1", None);
    assert!(select(&t, &d, "2025-12-31T23:30:00Z").is_empty());
    // The VM that started before the window is selected once the window opens.
    only(&select(&t, &d, "2026-01-01T00:00:00Z"), "W");
    let stop = r#"{"time":"2026-01-15T00:00:00Z","event":"instance.stop","instance":"v"}"#;
    assert_eq!(t.apply(&ev(stop))[0].selectors_removed, vec!["mac:fa:16:3e:00:00:01", "ipv4:10.0.0.1"]);
}

#[test]
fn plain_selectors_match_underlay_and_overlay_vni_selectors_only_inside() {
    let t = Targeting::new(vec![warrant_2026(
        "W",
        &["ipv4:198.51.100.7", "ipv6:2001:db8::7", "mac:02:00:00:00:00:07", "cidr:10.9.0.0/24", "vni:5001/10.0.0.5"],
    )]);
    let now = "2026-06-01T00:00:00Z";
    let target_mac = [2, 0, 0, 0, 0, 7];
    let hit = |d: &tapir::decode::Decoded<'_>| select(&t, d, now).first().map(|m| m.provenance.selector.clone());
    // Underlay, either direction.
    assert_eq!(hit(&plain("198.51.100.7", "192.0.2.1", None)).as_deref(), Some("ipv4:198.51.100.7"));
    assert_eq!(hit(&plain("192.0.2.1", "2001:db8::7", None)).as_deref(), Some("ipv6:2001:db8::7"));
    // Inside an overlay (any VNI), and as the tunnel's outer address.
    assert_eq!(
        hit(&vxlan(("192.0.2.1", "192.0.2.2"), None, 1234, ("172.16.0.1", "198.51.100.7"), None)).as_deref(),
        Some("ipv4:198.51.100.7")
    );
    assert_eq!(
        hit(&vxlan(("198.51.100.7", "192.0.2.2"), None, 1234, ("172.16.0.1", "172.16.0.2"), None)).as_deref(),
        Some("ipv4:198.51.100.7")
    );
    // MACs: inner and outer, either direction.
    assert_eq!(
        hit(&plain("192.0.2.1", "192.0.2.2", Some((MAC_A, target_mac)))).as_deref(),
        Some("mac:02:00:00:00:00:07")
    );
    assert_eq!(
        hit(&vxlan(
            ("192.0.2.1", "192.0.2.2"),
            Some((target_mac, MAC_B)),
            9,
            ("172.16.0.1", "172.16.0.2"),
            Some((MAC_A, MAC_B))
        ))
        .as_deref(),
        Some("mac:02:00:00:00:00:07")
    );
    // CIDR: inner and outer; the network's neighbour does not match.
    assert_eq!(hit(&plain("192.0.2.1", "10.9.0.255", None)).as_deref(), Some("cidr:10.9.0.0/24"));
    assert_eq!(
        hit(&vxlan(("10.9.0.1", "192.0.2.2"), None, 9, ("172.16.0.1", "172.16.0.2"), None)).as_deref(),
        Some("cidr:10.9.0.0/24")
    );
    assert_eq!(hit(&plain("192.0.2.1", "10.9.1.0", None)), None);
    // VNI-scoped: only as an inner address in that VNI.
    assert_eq!(
        hit(&vxlan(("192.0.2.1", "192.0.2.2"), None, 5001, ("172.16.0.1", "10.0.0.5"), None)).as_deref(),
        Some("vni:5001/10.0.0.5")
    );
    assert_eq!(hit(&vxlan(("192.0.2.1", "192.0.2.2"), None, 5002, ("172.16.0.1", "10.0.0.5"), None)), None);
    assert_eq!(hit(&plain("10.0.0.5", "192.0.2.1", None)), None, "underlay 10.0.0.5 is someone else");
    assert_eq!(hit(&vxlan(("10.0.0.5", "192.0.2.2"), None, 5001, ("172.16.0.1", "172.16.0.2"), None)), None, "outer");
    // Nested tunnels: the innermost VNI is the zone.
    let mut nested = vxlan(("192.0.2.1", "192.0.2.2"), None, 5001, ("172.16.0.1", "10.0.0.5"), None);
    nested.overlay.tunnels.push(tapir::decode::Tunnel {
        kind: tapir::decode::TunnelKind::Geneve,
        outer_src: ip("192.0.2.3"),
        outer_dst: ip("192.0.2.4"),
        outer_mac: None,
        vni: Some(6000),
    });
    assert_eq!(hit(&nested), None);
    // Nothing at all.
    assert_eq!(hit(&plain("192.0.2.1", "192.0.2.2", Some((MAC_A, MAC_B)))), None);
}

#[test]
fn several_liids_on_one_packet_each_once() {
    let mut t = Targeting::new(vec![
        warrant_2026("A", &["ipv4:198.51.100.7", "cidr:198.51.100.0/24"]),
        warrant_2026("B", &["cidr:198.51.100.0/24"]),
        warrant_2026("C", &["subscriber:joe"]),
        warrant("D", "2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z", &["ipv4:198.51.100.7"]),
        warrant_2026("E", &["ipv4:192.0.2.99"]),
    ]);
    let c = t
        .apply(&ev(r#"{"time":"2026-03-01T00:00:00Z","event":"access.start","subscriber":"joe","ip":"198.51.100.7"}"#));
    assert_eq!(liids_of(&c), vec!["C"]);
    let d = plain("192.0.2.1", "198.51.100.7", None);
    let mut out: smallvec::SmallVec<[Match; 2]> = smallvec::SmallVec::new();
    // Matches are appended after what the caller already holds, and deduplicated only among
    // the appended ones.
    let pre = select(&Targeting::new(vec![warrant_2026("A", &["ipv4:192.0.2.1"])]), &d, "2026-03-01T01:00:00Z");
    out.extend(pre);
    t.select(&d, ts("2026-03-01T01:00:00Z"), &mut out);
    assert_eq!(liids(&out), vec!["A", "A", "C", "B"]);
    // A matched through its address before its CIDR: the first selector gives the provenance.
    assert_eq!(out[1].provenance.selector, "ipv4:198.51.100.7");
    assert_eq!(out[2].provenance.chain[0], "2026-03-01T00:00:00Z access.start subscriber=joe ip=198.51.100.7");
    // Ending the session leaves the other warrants' static selectors alone.
    t.apply(&ev(r#"{"time":"2026-03-01T02:00:00Z","event":"access.stop","subscriber":"joe","ip":"198.51.100.7"}"#));
    assert_eq!(liids(&select(&t, &d, "2026-03-01T03:00:00Z")), vec!["A", "B"]);
}

#[test]
fn image_sha256_covers_images_with_that_hash_and_their_vms() {
    // sha256 of the bytes `x.qcow2 content` (sha256sum).
    let h = "af670e1aa76b3f05f47151dceed7a01991eef70c02d1530409b7dfae4f2e9d6c";
    let mut t =
        Targeting::new(vec![warrant_2026("H", &[&format!("image-sha256:{h}")]), warrant_2026("I", &["image:img-x"])]);
    let other = "0000000000000000000000000000000000000000000000000000000000000000";
    let c = t.apply(&ev(&format!(
        r#"{{"time":"2026-03-01T00:00:00Z","event":"image.create","image":"img-o","owner":"bob","sha256":"{other}"}}"#
    )));
    assert!(c.is_empty());
    let c = t.apply(&ev(&format!(
        r#"{{"time":"2026-03-01T00:01:00Z","event":"image.create","image":"img-5","owner":"bob","sha256":"{h}"}}"#
    )));
    assert_eq!(liids_of(&c), vec!["H"]);
    t.apply(&ev(r#"{"time":"2026-03-01T00:02:00Z","event":"instance.start","instance":"vm-o","owner":"carol","image":"img-o","ports":[{"mac":"fa:16:3e:00:00:20","ips":["10.0.0.20"],"vni":1}]}"#));
    t.apply(&ev(r#"{"time":"2026-03-01T00:03:00Z","event":"instance.start","instance":"vm-5","owner":"carol","image":"img-5","ports":[{"mac":"fa:16:3e:00:00:21","ips":["10.0.0.21"],"vni":1}]}"#));
    // image:X covers VMs from X even without an image.create in the feed.
    t.apply(&ev(r#"{"time":"2026-03-01T00:04:00Z","event":"instance.start","instance":"vm-x","owner":"carol","image":"img-x","ports":[{"mac":"fa:16:3e:00:00:22","ips":["10.0.0.22"],"vni":1}]}"#));
    let at = |inner: &str| {
        select(&t, &vxlan(("192.0.2.1", "192.0.2.2"), None, 1, (inner, "192.0.2.80"), None), "2026-03-01T01:00:00Z")
    };
    assert!(at("10.0.0.20").is_empty());
    let m = at("10.0.0.21");
    let p = &only(&m, "H").provenance;
    assert_eq!(p.target, format!("image-sha256:{h}"));
    assert!(p.chain[0].contains("image.create img-5 owner=bob"));
    assert_eq!(only(&at("10.0.0.22"), "I").provenance.target, "image:img-x");
}

#[test]
fn email_targets_are_queryable_and_select_no_packets() {
    let t = Targeting::new(vec![
        warrant_2026("M", &["email:joe@example.net", "email:j2@example.net"]),
        warrant_2026("N", &["vm:x"]),
    ]);
    assert_eq!(t.email_targets("M"), vec!["joe@example.net", "j2@example.net"]);
    assert!(t.email_targets("N").is_empty());
    assert!(t.selectors().is_empty());
    let mut out = smallvec::SmallVec::new();
    t.select_email("Joe@Example.NET", ts("2026-05-01T00:00:00Z"), &mut out);
    assert_eq!(liids(&out), vec!["M"]);
    out.clear();
    t.select_email("joe@example.net", ts("2027-05-01T00:00:00Z"), &mut out);
    assert!(out.is_empty(), "outside the window");
}

#[test]
fn restart_of_a_running_instance_replaces_its_ports() {
    let mut t = Targeting::new(vec![warrant_2026("V", &["vm:v"])]);
    t.apply(&ev(r#"{"time":"2026-03-01T00:00:00Z","event":"instance.start","instance":"v","owner":"o","ports":[{"mac":"fa:16:3e:00:00:01","ips":["10.0.0.1"]}]}"#));
    let c = t.apply(&ev(r#"{"time":"2026-03-01T00:01:00Z","event":"instance.start","instance":"v","owner":"o","ports":[{"mac":"fa:16:3e:00:00:01","ips":["10.0.0.2"]}]}"#));
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].selectors_removed, vec!["mac:fa:16:3e:00:00:01", "ipv4:10.0.0.1"]);
    assert_eq!(c[0].selectors_added, vec!["mac:fa:16:3e:00:00:01", "ipv4:10.0.0.2"]);
    let sel: Vec<String> = t.selectors().into_iter().map(|(_, s)| s).collect();
    assert_eq!(sel, vec!["ipv4:10.0.0.2", "mac:fa:16:3e:00:00:01"]);
}

#[test]
fn association_change_serializes_for_iri() {
    let mut t = Targeting::new(vec![warrant_2026("J", &["subscriber:joe"])]);
    let c = t
        .apply(&ev(r#"{"time":"2026-03-01T00:00:00Z","event":"access.start","subscriber":"joe","ip":"198.51.100.7"}"#));
    let v = serde_json::to_value(&c[0]).unwrap();
    assert_eq!(v["liid"], "J");
    assert_eq!(v["ts"], "2026-03-01T00:00:00.000000000Z");
    assert_eq!(v["what"], "access.start");
    assert_eq!(v["detail"], serde_json::json!({"subscriber":"joe","ip":"198.51.100.7"}));
    assert_eq!(v["provenance"]["target"], "subscriber:joe");
}

/// An access session given a prefix (RADIUS Delegated-IPv6-Prefix, or `"prefix"` in the feed):
/// every address in it is the subscriber's while the session lasts, none outside it, and a
/// prefix wider than one subscriber's is refused with the line named.
#[test]
fn a_delegated_prefix_selects_every_address_in_it_until_the_session_stops() {
    let mut t = Targeting::new(vec![warrant_2026("LIID-JOE", &["subscriber:joe"])]);
    let start =
        r#"{"time":"2026-03-01T09:00:00Z","event":"access.start","subscriber":"joe","prefix":"2001:db8:ff00::/56"}"#;
    let changes = t.apply(&ev(start));
    let c = change_for(&changes, "LIID-JOE");
    assert_eq!(c.selectors_added, vec!["cidr:2001:db8:ff00::/56".to_string()]);
    let inside = plain("2001:db8:ff00:12::5", "2001:db8:1::80", None);
    let last = plain("2001:db8:1::80", "2001:db8:ff00:ff:ffff:ffff:ffff:ffff", None);
    let outside = plain("2001:db8:ff01::5", "2001:db8:1::80", None);
    let m = select(&t, &inside, "2026-03-01T09:30:00Z");
    let m = only(&m, "LIID-JOE");
    assert_eq!(m.provenance.selector, "cidr:2001:db8:ff00::/56");
    assert_eq!(m.provenance.target, "subscriber:joe");
    assert!(m.provenance.chain[0].ends_with("access.start subscriber=joe prefix=2001:db8:ff00::/56"), "{m:?}");
    only(&select(&t, &last, "2026-03-01T09:30:00Z"), "LIID-JOE");
    assert!(select(&t, &outside, "2026-03-01T09:30:00Z").is_empty(), "the next /56 is someone else's");

    let stop =
        r#"{"time":"2026-03-01T10:00:00Z","event":"access.stop","subscriber":"joe","prefix":"2001:db8:ff00::/56"}"#;
    let changes = t.apply(&ev(stop));
    assert_eq!(change_for(&changes, "LIID-JOE").selectors_removed, vec!["cidr:2001:db8:ff00::/56".to_string()]);
    assert!(select(&t, &inside, "2026-03-01T10:30:00Z").is_empty(), "after access.stop");

    for (bad, why) in [
        (
            r#"{"time":"2026-03-01T09:00:00Z","event":"access.start","subscriber":"joe","prefix":"2001:db8::/16"}"#,
            "wider",
        ),
        (r#"{"time":"2026-03-01T09:00:00Z","event":"access.start","subscriber":"joe","prefix":"10.0.0.0/8"}"#, "wider"),
        (
            r#"{"time":"2026-03-01T09:00:00Z","event":"access.start","subscriber":"joe","prefix":"2001:db8::"}"#,
            "prefix",
        ),
        (
            r#"{"time":"2026-03-01T09:00:00Z","event":"access.start","subscriber":"joe","ip":"10.0.0.1","prefix":"10.0.0.0/24"}"#,
            "not both",
        ),
    ] {
        let e = parse_event(bad, "feed", 7).unwrap_err().to_string();
        assert!(e.starts_with("feed:7:") && e.contains(why), "{e}");
    }
}

/// An instance with 100 000 ports starts (and stops) in linear time: its selectors were
/// deduplicated by comparing each with every earlier one (an 80 000-port start took 5.9 s in a
/// release build, 300 000 over a minute). The bound is generous: it catches a quadratic cost.
#[test]
fn an_instance_with_a_hundred_thousand_ports_starts_in_linear_time() {
    let ports: Vec<String> = (0..100_000u32)
        .map(|i| {
            let (a, b, c) = (i >> 16, (i >> 8) & 255, i & 255);
            format!(r#"{{"mac":"fa:16:3e:{a:02x}:{b:02x}:{c:02x}","ips":["10.{a}.{b}.{c}"]}}"#)
        })
        .collect();
    let start = ev(&format!(
        r#"{{"time":"2026-06-01T00:00:00Z","event":"instance.start","instance":"vm-1","owner":"joe","ports":[{}]}}"#,
        ports.join(",")
    ));
    let stop = ev(r#"{"time":"2026-06-02T00:00:00Z","event":"instance.stop","instance":"vm-1"}"#);
    let mut t = Targeting::new(vec![warrant_2026("L", &["subscriber:joe"])]);
    let clock = std::time::Instant::now();
    let changes = t.apply(&start);
    assert_eq!(change_for(&changes, "L").selectors_added.len(), 200_000, "a MAC and an address per port");
    let changes = t.apply(&stop);
    assert_eq!(change_for(&changes, "L").selectors_removed.len(), 200_000);
    let secs = clock.elapsed().as_secs_f64();
    assert!(secs < 20.0, "{secs:.1} s");
}
