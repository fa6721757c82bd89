//! One ADMF provisions two POIs and their MDF over X1 (TS 103 221-1), as TS 103 221 lays out:
//! the task (XID, target) goes to every POI that should see it, with the MDF as the POIs'
//! destination (which the POIs send to, whatever their own `[node] mdf`); the same task with the LEA's destination goes to the MDF, which maps the XID to
//! the LIID and the LEA. The target VM moves from the first hypervisor's POI to the second's
//! halfway: the MDF numbers on (the second POI's sessions get the next CINs, no cINReset), and
//! the LEMF gets every target packet of both links once, with the IRI an all-in-one delivers
//! from both links' traffic under the same warrant.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    free_port, ip_s, make_x1_pki, rfc3339, run_command, udp_frame_macs, wait_exit, write_pcap, Daemon, Lemf, T0,
};

const XID: &str = "5d0b7c1e-3f43-4c1a-9d7e-2a6f1c0b9e11";
const LIID: &str = "LIID-MOVE-01";
/// The LEA's destination (on the MDF) and the MDF's (on the POIs).
const DID_LEA: &str = "7a0e1b2c-0d4e-4f5a-8b6c-7d8e9f0a1b2c";
const DID_MDF: &str = "8b1f2c3d-1e5f-4a6b-9c7d-8e9f0a1b2c3d";
/// The VM: the target of the `http-put` and `ftp-upload` fixtures.
const VM: [u8; 4] = [198, 51, 100, 7];

/// An X1 request of type `ty` to the NE named `ne`.
fn request(ty: &str, ne: &str, inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<X1Request xmlns="http://uri.etsi.org/03221/X1/2017/10" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:c="http://uri.etsi.org/03280/common/2017/07">
 <x1RequestMessage xsi:type="{ty}Request">
  <admfIdentifier>admf1</admfIdentifier><neIdentifier>{ne}</neIdentifier>
  <messageTimestamp>2026-01-01T00:00:00.000000Z</messageTimestamp><version>v1.22.1</version>
  <x1TransactionId>c02358b2-76cf-4ba4-a8eb-f6436ccaea2e</x1TransactionId>{inner}
 </x1RequestMessage>
</X1Request>"#
    )
}

fn create_destination(ne: &str, did: &str, port: u16, delivery: &str) -> String {
    request(
        "CreateDestination",
        ne,
        &format!(
            "<destinationDetails><dId>{did}</dId><friendlyName>{delivery}</friendlyName><deliveryType>{delivery}</deliveryType>\
             <deliveryAddress><ipAddressAndPort><c:address><c:IPv4Address>127.0.0.1</c:IPv4Address></c:address>\
             <c:port><c:TCPPort>{port}</c:TCPPort></c:port></ipAddressAndPort></deliveryAddress></destinationDetails>"
        ),
    )
}

fn activate(ne: &str, did: &str) -> String {
    activate_task(ne, did, XID, LIID, &format!("<ipv4Address>{}</ipv4Address>", ip_s(VM)))
}

/// ActivateTask `xid` (LIID `liid`) for one target (`target`: its XML element) to `did`.
fn activate_task(ne: &str, did: &str, xid: &str, liid: &str, target: &str) -> String {
    request(
        "ActivateTask",
        ne,
        &format!(
            "<taskDetails><xId>{xid}</xId><targetIdentifiers><targetIdentifier>{target}</targetIdentifier>\
             </targetIdentifiers><deliveryType>X2andX3</deliveryType>\
             <listOfDIDs><dId>{did}</dId></listOfDIDs><listOfMediationDetails><mediationDetails><LIID>{liid}</LIID>\
             <deliveryType>HI2andHI3</deliveryType></mediationDetails></listOfMediationDetails></taskDetails>"
        ),
    )
}

/// curl POSTing `body` to the X1 endpoint on `port` as the ADMF (`admf-1`); the answer's body.
fn x1(pki: &Path, port: u16, body: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "15", "--cacert"])
        .arg(pki.join("ca.pem"))
        .arg("--cert")
        .arg(pki.join("admf.pem"))
        .arg("--key")
        .arg(pki.join("admf.key"))
        .args(["-H", "Content-Type: text/xml", "--data-binary", body])
        .arg(format!("https://127.0.0.1:{port}/X1/NE"))
        .output()
        .unwrap();
    let b = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && b.contains("<oK>AcknowledgedAndCompleted</oK>"), "X1 on {port}: {b}");
    b
}

/// `[x1]` on `port`, its store under `d/name-x1`, the ADMF as its client.
fn x1_table(d: &Path, name: &str, port: u16) -> String {
    let pki = d.join("pki");
    format!(
        "[x1]\nlisten = \"127.0.0.1:{port}\"\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\nstore = \"{}\"\n\
         ne_id = \"{name}\"\nlea_template = {{ operator_id = \"OP-X1\", network_element_id = \"tapir-mdf\", country = \"NZ\", keepalive = 1 }}\n\
         [[x1.client]]\nsubject_cn = \"admf-1\"\nrole = \"admf\"\n",
        pki.join("srv.pem").display(),
        pki.join("srv.key").display(),
        pki.join("ca.pem").display(),
        d.join(format!("{name}-x1")).display()
    )
}

/// One hypervisor's link: a frame nobody is targeted by at T0 (where every link's real-time
/// replay starts), then each fixture of `fixtures` (a real client's session with the VM) moved
/// to T0 + its seconds by editcap.
fn link(d: &Path, name: &str, fixtures: &[(&str, u32)]) -> PathBuf {
    let t0 = d.join(format!("{name}-t0.pcap"));
    let mac = |n: u8| [0x02, 0, 0, 0, 0, n];
    write_pcap(&t0, &[(0, 0, udp_frame_macs(mac(9), mac(8), [10, 9, 9, 1], [10, 9, 9, 2], 7, 7, b"not a target"))]);
    let run = |cmd: &mut Command| {
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let mut parts = vec![t0];
    for (i, (fixture, at)) in fixtures.iter().enumerate() {
        let src = crate::x2x3_roles::root().join("pcaps").join(fixture);
        let first = crate::common::tshark(&src, None, &["frame.time_epoch"]).remove(0);
        let delta = f64::from(T0 + at) - first.trim().parse::<f64>().unwrap();
        let shifted = d.join(format!("{name}-{i}.pcap"));
        run(Command::new("editcap").args(["-t", &format!("{delta:.6}")]).arg(&src).arg(&shifted));
        parts.push(shifted);
    }
    let out = d.join(format!("{name}.pcap"));
    run(Command::new("mergecap").args(["-F", "pcap", "-w"]).arg(&out).args(&parts));
    out
}

/// An MDF with X2/X3 on `x2x3` and X1 on `x1_port`, no warrant in a file, logging to
/// `d/<name>.log`.
fn start_mdf(d: &Path, name: &str, x2x3: u16, x1_port: u16) -> Daemon {
    let c = d.join(format!("{name}.toml"));
    std::fs::write(
        &c,
        format!(
            "[node]\nrole = \"mdf\"\nlisten = \"127.0.0.1:{x2x3}\"\n[paths]\nwarrants = \"{}\"\ncase_dir = \"{}\"\n\
             spool_dir = \"{}\"\n[limits]\ndeliver_wait_secs = 10\n{}",
            d.join("empty.toml").display(),
            d.join(format!("{name}-case")).display(),
            d.join(format!("{name}-spool")).display(),
            x1_table(d, name, x1_port)
        ),
    )
    .unwrap();
    let log = std::fs::File::create(d.join(format!("{name}.log"))).unwrap();
    Daemon::start(run_command(&c).env("TAPIR_LOG", "info").stderr(Stdio::from(log))).0
}

fn poi_config(d: &Path, name: &str, range: u16, mdf: u16, x1_port: u16, pcap: &Path) -> PathBuf {
    let c = d.join(format!("{name}.toml"));
    std::fs::write(
        &c,
        format!(
            "[node]\nrole = \"poi\"\nmdf = \"127.0.0.1:{mdf}\"\nname = \"{name}\"\nobject_range = {range}\nkeepalive_secs = 1\n\
             [capture]\nreplay = [\"{}\"]\npace = \"realtime\"\nreplay_end = \"exit\"\n\
             [paths]\nwarrants = \"{}\"\ncase_dir = \"{}\"\nspool_dir = \"{}\"\n[limits]\ndeliver_wait_secs = 20\n{}",
            pcap.display(),
            d.join("empty.toml").display(),
            d.join(format!("{name}-case")).display(),
            d.join(format!("{name}-spool")).display(),
            x1_table(d, name, x1_port)
        ),
    )
    .unwrap();
    c
}

/// (source, destination, length, IP id) of the VM's packets, by tshark.
fn vm_packets(pcap: &Path) -> Vec<String> {
    crate::common::tshark(pcap, Some(&format!("ip.addr == {}", ip_s(VM))), &["ip.src", "ip.dst", "ip.len", "ip.id"])
}

/// The LIID's IRI as the LEMF wrote it, without the HI1 notices (whose times and origin differ
/// between a warrant read from a file and a task given over X1), sorted.
fn session_iri(lemf: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(lemf.join(LIID).join("iri.jsonl")).unwrap();
    let mut v: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| !v.to_string().contains("liActivated") && !v.to_string().contains("liDeactivated"))
        .collect();
    v.sort_by_key(|v| v.to_string());
    v
}

#[test]
fn one_admf_provisions_pois_and_mdf_and_a_moved_vm_keeps_its_cin_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("pki")).unwrap();
    make_x1_pki(&d.join("pki"), &[]);
    std::fs::write(d.join("empty.toml"), "# every task comes over X1\n").unwrap();
    // The VM on hypervisor 1 at T0+3 s (an HTTP upload), on hypervisor 2 at T0+5 s (an FTP
    // upload).
    let hv1 = link(d, "hv1", &[("http-put.pcap", 3)]);
    let hv2 = link(d, "hv2", &[("ftp-upload.pcap", 5)]);

    let lea_port = free_port();
    let lemf_out = d.join("lemf");
    let lemf = Lemf::start(lea_port, None, &lemf_out);
    let (x2x3, x1_mdf, x1_hv1, x1_hv2, decoy) = (free_port(), free_port(), free_port(), free_port(), free_port());
    let mut mdf = start_mdf(d, "mdf", x2x3, x1_mdf);
    // The MDF first: the LEA's destination and the task that names it.
    let pki = d.join("pki");
    x1(&pki, x1_mdf, &create_destination("mdf", DID_LEA, lea_port, "X2andX3"));
    x1(&pki, x1_mdf, &activate("mdf", DID_LEA));
    // Then each POI: the MDF as destination, the same task. The target's first packet comes
    // 3 s into each replay.
    let started = Instant::now();
    let mut pois = Vec::new();
    for (name, range, port, pcap) in [("poi-hv1", 1, x1_hv1, &hv1), ("poi-hv2", 2, x1_hv2, &hv2)] {
        // The POI's own `[node] mdf` is an address where nothing listens: what the LEMF gets
        // went to the MDF the ADMF named as the task's destination.
        let c = poi_config(d, name, range, decoy, port, pcap);
        let log = std::fs::File::create(d.join(format!("{name}.log"))).unwrap();
        let (p, _) = Daemon::start(run_command(&c).env("TAPIR_LOG", "info").stderr(Stdio::from(log)));
        x1(&pki, port, &create_destination(name, DID_MDF, x2x3, "X2andX3"));
        x1(&pki, port, &activate(name, DID_MDF));
        pois.push(p);
    }
    assert!(started.elapsed() < Duration::from_millis(2500), "provisioning took {:?}", started.elapsed());
    for mut p in pois {
        let st = wait_exit(&mut p.child, Duration::from_secs(60));
        assert!(st.success(), "POI exited {st:?}");
    }
    mdf.stop();
    let report = lemf.stop();

    // Every packet of the VM on either link, once, in order (tshark on both sides).
    let mut want = vm_packets(&hv1);
    want.extend(vm_packets(&hv2));
    assert!(want.len() > 1000, "{}", want.len());
    assert_eq!(vm_packets(&lemf_out.join(LIID).join("cc.pcap")), want);
    // One numbering: no gap, no duplicate, no cINReset; the sessions after the move have the
    // next CINs.
    let streams = report["streams"].as_object().unwrap();
    for (name, s) in streams {
        assert_eq!(s["duplicates"], 0, "{name}: {s}");
        assert_eq!(s["gaps"], serde_json::json!([]), "{name}: {s}");
        assert_eq!(s["cin_resets"], 0, "{name}: {s}");
    }
    let iri = session_iri(&lemf_out);
    let cins: std::collections::BTreeSet<u64> = iri.iter().filter_map(|v| v["cin"].as_u64()).collect();
    let n = cins.len() as u64;
    assert!(n >= 3, "an HTTP session, FTP control and data: {cins:?}");
    assert_eq!(cins.into_iter().collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>());

    // The all-in-one of both links under a file warrant with the same LIID and target.
    let aio_port = free_port();
    let w = d.join("w.toml");
    std::fs::write(
        &w,
        format!(
            "[[warrant]]\nliid = \"{LIID}\"\nstart = \"{}\"\nend = \"{}\"\nscope = \"iri+cc\"\ntargets = [\"ipv4:{}\"]\n\
             [[lea]]\nname = \"lea\"\nhi2 = \"127.0.0.1:{aio_port}\"\nhi3 = \"127.0.0.1:{aio_port}\"\noperator_id = \"OP-X1\"\n\
             network_element_id = \"tapir-mdf\"\ncountry = \"NZ\"\nkeepalive = 1\n",
            rfc3339(-60),
            rfc3339(3600),
            ip_s(VM)
        ),
    )
    .unwrap();
    let aio_out = d.join("lemf-aio");
    let aio_lemf = Lemf::start(aio_port, None, &aio_out);
    crate::x2x3_roles::replay_deliver(d, &w, &[hv1, hv2], &[]);
    aio_lemf.stop();
    assert_eq!(iri, session_iri(&aio_out), "the IRI, CINs and sequence numbers included, is the all-in-one's");
}

/// Two tasks of one POI, each with its own MDF (and LEA) as destination: the POI sends each
/// task's X2/X3 to its own MDF only. The target's IPv4 traffic is one task, its IPv6 traffic
/// the other; neither MDF ever gets a PDU of the other's task (it would refuse its unknown
/// XID), and each LEMF gets exactly its task's packets.
#[test]
fn a_poi_sends_each_task_to_the_mdf_its_destination_names() {
    const XID_B: &str = "6e1c8d2f-4054-4d2b-8e8f-3b7a2d1c0f22";
    const LIID_B: &str = "LIID-MOVE-02";
    const DID_LEA_B: &str = "9c2a3d4e-2f6a-4b7c-8d9e-0f1a2b3c4d5e";
    const DID_MDF_B: &str = "ad3b4e5f-3a7b-4c8d-9eaf-1a2b3c4d5e6f";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("pki")).unwrap();
    make_x1_pki(&d.join("pki"), &[]);
    std::fs::write(d.join("empty.toml"), "# every task comes over X1\n").unwrap();
    let link = link(d, "hv", &[("http-put.pcap", 3), ("ncat-ipv6.pcap", 5)]);
    let pki = d.join("pki");
    let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
    let [lea_a, lea_b, x2x3_a, x2x3_b, x1_a, x1_b, x1_poi, decoy] = ports[..] else { unreachable!() };
    let (out_a, out_b) = (d.join("lemf-a"), d.join("lemf-b"));
    let (lemf_a, lemf_b) = (Lemf::start(lea_a, None, &out_a), Lemf::start(lea_b, None, &out_b));
    let mut mdf_a = start_mdf(d, "mdf-a", x2x3_a, x1_a);
    let mut mdf_b = start_mdf(d, "mdf-b", x2x3_b, x1_b);
    let v4 = format!("<ipv4Address>{}</ipv4Address>", ip_s(VM));
    let v6 = "<ipv6Address>2001:db8::7</ipv6Address>";
    x1(&pki, x1_a, &create_destination("mdf-a", DID_LEA, lea_a, "X2andX3"));
    x1(&pki, x1_a, &activate_task("mdf-a", DID_LEA, XID, LIID, &v4));
    x1(&pki, x1_b, &create_destination("mdf-b", DID_LEA_B, lea_b, "X2andX3"));
    x1(&pki, x1_b, &activate_task("mdf-b", DID_LEA_B, XID_B, LIID_B, v6));
    let c = poi_config(d, "poi-hv", 1, decoy, x1_poi, &link);
    let log = std::fs::File::create(d.join("poi-hv.log")).unwrap();
    let started = Instant::now();
    let (mut poi, _) = Daemon::start(run_command(&c).env("TAPIR_LOG", "info").stderr(Stdio::from(log)));
    x1(&pki, x1_poi, &create_destination("poi-hv", DID_MDF, x2x3_a, "X2andX3"));
    x1(&pki, x1_poi, &create_destination("poi-hv", DID_MDF_B, x2x3_b, "X2andX3"));
    x1(&pki, x1_poi, &activate_task("poi-hv", DID_MDF, XID, LIID, &v4));
    x1(&pki, x1_poi, &activate_task("poi-hv", DID_MDF_B, XID_B, LIID_B, v6));
    assert!(started.elapsed() < Duration::from_millis(2500), "provisioning took {:?}", started.elapsed());
    let st = wait_exit(&mut poi.child, Duration::from_secs(60));
    assert!(st.success(), "POI exited {st:?}");
    mdf_a.stop();
    mdf_b.stop();
    lemf_a.stop();
    lemf_b.stop();

    let fields = ["ip.src", "ip.dst", "ip.len", "ip.id", "ipv6.src", "ipv6.dst", "ipv6.plen", "tcp.seq_raw"];
    let packets = |pcap: &Path, filter: Option<&str>| crate::common::tshark(pcap, filter, &fields);
    let want_a = packets(&link, Some(&format!("ip.addr == {}", ip_s(VM))));
    let want_b = packets(&link, Some("ipv6.addr == 2001:db8::7"));
    assert!(want_a.len() > 400 && want_b.len() > 200, "{} {}", want_a.len(), want_b.len());
    assert_eq!(packets(&out_a.join(LIID).join("cc.pcap"), None), want_a, "LEA A: its task's packets");
    assert_eq!(packets(&out_b.join(LIID_B).join("cc.pcap"), None), want_b, "LEA B: its task's packets");
    assert!(!out_a.join(LIID_B).exists() && !out_b.join(LIID).exists(), "an LEA got the other's LIID");
    for (name, xid) in [("mdf-a", XID), ("mdf-b", XID_B)] {
        let log = std::fs::read_to_string(d.join(format!("{name}.log"))).unwrap();
        let intake = log.lines().find(|l| l.contains("X2/X3 intake")).unwrap();
        assert!(intake.contains("refused=0") && !intake.contains("x3=0"), "{name} ({xid}): {intake}");
    }
    let log = std::fs::read_to_string(d.join("poi-hv.log")).unwrap();
    let fwd = log.lines().find(|l| l.contains("X2/X3 forwarding")).unwrap();
    assert!(fwd.contains("other_mdfs=2") && fwd.contains("complete=true"), "{fwd}");
}
