//! The outputs of a run, one type for `tapir replay` and `tapir run`: the case, written on a
//! thread of its own, and delivery to the LEAs, when any is configured, on another.
//!
//! Both commands close it the same way, in this order: the case's last records written and its
//! files listed, the damage of the input noted beside them, the manifests signed; only then
//! does the run wait for the LEAs to confirm ([`Closed::delivery`]), so that however long they
//! take the evidence is finished and signed.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use super::case::{CaseTotals, CaseWriter};
use super::handover::Delivery;
use super::manifest::{self, ManifestError, SigningKey};
use super::threaded::Threaded;
use super::x2x3::forward::Forward;
use super::Both;
use crate::record::{Liid, Record, RecordSink};

/// Why the outputs could not be made or closed.
#[derive(Debug, thiserror::Error)]
pub enum OutputsError {
    /// The case directory could not be made (it exists and is not empty, or no permission).
    #[error("creating case {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    /// The case writer's thread panicked: what it held is lost, the case is not signed.
    #[error("the case writer thread panicked; case {} is not signed", path.display())]
    Panicked { path: PathBuf },
    /// Writing the case's last bytes, its listing or its damage failed.
    #[error("writing case {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("signing case {}: {source}", path.display())]
    Sign { path: PathBuf, source: ManifestError },
}

/// The case and, if configured, delivery: records written to it go to both. A POI's instead
/// forwards every record to its MDF, and writes no case.
pub struct Outputs {
    root: PathBuf,
    case: Option<Threaded<CaseWriter>>,
    delivery: Option<Threaded<Delivery>>,
    forward: Option<Threaded<Forward>>,
}

/// A closed case.
pub struct Closed {
    /// What each LIID's case holds.
    pub totals: HashMap<Liid, CaseTotals>,
    /// Files the root manifest lists.
    pub signed: usize,
    /// Delivery, still running: the caller finishes it with the wait it allows
    /// ([`Delivery::finish`]), after the case was signed.
    pub delivery: Option<Threaded<Delivery>>,
    /// A POI's forwarding, still running: finished as delivery is ([`Forward::finish`]).
    pub forward: Option<Threaded<Forward>>,
}

impl Outputs {
    /// Creates the case at `root` (which must not exist or be empty) and starts its writer.
    pub fn create(root: &Path) -> Result<Outputs, OutputsError> {
        let case = CaseWriter::create(root).map_err(|source| OutputsError::Create { path: root.into(), source })?;
        Ok(Outputs { root: root.to_path_buf(), case: Some(Threaded::spawn(case)), delivery: None, forward: None })
    }

    /// A POI's outputs: every record to `forward`, no case (`root` names the spool in messages).
    pub fn forward_only(root: &Path, forward: Forward) -> Outputs {
        Outputs { root: root.to_path_buf(), case: None, delivery: None, forward: Some(Threaded::spawn(forward)) }
    }

    /// Where the case is written.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Delivers to `delivery` from the next record on (a daemon's reload that changed the LEAs
    /// or their routes); the delivery it replaces is handed back, for the caller to finish.
    pub fn deliver_to(&mut self, delivery: Option<Threaded<Delivery>>) -> Option<Threaded<Delivery>> {
        std::mem::replace(&mut self.delivery, delivery)
    }

    /// Hands what is gathered on and waits until the delivery has taken every record so far
    /// (numbered them and appended their PDUs to its spools). `false`: its thread is gone.
    pub fn wait_delivery_taken(&mut self) -> bool {
        self.delivery.as_mut().is_none_or(Threaded::wait_taken)
    }

    /// Whether records are delivered as well as written.
    pub fn delivers(&self) -> bool {
        self.delivery.is_some()
    }

    /// Hands what is gathered to the output threads now (a live daemon's timer: a quiet
    /// target's records reach the case and the LEA within a fraction of a second).
    pub fn flush(&mut self) {
        if let Some(c) = &mut self.case {
            c.flush();
        }
        if let Some(f) = &mut self.forward {
            f.flush();
        }
        if let Some(d) = &mut self.delivery {
            d.flush();
        }
    }

    /// Closes the case: writes what is pending, notes `damage` (the input's damaged regions),
    /// signs the manifests with `key` at `now`, marked incomplete with `incomplete`'s reason if
    /// the input was not read to its end. Delivery is handed back still running.
    pub fn close<D: serde::Serialize>(
        self,
        damage: &[D],
        key: &SigningKey,
        now: &str,
        incomplete: Option<&str>,
    ) -> Result<Closed, OutputsError> {
        let Outputs { root, case, delivery, forward } = self;
        let Some(case) = case else {
            return Ok(Closed { totals: HashMap::new(), signed: 0, delivery, forward });
        };
        let case = case.finish().map_err(|_| OutputsError::Panicked { path: root.clone() })?;
        let write = |source| OutputsError::Write { path: root.clone(), source };
        let (totals, written) = case.finish().map_err(write)?;
        super::case::write_damage(&root, damage).map_err(write)?;
        let signed = manifest::write_case(&root, key, now, &written, incomplete)
            .map_err(|source| OutputsError::Sign { path: root.clone(), source })?;
        Ok(Closed { totals, signed, delivery, forward })
    }
}

impl RecordSink for Outputs {
    fn record(&mut self, rec: Record<'_>) {
        let second = self.delivery.as_mut().map(|d| d as &mut dyn RecordSink);
        match (&mut self.case, &mut self.forward) {
            (Some(case), _) => Both { first: case, second }.record(rec),
            (None, Some(f)) => f.record(rec),
            (None, None) => {}
        }
    }
}
