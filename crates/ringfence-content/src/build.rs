//! `content build`: a content directory becomes a validated, signed bundle. The steps are
//! the guards of issue 5 in order: read the directory under the size limits, run the
//! detection compiler and the content tests ([`ContentValidator`]), then sign.

use std::collections::BTreeMap;
use std::path::Path;

use crate::bundle::{Bundle, BundleBuilder, BundleError, DirReport, Limits, SchemaId};
use crate::keys::KeySet;
use crate::signed::{SignError, SignOptions, SignedBundle, sign_bundle};
use crate::time::UnixTime;
use crate::validate::{ContentValidator, ValidationError, ValidationReport};

/// What a build needs besides the directory and the keys.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub content_version: u64,
    /// The field schema of the agents this content targets, from `ringfence-event`.
    pub schema: SchemaId,
    /// Extra `key = value` metadata (a build label, an explicit build time, ...).
    pub metadata: BTreeMap<String, String>,
    pub limits: Limits,
    /// Metadata versions and expiries; see [`SignOptions::new`].
    pub sign: SignOptions,
}

impl BuildOptions {
    /// Default limits, no extra metadata, [`SignOptions::new`] at `now`.
    pub fn new(content_version: u64, schema: SchemaId, now: UnixTime) -> Self {
        BuildOptions {
            content_version,
            schema,
            metadata: BTreeMap::new(),
            limits: Limits::default(),
            sign: SignOptions::new(content_version, now),
        }
    }
}

/// A successful build.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Built {
    pub bundle: Bundle,
    pub signed: SignedBundle,
    pub report: ValidationReport,
    /// Files in the directory that are not content (README, dotfiles...).
    pub dir_report: DirReport,
}

/// Why a build was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error("content validation failed with {} error(s)", .0.len())]
    Validation(Vec<ValidationError>),
    #[error("{0}")]
    Sign(#[from] SignError),
}

/// Reads `dir`, validates every rule and test with `validator`, and signs the bundle.
pub fn build_signed_bundle(
    dir: &Path,
    opts: &BuildOptions,
    keys: &KeySet,
    validator: &dyn ContentValidator,
) -> Result<Built, BuildError> {
    let mut builder = BundleBuilder::new(opts.content_version, opts.schema.clone(), opts.limits);
    for (key, value) in &opts.metadata {
        builder.metadata(key, value)?;
    }
    let dir_report = builder.add_dir(dir)?;
    let bundle = builder.build()?;
    let report = validator
        .validate(&bundle)
        .map_err(BuildError::Validation)?;
    let signed = sign_bundle(&bundle, keys, &opts.sign)?;
    Ok(Built {
        bundle,
        signed,
        report,
        dir_report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeysInitOptions, init_keys};
    use crate::validate::StructuralValidator;
    use crate::verify::{Outcome, SeenVersions, VerifyOptions, verify_signed_bundle};

    const NOW: UnixTime = UnixTime(1_800_000_000);

    fn pack() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../content/linux")
    }

    fn options() -> BuildOptions {
        let mut opts = BuildOptions::new(
            3,
            SchemaId {
                version: 1,
                fingerprint: "sha256:test".into(),
            },
            NOW,
        );
        opts.metadata.insert("built_at".into(), NOW.to_string());
        opts
    }

    #[test]
    fn the_default_pack_builds_byte_identically_and_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = init_keys(tmp.path(), &KeysInitOptions::new(NOW)).unwrap();
        let one = build_signed_bundle(&pack(), &options(), &keys, &StructuralValidator).unwrap();
        let two = build_signed_bundle(&pack(), &options(), &keys, &StructuralValidator).unwrap();
        assert!(one.bundle.rules().count() >= 20);
        assert_eq!(one.bundle.rules().count(), one.bundle.tests().count());
        // Ed25519 signatures are deterministic: the whole signed file is reproducible.
        assert_eq!(one.signed.encode(), two.signed.encode());
        assert!(
            one.dir_report
                .skipped
                .iter()
                .any(|p| p.ends_with("README.md"))
        );

        let v = verify_signed_bundle(
            &one.signed.encode(),
            keys.trusted_root(),
            SeenVersions::default(),
            &VerifyOptions::new(NOW),
            &StructuralValidator,
        )
        .unwrap();
        let Outcome::New { bundle, .. } = v.outcome else {
            panic!("expected new content");
        };
        assert_eq!(bundle, one.bundle);
        assert_eq!(
            bundle.metadata().collect::<Vec<_>>(),
            [("built_at", "2027-01-15T08:00:00Z")]
        );
    }

    #[test]
    fn validation_errors_stop_the_build() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = init_keys(&tmp.path().join("keys"), &KeysInitOptions::new(NOW)).unwrap();
        let dir = tmp.path().join("content");
        std::fs::create_dir_all(dir.join("rules")).unwrap();
        std::fs::write(dir.join("rules/empty.yml"), "").unwrap();
        let err = build_signed_bundle(&dir, &options(), &keys, &StructuralValidator).unwrap_err();
        let BuildError::Validation(errors) = err else {
            panic!("expected validation errors, got {err}");
        };
        assert_eq!(errors[0].file, "rules/empty.yml");
    }
}
