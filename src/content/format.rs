//! What an object's bytes are, from their content (never their name).

use serde::Serialize;

/// A format verdict: the format, why we think so, and what the header says.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FormatVerdict {
    /// e.g. `qcow2`, `vmdk`, `gpt`, `gzip`.
    pub format: String,
    /// The evidence, e.g. `magic "QFI\xfb" at offset 0, version 3`.
    pub reason: String,
    /// Header facts (version, virtual size, partitions, ...).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}
