//! `README.txt`: what each file of a case directory is, and how to check it without tapir.
//!
//! A case travels: it is copied to a USB stick, handed to an LEA, opened years later by someone
//! who never ran tapir. The README written beside the files names each one that is there (not
//! a list of what could be) and gives the verification as commands of common tools (openssl,
//! sha256sum, python3), so the signature and every digest can be checked by hand. It is
//! written before the manifest, so it is listed and signed like any other file.
//!
//! The text depends only on which files the directory holds: the same case makes the same
//! README. A LIID's README speaks of that LIID alone, as its manifest does, because the
//! directory may be handed to its LEA by itself.

use std::fs;
use std::io;
use std::path::Path;

use super::manifest::{MANIFEST, PUBLIC_KEY, SIGNATURE};

pub const README: &str = "README.txt";

/// What an entry of a case directory is, by its name; `None` for a name tapir does not write.
fn describe(name: &str, is_dir: bool, root: bool) -> Option<String> {
    let s = |t: &str| Some(t.to_string());
    match (name, is_dir) {
        ("iri.jsonl", false) => s("Intercept-related information (IRI), one JSON record a line in the order it was \
             recorded: `seq` numbers the lines, `event` says what a line is (warrant, association, \
             session-begin, session-end, object, and the protocols' own events: ftp, http, smtp, tls, \
             rtmp, rtsp, sip, vmi...), `ts` is the capture time (UTC), `cin` the communication \
             (session) a record belongs to, and `provenance` why the traffic was the target's."),
        ("cc.pcap", false) => s("Content of communication (CC): every frame selected for this LIID, as captured, \
             in capture order (pcap; open it with Wireshark or tshark)."),
        (n, false) if n.starts_with("cc-linktype-") && n.ends_with(".pcap") => {
            s("CC frames of a second link type (a pcap file holds one link type); read it with cc.pcap.")
        }
        ("objects.jsonl", false) => {
            s("One JSON line per rebuilt object (an uploaded file, a mail, a media stream, an \
             inspection report): its id, name, kind, size, digests (sha256, md5, sha512), format verdict, the \
             session (cin) it came from, and any holes in it (`gaps`, [offset, length] pairs).")
        }
        ("objects", true) => s("The objects' bytes, each file named by its SHA-256 (objects/<sha256>), as listed in \
             objects.jsonl. Bytes the capture lacked are zero-filled and listed as gaps."),
        ("damage.jsonl", false) => s("Damage in the captured input (cut or malformed packets) that may have hidden \
             traffic: `after` is the capture time reached, `what` the damage. Absent when there was none."),
        (MANIFEST, false) => s("Every file of this directory with its size and SHA-256 (README.txt included), and \
             `incomplete` with the reason when the case lacks part of its input."),
        (SIGNATURE, false) => s("An Ed25519 signature over the exact bytes of MANIFEST.json, and the public key that \
             made it (hex)."),
        (PUBLIC_KEY, false) => s("The public key of a key made for this case alone (hex). It proves the files are \
             unchanged since signing, not who signed: compare the key in MANIFEST.json.sig with the \
             operator's published key for that."),
        (README, false) => s("This file."),
        (_, true) if root => s("The case of one LIID: a directory of its own, with its own README.txt and signed \
             MANIFEST.json, so that it can be handed to its LEA alone."),
        _ => None,
    }
}

/// The README of case directory `dir`, for the files it holds now (the manifest's own files and
/// the README named whether or not they are written yet). `root` is the case root, whose
/// subdirectories are LIIDs.
pub fn text(dir: &Path, root: bool) -> io::Result<String> {
    let mut entries: Vec<(String, bool)> = fs::read_dir(dir)?
        .map(|e| {
            let e = e?;
            Ok((e.file_name().to_string_lossy().into_owned(), e.file_type()?.is_dir()))
        })
        .collect::<io::Result<_>>()?;
    for own in [README, MANIFEST, SIGNATURE] {
        if !entries.iter().any(|(n, _)| n == own) {
            entries.push((own.to_string(), false));
        }
    }
    entries.sort();
    let mut t = String::new();
    t.push_str(if root {
        "TAPIR CASE\n\nA case written by tapir, a lawful-interception system: what was intercepted under each\n\
         warrant, one directory per LIID (lawful interception identifier).\n"
    } else {
        "TAPIR CASE: ONE LIID\n\nWhat was intercepted under one warrant (this directory's name is its LIID).\n"
    });
    t.push_str("\nFILES\n");
    for (name, is_dir) in &entries {
        let shown = if *is_dir { format!("{name}/") } else { name.clone() };
        let what = describe(name, *is_dir, root).unwrap_or_else(|| "Not a file tapir writes.".into());
        t.push_str(&format!("\n{shown}\n"));
        t.push_str(&wrap(&what, 4, 92));
    }
    t.push_str(VERIFY);
    Ok(t)
}

/// Writes `dir`'s README (see [`text`]).
pub fn write(dir: &Path, root: bool) -> io::Result<()> {
    let t = text(dir, root)?;
    fs::write(dir.join(README), t)
}

/// `text` in lines of at most `width` columns, each indented by `indent`.
fn wrap(text: &str, indent: usize, width: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    let mut line = pad.clone();
    for word in text.split_whitespace() {
        if line.len() > indent && line.len() + 1 + word.len() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = pad.clone();
        }
        if line.len() > indent {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

const VERIFY: &str = r#"
HOW TO VERIFY

With tapir:

    tapir verify THIS_DIRECTORY [--public-key OPERATOR_KEY.pub]

It checks the signature, every file's SHA-256, and that no file was added; with the
operator's public key, also who signed.

By hand, in this directory (openssl 3, xxd, python3, sha256sum):

1. The signature over MANIFEST.json. The Ed25519 key in MANIFEST.json.sig, given the
   standard DER prefix, is read by openssl; the command prints "Signature Verified
   Successfully":

    key=$(python3 -c 'import json;print(json.load(open("MANIFEST.json.sig"))["public_key"])')
    python3 -c 'import json;print(json.load(open("MANIFEST.json.sig"))["signature"])' \
        | xxd -r -p > /tmp/manifest.sig
    printf '302a300506032b6570032100%s' "$key" | xxd -r -p \
        | openssl pkey -pubin -inform DER -out /tmp/signer.pem
    openssl pkeyutl -verify -pubin -inkey /tmp/signer.pem -rawin \
        -in MANIFEST.json -sigfile /tmp/manifest.sig

   Compare $key with the operator's published key: a key in signing-key.pub was made for
   this case alone.

2. Every file's digest, as the signed manifest lists it (sha256sum prints one OK a file):

    python3 -c 'import json;[print(f["sha256"]+"  "+f["path"]) for f in json.load(open("MANIFEST.json"))["files"]]' \
        | sha256sum -c

3. No file added: every file here but MANIFEST.json and MANIFEST.json.sig is in the
   manifest (the command prints nothing):

    diff <(find . -type f ! -path ./MANIFEST.json ! -path ./MANIFEST.json.sig | sed 's|^\./||' | sort) \
         <(python3 -c 'import json;[print(f["path"]) for f in json.load(open("MANIFEST.json"))["files"]]' | sort)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_names_what_is_there_and_only_that() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("objects")).unwrap();
        fs::write(d.path().join("iri.jsonl"), "").unwrap();
        fs::write(d.path().join("cc-linktype-113.pcap"), "").unwrap();
        fs::write(d.path().join("odd"), "").unwrap();
        let t = text(d.path(), false).unwrap();
        for name in ["\niri.jsonl\n", "\nobjects/\n", "\ncc-linktype-113.pcap\n", "\nREADME.txt\n", "\nMANIFEST.json\n"]
        {
            assert!(t.contains(name), "{name} in {t}");
        }
        assert!(!t.contains("\ncc.pcap\n") && !t.contains("\ndamage.jsonl\n"), "{t}");
        assert!(t.contains("\nodd\n    Not a file tapir writes.\n"), "{t}");
        assert!(t.lines().all(|l| l.len() <= 120), "{t}");
    }
}
