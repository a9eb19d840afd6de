//! The rollout engine: start a rollout from a plan, materialize each ring's members and control
//! group when the ring starts, judge the ring's gate on every tick, and promote, pause, halt
//! (evidence from too few agents: an operator decides), or halt and roll back, writing each
//! decision to the audit log with its evidence.
//!
//! Every state change is one transaction guarded by the rollout's `revision` (optimistic
//! concurrency), so several consoles can tick the same rollout and exactly one of them acts.
//! A rollback publishes a new, higher content version carrying the previous version's content
//! and pins the ring members to it, because agents refuse to go back to an older version.
//! Operators can halt, resume, roll back and promote by hand; promotions that would skip a
//! gate (before bake time or minimum samples, skipping a ring, outside the window without the
//! emergency flag) are refused and the refusal is audited.
//!
//! The engine lives in these files: [`start`] (a new rollout and its first ring), [`tick`]
//! (gathering a ring's evidence, judging it, promoting), [`actions`] (rollback and the manual
//! actions) and [`api`] (the HTTP handlers).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::error::{AppError, AppResult};
use crate::gate::GateReport;
use crate::plan::{AgentAttrs, Plan, Selector};
use crate::{AppState, on_db};

/// A rollout row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RolloutRow {
    pub id: i64,
    /// What it delivers: `content` or `agent` ([`Kind`]).
    pub kind: String,
    pub from_version: i64,
    pub to_version: i64,
    pub rollback_version: Option<i64>,
    pub plan: String,
    pub state: String,
    pub current_ring: i64,
    pub emergency: i64,
    pub reason: String,
    pub created_by: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub revision: i64,
}

/// A ring row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RingRow {
    pub rollout_id: i64,
    pub idx: i64,
    pub name: String,
    pub state: String,
    pub started_at: Option<Millis>,
    pub first_offered_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub members: i64,
    pub controls: i64,
    pub gate: String,
}

const ROLLOUT_COLS: &str = "id, kind, from_version, to_version, rollback_version, plan, state, current_ring, emergency, reason, created_by, created_at, updated_at, revision";
const RING_COLS: &str = "rollout_id, idx, name, state, started_at, first_offered_at, finished_at, members, controls, gate";

impl RolloutRow {
    /// What the rollout delivers (a row of an unknown kind counts as content, the only kind
    /// older consoles wrote).
    pub fn kind(&self) -> Kind {
        Kind::parse(&self.kind).unwrap_or(Kind::Content)
    }
}

/// An agent a ring could take.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub rank: i64,
    pub region: Option<String>,
    pub industry: Option<String>,
    pub environment: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// Pick a ring's members and its control group.
///
/// `live` is every live agent sorted by stable hash rank; `taken` are agents already in earlier
/// rings of this rollout. Members are the next agents in rank order among those matching the
/// selector, enough to bring the matching fleet to `percent`. Controls come from the rest of the
/// remaining fleet (highest ranks first: the agents least likely to be taken next), at least
/// `2 × min_samples` and as many as the ring, at most 2000. When fewer than `min_samples`
/// agents remain (the last ring), a holdback of the ring's own agents is the control group and
/// receives the version only once the gate has passed. `held` agents (a plan's `[[pin]]`
/// groups) are never members and do not count towards `percent`; they may be controls.
pub fn select_ring(
    sel: &Selector,
    live: &[Candidate],
    taken: &HashSet<String>,
    held: &HashSet<String>,
    min_samples: usize,
) -> (Vec<String>, Vec<String>) {
    let matching: Vec<&Candidate> = live
        .iter()
        .filter(|c| {
            !held.contains(&c.id)
                && sel.matches(&AgentAttrs {
                    id: &c.id,
                    region: c.region.as_deref(),
                    industry: c.industry.as_deref(),
                    environment: c.environment.as_deref(),
                    tags: &c.tags,
                })
        })
        .collect();
    let target = (sel.percent * matching.len() as f64 / 100.0).ceil() as usize;
    let already = matching.iter().filter(|c| taken.contains(&c.id)).count();
    let want = target.saturating_sub(already);
    let mut members: Vec<String> = matching
        .iter()
        .filter(|c| !taken.contains(&c.id))
        .take(want)
        .map(|c| c.id.clone())
        .collect();
    let chosen: HashSet<&str> = members.iter().map(String::as_str).collect();
    let remaining: Vec<&Candidate> = live
        .iter()
        .rev()
        .filter(|c| !taken.contains(&c.id) && !chosen.contains(c.id.as_str()))
        .collect();
    let mut controls: Vec<String>;
    if remaining.len() >= min_samples {
        let n = members.len().max(2 * min_samples).min(2000);
        controls = remaining.iter().take(n).map(|c| c.id.clone()).collect();
    } else {
        controls = remaining.iter().map(|c| c.id.clone()).collect();
        let hold = min_samples.max(members.len() / 20).min(members.len() / 2);
        let keep = members.len() - hold;
        controls.extend(members.drain(keep..));
    }
    (members, controls)
}

/// Request to start a rollout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartRequest {
    /// The content version (content rollouts).
    #[serde(default)]
    pub version: i64,
    /// The agent release's version label (agent rollouts): a release published with
    /// `PUT /api/v1/releases/{version}`. When set, this is an agent rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Plan TOML; the default plan when absent.
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub emergency: bool,
    #[serde(default)]
    pub reason: String,
}

/// A ring as the API and dashboard show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RingView {
    pub idx: i64,
    pub name: String,
    pub state: String,
    pub percent: f64,
    pub selector: String,
    pub bake_ms: Millis,
    pub window: Option<String>,
    pub started_at: Option<Millis>,
    pub first_offered_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub members: i64,
    pub controls: i64,
    /// Members reporting the new version now.
    pub on_new: i64,
    /// Members reporting the rollback version now.
    pub on_rollback: i64,
    pub gate: Option<GateReport>,
}

/// A rollout as the API and dashboard show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutView {
    pub id: i64,
    /// `content` or `agent`.
    #[serde(default = "content_kind")]
    pub kind: String,
    pub from_version: i64,
    pub to_version: i64,
    pub rollback_version: Option<i64>,
    pub state: String,
    pub current_ring: i64,
    pub emergency: bool,
    pub reason: String,
    pub created_by: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub fleet: i64,
    pub rings: Vec<RingView>,
    /// Agent rollouts: the release version labels of from, to and rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_label: Option<String>,
}

fn content_kind() -> String {
    Kind::Content.as_str().to_owned()
}

impl RolloutView {
    /// A version of this rollout, in words (`content v7`, `agent release 0.3.0 (#4)`).
    pub fn describe(&self, version: i64) -> String {
        let kind = Kind::parse(&self.kind).unwrap_or(Kind::Content);
        let label = [
            (self.from_version, &self.from_label),
            (self.to_version, &self.to_label),
            (self.rollback_version.unwrap_or(-1), &self.rollback_label),
        ]
        .into_iter()
        .find(|(v, _)| *v == version)
        .and_then(|(_, l)| l.as_deref());
        kind.describe(version, label)
    }
}

fn parse_plan(text: &str) -> AppResult<Plan> {
    Plan::parse(text)
        .map_err(|errors| AppError::Unprocessable(format!("plan: {}", errors.join("; "))))
}

fn describe_selector(s: &Selector) -> String {
    let mut parts = Vec::new();
    if !s.ids.is_empty() {
        parts.push(format!("{} explicit ids", s.ids.len()));
    } else {
        parts.push(format!("{}%", s.percent));
    }
    for (k, v) in [
        ("region", &s.region),
        ("industry", &s.industry),
        ("environment", &s.environment),
    ] {
        if !v.is_empty() {
            parts.push(format!("{k} in [{}]", v.join(", ")));
        }
    }
    for (k, v) in &s.tags {
        parts.push(format!("{k}={v}"));
    }
    parts.join(", ")
}

/// Load one rollout.
pub async fn load(state: &AppState, id: i64) -> AppResult<RolloutRow> {
    let row: Option<RolloutRow> = on_db!(&state.db, |pool| {
        sqlx::query_as(&format!(
            "SELECT {ROLLOUT_COLS} FROM rollouts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await?
    });
    row.ok_or_else(|| AppError::NotFound(format!("no rollout {id}")))
}

/// The active rollout of `kind` (running, paused or halted), if any.
pub async fn active(state: &AppState, kind: Kind) -> AppResult<Option<RolloutRow>> {
    Ok(on_db!(&state.db, |pool| {
        sqlx::query_as(&format!(
            "SELECT {ROLLOUT_COLS} FROM rollouts WHERE active = $1"
        ))
        .bind(kind.slot())
        .fetch_optional(pool)
        .await?
    }))
}

/// The version label of release `seq`.
pub(crate) async fn release_label(state: &AppState, seq: i64) -> AppResult<Option<String>> {
    let row: Option<(String,)> = on_db!(&state.db, |pool| {
        sqlx::query_as("SELECT version FROM releases WHERE seq = $1")
            .bind(seq)
            .fetch_optional(pool)
            .await?
    });
    Ok(row.map(|(v,)| v))
}

async fn rings(state: &AppState, id: i64) -> AppResult<Vec<RingRow>> {
    Ok(on_db!(&state.db, |pool| {
        sqlx::query_as(&format!(
            "SELECT {RING_COLS} FROM rings WHERE rollout_id = $1 ORDER BY idx"
        ))
        .bind(id)
        .fetch_all(pool)
        .await?
    }))
}

/// A rollout with its rings, for display.
pub async fn view(state: &AppState, id: i64) -> AppResult<RolloutView> {
    let r = load(state, id).await?;
    let plan = Plan::parse(&r.plan).unwrap_or_else(|_| Plan::default_plan());
    let ring_rows = rings(state, id).await?;
    let rb = r.rollback_version.unwrap_or(-1);
    let kind = r.kind();
    let counts_sql = format!(
        "SELECT m.ring, CAST(SUM(CASE WHEN {} THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN {} THEN 1 ELSE 0 END) AS BIGINT) \
         FROM ring_members m JOIN agent_state s ON s.agent_id = m.agent_id \
         WHERE m.rollout_id = $1 AND m.role = 'ring' GROUP BY m.ring",
        kind.runs_sql("s", "$2"),
        kind.runs_sql("s", "$3"),
    );
    let (counts, fleet): (Vec<(i64, i64, i64)>, i64) = on_db!(&state.db, |pool| {
        let counts = sqlx::query_as(&counts_sql)
            .bind(id)
            .bind(r.to_version)
            .bind(rb)
            .fetch_all(pool)
            .await?;
        let (fleet,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM agent_state")
            .fetch_one(pool)
            .await?;
        (counts, fleet)
    });
    let counts: HashMap<i64, (i64, i64)> =
        counts.into_iter().map(|(k, a, b)| (k, (a, b))).collect();
    let rings = ring_rows
        .into_iter()
        .map(|row| {
            let spec = usize::try_from(row.idx)
                .ok()
                .and_then(|i| plan.rings.get(i));
            let (on_new, on_rollback) = counts.get(&row.idx).copied().unwrap_or((0, 0));
            RingView {
                idx: row.idx,
                name: row.name,
                state: row.state,
                percent: spec.map_or(0.0, |s| s.selector.percent),
                selector: spec.map_or_else(String::new, |s| describe_selector(&s.selector)),
                bake_ms: spec.map_or(0, |s| s.bake_ms),
                window: spec.and_then(|s| s.window).map(|w| w.to_string()),
                started_at: row.started_at,
                first_offered_at: row.first_offered_at,
                finished_at: row.finished_at,
                members: row.members,
                controls: row.controls,
                on_new,
                on_rollback,
                gate: serde_json::from_str(&row.gate).ok(),
            }
        })
        .collect();
    let (from_label, to_label, rollback_label) = match kind {
        Kind::Content => (None, None, None),
        Kind::Agent => (
            release_label(state, r.from_version).await?,
            release_label(state, r.to_version).await?,
            match r.rollback_version {
                Some(v) => release_label(state, v).await?,
                None => None,
            },
        ),
    };
    Ok(RolloutView {
        id: r.id,
        kind: r.kind.clone(),
        from_label,
        to_label,
        rollback_label,
        from_version: r.from_version,
        to_version: r.to_version,
        rollback_version: r.rollback_version,
        state: r.state,
        current_ring: r.current_ring,
        emergency: r.emergency != 0,
        reason: r.reason,
        created_by: r.created_by,
        created_at: r.created_at,
        updated_at: r.updated_at,
        fleet,
        rings,
    })
}

/// All rollouts, newest first.
pub async fn list(state: &AppState) -> AppResult<Vec<RolloutRow>> {
    Ok(on_db!(&state.db, |pool| {
        sqlx::query_as(&format!(
            "SELECT {ROLLOUT_COLS} FROM rollouts ORDER BY id DESC LIMIT 200"
        ))
        .fetch_all(pool)
        .await?
    }))
}

type CandRow = (
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

fn to_candidates(rows: Vec<CandRow>) -> Vec<Candidate> {
    rows.into_iter()
        .map(
            |(id, rank, region, industry, environment, tags)| Candidate {
                id,
                rank,
                region,
                industry,
                environment,
                tags: serde_json::from_str(&tags).unwrap_or_default(),
            },
        )
        .collect()
}

const LIVE_SQL: &str = "SELECT a.id, a.hash_rank, s.region, s.industry, s.environment, s.custom_tags \
     FROM agents a JOIN agent_state s ON s.agent_id = a.id WHERE s.last_seen >= $1 ORDER BY a.hash_rank, a.id";

/// Materialize ring `k` inside the open transaction `$tx`. Expands to a future of
/// `Result<(usize, usize), sqlx::Error>` (members, controls).
macro_rules! start_ring {
    ($tx:expr, $rollout:expr, $kind:expr, $plan:expr, $k:expr, $now:expr, $hb:expr) => {
        async {
            let kind: Kind = $kind;
            let rollout: i64 = $rollout;
            let plan: &Plan = $plan;
            let k: usize = $k;
            let now: Millis = $now;
            let live_rows: Vec<CandRow> = sqlx::query_as(LIVE_SQL)
                .bind(now - $hb)
                .fetch_all(&mut *$tx)
                .await?;
            let live = to_candidates(live_rows);
            let taken: Vec<(String,)> = sqlx::query_as(
                "SELECT agent_id FROM ring_members WHERE rollout_id = $1 AND role = 'ring'",
            )
            .bind(rollout)
            .fetch_all(&mut *$tx)
            .await?;
            let taken: HashSet<String> = taken.into_iter().map(|(a,)| a).collect();
            // An agent rollout leaves the plan's pinned tag groups on the previous release.
            let held: HashSet<String> = if kind == Kind::Agent {
                live.iter().filter(|c| plan.pinned(&c.tags)).map(|c| c.id.clone()).collect()
            } else {
                HashSet::new()
            };
            let spec = &plan.rings[k];
            let (members, controls) = select_ring(&spec.selector, &live, &taken, &held, plan.gates.min_samples);
            let ring = i64::try_from(k).unwrap_or(i64::MAX);
            let rows: Vec<(&String, &str)> = members
                .iter()
                .map(|m| (m, "ring"))
                .chain(controls.iter().map(|c| (c, "control")))
                .collect();
            for chunk in rows.chunks(1000) {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO ring_members (rollout_id, ring, agent_id, role) ");
                q.push_values(chunk, |mut b, (agent, role)| {
                    b.push_bind(rollout).push_bind(ring).push_bind(*agent).push_bind(*role);
                });
                q.build().execute(&mut *$tx).await?;
            }
            sqlx::query(
                "UPDATE rings SET state = 'active', started_at = $3, members = $4, controls = $5 WHERE rollout_id = $1 AND idx = $2",
            )
            .bind(rollout)
            .bind(ring)
            .bind(now)
            .bind(i64::try_from(members.len()).unwrap_or(i64::MAX))
            .bind(i64::try_from(controls.len()).unwrap_or(i64::MAX))
            .execute(&mut *$tx)
            .await?;
            Ok::<(usize, usize), sqlx::Error>((members.len(), controls.len()))
        }
    };
}

fn heartbeat_ms(state: &AppState, plan: &Plan) -> Millis {
    (plan.gates.heartbeat_intervals * state.config.checkin_interval_ms as f64) as Millis
}

mod actions;
mod api;
pub mod payload;
mod start;
mod tick;

pub use payload::Kind;

pub use actions::{ActionRequest, act, rollback};
pub use api::{get_rollout, get_rollouts, post_action, post_rollout};
pub use start::start;
pub use tick::{TickOutcome, tick};

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(n: usize) -> Vec<Candidate> {
        let mut v: Vec<Candidate> = (0..n)
            .map(|i| {
                let id = format!("{i:032x}");
                Candidate {
                    rank: crate::agents::hash_rank(&id),
                    id,
                    region: Some(if i % 2 == 0 { "eu" } else { "us" }.into()),
                    industry: None,
                    environment: None,
                    tags: BTreeMap::new(),
                }
            })
            .collect();
        v.sort_by(|a, b| a.rank.cmp(&b.rank).then(a.id.cmp(&b.id)));
        v
    }

    fn pct(p: f64) -> Selector {
        Selector {
            percent: p,
            ..Selector::default()
        }
    }

    #[test]
    fn cumulative_percent_rings_partition_the_fleet() {
        let live = fleet(10_000);
        let mut taken = HashSet::new();
        let mut sizes = Vec::new();
        for p in [1.0, 10.0, 50.0, 100.0] {
            let (m, c) = select_ring(&pct(p), &live, &taken, &HashSet::new(), 10);
            assert!(m.iter().all(|a| !taken.contains(a)));
            assert!(c.iter().all(|a| !m.contains(a)));
            assert!(!c.is_empty());
            sizes.push(m.len());
            taken.extend(m);
        }
        // Last ring holds back a control group until its gate passes.
        assert_eq!(sizes[..3], [100, 900, 4000]);
        assert_eq!(sizes[3], 5000 - 250);
    }

    #[test]
    fn selection_is_stable_and_honours_filters() {
        let live = fleet(1000);
        let (a, _) = select_ring(&pct(5.0), &live, &HashSet::new(), &HashSet::new(), 10);
        let (b, _) = select_ring(&pct(5.0), &live, &HashSet::new(), &HashSet::new(), 10);
        assert_eq!(a, b);
        let eu = Selector {
            percent: 10.0,
            region: vec!["eu".into()],
            ..Selector::default()
        };
        let (m, _) = select_ring(&eu, &live, &HashSet::new(), &HashSet::new(), 10);
        assert_eq!(m.len(), 50);
        assert!(
            m.iter()
                .all(|id| u128::from_str_radix(id, 16).unwrap() % 2 == 0)
        );
        let ids = Selector {
            percent: 100.0,
            ids: vec![live[7].id.clone()],
            ..Selector::default()
        };
        let (m, _) = select_ring(&ids, &live, &HashSet::new(), &HashSet::new(), 10);
        assert_eq!(m, vec![live[7].id.clone()]);
    }
}
