//! The rollout HTTP handlers.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};

use crate::AppState;
use crate::agents::parse_json;
use crate::auth::Operator;
use crate::error::{AppError, AppResult};

use super::*;

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
            match &req.agent_version {
                Some(v) => format!("start a rollout of agent release {v} ({why})"),
                None => format!("start a rollout of content v{} ({why})", req.version),
            },
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
