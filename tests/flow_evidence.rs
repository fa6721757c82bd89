//! Evidence is what the receiver accepted, and the case says where the wire disagreed with
//! itself: hand-made TCP conversations (checksums computed here and checked by tshark) replayed
//! through `tapir replay`, and real clients on loopback, whose checksums the kernel leaves to
//! the NIC (offload).
//!
//! Each conversation: client 10.0.0.5:40000 (the target) to server 192.0.2.9:9000, the server
//! says a line first (so that the generic stream analyzer takes the connection at once), then
//! the client sends its bytes.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const CLIENT: [u8; 4] = [10, 0, 0, 5];
const SERVER: [u8; 4] = [192, 0, 2, 9];
const CISN: u32 = 1000;
const SISN: u32 = 5000;
const BANNER: &[u8] = b"hello, tapir\r\n";

/// One's-complement sum, written here so that the expected checksums do not come from tapir.
fn ones(data: &[u8], mut sum: u32) -> u32 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

struct Seg {
    from_client: bool,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: Vec<u8>,
    /// Corrupt the TCP checksum.
    bad: bool,
    /// MSS option (SYN).
    mss: Option<u16>,
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

fn seg(from_client: bool, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Seg {
    Seg { from_client, seq, ack, flags, payload: payload.to_vec(), bad: false, mss: None }
}

fn bad(mut s: Seg) -> Seg {
    s.bad = true;
    s
}

fn frame(s: &Seg) -> Vec<u8> {
    let (src, dst, sp, dp) =
        if s.from_client { (CLIENT, SERVER, 40000u16, 9000u16) } else { (SERVER, CLIENT, 9000, 40000) };
    let opts: Vec<u8> = s.mss.map(|m| vec![2, 4, (m >> 8) as u8, m as u8]).unwrap_or_default();
    let thl = 20 + opts.len();
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&sp.to_be_bytes());
    tcp.extend_from_slice(&dp.to_be_bytes());
    tcp.extend_from_slice(&s.seq.to_be_bytes());
    tcp.extend_from_slice(&s.ack.to_be_bytes());
    tcp.extend_from_slice(&[((thl / 4) << 4) as u8, s.flags, 0xff, 0xff, 0, 0, 0, 0]);
    tcp.extend_from_slice(&opts);
    tcp.extend_from_slice(&s.payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    let mut ck = !(ones(&tcp, ones(&pseudo, 0)) as u16);
    if s.bad {
        ck ^= 0x5a5a;
    }
    tcp[16..18].copy_from_slice(&ck.to_be_bytes());
    let total = (20 + tcp.len()) as u16;
    let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let ipck = !(ones(&ip, 0) as u16);
    ip[10..12].copy_from_slice(&ipck.to_be_bytes());
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp);
    f
}

/// Handshake (client MSS 1460, server MSS `server_mss`) and the server's banner; then `body`;
/// then both FINs. Client data starts at sequence number CISN + 1.
fn conversation(server_mss: u16, body: Vec<Seg>, client_len: u32) -> Vec<Seg> {
    let c1 = CISN + 1;
    let s1 = SISN + 1;
    let mut v = vec![
        Seg { mss: Some(1460), ..seg(true, CISN, 0, SYN, b"") },
        Seg { mss: Some(server_mss), ..seg(false, SISN, c1, SYN | ACK, b"") },
        seg(true, c1, s1, ACK, b""),
        seg(false, s1, c1, PSH | ACK, BANNER),
    ];
    v.extend(body);
    let sb = s1 + BANNER.len() as u32;
    let cend = c1 + client_len;
    v.push(seg(true, cend, sb, FIN | ACK, b""));
    v.push(seg(false, sb, cend + 1, FIN | ACK, b""));
    v.push(seg(true, cend + 1, sb + 1, ACK, b""));
    v
}

fn write_pcap(path: &Path, segs: &[Seg]) {
    let frames: Vec<(u32, u32, Vec<u8>)> =
        segs.iter().enumerate().map(|(i, s)| (0, i as u32 * 1000, frame(s))).collect();
    common::write_pcap(path, &frames);
}

/// tshark's TCP checksum status per frame: "1" good, "0" bad.
fn tshark_checksums(path: &Path) -> Vec<String> {
    let o = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-o", "tcp.check_checksum:TRUE", "-T", "fields", "-e", "tcp.checksum.status"])
        .output()
        .expect("tshark");
    String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()
}

struct Case {
    _dir: tempfile::TempDir,
    root: PathBuf,
    stdout: String,
}

impl Case {
    fn lines(&self, file: &str) -> Vec<Value> {
        common::json_lines(&self.root.join("LIID-EV").join(file))
    }

    /// The stream object of the client's direction, and its bytes.
    fn client_stream(&self) -> (Value, Vec<u8>) {
        let o = self
            .lines("objects.jsonl")
            .into_iter()
            .find(|o| o["kind"] == "stream" && o["direction"] == "orig")
            .expect("a stream object of the client's bytes");
        let bytes = std::fs::read(self.root.join("LIID-EV").join(o["path"].as_str().unwrap())).unwrap();
        (o, bytes)
    }

    fn conflicts(&self) -> Vec<Value> {
        self.lines("iri.jsonl").into_iter().filter(|r| r["event"] == "wire-conflict").collect()
    }

    fn session_end(&self) -> Value {
        self.lines("iri.jsonl").into_iter().find(|r| r["event"] == "session-end").expect("session end")
    }
}

fn replay(segs: &[Seg], checksums: &str) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("c.pcap");
    write_pcap(&pcap, segs);
    replay_file(dir, &pcap, checksums)
}

fn replay_file(dir: tempfile::TempDir, pcap: &Path, checksums: &str) -> Case {
    let root = dir.path().join("case");
    let targets = ["ipv4:10.0.0.5", "ipv4:127.0.0.1"];
    let stdout = common::replay_one_warrant(dir.path(), "LIID-EV", &targets, pcap, &root, &["--checksums", checksums]);
    Case { _dir: dir, root, stdout }
}

fn sha256(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

const C1: u32 = CISN + 1;
const S2: u32 = SISN + 1 + BANNER.len() as u32;

/// The issue's attack: `EVIL` with a bad checksum, then the valid `GOOD` at the same sequence
/// number. The object holds `GOOD`; the case says a segment that failed its checksum carried
/// other bytes there.
#[test]
fn a_segment_with_a_bad_checksum_never_enters_the_object() {
    let body = vec![
        seg(true, C1, S2, PSH | ACK, b"upload: "),
        bad(seg(true, C1 + 8, S2, PSH | ACK, b"EVIL")),
        seg(true, C1 + 8, S2, PSH | ACK, b"GOOD"),
        seg(false, S2, C1 + 12, ACK, b""),
    ];
    let segs = conversation(1460, body, 12);
    let d = tempfile::tempdir().unwrap();
    write_pcap(&d.path().join("x.pcap"), &segs);
    let statuses = tshark_checksums(&d.path().join("x.pcap"));
    assert_eq!(statuses.len(), segs.len());
    assert_eq!(statuses.iter().filter(|s| *s == "0").count(), 1, "tshark: exactly one bad checksum: {statuses:?}");

    let case = replay(&segs, "auto");
    let (obj, bytes) = case.client_stream();
    assert_eq!(bytes, b"upload: GOOD");
    assert_eq!(obj["sha256"], sha256(b"upload: GOOD"));
    // Reported as IRI and kept with the object: the refused bytes' digest, nothing accepted yet.
    let c = case.conflicts();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(
        (c[0]["kind"].as_str(), c[0]["offset"].as_u64(), c[0]["len"].as_u64()),
        (Some("bad-checksum"), Some(8), Some(4))
    );
    assert_eq!(c[0]["other_sha256"], sha256(b"EVIL"));
    assert!(c[0].get("kept_sha256").is_none(), "{}", c[0]);
    assert_eq!(c[0]["from_target"], true);
    assert_eq!(obj["wire_conflicts"][0]["other_sha256"], sha256(b"EVIL"));
    let end = case.session_end();
    assert_eq!(end["counters"]["checksum_failed"], serde_json::json!([1, 0]));
    assert_eq!(end["counters"]["conflicts"], serde_json::json!([1, 0]));
    assert!(end["counters"].get("unverified").is_none(), "{end}");
    assert!(case.stdout.contains("tcp evidence: 1 segments refused"), "{}", case.stdout);
    // The CC keeps both: they crossed the wire.
    let cc = case.root.join("LIID-EV/cc.pcap");
    assert_eq!(common::tshark(&cc, Some("tcp.payload == 45:56:49:4c"), &["frame.number"]).len(), 1);

    // With validation off (Suricata's -k none), the first bytes win, and the conflict is reported
    // as between two accepted versions.
    let off = replay(&segs, "off");
    assert_eq!(off.client_stream().1, b"upload: EVIL");
    let c = off.conflicts();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["kind"], "retransmission");
    assert_eq!(
        (c[0]["kept_sha256"].as_str(), c[0]["other_sha256"].as_str()),
        (Some(&*sha256(b"EVIL")), Some(&*sha256(b"GOOD")))
    );
}

/// `GOOD` first, then a bad-checksum `EVIL` over it: compared with what was handed on.
#[test]
fn a_bad_checksum_retransmission_is_compared_with_what_was_passed_on() {
    let body = vec![
        seg(true, C1, S2, PSH | ACK, b"upload: GOOD"),
        bad(seg(true, C1 + 8, S2, PSH | ACK, b"EVIL")),
        seg(false, S2, C1 + 12, ACK, b""),
    ];
    let case = replay(&conversation(1460, body, 12), "auto");
    assert_eq!(case.client_stream().1, b"upload: GOOD");
    let c = case.conflicts();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0]["kind"], "bad-checksum");
    assert_eq!(c[0]["kept_sha256"], sha256(b"GOOD"));
    assert_eq!(c[0]["other_sha256"], sha256(b"EVIL"));
}

/// Both versions valid: the receiver keeps the first. Before the receiver's ACK the
/// retransmission is compared (a conflict); after it, the bytes are final and no longer kept:
/// the retransmission is counted as not compared.
#[test]
fn a_conflicting_valid_retransmission_is_reported_until_acknowledged() {
    let body = vec![
        seg(true, C1, S2, PSH | ACK, b"upload: AAAA"),
        seg(true, C1 + 8, S2, PSH | ACK, b"BBBB"),
        seg(false, S2, C1 + 12, ACK, b""),
        seg(true, C1 + 8, S2, PSH | ACK, b"CCCC"),
    ];
    let case = replay(&conversation(1460, body, 12), "auto");
    let (obj, bytes) = case.client_stream();
    assert_eq!(bytes, b"upload: AAAA");
    let c = case.conflicts();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0]["kind"], "retransmission");
    assert_eq!((c[0]["offset"].as_u64(), c[0]["len"].as_u64()), (Some(8), Some(4)));
    assert_eq!(c[0]["kept_sha256"], sha256(b"AAAA"));
    assert_eq!(c[0]["other_sha256"], sha256(b"BBBB"));
    assert_eq!(obj["wire_conflicts"].as_array().map(Vec::len), Some(1));
    assert!(case.stdout.contains("4 retransmitted bytes not compared"), "{}", case.stdout);
}

/// Conflicts among bytes held ahead of a hole: the first held wins, the conflict is in the case.
#[test]
fn an_out_of_order_conflict_is_in_the_case() {
    let body = vec![
        seg(true, C1, S2, PSH | ACK, b"upload: "),
        seg(true, C1 + 12, S2, PSH | ACK, b"XXXX"),
        seg(true, C1 + 12, S2, PSH | ACK, b"YYYY"),
        seg(true, C1 + 8, S2, PSH | ACK, b"gap!"),
        seg(false, S2, C1 + 16, ACK, b""),
    ];
    let case = replay(&conversation(1460, body, 16), "auto");
    assert_eq!(case.client_stream().1, b"upload: gap!XXXX");
    let c = case.conflicts();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!((c[0]["kind"].as_str(), c[0]["offset"].as_u64()), (Some("retransmission"), Some(12)));
    assert_eq!(c[0]["kept_sha256"], sha256(b"XXXX"));
}

/// A capture taken on the sending host: every client segment fails its checksum (the NIC fills
/// it in later), the SYN included. Nothing is refused; the segments are counted as unverified.
/// A RST with a bad checksum in a verified direction ends nothing.
#[test]
fn offloaded_checksums_are_told_from_forged_ones() {
    let mut segs = conversation(
        1460,
        vec![
            seg(true, C1, S2, PSH | ACK, b"upload: "),
            seg(true, C1 + 8, S2, PSH | ACK, b"DATA"),
            bad(seg(false, S2, C1 + 12, RST | ACK, b"")),
            seg(false, S2, C1 + 12, ACK, b""),
        ],
        12,
    );
    for s in segs.iter_mut().filter(|s| s.from_client) {
        s.bad = true;
    }
    let case = replay(&segs, "auto");
    assert_eq!(case.client_stream().1, b"upload: DATA");
    assert!(case.conflicts().is_empty());
    let end = case.session_end();
    assert_eq!(end["reason"], "fin", "the forged RST ended the session: {end}");
    // The client's last ACK comes after the close: CC only, not judged.
    let client_packets = segs.iter().filter(|s| s.from_client).count() as u64;
    assert_eq!(end["counters"]["unverified"][0], client_packets - 1);
    assert_eq!(end["counters"]["checksum_failed"], serde_json::json!([0, 1]));
}

/// What a veth capture of a 3 MB FTP upload showed (`tests/live_run.rs`, once in CI): the
/// sender offloads its checksums, SYN included, but computed one data segment in the middle in
/// software. That valid segment must not turn the direction into a verified one whose later,
/// offloaded segments are refused: the file was cut there.
#[test]
fn one_software_checksum_in_an_offloaded_direction_refuses_nothing_after_it() {
    let mut segs = conversation(
        1460,
        vec![
            seg(true, C1, S2, PSH | ACK, b"part one;"),
            seg(true, C1 + 9, S2, PSH | ACK, b"part two;"),
            seg(true, C1 + 18, S2, PSH | ACK, b"part three"),
            seg(false, S2, C1 + 28, ACK, b""),
        ],
        28,
    );
    // Every client segment fails its checksum but the second data segment.
    for s in segs.iter_mut().filter(|s| s.from_client) {
        s.bad = s.payload != b"part two;";
    }
    let d = tempfile::tempdir().unwrap();
    write_pcap(&d.path().join("x.pcap"), &segs);
    let statuses = tshark_checksums(&d.path().join("x.pcap"));
    let client = segs.iter().filter(|s| s.from_client).count();
    assert_eq!(statuses.iter().filter(|s| *s == "0").count(), client - 1, "tshark: {statuses:?}");

    let case = replay(&segs, "auto");
    let (obj, bytes) = case.client_stream();
    assert_eq!(bytes, b"part one;part two;part three");
    assert_eq!(obj["sha256"], sha256(b"part one;part two;part three"));
    assert!(case.conflicts().is_empty(), "{:?}", case.conflicts());
    let end = case.session_end();
    assert!(end["counters"].get("checksum_failed").is_none(), "nothing refused: {end}");
    assert_eq!(end["counters"]["unverified"][0], 5, "{end}");
}

/// A capture on a receiving host with GRO: segments merged by the kernel are larger than the
/// MSS the receiver announced, under the first segment's checksum. They are taken, unverified;
/// a failing segment of ordinary size is still refused.
#[test]
fn segments_larger_than_the_mss_were_coalesced_by_the_capturing_host() {
    let big: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let body = vec![
        seg(true, C1, S2, PSH | ACK, &big[..1000]),
        bad(seg(true, C1 + 1000, S2, PSH | ACK, &big[1000..])),
        bad(seg(true, C1 + 3000, S2, PSH | ACK, b"tail")),
        seg(true, C1 + 3000, S2, PSH | ACK, b"TAIL"),
        seg(false, S2, C1 + 3004, ACK, b""),
    ];
    let case = replay(&conversation(1000, body, 3004), "auto");
    let mut want = big.clone();
    want.extend_from_slice(b"TAIL");
    assert_eq!(case.client_stream().1, want);
    let end = case.session_end();
    assert_eq!(end["counters"]["unverified"], serde_json::json!([1, 0]));
    assert_eq!(end["counters"]["checksum_failed"], serde_json::json!([1, 0]));
}

/// Real clients and servers on loopback, captured by tcpdump: loopback leaves every checksum
/// unfilled (as offload does) and hands over segments far above 1460 bytes. The downloaded file
/// is rebuilt whole, with `auto`.
#[test]
fn a_real_download_captured_on_loopback_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    let mut content = Vec::new();
    let mut x = 0x9e37_79b9u32;
    for _ in 0..400_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        content.push(x as u8);
    }
    std::fs::write(&file, &content).unwrap();
    let want = common::sh(dir.path(), "sha256sum f.bin | cut -d' ' -f1").trim().to_string();
    let port = common::free_port();
    let pcap = dir.path().join("lo.pcap");
    let mut server = Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    common::wait_listening(port);
    let port_s = port.to_string();
    common::capture_lo(&pcap, &["tcp", "port", &port_s], || {
        let st = Command::new("curl")
            .args(["-s", "-o", "/dev/null"])
            .arg(format!("http://127.0.0.1:{port}/f.bin"))
            .status()
            .unwrap();
        assert!(st.success());
    });
    let _ = server.kill();
    let _ = server.wait();
    // tshark agrees: no segment carrying data or SYN has a checksum that holds (the kernel may
    // compute one itself for a last ACK after the close, which verifies nothing).
    let o = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-o", "tcp.check_checksum:TRUE", "-Y", "tcp.len > 0 || tcp.flags.syn == 1", "-T", "fields"])
        .args(["-e", "tcp.checksum.status"])
        .output()
        .unwrap();
    let statuses: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect();
    assert!(statuses.len() > 4 && statuses.iter().all(|s| s == "0"), "{statuses:?}");
    let case = replay_file(dir, &pcap, "auto");
    let objects = case.lines("objects.jsonl");
    assert!(
        objects.iter().any(|o| o["sha256"] == want.as_str()),
        "sizes {:?}, {}",
        objects.iter().map(|o| (&o["size"], &o["gaps"])).collect::<Vec<_>>(),
        case.stdout
    );
    assert!(case.stdout.contains("tcp evidence: 0 segments refused"), "{}", case.stdout);
}
