//! `ringfence doctor`: what this host offers each sensor, and the mode `auto` picks. Probes
//! only; nothing on the host is changed.

use anyhow::Context;
use ringfence_agent::{ModeChoice, resolve_mode};
use ringfence_sensor::probe::{self, Probe};

use crate::CmdResult;

#[derive(Debug, clap::Args)]
pub struct Args {}

fn btf() -> Probe {
    let path = "/sys/kernel/btf/vmlinux";
    match std::fs::metadata(path) {
        Ok(m) => Probe {
            name: "BTF",
            available: true,
            detail: format!("{path} ({} KiB)", m.len() / 1024),
        },
        Err(e) => Probe {
            name: "BTF",
            available: false,
            detail: format!("{path}: {e}"),
        },
    }
}

fn ebpf_rows() -> Vec<Probe> {
    // The eBPF sensor's own probe (bpf syscall, program types, ring buffer) plugs in here
    // when `ringfence_sensor::ebpf` is part of the build.
    [
        "bpf syscall",
        "tracepoint",
        "raw_tp",
        "tp_btf",
        "lsm",
        "fentry",
        "ring buffer",
    ]
    .into_iter()
    .map(|name| Probe {
        name,
        available: false,
        detail: "not probed: the eBPF sensor is not part of this build".into(),
    })
    .collect()
}

pub fn run(_args: Args) -> CmdResult {
    let mut rows = vec![btf()];
    rows.extend(ebpf_rows());
    rows.extend(probe::driverless());
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    out += &format!("{:<width$}  {:<3}  detail\n", "capability", "ok");
    for r in &rows {
        out += &format!(
            "{:<width$}  {:<3}  {}\n",
            r.name,
            if r.available { "yes" } else { "no" },
            r.detail
        );
    }
    let (mode, reason) = resolve_mode(ModeChoice::Auto);
    let driverless_ok = rows
        .iter()
        .any(|r| r.name == "proc connector" && r.available);
    out += &format!("\nauto mode: {}", mode.as_str());
    if let Some(r) = reason {
        out += &format!(" ({r})");
    }
    if !driverless_ok {
        out += "\nwarning: the process connector is unavailable; the agent will run with log sources only";
    }
    super::print_line(&out).context("writing the table")?;
    Ok(())
}
