//! Maintenance tokens: the one authorised way to disarm, stop or uninstall a tamper-protected
//! agent. This module owns the token's claims and format, signing a token with the maintenance
//! role's keys ([`sign_maintenance_token`], behind `ringfence content maintenance-token`) and
//! verifying one against the agent's trusted root ([`verify_maintenance_token`]). What the
//! agent does with a verified token is the agent's business, not this module's.
//!
//! The agent refuses kill, ptrace and changes to its files, root included, so switching it off
//! must take more than a root shell on the host. It takes a token signed by a threshold of the
//! trust root's *maintenance role* keys: a role of its own, set up with the root
//! (`content keys init`) and delegated by it, kept offline like the root keys but used more
//! often, so disarming one host never brings the root keys out of the safe. A root made
//! before the role existed has no maintenance role; there the root role's keys sign tokens
//! (`content keys add-maintenance` adds the role by a root rotation, after which the root
//! keys no longer do). The content keys, which sign routinely and sit online on the console
//! (targets, snapshot, timestamp), are refused by name, and a root may not give them the
//! maintenance role. Signature checking is the same code bundles use
//! ([`crate::metadata`]'s envelope parser and threshold count), not a second implementation.
//!
//! # Format
//! The TUF metadata envelope, in canonical JSON ([`crate::canonical`]); the signatures cover
//! the canonical JSON of `signed`, exactly as for root, timestamp, snapshot and targets:
//! ```text
//! {"signatures":[{"keyid":"<hex>","sig":"<hex>"},...],
//!  "signed":{"_type":"maintenance","action":"disarm"|"stop"|"uninstall",
//!            "expires":"YYYY-MM-DDTHH:MM:SSZ","host":"<host name>"|"*",
//!            "issued":"YYYY-MM-DDTHH:MM:SSZ","nonce":"<text>","reason":"<text>"}}
//! ```
//! `_type` keeps tokens and root metadata apart although the same keys sign both: a signed
//! root is not a token, and a token is not a root.
//!
//! # Checks, in order
//! size (at most [`MAX_TOKEN_BYTES`], before anything is parsed) → envelope JSON, unknown
//! fields refused → `_type` is `maintenance` → a threshold of the trusted root's root-role
//! keys signed `signed` → `signed` parsed strictly (unknown fields refused) → field rules
//! (host, nonce, reason) → `expires` after `issued` by at most [`MAX_VALIDITY_SECS`] (7 days)
//! → not expired at `now` → not issued more than [`MAX_CLOCK_SKEW_SECS`] (5 minutes) after
//! `now` → the token's host is this host (ASCII case-insensitive: host names are) or `*`.
//! Every refusal is a [`MaintenanceError`] naming what was wrong, carried to callers as
//! [`VerifyError::Maintenance`]. Signing applies the same field and validity rules, so the
//! CLI never hands out a token no agent would accept.
//!
//! # `host = "*"`
//! Allowed, and it means any host: one token then disarms, stops or uninstalls *every* agent
//! it reaches, for as long as it is valid. A fleet-wide token is a loaded weapon: leaked, it
//! switches protection off across the fleet. Prefer one token per host, the shortest validity
//! that works, and keep a `*` token's file as carefully as the root keys.
//!
//! # Deliberately left out
//! - **No memory of used nonces.** The agent acts on a token once (it disarms, stops or goes
//!   away) and every token dies within 7 days, so a replay can at most repeat the same order
//!   on a host it was already meant for, within the window its signers chose. The nonce makes
//!   each token unique and traceable in the agent's report; keep validity short.
//! - **The root's own `expires` is not enforced.** A token is fresh by its own `issued` and
//!   `expires`; refusing it because the agent's root metadata went stale would make an agent
//!   that missed content updates for a year impossible to stop or remove.
//! - **No root chain in the token.** A token is checked against the root the agent trusts now.
//!   After a root rotation, an agent that has not yet received a bundle carrying the new root
//!   only knows the old root keys and refuses tokens signed by the new ones (threshold not
//!   met): deliver content with the new root first.

use std::fmt;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::VerifyError;
use crate::keys::KeySet;
use crate::metadata::{self, Envelope, KeysOf, Role, verify_threshold};
use crate::time::UnixTime;
use crate::verify::TrustedRoot;

/// Largest token accepted, checked before any parsing. Real tokens are well under 2 KiB.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Longest validity (`expires - issued`) a token may have: 7 days.
pub const MAX_VALIDITY_SECS: u64 = 7 * 86_400;
/// How far in the future `issued` may be (clocks of signer and host disagree): 5 minutes.
pub const MAX_CLOCK_SKEW_SECS: u64 = 5 * 60;
/// The `host` that means every host. See the module documentation before using it.
pub const ANY_HOST: &str = "*";
/// The `_type` of a maintenance token's `signed`.
pub const TOKEN_TYPE: &str = "maintenance";

/// Longest host name (DNS limit).
const MAX_HOST_BYTES: usize = 253;
const MAX_NONCE_BYTES: usize = 128;
const MAX_REASON_BYTES: usize = 4096;
/// Random bytes in a nonce made by [`MaintenanceClaims::new`] (hex-encoded).
const NONCE_BYTES: usize = 16;

/// What a token orders the agent to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaintenanceAction {
    /// Lift self-protection (kill, ptrace and file guards) while the agent keeps running.
    Disarm,
    /// Stop the agent.
    Stop,
    /// Remove the agent from the host.
    Uninstall,
}

impl MaintenanceAction {
    /// Every action.
    pub const ALL: [MaintenanceAction; 3] = [
        MaintenanceAction::Disarm,
        MaintenanceAction::Stop,
        MaintenanceAction::Uninstall,
    ];

    /// The lower-case name, as in tokens and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            MaintenanceAction::Disarm => "disarm",
            MaintenanceAction::Stop => "stop",
            MaintenanceAction::Uninstall => "uninstall",
        }
    }
}

impl fmt::Display for MaintenanceAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a maintenance token says: which action, for which host, when, why. Verified claims
/// come only from [`verify_maintenance_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceClaims {
    pub action: MaintenanceAction,
    /// The agent's host name, or [`ANY_HOST`] (`*`): any host. A fleet-wide token is a
    /// loaded weapon; see the module documentation.
    pub host: String,
    pub issued: UnixTime,
    /// At most [`MAX_VALIDITY_SECS`] after `issued`.
    pub expires: UnixTime,
    /// Why: shown in the agent's report (one line, no control characters).
    pub reason: String,
    /// Makes every token unique and traceable. Not remembered by the agent (see the module
    /// documentation).
    pub nonce: String,
}

impl MaintenanceClaims {
    /// Claims issued at `now`, valid for `valid_for_secs`, with a fresh random nonce (16 bytes
    /// of operating-system randomness, hex). The rules are checked when signing.
    pub fn new(
        action: MaintenanceAction,
        host: impl Into<String>,
        now: UnixTime,
        valid_for_secs: u64,
        reason: impl Into<String>,
    ) -> Result<MaintenanceClaims, MaintenanceError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::getrandom(&mut nonce).map_err(|e| MaintenanceError::Random(e.to_string()))?;
        Ok(MaintenanceClaims {
            action,
            host: host.into(),
            issued: now,
            expires: now.plus_secs(valid_for_secs),
            reason: reason.into(),
            nonce: hex::encode(nonce),
        })
    }

    /// Whether the token is for every host (`host` is `*`).
    pub fn is_fleet_wide(&self) -> bool {
        self.host == ANY_HOST
    }

    /// Whether the token names `host` (ASCII case-insensitively) or is fleet-wide.
    pub fn is_for_host(&self, host: &str) -> bool {
        self.is_fleet_wide() || self.host.eq_ignore_ascii_case(host)
    }
}

/// Why a maintenance token was refused, or could not be made. Every message starts with
/// "maintenance token" and names the field, key or time that was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaintenanceError {
    #[error("maintenance token is {size} bytes, limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    /// Not JSON of the token's shape: syntax, unknown or missing fields, bad timestamps.
    #[error("maintenance token: {detail}")]
    Malformed { detail: String },
    /// Signed metadata of another kind (a root, say), not a token.
    #[error("maintenance token: _type is {found:?}, expected \"maintenance\"")]
    WrongType { found: String },
    #[error("maintenance token: signature by key {keyid} does not verify against {signer}")]
    BadSignature { keyid: String, signer: String },
    /// Signed by a key that belongs to another role (targets, snapshot, timestamp).
    #[error("maintenance token: signed by key {keyid} of the {key_role} role; needs {expected}")]
    SignedByWrongRole {
        keyid: String,
        key_role: Role,
        expected: String,
    },
    /// Signed by keys the trusted root does not list at all.
    #[error(
        "maintenance token: signed by keys this root does not trust: expected {signer} \
         ({expected}, threshold {threshold}), seen {seen}"
    )]
    UntrustedKeys {
        signer: String,
        expected: String,
        seen: String,
        threshold: u32,
    },
    #[error("maintenance token: {valid} valid signatures from {signer}, threshold is {threshold}")]
    ThresholdNotMet {
        signer: String,
        valid: usize,
        threshold: u32,
    },
    /// The trusted root cannot check root-role signatures (cannot happen for a
    /// [`TrustedRoot`], which was checked when it was built).
    #[error("maintenance token: the trusted root cannot check it: {detail}")]
    Root { detail: String },
    /// A claim breaks a field rule (empty, too long, control characters, a pattern host).
    #[error("maintenance token: {field} {value:?} {problem}")]
    InvalidField {
        field: &'static str,
        /// The value, cut to 64 characters.
        value: String,
        problem: String,
    },
    #[error("maintenance token: expires at {expires}, not after it was issued at {issued}")]
    EndsBeforeIssued { issued: UnixTime, expires: UnixTime },
    #[error(
        "maintenance token: valid for {valid_secs} s (issued {issued}, expires {expires}); \
         the longest allowed is {max_secs} s (7 days)"
    )]
    ValidTooLong {
        issued: UnixTime,
        expires: UnixTime,
        valid_secs: u64,
        max_secs: u64,
    },
    #[error("maintenance token: expired at {expires} (now {now})")]
    Expired { expires: UnixTime, now: UnixTime },
    #[error(
        "maintenance token: issued at {issued}, more than {max_skew_secs} s after now ({now}); \
         check the signer's and this host's clocks"
    )]
    IssuedInFuture {
        issued: UnixTime,
        now: UnixTime,
        max_skew_secs: u64,
    },
    #[error("maintenance token: for host {token_host:?}, this host is {host:?}")]
    WrongHost { token_host: String, host: String },
    #[error("maintenance token: no operating-system randomness for the nonce: {0}")]
    Random(String),
    #[error("maintenance token: signing failed: {0}")]
    Sign(String),
}

/// `signed` of a token, as written and read. Times in the metadata form
/// (`YYYY-MM-DDTHH:MM:SSZ`), as `expires` is everywhere else.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    #[serde(rename = "_type")]
    typ: String,
    action: MaintenanceAction,
    host: String,
    issued: String,
    expires: String,
    reason: String,
    nonce: String,
}

impl TokenBody {
    fn of(claims: &MaintenanceClaims) -> TokenBody {
        TokenBody {
            typ: TOKEN_TYPE.into(),
            action: claims.action,
            host: claims.host.clone(),
            issued: claims.issued.to_string(),
            expires: claims.expires.to_string(),
            reason: claims.reason.clone(),
            nonce: claims.nonce.clone(),
        }
    }

    fn into_claims(self) -> Result<MaintenanceClaims, MaintenanceError> {
        let time = |field: &str, s: &str| {
            UnixTime::parse(s).ok_or_else(|| MaintenanceError::Malformed {
                detail: format!("{field} {s:?} is not YYYY-MM-DDTHH:MM:SSZ"),
            })
        };
        Ok(MaintenanceClaims {
            action: self.action,
            issued: time("issued", &self.issued)?,
            expires: time("expires", &self.expires)?,
            host: self.host,
            reason: self.reason,
            nonce: self.nonce,
        })
    }
}

/// Which role signs tokens under `root`: `maintenance` when the root has that role, else the
/// root role itself (roots made before the role existed).
pub fn token_signer(root: &TrustedRoot) -> Role {
    if root.metadata().roles.contains_key(&Role::Maintenance) {
        Role::Maintenance
    } else {
        Role::Root
    }
}

/// Signs `claims` with the maintenance key of `keys`, or every root key when the root has no
/// maintenance role (the envelope's canonical JSON bytes,
/// ready to hand to the agent). Refuses claims no agent would accept: the field rules and the
/// 7-day validity limit; `issued` is not compared with the clock here.
pub fn sign_maintenance_token(
    keys: &KeySet,
    claims: &MaintenanceClaims,
) -> Result<Vec<u8>, MaintenanceError> {
    check_claims(claims)?;
    for (field, at) in [("issued", claims.issued), ("expires", claims.expires)] {
        if UnixTime::parse(&at.to_string()) != Some(at) {
            return Err(invalid(
                field,
                &at.to_string(),
                "cannot be written as YYYY-MM-DDTHH:MM:SSZ",
            ));
        }
    }
    let signers: Vec<&SigningKey> = match token_signer(keys.trusted_root()) {
        Role::Maintenance => keys.maintenance.iter().collect(),
        _ => keys.root_keys.iter().collect(),
    };
    if signers.is_empty() {
        return Err(MaintenanceError::Sign(format!(
            "the root names a maintenance role but {} holds no maintenance.key",
            keys.dir().display()
        )));
    }
    let bytes = metadata::sign(&TokenBody::of(claims), &signers).map_err(MaintenanceError::Sign)?;
    if bytes.len() > MAX_TOKEN_BYTES {
        return Err(MaintenanceError::TooLarge {
            size: bytes.len(),
            limit: MAX_TOKEN_BYTES,
        });
    }
    Ok(bytes)
}

/// Verifies a maintenance token for this `host` at `now` against the agent's trusted root
/// (checks in the order the module documentation lists) and returns its claims. The agent
/// acts on the returned claims only; nothing is remembered.
pub fn verify_maintenance_token(
    bytes: &[u8],
    root: &TrustedRoot,
    host: &str,
    now: UnixTime,
) -> Result<MaintenanceClaims, VerifyError> {
    Ok(verify_token(bytes, root, host, now)?)
}

fn verify_token(
    bytes: &[u8],
    root: &TrustedRoot,
    host: &str,
    now: UnixTime,
) -> Result<MaintenanceClaims, MaintenanceError> {
    if bytes.len() > MAX_TOKEN_BYTES {
        return Err(MaintenanceError::TooLarge {
            size: bytes.len(),
            limit: MAX_TOKEN_BYTES,
        });
    }
    let malformed = |detail: String| MaintenanceError::Malformed { detail };
    let envelope = Envelope::parse(Role::Root, bytes).map_err(|e| match e {
        VerifyError::Malformed { detail, .. } => malformed(detail),
        other => malformed(other.to_string()),
    })?;
    match envelope.signed.get("_type") {
        Some(Value::String(t)) if t == TOKEN_TYPE => {}
        Some(Value::String(t)) => return Err(MaintenanceError::WrongType { found: t.clone() }),
        Some(other) => return Err(malformed(format!("_type is {other}, not a string"))),
        None => return Err(malformed("signed has no _type".into())),
    }
    verify_threshold(
        &envelope,
        KeysOf {
            root: root.metadata(),
            role: token_signer(root),
        },
    )
    .map_err(signature_error)?;
    let body: TokenBody =
        serde_json::from_value(envelope.signed).map_err(|e| malformed(format!("signed: {e}")))?;
    let claims = body.into_claims()?;
    check_claims(&claims)?;
    if claims.expires <= now {
        return Err(MaintenanceError::Expired {
            expires: claims.expires,
            now,
        });
    }
    if claims.issued > now.plus_secs(MAX_CLOCK_SKEW_SECS) {
        return Err(MaintenanceError::IssuedInFuture {
            issued: claims.issued,
            now,
            max_skew_secs: MAX_CLOCK_SKEW_SECS,
        });
    }
    if !claims.is_for_host(host) {
        return Err(MaintenanceError::WrongHost {
            token_host: claims.host,
            host: host.to_owned(),
        });
    }
    Ok(claims)
}

/// The threshold count's refusals, re-worded for a token (they name "root metadata").
fn signature_error(e: VerifyError) -> MaintenanceError {
    match e {
        VerifyError::BadSignature { keyid, signer, .. } => {
            MaintenanceError::BadSignature { keyid, signer }
        }
        VerifyError::SignedByWrongRole {
            keyid,
            key_role,
            expected,
            ..
        } => MaintenanceError::SignedByWrongRole {
            keyid,
            key_role,
            expected,
        },
        VerifyError::UntrustedKeys {
            signer,
            expected,
            seen,
            threshold,
            ..
        } => MaintenanceError::UntrustedKeys {
            signer,
            expected,
            seen,
            threshold,
        },
        VerifyError::ThresholdNotMet {
            signer,
            valid,
            threshold,
            ..
        } => MaintenanceError::ThresholdNotMet {
            signer,
            valid,
            threshold,
        },
        other => MaintenanceError::Root {
            detail: other.to_string(),
        },
    }
}

/// The rules every token obeys, signed or verified: field contents and the validity window.
fn check_claims(c: &MaintenanceClaims) -> Result<(), MaintenanceError> {
    check_text("host", &c.host, MAX_HOST_BYTES)?;
    if c.host.chars().any(char::is_whitespace) {
        return Err(invalid("host", &c.host, "contains whitespace"));
    }
    if c.host != ANY_HOST && c.host.contains('*') {
        return Err(invalid(
            "host",
            &c.host,
            "is a pattern; only \"*\" alone (any host) is allowed",
        ));
    }
    check_text("nonce", &c.nonce, MAX_NONCE_BYTES)?;
    if c.nonce.chars().any(char::is_whitespace) {
        return Err(invalid("nonce", &c.nonce, "contains whitespace"));
    }
    check_text("reason", &c.reason, MAX_REASON_BYTES)?;
    if c.expires <= c.issued {
        return Err(MaintenanceError::EndsBeforeIssued {
            issued: c.issued,
            expires: c.expires,
        });
    }
    let valid_secs = c.expires.0 - c.issued.0;
    if valid_secs > MAX_VALIDITY_SECS {
        return Err(MaintenanceError::ValidTooLong {
            issued: c.issued,
            expires: c.expires,
            valid_secs,
            max_secs: MAX_VALIDITY_SECS,
        });
    }
    Ok(())
}

/// Not blank, at most `max` bytes, no control characters (the values end up in log lines).
fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), MaintenanceError> {
    if value.trim().is_empty() {
        return Err(invalid(field, value, "is empty"));
    }
    if value.len() > max {
        return Err(invalid(
            field,
            value,
            &format!("is {} bytes, limit is {max}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, value, "contains control characters"));
    }
    Ok(())
}

fn invalid(field: &'static str, value: &str, problem: &str) -> MaintenanceError {
    MaintenanceError::InvalidField {
        field,
        value: value.chars().take(64).collect(),
        problem: problem.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeysInitOptions, init_keys};

    const NOW: UnixTime = UnixTime(1_800_000_000);
    const HOST: &str = "web-01";

    struct Fixture {
        _tmp: tempfile::TempDir,
        keys: KeySet,
    }

    impl Fixture {
        fn root(&self) -> &TrustedRoot {
            self.keys.trusted_root()
        }

        /// The keys that sign tokens under this root.
        fn token_keys(&self) -> Vec<&SigningKey> {
            self.keys.maintenance.iter().collect()
        }
    }

    /// A keys directory from before maintenance keys: the root keys (three, threshold 2)
    /// sign tokens.
    fn legacy_fixture() -> Fixture {
        let mut fx = fixture();
        fx.keys.drop_maintenance_role().unwrap();
        assert_eq!(token_signer(fx.root()), Role::Root);
        fx
    }

    /// Three root keys, threshold 2.
    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let opts = KeysInitOptions {
            root_keys: 3,
            root_threshold: 2,
            root_expires: NOW.plus_days(365),
        };
        let keys = init_keys(tmp.path(), &opts).unwrap();
        Fixture { _tmp: tmp, keys }
    }

    fn claims() -> MaintenanceClaims {
        MaintenanceClaims {
            action: MaintenanceAction::Uninstall,
            host: HOST.into(),
            issued: NOW,
            expires: NOW.plus_secs(3_600),
            reason: "CHG-1234: replace with v2 agent".into(),
            nonce: "0123456789abcdef".into(),
        }
    }

    fn refuse(fx: &Fixture, token: &[u8]) -> MaintenanceError {
        match verify_maintenance_token(token, fx.root(), HOST, NOW) {
            Err(VerifyError::Maintenance(e)) => e,
            other => panic!("expected a maintenance refusal, got {other:?}"),
        }
    }

    /// `claims`' body signed by `signers` directly, bypassing the signing-side checks.
    fn signed_by(body: &impl Serialize, signers: &[&SigningKey]) -> Vec<u8> {
        metadata::sign(body, signers).unwrap()
    }

    #[test]
    fn a_good_token_verifies_and_round_trips_its_claims() {
        let fx = fixture();
        let token = sign_maintenance_token(&fx.keys, &claims()).unwrap();
        assert_eq!(
            verify_maintenance_token(&token, fx.root(), HOST, NOW).unwrap(),
            claims()
        );
        // Host names compare case-insensitively; a trailing newline (stdout) is fine.
        let mut with_newline = token.clone();
        with_newline.push(b'\n');
        verify_maintenance_token(&with_newline, fx.root(), "WEB-01", NOW).unwrap();
        // The envelope is the TUF style: canonical JSON, `_type` first in `signed`.
        let text = String::from_utf8(token).unwrap();
        assert!(text.starts_with("{\"signatures\":[{\"keyid\":\""), "{text}");
        assert!(
            text.contains(
                "\"signed\":{\"_type\":\"maintenance\",\"action\":\"uninstall\",\
                 \"expires\":\"2027-01-15T09:00:00Z\",\"host\":\"web-01\""
            ),
            "{text}"
        );
        // Valid right up to its expiry, and a few minutes before its issue time.
        let at = |t: UnixTime| verify_maintenance_token(text.as_bytes(), fx.root(), HOST, t);
        at(NOW.plus_secs(3_599)).unwrap();
        at(UnixTime(NOW.0 - MAX_CLOCK_SKEW_SECS)).unwrap();
    }

    #[test]
    fn a_fleet_wide_token_is_for_every_host() {
        let fx = fixture();
        let c = MaintenanceClaims {
            host: ANY_HOST.into(),
            ..claims()
        };
        assert!(c.is_fleet_wide());
        let token = sign_maintenance_token(&fx.keys, &c).unwrap();
        for host in ["web-01", "db-7", ""] {
            verify_maintenance_token(&token, fx.root(), host, NOW).unwrap();
        }
    }

    #[test]
    fn a_token_for_another_host_is_refused() {
        let fx = fixture();
        let token = sign_maintenance_token(&fx.keys, &claims()).unwrap();
        let err = verify_maintenance_token(&token, fx.root(), "web-02", NOW).unwrap_err();
        assert_eq!(
            err.to_string(),
            "maintenance token: for host \"web-01\", this host is \"web-02\""
        );
    }

    #[test]
    fn expired_and_future_tokens_are_refused() {
        let fx = fixture();
        let token = sign_maintenance_token(&fx.keys, &claims()).unwrap();
        let err =
            verify_maintenance_token(&token, fx.root(), HOST, NOW.plus_secs(3_600)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "maintenance token: expired at 2027-01-15T09:00:00Z (now 2027-01-15T09:00:00Z)"
        );
        let early = UnixTime(NOW.0 - MAX_CLOCK_SKEW_SECS - 1);
        let err = verify_maintenance_token(&token, fx.root(), HOST, early).unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::Maintenance(MaintenanceError::IssuedInFuture {
                    issued: NOW,
                    max_skew_secs: 300,
                    ..
                })
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("more than 300 s after now"),
            "{err}"
        );
    }

    #[test]
    fn a_token_valid_for_more_than_7_days_is_refused_and_never_signed() {
        let fx = fixture();
        let long = MaintenanceClaims {
            expires: NOW.plus_days(7).plus_secs(1),
            ..claims()
        };
        let err = sign_maintenance_token(&fx.keys, &long).unwrap_err();
        assert!(
            matches!(
                err,
                MaintenanceError::ValidTooLong {
                    valid_secs: 604_801,
                    ..
                }
            ),
            "{err}"
        );
        // Signed anyway (by the right keys, bypassing the signer's check): still refused.
        let token = signed_by(&TokenBody::of(&long), &fx.token_keys());
        let err = refuse(&fx, &token);
        assert!(
            matches!(err, MaintenanceError::ValidTooLong { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("longest allowed is 604800 s"),
            "{err}"
        );
        // Exactly 7 days is fine; an empty window is not.
        let week = MaintenanceClaims {
            expires: NOW.plus_days(7),
            ..claims()
        };
        sign_maintenance_token(&fx.keys, &week).unwrap();
        let empty = MaintenanceClaims {
            expires: NOW,
            ..claims()
        };
        let err = sign_maintenance_token(&fx.keys, &empty).unwrap_err();
        assert!(
            matches!(err, MaintenanceError::EndsBeforeIssued { .. }),
            "{err}"
        );
    }

    #[test]
    fn one_changed_byte_in_signed_breaks_the_signatures() {
        let fx = fixture();
        let token = sign_maintenance_token(&fx.keys, &claims()).unwrap();
        let text = String::from_utf8(token).unwrap();
        for (from, to) in [
            ("\"web-01\"", "\"web-02\""),
            ("\"uninstall\"", "\"uninstalL\""),
            ("09:00:00Z", "09:00:01Z"),
        ] {
            assert!(text.contains(from));
            let tampered = text.replacen(from, to, 1);
            let err = refuse(&fx, tampered.as_bytes());
            assert!(
                matches!(err, MaintenanceError::BadSignature { .. }),
                "{from}: {err}"
            );
            assert!(
                err.to_string()
                    .contains("does not verify against maintenance keys"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_token_signed_by_a_content_key_is_refused() {
        let fx = fixture();
        let body = TokenBody::of(&claims());
        for (key, role) in [
            (&fx.keys.targets, Role::Targets),
            (&fx.keys.timestamp, Role::Timestamp),
        ] {
            let err = refuse(&fx, &signed_by(&body, &[key]));
            assert!(
                matches!(err, MaintenanceError::SignedByWrongRole { key_role, .. } if key_role == role),
                "{err}"
            );
            assert!(
                err.to_string()
                    .contains(&format!("of the {role} role; needs maintenance keys")),
                "{err}"
            );
        }
        // A key the root never heard of.
        let stranger = SigningKey::from_bytes(&[7; 32]);
        let err = refuse(&fx, &signed_by(&body, &[&stranger]));
        assert!(
            matches!(
                err,
                MaintenanceError::UntrustedKeys { ref signer, threshold: 1, .. }
                    if signer == "maintenance keys"
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("signed by keys this root does not trust: expected maintenance keys"),
            "{err}"
        );
    }

    #[test]
    fn the_maintenance_role_signs_tokens_and_the_root_keys_stay_in_the_safe() {
        let fx = fixture();
        assert_eq!(token_signer(fx.root()), Role::Maintenance);
        let body = TokenBody::of(&claims());
        let token = sign_maintenance_token(&fx.keys, &claims()).unwrap();
        verify_maintenance_token(&token, fx.root(), HOST, NOW).unwrap();
        // Every root key together: refused, naming the role that should have signed.
        let by_root = signed_by(&body, &fx.keys.root_keys.iter().collect::<Vec<_>>());
        let err = refuse(&fx, &by_root);
        assert!(
            matches!(
                err,
                MaintenanceError::SignedByWrongRole {
                    key_role: Role::Root,
                    ..
                }
            ),
            "{err}"
        );
        // A root may not hand the maintenance role to a content key.
        let mut root = fx.root().metadata().clone();
        let targets = root.roles[&Role::Targets].clone();
        root.roles.insert(Role::Maintenance, targets);
        let err = metadata::check_root(&root).unwrap_err().to_string();
        assert!(
            err.contains("content signers cannot switch agents off"),
            "{err}"
        );

        // A directory from before the role: the root keys sign, until the role is added.
        let mut legacy = legacy_fixture();
        let old = sign_maintenance_token(&legacy.keys, &claims()).unwrap();
        verify_maintenance_token(&old, legacy.root(), HOST, NOW).unwrap();
        legacy
            .keys
            .add_maintenance_role(NOW.plus_days(365))
            .unwrap();
        assert_eq!(token_signer(legacy.root()), Role::Maintenance);
        let err = refuse(&legacy, &old);
        assert!(
            matches!(
                err,
                MaintenanceError::SignedByWrongRole {
                    key_role: Role::Root,
                    ..
                }
            ),
            "{err}"
        );
        let new = sign_maintenance_token(&legacy.keys, &claims()).unwrap();
        verify_maintenance_token(&new, legacy.root(), HOST, NOW).unwrap();
    }

    #[test]
    fn one_root_key_of_a_threshold_of_two_is_not_enough() {
        let fx = legacy_fixture();
        let body = TokenBody::of(&claims());
        let one = signed_by(&body, &[&fx.keys.root_keys[0]]);
        let err = refuse(&fx, &one);
        assert_eq!(
            err.to_string(),
            "maintenance token: 1 valid signatures from root v2 keys, threshold is 2"
        );
        // Two of the three are.
        let two = signed_by(&body, &[&fx.keys.root_keys[0], &fx.keys.root_keys[2]]);
        verify_maintenance_token(&two, fx.root(), HOST, NOW).unwrap();
    }

    #[test]
    fn other_signed_metadata_is_not_a_token() {
        let fx = fixture();
        // The root itself is signed by the root keys, but it is a root.
        let err = refuse(&fx, fx.root().bytes());
        assert_eq!(
            err,
            MaintenanceError::WrongType {
                found: "root".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "maintenance token: _type is \"root\", expected \"maintenance\""
        );
        let mut body = TokenBody::of(&claims());
        body.typ = "maintenancE".into();
        let root_keys = fx.token_keys();
        let err = refuse(&fx, &signed_by(&body, &root_keys));
        assert!(matches!(err, MaintenanceError::WrongType { .. }), "{err}");
        // An unknown field inside `signed` is refused even with good signatures.
        let mut value = serde_json::to_value(TokenBody::of(&claims())).unwrap();
        value["ttl"] = 5.into();
        let err = refuse(&fx, &signed_by(&value, &root_keys));
        assert!(err.to_string().contains("unknown field `ttl`"), "{err}");
        // An unknown action too.
        value = serde_json::to_value(TokenBody::of(&claims())).unwrap();
        value["action"] = "reboot".into();
        let err = refuse(&fx, &signed_by(&value, &root_keys));
        assert!(
            err.to_string().contains("unknown variant `reboot`"),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_oversized_input_is_refused() {
        let fx = fixture();
        for garbage in [
            &b""[..],
            b"not json",
            b"{}",
            b"[]",
            b"{\"signatures\":[],\"signed\":{}}",
            b"{\"signatures\":[],\"signed\":{\"_type\":7}}",
            b"{\"signatures\":[],\"signed\":{\"_type\":\"maintenance\"},\"x\":1}",
            b"\xff\xfe",
        ] {
            let err = refuse(&fx, garbage);
            assert!(
                matches!(err, MaintenanceError::Malformed { .. }),
                "{garbage:?}: {err}"
            );
        }
        // Unsigned but well-formed: no valid signatures.
        let err = refuse(
            &fx,
            b"{\"signatures\":[],\"signed\":{\"_type\":\"maintenance\"}}",
        );
        assert!(
            matches!(err, MaintenanceError::ThresholdNotMet { valid: 0, .. }),
            "{err}"
        );
        // Oversized input is refused by its length, before parsing.
        let mut big = sign_maintenance_token(&fx.keys, &claims()).unwrap();
        big.resize(MAX_TOKEN_BYTES + 1, b' ');
        assert_eq!(
            refuse(&fx, &big).to_string(),
            "maintenance token is 65537 bytes, limit is 65536"
        );
    }

    #[test]
    fn field_rules_apply_when_signing() {
        let fx = fixture();
        for (c, needle) in [
            (
                MaintenanceClaims {
                    host: String::new(),
                    ..claims()
                },
                "host \"\" is empty",
            ),
            (
                MaintenanceClaims {
                    host: "web-*".into(),
                    ..claims()
                },
                "is a pattern",
            ),
            (
                MaintenanceClaims {
                    host: "web 01".into(),
                    ..claims()
                },
                "contains whitespace",
            ),
            (
                MaintenanceClaims {
                    reason: " ".into(),
                    ..claims()
                },
                "reason \" \" is empty",
            ),
            (
                MaintenanceClaims {
                    reason: "ok\nINFO agent: all clear".into(),
                    ..claims()
                },
                "control characters",
            ),
            (
                MaintenanceClaims {
                    nonce: "x".repeat(129),
                    ..claims()
                },
                "is 129 bytes, limit is 128",
            ),
            (
                MaintenanceClaims {
                    issued: UnixTime(300_000_000_000),
                    expires: UnixTime(300_000_000_060),
                    ..claims()
                },
                "cannot be written",
            ),
        ] {
            let err = sign_maintenance_token(&fx.keys, &c).unwrap_err();
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn new_claims_get_distinct_random_nonces() {
        let a = MaintenanceClaims::new(MaintenanceAction::Stop, HOST, NOW, 600, "r").unwrap();
        let b = MaintenanceClaims::new(MaintenanceAction::Stop, HOST, NOW, 600, "r").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_eq!(a.nonce.len(), 32);
        assert_eq!(a.expires, NOW.plus_secs(600));
        assert_eq!(
            serde_json::to_string(&MaintenanceAction::ALL).unwrap(),
            "[\"disarm\",\"stop\",\"uninstall\"]"
        );
    }
}
