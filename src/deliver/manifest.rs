//! The signed manifest of a case directory.
//!
//! `MANIFEST.json` lists every file of the case with its size and SHA-256. `MANIFEST.json.sig`
//! holds an Ed25519 signature over the exact bytes of `MANIFEST.json` and the public key that made
//! it. Signing the bytes (not a re-serialisation) means a verifier needs no canonical JSON.
//!
//! The key is the operator's (given by path) or, when none is given, an ephemeral one made for
//! this case whose public key is also written to `signing-key.pub`. An ephemeral key proves only
//! that the case is unchanged since it was signed, not who signed it: a verifier that has the
//! operator's public key passes it to [`verify`] to check the signer too.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

pub const MANIFEST: &str = "MANIFEST.json";
pub const SIGNATURE: &str = "MANIFEST.json.sig";
pub const PUBLIC_KEY: &str = "signing-key.pub";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not an Ed25519 key (expected a PKCS#8 document as written by `tapir keygen`, or a 32-byte seed, raw or hex)")]
    BadKey { path: PathBuf },
    #[error("{0} is not valid: {1}")]
    BadJson(String, String),
    #[error("the signature over {MANIFEST} does not verify with the key {key}")]
    BadSignature { key: String },
    #[error("the case was signed by key {found}, not by the expected key {expected}")]
    WrongSigner { found: String, expected: String },
    #[error("{path}: listed with SHA-256 {expected} but the file has {found}")]
    Modified { path: String, expected: String, found: String },
    #[error("{path}: listed in the manifest but missing")]
    Missing { path: String },
    #[error("{path}: present in the case but not in the manifest")]
    Unlisted { path: String },
    #[error("{path}: a path in the manifest points outside the case")]
    BadPath { path: String },
    #[error("{path}: a symbolic link in the case (a case holds files and directories only)")]
    Symlink { path: String },
    #[error("{path}/: a directory with no file the manifest lists")]
    UnlistedDir { path: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ManifestError + '_ {
    move |source| ManifestError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub tool: String,
    pub created: String,
    /// Why the case does not hold everything its input had (a replay interrupted by SIGINT or
    /// SIGTERM): it is signed all the same, and says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SignatureFile {
    pub algorithm: String,
    /// Hex of the 32-byte Ed25519 public key.
    pub public_key: String,
    /// Hex of the 64-byte signature over the bytes of MANIFEST.json.
    pub signature: String,
}

/// An Ed25519 signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pub ephemeral: bool,
}

impl SigningKey {
    /// Loads a key: PKCS#8 (DER, as `tapir keygen` writes), or a 32-byte seed (raw or hex).
    pub fn load(path: &Path) -> Result<SigningKey, ManifestError> {
        let bytes = fs::read(path).map_err(io_err(path))?;
        let bad = || ManifestError::BadKey { path: path.to_path_buf() };
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&bytes) {
            return Ok(SigningKey { pair, ephemeral: false });
        }
        let seed = if bytes.len() == 32 {
            bytes
        } else {
            let text = std::str::from_utf8(&bytes).map_err(|_| bad())?.trim();
            hex::decode(text).map_err(|_| bad())?
        };
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| bad())?;
        Ok(SigningKey { pair, ephemeral: false })
    }

    /// A fresh key for one case.
    pub fn ephemeral() -> SigningKey {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("system randomness");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key ring just made");
        SigningKey { pair, ephemeral: true }
    }

    /// Writes a new PKCS#8 key to `path` (mode 0600) and its public key in hex to `path` + `.pub`
    /// (`lea.key` -> `lea.key.pub`), which `tapir verify --public-key`, `tapir audit verify
    /// --key` and `tapir lemf --verify-key` all read.
    pub fn generate_to(path: &Path) -> Result<String, ManifestError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("system randomness");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key ring just made");
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).map_err(io_err(path))?;
        io::Write::write_all(&mut f, pkcs8.as_ref()).map_err(io_err(path))?;
        let public = hex::encode(pair.public_key().as_ref());
        let pub_path = public_key_path(path);
        fs::write(&pub_path, format!("{public}\n")).map_err(io_err(&pub_path))?;
        Ok(public)
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    /// An Ed25519 signature over `msg` (64 bytes); used by other signed records (the audit log).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }
}

/// Where `tapir keygen KEY` puts the public key: `KEY.pub`.
pub fn public_key_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

fn sha256_file(path: &Path) -> io::Result<(u64, String)> {
    let mut f = fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        ctx.update(&buf[..n]);
    }
    Ok((size, hex::encode(ctx.finish().as_ref())))
}

/// Every regular file below `root`, as `/`-separated relative paths, sorted (the manifest's own
/// files excluded), and every directory below it. A symbolic link is an error: a link in place
/// of a listed file would verify with the bytes it points to.
fn list_files(root: &Path) -> Result<(Vec<String>, Vec<String>), ManifestError> {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let mut stack = vec![root.to_path_buf()];
    let rel_of = |path: &Path| {
        let rel = path.strip_prefix(root).expect("below root");
        rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
    };
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(io_err(&path))?;
            if ft.is_symlink() {
                return Err(ManifestError::Symlink { path: rel_of(&path) });
            } else if ft.is_dir() {
                dirs.push(rel_of(&path));
                stack.push(path);
            } else {
                let rel = rel_of(&path);
                if rel != MANIFEST && rel != SIGNATURE {
                    files.push(rel);
                }
            }
        }
    }
    files.sort();
    dirs.sort();
    Ok((files, dirs))
}

/// Writes the signed manifest over every file of the case. `known` holds (size, SHA-256) of files
/// whose hash was computed while they were written (the case writer's); every other file is
/// hashed here. `now` is the creation time to record.
pub fn write(
    root: &Path,
    key: &SigningKey,
    now: &str,
    known: &std::collections::BTreeMap<String, (u64, String)>,
) -> Result<usize, ManifestError> {
    write_marked(root, key, now, known, None, true)
}

/// [`write`], the manifest saying why the case is `incomplete` if it is. `case_root` tells
/// the README ([`super::readme`]) whether the directory's subdirectories are LIIDs.
fn write_marked(
    root: &Path,
    key: &SigningKey,
    now: &str,
    known: &std::collections::BTreeMap<String, (u64, String)>,
    incomplete: Option<&str>,
    case_root: bool,
) -> Result<usize, ManifestError> {
    if key.ephemeral {
        let p = root.join(PUBLIC_KEY);
        fs::write(&p, format!("{}\n", key.public_hex())).map_err(io_err(&p))?;
    }
    // Written last before listing, so it names every file the manifest will list and is
    // signed with them.
    super::readme::write(root, case_root).map_err(io_err(&root.join(super::readme::README)))?;
    let mut files = Vec::new();
    for rel in list_files(root)?.0 {
        let p = root.join(&rel);
        let (size, sha256) = match known.get(&rel) {
            Some((size, sha)) => (*size, sha.clone()),
            None => sha256_file(&p).map_err(io_err(&p))?,
        };
        files.push(FileEntry { path: rel, size, sha256 });
    }
    let n = files.len();
    let manifest = Manifest {
        format: "tapir-case/1".into(),
        tool: format!("tapir {}", env!("CARGO_PKG_VERSION")),
        created: now.into(),
        incomplete: incomplete.map(str::to_string),
        files,
    };
    let mut bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| ManifestError::BadJson(MANIFEST.into(), e.to_string()))?;
    bytes.push(b'\n');
    let sig = key.pair.sign(&bytes);
    let sigfile = SignatureFile {
        algorithm: "ed25519".into(),
        public_key: key.public_hex(),
        signature: hex::encode(sig.as_ref()),
    };
    let mp = root.join(MANIFEST);
    fs::write(&mp, &bytes).map_err(io_err(&mp))?;
    let sp = root.join(SIGNATURE);
    let sigbytes =
        serde_json::to_vec_pretty(&sigfile).map_err(|e| ManifestError::BadJson(SIGNATURE.into(), e.to_string()))?;
    fs::write(&sp, sigbytes).map_err(io_err(&sp))?;
    Ok(n)
}

/// Signs a whole case: each LIID's directory gets a manifest of its own (so that it can be
/// handed to its LEA alone, and says nothing of any other LIID), then the case root one over
/// everything, those included. `incomplete` says why the case lacks part of its input, if it
/// does. Returns the number of files the root manifest lists.
pub fn write_case(
    root: &Path,
    key: &SigningKey,
    now: &str,
    known: &std::collections::BTreeMap<String, (u64, String)>,
    incomplete: Option<&str>,
) -> Result<usize, ManifestError> {
    let mut dirs = Vec::new();
    for entry in fs::read_dir(root).map_err(io_err(root))? {
        let entry = entry.map_err(io_err(root))?;
        if entry.file_type().map_err(io_err(&entry.path()))?.is_dir() {
            dirs.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    dirs.sort();
    for dir in dirs {
        let prefix = format!("{dir}/");
        let sub: std::collections::BTreeMap<String, (u64, String)> = known
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|rest| (rest.to_string(), v.clone())))
            .collect();
        write_marked(&root.join(&dir), key, now, &sub, incomplete, false)?;
    }
    write_marked(root, key, now, known, incomplete, true)
}

/// What `verify` established.
#[derive(Debug)]
pub struct Verified {
    pub files: usize,
    pub signer: String,
    /// True when the signer was checked against a key the caller trusts.
    pub signer_trusted: bool,
    /// The manifest's own statement that the case is incomplete, and why.
    pub incomplete: Option<String>,
    /// Each listed file's SHA-256 (path -> hex), as checked: what [`verify_known`] takes for a
    /// directory below, so that it is neither hashed nor its manifest read a second time.
    pub digests: std::collections::HashMap<String, String>,
}

/// Checks the signature, then every listed file's hash, then that no file is unlisted. Stops at
/// the first problem and names it.
pub fn verify(root: &Path, trusted_public_hex: Option<&str>) -> Result<Verified, ManifestError> {
    verify_known(root, trusted_public_hex, &std::collections::HashMap::new())
}

/// [`verify`], taking the SHA-256 of the files in `known` (path relative to `root` -> hex) as
/// given instead of reading them again: digests an enclosing directory's manifest, just
/// verified, listed for the same bytes. A LIID directory of a verified case is so checked at
/// the cost of its signature and listing, not of hashing its capture a second time.
pub fn verify_known(
    root: &Path,
    trusted_public_hex: Option<&str>,
    known: &std::collections::HashMap<String, String>,
) -> Result<Verified, ManifestError> {
    let mp = root.join(MANIFEST);
    let bytes = fs::read(&mp).map_err(io_err(&mp))?;
    let sp = root.join(SIGNATURE);
    let sigbytes = fs::read(&sp).map_err(io_err(&sp))?;
    let sigfile: SignatureFile =
        serde_json::from_slice(&sigbytes).map_err(|e| ManifestError::BadJson(SIGNATURE.into(), e.to_string()))?;
    if let Some(expected) = trusted_public_hex {
        if !expected.trim().eq_ignore_ascii_case(&sigfile.public_key) {
            return Err(ManifestError::WrongSigner { found: sigfile.public_key, expected: expected.trim().into() });
        }
    }
    let bad_sig = || ManifestError::BadSignature { key: sigfile.public_key.clone() };
    let public = hex::decode(&sigfile.public_key).map_err(|_| bad_sig())?;
    let sig = hex::decode(&sigfile.signature).map_err(|_| bad_sig())?;
    signature::UnparsedPublicKey::new(&signature::ED25519, &public).verify(&bytes, &sig).map_err(|_| bad_sig())?;

    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| ManifestError::BadJson(MANIFEST.into(), e.to_string()))?;
    for entry in &manifest.files {
        if entry.path.split('/').any(|c| c.is_empty() || c == "." || c == "..") || entry.path.starts_with('/') {
            return Err(ManifestError::BadPath { path: entry.path.clone() });
        }
        let p = root.join(&entry.path);
        if !p.is_file() {
            return Err(ManifestError::Missing { path: entry.path.clone() });
        }
        let sha256 = match known.get(&entry.path) {
            Some(sha256) => sha256.clone(),
            None => sha256_file(&p).map_err(io_err(&p))?.1,
        };
        if sha256 != entry.sha256 {
            return Err(ManifestError::Modified {
                path: entry.path.clone(),
                expected: entry.sha256.clone(),
                found: sha256,
            });
        }
    }
    let listed: std::collections::HashSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    let (files, dirs) = list_files(root)?;
    for rel in files {
        if !listed.contains(rel.as_str()) {
            return Err(ManifestError::Unlisted { path: rel });
        }
    }
    // A directory holds a listed file somewhere below it, or it was added (or emptied).
    let mut holding: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for f in &manifest.files {
        let mut p = f.path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            if !holding.insert(parent) {
                break;
            }
            p = parent;
        }
    }
    if let Some(d) = dirs.into_iter().find(|d| !holding.contains(d.as_str())) {
        return Err(ManifestError::UnlistedDir { path: d });
    }
    Ok(Verified {
        files: manifest.files.len(),
        signer: sigfile.public_key,
        signer_trusted: trusted_public_hex.is_some(),
        incomplete: manifest.incomplete,
        digests: manifest.files.into_iter().map(|f| (f.path, f.sha256)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("L1/objects")).unwrap();
        fs::write(d.path().join("L1/iri.jsonl"), b"{\"a\":1}\n").unwrap();
        fs::write(d.path().join("L1/objects/abc"), b"hello").unwrap();
        d
    }

    #[test]
    fn signed_case_verifies_and_lists_hashes_of_the_bytes() {
        let d = case();
        let key = SigningKey::ephemeral();
        // iri.jsonl, abc, the ephemeral key's public half and the README.
        assert_eq!(write(d.path(), &key, "2026-01-01T00:00:00Z", &Default::default()).unwrap(), 4);
        let v = verify(d.path(), None).unwrap();
        assert_eq!(v.files, 4);
        let m: Manifest = serde_json::from_slice(&fs::read(d.path().join(MANIFEST)).unwrap()).unwrap();
        let hello = m.files.iter().find(|f| f.path == "L1/objects/abc").unwrap();
        // sha256("hello"), from sha256sum.
        assert_eq!(hello.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert!(verify(d.path(), Some(&key.public_hex())).is_ok());
    }

    #[test]
    fn tampering_is_named() {
        let d = case();
        let key = SigningKey::ephemeral();
        write(d.path(), &key, "t", &Default::default()).unwrap();
        fs::write(d.path().join("L1/objects/abc"), b"hellO").unwrap();
        assert!(
            matches!(verify(d.path(), None), Err(ManifestError::Modified { path, .. }) if path == "L1/objects/abc")
        );
        fs::write(d.path().join("L1/objects/abc"), b"hello").unwrap();
        fs::write(d.path().join("L1/extra"), b"x").unwrap();
        assert!(matches!(verify(d.path(), None), Err(ManifestError::Unlisted { path }) if path == "L1/extra"));
        fs::remove_file(d.path().join("L1/extra")).unwrap();
        fs::remove_file(d.path().join("L1/iri.jsonl")).unwrap();
        assert!(matches!(verify(d.path(), None), Err(ManifestError::Missing { .. })));
    }

    #[test]
    fn an_edited_manifest_or_another_signer_is_refused() {
        let d = case();
        let key = SigningKey::ephemeral();
        write(d.path(), &key, "t", &Default::default()).unwrap();
        let other = SigningKey::ephemeral();
        assert!(matches!(verify(d.path(), Some(&other.public_hex())), Err(ManifestError::WrongSigner { .. })));
        let mp = d.path().join(MANIFEST);
        let text = fs::read_to_string(&mp).unwrap().replace("\"t\"", "\"u\"");
        fs::write(&mp, text).unwrap();
        assert!(matches!(verify(d.path(), None), Err(ManifestError::BadSignature { .. })));
    }

    #[test]
    fn keys_load_from_pkcs8_and_hex_seed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        let public = SigningKey::generate_to(&p).unwrap();
        assert_eq!(SigningKey::load(&p).unwrap().public_hex(), public);
        let seed = d.path().join("seed");
        fs::write(&seed, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60\n").unwrap();
        // RFC 8032 test 1: this seed's public key.
        assert_eq!(
            SigningKey::load(&seed).unwrap().public_hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        fs::write(&seed, "nonsense").unwrap();
        assert!(matches!(SigningKey::load(&seed), Err(ManifestError::BadKey { .. })));
    }
}
