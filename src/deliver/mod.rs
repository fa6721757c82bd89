//! Outputs: everything that takes [`Record`](crate::record::Record)s and puts them somewhere.
//!
//! - [`case`]: the case directory an analyst reads offline (IRI JSON lines, CC pcap, content
//!   objects by hash).
//! - [`manifest`]: the signed manifest over a case, and its verification.
//! - [`pcap`]: a minimal pcap writer for CC.

pub mod case;
pub mod manifest;
pub mod pcap;
pub mod threaded;
