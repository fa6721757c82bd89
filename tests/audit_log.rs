//! The audit log against tampering: `tapir audit verify` (the binary) must name the first bad
//! line; an independent Python checker (hashlib for the chain, `cryptography` for Ed25519)
//! recomputes the same log and must agree on which line that is.

use std::path::Path;
use std::process::Command;

use tapir::audit::{AuditEntry, AuditLog};
use tapir::deliver::manifest::SigningKey;
use tapir::timestamp::Timestamp;

/// Prints `N reason` for the first bad line (0 when intact). Written from the format in
/// src/audit.rs's module docs, not from its code.
const PY_CHECK: &str = r#"
import sys, hashlib, json
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
data = open(sys.argv[1], 'rb').read()
lines = data.split(b'\n')
if lines[-1] == b'':
    lines.pop()
prev = '0' * 64
for i, l in enumerate(lines, 1):
    try:
        o = json.loads(l)
    except Exception:
        print(i, 'json'); sys.exit()
    if o.get('seq') != i:
        print(i, 'seq'); sys.exit()
    if o.get('prev') != prev:
        print(i, 'prev'); sys.exit()
    if o.get('what') == 'audit-signature':
        try:
            msg = l[:l.rindex(b',"sig":"')]
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(o['key'])).verify(bytes.fromhex(o['sig']), msg)
        except Exception:
            print(i, 'sig'); sys.exit()
    prev = hashlib.sha256(l + b'\n').hexdigest()
print(0, 'ok')
"#;

fn python_first_bad(path: &Path) -> (usize, String) {
    let out = Command::new("python3").arg("-c").arg(PY_CHECK).arg(path).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let (n, why) = text.trim().split_once(' ').unwrap();
    (n.parse().unwrap(), why.to_string())
}

/// `tapir audit verify`: exit code and standard output.
fn tapir_verify(path: &Path, key: Option<&str>) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tapir"));
    c.args(["audit", "verify"]).arg(path);
    if let Some(k) = key {
        c.args(["--key", k]);
    }
    let out = c.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// 10 entries, a signature every 4 and on close: entries on lines 1-4, 6-9, 11-12; signatures
/// on lines 5, 10, 13. Returns the public key (hex) and the key file's `.pub`.
fn make_log(d: &Path) -> (std::path::PathBuf, String) {
    let key_path = d.join("audit.key");
    let public = SigningKey::generate_to(&key_path).unwrap();
    let log_path = d.join("audit.jsonl");
    let log = AuditLog::open(&log_path, Some(SigningKey::load(&key_path).unwrap()), 4).unwrap();
    for i in 0..10 {
        let e = AuditEntry {
            who: Some(if i % 2 == 0 { "admf-1" } else { "auditor-1" }.into()),
            fingerprint: Some("ab".repeat(32)),
            peer: Some(format!("127.0.0.1:{}", 40000 + i)),
            xid: Some(format!("00000000-0000-4000-8000-{i:012}")),
            liid: Some("LIID-1".into()),
            detail: Some(format!("request {i}")),
            ..AuditEntry::new("ActivateTask", "ok")
        };
        log.append_at(e, Timestamp::from_secs_nanos(1_767_225_600 + i, 123_456_789)).unwrap();
    }
    log.close().unwrap();
    (log_path, public)
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| format!("{l}\n")).collect()
}

fn write(p: &Path, lines: &[String]) {
    std::fs::write(p, lines.concat()).unwrap();
}

#[test]
fn an_untouched_log_verifies_and_python_agrees() {
    let d = tempfile::tempdir().unwrap();
    let (p, public) = make_log(d.path());
    let l = lines(&p);
    assert_eq!(l.len(), 13);
    assert!(l[4].contains("\"what\":\"audit-signature\"") && l[9].contains("audit-signature"));
    assert!(l[0].contains("\"when\":\"2026-01-01T00:00:00.123456789Z\""), "{}", l[0]);
    // Genesis by hand, and line 2's prev is sha256sum of line 1's bytes.
    assert!(l[0].starts_with(&format!("{{\"seq\":1,\"prev\":\"{}\"", "0".repeat(64))));
    std::fs::write(d.path().join("line1"), &l[0]).unwrap();
    let sum = Command::new("sha256sum").arg(d.path().join("line1")).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap().to_string();
    assert!(l[1].contains(&format!("\"prev\":\"{sum}\"")));

    assert_eq!(python_first_bad(&p), (0, "ok".into()));
    let (rc, out) = tapir_verify(&p, Some(&public));
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("13 lines, all signed (last signature: line 13)") && out.contains("OK"), "{out}");
    // The key as the `.pub` file `tapir keygen` writes.
    let pub_file = d.path().join("audit.key.pub");
    assert_eq!(tapir_verify(&p, Some(pub_file.to_str().unwrap())).0, 0);
    // Without a key: verified against the key in the log, and says so.
    let (rc, out) = tapir_verify(&p, None);
    assert_eq!(rc, 0);
    assert!(out.contains("not checked against a trusted key"), "{out}");

    assert!(out.contains("sealed head: line seq 13"), "{out}");

    // Reopened without a key, one more line: the chain is intact but only hash-chained after
    // line 13, and its head is not signed: with the key given, that is a problem (anyone could
    // have written that head after cutting lines), without it a note.
    AuditLog::open(&p, None, 0).unwrap().append(AuditEntry::new("x1-server", "started")).unwrap();
    assert_eq!(python_first_bad(&p), (0, "ok".into()));
    let (rc, out) = tapir_verify(&p, Some(&public));
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("last signed line 13; lines 14-14 are only hash-chained"), "{out}");
    assert!(out.contains("not signed by the key given"), "{out}");
    let (rc, out) = tapir_verify(&p, None);
    assert_eq!(rc, 0, "{out}");
}

/// Cutting the newest lines at a line boundary leaves a valid chain (Python's independent check
/// finds nothing): the sealed head tells. Removing the head, or forging an unsigned one, is
/// caught too.
#[test]
fn lines_cut_from_the_end_are_detected_by_the_sealed_head() {
    let d = tempfile::tempdir().unwrap();
    let (p, public) = make_log(d.path());
    let l = lines(&p);
    write(&p, &l[..11]);
    assert_eq!(python_first_bad(&p), (0, "ok".into()), "the chain alone cannot tell");
    let (rc, out) = tapir_verify(&p, Some(&public));
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("CUT: the sealed head names line seq 13, the log ends at seq 11"), "{out}");
    assert_eq!(tapir_verify(&p, None).0, 1, "without a key too");

    // A head forged for the cut log, unsigned.
    let head = p.with_file_name("audit.jsonl.head");
    let sum = Command::new("sh").arg("-c").arg(format!("tail -n 1 '{}' | sha256sum", p.display())).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap().to_string();
    std::fs::write(&head, format!("{{\"seq\":11,\"line_sha256\":\"{sum}\",\"when\":\"2026-01-01T00:00:00Z\"}}\n"))
        .unwrap();
    let (rc, out) = tapir_verify(&p, Some(&public));
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("not signed by the key given"), "{out}");

    // No head at all.
    std::fs::remove_file(&head).unwrap();
    let (rc, out) = tapir_verify(&p, Some(&public));
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("no sealed head"), "{out}");
}

/// A torn last line stops the log from opening, with the repair command in the message;
/// `tapir audit repair` keeps the torn bytes beside the log, records the repair in it, and the
/// log verifies and opens again.
#[test]
fn a_torn_last_line_is_repaired_with_a_record_of_what_was_cut() {
    let d = tempfile::tempdir().unwrap();
    let (p, public) = make_log(d.path());
    let torn = b"{\"seq\":14,\"prev\":\"00";
    let mut bytes = std::fs::read(&p).unwrap();
    let len = bytes.len();
    bytes.extend_from_slice(torn);
    std::fs::write(&p, &bytes).unwrap();
    let e = AuditLog::open(&p, None, 0).unwrap_err().to_string();
    assert!(e.contains(&format!("tapir audit repair {}", p.display())), "{e}");

    let o = Command::new(env!("CARGO_BIN_EXE_tapir"))
        .args(["audit", "repair"])
        .arg(&p)
        .arg("--signing-key")
        .arg(d.path().join("audit.key"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains(&format!("cut {} bytes at byte {len}", torn.len())), "{out}");
    // The torn bytes are kept, byte for byte.
    let kept: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|q| q.file_name().unwrap().to_string_lossy().starts_with("audit.jsonl.cut-"))
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read(&kept[0]).unwrap(), torn);
    // The log: the 13 lines untouched, the repair entry (with the cut bytes' sha256), a signature.
    let l = lines(&p);
    assert_eq!(l.len(), 15);
    assert_eq!(l[..13].concat().len(), len);
    let sum = Command::new("sha256sum").arg(&kept[0]).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap().to_string();
    assert!(l[13].contains("\"what\":\"audit-repair\"") && l[13].contains(&sum), "{}", l[13]);
    let (rc, out) = tapir_verify(&p, Some(&public));
    assert_eq!(rc, 0, "{out}");
    AuditLog::open(&p, None, 0).unwrap();
    // An intact log has nothing to repair.
    let o = Command::new(env!("CARGO_BIN_EXE_tapir")).args(["audit", "repair"]).arg(&p).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("nothing to repair"));
}

/// Applies `tamper` to a fresh log; tapir must exit 1 and name `line` first with `says`, and
/// Python must find the same first bad line.
fn tampered(tamper: impl FnOnce(&mut Vec<String>), line: usize, says: &str) {
    let d = tempfile::tempdir().unwrap();
    let (p, public) = make_log(d.path());
    let mut l = lines(&p);
    tamper(&mut l);
    write(&p, &l);
    let (py_line, _) = python_first_bad(&p);
    assert_eq!(py_line, line, "python disagrees on the first bad line");
    let (rc, out) = tapir_verify(&p, Some(&public));
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains(&format!("the first bad line is line {line}")), "{out}");
    assert!(out.contains(says), "expected {says:?} in:\n{out}");
}

#[test]
fn an_edited_byte_is_found_at_the_next_line() {
    tampered(|l| l[2] = l[2].replacen("admf-1", "admf-2", 1), 4, "line 4: bad prev hash: it does not match line 3");
}

#[test]
fn a_deleted_line_is_a_sequence_gap() {
    tampered(|l| drop(l.remove(5)), 6, "line 6: sequence gap: expected seq 6, found 7");
}

#[test]
fn swapped_lines_are_out_of_sequence() {
    tampered(|l| l.swap(6, 7), 7, "line 7: sequence gap: expected seq 7, found 8");
}

#[test]
fn a_truncated_signature_is_a_bad_signature() {
    tampered(
        |l| {
            let at = l[4].rfind("\"}").unwrap();
            l[4].replace_range(at - 10..at, "");
        },
        5,
        "line 5: bad signature: sig is 59 bytes, not 64",
    );
}

#[test]
fn an_edited_signature_line_does_not_verify() {
    // The last line: no later line chains to it, only its signature covers it.
    tampered(|l| l[12] = l[12].replacen("\"when\":\"2", "\"when\":\"1", 1), 13, "line 13: bad signature");
}

#[test]
fn a_torn_last_line_is_reported() {
    tampered(
        |l| {
            let n = l[12].len();
            l[12].truncate(n - 20);
        },
        13,
        "line 13: no newline at the end",
    );
}

#[test]
fn another_signer_and_usage_errors() {
    let d = tempfile::tempdir().unwrap();
    let (p, _) = make_log(d.path());
    let other = SigningKey::ephemeral().public_hex();
    let (rc, out) = tapir_verify(&p, Some(&other));
    assert_eq!(rc, 1);
    assert!(out.contains("line 5: signed by key") && out.contains("not the key given"), "{out}");
    assert_eq!(tapir_verify(&d.path().join("missing.jsonl"), None).0, 2);
    assert_eq!(tapir_verify(&p, Some("not-a-key")).0, 2);
    let usage = Command::new(env!("CARGO_BIN_EXE_tapir")).args(["audit", "verify"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

/// `tapir audit verify LOG | head` must not panic when the reader has gone: the exit code is
/// still the verdict (0 intact, 1 tampered), not Rust's 101. The reader here (`true`) exits at
/// once, so every write finds the pipe closed.
#[test]
fn a_closed_output_pipe_does_not_change_the_verdict() {
    let d = tempfile::tempdir().unwrap();
    let (p, _) = make_log(d.path());
    let tapir = env!("CARGO_BIN_EXE_tapir");
    let status = |log: &Path| {
        let script =
            format!("sleep 0.2 | true; {tapir} audit verify '{}' | true; echo ${{PIPESTATUS[0]}}", log.display());
        let out = Command::new("bash").arg("-c").arg(&script).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(status(&p), "0");
    let mut l = lines(&p);
    l[2] = l[2].replace("request 2", "request X");
    write(&p, &l);
    assert_eq!(status(&p), "1");
}
