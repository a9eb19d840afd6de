//! `ringfence fleet simulate`: a drill of N simulated agents against a real console over
//! loopback HTTP, through a rollout of a faulty content version or agent release (`--fault agent-*`);
//! prints the blast radius and the time to halt.
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
    /// Order a response action on an agent (several, or a tag, after a second operator's
    /// approval); it runs at the agent's next check-in.
    Order(OrderArgs),
    /// List response orders and what became of them, newest first.
    Orders(OrdersArgs),
    /// Enrollment tokens: `enroll-token create` prints a token and the agent's one-line command.
    #[command(name = "enroll-token")]
    EnrollToken(EnrollTokenArgs),
    /// List enrollment tokens, or revoke one.
    Tokens(TokensArgs),
    /// List the agents the console knows.
    Agents(AgentsArgs),
    /// Revoke an agent: every console refuses it within a second.
    Revoke(RevokeArgs),
}

#[derive(Debug, clap::Args)]
struct EnrollTokenArgs {
    #[command(flatten)]
    console: ConsoleArgs,
    #[command(subcommand)]
    command: EnrollTokenSub,
}

#[derive(Debug, clap::Subcommand)]
enum EnrollTokenSub {
    /// Mint a token.
    Create {
        /// How many agents may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: i64,
        /// How long it is good for (at most a year).
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// What it is for (shown in `fleet tokens list`).
        #[arg(long, default_value = "enrollment")]
        label: String,
    },
}

#[derive(Debug, clap::Args)]
struct TokensArgs {
    #[command(flatten)]
    console: ConsoleArgs,
    #[command(subcommand)]
    command: TokensSub,
}

#[derive(Debug, clap::Subcommand)]
enum TokensSub {
    /// Every token: id, label, uses, expiry, revoked.
    List,
    /// Revoke the token with this id (from `list`).
    Revoke { id: String },
}

#[derive(Debug, clap::Args)]
struct AgentsArgs {
    #[command(flatten)]
    console: ConsoleArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct RevokeArgs {
    #[command(flatten)]
    console: ConsoleArgs,
    /// The agent's id.
    agent: String,
    /// Why (kept in the audit log).
    #[arg(long)]
    reason: String,
}

#[derive(Debug, clap::Args)]
struct OrderArgs {
    #[command(flatten)]
    console: ConsoleArgs,
    /// The agent's id (32 hex characters; see `fleet agents`). Repeat for several agents: an
    /// order for more than one waits for a second operator's approval.
    #[arg(long, required_unless_present = "tag")]
    agent: Vec<String>,
    /// Every agent with this tag (`region=eu`, `role=web`); waits for a second operator's
    /// approval.
    #[arg(long)]
    tag: Option<String>,
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

fn enroll_token(a: EnrollTokenArgs) -> CmdResult {
    let EnrollTokenSub::Create { uses, ttl, label } = a.command;
    let ttl_ms = ringfence_console::plan::parse_duration(&ttl)
        .map_err(|e| Failure::refused(anyhow::anyhow!("--ttl: {e}")))?;
    let pins = a.console.trust()?.pins();
    let api = a.console.connect()?;
    let body = serde_json::json!({"max_uses": uses, "ttl_ms": ttl_ms, "label": label});
    let minted: ringfence_console::agents::EnrollmentToken = block_on(async move {
        api.client
            .post_json("/api/v1/enrollment-tokens", Some(&api.token), &body)
            .await
            .map_err(client_failure)
    })?;
    let pin_args: String = pins.iter().map(|p| format!(" --ca-sha256 {p}")).collect();
    print_line(&format!(
        "token: {}   ({} use(s), expires at {} ms since the epoch)",
        minted.token,
        minted.max_uses,
        minted.expires_at.unwrap_or_default()
    ))
    .context("writing to stdout")?;
    print_line(&format!(
        "agent: RINGFENCE_ENROLL_TOKEN={} ringfence agent run --console {}{pin_args} \
         --content-dir /var/lib/ringfence/content --root /etc/ringfence/root.json",
        minted.token, a.console.console
    ))
    .context("writing to stdout")?;
    Ok(())
}

fn tokens(a: TokensArgs) -> CmdResult {
    let api = a.console.connect()?;
    match a.command {
        TokensSub::List => {
            let rows: Vec<ringfence_console::revoke::TokenRow> = block_on(async move {
                api.client
                    .get_json("/api/v1/enrollment-tokens", Some(&api.token))
                    .await
                    .map_err(client_failure)
            })?;
            if rows.is_empty() {
                print_line("no enrollment tokens").context("writing to stdout")?;
            }
            for r in rows {
                let state = if r.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                print_line(&format!(
                    "{}  {}  {}/{} uses  expires {}  {}",
                    r.id,
                    ringfence_wire::printable(&r.label),
                    r.uses,
                    r.max_uses,
                    r.expires_at.unwrap_or_default(),
                    state
                ))
                .context("writing to stdout")?;
            }
        }
        TokensSub::Revoke { id } => {
            let path = format!("/api/v1/enrollment-tokens/{id}/revoke");
            let _: serde_json::Value = block_on(async move {
                api.client
                    .post_json(&path, Some(&api.token), &serde_json::json!({}))
                    .await
                    .map_err(client_failure)
            })?;
            print_line(&format!("token {id} revoked")).context("writing to stdout")?;
        }
    }
    Ok(())
}

fn agents(a: AgentsArgs) -> CmdResult {
    let api = a.console.connect()?;
    let rows: Vec<serde_json::Value> = block_on(async move {
        api.client
            .get_json("/api/v1/agents", Some(&api.token))
            .await
            .map_err(client_failure)
    })?;
    if a.json {
        print_line(&serde_json::to_string_pretty(&rows).context("encoding JSON")?)
            .context("writing to stdout")?;
        return Ok(());
    }
    if rows.is_empty() {
        print_line("no agents").context("writing to stdout")?;
    }
    for r in rows {
        let text = |k: &str| ringfence_wire::printable(r[k].as_str().unwrap_or("-"));
        print_line(&format!(
            "{}  {}  version {}  content v{}  last seen {}",
            text("id"),
            text("hostname"),
            text("agent_version"),
            r["content_version"].as_i64().unwrap_or(0),
            r["last_seen"].as_i64().unwrap_or(0)
        ))
        .context("writing to stdout")?;
    }
    Ok(())
}

fn revoke(a: RevokeArgs) -> CmdResult {
    let api = a.console.connect()?;
    let path = format!("/api/v1/agents/{}/revoke", a.agent);
    let body = serde_json::json!({"reason": a.reason});
    let _: serde_json::Value = block_on(async move {
        api.client
            .post_json(&path, Some(&api.token), &body)
            .await
            .map_err(client_failure)
    })?;
    print_line(&format!(
        "agent {} revoked: every console refuses it within a second",
        a.agent
    ))
    .context("writing to stdout")?;
    Ok(())
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
    if let ([agent], None) = (a.agent.as_slice(), &a.tag) {
        let body = serde_json::json!({"action": action, "reason": a.reason});
        let path = format!("/api/v1/agents/{agent}/orders");
        let view: OrderView = block_on(async move {
            api.client
                .post_json(&path, Some(&api.token), &body)
                .await
                .map_err(client_failure)
        })?;
        print_line(&order_line(&view)).context("writing to stdout")?;
        return Ok(());
    }
    // Several agents or a tag: held for a second operator.
    let body =
        serde_json::json!({"action": action, "reason": a.reason, "agents": a.agent, "tag": a.tag});
    let v: serde_json::Value = block_on(async move {
        api.client
            .post_json("/api/v1/orders", Some(&api.token), &body)
            .await
            .map_err(client_failure)
    })?;
    if let Some(held) = crate::cmd::console_admin::held_message(&v) {
        print_line(&held).context("writing to stdout")?;
        return Ok(());
    }
    let placed: Vec<OrderView> =
        serde_json::from_value(v["orders"].clone()).context("reading the console's answer")?;
    for o in &placed {
        print_line(&order_line(o)).context("writing to stdout")?;
    }
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
    /// What the new content version does: crash, cpu, silent (drops x10), hang (no
    /// heartbeats), none; or the new agent release: agent-crash (crash loop, the supervisor
    /// falls back), agent-hang (goes silent), agent-cpu (CPU x5), agent-none.
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
        Sub::EnrollToken(a) => return enroll_token(a),
        Sub::Tokens(a) => return tokens(a),
        Sub::Agents(a) => return agents(a),
        Sub::Revoke(a) => return revoke(a),
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
    let expected = if !a.fault.is_harmful() {
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
