//! `ringfence doctor`: what this host offers each sensor, and the mode `auto` picks. Probes
//! only: the eBPF rows load a probe object and then the sensor itself, and unload them again;
//! the driverless rows open what their source would and close it at once.
//!
//! Without privileges the probes would only say EPERM: an unprivileged user is told to run it
//! as root (exit 4) instead; a process missing some capabilities gets the table under a line
//! naming them.

use anyhow::Context;
use ringfence_agent::{ModeChoice, choose_mode};
use ringfence_event::Mode;
use ringfence_sensor::ebpf::probe as ebpf_probe;
use ringfence_sensor::privilege::{self, Privileges};
use ringfence_sensor::probe::{self, Probe};

use crate::{CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agent's configuration: doctor then also says which content that agent runs.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// The agent's content directory (instead of, or over, the configuration's).
    #[arg(long)]
    content_dir: Option<std::path::PathBuf>,
    /// The agent's versions directory: doctor then also says which agent release runs, and
    /// whether its signature has expired.
    #[arg(long, default_value = "/var/lib/ringfence/versions")]
    versions_dir: std::path::PathBuf,
}

/// Expired update metadata the agent keeps running on (see `ringfence_agent::expiry`), one
/// line each, for the content store of `args` (when known) and the versions directory.
fn expired_lines(args: &Args) -> Vec<String> {
    let state_dir = match &args.config {
        Some(path) => ringfence_agent::Config::load(path)
            .ok()
            .map(|mut c| {
                if let Some(d) = &args.content_dir {
                    c.content.dir = Some(d.clone());
                }
                c
            })
            .and_then(|c| c.content.state_dir()),
        None => args.content_dir.as_ref().and_then(|d| {
            let mut c = ringfence_agent::Config::default();
            c.content.dir = Some(d.clone());
            c.content.state_dir()
        }),
    };
    ringfence_agent::expiry::expired(
        state_dir.as_deref(),
        Some(&args.versions_dir),
        ringfence_content::UnixTime::now(),
    )
    .into_iter()
    .map(|l| format!("EXPIRED: {l}"))
    .collect()
}

/// Which content an agent with this configuration runs: the store's active bundle and its
/// last-known-good, or the built-in pack when no bundle was ever accepted.
fn active_content(args: &Args) -> Result<Option<String>, Failure> {
    let mut config = match &args.config {
        Some(path) => ringfence_agent::Config::load(path).map_err(Failure::refused)?,
        None if args.content_dir.is_none() => return Ok(None),
        None => ringfence_agent::Config::default(),
    };
    if let Some(d) = &args.content_dir {
        config.content.dir = Some(d.clone());
    }
    let Some(state_dir) = config.content.state_dir() else {
        return Ok(Some(
            "the built-in pack (no content directory configured)".into(),
        ));
    };
    if !state_dir.join("state.json").exists() {
        return Ok(Some(format!(
            "the built-in pack (no bundle accepted yet in {})",
            state_dir.display()
        )));
    }
    let state = ringfence_content::ContentStore::open(&state_dir)
        .and_then(|s| s.state())
        .map_err(|e| Failure::environment(anyhow::anyhow!("{}: {e}", state_dir.display())))?;
    Ok(Some(match (state.active, state.previous) {
        (Some(v), Some(p)) => format!("bundle v{v} (last-known-good v{p})"),
        (Some(v), None) => format!("bundle v{v}"),
        (None, _) => "the built-in pack (no bundle active)".into(),
    }))
}

/// The table, the mode `auto` picks and why, and a warning when no process source works.
fn render(rows: &[Probe], ebpf: &Result<(), String>) -> String {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    out += &format!("{:<width$}  {:<3}  detail\n", "capability", "ok");
    for r in rows {
        out += &format!(
            "{:<width$}  {:<3}  {}\n",
            r.name,
            if r.available { "yes" } else { "no" },
            r.detail
        );
    }
    let (mode, reason) = choose_mode(ModeChoice::Auto, || ebpf.clone());
    out += &format!("\nauto mode: {}", mode.as_str());
    if let Some(r) = reason {
        out += &format!(" ({r})");
    }
    let driverless_ok = rows
        .iter()
        .any(|r| r.name == "proc connector" && r.available);
    if mode == Mode::Driverless && !driverless_ok {
        out += "\nwarning: the process connector is unavailable too; the agent will run with \
                log sources only";
    }
    out += &format!("\nself-protection: {}", self_protection(rows, mode));
    out
}

/// How the agent protects itself here: the BPF LSM guard needs BPF LSM (and eBPF mode); where
/// the kernel refuses it, fanotify permission events refuse writes to the agent's files and
/// the rest is detected and reported.
fn self_protection(rows: &[Probe], mode: Mode) -> &'static str {
    let lsm = rows.iter().any(|r| r.name == "lsm" && r.available);
    match (lsm, mode) {
        (true, Mode::Ebpf) => {
            "BPF LSM guard: kill, ptrace, writes, truncation, unlinks and renames of the agent's \
             files, and descriptors to its BPF programs are refused to every other process, \
             root included; a signed maintenance token (`ringfence agent disarm`) lifts it"
        }
        (true, _) => {
            "BPF LSM would load here, but driverless mode loads no BPF: write-opens of the \
             agent's files are refused (fanotify permission events); the supervisor restarts a \
             killed worker; changes to its files are reported as tamper findings"
        }
        (false, Mode::Ebpf) => {
            "BPF LSM refused: write-opens of the agent's files are refused (fanotify permission \
             events); the supervisor restarts a killed worker; signals, ptrace, unlinks, renames \
             and BPF descriptors aimed at the agent are reported as tamper findings with the \
             actor, signals before they land"
        }
        (false, _) => {
            "BPF LSM refused: write-opens of the agent's files are refused (fanotify permission \
             events); the supervisor restarts a killed worker; other changes to its files are \
             reported as tamper findings (signals and ptrace need the eBPF sensor)"
        }
    }
}

/// What to say before the table about this process's privileges: `Err` when it has none of
/// those the sensors need (the table would be EPERM throughout), `Ok(Some)` for a warning
/// line when some are missing.
fn privilege_notice(p: &Privileges) -> Result<Option<String>, String> {
    let missing = p.missing();
    if missing.is_empty() {
        return Ok(None);
    }
    if !p.is_root() && missing.len() == privilege::Capability::ALL.len() {
        return Err(format!(
            "run as root (sudo ringfence doctor): this runs as {} without any of the \
             capabilities the agent's sensors need ({}), so every probe would only say EPERM",
            p.who(),
            privilege::names(&missing)
        ));
    }
    let advice = if p.is_root() {
        "the agent would lack them here too (a container or unit drops them)"
    } else {
        "run as root (sudo ringfence doctor) to see what the agent would get"
    };
    Ok(Some(format!(
        "warning: running as {} without {}: the rows that need them fail with EPERM; {advice}",
        p.who(),
        privilege::names(&missing)
    )))
}

pub fn run(args: Args) -> CmdResult {
    if let Some(content) = active_content(&args)? {
        super::print_line(&format!("content: {content}")).context("writing the table")?;
    }
    if let Ok(store) = ringfence_agent::versions::VersionStore::open_existing(&args.versions_dir) {
        let running = store
            .current()
            .unwrap_or_else(|| "the package's binary".into());
        super::print_line(&format!("agent release: {running}")).context("writing the table")?;
    }
    for line in expired_lines(&args) {
        super::print_line(&line).context("writing the table")?;
    }
    match privilege_notice(&Privileges::current()) {
        Ok(None) => {}
        Ok(Some(warning)) => super::print_line(&warning).context("writing the table")?,
        Err(refusal) => return Err(Failure::blind(anyhow::anyhow!("{refusal}"))),
    }
    let ebpf = ebpf_probe::doctor();
    let mut rows = ebpf.rows;
    rows.extend(probe::driverless());
    super::print_line(&render(&rows, &ebpf.supported)).context("writing the table")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &'static str, available: bool) -> Probe {
        Probe {
            name,
            available,
            detail: String::new(),
        }
    }

    #[test]
    fn an_unprivileged_user_is_told_to_run_as_root_and_a_partial_one_warned() {
        let nobody = Privileges {
            uid: 65534,
            effective: 0,
        };
        let why = privilege_notice(&nobody).unwrap_err();
        assert!(
            why.starts_with("run as root (sudo ringfence doctor)"),
            "{why}"
        );
        let root = Privileges {
            uid: 0,
            effective: u64::MAX,
        };
        assert_eq!(privilege_notice(&root), Ok(None));
        let container = Privileges {
            uid: 0,
            effective: 1 << 12,
        };
        let warning = privilege_notice(&container).unwrap().unwrap();
        assert!(
            warning.contains("running as root without CAP_BPF"),
            "{warning}"
        );
        assert!(!warning.contains("CAP_NET_ADMIN"), "{warning}");
    }

    #[test]
    fn auto_line_follows_the_sensor_and_warns_only_when_nothing_sees_processes() {
        let rows = [row("tp_btf", true), row("proc connector", false)];
        let text = render(&rows, &Ok(()));
        assert!(text.contains("auto mode: ebpf (auto: "), "{text}");
        assert!(text.contains("self-protection: BPF LSM refused"), "{text}");
        assert!(!text.contains("warning"), "{text}");
        let text = render(
            &rows,
            &Err("tp_btf: EPERM (Operation not permitted) at load".into()),
        );
        assert!(
            text.contains(
                "auto mode: driverless (auto: the eBPF sensor cannot run here (tp_btf: EPERM"
            ),
            "{text}"
        );
        assert!(text.contains("warning: the process connector"), "{text}");
    }
}
