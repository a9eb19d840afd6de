//! Probation: per-rule CPU time and memory measured while new content runs over the stored
//! sample of recent events and then in shadow beside the active content. A rule over its
//! budget is disabled (and reported); the content and the agent carry on.

use std::time::{Duration, Instant};

use ringfence_event::Event;

use super::compiled::CompiledContent;

/// Per-rule limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Mean evaluation time per event.
    pub cpu_per_event: Duration,
    /// State a rule may hold.
    pub memory_bytes: u64,
}

/// The CPU time this thread has used: what a rule's evaluation costs the host. Wall-clock time
/// would also count the time the thread waited while the host ran other work, and disable a
/// cheap rule on a busy host. Falls back to wall-clock time where the thread clock is missing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CpuClock {
    Thread(Duration),
    Wall(Instant),
}

impl CpuClock {
    pub(crate) fn now() -> CpuClock {
        match nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID) {
            Ok(t) => CpuClock::Thread(Duration::from(t)),
            Err(_) => CpuClock::Wall(Instant::now()),
        }
    }

    /// Time used since `self`.
    pub(crate) fn elapsed(self) -> Duration {
        match (self, CpuClock::now()) {
            (CpuClock::Thread(then), CpuClock::Thread(now)) => now.saturating_sub(then),
            (CpuClock::Wall(then), _) => then.elapsed(),
            (CpuClock::Thread(_), CpuClock::Wall(_)) => Duration::ZERO,
        }
    }

    /// Spins until this thread has used `cpu` of CPU time (tests' slow rules).
    #[cfg(test)]
    pub(crate) fn spin(cpu: Duration) {
        let start = CpuClock::now();
        while start.elapsed() < cpu {
            std::hint::spin_loop();
        }
    }
}

/// A single evaluation this many times over the mean budget disables the rule at once.
const SINGLE_EVENT_FACTOR: u32 = 100;

/// What one rule cost during probation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleStats {
    pub events: u64,
    pub nanos: u64,
    pub max_nanos: u64,
    pub findings: u64,
}

impl RuleStats {
    pub fn mean_nanos(&self) -> u64 {
        self.nanos.checked_div(self.events).unwrap_or(0)
    }
}

/// The measurements of one content set under probation and the rules it disabled.
#[derive(Debug, Clone)]
pub struct Probation {
    pub stats: Vec<RuleStats>,
    /// `Some(reason)` for each disabled rule.
    pub disabled: Vec<Option<String>>,
    pub events: u64,
}

impl Probation {
    pub fn new(rules: usize) -> Probation {
        Probation {
            stats: vec![RuleStats::default(); rules],
            disabled: vec![None; rules],
            events: 0,
        }
    }

    /// Runs every rule still enabled on `event`, timing each; findings are counted, not kept.
    pub fn run_event(&mut self, content: &dyn CompiledContent, event: &Event, budgets: &Budgets) {
        self.events += 1;
        let hard = budgets.cpu_per_event.saturating_mul(SINGLE_EVENT_FACTOR);
        for (rule, (stats, disabled)) in self
            .stats
            .iter_mut()
            .zip(self.disabled.iter_mut())
            .enumerate()
        {
            if disabled.is_some() {
                continue;
            }
            let mut findings = 0u64;
            let start = CpuClock::now();
            content.evaluate_rule(rule, event, &mut |_| findings += 1);
            let took = start.elapsed();
            let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            stats.events += 1;
            stats.nanos = stats.nanos.saturating_add(nanos);
            stats.max_nanos = stats.max_nanos.max(nanos);
            stats.findings += findings;
            if took > hard {
                *disabled = Some(format!(
                    "one event took {} µs, over {} µs (budget {} µs per event × {SINGLE_EVENT_FACTOR})",
                    took.as_micros(),
                    hard.as_micros(),
                    budgets.cpu_per_event.as_micros()
                ));
            }
        }
    }

    /// Applies the mean CPU and memory budgets; returns the rules newly disabled, with why.
    pub fn enforce(
        &mut self,
        content: &dyn CompiledContent,
        budgets: &Budgets,
    ) -> Vec<(usize, String)> {
        let mut newly = Vec::new();
        let budget_ns = u64::try_from(budgets.cpu_per_event.as_nanos()).unwrap_or(u64::MAX);
        for (rule, disabled) in self.disabled.iter_mut().enumerate() {
            if disabled.is_some() {
                continue;
            }
            let stats = self.stats.get(rule).copied().unwrap_or_default();
            let memory = content.rule_memory(rule) as u64;
            let reason = if stats.mean_nanos() > budget_ns {
                Some(format!(
                    "mean {} µs per event over {} events, budget {} µs",
                    stats.mean_nanos() / 1000,
                    stats.events,
                    budget_ns / 1000
                ))
            } else if memory > budgets.memory_bytes {
                Some(format!(
                    "holds {memory} bytes of state, budget {} bytes",
                    budgets.memory_bytes
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                newly.push((rule, reason.clone()));
                *disabled = Some(reason);
            }
        }
        newly
    }

    /// Every rule disabled so far, with why.
    pub fn disabled_rules(&self) -> Vec<(usize, String)> {
        self.disabled
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.clone().map(|d| (i, d)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::compiled::RuleInfo;
    use ringfence_event::{EventKind, SourceKind, Timestamp};

    /// Rule 0 is cheap, rule 1 spins, rule 2 holds a lot of state.
    struct Mixed {
        rules: Vec<RuleInfo>,
    }

    impl CompiledContent for Mixed {
        fn rules(&self) -> &[RuleInfo] {
            &self.rules
        }
        fn evaluate_rule(&self, rule: usize, _e: &Event, emit: &mut dyn FnMut(serde_json::Value)) {
            match rule {
                0 => emit(serde_json::json!({"rule": 0})),
                1 => super::CpuClock::spin(Duration::from_millis(2)),
                _ => {}
            }
        }
        fn rule_memory(&self, rule: usize) -> usize {
            if rule == 2 { 1 << 30 } else { 0 }
        }
    }

    #[test]
    fn a_rule_over_budget_is_disabled_and_the_others_keep_running() {
        let content = Mixed {
            rules: (0..3)
                .map(|i| RuleInfo {
                    id: format!("r{i}"),
                    file: format!("rules/r{i}.yml"),
                })
                .collect(),
        };
        let budgets = Budgets {
            cpu_per_event: Duration::from_micros(500),
            memory_bytes: 1 << 20,
        };
        let event = Event::new(EventKind::ProcessExec, SourceKind::Replay, Timestamp::now());
        let mut p = Probation::new(3);
        for _ in 0..3 {
            p.run_event(&content, &event, &budgets);
        }
        let newly = p.enforce(&content, &budgets);
        let ids: Vec<usize> = newly.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, [1, 2], "{newly:?}");
        assert!(newly[0].1.contains("µs per event"), "{newly:?}");
        assert!(newly[1].1.contains("bytes of state"), "{newly:?}");
        assert_eq!(p.stats[0].findings, 3);
        // Disabled rules are not run again.
        p.run_event(&content, &event, &budgets);
        assert_eq!(p.stats[0].events, 4);
        assert_eq!(p.stats[1].events, 3);
        assert_eq!(p.disabled_rules().len(), 2);
    }
}
