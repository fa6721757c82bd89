//! media: depacketisers and container writers that turn stream payloads into files a player opens.
//!
//! Everything here is sans-I/O: it is handed bytes (and, for statistics, the packet's arrival
//! time) and hands back structures and bytes; no socket, file or clock is touched.

#[doc(hidden)]
pub mod fuzz;
pub mod h264;
pub mod rtp;
pub mod sdp;
