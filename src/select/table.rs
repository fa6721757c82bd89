//! The association model and the per-packet selector table.
//!
//! [`Targeting`] holds the warrants, follows identity-association events (which subscriber holds
//! which address, which VM came from which image, which image from which VM) and keeps, for every
//! packet selector (address, MAC, VNI + address, CIDR), which warrants it serves and why.
//!
//! Sans-I/O: events and `now` are handed in. The per-packet path ([`Targeting::select`]) only
//! does hash lookups and a short CIDR scan and allocates nothing for a packet that matches no
//! warrant.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use smallvec::SmallVec;

use super::association::{AssocEvent, AssocEventKind, Port};
use super::warrant::{MacDisplay, TargetId, Warrant};
use super::{Liid, Match, Provenance};
use crate::decode::{Decoded, Mac};
use crate::record::ByIds;
use crate::timestamp::Timestamp;

/// What an association event changed for one LIID; becomes an IRI record of the association.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AssocChange {
    pub liid: Liid,
    pub ts: Timestamp,
    /// The event name, e.g. `instance.start`.
    pub what: String,
    /// The event's identifiers (the event line without `time` and `event`).
    pub detail: serde_json::Value,
    pub selectors_added: Vec<String>,
    pub selectors_removed: Vec<String>,
    /// Why the event concerns this LIID. `selector` names the entity the event is about
    /// (`vm:vm-42`, `image:img-9`, or the session's address selector).
    pub provenance: Arc<Provenance>,
}

/// A packet selector derived from an association.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
enum Sel {
    Ip(IpAddr),
    Mac(Mac),
    Vni(u32, IpAddr),
    /// A prefix delegated to an access session (checked by the CIDR scan).
    Net(IpNet),
}

impl Sel {
    /// An access session's selector: its address, or its prefix.
    fn access(net: IpNet) -> Sel {
        if net.prefix_len() == net.max_prefix_len() {
            Sel::Ip(net.addr())
        } else {
            Sel::Net(net)
        }
    }
}

impl fmt::Display for Sel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sel::Ip(IpAddr::V4(a)) => write!(f, "ipv4:{a}"),
            Sel::Ip(IpAddr::V6(a)) => write!(f, "ipv6:{a}"),
            Sel::Mac(m) => write!(f, "mac:{}", MacDisplay(m)),
            Sel::Vni(v, a) => write!(f, "vni:{v}/{a}"),
            Sel::Net(n) => write!(f, "cidr:{n}"),
        }
    }
}

/// Who put a selector entry in the table, so that ending one association removes only its own
/// entries even when a warrant also names the same address statically.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Source {
    Static,
    Session(u64),
    Instance(u64),
}

#[derive(Clone, Debug)]
struct Entry {
    w: usize,
    source: Source,
    prov: Arc<Provenance>,
}

type Entries = SmallVec<[Entry; 1]>;

/// The per-packet selector maps, looked up twice or more for every frame ([`ByIds`]: SipHash
/// was a tenth of the time of a replay with no target). Their keys are the selectors of
/// warrants and of the covered targets' associations (RADIUS seen on the tap included, but
/// only for a covered subscriber), so a crafted packet can look keys up but not fill a map
/// with colliding ones.
type SelectorMap<K> = ByIds<K, Entries>;

/// Why one warrant covers an entity: the warrant target it roots in and the steps from there.
#[derive(Clone, Debug)]
struct Cover {
    w: usize,
    target: String,
    chain: Chain,
}

/// Steps of a provenance chain shown in a record at most: the first, a note of how many are
/// left out, and the last ones.
pub const CHAIN_SHOWN: usize = 16;

/// The steps from a warrant target to an entity, shared: a derived image's chain is its parent's
/// plus one step, not a copy of it. Copied, a chain of N derivations cost O(N^2) memory and
/// output (2000 steps: a 243 MB `iri.jsonl`; 5000 steps: 1.6 GB of memory).
#[derive(Clone, Debug)]
struct Chain(Arc<ChainStep>);

#[derive(Debug)]
struct ChainStep {
    text: String,
    /// The first step of the chain (its root), kept at every step so rendering stays O(1).
    first: Arc<str>,
    prev: Option<Chain>,
    len: usize,
}

impl Chain {
    fn first(text: String) -> Chain {
        Chain(Arc::new(ChainStep { first: Arc::from(text.as_str()), text, prev: None, len: 1 }))
    }

    fn then(&self, text: &str) -> Chain {
        let s = &self.0;
        Chain(Arc::new(ChainStep {
            text: text.to_string(),
            first: s.first.clone(),
            prev: Some(self.clone()),
            len: s.len + 1,
        }))
    }

    /// The chain as a record shows it: every step when there are at most [`CHAIN_SHOWN`];
    /// otherwise the first, a note of how many are left out, and the last `CHAIN_SHOWN - 2`.
    /// The steps left out are not lost: each was the step of its own association event, recorded
    /// (with its own chain) when that event fell inside the warrant's window.
    fn render(&self) -> Vec<String> {
        let len = self.0.len;
        let tail = if len <= CHAIN_SHOWN { len } else { CHAIN_SHOWN - 2 };
        let mut out = Vec::with_capacity(tail.min(CHAIN_SHOWN) + 2);
        let mut at = Some(self);
        while let Some(c) = at.filter(|_| out.len() < tail) {
            out.push(c.0.text.clone());
            at = c.0.prev.as_ref();
        }
        if len > tail {
            out.push(format!(
                "... {} intermediate steps not repeated here (each is in the association record of its own event)",
                len - tail - 1
            ));
            out.push(self.0.first.to_string());
        }
        out.reverse();
        out
    }
}

impl Drop for ChainStep {
    /// Unlinks the steps one by one: dropping a long chain recursively would overflow the stack.
    fn drop(&mut self) {
        let mut prev = self.prev.take();
        while let Some(Chain(step)) = prev {
            prev = match Arc::try_unwrap(step) {
                Ok(mut step) => step.prev.take(),
                Err(_) => None,
            };
        }
    }
}

struct Session {
    id: u64,
    covers: Vec<Cover>,
}

struct Image {
    covers: Vec<Cover>,
}

struct Instance {
    id: u64,
    running: bool,
    sels: Vec<Sel>,
    /// Kept after the instance stops so that a snapshot of it is still covered.
    covers: Vec<Cover>,
}

type WarrantSet = SmallVec<[usize; 2]>;

/// Warrants, the association state and the selector table.
pub struct Targeting {
    warrants: Vec<Warrant>,
    by_ip: SelectorMap<IpAddr>,
    by_mac: SelectorMap<Mac>,
    by_vni: SelectorMap<(u32, IpAddr)>,
    cidrs: Vec<(IpNet, Entry)>,
    emails: Vec<(usize, String, Arc<Provenance>)>,
    // Warrant targets naming cloud identifiers.
    t_subscriber: HashMap<String, WarrantSet>,
    t_vm: HashMap<String, WarrantSet>,
    t_image: HashMap<String, WarrantSet>,
    t_sha256: HashMap<[u8; 32], WarrantSet>,
    // Association state, only for entities some warrant covers.
    sessions: HashMap<(String, IpNet), Session>,
    images: HashMap<String, Image>,
    instances: HashMap<String, Instance>,
    next_id: u64,
}

/// `ip=ADDR` for an access session's address, `prefix=NET` for its delegated prefix (as the
/// feed line says it).
fn access_field(net: &IpNet) -> String {
    match Sel::access(*net) {
        Sel::Ip(a) => format!("ip={a}"),
        _ => format!("prefix={net}"),
    }
}

/// RFC 3339 without trailing zero nanoseconds, for human-readable provenance steps.
fn short_ts(ts: Timestamp) -> String {
    match chrono::DateTime::from_timestamp(ts.secs(), ts.subsec_nanos()) {
        Some(dt) => dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => ts.to_string(),
    }
}

fn push_unique(covers: &mut Vec<Cover>, c: Cover) {
    if !covers.iter().any(|x| x.w == c.w) {
        covers.push(c);
    }
}

fn port_sels(ports: &[Port]) -> Vec<Sel> {
    let mut out = Vec::new();
    // Hashed: an instance may have tens of thousands of ports, and comparing each selector with
    // every earlier one made a start quadratic.
    let mut seen = std::collections::HashSet::new();
    for p in ports {
        let mut add = |s: Sel| {
            if seen.insert(s) {
                out.push(s);
            }
        };
        add(Sel::Mac(p.mac));
        for ip in &p.ips {
            add(match p.vni {
                Some(v) => Sel::Vni(v, *ip),
                None => Sel::Ip(*ip),
            });
        }
    }
    out
}

/// Whether an access event carries accounting details beyond the address (from RADIUS).
fn has_accounting(raw: &serde_json::Value) -> bool {
    ["acct_session_id", "nas_ip", "nas_identifier", "input_octets", "output_octets"]
        .iter()
        .any(|k| raw.get(k).is_some())
}

fn event_detail(ev: &AssocEvent) -> serde_json::Value {
    match &ev.raw {
        serde_json::Value::Object(m) => {
            let mut m = m.clone();
            m.remove("time");
            m.remove("event");
            serde_json::Value::Object(m)
        }
        other => other.clone(),
    }
}

impl Targeting {
    pub fn new(warrants: Vec<Warrant>) -> Targeting {
        let mut t = Targeting {
            warrants: Vec::new(),
            by_ip: SelectorMap::default(),
            by_mac: SelectorMap::default(),
            by_vni: SelectorMap::default(),
            cidrs: Vec::new(),
            emails: Vec::new(),
            t_subscriber: HashMap::new(),
            t_vm: HashMap::new(),
            t_image: HashMap::new(),
            t_sha256: HashMap::new(),
            sessions: HashMap::new(),
            images: HashMap::new(),
            instances: HashMap::new(),
            next_id: 0,
        };
        for (w, warrant) in warrants.iter().enumerate() {
            for target in &warrant.targets {
                let prov = || {
                    Arc::new(Provenance {
                        selector: target.to_string(),
                        target: target.to_string(),
                        // Not the warrants file's line: where a warrant sits in the file depends
                        // on the other warrants, which nothing an LEA receives may betray.
                        chain: vec![format!("warrant {} names {target}", warrant.liid)],
                    })
                };
                let entry = || Entry { w, source: Source::Static, prov: prov() };
                match target {
                    TargetId::Ip(a) => t.by_ip.entry(*a).or_default().push(entry()),
                    TargetId::Mac(m) => t.by_mac.entry(*m).or_default().push(entry()),
                    TargetId::VniAddr(v, a) => t.by_vni.entry((*v, *a)).or_default().push(entry()),
                    TargetId::Cidr(n) => t.cidrs.push((*n, entry())),
                    TargetId::Email(e) => t.emails.push((w, e.clone(), prov())),
                    TargetId::Subscriber(s) => t.t_subscriber.entry(s.clone()).or_default().push(w),
                    TargetId::Vm(v) => t.t_vm.entry(v.clone()).or_default().push(w),
                    TargetId::Image(i) => t.t_image.entry(i.clone()).or_default().push(w),
                    TargetId::ImageSha256(h) => t.t_sha256.entry(*h).or_default().push(w),
                }
            }
        }
        t.warrants = warrants;
        t
    }

    /// Whether a warrant names `subscriber` as its target.
    pub fn names_subscriber(&self, subscriber: &str) -> bool {
        self.t_subscriber.contains_key(subscriber)
    }

    pub fn warrants(&self) -> &[Warrant] {
        &self.warrants
    }

    /// The `email:` targets of the warrant with this LIID (for the mail analyzers).
    pub fn email_targets(&self, liid: &str) -> Vec<&str> {
        self.emails
            .iter()
            .filter(|(w, _, _)| self.warrants.get(*w).is_some_and(|x| &*x.liid == liid))
            .map(|(_, e, _)| e.as_str())
            .collect()
    }

    /// Appends one [`Match`] per warrant in force at `now` that names the email address `addr`
    /// (compared case-insensitively).
    pub fn select_email(&self, addr: &str, now: Timestamp, out: &mut SmallVec<[Match; 2]>) {
        let base = out.len();
        for (w, e, prov) in &self.emails {
            if e.eq_ignore_ascii_case(addr) {
                self.push_match(*w, prov, now, base, out);
            }
        }
    }

    /// Every selector in the table as (LIID, selector), sorted; for status output and tests.
    pub fn selectors(&self) -> Vec<(Liid, String)> {
        let mut out = Vec::new();
        let mut add = |e: &Entry| {
            if let Some(w) = self.warrants.get(e.w) {
                out.push((w.liid.clone(), e.prov.selector.clone()));
            }
        };
        self.by_ip.values().chain(self.by_mac.values()).chain(self.by_vni.values()).flatten().for_each(&mut add);
        self.cidrs.iter().for_each(|(_, e)| add(e));
        out.sort();
        out
    }

    fn push_match(
        &self,
        w: usize,
        prov: &Arc<Provenance>,
        now: Timestamp,
        base: usize,
        out: &mut SmallVec<[Match; 2]>,
    ) {
        let Some(warrant) = self.warrants.get(w) else { return };
        if !warrant.active(now) {
            return;
        }
        if out.get(base..).is_some_and(|s| s.iter().any(|m| *m.liid == *warrant.liid)) {
            return;
        }
        out.push(Match { liid: warrant.liid.clone(), scope: warrant.scope, provenance: prov.clone() });
    }

    fn push_entries(&self, entries: Option<&Entries>, now: Timestamp, base: usize, out: &mut SmallVec<[Match; 2]>) {
        for e in entries.into_iter().flatten() {
            self.push_match(e.w, &e.prov, now, base, out);
        }
    }

    /// Appends one [`Match`] per LIID whose warrant is in force at `now` and has a selector
    /// matching the packet's source or destination. The most specific selector is tried first
    /// (VNI + inner address, then inner addresses, inner MACs, tunnel outer addresses and MACs,
    /// CIDRs) and the first match of a LIID gives its provenance.
    pub fn select(&self, d: &Decoded<'_>, now: Timestamp, out: &mut SmallVec<[Match; 2]>) {
        let base = out.len();
        if let (false, Some(vni), Some(ip)) = (self.by_vni.is_empty(), d.overlay.vni(), d.ip) {
            self.push_entries(self.by_vni.get(&(vni, ip.src)), now, base, out);
            self.push_entries(self.by_vni.get(&(vni, ip.dst)), now, base, out);
        }
        if !self.by_ip.is_empty() {
            if let Some(ip) = d.ip {
                self.push_entries(self.by_ip.get(&ip.src), now, base, out);
                self.push_entries(self.by_ip.get(&ip.dst), now, base, out);
            }
        }
        if !self.by_mac.is_empty() {
            if let Some(m) = d.mac {
                self.push_entries(self.by_mac.get(&m.src), now, base, out);
                self.push_entries(self.by_mac.get(&m.dst), now, base, out);
            }
        }
        for t in &d.overlay.tunnels {
            if !self.by_ip.is_empty() {
                self.push_entries(self.by_ip.get(&t.outer_src), now, base, out);
                self.push_entries(self.by_ip.get(&t.outer_dst), now, base, out);
            }
            if let (false, Some(m)) = (self.by_mac.is_empty(), t.outer_mac) {
                self.push_entries(self.by_mac.get(&m.src), now, base, out);
                self.push_entries(self.by_mac.get(&m.dst), now, base, out);
            }
        }
        for (net, e) in &self.cidrs {
            let inner = d.ip.is_some_and(|ip| net.contains(&ip.src) || net.contains(&ip.dst));
            if inner || d.overlay.tunnels.iter().any(|t| net.contains(&t.outer_src) || net.contains(&t.outer_dst)) {
                self.push_match(e.w, &e.prov, now, base, out);
            }
        }
    }

    fn new_id(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    fn add_sels(&mut self, source: Source, covers: &[Cover], sels: &[Sel]) {
        for c in covers {
            for s in sels {
                let prov =
                    Arc::new(Provenance { selector: s.to_string(), target: c.target.clone(), chain: c.chain.render() });
                let e = Entry { w: c.w, source, prov };
                match *s {
                    Sel::Ip(a) => self.by_ip.entry(a).or_default().push(e),
                    Sel::Mac(m) => self.by_mac.entry(m).or_default().push(e),
                    Sel::Vni(v, a) => self.by_vni.entry((v, a)).or_default().push(e),
                    Sel::Net(n) => self.cidrs.push((n, e)),
                }
            }
        }
    }

    fn remove_sels(&mut self, source: Source, sels: &[Sel]) {
        fn strip<K: std::hash::Hash + Eq>(map: &mut SelectorMap<K>, k: K, source: Source) {
            if let Some(v) = map.get_mut(&k) {
                v.retain(|e| e.source != source);
                if v.is_empty() {
                    map.remove(&k);
                }
            }
        }
        for s in sels {
            match *s {
                Sel::Ip(a) => strip(&mut self.by_ip, a, source),
                Sel::Mac(m) => strip(&mut self.by_mac, m, source),
                Sel::Vni(v, a) => strip(&mut self.by_vni, (v, a), source),
                Sel::Net(n) => self.cidrs.retain(|(m, e)| !(*m == n && e.source == source)),
            }
        }
    }

    fn warrants_for(map: &HashMap<String, WarrantSet>, key: &str) -> WarrantSet {
        map.get(key).cloned().unwrap_or_default()
    }

    /// Applies one event (in time order) and returns one change per LIID it concerns whose
    /// warrant is in force at the event's time. The association state is updated whatever the
    /// windows: a VM started before a warrant begins is selected once it does.
    pub fn apply(&mut self, ev: &AssocEvent) -> Vec<AssocChange> {
        let mut changes = Changes { ev, detail: None, out: Vec::new() };
        let t = short_ts(ev.ts);
        match &ev.kind {
            AssocEventKind::AccessStart { subscriber, net } => {
                let key = (subscriber.clone(), *net);
                if let Some(s) = self.sessions.get(&key) {
                    // The session is known (an Interim-Update, or RADIUS after the feed): nothing
                    // changes in selection, but accounting details (NAS, octets, session id) are
                    // IRI the warrants covering it are owed.
                    if !has_accounting(&ev.raw) {
                        return Vec::new();
                    }
                    let sel = Sel::access(*net);
                    for c in s.covers.clone() {
                        changes.add(self, &c, sel.to_string(), &[], &[]);
                    }
                    return changes.out;
                }
                let target = format!("subscriber:{subscriber}");
                let step = format!("{t} access.start subscriber={subscriber} {}", access_field(net));
                let covers: Vec<Cover> = Self::warrants_for(&self.t_subscriber, subscriber)
                    .into_iter()
                    .map(|w| Cover { w, target: target.clone(), chain: Chain::first(step.clone()) })
                    .collect();
                if covers.is_empty() {
                    return Vec::new();
                }
                let id = self.new_id();
                let sel = [Sel::access(*net)];
                self.add_sels(Source::Session(id), &covers, &sel);
                for c in &covers {
                    changes.add(self, c, sel[0].to_string(), &sel, &[]);
                }
                self.sessions.insert(key, Session { id, covers });
            }
            AssocEventKind::AccessStop { subscriber, net } => {
                if let Some(s) = self.sessions.remove(&(subscriber.clone(), *net)) {
                    let sel = [Sel::access(*net)];
                    self.remove_sels(Source::Session(s.id), &sel);
                    let step = format!("{t} access.stop subscriber={subscriber} {}", access_field(net));
                    for c in &s.covers {
                        let c = Cover { w: c.w, target: c.target.clone(), chain: c.chain.then(&step) };
                        changes.add(self, &c, sel[0].to_string(), &[], &sel);
                    }
                }
            }
            AssocEventKind::ImageCreate { image, owner, name, sha256, from_instance, from_image, .. } => {
                let mut step = format!("{t} image.create {image} owner={owner}");
                if let Some(n) = name {
                    step.push_str(&format!(" name={n}"));
                }
                if let Some(v) = from_instance {
                    step.push_str(&format!(" from_instance={v}"));
                }
                if let Some(i) = from_image {
                    step.push_str(&format!(" from_image={i}"));
                }
                let mut covers = Vec::new();
                for w in Self::warrants_for(&self.t_image, image) {
                    push_unique(
                        &mut covers,
                        Cover { w, target: format!("image:{image}"), chain: Chain::first(step.clone()) },
                    );
                }
                if let Some(h) = sha256 {
                    for w in self.t_sha256.get(h).cloned().unwrap_or_default() {
                        let hx = hex::encode(h);
                        let chain = Chain::first(format!("{step} (sha256 {hx} named by the warrant)"));
                        push_unique(&mut covers, Cover { w, target: format!("image-sha256:{hx}"), chain });
                    }
                }
                for w in Self::warrants_for(&self.t_subscriber, owner) {
                    let chain = Chain::first(format!("{step} (created by target subscriber {owner})"));
                    push_unique(&mut covers, Cover { w, target: format!("subscriber:{owner}"), chain });
                }
                if let Some(src) = from_instance.as_ref().and_then(|v| self.instances.get(v)) {
                    let why =
                        format!("{step} (snapshot of covered instance {})", from_instance.as_deref().unwrap_or(""));
                    for c in &src.covers {
                        push_unique(&mut covers, Cover { w: c.w, target: c.target.clone(), chain: c.chain.then(&why) });
                    }
                }
                if let Some(src) = from_image.as_ref().and_then(|i| self.images.get(i)) {
                    let why = format!("{step} (derived from covered image {})", from_image.as_deref().unwrap_or(""));
                    for c in &src.covers {
                        push_unique(&mut covers, Cover { w: c.w, target: c.target.clone(), chain: c.chain.then(&why) });
                    }
                }
                for c in &covers {
                    changes.add(self, c, format!("image:{image}"), &[], &[]);
                }
                if covers.is_empty() {
                    self.images.remove(image);
                } else {
                    self.images.insert(image.clone(), Image { covers });
                }
            }
            AssocEventKind::ImageShare { image, visibility } => {
                if let Some(img) = self.images.get(image) {
                    let step = format!("{t} image.share {image} visibility={visibility}");
                    for c in &img.covers {
                        let c = Cover { w: c.w, target: c.target.clone(), chain: c.chain.then(&step) };
                        changes.add(self, &c, format!("image:{image}"), &[], &[]);
                    }
                }
            }
            AssocEventKind::ImageDelete { image, by } => {
                // VMs already running from it keep their own covers until they stop.
                if let Some(img) = self.images.remove(image) {
                    let step = format!("{t} image.delete {image} by={}", by.as_deref().unwrap_or("?"));
                    for c in &img.covers {
                        let c = Cover { w: c.w, target: c.target.clone(), chain: c.chain.then(&step) };
                        changes.add(self, &c, format!("image:{image}"), &[], &[]);
                    }
                }
            }
            AssocEventKind::InstanceStart { instance, owner, image, ports } => {
                // A start of a known instance begins a new lifetime: end the old one first.
                if let Some(old) = self.instances.remove(instance) {
                    if old.running {
                        self.remove_sels(Source::Instance(old.id), &old.sels);
                        for c in &old.covers {
                            changes.add(self, c, format!("vm:{instance}"), &[], &old.sels);
                        }
                    }
                }
                let step =
                    format!("{t} instance.start {instance} owner={owner} image={}", image.as_deref().unwrap_or("-"));
                let mut covers = Vec::new();
                for w in Self::warrants_for(&self.t_vm, instance) {
                    push_unique(
                        &mut covers,
                        Cover { w, target: format!("vm:{instance}"), chain: Chain::first(step.clone()) },
                    );
                }
                for w in Self::warrants_for(&self.t_subscriber, owner) {
                    let chain = Chain::first(format!("{step} (owned by target subscriber {owner})"));
                    push_unique(&mut covers, Cover { w, target: format!("subscriber:{owner}"), chain });
                }
                if let Some(i) = image {
                    for w in Self::warrants_for(&self.t_image, i) {
                        let chain = Chain::first(format!("{step} (launched from target image {i})"));
                        push_unique(&mut covers, Cover { w, target: format!("image:{i}"), chain });
                    }
                    if let Some(img) = self.images.get(i) {
                        let why = format!("{step} (launched from covered image {i})");
                        for c in &img.covers {
                            push_unique(
                                &mut covers,
                                Cover { w: c.w, target: c.target.clone(), chain: c.chain.then(&why) },
                            );
                        }
                    }
                }
                if !covers.is_empty() {
                    let id = self.new_id();
                    let sels = port_sels(ports);
                    self.add_sels(Source::Instance(id), &covers, &sels);
                    for c in &covers {
                        changes.add(self, c, format!("vm:{instance}"), &sels, &[]);
                    }
                    self.instances.insert(instance.clone(), Instance { id, running: true, sels, covers });
                }
            }
            AssocEventKind::InstanceStop { instance } => {
                let mut removed = None;
                if let Some(inst) = self.instances.get_mut(instance) {
                    if inst.running {
                        inst.running = false;
                        removed = Some((inst.id, std::mem::take(&mut inst.sels), inst.covers.clone()));
                    }
                }
                if let Some((id, sels, covers)) = removed {
                    self.remove_sels(Source::Instance(id), &sels);
                    let step = format!("{t} instance.stop {instance}");
                    for c in &covers {
                        let c = Cover { w: c.w, target: c.target.clone(), chain: c.chain.then(&step) };
                        changes.add(self, &c, format!("vm:{instance}"), &[], &sels);
                    }
                }
            }
        }
        changes.out
    }
}

/// Builds the changes of one event, one per LIID, dropping LIIDs whose window excludes it.
struct Changes<'e> {
    ev: &'e AssocEvent,
    detail: Option<serde_json::Value>,
    out: Vec<AssocChange>,
}

impl Changes<'_> {
    fn add(&mut self, t: &Targeting, c: &Cover, entity: String, added: &[Sel], removed: &[Sel]) {
        let Some(w) = t.warrants.get(c.w) else { return };
        if !w.active(self.ev.ts) {
            return;
        }
        let strs = |s: &[Sel]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        if let Some(ch) = self.out.iter_mut().find(|ch| *ch.liid == *w.liid) {
            ch.selectors_added.extend(strs(added));
            ch.selectors_removed.extend(strs(removed));
            if !added.is_empty() {
                // The provenance of what is in force now, not of what was just ended.
                ch.provenance =
                    Arc::new(Provenance { selector: entity, target: c.target.clone(), chain: c.chain.render() });
            }
            return;
        }
        let detail = self.detail.get_or_insert_with(|| event_detail(self.ev)).clone();
        self.out.push(AssocChange {
            liid: w.liid.clone(),
            ts: self.ev.ts,
            what: self.ev.kind.name().to_string(),
            detail,
            selectors_added: strs(added),
            selectors_removed: strs(removed),
            provenance: Arc::new(Provenance { selector: entity, target: c.target.clone(), chain: c.chain.render() }),
        });
    }
}
