//! Injectable time. Everything in the console that asks "what time is it" asks a [`Clock`], so
//! tests can step time by hand ([`ManualClock`]) and fleet drills can run hours of bake time in
//! seconds ([`AcceleratedClock`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now_ms(&self) -> Millis;

    /// How many clock milliseconds pass per real millisecond (1 for wall time).
    fn speed(&self) -> f64 {
        1.0
    }
}

/// Shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

fn wall_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        wall_ms()
    }
}

/// Time that runs `speed` times faster than the wall clock, starting now.
#[derive(Debug)]
pub struct AcceleratedClock {
    start_real: Instant,
    start_ms: Millis,
    speed: f64,
}

impl AcceleratedClock {
    pub fn new(speed: f64) -> AcceleratedClock {
        AcceleratedClock {
            start_real: Instant::now(),
            start_ms: wall_ms(),
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
        }
    }
}

impl Clock for AcceleratedClock {
    fn now_ms(&self) -> Millis {
        let elapsed = self.start_real.elapsed().as_secs_f64() * 1000.0 * self.speed;
        // Float to int saturates; a drill never runs long enough to get near it.
        self.start_ms + elapsed as i64
    }

    fn speed(&self) -> f64 {
        self.speed
    }
}

/// Time that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Millis) -> ManualClock {
        ManualClock(AtomicI64::new(start))
    }

    pub fn advance_ms(&self, ms: Millis) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set(&self, ms: Millis) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1000);
        assert_eq!(c.now_ms(), 1000);
        c.advance_ms(500);
        assert_eq!(c.now_ms(), 1500);
    }

    #[test]
    fn accelerated_clock_runs_faster() {
        let c = AcceleratedClock::new(1000.0);
        let a = c.now_ms();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(c.now_ms() - a >= 15_000);
    }
}
