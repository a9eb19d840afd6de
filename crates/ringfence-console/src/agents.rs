//! The agent-facing API: enrollment, check-in, findings upload; plus enrollment-token minting
//! and the fleet listing for operators.
//!
//! A check-in costs no database read on the hot path: the agent's credential hash is cached
//! after the first lookup (credentials never change; an unknown agent is looked up every time
//! and refused), the answer comes from the [`Snapshot`](crate::snapshot::Snapshot), and the
//! write goes through group commit ([`crate::ingest`]). Response orders cost a query only for
//! an agent that has some pending or reports results ([`crate::orders`]).

use crate::db::BeginWrite;
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header;
use axum::http::request::Parts;
use ringfence_wire::{
    AgentId, CheckIn, CheckInResponse, Credential, EnrollRequest, EnrollResponse, FindingsAccepted,
    FindingsBatch, PROTOCOL, Tags, limits,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::{Operator, ct_eq, random_hex, sha256_hex};
use crate::clock::Millis;
use crate::error::{AppError, AppResult};
use crate::ingest::{IngestError, Sample};
use crate::{AppState, audit, on_db, orders};

/// Credential hashes of known agents, filled on first use; and when each agent's last refused
/// check-in was audited.
#[derive(Debug, Default)]
pub struct CredentialCache(
    RwLock<HashMap<String, (String, bool)>>,
    Mutex<HashMap<String, Refusals>>,
);

/// An agent's refused check-ins since the last one audited.
#[derive(Debug, Clone, Copy)]
struct Refusals {
    audited_at: Millis,
    unaudited: u64,
}

impl CredentialCache {
    /// Should this refusal be audited? One per agent per `every` ms is: a lying agent cannot
    /// flood the audit log. Returns the refusals left out since the last audited one.
    fn audit_refusal(&self, agent: &str, now: Millis, every: Millis) -> Option<u64> {
        let mut m = match self.1.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        match m.get_mut(agent) {
            Some(r) if now - r.audited_at < every => {
                r.unaudited = r.unaudited.saturating_add(1);
                None
            }
            Some(r) => {
                let left_out = r.unaudited;
                *r = Refusals {
                    audited_at: now,
                    unaudited: 0,
                };
                Some(left_out)
            }
            None => {
                m.insert(
                    agent.to_owned(),
                    Refusals {
                        audited_at: now,
                        unaudited: 0,
                    },
                );
                Some(0)
            }
        }
    }

    /// The credential hash, and whether the agent must present its client certificate.
    fn get(&self, agent: &str) -> Option<(String, bool)> {
        match self.0.read() {
            Ok(m) => m.get(agent).cloned(),
            Err(p) => p.into_inner().get(agent).cloned(),
        }
    }

    fn put(&self, agent: String, hash: String, cert_required: bool) {
        match self.0.write() {
            Ok(mut m) => m.insert(agent, (hash, cert_required)),
            Err(p) => p.into_inner().insert(agent, (hash, cert_required)),
        };
    }

    /// Forget one agent's cached credential (its certificate requirement changed).
    pub fn clear_one(&self, agent: &str) {
        match self.0.write() {
            Ok(mut m) => m.remove(agent),
            Err(p) => p.into_inner().remove(agent),
        };
    }

    /// Forget every cached credential (an agent was revoked, here or by another console).
    pub fn clear(&self) {
        match self.0.write() {
            Ok(mut m) => m.clear(),
            Err(p) => p.into_inner().clear(),
        }
    }
}

/// Stable per-agent rank for percentage selection: the first 63 bits of SHA-256(id).
pub fn hash_rank(agent: &str) -> i64 {
    let d = Sha256::digest(agent.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b) & i64::MAX
}

/// An authenticated agent.
#[derive(Debug, Clone)]
pub struct AgentAuth(pub AgentId);

impl FromRequestParts<AppState> for AgentAuth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> AppResult<AgentAuth> {
        let raw = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(AppError::Unauthorized("agent credential required"))?;
        let cred = Credential::try_from(raw.trim().to_owned())
            .map_err(|_| AppError::Unauthorized("malformed agent credential"))?;
        let agent = cred.agent_id();
        let presented = sha256_hex(cred.as_str());
        let (stored, cert_required) = match state.credentials.get(agent.as_str()) {
            Some(h) => h,
            None => {
                let row: Option<(String, Option<i64>)> = on_db!(&state.db, |pool| {
                    sqlx::query_as(
                        "SELECT credential_hash, cert_not_after FROM agents \
                         WHERE id = $1 AND revoked_at IS NULL",
                    )
                    .bind(agent.as_str())
                    .fetch_optional(pool)
                    .await?
                });
                let (h, cert) = row.ok_or(AppError::Unauthorized("unknown agent"))?;
                state
                    .credentials
                    .put(agent.to_string(), h.clone(), cert.is_some());
                (h, cert.is_some())
            }
        };
        if !ct_eq(presented.as_bytes(), stored.as_bytes()) {
            return Err(AppError::Unauthorized("unknown agent"));
        }
        crate::mtls::check_peer(parts, agent.as_str(), cert_required)?;
        Ok(AgentAuth(agent))
    }
}

/// A request body of at most `limit` bytes: a larger one is 413, an unreadable one 400.
pub fn body_within(body: Result<Bytes, BytesRejection>, limit: usize) -> AppResult<Bytes> {
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => AppError::TooLarge(limit),
        other => AppError::BadRequest(other.body_text()),
    })?;
    if body.len() > limit {
        return Err(AppError::TooLarge(limit));
    }
    Ok(body)
}

/// Parse a JSON body: syntax errors are 400, values outside the protocol's bounds are 422.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> AppResult<T> {
    let body = body_within(body, limit)?;
    serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => AppError::Unprocessable(e.to_string()),
        _ => AppError::BadRequest(e.to_string()),
    })
}

fn check_protocol(p: u16) -> AppResult<()> {
    if p == PROTOCOL {
        Ok(())
    } else {
        Err(AppError::Unprocessable(format!(
            "protocol {p} is not spoken here (this console speaks {PROTOCOL})"
        )))
    }
}

/// `POST /api/v1/agents/enroll`.
pub async fn enroll(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<EnrollResponse>> {
    let req: EnrollRequest = parse_json(body, limits::ENROLL_BYTES)?;
    check_protocol(req.protocol)?;
    if req.token.len() > 128 {
        return Err(AppError::Forbidden("unknown enrollment token".into()));
    }
    let now = state.clock.now_ms();
    let agent = AgentId::try_from(random_hex(16)?).map_err(AppError::internal)?;
    let credential = Credential::new(&agent, &random_hex(32)?).map_err(AppError::internal)?;
    // The certificate first: a request that cannot be signed is refused before the token is
    // spent.
    let certificate = match &req.csr_pem {
        Some(csr) => crate::mtls::sign(&state, agent.as_str(), csr)?,
        None => None,
    };
    let enrolled = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let used: Option<(Option<String>,)> = sqlx::query_as(
            "UPDATE enrollment_tokens SET uses = uses + 1 \
             WHERE token_hash = $1 AND uses < max_uses AND (expires_at IS NULL OR expires_at > $2) \
             AND revoked_at IS NULL RETURNING tags",
        )
        .bind(sha256_hex(&req.token))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((token_tags,)) = used {
            // The ring-selecting tags are fixed here, for good: the token's when it has some,
            // else what the agent states at enrollment. Check-ins never change them.
            let tags = enrollment_tags(&req.tags, token_tags.as_deref())?;
            let custom = serde_json::to_string(&tags.custom).map_err(AppError::internal)?;
            let evidence = serde_json::json!({
                "agent": agent, "hostname": req.hostname, "tags": tags,
                "tags_from": if token_tags.is_some() { "token" } else { "agent" },
            });
            sqlx::query(
                "INSERT INTO agents (id, credential_hash, hostname, hash_rank, enrolled_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(agent.as_str())
            .bind(sha256_hex(credential.as_str()))
            .bind(req.hostname.as_str())
            .bind(hash_rank(agent.as_str()))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO agent_state (agent_id, last_seen, seq, agent_version, content_version, region, industry, environment, \
                 custom_tags, tz_offset, cpu, rss, crashes_total, lkg_total, drops_total, events_total, findings_total, checkins) \
                 VALUES ($1, $2, 0, $3, 0, $4, $5, $6, $7, $8, 0, 0, 0, 0, 0, 0, 0, 0)",
            )
            .bind(agent.as_str())
            .bind(now)
            .bind(req.agent_version.as_str())
            .bind(tags.region.as_ref().map(|l| l.as_str()))
            .bind(tags.industry.as_ref().map(|l| l.as_str()))
            .bind(tags.environment.as_ref().map(|l| l.as_str()))
            .bind(&custom)
            .bind(i64::from(tags.tz_offset_minutes.minutes()))
            .execute(&mut *tx)
            .await?;
            audit::record!(
                &mut *tx,
                now,
                "enrollment",
                None::<i64>,
                "enroll",
                "enrolled",
                &evidence
            )
            .await?;
            tx.commit().await?;
            true
        } else {
            tx.rollback().await?;
            false
        }
    });
    if !enrolled {
        return Err(AppError::Forbidden(
            "enrollment token unknown, expired or used up".into(),
        ));
    }
    let client_cert_pem = match certificate {
        Some((pem, not_after)) => {
            crate::mtls::record(&state, agent.as_str(), not_after).await?;
            Some(pem)
        }
        None => None,
    };
    Ok(Json(EnrollResponse {
        agent_id: agent,
        credential,
        checkin_interval_ms: state.config.checkin_interval_ms.unsigned_abs(),
        client_cert_pem,
    }))
}

/// The tags an agent is enrolled with: the token's ring-selecting tags when it carries some
/// (the agent keeps only its timezone offset), else the agent's own.
fn enrollment_tags(stated: &Tags, token: Option<&str>) -> AppResult<Tags> {
    let Some(json) = token else {
        return Ok(stated.clone());
    };
    let mut tags: Tags = serde_json::from_str(json)
        .map_err(|e| AppError::internal(format!("enrollment token tags: {e}")))?;
    tags.tz_offset_minutes = stated.tz_offset_minutes;
    Ok(tags)
}

/// Turn a parsed check-in into a stored sample.
pub fn sample(c: &CheckIn, at: Millis) -> Sample {
    let h = &c.health;
    Sample {
        agent_id: c.agent_id.to_string(),
        at,
        seq: c.seq.get(),
        agent_version: c.agent_version.to_string(),
        content_version: c.content_version.get(),
        content: c.content.as_ref().map(ToString::to_string),
        crashes: h.crashes.get(),
        restarts: h.restarts.get(),
        lkg: h.lkg_fallbacks.get(),
        release_fallbacks: h.release_fallbacks.get(),
        cpu: h.cpu_percent.get(),
        rss: h.rss_bytes.get(),
        events: h.events.get(),
        drops: h.events_dropped.get(),
        findings: h.findings.get(),
        interval_ms: h.interval_ms.get(),
        region: c.tags.region.as_ref().map(ToString::to_string),
        industry: c.tags.industry.as_ref().map(ToString::to_string),
        environment: c.tags.environment.as_ref().map(ToString::to_string),
        custom_tags: serde_json::to_string(&c.tags.custom).unwrap_or_else(|_| "{}".into()),
        tz_offset: i64::from(c.tags.tz_offset_minutes.minutes()),
        tuning: (!c.tuning.is_empty())
            .then(|| serde_json::to_string(&c.tuning).ok())
            .flatten(),
        sensor_hooks: stored_hooks(&c.sensor_hooks),
    }
}

/// The check-in's sensor hooks as stored: JSON, `None` when the agent sent none. Parsing
/// bounded them (at most [`ringfence_wire::limits::SENSOR_HOOKS`] kinds, labels of at most 64
/// bytes), so the column is bounded by the wire type.
fn stored_hooks(hooks: &ringfence_wire::SensorHooks) -> Option<String> {
    if hooks.is_empty() {
        return None;
    }
    serde_json::to_string(hooks).ok()
}

/// Refuse a whole check-in (a counter out of its bounds, a negative one) and audit the refusal
/// with the agent as the actor: the first one, then at most one per check-in interval, with the
/// number left out in between. Nothing of the check-in is stored, so the agent keeps its
/// counters; an honest agent never gets here.
async fn refuse_checkin(state: &AppState, agent: &AgentId, now: Millis, why: String) -> AppError {
    tracing::warn!(agent = %agent, reason = %why, "check-in refused");
    let refused = AppError::Unprocessable(format!("check-in refused whole: {why}"));
    let every = state.config.checkin_interval_ms.max(1);
    let Some(left_out) = state.credentials.audit_refusal(agent.as_str(), now, every) else {
        return refused;
    };
    let evidence = serde_json::json!({"agent": agent, "reason": why,
        "refusals_not_audited_since_the_last": left_out});
    let logged: Result<(), AppError> = async {
        on_db!(&state.db, |pool| {
            audit::record!(
                pool,
                now,
                agent.as_str(),
                None::<i64>,
                "checkin",
                format!("refused: {why}"),
                &evidence
            )
            .await?;
        });
        Ok(())
    }
    .await;
    match logged {
        Ok(()) => refused,
        Err(e) => e,
    }
}

/// `POST /api/v1/agents/checkin`.
pub async fn checkin(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<CheckInResponse>> {
    crate::quota::checkin(&state, &agent)?;
    let now = state.clock.now_ms();
    let c: CheckIn = match parse_json(body, limits::CHECKIN_BYTES) {
        Ok(c) => c,
        Err(AppError::Unprocessable(why)) => {
            return Err(refuse_checkin(&state, &agent, now, why).await);
        }
        Err(e) => return Err(e),
    };
    check_protocol(c.protocol)?;
    if c.agent_id != agent {
        return Err(AppError::Forbidden(
            "check-in is for another agent than the credential".into(),
        ));
    }
    if let Err(e) = c.health.check_bounds() {
        return Err(refuse_checkin(&state, &agent, now, e.to_string()).await);
    }
    let s = sample(&c, now);
    let (tz, current) = (s.tz_offset, s.content_version);
    let running = s.agent_version.clone();
    state.ingest.store(s).await.map_err(|e| match e {
        IngestError::Busy => AppError::Unavailable("console busy; check in again later"),
        IngestError::Failed => AppError::Internal("check-in batch failed".into()),
    })?;
    // After the sample is stored, so a refused check-in delivers nothing the agent would miss.
    let orders = orders::on_checkin(&state, &agent, &c.order_results, now).await?;
    let snapshot = state.snapshot.get();
    let content = snapshot.offer(agent.as_str(), tz, current, now).cloned();
    let release = snapshot
        .offer_release(agent.as_str(), tz, &running, now)
        .cloned();
    Ok(Json(CheckInResponse {
        content,
        release,
        next_checkin_ms: state.config.checkin_interval_ms.unsigned_abs(),
        jitter_ms: state.config.checkin_jitter_ms.unsigned_abs(),
        orders,
    }))
}

fn finding_str(f: &serde_json::Map<String, serde_json::Value>, path: &[&str]) -> Option<String> {
    let dotted = path.join(".");
    if let Some(v) = f.get(&dotted).and_then(|v| v.as_str()) {
        return Some(v.chars().take(200).collect());
    }
    let mut cur = f.get(*path.first()?)?;
    for p in &path[1..] {
        cur = cur.get(p)?;
    }
    match cur {
        serde_json::Value::String(s) => Some(s.chars().take(200).collect()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One finding to store, as its row's columns.
struct NewFinding {
    rule: Option<String>,
    severity: Option<String>,
    /// The first ATT&CK technique it names, for filters and groups.
    technique: Option<String>,
    /// How many matches the agent folded into it.
    matches: i64,
    body: String,
    /// The agent's delivery id: a retried upload stores it once.
    delivery: Option<String>,
}

/// `POST /api/v1/agents/findings`. A finding whose `ringfence.delivery_id` this agent already
/// delivered is acknowledged but not stored again: the agent retries an upload whose answer
/// it never saw.
pub async fn findings(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<FindingsAccepted>> {
    crate::quota::findings_open(&state, &agent)?;
    let batch: FindingsBatch = parse_json(body, limits::FINDINGS_BYTES)?;
    check_protocol(batch.protocol)?;
    if batch.agent_id != agent {
        return Err(AppError::Forbidden(
            "findings are for another agent than the credential".into(),
        ));
    }
    crate::quota::findings(&state, &agent, batch.findings.len())?;
    let now = state.clock.now_ms();
    let rows: Vec<NewFinding> = batch
        .findings
        .iter()
        .map(|f| {
            let delivery = finding_str(f, &["ringfence", "delivery_id"])
                .map(|d| d.chars().take(64).collect::<String>());
            let rule =
                finding_str(f, &["rule", "name"]).or_else(|| finding_str(f, &["rule", "id"]));
            let severity = finding_str(f, &["event", "severity"])
                .or_else(|| finding_str(f, &["rule", "severity"]))
                .or_else(|| finding_str(f, &["severity"]));
            let technique =
                crate::finding_view::first_technique(&serde_json::Value::Object(f.clone()));
            let matches = crate::findings::folded_matches(f);
            let body = serde_json::to_string(f).unwrap_or_else(|_| "{}".into());
            NewFinding {
                rule,
                severity,
                technique,
                matches,
                body,
                delivery,
            }
        })
        .collect();
    if !rows.is_empty() {
        on_db!(&state.db, |pool| {
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(500) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO findings (agent_id, received_at, rule, severity, technique, matches, body, delivery_id) ",
                );
                q.push_values(chunk, |mut b, f| {
                    b.push_bind(agent.as_str())
                        .push_bind(now)
                        .push_bind(&f.rule)
                        .push_bind(&f.severity)
                        .push_bind(&f.technique)
                        .push_bind(f.matches)
                        .push_bind(&f.body)
                        .push_bind(&f.delivery);
                });
                q.push(" ON CONFLICT (agent_id, delivery_id) DO NOTHING");
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
    }
    Ok(Json(FindingsAccepted {
        accepted: rows.len() as u64,
    }))
}

/// Request to mint an enrollment token.
#[derive(Debug, Deserialize)]
pub struct NewEnrollmentToken {
    #[serde(default = "default_label")]
    pub label: String,
    pub max_uses: i64,
    /// Lifetime in milliseconds; [`DEFAULT_TOKEN_TTL_MS`] when absent. A token that never
    /// expires is not offered: a leaked one would enroll hosts forever.
    #[serde(default)]
    pub ttl_ms: Option<i64>,
    /// Ring-selecting tags every agent enrolled with this token gets, whatever it states.
    #[serde(default)]
    pub tags: Option<Tags>,
}

/// An enrollment token's lifetime when none is asked for: a day.
pub const DEFAULT_TOKEN_TTL_MS: i64 = 24 * 3_600_000;
/// The longest an enrollment token may live: a year.
pub const MAX_TOKEN_TTL_MS: i64 = 366 * 24 * 3_600_000;

fn default_label() -> String {
    "enrollment".into()
}

/// A freshly minted enrollment token (shown once).
#[derive(Debug, Serialize, Deserialize)]
pub struct EnrollmentToken {
    pub token: String,
    pub max_uses: i64,
    pub expires_at: Option<Millis>,
}

/// Mint an enrollment token usable `max_uses` times.
pub async fn mint_enrollment_token(
    state: &AppState,
    actor: &str,
    req: &NewEnrollmentToken,
) -> AppResult<EnrollmentToken> {
    if !(1..=10_000_000).contains(&req.max_uses) {
        return Err(AppError::Unprocessable(format!(
            "max_uses must be within 1..=10000000, got {}",
            req.max_uses
        )));
    }
    if req.label.len() > 64 {
        return Err(AppError::Unprocessable("label longer than 64 bytes".into()));
    }
    let now = state.clock.now_ms();
    let ttl = req.ttl_ms.unwrap_or(DEFAULT_TOKEN_TTL_MS);
    if !(1..=MAX_TOKEN_TTL_MS).contains(&ttl) {
        return Err(AppError::Unprocessable(format!(
            "ttl_ms must be within 1..={MAX_TOKEN_TTL_MS} (a year), got {ttl}"
        )));
    }
    let expires_at = Some(now.saturating_add(ttl));
    let token = format!("rfe1.{}", random_hex(32)?);
    let tags = match &req.tags {
        Some(t) => Some(serde_json::to_string(t).map_err(AppError::internal)?),
        None => None,
    };
    let evidence = serde_json::json!({"label": req.label, "max_uses": req.max_uses,
        "expires_at": expires_at, "tags": req.tags});
    on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        sqlx::query(
            "INSERT INTO enrollment_tokens (token_hash, label, max_uses, uses, expires_at, created_at, tags) VALUES ($1, $2, $3, 0, $4, $5, $6)",
        )
        .bind(sha256_hex(&token))
        .bind(&req.label)
        .bind(req.max_uses)
        .bind(expires_at)
        .bind(now)
        .bind(&tags)
        .execute(&mut *tx)
        .await?;
        audit::record!(
            &mut *tx,
            now,
            actor,
            None::<i64>,
            "enrollment-token",
            "minted",
            &evidence
        )
        .await?;
        tx.commit().await?;
    });
    Ok(EnrollmentToken {
        token,
        max_uses: req.max_uses,
        expires_at,
    })
}

/// `POST /api/v1/enrollment-tokens`.
pub async fn post_enrollment_token(
    State(state): State<AppState>,
    op: Operator,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<EnrollmentToken>> {
    let req: NewEnrollmentToken = parse_json(body, 4096)?;
    Ok(Json(mint_enrollment_token(&state, &op.0, &req).await?))
}

/// `PUT /api/v1/agents/{agent_id}/tags`: an operator sets an agent's ring-selecting tags
/// (region, industry, environment, custom; the agent's timezone offset stays its own). Takes
/// effect for rings started from now on; audited with the tags before and after.
pub async fn put_agent_tags(
    State(state): State<AppState>,
    op: Operator,
    Path(agent_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<serde_json::Value>> {
    let tags: Tags = parse_json(body, limits::ENROLL_BYTES)?;
    let custom = serde_json::to_string(&tags.custom).map_err(AppError::internal)?;
    let now = state.clock.now_ms();
    type TagRow = (Option<String>, Option<String>, Option<String>, String);
    let changed = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let before: Option<TagRow> = sqlx::query_as(
            "SELECT region, industry, environment, custom_tags FROM agent_state WHERE agent_id = $1",
        )
        .bind(&agent_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((region, industry, environment, custom_before)) = before {
            sqlx::query(
                "UPDATE agent_state SET region = $2, industry = $3, environment = $4, custom_tags = $5 WHERE agent_id = $1",
            )
            .bind(&agent_id)
            .bind(tags.region.as_ref().map(|l| l.as_str()))
            .bind(tags.industry.as_ref().map(|l| l.as_str()))
            .bind(tags.environment.as_ref().map(|l| l.as_str()))
            .bind(&custom)
            .execute(&mut *tx)
            .await?;
            let evidence = serde_json::json!({
                "agent": agent_id,
                "before": {"region": region, "industry": industry, "environment": environment,
                           "custom": serde_json::from_str::<serde_json::Value>(&custom_before).unwrap_or_default()},
                "after": tags,
            });
            audit::record!(
                &mut *tx,
                now,
                &op.0,
                None::<i64>,
                "tags",
                "set by an operator",
                &evidence
            )
            .await?;
            tx.commit().await?;
            true
        } else {
            tx.rollback().await?;
            false
        }
    });
    if !changed {
        return Err(AppError::NotFound(format!("no agent {agent_id}")));
    }
    Ok(Json(serde_json::json!({"agent": agent_id, "tags": tags})))
}

/// One agent as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct AgentRow {
    pub id: String,
    pub hostname: String,
    pub enrolled_at: Millis,
    pub last_seen: Millis,
    pub agent_version: String,
    pub content_version: i64,
    /// What the agent says is active ("the built-in pack, 31 rules", "bundle v9, 12 rules").
    pub content: Option<String>,
    pub region: Option<String>,
    pub industry: Option<String>,
    pub environment: Option<String>,
    pub custom_tags: String,
    pub tz_offset: i64,
    pub cpu: f64,
    pub rss: i64,
    pub crashes_total: i64,
    pub lkg_total: i64,
    pub drops_total: i64,
    pub events_total: i64,
    pub findings_total: i64,
    pub checkins: i64,
}

/// Agents, most recently seen first.
pub async fn list(state: &AppState, limit: i64) -> AppResult<Vec<AgentRow>> {
    Ok(on_db!(&state.db, |pool| {
        sqlx::query_as::<_, AgentRow>(
            "SELECT a.id, a.hostname, a.enrolled_at, s.last_seen, s.agent_version, s.content_version, s.content, s.region, \
             s.industry, s.environment, s.custom_tags, s.tz_offset, s.cpu, s.rss, s.crashes_total, s.lkg_total, \
             s.drops_total, s.events_total, s.findings_total, s.checkins \
             FROM agents a JOIN agent_state s ON s.agent_id = a.id ORDER BY s.last_seen DESC, a.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(pool)
        .await?
    }))
}

/// Fleet summary: agents, online agents, and agents per content version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetSummary {
    pub agents: i64,
    pub online: i64,
    pub baseline: i64,
    pub versions: Vec<(i64, i64)>,
}

/// Summarize the fleet; "online" means seen within three check-in intervals.
pub async fn summary(state: &AppState) -> AppResult<FleetSummary> {
    let since = state.clock.now_ms() - 3 * state.config.checkin_interval_ms;
    let (agents, online, baseline, versions) = on_db!(&state.db, |pool| {
        let (agents,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM agent_state")
            .fetch_one(pool)
            .await?;
        let (online,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM agent_state WHERE last_seen >= $1")
                .bind(since)
                .fetch_one(pool)
                .await?;
        let (baseline,): (i64,) = sqlx::query_as("SELECT baseline_version FROM fleet WHERE id = 1")
            .fetch_one(pool)
            .await?;
        let versions: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT content_version, COUNT(*) FROM agent_state GROUP BY content_version ORDER BY content_version",
        )
        .fetch_all(pool)
        .await?;
        (agents, online, baseline, versions)
    });
    Ok(FleetSummary {
        agents,
        online,
        baseline,
        versions,
    })
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub limit: Option<i64>,
}

/// `GET /api/v1/agents`.
pub async fn get_agents(
    State(state): State<AppState>,
    _op: Operator,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Vec<AgentRow>>> {
    Ok(Json(
        list(&state, q.limit.unwrap_or(1000).clamp(1, 100_000)).await?,
    ))
}

/// `GET /api/v1/fleet`.
pub async fn get_fleet(
    State(state): State<AppState>,
    _op: Operator,
) -> AppResult<Json<FleetSummary>> {
    Ok(Json(summary(&state).await?))
}
