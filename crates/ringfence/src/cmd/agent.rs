//! `ringfence agent run`: the daemon in the foreground, until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use ringfence_agent::{Agent, Config, ModeChoice, OutputSpec};
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
}

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
    let AgentCommand::Run(args) = args.command;
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
    let mode = args
        .mode
        .as_deref()
        .and_then(ModeChoice::parse)
        .unwrap_or(config.agent.mode);
    init_tracing();
    let stop = StopSignal::new();
    ringfence_agent::stop_on_signals(&stop).context("installing signal handlers")?;
    let summary = Agent::new(config).with_mode(mode).run(stop);
    eprint!("{}", summary.render());
    Ok(())
}
