//! `ringfence doctor`: what this host offers each sensor, and the mode `auto` picks. Probes
//! only: the eBPF rows load a probe object and then the sensor itself, and unload them again;
//! the driverless rows open what their source would and close it at once.
//!
//! Without privileges the probes would only say EPERM: an unprivileged user is told to run it
//! as root (exit 4) instead; a process missing some capabilities gets the table under a line
//! naming them.
//!
//! In eBPF mode it also counts the rules of the content the agent runs (the store's active
//! bundle, else the built-in pack) that can never fire because `[sensor] profile` gives their
//! event kinds no hook on this kernel, and names the remedy.

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
    if args.config.is_none() && args.content_dir.is_none() {
        return Ok(None);
    }
    let config = agent_config(args)?;
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

/// The agent's configuration as `args` give it (the defaults without `--config`).
fn agent_config(args: &Args) -> Result<ringfence_agent::Config, Failure> {
    let mut config = match &args.config {
        Some(path) => ringfence_agent::Config::load(path).map_err(Failure::refused)?,
        None => ringfence_agent::Config::default(),
    };
    if let Some(d) = &args.content_dir {
        config.content.dir = Some(d.clone());
    }
    Ok(config)
}

/// The rule files of the content an agent with `config` runs: the store's active bundle, or
/// the built-in pack; the error names the store and the step that failed.
fn running_rules(config: &ringfence_agent::Config) -> Result<Vec<(String, String)>, String> {
    let builtin = || {
        ringfence_agent::content::sigma::builtin_files()
            .iter()
            .filter(|(p, _)| p.starts_with("rules/"))
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect()
    };
    let Some(dir) = config.content.state_dir() else {
        return Ok(builtin());
    };
    if !dir.join("state.json").exists() {
        return Ok(builtin());
    }
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", dir.display());
    let store = ringfence_content::ContentStore::open(&dir).map_err(|e| at(&e))?;
    let Some(version) = store.state().map_err(|e| at(&e))?.active else {
        return Ok(builtin());
    };
    let limits = ringfence_content::Limits::default();
    let bytes = store
        .read_bundle(version, limits.max_total_bytes)
        .map_err(|e| at(&format!("bundle v{version}: {e}")))?;
    let signed = ringfence_content::SignedBundle::decode(&bytes, &limits)
        .map_err(|e| at(&format!("bundle v{version}: {e}")))?;
    let bundle = ringfence_content::Bundle::decode(&signed.payload, &limits)
        .map_err(|e| at(&format!("bundle v{version} payload: {e}")))?;
    Ok(bundle
        .rules()
        .filter_map(|(p, b)| Some((p.to_owned(), std::str::from_utf8(b).ok()?.to_owned())))
        .collect())
}

/// The doctor's line on rules without a hook, for eBPF mode on this kernel (`rows` say whether
/// it allows trampolines).
fn unhooked_line(config: &ringfence_agent::Config, rows: &[Probe]) -> String {
    use ringfence_sensor::ebpf::Trampolines;
    let trampolines = if rows.iter().any(|r| r.name == "fentry" && r.available) {
        Trampolines::Allowed
    } else {
        Trampolines::Refused
    };
    let profile = config.sensor.profile;
    let unhooked = ringfence_agent::mode::unhooked_here(config, profile, trampolines);
    let under = format!("[sensor] profile = \"{}\"", profile.as_str());
    let rules = match running_rules(config) {
        Ok(rules) => rules,
        Err(e) => {
            return format!(
                "content rules without a hook: unknown (the active bundle could not be read back: {e})"
            );
        }
    };
    let texts: Vec<(&str, &str)> = rules
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let dead = ringfence_agent::content::sigma::unhooked_in(&texts, &unhooked, &under);
    if dead.is_empty() {
        return format!("content rules without a hook: none under {under}");
    }
    format!(
        "content rules without a hook: {} can never fire under {under} here ({}; `ringfence \
         rules check` lists them)",
        dead.len(),
        ringfence_detect::hooked::remedies(&unhooked)
    )
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
    if ebpf.supported.is_ok() {
        let config = agent_config(&args)?;
        super::print_line(&unhooked_line(&config, &rows)).context("writing the table")?;
    }
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

    #[test]
    fn the_builtin_packs_rules_without_a_hook_follow_the_profile_and_the_kernel() {
        let mut config = ringfence_agent::Config::default();
        let no_trampolines = [row("fentry", false)];
        let line = unhooked_line(&config, &no_trampolines);
        assert!(
            line.starts_with("content rules without a hook: ")
                && line.contains(" can never fire under [sensor] profile = \"default\" here")
                && line.contains("[sensor] profile = \"deep\" would hook ")
                && line.contains("bpf-load"),
            "{line}"
        );
        // With trampolines, or in `deep`, bpf() has a hook; what is left (module loads on a
        // kernel built without modules, as here) has no profile to enable it.
        let with_trampolines = unhooked_line(&config, &[row("fentry", true)]);
        config.sensor.profile = ringfence_sensor::ebpf::Profile::Deep;
        let deep = unhooked_line(&config, &no_trampolines);
        for line in [with_trampolines, deep] {
            assert!(
                line.starts_with("content rules without a hook: none under")
                    || (!line.contains("bpf-load")
                        && line.contains(
                            "another kernel (this one has none of its hooks) would hook"
                        )),
                "{line}"
            );
        }
    }
}
