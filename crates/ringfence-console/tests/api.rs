//! The agent and operator API against real SQLite and real PostgreSQL: enrollment limits,
//! unknown agents, malformed and oversized bodies (nothing stored half-way), operator auth on
//! every write, static content, findings, and the dashboard login.

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
    enrollment_tokens_have_a_use_limit_and_expire,
    unknown_agents_and_foreign_ids_are_refused,
    malformed_and_oversized_checkins_store_nothing,
    writes_require_operator_auth,
    content_is_served_as_static_files_and_offered,
    findings_are_uploaded_in_batches,
    dashboard_needs_a_login,
);

async fn enrollment_tokens_have_a_use_limit_and_expire(b: Backend) {
    let c = console(b).await;
    let token = c.enrollment_token(2).await;
    assert_eq!(c.enroll_with(&token, json!({})).await.0, StatusCode::OK);
    assert_eq!(c.enroll_with(&token, json!({})).await.0, StatusCode::OK);
    let (status, v) = c.enroll_with(&token, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(c.count("agents").await, 2);
    assert_eq!(
        c.enroll_with("rfe1.nonsense", json!({})).await.0,
        StatusCode::FORBIDDEN
    );

    let (_, v) = c
        .op(
            "POST",
            "/api/v1/enrollment-tokens",
            json!({"max_uses": 5, "ttl_ms": 60_000}),
        )
        .await;
    let expiring = v["token"].as_str().unwrap().to_owned();
    c.clock.advance_ms(61_000);
    assert_eq!(
        c.enroll_with(&expiring, json!({})).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _) = c
        .op("POST", "/api/v1/enrollment-tokens", json!({"max_uses": 0}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn unknown_agents_and_foreign_ids_are_refused(b: Backend) {
    let c = console(b).await;
    let mut agents = c.enroll(2, |_| json!({})).await;
    let (status, _) = c.checkin(&mut agents[0], json!({})).await;
    assert_eq!(status, StatusCode::OK);

    // A well-formed credential nobody was given.
    let mut stranger = agents[0].clone();
    stranger.id = "00000000000000000000000000000000".into();
    stranger.credential =
        ringfence_wire::Credential::try_from(format!("rfa1.{}.{}", stranger.id, "ab".repeat(32)))
            .unwrap();
    assert_eq!(
        c.checkin(&mut stranger, json!({})).await.0,
        StatusCode::UNAUTHORIZED
    );

    // The right agent id with the wrong secret.
    let mut forged = agents[0].clone();
    forged.credential =
        ringfence_wire::Credential::try_from(format!("rfa1.{}.{}", forged.id, "cd".repeat(32)))
            .unwrap();
    assert_eq!(
        c.checkin(&mut forged, json!({})).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Agent 1's credential on agent 0's check-in.
    let mut swapped = agents[0].clone();
    swapped.credential = agents[1].credential.clone();
    assert_eq!(
        c.checkin(&mut swapped, json!({})).await.0,
        StatusCode::FORBIDDEN
    );

    // No credential at all.
    let (status, _) = c
        .call("POST", "/api/v1/agents/checkin", None, Some(b"{}".to_vec()))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(c.count("checkins").await, 1);
}

async fn malformed_and_oversized_checkins_store_nothing(b: Backend) {
    let c = console(b).await;
    let agents = c.enroll(1, |_| json!({"region": "eu"})).await;
    let a = &agents[0];
    let cred = a.credential.as_str().to_owned();
    let states_before = c.count("agent_state").await;
    let good = json!({"protocol": 1, "agent_id": a.id, "seq": 1, "agent_version": "0.1.0",
        "content_version": 0, "health": {"cpu_percent": 1.0}, "tags": {"region": "eu"}});
    let cases: Vec<(Vec<u8>, StatusCode)> = vec![
        (b"{not json".to_vec(), StatusCode::BAD_REQUEST),
        (b"".to_vec(), StatusCode::BAD_REQUEST),
        (
            serde_json::to_vec(&json!({"protocol": 1})).unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            serde_json::to_vec(&{
                let mut v = good.clone();
                v["health"]["cpu_percent"] = json!(-5.0);
                v
            })
            .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            serde_json::to_vec(&{
                let mut v = good.clone();
                v["tags"]["tz_offset_minutes"] = json!(100_000);
                v
            })
            .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            serde_json::to_vec(&{
                let mut v = good.clone();
                v["protocol"] = json!(99);
                v
            })
            .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            serde_json::to_vec(&{
                let mut v = good.clone();
                v["tags"]["custom"] = json!({"pad": "x".repeat(60)});
                v["padding"] = json!("y".repeat(20_000));
                v
            })
            .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (body, expected) in cases {
        let (status, v) = c
            .call("POST", "/api/v1/agents/checkin", Some(&cred), Some(body))
            .await;
        assert_eq!(status, expected, "{v}");
        assert!(status.is_client_error());
    }
    assert_eq!(
        c.count("checkins").await,
        0,
        "a refused check-in stored a row"
    );
    assert_eq!(c.count("agent_state").await, states_before);
    let (status, _) = c
        .call(
            "POST",
            "/api/v1/agents/checkin",
            Some(&cred),
            Some(serde_json::to_vec(&good).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(c.count("checkins").await, 1);

    // Enrollment bodies are bounded too, and a refused enrollment stores nothing.
    let token = c.enrollment_token(1).await;
    let big = json!({"protocol": 1, "token": token, "hostname": "h", "agent_version": "1", "x": "z".repeat(10_000)});
    let (status, _) = c
        .call(
            "POST",
            "/api/v1/agents/enroll",
            None,
            Some(serde_json::to_vec(&big).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let bad = json!({"protocol": 1, "token": token, "hostname": "", "agent_version": "1"});
    let (status, _) = c
        .call(
            "POST",
            "/api/v1/agents/enroll",
            None,
            Some(serde_json::to_vec(&bad).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(c.count("agents").await, 1);
    // The token was not consumed by the refused attempts.
    assert_eq!(c.enroll_with(&token, json!({})).await.0, StatusCode::OK);
}

async fn writes_require_operator_auth(b: Backend) {
    let c = console(b).await;
    let writes = [
        (
            "POST",
            "/api/v1/enrollment-tokens",
            Some(br#"{"max_uses":1}"#.to_vec()),
        ),
        ("PUT", "/api/v1/content/1", Some(b"bundle".to_vec())),
        (
            "POST",
            "/api/v1/rollouts",
            Some(br#"{"version":2}"#.to_vec()),
        ),
        ("POST", "/api/v1/rollouts/1/halt", None),
        ("POST", "/api/v1/rollouts/1/rollback", None),
    ];
    for (m, uri, body) in &writes {
        let (status, _) = c.call(m, uri, None, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{m} {uri}");
        let (status, _) = c.call(m, uri, Some("rfo1.wrong"), body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{m} {uri}");
    }
    for uri in [
        "/api/v1/agents",
        "/api/v1/rollouts",
        "/api/v1/audit",
        "/api/v1/findings",
    ] {
        assert_eq!(
            c.call("GET", uri, None, None).await.0,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
    }
    // A dashboard session may write only with the CSRF header.
    let session = ringfence_console::auth::create_session(&c.state, "admin", 3_600_000, false)
        .await
        .unwrap();
    let cookie = format!("rf_session={session}");
    let (status, _, _) = c
        .call_raw(
            "POST",
            "/api/v1/enrollment-tokens",
            None,
            &[("cookie", &cookie)],
            Some(br#"{"max_uses":1}"#.to_vec()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = c
        .call_raw(
            "POST",
            "/api/v1/enrollment-tokens",
            None,
            &[("cookie", &cookie), ("x-ringfence-csrf", "1")],
            Some(br#"{"max_uses":1}"#.to_vec()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(c.count("content").await, 0);
    assert_eq!(c.count("rollouts").await, 0);
}

async fn content_is_served_as_static_files_and_offered(b: Backend) {
    let c = console(b).await;
    c.publish(1, b"signed bundle v1", true).await;
    let (status, headers, body) = c
        .call_raw("GET", "/content/1.bundle", None, &[], None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"signed bundle v1");
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    for bad in [
        "/content/2.bundle",
        "/content/..%2Fconsole.db",
        "/content/1.txt",
        "/content/.1.bundle.tmp",
    ] {
        assert_eq!(
            c.call("GET", bad, None, None).await.0,
            StatusCode::NOT_FOUND,
            "{bad}"
        );
    }
    // Versions are immutable and the baseline is set only once.
    let (status, _) = c
        .call(
            "PUT",
            "/api/v1/content/1",
            Some(&c.token.clone()),
            Some(b"other".to_vec()),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = c
        .call(
            "PUT",
            "/api/v1/content/2?baseline=true",
            Some(&c.token.clone()),
            Some(b"v2".to_vec()),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let mut agents = c.enroll(1, |_| json!({})).await;
    let (_, resp) = c.checkin(&mut agents[0], json!({})).await;
    let offer = resp.unwrap().content.unwrap();
    assert_eq!(offer.version, 1);
    assert_eq!(offer.url, "/content/1.bundle");
    assert_eq!(offer.sha256.len(), 64);
    let (status, _, body) = c.call_raw("GET", &offer.url, None, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len() as u64, offer.size);
}

async fn findings_are_uploaded_in_batches(b: Backend) {
    let c = console(b).await;
    let agents = c.enroll(2, |_| json!({})).await;
    let a = &agents[0];
    let cred = a.credential.as_str().to_owned();
    let batch = json!({"protocol": 1, "agent_id": a.id, "findings": [
        {"rule": {"name": "Reverse shell via bash"}, "event": {"severity": "high"}, "process": {"pid": 4242}},
        {"rule.name": "Webshell spawn", "severity": "critical"},
    ]});
    let (status, v) = c
        .call(
            "POST",
            "/api/v1/agents/findings",
            Some(&cred),
            Some(serde_json::to_vec(&batch).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], 2);
    let (_, list) = c
        .op("GET", "/api/v1/findings", serde_json::Value::Null)
        .await;
    let rules: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"Reverse shell via bash") && rules.contains(&"Webshell spawn"));

    // Another agent's id, too many findings, non-objects: refused, nothing stored.
    let foreign = json!({"protocol": 1, "agent_id": agents[1].id, "findings": [{}]});
    let too_many = json!({"protocol": 1, "agent_id": a.id, "findings": vec![json!({}); 1001]});
    let not_objects = json!({"protocol": 1, "agent_id": a.id, "findings": [1, 2]});
    for (body, expected) in [
        (foreign, StatusCode::FORBIDDEN),
        (too_many, StatusCode::UNPROCESSABLE_ENTITY),
        (not_objects, StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, _) = c
            .call(
                "POST",
                "/api/v1/agents/findings",
                Some(&cred),
                Some(serde_json::to_vec(&body).unwrap()),
            )
            .await;
        assert_eq!(status, expected);
    }
    assert_eq!(c.count("findings").await, 2);

    // A retried upload (its acknowledgement was lost on the way back) is acknowledged in full
    // and stored once: findings carry the agent's delivery id. Another agent may use the same
    // id; findings without one are stored as they come.
    let retried = json!({"protocol": 1, "agent_id": a.id, "findings": [
        {"rule": {"name": "Retried"}, "ringfence": {"delivery_id": "p-1"}},
        {"rule": {"name": "Retried"}, "ringfence": {"delivery_id": "p-2"}},
    ]});
    for _ in 0..2 {
        let (status, v) = c
            .call(
                "POST",
                "/api/v1/agents/findings",
                Some(&cred),
                Some(serde_json::to_vec(&retried).unwrap()),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["accepted"], 2, "a retry is acknowledged in full");
    }
    assert_eq!(c.count("findings").await, 4);
    let same_id_other_agent = json!({"protocol": 1, "agent_id": agents[1].id, "findings": [
        {"rule": {"name": "Retried"}, "ringfence": {"delivery_id": "p-1"}},
    ]});
    let (status, _) = c
        .call(
            "POST",
            "/api/v1/agents/findings",
            Some(agents[1].credential.as_str()),
            Some(serde_json::to_vec(&same_id_other_agent).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(c.count("findings").await, 5);
}

async fn dashboard_needs_a_login(b: Backend) {
    let c = console(b).await;
    for page in ["/fleet", "/rollouts", "/findings", "/rollouts/1"] {
        let (status, headers, _) = c.call_raw("GET", page, None, &[], None).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
        assert_eq!(headers["location"], "/login");
    }
    let form = |p: &str| format!("name=admin&password={p}").into_bytes();
    let hdr = [("content-type", "application/x-www-form-urlencoded")];
    let (status, _, _) = c
        .call_raw("POST", "/login", None, &hdr, Some(form("wrong")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, headers, _) = c
        .call_raw(
            "POST",
            "/login",
            None,
            &hdr,
            Some(form("hunter2-but-longer")),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let session = cookie.split(';').next().unwrap().to_owned();
    let (status, _, body) = c
        .call_raw("GET", "/fleet", None, &[("cookie", &session)], None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8(body).unwrap().contains("<h1>Fleet</h1>"));

    // One-time sign-in links work once and only redirect locally.
    let once = ringfence_console::auth::create_session(&c.state, "admin", 60_000, true)
        .await
        .unwrap();
    let uri = format!("/login/once?token={once}&next=//evil.example/x");
    let (status, headers, _) = c.call_raw("GET", &uri, None, &[], None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/rollouts");
    let (status, _, _) = c.call_raw("GET", &uri, None, &[], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
