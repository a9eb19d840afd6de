//! Agent releases: the agent binary signed through the content trust root by its own
//! `releases` role (`ringfence release build`). The role's keys are not the content roles'
//! ([`crate::metadata`] refuses a root where they overlap), so whoever signs content cannot
//! ship a binary, and the agent checks a release against the same root it already trusts.
//!
//! # Format
//! ```text
//! "RFRELEASE1\n"                      magic, 11 bytes
//! u32 big-endian                      length of the envelope, at most 64 KiB
//! envelope                            canonical JSON, signed by the releases role:
//!   {"signatures":[...],"signed":{"_type":"release","spec_version":"ringfence-tuf-1",
//!    "version":"0.3.0","issued":"...Z","expires":"...Z",
//!    "binary":{"length":N,"hashes":{"sha256":"<hex>"}}}}
//! binary                              exactly N bytes (at most 512 MiB)
//! ```
//! `issued` orders releases: an agent refuses a release issued before the newest it accepted
//! (anti-rollback), so going back to an older binary is a new release, issued now, that
//! carries the old binary under a new version name.
//!
//! # Checks, in order
//! size and magic → envelope length → envelope JSON (unknown fields refused) → `_type` →
//! a threshold of the trusted root's releases keys signed it (a root without the role
//! refuses every release) → `signed` parsed strictly → version is a plain directory name →
//! `issued` before `expires`, not expired at `now` → the binary's length and SHA-256.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::VerifyError;
use crate::keys::KeySet;
use crate::metadata::{
    self, Envelope, Hashes, KeysOf, Role, SPEC_VERSION, sha256_hex, verify_threshold,
};
use crate::reader::{ReadError, Reader};
use crate::time::UnixTime;
use crate::verify::TrustedRoot;

/// The file's first bytes.
pub const MAGIC: &[u8] = b"RFRELEASE1\n";
/// `_type` of a release.
pub const RELEASE_TYPE: &str = "release";
/// The largest envelope read.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;
/// The largest binary accepted.
pub const MAX_BINARY_BYTES: u64 = 512 * 1024 * 1024;

/// `signed` of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseMeta {
    #[serde(rename = "_type")]
    pub typ: String,
    pub spec_version: String,
    /// The agent version: its directory under `versions/` (`[0-9A-Za-z.+-]{1,64}`).
    pub version: String,
    /// When it was signed: releases are ordered by it (anti-rollback).
    pub issued: String,
    pub expires: String,
    pub binary: BinaryFile,
}

/// The binary's length and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinaryFile {
    pub length: u64,
    pub hashes: Hashes,
}

/// A verified release: its claims and the binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release<'a> {
    pub version: String,
    pub issued: UnixTime,
    pub expires: UnixTime,
    pub binary: &'a [u8],
}

/// Why a release was refused (or could not be signed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    #[error("not a ringfence release: it does not start with \"RFRELEASE1\\n\"")]
    BadMagic,
    #[error("release file: {0}")]
    Container(#[from] ReadError),
    #[error("release envelope of {size} bytes is larger than {limit}")]
    EnvelopeTooLarge { size: usize, limit: usize },
    #[error("release binary of {size} bytes is larger than {limit}")]
    BinaryTooLarge { size: u64, limit: u64 },
    #[error("release metadata: {0}")]
    Malformed(String),
    #[error("release metadata: {0}")]
    Signature(#[source] VerifyError),
    #[error(
        "root v{root_version} has no releases role: it cannot sign agent releases (add one \
         with `ringfence release keys-add --keys KEYS`)"
    )]
    NoReleasesRole { root_version: u64 },
    #[error("release {version}: version must be 1 to 64 of [0-9A-Za-z.+-], not starting with `.`")]
    BadVersion { version: String },
    #[error("release {version}: {field} `{value}` is not a time (YYYY-MM-DDTHH:MM:SSZ)")]
    BadTime {
        version: String,
        field: &'static str,
        value: String,
    },
    #[error("release {version} expired at {expires} (now {now})")]
    Expired {
        version: String,
        expires: UnixTime,
        now: UnixTime,
    },
    #[error("release {version}: expires {expires} is not after issued {issued}")]
    ExpiresBeforeIssued {
        version: String,
        issued: UnixTime,
        expires: UnixTime,
    },
    #[error("release {version}: the binary is {actual} bytes, the signed length is {signed}")]
    LengthMismatch {
        version: String,
        signed: u64,
        actual: u64,
    },
    #[error("release {version}: the binary's SHA-256 is {actual}, the signed one is {signed}")]
    HashMismatch {
        version: String,
        signed: String,
        actual: String,
    },
    #[error("this keys directory has no releases key (add one with `ringfence release keys-add`)")]
    NoReleasesKey,
    #[error("signing the release: {0}")]
    Sign(String),
}

/// Signs `binary` as agent `version`, issued `issued`, valid until `expires`, with the
/// releases key of `keys`; returns the release file's bytes.
pub fn sign_release(
    keys: &KeySet,
    binary: &[u8],
    version: &str,
    issued: UnixTime,
    expires: UnixTime,
) -> Result<Vec<u8>, ReleaseError> {
    check_version(version)?;
    if expires <= issued {
        return Err(ReleaseError::ExpiresBeforeIssued {
            version: version.to_owned(),
            issued,
            expires,
        });
    }
    let length = binary.len() as u64;
    if length > MAX_BINARY_BYTES {
        return Err(ReleaseError::BinaryTooLarge {
            size: length,
            limit: MAX_BINARY_BYTES,
        });
    }
    let key = keys.releases_key().ok_or(ReleaseError::NoReleasesKey)?;
    let meta = ReleaseMeta {
        typ: RELEASE_TYPE.into(),
        spec_version: SPEC_VERSION.into(),
        version: version.to_owned(),
        issued: issued.to_string(),
        expires: expires.to_string(),
        binary: BinaryFile {
            length,
            hashes: Hashes {
                sha256: sha256_hex(binary),
            },
        },
    };
    let envelope = metadata::sign(&meta, &[key]).map_err(ReleaseError::Sign)?;
    let envelope_len = u32::try_from(envelope.len())
        .ok()
        .filter(|&n| n as usize <= MAX_ENVELOPE_BYTES)
        .ok_or(ReleaseError::EnvelopeTooLarge {
            size: envelope.len(),
            limit: MAX_ENVELOPE_BYTES,
        })?;
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + envelope.len() + binary.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&envelope_len.to_be_bytes());
    out.extend_from_slice(&envelope);
    out.extend_from_slice(binary);
    Ok(out)
}

/// The version a release file claims, read WITHOUT verifying anything but its framing: for an
/// operator's CLI naming the upload (the console and the agent verify it). Never trust it.
pub fn claimed_version(bytes: &[u8]) -> Result<String, ReleaseError> {
    let mut r = Reader::new(bytes);
    if r.take(MAGIC.len() as u64, "release magic").ok() != Some(MAGIC) {
        return Err(ReleaseError::BadMagic);
    }
    let envelope_bytes = r.bytes_u32(MAX_ENVELOPE_BYTES as u64, "release envelope")?;
    let envelope = Envelope::parse(Role::Releases, envelope_bytes)
        .map_err(|e| ReleaseError::Malformed(e.to_string()))?;
    let version = match envelope.signed.get("version") {
        Some(Value::String(v)) => v.clone(),
        _ => return Err(ReleaseError::Malformed("signed has no version".into())),
    };
    check_version(&version)?;
    Ok(version)
}

/// Verifies a release file against `root` at `now` (see the module's checks).
pub fn verify_release<'a>(
    bytes: &'a [u8],
    root: &TrustedRoot,
    now: UnixTime,
) -> Result<Release<'a>, ReleaseError> {
    let mut r = Reader::new(bytes);
    if r.take(MAGIC.len() as u64, "release magic").ok() != Some(MAGIC) {
        return Err(ReleaseError::BadMagic);
    }
    let envelope_bytes = r.bytes_u32(MAX_ENVELOPE_BYTES as u64, "release envelope")?;
    if r.remaining() as u64 > MAX_BINARY_BYTES {
        return Err(ReleaseError::BinaryTooLarge {
            size: r.remaining() as u64,
            limit: MAX_BINARY_BYTES,
        });
    }
    let binary = r.take(r.remaining() as u64, "release binary")?;
    r.finish("release")?;
    let envelope = Envelope::parse(Role::Releases, envelope_bytes).map_err(|e| match e {
        VerifyError::Malformed { detail, .. } => ReleaseError::Malformed(detail),
        other => ReleaseError::Malformed(other.to_string()),
    })?;
    match envelope.signed.get("_type") {
        Some(Value::String(t)) if t == RELEASE_TYPE => {}
        Some(other) => {
            return Err(ReleaseError::Malformed(format!(
                "_type is {other}, expected \"{RELEASE_TYPE}\""
            )));
        }
        None => return Err(ReleaseError::Malformed("signed has no _type".into())),
    }
    let root_meta = root.metadata();
    if !root_meta.roles.contains_key(&Role::Releases) {
        return Err(ReleaseError::NoReleasesRole {
            root_version: root.version(),
        });
    }
    verify_threshold(
        &envelope,
        KeysOf {
            root: root_meta,
            role: Role::Releases,
        },
    )
    .map_err(ReleaseError::Signature)?;
    // `_type` was checked above (it is "release", not the role's name).
    let meta: ReleaseMeta = serde_json::from_value(envelope.signed)
        .map_err(|e| ReleaseError::Malformed(format!("signed: {e}")))?;
    if meta.spec_version != SPEC_VERSION {
        return Err(ReleaseError::Malformed(format!(
            "spec_version is {:?}, expected {SPEC_VERSION:?}",
            meta.spec_version
        )));
    }
    check_version(&meta.version)?;
    let time = |field: &'static str, value: &str| {
        UnixTime::parse(value).ok_or_else(|| ReleaseError::BadTime {
            version: meta.version.clone(),
            field,
            value: value.chars().take(64).collect(),
        })
    };
    let issued = time("issued", &meta.issued)?;
    let expires = time("expires", &meta.expires)?;
    if expires <= issued {
        return Err(ReleaseError::ExpiresBeforeIssued {
            version: meta.version,
            issued,
            expires,
        });
    }
    if expires <= now {
        return Err(ReleaseError::Expired {
            version: meta.version,
            expires,
            now,
        });
    }
    if meta.binary.length != binary.len() as u64 {
        return Err(ReleaseError::LengthMismatch {
            version: meta.version,
            signed: meta.binary.length,
            actual: binary.len() as u64,
        });
    }
    let actual = hex::encode(Sha256::digest(binary));
    if !actual.eq_ignore_ascii_case(&meta.binary.hashes.sha256) {
        return Err(ReleaseError::HashMismatch {
            version: meta.version,
            signed: meta.binary.hashes.sha256,
            actual,
        });
    }
    Ok(Release {
        version: meta.version,
        issued,
        expires,
        binary,
    })
}

fn check_version(version: &str) -> Result<(), ReleaseError> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && !version.starts_with('.')
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ReleaseError::BadVersion {
            version: version.chars().take(80).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeysInitOptions, init_keys};

    fn now() -> UnixTime {
        UnixTime::parse("2026-12-01T00:00:00Z").unwrap()
    }

    fn keys(dir: &std::path::Path) -> KeySet {
        init_keys(&dir.join("keys"), &KeysInitOptions::new(now())).unwrap()
    }

    #[test]
    fn a_signed_release_verifies_and_a_changed_byte_does_not() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = keys(tmp.path());
        let file = sign_release(
            &keys,
            b"\x7fELF binary",
            "0.3.0",
            now(),
            now().plus_days(30),
        )
        .unwrap();
        let release = verify_release(&file, keys.trusted_root(), now().plus_secs(60)).unwrap();
        assert_eq!(release.version, "0.3.0");
        assert_eq!(release.binary, b"\x7fELF binary");
        let mut changed = file.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(matches!(
            verify_release(&changed, keys.trusted_root(), now()),
            Err(ReleaseError::HashMismatch { .. })
        ));
        assert!(matches!(
            verify_release(&file, keys.trusted_root(), now().plus_days(31)),
            Err(ReleaseError::Expired { .. })
        ));
        assert!(matches!(
            verify_release(&file[..file.len() - 1], keys.trusted_root(), now()),
            Err(ReleaseError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn the_claimed_version_is_read_from_the_framing_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = keys(tmp.path());
        let file = sign_release(&keys, b"bin", "0.3.0", now(), now().plus_days(30)).unwrap();
        assert_eq!(claimed_version(&file).unwrap(), "0.3.0");
        assert!(matches!(
            claimed_version(b"RFRELEASE0\n"),
            Err(ReleaseError::BadMagic)
        ));
        assert!(claimed_version(&file[..20]).is_err());
    }

    #[test]
    fn content_signers_cannot_ship_binaries() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = keys(tmp.path());
        // The same release metadata signed by the targets key is refused by role.
        let meta = ReleaseMeta {
            typ: RELEASE_TYPE.into(),
            spec_version: SPEC_VERSION.into(),
            version: "6.6.6".into(),
            issued: now().to_string(),
            expires: now().plus_days(1).to_string(),
            binary: BinaryFile {
                length: 3,
                hashes: Hashes {
                    sha256: sha256_hex(b"bad"),
                },
            },
        };
        let envelope = metadata::sign(&meta, &[&keys.targets]).unwrap();
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&(envelope.len() as u32).to_be_bytes());
        file.extend_from_slice(&envelope);
        file.extend_from_slice(b"bad");
        let err = verify_release(&file, keys.trusted_root(), now()).unwrap_err();
        assert!(
            matches!(
                err,
                ReleaseError::Signature(VerifyError::SignedByWrongRole {
                    key_role: Role::Targets,
                    ..
                })
            ),
            "{err}"
        );
    }

    #[test]
    fn a_root_without_the_role_refuses_releases_until_it_is_added() {
        let tmp = tempfile::tempdir().unwrap();
        let mut keys = keys(tmp.path());
        let file = sign_release(&keys, b"bin", "1.0", now(), now().plus_days(1)).unwrap();
        // An older keys directory: no releases role in its root.
        let mut old = keys.trusted_root().metadata().clone();
        old.roles.remove(&Role::Releases);
        let signed = metadata::sign(&old, &keys.root_keys.iter().collect::<Vec<_>>()).unwrap();
        let old_root = TrustedRoot::from_bytes(&signed).unwrap();
        assert!(matches!(
            verify_release(&file, &old_root, now()),
            Err(ReleaseError::NoReleasesRole { .. })
        ));
        // Adding the role to a directory that has it is refused; the rotation adds a new key.
        assert!(keys.add_releases_role(now().plus_days(365)).is_err());
        let _ = std::fs::remove_file(tmp.path().join("keys/releases.key"));
        keys.releases = None;
        keys.add_releases_role(now().plus_days(365)).unwrap();
        assert_eq!(keys.trusted_root().version(), 2);
        let file = sign_release(&keys, b"bin", "1.0", now(), now().plus_days(1)).unwrap();
        verify_release(&file, keys.trusted_root(), now()).unwrap();
    }

    #[test]
    fn a_root_sharing_a_key_between_releases_and_content_is_invalid() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = keys(tmp.path());
        let mut root = keys.trusted_root().metadata().clone();
        let targets = root.roles[&Role::Targets].clone();
        root.roles.insert(Role::Releases, targets);
        let signed = metadata::sign(&root, &keys.root_keys.iter().collect::<Vec<_>>()).unwrap();
        let err = TrustedRoot::from_bytes(&signed).unwrap_err();
        assert!(
            err.to_string().contains("content signers cannot ship"),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_refused_without_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = keys(tmp.path());
        for bytes in [
            &b""[..],
            b"RFRELEASE1\n",
            b"RFRELEASE1\n\xff\xff\xff\xff",
            b"RFRELEASE1\n\x00\x00\x00\x05{}",
            b"RFRELEASE1\n\x00\x00\x00\x02{}",
        ] {
            assert!(verify_release(bytes, keys.trusted_root(), now()).is_err());
        }
    }
}
