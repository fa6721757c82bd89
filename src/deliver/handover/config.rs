//! `[[lea]]` tables of the warrants file: where and how one LEA receives HI2/HI3.
//!
//! The warrant parser keeps these tables raw; they are read here so that every error names the
//! file, the table's position and the LEA's name. Unknown keys are errors (a misspelt
//! `tls_ca` must not silently fall back to plain TCP).

use std::path::PathBuf;

use serde::Deserialize;

use crate::deliver::etsi::{EtsiConfig, Versions};

/// PEM files for mutual TLS: the peer's certificate (an LEA's, an MDF's, a POI's) must chain to
/// `ca`; tapir presents `cert`/`key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Integrity checks (TS 102 232-1 clause 7.2) for this LEA.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrityFiles {
    /// A hash PDU every this many data PDUs of one (LIID, CIN, IRI|CC) stream.
    pub hash_every: u32,
    /// A signed-hash PDU every this many hash PDUs (0: never sign).
    #[serde(default)]
    pub sign_every: u32,
    /// PKCS#8 DER private key (Ed25519 or ECDSA P-256); required when `sign_every > 0`.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    #[serde(default)]
    max_bytes: Option<u64>,
    #[serde(default)]
    segment_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLea {
    name: String,
    hi2: String,
    hi3: String,
    operator_id: String,
    #[serde(default)]
    network_element_id: Option<String>,
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    tls_ca: Option<PathBuf>,
    #[serde(default)]
    tls_cert: Option<PathBuf>,
    #[serde(default)]
    tls_key: Option<PathBuf>,
    #[serde(default)]
    integrity: Option<IntegrityFiles>,
    #[serde(default)]
    versions: Option<Versions>,
    #[serde(default)]
    keepalive: Option<u64>,
    #[serde(default)]
    spool: Option<RawSpool>,
    /// Send HI1 notifications (warrant activated / modified / deactivated) on HI2.
    #[serde(default)]
    hi1: Option<bool>,
}

/// One LEA, validated.
#[derive(Clone, Debug)]
pub struct LeaConfig {
    pub name: String,
    /// `host:port` of the HI2 (IRI) receiver.
    pub hi2: String,
    /// `host:port` of the HI3 (CC) receiver.
    pub hi3: String,
    /// Header settings; the Encoder checks them (lengths, country code) at start.
    pub etsi: EtsiConfig,
    pub tls: Option<TlsFiles>,
    pub integrity: Option<IntegrityFiles>,
    /// Idle time before a keep-alive, and how long its response may take.
    pub keepalive_secs: u64,
    /// The spool refuses PDUs beyond this many bytes per channel (an alarm, never a drop).
    pub max_spool_bytes: u64,
    /// Size at which the spool starts a new segment file.
    pub spool_segment_bytes: u64,
    /// Whether warrant notifications (HI1-Operation PDUs) go to this LEA on HI2 (default yes;
    /// `hi1 = false` for an LEA that takes HI1 another way or whose decoder lacks the module).
    pub hi1_notifications: bool,
}

/// Defaults when the table does not say.
pub const DEFAULT_KEEPALIVE_SECS: u64 = 10;
pub const DEFAULT_MAX_SPOOL_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum LeaError {
    #[error("{file}: [[lea]] #{index} ({name}): {message}")]
    Bad { file: String, index: usize, name: String, message: String },
    #[error("{file}: two [[lea]] tables are named {name:?} (#{first} and #{second})")]
    Duplicate { file: String, name: String, first: usize, second: usize },
}

fn host_port(v: &str) -> bool {
    match v.rsplit_once(':') {
        Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

/// Parses the raw `[[lea]]` tables (`Warrants::lea`) of `file`.
pub fn parse_leas(raw: &[toml::Value], file: &str) -> Result<Vec<LeaConfig>, LeaError> {
    let mut out: Vec<LeaConfig> = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        let index = i + 1;
        let name_hint = v.get("name").and_then(|n| n.as_str()).unwrap_or("?").to_string();
        let bad = |message: String| LeaError::Bad { file: file.into(), index, name: name_hint.clone(), message };
        let r: RawLea = v.clone().try_into().map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
        if r.name.is_empty() || r.name.len() > 64 {
            return Err(bad(format!("name {:?} must be 1..64 characters", r.name)));
        }
        for (k, a) in [("hi2", &r.hi2), ("hi3", &r.hi3)] {
            if !host_port(a) {
                return Err(bad(format!("{k} = {a:?}: expected \"host:port\"")));
            }
        }
        let tls = match (r.tls_ca, r.tls_cert, r.tls_key) {
            (None, None, None) => None,
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca, cert, key }),
            _ => return Err(bad("tls_ca, tls_cert and tls_key go together (mutual TLS)".into())),
        };
        if let Some(ic) = &r.integrity {
            if ic.hash_every == 0 {
                return Err(bad("integrity.hash_every must be at least 1".into()));
            }
            if ic.sign_every > 0 && ic.key.is_none() {
                return Err(bad("integrity.sign_every needs integrity.key".into()));
            }
        }
        let keepalive_secs = r.keepalive.unwrap_or(DEFAULT_KEEPALIVE_SECS);
        if keepalive_secs == 0 {
            return Err(bad("keepalive must be at least 1 second".into()));
        }
        let max_spool_bytes = r.spool.as_ref().and_then(|s| s.max_bytes).unwrap_or(DEFAULT_MAX_SPOOL_BYTES);
        let spool_segment_bytes =
            r.spool.as_ref().and_then(|s| s.segment_bytes).unwrap_or(crate::deliver::handover::spool::SEGMENT_BYTES);
        if spool_segment_bytes == 0 {
            return Err(bad("spool.segment_bytes must be at least 1".into()));
        }
        let mut etsi = EtsiConfig::new(&r.operator_id);
        etsi.versions = r.versions.unwrap_or_default();
        etsi.network_element_id = r.network_element_id;
        etsi.authorization_country_code = r.country.clone();
        etsi.delivery_country_code = r.country;
        // Validate now, so a bad header field is a config error and not a failure per PDU.
        crate::deliver::etsi::Encoder::new(etsi.clone()).map_err(|e| bad(e.to_string()))?;
        if let Some(first) = out.iter().position(|l| l.name == r.name) {
            return Err(LeaError::Duplicate { file: file.into(), name: r.name, first: first + 1, second: index });
        }
        out.push(LeaConfig {
            name: r.name,
            hi2: r.hi2,
            hi3: r.hi3,
            etsi,
            tls,
            integrity: r.integrity,
            keepalive_secs,
            max_spool_bytes,
            spool_segment_bytes,
            hi1_notifications: r.hi1.unwrap_or(true),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leas(text: &str) -> Result<Vec<LeaConfig>, LeaError> {
        let w = crate::select::parse_warrants(text, "w.toml").unwrap();
        parse_leas(&w.lea, "w.toml")
    }

    #[test]
    fn full_table_parses() {
        let l = leas(
            r#"
[[lea]]
name = "bka"
hi2 = "127.0.0.1:9001"
hi3 = "127.0.0.1:9002"
operator_id = "tapir-op"
network_element_id = "ne1"
country = "DE"
tls_ca = "ca.pem"
tls_cert = "c.pem"
tls_key = "k.pem"
integrity = { hash_every = 10, sign_every = 2, key = "sig.der" }
versions = { li_ps_pdu = 40, ip_access = 17 }
keepalive = 3
spool = { max_bytes = 1000, segment_bytes = 100 }
"#,
        )
        .unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].etsi.versions.li_ps_pdu, 40);
        assert_eq!(l[0].etsi.versions.ip_access, 17);
        assert_eq!(l[0].etsi.authorization_country_code.as_deref(), Some("DE"));
        assert_eq!(l[0].tls.as_ref().unwrap().ca, PathBuf::from("ca.pem"));
        assert_eq!(l[0].integrity.as_ref().unwrap().sign_every, 2);
        assert_eq!((l[0].keepalive_secs, l[0].max_spool_bytes, l[0].spool_segment_bytes), (3, 1000, 100));
    }

    #[test]
    fn errors_name_the_table() {
        let base = "[[lea]]\nname = \"x\"\nhi2 = \"h:1\"\nhi3 = \"h:2\"\noperator_id = \"op\"\n";
        let e = leas(&format!("{base}tls_cafile = \"a\"\n")).unwrap_err().to_string();
        assert!(e.contains("w.toml: [[lea]] #1 (x)") && e.contains("tls_cafile"), "{e}");
        let e = leas(&format!("{base}tls_ca = \"a\"\n")).unwrap_err().to_string();
        assert!(e.contains("mutual TLS"), "{e}");
        let e = leas(&base.replace("h:2", "h")).unwrap_err().to_string();
        assert!(e.contains("hi3 = \"h\""), "{e}");
        let e = leas(&format!("{base}country = \"de\"\n")).unwrap_err().to_string();
        assert!(e.contains("ISO 3166"), "{e}");
        let e = leas(&format!("{base}integrity = {{ hash_every = 5, sign_every = 1 }}\n")).unwrap_err().to_string();
        assert!(e.contains("needs integrity.key"), "{e}");
        let e = leas(&format!("{base}{base}")).unwrap_err().to_string();
        assert!(e.contains("#1 and #2"), "{e}");
    }
}
