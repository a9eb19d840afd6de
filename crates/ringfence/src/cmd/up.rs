//! `ringfence up`: the one command that runs the product on one machine: a data dir with
//! content keys, the console on embedded SQLite, an operator login and API token, the
//! dashboard URL, and a local agent enrolled to the console. Ctrl-C stops everything.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ringfence_console::SystemClock;
use ringfence_console::agents::{NewEnrollmentToken, mint_enrollment_token};

use crate::cmd::agent::DIE_WITH_PARENT_ENV;
use crate::cmd::console::{build_state, new_password};
use crate::{CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the database, content, keys and the operator's env file live.
    #[arg(long, env = "RINGFENCE_DATA", default_value = "ringfence-data")]
    data: PathBuf,
    /// Address for the console and dashboard.
    #[arg(long, env = "RINGFENCE_LISTEN", default_value = "127.0.0.1:8650")]
    listen: SocketAddr,
    /// Seconds between agent check-ins (jittered by a tenth).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3600))]
    checkin_secs: u32,
    /// Do not start the local agent (the console and dashboard only).
    #[arg(long)]
    no_agent: bool,
}

/// The agent configuration `up` writes on first run; edit it and run `up` again.
const AGENT_TOML: &str = "\
# The local agent `ringfence up` starts (`ringfence agent run --config` this file).
# The console URL, content directory and trusted root are passed on the command line.

[agent]
mode = \"auto\"          # eBPF where the kernel allows it, driverless otherwise

[fleet]
# region = \"eu-west\"
# environment = \"dev\"
";

/// The local agent `up` runs: `ringfence agent run` (supervisor and worker) as a child process.
#[derive(Debug)]
pub enum LocalAgent {
    Running {
        child: Child,
        log: PathBuf,
    },
    /// Not started, and why.
    NotStarted(String),
}

impl LocalAgent {
    fn describe(&self) -> String {
        match self {
            LocalAgent::Running { child, log } => format!(
                "running (pid {}, mode auto, enrolled to this console; log {})",
                child.id(),
                log.display()
            ),
            LocalAgent::NotStarted(why) => format!("not started: {why}"),
        }
    }

    /// SIGTERM, then wait; SIGKILL if it has not stopped in time.
    fn stop(self) {
        let LocalAgent::Running { mut child, .. } = self else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("the local agent did not stop in 10 s; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Start `ringfence agent run --mode auto` enrolled to `console_url`, its state, content,
/// events and log under `data_dir/agent`. The token goes in the environment, not the command
/// line. Its own process group, so Ctrl-C reaches it through `stop`; and it stops by itself
/// should `up` die without a chance to stop it.
fn start_local_agent(console_url: &str, enroll_token: &str, data_dir: &Path) -> LocalAgent {
    let start = || -> anyhow::Result<LocalAgent> {
        let dir = data_dir.join("agent");
        let content = dir.join("content");
        std::fs::create_dir_all(&content)
            .with_context(|| format!("creating {}", content.display()))?;
        let config = data_dir.join("agent.toml");
        if !config.exists() {
            std::fs::write(&config, AGENT_TOML)
                .with_context(|| format!("writing {}", config.display()))?;
        }
        let log = dir.join("agent.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let program = std::env::current_exe().context("finding this executable")?;
        let child = Command::new(program)
            .args(["agent", "run", "--config"])
            .arg(&config)
            .arg("--console")
            .arg(console_url)
            .arg("--content-dir")
            .arg(&content)
            .arg("--root")
            .arg(data_dir.join("keys"))
            .arg("--output")
            .arg(format!("jsonl:{}", dir.join("events.jsonl").display()))
            .env("RINGFENCE_ENROLL_TOKEN", enroll_token)
            .env(DIE_WITH_PARENT_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .context("starting `ringfence agent run`")?;
        Ok(LocalAgent::Running { child, log })
    };
    start().unwrap_or_else(|e| LocalAgent::NotStarted(format!("{e:#}")))
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

pub fn run(args: Args) -> CmdResult {
    let data = args.data;
    std::fs::create_dir_all(&data)
        .with_context(|| format!("creating {}", data.display()))
        .map_err(Failure::environment)?;
    let keys = data.join("keys");
    if !keys.exists() {
        ringfence_content::init_keys(
            &keys,
            &ringfence_content::KeysInitOptions::new(ringfence_content::UnixTime::now()),
        )
        .with_context(|| format!("creating content keys in {}", keys.display()))?;
    }
    let db_url = format!("sqlite:{}", data.join("console.db").display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let state = build_state(
            &db_url,
            data.join("content"),
            Some(keys),
            i64::from(args.checkin_secs) * 1000,
            Arc::new(SystemClock),
        )
        .await?;
        let password = new_password()?;
        let token = ringfence_console::auth::create_operator(&state, "admin", &password)
            .await
            .map_err(|e| anyhow::anyhow!("creating the operator: {e}"))?;
        let once = ringfence_console::auth::create_session(&state, "admin", 15 * 60_000, true)
            .await
            .map_err(|e| anyhow::anyhow!("creating a sign-in link: {e}"))?;
        let mint = |label: &'static str| {
            let state = state.clone();
            async move {
                mint_enrollment_token(
                    &state,
                    "ringfence up",
                    &NewEnrollmentToken {
                        label: label.into(),
                        max_uses: 1,
                        ttl_ms: Some(10 * 60_000),
                        tags: None,
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("creating an enrollment token: {e}"))
            }
        };
        let local = mint("local agent (ringfence up)").await?;
        let enroll = mint("another agent").await?;
        let running = ringfence_console::serve(state, args.listen, Duration::from_secs(5))
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let url = running.url();
        let env_file = data.join("console.env");
        write_private(
            &env_file,
            &format!("RINGFENCE_CONSOLE={url}\nRINGFENCE_TOKEN={token}\n"),
        )?;
        let agent = if args.no_agent {
            LocalAgent::NotStarted("--no-agent".into())
        } else {
            start_local_agent(&url, &local.token, &data)
        };
        println!("Ringfence is up (data in {}).", data.display());
        println!("  dashboard:   {url}/");
        println!("  sign in:     {url}/login/once?token={once}   (one-time link, 15 minutes)");
        println!("  login:       admin / {password}");
        println!("  API token:   {token}");
        println!(
            "               (`set -a; . {}; set +a` and `ringfence rollout status` uses it)",
            env_file.display()
        );
        println!(
            "  enrollment:  {} (one more agent, 10 minutes: `ringfence agent run --console {url} \
             --enroll-token ... --content-dir DIR --root {}/keys`)",
            enroll.token,
            data.display()
        );
        println!("  local agent: {}", agent.describe());
        println!("Ctrl-C to stop.");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
        eprintln!("stopping");
        agent.stop();
        let state = running.state.clone();
        running.shutdown().await.context("stopping the console")?;
        state.db.close().await;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}
