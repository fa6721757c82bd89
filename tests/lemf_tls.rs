//! Mutual TLS 1.3 on the LEMF's listeners: certificates made with openssl at test time.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tapir::deliver::etsi::{Encoder, EtsiConfig, PduHeader};
use tapir::lemf::{Lemf, LemfConfig, TlsFiles};
use tapir::timestamp::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::tls_connector;

/// CA `ca` (trusted by the LEMF), `other` (not), a server cert and one client cert from each.
fn make_pki(d: &Path) {
    common::make_pki(
        d,
        &["ca", "other"],
        &[("srv", "srv", "ca", "srv.ext"), ("cli", "cli", "ca", "cli.ext"), ("rogue", "rogue", "other", "cli.ext")],
    );
}

/// Sends a keep-alive over TLS; the number of answer bytes, or None if the LEMF refused us.
async fn keep_alive(addr: SocketAddr, c: tokio_rustls::TlsConnector) -> Option<usize> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut s = c.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.ok()?;
    let enc = Encoder::new(EtsiConfig::new("OPER")).unwrap();
    let mut ka = Vec::new();
    let hdr = PduHeader { liid: "LIID-T", cin: Some(1), seq: 4, ts: Timestamp::from_secs(1_700_000_000) };
    enc.keep_alive(&mut ka, &hdr).unwrap();
    s.write_all(&ka).await.ok()?;
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(n),
        _ => None,
    }
}

#[tokio::test]
async fn client_certificates_from_the_configured_ca_only() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    make_pki(d);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut cfg = LemfConfig::new(any, any, &d.join("case"));
    cfg.tls = Some(TlsFiles { ca: d.join("ca.pem"), cert: d.join("srv.pem"), key: d.join("srv.key") });
    let lemf = Lemf::start(cfg).unwrap();
    assert_eq!(keep_alive(lemf.hi2_addr(), tls_connector(d, None)).await, None, "no client certificate");
    assert_eq!(keep_alive(lemf.hi3_addr(), tls_connector(d, Some("rogue"))).await, None, "certificate from another CA");
    let n = keep_alive(lemf.hi2_addr(), tls_connector(d, Some("cli"))).await;
    assert!(n.is_some_and(|n| n > 20), "valid client answered: {n:?}");
    let rep = tokio::task::spawn_blocking(move || lemf.stop()).await.unwrap().unwrap();
    assert_eq!(rep.tls_refused, 2);
    assert_eq!(rep.keepalives_answered, 1);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("case/report.json")).unwrap()).unwrap();
    assert_eq!(r["tls_refused"], 2);
    let text = r["tls_refused_samples"].to_string();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}
