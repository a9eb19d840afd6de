//! Each host's asset inventory on the console: taking the agent's uploads (whole, or a delta
//! applied only to the inventory it was made from), and answering the operator's questions,
//! "what does this host have" and "which hosts run this package, below or from this version".
//!
//! The whole inventory is kept as the agent sent it, with its digest (`host_inventory`); its
//! packages are kept one per row (`host_packages`) so a package question is an index lookup
//! by name. Versions compare the way dpkg compares them (epoch, upstream, Debian revision,
//! `~` before anything), through the `debversion` crate.
//!
//! An agent is a possible liar: the body is bounded and parsed before use
//! ([`InventoryUpload::parse`]), a whole inventory must have the digest it announces, a delta
//! must name the digest the console holds and produce the digest it announces (else 409: the
//! agent sends the whole inventory), and uploads draw on a per-agent byte quota
//! ([`crate::quota::inventory`]), so an agent cannot make the console rewrite its rows
//! without end.

use crate::db::BeginWrite;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use ringfence_wire::inventory::{
    Inventory, InventoryAccepted, InventoryBody, InventoryUpload, apply_delta,
};
use ringfence_wire::{PROTOCOL, limits};
use serde::{Deserialize, Serialize};

use crate::agents::{AgentAuth, body_within};
use crate::auth::Operator;
use crate::error::{AppError, AppResult};
use crate::{AppState, on_db};

/// Most hosts one package question answers with.
pub const MAX_ROWS: i64 = 100_000;

/// `POST /api/v1/agents/inventory`.
pub async fn post_inventory(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<InventoryAccepted>> {
    let body = body_within(body, limits::INVENTORY_BYTES)?;
    crate::quota::inventory(&state, &agent, body.len())?;
    let upload = InventoryUpload::parse(&body).map_err(AppError::Unprocessable)?;
    if upload.protocol != PROTOCOL {
        return Err(AppError::Unprocessable(format!(
            "protocol {} is not spoken here (this console speaks {PROTOCOL})",
            upload.protocol
        )));
    }
    if upload.agent_id != agent {
        return Err(AppError::Forbidden(
            "the inventory is for another agent than the credential".into(),
        ));
    }
    let now = state.clock.now_ms();
    let agent = agent.as_str();
    let sha = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let held: Option<(String, String)> =
            sqlx::query_as("SELECT sha256, body FROM host_inventory WHERE agent_id = $1")
                .bind(agent)
                .fetch_optional(&mut *tx)
                .await?;
        let inventory = match upload.body {
            InventoryBody::Full { mut inventory } => {
                inventory.canonicalize();
                let got = inventory.sha256();
                if got != upload.sha256 {
                    return Err(AppError::Unprocessable(format!(
                        "the inventory's digest is {got}, the upload announced {}",
                        upload.sha256
                    )));
                }
                inventory
            }
            InventoryBody::Delta { base_sha256, delta } => {
                let Some((held_sha, held_body)) = held else {
                    return Err(AppError::Conflict(
                        "no inventory held for this agent: send it whole".into(),
                    ));
                };
                let held: Inventory = serde_json::from_str(&held_body)
                    .map_err(|e| AppError::internal(format!("stored inventory of {agent}: {e}")))?;
                apply_delta(&held, &held_sha, &base_sha256, &delta, &upload.sha256)
                    .map_err(|e| AppError::Conflict(format!("{e}: send it whole")))?
            }
        };
        let text = serde_json::to_string(&inventory).map_err(AppError::internal)?;
        let items = i64::try_from(inventory.len()).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO host_inventory (agent_id, sha256, body, items, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (agent_id) DO UPDATE SET \
             sha256 = excluded.sha256, body = excluded.body, items = excluded.items, \
             updated_at = excluded.updated_at",
        )
        .bind(agent)
        .bind(&upload.sha256)
        .bind(&text)
        .bind(items)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM host_packages WHERE agent_id = $1")
            .bind(agent)
            .execute(&mut *tx)
            .await?;
        for chunk in inventory.packages.chunks(500) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO host_packages (agent_id, name, version, architecture) ",
            );
            q.push_values(chunk, |mut b, p| {
                b.push_bind(agent)
                    .push_bind(&p.name)
                    .push_bind(&p.version)
                    .push_bind(&p.architecture);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok::<_, AppError>(upload.sha256)
    })?;
    Ok(Json(InventoryAccepted { sha256: sha }))
}

/// `GET /api/v1/agents/{id}/inventory`: the whole inventory the console holds for a host.
#[derive(Debug, Serialize, Deserialize)]
pub struct HostInventory {
    pub agent_id: String,
    pub sha256: String,
    pub items: i64,
    pub updated_at: i64,
    pub inventory: Inventory,
}

/// The inventory held for `agent`, if any.
pub async fn host(state: &AppState, agent: &str) -> AppResult<Option<HostInventory>> {
    let row: Option<(String, String, i64, i64)> = on_db!(&state.db, |pool| {
        sqlx::query_as(
            "SELECT sha256, body, items, updated_at FROM host_inventory WHERE agent_id = $1",
        )
        .bind(agent)
        .fetch_optional(pool)
        .await
    })?;
    row.map(|(sha256, body, items, updated_at)| {
        let inventory = serde_json::from_str(&body)
            .map_err(|e| AppError::internal(format!("stored inventory of {agent}: {e}")))?;
        Ok(HostInventory {
            agent_id: agent.to_owned(),
            sha256,
            items,
            updated_at,
            inventory,
        })
    })
    .transpose()
}

pub async fn get_host_inventory(
    State(state): State<AppState>,
    _op: Operator,
    Path(agent): Path<String>,
) -> AppResult<Json<HostInventory>> {
    host(&state, &agent)
        .await?
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("no inventory for agent {agent}")))
}

/// `GET /api/v1/inventory/packages?name=openssh-server&below=1:9.2p1-2+deb12u3`.
#[derive(Debug, Default, Deserialize)]
pub struct PackageQuery {
    pub name: String,
    /// Only versions lower than this (dpkg order).
    pub below: Option<String>,
    /// Only versions at or above this.
    pub at_least: Option<String>,
    pub limit: Option<i64>,
}

/// One host that has the package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageHost {
    pub agent_id: String,
    pub hostname: String,
    pub version: String,
    pub architecture: String,
}

fn version(param: &str, text: &str) -> AppResult<debversion::Version> {
    text.parse()
        .map_err(|e| AppError::BadRequest(format!("{param}={text:?} is not a Debian version: {e}")))
}

/// The hosts that have package `q.name`, within the version bounds, by host name.
pub async fn package_hosts(state: &AppState, q: &PackageQuery) -> AppResult<Vec<PackageHost>> {
    if q.name.is_empty() || q.name.len() > 256 {
        return Err(AppError::BadRequest(
            "name must be a package name of 1..=256 bytes".into(),
        ));
    }
    let below = q
        .below
        .as_deref()
        .map(|v| version("below", v))
        .transpose()?;
    let at_least = q
        .at_least
        .as_deref()
        .map(|v| version("at_least", v))
        .transpose()?;
    let limit = q.limit.unwrap_or(1000).clamp(1, MAX_ROWS);
    let rows: Vec<(String, String, String, String)> = on_db!(&state.db, |pool| {
        sqlx::query_as(
            "SELECT p.agent_id, a.hostname, p.version, p.architecture FROM host_packages p \
             JOIN agents a ON a.id = p.agent_id WHERE p.name = $1 \
             ORDER BY a.hostname, p.agent_id LIMIT $2",
        )
        .bind(&q.name)
        .bind(MAX_ROWS)
        .fetch_all(pool)
        .await
    })?;
    let mut out = Vec::new();
    for (agent_id, hostname, text, architecture) in rows {
        // A version the agent sent that does not parse is not hidden: it matches no bound,
        // and is listed when there is none.
        let parsed = text.parse::<debversion::Version>().ok();
        let within = match (&parsed, &below, &at_least) {
            (_, None, None) => true,
            (None, _, _) => false,
            (Some(v), below, at_least) => {
                below.as_ref().is_none_or(|b| v < b) && at_least.as_ref().is_none_or(|a| v >= a)
            }
        };
        if within {
            out.push(PackageHost {
                agent_id,
                hostname,
                version: text,
                architecture,
            });
            if out.len() as i64 >= limit {
                break;
            }
        }
    }
    Ok(out)
}

pub async fn get_package_hosts(
    State(state): State<AppState>,
    _op: Operator,
    Query(q): Query<PackageQuery>,
) -> AppResult<Json<Vec<PackageHost>>> {
    Ok(Json(package_hosts(&state, &q).await?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_compare_the_way_dpkg_compares_them() {
        let v = |s: &str| match s.parse::<debversion::Version>() {
            Ok(v) => v,
            Err(e) => panic!("{s}: {e}"),
        };
        assert!(v("1:9.2p1-2") < v("1:9.2p1-2+deb12u3"));
        assert!(v("1:9.2p1-2+deb12u3") < v("1:9.6p1-3"));
        assert!(v("9.9p1-1") < v("1:8.0p1-1"), "the epoch goes first");
        assert!(v("1.0~rc1-1") < v("1.0-1"), "~ sorts before the release");
        for bad in ["", "1.0 beta", "1.0$"] {
            assert!(
                bad.parse::<debversion::Version>().is_err(),
                "{bad:?} parsed"
            );
        }
    }
}
