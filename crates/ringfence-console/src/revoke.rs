//! Revocation: agents and enrollment tokens an operator takes back.
//!
//! A revoked agent's credential is refused at its next request by every console on the same
//! database: revoking sets `agents.revoked_at` and bumps `fleet.revision` in one transaction;
//! every console polls that revision every second and drops its cached credentials when it
//! moves ([`crate::AppState::refresh_if_changed`]), and the credential lookup skips revoked
//! agents. A revoked enrollment token enrolls nothing more. Both are audited with who and why.
//!
//! Enrollment tokens are listed by an id that is the first 12 hex digits of the token's
//! SHA-256 (the console never stores a token itself), so an operator can revoke one without
//! ever seeing it again.

use crate::db::BeginWrite;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use crate::agents::parse_json;
use crate::auth::Operator;
use crate::clock::Millis;
use crate::error::{AppError, AppResult};
use crate::{AppState, audit, on_db};

/// Hex digits of a token's hash that name it.
const TOKEN_ID_LEN: usize = 12;

/// `POST …/revoke` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    pub reason: String,
}

pub fn reason_of(body: Result<Bytes, BytesRejection>) -> AppResult<String> {
    let b: RevokeBody = parse_json(body, 4096)?;
    let reason = b.reason.trim().to_owned();
    if reason.is_empty() || reason.len() > 512 || reason.chars().any(ringfence_wire::is_hidden_char)
    {
        return Err(AppError::BadRequest(
            "reason: 1 to 512 bytes of text without control characters".into(),
        ));
    }
    Ok(reason)
}

/// Revoke `agent`; `Ok(false)` when it is unknown or already revoked.
pub async fn revoke_agent(
    state: &AppState,
    actor: &str,
    agent: &str,
    reason: &str,
) -> AppResult<bool> {
    let now = state.clock.now_ms();
    let evidence = serde_json::json!({"agent": agent, "reason": reason});
    let revoked = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let n =
            sqlx::query("UPDATE agents SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(agent)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if n == 1 {
            sqlx::query("UPDATE fleet SET revision = revision + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            audit::record!(
                &mut *tx,
                now,
                actor,
                None::<i64>,
                "agent",
                "revoked",
                &evidence
            )
            .await?;
        }
        tx.commit().await?;
        n == 1
    });
    if revoked {
        tracing::warn!(%agent, %actor, %reason, "agent revoked");
        state.credentials.clear();
    }
    Ok(revoked)
}

/// `POST /api/v1/agents/{agent_id}/revoke` with `{"reason": "…"}`.
pub async fn post_agent_revoke(
    State(state): State<AppState>,
    op: Operator,
    Path(agent): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<serde_json::Value>> {
    let reason = reason_of(body)?;
    if revoke_agent(&state, &op.0, &agent, &reason).await? {
        Ok(Json(serde_json::json!({"agent": agent, "revoked": true})))
    } else {
        Err(AppError::NotFound(format!(
            "no such agent, or it is revoked already: {agent}"
        )))
    }
}

/// One enrollment token as operators see it (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRow {
    pub id: String,
    pub label: String,
    pub uses: i64,
    pub max_uses: i64,
    pub expires_at: Option<Millis>,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
}

/// Enrollment tokens, newest first.
pub async fn list_tokens(state: &AppState, limit: i64) -> AppResult<Vec<TokenRow>> {
    type Row = (String, String, i64, i64, Option<i64>, i64, Option<i64>);
    let rows: Vec<Row> = on_db!(&state.db, |pool| {
        sqlx::query_as(
            "SELECT token_hash, label, uses, max_uses, expires_at, created_at, revoked_at \
             FROM enrollment_tokens ORDER BY created_at DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(pool)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(
            |(hash, label, uses, max_uses, expires_at, created_at, revoked_at)| TokenRow {
                id: hash.chars().take(TOKEN_ID_LEN).collect(),
                label,
                uses,
                max_uses,
                expires_at,
                created_at,
                revoked_at,
            },
        )
        .collect())
}

/// `GET /api/v1/enrollment-tokens`.
pub async fn get_tokens(
    State(state): State<AppState>,
    _op: Operator,
) -> AppResult<Json<Vec<TokenRow>>> {
    Ok(Json(list_tokens(&state, 1000).await?))
}

/// Revoke the enrollment token whose id is `id`; `Ok(false)` when none matches.
pub async fn revoke_token(state: &AppState, actor: &str, id: &str) -> AppResult<bool> {
    if id.len() != TOKEN_ID_LEN || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(AppError::BadRequest(format!(
            "a token id is {TOKEN_ID_LEN} hex digits (see `fleet tokens list`)"
        )));
    }
    let now = state.clock.now_ms();
    let pattern = format!("{}%", id.to_ascii_lowercase());
    let evidence = serde_json::json!({"token": id});
    Ok(on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query(
            "UPDATE enrollment_tokens SET revoked_at = $2 WHERE token_hash LIKE $1 AND revoked_at IS NULL",
        )
        .bind(&pattern)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            audit::record!(
                &mut *tx,
                now,
                actor,
                None::<i64>,
                "enrollment-token",
                "revoked",
                &evidence
            )
            .await?;
        }
        tx.commit().await?;
        n > 0
    }))
}

/// `POST /api/v1/enrollment-tokens/{id}/revoke`.
pub async fn post_token_revoke(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
) -> AppResult<Json<serde_json::Value>> {
    if revoke_token(&state, &op.0, &id).await? {
        Ok(Json(serde_json::json!({"token": id, "revoked": true})))
    } else {
        Err(AppError::NotFound(format!(
            "no enrollment token {id}, or it is revoked already"
        )))
    }
}
