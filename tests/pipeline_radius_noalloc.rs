//! Looking for RADIUS accounting on every packet costs no allocation: non-target frames through
//! `Pipeline::frame`, Accounting-Responses on ports 1813 and 1646 included, allocate nothing. A
//! counting global allocator proves it (one test in this file, so no other thread allocates while
//! it counts).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tapir::capture::{Frame, LinkType};
use tapir::decode::DecodeConfig;
use tapir::flow::FlowConfig;
use tapir::pipeline::Pipeline;
use tapir::record::VecSink;
use tapir::select::parse_warrants;
use tapir::timestamp::Timestamp;

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

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = (28 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn non_target_frames_and_radius_responses_allocate_nothing() {
    let w = parse_warrants(
        "[[warrant]]\nliid = \"L\"\nstart = \"2027-01-01T00:00:00Z\"\nend = \"2027-02-01T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [\"subscriber:joe\"]\n",
        "t",
    )
    .unwrap();
    let mut p = Pipeline::new(w.warrants, Vec::new(), DecodeConfig::default(), FlowConfig::default());
    p.keep_radius_events(true);
    let mut sink = VecSink::default();
    // RFC 2866 Accounting-Response: code 5, id 1, length 20, authenticator.
    let mut response = vec![5u8, 1, 0, 20];
    response.extend_from_slice(&[7; 16]);
    let frames = [
        udp([10, 9, 0, 1], [10, 9, 0, 2], 4000, 5000, b"not a target"),
        udp([10, 8, 0, 2], [10, 8, 0, 1], 1813, 32000, &response),
        udp([10, 8, 0, 2], [10, 8, 0, 1], 1646, 32000, &response),
        udp([10, 9, 0, 1], [10, 9, 0, 3], 53, 5353, b"dns-ish"),
    ];
    let t0 = Timestamp::from_secs(1_800_000_000);
    let run = |p: &mut Pipeline, sink: &mut VecSink, base_ms: i64| {
        for i in 0..200i64 {
            for f in &frames {
                let fr = Frame {
                    ts: t0.add_nanos((base_ms + i) * 1_000_000 / 2),
                    link: LinkType::Ethernet,
                    data: f,
                    orig_len: f.len() as u32,
                };
                p.frame(&fr, sink);
            }
        }
    };
    run(&mut p, &mut sink, 0);
    COUNTING.store(true, Ordering::SeqCst);
    // Within the same second of capture time as the warm-up's last tick.
    run(&mut p, &mut sink, 200);
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(ALLOCS.load(Ordering::SeqCst), 0, "allocations on the non-target path");
    assert_eq!(p.summary.frames, 1600);
    assert_eq!(p.summary.matched_frames, 0);
    assert_eq!(p.summary.radius_events, 0);
    assert!(p.take_radius_events().is_empty());
}
