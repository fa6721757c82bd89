//! Real captures: for every frame, the innermost IP addresses and ports this decoder finds must
//! equal what Wireshark (an independent dissector: tshark, or sharkd for the corpus lists)
//! reports, reassembly included.

use crate::decode_util;

use decode_util::{observed, read_capture, shared_pcap, sharkd_expect, tshark_expect, Expect};
use tapir::decode::{DecodeConfig, DecodeError, Decoder};

/// Decodes every frame of `rel` and returns (frames, mismatch descriptions).
fn compare(rel: &str, cfg: DecodeConfig, extra: &[&str]) -> (usize, Vec<String>) {
    compare_with(rel, cfg, &tshark_expect(&shared_pcap(rel), extra))
}

/// Every capture of `rels` against Wireshark (one sharkd for all): (frames, mismatches).
fn compare_all(rels: &[&str]) -> (usize, Vec<String>) {
    let paths: Vec<_> = rels.iter().map(|r| shared_pcap(r)).collect();
    let wants = sharkd_expect(&paths);
    let (mut frames, mut bad) = (0, Vec::new());
    for (rel, want) in rels.iter().zip(&wants) {
        let (n, b) = compare_with(rel, DecodeConfig::default(), want);
        frames += n;
        bad.extend(b);
    }
    (frames, bad)
}

/// Decodes every frame of `rel` against `want`, Wireshark's view of each.
fn compare_with(rel: &str, cfg: DecodeConfig, want: &[Expect]) -> (usize, Vec<String>) {
    let path = shared_pcap(rel);
    let pkts = read_capture(&path);
    assert_eq!(pkts.len(), want.len(), "{rel}: frame count differs from Wireshark's");
    let mut dec = Decoder::new(cfg);
    let mut bad = Vec::new();
    for (i, (p, w)) in pkts.iter().zip(want).enumerate() {
        let got = match dec.decode(&p.frame()) {
            Ok(d) => observed(&d, w),
            Err(e) => {
                // Agreement in failure: tshark shows no transport for a fragment we reject as
                // hostile or a reassembled datagram too short for its transport header.
                let agreed_failure =
                    matches!(e, DecodeError::Fragment(_) | DecodeError::Truncated { .. }) && w.ports.is_none();
                if *w != (Expect { src: None, dst: None, ports: None }) && !agreed_failure {
                    bad.push(format!("{rel} frame {}: error {e}, tshark {w:?}", i + 1));
                }
                continue;
            }
        };
        if got != *w {
            bad.push(format!("{rel} frame {}: got {got:?}, tshark {w:?}", i + 1));
        }
    }
    (pkts.len(), bad)
}

/// Survey of every capture in the corpus whose name suggests encapsulation or fragments:
/// prints the disagreements (run with --ignored --nocapture when adding captures).
#[test]
#[ignore]
fn survey_corpus() {
    let manifest = std::fs::read_to_string(shared_pcap("MANIFEST.tsv")).unwrap();
    let re = ["gre", "geneve", "erspan", "vxlan", "mpls", "qinq", "vlan", "frag", "6in4", "ipip", "sll", "null"];
    for line in manifest.lines().skip(1) {
        let path = line.split('\t').next().unwrap();
        let low = line.to_lowercase();
        if !re.iter().any(|r| low.contains(r)) || path.ends_with(".gz") {
            continue;
        }
        let rel = path.trim_start_matches("public/");
        let (n, bad) = compare(rel, DecodeConfig::default(), &[]);
        println!("{rel}: {n} frames, {} mismatches", bad.len());
        for b in bad.iter().take(3) {
            println!("    {b}");
        }
    }
}

/// Captures where every frame agrees with tshark. Together they cover Ethernet, Linux SLL and
/// SLL2, BSD Null, 802.1Q/QinQ/QinQinQ, VN-Tag, MPLS (in VLAN, over GRE), PPPoE, VXLAN (also
/// nested three deep), GENEVE, GRE (keys, sequence, in GRE, PPTP, Cisco MetaData, over UDP),
/// ERSPAN types I/II/III, 6in4, 6in6/4in6, IPv6 extension headers, and IPv4/IPv6 fragments
/// (in order, out of order, overlapping, hostile: the IPv6 evasion set of suricata-verify).
const AGREE: &[&str] = &[
    "tcpdump/tests/802.1ad_QinQ.pcap",
    "tcpdump/tests/erspan-type-i-1.pcap",
    "tcpdump/tests/erspan-type-i-2.pcap",
    "tcpdump/tests/erspan-type-i-3.pcap",
    "tcpdump/tests/erspan-type-i-4.pcap",
    "tcpdump/tests/erspan-type-ii-1.pcap",
    "tcpdump/tests/erspan-type-ii-2.pcap",
    "tcpdump/tests/erspan-type-ii-3.pcap",
    "tcpdump/tests/erspan-type-iii-ft-0.pcap",
    "tcpdump/tests/erspan-type-iii-ft-7.pcap",
    "tcpdump/tests/geneve-gcp.pcap",
    "tcpdump/tests/geneve.pcap",
    "tcpdump/tests/gso-ipv4-geneve-ipv4.pcap",
    "tcpdump/tests/gso-ipv4-geneve-ipv6.pcap",
    "tcpdump/tests/gso-ipv4-vxlan-ipv4.pcap",
    "tcpdump/tests/gso-ipv4-vxlan-ipv6.pcap",
    "tcpdump/tests/gso-ipv6-geneve-ipv4.pcap",
    "tcpdump/tests/gso-ipv6-geneve-ipv6.pcap",
    "tcpdump/tests/gso-ipv6-vxlan-ipv4.pcap",
    "tcpdump/tests/gso-ipv6-vxlan-ipv6.pcap",
    "tcpdump/tests/ipv4_tcp_http_xml.pcap",
    "tcpdump/tests/mpls-over-udp.pcap",
    "tcpdump/tests/mptcp-v1.pcap",
    "tcpdump/tests/quic_handshake_truncated.pcap",
    "tcpdump/tests/tcp-handshake-nano.pcap",
    "tcpdump/tests/various_gre.pcap",
    "tcpdump/tests/vxlan.pcap",
    "zeek/testing/btest/Traces/erspan.pcap",
    "zeek/testing/btest/Traces/http-qinq-0.pcap",
    "zeek/testing/btest/Traces/http-vlan-0.pcap",
    "zeek/testing/btest/Traces/ipv4/fragmented-3.pcap",
    "zeek/testing/btest/Traces/ipv4/fragmented-4.pcap",
    "zeek/testing/btest/Traces/ipv4/fragmented-syn.pcap",
    "zeek/testing/btest/Traces/ipv6-fragmented-dns.pcap",
    "zeek/testing/btest/Traces/ipv6-http-atomic-frag.pcap",
    "zeek/testing/btest/Traces/mixed-vlan-mpls.pcap",
    "zeek/testing/btest/Traces/mpls-in-vlan.pcap",
    "zeek/testing/btest/Traces/pppoe-over-qinq.pcap",
    "zeek/testing/btest/Traces/trunc/mpls-6in6-6in6-4in6-trunc.pcap",
    "zeek/testing/btest/Traces/tunnels/6in4.pcap",
    "zeek/testing/btest/Traces/tunnels/geneve-47101.pcap",
    "zeek/testing/btest/Traces/tunnels/geneve.pcap",
    "zeek/testing/btest/Traces/tunnels/gre-erspan3-dot1q.pcap",
    "zeek/testing/btest/Traces/tunnels/gre-over-udp-4754.pcap",
    "zeek/testing/btest/Traces/tunnels/gre-pptp.pcap",
    "zeek/testing/btest/Traces/tunnels/gre-sample.pcap",
    "zeek/testing/btest/Traces/tunnels/gre-within-gre.pcap",
    "zeek/testing/btest/Traces/tunnels/vxlan-encapsulated-http.pcap",
    "zeek/testing/btest/Traces/tunnels/vxlan-triple-v2.pcap",
    "zeek/testing/btest/Traces/tunnels/vxlan.pcap",
    "zeek/testing/btest/Traces/vlan-pcp-dei.pcapng",
    "zeek/testing/btest/Traces/vlan-qinqinq.pcap",
    "zeek/testing/btest/Traces/vntag_vlan_sandwich_clean.pcap",
    "ndpi/tests/cfgs/default/pcap/6in4tunnel.pcap",
    "ndpi/tests/cfgs/default/pcap/dns_fragmented.pcap",
    "ndpi/tests/cfgs/default/pcap/gre.pcapng",
    "ndpi/tests/cfgs/default/pcap/vxlan.pcap",
    "fq/format/pcap/testdata/ipv4frags.pcap",
    "fq/format/pcap/testdata/sll2_tcp.pcap",
    "fq/format/pcap/testdata/tcp-ipv4frag.pcap",
    "suricata-verify/tests/bug-5633-gre-01/gre-udp.pcap",
    "suricata-verify/tests/bug-5633-gre-02/gre-sample.pcap",
    "suricata-verify/tests/decode-erspan-typeI-02/input.pcap",
    "suricata-verify/tests/decode-erspan-typeII-01/input.pcap",
    "suricata-verify/tests/defrag/bug-6887-defrag-eth-vlan-ipv4-tcp-syn/frag-eth-vlan-ip-tcp-syn.pcap",
    "suricata-verify/tests/defrag/bug-6887-defrag-eth-vlan-ipv6-tcp/frag-eth-vlan-ipv6-tcp.pcap",
    "suricata-verify/tests/defrag/bug-6887-defrag-ipv4-tcp-syn/frag-ip-tcp-syn.pcap",
    "suricata-verify/tests/defrag/bug-6887-defrag-ipv6-tcp/frag-ip-tcp.pcap",
    "suricata-verify/tests/defrag/bug-6942-6887-defrag-eth-ip-gre-ppp-ip-udp-data/eth-ip-gre-ppp-max-ip-packet.pcap",
    "suricata-verify/tests/detect-vlan-id/input.pcap",
    "suricata-verify/tests/eve-flow-vlan/input.pcap",
    "suricata-verify/tests/geneve-decoder/input.pcap",
    "suricata-verify/tests/vxlan-decoder-01/input.pcap",
    "suricata-verify/tests/vxlan-decoder-02/vxlan.pcap",
    "suricata-verify/tests/vxlan-decoder-03/vxlan.pcap",
    "suricata-verify/tests/vxlan-non-zero-reserved-fields/input.pcap",
];

#[test]
fn captures_agree_with_tshark() {
    let (frames, bad) = compare_all(AGREE);
    assert!(bad.is_empty(), "{} of {frames} frames disagree:\n{}", bad.len(), bad.join("\n"));
    assert!(frames > 2500, "only {frames} frames compared");
}

/// The IPv6 fragmentation evasion captures of suricata-verify (overlaps, conflicting final
/// fragments, offsets beyond 65535, atomic fragments): tshark reassembles or refuses the same
/// datagrams; where this decoder rejects a fragment, tshark found no transport in it either.
#[test]
fn ipv6_fragment_evasions_agree_with_tshark() {
    let dir = shared_pcap("suricata-verify/tests/ipv6-evasion");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("ipv6-evasion directory")
        .filter_map(|e| e.ok())
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().filter_map(|e| e.ok()))
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    files.sort();
    assert!(files.len() >= 25, "found {} captures", files.len());
    let rels: Vec<&str> = files
        .iter()
        .map(|f| f.strip_prefix(shared_pcap("")).expect("under the corpus").to_str().expect("utf-8"))
        .collect();
    let (_, bad) = compare_all(&rels);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// VXLAN on Linux's legacy port 8472, decoded only when configured (and tshark told so).
#[test]
fn vxlan_on_configured_port() {
    let rel = "tcpdump/tests/vxlan_port_8472.pcap";
    let cfg = DecodeConfig { vxlan_port: 8472, ..DecodeConfig::default() };
    let (n, bad) = compare(rel, cfg.clone(), &["-d", "udp.port==8472,vxlan"]);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let pkts = read_capture(&shared_pcap(rel));
    let mut dec = Decoder::new(cfg);
    let tunnelled = pkts.iter().filter(|p| dec.decode(&p.frame()).is_ok_and(|d| !d.overlay.tunnels.is_empty())).count();
    assert_eq!(tunnelled, n, "every frame is VXLAN");
}

/// BIG TCP and GSO captures whose IPv4 total length is 0 (or IPv6 payload length 0 with a
/// jumbo option): tshark 4.0 stops at the outer header, so the truth is tcpdump's own expected
/// output (`.out`, from the tcpdump test suite): the last `src.port > dst.port` it prints.
#[test]
fn big_tcp_agrees_with_tcpdump_expectations() {
    for name in [
        "bigtcp-ipv4",
        "bigtcp-ipv6",
        "bigtcp-ipv4-vxlan-ipv4",
        "bigtcp-ipv4-vxlan-ipv6",
        "bigtcp-ipv4-geneve-ipv4",
        "bigtcp-ipv4-geneve-ipv6",
        "bigtcp-ipv6-vxlan-ipv4",
        "bigtcp-ipv6-vxlan-ipv6",
        "bigtcp-ipv6-geneve-ipv4",
        "bigtcp-ipv6-geneve-ipv6",
    ] {
        let out = std::fs::read_to_string(shared_pcap(&format!("tcpdump/tests/{name}.out"))).expect(".out");
        let (src, dst) = last_endpoints(&out).unwrap_or_else(|| panic!("{name}: no endpoints in .out"));
        let pkts = read_capture(&shared_pcap(&format!("tcpdump/tests/{name}.pcap")));
        let mut dec = Decoder::new(DecodeConfig::default());
        let d = dec.decode(&pkts[0].frame()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = observed(&d, &Expect { src: None, dst: None, ports: None });
        assert_eq!((got.src, got.dst, got.ports), (Some(src.0), Some(dst.0), Some((src.1, dst.1))), "{name}");
    }
}

/// Parses tcpdump's `a.b.c.d.port > e.f.g.h.port:` (or IPv6 `x::y.port`), last occurrence.
fn last_endpoints(out: &str) -> Option<((std::net::IpAddr, u16), (std::net::IpAddr, u16))> {
    let ep = |s: &str| -> Option<(std::net::IpAddr, u16)> {
        let s = s.trim_end_matches(':');
        let (a, p) = s.rsplit_once('.')?;
        Some((a.parse().ok()?, p.parse().ok()?))
    };
    let toks: Vec<&str> = out.split_whitespace().collect();
    toks.windows(3).rev().find_map(|w| if w[1] == ">" { Some((ep(w[0])?, ep(w[2])?)) } else { None })
}
