//! The Windows version from a SOFTWARE registry hive (`Windows/System32/config/SOFTWARE`).
//!
//! The hive (regf) is read here, not through a crate: `nt-hive`, the pure-Rust reader the
//! `ntfs` crate's author wrote, is GPL-2.0-or-later (tapir is Apache-2.0) and panics on corrupt
//! offsets and on its own signature check; `notatin` (Apache-2.0) brings a terminal library,
//! BLAKE3 and a hundred crates for what is one key lookup. What is read is small: the base
//! block's root cell, key nodes (`nk`) through their subkey lists (`lf`, `lh`, `li`, one level of
//! `ri`), and the key's values (`vk`) with their data, inline or in one cell. Every offset is
//! checked against the hive, every list bounded ([`MAX_SUBKEYS`], [`MAX_VALUES`]), a string read
//! only up to [`MAX_STRING_BYTES`]: the work is bounded whatever the hive says, and nothing
//! panics. A dirty hive (transaction logs not applied: its sequence numbers differ) is read as
//! the disk holds it, as hivex does.

use serde::Serialize;

use super::disk::field::{le16, le32};

/// The key below the SOFTWARE hive's root that holds the version.
pub const CURRENT_VERSION: &str = "Microsoft\\Windows NT\\CurrentVersion";
/// Values of the key looked at, at most (a real one has about 30).
pub const MAX_VALUES: usize = 1024;
/// A string value longer than this (UTF-16 bytes) is not read: the version strings are short.
pub const MAX_STRING_BYTES: u32 = 1024;
/// Subkeys of one key looked at, at most, to find the next key of the path.
pub const MAX_SUBKEYS: usize = 1 << 16;
/// The base block; cell offsets count from its end (the first hive bin).
const BASE_BLOCK: usize = 4096;

/// The Windows version as the SOFTWARE hive stores it, each field only where present and of
/// the expected type. Windows 11 still says "Windows 10" in `ProductName`: its `CurrentBuild`
/// (22000 and above) is what tells.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WindowsVersion {
    /// `ProductName`, e.g. "Windows 10 Pro".
    pub product_name: Option<String>,
    /// `DisplayVersion` (e.g. "22H2", since 20H2), else `ReleaseId` (e.g. "1909").
    pub display_version: Option<String>,
    /// `CurrentBuild`, else `CurrentBuildNumber` (e.g. "19045").
    pub current_build: Option<String>,
    /// `EditionID`, e.g. "Professional".
    pub edition_id: Option<String>,
    /// `CurrentMajorVersionNumber` (a DWORD, since Windows 10), else (when neither DWORD is
    /// there) the major part of the `CurrentVersion` string ("6.1" on Windows 7; Windows 10 and 11 keep "6.3" there).
    pub major: Option<u32>,
    /// `CurrentMinorVersionNumber`, else (when neither DWORD is there) the minor part of
    /// `CurrentVersion`.
    pub minor: Option<u32>,
    /// `InstallDate` (a DWORD): seconds since 1970-01-01 UTC.
    pub install_date: Option<i64>,
}

/// The version in the SOFTWARE hive `hive` (the whole file), or `None` when it is not a hive,
/// has no [`CURRENT_VERSION`] key, or that key holds none of the values.
pub fn windows_version(hive: &[u8]) -> Option<WindowsVersion> {
    if !hive.starts_with(b"regf") {
        return None;
    }
    let h = Hive(hive);
    let mut key = h.key(le32(hive, 0x24))?;
    for name in CURRENT_VERSION.split('\\') {
        key = h.subkey(key, name)?;
    }
    let v = values(&h, key);
    (v != WindowsVersion::default()).then_some(v)
}

/// A hive's bytes; cells are addressed by their offset past the base block.
struct Hive<'a>(&'a [u8]);

/// A registry value of the key looked at.
struct Value<'a> {
    kind: u32,
    data: Option<&'a [u8]>,
}

impl<'a> Hive<'a> {
    /// The data of the allocated cell at `offset` (its size is negative; it must fit the hive).
    fn cell(&self, offset: u32) -> Option<&'a [u8]> {
        let at = BASE_BLOCK.checked_add(offset as usize)?;
        let size = i32::from_le_bytes(self.0.get(at..at + 4)?.try_into().ok()?);
        let len = size.checked_neg().filter(|l| *l >= 4)? as usize;
        self.0.get(at + 4..at.checked_add(len)?)
    }

    /// The key node (`nk`) cell at `offset`.
    fn key(&self, offset: u32) -> Option<&'a [u8]> {
        self.cell(offset).filter(|c| c.starts_with(b"nk") && c.len() >= 0x4C)
    }

    /// The subkey of `key` named `name` (case-insensitive, as Windows compares).
    fn subkey(&self, key: &[u8], name: &str) -> Option<&'a [u8]> {
        let (count, list) = (le32(key, 0x14) as usize, le32(key, 0x1C));
        let mut offsets = Vec::new();
        self.list(list, 0, &mut offsets);
        offsets.truncate(count.min(MAX_SUBKEYS));
        offsets
            .into_iter()
            .filter_map(|o| self.key(o))
            .find(|k| key_name(k).is_some_and(|n| n.eq_ignore_ascii_case(name)))
    }

    /// The key offsets of subkey list `offset`: `lf`/`lh` (offset and hash), `li` (offsets), or
    /// an `ri` of those (`depth` 0 only: an index of indexes is not a hive Windows writes).
    fn list(&self, offset: u32, depth: u8, out: &mut Vec<u32>) {
        let Some(c) = self.cell(offset) else { return };
        let n = usize::from(le16(c, 2));
        let (step, is_index) = match c.get(..2) {
            Some(b"lf" | b"lh") => (8, false),
            Some(b"li") => (4, false),
            Some(b"ri") if depth == 0 => (4, true),
            _ => return,
        };
        for i in 0..n {
            if out.len() >= MAX_SUBKEYS {
                return;
            }
            let Some(w) = c.get(4 + i * step..8 + i * step) else { return };
            let o = le32(w, 0);
            if is_index {
                self.list(o, 1, out);
            } else {
                out.push(o);
            }
        }
    }

    /// The values of `key` with their names, up to [`MAX_VALUES`].
    fn values(&self, key: &[u8]) -> Vec<(String, Value<'a>)> {
        let (count, list) = (le32(key, 0x24) as usize, le32(key, 0x28));
        let Some(list) = self.cell(list) else { return Vec::new() };
        let mut out = Vec::new();
        for w in list.chunks_exact(4).take(count.min(MAX_VALUES)) {
            let Some(vk) = self.cell(le32(w, 0)).filter(|c| c.starts_with(b"vk") && c.len() >= 20) else { continue };
            let name_len = usize::from(le16(vk, 2));
            let Some(raw) = vk.get(20..20 + name_len) else { continue };
            // Flag 1: the name is in Latin-1, else UTF-16LE.
            let name = if le16(vk, 16) & 1 != 0 { raw.iter().map(|b| char::from(*b)).collect() } else { utf16(raw) };
            let size = le32(vk, 4);
            let data = if size & 0x8000_0000 != 0 {
                // Up to 4 bytes are kept in the data offset field itself.
                vk.get(8..8 + ((size & 0x7FFF_FFFF) as usize).min(4))
            } else if size <= MAX_STRING_BYTES {
                self.cell(le32(vk, 8)).and_then(|c| c.get(..size as usize))
            } else {
                None
            };
            out.push((name, Value { kind: le32(vk, 12), data }));
        }
        out
    }
}

/// A key node's name: Latin-1 when flag 0x20 says so, else UTF-16LE.
fn key_name(nk: &[u8]) -> Option<String> {
    let raw = nk.get(0x4C..0x4C + usize::from(le16(nk, 0x48)))?;
    Some(if le16(nk, 2) & 0x20 != 0 { raw.iter().map(|b| char::from(*b)).collect() } else { utf16(raw) })
}

/// UTF-16LE up to the first NUL.
fn utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|u| *u != 0).collect();
    String::from_utf16_lossy(&units)
}

/// The version fields among the first [`MAX_VALUES`] values of `key`; a value that cannot be
/// read, or is of another type, is skipped.
fn values(h: &Hive<'_>, key: &[u8]) -> WindowsVersion {
    let mut v = WindowsVersion::default();
    let (mut release_id, mut build_number, mut current_version) = (None, None, None);
    for (name, value) in h.values(key) {
        match name.to_ascii_lowercase().as_str() {
            "productname" => v.product_name = string(&value),
            "displayversion" => v.display_version = string(&value),
            "releaseid" => release_id = string(&value),
            "currentbuild" => v.current_build = string(&value),
            "currentbuildnumber" => build_number = string(&value),
            "editionid" => v.edition_id = string(&value),
            "currentmajorversionnumber" => v.major = dword(&value),
            "currentminorversionnumber" => v.minor = dword(&value),
            "currentversion" => current_version = string(&value),
            "installdate" => v.install_date = dword(&value).map(i64::from),
            _ => {}
        }
    }
    v.display_version = v.display_version.or(release_id);
    v.current_build = v.current_build.or(build_number);
    // Both from the DWORDs or both from the string: Windows 10's "6.3" is no minor of its 10.
    if v.major.is_none() && v.minor.is_none() {
        if let Some((major, minor)) = current_version.as_deref().and_then(|s| s.split_once('.')) {
            v.major = major.trim().parse().ok();
            v.minor = minor.trim().parse().ok();
        }
    }
    v
}

/// A `REG_SZ` (1) or `REG_EXPAND_SZ` (2) value up to its first NUL.
fn string(value: &Value<'_>) -> Option<String> {
    matches!(value.kind, 1 | 2).then(|| value.data.map(utf16)).flatten()
}

/// A `REG_DWORD` (4) or `REG_DWORD_BIG_ENDIAN` (5) value.
fn dword(value: &Value<'_>) -> Option<u32> {
    let b: [u8; 4] = value.data?.try_into().ok()?;
    match value.kind {
        4 => Some(u32::from_le_bytes(b)),
        5 => Some(u32::from_be_bytes(b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// The recipe's script, run as written in the README (its ```python block).
    const README: &str = include_str!("../../tests/data/registry/README.md");

    fn make_hive_script() -> &'static str {
        let start = README.find("```python\n").expect("README has a ```python block") + "```python\n".len();
        let len = README[start..].find("```").expect("the ```python block ends");
        &README[start..start + len]
    }

    /// A new hive at `path` with `values` (`NAME=sz:TEXT`, `NAME=dword:N`) in CurrentVersion,
    /// written by samba's regf code through the README's script. Panics, never skips, when the
    /// tools are missing.
    fn make_hive(path: &Path, values: &[&str]) -> Vec<u8> {
        let out = Command::new("python3")
            .arg("-c")
            .arg(make_hive_script())
            .arg(path)
            .arg(CURRENT_VERSION)
            .args(values)
            .output()
            .expect("python3 not found: run `bash .ci/install-deps.sh` (python3, samba-libs, libhivex-bin)");
        assert!(
            out.status.success(),
            "make-hive failed ({}): {}\nthe hive is written by samba-libs: run `bash .ci/install-deps.sh`",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(path).unwrap()
    }

    /// What hivex (an independent reader) says `name` in CurrentVersion holds, `None` if absent.
    fn hivexget(path: &Path, name: &str) -> Option<String> {
        let out = Command::new("hivexget")
            .arg(path)
            .arg(CURRENT_VERSION)
            .arg(name)
            .output()
            .expect("hivexget not found: install libhivex-bin (`bash .ci/install-deps.sh`)");
        out.status.success().then(|| String::from_utf8(out.stdout).unwrap().trim_end_matches('\n').to_string())
    }

    fn hivexget_u32(path: &Path, name: &str) -> Option<u32> {
        hivexget(path, name).map(|s| s.parse().unwrap_or_else(|_| panic!("hivexget {name}: {s:?} is no number")))
    }

    const WIN10: &[&str] = &[
        "ProductName=sz:Windows 10 Pro",
        "DisplayVersion=sz:22H2",
        "CurrentBuild=sz:19045",
        "CurrentBuildNumber=sz:19045",
        "EditionID=sz:Professional",
        "ReleaseId=sz:2009",
        "CurrentVersion=sz:6.3",
        "CurrentMajorVersionNumber=dword:10",
        "CurrentMinorVersionNumber=dword:0",
        "InstallDate=dword:1671541443",
    ];

    #[test]
    fn reads_what_hivex_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("SOFTWARE");
        let bytes = make_hive(&path, WIN10);
        let got = windows_version(&bytes).expect("a version");

        // hivex, another regf reader, sees the same values...
        assert_eq!(got.product_name, hivexget(&path, "ProductName"));
        assert_eq!(got.display_version, hivexget(&path, "DisplayVersion"));
        assert_eq!(got.current_build, hivexget(&path, "CurrentBuild"));
        assert_eq!(got.edition_id, hivexget(&path, "EditionID"));
        assert_eq!(got.major, hivexget_u32(&path, "CurrentMajorVersionNumber"));
        assert_eq!(got.minor, hivexget_u32(&path, "CurrentMinorVersionNumber"));
        assert_eq!(got.install_date, hivexget_u32(&path, "InstallDate").map(i64::from));
        // ...which are the ones written.
        let want = WindowsVersion {
            product_name: Some("Windows 10 Pro".into()),
            display_version: Some("22H2".into()),
            current_build: Some("19045".into()),
            edition_id: Some("Professional".into()),
            major: Some(10),
            minor: Some(0),
            install_date: Some(1_671_541_443),
        };
        assert_eq!(got, want);

        // Samba writes a data size (0x2000) past its one hbin; with the size put right, and in a
        // dirty hive (sequence numbers differ), the same is read.
        let mut strict = bytes.clone();
        set_header_u32(&mut strict, 0x28, (bytes.len() - 4096) as u32);
        assert_eq!(windows_version(&strict).as_ref(), Some(&want));
        let mut dirty = strict.clone();
        set_header_u32(&mut dirty, 8, 2);
        assert_eq!(windows_version(&dirty).as_ref(), Some(&want));

        let json = serde_json::to_value(&got).unwrap();
        assert_eq!(json["product_name"], "Windows 10 Pro");
        assert_eq!(json["install_date"], 1_671_541_443);
    }

    /// Windows 7: no DisplayVersion, CurrentBuild or version DWORDs; ReleaseId absent too.
    #[test]
    fn older_windows_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("SOFTWARE");
        let bytes = make_hive(
            &path,
            &[
                "ProductName=sz:Windows 7 Professional",
                "CurrentBuildNumber=sz:7601",
                "CurrentVersion=sz:6.1",
                "EditionID=sz:Professional",
                "InstallDate=dword:0x4d6c1a2b",
            ],
        );
        assert_eq!(hivexget(&path, "CurrentBuild"), None);
        assert_eq!(hivexget(&path, "CurrentBuildNumber").as_deref(), Some("7601"));
        let got = windows_version(&bytes).expect("a version");
        assert_eq!(
            got,
            WindowsVersion {
                product_name: hivexget(&path, "ProductName"),
                display_version: None,
                current_build: Some("7601".into()),
                edition_id: Some("Professional".into()),
                major: Some(6),
                minor: Some(1),
                install_date: Some(0x4d6c_1a2b),
            }
        );

        // Windows 10 1909: ReleaseId, no DisplayVersion.
        let path = dir.path().join("SOFTWARE-1909");
        let bytes = make_hive(&path, &["ReleaseId=sz:1909", "CurrentBuild=sz:18363"]);
        let got = windows_version(&bytes).expect("a version");
        assert_eq!(got.display_version, hivexget(&path, "ReleaseId"));
        assert_eq!(got.display_version.as_deref(), Some("1909"));
        assert_eq!(got.major, None);

        // A major DWORD without its minor does not borrow the string's "6.3".
        let bytes = make_hive(&path, &["CurrentVersion=sz:6.3", "CurrentMajorVersionNumber=dword:10"]);
        let got = windows_version(&bytes).expect("a version");
        assert_eq!((got.major, got.minor), (Some(10), None));
    }

    /// A value of the wrong type is not taken; a key with none of the values gives `None`.
    #[test]
    fn wrong_types_and_empty_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("SOFTWARE");
        let bytes = make_hive(&path, &["ProductName=dword:7", "InstallDate=sz:yesterday", "Other=sz:x"]);
        assert_eq!(hivexget_u32(&path, "ProductName"), Some(7));
        assert_eq!(windows_version(&bytes), None);
        let bytes = make_hive(&path, &[]);
        assert_eq!(windows_version(&bytes), None);
    }

    /// Sets the base block's u32 at `at` and its XOR checksum (at 0x1FC) to match.
    fn set_header_u32(hive: &mut [u8], at: usize, value: u32) {
        hive[at..at + 4].copy_from_slice(&value.to_le_bytes());
        let sum = hive[..0x1FC].chunks(4).fold(0u32, |x, w| x ^ u32::from_le_bytes(w.try_into().unwrap()));
        let sum = match sum {
            0 => 1,
            u32::MAX => u32::MAX - 1,
            s => s,
        };
        hive[0x1FC..0x200].copy_from_slice(&sum.to_le_bytes());
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let good = make_hive(&dir.path().join("SOFTWARE"), WIN10);
        assert!(windows_version(&good).is_some());

        // Truncated anywhere.
        for len in (0..good.len()).step_by(7).chain([4, 511, 4095, 4096, 4097, good.len() - 1]) {
            let _ = windows_version(&good[..len]);
        }
        assert_eq!(windows_version(&good[..4096]), None);

        // Random bytes, bare and behind a regf header.
        // proptest's seeded generator: the same bytes every run.
        use proptest::prelude::Rng;
        let mut rng = proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha);
        for round in 0..300 {
            let mut b: Vec<u8> = (0..(rng.next_u64() % 20_000) as usize).map(|_| rng.next_u64() as u8).collect();
            if round % 2 == 0 && b.len() >= 4 {
                b[..4].copy_from_slice(b"regf");
            }
            let _ = windows_version(&b);
            // The good hive's header with random cells.
            let mut b = good.clone();
            for x in &mut b[4096..] {
                *x = rng.next_u64() as u8;
            }
            let _ = windows_version(&b);
        }

        // Cell offsets out of range: the root cell offset, and every aligned word of the cells
        // in turn, set to values past the end, negative sizes, and u32::MAX.
        for root in [0x7FFF_FFF0u32, u32::MAX, 0xFFFF_FFF8, good.len() as u32, 3] {
            let mut b = good.clone();
            b[0x24..0x28].copy_from_slice(&root.to_le_bytes());
            assert_eq!(windows_version(&b), None, "root cell offset {root:#x}");
        }
        // The key nodes' list offsets: CurrentVersion's
        // values list and Microsoft's subkeys list, each pointing past the end or at u32::MAX.
        let nk = |name: &[u8]| {
            (0x4C..good.len() - name.len())
                .find(|&at| &good[at..at + name.len()] == name && &good[at - 0x4C..at - 0x4A] == b"nk")
                .map(|at| at - 0x4C)
                .unwrap_or_else(|| panic!("no key node {}", String::from_utf8_lossy(name)))
        };
        for (field, name) in [(0x28, &b"CurrentVersion"[..]), (0x1C, &b"Microsoft"[..])] {
            for word in [u32::MAX, 0x7FFF_FFF0, good.len() as u32] {
                let mut b = good.clone();
                let at = nk(name) + field;
                b[at..at + 4].copy_from_slice(&word.to_le_bytes());
                assert_eq!(windows_version(&b), None, "{} +{field:#x} = {word:#x}", String::from_utf8_lossy(name));
            }
        }
        for at in (4096..good.len()).step_by(4) {
            for word in [u32::MAX, 0x7FFF_FFF8, 0x8000_0000, good.len() as u32, 0xFFFF_0000, 0] {
                let mut b = good.clone();
                b[at..at + 4].copy_from_slice(&word.to_le_bytes());
                let _ = windows_version(&b);
            }
        }
    }
}
