//! Three POIs in three network namespaces, each tapping a veth of its own (AF_PACKET, live),
//! one target's traffic spread across them (one capture replayed into each tap by tcpreplay),
//! one MDF and one `tapir lemf` in the root namespace: the LEMF gets every target packet of
//! the three captures once (tshark on both sides), with no gap or duplicate in any stream, and
//! the IRI the all-in-one delivers for the same captures, record by record (numbering and
//! times aside).

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{free_port, signal, wait_exit, wait_listening, Daemon, Lemf, TAPIR};
use crate::x2x3_roles::{all_in_one, iri_by_session_untimed, mdf, mdf_config, root, FIXTURES};

fn run(args: &[&str]) {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// Namespaces `tx2live-<pid>-<i>`, each with a tap (`inj0` -> `cap0`) and a link to the root
/// namespace (`10.77.<i>.2` there, `10.77.<i>.1` here); removed on drop.
struct Taps(Vec<String>);

impl Taps {
    fn new(n: usize) -> Taps {
        // SAFETY: geteuid cannot fail.
        #[allow(unsafe_code)]
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "this test makes network namespaces: run it as root");
        let mut names = Vec::new();
        for i in 1..=n {
            let ns = format!("tx2live-{}-{i}", std::process::id());
            let _ = Command::new("ip").args(["netns", "del", &ns]).stderr(Stdio::null()).status();
            run(&["ip", "netns", "add", &ns]);
            names.push(ns.clone());
            run(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]);
            run(&[
                "ip", "-n", &ns, "link", "add", "cap0", "mtu", "1600", "type", "veth", "peer", "name", "inj0", "mtu",
                "1600",
            ]);
            let host = format!("x2l{}-{i}", std::process::id() % 10000);
            let _ = Command::new("ip").args(["link", "del", &host]).stderr(Stdio::null()).status();
            run(&["ip", "link", "add", &host, "type", "veth", "peer", "name", "up0", "netns", &ns]);
            run(&["ip", "addr", "add", &format!("10.77.{i}.1/24"), "dev", &host]);
            run(&["ip", "link", "set", &host, "up"]);
            run(&["ip", "-n", &ns, "addr", "add", &format!("10.77.{i}.2/24"), "dev", "up0"]);
            for dev in ["lo", "cap0", "inj0", "up0"] {
                run(&["ip", "-n", &ns, "link", "set", dev, "up"]);
            }
        }
        Taps(names)
    }
}

impl Drop for Taps {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn three_live_pois_in_namespaces_deliver_every_target_packet_once() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let (hi2, hi3) = (free_port(), free_port());
    // A window around now: live frames carry the time they are captured.
    let w = d.join("w.toml");
    std::fs::write(
        &w,
        format!(
            "[[warrant]]\nliid = \"LIID-JOE-0001\"\nstart = \"2020-01-01T00:00:00Z\"\nend = \"2100-01-01T00:00:00Z\"\n\
             scope = \"iri+cc\"\ntargets = [\"ipv4:198.51.100.7\", \"ipv6:2001:db8::7\"]\nlea = \"lea-p\"\n\n\
             [[lea]]\nname = \"lea-p\"\nhi2 = \"127.0.0.1:{hi2}\"\nhi3 = \"127.0.0.1:{hi3}\"\noperator_id = \"OPER-O\"\n\
             network_element_id = \"tapir-1\"\ncountry = \"NZ\"\nkeepalive = 1\n"
        ),
    )
    .unwrap();
    let taps = Taps::new(3);
    let lemf = Lemf::start(hi2, Some(hi3), &d.join("lemf"));
    let port = free_port();
    let mdf_toml = mdf_config(d, &w, port, "");
    let text = std::fs::read_to_string(&mdf_toml).unwrap().replace("127.0.0.1:", "0.0.0.0:");
    std::fs::write(&mdf_toml, text).unwrap();
    let mut m = mdf(&mdf_toml);
    wait_listening(port);
    let mut pois = Vec::new();
    for (i, ns) in taps.0.iter().enumerate() {
        let n = i + 1;
        let c = d.join(format!("poi-{n}.toml"));
        std::fs::write(
            &c,
            format!(
                "[node]\nrole = \"poi\"\nmdf = \"10.77.{n}.1:{port}\"\nname = \"poi-{n}\"\nobject_range = {n}\nkeepalive_secs = 1\n\
                 [capture]\ninterfaces = [\"cap0\"]\nworkers = 1\npromiscuous = true\n[paths]\nwarrants = \"{}\"\n\
                 case_dir = \"{d}/poi-{n}-case\"\nspool_dir = \"{d}/poi-{n}-spool\"\n[limits]\ndeliver_wait_secs = 20\n",
                w.display(),
                d = d.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, TAPIR, "run", "--config"]).arg(&c).env_remove("WATCHDOG_USEC");
        cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
        pois.push(Daemon::start(&mut cmd).0);
    }
    // One capture into each tap, at once, at capture pace.
    let replays: Vec<_> = taps
        .0
        .iter()
        .zip(FIXTURES)
        .map(|(ns, f)| {
            Command::new("ip")
                .args(["netns", "exec", ns, "tcpreplay", "-q", "-i", "inj0"])
                .arg(root().join("pcaps").join(f))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut r in replays {
        assert!(wait_exit(&mut r, Duration::from_secs(60)).success());
    }
    std::thread::sleep(Duration::from_millis(500));
    for p in &mut pois {
        signal(&p.child, "TERM");
        let st = wait_exit(&mut p.child, Duration::from_secs(60));
        assert!(st.success(), "POI exited {st:?}");
    }
    m.stop();
    let report = lemf.stop();
    for (name, s) in report["streams"].as_object().unwrap() {
        assert_eq!(s["duplicates"], 0, "{name}: {s}");
        assert_eq!(s["gaps"], Value::Array(vec![]), "{name}: {s}");
    }
    let fields = ["ip.src", "ip.dst", "ip.len", "ip.id", "ipv6.src", "ipv6.dst", "ipv6.plen", "tcp.seq_raw"];
    let mut got = crate::common::tshark(&d.join("lemf/LIID-JOE-0001/cc.pcap"), None, &fields);
    let mut want = Vec::new();
    for f in FIXTURES {
        want.extend(crate::common::tshark(
            &root().join("pcaps").join(f),
            Some("ip.addr == 198.51.100.7 || ipv6.addr == 2001:db8::7"),
            &fields,
        ));
    }
    got.sort();
    want.sort();
    assert!(want.len() > 900, "{}", want.len());
    assert_eq!(got.len(), want.len(), "every target packet once");
    assert_eq!(got, want);
    // As many sessions as the all-in-one makes of the same captures.
    let (a2, a3) = (free_port(), free_port());
    let aio = d.join("aio");
    std::fs::create_dir_all(&aio).unwrap();
    let wa = crate::x2x3_roles::warrants(&aio, a2, a3);
    all_in_one(&aio, &wa, (a2, a3), &FIXTURES);
    // The IRI, session by session and record by record, is the all-in-one's, but for the
    // numbering and the times (each POI stamps packets as it reads them).
    let (x_s, x_o) = iri_by_session_untimed(&d.join("lemf"));
    let (a_s, a_o) = iri_by_session_untimed(&aio.join("lemf-aio"));
    assert!(a_s.len() >= 3, "{a_s:?}");
    assert_eq!(x_s.len(), a_s.len(), "sessions");
    for (x, a) in x_s.iter().zip(&a_s) {
        assert_eq!(x, a, "a session's IRI");
    }
    // Outside sessions: the HI1 notices, which each POI makes and the MDF delivers once.
    assert_eq!(x_o, a_o, "the IRI outside sessions");
}
