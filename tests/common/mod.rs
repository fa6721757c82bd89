//! Helpers shared by the integration tests that run tapir (or talk to it) over the network:
//! synthetic captures (Ethernet/IPv4/UDP frames in a classic pcap), `tapir run` as a daemon
//! with its sd_notify socket, the reference LEMF (`tapir lemf`) as a child process, loopback
//! ports, openssl certificates and TLS clients, shell commands and tshark read-backs.
// Declared once in tests/it.rs, where every helper is used (so dead code warns); capture_libpcap
// declares it too and allows the subset it does not use.

pub mod media;

use std::ffi::OsStr;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tapir::daemon::clock::ManualClock;
use tapir::daemon::notify::Notifier;
use tapir::daemon::{Control, Hooks, RunReport};

pub const TAPIR: &str = env!("CARGO_BIN_EXE_tapir");

/// 2027-01-15T08:00:00Z (`date -u -d @1800000000`), where the synthetic captures start: after
/// the wall clock, so a task activated over X1 now covers every packet released after its
/// activation (the pipeline's clock is packet time).
pub const T0: u32 = 1_800_000_000;

/// RFC 3339 (whole seconds, UTC) of T0 + `secs_after_t0`.
pub fn rfc3339(secs_after_t0: i64) -> String {
    let dt = chrono::DateTime::from_timestamp(i64::from(T0) + secs_after_t0, 0).unwrap();
    dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Dotted quad of an IPv4 address.
pub fn ip_s(ip: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])
}

/// An Ethernet/IPv4/UDP frame from `src_mac` to `dst_mac`, `src`:`sport` to `dst`:`dport`,
/// with a correct IPv4 header checksum (UDP checksum 0: none).
pub fn udp_frame_macs(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let mut sum: u32 = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let ck = !(sum as u16);
    ip[10] = (ck >> 8) as u8;
    ip[11] = ck as u8;
    f.extend_from_slice(&ip);
    let ulen = (8 + payload.len()) as u16;
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[(ulen >> 8) as u8, ulen as u8, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// An Ethernet/IPv4/UDP frame (02:00:00:00:00:01 -> 02:00:00:00:00:02, port 4000 -> 5000) with a
/// correct IPv4 header checksum.
pub fn udp_frame(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    udp_frame_macs([0x02, 0, 0, 0, 0, 1], [0x02, 0, 0, 0, 0, 2], src, dst, 4000, 5000, payload)
}

/// A classic pcap record: its 16-byte header, and its frame.
pub type PcapRecord = ([u8; 16], Vec<u8>);

/// The records of a classic little-endian pcap as tcpdump writes it, after the file header.
pub fn classic_pcap_records(path: &Path) -> (Vec<u8>, Vec<PcapRecord>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[0..4], &0xa1b2c3d4u32.to_le_bytes(), "tcpdump's classic pcap");
    let mut records = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let header: [u8; 16] = bytes[at..at + 16].try_into().unwrap();
        let len = u32::from_le_bytes(header[8..12].try_into().unwrap()) as usize;
        records.push((header, bytes[at + 16..at + 16 + len].to_vec()));
        at += 16 + len;
    }
    (bytes[..24].to_vec(), records)
}

/// A classic pcap (µs, Ethernet) of (seconds after T0, microseconds, frame).
pub fn write_pcap(path: &Path, frames: &[(u32, u32, Vec<u8>)]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (s, us, f) in frames {
        out.extend_from_slice(&(T0 + s).to_le_bytes());
        out.extend_from_slice(&us.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

/// The one case directory a run made under `dir/case_dir`.
pub fn the_case(dir: &Path, case_dir: &str) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(case_dir)).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(v.len(), 1, "{v:?}");
    v.pop().unwrap()
}

/// `tapir verify` passes on a case directory.
pub fn verify_case(case: &Path) {
    let o = Command::new(TAPIR).arg("verify").arg(case).output().unwrap();
    assert!(o.status.success(), "verify: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

/// `dir/w.toml`: one iri+cc warrant `liid` on `targets`, in force 2020-2100.
pub fn one_warrant(dir: &Path, liid: &str, targets: &[&str]) -> PathBuf {
    let w = dir.join("w.toml");
    let targets = targets.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ");
    std::fs::write(
        &w,
        format!(
            "[[warrant]]\nliid = \"{liid}\"\nstart = \"2020-01-01T00:00:00Z\"\nend = \"2100-01-01T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [{targets}]\n"
        ),
    )
    .unwrap();
    w
}

/// `tapir replay CAPTURES... ARGS... --out OUT -q`; asserts it succeeded. Returns the closing
/// summary (stdout).
pub fn replay_into<C, A>(captures: C, args: A, out: &Path) -> String
where
    C: IntoIterator,
    C::Item: AsRef<std::ffi::OsStr>,
    A: IntoIterator,
    A::Item: AsRef<std::ffi::OsStr>,
{
    let o =
        Command::new(TAPIR).arg("replay").args(captures).args(args).arg("--out").arg(out).arg("-q").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `tapir replay PCAP` into `out` under [`one_warrant`] `liid` on `targets`, with `args` added;
/// asserts it succeeded and that the case verifies. Returns the closing summary (stdout).
pub fn replay_one_warrant(dir: &Path, liid: &str, targets: &[&str], pcap: &Path, out: &Path, args: &[&str]) -> String {
    let w = one_warrant(dir, liid, targets);
    let summary = replay_into(
        [pcap],
        [OsStr::new("--warrants"), w.as_os_str()].into_iter().chain(args.iter().map(OsStr::new)),
        out,
    );
    verify_case(out);
    summary
}

/// Sends signal `sig` (e.g. "TERM") to a child with kill(1).
pub fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status().unwrap();
    assert!(st.success());
}

/// What tcpdump captures on loopback into `pcap` (`filter`: its expression, word by word) while
/// `run` runs, and `run`'s result. Immediate mode: without it, frames in a ring block not yet
/// handed over are lost at the stop; a second either side for tcpdump to start and drain.
pub fn capture_lo<T>(pcap: &Path, filter: &[&str], run: impl FnOnce() -> T) -> T {
    let mut dump = Command::new("tcpdump")
        .args(["-i", "lo", "--immediate-mode", "-B", "32768", "-U", "-w"])
        .arg(pcap)
        .args(filter)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_millis(1000));
    let out = run();
    std::thread::sleep(Duration::from_millis(1000));
    signal(&dump, "INT");
    dump.wait().unwrap();
    out
}

/// Waits for a child to exit; kills it and panics after `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Messages to a NOTIFY_SOCKET, gathered on a thread.
pub struct NotifyListener {
    pub path: PathBuf,
    rx: mpsc::Receiver<String>,
    /// The socket's own directory: a restarted daemon gets a fresh socket, and the path stays
    /// well within the 108 bytes of a Unix socket address.
    _dir: tempfile::TempDir,
}

impl NotifyListener {
    pub fn bind() -> NotifyListener {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        // The thread ends after a minute without messages (or at the first one after the
        // listener is gone).
        sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok(n) = sock.recv(&mut buf) {
                if tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                    return;
                }
            }
        });
        NotifyListener { path, rx, _dir: dir }
    }

    /// Waits for a message holding `line` as one of its lines; adds every message to `seen`.
    pub fn wait_for(&self, line: &str, seen: &mut Vec<String>, limit: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Ok(m) = self.rx.recv_timeout(Duration::from_millis(50)) {
                let hit = m.lines().any(|l| l == line);
                seen.push(m);
                if hit {
                    return true;
                }
            }
        }
        false
    }
}

/// `tapir run --config <config>` as the daemon tests start it: no watchdog, stdout discarded,
/// stderr inherited. Callers add what a test needs (WATCHDOG_USEC, TAPIR_LOG, a log file).
pub fn run_command(config: &Path) -> Command {
    let mut c = Command::new(TAPIR);
    c.args(["run", "--config"]).arg(config).env_remove("WATCHDOG_USEC").stdout(Stdio::null()).stderr(Stdio::inherit());
    c
}

/// A `tapir run` child with its sd_notify listener; killed on drop if a test fails half-way.
pub struct Daemon {
    pub child: Child,
    pub notify: NotifyListener,
}

impl Daemon {
    /// Spawns `cmd` (see [`run_command`]) with NOTIFY_SOCKET set and waits for READY=1: 20 s at
    /// most, and panics at once if the daemon exits first. Returns it and when READY=1 came.
    pub fn start(cmd: &mut Command) -> (Daemon, Instant) {
        let notify = NotifyListener::bind();
        let child = cmd.env("NOTIFY_SOCKET", &notify.path).spawn().unwrap();
        let mut d = Daemon { child, notify };
        let t = Instant::now();
        let mut seen = Vec::new();
        while !d.notify.wait_for("READY=1", &mut seen, Duration::from_millis(100)) {
            if let Some(st) = d.child.try_wait().unwrap() {
                panic!("tapir run exited before READY=1: {st}");
            }
            assert!(t.elapsed() < Duration::from_secs(20), "no READY=1: {seen:?}");
        }
        (d, Instant::now())
    }

    /// SIGTERM; it must exit 0 within 20 s.
    pub fn stop(&mut self) {
        signal(&self.child, "TERM");
        let st = wait_exit(&mut self.child, Duration::from_secs(20));
        assert!(st.success(), "tapir run exited {st:?}");
    }
}

/// Writes `w.toml` (warrant `liid` on 198.51.100.7, the target of the `http-put.pcap` fixture,
/// in a window around now: live frames carry the capture time) and `tapir.toml` (capture on
/// `cap0`, promiscuous, one worker, with `capture` lines added to `[capture]` and `more`
/// tables after `[paths]`) in `work`; returns the config's path.
pub fn live_config(work: &Path, liid: &str, capture: &str, more: &str) -> PathBuf {
    std::fs::write(
        work.join("w.toml"),
        format!(
            "[[warrant]]\nliid = \"{liid}\"\nstart = \"2020-01-01T00:00:00Z\"\nend = \"2100-01-01T00:00:00Z\"\n\
             scope = \"iri+cc\"\ntargets = [\"ipv4:198.51.100.7\"]\n"
        ),
    )
    .unwrap();
    let config = work.join("tapir.toml");
    std::fs::write(
        &config,
        format!(
            "[capture]\ninterfaces = [\"cap0\"]\nworkers = 1\npromiscuous = true\n{capture}\
             [paths]\nwarrants = \"{w}/w.toml\"\ncase_dir = \"{w}/case\"\nspool_dir = \"{w}/spool\"\n{more}",
            w = work.display()
        ),
    )
    .unwrap();
    config
}

/// `tapir run` (`cmd`, its stderr going to `log`) frozen with SIGSTOP while `inject` sends
/// frames, then given SIGTERM and SIGCONT, so that it thaws with a backlog in its capture
/// buffer and the stop order pending. Returns the log once it has exited 0 (60 s at most).
pub fn run_frozen_through(cmd: &mut Command, log: &Path, inject: impl FnOnce()) -> String {
    let (mut d, _) = Daemon::start(cmd);
    signal(&d.child, "STOP");
    inject();
    // The veth hands the last frames to the capture buffer.
    std::thread::sleep(Duration::from_millis(50));
    signal(&d.child, "TERM");
    signal(&d.child, "CONT");
    let st = wait_exit(&mut d.child, Duration::from_secs(60));
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(st.success(), "tapir run exited {st:?}:\n{text}");
    text
}

/// A count from `tapir run`'s closing log line (`tapir stopped frames=… dropped=…`), by its key.
pub fn closing_count(log: &str, key: &str) -> u64 {
    let line = log.lines().find(|l| l.contains("tapir stopped")).unwrap_or_else(|| panic!("no closing line:\n{log}"));
    let prefix = format!("{key}=");
    let v = line.split_whitespace().find_map(|w| w.strip_prefix(prefix.as_str()));
    v.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {key} in {line}"))
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `script` with `sh -e` in `dir`; panics with its stderr if it fails, returns its stdout.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh").arg("-ec").arg(script).current_dir(dir).output().expect("sh");
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` like `Command::output` and also returns its peak RSS in KiB (with the descendants it
/// waited for), as GNU time measures it (`%M`, from wait4 of its one child). Not
/// getrusage(RUSAGE_CHILDREN) here: that is the largest child this process ever waited for (other
/// tests' children too: every file's tests share the process), and a child's figure starts at
/// this process's own peak RSS, which it inherits at its exec (through posix_spawn's vfork too).
/// time is a small process in between. Keeps `cmd`'s program, arguments, environment changes and
/// directory (not an `env_clear`, which no caller uses).
pub fn output_and_peak_rss_kib(cmd: &Command) -> (std::process::Output, i64) {
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut timed = Command::new("time");
    timed.args(["-f", "%M", "-o"]).arg(report.path()).arg("--").arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        timed.current_dir(d);
    }
    let out = timed.output().unwrap_or_else(|e| panic!("GNU time: {e}"));
    // A "Command exited with non-zero status" line comes first when the command failed.
    let report = std::fs::read_to_string(report.path()).unwrap();
    let kib = report.lines().last().and_then(|l| l.trim().parse().ok());
    (out, kib.unwrap_or_else(|| panic!("GNU time's report: {report:?}")))
}

/// openssl's options for a new EC P-256 key without a passphrase.
const EC_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

/// Certificates made with openssl in `d`, valid 2 days, on EC P-256 keys: a self-signed CA
/// `<ca>.pem` (key `<ca>.key`, CN `<ca>`) for each of `cas`, then for each `(file, cn, ca, ext)`
/// of `leaves` a certificate `<file>.pem` (key `<file>.key`) for CN `cn`, signed by CA `ca`, with
/// the extensions in the file `ext`. Two extension files are written first: `srv.ext` (IP SAN
/// 127.0.0.1, serverAuth) and `cli.ext` (clientAuth); a caller may write others beforehand.
pub fn make_pki(d: &Path, cas: &[&str], leaves: &[(&str, &str, &str, &str)]) {
    for ca in cas {
        sh(d, &format!("openssl req -x509 {EC_KEY} -keyout {ca}.key -out {ca}.pem -subj /CN={ca} -days 2"));
    }
    std::fs::write(d.join("srv.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").unwrap();
    std::fs::write(d.join("cli.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (file, cn, ca, ext) in leaves {
        sh(
            d,
            &format!(
                "openssl req {EC_KEY} -keyout {file}.key -out {file}.csr -subj /CN={cn} && \
                 openssl x509 -req -in {file}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial \
                 -out {file}.pem -days 2 -extfile {ext}"
            ),
        );
    }
}

/// The X1 endpoint's certificates in `d`: CA `ca` (trusted), `other` (not); server `srv`; clients
/// `admf` (CN admf-1), `auditor` (CN auditor-1) and each `(file, cn)` of `more_clients` from
/// `ca`; `rogue` (CN admf-1) from `other`; `expired` (CN admf-1, valid only in January 2020) from
/// `ca`, made with `openssl ca -startdate/-enddate` since OpenSSL 3.0's x509 cannot backdate.
pub fn make_x1_pki(d: &Path, more_clients: &[(&str, &str)]) {
    let mut leaves = vec![("srv", "srv", "ca", "srv.ext"), ("admf", "admf-1", "ca", "cli.ext")];
    leaves.push(("auditor", "auditor-1", "ca", "cli.ext"));
    leaves.extend(more_clients.iter().map(|&(file, cn)| (file, cn, "ca", "cli.ext")));
    leaves.push(("rogue", "admf-1", "other", "cli.ext"));
    make_pki(d, &["ca", "other"], &leaves);
    std::fs::write(
        d.join("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = newcerts\nserial = serial\n\
         default_md = sha256\npolicy = any\nunique_subject = no\n[any]\ncommonName = supplied\n\
         [cli]\nextendedKeyUsage = clientAuth\n",
    )
    .unwrap();
    sh(
        d,
        &format!(
            "mkdir -p newcerts && : > index.txt && echo 1000 > serial && \
             openssl req {EC_KEY} -keyout expired.key -out expired.csr -subj /CN=admf-1 && \
             openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr -out expired.pem \
             -startdate 20200101000000Z -enddate 20200102000000Z -extensions cli -notext"
        ),
    );
}

/// SHA-256 of the DER of `<file>.pem` in `d`, hex, as `openssl x509 -outform DER | sha256sum`.
pub fn fingerprint(d: &Path, file: &str) -> String {
    let out = sh(d, &format!("openssl x509 -in {file}.pem -outform DER | sha256sum"));
    out.split_whitespace().next().unwrap().to_string()
}

/// A TLS 1.3 client trusting `ca.pem` in `d`, with the client certificate `<cert>.pem`
/// (key `<cert>.key`) or, with None, none.
pub fn tls_connector(d: &Path, cert: Option<&str>) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(d.join("ca.pem")).unwrap()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match cert {
        None => b.with_no_client_auth(),
        Some(n) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(d.join(format!("{n}.pem"))).unwrap()],
                PrivateKeyDer::from_pem_file(d.join(format!("{n}.key"))).unwrap(),
            )
            .unwrap(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A TCP port on 127.0.0.1 that was free when asked, for a server a test starts next.
///
/// The port is given out once per test process, and it is below the kernel's ephemeral range
/// (32768 and up by default): a port that `bind(0)` picked and released could be picked again
/// by a test running in parallel, or taken as the local port of some outgoing connection,
/// before the server bound it. Two LEMFs on one port once mixed two tests' PDUs in CI.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Option<(u16, std::collections::BTreeSet<u16>)>> = std::sync::Mutex::new(None);
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    let mut g = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    // Test binaries run one after another; each starts at its own place in the range.
    let (next, given) = g.get_or_insert_with(|| ((std::process::id() % u32::from(SPAN)) as u16, Default::default()));
    for _ in 0..SPAN {
        let port = LOW + *next;
        *next = (*next + 1) % SPAN;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free TCP port in {LOW}..{}", LOW + SPAN);
}

/// Waits until something accepts connections on 127.0.0.1:`port`; panics after 20 s.
pub fn wait_listening(port: u16) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "nothing listening on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `tapir lemf` (tapir's reference LEMF: it answers keep-alives) writing under `out`; killed
/// on drop if a test fails half-way.
pub struct Lemf {
    pub child: Child,
    out: PathBuf,
}

impl Lemf {
    /// Starts it on `hi2` for both HI2 and HI3 (an X1 destination's `ipAddressAndPort`: the LEMF
    /// tells the channels apart by what each connection carries) or, with `hi3`, one port each;
    /// returns once it listens.
    pub fn start(hi2: u16, hi3: Option<u16>, out: &Path) -> Lemf {
        let mut cmd = Command::new(TAPIR);
        match hi3 {
            None => cmd.args(["lemf", "--listen", &format!("127.0.0.1:{hi2}")]),
            Some(hi3) => cmd.args([
                "lemf",
                "--listen-hi2",
                &format!("127.0.0.1:{hi2}"),
                "--listen-hi3",
                &format!("127.0.0.1:{hi3}"),
            ]),
        };
        let child = cmd.arg("--out").arg(out).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let lemf = Lemf { child, out: out.to_path_buf() };
        wait_listening(hi2);
        if let Some(hi3) = hi3 {
            wait_listening(hi3);
        }
        lemf
    }

    /// Stops it with SIGTERM, checks that it exited 0 and returns its report.json.
    pub fn stop(mut self) -> serde_json::Value {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let st = self.child.wait().unwrap();
        assert!(st.success(), "tapir lemf exited {st:?}");
        serde_json::from_str(&std::fs::read_to_string(self.out.join("report.json")).unwrap()).unwrap()
    }
}

impl Drop for Lemf {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ip.src ip.dst ip.len` (or IPv6) of every packet of a capture, by Wireshark ([`frames`]).
pub fn ip_packets(pcap: &Path) -> Vec<String> {
    // Inner addresses: the last occurrence of nested headers.
    frames(pcap, None, &["ip.src", "ip.dst", "ip.len", "ipv6.src", "ipv6.dst"])
        .into_iter()
        .map(|cols| cols.iter().map(|f| f.rsplit(',').next().unwrap_or("")).collect::<Vec<_>>().join(" "))
        .collect()
}

/// The `fields` of each packet of a capture (of those matching the display `filter`), joined by
/// `|`, by Wireshark ([`frames`]); none if the file does not exist.
pub fn tshark(pcap: &Path, filter: Option<&str>, fields: &[&str]) -> Vec<String> {
    frames(pcap, filter, fields).into_iter().map(|cols| cols.join("|")).collect()
}

/// The `fields` of each packet of a capture (of those matching the display `filter`), as `tshark
/// -T fields` prints them (every occurrence, comma-separated); none if the file does not exist.
///
/// Asked of one of a pool of [`Sharkd`]s, which the test threads share: a tshark run costs
/// 0.3 s of CPU before it reads a frame, and the suite asks about a hundred such questions. But
/// sharkd answers with column text, which for some fields is not what tshark prints (a value's
/// name instead of its number, `0x0321 (801)` for `0x0321`): only the fields of
/// [`SAME_IN_COLUMNS`] and [`HEX_AND_DECIMAL`] are asked of it, the others of tshark.
pub fn frames(pcap: &Path, filter: Option<&str>, fields: &[&str]) -> Vec<Vec<String>> {
    static POOL: std::sync::Mutex<Vec<Sharkd>> = std::sync::Mutex::new(Vec::new());
    if !pcap.exists() {
        return Vec::new();
    }
    if !fields.iter().all(|f| SAME_IN_COLUMNS.contains(f) || HEX_AND_DECIMAL.contains(f)) {
        return tshark_fields(pcap, filter, fields);
    }
    let idle = POOL.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let mut sharkd = idle.unwrap_or_else(Sharkd::spawn);
    sharkd.load(pcap);
    let rows = sharkd.frames(filter, fields);
    // A sharkd holds the capture it read until its next load: one that read a large capture
    // ends here rather than keep its memory for the rest of the run.
    if std::fs::metadata(pcap).map_or(0, |m| m.len()) < 32 << 20 {
        POOL.lock().unwrap_or_else(|p| p.into_inner()).push(sharkd);
    }
    match rows {
        Some(rows) => rows
            .into_iter()
            .map(|(_, mut cols)| {
                for (col, _) in cols.iter_mut().zip(fields).filter(|(_, f)| HEX_AND_DECIMAL.contains(f)) {
                    *col = col.split(',').map(|v| v.split(' ').next().unwrap_or("")).collect::<Vec<_>>().join(",");
                }
                cols
            })
            .collect(),
        None => tshark_fields(pcap, filter, fields),
    }
}

/// Fields whose column text in sharkd is the value as `tshark -T fields` prints it (addresses,
/// lengths, numbers without names, epoch times), as a run of the suite comparing both showed.
const SAME_IN_COLUMNS: &[&str] = &[
    "frame.number",
    "frame.len",
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "ip.len",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.plen",
    "tcp.len",
    "tcp.seq_raw",
];

/// Fields whose column adds the decimal to the hexadecimal tshark prints ("0x0321 (801)"): asked
/// of sharkd too, each value cut to its hexadecimal.
const HEX_AND_DECIMAL: &[&str] = &["ip.id"];

/// [`frames`] by a tshark run of its own: for fields sharkd's columns show otherwise, and for
/// values longer than they hold.
fn tshark_fields(pcap: &Path, filter: Option<&str>, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap);
    if let Some(f) = filter {
        cmd.args(["-Y", f]);
    }
    cmd.args(["-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "tshark: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().lines().map(|l| l.split('\t').map(str::to_string).collect()).collect()
}

/// A child the test talks to line by line over its stdin and stdout; `what` names what to
/// install when it does not start.
fn co_process(
    cmd: &mut Command,
    what: &str,
) -> (Child, std::process::ChildStdin, std::io::BufReader<std::process::ChildStdout>) {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdin = child.stdin.take().unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    (child, stdin, stdout)
}

/// Wireshark's dissection engine as a service (`sharkd -`, from the package that brings tshark),
/// for tests that ask many questions of captures: tshark spends about 0.3 s of CPU registering
/// its dissectors before it reads a frame, sharkd once. Each [`Sharkd::load`] starts afresh,
/// with no dissection state from the capture before, as a tshark run of its own would. But
/// sharkd 4.0 keeps the frames each display filter matched, by the filter's text, across loads:
/// the same filter on the next capture answered for the one before. Each load's filters
/// therefore carry a clause of their own that matches no frame (`frame.number == 4000000000 +
/// the load's number`), which makes their text new.
pub struct Sharkd {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    id: u64,
    loads: u64,
}

impl Sharkd {
    pub fn spawn() -> Sharkd {
        let (child, stdin, stdout) = co_process(
            Command::new("sharkd").arg("-").stderr(Stdio::null()),
            "sharkd (apt-get install tshark brings it)",
        );
        Sharkd { child, stdin, stdout, id: 0, loads: 0 }
    }

    /// A preference, as `tshark -o name:value` sets it.
    pub fn set_pref(&mut self, name: &str, value: &str) {
        self.call("setconf", serde_json::json!({ "name": name, "value": value }));
    }

    /// Reads `capture` (every frame dissected, reassembly included).
    pub fn load(&mut self, capture: &Path) {
        self.loads += 1;
        assert!(self.loads < 200_000_000, "a load's filter clause would reach frame numbers");
        let loaded = self.call("load", serde_json::json!({ "file": capture }));
        assert_eq!(loaded["status"], "OK", "sharkd could not load {}: {loaded}", capture.display());
    }

    /// (frame number, `fields`) of each frame of the loaded capture that matches the display
    /// `filter`: every occurrence of a field comma-separated, as `tshark -T fields -E
    /// occurrence=a -E aggregator=,` prints it. `None` when a value reaches Wireshark's column
    /// limit (2047 characters), where sharkd cuts it and tshark would not: ask tshark then.
    pub fn frames(&mut self, filter: Option<&str>, fields: &[&str]) -> Option<Vec<(u64, Vec<String>)>> {
        let mut params: serde_json::Map<String, serde_json::Value> =
            fields.iter().enumerate().map(|(i, f)| (format!("column{i}"), format!("{f}:0").into())).collect();
        if let Some(f) = filter {
            params.insert("filter".into(), format!("({f}) || frame.number == {}", 4_000_000_000 + self.loads).into());
        }
        let frames = self.call("frames", serde_json::Value::Object(params));
        let rows: Vec<(u64, Vec<String>)> = frames
            .as_array()
            .expect("sharkd frames: a list")
            .iter()
            .map(|f| {
                let c = f["c"].as_array().expect("sharkd frame: columns");
                let num = f["num"].as_u64().expect("sharkd frame: number");
                (num, c.iter().map(|v| v.as_str().expect("column text").to_string()).collect())
            })
            .collect();
        let cut = rows.iter().flat_map(|(_, r)| r).any(|c| c.chars().count() >= 2047);
        (!cut).then_some(rows)
    }

    /// The captured bytes of frame `number` (from 1) of the loaded capture.
    pub fn frame_bytes(&mut self, number: u64) -> Vec<u8> {
        use base64::Engine;
        let f = self.call("frame", serde_json::json!({ "frame": number, "bytes": true }));
        let b64 = f["bytes"].as_str().unwrap_or_else(|| panic!("sharkd frame {number}: no bytes: {f}"));
        base64::engine::general_purpose::STANDARD.decode(b64).expect("sharkd frame bytes: base64")
    }

    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        use std::io::{BufRead, Write};
        self.id += 1;
        let req = serde_json::json!({ "jsonrpc": "2.0", "id": self.id, "method": method, "params": params });
        writeln!(self.stdin, "{req}").expect("sharkd takes a request");
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("sharkd answers");
        let mut answer: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("sharkd: {e}: {line}"));
        assert_eq!(answer["id"], self.id, "sharkd answered another request: {line}");
        assert!(answer.get("error").is_none(), "sharkd {method}: {line}");
        answer["result"].take()
    }
}

impl Drop for Sharkd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The frames of a capture, by capinfos (Wireshark's reader without its dissectors: a count
/// needs no dissection, and tshark's start-up costs 0.3 s of CPU); 0 if the file does not exist.
pub fn frame_count(pcap: &Path) -> usize {
    if !pcap.exists() {
        return 0;
    }
    let o = Command::new("capinfos").args(["-c", "-M"]).arg(pcap).output().expect("capinfos (apt-get install tshark)");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "capinfos {}: {out}{}", pcap.display(), String::from_utf8_lossy(&o.stderr));
    let n = out.lines().find_map(|l| l.strip_prefix("Number of packets:")).unwrap_or_else(|| panic!("capinfos: {out}"));
    n.trim().parse().unwrap_or_else(|e| panic!("capinfos: {e}: {out}"))
}

/// Microseconds since the epoch of a tshark `frame.time_epoch` ("1800000000.100000000"), read
/// as text to the exact microsecond.
pub fn epoch_us(field: &str) -> i64 {
    let (s, f) = field.trim().split_once('.').unwrap();
    let f = format!("{:0<6}", f);
    s.parse::<i64>().unwrap() * 1_000_000 + f[..6].parse::<i64>().unwrap()
}

/// `tests/data/x1/validate_batch.py`: X1 documents against the shared ETSI schemas (and
/// tapir's extension schema), one python for many documents, since building the schemas takes
/// it about a second. `x1_core` checks that it judges as the shared `x1_validate.py` does.
pub struct XsdBatch {
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    child: Child,
}

impl XsdBatch {
    pub fn spawn() -> XsdBatch {
        let (child, stdin, stdout) = co_process(
            Command::new("python3").args([
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/x1/validate_batch.py"),
                concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/schemas/etsi"),
                concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/tapir-x1-ext.xsd"),
            ]),
            "python3 (with xmlschema: pip install xmlschema)",
        );
        XsdBatch { stdin, stdout, child }
    }

    /// `valid` or `invalid: <first error>`; `kind` is `etsi` (the shared schemas) or `ext`
    /// (plus tapir's targetIdentifierExtension schema).
    pub fn validate(&mut self, kind: &str, doc: &[u8]) -> String {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{kind} {}", doc.len()).unwrap();
        self.stdin.write_all(doc).unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the batch validator died");
        line.trim().to_string()
    }
}

impl Drop for XsdBatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/data/etsi/hi2_lemf.py`: the shared `lemf_check.py` (asn1tools, the plain ETSI
/// subset), unchanged, with every PDU it receives also decoded by asn1tools against the subset
/// merged with tapir's additions (`tools/tapir_asn1.py`). It exits `idle` seconds after the last
/// data, counted only once [`PyLemf::finish`] tells it the sender is done (a pause while tapir
/// still works, on a busy machine, does not end it early); `finish` waits for that and returns
/// lemf_check's report and the PDUs.
pub struct PyLemf {
    child: Child,
    report: PathBuf,
}

impl PyLemf {
    /// Listens on 127.0.0.1 `hi2` and `hi3`; returns once both accept connections.
    pub fn start(hi2: u16, hi3: u16, report: &Path) -> PyLemf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let child = Command::new("python3")
            .arg(root.join("tests/data/etsi/hi2_lemf.py"))
            .arg(root.join("../shared/tools/lemf_check.py"))
            .args(["--hi2", &hi2.to_string(), "--hi3", &hi3.to_string(), "--idle", "0.3"])
            .args(["--max", "300", "--report"])
            .arg(report)
            .spawn()
            .expect("python3");
        wait_listening(hi2);
        wait_listening(hi3);
        PyLemf { child, report: report.to_path_buf() }
    }

    /// Once the sender is done (tapir exited, its delivery confirmed): waits for it to exit,
    /// 0.3 s after the last data; lemf_check's report, and each PDU as `{"channel", "pdu"}` (or
    /// `{"channel", "error", "hex"}` for one the merged schema does not decode).
    pub fn finish(mut self) -> (serde_json::Value, Vec<serde_json::Value>) {
        signal(&self.child, "USR1");
        let st = self.child.wait().unwrap();
        assert!(st.success(), "hi2_lemf.py exited {st:?}");
        let report = serde_json::from_str(&std::fs::read_to_string(&self.report).unwrap()).unwrap();
        let mut p = self.report.clone().into_os_string();
        p.push(".pdus.jsonl");
        let pdus = std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (report, pdus)
    }
}

impl Drop for PyLemf {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TapirIRI (`nationalIPIRIParameters.tapir`) of every HI2 PDU that carries one, from the
/// PDUs [`PyLemf::finish`] returns, as asn1tools decoded them.
pub fn hi2_tapir(pdus: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    pdus.iter()
        .filter(|p| p["channel"] == "hi2")
        .filter_map(|p| {
            p["pdu"]["payload"]["iRIPayloadSequence"][0]["iRIContents"]["iPIRI"]["iPIRIContents"]
                .get("nationalIPIRIParameters")
        })
        .map(|n| &n["tapir"])
        .collect()
}

/// The JSON lines of a file (none if it does not exist).
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
        .unwrap_or_default()
}

/// `[capture] pipelines = n` in a `tapir run` config: its frames go to `n` pipeline workers.
pub fn with_pipelines(config: &Path, n: u32) {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, text.replacen("[capture]\n", &format!("[capture]\npipelines = {n}\n"), 1)).unwrap();
}

/// The control plane of the VM-image fixture (`pcaps/app/vmi.pcap`, whose expect file is `e`):
/// the image registered with the upload's digest 60 s after the capture's first packet, and a
/// VM started from it at 100 s. The events file, and the VM's start (epoch seconds).
pub fn vmi_fixture_events(dir: &Path, e: &serde_json::Value) -> (PathBuf, i64) {
    let first = e["capinfos"]["first_packet_time"].as_str().unwrap();
    let t0 = chrono::DateTime::parse_from_rfc3339(first).unwrap().timestamp();
    let at = |s: i64| chrono::DateTime::from_timestamp(t0 + s, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let p = dir.join("events.jsonl");
    std::fs::write(
        &p,
        format!(
            "{{\"time\":\"{}\",\"event\":\"image.create\",\"image\":\"img-joe-1\",\"owner\":\"joe\",\"name\":\"joe-vm.qcow2\",\"sha256\":\"{}\"}}\n\
             {{\"time\":\"{}\",\"event\":\"instance.start\",\"instance\":\"vm-77\",\"owner\":\"ann\",\"image\":\"img-joe-1\",\"ports\":[{{\"mac\":\"fa:16:3e:00:00:77\",\"ips\":[\"10.0.0.77\"]}}]}}\n",
            at(60),
            e["vmi"]["image_sha256"].as_str().unwrap(),
            at(100)
        ),
    )
    .unwrap();
    (p, t0 + 100)
}

/// Whether tapir must give an object MD5 and SHA-512 beside its SHA-256: it does for disk
/// images, which `file`(1) (libmagic, not tapir) recognises in the stored bytes at `stored`, or
/// which the object's name (`name`, the client's) says are one.
pub fn disk_image(name: Option<&str>, stored: &Path) -> bool {
    const MAGIC: &[&str] = &[
        "QEMU QCOW",
        "VMware4 disk image",
        "VirtualBox Disk Image",
        "Microsoft Disk Image",
        "DOS/MBR boot sector",
        "ISO 9660",
        "ext2 filesystem",
        "ext3 filesystem",
        "ext4 filesystem",
        "LVM2",
    ];
    let out = Command::new("file").arg("-b").arg(stored).output().expect("file(1) (Debian: file)");
    let says = String::from_utf8_lossy(&out.stdout);
    name.is_some_and(image_named) || MAGIC.iter().any(|m| says.contains(m))
}

/// Whether a file name ends as a disk image's (`joe-disk.img`, `vm.QCOW2`).
pub fn image_named(name: &str) -> bool {
    const EXTENSIONS: &[&str] = &["qcow2", "qcow", "img", "raw", "vmdk", "vhd", "vhdx", "vdi", "iso", "ova"];
    name.rsplit('.')
        .next()
        .filter(|e| *e != name)
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The digests an object gets beside its SHA-256, which names every object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digests {
    /// A disk image: MD5 and SHA-512 too, as image services record them.
    Image,
    /// An S3 object (or part): its MD5 too, its ETag.
    S3,
    /// Anything else.
    Sha256,
}

impl Digests {
    /// What an expect file's entry `f` (or a name) should get: an image by its name, an S3
    /// object or part by its request (`uploadId` or `partNumber` in its URI).
    pub fn of_expected(f: &serde_json::Value) -> Digests {
        let uri = f["uri"].as_str().unwrap_or("");
        if f["name"].as_str().is_some_and(image_named) {
            Digests::Image
        } else if uri.contains("uploadId=") || uri.contains("partNumber=") {
            Digests::S3
        } else {
            Digests::Sha256
        }
    }
}

/// Checks object `o`'s MD5 and SHA-512 (an `objects.jsonl` line or an object IRI) against those
/// of `want` (an expect file's entry, from md5sum and sha512sum): the ones `kind` gets equal,
/// the others absent.
pub fn assert_image_digests(o: &serde_json::Value, want: &serde_json::Value, kind: Digests, what: &str) {
    let got = (o["md5"].as_str(), o["sha512"].as_str());
    let md5 = want["md5"].as_str().expect("the expected MD5");
    match kind {
        Digests::Image => {
            let sha512 = want["sha512"].as_str().expect("the expected SHA-512");
            assert_eq!(got, (Some(md5), Some(sha512)), "{what}: a disk image's MD5 and SHA-512");
        }
        Digests::S3 => assert_eq!(got, (Some(md5), None), "{what}: an S3 object's MD5 (its ETag) only"),
        Digests::Sha256 => assert_eq!(got, (None, None), "{what}: not a disk image, SHA-256 only"),
    }
}

/// `tapir run` in this process on a virtual clock ([`ManualClock`]): the test moves time, and the
/// paced replay, the source's quiet-link clock, the loop's 100 ms flushes and X1's tick follow
/// it. No outcome depends on how busy the machine is, and seconds of a quiet link take
/// milliseconds.
pub struct VirtualRun {
    pub clock: Arc<ManualClock>,
    pub control: mpsc::Sender<Control>,
    pub notify: NotifyListener,
    pub seen: Vec<String>,
    run: Option<std::thread::JoinHandle<anyhow::Result<RunReport>>>,
}

/// A test that fails midway still stops its run (on the frozen clock it would never end).
impl Drop for VirtualRun {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Stop);
    }
}

impl VirtualRun {
    pub fn start(config: &Path) -> VirtualRun {
        let config = tapir::daemon::load_config(config).unwrap();
        let clock = ManualClock::new();
        let notify = NotifyListener::bind();
        let hooks = Hooks {
            signals: false,
            clock: clock.clone(),
            notify: Some(Notifier::new(notify.path.to_str().unwrap()).unwrap()),
            ..Hooks::default()
        };
        let control = hooks.control.0.clone();
        let run = std::thread::spawn(move || tapir::daemon::run(&config, hooks));
        let mut seen = Vec::new();
        assert!(notify.wait_for("READY=1", &mut seen, Duration::from_secs(30)), "{seen:?}");
        VirtualRun { clock, control, notify, seen, run: Some(run) }
    }

    /// Moves the clock to `secs` after the start, `step` at a time, each step once the run is
    /// quiet: every frame due so far taken by the loop.
    pub fn advance_to(&self, secs: f64, step: Duration) {
        let to = Duration::from_secs_f64(secs);
        loop {
            assert!(self.clock.wait_until_quiet(Duration::from_secs(20)), "the run is never quiet");
            let now = self.clock.elapsed();
            if now >= to {
                return;
            }
            self.clock.advance(step.min(to - now));
        }
    }

    /// Waits (20 s of real time at most) for an sd_notify message with the line `line`, such as
    /// the STATUS that ends a reload: messages before it are passed over.
    pub fn expect_notify(&mut self, line: &str) {
        let mut seen = std::mem::take(&mut self.seen);
        assert!(self.notify.wait_for(line, &mut seen, Duration::from_secs(20)), "no {line:?}: {seen:?}");
    }

    /// A graceful stop (as SIGTERM orders it) at the present virtual time.
    pub fn stop(mut self) -> RunReport {
        self.control.send(Control::Stop).unwrap();
        let run = self.run.take().expect("stopped once");
        run.join().expect("the run panicked").expect("the run failed")
    }
}
