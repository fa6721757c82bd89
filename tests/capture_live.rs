//! Live AF_PACKET capture on veth pairs inside network namespaces this test creates (root needed;
//! CI runs as root). Frames are injected with tcpreplay (or made by real curl/python clients) and
//! what `LiveCapture` hands out is compared with independent readers: `pcaps/tools/pcapread.py`
//! (sha256 of every frame of the fixture), tshark (TCP stream numbers, timestamps), tcpdump
//! capturing the same interface at the same time, and `ip -d link` (promiscuity count).
//!
//! Also the privilege drop (`tapir::privs`), in a re-executed copy of this test binary so that the
//! uid/capability change cannot leak into the other tests.

use crate::common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tapir::capture::fanout::Fanout;
use tapir::capture::live::{LiveCapture, LiveError, RingConfig};
use tapir::capture::LinkType;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps").join(name)
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn require_root() {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "these tests create network namespaces and AF_PACKET sockets: run them as root");
}

/// Network namespaces (and processes started in them) removed on drop, also when a test fails.
struct Lab {
    namespaces: Vec<String>,
    children: Vec<Child>,
    tmp: tempfile::TempDir,
}

impl Lab {
    fn new(tag: &str, count: usize) -> Lab {
        require_root();
        let mut lab = Lab { namespaces: Vec::new(), children: Vec::new(), tmp: tempfile::tempdir().unwrap() };
        for i in 0..count {
            let name = format!("tpafp-{}-{tag}{i}", std::process::id());
            let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
            run("ip", &["netns", "add", &name]);
            lab.namespaces.push(name.clone());
            // No IPv6 autoconfiguration chatter (router solicitations, MLD) on the links made below.
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &name,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ],
            );
        }
        lab
    }

    fn ns(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    /// One namespace holding a veth pair: frames written to `inj0` arrive on `cap0`.
    fn veth(tag: &str) -> Lab {
        let lab = Lab::new(tag, 1);
        let ns = lab.ns(0);
        run(
            "ip",
            &[
                "-n", ns, "link", "add", "name", "cap0", "mtu", "1600", "type", "veth", "peer", "name", "inj0", "mtu",
                "1600",
            ],
        );
        run("ip", &["-n", ns, "link", "set", "cap0", "up"]);
        run("ip", &["-n", ns, "link", "set", "inj0", "up"]);
        lab
    }

    fn exec(&self, ns: usize, cmd: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns(ns)]).args(cmd);
        c
    }

    fn replay(&self, file: &Path) -> Child {
        self.exec(0, &["tcpreplay", "-q", "-t", "-i", "inj0", file.to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .expect("tcpreplay")
    }

    /// Runs `f` on a thread that has entered namespace `ns` (sockets made there stay there).
    fn in_ns<T: Send>(&self, ns: usize, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.ns(ns));
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                // SAFETY: a valid namespace fd; setns only changes this (short-lived) thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("namespace thread")
        })
    }

    fn open(&self, ns: usize, ifaces: &[&str], cfg: &RingConfig) -> LiveCapture {
        let ifaces: Vec<String> = ifaces.iter().map(|s| s.to_string()).collect();
        self.in_ns(ns, || LiveCapture::open(&ifaces, cfg)).unwrap_or_else(|e| panic!("open: {e}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// One frame as handed by `LiveCapture`.
#[derive(Clone, Debug)]
struct Got {
    sha: String,
    len: usize,
    orig_len: u32,
    ts: i64,
    link: LinkType,
    bytes: Vec<u8>,
}

fn sha256(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

/// (caplen, sha256) of every frame of a capture file, by the standard-library-only oracle.
fn oracle_frames(file: &Path) -> Vec<(usize, String)> {
    let out = run("python3", &[fixture("tools/pcapread.py").to_str().unwrap(), file.to_str().unwrap()]);
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 4, "pcapread line {l:?}");
            (f[2].parse().unwrap(), f[3].to_string())
        })
        .collect()
}

fn poll_into(cap: &mut LiveCapture, got: &mut Vec<Got>, timeout: Duration) -> usize {
    cap.poll(timeout, &mut |fr| {
        got.push(Got {
            sha: sha256(fr.data),
            len: fr.data.len(),
            orig_len: fr.orig_len,
            ts: fr.ts.nanos(),
            link: fr.link,
            bytes: fr.data.to_vec(),
        })
    })
    .unwrap_or_else(|e| panic!("poll: {e}"))
}

/// Polls while `child` runs and until `want` frames arrived (or 20 s), then 300 ms more for extras.
fn capture_while(caps: &mut [LiveCapture], mut child: Child, want: usize) -> Vec<Vec<Got>> {
    let mut got: Vec<Vec<Got>> = caps.iter().map(|_| Vec::new()).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut exited = false;
    while Instant::now() < deadline {
        for (cap, g) in caps.iter_mut().zip(&mut got) {
            poll_into(cap, g, Duration::from_millis(20));
        }
        if !exited {
            if let Some(st) = child.try_wait().unwrap() {
                assert!(st.success(), "injector failed: {st}");
                exited = true;
            }
        }
        if exited && got.iter().map(Vec::len).sum::<usize>() >= want {
            break;
        }
    }
    let tail = Instant::now() + Duration::from_millis(300);
    while Instant::now() < tail {
        for (cap, g) in caps.iter_mut().zip(&mut got) {
            poll_into(cap, g, Duration::from_millis(20));
        }
    }
    got
}

fn small_ring() -> RingConfig {
    RingConfig {
        block_size: 1 << 16,
        block_count: 128,
        frame_size: 2048,
        block_timeout_ms: 5,
        promiscuous: true,
        fanout_group: None,
        fanout: Fanout::InnerPair,
    }
}

fn assert_same_frames(got: &[Got], want: &[(usize, String)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: frame count");
    for (i, (g, (len, sha))) in got.iter().zip(want).enumerate() {
        assert_eq!((g.len, &g.sha), (*len, sha), "{what}: frame {}", i + 1);
        // The fixtures are unsnapped: wire length = captured length.
        assert_eq!(g.orig_len as usize, g.len, "{what}: frame {} orig_len", i + 1);
        assert_eq!(g.link, LinkType::Ethernet);
    }
}

#[test]
fn replayed_fixture_comes_out_byte_identical_with_stats() {
    let lab = Lab::veth("rp");
    let mut cap = lab.open(0, &["cap0"], &small_ring());
    let file = fixture("http-put.pcap");
    let want = oracle_frames(&file);
    assert_eq!(want.len(), 464);
    let got = capture_while(std::slice::from_mut(&mut cap), lab.replay(&file), want.len()).remove(0);
    assert_same_frames(&got, &want, "http-put.pcap");
    // Kernel timestamps are the capture time: now-ish, and in order.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    assert!(got.iter().all(|g| (now - g.ts).abs() < 120_000_000_000), "timestamps not near now");
    assert!(got.windows(2).all(|w| w[0].ts <= w[1].ts));
    let st = cap.stats().unwrap();
    assert_eq!(st.interfaces.len(), 1);
    assert_eq!(st.interfaces[0].interface, "cap0");
    assert_eq!((st.packets(), st.drops(), st.handed()), (464, 0, 464), "{st:?}");
}

#[test]
fn vlan_and_qinq_frames_come_out_tagged_as_on_the_wire() {
    let lab = Lab::veth("vl");
    let mut cap = lab.open(0, &["cap0"], &small_ring());
    for (name, tpid) in [("vlan.pcap", [0x81, 0x00]), ("qinq.pcap", [0x88, 0xa8])] {
        let file = fixture(name);
        let want = oracle_frames(&file);
        let got = capture_while(std::slice::from_mut(&mut cap), lab.replay(&file), want.len()).remove(0);
        // The kernel strips the outer tag before any packet socket; equality with the file's bytes
        // shows it was put back, TPID included (802.1ad for the outer tag of QinQ).
        assert_same_frames(&got, &want, name);
        assert!(got.iter().all(|g| g.bytes.get(12..14) == Some(&tpid[..])), "{name}: outer TPID");
    }
}

#[test]
fn two_workers_with_fanout_split_by_flow_and_lose_nothing() {
    let lab = Lab::veth("fo");
    // More distinct TCP flows than the fixtures hold: http-put again under two other address sets.
    let dir = lab.tmp.path();
    let mut parts = vec![fixture("http-put.pcap"), fixture("ftp-upload.pcap")];
    for (i, net) in ["10.77.1.0/24", "10.77.2.0/24"].iter().enumerate() {
        let out = dir.join(format!("pnat{i}.pcap"));
        let map = format!("198.51.100.0/24:{net},203.0.113.0/24:10.88.{i}.0/24");
        run(
            "tcprewrite",
            &["--pnat", &map, "-i", fixture("http-put.pcap").to_str().unwrap(), "-o", out.to_str().unwrap()],
        );
        parts.push(out);
    }
    let input = dir.join("input.pcap");
    let mut args = vec!["-F", "pcap", "-a", "-w", input.to_str().unwrap()];
    args.extend(parts.iter().map(|p| p.to_str().unwrap()));
    run("mergecap", &args);

    let want = oracle_frames(&input);
    // tshark's TCP stream index of every frame, keyed by the frame's hash ("" for non-TCP).
    let streams = run("tshark", &["-r", input.to_str().unwrap(), "-T", "fields", "-e", "tcp.stream"]);
    let streams: Vec<&str> = streams.lines().collect();
    assert_eq!(streams.len(), want.len());
    let mut stream_of: HashMap<&str, &str> = HashMap::new();
    for ((_, sha), stream) in want.iter().zip(&streams) {
        // Identical frames (tcprewrite leaves ARP alone) must at least be in the same stream.
        let prev = *stream_of.entry(sha.as_str()).or_insert(stream);
        assert_eq!(prev, *stream, "frame {sha} in two TCP streams");
    }
    let n_streams = streams.iter().filter(|s| !s.is_empty()).collect::<BTreeSet<_>>().len();
    assert!(n_streams >= 18, "{n_streams} TCP streams");

    // The kernel's flow hash: these are plain TCP flows, few address pairs but many ports.
    let cfg = RingConfig { fanout_group: Some(4242), fanout: Fanout::FlowHash, ..small_ring() };
    let mut caps = [lab.open(0, &["cap0"], &cfg), lab.open(0, &["cap0"], &cfg)];
    let got = capture_while(&mut caps, lab.replay(&input), want.len());

    let mut union: Vec<&str> = got.iter().flatten().map(|g| g.sha.as_str()).collect();
    let mut expected: Vec<&str> = want.iter().map(|(_, s)| s.as_str()).collect();
    union.sort_unstable();
    expected.sort_unstable();
    assert_eq!(union, expected, "union of the workers = the input");

    let mut owner: BTreeMap<&str, usize> = BTreeMap::new();
    for (w, frames) in got.iter().enumerate() {
        for g in frames {
            let s = stream_of[g.sha.as_str()];
            if s.is_empty() {
                continue;
            }
            let first = *owner.entry(s).or_insert(w);
            assert_eq!(first, w, "TCP stream {s} seen by both workers");
        }
    }
    assert_eq!(owner.len(), n_streams);
    let per_worker: Vec<usize> = (0..2).map(|w| owner.values().filter(|&&o| o == w).count()).collect();
    assert!(per_worker.iter().all(|&n| n > 0), "flows per worker {per_worker:?}: fanout did not split");
    for (w, cap) in caps.iter_mut().enumerate() {
        let st = cap.stats().unwrap();
        assert_eq!((st.packets() as usize, st.drops()), (got[w].len(), 0), "worker {w}: {st:?}");
    }
}

/// A pcap (Ethernet) of `frames`, a millisecond apart.
fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        out.extend_from_slice(&(i as u32 * 1000).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

/// VXLAN between two VTEPs (192.0.2.1, 192.0.2.2) carrying TCP between VMs: frame `n` goes
/// from `from` to `to` (inner IPv4), its TCP sequence number is `n`, and its outer UDP source
/// port is `sport` (a VTEP derives it from the inner frame, so it differs by direction).
fn vxlan_frame(n: u32, from: [u8; 4], to: [u8; 4], sport: u16) -> Vec<u8> {
    let mut inner = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
    inner.extend_from_slice(&from);
    inner.extend_from_slice(&to);
    inner.extend_from_slice(&[0x9c, 0x40, 0x00, 0x50]);
    inner.extend_from_slice(&n.to_be_bytes());
    inner.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    let mut vx = vec![0x08, 0, 0, 0, 0, 0x13, 0x89, 0];
    vx.extend_from_slice(&[0x02, 0, 0, 0, 0, from[3], 0x02, 0, 0, 0, 0, to[3], 0x08, 0x00]);
    vx.extend_from_slice(&inner);
    let udp_len = (8 + vx.len()) as u16;
    let mut udp = sport.to_be_bytes().to_vec();
    udp.extend_from_slice(&4789u16.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&vx);
    let (s, d) = if from[2] == 0 { ([192, 0, 2, 1], [192, 0, 2, 2]) } else { ([192, 0, 2, 2], [192, 0, 2, 1]) };
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&(20 + udp.len() as u16).to_be_bytes());
    ip.extend_from_slice(&s);
    ip.extend_from_slice(&d);
    ip.extend_from_slice(&udp);
    let mut eth = vec![0x02, 0, 0, 0, 0, d[3], 0x02, 0, 0, 0, 0, s[3], 0x08, 0x00];
    eth.extend_from_slice(&ip);
    eth
}

/// The inner (VM) address pair of a [`vxlan_frame`], in a fixed order, and its sequence number.
fn inner_pair(frame: &[u8]) -> (([u8; 4], [u8; 4]), u32) {
    let a: [u8; 4] = frame[76..80].try_into().unwrap();
    let b: [u8; 4] = frame[80..84].try_into().unwrap();
    (if a < b { (a, b) } else { (b, a) }, u32::from_be_bytes(frame[88..92].try_into().unwrap()))
}

#[test]
fn inner_pair_fanout_keeps_both_directions_of_a_vxlan_flow_in_one_ring_in_wire_order() {
    let lab = Lab::veth("vx");
    // 40 VM pairs (10.0.0.x <-> 10.0.1.y), 6 frames each way, interleaved as a conversation.
    let mut frames = Vec::new();
    for round in 0..6u16 {
        for p in 0..40u8 {
            let (vm, peer) = ([10, 0, 0, 10 + p], [10, 0, 1, 100 + (p % 10) * 5]);
            let n = frames.len() as u32;
            frames.push(vxlan_frame(n, vm, peer, 49152 + u16::from(p) * 2));
            frames.push(vxlan_frame(n + 1, peer, vm, 50000 + u16::from(p) * 3 + round % 2));
        }
    }
    let input = lab.tmp.path().join("vxlan-pairs.pcap");
    write_pcap(&input, &frames);
    let mut split_by = BTreeMap::new();
    for (fanout, group) in [(Fanout::InnerPair, 4343), (Fanout::FlowHash, 4344)] {
        let cfg = RingConfig { fanout_group: Some(group), fanout, ..small_ring() };
        let mut caps = [lab.open(0, &["cap0"], &cfg), lab.open(0, &["cap0"], &cfg)];
        let got = capture_while(&mut caps, lab.replay(&input), frames.len());
        let mut union: Vec<&[u8]> = got.iter().flatten().map(|g| g.bytes.as_slice()).collect();
        let mut want: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        union.sort_unstable();
        want.sort_unstable();
        assert_eq!(union, want, "{fanout:?}: the rings together hold every frame once");
        // Which rings each VM pair's frames came through, and whether each ring handed a
        // pair's frames on in the order they were sent.
        let mut rings: BTreeMap<_, BTreeSet<usize>> = BTreeMap::new();
        for (r, ring) in got.iter().enumerate() {
            let mut last: BTreeMap<_, u32> = BTreeMap::new();
            for g in ring {
                let (pair, n) = inner_pair(&g.bytes);
                rings.entry(pair).or_default().insert(r);
                if let Some(prev) = last.insert(pair, n) {
                    assert!(prev < n, "{fanout:?}: ring {r} reordered {pair:?}: {prev} then {n}");
                }
            }
        }
        assert_eq!(rings.len(), 40);
        let per_ring: Vec<usize> = (0..2).map(|r| rings.values().filter(|s| s.contains(&r)).count()).collect();
        assert!(per_ring.iter().all(|&n| n > 0), "{fanout:?}: pairs per ring {per_ring:?}: nothing shared out");
        split_by.insert(format!("{fanout:?}"), rings.values().filter(|s| s.len() > 1).count());
    }
    eprintln!("VM pairs whose frames came through both rings: {split_by:?}");
    // By inner pair no VM conversation is split; by the outer headers' hash, whose source
    // ports differ by direction, some are (each has even odds; 40 all kept whole would be a
    // 1 in 2^40 chance).
    assert_eq!(split_by["InnerPair"], 0, "{split_by:?}");
    assert!(split_by["FlowHash"] > 0, "{split_by:?}");
}

#[test]
fn tiny_ring_and_sleeping_reader_count_kernel_drops() {
    let lab = Lab::veth("dr");
    let cfg = RingConfig { block_size: 4096, block_count: 2, frame_size: 2048, block_timeout_ms: 1, ..small_ring() };
    let mut cap = lab.open(0, &["cap0"], &cfg);
    let file = fixture("http-put.pcap");
    let sent = oracle_frames(&file).len() as u64;
    // The reader sleeps through the whole replay.
    let st = lab.replay(&file).wait().unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(200));
    let s = cap.stats().unwrap();
    assert!(s.drops() > 0, "{s:?}");
    assert!(s.freezes() > 0, "{s:?}");
    assert_eq!(s.packets() + s.drops(), sent, "{s:?}");
    // What the kernel says it kept is exactly what the ring gives.
    let mut got = Vec::new();
    while poll_into(&mut cap, &mut got, Duration::from_millis(50)) > 0 {}
    assert_eq!(got.len() as u64, s.packets());
    let again = cap.stats().unwrap();
    assert_eq!((again.packets(), again.drops(), again.handed()), (s.packets(), s.drops(), s.packets()));
}

fn promiscuity(lab: &Lab, iface: &str) -> u32 {
    let out = run("ip", &["-n", lab.ns(0), "-d", "link", "show", iface]);
    let word = out.split_whitespace().skip_while(|w| *w != "promiscuity").nth(1).expect("promiscuity in ip -d");
    word.parse().unwrap()
}

#[test]
fn promiscuous_membership_and_frames_to_a_foreign_mac() {
    let lab = Lab::veth("pr");
    let foreign = lab.tmp.path().join("foreign.pcap");
    run(
        "tcprewrite",
        &[
            "--enet-dmac=02:aa:bb:cc:dd:ee",
            "-i",
            fixture("http-put.pcap").to_str().unwrap(),
            "-o",
            foreign.to_str().unwrap(),
        ],
    );
    let want = oracle_frames(&foreign);
    assert_eq!(promiscuity(&lab, "cap0"), 0);
    let plain = lab.open(0, &["cap0"], &RingConfig { promiscuous: false, ..small_ring() });
    assert_eq!(promiscuity(&lab, "cap0"), 0, "promiscuous: false must not touch the device");
    let mut cap = lab.open(0, &["cap0"], &small_ring());
    assert_eq!(promiscuity(&lab, "cap0"), 1, "PACKET_MR_PROMISC membership");
    let got = capture_while(std::slice::from_mut(&mut cap), lab.replay(&foreign), want.len()).remove(0);
    assert_same_frames(&got, &want, "frames to 02:aa:bb:cc:dd:ee");
    assert!(got.iter().all(|g| g.bytes.starts_with(&[0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])));
    drop(cap);
    // The kernel drops the membership when the socket's last reference closes. Another test
    // thread forking a child between its fork and its exec holds a copy of every descriptor
    // (close-on-exec closes it only at the exec): wait for that, a moment at most.
    let mut left = promiscuity(&lab, "cap0");
    for _ in 0..40 {
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        left = promiscuity(&lab, "cap0");
    }
    assert_eq!(left, 0, "membership dropped with the socket");
    drop(plain);
}

#[test]
fn several_interfaces_in_one_worker_and_clear_errors() {
    let lab = Lab::veth("mi");
    let ns = lab.ns(0);
    run("ip", &["-n", ns, "link", "add", "name", "cap1", "type", "veth", "peer", "name", "inj1"]);
    run("ip", &["-n", ns, "link", "set", "cap1", "up"]);
    run("ip", &["-n", ns, "link", "set", "inj1", "up"]);
    let cfg = RingConfig { fanout_group: Some(7), ..small_ring() };
    let mut cap = lab.open(0, &["cap0", "cap1"], &cfg);
    let a = fixture("http-put.pcap");
    let b = fixture("ftp-upload.pcap");
    let want = oracle_frames(&a).len() + oracle_frames(&b).len();
    let ra = lab.replay(&a);
    let rb = lab
        .exec(0, &["tcpreplay", "-q", "-t", "-i", "inj1", b.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut all = capture_while(std::slice::from_mut(&mut cap), ra, want).remove(0);
    let mut rb = rb;
    assert!(rb.wait().unwrap().success());
    let mut rest = Vec::new();
    while poll_into(&mut cap, &mut rest, Duration::from_millis(100)) > 0 {}
    all.extend(rest);
    let mut got: Vec<String> = all.into_iter().map(|g| g.sha).collect();
    let mut exp: Vec<String> = oracle_frames(&a).into_iter().chain(oracle_frames(&b)).map(|(_, s)| s).collect();
    got.sort();
    exp.sort();
    assert_eq!(got, exp);
    let st = cap.stats().unwrap();
    let per: Vec<(&str, u64)> = st.interfaces.iter().map(|s| (s.interface.as_str(), s.packets)).collect();
    assert_eq!(per, [("cap0", 464), ("cap1", 859)]);

    let err = lab.in_ns(0, || LiveCapture::open(&["nosuch0".to_string()], &small_ring())).unwrap_err();
    assert!(
        matches!(&err, LiveError::NoSuchInterface { iface, errno } if iface == "nosuch0" && *errno == libc::ENODEV)
    );
    let err = lab.in_ns(0, || LiveCapture::open(&["cap0".into(), "cap0".into()], &small_ring())).unwrap_err();
    assert!(matches!(err, LiveError::Config { .. }), "{err}");
}

#[test]
fn curl_to_a_python_server_matches_tcpdump_of_the_same_port() {
    let mut lab = Lab::new("cu", 2);
    let (srv, cli) = (lab.ns(0).to_string(), lab.ns(1).to_string());
    run("ip", &["-n", &srv, "link", "add", "name", "srv0", "type", "veth", "peer", "name", "cli0", "netns", &cli]);
    for (ns, dev, addr) in [(&srv, "srv0", "192.0.2.1/24"), (&cli, "cli0", "192.0.2.2/24")] {
        run("ip", &["-n", ns, "addr", "add", addr, "dev", dev]);
        run("ip", &["-n", ns, "link", "set", dev, "up"]);
        run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        // Frames as a NIC would put them on the wire: no TSO/GSO super-frames, real checksums.
        let _ = Command::new("ip")
            .args(["netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let www = lab.tmp.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(www.join("blob.bin"), &body).unwrap();
    let server = lab
        .exec(0, &["python3", "-m", "http.server", "--bind", "192.0.2.1", "8080", "--directory", www.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.children.push(server);
    // Wait until it answers (this warm-up is not captured).
    let url = "http://192.0.2.1:8080/blob.bin";
    let ready = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        lab.exec(1, &["curl", "-sf", "-o", "/dev/null", "--max-time", "2", url]).status().unwrap().success()
    });
    assert!(ready, "http server did not come up");
    std::thread::sleep(Duration::from_millis(300));

    let pcap = lab.tmp.path().join("tcpdump.pcap");
    let mut tcpdump = lab
        .exec(
            0,
            &[
                "tcpdump",
                "-i",
                "srv0",
                "-s",
                "0",
                "-U",
                "-n",
                // Without it libpcap's ring hands tcpdump a block only after its 1 s timeout and the
                // last frames would be lost to the SIGINT below.
                "--immediate-mode",
                "--time-stamp-precision=nano",
                "-w",
                pcap.to_str().unwrap(),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(tcpdump.stderr.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "tcpdump: {line}");
    let tcpdump_pid = tcpdump.id();
    lab.children.push(tcpdump);

    let mut cap = lab.open(0, &["srv0"], &RingConfig { block_size: 1 << 20, block_count: 16, ..small_ring() });
    let out = lab.tmp.path().join("got.bin");
    let curl = lab.exec(1, &["curl", "-sf", "--max-time", "20", "-o", out.to_str().unwrap(), url]).spawn().unwrap();
    let got = capture_while(std::slice::from_mut(&mut cap), curl, 0).remove(0);
    assert_eq!(std::fs::read(&out).unwrap(), body, "curl's download");
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling the tcpdump child this test started, by its pid.
    unsafe { libc::kill(tcpdump_pid as i32, libc::SIGINT) };
    let dump = lab.children.pop().unwrap().wait_with_output().unwrap();
    assert!(dump.status.success() || dump.status.code().is_none());

    let want = oracle_frames(&pcap);
    assert!(want.len() > 200, "{} frames: expected a 300 kB transfer", want.len());
    // Timestamps from the same clock: each packet socket stamps the frame when it is delivered to it,
    // so the two differ by the few microseconds between deliveries.
    let times = run("tshark", &["-r", pcap.to_str().unwrap(), "-T", "fields", "-e", "frame.time_epoch"]);
    let times: Vec<i64> = times
        .lines()
        .map(|t| {
            let (s, f) = t.split_once('.').unwrap();
            s.parse::<i64>().unwrap() * 1_000_000_000 + format!("{f:0<9}")[..9].parse::<i64>().unwrap()
        })
        .collect();
    assert_eq!(times.len(), want.len());
    // A sent and a received frame of the same instant may reach two sockets in either order (each
    // is delivered to every tap in turn, on its own CPU): compare by content, then time.
    let mut theirs: Vec<(&str, usize, i64)> = want.iter().zip(&times).map(|((l, s), t)| (s.as_str(), *l, *t)).collect();
    let mut ours: Vec<(&str, usize, i64)> = got.iter().map(|g| (g.sha.as_str(), g.len, g.ts)).collect();
    theirs.sort_unstable();
    ours.sort_unstable();
    let strip = |v: &[(&str, usize, i64)]| v.iter().map(|(s, l, _)| (s.to_string(), *l)).collect::<Vec<_>>();
    assert_eq!(strip(&ours), strip(&theirs), "LiveCapture vs tcpdump: same frames");
    let worst = ours.iter().zip(&theirs).map(|(a, b)| (a.2 - b.2).abs()).max().unwrap();
    assert!(worst < 20_000_000, "timestamps differ by up to {worst} ns");
    assert!(got.iter().all(|g| g.orig_len as usize == g.len && g.link == LinkType::Ethernet));
}

// ---- privilege drop, checked in a re-executed copy of this binary ----

const CHILD_ENV: &str = "TAPIR_PRIVS_CHILD";

fn run_child(mode: &str) -> BTreeMap<String, String> {
    require_root();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        // The test's full name in the `it` binary: its module, then the function.
        .args(["--exact", "capture_live::privs_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child: {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("CHILD "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn privs_drop_to_nobody_keeping_net_raw() {
    let r = run_child("keep-net-raw");
    let nobody = run("getent", &["passwd", "nobody"]);
    let ids: Vec<&str> = nobody.trim().split(':').collect();
    let (uid, gid) = (ids[2], ids[3]);
    assert_eq!(r["Uid"], format!("{uid}\t{uid}\t{uid}\t{uid}"));
    assert_eq!(r["Gid"], format!("{gid}\t{gid}\t{gid}\t{gid}"));
    assert_eq!(r["Groups"], gid);
    // CAP_NET_RAW is bit 13.
    assert_eq!(r["CapEff"], "0000000000002000");
    assert_eq!(r["CapPrm"], "0000000000002000");
    assert_eq!(r["CapInh"], "0000000000000000");
    assert_eq!(r["CapAmb"], "0000000000000000");
    assert_eq!(r["CapBnd"], "0000000000002000");
    assert_eq!(r["NoNewPrivs"], "1");
    // The ring opened as root still delivers, a new packet socket still opens (CAP_NET_RAW kept), and
    // root's other powers are gone (binding port 80 needs CAP_NET_BIND_SERVICE).
    assert_eq!(r["opened_before_polls"], "ok");
    assert_eq!(r["new_capture"], "ok");
    assert_eq!(r["bind80"], "EACCES");
}

#[test]
fn privs_drop_everything_and_capture_fails_clearly() {
    let r = run_child("keep-nothing");
    assert_eq!(r["CapEff"], "0000000000000000");
    assert_eq!(r["CapPrm"], "0000000000000000");
    assert_eq!(r["NoNewPrivs"], "1");
    assert!(r["new_capture"].contains("CAP_NET_RAW"), "{}", r["new_capture"]);
    assert!(r["new_capture"].starts_with("Permission"), "{}", r["new_capture"]);
}

/// Not a test on its own: the body of the privilege tests above, run in a child process.
#[test]
#[ignore = "run by privs_drop_* in a child process"]
fn privs_child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else { panic!("run through privs_drop_* only") };
    let cfg =
        RingConfig { block_size: 1 << 16, block_count: 4, block_timeout_ms: 1, promiscuous: false, ..small_ring() };
    let mut before = LiveCapture::open(&["lo".to_string()], &cfg).expect("open lo as root");
    let keep: &[tapir::privs::Capability] =
        if mode == "keep-net-raw" { &[tapir::privs::Capability::NetRaw] } else { &[] };
    let dropped = tapir::privs::drop_privileges(Some("nobody"), keep).expect("drop_privileges");
    println!("CHILD dropped_uid={}", dropped.uid);
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    for l in status.lines() {
        if let Some((k, v)) = l.split_once(':') {
            if ["Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd", "NoNewPrivs"].contains(&k) {
                println!("CHILD {k}={}", v.trim());
            }
        }
    }
    // Traffic on lo after the drop reaches the ring opened before it.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(b"after the drop", sock.local_addr().unwrap()).unwrap();
    let mut seen = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen && Instant::now() < deadline {
        before
            .poll(Duration::from_millis(50), &mut |fr| seen |= fr.data.windows(14).any(|w| w == b"after the drop"))
            .unwrap();
    }
    println!("CHILD opened_before_polls={}", if seen { "ok" } else { "nothing" });
    match LiveCapture::open(&["lo".to_string()], &cfg) {
        Ok(_) => println!("CHILD new_capture=ok"),
        Err(e) => println!("CHILD new_capture={e:?} {e}"),
    }
    match std::net::TcpListener::bind("127.0.0.1:80") {
        Ok(_) => println!("CHILD bind80=ok"),
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => println!("CHILD bind80=EACCES"),
        Err(e) => println!("CHILD bind80={e}"),
    }
}

/// `tapir run` on `cap0` (warrant `liid`, `ring` and `more` as for [`common::live_config`]),
/// frozen through `loops` back-to-back copies of `http-put.pcap` at top speed, then stopped
/// (see [`common::run_frozen_through`]). Returns its log, its case directory and the frames sent.
fn frozen_burst(lab: &Lab, liid: &str, ring: &str, more: &str, loops: usize) -> (String, PathBuf, u64) {
    let work = lab.tmp.path().to_path_buf();
    let config = common::live_config(&work, liid, ring, more);
    let log = work.join("run.log");
    let mut cmd = lab.exec(0, &[common::TAPIR, "run", "--config", config.to_str().unwrap()]);
    cmd.stdout(Stdio::null()).stderr(File::create(&log).unwrap());
    let file = fixture("http-put.pcap");
    let text = common::run_frozen_through(&mut cmd, &log, || {
        let st = lab
            .exec(0, &["tcpreplay", "-q", "-t", "--loop", &loops.to_string(), "-i", "inj0", file.to_str().unwrap()])
            .stdout(Stdio::null())
            .status()
            .expect("tcpreplay");
        assert!(st.success(), "tcpreplay: {st}");
    });
    (text, common::the_case(&work, "case"), (oracle_frames(&file).len() * loops) as u64)
}

/// A burst that outruns the pipeline, through `tapir run` with a queue of one batch. tapir is
/// frozen (SIGSTOP) while the burst is sent, so all of it waits in the kernel ring, which has
/// room for it; the stop order (SIGTERM) is pending when tapir thaws. The capture thread then
/// meets a full queue at once, waits on it, and the graceful stop reads what the ring holds,
/// including its last block, which the kernel hands over only when the block's timeout expires.
/// Nothing may be lost: not in the ring (the kernel's count), not between the capture thread
/// and the pipeline (which once dropped whole batches there, uncounted by the metrics,
/// whenever the pipeline paused: 6092 of these 9280 frames), and not left in the ring at the
/// stop.
#[test]
fn tapir_run_frozen_through_a_burst_with_a_one_batch_queue_loses_nothing() {
    let lab = Lab::veth("bq");
    // 20 copies: 9280 frames, about 10 MB, inside the 64 MiB ring. The ring's last block,
    // partly filled, most likely has not retired when tapir thaws (its timeout is a second):
    // the stop must wait for it.
    let (text, case, sent) = frozen_burst(
        &lab,
        "LIID-BURST",
        "ring = { block_size = 1048576, block_count = 64, block_timeout_ms = 1000 }\n",
        "[limits]\nqueue_batches = 1\n",
        20,
    );
    let counts = (common::closing_count(&text, "frames"), common::closing_count(&text, "dropped"));
    assert_eq!(counts, (sent, 0), "{text}");
    let target = common::tshark(&fixture("http-put.pcap"), Some("ip.addr==198.51.100.7"), &["frame.number"]).len() * 20;
    let cc = common::frame_count(&case.join("LIID-BURST/cc.pcap"));
    assert_eq!(cc, target, "CC packets\n{text}");
}

/// The same frozen burst into a ring far too small for it: the kernel drops most of it, and
/// every frame is accounted for. What tapir saw plus what the kernel counted as dropped is what
/// was sent (the closing count is read when capture stops, not up to a second before), and the
/// CC holds exactly the target's frames among those seen.
#[test]
fn tapir_run_frozen_through_a_burst_into_a_small_ring_counts_every_frame() {
    let lab = Lab::veth("sr");
    let ring = "ring = { block_size = 65536, block_count = 8, block_timeout_ms = 10 }\n";
    let (text, case, sent) = frozen_burst(&lab, "LIID-SMALL", ring, "", 20);
    let (frames, dropped, matched) = (
        common::closing_count(&text, "frames"),
        common::closing_count(&text, "dropped"),
        common::closing_count(&text, "matched"),
    );
    // A 512 KiB ring holds a few hundred of the 9280 frames.
    assert!(dropped > sent / 2, "{text}");
    assert_eq!(frames + dropped, sent, "{text}");
    let cc = case.join("LIID-SMALL/cc.pcap");
    assert_eq!(common::frame_count(&cc) as u64, matched, "{text}");
    assert_eq!(common::tshark(&cc, Some("ip.addr==198.51.100.7"), &["frame.number"]).len() as u64, matched);
}
