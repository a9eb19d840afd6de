//! A real agent's inventory reaching a real console, and the operator's question answered from
//! it: `console serve` on SQLite (plain HTTP on loopback), `agent run` enrolled to it with only
//! the inventory check of `[posture]` on, and `ringfence fleet inventory --package` asked which
//! hosts run this host's `bash`, within and outside a version bound. Needs root (the agent's
//! process connector); nothing asserts wall-clock times, the deadlines only stop a hung test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the test failing"
)]

use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn as_operator(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RINGFENCE_CONSOLE", url)
        .env("RINGFENCE_PLAIN_HTTP", "true")
        .env("RINGFENCE_TOKEN", token)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The version of `bash` dpkg has installed here.
fn installed_bash() -> Option<String> {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").ok()?;
    status.split("\n\n").find_map(|stanza| {
        let mut lines = stanza.lines();
        (lines.next() == Some("Package: bash"))
            .then(|| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix("Version: ").map(str::to_owned))
            })
            .flatten()
    })
}

#[test]
fn which_hosts_run_a_package_is_answered_from_the_agents_own_inventory() {
    let Some(bash) = installed_bash() else {
        eprintln!("skipped: no dpkg-installed bash on this host");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut serve = Command::new(BIN);
    serve
        .args([
            "console",
            "serve",
            "--plain-http",
            "--init-operator",
            "root",
        ])
        .arg("--db")
        .arg(format!(
            "sqlite:{}",
            dir.path().join("console.db").display()
        ))
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--checkin-interval", "2s"]);
    let (child, lines) = common::spawn_with_lines(&mut serve);
    let _console = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut token = None;
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("console serve printed its address");
        if let Some(t) = line.strip_prefix("api token: ") {
            token = Some(t.trim().to_owned());
        }
        if line.starts_with("console: ") {
            break;
        }
    }
    let token = token.expect("an api token line");
    let minted = ok(as_operator(
        &url,
        &token,
        &["fleet", "enroll-token", "create", "--uses", "1"],
    ));
    let enroll = minted
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .and_then(|l| l.split_whitespace().next())
        .expect("a token line")
        .to_owned();

    let p = |s: &str| dir.path().join(s).to_str().unwrap().to_owned();
    ok(Command::new(BIN)
        .args(["content", "keys", "init", "--dir", &p("keys")])
        .output()
        .unwrap());
    std::fs::create_dir(p("content")).unwrap();
    std::fs::write(
        p("agent.toml"),
        format!(
            "[agent]\nhost_name = \"inventory-e2e\"\n\n\
             [sources]\nproc_connector = true\naudit = false\nfanotify = false\nlogs = false\n\n\
             [fleet]\nplain_http = true\n\n\
             [posture]\nenabled = true\nstart_delay_secs = 0\nstate_dir = \"{}\"\n\
             skip = [\"weak-passwords\", \"sshd\", \"services\", \"fim\"]\n",
            p("posture")
        ),
    )
    .unwrap();
    let agent = Command::new(BIN)
        .args([
            "agent",
            "run",
            "--mode",
            "driverless",
            "--no-supervisor",
            "--plain-http",
        ])
        .args(["--config", &p("agent.toml"), "--console", &url])
        .args(["--content-dir", &p("content"), "--root", &p("keys")])
        .args([
            "--state-dir",
            &p("state"),
            "--output",
            &format!("jsonl:{}", p("events.jsonl")),
        ])
        .env("RINGFENCE_ENROLL_TOKEN", &enroll)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(p("agent.log")).unwrap())
        .spawn()
        .unwrap();
    let _agent = Killed(agent);

    let ask = |args: &[&str]| {
        let mut all = vec!["fleet", "inventory", "--package", "bash"];
        all.extend(args);
        ok(as_operator(&url, &token, &all))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let listed = loop {
        let out = ask(&[]);
        if out.contains("inventory-e2e") {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "no inventory reached the console: {out}\nagent log:\n{}",
            std::fs::read_to_string(p("agent.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        listed.contains(&bash) && listed.contains("1 host(s)"),
        "{listed}"
    );
    assert!(ask(&["--below", &bash]).contains("0 host(s)"));
    assert!(ask(&["--at-least", &bash]).contains("1 host(s)"));

    // The host's whole inventory, as the console holds it.
    let json = ok(as_operator(&url, &token, &["fleet", "agents", "--json"]));
    let agents: serde_json::Value = serde_json::from_str(&json).unwrap();
    let id = agents[0]["id"].as_str().unwrap();
    let whole = ok(as_operator(
        &url,
        &token,
        &["fleet", "inventory", "--agent", id],
    ));
    assert!(
        whole.contains("packages") && whole.contains("package bash "),
        "{whole}"
    );
}
