//! The eBPF sensor's hook per kind, as agents report it in their check-ins, on a real console
//! (SQLite and PostgreSQL): stored and shown on the host's page as a table kind → hook; absent
//! from older agents, which still check in; a lying agent's list over the bound refused whole,
//! and what it sends shown as text, never markup.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use axum::http::StatusCode;
use common::{Backend, console};
use serde_json::json;

both!(the_hook_per_kind_is_shown_on_the_host_page_and_bounded,);

async fn the_hook_per_kind_is_shown_on_the_host_page_and_bounded(b: Backend) {
    let c = console(b).await;
    let mut agents = c.enroll(2, |_| json!({})).await;
    let cookie = c.session().await;

    // An older agent (no sensor_hooks) checks in; its page says nothing was reported.
    let (status, _) = c.checkin(&mut agents[1], json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let html = c.page(&cookie, &format!("/agents/{}", agents[1].id)).await;
    assert!(
        html.contains("<h2>Sensor hooks</h2>") && html.contains("Not reported"),
        "{html}"
    );

    let hooks = json!({"sensor_hooks": {"profile": "default", "kinds": [
        ["process.exec", "tracepoint"],
        ["network.connect", "cgroup socket hook"],
        ["file.write", "fanotify (beside the sensor)"],
        ["memfd", "none"],
        ["<script>alert(1)</script>", "fentry"],
    ]}});
    let (status, _) = c.checkin_with(&mut agents[0], json!({}), hooks).await;
    assert_eq!(status, StatusCode::OK);
    let html = c.page(&cookie, &format!("/agents/{}", agents[0].id)).await;
    assert!(html.contains("Profile <code>default</code>"), "{html}");
    for row in [
        "<tr><td>process.exec</td><td>tracepoint</td></tr>",
        "<tr><td>network.connect</td><td>cgroup socket hook</td></tr>",
        "<tr><td>file.write</td><td>fanotify (beside the sensor)</td></tr>",
        "<tr><td>memfd</td><td>none</td></tr>",
    ] {
        assert!(html.contains(row), "{row} missing: {html}");
    }
    assert!(!html.contains("<script>alert(1)"), "{html}");

    // A liar: more kinds than the bound, or a hook past the label bound. The check-in is
    // refused whole and the stored table stays as it was.
    let many: Vec<_> = (0..=ringfence_wire::limits::SENSOR_HOOKS)
        .map(|i| json!([format!("kind{i}"), "fentry"]))
        .collect();
    for bad in [
        json!({"sensor_hooks": {"kinds": many}}),
        json!({"sensor_hooks": {"kinds": [["memfd", "x".repeat(65)]]}}),
    ] {
        let (status, _) = c.checkin_with(&mut agents[0], json!({}), bad).await;
        assert_ne!(status, StatusCode::OK);
    }
    let html = c.page(&cookie, &format!("/agents/{}", agents[0].id)).await;
    assert!(
        html.contains("<tr><td>memfd</td><td>none</td></tr>") && !html.contains("kind32"),
        "{html}"
    );

    // A later check-in without the field (driverless now) clears it.
    let (status, _) = c.checkin(&mut agents[0], json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let html = c.page(&cookie, &format!("/agents/{}", agents[0].id)).await;
    assert!(html.contains("Not reported"), "{html}");
}
