//! Two-person approval: the actions that can hurt the whole fleet at once wait for a second
//! operator.
//!
//! Held for approval: starting an emergency rollout, setting the emergency flag on a running
//! one, starting a rollout (or setting the first baseline) of content signed to drop most of
//! the rules (`allow-rule-drop` or `allow-empty` in its signed metadata), response orders
//! aimed at more than one host or at a tag, and approving an exception that would silence a
//! rule on the whole fleet ([`crate::exceptions`]). Such a request is stored `pending` and answered
//! 202 with its id; nothing happens until a different operator, whose role may do the action
//! itself, approves it (`POST /api/v1/approvals/{id}/approve`, `ringfence console approve ID`)
//! within [`APPROVAL_TTL_MS`]. Then it runs, as the requester's action, and the audit log has
//! both names. An operator approving their own request, a viewer, a role that may not do the
//! action, an expired or already decided request: each is refused, and the refusal audited.
//! Exactly one approval wins: the claim is one conditional `UPDATE`. The requester, or an
//! operator who could approve it, may reject a pending request instead.

use crate::db::BeginWrite;
use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ringfence_wire::AgentId;
use serde::{Deserialize, Serialize};

use crate::agents::parse_json;
use crate::auth::Authed;
use crate::clock::Millis;
use crate::error::{AppError, AppResult};
use crate::orders::NewOrder;
use crate::roles::{Need, holders};
use crate::rollout::{ActionRequest, StartRequest};
use crate::{AppState, audit, on_db};

/// How long a request waits for its second operator.
pub const APPROVAL_TTL_MS: Millis = 24 * 3_600_000;
/// Most agents one fleet order may name.
pub const MAX_ORDER_AGENTS: usize = 10_000;

/// Kinds of held actions.
pub mod kind {
    pub const ROLLOUT_START: &str = "rollout-start";
    pub const ROLLOUT_EMERGENCY: &str = "rollout-emergency";
    pub const BASELINE: &str = "baseline";
    pub const FLEET_ORDER: &str = "fleet-order";
    /// Approving an exception that silences a rule on the whole fleet.
    pub const EXCEPTION: &str = "exception";
}

/// One held request as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalView {
    pub id: i64,
    pub kind: String,
    pub summary: String,
    /// What the approver's role must allow (`respond`, `content`).
    pub need: String,
    pub requested_by: String,
    pub reason: String,
    /// `pending`, `approved` (it ran), `failed` (approved, and the action was refused when it
    /// ran), `rejected` (by another operator, or withdrawn by its requester), `expired`.
    pub state: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub decided_by: Option<String>,
    pub decided_at: Option<Millis>,
    pub outcome: String,
    pub request: serde_json::Value,
}

type Row = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    Millis,
    Millis,
    Option<String>,
    Option<Millis>,
    String,
    String,
);

const COLS: &str = "id, kind, summary, need, requested_by, reason, state, created_at, expires_at, \
                    decided_by, decided_at, outcome, request";

fn view(r: Row, now: Millis) -> ApprovalView {
    let (
        id,
        kind,
        summary,
        need,
        requested_by,
        reason,
        state,
        created_at,
        expires_at,
        decided_by,
        decided_at,
        outcome,
        request,
    ) = r;
    let state = if state == "pending" && expires_at <= now {
        "expired".to_owned()
    } else {
        state
    };
    ApprovalView {
        id,
        kind,
        summary,
        need,
        requested_by,
        reason,
        state,
        created_at,
        expires_at,
        decided_by,
        decided_at,
        outcome,
        request: serde_json::from_str(&request).unwrap_or(serde_json::Value::Null),
    }
}

/// Hold `request` (an action of `kind`) for a second operator whose role allows `need`.
pub async fn ask(
    state: &AppState,
    requester: &str,
    kind: &str,
    request: &serde_json::Value,
    summary: String,
    need: Need,
    reason: &str,
) -> AppResult<ApprovalView> {
    let now = state.clock.now_ms();
    let expires = now.saturating_add(APPROVAL_TTL_MS);
    let text = serde_json::to_string(request).map_err(AppError::internal)?;
    let row: Row = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let row: Row = sqlx::query_as(&format!(
            "INSERT INTO approvals (kind, request, summary, need, requested_by, reason, state, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8) RETURNING {COLS}"
        ))
        .bind(kind)
        .bind(&text)
        .bind(&summary)
        .bind(need.as_str())
        .bind(requester)
        .bind(reason)
        .bind(now)
        .bind(expires)
        .fetch_one(&mut *tx)
        .await?;
        let evidence = serde_json::json!({"approval": row.0, "kind": kind, "request": request,
            "reason": reason, "expires_at": expires});
        audit::record!(
            &mut *tx,
            now,
            requester,
            None::<i64>,
            "approval",
            format!("requested: {summary}"),
            &evidence
        )
        .await?;
        tx.commit().await?;
        row
    });
    tracing::warn!(approval = row.0, %kind, requester = %ringfence_wire::printable(requester),
        summary = %ringfence_wire::printable(&summary), "action held for a second operator's approval");
    Ok(view(row, now))
}

/// The 202 answer for a held request.
pub fn held(v: ApprovalView, extra: Option<(&str, serde_json::Value)>) -> Response {
    let mut body = serde_json::json!({
        "pending_approval": v,
        "message": format!(
            "held for a second operator's approval ({}): `ringfence console approve {}` by another operator, within 24h",
            holders(Need::parse(&v.need).unwrap_or(Need::Admin)),
            v.id
        ),
    });
    if let Some((k, value)) = extra {
        body[k] = value;
    }
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// Held requests, newest first; `pending_only` leaves out decided and expired ones.
pub async fn list(
    state: &AppState,
    pending_only: bool,
    limit: i64,
) -> AppResult<Vec<ApprovalView>> {
    let now = state.clock.now_ms();
    let rows: Vec<Row> = on_db!(&state.db, |pool| {
        sqlx::query_as(&format!(
            "SELECT {COLS} FROM approvals WHERE ($1 = 0 OR (state = 'pending' AND expires_at > $2)) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(i64::from(pending_only))
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await?
    });
    Ok(rows.into_iter().map(|r| view(r, now)).collect())
}

#[derive(Debug, Deserialize)]
pub struct ApprovalsQuery {
    #[serde(default)]
    pub all: bool,
    pub limit: Option<i64>,
}

/// `GET /api/v1/approvals[?all=true]`: pending requests (or all), newest first.
pub async fn get_approvals(
    State(state): State<AppState>,
    Query(q): Query<ApprovalsQuery>,
) -> AppResult<Json<Vec<ApprovalView>>> {
    Ok(Json(
        list(&state, !q.all, q.limit.unwrap_or(100).clamp(1, 1000)).await?,
    ))
}

/// Audit a refused approval and return the error for it.
async fn refuse(state: &AppState, approver: &str, id: i64, err: AppError) -> AppError {
    let now = state.clock.now_ms();
    let evidence = serde_json::json!({"approval": id, "reason": err.to_string()});
    let logged: AppResult<()> = async {
        on_db!(&state.db, |pool| {
            audit::record!(
                pool,
                now,
                approver,
                None::<i64>,
                "approval",
                format!("refused: {err}"),
                &evidence
            )
            .await?;
        });
        Ok(())
    }
    .await;
    tracing::warn!(approval = id, approver = %ringfence_wire::printable(approver), error = %err,
        "approval refused");
    match logged {
        Ok(()) => err,
        Err(e) => e,
    }
}

/// Approve request `id` as `approver` and run it. Returns the approval and what the action
/// answered.
pub async fn approve(state: &AppState, approver: &Authed, id: i64) -> AppResult<serde_json::Value> {
    let now = state.clock.now_ms();
    let row: Option<Row> = on_db!(&state.db, |pool| {
        sqlx::query_as(&format!("SELECT {COLS} FROM approvals WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?
    });
    let Some(row) = row else {
        return Err(AppError::NotFound(format!("no approval request {id}")));
    };
    let v = view(row, now);
    if v.state != "pending" {
        let e = AppError::Conflict(format!("approval request {id} is {}", v.state));
        return Err(refuse(state, &approver.name, id, e).await);
    }
    if v.requested_by == approver.name {
        let e = AppError::Forbidden(format!(
            "{} requested {id}; a different operator must approve it",
            approver.name
        ));
        return Err(refuse(state, &approver.name, id, e).await);
    }
    let need = Need::parse(&v.need).unwrap_or(Need::Admin);
    if !approver.role.allows(need) {
        let e = AppError::Forbidden(format!(
            "{} is {}; request {id} ({}) is approved by {}",
            approver.name,
            approver.role,
            v.kind,
            holders(need)
        ));
        return Err(refuse(state, &approver.name, id, e).await);
    }
    let evidence = serde_json::json!({"approval": id, "kind": v.kind, "requested_by": v.requested_by,
        "approved_by": approver.name, "request": v.request, "reason": v.reason});
    let claimed = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query(
            "UPDATE approvals SET state = 'approved', decided_by = $2, decided_at = $3 \
             WHERE id = $1 AND state = 'pending' AND expires_at > $3 AND requested_by <> $2",
        )
        .bind(id)
        .bind(&approver.name)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            audit::record!(
                &mut *tx,
                now,
                &approver.name,
                None::<i64>,
                "approval",
                format!("approved {}'s request {id}: {}", v.requested_by, v.summary),
                &evidence
            )
            .await?;
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        n == 1
    });
    if !claimed {
        return Err(AppError::Conflict(format!(
            "approval request {id} was decided meanwhile, or expired"
        )));
    }
    tracing::warn!(approval = id, kind = %v.kind,
        requester = %ringfence_wire::printable(&v.requested_by),
        approver = %ringfence_wire::printable(&approver.name), "approved: running the held action");
    let ran = run(state, &v, &approver.name).await;
    let (outcome_state, outcome) = match &ran {
        Ok(_) => ("approved", "ran".to_owned()),
        Err(e) => ("failed", e.to_string()),
    };
    on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query("UPDATE approvals SET state = $2, outcome = $3 WHERE id = $1")
            .bind(id)
            .bind(outcome_state)
            .bind(&outcome)
            .execute(&mut *tx)
            .await?;
        if ran.is_err() {
            audit::record!(
                &mut *tx,
                now,
                &approver.name,
                None::<i64>,
                "approval",
                format!("approved request {id} failed when it ran: {outcome}"),
                &evidence
            )
            .await?;
        }
        tx.commit().await?;
    });
    let result = ran?;
    let mut v = v;
    v.state = "approved".into();
    v.decided_by = Some(approver.name.clone());
    v.decided_at = Some(now);
    v.outcome = outcome;
    Ok(serde_json::json!({"approval": v, "result": result}))
}

/// Run a held action as its requester (an exception is approved by both).
async fn run(state: &AppState, v: &ApprovalView, approver: &str) -> AppResult<serde_json::Value> {
    let bad = |e: serde_json::Error| AppError::internal(format!("approval {}: {e}", v.id));
    let actor = v.requested_by.as_str();
    let value = match v.kind.as_str() {
        kind::ROLLOUT_START => {
            let req: StartRequest = serde_json::from_value(v.request.clone()).map_err(bad)?;
            serde_json::to_value(crate::rollout::start(state, actor, &req).await?)
        }
        kind::ROLLOUT_EMERGENCY => {
            let (rollout, req): (i64, ActionRequest) =
                serde_json::from_value(v.request.clone()).map_err(bad)?;
            serde_json::to_value(
                crate::rollout::act(state, actor, rollout, "emergency", &req).await?,
            )
        }
        kind::BASELINE => {
            let version: i64 = serde_json::from_value(v.request["version"].clone()).map_err(bad)?;
            crate::content::set_initial_baseline(
                state,
                actor,
                crate::rollout::payload::Kind::Content,
                version,
            )
            .await?;
            Ok(serde_json::json!({"baseline": version}))
        }
        kind::FLEET_ORDER => {
            let o: FleetOrder = serde_json::from_value(v.request.clone()).map_err(bad)?;
            serde_json::to_value(place_fleet_order(state, actor, &o).await?)
        }
        kind::EXCEPTION => {
            let id: i64 = serde_json::from_value(v.request["exception"].clone()).map_err(bad)?;
            let both = format!("{actor} and {approver}");
            serde_json::to_value(crate::exceptions::approve_now(state, &both, id).await?)
        }
        other => {
            return Err(AppError::internal(format!(
                "approval {}: unknown kind {other:?}",
                v.id
            )));
        }
    };
    value.map_err(AppError::internal)
}

/// `POST /api/v1/approvals/{id}/approve`.
pub async fn post_approve(
    State(state): State<AppState>,
    approver: Authed,
    Path(id): Path<i64>,
) -> AppResult<Json<serde_json::Value>> {
    Ok(Json(approve(&state, &approver, id).await?))
}

/// Reject (or, as its requester, withdraw) pending request `id`: it will never run. The
/// requester, or an operator whose role may approve it.
pub async fn reject(
    state: &AppState,
    who: &Authed,
    id: i64,
    reason: &str,
) -> AppResult<ApprovalView> {
    let now = state.clock.now_ms();
    let row: Option<Row> = on_db!(&state.db, |pool| {
        sqlx::query_as(&format!("SELECT {COLS} FROM approvals WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?
    });
    let Some(row) = row else {
        return Err(AppError::NotFound(format!("no approval request {id}")));
    };
    let v = view(row, now);
    if v.state != "pending" {
        return Err(AppError::Conflict(format!(
            "approval request {id} is {}",
            v.state
        )));
    }
    let need = Need::parse(&v.need).unwrap_or(Need::Admin);
    if v.requested_by != who.name && !who.role.allows(need) {
        let e = AppError::Forbidden(format!(
            "{} is {}; request {id} ({}) is rejected by its requester or by {}",
            who.name,
            who.role,
            v.kind,
            holders(need)
        ));
        return Err(refuse(state, &who.name, id, e).await);
    }
    let evidence = serde_json::json!({"approval": id, "kind": v.kind, "requested_by": v.requested_by,
        "rejected_by": who.name, "reason": reason});
    let done = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query(
            "UPDATE approvals SET state = 'rejected', decided_by = $2, decided_at = $3, outcome = $4 \
             WHERE id = $1 AND state = 'pending'",
        )
        .bind(id)
        .bind(&who.name)
        .bind(now)
        .bind(reason)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            audit::record!(
                &mut *tx,
                now,
                &who.name,
                None::<i64>,
                "approval",
                format!("rejected {}'s request {id}: {}", v.requested_by, v.summary),
                &evidence
            )
            .await?;
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        n == 1
    });
    if !done {
        return Err(AppError::Conflict(format!(
            "approval request {id} was decided meanwhile"
        )));
    }
    let mut v = v;
    v.state = "rejected".into();
    v.decided_by = Some(who.name.clone());
    v.decided_at = Some(now);
    v.outcome = reason.to_owned();
    Ok(v)
}

/// `POST /api/v1/approvals/{id}/reject` with `{"reason"}`.
pub async fn post_reject(
    State(state): State<AppState>,
    who: Authed,
    Path(id): Path<i64>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<ApprovalView>> {
    let reason = crate::revoke::reason_of(body)?;
    Ok(Json(reject(&state, &who, id, &reason).await?))
}

/// Why starting this rollout needs a second operator, if it does.
pub async fn start_needs_approval(
    state: &AppState,
    req: &StartRequest,
) -> AppResult<Option<String>> {
    if req.emergency {
        return Ok(Some("emergency: maintenance windows overridden".into()));
    }
    Ok(rule_drop_of(state, req.version)
        .await?
        .map(|why| format!("its content is signed to drop most rules: {why}")))
}

/// The signed reason published content version `version` may drop most of the rules agents
/// run (its `allow-rule-drop` or `allow-empty` metadata), if it has one.
pub async fn rule_drop_of(state: &AppState, version: i64) -> AppResult<Option<String>> {
    let path = state
        .config
        .content_dir
        .join(crate::content::file_name(version));
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok(crate::content::signed_rule_drop(&bytes)),
        // Not published here: the rollout start refuses it by itself.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AppError::internal(format!("{}: {e}", path.display()))),
    }
}

/// A response order for several agents, or for every agent with a tag.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetOrder {
    pub action: serde_json::Value,
    pub reason: String,
    #[serde(default)]
    pub agents: Vec<String>,
    /// `key=value`: `region`, `industry`, `environment` or a custom tag.
    #[serde(default)]
    pub tag: Option<String>,
}

impl FleetOrder {
    fn order(&self) -> AppResult<NewOrder> {
        let body = serde_json::json!({"action": self.action, "reason": self.reason});
        NewOrder::parse(&serde_json::to_vec(&body).map_err(AppError::internal)?)
    }

    fn check(&self) -> AppResult<NewOrder> {
        let order = self.order()?;
        if self.agents.len() > MAX_ORDER_AGENTS {
            return Err(AppError::BadRequest(format!(
                "agents: more than {MAX_ORDER_AGENTS}"
            )));
        }
        for a in &self.agents {
            AgentId::try_from(a.clone()).map_err(|_| {
                AppError::BadRequest(format!(
                    "agents: {:?} is not an agent id",
                    ringfence_wire::printable(&a.chars().take(64).collect::<String>())
                ))
            })?;
        }
        if let Some(tag) = &self.tag {
            let ok = tag.len() <= 256
                && !tag.chars().any(ringfence_wire::is_hidden_char)
                && tag
                    .split_once('=')
                    .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty());
            if !ok {
                return Err(AppError::BadRequest(
                    "tag: key=value, at most 256 bytes of text".into(),
                ));
            }
        }
        if self.agents.is_empty() && self.tag.is_none() {
            return Err(AppError::BadRequest(
                "name the agents (agents: [ids]) or a tag (tag: key=value)".into(),
            ));
        }
        Ok(order)
    }

    /// Whether it may reach more than one host.
    fn is_fleet_wide(&self) -> bool {
        self.tag.is_some() || self.agents.len() > 1
    }
}

/// The agents a fleet order reaches now: those it names and, with a tag, every agent not
/// revoked whose region, industry, environment or custom tag has that value.
async fn targets(state: &AppState, o: &FleetOrder) -> AppResult<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(o.agents.len());
    for agent in &o.agents {
        let known: Option<(String,)> = on_db!(&state.db, |pool| {
            sqlx::query_as("SELECT id FROM agents WHERE id = $1 AND revoked_at IS NULL")
                .bind(agent)
                .fetch_optional(pool)
                .await?
        });
        if known.is_none() {
            return Err(AppError::NotFound(format!(
                "no agent {agent}, or it is revoked"
            )));
        }
        out.push(agent.clone());
    }
    if let Some((key, value)) = o.tag.as_deref().and_then(|t| t.split_once('=')) {
        type Tagged = (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
        );
        let rows: Vec<Tagged> = on_db!(&state.db, |pool| {
            sqlx::query_as(
                "SELECT s.agent_id, s.region, s.industry, s.environment, s.custom_tags FROM agent_state s \
                 JOIN agents a ON a.id = s.agent_id WHERE a.revoked_at IS NULL",
            )
            .fetch_all(pool)
            .await?
        });
        for (id, region, industry, environment, custom) in rows {
            let hit = match key {
                "region" => region.as_deref() == Some(value),
                "industry" => industry.as_deref() == Some(value),
                "environment" => environment.as_deref() == Some(value),
                _ => {
                    serde_json::from_str::<BTreeMap<String, String>>(&custom)
                        .ok()
                        .and_then(|m| m.get(key).cloned())
                        .as_deref()
                        == Some(value)
                }
            };
            if hit {
                out.push(id);
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Place a fleet order: one order per agent it reaches.
pub async fn place_fleet_order(
    state: &AppState,
    actor: &str,
    o: &FleetOrder,
) -> AppResult<Vec<crate::orders::OrderView>> {
    let order = o.check()?;
    let agents = targets(state, o).await?;
    if agents.is_empty() {
        return Err(AppError::NotFound("the order reaches no agent".into()));
    }
    let mut placed = Vec::with_capacity(agents.len());
    for agent in &agents {
        placed.push(crate::orders::create(state, actor, agent, &order).await?);
    }
    Ok(placed)
}

/// `POST /api/v1/orders` with `{"action", "reason", "agents": [ids], "tag": "key=value"}`:
/// one agent is ordered at once; more than one, or a tag, waits for a second operator.
pub async fn post_fleet_order(
    State(state): State<AppState>,
    op: Authed,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Response> {
    let o: FleetOrder = parse_json(body, 1024 * 1024)?;
    o.check()?;
    // Every named agent must exist now (a tag is resolved when the order is approved).
    targets(
        &state,
        &FleetOrder {
            tag: None,
            ..o.clone()
        },
    )
    .await?;
    if !o.is_fleet_wide() {
        let placed = place_fleet_order(&state, &op.name, &o).await?;
        return Ok(Json(serde_json::json!({"orders": placed})).into_response());
    }
    let reach = match &o.tag {
        Some(tag) => format!("every agent tagged {tag}"),
        None => format!("{} agents", o.agents.len()),
    };
    let summary = format!("order {} on {reach}", o.action);
    let request = serde_json::to_value(&o).map_err(AppError::internal)?;
    let v = ask(
        &state,
        &op.name,
        kind::FLEET_ORDER,
        &request,
        summary,
        Need::Respond,
        &o.reason,
    )
    .await?;
    Ok(held(v, None))
}
