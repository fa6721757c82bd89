//! kill -9 of a LEMF process mid-delivery, restart on the same out dir: nothing acknowledged is
//! lost, files are appended to, and capinfos reads the result.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tapir::deliver::etsi::{Encoder, EtsiConfig, PayloadDirection, PduHeader};
use tapir::lemf::{Lemf, LemfConfig};
use tapir::timestamp::Timestamp;

const CHILD_ENV: &str = "TAPIR_LEMF_CHILD_OUT";

/// The LEMF process the main test starts and kills (this test binary re-run with a filter).
#[test]
#[ignore = "run as a child process by kill9_then_restart_appends"]
fn lemf_child() {
    let Ok(out) = std::env::var(CHILD_ENV) else { return };
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let lemf = Lemf::start(LemfConfig::new(any, any, Path::new(&out))).unwrap();
    println!("PORTS {} {}", lemf.hi2_addr(), lemf.hi3_addr());
    std::io::stdout().flush().unwrap();
    // Killed by the parent long before; the bound only keeps an orphan from living forever.
    std::thread::sleep(Duration::from_secs(120));
}

/// The child LEMF; dropping it is `kill -9` (and reaping it).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

fn spawn(out: &Path) -> (Killed, SocketAddr) {
    let mut c = Killed(
        Command::new(std::env::current_exe().unwrap())
            // The test's full name in the `it` binary: its module, then the function.
            .args(["--exact", "lemf_kill::lemf_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, out)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut r = BufReader::new(c.0.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "child exited");
        // libtest prints "test lemf_kill::lemf_child ... " before the child's own output on the same line.
        if let Some(p) = line.split("PORTS ").nth(1) {
            let hi3 = p.split_whitespace().nth(1).unwrap().parse().unwrap();
            return (c, hi3);
        }
    }
}

fn deliver(addr: SocketAddr, seqs: impl Iterator<Item = u32>) {
    let enc = Encoder::new(EtsiConfig::new("OPER")).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = Vec::new();
    let pkt = |n: u32| {
        let mut p = vec![0x45, 0, 0, 24, 0, 0, 0, 0, 64, 253, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        p.extend_from_slice(&n.to_be_bytes());
        p
    };
    for n in seqs {
        let h = PduHeader { liid: "LIID-K", cin: Some(1), seq: n, ts: Timestamp::from_secs(1_700_000_000) };
        enc.ipcc(&mut b, &h, &pkt(n), PayloadDirection::FromTarget).unwrap();
    }
    let h = PduHeader { liid: "LIID-K", cin: Some(1), seq: 0, ts: Timestamp::from_secs(1_700_000_000) };
    enc.keep_alive(&mut b, &h).unwrap();
    s.write_all(&b).unwrap();
    let mut r = [0u8; 256];
    assert!(s.read(&mut r).unwrap() > 0, "keep-alive answered");
}

fn packets(pcap: &Path) -> String {
    let o = Command::new("capinfos").args(["-c", "-M"]).arg(pcap).output().unwrap();
    assert!(o.status.success(), "capinfos: {}", String::from_utf8_lossy(&o.stderr));
    let s = String::from_utf8_lossy(&o.stdout).to_string();
    s.lines().find(|l| l.starts_with("Number of packets")).unwrap_or_default().split(':').nth(1).unwrap().trim().into()
}

#[test]
fn kill9_then_restart_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("case");
    let (c, hi3) = spawn(&out);
    deliver(hi3, 0..100);
    drop(c);
    let pcap = out.join("LIID-K/cc.pcap");
    assert_eq!(packets(&pcap), "100");
    let (c, hi3) = spawn(&out);
    deliver(hi3, 100..150);
    drop(c);
    assert_eq!(packets(&pcap), "150");
    let tsh = Command::new("tshark").arg("-r").arg(&pcap).args(["-T", "fields", "-e", "data.data"]).output().unwrap();
    let got: Vec<String> = String::from_utf8_lossy(&tsh.stdout).lines().map(String::from).collect();
    let want: Vec<String> = (0u32..150).map(|n| hex::encode(n.to_be_bytes())).collect();
    assert_eq!(got, want);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["runs"], 2);
    assert_eq!(r["streams"]["hi3/LIID-K/1/cc"]["received"], serde_json::json!([[0, 149]]));
    assert_eq!(r["pdus"]["hi3/LIID-K/cc"], 150);
}
