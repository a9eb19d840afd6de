//! Exceptions made on the console, against real SQLite and real PostgreSQL: made from a
//! finding (the page offers the form, prefilled), reviewed, and published as signed content (a
//! new content version: the baseline's entries plus an exceptions overlay) started as a normal
//! rollout. An exception that would silence a rule on the whole fleet is approved only by a
//! second operator. The host page shows what is tuned there, from its content and from its
//! agent's check-in.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;
use common::{Agent, Backend, TestConsole, console};
use ringfence_console::content::Republisher;
use ringfence_content::{
    Bundle, BundleBuilder, EntryKind, KeySet, KeysInitOptions, Limits, SchemaId, SignOptions,
    SignedBundle, UnixTime, init_keys, sign_bundle,
};
use serde_json::{Value, json};

both!(
    a_fleet_wide_exception_needs_a_second_operator,
    an_exception_from_a_finding_is_published_as_content_and_rolled_out
);

/// The console's side of the content keys, as `ringfence console serve --content-keys` has
/// it, minus the detection compiler: it rebuilds the base with the overlay and signs it.
#[derive(Debug)]
struct Keys(PathBuf);

impl Republisher for Keys {
    fn republish(&self, _: &[u8], _: u64, _: u64) -> Result<Vec<u8>, String> {
        Err("not used here".into())
    }

    fn verify(&self, bytes: &[u8], version: u64) -> Result<String, String> {
        let keys = KeySet::load_online(&self.0).map_err(|e| e.to_string())?;
        ringfence_console::content::verify_signed(keys.trusted_root(), bytes, version)
    }

    fn overlay(
        &self,
        base: &[u8],
        _: u64,
        version: u64,
        overlay: &[u8],
    ) -> Result<Vec<u8>, String> {
        let keys = KeySet::load_online(&self.0).map_err(|e| e.to_string())?;
        let limits = Limits::default();
        let signed = SignedBundle::decode(base, &limits).map_err(|e| e.to_string())?;
        let base = Bundle::decode(&signed.payload, &limits).map_err(|e| e.to_string())?;
        let mut b = BundleBuilder::new(version, base.schema().clone(), limits);
        for (path, data) in base.rules() {
            b.add(EntryKind::Rule, path, data.to_vec())
                .map_err(|e| e.to_string())?;
        }
        b.add(
            EntryKind::Exceptions,
            "exceptions/console.toml",
            overlay.to_vec(),
        )
        .map_err(|e| e.to_string())?;
        let bundle = b.build().map_err(|e| e.to_string())?;
        let signed = sign_bundle(&bundle, &keys, &SignOptions::new(version, UnixTime::now()))
            .map_err(|e| e.to_string())?;
        Ok(signed.encode())
    }
}

/// A console that signs with real content keys (online keys only: the root key is removed),
/// with a signed v1 as its baseline.
async fn console_with_keys(b: Backend) -> TestConsole {
    let mut c = console(b).await;
    let dir = c.dir.path().join("keys");
    let keys = init_keys(&dir, &KeysInitOptions::new(UnixTime::now())).unwrap();
    let mut builder = BundleBuilder::new(
        1,
        SchemaId {
            version: 1,
            fingerprint: "test".into(),
        },
        Limits::default(),
    );
    builder
        .add(
            EntryKind::Rule,
            "rules/t.yml",
            b"title: t\nid: r-1\ndetection: {}\n".to_vec(),
        )
        .unwrap();
    let v1 = sign_bundle(
        &builder.build().unwrap(),
        &keys,
        &SignOptions::new(1, UnixTime::now()),
    )
    .unwrap()
    .encode();
    std::fs::remove_file(dir.join("root-1.key")).unwrap();
    c.state = c.state.clone().with_republisher(Arc::new(Keys(dir)));
    c.publish(1, &v1, true).await;
    c
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

async fn a_fleet_wide_exception_needs_a_second_operator(b: Backend) {
    let c = console_with_keys(b).await;
    let carl = c.operator("carl", "content_admin").await;
    let dana = c.operator("dana", "content_admin").await;
    let rita = c.operator("rita", "responder").await;
    let vera = c.operator("vera", "viewer").await;

    // A viewer cannot propose one; a responder can, but cannot approve it.
    let unscoped = json!({"rule": "r-1", "comment": "the rule is useless here"});
    let (status, _) = c
        .as_op(&vera, "POST", "/api/v1/exceptions", unscoped.clone())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, e) = c
        .as_op(&rita, "POST", "/api/v1/exceptions", unscoped.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{e}");
    assert_eq!(e["state"], "pending");
    assert_eq!(e["fleet_wide"], true);
    let id = e["id"].as_i64().unwrap();
    let approve = format!("/api/v1/exceptions/{id}/approve");
    let (status, _) = c.as_op(&rita, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // One content admin's approval is held, not applied; it cannot publish.
    let (status, held) = c.as_op(&carl, "POST", &approve, Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    let approval = held["pending_approval"]["id"].as_i64().unwrap();
    let (_, e) = c.op("GET", "/api/v1/exceptions", Value::Null).await;
    assert_eq!(e[0]["state"], "pending");
    let (status, v) = c
        .as_op(&carl, "POST", "/api/v1/exceptions/publish", json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no approved exception")
    );

    // Carl cannot approve his own request, a responder may not; Dana can.
    let held_uri = format!("/api/v1/approvals/{approval}/approve");
    let (status, _) = c.as_op(&carl, "POST", &held_uri, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = c.as_op(&rita, "POST", &held_uri, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, v) = c.as_op(&dana, "POST", &held_uri, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, e) = c.op("GET", "/api/v1/exceptions", Value::Null).await;
    assert_eq!(e[0]["state"], "approved");
    assert_eq!(e[0]["approved_by"], "carl and dana");

    // A scoped exception is approved by one content admin at once.
    let (_, e) = c
        .as_op(
            &rita,
            "POST",
            "/api/v1/exceptions",
            json!({"rule": "r-1", "hosts": ["build-1"], "comment": "CI"}),
        )
        .await;
    let uri = format!("/api/v1/exceptions/{}/approve", e["id"]);
    let (status, v) = c.as_op(&carl, "POST", &uri, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "approved");

    // Refused input names its field; the tamper rules cannot be tuned.
    for (body, word) in [
        (
            json!({"rule": "ringfence-tamper-signal", "comment": "x"}),
            "tamper",
        ),
        (json!({"rule": "r-1", "comment": ""}), "comment"),
        (
            json!({"rule": "r-1", "comment": "x", "fields": {"user.name": []}}),
            "fields.user.name",
        ),
    ] {
        let (status, v) = c.as_op(&rita, "POST", "/api/v1/exceptions", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"].as_str().unwrap().contains(word), "{v}");
    }

    let (_, audit) = c.op("GET", "/api/v1/audit?limit=200", Value::Null).await;
    let decisions: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "exception")
        .map(|e| {
            format!(
                "{}: {}",
                e["actor"].as_str().unwrap(),
                e["decision"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        decisions.contains(&format!("carl and dana: exception {id} approved")),
        "{decisions:?}"
    );
}

async fn an_exception_from_a_finding_is_published_as_content_and_rolled_out(b: Backend) {
    let c = console_with_keys(b).await;
    let mut agents = c.enroll(3, |_| json!({})).await;
    for a in &mut agents {
        a.current = 1;
        let tuning = json!({"tuning": {"disabled_rules": ["noisy"], "exceptions": [["r-2", 3]]}});
        let (status, _) = c.checkin_with(a, json!({}), tuning).await;
        assert_eq!(status, StatusCode::OK);
    }
    let finding = json!({
        "@timestamp": "2026-05-28T12:00:00Z",
        "event": {"kind": "alert", "severity": 47},
        "host": {"name": "host"},
        "user": {"name": "ci"},
        "rule": {"id": "r-1", "name": "Evil run", "falsepositives": ["Admins testing evil"]},
        "process": {"pid": 7, "executable": "/usr/bin/make", "command_line": "make all"}
    });
    upload(&c, &agents[0], vec![finding]).await;
    let (_, list) = c.op("GET", "/api/v1/findings", Value::Null).await;
    let fid = list[0]["id"].as_i64().unwrap();

    // The finding page offers the exception, prefilled, and shows the false positives.
    let cookie = c.session().await;
    let html = c.page(&cookie, &format!("/findings/{fid}")).await;
    for want in [
        "Make an exception",
        "value=\"r-1\"",
        "value=\"host\"",
        "data-field=\"process.executable\"",
        "value=\"/usr/bin/make\"",
        "data-field=\"user.name\"",
        "Admins testing evil",
    ] {
        assert!(html.contains(want), "{want} missing");
    }

    // Proposed from the finding as the form sends it, approved, published.
    let (status, e) = c
        .op(
            "POST",
            "/api/v1/exceptions",
            json!({"rule": "r-1", "hosts": ["host"], "fields": {"process.executable": ["/usr/bin/make"]},
                   "comment": "the CI builds with make", "finding": fid}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{e}");
    let id = e["id"].as_i64().unwrap();
    let (status, _) = c
        .op(
            "POST",
            &format!("/api/v1/exceptions/{id}/approve"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, p) = c
        .op(
            "POST",
            "/api/v1/exceptions/publish",
            json!({"reason": "CI noise"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["version"], 2);
    assert_eq!(p["base_version"], 1);
    assert_eq!(p["rollout"]["to_version"], 2);
    assert_eq!(p["rollout"]["state"], "running");

    // The published v2 is the baseline's rule plus the overlay, signed.
    let bytes = std::fs::read(c.state.config.content_dir.join("2.bundle")).unwrap();
    let signed = SignedBundle::decode(&bytes, &Limits::default()).unwrap();
    let bundle = Bundle::decode(&signed.payload, &Limits::default()).unwrap();
    assert_eq!(bundle.rules().count(), 1);
    let overlay = std::str::from_utf8(
        bundle
            .get(EntryKind::Exceptions, "exceptions/console.toml")
            .unwrap(),
    )
    .unwrap();
    assert!(overlay.contains("rule = \"r-1\""), "{overlay}");
    assert!(overlay.contains("/usr/bin/make"), "{overlay}");
    let (_, e) = c.op("GET", "/api/v1/exceptions", Value::Null).await;
    assert_eq!(e[0]["state"], "published");
    assert_eq!(e[0]["published_version"], 2);

    // Nothing left to publish; the history of the finding shows each step.
    let (status, _) = c.op("POST", "/api/v1/exceptions/publish", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, one) = c
        .op("GET", &format!("/api/v1/findings/{fid}"), Value::Null)
        .await;
    let steps: Vec<&str> = one["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["decision"].as_str().unwrap())
        .collect();
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with(&format!("exception {id} published in content v2"))),
        "{steps:?}"
    );

    // The host page: what its content carries for it, and what it tunes locally.
    let mut a = agents[0].clone();
    a.current = 2;
    c.checkin_with(
        &mut a,
        json!({}),
        json!({"tuning": {"disabled_rules": ["noisy"], "exceptions": [["r-2", 3]]}}),
    )
    .await;
    let host = c.page(&cookie, &format!("/agents/{}", a.id)).await;
    for want in [
        "Tuned on this host",
        "process.executable = /usr/bin/make",
        "console exception",
        "noisy</td><td>disabled",
        "r-2</td><td>3 exception(s)",
    ] {
        assert!(host.contains(want), "{want} missing from the host page");
    }
}
