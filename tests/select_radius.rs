//! RADIUS accounting parsed from real bytes: packets sent by FreeRADIUS's `radclient` over
//! loopback, captured with tcpdump, decoded independently by tshark, and turned into the
//! association events the `--associations` format defines. Plus hostile and random inputs.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use md5::{Digest, Md5};
use proptest::prelude::*;
use tapir::select::radius::{assoc_events, parse_accounting, verify_request_authenticator, AcctStatus, RadiusError};
use tapir::select::{parse_event, AssocEventKind};
use tapir::timestamp::Timestamp;

const PACKETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/radius/accounting.txt");
/// A capture of `PACKETS` made by `radclient_capture` (kept so the tshark comparison also runs
/// against fixed bytes).
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/radius/accounting.pcap");
const SECRET: &[u8] = b"testing123";

/// Answers every Accounting-Request with an Accounting-Response whose Response Authenticator is
/// MD5(5 + id + length + request authenticator + secret) (RFC 2866 3), so radclient is satisfied.
fn responder(sock: UdpSocket, stop: Arc<AtomicBool>) {
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else { continue };
        if n < 20 || buf[0] != 4 {
            continue;
        }
        let mut resp = vec![5u8, buf[1], 0, 20];
        let mut h = Md5::new();
        h.update(&resp);
        h.update(&buf[4..20]);
        h.update(SECRET);
        resp.extend_from_slice(&h.finalize());
        let _ = sock.send_to(&resp, peer);
    }
}

/// Sends `PACKETS` with radclient to a local responder while tcpdump captures loopback; returns
/// the pcap and the UDP port.
fn radclient_capture(dir: &Path) -> (PathBuf, u16) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let resp = std::thread::spawn(move || responder(sock, st));

    let pcap = dir.join("radius.pcap");
    // 6 requests + 6 responses.
    let mut dump = Command::new("tcpdump")
        .args(["-i", "lo", "-U", "-n", "-c", "12", "-w"])
        .arg(&pcap)
        .arg(format!("udp port {port}"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    let mut err = BufReader::new(dump.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("listening on") {
        line.clear();
    }
    assert!(line.contains("listening on"), "tcpdump did not start");

    let out = Command::new("radclient")
        .args(["-p", "1", "-r", "3", "-t", "2", "-f", PACKETS])
        .arg(format!("127.0.0.1:{port}"))
        .args(["acct", std::str::from_utf8(SECRET).unwrap()])
        .output()
        .expect("radclient (Debian package freeradius-utils)");
    assert!(out.status.success(), "radclient: {}", String::from_utf8_lossy(&out.stderr));

    let deadline = Instant::now() + Duration::from_secs(20);
    while dump.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "tcpdump did not see 12 packets");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    resp.join().unwrap();
    (pcap, port)
}

/// One Accounting-Request as tshark decodes it.
#[derive(Debug)]
struct TsharkRow {
    time: Timestamp,
    status: u32,
    user: String,
    framed_ip: String,
    v6_prefix_hex: String,
    delegated_hex: String,
    v6_addr: String,
    session: String,
    payload: Vec<u8>,
    nas_ip: String,
    nas_identifier: String,
    nas_port_id: String,
    /// Acct-Input-Octets, Acct-Output-Octets, Acct-Input-Gigawords as tshark prints them.
    octets: [String; 3],
}

fn tshark_requests(pcap: &Path, port: Option<u16>) -> Vec<TsharkRow> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap);
    if let Some(p) = port {
        cmd.args(["-d", &format!("udp.port=={p},radius")]);
    }
    let fields = [
        "frame.time_epoch",
        "radius.code",
        "radius.Acct_Status_Type",
        "radius.User_Name",
        "radius.Framed-IP-Address",
        "radius.Framed_IP_Address",
        "radius.Framed_IPv6_Prefix",
        "radius.Framed_IPv6_Address",
        "radius.Acct_Session_Id",
        "udp.payload",
        "radius.Delegated_IPv6_Prefix",
        "radius.NAS_IP_Address",
        "radius.NAS_Identifier",
        "radius.NAS_Port_Id",
        "radius.Acct_Input_Octets",
        "radius.Acct_Output_Octets",
        "radius.Acct_Input_Gigawords",
    ];
    cmd.args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=f"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect::<Vec<_>>())
        .filter(|c| c[1] == "4")
        .map(|c| {
            let (secs, frac) = c[0].split_once('.').unwrap();
            let nanos: u32 = format!("{frac:0<9}")[..9].parse().unwrap();
            TsharkRow {
                time: Timestamp::from_secs_nanos(secs.parse().unwrap(), nanos),
                status: c[2].parse().unwrap(),
                user: c[3].clone(),
                framed_ip: if c[4].is_empty() { c[5].clone() } else { c[4].clone() },
                v6_prefix_hex: c[6].clone(),
                v6_addr: c[7].clone(),
                session: c[8].clone(),
                payload: hex::decode(&c[9]).unwrap(),
                delegated_hex: c[10].clone(),
                nas_ip: c[11].clone(),
                nas_identifier: c[12].clone(),
                nas_port_id: c[13].clone(),
                octets: [c[14].clone(), c[15].clone(), c[16].clone()],
            }
        })
        .collect()
}

/// Parses every request tshark found and checks each field against tshark's reading.
fn check_against_tshark(rows: &[TsharkRow]) {
    assert_eq!(rows.len(), 6, "{rows:?}");
    for r in rows {
        let rec = parse_accounting(&r.payload).unwrap().expect("an Accounting-Request");
        assert_eq!(rec.status.to_u32(), r.status);
        assert_eq!(
            rec.user_name.as_deref().map(|u| String::from_utf8(u.to_vec()).unwrap()).unwrap_or_default(),
            r.user
        );
        assert_eq!(rec.framed_ip.map(|a| a.to_string()).unwrap_or_default(), r.framed_ip);
        assert_eq!(rec.framed_ipv6_address.map(|a| a.to_string()).unwrap_or_default(), r.v6_addr);
        assert_eq!(
            rec.session_id.as_deref().map(|u| String::from_utf8(u.to_vec()).unwrap()).unwrap_or_default(),
            r.session
        );
        // tshark gives Framed- and Delegated-IPv6-Prefix as the attribute's raw value:
        // reserved, length, prefix.
        for (ours, theirs) in
            [(rec.framed_ipv6_prefix, &r.v6_prefix_hex), (rec.delegated_ipv6_prefix, &r.delegated_hex)]
        {
            match ours {
                None => assert_eq!(theirs, ""),
                Some((addr, len)) => {
                    let raw = hex::decode(theirs).unwrap();
                    assert_eq!(raw[1], len);
                    let mut a = [0u8; 16];
                    a[..raw.len() - 2].copy_from_slice(&raw[2..]);
                    assert_eq!(addr, Ipv6Addr::from(a));
                }
            }
        }
        assert!(verify_request_authenticator(&r.payload, SECRET));
        assert!(!verify_request_authenticator(&r.payload, b"wrong"));
        // What the IRI carries beyond selection: the NAS, its port, the octets.
        let text =
            |v: &Option<Vec<u8>>| v.as_deref().map(|b| String::from_utf8(b.to_vec()).unwrap()).unwrap_or_default();
        assert_eq!(rec.nas_ip.map(|a| a.to_string()).unwrap_or_default(), r.nas_ip);
        assert_eq!(text(&rec.nas_identifier), r.nas_identifier);
        assert_eq!(text(&rec.nas_port_id), r.nas_port_id);
        let giga: u64 = r.octets[2].parse().unwrap_or(0);
        let input = r.octets[0].parse::<u64>().ok().map(|n| n + (giga << 32));
        assert_eq!(rec.input_octets, input);
        assert_eq!(rec.output_octets, r.octets[1].parse::<u64>().ok());
    }
}

/// The events the packets in `accounting.txt` must give, written from that file by hand.
fn check_events(rows: &[TsharkRow]) {
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let mut got = Vec::new();
    for r in rows {
        let rec = parse_accounting(&r.payload).unwrap().unwrap();
        for ev in assoc_events(&rec, r.time) {
            assert_eq!(ev.ts, r.time);
            // What the journal stores replays to the same event.
            let again = parse_event(&ev.raw.to_string(), "journal", 0).unwrap();
            assert_eq!(again, ev);
            assert_eq!(ev.raw["source"], "radius");
            got.push((ev.kind.clone(), ev.raw["acct_session_id"].as_str().map(str::to_string)));
        }
    }
    let s = |x: &str| Some(x.to_string());
    // An address is a /32 or /128 session; a prefix is the subscriber's whole range.
    let net = |a: &str| -> IpNet { a.parse().unwrap_or_else(|_| IpNet::from(ip(a))) };
    let start = |sub: &str, a: &str| AssocEventKind::AccessStart { subscriber: sub.into(), net: net(a) };
    let stop = |sub: &str, a: &str| AssocEventKind::AccessStop { subscriber: sub.into(), net: net(a) };
    assert_eq!(
        got,
        vec![
            // Start: the IPv4 address, the link's /64 and the /56 delegated to joe's router.
            (start("joe", "198.51.100.7"), s("sess-1")),
            (start("joe", "2001:db8:1:2::/64"), s("sess-1")),
            (start("joe", "2001:db8:ff00::/56"), s("sess-1")),
            // Interim-Update restates the session, with Framed-IPv6-Address now.
            (start("joe", "198.51.100.7"), s("sess-1")),
            (start("joe", "2001:db8::7"), s("sess-1")),
            (stop("joe", "198.51.100.7"), s("sess-1")),
            (stop("joe", "2001:db8:1:2::/64"), s("sess-1")),
            (stop("joe", "2001:db8:ff00::/56"), s("sess-1")),
            // A /128 prefix is one address.
            (start("bob@isp.example", "2001:db8:0:5::1"), s("sess-2")),
            // Accounting-On: nothing; "al ice" is not a valid subscriber identifier: nothing.
        ]
    );
    let statuses: Vec<AcctStatus> =
        rows.iter().map(|r| parse_accounting(&r.payload).unwrap().unwrap().status).collect();
    assert_eq!(
        statuses,
        vec![
            AcctStatus::Start,
            AcctStatus::InterimUpdate,
            AcctStatus::Stop,
            AcctStatus::Start,
            AcctStatus::AccountingOn,
            AcctStatus::Start
        ]
    );
    let first = parse_accounting(&rows[0].payload).unwrap().unwrap();
    assert_eq!(first.framed_ipv6_prefix, Some(("2001:db8:1:2::".parse().unwrap(), 64)));
    assert_eq!(first.nas_ip, Some(Ipv4Addr::new(192, 0, 2, 1)));
}

#[test]
fn radclient_accounting_matches_tshark() {
    let dir = tempfile::tempdir().unwrap();
    let (pcap, port) = radclient_capture(dir.path());
    let rows = tshark_requests(&pcap, Some(port));
    check_against_tshark(&rows);
    check_events(&rows);
    // The responses are well-formed RADIUS of another code: nothing to learn, not an error.
    let resp = [5u8, 1, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(parse_accounting(&resp), Ok(None));
    if std::env::var_os("TAPIR_REGEN_FIXTURES").is_some() {
        std::fs::copy(&pcap, FIXTURE).unwrap();
    }
}

#[test]
fn fixture_capture_matches_tshark() {
    // Made by radclient_accounting_matches_tshark with TAPIR_REGEN_FIXTURES=1, on an ephemeral
    // port: tshark is told to decode the first packet's destination port as RADIUS.
    let rows = tshark_requests(Path::new(FIXTURE), Some(fixture_port()));
    check_against_tshark(&rows);
    check_events(&rows);
}

/// A well-formed Accounting-Request with these attributes (zero authenticator).
fn packet(attrs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut p = vec![4u8, 7, 0, 0];
    p.extend_from_slice(&[0u8; 16]);
    for (t, v) in attrs {
        p.push(*t);
        p.push((v.len() + 2) as u8);
        p.extend_from_slice(v);
    }
    let l = p.len() as u16;
    p[2..4].copy_from_slice(&l.to_be_bytes());
    p
}

#[test]
fn hostile_lengths_are_typed_errors() {
    let good = packet(&[(40, &[0, 0, 0, 1]), (1, b"joe"), (8, &[10, 0, 0, 1])]);
    let rec = parse_accounting(&good).unwrap().unwrap();
    assert_eq!(rec.framed_ip, Some(Ipv4Addr::new(10, 0, 0, 1)));
    // Octets past Length are padding (RFC 2865 3).
    let mut padded = good.clone();
    padded.extend_from_slice(&[0xff; 9]);
    assert_eq!(parse_accounting(&padded).unwrap().unwrap(), rec);

    // Every truncation of the packet is refused.
    for cut in 0..good.len() {
        let e = parse_accounting(&good[..cut]).unwrap_err();
        match e {
            RadiusError::ShortHeader { len } => assert!(cut < 20 && len == cut),
            RadiusError::Truncated { length, available } => {
                assert_eq!((usize::from(length), available), (good.len(), cut))
            }
            other => panic!("{cut}: {other:?}"),
        }
    }
    let with_len = |l: u16| {
        let mut p = good.clone();
        p[2..4].copy_from_slice(&l.to_be_bytes());
        p.resize(p.len().max(usize::from(l)), 0);
        p
    };
    assert_eq!(parse_accounting(&with_len(19)), Err(RadiusError::BadLength { length: 19 }));
    assert_eq!(parse_accounting(&with_len(4097)), Err(RadiusError::BadLength { length: 4097 }));
    assert_eq!(parse_accounting(&with_len(0xffff)), Err(RadiusError::BadLength { length: 0xffff }));
    // Length cutting an attribute header in half (offset 20 + 6 + 5 = 31, one octet left).
    assert!(matches!(parse_accounting(&with_len(32)), Err(RadiusError::AttributeHeaderCut { offset: 31, .. })));
    // Length cutting an attribute value.
    assert!(matches!(parse_accounting(&with_len(33)), Err(RadiusError::AttributeOverrun { attr: 8, .. })));

    let mut zero = good.clone();
    zero[21] = 0; // Acct-Status-Type's Length
    assert_eq!(parse_accounting(&zero), Err(RadiusError::AttributeTooShort { offset: 20, length: 0 }));
    zero[21] = 1;
    assert_eq!(parse_accounting(&zero), Err(RadiusError::AttributeTooShort { offset: 20, length: 1 }));
    let mut long = good.clone();
    long[21] = 255;
    assert!(matches!(parse_accounting(&long), Err(RadiusError::AttributeOverrun { attr: 40, offset: 20, .. })));

    assert!(matches!(
        parse_accounting(&packet(&[(40, &[0, 0, 1])])),
        Err(RadiusError::BadAttributeValue { attr: 40, len: 3, .. })
    ));
    assert!(matches!(
        parse_accounting(&packet(&[(40, &[0, 0, 0, 1]), (8, &[1, 2, 3, 4, 5])])),
        Err(RadiusError::BadAttributeValue { attr: 8, len: 5, .. })
    ));
    assert!(matches!(
        parse_accounting(&packet(&[(40, &[0, 0, 0, 1]), (1, b"")])),
        Err(RadiusError::BadAttributeValue { attr: 1, len: 0, .. })
    ));
    // Framed-IPv6-Prefix: length 129, and a /64 with only 4 prefix octets.
    assert!(matches!(
        parse_accounting(&packet(&[(40, &[0, 0, 0, 1]), (97, &[0, 129, 0x20, 1, 0xd, 0xb8])])),
        Err(RadiusError::BadIpv6Prefix { prefix_len: 129, .. })
    ));
    assert!(matches!(
        parse_accounting(&packet(&[(40, &[0, 0, 0, 1]), (97, &[0, 64, 0x20, 1, 0xd, 0xb8])])),
        Err(RadiusError::BadIpv6Prefix { prefix_len: 64, len: 4, .. })
    ));
    // The short form RFC 3162 allows: a /32 in 4 octets; bits past the length are cleared.
    let rec = parse_accounting(&packet(&[(40, &[0, 0, 0, 1]), (97, &[0, 30, 0x20, 1, 0xd, 0xbb])])).unwrap().unwrap();
    assert_eq!(rec.framed_ipv6_prefix, Some(("2001:db8::".parse().unwrap(), 30)));
    assert_eq!(parse_accounting(&packet(&[(1, b"joe")])), Err(RadiusError::MissingStatusType { identifier: 7 }));
}

#[test]
fn events_only_for_exact_addresses_and_valid_names() {
    let t = Timestamp::from_secs(1_772_356_200);
    let start_v4 = packet(&[(40, &[0, 0, 0, 1]), (1, b"joe"), (8, &[10, 0, 0, 1])]);
    let evs = assoc_events(&parse_accounting(&start_v4).unwrap().unwrap(), t);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].ts, t);
    assert_eq!(evs[0].raw["time"], "2026-03-01T09:10:00.000000000Z");
    let no_user = packet(&[(40, &[0, 0, 0, 1]), (8, &[10, 0, 0, 1])]);
    assert!(assoc_events(&parse_accounting(&no_user).unwrap().unwrap(), t).is_empty());
    let bad_utf8 = packet(&[(40, &[0, 0, 0, 2]), (1, &[0xff, 0xfe]), (8, &[10, 0, 0, 1])]);
    assert!(assoc_events(&parse_accounting(&bad_utf8).unwrap().unwrap(), t).is_empty());
    let no_addr = packet(&[(40, &[0, 0, 0, 1]), (1, b"joe")]);
    assert!(assoc_events(&parse_accounting(&no_addr).unwrap().unwrap(), t).is_empty());
    let off = packet(&[(40, &[0, 0, 0, 8]), (1, b"joe"), (8, &[10, 0, 0, 1])]);
    assert!(assoc_events(&parse_accounting(&off).unwrap().unwrap(), t).is_empty());
    // Delegated-IPv6-Prefix 2001:db8:aa::/48 (RFC 4818: reserved, length, 6 prefix octets).
    let pd = packet(&[(40, &[0, 0, 0, 1]), (1, b"joe"), (123, &[0, 48, 0x20, 0x01, 0x0d, 0xb8, 0, 0xaa])]);
    let evs = assoc_events(&parse_accounting(&pd).unwrap().unwrap(), t);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].raw["prefix"], "2001:db8:aa::/48");
    // A /16 is not one subscriber's: no event, whatever the accounting says.
    let wide = packet(&[(40, &[0, 0, 0, 1]), (1, b"joe"), (123, &[0, 16, 0x20, 0x01])]);
    assert!(assoc_events(&parse_accounting(&wide).unwrap().unwrap(), t).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_accounting(&bytes);
        let _ = verify_request_authenticator(&bytes, SECRET);
    }

    /// Valid headers with random attribute bytes reach deep into the attribute walk.
    #[test]
    fn random_attributes_never_panic(
        code in prop_oneof![Just(4u8), any::<u8>()],
        body in proptest::collection::vec(any::<u8>(), 0..400),
        len_delta in -8i32..8,
    ) {
        let mut p = vec![code, 1, 0, 0];
        p.extend_from_slice(&[0u8; 16]);
        p.extend_from_slice(&body);
        let l = (p.len() as i32 + len_delta).clamp(0, 0xffff) as u16;
        p[2..4].copy_from_slice(&l.to_be_bytes());
        if let Ok(Some(rec)) = parse_accounting(&p) {
            for ev in assoc_events(&rec, Timestamp::from_secs(0)) {
                prop_assert_eq!(parse_event(&ev.raw.to_string(), "j", 0).unwrap(), ev);
            }
        }
    }
}

/// An Interim-Update for a session the feed already announced changes nothing in selection, but
/// its accounting details are IRI: an `access.start` record with the NAS and the octets, and on
/// HI2 an interimUpdate with pOPIdentifier, pOPIPAddress, pOPPortID, the octets and
/// authenticationType radiusAAA, as asn1tools reads them (with tapir's additions).
#[test]
fn accounting_details_of_a_known_session_reach_the_iri_and_hi2() {
    use tapir::deliver::etsi::{map_iri, Encoder, EtsiConfig, PduHeader};
    use tapir::record::{IriEvent, IriRecord};
    use tapir::select::{parse_warrants, Targeting};

    let w = parse_warrants(
        "[[warrant]]\nliid = \"L\"\nstart = \"2000-01-01T00:00:00Z\"\nend = \"2100-01-01T00:00:00Z\"\nscope = \"iri\"\ntargets = [\"subscriber:joe\"]\n",
        "w",
    )
    .unwrap();
    let mut t = Targeting::new(w.warrants);
    let rows = tshark_requests(Path::new(FIXTURE), Some(fixture_port()));
    let interim = &rows[1];
    let feed = parse_event(
        &format!(
            r#"{{"time":"{}","event":"access.start","subscriber":"joe","ip":"198.51.100.7"}}"#,
            Timestamp::from_secs(interim.time.secs() - 60).to_rfc3339()
        ),
        "feed",
        1,
    )
    .unwrap();
    assert_eq!(t.apply(&feed).len(), 1, "the feed's start is IRI");
    let rec = parse_accounting(&interim.payload).unwrap().unwrap();
    let ev = assoc_events(&rec, interim.time).into_iter().find(|e| e.raw["ip"] == "198.51.100.7").unwrap();
    let changes = t.apply(&ev);
    assert_eq!(changes.len(), 1, "the known session's accounting is IRI too");
    let c = &changes[0];
    assert!(c.selectors_added.is_empty() && c.selectors_removed.is_empty());
    assert_eq!(c.detail["acct_status"], "interim-update");
    assert_eq!(c.detail["nas_ip"], interim.nas_ip);
    assert_eq!(c.detail["acct_session_id"], interim.session);

    let r = IriRecord {
        liid: c.liid.clone(),
        cin: None,
        ts: c.ts,
        event: IriEvent::Association {
            what: c.what.clone(),
            detail: c.detail.clone(),
            selectors_added: vec![],
            selectors_removed: vec![],
        },
        provenance: c.provenance.clone(),
    };
    let m = map_iri(&r, None).unwrap();
    let enc = Encoder::new(EtsiConfig::new("OPER-O")).unwrap();
    let mut pdu = Vec::new();
    enc.ipiri(&mut pdu, &PduHeader { liid: "L", cin: None, seq: 0, ts: r.ts }, &m).unwrap();
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), &pdu).unwrap();
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/tapir_asn1.py");
    let o = Command::new("python3").arg(tool).arg("decode").arg(f.path()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ip = &v["payload"]["iRIPayloadSequence"][0]["iRIContents"]["iPIRI"]["iPIRIContents"];
    assert_eq!(ip["accessEventType"], "interimUpdate", "{ip}");
    assert_eq!(ip["authenticationType"], "radiusAAA");
    assert_eq!(ip["pOPIdentifier"]["printableIDType"], interim.nas_identifier);
    assert_eq!(
        ip["pOPIPAddress"]["iP-value"]["iPBinaryAddress"],
        hex::encode(interim.nas_ip.parse::<Ipv4Addr>().unwrap().octets())
    );
    assert_eq!(ip["pOPPortID"], hex::encode(&interim.nas_port_id));
    let giga: u64 = interim.octets[2].parse().unwrap();
    assert_eq!(ip["octetsTransmitted"].as_u64(), Some(interim.octets[0].parse::<u64>().unwrap() + (giga << 32)));
    assert_eq!(ip["octetsReceived"].as_u64(), interim.octets[1].parse::<u64>().ok());
    assert_eq!(ip["targetIPAddress"]["iP-value"]["iPBinaryAddress"], "c6336407");
}

/// The port the fixture's accounting went to (tshark decodes it as RADIUS).
fn fixture_port() -> u16 {
    let out = Command::new("tshark")
        .args(["-r", FIXTURE, "-T", "fields", "-e", "udp.dstport", "-c", "1"])
        .output()
        .expect("tshark");
    String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
}
