//! `ringfence up` end to end with the real binary: the console on SQLite, and a local agent
//! that enrolls, checks in with its health, takes the content a rollout offers it, and stops
//! with `up`. One `up` per data directory, its login kept across restarts, its agent's log
//! appended to. Needs root for the agent's sensors (as CI has). Nothing asserts wall-clock
//! times; the deadlines only stop a hung test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the test failing"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ringfence(args: &[&str]) -> String {
    ringfence_as(None, args)
}

/// `ringfence args…` with the operator token in `RINGFENCE_TOKEN` (never in argv).
fn ringfence_as(token: Option<&str>, args: &[&str]) -> String {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("RINGFENCE_TOKEN");
    if let Some(token) = token {
        command.env("RINGFENCE_TOKEN", token);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "ringfence {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Up {
    fn start(data: &Path, port: u16) -> Up {
        Up::start_with(data, port, &[])
    }

    fn start_with(data: &Path, port: u16, extra: &[&str]) -> Up {
        let mut command = Command::new(BIN);
        command
            .args(["up", "--checkin-secs", "1", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data")
            .arg(data)
            .args(extra);
        Up::spawn(command)
    }

    /// Run `command` (an `up`), reading its stdout lines on a thread.
    fn spawn(mut command: Command) -> Up {
        let (child, lines) = common::spawn_with_lines(&mut command);
        Up {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The printed line containing `marker`, waiting for it.
    fn line(&mut self, marker: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(l) = self.seen.iter().find(|l| l.contains(marker)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("`up` never printed {marker:?}; it printed {:#?}", self.seen),
            }
        }
    }
}

impl Up {
    /// The last word of the printed line containing `marker`.
    fn value(&mut self, marker: &str) -> String {
        self.line(marker)
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned()
    }

    /// The password of the `login:` line.
    fn password(&mut self) -> String {
        let line = self.line("login:");
        line.split(" / ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .to_owned()
    }

    /// SIGTERM, and wait for a clean exit.
    fn stop(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The CA `up` made in `data`, as the CLI and agents pin it.
fn pin(data: &Path) -> ringfence_wire::CaPin {
    ringfence_wire::tls::ca_pin_in(&data.join("tls")).unwrap()
}

/// `GET path` from the console `up` runs on `data` (its CA pinned), as JSON.
fn get(data: &Path, url: &str, token: &str, path: &str) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client =
        ringfence_wire::Client::new(url, &ringfence_wire::Trust::Pinned(vec![pin(data)])).unwrap();
    rt.block_on(client.get_json::<serde_json::Value>(path, Some(token)))
        .unwrap_or_default()
}

fn agents(data: &Path, url: &str, token: &str) -> Vec<serde_json::Value> {
    get(data, url, token, "/api/v1/agents")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn findings(data: &Path, url: &str, token: &str) -> Vec<serde_json::Value> {
    let v = get(data, url, token, "/api/v1/findings");
    v.as_array()
        .or_else(|| v["findings"].as_array())
        .cloned()
        .unwrap_or_default()
}

fn wait_for(what: &str, log: &Path, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; agent log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        // Something for the agent to see.
        let _ = Command::new("/bin/true").status();
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn up_runs_a_console_and_a_local_agent_that_takes_a_rollout_and_stops_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // Quick probation, so the rolled-out content activates within seconds.
    std::fs::write(
        data.join("agent.toml"),
        "[agent]\nmode = \"auto\"\n\n[content]\npoll_ms = 100\nshadow_secs = 1\nconfirm_secs = 1\n\n\
         [fleet]\nregion = \"test-region\"\n",
    )
    .unwrap();
    let port = free_port();
    let mut up = Up::start(&data, port);
    let url = format!("https://127.0.0.1:{port}");
    let token = up
        .line("API token:")
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    let agent_line = up.line("local agent:");
    assert!(agent_line.contains("running (pid"), "{agent_line}");
    let agent_pid: u32 = agent_line
        .split("pid ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    let log = data.join("agent/agent.log");

    // It enrolls with its tags and checks in with health.
    wait_for("the local agent to check in", &log, || {
        agents(&data, &url, &token).first().is_some_and(|a| {
            a["checkins"].as_i64() >= Some(2) && a["events_total"].as_i64() > Some(0)
        })
    });
    let a = agents(&data, &url, &token).remove(0);
    assert_eq!(a["region"], "test-region", "{a}");
    assert_eq!(a["content_version"], 0, "{a}");
    assert!(a["rss"].as_i64() > Some(0), "{a}");

    // Content reaches it: the baseline at once, then a rollout's version. Each is delivered
    // into its content directory, verified and activated by its content manager, and reported.
    let pack = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../content/linux");
    let build = |version: &str| {
        let bundle = dir.path().join(format!("v{version}.bundle"));
        let _ = ringfence(&[
            "content",
            "build",
            pack.to_str().unwrap(),
            "--version",
            version,
            "--keys",
            data.join("keys").to_str().unwrap(),
            "-o",
            bundle.to_str().unwrap(),
        ]);
        bundle.to_str().unwrap().to_owned()
    };
    let ca = up
        .line("the console's own CA")
        .split("CA: ")
        .nth(1)
        .unwrap()
        .trim_end_matches(')')
        .to_owned();
    assert_eq!(ca, pin(&data).to_string());
    let rollout = |args: &[&str]| {
        let mut all = vec!["rollout", "--console", &url, "--ca-sha256", &ca];
        all.extend(args);
        ringfence_as(Some(&token), &all);
    };
    // The operator's CLI over the pinned link: the agents, and a token with its one-line
    // agent command (which pins the CA too).
    let fleet = |args: &[&str]| {
        let mut all = vec!["fleet"];
        all.extend(args);
        all.extend(["--console", &url, "--ca-sha256", &ca]);
        ringfence_as(Some(&token), &all)
    };
    let listed = fleet(&["agents"]);
    let agent_id = agents(&data, &url, &token)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(listed.contains(&agent_id), "{listed}");
    let minted = fleet(&["enroll-token", "create", "--uses", "2", "--ttl", "1h"]);
    assert!(
        minted.contains("RINGFENCE_ENROLL_TOKEN=rfe1.")
            && minted.contains(&format!("--ca-sha256 {ca}")),
        "{minted}"
    );
    let tokens = fleet(&["tokens", "list"]);
    assert!(tokens.contains("0/2 uses"), "{tokens}");
    // A second host enrolls once with that token, read from a file, and keeps its identity
    // with the console and pin for `agent run`.
    let minted_token = minted
        .split("RINGFENCE_ENROLL_TOKEN=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap()
        .to_owned();
    let token_file = dir.path().join("enroll.token");
    std::fs::write(&token_file, &minted_token).unwrap();
    let second = dir.path().join("second-host");
    let enrolled = ringfence(&[
        "agent",
        "enroll",
        "--console",
        &url,
        "--ca-sha256",
        &ca,
        "--token-file",
        token_file.to_str().unwrap(),
        "--content-dir",
        second.to_str().unwrap(),
    ]);
    assert!(enrolled.contains("enrolled as agent"), "{enrolled}");
    let kept = std::fs::read_to_string(second.join(".state/fleet.json")).unwrap();
    assert!(
        kept.contains(&ca) && !kept.contains(&minted_token),
        "{kept}"
    );
    assert_eq!(agents(&data, &url, &token).len(), 2);
    // Another pin: refused, naming the CA the console presented.
    let wrong = Command::new(BIN)
        .env("RINGFENCE_TOKEN", &token)
        .args(["fleet", "agents", "--console", &url, "--ca-sha256"])
        .arg("ab".repeat(32))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success() && err.contains(&ca), "{err}");
    rollout(&[
        "publish",
        "--version",
        "1",
        "--baseline",
        "--bundle",
        &build("1"),
    ]);
    wait_for("the agent to run the baseline, version 1", &log, || {
        agents(&data, &url, &token)
            .first()
            .is_some_and(|a| a["content_version"] == 1)
    });
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        "[gates]\nmin_samples = 1\n\n[[rings]]\nname = \"all\"\npercent = 100\nbake = \"1m\"\n",
    )
    .unwrap();
    rollout(&[
        "start",
        "--version",
        "2",
        "--bundle",
        &build("2"),
        "--plan",
        plan.to_str().unwrap(),
    ]);
    wait_for("the agent to run the rollout's version 2", &log, || {
        agents(&data, &url, &token)
            .first()
            .is_some_and(|a| a["content_version"] == 2)
    });
    assert!(data.join("agent/content/console-v2.bundle").exists());
    // Every check-in says what is active, in words.
    wait_for("the agent to say bundle v2 is active", &log, || {
        agents(&data, &url, &token).first().is_some_and(|a| {
            a["content"]
                .as_str()
                .is_some_and(|c| c.starts_with("bundle v2, "))
        })
    });
    // And `doctor` says so on the host.
    let doctor = ringfence(&[
        "doctor",
        "--content-dir",
        data.join("agent/content").to_str().unwrap(),
    ]);
    assert!(doctor.contains("content: bundle v2"), "{doctor}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("content delivered"), "{text}");

    // A detection on the host reaches the console's findings.
    let tool = dir.path().join("dropped-tool");
    std::fs::copy("/bin/true", &tool).unwrap();
    wait_for("a finding uploaded by the agent", &log, || {
        let _ = Command::new(&tool).status();
        agents(&data, &url, &token)
            .first()
            .is_some_and(|a| a["findings_total"].as_i64() > Some(0))
            && findings(&data, &url, &token)
                .iter()
                .any(|f| f.to_string().contains("Temporary Directory"))
    });
    // The operator's tail over the pinned link: one readable line per finding, with its id.
    let tail = ringfence_as(
        Some(&token),
        &[
            "findings",
            "tail",
            "--once",
            "--last",
            "1000",
            "--console",
            &url,
            "--ca-sha256",
            &ca,
        ],
    );
    // A token on the command line is refused before anything is sent, naming the safe ways.
    let argv_token = Command::new(BIN)
        .env_remove("RINGFENCE_TOKEN")
        .args(["fleet", "agents", "--console", &url, "--ca-sha256", &ca])
        .args(["--token", &token])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&argv_token.stderr);
    assert!(
        argv_token.status.code() == Some(2)
            && err.contains("RINGFENCE_TOKEN")
            && err.contains("--token-file"),
        "{err}"
    );
    let line = tail
        .lines()
        .find(|l| l.contains("Temporary Directory"))
        .unwrap_or_else(|| panic!("no finding line in {tail}"));
    assert!(
        line.starts_with('#') && line.contains(" on ") && !line.contains('{'),
        "{line}"
    );

    // Stopping `up` stops its agent.
    Command::new("kill")
        .args(["-TERM", &up.child.id().to_string()])
        .status()
        .unwrap();
    let status = up.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let proc_dir = format!("/proc/{agent_pid}");
    wait_for("the agent to exit", &log, || !Path::new(&proc_dir).exists());
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_second_up_on_the_same_data_dir_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut first = Up::start_with(&data, free_port(), &["--no-agent"]);
    first.line("API token:");

    let mut second = Command::new(BIN)
        .args(["up", "--no-agent", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data")
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while second.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second `up` on the same data directory runs");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = second.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "in use by another `ringfence up` (pid {}: ",
            first.child.id()
        )),
        "{err}"
    );
    assert!(err.contains(&format!("--data {}", data.display())), "{err}");
    assert!(
        matches!(first.child.try_wait(), Ok(None)),
        "the first `up` runs on"
    );

    // Private: the directory, the login, the console's env file and database.
    assert_eq!(mode(&data), 0o700);
    for file in ["admin.env", "console.env", "console.db", "up.lock"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    first.stop();
}

#[test]
fn a_restart_keeps_the_login_and_the_agent_log_and_reset_admin_rotates_the_login() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = data.join("agent/agent.log");
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let works = |token: &str| get(&data, &url, token, "/api/v1/agents").is_array();

    let mut up = Up::start(&data, port);
    let password = up.password();
    let token = up.value("API token:");
    up.line("local agent:");
    wait_for("the first agent's log", &log, || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("sensor mode"))
    });
    assert!(works(&token));
    up.stop();
    let first_log = std::fs::read_to_string(&log).unwrap();

    // The same login again, and the agent's log goes on after the first run's.
    let mut up = Up::start(&data, port);
    assert_eq!(up.password(), password);
    assert!(up.line("login:").contains("kept from the last run"));
    assert_eq!(up.value("API token:"), token);
    up.line("local agent:");
    wait_for("the second agent's log", &log, || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.matches("sensor mode").count() >= 2)
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with(&first_log), "the first run's log was kept");
    assert_eq!(text.matches("---- ringfence up (pid").count(), 2, "{text}");
    assert!(works(&token));
    up.stop();

    // --reset-admin: a new password and token; the old token is refused.
    let mut up = Up::start_with(&data, port, &["--no-agent", "--reset-admin"]);
    let new_password = up.password();
    let new_token = up.value("API token:");
    assert_ne!(new_password, password);
    assert_ne!(new_token, token);
    assert!(
        up.line("login:")
            .contains("--reset-admin revoked the old one")
    );
    assert!(works(&new_token));
    assert!(!works(&token), "the old token still works");
    let kept = std::fs::read_to_string(data.join("admin.env")).unwrap();
    assert!(
        kept.contains(&new_token) && kept.contains(&new_password),
        "{kept}"
    );
    up.stop();
}

#[test]
fn an_unprivileged_up_starts_no_blind_agent_and_says_to_run_as_root() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(["up", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data")
        .arg(dir.path().join("data"))
        .current_dir("/");
    let mut up = Up::spawn(command);
    let agent = up.line("local agent:");
    assert!(
        agent.contains("not started: this `up` runs as uid 65534")
            && agent.contains("run as root (sudo ringfence up)"),
        "{agent}"
    );
    up.stop();
}
