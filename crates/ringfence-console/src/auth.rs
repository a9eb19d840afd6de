//! Secrets and operator authentication.
//!
//! Every secret the console mints (enrollment tokens, agent credentials, operator API tokens,
//! session cookies) is 256 random bits shown once and stored only as its SHA-256. Operator
//! passwords are stored as Argon2id hashes. Write endpoints take an [`Operator`]: either
//! `Authorization: Bearer rfo1.…` (the API token) or the dashboard's session cookie together
//! with the `x-ringfence-csrf` header that only our own pages' JavaScript sends (the cookie is
//! also `SameSite=Strict`), so a cross-site form cannot ride an operator's session.

use crate::db::BeginWrite;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use sha2::{Digest, Sha256};

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use crate::clock::Millis;
use crate::error::{AppError, AppResult};
use crate::quota::Backoff;
use crate::roles::Role;
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

/// Largest Argon2 memory a stored hash may ask for (a corrupted row cannot make a login
/// allocate gigabytes).
const MAX_ARGON2_BLOCKS: usize = 256 * 1024;

/// [`verify_password`] with Argon2's memory (19 MiB with the default parameters) taken from
/// `memory` and left there for the next verification, so verifications allocate nothing and
/// the console's memory stays at what its few verifiers hold, however many logins come.
pub fn verify_password_in(password: &str, phc: &str, memory: &mut Vec<argon2::Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(expected), Some(salt)) = (hash.hash, hash.salt) else {
        return false;
    };
    let (Ok(params), Ok(algorithm)) = (
        argon2::Params::try_from(&hash),
        argon2::Algorithm::try_from(hash.algorithm),
    ) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if blocks > MAX_ARGON2_BLOCKS {
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    argon2::Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..])
        .is_ok()
        && ct_eq(out, expected.as_bytes())
}

/// Default lifetime of an operator API token (90 days).
pub const TOKEN_TTL_MS: Millis = 90 * 86_400_000;
/// Longest lifetime an operator API token may be given (a year).
pub const MAX_TOKEN_TTL_MS: Millis = 365 * 86_400_000;
/// Hex digits of a token's hash that name it in listings (the console never stores the token).
pub const TOKEN_ID_LEN: usize = 12;

/// A checked operator name: 1 to 64 printable characters.
pub fn check_operator_name(name: &str) -> AppResult<()> {
    if name.is_empty()
        || name.len() > 64
        || name
            .chars()
            .any(|c| c.is_control() || ringfence_wire::is_hidden_char(c))
    {
        return Err(AppError::BadRequest(
            "operator name must be 1..=64 printable characters".into(),
        ));
    }
    Ok(())
}

/// A token lifetime as asked for: the default when absent, refused when not in
/// `1..=`[`MAX_TOKEN_TTL_MS`].
pub fn token_ttl(asked: Option<Millis>) -> AppResult<Millis> {
    match asked {
        None => Ok(TOKEN_TTL_MS),
        Some(ms) if (1..=MAX_TOKEN_TTL_MS).contains(&ms) => Ok(ms),
        Some(ms) => Err(AppError::Unprocessable(format!(
            "ttl_ms: {ms} is not within 1..={MAX_TOKEN_TTL_MS} (a year at most)"
        ))),
    }
}

/// Create (or replace the password of) an admin operator and mint an API token for them
/// (`console serve --init-operator`, `up`, drills, tests). Replacing a password ends the
/// operator's sessions and revokes their tokens. Returns the token; it is not stored anywhere
/// in clear.
pub async fn create_operator(
    state: &AppState,
    name: &str,
    password: &str,
) -> Result<String, AppError> {
    create_operator_as(state, name, password, Role::Admin, None, true)
        .await
        .map(|(token, _)| token)
}

/// Create an operator with `role` and mint an API token of `ttl_ms` (default when `None`) for
/// them; with `replace`, an existing operator's password and role are replaced and their
/// sessions and tokens ended, otherwise an existing name is refused (409). Returns the token
/// and its expiry.
pub async fn create_operator_as(
    state: &AppState,
    name: &str,
    password: &str,
    role: Role,
    ttl_ms: Option<Millis>,
    replace: bool,
) -> Result<(String, Millis), AppError> {
    check_operator_name(name)?;
    let ttl = token_ttl(ttl_ms)?;
    let phc = hash_password(password)?;
    let token = format!("rfo1.{}", random_hex(32)?);
    let now = state.clock.now_ms();
    let expires = now.saturating_add(ttl);
    let created = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let existing: Option<(String,)> =
            sqlx::query_as("SELECT name FROM operators WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        if existing.is_some() && !replace {
            tx.rollback().await?;
            false
        } else {
            if existing.is_some() {
                sqlx::query("UPDATE operators SET password_hash = $2, role = $3 WHERE name = $1")
                    .bind(name)
                    .bind(&phc)
                    .bind(role.as_str())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM sessions WHERE operator = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $2 WHERE operator = $1 AND revoked_at IS NULL",
                )
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE fleet SET revision = revision + 1 WHERE id = 1")
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query(
                    "INSERT INTO operators (name, password_hash, created_at, role) VALUES ($1, $2, $3, $4)",
                )
                .bind(name)
                .bind(&phc)
                .bind(now)
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO api_tokens (token_hash, operator, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(sha256_hex(&token))
            .bind(name)
            .bind(now)
            .bind(expires)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            true
        }
    });
    if !created {
        return Err(AppError::Conflict(format!(
            "operator {name:?} exists already"
        )));
    }
    state.operator_tokens.clear();
    Ok((token, expires))
}

/// Mint another API token for an existing operator; returns it and its expiry.
pub async fn mint_token(
    state: &AppState,
    operator: &str,
    ttl_ms: Option<Millis>,
) -> AppResult<(String, Millis)> {
    let ttl = token_ttl(ttl_ms)?;
    let token = format!("rfo1.{}", random_hex(32)?);
    let now = state.clock.now_ms();
    let expires = now.saturating_add(ttl);
    let inserted = on_db!(&state.db, |pool| {
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, operator, created_at, expires_at) \
             SELECT $1, name, $3, $4 FROM operators WHERE name = $2",
        )
        .bind(sha256_hex(&token))
        .bind(operator)
        .bind(now)
        .bind(expires)
        .execute(pool)
        .await?
        .rows_affected()
    });
    if inserted != 1 {
        return Err(AppError::NotFound(format!("no operator {operator:?}")));
    }
    Ok((token, expires))
}

/// The operator an API token belongs to, if the token is known, unexpired and not revoked.
pub async fn token_operator(state: &AppState, token: &str) -> AppResult<Option<String>> {
    match token_authed(state, token).await {
        Ok(a) => Ok(Some(a.name)),
        Err(AppError::Unauthorized(_) | AppError::Forbidden(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Revoke every API token and end every session of `operator` (a login being rotated).
/// Returns how many tokens were revoked.
pub async fn revoke_operator_secrets(state: &AppState, operator: &str) -> AppResult<u64> {
    let now = state.clock.now_ms();
    let revoked = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let tokens = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $2 WHERE operator = $1 AND revoked_at IS NULL",
        )
        .bind(operator)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM sessions WHERE operator = $1")
            .bind(operator)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE fleet SET revision = revision + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tokens
    });
    state.operator_tokens.clear();
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

/// A PHC string with the default Argon2id parameters whose hash matches no password: unknown
/// names are verified against it, so they cost what known names cost.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$3FbCG7rDZ14k3IznZneETw$ihkMk2vkwuNeiGtNB4WnmiMAPMZ5miVk5YYf6grra0w";

/// Check a name and password; the operator's name on success. An unknown name runs the same
/// Argon2 verification (against [`DUMMY_PHC`]) as a known one, so the answer's time does not
/// tell which names exist. No limits here: [`login`] adds them for the login form.
pub async fn check_login(state: &AppState, name: &str, password: &str) -> AppResult<String> {
    let row: Option<(String,)> = on_db!(&state.db, |pool| {
        sqlx::query_as("SELECT password_hash FROM operators WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?
    });
    let known = row.is_some();
    let phc = row.map_or_else(|| DUMMY_PHC.to_owned(), |(phc,)| phc);
    let password = password.to_owned();
    state
        .metrics
        .argon2_verifications
        .fetch_add(1, Ordering::Relaxed);
    let pool = state.logins.clone();
    let ok = tokio::task::spawn_blocking(move || {
        let mut memory = pool.take_memory();
        let ok = verify_password_in(&password, &phc, &mut memory);
        pool.give_memory(memory);
        ok
    })
    .await
    .map_err(AppError::internal)?;
    if ok && known {
        Ok(name.to_owned())
    } else {
        Err(AppError::Unauthorized("wrong name or password"))
    }
}

/// Most password checks (Argon2, 19 MiB and a core each) running at once.
pub const LOGIN_VERIFIERS: usize = 2;

/// Password checks running at once on this machine: [`LOGIN_VERIFIERS`], but no more than half
/// the cores, so a login flood leaves check-ins a core.
pub fn login_verifiers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cores / 2).clamp(1, LOGIN_VERIFIERS)
}
/// Logins waiting for a verifier; one more is answered 503 at once.
pub const LOGIN_QUEUE: usize = 16;
/// Longest a login waits for a verifier before it is answered 503.
pub const LOGIN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What keeps the login form from being a way to exhaust the console or guess passwords: a
/// small pool of password verifiers with a short queue, and backoff after failures per client
/// address (an IPv6 /64 counts as one) and per name (known or not).
#[derive(Debug)]
pub struct LoginLimits {
    verifiers: tokio::sync::Semaphore,
    /// Argon2 memory of the verifiers, kept between logins.
    memory: std::sync::Mutex<Vec<Vec<argon2::Block>>>,
    waiting: std::sync::atomic::AtomicUsize,
    pub per_address: Backoff,
    pub per_name: Backoff,
}

impl Default for LoginLimits {
    fn default() -> LoginLimits {
        LoginLimits {
            verifiers: tokio::sync::Semaphore::new(login_verifiers()),
            memory: std::sync::Mutex::new(Vec::new()),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            // An office behind one NAT gets more room than one name.
            per_address: Backoff::new(20, 1_000, 15 * 60_000, 65_536),
            per_name: Backoff::new(5, 1_000, 15 * 60_000, 65_536),
        }
    }
}

impl LoginLimits {
    fn take_memory(&self) -> Vec<argon2::Block> {
        match self.memory.lock() {
            Ok(mut m) => m.pop(),
            Err(p) => p.into_inner().pop(),
        }
        .unwrap_or_default()
    }

    fn give_memory(&self, memory: Vec<argon2::Block>) {
        let mut m = match self.memory.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        // Checks outside the login form (`ringfence up`) may add one more; keep no more than
        // the verifiers use.
        if m.len() < login_verifiers() {
            m.push(memory);
        }
    }
}

/// The key login backoff uses for a client address.
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// A login name as it may appear in a log line: printable, at most 64 characters.
fn loggable(name: &str) -> String {
    ringfence_wire::printable(&name.chars().take(64).collect::<String>())
}

/// A login from the form, from `peer` (none when the request did not come through the accept
/// loop: tests driving the router directly). Refused with 429 while the address or the name
/// is backing off after failures and with 503 when too many logins already wait for a password
/// check; neither costs an Argon2 verification.
pub async fn login(
    state: &AppState,
    name: &str,
    password: &str,
    peer: Option<IpAddr>,
) -> AppResult<String> {
    let limits = &state.logins;
    let address = peer.map_or_else(|| "unknown".to_owned(), address_key);
    let name_key = name.chars().take(128).collect::<String>();
    let throttled = |state: &AppState| -> AppResult<()> {
        let now = state.clock.now_ms();
        let wait = limits
            .per_address
            .wait(&address, now)
            .max(limits.per_name.wait(&name_key, now));
        if wait > 0 {
            state
                .metrics
                .logins_throttled
                .fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = state.metrics.login_log.allow() {
                tracing::warn!(name = %loggable(name), address = %address, wait_ms = wait,
                    suppressed_before = suppressed, "login refused: backing off after failed logins");
            }
            return Err(AppError::TooManyRequests {
                message: "too many failed logins; wait and try again",
                retry_after_s: u64::try_from(wait.saturating_add(999) / 1000).unwrap_or(1),
            });
        }
        Ok(())
    };
    throttled(state)?;
    // Queue for a verifier, but only behind a few others.
    let queued = limits.waiting.fetch_add(1, Ordering::AcqRel);
    let permit = if queued >= LOGIN_QUEUE {
        None
    } else {
        tokio::time::timeout(LOGIN_WAIT, limits.verifiers.acquire())
            .await
            .ok()
            .and_then(Result::ok)
    };
    limits.waiting.fetch_sub(1, Ordering::AcqRel);
    let Some(_permit) = permit else {
        state.metrics.logins_busy.fetch_add(1, Ordering::Relaxed);
        return Err(AppError::Unavailable(
            "too many logins in progress; try again in a moment",
        ));
    };
    // Failures recorded while this one waited count too.
    throttled(state)?;
    match check_login(state, name, password).await {
        Ok(op) => {
            limits.per_name.clear(&name_key);
            state.metrics.logins_ok.fetch_add(1, Ordering::Relaxed);
            tracing::info!(operator = %loggable(&op), address = %address, "operator signed in");
            Ok(op)
        }
        Err(AppError::Unauthorized(msg)) => {
            let now = state.clock.now_ms();
            limits.per_address.fail(&address, now);
            limits.per_name.fail(&name_key, now);
            state.metrics.logins_failed.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = state.metrics.login_log.allow() {
                tracing::warn!(name = %loggable(name), address = %address,
                    suppressed_before = suppressed, "login failed: wrong name or password");
            }
            Err(AppError::Unauthorized(msg))
        }
        Err(e) => Err(e),
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

/// An operator who proved who they are, with their role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authed {
    pub name: String,
    pub role: Role,
}

/// Operator tokens this console checked recently: token hash → operator, role and expiry.
/// Dropped whenever `fleet.revision` moves (a token revoked or an operator's role changed
/// through any console), so a revoked token is refused everywhere within one revision poll.
#[derive(Debug, Default)]
pub struct TokenCache {
    inner: std::sync::Mutex<TokenCacheInner>,
}

#[derive(Debug, Default)]
struct TokenCacheInner {
    tokens: std::collections::HashMap<String, (Authed, Millis)>,
    /// Moves at every clear, so a lookup that began before a clear does not refill the cache
    /// with what it read before the revocation.
    generation: u64,
}

/// Most tokens kept; the cache starts over when full.
const TOKEN_CACHE_MAX: usize = 10_000;

impl TokenCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, TokenCacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forget every cached token.
    pub fn clear(&self) {
        let mut c = self.lock();
        c.tokens.clear();
        c.generation = c.generation.wrapping_add(1);
    }

    fn get(&self, hash: &str) -> Option<(Authed, Millis)> {
        self.lock().tokens.get(hash).cloned()
    }

    fn generation(&self) -> u64 {
        self.lock().generation
    }

    fn insert(&self, generation: u64, hash: String, authed: Authed, expires_at: Millis) {
        let mut c = self.lock();
        if c.generation != generation {
            return;
        }
        if c.tokens.len() >= TOKEN_CACHE_MAX {
            c.tokens.clear();
        }
        c.tokens.insert(hash, (authed, expires_at));
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.lock().tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Check an operator API token: known, not revoked, not expired, its operator's role.
pub async fn token_authed(state: &AppState, token: &str) -> AppResult<Authed> {
    let hash = sha256_hex(token);
    let now = state.clock.now_ms();
    let cache = &state.operator_tokens;
    if let Some((authed, expires_at)) = cache.get(&hash) {
        if expires_at > now {
            return Ok(authed);
        }
        return Err(AppError::Unauthorized("operator token expired"));
    }
    let generation = cache.generation();
    type Row = (String, String, Option<i64>, Option<i64>);
    let row: Option<Row> = on_db!(&state.db, |pool| {
        sqlx::query_as(
            "SELECT t.operator, o.role, t.expires_at, t.revoked_at FROM api_tokens t \
             JOIN operators o ON o.name = t.operator WHERE t.token_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(pool)
        .await?
    });
    let Some((name, role, expires_at, revoked_at)) = row else {
        return Err(AppError::Unauthorized("unknown operator token"));
    };
    if revoked_at.is_some() {
        return Err(AppError::Unauthorized("operator token revoked"));
    }
    let expires_at = expires_at.unwrap_or(0);
    if expires_at <= now {
        return Err(AppError::Unauthorized("operator token expired"));
    }
    let role = Role::parse(&role).map_err(|e| {
        AppError::Forbidden(format!(
            "operator {name:?} has a role this console does not know: {e}"
        ))
    })?;
    let authed = Authed { name, role };
    cache.insert(generation, hash, authed.clone(), expires_at);
    Ok(authed)
}

/// The operator and role behind a session cookie.
pub async fn session_authed(state: &AppState, secret: &str) -> AppResult<Option<Authed>> {
    let now = state.clock.now_ms();
    let row: Option<(String, String)> = on_db!(&state.db, |pool| {
        sqlx::query_as(
            "SELECT s.operator, o.role FROM sessions s JOIN operators o ON o.name = s.operator \
             WHERE s.session_hash = $1 AND s.expires_at > $2 AND s.one_time = 0",
        )
        .bind(sha256_hex(secret))
        .bind(now)
        .fetch_optional(pool)
        .await?
    });
    let Some((name, role)) = row else {
        return Ok(None);
    };
    let role = Role::parse(&role).map_err(|e| {
        AppError::Forbidden(format!(
            "operator {name:?} has a role this console does not know: {e}"
        ))
    })?;
    Ok(Some(Authed { name, role }))
}

/// Who sent this request: `Authorization: Bearer rfo1.…`, or the dashboard's session cookie
/// (with the [`CSRF_HEADER`] on writes). `Ok(None)` when it carries neither.
pub async fn authenticate(parts: &Parts, state: &AppState) -> AppResult<Option<Authed>> {
    if let Some(token) = bearer(parts) {
        return token_authed(state, token).await.map(Some);
    }
    if let Some(secret) = cookie(parts, SESSION_COOKIE) {
        let safe = matches!(parts.method, Method::GET | Method::HEAD);
        if !safe && !parts.headers.contains_key(CSRF_HEADER) {
            return Err(AppError::Forbidden(format!(
                "cookie-authenticated writes need the {CSRF_HEADER} header"
            )));
        }
        return session_authed(state, secret).await;
    }
    Ok(None)
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = AppError;

    /// The operator the role check ([`crate::roles::enforce`]) let through, or, outside it,
    /// the request's credentials checked here.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> AppResult<Authed> {
        if let Some(a) = parts.extensions.get::<Authed>() {
            return Ok(a.clone());
        }
        authenticate(parts, state)
            .await?
            .ok_or(AppError::Unauthorized("operator authentication required"))
    }
}

/// An authenticated operator's name (API token, or session cookie plus CSRF header on writes).
#[derive(Debug, Clone)]
pub struct Operator(pub String);

impl FromRequestParts<AppState> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> AppResult<Operator> {
        Authed::from_request_parts(parts, state)
            .await
            .map(|a| Operator(a.name))
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
        let mut memory = Vec::new();
        assert!(verify_password_in("correct horse", &phc, &mut memory));
        assert!(!verify_password_in("wrong", &phc, &mut memory));
        assert!(!verify_password_in("x", "not a phc string", &mut memory));
        let blocks = memory.len();
        assert!(blocks > 0);
        assert!(verify_password_in("correct horse", &phc, &mut memory));
        assert_eq!(memory.len(), blocks, "memory reused, not grown");
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_costs() {
        let dummy = PasswordHash::new(DUMMY_PHC).unwrap();
        let real_phc = hash_password("x").unwrap();
        let real = PasswordHash::new(&real_phc).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert!(!verify_password("", DUMMY_PHC));
    }

    #[test]
    fn addresses_of_one_ipv6_64_share_a_key() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        let v4: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(v4), "192.0.2.1");
    }

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
