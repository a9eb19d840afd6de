//! Revocation against real SQLite and real PostgreSQL: an operator revokes an agent through one
//! console and every console on the database refuses it within one revision poll; a revoked
//! enrollment token enrolls nothing; tokens expire by default. Each is audited.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use axum::http::StatusCode;
use common::{Backend, console};
use serde_json::json;

both!(
    a_revoked_agent_is_refused_by_every_console,
    revoked_and_expired_tokens_enroll_nothing
);

async fn a_revoked_agent_is_refused_by_every_console(b: Backend) {
    let a_console = console(b).await;
    let b_console = a_console.second().await;
    let mut agents = a_console.enroll(2, |_| json!({})).await;
    let (first, second) = agents.split_at_mut(1);
    let (victim, other) = (&mut first[0], &mut second[0]);
    // Both consoles know the agent (the second one caches its credential).
    assert_eq!(a_console.checkin(victim, json!({})).await.0, StatusCode::OK);
    assert_eq!(b_console.checkin(victim, json!({})).await.0, StatusCode::OK);

    // Revoked through the first console, with a reason.
    let uri = format!("/api/v1/agents/{}/revoke", victim.id);
    let (status, v) = a_console.op("POST", &uri, json!({"reason": ""})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = a_console
        .op("POST", &uri, json!({"reason": "host decommissioned"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, _) = a_console.op("POST", &uri, json!({"reason": "again"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "revoked once only");

    // The first console refuses it at once; the second after its next revision poll.
    assert_eq!(
        a_console.checkin(victim, json!({})).await.0,
        StatusCode::UNAUTHORIZED
    );
    b_console.state.refresh_if_changed().await.unwrap();
    assert_eq!(
        b_console.checkin(victim, json!({})).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Findings too; and the other agent is untouched.
    let findings = json!({"protocol": 1, "agent_id": victim.id, "findings": []});
    let (status, _) = b_console
        .call(
            "POST",
            "/api/v1/agents/findings",
            Some(victim.credential.as_str()),
            Some(serde_json::to_vec(&findings).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(b_console.checkin(other, json!({})).await.0, StatusCode::OK);

    let (_, audit) = a_console.op("GET", "/api/v1/audit", json!(null)).await;
    assert!(audit.to_string().contains("host decommissioned"), "{audit}");
}

async fn revoked_and_expired_tokens_enroll_nothing(b: Backend) {
    let c = console(b).await;
    let (status, minted) = c
        .op("POST", "/api/v1/enrollment-tokens", json!({"max_uses": 5}))
        .await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    // A day by default, never forever.
    let now = ringfence_console::Clock::now_ms(c.clock.as_ref());
    assert_eq!(minted["expires_at"].as_i64(), Some(now + 24 * 3_600_000));
    let (status, v) = c
        .op(
            "POST",
            "/api/v1/enrollment-tokens",
            json!({"max_uses": 5, "ttl_ms": 400i64 * 24 * 3_600_000}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    let token = minted["token"].as_str().unwrap().to_owned();
    assert_eq!(c.enroll_with(&token, json!({})).await.0, StatusCode::OK);
    let (_, list) = c.op("GET", "/api/v1/enrollment-tokens", json!(null)).await;
    let row = &list[0];
    assert_eq!(row["uses"], 1, "{list}");
    assert!(
        !list.to_string().contains(&token),
        "the token itself is never listed"
    );
    let id = row["id"].as_str().unwrap().to_owned();
    let (status, v) = c
        .op(
            "POST",
            &format!("/api/v1/enrollment-tokens/{id}/revoke"),
            json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        c.enroll_with(&token, json!({})).await.0,
        StatusCode::FORBIDDEN
    );

    // Expired: a token of a minute, a minute and a second later.
    let (_, short) = c
        .op(
            "POST",
            "/api/v1/enrollment-tokens",
            json!({"max_uses": 5, "ttl_ms": 60_000}),
        )
        .await;
    c.clock.advance_ms(61_000);
    assert_eq!(
        c.enroll_with(short["token"].as_str().unwrap(), json!({}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}
