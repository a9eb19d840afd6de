//! Response orders from the console: run each through this agent's own responder, and keep
//! its result until a check-in carrying it is acknowledged.
//!
//! Orders run on a small worker thread (`rf-orders`, started at the first order) that owns a
//! [`Responder`] built from `[response]`: the same guard rails, rate limits, dry-run and audit
//! log as `ringfence respond` and rule-driven responses, with the cause
//! `console:<operator>`. A kill of a process tree or an `nft` call may take a moment; the
//! link thread only hands orders over and picks results up, so check-ins never wait on them.
//!
//! Before anything runs, each order's signature is checked against the pinned order key, with
//! its agent binding, validity window, start-time guard and id ([`SignedOrder::verify`]). The
//! highest id taken is kept in the state directory (`orders.json`, 0600), so a replayed order
//! is refused across restarts too. An order runs only when all three of `[fleet] order_key`,
//! `[fleet] accept_orders` and `[response] enabled` allow it; otherwise, and for every failed
//! check, it is answered `refused` with the reason without reaching the responder (a replayed
//! id gets no answer: its first delivery was answered). Results wait in an outbox and go up in
//! the next check-ins, at most [`limits::ORDERS`] at a time, until a check-in response
//! acknowledges them — as health deltas do — so a lost check-in loses no result.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc;

use ringfence_response::{Action, Cause, Responder, ResponseConfig, Status};
use ringfence_wire::{
    AgentId, OrderAction, OrderKeyPin, OrderRefusal, OrderResult, OrderStatus, ResponseOrder,
    SignedOrders, limits,
};

/// The file in the state directory that keeps the highest order id taken.
pub const STATE_FILE: &str = "orders.json";

/// What decides whether console orders may run at all.
#[derive(Debug, Clone, Default)]
pub struct Acceptance {
    /// `[fleet] accept_orders`.
    pub accept_orders: bool,
    /// `[response] enabled`.
    pub response_enabled: bool,
    /// `[fleet] order_key`.
    pub key: Option<OrderKeyPin>,
}

impl Acceptance {
    /// Why no order may run, if that is so.
    fn refusal(&self) -> Option<&'static str> {
        if self.key.is_none() {
            Some("no order key is pinned (fleet.order_key): orders are not run")
        } else if !self.accept_orders {
            Some("accept_orders is off")
        } else if !self.response_enabled {
            Some("response is not enabled on this agent ([response] enabled = false)")
        } else {
            None
        }
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct TakenState {
    last_id: u64,
}

/// Orders waiting for the worker before new ones are refused.
const QUEUE: usize = 64;
/// Results kept for the console before the oldest are dropped (the response audit log has
/// them all either way).
const OUTBOX: usize = 1024;

/// Runs orders and keeps their results for the console.
pub struct OrderRunner {
    acceptance: Acceptance,
    config: ResponseConfig,
    /// `orders.json`: the highest order id taken.
    state_file: PathBuf,
    last_taken: u64,
    worker: Option<mpsc::SyncSender<ResponseOrder>>,
    finished: Option<mpsc::Receiver<OrderResult>>,
    outbox: VecDeque<OrderResult>,
    /// Results in the check-in in flight (the first `in_flight` of the outbox).
    in_flight: usize,
    /// The YARA scanner, for scan orders.
    scanner: Option<std::sync::Arc<crate::scan::ScanQueue>>,
}

impl std::fmt::Debug for OrderRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderRunner")
            .field("acceptance", &self.acceptance)
            .field("last_taken", &self.last_taken)
            .field("outbox", &self.outbox.len())
            .finish()
    }
}

/// The responder's action for a console order (`None` for a scan, which the scanner runs).
pub fn action(order: &OrderAction) -> Option<Action> {
    Some(match order {
        OrderAction::Kill {
            pid,
            tree,
            start_ticks,
        } => Action::Kill {
            pid: *pid,
            tree: *tree,
            start_ticks: *start_ticks,
        },
        OrderAction::Quarantine { path } => Action::Quarantine { path: path.into() },
        OrderAction::Restore { id } => Action::Restore { id: id.clone() },
        OrderAction::BlockIp { ip, ttl_secs } => Action::BlockIp {
            ip: *ip,
            ttl_secs: *ttl_secs,
        },
        OrderAction::UnblockIp { ip } => Action::UnblockIp { ip: *ip },
        OrderAction::Scan { .. } => return None,
    })
}

/// Files one scan order looks at, at most.
pub const SCAN_ORDER_MAX_FILES: u64 = 1_000_000;
/// How long the order worker waits for a scan order's counts.
const SCAN_ORDER_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Run a scan order through the scanner thread and wait (bounded) for its counts.
fn scan_order(scanner: Option<&crate::scan::ScanQueue>, path: &str) -> (OrderStatus, String) {
    let Some(queue) = scanner else {
        return (
            OrderStatus::Refused,
            "YARA scanning is off on this agent ([scan] enabled = false)".into(),
        );
    };
    let Some(rx) = queue.order(std::path::Path::new(path), SCAN_ORDER_MAX_FILES) else {
        return (
            OrderStatus::Failed,
            "the scan queue is full; order again later".into(),
        );
    };
    match crate::scan::wait(&rx, SCAN_ORDER_WAIT) {
        Some(c) => (
            OrderStatus::Done,
            format!(
                "scanned {path}: {} files, {} bytes, {} matches, {} skipped ({} past the time \
                 budget)",
                c.files, c.bytes, c.matches, c.skipped, c.timeouts
            ),
        ),
        None => (
            OrderStatus::Failed,
            format!(
                "the scan of {path} did not finish within {} s",
                SCAN_ORDER_WAIT.as_secs()
            ),
        ),
    }
}

/// Run one order through `responder` (a scan through `scanner`).
pub fn execute(
    responder: &mut Responder,
    scanner: Option<&crate::scan::ScanQueue>,
    order: &ResponseOrder,
) -> OrderResult {
    let cause = Cause {
        rule_id: None,
        requested_by: format!("console:{}", order.requested_by),
    };
    let Some(action) = action(&order.action) else {
        let OrderAction::Scan { path } = &order.action else {
            return OrderResult::new(order.id, OrderStatus::Failed, "no action for this order");
        };
        let (status, detail) = scan_order(scanner, path);
        tracing::info!(order = order.id, requested_by = %order.requested_by, %detail, "scan order");
        return OrderResult::new(order.id, status, &detail);
    };
    let record = responder.execute(&action, &cause);
    tracing::info!(
        order = order.id,
        action = order.action.name(),
        requested_by = %order.requested_by,
        reason = %order.reason,
        outcome = ?record.outcome,
        "response order"
    );
    let (status, detail) = match &record.outcome {
        Status::Done { detail } => (OrderStatus::Done, detail.as_str()),
        Status::DryRun => (
            OrderStatus::DryRun,
            "dry run: allowed by the guard rails, nothing changed",
        ),
        Status::Refused { reason } => (OrderStatus::Refused, reason.as_str()),
        Status::Failed { error } => (OrderStatus::Failed, error.as_str()),
    };
    OrderResult::new(order.id, status, detail)
}

impl OrderRunner {
    /// `config`: from `[response]`; `state_file`: where the highest id taken is kept.
    pub fn new(acceptance: Acceptance, config: ResponseConfig, state_file: PathBuf) -> OrderRunner {
        let last_taken = crate::content::manager::read_small(&state_file, 4096)
            .ok()
            .and_then(|b| serde_json::from_slice::<TakenState>(&b).ok())
            .map_or(0, |s| s.last_id);
        OrderRunner {
            acceptance,
            config,
            state_file,
            last_taken,
            worker: None,
            finished: None,
            outbox: VecDeque::new(),
            in_flight: 0,
            scanner: None,
        }
    }

    /// Scan orders go to `scanner` (without one they are refused).
    pub fn with_scanner(mut self, scanner: Option<std::sync::Arc<crate::scan::ScanQueue>>) -> Self {
        self.scanner = scanner;
        self
    }

    /// Check the signed orders of a check-in response for `agent` at unix time `now` and hand
    /// the good ones to the worker. Refused ones get their result at once; the returned lines
    /// say why each was refused (for the agent's health notices).
    pub fn submit(&mut self, orders: &SignedOrders, agent: &AgentId, now: u64) -> Vec<String> {
        let mut notices = Vec::new();
        for signed in orders.iter() {
            let order =
                match signed.verify(self.acceptance.key.as_ref(), agent, now, self.last_taken) {
                    Ok(order) => order,
                    Err((id, refusal)) => {
                        let line = format!(
                            "response order {} refused: {refusal}",
                            id.map_or_else(|| "(unreadable)".to_owned(), |i| i.to_string())
                        );
                        tracing::warn!("{line}");
                        notices.push(line);
                        // A replay's id was answered at its first delivery; an unverified id may
                        // not be the console's at all, and the console applies a result only to
                        // an order it delivered to this agent.
                        if let Some(id) = id
                            && !matches!(refusal, OrderRefusal::Replayed { .. })
                        {
                            self.push(OrderResult::new(
                                id,
                                OrderStatus::Refused,
                                &refusal.to_string(),
                            ));
                        }
                        continue;
                    }
                };
            self.take(order.id);
            if let Some(why) = self.acceptance.refusal() {
                let line = format!(
                    "response order {} ({} by {}) refused: {why}",
                    order.id,
                    order.action.name(),
                    order.requested_by
                );
                tracing::warn!("{line}");
                notices.push(line);
                self.push(OrderResult::new(order.id, OrderStatus::Refused, why));
                continue;
            }
            let refused = match self.worker() {
                Ok(tx) => match tx.try_send(order.clone()) {
                    Ok(()) => None,
                    Err(mpsc::TrySendError::Full(_)) => {
                        Some(format!("more than {QUEUE} orders waiting"))
                    }
                    Err(mpsc::TrySendError::Disconnected(_)) => {
                        self.worker = None;
                        Some("the order worker stopped".to_owned())
                    }
                },
                Err(e) => Some(e),
            };
            if let Some(reason) = refused {
                tracing::warn!(order = order.id, %reason, "response order not run");
                self.push(OrderResult::new(order.id, OrderStatus::Failed, &reason));
            }
        }
        notices
    }

    /// Remember `id` as taken, on disk first, so no restart can run it twice.
    fn take(&mut self, id: u64) {
        self.last_taken = self.last_taken.max(id);
        let state = TakenState {
            last_id: self.last_taken,
        };
        let written = serde_json::to_vec(&state)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                ringfence_wire::tls::write_private(&self.state_file, &bytes)
                    .map_err(std::io::Error::other)
            });
        if let Err(e) = written {
            tracing::error!(path = %self.state_file.display(), error = %e,
                "cannot keep the highest response order id taken; a replay after a restart would be caught only by its expiry");
        }
    }

    fn worker(&mut self) -> Result<&mpsc::SyncSender<ResponseOrder>, String> {
        if self.worker.is_none() {
            let (tx, rx) = mpsc::sync_channel::<ResponseOrder>(QUEUE);
            let (done_tx, done_rx) = mpsc::channel();
            let mut responder = Responder::new(self.config.clone());
            let scanner = self.scanner.clone();
            std::thread::Builder::new()
                .name("rf-orders".into())
                .spawn(move || {
                    for order in rx {
                        let result = execute(&mut responder, scanner.as_deref(), &order);
                        if done_tx.send(result).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| format!("cannot start the order worker: {e}"))?;
            self.finished = Some(done_rx);
            self.worker = Some(tx);
        }
        self.worker
            .as_ref()
            .ok_or_else(|| "the order worker stopped".to_owned())
    }

    fn push(&mut self, result: OrderResult) {
        if self.outbox.len() >= OUTBOX && self.outbox.len() > self.in_flight {
            // Drop the oldest not in flight.
            if let Some(dropped) = self.outbox.remove(self.in_flight) {
                tracing::warn!(
                    order = dropped.id,
                    "order result dropped: too many unacknowledged"
                );
            }
        }
        self.outbox.push_back(result);
    }

    /// Results for the next check-in (at most [`limits::ORDERS`]); they stay in the outbox
    /// until [`acknowledged`](Self::acknowledged).
    pub fn outgoing(&mut self) -> Vec<OrderResult> {
        let finished: Vec<OrderResult> = self
            .finished
            .as_ref()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default();
        for r in finished {
            self.push(r);
        }
        self.in_flight = self.outbox.len().min(limits::ORDERS);
        self.outbox.iter().take(self.in_flight).cloned().collect()
    }

    /// The check-in carrying the last [`outgoing`](Self::outgoing) results was acknowledged.
    pub fn acknowledged(&mut self) {
        let n = self.in_flight.min(self.outbox.len());
        self.outbox.drain(..n);
        self.in_flight = 0;
    }

    /// Results waiting to go up (for tests and the link's report).
    pub fn waiting(&self) -> usize {
        self.outbox.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_wire::{Label, OrderBody, OrderKey};
    use std::time::{Duration, Instant};

    fn agent() -> AgentId {
        AgentId::try_from("a".repeat(32)).unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn signed(key: &OrderKey, id: u64, action: serde_json::Value) -> SignedOrders {
        let body = OrderBody {
            agent_id: agent(),
            id,
            issued_at: now(),
            not_after: now() + 3600,
            action: serde_json::from_value(action).unwrap(),
            requested_by: Label::try_from("alice").unwrap(),
            reason: "ir-1".into(),
        };
        SignedOrders::try_from(vec![key.sign(&body).unwrap()]).unwrap()
    }

    #[test]
    fn a_scan_order_runs_through_the_scanner_and_reports_counts() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("www");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("a.php"), "<?php system($_GET['c']); ?>").unwrap();
        std::fs::write(tree.join("b.txt"), "fine").unwrap();
        let key = OrderKey::generate().unwrap();
        let config = ResponseConfig {
            audit_log: dir.path().join("audit.jsonl"),
            quarantine_dir: dir.path().join("q"),
            ..ResponseConfig::default()
        };
        let order = serde_json::json!({"kind": "scan", "path": tree.to_str().unwrap()});

        // Without a scanner the order is refused, saying why.
        let mut runner =
            OrderRunner::new(open_acceptance(&key), config.clone(), dir.path().join("s1"));
        runner.submit(&signed(&key, 1, order.clone()), &agent(), now());
        let out = wait_for_result(&mut runner);
        assert_eq!(out[0].status, OrderStatus::Refused, "{}", out[0].detail);
        assert!(out[0].detail.contains("[scan]"), "{}", out[0].detail);

        let rules = std::sync::Arc::new(
            ringfence_content::yara::compile(
                crate::content::sigma::builtin_yara_files()
                    .iter()
                    .map(|(p, t)| (*p, t.as_bytes())),
            )
            .unwrap(),
        );
        let stop = ringfence_sensor::StopSignal::new();
        let scanner = crate::scan::spawn(
            crate::scan::ScanSection::default(),
            Box::new(move || Some(std::sync::Arc::clone(&rules))),
            None,
            stop.clone(),
        )
        .unwrap();
        let mut runner = OrderRunner::new(open_acceptance(&key), config, dir.path().join("s2"))
            .with_scanner(Some(std::sync::Arc::clone(&scanner.queue)));
        runner.submit(&signed(&key, 2, order), &agent(), now());
        let out = wait_for_result(&mut runner);
        assert_eq!(out[0].status, OrderStatus::Done, "{}", out[0].detail);
        assert!(
            out[0].detail.contains(": 2 files,") && out[0].detail.contains(" 1 matches"),
            "{}",
            out[0].detail
        );
        let finding = scanner
            .findings
            .recv_timeout(Duration::from_secs(10))
            .unwrap();
        assert_eq!(finding["rule"]["id"], "yara:php_exec_request");
        assert_eq!(finding["ringfence"]["yara"]["trigger"], "order");
        stop.stop();
        scanner.handle.join().unwrap();
    }

    fn open_acceptance(key: &OrderKey) -> Acceptance {
        Acceptance {
            accept_orders: true,
            response_enabled: true,
            key: Some(key.pin()),
        }
    }

    fn wait_for_result(runner: &mut OrderRunner) -> Vec<OrderResult> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = runner.outgoing();
            if !out.is_empty() || Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn orders_run_through_the_responder_in_dry_run_and_wait_for_acknowledgement() {
        let dir = tempfile::tempdir().unwrap();
        let key = OrderKey::generate().unwrap();
        let config = ResponseConfig {
            dry_run: true,
            audit_log: dir.path().join("audit.jsonl"),
            quarantine_dir: dir.path().join("q"),
            ..ResponseConfig::default()
        };
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let started = ringfence_response::procfs::read(child.id())
            .unwrap()
            .start_ticks;
        let state = dir.path().join(STATE_FILE);
        let mut runner = OrderRunner::new(open_acceptance(&key), config.clone(), state.clone());
        let kill = serde_json::json!({"kind": "kill", "pid": child.id(), "tree": true, "start_ticks": started});
        let notices = runner.submit(&signed(&key, 7, kill.clone()), &agent(), now());
        assert!(notices.is_empty(), "{notices:?}");
        let out = wait_for_result(&mut runner);
        assert_eq!(out.len(), 1, "no result in time");
        assert_eq!(out[0].id, 7);
        assert_eq!(out[0].status, OrderStatus::DryRun, "{}", out[0].detail);
        assert!(
            child.try_wait().unwrap().is_none(),
            "dry run killed the process"
        );
        let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        assert!(audit.contains("console:alice"), "{audit}");
        assert!(audit.contains("dry_run"), "{audit}");

        // Not acknowledged: sent again with the next check-in.
        assert_eq!(runner.outgoing(), out);
        runner.acknowledged();
        assert!(runner.outgoing().is_empty());

        // The same order again, even to a restarted agent, is a replay: refused, unanswered.
        let mut restarted = OrderRunner::new(open_acceptance(&key), config, state);
        let notices = restarted.submit(&signed(&key, 7, kill), &agent(), now());
        assert!(notices[0].contains("replayed"), "{notices:?}");
        assert!(restarted.outgoing().is_empty());

        // The guard rails apply to orders: pid 1 is refused.
        let pid1 = serde_json::json!({"kind": "kill", "pid": 1, "start_ticks": 1});
        runner.submit(&signed(&key, 8, pid1), &agent(), now());
        let out = wait_for_result(&mut runner);
        assert_eq!(out[0].status, OrderStatus::Refused, "{}", out[0].detail);
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn orders_are_refused_unrun_without_a_key_acceptance_or_response() {
        let key = OrderKey::generate().unwrap();
        let block = serde_json::json!({"kind": "block_ip", "ip": "203.0.113.9", "ttl_secs": 60});
        for (acceptance, needle) in [
            (
                Acceptance {
                    key: None,
                    ..open_acceptance(&key)
                },
                "order key",
            ),
            (
                Acceptance {
                    accept_orders: false,
                    ..open_acceptance(&key)
                },
                "accept_orders is off",
            ),
            (
                Acceptance {
                    response_enabled: false,
                    ..open_acceptance(&key)
                },
                "response is not enabled",
            ),
            (
                Acceptance {
                    key: Some(OrderKey::generate().unwrap().pin()),
                    ..open_acceptance(&key)
                },
                "signature",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let config = ResponseConfig {
                audit_log: dir.path().join("audit.jsonl"),
                ..ResponseConfig::default()
            };
            let mut runner = OrderRunner::new(acceptance, config, dir.path().join(STATE_FILE));
            let notices = runner.submit(&signed(&key, 3, block.clone()), &agent(), now());
            assert!(notices[0].contains(needle), "{needle}: {notices:?}");
            let out = runner.outgoing();
            if needle == "signature" {
                // Unverified: its id may not be the console's, so it is not answered.
                assert!(out.is_empty(), "{out:?}");
            } else {
                assert_eq!(out[0].status, OrderStatus::Refused);
                assert!(out[0].detail.contains(needle), "{out:?}");
            }
            assert!(!dir.path().join("audit.jsonl").exists());
            assert!(runner.worker.is_none(), "no worker for refused orders");
        }
    }

    #[test]
    fn results_go_up_at_most_a_batch_at_a_time() {
        let key = OrderKey::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let acceptance = Acceptance {
            accept_orders: false,
            ..open_acceptance(&key)
        };
        let mut runner = OrderRunner::new(
            acceptance,
            ResponseConfig::default(),
            dir.path().join(STATE_FILE),
        );
        for id in 1..=40 {
            let kill = serde_json::json!({"kind": "kill", "pid": 5, "start_ticks": 1});
            runner.submit(&signed(&key, id, kill), &agent(), now());
        }
        assert_eq!(runner.outgoing().len(), limits::ORDERS);
        runner.acknowledged();
        assert_eq!(runner.outgoing().len(), 40 - limits::ORDERS);
        runner.acknowledged();
        assert_eq!(runner.waiting(), 0);
    }
}
