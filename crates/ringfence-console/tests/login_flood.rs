//! 64 concurrent wrong-password logins for one name against a real console on loopback (issue
//! 19: they took the console from 73 MB to 1.3 GB, Argon2 running on an unbounded blocking
//! pool). Now at most two password checks run at once, a short queue waits for them and the
//! rest are answered at once; the name then backs off with 429, even for the right password.
//!
//! Alone in its test binary: it reads this process's resident set.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;
#[path = "common/http.rs"]
mod http;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Backend, console};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_keeps_memory_bounded_and_then_backs_off() {
    let c = console(Backend::Sqlite).await;
    let running = ringfence_console::serve(
        c.state.clone(),
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    let addr = running.addr;
    // One login first, so the runtime, the pool and the allocator's arenas are warm.
    let warm = http::login(addr, "nobody", "x").await.unwrap();
    assert_eq!(warm.status, 401, "{}", warm.text());

    let before = http::rss_kib();
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(http::rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let verifications_before = c.state.metrics.argon2_verifications.load(Ordering::Relaxed);
    let flood: Vec<_> = (0..64)
        .map(|i| {
            tokio::spawn(async move { http::login(addr, "admin", &format!("wrong-{i}")).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for f in flood {
        statuses.push(f.await.unwrap().unwrap().status);
    }
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let after = http::rss_kib();
    let peak = peak.load(Ordering::Relaxed);
    let verifications =
        c.state.metrics.argon2_verifications.load(Ordering::Relaxed) - verifications_before;
    let count = |s: u16| statuses.iter().filter(|&&x| x == s).count();
    eprintln!(
        "login flood: RSS before {} MiB, peak {} MiB, after {} MiB; answers: {} × 401, {} × 429, \
         {} × 503; {verifications} Argon2 verifications",
        before / 1024,
        peak / 1024,
        after / 1024,
        count(401),
        count(429),
        count(503)
    );
    assert_eq!(count(401) + count(429) + count(503), 64, "{statuses:?}");
    assert!(count(401) >= 1, "{statuses:?}");
    // At most the verifiers plus the queue ran Argon2; the rest were answered without it.
    assert!(
        verifications
            <= (ringfence_console::auth::login_verifiers() + ringfence_console::auth::LOGIN_QUEUE)
                as u64,
        "{verifications}"
    );
    // Argon2 takes 19 MiB per verification: two buffers, reused, not 64 (1.2 GiB).
    assert!(
        peak.saturating_sub(before) < 64 * 1024,
        "RSS grew from {before} KiB to {peak} KiB"
    );

    // The name now backs off: even the right password is refused, fast, with Retry-After,
    // and costs no verification.
    let v0 = c.state.metrics.argon2_verifications.load(Ordering::Relaxed);
    let later = http::login(addr, "admin", "hunter2-but-longer")
        .await
        .unwrap();
    assert_eq!(later.status, 429, "{}", later.text());
    let retry: u64 = later.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert!(later.text().contains("too many failed logins"));
    assert_eq!(
        c.state.metrics.argon2_verifications.load(Ordering::Relaxed),
        v0
    );

    // After the backoff (the console's clock), the operator gets in.
    c.clock.advance_ms(16 * 60_000);
    let ok = http::login(addr, "admin", "hunter2-but-longer")
        .await
        .unwrap();
    assert_eq!(ok.status, 303, "{}", ok.text());
    assert!(ok.header("set-cookie").unwrap().starts_with("rf_session="));
    running.shutdown().await.unwrap();
}
