//! Limits on what one client can make the console do: per-agent token buckets for check-ins
//! and findings ([`AgentQuotas`]), and the failure backoff that login uses per address and per
//! name ([`Backoff`]).
//!
//! Both are kept in memory, in maps with a hard cap on their entries: when a map is full, the
//! entries that no longer limit anything (a full bucket, a backoff that has expired) go first,
//! then the oldest. Time is the console's clock, so a drill's accelerated clock refills buckets
//! at the drill's pace and tests step it by hand. Buckets are per console: behind a load
//! balancer an agent gets each console's quota, which still bounds what it can do.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use crate::AppState;
use crate::clock::Millis;
use crate::error::{AppError, AppResult};

/// A token bucket's shape: `burst` tokens at most, `per_interval` tokens back every check-in
/// interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub burst: u32,
    pub per_interval: u32,
}

impl Quota {
    /// Check-ins: 10 at once, then 6 per check-in interval (six times the rate an agent is told
    /// to keep, room for restarts and retries).
    pub const CHECKINS: Quota = Quota {
        burst: 10,
        per_interval: 6,
    };
    /// Findings, counted one by one (an upload costs its number of findings, at least 1): two
    /// full batches at once, then one batch per check-in interval. An agent over it keeps its
    /// findings and sends them later.
    pub const FINDINGS: Quota = Quota {
        burst: 2 * ringfence_wire::limits::FINDINGS_PER_BATCH as u32,
        per_interval: ringfence_wire::limits::FINDINGS_PER_BATCH as u32,
    };
    /// Inventory uploads, in units of [`INVENTORY_UNIT`] bytes (an upload costs at least one):
    /// two of the largest bodies at once, then 512 KiB per check-in interval. A typical whole
    /// inventory is two units and a delta one.
    pub const INVENTORY: Quota = Quota {
        burst: 2 * (ringfence_wire::limits::INVENTORY_BYTES / INVENTORY_UNIT) as u32,
        per_interval: 8,
    };
}

/// Bytes per token of the inventory quota.
pub const INVENTORY_UNIT: usize = 64 * 1024;

/// Most agents a bucket map tracks (a fleet larger than this shares the oldest entries' fate:
/// a full bucket again).
pub const MAX_TRACKED: usize = 1 << 20;
const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens in thousandths.
    milli: u64,
    at: Millis,
}

/// Token buckets keyed by agent id, in shards so check-ins from many agents rarely wait on one
/// lock.
#[derive(Debug)]
pub struct Buckets {
    quota: Quota,
    /// Clock milliseconds per token.
    refill_ms_per_token: f64,
    cap_per_shard: usize,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
}

/// The answer of [`Buckets::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Allowed,
    /// Refused; tokens come back in this many milliseconds.
    Refused {
        retry_after_ms: Millis,
    },
}

impl Buckets {
    /// Buckets of `quota` refilled over `interval_ms`, at most `max_tracked` keys.
    pub fn new(quota: Quota, interval_ms: Millis, max_tracked: usize) -> Buckets {
        let per = f64::from(quota.per_interval.max(1));
        Buckets {
            quota,
            refill_ms_per_token: interval_ms.max(1) as f64 / per,
            cap_per_shard: (max_tracked / SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Bucket>> {
        // FNV-1a: keys are agent ids the console minted, so no one picks a shard on purpose.
        let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        &self.shards[(h % SHARDS as u64) as usize]
    }

    fn refilled(&self, b: Bucket, now: Millis) -> Bucket {
        let full = u64::from(self.quota.burst).saturating_mul(1000);
        let elapsed = now.saturating_sub(b.at).max(0) as f64;
        let gained = (elapsed / self.refill_ms_per_token * 1000.0).min(full as f64) as u64;
        Bucket {
            milli: b.milli.saturating_add(gained).min(full),
            at: now.max(b.at),
        }
    }

    /// Take `cost` tokens (at least 1, at most the burst) from `key`'s bucket at `now`.
    pub fn take(&self, key: &str, cost: u32, now: Millis) -> Take {
        let cost = u64::from(cost.clamp(1, self.quota.burst.max(1))) * 1000;
        let full = u64::from(self.quota.burst).saturating_mul(1000);
        let mut map = match self.shard(key).lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let bucket = match map.get(key) {
            Some(b) => self.refilled(*b, now),
            None => {
                if map.len() >= self.cap_per_shard {
                    self.evict(&mut map, now);
                }
                Bucket {
                    milli: full,
                    at: now,
                }
            }
        };
        let (after, answer) = if bucket.milli >= cost {
            (bucket.milli - cost, Take::Allowed)
        } else {
            let missing = (cost - bucket.milli) as f64 / 1000.0;
            let wait = (missing * self.refill_ms_per_token).ceil() as Millis;
            (
                bucket.milli,
                Take::Refused {
                    retry_after_ms: wait.max(1),
                },
            )
        };
        map.insert(
            key.to_owned(),
            Bucket {
                milli: after,
                at: bucket.at,
            },
        );
        answer
    }

    /// Drop the buckets that are full again; if none are, the least recently used half.
    fn evict(&self, map: &mut HashMap<String, Bucket>, now: Millis) {
        let full = u64::from(self.quota.burst).saturating_mul(1000);
        map.retain(|_, b| self.refilled(*b, now).milli < full);
        if map.len() >= self.cap_per_shard {
            let mut ages: Vec<Millis> = map.values().map(|b| b.at).collect();
            ages.sort_unstable();
            let cut = ages.get(ages.len() / 2).copied().unwrap_or(Millis::MAX);
            map.retain(|_, b| b.at > cut);
        }
    }

    /// Whether `key` has a whole token at `now`, without taking it.
    pub fn peek(&self, key: &str, now: Millis) -> Take {
        let map = match self.shard(key).lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match map.get(key).map(|b| self.refilled(*b, now)) {
            Some(b) if b.milli < 1000 => Take::Refused {
                retry_after_ms: (((1000 - b.milli) as f64 / 1000.0) * self.refill_ms_per_token)
                    .ceil()
                    .max(1.0) as Millis,
            },
            _ => Take::Allowed,
        }
    }

    /// Keys tracked now (tests).
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| match s.lock() {
                Ok(g) => g.len(),
                Err(p) => p.into_inner().len(),
            })
            .sum()
    }
}

/// Per-agent quotas on the agent API.
#[derive(Debug)]
pub struct AgentQuotas {
    pub checkins: Buckets,
    pub findings: Buckets,
    pub inventory: Buckets,
}

impl AgentQuotas {
    pub fn new(checkins: Quota, findings: Quota, interval_ms: Millis) -> AgentQuotas {
        AgentQuotas {
            checkins: Buckets::new(checkins, interval_ms, MAX_TRACKED),
            findings: Buckets::new(findings, interval_ms, MAX_TRACKED),
            inventory: Buckets::new(Quota::INVENTORY, interval_ms, MAX_TRACKED),
        }
    }
}

fn retry_secs(ms: Millis) -> u64 {
    u64::try_from(ms.saturating_add(999) / 1000)
        .unwrap_or(1)
        .max(1)
}

/// The check-in quota of an authenticated agent: call first in the handler; 429 when over.
pub fn checkin(state: &AppState, agent: &ringfence_wire::AgentId) -> AppResult<()> {
    match state
        .quotas
        .checkins
        .take(agent.as_str(), 1, state.clock.now_ms())
    {
        Take::Allowed => Ok(()),
        Take::Refused { retry_after_ms } => {
            state
                .metrics
                .quota_refusals_checkin
                .fetch_add(1, Ordering::Relaxed);
            Err(AppError::TooManyRequests {
                message: "check-in quota exceeded: this agent checks in too often",
                retry_after_s: retry_secs(retry_after_ms),
            })
        }
    }
}

/// The findings quota of an authenticated agent uploading `count` findings; 429 when over (the
/// agent keeps them for later).
pub fn findings(state: &AppState, agent: &ringfence_wire::AgentId, count: usize) -> AppResult<()> {
    let cost = u32::try_from(count).unwrap_or(u32::MAX);
    let now = state.clock.now_ms();
    findings_answer(state, state.quotas.findings.take(agent.as_str(), cost, now))
}

/// The inventory quota of an authenticated agent uploading `bytes`; 429 when over (the agent
/// tries again after a later check-in). Called before the body is parsed.
pub fn inventory(state: &AppState, agent: &ringfence_wire::AgentId, bytes: usize) -> AppResult<()> {
    let cost = u32::try_from(bytes.div_ceil(INVENTORY_UNIT).max(1)).unwrap_or(u32::MAX);
    match state
        .quotas
        .inventory
        .take(agent.as_str(), cost, state.clock.now_ms())
    {
        Take::Allowed => Ok(()),
        Take::Refused { retry_after_ms } => Err(AppError::TooManyRequests {
            message: "inventory quota exceeded: send it after a later check-in",
            retry_after_s: retry_secs(retry_after_ms),
        }),
    }
}

/// Before a findings upload is parsed: 429 at once if the agent's findings quota is used up,
/// so a flooding agent costs no JSON parsing.
pub fn findings_open(state: &AppState, agent: &ringfence_wire::AgentId) -> AppResult<()> {
    let now = state.clock.now_ms();
    findings_answer(state, state.quotas.findings.peek(agent.as_str(), now))
}

fn findings_answer(state: &AppState, take: Take) -> AppResult<()> {
    match take {
        Take::Allowed => Ok(()),
        Take::Refused { retry_after_ms } => {
            state
                .metrics
                .quota_refusals_findings
                .fetch_add(1, Ordering::Relaxed);
            Err(AppError::TooManyRequests {
                message: "findings quota exceeded: upload them later",
                retry_after_s: retry_secs(retry_after_ms),
            })
        }
    }
}

/// Failure backoff: a key (an address, a name) may fail `free` times; then each attempt must
/// wait `base_ms · 2^(failures − free)` (at most `max_ms`) after the last failure. A key with
/// no failure for `forget_ms` is forgotten.
#[derive(Debug)]
pub struct Backoff {
    pub free: u32,
    pub base_ms: Millis,
    pub max_ms: Millis,
    pub forget_ms: Millis,
    pub max_tracked: usize,
    map: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Millis,
}

impl Backoff {
    pub fn new(free: u32, base_ms: Millis, max_ms: Millis, max_tracked: usize) -> Backoff {
        Backoff {
            free,
            base_ms,
            max_ms,
            forget_ms: 3_600_000,
            max_tracked: max_tracked.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn wait_of(&self, f: Failures) -> Millis {
        if f.count < self.free {
            return 0;
        }
        let doublings = (f.count - self.free).min(40);
        self.base_ms
            .saturating_mul(1i64 << doublings.min(62))
            .min(self.max_ms)
    }

    /// Milliseconds `key` must still wait at `now` (0: it may try).
    pub fn wait(&self, key: &str, now: Millis) -> Millis {
        let map = self.lock();
        map.get(key).map_or(0, |f| {
            let until = f.last.saturating_add(self.wait_of(*f));
            until.saturating_sub(now).max(0)
        })
    }

    /// Record a failure of `key` at `now`.
    pub fn fail(&self, key: &str, now: Millis) {
        let mut map = self.lock();
        if !map.contains_key(key) && map.len() >= self.max_tracked {
            // Expired and forgotten entries first; if none, the oldest half.
            map.retain(|_, f| {
                let until = f.last.saturating_add(self.wait_of(*f));
                until > now || now.saturating_sub(f.last) < self.forget_ms.min(self.max_ms)
            });
            if map.len() >= self.max_tracked {
                let mut lasts: Vec<Millis> = map.values().map(|f| f.last).collect();
                lasts.sort_unstable();
                let cut = lasts.get(lasts.len() / 2).copied().unwrap_or(Millis::MAX);
                map.retain(|_, f| f.last > cut);
            }
        }
        let e = map.entry(key.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_sub(e.last) >= self.forget_ms {
            e.count = 0;
        }
        e.count = e.count.saturating_add(1);
        e.last = now.max(e.last);
    }

    /// Forget `key` (a successful login).
    pub fn clear(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Keys tracked now (tests).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refuses_past_its_burst_and_refills_with_time() {
        let b = Buckets::new(
            Quota {
                burst: 3,
                per_interval: 6,
            },
            60_000,
            100,
        );
        for _ in 0..3 {
            assert_eq!(b.take("a", 1, 0), Take::Allowed);
        }
        assert_eq!(
            b.take("a", 1, 0),
            Take::Refused {
                retry_after_ms: 10_000
            }
        );
        // Another agent has its own bucket.
        assert_eq!(b.take("b", 1, 0), Take::Allowed);
        assert_eq!(b.take("a", 1, 10_000), Take::Allowed);
        assert!(matches!(b.take("a", 1, 10_000), Take::Refused { .. }));
        // A clock that steps back gives nothing and takes nothing.
        assert!(matches!(b.take("a", 1, 0), Take::Refused { .. }));
        // A cost above the burst is charged as the burst, so a big batch can still pass.
        assert_eq!(b.take("c", 1_000_000, 0), Take::Allowed);
        // Peeking takes nothing.
        assert!(matches!(b.peek("c", 0), Take::Refused { .. }));
        assert_eq!(b.peek("d", 0), Take::Allowed);
        assert_eq!(b.take("d", 3, 0), Take::Allowed);
    }

    #[test]
    fn bucket_maps_stay_bounded() {
        let b = Buckets::new(Quota::CHECKINS, 60_000, SHARDS * 4);
        for i in 0..10_000 {
            let _ = b.take(&format!("agent-{i}"), 1, i64::from(i));
        }
        assert!(b.tracked() <= SHARDS * 4, "{}", b.tracked());
    }

    #[test]
    fn backoff_doubles_after_the_free_failures_and_is_bounded() {
        let b = Backoff::new(2, 1000, 60_000, 100);
        b.fail("x", 0);
        assert_eq!(b.wait("x", 0), 0);
        b.fail("x", 0);
        assert_eq!(b.wait("x", 0), 1000);
        b.fail("x", 1000);
        assert_eq!(b.wait("x", 1000), 2000);
        for _ in 0..100 {
            b.fail("x", 1000);
        }
        assert_eq!(b.wait("x", 1000), 60_000);
        b.clear("x");
        assert_eq!(b.wait("x", 1000), 0);
        // Forgotten after an hour without failures.
        b.fail("y", 0);
        b.fail("y", 0);
        b.fail("y", 3_600_000);
        assert_eq!(b.wait("y", 3_600_000), 0);
    }

    #[test]
    fn backoff_maps_stay_bounded() {
        let b = Backoff::new(5, 1000, 60_000, 64);
        for i in 0..10_000 {
            b.fail(&format!("name-{i}"), i64::from(i));
        }
        assert!(b.tracked() <= 64, "{}", b.tracked());
    }
}
