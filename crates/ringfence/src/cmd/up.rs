//! `ringfence up`: the one command that runs the product on one machine: a data dir with
//! content keys, the console on embedded SQLite, an operator login and API token, the
//! dashboard URL, and a local agent enrolled to the console. Ctrl-C stops everything.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ringfence_console::SystemClock;
use ringfence_console::agents::{NewEnrollmentToken, mint_enrollment_token};

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
}

/// The local agent `up` starts, if it could.
#[derive(Debug)]
pub enum LocalAgent {
    /// Not started, and why.
    NotStarted(String),
}

impl LocalAgent {
    fn describe(&self) -> String {
        match self {
            LocalAgent::NotStarted(why) => format!("not started: {why}"),
        }
    }

    fn stop(self) {}
}

/// LEAD: start the local agent here.
///
/// Once the agent can enroll (`ringfence agent run --mode auto --console URL --enroll-token T`,
/// or its library equivalent), start it in `auto` mode enrolled to `console_url` with
/// `enroll_token` (valid for one enrollment, ten minutes), keeping its state under
/// `data_dir/agent`, and return a handle whose `stop` ends it on Ctrl-C. The agent side of the
/// protocol is `ringfence_wire`: `Client::enroll`, then `Client::check_in` every
/// `next_checkin_ms` (+ jitter) with health counters since the last acknowledged check-in; the
/// response's `content` is the version the agent may run now, fetched from its `url`.
fn start_local_agent(console_url: &str, enroll_token: &str, data_dir: &Path) -> LocalAgent {
    let _ = (console_url, enroll_token, data_dir);
    LocalAgent::NotStarted(
        "the agent's console enrollment is not wired yet; enroll one by hand with the token above"
            .into(),
    )
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
            60_000,
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
        let enroll = mint_enrollment_token(
            &state,
            "ringfence up",
            &NewEnrollmentToken {
                label: "local agent".into(),
                max_uses: 1,
                ttl_ms: Some(10 * 60_000),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating an enrollment token: {e}"))?;
        let running = ringfence_console::serve(state, args.listen, Duration::from_secs(5))
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let url = running.url();
        let env_file = data.join("console.env");
        write_private(
            &env_file,
            &format!("RINGFENCE_CONSOLE={url}\nRINGFENCE_TOKEN={token}\n"),
        )?;
        let agent = start_local_agent(&url, &enroll.token, &data);
        println!("Ringfence is up (data in {}).", data.display());
        println!("  dashboard:   {url}/");
        println!("  sign in:     {url}/login/once?token={once}   (one-time link, 15 minutes)");
        println!("  login:       admin / {password}");
        println!("  API token:   {token}");
        println!(
            "               (`set -a; . {}; set +a` and `ringfence rollout status` uses it)",
            env_file.display()
        );
        println!("  enrollment:  {} (one agent, 10 minutes)", enroll.token);
        println!("  local agent: {}", agent.describe());
        println!("Ctrl-C to stop.");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        eprintln!("stopping");
        agent.stop();
        let state = running.state.clone();
        running.shutdown().await.context("stopping the console")?;
        state.db.close().await;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}
