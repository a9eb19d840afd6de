//! Certificates outside their validity period, over real TLS on loopback: a console whose
//! server certificate has expired, or is not valid yet, is refused by a client that pins its
//! CA (the pin proves who issued it, not that it is current), and an agent presenting an
//! expired client certificate is refused in the handshake. The same chain inside its validity
//! goes through, so the refusals are about time and nothing else.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

use std::sync::Arc;

use ringfence_wire::tls::{AgentIdentity, ConsoleCa, ConsoleTls, files};
use ringfence_wire::{CaPin, Client, Trust};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA and its key, made here so the test controls every date.
struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    der: CertificateDer<'static>,
}

fn test_ca() -> TestCa {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "validity test CA");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    let der = cert.der().clone();
    TestCa {
        issuer: rcgen::Issuer::new(params, key),
        der,
    }
}

/// A server certificate for 127.0.0.1 valid from `from` to `until` (days from now).
fn server_leaf(
    ca: &TestCa,
    from: i64,
    until: i64,
) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let now = OffsetDateTime::now_utc();
    params.not_before = now + Duration::days(from);
    params.not_after = now + Duration::days(until);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    (cert.der().clone(), key)
}

/// Serve one-line JSON answers over TLS with `config` until the test ends; the URL.
async fn serve(config: Arc<rustls::ServerConfig>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0_u8; 4096];
                let _ = tls.read(&mut buf).await;
                let body = b"{\"ok\":true}";
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    url
}

#[allow(deprecated, reason = "the console's own provider, ring: see tls.rs")]
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

async fn get(client: &Client) -> Result<serde_json::Value, String> {
    client
        .get_json::<serde_json::Value>("/", None)
        .await
        .map_err(|e| format!("{e:#}"))
}

#[tokio::test]
async fn a_pinned_console_with_an_expired_or_future_certificate_is_refused() {
    let ca = test_ca();
    let trust = Trust::Pinned(vec![CaPin::of(&ca.der)]);

    let (leaf, key) = server_leaf(&ca, -1, 30);
    let current = serve(server_config(vec![leaf, ca.der.clone()], key)).await;
    let answer = get(&Client::new(&current, &trust).unwrap()).await;
    assert_eq!(answer, Ok(serde_json::json!({"ok": true})));

    let (leaf, key) = server_leaf(&ca, -30, -1);
    let expired = serve(server_config(vec![leaf, ca.der.clone()], key)).await;
    let err = get(&Client::new(&expired, &trust).unwrap())
        .await
        .expect_err("an expired server certificate");
    assert!(err.to_lowercase().contains("expired"), "{err}");
    assert!(err.contains(&expired), "the error names the URL: {err}");

    let (leaf, key) = server_leaf(&ca, 1, 30);
    let future = serve(server_config(vec![leaf, ca.der.clone()], key)).await;
    let err = get(&Client::new(&future, &trust).unwrap())
        .await
        .expect_err("a server certificate not valid yet");
    assert!(err.to_lowercase().contains("not valid yet"), "{err}");
}

#[tokio::test]
async fn an_agent_with_an_expired_client_certificate_is_refused_in_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls");
    let names = vec!["127.0.0.1".to_owned()];
    let (console, _) = ConsoleTls::load_or_create(&tls_dir, &names).unwrap();
    let ca = ConsoleCa::load(&tls_dir).unwrap();
    let trust = Trust::Pinned(vec![console.pin()]);
    let url = serve(console.server_config(Some(ca.cert())).unwrap()).await;

    // A certificate the console's own CA issued today: through.
    let (key, csr) = AgentIdentity::new_key().unwrap();
    let (cert, _) = ca.issue_agent_cert(&csr, "agent-1").unwrap();
    let current = AgentIdentity::from_pem(&key, &cert).unwrap();
    let client = Client::with_identity(&url, &trust, Some(&current)).unwrap();
    assert!(get(&client).await.is_ok());

    // The same CA and key, but a certificate that ran out yesterday: refused.
    let ca_key = std::fs::read_to_string(tls_dir.join(files::CA_KEY)).unwrap();
    let ca_pem = std::fs::read_to_string(tls_dir.join(files::CA_CERT)).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&ca_pem, rcgen::KeyPair::from_pem(&ca_key).unwrap())
            .unwrap();
    let agent_key = rcgen::KeyPair::from_pem(&key).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "agent-1");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(31);
    params.not_after = now - Duration::days(1);
    let stale = params.signed_by(&agent_key, &issuer).unwrap();
    let expired = AgentIdentity::from_pem(&key, &stale.pem()).unwrap();
    let client = Client::with_identity(&url, &trust, Some(&expired)).unwrap();
    let err = get(&client)
        .await
        .expect_err("an expired client certificate");
    assert!(
        err.to_lowercase().contains("expired") || err.contains("CertificateExpired"),
        "{err}"
    );
}
