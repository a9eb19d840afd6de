//! Secrets and operator authentication.
//!
//! Every secret the console mints (enrollment tokens, agent credentials, operator API tokens,
//! session cookies) is 256 random bits shown once and stored only as its SHA-256. Operator
//! passwords are stored as Argon2id hashes. Write endpoints take an [`Operator`]: either
//! `Authorization: Bearer rfo1.…` (the API token) or the dashboard's session cookie together
//! with the `x-ringfence-csrf` header that only our own pages' JavaScript sends (the cookie is
//! also `SameSite=Strict`), so a cross-site form cannot ride an operator's session.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use sha2::{Digest, Sha256};

use crate::clock::Millis;
use crate::error::{AppError, AppResult};
use crate::{AppState, on_db};

/// Session cookie name.
pub const SESSION_COOKIE: &str = "rf_session";
/// Header the dashboard's JavaScript sends with cookie-authenticated writes.
pub const CSRF_HEADER: &str = "x-ringfence-csrf";

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> Result<String, AppError> {
    let mut buf = vec![0u8; n];
    getrandom::getrandom(&mut buf).map_err(AppError::internal)?;
    Ok(hex::encode(buf))
}

/// SHA-256 of `s`, lowercase hex: how every bearer secret is stored.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Equality that takes the same time wherever the first difference is.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Argon2id hash of a password (PHC string).
pub fn hash_password(password: &str) -> Result<String, AppError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(AppError::internal)?;
    let salt = SaltString::encode_b64(&salt).map_err(AppError::internal)?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(AppError::internal)
}

/// Check a password against a stored PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Create (or replace the password of) an operator and mint an API token for them.
/// Returns the token; it is not stored anywhere in clear.
pub async fn create_operator(
    state: &AppState,
    name: &str,
    password: &str,
) -> Result<String, AppError> {
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(AppError::BadRequest(
            "operator name must be 1..=64 characters".into(),
        ));
    }
    let phc = hash_password(password)?;
    let token = format!("rfo1.{}", random_hex(32)?);
    let now = state.clock.now_ms();
    on_db!(&state.db, |pool| {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO operators (name, password_hash, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash",
        )
        .bind(name)
        .bind(&phc)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, operator, created_at) VALUES ($1, $2, $3)",
        )
        .bind(sha256_hex(&token))
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    });
    Ok(token)
}

/// The operator an API token belongs to, if the console knows the token.
pub async fn token_operator(state: &AppState, token: &str) -> AppResult<Option<String>> {
    let row: Option<(String,)> = on_db!(&state.db, |pool| {
        sqlx::query_as("SELECT operator FROM api_tokens WHERE token_hash = $1")
            .bind(sha256_hex(token))
            .fetch_optional(pool)
            .await?
    });
    Ok(row.map(|(op,)| op))
}

/// Revoke every API token and end every session of `operator` (a login being rotated).
/// Returns how many tokens were revoked.
pub async fn revoke_operator_secrets(state: &AppState, operator: &str) -> AppResult<u64> {
    let revoked = on_db!(&state.db, |pool| {
        let mut tx = pool.begin().await?;
        let tokens = sqlx::query("DELETE FROM api_tokens WHERE operator = $1")
            .bind(operator)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM sessions WHERE operator = $1")
            .bind(operator)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tokens
    });
    Ok(revoked)
}

/// Start a session for `operator`; returns the cookie value. A `one_time` session can be used
/// once, to trade for a normal session (the sign-in link `ringfence up` prints).
pub async fn create_session(
    state: &AppState,
    operator: &str,
    ttl_ms: Millis,
    one_time: bool,
) -> AppResult<String> {
    let secret = random_hex(32)?;
    let expires = state.clock.now_ms().saturating_add(ttl_ms);
    on_db!(&state.db, |pool| {
        sqlx::query(
            "INSERT INTO sessions (session_hash, operator, expires_at, one_time) VALUES ($1, $2, $3, $4)",
        )
        .bind(sha256_hex(&secret))
        .bind(operator)
        .bind(expires)
        .bind(i64::from(one_time))
        .execute(pool)
        .await?;
    });
    Ok(secret)
}

/// Trade a one-time sign-in secret for its operator name, consuming it.
pub async fn consume_one_time(state: &AppState, secret: &str) -> AppResult<String> {
    let now = state.clock.now_ms();
    let row: Option<(String,)> = on_db!(&state.db, |pool| {
        sqlx::query_as(
            "DELETE FROM sessions WHERE session_hash = $1 AND one_time = 1 AND expires_at > $2 \
             RETURNING operator",
        )
        .bind(sha256_hex(secret))
        .bind(now)
        .fetch_optional(pool)
        .await?
    });
    row.map(|(op,)| op).ok_or(AppError::Unauthorized(
        "sign-in link is unknown, used or expired",
    ))
}

/// Check a name and password; the operator's name on success.
pub async fn check_login(state: &AppState, name: &str, password: &str) -> AppResult<String> {
    let row: Option<(String,)> = on_db!(&state.db, |pool| {
        sqlx::query_as("SELECT password_hash FROM operators WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?
    });
    let (phc,) = row.ok_or(AppError::Unauthorized("wrong name or password"))?;
    let password = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &phc))
        .await
        .map_err(AppError::internal)?;
    if ok {
        Ok(name.to_owned())
    } else {
        Err(AppError::Unauthorized("wrong name or password"))
    }
}

/// End a session.
pub async fn delete_session(state: &AppState, secret: &str) -> AppResult<()> {
    on_db!(&state.db, |pool| {
        sqlx::query("DELETE FROM sessions WHERE session_hash = $1")
            .bind(sha256_hex(secret))
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// The value of a cookie in the request, if present.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Look up the operator behind a session cookie.
pub async fn session_operator(state: &AppState, secret: &str) -> AppResult<Option<String>> {
    let now = state.clock.now_ms();
    let row: Option<(String,)> = on_db!(&state.db, |pool| {
        sqlx::query_as(
            "SELECT operator FROM sessions WHERE session_hash = $1 AND expires_at > $2 AND one_time = 0",
        )
        .bind(sha256_hex(secret))
        .bind(now)
        .fetch_optional(pool)
        .await?
    });
    Ok(row.map(|(op,)| op))
}

/// An authenticated operator (API token, or session cookie plus CSRF header on writes).
#[derive(Debug, Clone)]
pub struct Operator(pub String);

impl FromRequestParts<AppState> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> AppResult<Operator> {
        if let Some(token) = bearer(parts) {
            return token_operator(state, token)
                .await?
                .map(Operator)
                .ok_or(AppError::Unauthorized("unknown operator token"));
        }
        if let Some(secret) = cookie(parts, SESSION_COOKIE) {
            let safe = matches!(parts.method, Method::GET | Method::HEAD);
            if !safe && !parts.headers.contains_key(CSRF_HEADER) {
                return Err(AppError::Forbidden(format!(
                    "cookie-authenticated writes need the {CSRF_HEADER} header"
                )));
            }
            if let Some(op) = session_operator(state, secret).await? {
                return Ok(Operator(op));
            }
        }
        Err(AppError::Unauthorized("operator authentication required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let phc = hash_password("correct horse").unwrap();
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong", &phc));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
