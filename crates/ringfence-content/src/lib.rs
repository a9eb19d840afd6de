//! Ringfence content: the bundle format, TUF-style signing and verification, the seam to the
//! detection compiler, and the agent's last-known-good store.
//!
//! Content reaches an agent only as a *signed bundle*: one file with root, timestamp,
//! snapshot and targets metadata and a deterministic [`Bundle`] payload (rules, IOC sets,
//! metadata, content tests, exceptions overlays, content version, field-schema version). [`build_signed_bundle`]
//! makes one from a content directory; [`verify_signed_bundle`] is the only way to trust
//! one, and checks in the TUF client workflow order (root → timestamp → snapshot → targets
//! → payload length and hash → bundle → [`ContentValidator`]). Every untrusted byte goes
//! through one bounds-checked reader ([`reader`]); every refusal is a typed error naming the
//! role, field, entry or offset.
//!
//! The same root-role keys sign [`maintenance`] tokens, the only authorised way to disarm,
//! stop or uninstall a tamper-protected agent.
//!
//! # Why not `tough`
//! `tough` 0.24 (Bottlerocket's TUF client) was evaluated and not used. It is a repository
//! client: it fetches `N.root.json`, `timestamp.json`, … from metadata and target URLs through
//! an async `Transport` (tokio, futures) and keeps its own datastore directory, while our
//! content is one offline file handed over by the console or an operator and our agent state
//! lives in our own store. It pulls in aws-lc-rs (a C/CMake build), rustls, tokio, jiff,
//! globset, walkdir and snafu: minutes of build on two cores and a large audit surface for a
//! few hundred lines of checks. It reads the clock itself, so freeze and expiry tests could
//! not be driven by an explicit `now`, and its errors are its own, not the typed, role- and
//! field-naming refusals the agent reports. The small implementation here uses
//! `ed25519-dalek` 2 (`verify_strict`), `sha2` and canonical JSON, follows the TUF
//! specification's client workflow step by step (§5.3–5.6, cited in [`verify`]), and keeps
//! TUF's shapes (`_type`, `version`, `expires`, `keys`, `roles`, `meta`, thresholds) so moving
//! to a full TUF repository later is a format change, not a redesign. Deviation: a timestamp
//! with the same version as the trusted one is accepted (the content version decides whether
//! anything changes), since bundles are delivered whole rather than polled.
#![forbid(unsafe_code)]

pub mod build;
pub mod bundle;
pub mod canonical;
pub mod error;
pub mod keys;
pub mod maintenance;
pub mod metadata;
pub mod reader;
pub mod release;
pub mod signed;
pub mod store;
pub mod time;
pub mod validate;
pub mod verify;
pub mod yara;

pub use build::{BuildError, BuildOptions, Built, build_signed_bundle};
pub use bundle::{
    ALLOW_EMPTY, ALLOW_RULE_DROP, Bundle, BundleBuilder, BundleError, DirReport, EntryKind, Limits,
    SchemaId,
};
pub use error::VerifyError;
pub use keys::{KeyError, KeySet, KeysInitOptions, RotateOptions, init_keys};
pub use maintenance::{
    MaintenanceAction, MaintenanceClaims, MaintenanceError, sign_maintenance_token,
    verify_maintenance_token,
};
pub use metadata::Role;
pub use signed::{SignError, SignOptions, SignedBundle, refresh_timestamp, sign_bundle};
pub use store::{ContentStore, RollBack, StoreError, StoreState};
pub use time::UnixTime;
pub use validate::{ContentValidator, StructuralValidator, ValidationError, ValidationReport};
pub use verify::{
    Outcome, SeenVersions, TrustedRoot, Verified, VerifyOptions, verify_signed_bundle,
};
