//! The daemon's configuration file (`/etc/tapir/tapir.toml`).
//!
//! Parsing is strict: an unknown key, a wrong type or a value out of range is an error that
//! names `file:line`. Relative paths are taken relative to the configuration file's directory,
//! so a config and its warrants can travel together. See `etc/tapir.toml` for every key.
//!
//! The file is untrusted input: nothing here panics on any text.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::select::{load_warrants, Warrants};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    At { file: String, line: usize, message: String },
    /// The warrants file (or its `[[lea]]` tables) the config points to.
    #[error("{0}")]
    Warrants(String),
}

impl ConfigError {
    /// The 1-based line (0 when the error is not about one line of the config).
    pub fn line(&self) -> usize {
        match self {
            ConfigError::At { line, .. } => *line,
            _ => 0,
        }
    }
}

/// Where a listener binds: a Unix stream socket path or a TCP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            ListenAddr::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

fn parse_listen(s: &str) -> Result<ListenAddr, String> {
    if let Some(p) = s.strip_prefix("unix:") {
        if !p.starts_with('/') {
            return Err(format!("{s:?}: a unix socket path must be absolute"));
        }
        Ok(ListenAddr::Unix(PathBuf::from(p)))
    } else if let Some(a) = s.strip_prefix("tcp:") {
        a.parse().map(ListenAddr::Tcp).map_err(|_| format!("{s:?}: expected tcp:IP:PORT"))
    } else {
        Err(format!("{s:?}: expected \"unix:/path\" or \"tcp:IP:PORT\""))
    }
}

/// How a replay source paces the capture.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pace {
    /// As fast as the pipeline takes frames (the default; the pipeline clock is packet time).
    Fast,
    /// Frames are released at the pace they were captured, starting when the daemon starts.
    Realtime,
}

/// What a replay source does after its last frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplayEnd {
    /// Stop as on SIGTERM: flush, write the case, exit 0 (the default).
    Exit,
    /// Keep running (reloads still work) until SIGTERM/SIGINT.
    Wait,
}

/// AF_PACKET ring geometry (TPACKET_V3), handed to the live capture.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingSettings {
    #[serde(default = "RingSettings::default_block_size")]
    pub block_size: u32,
    #[serde(default = "RingSettings::default_block_count")]
    pub block_count: u32,
    #[serde(default = "RingSettings::default_frame_size")]
    pub frame_size: u32,
    #[serde(default = "RingSettings::default_block_timeout_ms")]
    pub block_timeout_ms: u32,
}

impl RingSettings {
    fn default_block_size() -> u32 {
        1 << 22
    }
    fn default_block_count() -> u32 {
        64
    }
    fn default_frame_size() -> u32 {
        2048
    }
    fn default_block_timeout_ms() -> u32 {
        10
    }
}

impl Default for RingSettings {
    fn default() -> Self {
        RingSettings {
            block_size: Self::default_block_size(),
            block_count: Self::default_block_count(),
            frame_size: Self::default_frame_size(),
            block_timeout_ms: Self::default_block_timeout_ms(),
        }
    }
}

/// How live interfaces are read (`[capture] backend`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// Linux AF_PACKET TPACKET_V3 rings, shared by the workers through fanout groups.
    #[default]
    AfPacket,
    /// The system's libpcap (cargo feature `libpcap`): for platforms without AF_PACKET; one
    /// worker, since libpcap cannot share an interface between capture threads.
    Libpcap,
}

impl CaptureConfig {
    /// An MDF's: no interface, no file.
    pub fn none() -> CaptureConfig {
        CaptureConfig {
            interfaces: Vec::new(),
            backend: Backend::AfPacket,
            workers: 1,
            pipelines: 1,
            ring: RingSettings::default(),
            fanout: crate::capture::fanout::Fanout::InnerPair,
            promiscuous: false,
            user: None,
            replay: Vec::new(),
            pace: Pace::Fast,
            replay_end: ReplayEnd::Exit,
            checksum_validation: Default::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CaptureConfig {
    /// Live tap ports (AF_PACKET or libpcap). Empty when the source is `replay`.
    pub interfaces: Vec<String>,
    pub backend: Backend,
    /// Capture threads (live: one ring each, in one fanout group per interface).
    pub workers: usize,
    /// Pipeline workers, each over a share of the flows by inner address pair
    /// ([`crate::pipeline::shard`]); 1: one pipeline.
    pub pipelines: usize,
    pub ring: RingSettings,
    /// How the capture workers' rings share an interface (`fanout = "inner-pair"`, the
    /// default, or `"flow-hash"`; see [`crate::capture::fanout`]).
    pub fanout: crate::capture::fanout::Fanout,
    pub promiscuous: bool,
    /// Account to drop to after the rings are open, when started as root outside systemd.
    pub user: Option<String>,
    /// Capture files replayed instead of live interfaces (tests, demonstrations).
    pub replay: Vec<PathBuf>,
    pub pace: Pace,
    pub replay_end: ReplayEnd,
    /// `checksum_validation = "auto"` (the default) or `"off"` (see `flow::evidence`).
    pub checksum_validation: crate::flow::evidence::ChecksumValidation,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PathsConfig {
    pub warrants: PathBuf,
    /// Each run writes its case into a new subdirectory named by its UTC start time.
    pub case_dir: PathBuf,
    pub spool_dir: PathBuf,
    /// Ed25519 PKCS#8 key that signs case manifests; an ephemeral key when absent.
    pub signing_key: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct AssociationsConfig {
    /// Where the live identity-association feed listens.
    pub listen: Option<ListenAddr>,
    /// Events (JSON lines, as replay's `--associations`) loaded at start.
    pub events: Option<PathBuf>,
    /// Journal of the events accepted live (feed, RADIUS), replayed at start; default
    /// `<spool_dir>/associations.journal`.
    pub journal: Option<PathBuf>,
    /// File holding the token a TCP feed client sends first (`TOKEN <secret>`); required for TCP.
    pub token_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X1Client {
    pub subject_cn: String,
    pub role: crate::x1::Role,
}

/// X1 (ETSI TS 103 221-1) server settings; parsed and checked here, served by `daemon::x1`.
/// X1 tasks are merged with the warrants file's (see docs/x1.md, "In the daemon").
#[derive(Clone, Debug, PartialEq)]
pub struct X1Config {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    /// The durable task store's directory (`x1-state.json`).
    pub store: PathBuf,
    /// Default: `<store>/audit.jsonl`.
    pub audit_log: PathBuf,
    /// Signs the audit log (`tapir keygen`); default: `[paths] signing_key`; neither: the log is
    /// only hash-chained.
    pub signing_key: Option<PathBuf>,
    /// A signature line every this many audit entries (and at stop).
    pub sign_every: u32,
    /// Our `neIdentifier`.
    pub ne_id: String,
    pub four_eyes: bool,
    pub four_eyes_timeout_secs: i64,
    /// Refuse (1030) a request whose `admfIdentifier` is not the certificate's CN.
    pub bind_admf_identifier: bool,
    /// Keys of every `[[lea]]` made from an X1 destination (operator_id, TLS files, ...); default:
    /// the warrants file's first `[[lea]]` without its name/hi2/hi3.
    pub lea_template: Option<toml::Table>,
    pub clients: Vec<X1Client>,
}

/// X1 client roles the daemon knows (those of `crate::x1::Role`).
pub const X1_ROLES: &[&str] = &["admf", "auditor"];

#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_flows: usize,
    pub tcp_idle_secs: u64,
    pub udp_idle_secs: u64,
    pub per_direction_buffer: usize,
    pub global_buffer: usize,
    /// Frame batches queued from capture threads to the pipeline before capture waits (and a
    /// live burst waits in the kernel's capture buffer, which counts what it cannot hold).
    pub queue_batches: usize,
    /// On stop, how long to wait for the LEAs to confirm what is spooled.
    pub deliver_wait_secs: u64,
    /// What decoding content may cost (HTTP gzip/deflate): bytes, and ratio to the bytes sent.
    pub content: crate::content::ContentLimits,
    /// How long one uploaded image's inspection may walk its filesystems; 0: images are not
    /// inspected.
    pub inspect_time_limit_secs: u64,
    /// Images larger than this are reported, not inspected.
    pub inspect_max_image_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let f = crate::flow::FlowConfig::default();
        Limits {
            max_flows: f.max_flows,
            tcp_idle_secs: (f.tcp_idle_ns / 1_000_000_000) as u64,
            udp_idle_secs: (f.udp_idle_ns / 1_000_000_000) as u64,
            per_direction_buffer: f.per_direction_buffer,
            global_buffer: f.global_buffer,
            queue_batches: 64,
            deliver_wait_secs: 5,
            content: crate::content::ContentLimits::default(),
            inspect_time_limit_secs: crate::vmi::DEFAULT_TIME_LIMIT.as_secs(),
            inspect_max_image_bytes: 64 << 30,
        }
    }
}

impl Limits {
    pub fn flow_config(&self) -> crate::flow::FlowConfig {
        let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX / 1_000_000_000).saturating_mul(1_000_000_000);
        crate::flow::FlowConfig {
            tcp_idle_ns: secs(self.tcp_idle_secs),
            udp_idle_ns: secs(self.udp_idle_secs),
            per_direction_buffer: self.per_direction_buffer,
            global_buffer: self.global_buffer,
            max_flows: self.max_flows,
            content: self.content,
            ..crate::flow::FlowConfig::default()
        }
    }
}

/// A parsed, checked configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file it came from (for messages).
    pub file: PathBuf,
    pub capture: CaptureConfig,
    pub paths: PathsConfig,
    pub associations: AssociationsConfig,
    pub metrics: Option<SocketAddr>,
    pub x1: Option<X1Config>,
    pub limits: Limits,
    /// What this node is in a distributed deployment (`[node]`).
    pub role: Role,
}

/// A node's part in the standard split (TS 103 221-2): points of interception send X2/X3 to a
/// mediation and delivery function.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Role {
    /// Capture to delivery on one host (no `[node]`).
    #[default]
    AllInOne,
    /// Capture, select, flow and analyze; every record goes to the MDF over X2/X3. No case, no HI.
    Poi(PoiConfig),
    /// No capture: records come from POIs over X2/X3; CINs, the record stage, the case, HI2/HI3.
    Mdf(MdfConfig),
}

#[derive(Clone, Debug, PartialEq)]
pub struct PoiConfig {
    /// `host:port` of the MDF's X2/X3 listener.
    pub mdf: String,
    /// This POI's name: the Interception Point ID attribute of its PDUs.
    pub name: String,
    /// 1..=65535, unique among the MDF's POIs: the range of this POI's object ids.
    pub object_range: u16,
    /// Mutual TLS 1.3 (`tls_ca` the MDF's CA, `tls_cert`/`tls_key` this POI's); none: plain TCP.
    pub tls: Option<crate::deliver::handover::TlsFiles>,
    pub keepalive_secs: u64,
    pub max_spool_bytes: u64,
    /// One write per PDU: captures of X2/X3 then read PDU by PDU (tshark's `5gli` does not
    /// reassemble); off, PDUs go in batches.
    pub write_per_pdu: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MdfConfig {
    pub listen: SocketAddr,
    /// Mutual TLS 1.3 (`tls_ca` the POIs' CA, `tls_cert`/`tls_key` this MDF's); none: plain TCP.
    pub tls: Option<crate::deliver::handover::TlsFiles>,
    /// Largest PDU taken; a larger one closes the connection.
    pub max_pdu: usize,
    /// Open sessions and objects kept across all POIs.
    pub max_sessions: usize,
    /// The intake journal's bound on disk (`deliver::x2x3::journal`); 0: no journal (a crash
    /// then restarts numbering as an all-in-one's does).
    pub journal_max_bytes: u64,
}

// ---- the file as written ----

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    capture: Option<S<RawCapture>>,
    #[serde(default)]
    node: Option<S<RawNode>>,
    paths: S<RawPaths>,
    #[serde(default)]
    associations: Option<RawAssociations>,
    #[serde(default)]
    metrics: Option<RawMetrics>,
    #[serde(default)]
    x1: Option<S<RawX1>>,
    #[serde(default)]
    limits: Option<RawLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    role: S<String>,
    #[serde(default)]
    mdf: Option<S<String>>,
    #[serde(default)]
    name: Option<S<String>>,
    #[serde(default)]
    object_range: Option<S<i64>>,
    #[serde(default)]
    listen: Option<S<String>>,
    #[serde(default)]
    tls_ca: Option<S<String>>,
    #[serde(default)]
    tls_cert: Option<S<String>>,
    #[serde(default)]
    tls_key: Option<S<String>>,
    #[serde(default)]
    keepalive_secs: Option<S<i64>>,
    #[serde(default)]
    max_spool_bytes: Option<S<i64>>,
    #[serde(default)]
    max_pdu: Option<S<i64>>,
    #[serde(default)]
    write_per_pdu: Option<S<bool>>,
    #[serde(default)]
    max_sessions: Option<S<i64>>,
    #[serde(default)]
    journal_max_bytes: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    #[serde(default)]
    interfaces: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    workers: Option<S<i64>>,
    #[serde(default)]
    pipelines: Option<S<i64>>,
    #[serde(default)]
    backend: Option<S<String>>,
    #[serde(default)]
    ring: Option<S<RingSettings>>,
    #[serde(default)]
    fanout: Option<S<String>>,
    #[serde(default)]
    promiscuous: bool,
    #[serde(default)]
    user: Option<S<String>>,
    #[serde(default)]
    replay: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pace: Option<Pace>,
    #[serde(default)]
    replay_end: Option<ReplayEnd>,
    #[serde(default)]
    checksum_validation: Option<crate::flow::evidence::ChecksumValidation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    warrants: S<String>,
    case_dir: S<String>,
    spool_dir: S<String>,
    #[serde(default)]
    signing_key: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAssociations {
    #[serde(default)]
    listen: Option<S<String>>,
    #[serde(default)]
    events: Option<S<String>>,
    #[serde(default)]
    journal: Option<S<String>>,
    #[serde(default)]
    token_file: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawX1 {
    listen: S<String>,
    cert: S<String>,
    key: S<String>,
    client_ca: S<String>,
    #[serde(default)]
    store: Option<S<String>>,
    #[serde(default)]
    audit_log: Option<S<String>>,
    #[serde(default)]
    signing_key: Option<S<String>>,
    #[serde(default)]
    sign_every: Option<S<i64>>,
    #[serde(default)]
    ne_id: Option<S<String>>,
    #[serde(default)]
    four_eyes: Option<bool>,
    #[serde(default)]
    four_eyes_timeout_secs: Option<S<i64>>,
    #[serde(default)]
    bind_admf_identifier: Option<bool>,
    #[serde(default)]
    lea_template: Option<S<toml::Table>>,
    #[serde(default)]
    client: Vec<S<RawX1Client>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawX1Client {
    subject_cn: S<String>,
    role: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    max_flows: Option<S<i64>>,
    #[serde(default)]
    tcp_idle_secs: Option<S<i64>>,
    #[serde(default)]
    udp_idle_secs: Option<S<i64>>,
    #[serde(default)]
    per_direction_buffer: Option<S<i64>>,
    #[serde(default)]
    global_buffer: Option<S<i64>>,
    #[serde(default)]
    queue_batches: Option<S<i64>>,
    #[serde(default)]
    deliver_wait_secs: Option<S<i64>>,
    #[serde(default)]
    max_decoded_bytes: Option<S<i64>>,
    #[serde(default)]
    max_decode_ratio: Option<S<i64>>,
    #[serde(default)]
    every_digest: Option<bool>,
    #[serde(default)]
    inspect_time_limit_secs: Option<S<i64>>,
    #[serde(default)]
    inspect_max_image_bytes: Option<S<i64>>,
}

struct Ctx<'a> {
    text: &'a str,
    file: &'a str,
    base: &'a Path,
}

impl Ctx<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        crate::select::warrant::line_of(self.text, span.start)
    }

    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::At { file: self.file.to_string(), line: self.line(span), message: message.into() }
    }

    fn path(&self, s: &S<String>) -> Result<PathBuf, ConfigError> {
        let v = s.get_ref();
        if v.is_empty() || v.contains('\0') {
            return Err(self.err(s.span(), format!("bad path {v:?}")));
        }
        let p = Path::new(v);
        Ok(if p.is_absolute() { p.to_path_buf() } else { self.base.join(p) })
    }

    fn int(&self, v: &S<i64>, what: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
        let n = *v.get_ref();
        if n < min || n > max {
            return Err(self.err(v.span(), format!("{what} = {n}: must be in {min}..={max}")));
        }
        Ok(n)
    }
}

fn usize_of(n: i64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// `[capture]`.
fn parse_capture(cx: &Ctx<'_>, raw: S<RawCapture>) -> Result<CaptureConfig, ConfigError> {
    let cap_span = raw.span();
    let c = raw.into_inner();
    let mut interfaces = Vec::new();
    if let Some(list) = &c.interfaces {
        for i in list.get_ref() {
            let name = i.get_ref();
            // IFNAMSIZ is 16 with the NUL; '/' and whitespace are refused by the kernel.
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0', ':']) {
                return Err(cx.err(i.span(), format!("bad interface name {name:?}")));
            }
            if interfaces.contains(name) {
                return Err(cx.err(i.span(), format!("interface {name:?} listed twice")));
            }
            interfaces.push(name.clone());
        }
    }
    let mut replay = Vec::new();
    if let Some(list) = &c.replay {
        for f in list.get_ref() {
            replay.push(cx.path(f)?);
        }
    }
    match (interfaces.is_empty(), replay.is_empty()) {
        (true, true) => return Err(cx.err(cap_span, "[capture] needs `interfaces` (live) or `replay` (files)")),
        (false, false) => {
            let span = c.replay.as_ref().map_or(cap_span, |r| r.span());
            return Err(cx.err(span, "[capture]: `interfaces` and `replay` exclude each other"));
        }
        _ => {}
    }
    let workers = match &c.workers {
        Some(w) => usize_of(cx.int(w, "workers", 1, 64)?),
        None => 1,
    };
    let pipelines = match &c.pipelines {
        Some(w) => usize_of(cx.int(w, "pipelines", 1, 256)?),
        None => 1,
    };
    let backend = match &c.backend {
        None => Backend::AfPacket,
        Some(b) => {
            let backend = backend_named(b.get_ref(), cfg!(feature = "libpcap")).map_err(|m| cx.err(b.span(), m))?;
            if !replay.is_empty() {
                return Err(cx.err(b.span(), "`backend` only goes with `interfaces`"));
            }
            if backend == Backend::Libpcap && workers > 1 {
                let span = c.workers.as_ref().map_or(b.span(), |w| w.span());
                return Err(cx.err(
                    span,
                    format!(
                        "workers = {workers} with backend = \"libpcap\": libpcap has no fanout to share an \
                         interface between capture threads, so it takes workers = 1"
                    ),
                ));
            }
            backend
        }
    };
    let ring = match &c.ring {
        Some(r) => {
            let g = *r.get_ref();
            let bad = |m: String| Err(cx.err(r.span(), m));
            // TPACKET_V3: blocks are whole pages (a power of two pages for the kernel's
            // allocator), frames TPACKET_ALIGNMENT (16) aligned and fitting a block.
            if g.block_size < 4096 || !g.block_size.is_power_of_two() || g.block_size > (1 << 30) {
                return bad(format!("ring.block_size {} must be a power of two from 4096 to 2^30", g.block_size));
            }
            if g.frame_size < 128 || g.frame_size % 16 != 0 || g.frame_size > g.block_size {
                return bad(format!(
                    "ring.frame_size {} must be a multiple of 16, at least 128 and at most block_size",
                    g.frame_size
                ));
            }
            if g.block_count == 0 || u64::from(g.block_count) * u64::from(g.block_size) > (1 << 34) {
                return bad(format!(
                    "ring.block_count {} must be at least 1 and the ring at most 16 GiB",
                    g.block_count
                ));
            }
            if g.block_timeout_ms == 0 || g.block_timeout_ms > 10_000 {
                return bad(format!("ring.block_timeout_ms {} must be in 1..=10000", g.block_timeout_ms));
            }
            g
        }
        None => RingSettings::default(),
    };
    let user = match &c.user {
        Some(u) => {
            let name = u.get_ref();
            let ok = !name.is_empty()
                && name.len() <= 32
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                && !name.starts_with('-');
            if !ok {
                return Err(cx.err(u.span(), format!("bad user name {name:?}")));
            }
            Some(name.clone())
        }
        None => None,
    };
    if replay.is_empty() && (c.pace.is_some() || c.replay_end.is_some()) {
        return Err(cx.err(cap_span, "`pace` and `replay_end` only go with `replay`"));
    }
    use crate::capture::fanout::Fanout;
    let fanout = match c.fanout.as_ref().map(|f| (f.get_ref().as_str(), f.span())) {
        None | Some(("inner-pair", _)) => Fanout::InnerPair,
        Some(("flow-hash", _)) => Fanout::FlowHash,
        Some((other, span)) => {
            return Err(cx.err(span, format!("fanout = {other:?}: expected \"inner-pair\" or \"flow-hash\"")))
        }
    };
    let capture = CaptureConfig {
        interfaces,
        backend,
        workers,
        pipelines,
        ring,
        fanout,
        promiscuous: c.promiscuous,
        user,
        replay,
        pace: c.pace.unwrap_or(Pace::Fast),
        checksum_validation: c.checksum_validation.unwrap_or_default(),
        replay_end: c.replay_end.unwrap_or(ReplayEnd::Exit),
    };
    Ok(capture)
}

/// `[node]`.
fn parse_node(cx: &Ctx<'_>, raw: &S<RawNode>) -> Result<Role, ConfigError> {
    let n = raw.get_ref();
    let tls = match (&n.tls_ca, &n.tls_cert, &n.tls_key) {
        (Some(ca), Some(cert), Some(key)) => {
            Some(crate::deliver::handover::TlsFiles { ca: cx.path(ca)?, cert: cx.path(cert)?, key: cx.path(key)? })
        }
        (None, None, None) => None,
        _ => return Err(cx.err(raw.span(), "[node]: tls_ca, tls_cert and tls_key go together")),
    };
    // Keys that belong to the other role are refused: a POI key on an MDF is a mistake to show.
    fn only<T>(cx: &Ctx<'_>, key: &Option<S<T>>, name: &str, role: &str) -> Result<(), ConfigError> {
        match key {
            Some(k) => Err(cx.err(k.span(), format!("[node] {name} is for role = \"{role}\""))),
            None => Ok(()),
        }
    }
    match n.role.get_ref().as_str() {
        "poi" => {
            only(cx, &n.listen, "listen", "mdf")?;
            only(cx, &n.max_pdu, "max_pdu", "mdf")?;
            only(cx, &n.max_sessions, "max_sessions", "mdf")?;
            only(cx, &n.journal_max_bytes, "journal_max_bytes", "mdf")?;
            let mdf =
                n.mdf.as_ref().ok_or_else(|| cx.err(raw.span(), "[node] role = \"poi\" needs mdf = \"HOST:PORT\""))?;
            if mdf.get_ref().rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
                return Err(cx.err(mdf.span(), format!("mdf = {:?}: expected HOST:PORT", mdf.get_ref())));
            }
            let name = n.name.as_ref().ok_or_else(|| cx.err(raw.span(), "[node] role = \"poi\" needs a name"))?;
            if name.get_ref().is_empty() || name.get_ref().len() > 255 || name.get_ref().chars().any(char::is_control) {
                return Err(cx.err(name.span(), "[node] name: 1 to 255 characters, no control characters"));
            }
            let range = n.object_range.as_ref().ok_or_else(|| {
                cx.err(raw.span(), "[node] role = \"poi\" needs object_range (1..=65535, one per POI)")
            })?;
            Ok(Role::Poi(PoiConfig {
                mdf: mdf.get_ref().clone(),
                name: name.get_ref().clone(),
                object_range: cx.int(range, "object_range", 1, 65535)? as u16,
                tls,
                keepalive_secs: match &n.keepalive_secs {
                    Some(v) => cx.int(v, "keepalive_secs", 1, 3600)? as u64,
                    None => 10,
                },
                // A resend is told by its stream position, which never wraps; the bound keeps a
                // spool within what one disk holds without thought.
                max_spool_bytes: match &n.max_spool_bytes {
                    Some(v) => cx.int(v, "max_spool_bytes", 1 << 20, 1 << 40)? as u64,
                    None => 1 << 30,
                },
                write_per_pdu: n.write_per_pdu.as_ref().is_some_and(|v| *v.get_ref()),
            }))
        }
        "mdf" => {
            only(cx, &n.mdf, "mdf", "poi")?;
            only(cx, &n.name, "name", "poi")?;
            only(cx, &n.object_range, "object_range", "poi")?;
            only(cx, &n.keepalive_secs, "keepalive_secs", "poi")?;
            only(cx, &n.max_spool_bytes, "max_spool_bytes", "poi")?;
            only(cx, &n.write_per_pdu, "write_per_pdu", "poi")?;
            let l = n
                .listen
                .as_ref()
                .ok_or_else(|| cx.err(raw.span(), "[node] role = \"mdf\" needs listen = \"IP:PORT\""))?;
            let listen = l
                .get_ref()
                .parse::<SocketAddr>()
                .map_err(|_| cx.err(l.span(), format!("{:?}: expected IP:PORT", l.get_ref())))?;
            Ok(Role::Mdf(MdfConfig {
                listen,
                tls,
                max_pdu: match &n.max_pdu {
                    Some(v) => usize_of(cx.int(v, "max_pdu", 4096, 1 << 30)?),
                    None => crate::deliver::x2x3::pdu::DEFAULT_MAX_PDU,
                },
                max_sessions: match &n.max_sessions {
                    Some(v) => usize_of(cx.int(v, "max_sessions", 16, 1 << 28)?),
                    None => 1 << 20,
                },
                // The journal holds an epoch's PDUs (about what its case holds); full, it is
                // given up with an alarm, never a reason to stop.
                journal_max_bytes: match &n.journal_max_bytes {
                    Some(v) if *v.get_ref() == 0 => 0,
                    Some(v) => cx.int(v, "journal_max_bytes", 1 << 20, 1 << 50)? as u64,
                    None => 64 << 30,
                },
            }))
        }
        other => {
            Err(cx.err(n.role.span(), format!("role = {other:?}: expected \"poi\" or \"mdf\" (no [node]: all-in-one)")))
        }
    }
}

/// Parses and checks a configuration. `file` names it in messages and anchors relative paths.
pub fn parse_config(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let file_s = file.display().to_string();
    let base = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let cx = Ctx { text, file: &file_s, base };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| cx.line(s));
        let mut message = e.message().trim_end().to_string();
        if let Some(src) = text.lines().nth(line.saturating_sub(1)).map(str::trim).filter(|l| !l.is_empty()) {
            let src: String = src.chars().take(80).collect();
            message.push_str(&format!(" (in `{src}`)"));
        }
        ConfigError::At { file: file_s.clone(), line, message }
    })?;

    // [node], then [capture]: an MDF captures nothing.
    let role = match &raw.node {
        Some(n) => parse_node(&cx, n)?,
        None => Role::AllInOne,
    };
    let capture = match (raw.capture, &role) {
        (Some(c), Role::Mdf(_)) => {
            return Err(cx.err(c.span(), "an MDF (role = \"mdf\") captures nothing: no [capture]"))
        }
        (Some(c), _) => parse_capture(&cx, c)?,
        (None, Role::Mdf(_)) => CaptureConfig::none(),
        (None, _) => {
            return Err(ConfigError::At { file: file_s.clone(), line: 1, message: "missing [capture]".into() })
        }
    };

    // [paths]
    let p = raw.paths.into_inner();
    let paths = PathsConfig {
        warrants: cx.path(&p.warrants)?,
        case_dir: cx.path(&p.case_dir)?,
        spool_dir: cx.path(&p.spool_dir)?,
        signing_key: p.signing_key.as_ref().map(|k| cx.path(k)).transpose()?,
    };

    // [associations]
    let mut associations = AssociationsConfig::default();
    if let Some(a) = &raw.associations {
        if let Some(l) = &a.listen {
            associations.listen = Some(parse_listen(l.get_ref()).map_err(|m| cx.err(l.span(), m))?);
        }
        associations.events = a.events.as_ref().map(|e| cx.path(e)).transpose()?;
        associations.journal = a.journal.as_ref().map(|e| cx.path(e)).transpose()?;
        associations.token_file = a.token_file.as_ref().map(|e| cx.path(e)).transpose()?;
        if let (Some(ListenAddr::Tcp(_)), None, Some(l)) = (&associations.listen, &associations.token_file, &a.listen) {
            return Err(cx.err(l.span(), "a tcp: association feed needs token_file"));
        }
    }

    // [metrics]
    let metrics = match &raw.metrics {
        Some(m) => Some(
            m.listen
                .get_ref()
                .parse::<SocketAddr>()
                .map_err(|_| cx.err(m.listen.span(), format!("{:?}: expected IP:PORT", m.listen.get_ref())))?,
        ),
        None => None,
    };

    // [x1]
    let x1 = match &raw.x1 {
        Some(x) => {
            let r = x.get_ref();
            let listen = r
                .listen
                .get_ref()
                .parse::<SocketAddr>()
                .map_err(|_| cx.err(r.listen.span(), format!("{:?}: expected IP:PORT", r.listen.get_ref())))?;
            let mut clients: Vec<X1Client> = Vec::new();
            for cl in &r.client {
                let cl = cl.get_ref();
                let cn = cl.subject_cn.get_ref();
                if cn.is_empty() || cn.len() > 64 || cn.chars().any(char::is_control) {
                    return Err(cx.err(cl.subject_cn.span(), format!("bad subject_cn {cn:?}")));
                }
                if clients.iter().any(|c| &c.subject_cn == cn) {
                    return Err(cx.err(cl.subject_cn.span(), format!("subject_cn {cn:?} listed twice")));
                }
                let role = match cl.role.get_ref().as_str() {
                    "admf" => crate::x1::Role::Admf,
                    "auditor" => crate::x1::Role::Auditor,
                    role => return Err(cx.err(cl.role.span(), format!("role {role:?}: expected one of {X1_ROLES:?}"))),
                };
                clients.push(X1Client { subject_cn: cn.clone(), role });
            }
            if clients.is_empty() {
                return Err(cx.err(x.span(), "[x1] needs at least one [[x1.client]]"));
            }
            let Some(store) = r.store.as_ref().map(|s| cx.path(s)).transpose()? else {
                return Err(cx.err(x.span(), "[x1] needs store (a directory for the task store)"));
            };
            let audit_log = match &r.audit_log {
                Some(a) => cx.path(a)?,
                None => store.join("audit.jsonl"),
            };
            let ne_id = match &r.ne_id {
                Some(n) => {
                    let v = n.get_ref();
                    if v.is_empty() || v.len() > 256 || v.trim() != v || v.chars().any(char::is_control) {
                        return Err(cx.err(n.span(), format!("bad ne_id {v:?}")));
                    }
                    v.clone()
                }
                None => "tapir".to_string(),
            };
            let lea_template = r.lea_template.as_ref().map(|t| {
                let mut t = t.get_ref().clone();
                // X1 destinations supply these.
                for k in ["name", "hi2", "hi3"] {
                    t.remove(k);
                }
                t
            });
            Some(X1Config {
                listen,
                cert: cx.path(&r.cert)?,
                key: cx.path(&r.key)?,
                client_ca: cx.path(&r.client_ca)?,
                store,
                audit_log,
                signing_key: r.signing_key.as_ref().map(|s| cx.path(s)).transpose()?,
                sign_every: match &r.sign_every {
                    Some(v) => cx.int(v, "sign_every", 0, 1_000_000)? as u32,
                    None => 100,
                },
                ne_id,
                four_eyes: r.four_eyes.unwrap_or(false),
                four_eyes_timeout_secs: match &r.four_eyes_timeout_secs {
                    Some(v) => cx.int(v, "four_eyes_timeout_secs", 60, 30 * 86_400)?,
                    None => 3600,
                },
                bind_admf_identifier: r.bind_admf_identifier.unwrap_or(false),
                lea_template,
                clients,
            })
        }
        None => None,
    };

    // [limits]
    let mut limits = Limits::default();
    if let Some(l) = &raw.limits {
        const DAY: i64 = 86_400;
        if let Some(v) = &l.max_flows {
            limits.max_flows = usize_of(cx.int(v, "max_flows", 16, 1 << 28)?);
        }
        if let Some(v) = &l.tcp_idle_secs {
            limits.tcp_idle_secs = cx.int(v, "tcp_idle_secs", 1, DAY)? as u64;
        }
        if let Some(v) = &l.udp_idle_secs {
            limits.udp_idle_secs = cx.int(v, "udp_idle_secs", 1, DAY)? as u64;
        }
        if let Some(v) = &l.per_direction_buffer {
            limits.per_direction_buffer = usize_of(cx.int(v, "per_direction_buffer", 4096, 1 << 32)?);
        }
        if let Some(v) = &l.global_buffer {
            limits.global_buffer = usize_of(cx.int(v, "global_buffer", 65536, 1 << 40)?);
        }
        if let Some(v) = &l.queue_batches {
            limits.queue_batches = usize_of(cx.int(v, "queue_batches", 1, 65536)?);
        }
        if let Some(v) = &l.deliver_wait_secs {
            limits.deliver_wait_secs = cx.int(v, "deliver_wait_secs", 0, 3600)? as u64;
        }
        if let Some(v) = &l.max_decoded_bytes {
            limits.content.max_decoded_bytes = cx.int(v, "max_decoded_bytes", 4096, 1 << 44)? as u64;
        }
        if let Some(v) = &l.max_decode_ratio {
            limits.content.max_decode_ratio = cx.int(v, "max_decode_ratio", 1, 1 << 20)? as u64;
        }
        if let Some(v) = l.every_digest {
            limits.content.every_digest = v;
        }
        if let Some(v) = &l.inspect_time_limit_secs {
            limits.inspect_time_limit_secs = cx.int(v, "inspect_time_limit_secs", 0, 86400)? as u64;
        }
        if let Some(v) = &l.inspect_max_image_bytes {
            limits.inspect_max_image_bytes = cx.int(v, "inspect_max_image_bytes", 1 << 20, 1 << 50)? as u64;
        }
    }

    Ok(Config { file: file.to_path_buf(), capture, paths, associations, metrics, x1, limits, role })
}

/// Reads and parses a configuration file.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Io { file: path.display().to_string(), source })?;
    parse_config(&text, path)
}

/// What `check-config` found besides the config itself.
#[derive(Clone, Debug)]
pub struct Checked {
    pub config: Config,
    pub warrants: Warrants,
    pub leas: usize,
}

/// `tapir check-config`: the config, the warrants file it points to (and its `[[lea]]` tables
/// and their routes), the association events file and the replay files.
pub fn check(path: &Path) -> Result<Checked, ConfigError> {
    let config = load_config(path)?;
    let warrants = load_warrants(&config.paths.warrants).map_err(|e| ConfigError::Warrants(e.to_string()))?;
    let file = config.paths.warrants.display().to_string();
    let leas =
        crate::deliver::handover::parse_leas(&warrants.lea, &file).map_err(|e| ConfigError::Warrants(e.to_string()))?;
    for w in &warrants.warrants {
        if let Some(name) = &w.lea {
            if !leas.iter().any(|l| &l.name == name) {
                return Err(ConfigError::Warrants(format!(
                    "{file}:{}: warrant {} names lea {name:?}, which no [[lea]] table defines",
                    w.line, w.liid
                )));
            }
        }
    }
    if let Some(ev) = &config.associations.events {
        crate::select::load_events(ev).map_err(|e| ConfigError::Warrants(e.to_string()))?;
    }
    for f in &config.capture.replay {
        crate::capture::CaptureFile::open(f).map_err(|e| ConfigError::Warrants(e.to_string()))?;
    }
    let n = leas.len();
    Ok(Checked { config, warrants, leas: n })
}

/// The capture backend `name` names, in a build with (`libpcap_built`) or without the
/// `libpcap` feature.
fn backend_named(name: &str, libpcap_built: bool) -> Result<Backend, String> {
    match name {
        "af-packet" => Ok(Backend::AfPacket),
        "libpcap" if libpcap_built => Ok(Backend::Libpcap),
        "libpcap" => Err("backend = \"libpcap\": this tapir was built without libpcap support; rebuild it with \
                          `cargo build --release --features libpcap` (and the system's libpcap, e.g. libpcap-dev)"
            .to_string()),
        other => Err(format!("backend = {other:?}: expected \"af-packet\" or \"libpcap\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[capture]
interfaces = ["eth1"]
workers = 2
ring = { block_size = 4194304, block_count = 8, frame_size = 2048, block_timeout_ms = 10 }
[paths]
warrants = "/etc/tapir/warrants.toml"
case_dir = "case"
spool_dir = "/var/lib/tapir/spool"
[associations]
listen = "unix:/run/tapir/assoc.sock"
[metrics]
listen = "127.0.0.1:9108"
"#;

    #[test]
    fn good_config_parses_and_anchors_relative_paths() {
        let c = parse_config(GOOD, Path::new("/etc/tapir/tapir.toml")).unwrap();
        assert_eq!(c.capture.interfaces, vec!["eth1".to_string()]);
        assert_eq!(c.capture.workers, 2);
        assert_eq!(c.capture.ring.block_count, 8);
        assert_eq!(c.paths.case_dir, PathBuf::from("/etc/tapir/case"));
        assert_eq!(c.associations.listen, Some(ListenAddr::Unix("/run/tapir/assoc.sock".into())));
        assert_eq!(c.metrics, Some("127.0.0.1:9108".parse().unwrap()));
    }

    fn line_of_err(text: &str) -> (usize, String) {
        let e = parse_config(text, Path::new("t.toml")).unwrap_err();
        (e.line(), e.to_string())
    }

    #[test]
    fn errors_name_their_line() {
        let bad_key = GOOD.replace("workers = 2", "workers = 2\nworkrs = 3");
        let (line, msg) = line_of_err(&bad_key);
        assert_eq!(line, 5, "{msg}");
        assert!(msg.contains("workrs"), "{msg}");
        let bad_ring = GOOD.replace("block_size = 4194304", "block_size = 5000");
        assert_eq!(line_of_err(&bad_ring).0, 5);
        let bad_listen = GOOD.replace("unix:/run", "udp:/run");
        assert_eq!(line_of_err(&bad_listen).0, 11);
        let zero_workers = GOOD.replace("workers = 2", "workers = 0");
        assert_eq!(line_of_err(&zero_workers).0, 4);
    }

    #[test]
    fn evidence_and_decoding_settings() {
        let c = parse_config(GOOD, Path::new("t.toml")).unwrap();
        assert_eq!(c.capture.checksum_validation, crate::flow::evidence::ChecksumValidation::Auto);
        assert_eq!(c.limits.content, crate::content::ContentLimits::default());
        let text = format!(
            "{}\n[limits]\nmax_decoded_bytes = 1048576\nmax_decode_ratio = 50\nevery_digest = true\n",
            GOOD.replace("workers = 2", "workers = 2\nchecksum_validation = \"off\"")
        );
        let c = parse_config(&text, Path::new("t.toml")).unwrap();
        assert_eq!(c.capture.checksum_validation, crate::flow::evidence::ChecksumValidation::Off);
        let f = c.limits.flow_config();
        assert_eq!((f.content.max_decoded_bytes, f.content.max_decode_ratio), (1 << 20, 50));
        assert!(f.content.every_digest && !crate::content::ContentLimits::default().every_digest);
        let (_, msg) = line_of_err(&GOOD.replace("workers = 2", "workers = 2\nchecksum_validation = \"maybe\""));
        assert!(msg.contains("maybe"), "{msg}");
    }

    #[test]
    fn backend_names_and_unknown_backend() {
        let c = parse_config(&GOOD.replace("workers = 2", "workers = 2\nbackend = \"af-packet\""), Path::new("t.toml"))
            .unwrap();
        assert_eq!(c.capture.backend, Backend::AfPacket);
        assert_eq!(parse_config(GOOD, Path::new("t.toml")).unwrap().capture.backend, Backend::AfPacket);
        let (line, msg) = line_of_err(&GOOD.replace("workers = 2", "workers = 2\nbackend = \"dpdk\""));
        assert_eq!(line, 5, "{msg}");
        assert!(msg.contains("\"dpdk\"") && msg.contains("af-packet"), "{msg}");
    }

    #[test]
    fn fanout_by_inner_pair_unless_told_otherwise() {
        use crate::capture::fanout::Fanout;
        let parse = |t: &str| parse_config(t, Path::new("t.toml")).map(|c| c.capture.fanout);
        assert_eq!(parse(GOOD).unwrap(), Fanout::InnerPair);
        let with = |v: &str| GOOD.replace("workers = 2", &format!("workers = 2\nfanout = {v}"));
        assert_eq!(parse(&with("\"flow-hash\"")).unwrap(), Fanout::FlowHash);
        assert_eq!(parse(&with("\"inner-pair\"")).unwrap(), Fanout::InnerPair);
        let (line, msg) = line_of_err(&with("\"ebpf\""));
        assert_eq!(line, 5, "{msg}");
        assert!(msg.contains("\"ebpf\"") && msg.contains("inner-pair"), "{msg}");
    }

    // Both builds' answers, whichever this one is (CI tests with the feature on); the line
    // comes from this build's own parse. tests/capture_libpcap.rs runs the libpcap backend.
    #[test]
    fn libpcap_backend_in_a_build_without_the_feature_says_to_rebuild() {
        let msg = backend_named("libpcap", false).unwrap_err();
        assert!(msg.contains("--features libpcap"), "{msg}");
        assert_eq!(backend_named("libpcap", true), Ok(Backend::Libpcap));
        assert_eq!(backend_named("af-packet", false), Ok(Backend::AfPacket));
        let conf = GOOD.replace("workers = 2", "workers = 1\nbackend = \"libpcap\"");
        let parsed = parse_config(&conf, Path::new("t.toml"));
        if cfg!(feature = "libpcap") {
            assert_eq!(parsed.map(|c| c.capture.backend).ok(), Some(Backend::Libpcap));
        } else {
            let e = parsed.unwrap_err();
            assert_eq!(e.line(), 5, "{e}");
            assert!(e.to_string().contains("--features libpcap"), "{e}");
        }
    }

    #[test]
    fn feed_journal_and_token_file() {
        let tcp = GOOD.replace("unix:/run/tapir/assoc.sock", "tcp:127.0.0.1:7001");
        let (line, msg) = line_of_err(&tcp);
        assert_eq!(line, 11, "{msg}");
        assert!(msg.contains("token_file"), "{msg}");
        let ok = tcp.replace(
            "listen = \"tcp:127.0.0.1:7001\"",
            "listen = \"tcp:127.0.0.1:7001\"\ntoken_file = \"feed.token\"\njournal = \"/var/lib/tapir/j\"",
        );
        let c = parse_config(&ok, Path::new("/etc/tapir/tapir.toml")).unwrap();
        assert_eq!(c.associations.token_file, Some(PathBuf::from("/etc/tapir/feed.token")));
        assert_eq!(c.associations.journal, Some(PathBuf::from("/var/lib/tapir/j")));
    }
}
