//! Operator API tokens against real SQLite and real PostgreSQL: they expire (a default and a
//! maximum lifetime), a revoked token and a demoted operator are refused by every console on
//! the database within one revision poll, and a password reset ends the old tokens.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use axum::http::StatusCode;
use common::{Backend, console};
use ringfence_console::Clock;
use serde_json::{Value, json};

both!(
    tokens_expire_and_lifetimes_are_bounded,
    revocation_and_role_changes_reach_every_console,
    a_password_reset_ends_the_old_tokens
);

async fn tokens_expire_and_lifetimes_are_bounded(b: Backend) {
    let c = console(b).await;
    // Default lifetime: 90 days.
    let (status, v) = c
        .op(
            "POST",
            "/api/v1/operators",
            json!({"name": "ops", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let now = c.clock.now_ms();
    assert_eq!(v["expires_at"].as_i64(), Some(now + 90 * 86_400_000), "{v}");
    // More than a year, or nothing, is refused.
    for ttl in [400i64 * 86_400_000, 0, -5] {
        let (status, v) = c
            .op(
                "POST",
                "/api/v1/tokens",
                json!({"operator": "ops", "ttl_ms": ttl}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{ttl}: {v}");
    }
    let (status, v) = c
        .op("POST", "/api/v1/tokens", json!({"operator": "nobody"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");

    // A minute's token works for a minute, on this console and on another one.
    let (status, v) = c
        .op(
            "POST",
            "/api/v1/tokens",
            json!({"operator": "ops", "ttl_ms": 60_000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let short = v["token"].as_str().unwrap().to_owned();
    let other = c.second().await;
    for console in [&c, &other] {
        let (status, _) = console
            .as_op(&short, "GET", "/api/v1/fleet", Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    c.clock.advance_ms(61_000);
    for console in [&c, &other] {
        let (status, v) = console
            .as_op(&short, "GET", "/api/v1/fleet", Value::Null)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
        assert!(v["error"].as_str().unwrap().contains("expired"), "{v}");
    }
    let (_, list) = c.op("GET", "/api/v1/tokens", Value::Null).await;
    assert!(
        !list.to_string().contains(&short),
        "tokens are never listed"
    );
    let states: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["operator"] == "ops")
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "expired").count(),
        1,
        "{list}"
    );
    assert_eq!(states.iter().filter(|s| **s == "live").count(), 1, "{list}");
}

async fn revocation_and_role_changes_reach_every_console(b: Backend) {
    let a = console(b).await;
    let b_console = a.second().await;
    let ops = a.operator("ops", "viewer").await;
    // Both consoles know the token; the second one caches it.
    for console in [&a, &b_console] {
        let (status, _) = console
            .as_op(&ops, "GET", "/api/v1/agents", Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(!b_console.state.operator_tokens.is_empty());

    // Promoted to admin through the first console: the second sees it after its poll.
    let (status, v) = a
        .op(
            "POST",
            "/api/v1/operators/ops/role",
            json!({"role": "admin", "reason": "on call"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    b_console.state.refresh_if_changed().await.unwrap();
    let (status, v) = b_console
        .as_op(&ops, "GET", "/api/v1/operators", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // Back to viewer.
    let (status, _) = a
        .op(
            "POST",
            "/api/v1/operators/ops/role",
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    b_console.state.refresh_if_changed().await.unwrap();
    let (status, _) = b_console
        .as_op(&ops, "GET", "/api/v1/operators", Value::Null)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The last admin cannot demote themselves.
    let (status, v) = a
        .op(
            "POST",
            "/api/v1/operators/admin/role",
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");

    // Revoked through the first console: refused there at once, on the second after its poll.
    let (_, list) = a.op("GET", "/api/v1/tokens", Value::Null).await;
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["operator"] == "ops")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, v) = a
        .op(
            "POST",
            &format!("/api/v1/tokens/{id}/revoke"),
            json!({"reason": "laptop lost"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = a.as_op(&ops, "GET", "/api/v1/agents", Value::Null).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["error"].as_str().unwrap().contains("revoked"), "{v}");
    b_console.state.refresh_if_changed().await.unwrap();
    let (status, _) = b_console
        .as_op(&ops, "GET", "/api/v1/agents", Value::Null)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = a
        .op(
            "POST",
            &format!("/api/v1/tokens/{id}/revoke"),
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "revoked once only");

    let (_, audit) = a.op("GET", "/api/v1/audit", Value::Null).await;
    let text = audit.to_string();
    assert!(text.contains("laptop lost"), "{audit}");
    assert!(text.contains("role set to admin"), "{audit}");
}

async fn a_password_reset_ends_the_old_tokens(b: Backend) {
    let c = console(b).await;
    let other = c.second().await;
    let (status, _) = other.op("GET", "/api/v1/fleet", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let fresh = ringfence_console::auth::create_operator(&c.state, "admin", "a new password")
        .await
        .unwrap();
    other.state.refresh_if_changed().await.unwrap();
    for console in [&c, &other] {
        let (status, _) = console.op("GET", "/api/v1/fleet", Value::Null).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "the old token is revoked");
        let (status, _) = console
            .as_op(&fresh, "GET", "/api/v1/fleet", Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
}
