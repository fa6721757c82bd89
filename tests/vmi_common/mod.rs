//! Helpers of the image tests (`vmi_inspect`, `vmi_filesystems`): run the tools that make and
//! read back images, and `tapir vmi inspect --json`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs `cmd`; panics with its output if it fails, returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `script` with `bash -euc` in `dir`.
pub fn sh(script: &str, dir: &Path) -> String {
    run(Command::new("bash").arg("-euc").arg(script).current_dir(dir))
}

pub fn sha256sum(p: &Path) -> String {
    run(Command::new("sha256sum").arg(p)).split_whitespace().next().unwrap().to_string()
}

/// The SHA-256 of what `command` (a shell pipeline's first half, e.g. `mtype -i IMG ::/f`)
/// writes, by sha256sum, run in `dir`.
pub fn piped_sha256(command: &str, dir: &Path) -> String {
    sh(&format!("{command} | sha256sum"), dir).split_whitespace().next().unwrap().to_string()
}

/// `tapir vmi inspect --json IMAGE`.
pub fn inspect(image: &Path) -> Value {
    let out = run(Command::new(env!("CARGO_BIN_EXE_tapir")).args(["vmi", "inspect", "--json"]).arg(image));
    serde_json::from_str(&out).unwrap()
}
