//! Verification of a signed bundle, in the order of the TUF client workflow: update the
//! root (one version at a time, each signed by a threshold of the old *and* the new root
//! keys; then refuse an expired root), then timestamp, snapshot and targets (signature,
//! rollback, agreement with the role above, expiry), then the payload's length and hash,
//! then the bundle itself (format, limits, content version) and finally the detection
//! compiler through [`ContentValidator`].
//!
//! The caller supplies everything the check depends on: the root it trusts, the metadata
//! versions it last accepted ([`SeenVersions`]), its current content version and `now`. The
//! result carries the (possibly rotated) root and the new versions for the caller to persist.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::bundle::{Bundle, Limits};
use crate::error::VerifyError;
use crate::metadata::{
    BUNDLE_TARGET, Envelope, KeysOf, MetaFile, Role, Root, Snapshot, Targets, Timestamp,
    check_root, sha256_hex, verify_threshold,
};
use crate::signed::SignedBundle;
use crate::time::UnixTime;
use crate::validate::{ContentValidator, ValidationReport};

/// A root the caller trusts: parsed, internally consistent and signed by a threshold of its
/// own root keys. Build it from the out-of-band `root.json` or from a previous verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedRoot {
    bytes: Vec<u8>,
    root: Root,
}

impl TrustedRoot {
    /// Accepts a root as the trust anchor. Its expiry is not checked here (TUF checks it after
    /// the update step), only its consistency and self-signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<TrustedRoot, VerifyError> {
        let envelope = Envelope::parse(Role::Root, bytes)?;
        let root: Root = envelope.typed()?;
        check_root(&root)?;
        verify_threshold(
            &envelope,
            KeysOf {
                root: &root,
                role: Role::Root,
            },
        )?;
        Ok(TrustedRoot {
            bytes: bytes.to_vec(),
            root,
        })
    }

    /// The root version.
    pub fn version(&self) -> u64 {
        self.root.version
    }

    /// The signed bytes, to persist.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// When this root expires, if its `expires` is well-formed.
    pub fn expires(&self) -> Option<UnixTime> {
        UnixTime::parse(&self.root.expires)
    }

    /// The parsed root metadata, for checks elsewhere in the crate (maintenance tokens).
    pub(crate) fn metadata(&self) -> &Root {
        &self.root
    }

    /// Key ids allowed to sign for `role`.
    pub fn keyids(&self, role: Role) -> Vec<String> {
        self.root
            .roles
            .get(&role)
            .map(|r| r.keyids.clone())
            .unwrap_or_default()
    }

    /// TUF 5.3.4–5.3.9: accepts `next` as the new root only if it is version N+1 and signed by
    /// a threshold of this root's root keys *and* of its own.
    pub fn update(&self, next: &[u8]) -> Result<TrustedRoot, VerifyError> {
        let envelope = Envelope::parse(Role::Root, next)?;
        verify_threshold(
            &envelope,
            KeysOf {
                root: &self.root,
                role: Role::Root,
            },
        )?;
        let root: Root = envelope.typed()?;
        check_root(&root)?;
        verify_threshold(
            &envelope,
            KeysOf {
                root: &root,
                role: Role::Root,
            },
        )?;
        let expected = self.root.version.saturating_add(1);
        if root.version != expected {
            return Err(VerifyError::RootVersionSkipped {
                trusted: self.root.version,
                expected,
                actual: root.version,
            });
        }
        Ok(TrustedRoot {
            bytes: next.to_vec(),
            root,
        })
    }
}

/// Versions of the metadata the agent last accepted; all 0 before the first bundle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenVersions {
    pub timestamp: u64,
    pub snapshot: u64,
    pub targets: u64,
}

/// What the verifier needs to know about the agent besides its trusted root.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub now: UnixTime,
    pub limits: Limits,
    /// The content version the agent runs; `None` before the first bundle.
    pub current_content_version: Option<u64>,
    /// Content versions marked bad on this host.
    pub bad_versions: BTreeSet<u64>,
    /// `false` only when re-loading a bundle this agent already accepted from its own store
    /// (after a restart, its timestamp may have expired since). Always `true` for new content.
    pub enforce_expiry: bool,
}

impl VerifyOptions {
    /// Defaults: default limits, no current content, nothing marked bad, expiry enforced.
    pub fn new(now: UnixTime) -> Self {
        VerifyOptions {
            now,
            limits: Limits::default(),
            current_content_version: None,
            bad_versions: BTreeSet::new(),
            enforce_expiry: true,
        }
    }
}

/// A signed bundle that passed every check.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Verified {
    /// The root now trusted (rotated if the bundle carried newer roots): persist it.
    pub root: TrustedRoot,
    /// The metadata versions now seen: persist them.
    pub seen: SeenVersions,
    pub content_version: u64,
    pub outcome: Outcome,
}

/// Whether the bundle is new content or the one already running.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// A newer content version, compiled by the validator: go on to probation.
    New {
        bundle: Bundle,
        report: ValidationReport,
    },
    /// The same content version as the current one: nothing to do (a no-op, not an error).
    Unchanged,
}

/// Verifies a signed bundle (TUF client workflow order) and validates its content.
pub fn verify_signed_bundle(
    bytes: &[u8],
    trusted: &TrustedRoot,
    seen: SeenVersions,
    opts: &VerifyOptions,
    validator: &dyn ContentValidator,
) -> Result<Verified, VerifyError> {
    let signed = SignedBundle::decode(bytes, &opts.limits)?;
    let mut seen = seen;

    // 1. Root: follow the chain one version at a time, then refuse an expired root.
    let mut root = trusted.clone();
    for next in &signed.roots {
        if untrusted_version(next).is_some_and(|v| v <= root.version()) {
            continue;
        }
        let rotated = root.update(next)?;
        for (role, seen_version) in [
            (Role::Timestamp, &mut seen.timestamp),
            (Role::Snapshot, &mut seen.snapshot),
            (Role::Targets, &mut seen.targets),
        ] {
            // TUF 5.3.11: new keys for a role make its old versions meaningless (and let a
            // compromised, fast-forwarded role recover).
            if rotated.keyids(role) != root.keyids(role) {
                *seen_version = 0;
            }
        }
        root = rotated;
    }
    check_expiry(opts, Role::Root, root.version(), &root.root.expires)?;
    let keys = |role| KeysOf {
        root: &root.root,
        role,
    };

    // 2. Timestamp.
    let envelope = Envelope::parse(Role::Timestamp, &signed.timestamp)?;
    verify_threshold(&envelope, keys(Role::Timestamp))?;
    let timestamp: Timestamp = envelope.typed()?;
    no_rollback(Role::Timestamp, seen.timestamp, timestamp.version)?;
    let snapshot_meta = meta(Role::Timestamp, &timestamp.meta, "snapshot.json")?;
    no_rollback(Role::Snapshot, seen.snapshot, snapshot_meta.version)?;
    check_expiry(opts, Role::Timestamp, timestamp.version, &timestamp.expires)?;

    // 3. Snapshot.
    matches_meta(
        Role::Snapshot,
        Role::Timestamp,
        snapshot_meta,
        &signed.snapshot,
    )?;
    let envelope = Envelope::parse(Role::Snapshot, &signed.snapshot)?;
    verify_threshold(&envelope, keys(Role::Snapshot))?;
    let snapshot: Snapshot = envelope.typed()?;
    same_version(
        Role::Snapshot,
        Role::Timestamp,
        snapshot_meta.version,
        snapshot.version,
    )?;
    no_rollback(Role::Snapshot, seen.snapshot, snapshot.version)?;
    let targets_meta = meta(Role::Snapshot, &snapshot.meta, "targets.json")?;
    no_rollback(Role::Targets, seen.targets, targets_meta.version)?;
    check_expiry(opts, Role::Snapshot, snapshot.version, &snapshot.expires)?;

    // 4. Targets.
    matches_meta(Role::Targets, Role::Snapshot, targets_meta, &signed.targets)?;
    let envelope = Envelope::parse(Role::Targets, &signed.targets)?;
    verify_threshold(&envelope, keys(Role::Targets))?;
    let targets: Targets = envelope.typed()?;
    same_version(
        Role::Targets,
        Role::Snapshot,
        targets_meta.version,
        targets.version,
    )?;
    no_rollback(Role::Targets, seen.targets, targets.version)?;
    check_expiry(opts, Role::Targets, targets.version, &targets.expires)?;

    // 5. The payload against its target entry, before parsing it.
    let target = targets
        .targets
        .get(BUNDLE_TARGET)
        .ok_or(VerifyError::MissingMeta {
            role: Role::Targets,
            name: BUNDLE_TARGET,
        })?;
    let length = signed.payload.len() as u64;
    if length != target.length {
        return Err(VerifyError::TargetMismatch {
            field: "length",
            expected: target.length.to_string(),
            actual: length.to_string(),
        });
    }
    let hash = sha256_hex(&signed.payload);
    if hash != target.hashes.sha256 {
        return Err(VerifyError::TargetMismatch {
            field: "sha256",
            expected: target.hashes.sha256.clone(),
            actual: hash,
        });
    }
    let new_seen = SeenVersions {
        timestamp: timestamp.version,
        snapshot: snapshot.version,
        targets: targets.version,
    };

    // 6. The bundle: format and limits, then what targets claimed about it.
    let bundle = Bundle::decode(&signed.payload, &opts.limits)?;
    let custom = &target.custom;
    for (field, expected, actual) in [
        (
            "content_version",
            custom.content_version.to_string(),
            bundle.content_version().to_string(),
        ),
        (
            "schema_version",
            custom.schema_version.to_string(),
            bundle.schema().version.to_string(),
        ),
        (
            "schema_fingerprint",
            custom.schema_fingerprint.clone(),
            bundle.schema().fingerprint.clone(),
        ),
    ] {
        if expected != actual {
            return Err(VerifyError::TargetMismatch {
                field,
                expected,
                actual,
            });
        }
    }
    let version = bundle.content_version();
    if opts.bad_versions.contains(&version) {
        return Err(VerifyError::MarkedBad { version });
    }
    let verified = |outcome| Verified {
        root: root.clone(),
        seen: new_seen,
        content_version: version,
        outcome,
    };
    match opts.current_content_version {
        Some(current) if version < current => {
            return Err(VerifyError::ContentRollback {
                current,
                offered: version,
            });
        }
        Some(current) if version == current => return Ok(verified(Outcome::Unchanged)),
        _ => {}
    }

    // 7. The detection compiler, on every rule and test; content that detects nothing is
    // refused unless its signed metadata says that is intended.
    let report = validator
        .validate(&bundle)
        .map_err(VerifyError::Validation)?;
    if report.detects_nothing() && bundle.allowed_empty().is_none() {
        return Err(VerifyError::Empty { version });
    }
    Ok(verified(Outcome::New { bundle, report }))
}

/// The `version` a root claims, read before it is trusted, only to skip roots already passed.
fn untrusted_version(bytes: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value.get("signed")?.get("version")?.as_u64()
}

fn check_expiry(
    opts: &VerifyOptions,
    role: Role,
    version: u64,
    expires: &str,
) -> Result<(), VerifyError> {
    let at = UnixTime::parse(expires).ok_or_else(|| VerifyError::Malformed {
        role,
        detail: format!("expires {expires:?} is not YYYY-MM-DDTHH:MM:SSZ"),
    })?;
    if opts.enforce_expiry && at <= opts.now {
        return Err(VerifyError::Expired {
            role,
            version,
            expires: at,
            now: opts.now,
        });
    }
    Ok(())
}

fn no_rollback(role: Role, trusted: u64, offered: u64) -> Result<(), VerifyError> {
    if offered < trusted {
        return Err(VerifyError::Rollback {
            role,
            trusted,
            offered,
        });
    }
    Ok(())
}

fn meta<'a>(
    role: Role,
    meta: &'a std::collections::BTreeMap<String, MetaFile>,
    name: &'static str,
) -> Result<&'a MetaFile, VerifyError> {
    meta.get(name)
        .ok_or(VerifyError::MissingMeta { role, name })
}

fn matches_meta(
    role: Role,
    by: Role,
    expected: &MetaFile,
    bytes: &[u8],
) -> Result<(), VerifyError> {
    let length = bytes.len() as u64;
    if length != expected.length {
        return Err(VerifyError::MixAndMatch {
            role,
            field: "length",
            by,
            expected: expected.length.to_string(),
            actual: length.to_string(),
        });
    }
    let hash = sha256_hex(bytes);
    if hash != expected.hashes.sha256 {
        return Err(VerifyError::MixAndMatch {
            role,
            field: "sha256",
            by,
            expected: expected.hashes.sha256.clone(),
            actual: hash,
        });
    }
    Ok(())
}

fn same_version(role: Role, by: Role, expected: u64, actual: u64) -> Result<(), VerifyError> {
    if expected != actual {
        return Err(VerifyError::MixAndMatch {
            role,
            field: "version",
            by,
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{BundleBuilder, EntryKind, SchemaId};
    use crate::keys::{KeySet, KeysInitOptions, RotateOptions, build_root, generate, init_keys};
    use crate::metadata::{self, SPEC_VERSION};
    use crate::signed::{SignOptions, refresh_timestamp, sign_bundle};
    use crate::validate::{StructuralValidator, ValidationError};
    use ed25519_dalek::SigningKey;

    const NOW: UnixTime = UnixTime(1_800_000_000);

    struct Fixture {
        _tmp: tempfile::TempDir,
        keys: KeySet,
        /// The root an agent was installed with (v1).
        installed: TrustedRoot,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let keys = init_keys(tmp.path(), &KeysInitOptions::new(NOW)).unwrap();
        let installed = keys.trusted_root().clone();
        Fixture {
            _tmp: tmp,
            keys,
            installed,
        }
    }

    fn bundle(version: u64) -> Bundle {
        let mut b = BundleBuilder::new(
            version,
            SchemaId {
                version: 1,
                fingerprint: "sha256:00ff".into(),
            },
            Limits::default(),
        );
        b.add(
            EntryKind::Rule,
            "rules/proc/a.yml",
            format!("title: a\nversion: {version}\n").into_bytes(),
        )
        .unwrap();
        b.add(EntryKind::Test, "tests/proc/a.yml", b"rule: a\n".to_vec())
            .unwrap();
        b.build().unwrap()
    }

    /// Content `version` signed at `NOW + version` seconds.
    fn signed(fx: &Fixture, version: u64) -> SignedBundle {
        sign_bundle(
            &bundle(version),
            &fx.keys,
            &SignOptions::new(version, UnixTime(NOW.0 + version)),
        )
        .unwrap()
    }

    fn opts() -> VerifyOptions {
        VerifyOptions::new(UnixTime(NOW.0 + 3_600))
    }

    fn verify(fx: &Fixture, bytes: &[u8], seen: SeenVersions, opts: &VerifyOptions) -> Verified {
        verify_signed_bundle(bytes, &fx.installed, seen, opts, &StructuralValidator).unwrap()
    }

    fn refuse(fx: &Fixture, bytes: &[u8], seen: SeenVersions, opts: &VerifyOptions) -> VerifyError {
        verify_signed_bundle(bytes, &fx.installed, seen, opts, &StructuralValidator).unwrap_err()
    }

    /// Re-signs one metadata file of `signed` after `edit` changed its `signed` object.
    fn resign(
        bytes: &[u8],
        keys: &[&SigningKey],
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Vec<u8> {
        let mut value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        edit(&mut value["signed"]);
        metadata::sign(&value["signed"], keys).unwrap()
    }

    #[test]
    fn a_fresh_bundle_is_accepted_with_the_state_to_persist() {
        let fx = fixture();
        let v = verify(
            &fx,
            &signed(&fx, 5).encode(),
            SeenVersions::default(),
            &opts(),
        );
        assert_eq!(v.content_version, 5);
        assert_eq!(
            v.seen,
            SeenVersions {
                timestamp: NOW.0 + 5,
                snapshot: 5,
                targets: 5
            }
        );
        assert_eq!(v.root.version(), 1);
        let Outcome::New { bundle: b, report } = v.outcome else {
            panic!("expected new content");
        };
        assert_eq!(b, bundle(5));
        assert_eq!(report.rules, 1);
    }

    #[test]
    fn an_equal_version_is_a_no_op_reported_as_such() {
        let fx = fixture();
        let bytes = signed(&fx, 5).encode();
        let first = verify(&fx, &bytes, SeenVersions::default(), &opts());
        let again = VerifyOptions {
            current_content_version: Some(5),
            ..opts()
        };
        let v = verify(&fx, &bytes, first.seen, &again);
        assert!(matches!(v.outcome, Outcome::Unchanged), "{:?}", v.outcome);
        assert_eq!(v.content_version, 5);
    }

    #[test]
    fn an_older_version_replayed_is_refused_as_rollback() {
        let fx = fixture();
        let old = signed(&fx, 4);
        let new = verify(
            &fx,
            &signed(&fx, 5).encode(),
            SeenVersions::default(),
            &opts(),
        );
        let current = VerifyOptions {
            current_content_version: Some(5),
            ..opts()
        };
        // Replayed as it was: its timestamp is older than the one seen.
        let err = refuse(&fx, &old.encode(), new.seen, &current);
        assert!(
            matches!(err, VerifyError::Rollback { role: Role::Timestamp, trusted, offered }
                if trusted == NOW.0 + 5 && offered == NOW.0 + 4),
            "{err}"
        );
        // With a fresh timestamp (the timestamp key signs anything it is given): the snapshot
        // it names is older than the one seen.
        let refreshed =
            refresh_timestamp(&old, &fx.keys, 4, NOW.0 + 100, NOW.plus_days(1)).unwrap();
        let err = refuse(&fx, &refreshed.encode(), new.seen, &current);
        assert!(
            matches!(
                err,
                VerifyError::Rollback {
                    role: Role::Snapshot,
                    trusted: 5,
                    offered: 4
                }
            ),
            "{err}"
        );
        // An agent that lost its metadata state still refuses older content.
        let err = refuse(&fx, &old.encode(), SeenVersions::default(), &current);
        assert!(
            matches!(
                err,
                VerifyError::ContentRollback {
                    current: 5,
                    offered: 4
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "content version 4 is older than the current version 5"
        );
    }

    #[test]
    fn every_truncation_is_refused_naming_the_part() {
        let fx = fixture();
        let bytes = signed(&fx, 1).encode();
        for len in 0..bytes.len() {
            let err = refuse(&fx, &bytes[..len], SeenVersions::default(), &opts());
            assert!(
                matches!(err, VerifyError::Container { .. }),
                "cut at {len}: {err}"
            );
            assert!(err.to_string().contains("offset"), "cut at {len}: {err}");
        }
    }

    #[test]
    fn a_bad_signature_is_refused_naming_role_and_key() {
        let fx = fixture();
        let mut s = signed(&fx, 1);
        // Change the timestamp's expiry but keep its old signature.
        let mut value: serde_json::Value = serde_json::from_slice(&s.timestamp).unwrap();
        value["signed"]["expires"] = "2099-01-01T00:00:00Z".into();
        s.timestamp = serde_json::to_vec(&value).unwrap();
        let err = refuse(&fx, &s.encode(), SeenVersions::default(), &opts());
        let keyid = fx.installed.keyids(Role::Timestamp)[0].clone();
        assert!(
            matches!(err, VerifyError::BadSignature { role: Role::Timestamp, keyid: ref k, .. } if *k == keyid),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("timestamp metadata: signature by key"),
            "{err}"
        );
    }

    #[test]
    fn a_bundle_signed_by_another_keys_directory_names_the_keys_expected_and_seen() {
        let fx = fixture();
        let other = fixture();
        let bytes = signed(&other, 1).encode();
        let err = refuse(&fx, &bytes, SeenVersions::default(), &opts());
        let expected = &fx.installed.keyids(Role::Timestamp)[0][..16];
        let seen = &other.installed.keyids(Role::Timestamp)[0][..16];
        assert!(
            matches!(
                err,
                VerifyError::UntrustedKeys {
                    role: Role::Timestamp,
                    ..
                }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "timestamp metadata is signed by keys this root does not trust: expected \
                 timestamp keys (key {expected}, threshold 1), seen key {seen}"
            )),
            "{msg}"
        );
    }

    #[test]
    fn an_empty_bundle_is_refused_unless_its_signed_metadata_allows_it() {
        let fx = fixture();
        let schema = SchemaId {
            version: 1,
            fingerprint: "sha256:00ff".into(),
        };
        let sign = |b: &Bundle| {
            sign_bundle(b, &fx.keys, &SignOptions::new(1, UnixTime(NOW.0 + 1)))
                .unwrap()
                .encode()
        };
        let mut b = BundleBuilder::new(1, schema.clone(), Limits::default());
        b.add(EntryKind::Test, "tests/a.yml", b"rule: a\n".to_vec())
            .unwrap();
        let err = refuse(
            &fx,
            &sign(&b.build().unwrap()),
            SeenVersions::default(),
            &opts(),
        );
        assert!(matches!(err, VerifyError::Empty { version: 1 }), "{err}");
        assert!(
            err.to_string()
                .contains("detects nothing: 0 rules and 0 IOCs"),
            "{err}"
        );
        // An IOC set alone is content.
        let mut b = BundleBuilder::new(1, schema.clone(), Limits::default());
        b.add(EntryKind::Ioc, "iocs/ips.txt", b"203.0.113.7\n".to_vec())
            .unwrap();
        verify(
            &fx,
            &sign(&b.build().unwrap()),
            SeenVersions::default(),
            &opts(),
        );
        // Signed as empty on purpose: accepted.
        let mut b = BundleBuilder::new(1, schema, Limits::default());
        b.metadata(
            crate::bundle::ALLOW_EMPTY,
            "retire all content on this ring",
        )
        .unwrap();
        let v = verify(
            &fx,
            &sign(&b.build().unwrap()),
            SeenVersions::default(),
            &opts(),
        );
        assert!(matches!(v.outcome, Outcome::New { .. }));
    }

    #[test]
    fn a_signature_by_the_wrong_role_is_refused() {
        let fx = fixture();
        let mut s = signed(&fx, 1);
        s.timestamp = resign(&s.timestamp, &[&fx.keys.targets], |_| {});
        let err = refuse(&fx, &s.encode(), SeenVersions::default(), &opts());
        assert!(
            matches!(
                err,
                VerifyError::SignedByWrongRole {
                    role: Role::Timestamp,
                    key_role: Role::Targets,
                    ..
                }
            ),
            "{err}"
        );
        // Targets signed by the snapshot key (and snapshot re-pointed at it): same refusal.
        let mut s = signed(&fx, 1);
        s.targets = resign(&s.targets, &[&fx.keys.snapshot], |_| {});
        let targets = s.targets.clone();
        s.snapshot = resign(&s.snapshot, &[&fx.keys.snapshot], |v| {
            v["meta"]["targets.json"]["length"] = targets.len().into();
            v["meta"]["targets.json"]["hashes"]["sha256"] = sha256_hex(&targets).into();
        });
        let snapshot = s.snapshot.clone();
        s.timestamp = resign(&s.timestamp, &[&fx.keys.timestamp], |v| {
            v["meta"]["snapshot.json"]["length"] = snapshot.len().into();
            v["meta"]["snapshot.json"]["hashes"]["sha256"] = sha256_hex(&snapshot).into();
        });
        let err = refuse(&fx, &s.encode(), SeenVersions::default(), &opts());
        assert!(
            matches!(
                err,
                VerifyError::SignedByWrongRole {
                    role: Role::Targets,
                    key_role: Role::Snapshot,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_expired_timestamp_is_refused_as_a_freeze() {
        let fx = fixture();
        let bytes = signed(&fx, 1).encode();
        let later = VerifyOptions::new(NOW.plus_days(8));
        let err = refuse(&fx, &bytes, SeenVersions::default(), &later);
        assert!(
            matches!(
                err,
                VerifyError::Expired {
                    role: Role::Timestamp,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().starts_with("timestamp metadata v"), "{err}");
        // Snapshot and targets expire later in their own right.
        let err = refuse(
            &fx,
            &bytes,
            SeenVersions::default(),
            &VerifyOptions::new(NOW.plus_days(31)),
        );
        assert!(
            matches!(
                err,
                VerifyError::Expired {
                    role: Role::Timestamp,
                    ..
                }
            ),
            "{err}"
        );
        let fresh_ts =
            refresh_timestamp(&signed(&fx, 1), &fx.keys, 1, NOW.0 + 99, NOW.plus_days(60)).unwrap();
        let err = refuse(
            &fx,
            &fresh_ts.encode(),
            SeenVersions::default(),
            &VerifyOptions::new(NOW.plus_days(31)),
        );
        assert!(
            matches!(
                err,
                VerifyError::Expired {
                    role: Role::Snapshot,
                    ..
                }
            ),
            "{err}"
        );
        // A stored bundle re-loaded after a restart may skip expiry, nothing else.
        let reload = VerifyOptions {
            enforce_expiry: false,
            ..later
        };
        verify(&fx, &bytes, SeenVersions::default(), &reload);
    }

    #[test]
    fn new_targets_with_an_old_snapshot_is_refused_as_mix_and_match() {
        let fx = fixture();
        let v2 = signed(&fx, 2);
        let v3 = signed(&fx, 3);
        let mixed = SignedBundle {
            targets: v3.targets.clone(),
            payload: v3.payload.clone(),
            ..v2.clone()
        };
        let err = refuse(&fx, &mixed.encode(), SeenVersions::default(), &opts());
        assert!(
            matches!(
                err,
                VerifyError::MixAndMatch {
                    role: Role::Targets,
                    by: Role::Snapshot,
                    ..
                }
            ),
            "{err}"
        );
        // New snapshot under an old timestamp.
        let mixed = SignedBundle {
            snapshot: v3.snapshot.clone(),
            ..v2.clone()
        };
        let err = refuse(&fx, &mixed.encode(), SeenVersions::default(), &opts());
        assert!(
            matches!(
                err,
                VerifyError::MixAndMatch {
                    role: Role::Snapshot,
                    by: Role::Timestamp,
                    ..
                }
            ),
            "{err}"
        );
        // Old targets metadata with a new payload.
        let mixed = SignedBundle {
            payload: v3.payload.clone(),
            ..v2
        };
        let err = refuse(&fx, &mixed.encode(), SeenVersions::default(), &opts());
        assert!(matches!(err, VerifyError::TargetMismatch { .. }), "{err}");
    }

    /// Root v`version` with fresh root keys, the same other-role keys, signed by `signers`.
    fn rotated_root(
        fx: &Fixture,
        version: u64,
        new: &SigningKey,
        signers: &[&SigningKey],
    ) -> Vec<u8> {
        let root = build_root(
            version,
            NOW.plus_days(100),
            &[new],
            1,
            [&fx.keys.targets, &fx.keys.snapshot, &fx.keys.timestamp],
            fx.keys.releases.as_ref(),
            fx.keys.maintenance.as_ref(),
        );
        metadata::sign(&root, signers).unwrap()
    }

    #[test]
    fn a_root_rotation_that_skips_a_version_is_refused() {
        let fx = fixture();
        let (k2, k3) = (generate().unwrap(), generate().unwrap());
        let v3 = rotated_root(&fx, 3, &k3, &[&fx.keys.root_keys[0], &k2, &k3]);
        let mut s = signed(&fx, 1);
        s.roots = vec![s.roots[0].clone(), v3];
        let err = refuse(&fx, &s.encode(), SeenVersions::default(), &opts());
        assert!(
            matches!(
                err,
                VerifyError::RootVersionSkipped {
                    trusted: 1,
                    expected: 2,
                    actual: 3
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_root_rotation_signed_only_by_the_new_keys_is_refused() {
        let fx = fixture();
        let k2 = generate().unwrap();
        let v2 = rotated_root(&fx, 2, &k2, &[&k2]);
        let mut s = signed(&fx, 1);
        s.roots.push(v2);
        let err = refuse(&fx, &s.encode(), SeenVersions::default(), &opts());
        assert!(
            matches!(
                err,
                VerifyError::UntrustedKeys { role: Role::Root, valid: 0, threshold: 1, ref signer, .. } if signer == "root v1 keys"
            ),
            "{err}"
        );
        // Signed only by the old keys: the new keys' threshold is not met.
        let v2 = rotated_root(&fx, 2, &k2, &[&fx.keys.root_keys[0]]);
        let mut s = signed(&fx, 1);
        s.roots.push(v2);
        let err = refuse(&fx, &s.encode(), SeenVersions::default(), &opts());
        assert!(
            matches!(err, VerifyError::UntrustedKeys { role: Role::Root, ref signer, .. } if signer == "root v2 keys"),
            "{err}"
        );
    }

    #[test]
    fn a_proper_rotation_is_followed_and_an_expired_root_refused() {
        let mut fx = fixture();
        fx.keys
            .rotate_root(&RotateOptions {
                new_root_keys: 2,
                new_threshold: 2,
                expires: NOW.plus_days(2),
            })
            .unwrap();
        fx.keys
            .rotate_root(&RotateOptions {
                new_root_keys: 1,
                new_threshold: 1,
                expires: NOW.plus_days(2),
            })
            .unwrap();
        let bytes = signed(&fx, 1).encode();
        let v = verify(&fx, &bytes, SeenVersions::default(), &opts());
        assert_eq!(v.root.version(), 3);
        assert_eq!(v.root, *fx.keys.trusted_root());
        // An agent already on v3 skips the roots it has.
        let again =
            verify_signed_bundle(&bytes, &v.root, v.seen, &opts(), &StructuralValidator).unwrap();
        assert_eq!(again.root.version(), 3);
        // After the root expires, nothing signed under it is accepted.
        let late = VerifyOptions::new(NOW.plus_days(3));
        let err = refuse(&fx, &bytes, SeenVersions::default(), &late);
        assert!(
            matches!(
                err,
                VerifyError::Expired {
                    role: Role::Root,
                    version: 3,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_rotation_of_the_timestamp_key_resets_its_seen_version() {
        let fx = fixture();
        let new_ts = generate().unwrap();
        let mut root = build_root(
            2,
            NOW.plus_days(100),
            &[&fx.keys.root_keys[0]],
            1,
            [&fx.keys.targets, &fx.keys.snapshot, &new_ts],
            fx.keys.releases.as_ref(),
            fx.keys.maintenance.as_ref(),
        );
        root.spec_version = SPEC_VERSION.into();
        let v2 = metadata::sign(&root, &[&fx.keys.root_keys[0]]).unwrap();
        let mut s = signed(&fx, 1);
        s.roots.push(v2);
        s.timestamp = resign(&s.timestamp, &[&new_ts], |v| v["version"] = 1.into());
        // The agent had seen a (possibly fast-forwarded) huge timestamp version.
        let seen = SeenVersions {
            timestamp: u64::MAX,
            snapshot: 0,
            targets: 0,
        };
        let v = verify(&fx, &s.encode(), seen, &opts());
        assert_eq!(v.seen.timestamp, 1);
    }

    #[test]
    fn tampered_payload_marked_bad_and_failed_validation_are_refused() {
        let fx = fixture();
        let mut s = signed(&fx, 1);
        let last = s.payload.len() - 1;
        s.payload[last] ^= 1;
        let err = refuse(&fx, &s.encode(), SeenVersions::default(), &opts());
        assert!(
            matches!(
                err,
                VerifyError::TargetMismatch {
                    field: "sha256",
                    ..
                }
            ),
            "{err}"
        );

        let bad = VerifyOptions {
            bad_versions: [1].into(),
            ..opts()
        };
        let err = refuse(&fx, &signed(&fx, 1).encode(), SeenVersions::default(), &bad);
        assert!(
            matches!(err, VerifyError::MarkedBad { version: 1 }),
            "{err}"
        );

        struct Refuse;
        impl ContentValidator for Refuse {
            fn validate(&self, b: &Bundle) -> Result<ValidationReport, Vec<ValidationError>> {
                Err(b
                    .rules()
                    .map(|(p, _)| {
                        ValidationError::new(p, "unknown field")
                            .with_line(2)
                            .with_field("Imagee")
                    })
                    .collect())
            }
        }
        let err = verify_signed_bundle(
            &signed(&fx, 1).encode(),
            &fx.installed,
            SeenVersions::default(),
            &opts(),
            &Refuse,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "content validation failed with 1 error(s): rules/proc/a.yml:2 field Imagee: unknown field"
        );
    }

    #[test]
    fn a_100_mb_payload_is_refused_from_its_length_prefix() {
        let fx = fixture();
        let s = signed(&fx, 1);
        let mut bytes = SignedBundle {
            payload: vec![],
            ..s
        }
        .encode();
        let at = bytes.len() - 8;
        bytes[at..].copy_from_slice(&(100u64 * 1024 * 1024).to_be_bytes());
        let err = refuse(&fx, &bytes, SeenVersions::default(), &opts());
        assert!(
            err.to_string().contains("bundle payload at offset"),
            "{err}"
        );
        assert!(
            err.to_string().contains("declares 104857600 bytes"),
            "{err}"
        );
    }
}
