//! Cross-links: an `image.create` whose SHA-256 equals an upload the same LIID intercepted says
//! which upload (object, CIN, flow, time). Expected values come from the fixture's record of
//! what was sent (`pcaps/ftp-upload.expect.json`: sha256sum and tshark at capture time).

use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn an_image_registered_with_an_uploads_digest_names_the_upload() {
    let expect: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{ROOT}/pcaps/ftp-upload.expect.json")).unwrap())
            .unwrap();
    let up = &expect["files"][0];
    assert_eq!(up["name"], "up-passive.bin");
    let d = tempfile::tempdir().unwrap();
    let events = d.path().join("events.jsonl");
    std::fs::write(
        &events,
        format!(
            "{{\"time\":\"2026-11-22T17:09:00Z\",\"event\":\"image.create\",\"image\":\"img-joe-1\",\"owner\":\"joe\",\"name\":\"debian12-joe.qcow2\",\"sha256\":\"{}\"}}\n",
            up["sha256"].as_str().unwrap().to_uppercase()
        ),
    )
    .unwrap();
    // A intercepts the target's address; B names joe only, and without an access event never
    // sees the upload: its record of the same event must not point at A's object.
    let warrants = d.path().join("w.toml");
    std::fs::write(
        &warrants,
        "[[warrant]]\nliid = \"A\"\nstart = \"2026-11-22T00:00:00Z\"\nend = \"2026-11-23T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [\"ipv4:198.51.100.7\", \"subscriber:joe\"]\n\n\
         [[warrant]]\nliid = \"B\"\nstart = \"2026-11-22T00:00:00Z\"\nend = \"2026-11-23T00:00:00Z\"\nscope = \"iri\"\ntargets = [\"subscriber:joe\"]\n",
    )
    .unwrap();
    let case = d.path().join("case");
    let out = Command::new(env!("CARGO_BIN_EXE_tapir"))
        .args(["replay", "-q"])
        .arg(format!("{ROOT}/pcaps/ftp-upload.pcap"))
        .arg("--warrants")
        .arg(&warrants)
        .arg("--associations")
        .arg(&events)
        .arg("--out")
        .arg(&case)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let record = |liid: &str| -> Value {
        std::fs::read_to_string(case.join(liid).join("iri.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|r| r["what"] == "image.create")
            .unwrap_or_else(|| panic!("{liid}: no image.create record"))
    };
    let a = record("A");
    let link = &a["detail"]["equals_intercepted_upload"];
    assert_eq!(link["name"], "up-passive.bin");
    assert_eq!(link["protocol"], "ftp");
    assert_eq!(link["size"], up["size"]);
    let flow = format!("tcp {} -> {}", up["flow"]["client"].as_str().unwrap(), up["flow"]["server"].as_str().unwrap());
    assert_eq!(link["flow"], flow.as_str());
    // The object it names is that upload, in A's own case.
    let objects = std::fs::read_to_string(case.join("A/objects.jsonl")).unwrap();
    let obj: Value =
        objects.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|o| o["id"] == link["object"]).unwrap();
    assert_eq!(obj["sha256"], up["sha256"]);
    assert_eq!(obj["cin"], link["cin"]);

    let b = record("B");
    assert!(b["detail"].get("equals_intercepted_upload").is_none(), "B never intercepted the upload: {b}");
}
