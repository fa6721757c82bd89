//! The internal IRI/CC model: the only thing analyzers and the flow layer emit.
//!
//! Every output (the case directory now; ETSI HI2/HI3 and X2/X3 later) consumes [`Record`]s through
//! a [`RecordSink`]. A record always belongs to exactly one LIID: when several warrants cover a
//! packet, each LIID gets its own flow state and its own records (its own copy).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde::Serialize;

use crate::capture::LinkType;
use crate::decode::{Overlay, TunnelKind};
use crate::select::{Liid, Provenance};
use crate::timestamp::Timestamp;

/// Direction within a flow, relative to the side that opened it (the SYN sender, or the sender of
/// the first packet seen for a flow caught mid-stream).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dir {
    /// From the originator to the responder.
    Orig,
    /// From the responder to the originator.
    Resp,
}

impl Dir {
    pub fn index(self) -> usize {
        match self {
            Dir::Orig => 0,
            Dir::Resp => 1,
        }
    }
    pub fn reverse(self) -> Dir {
        match self {
            Dir::Orig => Dir::Resp,
            Dir::Resp => Dir::Orig,
        }
    }
}

/// One removed encapsulation, as written in records.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct TunnelDescr {
    pub kind: TunnelKind,
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
}

/// A flow as an analyst reads it: inner 5-tuple plus the overlay it travelled in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct FlowDescr {
    /// `tcp`, `udp`, `icmp`, `icmpv6` or the IP protocol number.
    pub proto: String,
    pub orig: SocketAddr,
    pub resp: SocketAddr,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tunnels: Vec<TunnelDescr>,
}

impl FlowDescr {
    pub fn proto_name(proto: u8) -> String {
        match proto {
            1 => "icmp".into(),
            6 => "tcp".into(),
            17 => "udp".into(),
            58 => "icmpv6".into(),
            n => n.to_string(),
        }
    }

    pub fn overlay_parts(overlay: &Overlay) -> (Vec<u16>, Vec<TunnelDescr>) {
        let tunnels = overlay
            .tunnels
            .iter()
            .map(|t| TunnelDescr { kind: t.kind, outer_src: t.outer_src, outer_dst: t.outer_dst, vni: t.vni })
            .collect();
        (overlay.vlans.to_vec(), tunnels)
    }
}

/// Why a flow's session ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Close {
    /// Both sides sent FIN.
    Fin,
    Rst,
    /// No packet for the idle timeout.
    IdleTimeout,
    /// Open longer than the absolute timeout; a new session (new CIN) follows if traffic goes on.
    AbsoluteTimeout,
    /// The warrant's window ended (or its selector's association did).
    WindowEnd,
    /// Evicted to keep the flow table within its memory bound.
    Evicted,
    /// End of the capture (replay) or shutdown (live).
    Shutdown,
}

/// Packet and byte counters for one session, per direction (`[orig, resp]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub packets: [u64; 2],
    /// IP bytes (header included) per direction.
    pub bytes: [u64; 2],
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum IriEvent {
    /// First packet of a target session (ETSI iRI-Begin).
    SessionBegin { flow: FlowDescr, first_seen: Timestamp },
    /// Periodic interim report of a long session (iRI-Continue).
    SessionContinue { flow: FlowDescr, first_seen: Timestamp, counters: Counters },
    /// End of a session (iRI-End) with its totals and reason.
    SessionEnd {
        flow: FlowDescr,
        first_seen: Timestamp,
        last_seen: Timestamp,
        counters: Counters,
        reason: Close,
        /// Reassembly gaps per direction: `[[offset, len], ...]`.
        gaps: [Vec<(u64, u64)>; 2],
    },
    /// An FTP command, transfer or login (see `analyze::ftp`).
    Ftp(crate::analyze::ftp::FtpEvent),
    /// An HTTP request and its response (see `analyze::http`).
    Http(crate::analyze::http::HttpEvent),
    /// A mail submission or SMTP session event (see `analyze::smtp`).
    Smtp(crate::analyze::smtp::SmtpEvent),
    /// TLS session metadata (see `analyze::tls`).
    Tls(crate::analyze::tls::TlsEvent),
    /// An identity-association change that concerns this warrant (VM start/stop, image created,
    /// shared or deleted, access session start/stop).
    Association {
        /// The control-plane event name, e.g. `instance.start`.
        what: String,
        /// The identifiers concerned, e.g. `{"instance":"vm-42","owner":"ann","image":"img-9"}`.
        detail: serde_json::Value,
        /// Selectors added or removed by it.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        selectors_added: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        selectors_removed: Vec<String>,
    },
    /// The warrant itself changed state in this POI: interception began (its window opened, or
    /// it was provisioned while in force), its terms changed, or it ended. Delivered to the LEA
    /// as an HI1 notification (TS 101 671 HI1-Operation in the PS-PDU), kept in the case so that
    /// an analyst sees when interception was in force.
    Warrant {
        op: WarrantOp,
        /// The window in force after this change.
        start: Timestamp,
        end: Timestamp,
    },
}

/// What happened to a warrant (HI1 liActivated / liModified / liDeactivated).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarrantOp {
    Activated,
    Modified,
    Deactivated,
}

/// Intercept-related information.
#[derive(Clone, Debug, Serialize)]
pub struct IriRecord {
    pub liid: Liid,
    /// Communication identity number: one per (LIID, session). `None` for association events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cin: Option<u64>,
    pub ts: Timestamp,
    #[serde(flatten)]
    pub event: IriEvent,
    pub provenance: Arc<Provenance>,
}

/// Content of communication: one captured frame of a target, exactly as captured.
#[derive(Clone, Debug)]
pub struct CcRecord<'a> {
    pub liid: &'a Liid,
    pub cin: u64,
    pub ts: Timestamp,
    pub link: LinkType,
    pub data: &'a [u8],
    pub orig_len: u32,
    /// Direction within its flow, when known.
    pub dir: Option<Dir>,
}

/// Identifies a content object for the lifetime of a run.
pub type ObjectId = u64;

/// Metadata known when an object starts.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectMeta {
    /// `stream` (a reassembled TCP direction), `file`, `mail`.
    pub kind: String,
    /// The protocol that carried it (`tcp` for raw streams).
    pub protocol: String,
    /// The object's name as the client gave it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub flow: FlowDescr,
    pub direction: Dir,
    pub cin: u64,
    pub first_seen: Timestamp,
    /// The size the protocol announced (Content-Length, FTP SIZE/150 reply, BDAT chunk sum).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_size: Option<u64>,
    /// The object this one was taken out of (a mail for its attachments, an upload for its parts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<ObjectId>,
    /// Protocol facts worth keeping with the object (method and URI, FTP command and user, mail
    /// envelope, image id...).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub context: serde_json::Value,
}

impl ObjectMeta {
    /// Metadata for an object of `kind` carried by `protocol` in the flow of `cx`-like values.
    pub fn new(kind: &str, protocol: &str, flow: &FlowDescr, direction: Dir, cin: u64, now: Timestamp) -> ObjectMeta {
        ObjectMeta {
            kind: kind.into(),
            protocol: protocol.into(),
            name: None,
            flow: flow.clone(),
            direction,
            cin,
            first_seen: now,
            declared_size: None,
            parent: None,
            context: serde_json::Value::Null,
        }
    }
}

/// A finished content object.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectRecord {
    pub liid: Liid,
    /// Unique within the case; what `parent` refers to.
    pub id: ObjectId,
    #[serde(flatten)]
    pub meta: ObjectMeta,
    pub sha256: String,
    /// MD5 and SHA-512 as well, because cloud image services record those for images. The file
    /// layer computes the MD5 and leaves the SHA-512 `None`: the case writer computes it on its
    /// own thread, so that the two costly digests run on two threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha512: Option<String>,
    /// What the bytes are, detected from content (never from the name), with the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<crate::content::format::FormatVerdict>,
    pub size: u64,
    /// Holes in the object, zero-filled in the stored bytes: `[[offset, len], ...]`.
    pub gaps: Vec<(u64, u64)>,
    pub complete: bool,
    pub last_seen: Timestamp,
    pub provenance: Arc<Provenance>,
}

/// What flows from the core to the outputs.
// Records are built, handed to a sink and dropped at once, never stored in bulk: boxing the IRI
// variant would cost an allocation per record for no memory saved.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Record<'a> {
    Iri(IriRecord),
    Cc(CcRecord<'a>),
    /// A content object starts; its bytes follow as `ObjectData`/`ObjectGap`, in offset order.
    ObjectBegin {
        liid: &'a Liid,
        id: ObjectId,
        meta: &'a ObjectMeta,
    },
    ObjectData {
        liid: &'a Liid,
        id: ObjectId,
        offset: u64,
        data: &'a [u8],
    },
    /// `len` bytes at `offset` were never seen; outputs fill them with zeros.
    ObjectGap {
        liid: &'a Liid,
        id: ObjectId,
        offset: u64,
        len: u64,
    },
    ObjectEnd(ObjectRecord, ObjectId),
}

/// A consumer of records (case writer, ETSI delivery, tests).
pub trait RecordSink {
    fn record(&mut self, rec: Record<'_>);
}

/// A sink that keeps everything in memory, for tests.
#[derive(Default, Debug)]
pub struct VecSink {
    pub iri: Vec<IriRecord>,
    pub cc: Vec<(Liid, u64, Timestamp, Vec<u8>)>,
    pub objects: Vec<ObjectRecord>,
    /// Object bytes as assembled from data and zero-filled gaps, by id.
    pub object_bytes: std::collections::HashMap<ObjectId, Vec<u8>>,
}

impl RecordSink for VecSink {
    fn record(&mut self, rec: Record<'_>) {
        match rec {
            Record::Iri(r) => self.iri.push(r),
            Record::Cc(c) => self.cc.push((c.liid.clone(), c.cin, c.ts, c.data.to_vec())),
            Record::ObjectBegin { id, .. } => {
                self.object_bytes.insert(id, Vec::new());
            }
            Record::ObjectData { id, offset, data, .. } => {
                let buf = self.object_bytes.entry(id).or_default();
                let end = offset as usize + data.len();
                if buf.len() < end {
                    buf.resize(end, 0);
                }
                buf[offset as usize..end].copy_from_slice(data);
            }
            Record::ObjectGap { id, offset, len, .. } => {
                let buf = self.object_bytes.entry(id).or_default();
                let end = (offset + len) as usize;
                if buf.len() < end {
                    buf.resize(end, 0);
                }
            }
            Record::ObjectEnd(r, _) => self.objects.push(r),
        }
    }
}
