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
    /// Every error of the detection compiler and the content tests, one per line.
    #[error("content validation failed with {} error(s):{}", .0.len(), list(.0))]
    Validation(Vec<ValidationError>),
    /// No rule and no IOC: the bundle would detect nothing.
    #[error(
        "no rules and no IOCs: the bundle would detect nothing{hint}; build with \
         --allow-empty REASON if that is intended"
    )]
    Empty { hint: String },
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
    if report.detects_nothing() && bundle.allowed_empty().is_none() {
        return Err(BuildError::Empty {
            hint: empty_hint(dir),
        });
    }
    let signed = sign_bundle(&bundle, keys, &opts.sign)?;
    Ok(Built {
        bundle,
        signed,
        report,
        dir_report,
    })
}

fn list(errors: &[ValidationError]) -> String {
    errors.iter().map(|e| format!("\n  {e}")).collect()
}

/// Why a directory gave no content, when it can be told: a pack directory holds `rules/`
/// (and `iocs/`, `tests/`); a directory inside a pack does not.
fn empty_hint(dir: &Path) -> String {
    if dir.join("rules").is_dir() || dir.join("iocs").is_dir() {
        return String::new();
    }
    match dir
        .ancestors()
        .skip(1)
        .take(4)
        .find(|a| a.join("rules").is_dir())
    {
        Some(pack) => format!(
            " ({} has no rules/ or iocs/ directory: it is inside the pack {}; give that \
             directory)",
            dir.display(),
            pack.display()
        ),
        None => format!(
            " ({} has no rules/ or iocs/ directory: give the pack directory that holds them)",
            dir.display()
        ),
    }
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
        // Every rule of our own has its content test; the SigmaHQ rules ship as they are
        // (their own tests live upstream; a few have tests of ours, under tests/sigmahq/).
        let ours = |path: &str| !path.contains("/sigmahq/");
        let own = one.bundle.rules().filter(|(path, _)| ours(path)).count();
        assert_eq!(
            own,
            one.bundle.tests().filter(|(path, _)| ours(path)).count()
        );
        assert!(one.bundle.rules().count() > own, "the SigmaHQ rules ship");
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

    #[test]
    fn every_validation_error_is_listed_in_the_message() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = init_keys(&tmp.path().join("keys"), &KeysInitOptions::new(NOW)).unwrap();
        let dir = tmp.path().join("content");
        std::fs::create_dir_all(dir.join("rules")).unwrap();
        std::fs::write(dir.join("rules/a.yml"), "").unwrap();
        std::fs::write(dir.join("rules/b.yml"), [b'x', 0xff]).unwrap();
        let err = build_signed_bundle(&dir, &options(), &keys, &StructuralValidator).unwrap_err();
        assert_eq!(
            err.to_string(),
            "content validation failed with 2 error(s):\n  rules/a.yml: file is empty\n  \
             rules/b.yml: not UTF-8 at byte 1"
        );
    }

    #[test]
    fn a_directory_one_level_too_deep_is_refused_as_empty_unless_allowed() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = init_keys(&tmp.path().join("keys"), &KeysInitOptions::new(NOW)).unwrap();
        let rules = pack().join("rules");
        let err = build_signed_bundle(&rules, &options(), &keys, &StructuralValidator).unwrap_err();
        assert!(matches!(err, BuildError::Empty { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("no rules and no IOCs: the bundle would detect nothing ("),
            "{msg}"
        );
        assert!(msg.contains("it is inside the pack"), "{msg}");
        assert!(msg.contains("--allow-empty REASON"), "{msg}");

        // An empty pack signed on purpose builds, and says so in its signed metadata.
        let mut opts = options();
        opts.metadata
            .insert(crate::bundle::ALLOW_EMPTY.into(), "retire the pack".into());
        let built = build_signed_bundle(&rules, &opts, &keys, &StructuralValidator).unwrap();
        assert_eq!(built.bundle.allowed_empty(), Some("retire the pack"));
    }
}
