//! Shared fixtures: a console on real SQLite (a temporary file) or real PostgreSQL (a fresh
//! database on the server named by `RINGFENCE_TEST_POSTGRES`), a manual clock, and helpers
//! that drive `app()` with `oneshot`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]
#![allow(
    dead_code,
    reason = "each test file uses a different subset of the helpers"
)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use ringfence_console::{AppState, Config, Db, ManualClock, app};
use ringfence_wire::{CheckIn, CheckInResponse, Credential, EnrollResponse};
use serde_json::{Value, json};
use sqlx::Connection;
use tower::ServiceExt;

/// Noon UTC on some day in 2026.
pub const NOON: i64 = 1_780_000_000_000 - 1_780_000_000_000 % 86_400_000 + 12 * 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestConsole {
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub token: String,
    pub dir: tempfile::TempDir,
    /// The database, for a second console on it ([`TestConsole::second`]).
    pub db_url: String,
}

/// Generate `sqlite` and `postgres` test functions that run `$f(Backend)`.
#[macro_export]
macro_rules! both {
    ($($f:ident),* $(,)?) => {
        $(
            mod $f {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$f(super::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if super::common::postgres_url().is_some() {
                        super::$f(super::common::Backend::Postgres).await
                    }
                }
            }
        )*
    };
}

/// The PostgreSQL server URL, `None` only when `RINGFENCE_SKIP_POSTGRES=1`.
///
/// # Panics
/// When neither `RINGFENCE_TEST_POSTGRES` nor `RINGFENCE_SKIP_POSTGRES=1` is set.
pub fn postgres_url() -> Option<String> {
    match std::env::var("RINGFENCE_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("RINGFENCE_SKIP_POSTGRES").as_deref() == Ok("1") => {
            eprintln!("RINGFENCE_SKIP_POSTGRES=1: skipping the PostgreSQL variant");
            None
        }
        _ => panic!(
            "RINGFENCE_TEST_POSTGRES is not set. Start a server with `eval \"$(scripts/postgres.sh)\"` \
             (it installs Debian's postgresql if missing), or set RINGFENCE_SKIP_POSTGRES=1 to skip \
             the PostgreSQL variants."
        ),
    }
}

/// A fresh, empty database URL for `backend`.
pub async fn fresh_db_url(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite:{}", dir.join("console.db").display()),
        Backend::Postgres => {
            let url = postgres_url().expect("checked by the caller");
            let name = format!("rf_{}", ringfence_console::auth::random_hex(8).unwrap());
            let mut conn = sqlx::PgConnection::connect(&url)
                .await
                .expect("connect to PostgreSQL");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url);
            format!("{base}/{name}")
        }
    }
}

pub async fn console(backend: Backend) -> TestConsole {
    console_with(backend, 60_000).await
}

pub async fn console_with(backend: Backend, interval_ms: i64) -> TestConsole {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db_url(backend, dir.path()).await;
    let db = Db::open(&url).await.unwrap();
    let clock = Arc::new(ManualClock::new(NOON));
    let mut config = Config::new(dir.path().join("content"));
    config.checkin_interval_ms = interval_ms;
    config.checkin_jitter_ms = interval_ms / 10;
    let state = AppState::new(db, clock.clone(), config).await.unwrap();
    let token = ringfence_console::auth::create_operator(&state, "admin", "hunter2-but-longer")
        .await
        .unwrap();
    TestConsole {
        state,
        clock,
        token,
        dir,
        db_url: url,
    }
}

impl TestConsole {
    /// Another console process on the same database (a fleet behind a load balancer).
    pub async fn second(&self) -> TestConsole {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&self.db_url).await.unwrap();
        let mut config = Config::new(dir.path().join("content"));
        config.checkin_interval_ms = self.state.config.checkin_interval_ms;
        config.checkin_jitter_ms = self.state.config.checkin_jitter_ms;
        let state = AppState::new(db, self.clock.clone(), config).await.unwrap();
        TestConsole {
            state,
            clock: self.clock.clone(),
            token: self.token.clone(),
            dir,
            db_url: self.db_url.clone(),
        }
    }

    pub fn app(&self) -> Router {
        app(self.state.clone())
    }

    /// Send a request; returns status and JSON (or `Value::String` of the body).
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        bearer: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let (status, _, bytes) = self.call_raw(method, uri, bearer, &[], body).await;
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, v)
    }

    pub async fn call_raw(
        &self,
        method: &str,
        uri: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(b) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {b}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Body::from(body.unwrap_or_default())).unwrap();
        let resp = self.app().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, headers, bytes)
    }

    /// Sign in as the admin with the login form: the session cookie.
    pub async fn session(&self) -> String {
        let (status, headers, _) = self
            .call_raw(
                "POST",
                "/login",
                None,
                &[("content-type", "application/x-www-form-urlencoded")],
                Some(b"name=admin&password=hunter2-but-longer".to_vec()),
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }

    /// A dashboard page with the session `cookie`; it must answer 200.
    pub async fn page(&self, cookie: &str, path: &str) -> String {
        let (status, _, body) = self
            .call_raw("GET", path, None, &[("cookie", cookie)], None)
            .await;
        let html = String::from_utf8(body).unwrap();
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        html
    }

    pub async fn op(&self, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        let body = if body.is_null() {
            None
        } else {
            Some(serde_json::to_vec(&body).unwrap())
        };
        self.call(method, uri, Some(&self.token.clone()), body)
            .await
    }

    /// A new operator with `role`, made by the admin; returns their API token.
    pub async fn operator(&self, name: &str, role: &str) -> String {
        let (status, v) = self
            .op(
                "POST",
                "/api/v1/operators",
                json!({"name": name, "role": role}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    /// Send `body` as JSON with the operator token `token`.
    pub async fn as_op(
        &self,
        token: &str,
        method: &str,
        uri: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let body = if body.is_null() {
            None
        } else {
            Some(serde_json::to_vec(&body).unwrap())
        };
        self.call(method, uri, Some(token), body).await
    }

    /// Publish `bytes` as `version` (optionally as the initial baseline).
    pub async fn publish(&self, version: i64, bytes: &[u8], baseline: bool) {
        let uri = format!(
            "/api/v1/content/{version}{}",
            if baseline { "?baseline=true" } else { "" }
        );
        let (status, v) = self
            .call("PUT", &uri, Some(&self.token.clone()), Some(bytes.to_vec()))
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    pub async fn enrollment_token(&self, max_uses: i64) -> String {
        let (status, v) = self
            .op(
                "POST",
                "/api/v1/enrollment-tokens",
                json!({"max_uses": max_uses}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    pub async fn enroll_with(&self, token: &str, tags: Value) -> (StatusCode, Value) {
        let body = json!({"protocol": 1, "token": token, "hostname": "host", "agent_version": "0.1.0", "tags": tags});
        self.call(
            "POST",
            "/api/v1/agents/enroll",
            None,
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await
    }

    /// Enroll `n` agents, the i-th with the tags `tags(i)`.
    pub async fn enroll(&self, n: usize, tags: impl Fn(usize) -> Value) -> Vec<Agent> {
        let token = self.enrollment_token(n as i64).await;
        let mut out = Vec::new();
        for i in 0..n {
            let (status, v) = self.enroll_with(&token, tags(i)).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            let e: EnrollResponse = serde_json::from_value(v).unwrap();
            out.push(Agent {
                id: e.agent_id.to_string(),
                credential: e.credential,
                tags: tags(i),
                current: 0,
                seq: 0,
            });
        }
        out
    }

    /// One check-in; returns status and the parsed response if 200.
    pub async fn checkin(
        &self,
        a: &mut Agent,
        health: Value,
    ) -> (StatusCode, Option<CheckInResponse>) {
        self.checkin_with(a, health, json!({})).await
    }

    /// One check-in with `extra` top-level fields (e.g. `order_results`).
    pub async fn checkin_with(
        &self,
        a: &mut Agent,
        health: Value,
        extra: Value,
    ) -> (StatusCode, Option<CheckInResponse>) {
        a.seq += 1;
        let mut h = json!({"cpu_percent": 2.0, "rss_bytes": 50_000_000u64, "events": 1000, "events_dropped": 1, "findings": 0, "interval_ms": 60_000});
        if let (Some(h), Some(o)) = (h.as_object_mut(), health.as_object()) {
            for (k, v) in o {
                h.insert(k.clone(), v.clone());
            }
        }
        let mut body = json!({"protocol": 1, "agent_id": a.id, "seq": a.seq, "agent_version": "0.1.0",
            "content_version": a.current, "health": h, "tags": a.tags});
        if let (Some(b), Some(o)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in o {
                b.insert(k.clone(), v.clone());
            }
        }
        let cred = a.credential.as_str().to_owned();
        let (status, v) = self
            .call(
                "POST",
                "/api/v1/agents/checkin",
                Some(&cred),
                Some(serde_json::to_vec(&body).unwrap()),
            )
            .await;
        let parsed = (status == StatusCode::OK)
            .then(|| serde_json::from_value::<CheckInResponse>(v).unwrap());
        (status, parsed)
    }

    /// Count rows of a table.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let (n,): (i64,) = match &self.state.db {
            Db::Sqlite(p) => sqlx::query_as(&sql).fetch_one(p).await.unwrap(),
            Db::Postgres(p) => sqlx::query_as(&sql).fetch_one(p).await.unwrap(),
        };
        n
    }
}

/// A test agent.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub credential: Credential,
    pub tags: Value,
    pub current: u64,
    pub seq: u64,
}

/// Parse a check-in in the exact way the console does (for property tests).
pub fn parse(body: &[u8]) -> Result<CheckIn, String> {
    CheckIn::parse(body)
}
