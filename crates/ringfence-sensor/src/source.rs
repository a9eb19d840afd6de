//! The source seam: what every source (eBPF, process connector, audit, fanotify, logs, replay)
//! implements, and the channel it hands events to.
//!
//! A source runs on its own thread: the agent calls [`Source::run`] with an [`EventSender`] and a
//! [`StopSignal`], and the source reads the kernel until the signal is raised, then returns.
//! Blocking reads must use a timeout (≤ 250 ms is plenty) so the source notices the signal.
//!
//! The host comes first: [`EventSender::send`] never blocks. When the agent falls behind and the
//! bounded channel is full, the event is dropped and counted. Every source has one
//! [`SourceCounters`] (events read from the kernel, events queued, events dropped because the
//! queue was full, gaps the kernel reported, records that did not parse), which the agent reads
//! for its periodic health line and its exit summary.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use ringfence_event::Event;

/// A producer of events. Implementations own their kernel handles; `run` consumes the source so
/// handles are closed (and marks or rules removed) when it returns.
pub trait Source: Send {
    /// A short stable name for logs and counters (`proc_connector`, `fanotify`, `ebpf`).
    fn name(&self) -> &'static str;

    /// Read until `stop` is raised or the receiving side is gone, sending events to `out`.
    /// Return `Ok(())` on a requested stop; an `Err` means the source died and the agent carries
    /// on without it (and says so).
    fn run(self: Box<Self>, out: EventSender, stop: StopSignal) -> Result<(), SourceError>;
}

/// Why a source could not start or had to stop.
#[derive(Debug)]
#[non_exhaustive]
pub enum SourceError {
    /// The kernel or this process lacks what the source needs (no permission, no feature).
    Unavailable {
        source: &'static str,
        reason: String,
    },
    /// A system call failed.
    Syscall {
        source: &'static str,
        call: &'static str,
        error: io::Error,
    },
    /// Anything else, described.
    Other {
        source: &'static str,
        message: String,
    },
}

impl SourceError {
    pub fn syscall(source: &'static str, call: &'static str, error: io::Error) -> SourceError {
        SourceError::Syscall {
            source,
            call,
            error,
        }
    }

    /// The last OS error, attributed to `call`.
    pub fn last_os_error(source: &'static str, call: &'static str) -> SourceError {
        SourceError::syscall(source, call, io::Error::last_os_error())
    }

    pub fn unavailable(source: &'static str, reason: impl Into<String>) -> SourceError {
        SourceError::Unavailable {
            source,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Unavailable { source, reason } => {
                write!(f, "source {source} unavailable: {reason}")
            }
            SourceError::Syscall {
                source,
                call,
                error,
            } => write!(f, "source {source}: {call} failed: {error}"),
            SourceError::Other { source, message } => write!(f, "source {source}: {message}"),
        }
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SourceError::Syscall { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Counters for one source. All relaxed atomics: they are statistics, not synchronisation.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Records read from the kernel (or file) that became events.
    pub events_in: AtomicU64,
    /// Events queued to the agent.
    pub events_out: AtomicU64,
    /// Events dropped because the agent's queue was full.
    pub dropped: AtomicU64,
    /// Events the kernel said it lost (sequence gaps, ENOBUFS, queue overflow), as best known.
    pub gaps: AtomicU64,
    /// Records that did not parse, or reads that failed and were retried.
    pub errors: AtomicU64,
}

/// A copy of [`SourceCounters`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub events_in: u64,
    pub events_out: u64,
    pub dropped: u64,
    pub gaps: u64,
    pub errors: u64,
}

impl SourceCounters {
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            events_in: self.events_in.load(Ordering::Relaxed),
            events_out: self.events_out.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// The most events a source holds before handing them over with [`EventSender::send_all`],
/// however soon it meant to: a burst never waits behind a batch without bound.
pub const BATCH: usize = 256;

/// What became of one [`EventSender::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Queued,
    /// The queue was full; the event was dropped and counted.
    Dropped,
    /// The agent is gone; the source should return.
    Closed,
}

/// The sending half a source writes to. Cheap to clone; clones share the counters.
#[derive(Debug, Clone)]
pub struct EventSender {
    name: &'static str,
    tx: Sender<Box<Event>>,
    counters: Arc<SourceCounters>,
}

impl EventSender {
    /// A sender for the source called `name`, with fresh counters.
    pub fn new(name: &'static str, tx: Sender<Box<Event>>) -> EventSender {
        EventSender {
            name,
            tx,
            counters: Arc::new(SourceCounters::default()),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The counters, for the agent to read while the source runs.
    pub fn counters(&self) -> Arc<SourceCounters> {
        Arc::clone(&self.counters)
    }

    /// Queue `event` without blocking: counts it in, and out or dropped.
    pub fn send(&self, event: Event) -> Sent {
        self.counters.events_in.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Box::new(event)) {
            Ok(()) => {
                self.counters.events_out.fetch_add(1, Ordering::Relaxed);
                Sent::Queued
            }
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                Sent::Dropped
            }
            Err(TrySendError::Disconnected(_)) => Sent::Closed,
        }
    }

    /// Queue every event of `batch` in order, leaving it empty (and its capacity for the next
    /// batch): sources that gather events hand them over in one burst, so the agent wakes once.
    /// `Closed` as soon as the agent is gone; dropped events are counted as by [`Self::send`].
    pub fn send_all(&self, batch: &mut Vec<Event>) -> Sent {
        for event in batch.drain(..) {
            if self.send(event) == Sent::Closed {
                return Sent::Closed;
            }
        }
        Sent::Queued
    }

    /// The kernel reported `n` lost records.
    pub fn note_gap(&self, n: u64) {
        self.counters.gaps.fetch_add(n, Ordering::Relaxed);
    }

    /// A record did not parse or a read failed.
    pub fn note_error(&self) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// A bounded event channel: the agent keeps the receiver and makes one [`EventSender`] per
/// source with [`EventSender::new`] on a clone of the sender. Events travel boxed, so the
/// channel's preallocated slots cost a pointer each, not an event each.
pub fn channel(capacity: usize) -> (Sender<Box<Event>>, Receiver<Box<Event>>) {
    crossbeam_channel::bounded(capacity.max(1))
}

/// Raised once to ask every source to stop. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    inner: Arc<StopInner>,
}

#[derive(Debug, Default)]
struct StopInner {
    stopped: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl StopSignal {
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    /// Raise the signal and wake every [`StopSignal::sleep`].
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        let _guard = self
            .inner
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.inner.cv.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    /// Sleep up to `timeout`, waking early on stop. Returns true if stopped.
    pub fn sleep(&self, timeout: Duration) -> bool {
        let guard = self
            .inner
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.is_stopped() {
            return true;
        }
        let _ = self
            .inner
            .cv
            .wait_timeout_while(guard, timeout, |()| !self.is_stopped());
        self.is_stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_event::{EventKind, SourceKind, Timestamp};

    fn ev() -> Event {
        Event::new(
            EventKind::ProcessExec,
            SourceKind::ProcConnector,
            Timestamp(1),
        )
    }

    #[test]
    fn full_queue_drops_and_counts_without_blocking() {
        let (tx, rx) = channel(2);
        let out = EventSender::new("test", tx);
        assert_eq!(out.send(ev()), Sent::Queued);
        assert_eq!(out.send(ev()), Sent::Queued);
        assert_eq!(out.send(ev()), Sent::Dropped);
        out.note_gap(3);
        let c = out.counters().snapshot();
        assert_eq!((c.events_in, c.events_out, c.dropped, c.gaps), (3, 2, 1, 3));
        drop(rx);
        assert_eq!(out.send(ev()), Sent::Closed);
    }

    #[test]
    fn a_batch_is_sent_in_order_and_left_empty() {
        let (tx, rx) = channel(2);
        let out = EventSender::new("test", tx);
        let mut batch = vec![ev(), ev(), ev()];
        batch[0].timestamp = Timestamp(7);
        assert_eq!(out.send_all(&mut batch), Sent::Queued);
        assert!(batch.is_empty());
        assert_eq!(rx.try_recv().map(|e| e.timestamp).ok(), Some(Timestamp(7)));
        assert_eq!(
            out.counters().snapshot().dropped,
            1,
            "the third did not fit"
        );
        drop(rx);
        batch.push(ev());
        assert_eq!(out.send_all(&mut batch), Sent::Closed);
    }

    #[test]
    fn stop_wakes_a_sleeper() {
        let stop = StopSignal::new();
        let s2 = stop.clone();
        let t = std::thread::spawn(move || s2.sleep(Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(20));
        stop.stop();
        assert_eq!(t.join().ok(), Some(true));
        assert!(stop.sleep(Duration::from_secs(60)));
    }
}
