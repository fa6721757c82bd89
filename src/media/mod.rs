//! Media: depacketisers, container writers and codec facts that turn stream payloads (RTMP
//! messages, RTP packets) into files a player opens, and say what is in them.
//!
//! Everything here is sans-I/O: it is handed bytes (and, for statistics, the packet's arrival
//! time) and hands back structures and bytes; no socket, file or clock is touched. Analyzers
//! write what it returns through the file layer.

pub mod fingerprint;
pub mod flv;
#[doc(hidden)]
pub mod fuzz;
pub mod h264;
pub mod mkv;
pub mod mp4;
pub mod rtp;
pub mod sdp;
