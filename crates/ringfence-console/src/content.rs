//! Content: signed bundles kept as static files, one per content version.
//!
//! The console treats a bundle as an opaque signed file plus its version. Files live in the
//! content dir as `<version>.bundle` and are served read-only at `/content/<version>.bundle`
//! with immutable caching headers, so a CDN or any web server in front can serve them at scale;
//! the database only records version, size and SHA-256. A rollback publishes a *new, higher*
//! version carrying older content through a [`Republisher`], because agents refuse to go back.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::Operator;
use crate::clock::Millis;
use crate::error::{AppError, AppResult};
use crate::{AppState, audit, on_db};

/// Largest bundle the console takes.
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;

/// Turns the bytes of a published bundle into a bundle with a new, higher content version and
/// the same content. The real implementation re-signs with the content keys; [`OpaqueCopy`]
/// copies bytes, for opaque content (drills, tests).
pub trait Republisher: Send + Sync + std::fmt::Debug + 'static {
    fn republish(&self, old: &[u8], old_version: u64, new_version: u64) -> Result<Vec<u8>, String>;
}

/// Copies the bytes unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpaqueCopy;

impl Republisher for OpaqueCopy {
    fn republish(&self, old: &[u8], _from: u64, _to: u64) -> Result<Vec<u8>, String> {
        Ok(old.to_vec())
    }
}

/// A published content version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ContentRow {
    pub version: i64,
    pub file: String,
    pub sha256: String,
    pub size: i64,
    pub carries: Option<i64>,
    pub created_at: Millis,
}

/// File name of a version.
pub fn file_name(version: i64) -> String {
    format!("{version}.bundle")
}

/// Write `bytes` as version `version` (atomically: temporary file, then rename).
pub async fn write_file(dir: &Path, version: i64, bytes: &[u8]) -> AppResult<(String, String)> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(AppError::internal)?;
    let name = file_name(version);
    let tmp: PathBuf = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, bytes)
        .await
        .map_err(AppError::internal)?;
    tokio::fs::rename(&tmp, dir.join(&name))
        .await
        .map_err(AppError::internal)?;
    Ok((name, hex::encode(Sha256::digest(bytes))))
}

/// Publish `bytes` as `version`. Refuses a version that exists. Returns the row.
pub async fn publish(
    state: &AppState,
    actor: &str,
    version: i64,
    bytes: &[u8],
    carries: Option<i64>,
) -> AppResult<ContentRow> {
    if version < 1 {
        return Err(AppError::BadRequest("content version must be >= 1".into()));
    }
    if bytes.is_empty() {
        return Err(AppError::BadRequest("empty bundle".into()));
    }
    let exists: Option<(i64,)> = on_db!(&state.db, |pool| {
        sqlx::query_as("SELECT version FROM content WHERE version = $1")
            .bind(version)
            .fetch_optional(pool)
            .await?
    });
    if exists.is_some() {
        return Err(AppError::Conflict(format!(
            "content version {version} is already published; versions are immutable"
        )));
    }
    let (file, sha) = write_file(&state.config.content_dir, version, bytes).await?;
    let now = state.clock.now_ms();
    let size = i64::try_from(bytes.len()).map_err(AppError::internal)?;
    let row = ContentRow {
        version,
        file,
        sha256: sha,
        size,
        carries,
        created_at: now,
    };
    let evidence = serde_json::json!({"version": version, "sha256": row.sha256, "size": size, "carries": carries});
    let inserted: Result<(), sqlx::Error> = on_db!(&state.db, |pool| {
        async {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO content (version, file, sha256, size, carries, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(row.version)
            .bind(&row.file)
            .bind(&row.sha256)
            .bind(row.size)
            .bind(row.carries)
            .bind(row.created_at)
            .execute(&mut *tx)
            .await?;
            audit::record!(&mut *tx, now, actor, None::<i64>, "publish", "published", &evidence).await?;
            sqlx::query("UPDATE fleet SET revision = revision + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await
    });
    match inserted {
        Ok(()) => {}
        // Another console published the same version between our check and our insert.
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            return Err(AppError::Conflict(format!(
                "content version {version} is already published; versions are immutable"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    state.reload_snapshot().await?;
    Ok(row)
}

/// All published versions, newest first.
pub async fn list(state: &AppState) -> AppResult<Vec<ContentRow>> {
    Ok(on_db!(&state.db, |pool| {
        sqlx::query_as::<_, ContentRow>(
            "SELECT version, file, sha256, size, carries, created_at FROM content ORDER BY version DESC",
        )
        .fetch_all(pool)
        .await?
    }))
}

/// Set the fleet baseline (the version every agent may run outside rollouts). Only allowed
/// while there is none: afterwards content moves only through rollouts.
pub async fn set_initial_baseline(state: &AppState, actor: &str, version: i64) -> AppResult<()> {
    let now = state.clock.now_ms();
    let evidence = serde_json::json!({"baseline": version});
    let changed = on_db!(&state.db, |pool| {
        let mut tx = pool.begin().await?;
        let r = sqlx::query(
            "UPDATE fleet SET baseline_version = $1, revision = revision + 1 \
             WHERE id = 1 AND baseline_version = 0 AND EXISTS (SELECT 1 FROM content WHERE version = $1)",
        )
        .bind(version)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 1 {
            audit::record!(
                &mut *tx,
                now,
                actor,
                None::<i64>,
                "baseline",
                "set initial baseline",
                &evidence
            )
            .await?;
        }
        tx.commit().await?;
        r.rows_affected()
    });
    if changed != 1 {
        return Err(AppError::Conflict(
            "the fleet already has a baseline (change it with a rollout), or the version is not published".into(),
        ));
    }
    state.reload_snapshot().await
}

#[derive(Debug, Deserialize)]
pub struct PublishQuery {
    /// Make this the fleet's initial baseline (only when there is none yet).
    #[serde(default)]
    pub baseline: bool,
}

/// `PUT /api/v1/content/{version}`: the body is the signed bundle.
pub async fn put_content(
    State(state): State<AppState>,
    op: Operator,
    UrlPath(version): UrlPath<i64>,
    Query(q): Query<PublishQuery>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> AppResult<Json<ContentRow>> {
    let body = body.map_err(|_| AppError::TooLarge(MAX_BUNDLE_BYTES))?;
    let row = publish(&state, &op.0, version, &body, None).await?;
    if q.baseline {
        set_initial_baseline(&state, &op.0, version).await?;
    }
    Ok(Json(row))
}

/// `GET /api/v1/content`.
pub async fn get_content_list(
    State(state): State<AppState>,
    _op: Operator,
) -> AppResult<Json<Vec<ContentRow>>> {
    Ok(Json(list(&state).await?))
}

/// `GET /content/{version}.bundle`: the static signed file. No authentication: the bundle's
/// signature is what an agent trusts, exactly as when a CDN serves it.
pub async fn serve_file(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
) -> AppResult<Response> {
    let version = name
        .strip_suffix(".bundle")
        .filter(|v| !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| AppError::NotFound("no such content file".into()))?;
    let path = state.config.content_dir.join(format!("{version}.bundle"));
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AppError::NotFound("no such content file".into()));
        }
        Err(e) => return Err(AppError::internal(e)),
    };
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(resp)
}
