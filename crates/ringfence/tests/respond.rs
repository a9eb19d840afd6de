//! Responses end to end with the real binary: a signed rule that asks to `kill` catches a real
//! process and the agent kills it, audited and written to the event stream; and the same guard
//! rails on demand from `ringfence respond` (kill, refusal of pid 1, quarantine and restore).
//! Needs root (process connector, signals to other users' processes). Nothing asserts
//! wall-clock times; the deadlines only stop a hung test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the test failing"
)]

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

const RULE: &str = "\
title: Test victim runs
id: 6f1d7f0e-0000-4000-8000-000000000001
status: test
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        Image|endswith: '/ringfence-test-victim'
    condition: selection
level: high
response:
    - kill
";

fn ringfence(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = ringfence(args);
    assert!(
        out.status.success(),
        "ringfence {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(what: &str, log: &Path, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; agent log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `child` to end; `None` if it is still running at the deadline.
fn ended(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// Content keys in `dir/keys`, and `dir/pack` signed as version 1 into `dir/v1.bundle`.
fn sign_pack(dir: &Path) {
    let p = |s: &str| dir.join(s).to_str().unwrap().to_owned();
    ok(&["content", "keys", "init", "--dir", &p("keys")]);
    ok(&[
        "content",
        "build",
        &p("pack"),
        "--version",
        "1",
        "--keys",
        &p("keys"),
        "-o",
        &p("v1.bundle"),
        // One test rule in place of the built-in pack: a drop the agent refuses unsigned.
        "--allow-rule-drop",
        "test pack replaces the built-in pack",
    ]);
}

/// A driverless agent on `dir/agent.toml`, writing `dir/events.jsonl` and `dir/agent.log`;
/// with `content`, watching `dir/drop` with the root in `dir/keys`. Stopped when dropped.
fn start_agent(dir: &Path, content: bool) -> Stop {
    let mut cmd = Command::new(BIN);
    cmd.args(["agent", "run", "--mode", "driverless", "--config"])
        .arg(dir.join("agent.toml"))
        .arg("--output")
        .arg(format!("jsonl:{}", dir.join("events.jsonl").display()));
    if content {
        cmd.arg("--content-dir")
            .arg(dir.join("drop"))
            .arg("--root")
            .arg(dir.join("keys"));
    }
    let agent = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
        .spawn()
        .unwrap();
    Stop(agent)
}

#[test]
fn a_rule_that_asks_to_kill_gets_the_process_it_caught_killed() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s);
    let ps = |s: &str| p(s).to_str().unwrap().to_owned();
    std::fs::create_dir_all(p("pack/rules")).unwrap();
    std::fs::write(p("pack/rules/victim.yml"), RULE).unwrap();
    std::fs::create_dir(p("drop")).unwrap();
    sign_pack(dir.path());
    std::fs::write(
        p("agent.toml"),
        format!(
            "[sources]\nproc_connector = true\naudit = false\nfanotify = false\nlogs = false\n\n\
             [content]\npoll_ms = 50\nshadow_secs = 1\nconfirm_secs = 1\n\n\
             [response]\nenabled = true\naudit_log = \"{}\"\nquarantine_dir = \"{}\"\n",
            ps("response-audit.jsonl"),
            ps("quarantine")
        ),
    )
    .unwrap();
    let log = p("agent.log");
    let _agent = start_agent(dir.path(), true);
    std::fs::copy(p("v1.bundle"), p("drop/v1.bundle")).unwrap();
    wait_for("content version 1 to be active", &log, || {
        std::fs::read_to_string(p("drop/.state/state.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .is_some_and(|s| s["active"] == 1 && s["activating"].is_null())
    });

    // The victim: a copy of sleep under the name the rule looks for.
    let victim = p("ringfence-test-victim");
    std::fs::copy("/bin/sleep", &victim).unwrap();
    let mut child = Command::new(&victim).arg("60").spawn().unwrap();
    let status = ended(&mut child, Duration::from_secs(30));
    if status.is_none() {
        let _ = child.kill();
    }
    let status = status.unwrap_or_else(|| {
        panic!(
            "the agent did not kill the victim; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert_eq!(status.signal(), Some(9), "{status}");

    // Audited, and in the event stream beside the finding.
    wait_for("the response in the event stream", &log, || {
        std::fs::read_to_string(p("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("\"response-kill\"") && l.contains("\"success\""))
    });
    let audit = std::fs::read_to_string(p("response-audit.jsonl")).unwrap();
    let record: serde_json::Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(record["action"], "kill", "{record}");
    assert_eq!(record["pid"], child.id(), "{record}");
    assert!(record["start_ticks"].as_u64().is_some(), "{record}");
    assert_eq!(
        record["cause"]["rule_id"],
        "6f1d7f0e-0000-4000-8000-000000000001"
    );
}

#[test]
fn respond_on_demand_kills_refuses_pid_1_and_quarantines_reversibly() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s);
    let ps = |s: &str| p(s).to_str().unwrap().to_owned();
    std::fs::write(
        p("agent.toml"),
        format!(
            "[response]\naudit_log = \"{}\"\nquarantine_dir = \"{}\"\n",
            ps("audit.jsonl"),
            ps("quarantine")
        ),
    )
    .unwrap();
    let cfg = ps("agent.toml");

    let mut sleeper = Command::new("/bin/sleep").arg("60").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let dry = ok(&["respond", "--config", &cfg, "--dry-run", "kill", &pid]);
    assert!(dry.contains("dry_run"), "{dry}");
    assert!(ended(&mut sleeper, Duration::from_millis(300)).is_none());
    ok(&["respond", "--config", &cfg, "kill", &pid]);
    let status = ended(&mut sleeper, Duration::from_secs(10)).expect("killed");
    assert_eq!(status.signal(), Some(9));

    let refused = ringfence(&["respond", "--config", &cfg, "kill", "1"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused"));

    let file = p("dropper.sh");
    std::fs::write(&file, "#!/bin/sh\necho evil\n").unwrap();
    let out = ok(&["respond", "--config", &cfg, "quarantine", &ps("dropper.sh")]);
    assert!(!file.exists());
    let record: serde_json::Value = serde_json::from_str(&out).unwrap();
    let detail = record["outcome"]["detail"].as_str().unwrap();
    let id = detail.rsplit(' ').next().unwrap();
    ok(&["respond", "--config", &cfg, "restore", id]);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "#!/bin/sh\necho evil\n"
    );
    assert_eq!(
        std::fs::read_to_string(p("audit.jsonl"))
            .unwrap()
            .lines()
            .count(),
        5
    );
}

#[test]
fn a_denied_hash_cannot_run_until_it_is_allowed_again() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s);
    let ps = |s: &str| p(s).to_str().unwrap().to_owned();
    std::fs::write(
        p("agent.toml"),
        format!(
            "[sources]\nproc_connector = true\naudit = false\nfanotify = false\nlogs = false\n\n\
             [protection]\ndeny_exec_list = \"{}\"\n",
            ps("deny.txt")
        ),
    )
    .unwrap();
    // Two programs: `evil` is denied by content, `fine` differs by one byte and is not.
    std::fs::copy("/bin/true", p("evil")).unwrap();
    std::fs::copy("/bin/true", p("fine")).unwrap();
    let mut fine = std::fs::OpenOptions::new()
        .append(true)
        .open(p("fine"))
        .unwrap();
    std::io::Write::write_all(&mut fine, b"\0").unwrap();
    drop(fine);
    let log = p("agent.log");
    let _agent = start_agent(dir.path(), false);
    wait_for("the exec guard", &log, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("exec guard")
    });
    let runs = |name: &str| Command::new(p(name)).status();

    let said = ok(&[
        "respond",
        "deny-exec",
        &ps("evil"),
        "--config",
        &ps("agent.toml"),
    ]);
    assert!(said.starts_with("denied: "), "{said}");
    wait_for("the denied exec to fail", &log, || {
        runs("evil").is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    });
    assert!(runs("fine").unwrap().success(), "other content still runs");
    // The same content under another name is the same file to the guard.
    std::fs::copy(p("evil"), p("renamed")).unwrap_or_else(|e| panic!("copy: {e}"));
    assert!(
        runs("renamed").is_err(),
        "the hash, not the name, is denied"
    );
    wait_for("the refusal in the event stream", &log, || {
        std::fs::read_to_string(p("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("\"failure\"") && l.contains("/evil\""))
    });

    let hash = said.split_whitespace().nth(1).unwrap().to_owned();
    ok(&[
        "respond",
        "allow-exec",
        &hash,
        "--config",
        &ps("agent.toml"),
    ]);
    wait_for("the allowed exec to run", &log, || {
        runs("evil").is_ok_and(|s| s.success())
    });
}

#[test]
fn content_can_deny_an_executable_where_the_operator_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s);
    // The program the content will deny, and a pack with its hash in a deny-exec IOC set.
    std::fs::copy("/bin/true", p("dropper")).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(p("dropper"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"dropper").unwrap();
    drop(f);
    let hash = {
        use sha2::Digest;
        let bytes = std::fs::read(p("dropper")).unwrap();
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    std::fs::create_dir_all(p("pack/rules")).unwrap();
    std::fs::create_dir_all(p("pack/iocs")).unwrap();
    std::fs::write(p("pack/rules/victim.yml"), RULE).unwrap();
    std::fs::write(
        p("pack/iocs/droppers.txt"),
        format!("# ringfence: deny-exec\n{hash} test-dropper\n"),
    )
    .unwrap();
    std::fs::create_dir(p("drop")).unwrap();
    sign_pack(dir.path());
    std::fs::write(
        p("agent.toml"),
        "[sources]\nproc_connector = true\naudit = false\nfanotify = false\nlogs = false\n\n\
         [content]\npoll_ms = 50\nshadow_secs = 1\nconfirm_secs = 1\n\n\
         [protection]\ndeny_exec_from_content = true\n",
    )
    .unwrap();
    let log = p("agent.log");
    let _agent = start_agent(dir.path(), true);
    assert!(
        Command::new(p("dropper")).status().unwrap().success(),
        "runs before the content"
    );
    std::fs::copy(p("v1.bundle"), p("drop/v1.bundle")).unwrap();
    wait_for("the content's deny set to refuse the dropper", &log, || {
        Command::new(p("dropper"))
            .status()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    });
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("from_content=1"),
        "the log says where the hash came from"
    );
}
