//! Tamper detection with the real binary in eBPF mode (root, BTF): a change to the agent's
//! content store, a signal that pauses the supervisor, and a SIGKILL of the worker are each
//! reported as a tamper finding naming the actor where one can be known; the killed worker is
//! back by the supervisor. Prints how long each took; asserts only what happened.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the test failing"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

struct Agent {
    child: Child,
    dir: tempfile::TempDir,
}

impl Agent {
    fn p(&self, s: &str) -> std::path::PathBuf {
        self.dir.path().join(s)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.p("agent.log")).unwrap_or_default()
    }

    fn findings(&self, rule: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.p("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(rule))
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &serde_json::Value| v["rule"]["id"] == rule)
            .collect()
    }

    /// Waits for a finding of `rule` and returns it with the time it took.
    fn wait_finding(&self, rule: &str, since: Instant) -> (serde_json::Value, Duration) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(f) = self.findings(rule).pop() {
                return (f, since.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "no {rule} finding; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn worker_pid(&self) -> Option<u32> {
        let sup = self.child.id();
        std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn kill(sig: &str, pid: u32) {
    assert!(
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

fn wait_until(what: &str, agent: &Agent, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn tampering_with_the_agent_is_reported_and_a_killed_worker_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("drop")).unwrap();
    // A content directory needs a trust root to check bundles against.
    let keys = Command::new(BIN)
        .args(["content", "keys", "init", "--dir"])
        .arg(dir.path().join("keys"))
        .output()
        .unwrap();
    assert!(keys.status.success(), "{keys:?}");
    std::fs::write(
        dir.path().join("agent.toml"),
        "[sources]\naudit = false\nlogs = false\n\n[content]\nmax_backoff_ms = 500\n",
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let child = Command::new(BIN)
        .args(["agent", "run", "--mode", "ebpf", "--config"])
        .arg(dir.path().join("agent.toml"))
        .arg("--output")
        .arg(format!(
            "jsonl:{}",
            dir.path().join("events.jsonl").display()
        ))
        .arg("--content-dir")
        .arg(dir.path().join("drop"))
        .arg("--root")
        .arg(dir.path().join("keys"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let agent = Agent { child, dir };
    wait_until("the sources to start", &agent, || {
        agent.log().contains("source started")
    });

    // Another process writes into the content store: refused (BPF LSM is refused on this
    // kernel, so by fanotify permission events) and reported.
    let store = agent.p("drop/.state");
    let forged = store.join("forged.json");
    let t = Instant::now();
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("echo forged > {}", forged.display()))
        .status()
        .unwrap();
    assert!(!status.success(), "the write is refused");
    assert_ne!(std::fs::read(&forged).unwrap_or_default(), b"forged\n");
    let (f, took) = agent.wait_finding("ringfence-tamper-file", t);
    assert_eq!(f["process"]["name"], "sh", "{f}");
    assert!(
        f["file"]["path"].as_str().unwrap().ends_with("forged.json"),
        "{f}"
    );
    let refused = agent
        .findings("ringfence-tamper-file")
        .into_iter()
        .any(|f| f["event"]["outcome"] == "failure");
    assert!(refused, "the refusal itself is reported");
    eprintln!(
        "tamper (content store write) refused and reported after {} ms",
        took.as_millis()
    );

    // Nor can its configuration be opened for writing by another process.
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(": >> {}", agent.p("agent.toml").display()))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("not permitted"),
        "the config is protected: {said}"
    );

    // A signal that would stop the supervisor, from a shell: reported before it lands.
    let t = Instant::now();
    kill("-STOP", agent.child.id());
    let (f, took) = agent.wait_finding("ringfence-tamper-signal", t);
    kill("-CONT", agent.child.id());
    assert_eq!(f["process"]["name"], "kill", "{f}");
    eprintln!(
        "tamper (SIGSTOP to the supervisor) reported after {} ms",
        took.as_millis()
    );

    // SIGSTOP of the worker (which answers fanotify permission events): the supervisor's
    // watchdog continues it, so nothing waiting on it stays frozen.
    let worker = agent.worker_pid().expect("a worker");
    kill("-STOP", worker);
    let state = ringfence_sensor::proc_info::state;
    let t = Instant::now();
    wait_until("the stopped worker to be continued", &agent, || {
        agent
            .log()
            .contains("worker stopped by a signal; continuing it")
            && state(worker) != Some('T')
    });
    eprintln!(
        "worker SIGSTOPped: continued within {} ms",
        t.elapsed().as_millis()
    );

    // SIGKILL of the worker: the supervisor restarts it and the new worker reports the death.
    let worker = agent.worker_pid().expect("a worker");
    let t = Instant::now();
    kill("-KILL", worker);
    wait_until("a new worker", &agent, || {
        agent.worker_pid().is_some_and(|w| w != worker)
    });
    let back = t.elapsed();
    let (f, took) = agent.wait_finding("ringfence-tamper-killed", t);
    assert!(f.to_string().contains("killed by signal 9"), "{f}");
    eprintln!(
        "worker SIGKILLed: a new worker after {} ms, reported after {} ms",
        back.as_millis(),
        took.as_millis()
    );
    assert!(Path::new(&format!("/proc/{}", agent.child.id())).exists());
}
