//! Why a signed bundle (or a maintenance token, see [`crate::maintenance`]) was refused. One
//! variant per cause, each naming the role, field, expected and actual values, so `content
//! verify` and the agent's report say exactly what an operator has to fix.

use crate::bundle::BundleError;
use crate::maintenance::MaintenanceError;
use crate::metadata::Role;
use crate::reader::ReadError;
use crate::time::UnixTime;
use crate::validate::ValidationError;

/// A signed bundle the agent would not accept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The signed-bundle container itself is truncated, too long or has trailing data.
    #[error("signed bundle {context}: {source}")]
    Container {
        context: &'static str,
        #[source]
        source: ReadError,
    },
    #[error("not a ringfence signed bundle: magic is {found:02x?}, expected \"RFSIGNED\"")]
    BadMagic { found: Vec<u8> },
    #[error("signed bundle format {found} is not supported (this agent reads format 1)")]
    UnsupportedFormat { found: u16 },
    /// Metadata that is not valid JSON of the expected shape.
    #[error("{role} metadata: {detail}")]
    Malformed { role: Role, detail: String },
    #[error("{role} metadata: _type is {found:?}, expected {expected:?}")]
    WrongType {
        role: Role,
        expected: &'static str,
        found: String,
    },
    /// A root whose keys and roles are inconsistent.
    #[error("root v{version}: {detail}")]
    InvalidRoot { version: u64, detail: String },
    #[error("{role} metadata: signature by key {keyid} does not verify against {signer}")]
    BadSignature {
        role: Role,
        keyid: String,
        signer: String,
    },
    #[error("{role} metadata: signed by key {keyid} of the {key_role} role; needs {expected}")]
    SignedByWrongRole {
        role: Role,
        keyid: String,
        key_role: Role,
        expected: String,
    },
    /// Signed only (or mostly) by keys the trusted root does not list at all: typically a
    /// bundle built with another keys directory than the one whose `root.json` the agent has.
    #[error(
        "{role} metadata is signed by keys this root does not trust: expected {signer} \
         ({expected}, threshold {threshold}), seen {seen}; {valid} valid signature(s) from \
         trusted keys (was it built with another keys directory?)"
    )]
    UntrustedKeys {
        role: Role,
        /// Whose keys were expected ("timestamp keys", "root v1 keys").
        signer: String,
        /// The expected key ids, shortened.
        expected: String,
        /// The key ids the signatures name, shortened.
        seen: String,
        valid: usize,
        threshold: u32,
    },
    #[error("{role} metadata: {valid} valid signatures from {signer}, threshold is {threshold}")]
    ThresholdNotMet {
        role: Role,
        signer: String,
        valid: usize,
        threshold: u32,
    },
    /// A root rotation must go one version at a time.
    #[error(
        "root rotation: trusted root is v{trusted}, next root must be v{expected}, got v{actual}"
    )]
    RootVersionSkipped {
        trusted: u64,
        expected: u64,
        actual: u64,
    },
    /// Freeze attack or stale metadata: `expires` is not after `now`.
    #[error("{role} metadata v{version} expired at {expires} (now {now})")]
    Expired {
        role: Role,
        version: u64,
        expires: UnixTime,
        now: UnixTime,
    },
    /// Rollback attack: a metadata version below the one already trusted.
    #[error("{role} metadata: version {offered} is older than trusted version {trusted}")]
    Rollback {
        role: Role,
        trusted: u64,
        offered: u64,
    },
    /// Mix-and-match: a file that does not agree with what the role above it recorded.
    #[error("{role} metadata: {field} is {actual}, but {by} recorded {expected}")]
    MixAndMatch {
        role: Role,
        field: &'static str,
        by: Role,
        expected: String,
        actual: String,
    },
    #[error("{role} metadata has no entry {name:?}")]
    MissingMeta { role: Role, name: &'static str },
    /// The payload does not match its target entry.
    #[error("bundle payload: {field} is {actual}, targets metadata says {expected}")]
    TargetMismatch {
        field: &'static str,
        expected: String,
        actual: String,
    },
    #[error("bundle payload: {0}")]
    Bundle(#[from] BundleError),
    /// The bundle's content version is below what the agent runs.
    #[error("content version {offered} is older than the current version {current}")]
    ContentRollback { current: u64, offered: u64 },
    /// The bundle's content version was marked bad on this host.
    #[error("content version {version} is marked bad on this host")]
    MarkedBad { version: u64 },
    /// A maintenance token (the signed order to disarm, stop or uninstall a tamper-protected
    /// agent) was refused; the message starts with "maintenance token".
    #[error(transparent)]
    Maintenance(#[from] MaintenanceError),
    /// The content has no rule and no indicator: it would detect nothing. Refused unless its
    /// signed metadata says so on purpose ([`crate::bundle::ALLOW_EMPTY`]).
    #[error(
        "content version {version} detects nothing: 0 rules and 0 IOCs, and its signed metadata \
         has no `{key}` (build it with --allow-empty REASON if that is intended)",
        key = crate::bundle::ALLOW_EMPTY
    )]
    Empty { version: u64 },
    /// The detection compiler refused the content.
    #[error("content validation failed with {} error(s): {}", .0.len(), first_errors(.0))]
    Validation(Vec<ValidationError>),
}

fn first_errors(errors: &[ValidationError]) -> String {
    let mut out: Vec<String> = errors.iter().take(3).map(ToString::to_string).collect();
    if errors.len() > 3 {
        out.push(format!("and {} more", errors.len() - 3));
    }
    out.join("; ")
}
