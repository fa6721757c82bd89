//! Live capture through libpcap (cargo feature `libpcap`; `cargo test --features libpcap --test
//! capture_libpcap`), on a veth pair inside a network namespace this test creates (root needed;
//! CI runs as root). A fixture is injected with tcpreplay; what `PcapCapture` hands out is
//! compared with the standard-library-only reader `pcaps/tools/pcapread.py` (sha256 of every
//! frame), and `tapir run` with `backend = "libpcap"` must write a CC stream with as many packets
//! as tshark counts for the target in the fixture. Needs iproute2, ethtool, tcpreplay, tshark, python3.
#![cfg(feature = "libpcap")]

// The helpers of tests/it.rs; this binary uses a few.
#[allow(dead_code)]
mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tapir::capture::pcap_live::{PcapCapture, PcapLiveError};
use tapir::capture::LinkType;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps").join(name)
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace holding a veth pair (frames written to `inj0` arrive on `cap0`), and
/// the processes started in it; all removed on drop, also when a test fails.
struct Lab {
    ns: String,
    children: Vec<Child>,
    tmp: tempfile::TempDir,
}

impl Lab {
    fn veth(tag: &str) -> Lab {
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "these tests create network namespaces and capture on them: run them as root");
        let ns = format!("tppcap-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &ns]).stderr(Stdio::null()).status();
        run("ip", &["netns", "add", &ns]);
        let lab = Lab { ns, children: Vec::new(), tmp: tempfile::tempdir().unwrap() };
        let ns = lab.ns.as_str();
        // No IPv6 autoconfiguration chatter on the link: only the fixture's frames cross it.
        run(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        );
        run(
            "ip",
            &[
                "-n", ns, "link", "add", "name", "cap0", "mtu", "1600", "type", "veth", "peer", "name", "inj0", "mtu",
                "1600",
            ],
        );
        run("ip", &["-n", ns, "link", "set", "cap0", "up"]);
        run("ip", &["-n", ns, "link", "set", "inj0", "up"]);
        // Wire-sized frames, as on a tap port. This matters to libpcap: in immediate mode its
        // ring has fixed slots sized for the largest frame the device may hand up, 64 KiB on a
        // device with offloads, which would leave a few dozen slots in the buffer below.
        for dev in ["cap0", "inj0"] {
            run("ip", &["netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off"]);
        }
        lab
    }

    fn exec(&self, cmd: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).args(cmd);
        c
    }

    fn replay(&self, file: &Path) -> Child {
        self.exec(&["tcpreplay", "-q", "-t", "-i", "inj0", file.to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .expect("tcpreplay")
    }

    /// Runs `f` on a thread that has entered the namespace (sockets made there stay there).
    fn in_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.ns);
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
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
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

/// tshark's count of the frames of `pcap` that `filter` keeps.
fn tshark_count(pcap: &Path, filter: &str) -> usize {
    let out = run("tshark", &["-r", pcap.to_str().unwrap(), "-Y", filter, "-T", "fields", "-e", "frame.number"]);
    out.lines().count()
}

#[test]
fn replayed_fixture_comes_out_byte_identical_with_pcap_stats() {
    let mut lab = Lab::veth("rp");
    let mut cap = lab
        .in_ns(|| PcapCapture::open(&["cap0".to_string()], true, 262_144, 4 << 20, 10))
        .unwrap_or_else(|e| panic!("open: {e}"));
    assert_eq!(cap.link_types().collect::<Vec<_>>(), [LinkType::Ethernet], "veth datalink is DLT_EN10MB");
    let file = fixture("http-put.pcap");
    let want = oracle_frames(&file);
    assert_eq!(want.len(), 464);

    let mut got: Vec<(usize, String, u32, i64)> = Vec::new();
    // Kept by the lab, which reaps it even when an assertion below fails.
    let replay = lab.replay(&file);
    lab.children.push(replay);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut exited = false;
    while Instant::now() < deadline && !(exited && got.len() >= want.len()) {
        cap.poll(Duration::from_millis(20), &mut |fr| {
            assert_eq!(fr.link, LinkType::Ethernet);
            got.push((fr.data.len(), sha256(fr.data), fr.orig_len, fr.ts.nanos()));
        })
        .unwrap_or_else(|e| panic!("poll: {e}"));
        if !exited {
            if let Some(st) = lab.children[0].try_wait().unwrap() {
                assert!(st.success(), "tcpreplay: {st}");
                exited = true;
            }
        }
    }
    // Anything extra would show up here.
    let tail = Instant::now() + Duration::from_millis(300);
    while Instant::now() < tail {
        cap.poll(Duration::from_millis(20), &mut |fr| {
            got.push((fr.data.len(), sha256(fr.data), fr.orig_len, fr.ts.nanos()))
        })
        .unwrap();
    }

    assert_eq!(got.len(), want.len(), "frame count; {:?}", cap.stats());
    for (i, ((len, sha, orig_len, _), (wlen, wsha))) in got.iter().zip(&want).enumerate() {
        assert_eq!((len, sha), (wlen, wsha), "frame {}", i + 1);
        // The fixture is unsnapped: wire length = captured length.
        assert_eq!(*orig_len as usize, *len, "frame {} orig_len", i + 1);
    }
    // Capture times are now-ish and in order (libpcap's timestamps, not the fixture's).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    assert!(got.iter().all(|g| (now - g.3).abs() < 120_000_000_000), "timestamps not near now");
    assert!(got.windows(2).all(|w| w[0].3 <= w[1].3), "timestamps out of order");

    let st = cap.stats().unwrap_or_else(|e| panic!("stats: {e}"));
    assert_eq!(st.interfaces.len(), 1);
    assert_eq!(st.interfaces[0].interface, "cap0");
    assert_eq!((st.received(), st.dropped(), st.handed()), (464, 0, 464), "{st:?}");
}

#[test]
fn tapir_run_with_the_libpcap_backend_writes_the_targets_cc() {
    let lab = Lab::veth("run");
    let work = lab.tmp.path().to_path_buf();
    let config = common::live_config(&work, "LIID-PCAP", "backend = \"libpcap\"\n", "");
    let log = work.join("run.log");
    let mut cmd = lab.exec(&[common::TAPIR, "run", "--config", config.to_str().unwrap()]);
    cmd.stdout(Stdio::null()).stderr(File::create(&log).unwrap());
    // Frozen while 10 copies of the fixture are sent, so that all 4640 frames wait in
    // libpcap's buffer, and the stop order is pending when tapir thaws: the capture thread
    // meets a burst larger than one read hands over (4096 frames), and the graceful stop must
    // read the rest of what the buffer held (once, a full pipeline queue dropped frames here
    // too).
    let loops = 10;
    let file = fixture("http-put.pcap");
    let text = common::run_frozen_through(&mut cmd, &log, || {
        let st = lab
            .exec(&["tcpreplay", "-q", "-t", "--loop", &loops.to_string(), "-i", "inj0", file.to_str().unwrap()])
            .stdout(Stdio::null())
            .status()
            .expect("tcpreplay");
        assert!(st.success(), "tcpreplay: {st}");
    });
    let counts = (common::closing_count(&text, "frames"), common::closing_count(&text, "dropped"));
    assert_eq!(counts, (464 * loops as u64, 0), "{text}");

    let case = common::the_case(&work, "case");
    let cc = case.join("LIID-PCAP/cc.pcap");
    let target = tshark_count(&file, "ip.addr==198.51.100.7");
    assert_eq!(target, 448, "tshark's count of the target's packets in the fixture");
    assert_eq!(tshark_count(&cc, "frame"), target * loops, "CC packets\n{text}");
    assert_eq!(tshark_count(&cc, "ip.addr==198.51.100.7"), target * loops, "CC holds only the target's packets");
    common::verify_case(&case);
}

#[test]
fn no_interface_and_unknown_interface_are_errors_naming_it() {
    assert!(matches!(PcapCapture::open(&[], true, 65535, 1 << 20, 10), Err(PcapLiveError::NoInterfaces)));
    let lab = Lab::veth("ne");
    let e = lab.in_ns(|| PcapCapture::open(&["cap0".into(), "nosuch0".into()], true, 65535, 1 << 20, 10)).unwrap_err();
    assert!(e.to_string().starts_with("nosuch0: libpcap "), "{e}");
}

#[test]
fn config_takes_the_libpcap_backend_with_one_worker_only() {
    use tapir::daemon::config::{parse_config, Backend};
    let text = |workers: u32| {
        format!(
            "[capture]\ninterfaces = [\"eth1\"]\nbackend = \"libpcap\"\nworkers = {workers}\n\
             [paths]\nwarrants = \"w.toml\"\ncase_dir = \"case\"\nspool_dir = \"spool\"\n"
        )
    };
    let c = parse_config(&text(1), Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.capture.backend, Backend::Libpcap);
    // Refused on the workers line (4), saying why.
    let e = parse_config(&text(2), Path::new("t.toml")).unwrap_err();
    assert_eq!(e.line(), 4, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("fanout") && msg.contains("workers = 1"), "{msg}");
}
