//! Content: signed bundles kept as static files, one per content version.
//!
//! The console treats a bundle as an opaque signed file plus its version. Files live in the
//! content dir as `<version>.bundle` and are served read-only at `/content/<version>.bundle`
//! with immutable caching headers, so a CDN or any web server in front can serve them at scale;
//! the database only records version, size and SHA-256. A rollback publishes a *new, higher*
//! version carrying older content through a [`Republisher`], because agents refuse to go back.
//!
//! Every upload is verified by the [`Republisher`] (against the content keys' trust root, with
//! [`verify_signed`]) before anything is stored, and a version is claimed by the transaction
//! that inserts its row: the file takes the version's name only inside it, so two uploads of
//! one version cannot overwrite each other, and the loser gets 409.

use crate::db::BeginWrite;
use std::path::{Path, PathBuf};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use ringfence_content::{
    Outcome, SeenVersions, StructuralValidator, TrustedRoot, UnixTime, VerifyOptions,
    verify_signed_bundle,
};

use crate::auth::{Operator, random_hex};
use crate::clock::Millis;
use crate::error::{AppError, AppResult};
use crate::{AppState, audit, on_db};

/// Largest bundle the console takes.
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;

/// The console's side of the content keys: checks an upload against the trust root before it
/// is stored or offered, and turns the bytes of a published bundle into a bundle with a new,
/// higher content version and the same content. The real implementation (with the content
/// keys) verifies with [`verify_signed`] and re-signs; [`OpaqueCopy`] takes any bytes, for
/// opaque content (drills, tests).
pub trait Republisher: Send + Sync + std::fmt::Debug + 'static {
    fn republish(&self, old: &[u8], old_version: u64, new_version: u64) -> Result<Vec<u8>, String>;

    /// Checks `bytes` as content version `version`: a one-line summary when an agent trusting
    /// the console's root would accept it, the reason otherwise.
    fn verify(&self, bytes: &[u8], version: u64) -> Result<String, String>;

    /// The signed bundle of `base` (content version `base_version`) rebuilt as `new_version`
    /// with `overlay` as its exceptions overlay (replacing any it had), validated like any
    /// content (every exception names a rule of the bundle and fields of the field schema)
    /// and signed with the console's online content keys ([`crate::exceptions`]).
    fn overlay(
        &self,
        _base: &[u8],
        _base_version: u64,
        _new_version: u64,
        _overlay: &[u8],
    ) -> Result<Vec<u8>, String> {
        Err(
            "this console has no content keys (--content-keys): it cannot sign an \
             exceptions overlay"
                .into(),
        )
    }

    /// Checks `bytes` as agent release `version` (a release file signed by the trust root's
    /// releases role): a one-line summary, or the reason an agent would refuse it. Without a
    /// trust root (opaque drills and tests) any bytes pass, unverified.
    fn verify_release(&self, bytes: &[u8], version: &str) -> Result<String, String> {
        let _ = version;
        Ok(format!("{} opaque bytes (not verified)", bytes.len()))
    }
}

/// Takes any bytes and copies them unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpaqueCopy;

impl Republisher for OpaqueCopy {
    fn republish(&self, old: &[u8], _from: u64, _to: u64) -> Result<Vec<u8>, String> {
        Ok(old.to_vec())
    }

    fn verify(&self, bytes: &[u8], _version: u64) -> Result<String, String> {
        Ok(format!("{} opaque bytes (not verified)", bytes.len()))
    }
}

/// Verifies a signed bundle against `root` as an agent would (signatures, roles, expiry, the
/// bundle's structure) and checks it is content version `version`. The summary names the
/// version, the root and the rule count.
pub fn verify_signed(root: &TrustedRoot, bytes: &[u8], version: u64) -> Result<String, String> {
    let opts = VerifyOptions::new(UnixTime::now());
    let verified = verify_signed_bundle(
        bytes,
        root,
        SeenVersions::default(),
        &opts,
        &StructuralValidator,
    )
    .map_err(|e| e.to_string())?;
    if verified.content_version != version {
        return Err(format!(
            "the bundle is content version {}, not {version}",
            verified.content_version
        ));
    }
    Ok(match &verified.outcome {
        Outcome::New { bundle, report } => format!(
            "content version {version} signed under root v{}: {} rule file(s), {} test(s)",
            verified.root.version(),
            bundle.rules().count(),
            report.tests
        ),
        _ => format!(
            "content version {version} signed under root v{}",
            verified.root.version()
        ),
    })
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

/// A bundle written to a temporary file of its own, not yet visible under its version's name.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    /// The file name under the content dir, and the bytes' SHA-256.
    pub file: String,
    pub sha256: String,
}

impl Staged {
    /// Make the file visible under its version's name (an atomic rename).
    pub async fn place(&self) -> std::io::Result<()> {
        tokio::fs::rename(&self.tmp, &self.path).await
    }

    /// Remove the temporary file (after losing a race, or failing).
    pub async fn discard(&self) {
        let _ = tokio::fs::remove_file(&self.tmp).await;
    }
}

/// Write `bytes` for version `version` to a temporary file no other upload shares. Nothing is
/// visible under the version's name until [`Staged::place`], which the caller does inside the
/// transaction that claims the version, so two uploads of one version cannot overwrite each
/// other's file.
pub async fn stage_file(dir: &Path, version: i64, bytes: &[u8]) -> AppResult<Staged> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(AppError::internal)?;
    let file = file_name(version);
    let tmp: PathBuf = dir.join(format!(".{file}.{}.tmp", random_hex(8)?));
    tokio::fs::write(&tmp, bytes)
        .await
        .map_err(|e| AppError::internal(format!("{}: {e}", tmp.display())))?;
    Ok(Staged {
        path: dir.join(&file),
        tmp,
        file,
        sha256: hex::encode(Sha256::digest(bytes)),
    })
}

/// Audit a refused upload and return the 422 for it.
async fn refuse_upload(state: &AppState, actor: &str, version: i64, why: String) -> AppError {
    let now = state.clock.now_ms();
    let evidence = serde_json::json!({"version": version, "reason": why});
    let logged: Result<(), AppError> = async {
        on_db!(&state.db, |pool| {
            audit::record!(
                pool,
                now,
                actor,
                None::<i64>,
                "publish",
                format!("refused: {why}"),
                &evidence
            )
            .await?;
        });
        Ok(())
    }
    .await;
    match logged {
        Ok(()) => AppError::Unprocessable(format!(
            "content version {version} is not a verified bundle: {why}"
        )),
        Err(e) => e,
    }
}

/// Publish `bytes` as `version` after verifying them against the trust root. Refuses a
/// version that exists (409), also when another upload of it races this one. Returns the row.
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
    let verified = match state.republisher.verify(bytes, version.unsigned_abs()) {
        Ok(summary) => summary,
        Err(why) => return Err(refuse_upload(state, actor, version, why).await),
    };
    let exists: Option<(i64,)> = on_db!(&state.db, |pool| {
        sqlx::query_as("SELECT version FROM content WHERE version = $1")
            .bind(version)
            .fetch_optional(pool)
            .await?
    });
    let taken = || {
        AppError::Conflict(format!(
            "content version {version} is already published; versions are immutable"
        ))
    };
    if exists.is_some() {
        return Err(taken());
    }
    let staged = stage_file(&state.config.content_dir, version, bytes).await?;
    let now = state.clock.now_ms();
    let size = i64::try_from(bytes.len()).map_err(AppError::internal)?;
    let row = ContentRow {
        version,
        file: staged.file.clone(),
        sha256: staged.sha256.clone(),
        size,
        carries,
        created_at: now,
    };
    let evidence = serde_json::json!({"version": version, "sha256": row.sha256, "size": size,
        "carries": carries, "verified": verified});
    let inserted: Result<(), sqlx::Error> = on_db!(&state.db, |pool| {
        async {
            let mut tx = pool.begin_write().await?;
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
            // The version is ours once the row is in (a racing insert waits on it, then fails
            // as a duplicate): only now does the file take the version's name.
            staged.place().await.map_err(sqlx::Error::Io)?;
            tx.commit().await
        }
        .await
    });
    match inserted {
        Ok(()) => {}
        // Another upload of the same version claimed it between our check and our insert.
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            staged.discard().await;
            return Err(taken());
        }
        Err(e) => {
            staged.discard().await;
            return Err(e.into());
        }
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

/// Set the fleet's baseline of `kind` (the content version, or the release by its number, every
/// agent may run outside rollouts). Only allowed while there is none: afterwards it moves only
/// through rollouts.
pub async fn set_initial_baseline(
    state: &AppState,
    actor: &str,
    kind: crate::rollout::payload::Kind,
    version: i64,
) -> AppResult<()> {
    let now = state.clock.now_ms();
    let (column, published) = kind.baseline_sql("$1");
    let evidence = serde_json::json!({ column: version });
    let sql = format!(
        "UPDATE fleet SET {column} = $1, revision = revision + 1 \
         WHERE id = 1 AND {column} = 0 AND {published}"
    );
    let what = format!("set initial {kind} baseline");
    let changed = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let r = sqlx::query(&sql).bind(version).execute(&mut *tx).await?;
        if r.rows_affected() == 1 {
            audit::record!(
                &mut *tx,
                now,
                actor,
                None::<i64>,
                "baseline",
                &what,
                &evidence
            )
            .await?;
        }
        tx.commit().await?;
        r.rows_affected()
    });
    if changed != 1 {
        return Err(AppError::Conflict(format!(
            "the fleet already has a {kind} baseline (change it with a rollout), or {} is not published",
            kind.describe(version, None)
        )));
    }
    state.reload_snapshot().await
}

#[derive(Debug, Deserialize)]
pub struct PublishQuery {
    /// Make this the fleet's initial baseline (only when there is none yet).
    #[serde(default)]
    pub baseline: bool,
}

/// `PUT /api/v1/content/{version}`: the body is the signed bundle. Making a bundle signed to
/// drop most rules the first baseline is held for a second operator ([`crate::approvals`]):
/// the bundle is published, and the answer is 202 with the held request.
pub async fn put_content(
    State(state): State<AppState>,
    op: Operator,
    UrlPath(version): UrlPath<i64>,
    Query(q): Query<PublishQuery>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> AppResult<Response> {
    let body = body.map_err(|_| AppError::TooLarge(MAX_BUNDLE_BYTES))?;
    let row = publish(&state, &op.0, version, &body, None).await?;
    if q.baseline {
        if let Some(why) = signed_rule_drop(&body) {
            let held = crate::approvals::ask(
                &state,
                &op.0,
                crate::approvals::kind::BASELINE,
                &serde_json::json!({"version": version}),
                format!(
                    "make content v{version} the first baseline (signed to drop most rules: {why})"
                ),
                crate::roles::Need::Content,
                &why,
            )
            .await?;
            let content = serde_json::to_value(&row).map_err(AppError::internal)?;
            return Ok(crate::approvals::held(held, Some(("content", content))));
        }
        set_initial_baseline(
            &state,
            &op.0,
            crate::rollout::payload::Kind::Content,
            version,
        )
        .await?;
    }
    Ok(Json(row).into_response())
}

/// The reason a signed bundle says it may drop most of the rules agents run (its
/// `allow-rule-drop` metadata, or `allow-empty`), read without verifying: call it on bytes
/// [`publish`] verified. `None` for bytes that are not a signed bundle (opaque drill content).
pub fn signed_rule_drop(bytes: &[u8]) -> Option<String> {
    let limits = ringfence_content::Limits::default();
    let signed = ringfence_content::SignedBundle::decode(bytes, &limits).ok()?;
    let bundle = ringfence_content::Bundle::decode(&signed.payload, &limits).ok()?;
    bundle
        .allowed_rule_drop()
        .or(bundle.allowed_empty())
        .map(str::to_owned)
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
