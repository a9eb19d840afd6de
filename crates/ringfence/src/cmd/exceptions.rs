//! `ringfence exceptions list|create|approve|withdraw|publish`: exceptions made on the console
//! (usually from a finding page), reviewed, and published as signed overlay content with a
//! rollout. See `ringfence_console::exceptions` for the rules.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use ringfence_console::exceptions::{ExceptionView, NewException, PublishRequest, Published};

use crate::cmd::console_api::{ConsoleArgs, block_on, client_failure};
use crate::cmd::print_line;
use crate::{CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    console: ConsoleArgs,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Every exception and its state (pending, approved, published, withdrawn).
    List {
        /// Print the console's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Propose an exception: RULE silenced on --host (repeat; none for every host) where every
    /// --field NAME=VALUE matches (repeat a name for several values).
    Create {
        #[arg(long)]
        rule: String,
        #[arg(long = "host")]
        hosts: Vec<String>,
        #[arg(long = "field", value_name = "NAME=VALUE")]
        fields: Vec<String>,
        /// Why (the reviewer reads it; it is kept in the overlay).
        #[arg(long)]
        comment: String,
        /// The finding it is made from.
        #[arg(long)]
        finding: Option<i64>,
    },
    /// Approve a pending exception; one with no host and no field waits for a second operator.
    Approve { id: i64 },
    /// Withdraw an exception: the next published overlay leaves it out.
    Withdraw { id: i64 },
    /// Build the overlay of every approved and published exception on the fleet's baseline,
    /// sign and publish it as a new content version, and start its rollout.
    Publish {
        #[arg(long, default_value = "")]
        reason: String,
        /// Rollout plan TOML (default: the console's default plan).
        #[arg(long)]
        plan: Option<PathBuf>,
    },
}

fn line(e: &ExceptionView) -> String {
    let on = if e.hosts.is_empty() {
        "every host".to_owned()
    } else {
        e.hosts.join(",")
    };
    let when = if e.fields.is_empty() {
        "always".to_owned()
    } else {
        e.fields
            .iter()
            .map(|(k, v)| format!("{k}={}", v.join("|")))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let published = e
        .published_version
        .map_or(String::new(), |v| format!(" in v{v}"));
    ringfence_wire::printable(&format!(
        "{:>5} {:<10} {} on {on} when {when}{published}  by {} — {}",
        e.id,
        e.state,
        e.rule,
        e.created_by,
        e.comment.lines().next().unwrap_or_default()
    ))
}

/// `NAME=VALUE` pairs as the API's field map.
fn fields_of(pairs: &[String]) -> Result<BTreeMap<String, Vec<String>>, Failure> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in pairs {
        let (k, v) = p.split_once('=').ok_or_else(|| Failure {
            code: 2,
            error: anyhow::anyhow!("--field {p:?}: expected NAME=VALUE"),
        })?;
        out.entry(k.trim().to_owned())
            .or_default()
            .push(v.to_owned());
    }
    Ok(out)
}

pub fn run(args: Args) -> CmdResult {
    let api = args.console.connect()?;
    block_on(async move {
        let out: Vec<String> = match args.command {
            Sub::List { json } => {
                let all: Vec<ExceptionView> = api
                    .client
                    .get_json("/api/v1/exceptions", Some(&api.token))
                    .await
                    .map_err(client_failure)?;
                if json {
                    vec![serde_json::to_string_pretty(&all).context("encoding JSON")?]
                } else if all.is_empty() {
                    vec!["no exceptions".into()]
                } else {
                    all.iter().map(line).collect()
                }
            }
            Sub::Create {
                rule,
                hosts,
                fields,
                comment,
                finding,
            } => {
                let req = NewException {
                    rule,
                    hosts,
                    fields: fields_of(&fields)?,
                    comment,
                    finding,
                };
                let e: ExceptionView = api
                    .client
                    .post_json("/api/v1/exceptions", Some(&api.token), &req)
                    .await
                    .map_err(client_failure)?;
                vec![
                    line(&e),
                    format!(
                        "proposed; a content admin approves it: `ringfence exceptions approve {}`",
                        e.id
                    ),
                ]
            }
            Sub::Approve { id } => {
                let v: serde_json::Value = api
                    .client
                    .post_json(
                        &format!("/api/v1/exceptions/{id}/approve"),
                        Some(&api.token),
                        &serde_json::json!({}),
                    )
                    .await
                    .map_err(client_failure)?;
                if let Some(held) = crate::cmd::console_admin::held_message(&v) {
                    vec![held]
                } else {
                    let e: ExceptionView = serde_json::from_value(v).context("the answer")?;
                    vec![
                        line(&e),
                        "approved; `ringfence exceptions publish` delivers it as content".into(),
                    ]
                }
            }
            Sub::Withdraw { id } => {
                let e: ExceptionView = api
                    .client
                    .post_json(
                        &format!("/api/v1/exceptions/{id}/withdraw"),
                        Some(&api.token),
                        &serde_json::json!({}),
                    )
                    .await
                    .map_err(client_failure)?;
                vec![line(&e)]
            }
            Sub::Publish { reason, plan } => {
                let plan = match plan {
                    Some(p) => Some(
                        std::fs::read_to_string(&p)
                            .with_context(|| format!("reading {}", p.display()))
                            .map_err(Failure::refused)?,
                    ),
                    None => None,
                };
                let p: Published = api
                    .client
                    .post_json(
                        "/api/v1/exceptions/publish",
                        Some(&api.token),
                        &PublishRequest { reason, plan },
                    )
                    .await
                    .map_err(client_failure)?;
                let mut out = vec![format!(
                    "published content v{} = v{} + {} exception(s) {:?}",
                    p.version,
                    p.base_version,
                    p.exceptions.len(),
                    p.exceptions
                )];
                out.extend(crate::cmd::rollout::describe(&p.rollout));
                out
            }
        };
        for l in out {
            print_line(&l).context("writing to stdout")?;
        }
        Ok(())
    })
}
