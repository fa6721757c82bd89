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

pub use crate::record::{Liid, Provenance, Scope};

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

pub use association::{
    load_events, parse_event, parse_events, AssocEvent, AssocEventKind, EventError, EventFile, EventStream, Port,
};
pub use table::{AssocChange, Targeting};
pub use warrant::{load_warrants, parse_warrants, TargetId, Warrant, WarrantError, Warrants};
