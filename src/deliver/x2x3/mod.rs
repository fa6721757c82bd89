//! X2/X3 (ETSI TS 103 221-2): how a capture node (POI) hands what it intercepts to a mediation
//! node (MDF) that encodes and delivers it to the LEAs: X2 carries each IRI record as the JSON
//! the case writer writes, X3 the content. [`events`] rebuilds an application event, typed,
//! from that JSON, for the MDF's HI2 encoder to find its protocol's type again.

pub mod events;
