//! `ringfence fleet simulate`: a drill of N simulated agents against a real console over
//! loopback HTTP, through a rollout of a faulty content version; prints the blast radius.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ringfence_console::drill::{self, DrillOptions, Fault};

use crate::cmd::print_line;
use crate::{CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Run a drill and print `blast radius: X/N agents activated the bad version (P%)`.
    Simulate(SimArgs),
}

#[derive(Debug, clap::Args)]
struct SimArgs {
    /// Number of simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// What the new version does: crash, cpu, silent (drops x10), hang (no heartbeats), none.
    #[arg(long, default_value = "crash")]
    fault: Fault,
    /// Clock speed-up (default: about 4000 check-ins per real second, at most 300x).
    #[arg(long)]
    speed: Option<f64>,
    /// Use this console instead of starting one on 127.0.0.1:0 (its clock must run at --speed:
    /// `console serve --clock-speed`).
    #[arg(long, env = "RINGFENCE_CONSOLE")]
    console: Option<String>,
    /// Operator token for --console.
    #[arg(long, env = "RINGFENCE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Rollout plan TOML (default: the drill plan, canary 1% -> 10% -> 50% -> 100%).
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Database for the in-process console (default: SQLite in a temporary directory).
    #[arg(long)]
    db: Option<String>,
    /// Simulated check-in interval.
    #[arg(long, default_value = "5m")]
    checkin_interval: String,
    /// Give up after this many real seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Progress on stderr.
    #[arg(long, short)]
    verbose: bool,
}

pub fn run(args: Args) -> CmdResult {
    let Sub::Simulate(a) = args.command;
    let mut opts = DrillOptions::new(a.agents, a.fault);
    opts.speed = a.speed;
    opts.checkin_interval_ms = ringfence_console::plan::parse_duration(&a.checkin_interval)
        .map_err(|e| Failure::refused(anyhow::anyhow!("--checkin-interval: {e}")))?;
    opts.plan = match &a.plan {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))
                .map_err(Failure::refused)?,
        ),
        None => None,
    };
    opts.console = match (a.console, a.token) {
        (Some(url), Some(token)) => Some((url, token)),
        (Some(_), None) => {
            return Err(Failure {
                code: 2,
                error: anyhow::anyhow!("--console needs --token (or RINGFENCE_TOKEN)"),
            });
        }
        _ => None,
    };
    opts.db_url = a.db;
    opts.timeout = Duration::from_secs(a.timeout);
    opts.verbose = a.verbose;
    if a.agents == 0 {
        return Err(Failure::refused(anyhow::anyhow!(
            "--agents must be at least 1"
        )));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = rt
        .block_on(drill::run(opts))
        .map_err(Failure::environment)?;
    if a.json {
        print_line(&serde_json::to_string_pretty(&report).context("encoding JSON")?)
            .context("writing to stdout")?;
    } else {
        for line in report.lines() {
            print_line(&line).context("writing to stdout")?;
        }
    }
    let expected = if a.fault == Fault::None {
        "completed"
    } else {
        "rolled_back"
    };
    if report.final_state != expected {
        return Err(Failure::environment(anyhow::anyhow!(
            "the rollout ended {} instead of {expected}",
            report.final_state
        )));
    }
    Ok(())
}
