//! Exec-storm cost of the fanotify permission guard's exec check: N × `/bin/true` (from two
//! threads) with no guard, then with a `FAN_OPEN_EXEC_PERM` filesystem mark on `/` and 1000
//! random hashes in the deny set, in three set-ups: ignore marks + verdict cache, cache only,
//! neither (every exec hashes `/bin/true` and the dynamic loader). Rounds are interleaved and
//! each figure is the median of its rounds; the guarded ones are ratios to the baseline.
//!
//! `cargo bench -p ringfence-sensor --bench exec_perm` as root. While it runs, every exec on
//! the host goes through the guard (allowed: the deny set is random). Environment:
//! `RINGFENCE_BENCH_EXECS` (default 2000), `RINGFENCE_BENCH_ROUNDS` (default 7).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark: a failure is the benchmark failing"
)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ringfence_sensor::fanotify::permission::{
    ExecDenyOptions, ExecScope, PermissionCounters, PermissionOptions, permission_source,
};
use ringfence_sensor::source::{EventSender, Source, StopSignal, channel};

const THREADS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Baseline,
    IgnoreAndCache,
    CacheOnly,
    NoCache,
}

impl Setup {
    const ALL: [Setup; 4] = [
        Setup::Baseline,
        Setup::IgnoreAndCache,
        Setup::CacheOnly,
        Setup::NoCache,
    ];

    fn label(self) -> &'static str {
        match self {
            Setup::Baseline => "baseline",
            Setup::IgnoreAndCache => "ignore marks+cache",
            Setup::CacheOnly => "cache only",
            Setup::NoCache => "no cache",
        }
    }
}

/// xorshift64*: a fixed stream of "random" hashes.
fn deny_set(n: usize) -> HashSet<[u8; 32]> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    (0..n)
        .map(|_| {
            let mut h = [0u8; 32];
            for chunk in h.chunks_mut(8) {
                chunk.copy_from_slice(&next().to_ne_bytes());
            }
            h
        })
        .collect()
}

fn storm(n: usize) -> Duration {
    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..n / THREADS {
                    let ok = Command::new("/bin/true")
                        .status()
                        .is_ok_and(|s| s.success());
                    assert!(ok, "/bin/true failed");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("storm thread");
    }
    start.elapsed()
}

fn run(setup: Setup, n: usize) -> Option<(Duration, PermissionCounters)> {
    let (cache_entries, ignore_marks) = match setup {
        Setup::Baseline => return Some((storm(n), PermissionCounters::default())),
        Setup::IgnoreAndCache => (4096, 4096),
        Setup::CacheOnly => (4096, 0),
        Setup::NoCache => (0, 0),
    };
    let (src, handle) = match permission_source(PermissionOptions {
        protected_paths: Vec::new(),
        deny_exec: Some(ExecDenyOptions {
            scope: vec![ExecScope::Filesystem(PathBuf::from("/"))],
            sha256: deny_set(1000),
            max_hash_bytes: 64 << 20,
            cache_entries,
            ignore_marks,
        }),
    }) {
        Ok(s) => s,
        Err(e) => {
            println!("exec-perm: skipped, no permission group: {e}");
            return None;
        }
    };
    let (tx, _rx) = channel(1024);
    let stop = StopSignal::new();
    let s2 = stop.clone();
    let listener = std::thread::spawn(move || {
        Box::new(src).run(EventSender::new("fanotify_permission", tx), s2)
    });
    let t = storm(n);
    stop.stop();
    listener.join().expect("listener").expect("listener ran");
    Some((t, handle.counters()))
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = env("RINGFENCE_BENCH_EXECS", 2000);
    let rounds = env("RINGFENCE_BENCH_ROUNDS", 7);
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); Setup::ALL.len()];
    let mut last = [PermissionCounters::default(); 4];
    for round in 0..rounds {
        // Rotate the order so no set-up always runs first (or after the same one).
        for k in 0..Setup::ALL.len() {
            let i = (k + round) % Setup::ALL.len();
            let Some((t, c)) = run(Setup::ALL[i], n) else {
                return;
            };
            times[i].push(t);
            last[i] = c;
        }
    }
    let medians: Vec<Duration> = times.iter_mut().map(|v| median(v)).collect();
    let base = medians[0].as_secs_f64();
    for (i, s) in Setup::ALL.iter().enumerate().skip(1) {
        let c = last[i];
        println!(
            "  {:<20} median {:.2} s; last round: {} events, {} hashed, {} cache hits, {} ignore marks",
            s.label(),
            medians[i].as_secs_f64(),
            c.seen,
            c.hashed,
            c.cache_hits,
            c.ignore_marks
        );
    }
    println!(
        "exec-perm: baseline {:.2} s / {n} execs; {} {:.2}×; {} {:.2}×; {} {:.2}× (median of {rounds} rounds)",
        base,
        Setup::IgnoreAndCache.label(),
        medians[1].as_secs_f64() / base,
        Setup::CacheOnly.label(),
        medians[2].as_secs_f64() / base,
        Setup::NoCache.label(),
        medians[3].as_secs_f64() / base,
    );
}
