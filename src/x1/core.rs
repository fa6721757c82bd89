//! The X1 state machine: tasks, destinations, four-eyes approvals, roles, statistics.
//!
//! Every change is applied to a copy of the state, persisted, and only then made current, so a
//! request that could not be stored is answered with an error and leaves nothing half-done.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::message::{
    self, close_response, el, error_response, open_response, write_destination_details, write_faults,
    write_task_details, DestinationDetails, Envelope, ErrorCode, Limits, Message, ParseError, Request, TaskDetails,
    X1Fault,
};
use super::store::Store;
use super::{Action, Caller, Reply, Role, X1Error};
use crate::record::{Liid, LiidError};
use crate::select::{Scope, TargetId, Warrant, Warrants};
use crate::timestamp::Timestamp;

/// Configuration of the core.
#[derive(Clone, Debug)]
pub struct X1CoreConfig {
    /// Our `neIdentifier`; requests addressed to another NE are refused (1060).
    pub ne_id: String,
    /// ActivateTask and ModifyTask take effect only when a second, different ADMF identity sends
    /// the same request (see docs/x1.md).
    pub four_eyes: bool,
    /// A first approval not confirmed within this many seconds is dropped.
    pub four_eyes_timeout_secs: i64,
    /// Refuse (1030) a request whose `admfIdentifier` is not the client certificate's CN.
    pub bind_admf_identifier: bool,
    pub limits: Limits,
    /// Keys every generated `[[lea]]` table gets (operator_id, tls_*, integrity, ...); `name`,
    /// `hi2` and `hi3` are filled from the destination. `None`: `warrants()` returns no LEAs.
    pub lea_template: Option<toml::Table>,
}

impl X1CoreConfig {
    pub fn new(ne_id: &str) -> X1CoreConfig {
        X1CoreConfig {
            ne_id: ne_id.to_string(),
            four_eyes: false,
            four_eyes_timeout_secs: 3600,
            bind_admf_identifier: false,
            limits: Limits::default(),
            lea_template: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Task {
    details: TaskDetails,
    /// Nanoseconds; the start of a mediation window without StartTime.
    activated_at: i64,
    modified_at: Option<i64>,
    modifications: u64,
}

#[derive(Copy, Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
enum PendingKind {
    Activate,
    Modify,
}

impl PendingKind {
    fn name(self) -> &'static str {
        match self {
            PendingKind::Activate => "ActivateTask",
            PendingKind::Modify => "ModifyTask",
        }
    }
}

/// A first approval waiting for the second (four-eyes).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Pending {
    kind: PendingKind,
    details: TaskDetails,
    by_cn: String,
    by_fingerprint: String,
    at: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct State {
    format: u32,
    generation: u64,
    tasks: BTreeMap<String, Task>,
    destinations: BTreeMap<String, DestinationDetails>,
    pending: BTreeMap<String, Pending>,
}

const STATE_FORMAT: u32 = 1;

/// Traffic counters of one LIID, fed by the daemon; not persisted.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LiidStats {
    pub last: Option<Timestamp>,
    pub x2_bytes: u64,
    pub x3_bytes: u64,
}

/// A destination as an LEA of tapir's delivery: HI2 and HI3 both go to its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X1Lea {
    /// The DID; warrants name it as their `lea`.
    pub name: String,
    pub friendly_name: Option<String>,
    pub address: SocketAddr,
    pub delivery: message::DeliveryType,
}

impl X1Lea {
    /// A `[[lea]]` table for `crate::deliver::handover::parse_leas`: `template` plus name/hi2/hi3.
    pub fn to_lea_table(&self, template: &toml::Table) -> toml::Value {
        let mut t = template.clone();
        t.insert("name".into(), toml::Value::String(self.name.clone()));
        t.insert("hi2".into(), toml::Value::String(self.address.to_string()));
        t.insert("hi3".into(), toml::Value::String(self.address.to_string()));
        toml::Value::Table(t)
    }
}

/// One mediation of a task, resolved: what becomes a [`Warrant`].
struct Plan {
    liid: Liid,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    scope: Scope,
    did: String,
}

fn scope_of(parts: (bool, bool)) -> Option<Scope> {
    match parts {
        (true, true) => Some(Scope::IriAndCc),
        (true, false) => Some(Scope::Iri),
        (false, true) => Some(Scope::Cc),
        (false, false) => None,
    }
}

fn covers(dest: message::DeliveryType, scope: Scope) -> bool {
    let (iri, cc) = dest.parts();
    (iri || !scope.iri()) && (cc || !scope.cc())
}

fn ts(s: &Option<String>) -> Option<Timestamp> {
    s.as_deref().and_then(Timestamp::parse_rfc3339)
}

const READ_ONLY: &[&str] = &[
    "GetTaskDetails",
    "GetAllTaskDetails",
    "GetDestinationDetails",
    "GetAllDestinationDetails",
    "GetNEStatus",
    "GetAllDetails",
    "ListAllDetails",
    "Ping",
    "Keepalive",
];

/// The X1 core. Not `Sync` by design: the server serialises requests through one `&mut`.
#[derive(Debug)]
pub struct X1Core {
    cfg: X1CoreConfig,
    store: Store,
    state: State,
    stats: HashMap<String, LiidStats>,
    dest_faults: HashMap<String, String>,
}

/// The outcome of one request message.
struct Outcome {
    body: Result<String, X1Fault>,
    result: String,
    detail: Option<String>,
}

impl Outcome {
    fn ok(body: String) -> Outcome {
        Outcome { body: Ok(body), result: "ok".into(), detail: None }
    }
    fn err(f: X1Fault) -> Outcome {
        Outcome { result: f.code.number().to_string(), detail: Some(f.description.clone()), body: Err(f) }
    }
}

const OK: &str = "<oK>AcknowledgedAndCompleted</oK>";

impl X1Core {
    /// Opens the store in `store_dir` and loads the last committed state.
    pub fn open(store_dir: &Path, cfg: X1CoreConfig) -> Result<X1Core, X1Error> {
        if cfg.ne_id.trim().is_empty() || cfg.ne_id.trim() != cfg.ne_id || cfg.ne_id.chars().any(char::is_control) {
            return Err(X1Error::Config(format!("ne_id {:?} must be a non-empty token", cfg.ne_id)));
        }
        let (store, snapshot) = Store::open(store_dir)?;
        let state = match snapshot {
            Some(bytes) => parse_state(&store.state_path(), &bytes)?,
            None => State { format: STATE_FORMAT, ..State::default() },
        };
        Ok(X1Core { cfg, store, state, stats: HashMap::new(), dest_faults: HashMap::new() })
    }

    /// (tasks, destinations) of the store in `store_dir`, read without creating or changing
    /// anything (for `tapir check-config`); (0, 0) when there is no store yet.
    pub fn inspect(store_dir: &Path) -> Result<(usize, usize), X1Error> {
        let path = store_dir.join(super::store::STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => parse_state(&path, &bytes).map(|s| (s.tasks.len(), s.destinations.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, 0)),
            Err(source) => Err(X1Error::Io { path: path.display().to_string(), source }),
        }
    }

    /// Bumps on every change of tasks or destinations (not on statistics).
    pub fn generation(&self) -> u64 {
        self.state.generation
    }

    /// Statistics hook: the daemon reports traffic delivered for `liid`.
    pub fn note_intercept(&mut self, liid: &str, now: Timestamp, x2_bytes: u64, x3_bytes: u64) {
        let known = self.state.tasks.values().any(|t| t.details.mediation.iter().flatten().any(|m| m.liid == liid));
        if !known {
            return;
        }
        let s = self.stats.entry(liid.to_string()).or_default();
        s.last = Some(s.last.map_or(now, |l| l.max(now)));
        s.x2_bytes = s.x2_bytes.saturating_add(x2_bytes);
        s.x3_bytes = s.x3_bytes.saturating_add(x3_bytes);
    }

    pub fn stats(&self, liid: &str) -> LiidStats {
        self.stats.get(liid).copied().unwrap_or_default()
    }

    /// Delivery-health hook: a fault (or `None` when cleared) of the LEA named by `did`.
    pub fn set_destination_fault(&mut self, did: &str, fault: Option<String>) {
        match fault {
            Some(f) => {
                self.dest_faults.insert(did.to_string(), f);
            }
            None => {
                self.dest_faults.remove(did);
            }
        }
    }

    /// Delivery-health hook, all destinations at once: `fault(did)` for each destination,
    /// `Some(why)` when it has a fault and `None` when it has none, or no news (left as it was).
    /// Faults of destinations that are gone are dropped. Returns the DIDs whose fault changed,
    /// with the new fault, for the log.
    pub fn update_destination_faults(
        &mut self,
        mut fault: impl FnMut(&str) -> Option<Option<String>>,
    ) -> Vec<(String, Option<String>)> {
        let mut changed = Vec::new();
        self.dest_faults.retain(|did, _| self.state.destinations.contains_key(did));
        for did in self.state.destinations.keys() {
            let Some(new) = fault(did) else { continue };
            let old = self.dest_faults.get(did);
            if old != new.as_ref() {
                changed.push((did.clone(), new.clone()));
                match new {
                    Some(f) => self.dest_faults.insert(did.clone(), f),
                    None => self.dest_faults.remove(did),
                };
            }
        }
        changed
    }

    /// The destinations as LEAs.
    pub fn leas(&self) -> Vec<X1Lea> {
        self.state
            .destinations
            .values()
            .map(|d| X1Lea {
                name: d.did.clone(),
                friendly_name: d.friendly_name.clone(),
                address: SocketAddr::new(d.address, d.port),
                delivery: d.delivery,
            })
            .collect()
    }

    /// `[[lea]]` tables for every destination, built on `template`.
    pub fn lea_tables(&self, template: &toml::Table) -> Vec<toml::Value> {
        self.leas().iter().map(|l| l.to_lea_table(template)).collect()
    }

    /// The active tasks as warrants: one per mediationDetails (LIID), window from StartTime /
    /// EndTime or the task's lifetime, `lea` = the DID. Warrants that ended before `now` are left out.
    pub fn warrants(&self, now: Timestamp) -> Warrants {
        let mut warrants = Vec::new();
        for task in self.state.tasks.values() {
            let Ok(plans) = self.plan(&task.details, ErrorCode::Generic) else { continue };
            let targets: Vec<TargetId> = dedup(task.details.targets.iter().filter_map(|t| t.target_id().ok()));
            for p in plans {
                let end = p.end.unwrap_or(Timestamp::MAX);
                if end <= now {
                    continue;
                }
                warrants.push(Warrant {
                    liid: p.liid.clone(),
                    start: p.start.unwrap_or(Timestamp(task.activated_at)),
                    end,
                    scope: p.scope,
                    targets: targets.clone(),
                    lea: Some(p.did),
                    // Checked as a UUID when the task was made (TS 103 280 pattern).
                    xid: crate::record::Xid::parse(&task.details.xid)
                        .unwrap_or_else(|| crate::record::Xid::derived(&p.liid)),
                    line: 0,
                });
            }
        }
        let lea = match &self.cfg.lea_template {
            Some(t) => self.lea_tables(t),
            None => Vec::new(),
        };
        let destinations = self.leas().into_iter().map(|l| (l.name, l.address)).collect();
        Warrants { warrants, lea, destinations }
    }

    /// Implicit deactivation and four-eyes expiry; also run at the start of every `handle`.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Action> {
        let mut next = self.state.clone();
        let mut actions = Vec::new();
        let expired: Vec<String> = next
            .tasks
            .iter()
            .filter(|(_, t)| {
                t.details.implicit_deactivation_allowed == Some(true)
                    && t.details
                        .mediation
                        .as_ref()
                        .is_some_and(|ms| !ms.is_empty() && ms.iter().all(|m| ts(&m.end).is_some_and(|e| e <= now)))
            })
            .map(|(x, _)| x.clone())
            .collect();
        for xid in expired {
            if let Some(t) = next.tasks.remove(&xid) {
                actions.push(Action {
                    what: "ImplicitDeactivation".into(),
                    liid: liids(&t.details),
                    xid: Some(xid),
                    did: None,
                    result: "ok".into(),
                    detail: Some("all mediation windows ended".into()),
                });
            }
        }
        let limit = now.add_secs(-self.cfg.four_eyes_timeout_secs.max(0)).nanos();
        let stale: Vec<String> = next.pending.iter().filter(|(_, p)| p.at < limit).map(|(x, _)| x.clone()).collect();
        for xid in stale {
            if let Some(p) = next.pending.remove(&xid) {
                actions.push(Action {
                    what: p.kind.name().into(),
                    liid: liids(&p.details),
                    xid: Some(xid),
                    did: None,
                    result: "expired".into(),
                    detail: Some(format!("four-eyes: no second approval within {}s", self.cfg.four_eyes_timeout_secs)),
                });
            }
        }
        if !actions.is_empty() {
            if let Err(f) = self.commit(next) {
                for a in &mut actions {
                    a.result = f.code.number().to_string();
                    a.detail = Some(f.description.clone());
                }
            }
        }
        actions
    }

    /// Answers one request body from `caller`.
    pub fn handle(&mut self, caller: &Caller<'_>, body: &[u8], now: Timestamp) -> Reply {
        let mut actions = self.tick(now);
        let messages = match message::parse_request(body, &self.cfg.limits) {
            Ok(m) => m,
            Err(e) => {
                let admf = if !caller.subject_cn.is_empty()
                    && caller.subject_cn.len() <= 256
                    && !caller.subject_cn.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    caller.subject_cn
                } else {
                    "unknown"
                };
                actions.push(Action {
                    what: "X1Request".into(),
                    xid: None,
                    did: None,
                    liid: None,
                    result: "refused".into(),
                    detail: Some(e.to_string()),
                });
                let http_status = if matches!(e, ParseError::TooLarge { .. }) { 413 } else { 200 };
                return Reply { http_status, body: message::top_level_error(admf, &self.cfg.ne_id, now), actions };
            }
        };
        let mut out = String::new();
        for m in &messages {
            let (xid, did) = ids_of(m);
            let outcome = self.one(caller, m, now);
            let liid = match &m.body {
                Ok(Request::ActivateTask(t)) | Ok(Request::ModifyTask(t)) => liids(t),
                _ => xid.as_ref().and_then(|x| self.state.tasks.get(x)).and_then(|t| liids(&t.details)),
            };
            let env = Envelope {
                admf_identifier: &m.header.admf_identifier,
                ne_identifier: &self.cfg.ne_id,
                now,
                transaction_id: &m.header.transaction_id,
            };
            match &outcome.body {
                Ok(inner) => {
                    open_response(&mut out, &format!("{}Response", m.kind), &env);
                    out.push_str(inner);
                    close_response(&mut out);
                }
                Err(f) => error_response(&mut out, &env, m.kind, f),
            }
            actions.push(Action {
                what: m.kind.into(),
                xid,
                did,
                liid,
                result: outcome.result,
                detail: outcome.detail,
            });
        }
        Reply { http_status: 200, body: message::response_document(&out), actions }
    }

    fn one(&mut self, caller: &Caller<'_>, m: &Message, now: Timestamp) -> Outcome {
        if caller.role == Role::Auditor && !READ_ONLY.contains(&m.kind) {
            let f = X1Fault::new(ErrorCode::Generic, format!("role auditor may not send {}", m.kind));
            return Outcome { result: "refused".into(), detail: Some(f.description.clone()), body: Err(f) };
        }
        if m.header.ne_identifier != self.cfg.ne_id {
            return Outcome::err(X1Fault::new(
                ErrorCode::UnexpectedNeIdentifier,
                format!("this NE is {:?}", self.cfg.ne_id),
            ));
        }
        if self.cfg.bind_admf_identifier && m.header.admf_identifier != caller.subject_cn {
            return Outcome::err(X1Fault::new(
                ErrorCode::AdmfIdentifierMismatch,
                "admfIdentifier is not the client certificate's CN",
            ));
        }
        let req = match &m.body {
            Ok(r) => r,
            Err(f) => return Outcome::err(f.clone()),
        };
        match req {
            Request::ActivateTask(td) => self.activate(caller, td, now),
            Request::ModifyTask(td) => self.modify(caller, td, now),
            Request::DeactivateTask(xid) => {
                let mut next = self.state.clone();
                let removed = next.tasks.remove(xid).is_some();
                let cancelled = next.pending.remove(xid).is_some();
                if !removed && !cancelled {
                    return Outcome::err(X1Fault::new(ErrorCode::XidDoesNotExist, format!("no task {xid}")));
                }
                self.commit_ok(next)
            }
            Request::DeactivateAllTasks => {
                let mut next = self.state.clone();
                let n = next.tasks.len();
                next.tasks.clear();
                next.pending.clear();
                let mut o = self.commit_ok(next);
                if o.body.is_ok() {
                    o.detail = Some(format!("{n} tasks deactivated"));
                }
                o
            }
            Request::GetTaskDetails(xid) => match self.task_response(xid) {
                Some(s) => Outcome::ok(s),
                None => Outcome::err(X1Fault::new(ErrorCode::XidDoesNotExist, format!("no task {xid}"))),
            },
            Request::GetAllTaskDetails => Outcome::ok(format!("<listOfTaskResponseDetails>{}</listOfTaskResponseDetails>", self.all_tasks())),
            Request::CreateDestination(d) => {
                if self.state.destinations.contains_key(&d.did) {
                    return Outcome::err(X1Fault::new(ErrorCode::DidAlreadyExists, format!("destination {} exists", d.did)));
                }
                let mut next = self.state.clone();
                next.destinations.insert(d.did.clone(), d.clone());
                self.commit_ok(next)
            }
            Request::ModifyDestination(d) => {
                if !self.state.destinations.contains_key(&d.did) {
                    return Outcome::err(X1Fault::new(ErrorCode::DidDoesNotExist, format!("no destination {}", d.did)));
                }
                let mut next = self.state.clone();
                next.destinations.insert(d.did.clone(), d.clone());
                // A destination may not stop carrying what a task delivers through it.
                for t in next.tasks.values() {
                    if let Err(f) = plan_in(&next, &t.details, ErrorCode::ModifyDestinationFailure) {
                        return Outcome::err(X1Fault::new(
                            ErrorCode::ModifyDestinationFailure,
                            format!("task {} would break: {}", t.details.xid, f.description),
                        ));
                    }
                }
                self.commit_ok(next)
            }
            Request::RemoveDestination(did) => {
                if !self.state.destinations.contains_key(did) {
                    return Outcome::err(X1Fault::new(ErrorCode::DidDoesNotExist, format!("no destination {did}")));
                }
                if let Some(x) = self.users_of(did).first() {
                    return Outcome::err(X1Fault::new(ErrorCode::DestinationInUse, format!("task {x} delivers to {did}")));
                }
                let mut next = self.state.clone();
                next.destinations.remove(did);
                self.commit_ok(next)
            }
            Request::RemoveAllDestinations => {
                let in_use = self.state.destinations.keys().find(|d| !self.users_of(d).is_empty());
                if let Some(d) = in_use {
                    return Outcome::err(X1Fault::new(ErrorCode::DestinationsInUse, format!("destination {d} is in use")));
                }
                let mut next = self.state.clone();
                next.destinations.clear();
                self.commit_ok(next)
            }
            Request::GetDestinationDetails(did) => match self.state.destinations.get(did) {
                Some(d) => {
                    let mut s = String::new();
                    self.destination_response(&mut s, d);
                    Outcome::ok(s)
                }
                None => Outcome::err(X1Fault::new(ErrorCode::DidDoesNotExist, format!("no destination {did}"))),
            },
            Request::GetAllDestinationDetails => Outcome::ok(format!(
                "<listOfDestinationResponseDetails>{}</listOfDestinationResponseDetails>",
                self.all_destinations()
            )),
            Request::GetNEStatus => Outcome::ok(self.ne_status()),
            Request::GetAllDetails => Outcome::ok(format!(
                "{}<listOfTaskResponseDetails>{}</listOfTaskResponseDetails><listOfDestinationResponseDetails>{}</listOfDestinationResponseDetails>",
                self.ne_status(),
                self.all_tasks(),
                self.all_destinations()
            )),
            Request::ListAllDetails => {
                let mut s = String::from("<ListOfXIDs>");
                let mut xids: Vec<&String> = self.state.tasks.keys().chain(self.state.pending.keys()).collect();
                xids.sort();
                xids.dedup();
                for x in xids {
                    el(&mut s, "xId", x);
                }
                s.push_str("</ListOfXIDs><ListOfDIDs>");
                for d in self.state.destinations.keys() {
                    el(&mut s, "dId", d);
                }
                s.push_str("</ListOfDIDs>");
                Outcome::ok(s)
            }
            Request::Ping | Request::Keepalive => Outcome::ok(OK.to_string()),
        }
    }

    fn activate(&mut self, caller: &Caller<'_>, td: &TaskDetails, now: Timestamp) -> Outcome {
        if self.state.tasks.contains_key(&td.xid) {
            return Outcome::err(X1Fault::new(ErrorCode::XidAlreadyExists, format!("task {} exists", td.xid)));
        }
        if let Some(p) = self.state.pending.get(&td.xid) {
            if p.kind != PendingKind::Activate {
                return Outcome::err(X1Fault::new(ErrorCode::XidAlreadyExists, format!("task {} exists", td.xid)));
            }
        }
        if let Err(f) = self.validate(td, ErrorCode::ActivateTaskFailure) {
            return Outcome::err(f);
        }
        let task = Task { details: td.clone(), activated_at: now.nanos(), modified_at: None, modifications: 0 };
        self.four_eyes(caller, PendingKind::Activate, td, now, move |next| {
            next.tasks.insert(task.details.xid.clone(), task);
        })
    }

    fn modify(&mut self, caller: &Caller<'_>, td: &TaskDetails, now: Timestamp) -> Outcome {
        let Some(old) = self.state.tasks.get(&td.xid).cloned() else {
            return Outcome::err(X1Fault::new(ErrorCode::XidDoesNotExist, format!("no task {}", td.xid)));
        };
        if let Err(f) = self.validate(td, ErrorCode::ModifyTaskFailure) {
            return Outcome::err(f);
        }
        let task = Task {
            details: td.clone(),
            activated_at: old.activated_at,
            modified_at: Some(now.nanos()),
            modifications: old.modifications.saturating_add(1),
        };
        self.four_eyes(caller, PendingKind::Modify, td, now, move |next| {
            next.tasks.insert(task.details.xid.clone(), task);
        })
    }

    /// Applies `apply` now, or (four-eyes) records or confirms an approval.
    fn four_eyes(
        &mut self,
        caller: &Caller<'_>,
        kind: PendingKind,
        td: &TaskDetails,
        now: Timestamp,
        apply: impl FnOnce(&mut State),
    ) -> Outcome {
        let mut next = self.state.clone();
        if !self.cfg.four_eyes {
            apply(&mut next);
            return self.commit_ok(next);
        }
        match next.pending.get(&td.xid) {
            None => {
                next.pending.insert(
                    td.xid.clone(),
                    Pending {
                        kind,
                        details: td.clone(),
                        by_cn: caller.subject_cn.to_string(),
                        by_fingerprint: caller.fingerprint.to_string(),
                        at: now.nanos(),
                    },
                );
                match self.commit(next) {
                    Ok(()) => Outcome {
                        body: Ok("<oK>Acknowledged</oK>".into()),
                        result: "pending".into(),
                        detail: Some(format!("four-eyes: first approval by {}", caller.subject_cn)),
                    },
                    Err(f) => Outcome::err(f),
                }
            }
            Some(p) => {
                let failure = match kind {
                    PendingKind::Activate => ErrorCode::ActivateTaskFailure,
                    PendingKind::Modify => ErrorCode::ModifyTaskFailure,
                };
                if p.kind != kind {
                    return Outcome::err(X1Fault::new(
                        failure,
                        format!("four-eyes: a {} of this task is awaiting approval", p.kind.name()),
                    ));
                }
                if p.by_fingerprint == caller.fingerprint || p.by_cn == caller.subject_cn {
                    return Outcome::err(X1Fault::new(
                        failure,
                        "four-eyes: the second approval must come from a different ADMF identity",
                    ));
                }
                if p.details != *td {
                    return Outcome::err(X1Fault::new(
                        failure,
                        "four-eyes: the request differs from the one awaiting approval",
                    ));
                }
                let first = p.by_cn.clone();
                next.pending.remove(&td.xid);
                apply(&mut next);
                let mut o = self.commit_ok(next);
                if o.body.is_ok() {
                    o.detail = Some(format!("four-eyes: approved by {first} and {}", caller.subject_cn));
                }
                o
            }
        }
    }

    fn commit(&mut self, mut next: State) -> Result<(), X1Fault> {
        next.generation = self.state.generation.wrapping_add(1);
        next.format = STATE_FORMAT;
        let bytes = serde_json::to_vec(&next)
            .map_err(|e| X1Fault::new(ErrorCode::Generic, format!("could not serialise the state: {e}")))?;
        self.store.save(&bytes).map_err(|e| X1Fault::new(ErrorCode::Generic, format!("could not persist: {e}")))?;
        self.state = next;
        Ok(())
    }

    fn commit_ok(&mut self, next: State) -> Outcome {
        match self.commit(next) {
            Ok(()) => Outcome::ok(OK.to_string()),
            Err(f) => Outcome::err(f),
        }
    }

    /// XIDs of tasks (active or awaiting approval) that deliver to `did`.
    fn users_of(&self, did: &str) -> Vec<String> {
        let uses = |t: &TaskDetails| {
            t.dids.iter().chain(t.mediation.iter().flatten().flat_map(|m| m.dids.iter().flatten())).any(|d| d == did)
        };
        self.state
            .tasks
            .values()
            .map(|t| &t.details)
            .chain(self.state.pending.values().map(|p| &p.details))
            .filter(|t| uses(t))
            .map(|t| t.xid.clone())
            .collect()
    }

    fn plan(&self, td: &TaskDetails, failure: ErrorCode) -> Result<Vec<Plan>, X1Fault> {
        plan_in(&self.state, td, failure)
    }

    /// Everything that must hold before a task is accepted.
    fn validate(&self, td: &TaskDetails, failure: ErrorCode) -> Result<(), X1Fault> {
        for (i, t) in td.targets.iter().enumerate() {
            t.target_id()
                .map_err(|why| X1Fault::new(failure, format!("targetIdentifier #{} ({}): {why}", i + 1, t.kind())))?;
        }
        let plans = self.plan(td, failure)?;
        for (i, p) in plans.iter().enumerate() {
            if plans.iter().take(i).any(|q| q.liid == p.liid) {
                return Err(X1Fault::new(failure, format!("LIID {} appears twice in the task", p.liid)));
            }
            let other = self
                .state
                .tasks
                .values()
                .map(|t| &t.details)
                .chain(self.state.pending.values().map(|p| &p.details))
                .find(|t| t.xid != td.xid && t.mediation.iter().flatten().any(|m| m.liid == p.liid.as_str()));
            if let Some(t) = other {
                return Err(X1Fault::new(failure, format!("LIID {} is already used by task {}", p.liid, t.xid)));
            }
        }
        Ok(())
    }

    fn task_status(&self, out: &mut String, details: &TaskDetails, task: Option<&Task>) {
        out.push_str("<taskStatus>");
        el(out, "provisioningStatus", if task.is_some() { "complete" } else { "awaitingProvisioning" });
        let mut dids: Vec<&String> = details
            .dids
            .iter()
            .chain(details.mediation.iter().flatten().flat_map(|m| m.dids.iter().flatten()))
            .collect();
        dids.sort();
        dids.dedup();
        let faults: Vec<X1Fault> = dids
            .iter()
            .filter_map(|d| self.dest_faults.get(d.as_str()).map(|f| (d, f)))
            .map(|(d, f)| X1Fault::new(ErrorCode::NonTerminatingFault, format!("destination {d}: {f}")))
            .collect();
        write_faults(out, &faults);
        if let Some(task) = task {
            let mut total = LiidStats::default();
            for m in details.mediation.iter().flatten() {
                let s = self.stats(&m.liid);
                total.last = match (total.last, s.last) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                total.x2_bytes = total.x2_bytes.saturating_add(s.x2_bytes);
                total.x3_bytes = total.x3_bytes.saturating_add(s.x3_bytes);
            }
            if let Some(l) = total.last {
                el(out, "timeOfLastIntercept", &message::x1_time(l));
            }
            el(out, "amountOfX2Data", &total.x2_bytes.to_string());
            el(out, "amountOfX3Data", &total.x3_bytes.to_string());
            if let Some(m) = task.modified_at {
                el(out, "timeOfLastModification", &message::x1_time(Timestamp(m)));
            }
            el(out, "numberOfModifications", &task.modifications.to_string());
        }
        out.push_str("</taskStatus>");
    }

    fn task_response_details(&self, out: &mut String, details: &TaskDetails, task: Option<&Task>) {
        out.push_str("<taskResponseDetails>");
        write_task_details(out, details);
        self.task_status(out, details, task);
        out.push_str("</taskResponseDetails>");
    }

    fn task_response(&self, xid: &str) -> Option<String> {
        let mut s = String::new();
        if let Some(t) = self.state.tasks.get(xid) {
            self.task_response_details(&mut s, &t.details, Some(t));
        } else if let Some(p) = self.state.pending.get(xid) {
            self.task_response_details(&mut s, &p.details, None);
        } else {
            return None;
        }
        Some(s)
    }

    fn all_tasks(&self) -> String {
        let mut s = String::new();
        for t in self.state.tasks.values() {
            self.task_response_details(&mut s, &t.details, Some(t));
        }
        for (xid, p) in &self.state.pending {
            if !self.state.tasks.contains_key(xid) {
                self.task_response_details(&mut s, &p.details, None);
            }
        }
        s
    }

    fn destination_response(&self, out: &mut String, d: &DestinationDetails) {
        out.push_str("<destinationResponseDetails>");
        write_destination_details(out, d);
        out.push_str("<destinationStatus>");
        let fault = self.dest_faults.get(&d.did);
        el(out, "destinationDeliveryStatus", if fault.is_some() { "deliveryFault" } else { "activeAndWorking" });
        let faults: Vec<X1Fault> =
            fault.iter().map(|f| X1Fault::new(ErrorCode::NonTerminatingFault, f.to_string())).collect();
        write_faults(out, &faults);
        out.push_str("</destinationStatus></destinationResponseDetails>");
    }

    fn all_destinations(&self) -> String {
        let mut s = String::new();
        for d in self.state.destinations.values() {
            self.destination_response(&mut s, d);
        }
        s
    }

    fn ne_status(&self) -> String {
        let mut s = String::from("<neStatusDetails>");
        let faults: Vec<X1Fault> = self
            .dest_faults
            .iter()
            .filter(|(d, _)| self.state.destinations.contains_key(d.as_str()))
            .map(|(d, f)| X1Fault::new(ErrorCode::NonTerminatingFault, format!("destination {d}: {f}")))
            .collect();
        el(&mut s, "neStatus", if faults.is_empty() { "OK" } else { "Faults" });
        write_faults(&mut s, &faults);
        s.push_str("</neStatusDetails>");
        s
    }
}

fn dedup(it: impl Iterator<Item = TargetId>) -> Vec<TargetId> {
    let mut v: Vec<TargetId> = Vec::new();
    for t in it {
        if !v.contains(&t) {
            v.push(t);
        }
    }
    v
}

fn liids(t: &TaskDetails) -> Option<String> {
    let v: Vec<&str> = t.mediation.iter().flatten().map(|m| m.liid.as_str()).collect();
    if v.is_empty() {
        None
    } else {
        Some(v.join(","))
    }
}

fn ids_of(m: &Message) -> (Option<String>, Option<String>) {
    match &m.body {
        Ok(Request::ActivateTask(t)) | Ok(Request::ModifyTask(t)) => (Some(t.xid.clone()), t.dids.first().cloned()),
        Ok(Request::DeactivateTask(x)) | Ok(Request::GetTaskDetails(x)) => (Some(x.clone()), None),
        Ok(Request::CreateDestination(d)) | Ok(Request::ModifyDestination(d)) => (None, Some(d.did.clone())),
        Ok(Request::RemoveDestination(d)) | Ok(Request::GetDestinationDetails(d)) => (None, Some(d.clone())),
        _ => (None, None),
    }
}

/// Resolves each mediationDetails of `td` against the destinations of `state`.
fn parse_state(path: &Path, bytes: &[u8]) -> Result<State, X1Error> {
    let corrupt = |message: String| X1Error::Corrupt { path: path.display().to_string(), message };
    let s: State = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if s.format != STATE_FORMAT {
        return Err(corrupt(format!("format {} is not {STATE_FORMAT}", s.format)));
    }
    Ok(s)
}

fn plan_in(state: &State, td: &TaskDetails, failure: ErrorCode) -> Result<Vec<Plan>, X1Fault> {
    for d in &td.dids {
        if !state.destinations.contains_key(d) {
            return Err(X1Fault::new(ErrorCode::DidDoesNotExist, format!("no destination {d}")));
        }
    }
    let ms = match &td.mediation {
        Some(ms) if !ms.is_empty() => ms,
        _ => {
            return Err(X1Fault::new(
                failure,
                "tapir needs listOfMediationDetails: each mediationDetails gives an LIID and becomes one warrant",
            ))
        }
    };
    let mut plans = Vec::with_capacity(ms.len());
    for m in ms {
        let liid = Liid::new(&m.liid).map_err(|e| match e {
            LiidError::Length => {
                X1Fault::new(failure, "LIIDs longer than 25 characters are not supported (TS 102 232-1)")
            }
            e => X1Fault::new(failure, format!("LIID {:?}: {e}", m.liid)),
        })?;
        let scope = scope_of({
            let (a, b) = td.delivery.parts();
            let (c, d) = m.delivery.parts();
            (a && c, b && d)
        })
        .ok_or_else(|| {
            X1Fault::new(
                ErrorCode::DeliveryTypeAndDestinations,
                format!(
                    "LIID {}: {} and {} leave nothing to deliver",
                    m.liid,
                    td.delivery.as_str(),
                    m.delivery.as_str()
                ),
            )
        })?;
        let dids: &[String] = match &m.dids {
            Some(d) if !d.is_empty() => d,
            _ => &td.dids,
        };
        for d in dids {
            if !state.destinations.contains_key(d) {
                return Err(X1Fault::new(ErrorCode::DidDoesNotExist, format!("no destination {d}")));
            }
        }
        let did = match dids {
            [one] => one.clone(),
            [] => {
                return Err(X1Fault::new(
                    ErrorCode::DeliveryTypeAndDestinations,
                    format!("LIID {}: no destination (listOfDIDs is empty)", m.liid),
                ))
            }
            _ => {
                return Err(X1Fault::new(
                    ErrorCode::MultipleDestinationsNotSupported,
                    format!("LIID {}: tapir delivers each LIID to exactly one destination", m.liid),
                ))
            }
        };
        let dest = state
            .destinations
            .get(&did)
            .ok_or_else(|| X1Fault::new(ErrorCode::DidDoesNotExist, format!("no destination {did}")))?;
        if !covers(dest.delivery, scope) {
            return Err(X1Fault::new(
                ErrorCode::DeliveryTypeAndDestinations,
                format!(
                    "LIID {}: destination {did} ({}) cannot carry what the task delivers",
                    m.liid,
                    dest.delivery.as_str()
                ),
            ));
        }
        let start = ts(&m.start);
        let end = ts(&m.end);
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s {
                return Err(X1Fault::new(failure, format!("LIID {}: EndTime is not after StartTime", m.liid)));
            }
        }
        plans.push(Plan { liid, start, end, scope, did });
    }
    Ok(plans)
}
