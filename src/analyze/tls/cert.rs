//! The server certificate facts an investigator reads: names, serial, validity, fingerprint.
//!
//! DER parsing is x509-parser's (rusticata, used by Suricata's Rust side): its parsers return
//! errors on malformed input instead of panicking, and it is kept up to date. The SHA-256
//! fingerprint is over the DER bytes as sent, so it matches `openssl x509 -fingerprint -sha256`.

use ring::digest::{digest, SHA256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// One certificate as written in the IRI.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CertInfo {
    /// RFC 4514-style distinguished name, e.g. `CN=example.com, O=Example`.
    pub subject: String,
    pub issuer: String,
    /// Subject alternative names, prefixed by kind: `DNS:`, `IP:`, `email:`, `URI:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
    /// Serial number, hex bytes separated by `:` as encoded (OpenSSL's style).
    pub serial: String,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
    /// Lower-case hex SHA-256 of the DER certificate.
    pub sha256: String,
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("unix:{unix}"))
}

fn ip_text(b: &[u8]) -> String {
    match b.len() {
        4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => hex::encode(b),
    }
}

/// Lower-case hex SHA-256 of `der`.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(digest(&SHA256, der).as_ref())
}

/// Summarises one DER certificate; `None` if it does not parse as X.509.
pub fn summarise(der: &[u8]) -> Option<CertInfo> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            sans.push(match n {
                GeneralName::DNSName(s) => format!("DNS:{s}"),
                GeneralName::IPAddress(b) => format!("IP:{}", ip_text(b)),
                GeneralName::RFC822Name(s) => format!("email:{s}"),
                GeneralName::URI(s) => format!("URI:{s}"),
                GeneralName::DirectoryName(d) => format!("DirName:{d}"),
                other => format!("{other:?}"),
            });
        }
    }
    let v = cert.validity();
    Some(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sans,
        serial: cert.raw_serial_as_string(),
        not_before: rfc3339(v.not_before.timestamp()),
        not_after: rfc3339(v.not_after.timestamp()),
        sha256: fingerprint(der),
    })
}
