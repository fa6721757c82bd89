//! The hot path: selecting a packet that belongs to no warrant allocates nothing. A counting
//! global allocator proves it (this file holds a single test, so no other thread allocates
//! while it counts).

// The helpers of tests/it.rs; this binary uses a few.
#[allow(dead_code)]
mod select_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use select_common::*;
use smallvec::SmallVec;
use tapir::select::{parse_event, Match, Targeting};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn non_target_packets_allocate_nothing() {
    let mut t = Targeting::new(vec![
        warrant_2026("A", &["ipv4:198.51.100.7", "mac:02:00:00:00:00:07", "cidr:10.9.0.0/24", "vni:5001/10.0.0.5"]),
        warrant_2026("B", &["subscriber:joe", "email:joe@example.net"]),
    ]);
    let e = parse_event(
        r#"{"time":"2026-03-01T00:00:00Z","event":"instance.start","instance":"v","owner":"joe","ports":[{"mac":"fa:16:3e:00:00:01","ips":["10.0.0.7"],"vni":5001}]}"#,
        "inline",
        1,
    )
    .unwrap();
    t.apply(&e);
    let misses = [
        plain("192.0.2.1", "192.0.2.2", Some((MAC_A, MAC_B))),
        plain("2001:db8::1", "2001:db8::2", None),
        vxlan(("192.0.2.1", "192.0.2.2"), Some((MAC_A, MAC_B)), 5002, ("10.0.0.5", "10.0.0.7"), Some((MAC_A, MAC_B))),
        vxlan(("192.0.2.1", "192.0.2.2"), None, 5001, ("10.0.0.8", "10.9.1.1"), None),
    ];
    let hit = vxlan(("192.0.2.1", "192.0.2.2"), None, 5001, ("10.0.0.7", "192.0.2.80"), None);
    let now = ts("2026-03-01T01:00:00Z");
    let mut out: SmallVec<[Match; 2]> = SmallVec::new();

    COUNTING.store(true, Ordering::SeqCst);
    for _ in 0..1000 {
        for d in &misses {
            t.select(d, now, &mut out);
        }
    }
    COUNTING.store(false, Ordering::SeqCst);
    assert!(out.is_empty());
    assert_eq!(ALLOCS.load(Ordering::SeqCst), 0, "allocations while selecting non-target packets");

    // The same table does select the target's packet (so the misses were not vacuous).
    t.select(&hit, now, &mut out);
    assert_eq!(liids(&out), vec!["B"]);
}
