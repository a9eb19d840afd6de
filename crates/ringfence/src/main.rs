//! The `ringfence` binary: the command-line interface and nothing else.
//!
//! Each subcommand lives in its own module under `cmd/` and only wires library crates together.
//! Exit status (ARCHITECTURE.md): 0 success, 1 refused input (the message names the file, line
//! or field), 2 usage error, 3 and above for environment problems: 4 when the agent (or
//! `doctor`) cannot see the host (not root, missing capabilities, no event source opens).

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ringfence",
    version,
    about = "Endpoint security for Linux servers that cannot take its host down"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the field schema (every field, its type, the event kinds that carry it, and which
    /// mode fills it) as JSON.
    Schema(cmd::schema::Args),
    /// Run the agent (`agent run`).
    Agent(cmd::agent::Args),
    /// What this host supports (BTF, BPF program types, fanotify, process connector, audit)
    /// and the mode `auto` picks.
    Doctor(cmd::doctor::Args),
    /// Measure the agent's cost to the host (`bench exec-storm`, `bench content`).
    Bench(cmd::bench::Args),
    /// Content bundles: keys, build, verify (`content keys init`, `content build`, ...).
    Content(cmd::content::Args),
    /// Run the fleet console (`console serve`).
    Console(cmd::console::Args),
    /// Grayscale content rollouts (`rollout start|status|halt|resume|rollback`).
    Rollout(cmd::rollout::Args),
    /// Agent versions as signed releases (`release build|verify|install|keys-add`).
    Release(cmd::release::Args),
    /// Fleet drills (`fleet simulate --agents N --fault crash|cpu|silent|hang|none`).
    Fleet(cmd::fleet::Args),
    /// Console, dashboard and a local agent on this machine, in one command.
    Up(cmd::up::Args),
    /// Sigma compatibility report (`rules check PATH...`).
    Rules(cmd::rules::Args),
    /// Detection over recorded events (`replay --rules DIR --events FILE.jsonl [--bench]`).
    Replay(cmd::replay::Args),
    /// Detection efficacy over a recorded corpus (`eval --corpus DIR [--content DIR]`).
    Eval(cmd::eval::Args),
    /// Response actions on demand, behind the guard rails (`respond kill|quarantine|restore|block|unblock`).
    Respond(cmd::respond::Args),
    /// The console's findings as they arrive (`findings tail [--format text|json]`).
    Findings(cmd::findings::Args),
    /// Exceptions delivered as signed content (`exceptions list|create|approve|publish`).
    Exceptions(cmd::exceptions::Args),
    /// Weak passwords, exposed services, sshd and file-integrity checks once
    /// (`posture [--format text|json]`), or the host's inventory (`posture --inventory`).
    Posture(cmd::posture::Args),
    /// YARA scan of files and trees on demand (`scan PATH... [--rules DIR]`); exit 1 when
    /// something matched.
    Scan(cmd::scan::Args),
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    /// Refused input: exit 1.
    pub fn refused(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: 1,
            error: error.into(),
        }
    }

    /// An environment problem (missing permission, kernel feature, I/O): exit 3.
    pub fn environment(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: 3,
            error: error.into(),
        }
    }

    /// The agent would run blind (no event source, or not privileged enough): exit 4. The
    /// supervisor does not restart a worker that exits so.
    pub fn blind(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: 4,
            error: error.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::environment(error)
    }
}

pub type CmdResult = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Schema(args) => cmd::schema::run(args),
        Command::Agent(args) => cmd::agent::run(args),
        Command::Doctor(args) => cmd::doctor::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Content(args) => cmd::content::run(args),
        Command::Console(args) => cmd::console::run(args),
        Command::Rollout(args) => cmd::rollout::run(args),
        Command::Release(args) => cmd::release::run(args),
        Command::Fleet(args) => cmd::fleet::run(args),
        Command::Up(args) => cmd::up::run(args),
        Command::Rules(args) => cmd::rules::run(args),
        Command::Replay(args) => cmd::replay::run(args),
        Command::Findings(args) => cmd::findings::run(args),
        Command::Exceptions(args) => cmd::exceptions::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Respond(args) => cmd::respond::run(args),
        Command::Posture(args) => cmd::posture::run(args),
        Command::Scan(args) => cmd::scan::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("ringfence: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}
