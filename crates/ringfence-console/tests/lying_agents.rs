//! Lying agents against a real console on real SQLite and real PostgreSQL: counters beyond what
//! an interval can hold, overflowing totals and sums, one agent trying to roll a ring back on
//! its own, check-ins that try to change their agent's ring, controls that went silent, and
//! content uploads that are not bundles or race each other.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{Agent, Backend, TestConsole, console_with};
use ringfence_console::Clock;
use ringfence_console::content::{self, Republisher};
use ringfence_console::ingest::{Sample, write_batch};
use ringfence_console::rollout::{self, TickOutcome};
use ringfence_content::{
    BundleBuilder, EntryKind, KeysInitOptions, Limits, SchemaId, SignOptions, TrustedRoot,
    UnixTime, init_keys, sign_bundle,
};
use serde_json::{Value, json};

both!(
    counters_beyond_their_interval_are_refused_whole_and_audited,
    stored_totals_saturate_instead_of_breaking_the_pages,
    a_control_agent_at_max_events_cannot_freeze_the_gate,
    one_agent_falling_back_halts_the_ring_but_never_rolls_it_back,
    fallbacks_from_enough_agents_still_roll_back,
    a_checkin_cannot_move_its_agent_between_rings,
    stale_controls_leave_the_control_group,
    uploads_are_verified_against_the_trust_root,
    two_uploads_of_one_version_cannot_race,
);

const PLAN: &str = r#"
[gates]
min_samples = 5
[[rings]]
name = "canary"
percent = 10
bake = "5m"
[[rings]]
name = "rest"
percent = 100
bake = "5m"
"#;

fn plain(_: usize) -> Value {
    json!({"region": "eu", "tz_offset_minutes": 0})
}

/// A console with v1 as the baseline, v2 published, and `n` agents on v1.
async fn fleet(b: Backend, n: usize) -> (TestConsole, Vec<Agent>) {
    let c = console_with(b, 60_000).await;
    c.publish(1, b"content v1", true).await;
    c.publish(2, b"content v2", false).await;
    let mut agents = c.enroll(n, plain).await;
    round(&c, &mut agents, |_| json!({})).await;
    (c, agents)
}

/// One minute passes and every agent checks in with `health(i)`, taking what it is offered.
async fn round(c: &TestConsole, agents: &mut [Agent], health: impl Fn(usize) -> Value) {
    c.clock.advance_ms(60_000);
    for (i, a) in agents.iter_mut().enumerate() {
        let (status, resp) = c.checkin(a, health(i)).await;
        assert_eq!(status, StatusCode::OK, "agent {i}");
        if let Some(offer) = resp.unwrap().content {
            a.current = a.current.max(offer.version);
        }
    }
}

async fn start(c: &TestConsole, plan: &str) -> Value {
    let (status, v) = c
        .op(
            "POST",
            "/api/v1/rollouts",
            json!({"version": 2, "plan": plan, "reason": "test"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

async fn audit(c: &TestConsole) -> Vec<Value> {
    let (status, v) = c.op("GET", "/api/v1/audit?limit=500", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

fn sample(agent: &str, at: i64, f: impl FnOnce(&mut Sample)) -> Sample {
    let mut s = Sample {
        agent_id: agent.to_owned(),
        at,
        seq: 1,
        agent_version: "0.1.0".into(),
        content_version: 1,
        content: None,
        crashes: 0,
        restarts: 0,
        lkg: 0,
        release_fallbacks: 0,
        cpu: 2.0,
        rss: 50_000_000,
        events: 1000,
        drops: 1,
        findings: 0,
        interval_ms: 60_000,
        region: Some("eu".into()),
        industry: None,
        environment: None,
        custom_tags: "{}".into(),
        tz_offset: 0,
    };
    f(&mut s);
    s
}

async fn counters_beyond_their_interval_are_refused_whole_and_audited(b: Backend) {
    let c = console_with(b, 60_000).await;
    let mut a = c.enroll(1, plain).await.remove(0);
    let (status, _) = c.checkin(&mut a, json!({"crashes": 2})).await;
    assert_eq!(status, StatusCode::OK);
    for (field, value) in [
        ("crashes", json!(i64::MAX)),
        ("crashes", json!(i64::MAX)),
        ("lkg_fallbacks", json!(1000)),
        // A minute of events at a billion a second.
        ("events", json!(60_000_000_000i64)),
        ("findings", json!(1_000_000_000i64)),
        ("interval_ms", json!(i64::MAX)),
    ] {
        c.clock.advance_ms(60_000);
        let (status, _) = c.checkin(&mut a, json!({ field: value })).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field} = {value}"
        );
    }
    // A negative delta does not even parse.
    c.clock.advance_ms(60_000);
    let (status, _) = c.checkin(&mut a, json!({"events": -5})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // A flood of refusals within one interval is audited once, with the count left out (8 of
    // them: within the agent's check-in quota, past which they are 429 before any parsing).
    for _ in 0..8 {
        let (status, _) = c.checkin(&mut a, json!({"crashes": i64::MAX})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    c.clock.advance_ms(60_000);
    let (status, _) = c.checkin(&mut a, json!({"crashes": i64::MAX})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Refused whole: nothing of the lying check-ins was stored.
    assert_eq!(c.count("checkins").await, 1);
    let (_, agents) = c.op("GET", "/api/v1/agents", Value::Null).await;
    assert_eq!(agents[0]["crashes_total"], 2);
    assert_eq!(agents[0]["checkins"], 1);
    let refusals: Vec<Value> = audit(&c)
        .await
        .into_iter()
        .filter(|e| e["action"] == "checkin")
        .collect();
    assert_eq!(refusals.len(), 8, "{refusals:?}");
    assert!(
        refusals[0]["evidence"]
            .as_str()
            .unwrap()
            .contains("\"refusals_not_audited_since_the_last\":8"),
        "{:?}",
        refusals[0]
    );
    assert!(
        refusals.iter().all(|e| e["actor"] == a.id.as_str()
            && e["decision"].as_str().unwrap().starts_with("refused")),
        "{refusals:?}"
    );
    assert!(
        refusals
            .iter()
            .any(|e| e["decision"].as_str().unwrap().contains("health.crashes")),
        "{refusals:?}"
    );
}

async fn stored_totals_saturate_instead_of_breaking_the_pages(b: Backend) {
    let c = console_with(b, 60_000).await;
    let a = c.enroll(1, plain).await.remove(0);
    // Rows from before the bounds, or a long life of large honest counters: totals must
    // saturate, within one batch and across batches.
    let huge = |s: &mut Sample| {
        s.crashes = i64::MAX - 1;
        s.restarts = 5;
        s.lkg = i64::MAX;
        s.events = i64::MAX;
        s.drops = i64::MAX;
        s.findings = i64::MAX;
    };
    let now = c.clock.now_ms();
    let batch = [sample(&a.id, now, huge), sample(&a.id, now + 1, huge)];
    write_batch(&c.state.db, batch.iter()).await.unwrap();
    let again = [sample(&a.id, now + 2, huge)];
    write_batch(&c.state.db, again.iter()).await.unwrap();
    let (status, agents) = c.op("GET", "/api/v1/agents", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{agents}");
    for field in [
        "crashes_total",
        "lkg_total",
        "drops_total",
        "events_total",
        "findings_total",
    ] {
        assert_eq!(agents[0][field], json!(i64::MAX), "{field}");
    }
    let (status, _) = c.op("GET", "/api/v1/fleet", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let session = ringfence_console::auth::create_session(&c.state, "admin", 60_000, false)
        .await
        .unwrap();
    let cookie = format!("rf_session={session}");
    let (status, _, body) = c
        .call_raw("GET", "/fleet", None, &[("cookie", &cookie)], None)
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

async fn a_control_agent_at_max_events_cannot_freeze_the_gate(b: Backend) {
    let (c, mut agents) = fleet(b, 60).await;
    let v = start(&c, PLAN).await;
    assert_eq!(v["rings"][0]["members"], 6);
    round(&c, &mut agents, |_| json!({})).await;
    let on_v2: Vec<usize> = (0..agents.len())
        .filter(|&i| agents[i].current == 2)
        .collect();
    let control = (0..agents.len()).find(|i| !on_v2.contains(i)).unwrap();
    // Two stored check-ins (rows from before the bounds) whose events sum past i64::MAX, in
    // two transactions so the gate's SQL sum meets them.
    let now = c.clock.now_ms();
    for at in [now, now + 1] {
        let row = [sample(&agents[control].id, at, |s| s.events = i64::MAX)];
        write_batch(&c.state.db, row.iter()).await.unwrap();
    }
    for _ in 0..8 {
        round(&c, &mut agents, |_| json!({})).await;
        let out = rollout::tick(&c.state).await;
        assert!(out.is_ok(), "the gate froze: {out:?}");
    }
    let (status, v) = c.op("POST", "/api/v1/rollouts/1/promote", json!({})).await;
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
}

/// Ring members (by index) once the canary has been offered v2.
async fn canary(c: &TestConsole, agents: &mut [Agent]) -> Vec<usize> {
    round(c, agents, |_| json!({})).await;
    (0..agents.len())
        .filter(|&i| agents[i].current == 2)
        .collect()
}

async fn one_agent_falling_back_halts_the_ring_but_never_rolls_it_back(b: Backend) {
    let (c, mut agents) = fleet(b, 60).await;
    start(&c, PLAN).await;
    let ring = canary(&c, &mut agents).await;
    assert_eq!(ring.len(), 6);
    let liar = ring[0];
    round(&c, &mut agents, |i| {
        if i == liar {
            json!({"lkg_fallbacks": 1, "crashes": 50})
        } else {
            json!({})
        }
    })
    .await;
    let out = rollout::tick(&c.state).await.unwrap();
    assert_eq!(out, TickOutcome::Halted { rollout: 1 });
    let (_, v) = c.op("GET", "/api/v1/rollouts/1", Value::Null).await;
    assert_eq!(v["state"], "halted", "{v}");
    assert!(v["rollback_version"].is_null(), "{v}");
    let gate = &v["rings"][0]["gate"];
    assert_eq!(gate["verdict"], "halt", "{gate}");
    assert_eq!(gate["hard_stop"]["needed"], 3, "{gate}");
    let named = gate["hard_stop"]["agents"].to_string();
    assert!(named.contains(&agents[liar].id), "{gate}");
    assert!(
        gate["reason"].as_str().unwrap().contains(&agents[liar].id),
        "{gate}"
    );
    let halts: Vec<Value> = audit(&c)
        .await
        .into_iter()
        .filter(|e| e["action"] == "halt")
        .collect();
    assert_eq!(halts.len(), 1, "{halts:?}");
    assert_eq!(halts[0]["actor"], "engine");
    assert!(
        halts[0]["evidence"]
            .as_str()
            .unwrap()
            .contains(&agents[liar].id)
    );
    // The lone liar keeps lying: the rollout stays halted, never rolled back.
    for _ in 0..3 {
        round(&c, &mut agents, |i| {
            if i == liar {
                json!({"lkg_fallbacks": 1})
            } else {
                json!({})
            }
        })
        .await;
        assert_eq!(rollout::tick(&c.state).await.unwrap(), TickOutcome::Idle);
    }
    // An operator who looked resumes: the halt's evidence is acknowledged and the ring goes on.
    let (status, v) = c
        .op(
            "POST",
            "/api/v1/rollouts/1/resume",
            json!({"reason": "host 0 is being reimaged"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mut passed = false;
    for _ in 0..10 {
        round(&c, &mut agents, |_| json!({})).await;
        let out = rollout::tick(&c.state).await.unwrap();
        let (_, v) = c.op("GET", "/api/v1/rollouts/1", Value::Null).await;
        assert!(
            !matches!(
                out,
                TickOutcome::RolledBack { .. } | TickOutcome::Halted { .. }
            ),
            "{out:?}: {}",
            v["rings"][0]["gate"]
        );
        if matches!(out, TickOutcome::Promoted { .. }) {
            passed = true;
            break;
        }
    }
    assert!(passed, "the ring never passed after the resume");
}

async fn fallbacks_from_enough_agents_still_roll_back(b: Backend) {
    let (c, mut agents) = fleet(b, 60).await;
    start(&c, PLAN).await;
    let ring = canary(&c, &mut agents).await;
    let falling: Vec<usize> = ring.iter().copied().take(3).collect();
    round(&c, &mut agents, |i| {
        if falling.contains(&i) {
            json!({"lkg_fallbacks": 1, "crashes": 2})
        } else {
            json!({})
        }
    })
    .await;
    let out = rollout::tick(&c.state).await.unwrap();
    assert_eq!(
        out,
        TickOutcome::RolledBack {
            rollout: 1,
            version: 3
        }
    );
    let (_, v) = c.op("GET", "/api/v1/rollouts/1", Value::Null).await;
    let gate = &v["rings"][0]["gate"];
    assert_eq!(gate["verdict"], "fail", "{gate}");
    assert_eq!(gate["lkg_agents"], 3, "{gate}");
}

async fn a_checkin_cannot_move_its_agent_between_rings(b: Backend) {
    let c = console_with(b, 60_000).await;
    c.publish(1, b"content v1", true).await;
    c.publish(2, b"content v2", false).await;
    let mut agents = c.enroll(30, plain).await;
    // Agent 0 claims another region in every check-in.
    agents[0].tags = json!({"region": "us", "environment": "canary", "tz_offset_minutes": 0});
    round(&c, &mut agents, |_| json!({})).await;
    let (_, list) = c.op("GET", "/api/v1/agents", Value::Null).await;
    let hopper = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == agents[0].id.as_str())
        .unwrap();
    assert_eq!(hopper["region"], "eu", "{hopper}");
    assert!(hopper["environment"].is_null(), "{hopper}");
    let plan = r#"
[gates]
min_samples = 5
[[rings]]
name = "us-first"
region = ["us"]
percent = 100
bake = "5m"
[[rings]]
name = "rest"
percent = 100
bake = "5m"
"#;
    let v = start(&c, plan).await;
    assert_eq!(v["rings"][0]["members"], 0, "{v}");
    round(&c, &mut agents, |_| json!({})).await;
    assert_eq!(agents[0].current, 1, "the hopper got into the us ring");

    // Tags an enrollment token carries win over what the agent claims.
    let (status, t) = c
        .op(
            "POST",
            "/api/v1/enrollment-tokens",
            json!({"max_uses": 1, "tags": {"region": "ap", "environment": "prod"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let (status, e) = c
        .enroll_with(t["token"].as_str().unwrap(), json!({"region": "us"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{e}");
    let (_, list) = c.op("GET", "/api/v1/agents", Value::Null).await;
    let new = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == e["agent_id"])
        .unwrap();
    assert_eq!(new["region"], "ap", "{new}");
    assert_eq!(new["environment"], "prod", "{new}");

    // An operator may move an agent, and it is audited.
    let uri = format!("/api/v1/agents/{}/tags", agents[0].id);
    let (status, v) = c.op("PUT", &uri, json!({"region": "us"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, list) = c.op("GET", "/api/v1/agents", Value::Null).await;
    let moved = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == agents[0].id.as_str())
        .unwrap();
    assert_eq!(moved["region"], "us", "{moved}");
    let tagged = audit(&c)
        .await
        .into_iter()
        .find(|e| e["action"] == "tags")
        .unwrap();
    assert_eq!(tagged["actor"], "admin");
    assert!(
        tagged["evidence"].as_str().unwrap().contains("\"eu\""),
        "{tagged}"
    );
    let (status, _) = c
        .op("PUT", "/api/v1/agents/nobody/tags", json!({"region": "us"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = c
        .call("PUT", &uri, None, Some(br#"{"region":"us"}"#.to_vec()))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn stale_controls_leave_the_control_group(b: Backend) {
    let (c, mut agents) = fleet(b, 60).await;
    let v = start(&c, PLAN).await;
    assert_eq!(v["rings"][0]["controls"], 10);
    let ring = canary(&c, &mut agents).await;
    // Every agent outside the canary stops checking in; four intervals pass.
    let mut alive: Vec<Agent> = ring.iter().map(|&i| agents[i].clone()).collect();
    for _ in 0..4 {
        round(&c, &mut alive, |_| json!({})).await;
    }
    rollout::tick(&c.state).await.unwrap();
    let (_, v) = c.op("GET", "/api/v1/rollouts/1", Value::Null).await;
    let gate = &v["rings"][0]["gate"];
    assert_eq!(gate["controls"], 0, "{gate}");
    assert_eq!(gate["control_samples"], 0, "{gate}");
    assert_eq!(gate["missing"]["control_lost"], 10, "{gate}");
}

/// A verifier with a real trust root, as `console serve --content-keys` has.
#[derive(Debug)]
struct Verifying(TrustedRoot);

impl Republisher for Verifying {
    fn republish(&self, old: &[u8], _from: u64, _to: u64) -> Result<Vec<u8>, String> {
        Ok(old.to_vec())
    }

    fn verify(&self, bytes: &[u8], version: u64) -> Result<String, String> {
        content::verify_signed(&self.0, bytes, version)
    }
}

fn signed_bundle(keys_dir: &std::path::Path, version: u64) -> (TrustedRoot, Vec<u8>) {
    let keys = match ringfence_content::KeySet::load(keys_dir) {
        Ok(k) => k,
        Err(_) => init_keys(keys_dir, &KeysInitOptions::new(UnixTime::now())).unwrap(),
    };
    let schema = SchemaId {
        version: 1,
        fingerprint: "test".into(),
    };
    let mut builder = BundleBuilder::new(version, schema, Limits::default());
    builder
        .add(
            EntryKind::Rule,
            "rules/a.yml",
            b"title: a\ndetection: {}\n".to_vec(),
        )
        .unwrap();
    let bundle = builder.build().unwrap();
    let signed = sign_bundle(&bundle, &keys, &SignOptions::new(version, UnixTime::now())).unwrap();
    (keys.trusted_root().clone(), signed.encode())
}

async fn uploads_are_verified_against_the_trust_root(b: Backend) {
    let mut c = console_with(b, 60_000).await;
    let keys = c.dir.path().join("keys");
    let (root, v1) = signed_bundle(&keys, 1);
    c.state = c.state.clone().with_republisher(Arc::new(Verifying(root)));
    let put = |v: i64, body: Vec<u8>, baseline: bool| {
        let uri = format!(
            "/api/v1/content/{v}{}",
            if baseline { "?baseline=true" } else { "" }
        );
        let token = c.token.clone();
        let c = &c;
        async move { c.call("PUT", &uri, Some(&token), Some(body)).await }
    };
    let (status, v) = put(1, b"not a bundle".to_vec(), true).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("not a verified bundle"), "{v}");
    // Signed by keys the console does not trust.
    let (_, foreign) = signed_bundle(&c.dir.path().join("other-keys"), 1);
    let (status, v) = put(1, foreign, true).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // A real bundle under another version than its own.
    let (status, v) = put(4, v1.clone(), false).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("content version 1"), "{v}");
    assert_eq!(c.count("content").await, 0);
    assert!(!c.dir.path().join("content/1.bundle").exists());
    let (status, v) = put(1, v1, true).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, fleet) = c.op("GET", "/api/v1/fleet", Value::Null).await;
    assert_eq!(fleet["baseline"], 1);
    let refused = audit(&c)
        .await
        .into_iter()
        .filter(|e| {
            e["action"] == "publish" && e["decision"].as_str().unwrap().starts_with("refused")
        })
        .count();
    assert_eq!(refused, 3);
}

async fn two_uploads_of_one_version_cannot_race(b: Backend) {
    let c = console_with(b, 60_000).await;
    for version in 1..=12 {
        let (x, y) = (
            format!("bundle {version} from x").into_bytes(),
            format!("bundle {version} from y").into_bytes(),
        );
        let (rx, ry) = tokio::join!(
            content::publish(&c.state, "x", version, &x, None),
            content::publish(&c.state, "y", version, &y, None),
        );
        let winner = match (&rx, &ry) {
            (Ok(row), Err(ringfence_console::AppError::Conflict(_))) => (row, &x),
            (Err(ringfence_console::AppError::Conflict(_)), Ok(row)) => (row, &y),
            other => panic!("version {version}: {other:?}"),
        };
        let on_disk =
            std::fs::read(c.dir.path().join(format!("content/{version}.bundle"))).unwrap();
        assert_eq!(
            &on_disk, winner.1,
            "version {version}: the loser's bytes are served"
        );
        use sha2::Digest;
        assert_eq!(winner.0.sha256, hex::encode(sha2::Sha256::digest(&on_disk)));
    }
    assert_eq!(c.count("content").await, 12);
}
