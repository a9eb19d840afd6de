//! The response stage: findings whose rule asks for an action (`ringfence.finding.response`,
//! from the rule's `response` attribute) become response actions on the matched event, carried
//! out on a thread of their own by `ringfence-response` — guard rails, rate limits, dry-run and
//! an audit record per decision. Off unless `[response] enabled = true`.
//!
//! The pipeline never waits for a response: it offers the request to a bounded queue (a full
//! queue drops it, counted and logged) and later writes each decision the responder sends back
//! as one ECS line (`event.action: response-<action>`, `event.outcome`), so responses are in
//! the same stream as the findings that caused them.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use ringfence_event::{Event, EventKind};
use ringfence_response::{
    Action, AuditRecord, Cause, GuardConfig, Responder, ResponseConfig, Status,
};
use ringfence_sensor::sys::Clocks;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Requests waiting for the responder; beyond this they are dropped (and counted).
const QUEUE: usize = 256;

/// `[response]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseSection {
    /// Carry out the actions rules ask for. Off by default: detection first, then response
    /// where an operator chose it.
    pub enabled: bool,
    /// Decide and audit, change nothing.
    pub dry_run: bool,
    /// How long a `block_ip` lasts (the kernel lifts it; capped by `guard.max_block_secs`).
    pub block_ttl_secs: u64,
    pub quarantine_dir: PathBuf,
    /// One JSON line per decision, refused or done.
    pub audit_log: PathBuf,
    /// Most actions of one kind per minute.
    pub max_per_minute: u32,
    /// Run `nft` in this network namespace.
    pub netns: Option<String>,
    pub guard: GuardConfig,
}

impl Default for ResponseSection {
    fn default() -> Self {
        let c = ResponseConfig::default();
        ResponseSection {
            enabled: false,
            dry_run: c.dry_run,
            block_ttl_secs: 3600,
            quarantine_dir: c.quarantine_dir,
            audit_log: c.audit_log,
            max_per_minute: c.max_per_minute,
            netns: c.netns,
            guard: c.guard,
        }
    }
}

impl ResponseSection {
    /// The responder's settings.
    pub fn responder_config(&self) -> ResponseConfig {
        ResponseConfig {
            dry_run: self.dry_run,
            guard: self.guard.clone(),
            quarantine_dir: self.quarantine_dir.clone(),
            audit_log: self.audit_log.clone(),
            netns: self.netns.clone(),
            max_per_minute: self.max_per_minute,
        }
    }

    /// Problems with the values, as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.block_ttl_secs == 0 {
            out.push(("block_ttl_secs", "must be > 0, got 0".into()));
        }
        if self.max_per_minute == 0 {
            out.push((
                "max_per_minute",
                "must be > 0, got 0 (use enabled = false)".into(),
            ));
        }
        for (key, p) in [
            ("quarantine_dir", &self.quarantine_dir),
            ("audit_log", &self.audit_log),
        ] {
            if !p.is_absolute() {
                out.push((key, format!("must be absolute, got `{}`", p.display())));
            }
        }
        out
    }
}

/// A request from the pipeline.
struct Request {
    action: Action,
    cause: Cause,
}

/// The pipeline's side of the responder thread.
pub struct ResponseStage {
    tx: Option<Sender<Request>>,
    done: Receiver<AuditRecord>,
    handle: Option<JoinHandle<()>>,
    clocks: Clocks,
    block_ttl_secs: u64,
    /// Requests dropped because the queue was full, or that could not be built from the event.
    pub dropped: u64,
    /// Requests queued and not yet carried out (the responder counts them down).
    queued: Arc<AtomicUsize>,
}

impl ResponseStage {
    /// Starts the responder thread.
    pub fn start(section: &ResponseSection) -> std::io::Result<ResponseStage> {
        let (tx, rx) = crossbeam_channel::bounded::<Request>(QUEUE);
        let (done_tx, done) = crossbeam_channel::bounded::<AuditRecord>(QUEUE);
        let config = section.responder_config();
        let queued = Arc::new(AtomicUsize::new(0));
        let queued_in_thread = Arc::clone(&queued);
        let handle = std::thread::Builder::new()
            .name("rf-respond".into())
            .spawn(move || {
                let mut responder = Responder::new(config);
                for r in rx {
                    let record = responder.execute(&r.action, &r.cause);
                    log(&record);
                    // The pipeline writes it to the outputs; if it is behind, the audit log has it.
                    let _ = done_tx.try_send(record);
                    queued_in_thread.fetch_sub(1, Ordering::AcqRel);
                }
            })?;
        Ok(ResponseStage {
            tx: Some(tx),
            done,
            handle: Some(handle),
            clocks: Clocks::read(),
            block_ttl_secs: section.block_ttl_secs,
            dropped: 0,
            queued,
        })
    }

    /// Queue the actions `finding`'s rule asks for, built from `event`.
    pub fn on_finding(&mut self, finding: &Value, event: &Event) {
        let Some(kinds) = finding["ringfence"]["finding"]["response"].as_array() else {
            return;
        };
        let cause = Cause {
            rule_id: finding["rule"]["id"].as_str().map(str::to_owned),
            requested_by: "rule".into(),
        };
        for kind in kinds.iter().filter_map(Value::as_str) {
            match action_for(kind, event, &self.clocks, self.block_ttl_secs) {
                Ok(action) => self.offer(action, cause.clone()),
                Err(why) => {
                    self.dropped += 1;
                    tracing::warn!(rule = ?cause.rule_id, action = kind, "response not possible: {why}");
                }
            }
        }
    }

    fn offer(&mut self, action: Action, cause: Cause) {
        let Some(tx) = &self.tx else { return };
        // Counted before it is sent: the responder may finish it before try_send returns.
        self.queued.fetch_add(1, Ordering::AcqRel);
        match tx.try_send(Request { action, cause }) {
            Ok(()) => {}
            Err(TrySendError::Full(r) | TrySendError::Disconnected(r)) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                self.dropped += 1;
                tracing::error!(action = r.action.name(), rule = ?r.cause.rule_id, "response queue full; request dropped");
            }
        }
    }

    /// Decisions made since the last call, as ECS lines for the outputs.
    pub fn decisions(&self) -> Vec<Value> {
        self.done.try_iter().map(|r| to_ecs(&r)).collect()
    }

    /// Requests not yet carried out, plus decisions not yet collected.
    pub fn in_flight(&self) -> usize {
        self.queued.load(Ordering::Acquire) + self.done.len()
    }

    /// Lets the queued requests finish, then stops the thread.
    pub fn stop(&mut self) -> Vec<Value> {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.decisions()
    }
}

/// The action `kind` means for `event`.
fn action_for(kind: &str, event: &Event, clocks: &Clocks, ttl: u64) -> Result<Action, String> {
    let process = event.process.as_ref();
    match kind {
        "kill" | "kill_tree" => {
            let p = process.ok_or("the event has no process")?;
            // /proc counts start times in ticks (USER_HZ = 100) since boot.
            let start_ticks = p.start.and_then(|t| {
                let boot_ns = t.0.checked_sub(clocks.boot_to_wall)?;
                u64::try_from(boot_ns / 10_000_000).ok()
            });
            Ok(Action::Kill {
                pid: p.pid,
                tree: kind == "kill_tree",
                start_ticks,
            })
        }
        "quarantine" => {
            let path = event
                .file
                .as_ref()
                .map(|f| f.path.clone())
                .filter(|p| !p.is_empty())
                .or_else(|| process.and_then(|p| p.executable.clone()))
                .ok_or("the event has no file.path or process.executable")?;
            Ok(Action::Quarantine { path: path.into() })
        }
        "block_ip" => {
            // The remote side: the peer of an inbound connection or login, else the destination.
            let inbound = matches!(
                event.kind,
                Some(
                    EventKind::NetworkAccept
                        | EventKind::AuthFailure
                        | EventKind::AuthSuccess
                        | EventKind::WebRequest
                        | EventKind::LogLine
                )
            );
            let ip: IpAddr = event
                .network
                .as_ref()
                .and_then(|n| {
                    if inbound {
                        n.source_ip.or(n.destination_ip)
                    } else {
                        n.destination_ip.or(n.source_ip)
                    }
                })
                .ok_or("the event has no remote address")?;
            Ok(Action::BlockIp { ip, ttl_secs: ttl })
        }
        other => Err(format!("unknown action {other:?}")),
    }
}

fn log(r: &AuditRecord) {
    let action = r.action.name();
    match &r.outcome {
        Status::Done { detail } => {
            tracing::warn!(action, rule = ?r.cause.rule_id, "response done: {detail}")
        }
        Status::DryRun => {
            tracing::info!(action, rule = ?r.cause.rule_id, "response (dry run): would act")
        }
        Status::Refused { reason } => {
            tracing::warn!(action, rule = ?r.cause.rule_id, "response refused: {reason}")
        }
        Status::Failed { error } => {
            tracing::error!(action, rule = ?r.cause.rule_id, "response failed: {error}")
        }
    }
}

/// One decision as an ECS line.
pub fn to_ecs(r: &AuditRecord) -> Value {
    let outcome = match r.outcome {
        Status::Done { .. } => "success",
        Status::Failed { .. } => "failure",
        Status::Refused { .. } | Status::DryRun => "unknown",
    };
    json!({
        "@timestamp": r.timestamp,
        "event": {
            "kind": "event",
            "category": ["intrusion_detection"],
            "type": ["info"],
            "action": format!("response-{}", r.action.name()),
            "outcome": outcome,
        },
        "rule": {"id": r.cause.rule_id},
        "ringfence": {"response": r},
    })
}
