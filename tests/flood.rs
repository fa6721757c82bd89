//! Floods through the whole pipeline: memory stays bounded and every bound that is hit is counted
//! (evictions, memory-bound flushes turned into gaps), never a silent loss or unbounded growth.

use crate::common;
use etherparse::PacketBuilder;
use tapir::capture::{Frame, LinkType};
use tapir::decode::DecodeConfig;
use tapir::flow::FlowConfig;
use tapir::pipeline::Pipeline;
use tapir::record::{Record, RecordSink};
use tapir::select::parse_warrants;
use tapir::timestamp::Timestamp;

/// Counts records and the bytes of object data, keeps nothing.
#[derive(Default)]
struct Counting {
    cc: u64,
    iri_end: u64,
    object_data: u64,
    object_gap: u64,
    objects: u64,
}

impl RecordSink for Counting {
    fn record(&mut self, rec: Record<'_>) {
        match rec {
            Record::Cc(_) => self.cc += 1,
            Record::Iri(r) => {
                if matches!(r.event, tapir::record::IriEvent::SessionEnd { .. }) {
                    self.iri_end += 1
                }
            }
            Record::ObjectData { data, .. } => self.object_data += data.len() as u64,
            Record::ObjectGap { len, .. } => self.object_gap += len,
            Record::ObjectEnd(..) => self.objects += 1,
            Record::ObjectBegin { .. } | Record::SessionClosed { .. } => {}
        }
    }
}

fn pipeline(flow: FlowConfig) -> Pipeline {
    let w = parse_warrants(
        "[[warrant]]\nliid = \"FLOOD\"\nstart = \"2000-01-01T00:00:00Z\"\nend = \"2100-01-01T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [\"ipv4:198.51.100.7\"]\n",
        "w.toml",
    )
    .unwrap();
    Pipeline::new(w.warrants, Vec::new(), DecodeConfig::default(), flow)
}

fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, seq: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
    let mut b =
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src, dst, 64).tcp(sport, 80, seq, 65535);
    if syn {
        b = b.syn();
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

#[test]
fn a_syn_flood_from_the_target_keeps_the_flow_table_bounded() {
    let cfg = FlowConfig { max_flows: 1000, ..FlowConfig::default() };
    let mut p = pipeline(cfg);
    let mut sink = Counting::default();
    let n = 50_000u32;
    for i in 0..n {
        let f = tcp([198, 51, 100, 7], [203, 0, 113, (i % 250) as u8], 1024 + (i % 60000) as u16, i, true, &[]);
        let frame = Frame {
            ts: Timestamp::from_secs(1_767_225_600 + i as i64 / 1000),
            link: LinkType::Ethernet,
            data: &f,
            orig_len: f.len() as u32,
        };
        p.frame(&frame, &mut sink);
        assert!(p.flows().stats().active <= 1000);
    }
    let st = p.flows().stats().clone();
    assert_eq!(sink.cc, n as u64, "every target packet is still delivered as CC");
    assert!(st.evictions > 40_000, "evictions are counted: {}", st.evictions);
    p.finish(&mut sink);
    // Every session that began also ended, evicted or not.
    assert_eq!(sink.iri_end, p.flows().stats().created);
}

#[test]
fn endless_out_of_order_segments_are_flushed_as_gaps_within_the_bound() {
    let per_dir = 256 * 1024;
    let cfg = FlowConfig { per_direction_buffer: per_dir, global_buffer: 1 << 20, ..FlowConfig::default() };
    let mut p = pipeline(cfg);
    let mut sink = Counting::default();
    let payload = [0x41u8; 1000];
    let t0 = 1_767_225_600;
    let syn = tcp([198, 51, 100, 7], [203, 0, 113, 1], 5555, 1000, true, &[]);
    p.frame(
        &Frame { ts: Timestamp::from_secs(t0), link: LinkType::Ethernet, data: &syn, orig_len: syn.len() as u32 },
        &mut sink,
    );
    // The byte right after the SYN never comes; 20 MB arrive behind the hole.
    let segments = 20_000u32;
    for i in 0..segments {
        let seq = 1001 + 1 + i * 1000;
        let f = tcp([198, 51, 100, 7], [203, 0, 113, 1], 5555, seq, false, &payload);
        p.frame(
            &Frame { ts: Timestamp::from_secs(t0), link: LinkType::Ethernet, data: &f, orig_len: f.len() as u32 },
            &mut sink,
        );
        assert!(p.flows().stats().tcp.buffered <= per_dir, "buffered {}", p.flows().stats().tcp.buffered);
    }
    let st = p.flows().stats().clone();
    assert!(st.tcp.bound_flushes > 0, "the bound was hit and counted");
    assert!(st.tcp.buffered_peak <= per_dir);
    p.finish(&mut sink);
    // Nothing vanished: every byte is either delivered or declared a gap.
    assert_eq!(sink.object_data + sink.object_gap, 1 + segments as u64 * 1000);
    assert_eq!(sink.object_data, segments as u64 * 1000);
}

/// Flows that never get past their SYN (a scan, a flood) cost their table slot and index entry,
/// not the assemblers and the analyzer a connection with data needs: the peak RSS of a replay
/// (GNU time) grows by less than 600 bytes a flow from 20,000 to 120,000 such flows, all held
/// (before the lazy state it was about 1,100).
#[test]
fn a_flow_held_after_its_syn_costs_under_600_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.toml");
    std::fs::write(
        &w,
        "[[warrant]]\nliid = \"FLOOD\"\nstart = \"2000-01-01T00:00:00Z\"\nend = \"2100-01-01T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [\"ipv4:198.51.100.7\"]\n",
    )
    .unwrap();
    let peak_kib = |n: u32| {
        let pcap = dir.path().join(format!("syn-{n}.pcap"));
        let frames: Vec<(u32, u32, Vec<u8>)> = (0..n)
            .map(|i| {
                let dst = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
                (i / 100_000, i % 100_000 * 10, tcp([198, 51, 100, 7], dst, 40_000, i, true, &[]))
            })
            .collect();
        common::write_pcap(&pcap, &frames);
        let mut cmd = std::process::Command::new(common::TAPIR);
        cmd.args(["replay", "-q", "--max-flows", "262144", "--warrants"]).arg(&w).arg("--out");
        cmd.arg(dir.path().join(format!("case-{n}"))).arg(&pcap);
        let (out, kib) = common::output_and_peak_rss_kib(&cmd);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(&format!("{n} at end of input")) && said.contains(" 0 evicted"), "all held: {said}");
        kib
    };
    let (small, large) = (peak_kib(20_000), peak_kib(120_000));
    let per_flow = (large - small) * 1024 / 100_000;
    eprintln!("peak RSS {small} KiB at 20,000 flows, {large} KiB at 120,000: {per_flow} bytes a flow");
    assert!(per_flow < 600, "{per_flow} bytes a flow ({small} KiB at 20,000 flows, {large} KiB at 120,000)");
}
