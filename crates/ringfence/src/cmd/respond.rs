//! `ringfence respond`: response actions on demand, through the same guard rails, rate limits,
//! dry-run and audit log the agent uses for rule-driven responses.
//!
//! ```text
//! ringfence respond kill PID [--tree]
//! ringfence respond quarantine PATH        ringfence respond restore ID
//! ringfence respond block IP [--ttl 1h]    ringfence respond unblock IP
//! ringfence respond deny-exec FILE|SHA256  ringfence respond allow-exec SHA256
//! ```
//!
//! `deny-exec` and `allow-exec` edit `protection.deny_exec_list`, which the running agent's exec
//! guard re-reads within a second (fanotify permission events: the exec fails with EPERM).
//!
//! Settings come from `[response]` of `--config` (quarantine store, audit log, guard rails);
//! `--dry-run` decides and audits without acting. Prints the audit record as JSON; exits 0 when
//! the action was done (or would be, in a dry run), 1 when the guard rails refused it, 3 when
//! it failed.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::anyhow;
use ringfence_agent::Config;
use ringfence_agent::protect::{Sha256, parse_deny_list};
use ringfence_response::{Action, Cause, Responder, Status};
use sha2::Digest;

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
    /// Refuse every exec of a file with this content (a path, hashed now, or a SHA-256).
    DenyExec { target: String },
    /// Take a SHA-256 off the deny list.
    AllowExec { sha256: String },
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

/// The SHA-256 of a file, or the hash given.
fn sha256_of(target: &str) -> Result<Sha256, Failure> {
    if let Ok(h) = Sha256::parse(target) {
        return Ok(h);
    }
    let mut file = std::fs::File::open(target)
        .map_err(|e| Failure::refused(anyhow!("{target}: neither a SHA-256 nor a file: {e}")))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|e| Failure::environment(anyhow!("reading {target}: {e}")))?;
    Ok(Sha256(hasher.finalize().into()))
}

/// Add or remove one hash in the deny list (written whole, then renamed into place).
fn edit_deny_list(config: &Config, sub: &Sub, by: &str) -> CmdResult {
    let Some(list) = &config.protection.deny_exec_list else {
        return Err(Failure::refused(anyhow!(
            "no deny list: set protection.deny_exec_list in the agent's config (--config)"
        )));
    };
    let text = match std::fs::read_to_string(list) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Failure::environment(anyhow!("{}: {e}", list.display()))),
    };
    // The list must be valid before it is edited: the agent would refuse all of it otherwise.
    parse_deny_list(&text, list).map_err(|e| Failure::refused(anyhow!(e)))?;
    let (hash, deny, note) = match sub {
        Sub::DenyExec { target } => {
            let note = if Sha256::parse(target).is_err() {
                target.as_str()
            } else {
                ""
            };
            (sha256_of(target)?, true, note)
        }
        Sub::AllowExec { sha256 } => (
            Sha256::parse(sha256).map_err(|e| Failure::refused(anyhow!(e)))?,
            false,
            "",
        ),
        _ => return Err(Failure::refused(anyhow!("not a deny-list edit"))),
    };
    let hex = hash.to_string();
    let listed = |l: &str| l.split_whitespace().next() == Some(hex.as_str());
    let mut out: String = text
        .lines()
        .filter(|l| deny || !listed(l))
        .map(|l| format!("{l}\n"))
        .collect();
    if deny && !text.lines().any(listed) {
        out.push_str(&format!("{hex}  # {note} by {by}\n"));
    }
    if let Some(dir) = list.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Failure::environment(anyhow!(e)))?;
    }
    let tmp = list.with_extension("tmp");
    std::fs::write(&tmp, out)
        .and_then(|()| std::fs::rename(&tmp, list))
        .map_err(|e| Failure::environment(anyhow!("writing {}: {e}", list.display())))?;
    let verb = if deny { "denied" } else { "allowed" };
    print_line(&format!("{verb}: {hash} ({})", list.display()))
        .map_err(|e| Failure::environment(anyhow!(e)))
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
        Sub::DenyExec { .. } | Sub::AllowExec { .. } => {
            return edit_deny_list(&config, &args.command, &args.by);
        }
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
