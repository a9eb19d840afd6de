//! The agent refuses to run blind, with the real binary: as an unprivileged user (`setpriv` to
//! nobody) it exits 4 telling the user to run it as root, unless `--allow-partial`, and then
//! each source that did not start is a health finding in its output; as root, a source that
//! fails while others run is a health finding too; a content directory without a trust root is
//! refused (exit 1). `doctor` as nobody says "run as root" instead of EPERM on every line.
//! Needs root (to drop to nobody, and for the sources), as CI has. Nothing asserts wall-clock
//! times; the deadlines only stop a hung test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the test failing"
)]

use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringfence_sensor::privilege::Privileges;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

fn root() -> bool {
    let root = Privileges::current().is_root();
    if !root {
        eprintln!("skipped: needs root");
    }
    root
}

/// `ringfence ARGS` as nobody, with no groups and no capabilities.
fn as_nobody(args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(args)
        .current_dir("/");
    cmd
}

/// The output of a command that must end by itself (a blind agent used to run on forever).
fn finished(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after 60 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A running agent whose stdout lines are collected; stopped (SIGTERM) when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let (child, lines) = common::spawn_with_lines(&mut cmd);
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The health findings naming `rule_id` once `count` of them are out.
    fn findings(&mut self, rule_id: &str, count: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found: Vec<serde_json::Value> = self
                .seen
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["event"]["kind"] == "alert" && v["rule"]["id"] == rule_id)
                .collect();
            if found.len() >= count {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!(
                    "no {count} {rule_id} finding(s); the agent wrote {} lines, exited: {:?}",
                    self.seen.len(),
                    self.child.try_wait()
                ),
            }
        }
    }

    /// SIGTERM; the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn an_unprivileged_agent_refuses_to_run_and_says_to_run_it_as_root() {
    if !root() {
        return;
    }
    let out = finished(as_nobody(&["agent", "run", "--output", "stdout"]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("refusing to run blind"), "{err}");
    assert!(err.contains("runs as uid 65534"), "{err}");
    assert!(err.contains("proc_connector needs CAP_NET_ADMIN"), "{err}");
    assert!(
        err.contains("run it as root (sudo ringfence agent run --output stdout)"),
        "{err}"
    );
    assert!(err.contains("--allow-partial runs it anyway"), "{err}");
    // The supervisor did not start it again.
    assert_eq!(err.matches("worker started").count(), 1, "{err}");
    assert!(
        text(&out.stdout).is_empty(),
        "no events: {}",
        text(&out.stdout)
    );
}

#[test]
fn an_unprivileged_agent_with_allow_partial_runs_and_reports_each_missing_source() {
    if !root() {
        return;
    }
    let mut agent = Running::start(as_nobody(&[
        "agent",
        "run",
        "--mode",
        "driverless",
        "--allow-partial",
        "--output",
        "stdout",
    ]));
    let found = agent.findings("ringfence-health-source", 2);
    let text: Vec<String> = found.iter().map(|f| f["message"].to_string()).collect();
    for source in ["proc_connector", "audit"] {
        assert!(
            text.iter()
                .any(|m| m.contains(&format!("source {source} did not start"))),
            "{text:#?}"
        );
    }
    assert!(
        text.iter().any(|m| m.contains("needs CAP_NET_ADMIN")),
        "{text:#?}"
    );
    assert_eq!(found[0]["ringfence"]["finding"]["level"], "high");
    let status = agent.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn a_source_that_fails_while_others_run_is_a_health_finding() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    // A watched path that is a file: fanotify cannot open it as a directory, the process
    // connector runs.
    std::fs::write(
        &config,
        "[sources]\naudit = false\nlogs = false\n\n[fanotify]\npaths = [\"/etc/hostname\"]\n",
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["agent", "run", "--mode", "driverless", "--output", "stdout"])
        .arg("--config")
        .arg(&config);
    let mut agent = Running::start(cmd);
    let found = agent.findings("ringfence-health-source", 1);
    let message = found[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("source fanotify did not start"),
        "{message}"
    );
    assert!(message.contains("Not a directory"), "{message}");
    assert!(
        matches!(agent.child.try_wait(), Ok(None)),
        "the agent runs on"
    );
    let status = agent.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn a_content_directory_without_a_trust_root_is_refused_unless_partial() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("content");
    std::fs::create_dir(&content).unwrap();
    let content = content.to_str().unwrap();
    let out = finished({
        let mut cmd = Command::new(BIN);
        cmd.args([
            "agent",
            "run",
            "--content-dir",
            content,
            "--output",
            "stdout",
        ]);
        cmd
    });
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("--content-dir {content}: no trusted root")),
        "{err}"
    );
    assert!(err.contains("--root"), "{err}");

    let mut cmd = Command::new(BIN);
    cmd.args([
        "agent",
        "run",
        "--mode",
        "driverless",
        "--allow-partial",
        "--content-dir",
        content,
        "--output",
        "stdout",
    ]);
    let mut agent = Running::start(cmd);
    let found = agent.findings("ringfence-health-degraded", 1);
    let message = found[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the content manager did not start (no trusted root"),
        "{message}"
    );
    let status = agent.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn doctor_as_an_unprivileged_user_says_run_as_root_instead_of_eperm() {
    if !root() {
        return;
    }
    let out = finished(as_nobody(&["doctor"]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.starts_with("ringfence: run as root (sudo ringfence doctor)"),
        "{err}"
    );
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("EPERM"), "{stdout}");
}

#[test]
fn a_content_store_that_cannot_open_is_a_health_finding_and_the_built_in_pack_runs() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("content");
    std::fs::create_dir(&content).unwrap();
    // The store's directory is a file.
    let state = dir.path().join("state");
    std::fs::write(&state, "").unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["agent", "run", "--mode", "driverless", "--output", "stdout"])
        .arg("--content-dir")
        .arg(&content)
        .arg("--state-dir")
        .arg(&state);
    let mut agent = Running::start(cmd);
    let found = agent.findings("ringfence-health-degraded", 1);
    let message = found[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the content manager did not start (content store:")
            && message.contains("the agent runs the built-in pack"),
        "{message}"
    );
    let status = agent.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn an_agent_missing_one_sources_capability_is_refused_naming_it() {
    if !root() {
        return;
    }
    // Nobody with CAP_NET_ADMIN only: the process connector opens, audit does not.
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=+net_admin",
        "--ambient-caps=+net_admin",
        BIN,
        "agent",
        "run",
        "--mode",
        "driverless",
        "--output",
        "stdout",
    ])
    .current_dir("/");
    let out = finished(cmd);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("only proc_connector"), "{err}");
    assert!(
        err.contains("audit needs CAP_AUDIT_READ, CAP_AUDIT_CONTROL"),
        "{err}"
    );
    assert!(!err.contains("proc_connector needs"), "{err}");
}

#[test]
fn an_enrolled_host_whose_enrollment_is_unreadable_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("content");
    std::fs::create_dir_all(content.join(".state")).unwrap();
    std::fs::write(content.join(".state/fleet.json"), b"{\"console\": 3}").unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "agent",
        "run",
        "--no-supervisor",
        "--output",
        "stdout",
        "--content-dir",
    ])
    .arg(&content);
    let out = finished(cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("fleet.json") && err.contains("enroll again"),
        "{err}"
    );
}
