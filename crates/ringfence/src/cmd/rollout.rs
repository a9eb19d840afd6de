//! `ringfence rollout publish|publish-release|start|status|halt|resume|rollback|promote|
//! emergency|default-plan`: the operator's side of grayscale rollouts of content and of agent
//! releases, talking to the console API with the operator token.
//!
//! Content and agent releases are separate rollouts (one of each may run at once); the commands
//! that act on a rollout take its id, or `--kind content|agent` for that kind's active (else
//! latest) rollout. Without either they take the content rollout, as before agent releases.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ringfence_console::plan::{Plan, format_duration};
use ringfence_console::rollout::{ActionRequest, Kind, RolloutView, StartRequest};

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
    /// Publish a signed agent release file (`ringfence release build`); its version is the
    /// one it is signed for.
    PublishRelease {
        #[arg(long)]
        release: PathBuf,
        /// Make it the fleet's baseline release, the one every agent is offered outside
        /// rollouts (and a rollback re-offers). Only while the fleet has none.
        #[arg(long)]
        baseline: bool,
    },
    /// Start a rollout of a published content version (or publish `--bundle` as it first), or
    /// of an agent release with `--agent-version` (publishing `--release` first).
    Start {
        #[arg(
            long,
            required_unless_present = "agent_version",
            conflicts_with = "agent_version"
        )]
        version: Option<i64>,
        /// The agent release to roll out (its signed version).
        #[arg(long, conflicts_with = "bundle")]
        agent_version: Option<String>,
        /// Publish this signed release file as `--agent-version` before starting.
        #[arg(long, requires = "agent_version")]
        release: Option<PathBuf>,
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
    /// Show a rollout (default: the active or latest one of `--kind`, content by default).
    Status {
        id: Option<i64>,
        #[arg(long, value_parser = parse_kind)]
        kind: Option<Kind>,
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
        #[arg(long, value_parser = parse_kind)]
        kind: Option<Kind>,
        /// The ring to start; must be the next one.
        #[arg(long)]
        ring: Option<i64>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Set (or with --off clear) the emergency flag: maintenance windows are overridden.
    Emergency {
        id: Option<i64>,
        #[arg(long, value_parser = parse_kind)]
        kind: Option<Kind>,
        #[arg(long)]
        off: bool,
        #[arg(long)]
        reason: String,
    },
    /// Print the default plan as TOML.
    DefaultPlan,
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::parse(s)
}

#[derive(Debug, clap::Args)]
struct Action {
    id: Option<i64>,
    /// `content` or `agent`: that kind's active (else latest) rollout.
    #[arg(long, value_parser = parse_kind)]
    kind: Option<Kind>,
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

    /// Upload a signed release file under the version it claims (the console verifies it).
    async fn publish_release(&self, release: &Path, baseline: bool) -> Result<String, Failure> {
        let bytes = std::fs::read(release)
            .with_context(|| format!("reading {}", release.display()))
            .map_err(Failure::refused)?;
        let version = ringfence_content::release::claimed_version(&bytes)
            .with_context(|| format!("{}: not a release file", release.display()))
            .map_err(Failure::refused)?;
        let query = if baseline { "?baseline=true" } else { "" };
        let _: serde_json::Value = self
            .client
            .put_bytes(
                &format!("/api/v1/releases/{version}{query}"),
                Some(&self.token),
                bytes,
            )
            .await
            .map_err(client_failure)?;
        Ok(version)
    }

    /// The rollout `id`, else the active (else latest) rollout of `kind` (content by default).
    async fn pick(&self, id: Option<i64>, kind: Option<Kind>) -> Result<i64, Failure> {
        if let Some(id) = id {
            return Ok(id);
        }
        let kind = kind.unwrap_or(Kind::Content);
        let all: Vec<RolloutView> = self
            .client
            .get_json("/api/v1/rollouts", Some(&self.token))
            .await
            .map_err(client_failure)?;
        let of_kind: Vec<&RolloutView> = all.iter().filter(|r| r.kind == kind.as_str()).collect();
        of_kind
            .iter()
            .find(|r| matches!(r.state.as_str(), "running" | "paused" | "halted"))
            .or(of_kind.first())
            .map(|r| r.id)
            .ok_or_else(|| Failure::refused(anyhow::anyhow!("no {kind} rollouts yet")))
    }

    async fn act(
        &self,
        id: Option<i64>,
        kind: Option<Kind>,
        action: &str,
        req: &ActionRequest,
    ) -> Result<serde_json::Value, Failure> {
        let id = self.pick(id, kind).await?;
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
        "rollout {} ({}): {} -> {}  {}{}  ring {} of {}  ({} agents in the fleet)",
        v.id,
        v.kind,
        v.describe(v.from_version),
        v.describe(v.to_version),
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
            "  rolled back with {} (carries {})",
            v.describe(rb),
            v.describe(v.from_version)
        ));
    }
    for r in &v.rings {
        let gate = r.gate.as_ref().map_or(String::new(), |g| {
            format!("  gate {}: {}", g.verdict.as_str(), g.reason)
        });
        out.push(format!(
            "  [{}] {:<10} {:<24} bake {:<8} {:<8} {}/{} on {}{}  {} controls{}",
            r.idx,
            r.name,
            r.selector,
            format_duration(r.bake_ms),
            r.state,
            r.on_new,
            r.members,
            v.describe(v.to_version),
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
            Sub::PublishRelease { release, baseline } => {
                let version = api.publish_release(&release, baseline).await?;
                return print_all(&[format!(
                    "published agent release {version}{}",
                    if baseline {
                        " as the fleet's baseline release"
                    } else {
                        ""
                    }
                )]);
            }
            Sub::Start {
                version,
                agent_version,
                release,
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
                if let (Some(b), Some(v)) = (bundle, version) {
                    let _ = api.publish(v, &b, false).await?;
                }
                if let (Some(file), Some(want)) = (release, &agent_version) {
                    let bytes = std::fs::read(&file)
                        .with_context(|| format!("reading {}", file.display()))
                        .map_err(Failure::refused)?;
                    let claimed = ringfence_content::release::claimed_version(&bytes)
                        .with_context(|| format!("{}: not a release file", file.display()))
                        .map_err(Failure::refused)?;
                    if &claimed != want {
                        return Err(Failure::refused(anyhow::anyhow!(
                            "{}: the release is signed as version {claimed}, not --agent-version {want}",
                            file.display()
                        )));
                    }
                    // Published before (by an earlier start, or `publish-release`): start it.
                    let known: Vec<ringfence_console::releases::ReleaseRow> = api
                        .client
                        .get_json("/api/v1/releases", Some(&api.token))
                        .await
                        .map_err(client_failure)?;
                    if !known
                        .iter()
                        .any(|r| &r.version == want && r.carries.is_none())
                    {
                        api.publish_release(&file, false).await?;
                    }
                }
                let req = StartRequest {
                    version: version.unwrap_or(0),
                    agent_version,
                    plan,
                    emergency,
                    reason,
                };
                api.client
                    .post_json("/api/v1/rollouts", Some(&api.token), &req)
                    .await
                    .map_err(client_failure)?
            }
            Sub::Status { id, kind, json } => {
                let id = api.pick(id, kind).await?;
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
                    a.kind,
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
                    a.kind,
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
                    a.kind,
                    "rollback",
                    &ActionRequest {
                        reason: a.reason,
                        ..Default::default()
                    },
                )
                .await?
            }
            Sub::Promote {
                id,
                kind,
                ring,
                reason,
            } => {
                api.act(
                    id,
                    kind,
                    "promote",
                    &ActionRequest {
                        reason,
                        ring,
                        on: None,
                    },
                )
                .await?
            }
            Sub::Emergency {
                id,
                kind,
                off,
                reason,
            } => {
                api.act(
                    id,
                    kind,
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
