//! One ADMF provisions two POIs and their MDF over X1 (TS 103 221-1), as TS 103 221 lays out:
//! the task (XID, target) goes to every POI that should see it, with the MDF as the POIs'
//! destination; the same task with the LEA's destination goes to the MDF, which maps the XID to
//! the LIID and the LEA. The target VM moves from the first hypervisor's POI to the second's
//! halfway: the MDF numbers on (the second POI's sessions get the next CINs, no cINReset), and
//! the LEMF gets every target packet of both links once, with the IRI an all-in-one delivers
//! from both links' traffic under the same warrant.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    free_port, ip_s, make_x1_pki, rfc3339, run_command, udp_frame_macs, wait_exit, write_pcap, Daemon, Lemf, T0, TAPIR,
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
    request(
        "ActivateTask",
        ne,
        &format!(
            "<taskDetails><xId>{XID}</xId><targetIdentifiers><targetIdentifier><ipv4Address>{}</ipv4Address>\
             </targetIdentifier></targetIdentifiers><deliveryType>X2andX3</deliveryType>\
             <listOfDIDs><dId>{did}</dId></listOfDIDs><listOfMediationDetails><mediationDetails><LIID>{LIID}</LIID>\
             <deliveryType>HI2andHI3</deliveryType></mediationDetails></listOfMediationDetails></taskDetails>",
            ip_s(VM)
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

/// One hypervisor's link: a frame nobody is targeted by at T0 (where both links' real-time
/// replays start), then the fixture `fixture` (a real client's session with the VM) moved to
/// T0 + `at` s by editcap.
fn link(d: &Path, name: &str, fixture: &str, at: u32) -> PathBuf {
    let src = crate::x2x3_roles::root().join("pcaps").join(fixture);
    let first = crate::common::tshark(&src, None, &["frame.time_epoch"]).remove(0);
    let delta = f64::from(T0 + at) - first.trim().parse::<f64>().unwrap();
    let (t0, shifted, out) =
        (d.join(format!("{name}-t0.pcap")), d.join(format!("{name}-s.pcap")), d.join(format!("{name}.pcap")));
    let mac = |n: u8| [0x02, 0, 0, 0, 0, n];
    write_pcap(&t0, &[(0, 0, udp_frame_macs(mac(9), mac(8), [10, 9, 9, 1], [10, 9, 9, 2], 7, 7, b"not a target"))]);
    let run = |cmd: &mut Command| {
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    run(Command::new("editcap").args(["-t", &format!("{delta:.6}")]).arg(&src).arg(&shifted));
    run(Command::new("mergecap").args(["-F", "pcap", "-w"]).arg(&out).arg(&t0).arg(&shifted));
    out
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
    let hv1 = link(d, "hv1", "http-put.pcap", 3);
    let hv2 = link(d, "hv2", "ftp-upload.pcap", 5);

    let lea_port = free_port();
    let lemf_out = d.join("lemf");
    let lemf = Lemf::start(lea_port, None, &lemf_out);
    let (x2x3, x1_mdf, x1_hv1, x1_hv2) = (free_port(), free_port(), free_port(), free_port());
    let mdf_toml = d.join("mdf.toml");
    std::fs::write(
        &mdf_toml,
        format!(
            "[node]\nrole = \"mdf\"\nlisten = \"127.0.0.1:{x2x3}\"\n[paths]\nwarrants = \"{}\"\ncase_dir = \"{}\"\n\
             spool_dir = \"{}\"\n[limits]\ndeliver_wait_secs = 10\n{}",
            d.join("empty.toml").display(),
            d.join("mdf-case").display(),
            d.join("mdf-spool").display(),
            x1_table(d, "mdf", x1_mdf)
        ),
    )
    .unwrap();
    let log = std::fs::File::create(d.join("mdf.log")).unwrap();
    let (mut mdf, _) = Daemon::start(run_command(&mdf_toml).env("TAPIR_LOG", "info").stderr(Stdio::from(log)));
    // The MDF first: the LEA's destination and the task that names it.
    let pki = d.join("pki");
    x1(&pki, x1_mdf, &create_destination("mdf", DID_LEA, lea_port, "X2andX3"));
    x1(&pki, x1_mdf, &activate("mdf", DID_LEA));
    // Then each POI: the MDF as destination, the same task. The target's first packet comes
    // 3 s into each replay.
    let started = Instant::now();
    let mut pois = Vec::new();
    for (name, range, port, pcap) in [("poi-hv1", 1, x1_hv1, &hv1), ("poi-hv2", 2, x1_hv2, &hv2)] {
        let c = poi_config(d, name, range, x2x3, port, pcap);
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
    let o = Command::new(TAPIR)
        .arg("replay")
        .args([&hv1, &hv2])
        .arg("--warrants")
        .arg(&w)
        .arg("--out")
        .arg(d.join("aio-case"))
        .arg("--deliver")
        .arg(d.join("aio-spool"))
        .args(["--deliver-wait", "10", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    aio_lemf.stop();
    assert_eq!(iri, session_iri(&aio_out), "the IRI, CINs and sequence numbers included, is the all-in-one's");
}
