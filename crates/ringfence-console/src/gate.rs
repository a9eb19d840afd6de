//! Health gates: judge one ring's agents on the new version against a control group on the
//! previous version over the same period.
//!
//! [`judge`] is a pure function of the gathered data, the thresholds and the time, so every
//! verdict can be unit-tested and is written to the audit log with the evidence it saw. The
//! order of the checks is the order of their severity:
//!
//! 1. any last-known-good fallback in the ring is a hard stop;
//! 2. missing data fails: ring agents that were offered the version long enough ago and have
//!    not reported on it, or stopped checking in, beyond the control group's own loss; and no
//!    activation at all by bake time after the first offer (a silent canary);
//! 3. per-agent metrics (CPU, RSS) compared with a one-sided Mann-Whitney U test, and rates
//!    (crashes/restarts and findings per agent-hour, findings in both directions; drops per
//!    event) pooled over each group and compared with an exposure-weighted Poisson test, each
//!    *and* an effect size, since a large fleet makes trivial differences significant;
//! 4. a pass needs the bake time since the ring's first activation and `min_samples` agents with
//!    data in both groups; short of that at `max_bake_factor` × bake, or with a borderline
//!    result, the verdict is inconclusive and the rollout pauses.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::plan::{Gates, Window, format_duration};
use crate::stats::{mann_whitney_greater, mean, poisson_rate_greater};

/// A gate verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Keep baking; nothing decided yet.
    Wait,
    /// Promote to the next ring.
    Pass,
    /// Halt and roll back.
    Fail,
    /// Pause for an operator.
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Wait => "wait",
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// One agent's aggregated check-ins over the ring's period on one side (new or old version).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Agg {
    pub checkins: i64,
    pub crashes: i64,
    pub cpu: f64,
    pub rss: f64,
    pub events: i64,
    pub drops: i64,
    pub findings: i64,
    pub interval_ms: i64,
    pub first_at: Millis,
}

impl Agg {
    fn hours(&self) -> f64 {
        (self.interval_ms.max(1) as f64) / 3_600_000.0
    }
}

/// One ring member or control agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberData {
    /// In the ring (offered the new version), or a control.
    pub in_ring: bool,
    pub last_seen: Millis,
    pub tz_offset: i64,
    /// Check-ins on the new version (ring) since the ring started.
    pub new: Option<Agg>,
    /// Check-ins on any other version since the ring started.
    pub old: Option<Agg>,
    /// Last-known-good fallbacks reported since the ring started.
    pub lkg: i64,
}

/// What a gate looks at.
#[derive(Debug, Clone, Default)]
pub struct GateInput {
    pub members: Vec<MemberData>,
    pub ring_started_at: Millis,
    pub first_offered_at: Option<Millis>,
    pub window: Option<Window>,
    pub emergency: bool,
    pub bake_ms: Millis,
    pub checkin_interval_ms: Millis,
    pub to_version: i64,
}

/// Evidence for one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricEvidence {
    pub name: String,
    pub ring_mean: f64,
    pub control_mean: f64,
    /// Fail when ring mean > control mean × ratio + floor (and the test is significant).
    pub ratio: f64,
    pub floor: f64,
    /// One-sided p-value in the bad direction, from [`MetricEvidence::test`].
    pub p: f64,
    /// `Mann-Whitney U` for per-agent metrics, `Poisson rate` for pooled rates.
    #[serde(default)]
    pub test: String,
    pub verdict: String,
}

/// Evidence for the missing-data check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MissingEvidence {
    /// Ring agents offered the version at least `heartbeat_intervals` check-ins ago.
    pub expected: usize,
    /// Of those, how many have not reported on it or stopped checking in.
    pub missing: usize,
    pub share: f64,
    pub control_lost: usize,
    pub control_share: f64,
}

/// Everything a gate saw and decided: stored on the ring and in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub verdict: Verdict,
    pub reason: String,
    pub at: Millis,
    pub members: usize,
    pub controls: usize,
    pub ring_samples: usize,
    pub control_samples: usize,
    pub min_samples: usize,
    pub lkg_agents: usize,
    pub missing: MissingEvidence,
    pub metrics: Vec<MetricEvidence>,
    pub first_activation: Option<Millis>,
    pub baked_ms: Millis,
    pub bake_ms: Millis,
}

/// A rate's count and the exposure it accrued over (agent-hours, or events seen).
struct Pooled {
    count: fn(&Agg) -> f64,
    exposure: fn(&Agg) -> f64,
}

struct MetricDef {
    name: &'static str,
    get: fn(&Agg) -> f64,
    /// For rates: the count behind them and the exposure it accrued over. The groups' pooled
    /// rates (all counts over all exposure) are compared with an exposure-weighted Poisson test
    /// instead of ranking per-agent rates, which are noise for agents seen only briefly.
    pooled: Option<Pooled>,
    ratio: fn(&Gates) -> f64,
    floor: f64,
    both_directions: bool,
}

const METRICS: &[MetricDef] = &[
    MetricDef {
        name: "crash/restart rate (per hour)",
        get: |a| a.crashes as f64 / a.hours(),
        pooled: Some(Pooled {
            count: |a| a.crashes as f64,
            exposure: Agg::hours,
        }),
        ratio: |g| g.crash_ratio,
        floor: 0.5,
        both_directions: false,
    },
    MetricDef {
        name: "cpu %",
        get: |a| a.cpu,
        pooled: None,
        ratio: |g| g.cpu_ratio,
        floor: 1.0,
        both_directions: false,
    },
    MetricDef {
        name: "rss bytes",
        get: |a| a.rss,
        pooled: None,
        ratio: |g| g.rss_ratio,
        floor: 16.0 * 1024.0 * 1024.0,
        both_directions: false,
    },
    MetricDef {
        name: "drop rate",
        get: |a| a.drops as f64 / ((a.events + a.drops).max(1) as f64),
        pooled: Some(Pooled {
            count: |a| a.drops as f64,
            exposure: |a| (a.events + a.drops) as f64,
        }),
        ratio: |g| g.drop_ratio,
        floor: 0.002,
        both_directions: false,
    },
    MetricDef {
        name: "finding rate (per hour)",
        get: |a| a.findings as f64 / a.hours(),
        pooled: Some(Pooled {
            count: |a| a.findings as f64,
            exposure: Agg::hours,
        }),
        ratio: |g| g.finding_ratio,
        floor: 1.0,
        both_directions: true,
    },
];

/// Judge a ring at `now`.
pub fn judge(input: &GateInput, gates: &Gates, now: Millis) -> GateReport {
    let hb = (gates.heartbeat_intervals * input.checkin_interval_ms as f64) as Millis;
    let ring: Vec<&MemberData> = input.members.iter().filter(|m| m.in_ring).collect();
    let ctrl: Vec<&MemberData> = input.members.iter().filter(|m| !m.in_ring).collect();
    let ring_new: Vec<Agg> = ring.iter().filter_map(|m| m.new).collect();
    let ctrl_old: Vec<Agg> = ctrl.iter().filter_map(|m| m.old).collect();
    let first_activation = ring_new.iter().map(|a| a.first_at).min();
    let baked_ms = first_activation.map_or(0, |t| (now - t).max(0));
    let mut report = GateReport {
        verdict: Verdict::Wait,
        reason: String::new(),
        at: now,
        members: ring.len(),
        controls: ctrl.len(),
        ring_samples: ring_new.len(),
        control_samples: ctrl_old.len(),
        min_samples: gates.min_samples,
        lkg_agents: ring.iter().filter(|m| m.lkg > 0).count(),
        missing: MissingEvidence::default(),
        metrics: Vec::new(),
        first_activation,
        baked_ms,
        bake_ms: input.bake_ms,
    };
    let decide = |mut r: GateReport, v: Verdict, reason: String| {
        r.verdict = v;
        r.reason = reason;
        r
    };

    // 1. Any fallback is a hard stop.
    if report.lkg_agents > 0 {
        let n = report.lkg_agents;
        return decide(
            report,
            Verdict::Fail,
            format!(
                "{n} ring agent(s) fell back to last-known-good content: any fallback is a hard stop"
            ),
        );
    }

    // 2. Missing data.
    let offer_at = |m: &MemberData| match input.window {
        Some(w) if !input.emergency => w.next_open(input.ring_started_at, m.tz_offset),
        _ => input.ring_started_at,
    };
    let expected: Vec<&&MemberData> = ring.iter().filter(|m| offer_at(m) + hb <= now).collect();
    let missing = expected
        .iter()
        .filter(|m| m.new.is_none() || now - m.last_seen > hb)
        .count();
    let control_lost = ctrl.iter().filter(|m| now - m.last_seen > hb).count();
    let share = if expected.is_empty() {
        0.0
    } else {
        missing as f64 / expected.len() as f64
    };
    let control_share = if ctrl.is_empty() {
        0.0
    } else {
        control_lost as f64 / ctrl.len() as f64
    };
    report.missing = MissingEvidence {
        expected: expected.len(),
        missing,
        share,
        control_lost,
        control_share,
    };
    if missing > 0 && share - control_share > gates.max_missing_share {
        return decide(
            report,
            Verdict::Fail,
            format!(
                "missing data: {missing} of {} ring agents offered v{} have not reported on it or stopped checking in within {} ({:.0}% vs {:.0}% of controls silent)",
                expected.len(),
                input.to_version,
                format_duration(hb),
                share * 100.0,
                control_share * 100.0
            ),
        );
    }
    if let (None, Some(offered)) = (first_activation, input.first_offered_at)
        && !ring.is_empty()
        && now - offered >= input.bake_ms + hb
    {
        return decide(
            report,
            Verdict::Fail,
            format!(
                "missing data: no ring agent has reported v{} {} after it was first offered (silent canary)",
                input.to_version,
                format_duration(now - offered)
            ),
        );
    }

    // 3. Metrics.
    let mut borderline = Vec::new();
    let mut failed = Vec::new();
    let enough = ring_new.len() >= gates.min_samples && ctrl_old.len() >= gates.min_samples;
    if enough {
        for m in METRICS {
            let r: Vec<f64> = ring_new.iter().map(m.get).collect();
            let c: Vec<f64> = ctrl_old.iter().map(m.get).collect();
            let pooled = m.pooled.as_ref().map(|p| {
                let total = |aggs: &[Agg]| {
                    (
                        aggs.iter().map(p.count).sum::<f64>(),
                        aggs.iter().map(p.exposure).sum::<f64>(),
                    )
                };
                (total(&ring_new), total(&ctrl_old))
            });
            let (rm, cm) = match pooled {
                Some(((rn, rh), (cn, ch))) => (rn / rh.max(1e-9), cn / ch.max(1e-9)),
                None => (mean(&r), mean(&c)),
            };
            let ratio = (m.ratio)(gates);
            let p_greater = |ring_side: bool| -> f64 {
                match pooled {
                    Some(((rn, rh), (cn, ch))) if ring_side => poisson_rate_greater(rn, rh, cn, ch),
                    Some(((rn, rh), (cn, ch))) => poisson_rate_greater(cn, ch, rn, rh),
                    None if ring_side => mann_whitney_greater(&r, &c).map(|t| t.p_greater),
                    None => mann_whitney_greater(&c, &r).map(|t| t.p_greater),
                }
                .unwrap_or(1.0)
            };
            let mut directions = vec![(rm > cm * ratio + m.floor, true, "higher")];
            if m.both_directions {
                directions.push((cm > rm * ratio + m.floor, false, "lower"));
            }
            let mut verdict = "ok".to_owned();
            let mut p_bad = 1.0f64;
            for (exceeded, ring_side, dir) in directions {
                let p = p_greater(ring_side);
                p_bad = p_bad.min(p);
                if exceeded && p < gates.alpha {
                    verdict = format!("fail ({dir})");
                    failed.push(format!(
                        "{} {dir} in the ring: {rm:.4} vs {cm:.4} in controls (p = {p:.2e})",
                        m.name
                    ));
                } else if exceeded && p < gates.alpha_inconclusive {
                    verdict = format!("borderline ({dir})");
                    borderline.push(format!("{} {dir} (p = {p:.3})", m.name));
                }
            }
            report.metrics.push(MetricEvidence {
                name: m.name.into(),
                ring_mean: rm,
                control_mean: cm,
                ratio,
                floor: m.floor,
                p: p_bad,
                test: if pooled.is_some() {
                    "Poisson rate"
                } else {
                    "Mann-Whitney U"
                }
                .to_owned(),
                verdict,
            });
        }
    }
    if !failed.is_empty() {
        let reason = failed.join("; ");
        return decide(report, Verdict::Fail, reason);
    }

    // 4. Bake time and sample counts.
    if ring.is_empty() {
        return decide(
            report,
            Verdict::Pass,
            "ring is empty: nothing to gate".into(),
        );
    }
    if first_activation.is_none() {
        return decide(
            report,
            Verdict::Wait,
            "waiting for the first activation".into(),
        );
    }
    if baked_ms < input.bake_ms {
        let reason = format!(
            "baking: {} of {}",
            format_duration(baked_ms),
            format_duration(input.bake_ms)
        );
        return decide(report, Verdict::Wait, reason);
    }
    if enough && borderline.is_empty() {
        let reason = format!(
            "healthy: {} ring and {} control agents, no metric beyond its threshold after {}",
            ring_new.len(),
            ctrl_old.len(),
            format_duration(baked_ms)
        );
        return decide(report, Verdict::Pass, reason);
    }
    let why = if !enough {
        format!(
            "too few samples: {} ring and {} control agents with data, {} needed in each",
            ring_new.len(),
            ctrl_old.len(),
            gates.min_samples
        )
    } else {
        format!("borderline: {}", borderline.join("; "))
    };
    if baked_ms as f64 >= input.bake_ms as f64 * gates.max_bake_factor {
        decide(
            report,
            Verdict::Inconclusive,
            format!("inconclusive after {}: {why}", format_duration(baked_ms)),
        )
    } else {
        decide(report, Verdict::Wait, format!("extending bake: {why}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    fn agg(cpu: f64, drops: i64, first_at: Millis) -> Agg {
        Agg {
            checkins: 3,
            crashes: 0,
            cpu,
            rss: 50e6,
            events: 10_000,
            drops,
            findings: 1,
            interval_ms: 15 * MIN,
            first_at,
        }
    }

    fn input(n_ring: usize, n_ctrl: usize, ring_cpu: f64, now: Millis) -> GateInput {
        let mut members = Vec::new();
        for i in 0..n_ring {
            members.push(MemberData {
                in_ring: true,
                last_seen: now - MIN,
                new: Some(agg(ring_cpu + (i % 5) as f64 * 0.1, 10, 10 * MIN)),
                ..MemberData::default()
            });
        }
        for i in 0..n_ctrl {
            members.push(MemberData {
                in_ring: false,
                last_seen: now - MIN,
                old: Some(agg(2.0 + (i % 7) as f64 * 0.1, 10, 0)),
                ..MemberData::default()
            });
        }
        GateInput {
            members,
            ring_started_at: 0,
            first_offered_at: Some(5 * MIN),
            window: None,
            emergency: false,
            bake_ms: 30 * MIN,
            checkin_interval_ms: 5 * MIN,
            to_version: 2,
        }
    }

    #[test]
    fn healthy_ring_passes_only_after_bake() {
        let g = Gates::default();
        let early = judge(&input(20, 40, 2.0, 20 * MIN), &g, 20 * MIN);
        assert_eq!(early.verdict, Verdict::Wait, "{early:?}");
        let late = judge(&input(20, 40, 2.0, 41 * MIN), &g, 41 * MIN);
        assert_eq!(late.verdict, Verdict::Pass, "{late:?}");
    }

    #[test]
    fn cpu_regression_fails_before_bake_ends() {
        let r = judge(&input(20, 40, 10.0, 20 * MIN), &Gates::default(), 20 * MIN);
        assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
        assert!(r.reason.contains("cpu"), "{}", r.reason);
    }

    #[test]
    fn any_fallback_is_a_hard_stop() {
        let mut i = input(20, 40, 2.0, 12 * MIN);
        i.members[3].lkg = 1;
        let r = judge(&i, &Gates::default(), 12 * MIN);
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.lkg_agents, 1);
    }

    #[test]
    fn silent_ring_fails_for_missing_data() {
        let now = 30 * MIN;
        let mut i = input(20, 40, 2.0, now);
        for m in i.members.iter_mut().filter(|m| m.in_ring) {
            m.new = None;
            m.last_seen = 2 * MIN;
        }
        let r = judge(&i, &Gates::default(), now);
        assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
        assert!(r.reason.contains("missing data"), "{}", r.reason);
    }

    #[test]
    fn no_activation_at_all_fails_by_the_deadline() {
        let mut i = input(20, 40, 2.0, 0);
        // The offer went out but the window keeps most members from being "expected".
        i.window = Some(Window {
            start_min: 23 * 60,
            end_min: 23 * 60 + 30,
        });
        for m in i.members.iter_mut().filter(|m| m.in_ring) {
            m.new = None;
        }
        let before = judge(&i, &Gates::default(), 20 * MIN);
        assert_eq!(before.verdict, Verdict::Wait, "{before:?}");
        let after = judge(&i, &Gates::default(), 60 * MIN);
        assert_eq!(after.verdict, Verdict::Fail, "{after:?}");
    }

    #[test]
    fn too_few_samples_is_inconclusive_after_extended_bake() {
        let g = Gates::default();
        let r = judge(&input(5, 40, 2.0, 50 * MIN), &g, 50 * MIN);
        assert_eq!(r.verdict, Verdict::Wait, "{r:?}");
        let r = judge(&input(5, 40, 2.0, 75 * MIN), &g, 75 * MIN);
        assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
    }

    #[test]
    fn drop_rise_is_caught_when_most_ring_agents_report_none() {
        // Drops are rare: a third of the ring reports a few, the rest none. Ranking per-agent
        // rates sees mostly ties; the pooled rate (360 in 150k events vs 4 in 400k) does not.
        let mut i = input(15, 40, 2.0, 20 * MIN);
        for (n, m) in i.members.iter_mut().enumerate() {
            let drops = match (m.in_ring, n % 10) {
                (true, 0..=2) => 60,
                (false, 0) => 1,
                _ => 0,
            };
            if let Some(a) = m.new.as_mut().or(m.old.as_mut()) {
                a.drops = drops;
            }
        }
        let r = judge(&i, &Gates::default(), 20 * MIN);
        assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
        assert!(r.reason.contains("drop rate"), "{}", r.reason);
    }

    #[test]
    fn dropped_findings_are_an_anomaly_too() {
        let mut i = input(20, 40, 2.0, 20 * MIN);
        for m in i.members.iter_mut().filter(|m| !m.in_ring) {
            if let Some(o) = m.old.as_mut() {
                o.findings = 40;
            }
        }
        let r = judge(&i, &Gates::default(), 20 * MIN);
        assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
        assert!(r.reason.contains("lower in the ring"), "{}", r.reason);
    }
}
