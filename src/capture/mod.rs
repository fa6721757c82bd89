//! Packet sources.
//!
//! A source yields [`Frame`]s with their capture time; nothing after this module knows about files
//! or sockets. Offline sources live in [`file`]; live ones in `live` (AF_PACKET) and, with the
//! cargo feature `libpcap`, `pcap_live`.

pub mod fanout;
pub mod file;
pub mod live;
#[cfg(feature = "libpcap")]
pub mod pcap_live;

pub use file::{CaptureDamage, CaptureError, CaptureFile, CaptureFormat, DamageKind, Frames, Merge, OwnedFrame};

use crate::timestamp::Timestamp;

pub use crate::record::LinkType;

/// One captured frame, borrowed from the source (a capture file's read window or a ring slot).
#[derive(Copy, Clone, Debug)]
pub struct Frame<'a> {
    pub ts: Timestamp,
    pub link: LinkType,
    /// The captured bytes (possibly fewer than `orig_len` when the capture was snapped).
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub orig_len: u32,
}
