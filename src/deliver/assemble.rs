//! Objects made of other objects: an S3 multipart upload's parts joined into the object the
//! client completed.
//!
//! The parts may come over several connections, in any order, and the completion names them
//! only by number; the core stores each part as its own object (`context.s3`) and the completion
//! as an HTTP IRI listing the parts in order. The bytes are in the case, so the case writer joins
//! them at the end of the run, hashing as it copies: nothing is held in memory.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use ring::digest;

use crate::analyze::http::S3Complete;
use crate::record::{IriRecord, Liid, ObjectRecord};
use crate::timestamp::Timestamp;

/// A stored part: where its bytes are and its record (the template for the joined object).
struct Part {
    path: PathBuf,
    record: ObjectRecord,
}

/// Parts and completions seen so far, per (LIID, upload id).
#[derive(Default)]
pub struct S3Uploads {
    parts: HashMap<(Liid, String), BTreeMap<u32, Part>>,
    completed: Vec<(Liid, S3Complete, Timestamp)>,
}

/// A joined object, ready to be listed.
pub struct Joined {
    pub liid: Liid,
    /// The file to rename to `objects/<sha256>`.
    pub path: PathBuf,
    pub record: ObjectRecord,
}

impl S3Uploads {
    /// Notes a finished object that is an S3 part (stored at `path`).
    pub fn object(&mut self, r: &ObjectRecord, path: &Path) {
        let s3 = &r.meta.context["s3"];
        let (Some(upload), Some(n)) = (s3["upload_id"].as_str(), s3["part_number"].as_u64()) else { return };
        let Ok(n) = u32::try_from(n) else { return };
        self.parts
            .entry((r.liid.clone(), upload.to_string()))
            .or_default()
            .insert(n, Part { path: path.to_path_buf(), record: r.clone() });
    }

    /// Notes an HTTP IRI; keeps it if it completes a multipart upload.
    pub fn iri(&mut self, r: &IriRecord) {
        if let Some(h) = r.event.app::<crate::analyze::http::HttpEvent>() {
            if let Some(c) = &h.s3_complete {
                self.completed.push((r.liid.clone(), c.clone(), r.ts));
            }
        }
    }

    /// Joins every completed upload whose parts are all in the case, writing each into
    /// `scratch(liid)`, numbered after `max_id[liid]` (the highest object id of the LIID).
    /// Uploads with a part missing are counted in the second value.
    pub fn join(
        &mut self,
        scratch: impl Fn(&Liid) -> PathBuf,
        max_id: &mut HashMap<Liid, u64>,
    ) -> io::Result<(Vec<Joined>, u64)> {
        let mut out = Vec::new();
        let mut incomplete = 0;
        for (liid, c, ts) in std::mem::take(&mut self.completed) {
            let Some(stored) = self.parts.get(&(liid.clone(), c.upload_id.clone())) else {
                incomplete += 1;
                continue;
            };
            let parts: Option<Vec<&Part>> = c.parts.iter().map(|p| stored.get(&p.part_number)).collect();
            let Some(parts) = parts.filter(|p| !p.is_empty()) else {
                incomplete += 1;
                continue;
            };
            let id = max_id.entry(liid.clone()).or_insert(0);
            *id += 1;
            let id = *id;
            let path = scratch(&liid).join(format!("s3-{id}"));
            let mut w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
            let mut sha256 = digest::Context::new(&digest::SHA256);
            let mut sha512 = digest::Context::new(&digest::SHA512);
            let mut md5 = Md5::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut size = 0u64;
            for p in &parts {
                let mut f = File::open(&p.path)?;
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    sha256.update(&buf[..n]);
                    sha512.update(&buf[..n]);
                    md5.update(&buf[..n]);
                    w.write_all(&buf[..n])?;
                    size += n as u64;
                }
            }
            w.flush()?;
            w.get_ref().sync_all()?;
            let first = &parts[0].record;
            let mut record = first.clone();
            record.id = id;
            record.sha256 = hex::encode(sha256.finish().as_ref());
            // The whole is an S3 object (its MD5 kept, as its parts'), and a disk image if its
            // first part, whose head is the whole's, was taken for one (its SHA-512 kept).
            record.sha512 = first.sha512.is_some().then(|| hex::encode(sha512.finish().as_ref()));
            record.md5 = Some(hex::encode(md5.finalize()));
            record.size = size;
            record.gaps = Vec::new();
            record.complete = parts.iter().all(|p| p.record.complete);
            record.format = None;
            record.last_seen = ts;
            record.meta.declared_size = None;
            record.meta.parent = None;
            let s3 = &first.meta.context["s3"];
            record.meta.name = s3["key"].as_str().map(|k| k.rsplit('/').next().unwrap_or(k).to_string());
            record.meta.context = serde_json::json!({
                "s3": { "bucket": s3["bucket"], "key": s3["key"], "upload_id": c.upload_id },
                "assembled_from": parts.iter().map(|p| serde_json::json!({
                    "part_number": p.record.meta.context["s3"]["part_number"],
                    "id": p.record.id,
                    "sha256": p.record.sha256,
                    "size": p.record.size,
                })).collect::<Vec<_>>(),
            });
            out.push(Joined { liid, path, record });
        }
        Ok((out, incomplete))
    }
}

/// Removes a scratch file left by a failed join.
pub fn discard(path: &Path) {
    let _ = fs::remove_file(path);
}
