//! Costs follow live state, not the length of the history: a long image derivation chain and a
//! long associations file, replayed. Expected records come from the generators here.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use crate::common;

/// The IRI records of a replay of http-put.pcap with `events`, and the replay's peak RSS in MiB.
fn replay(dir: &Path, targets: &str, events: &Path) -> (Vec<serde_json::Value>, i64) {
    let warrants = dir.join("w.toml");
    std::fs::write(
        &warrants,
        format!(
            "[[warrant]]\nliid = \"L\"\nstart = \"2026-11-22T00:00:00Z\"\nend = \"2026-11-23T00:00:00Z\"\nscope = \"iri+cc\"\ntargets = [{targets}]\n"
        ),
    )
    .unwrap();
    let case = dir.join("case");
    let (out, rss_kib) = common::output_and_peak_rss_kib(
        Command::new(env!("CARGO_BIN_EXE_tapir"))
            .args(["replay", "--quiet", "--warrants"])
            .arg(&warrants)
            .arg("--associations")
            .arg(events)
            .arg("--out")
            .arg(&case)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/http-put.pcap")),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let iri = std::fs::read_to_string(case.join("L/iri.jsonl")).unwrap();
    (iri.lines().map(|l| serde_json::from_str(l).unwrap()).collect(), rss_kib / 1024)
}

fn time(s: u32) -> String {
    format!("2026-11-22T{:02}:{:02}:{:02}Z", 10 + s / 3600, s / 60 % 60, s % 60)
}

#[test]
fn a_long_derivation_chain_is_shared_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3000u32;
    let events = dir.path().join("chain.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&events).unwrap());
    writeln!(f, r#"{{"time":"{}","event":"image.create","image":"img-0","owner":"joe"}}"#, time(0)).unwrap();
    for i in 1..n {
        writeln!(
            f,
            r#"{{"time":"{}","event":"image.create","image":"img-{i}","owner":"eve","from_image":"img-{}"}}"#,
            time(i),
            i - 1
        )
        .unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();

    let (iri, rss) = replay(dir.path(), "\"subscriber:joe\"", &events);
    let assoc: Vec<_> = iri.iter().filter(|r| r["event"] == "association").collect();
    assert_eq!(assoc.len(), n as usize, "one record per image.create");
    let chain = |r: &serde_json::Value| -> Vec<String> {
        r["provenance"]["chain"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    // Every record's chain is bounded, starts at the target's own image, and ends at its event.
    for (i, r) in assoc.iter().enumerate() {
        let c = chain(r);
        assert!(c.len() <= 16, "record {i}: {} steps", c.len());
        assert!(c[0].contains("image.create img-0 owner=joe"), "{c:?}");
        assert!(c.last().unwrap().contains(&format!("image.create img-{i} ")), "{c:?}");
    }
    // The last one: the first step, how many are left out, and the last 14 in order.
    let last = chain(assoc.last().unwrap());
    assert_eq!(last.len(), 16);
    assert!(last[1].contains(&format!("{} intermediate steps", n - 15)), "{}", last[1]);
    for (k, step) in last[2..].iter().enumerate() {
        let img = n - 14 + k as u32;
        assert!(step.contains(&format!("image.create img-{img} ")) && step.contains(&format!("img-{}", img - 1)));
    }
    // Linear: 3000 records of about 3 kB at most (copied, the chain made it 243 MB for 2000).
    let size = std::fs::metadata(dir.path().join("case/L/iri.jsonl")).unwrap().len();
    assert!(size < u64::from(n) * 3000, "{size} bytes");
    assert!(rss < 200, "peak RSS {rss} MiB");
}

#[test]
fn an_associations_file_in_time_order_is_applied_as_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let vms = 100_000u32;
    let events = dir.path().join("churn.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&events).unwrap());
    for i in 0..vms {
        let t = time(i / 10);
        let (a, b, c) = ((i >> 16) & 255, (i >> 8) & 255, i & 255);
        writeln!(
            f,
            r#"{{"time":"{t}","event":"instance.start","instance":"vm-{i}","owner":"u{}","image":"img-x","ports":[{{"mac":"fa:16:3e:{a:02x}:{b:02x}:{c:02x}","ips":["10.{a}.{b}.{c}"],"vni":5001}}]}}"#,
            i % 1000
        )
        .unwrap();
        writeln!(f, r#"{{"time":"{t}","event":"instance.stop","instance":"vm-{i}"}}"#).unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();

    let (iri, rss) = replay(dir.path(), "\"subscriber:u7\"", &events);
    let assoc: Vec<_> = iri.iter().filter(|r| r["event"] == "association").collect();
    // u7 owns every thousandth VM: a start and a stop each, in file order.
    assert_eq!(assoc.len(), 2 * (vms / 1000) as usize);
    for (k, pair) in assoc.chunks(2).enumerate() {
        let vm = format!("vm:vm-{}", 7 + 1000 * k);
        assert_eq!(pair[0]["what"], "instance.start");
        assert_eq!(pair[1]["what"], "instance.stop");
        assert_eq!(pair[0]["provenance"]["selector"], vm.as_str());
    }
    // 200k lines (28 MB) held whole took about 400 MB; streamed, a few MiB.
    assert!(rss < 200, "peak RSS {rss} MiB");
}
