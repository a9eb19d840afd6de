//! `agent run --output stdout --format text`: the real agent prints one readable line per
//! finding and no event JSON (root: it runs the process connector).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

#[test]
fn agent_run_with_format_text_prints_one_readable_line_per_finding() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    // A watched path that is a file: fanotify does not start, which is a health finding.
    std::fs::write(
        &config,
        "[sources]\naudit = false\nlogs = false\n\n[fanotify]\npaths = [\"/etc/hostname\"]\n",
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "agent",
        "run",
        "--mode",
        "driverless",
        "--output",
        "stdout",
        "--format",
        "text",
    ])
    .arg("--config")
    .arg(&config);
    let (mut child, lines) = common::spawn_with_lines(&mut cmd);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let line = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.contains("Ringfence Agent Source Not Running") => break l,
            Ok(l) => seen.push(l),
            Err(_) => panic!("no health finding line; seen {seen:#?}"),
        }
    };
    // `TIME SEVERITY title: what (user, parent) on host`.
    assert!(
        line.contains(" HIGH Ringfence Agent Source Not Running: source fanotify did not start"),
        "{line}"
    );
    // Let some events happen: none of them is printed.
    let _ = Command::new("/bin/true").status();
    std::thread::sleep(Duration::from_millis(500));
    while let Ok(l) = lines.try_recv() {
        seen.push(l);
    }
    assert!(seen.iter().all(|l| !l.starts_with('{')), "{seen:#?}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}
