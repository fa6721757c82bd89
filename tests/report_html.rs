//! `tapir report` on a case of the fixtures, opened as an analyst would, in a browser: headless
//! Chromium loads the page (its scripts run) and the test reads the DOM it dumps. Expected
//! values come from the fixtures' own records (`*.expect.json`: the sha256sum of each file the
//! clients sent, tshark's TCP conversations), never from tapir.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::TAPIR;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The DOM of `page` after its scripts ran, as headless Chromium dumps it.
fn dom(page: &Path, fragment: &str) -> String {
    let o = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}{fragment}", page.display()))
        .output()
        .expect("chromium (Debian's chromium package)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// The rows (`<tr ...>...</tr>`) of the table with id `id`.
fn rows<'a>(dom: &'a str, id: &str) -> Vec<&'a str> {
    let start = dom.find(&format!("<table id=\"{id}\"")).unwrap_or_else(|| panic!("no table {id}"));
    let table = &dom[start..start + dom[start..].find("</table>").unwrap()];
    table.split("<tr").skip(2).map(|r| r.split("</tr>").next().unwrap()).collect()
}

/// The `title` of a row's first cell: the record's exact time.
fn time_of(row: &str) -> &str {
    let i = row.find("title=\"").unwrap() + 7;
    &row[i..i + row[i..].find('"').unwrap()]
}

fn make_case(d: &Path) -> std::path::PathBuf {
    let case = d.join("case");
    let o = Command::new(TAPIR)
        .arg("replay")
        .arg(root().join("pcaps/http-put.pcap"))
        .arg(root().join("pcaps/ftp-upload.pcap"))
        .arg("--warrants")
        .arg(root().join("pcaps/warrants.toml"))
        .arg("--associations")
        .arg(root().join("pcaps/seed.events.jsonl"))
        .arg("--out")
        .arg(&case)
        .arg("-q")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    case
}

fn report(case: &Path, out: Option<&Path>) -> std::path::PathBuf {
    let mut cmd = Command::new(TAPIR);
    cmd.arg("report").arg(case);
    if let Some(o) = out {
        cmd.arg("--out").arg(o);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::path::PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
}

#[test]
fn a_case_report_opens_in_a_browser_with_the_timeline_in_order_and_every_file_sent() {
    let d = tempfile::tempdir().unwrap();
    let case = make_case(d.path());
    let page = report(&case, None);
    assert_eq!(page, d.path().join("case.html"), "beside the case, not in it");
    // The case still verifies: the page is not a file inside it.
    let v = Command::new(TAPIR).arg("verify").arg(&case).output().unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));

    let dom = dom(&page, "");
    assert!(dom.contains("id=\"verdict\">Verified: "), "the verdict at the top");
    // The timeline: every record of the LIID's iri.jsonl, in time order.
    let iri_lines = std::fs::read_to_string(case.join("LIID-JOE-0001/iri.jsonl")).unwrap().lines().count();
    let timeline = rows(&dom, "timeline-LIID-JOE-0001");
    assert_eq!(timeline.len(), iri_lines);
    let times: Vec<&str> = timeline.iter().map(|r| time_of(r)).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // Every file the clients sent is an object, named, with the digest sha256sum gave it.
    for fixture in ["http-put", "ftp-upload"] {
        let e: Value = serde_json::from_str(
            &std::fs::read_to_string(root().join(format!("pcaps/{fixture}.expect.json"))).unwrap(),
        )
        .unwrap();
        for f in e["files"].as_array().unwrap() {
            let (name, sha) = (f["name"].as_str().unwrap(), f["sha256"].as_str().unwrap());
            let row = dom
                .split("<tr")
                .find(|r| r.contains(&format!("<code>{sha}</code>")))
                .unwrap_or_else(|| panic!("{fixture}: {name} ({sha}) not among the objects"));
            assert!(row.contains(name), "{fixture}: {name}: {row}");
            assert!(row.contains(&format!("href=\"case/LIID-JOE-0001/objects/{sha}\"")), "{row}");
        }
    }
    // Hiding a kind from the address: the script unchecks it and hides its rows, only those.
    let dom = dom_hidden(&page);
    let timeline = rows(&dom, "timeline-LIID-JOE-0001");
    let (objects, others): (Vec<&&str>, Vec<&&str>) = timeline.iter().partition(|r| r.contains("data-kind=\"object\""));
    assert!(!objects.is_empty() && objects.iter().all(|r| r.contains(" hidden")), "object rows hidden");
    assert!(others.iter().all(|r| !r.contains(" hidden")), "nothing else hidden");

    // Reproducible: the same case makes the same bytes.
    let again = report(&case, Some(&d.path().join("again.html")));
    assert_eq!(std::fs::read(&page).unwrap(), std::fs::read(again).unwrap());
}

fn dom_hidden(page: &Path) -> String {
    dom(page, "#hide=object")
}
