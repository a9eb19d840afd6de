//! `ringfence fleet inventory`: the operator's questions about what the fleet's hosts have.
//! With `--package NAME [--below V] [--at-least V]`, which hosts have that Debian package,
//! within those versions (dpkg's order: "which hosts run openssh-server below the fixed
//! version"); with `--agent ID`, one host's whole inventory. Text by default, `--json` for
//! scripts. Every value from an agent is printed through [`ringfence_wire::printable`], so a
//! package name cannot forge a line on the operator's terminal.

use anyhow::Context;

use crate::cmd::console_api::{ConsoleArgs, block_on, client_failure};
use crate::cmd::print_line;
use crate::{CmdResult, Failure};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["package", "agent"])))]
pub struct InventoryArgs {
    #[command(flatten)]
    console: ConsoleArgs,
    /// The hosts that have this package.
    #[arg(long)]
    package: Option<String>,
    /// Only versions lower than this (with --package).
    #[arg(long, requires = "package")]
    below: Option<String>,
    /// Only versions at or above this (with --package).
    #[arg(long = "at-least", requires = "package")]
    at_least: Option<String>,
    /// One host's whole inventory.
    #[arg(long)]
    agent: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: InventoryArgs) -> CmdResult {
    let api = a.console.connect()?;
    let path = match (&a.package, &a.agent) {
        (Some(name), _) => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("name", name);
            if let Some(v) = &a.below {
                q.append_pair("below", v);
            }
            if let Some(v) = &a.at_least {
                q.append_pair("at_least", v);
            }
            q.append_pair("limit", "100000");
            format!("/api/v1/inventory/packages?{}", q.finish())
        }
        (None, Some(agent)) => format!(
            "/api/v1/agents/{}/inventory",
            form_urlencoded::byte_serialize(agent.as_bytes()).collect::<String>()
        ),
        (None, None) => {
            return Err(Failure {
                code: 2,
                error: anyhow::anyhow!("say what to look up: --package NAME or --agent ID"),
            });
        }
    };
    let answer: serde_json::Value = block_on(async move {
        api.client
            .get_json(&path, Some(&api.token))
            .await
            .map_err(client_failure)
    })?;
    let out = |line: &str| -> CmdResult {
        print_line(line).context("writing to stdout")?;
        Ok(())
    };
    if a.json {
        return out(&serde_json::to_string_pretty(&answer).context("encoding JSON")?);
    }
    let text = |v: &serde_json::Value| ringfence_wire::printable(v.as_str().unwrap_or("-"));
    if a.package.is_some() {
        let rows = answer.as_array().cloned().unwrap_or_default();
        for r in &rows {
            out(&format!(
                "{}  {}  {} {}",
                text(&r["agent_id"]),
                text(&r["hostname"]),
                text(&r["version"]),
                text(&r["architecture"])
            ))?;
        }
        return out(&format!("{} host(s)", rows.len()));
    }
    let inv = &answer["inventory"];
    let count = |k: &str| inv[k].as_array().map_or(0, Vec::len);
    out(&format!(
        "agent {}  digest {}  updated {} ms since the epoch",
        text(&answer["agent_id"]),
        text(&answer["sha256"]),
        answer["updated_at"].as_i64().unwrap_or(0)
    ))?;
    out(&format!(
        "{} packages, {} listening sockets, {} users, {} groups, {} kernel modules, {} systemd units, {} cron entries",
        count("packages"),
        count("listening"),
        count("users"),
        count("groups"),
        count("kernel_modules"),
        count("systemd_units"),
        count("cron")
    ))?;
    for s in inv["listening"].as_array().cloned().unwrap_or_default() {
        out(&format!(
            "listening {}  {}",
            text(&s["address"]),
            text(&s["process"])
        ))?;
    }
    for p in inv["packages"].as_array().cloned().unwrap_or_default() {
        out(&format!(
            "package {} {}",
            text(&p["name"]),
            text(&p["version"])
        ))?;
    }
    Ok(())
}
