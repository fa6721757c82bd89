//! Helpers shared by the handover tests: records, warrants, and the independent LEMF
//! (`shared/tools/lemf_check.py`, asn1tools) run as a subprocess on loopback ports.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;

use tapir::capture::LinkType;
use tapir::deliver::handover::{parse_leas, Delivery, LeaConfig};
use tapir::record::{CcRecord, Cin, Close, Counters, FlowDescr, IriEvent, IriRecord, Record};
use tapir::select::{parse_warrants, Liid, Provenance, Warrant};
use tapir::timestamp::Timestamp;

pub const LEMF_CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tools/lemf_check.py");
pub const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/handover");

// The port helpers every network test uses (`common`'s, which also has `sh` for shell commands).
pub use crate::common::{free_port, wait_listening};

/// One run of the independent LEMF.
pub struct Lemf {
    pub child: Child,
    pub report: PathBuf,
}

impl Lemf {
    /// Listens on 127.0.0.1 `hi2` and `hi3` until [`Lemf::wait`], or for `max` seconds at most.
    pub fn start(hi2: u16, hi3: u16, report: &Path, max: f64) -> Lemf {
        Self::start_env(hi2, hi3, report, max, &[])
    }

    /// With environment for lemf_seqs.py: `LEMF_SIGN_KEY` (PKCS#8 DER Ed25519 key whose public
    /// half verifies signature PDUs), `LEMF_SEQ_LOG` (per-PDU log that survives SIGKILL).
    pub fn start_env(hi2: u16, hi3: u16, report: &Path, max: f64, env: &[(&str, &Path)]) -> Lemf {
        let mut cmd = Command::new("python3");
        cmd.envs(env.iter().copied());
        let child = cmd
            .arg(format!("{DATA}/lemf_seqs.py"))
            .arg(LEMF_CHECK)
            .args(["--hi2", &hi2.to_string(), "--hi3", &hi3.to_string()])
            .args(["--idle", "0.3", "--max", &max.to_string()])
            .arg("--report")
            .arg(report)
            .spawn()
            .expect("python3 with asn1tools (pip install asn1tools)");
        // Readiness probe: an empty connection, which the LEMF counts but which carries no PDU.
        wait_listening(hi2);
        wait_listening(hi3);
        Lemf { child, report: report.to_path_buf() }
    }

    /// Once the sender is done (its delivery confirmed, so every PDU is in): tells the LEMF so,
    /// which then ends 0.3 s after the last data (or has ended at `max`, or was killed), and
    /// reads its report and sequence numbers.
    pub fn wait(mut self) -> (serde_json::Value, serde_json::Value) {
        crate::common::signal(&self.child, "USR1");
        let st = self.child.wait().unwrap();
        assert!(st.success(), "lemf_check failed: {st}");
        let rep = serde_json::from_slice(&std::fs::read(&self.report).unwrap()).unwrap();
        let seqs_path = format!("{}.seqs.json", self.report.display());
        let seqs = serde_json::from_slice(&std::fs::read(seqs_path).unwrap()).unwrap();
        (rep, seqs)
    }
}

pub fn warrants_text(hi2: u16, hi3: u16, extra: &str) -> String {
    format!(
        r#"
[[warrant]]
liid = "LIID-A"
start = "2026-01-01T00:00:00Z"
end = "2027-01-01T00:00:00Z"
scope = "iri+cc"
targets = ["ipv4:10.0.0.5"]
lea = "lemf"

[[warrant]]
liid = "LIID-B"
start = "2026-01-01T00:00:00Z"
end = "2027-01-01T00:00:00Z"
scope = "iri+cc"
targets = ["ipv4:10.0.0.6"]
lea = "lemf"

[[lea]]
name = "lemf"
hi2 = "127.0.0.1:{hi2}"
hi3 = "127.0.0.1:{hi3}"
operator_id = "tapir-test"
network_element_id = "mdf1"
country = "DE"
keepalive = 1
{extra}
"#
    )
}

pub fn setup(text: &str) -> (Vec<LeaConfig>, Vec<Warrant>) {
    let w = parse_warrants(text, "w.toml").unwrap();
    (parse_leas(&w.lea, "w.toml").unwrap(), w.warrants)
}

/// An IPv4/UDP packet from `src` to 192.0.2.1:53 whose payload starts with `n`.
pub fn packet(src: [u8; 4], n: u32) -> Vec<u8> {
    let payload_len = 40usize;
    let total = 20 + 8 + payload_len;
    let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 17, 0, 0];
    p.extend_from_slice(&src);
    p.extend_from_slice(&[192, 0, 2, 1]);
    p.extend_from_slice(&[0x0f, 0xa0, 0, 53, 0, (8 + payload_len) as u8, 0, 0]);
    p.extend_from_slice(&n.to_be_bytes());
    p.resize(total, 0xab);
    p
}

pub fn ts(n: u32) -> Timestamp {
    Timestamp::from_secs_nanos(1_780_000_000 + i64::from(n / 1000), (n % 1000) * 1_000_000)
}

pub fn cc<'a>(liid: &'a Liid, cin: u64, n: u32, data: &'a [u8]) -> Record<'a> {
    let cin = Cin::new(cin as u32);
    Record::Cc(CcRecord {
        liid,
        cin,
        ts: ts(n),
        link: LinkType::Raw,
        data,
        orig_len: data.len() as u32,
        dir: None,
        target: None,
    })
}

fn flow(src: [u8; 4]) -> FlowDescr {
    FlowDescr {
        proto: "udp".into(),
        orig: SocketAddr::from((Ipv4Addr::from(src), 4000)),
        resp: SocketAddr::from(([192, 0, 2, 1], 53)),
        vlans: vec![],
        tunnels: vec![],
    }
}

pub fn begin(liid: &Liid, cin: u64, src: [u8; 4]) -> Record<'static> {
    Record::Iri(IriRecord {
        liid: liid.clone(),
        cin: Some(Cin::new(cin as u32)),
        ts: ts(0),
        event: IriEvent::SessionBegin { flow: flow(src), first_seen: ts(0) },
        provenance: Arc::new(Provenance {
            selector: format!("ipv4:{}", Ipv4Addr::from(src)),
            target: "ipv4:10.0.0.5".into(),
            chain: vec![],
        }),
    })
}

pub fn end(liid: &Liid, cin: u64, src: [u8; 4], n: u32) -> Record<'static> {
    Record::Iri(IriRecord {
        liid: liid.clone(),
        cin: Some(Cin::new(cin as u32)),
        ts: ts(n),
        event: IriEvent::SessionEnd {
            flow: flow(src),
            first_seen: ts(0),
            last_seen: ts(n),
            counters: Counters {
                packets: [u64::from(n), 0],
                bytes: [u64::from(n) * 68, 0],
                payload: [u64::from(n) * 40, 0],
                ..Counters::default()
            },
            reason: Close::Shutdown,
            gaps: [vec![], vec![]],
        },
        provenance: Arc::new(Provenance {
            selector: format!("ipv4:{}", Ipv4Addr::from(src)),
            target: "ipv4:10.0.0.5".into(),
            chain: vec![],
        }),
    })
}

/// `n` CC records on (liid, cin), sequence 0..n, into `d`.
pub fn feed_cc(d: &mut Delivery, liid: &Liid, cin: u64, src: [u8; 4], range: std::ops::Range<u32>) {
    for i in range {
        let p = packet(src, i);
        d.deliver(&cc(liid, cin, i, &p)).unwrap();
    }
}

/// Sequence numbers of `key` in a LEMF_SEQ_LOG file.
pub fn logged_seqs(log: &Path, key: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| *k == key)
        .filter_map(|(_, n)| n.parse().ok())
        .collect()
}

/// The sequence numbers of one stream in a `.seqs.json` file, e.g. key `hi3|LIID-A|1|cc`.
pub fn seqs(v: &serde_json::Value, key: &str) -> Vec<u64> {
    v.get(key).and_then(|a| a.as_array()).map(|a| a.iter().filter_map(|x| x.as_u64()).collect()).unwrap_or_default()
}

/// The segment files of `channel` in a spool directory, oldest first.
pub fn segments(dir: &Path, channel: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with(&format!("{channel}.")) && n.ends_with(".seg")
        })
        .collect();
    v.sort();
    v
}

/// Bytes in the segment files of `channel`. The spool deletes a segment once the LEA has
/// confirmed it, possibly between the listing and the look at its size: it then holds nothing.
pub fn segment_bytes(dir: &Path, channel: &str) -> u64 {
    segments(dir, channel).iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
}
