//! `ringfence agent run`: the daemon in the foreground, until SIGINT or SIGTERM.
//!
//! `agent run` is a small supervisor ([`ringfence_agent::content::Supervisor`]) that starts
//! the worker (this binary, hidden `agent worker` with the same flags) and restarts it on a
//! crash, rolling content back after a crash loop. `--no-supervisor` runs the worker in this
//! process (tests, benchmarks). With a content directory the worker runs the content manager;
//! with `--console` (and an enrollment token the first time) it also runs the fleet link.
//!
//! It refuses to run blind (exit 4, the reason on stderr): when no kernel event source opens,
//! when a source is refused for want of privileges (not root, or missing capabilities), and
//! (exit 1) when a content directory has no trust root to check bundles against.
//! `--allow-partial` runs it anyway; every part that did not start is then a health finding
//! in the event stream, as is a source that failed while others run, and a content store
//! that cannot be opened (the built-in pack runs).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use ringfence_agent::content::heartbeat::Heartbeat;
use ringfence_agent::content::link_keeper;
use ringfence_agent::content::manager::{ManagerError, current_root};
use ringfence_agent::content::sd_notify::SdNotify;
use ringfence_agent::content::supervisor::{
    AGENT_VERSION_ENV, CRASHES_ENV, HANG_LIMIT, PREVIOUS_WORKER_ENV, REFUSED_EXIT_CODES,
    ROLLBACK_ENV, STARTUP_GRACE, SUPERVISED_ENV, TRIAL_HEALTHY, die_with_supervisor,
};
use ringfence_agent::content::trial::VERSION_FALLBACK_ENV;
use ringfence_agent::content::{
    CompiledContent, ContentManager, ContentSection, ManagerOptions, SharedContent, StaticDetector,
    Supervisor, SupervisorOptions, engine_for, sigma,
};
use ringfence_agent::fleet::{FleetLink, FleetStart, SupervisorCount, Telemetry};
use ringfence_agent::protect::{self, ProtectOptions};
use ringfence_agent::respond::ResponseStage;
use ringfence_agent::tamper::{RestartNotice, TamperDetector, TamperOptions};
use ringfence_agent::{Agent, Config, ModeChoice, OutputSpec};
use ringfence_event::{Mode, SourceKind};
use ringfence_sensor::StopSignal;

use crate::{CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Run the agent: one ECS JSON line per event to the outputs, health on stderr.
    Run(RunArgs),
    /// The supervised worker process (started by `agent run`).
    #[command(hide = true)]
    Worker(RunArgs),
    /// Switch the running agent's self-protection off with a signed maintenance token
    /// (`ringfence content maintenance-token`), so it can be stopped, upgraded or removed.
    Disarm(DisarmArgs),
    /// Enroll this host with a fleet console once: trade an enrollment token (from a file or
    /// `RINGFENCE_ENROLL_TOKEN`, never the command line) for the agent's own identity, kept
    /// with the console URL and CA pins in the state directory. `agent run` then needs no
    /// console flags.
    Enroll(EnrollArgs),
}

#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// The console (`https://host:port`).
    #[arg(long)]
    pub console: String,
    /// The console CA's SHA-256 pin; repeat while a CA rotates. Or `RINGFENCE_CA_SHA256`.
    #[arg(long = "ca-sha256", env = "RINGFENCE_CA_SHA256", value_delimiter = ',')]
    pub ca_sha256: Vec<String>,
    /// Or a PEM file with the console's CA certificate.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// The file holding the enrollment token (or `RINGFENCE_ENROLL_TOKEN`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The agent's configuration (tags, host name, content directory).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The content directory `agent run` will use (its state directory keeps the identity).
    #[arg(long)]
    pub content_dir: Option<PathBuf>,
    /// Plain `http://` to a console on loopback (tests only).
    #[arg(long, hide = true)]
    pub plain_http: bool,
}

#[derive(Debug, clap::Args)]
pub struct DisarmArgs {
    /// The token file.
    #[arg(long)]
    pub token: PathBuf,
    /// The agent's configuration (for `protection.maintenance_token`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// How long to wait for the agent to accept the token.
    #[arg(long, default_value_t = 5)]
    pub wait_secs: u64,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Sensor mode; `auto` prefers eBPF and falls back to driverless, saying why.
    #[arg(long, value_parser = ["auto", "ebpf", "driverless"])]
    pub mode: Option<String>,
    /// TOML configuration file (paths to watch, outputs, limits).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// `stdout` or `jsonl:PATH`; repeat for several. Replaces the configured outputs.
    #[arg(long)]
    pub output: Vec<String>,
    /// How `stdout` prints: `json` (an ECS line per event and finding) or `text` (one
    /// readable line per finding, from the rule's `output` template when it has one).
    #[arg(long, value_parser = ["json", "text"], default_value = "json")]
    pub format: String,
    /// Directory watched for signed content bundles (`*.bundle`); `content.dir` in the config.
    #[arg(long)]
    pub content_dir: Option<PathBuf>,
    /// The agent's content store; `<content-dir>/.state` by default.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Trusted root for content: a keys directory or a `root.json`.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Fleet console to enroll with and check in to (`https://host:port`); `fleet.console`.
    /// Needs a content directory: offered content is delivered there.
    #[arg(long)]
    pub console: Option<String>,
    /// The console CA's SHA-256 pin (`console serve` prints it); repeat while a CA rotates.
    /// Adds to `fleet.ca_sha256`. Also `RINGFENCE_CA_SHA256` (comma-separated).
    #[arg(long = "ca-sha256", env = "RINGFENCE_CA_SHA256", value_delimiter = ',')]
    pub ca_sha256: Vec<String>,
    /// The console's order key (`ed25519:…`); `fleet.order_key`. Without it no order runs.
    #[arg(long, env = "RINGFENCE_ORDER_KEY")]
    pub order_key: Option<String>,
    /// A file holding the enrollment token, used once while the agent has no credential
    /// (never on the command line, where `ps` shows it). Or `RINGFENCE_ENROLL_TOKEN`.
    #[arg(long)]
    pub enroll_token_file: Option<PathBuf>,
    /// Plain `http://` to a console on loopback (tests and drills only).
    #[arg(long, hide = true)]
    pub plain_http: bool,
    /// Run the worker in this process, without the supervisor (tests and benchmarks).
    #[arg(long)]
    pub no_supervisor: bool,
    /// Agent versions (`/var/lib/ringfence/versions` in the package's unit): the worker runs
    /// the current version's binary, and a new version that fails its trial is replaced by
    /// the previous one.
    #[arg(long)]
    pub versions_dir: Option<PathBuf>,
    /// Run even when the agent would be blind or half-blind (no kernel event source, sources
    /// refused for want of privileges, content without a trust root); each missing part is
    /// reported as a health finding.
    #[arg(long)]
    pub allow_partial: bool,
}

/// Set by a parent that starts the agent as its child (`ringfence up`): the agent stops when
/// that parent dies, however it dies.
pub const DIE_WITH_PARENT_ENV: &str = "RINGFENCE_DIE_WITH_PARENT";

/// Log to stderr at info level (stdout carries events).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub fn run(args: Args) -> CmdResult {
    match args.command {
        AgentCommand::Run(a) if a.no_supervisor => worker(a),
        AgentCommand::Run(a) => supervise(&a),
        AgentCommand::Worker(a) => worker(a),
        AgentCommand::Disarm(a) => disarm(&a),
        AgentCommand::Enroll(a) => enroll(&a),
    }
}

/// Put the token where the agent looks for it and wait for the agent to consume it (it deletes
/// an accepted token and leaves a refused one, with the reason in its log and event stream).
fn disarm(args: &DisarmArgs) -> CmdResult {
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(Failure::refused)?,
        None => Config::default(),
    };
    let token = std::fs::read(&args.token)
        .with_context(|| format!("reading {}", args.token.display()))
        .map_err(Failure::refused)?;
    let drop_at = &config.protection.maintenance_token;
    if let Some(dir) = drop_at.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {}", dir.display()))
            .map_err(Failure::environment)?;
    }
    std::fs::write(drop_at, &token)
        .with_context(|| format!("writing {}", drop_at.display()))
        .map_err(Failure::environment)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(args.wait_secs);
    while std::time::Instant::now() < deadline {
        if !drop_at.exists() {
            super::print_line("accepted: the agent's self-protection is off until it restarts")
                .context("writing the result")?;
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Failure::refused(anyhow!(
        "the token at {} was not accepted within {} s: the agent refused it (its log and event \
         stream say why) or is not running with self-protection",
        drop_at.display(),
        args.wait_secs
    )))
}

/// `agent enroll`: enroll once and keep the identity where `agent run` finds it.
fn enroll(args: &EnrollArgs) -> CmdResult {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(Failure::refused)?,
        None => Config::default(),
    };
    if let Some(d) = &args.content_dir {
        config.content.dir = Some(d.clone());
    }
    let state_dir = config.content.state_dir().ok_or_else(|| {
        Failure::refused(anyhow!(
            "no content directory (--content-dir or content.dir): the identity is kept in its \
             state directory"
        ))
    })?;
    config.fleet.console = Some(args.console.clone());
    config.fleet.ca_sha256 = args.ca_sha256.clone();
    config.fleet.ca_file = args.ca_file.clone();
    config.fleet.plain_http = args.plain_http;
    let trust = config
        .fleet
        .trust()
        .map_err(|(key, e)| Failure::refused(anyhow!("fleet.{key}: {e}")))?;
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the enrollment token in {}", path.display()))
            .map_err(Failure::refused)?,
        None => std::env::var("RINGFENCE_ENROLL_TOKEN").map_err(|_| Failure {
            code: 2,
            error: anyhow!("--token-file F or RINGFENCE_ENROLL_TOKEN: the enrollment token"),
        })?,
    };
    let client = ringfence_wire::Client::new(&args.console, &trust)
        .map_err(|e| Failure::refused(anyhow!("--console: {e}")))?;
    let tags = config
        .fleet
        .tags()
        .map_err(|e| Failure::refused(anyhow!("fleet.tags: {e}")))?;
    let host = config
        .agent
        .host_name
        .clone()
        .or_else(ringfence_agent::kernel_host_name)
        .unwrap_or_else(|| "unknown".into());
    let lossy = |s: &str| {
        ringfence_agent::fleet::label_lossy(s).map_err(|e| Failure::refused(anyhow!("{e}")))
    };
    ringfence_wire::tls::create_private_dir(&state_dir).map_err(Failure::environment)?;
    let who = ringfence_agent::fleet::EnrollAs {
        console: args.console.clone(),
        ca_pins: trust.pins(),
        token: token.trim().to_owned(),
        hostname: lossy(&host)?,
        agent_version: lossy(env!("CARGO_PKG_VERSION"))?,
        tags,
        state_file: state_dir.join(ringfence_agent::fleet::enrollment::FILE_NAME),
        crashes_reported: None,
    };
    let started = std::time::Instant::now();
    let enrollment = super::console_api::block_on(async move {
        ringfence_agent::fleet::enroll(&client, who)
            .await
            .map_err(|e| Failure::refused(anyhow!("{e}")))
    })?;
    super::print_line(&format!(
        "enrolled as agent {} with {} in {} ms; identity kept in {} (0600). The token is not \
         kept: delete its file. `ringfence agent run --content-dir ...` now checks in with no \
         console flags.",
        enrollment.agent_id,
        args.console,
        started.elapsed().as_millis(),
        state_dir.display()
    ))
    .context("writing the result")?;
    Ok(())
}

/// The console and pins a host enrolled with (`agent enroll`), when the configuration names
/// no console. An enrollment that cannot be read is refused, naming the file: running on
/// without it would leave an enrolled host quietly out of its fleet.
fn enrolled_console(config: &mut Config) -> Result<(), Failure> {
    if config.fleet.console.is_some() {
        return Ok(());
    }
    let Some(state_dir) = config.content.state_dir() else {
        return Ok(());
    };
    let file = state_dir.join(ringfence_agent::fleet::enrollment::FILE_NAME);
    let enrollment = ringfence_agent::fleet::Enrollment::load(&file).map_err(|e| {
        Failure::refused(anyhow!(
            "the host's enrollment is unreadable ({e}); enroll again with `ringfence agent \
             enroll`, or name the console with --console"
        ))
    })?;
    if let Some(e) = enrollment {
        config.fleet.console = Some(e.console.clone());
        if config.fleet.ca_sha256.is_empty() && config.fleet.ca_file.is_none() {
            config.fleet.ca_sha256 = e.ca_pins.iter().map(|p| p.to_string()).collect();
            config.fleet.plain_http = e.ca_pins.is_empty() && e.console.starts_with("http://");
        }
    }
    Ok(())
}

/// The configuration with the command-line flags applied.
fn config(args: &RunArgs) -> Result<Config, Failure> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(Failure::refused)?,
        None => Config::default(),
    };
    if !args.output.is_empty() {
        for o in &args.output {
            OutputSpec::parse(o).map_err(|m| Failure::refused(anyhow!("--output: {m}")))?;
        }
        config.agent.outputs = args.output.clone();
    }
    if let Some(d) = &args.content_dir {
        config.content.dir = Some(d.clone());
    }
    if let Some(d) = &args.state_dir {
        config.content.state_dir = Some(d.clone());
    }
    if let Some(r) = &args.root {
        config.content.root = Some(r.clone());
    }
    if let Some(c) = &args.console {
        config.fleet.console = Some(c.clone());
    }
    config.fleet.ca_sha256.extend(
        args.ca_sha256
            .iter()
            .filter(|p| !p.trim().is_empty())
            .cloned(),
    );
    if let Some(k) = &args.order_key {
        config.fleet.order_key = Some(k.clone());
    }
    if args.plain_http {
        config.fleet.plain_http = true;
    }
    enrolled_console(&mut config)?;
    if let Some(path) = &args.enroll_token_file {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("reading the enrollment token in {}", path.display()))
            .map_err(Failure::refused)?;
        config.fleet.enroll_token = Some(token.trim().to_owned());
    } else if let Ok(t) = std::env::var("RINGFENCE_ENROLL_TOKEN")
        && !t.trim().is_empty()
    {
        config.fleet.enroll_token = Some(t.trim().to_owned());
    }
    let fleet_problems: Vec<String> = config
        .fleet
        .problems()
        .into_iter()
        .map(|(key, message)| format!("fleet.{key}: {message}"))
        .collect();
    if !fleet_problems.is_empty() {
        return Err(Failure::refused(anyhow!("{}", fleet_problems.join("; "))));
    }
    if let Some(message) = config.fleet_needs() {
        return Err(Failure::refused(anyhow!("--console: {message}")));
    }
    Ok(config)
}

fn supervise(args: &RunArgs) -> CmdResult {
    let config = config(args)?;
    init_tracing();
    if !args.allow_partial {
        check_trust_root(&config.content)?;
    }
    if std::env::var_os(DIE_WITH_PARENT_ENV).is_some() && !die_with_supervisor() {
        return Err(Failure::environment(anyhow!("the parent process is gone")));
    }
    let program = std::env::current_exe().context("finding this executable")?;
    // The same arguments, with `run` replaced by `worker`.
    let mut forwarded: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let run_at = forwarded
        .iter()
        .position(|a| a == "run")
        .ok_or_else(|| anyhow!("cannot find `run` among the arguments"))?;
    forwarded[run_at] = "worker".into();
    let c = &config.content;
    let opts = SupervisorOptions {
        program,
        args: forwarded,
        state_dir: c.state_dir(),
        crash_loop_restarts: c.crash_loop_restarts,
        crash_loop_window: Duration::from_secs(c.crash_loop_window_secs),
        max_backoff: Duration::from_millis(c.max_backoff_ms),
        notify: SdNotify::from_env(),
        hang_limit: Some(HANG_LIMIT),
        startup_grace: STARTUP_GRACE,
        versions_dir: args.versions_dir.clone(),
        trial_healthy: TRIAL_HEALTHY,
    };
    let stop = StopSignal::new();
    ringfence_agent::stop_on_signals(&stop).context("installing signal handlers")?;
    let report = Supervisor::new(opts)
        .run(&stop)
        .context("starting the worker")?;
    if REFUSED_EXIT_CODES.contains(&report.exit_code) {
        return Err(Failure {
            code: u8::try_from(report.exit_code).unwrap_or(1),
            error: anyhow!(
                "the agent did not start (exit code {}; the worker's reason is above)",
                report.exit_code
            ),
        });
    }
    tracing::info!(
        restarts = report.restarts,
        rollbacks = report.rollbacks.len(),
        exit_code = report.exit_code,
        "supervisor stopping"
    );
    if report.exit_code == 0 {
        Ok(())
    } else {
        Err(Failure {
            code: u8::try_from(report.exit_code).unwrap_or(1).max(1),
            error: anyhow!("the worker exited with code {}", report.exit_code),
        })
    }
}

/// A content directory without a trust root to check its bundles against (neither `--root` /
/// `content.root` nor a root the store kept) is refused input: the agent would run without
/// the content it was given.
fn check_trust_root(content: &ContentSection) -> CmdResult {
    let Some(dir) = &content.dir else {
        return Ok(());
    };
    match current_root(content) {
        Ok(_) => Ok(()),
        Err(e @ (ManagerError::NoRoot(_) | ManagerError::Root { .. })) => {
            Err(Failure::refused(anyhow!(
                "--content-dir {}: {e}; the agent does not run without the content it was \
                 given (--allow-partial runs it on the built-in pack)",
                dir.display()
            )))
        }
        // The store itself is the worker's to open and report.
        Err(_) => Ok(()),
    }
}

/// Refuse to run blind (see [`ringfence_agent::readiness`]) unless `--allow-partial`; with it,
/// say so and carry on: the failed sources are reported as health findings when the run starts.
fn check_readiness(agent: Agent, allow_partial: bool) -> Result<Agent, Failure> {
    let Some(readiness) = agent.readiness() else {
        return Ok(agent);
    };
    let Some(why) = readiness.refusal(&rerun_command()) else {
        return Ok(agent);
    };
    if !allow_partial {
        return Err(Failure::blind(anyhow!(
            "refusing to run blind: {why}. --allow-partial runs it anyway"
        )));
    }
    tracing::warn!("--allow-partial: running although {why}");
    Ok(if readiness.kernel_sources.is_empty() {
        agent.with_degraded(
            "the agent runs with no kernel event source (--allow-partial): it sees no process, \
             file or network activity on this host"
                .into(),
        )
    } else {
        agent
    })
}

/// This command line as `agent run` (the worker's own says `agent worker`), for "sudo ...".
fn rerun_command() -> String {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .map(|a| if a == "worker" { "run".to_owned() } else { a })
        .collect();
    format!("ringfence {}", args.join(" "))
}

/// Starts the fleet link when `fleet.console` is set: it enrolls, checks in with the health
/// the returned telemetry gathers, delivers offered content into the content directory, and
/// runs the response orders the console sends (unless `fleet.accept_orders = false`).
fn start_fleet_link(
    config: &Config,
    manager: Option<&ContentManager>,
    versions_dir: Option<PathBuf>,
    stop: &StopSignal,
) -> Result<Option<(FleetLink, Arc<Telemetry>)>, String> {
    if config.fleet.console.is_none() {
        return Ok(None);
    }
    let (Some(content_dir), Some(state_dir)) =
        (config.content.dir.clone(), config.content.state_dir())
    else {
        return Err("the fleet link needs a content directory".into());
    };
    let content_version: Box<dyn Fn() -> u64 + Send> = match manager {
        Some(m) => {
            let read = m.version_reader();
            Box::new(move || read().unwrap_or(0))
        }
        None => Box::new(|| 0),
    };
    let content_label: Box<dyn Fn() -> String + Send> = match manager {
        Some(m) => Box::new(m.content_reader()),
        None => Box::new(|| "the built-in pack (no content manager)".to_owned()),
    };
    let supervised = std::env::var_os(SUPERVISED_ENV).is_some();
    let supervisor_crashes = std::env::var(CRASHES_ENV)
        .ok()
        .filter(|_| supervised)
        .and_then(|n| n.parse::<u64>().ok())
        .map(|crashes| SupervisorCount {
            supervisor_pid: std::os::unix::process::parent_id(),
            crashes,
        });
    let telemetry = Arc::new(Telemetry::new(config.fleet.findings_queue));
    let start = FleetStart {
        section: config.fleet.clone(),
        host_name: config
            .agent
            .host_name
            .clone()
            .or_else(ringfence_agent::kernel_host_name)
            .unwrap_or_else(|| "unknown".into()),
        state_dir,
        content_dir,
        content_version,
        content_label,
        supervisor_crashes,
        lkg_fallbacks: u64::from(std::env::var_os(ROLLBACK_ENV).is_some()),
        release_fallbacks: u64::from(std::env::var_os(VERSION_FALLBACK_ENV).is_some()),
        releases: versions_dir.map(|dir| ringfence_agent::fleet::link::ReleaseDelivery {
            versions_dir: dir,
            // The supervisor runs the package's binary; a re-offer of it is a rollback.
            base_binary: if std::env::var_os(SUPERVISED_ENV).is_some() {
                std::fs::read_link(format!("/proc/{}/exe", std::os::unix::process::parent_id()))
                    .ok()
            } else {
                std::env::current_exe().ok()
            },
            max_bytes: ringfence_agent::fleet::link::MAX_RELEASE_BYTES,
        }),
        running_version: std::env::var(AGENT_VERSION_ENV).ok(),
        // Console orders go through the same guard rails, limits, dry-run and audit log as
        // `ringfence respond`, and run only with `response.enabled`.
        response: config.response.responder_config(),
        response_enabled: config.response.enabled,
        content: config.content.clone(),
        tuning: config.detect.report(),
    };
    let link = FleetLink::start(start, Arc::clone(&telemetry), stop.clone())?;
    Ok(Some((link, telemetry)))
}

/// What tamper detection protects (`agent_files`, the same set self-protection guards), and
/// the directories file events must cover for it (added to the watched paths): the agent's
/// directories, and the directory of its binary.
fn tamper_options(config: &mut Config, agent_files: &[PathBuf]) -> TamperOptions {
    let mut opts = TamperOptions::default();
    opts.agent_pids.push(std::process::id());
    if std::env::var_os(SUPERVISED_ENV).is_some() {
        opts.agent_pids.push(std::os::unix::process::parent_id());
    }
    opts.previous_worker = std::env::var(PREVIOUS_WORKER_ENV).ok();
    // The outermost agent process's parent: its stop signals are not tamper.
    opts.launcher = opts
        .agent_pids
        .last()
        .and_then(|&pid| ringfence_agent::tamper::Launcher::parent_of(pid));
    let mut watch: Vec<PathBuf> = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .into_iter()
        .collect();
    for path in agent_files {
        let text = path.to_string_lossy().into_owned();
        if path.is_dir() {
            opts.dirs.push(text);
            watch.push(path.clone());
        } else {
            opts.files.push(text);
        }
    }
    for dir in watch {
        if config.fanotify.all_paths().any(|p| dir.starts_with(p)) {
            continue;
        }
        // The eBPF sensor matches path prefixes of bounded length (with a trailing `/`).
        if dir.as_os_str().len() >= ringfence_sensor::ebpf::record::PREFIX_MAX {
            tracing::warn!(
                path = %dir.display(),
                "tamper detection does not watch this directory: its path is too long for the \
                 sensor's prefix match"
            );
            continue;
        }
        config.fanotify.paths.push(dir);
    }
    opts
}

/// The watched file trees widened from the built-in pack and the active bundle's rules (see
/// [`ringfence_agent::watch`]), before the sources open.
fn widen_file_trees(config: &mut Config) -> ringfence_agent::watch::Widening {
    let mut files: Vec<(String, String)> = sigma::builtin_files()
        .iter()
        .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
        .collect();
    files.extend(ringfence_agent::watch::active_rule_files(
        &config.content,
        &engine_for(Mode::Driverless),
    ));
    ringfence_agent::watch::widen(&mut config.fanotify, &files)
}

/// Self-protection for the worker's mode (see [`ringfence_agent::protect`]): the BPF LSM guard
/// in eBPF mode where the kernel allows it, else fanotify permission events refusing writes to
/// the agent's files.
fn start_protection(
    mut agent: Agent,
    config: &Config,
    agent_files: &[PathBuf],
    mode: Mode,
) -> Agent {
    let supervisor = std::env::var_os(SUPERVISED_ENV).map(|_| std::os::unix::process::parent_id());
    let options = ProtectOptions {
        agent_pids: vec![std::process::id()],
        supervisor,
        paths: agent_files.to_vec(),
    };
    let host = config
        .agent
        .host_name
        .clone()
        .or_else(ringfence_agent::kernel_host_name)
        .unwrap_or_default();
    let p = &config.protection;
    if p.self_protection {
        let lsm = if mode == Mode::Ebpf {
            protect::start_guard(
                &options,
                agent.sensor_objects(),
                p,
                &config.content,
                host.clone(),
            )
        } else {
            Err("driverless mode loads no BPF".to_string())
        };
        match lsm {
            Ok(guard) => {
                tracing::info!(
                    paths = options.paths.len(),
                    bpf_objects = agent.sensor_objects().len(),
                    "self-protection: BPF LSM guard armed (kill, ptrace, file changes and BPF \
                     detach refused to every other process)"
                );
                agent = agent.with_source(SourceKind::Ebpf, Box::new(guard));
            }
            Err(why) => match protect::start_fanotify_shield(&options, p, &config.content, host) {
                Ok((listener, tokens)) => {
                    tracing::info!(
                        no_lsm = %why,
                        paths = options.paths.len(),
                        "self-protection: write-opens of the agent's files are refused \
                         (fanotify); the supervisor restarts a killed worker; tampering is \
                         reported"
                    );
                    agent = agent
                        .with_source(SourceKind::Fanotify, Box::new(listener))
                        .with_source(SourceKind::Agent, Box::new(tokens));
                }
                Err(e) => tracing::warn!(
                    no_lsm = %why,
                    error = %e,
                    "self-protection: nothing refused here; relying on the supervisor and \
                     tamper detection"
                ),
            },
        }
    }
    agent
}

/// The exec guard, when hashes are denied (config, list file, or content's deny-exec sets).
fn start_exec_guard(agent: Agent, config: &Config, manager: Option<&ContentManager>) -> Agent {
    let p = &config.protection;
    if !p.deny_exec() {
        return agent;
    }
    let content = manager.map(|m| Box::new(m.active_reader()) as protect::ContentReader);
    match protect::start_exec_guard(p, content) {
        Ok((listener, list)) => agent
            .with_source(SourceKind::Fanotify, Box::new(listener))
            .with_source(SourceKind::Agent, Box::new(list)),
        Err(e) => agent.with_degraded(format!(
            "the exec guard did not start ({e}); denied executables can run"
        )),
    }
}

fn worker(args: RunArgs) -> CmdResult {
    let mut config = config(&args)?;
    if !args.allow_partial {
        check_trust_root(&config.content)?;
    }
    let mode = args
        .mode
        .as_deref()
        .and_then(ModeChoice::parse)
        .unwrap_or(config.agent.mode);
    init_tracing();
    // Before any thread starts, so every one of them inherits it.
    match ringfence_agent::cpu::apply(config.agent.cpu) {
        Ok(Some(cpu)) => tracing::info!(cpu, "the agent's threads run on one CPU (agent.cpu)"),
        Ok(None) => {}
        Err(e) => tracing::warn!("agent.cpu: {e}; the agent's threads run on any CPU"),
    }
    link_keeper::claim();
    let heartbeat = Heartbeat::claim();
    // The content store exists before anything watches or guards it.
    if let Some(state) = config.content.state_dir() {
        let _ = std::fs::create_dir_all(state);
    }
    let mut agent_files = protect::agent_paths(args.config.as_deref(), &config.content);
    if let Some(dir) = &args.versions_dir {
        // The versions, and the package's binary the supervisor runs (the worker may run a
        // version's): another process switching either would choose what runs next.
        let mut more = ringfence_agent::versions::protected_paths(dir);
        if std::env::var_os(SUPERVISED_ENV).is_some() {
            more.push(format!("/proc/{}/exe", std::os::unix::process::parent_id()).into());
        }
        agent_files.extend(more.iter().filter_map(|p| std::fs::canonicalize(p).ok()));
        agent_files.sort();
        agent_files.dedup();
    }
    let tamper = config
        .agent
        .tamper_detection
        .then(|| tamper_options(&mut config, &agent_files));
    if std::env::var_os(SUPERVISED_ENV).is_some() && !die_with_supervisor() {
        return Err(Failure::environment(anyhow!("the supervisor is gone")));
    }
    let stop = StopSignal::new();
    ringfence_agent::stop_on_signals(&stop).context("installing signal handlers")?;
    let widening = widen_file_trees(&mut config);
    let mut agent = Agent::new(config.clone()).with_mode(mode);
    if let Some(hb) = heartbeat {
        agent = agent.with_heartbeat(hb);
    }
    if let Ok(report) = std::env::var(VERSION_FALLBACK_ENV) {
        agent = agent.with_degraded(report);
    }
    // With a console, the fleet link raises these (and again if they change).
    if config.fleet.console.is_none() {
        for line in ringfence_agent::expiry::expired(
            config.content.state_dir().as_deref(),
            args.versions_dir.as_deref(),
            ringfence_content::UnixTime::now(),
        ) {
            agent = agent.with_degraded(line);
        }
    }
    if args.format == "text" {
        agent = agent.with_format(ringfence_agent::TextFormat::Text);
    }
    if let Some(m) = widening.left_out_message(config.fanotify.max_paths) {
        agent = agent.with_degraded(m);
    }
    if std::env::var_os(SUPERVISED_ENV).is_some() {
        agent = agent.with_supervisor(std::os::unix::process::parent_id());
    }
    if let Some(opts) = tamper {
        if let Some(how) = &opts.previous_worker {
            agent = agent.with_source(SourceKind::Agent, Box::new(RestartNotice::new(how.clone())));
        }
        // First, so no content (bad, empty or rolled back) stands between it and the events.
        agent = agent.with_detector(Box::new(TamperDetector::new(opts)));
    }
    let mut manager = None;
    // Content compiles for the mode this worker will run (the sources open first, so a sensor
    // that does not load is already known); the built-in pack runs until a signed bundle is
    // active (or always, without a content directory).
    let content_mode = agent.open();
    agent = check_readiness(agent, args.allow_partial)?;
    agent = start_protection(agent, &config, &agent_files, content_mode);
    // The tracepoint links go to the supervisor too: this worker's death then does not wait
    // for their teardown.
    match link_keeper::hand_over(&ringfence_sensor::ebpf::tracepoint_link_fds()) {
        Ok(0) => {}
        Ok(n) => tracing::info!(links = n, "tracepoint links handed to the supervisor"),
        Err(e) => tracing::warn!(error = %e, "tracepoint links not handed to the supervisor"),
    }
    let builtin = match sigma::builtin(content_mode) {
        Ok(c) => Some(c),
        Err(errors) => {
            tracing::error!(
                errors = errors.len(),
                "the built-in content pack did not compile"
            );
            None
        }
    };
    if let Some(mut opts) = ManagerOptions::from_section(&config.content, engine_for(content_mode))
    {
        opts.fallback = builtin
            .clone()
            .map(|c| SharedContent(c as Arc<dyn CompiledContent>));
        if let Ok(report) = std::env::var(ROLLBACK_ENV) {
            opts.startup_reports.push(report);
        }
        let content_dir = opts.dir.clone();
        match ContentManager::start(opts, stop.clone()) {
            Ok((m, detector)) => {
                tracing::info!(version = ?m.active_version(), "content manager running");
                agent = agent.with_detector(Box::new(detector));
                manager = Some(m);
            }
            Err(e) => {
                // A trust root that is missing or unreadable is the operator's to fix: refused
                // (exit 1). A store that fails to open is not; the worker runs the built-in
                // pack, loudly, rather than nothing at all.
                let refused = matches!(e, ManagerError::NoRoot(_) | ManagerError::Root { .. });
                if refused && !args.allow_partial {
                    return Err(Failure::refused(anyhow!(
                        "the content manager did not start: {e}; the agent does not run \
                         without the content it was given (--allow-partial runs it on the \
                         built-in pack)"
                    )));
                }
                agent = agent.with_degraded(format!(
                    "the content manager did not start ({e}); the agent runs the built-in pack \
                     and takes no content from {}",
                    content_dir.display()
                ));
            }
        }
    }
    agent = start_exec_guard(agent, &config, manager.as_ref());
    if manager.is_none()
        && let Some(c) = builtin
    {
        agent = agent.with_detector(Box::new(StaticDetector(c)));
    }
    if config.response.enabled {
        match ResponseStage::start(&config.response) {
            Ok(stage) => {
                tracing::info!(
                    dry_run = config.response.dry_run,
                    audit_log = %config.response.audit_log.display(),
                    "responses on: rules with a `response` attribute act"
                );
                agent = agent.with_response(stage);
            }
            Err(e) => {
                agent = agent.with_degraded(format!(
                    "the response stage did not start ({e}); rules detect but do not respond"
                ));
            }
        }
    }
    let link = match start_fleet_link(&config, manager.as_ref(), args.versions_dir.clone(), &stop) {
        Ok(Some((link, telemetry))) => {
            agent = agent.with_telemetry(telemetry);
            Some(link)
        }
        Ok(None) => None,
        Err(e) => {
            agent = agent.with_degraded(format!(
                "the fleet link did not start ({e}); the agent runs without the console"
            ));
            None
        }
    };
    let summary = agent.run(stop.clone());
    stop.stop();
    if let Some(m) = manager {
        m.join();
    }
    if let Some(link) = link {
        let r = link.join();
        tracing::info!(
            checkins = r.checkins,
            failed = r.failed_checkins,
            bundles = r.bundles_delivered,
            findings = r.findings_uploaded,
            "fleet link stopped"
        );
    }
    eprint!("{}", summary.render());
    Ok(())
}
