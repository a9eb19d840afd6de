//! The console over real TLS on loopback, as agents and the CLI reach it: its own CA made at
//! first start, a client that pins the CA, and what happens to a client that pins another one,
//! speaks plain HTTP to it, or pins two while a CA is rotated. A wrong pin is refused with the
//! pin the console presented, so an operator can tell a rotation from an interception.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

use std::sync::Arc;
use std::time::Duration;

use ringfence_console::{AppState, Config, Db, SystemClock};
use ringfence_wire::tls::{AgentIdentity, ConsoleCa, ConsoleTls};
use ringfence_wire::{
    CaPin, CheckIn, Client, Count, Credential, EnrollRequest, Health, Label, PROTOCOL,
    RenewRequest, Tags, Trust,
};

async fn console(dir: &std::path::Path) -> (ringfence_console::Running, CaPin, String) {
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let (tls, _) = ConsoleTls::load_or_create(&dir.join("tls"), &names).unwrap();
    let ca = Arc::new(ConsoleCa::load(&dir.join("tls")).unwrap());
    let db = Db::open(&format!("sqlite:{}", dir.join("console.db").display()))
        .await
        .unwrap();
    let mut config = Config::new(dir.join("content"));
    config.client_ca = Some(ca.clone());
    let state = AppState::new(db, Arc::new(SystemClock), config)
        .await
        .unwrap();
    let token = ringfence_console::auth::create_operator(&state, "admin", "pw-not-used")
        .await
        .unwrap();
    let running = ringfence_console::serve_tls(
        state,
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(5),
        tls.server_config(Some(ca.cert())).unwrap(),
    )
    .await
    .unwrap();
    (running, tls.pin(), token)
}

async fn fleet(client: &Client, token: &str) -> Result<serde_json::Value, String> {
    client
        .get_json::<serde_json::Value>("/api/v1/fleet", Some(token))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_client_that_pins_the_console_ca_gets_through() {
    let dir = tempfile::tempdir().unwrap();
    let (running, pin, token) = console(dir.path()).await;
    let url = running.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // The pinned CA: through, by IP and by name.
    let pinned = Client::new(&url, &Trust::Pinned(vec![pin])).unwrap();
    assert!(fleet(&pinned, &token).await.is_ok());
    let by_name = url.replace("127.0.0.1", "localhost");
    let named = Client::new(&by_name, &Trust::Pinned(vec![pin])).unwrap();
    assert!(fleet(&named, &token).await.is_ok());

    // Two pins while a CA is rotated: through.
    let rotation = Trust::Pinned(vec![CaPin::of(b"the next CA"), pin]);
    assert!(
        fleet(&Client::new(&url, &rotation).unwrap(), &token)
            .await
            .is_ok()
    );

    // The CA file instead of a pin: through.
    let ca_file = Trust::from_ca_file(&dir.path().join("tls/ca.pem")).unwrap();
    assert!(
        fleet(&Client::new(&url, &ca_file).unwrap(), &token)
            .await
            .is_ok()
    );

    // Another pin (an interception, or the wrong fleet): refused, naming what it saw.
    let other = CaPin::of(b"someone else's CA");
    let wrong = Client::new(&url, &Trust::Pinned(vec![other])).unwrap();
    let e = fleet(&wrong, &token).await.unwrap_err();
    assert!(
        e.contains("not pinned") && e.contains(&pin.to_string()) && e.contains(&url),
        "{e}"
    );

    // Another console's CA, presented by a console that is not ours (a man in the middle
    // with a certificate of its own): refused.
    let mitm_dir = tempfile::tempdir().unwrap();
    let (mitm, mitm_pin, mitm_token) = console(mitm_dir.path()).await;
    assert_ne!(mitm_pin, pin);
    let to_mitm = Client::new(&mitm.url(), &Trust::Pinned(vec![pin])).unwrap();
    let e = fleet(&to_mitm, &mitm_token).await.unwrap_err();
    assert!(e.contains(&mitm_pin.to_string()), "{e}");

    // Plain HTTP to the TLS port is not a way around it.
    let plain_url = url.replace("https://", "http://");
    assert!(Client::new(&plain_url, &Trust::Pinned(vec![pin])).is_err());
    let plain = Client::new(&plain_url, &Trust::PlainLoopback).unwrap();
    assert!(fleet(&plain, &token).await.is_err());

    // The console restarted on the same directory keeps its CA: pinned agents stay connected.
    let state = running.state.clone();
    running.shutdown().await.unwrap();
    state.db.close().await;
    let (again, pin_again, token_again) = console(dir.path()).await;
    assert_eq!(pin_again, pin);
    let client = Client::new(&again.url(), &Trust::Pinned(vec![pin])).unwrap();
    assert!(fleet(&client, &token_again).await.is_ok());
    again.shutdown().await.unwrap();
    mitm.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_served_only_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&format!("sqlite:{}", dir.path().join("c.db").display()))
        .await
        .unwrap();
    let state = AppState::new(
        db,
        Arc::new(SystemClock),
        Config::new(dir.path().join("content")),
    )
    .await
    .unwrap();
    let e = ringfence_console::serve(state, "0.0.0.0:0".parse().unwrap(), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("loopback"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let (running, _, _) = console(dir.path()).await;
    // Plain TCP that never speaks: the TLS handshake times out and the console closes it.
    let mut tcp = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(60), tcp.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the console kept a silent connection open: {read:?}"
    );
    running.shutdown().await.unwrap();
}

fn checkin(credential: &Credential) -> CheckIn {
    CheckIn {
        protocol: PROTOCOL,
        agent_id: credential.agent_id(),
        seq: Count::try_from(1u64).unwrap(),
        agent_version: Label::try_from("0.1.0").unwrap(),
        content_version: Count::ZERO,
        content: None,
        health: Health {
            interval_ms: Count::try_from(60_000u64).unwrap(),
            ..Health::default()
        },
        tags: Tags::default(),
        order_results: Default::default(),
        tuning: Default::default(),
        sensor_hooks: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_enrolled_over_tls_must_present_its_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (running, pin, token) = console(dir.path()).await;
    let url = running.url();
    let trust = Trust::Pinned(vec![pin]);
    let anonymous = Client::new(&url, &trust).unwrap();
    let minted: serde_json::Value = anonymous
        .post_json(
            "/api/v1/enrollment-tokens",
            Some(&token),
            &serde_json::json!({"max_uses": 2}),
        )
        .await
        .unwrap();
    let enroll_token = minted["token"].as_str().unwrap().to_owned();
    let enroll = |csr: Option<String>| EnrollRequest {
        protocol: PROTOCOL,
        token: enroll_token.clone(),
        hostname: Label::try_from("web-1").unwrap(),
        agent_version: Label::try_from("0.1.0").unwrap(),
        tags: Tags::default(),
        csr_pem: csr,
    };
    // A request the CA cannot sign is refused before the token is spent: both uses remain.
    let e = anonymous
        .enroll(&enroll(Some("not a certificate request".into())))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(422), "{e}");
    // Two agents, each with a key of its own and a certificate for it.
    let (key_a, csr_a) = AgentIdentity::new_key().unwrap();
    let a = anonymous.enroll(&enroll(Some(csr_a))).await.unwrap();
    let cert_a = a.client_cert_pem.clone().unwrap();
    let id_a = AgentIdentity::from_pem(&key_a, &cert_a).unwrap();
    let (key_b, csr_b) = AgentIdentity::new_key().unwrap();
    let b = anonymous.enroll(&enroll(Some(csr_b))).await.unwrap();
    let id_b = AgentIdentity::from_pem(&key_b, &b.client_cert_pem.clone().unwrap()).unwrap();

    let as_a = Client::with_identity(&url, &trust, Some(&id_a)).unwrap();
    let as_b = Client::with_identity(&url, &trust, Some(&id_b)).unwrap();
    // Its own certificate and credential: in.
    assert!(
        as_a.check_in(&a.credential, &checkin(&a.credential))
            .await
            .is_ok()
    );
    // The credential alone (stolen, say): out.
    let e = anonymous
        .check_in(&a.credential, &checkin(&a.credential))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    assert!(e.to_string().contains("client certificate"), "{e}");
    // Another agent's certificate with this credential: out.
    let e = as_b
        .check_in(&a.credential, &checkin(&a.credential))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");

    // Renewal on the same key: only over a connection presenting the current certificate.
    let renew = RenewRequest {
        protocol: PROTOCOL,
        agent_id: a.agent_id.clone(),
        csr_pem: AgentIdentity::request_for(&key_a).unwrap(),
    };
    let e = anonymous.renew(&a.credential, &renew).await.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    let renewed = as_a.renew(&a.credential, &renew).await.unwrap();
    let id_a2 = AgentIdentity::from_pem(&key_a, &renewed.client_cert_pem).unwrap();
    let as_a2 = Client::with_identity(&url, &trust, Some(&id_a2)).unwrap();
    assert!(
        as_a2
            .check_in(&a.credential, &checkin(&a.credential))
            .await
            .is_ok()
    );

    // A certificate from another CA is refused at the handshake.
    let other = tempfile::tempdir().unwrap();
    let _ = ConsoleTls::load_or_create(&other.path().join("tls"), &["x".to_owned()]).unwrap();
    let foreign_ca = ConsoleCa::load(&other.path().join("tls")).unwrap();
    let (key_f, csr_f) = AgentIdentity::new_key().unwrap();
    let (cert_f, _) = foreign_ca
        .issue_agent_cert(&csr_f, a.agent_id.as_str())
        .unwrap();
    let id_f = AgentIdentity::from_pem(&key_f, &cert_f).unwrap();
    let forged = Client::with_identity(&url, &trust, Some(&id_f)).unwrap();
    assert!(
        forged
            .check_in(&a.credential, &checkin(&a.credential))
            .await
            .is_err()
    );
    running.shutdown().await.unwrap();
}
