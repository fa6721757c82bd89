//! X2/X3 (ETSI TS 103 221-2): what a point of interception (POI) sends its mediation and
//! delivery function (MDF): xIRI on X2, xCC on X3, over TCP with mutual TLS.
//!
//! - [`pdu`]: the PDU (header, conditional attributes, payload) and its stream codec.
//! - [`records`]: records to PDUs on a POI ([`records::PoiEncoder`]) and back on the MDF
//!   ([`records::MdfIntake`]); the table of what goes where is there.
//! - [`events`]: application events rebuilt, typed, from the JSON X2 carries them in.
//! - [`forward`]: a POI's output: PDUs through a durable spool to the MDF.
//! - [`listen`]: the MDF's listener; a keepalive is acknowledged once what came before it is
//!   taken, which is what confirms a POI's spool.
//! - [`journal`]: the MDF's intake journal and checkpoints: how it starts again after a crash
//!   with nothing lost and nothing twice.

pub mod events;
pub mod forward;
pub mod journal;
pub mod listen;
pub mod pdu;
pub mod records;
