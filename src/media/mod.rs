//! Media: container writers and codec facts that turn stream payloads (RTMP messages, RTP
//! packets) into files a player opens, and say what is in them.
//!
//! Nothing here knows connections or records: analyzers hand it payloads and write what it
//! returns through the file layer.

pub mod flv;
