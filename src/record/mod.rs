//! The record layer: the vocabulary every stage shares, and the one thing analyzers and the
//! flow layer emit.
//!
//! This module is the ground floor of the crate: it imports nothing of tapir but `timestamp`,
//! and everything else imports it. What a record is made of lives here (the [`Liid`] and [`Cin`]
//! it belongs to, the [`Provenance`] of its selector, the flow it came from, the [`Scope`] of its
//! warrant); what a protocol says lives beside its analyzer and travels here as an
//! [`AppEvent`], which this layer can name, print and hand on without knowing its type.
//!
//! Every output (the case directory, ETSI HI2/HI3, tests) consumes [`Record`]s through a
//! [`RecordSink`]. A record always belongs to exactly one LIID: when several warrants cover a
//! packet, each LIID gets its own flow state and its own records (its own copy), numbered on
//! its own (CINs, object ids), so nothing one LEA receives depends on another warrant.
//!
//! Between the producers and any output stands the [`Gate`] of the warrant's scope (see
//! [`gate`]): the one place where IRI-only, CC-only and IRI+CC are enforced.

pub mod de;
pub mod gate;
mod ids;
mod owned;
mod xid;

use std::any::Any;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use gate::Gate;
pub use ids::{Cin, Liid, LiidError, Numbers};
pub use owned::Records;
pub use xid::Xid;

use crate::timestamp::Timestamp;

/// What a warrant asks to be delivered.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    #[serde(rename = "iri+cc")]
    IriAndCc,
    Iri,
    Cc,
}

impl Scope {
    pub fn iri(self) -> bool {
        matches!(self, Scope::IriAndCc | Scope::Iri)
    }
    pub fn cc(self) -> bool {
        matches!(self, Scope::IriAndCc | Scope::Cc)
    }
}

/// Why a selector exists: the warrant's target identifier and the chain of association events
/// that led from it to this selector, oldest first. Written with every record it produced.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    /// The packet selector, e.g. `ipv4:10.0.0.5` or `vni:5001/10.0.0.5`.
    pub selector: String,
    /// The warrant target it derives from, e.g. `subscriber:joe`.
    pub target: String,
    /// Human-readable steps, e.g. `2026-03-01T10:00:00Z instance.start vm-42 (owner ann) from image img-9`.
    pub chain: Vec<String>,
}

/// The link layer of a captured frame, as pcap names it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_NULL (0): BSD loopback, a 4-byte address family in host byte order.
    Null,
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_RAW (101) and DLT_RAW (12/14 on some systems): a bare IPv4 or IPv6 packet.
    Raw,
    /// LINKTYPE_LOOP (108): OpenBSD loopback, address family in network byte order.
    Loop,
    /// LINKTYPE_LINUX_SLL (113): Linux cooked capture v1.
    LinuxSll,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// LINKTYPE_LINUX_SLL2 (276): Linux cooked capture v2.
    LinuxSll2,
    /// Anything else; frames of this type are counted and not decoded.
    Other(u32),
}

impl LinkType {
    pub fn from_linktype(n: u32) -> LinkType {
        match n {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }

    /// The LINKTYPE_ number to write in a pcap header for frames of this type.
    pub fn to_linktype(self) -> u32 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::Loop => 108,
            LinkType::LinuxSll => 113,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll2 => 276,
            LinkType::Other(n) => n,
        }
    }
}

/// An encapsulation a target's packets came through.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TunnelKind {
    Vxlan,
    Geneve,
    Gre,
    /// GRE carrying Ethernet (transparent Ethernet bridging, protocol 0x6558).
    GreEthernet,
    Erspan2,
    Erspan3,
    IpInIp,
    SixInFour,
}

/// A format verdict on an object's bytes: the format, why we think so, and what the header says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FormatVerdict {
    /// e.g. `qcow2`, `vmdk`, `gpt`, `gzip`.
    pub format: String,
    /// The evidence, e.g. `magic "QFI\xfb" at offset 0, version 3`.
    pub reason: String,
    /// Header facts (version, virtual size, partitions, ...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

/// Direction within a flow, relative to the side that opened it (the SYN sender, or the sender of
/// the first packet seen for a flow caught mid-stream).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TunnelDescr {
    pub kind: TunnelKind,
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
}

/// A flow as an analyst reads it: inner 5-tuple plus the overlay it travelled in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowDescr {
    /// `tcp`, `udp`, `icmp`, `icmpv6` or the IP protocol number.
    /// (A name spelled out once, not a string per flow: a million flows held are a million
    /// descriptions.)
    pub proto: std::borrow::Cow<'static, str>,
    pub orig: SocketAddr,
    pub resp: SocketAddr,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tunnels: Vec<TunnelDescr>,
}

impl FlowDescr {
    pub fn proto_name(proto: u8) -> std::borrow::Cow<'static, str> {
        match proto {
            1 => "icmp".into(),
            6 => "tcp".into(),
            17 => "udp".into(),
            58 => "icmpv6".into(),
            n => n.to_string().into(),
        }
    }

    /// Which side of the flow is the target: the side whose address the provenance's selector
    /// names (`ipv4:A`, `ipv6:A`, `vni:V/A`, a `cidr:` prefix). A selector that names no address
    /// (a MAC) cannot tell; the originator is assumed, since a VM that opens a flow is the usual
    /// case.
    pub fn target_side(&self, prov: &Provenance) -> Dir {
        if let Some(net) = prov.selector.strip_prefix("cidr:").and_then(|n| n.parse::<ipnet::IpNet>().ok()) {
            return match (net.contains(&self.orig.ip()), net.contains(&self.resp.ip())) {
                (false, true) => Dir::Resp,
                _ => Dir::Orig,
            };
        }
        match selector_addr(&prov.selector) {
            Some(a) if self.resp.ip() == a && self.orig.ip() != a => Dir::Resp,
            _ => Dir::Orig,
        }
    }

    /// The address and port of one side.
    pub fn side(&self, d: Dir) -> SocketAddr {
        match d {
            Dir::Orig => self.orig,
            Dir::Resp => self.resp,
        }
    }
}

/// The address a provenance selector names (`ipv4:A`, `ipv6:A`, `vni:V/A`), if any.
pub fn selector_addr(selector: &str) -> Option<IpAddr> {
    let rest = selector
        .strip_prefix("ipv4:")
        .or_else(|| selector.strip_prefix("ipv6:"))
        .or_else(|| selector.strip_prefix("vni:").and_then(|s| s.split_once('/').map(|(_, a)| a)))?;
    rest.parse().ok()
}

/// Why a flow's session ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// Packet and byte counters for one session, per direction (`[orig, resp]`), counted from the
/// session's first packet to its last, including packets that come after its close (the last
/// ACK of a FIN handshake).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub packets: [u64; 2],
    /// IP bytes: every header byte (IP with its options or extension headers, the transport
    /// header with its options) and the payload, as IPv4's Total Length, or IPv6's 40 +
    /// Payload Length, counts them (tshark's `ip.len`, `ipv6.plen` + 40).
    pub bytes: [u64; 2],
    /// Transport payload bytes (tshark's `tcp.len`, `udp.length` - 8).
    pub payload: [u64; 2],
    /// TCP segments refused because their checksum failed in a direction whose checksums hold:
    /// the receiver dropped them. They are in the CC (they crossed the wire), never in objects.
    #[serde(default, skip_serializing_if = "both_zero")]
    pub checksum_failed: [u64; 2],
    /// TCP segments taken although no checksum vouched for them: checksum offload on the
    /// capturing host (no segment of the direction had passed its checksum yet), segments
    /// coalesced by the capturing host (larger than the peer's MSS), or cut short by the snap
    /// length.
    #[serde(default, skip_serializing_if = "both_zero")]
    pub unverified: [u64; 2],
    /// Places where two versions of the same stream bytes differed (each a `wire-conflict`
    /// record, the first 64 per direction).
    #[serde(default, skip_serializing_if = "both_zero")]
    pub conflicts: [u64; 2],
}

fn both_zero(v: &[u64; 2]) -> bool {
    *v == [0, 0]
}

/// Why one version of conflicting stream bytes is the one passed on.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictKind {
    /// Both versions passed their checksums: the receiver keeps the bytes it received first.
    Retransmission,
    /// The other version failed its checksum: the receiver dropped it.
    BadChecksum,
}

/// The wire disagreed with itself: two versions of the bytes at `offset..offset + len` of one
/// direction of a TCP session. The version passed on (to the analyzers and objects) is the one
/// the receiver accepted; both are in the CC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireConflict {
    pub direction: Dir,
    /// The target sent these bytes.
    pub from_target: bool,
    /// Stream offset: 0 is the first byte after the SYN (or the first byte seen mid-stream).
    pub offset: u64,
    pub len: u64,
    /// Why `kept_sha256` is the version passed on.
    pub kind: ConflictKind,
    /// SHA-256 of the version passed on; absent when no accepted bytes were known for that range
    /// yet (a segment that failed its checksum, ahead of the stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_sha256: Option<String>,
    /// SHA-256 of the version that went nowhere but the CC.
    pub other_sha256: String,
}

/// An application-layer IRI event: what an analyzer saw (an FTP transfer, an HTTP request, a
/// mail, a TLS handshake). Each protocol's event type lives beside its analyzer; this layer only
/// names it (`protocol`, written as the record's `event`), prints it (as JSON) and hands it on.
/// An output that maps a protocol's events to its own form (HI2) asks for the type back with
/// [`AppEvent::get`].
#[derive(Clone)]
pub struct AppEvent(Arc<dyn ErasedEvent>);

trait ErasedEvent: fmt::Debug + Send + Sync {
    fn protocol(&self) -> &'static str;
    fn to_json(&self) -> serde_json::Value;
    fn any(&self) -> &dyn Any;
}

#[derive(Debug)]
struct Typed<E> {
    protocol: &'static str,
    event: E,
}

impl<E: Serialize + fmt::Debug + Send + Sync + 'static> ErasedEvent for Typed<E> {
    fn protocol(&self) -> &'static str {
        self.protocol
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.event).unwrap_or(serde_json::Value::Null)
    }
    fn any(&self) -> &dyn Any {
        &self.event
    }
}

impl AppEvent {
    /// `protocol` is the lower-case name an analyst reads in `iri.jsonl` (`ftp`, `http`).
    pub fn new<E: Serialize + fmt::Debug + Send + Sync + 'static>(protocol: &'static str, event: E) -> AppEvent {
        AppEvent(Arc::new(Typed { protocol, event }))
    }

    pub fn protocol(&self) -> &'static str {
        self.0.protocol()
    }

    /// The event as its own type, if it is an `E`.
    pub fn get<E: 'static>(&self) -> Option<&E> {
        self.0.any().downcast_ref()
    }

    /// The event's fields, as written in the case.
    pub fn to_json(&self) -> serde_json::Value {
        self.0.to_json()
    }
}

impl fmt::Debug for AppEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl PartialEq for AppEvent {
    fn eq(&self, other: &AppEvent) -> bool {
        self.protocol() == other.protocol() && self.to_json() == other.to_json()
    }
}

/// Written as `{"event": <protocol>, <the event's fields>...}`, so that the record reads the
/// same whatever the protocol.
impl Serialize for AppEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let fields = self.to_json();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("event", self.protocol())?;
        if let serde_json::Value::Object(o) = fields {
            for (k, v) in o {
                m.serialize_entry(&k, &v)?;
            }
        }
        m.end()
    }
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
    /// What a content object was (digests, size, format verdict, gaps): IRI about content,
    /// which an IRI-only warrant gets although it never gets the bytes.
    Object(Box<ObjectRecord>),
    /// Two versions of the same bytes of a TCP session differed on the wire.
    WireConflict(Box<WireConflict>),
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
    /// An application-layer event (FTP, HTTP, SMTP, TLS): the analyzer's own type, named by
    /// its protocol.
    #[serde(untagged)]
    App(AppEvent),
}

impl IriEvent {
    /// The application event, if this is one of type `E`.
    pub fn app<E: 'static>(&self) -> Option<&E> {
        match self {
            IriEvent::App(a) => a.get(),
            _ => None,
        }
    }
}

/// What happened to a warrant (HI1 liActivated / liModified / liDeactivated).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Communication identity number: one per (LIID, session). `None` for association events
    /// and warrant notices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cin: Option<Cin>,
    pub ts: Timestamp,
    #[serde(flatten)]
    pub event: IriEvent,
    pub provenance: Arc<Provenance>,
}

/// Content of communication: one captured frame of a target, exactly as captured.
#[derive(Clone, Debug)]
pub struct CcRecord<'a> {
    pub liid: &'a Liid,
    pub cin: Cin,
    pub ts: Timestamp,
    pub link: LinkType,
    pub data: &'a [u8],
    pub orig_len: u32,
    /// Direction within its flow, when known.
    pub dir: Option<Dir>,
    /// The target's side of that flow (see [`FlowDescr::target_side`]), when known: with `dir`
    /// it says whether the frame is from or to the target.
    pub target: Option<Dir>,
}

impl CcRecord<'_> {
    /// From the target (`Some(true)`), to it (`Some(false)`), or unknown.
    pub fn from_target(&self) -> Option<bool> {
        Some(self.dir? == self.target?)
    }
}

/// A map keyed by what a warrant or tapir itself names (LIIDs, CINs and object ids, warrants'
/// selectors), looked up for every record or frame: hashed by foldhash, seeded per process,
/// rather than SipHash. Nothing on the tap chooses these keys, so they need no flood
/// resistance (maps keyed by addresses or ports the tap chooses, the flow table's, keep
/// SipHash).
pub type ByIds<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Makes room for `incoming` more bytes in `buf`, a buffer of an object's bytes that grows to
/// `max`: room for all of them at once when it grows past a few segments (8 KiB), since a
/// buffer that long is likely to fill. Doubling from one segment's size copied each large
/// object's first bytes about twice more (a tenth of a replay's copying when every packet is
/// targeted) and could overshoot `max`; small objects, below the threshold, keep small buffers.
/// For the format sniffer's prefix, the image intake's head and the case writer's partial
/// objects.
pub fn reserve_head(buf: &mut Vec<u8>, incoming: usize, max: usize) {
    const GROW_WHOLE_AT: usize = 8 * 1024;
    let grown = buf.len().saturating_add(incoming);
    if grown > GROW_WHOLE_AT {
        buf.reserve_exact(max.max(grown) - buf.len());
    }
}

/// Identifies a content object of one LIID for the lifetime of a run: numbered from 1 per LIID,
/// so that no LIID's numbers tell of another's objects.
pub type ObjectId = u64;

/// Metadata known when an object starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// The target sent these bytes (`false`: it received them); set by the file layer from the
    /// flow and the selector's provenance (see [`FlowDescr::target_side`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_target: Option<bool>,
    pub cin: Cin,
    pub first_seen: Timestamp,
    /// The size the protocol announced (Content-Length, FTP SIZE/150 reply, BDAT chunk sum).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_size: Option<u64>,
    /// The object this one was taken out of (a mail for its attachments, an upload for its parts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<ObjectId>,
    /// Protocol facts worth keeping with the object (method and URI, FTP command and user, mail
    /// envelope, image id...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub context: serde_json::Value,
}

impl ObjectMeta {
    /// Metadata for an object of `kind` carried by `protocol` in the flow of `cx`-like values.
    pub fn new(kind: &str, protocol: &str, flow: &FlowDescr, direction: Dir, cin: Cin, now: Timestamp) -> ObjectMeta {
        ObjectMeta {
            kind: kind.into(),
            protocol: protocol.into(),
            name: None,
            flow: flow.clone(),
            direction,
            from_target: None,
            cin,
            first_seen: now,
            declared_size: None,
            parent: None,
            context: serde_json::Value::Null,
        }
    }
}

/// A finished content object. Serialised without its LIID and provenance, which the record or
/// line that carries it (an `object` IRI record, a line of `objects.jsonl`) states once.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ObjectRecord {
    #[serde(skip)]
    pub liid: Liid,
    /// Unique within the LIID; what `parent` refers to.
    pub id: ObjectId,
    #[serde(flatten)]
    pub meta: ObjectMeta,
    pub sha256: String,
    /// MD5 and SHA-512 where they serve: a disk image's both (cloud image services record
    /// those), an S3 object's MD5 (its ETag); see the file layer's notes on digests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha512: Option<String>,
    /// What the bytes are, detected from content (never from the name), with the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<FormatVerdict>,
    pub size: u64,
    /// Holes in the object, zero-filled in the stored bytes: `[[offset, len], ...]`.
    pub gaps: Vec<(u64, u64)>,
    /// Wire conflicts in the stream that carried this object, found while it was open (stream
    /// offsets, not object offsets: the `wire-conflict` IRI records have the same).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wire_conflicts: Vec<WireConflict>,
    pub complete: bool,
    pub last_seen: Timestamp,
    #[serde(skip)]
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
    /// Session `cin` of `liid` is over and nothing more of it will come: outputs release what
    /// they keep per session (an MDF hashes its streams' integrity tails). Not IRI: it passes
    /// every scope, and says only what the end of the session's CC says anyway.
    SessionClosed {
        liid: &'a Liid,
        cin: Cin,
        ts: Timestamp,
    },
}

impl Record<'_> {
    /// The warrant the record belongs to.
    pub fn liid(&self) -> &Liid {
        match self {
            Record::Iri(r) => &r.liid,
            Record::Cc(c) => c.liid,
            Record::ObjectBegin { liid, .. }
            | Record::ObjectData { liid, .. }
            | Record::ObjectGap { liid, .. }
            | Record::SessionClosed { liid, .. } => liid,
            Record::ObjectEnd(o, _) => &o.liid,
        }
    }
}

/// A consumer of records (case writer, ETSI delivery, tests).
pub trait RecordSink {
    fn record(&mut self, rec: Record<'_>);
}

/// A sink that keeps everything in memory, for tests.
#[derive(Default, Debug)]
pub struct VecSink {
    pub iri: Vec<IriRecord>,
    pub cc: Vec<(Liid, Cin, Timestamp, Vec<u8>)>,
    pub objects: Vec<ObjectRecord>,
    /// Object bytes as assembled from data and zero-filled gaps, by LIID and id.
    pub object_bytes: std::collections::HashMap<(Liid, ObjectId), Vec<u8>>,
}

impl VecSink {
    /// The bytes of `liid`'s object `id`.
    pub fn bytes(&self, liid: &str, id: ObjectId) -> Option<&Vec<u8>> {
        self.object_bytes.iter().find(|((l, i), _)| l.as_str() == liid && *i == id).map(|(_, b)| b)
    }
}

impl RecordSink for VecSink {
    fn record(&mut self, rec: Record<'_>) {
        match rec {
            Record::Iri(r) => self.iri.push(r),
            Record::Cc(c) => self.cc.push((c.liid.clone(), c.cin, c.ts, c.data.to_vec())),
            Record::ObjectBegin { liid, id, .. } => {
                self.object_bytes.insert((liid.clone(), id), Vec::new());
            }
            Record::ObjectData { liid, id, offset, data } => {
                let buf = self.object_bytes.entry((liid.clone(), id)).or_default();
                let end = offset as usize + data.len();
                if buf.len() < end {
                    buf.resize(end, 0);
                }
                buf[offset as usize..end].copy_from_slice(data);
            }
            Record::ObjectGap { liid, id, offset, len } => {
                let buf = self.object_bytes.entry((liid.clone(), id)).or_default();
                let end = (offset + len) as usize;
                if buf.len() < end {
                    buf.resize(end, 0);
                }
            }
            Record::ObjectEnd(r, _) => self.objects.push(r),
            Record::SessionClosed { .. } => {}
        }
    }
}
