//! Roles and two-person approval against real SQLite and real PostgreSQL: every route the
//! console serves, called as every role, is refused (403) exactly where the role may not use
//! it; fleet-wide orders, emergency rollouts and content signed to drop rules wait for a
//! second operator, who cannot be the requester nor a viewer; requests expire.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use axum::http::StatusCode;
use common::{Backend, TestConsole, console};
use ringfence_console::roles::{Need, ROUTES, Role};
use serde_json::{Value, json};

both!(
    every_route_refuses_the_roles_that_may_not_use_it,
    fleet_orders_wait_for_a_second_operator,
    emergency_and_rule_dropping_rollouts_wait_for_a_second_operator,
    a_rule_dropping_first_baseline_waits_for_a_second_operator
);

/// A concrete URI for a route pattern.
fn uri_of(pattern: &str) -> String {
    pattern
        .replace("{agent_id}", &"0".repeat(32))
        .replace("{id}", "999")
        .replace("{action}", "halt")
        .replace("{version}", "999")
        .replace("{name}", "nobody")
        .replace("{file}", "999.bundle")
}

async fn every_route_refuses_the_roles_that_may_not_use_it(b: Backend) {
    let c = console(b).await;
    let mut tokens = Vec::new();
    for role in Role::ALL {
        let token = if role == Role::Admin {
            c.token.clone()
        } else {
            c.operator(&format!("op-{role}"), role.as_str()).await
        };
        tokens.push((role, token));
    }
    let mut checked = 0;
    for &(method, pattern, need) in ROUTES {
        if matches!(need, Need::Public | Need::Agent) {
            continue;
        }
        let uri = uri_of(pattern);
        let body = match method {
            "GET" => None,
            "PUT" if pattern.starts_with("/api/v1/content/") => Some(b"not a bundle".to_vec()),
            _ => Some(b"{}".to_vec()),
        };
        // Without credentials: 401 (a page sends the browser to the login form).
        let (status, _) = c.call(method, &uri, None, body.clone()).await;
        if need == Need::Page {
            assert!(status.is_redirection(), "{method} {uri}: {status}");
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        }
        for (role, token) in &tokens {
            let (status, v) = c.call(method, &uri, Some(token), body.clone()).await;
            if role.allows(need) {
                assert!(
                    status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                    "{role} must reach {method} {uri}: {status} {v}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role} on {method} {uri}: {v}"
                );
                let msg = v["error"].as_str().unwrap_or_default();
                assert!(msg.contains(role.as_str()), "{msg}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 4 * 30, "{checked}");
    // An unknown token, an expired one and a revoked one are refused everywhere.
    let (status, _) = c
        .call("GET", "/api/v1/fleet", Some("rfo1.nope"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn enrolled_checked_in(
    c: &TestConsole,
    n: usize,
    tags: impl Fn(usize) -> Value,
) -> Vec<String> {
    let mut agents = c.enroll(n, tags).await;
    for a in &mut agents {
        assert_eq!(c.checkin(a, json!({})).await.0, StatusCode::OK);
    }
    agents.into_iter().map(|a| a.id).collect()
}

async fn audit_decisions(c: &TestConsole) -> Vec<(String, String, String)> {
    let (_, v) = c.op("GET", "/api/v1/audit?limit=500", Value::Null).await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["decision"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn fleet_orders_wait_for_a_second_operator(b: Backend) {
    let c = console(b).await;
    let agents = enrolled_checked_in(&c, 3, |i| {
        if i < 2 {
            json!({"region": "eu"})
        } else {
            json!({"region": "us"})
        }
    })
    .await;
    let alice = c.operator("alice", "responder").await;
    let bob = c.operator("bob", "responder").await;
    let vera = c.operator("vera", "viewer").await;
    let carl = c.operator("carl", "content_admin").await;
    let quarantine = json!({"kind": "quarantine", "path": "/tmp/dropper"});

    // A viewer and a content admin cannot order at all.
    for t in [&vera, &carl] {
        let (status, v) = c
            .as_op(
                t,
                "POST",
                "/api/v1/orders",
                json!({"action": quarantine, "reason": "x", "tag": "region=eu"}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    }

    // One agent: ordered at once.
    let (status, v) = c
        .as_op(
            &alice,
            "POST",
            "/api/v1/orders",
            json!({"action": quarantine, "reason": "one host", "agents": [agents[2]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(c.count("response_orders").await, 1);

    // A tag: held.
    let (status, v) = c
        .as_op(
            &alice,
            "POST",
            "/api/v1/orders",
            json!({"action": quarantine, "reason": "dropper on the eu fleet", "tag": "region=eu"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = v["pending_approval"]["id"].as_i64().unwrap();
    assert_eq!(v["pending_approval"]["requested_by"], "alice");
    assert_eq!(c.count("response_orders").await, 1, "nothing ordered yet");
    let approve = format!("/api/v1/approvals/{id}/approve");

    // The attack: alice approves her own request.
    let (status, v) = c.as_op(&alice, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("different operator"),
        "{v}"
    );
    // A viewer cannot approve; nor a content admin an order.
    let (status, v) = c.as_op(&vera, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = c.as_op(&carl, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(c.count("response_orders").await, 1, "still nothing ordered");
    let (_, pending) = c
        .as_op(&vera, "GET", "/api/v1/approvals", Value::Null)
        .await;
    assert_eq!(pending.as_array().unwrap().len(), 1, "{pending}");

    // Bob approves: the two eu agents get the order, as alice's.
    let (status, v) = c.as_op(&bob, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let placed = v["result"].as_array().unwrap();
    assert_eq!(placed.len(), 2, "{v}");
    assert!(placed.iter().all(|o| o["requested_by"] == "alice"), "{v}");
    assert_eq!(c.count("response_orders").await, 3);
    let (status, _) = c.as_op(&bob, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT, "approved once only");

    let audit = audit_decisions(&c).await;
    assert!(
        audit
            .iter()
            .any(|(a, act, d)| a == "alice" && act == "approval" && d.starts_with("requested")),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|(a, act, d)| a == "alice" && act == "approval" && d.starts_with("refused")),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|(a, act, d)| a == "bob"
            && act == "approval"
            && d.starts_with("approved alice's request")),
        "{audit:?}"
    );

    // Rejected by another responder: it never runs; a viewer cannot reject.
    let (status, v) = c
        .as_op(
            &alice,
            "POST",
            "/api/v1/orders",
            json!({"action": quarantine, "reason": "maybe", "tag": "region=us"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = v["pending_approval"]["id"].as_i64().unwrap();
    let reject = format!("/api/v1/approvals/{id}/reject");
    let (status, _) = c
        .as_op(&vera, "POST", &reject, json!({"reason": "no"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, v) = c
        .as_op(&bob, "POST", &reject, json!({"reason": "wrong host"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "rejected", "{v}");
    let (status, _) = c
        .as_op(
            &bob,
            "POST",
            &format!("/api/v1/approvals/{id}/approve"),
            Value::Null,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a rejected request is not approved"
    );
    assert_eq!(c.count("response_orders").await, 3);

    // Two named agents: held too; a day later it has expired.
    let (status, v) = c
        .as_op(
            &alice,
            "POST",
            "/api/v1/orders",
            json!({"action": quarantine, "reason": "two hosts", "agents": [agents[0], agents[1]]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = v["pending_approval"]["id"].as_i64().unwrap();
    c.clock.advance_ms(24 * 3_600_000 + 1_000);
    let (status, v) = c
        .as_op(
            &bob,
            "POST",
            &format!("/api/v1/approvals/{id}/approve"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("expired"), "{v}");
    assert_eq!(c.count("response_orders").await, 3);
    let (_, all) = c.op("GET", "/api/v1/approvals?all=true", Value::Null).await;
    let states: Vec<(&str, &str)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["state"].as_str().unwrap(),
                a["decided_by"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        states,
        [("expired", "-"), ("rejected", "bob"), ("approved", "bob")],
        "{all}"
    );
}

/// A signed bundle of content version `version` whose signed metadata allows a rule drop.
fn rule_dropping_bundle(keys_dir: &std::path::Path, version: u64) -> Vec<u8> {
    use ringfence_content::{
        BundleBuilder, EntryKind, KeysInitOptions, Limits, SchemaId, SignOptions, UnixTime,
        init_keys, sign_bundle,
    };
    let keys = init_keys(keys_dir, &KeysInitOptions::new(UnixTime::now())).unwrap();
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
    builder
        .metadata(
            ringfence_content::bundle::ALLOW_RULE_DROP,
            "retiring the noisy pack",
        )
        .unwrap();
    let bundle = builder.build().unwrap();
    sign_bundle(&bundle, &keys, &SignOptions::new(version, UnixTime::now()))
        .unwrap()
        .encode()
}

async fn emergency_and_rule_dropping_rollouts_wait_for_a_second_operator(b: Backend) {
    let c = console(b).await;
    enrolled_checked_in(&c, 2, |_| json!({})).await;
    c.publish(1, b"v1 opaque", true).await;
    c.publish(2, b"v2 opaque", false).await;
    let carl = c.operator("carl", "content_admin").await;
    let dana = c.operator("dana", "content_admin").await;
    let rita = c.operator("rita", "responder").await;

    let start = json!({"version": 2, "emergency": true, "reason": "zero-day"});
    let (status, v) = c.as_op(&carl, "POST", "/api/v1/rollouts", start).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = v["pending_approval"]["id"].as_i64().unwrap();
    let (_, rollouts) = c.op("GET", "/api/v1/rollouts", Value::Null).await;
    assert_eq!(rollouts.as_array().unwrap().len(), 0, "nothing started yet");
    let approve = format!("/api/v1/approvals/{id}/approve");
    let (status, _) = c.as_op(&carl, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not one's own");
    let (status, _) = c.as_op(&rita, "POST", &approve, Value::Null).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a responder does not approve content"
    );
    let (status, v) = c.as_op(&dana, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["result"]["created_by"], "carl", "{v}");
    assert_eq!(v["result"]["emergency"], true, "{v}");
    let (status, v) = c
        .op(
            "POST",
            "/api/v1/rollouts/1/rollback",
            json!({"reason": "done testing"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");

    // Content signed to drop most rules: held even without the emergency flag.
    let keys = tempfile::tempdir().unwrap();
    let bundle = rule_dropping_bundle(keys.path(), 9);
    let (status, v) = c
        .call("PUT", "/api/v1/content/9", Some(&carl), Some(bundle))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = c
        .as_op(
            &carl,
            "POST",
            "/api/v1/rollouts",
            json!({"version": 9, "reason": "new pack"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let summary = v["pending_approval"]["summary"].as_str().unwrap();
    assert!(summary.contains("retiring the noisy pack"), "{summary}");
    // An admin is a second operator too.
    let id = v["pending_approval"]["id"].as_i64().unwrap();
    let (status, v) = c
        .op(
            "POST",
            &format!("/api/v1/approvals/{id}/approve"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["result"]["to_version"], 9, "{v}");
}

async fn a_rule_dropping_first_baseline_waits_for_a_second_operator(b: Backend) {
    let c = console(b).await;
    let carl = c.operator("carl", "content_admin").await;
    let keys = tempfile::tempdir().unwrap();
    let bundle = rule_dropping_bundle(keys.path(), 1);
    let (status, v) = c
        .call(
            "PUT",
            "/api/v1/content/1?baseline=true",
            Some(&carl),
            Some(bundle),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["content"]["version"], 1, "published: {v}");
    let id = v["pending_approval"]["id"].as_i64().unwrap();
    let (_, fleet) = c.op("GET", "/api/v1/fleet", Value::Null).await;
    assert_eq!(fleet["baseline"], 0, "no baseline yet: {fleet}");
    let approve = format!("/api/v1/approvals/{id}/approve");
    let (status, _) = c.as_op(&carl, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, v) = c.op("POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, fleet) = c.op("GET", "/api/v1/fleet", Value::Null).await;
    assert_eq!(fleet["baseline"], 1, "{fleet}");
}
