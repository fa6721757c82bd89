//! The shipped systemd files: the unit passes `systemd-analyze verify` (ExecStart pointed at the
//! built binary), its `systemd-analyze security --offline=yes` exposure is printed and bounded,
//! and the sysusers/tmpfiles files create the account and directories under a scratch root.

use std::path::Path;
use std::process::Command;

const TAPIR: &str = env!("CARGO_BIN_EXE_tapir");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn unit_with_built_binary(dir: &Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(Path::new(ROOT).join("systemd/tapir.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/tapir run --config /etc/tapir/tapir.toml"));
    let p = dir.join("tapir.service");
    std::fs::write(&p, unit.replace("/usr/local/bin/tapir", TAPIR)).unwrap();
    p
}

#[test]
fn the_unit_verifies_and_its_exposure_is_low() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_with_built_binary(dir.path());
    let o = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&unit).output().expect("systemd-analyze");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "verify: {err}");
    assert!(!err.contains("tapir.service:"), "verify warns: {err}");

    let o =
        Command::new("systemd-analyze").args(["security", "--offline=yes", "--no-pager"]).arg(&unit).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{out}"));
    println!("{line}");
    let level: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(level <= 2.5, "exposure {level} (was 1.9 when written): {out}");
}

#[test]
fn sysusers_and_tmpfiles_make_the_account_and_directories() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for (src, dst) in [
        ("systemd/tapir.sysusers.conf", "usr/lib/sysusers.d/tapir.conf"),
        ("systemd/tapir.tmpfiles.conf", "usr/lib/tmpfiles.d/tapir.conf"),
    ] {
        let d = r.join(dst);
        std::fs::create_dir_all(d.parent().unwrap()).unwrap();
        std::fs::copy(Path::new(ROOT).join(src), d).unwrap();
    }
    std::fs::create_dir_all(r.join("etc")).unwrap();
    let st = Command::new("systemd-sysusers").arg(format!("--root={}", r.display())).status().unwrap();
    assert!(st.success());
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).unwrap();
    let line = passwd.lines().find(|l| l.starts_with("tapir:")).expect("tapir in passwd");
    let f: Vec<&str> = line.split(':').collect();
    assert_eq!(f[5], "/var/lib/tapir");
    assert_eq!(f[6], "/usr/sbin/nologin");
    let uid: u32 = f[2].parse().unwrap();
    assert!(uid < 1000, "a system account: {uid}");

    let st =
        Command::new("systemd-tmpfiles").args(["--create"]).arg(format!("--root={}", r.display())).status().unwrap();
    assert!(st.success());
    use std::os::unix::fs::MetadataExt;
    for (d, mode) in [
        ("var/lib/tapir/case", 0o700),
        ("var/lib/tapir/spool", 0o700),
        ("var/lib/tapir/x1", 0o700),
        ("run/tapir", 0o750),
    ] {
        let m = std::fs::metadata(r.join(d)).unwrap_or_else(|e| panic!("{d}: {e}"));
        assert!(m.is_dir());
        assert_eq!(m.uid(), uid, "{d}");
        assert_eq!(m.mode() & 0o777, mode, "{d}");
    }
}
