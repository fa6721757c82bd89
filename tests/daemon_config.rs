//! `tapir check-config`: exit 0 on a good config and warrants file; `file:line: error` and a
//! non-zero exit on a bad one. Expected lines are counted by hand in the texts below.

use std::path::Path;
use std::process::Command;

const TAPIR: &str = env!("CARGO_BIN_EXE_tapir");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

const GOOD: &str = r#"[capture]
interfaces = ["eth1"]
workers = 2
[paths]
warrants = "warrants.toml"
case_dir = "case"
spool_dir = "spool"
[associations]
listen = "unix:/run/tapir/assoc.sock"
[metrics]
listen = "127.0.0.1:9108"
"#;

fn check(dir: &Path, config: &str) -> (bool, String, String) {
    let p = dir.join("tapir.toml");
    std::fs::write(&p, config).unwrap();
    let o = Command::new(TAPIR).args(["check-config", "--config"]).arg(&p).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(Path::new(ROOT).join("pcaps/warrants.toml"), dir.path().join("warrants.toml")).unwrap();
    dir
}

#[test]
fn a_good_config_passes() {
    let dir = setup();
    let (ok, out, err) = check(dir.path(), GOOD);
    assert!(ok, "{err}");
    assert!(out.contains("OK (3 warrant(s), 0 LEA(s))"), "{out}");
}

/// Each bad config, the line (1-based) the error must name, and a word it must contain.
#[test]
fn bad_configs_name_file_and_line() {
    let dir = setup();
    let cases: &[(&str, usize, &str)] = &[
        // an unknown key
        (&GOOD.replace("workers = 2", "workers = 2\nworkrs = 3"), 4, "workrs"),
        // an unknown section
        (&format!("{GOOD}[capturee]\nx = 1\n"), 12, "capturee"),
        // out of range
        (&GOOD.replace("workers = 2", "workers = 0"), 3, "workers"),
        // wrong type
        (&GOOD.replace("workers = 2", "workers = \"two\""), 3, "workers"),
        // bad listen address
        (&GOOD.replace("unix:/run/tapir/assoc.sock", "udp:1.2.3.4:5"), 9, "udp:"),
        (&GOOD.replace("127.0.0.1:9108", "localhost"), 11, "localhost"),
        // bad ring geometry
        (&GOOD.replace("workers = 2", "workers = 2\nring = { block_size = 5000 }"), 4, "block_size"),
        // interfaces and replay together
        (&GOOD.replace("workers = 2", "workers = 2\nreplay = [\"a.pcap\"]"), 4, "exclude"),
        // a bad interface name
        (&GOOD.replace("\"eth1\"", "\"eth1\", \"a/b\""), 2, "interface"),
        // [x1] with an unknown role
        (
            &format!("{GOOD}[x1]\nlisten = \"127.0.0.1:4433\"\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"ca\"\n[[x1.client]]\nsubject_cn = \"admf\"\nrole = \"god\"\n"),
            19,
            "role",
        ),
        // a missing section
        (&GOOD.replace("[paths]\nwarrants = \"warrants.toml\"\ncase_dir = \"case\"\nspool_dir = \"spool\"\n", ""), 1, "paths"),
    ];
    let file = dir.path().join("tapir.toml").display().to_string();
    for (text, line, word) in cases {
        let (ok, _, err) = check(dir.path(), text);
        assert!(!ok, "accepted:\n{text}");
        let want = format!("{file}:{line}: ");
        assert!(err.contains(&want), "want {want:?} in {err:?} for\n{text}");
        assert!(err.contains(word), "want {word:?} in {err:?}");
    }
}

const POI: &str = "[node]\nrole = \"poi\"\nmdf = \"mdf.example:9443\"\nname = \"poi-hv1\"\nobject_range = 7\n";
const MDF: &str = "[node]\nrole = \"mdf\"\nlisten = \"0.0.0.0:9443\"\n[paths]\nwarrants = \"warrants.toml\"\ncase_dir = \"case\"\nspool_dir = \"spool\"\n";

/// `[node]`: a POI is the daemon with the MDF it sends to; an MDF has no `[capture]`; each
/// role's keys are refused in the other, with the line to fix.
#[test]
fn node_roles_check_what_each_needs() {
    let dir = setup();
    let (ok, out, err) = check(dir.path(), &format!("{POI}{GOOD}"));
    assert!(ok && out.contains("OK (3 warrant(s)"), "{out}{err}");
    let (ok, out, err) = check(dir.path(), MDF);
    assert!(ok && out.contains("OK (3 warrant(s)"), "{out}{err}");
    let file = dir.path().join("tapir.toml").display().to_string();
    let cases: &[(String, usize, &str)] = &[
        (format!("{}{GOOD}", POI.replace("role = \"poi\"", "role = \"collector\"")), 2, "role"),
        (format!("{}{GOOD}", POI.replace("mdf.example:9443", "mdf.example")), 3, "HOST:PORT"),
        (format!("{}{GOOD}", POI.replace("object_range = 7", "object_range = 0")), 5, "object_range"),
        (format!("{}{GOOD}", POI.replace("object_range = 7\n", "")), 1, "object_range"),
        (format!("{}listen = \"0.0.0.0:1\"\n{GOOD}", POI), 6, "role = \"mdf\""),
        (
            format!("{}{GOOD}", POI.replace("name = \"poi-hv1\"\n", "name = \"poi-hv1\"\ntls_ca = \"ca.pem\"\n")),
            1,
            "go together",
        ),
        (format!("{MDF}[capture]\ninterfaces = [\"eth1\"]\n"), 8, "captures nothing"),
        (MDF.replace("0.0.0.0:9443", "anywhere"), 3, "IP:PORT"),
        (MDF.replace("listen = \"0.0.0.0:9443\"", "listen = \"0.0.0.0:9443\"\nobject_range = 2"), 4, "role = \"poi\""),
        (GOOD.replace("[capture]\ninterfaces = [\"eth1\"]\nworkers = 2\n", ""), 1, "missing [capture]"),
    ];
    for (text, line, word) in cases {
        let (ok, _, err) = check(dir.path(), text);
        assert!(!ok, "accepted:\n{text}");
        let want = format!("{file}:{line}: ");
        assert!(err.contains(&want), "want {want:?} in {err:?} for\n{text}");
        assert!(err.contains(word), "want {word:?} in {err:?}");
    }
}

/// The shipped example's commented-out `[node]` blocks (a POI's, an MDF's) parse once
/// uncommented, each with what its role takes.
#[test]
fn the_shipped_node_examples_parse() {
    let p = Path::new(ROOT).join("etc/tapir.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let starts: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| **l == "# [node]").map(|(i, _)| i).collect();
    assert_eq!(starts.len(), 2);
    let mdf_text = "[paths]\nwarrants = \"w\"\ncase_dir = \"c\"\nspool_dir = \"s\"\n";
    for (k, &i) in starts.iter().enumerate() {
        let block: String = lines[i..]
            .iter()
            .take_while(|l| {
                l.starts_with("# ") && (l.starts_with("# [node]") || !l.starts_with("# [")) && !l.starts_with("# The ")
            })
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        let body = if k == 0 {
            format!("{block}[capture]\ninterfaces = [\"eth1\"]\n{mdf_text}")
        } else {
            format!("{block}{mdf_text}")
        };
        let c = tapir::daemon::parse_config(&body, &p).unwrap_or_else(|e| panic!("{e}\n{body}"));
        match (k, c.role) {
            (0, tapir::daemon::Role::Poi(poi)) => assert_eq!((poi.object_range, poi.name.as_str()), (1, "poi-hv1")),
            (1, tapir::daemon::Role::Mdf(m)) => assert_eq!(m.listen.port(), 9443),
            (k, r) => panic!("block {k}: {r:?}"),
        }
    }
}

#[test]
fn a_bad_warrants_file_is_reported_at_its_line() {
    let dir = setup();
    let w = dir.path().join("warrants.toml");
    let text = std::fs::read_to_string(&w).unwrap();
    // line 10 of pcaps/warrants.toml is the first warrant's `targets`
    assert!(text.lines().nth(9).unwrap().starts_with("targets"));
    std::fs::write(&w, text.replacen("\"ipv4:198.51.100.7\"", "\"ipv4:198.51.100.777\"", 1)).unwrap();
    let (ok, _, err) = check(dir.path(), GOOD);
    assert!(!ok);
    assert!(err.contains(&format!("{}:10: ", w.display())), "{err}");
    std::fs::remove_file(&w).unwrap();
    let (ok, _, err) = check(dir.path(), GOOD);
    assert!(!ok);
    assert!(err.contains("warrants.toml"), "{err}");
}

#[test]
fn the_shipped_example_parses() {
    let p = Path::new(ROOT).join("etc/tapir.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let c = tapir::daemon::parse_config(&text, &p).unwrap();
    assert_eq!(c.capture.interfaces, vec!["eth1".to_string()]);
    assert_eq!(c.capture.workers, 1);
    assert_eq!(c.capture.pipelines, 2);
    assert_eq!(c.paths.warrants, Path::new("/etc/tapir/warrants.toml"));
    assert_eq!(c.metrics, Some("127.0.0.1:9108".parse().unwrap()));
}
