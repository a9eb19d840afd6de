//! Health gates: judge one ring's agents on the new version against a control group on the
//! previous version over the same period.
//!
//! [`judge`] is a pure function of the gathered data, the thresholds and the time, so every
//! verdict can be unit-tested and is written to the audit log with the evidence it saw. The
//! order of the checks is the order of their severity:
//!
//! 1. a last-known-good fallback in the ring is a hard stop;
//! 2. missing data fails: ring agents that were offered the version long enough ago and have
//!    not reported on it, or stopped checking in, beyond the control group's own loss; and no
//!    activation at all by bake time after the first offer (a silent canary). "Long enough" is
//!    `heartbeat_intervals` check-ins, plus [`GateInput::install_grace_ms`] for an agent that
//!    keeps checking in on its old release while it fetches and starts a new one;
//! 3. per-agent metrics (CPU, RSS) compared with a one-sided Mann-Whitney U test, and rates
//!    (crashes/restarts and findings per agent-hour, findings in both directions; drops per
//!    event) pooled over each group and compared with an exposure-weighted Poisson test, each
//!    *and* an effect size, since a large fleet makes trivial differences significant;
//! 4. a pass needs the bake time since the ring's first activation and `min_samples` agents with
//!    data in both groups; short of that at `max_bake_factor` × bake, or with a borderline
//!    result, the verdict is inconclusive and the rollout pauses.
//!
//! Every agent may lie, so no single agent decides a rollback. A failure needs evidence from at
//! least [`HardStop::needed`] distinct agents ([`Gates::hard_stop_min_agents`], or
//! [`Gates::hard_stop_min_share`] of the live ring, whichever is larger, never more than the
//! live ring and never fewer than two): that many fallbacks or missing agents, and a metric
//! failure must still hold without the `needed - 1` agents that contribute most to it (and no
//! agent's exposure in a pooled rate weighs more than three times the median). Evidence
//! from fewer agents halts the ring ([`Verdict::Halt`]) and names them; an operator's resume
//! acknowledges it, so only evidence newer than the resume halts again. Controls that have
//! not checked in for `heartbeat_intervals` leave the control group (they still count as the
//! baseline of lost agents) and live ring members are the share's denominator.

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
    /// Stop delivering and wait for an operator: hard-stop evidence from too few agents to
    /// roll back on.
    Halt,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Wait => "wait",
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Halt => "halt",
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
    /// The same, since the evidence was last acknowledged (the ring's start, or an operator's
    /// resume): only these can halt the ring again.
    pub recent_checkins: i64,
    pub recent_crashes: i64,
    pub recent_drops: i64,
    pub recent_findings: i64,
}

impl Agg {
    fn hours(&self) -> f64 {
        (self.interval_ms.max(1) as f64) / 3_600_000.0
    }
}

/// One ring member or control agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberData {
    pub id: String,
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
    /// Of those, reported since the evidence was last acknowledged.
    pub recent_lkg: i64,
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
    /// How long a ring agent that keeps checking in may take to start running the offered
    /// version before it counts as missing, beyond `heartbeat_intervals`: an agent release's
    /// fetch and restart ([`Gates::release_install`]); 0 for content.
    pub install_grace_ms: Millis,
    pub to_version: i64,
    /// When an operator last resumed the rollout (acknowledging a halt's evidence), or the
    /// ring's start.
    pub acknowledged_at: Millis,
    /// The offered version in the reasons' words (`agent release 0.3.0 (#4)`); `v{to_version}`
    /// when empty.
    pub version_words: String,
    /// What the ring's fallbacks are, completing "N ring agents fell back …"; last-known-good
    /// content when empty.
    pub fallback_words: String,
}

impl GateInput {
    fn version(&self) -> String {
        if self.version_words.is_empty() {
            format!("v{}", self.to_version)
        } else {
            self.version_words.clone()
        }
    }

    fn fallback(&self) -> &str {
        if self.fallback_words.is_empty() {
            "to last-known-good content"
        } else {
            &self.fallback_words
        }
    }
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
    /// Controls silent for `heartbeat_intervals` (they are left out of the control group).
    pub control_lost: usize,
    pub control_share: f64,
}

/// The minimum-evidence rule, and the agents behind a halt or a hard stop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HardStop {
    /// Distinct agents a failure needs.
    pub needed: usize,
    /// Ring members that checked in within `heartbeat_intervals` (the share's denominator).
    pub live_members: usize,
    /// The agents named by the decision (a halt's, or a fallback failure's).
    pub agents: Vec<String>,
}

/// Everything a gate saw and decided: stored on the ring and in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub verdict: Verdict,
    pub reason: String,
    pub at: Millis,
    pub members: usize,
    /// Live controls (silent ones have left the group).
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
    #[serde(default)]
    pub hard_stop: HardStop,
}

/// A rate's count and the exposure it accrued over (agent-hours, or events seen).
struct Pooled {
    count: fn(&Agg) -> f64,
    recent: fn(&Agg) -> f64,
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

impl MetricDef {
    /// How much one agent pushes this metric (its count for a rate, its value otherwise).
    fn contribution(&self, a: &Agg) -> f64 {
        match &self.pooled {
            Some(p) => (p.count)(a),
            None => (self.get)(a),
        }
    }

    /// Has the agent pushed this metric since the evidence was last acknowledged?
    fn recent(&self, a: &Agg) -> bool {
        match &self.pooled {
            Some(p) => (p.recent)(a) > 0.0,
            None => a.recent_checkins > 0,
        }
    }

    /// A group's pooled count and exposure. An agent's exposure counts up to `cap` (its count
    /// scaled down with it, so its rate is kept): one agent claiming a huge exposure cannot
    /// dilute its group's rate and hide what the others report.
    fn totals(p: &Pooled, aggs: &[Agg], cap: f64) -> (f64, f64) {
        aggs.iter().fold((0.0, 0.0), |(n, e), a| {
            let (count, exposure) = ((p.count)(a), (p.exposure)(a));
            let scale = if exposure > cap { cap / exposure } else { 1.0 };
            (n + count * scale, e + exposure * scale)
        })
    }

    /// Most exposure one agent counts for: three times the median over both groups.
    fn exposure_cap(&self, ring: &[Agg], ctrl: &[Agg]) -> f64 {
        let Some(p) = &self.pooled else {
            return f64::INFINITY;
        };
        let mut all: Vec<f64> = ring.iter().chain(ctrl).map(p.exposure).collect();
        if all.is_empty() {
            return f64::INFINITY;
        }
        all.sort_by(f64::total_cmp);
        let median = all[all.len() / 2];
        if median > 0.0 {
            median * 3.0
        } else {
            f64::INFINITY
        }
    }

    /// The two groups' means (pooled rates for rates, exposures capped at `cap`).
    fn means(&self, ring: &[Agg], ctrl: &[Agg], cap: f64) -> (f64, f64) {
        match &self.pooled {
            Some(p) => {
                let rate = |aggs: &[Agg]| {
                    let (n, e) = Self::totals(p, aggs, cap);
                    n / e.max(1e-9)
                };
                (rate(ring), rate(ctrl))
            }
            None => {
                let v = |aggs: &[Agg]| aggs.iter().map(self.get).collect::<Vec<f64>>();
                (mean(&v(ring)), mean(&v(ctrl)))
            }
        }
    }

    /// One-sided p-value that the ring (or, with `ring_side` false, the control group) is
    /// greater.
    fn p_greater(&self, ring: &[Agg], ctrl: &[Agg], ring_side: bool, cap: f64) -> f64 {
        let (a, b) = if ring_side {
            (ring, ctrl)
        } else {
            (ctrl, ring)
        };
        match &self.pooled {
            Some(p) => {
                let ((an, ah), (bn, bh)) = (Self::totals(p, a, cap), Self::totals(p, b, cap));
                poisson_rate_greater(an, ah, bn, bh)
            }
            None => {
                let v = |aggs: &[Agg]| aggs.iter().map(self.get).collect::<Vec<f64>>();
                mann_whitney_greater(&v(a), &v(b)).map(|t| t.p_greater)
            }
        }
        .unwrap_or(1.0)
    }
}

const METRICS: &[MetricDef] = &[
    MetricDef {
        name: "crash/restart rate (per hour)",
        get: |a| a.crashes as f64 / a.hours(),
        pooled: Some(Pooled {
            count: |a| a.crashes as f64,
            recent: |a| a.recent_crashes as f64,
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
        get: |a| a.drops as f64 / (a.events.saturating_add(a.drops).max(1) as f64),
        pooled: Some(Pooled {
            count: |a| a.drops as f64,
            recent: |a| a.recent_drops as f64,
            exposure: |a| a.events as f64 + a.drops as f64,
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
            recent: |a| a.recent_findings as f64,
            exposure: Agg::hours,
        }),
        ratio: |g| g.finding_ratio,
        floor: 1.0,
        both_directions: true,
    },
];

/// Distinct agents a failure needs in a ring with `live` live members.
pub fn evidence_needed(gates: &Gates, live: usize) -> usize {
    let by_share = (gates.hard_stop_min_share * live as f64).ceil() as usize;
    gates.hard_stop_min_agents.max(by_share).min(live).max(2)
}

/// Short agent ids for reasons (the full ids are in [`HardStop::agents`]).
fn name_agents(ids: &[String]) -> String {
    let shown: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
    let more = ids.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Judge a ring at `now`.
pub fn judge(input: &GateInput, gates: &Gates, now: Millis) -> GateReport {
    let hb = (gates.heartbeat_intervals * input.checkin_interval_ms as f64) as Millis;
    let live = |m: &MemberData| now - m.last_seen <= hb;
    let ring: Vec<&MemberData> = input.members.iter().filter(|m| m.in_ring).collect();
    let all_ctrl: Vec<&MemberData> = input.members.iter().filter(|m| !m.in_ring).collect();
    // Silent controls leave the control group.
    let ctrl: Vec<&MemberData> = all_ctrl.iter().copied().filter(|m| live(m)).collect();
    let ring_new: Vec<(&str, Agg)> = ring
        .iter()
        .filter_map(|m| m.new.map(|a| (m.id.as_str(), a)))
        .collect();
    let ctrl_old: Vec<(&str, Agg)> = ctrl
        .iter()
        .filter_map(|m| m.old.map(|a| (m.id.as_str(), a)))
        .collect();
    let live_members = ring.iter().filter(|m| live(m)).count();
    let needed = evidence_needed(gates, live_members);
    let first_activation = ring_new.iter().map(|(_, a)| a.first_at).min();
    let baked_ms = first_activation.map_or(0, |t| (now - t).max(0));
    let fallen: Vec<String> = ring
        .iter()
        .filter(|m| m.lkg > 0)
        .map(|m| m.id.clone())
        .collect();
    let mut report = GateReport {
        verdict: Verdict::Wait,
        reason: String::new(),
        at: now,
        members: ring.len(),
        controls: ctrl.len(),
        ring_samples: ring_new.len(),
        control_samples: ctrl_old.len(),
        min_samples: gates.min_samples,
        lkg_agents: fallen.len(),
        missing: MissingEvidence::default(),
        metrics: Vec::new(),
        first_activation,
        baked_ms,
        bake_ms: input.bake_ms,
        hard_stop: HardStop {
            needed,
            live_members,
            agents: Vec::new(),
        },
    };
    let decide = |mut r: GateReport, v: Verdict, reason: String| {
        r.verdict = v;
        r.reason = reason;
        r
    };
    // Evidence from too few agents: (what, who).
    let mut halts: Vec<(String, Vec<String>)> = Vec::new();

    // 1. Fallbacks are a hard stop, from enough agents.
    if fallen.len() >= needed {
        let n = fallen.len();
        report.hard_stop.agents = fallen;
        return decide(
            report,
            Verdict::Fail,
            format!(
                "{n} ring agents fell back {} ({needed} needed for a hard stop)",
                input.fallback()
            ),
        );
    }
    let recent_fallen: Vec<String> = ring
        .iter()
        .filter(|m| m.recent_lkg > 0)
        .map(|m| m.id.clone())
        .collect();
    if !recent_fallen.is_empty() {
        halts.push((
            format!(
                "{} ring agent(s) fell back {}",
                recent_fallen.len(),
                input.fallback()
            ),
            recent_fallen,
        ));
    }

    // 2. Missing data.
    let offer_at = |m: &MemberData| match input.window {
        Some(w) if !input.emergency => w.next_open(input.ring_started_at, m.tz_offset),
        _ => input.ring_started_at,
    };
    // A member is due to report once offered `hb` ago; one still checking in on the old version
    // gets the install grace on top (an agent release is fetched, verified and restarted into).
    let grace = input.install_grace_ms.max(0);
    let expected: Vec<&&MemberData> = ring.iter().filter(|m| offer_at(m) + hb <= now).collect();
    let missing_agents: Vec<&&MemberData> = expected
        .iter()
        .copied()
        .filter(|m| {
            now - m.last_seen > hb
                || (m.new.is_none() && offer_at(m).saturating_add(hb).saturating_add(grace) <= now)
        })
        .collect();
    let missing = missing_agents.len();
    let control_lost = all_ctrl.len() - ctrl.len();
    let share = if expected.is_empty() {
        0.0
    } else {
        missing as f64 / expected.len() as f64
    };
    let control_share = if all_ctrl.is_empty() {
        0.0
    } else {
        control_lost as f64 / all_ctrl.len() as f64
    };
    report.missing = MissingEvidence {
        expected: expected.len(),
        missing,
        share,
        control_lost,
        control_share,
    };
    if missing > 0 && share - control_share > gates.max_missing_share {
        let what = format!(
            "missing data: {missing} of {} ring agents offered {} have not reported running it{} or stopped checking in within {} ({:.0}% vs {:.0}% of controls silent)",
            expected.len(),
            input.version(),
            if grace > 0 {
                format!(" within {}", format_duration(hb.saturating_add(grace)))
            } else {
                String::new()
            },
            format_duration(hb),
            share * 100.0,
            control_share * 100.0
        );
        if missing >= needed {
            return decide(report, Verdict::Fail, what);
        }
        // Agents already missing when an operator resumed are acknowledged.
        let recent: Vec<String> = missing_agents
            .iter()
            .filter(|m| m.last_seen >= input.acknowledged_at)
            .map(|m| m.id.clone())
            .collect();
        if !recent.is_empty() {
            halts.push((what, recent));
        }
    }
    if let (None, Some(offered)) = (first_activation, input.first_offered_at)
        && !ring.is_empty()
        && now - offered >= input.bake_ms.saturating_add(hb).saturating_add(grace)
    {
        let what = format!(
            "missing data: no ring agent has reported running {} {} after it was first offered (silent canary)",
            input.version(),
            format_duration(now - offered)
        );
        if ring.len() >= needed {
            return decide(report, Verdict::Fail, what);
        }
        halts.push((what, ring.iter().map(|m| m.id.clone()).collect()));
    }

    // 3. Metrics. A failure must hold without the `needed - 1` agents that push it most.
    let mut borderline = Vec::new();
    let mut failed = Vec::new();
    let enough = ring_new.len() >= gates.min_samples && ctrl_old.len() >= gates.min_samples;
    if enough {
        let ring_aggs: Vec<Agg> = ring_new.iter().map(|(_, a)| *a).collect();
        let ctrl_aggs: Vec<Agg> = ctrl_old.iter().map(|(_, a)| *a).collect();
        for m in METRICS {
            let cap = m.exposure_cap(&ring_aggs, &ctrl_aggs);
            let (rm, cm) = m.means(&ring_aggs, &ctrl_aggs, cap);
            let ratio = (m.ratio)(gates);
            let mut directions = vec![(rm > cm * ratio + m.floor, true, "higher")];
            if m.both_directions {
                directions.push((cm > rm * ratio + m.floor, false, "lower"));
            }
            let mut verdict = "ok".to_owned();
            let mut p_bad = 1.0f64;
            for (exceeded, ring_side, dir) in directions {
                let p = m.p_greater(&ring_aggs, &ctrl_aggs, ring_side, cap);
                p_bad = p_bad.min(p);
                if exceeded && p < gates.alpha {
                    let bad_side = if ring_side { &ring_new } else { &ctrl_old };
                    let mut order: Vec<usize> = (0..bad_side.len())
                        .filter(|&i| m.contribution(&bad_side[i].1) > 0.0)
                        .collect();
                    order.sort_by(|&x, &y| {
                        m.contribution(&bad_side[y].1)
                            .total_cmp(&m.contribution(&bad_side[x].1))
                    });
                    order.truncate(needed.saturating_sub(1));
                    // Take the largest contributors away one by one: the failure holds when it
                    // survives losing all of them; otherwise the ones it needed are named.
                    let holds_without = |gone: &[usize]| {
                        let rest: Vec<Agg> = (0..bad_side.len())
                            .filter(|i| !gone.contains(i))
                            .map(|i| bad_side[i].1)
                            .collect();
                        let (r2, c2) = if ring_side {
                            (rest.as_slice(), ctrl_aggs.as_slice())
                        } else {
                            (ring_aggs.as_slice(), rest.as_slice())
                        };
                        let (rm2, cm2) = m.means(r2, c2, cap);
                        m.p_greater(r2, c2, ring_side, cap) < gates.alpha
                            && if ring_side { rm2 > cm2 } else { cm2 > rm2 }
                    };
                    let carried_by = (1..=order.len()).find(|&j| !holds_without(&order[..j]));
                    let holds = carried_by.is_none();
                    order.truncate(carried_by.unwrap_or(0));
                    if holds {
                        verdict = format!("fail ({dir})");
                        failed.push(format!(
                            "{} {dir} in the ring: {rm:.4} vs {cm:.4} in controls (p = {p:.2e})",
                            m.name
                        ));
                    } else {
                        let named: Vec<String> = order
                            .iter()
                            .filter(|&&i| m.recent(&bad_side[i].1))
                            .map(|&i| bad_side[i].0.to_owned())
                            .collect();
                        if named.is_empty() {
                            verdict = format!("acknowledged ({dir})");
                        } else {
                            verdict = format!("halt ({dir})");
                            halts.push((
                                format!(
                                    "{} {dir} in the ring ({rm:.4} vs {cm:.4}), but only with the {} agent(s) pushing it most",
                                    m.name,
                                    order.len()
                                ),
                                named,
                            ));
                        }
                    }
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
                test: if m.pooled.is_some() {
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
    if !halts.is_empty() {
        let mut agents: Vec<String> = halts.iter().flat_map(|(_, a)| a.clone()).collect();
        agents.sort();
        agents.dedup();
        let what: Vec<String> = halts
            .iter()
            .map(|(what, who)| format!("{what} [{}]", name_agents(who)))
            .collect();
        let reason = format!(
            "halted for an operator: {}; a rollback needs evidence from {needed} distinct agents (resume to go on, rollback to go back)",
            what.join("; ")
        );
        report.hard_stop.agents = agents;
        return decide(report, Verdict::Halt, reason);
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
            recent_checkins: 3,
            recent_crashes: 0,
            recent_drops: drops,
            recent_findings: 1,
        }
    }

    fn input(n_ring: usize, n_ctrl: usize, ring_cpu: f64, now: Millis) -> GateInput {
        let mut members = Vec::new();
        for i in 0..n_ring {
            members.push(MemberData {
                id: format!("ring-{i}"),
                in_ring: true,
                last_seen: now - MIN,
                new: Some(agg(ring_cpu + (i % 5) as f64 * 0.1, 10, 10 * MIN)),
                ..MemberData::default()
            });
        }
        for i in 0..n_ctrl {
            members.push(MemberData {
                id: format!("control-{i}"),
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
            acknowledged_at: 0,
            ..GateInput::default()
        }
    }

    #[test]
    fn reasons_name_the_offered_version_and_its_fallback() {
        let g = Gates::default();
        let mut i = input(20, 40, 2.0, 12 * MIN);
        for k in [3, 4, 5] {
            i.members[k].lkg = 1;
        }
        let content = judge(&i, &g, 12 * MIN);
        assert!(
            content
                .reason
                .contains("fell back to last-known-good content"),
            "{}",
            content.reason
        );
        i.version_words = "agent release 0.4.0 (#3)".into();
        i.fallback_words = "from agent release 0.4.0 (#3) to the previous release".into();
        let agent = judge(&i, &g, 12 * MIN);
        assert_eq!(agent.verdict, Verdict::Fail);
        assert!(
            agent.reason.contains(
                "3 ring agents fell back from agent release 0.4.0 (#3) to the previous release"
            ),
            "{}",
            agent.reason
        );
        assert!(
            !agent.reason.contains("last-known-good"),
            "{}",
            agent.reason
        );
        // Silent: nobody reports running it.
        let mut silent = input(20, 40, 2.0, 60 * MIN);
        for m in silent.members.iter_mut().filter(|m| m.in_ring) {
            m.new = None;
        }
        silent.version_words = "agent release 0.4.0 (#3)".into();
        let r = judge(&silent, &g, 60 * MIN);
        assert!(
            r.reason.contains(
                "ring agents offered agent release 0.4.0 (#3) have not reported running it"
            ),
            "{}",
            r.reason
        );
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
    fn fallbacks_need_several_agents_to_fail() {
        let g = Gates::default();
        let mut i = input(20, 40, 2.0, 12 * MIN);
        i.members[3].lkg = 1;
        i.members[3].recent_lkg = 1;
        let r = judge(&i, &g, 12 * MIN);
        assert_eq!(r.verdict, Verdict::Halt, "{r:?}");
        assert_eq!(r.lkg_agents, 1);
        assert_eq!(r.hard_stop.needed, 3);
        assert_eq!(r.hard_stop.agents, vec!["ring-3".to_owned()]);
        assert!(r.reason.contains("ring-3"), "{}", r.reason);
        // Acknowledged by an operator's resume: no longer a reason to halt.
        i.members[3].recent_lkg = 0;
        assert_eq!(judge(&i, &g, 12 * MIN).verdict, Verdict::Wait);
        for k in [4, 5] {
            i.members[k].lkg = 1;
        }
        let r = judge(&i, &g, 12 * MIN);
        assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
        assert_eq!(r.hard_stop.agents.len(), 3);
    }

    #[test]
    fn one_silent_agent_halts_a_small_ring_and_is_named() {
        let g = Gates {
            min_samples: 5,
            ..Gates::default()
        };
        let now = 30 * MIN;
        let mut i = input(6, 20, 2.0, now);
        i.members[2].new = None;
        i.members[2].last_seen = 2 * MIN;
        let r = judge(&i, &g, now);
        assert_eq!(r.verdict, Verdict::Halt, "{r:?}");
        assert_eq!(r.hard_stop.agents, vec!["ring-2".to_owned()]);
        assert!(r.reason.contains("missing data"), "{}", r.reason);
        // Silent since before an operator's resume: acknowledged.
        i.acknowledged_at = 10 * MIN;
        assert_ne!(judge(&i, &g, now).verdict, Verdict::Halt);
        // Three silent agents are enough to fail.
        for k in [3, 4] {
            i.members[k].new = None;
            i.members[k].last_seen = 2 * MIN;
        }
        assert_eq!(judge(&i, &g, now).verdict, Verdict::Fail);
    }

    #[test]
    fn evidence_needed_scales_with_the_live_ring_but_never_to_one() {
        let g = Gates::default();
        assert_eq!(evidence_needed(&g, 0), 2);
        assert_eq!(evidence_needed(&g, 1), 2);
        assert_eq!(evidence_needed(&g, 2), 2);
        assert_eq!(evidence_needed(&g, 6), 3);
        assert_eq!(evidence_needed(&g, 100), 5);
        assert_eq!(evidence_needed(&g, 1000), 50);
    }

    #[test]
    fn one_agent_cannot_fail_a_metric_alone() {
        let g = Gates::default();
        let now = 20 * MIN;
        let mut i = input(20, 40, 2.0, now);
        // One ring agent claims thousands of crashes: the crash rate is beyond any threshold,
        // but not without that agent.
        if let Some(a) = i.members[0].new.as_mut() {
            a.crashes = 5000;
            a.recent_crashes = 5000;
        }
        let r = judge(&i, &g, now);
        assert_eq!(r.verdict, Verdict::Halt, "{r:?}");
        assert_eq!(r.hard_stop.agents, vec!["ring-0".to_owned()]);
        // A control agent claiming thousands of findings makes the ring look quiet.
        let mut i = input(20, 40, 2.0, now);
        if let Some(a) = i.members[25].old.as_mut() {
            a.findings = 100_000;
            a.recent_findings = 100_000;
        }
        let r = judge(&i, &g, now);
        assert_eq!(r.verdict, Verdict::Halt, "{r:?}");
        assert_eq!(r.hard_stop.agents, vec!["control-5".to_owned()]);
        // Crashes spread over many ring agents still fail.
        let mut i = input(20, 40, 2.0, now);
        for m in i.members.iter_mut().filter(|m| m.in_ring).take(8) {
            if let Some(a) = m.new.as_mut() {
                a.crashes = 6;
            }
        }
        let r = judge(&i, &g, now);
        assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
        assert!(r.reason.contains("crash"), "{}", r.reason);
    }

    #[test]
    fn one_agent_cannot_dilute_a_regression_away() {
        // A drop rise like the test above's, plus one ring agent claiming a trillion events
        // without a drop: its exposure counts for three times the median at most.
        let mut i = input(15, 40, 2.0, 20 * MIN);
        for (n, m) in i.members.iter_mut().enumerate() {
            let drops = match (m.in_ring, n % 10) {
                (true, 0..=2) => 100,
                (false, 0) => 1,
                _ => 0,
            };
            if let Some(a) = m.new.as_mut().or(m.old.as_mut()) {
                a.drops = drops;
            }
        }
        if let Some(a) = i.members[5].new.as_mut() {
            a.events = 1_000_000_000_000;
            a.drops = 0;
        }
        let r = judge(&i, &Gates::default(), 20 * MIN);
        assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
        assert!(r.reason.contains("drop rate"), "{}", r.reason);
    }

    #[test]
    fn silent_controls_leave_the_control_group() {
        let g = Gates::default();
        let now = 41 * MIN;
        let mut i = input(20, 40, 2.0, now);
        for m in i.members.iter_mut().filter(|m| !m.in_ring).take(25) {
            m.last_seen = now - 16 * MIN;
        }
        let r = judge(&i, &g, now);
        assert_eq!(r.controls, 15);
        assert_eq!(r.control_samples, 15);
        assert_eq!(r.missing.control_lost, 25);
        assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
        // With every control silent there is no control group: no pass.
        for m in i.members.iter_mut().filter(|m| !m.in_ring) {
            m.last_seen = now - 16 * MIN;
        }
        let r = judge(&i, &g, now);
        assert_eq!(r.controls, 0);
        assert_ne!(r.verdict, Verdict::Pass, "{r:?}");
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

    /// An agent release takes a while to fetch and restart into: ring agents that keep checking
    /// in on the old release are not missing until the install grace runs out; one that stops
    /// checking in is missing at once.
    #[test]
    fn agents_fetching_a_release_get_the_install_grace_and_silent_ones_do_not() {
        let g = Gates::default();
        let fetching = |now: Millis, grace: Millis| {
            let mut i = input(20, 40, 2.0, now);
            i.install_grace_ms = grace;
            for m in i.members.iter_mut().filter(|m| m.in_ring) {
                m.new = None;
                m.last_seen = now - MIN;
            }
            i
        };
        // 25 minutes after the offer (ring start 0): past `heartbeat_intervals` (15m), inside a
        // 15-minute install grace.
        let now = 25 * MIN;
        let r = judge(&fetching(now, 0), &g, now);
        assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
        let r = judge(&fetching(now, 15 * MIN), &g, now);
        assert_eq!(r.missing.missing, 0, "{r:?}");
        assert_ne!(r.verdict, Verdict::Fail, "{r:?}");
        // Past the grace they are missing, and the reason says how long they had.
        let now = 31 * MIN;
        let r = judge(&fetching(now, 15 * MIN), &g, now);
        assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
        assert!(
            r.reason
                .contains("have not reported running it within 30m00s"),
            "{}",
            r.reason
        );
        // Silent agents get no grace.
        let now = 25 * MIN;
        let mut silent = fetching(now, 15 * MIN);
        for m in silent.members.iter_mut().filter(|m| m.in_ring) {
            m.last_seen = 2 * MIN;
        }
        let r = judge(&silent, &g, now);
        assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
        assert_eq!(r.missing.missing, 20, "{r:?}");
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
