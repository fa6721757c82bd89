//! Flow table and TCP reassembly.
//!
//! One [`FlowTable`] per worker (share-nothing): it keys target packets by (LIID, overlay zone,
//! protocol, endpoint pair), numbers sessions (CIN, per LIID), emits the session IRI and the CC
//! of every packet, reassembles both directions of TCP connections ([`tcp`]) and drives a
//! [`StreamAnalyzer`](crate::analyze::StreamAnalyzer) per connection. Only what the receiver
//! accepted goes into a stream ([`evidence`]); where the wire disagreed with itself is reported.

pub mod evidence;
pub mod table;
pub mod tcp;

pub use table::{AnalyzerFactory, EndedCounts, FlowConfig, FlowStats, FlowTable};
pub use tcp::{Assembler, Budget, Conflict, Event, ReassemblyStats};
