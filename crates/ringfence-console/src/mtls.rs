//! Mutual TLS for agents: the console's CA issues each agent a short-lived client certificate
//! for a key the agent made (it never leaves the host), and from then on that agent must
//! present it on every request over TLS, beside its credential.
//!
//! The TLS layer verifies a presented certificate against the console CA; the accept loop
//! ([`crate::serve_tls`]) puts what it names on every request of the connection as a [`Peer`].
//! [`check_peer`] then holds the agent to it: a certificate for another agent is refused, and
//! an agent that was issued one is refused without it. Plain-HTTP consoles (loopback tests and
//! drills) issue no certificates, so nothing is required of their agents.
//!
//! Renewal ([`renew`]) needs the current certificate on the connection: a stolen credential
//! alone cannot get a certificate. An agent whose certificate expired is re-enrolled by an
//! operator (`fleet revoke`, then a new token).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::request::Parts;
use ringfence_wire::{RenewRequest, RenewResponse, limits};

use crate::agents::{AgentAuth, parse_json};
use crate::error::{AppError, AppResult};
use crate::{AppState, on_db};

/// What the connection a request came on says about its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Plain HTTP (loopback only).
    Plain,
    /// TLS; the agent named by the verified client certificate, if one was presented.
    Tls { agent: Option<String> },
}

/// Hold an authenticated agent to its connection's client certificate.
pub fn check_peer(parts: &Parts, agent: &str, cert_required: bool) -> AppResult<()> {
    match parts.extensions.get::<Peer>() {
        Some(Peer::Tls { agent: Some(named) }) if named != agent => Err(AppError::Unauthorized(
            "the client certificate names another agent",
        )),
        Some(Peer::Tls { agent: None }) if cert_required => Err(AppError::Unauthorized(
            "this agent must present its client certificate",
        )),
        _ => Ok(()),
    }
}

/// A client certificate for `agent` on the key of `csr` (PEM, and its expiry in unix
/// seconds), when this console issues them; a request it cannot sign is 422.
pub fn sign(state: &AppState, agent: &str, csr: &str) -> AppResult<Option<(String, i64)>> {
    let Some(ca) = &state.config.client_ca else {
        return Ok(None);
    };
    ca.issue_agent_cert(csr, agent)
        .map(Some)
        .map_err(|e| AppError::Unprocessable(format!("csr_pem: {e}")))
}

/// Record that `agent` holds a certificate until `not_after`: from now on it must present it.
pub async fn record(state: &AppState, agent: &str, not_after: i64) -> AppResult<()> {
    on_db!(&state.db, |pool| {
        sqlx::query("UPDATE agents SET cert_not_after = $2 WHERE id = $1")
            .bind(agent)
            .bind(not_after)
            .execute(pool)
            .await?;
    });
    state.credentials.clear_one(agent);
    Ok(())
}

/// `POST /api/v1/agents/renew`: a new certificate on the agent's key, over a connection that
/// presents the current one.
pub async fn renew(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    parts: Parts,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<RenewResponse>> {
    let req: RenewRequest = parse_json(body, limits::ENROLL_BYTES)?;
    if req.agent_id != agent {
        return Err(AppError::Forbidden(
            "agent_id is not the credential's".into(),
        ));
    }
    let presented = matches!(
        parts.extensions.get::<Peer>(),
        Some(Peer::Tls { agent: Some(named) }) if *named == agent.as_str()
    );
    if !presented {
        return Err(AppError::Unauthorized(
            "renewal needs the current client certificate on the connection",
        ));
    }
    let Some(ca) = &state.config.client_ca else {
        return Err(AppError::NotFound(
            "this console issues no client certificates".into(),
        ));
    };
    let (cert, not_after) = ca
        .issue_agent_cert(&req.csr_pem, agent.as_str())
        .map_err(|e| AppError::Unprocessable(format!("csr_pem: {e}")))?;
    on_db!(&state.db, |pool| {
        sqlx::query("UPDATE agents SET cert_not_after = $2 WHERE id = $1")
            .bind(agent.as_str())
            .bind(not_after)
            .execute(pool)
            .await?;
    });
    tracing::info!(%agent, not_after, "client certificate renewed");
    Ok(Json(RenewResponse {
        client_cert_pem: cert,
        not_after,
    }))
}
