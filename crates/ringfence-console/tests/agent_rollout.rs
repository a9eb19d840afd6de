//! Agent-release rollouts on a real console, on real SQLite and real PostgreSQL: what the
//! dashboard, the API and the audit log say about them (the kind, the release versions, the
//! pinned tag groups, where each ring's agents are), and agents lying to halt or roll one back.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use axum::http::StatusCode;
use common::{Agent, Backend, TestConsole, console_with};
use ringfence_console::rollout::{self, TickOutcome};
use serde_json::{Value, json};

both!(
    an_agent_rollout_names_its_releases_pins_and_fallbacks,
    lying_agents_cannot_halt_an_agent_rollout_beyond_their_own_weight,
    a_fallback_from_an_earlier_release_does_not_count_against_the_next,
    a_completed_agent_rollout_is_audited_in_release_words,
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
[[pin]]
tag = "role=db"
agent = "previous"
"#;

/// Agents `i % 10 == 9` carry the pinned tag `role=db`.
fn tags(i: usize) -> Value {
    if i % 10 == 9 {
        json!({"region": "eu", "custom": {"role": "db"}})
    } else {
        json!({"region": "eu"})
    }
}

/// A fleet of `n` on agent release 0.2.0 (the baseline, #1), with 0.3.0 (#2) published.
struct Fleet {
    c: TestConsole,
    agents: Vec<Agent>,
    /// The release each agent runs.
    running: Vec<String>,
    /// A release each agent fell back from and never takes again (as a real supervisor).
    refused: Vec<Option<String>>,
}

async fn fleet(b: Backend, n: usize) -> Fleet {
    let c = console_with(b, 60_000).await;
    for (version, baseline) in [("0.2.0", true), ("0.3.0", false)] {
        let uri = format!(
            "/api/v1/releases/{version}{}",
            if baseline { "?baseline=true" } else { "" }
        );
        let body = format!("agent binary {version}").into_bytes();
        let (status, v) = c
            .call("PUT", &uri, Some(&c.token.clone()), Some(body))
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let agents = c.enroll(n, tags).await;
    let mut f = Fleet {
        c,
        running: vec!["0.2.0".to_owned(); n],
        refused: vec![None; n],
        agents,
    };
    f.round(|_| json!({})).await;
    f
}

impl Fleet {
    /// One minute passes and every agent checks in with `health(i)`, reporting the release it
    /// runs and taking the one it is offered.
    async fn round(&mut self, health: impl Fn(usize) -> Value) {
        self.c.clock.advance_ms(60_000);
        for i in 0..self.agents.len() {
            let extra = json!({"agent_version": self.running[i]});
            let (status, resp) = self
                .c
                .checkin_with(&mut self.agents[i], health(i), extra)
                .await;
            assert_eq!(status, StatusCode::OK, "agent {i}");
            if let Some(offer) = resp.unwrap().release
                && self.refused[i].as_deref() != Some(offer.version.as_str())
            {
                self.running[i] = offer.version.to_string();
            }
        }
    }

    fn on(&self, version: &str) -> Vec<usize> {
        (0..self.running.len())
            .filter(|&i| self.running[i] == version)
            .collect()
    }

    async fn start(&self) {
        let (status, v) = self
            .c
            .op(
                "POST",
                "/api/v1/rollouts",
                json!({"agent_version": "0.3.0", "plan": PLAN, "reason": "test"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["kind"], "agent", "{v}");
    }

    async fn rollout(&self) -> Value {
        let (status, v) = self.c.op("GET", "/api/v1/rollouts/1", Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    async fn audit(&self) -> Vec<Value> {
        let (status, v) = self
            .c
            .op("GET", "/api/v1/audit?limit=500", Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v.as_array().unwrap().clone()
    }
}

async fn an_agent_rollout_names_its_releases_pins_and_fallbacks(b: Backend) {
    let mut f = fleet(b, 60).await;
    f.start().await;
    f.round(|_| json!({})).await;
    let canary = f.on("0.3.0");
    // 10% of the 54 agents outside the pinned group.
    assert_eq!(canary.len(), 6, "{:?}", f.running);
    assert!(canary.iter().all(|i| i % 10 != 9), "a pinned agent took it");

    // Three canary agents crash-loop on 0.3.0: their supervisors go back to 0.2.0.
    let falling: Vec<usize> = canary.iter().copied().take(3).collect();
    for &i in &falling {
        f.running[i] = "0.2.0".into();
        f.refused[i] = Some("0.3.0".into());
    }
    f.round(|i| {
        if falling.contains(&i) {
            json!({"release_fallbacks": 1, "crashes": 3})
        } else {
            json!({})
        }
    })
    .await;
    let out = rollout::tick(&f.c.state).await.unwrap();
    assert_eq!(
        out,
        TickOutcome::RolledBack {
            rollout: 1,
            version: 3
        }
    );

    // The API: the gate names the release and the agent-side signal, never content.
    let v = f.rollout().await;
    assert_eq!(v["pins"], json!(["role=db"]), "{v}");
    assert_eq!(v["pinned_agents"], 6, "{v}");
    assert_eq!(v["rings"][0]["fell_back"], 3, "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains(
            "3 ring agents fell back from agent release 0.3.0 (#2) to their previous release"
        ),
        "{reason}"
    );
    assert!(reason.contains("crash loop"), "{reason}");
    assert!(!reason.contains(" v2"), "{reason}");
    let log = f.audit().await;
    let rollback = log.iter().find(|e| e["action"] == "rollback").unwrap();
    let decision = rollback["decision"].as_str().unwrap();
    assert!(
        decision.contains("release #3 re-offers 0.2.0 (#1)") && decision.contains("0.3.0 (#2)"),
        "{decision}"
    );

    // The dashboard.
    let cookie = f.c.session().await;
    let list = f.c.page(&cookie, "/rollouts").await;
    assert!(
        list.contains("agent release 0.2.0 (#1) → agent release 0.3.0 (#2)"),
        "{list}"
    );
    assert!(
        list.contains(r#"<span class="badge kind">agent</span>"#),
        "{list}"
    );
    let page = f.c.page(&cookie, "/rollouts/1").await;
    for want in [
        "agent release 0.2.0 (#1) → agent release 0.3.0 (#2)",
        "rolled back with agent release 0.2.0 (#3) (carries agent release 0.2.0 (#1))",
        "Pinned to the previous release: role=db (6 agents)",
        "<th class=num>on agent release 0.3.0 (#2)</th>",
        "<th class=num>fell back to their previous release</th>",
        // The canary: 6 members, 3 still on 0.3.0, 3 back on 0.2.0 by themselves (the binary
        // the rollback re-offers).
        "<td>0. canary</td><td class=num>6</td><td class=num>3</td><td class=num>0</td><td class=num>3</td><td class=num>3</td>",
        "fallbacks to the previous release or last-known-good content on 3 agents",
        // The ring picture.
        "3 of 6 on agent release 0.3.0 (#2)</title>",
        "3/6 on 0.3.0, 3 rolled back</text>",
    ] {
        assert!(
            page.contains(&want.replace('&', "&amp;")),
            "missing {want:?} in\n{page}"
        );
    }
    assert!(!page.contains("last-known-good fallbacks on"), "{page}");

    // The rollback reaches the canary: everyone ends on 0.2.0 (the re-offer carries it), and
    // says so at its next check-in.
    f.round(|_| json!({})).await;
    assert_eq!(f.on("0.2.0").len(), 60, "{:?}", f.running);
    f.round(|_| json!({})).await;
    let page = f.c.page(&cookie, "/rollouts/1").await;
    assert!(
        page.contains("<td>0. canary</td><td class=num>6</td><td class=num>0</td><td class=num>0</td><td class=num>6</td>"),
        "{page}"
    );
}

async fn lying_agents_cannot_halt_an_agent_rollout_beyond_their_own_weight(b: Backend) {
    let mut f = fleet(b, 60).await;
    f.start().await;
    f.round(|_| json!({})).await;
    let canary = f.on("0.3.0");
    assert_eq!(canary.len(), 6);

    // Every agent outside the canary claims to run 0.3.0, which it was never offered, and to
    // have crash-looped and fallen back on it.
    let outside: Vec<usize> = (0..60).filter(|i| !canary.contains(i)).collect();
    for &i in &outside {
        f.running[i] = "0.3.0".into();
    }
    f.round(|i| {
        if canary.contains(&i) {
            json!({})
        } else {
            json!({"release_fallbacks": 1, "crashes": 50})
        }
    })
    .await;
    // One of them reports a fallback in a canary agent's name, with its own credential.
    let victim = f.agents[canary[0]].id.clone();
    let mut liar = f.agents[outside[0]].clone();
    liar.id = victim;
    let (status, _) =
        f.c.checkin_with(
            &mut liar,
            json!({"release_fallbacks": 1, "crashes": 50}),
            json!({"agent_version": "0.3.0"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let out = rollout::tick(&f.c.state).await.unwrap();
    // (`tick` reports the content kind's idling when no kind did more than wait.)
    assert!(
        matches!(out, TickOutcome::Waiting { .. } | TickOutcome::Idle),
        "{out:?}: {}",
        f.rollout().await["rings"][0]["gate"]
    );
    let v = f.rollout().await;
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["rings"][0]["gate"]["lkg_agents"], 0, "{v}");
    assert_eq!(v["rings"][0]["fell_back"], 0, "{v}");

    // One canary agent lying about a crash loop weighs one agent: a halt for an operator,
    // never a rollback, however long it keeps lying.
    let canary_liar = canary[1];
    f.round(|i| {
        if i == canary_liar {
            json!({"release_fallbacks": 1, "crashes": 50})
        } else {
            json!({})
        }
    })
    .await;
    assert_eq!(
        rollout::tick(&f.c.state).await.unwrap(),
        TickOutcome::Halted { rollout: 1 }
    );
    for _ in 0..3 {
        f.round(|i| {
            if i == canary_liar {
                json!({"release_fallbacks": 1, "crashes": 50})
            } else {
                json!({})
            }
        })
        .await;
        assert_eq!(rollout::tick(&f.c.state).await.unwrap(), TickOutcome::Idle);
    }
    let v = f.rollout().await;
    assert_eq!(v["state"], "halted", "{v}");
    assert!(v["rollback_version"].is_null(), "{v}");
    let gate = &v["rings"][0]["gate"];
    assert_eq!(
        gate["hard_stop"]["agents"],
        json!([f.agents[canary_liar].id]),
        "{gate}"
    );
    let reason = gate["reason"].as_str().unwrap();
    assert!(
        reason.contains("1 ring agent(s) fell back from agent release 0.3.0 (#2)"),
        "{reason}"
    );
    let halts: Vec<Value> = f
        .audit()
        .await
        .into_iter()
        .filter(|e| e["action"] == "halt" || e["action"] == "rollback")
        .collect();
    assert_eq!(halts.len(), 1, "{halts:?}");
    assert_eq!(halts[0]["action"], "halt");
}

/// Found by the release rollout test on PostgreSQL: agents that fell back from a bad release
/// report it at the check-in after the fallback, and when the next rollout's ring has started
/// meanwhile, that report came in after the ring's start and was counted against the new
/// release (rolled back for its predecessor's fault). A release's fallback is reported at the
/// earliest one check-in after the one that could have received the offer: a member's first
/// check-in since its ring started is about what it ran before.
async fn a_fallback_from_an_earlier_release_does_not_count_against_the_next(b: Backend) {
    let mut f = fleet(b, 60).await;
    f.start().await;
    // The first check-in since the ring started: the canary gets 0.3.0, and four agents (some
    // of them in the canary) still report their fall-back from an earlier release.
    f.round(|i| {
        if i < 40 && i % 10 < 4 {
            json!({"release_fallbacks": 1, "crashes": 2})
        } else {
            json!({})
        }
    })
    .await;
    let canary = f.on("0.3.0");
    assert_eq!(canary.len(), 6);
    let out = rollout::tick(&f.c.state).await.unwrap();
    let v = f.rollout().await;
    assert!(
        matches!(out, TickOutcome::Idle | TickOutcome::Waiting { .. }),
        "{out:?}: {}",
        v["rings"][0]["gate"]
    );
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["rings"][0]["gate"]["lkg_agents"], 0, "{v}");
    // A fallback from 0.3.0 itself, at a later check-in, still counts.
    let falling: Vec<usize> = canary.iter().copied().take(3).collect();
    f.round(|i| {
        if falling.contains(&i) {
            json!({"release_fallbacks": 1})
        } else {
            json!({})
        }
    })
    .await;
    assert_eq!(
        rollout::tick(&f.c.state).await.unwrap(),
        TickOutcome::RolledBack {
            rollout: 1,
            version: 3
        }
    );
}

async fn a_completed_agent_rollout_is_audited_in_release_words(b: Backend) {
    let mut f = fleet(b, 60).await;
    f.start().await;
    let mut completed = false;
    for _ in 0..40 {
        f.round(|_| json!({})).await;
        if let TickOutcome::Completed { .. } = rollout::tick(&f.c.state).await.unwrap() {
            completed = true;
            break;
        }
    }
    let v = f.rollout().await;
    assert!(completed, "{v}");
    let log = f.audit().await;
    let complete = log.iter().find(|e| e["action"] == "complete").unwrap();
    assert_eq!(
        complete["decision"],
        "last ring passed: agent release 0.3.0 (#2) is the fleet baseline; 6 pinned agent(s) held on agent release 0.2.0 (#1)",
        "{complete}"
    );
    // The pinned group never took 0.3.0.
    assert_eq!(f.on("0.3.0").len(), 54, "{:?}", f.running);
}
