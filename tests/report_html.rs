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

/// `tapir replay` of `pcaps` (paths under the crate) into `d/case`, with `args` (warrants,
/// associations, delivery); the case's path.
fn replay(d: &Path, pcaps: &[&str], args: &[&std::ffi::OsStr]) -> std::path::PathBuf {
    let case = d.join("case");
    crate::common::replay_into(pcaps.iter().map(|p| root().join(p)), args, &case);
    case
}

/// The README's default job on two of its captures: a case of the fixtures.
fn make_case(d: &Path) -> std::path::PathBuf {
    let (w, e) = (root().join("pcaps/warrants.toml"), root().join("pcaps/seed.events.jsonl"));
    replay(
        d,
        &["pcaps/http-put.pcap", "pcaps/ftp-upload.pcap"],
        &["--warrants".as_ref(), w.as_os_str(), "--associations".as_ref(), e.as_os_str()],
    )
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
    // The association graph, as the seed events (the control plane's and RADIUS's input, not
    // tapir's output) tell it: joe's access address, the image registered from his upload, the
    // VM ann started from it and its address.
    let seed: Vec<Value> = std::fs::read_to_string(root().join("pcaps/seed.events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let access = seed.iter().find(|e| e["event"] == "access.start" && e["subscriber"] == "joe").unwrap();
    let image = seed.iter().find(|e| e["event"] == "image.create" && e["owner"] == "joe").unwrap();
    let vm = seed.iter().find(|e| e["event"] == "instance.start" && e["image"] == image["image"]).unwrap();
    let (ip, img, inst) =
        (access["ip"].as_str().unwrap(), image["image"].as_str().unwrap(), vm["instance"].as_str().unwrap());
    let vm_ip = vm["ports"][0]["ips"][0].as_str().unwrap();
    let graph = &dom[dom.find("<svg id=\"graph-LIID-JOE-0001\"").expect("the graph")..];
    let graph = &graph[..graph.find("</svg>").unwrap()];
    for node in
        ["sub:joe".to_string(), format!("ip:{ip}"), format!("img:{img}"), format!("vm:{inst}"), format!("ip:{vm_ip}")]
    {
        assert!(graph.contains(&format!("data-id=\"{node}\"")), "node {node}");
    }
    assert!(graph.contains(&format!("started by {}", vm["owner"].as_str().unwrap())), "who started the VM");
    for (from, to) in [
        ("sub:joe".to_string(), format!("ip:{ip}")),
        (format!("img:{img}"), format!("vm:{inst}")),
        (format!("vm:{inst}"), format!("ip:{vm_ip}")),
    ] {
        assert!(graph.contains(&format!("data-from=\"{from}\" data-to=\"{to}\"")), "edge {from} -> {to}");
    }
    // The upload the image was registered from: joe's address uploaded it, it became the image.
    let upload = graph.split("<g ").find(|g| g.contains(">upload ")).expect("the upload node");
    let upload_id = upload.split("data-id=\"").nth(1).unwrap().split('"').next().unwrap();
    assert!(graph.contains(&format!("data-from=\"ip:{ip}\" data-to=\"{upload_id}\"")));
    assert!(graph.contains(&format!("data-from=\"{upload_id}\" data-to=\"img:{img}\"")));
    assert!(upload.contains(image["name"].as_str().unwrap()), "{upload}");

    // The targets the records were intercepted for: each is one of the warrant's own
    // (pcaps/warrants.toml: joe's subscriber identity and his addresses), joe's among them.
    let lead = "id=\"targets-LIID-JOE-0001\">Targets, as the records name them: ";
    let at = dom.find(lead).expect("the targets") + lead.len();
    let named: Vec<&str> = dom[at..at + dom[at..].find("</p>").unwrap()].split(", ").collect();
    let warrants = std::fs::read_to_string(root().join("pcaps/warrants.toml")).unwrap();
    let joe = warrants.lines().skip_while(|l| !l.contains("LIID-JOE-0001")).find(|l| l.starts_with("targets")).unwrap();
    assert!(named.contains(&"subscriber:joe") && named.iter().all(|t| joe.contains(&format!("\"{t}\""))), "{named:?}");
    // What joe had, and since when, as the seed events say: his access address from his
    // access.start, the image from its image.create, the VM started from it from its
    // instance.start (none of them stopped within the case).
    let held = rows(&dom, "held-LIID-JOE-0001");
    for (what, event) in [
        (format!("selector ipv4:{ip}"), access),
        (format!("image:{img}"), image),
        (format!("vm:{inst}"), vm),
        (format!("selector mac:{}", vm["ports"][0]["mac"].as_str().unwrap()), vm),
    ] {
        let row = held.iter().find(|r| r.contains(&format!(">{what}<"))).unwrap_or_else(|| panic!("{what}: {held:?}"));
        let since = event["time"].as_str().unwrap().trim_end_matches('Z');
        assert!(time_of(row).starts_with(since), "{what} since {since}: {row}");
        assert!(row.contains(">end of the case<"), "{row}");
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

/// The CINs of the sessions table of `liid`'s section.
fn session_cins(dom: &str, liid: &str) -> Vec<String> {
    let section = &dom[dom.find(&format!("<section id=\"{liid}\"")).unwrap()..];
    let section = &section[..section.find("</section>").unwrap()];
    let start = section.find("<h3>Sessions</h3>").unwrap();
    let table = &section[start..start + section[start..].find("</table>").unwrap()];
    table
        .split("<tr")
        .skip(2)
        .map(|r| r.split("</td>").next().unwrap().rsplit('>').next().unwrap().to_string())
        .collect()
}

/// The receiving side's view: the same report from what `tapir lemf` wrote of the delivery,
/// with the LEMF's account of the streams at the top; the timeline holds every HI2 PDU the
/// LEMF decoded, and the sessions are the case's.
#[test]
fn the_lemfs_directory_makes_the_same_report_of_what_was_delivered() {
    let d = tempfile::tempdir().unwrap();
    let (hi2, hi3) = (crate::common::free_port(), crate::common::free_port());
    let w = with_lea(d.path(), "pcaps/warrants.toml", hi2, hi3);
    let lemf_out = d.path().join("received");
    let lemf = crate::common::Lemf::start(hi2, Some(hi3), &lemf_out);
    let (events, spool) = (root().join("pcaps/seed.events.jsonl"), d.path().join("spool"));
    let case = replay(
        d.path(),
        &["pcaps/http-put.pcap", "pcaps/ftp-upload.pcap"],
        &[
            "--warrants".as_ref(),
            w.as_os_str(),
            "--associations".as_ref(),
            events.as_os_str(),
            "--deliver".as_ref(),
            spool.as_os_str(),
            "--deliver-wait".as_ref(),
            "10".as_ref(),
        ],
    );
    lemf.stop();
    let received = dom(&report(&lemf_out, None), "");
    assert!(received.contains("id=\"verdict\">Received by the LEMF: "), "the LEMF's account at the top");
    assert!(received.contains(" 0 gaps, 0 repeated, 0 undecodable"), "{}", &received[..2000.min(received.len())]);
    let lines = std::fs::read_to_string(lemf_out.join("LIID-JOE-0001/iri.jsonl")).unwrap().lines().count();
    assert_eq!(rows(&received, "timeline-LIID-JOE-0001").len(), lines);
    let recorded = dom(&report(&case, None), "");
    let cins = session_cins(&recorded, "LIID-JOE-0001");
    assert!(cins.len() >= 5, "{cins:?}");
    assert_eq!(session_cins(&received, "LIID-JOE-0001"), cins, "the sessions delivered are the sessions recorded");
    // Each stream's verdict: every one whole, and every session's CC stream among them.
    let delivery = rows(&received, "delivery-LIID-JOE-0001");
    let folded = format!("<details><summary id=\"delivery-summary-LIID-JOE-0001\" class=\"ok\">{} sequence-number streams: all whole</summary>", delivery.len());
    assert!(received.contains(&folded), "folded when whole");
    assert!(delivery.iter().all(|r| r.ends_with("<td>whole</td>")), "{delivery:?}");
    let cc: Vec<&str> = delivery
        .iter()
        .filter(|r| r.contains("<td>HI3</td>") || r.contains("<td>hi3</td>"))
        .map(|r| r.split("<td class=\"n\">").nth(1).unwrap().split('<').next().unwrap())
        .collect();
    assert!(!cc.is_empty(), "{delivery:?}");
    assert!(cins.iter().all(|c| cc.contains(&c.as_str())), "{cins:?} delivered on HI3: {cc:?}");
    // The sender's report says its LIID directory verifies on its own.
    assert!(recorded.contains("id=\"integrity-LIID-JOE-0001\">This LIID's directory verifies on its own"));
}

/// The second use case's report: the image's findings as the fixture's own truth has them
/// (`vmi.expect.json`, read back from the raw disk with debugfs), and when the VM started from
/// it will run its crontab (the instance's start, from the control plane's event, plus the
/// `sleep 3600` of its `@reboot` line).
#[test]
fn the_second_use_cases_report_shows_the_images_findings_and_the_vms_crontab_plan() {
    let e: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("pcaps/app/vmi.expect.json")).unwrap()).unwrap();
    let d = tempfile::tempdir().unwrap();
    let (events, started) = crate::common::vmi_fixture_events(d.path(), &e);
    let w = crate::common::one_warrant(d.path(), "LIID-V", &["ipv4:198.51.100.7", "subscriber:joe"]);
    let case = replay(
        d.path(),
        &["pcaps/app/vmi.pcap"],
        &["--warrants".as_ref(), w.as_os_str(), "--associations".as_ref(), events.as_os_str()],
    );
    let dom = dom(&report(&case, None), "");
    let at = dom.find("<h3>VM-image findings</h3>").expect("a findings section");
    let findings = &dom[at..at + dom[at..].find("<h3>Timeline</h3>").unwrap()];
    let v = &e["vmi"];
    for want in [
        v["os_pretty_name"].as_str().unwrap(),
        v["hostname"].as_str().unwrap(),
        v["outbox"]["path"].as_str().unwrap(),
        v["outbox"]["sha256"].as_str().unwrap(),
        v["crontab_sha256"].as_str().unwrap(),
        v["media"]["sha256"].as_str().unwrap(),
    ] {
        assert!(findings.contains(want), "{want} not in the findings");
    }
    for user in v["users"].as_array().unwrap() {
        assert!(findings.contains(&format!("{} (uid", user.as_str().unwrap())), "user {user}");
    }
    // The crontab line, as the page shows it (escaped: `&&` is `&amp;&amp;` in the markup).
    assert!(findings.contains(&v["crontab_line"].as_str().unwrap().replace('&', "&amp;")));
    let next = chrono::DateTime::from_timestamp(started + 3600, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    assert!(findings.contains(&format!("next {next}")), "the crontab's next run, {next}");
    // The picture found in the image is shown as a thumbnail the browser could draw, at the
    // size file(1) reads from the stored bytes.
    let sha = v["media"]["sha256"].as_str().unwrap();
    let row = dom.split("<tr").find(|r| r.contains(&format!("<code>{sha}</code>"))).expect("the picture's row");
    assert!(row.contains("<img class=\"thumb\""), "{row}");
    let stored = std::fs::read_dir(&case)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("objects").join(sha))
        .find(|p| p.is_file())
        .unwrap();
    let file = Command::new("file").arg("-b").arg(&stored).output().unwrap();
    let says = String::from_utf8_lossy(&file.stdout);
    let dims: Vec<&str> = says.split(", ").nth(1).expect("file(1) gives the PNG's size").split(" x ").collect();
    let shown = format!("<span class=\"dim shown\">{} x {} px</span>", dims[0].trim(), dims[1].trim());
    assert!(row.contains(&shown), "{shown} in {row}");
}

/// `warrants` (a path under the crate) with one LEA at `hi2`/`hi3` on loopback, written in `d`.
fn with_lea(d: &Path, warrants: &str, hi2: u16, hi3: u16) -> std::path::PathBuf {
    let w = d.join("w-lea.toml");
    let text = std::fs::read_to_string(root().join(warrants)).unwrap()
        + &format!(
            "\n[[lea]]\nname = \"lea\"\nhi2 = \"127.0.0.1:{hi2}\"\nhi3 = \"127.0.0.1:{hi3}\"\noperator_id = \"OPER\"\n\
             network_element_id = \"tapir-1\"\ncountry = \"NZ\"\nkeepalive = 1\n"
        );
    std::fs::write(&w, text).unwrap();
    w
}

/// Mails as an analyst reads them, from the case and from what the LEMF received (the mails
/// reassembled from HI3): every visible message of `pcaps/app/smtp.pcap` (swaks, smtplib,
/// postfix) has its subject and Message-ID in the page, and the one with attachments lists
/// them by name and decoded size, as the fixture's record of the files sent says. The page
/// holds no markup from any mail (its only script is its own).
#[test]
fn mails_are_shown_as_text_with_their_attachments() {
    let e: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("pcaps/app/smtp.expect.json")).unwrap()).unwrap();
    let d = tempfile::tempdir().unwrap();
    let (hi2, hi3) = (crate::common::free_port(), crate::common::free_port());
    let w = with_lea(d.path(), "pcaps/app/warrants.toml", hi2, hi3);
    let lemf_out = d.path().join("received");
    let lemf = crate::common::Lemf::start(hi2, Some(hi3), &lemf_out);
    let spool = d.path().join("spool");
    let case = replay(
        d.path(),
        &["pcaps/app/smtp.pcap"],
        &[
            "--warrants".as_ref(),
            w.as_os_str(),
            "--deliver".as_ref(),
            spool.as_os_str(),
            "--deliver-wait".as_ref(),
            "10".as_ref(),
        ],
    );
    lemf.stop();
    for (which, page) in [("recorded", report(&case, None)), ("received", report(&lemf_out, None))] {
        let dom = dom(&page, "");
        let mails: Vec<&str> =
            dom.split("<details class=\"mail\">").skip(1).map(|m| &m[..m.find("</details>").unwrap()]).collect();
        let visible: Vec<&Value> = e["files"].as_array().unwrap().iter().filter(|f| f["visible"] == true).collect();
        assert!(visible.len() >= 7);
        for f in &visible {
            let id = f["message_id"].as_str().unwrap().trim_matches(['<', '>']);
            let m = mails
                .iter()
                .find(|m| m.contains(&format!("Message-ID: {id}")))
                .unwrap_or_else(|| panic!("{which}: {id} not shown"));
            assert!(m.contains(&format!("Subject: {}", f["subject"].as_str().unwrap())), "{which}: {m}");
            for a in f["attachments"].as_array().unwrap() {
                let line = format!(
                    "[attachment] {} {} ({} bytes)",
                    a["filename"].as_str().unwrap(),
                    a["content_type"].as_str().unwrap(),
                    a["size"]
                );
                assert!(m.contains(&line), "{which}: {line} in {m}");
            }
        }
        assert_eq!(dom.matches("<script").count(), 1, "{which}");
    }
}

/// Evidence with a hole says so where an analyst looks: one data segment of the PUT upload is
/// taken out of `http-put.pcap` (editcap), and the page marks that session and that object
/// with the bytes missing, as many as tshark says the segment carried.
#[test]
fn a_hole_in_the_evidence_is_marked_in_the_sessions_objects_and_timeline() {
    let d = tempfile::tempdir().unwrap();
    let src = root().join("pcaps/http-put.pcap");
    // The first data segment from the target, and its payload length, by tshark.
    let seg =
        crate::common::tshark(&src, Some("tcp.len > 1000 && ip.src == 198.51.100.7"), &["frame.number", "tcp.len"]);
    let (frame, len) = seg[0].split_once('|').unwrap();
    let cut = d.path().join("cut.pcap");
    let o = Command::new("editcap")
        .arg("-d")
        .arg("-r")
        .arg(&src)
        .arg(&cut)
        .arg(format!("1-{}", frame.parse::<u32>().unwrap() - 1))
        .arg(format!("{}-100000", frame.parse::<u32>().unwrap() + 1))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let w = root().join("pcaps/warrants.toml");
    let case = replay(d.path(), &[cut.to_str().unwrap()], &["--warrants".as_ref(), w.as_os_str()]);
    let dom = dom(&report(&case, None), "");
    let missing = format!("{len} bytes missing at ");
    let gap_rows: Vec<&str> =
        dom.split("<tr").filter(|r| r.starts_with(" class=\"gap") || r.contains(" gap\"")).collect();
    // Table rows (the timeline's carry a data-kind).
    let tables: Vec<&&str> = gap_rows.iter().filter(|r| !r.contains("data-kind")).collect();
    let sessions = tables.iter().filter(|r| r.contains(&format!("→ {missing}"))).count();
    let objects = tables.iter().filter(|r| r.contains("(zero-filled)") && r.contains(&missing)).count();
    assert_eq!(sessions, 1, "the session, once in the sessions table: {gap_rows:?}");
    assert!(objects >= 1, "the object: {gap_rows:?}");
    assert!(dom.contains(&format!("GAP: → {missing}")), "the session's end in the timeline");
}

/// A stream rebuilt from RTMP plays in the page: FFmpeg publishes a 6-second H.264 + AAC clip
/// between two network namespaces (tests/media/rtmp-session.sh), tapir rebuilds it as MP4, and
/// Chromium, given virtual time to load the media, reports a duration within a frame of the
/// one ffprobe reads from the source clip.
#[test]
fn a_rebuilt_stream_plays_in_the_page() {
    use crate::common::media;
    let w = tempfile::tempdir().unwrap();
    media::make_clip(w.path());
    media::session("rtmp-session.sh", &[w.path().to_str().unwrap(), "publish", "sk_report"], &[]);
    let (_d, case) = media::replay_sender(&w.path().join("cap.pcap"), "LIID-MEDIA");
    let page = report(&case, None);
    let o = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"])
        .args(["--virtual-time-budget=10000", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dom = String::from_utf8(o.stdout).unwrap();
    let at = dom.find("<video").expect("the rebuilt stream has a player");
    let after = &dom[at..];
    let span = &after[after.find("<span class=\"dur").unwrap()..];
    let text = &span[span.find('>').unwrap() + 1..span.find("</span>").unwrap()];
    assert!(span.starts_with("<span class=\"dur played\""), "the browser played it: {span:.200}");
    let played: f64 = text.trim_end_matches(" s").parse().unwrap_or_else(|_| panic!("{text}"));
    let src = media::run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            w.path().join("src.mp4").to_str().unwrap(),
        ],
    );
    let src: f64 = src.trim().parse().unwrap();
    assert!((played - src).abs() < 0.1, "the page plays {played} s, the source is {src} s");
}

/// The commands of a README's "By hand" section, as one bash script.
fn by_hand(readme: &str) -> String {
    let part = &readme[readme.find("By hand").expect("a By hand section")..];
    let cmds: Vec<&str> = part.lines().filter_map(|l| l.strip_prefix("    ")).collect();
    format!("set -euo pipefail\n{}\n", cmds.join("\n"))
}

/// Every case directory says what its files are and how to check them without tapir: the
/// README at the root and in each LIID directory names each file there, is itself signed,
/// and its "By hand" commands (openssl, sha256sum, python3) verify the signature, every digest
/// and that nothing was added; after one byte of an object changes, they fail.
#[test]
fn every_case_directory_has_a_readme_whose_commands_verify_it() {
    let d = tempfile::tempdir().unwrap();
    let case = make_case(d.path());
    let liid = case.join("LIID-JOE-0001");
    for dir in [&case, &liid] {
        let readme = std::fs::read_to_string(dir.join("README.txt")).expect("a README.txt");
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let shown = if e.file_type().unwrap().is_dir() { format!("\n{name}/\n") } else { format!("\n{name}\n") };
            assert!(readme.contains(&shown), "{}: {name} not described", dir.display());
        }
        let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("MANIFEST.json")).unwrap()).unwrap();
        assert!(manifest["files"].as_array().unwrap().iter().any(|f| f["path"] == "README.txt"), "signed");
        let o = Command::new("bash").arg("-c").arg(by_hand(&readme)).current_dir(dir).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{}: {out}{}", dir.display(), String::from_utf8_lossy(&o.stderr));
        assert!(out.contains("Signature Verified Successfully"), "{out}");
        let files = manifest["files"].as_array().unwrap().len();
        assert_eq!(out.lines().filter(|l| l.ends_with(": OK")).count(), files, "{out}");
    }
    // The LIID's README says nothing of the case's other LIIDs.
    let other = std::fs::read_dir(&case)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().unwrap().is_dir() && e.file_name() != "LIID-JOE-0001")
        .map(|e| e.file_name().into_string().unwrap())
        .collect::<Vec<_>>();
    let readme = std::fs::read_to_string(liid.join("README.txt")).unwrap();
    assert!(other.iter().all(|o| !readme.contains(o.as_str())), "{other:?}");
    // One byte changed: the same commands fail.
    let obj = std::fs::read_dir(liid.join("objects")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&obj).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&obj, bytes).unwrap();
    let o = Command::new("bash").arg("-c").arg(by_hand(&readme)).current_dir(&liid).output().unwrap();
    assert!(!o.status.success(), "a changed object is found");
    assert!(String::from_utf8_lossy(&o.stdout).contains(": FAILED"));
}

/// The first packet time of `pcap` (seconds since the epoch), by capinfos.
fn first_packet(pcap: &Path) -> f64 {
    let o = Command::new("capinfos").args(["-a", "-T", "-r", "-S"]).arg(pcap).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().rsplit('\t').next().unwrap().parse().unwrap()
}

/// `src` moved to start at `at` (editcap -t) with its client 198.51.100.7 renumbered to the
/// VM's address (tcprewrite, checksums fixed): traffic the VM sends later in the story.
fn as_the_vm_at(src: &Path, at: i64, out: &Path) {
    let shifted = out.with_extension("shifted.pcap");
    let shift = format!("{:.6}", at as f64 - first_packet(src));
    let o = Command::new("editcap").arg("-t").arg(&shift).arg(src).arg(&shifted).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("tcprewrite")
        .args(["--srcipmap=198.51.100.7/32:10.0.0.77/32", "--dstipmap=198.51.100.7/32:10.0.0.77/32", "--fixcsum"])
        .arg("-i")
        .arg(&shifted)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The second use case's story, as the seed tells it, read off one page: joe comes online
/// (08:00), uploads an image over FTP (08:00:30), it is registered (08:01) and ann starts a VM
/// from it (08:05), joe goes offline (08:10), the VM mails (09:05: swaks and postfix's mails of
/// `pcaps/app/smtp.pcap`, renumbered to the VM) and publishes a video over RTMP (12:05: FFmpeg
/// in network namespaces, renumbered too), and the image is deleted the next day. The control
/// plane's events are the test's own; the packets are real clients'. The timeline has each
/// step in that order, and "what the target had" gives each address, image and VM the span
/// the events gave it.
#[test]
fn the_second_use_cases_story_reads_in_order_on_one_page() {
    use crate::common::media;
    let d = tempfile::tempdir().unwrap();
    let e: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("pcaps/app/vmi.expect.json")).unwrap()).unwrap();
    let vmi = root().join("pcaps/app/vmi.pcap");
    let upload = first_packet(&vmi).floor() as i64;
    let t = |s: i64| chrono::DateTime::from_timestamp(upload + s, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (online, created, started, offline, mails, streams, deleted) = (-30, 30, 270, 570, 3870, 14670, 86400);

    let smtp = d.path().join("smtp.pcap");
    as_the_vm_at(&root().join("pcaps/app/smtp.pcap"), upload + mails, &smtp);
    let w = tempfile::tempdir().unwrap();
    media::make_clip(w.path());
    media::session("rtmp-session.sh", &[w.path().to_str().unwrap(), "publish", "sk_story"], &[]);
    let rtmp = d.path().join("rtmp.pcap");
    as_the_vm_at(&w.path().join("cap.pcap"), upload + streams, &rtmp);

    let events = d.path().join("events.jsonl");
    std::fs::write(
        &events,
        format!(
            "{{\"time\":\"{}\",\"event\":\"access.start\",\"subscriber\":\"joe\",\"ip\":\"198.51.100.7\"}}\n\
             {{\"time\":\"{}\",\"event\":\"image.create\",\"image\":\"img-joe-1\",\"owner\":\"joe\",\"name\":\"joe-vm.qcow2\",\"sha256\":\"{}\"}}\n\
             {{\"time\":\"{}\",\"event\":\"instance.start\",\"instance\":\"vm-77\",\"owner\":\"ann\",\"image\":\"img-joe-1\",\"ports\":[{{\"mac\":\"fa:16:3e:00:00:77\",\"ips\":[\"10.0.0.77\"]}}]}}\n\
             {{\"time\":\"{}\",\"event\":\"access.stop\",\"subscriber\":\"joe\",\"ip\":\"198.51.100.7\"}}\n\
             {{\"time\":\"{}\",\"event\":\"image.delete\",\"image\":\"img-joe-1\"}}\n",
            t(online),
            t(created),
            e["vmi"]["image_sha256"].as_str().unwrap(),
            t(started),
            t(offline),
            t(deleted)
        ),
    )
    .unwrap();
    let wt = crate::common::one_warrant(d.path(), "LIID-STORY", &["subscriber:joe"]);
    let case = replay(
        d.path(),
        &[vmi.to_str().unwrap(), smtp.to_str().unwrap(), rtmp.to_str().unwrap()],
        &["--warrants".as_ref(), wt.as_os_str(), "--associations".as_ref(), events.as_os_str()],
    );
    let page = report(&case, None);
    let dom = dom(&page, "");
    let timeline = rows(&dom, "timeline-LIID-STORY");
    // The first timeline row of each step, and its time.
    let step = |what: &str, kind: &str, marker: &str| -> (usize, String) {
        let i = timeline
            .iter()
            .position(|r| r.contains(&format!("data-kind=\"{kind}\"")) && r.contains(marker))
            .unwrap_or_else(|| panic!("{what}: no {kind} row with {marker}"));
        (i, time_of(timeline[i]).to_string())
    };
    let story = [
        ("joe online", step("joe online", "association", "access.start"), Some(online)),
        ("the upload", step("the upload", "object", "joe-vm.qcow2"), None),
        ("the image", step("the image", "association", "image.create"), Some(created)),
        ("the VM", step("the VM", "association", "instance.start"), Some(started)),
        ("joe offline", step("joe offline", "association", "access.stop"), Some(offline)),
        ("the VM mails", step("the VM mails", "session-begin", "10.0.0.77"), None),
        ("the VM streams", step("the VM streams", "rtmp", "stream-begin"), None),
        ("the image deleted", step("the image deleted", "association", "image.delete"), Some(deleted)),
    ];
    for w in story.windows(2) {
        assert!(w[0].1 .0 < w[1].1 .0, "{} before {}: {story:?}", w[0].0, w[1].0);
    }
    for (what, (_, at), when) in &story {
        if let Some(s) = when {
            assert!(at.starts_with(t(*s).trim_end_matches('Z')), "{what} at {at}, not {}", t(*s));
        }
    }
    let (mail_at, stream_at) = (&story[5].1 .1, &story[6].1 .1);
    assert!(mail_at.starts_with(&t(mails)[..16]), "the mail at {mail_at}");
    assert!(stream_at.starts_with(&t(streams)[..16]), "the stream at {stream_at}");

    // What joe had, and when: the address while online, the image until deleted, the VM on.
    let held = rows(&dom, "held-LIID-STORY");
    let span = |what: &str| -> (String, String) {
        let r = held.iter().find(|r| r.contains(&format!(">{what}<"))).unwrap_or_else(|| panic!("{what}: {held:?}"));
        let mut times = r.split("title=\"").skip(1).map(|x| x.split('"').next().unwrap().to_string());
        let from = times.next().unwrap();
        (from, times.next().unwrap_or_else(|| "end".into()))
    };
    let at = |s: i64| t(s).trim_end_matches('Z').to_string();
    let (from, until) = span("selector ipv4:198.51.100.7");
    assert!(from.starts_with(&at(online)) && until.starts_with(&at(offline)), "{from} {until}");
    let (from, until) = span("image:img-joe-1");
    assert!(from.starts_with(&at(created)) && until.starts_with(&at(deleted)), "{from} {until}");
    let (from, until) = span("vm:vm-77");
    assert!(from.starts_with(&at(started)) && until == "end", "{from} {until}");
    // The mails are read on the page, the stream has its player.
    assert!(dom.contains("<details class=\"mail\">") && dom.contains("<video"));
    if let Some(out) = std::env::var_os("TAPIR_STORY_REPORT") {
        // For docs/: the page and its case, kept where the caller asked.
        let out = std::path::PathBuf::from(out);
        let _ = std::fs::create_dir_all(&out);
        Command::new("cp").arg("-a").arg(&case).arg(&page).arg(&out).status().unwrap();
    }
}

/// Markup and script off the wire stay text: a client on loopback uploads (multipart POST) a
/// file named `<img src=x onerror=...>.bin` with a `<script>` User-Agent, and mails with a `<script>`
/// subject, a sender name that is markup and an HTML body with a script and a remote image
/// (tests/data/report/hostile_session.py; tcpdump captures it). Chromium opens the report:
/// each payload would set the page's title if it ran. The title is the page's own, the only
/// script is the page's, no markup of the wire's is an element, and each payload is on the
/// page as the text it was.
#[test]
fn markup_from_the_wire_is_shown_as_text_and_never_runs() {
    let d = tempfile::tempdir().unwrap();
    let (http, smtp) = (crate::common::free_port(), crate::common::free_port());
    let pcap = d.path().join("hostile.pcap");
    let (http_s, smtp_s) = (http.to_string(), smtp.to_string());
    crate::common::capture_lo(&pcap, &["tcp", "port", &http_s, "or", "tcp", "port", &smtp_s], || {
        let o = Command::new("python3")
            .arg(root().join("tests/data/report/hostile_session.py"))
            .args([&http_s, &smtp_s])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    });
    let case = d.path().join("case");
    crate::common::replay_one_warrant(d.path(), "LIID-H", &["ipv4:127.0.0.1"], &pcap, &case, &[]);
    let dom = dom(&report(&case, None), "");
    assert!(dom.contains("<title>Case case</title>"), "a payload ran: {}", &dom[..300.min(dom.len())]);
    assert_eq!(dom.matches("<script").count(), 1, "only the page's own script");
    for raw in ["<img src=x", "<img src=\"x\"", "<b onmouseover", "<img src=\"http://remote.invalid"] {
        assert!(!dom.contains(raw), "{raw} became an element");
    }
    // Each payload is shown, as text: the DOM serialises a text node's < and > as entities.
    for shown in [
        "&lt;img src=x onerror=document.title='PWNED-NAME'&gt;.bin",
        "&lt;script&gt;document.title='PWNED-AGENT'&lt;/script&gt;",
        "Subject: &lt;script&gt;document.title='PWNED-SUBJECT'&lt;/script&gt;",
        "PWNED-FROM",
        // An HTML-only mail's body is shown as its text, without its markup.
        "hello from the HTML body",
    ] {
        assert!(dom.contains(shown), "{shown} is not on the page as text");
    }
}
