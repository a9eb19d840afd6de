//! `ringfence posture`: the agent's posture checks run once, here and now, with the results
//! printed (`--format text|json`), or the host's inventory (`--inventory`).
//!
//! Unlike the agent it does not store the file-integrity state as the new baseline unless
//! `--update-baseline` is given, so a look does not hide a change from the agent. It runs at
//! normal priority with no CPU share (a person is waiting), within the pass's CPU allowance.
//! Exit status: 0 when every check ran (findings or not), 3 when one could not (the reason is
//! on stderr, naming the file), 1 for a configuration refused.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use ringfence_agent::posture::{self, CpuBudget, HostPaths, inventory};
use ringfence_event::Timestamp;

use crate::{CmdResult, Failure};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// One readable line per finding, or one JSON document.
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
    /// Take `[posture]` from this agent configuration.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Skip a check: weak-passwords, sshd, services, fim (repeatable).
    #[arg(long)]
    pub skip: Vec<String>,
    /// Store this pass's file state as the new baseline (what the agent compares against).
    #[arg(long)]
    pub update_baseline: bool,
    /// Where the file-integrity baseline is (default: the configuration's).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Print the host's inventory (packages, listening sockets, users, groups, kernel
    /// modules, systemd units, cron entries) instead of running the checks.
    #[arg(long)]
    pub inventory: bool,
}

pub fn run(args: Args) -> CmdResult {
    if args.inventory {
        return print_inventory(args.format);
    }
    let mut section = match &args.config {
        Some(path) => {
            ringfence_agent::Config::load(path)
                .map_err(Failure::refused)?
                .posture
        }
        None => posture::PostureSection::default(),
    };
    section.skip.extend(args.skip.iter().cloned());
    if let Some(dir) = args.state_dir {
        section.state_dir = dir;
    }
    section.store_baseline = args.update_baseline;
    if let Some((key, message)) = section.problems().into_iter().next() {
        return Err(Failure {
            code: 2,
            error: anyhow!("posture.{key}: {message}"),
        });
    }
    let started = Instant::now();
    let budget = CpuBudget::unlimited(Duration::from_secs(section.max_cpu_secs_per_pass));
    let report = posture::run_pass(&section, &HostPaths::default(), &budget);
    let host = ringfence_agent::kernel_host_name();
    match args.format {
        OutputFormat::Json => {
            let now = Timestamp::now();
            let doc = serde_json::json!({
                "findings": report
                    .findings
                    .iter()
                    .map(|f| f.to_json(host.as_deref(), now))
                    .collect::<Vec<_>>(),
                "incomplete": report.incomplete,
                "weak_passwords": report.shadow,
                "fim": report.fim,
                "millis": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
            super::print_line(&doc.to_string())
                .map_err(|e| Failure::environment(anyhow!("writing the report: {e}")))?;
        }
        OutputFormat::Text => {
            let mut findings = report.findings.clone();
            findings.sort_by(|a, b| b.level.cmp(&a.level).then(a.rule_id.cmp(b.rule_id)));
            let mut lines: Vec<String> = findings
                .iter()
                .map(posture::PostureFinding::to_text)
                .collect();
            if let Some(s) = &report.shadow {
                let per_kind: Vec<String> = s
                    .per_kind
                    .iter()
                    .map(|(k, v)| format!("{k} {} ms/account", v.millis_per_account()))
                    .collect();
                lines.push(format!(
                    "weak passwords: {} accounts, {} checked, {} left unchecked, {} too costly to try{}",
                    s.accounts,
                    s.checked,
                    s.unchecked,
                    s.too_costly,
                    if per_kind.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", per_kind.join(", "))
                    }
                ));
            }
            if let Some(f) = &report.fim {
                lines.push(format!(
                    "file integrity: {} entries, {} files hashed ({} MB) in {} ms, baseline {} KB{}; {} changes, {} by the package manager, {} alerts",
                    f.entries,
                    f.files_hashed,
                    f.bytes_hashed >> 20,
                    f.walk_millis,
                    f.baseline_bytes >> 10,
                    if f.first_baseline {
                        " (no baseline yet: nothing to compare)"
                    } else {
                        ""
                    },
                    f.changes,
                    f.package_changes,
                    f.alerts
                ));
            }
            lines.push(format!(
                "{} findings in {} ms",
                report.findings.len(),
                started.elapsed().as_millis()
            ));
            for l in lines {
                super::print_line(&l)
                    .map_err(|e| Failure::environment(anyhow!("writing the report: {e}")))?;
            }
        }
    }
    if report.incomplete.is_empty() {
        Ok(())
    } else {
        Err(Failure::environment(anyhow!(
            "{} check(s) could not run in full:\n  {}",
            report.incomplete.len(),
            report.incomplete.join("\n  ")
        )))
    }
}

fn print_inventory(format: OutputFormat) -> CmdResult {
    let inv = inventory::collect(&inventory::Sources {
        root: std::path::Path::new("/"),
        proc: std::path::Path::new("/proc"),
    });
    let out = |l: &str| {
        super::print_line(l)
            .map_err(|e| Failure::environment(anyhow!("writing the inventory: {e}")))
    };
    match format {
        OutputFormat::Json => {
            let text = serde_json::to_string(&inv)
                .map_err(|e| Failure::environment(anyhow!("serializing the inventory: {e}")))?;
            out(&text)?;
        }
        OutputFormat::Text => {
            out(&format!(
                "{} packages, {} listening sockets, {} users, {} groups, {} kernel modules, {} systemd units ({} enabled), {} cron entries",
                inv.packages.len(),
                inv.listening.len(),
                inv.users.len(),
                inv.groups.len(),
                inv.kernel_modules.len(),
                inv.systemd_units.len(),
                inv.systemd_units.iter().filter(|u| u.enabled).count(),
                inv.cron.len()
            ))?;
            for s in &inv.listening {
                out(&format!(
                    "listening {:<24} {}",
                    s.address,
                    match (&s.process, s.pid) {
                        (Some(p), Some(pid)) => format!("{p} (pid {pid})"),
                        _ => "?".into(),
                    }
                ))?;
            }
            for c in &inv.cron {
                out(&format!("cron {}:{}: {}", c.file, c.line, c.entry))?;
            }
        }
    }
    Ok(())
}
