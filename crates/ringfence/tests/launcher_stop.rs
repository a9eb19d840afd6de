//! A stop by the agent's own launcher is not tamper (real binary, eBPF mode, root): this test
//! starts the agent, so it is the launcher; its SIGINT stops the agent with no tamper finding,
//! while the same kind of signal from another process still is one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the test failing"
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

fn signal_findings(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("ringfence-tamper-signal"))
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["rule"]["id"] == "ringfence-tamper-signal")
        .collect()
}

#[test]
fn a_stop_by_the_launcher_is_not_tamper_and_a_stop_by_another_is() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("agent.toml"),
        "[sources]\naudit = false\nlogs = false\n",
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let mut child = Command::new(BIN)
        .args(["agent", "run", "--mode", "ebpf", "--config"])
        .arg(dir.path().join("agent.toml"))
        .arg("--output")
        .arg(format!(
            "jsonl:{}",
            dir.path().join("events.jsonl").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log().contains("source started") {
        assert!(
            Instant::now() < deadline,
            "the agent did not start:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Another process pauses the supervisor: tamper, reported (this also shows the sensor
    // watches signals by now).
    let supervisor = child.id();
    for sig in ["-STOP", "-CONT"] {
        let ok = Command::new("kill")
            .args([sig, &supervisor.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    while signal_findings(dir.path()).is_empty() {
        assert!(Instant::now() < deadline, "no tamper finding:\n{}", log());
        std::thread::sleep(Duration::from_millis(10));
    }

    // Its launcher (this test) stops it: a clean stop, not tamper.
    kill(
        Pid::from_raw(i32::try_from(supervisor).unwrap()),
        Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}:\n{}", log());
    let found = signal_findings(dir.path());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["process"]["name"], "kill");
    assert!(
        found
            .iter()
            .all(|f| f["process"]["pid"] != std::process::id()),
        "{found:#?}"
    );
}
