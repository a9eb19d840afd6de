//! Starting a rollout: check the version and the plan, insert the rollout and its rings, and
//! materialize the first ring.

use crate::db::BeginWrite;
use std::collections::HashSet;

use crate::clock::Millis;
use crate::error::{AppError, AppResult};
use crate::plan::Plan;
use crate::{AppState, audit, on_db};

use super::*;

/// The version a start request names, the fleet's version of that kind now (the rollout's
/// `from`), after checking the new one is published and newer than what the fleet runs.
async fn versions(state: &AppState, req: &StartRequest) -> AppResult<(Kind, i64, i64)> {
    let Some(label) = &req.agent_version else {
        let (from, to) = content_versions(state, req).await?;
        return Ok((Kind::Content, from, to));
    };
    let mut snap = state.snapshot.get();
    if snap.release_seq(label).is_none() {
        state.reload_snapshot().await?;
        snap = state.snapshot.get();
    }
    let Some(to) = snap.release_seq(label) else {
        return Err(AppError::Unprocessable(format!(
            "agent release {label} is not published (`ringfence rollout publish-release --release FILE`, or PUT /api/v1/releases/{label})"
        )));
    };
    let max_pin = snap
        .release_pins
        .values()
        .map(|(seq, _)| *seq)
        .max()
        .unwrap_or(0);
    if to <= snap.release_baseline || to <= max_pin {
        return Err(AppError::Conflict(format!(
            "agent release {label} (#{to}) is not newer than what the fleet runs (baseline #{}, rollback pins up to #{max_pin}); publish a new release",
            snap.release_baseline
        )));
    }
    // No baseline release: the fleet runs its packages' binaries, and a rollback has nothing
    // to re-offer (agents fall back by themselves; the rollout stops offering).
    Ok((Kind::Agent, snap.release_baseline, to))
}

/// Start a rollout of `req.version` (content) or `req.agent_version` (an agent release).
pub async fn start(state: &AppState, actor: &str, req: &StartRequest) -> AppResult<RolloutView> {
    let plan_text = req
        .plan
        .clone()
        .unwrap_or_else(|| Plan::default_toml().to_owned());
    let plan = parse_plan(&plan_text)?;
    let now = state.clock.now_ms();
    let hb = heartbeat_ms(state, &plan);
    let (kind, from, to) = versions(state, req).await?;
    let evidence = serde_json::json!({
        "kind": kind, "from": from, "to": to, "agent_version": req.agent_version,
        "emergency": req.emergency, "reason": req.reason, "plan": plan,
    });
    let id = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let inserted: Result<(i64,), sqlx::Error> = sqlx::query_as(
            "INSERT INTO rollouts (kind, from_version, to_version, plan, state, active, current_ring, emergency, reason, created_by, created_at, updated_at, revision) \
             VALUES ($8, $1, $2, $3, 'running', $9, 0, $4, $5, $6, $7, $7, 0) RETURNING id",
        )
        .bind(from)
        .bind(to)
        .bind(&plan_text)
        .bind(i64::from(req.emergency))
        .bind(&req.reason)
        .bind(actor)
        .bind(now)
        .bind(kind.as_str())
        .bind(kind.slot())
        .fetch_one(&mut *tx)
        .await;
        let (id,) = match inserted {
            Ok(r) => r,
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                return Err(AppError::Conflict(format!(
                    "another {kind} rollout is active; finish, roll back or wait for it first"
                )));
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
        let (members, controls) = start_ring!(tx, id, kind, &plan, 0, now, hb).await?;
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

async fn content_versions(state: &AppState, req: &StartRequest) -> AppResult<(i64, i64)> {
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
    Ok((snap.baseline, req.version))
}
