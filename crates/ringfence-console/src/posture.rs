//! Posture across the fleet, from the posture findings agents send (`rule.ruleset:
//! ringfence-posture`: weak passwords, sshd, exposed services, file-integrity changes): how
//! many hosts have an open finding of each weakness (`/posture`, `GET /api/v1/posture`), and
//! one host's open weaknesses (on its page). A weakness counts while its finding is not closed;
//! agents report a weakness when it appears, not at every pass, so closing the finding after
//! the fix takes the host out of the count.

use askama::Template;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use crate::auth::Operator;
use crate::clock::Millis;
use crate::dashboard::{Layout, render, session, utc};
use crate::error::AppResult;
use crate::{AppState, on_db};

/// Weaknesses listed, at most (posture rule ids are a short fixed list).
const MAX_WEAKNESSES: i64 = 200;
/// A host's open posture findings shown, at most.
const MAX_HOST_ROWS: i64 = 200;
/// Posture findings, as their stored (compact JSON) body shows them.
const POSTURE: &str = "%\"ruleset\":\"ringfence-posture\"%";

/// One weakness across the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Weakness {
    /// The stored rule (the finding's `rule.name`, else its `rule.id`).
    pub rule: String,
    /// Hosts with an open finding of it.
    pub hosts: i64,
    /// Open findings of it.
    pub findings: i64,
    /// When the last one was received (ms).
    pub last_received: Millis,
}

/// Open posture findings by rule: hosts and findings, most hosts first.
pub async fn fleet(state: &AppState) -> AppResult<Vec<Weakness>> {
    let rows: Vec<(Option<String>, i64, i64, i64)> = on_db!(&state.db, |pool| {
        sqlx::query_as(
            "SELECT rule, CAST(COUNT(DISTINCT agent_id) AS BIGINT), CAST(COUNT(*) AS BIGINT), \
             CAST(MAX(received_at) AS BIGINT) FROM findings \
             WHERE body LIKE $1 AND status <> 'closed' \
             GROUP BY rule ORDER BY 2 DESC, rule LIMIT $2",
        )
        .bind(POSTURE)
        .bind(MAX_WEAKNESSES)
        .fetch_all(pool)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|(rule, hosts, findings, last)| Weakness {
            rule: rule.unwrap_or_default(),
            hosts,
            findings,
            last_received: last,
        })
        .collect())
}

/// One open posture finding of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostWeakness {
    pub id: i64,
    pub rule: String,
    /// One of the known severity words (what the agent sent, normalised).
    pub severity: &'static str,
    /// What it is about (an account, an address, a path), from the finding.
    pub subject: String,
    pub message: String,
    pub received: String,
}

/// id, rule, severity, body, received_at.
type HostRow = (i64, Option<String>, Option<String>, String, i64);

/// A host's open posture findings, newest first.
pub async fn host(state: &AppState, agent: &str) -> AppResult<Vec<HostWeakness>> {
    let rows: Vec<HostRow> = on_db!(&state.db, |pool| {
        sqlx::query_as(
            "SELECT id, rule, severity, body, received_at FROM findings \
             WHERE agent_id = $1 AND body LIKE $2 AND status <> 'closed' \
             ORDER BY received_at DESC, id DESC LIMIT $3",
        )
        .bind(agent)
        .bind(POSTURE)
        .bind(MAX_HOST_ROWS)
        .fetch_all(pool)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|(id, rule, severity, body, received_at)| {
            let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            HostWeakness {
                id,
                rule: rule.unwrap_or_default(),
                severity: crate::findings::severity_word(crate::findings::severity_rank(
                    doc["ringfence"]["finding"]["level"]
                        .as_str()
                        .or(severity.as_deref()),
                )),
                subject: text(&doc["ringfence"]["finding"]["subject"]),
                message: text(&doc["message"]),
                received: utc(received_at),
            }
        })
        .collect())
}

/// `GET /api/v1/posture`: [`fleet`] as JSON.
pub async fn get_posture(
    State(state): State<AppState>,
    _op: Operator,
) -> AppResult<Json<serde_json::Value>> {
    let weaknesses = fleet(&state).await?;
    Ok(Json(serde_json::json!({ "weaknesses": weaknesses })))
}

#[derive(Template)]
#[template(path = "posture.html")]
struct PosturePage {
    layout: Layout,
    rows: Vec<[String; 4]>,
}

async fn posture_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let op = match session(&state, &headers).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let weaknesses = match fleet(&state).await {
        Ok(w) => w,
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    let rows = weaknesses
        .iter()
        .map(|w| {
            [
                w.rule.clone(),
                w.hosts.to_string(),
                w.findings.to_string(),
                utc(w.last_received),
            ]
        })
        .collect();
    render(&PosturePage {
        layout: Layout::new("Posture", "Posture", &op),
        rows,
    })
}

/// The posture page.
pub fn router() -> Router<AppState> {
    Router::new().route("/posture", get(posture_page))
}
