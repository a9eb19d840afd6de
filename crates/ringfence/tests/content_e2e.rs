//! End to end with the real binary: keys and bundles made by `ringfence content`, delivered to
//! `ringfence agent run --content-dir` (supervisor + worker). Needs the `fault-injection`
//! feature (`cargo test -p ringfence --features fault-injection --test content_e2e`) and root
//! for the process connector that supplies the events. Nothing here asserts wall-clock times;
//! the deadlines only stop a hung test.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking, as #[test] functions may (clippy.toml)"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

fn pack() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../content/linux")
}

fn ringfence(args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ringfence {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

struct Agent {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Agent {
    fn new() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let p = |s: &str| dir.path().join(s).to_str().unwrap().to_owned();
        ringfence(&["content", "keys", "init", "--dir", &p("keys")]);
        fs::create_dir(dir.path().join("drop")).unwrap();
        fs::write(
            dir.path().join("agent.toml"),
            "[sources]\nproc_connector = true\naudit = false\nfanotify = false\nlogs = false\n\n\
             [content]\npoll_ms = 50\nshadow_secs = 1\nconfirm_secs = 1\n\
             crash_loop_window_secs = 120\nmax_backoff_ms = 500\n",
        )
        .unwrap();
        Agent { dir, child: None }
    }

    fn path(&self, s: &str) -> String {
        self.dir.path().join(s).to_str().unwrap().to_owned()
    }

    fn build(&self, version: u64, extra: &[&str]) -> PathBuf {
        let out = self.path(&format!("built-{version}.bundle"));
        let v = version.to_string();
        let pack = pack();
        let mut args = vec![
            "content",
            "build",
            pack.to_str().unwrap(),
            "--version",
            &v,
            "--keys",
        ];
        let keys = self.path("keys");
        args.push(&keys);
        args.extend(["-o", &out]);
        args.extend(extra);
        ringfence(&args);
        PathBuf::from(out)
    }

    /// Delivers a bundle the way a console or operator would: write aside, rename in.
    fn deliver(&self, name: &str, bytes: &[u8]) {
        let tmp = self.dir.path().join(format!(".{name}.part"));
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, self.dir.path().join("drop").join(name)).unwrap();
    }

    fn start(&mut self) {
        let log = fs::File::create(self.path("agent.log")).unwrap();
        let child = Command::new(BIN)
            .args(["agent", "run", "--mode", "driverless", "--config"])
            .arg(self.path("agent.toml"))
            .arg("--output")
            .arg(format!("jsonl:{}", self.path("events.jsonl")))
            .arg("--content-dir")
            .arg(self.path("drop"))
            .arg("--root")
            .arg(self.path("keys"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn state(&self) -> serde_json::Value {
        fs::read_to_string(self.path("drop/.state/state.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("agent.log")).unwrap_or_default()
    }

    fn events(&self) -> String {
        fs::read_to_string(self.path("events.jsonl")).unwrap_or_default()
    }

    /// Runs processes (so the agent has events) until `done`, or fails after a long timeout.
    fn wait_for(&self, what: &str, mut done: impl FnMut(&Agent) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done(self) {
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; state {}\nlog:\n{}",
                    self.state(),
                    self.log()
                );
            }
            let _ = Command::new("/bin/true").arg("ringfence-e2e-tick").status();
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

fn active_and_confirmed(state: &serde_json::Value, version: u64) -> bool {
    state["active"] == version && state["activating"].is_null()
}

#[test]
fn a_bundle_that_panics_the_worker_ends_on_last_known_good_within_two_restarts() {
    let mut agent = Agent::new();
    let v1 = agent.build(1, &[]);
    let v2 = agent.build(2, &["--metadata", "ringfence-test-fault=panic-on-load"]);
    agent.start();
    agent.deliver("v1.bundle", &fs::read(v1).unwrap());
    agent.wait_for("v1 active", |a| active_and_confirmed(&a.state(), 1));

    agent.deliver("v2.bundle", &fs::read(v2).unwrap());
    // The supervisor marks v2 bad in the store, then logs the crash loop: wait for both.
    agent.wait_for("v2 marked bad", |a| {
        let s = a.state();
        s["bad"].as_array().is_some_and(|b| b.contains(&2.into())) && a.log().contains("crash loop")
    });
    let state = agent.state();
    assert_eq!(state["active"], 1, "{state}");
    assert!(state["activating"].is_null(), "{state}");
    let log = agent.log();
    assert_eq!(log.matches("worker died status=").count(), 2, "{log}");
    assert!(log.contains("crash loop"), "{log}");
    assert!(
        log.contains("rolled back to last-known-good bundle v1"),
        "{log}"
    );
    assert!(log.contains("test fault"), "{log}");

    // The restarted worker keeps emitting events, reports the rollback as a health event and
    // does not try v2 again.
    let marker = "ringfence-e2e-after-rollback";
    agent.wait_for("events after the rollback", |a| {
        let _ = Command::new("/bin/true").arg(marker).status();
        let events = a.events();
        events.contains(marker) && events.contains("crash loop")
    });
    std::thread::sleep(Duration::from_millis(500));
    let log = agent.log();
    assert_eq!(log.matches("asked to panic on load").count(), 2, "{log}");
    let status = agent.stop();
    assert!(status.success(), "{status:?}\n{}", agent.log());
    assert_eq!(agent.state()["active"], 1);
}

#[test]
fn malformed_bundles_leave_the_agent_on_its_previous_content() {
    let mut agent = Agent::new();
    let v1 = agent.build(1, &[]);
    let v2 = fs::read(agent.build(2, &[])).unwrap();
    // Signed by keys the agent does not trust.
    ringfence(&[
        "content",
        "keys",
        "init",
        "--dir",
        &agent.path("other-keys"),
    ]);
    let other = agent.path("other.bundle");
    let pack = pack();
    ringfence(&[
        "content",
        "build",
        pack.to_str().unwrap(),
        "--version",
        "3",
        "--keys",
        &agent.path("other-keys"),
        "-o",
        &other,
    ]);
    agent.start();
    agent.deliver("v1.bundle", &fs::read(v1).unwrap());
    agent.wait_for("v1 active", |a| active_and_confirmed(&a.state(), 1));

    agent.deliver("v2-truncated.bundle", &v2[..v2.len() / 2]);
    agent.deliver("v3-bad-signature.bundle", &fs::read(&other).unwrap());
    agent.wait_for("both refusals reported as health events", |a| {
        let events = a.events();
        events.contains("v2-truncated.bundle refused: signed bundle payload: truncated")
            && events.contains("v3-bad-signature.bundle refused: timestamp metadata")
    });
    let log = agent.log();
    assert!(log.contains("keeping bundle v1, "), "{log}");
    assert!(!log.contains("version none"), "{log}");
    assert!(active_and_confirmed(&agent.state(), 1), "{}", agent.state());

    // Empty content, signed by the trusted keys but without `--allow-empty` (as a builder
    // without the build-time check would sign it): refused at load, loudly.
    let keys = ringfence_content::KeySet::load(Path::new(&agent.path("keys"))).unwrap();
    let empty = ringfence_content::BundleBuilder::new(
        5,
        ringfence_agent::content::engine::agent_schema(),
        ringfence_content::Limits::default(),
    )
    .build()
    .unwrap();
    let empty = ringfence_content::sign_bundle(
        &empty,
        &keys,
        &ringfence_content::SignOptions::new(5, ringfence_content::UnixTime::now()),
    )
    .unwrap();
    agent.deliver("v5-empty.bundle", &empty.encode());
    agent.wait_for("the empty bundle refused", |a| {
        a.events()
            .contains("v5-empty.bundle refused: content version 5 detects nothing")
    });
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("v5-empty.bundle refused")),
        "{log}"
    );
    assert!(active_and_confirmed(&agent.state(), 1), "{}", agent.state());

    // The agent still takes good content afterwards.
    agent.deliver("v2.bundle", &v2);
    agent.wait_for("v2 active", |a| active_and_confirmed(&a.state(), 2));
    assert_eq!(agent.state()["previous"], 1);
    assert!(!agent.log().contains("worker died"), "{}", agent.log());
    let status = agent.stop();
    assert!(status.success(), "{status:?}\n{}", agent.log());
}
