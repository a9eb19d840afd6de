//! Response orders from the console: run each through this agent's own responder, and keep
//! its result until a check-in carrying it is acknowledged.
//!
//! Orders run on a small worker thread (`rf-orders`, started at the first order) that owns a
//! [`Responder`] built from `[response]`: the same guard rails, rate limits, dry-run and audit
//! log as `ringfence respond` and rule-driven responses, with the cause
//! `console:<operator>`. A kill of a process tree or an `nft` call may take a moment; the
//! link thread only hands orders over and picks results up, so check-ins never wait on them.
//!
//! With `[fleet] accept_orders = false` every order is answered `refused` ("accept_orders is
//! off") without reaching the responder. Results wait in an outbox and go up in the next
//! check-ins, at most [`limits::ORDERS`] at a time, until a check-in response acknowledges
//! them — as health deltas do — so a lost check-in loses no result.

use std::collections::VecDeque;
use std::sync::mpsc;

use ringfence_response::{Action, Cause, Responder, ResponseConfig, Status};
use ringfence_wire::{OrderAction, OrderResult, OrderStatus, Orders, ResponseOrder, limits};

/// Orders waiting for the worker before new ones are refused.
const QUEUE: usize = 64;
/// Results kept for the console before the oldest are dropped (the response audit log has
/// them all either way).
const OUTBOX: usize = 1024;

/// Runs orders and keeps their results for the console.
pub struct OrderRunner {
    accept: bool,
    config: ResponseConfig,
    worker: Option<mpsc::SyncSender<ResponseOrder>>,
    finished: Option<mpsc::Receiver<OrderResult>>,
    outbox: VecDeque<OrderResult>,
    /// Results in the check-in in flight (the first `in_flight` of the outbox).
    in_flight: usize,
}

impl std::fmt::Debug for OrderRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderRunner")
            .field("accept", &self.accept)
            .field("outbox", &self.outbox.len())
            .finish()
    }
}

/// The responder's action for a console order.
pub fn action(order: &OrderAction) -> Action {
    match order {
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
    }
}

/// Run one order through `responder`.
pub fn execute(responder: &mut Responder, order: &ResponseOrder) -> OrderResult {
    let cause = Cause {
        rule_id: None,
        requested_by: format!("console:{}", order.requested_by),
    };
    let record = responder.execute(&action(&order.action), &cause);
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
    /// `accept`: `[fleet] accept_orders`; `config`: from `[response]`.
    pub fn new(accept: bool, config: ResponseConfig) -> OrderRunner {
        OrderRunner {
            accept,
            config,
            worker: None,
            finished: None,
            outbox: VecDeque::new(),
            in_flight: 0,
        }
    }

    /// Hand the orders of a check-in response over; refused ones get their result at once.
    pub fn submit(&mut self, orders: &Orders) {
        for order in orders.iter() {
            if !self.accept {
                tracing::warn!(order = order.id, action = order.action.name(), requested_by = %order.requested_by,
                    "response order refused: fleet.accept_orders is off");
                self.push(OrderResult::new(
                    order.id,
                    OrderStatus::Refused,
                    "accept_orders is off",
                ));
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
    }

    fn worker(&mut self) -> Result<&mpsc::SyncSender<ResponseOrder>, String> {
        if self.worker.is_none() {
            let (tx, rx) = mpsc::sync_channel::<ResponseOrder>(QUEUE);
            let (done_tx, done_rx) = mpsc::channel();
            let mut responder = Responder::new(self.config.clone());
            std::thread::Builder::new()
                .name("rf-orders".into())
                .spawn(move || {
                    for order in rx {
                        if done_tx.send(execute(&mut responder, &order)).is_err() {
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
    use std::time::{Duration, Instant};

    fn order(id: u64, action: serde_json::Value) -> Orders {
        let o = serde_json::json!([{"id": id, "action": action, "requested_by": "alice", "reason": "ir-1"}]);
        serde_json::from_value(o).unwrap()
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
        let mut runner = OrderRunner::new(true, config);
        runner.submit(&order(
            7,
            serde_json::json!({"kind": "kill", "pid": child.id(), "tree": true}),
        ));
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

        // The guard rails apply to orders: pid 1 is refused.
        runner.submit(&order(8, serde_json::json!({"kind": "kill", "pid": 1})));
        let out = wait_for_result(&mut runner);
        assert_eq!(out[0].status, OrderStatus::Refused, "{}", out[0].detail);
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn with_accept_orders_off_orders_are_refused_unrun() {
        let dir = tempfile::tempdir().unwrap();
        let config = ResponseConfig {
            audit_log: dir.path().join("audit.jsonl"),
            ..ResponseConfig::default()
        };
        let mut runner = OrderRunner::new(false, config);
        runner.submit(&order(
            3,
            serde_json::json!({"kind": "block_ip", "ip": "203.0.113.9", "ttl_secs": 60}),
        ));
        let out = runner.outgoing();
        assert_eq!(
            out,
            [OrderResult::new(
                3,
                OrderStatus::Refused,
                "accept_orders is off"
            )]
        );
        assert!(!dir.path().join("audit.jsonl").exists());
        assert!(runner.worker.is_none(), "no worker for refused orders");
    }

    #[test]
    fn results_go_up_at_most_a_batch_at_a_time() {
        let mut runner = OrderRunner::new(false, ResponseConfig::default());
        for id in 0..40 {
            runner.submit(&order(id, serde_json::json!({"kind": "kill", "pid": 5})));
        }
        assert_eq!(runner.outgoing().len(), limits::ORDERS);
        runner.acknowledged();
        assert_eq!(runner.outgoing().len(), 40 - limits::ORDERS);
        runner.acknowledged();
        assert_eq!(runner.waiting(), 0);
    }
}
