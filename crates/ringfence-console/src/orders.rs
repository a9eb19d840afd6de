//! Response actions on demand: an operator orders a kill, quarantine, restore, block or unblock
//! for one agent; the agent's next check-in carries it; a later check-in carries the result.
//!
//! An order is a `response_orders` row: `pending` until a check-in response carries it,
//! `delivered` after, then `done`, `dry-run`, `refused` or `failed` as the agent reports. An
//! order is delivered once: if the response carrying it is lost, or the agent never reports,
//! it stays `delivered` (the operator sees that and may order again). Every order and every
//! result is written to the audit log.
//!
//! The check-in path stays cheap: each console keeps in memory the set of agents that have
//! pending orders ([`PendingOrders`]), so a check-in of an agent without orders costs no read
//! at all, and one with orders costs one indexed `UPDATE … RETURNING`. A new order bumps
//! `fleet.orders_revision` in its transaction; every console polls it along with
//! `fleet.revision` (the same single-row read a second) and reloads the set when it moved, so
//! an order placed through one console is delivered by any of them within about a second.

use crate::db::BeginWrite;
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use ringfence_wire::{AgentId, Label, OrderAction, OrderBody, OrderResults, SignedOrders, limits};
use serde::{Deserialize, Serialize};

use crate::auth::Operator;
use crate::clock::Millis;
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::{AppState, audit, on_db};

/// Order states as stored.
pub mod state {
    pub const PENDING: &str = "pending";
    pub const DELIVERED: &str = "delivered";
}

/// Agents with pending orders, as this console last knew them. A false positive costs one
/// indexed query at that agent's next check-in; a false negative lasts until the next poll
/// of `fleet.orders_revision` (about a second).
#[derive(Debug, Default)]
pub struct PendingOrders {
    /// Agent id → generation of the last insertion, so that a check-in that drained the
    /// agent's orders does not forget an order placed meanwhile.
    agents: RwLock<HashMap<String, u64>>,
    generation: AtomicU64,
    /// `fleet.orders_revision` the set was loaded at.
    revision: AtomicU64,
}

impl PendingOrders {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, u64>> {
        self.agents.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, u64>> {
        self.agents.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The generation at which `agent` was marked, if it has pending orders.
    pub fn get(&self, agent: &str) -> Option<u64> {
        self.read().get(agent).copied()
    }

    /// Mark `agent` as having pending orders.
    pub fn mark(&self, agent: &str) {
        let g = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.write().insert(agent.to_owned(), g);
    }

    /// Forget `agent` unless it was marked again after `generation`.
    pub fn clear(&self, agent: &str, generation: u64) {
        let mut m = self.write();
        if m.get(agent) == Some(&generation) {
            m.remove(agent);
        }
    }

    /// The `fleet.orders_revision` last loaded.
    pub fn revision(&self) -> i64 {
        i64::try_from(self.revision.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
    }

    /// Reload from the database. The revision is read before the set, so an order committed
    /// in between is seen at the next poll.
    pub async fn reload(&self, db: &Db) -> AppResult<()> {
        let (revision, agents) = on_db!(db, |pool| {
            let (rev,): (i64,) = sqlx::query_as("SELECT orders_revision FROM fleet WHERE id = 1")
                .fetch_one(pool)
                .await?;
            let agents: Vec<(String,)> = sqlx::query_as(
                "SELECT DISTINCT agent_id FROM response_orders WHERE state = 'pending'",
            )
            .fetch_all(pool)
            .await?;
            (rev, agents)
        });
        let g = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self.write() = agents.into_iter().map(|(a,)| (a, g)).collect();
        self.revision
            .store(revision.unsigned_abs(), Ordering::Relaxed);
        Ok(())
    }
}

/// One order as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderView {
    pub id: i64,
    pub agent_id: String,
    pub action: serde_json::Value,
    pub requested_by: String,
    pub reason: String,
    pub state: String,
    pub detail: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

type OrderRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    Millis,
    Millis,
);

const ORDER_COLS: &str =
    "id, agent_id, action, requested_by, reason, state, detail, created_at, updated_at";

fn view(r: OrderRow) -> OrderView {
    let (id, agent_id, action, requested_by, reason, state, detail, created_at, updated_at) = r;
    OrderView {
        id,
        agent_id,
        action: serde_json::from_str(&action).unwrap_or(serde_json::Value::String(action)),
        requested_by,
        reason,
        state,
        detail,
        created_at,
        updated_at,
    }
}

/// `POST /api/v1/agents/{agent_id}/orders` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrderBody {
    action: serde_json::Value,
    reason: String,
}

/// A checked order request.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub action: OrderAction,
    pub reason: String,
}

impl NewOrder {
    /// Parse a request body; every refusal names the field.
    pub fn parse(body: &[u8]) -> AppResult<NewOrder> {
        let raw: NewOrderBody = serde_json::from_slice(body)
            .map_err(|e| AppError::BadRequest(format!("order body: {e}")))?;
        let action: OrderAction = serde_json::from_value(raw.action)
            .map_err(|e| AppError::BadRequest(format!("action: {e}")))?;
        let reason = raw.reason.trim().to_owned();
        if reason.is_empty() {
            return Err(AppError::BadRequest("reason: must not be empty".into()));
        }
        if reason.len() > limits::ORDER_TEXT_BYTES {
            return Err(AppError::BadRequest(format!(
                "reason: longer than {} bytes ({})",
                limits::ORDER_TEXT_BYTES,
                reason.len()
            )));
        }
        if reason.chars().any(|c| c.is_control() && c != '\n') {
            return Err(AppError::BadRequest(
                "reason: control characters other than newline".into(),
            ));
        }
        Ok(NewOrder { action, reason })
    }
}

/// Place an order for `agent`: stored `pending`, audited, delivered at its next check-in.
pub async fn create(
    state: &AppState,
    actor: &str,
    agent: &str,
    order: &NewOrder,
) -> AppResult<OrderView> {
    Label::try_from(actor)
        .map_err(|e| AppError::BadRequest(format!("operator name {actor:?}: {e}")))?;
    let now = state.clock.now_ms();
    let action = serde_json::to_string(&order.action).map_err(AppError::internal)?;
    let row: Option<OrderRow> = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let known: Option<(String,)> = sqlx::query_as("SELECT id FROM agents WHERE id = $1")
            .bind(agent)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            tx.rollback().await?;
            None
        } else {
            let row: OrderRow = sqlx::query_as(&format!(
                "INSERT INTO response_orders (agent_id, action, requested_by, reason, state, detail, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'pending', '', $5, $5) RETURNING {ORDER_COLS}"
            ))
            .bind(agent)
            .bind(&action)
            .bind(actor)
            .bind(&order.reason)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("UPDATE fleet SET orders_revision = orders_revision + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            let evidence = serde_json::json!({
                "order": row.0, "agent": agent, "action": &order.action, "reason": &order.reason,
            });
            audit::record!(
                &mut *tx,
                now,
                actor,
                None::<i64>,
                "response-order",
                "ordered",
                &evidence
            )
            .await?;
            tx.commit().await?;
            Some(row)
        }
    });
    let row = row.ok_or_else(|| AppError::NotFound(format!("no agent {agent}")))?;
    state.orders.mark(agent);
    Ok(view(row))
}

/// Orders, newest first, optionally of one agent.
pub async fn list(state: &AppState, agent: Option<&str>, limit: i64) -> AppResult<Vec<OrderView>> {
    let rows: Vec<OrderRow> = on_db!(&state.db, |pool| {
        sqlx::query_as(&format!(
            "SELECT {ORDER_COLS} FROM response_orders WHERE ($1 IS NULL OR agent_id = $1) \
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(agent)
        .bind(limit)
        .fetch_all(pool)
        .await?
    });
    Ok(rows.into_iter().map(view).collect())
}

/// How long a signed order stays valid after it was placed: an agent that comes back later
/// refuses it, and the operator orders again if it still matters.
pub const ORDER_TTL_SECS: u64 = 3600;

/// The check-in path: store the results `agent` reported (each audited), then hand out its
/// pending orders, each signed with the order key for this agent and marked delivered. Costs
/// nothing when there are neither.
pub async fn on_checkin(
    state: &AppState,
    agent: &AgentId,
    results: &OrderResults,
    now: Millis,
) -> AppResult<SignedOrders> {
    if !results.is_empty() {
        store_results(state, agent, results, now).await?;
    }
    let Some(generation) = state.orders.get(agent.as_str()) else {
        return Ok(SignedOrders::default());
    };
    let max = limits::ORDERS;
    let rows: Vec<(i64, String, String, String, Millis)> = on_db!(&state.db, |pool| {
        sqlx::query_as(
            "UPDATE response_orders SET state = 'delivered', updated_at = $2 WHERE id IN \
             (SELECT id FROM response_orders WHERE agent_id = $1 AND state = 'pending' ORDER BY id LIMIT $3) \
             RETURNING id, action, requested_by, reason, created_at",
        )
        .bind(agent.as_str())
        .bind(now)
        .bind(i64::try_from(max).unwrap_or(32))
        .fetch_all(pool)
        .await?
    });
    if rows.len() < max {
        state.orders.clear(agent.as_str(), generation);
    }
    let mut orders = Vec::with_capacity(rows.len());
    // RETURNING gives no order; the agent takes ids in increasing order.
    let mut rows = rows;
    rows.sort_by_key(|r| r.0);
    for (id, action, requested_by, reason, created_at) in rows {
        // Stored rows were checked on the way in; one that no longer parses (a newer console's
        // action kind) is reported failed rather than sent.
        let issued_at = u64::try_from(created_at / 1000).unwrap_or(0);
        let parsed = serde_json::from_str::<OrderAction>(&action)
            .map_err(|e| e.to_string())
            .and_then(|action| {
                state.order_key.sign(&OrderBody {
                    agent_id: agent.clone(),
                    id: id.unsigned_abs(),
                    issued_at,
                    not_after: issued_at.saturating_add(ORDER_TTL_SECS),
                    action,
                    requested_by: Label::try_from(requested_by).map_err(|e| e.to_string())?,
                    reason,
                })
            });
        match parsed {
            Ok(o) => orders.push(o),
            Err(e) => {
                tracing::error!(order = id, error = %e, "stored response order unreadable");
                on_db!(&state.db, |pool| {
                    sqlx::query(
                        "UPDATE response_orders SET state = 'failed', detail = $2 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(format!("console: stored order unreadable: {e}"))
                    .execute(pool)
                    .await?;
                });
            }
        }
    }
    // rows.len() <= limits::ORDERS, so this cannot fail.
    SignedOrders::try_from(orders).map_err(AppError::internal)
}

/// Apply reported results to delivered orders of `agent`. A result sent again (its check-in
/// response was lost) or for an order of another agent changes nothing.
async fn store_results(
    state: &AppState,
    agent: &AgentId,
    results: &OrderResults,
    now: Millis,
) -> AppResult<()> {
    let actor = format!("agent:{agent}");
    on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        for r in results.iter() {
            let Ok(id) = i64::try_from(r.id) else {
                continue;
            };
            let updated = sqlx::query(
                "UPDATE response_orders SET state = $3, detail = $4, updated_at = $5 \
                 WHERE id = $1 AND agent_id = $2 AND state = 'delivered'",
            )
            .bind(id)
            .bind(agent.as_str())
            .bind(r.status.as_str())
            .bind(&r.detail)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 1 {
                let evidence =
                    serde_json::json!({"order": id, "agent": agent, "detail": &r.detail});
                audit::record!(
                    &mut *tx,
                    now,
                    &actor,
                    None::<i64>,
                    "response-order",
                    r.status.as_str(),
                    &evidence
                )
                .await?;
            }
        }
        tx.commit().await?;
    });
    Ok(())
}

/// `POST /api/v1/agents/{agent_id}/orders`.
pub async fn post_order(
    State(state): State<AppState>,
    op: Operator,
    Path(agent): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<OrderView>> {
    let body = crate::agents::body_within(body, 16 * 1024)?;
    let agent = AgentId::try_from(agent.clone())
        .map_err(|_| AppError::NotFound(format!("no agent {agent}")))?;
    let order = NewOrder::parse(&body)?;
    Ok(Json(create(&state, &op.0, agent.as_str(), &order).await?))
}

#[derive(Debug, Deserialize)]
pub struct OrdersQuery {
    pub agent: Option<String>,
    pub limit: Option<i64>,
}

/// `GET /api/v1/orders?agent=ID&limit=N`.
pub async fn get_orders(
    State(state): State<AppState>,
    _op: Operator,
    Query(q): Query<OrdersQuery>,
) -> AppResult<Json<Vec<OrderView>>> {
    Ok(Json(
        list(
            &state,
            q.agent.as_deref(),
            q.limit.unwrap_or(200).clamp(1, 5000),
        )
        .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_bodies_are_refused_with_the_field_named() {
        let ok = NewOrder::parse(
            br#"{"action": {"kind": "kill", "pid": 42, "tree": true}, "reason": "ir-7"}"#,
        )
        .unwrap();
        assert_eq!(ok.action.name(), "kill_tree");
        for (body, needle) in [
            (
                &br#"{"action": {"kind": "kill", "pid": 0}, "reason": "x"}"#[..],
                "action: pid",
            ),
            (
                br#"{"action": {"kind": "nuke"}, "reason": "x"}"#,
                "action: unknown variant",
            ),
            (
                br#"{"action": {"kind": "kill", "pid": 1}, "reason": " "}"#,
                "reason",
            ),
            (br#"{"action": {"kind": "kill", "pid": 1}}"#, "reason"),
            (
                br#"{"action": {"kind": "kill", "pid": 1}, "reason": "x", "extra": 1}"#,
                "extra",
            ),
            (b"not json", "order body"),
        ] {
            let e = NewOrder::parse(body).unwrap_err();
            assert!(matches!(e, AppError::BadRequest(_)), "{e}");
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
        }
    }

    #[test]
    fn a_drained_agent_is_forgotten_unless_marked_again() {
        let p = PendingOrders::default();
        p.mark("a");
        let g = p.get("a").unwrap();
        p.mark("a");
        p.clear("a", g);
        assert!(p.get("a").is_some(), "an order placed meanwhile is kept");
        let g = p.get("a").unwrap();
        p.clear("a", g);
        assert!(p.get("a").is_none());
    }
}
