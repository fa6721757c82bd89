//! Outputs: everything that takes [`Record`](crate::record::Record)s and puts them somewhere.
//!
//! - [`case`]: the case directory an analyst reads offline (IRI JSON lines, CC pcap, content
//!   objects by hash).
//! - [`manifest`]: the signed manifest over a case, and its verification.
//! - [`pcap`]: a minimal pcap writer for CC.
//! - [`etsi`]: TS 102 232 PS-PDU encoding (HI2/HI3) and its JSON decoder.
//! - [`handover`]: the MDF: PS-PDUs per LEA through a durable spool to HI2/HI3 (TCP/TLS).

pub mod assemble;
pub mod case;
pub mod etsi;
pub mod handover;
pub mod manifest;
pub mod pcap;
pub mod threaded;
