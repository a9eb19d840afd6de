//! The console's database link over real TLS, against the PostgreSQL cluster that
//! `scripts/postgres.sh` starts with a certificate from its own throwaway CA: with
//! `sslmode=verify-full` and that CA the console connects and the session is encrypted; with
//! another CA it is refused, naming the certificate; and a server off this host without a
//! checked certificate is refused before anything is sent.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use ringfence_console::db::{Db, DbError};

/// The test cluster's URL and CA file, or `None` when PostgreSQL tests are skipped.
fn cluster() -> Option<(String, String)> {
    let url = common::postgres_url()?;
    let ca = std::env::var("RINGFENCE_TEST_POSTGRES_CA").expect(
        "RINGFENCE_TEST_POSTGRES_CA is not set: start the cluster with `eval \"$(scripts/postgres.sh)\"`",
    );
    Some((url, ca))
}

#[tokio::test]
async fn the_console_reaches_postgres_over_tls_that_checks_the_server() {
    let Some((url, ca)) = cluster() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db_url = common::fresh_db_url(common::Backend::Postgres, dir.path()).await;
    let checked = format!("{db_url}?sslmode=verify-full&sslrootcert={ca}");
    let db = Db::open(&checked).await.expect("open over verified TLS");
    let Db::Postgres(pool) = &db else {
        panic!("a postgres URL opened {}", db.engine())
    };
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(encrypted, "the session is not encrypted");
    db.close().await;
    drop(url);

    // A CA that did not sign the server's certificate: the console refuses to connect.
    let other_ca = dir.path().join("other-ca.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=not the database CA", "-keyout"])
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .unwrap();
    assert!(made.status.success(), "openssl: {made:?}");
    let wrong = format!(
        "{db_url}?sslmode=verify-full&sslrootcert={}",
        other_ca.display()
    );
    let err = Db::open(&wrong)
        .await
        .expect_err("a server the CA did not sign");
    assert!(matches!(err, DbError::Open { .. }), "{err}");
    let message = format!("{err}").to_lowercase();
    assert!(message.contains("certificate"), "{message}");
}

#[tokio::test]
async fn a_remote_postgres_without_a_checked_certificate_is_refused_before_connecting() {
    // A name that does not resolve: the refusal must come before any connection attempt.
    let err = Db::open("postgres://console:hunter2@db.invalid/ringfence")
        .await
        .expect_err("plain PostgreSQL off the host");
    assert!(matches!(err, DbError::UncheckedTls { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("sslmode=verify-full"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}
