//! Response actions: what Ringfence does about a detection, and the guard rails around it.
//!
//! Every action — kill a process or its tree, quarantine a file, block an IP address — goes
//! through one [`Responder`], which checks the [`guard::GuardRails`] (never pid 1, kernel
//! threads, the agent or critical services; never loopback or allowlisted networks), applies
//! per-action rate limits, honours dry-run, and writes one audit record per decision, refused
//! or done. Actions that can be undone (quarantine, block) have their inverse here too.
//!
//! The host comes first: a response that cannot be proven safe is refused and reported, never
//! attempted. This crate has no `unsafe`: signals go through `nix`, the firewall through the
//! `nft` command, in a network namespace when one is configured (tests use their own).
#![forbid(unsafe_code)]

pub mod audit;
pub mod firewall;
pub mod guard;
pub mod kill;
pub mod procfs;
pub mod quarantine;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use audit::{AuditLog, AuditRecord, Status};
pub use guard::{GuardConfig, GuardRails, Refusal};

/// One response action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// SIGKILL a process, or it and all its descendants. `start` (from the event's
    /// `process.start`, in clock ticks since boot as /proc reports it) guards against pid reuse.
    Kill {
        pid: u32,
        tree: bool,
        start_ticks: Option<u64>,
    },
    /// Move a file into the quarantine store.
    Quarantine { path: PathBuf },
    /// Put a quarantined file back where it was.
    Restore { id: String },
    /// Drop traffic to and from an address for `ttl_secs`.
    BlockIp { ip: IpAddr, ttl_secs: u64 },
    /// Lift a block early.
    UnblockIp { ip: IpAddr },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Kill { tree: false, .. } => "kill",
            Action::Kill { tree: true, .. } => "kill_tree",
            Action::Quarantine { .. } => "quarantine",
            Action::Restore { .. } => "restore",
            Action::BlockIp { .. } => "block_ip",
            Action::UnblockIp { .. } => "unblock_ip",
        }
    }
}

/// Why an action was asked for: a rule id, or an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Cause {
    pub rule_id: Option<String>,
    pub requested_by: String,
}

/// Settings for a [`Responder`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseConfig {
    /// Decide and audit, but change nothing.
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub guard: GuardConfig,
    #[serde(default = "default_quarantine_dir")]
    pub quarantine_dir: PathBuf,
    #[serde(default = "default_audit_log")]
    pub audit_log: PathBuf,
    /// Run `nft` inside this network namespace (`ip netns exec NAME`).
    #[serde(default)]
    pub netns: Option<String>,
    /// Most actions of one kind per minute.
    #[serde(default = "default_rate")]
    pub max_per_minute: u32,
}

fn default_quarantine_dir() -> PathBuf {
    PathBuf::from("/var/lib/ringfence/quarantine")
}
fn default_audit_log() -> PathBuf {
    PathBuf::from("/var/lib/ringfence/response-audit.jsonl")
}
fn default_rate() -> u32 {
    20
}

impl Default for ResponseConfig {
    fn default() -> Self {
        ResponseConfig {
            dry_run: false,
            guard: GuardConfig::default(),
            quarantine_dir: default_quarantine_dir(),
            audit_log: default_audit_log(),
            netns: None,
            max_per_minute: default_rate(),
        }
    }
}

/// Executes actions behind the guard rails and audits every decision.
#[derive(Debug)]
pub struct Responder {
    config: ResponseConfig,
    guard: GuardRails,
    audit: AuditLog,
    limiter: guard::RateLimiter,
}

impl Responder {
    pub fn new(config: ResponseConfig) -> Responder {
        Responder {
            guard: GuardRails::new(config.guard.clone()),
            audit: AuditLog::new(&config.audit_log),
            limiter: guard::RateLimiter::new(config.max_per_minute, Duration::from_secs(60)),
            config,
        }
    }

    pub fn quarantine_dir(&self) -> &Path {
        &self.config.quarantine_dir
    }

    /// Check, act (unless dry-run) and audit. The returned record is also in the audit log.
    pub fn execute(&mut self, action: &Action, cause: &Cause) -> AuditRecord {
        let status = match self.decide(action) {
            Err(refusal) => Status::Refused {
                reason: refusal.to_string(),
            },
            Ok(()) if !self.limiter.allow(action.name()) => Status::Refused {
                reason: format!(
                    "rate limit: more than {} {} per minute",
                    self.config.max_per_minute,
                    action.name()
                ),
            },
            Ok(()) if self.config.dry_run => Status::DryRun,
            Ok(()) => match self.perform(action) {
                Ok(detail) => Status::Done { detail },
                Err(error) => Status::Failed { error },
            },
        };
        let record = AuditRecord::new(action.clone(), cause.clone(), status);
        self.audit.append(&record);
        record
    }

    fn decide(&self, action: &Action) -> Result<(), Refusal> {
        match action {
            Action::Kill {
                pid, start_ticks, ..
            } => self.guard.check_process(*pid, *start_ticks),
            Action::Quarantine { path } => self.guard.check_path(path),
            Action::BlockIp { ip, ttl_secs } => self.guard.check_ip(*ip, *ttl_secs),
            Action::Restore { .. } | Action::UnblockIp { .. } => Ok(()),
        }
    }

    fn perform(&self, action: &Action) -> Result<String, String> {
        match action {
            Action::Kill { pid, tree, .. } => {
                kill::kill(*pid, *tree, &self.guard).map(|killed| format!("killed pids {killed:?}"))
            }
            Action::Quarantine { path } => quarantine::Store::new(&self.config.quarantine_dir)
                .quarantine(path)
                .map(|entry| format!("quarantined as {}", entry.id))
                .map_err(|e| e.to_string()),
            Action::Restore { id } => quarantine::Store::new(&self.config.quarantine_dir)
                .restore(id)
                .map(|entry| format!("restored to {}", entry.original_path.display()))
                .map_err(|e| e.to_string()),
            Action::BlockIp { ip, ttl_secs } => firewall::Firewall::new(self.config.netns.clone())
                .block(*ip, Duration::from_secs(*ttl_secs))
                .map(|()| format!("blocked for {ttl_secs} s"))
                .map_err(|e| e.to_string()),
            Action::UnblockIp { ip } => firewall::Firewall::new(self.config.netns.clone())
                .unblock(*ip)
                .map(|()| "unblocked".to_owned())
                .map_err(|e| e.to_string()),
        }
    }
}
