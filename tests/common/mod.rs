//! Helpers shared by the integration tests that run tapir (or talk to it) over the network:
//! shell commands, openssl certificates and TLS clients, loopback ports, the reference LEMF
//! (`tapir lemf`) as a child process, and tshark read-backs.
// Every test binary that says `mod common;` compiles its own copy and uses only a subset.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub const TAPIR: &str = env!("CARGO_BIN_EXE_tapir");

/// Runs `script` with `sh -e` in `dir`; panics with its stderr if it fails, returns its stdout.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh").arg("-ec").arg(script).current_dir(dir).output().expect("sh");
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
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

/// A TCP port on 127.0.0.1 that was free when asked.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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

/// `ip.src ip.dst ip.len` (or IPv6) of every packet of a capture, by tshark.
pub fn ip_packets(pcap: &Path) -> Vec<String> {
    let o = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "ip.len", "-e", "ipv6.src", "-e", "ipv6.dst"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Inner addresses: the last occurrence of nested headers.
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(|f| f.rsplit(',').next().unwrap_or("")).collect::<Vec<_>>().join(" "))
        .collect()
}
