//! The agent's fleet link against a console that lies: the answers a man in the middle (or a
//! compromised console) would send, each performed against the real link code, and each
//! refused and reported without losing the agent's identity or its findings.
//!
//! The hostile console is a plain TCP server on loopback that answers every request with the
//! next scripted response (the link's plain-HTTP loopback mode: what TLS pinning keeps off the
//! path is exactly what this test puts on it). In order it sends:
//! 1. a 401 — before, one 401 made the agent forget its enrollment;
//! 2. an answer carrying an unsigned order — it must not parse, let alone run;
//! 3. an answer with an order signed by another key, and an offer of version `u64::MAX` whose
//!    bundle is not signed by the content root (its SHA-256 matches the offer) — before, the
//!    offer froze content until restart (the interval bound, which keeps a `u64::MAX`
//!    `next_checkin_ms` from stopping check-ins, is tested beside `CheckInResponse`);
//! 4. `{"accepted": 0}` to every findings upload — before, any answer dropped the findings;
//! 5. then ordinary answers, so the test sees the link still checking in.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringfence_agent::fleet::link::{self, LinkOptions};
use ringfence_agent::fleet::orders::{Acceptance, OrderRunner, STATE_FILE};
use ringfence_agent::fleet::{Enrollment, Telemetry};
use ringfence_sensor::StopSignal;
use ringfence_wire::{
    AgentId, Client, Credential, Label, OrderAction, OrderBody, OrderKey, Tags, Trust,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the hostile console has seen.
#[derive(Default)]
struct Seen {
    checkins: usize,
    uploads: usize,
    /// The bearer credential of every check-in.
    credentials: Vec<String>,
}

fn http(status: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

async fn read_request(tcp: &mut tokio::net::TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = tcp.read(&mut chunk).await.ok()?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let first = head.lines().next().unwrap_or_default().to_owned();
            return Some((first, head));
        }
    }
}

/// Serve the scripted console on `listener`: each check-in gets the next of `script` (then an
/// honest answer), each upload a forged `{"accepted": 0}`, and `/content/*` gets `bundle`.
fn spawn_console(
    listener: tokio::net::TcpListener,
    seen: Arc<Mutex<Seen>>,
    script: Vec<Vec<u8>>,
    bundle: Vec<u8>,
) {
    tokio::spawn(async move {
        let mut script = script.into_iter();
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let Some((first, head)) = read_request(&mut tcp).await else {
                continue;
            };
            let reply = if first.contains("/api/v1/agents/checkin") {
                let mut s = seen.lock().unwrap();
                s.checkins += 1;
                if let Some(auth) = head
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: Bearer "))
                {
                    s.credentials.push(auth.to_owned());
                }
                script.next().unwrap_or_else(|| {
                    http(
                        "200 OK",
                        br#"{"content": null, "next_checkin_ms": 1000, "jitter_ms": 0}"#,
                    )
                })
            } else if first.contains("/api/v1/agents/findings") {
                seen.lock().unwrap().uploads += 1;
                http("200 OK", br#"{"accepted": 0}"#)
            } else if first.contains("/content/") {
                http("200 OK", &bundle)
            } else {
                http("404 Not Found", br#"{"error":"no"}"#)
            };
            let _ = tcp.write_all(&reply).await;
        }
    });
}

/// An agent already enrolled with `console`: its id, credential and state file.
fn enrolled(
    state_dir: &std::path::Path,
    console: &str,
    c: char,
) -> (AgentId, Credential, std::path::PathBuf) {
    let agent_id = AgentId::try_from(c.to_string().repeat(32)).unwrap();
    let credential = Credential::new(&agent_id, &"cd".repeat(32)).unwrap();
    let state_file = state_dir.join("fleet.json");
    Enrollment {
        console: console.to_owned(),
        ca_pins: Vec::new(),
        agent_id: agent_id.clone(),
        credential: credential.clone(),
        crashes_reported: None,
        tls: None,
    }
    .save(&state_file)
    .unwrap();
    (agent_id, credential, state_file)
}

#[tokio::test(flavor = "current_thread")]
async fn a_lying_console_cannot_blind_the_agent_or_make_it_run_anything() {
    let dir = tempfile::tempdir().unwrap();
    let content_dir = dir.path().join("content");
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&content_dir).unwrap();
    std::fs::create_dir_all(&state_dir).unwrap();
    let keys = dir.path().join("keys");
    ringfence_content::init_keys(
        &keys,
        &ringfence_content::KeysInitOptions::new(ringfence_content::UnixTime::now()),
    )
    .unwrap();

    // The hostile console.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());

    // The agent is enrolled already.
    let (agent_id, credential, state_file) = enrolled(&state_dir, &url, 'a');
    let forged_bundle = b"not a bundle, whatever the offer says".to_vec();
    let forged_sha = hex::encode(Sha256::digest(&forged_bundle));
    let other_key = OrderKey::generate().unwrap();
    let forged_order = other_key
        .sign(&OrderBody {
            agent_id: agent_id.clone(),
            id: 9,
            issued_at: 0,
            not_after: u64::MAX,
            action: OrderAction::Kill {
                pid: std::process::id(),
                tree: false,
                start_ticks: Some(1),
            },
            requested_by: Label::try_from("mallory").unwrap(),
            reason: "forged".into(),
        })
        .unwrap();
    let script: Vec<Vec<u8>> = vec![
        http("401 Unauthorized", br#"{"error":"unknown credential"}"#),
        http(
            "200 OK",
            serde_json::json!({"content": null, "next_checkin_ms": 1, "jitter_ms": 0,
                "orders": [{"id": 9, "requested_by": "mallory", "reason": "x",
                            "action": {"kind": "kill", "pid": 1}}]})
            .to_string()
            .as_bytes(),
        ),
        http(
            "200 OK",
            serde_json::json!({
                "content": {"version": u64::MAX, "url": "/content/evil.bundle",
                            "sha256": forged_sha, "size": forged_bundle.len()},
                "next_checkin_ms": 1, "jitter_ms": 0,
                "orders": [forged_order]})
            .to_string()
            .as_bytes(),
        ),
    ];
    let seen = Arc::new(Mutex::new(Seen::default()));
    spawn_console(listener, Arc::clone(&seen), script, forged_bundle.clone());

    let telemetry = Arc::new(Telemetry::new(100));
    for i in 0..3 {
        telemetry.finding(&serde_json::json!({"rule": {"id": format!("r{i}")}}));
    }
    let audit_log = dir.path().join("audit.jsonl");
    let response = ringfence_response::ResponseConfig {
        dry_run: true,
        audit_log: audit_log.clone(),
        ..ringfence_response::ResponseConfig::default()
    };
    let real_key = OrderKey::generate().unwrap();
    let orders = OrderRunner::new(
        Acceptance {
            accept_orders: true,
            response_enabled: true,
            key: Some(real_key.pin()),
        },
        response,
        state_dir.join(STATE_FILE),
    );
    let content = ringfence_agent::content::config::ContentSection {
        dir: Some(content_dir.clone()),
        state_dir: Some(state_dir.clone()),
        root: Some(keys.clone()),
        ..Default::default()
    };
    let opts = LinkOptions {
        console: url.clone(),
        enroll_token: None,
        hostname: Label::try_from("host").unwrap(),
        agent_version: Label::try_from("0.1.0").unwrap(),
        tags: Tags::default(),
        state_file: state_file.clone(),
        content_dir: content_dir.clone(),
        max_bundle_bytes: 1 << 20,
        content_version: Box::new(|| 3),
        content_label: Box::new(|| "bundle v3, 1 rule".to_owned()),
        supervisor_crashes: None,
        lkg_fallbacks: 0,
        release_fallbacks: 0,
        releases: None,
        orders,
        ca_pins: Vec::new(),
        content,
        alarm_after: Duration::from_secs(3600),
        tuning: Default::default(),
        trust: Trust::PlainLoopback,
        fallbacks: Vec::new(),
    };
    let client = Client::new(&url, &Trust::PlainLoopback).unwrap();
    let stop = StopSignal::new();
    // Five check-ins: the 401, the unsigned order, the forged offer and order, and two honest
    // answers after them (so the huge interval was not obeyed).
    let watch = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.lock().unwrap().checkins < 5 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.stop();
    };
    let (report, ()) = tokio::join!(
        link::run(opts, client, Arc::clone(&telemetry), stop.clone()),
        watch
    );
    assert!(
        seen.lock().unwrap().checkins >= 5,
        "the link stopped checking in: {report:?}"
    );

    let seen = seen.lock().unwrap();
    // 1. The 401 did not make it forget: every check-in carried the same credential, and the
    //    enrollment is still on disk.
    assert!(
        seen.credentials.iter().all(|c| c == credential.as_str()),
        "{:?}",
        seen.credentials
    );
    let kept = Enrollment::load(&state_file).unwrap().unwrap();
    assert_eq!(kept.agent_id, agent_id);
    assert!(report.failed_checkins >= 2, "{report:?}");
    // 2, 3. No order ran: nothing reached the responder's audit log.
    assert!(!audit_log.exists(), "an order reached the responder");
    // 3. The forged offer was refused and not kept: no file, and it is not "delivered".
    assert_eq!(report.offers_refused, 1, "{report:?}");
    assert_eq!(report.bundles_delivered, 0, "{report:?}");
    let files: Vec<_> = std::fs::read_dir(&content_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(files.is_empty(), "{files:?}");
    // 4. Findings are all still queued: the forged acknowledgement dropped none.
    assert!(seen.uploads >= 1);
    assert_eq!(telemetry.pending(), 3);
    assert!(report.uploads_unacknowledged >= 1, "{report:?}");
    // Each refusal is a notice for the host's own outputs.
    let notices = telemetry.take_notices().join("\n");
    assert!(notices.contains("signature"), "{notices}");
    assert!(
        notices.contains(&format!("content version {}", u64::MAX)),
        "{notices}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_dead_console_fails_over_to_another_of_the_fleet_with_the_same_identity() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    // The first console is gone (a closed port); the second answers.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let alive = format!("http://{}", listener.local_addr().unwrap());
    let (agent_id, credential, state_file) = enrolled(&state_dir, &dead, 'b');
    let seen = Arc::new(Mutex::new(Seen::default()));
    spawn_console(listener, Arc::clone(&seen), Vec::new(), Vec::new());
    let content = ringfence_agent::content::config::ContentSection {
        dir: Some(dir.path().join("content")),
        state_dir: Some(state_dir.clone()),
        ..Default::default()
    };
    let opts = LinkOptions {
        console: dead.clone(),
        enroll_token: None,
        hostname: Label::try_from("host").unwrap(),
        agent_version: Label::try_from("0.1.0").unwrap(),
        tags: Tags::default(),
        state_file: state_file.clone(),
        content_dir: dir.path().join("content"),
        max_bundle_bytes: 1 << 20,
        content_version: Box::new(|| 0),
        content_label: Box::new(|| "the built-in pack, 66 rules".to_owned()),
        supervisor_crashes: None,
        lkg_fallbacks: 0,
        release_fallbacks: 0,
        releases: None,
        orders: OrderRunner::new(
            Acceptance::default(),
            ringfence_response::ResponseConfig::default(),
            state_dir.join(STATE_FILE),
        ),
        ca_pins: Vec::new(),
        content,
        alarm_after: Duration::from_secs(3600),
        tuning: Default::default(),
        trust: Trust::PlainLoopback,
        fallbacks: vec![alive],
    };
    let client = Client::new(&dead, &Trust::PlainLoopback).unwrap();
    let telemetry = Arc::new(Telemetry::new(10));
    let stop = StopSignal::new();
    let watch = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.lock().unwrap().checkins < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.stop();
    };
    let (report, ()) = tokio::join!(
        link::run(opts, client, Arc::clone(&telemetry), stop.clone()),
        watch
    );
    let seen = seen.lock().unwrap();
    assert!(seen.checkins >= 2, "{report:?}");
    assert!(report.failed_checkins >= 1, "{report:?}");
    assert!(seen.credentials.iter().all(|c| c == credential.as_str()));
    assert_eq!(
        Enrollment::load(&state_file).unwrap().unwrap().agent_id,
        agent_id,
        "the same identity, not a new enrollment"
    );
}
