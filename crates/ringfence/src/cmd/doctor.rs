//! `ringfence doctor`: what this host offers each sensor, and the mode `auto` picks. Probes
//! only: the eBPF rows load a probe object and then the sensor itself, and unload them again;
//! the driverless rows open what their source would and close it at once.

use anyhow::Context;
use ringfence_agent::{ModeChoice, choose_mode};
use ringfence_event::Mode;
use ringfence_sensor::ebpf::probe as ebpf_probe;
use ringfence_sensor::probe::{self, Probe};

use crate::CmdResult;

#[derive(Debug, clap::Args)]
pub struct Args {}

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

pub fn run(_args: Args) -> CmdResult {
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
