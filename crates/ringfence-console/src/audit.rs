//! The audit log: every decision (start, gate verdicts, promotions, halts, rollbacks, refused
//! attempts to skip a gate, emergency overrides, publications) with its actor and evidence.

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};

use crate::auth::Operator;
use crate::clock::Millis;
use crate::error::AppResult;
use crate::{AppState, on_db};

/// Insert one audit entry through any executor of the open engine (a pool or a transaction).
/// A macro rather than a function because the statement is the same for both engines but the
/// executor types differ.
#[macro_export]
macro_rules! audit_record {
    ($exec:expr, $now:expr, $actor:expr, $rollout:expr, $action:expr, $decision:expr, $evidence:expr) => {
        sqlx::query(
            "INSERT INTO audit (at, actor, rollout_id, action, decision, evidence) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind($now)
        .bind($actor)
        .bind($rollout)
        .bind($action)
        .bind($decision)
        .bind(::serde_json::to_string($evidence).unwrap_or_else(|_| "{}".to_owned()))
        .execute($exec)
    };
}

pub use crate::audit_record as record;

/// One audit entry.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Millis,
    pub actor: String,
    pub rollout_id: Option<i64>,
    pub action: String,
    pub decision: String,
    pub evidence: String,
}

/// Entries, newest first, optionally for one rollout.
pub async fn entries(
    state: &AppState,
    rollout: Option<i64>,
    limit: i64,
) -> AppResult<Vec<AuditEntry>> {
    Ok(on_db!(&state.db, |pool| {
        sqlx::query_as::<_, AuditEntry>(
            "SELECT id, at, actor, rollout_id, action, decision, evidence FROM audit \
             WHERE ($1 IS NULL OR rollout_id = $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(rollout)
        .bind(limit)
        .fetch_all(pool)
        .await?
    }))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    pub rollout: Option<i64>,
    pub limit: Option<i64>,
}

/// `GET /api/v1/audit`.
pub async fn get_audit(
    State(state): State<AppState>,
    _op: Operator,
    Query(q): Query<AuditQuery>,
) -> AppResult<Json<Vec<AuditEntry>>> {
    Ok(Json(
        entries(&state, q.rollout, q.limit.unwrap_or(200).clamp(1, 5000)).await?,
    ))
}
