//! One engine step: gather a ring's check-ins since it started (ring and control group, each
//! on the new version or not), judge the gate, and promote, pause, halt or roll back.

use crate::db::BeginWrite;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::error::{AppError, AppResult};
use crate::gate::{Agg, GateInput, GateReport, MemberData, Verdict, judge};
use crate::plan::Plan;
use crate::snapshot::state;
use crate::{AppState, audit, on_db};

use super::*;

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
///
/// Fallbacks count only from a member's check-ins after its first one since the ring started
/// (stamped after the start: the offer is visible only once the start is committed): an agent
/// reports a fallback at the check-in after the one that brought the offer, so what its first
/// check-in reports is about a version it ran before (the bad release of the rollout just
/// rolled back, whose fallbacks must not roll back the next one).
fn agg_sql(kind: Kind) -> String {
    format!(
        "SELECT c.agent_id, \
     CAST(CASE WHEN {on_new} THEN 1 ELSE 0 END AS BIGINT) AS on_new, \
     COUNT(*) AS checkins, \
     CAST(SUM(CAST(c.crashes AS DOUBLE PRECISION) + CAST(c.restarts AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS crashes, \
     CAST(SUM(CASE WHEN c.at > f.first_at THEN {fallbacks} ELSE 0.0 END) AS DOUBLE PRECISION) AS lkg, \
     CAST(AVG(c.cpu) AS DOUBLE PRECISION) AS cpu, \
     CAST(AVG(CAST(c.rss AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS rss, \
     CAST(SUM(CAST(c.events AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS events, \
     CAST(SUM(CAST(c.drops AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS drops, \
     CAST(SUM(CAST(c.findings AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS findings, \
     CAST(SUM(CAST(c.interval_ms AS DOUBLE PRECISION)) AS DOUBLE PRECISION) AS interval_ms, \
     CAST(MIN(c.at) AS BIGINT) AS first_at, \
     CAST(SUM(CASE WHEN c.at >= $5 THEN 1 ELSE 0 END) AS BIGINT) AS recent_checkins, \
     CAST(SUM(CASE WHEN c.at >= $5 THEN CAST(c.crashes AS DOUBLE PRECISION) + CAST(c.restarts AS DOUBLE PRECISION) ELSE 0.0 END) AS DOUBLE PRECISION) AS recent_crashes, \
     CAST(SUM(CASE WHEN c.at >= $5 AND c.at > f.first_at THEN {fallbacks} ELSE 0.0 END) AS DOUBLE PRECISION) AS recent_lkg, \
     CAST(SUM(CASE WHEN c.at >= $5 THEN CAST(c.drops AS DOUBLE PRECISION) ELSE 0.0 END) AS DOUBLE PRECISION) AS recent_drops, \
     CAST(SUM(CASE WHEN c.at >= $5 THEN CAST(c.findings AS DOUBLE PRECISION) ELSE 0.0 END) AS DOUBLE PRECISION) AS recent_findings \
     FROM checkins c JOIN ring_members m ON m.agent_id = c.agent_id \
     JOIN (SELECT c0.agent_id, MIN(c0.at) AS first_at FROM checkins c0 \
           JOIN ring_members m0 ON m0.agent_id = c0.agent_id \
           WHERE m0.rollout_id = $2 AND m0.ring = $3 AND c0.at > $4 GROUP BY c0.agent_id) f \
       ON f.agent_id = c.agent_id \
     WHERE m.rollout_id = $2 AND m.ring = $3 AND c.at >= $4 \
     GROUP BY c.agent_id, CAST(CASE WHEN {on_new} THEN 1 ELSE 0 END AS BIGINT)",
        on_new = kind.runs_sql("c", "$1"),
        fallbacks = kind.fallbacks_sql(),
    )
}

/// Evidence from before this was acknowledged: the ring's start, or the millisecond after an
/// operator's last resume (what was reported up to the resume was seen and accepted).
fn acknowledged(started: Millis, resumed: Option<Millis>) -> Millis {
    resumed
        .map_or(started, |t| t.saturating_add(1))
        .max(started)
}

/// Gather what the gate of ring `k` needs.
pub(super) async fn gather(
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
    let agg_sql = agg_sql(r.kind());
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
            let aggs = sqlx::query_as::<_, AggRow>(&agg_sql)
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
    let kind = r.kind();
    let label = match kind {
        Kind::Content => None,
        Kind::Agent => release_label(state, r.to_version).await?,
    };
    let version_words = kind.describe(r.to_version, label.as_deref());
    Ok(GateInput {
        fallback_words: kind.fallback_words(&version_words),
        version_words,
        members: data.into_values().collect(),
        ring_started_at: started,
        first_offered_at: ring.first_offered_at,
        window: spec.window,
        emergency: r.emergency != 0,
        bake_ms: spec.bake_ms,
        checkin_interval_ms: state.config.checkin_interval_ms,
        install_grace_ms: match kind {
            Kind::Content => 0,
            Kind::Agent => plan.gates.release_install_ms(),
        },
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

/// One engine step for every kind's active rollout. Returns the first outcome that is more than
/// idling or waiting (content first), else the content rollout's.
pub async fn tick(state: &AppState) -> AppResult<TickOutcome> {
    let mut first = None;
    for kind in Kind::ALL {
        let outcome = tick_kind(state, kind).await?;
        if !matches!(outcome, TickOutcome::Idle | TickOutcome::Waiting { .. }) {
            return Ok(outcome);
        }
        first.get_or_insert(outcome);
    }
    Ok(first.unwrap_or(TickOutcome::Idle))
}

/// One engine step for the active rollout of `kind`.
pub async fn tick_kind(state: &AppState, kind: Kind) -> AppResult<TickOutcome> {
    let Some(r) = active(state, kind).await? else {
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
pub(super) async fn promote_passed(
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
    let kind = r.kind();
    // The audit's words for an agent rollout's releases (`agent release 0.3.0 (#2)`).
    let (to_words, from_words) = if kind == Kind::Agent && last {
        (
            kind.describe(
                r.to_version,
                release_label(state, r.to_version).await?.as_deref(),
            ),
            kind.describe(
                r.from_version,
                release_label(state, r.from_version).await?.as_deref(),
            ),
        )
    } else {
        (String::new(), String::new())
    };
    let won = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let (new_state, active): (&str, Option<i64>) = if last {
            (state::COMPLETED, None)
        } else {
            (state::RUNNING, Some(kind.slot()))
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
            if last && kind == Kind::Content {
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
            } else if last {
                sqlx::query("UPDATE fleet SET release_baseline = $1 WHERE id = 1")
                    .bind(r.to_version)
                    .execute(&mut *tx)
                    .await?;
                // Rollback pins of earlier rollouts are superseded; the plan's pinned groups
                // are held on the release this rollout replaced.
                sqlx::query("DELETE FROM release_pins WHERE seq <= $1 OR hold = 1")
                    .bind(r.to_version)
                    .execute(&mut *tx)
                    .await?;
                let mut held = 0usize;
                if r.from_version > 0 && !plan.pins.is_empty() {
                    let agents: Vec<(String, String)> =
                        sqlx::query_as("SELECT agent_id, custom_tags FROM agent_state")
                            .fetch_all(&mut *tx)
                            .await?;
                    for (agent, tags) in agents {
                        let tags = serde_json::from_str(&tags).unwrap_or_default();
                        if plan.pinned(&tags) {
                            sqlx::query(
                                "INSERT INTO release_pins (agent_id, seq, rollout_id, hold) VALUES ($1, $2, $3, 1) \
                                 ON CONFLICT (agent_id) DO UPDATE SET seq = excluded.seq, rollout_id = excluded.rollout_id, hold = 1",
                            )
                            .bind(&agent)
                            .bind(r.from_version)
                            .bind(r.id)
                            .execute(&mut *tx)
                            .await?;
                            held += 1;
                        }
                    }
                }
                let mut ev = evidence.clone();
                ev["held_on_previous"] = serde_json::json!(held);
                audit::record!(
                    &mut *tx,
                    now,
                    actor,
                    Some(r.id),
                    "complete",
                    format!(
                        "last ring passed: {to_words} is the fleet baseline; {held} pinned agent(s) held on {from_words}"
                    ),
                    &ev
                )
                .await?;
            } else {
                let k = usize::try_from(next).unwrap_or(usize::MAX);
                let (members, controls) = start_ring!(tx, r.id, kind, plan, k, now, hb).await?;
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
pub(super) async fn transition(
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
        let mut tx = pool.begin_write().await?;
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
