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

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use crate::agents::parse_json;
use crate::auth::Operator;
use crate::clock::Millis;
use crate::content::{self, file_name};
use crate::error::{AppError, AppResult};
use crate::gate::{Agg, GateInput, GateReport, MemberData, Verdict, judge};
use crate::plan::{AgentAttrs, Plan, Selector};
use crate::snapshot::state;
use crate::{AppState, audit, on_db};

/// A rollout row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RolloutRow {
    pub id: i64,
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

const ROLLOUT_COLS: &str = "id, from_version, to_version, rollback_version, plan, state, current_ring, emergency, reason, created_by, created_at, updated_at, revision";
const RING_COLS: &str = "rollout_id, idx, name, state, started_at, first_offered_at, finished_at, members, controls, gate";

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
/// receives the version only once the gate has passed.
pub fn select_ring(
    sel: &Selector,
    live: &[Candidate],
    taken: &HashSet<String>,
    min_samples: usize,
) -> (Vec<String>, Vec<String>) {
    let matching: Vec<&Candidate> = live
        .iter()
        .filter(|c| {
            sel.matches(&AgentAttrs {
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
    pub version: i64,
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

/// The active rollout (running, paused or halted), if any.
pub async fn active(state: &AppState) -> AppResult<Option<RolloutRow>> {
    Ok(on_db!(&state.db, |pool| {
        sqlx::query_as(&format!(
            "SELECT {ROLLOUT_COLS} FROM rollouts WHERE active = 1"
        ))
        .fetch_optional(pool)
        .await?
    }))
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
    let (counts, fleet): (Vec<(i64, i64, i64)>, i64) = on_db!(&state.db, |pool| {
        let counts = sqlx::query_as(
            "SELECT m.ring, CAST(SUM(CASE WHEN s.content_version = $2 THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN s.content_version = $3 THEN 1 ELSE 0 END) AS BIGINT) \
             FROM ring_members m JOIN agent_state s ON s.agent_id = m.agent_id \
             WHERE m.rollout_id = $1 AND m.role = 'ring' GROUP BY m.ring",
        )
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
    Ok(RolloutView {
        id: r.id,
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
    ($tx:expr, $rollout:expr, $plan:expr, $k:expr, $now:expr, $hb:expr) => {
        async {
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
            let spec = &plan.rings[k];
            let (members, controls) = select_ring(&spec.selector, &live, &taken, plan.gates.min_samples);
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

/// Start a rollout of `req.version`.
pub async fn start(state: &AppState, actor: &str, req: &StartRequest) -> AppResult<RolloutView> {
    let plan_text = req
        .plan
        .clone()
        .unwrap_or_else(|| Plan::default_toml().to_owned());
    let plan = parse_plan(&plan_text)?;
    let now = state.clock.now_ms();
    let hb = heartbeat_ms(state, &plan);
    let snap = state.snapshot.get();
    if !snap.content.contains_key(&req.version) {
        // The snapshot may lag another console's publish by a second; reload and look again.
        state.reload_snapshot().await?;
    }
    let snap = state.snapshot.get();
    if !snap.content.contains_key(&req.version) {
        return Err(AppError::Unprocessable(format!(
            "content version {} is not published",
            req.version
        )));
    }
    if snap.baseline == 0 {
        return Err(AppError::Conflict(
            "the fleet has no baseline content yet; publish one first (`ringfence rollout publish --baseline`, or PUT /api/v1/content/N?baseline=true)".into(),
        ));
    }
    let max_pin = snap.pins.values().copied().max().unwrap_or(0);
    if req.version <= snap.baseline || req.version <= max_pin {
        return Err(AppError::Conflict(format!(
            "version {} is not newer than what the fleet runs (baseline {}, rollback pins up to {}); agents refuse older versions",
            req.version, snap.baseline, max_pin
        )));
    }
    let evidence = serde_json::json!({
        "from": snap.baseline, "to": req.version, "emergency": req.emergency,
        "reason": req.reason, "plan": plan,
    });
    let id = on_db!(&state.db, |pool| {
        let mut tx = pool.begin().await?;
        let inserted: Result<(i64,), sqlx::Error> = sqlx::query_as(
            "INSERT INTO rollouts (from_version, to_version, plan, state, active, current_ring, emergency, reason, created_by, created_at, updated_at, revision) \
             VALUES ($1, $2, $3, 'running', 1, 0, $4, $5, $6, $7, $7, 0) RETURNING id",
        )
        .bind(snap.baseline)
        .bind(req.version)
        .bind(&plan_text)
        .bind(i64::from(req.emergency))
        .bind(&req.reason)
        .bind(actor)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let (id,) = match inserted {
            Ok(r) => r,
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                return Err(AppError::Conflict(
                    "another rollout is active; finish, roll back or wait for it first".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        for (i, ring) in plan.rings.iter().enumerate() {
            sqlx::query(
                "INSERT INTO rings (rollout_id, idx, name, state, members, controls, gate) VALUES ($1, $2, $3, 'pending', 0, 0, '')",
            )
            .bind(id)
            .bind(i64::try_from(i).unwrap_or(i64::MAX))
            .bind(&ring.name)
            .execute(&mut *tx)
            .await?;
        }
        let (members, controls) = start_ring!(tx, id, &plan, 0, now, hb).await?;
        let mut ev = evidence.clone();
        ev["ring0"] = serde_json::json!({"members": members, "controls": controls});
        audit::record!(&mut *tx, now, actor, Some(id), "start", "started", &ev).await?;
        if req.emergency {
            audit::record!(
                &mut *tx,
                now,
                actor,
                Some(id),
                "emergency",
                "emergency flag set at start: maintenance windows overridden",
                &evidence
            )
            .await?;
        }
        sqlx::query("UPDATE fleet SET revision = revision + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        id
    });
    state.reload_snapshot().await?;
    view(state, id).await
}

/// One ring or control agent's check-ins since the ring started, on one side (new version or
/// not).
#[derive(Debug, sqlx::FromRow)]
struct AggRow {
    agent_id: String,
    on_new: i64,
    checkins: i64,
    crashes: f64,
    lkg: f64,
    cpu: f64,
    rss: f64,
    events: f64,
    drops: f64,
    findings: f64,
    interval_ms: f64,
    first_at: Millis,
    recent_checkins: i64,
    recent_crashes: f64,
    recent_lkg: f64,
    recent_drops: f64,
    recent_findings: f64,
}

/// `$1` new version, `$2` rollout, `$3` ring, `$4` ring start, `$5` last acknowledgement.
const AGG_SQL: &str = "SELECT c.agent_id, \
     CAST(CASE WHEN c.content_version = $1 THEN 1 ELSE 0 END AS BIGINT) AS on_new, \
     COUNT(*) AS checkins, \
     CAST(SUM(CAST(c.crashes AS DOUBLE PRECISION) + CAST(c.restarts AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS crashes, \
     CAST(SUM(CAST(c.lkg AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS lkg, \
     CAST(AVG(c.cpu) AS DOUBLE PRECISION) AS cpu, \
     CAST(AVG(CAST(c.rss AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS rss, \
     CAST(SUM(CAST(c.events AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS events, \
     CAST(SUM(CAST(c.drops AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS drops, \
     CAST(SUM(CAST(c.findings AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS findings, \
     CAST(SUM(CAST(c.interval_ms AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS interval_ms, \
     CAST(MIN(c.at) AS BIGINT) AS first_at, \
     CAST(SUM(CASE WHEN c.at >= $5 THEN 1 ELSE 0 END) AS BIGINT) AS recent_checkins, \
     CAST(SUM(CASE WHEN c.at >= $5 THEN CAST(c.crashes AS DOUBLE PRECISION) + CAST(c.restarts AS DOUBLE PRECISION) ELSE 0.0 END) AS DOUBLE PRECISION) AS recent_crashes, \
     CAST(SUM(CASE WHEN c.at >= $5 THEN CAST(c.lkg AS DOUBLE PRECISION) ELSE 0.0 END) AS DOUBLE PRECISION) AS recent_lkg, \
     CAST(SUM(CASE WHEN c.at >= $5 THEN CAST(c.drops AS DOUBLE PRECISION) ELSE 0.0 END) AS DOUBLE PRECISION) AS recent_drops, \
     CAST(SUM(CASE WHEN c.at >= $5 THEN CAST(c.findings AS DOUBLE PRECISION) ELSE 0.0 END) AS DOUBLE PRECISION) AS recent_findings \
     FROM checkins c JOIN ring_members m ON m.agent_id = c.agent_id \
     WHERE m.rollout_id = $2 AND m.ring = $3 AND c.at >= $4 \
     GROUP BY c.agent_id, CAST(CASE WHEN c.content_version = $1 THEN 1 ELSE 0 END AS BIGINT)";

/// Evidence from before this was acknowledged: the ring's start, or the millisecond after an
/// operator's last resume (what was reported up to the resume was seen and accepted).
fn acknowledged(started: Millis, resumed: Option<Millis>) -> Millis {
    resumed
        .map_or(started, |t| t.saturating_add(1))
        .max(started)
}

/// Gather what the gate of ring `k` needs.
async fn gather(
    state: &AppState,
    r: &RolloutRow,
    ring: &RingRow,
    plan: &Plan,
) -> AppResult<GateInput> {
    let k = usize::try_from(ring.idx).unwrap_or(usize::MAX);
    let spec = plan
        .rings
        .get(k)
        .ok_or_else(|| AppError::internal("ring index outside the plan"))?;
    let started = ring.started_at.unwrap_or(r.created_at);
    let now = state.clock.now_ms();
    type MemberRow = (String, String, Millis, i64);
    // Sums over DOUBLE PRECISION: a sum of stored counters must never overflow (SQLite fails
    // with "integer overflow", PostgreSQL's BIGINT cast with "out of range"), and the gate
    // works in f64 anyway. `as i64` below saturates.
    let (members, aggs, resumed): (Vec<MemberRow>, Vec<AggRow>, Option<Millis>) = on_db!(
        &state.db,
        |pool| {
            let members = sqlx::query_as(
                "SELECT m.agent_id, m.role, s.last_seen, s.tz_offset FROM ring_members m \
                 JOIN agent_state s ON s.agent_id = m.agent_id WHERE m.rollout_id = $1 AND m.ring = $2",
            )
            .bind(r.id)
            .bind(ring.idx)
            .fetch_all(pool)
            .await?;
            let (resumed,): (Option<Millis>,) = sqlx::query_as(
                "SELECT MAX(at) FROM audit WHERE rollout_id = $1 AND action = 'resume'",
            )
            .bind(r.id)
            .fetch_one(pool)
            .await?;
            let aggs = sqlx::query_as::<_, AggRow>(AGG_SQL)
                .bind(r.to_version)
                .bind(r.id)
                .bind(ring.idx)
                .bind(started)
                .bind(acknowledged(started, resumed))
                .fetch_all(pool)
                .await?;
            (members, aggs, resumed)
        }
    );
    let acknowledged_at = acknowledged(started, resumed);
    // No agent accrues more exposure than the ring has existed (plus one check-in of slack): an
    // agent claiming long intervals must not dilute its group's rates.
    let max_exposure = (now - started)
        .max(0)
        .saturating_add(heartbeat_ms(state, plan));
    let mut data: HashMap<String, MemberData> = members
        .into_iter()
        .map(|(id, role, last_seen, tz)| {
            (
                id.clone(),
                MemberData {
                    id,
                    in_ring: role == "ring",
                    last_seen,
                    tz_offset: tz,
                    ..MemberData::default()
                },
            )
        })
        .collect();
    for row in aggs {
        if let Some(m) = data.get_mut(&row.agent_id) {
            let a = Agg {
                checkins: row.checkins,
                crashes: row.crashes as i64,
                cpu: row.cpu,
                rss: row.rss,
                events: row.events as i64,
                drops: row.drops as i64,
                findings: row.findings as i64,
                interval_ms: (row.interval_ms as i64).min(max_exposure),
                first_at: row.first_at,
                recent_checkins: row.recent_checkins,
                recent_crashes: row.recent_crashes as i64,
                recent_drops: row.recent_drops as i64,
                recent_findings: row.recent_findings as i64,
            };
            m.lkg = m.lkg.saturating_add(row.lkg as i64);
            m.recent_lkg = m.recent_lkg.saturating_add(row.recent_lkg as i64);
            if row.on_new == 1 {
                m.new = Some(a);
            } else {
                m.old = Some(a);
            }
        }
    }
    Ok(GateInput {
        members: data.into_values().collect(),
        ring_started_at: started,
        first_offered_at: ring.first_offered_at,
        window: spec.window,
        emergency: r.emergency != 0,
        bake_ms: spec.bake_ms,
        checkin_interval_ms: state.config.checkin_interval_ms,
        to_version: r.to_version,
        acknowledged_at,
    })
}

/// What a tick did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TickOutcome {
    Idle,
    Waiting {
        rollout: i64,
        ring: i64,
    },
    Promoted {
        rollout: i64,
        ring: i64,
    },
    Completed {
        rollout: i64,
    },
    Paused {
        rollout: i64,
    },
    /// Hard-stop evidence from too few agents: halted for an operator, nothing rolled back.
    Halted {
        rollout: i64,
    },
    RolledBack {
        rollout: i64,
        version: i64,
    },
    /// Another console acted first.
    Lost,
}

/// How the engine's own halts begin their reason: a rollout it halted on thin evidence is
/// still judged, and rolled back without anyone at a keyboard once the evidence is enough.
const ENGINE_HALT: &str = "gate halted ring ";

/// One engine step for the active rollout.
pub async fn tick(state: &AppState) -> AppResult<TickOutcome> {
    let Some(r) = active(state).await? else {
        return Ok(TickOutcome::Idle);
    };
    let engine_halt = r.state == state::HALTED && r.reason.starts_with(ENGINE_HALT);
    if r.state != state::RUNNING && !engine_halt {
        return Ok(TickOutcome::Idle);
    }
    let plan = parse_plan(&r.plan)?;
    let now = state.clock.now_ms();
    let ring_rows = rings(state, r.id).await?;
    let Some(ring) = ring_rows.iter().find(|x| x.idx == r.current_ring).cloned() else {
        return Err(AppError::internal("current ring missing"));
    };
    let k = usize::try_from(ring.idx).unwrap_or(usize::MAX);
    let spec = plan
        .rings
        .get(k)
        .ok_or_else(|| AppError::internal("ring index outside the plan"))?;
    let mut ring = ring;
    if ring.first_offered_at.is_none() {
        let open = match spec.window {
            None => true,
            Some(_) if r.emergency != 0 => true,
            Some(w) => {
                let tzs: Vec<(i64,)> = on_db!(&state.db, |pool| {
                    sqlx::query_as(
                        "SELECT DISTINCT s.tz_offset FROM ring_members m JOIN agent_state s ON s.agent_id = m.agent_id \
                         WHERE m.rollout_id = $1 AND m.ring = $2 AND m.role = 'ring'",
                    )
                    .bind(r.id)
                    .bind(ring.idx)
                    .fetch_all(pool)
                    .await?
                });
                tzs.iter().any(|(tz,)| w.is_open(now, *tz))
            }
        };
        if open {
            on_db!(&state.db, |pool| {
                sqlx::query(
                    "UPDATE rings SET first_offered_at = $3 WHERE rollout_id = $1 AND idx = $2 AND first_offered_at IS NULL",
                )
                .bind(r.id)
                .bind(ring.idx)
                .bind(now)
                .execute(pool)
                .await?;
            });
            ring.first_offered_at = Some(now);
        }
    }
    let input = gather(state, &r, &ring, &plan).await?;
    let report = judge(&input, &plan.gates, now);
    let gate_json = serde_json::to_string(&report).map_err(AppError::internal)?;
    on_db!(&state.db, |pool| {
        sqlx::query("UPDATE rings SET gate = $3 WHERE rollout_id = $1 AND idx = $2")
            .bind(r.id)
            .bind(ring.idx)
            .bind(&gate_json)
            .execute(pool)
            .await?;
    });
    if engine_halt && report.verdict != Verdict::Fail {
        // Still short of the evidence a rollback needs: the operator decides, or more agents
        // report.
        return Ok(TickOutcome::Idle);
    }
    match report.verdict {
        Verdict::Wait => Ok(TickOutcome::Waiting {
            rollout: r.id,
            ring: ring.idx,
        }),
        Verdict::Fail => {
            let evidence = serde_json::to_value(&report).map_err(AppError::internal)?;
            let reason = format!("gate failed in ring {:?}: {}", ring.name, report.reason);
            match rollback(state, &r, "engine", &reason, evidence, true).await? {
                Some(v) => Ok(TickOutcome::RolledBack {
                    rollout: r.id,
                    version: v,
                }),
                None => Ok(TickOutcome::Lost),
            }
        }
        Verdict::Halt => {
            let evidence = serde_json::to_value(&report).map_err(AppError::internal)?;
            let reason = format!("{ENGINE_HALT}{:?}: {}", ring.name, report.reason);
            if transition(
                state,
                &r,
                state::HALTED,
                "engine",
                "halt",
                &reason,
                &evidence,
            )
            .await?
            {
                Ok(TickOutcome::Halted { rollout: r.id })
            } else {
                Ok(TickOutcome::Lost)
            }
        }
        Verdict::Inconclusive => {
            let evidence = serde_json::to_value(&report).map_err(AppError::internal)?;
            let reason = format!(
                "gate inconclusive in ring {:?}: {}",
                ring.name, report.reason
            );
            if transition(
                state,
                &r,
                state::PAUSED,
                "engine",
                "pause",
                &reason,
                &evidence,
            )
            .await?
            {
                Ok(TickOutcome::Paused { rollout: r.id })
            } else {
                Ok(TickOutcome::Lost)
            }
        }
        Verdict::Pass => promote_passed(state, &r, &plan, &report, "engine").await,
    }
}

/// Promote after a passed gate (or complete after the last ring).
async fn promote_passed(
    state: &AppState,
    r: &RolloutRow,
    plan: &Plan,
    report: &GateReport,
    actor: &str,
) -> AppResult<TickOutcome> {
    let now = state.clock.now_ms();
    let hb = heartbeat_ms(state, plan);
    let next = r.current_ring + 1;
    let last = usize::try_from(next).map_or(true, |n| n >= plan.rings.len());
    let evidence = serde_json::to_value(report).map_err(AppError::internal)?;
    let won = on_db!(&state.db, |pool| {
        let mut tx = pool.begin().await?;
        let (new_state, active): (&str, Option<i64>) = if last {
            (state::COMPLETED, None)
        } else {
            (state::RUNNING, Some(1))
        };
        let ok = sqlx::query(
            "UPDATE rollouts SET current_ring = $3, state = $4, active = $5, updated_at = $6, revision = revision + 1 \
             WHERE id = $1 AND revision = $2",
        )
        .bind(r.id)
        .bind(r.revision)
        .bind(if last { r.current_ring } else { next })
        .bind(new_state)
        .bind(active)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if ok.rows_affected() != 1 {
            tx.rollback().await?;
            false
        } else {
            sqlx::query("UPDATE rings SET state = 'passed', finished_at = $3 WHERE rollout_id = $1 AND idx = $2")
                .bind(r.id)
                .bind(r.current_ring)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if last {
                sqlx::query("UPDATE fleet SET baseline_version = $1 WHERE id = 1")
                    .bind(r.to_version)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM agent_pins WHERE version <= $1")
                    .bind(r.to_version)
                    .execute(&mut *tx)
                    .await?;
                audit::record!(
                    &mut *tx,
                    now,
                    actor,
                    Some(r.id),
                    "complete",
                    format!("last ring passed: v{} is the fleet baseline", r.to_version),
                    &evidence
                )
                .await?;
            } else {
                let k = usize::try_from(next).unwrap_or(usize::MAX);
                let (members, controls) = start_ring!(tx, r.id, plan, k, now, hb).await?;
                let mut ev = evidence.clone();
                ev["next_ring"] =
                    serde_json::json!({"idx": next, "members": members, "controls": controls});
                audit::record!(
                    &mut *tx,
                    now,
                    actor,
                    Some(r.id),
                    "promote",
                    format!(
                        "ring {} passed its gate; ring {} ({}) started with {} agents",
                        r.current_ring, next, plan.rings[k].name, members
                    ),
                    &ev
                )
                .await?;
            }
            sqlx::query("UPDATE fleet SET revision = revision + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            true
        }
    });
    if !won {
        return Ok(TickOutcome::Lost);
    }
    state.reload_snapshot().await?;
    Ok(if last {
        TickOutcome::Completed { rollout: r.id }
    } else {
        TickOutcome::Promoted {
            rollout: r.id,
            ring: next,
        }
    })
}

/// Change state (halt, pause, resume), guarded by revision. Returns whether we won.
async fn transition(
    state: &AppState,
    r: &RolloutRow,
    to: &str,
    actor: &str,
    action: &str,
    reason: &str,
    evidence: &serde_json::Value,
) -> AppResult<bool> {
    let now = state.clock.now_ms();
    let won = on_db!(&state.db, |pool| {
        let mut tx = pool.begin().await?;
        let ok = sqlx::query(
            "UPDATE rollouts SET state = $3, reason = $4, updated_at = $5, revision = revision + 1 WHERE id = $1 AND revision = $2",
        )
        .bind(r.id)
        .bind(r.revision)
        .bind(to)
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if ok.rows_affected() == 1 {
            audit::record!(&mut *tx, now, actor, Some(r.id), action, reason, evidence).await?;
            sqlx::query("UPDATE fleet SET revision = revision + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            true
        } else {
            tx.rollback().await?;
            false
        }
    });
    if won {
        state.reload_snapshot().await?;
    }
    Ok(won)
}

/// Halt and roll back: publish the previous content as a new, higher version and pin every
/// agent the rollout reached to it. Returns the rollback version, or `None` if another console
/// acted first.
pub async fn rollback(
    state: &AppState,
    r: &RolloutRow,
    actor: &str,
    reason: &str,
    evidence: serde_json::Value,
    gate_failed: bool,
) -> AppResult<Option<i64>> {
    let now = state.clock.now_ms();
    let old_path = state.config.content_dir.join(file_name(r.from_version));
    let old = tokio::fs::read(&old_path)
        .await
        .map_err(AppError::internal)?;
    for _attempt in 0..3 {
        let (max,): (Option<i64>,) = on_db!(&state.db, |pool| {
            sqlx::query_as("SELECT MAX(version) FROM content")
                .fetch_one(pool)
                .await?
        });
        let rb = max.unwrap_or(0) + 1;
        let bytes = state
            .republisher
            .republish(&old, r.from_version.unsigned_abs(), rb.unsigned_abs())
            .map_err(AppError::Internal)?;
        // What agents will be offered is verified like any upload.
        state
            .republisher
            .verify(&bytes, rb.unsigned_abs())
            .map_err(|e| {
                AppError::Internal(format!("rollback bundle v{rb} does not verify: {e}"))
            })?;
        let staged = content::stage_file(&state.config.content_dir, rb, &bytes).await?;
        let (file, sha) = (staged.file.clone(), staged.sha256.clone());
        let size = i64::try_from(bytes.len()).map_err(AppError::internal)?;
        let ev = serde_json::json!({
            "reason": reason, "rollback_version": rb, "carries": r.from_version,
            "replaces": r.to_version, "gate": evidence,
        });
        let outcome: Result<bool, sqlx::Error> = on_db!(&state.db, |pool| {
            async {
                let mut tx = pool.begin().await?;
                let ok = sqlx::query(
                    "UPDATE rollouts SET state = $3, active = NULL, rollback_version = $4, reason = $5, updated_at = $6, revision = revision + 1 \
                     WHERE id = $1 AND revision = $2 AND active = 1",
                )
                .bind(r.id)
                .bind(r.revision)
                .bind(state::ROLLED_BACK)
                .bind(rb)
                .bind(reason)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if ok.rows_affected() != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO content (version, file, sha256, size, carries, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(rb)
                .bind(&file)
                .bind(&sha)
                .bind(size)
                .bind(r.from_version)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO agent_pins (agent_id, version, rollout_id) \
                     SELECT agent_id, $1, $2 FROM ring_members WHERE rollout_id = $2 AND role = 'ring' \
                     ON CONFLICT (agent_id) DO UPDATE SET version = excluded.version, rollout_id = excluded.rollout_id",
                )
                .bind(rb)
                .bind(r.id)
                .execute(&mut *tx)
                .await?;
                let ring_state = if gate_failed { "failed" } else { "halted" };
                sqlx::query("UPDATE rings SET state = $3, finished_at = $4 WHERE rollout_id = $1 AND idx = $2")
                    .bind(r.id)
                    .bind(r.current_ring)
                    .bind(ring_state)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                audit::record!(&mut *tx, now, actor, Some(r.id), "rollback",
                    format!("halted and rolled back: v{rb} carries v{} content; {reason}", r.from_version), &ev).await?;
                sqlx::query("UPDATE fleet SET revision = revision + 1 WHERE id = 1")
                    .execute(&mut *tx)
                    .await?;
                // The version is ours: only now does the file take its name.
                staged.place().await.map_err(sqlx::Error::Io)?;
                tx.commit().await?;
                Ok(true)
            }
            .await
        });
        if !matches!(outcome, Ok(true)) {
            staged.discard().await;
        }
        match outcome {
            Ok(true) => {
                state.reload_snapshot().await?;
                return Ok(Some(rb));
            }
            Ok(false) => return Ok(None),
            // Another console took this version number for something else: try the next.
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::Internal(
        "could not allocate a rollback version".into(),
    ))
}

/// A manual action's request body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActionRequest {
    #[serde(default)]
    pub reason: String,
    /// For `promote`: the ring to start (must be the next one).
    #[serde(default)]
    pub ring: Option<i64>,
    /// For `emergency`: set or clear.
    #[serde(default)]
    pub on: Option<bool>,
}

async fn refuse(
    state: &AppState,
    r: &RolloutRow,
    actor: &str,
    action: &str,
    why: String,
    evidence: serde_json::Value,
) -> AppError {
    let now = state.clock.now_ms();
    let logged: Result<(), AppError> = async {
        on_db!(&state.db, |pool| {
            audit::record!(
                pool,
                now,
                actor,
                Some(r.id),
                action,
                format!("refused: {why}"),
                &evidence
            )
            .await?;
        });
        Ok(())
    }
    .await;
    if let Err(e) = logged {
        return e;
    }
    AppError::Conflict(why)
}

/// Apply a manual action: `halt`, `resume`, `rollback`, `promote`, `emergency`.
pub async fn act(
    state: &AppState,
    actor: &str,
    id: i64,
    action: &str,
    req: &ActionRequest,
) -> AppResult<RolloutView> {
    let r = load(state, id).await?;
    let is_active = matches!(
        r.state.as_str(),
        state::RUNNING | state::PAUSED | state::HALTED
    );
    let ev = serde_json::json!({"request": req, "state": r.state, "ring": r.current_ring});
    let reason = if req.reason.is_empty() {
        format!("{action} by {actor}")
    } else {
        req.reason.clone()
    };
    if !is_active {
        return Err(AppError::Conflict(format!(
            "rollout {id} is {}; nothing to {action}",
            r.state
        )));
    }
    let won = match action {
        "halt" => {
            if r.state == state::HALTED {
                return Err(AppError::Conflict("already halted".into()));
            }
            transition(state, &r, state::HALTED, actor, "halt", &reason, &ev).await?
        }
        "resume" => {
            if r.state == state::RUNNING {
                return Err(AppError::Conflict("already running".into()));
            }
            transition(state, &r, state::RUNNING, actor, "resume", &reason, &ev).await?
        }
        "rollback" => rollback(state, &r, actor, &reason, ev, false)
            .await?
            .is_some(),
        "emergency" => {
            let on = req.on.unwrap_or(true);
            let now = state.clock.now_ms();
            let won = on_db!(&state.db, |pool| {
                let mut tx = pool.begin().await?;
                let ok = sqlx::query(
                    "UPDATE rollouts SET emergency = $3, updated_at = $4, revision = revision + 1 WHERE id = $1 AND revision = $2",
                )
                .bind(r.id)
                .bind(r.revision)
                .bind(i64::from(on))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if ok.rows_affected() == 1 {
                    let decision = if on {
                        format!("emergency flag set: maintenance windows overridden ({reason})")
                    } else {
                        format!("emergency flag cleared ({reason})")
                    };
                    audit::record!(&mut *tx, now, actor, Some(r.id), "emergency", decision, &ev)
                        .await?;
                    sqlx::query("UPDATE fleet SET revision = revision + 1 WHERE id = 1")
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    true
                } else {
                    tx.rollback().await?;
                    false
                }
            });
            if won {
                state.reload_snapshot().await?;
            }
            won
        }
        "promote" => {
            let plan = parse_plan(&r.plan)?;
            let wanted = req.ring.unwrap_or(r.current_ring + 1);
            if wanted != r.current_ring + 1 {
                return Err(refuse(state, &r, actor, "promote",
                    format!("ring {wanted} is not the next ring (current is {}): rings cannot be skipped", r.current_ring), ev).await);
            }
            if r.state != state::RUNNING {
                return Err(refuse(
                    state,
                    &r,
                    actor,
                    "promote",
                    format!("rollout is {}; resume it first", r.state),
                    ev,
                )
                .await);
            }
            if let Some(next) = usize::try_from(wanted).ok().and_then(|k| plan.rings.get(k))
                && let (Some(w), false) = (next.window, r.emergency != 0)
            {
                let now = state.clock.now_ms();
                let tzs: Vec<(i64,)> = on_db!(&state.db, |pool| {
                    sqlx::query_as("SELECT DISTINCT tz_offset FROM agent_state")
                        .fetch_all(pool)
                        .await?
                });
                if !tzs.iter().any(|(tz,)| w.is_open(now, *tz)) {
                    return Err(refuse(state, &r, actor, "promote",
                            format!("ring {wanted}'s window {w} is closed for every agent now; set the emergency flag to override"), ev).await);
                }
            }
            let rings_now = rings(state, r.id).await?;
            let ring = rings_now
                .into_iter()
                .find(|x| x.idx == r.current_ring)
                .ok_or_else(|| AppError::internal("current ring missing"))?;
            let input = gather(state, &r, &ring, &plan).await?;
            let report = judge(&input, &plan.gates, state.clock.now_ms());
            if report.verdict != Verdict::Pass {
                let evr = serde_json::to_value(&report).map_err(AppError::internal)?;
                return Err(refuse(
                    state,
                    &r,
                    actor,
                    "promote",
                    format!(
                        "ring {} has not passed its gate: {}",
                        r.current_ring, report.reason
                    ),
                    evr,
                )
                .await);
            }
            !matches!(
                promote_passed(state, &r, &plan, &report, actor).await?,
                TickOutcome::Lost
            )
        }
        other => return Err(AppError::NotFound(format!("no action {other:?}"))),
    };
    if !won {
        return Err(AppError::Conflict(
            "the rollout changed meanwhile; look again and retry".into(),
        ));
    }
    view(state, id).await
}

/// `POST /api/v1/rollouts`. An emergency rollout, or one of content signed to drop most
/// rules, is held for a second operator ([`crate::approvals`]) and answered 202.
pub async fn post_rollout(
    State(state): State<AppState>,
    op: Operator,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let req: StartRequest = parse_json(body, 256 * 1024)?;
    if let Some(why) = crate::approvals::start_needs_approval(&state, &req).await? {
        if let Some(plan) = &req.plan {
            parse_plan(plan)?;
        }
        let held = crate::approvals::ask(
            &state,
            &op.0,
            crate::approvals::kind::ROLLOUT_START,
            &serde_json::to_value(&req).map_err(AppError::internal)?,
            format!("start a rollout of content v{} ({why})", req.version),
            crate::roles::Need::Content,
            &req.reason,
        )
        .await?;
        return Ok(crate::approvals::held(held, None));
    }
    Ok(Json(start(&state, &op.0, &req).await?).into_response())
}

/// `GET /api/v1/rollouts`.
pub async fn get_rollouts(
    State(state): State<AppState>,
    _op: Operator,
) -> AppResult<Json<Vec<RolloutView>>> {
    let mut out = Vec::new();
    for r in list(&state).await?.into_iter().take(20) {
        out.push(view(&state, r.id).await?);
    }
    Ok(Json(out))
}

/// `GET /api/v1/rollouts/{id}`.
pub async fn get_rollout(
    State(state): State<AppState>,
    _op: Operator,
    Path(id): Path<i64>,
) -> AppResult<Json<RolloutView>> {
    Ok(Json(view(&state, id).await?))
}

/// `POST /api/v1/rollouts/{id}/{action}`. Setting the emergency flag is held for a second
/// operator ([`crate::approvals`]) and answered 202.
pub async fn post_action(
    State(state): State<AppState>,
    op: Operator,
    Path((id, action)): Path<(i64, String)>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let req: ActionRequest = match &body {
        Ok(b) if b.is_empty() => ActionRequest::default(),
        _ => parse_json(body, 16 * 1024)?,
    };
    if action == "emergency" && req.on.unwrap_or(true) {
        load(&state, id).await?;
        let held = crate::approvals::ask(
            &state,
            &op.0,
            crate::approvals::kind::ROLLOUT_EMERGENCY,
            &serde_json::json!([id, req]),
            format!("set the emergency flag on rollout {id} (maintenance windows overridden)"),
            crate::roles::Need::Content,
            &req.reason,
        )
        .await?;
        return Ok(crate::approvals::held(held, None));
    }
    Ok(Json(act(&state, &op.0, id, &action, &req).await?).into_response())
}

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
            let (m, c) = select_ring(&pct(p), &live, &taken, 10);
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
        let (a, _) = select_ring(&pct(5.0), &live, &HashSet::new(), 10);
        let (b, _) = select_ring(&pct(5.0), &live, &HashSet::new(), 10);
        assert_eq!(a, b);
        let eu = Selector {
            percent: 10.0,
            region: vec!["eu".into()],
            ..Selector::default()
        };
        let (m, _) = select_ring(&eu, &live, &HashSet::new(), 10);
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
        let (m, _) = select_ring(&ids, &live, &HashSet::new(), 10);
        assert_eq!(m, vec![live[7].id.clone()]);
    }
}
