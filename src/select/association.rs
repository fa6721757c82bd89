//! Identity-association events from the cloud control plane, one JSON object per line.
//!
//! They are modelled on OpenStack notifications and say which subscriber holds which address,
//! who created which image and which VM was launched from which image with which ports. The feed
//! is untrusted input: every malformed line is an [`EventError`] naming `file:line` and the field,
//! never a panic. Unknown extra keys are tolerated (control planes add fields), unknown event
//! kinds are not (they would silently lose an association).

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::warrant::parse_mac;
use crate::decode::Mac;
use crate::timestamp::Timestamp;

/// One port of an instance: its MAC, its addresses and, on an overlay network, the VNI in which
/// those addresses are meaningful.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub mac: Mac,
    pub ips: Vec<IpAddr>,
    pub vni: Option<u32>,
}

/// What happened, with its identifiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssocEventKind {
    /// A subscriber's access session got an address or a prefix (RADIUS/DHCP-like): `net` is
    /// the address as a /32 or /128, or the delegated prefix (`"prefix"` in the feed, e.g.
    /// RADIUS Delegated-IPv6-Prefix), host bits cleared.
    AccessStart {
        subscriber: String,
        net: IpNet,
    },
    AccessStop {
        subscriber: String,
        net: IpNet,
    },
    /// An image was uploaded (`from_instance: None`) or snapshotted from an instance.
    /// `from_image` is an optional extension: an image copied or converted from another.
    ImageCreate {
        image: String,
        owner: String,
        name: Option<String>,
        sha256: Option<[u8; 32]>,
        md5: Option<[u8; 16]>,
        sha512: Option<[u8; 64]>,
        from_instance: Option<String>,
        from_image: Option<String>,
    },
    ImageShare {
        image: String,
        visibility: String,
    },
    ImageDelete {
        image: String,
        by: Option<String>,
    },
    InstanceStart {
        instance: String,
        owner: String,
        image: Option<String>,
        ports: Vec<Port>,
    },
    InstanceStop {
        instance: String,
    },
}

impl AssocEventKind {
    /// The event name as written in the feed, e.g. `instance.start`.
    pub fn name(&self) -> &'static str {
        match self {
            AssocEventKind::AccessStart { .. } => "access.start",
            AssocEventKind::AccessStop { .. } => "access.stop",
            AssocEventKind::ImageCreate { .. } => "image.create",
            AssocEventKind::ImageShare { .. } => "image.share",
            AssocEventKind::ImageDelete { .. } => "image.delete",
            AssocEventKind::InstanceStart { .. } => "instance.start",
            AssocEventKind::InstanceStop { .. } => "instance.stop",
        }
    }
}

/// The widest prefixes an access session may be given.
pub const MIN_ACCESS_PREFIX_V4: u8 = 16;
pub const MIN_ACCESS_PREFIX_V6: u8 = 32;

/// One parsed event line.
#[derive(Clone, Debug, PartialEq)]
pub struct AssocEvent {
    pub ts: Timestamp,
    /// 1-based line in the feed it came from.
    pub line: usize,
    pub kind: AssocEventKind,
    /// The line as parsed, for records that quote the event.
    pub raw: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: not a JSON object: {message}")]
    Json { file: String, line: usize, message: String },
    #[error("{file}:{line}: missing field {field:?}")]
    Missing { file: String, line: usize, field: String },
    #[error("{file}:{line}: bad {field:?} value {value}: {reason}")]
    BadField { file: String, line: usize, field: String, value: String, reason: &'static str },
    #[error("{file}:{line}: unknown event {event:?}")]
    UnknownEvent { file: String, line: usize, event: String },
}

impl EventError {
    /// The 1-based line the error points at (0 for I/O errors).
    pub fn line(&self) -> usize {
        match self {
            EventError::Io { .. } => 0,
            EventError::Json { line, .. }
            | EventError::Missing { line, .. }
            | EventError::BadField { line, .. }
            | EventError::UnknownEvent { line, .. } => *line,
        }
    }
}

/// Field access on one line's object, with errors that carry `file:line`.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    file: &'a str,
    line: usize,
}

impl<'a> Fields<'a> {
    fn missing(&self, field: &str) -> EventError {
        EventError::Missing { file: self.file.to_string(), line: self.line, field: field.to_string() }
    }

    fn bad(&self, field: &str, value: &Value, reason: &'static str) -> EventError {
        let mut v = value.to_string();
        if v.len() > 80 {
            let mut cut = 77;
            while !v.is_char_boundary(cut) {
                cut -= 1;
            }
            v.truncate(cut);
            v.push_str("...");
        }
        EventError::BadField {
            file: self.file.to_string(),
            line: self.line,
            field: field.to_string(),
            value: v,
            reason,
        }
    }

    /// A present, non-null field.
    fn opt(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn id_of(&self, field: &str, v: &Value) -> Result<String, EventError> {
        match v.as_str() {
            Some(s) if !s.is_empty() && s.len() <= 255 && !s.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                Ok(s.to_string())
            }
            _ => Err(self.bad(field, v, "expected a non-empty identifier without whitespace")),
        }
    }

    fn id(&self, field: &str) -> Result<String, EventError> {
        let v = self.opt(field).ok_or_else(|| self.missing(field))?;
        self.id_of(field, v)
    }

    fn opt_id(&self, field: &str) -> Result<Option<String>, EventError> {
        self.opt(field).map(|v| self.id_of(field, v)).transpose()
    }

    fn opt_text(&self, field: &str) -> Result<Option<String>, EventError> {
        match self.opt(field) {
            None => Ok(None),
            Some(v) => v.as_str().map(|s| Some(s.to_string())).ok_or_else(|| self.bad(field, v, "expected a string")),
        }
    }

    fn ip_of(&self, field: &str, v: &Value) -> Result<IpAddr, EventError> {
        v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| self.bad(field, v, "expected an IP address"))
    }

    /// An access session's `"ip"` (one address) or `"prefix"` (CIDR), exactly one of them. A
    /// prefix wider than one subscriber is given (IPv4 /16, IPv6 /32) is refused: a hostile or
    /// mistaken feed line must not turn a warrant on one subscriber into one on a network.
    fn access_net(&self) -> Result<IpNet, EventError> {
        match (self.opt("ip"), self.opt("prefix")) {
            (Some(v), None) => self.ip_of("ip", v).map(IpNet::from),
            (None, Some(v)) => {
                let net: IpNet = v
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| self.bad("prefix", v, "expected an address/length prefix"))?;
                let narrow_enough = match net {
                    IpNet::V4(n) => n.prefix_len() >= MIN_ACCESS_PREFIX_V4,
                    IpNet::V6(n) => n.prefix_len() >= MIN_ACCESS_PREFIX_V6,
                };
                if !narrow_enough {
                    return Err(self.bad("prefix", v, "wider than one subscriber's (IPv4 /16, IPv6 /32 at most)"));
                }
                Ok(net.trunc())
            }
            (Some(v), Some(_)) => Err(self.bad("prefix", v, "give \"ip\" or \"prefix\", not both")),
            (None, None) => Err(self.missing("ip")),
        }
    }

    fn digest<const N: usize>(&self, field: &str) -> Result<Option<[u8; N]>, EventError> {
        let Some(v) = self.opt(field) else { return Ok(None) };
        let mut out = [0u8; N];
        match v.as_str() {
            Some(s) if s.len() == 2 * N && hex::decode_to_slice(s, &mut out).is_ok() => Ok(Some(out)),
            _ => Err(self.bad(field, v, "expected a hex digest of the right length")),
        }
    }

    fn ports(&self) -> Result<Vec<Port>, EventError> {
        let Some(v) = self.opt("ports") else { return Ok(Vec::new()) };
        let arr = v.as_array().ok_or_else(|| self.bad("ports", v, "expected an array"))?;
        let mut ports = Vec::with_capacity(arr.len().min(64));
        for p in arr {
            let po = p.as_object().ok_or_else(|| self.bad("ports", p, "expected an object per port"))?;
            let mac_v = po.get("mac").filter(|v| !v.is_null()).ok_or_else(|| self.missing("ports[].mac"))?;
            let mac =
                mac_v.as_str().and_then(parse_mac).ok_or_else(|| self.bad("ports[].mac", mac_v, "expected a MAC"))?;
            let mut ips = Vec::new();
            if let Some(iv) = po.get("ips").filter(|v| !v.is_null()) {
                let ia = iv.as_array().ok_or_else(|| self.bad("ports[].ips", iv, "expected an array"))?;
                for a in ia {
                    let ip = self.ip_of("ports[].ips", a)?;
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
            }
            let vni = match po.get("vni").filter(|v| !v.is_null()) {
                None => None,
                Some(vv) => Some(
                    vv.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| self.bad("ports[].vni", vv, "expected a 32-bit unsigned number"))?,
                ),
            };
            ports.push(Port { mac, ips, vni });
        }
        Ok(ports)
    }
}

/// Parses one event line (`line` is 1-based, `file` for messages).
pub fn parse_event(text: &str, file: &str, line: usize) -> Result<AssocEvent, EventError> {
    let raw: Value = serde_json::from_str(text).map_err(|e| EventError::Json {
        file: file.to_string(),
        line,
        message: e.to_string(),
    })?;
    let obj = raw.as_object().ok_or_else(|| EventError::Json {
        file: file.to_string(),
        line,
        message: "expected an object".to_string(),
    })?;
    let f = Fields { obj, file, line };
    let time_v = f.opt("time").ok_or_else(|| f.missing("time"))?;
    let ts = time_v
        .as_str()
        .and_then(Timestamp::parse_rfc3339)
        .ok_or_else(|| f.bad("time", time_v, "expected an RFC 3339 date-time with offset"))?;
    let ev_v = f.opt("event").ok_or_else(|| f.missing("event"))?;
    let event = ev_v.as_str().ok_or_else(|| f.bad("event", ev_v, "expected a string"))?;
    let kind = match event {
        "access.start" => AssocEventKind::AccessStart { subscriber: f.id("subscriber")?, net: f.access_net()? },
        "access.stop" => AssocEventKind::AccessStop { subscriber: f.id("subscriber")?, net: f.access_net()? },
        "image.create" => AssocEventKind::ImageCreate {
            image: f.id("image")?,
            owner: f.id("owner")?,
            name: f.opt_text("name")?,
            sha256: f.digest::<32>("sha256")?,
            md5: f.digest::<16>("md5")?,
            sha512: f.digest::<64>("sha512")?,
            from_instance: f.opt_id("from_instance")?,
            from_image: f.opt_id("from_image")?,
        },
        "image.share" => AssocEventKind::ImageShare {
            image: f.id("image")?,
            visibility: f.opt_text("visibility")?.unwrap_or_else(|| "shared".to_string()),
        },
        "image.delete" => AssocEventKind::ImageDelete { image: f.id("image")?, by: f.opt_id("by")? },
        "instance.start" => AssocEventKind::InstanceStart {
            instance: f.id("instance")?,
            owner: f.id("owner")?,
            image: f.opt_id("image")?,
            ports: f.ports()?,
        },
        "instance.stop" => AssocEventKind::InstanceStop { instance: f.id("instance")? },
        other => {
            return Err(EventError::UnknownEvent { file: file.to_string(), line, event: other.to_string() });
        }
    };
    Ok(AssocEvent { ts, line, kind, raw })
}

/// Parses a JSON-lines feed; blank lines are skipped. The result is sorted stably by time, the
/// order in which the events must be applied.
pub fn parse_events(text: &str, file: &str) -> Result<Vec<AssocEvent>, EventError> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        out.push(parse_event(l, file, i + 1)?);
    }
    out.sort_by_key(|e| e.ts);
    Ok(out)
}

/// Reads and parses a JSON-lines feed.
pub fn load_events(path: &Path) -> Result<Vec<AssocEvent>, EventError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| EventError::Io { file: file.clone(), source })?;
    parse_events(&text, &file)
}

/// An associations file read as a stream, for a replay: memory follows the events pending,
/// not the file's length (a million-line file took 2 GB loaded whole).
///
/// [`EventFile::open`] reads the whole file once, parsing every line, so that a bad line is
/// still refused with its `file:line` before anything runs, and finds out whether the lines are
/// in time order. Only then can they be applied as they are read; a file out of order has to be
/// loaded and sorted ([`load_events`]). The iterator reads it a second time, line by line.
pub struct EventFile {
    path: std::path::PathBuf,
    events: usize,
    in_time_order: bool,
}

impl EventFile {
    /// Checks every line of `path` (the first bad one is the error) and its order.
    pub fn open(path: &Path) -> Result<EventFile, EventError> {
        use std::io::BufRead;
        let file = path.display().to_string();
        let io_err = |source| EventError::Io { file: file.clone(), source };
        let reader = std::io::BufReader::new(std::fs::File::open(path).map_err(io_err)?);
        let (mut events, mut in_time_order, mut last) = (0usize, true, Timestamp::MIN);
        for (i, l) in reader.lines().enumerate() {
            let l = l.map_err(io_err)?;
            if l.trim().is_empty() {
                continue;
            }
            let ev = parse_event(&l, &file, i + 1)?;
            in_time_order &= ev.ts >= last;
            last = last.max(ev.ts);
            events += 1;
        }
        Ok(EventFile { path: path.to_path_buf(), events, in_time_order })
    }

    /// Events in the file.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Whether every line's time is at or after the line before's: the events can be streamed.
    pub fn in_time_order(&self) -> bool {
        self.in_time_order
    }

    /// The events, read again as they are asked for. A line that no longer parses (the file
    /// changed since [`EventFile::open`]) is an `Err` and reading goes on.
    pub fn stream(&self) -> Result<EventStream, EventError> {
        let file = self.path.display().to_string();
        let f = std::fs::File::open(&self.path).map_err(|source| EventError::Io { file: file.clone(), source })?;
        Ok(EventStream { lines: std::io::BufRead::lines(std::io::BufReader::new(f)), file, line: 0, done: false })
    }
}

/// The events of an [`EventFile`], in file order.
pub struct EventStream {
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    file: String,
    line: usize,
    done: bool,
}

impl Iterator for EventStream {
    type Item = Result<AssocEvent, EventError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let l = self.lines.next()?;
            self.line += 1;
            match l {
                Ok(l) if l.trim().is_empty() => continue,
                Ok(l) => return Some(parse_event(&l, &self.file, self.line)),
                Err(source) => {
                    // An unreadable file reads no further.
                    self.done = true;
                    return Some(Err(EventError::Io { file: self.file.clone(), source }));
                }
            }
        }
        None
    }
}

/// Which events of a history can be forgotten without changing what applying the rest leaves
/// behind (`true` = forget). `events` must be in the order they are applied: by time, stable.
///
/// Why: RADIUS accounting on a busy tap yields an access.start per session and per Interim-Update
/// and an access.stop per session, for months. The pipeline keeps the events it applied (a reload
/// applies them again to the new warrants) and the daemon journals them (a restart applies them
/// again), so without forgetting, both grow without end.
///
/// What is forgotten, access sessions only (image and instance events build lineage that stays
/// relevant, and are few):
/// - a repeated access.start of a session already started (Interim-Update): [`super::Targeting`]
///   ignores it once the first has been applied;
/// - a whole session, its first start to its stop, when the stop is at or before `until`: after
///   the stop nothing of it is left, whatever warrants are applied;
/// - an access.stop (at or before `until`) that ends no session.
///
/// `until` keeps recent sessions for a pipeline whose capture time could still be before their
/// stop (a replay); a pipeline forgetting only events it has applied passes [`Timestamp::MAX`].
pub fn forgettable(events: &[&AssocEvent], until: Timestamp) -> Vec<bool> {
    let mut forget = vec![false; events.len()];
    // (subscriber, address or prefix) -> index of the open session's first start.
    let mut open: std::collections::HashMap<(&str, IpNet), usize> = std::collections::HashMap::new();
    for (i, ev) in events.iter().enumerate() {
        match &ev.kind {
            AssocEventKind::AccessStart { subscriber, net } => match open.entry((subscriber.as_str(), *net)) {
                std::collections::hash_map::Entry::Occupied(_) => forget[i] = true,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(i);
                }
            },
            AssocEventKind::AccessStop { subscriber, net } => {
                let first = open.remove(&(subscriber.as_str(), *net));
                if ev.ts > until {
                    continue;
                }
                forget[i] = true;
                if let Some(f) = first {
                    forget[f] = true;
                }
            }
            _ => {}
        }
    }
    forget
}

/// A history still longer than `cap` after [`forgettable`]: marks in `forget` the starts of
/// open access sessions too, oldest first (`events` in the order they are applied), those
/// `expendable` picks before any other, until three quarters of `cap` are kept. Returns how many
/// it marked.
///
/// Why: forgetting handles churn, but a flood of starts without stops (a misbehaving NAS,
/// packets injected on a tap) has nothing to forget. Losing a start from the history costs only
/// a later re-application (reload, restart) that session, until its next Interim-Update
/// restates it; image and instance events build lineage and are kept.
pub fn over_cap(
    events: &[&AssocEvent],
    forget: &mut [bool],
    cap: usize,
    expendable: impl Fn(&AssocEvent) -> bool,
) -> usize {
    let kept = forget.iter().filter(|f| !**f).count();
    let mut excess = kept.saturating_sub(cap - cap / 4);
    if kept < cap || excess == 0 {
        return 0;
    }
    let mut marked = 0;
    for pick_expendable in [true, false] {
        for (ev, f) in events.iter().zip(forget.iter_mut()) {
            if excess == 0 {
                return marked;
            }
            let start = matches!(ev.kind, AssocEventKind::AccessStart { .. });
            if start && !*f && (!pick_expendable || expendable(ev)) {
                *f = true;
                excess -= 1;
                marked += 1;
            }
        }
    }
    marked
}

#[cfg(test)]
mod forget_tests {
    use super::*;

    fn ev(s: i64, what: &str, sub: &str, ip: &str) -> AssocEvent {
        let t = Timestamp::from_secs(s).to_rfc3339();
        parse_event(&format!(r#"{{"time":"{t}","event":"{what}","subscriber":"{sub}","ip":"{ip}"}}"#), "t", 1).unwrap()
    }

    #[test]
    fn sessions_ended_by_until_and_repeats_go_the_rest_stays() {
        let evs = [
            ev(1, "access.start", "a", "10.0.0.1"), // 0: a's session, ended at 4: forgotten
            ev(2, "access.start", "a", "10.0.0.1"), // 1: repeat: forgotten
            ev(3, "access.stop", "x", "10.0.0.9"),  // 2: ends nothing: forgotten
            ev(4, "access.stop", "a", "10.0.0.1"),  // 3
            ev(5, "access.start", "b", "10.0.0.2"), // 4: b's session ends after `until`: kept
            ev(6, "access.start", "b", "10.0.0.2"), // 5: repeat: forgotten anyway
            ev(9, "access.stop", "b", "10.0.0.2"),  // 6: after until: kept
            ev(9, "access.start", "a", "10.0.0.1"), // 7: a's new session, open: kept
        ];
        let refs: Vec<&AssocEvent> = evs.iter().collect();
        let f = forgettable(&refs, Timestamp::from_secs(8));
        assert_eq!(f, [true, true, true, true, false, true, false, false]);
    }
}
