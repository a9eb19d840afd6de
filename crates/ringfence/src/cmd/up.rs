//! `ringfence up`: the one command that runs the product on one machine: a data dir with
//! content keys, the console on embedded SQLite over HTTPS (its own CA, made in the data dir at
//! the first start), an operator login and API token, the dashboard URL, and a local agent
//! that pins the console's CA and enrolls to it. Ctrl-C stops everything.
//!
//! One `up` per data directory: it holds a lock on `up.lock` (pid and command line inside) for
//! as long as it runs, and a second one is refused naming the first. The data directory is
//! 0700; the admin login (`admin.env`) and `console.env` are 0600 and the login is kept across
//! restarts (`--reset-admin` rotates it and revokes the old token). The agent's log is
//! appended to, never truncated.

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
use crate::cmd::console::{build_state, console_identity, new_password};
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
    /// Make a new admin password and API token, revoking the old token and sessions (by
    /// default a restart keeps the login it made the first time).
    #[arg(long)]
    reset_admin: bool,
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

/// The console the local agent enrolls to, and what it pins.
struct LocalConsole<'a> {
    url: &'a str,
    ca_pin: String,
    order_key: String,
}

/// Start `ringfence agent run --mode auto` enrolled to the console, its state, content,
/// events and log under `data_dir/agent`. The token goes in the environment, not the command
/// line. Its own process group, so Ctrl-C reaches it through `stop`; and it stops by itself
/// should `up` die without a chance to stop it.
fn start_local_agent(
    console: &LocalConsole<'_>,
    enroll_token: &str,
    data_dir: &Path,
) -> LocalAgent {
    if let Some(why) = unprivileged() {
        return LocalAgent::NotStarted(why);
    }
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
        let log_file = open_log(&log)?;
        let program = std::env::current_exe().context("finding this executable")?;
        let child = Command::new(program)
            .args(["agent", "run", "--config"])
            .arg(&config)
            .arg("--console")
            .arg(console.url)
            .arg("--ca-sha256")
            .arg(&console.ca_pin)
            .arg("--order-key")
            .arg(&console.order_key)
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

/// Why a local agent would refuse to run here: this process is not root and has none of the
/// capabilities the sensors need (with some, the agent itself says what it lacks).
fn unprivileged() -> Option<String> {
    use ringfence_sensor::privilege::{Capability, Privileges};
    let me = Privileges::current();
    (!me.is_root() && me.missing().len() == Capability::ALL.len()).then(|| {
        format!(
            "this `up` runs as {}, and the agent would see nothing without root; run as root \
             (sudo ringfence up) for a local agent",
            me.who()
        )
    })
}

/// Write a secret file: 0600, whatever mode an older copy had.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private (0600)", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Open a log to append to (a restart adds to the history, never truncates it), with a line
/// marking where this run starts.
fn open_log(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(
        f,
        "---- ringfence up (pid {}) starts the local agent ----",
        std::process::id()
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(f)
}

/// The data directory, created if needed, and made 0700 (it holds the keys, the database and
/// the login).
fn private_data_dir(data: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data)
        .with_context(|| format!("creating {}", data.display()))
        .map_err(Failure::environment)?;
    let mode = std::fs::metadata(data)
        .with_context(|| format!("reading {}", data.display()))
        .map_err(Failure::environment)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (0700)", data.display()))
            .map_err(Failure::environment)?;
        eprintln!(
            "{}: was mode {:o}, now 0700 (it holds the keys, database and login)",
            data.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// The lock that keeps a data directory to one `up`: held (flock) for as long as this
/// process lives, released by the kernel however it ends.
type DataLock = nix::fcntl::Flock<std::fs::File>;

/// Take the data directory's lock, or refuse naming the `up` that holds it (its pid and
/// command line, from the lock file and `/proc`).
fn lock_data_dir(data: &Path) -> Result<DataLock, Failure> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = data.join("up.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
        .map_err(Failure::environment)?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let cmdline: Vec<String> = std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            lock.set_len(0)
                .and_then(|()| lock.rewind())
                .and_then(|()| write!(lock, "{}\n{}\n", std::process::id(), cmdline.join(" ")))
                .with_context(|| format!("writing {}", path.display()))
                .map_err(Failure::environment)?;
            Ok(lock)
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let _ = Read::take(&mut file, 64 * 1024).read_to_string(&mut text);
            Err(Failure::environment(anyhow::anyhow!(
                "{} is in use by another `ringfence up` ({}); stop that one first, or give \
                 this one another --data",
                data.display(),
                describe_holder(&text)
            )))
        }
        Err((_, errno)) => Err(Failure::environment(anyhow::anyhow!(
            "locking {}: {errno}",
            path.display()
        ))),
    }
}

/// "pid N: COMMAND LINE" from a lock file's text, the command line read from `/proc` when the
/// process is there.
fn describe_holder(lock_text: &str) -> String {
    let mut lines = lock_text.lines();
    let Some(pid) = lines.next().and_then(|l| l.trim().parse::<u32>().ok()) else {
        return "its pid is not recorded yet".to_owned();
    };
    let from_proc = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|c| !c.is_empty());
    let cmdline = from_proc.or_else(|| lines.next().map(str::to_owned));
    match cmdline {
        Some(c) => format!("pid {pid}: {c}"),
        None => format!("pid {pid}"),
    }
}

/// The operator login `up` prints: kept in `admin.env` (0600) across restarts.
struct AdminLogin {
    password: String,
    token: String,
    /// How it came about, for the printed line.
    origin: &'static str,
}

const ADMIN: &str = "admin";

/// The `admin.env` text for a login.
fn admin_env(password: &str, token: &str) -> String {
    format!(
        "# The console's operator login made by `ringfence up`; kept across restarts.\n\
         # `ringfence up --reset-admin` makes a new one and revokes this token.\n\
         RINGFENCE_ADMIN_USER={ADMIN}\nRINGFENCE_ADMIN_PASSWORD={password}\nRINGFENCE_TOKEN={token}\n"
    )
}

/// The password and token in an `admin.env` text, if both are there.
fn parse_admin_env(text: &str) -> Option<(String, String)> {
    let value = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    Some((
        value("RINGFENCE_ADMIN_PASSWORD")?,
        value("RINGFENCE_TOKEN")?,
    ))
}

/// The admin login: the one kept in `data/admin.env` when the database still takes it (and
/// `reset` is not asked), else a new one, the old token and sessions revoked, written there.
async fn admin_login(
    state: &ringfence_console::AppState,
    data: &Path,
    reset: bool,
) -> anyhow::Result<AdminLogin> {
    use ringfence_console::auth;
    let path = data.join("admin.env");
    let kept = if reset {
        None
    } else {
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| parse_admin_env(&t))
    };
    let mut origin = if reset {
        "new: --reset-admin revoked the old one"
    } else {
        "new"
    };
    if let Some((password, token)) = kept {
        let password_ok = auth::check_login(state, ADMIN, &password).await.is_ok();
        let token_ok = auth::token_operator(state, &token)
            .await
            .map_err(|e| anyhow::anyhow!("checking the kept API token: {e}"))?
            .is_some_and(|op| op == ADMIN);
        if password_ok && token_ok {
            return Ok(AdminLogin {
                password,
                token,
                origin: "kept from the last run; --reset-admin makes a new one",
            });
        }
        origin = "new: the database no longer takes the login kept in admin.env";
    }
    auth::revoke_operator_secrets(state, ADMIN)
        .await
        .map_err(|e| anyhow::anyhow!("revoking the old admin token: {e}"))?;
    let password = new_password()?;
    let token = auth::create_operator(state, ADMIN, &password)
        .await
        .map_err(|e| anyhow::anyhow!("creating the operator: {e}"))?;
    write_private(&path, &admin_env(&password, &token))?;
    Ok(AdminLogin {
        password,
        token,
        origin,
    })
}

/// The console's database, made private (0600) before SQLite opens it: it holds the password
/// and token hashes, and SQLite gives its journal files the database's mode.
fn private_database(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private (0600)", path.display()))
}

pub fn run(args: Args) -> CmdResult {
    let data = args.data;
    private_data_dir(&data)?;
    // Held until `up` returns.
    let _lock = lock_data_dir(&data)?;
    private_database(&data.join("console.db")).map_err(Failure::environment)?;
    crate::cmd::agent::init_tracing();
    let keys = data.join("keys");
    if !keys.exists() {
        ringfence_content::init_keys(
            &keys,
            &ringfence_content::KeysInitOptions::new(ringfence_content::UnixTime::now()),
        )
        .with_context(|| format!("creating content keys in {}", keys.display()))?;
    }
    let db_url = format!("sqlite:{}", data.join("console.db").display());
    let identity = console_identity(&data, args.listen, None, &[], false)?;
    let ca_pin = identity
        .ca_pin
        .map(|p| p.to_string())
        .ok_or_else(|| Failure::environment(anyhow::anyhow!("the console has no CA")))?;
    let order_key = identity.order_key.pin().to_string();
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
            &identity,
        )
        .await?;
        let login = admin_login(&state, &data, args.reset_admin).await?;
        let token = &login.token;
        let once = ringfence_console::auth::create_session(&state, ADMIN, 15 * 60_000, true)
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
        let tls = identity
            .tls
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the console has no TLS configuration"))?;
        let running = ringfence_console::serve_tls(state, args.listen, Duration::from_secs(5), tls)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let url = running.url();
        let env_file = data.join("console.env");
        write_private(
            &env_file,
            &format!(
                "RINGFENCE_CONSOLE={url}\nRINGFENCE_TOKEN={token}\nRINGFENCE_CA_SHA256={ca_pin}\n"
            ),
        )?;
        let agent = if args.no_agent {
            LocalAgent::NotStarted("--no-agent".into())
        } else {
            let console = LocalConsole {
                url: &url,
                ca_pin: ca_pin.clone(),
                order_key: order_key.clone(),
            };
            start_local_agent(&console, &local.token, &data)
        };
        // Handlers first: whoever reads the lines below may stop `up` at once.
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        println!("Ringfence is up (data in {}).", data.display());
        println!("  dashboard:   {url}/   (the console's own CA: {ca_pin})");
        println!("  sign in:     {url}/login/once?token={once}   (one-time link, 15 minutes)");
        println!(
            "  login:       {ADMIN} / {}   ({})",
            login.password, login.origin
        );
        println!("  API token:   {token}");
        println!(
            "               (`set -a; . {}; set +a` and `ringfence rollout status` uses it)",
            env_file.display()
        );
        println!(
            "  enrollment:  {} (one more agent, 10 minutes: `RINGFENCE_ENROLL_TOKEN=... ringfence \
             agent run --console {url} --ca-sha256 {ca_pin} --content-dir DIR --root {}/keys`)",
            enroll.token,
            data.display()
        );
        println!("  order key:   {order_key}   (agents that may take response orders pin it)");
        println!("  local agent: {}", agent.describe());
        println!("Ctrl-C to stop.");
        tokio::select! {
            _ = int.recv() => {}
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
