//! The integration tests, one module per file beside this one, linked into one test binary. Each
//! file used to be a test crate of its own: ~80 binaries, each linking the library, and the
//! shared helpers compiled again into many of them.
//!
//! Tests of different files run in parallel threads of one process, so none may take what the
//! others use: fixed ports (`common::free_port` gives each port once per process), namespace and
//! interface names (the `ip netns` labs put the process id and a per-test tag in theirs), the
//! working directory or the environment (no test changes them), the process's figures for its
//! children (`common::output_and_peak_rss_kib` measures one child). A test that re-runs this
//! binary for one of its tests names it with its module (`lemf_kill::lemf_child`). One file's
//! tests: `cargo test --test it analyze_ftp::`.
//!
//! Kept out of this binary (their own `[[test]]` targets in Cargo.toml): `select_noalloc` and
//! `pipeline_radius_noalloc`, whose counting global allocators count every thread's allocations
//! and need to be the only test in their process; `capture_libpcap`, which needs the `libpcap`
//! feature. This binary's global allocator is `analyze_smtp_mime`'s, which counts only on the
//! thread that asks it to.

// Helpers shared by the test files (each file says `use crate::common;` and so on).
mod common;
mod decode_util;
mod handover_common;
mod select_common;
mod vmi_common;

mod analyze_ftp;
mod analyze_ftp_transcripts;
mod analyze_http;
mod analyze_rtmp;
mod analyze_rtsp;
mod analyze_sip;
mod analyze_smtp;
mod analyze_smtp_mime;
mod analyze_smtp_transcripts;
mod analyze_tls;
mod analyze_udp_media;
mod audit_log;
mod big_upload;
mod bounded_costs;
mod capture_live;
mod capture_speed;
mod capture_streaming;
mod capture_synthetic;
mod capture_truncation;
mod capture_tshark;
mod content_formats;
mod content_proptest;
mod cross_links;
mod daemon_config;
mod daemon_feeds;
mod daemon_reload;
mod daemon_run;
mod daemon_systemd;
mod daemon_x1;
mod decode_frag;
mod decode_fuzz;
mod decode_layers;
mod decode_pcaps;
mod deliver_e2e;
mod etsi_asn1tools;
mod etsi_decode;
mod etsi_email;
mod etsi_golden;
mod etsi_hi1;
mod etsi_inner_ip;
mod etsi_perf;
mod flood;
mod flow_evidence;
mod flow_reassembly;
mod flow_smoltcp;
mod flow_table;
mod handover_email;
mod handover_faults;
mod handover_keepalive;
mod handover_lemf;
mod handover_pcap;
mod handover_session_close;
mod handover_spool;
mod hi2_case;
mod http_decoding_limits;
mod isolation;
mod layering;
mod lemf_content;
mod lemf_kill;
mod lemf_tcp;
mod lemf_tls;
mod live_run;
mod media_rtp;
mod metrics_http;
mod network_stalls;
mod public_truth;
mod replay_app;
mod replay_cli;
mod replay_fixtures;
mod replay_workers;
mod report_html;
mod scope_matrix;
mod select_events;
mod select_feed;
mod select_forget;
mod select_proptest;
mod select_radius;
mod select_targeting;
mod select_warrants;
mod vmi_filesystems;
mod vmi_inspect;
mod vmi_media_link;
mod vmi_pipeline;
mod x1_core;
mod x1_https;
mod x2_events;
mod x2x3_faults;
mod x2x3_live;
mod x2x3_records;
mod x2x3_roles;
mod x2x3_third_party;
mod x2x3_vmi;
mod x2x3_x1;

/// Every tests/*.rs is a module here or a `[[test]]` target of its own in Cargo.toml: with
/// `autotests = false`, a file declared in neither would be compiled and run nowhere, silently.
#[test]
fn every_test_file_is_built() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let it = std::fs::read_to_string(root.join("tests/it.rs")).unwrap();
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut nowhere = Vec::new();
    for e in std::fs::read_dir(root.join("tests")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        let Some(module) = name.strip_suffix(".rs") else { continue };
        let declared = module == "it" || it.lines().any(|l| l == format!("mod {module};"));
        if !declared && !cargo.lines().any(|l| l == format!("path = \"tests/{name}\"")) {
            nowhere.push(name);
        }
    }
    nowhere.sort();
    assert!(nowhere.is_empty(), "not in tests/it.rs (`mod NAME;`) nor a [[test]] of Cargo.toml: {nowhere:?}");
}
