//! Check-in throughput and latency over real loopback HTTPS (and plain HTTP beside it, to show
//! what TLS costs), on SQLite and on PostgreSQL.
//!
//! A console is served on 127.0.0.1 with a fresh database and its own CA (the client pins it as
//! agents do); 2,000 agents enroll through the API;
//! then 64 concurrent clients (the `ringfence_wire` client the real agent uses) check in as fast
//! as the console answers for 10 seconds, each agent with its own credential, sequence number
//! and health. Clients and console share this machine's cores, so the figure is what one box
//! does for both. Prints check-ins per second and the latency percentiles.
//!
//! PostgreSQL runs when `RINGFENCE_TEST_POSTGRES` names a server (`eval "$(scripts/postgres.sh)"`).
//! `RINGFENCE_BENCH_SECONDS` changes the duration.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark: a failure is the run failing"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringfence_console::agents::{NewEnrollmentToken, mint_enrollment_token};
use ringfence_console::{AppState, Config, Db, SystemClock};
use ringfence_wire::{
    CheckIn, Client, Count, CpuPercent, Credential, EnrollRequest, Health, Label, PROTOCOL, Tags,
    Trust,
};
use sqlx::Connection;

const AGENTS: usize = 2000;
const CLIENTS: usize = 64;

async fn fresh_db(backend: &str, dir: &std::path::Path) -> String {
    if backend == "sqlite" {
        return format!("sqlite:{}", dir.join("console.db").display());
    }
    let url = std::env::var("RINGFENCE_TEST_POSTGRES").unwrap();
    let name = format!(
        "rf_bench_{}",
        ringfence_console::auth::random_hex(6).unwrap()
    );
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

async fn run(backend: &str, tls: bool, seconds: f64) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&fresh_db(backend, dir.path()).await)
        .await
        .unwrap();
    let mut config = Config::new(dir.path().join("content"));
    config.checkin_interval_ms = 60_000;
    config.checkin_jitter_ms = 6_000;
    // 2,000 agents stand in for a fleet checking in at this rate: each of them checks in far
    // more often than its interval allows, which the per-agent quota would (rightly) refuse.
    config.checkin_quota = ringfence_console::quota::Quota {
        burst: u32::MAX,
        per_interval: u32::MAX,
    };
    let state = AppState::new(db, Arc::new(SystemClock), config)
        .await
        .unwrap();
    let token = mint_enrollment_token(
        &state,
        "bench",
        &NewEnrollmentToken {
            label: "bench".into(),
            max_uses: AGENTS as i64,
            ttl_ms: None,
            tags: None,
        },
    )
    .await
    .unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let (running, trust) = if tls {
        let names = vec!["127.0.0.1".to_owned()];
        let (tls, _) =
            ringfence_wire::tls::ConsoleTls::load_or_create(&dir.path().join("tls"), &names)
                .unwrap();
        let running = ringfence_console::serve_tls(
            state,
            listen,
            Duration::from_secs(5),
            tls.server_config(None).unwrap(),
        )
        .await
        .unwrap();
        (running, Trust::Pinned(vec![tls.pin()]))
    } else {
        let running = ringfence_console::serve(state, listen, Duration::from_secs(5))
            .await
            .unwrap();
        (running, Trust::PlainLoopback)
    };
    let client = Client::new(&running.url(), &trust).unwrap();

    let mut agents = Vec::with_capacity(AGENTS);
    for i in 0..AGENTS {
        let e = client
            .enroll(&EnrollRequest {
                protocol: PROTOCOL,
                token: token.token.clone(),
                hostname: Label::try_from(format!("host-{i}")).unwrap(),
                agent_version: Label::try_from("0.1.0").unwrap(),
                tags: Tags::default(),
                csr_pem: None,
            })
            .await
            .unwrap();
        agents.push(e.credential);
    }

    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let per_client = AGENTS / CLIENTS;
    let mut tasks = Vec::new();
    for (c, chunk) in agents.chunks(per_client).enumerate().take(CLIENTS) {
        // Each client checks in for its own agents, each with its own sequence number.
        let chunk: Vec<(Credential, u64)> = chunk.iter().map(|cred| (cred.clone(), 0)).collect();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = chunk;
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut i = c;
            while Instant::now() < deadline {
                let (cred, seq) = &mut mine[i % per_client];
                i += 1;
                *seq += 1;
                let checkin = CheckIn {
                    protocol: PROTOCOL,
                    agent_id: cred.agent_id(),
                    seq: Count::try_from(*seq).unwrap(),
                    agent_version: Label::try_from("0.1.0").unwrap(),
                    content_version: Count::ZERO,
                    content: None,
                    health: Health {
                        cpu_percent: CpuPercent::try_from(2.5).unwrap(),
                        rss_bytes: Count::try_from(40_000_000u64).unwrap(),
                        events: Count::try_from(12_000u64).unwrap(),
                        events_dropped: Count::try_from(3u64).unwrap(),
                        findings: Count::try_from(1u64).unwrap(),
                        interval_ms: Count::try_from(60_000u64).unwrap(),
                        ..Health::default()
                    },
                    tags: Tags::default(),
                    order_results: Default::default(),
                    tuning: Default::default(),
                    sensor_hooks: Default::default(),
                };
                let t = Instant::now();
                match client.check_in(cred, &checkin).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64().max(seconds);
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let link = if tls { "https" } else { "http" };
    println!(
        "checkins/{backend}/{link}: {:.0} check-ins/s ({} in {elapsed:.1} s, {CLIENTS} concurrent clients, \
         {AGENTS} agents, {errors} errors); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len() as f64 / elapsed,
        all.len(),
        pct(0.50),
        pct(0.99),
        all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    );
    running.shutdown().await.unwrap();
}

fn main() {
    let seconds: f64 = std::env::var("RINGFENCE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Side by side in one run (this machine is noisy): TLS, then plain HTTP.
        run("sqlite", true, seconds).await;
        run("sqlite", false, seconds).await;
        if std::env::var("RINGFENCE_TEST_POSTGRES").is_ok_and(|u| !u.is_empty()) {
            run("postgres", true, seconds).await;
            run("postgres", false, seconds).await;
        } else {
            println!("checkins/postgres: skipped (set RINGFENCE_TEST_POSTGRES)");
        }
    });
}
