//! `ringfence respond`: response actions on demand, through the same guard rails, rate limits,
//! dry-run and audit log the agent uses for rule-driven responses.
//!
//! ```text
//! ringfence respond kill PID [--tree]
//! ringfence respond quarantine PATH        ringfence respond restore ID
//! ringfence respond block IP [--ttl 1h]    ringfence respond unblock IP
//! ```
//!
//! Settings come from `[response]` of `--config` (quarantine store, audit log, guard rails);
//! `--dry-run` decides and audits without acting. Prints the audit record as JSON; exits 0 when
//! the action was done (or would be, in a dry run), 1 when the guard rails refused it, 3 when
//! it failed.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::anyhow;
use ringfence_agent::Config;
use ringfence_response::{Action, Cause, Responder, Status};

use crate::cmd::print_line;
use crate::{CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Agent configuration whose `[response]` section applies.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Decide and audit, change nothing.
    #[arg(long, global = true)]
    dry_run: bool,
    /// Recorded in the audit log as who asked.
    #[arg(long, global = true, default_value = "operator")]
    by: String,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// SIGKILL a process (with `--tree`, it and every descendant, frozen first).
    Kill {
        pid: u32,
        #[arg(long)]
        tree: bool,
    },
    /// Move a file into the quarantine store (mode 0400, with its metadata).
    Quarantine { path: PathBuf },
    /// Put a quarantined file back where it was.
    Restore { id: String },
    /// Drop traffic to and from an address, lifted by the kernel after `--ttl`.
    Block {
        ip: IpAddr,
        /// `30s`, `15m`, `1h`, `1d`.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Lift a block early.
    Unblock { ip: IpAddr },
}

/// `30s`, `15m`, `2h`, `1d` (or plain seconds) in seconds.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| {
        format!("--ttl: expected a number and a unit (30s, 15m, 1h, 1d), got {s:?}")
    })?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "--ttl: unknown unit {unit:?} in {s:?} (s, m, h, d)"
            ));
        }
    };
    n.checked_mul(mult)
        .filter(|&t| t > 0)
        .ok_or_else(|| format!("--ttl: {s:?} is out of range"))
}

pub fn run(args: Args) -> CmdResult {
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(Failure::refused)?,
        None => Config::default(),
    };
    let mut settings = config.response.responder_config();
    settings.dry_run |= args.dry_run;
    let action = match args.command {
        Sub::Kill { pid, tree } => Action::Kill {
            pid,
            tree,
            start_ticks: None,
        },
        Sub::Quarantine { path } => Action::Quarantine { path },
        Sub::Restore { id } => Action::Restore { id },
        Sub::Block { ip, ttl } => Action::BlockIp {
            ip,
            ttl_secs: parse_ttl(&ttl).map_err(|e| Failure::refused(anyhow!(e)))?,
        },
        Sub::Unblock { ip } => Action::UnblockIp { ip },
    };
    let mut responder = Responder::new(settings);
    let record = responder.execute(
        &action,
        &Cause {
            rule_id: None,
            requested_by: args.by,
        },
    );
    let json =
        serde_json::to_string_pretty(&record).map_err(|e| Failure::environment(anyhow!(e)))?;
    print_line(&json).map_err(|e| Failure::environment(anyhow!(e)))?;
    match record.outcome {
        Status::Done { .. } | Status::DryRun => Ok(()),
        Status::Refused { reason } => Err(Failure::refused(anyhow!("refused: {reason}"))),
        Status::Failed { error } => Err(Failure::environment(anyhow!("failed: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("1d"), Ok(86_400));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("1w").unwrap_err().contains("unit"));
        assert!(parse_ttl("h").is_err());
    }
}
