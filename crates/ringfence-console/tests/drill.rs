//! Fleet drills over real loopback HTTP against an in-process console with an accelerated
//! clock: a bad version stays inside the canary ring and is rolled back without a manual step;
//! a healthy one goes all the way.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

use ringfence_console::drill::{self, DrillOptions, Fault};

/// Drills run one at a time: each simulates a fleet against an accelerated clock, and five at
/// once on a small machine starve each other's simulated agents into "missing data".
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn drill(agents: usize, fault: Fault) -> drill::DrillReport {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut opts = DrillOptions::new(agents, fault);
    opts.verbose = true;
    // Slower than the default 300×: a busy CI core must not turn into "missing data".
    opts.speed = Some(200.0);
    let report = drill::run(opts).await.expect("drill runs");
    for line in report.lines() {
        eprintln!("{line}");
    }
    report
}

fn assert_contained(r: &drill::DrillReport) {
    assert_eq!(r.final_state, "rolled_back", "{r:#?}");
    // The canary is 1% of the fleet, rounded up.
    let canary = r.agents.div_ceil(100);
    assert!(
        r.activated <= canary,
        "blast radius {} > canary {canary}: {r:#?}",
        r.activated
    );
    assert!(r.activated > 0, "{r:#?}");
    assert_eq!(r.manual_steps, 0);
    assert!(r.rollback_version.unwrap() > r.bad_version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_fault_is_contained_in_the_canary_and_rolled_back() {
    let r = drill(1500, Fault::Crash).await;
    assert_contained(&r);
    assert!(r.reason.contains("last-known-good"), "{}", r.reason);
    assert_eq!(r.recovered_on_own, r.activated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_fault_is_caught_by_the_gate() {
    let r = drill(1500, Fault::Cpu).await;
    assert_contained(&r);
    assert!(r.reason.contains("cpu"), "{}", r.reason);
    assert_eq!(r.still_on_bad, 0, "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_fault_is_caught_by_the_drop_rate() {
    let r = drill(1500, Fault::Silent).await;
    assert_contained(&r);
    assert!(r.reason.contains("drop rate"), "{}", r.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_canary_halts_for_missing_data() {
    let r = drill(1500, Fault::Hang).await;
    assert_contained(&r);
    assert!(r.reason.contains("missing data"), "{}", r.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_version_completes_every_ring() {
    let r = drill(1500, Fault::None).await;
    assert_eq!(r.final_state, "completed", "{r:#?}");
    assert!(r.activated * 100 >= r.agents * 95, "{r:#?}");
}

/// Agent-release drills: the same engine rolls out a bad agent release; the simulated agents
/// fetch it with their credential and misbehave on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_agent_release_is_contained_and_rolled_back() {
    let r = drill(1000, Fault::AgentCrash).await;
    assert_eq!(r.kind, "agent");
    assert_contained(&r);
    assert!(r.reason.contains("last-known-good"), "{}", r.reason);
    assert_eq!(r.recovered_on_own, r.activated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_agent_release_halts_for_missing_data() {
    let r = drill(1000, Fault::AgentHang).await;
    assert_contained(&r);
    assert!(r.reason.contains("missing data"), "{}", r.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_hungry_agent_release_is_caught_and_the_previous_one_re_offered() {
    let r = drill(1000, Fault::AgentCpu).await;
    assert_contained(&r);
    // On a busy machine a canary member may be judged missing before its CPU is.
    assert!(
        r.reason.contains("cpu") || r.reason.contains("missing data"),
        "{}",
        r.reason
    );
    // The canary members took the re-offered previous release back.
    assert_eq!(r.still_on_bad, 0, "{r:#?}");
    assert_eq!(r.rolled_back, r.activated, "{r:#?}");
}
