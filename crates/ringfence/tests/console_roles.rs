//! Roles and two-person approval through the real binary: `console serve` on SQLite (plain
//! HTTP on loopback), operators made with `console operators add`, an emergency rollout held
//! until another operator runs `console approve`, the requester and a viewer refused, and a
//! revoked token refused. No root needed; nothing asserts wall-clock times.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the test failing"
)]

use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

struct Console {
    child: Child,
    url: String,
    root_token: String,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path) -> Console {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "console",
        "serve",
        "--plain-http",
        "--init-operator",
        "root",
    ])
    .arg("--db")
    .arg(format!("sqlite:{}", dir.join("console.db").display()))
    .arg("--data")
    .arg(dir.join("data"))
    .args(["--listen", &format!("127.0.0.1:{port}")]);
    let (child, lines) = common::spawn_with_lines(&mut cmd);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut root_token = None;
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("console serve printed its address");
        if let Some(t) = line.strip_prefix("api token: ") {
            root_token = Some(t.trim().to_owned());
        }
        if line.starts_with("console: ") {
            break;
        }
    }
    Console {
        child,
        url: format!("http://127.0.0.1:{port}"),
        root_token: root_token.expect("an api token line"),
    }
}

impl Console {
    fn run(&self, token: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("RINGFENCE_CONSOLE", &self.url)
            .env("RINGFENCE_PLAIN_HTTP", "true")
            .env("RINGFENCE_TOKEN", token)
            .output()
            .unwrap()
    }

    fn ok(&self, token: &str, args: &[&str]) -> String {
        let out = self.run(token, args);
        assert!(
            out.status.success(),
            "ringfence {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Refused with exit 1; returns stderr.
    fn refused(&self, token: &str, args: &[&str]) -> String {
        let out = self.run(token, args);
        assert_eq!(out.status.code(), Some(1), "ringfence {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn add(&self, name: &str, role: &str) -> String {
        let out = self.ok(
            &self.root_token,
            &["console", "operators", "add", name, "--role", role],
        );
        out.lines()
            .find_map(|l| l.strip_prefix("api token: "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .to_owned()
    }
}

#[test]
fn an_emergency_rollout_waits_for_a_second_operator_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path());
    let carl = c.add("carl", "content_admin");
    let dana = c.add("dana", "content_admin");
    let vera = c.add("vera", "viewer");
    let err = c.refused(
        &c.root_token,
        &["console", "operators", "add", "eve", "--role", "god"],
    );
    assert!(err.contains("unknown role"), "{err}");
    let listed = c.ok(&vera, &["console", "approvals"]);
    assert!(listed.contains("no requests"), "{listed}");
    let err = c.refused(&vera, &["console", "operators", "list"]);
    assert!(err.contains("403") && err.contains("admin"), "{err}");

    let v1 = dir.path().join("v1.bin");
    let v2 = dir.path().join("v2.bin");
    std::fs::write(&v1, b"opaque v1").unwrap();
    std::fs::write(&v2, b"opaque v2").unwrap();
    let err = c.refused(
        &vera,
        &[
            "rollout",
            "publish",
            "--version",
            "1",
            "--bundle",
            v1.to_str().unwrap(),
            "--baseline",
        ],
    );
    assert!(err.contains("403"), "{err}");
    c.ok(
        &carl,
        &[
            "rollout",
            "publish",
            "--version",
            "1",
            "--bundle",
            v1.to_str().unwrap(),
            "--baseline",
        ],
    );
    let held = c.ok(
        &carl,
        &[
            "rollout",
            "start",
            "--version",
            "2",
            "--bundle",
            v2.to_str().unwrap(),
            "--emergency",
            "--reason",
            "zero-day",
        ],
    );
    assert!(
        held.contains("approval 1") && held.contains("pending"),
        "{held}"
    );
    let err = c.refused(&carl, &["rollout", "status"]);
    assert!(err.contains("no content rollouts"), "{err}");

    // The attacks: the requester and a viewer approve.
    let err = c.refused(&carl, &["console", "approve", "1"]);
    assert!(err.contains("different operator"), "{err}");
    let err = c.refused(&vera, &["console", "approve", "1"]);
    assert!(err.contains("403"), "{err}");
    // A second content admin approves: the rollout starts, carl's, with the emergency flag.
    let approved = c.ok(&dana, &["console", "approve", "1"]);
    assert!(approved.contains("approved by dana"), "{approved}");
    let status = c.ok(&vera, &["rollout", "status"]);
    assert!(
        status.contains("EMERGENCY") && status.contains("content v1 -> content v2"),
        "{status}"
    );
    let audit = c.ok(&vera, &["console", "approvals", "--all", "--json"]);
    assert!(audit.contains("\"decided_by\": \"dana\""), "{audit}");

    // Another request, rejected by the second operator: it never runs.
    let held = c.ok(&carl, &["rollout", "emergency", "--reason", "again"]);
    assert!(held.contains("approval 2"), "{held}");
    let rejected = c.ok(&dana, &["console", "reject", "2", "--reason", "already on"]);
    assert!(rejected.contains("rejected by dana"), "{rejected}");
    let err = c.refused(&dana, &["console", "approve", "2"]);
    assert!(err.contains("rejected"), "{err}");

    // Vera's token revoked: refused from then on.
    let tokens = c.ok(&c.root_token, &["console", "tokens", "list"]);
    let id = tokens
        .lines()
        .find(|l| l.contains("vera"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    c.ok(
        &c.root_token,
        &[
            "console",
            "tokens",
            "revoke",
            &id,
            "--reason",
            "left the team",
        ],
    );
    let err = c.refused(&vera, &["console", "approvals"]);
    assert!(err.contains("revoked"), "{err}");
}
