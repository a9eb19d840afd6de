//! The figure "time from an attack on a host to the finding on the console": `ringfence up`
//! (console on SQLite and a local agent, both real), then 100 attacks the default pack catches
//! (a program run from a temporary directory, each with its own command line so none is folded
//! into another), one every 100 ms; each one's latency is the console's `received_at` (when the
//! finding is stored, and so on the findings page) minus the moment the test ran it. Prints
//! p50, p99 and max. A measurement, not a check: `cargo test -p ringfence --test
//! console_latency -- --ignored --nocapture` (as root, for the agent's sensors).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the test failing"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");
const ATTACKS: usize = 100;

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn findings(data: &Path, url: &str, token: &str) -> Vec<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pin = ringfence_wire::tls::ca_pin_in(&data.join("tls")).unwrap();
    let client =
        ringfence_wire::Client::new(url, &ringfence_wire::Trust::Pinned(vec![pin])).unwrap();
    rt.block_on(client.get_json::<serde_json::Value>("/api/v1/findings?limit=1000", Some(token)))
        .unwrap_or_default()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn quantile(sorted: &[i64], q: f64) -> i64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
#[ignore = "a measurement (prints the figure); run with --ignored --nocapture, as root"]
fn attack_to_console_latency_over_100_attacks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(BIN);
    cmd.args(["up", "--checkin-secs", "1", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data")
        .arg(&data);
    let (mut child, lines) = common::spawn_with_lines(&mut cmd);
    let url = format!("https://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut token = None;
    let mut agent_up = false;
    while token.is_none() || !agent_up {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("`up` did not print its token and agent");
        if line.contains("API token:") {
            token = line.split_whitespace().last().map(str::to_owned);
        }
        agent_up |= line.contains("local agent:") && line.contains("running (pid");
    }
    let token = token.unwrap();
    let tool = dir.path().join("dropped-tool");
    std::fs::copy("/bin/true", &tool).unwrap();
    // Warm up: the agent runs and uploads.
    while findings(&data, &url, &token).is_empty() {
        assert!(Instant::now() < deadline, "no finding reached the console");
        let _ = Command::new(&tool).arg("warm-up").status();
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut attacked: BTreeMap<String, i64> = BTreeMap::new();
    for i in 0..ATTACKS {
        let marker = format!("rf-latency-{i}");
        attacked.insert(marker.clone(), now_ms());
        let _ = Command::new(&tool).arg(&marker).status();
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut latencies: BTreeMap<String, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while latencies.len() < ATTACKS && Instant::now() < deadline {
        for f in findings(&data, &url, &token) {
            let body: serde_json::Value =
                serde_json::from_str(f["body"].as_str().unwrap_or("{}")).unwrap_or_default();
            let Some(cl) = body
                .pointer("/process/command_line")
                .and_then(|v| v.as_str())
            else {
                continue;
            };
            let Some(marker) = cl.split_whitespace().last() else {
                continue;
            };
            if let (Some(at), Some(received)) = (attacked.get(marker), f["received_at"].as_i64()) {
                latencies.insert(marker.to_owned(), received - at);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let mut v: Vec<i64> = latencies.values().copied().collect();
    v.sort_unstable();
    assert_eq!(
        v.len(),
        ATTACKS,
        "only {} of {ATTACKS} attacks reached the console",
        v.len()
    );
    println!(
        "attack -> console finding over {ATTACKS} attacks: p50 {} ms, p99 {} ms, max {} ms",
        quantile(&v, 0.5),
        quantile(&v, 0.99),
        v[v.len() - 1]
    );
}
