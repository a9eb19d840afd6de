//! What the pipeline tells the fleet link: cumulative counters and the findings waiting for
//! upload.
//!
//! The pipeline thread only adds to atomics and pushes onto a bounded queue (one short lock per
//! finding, never a wait on the network). The link reads the counters, sends the difference
//! from what the console last acknowledged, and drains the queue in batches; when the console
//! is away the queue keeps the newest findings and counts the ones it had to let go.
//!
//! Each finding gets a delivery id when it is queued (`ringfence.delivery_id`: this process's
//! random prefix and a counter). An upload whose acknowledgement is lost on the way back is
//! sent again, and the console stores each delivery id once, so a retry never duplicates a
//! finding.
//!
//! The other way round, the link hands the pipeline **notices**: a console that keeps failing,
//! a refused order or content offer. The pipeline turns each into a `sensor-health` event in the
//! agent's own outputs, where a person on the host sees it whatever the console does.
//!
//! The pipeline also leaves the eBPF sensor's hook per kind here once its sources are open;
//! every check-in carries it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

/// Shared between the pipeline and the fleet link.
#[derive(Debug)]
pub struct Telemetry {
    events: AtomicU64,
    dropped: AtomicU64,
    findings: AtomicU64,
    findings_lost: AtomicU64,
    output_drops: AtomicU64,
    queue: Mutex<VecDeque<Map<String, Value>>>,
    capacity: usize,
    notices: Mutex<VecDeque<String>>,
    has_notices: std::sync::atomic::AtomicBool,
    /// Random per process, so delivery ids never repeat across restarts.
    delivery_prefix: String,
    next_delivery: AtomicU64,
    sensor_hooks: Mutex<ringfence_wire::SensorHooks>,
}

/// 16 random hex digits from the kernel, or the pid and the time if it has none to give.
fn delivery_prefix() -> String {
    use std::io::Read;
    let mut bytes = [0_u8; 8];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (now ^ (u64::from(std::process::id()) << 40)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Notices kept for the pipeline before the oldest are dropped.
const NOTICES: usize = 64;

/// Cumulative counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events through the pipeline.
    pub events: u64,
    /// Events lost by the sources (queue full, kernel gaps).
    pub dropped: u64,
    /// Findings produced.
    pub findings: u64,
    /// Findings that could not be kept for upload (queue full, or too large to send).
    pub findings_lost: u64,
    /// Findings the routed outputs (`[[outputs]]`) could not deliver.
    pub output_drops: u64,
}

impl Counters {
    /// `self - earlier`, never below zero.
    pub fn since(self, earlier: Counters) -> Counters {
        Counters {
            events: self.events.saturating_sub(earlier.events),
            dropped: self.dropped.saturating_sub(earlier.dropped),
            findings: self.findings.saturating_sub(earlier.findings),
            findings_lost: self.findings_lost.saturating_sub(earlier.findings_lost),
            output_drops: self.output_drops.saturating_sub(earlier.output_drops),
        }
    }
}

impl Telemetry {
    /// Keeps at most `capacity` findings waiting for upload.
    pub fn new(capacity: usize) -> Telemetry {
        Telemetry {
            events: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            findings: AtomicU64::new(0),
            findings_lost: AtomicU64::new(0),
            output_drops: AtomicU64::new(0),
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            notices: Mutex::new(VecDeque::new()),
            has_notices: std::sync::atomic::AtomicBool::new(false),
            delivery_prefix: delivery_prefix(),
            next_delivery: AtomicU64::new(0),
            sensor_hooks: Mutex::new(ringfence_wire::SensorHooks::default()),
        }
    }

    /// The sensor's profile and hook per kind, for the check-ins (set once the sources are open).
    pub fn set_sensor_hooks(&self, hooks: ringfence_wire::SensorHooks) {
        *self
            .sensor_hooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = hooks;
    }

    pub fn sensor_hooks(&self) -> ringfence_wire::SensorHooks {
        self.sensor_hooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The link has something the host's outputs must show (a health notice).
    pub fn notice(&self, line: String) {
        let mut q = self
            .notices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.len() >= NOTICES {
            q.pop_front();
        }
        q.push_back(line);
        self.has_notices.store(true, Ordering::Release);
    }

    /// Notices waiting for the pipeline; one atomic load when there are none.
    pub fn take_notices(&self) -> Vec<String> {
        if !self.has_notices.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        self.notices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
            .collect()
    }

    /// One event went through the pipeline.
    pub fn event(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    /// The sources' total losses so far (set, not added: the sources keep the running sum).
    pub fn set_dropped(&self, total: u64) {
        self.dropped.fetch_max(total, Ordering::Relaxed);
    }

    /// The routed outputs' total drops so far (set, not added).
    pub fn set_output_drops(&self, total: u64) {
        self.output_drops.fetch_max(total, Ordering::Relaxed);
    }

    /// A finding, as the ECS object written to the outputs. Anything else is not a finding the
    /// console can store and is only counted.
    pub fn finding(&self, finding: &Value) {
        self.findings.fetch_add(1, Ordering::Relaxed);
        let Value::Object(map) = finding else {
            self.findings_lost.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut map = map.clone();
        let n = self.next_delivery.fetch_add(1, Ordering::Relaxed);
        let id = Value::String(format!("{}-{n:x}", self.delivery_prefix));
        match map.get_mut("ringfence") {
            Some(Value::Object(ours)) => {
                ours.insert("delivery_id".into(), id);
            }
            Some(_) => {}
            None => {
                map.insert(
                    "ringfence".into(),
                    Value::Object(Map::from_iter([("delivery_id".to_owned(), id)])),
                );
            }
        }
        let mut queue = self.lock();
        if queue.len() >= self.capacity {
            queue.pop_front();
            self.findings_lost.fetch_add(1, Ordering::Relaxed);
        }
        queue.push_back(map);
    }

    /// Counts a finding that was taken for upload but could not be sent (too large).
    pub fn lost(&self, n: u64) {
        self.findings_lost.fetch_add(n, Ordering::Relaxed);
    }

    pub fn counters(&self) -> Counters {
        Counters {
            events: self.events.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            findings: self.findings.load(Ordering::Relaxed),
            findings_lost: self.findings_lost.load(Ordering::Relaxed),
            output_drops: self.output_drops.load(Ordering::Relaxed),
        }
    }

    /// Takes up to `max` of the oldest waiting findings.
    pub fn take_findings(&self, max: usize) -> Vec<Map<String, Value>> {
        let mut queue = self.lock();
        let n = max.min(queue.len());
        queue.drain(..n).collect()
    }

    /// Puts back findings whose upload failed, ahead of newer ones (the oldest are dropped if
    /// that overfills the queue).
    pub fn return_findings(&self, batch: Vec<Map<String, Value>>) {
        let mut queue = self.lock();
        for f in batch.into_iter().rev() {
            queue.push_front(f);
        }
        while queue.len() > self.capacity {
            queue.pop_front();
            self.findings_lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Findings waiting for upload.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Map<String, Value>>> {
        // A panic while holding this lock cannot leave the queue inconsistent.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keeps_the_newest_and_counts_the_rest() {
        let t = Telemetry::new(2);
        for i in 0..3 {
            t.finding(&serde_json::json!({ "n": i }));
        }
        t.finding(&serde_json::json!("not an object"));
        let c = t.counters();
        assert_eq!((c.findings, c.findings_lost), (4, 2));
        let batch = t.take_findings(10);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0]["n"], 1);
        t.finding(&serde_json::json!({ "n": 3 }));
        t.return_findings(batch);
        // Oldest dropped: 1 goes, 2 and 3 stay in order.
        let again = t.take_findings(10);
        let ns: Vec<_> = again.iter().map(|m| m["n"].clone()).collect();
        assert_eq!(ns, [serde_json::json!(2), serde_json::json!(3)]);
        assert_eq!(t.counters().findings_lost, 3);
    }

    #[test]
    fn counters_since_never_go_negative() {
        let a = Counters {
            events: 10,
            dropped: 1,
            findings: 2,
            findings_lost: 0,
            output_drops: 5,
        };
        let b = Counters {
            events: 4,
            ..Counters::default()
        };
        assert_eq!(b.since(a), Counters::default());
        assert_eq!(a.since(b).events, 6);
    }
}
