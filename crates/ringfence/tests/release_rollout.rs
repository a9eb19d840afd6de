//! Agent releases through the one rollout engine, end to end: the real `console serve` over TLS
//! (its CA pinned) with an accelerated clock, the operator's real CLI (`rollout
//! publish-release`, `rollout start --agent-version V --release FILE --plan P`, `rollout status
//! --kind agent`, `rollout halt --kind agent`, content `rollout publish`/`start`), and simulated
//! agents that check in over TLS, fetch offered releases with their credential, verify them
//! against the keys' trust root and run them (a release labelled `-crash` crash-loops: the
//! "supervisor" falls back, reporting crashes and a release fallback, and never takes it
//! again). No root needed; nothing asserts wall-clock times (the deadlines only stop a hung
//! test).
//!
//! 1. A healthy release promotes ring by ring and becomes the fleet's baseline release.
//! 2. A crashing release halts in the canary and is rolled back: the previous release is
//!    re-offered and the canary runs it again.
//! 3. A content rollout goes through every ring while an agent rollout is halted, and the
//!    halted agent rollout's canary keeps its release, the rest theirs.
//!
//! Once on SQLite and once on PostgreSQL (a fresh database on the server named by
//! `RINGFENCE_TEST_POSTGRES`: `eval "$(scripts/postgres.sh)"` in the same shell as the test, or
//! `RINGFENCE_SKIP_POSTGRES=1` to skip that run).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the test failing"
)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringfence_wire::{
    CheckIn, Client, Count, CpuPercent, EnrollRequest, Health, Label, PROTOCOL, Tags, Trust,
};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");
const AGENTS: usize = 80;
/// Console clock speed: a simulated minute (one check-in) is a second, slow enough for a busy
/// machine to keep every simulated agent on time.
const SPEED: f64 = 60.0;

// A ring's agents all fetch the release at once from a debug console on a busy machine: give
// them ten check-ins before one counts as missing.
const PLAN: &str = r#"[gates]
min_samples = 4
hard_stop_min_agents = 2
heartbeat_intervals = 10

[[rings]]
name = "canary"
percent = 10
bake = "10m"

[[rings]]
name = "all"
percent = 100
bake = "10m"
"#;

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

struct Console {
    child: Child,
    url: String,
    token: String,
    pin: String,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The PostgreSQL server URL, `None` only when `RINGFENCE_SKIP_POSTGRES=1`.
fn postgres_url() -> Option<String> {
    match std::env::var("RINGFENCE_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("RINGFENCE_SKIP_POSTGRES").as_deref() == Ok("1") => {
            eprintln!("RINGFENCE_SKIP_POSTGRES=1: skipping the PostgreSQL run");
            None
        }
        _ => panic!(
            "RINGFENCE_TEST_POSTGRES is not set. Start a server with `eval \"$(scripts/postgres.sh)\"` \
             in the same shell, or set RINGFENCE_SKIP_POSTGRES=1 to skip the PostgreSQL run."
        ),
    }
}

/// A fresh, empty database on the PostgreSQL server at `url`; its URL.
fn fresh_postgres(url: &str) -> String {
    use sqlx::Connection;
    let name = format!(
        "rf_release_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
        });
    let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
    format!("{base}/{name}")
}

fn start_console(dir: &Path, db: &str) -> Console {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(BIN);
    cmd.args(["console", "serve", "--init-operator", "root"])
        .args(["--db", db])
        .arg("--data")
        .arg(dir.join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--clock-speed", &SPEED.to_string()])
        .args(["--checkin-interval", "60s", "--engine-period", "200ms"]);
    let (child, lines) = common::spawn_with_lines(&mut cmd);
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
    let pin = ringfence_wire::tls::ca_pin_in(&dir.join("data").join("tls"))
        .unwrap()
        .to_string();
    Console {
        child,
        url: format!("https://127.0.0.1:{port}"),
        token: token.expect("an api token line"),
        pin,
    }
}

impl Console {
    fn cli(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["--console", &self.url, "--ca-sha256", &self.pin]);
        ringfence_as(Some(&self.token), &all)
    }

    fn status(&self, kind: &str) -> serde_json::Value {
        serde_json::from_str(&self.cli(&["rollout", "status", "--kind", kind, "--json"])).unwrap()
    }

    /// Waits until the `kind` rollout's state is one of `states`.
    fn wait_for(&self, kind: &str, states: &[&str]) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let v = self.status(kind);
            if states.contains(&v["state"].as_str().unwrap()) {
                return v;
            }
            assert!(Instant::now() < deadline, "still {v:#}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// What each simulated agent runs, for the test to look at.
#[derive(Debug, Clone, Default)]
struct Running {
    release: String,
    content: u64,
    /// Took the crashing release and fell back.
    fell_back: bool,
}

type Fleet = Arc<Mutex<Vec<Running>>>;

async fn agent(
    i: usize,
    client: Client,
    token: String,
    root: Arc<ringfence_content::verify::TrustedRoot>,
    fleet: Fleet,
) {
    let label = |s: &str| Label::try_from(s).unwrap();
    let enrolled = client
        .enroll(&EnrollRequest {
            protocol: PROTOCOL,
            token,
            hostname: label(&format!("sim-{i:03}")),
            agent_version: label("0.2.0"),
            tags: Tags::default(),
            csr_pem: None,
        })
        .await
        .unwrap();
    let mut release = "0.2.0".to_owned();
    let mut content = 0u64;
    let mut refused: Vec<String> = Vec::new();
    let (mut crashes, mut fallbacks) = (0u32, 0u32);
    for seq in 1u64.. {
        let checkin = CheckIn {
            protocol: PROTOCOL,
            agent_id: enrolled.agent_id.clone(),
            seq: Count::try_from(seq).unwrap(),
            agent_version: label(&release),
            content_version: Count::try_from(content).unwrap(),
            content: None,
            health: Health {
                crashes: Count::from(crashes),
                release_fallbacks: Count::from(fallbacks),
                cpu_percent: CpuPercent::try_from(2.0 + (i % 7) as f64 * 0.1).unwrap(),
                rss_bytes: Count::try_from(50_000_000 + (i as u64 % 5) * 1_000_000).unwrap(),
                events: Count::try_from(10_000u64).unwrap(),
                interval_ms: Count::try_from(60_000u64).unwrap(),
                ..Health::default()
            },
            tags: Tags::default(),
            order_results: Default::default(),
            tuning: Default::default(),
            sensor_hooks: Default::default(),
        };
        let Ok(resp) = client.check_in(&enrolled.credential, &checkin).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        (crashes, fallbacks) = (0, 0);
        if let Some(offer) = &resp.content
            && offer.version > content
            && client.fetch_content(&offer.url, 1 << 20).await.is_ok()
        {
            content = offer.version;
        }
        if let Some(offer) = &resp.release
            && offer.version.as_str() != release
            && !refused.contains(&offer.sha256)
            && let Ok(bytes) = client
                .fetch_file(&offer.url, Some(enrolled.credential.as_str()), 1 << 20)
                .await
        {
            let verified = ringfence_content::release::verify_release(
                &bytes,
                &root,
                ringfence_content::UnixTime::now(),
            )
            .expect("the console serves the release as signed");
            assert_eq!(verified.version, offer.version.as_str());
            if verified.version.ends_with("-crash") {
                // Crash loop on trial; the supervisor falls back and marks it bad.
                crashes += 3;
                fallbacks += 1;
                refused.push(offer.sha256.clone());
                fleet.lock().unwrap()[i].fell_back = true;
            } else {
                release = verified.version;
            }
        }
        {
            let mut f = fleet.lock().unwrap();
            f[i].release = release.clone();
            f[i].content = content;
        }
        // A simulated minute.
        let wait = 60_000.0 / SPEED * (0.9 + 0.2 * ((i * 7 + seq as usize) % 10) as f64 / 10.0);
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}

fn count(fleet: &Fleet, f: impl Fn(&Running) -> bool) -> usize {
    fleet.lock().unwrap().iter().filter(|r| f(r)).count()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One fleet at a time: two consoles with 80 simulated agents each on a busy machine make
/// agents late enough for a gate to judge them missing.
static ONE_FLEET_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn agent_releases_roll_out_in_rings_roll_back_and_leave_content_alone_on_sqlite() {
    let _one = ONE_FLEET_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("console.db").display());
    agent_releases_roll_out_in_rings_roll_back_and_leave_content_alone(dir.path(), &db);
}

#[test]
fn agent_releases_roll_out_in_rings_roll_back_and_leave_content_alone_on_postgres() {
    let Some(url) = postgres_url() else {
        return;
    };
    let _one = ONE_FLEET_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    agent_releases_roll_out_in_rings_roll_back_and_leave_content_alone(
        dir.path(),
        &fresh_postgres(&url),
    );
}

fn agent_releases_roll_out_in_rings_roll_back_and_leave_content_alone(dir: &Path, db: &str) {
    let p = |s: &str| dir.join(s).to_str().unwrap().to_owned();
    ringfence(&["content", "keys", "init", "--dir", &p("keys")]);
    let release = |version: &str| {
        std::fs::write(
            p(&format!("bin-{version}")),
            format!("agent binary {version}"),
        )
        .unwrap();
        let out = p(&format!("agent-{version}.release"));
        ringfence(&[
            "release",
            "build",
            "--binary",
            &p(&format!("bin-{version}")),
            "--version",
            version,
            "--keys",
            &p("keys"),
            "-o",
            &out,
        ]);
        out
    };
    let (r020, r030, r040, r050) = (
        release("0.2.0"),
        release("0.3.0"),
        release("0.4.0-crash"),
        release("0.5.0"),
    );
    std::fs::write(p("plan.toml"), PLAN).unwrap();
    let plan = p("plan.toml");
    let root = Arc::new(
        ringfence_content::KeySet::load(&dir.join("keys"))
            .unwrap()
            .trusted_root()
            .clone(),
    );
    let console = start_console(dir, db);
    console.cli(&[
        "rollout",
        "publish-release",
        "--release",
        &r020,
        "--baseline",
    ]);
    // The console keeps its files in the test's directory (with PostgreSQL: in --data), never
    // in the working directory.
    let content_dir = if db.starts_with("sqlite:") {
        dir.join("content")
    } else {
        dir.join("data").join("content")
    };
    assert!(
        content_dir.join("releases").join("1.release").is_file(),
        "no release file in {}",
        content_dir.display()
    );
    std::fs::write(p("content-1"), "content v1").unwrap();
    std::fs::write(p("content-2"), "content v2").unwrap();
    console.cli(&[
        "rollout",
        "publish",
        "--version",
        "1",
        "--bundle",
        &p("content-1"),
        "--baseline",
    ]);

    // The fleet.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let trust = Trust::Pinned(vec![ringfence_wire::CaPin::parse(&console.pin).unwrap()]);
    let client = Client::new(&console.url, &trust).unwrap();
    let token: serde_json::Value = rt
        .block_on(client.post_json(
            "/api/v1/enrollment-tokens",
            Some(&console.token),
            &serde_json::json!({"label": "sim", "max_uses": AGENTS}),
        ))
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let fleet: Fleet = Arc::new(Mutex::new(vec![Running::default(); AGENTS]));
    for i in 0..AGENTS {
        rt.spawn(agent(
            i,
            client.clone(),
            token.clone(),
            Arc::clone(&root),
            Arc::clone(&fleet),
        ));
    }
    wait_until("the fleet on content v1", || {
        count(&fleet, |r| r.content == 1) == AGENTS
    });
    // Let the control groups report for a few minutes before the first rollout.
    std::thread::sleep(Duration::from_secs(3));

    // 1. A healthy release, ring by ring.
    console.cli(&[
        "rollout",
        "start",
        "--agent-version",
        "0.3.0",
        "--release",
        &r030,
        "--plan",
        &plan,
    ]);
    let done = console.wait_for("agent", &["completed", "rolled_back", "paused", "halted"]);
    assert_eq!(done["state"], "completed", "{done:#}");
    assert_eq!(done["rings"].as_array().unwrap().len(), 2);
    wait_until("every agent on 0.3.0", || {
        count(&fleet, |r| r.release == "0.3.0") == AGENTS
    });

    // 2. A crashing release: halted in the canary and rolled back to a re-offer of 0.3.0.
    console.cli(&[
        "rollout",
        "start",
        "--agent-version",
        "0.4.0-crash",
        "--release",
        &r040,
        "--plan",
        &plan,
    ]);
    let v = console.wait_for("agent", &["rolled_back", "completed", "paused"]);
    assert_eq!(v["state"], "rolled_back", "{v:#}");
    assert_eq!(v["current_ring"], 0, "{v:#}");
    assert_eq!(v["rollback_label"], "0.3.0", "{v:#}");
    // The reason names the release and what the agents' supervisors did.
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("fell back from agent release 0.4.0-crash (#3) to their previous release"),
        "{v:#}"
    );
    let fell_back = count(&fleet, |r| r.fell_back);
    assert!((2..=AGENTS / 10 + 1).contains(&fell_back), "{fell_back}");
    let human = console.cli(&["rollout", "status", "--kind", "agent"]);
    assert!(
        human.contains("rolled back with agent release 0.3.0"),
        "{human}"
    );
    assert!(human.contains("fell back by themselves"), "{human}");
    assert_eq!(count(&fleet, |r| r.release == "0.3.0"), AGENTS);

    // 3. An agent rollout halted by an operator; a content rollout goes through meanwhile.
    console.cli(&[
        "rollout",
        "start",
        "--agent-version",
        "0.5.0",
        "--release",
        &r050,
        "--plan",
        &plan,
    ]);
    wait_until("the 0.5.0 canary", || {
        count(&fleet, |r| r.release == "0.5.0") > 0
    });
    // The engine may act between the CLI's look and its halt (409: look again and retry).
    for attempt in 0.. {
        let out = Command::new(BIN)
            .args(["rollout", "halt", "--kind", "agent", "--reason", "hold it"])
            .args(["--console", &console.url])
            .env("RINGFENCE_TOKEN", &console.token)
            .args(["--ca-sha256", &console.pin])
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        // The engine may also have halted it first (members it judged missing on a busy
        // machine): halted either way, which is what this step needs.
        if err.contains("already halted") {
            break;
        }
        assert!(attempt < 5 && err.contains("changed meanwhile"), "{err}");
    }
    let halted = console.status("agent");
    assert_eq!(halted["state"], "halted", "{halted:#}");
    let canary = halted["rings"][0]["members"].as_i64().unwrap() as usize;
    console.cli(&[
        "rollout",
        "start",
        "--version",
        "2",
        "--bundle",
        &p("content-2"),
        "--plan",
        &plan,
    ]);
    let content = console.wait_for("content", &["completed", "rolled_back", "paused", "halted"]);
    assert_eq!(content["state"], "completed", "{content:#}");
    assert_eq!(content["kind"], "content");
    wait_until("every agent on content v2", || {
        count(&fleet, |r| r.content == 2) == AGENTS
    });
    // The agent rollout stayed halted, its canary on 0.5.0, everyone else on 0.3.0.
    assert_eq!(console.status("agent")["state"], "halted");
    let on: HashMap<String, usize> =
        fleet
            .lock()
            .unwrap()
            .iter()
            .fold(HashMap::new(), |mut m, r| {
                *m.entry(r.release.clone()).or_default() += 1;
                m
            });
    // Only canary members took 0.5.0 (those that fetched it before the halt), nobody else
    // moved: a halted rollout offers nothing more.
    let on_new = on.get("0.5.0").copied().unwrap_or(0);
    assert!((1..=canary).contains(&on_new), "{on:?} (canary {canary})");
    assert_eq!(
        on.get("0.3.0").copied().unwrap_or(0),
        AGENTS - on_new,
        "{on:?}"
    );
    rt.shutdown_background();
}
