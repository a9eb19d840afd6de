//! Operators and their API tokens, as an admin manages them: create an operator with a role,
//! change a role, mint, list and revoke API tokens.
//!
//! A token is named by the first [`TOKEN_ID_LEN`] hex digits of its SHA-256 (the console never
//! stores it). Revoking a token or changing a role bumps `fleet.revision` in its transaction:
//! every console on the database drops its cached tokens at its next poll of the revision
//! (every engine period), so a revoked token is refused everywhere. Every change is audited with
//! who did it and why.

use crate::db::BeginWrite;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use crate::agents::parse_json;
use crate::auth::{self, Authed, TOKEN_ID_LEN};
use crate::clock::Millis;
use crate::error::{AppError, AppResult};
use crate::roles::Role;
use crate::{AppState, audit, on_db};

/// One operator as an admin sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorRow {
    pub name: String,
    pub role: String,
    pub created_at: Millis,
    /// API tokens neither revoked nor expired.
    pub live_tokens: i64,
}

/// `GET /api/v1/operators`.
pub async fn get_operators(State(state): State<AppState>) -> AppResult<Json<Vec<OperatorRow>>> {
    let now = state.clock.now_ms();
    let rows: Vec<(String, String, i64, i64)> = on_db!(&state.db, |pool| {
        sqlx::query_as(
            "SELECT o.name, o.role, o.created_at, CAST((SELECT COUNT(*) FROM api_tokens t \
             WHERE t.operator = o.name AND t.revoked_at IS NULL AND t.expires_at > $1) AS BIGINT) \
             FROM operators o ORDER BY o.name",
        )
        .bind(now)
        .fetch_all(pool)
        .await?
    });
    Ok(Json(
        rows.into_iter()
            .map(|(name, role, created_at, live_tokens)| OperatorRow {
                name,
                role,
                created_at,
                live_tokens,
            })
            .collect(),
    ))
}

/// `POST /api/v1/operators` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOperator {
    name: String,
    role: String,
    #[serde(default)]
    ttl_ms: Option<Millis>,
}

/// `POST /api/v1/operators` with `{"name", "role", "ttl_ms"?}`: a new operator with a random
/// password and a first API token, both shown once.
pub async fn post_operator(
    State(state): State<AppState>,
    admin: Authed,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<serde_json::Value>> {
    let b: NewOperator = parse_json(body, 4096)?;
    let role = Role::parse(&b.role).map_err(|e| AppError::BadRequest(format!("role: {e}")))?;
    let password = auth::random_hex(12)?;
    let (token, expires_at) =
        auth::create_operator_as(&state, &b.name, &password, role, b.ttl_ms, false).await?;
    let now = state.clock.now_ms();
    let evidence =
        serde_json::json!({"operator": b.name, "role": role, "token_expires_at": expires_at});
    on_db!(&state.db, |pool| {
        audit::record!(
            pool,
            now,
            &admin.name,
            None::<i64>,
            "operator",
            format!("created with role {role}"),
            &evidence
        )
        .await?;
    });
    Ok(Json(serde_json::json!({
        "name": b.name, "role": role, "password": password, "token": token,
        "token_id": token_id(&token), "expires_at": expires_at,
    })))
}

/// `POST /api/v1/operators/{name}/role` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleChange {
    role: String,
    #[serde(default)]
    reason: String,
}

/// Give `name` the role `role`. Refused (409) when it would leave the console without an
/// admin. Takes effect at the operator's next request on every console.
pub async fn set_role(
    state: &AppState,
    actor: &str,
    name: &str,
    role: Role,
    reason: &str,
) -> AppResult<()> {
    let now = state.clock.now_ms();
    let evidence = serde_json::json!({"operator": name, "role": role, "reason": reason});
    enum Outcome {
        Done,
        Unknown,
        LastAdmin,
    }
    let outcome = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query("UPDATE operators SET role = $2 WHERE name = $1")
            .bind(name)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let (admins,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM operators WHERE role = 'admin'")
                .fetch_one(&mut *tx)
                .await?;
        if n != 1 {
            tx.rollback().await?;
            Outcome::Unknown
        } else if admins == 0 {
            tx.rollback().await?;
            Outcome::LastAdmin
        } else {
            sqlx::query("UPDATE fleet SET revision = revision + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            audit::record!(
                &mut *tx,
                now,
                actor,
                None::<i64>,
                "operator",
                format!("role set to {role}"),
                &evidence
            )
            .await?;
            tx.commit().await?;
            Outcome::Done
        }
    });
    match outcome {
        Outcome::Done => {
            state.operator_tokens.clear();
            tracing::warn!(operator = %ringfence_wire::printable(name), %role,
                actor = %ringfence_wire::printable(actor), "operator role changed");
            Ok(())
        }
        Outcome::Unknown => Err(AppError::NotFound(format!("no operator {name:?}"))),
        Outcome::LastAdmin => Err(AppError::Conflict(format!(
            "{name:?} is the last admin; make another operator admin first"
        ))),
    }
}

/// `POST /api/v1/operators/{name}/role` with `{"role", "reason"?}`.
pub async fn post_role(
    State(state): State<AppState>,
    admin: Authed,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<serde_json::Value>> {
    let b: RoleChange = parse_json(body, 4096)?;
    let role = Role::parse(&b.role).map_err(|e| AppError::BadRequest(format!("role: {e}")))?;
    if b.reason.len() > 512 || b.reason.chars().any(ringfence_wire::is_hidden_char) {
        return Err(AppError::BadRequest(
            "reason: at most 512 bytes of text without control characters".into(),
        ));
    }
    set_role(&state, &admin.name, &name, role, &b.reason).await?;
    Ok(Json(serde_json::json!({"name": name, "role": role})))
}

/// The id a token is listed by.
pub fn token_id(token: &str) -> String {
    auth::sha256_hex(token).chars().take(TOKEN_ID_LEN).collect()
}

/// One API token as an admin sees it (never the token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRow {
    pub id: String,
    pub operator: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
    /// `live`, `expired` or `revoked`.
    pub state: String,
}

/// `GET /api/v1/tokens`: every operator API token, newest first.
pub async fn get_tokens(State(state): State<AppState>) -> AppResult<Json<Vec<TokenRow>>> {
    let now = state.clock.now_ms();
    type Row = (String, String, i64, Option<i64>, Option<i64>);
    let rows: Vec<Row> = on_db!(&state.db, |pool| {
        sqlx::query_as(
            "SELECT token_hash, operator, created_at, expires_at, revoked_at FROM api_tokens \
             ORDER BY created_at DESC LIMIT 1000",
        )
        .fetch_all(pool)
        .await?
    });
    Ok(Json(
        rows.into_iter()
            .map(|(hash, operator, created_at, expires_at, revoked_at)| {
                let state = if revoked_at.is_some() {
                    "revoked"
                } else if expires_at.is_none_or(|e| e <= now) {
                    "expired"
                } else {
                    "live"
                };
                TokenRow {
                    id: hash.chars().take(TOKEN_ID_LEN).collect(),
                    operator,
                    created_at,
                    expires_at,
                    revoked_at,
                    state: state.to_owned(),
                }
            })
            .collect(),
    ))
}

/// `POST /api/v1/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    operator: String,
    #[serde(default)]
    ttl_ms: Option<Millis>,
}

/// `POST /api/v1/tokens` with `{"operator", "ttl_ms"?}`: a new API token, shown once.
pub async fn post_token(
    State(state): State<AppState>,
    admin: Authed,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<serde_json::Value>> {
    let b: NewToken = parse_json(body, 4096)?;
    let (token, expires_at) = auth::mint_token(&state, &b.operator, b.ttl_ms).await?;
    let id = token_id(&token);
    let now = state.clock.now_ms();
    let evidence =
        serde_json::json!({"operator": b.operator, "token": id, "expires_at": expires_at});
    on_db!(&state.db, |pool| {
        audit::record!(
            pool,
            now,
            &admin.name,
            None::<i64>,
            "api-token",
            "minted",
            &evidence
        )
        .await?;
    });
    Ok(Json(serde_json::json!({
        "token": token, "id": id, "operator": b.operator, "expires_at": expires_at,
    })))
}

/// Revoke the API token whose id is `id`: refused from now on here, and by every other
/// console at its next revision poll. `Ok(false)` when no live token has that id.
pub async fn revoke_token(
    state: &AppState,
    actor: &str,
    id: &str,
    reason: &str,
) -> AppResult<bool> {
    if id.len() != TOKEN_ID_LEN || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(AppError::BadRequest(format!(
            "a token id is {TOKEN_ID_LEN} hex digits (see `console tokens list`)"
        )));
    }
    let now = state.clock.now_ms();
    let pattern = format!("{}%", id.to_ascii_lowercase());
    let evidence = serde_json::json!({"token": id, "reason": reason});
    let revoked = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $2 WHERE token_hash LIKE $1 AND revoked_at IS NULL",
        )
        .bind(&pattern)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            sqlx::query("UPDATE fleet SET revision = revision + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            audit::record!(
                &mut *tx,
                now,
                actor,
                None::<i64>,
                "api-token",
                "revoked",
                &evidence
            )
            .await?;
        }
        tx.commit().await?;
        n > 0
    });
    if revoked {
        state.operator_tokens.clear();
        tracing::warn!(token = %id, actor = %ringfence_wire::printable(actor), "operator API token revoked");
    }
    Ok(revoked)
}

/// `POST /api/v1/tokens/{id}/revoke` with `{"reason"}`.
pub async fn post_token_revoke(
    State(state): State<AppState>,
    admin: Authed,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<serde_json::Value>> {
    let reason = crate::revoke::reason_of(body)?;
    if revoke_token(&state, &admin.name, &id, &reason).await? {
        Ok(Json(serde_json::json!({"token": id, "revoked": true})))
    } else {
        Err(AppError::NotFound(format!(
            "no live API token {id}, or it is revoked already"
        )))
    }
}
