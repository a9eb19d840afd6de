//! Hostile clients against a real console on loopback (issue 19): name probing on login,
//! login backoff, a flooding agent, the dashboard's headers, text that hides or reorders
//! characters, `/metrics`, and what the console logs about errors, refusals and failed logins.
//!
//! Log lines are captured by a small subscriber installed for this test binary; each test looks
//! only for lines about its own console (its route, its names).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;
#[path = "common/http.rs"]
mod http;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use common::{Agent, Backend, TestConsole, console};
use ringfence_console::quota::Quota;
use serde_json::{Value, json};

// --- log capture ---------------------------------------------------------------------------

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        m.target().starts_with("ringfence")
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        let mut f = Fields(e.metadata().level().to_string());
        e.record(&mut f);
        LINES.lock().unwrap().push(f.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing::subscriber::set_global_default(Capture);
    });
}

fn lines_with(needle: &str) -> Vec<String> {
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

/// Wait (up to 20 s) for a log line containing all of `needles`.
async fn wait_for_line(needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = LINES
            .lock()
            .unwrap()
            .iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
        {
            return l.clone();
        }
        assert!(Instant::now() < deadline, "no log line with {needles:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --- fixtures --------------------------------------------------------------------------------

async fn serve(c: &TestConsole, engine: Duration) -> ringfence_console::Running {
    ringfence_console::serve(c.state.clone(), "127.0.0.1:0".parse().unwrap(), engine)
        .await
        .unwrap()
}

fn checkin_body(a: &mut Agent, extra: Value) -> Vec<u8> {
    a.seq += 1;
    let mut body = json!({"protocol": 1, "agent_id": a.id, "seq": a.seq, "agent_version": "0.1.0",
        "content_version": a.current, "tags": a.tags,
        "health": {"cpu_percent": 2.0, "rss_bytes": 50_000_000u64, "events": 1000,
                   "events_dropped": 1, "findings": 0, "interval_ms": 60_000}});
    if let (Some(b), Some(o)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in o {
            b.insert(k.clone(), v.clone());
        }
    }
    serde_json::to_vec(&body).unwrap()
}

async fn agent_post(addr: SocketAddr, a: &Agent, path: &str, body: &[u8]) -> http::Answer {
    let auth = format!("Bearer {}", a.credential.as_str());
    http::request(
        addr,
        "POST",
        path,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await
    .unwrap()
}

fn findings_body(a: &Agent, findings: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"protocol": 1, "agent_id": a.id, "findings": findings})).unwrap()
}

/// Sign in with the login form; the session cookie (`rf_session=…`).
async fn sign_in(addr: SocketAddr) -> String {
    let a = http::login(addr, "admin", "hunter2-but-longer")
        .await
        .unwrap();
    assert_eq!(a.status, 303, "{}", a.text());
    a.header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

// --- login -----------------------------------------------------------------------------------

/// Unknown names answered in 2 ms and known ones in 45 ms: an unknown name now runs the same
/// Argon2 verification (counted, not timed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_name_costs_a_verification_like_a_known_one() {
    let c = console(Backend::Sqlite).await;
    let running = serve(&c, Duration::from_secs(3600)).await;
    let verifications = || c.state.metrics.argon2_verifications.load(Ordering::Relaxed);
    let v0 = verifications();
    let known = http::login(running.addr, "admin", "wrong").await.unwrap();
    let v1 = verifications();
    let unknown = http::login(running.addr, "no-such-operator", "wrong")
        .await
        .unwrap();
    let v2 = verifications();
    assert_eq!((known.status, unknown.status), (401, 401));
    assert_eq!(known.body, unknown.body, "same page for both");
    assert_eq!((v1 - v0, v2 - v1), (1, 1));
    running.shutdown().await.unwrap();
}

/// Failed logins from one address back off with 429 (with Retry-After), whatever the name,
/// before any password check; another address is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_back_off_per_name_and_per_address() {
    let c = console(Backend::Sqlite).await;
    let running = serve(&c, Duration::from_secs(3600)).await;
    let addr = running.addr;
    // Per name: five free failures, then 429 for that name, right password included.
    for i in 0..5 {
        let a = http::login(addr, "admin", &format!("guess-{i}"))
            .await
            .unwrap();
        assert_eq!(a.status, 401, "attempt {i}");
    }
    let v = c.state.metrics.argon2_verifications.load(Ordering::Relaxed);
    let a = http::login(addr, "admin", "hunter2-but-longer")
        .await
        .unwrap();
    assert_eq!(a.status, 429);
    assert!(a.header("retry-after").is_some());
    assert_eq!(
        c.state.metrics.argon2_verifications.load(Ordering::Relaxed),
        v
    );
    // Per address: spraying names does not escape it.
    for i in 0..15 {
        let a = http::login(addr, &format!("spray-{i}"), "x").await.unwrap();
        assert_eq!(a.status, 401, "spray {i}");
    }
    let a = http::login(addr, "spray-last", "x").await.unwrap();
    assert_eq!(a.status, 429, "{}", a.text());
    // The console's clock moves on: the operator gets in, and that clears the name.
    c.clock.advance_ms(16 * 60_000);
    let _ = sign_in(addr).await;
    assert_eq!(
        c.state
            .logins
            .per_name
            .wait("admin", ringfence_console::Clock::now_ms(c.clock.as_ref())),
        0
    );
    running.shutdown().await.unwrap();
}

// --- agent quotas ----------------------------------------------------------------------------

/// One agent floods check-ins and findings: it gets 429 past its quota (with Retry-After), and
/// the other agent's check-ins and findings go through untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_agent_gets_429_and_does_not_starve_the_others() {
    let c = console(Backend::Sqlite).await;
    let mut agents = c.enroll(2, |_| json!({})).await;
    let mut quiet = agents.pop().unwrap();
    let mut flood = agents.pop().unwrap();
    let running = serve(&c, Duration::from_secs(3600)).await;
    let addr = running.addr;

    let bodies: Vec<Vec<u8>> = (0..50)
        .map(|_| checkin_body(&mut flood, json!({})))
        .collect();
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let a = flood.clone();
            tokio::spawn(async move { agent_post(addr, &a, "/api/v1/agents/checkin", &b).await })
        })
        .collect();
    // The quiet agent checks in while the flood runs.
    for _ in 0..3 {
        let b = checkin_body(&mut quiet, json!({}));
        let a = agent_post(addr, &quiet, "/api/v1/agents/checkin", &b).await;
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let limited: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(ok, Quota::CHECKINS.burst as usize);
    assert_eq!(ok + limited.len(), 50);
    assert!(
        limited[0]
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert!(limited[0].text().contains("check-in quota"));
    assert_eq!(
        c.state
            .metrics
            .quota_refusals_checkin
            .load(Ordering::Relaxed),
        limited.len() as u64
    );
    assert_eq!(c.state.metrics.checkins_refused(429), limited.len() as u64);

    // Findings: two full batches at once, then 429; the quiet agent's finding is stored.
    let batch = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"rule": {"name": "flood"}, "n": i}))
            .collect()
    };
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let body = findings_body(&flood, batch(1000));
        statuses.push(
            agent_post(addr, &flood, "/api/v1/agents/findings", &body)
                .await
                .status,
        );
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    let body = findings_body(&quiet, vec![json!({"rule": {"name": "quiet-rule"}})]);
    let a = agent_post(addr, &quiet, "/api/v1/agents/findings", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let stored = |id: &str| format!("findings WHERE agent_id = '{id}'");
    assert_eq!(c.count(&stored(&quiet.id)).await, 1);
    assert_eq!(c.count(&stored(&flood.id)).await, 2000);

    // A check-in interval later, the flooding agent may check in again.
    c.clock.advance_ms(60_000);
    let b = checkin_body(&mut flood, json!({}));
    assert_eq!(
        agent_post(addr, &flood, "/api/v1/agents/checkin", &b)
            .await
            .status,
        200
    );
    running.shutdown().await.unwrap();
}

// --- the dashboard ---------------------------------------------------------------------------

/// Every dashboard page: a CSP without inline script or style, no framing, nosniff, no
/// referrer, not cached; and the pages hold no inline script, style or event handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_pages_carry_security_headers_and_no_inline_code() {
    let c = console(Backend::Sqlite).await;
    let running = serve(&c, Duration::from_secs(3600)).await;
    let addr = running.addr;
    let cookie = sign_in(addr).await;
    for path in [
        "/login",
        "/fleet",
        "/rollouts",
        "/findings",
        "/findings?group=rule",
        "/findings?severity=high&last=24h",
        "/",
    ] {
        let a = http::request(addr, "GET", path, &[("Cookie", cookie.as_str())], b"")
            .await
            .unwrap();
        assert!(matches!(a.status, 200 | 303), "{path}: {}", a.status);
        let csp = a.header("content-security-policy").unwrap_or_default();
        for want in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(want), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(
            a.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(a.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(a.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(a.header("cache-control"), Some("no-store"), "{path}");
        let html = a.text();
        assert!(!html.contains("<script>"), "{path}: inline script");
        assert!(!html.contains("<style"), "{path}: inline style");
        assert!(!html.contains("onclick="), "{path}: inline handler");
        assert!(!html.contains(" style="), "{path}: style attribute");
    }
    for (path, kind) in [
        ("/assets/dashboard.js", "text/javascript"),
        ("/assets/dashboard.css", "text/css"),
    ] {
        let a = http::request(addr, "GET", path, &[], b"").await.unwrap();
        assert_eq!(a.status, 200);
        assert!(a.header("content-type").unwrap().starts_with(kind));
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    }
    running.shutdown().await.unwrap();
}

/// A host name with a right-to-left override (so "web1-prod" could read as another host) is
/// refused at enrollment and in check-in tags; text inside findings (markup, escape sequences,
/// bidi overrides) is shown escaped on the dashboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_characters_are_refused_in_names_and_escaped_in_findings() {
    let c = console(Backend::Sqlite).await;
    let token = c.enrollment_token(10).await;
    let running = serve(&c, Duration::from_secs(3600)).await;
    let addr = running.addr;
    for hostname in [
        "web1\u{202e}dorp-",
        "web1\u{2066}-prod",
        "web\u{200b}1-prod",
        "web1\u{1b}[2J",
    ] {
        let body = json!({"protocol": 1, "token": token, "hostname": hostname,
            "agent_version": "0.1.0", "tags": {}});
        let a = http::request(
            addr,
            "POST",
            "/api/v1/agents/enroll",
            &[("Content-Type", "application/json")],
            &serde_json::to_vec(&body).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(a.status, 422, "{hostname:?}: {}", a.text());
    }
    assert_eq!(c.count("agents").await, 0, "nothing enrolled");

    let mut agent = c.enroll(1, |_| json!({})).await.pop().unwrap();
    agent.tags = json!({"region": "eu\u{202e}", "custom": {"role": "db"}});
    let b = checkin_body(&mut agent, json!({}));
    let a = agent_post(addr, &agent, "/api/v1/agents/checkin", &b).await;
    assert_eq!(a.status, 422, "{}", a.text());

    let body = findings_body(
        &agent,
        vec![
            json!({"rule": {"name": "<script>alert(1)</script>", "severity": "high\u{202e}wol"},
                    "path": "/tmp/\u{1b}[31mred\u{202e}fdp.exe"}),
        ],
    );
    let a = agent_post(addr, &agent, "/api/v1/agents/findings", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let cookie = sign_in(addr).await;
    let page = http::request(
        addr,
        "GET",
        "/findings",
        &[("Cookie", cookie.as_str())],
        b"",
    )
    .await
    .unwrap()
    .text();
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script>alert"));
    // The finding's own page shows the raw event: every field escaped.
    let id = page
        .split("href=\"/findings/")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a link to the finding")
        .to_owned();
    let page = http::request(
        addr,
        "GET",
        &format!("/findings/{id}"),
        &[("Cookie", cookie.as_str())],
        b"",
    )
    .await
    .unwrap()
    .text();
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script>alert"));
    assert!(
        page.contains("high\\u{202e}wol"),
        "bidi override shown as a code"
    );
    assert!(!page.contains('\u{202e}'));
    assert!(!page.contains('\u{1b}'));
    running.shutdown().await.unwrap();
}

// --- /metrics and logs -----------------------------------------------------------------------

/// `/metrics` takes an operator; it counts check-ins, refusals, logins and open connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_take_an_operator_and_count_what_happened() {
    let c = console(Backend::Sqlite).await;
    let mut agent = c.enroll(1, |_| json!({})).await.pop().unwrap();
    let running = serve(&c, Duration::from_secs(3600)).await;
    let addr = running.addr;
    let b = checkin_body(&mut agent, json!({}));
    assert_eq!(
        agent_post(addr, &agent, "/api/v1/agents/checkin", &b)
            .await
            .status,
        200
    );
    let bad = http::request(
        addr,
        "POST",
        "/api/v1/agents/checkin",
        &[("Authorization", "Bearer nonsense")],
        b"{}",
    )
    .await
    .unwrap();
    assert_eq!(bad.status, 401);
    assert_eq!(
        http::login(addr, "admin", "wrong").await.unwrap().status,
        401
    );

    let anonymous = http::request(addr, "GET", "/metrics", &[], b"")
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);
    let auth = format!("Bearer {}", c.token);
    let a = http::request(
        addr,
        "GET",
        "/metrics",
        &[("Authorization", auth.as_str())],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        a.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = a.text();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(value("ringfence_checkins_served_total"), 1.0);
    assert_eq!(
        value("ringfence_checkins_refused_total{status=\"401\"}"),
        1.0
    );
    assert_eq!(value("ringfence_logins_total{result=\"failed\"}"), 1.0);
    assert_eq!(
        value("ringfence_quota_refusals_total{kind=\"checkin\"}"),
        0.0
    );
    // The scrape's own connection is open.
    assert!(value("ringfence_connections_open") >= 1.0);
    assert_eq!(value("ringfence_checkin_seconds_count"), 2.0);
    assert!(value("ringfence_db_query_seconds") >= 0.0);
    running.shutdown().await.unwrap();
}

/// A 500 is logged with its route and cause (the client sees only "internal error"), a failing
/// engine tick is logged as an error, refused check-ins are logged with status and reason, and a
/// failed login with its name (made printable) and address, never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_refusals_and_failed_logins_are_logged_with_their_cause() {
    capture_logs();
    let c = console(Backend::Sqlite).await;
    let running = serve(&c, Duration::from_millis(50)).await;
    let addr = running.addr;
    assert!(!lines_with("console listening").is_empty());

    // A failed login: name logged printable, password nowhere.
    let a = http::login(
        addr,
        "mallory\n[fake] operator admin signed in",
        "s3cret-pass-xyzzy",
    )
    .await
    .unwrap();
    assert_eq!(a.status, 401);
    let line = wait_for_line(&["login failed", "mallory"]).await;
    assert!(line.contains("\\u{a}[fake]"), "{line}");
    assert!(line.contains("127.0.0.1"), "{line}");
    assert!(lines_with("s3cret-pass-xyzzy").is_empty());

    // A refused check-in: status and reason.
    let mut agent = c.enroll(1, |_| json!({})).await.pop().unwrap();
    let mut body = checkin_body(&mut agent, json!({}));
    body.truncate(body.len() / 2);
    let a = agent_post(addr, &agent, "/api/v1/agents/checkin", &body).await;
    assert_eq!(a.status, 400);
    let line = wait_for_line(&["check-in refused", &agent.id]).await;
    assert!(line.contains("status=400"), "{line}");
    assert!(line.contains("EOF"), "{line}");

    // Break the database under the console: the rollouts table is gone.
    let ringfence_console::Db::Sqlite(pool) = &c.state.db else {
        panic!("a SQLite console")
    };
    sqlx::query("DROP TABLE rollouts")
        .execute(pool)
        .await
        .unwrap();
    let auth = format!("Bearer {}", c.token);
    let a = http::request(
        addr,
        "GET",
        "/api/v1/rollouts",
        &[("Authorization", auth.as_str())],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(a.status, 500);
    assert!(
        !a.text().contains("rollouts"),
        "no detail to the client: {}",
        a.text()
    );
    let line = wait_for_line(&["internal error", "route=/api/v1/rollouts"]).await;
    assert!(line.starts_with("ERROR"), "{line}");
    assert!(line.contains("no such table"), "{line}");
    let line = wait_for_line(&["rollout engine tick failed"]).await;
    assert!(line.starts_with("ERROR"), "{line}");
    assert!(c.state.metrics.engine_ticks_failed.load(Ordering::Relaxed) >= 1);
    assert!(c.state.metrics.internal_errors.load(Ordering::Relaxed) >= 1);
    running.shutdown().await.unwrap();
}
