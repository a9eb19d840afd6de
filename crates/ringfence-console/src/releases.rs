//! Agent releases on the console: publishing a signed release file (verified against the trust
//! root's releases role when the console has the keys), listing them, and serving the files to
//! authenticated agents only. The console never signs a release (the releases key stays
//! offline); it stores what was uploaded, numbers it (`releases.seq`, in publish order), and
//! rolls it out through the rollout engine ([`crate::rollout`], kind `agent`).
//!
//! Files live in `<content dir>/releases/<seq>.release`. A rollback re-offer is a new row that
//! names the previous release's file.

use crate::db::BeginWrite;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::agents::AgentAuth;
use crate::auth::{Operator, random_hex};
use crate::clock::Millis;
use crate::error::{AppError, AppResult};
use crate::{AppState, audit, on_db};

/// The largest release file accepted (the binary plus its signed envelope).
pub const MAX_RELEASE_BYTES: usize = 256 * 1024 * 1024;
/// Release files served at once (each is read whole); more get a 503 and ask again at their
/// next check-in (a ring's gate waits `heartbeat_intervals` check-ins for them).
const CONCURRENT_SERVES: usize = 8;

static SERVING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_SERVES);

/// A published release (or a rollback re-offer of one, with `carries`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ReleaseRow {
    pub seq: i64,
    pub version: String,
    pub file: String,
    pub sha256: String,
    pub size: i64,
    pub carries: Option<i64>,
    pub created_at: Millis,
}

fn dir(state: &AppState) -> std::path::PathBuf {
    state.config.content_dir.join("releases")
}

/// Publish `bytes` as agent release `version` after verifying it. A version label is published
/// once (409 after). Returns the row.
pub async fn publish(
    state: &AppState,
    actor: &str,
    version: &str,
    bytes: &[u8],
) -> AppResult<ReleaseRow> {
    let label_ok = !version.is_empty()
        && version.len() <= 64
        && !version.starts_with('.')
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'));
    if !label_ok {
        return Err(AppError::BadRequest(format!(
            "release version {:?}: expected 1 to 64 of [0-9A-Za-z.+-], not starting with `.`",
            version.chars().take(80).collect::<String>()
        )));
    }
    if bytes.is_empty() {
        return Err(AppError::BadRequest("empty release file".into()));
    }
    let now = state.clock.now_ms();
    let verified = match state.republisher.verify_release(bytes, version) {
        Ok(summary) => summary,
        Err(why) => {
            let evidence = serde_json::json!({"release": version, "reason": why});
            on_db!(&state.db, |pool| {
                audit::record!(
                    pool,
                    now,
                    actor,
                    None::<i64>,
                    "publish-release",
                    format!("refused: {why}"),
                    &evidence
                )
                .await?;
            });
            return Err(AppError::Unprocessable(format!(
                "release {version} refused: {why}"
            )));
        }
    };
    let d = dir(state);
    tokio::fs::create_dir_all(&d)
        .await
        .map_err(|e| AppError::internal(format!("{}: {e}", d.display())))?;
    let sha256 = hex::encode(Sha256::digest(bytes));
    let size = i64::try_from(bytes.len()).map_err(AppError::internal)?;
    let tmp = d.join(format!(".upload.{}.tmp", random_hex(8)?));
    tokio::fs::write(&tmp, bytes)
        .await
        .map_err(|e| AppError::internal(format!("{}: {e}", tmp.display())))?;
    for _attempt in 0..3 {
        let outcome: Result<Option<ReleaseRow>, sqlx::Error> = on_db!(&state.db, |pool| {
            async {
                let mut tx = pool.begin_write().await?;
                // A write first: SQLite then holds the write lock for the whole transaction
                // (a read first would fail to upgrade while check-ins are being written).
                sqlx::query("UPDATE fleet SET revision = revision + 1 WHERE id = 1")
                    .execute(&mut *tx)
                    .await?;
                let exists: Option<(i64,)> = sqlx::query_as(
                    "SELECT seq FROM releases WHERE version = $1 AND carries IS NULL",
                )
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
                if exists.is_some() {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let (max,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM releases")
                    .fetch_one(&mut *tx)
                    .await?;
                let seq = max.unwrap_or(0).saturating_add(1);
                let row = ReleaseRow {
                    seq,
                    version: version.to_owned(),
                    file: format!("{seq}.release"),
                    sha256: sha256.clone(),
                    size,
                    carries: None,
                    created_at: now,
                };
                sqlx::query(
                    "INSERT INTO releases (seq, version, file, sha256, size, carries, created_at) VALUES ($1, $2, $3, $4, $5, NULL, $6)",
                )
                .bind(row.seq)
                .bind(&row.version)
                .bind(&row.file)
                .bind(&row.sha256)
                .bind(row.size)
                .bind(row.created_at)
                .execute(&mut *tx)
                .await?;
                let evidence = serde_json::json!({"release": version, "seq": seq,
                    "sha256": row.sha256, "size": size, "verified": verified});
                audit::record!(&mut *tx, now, actor, None::<i64>, "publish-release", "published", &evidence)
                    .await?;
                tokio::fs::rename(&tmp, d.join(&row.file))
                    .await
                    .map_err(sqlx::Error::Io)?;
                tx.commit().await?;
                Ok(Some(row))
            }
            .await
        });
        match outcome {
            Ok(Some(row)) => {
                state.reload_snapshot().await?;
                return Ok(row);
            }
            Ok(None) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(AppError::Conflict(format!(
                    "agent release {version} is already published; releases are immutable"
                )));
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e.into());
            }
        }
    }
    let _ = tokio::fs::remove_file(&tmp).await;
    Err(AppError::Internal(
        "could not allocate a release number".into(),
    ))
}

/// All releases, newest first.
pub async fn list(state: &AppState) -> AppResult<Vec<ReleaseRow>> {
    Ok(on_db!(&state.db, |pool| {
        sqlx::query_as::<_, ReleaseRow>(
            "SELECT seq, version, file, sha256, size, carries, created_at FROM releases ORDER BY seq DESC LIMIT 500",
        )
        .fetch_all(pool)
        .await?
    }))
}

#[derive(Debug, Deserialize)]
pub struct PublishQuery {
    /// Make this the fleet's initial baseline release (only when there is none yet).
    #[serde(default)]
    pub baseline: bool,
}

/// `PUT /api/v1/releases/{version}`: the body is the signed release file.
pub async fn put_release(
    State(state): State<AppState>,
    op: Operator,
    UrlPath(version): UrlPath<String>,
    Query(q): Query<PublishQuery>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> AppResult<Json<ReleaseRow>> {
    let body = body.map_err(|_| AppError::TooLarge(MAX_RELEASE_BYTES))?;
    let row = publish(&state, &op.0, &version, &body).await?;
    if q.baseline {
        crate::content::set_initial_baseline(
            &state,
            &op.0,
            crate::rollout::payload::Kind::Agent,
            row.seq,
        )
        .await?;
    }
    Ok(Json(row))
}

/// `GET /api/v1/releases`.
pub async fn get_releases(
    State(state): State<AppState>,
    _op: Operator,
) -> AppResult<Json<Vec<ReleaseRow>>> {
    Ok(Json(list(&state).await?))
}

/// `GET /releases/{seq}.release`: a release file, for enrolled agents only (a binary is worth
/// more to an attacker than a rule bundle; the signature is still what the agent trusts).
pub async fn serve_file(
    State(state): State<AppState>,
    AgentAuth(_agent): AgentAuth,
    UrlPath(name): UrlPath<String>,
) -> AppResult<Response> {
    let seq = name
        .strip_suffix(".release")
        .filter(|v| !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| AppError::NotFound("no such release file".into()))?;
    let Ok(_permit) = SERVING.try_acquire() else {
        return Err(AppError::Unavailable(
            "release downloads busy; try again later",
        ));
    };
    let path = dir(&state).join(format!("{seq}.release"));
    let meta = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AppError::NotFound("no such release file".into()));
        }
        Err(e) => return Err(AppError::internal(e)),
    };
    if meta.len() > MAX_RELEASE_BYTES as u64 {
        return Err(AppError::internal(format!(
            "{}: {} bytes, more than the {MAX_RELEASE_BYTES} a release may have",
            path.display(),
            meta.len()
        )));
    }
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| AppError::internal(format!("{}: {e}", path.display())))?;
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    Ok(resp)
}
