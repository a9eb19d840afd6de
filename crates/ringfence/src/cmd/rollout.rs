//! `ringfence rollout start|status|halt|resume|rollback|promote|emergency|default-plan`: the
//! operator's side of grayscale rollouts, talking to the console API with the operator token.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ringfence_console::plan::{Plan, format_duration};
use ringfence_console::rollout::{ActionRequest, RolloutView, StartRequest};

use crate::cmd::console_api::{Api, ConsoleArgs, block_on, client_failure};
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
    /// Publish a signed bundle as a content version (served to agents as a static file).
    Publish {
        #[arg(long)]
        version: i64,
        #[arg(long)]
        bundle: PathBuf,
        /// Make it the fleet's baseline, the version every agent runs outside rollouts. Only
        /// while the fleet has none: after that the baseline moves by rollouts alone.
        #[arg(long)]
        baseline: bool,
    },
    /// Start a rollout of a published content version (or publish `--bundle` as it first).
    Start {
        #[arg(long)]
        version: i64,
        /// Plan TOML (default: canary 1% -> 10% -> 50% -> 100%; see `rollout default-plan`).
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Publish this signed bundle as `--version` before starting.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Override maintenance windows (audited).
        #[arg(long)]
        emergency: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Show a rollout (default: the active or latest one).
    Status {
        id: Option<i64>,
        /// Print the console's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop delivering the new version; agents keep what they run.
    Halt(Action),
    /// Continue a halted or paused rollout.
    Resume(Action),
    /// Halt and roll back: the previous content is republished under a higher version.
    Rollback(Action),
    /// Start the next ring now; refused unless the current ring passed its gate.
    Promote {
        id: Option<i64>,
        /// The ring to start; must be the next one.
        #[arg(long)]
        ring: Option<i64>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Set (or with --off clear) the emergency flag: maintenance windows are overridden.
    Emergency {
        id: Option<i64>,
        #[arg(long)]
        off: bool,
        #[arg(long)]
        reason: String,
    },
    /// Print the default plan as TOML.
    DefaultPlan,
}

#[derive(Debug, clap::Args)]
struct Action {
    id: Option<i64>,
    #[arg(long, default_value = "")]
    reason: String,
}

impl Api {
    /// Upload a signed bundle as content `version` (and the fleet's first baseline).
    async fn publish(&self, version: i64, bundle: &Path, baseline: bool) -> Result<bool, Failure> {
        let bytes = std::fs::read(bundle)
            .with_context(|| format!("reading {}", bundle.display()))
            .map_err(Failure::refused)?;
        let query = if baseline { "?baseline=true" } else { "" };
        let v: serde_json::Value = self
            .client
            .put_bytes(
                &format!("/api/v1/content/{version}{query}"),
                Some(&self.token),
                bytes,
            )
            .await
            .map_err(client_failure)?;
        // A first baseline signed to drop rules waits for a second operator.
        if let Some(held) = crate::cmd::console_admin::held_message(&v) {
            print_line(&held).context("writing to stdout")?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn pick(&self, id: Option<i64>) -> Result<i64, Failure> {
        if let Some(id) = id {
            return Ok(id);
        }
        let all: Vec<RolloutView> = self
            .client
            .get_json("/api/v1/rollouts", Some(&self.token))
            .await
            .map_err(client_failure)?;
        all.iter()
            .find(|r| matches!(r.state.as_str(), "running" | "paused" | "halted"))
            .or(all.first())
            .map(|r| r.id)
            .ok_or_else(|| Failure::refused(anyhow::anyhow!("no rollouts yet")))
    }

    async fn act(
        &self,
        id: Option<i64>,
        action: &str,
        req: &ActionRequest,
    ) -> Result<serde_json::Value, Failure> {
        let id = self.pick(id).await?;
        self.client
            .post_json(
                &format!("/api/v1/rollouts/{id}/{action}"),
                Some(&self.token),
                req,
            )
            .await
            .map_err(client_failure)
    }
}

/// Human-readable status.
pub fn describe(v: &RolloutView) -> Vec<String> {
    let mut out = vec![format!(
        "rollout {}: v{} -> v{}  {}{}  ring {} of {}  ({} agents in the fleet)",
        v.id,
        v.from_version,
        v.to_version,
        v.state,
        if v.emergency { " EMERGENCY" } else { "" },
        v.current_ring,
        v.rings.len(),
        v.fleet
    )];
    if !v.reason.is_empty() {
        out.push(format!("  {}", v.reason));
    }
    if let Some(rb) = v.rollback_version {
        out.push(format!(
            "  rolled back with v{rb} (carries v{})",
            v.from_version
        ));
    }
    for r in &v.rings {
        let gate = r.gate.as_ref().map_or(String::new(), |g| {
            format!("  gate {}: {}", g.verdict.as_str(), g.reason)
        });
        out.push(format!(
            "  [{}] {:<10} {:<24} bake {:<8} {:<8} {}/{} on v{}{}  {} controls{}",
            r.idx,
            r.name,
            r.selector,
            format_duration(r.bake_ms),
            r.state,
            r.on_new,
            r.members,
            v.to_version,
            if r.on_rollback > 0 {
                format!(", {} rolled back", r.on_rollback)
            } else {
                String::new()
            },
            r.controls,
            gate
        ));
    }
    out
}

fn print_all(lines: &[String]) -> CmdResult {
    for l in lines {
        print_line(l).context("writing to stdout")?;
    }
    Ok(())
}

pub fn run(args: Args) -> CmdResult {
    if let Sub::DefaultPlan = args.command {
        return print_all(&[Plan::default_toml().trim_end().to_owned()]);
    }
    let api = args.console.connect()?;
    block_on(async move {
        let view = match args.command {
            Sub::DefaultPlan => return Ok(()),
            Sub::Publish {
                version,
                bundle,
                baseline,
            } => {
                let held = api.publish(version, &bundle, baseline).await?;
                return print_all(&[format!(
                    "published content version {version}{}",
                    if held {
                        "; the baseline waits for approval"
                    } else if baseline {
                        " as the fleet's baseline: every agent may run it now"
                    } else {
                        ""
                    }
                )]);
            }
            Sub::Start {
                version,
                plan,
                bundle,
                emergency,
                reason,
            } => {
                let plan = match plan {
                    Some(p) => {
                        let text = std::fs::read_to_string(&p)
                            .with_context(|| format!("reading {}", p.display()))
                            .map_err(Failure::refused)?;
                        Plan::parse(&text).map_err(|errs| {
                            Failure::refused(anyhow::anyhow!(
                                "{}: {}",
                                p.display(),
                                errs.join("; ")
                            ))
                        })?;
                        Some(text)
                    }
                    None => None,
                };
                if let Some(b) = bundle {
                    let _ = api.publish(version, &b, false).await?;
                }
                let req = StartRequest {
                    version,
                    plan,
                    emergency,
                    reason,
                };
                api.client
                    .post_json("/api/v1/rollouts", Some(&api.token), &req)
                    .await
                    .map_err(client_failure)?
            }
            Sub::Status { id, json } => {
                let id = api.pick(id).await?;
                let v: RolloutView = api
                    .client
                    .get_json(&format!("/api/v1/rollouts/{id}"), Some(&api.token))
                    .await
                    .map_err(client_failure)?;
                if json {
                    let text = serde_json::to_string_pretty(&v).context("encoding JSON")?;
                    return print_all(&[text]);
                }
                serde_json::to_value(&v).context("encoding JSON")?
            }
            Sub::Halt(a) => {
                api.act(
                    a.id,
                    "halt",
                    &ActionRequest {
                        reason: a.reason,
                        ..Default::default()
                    },
                )
                .await?
            }
            Sub::Resume(a) => {
                api.act(
                    a.id,
                    "resume",
                    &ActionRequest {
                        reason: a.reason,
                        ..Default::default()
                    },
                )
                .await?
            }
            Sub::Rollback(a) => {
                api.act(
                    a.id,
                    "rollback",
                    &ActionRequest {
                        reason: a.reason,
                        ..Default::default()
                    },
                )
                .await?
            }
            Sub::Promote { id, ring, reason } => {
                api.act(
                    id,
                    "promote",
                    &ActionRequest {
                        reason,
                        ring,
                        on: None,
                    },
                )
                .await?
            }
            Sub::Emergency { id, off, reason } => {
                api.act(
                    id,
                    "emergency",
                    &ActionRequest {
                        reason,
                        ring: None,
                        on: Some(!off),
                    },
                )
                .await?
            }
        };
        // An emergency rollout, or content signed to drop rules, waits for a second operator.
        if let Some(held) = crate::cmd::console_admin::held_message(&view) {
            return print_all(&[held]);
        }
        let view: RolloutView =
            serde_json::from_value(view).context("reading the console's answer")?;
        print_all(&describe(&view))
    })
}
