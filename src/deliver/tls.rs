//! Mutual TLS 1.3 from PEM files, for every TCP interface tapir speaks: HI2/HI3 (as client,
//! and as the LEMF stand-in's server) and X2/X3 (a POI as client, an MDF as server).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::handover::TlsFiles;

/// A file that could not make a TLS configuration. Never shows key material: the key's error
/// names the file and the PEM problem only.
#[derive(Debug, thiserror::Error)]
#[error("TLS {what} {}: {detail}", path.display())]
pub struct TlsSetupError {
    pub what: &'static str,
    pub path: PathBuf,
    pub detail: String,
}

fn err(what: &'static str, path: &Path, detail: impl ToString) -> TlsSetupError {
    TlsSetupError { what, path: path.into(), detail: detail.to_string() }
}

fn roots(ca: &Path) -> Result<rustls::RootCertStore, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| err("CA", ca, e))? {
        roots.add(c.map_err(|e| err("CA", ca, e))?).map_err(|e| err("CA", ca, e))?;
    }
    if roots.is_empty() {
        return Err(err("CA", ca, "no certificate"));
    }
    Ok(roots)
}

fn chain_and_key(t: &TlsFiles) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(&t.cert)
        .map_err(|e| err("certificate", &t.cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err("certificate", &t.cert, e))?;
    let key = PrivateKeyDer::from_pem_file(&t.key).map_err(|e| err("key", &t.key, e))?;
    Ok((certs, key))
}

/// A client that presents `cert`/`key` and trusts servers under `ca` only.
pub fn client_config(t: &TlsFiles) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let roots = roots(&t.ca)?;
    let (chain, key) = chain_and_key(t)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err("config", &t.cert, e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| err("certificate/key", &t.key, e))?;
    Ok(Arc::new(cfg))
}

/// A server that presents `cert`/`key` and takes only clients with a certificate under `ca`.
pub fn acceptor(t: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, TlsSetupError> {
    let roots = roots(&t.ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| err("CA", &t.ca, e))?;
    let (certs, key) = chain_and_key(t)?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err("config", &t.cert, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| err("certificate/key", &t.cert, e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// The subject CN of a peer's certificate (its first), when it has exactly one.
pub fn peer_cn(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let der = certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut cns = cert.subject().iter_common_name();
    let first = cns.next()?.as_str().ok()?.to_string();
    cns.next().is_none().then_some(first)
}
