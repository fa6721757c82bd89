//! Who a packet belongs to, and why.
//!
//! Warrants (`warrant.rs`) name targets; identity-association events from the cloud control
//! plane (`association.rs`) turn cloud identifiers (subscriber, VM, image) into packet selectors
//! (addresses, MACs, VNI + address) with a validity and a provenance; `table.rs` answers, for a
//! decoded packet at time `now`, which LIIDs it belongs to.
//!
//! Minimisation starts here: a packet without a [`Match`] is dropped by the caller right after
//! selection and nothing of it is kept.

use std::sync::Arc;

/// A Lawful Interception IDentifier: 1..25 printable characters, unique per warrant.
pub type Liid = Arc<str>;

/// What a warrant asks to be delivered.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    #[serde(rename = "iri+cc")]
    IriAndCc,
    Iri,
    Cc,
}

impl Scope {
    pub fn iri(self) -> bool {
        matches!(self, Scope::IriAndCc | Scope::Iri)
    }
    pub fn cc(self) -> bool {
        matches!(self, Scope::IriAndCc | Scope::Cc)
    }
}

/// Why a selector exists: the warrant's target identifier and the chain of association events
/// that led from it to this selector, oldest first. Written with every record it produced.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Provenance {
    /// The packet selector, e.g. `ipv4:10.0.0.5` or `vni:5001/10.0.0.5`.
    pub selector: String,
    /// The warrant target it derives from, e.g. `subscriber:joe`.
    pub target: String,
    /// Human-readable steps, e.g. `2026-03-01T10:00:00Z instance.start vm-42 (owner ann) from image img-9`.
    pub chain: Vec<String>,
}

/// One warrant's claim on a packet.
#[derive(Clone, Debug)]
pub struct Match {
    pub liid: Liid,
    pub scope: Scope,
    pub provenance: Arc<Provenance>,
}

pub mod association;
pub mod feed;
pub mod lifecycle;
pub mod radius;
pub mod table;
pub mod warrant;

pub use association::{load_events, parse_event, parse_events, AssocEvent, AssocEventKind, EventError, Port};
pub use table::{AssocChange, Targeting};
pub use warrant::{load_warrants, parse_warrants, TargetId, Warrant, WarrantError, Warrants};
