//! A routed output's bounded queue and its delivery thread: the pipeline hands a finding over
//! without waiting (a full queue drops it, counted), the thread sends batches to the receiver
//! and retries a failed batch with doubling waits until it is sent, refused, or too old, and
//! counts every finding that did not arrive.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use serde_json::Value;

use super::Output;
use super::config::RouteConfig;

/// Why a batch did not arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth trying again (no connection, a timeout, a 5xx, a 429).
    Retry(String),
    /// The receiver refused it for good (a 4xx): trying again would not help.
    Refused(String),
}

/// Where a routed output delivers. Runs on the output's own thread; may block.
pub trait Sink: Send + 'static {
    /// Deliver `batch` (ECS findings), all or nothing.
    fn send(&mut self, batch: &[Value]) -> Result<(), SendError>;
    /// Most findings in one batch.
    fn max_batch(&self) -> usize {
        1
    }
}

/// What happened to an output's findings, shared between the pipeline and its thread.
#[derive(Debug, Default)]
pub struct Counters {
    /// Delivered.
    pub sent: AtomicU64,
    /// Never delivered: the queue was full, the receiver refused them, or they waited longer
    /// than `give_up_secs`.
    pub dropped: AtomicU64,
    /// Attempts that failed and were tried again.
    pub retries: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    fn set_error(&self, e: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = e;
        }
    }

    fn drop_n(&self, n: usize) {
        self.dropped
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// Retry timing.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub capacity: usize,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub give_up: Duration,
    /// On shutdown, how long the thread may take to send what is queued.
    pub drain: Duration,
}

impl Policy {
    pub fn of(c: &RouteConfig) -> Policy {
        Policy {
            capacity: c.queue.max(1),
            retry_min: Duration::from_millis(c.retry_min_ms.max(1)),
            retry_max: Duration::from_millis(c.retry_max_ms.max(c.retry_min_ms).max(1)),
            give_up: Duration::from_secs(c.give_up_secs),
            drain: Duration::from_secs(5),
        }
    }
}

/// A routed output: the pipeline's end of the queue.
pub struct Queued {
    name: String,
    tx: Option<Sender<Value>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    done: Receiver<()>,
    drain: Duration,
}

impl Queued {
    /// Start the delivery thread for `sink`.
    pub fn start(name: String, sink: Box<dyn Sink>, policy: Policy) -> std::io::Result<Queued> {
        let (tx, rx) = bounded::<Value>(policy.capacity);
        let (done_tx, done) = bounded::<()>(1);
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            sink,
            rx,
            counters: counters.clone(),
            stop: stop.clone(),
            policy,
        };
        std::thread::Builder::new()
            .name("rf-output".into())
            .spawn(move || {
                worker.run();
                let _ = done_tx.send(());
            })?;
        Ok(Queued {
            name,
            tx: Some(tx),
            counters,
            stop,
            done,
            drain: policy.drain,
        })
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }
}

impl Output for Queued {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn wants_events(&self) -> bool {
        false
    }

    fn write_line(&mut self, _line: &str) -> std::io::Result<()> {
        Ok(())
    }

    fn write_finding(&mut self, finding: &Value, _line: &str) -> std::io::Result<()> {
        let Some(tx) = &self.tx else { return Ok(()) };
        match tx.try_send(finding.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.counters.drop_n(1),
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    fn close(&mut self) {
        self.shut();
    }

    fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    fn last_error(&self) -> Option<String> {
        self.counters.last_error()
    }
}

impl Queued {
    /// Close the queue and give the thread `drain` to send what is in it; then tell it to
    /// stop retrying (what is left is counted as dropped). Once.
    fn shut(&mut self) {
        if self.tx.take().is_none() {
            return;
        }
        if self.done.recv_timeout(self.drain).is_err() {
            self.stop.store(true, Ordering::Release);
            let _ = self.done.recv_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.shut();
    }
}

struct Worker {
    sink: Box<dyn Sink>,
    rx: Receiver<Value>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    policy: Policy,
}

impl Worker {
    fn run(mut self) {
        let max = self.sink.max_batch().max(1);
        let mut batch = Vec::with_capacity(max);
        loop {
            match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(v) => batch.push(v),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < max {
                match self.rx.try_recv() {
                    Ok(v) => batch.push(v),
                    Err(_) => break,
                }
            }
            self.deliver(&batch);
            batch.clear();
        }
    }

    fn deliver(&mut self, batch: &[Value]) {
        let started = Instant::now();
        let mut wait = self.policy.retry_min;
        loop {
            match self.sink.send(batch) {
                Ok(()) => {
                    self.counters
                        .sent
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.counters.set_error(None);
                    return;
                }
                Err(SendError::Refused(why)) => {
                    tracing::warn!(error = %why, n = batch.len(), "output receiver refused findings; dropped");
                    self.counters.set_error(Some(why));
                    self.counters.drop_n(batch.len());
                    return;
                }
                Err(SendError::Retry(why)) => {
                    self.counters.set_error(Some(why));
                    if self.stop.load(Ordering::Acquire)
                        || started.elapsed().saturating_add(wait) > self.policy.give_up
                    {
                        self.counters.drop_n(batch.len());
                        return;
                    }
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    if !self.sleep(wait) {
                        self.counters.drop_n(batch.len());
                        return;
                    }
                    wait = wait.saturating_mul(2).min(self.policy.retry_max);
                }
            }
        }
    }

    /// Sleep `d` unless told to stop first (then false).
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if self.stop.load(Ordering::Acquire) {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;

    /// A sink that fails while `down` is set and records what it got.
    struct Flaky {
        down: Arc<AtomicBool>,
        got: Arc<AtomicUsize>,
    }

    impl Sink for Flaky {
        fn send(&mut self, batch: &[Value]) -> Result<(), SendError> {
            if self.down.load(Ordering::Acquire) {
                return Err(SendError::Retry("receiver down".into()));
            }
            self.got.fetch_add(batch.len(), Ordering::AcqRel);
            Ok(())
        }
        fn max_batch(&self) -> usize {
            10
        }
    }

    fn wait_until(what: impl Fn() -> bool) {
        for _ in 0..500 {
            if what() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("condition never held");
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_a_recovered_receiver_gets_the_rest() {
        let down = Arc::new(AtomicBool::new(true));
        let got = Arc::new(AtomicUsize::new(0));
        let sink = Flaky {
            down: down.clone(),
            got: got.clone(),
        };
        let policy = Policy {
            capacity: 5,
            retry_min: Duration::from_millis(5),
            retry_max: Duration::from_millis(20),
            give_up: Duration::from_secs(3600),
            drain: Duration::from_secs(5),
        };
        let mut q = match Queued::start("flaky".into(), Box::new(sink), policy) {
            Ok(q) => q,
            Err(e) => panic!("start: {e}"),
        };
        let c = q.counters();
        assert!(q.write_finding(&json!({"n": 0}), "").is_ok());
        // The first batch is held and retried; then the queue fills and the rest are dropped.
        wait_until(|| c.retries.load(Ordering::Relaxed) >= 2);
        for n in 1..=20 {
            assert!(q.write_finding(&json!({ "n": n }), "").is_ok());
        }
        assert_eq!(q.dropped(), 15, "1 in flight + 5 queued kept, 15 dropped");
        assert_eq!(q.last_error().as_deref(), Some("receiver down"));
        down.store(false, Ordering::Release);
        wait_until(|| got.load(Ordering::Acquire) == 6);
        assert_eq!(c.sent.load(Ordering::Relaxed), 6);
        assert_eq!(q.last_error(), None);
        drop(q);
    }

    #[test]
    fn a_batch_failing_past_give_up_is_dropped_and_counted() {
        let down = Arc::new(AtomicBool::new(true));
        let got = Arc::new(AtomicUsize::new(0));
        let sink = Flaky {
            down,
            got: got.clone(),
        };
        let policy = Policy {
            capacity: 100,
            retry_min: Duration::from_millis(5),
            retry_max: Duration::from_millis(5),
            give_up: Duration::from_millis(30),
            drain: Duration::from_secs(1),
        };
        let mut q = match Queued::start("down".into(), Box::new(sink), policy) {
            Ok(q) => q,
            Err(e) => panic!("start: {e}"),
        };
        for n in 0..3 {
            assert!(q.write_finding(&json!({ "n": n }), "").is_ok());
        }
        wait_until(|| q.dropped() == 3);
        assert_eq!(got.load(Ordering::Acquire), 0);
    }
}
