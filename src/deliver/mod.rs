//! Outputs: everything that takes [`Record`](crate::record::Record)s and puts them somewhere.
//!
//! - [`case`]: the case directory an analyst reads offline (IRI JSON lines, CC pcap, content
//!   objects by hash).
//! - [`manifest`]: the signed manifest over a case, and its verification.
//! - [`pcap`]: a minimal pcap writer for CC; [`disk`]: the case's writes on a thread of their own.
//! - [`etsi`]: TS 102 232 PS-PDU encoding (HI2/HI3) and its JSON decoder.
//! - [`handover`]: the MDF: PS-PDUs per LEA through a durable spool to HI2/HI3 (TCP/TLS).
//! - [`outputs`]: the case and delivery together, as `tapir replay` and `tapir run` write
//!   through them; [`threaded`]: an output on a thread of its own.

pub mod assemble;
pub mod case;
pub mod disk;
pub mod etsi;
pub mod handover;
pub mod manifest;
pub mod outputs;
pub mod pcap;
pub mod readme;
pub mod threaded;
pub mod tls;
pub mod x2x3;

use crate::record::{Record, RecordSink};

/// Hands every record to the case and, when delivering, to the LEA delivery too.
pub struct Both<'a> {
    pub first: &'a mut dyn RecordSink,
    pub second: Option<&'a mut dyn RecordSink>,
}

impl RecordSink for Both<'_> {
    fn record(&mut self, rec: Record<'_>) {
        let Some(second) = self.second.as_mut() else {
            return self.first.record(rec);
        };
        let copy = match &rec {
            Record::Iri(r) => Record::Iri(r.clone()),
            Record::Cc(c) => Record::Cc(c.clone()),
            Record::ObjectBegin { liid, id, meta } => Record::ObjectBegin { liid, id: *id, meta },
            Record::ObjectData { liid, id, offset, data } => {
                Record::ObjectData { liid, id: *id, offset: *offset, data }
            }
            Record::ObjectGap { liid, id, offset, len } => {
                Record::ObjectGap { liid, id: *id, offset: *offset, len: *len }
            }
            Record::ObjectEnd(r, id) => Record::ObjectEnd(r.clone(), *id),
            Record::SessionClosed { liid, cin, ts } => Record::SessionClosed { liid, cin: *cin, ts: *ts },
        };
        self.first.record(copy);
        second.record(rec);
    }
}
