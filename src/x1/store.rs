//! Crash-safe persistence of the X1 state: one JSON snapshot, replaced atomically.
//!
//! Every change writes the whole state to `x1-state.json.tmp`, fsyncs it, renames it over
//! `x1-state.json` and fsyncs the directory. A crash leaves either the old or the new snapshot;
//! a torn `.tmp` left by a crash is ignored (and removed) at open. The state is small (tasks and
//! destinations, not traffic), so a full rewrite per change is cheaper than a journal's replay
//! and compaction logic. This is the only file I/O of the X1 core.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::X1Error;

pub const STATE_FILE: &str = "x1-state.json";
pub const TEMP_FILE: &str = "x1-state.json.tmp";

/// The directory holding the snapshot.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

fn io_err(path: &Path, source: std::io::Error) -> X1Error {
    X1Error::Io { path: path.display().to_string(), source }
}

impl Store {
    /// Opens (creating) `dir`; returns the last committed snapshot, if any.
    pub fn open(dir: &Path) -> Result<(Store, Option<Vec<u8>>), X1Error> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let tmp = dir.join(TEMP_FILE);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&tmp, e)),
        }
        let path = dir.join(STATE_FILE);
        let snapshot = match fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&path, e)),
        };
        Ok((Store { dir: dir.to_path_buf() }, snapshot))
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Atomically replaces the snapshot with `bytes`; durable when this returns `Ok`.
    pub fn save(&self, bytes: &[u8]) -> Result<(), X1Error> {
        let tmp = self.dir.join(TEMP_FILE);
        let path = self.state_path();
        let mut f =
            OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        // The rename is only durable once the directory entry is.
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| io_err(&self.dir, e))?;
        Ok(())
    }
}
