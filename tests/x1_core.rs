//! X1 core on real request bytes: requests are built from the shared, schema-valid ActivateTask
//! sample by string edits (and checked against the ETSI XSDs themselves), every response is
//! validated with the shared `x1_validate.py` (python xmlschema) at test time, and expected
//! error codes come from TS 103 221-1 clause 6.7, not from this code.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::common;

use tapir::select::{Scope, TargetId};
use tapir::timestamp::Timestamp;
use tapir::x1::{Action, Caller, Role, X1Core, X1CoreConfig};

const SHARED_ETSI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/schemas/etsi");
const EXAMPLE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/schemas/etsi/derived/x1-activatetask-example.xml");
const VALIDATOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tools/x1_validate.py");
const VALIDATOR_EXT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/x1/validate_ext.py");
const TAPIR_XSD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/tapir-x1-ext.xsd");

const XID: &str = "29f28e1c-f230-486a-a860-f5a784ab9172";
const XID2: &str = "3a1b2c3d-0000-4000-8000-000000000002";
const DID: &str = "1ae2ec7a-d36b-4dd6-8d1f-95a2c3c0a4b0";
const DID2: &str = "2be2ec7a-d36b-4dd6-8d1f-95a2c3c0a4b1";

const ADMF: Caller<'static> = Caller { subject_cn: "admf1", fingerprint: "aa11", role: Role::Admf };
const ADMF2: Caller<'static> = Caller { subject_cn: "admf2", fingerprint: "bb22", role: Role::Admf };
const AUDITOR: Caller<'static> = Caller { subject_cn: "audit1", fingerprint: "cc33", role: Role::Auditor };

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2024-06-01T12:00:00Z").unwrap()
}

fn run_validator(args: &[&str], doc: &[u8]) -> String {
    let mut child = Command::new("python3")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with xmlschema: pip install xmlschema)");
    child.stdin.take().unwrap().write_all(doc).unwrap();
    let out = child.wait_with_output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!s.is_empty(), "validator printed nothing: {}", String::from_utf8_lossy(&out.stderr));
    s
}

/// One python validator for the whole test binary (most tests validate several documents).
fn batch_validate(kind: &str, doc: &[u8]) -> String {
    static BATCH: OnceLock<Mutex<common::XsdBatch>> = OnceLock::new();
    let b = BATCH.get_or_init(|| Mutex::new(common::XsdBatch::spawn()));
    b.lock().unwrap_or_else(|p| p.into_inner()).validate(kind, doc)
}

/// Validates with the shared ETSI schemas only (as `x1_validate.py` does).
fn assert_valid(doc: &[u8]) {
    let v = batch_validate("etsi", doc);
    assert_eq!(v, "valid", "{}", String::from_utf8_lossy(doc));
}

/// Validates with the ETSI schemas plus tapir's extension schema.
fn assert_valid_ext(doc: &[u8]) {
    let v = batch_validate("ext", doc);
    assert_eq!(v, "valid", "{}", String::from_utf8_lossy(doc));
}

fn example() -> String {
    std::fs::read_to_string(EXAMPLE).unwrap()
}

fn mediation(liid: &str, window: Option<(&str, &str)>) -> String {
    let w = window.map(|(s, e)| format!("<StartTime>{s}</StartTime><EndTime>{e}</EndTime>")).unwrap_or_default();
    format!("<mediationDetails><LIID>{liid}</LIID><deliveryType>HI2andHI3</deliveryType>{w}</mediationDetails>")
}

/// The shared sample with a listOfMediationDetails, optionally another XID / target / message type.
fn activate(xid: &str, target: Option<&str>, mediations: &str, extra: &str) -> String {
    let mut s = example().replace(
        "</listOfDIDs>\n  </taskDetails>",
        &format!("</listOfDIDs><listOfMediationDetails>{mediations}</listOfMediationDetails>{extra}</taskDetails>"),
    );
    assert!(s.contains("listOfMediationDetails"), "sample layout changed");
    s = s.replace(XID, xid);
    if let Some(t) = target {
        s = s.replace("<ipv4Address>192.0.2.1</ipv4Address>", t);
    }
    s
}

fn default_activate() -> String {
    activate(XID, None, &mediation("LIID-1", Some(("2024-01-01T00:00:00.000000Z", "2025-01-01T00:00:00.000000Z"))), "")
}

/// A request of `ty` with `inner` after the header, using the sample's header.
fn request(ty: &str, inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<X1Request xmlns="http://uri.etsi.org/03221/X1/2017/10" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:c="http://uri.etsi.org/03280/common/2017/07">
 <x1RequestMessage xsi:type="{ty}Request">
  <admfIdentifier>admf1</admfIdentifier><neIdentifier>ne1</neIdentifier>
  <messageTimestamp>2024-01-01T00:00:00.000000Z</messageTimestamp><version>v1.22.1</version>
  <x1TransactionId>c02358b2-76cf-4ba4-a8eb-f6436ccaea2e</x1TransactionId>{inner}
 </x1RequestMessage>
</X1Request>"#
    )
}

fn destination(ty: &str, did: &str, delivery: &str, port: u16) -> String {
    request(
        ty,
        &format!(
            "<destinationDetails><dId>{did}</dId><friendlyName>LEA one</friendlyName><deliveryType>{delivery}</deliveryType>\
             <deliveryAddress><ipAddressAndPort><c:address><c:IPv4Address>127.0.0.1</c:IPv4Address></c:address>\
             <c:port><c:TCPPort>{port}</c:TCPPort></c:port></ipAddressAndPort></deliveryAddress></destinationDetails>"
        ),
    )
}

struct Env {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    core: X1Core,
}

fn env_with(cfg: X1CoreConfig) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x1");
    let core = X1Core::open(&path, cfg).unwrap();
    Env { _dir: dir, path, core }
}

fn env() -> Env {
    env_with(X1CoreConfig::new("ne1"))
}

/// Sends `req` (validated as a request first), validates the response, returns (body, actions).
fn send(core: &mut X1Core, caller: &Caller, req: &str) -> (String, Vec<Action>) {
    if req.contains("targetIdentifierExtension") {
        assert_valid_ext(req.as_bytes());
    } else {
        assert_valid(req.as_bytes());
    }
    let r = core.handle(caller, req.as_bytes(), now());
    assert_eq!(r.http_status, 200);
    if String::from_utf8_lossy(&r.body).contains("targetIdentifierExtension") {
        assert_valid_ext(&r.body);
    } else {
        assert_valid(&r.body);
    }
    (String::from_utf8(r.body).unwrap(), r.actions)
}

fn error_code(body: &str) -> Option<u32> {
    let i = body.find("<errorCode>")? + "<errorCode>".len();
    let j = body[i..].find('<')? + i;
    body[i..j].parse().ok()
}

fn setup_destination(core: &mut X1Core) {
    let (b, _) = send(core, &ADMF, &destination("CreateDestination", DID, "X2andX3", 9001));
    assert!(b.contains("<oK>AcknowledgedAndCompleted</oK>"), "{b}");
}

#[test]
fn activate_then_get_task_details_shows_it() {
    let mut e = env();
    setup_destination(&mut e.core);
    let (b, actions) = send(&mut e.core, &ADMF, &default_activate());
    assert!(b.contains(r#"xsi:type="ActivateTaskResponse""#) && b.contains("AcknowledgedAndCompleted"), "{b}");
    assert!(b.contains("<x1TransactionId>c02358b2-76cf-4ba4-a8eb-f6436ccaea2e</x1TransactionId>"));
    assert_eq!(actions.last().unwrap().result, "ok");
    assert_eq!(actions.last().unwrap().xid.as_deref(), Some(XID));
    assert_eq!(actions.last().unwrap().liid.as_deref(), Some("LIID-1"));

    let (b, _) = send(&mut e.core, &ADMF, &request("GetTaskDetails", &format!("<xId>{XID}</xId>")));
    for want in [
        "<ipv4Address>192.0.2.1</ipv4Address>",
        "<LIID>LIID-1</LIID>",
        "<provisioningStatus>complete</provisioningStatus>",
        "<deliveryType>X2andX3</deliveryType>",
        &format!("<dId>{DID}</dId>"),
        "<StartTime>2024-01-01T00:00:00.000000Z</StartTime>",
    ] {
        assert!(b.contains(want), "missing {want} in {b}");
    }
    for ty in [
        "GetAllTaskDetails",
        "GetAllDestinationDetails",
        "GetNEStatus",
        "GetAllDetails",
        "ListAllDetails",
        "Ping",
        "Keepalive",
    ] {
        let (b, _) = send(&mut e.core, &ADMF, &request(ty, ""));
        assert!(b.contains(&format!("xsi:type=\"{ty}Response\"")), "{ty}: {b}");
    }
    let (b, _) = send(&mut e.core, &ADMF, &request("ListAllDetails", ""));
    assert!(b.contains(&format!("<xId>{XID}</xId>")) && b.contains(&format!("<dId>{DID}</dId>")));
}

#[test]
fn duplicate_xid_is_2010_unknown_xid_2020_unknown_did_2040() {
    let mut e = env();
    let (b, a) = send(&mut e.core, &ADMF, &default_activate());
    assert_eq!(error_code(&b), Some(2040), "{b}");
    assert_eq!(a[0].result, "2040");
    setup_destination(&mut e.core);
    send(&mut e.core, &ADMF, &default_activate());
    let (b, _) = send(&mut e.core, &ADMF, &default_activate());
    assert_eq!(error_code(&b), Some(2010), "{b}");
    assert!(b.contains("<requestMessageType>ActivateTask</requestMessageType>"));
    for req in [
        request("GetTaskDetails", &format!("<xId>{XID2}</xId>")),
        request("DeactivateTask", &format!("<xId>{XID2}</xId>")),
        activate(XID2, None, &mediation("LIID-9", None), "").replace("ActivateTaskRequest", "ModifyTaskRequest"),
    ] {
        let (b, _) = send(&mut e.core, &ADMF, &req);
        assert_eq!(error_code(&b), Some(2020), "{b}");
    }
    let (b, _) = send(&mut e.core, &ADMF, &request("GetDestinationDetails", &format!("<dId>{DID2}</dId>")));
    assert_eq!(error_code(&b), Some(2040), "{b}");
}

#[test]
fn modify_deactivate_and_deactivate_all() {
    let mut e = env();
    setup_destination(&mut e.core);
    send(&mut e.core, &ADMF, &default_activate());
    let g0 = e.core.generation();
    let modify = activate(
        XID,
        Some("<ipv6Address>2001:0db8:0000:0000:0000:0000:0000:0007</ipv6Address>"),
        &mediation("LIID-1", None),
        "",
    )
    .replace("ActivateTaskRequest", "ModifyTaskRequest");
    let (b, _) = send(&mut e.core, &ADMF, &modify);
    assert!(b.contains("ModifyTaskResponse"), "{b}");
    assert!(e.core.generation() > g0);
    let (b, _) = send(&mut e.core, &ADMF, &request("GetTaskDetails", &format!("<xId>{XID}</xId>")));
    assert!(b.contains("<ipv6Address>2001:0db8:0000:0000:0000:0000:0000:0007</ipv6Address>"), "{b}");
    assert!(!b.contains("192.0.2.1"));
    assert!(b.contains("<numberOfModifications>1</numberOfModifications>"), "{b}");
    assert!(b.contains("<timeOfLastModification>2024-06-01T12:00:00.000000Z</timeOfLastModification>"), "{b}");

    let (b, _) = send(&mut e.core, &ADMF, &request("DeactivateTask", &format!("<xId>{XID}</xId>")));
    assert!(b.contains("DeactivateTaskResponse"), "{b}");
    let (b, _) = send(&mut e.core, &ADMF, &request("GetTaskDetails", &format!("<xId>{XID}</xId>")));
    assert_eq!(error_code(&b), Some(2020));

    send(&mut e.core, &ADMF, &default_activate());
    send(&mut e.core, &ADMF, &activate(XID2, None, &mediation("LIID-2", None), ""));
    assert_eq!(e.core.warrants(now()).warrants.len(), 2);
    let (b, a) = send(&mut e.core, &ADMF, &request("DeactivateAllTasks", ""));
    assert!(b.contains("DeactivateAllTasksResponse"), "{b}");
    assert_eq!(a[0].detail.as_deref(), Some("2 tasks deactivated"));
    assert!(e.core.warrants(now()).warrants.is_empty());
}

#[test]
fn destination_crud() {
    let mut e = env();
    setup_destination(&mut e.core);
    let (b, _) = send(&mut e.core, &ADMF, &destination("CreateDestination", DID, "X2andX3", 9001));
    assert_eq!(error_code(&b), Some(2030), "{b}");
    let (b, _) = send(&mut e.core, &ADMF, &destination("ModifyDestination", DID, "X2andX3", 9002));
    assert!(b.contains("ModifyDestinationResponse"), "{b}");
    let (b, _) = send(&mut e.core, &ADMF, &request("GetDestinationDetails", &format!("<dId>{DID}</dId>")));
    assert!(b.contains("<c:TCPPort>9002</c:TCPPort>") && b.contains("<friendlyName>LEA one</friendlyName>"), "{b}");
    assert!(b.contains("<destinationDeliveryStatus>activeAndWorking</destinationDeliveryStatus>"));
    let (b, _) = send(&mut e.core, &ADMF, &destination("ModifyDestination", DID2, "X2andX3", 9002));
    assert_eq!(error_code(&b), Some(2040), "{b}");

    let leas = e.core.leas();
    assert_eq!(leas.len(), 1);
    assert_eq!(leas[0].name, DID);
    assert_eq!(leas[0].address, "127.0.0.1:9002".parse().unwrap());

    send(&mut e.core, &ADMF, &default_activate());
    let (b, _) = send(&mut e.core, &ADMF, &request("RemoveDestination", &format!("<dId>{DID}</dId>")));
    assert_eq!(error_code(&b), Some(7010), "{b}");
    // Narrowing the destination below what the task delivers is refused.
    let (b, _) = send(&mut e.core, &ADMF, &destination("ModifyDestination", DID, "X2Only", 9002));
    assert_eq!(error_code(&b), Some(6001), "{b}");
    send(&mut e.core, &ADMF, &request("DeactivateTask", &format!("<xId>{XID}</xId>")));
    let (b, _) = send(&mut e.core, &ADMF, &request("RemoveDestination", &format!("<dId>{DID}</dId>")));
    assert!(b.contains("RemoveDestinationResponse"), "{b}");
    let (b, _) = send(&mut e.core, &ADMF, &request("GetDestinationDetails", &format!("<dId>{DID}</dId>")));
    assert_eq!(error_code(&b), Some(2040), "{b}");
    assert!(e.core.leas().is_empty());
}

#[test]
fn lea_tables_feed_the_delivery_config_parser() {
    let mut e = env();
    setup_destination(&mut e.core);
    let mut template = toml::Table::new();
    template.insert("operator_id".into(), toml::Value::String("tapir-op".into()));
    let tables = e.core.lea_tables(&template);
    let leas = tapir::deliver::handover::config::parse_leas(&tables, "x1").unwrap();
    assert_eq!(leas.len(), 1);
    assert_eq!(
        (leas[0].name.as_str(), leas[0].hi2.as_str(), leas[0].hi3.as_str()),
        (DID, "127.0.0.1:9001", "127.0.0.1:9001")
    );
}

#[test]
fn auditor_may_read_but_not_provision() {
    let mut e = env();
    setup_destination(&mut e.core);
    let (b, a) = send(&mut e.core, &AUDITOR, &default_activate());
    assert!(b.contains(r#"xsi:type="ErrorResponse""#), "{b}");
    assert_eq!(a[0].result, "refused");
    assert_eq!(a[0].what, "ActivateTask");
    let (b, a) = send(&mut e.core, &AUDITOR, &request("RemoveDestination", &format!("<dId>{DID}</dId>")));
    assert!(b.contains("ErrorResponse") && a[0].result == "refused", "{b}");
    assert_eq!(e.core.leas().len(), 1);
    for ty in ["GetAllTaskDetails", "GetNEStatus", "Ping", "Keepalive"] {
        let (b, a) = send(&mut e.core, &AUDITOR, &request(ty, ""));
        assert!(b.contains(&format!("{ty}Response")), "{b}");
        assert_eq!(a[0].result, "ok");
    }
    assert!(e.core.warrants(now()).warrants.is_empty());
}

fn top_level(core: &mut X1Core, body: &[u8]) -> (u16, String, Vec<Action>) {
    let t = Instant::now();
    let r = core.handle(&ADMF, body, now());
    // Parsing is bounded: no body takes long to refuse (the validator below is not timed).
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
    assert_valid(&r.body);
    let s = String::from_utf8(r.body).unwrap();
    assert!(s.contains("<X1TopLevelErrorResponse"), "{s}");
    (r.http_status, s, r.actions)
}

#[test]
fn not_x1_gets_a_top_level_error() {
    let mut e = env();
    let ex = example();
    for body in [
        b"not xml at all".to_vec(),
        b"<a><b></a>".to_vec(),
        b"<X1Request xmlns=\"urn:other\"/>".to_vec(),
        b"<X1Request xmlns=\"http://uri.etsi.org/03221/X1/2017/10\"/>".to_vec(),
        ex.replace("xsi:type=\"ActivateTaskRequest\"", "xsi:type=\"NoSuchRequest\"").into_bytes(),
        ex.replace("<x1TransactionId>c02358b2", "<x1TransactionId>C02358B2").into_bytes(),
        ex.as_bytes()[..ex.len() / 2].to_vec(),
        vec![0xff, 0xfe, 0x00],
        Vec::new(),
    ] {
        let (status, _, actions) = top_level(&mut e.core, &body);
        assert_eq!(status, 200);
        assert_eq!(actions.last().unwrap().result, "refused");
        assert_eq!(actions.last().unwrap().what, "X1Request");
    }
    // A schema-invalid body inside a readable message is answered per message (1010).
    let (b, _) = {
        let req = default_activate().replace("<deliveryType>X2andX3</deliveryType>", "<deliveryType>X9</deliveryType>");
        let r = e.core.handle(&ADMF, req.as_bytes(), now());
        assert_valid(&r.body);
        (String::from_utf8(r.body).unwrap(), r.actions)
    };
    assert_eq!(error_code(&b), Some(1010), "{b}");
}

#[test]
fn doctype_and_entity_bombs_are_refused_quickly() {
    let mut e = env();
    let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<X1Request xmlns="http://uri.etsi.org/03221/X1/2017/10">&lol9;</X1Request>"#;
    let ex = example();
    let late_doctype = ex.replace("<taskDetails>", "<taskDetails><!DOCTYPE x>");
    let external = ex.replace(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
        "<?xml version=\"1.0\"?><!DOCTYPE X1Request SYSTEM \"file:///etc/passwd\">",
    );
    let undeclared = ex.replace("admf1", "&xxe;");
    let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
    let wide =
        format!("<X1Request xmlns=\"http://uri.etsi.org/03221/X1/2017/10\">{}</X1Request>", "<x/>".repeat(200_000));
    for (body, why) in [
        (bomb.to_string(), "DTDs are refused"),
        (late_doctype, "DTDs are refused"),
        (external, "DTDs are refused"),
        (undeclared, "undeclared entity"),
        (deep, "nested deeper than 32"),
        (wide, "more than 20000 elements"),
    ] {
        let (_, s, actions) = top_level(&mut e.core, body.as_bytes());
        assert!(!s.contains("lol"));
        let a = actions.last().unwrap();
        assert_eq!(a.result, "refused");
        assert!(a.detail.as_deref().unwrap_or_default().contains(why), "{a:?}");
    }
}

#[test]
fn a_100_mb_body_is_refused_by_the_size_limit() {
    let mut e = env();
    let mut body = default_activate().into_bytes();
    body.resize(100 * 1024 * 1024, b' ');
    let t = Instant::now();
    let r = e.core.handle(&ADMF, &body, now());
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
    assert_eq!(r.http_status, 413);
    assert_valid(&r.body);
    assert!(String::from_utf8_lossy(&r.body).contains("X1TopLevelErrorResponse"));
    assert!(r.actions[0].detail.as_deref().unwrap().contains("exceeds the limit"), "{:?}", r.actions);
}

#[test]
fn state_survives_restart_and_a_torn_temp_file_is_ignored() {
    let mut e = env();
    setup_destination(&mut e.core);
    send(&mut e.core, &ADMF, &default_activate());
    let g = e.core.generation();
    let path = e.path.clone();
    drop(e.core);
    // A crash between writing the temp file and the rename leaves a torn temp file.
    std::fs::write(path.join("x1-state.json.tmp"), b"{\"format\":1,\"tasks\":{\"broken").unwrap();
    let mut core = X1Core::open(&path, X1CoreConfig::new("ne1")).unwrap();
    assert!(!path.join("x1-state.json.tmp").exists());
    assert_eq!(core.generation(), g);
    let (b, _) = send(&mut core, &ADMF, &request("GetTaskDetails", &format!("<xId>{XID}</xId>")));
    assert!(b.contains("<LIID>LIID-1</LIID>"), "{b}");
    assert_eq!(core.warrants(now()).warrants.len(), 1);
    assert_eq!(core.leas().len(), 1);
    // The committed snapshot is plain JSON (python reads it), with the task under its XID.
    let out = Command::new("python3")
        .arg("-c")
        .arg("import json,sys; d=json.load(open(sys.argv[1])); print(sorted(d['tasks']), sorted(d['destinations']))")
        .arg(path.join("x1-state.json"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("['{XID}'] ['{DID}']"));
    // A corrupt committed snapshot is an error at open, not an empty state.
    drop(core);
    std::fs::write(path.join("x1-state.json"), b"{garbage").unwrap();
    assert!(X1Core::open(&path, X1CoreConfig::new("ne1")).is_err());
}

#[test]
fn warrants_carry_targets_window_scope_and_lea() {
    let mut e = env();
    setup_destination(&mut e.core);
    let targets = "<targetIdentifier><ipv4Address>192.0.2.1</ipv4Address></targetIdentifier>\
        <targetIdentifier><ipv4Cidr><c:IPv4CIDR>10.9.0.0/24</c:IPv4CIDR></ipv4Cidr></targetIdentifier>\
        <targetIdentifier><ipv6Cidr>2001:0db8:0000:0000:0000:0000:0000:0000/32</ipv6Cidr></targetIdentifier>\
        <targetIdentifier><macAddress>02:00:00:00:00:07</macAddress></targetIdentifier>\
        <targetIdentifier><emailAddress>joe@example.net</emailAddress></targetIdentifier>\
        <targetIdentifier><targetIdentifierExtension><Owner>tapir</Owner><t:cloudTarget><t:vm>vm-42</t:vm></t:cloudTarget></targetIdentifierExtension></targetIdentifier>\
        <targetIdentifier><targetIdentifierExtension><Owner>tapir</Owner><t:cloudTarget><t:subscriber>joe</t:subscriber></t:cloudTarget></targetIdentifierExtension></targetIdentifier>\
        <targetIdentifier><targetIdentifierExtension><Owner>tapir</Owner><t:cloudTarget><t:vniAddress><t:vni>5001</t:vni><t:address>10.0.0.5</t:address></t:vniAddress></t:cloudTarget></targetIdentifierExtension></targetIdentifier>";
    let mut req = activate(
        XID,
        None,
        &format!(
            "{}{}",
            mediation("LIID-W", Some(("2024-01-01T00:00:00.000000Z", "2025-01-01T00:00:00.000000+01:00"))),
            "<mediationDetails><LIID>LIID-IRI</LIID><deliveryType>HI2Only</deliveryType></mediationDetails>"
        ),
        "<implicitDeactivationAllowed>false</implicitDeactivationAllowed>",
    )
    .replace("<targetIdentifier><ipv4Address>192.0.2.1</ipv4Address></targetIdentifier>", targets);
    req = req.replace(
        "<X1Request xmlns=\"http://uri.etsi.org/03221/X1/2017/10\"",
        "<X1Request xmlns=\"http://uri.etsi.org/03221/X1/2017/10\" xmlns:c=\"http://uri.etsi.org/03280/common/2017/07\" xmlns:t=\"urn:tapir:x1:target-extension:1\"",
    );
    let (b, _) = send(&mut e.core, &ADMF, &req);
    assert!(b.contains("AcknowledgedAndCompleted"), "{b}");
    let w = e.core.warrants(now());
    assert_eq!(w.warrants.len(), 2);
    let first = w.warrants.iter().find(|w| &*w.liid == "LIID-W").unwrap();
    // 2024-01-01T00:00:00Z = 1704067200; 2025-01-01T00:00:00+01:00 = 1735686000 (date -d).
    assert_eq!(first.start, Timestamp::from_secs(1_704_067_200));
    assert_eq!(first.end, Timestamp::from_secs(1_735_686_000));
    assert_eq!(first.scope, Scope::IriAndCc);
    assert_eq!(first.lea.as_deref(), Some(DID));
    let want: Vec<TargetId> = vec![
        TargetId::Ip("192.0.2.1".parse::<IpAddr>().unwrap()),
        TargetId::Cidr("10.9.0.0/24".parse().unwrap()),
        TargetId::Cidr("2001:db8::/32".parse().unwrap()),
        TargetId::Mac([2, 0, 0, 0, 0, 7]),
        TargetId::Email("joe@example.net".into()),
        TargetId::Vm("vm-42".into()),
        TargetId::Subscriber("joe".into()),
        TargetId::VniAddr(5001, "10.0.0.5".parse().unwrap()),
    ];
    assert_eq!(first.targets, want);
    let iri = w.warrants.iter().find(|w| &*w.liid == "LIID-IRI").unwrap();
    assert_eq!(iri.scope, Scope::Iri);
    // No StartTime/EndTime: the task's lifetime, from activation on.
    assert_eq!((iri.start, iri.end), (now(), Timestamp::MAX));
    // The echo validates with tapir's extension schema (send() checked it) and carries the ids.
    let (b, _) = send(
        &mut e.core,
        &ADMF,
        &request("GetTaskDetails", &format!("<xId>{XID}</xId>"))
            .replace("xmlns:c=", "xmlns:t=\"urn:tapir:x1:target-extension:1\" xmlns:c="),
    );
    assert!(b.contains("<t:vm>vm-42</t:vm>") && b.contains("<c:IPv4CIDR>10.9.0.0/24</c:IPv4CIDR>"), "{b}");
    assert_valid_ext(b.as_bytes());
    // After the window, the windowed warrant is gone.
    let later = Timestamp::from_secs(1_735_686_000);
    assert_eq!(e.core.warrants(later).warrants.len(), 1);
}

#[test]
fn unsupported_target_and_bad_combinations_are_refused_with_their_codes() {
    let mut e = env();
    setup_destination(&mut e.core);
    let med = mediation("LIID-1", None);
    let (b, _) = send(&mut e.core, &ADMF, &activate(XID, Some("<e164Number>4930123456</e164Number>"), &med, ""));
    assert_eq!(error_code(&b), Some(3010), "{b}");
    let (b, _) = send(
        &mut e.core,
        &ADMF,
        &activate(XID, Some("<ipv4Cidr><c:IPv4CIDR>10.9.0.1/24</c:IPv4CIDR></ipv4Cidr>"), &med, "")
            .replace("xmlns:xsi=", "xmlns:c=\"http://uri.etsi.org/03280/common/2017/07\" xmlns:xsi="),
    );
    assert_eq!(error_code(&b), Some(3000), "{b}");
    assert!(!b.contains("10.9.0.1"), "target value leaked into the error: {b}");
    // X2Only task with an HI3Only mediation leaves nothing to deliver.
    let (b, _) = send(
        &mut e.core,
        &ADMF,
        &activate(XID, None, &med.replace("HI2andHI3", "HI3Only"), "")
            .replace("<deliveryType>X2andX3</deliveryType>", "<deliveryType>X2Only</deliveryType>"),
    );
    assert_eq!(error_code(&b), Some(3040), "{b}");
    // A task without mediation details has no LIID for tapir.
    let (b, _) = send(&mut e.core, &ADMF, &example());
    assert_eq!(error_code(&b), Some(3000), "{b}");
    // The same LIID in two tasks would make two warrants with one LIID.
    send(&mut e.core, &ADMF, &activate(XID, None, &med, ""));
    let (b, _) = send(&mut e.core, &ADMF, &activate(XID2, None, &med, ""));
    assert_eq!(error_code(&b), Some(3000), "{b}");
    // Wrong NE.
    let (b, _) = send(&mut e.core, &ADMF, &request("Ping", "").replace("<neIdentifier>ne1<", "<neIdentifier>ne2<"));
    assert_eq!(error_code(&b), Some(1060), "{b}");
}

#[test]
fn four_eyes_needs_a_second_different_admf() {
    let mut cfg = X1CoreConfig::new("ne1");
    cfg.four_eyes = true;
    let mut e = env_with(cfg);
    setup_destination(&mut e.core);
    let (b, a) = send(&mut e.core, &ADMF, &default_activate());
    assert!(b.contains("<oK>Acknowledged</oK>"), "{b}");
    assert_eq!(a[0].result, "pending");
    assert!(e.core.warrants(now()).warrants.is_empty());
    let (b, _) = send(&mut e.core, &ADMF2, &request("GetTaskDetails", &format!("<xId>{XID}</xId>")));
    assert!(b.contains("<provisioningStatus>awaitingProvisioning</provisioningStatus>"), "{b}");
    // The same identity cannot approve twice.
    let (b, _) = send(&mut e.core, &ADMF, &default_activate());
    assert_eq!(error_code(&b), Some(3000), "{b}");
    assert!(b.contains("different ADMF identity"));
    // A different request is not an approval of the pending one.
    let other = activate(XID, None, &mediation("LIID-X", None), "");
    let (b, _) = send(&mut e.core, &ADMF2, &other);
    assert_eq!(error_code(&b), Some(3000), "{b}");
    assert!(b.contains("differs"));
    // An auditor cannot approve.
    let (_, a) = send(&mut e.core, &AUDITOR, &default_activate());
    assert_eq!(a[0].result, "refused");
    assert!(e.core.warrants(now()).warrants.is_empty());
    // The second, different ADMF with the same request (new transaction id) activates it.
    let second =
        default_activate().replace("c02358b2-76cf-4ba4-a8eb-f6436ccaea2e", "d02358b2-76cf-4ba4-a8eb-f6436ccaea2f");
    let (b, a) = send(&mut e.core, &ADMF2, &second);
    assert!(b.contains("<oK>AcknowledgedAndCompleted</oK>"), "{b}");
    assert_eq!(a[0].result, "ok");
    assert_eq!(e.core.warrants(now()).warrants.len(), 1);
    // Pending approvals persist and expire.
    let (_, a) = send(&mut e.core, &ADMF, &activate(XID2, None, &mediation("LIID-2", None), ""));
    assert_eq!(a[0].result, "pending");
    let path = e.path.clone();
    drop(e.core);
    let mut cfg = X1CoreConfig::new("ne1");
    cfg.four_eyes = true;
    let mut core = X1Core::open(&path, cfg).unwrap();
    let (b, _) = send(&mut core, &ADMF2, &request("GetTaskDetails", &format!("<xId>{XID2}</xId>")));
    assert!(b.contains("awaitingProvisioning"), "{b}");
    let expired = core.tick(now().add_secs(3601));
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].result, "expired");
}

#[test]
fn statistics_and_faults_show_in_task_status() {
    let mut e = env();
    setup_destination(&mut e.core);
    send(&mut e.core, &ADMF, &default_activate());
    let t = Timestamp::parse_rfc3339("2024-06-01T11:59:00.123456Z").unwrap();
    e.core.note_intercept("LIID-1", t, 1000, 20_000);
    e.core.note_intercept("LIID-1", t.add_secs(-5), 24, 0);
    e.core.note_intercept("LIID-unknown", t, 5, 5);
    e.core.set_destination_fault(DID, Some("HI3 connection refused".into()));
    let (b, _) = send(&mut e.core, &ADMF, &request("GetTaskDetails", &format!("<xId>{XID}</xId>")));
    for want in [
        "<timeOfLastIntercept>2024-06-01T11:59:00.123456Z</timeOfLastIntercept>",
        "<amountOfX2Data>1024</amountOfX2Data>",
        "<amountOfX3Data>20000</amountOfX3Data>",
        "<errorCode>9020</errorCode>",
    ] {
        assert!(b.contains(want), "missing {want}: {b}");
    }
    let (b, _) = send(&mut e.core, &ADMF, &request("GetNEStatus", ""));
    assert!(b.contains("<neStatus>Faults</neStatus>"), "{b}");
    e.core.set_destination_fault(DID, None);
    let (b, _) = send(&mut e.core, &ADMF, &request("GetNEStatus", ""));
    assert!(b.contains("<neStatus>OK</neStatus>"), "{b}");

    // The daemon's form: every destination at once; `None` (no news) leaves a fault as it is,
    // and only changes are returned (for the log).
    let changed = e.core.update_destination_faults(|_| Some(Some("HI2 not connected".into())));
    assert_eq!(changed, vec![(DID.to_string(), Some("HI2 not connected".to_string()))]);
    assert!(e.core.update_destination_faults(|_| Some(Some("HI2 not connected".into()))).is_empty());
    assert!(e.core.update_destination_faults(|_| None).is_empty());
    let (b, _) = send(&mut e.core, &ADMF, &request("GetNEStatus", ""));
    assert!(b.contains("<neStatus>Faults</neStatus>") && b.contains("HI2 not connected"), "{b}");
    let changed = e.core.update_destination_faults(|_| Some(None));
    assert_eq!(changed, vec![(DID.to_string(), None)]);
    let (b, _) = send(&mut e.core, &ADMF, &request("GetNEStatus", ""));
    assert!(b.contains("<neStatus>OK</neStatus>"), "{b}");
}

#[test]
fn implicit_deactivation_after_all_windows_end() {
    let mut e = env();
    setup_destination(&mut e.core);
    let req = activate(
        XID,
        None,
        &mediation("LIID-1", Some(("2024-01-01T00:00:00.000000Z", "2024-07-01T00:00:00.000000Z"))),
        "<implicitDeactivationAllowed>true</implicitDeactivationAllowed>",
    );
    send(&mut e.core, &ADMF, &req);
    assert!(e.core.tick(now()).is_empty());
    let a = e.core.tick(Timestamp::parse_rfc3339("2024-07-01T00:00:00Z").unwrap());
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].what, "ImplicitDeactivation");
    assert_eq!(a[0].xid.as_deref(), Some(XID));
}

#[test]
fn several_messages_in_one_request_are_answered_in_order() {
    let mut e = env();
    let dest = destination("CreateDestination", DID, "X2andX3", 9001);
    let act = default_activate();
    let msg = |s: &str| {
        let i = s.find("<x1RequestMessage").unwrap();
        let j = s.rfind("</x1RequestMessage>").unwrap() + "</x1RequestMessage>".len();
        s[i..j].to_string()
    };
    let both = dest.replace(&msg(&dest), &format!("{}{}", msg(&dest), msg(&act)));
    let (b, a) = send(&mut e.core, &ADMF, &both);
    assert_eq!(b.matches("<x1ResponseMessage").count(), 2);
    let i = b.find("CreateDestinationResponse").unwrap();
    let j = b.find("ActivateTaskResponse").unwrap();
    assert!(i < j);
    assert_eq!((a[0].what.as_str(), a[1].what.as_str()), ("CreateDestination", "ActivateTask"));
}

#[test]
fn actions_never_carry_target_identities() {
    let mut e = env();
    setup_destination(&mut e.core);
    let mut all = Vec::new();
    all.extend(send(&mut e.core, &ADMF, &default_activate()).1);
    all.extend(send(&mut e.core, &ADMF, &default_activate()).1);
    all.extend(send(&mut e.core, &AUDITOR, &default_activate()).1);
    all.extend(
        send(
            &mut e.core,
            &ADMF,
            &activate(XID2, Some("<e164Number>4930123456</e164Number>"), &mediation("L", None), ""),
        )
        .1,
    );
    let text = format!("{all:?}");
    assert!(!text.contains("192.0.2.1") && !text.contains("4930123456"), "{text}");
    assert!(text.contains(XID));
}

#[test]
fn the_shared_validator_is_installed_and_rejects_garbage() {
    // Guards the oracle: an always-"valid" validator would make every check above vacuous.
    assert!(Path::new(VALIDATOR).exists());
    let v = run_validator(&[VALIDATOR, "-"], b"<X1Response xmlns=\"http://uri.etsi.org/03221/X1/2017/10\"/>");
    assert!(v.starts_with("invalid"), "{v}");
}

#[test]
fn the_batch_validator_agrees_with_the_shared_one() {
    // The batch validator (one python for the binary) must judge as the shared tool and
    // validate_ext.py do: the shared sample is valid to all, garbage and a bad element invalid.
    let sample = example();
    let bad = sample.replace("<xId>", "<xid>").replace("</xId>", "</xid>");
    let garbage = "<X1Response xmlns=\"http://uri.etsi.org/03221/X1/2017/10\"/>".to_string();
    for doc in [&sample, &bad, &garbage] {
        let shared = run_validator(&[VALIDATOR, "-"], doc.as_bytes()) == "valid";
        let ext = run_validator(&[VALIDATOR_EXT, SHARED_ETSI, TAPIR_XSD, "-"], doc.as_bytes()) == "valid";
        assert_eq!(batch_validate("etsi", doc.as_bytes()) == "valid", shared, "{doc}");
        assert_eq!(batch_validate("ext", doc.as_bytes()) == "valid", ext, "{doc}");
    }
    assert!(batch_validate("etsi", sample.as_bytes()) == "valid");
    assert!(batch_validate("etsi", bad.as_bytes()).starts_with("invalid"));
}
