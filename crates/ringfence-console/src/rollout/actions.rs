//! Rollback (publish the previous content as a new, higher version and pin the ring members to
//! it) and the manual actions an operator takes: halt, resume, rollback, promote, emergency.
//!
//! An agent release cannot be re-signed here (the releases key stays offline), so a release
//! rollback re-offers the previous release's already-signed file under a new release record
//! (`releases.carries` points back) and pins the ring members to it. The agent accepts that
//! re-offer although it was issued before the release it runs, because it is the binary the
//! agent kept as its previous version (or its package's binary): see
//! `ringfence_agent::versions`. With no baseline release there is nothing to re-offer: the
//! rollout is stopped, agents that fell back stay where they are.

use crate::db::BeginWrite;
use serde::{Deserialize, Serialize};

use crate::content::{self, file_name};
use crate::error::{AppError, AppResult};
use crate::gate::{Verdict, judge};
use crate::snapshot::state;
use crate::{AppState, audit, on_db};

use super::tick::{gather, promote_passed, transition};
use super::*;

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
    if r.kind() == Kind::Agent {
        return rollback_release(state, r, actor, reason, evidence, gate_failed).await;
    }
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
                let mut tx = pool.begin_write().await?;
                let ok = sqlx::query(
                    "UPDATE rollouts SET state = $3, active = NULL, rollback_version = $4, reason = $5, updated_at = $6, revision = revision + 1 \
                     WHERE id = $1 AND revision = $2 AND active IS NOT NULL",
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

/// [`rollback`] of an agent release: re-offer the previous release (`Some(seq)` of the re-offer,
/// `Some(0)` when there was none to re-offer).
async fn rollback_release(
    state: &AppState,
    r: &RolloutRow,
    actor: &str,
    reason: &str,
    evidence: serde_json::Value,
    gate_failed: bool,
) -> AppResult<Option<i64>> {
    let now = state.clock.now_ms();
    type Prev = (String, String, String, i64);
    for _attempt in 0..3 {
        let outcome: Result<Option<i64>, sqlx::Error> = on_db!(&state.db, |pool| {
            async {
                let mut tx = pool.begin_write().await?;
                // A write first (see `releases::publish`): the fleet's revision moves anyway.
                sqlx::query("UPDATE fleet SET revision = revision + 1 WHERE id = 1")
                    .execute(&mut *tx)
                    .await?;
                let prev: Option<Prev> = sqlx::query_as(
                    "SELECT version, file, sha256, size FROM releases WHERE seq = $1",
                )
                .bind(r.from_version)
                .fetch_optional(&mut *tx)
                .await?;
                let (max,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM releases")
                    .fetch_one(&mut *tx)
                    .await?;
                let rb = match &prev {
                    Some(_) => max.unwrap_or(0).saturating_add(1),
                    None => 0,
                };
                let ok = sqlx::query(
                    "UPDATE rollouts SET state = $3, active = NULL, rollback_version = $4, reason = $5, updated_at = $6, revision = revision + 1 \
                     WHERE id = $1 AND revision = $2 AND active IS NOT NULL",
                )
                .bind(r.id)
                .bind(r.revision)
                .bind(state::ROLLED_BACK)
                .bind((rb > 0).then_some(rb))
                .bind(reason)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if ok.rows_affected() != 1 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let decision = if let Some((label, file, sha, size)) = &prev {
                    sqlx::query(
                        "INSERT INTO releases (seq, version, file, sha256, size, carries, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(rb)
                    .bind(label)
                    .bind(file)
                    .bind(sha)
                    .bind(size)
                    .bind(r.from_version)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO release_pins (agent_id, seq, rollout_id, hold) \
                         SELECT agent_id, $1, $2, 0 FROM ring_members WHERE rollout_id = $2 AND role = 'ring' \
                         ON CONFLICT (agent_id) DO UPDATE SET seq = excluded.seq, rollout_id = excluded.rollout_id, hold = 0",
                    )
                    .bind(rb)
                    .bind(r.id)
                    .execute(&mut *tx)
                    .await?;
                    format!(
                        "halted and rolled back: release #{rb} re-offers {label} (#{}); {reason}",
                        r.from_version
                    )
                } else {
                    format!(
                        "halted; no baseline release to re-offer: agents that fell back keep their previous binary, no agent gets release #{} any more; {reason}",
                        r.to_version
                    )
                };
                let ring_state = if gate_failed { "failed" } else { "halted" };
                sqlx::query("UPDATE rings SET state = $3, finished_at = $4 WHERE rollout_id = $1 AND idx = $2")
                    .bind(r.id)
                    .bind(r.current_ring)
                    .bind(ring_state)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let ev = serde_json::json!({
                    "reason": reason, "rollback_version": rb, "carries": r.from_version,
                    "replaces": r.to_version, "gate": evidence,
                });
                audit::record!(&mut *tx, now, actor, Some(r.id), "rollback", decision, &ev).await?;
                tx.commit().await?;
                Ok(Some(rb))
            }
            .await
        });
        match outcome {
            Ok(Some(rb)) => {
                state.reload_snapshot().await?;
                return Ok(Some(rb));
            }
            Ok(None) => return Ok(None),
            // Another console took this sequence number: try the next.
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::Internal(
        "could not allocate a rollback release".into(),
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
                let mut tx = pool.begin_write().await?;
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
