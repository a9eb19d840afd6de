//! `ringfence findings tail`: the console's findings as they arrive, one readable line each
//! (or the stored ECS JSON), over the operator API with the pinned console CA.
//!
//! It polls `GET /api/v1/findings` (newest first) and prints, oldest first, the rows whose
//! id is above the last one printed: the id is the cursor. When a whole page is new, more
//! may have arrived than one page holds, and it says so on stderr rather than skip silently.

use std::time::Duration;

use super::print_line;
use crate::cmd::console_api::{ConsoleArgs, block_on, client_failure};
use crate::{CmdResult, Failure};
use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Print findings as they reach the console (`--once` to print and stop).
    Tail(TailArgs),
}

#[derive(Debug, clap::Args)]
struct TailArgs {
    #[command(flatten)]
    console: ConsoleArgs,
    /// `text` (one readable line per finding) or `json` (the ECS finding as stored).
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    format: String,
    /// Start after this finding id (the cursor); by default the newest `--last` first.
    #[arg(long)]
    since: Option<i64>,
    /// How many of the newest findings to print first when `--since` is not given.
    #[arg(long, default_value_t = 10)]
    last: u32,
    /// Seconds between polls (1…3600).
    #[arg(long, default_value_t = 2)]
    interval: u64,
    /// Print what is there now and stop.
    #[arg(long)]
    once: bool,
}

/// Rows asked for per poll (the console allows up to 10 000).
const PAGE: i64 = 1000;

/// One row of `GET /api/v1/findings`.
#[derive(Debug)]
struct Row {
    id: i64,
    agent_id: String,
    body: String,
}

impl Row {
    /// A row of the console's answer; `None` without an id.
    fn of(v: &serde_json::Value) -> Option<Row> {
        Some(Row {
            id: v.get("id")?.as_i64()?,
            agent_id: v
                .get("agent_id")
                .and_then(|a| a.as_str())
                .unwrap_or("")
                .to_owned(),
            body: v
                .get("body")
                .and_then(|b| b.as_str())
                .unwrap_or("")
                .to_owned(),
        })
    }
}

pub fn run(args: Args) -> CmdResult {
    match args.command {
        Sub::Tail(a) => tail(a),
    }
}

fn tail(a: TailArgs) -> CmdResult {
    if !(1..=3600).contains(&a.interval) {
        return Err(Failure {
            code: 2,
            error: anyhow::anyhow!("--interval {}: expected 1…3600 seconds", a.interval),
        });
    }
    let api = a.console.connect()?;
    let text = a.format == "text";
    block_on(async move {
        let mut cursor = a.since;
        let mut first = true;
        loop {
            let path = format!("/api/v1/findings?limit={PAGE}");
            let answer: Vec<serde_json::Value> = api
                .client
                .get_json(&path, Some(&api.token))
                .await
                .map_err(client_failure)?;
            let mut rows: Vec<Row> = answer.iter().filter_map(Row::of).collect();
            rows.sort_by_key(|r| r.id);
            let new: Vec<&Row> = match cursor {
                Some(c) => rows.iter().filter(|r| r.id > c).collect(),
                None => {
                    let skip = rows.len().saturating_sub(a.last as usize);
                    rows.iter().skip(skip).collect()
                }
            };
            if !first && cursor.is_some() && new.len() == rows.len() && rows.len() as i64 == PAGE {
                eprintln!(
                    "more than {PAGE} findings arrived between two polls: some are not shown \
                     (lower --interval, or see the console)"
                );
            }
            for r in &new {
                print_line(&render(r, text)).context("writing to stdout")?;
            }
            if let Some(last) = new.last() {
                cursor = Some(last.id);
            } else if cursor.is_none() {
                cursor = Some(rows.last().map_or(0, |r| r.id));
            }
            first = false;
            if a.once {
                return Ok::<(), Failure>(());
            }
            tokio::time::sleep(Duration::from_secs(a.interval)).await;
        }
    })
}

/// A row as its text line (the agent's id when the finding names no host), or as its JSON.
fn render(r: &Row, text: bool) -> String {
    let mut doc: serde_json::Value = match serde_json::from_str(&r.body) {
        Ok(d) => d,
        // Stored bodies are JSON; say so rather than print something unreadable.
        Err(_) => {
            return format!(
                "finding {} of agent {}: stored body is not JSON",
                r.id,
                ringfence_wire::printable(&r.agent_id)
            );
        }
    };
    if !text {
        return doc.to_string();
    }
    if doc.pointer("/host/name").is_none()
        && let Some(obj) = doc.as_object_mut()
    {
        obj.insert(
            "host".into(),
            serde_json::json!({ "name": format!("agent {}", r.agent_id) }),
        );
    }
    format!("#{} {}", r.id, ringfence_agent::outputs::text::line(&doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_renders_as_its_finding_line_with_its_id() {
        let r = Row {
            id: 7,
            agent_id: "ab12".into(),
            body: r#"{"@timestamp":"2026-12-06T07:00:00Z","rule":{"name":"R"},"process":{"command_line":"id"},"ringfence":{"finding":{"level":"low"}}}"#.into(),
        };
        assert_eq!(
            render(&r, true),
            "#7 2026-12-06T07:00:00Z LOW R: id (user <NA>, parent <NA>) on agent ab12"
        );
        let bad = Row {
            id: 8,
            agent_id: "ab12".into(),
            body: "nope".into(),
        };
        assert!(render(&bad, true).contains("not JSON"));
    }
}
