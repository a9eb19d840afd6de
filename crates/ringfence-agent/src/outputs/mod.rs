//! Outputs: where the pipeline's lines and findings go.
//!
//! - Local ([`file`]): `stdout` (ECS lines, or with `--format text` one readable line per
//!   finding, see [`text`]) and `jsonl:PATH`, from `[agent] outputs`. A write error is
//!   counted and logged once; the pipeline keeps running.
//! - Routed, from `[[outputs]]` tables ([`config`]): a signed webhook and Splunk HEC
//!   ([`http`]), syslog over TCP or TLS ([`syslog`]), and an OCSF file ([`ocsf`]). They take
//!   findings only, each through its own bounded queue and thread ([`queue`]): the pipeline
//!   never waits on a receiver; a finding that does not fit, is refused, or outlives its
//!   retries is dropped and counted, and the pipeline reports those drops as health findings
//!   and in the check-in.

pub mod config;
pub mod file;
pub mod http;
pub mod ocsf;
pub mod queue;
pub mod syslog;
pub mod text;

use std::io;

pub use config::{RouteConfig, RouteKind};
pub use file::{Jsonl, Stdout};
pub use queue::{Queued, SendError, Sink};

use crate::config::{JsonlSection, OutputSpec};

/// A sink for ECS lines and findings.
pub trait Output: Send {
    fn name(&self) -> String;
    /// Write one event line (without its newline).
    fn write_line(&mut self, line: &str) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
    /// Whether it takes events, or findings only.
    fn wants_events(&self) -> bool {
        true
    }
    /// Write a finding: `finding` is its JSON, `line` the same serialized.
    fn write_finding(&mut self, finding: &serde_json::Value, line: &str) -> io::Result<()> {
        let _ = finding;
        self.write_line(line)
    }
    /// Stop taking findings and deliver what is queued (routed outputs, on shutdown).
    fn close(&mut self) {}
    /// Findings it dropped so far (routed outputs).
    fn dropped(&self) -> u64 {
        0
    }
    /// Why its last delivery failed, while it is failing.
    fn last_error(&self) -> Option<String> {
        None
    }
}

/// How findings print on standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextFormat {
    /// ECS JSON lines, events and findings.
    #[default]
    Json,
    /// One readable line per finding; no events.
    Text,
}

/// Build the local outputs named in `[agent] outputs`.
pub fn build(
    specs: &[OutputSpec],
    jsonl: &JsonlSection,
    format: TextFormat,
) -> io::Result<Vec<Box<dyn Output>>> {
    specs
        .iter()
        .map(|s| -> io::Result<Box<dyn Output>> {
            Ok(match s {
                OutputSpec::Stdout if format == TextFormat::Text => Box::new(Stdout::text()),
                OutputSpec::Stdout => Box::new(Stdout::new()),
                OutputSpec::Jsonl(path) => {
                    Box::new(Jsonl::open(path, jsonl.rotate_bytes, jsonl.keep)?)
                }
            })
        })
        .collect()
}

/// Start one routed output. The error names the table's field at fault.
pub fn route(c: &RouteConfig) -> Result<Queued, String> {
    let sink: Box<dyn Sink> = match c.kind {
        RouteKind::Webhook => Box::new(http::Webhook::new(c)?),
        RouteKind::SplunkHec => Box::new(http::SplunkHec::new(c)?),
        RouteKind::Syslog => Box::new(syslog::Syslog::new(c)?),
        RouteKind::OcsfFile => {
            let path = c.path.as_deref().ok_or("path is needed")?;
            Box::new(ocsf::OcsfFile::open(path, c.rotate_bytes, c.keep)?)
        }
    };
    Queued::start(c.label(), sink, queue::Policy::of(c))
        .map_err(|e| format!("cannot start its thread: {e}"))
}
