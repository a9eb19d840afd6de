//! The rollout engine end to end against real SQLite and real PostgreSQL, with a manual clock:
//! ring-by-ring promotion, automatic halt and rollback by a higher version, missing data as a
//! failure, refusal of skipped gates, maintenance windows and the emergency flag, inconclusive
//! pauses, and manual halt/resume/rollback, all audited.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use std::collections::HashSet;

use axum::http::StatusCode;
use common::{Agent, Backend, TestConsole, console_with};
use ringfence_console::rollout::{self, TickOutcome};
use serde_json::{Value, json};

both!(
    healthy_rollout_goes_ring_by_ring_and_completes,
    crash_in_canary_halts_and_rolls_back_with_a_higher_version,
    cpu_regression_is_caught_against_the_control_group,
    silent_canary_is_a_failure_not_a_pass,
    gates_cannot_be_skipped_and_emergency_is_audited,
    maintenance_windows_are_in_agent_local_time,
    inconclusive_pauses_and_manual_controls_work,
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

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Healthy,
    Crash,
    Cpu,
}

struct Fleet {
    c: TestConsole,
    agents: Vec<Agent>,
    /// Agents that ever ran v2.
    activated: HashSet<usize>,
    /// Agents that fell back and owe an lkg report.
    owes_fallback: HashSet<usize>,
    /// Agents that refuse v2 after it crashed them.
    refused: HashSet<usize>,
    /// Agents that stopped checking in.
    silent: HashSet<usize>,
    last_offer: Vec<u64>,
}

async fn fleet(b: Backend, n: usize, tags: impl Fn(usize) -> Value) -> Fleet {
    let c = console_with(b, 60_000).await;
    c.publish(1, b"content v1", true).await;
    c.publish(2, b"content v2", false).await;
    let agents = c.enroll(n, tags).await;
    let mut f = Fleet {
        c,
        last_offer: vec![0; agents.len()],
        agents,
        activated: HashSet::new(),
        owes_fallback: HashSet::new(),
        refused: HashSet::new(),
        silent: HashSet::new(),
    };
    f.round(Mode::Healthy, false).await;
    f.round(Mode::Healthy, false).await;
    assert!(f.agents.iter().all(|a| a.current == 1));
    f
}

impl Fleet {
    /// One minute passes: every agent checks in, takes what it is offered, then the engine ticks.
    async fn round(&mut self, mode: Mode, tick: bool) -> Option<TickOutcome> {
        self.c.clock.advance_ms(60_000);
        for i in 0..self.agents.len() {
            if self.silent.contains(&i) {
                continue;
            }
            let on_v2 = self.agents[i].current == 2;
            let mut health = json!({"cpu_percent": 2.0 + (i % 7) as f64 * 0.1});
            if on_v2 && mode == Mode::Cpu {
                health["cpu_percent"] = json!(12.0 + (i % 7) as f64 * 0.1);
            }
            if self.owes_fallback.remove(&i) {
                health["crashes"] = json!(3);
                health["lkg_fallbacks"] = json!(1);
            }
            let mut agent = self.agents[i].clone();
            let (status, resp) = self.c.checkin(&mut agent, health).await;
            assert_eq!(status, StatusCode::OK);
            let offer = resp.unwrap().content.map_or(0, |o| o.version);
            self.last_offer[i] = offer;
            if offer > agent.current && !(offer == 2 && self.refused.contains(&i)) {
                if offer == 2 {
                    self.activated.insert(i);
                    if mode == Mode::Crash {
                        self.owes_fallback.insert(i);
                        self.refused.insert(i);
                        self.agents[i] = agent;
                        continue;
                    }
                }
                agent.current = offer;
            }
            self.agents[i] = agent;
        }
        if tick {
            Some(rollout::tick(&self.c.state).await.unwrap())
        } else {
            None
        }
    }

    async fn start(&self, plan: &str) -> Value {
        let (status, v) = self
            .c
            .op(
                "POST",
                "/api/v1/rollouts",
                json!({"version": 2, "plan": plan, "reason": "test"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    async fn status(&self, id: i64) -> Value {
        self.c
            .op("GET", &format!("/api/v1/rollouts/{id}"), Value::Null)
            .await
            .1
    }

    async fn run_until(
        &mut self,
        mode: Mode,
        max_rounds: usize,
        done: impl Fn(&TickOutcome) -> bool,
    ) -> TickOutcome {
        for _ in 0..max_rounds {
            let out = self.round(mode, true).await.unwrap();
            if done(&out) {
                return out;
            }
        }
        panic!("no decision after {max_rounds} rounds");
    }

    async fn audit_actions(&self) -> Vec<(String, String)> {
        let (_, v) = self
            .c
            .op("GET", "/api/v1/audit?limit=500", Value::Null)
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap().to_owned(),
                    e["decision"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

fn plain(_: usize) -> Value {
    json!({"region": "eu", "tz_offset_minutes": 0})
}

async fn healthy_rollout_goes_ring_by_ring_and_completes(b: Backend) {
    let mut f = fleet(b, 60, plain).await;
    let v = f.start(PLAN).await;
    assert_eq!(v["rings"][0]["members"], 6);
    assert_eq!(v["rings"][0]["controls"], 10);
    let out = f
        .run_until(Mode::Healthy, 20, |o| {
            matches!(o, TickOutcome::Promoted { .. })
        })
        .await;
    assert_eq!(
        out,
        TickOutcome::Promoted {
            rollout: 1,
            ring: 1
        }
    );
    assert_eq!(
        f.activated.len(),
        6,
        "only the canary ran v2 before its gate passed"
    );
    let v = f.status(1).await;
    assert_eq!(v["rings"][0]["state"], "passed");
    assert_eq!(v["rings"][0]["gate"]["verdict"], "pass");
    // The last ring holds back a control group until it passes.
    assert_eq!(v["rings"][1]["members"], 49);
    assert_eq!(v["rings"][1]["controls"], 5);
    let out = f
        .run_until(Mode::Healthy, 20, |o| {
            matches!(o, TickOutcome::Completed { .. })
        })
        .await;
    assert_eq!(out, TickOutcome::Completed { rollout: 1 });
    f.round(Mode::Healthy, true).await;
    assert!(
        f.agents.iter().all(|a| a.current == 2),
        "after completion everyone runs v2"
    );
    let (_, fleet) = f.c.op("GET", "/api/v1/fleet", Value::Null).await;
    assert_eq!(fleet["baseline"], 2);
    let actions: Vec<String> = f
        .audit_actions()
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    for a in ["start", "promote", "complete"] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
}

async fn crash_in_canary_halts_and_rolls_back_with_a_higher_version(b: Backend) {
    let mut f = fleet(b, 60, plain).await;
    f.start(PLAN).await;
    let out = f
        .run_until(Mode::Crash, 6, |o| {
            matches!(o, TickOutcome::RolledBack { .. })
        })
        .await;
    assert_eq!(
        out,
        TickOutcome::RolledBack {
            rollout: 1,
            version: 3
        }
    );
    assert!(f.activated.len() <= 6, "blast radius stayed in the canary");
    let v = f.status(1).await;
    assert_eq!(v["state"], "rolled_back");
    assert_eq!(v["rollback_version"], 3);
    assert_eq!(v["rings"][0]["state"], "failed");
    assert!(
        v["reason"].as_str().unwrap().contains("last-known-good"),
        "{v}"
    );
    // v3 is v1's content under a higher number.
    let (_, _, body) =
        f.c.call_raw("GET", "/content/3.bundle", None, &[], None)
            .await;
    assert_eq!(body, b"content v1");
    f.round(Mode::Crash, true).await;
    for i in 0..f.agents.len() {
        let expected = if f.activated.contains(&i) { 3 } else { 1 };
        assert_eq!(f.last_offer[i], expected, "agent {i}");
    }
    let rollback = f
        .audit_actions()
        .await
        .into_iter()
        .find(|(a, _)| a == "rollback")
        .unwrap();
    assert!(rollback.1.contains("v3 carries v1"), "{rollback:?}");
    // A new rollout must be newer than the rollback pins.
    let (status, _) =
        f.c.op(
            "POST",
            "/api/v1/rollouts",
            json!({"version": 2, "plan": PLAN}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

async fn cpu_regression_is_caught_against_the_control_group(b: Backend) {
    let mut f = fleet(b, 60, plain).await;
    f.start(PLAN).await;
    let out = f
        .run_until(Mode::Cpu, 6, |o| {
            matches!(o, TickOutcome::RolledBack { .. })
        })
        .await;
    assert!(matches!(out, TickOutcome::RolledBack { .. }));
    let v = f.status(1).await;
    assert!(v["reason"].as_str().unwrap().contains("cpu"), "{v}");
    let gate = &v["rings"][0]["gate"];
    let cpu = gate["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "cpu %")
        .unwrap();
    assert!(cpu["p"].as_f64().unwrap() < 0.01, "{cpu}");
    f.round(Mode::Cpu, true).await;
    f.round(Mode::Cpu, true).await;
    assert!(
        f.agents.iter().all(|a| a.current != 2),
        "every agent left the bad version"
    );
}

async fn silent_canary_is_a_failure_not_a_pass(b: Backend) {
    let mut f = fleet(b, 60, plain).await;
    f.start(PLAN).await;
    // The canary takes v2 and then goes quiet: no check-ins at all.
    f.round(Mode::Healthy, true).await;
    let canary: Vec<usize> = (0..f.agents.len())
        .filter(|&i| f.agents[i].current == 2)
        .collect();
    assert_eq!(canary.len(), 6);
    f.silent.extend(canary);
    let out = f
        .run_until(Mode::Healthy, 10, |o| {
            !matches!(o, TickOutcome::Waiting { .. })
        })
        .await;
    assert!(matches!(out, TickOutcome::RolledBack { .. }), "{out:?}");
    let v = f.status(1).await;
    assert!(
        v["reason"].as_str().unwrap().contains("missing data"),
        "{v}"
    );
}

async fn gates_cannot_be_skipped_and_emergency_is_audited(b: Backend) {
    let plan = r#"
[gates]
min_samples = 5
[[rings]]
name = "canary"
percent = 10
bake = "5m"
[[rings]]
name = "early"
percent = 50
bake = "5m"
window = "01:00-02:00"
[[rings]]
name = "rest"
percent = 100
bake = "5m"
"#;
    let mut f = fleet(b, 60, plain).await;
    f.start(plan).await;
    f.round(Mode::Healthy, false).await;
    let promote = |ring: i64| json!({"ring": ring, "reason": "impatient"});
    let (status, v) =
        f.c.op("POST", "/api/v1/rollouts/1/promote", promote(2))
            .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("cannot be skipped"));
    let (status, v) =
        f.c.op("POST", "/api/v1/rollouts/1/promote", promote(1))
            .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    // Window closed for every agent (noon UTC, all at UTC+0): refused even once baked.
    for _ in 0..8 {
        f.round(Mode::Healthy, false).await;
    }
    let (status, v) =
        f.c.op("POST", "/api/v1/rollouts/1/promote", promote(1))
            .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("window"), "{v}");
    // The emergency flag waits for a second operator.
    let (status, v) =
        f.c.op(
            "POST",
            "/api/v1/rollouts/1/emergency",
            json!({"on": true, "reason": "zero-day in the wild"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let approval = v["pending_approval"]["id"].as_i64().unwrap();
    let second = f.c.operator("second", "content_admin").await;
    let (status, v) =
        f.c.as_op(
            &second,
            "POST",
            &format!("/api/v1/approvals/{approval}/approve"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) =
        f.c.op("POST", "/api/v1/rollouts/1/promote", promote(1))
            .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["current_ring"], 1);
    // Emergency: the early ring gets v2 now although its window is closed.
    f.round(Mode::Healthy, false).await;
    assert!(f.activated.len() >= 30, "{}", f.activated.len());
    let audit = f.audit_actions().await;
    let refused = audit
        .iter()
        .filter(|(a, d)| a == "promote" && d.starts_with("refused"))
        .count();
    assert_eq!(refused, 3, "{audit:?}");
    assert!(
        audit
            .iter()
            .any(|(a, d)| a == "emergency" && d.contains("windows overridden"))
    );
}

async fn maintenance_windows_are_in_agent_local_time(b: Backend) {
    let plan = r#"
[gates]
min_samples = 5
[[rings]]
name = "canary"
percent = 50
bake = "5m"
window = "01:00-05:00"
[[rings]]
name = "rest"
percent = 100
bake = "5m"
"#;
    // Half the fleet at UTC+0 (noon: closed), half at UTC+14 (02:00: open).
    let mut f = fleet(
        b,
        40,
        |i| json!({"tz_offset_minutes": if i % 2 == 0 { 0 } else { 840 }}),
    )
    .await;
    f.start(plan).await;
    f.round(Mode::Healthy, true).await;
    assert!(!f.activated.is_empty());
    assert!(
        f.activated.iter().all(|i| i % 2 == 1),
        "only agents inside their window moved"
    );
    // 01:30 UTC the next day: the UTC+0 members' window opens.
    let now = common::NOON + 13 * 3_600_000 + 30 * 60_000;
    f.c.clock.set(now - 60_000);
    f.round(Mode::Healthy, false).await;
    assert!(f.activated.iter().any(|i| i % 2 == 0));
}

async fn inconclusive_pauses_and_manual_controls_work(b: Backend) {
    let plan = r#"
[gates]
min_samples = 8
[[rings]]
name = "canary"
percent = 10
bake = "3m"
[[rings]]
name = "rest"
percent = 100
bake = "3m"
"#;
    let mut f = fleet(b, 60, plain).await;
    f.start(plan).await;
    // Six canary agents can never give eight samples: the gate pauses rather than passing.
    let out = f
        .run_until(Mode::Healthy, 12, |o| {
            !matches!(o, TickOutcome::Waiting { .. })
        })
        .await;
    assert_eq!(out, TickOutcome::Paused { rollout: 1 });
    assert!(
        f.status(1).await["reason"]
            .as_str()
            .unwrap()
            .contains("too few samples")
    );
    // Resume, then halt: a halted rollout delivers nothing new.
    assert_eq!(
        f.c.op(
            "POST",
            "/api/v1/rollouts/1/resume",
            json!({"reason": "look again"})
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        f.c.op(
            "POST",
            "/api/v1/rollouts/1/halt",
            json!({"reason": "hold on"})
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        f.c.op("POST", "/api/v1/rollouts/1/halt", Value::Null)
            .await
            .0,
        StatusCode::CONFLICT
    );
    assert_eq!(f.round(Mode::Healthy, true).await, Some(TickOutcome::Idle));
    for i in 0..f.agents.len() {
        let expect = if f.activated.contains(&i) { 2 } else { 1 };
        assert_eq!(
            f.last_offer[i], expect,
            "agent {i}: agents keep what they run, nobody new gets v2"
        );
    }
    let (status, v) =
        f.c.op(
            "POST",
            "/api/v1/rollouts/1/rollback",
            json!({"reason": "operator"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "rolled_back");
    assert_eq!(v["rollback_version"], 3);
    f.round(Mode::Healthy, true).await;
    assert!(f.agents.iter().all(|a| a.current != 2));
    assert_eq!(
        f.c.op("POST", "/api/v1/rollouts/1/resume", Value::Null)
            .await
            .0,
        StatusCode::CONFLICT
    );
    let actions: Vec<String> = f
        .audit_actions()
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    for a in ["pause", "resume", "halt", "rollback"] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
}
