//! `ringfence console operators|tokens|approvals|approve`: operators with roles, their API
//! tokens, and the second operator's approval of held actions, through the console API with
//! the operator token (`--console`, `--token` as `rollout` and `fleet` take them).

use anyhow::Context;
use ringfence_console::approvals::ApprovalView;
use ringfence_console::operators::{OperatorRow, TokenRow};
use ringfence_wire::printable;

use crate::cmd::console_api::{ConsoleArgs, block_on, client_failure};
use crate::cmd::print_line;
use crate::{CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct OperatorsArgs {
    #[command(flatten)]
    console: ConsoleArgs,
    #[command(subcommand)]
    command: OperatorsSub,
}

#[derive(Debug, clap::Subcommand)]
enum OperatorsSub {
    /// Every operator with their role.
    List,
    /// Create an operator; prints their password and first API token once.
    Add {
        name: String,
        /// viewer, responder, content_admin or admin.
        #[arg(long)]
        role: String,
        /// Lifetime of the API token (default 90d, at most 365d).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Change an operator's role (takes effect at their next request, on every console).
    Role {
        name: String,
        role: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct TokensArgs {
    #[command(flatten)]
    console: ConsoleArgs,
    #[command(subcommand)]
    command: TokensSub,
}

#[derive(Debug, clap::Subcommand)]
enum TokensSub {
    /// Every API token: id, operator, expiry, state (never the token).
    List,
    /// Mint an API token for an operator; printed once.
    Create {
        #[arg(long)]
        operator: String,
        /// Lifetime (default 90d, at most 365d).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Revoke a token by its id: every console refuses it from its next revision poll.
    Revoke {
        id: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct ApprovalsArgs {
    #[command(flatten)]
    console: ConsoleArgs,
    /// Also decided and expired requests.
    #[arg(long)]
    all: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RejectArgs {
    #[command(flatten)]
    console: ConsoleArgs,
    /// The request's id (`console approvals`).
    id: i64,
    /// Why (kept with the request and in the audit log).
    #[arg(long)]
    reason: String,
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    console: ConsoleArgs,
    /// The request's id (`console approvals`).
    id: i64,
}

fn ttl_ms(ttl: Option<&str>) -> Result<Option<i64>, Failure> {
    ttl.map(|t| {
        ringfence_console::plan::parse_duration(t)
            .map_err(|e| Failure::refused(anyhow::anyhow!("--ttl: {e}")))
    })
    .transpose()
}

fn out(line: &str) -> CmdResult {
    print_line(line).context("writing to stdout")?;
    Ok(())
}

fn utc(ms: i64) -> String {
    ringfence_console::dashboard::utc(ms)
}

pub fn operators(a: OperatorsArgs) -> CmdResult {
    let api = a.console.connect()?;
    match a.command {
        OperatorsSub::List => {
            let list: Vec<OperatorRow> = block_on(async move {
                api.client
                    .get_json("/api/v1/operators", Some(&api.token))
                    .await
                    .map_err(client_failure)
            })?;
            for o in &list {
                out(&format!(
                    "{:<24} {:<14} {} live token(s)",
                    printable(&o.name),
                    printable(&o.role),
                    o.live_tokens
                ))?;
            }
        }
        OperatorsSub::Add { name, role, ttl } => {
            let body =
                serde_json::json!({"name": name, "role": role, "ttl_ms": ttl_ms(ttl.as_deref())?});
            let v: serde_json::Value = block_on(async move {
                api.client
                    .post_json("/api/v1/operators", Some(&api.token), &body)
                    .await
                    .map_err(client_failure)
            })?;
            out(&format!(
                "operator: {}\nrole:     {}\npassword: {}\napi token: {}   (expires {})",
                printable(v["name"].as_str().unwrap_or_default()),
                printable(v["role"].as_str().unwrap_or_default()),
                v["password"].as_str().unwrap_or_default(),
                v["token"].as_str().unwrap_or_default(),
                utc(v["expires_at"].as_i64().unwrap_or(0))
            ))?;
        }
        OperatorsSub::Role { name, role, reason } => {
            let path = format!("/api/v1/operators/{name}/role");
            let body = serde_json::json!({"role": role, "reason": reason});
            let _: serde_json::Value = block_on(async move {
                api.client
                    .post_json(&path, Some(&api.token), &body)
                    .await
                    .map_err(client_failure)
            })?;
            out(&format!(
                "{} is now {}: every console applies it at its next revision poll",
                printable(&name),
                printable(&role)
            ))?;
        }
    }
    Ok(())
}

pub fn tokens(a: TokensArgs) -> CmdResult {
    let api = a.console.connect()?;
    match a.command {
        TokensSub::List => {
            let list: Vec<TokenRow> = block_on(async move {
                api.client
                    .get_json("/api/v1/tokens", Some(&api.token))
                    .await
                    .map_err(client_failure)
            })?;
            for t in &list {
                out(&format!(
                    "{}  {:<24} {:<8} expires {}",
                    t.id,
                    printable(&t.operator),
                    t.state,
                    t.expires_at.map_or_else(|| "never".to_owned(), utc)
                ))?;
            }
        }
        TokensSub::Create { operator, ttl } => {
            let body = serde_json::json!({"operator": operator, "ttl_ms": ttl_ms(ttl.as_deref())?});
            let v: serde_json::Value = block_on(async move {
                api.client
                    .post_json("/api/v1/tokens", Some(&api.token), &body)
                    .await
                    .map_err(client_failure)
            })?;
            out(&format!(
                "api token: {}\nid:        {}   (expires {})",
                v["token"].as_str().unwrap_or_default(),
                v["id"].as_str().unwrap_or_default(),
                utc(v["expires_at"].as_i64().unwrap_or(0))
            ))?;
        }
        TokensSub::Revoke { id, reason } => {
            let path = format!("/api/v1/tokens/{id}/revoke");
            let body = serde_json::json!({"reason": reason});
            let _: serde_json::Value = block_on(async move {
                api.client
                    .post_json(&path, Some(&api.token), &body)
                    .await
                    .map_err(client_failure)
            })?;
            out(&format!(
                "token {id} revoked: every console refuses it from its next revision poll"
            ))?;
        }
    }
    Ok(())
}

/// One held request as a line; every text is escaped.
pub fn approval_line(v: &ApprovalView) -> String {
    let decided = match (&v.decided_by, v.decided_at) {
        (Some(by), Some(at)) => format!("  {} by {} at {}", v.state, printable(by), utc(at)),
        _ => format!("  {} until {}", v.state, utc(v.expires_at)),
    };
    format!(
        "approval {}  {}  requested by {}: {}  (reason: {}){decided}",
        v.id,
        printable(&v.kind),
        printable(&v.requested_by),
        printable(&v.summary),
        printable(&v.reason)
    )
}

pub fn approvals(a: ApprovalsArgs) -> CmdResult {
    let api = a.console.connect()?;
    let path = format!("/api/v1/approvals{}", if a.all { "?all=true" } else { "" });
    let list: Vec<ApprovalView> = block_on(async move {
        api.client
            .get_json(&path, Some(&api.token))
            .await
            .map_err(client_failure)
    })?;
    if a.json {
        return out(&serde_json::to_string_pretty(&list).context("encoding JSON")?);
    }
    if list.is_empty() {
        return out("no requests waiting for approval");
    }
    for v in &list {
        out(&approval_line(v))?;
    }
    Ok(())
}

pub fn approve(a: ApproveArgs) -> CmdResult {
    let api = a.console.connect()?;
    let path = format!("/api/v1/approvals/{}/approve", a.id);
    let v: serde_json::Value = block_on(async move {
        api.client
            .post_json(&path, Some(&api.token), &serde_json::json!({}))
            .await
            .map_err(client_failure)
    })?;
    let approval: ApprovalView =
        serde_json::from_value(v["approval"].clone()).context("reading the console's answer")?;
    out(&approval_line(&approval))?;
    out("the action ran")
}

pub fn reject(a: RejectArgs) -> CmdResult {
    let api = a.console.connect()?;
    let path = format!("/api/v1/approvals/{}/reject", a.id);
    let body = serde_json::json!({"reason": a.reason});
    let v: ApprovalView = block_on(async move {
        api.client
            .post_json(&path, Some(&api.token), &body)
            .await
            .map_err(client_failure)
    })?;
    out(&approval_line(&v))
}

/// The console's message when it held a request for a second operator, if it did.
pub fn held_message(v: &serde_json::Value) -> Option<String> {
    let held: ApprovalView = serde_json::from_value(v.get("pending_approval")?.clone()).ok()?;
    Some(format!(
        "{}\n{}",
        approval_line(&held),
        printable(v["message"].as_str().unwrap_or_default())
    ))
}
