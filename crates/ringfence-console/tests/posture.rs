//! The posture view, on both backends: per weakness, how many hosts have an open posture
//! finding of it (the API and the page), a host page listing its own, and a closed finding
//! taking its host out of the count.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use axum::http::StatusCode;
use common::{Agent, Backend, TestConsole, console};
use serde_json::{Value, json};

both!(posture_counts_hosts_per_weakness);

fn weakness(rule_id: &str, title: &str, subject: &str) -> Value {
    json!({
        "event": {"kind": "alert", "action": "posture", "severity": 4},
        "message": format!("{subject}: {title}"),
        "rule": {"id": rule_id, "name": title, "ruleset": "ringfence-posture"},
        "ringfence": {"finding": {"level": "high", "class": "posture", "subject": subject}},
    })
}

async fn upload(c: &TestConsole, a: &Agent, findings: Vec<Value>) {
    let body = json!({"protocol": 1, "agent_id": a.id, "findings": findings});
    let cred = a.credential.as_str().to_owned();
    let (status, v) = c
        .call(
            "POST",
            "/api/v1/agents/findings",
            Some(&cred),
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

async fn posture_counts_hosts_per_weakness(backend: Backend) {
    let c = console(backend).await;
    let agents = c.enroll(3, |_| json!({})).await;
    let weak = "ringfence-posture-weak-password";
    upload(
        &c,
        &agents[0],
        vec![
            weakness(weak, "Weak password", "user alice"),
            weakness(weak, "Weak password", "user bob"),
        ],
    )
    .await;
    upload(
        &c,
        &agents[1],
        vec![
            weakness(weak, "Weak password", "user carol"),
            weakness(
                "ringfence-posture-sshd-root-password",
                "Root login with a password",
                "sshd",
            ),
        ],
    )
    .await;
    // Not posture: not counted.
    upload(
        &c,
        &agents[2],
        vec![json!({"event": {"severity": 3}, "rule": {"name": "Weak password"}})],
    )
    .await;

    let (status, v) = c.op("GET", "/api/v1/posture", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let rows: Vec<(String, i64, i64)> = v["weaknesses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["rule"].as_str().unwrap().to_owned(),
                w["hosts"].as_i64().unwrap(),
                w["findings"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("Weak password".to_owned(), 2, 3),
            ("Root login with a password".to_owned(), 1, 1)
        ]
    );

    let cookie = c.session().await;
    let html = c.page(&cookie, "/posture").await;
    assert!(
        html.contains("<td>Weak password</td><td class=num>2</td><td class=num>3</td>"),
        "{html}"
    );
    let host = c.page(&cookie, &format!("/agents/{}", agents[1].id)).await;
    assert!(host.contains("<h2>Posture</h2>"), "{host}");
    assert!(host.contains("user carol"), "{host}");
    assert!(!host.contains("user alice"), "{host}");

    // Closing the second host's sshd finding takes it out of the count.
    let (_, found) = c.op("GET", "/api/v1/findings?limit=50", Value::Null).await;
    let sshd = found
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "Root login with a password")
        .map(|f| f["id"].as_i64().unwrap())
        .unwrap();
    let (status, v) = c
        .op(
            "PATCH",
            &format!("/api/v1/findings/{sshd}"),
            json!({"status": "closed", "close_reason": "true_positive"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, v) = c.op("GET", "/api/v1/posture", Value::Null).await;
    assert_eq!(v["weaknesses"].as_array().unwrap().len(), 1, "{v}");
}
