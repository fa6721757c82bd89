//! X1 provisioning (ETSI TS 103 221-1): the ADMF tells tapir which tasks (warrants) and
//! destinations (LEAs) exist.
//!
//! This module is the sans-I/O part between the HTTPS server and the daemon: XML in, XML out
//! ([`message`]), a crash-safe store of tasks and destinations ([`store`], the only file I/O),
//! and the state machine ([`core::X1Core`]) that answers requests for a caller with a role and
//! turns the active tasks into [`crate::select::Warrants`]. It never reads the clock: `now` is
//! passed in. Target identities never appear in [`Action`]s or error texts; only XIDs, DIDs and
//! LIIDs do. See `docs/x1.md`.

pub mod core;
pub mod https;
pub mod message;
pub mod store;

pub use self::core::{LiidStats, X1Core, X1CoreConfig, X1Lea};
pub use message::{DeliveryType, DestinationDetails, ErrorCode, Limits, TaskDetails, X1Target};

/// What an authenticated X1 client may do (`role = "admf" | "auditor"` in the config).
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May provision (ActivateTask, CreateDestination, ...) and read.
    Admf,
    /// May only read: Get*, GetNEStatus, ListAllDetails, Ping, Keepalive.
    Auditor,
}

/// The authenticated client of one request (from its TLS certificate).
#[derive(Copy, Clone, Debug)]
pub struct Caller<'a> {
    pub subject_cn: &'a str,
    /// SHA-256 of the client certificate, hex; the identity four-eyes compares.
    pub fingerprint: &'a str,
    pub role: Role,
}

/// The answer to one HTTP request body.
#[derive(Clone, Debug)]
pub struct Reply {
    pub http_status: u16,
    pub body: Vec<u8>,
    /// One record per request message (or one for a body that was not X1), for the audit log.
    pub actions: Vec<Action>,
}

/// An audit record of one request message. Carries identifiers only, never target identities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// The message name, e.g. `ActivateTask` (`X1Request` for a body that is not X1).
    pub what: String,
    pub xid: Option<String>,
    pub did: Option<String>,
    /// The task's LIIDs, comma-separated.
    pub liid: Option<String>,
    /// `ok`, `refused` (role), `pending` (four-eyes, first approval) or the X1 error code.
    pub result: String,
    pub detail: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum X1Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt X1 state: {message}")]
    Corrupt { path: String, message: String },
    #[error("X1 configuration: {0}")]
    Config(String),
}
