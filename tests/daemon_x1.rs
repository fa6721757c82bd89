//! Issue 6 acceptance, end to end: `tapir run` with `[x1]`, provisioned by curl over mutual TLS
//! while a real-time replay flows. A task activated over X1 intercepts its target from then on,
//! a modification adds a target, deactivation stops it, to the packet (on a virtual clock, in
//! this process), and a task whose window ends is deactivated by X1's tick; refusals (no certificate, foreign CA,
//! expired certificate, auditor provisioning, malformed XML, 100 MB body, XML bomb) are answered,
//! audited, and the daemon keeps serving; the audit log verifies with `tapir audit verify`; the
//! daemon's log never names a target; tasks survive a restart. Certificates come from openssl,
//! packet times from tshark, X1 documents are checked against the schemas of the shared `x1_validate.py`, error codes
//! from TS 103 221-1 clause 6.7.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{
    epoch_us, fingerprint, free_port, ip_packets, ip_s, make_x1_pki, run_command, the_case, tshark, udp_frame,
    verify_case, Daemon, Lemf, VirtualRun, XsdBatch, T0, TAPIR,
};

const EXAMPLE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/schemas/etsi/derived/x1-activatetask-example.xml");

const XID: &str = "29f28e1c-f230-486a-a860-f5a784ab9172";
const XID2: &str = "3a1b2c3d-0000-4000-8000-000000000002";
const XID_UNKNOWN: &str = "3a1b2c3d-0000-4000-8000-0000000000ff";
const DID: &str = "1ae2ec7a-d36b-4dd6-8d1f-95a2c3c0a4b0";
const DID_UNKNOWN: &str = "2be2ec7a-d36b-4dd6-8d1f-95a2c3c0a4b1";
const LIID: &str = "LIID-X1-A";
const LIID2: &str = "LIID-X1-B";

const A: [u8; 4] = [10, 1, 0, 1];
const B: [u8; 4] = [10, 1, 0, 2];
/// The second task's target: not in the capture, only in X1 and the store.
const C_IP: &str = "192.0.2.77";

/// A classic pcap: A and B each send a packet every 100 ms from T0, `steps` times.
fn write_pcap(path: &Path, steps: u32) {
    let mut frames = Vec::new();
    for i in 0..steps {
        for s in [A, B] {
            frames.push((i / 10, (i % 10) * 100_000, udp_frame(s, [10, 2, 0, s[3]], format!("pkt {i}").as_bytes())));
        }
    }
    common::write_pcap(path, &frames);
}

// ---- X1 requests: the shared schema-valid sample, edited ----

fn request(ty: &str, inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<X1Request xmlns="http://uri.etsi.org/03221/X1/2017/10" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:c="http://uri.etsi.org/03280/common/2017/07">
 <x1RequestMessage xsi:type="{ty}Request">
  <admfIdentifier>admf1</admfIdentifier><neIdentifier>ne1</neIdentifier>
  <messageTimestamp>2026-01-01T00:00:00.000000Z</messageTimestamp><version>v1.22.1</version>
  <x1TransactionId>c02358b2-76cf-4ba4-a8eb-f6436ccaea2e</x1TransactionId>{inner}
 </x1RequestMessage>
</X1Request>"#
    )
}

fn create_destination(did: &str, port: u16) -> String {
    request(
        "CreateDestination",
        &format!(
            "<destinationDetails><dId>{did}</dId><friendlyName>LEA one</friendlyName><deliveryType>X2andX3</deliveryType>\
             <deliveryAddress><ipAddressAndPort><c:address><c:IPv4Address>127.0.0.1</c:IPv4Address></c:address>\
             <c:port><c:TCPPort>{port}</c:TCPPort></c:port></ipAddressAndPort></deliveryAddress></destinationDetails>"
        ),
    )
}

/// ActivateTask (or, with `ty`, ModifyTask) of `xid` for `targets`, one LIID, HI2 and HI3, no window.
fn task(ty: &str, xid: &str, targets: &[&str], liid: &str, did: &str) -> String {
    task_until(ty, xid, targets, liid, did, None)
}

/// [`task`] whose mediation ends at `end` (RFC 3339, microseconds) if given, the task then
/// allowing implicit deactivation.
fn task_until(ty: &str, xid: &str, targets: &[&str], liid: &str, did: &str, end: Option<&str>) -> String {
    let (end, implicit) = match end {
        Some(e) => {
            (format!("<EndTime>{e}</EndTime>"), "<implicitDeactivationAllowed>true</implicitDeactivationAllowed>")
        }
        None => (String::new(), ""),
    };
    let ex = std::fs::read_to_string(EXAMPLE).unwrap();
    let tids: String = targets
        .iter()
        .map(|t| format!("<targetIdentifier><ipv4Address>{t}</ipv4Address></targetIdentifier>"))
        .collect();
    let s = ex
        .replace(
            "</listOfDIDs>\n  </taskDetails>",
            &format!(
                "</listOfDIDs><listOfMediationDetails><mediationDetails><LIID>{liid}</LIID>\
                 <deliveryType>HI2andHI3</deliveryType>{end}</mediationDetails></listOfMediationDetails>\
                 {implicit}</taskDetails>"
            ),
        )
        .replace("<targetIdentifier><ipv4Address>192.0.2.1</ipv4Address></targetIdentifier>", &tids)
        .replace(XID, xid)
        .replace(DID, did)
        .replace("ActivateTaskRequest", &format!("{ty}Request"));
    assert!(s.contains("listOfMediationDetails") && s.contains(&tids), "sample layout changed");
    s
}

fn error_code(body: &str) -> Option<u32> {
    let i = body.find("<errorCode>")? + "<errorCode>".len();
    let j = body[i..].find('<')? + i;
    body[i..j].parse().ok()
}

/// Validates X1 documents on a thread, one at a time, while the test goes on.
struct Validator {
    tx: Option<mpsc::Sender<(String, Vec<u8>)>>,
    done: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Validator {
    fn new() -> Validator {
        let (tx, rx) = mpsc::channel::<(String, Vec<u8>)>();
        let done = std::thread::spawn(move || {
            let mut batch = XsdBatch::spawn();
            let mut failures = Vec::new();
            for (what, doc) in rx {
                let v = batch.validate("etsi", &doc);
                if v != "valid" {
                    failures.push(format!("{what}: {v} \n{}", String::from_utf8_lossy(&doc)));
                }
            }
            failures
        });
        Validator { tx: Some(tx), done: Some(done) }
    }

    fn check(&self, what: &str, doc: &str) {
        self.tx.as_ref().unwrap().send((what.to_string(), doc.as_bytes().to_vec())).unwrap();
    }

    fn finish(mut self) {
        drop(self.tx.take());
        let failures = self.done.take().unwrap().join().unwrap();
        assert!(failures.is_empty(), "schema-invalid X1 documents:\n{}", failures.join("\n"));
    }
}

struct Env {
    dir: tempfile::TempDir,
    port: u16,
    v: Validator,
}

impl Env {
    fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// curl POSTing `body` with client certificate `cert`; (exit code, HTTP status, body).
    fn curl(&self, cert: Option<&str>, body: &[u8]) -> (i32, u16, String) {
        let bodyfile = self.dir.path().join("body.xml");
        std::fs::write(&bodyfile, body).unwrap();
        self.curl_file(cert, &bodyfile)
    }

    fn curl_file(&self, cert: Option<&str>, bodyfile: &Path) -> (i32, u16, String) {
        let d = self.pki();
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "15", "--cacert"]).arg(d.join("ca.pem"));
        if let Some(n) = cert {
            c.arg("--cert").arg(d.join(format!("{n}.pem"))).arg("--key").arg(d.join(format!("{n}.key")));
        }
        c.args(["-o", "-", "-w", "\n%{http_code}", "-X", "POST", "-H", "Content-Type: text/xml"])
            .arg("--data-binary")
            .arg(format!("@{}", bodyfile.display()))
            .arg(format!("https://127.0.0.1:{}/X1/NE", self.port));
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (out.status.code().unwrap_or(-1), code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// An admf-1 request answered 200 with a schema-valid X1 response (checked in the background).
    fn x1(&self, what: &str, req: &str) -> String {
        self.v.check(&format!("{what} request"), req);
        let (rc, status, body) = self.curl(Some("admf"), req.as_bytes());
        assert_eq!((rc, status), (0, 200), "{what}: {body}");
        self.v.check(&format!("{what} response"), &body);
        body
    }

    fn ping(&self, after: &str) {
        let b = self.x1(&format!("Ping after {after}"), &request("Ping", ""));
        assert!(b.contains(r#"xsi:type="PingResponse""#) && b.contains("<oK>AcknowledgedAndCompleted</oK>"), "{b}");
    }
}

/// `tapir run` logging at info level to `log` (appended to), once ready.
fn start_daemon(config: &Path, log: &Path) -> (Daemon, Instant) {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Daemon::start(run_command(config).env("TAPIR_LOG", "info").stderr(Stdio::from(log)))
}

/// (capture time in µs since the epoch, IPv4 source) of each packet, by tshark.
fn tshark_packets(pcap: &Path) -> Vec<(i64, String)> {
    tshark(pcap, None, &["frame.time_epoch", "ip.src"])
        .iter()
        .map(|l| {
            let (t, src) = l.split_once('|').unwrap();
            (epoch_us(t), src.trim().to_string())
        })
        .collect()
}

/// Seconds after T0 of a capture time.
fn after_t0(us: i64) -> f64 {
    (us - i64::from(T0) * 1_000_000) as f64 / 1e6
}

fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn find<'a>(
    lines: &'a [serde_json::Value],
    pred: impl Fn(&serde_json::Value) -> bool,
    what: &str,
) -> &'a serde_json::Value {
    lines.iter().find(|l| pred(l)).unwrap_or_else(|| panic!("no audit line for {what}: {lines:#?}"))
}

fn case_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir.join("case")) {
        Ok(r) => r.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// `tapir run`'s config for these tests: the real-time replay of `ab.pcap`, warrants from X1
/// only (the file is empty), `[x1]` on `port` with the test PKI and store, `x1_extra` keys, and
/// one `[[x1.client]]` per (CN, role).
fn run_config(port: u16, x1_extra: &str, clients: &[(&str, &str)]) -> String {
    let clients: String =
        clients.iter().map(|(cn, role)| format!("[[x1.client]]\nsubject_cn = \"{cn}\"\nrole = \"{role}\"\n")).collect();
    format!(
        "[capture]\nreplay = [\"ab.pcap\"]\npace = \"realtime\"\nreplay_end = \"wait\"\n\
         [paths]\nwarrants = \"warrants.toml\"\ncase_dir = \"case\"\nspool_dir = \"spool\"\n\
         [x1]\nlisten = \"127.0.0.1:{port}\"\ncert = \"pki/srv.pem\"\nkey = \"pki/srv.key\"\n\
         client_ca = \"pki/ca.pem\"\nstore = \"x1\"\nne_id = \"ne1\"\n{x1_extra}{clients}"
    )
}

/// A directory for a daemon with `[x1]`: its PKI (`pki/`), `ab.pcap` of `steps` steps (T0+0.0
/// ..), and a warrants file with no warrant.
fn x1_dir(steps: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("pki")).unwrap();
    make_x1_pki(&d.join("pki"), &[]);
    write_pcap(&d.join("ab.pcap"), steps);
    std::fs::write(d.join("warrants.toml"), "# all warrants come over X1\n").unwrap();
    dir
}

#[test]
fn x1_provisions_a_running_daemon_and_refusals_are_audited() {
    let dir = x1_dir(130); // T0+0.0 .. T0+12.9, real time
    let d = dir.path();
    let o = Command::new(TAPIR).arg("keygen").arg(d.join("audit.key")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let port = free_port();
    let config = d.join("tapir.toml");
    std::fs::write(
        &config,
        run_config(
            port,
            "audit_log = \"audit.jsonl\"\nsigning_key = \"audit.key\"\nsign_every = 5\n",
            &[("admf-1", "admf"), ("auditor-1", "auditor")],
        ),
    )
    .unwrap();
    let o = Command::new(TAPIR).args(["check-config", "--config"]).arg(&config).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = d.join("daemon.log");
    let env = Env { dir, port, v: Validator::new() };
    let d = env.dir.path();

    let (mut daemon, _) = start_daemon(&config, &log);
    env.ping("start");
    let b = env.x1("CreateDestination", &create_destination(DID, 9));
    assert!(b.contains("CreateDestinationResponse") && b.contains("AcknowledgedAndCompleted"), "{b}");

    // When each change takes effect, to the packet, is for the test on a virtual clock (below):
    // this one is about the requests, their refusals and their record.
    let b = env.x1("ActivateTask", &task("ActivateTask", XID, &[&ip_s(A)], LIID, DID));
    assert!(b.contains("ActivateTaskResponse") && b.contains("<oK>AcknowledgedAndCompleted</oK>"), "{b}");

    let b = env.x1("GetTaskDetails", &request("GetTaskDetails", &format!("<xId>{XID}</xId>")));
    for want in [
        format!("<xId>{XID}</xId>"),
        format!("<ipv4Address>{}</ipv4Address>", ip_s(A)),
        format!("<LIID>{LIID}</LIID>"),
        format!("<dId>{DID}</dId>"),
        "<provisioningStatus>complete</provisioningStatus>".to_string(),
    ] {
        assert!(b.contains(&want), "missing {want}: {b}");
    }
    // Errors (TS 103 221-1 6.7): XID exists 2010, unknown XID 2020, unknown DID 2040.
    let b = env.x1("ActivateTask again", &task("ActivateTask", XID, &[&ip_s(A)], LIID, DID));
    assert_eq!(error_code(&b), Some(2010), "{b}");
    let b = env.x1("GetTaskDetails unknown", &request("GetTaskDetails", &format!("<xId>{XID_UNKNOWN}</xId>")));
    assert_eq!(error_code(&b), Some(2020), "{b}");
    let b = env.x1("ActivateTask unknown DID", &task("ActivateTask", XID2, &[C_IP], LIID2, DID_UNKNOWN));
    assert_eq!(error_code(&b), Some(2040), "{b}");

    let b = env.x1("ModifyTask", &task("ModifyTask", XID, &[&ip_s(A), &ip_s(B)], LIID, DID));
    assert!(b.contains("ModifyTaskResponse") && b.contains("<oK>AcknowledgedAndCompleted</oK>"), "{b}");

    // Refusals, each followed by a Ping that works.
    let (rc, status, _) = env.curl(None, request("Ping", "").as_bytes());
    assert!(rc != 0 && status == 0, "no client certificate: curl {rc} {status}");
    env.ping("no certificate");
    let (rc, status, _) = env.curl(Some("rogue"), request("Ping", "").as_bytes());
    assert!(rc != 0 && status == 0, "foreign CA: curl {rc} {status}");
    env.ping("foreign CA");
    let (rc, status, _) = env.curl(Some("expired"), request("Ping", "").as_bytes());
    assert!(rc != 0 && status == 0, "expired: curl {rc} {status}");
    env.ping("expired certificate");
    let req = task("ActivateTask", XID2, &[C_IP], LIID2, DID);
    let (rc, status, b) = env.curl(Some("auditor"), req.as_bytes());
    assert_eq!((rc, status), (0, 200), "{b}");
    env.v.check("auditor ActivateTask response", &b);
    assert!(b.contains(r#"xsi:type="ErrorResponse""#) && error_code(&b) == Some(1000) && b.contains("auditor"), "{b}");
    env.ping("auditor provisioning");
    let (rc, status, b) = env.curl(Some("auditor"), request("GetAllTaskDetails", "").as_bytes());
    assert_eq!((rc, status), (0, 200), "{b}");
    assert!(b.contains("GetAllTaskDetailsResponse") && !b.contains(XID2), "auditors read; nothing was activated: {b}");
    let (rc, status, b) = env.curl(Some("admf"), b"<X1Request><unclosed></X1Request>");
    assert_eq!((rc, status), (0, 200), "{b}");
    env.v.check("malformed XML response", &b);
    assert!(b.contains("X1TopLevelErrorResponse"), "{b}");
    env.ping("malformed XML");
    let big = d.join("big.bin");
    std::fs::File::create(&big).unwrap().set_len(100 * 1024 * 1024).unwrap();
    let t = Instant::now();
    let (_, status, b) = env.curl_file(Some("admf"), &big);
    assert_eq!(status, 413, "100 MB body: {b}");
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    std::fs::remove_file(&big).unwrap();
    env.ping("100 MB body");
    let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<X1Request xmlns="http://uri.etsi.org/03221/X1/2017/10">&lol9;</X1Request>"#;
    let (rc, status, b) = env.curl(Some("admf"), bomb.as_bytes());
    assert_eq!((rc, status), (0, 200), "{b}");
    env.v.check("XML bomb response", &b);
    assert!(b.contains("X1TopLevelErrorResponse") && !b.contains("lollol"), "{b}");
    env.ping("XML bomb");

    let b = env.x1("DeactivateTask", &request("DeactivateTask", &format!("<xId>{XID}</xId>")));
    assert!(b.contains("DeactivateTaskResponse") && b.contains("<oK>AcknowledgedAndCompleted</oK>"), "{b}");
    let b = env.x1("GetTaskDetails after deactivation", &request("GetTaskDetails", &format!("<xId>{XID}</xId>")));
    assert_eq!(error_code(&b), Some(2020), "{b}");
    // A second task stays active across the restart.
    let b = env.x1("ActivateTask 2", &task("ActivateTask", XID2, &[C_IP], LIID2, DID));
    assert!(b.contains("<oK>AcknowledgedAndCompleted</oK>"), "{b}");
    daemon.stop();

    // The case: LIID-X1-A got A (and B after the modification), every packet from the first
    // on, none of another address.
    let cases = case_dirs(d);
    assert_eq!(cases.len(), 1, "{cases:?}");
    verify_case(&cases[0]);
    let pkts = tshark_packets(&cases[0].join(LIID).join("cc.pcap"));
    let of = |src: [u8; 4]| -> Vec<f64> { pkts.iter().filter(|p| p.1 == ip_s(src)).map(|p| after_t0(p.0)).collect() };
    let a = of(A);
    assert_eq!(a.len() + of(B).len(), pkts.len(), "only A and B: {pkts:?}");
    assert!(!a.is_empty(), "A intercepted");
    for (i, t) in a.iter().enumerate() {
        assert!((t - (a[0] + i as f64 * 0.1)).abs() < 0.001, "A packet {i} missing: {a:?}");
    }
    assert!(!cases[0].join(LIID2).join("cc.pcap").exists(), "the second task's target is not in the capture");

    // The audit log: every refusal on record, with who and why; the chain and signatures verify.
    let audit = d.join("audit.jsonl");
    let lines = audit_lines(&audit);
    let rogue_fp = fingerprint(&env.pki(), "rogue");
    let expired_fp = fingerprint(&env.pki(), "expired");
    let admf_fp = fingerprint(&env.pki(), "admf");
    let hs = |l: &serde_json::Value| l["what"] == "tls-handshake" && l["result"] == "refused";
    find(&lines, |l| hs(l) && l["who"].is_null() && l["fingerprint"].is_null(), "no certificate");
    // The foreign CA's certificate claims CN admf-1: not an identity, said to be unverified.
    let unverified = |l: &serde_json::Value| {
        l["who"].is_null() && l["detail"].as_str().is_some_and(|d| d.contains("not verified: CN \"admf-1\""))
    };
    find(&lines, |l| hs(l) && l["fingerprint"] == rogue_fp.as_str() && unverified(l), "foreign CA");
    find(&lines, |l| hs(l) && l["fingerprint"] == expired_fp.as_str(), "expired certificate");
    find(
        &lines,
        |l| l["what"] == "ActivateTask" && l["result"] == "refused" && l["who"] == "auditor-1",
        "auditor provisioning",
    );
    let top = |l: &serde_json::Value, why: &str| {
        l["what"] == "X1Request"
            && l["result"] == "refused"
            && l["who"] == "admf-1"
            && l["detail"].as_str().unwrap_or_default().contains(why)
    };
    find(&lines, |l| top(l, "") && !l["detail"].as_str().unwrap_or_default().contains("DTD"), "malformed XML");
    find(&lines, |l| top(l, "DTDs are refused"), "XML bomb");
    find(
        &lines,
        |l| {
            l["what"] == "x1-request"
                && l["result"] == "refused"
                && l["detail"].as_str().unwrap_or_default().contains("413")
        },
        "100 MB body",
    );
    for (what, xid) in [("ActivateTask", XID), ("ModifyTask", XID), ("DeactivateTask", XID), ("ActivateTask", XID2)] {
        find(
            &lines,
            |l| {
                l["what"] == what
                    && l["xid"] == xid
                    && l["result"] == "ok"
                    && l["who"] == "admf-1"
                    && l["fingerprint"] == admf_fp.as_str()
            },
            what,
        );
    }
    find(&lines, |l| l["what"] == "ActivateTask" && l["result"] == "2010", "duplicate XID");
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(&ip_s(A)) && !text.contains(&ip_s(B)) && !text.contains(C_IP), "a target in the audit log");

    // Restart on the same store: the second task is still there, the first is not.
    let (mut daemon, _) = start_daemon(&config, &log);
    let b = env.x1("GetAllTaskDetails after restart", &request("GetAllTaskDetails", ""));
    assert!(b.contains(&format!("<xId>{XID2}</xId>")) && b.contains(&format!("<LIID>{LIID2}</LIID>")), "{b}");
    assert!(b.contains(&format!("<ipv4Address>{C_IP}</ipv4Address>")), "{b}");
    assert!(!b.contains(&format!("<xId>{XID}</xId>")), "{b}");
    let b = env.x1("GetAllDestinationDetails after restart", &request("GetAllDestinationDetails", ""));
    assert!(b.contains(&format!("<dId>{DID}</dId>")), "{b}");
    daemon.stop();
    // check-config reads the same store (and the log's tail) without touching them.
    let o = Command::new(TAPIR).args(["check-config", "--config"]).arg(&config).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("1 task(s), 1 destination(s) in the store"), "{out}");

    let o = Command::new(TAPIR)
        .args(["audit", "verify"])
        .arg(&audit)
        .arg("--key")
        .arg(d.join("audit.key.pub"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "audit verify: {out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("all signed"), "{out}");

    // The daemon's log names LIIDs and XIDs, never a target.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains(LIID) && log.contains(XID) && log.contains(LIID2), "{log}");
    // The restarted daemon started with the stored task's warrant in force.
    assert!(log.contains(&format!("warrants={LIID2} ")), "{log}");
    for t in [ip_s(A), ip_s(B), C_IP.to_string()] {
        assert!(!log.contains(&t), "target {t} in the daemon log:\n{log}");
    }
    env.v.finish();
}

/// X1 on the run's clock: `tapir run` in this process on a virtual clock ([`VirtualRun`]), a
/// paced replay, and each X1 request sent at a chosen instant of it. A task takes effect at the
/// replay time it was provisioned at, to the packet, whatever the capture's age: activated at
/// T0+2.0, A is intercepted from T0+2.1; modified at T0+4.0, B from T0+4.1; deactivated at
/// T0+6.0, both end with T0+6.0. A second task on B whose mediation ends at T0+7.0 (implicit
/// deactivation allowed), activated at T0+3.0, intercepts B from T0+3.1 to T0+6.9, and X1's tick
/// removes it at T0+7.0 with no request, on the audit record as tapir's own action. Packet times
/// from tshark; the expected ones counted from the capture made here.
#[test]
fn x1_tasks_take_effect_at_the_replay_time_they_are_provisioned_on_a_virtual_clock() {
    let dir = x1_dir(100); // T0+0.0 .. T0+9.9
    let d = dir.path();
    let port = free_port();
    let config = d.join("tapir.toml");
    std::fs::write(&config, run_config(port, "audit_log = \"audit.jsonl\"\n", &[("admf-1", "admf")])).unwrap();
    let env = Env { dir, port, v: Validator::new() };
    let d = env.dir.path();

    let mut run = VirtualRun::start(&config);
    // Frames come every 100 ms: a step moves the clock over several at once (each due one is
    // taken before the next step), and every X1 request lands on a chosen instant.
    let step = Duration::from_millis(500);
    // Each change reloads the warrants before the clock moves on: the run says so.
    let provision = |run: &mut VirtualRun, what: &str, req: &str, warrants: usize| {
        let b = env.x1(what, req);
        assert!(b.contains("<oK>AcknowledgedAndCompleted</oK>"), "{what}: {b}");
        run.expect_notify(&format!("STATUS=running, {warrants} warrant(s)"));
    };
    provision(&mut run, "CreateDestination", &create_destination(DID, 9), 0);
    run.advance_to(2.0, step);
    provision(&mut run, "ActivateTask", &task("ActivateTask", XID, &[&ip_s(A)], LIID, DID), 1);
    run.advance_to(3.0, step);
    let until_7 = rfc3339_us(7.0);
    let req = task_until("ActivateTask", XID2, &[&ip_s(B)], LIID2, DID, Some(&until_7));
    provision(&mut run, "ActivateTask with an end", &req, 2);
    run.advance_to(4.0, step);
    provision(&mut run, "ModifyTask", &task("ModifyTask", XID, &[&ip_s(A), &ip_s(B)], LIID, DID), 2);

    // TaskStatus, from the loop's once-a-second update: what was intercepted, and when in
    // capture time.
    run.advance_to(5.5, step);
    let b = env.x1("GetTaskDetails with traffic", &request("GetTaskDetails", &format!("<xId>{XID}</xId>")));
    let field = |name: &str| -> String {
        let open = format!("<{name}>");
        let start = b.find(&open).unwrap_or_else(|| panic!("no {name}: {b}")) + open.len();
        b[start..].split('<').next().unwrap().to_string()
    };
    assert!(field("amountOfX3Data").parse::<u64>().unwrap() > 1000, "{b}");
    assert!(field("amountOfX2Data").parse::<u64>().unwrap() > 0, "{b}");
    // No LEA is configured for X1 destinations here (no lea_template, no file [[lea]]): the
    // intercepts reach only the case, and the ADMF is told so.
    assert!(b.contains("<errorCode>9020</errorCode>") && b.contains("lea_template"), "{b}");
    let last = chrono::DateTime::parse_from_rfc3339(&field("timeOfLastIntercept")).unwrap();
    let last = last.timestamp_micros() - i64::from(T0) * 1_000_000;
    assert!((4_000_000..=5_500_000).contains(&last), "last intercept {last} µs after T0: {b}");

    run.advance_to(6.0, step);
    provision(&mut run, "DeactivateTask", &request("DeactivateTask", &format!("<xId>{XID}</xId>")), 1);
    run.advance_to(6.95, step);
    let b = env.x1("GetTaskDetails before its end", &request("GetTaskDetails", &format!("<xId>{XID2}</xId>")));
    assert!(b.contains(&format!("<xId>{XID2}</xId>")), "{b}");
    // The tick at T0+7.0 finds every window of the task ended.
    run.advance_to(7.0, step);
    run.expect_notify("STATUS=running, 0 warrant(s)");
    let b = env.x1("GetTaskDetails after its end", &request("GetTaskDetails", &format!("<xId>{XID2}</xId>")));
    assert_eq!(error_code(&b), Some(2020), "{b}");
    run.advance_to(8.0, step);
    let report = run.stop();
    assert_eq!(report.reloads, 6, "five requests and one implicit deactivation");

    let case = the_case(d, "case");
    verify_case(&case);
    let pkts = tshark_packets(&case.join(LIID).join("cc.pcap"));
    let of = |pkts: &[(i64, String)], src: [u8; 4]| -> Vec<i64> {
        pkts.iter().filter(|p| p.1 == ip_s(src)).map(|p| p.0 - i64::from(T0) * 1_000_000).collect()
    };
    let steps = |from: i64, to: i64| -> Vec<i64> { (from..=to).map(|i| i * 100_000).collect() };
    assert_eq!(of(&pkts, A), steps(21, 60), "A under {LIID}");
    assert_eq!(of(&pkts, B), steps(41, 60), "B under {LIID}");
    assert_eq!(of(&pkts, A).len() + of(&pkts, B).len(), pkts.len(), "only A and B: {pkts:?}");
    let pkts = tshark_packets(&case.join(LIID2).join("cc.pcap"));
    assert_eq!(of(&pkts, B), steps(31, 69), "B under {LIID2}");
    assert_eq!(of(&pkts, B).len(), pkts.len(), "only B: {pkts:?}");

    let lines = audit_lines(&d.join("audit.jsonl"));
    find(
        &lines,
        |l| l["what"] == "ImplicitDeactivation" && l["xid"] == XID2 && l["who"] == "tapir" && l["result"] == "ok",
        "implicit deactivation",
    );
    env.v.finish();
}

/// RFC 3339 with microseconds (TS 103 280's QualifiedMicrosecondDateTime) of T0 + `secs`.
fn rfc3339_us(secs: f64) -> String {
    let us = i64::from(T0) * 1_000_000 + (secs * 1e6).round() as i64;
    chrono::DateTime::from_timestamp_micros(us).unwrap().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn caller() -> tapir::x1::Caller<'static> {
    tapir::x1::Caller { subject_cn: "admf-1", fingerprint: "aa", role: tapir::x1::Role::Admf }
}

#[test]
fn merge_adds_x1_tasks_and_destinations_to_the_file() {
    use tapir::daemon::x1::{lea_template, merge};
    use tapir::timestamp::Timestamp;
    let dir = tempfile::tempdir().unwrap();
    let mut core = tapir::x1::X1Core::open(&dir.path().join("x1"), tapir::x1::X1CoreConfig::new("ne1")).unwrap();
    let now = Timestamp::parse_rfc3339("2026-06-01T00:00:00Z").unwrap();
    for req in [
        create_destination(DID, 9001),
        task("ActivateTask", XID, &[&ip_s(A)], LIID, DID),
        // Same LIID as the file's warrant below: the file's applies.
        task("ActivateTask", XID2, &[&ip_s(B)], "LIID-FILE", DID),
    ] {
        let r = core.handle(&caller(), req.as_bytes(), now);
        assert!(
            String::from_utf8_lossy(&r.body).contains("AcknowledgedAndCompleted"),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let file_text = "[[warrant]]\nliid = \"LIID-FILE\"\nstart = \"2026-01-01T00:00:00Z\"\nend = \"2028-01-01T00:00:00Z\"\n\
                     scope = \"cc\"\ntargets = [\"ipv4:10.9.9.9\"]\nlea = \"lea-file\"\n\n\
                     [[lea]]\nname = \"lea-file\"\nhi2 = \"127.0.0.1:7001\"\nhi3 = \"127.0.0.1:7002\"\noperator_id = \"op-file\"\n";
    let file = tapir::select::parse_warrants(file_text, "w.toml").unwrap();

    let w = merge(&file, &core, None, now);
    let liids: Vec<&str> = w.warrants.iter().map(|w| w.liid.as_ref()).collect();
    assert_eq!(liids, ["LIID-FILE", LIID]);
    assert_eq!(w.warrants[0].lea.as_deref(), Some("lea-file"));
    assert_eq!(w.warrants[1].lea.as_deref(), Some(DID));
    // The X1 destination is an LEA on the file's first [[lea]] as template: its operator_id,
    // the destination's address for HI2 and HI3.
    let leas = tapir::deliver::handover::parse_leas(&w.lea, "merged").unwrap();
    assert_eq!(leas.len(), 2);
    assert_eq!(
        (leas[1].name.as_str(), leas[1].hi2.as_str(), leas[1].hi3.as_str()),
        (DID, "127.0.0.1:9001", "127.0.0.1:9001")
    );
    assert_eq!(w.lea[1]["operator_id"].as_str(), Some("op-file"));

    // A configured template wins over the file's; a file [[lea]] named like the DID wins over both.
    let mut t = toml::Table::new();
    t.insert("operator_id".into(), toml::Value::String("op-x1".into()));
    assert_eq!(lea_template(Some(&t), &file).unwrap()["operator_id"].as_str(), Some("op-x1"));
    let w = merge(&file, &core, Some(&t), now);
    assert_eq!(w.lea[1]["operator_id"].as_str(), Some("op-x1"));
    let own = format!("{file_text}\n[[lea]]\nname = \"{DID}\"\nhi2 = \"127.0.0.1:7101\"\nhi3 = \"127.0.0.1:7102\"\n");
    let file2 = tapir::select::parse_warrants(&own, "w.toml").unwrap();
    let w = merge(&file2, &core, Some(&t), now);
    assert_eq!(w.lea.len(), 2);
    assert_eq!(w.lea[1]["hi2"].as_str(), Some("127.0.0.1:7101"));
    // No template and no file [[lea]]: no LEA, the warrants still apply (to the case).
    let w = merge(&tapir::select::Warrants::default(), &core, None, now);
    assert!(w.lea.is_empty());
    assert_eq!(w.warrants.len(), 2);
}

#[test]
fn x1_config_roles_and_keys() {
    let base =
        "[capture]\nreplay = [\"a.pcap\"]\n[paths]\nwarrants = \"w.toml\"\ncase_dir = \"c\"\nspool_dir = \"s\"\n\
                [x1]\nlisten = \"127.0.0.1:4433\"\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\n";
    let client = |role: &str| format!("[[x1.client]]\nsubject_cn = \"a\"\nrole = \"{role}\"\n");
    let parse = |t: &str| tapir::daemon::parse_config(t, Path::new("/etc/tapir/tapir.toml"));
    let c = parse(&format!(
        "{base}store = \"x1\"\nfour_eyes = true\nsign_every = 7\nlea_template = {{ operator_id = \"op\", name = \"ignored\" }}\n{}",
        client("auditor")
    ))
    .unwrap();
    let x = c.x1.unwrap();
    assert_eq!(x.clients[0].role, tapir::x1::Role::Auditor);
    assert_eq!(x.store, PathBuf::from("/etc/tapir/x1"));
    assert_eq!(x.audit_log, PathBuf::from("/etc/tapir/x1/audit.jsonl"));
    assert_eq!((x.four_eyes, x.sign_every, x.ne_id.as_str()), (true, 7, "tapir"));
    let t = x.lea_template.unwrap();
    assert_eq!(t.get("operator_id").and_then(|v| v.as_str()), Some("op"));
    assert!(t.get("name").is_none());
    // The old "read-only" is not a role; the store is required.
    let e = parse(&format!("{base}store = \"x1\"\n{}", client("read-only"))).unwrap_err().to_string();
    assert!(e.contains("read-only") && e.contains("auditor"), "{e}");
    let e = parse(&format!("{base}{}", client("admf"))).unwrap_err().to_string();
    assert!(e.contains("store"), "{e}");

    // The shipped example's commented-out [x1] block parses once uncommented.
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/tapir.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let i = text.find("# [x1]").unwrap();
    let block: String = text[i..].lines().map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l))).collect();
    let c = tapir::daemon::parse_config(&format!("{}{block}", &text[..i]), &p).unwrap();
    let x = c.x1.unwrap();
    assert_eq!((x.clients.len(), x.clients[0].role), (1, tapir::x1::Role::Admf));
    assert_eq!(x.store, PathBuf::from("/var/lib/tapir/x1"));
    assert_eq!(x.signing_key, Some(PathBuf::from("/etc/tapir/audit.key")));
}

/// Issue 6, TaskStatus faults and delivery to X1 destinations: two destinations, one with a
/// LEMF listening and one without. The task on the dead one shows a 9020 fault (and the NE and
/// the destination say so) while the healthy one shows none; when a LEMF comes up on the dead
/// one's address the fault clears by itself. Afterwards each LEMF holds exactly the CC the case
/// holds for its LIID (tshark on both), with no gap and no failed integrity check, and the HI1
/// activation (and, for the task deactivated, the deactivation) of its LIID.
#[test]
fn x1_destinations_deliver_to_their_lemf_and_faults_show_in_task_status() {
    const DID_DOWN: &str = "3ce2ec7a-d36b-4dd6-8d1f-95a2c3c0a4b2";
    let dir = x1_dir(100); // T0+0.0 .. T0+9.9, real time
    let d = dir.path();
    let (port, up_port, down_port) = (free_port(), free_port(), free_port());
    let config = d.join("tapir.toml");
    std::fs::write(
        &config,
        run_config(
            port,
            "lea_template = { operator_id = \"OP-X1\", network_element_id = \"tapir-x1\", country = \"NZ\", keepalive = 1 }\n",
            &[("admf-1", "admf")],
        ),
    )
    .unwrap();
    let (up_out, down_out) = (d.join("lemf-up"), d.join("lemf-down"));
    let lemf_up = Lemf::start(up_port, None, &up_out);
    let log = d.join("daemon.log");
    let env = Env { dir, port, v: Validator::new() };
    let d = env.dir.path();
    let (mut daemon, ready) = start_daemon(&config, &log);

    for (did, p) in [(DID, up_port), (DID_DOWN, down_port)] {
        let b = env.x1("CreateDestination", &create_destination(did, p));
        assert!(b.contains("<oK>AcknowledgedAndCompleted</oK>"), "{b}");
    }
    let b = env.x1("ActivateTask up", &task("ActivateTask", XID, &[&ip_s(A)], LIID, DID));
    assert!(b.contains("<oK>AcknowledgedAndCompleted</oK>"), "{b}");
    let b = env.x1("ActivateTask down", &task("ActivateTask", XID2, &[&ip_s(B)], LIID2, DID_DOWN));
    assert!(b.contains("<oK>AcknowledgedAndCompleted</oK>"), "{b}");

    let details = |xid: &str| request("GetTaskDetails", &format!("<xId>{xid}</xId>"));
    let poll = |what: &str, req: &str, within: Duration, ok: &dyn Fn(&str) -> bool| -> String {
        let t = Instant::now();
        loop {
            let (rc, status, b) = env.curl(Some("admf"), req.as_bytes());
            assert_eq!((rc, status), (0, 200), "{what}: {b}");
            if ok(&b) {
                env.v.check(what, &b);
                return b;
            }
            assert!(t.elapsed() < within, "{what}: not within {within:?}: {b}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // The dead destination's task reports the fault, naming the destination and the refusal.
    let b = poll("TaskStatus with fault", &details(XID2), Duration::from_secs(5), &|b| b.contains("<errorCode>9020"));
    assert!(b.contains(&format!("destination {DID_DOWN}")) && b.contains("not connected"), "{b}");
    assert!(b.contains(&format!("127.0.0.1:{down_port}")), "the failing address is named: {b}");
    let fault_at = ready.elapsed();
    let b = env.x1("GetTaskDetails healthy", &details(XID));
    assert!(b.contains("<provisioningStatus>complete</provisioningStatus>") && !b.contains("9020"), "{b}");
    let b = env.x1("GetNEStatus with fault", &request("GetNEStatus", ""));
    assert!(b.contains("<neStatus>Faults</neStatus>") && b.contains(DID_DOWN), "{b}");
    let b = env.x1("GetDestinationDetails down", &request("GetDestinationDetails", &format!("<dId>{DID_DOWN}</dId>")));
    assert!(b.contains("<destinationDeliveryStatus>deliveryFault</destinationDeliveryStatus>"), "{b}");
    let b = env.x1("GetDestinationDetails up", &request("GetDestinationDetails", &format!("<dId>{DID}</dId>")));
    assert!(b.contains("<destinationDeliveryStatus>activeAndWorking</destinationDeliveryStatus>"), "{b}");

    // The LEA comes back on the dead address: the sender reconnects (back-off at most 5 s) and
    // the fault goes away without any X1 request.
    let lemf_down = Lemf::start(down_port, None, &down_out);
    let b = poll("TaskStatus cleared", &details(XID2), Duration::from_secs(10), &|b| !b.contains("9020"));
    assert!(b.contains("<provisioningStatus>complete</provisioningStatus>"), "{b}");
    let b = env.x1("GetNEStatus cleared", &request("GetNEStatus", ""));
    assert!(b.contains("<neStatus>OK</neStatus>"), "{b}");
    assert!(fault_at < Duration::from_secs(9), "the fault showed at {fault_at:?}, late in the capture");

    // The healthy task ends before the capture does: its LEA gets the deactivation.
    std::thread::sleep(Duration::from_millis(8_000).saturating_sub(ready.elapsed()));
    let b = env.x1("DeactivateTask", &request("DeactivateTask", &format!("<xId>{XID}</xId>")));
    assert!(b.contains("<oK>AcknowledgedAndCompleted</oK>"), "{b}");

    // To the end of the capture, then a graceful stop: everything spooled is delivered.
    std::thread::sleep(Duration::from_millis(10_500).saturating_sub(ready.elapsed()));
    daemon.stop();
    let reports = [lemf_up.stop(), lemf_down.stop()];

    let cases = case_dirs(d);
    assert_eq!(cases.len(), 1, "{cases:?}");
    for ((liid, src, out), report) in [(LIID, A, &up_out), (LIID2, B, &down_out)].into_iter().zip(&reports) {
        let case = ip_packets(&cases[0].join(liid).join("cc.pcap"));
        let lemf = ip_packets(&out.join(liid).join("cc.pcap"));
        assert!(case.len() > 40, "{liid}: {} packets in the case", case.len());
        assert!(case.iter().all(|p| p.starts_with(&format!("{} ", ip_s(src)))), "{liid}: {case:?}");
        assert_eq!(lemf, case, "{liid}: the LEMF's HI3 differs from the case's CC");
        let text = report.to_string();
        assert!(!text.contains("\"gaps\":[["), "{liid}: {text}");
        assert_eq!(report["integrity"]["hash_failed"], 0, "{liid}: {text}");
        assert_eq!(report["channel_guesses"], 0, "{liid}: {text}");
        assert_eq!(report["undecodable"], 0, "{liid}: {text}");
        // The warrant's HI1 activation went to the LIID's own destination only.
        let iri = std::fs::read_to_string(out.join(liid).join("iri.jsonl")).unwrap();
        assert!(iri.contains("liActivated"), "{liid}: {iri}");
        assert_eq!(iri.contains("liDeactivated"), liid == LIID, "{liid}: {iri}");
        let other = if liid == LIID { LIID2 } else { LIID };
        assert!(!out.join(other).exists(), "{liid}'s LEMF got {other}");
    }
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("X1 destination fault") && log.contains("X1 destination fault cleared"), "{log}");
    env.v.finish();
}

/// `tapir check-config` opens for `[x1]` what `tapir run` opens before READY=1 (TLS files, the
/// store, the audit log's tail, the signing key, the LEA template), reads without creating
/// anything, and names the file of each fault.
#[test]
fn check_config_opens_what_run_opens_for_x1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("pki")).unwrap();
    make_x1_pki(&d.join("pki"), &[]);
    std::fs::write(d.join("warrants.toml"), "# all warrants come over X1\n").unwrap();
    let config = d.join("tapir.toml");
    let write = |x1_extra: &str| {
        std::fs::write(
            &config,
            format!(
                "[capture]\ninterfaces = [\"lo\"]\n\
                 [paths]\nwarrants = \"warrants.toml\"\ncase_dir = \"case\"\nspool_dir = \"spool\"\n\
                 [x1]\nlisten = \"127.0.0.1:8443\"\ncert = \"pki/srv.pem\"\nclient_ca = \"pki/ca.pem\"\n\
                 store = \"x1\"\naudit_log = \"audit.jsonl\"\n{x1_extra}\n\
                 [[x1.client]]\nsubject_cn = \"admf-1\"\nrole = \"admf\"\n"
            ),
        )
        .unwrap();
    };
    let check = || {
        let o = Command::new(TAPIR).args(["check-config", "--config"]).arg(&config).output().unwrap();
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    let good = "key = \"pki/srv.key\"\nlea_template = { operator_id = \"OP\", country = \"NZ\" }";

    // A first install: no store yet, the audit log in it by default. Nothing to complain of.
    write(good);
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap().replace("audit_log = \"audit.jsonl\"\n", ""))
        .unwrap();
    let (ok, out) = check();
    assert!(ok && out.contains("audit log at entry 1"), "{out}");
    // An audit log in a directory nobody creates.
    write(good);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("audit_log = \"audit.jsonl\"", "audit_log = \"nowhere/audit.jsonl\""))
        .unwrap();
    let (ok, out) = check();
    assert!(!ok && out.contains("nowhere") && out.contains("does not exist"), "{out}");

    write(good);
    let (ok, out) = check();
    assert!(ok, "{out}");
    assert!(
        out.contains("X1 on 127.0.0.1:8443: 0 task(s), 0 destination(s) in the store, audit log at entry 1"),
        "{out}"
    );
    assert!(!d.join("x1").exists() && !d.join("audit.jsonl").exists(), "check-config created files");

    // The server key of another certificate.
    write(&good.replace("pki/srv.key", "pki/admf.key"));
    let (ok, out) = check();
    assert!(!ok && out.contains("[x1]") && out.contains("srv.pem"), "{out}");
    // A client CA file that holds no certificate.
    write(good);
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap().replace("pki/ca.pem", "pki/srv.key")).unwrap();
    let (ok, out) = check();
    assert!(!ok && out.contains("client CA") && out.contains("srv.key"), "{out}");
    // A LEA template the handover would refuse.
    write(&good.replace("operator_id = \"OP\"", "operator_id = \"OP\", hash_evry = 5"));
    let (ok, out) = check();
    assert!(!ok && out.contains("lea_template") && out.contains("hash_evry"), "{out}");
    // A signing key that is not one.
    write(&format!("{good}\nsigning_key = \"pki/srv.pem\""));
    let (ok, out) = check();
    assert!(!ok && out.contains("signing key") && out.contains("srv.pem"), "{out}");

    // A damaged store, then a torn audit log: each named.
    write(good);
    std::fs::create_dir(d.join("x1")).unwrap();
    std::fs::write(d.join("x1/x1-state.json"), "{\"format\":").unwrap();
    let (ok, out) = check();
    assert!(!ok && out.contains("x1-state.json"), "{out}");
    std::fs::remove_file(d.join("x1/x1-state.json")).unwrap();
    std::fs::write(d.join("audit.jsonl"), "{\"seq\":1,\"what\":\"start\"").unwrap();
    let (ok, out) = check();
    // Named, with the command that repairs it.
    assert!(!ok && out.contains("audit.jsonl") && out.contains("tapir audit repair"), "{out}");
    std::fs::write(d.join("audit.jsonl"), "{\"seq\":41,\"what\":\"start\"}\n").unwrap();
    let (ok, out) = check();
    assert!(ok && out.contains("audit log at entry 42"), "{out}");
}
