//! POIs, an MDF and an LEMF as separate `tapir` processes on loopback (ETSI TS 103 221-2 X2/X3
//! between POI and MDF, TS 102 232 HI2/HI3 between MDF and LEMF), against one all-in-one
//! `tapir replay --deliver` of the same captures into another LEMF: what the LEMFs receive is
//! the same, IRI record by record and CC packet by packet (by tshark), numbering aside when the
//! POIs run at once. The X2/X3 on the wire is read back by tshark's own `5gli` dissector.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{free_port, ip_packets, make_pki, wait_listening, Daemon, Lemf, TAPIR};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The target of the `http-put`, `ftp-upload` and `ncat-ipv6` fixtures, delivering to the LEA
/// on `hi2`/`hi3`.
pub fn warrants(d: &Path, hi2: u16, hi3: u16) -> PathBuf {
    let w = d.join("w.toml");
    std::fs::write(
        &w,
        format!(
            "[[warrant]]\nliid = \"LIID-JOE-0001\"\nstart = \"2026-01-01T00:00:00Z\"\nend = \"2027-01-01T00:00:00Z\"\n\
             scope = \"iri+cc\"\ntargets = [\"ipv4:198.51.100.7\", \"ipv6:2001:db8::7\"]\nlea = \"lea-p\"\n\
             xid = \"2b36a78b-b628-416d-bd22-404e68a0cd36\"\n\n\
             [[lea]]\nname = \"lea-p\"\nhi2 = \"127.0.0.1:{hi2}\"\nhi3 = \"127.0.0.1:{hi3}\"\noperator_id = \"OPER-O\"\n\
             network_element_id = \"tapir-1\"\ncountry = \"NZ\"\nkeepalive = 1\n"
        ),
    )
    .unwrap();
    w
}

/// `[node]` TLS lines for `name`'s files made by [`make_pki`], under `d`.
pub fn tls_lines(d: &Path, ca: &str, name: &str) -> String {
    let p = |f: &str| d.join(f).display().to_string();
    format!(
        "tls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        p(&format!("{ca}.pem")),
        p(&format!("{name}.pem")),
        p(&format!("{name}.key"))
    )
}

pub fn mdf_config(d: &Path, w: &Path, port: u16, tls: &str) -> PathBuf {
    let c = d.join("mdf.toml");
    std::fs::write(
        &c,
        format!(
            "[node]\nrole = \"mdf\"\nlisten = \"127.0.0.1:{port}\"\n{tls}\n[paths]\nwarrants = \"{}\"\ncase_dir = \"{}\"\n\
             spool_dir = \"{}\"\n[limits]\ndeliver_wait_secs = 10\n",
            w.display(),
            d.join("mdf-case").display(),
            d.join("mdf-spool").display()
        ),
    )
    .unwrap();
    c
}

/// A POI replaying `pcaps` (to their end, then it stops), sending to the MDF on `port`.
pub fn poi_config(d: &Path, w: &Path, name: &str, range: u16, port: u16, pcaps: &[&str], more: &str) -> PathBuf {
    let c = d.join(format!("{name}.toml"));
    let files: Vec<String> = pcaps.iter().map(|p| format!("\"{}\"", root().join("pcaps").join(p).display())).collect();
    std::fs::write(
        &c,
        format!(
            "[node]\nrole = \"poi\"\nmdf = \"127.0.0.1:{port}\"\nname = \"{name}\"\nobject_range = {range}\nkeepalive_secs = 1\n{more}\n\
             [capture]\nreplay = [{}]\nreplay_end = \"exit\"\n[paths]\nwarrants = \"{}\"\ncase_dir = \"{}\"\nspool_dir = \"{}\"\n\
             [limits]\ndeliver_wait_secs = 10\n",
            files.join(", "),
            w.display(),
            d.join(format!("{name}-case")).display(),
            d.join(format!("{name}-spool")).display()
        ),
    )
    .unwrap();
    c
}

pub fn run_poi(config: &Path) -> Output {
    let o = Command::new(TAPIR)
        .args(["run", "--config"])
        .arg(config)
        .env("TAPIR_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(o.status.success(), "POI {}: {}", config.display(), String::from_utf8_lossy(&o.stderr));
    o
}

pub fn mdf(config: &Path) -> Daemon {
    let mut cmd = Command::new(TAPIR);
    cmd.args(["run", "--config"]).arg(config).env_remove("WATCHDOG_USEC").env("TAPIR_LOG", "info");
    cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
    Daemon::start(&mut cmd).0
}

/// The all-in-one: `tapir replay --deliver` of `pcaps` into the LEMF of `w`, a `tapir lemf`
/// on `hi` writing to `d/lemf-aio`.
pub fn all_in_one(d: &Path, w: &Path, hi: (u16, u16), pcaps: &[&str]) {
    let lemf = Lemf::start(hi.0, Some(hi.1), &d.join("lemf-aio"));
    let pcaps: Vec<PathBuf> = pcaps.iter().map(|p| root().join("pcaps").join(p)).collect();
    replay_deliver(d, w, &pcaps, &[]);
    lemf.stop();
}

/// `tapir replay --deliver` of `pcaps` under the warrants `w` (and `more` arguments), its case
/// in `d/aio-case`, its spool in `d/aio-spool`, waiting up to 10 s for the LEAs.
pub fn replay_deliver(d: &Path, w: &Path, pcaps: &[PathBuf], more: &[&std::ffi::OsStr]) {
    let o = Command::new(TAPIR)
        .arg("replay")
        .args(pcaps)
        .arg("--warrants")
        .arg(w)
        .args(more)
        .arg("--out")
        .arg(d.join("aio-case"))
        .arg("--deliver")
        .arg(d.join("aio-spool"))
        .args(["--deliver-wait", "10", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Drops the keys that number things (CINs, sequence numbers, object ids) and HI1 notices'
/// times, everywhere in `v`.
fn strip_numbering(v: &mut Value, times: &[&str]) {
    match v {
        Value::Object(m) => {
            for k in [
                "cin",
                "seq",
                "sequenceNumber",
                "communicationIdentityNumber",
                "data_cin",
                "control_cin",
                "id",
                "object",
                "parent",
                "objectID",
                "dataCIN",
            ]
            .iter()
            .chain(times)
            {
                m.remove(*k);
            }
            for x in m.values_mut() {
                strip_numbering(x, times);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strip_numbering(x, times)),
        _ => {}
    }
}

/// An HI1 notice's times: a warrant's activation is noted when each run starts.
const HI1_TIMES: [&str; 3] = ["timeStamp", "microSecondTimeStamp", "ts"];
/// Every time a record carries: live capture stamps each packet when it is read, so two
/// captures of the same traffic agree on everything but these.
const ALL_TIMES: [&str; 7] =
    ["timeStamp", "microSecondTimeStamp", "ts", "first_seen", "last_seen", "startTime", "endTime"];

/// What an LEMF received as IRI: each session (CIN) as the sorted list of its records with
/// their numbering stripped, the sessions sorted; and the records outside a session.
pub fn iri_by_session(lemf: &Path) -> (Vec<Vec<String>>, Vec<String>) {
    iri_sessions(lemf, false)
}

/// As [`iri_by_session`], without any time: for traffic captured live.
pub fn iri_by_session_untimed(lemf: &Path) -> (Vec<Vec<String>>, Vec<String>) {
    iri_sessions(lemf, true)
}

fn iri_sessions(lemf: &Path, untimed: bool) -> (Vec<Vec<String>>, Vec<String>) {
    let text = std::fs::read_to_string(lemf.join("LIID-JOE-0001/iri.jsonl")).unwrap();
    let mut sessions: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut outside = Vec::new();
    for line in text.lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let cin = v["cin"].as_u64();
        let times: &[&str] = match (untimed, v.get("hI1-Operation").is_some()) {
            (true, _) => &ALL_TIMES,
            (false, true) => &HI1_TIMES,
            (false, false) => &[],
        };
        strip_numbering(&mut v, times);
        let s = serde_json::to_string(&v).unwrap();
        match cin {
            Some(c) => sessions.entry(c).or_default().push(s),
            None => outside.push(s),
        }
    }
    let mut sessions: Vec<Vec<String>> = sessions
        .into_values()
        .map(|mut s| {
            s.sort();
            s
        })
        .collect();
    sessions.sort();
    outside.sort();
    (sessions, outside)
}

pub fn cc_packets(lemf: &Path) -> Vec<String> {
    let mut p = ip_packets(&lemf.join("LIID-JOE-0001/cc.pcap"));
    p.sort();
    p
}

/// `a == b`, or a panic showing where they first differ.
fn same(a: &str, b: &str, what: &str) {
    if a == b {
        return;
    }
    let at = a.bytes().zip(b.bytes()).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    let from = at.saturating_sub(300);
    let cut = |s: &str| s.get(from..(at + 200).min(s.len())).unwrap_or("").to_string();
    panic!("{what} differs at {at}:\n all-in-one: ...{}\n via X2/X3:  ...{}", cut(a), cut(b));
}

pub const FIXTURES: [&str; 3] = ["http-put.pcap", "ftp-upload.pcap", "ncat-ipv6.pcap"];

#[test]
fn three_pois_one_mdf_deliver_what_one_all_in_one_delivers() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    // The all-in-one, over the three captures at once.
    let (hi2, hi3) = (free_port(), free_port());
    let w = warrants(d, hi2, hi3);
    all_in_one(d, &w, (hi2, hi3), &FIXTURES);
    // Three POIs, each with one of the captures, running at once, one MDF, mutual TLS.
    make_pki(
        d,
        &["ca"],
        &[
            ("mdf", "mdf-1", "ca", "srv.ext"),
            ("poi-1", "poi-1", "ca", "cli.ext"),
            ("poi-2", "poi-2", "ca", "cli.ext"),
            ("poi-3", "poi-3", "ca", "cli.ext"),
        ],
    );
    let lemf = Lemf::start(hi2, Some(hi3), &d.join("lemf-x2x3"));
    let port = free_port();
    let mut m = mdf(&mdf_config(d, &w, port, &tls_lines(d, "ca", "mdf")));
    wait_listening(port);
    let pois: Vec<PathBuf> = FIXTURES
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let name = format!("poi-{}", i + 1);
            poi_config(d, &w, &name, i as u16 + 1, port, &[p], &tls_lines(d, "ca", &name))
        })
        .collect();
    let runs: Vec<_> = pois
        .iter()
        .map(|c| {
            let c = c.clone();
            std::thread::spawn(move || run_poi(&c))
        })
        .collect();
    for r in runs {
        let o = r.join().unwrap();
        let log = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(log.contains("X2/X3 forwarding") && log.contains("complete=true"), "{log}");
    }
    m.stop();
    lemf.stop();
    let (aio_s, aio_o) = iri_by_session(&d.join("lemf-aio"));
    let (x_s, x_o) = iri_by_session(&d.join("lemf-x2x3"));
    assert!(aio_s.len() >= 10, "sessions: {}", aio_s.len());
    assert_eq!(x_s.len(), aio_s.len(), "sessions");
    for (a, b) in aio_s.iter().zip(&x_s) {
        same(&a.join("\n"), &b.join("\n"), "a session's IRI");
    }
    assert_eq!(x_o, aio_o, "IRI outside sessions (HI1 notices)");
    let (aio_cc, x_cc) = (cc_packets(&d.join("lemf-aio")), cc_packets(&d.join("lemf-x2x3")));
    assert!(aio_cc.len() > 1000, "{}", aio_cc.len());
    assert_eq!(x_cc, aio_cc, "CC packets");
}

/// One POI at a time, in capture order: the MDF numbers sessions and objects as the all-in-one
/// does, and the LEMF gets exactly the same PDUs (headers, numbers, times). Only their order
/// across sessions may differ: a POI at the end of its capture ends its sessions at once, where
/// the all-in-one ends them when the next capture's packets move its clock on.
#[test]
fn pois_in_turn_deliver_byte_for_byte_what_the_all_in_one_delivers() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let (hi2, hi3) = (free_port(), free_port());
    let w = warrants(d, hi2, hi3);
    all_in_one(d, &w, (hi2, hi3), &FIXTURES);
    let lemf = Lemf::start(hi2, Some(hi3), &d.join("lemf-x2x3"));
    let port = free_port();
    let mut m = mdf(&mdf_config(d, &w, port, ""));
    wait_listening(port);
    for (i, p) in FIXTURES.iter().enumerate() {
        let name = format!("poi-{}", i + 1);
        run_poi(&poi_config(d, &w, &name, i as u16 + 1, port, &[p], ""));
    }
    m.stop();
    lemf.stop();
    let read = |p: &str| {
        let text = std::fs::read_to_string(d.join(p).join("LIID-JOE-0001/iri.jsonl")).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let (a, b) = (read("lemf-aio"), read("lemf-x2x3"));
    assert!(a.len() > 40, "{}", a.len());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        same(x, y, "an IRI PDU");
    }
    let frames = |p: &str| {
        crate::common::tshark(
            &d.join(p).join("LIID-JOE-0001/cc.pcap"),
            None,
            &["frame.time_epoch", "frame.len", "ip.src", "ipv6.src"],
        )
    };
    assert_eq!(frames("lemf-x2x3"), frames("lemf-aio"));
}

#[test]
fn a_poi_with_a_certificate_from_another_ca_is_refused_and_keeps_everything() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    make_pki(d, &["ca", "other"], &[("mdf", "mdf-1", "ca", "srv.ext"), ("rogue", "poi-1", "other", "cli.ext")]);
    let (hi2, hi3) = (free_port(), free_port());
    let w = warrants(d, hi2, hi3);
    let lemf = Lemf::start(hi2, Some(hi3), &d.join("lemf"));
    let port = free_port();
    let mut m = mdf(&mdf_config(d, &w, port, &tls_lines(d, "ca", "mdf")));
    wait_listening(port);
    // The rogue trusts the MDF's CA (it would talk); the MDF does not trust the rogue's.
    let tls = format!(
        "tls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        d.join("ca.pem").display(),
        d.join("rogue.pem").display(),
        d.join("rogue.key").display()
    );
    let c = poi_config(d, &w, "poi-1", 1, port, &["http-put.pcap"], &tls);
    let text = std::fs::read_to_string(&c).unwrap().replace("deliver_wait_secs = 10", "deliver_wait_secs = 2");
    std::fs::write(&c, text).unwrap();
    let o = run_poi(&c);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("complete=false"), "{log}");
    m.stop();
    let report = lemf.stop();
    assert!(!d.join("lemf/LIID-JOE-0001/iri.jsonl").exists(), "{report}");
    // Everything the POI made is still in its spool, for a run with the right certificate.
    let spooled: u64 = std::fs::read_dir(d.join("poi-1-spool/x2x3"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(spooled > 100_000, "{spooled}");
}

/// A network namespace of its own, removed on drop.
pub struct Ns(String);

impl Ns {
    pub fn new(tag: &str) -> Ns {
        let name = format!("tx2x3-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        let ns = Ns(name);
        ns.run(&["ip", "netns", "add", &ns.0], false);
        ns.run(&["ip", "link", "set", "lo", "up"], true);
        ns
    }

    /// `args` in the namespace (`inside`) or as given.
    pub fn cmd(&self, args: &[&str], inside: bool) -> Command {
        let mut c = Command::new(if inside { "ip" } else { args[0] });
        if inside {
            c.args(["netns", "exec", &self.0]).args(args);
        } else {
            c.args(&args[1..]);
        }
        c
    }

    pub fn run(&self, args: &[&str], inside: bool) {
        let o = self.cmd(args, inside).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// `tapir lemf` in the namespace on `hi2`/`hi3`, writing to `out`; returns once it listens.
    pub fn lemf(&self, hi2: u16, hi3: u16, out: &Path) -> std::process::Child {
        let (l2, l3) = (format!("127.0.0.1:{hi2}"), format!("127.0.0.1:{hi3}"));
        let child = self
            .cmd(&[TAPIR, "lemf", "--listen-hi2", &l2, "--listen-hi3", &l3, "--out", out.to_str().unwrap()], true)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.wait_listening(hi2);
        child
    }

    /// `tapir run` of `config` in the namespace, once it says READY=1.
    pub fn daemon(&self, config: &Path) -> Daemon {
        let mut cmd = self.cmd(&[TAPIR, "run", "--config", config.to_str().unwrap()], true);
        cmd.env_remove("WATCHDOG_USEC").stdout(Stdio::null()).stderr(Stdio::inherit());
        Daemon::start(&mut cmd).0
    }

    /// Waits until something listens on TCP `port` in the namespace.
    pub fn wait_listening(&self, port: u16) {
        for _ in 0..200 {
            let o = self.cmd(&["ss", "-Hltn", &format!("sport = :{port}")], true).output().unwrap();
            if !o.stdout.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("nothing listens on {port} in {}", self.0);
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The X2/X3 a POI sends, captured on loopback, read by tshark's `5gli` dissector field by
/// field: version 5, the PDU types, the warrant's XID, sequence numbers and timestamps, the
/// payload direction, and in X3 the target's IP packets, which are those tshark finds in the
/// input capture. The dissector does not reassemble, so each TCP segment must carry whole
/// PDUs: the POI writes each PDU on its own once the one before is acknowledged
/// (`write_per_pdu`), in a network namespace of its own (loopback's MTU holds any PDU).
#[test]
fn x2x3_on_the_wire_decodes_in_tshark_5gli_field_by_field() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let ns = Ns::new("wire");
    let (hi2, hi3, port) = (47001, 47002, 47010);
    let w = warrants(d, hi2, hi3);
    let lemf_out = d.join("lemf");
    let mut lemf = ns.lemf(hi2, hi3, &lemf_out);
    let mut m = ns.daemon(&mdf_config(d, &w, port, ""));
    let wire = d.join("wire.pcap");
    let mut dump = ns
        .cmd(&["tcpdump", "-i", "lo", "-U", "-s", "0", "-w", wire.to_str().unwrap(), &format!("tcp port {port}")], true)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // tcpdump says when it listens.
    let mut said = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(dump.stderr.take().unwrap()), &mut said).unwrap();
    assert!(said.contains("listening on"), "{said}");
    let c = poi_config(d, &w, "poi-1", 1, port, &["http-put.pcap"], "write_per_pdu = true");
    let o = ns.cmd(&[TAPIR, "run", "--config", c.to_str().unwrap()], true).env("TAPIR_LOG", "info").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The last segments out of the kernel's buffer and into the file, also on a busy machine.
    std::thread::sleep(Duration::from_millis(1500));
    let _ = Command::new("kill").args(["-INT", &dump.id().to_string()]).status();
    dump.wait().unwrap();
    m.stop();
    let _ = Command::new("kill").args(["-TERM", &lemf.id().to_string()]).status();
    assert!(lemf.wait().unwrap().success());
    // tshark's JSON, one object per frame; a frame's PDUs are its `5gli` layers.
    let o = Command::new("tshark")
        .arg("-r")
        .arg(&wire)
        .args(["-d", &format!("tcp.port=={port},5gli"), "-Y", "5gli", "-T", "json", "--no-duplicate-keys"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let frames: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let mut types = BTreeMap::<String, usize>::new();
    let mut carried = Vec::new();
    let mut seqs = BTreeMap::<String, Vec<u64>>::new();
    for f in &frames {
        let layer = &f["_source"]["layers"]["5gli"];
        let pdus: Vec<&Value> = match layer {
            Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
        for p in pdus {
            let s = |k: &str| p[k].as_str().unwrap_or("").to_string();
            // Every octet of the segment is a whole PDU of version 5.
            assert_eq!(
                s("li5g.ver"),
                "5",
                "{}",
                serde_json::to_string(&f["_source"]["layers"]).unwrap().chars().take(3000).collect::<String>()
            );
            let t = s("li5g.type");
            *types.entry(t.clone()).or_default() += 1;
            if t == "1" || t == "2" {
                assert_eq!(s("li5g.xid"), "2b36a78b-b628-416d-bd22-404e68a0cd36", "{p}");
                assert!(s("li5g.ts").starts_with("Nov 22, 2026 17:08:23"), "{p}");
                seqs.entry(s("li5g.cid")).or_default().push(s("li5g.sq").parse().unwrap());
                let pd = s("li5g.pd");
                assert!(["2", "3", "4", "5"].contains(&pd.as_str()), "{p}");
            }
            if t == "2" && s("li5g.pf") == "5" {
                let ip = &p["ip"];
                let g = |k: &str| ip[k].as_str().unwrap_or("").to_string();
                carried.push(format!("{}|{}|{}|{}", g("ip.src"), g("ip.dst"), g("ip.len"), g("ip.id")));
            }
        }
    }
    for k in ["1", "2", "3", "4"] {
        assert!(types.contains_key(k), "no PDU of type {k}: {types:?}");
    }
    // Sequence numbers count from 0 per correlation ID (per session), one by one.
    for (cid, s) in &seqs {
        assert_eq!(*s, (0..s.len() as u64).collect::<Vec<_>>(), "correlation ID {cid}");
    }
    carried.sort();
    // Every target packet of the input is an X3 IPv4 PDU, as tshark reads both.
    let mut input: Vec<String> = crate::common::tshark(
        &root().join("pcaps/http-put.pcap"),
        Some("ip.addr == 198.51.100.7"),
        &["ip.src", "ip.dst", "ip.len", "ip.id"],
    );
    input.sort();
    assert!(input.len() > 300, "{}", input.len());
    assert_eq!(carried, input);
}

/// An MDF without a journal (`journal_max_bytes = 0`) delivers as it takes: the LEMF has every
/// target packet (tshark on both sides) while the MDF still runs. Its HI spools are held at
/// checkpoints only when a journal makes them.
#[test]
fn an_mdf_without_a_journal_delivers_while_it_runs() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let (hi2, hi3, port) = (free_port(), free_port(), free_port());
    let w = warrants(d, hi2, hi3);
    let lemf = Lemf::start(hi2, Some(hi3), &d.join("lemf"));
    let mut m = mdf(&mdf_config(d, &w, port, "journal_max_bytes = 0"));
    wait_listening(port);
    run_poi(&poi_config(d, &w, "poi-1", 1, port, &["http-put.pcap"], ""));
    let want = crate::common::tshark(
        &root().join("pcaps/http-put.pcap"),
        Some("ip.addr == 198.51.100.7"),
        &["ip.src", "ip.dst", "ip.len", "ip.id"],
    );
    let cc = d.join("lemf/LIID-JOE-0001/cc.pcap");
    let t = std::time::Instant::now();
    while !cc.exists() || crate::common::tshark(&cc, None, &["ip.src", "ip.dst", "ip.len", "ip.id"]) != want {
        assert!(t.elapsed() < Duration::from_secs(20), "the LEMF has not got the packets while the MDF runs");
        std::thread::sleep(Duration::from_millis(300));
    }
    m.stop();
    lemf.stop();
}
