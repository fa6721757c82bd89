//! Mutual TLS 1.3 on the LEMF's listeners: certificates made with openssl at test time.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tapir::deliver::etsi::{Encoder, EtsiConfig, PduHeader};
use tapir::lemf::{Lemf, LemfConfig, TlsFiles};
use tapir::timestamp::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh").arg("-ec").arg(script).current_dir(dir).output().expect("sh");
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

/// CA `ca` (trusted by the LEMF), `other` (not), a server cert and one client cert from each.
fn make_pki(d: &Path) {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    for ca in ["ca", "other"] {
        sh(d, &format!("openssl req -x509 {ec} -keyout {ca}.key -out {ca}.pem -subj /CN={ca} -days 2"));
    }
    std::fs::write(d.join("srv.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").unwrap();
    std::fs::write(d.join("cli.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, ca, ext) in [("srv", "ca", "srv.ext"), ("cli", "ca", "cli.ext"), ("rogue", "other", "cli.ext")] {
        sh(
            d,
            &format!(
                "openssl req {ec} -keyout {name}.key -out {name}.csr -subj /CN={name} && \
                 openssl x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial \
                 -out {name}.pem -days 2 -extfile {ext}"
            ),
        );
    }
}

fn client(d: &Path, cert: Option<&str>) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(d.join("ca.pem")).unwrap()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match cert {
        None => b.with_no_client_auth(),
        Some(n) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(d.join(format!("{n}.pem"))).unwrap()],
                PrivateKeyDer::from_pem_file(d.join(format!("{n}.key"))).unwrap(),
            )
            .unwrap(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
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
    assert_eq!(keep_alive(lemf.hi2_addr(), client(d, None)).await, None, "no client certificate");
    assert_eq!(keep_alive(lemf.hi3_addr(), client(d, Some("rogue"))).await, None, "certificate from another CA");
    let n = keep_alive(lemf.hi2_addr(), client(d, Some("cli"))).await;
    assert!(n.is_some_and(|n| n > 20), "valid client answered: {n:?}");
    let rep = tokio::task::spawn_blocking(move || lemf.stop()).await.unwrap().unwrap();
    assert_eq!(rep.tls_refused, 2);
    assert_eq!(rep.keepalives_answered, 1);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("case/report.json")).unwrap()).unwrap();
    assert_eq!(r["tls_refused"], 2);
    let text = r["tls_refused_samples"].to_string();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}
