//! A third party's POI: raw IPv4 packets on X3 (payload format 5), written by a Python encoder
//! of TS 103 221-2 that shares nothing with tapir's, reach the LEA as HI3 IPCC. What an MDF
//! must refuse (an unknown XID, a wrong version, a PDU whose attribute overruns its header)
//! is refused, counted and logged, and the connection or the next connection goes on.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::{free_port, wait_listening, Lemf};
use crate::x2x3_roles::{mdf_config, root, warrants};

/// Writes to 127.0.0.1:`port` the PDUs it builds: X3 PDUs of the target's IPv4 packets of a
/// classic pcap (read here, not by tapir), with the warrant's XID, an unknown XID's and an
/// overrunning attribute's among them on one connection; a version 4 PDU on another.
const SENDER: &str = r#"
import socket, struct, sys, time
port, pcap, xid = int(sys.argv[1]), sys.argv[2], bytes.fromhex(sys.argv[3].replace('-', ''))
# The target's IPv4 packets, read from the classic pcap (Ethernet, microseconds) directly.
data = open(pcap, 'rb').read()
assert struct.unpack('<I', data[:4])[0] == 0xa1b2c3d4 and struct.unpack('<I', data[20:24])[0] == 1
pkts, at = [], 24
while at + 16 <= len(data):
    sec, usec, incl, _ = struct.unpack('<IIII', data[at:at + 16])
    frame = data[at + 16:at + 16 + incl]
    at += 16 + incl
    if frame[12:14] == b'\x08\x00' and frame[14 + 12:14 + 16] == bytes([198, 51, 100, 7]):
        ip = frame[14:]
        pkts.append((sec, usec * 1000, ip[:struct.unpack('>H', ip[2:4])[0]]))
def pdu(version, ptype, fmt, direction, xid, cid, attrs, payload):
    a = b''.join(struct.pack('>HH', t, len(v)) + v for t, v in attrs)
    return struct.pack('>HHIIHH', version, ptype, 40 + len(a), len(payload), fmt, direction) + xid + struct.pack('>Q', cid) + a + payload
def send(data):
    s = socket.create_connection(('127.0.0.1', port)); s.sendall(data); time.sleep(0.3); s.close()
good = []
for i, (secs, nanos, ip) in enumerate(pkts):
    good.append(pdu(5, 2, 5, 3, xid, 77, [(8, struct.pack('>I', i)), (9, struct.pack('>II', secs, nanos))], ip))
unknown = pdu(5, 2, 5, 3, b'\x11' * 16, 1, [], pkts[0][2])
overrun = bytearray(pdu(5, 2, 5, 3, xid, 77, [(8, struct.pack('>I', 0))], pkts[0][2])); overrun[42:44] = struct.pack('>H', 400)
version4 = pdu(4, 2, 5, 3, xid, 77, [], pkts[0][2])
# The good stream with the bad ones inside it: the connection goes on past what is framed.
half = len(good) // 2
send(b''.join(good[:half]) + unknown + bytes(overrun) + b''.join(good[half:]))
send(version4)
print(len(pkts))
"#;

#[test]
fn raw_ip_x3_from_another_poi_reaches_the_lea_and_bad_pdus_are_refused_and_counted() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let (hi2, hi3) = (free_port(), free_port());
    let w = warrants(d, hi2, hi3);
    let lemf = Lemf::start(hi2, Some(hi3), &d.join("lemf"));
    let port = free_port();
    let log = d.join("mdf.log");
    // With its metrics endpoint: what it counts, an operator's monitoring reads there too.
    let mport = free_port();
    let config = mdf_config(d, &w, port, "");
    let text = std::fs::read_to_string(&config).unwrap() + &format!("[metrics]\nlisten = \"127.0.0.1:{mport}\"\n");
    std::fs::write(&config, text).unwrap();
    let mut cmd = Command::new(crate::common::TAPIR);
    cmd.args(["run", "--config"]).arg(&config).env_remove("WATCHDOG_USEC").env("TAPIR_LOG", "info");
    cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
    let (mut m, _) = crate::common::Daemon::start(&mut cmd);
    wait_listening(port);
    let script = d.join("sender.py");
    std::fs::File::create(&script).unwrap().write_all(SENDER.as_bytes()).unwrap();
    let o = Command::new("python3")
        .arg(&script)
        .arg(port.to_string())
        .arg(root().join("pcaps/http-put.pcap"))
        .arg("2b36a78b-b628-416d-bd22-404e68a0cd36")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sent: usize = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert!(sent > 300, "{sent}");
    let scrape = || {
        let o = Command::new("curl").args(["-sS", &format!("http://127.0.0.1:{mport}/metrics")]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let t = std::time::Instant::now();
    let mut metrics = scrape();
    while !metrics.contains(&format!("tapir_x2x3_pdus_total{{kind=\"x3\"}} {sent}\n")) {
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "{metrics}");
        std::thread::sleep(std::time::Duration::from_millis(100));
        metrics = scrape();
    }
    for line in [
        "tapir_x2x3_refused_total 2",
        "tapir_x2x3_framing_errors_total 1",
        // The two of the sender and the test's own probe for the listener.
        "tapir_x2x3_connections_total 3",
        "tapir_x2x3_tls_refused_total 0",
        "tapir_mdf_journal_active 1",
        "tapir_lea_connected{lea=\"lea-p\",channel=\"hi3\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    m.stop();
    lemf.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    // The LEA got every packet, as the input has them (tshark on both).
    let got =
        crate::common::tshark(&d.join("lemf/LIID-JOE-0001/cc.pcap"), None, &["ip.src", "ip.dst", "ip.len", "ip.id"]);
    let want = crate::common::tshark(
        &root().join("pcaps/http-put.pcap"),
        Some("ip.src == 198.51.100.7"),
        &["ip.src", "ip.dst", "ip.len", "ip.id"],
    );
    if got != want {
        let missing: Vec<&String> = want.iter().filter(|p| !got.contains(p)).collect();
        let extra: Vec<&String> = got.iter().filter(|p| !want.contains(p)).collect();
        panic!("{} got, {} wanted; missing {missing:?}; extra {extra:?}", got.len(), want.len());
    }
    assert!(text.contains("unknown XID 11111111-1111-1111-1111-111111111111"), "{text}");
    assert!(text.contains("runs past the header"), "{text}");
    assert!(text.contains("framing: version 4, expected 5"), "{text}");
    let intake = text.lines().find(|l| l.contains("X2/X3 intake")).unwrap();
    assert!(
        intake.contains(&format!("x3={sent}")) && intake.contains("refused=2") && intake.contains("framing_errors=1"),
        "{intake}"
    );
}
