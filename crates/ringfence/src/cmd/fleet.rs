//! `ringfence fleet simulate`: a drill of N simulated agents against a real console over
//! loopback HTTP, through a rollout of a faulty content version; prints the blast radius.
//!
//! `ringfence fleet order --agent ID kill|quarantine|restore|block|unblock … --reason TEXT` and
//! `ringfence fleet orders [--agent ID]`: response actions ordered through the console (the
//! agent runs them at its next check-in, behind its own guard rails), with the console URL and
//! operator token as `ringfence rollout` takes them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ringfence_console::drill::{self, DrillOptions, Fault};
use ringfence_console::orders::OrderView;
use ringfence_wire::{AgentId, OrderAction};

use crate::cmd::console_api::{ConsoleArgs, block_on, client_failure};
use crate::cmd::print_line;
use crate::{CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Run a drill and print `blast radius: X/N agents activated the bad version (P%)`.
    Simulate(SimArgs),
    /// Order a response action on one agent; it runs at the agent's next check-in.
    Order(OrderArgs),
    /// List response orders and what became of them, newest first.
    Orders(OrdersArgs),
}

#[derive(Debug, clap::Args)]
struct OrderArgs {
    #[command(flatten)]
    console: ConsoleArgs,
    /// The agent's id (32 hex characters; see the dashboard or `GET /api/v1/agents`).
    #[arg(long)]
    agent: String,
    /// Why: kept with the order and in the audit log.
    #[arg(long)]
    reason: String,
    #[command(subcommand)]
    action: OrderSub,
}

#[derive(Debug, clap::Subcommand)]
enum OrderSub {
    /// SIGKILL a process (and its descendants with --tree).
    Kill {
        pid: u32,
        #[arg(long)]
        tree: bool,
        /// The process's start time in clock ticks since boot (field 22 of /proc/PID/stat):
        /// the agent refuses a kill without it, so a recycled pid is never killed.
        #[arg(long)]
        start_ticks: u64,
    },
    /// Move a file into the agent's quarantine store.
    Quarantine { path: String },
    /// Put a quarantined file back.
    Restore { id: String },
    /// Drop traffic to and from an address.
    Block {
        ip: std::net::IpAddr,
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Lift a block.
    Unblock { ip: std::net::IpAddr },
}

#[derive(Debug, clap::Args)]
struct OrdersArgs {
    #[command(flatten)]
    console: ConsoleArgs,
    /// Only this agent's orders.
    #[arg(long)]
    agent: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// One order as a line; every text an agent or operator wrote is escaped, so an agent's
/// `detail` cannot send escape sequences to the operator's terminal.
fn order_line(o: &OrderView) -> String {
    use ringfence_wire::printable;
    let detail = if o.detail.is_empty() {
        String::new()
    } else {
        format!("  ({})", printable(&o.detail))
    };
    format!(
        "order {}  agent {}  {}  {}  by {}: {}{detail}",
        o.id,
        printable(&o.agent_id),
        printable(&o.action.to_string()),
        printable(&o.state),
        printable(&o.requested_by),
        printable(&o.reason)
    )
}

fn order(a: OrderArgs) -> CmdResult {
    let action = match a.action {
        OrderSub::Kill {
            pid,
            tree,
            start_ticks,
        } => OrderAction::Kill {
            pid,
            tree,
            start_ticks: Some(start_ticks),
        },
        OrderSub::Quarantine { path } => OrderAction::Quarantine { path },
        OrderSub::Restore { id } => OrderAction::Restore { id },
        OrderSub::Block { ip, ttl } => {
            let ms = ringfence_console::plan::parse_duration(&ttl)
                .map_err(|e| Failure::refused(anyhow::anyhow!("--ttl: {e}")))?;
            OrderAction::BlockIp {
                ip,
                ttl_secs: u64::try_from(ms / 1000).unwrap_or(0),
            }
        }
        OrderSub::Unblock { ip } => OrderAction::UnblockIp { ip },
    };
    let api = a.console.connect()?;
    let body = serde_json::json!({"action": action, "reason": a.reason});
    let path = format!("/api/v1/agents/{}/orders", a.agent);
    let view: OrderView = block_on(async move {
        api.client
            .post_json(&path, Some(&api.token), &body)
            .await
            .map_err(client_failure)
    })?;
    print_line(&order_line(&view)).context("writing to stdout")?;
    Ok(())
}

fn orders(a: OrdersArgs) -> CmdResult {
    let api = a.console.connect()?;
    let mut path = format!("/api/v1/orders?limit={}", a.limit.max(1));
    if let Some(agent) = &a.agent {
        if AgentId::try_from(agent.clone()).is_err() {
            return Err(Failure::refused(anyhow::anyhow!(
                "--agent must be 32 lowercase hex characters, got {agent:?}"
            )));
        }
        path.push_str(&format!("&agent={agent}"));
    }
    let list: Vec<OrderView> = block_on(async move {
        api.client
            .get_json(&path, Some(&api.token))
            .await
            .map_err(client_failure)
    })?;
    if a.json {
        print_line(&serde_json::to_string_pretty(&list).context("encoding JSON")?)
            .context("writing to stdout")?;
    } else if list.is_empty() {
        print_line("no orders").context("writing to stdout")?;
    } else {
        for o in &list {
            print_line(&order_line(o)).context("writing to stdout")?;
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
struct SimArgs {
    /// Number of simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// What the new version does: crash, cpu, silent (drops x10), hang (no heartbeats), none.
    #[arg(long, default_value = "crash")]
    fault: Fault,
    /// Clock speed-up (default: about 4000 check-ins per real second, at most 300x).
    #[arg(long)]
    speed: Option<f64>,
    /// Use this console instead of starting one on 127.0.0.1:0 (its clock must run at --speed:
    /// `console serve --clock-speed`).
    #[arg(long, env = "RINGFENCE_CONSOLE")]
    console: Option<String>,
    /// Operator token for --console.
    #[arg(long, env = "RINGFENCE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The --console's CA pin; repeat while a CA rotates. Or `RINGFENCE_CA_SHA256`.
    #[arg(long = "ca-sha256", env = "RINGFENCE_CA_SHA256", value_delimiter = ',')]
    ca_sha256: Vec<String>,
    /// Rollout plan TOML (default: the drill plan, canary 1% -> 10% -> 50% -> 100%).
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Database for the in-process console (default: SQLite in a temporary directory).
    #[arg(long)]
    db: Option<String>,
    /// Simulated check-in interval.
    #[arg(long, default_value = "5m")]
    checkin_interval: String,
    /// Give up after this many real seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Progress on stderr.
    #[arg(long, short)]
    verbose: bool,
}

pub fn run(args: Args) -> CmdResult {
    let a = match args.command {
        Sub::Simulate(a) => a,
        Sub::Order(a) => return order(a),
        Sub::Orders(a) => return orders(a),
    };
    let mut opts = DrillOptions::new(a.agents, a.fault);
    opts.speed = a.speed;
    opts.checkin_interval_ms = ringfence_console::plan::parse_duration(&a.checkin_interval)
        .map_err(|e| Failure::refused(anyhow::anyhow!("--checkin-interval: {e}")))?;
    opts.plan = match &a.plan {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))
                .map_err(Failure::refused)?,
        ),
        None => None,
    };
    opts.console = match (a.console, a.token) {
        (Some(url), Some(token)) => {
            let pins = a
                .ca_sha256
                .iter()
                .filter(|p| !p.trim().is_empty())
                .map(|p| ringfence_wire::CaPin::parse(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Failure::refused(anyhow::anyhow!("--ca-sha256: {e}")))?;
            if pins.is_empty() {
                return Err(Failure {
                    code: 2,
                    error: anyhow::anyhow!(
                        "--console needs the console's CA pin: --ca-sha256 (or RINGFENCE_CA_SHA256)"
                    ),
                });
            }
            opts.trust = ringfence_wire::Trust::Pinned(pins);
            Some((url, token))
        }
        (Some(_), None) => {
            return Err(Failure {
                code: 2,
                error: anyhow::anyhow!("--console needs --token (or RINGFENCE_TOKEN)"),
            });
        }
        _ => None,
    };
    opts.db_url = a.db;
    opts.timeout = Duration::from_secs(a.timeout);
    opts.verbose = a.verbose;
    if a.agents == 0 {
        return Err(Failure::refused(anyhow::anyhow!(
            "--agents must be at least 1"
        )));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = rt
        .block_on(drill::run(opts))
        .map_err(Failure::environment)?;
    if a.json {
        print_line(&serde_json::to_string_pretty(&report).context("encoding JSON")?)
            .context("writing to stdout")?;
    } else {
        for line in report.lines() {
            print_line(&line).context("writing to stdout")?;
        }
    }
    let expected = if a.fault == Fault::None {
        "completed"
    } else {
        "rolled_back"
    };
    if report.final_state != expected {
        return Err(Failure::environment(anyhow::anyhow!(
            "the rollout ended {} instead of {expected}",
            report.final_state
        )));
    }
    Ok(())
}
