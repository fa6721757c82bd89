//! tapir: a lawful-interception appliance.
//!
//! Data flows one way through the modules, in this order:
//! `capture -> decode -> select -> flow -> analyze -> content -> record -> deliver`.
//! A module never calls back up this chain. The core (everything but `capture` and `deliver`)
//! does no I/O and never reads the clock: it is handed bytes and `now`.
//!
//! [`record`] is also the ground floor of the imports: the vocabulary every stage shares (LIID,
//! CIN, provenance, flows, the records and their sinks, the scope gate) imports nothing of tapir
//! but [`timestamp`], and no module imports itself through others (`tests/layering.rs`).
//!
//! [`vmi`] stands beside the chain: it inspects finished objects (VM images a target uploaded)
//! and is given their bytes, never packets.
#![deny(unsafe_code)]

pub mod analyze;
pub mod audit;
pub mod capture;
pub mod content;
pub mod daemon;
pub mod decode;
pub mod deliver;
pub mod flow;
pub mod fuzzing;
pub mod lemf;
pub mod media;
pub mod metrics;
pub mod pipeline;
pub mod privs;
pub mod record;
pub mod report;
pub mod select;
pub mod timestamp;
pub mod vmi;
pub mod x1;
