//! The signed bundle: one file carrying the TUF-style metadata and the bundle payload, and
//! the signing side that produces it (`content build ... --keys KEYS`).
//!
//! ```text
//! magic "RFSIGNED" | format u16 = 1 | root_count u16
//! | root_count × root.json (u32 len)      every root version, ascending: agents follow rotations
//! | timestamp.json (u32 len) | snapshot.json (u32 len) | targets.json (u32 len)
//! | payload (u64 len)                     the encoded `Bundle`
//! ```
//! Timestamp names snapshot (version, length, sha256), snapshot names targets, targets names
//! the payload ("bundle": length, sha256, content and schema version). Every length is checked
//! against its limit before the bytes are touched, and trailing data is refused.

use crate::bundle::{Bundle, Limits};
use crate::error::VerifyError;
use crate::keys::KeySet;
use crate::metadata::{
    self, BUNDLE_TARGET, Hashes, MetaFile, SPEC_VERSION, Snapshot, TargetCustom, TargetFile,
    Targets, Timestamp, sha256_hex,
};
use crate::reader::Reader;
use crate::time::UnixTime;

const MAGIC: &[u8; 8] = b"RFSIGNED";
const FORMAT_VERSION: u16 = 1;
/// Largest single metadata file.
pub const MAX_METADATA_BYTES: u64 = 1024 * 1024;
/// Most root versions a signed bundle may carry.
pub const MAX_ROOTS: u16 = 256;

/// A signed bundle, parsed into its parts but **not verified**: pass its bytes to
/// [`crate::verify_signed_bundle`] to trust anything in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBundle {
    /// Signed root metadata, ascending by version.
    pub roots: Vec<Vec<u8>>,
    pub timestamp: Vec<u8>,
    pub snapshot: Vec<u8>,
    pub targets: Vec<u8>,
    /// The encoded [`Bundle`].
    pub payload: Vec<u8>,
}

impl SignedBundle {
    /// The one-file form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        // Counts and lengths are within the prefixes: signing builds these from bounded inputs.
        out.extend_from_slice(&(self.roots.len() as u16).to_be_bytes());
        for part in self
            .roots
            .iter()
            .chain([&self.timestamp, &self.snapshot, &self.targets])
        {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&(self.payload.len() as u64).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Splits untrusted bytes into their parts, refusing oversize, truncated or trailing data.
    /// Nothing is verified.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<SignedBundle, VerifyError> {
        let container = |context| move |source| VerifyError::Container { context, source };
        let mut r = Reader::new(bytes);
        let magic = r.take(8, "magic").map_err(container("header"))?;
        if magic != MAGIC {
            return Err(VerifyError::BadMagic {
                found: magic.to_vec(),
            });
        }
        let format = r.u16("format version").map_err(container("header"))?;
        if format != FORMAT_VERSION {
            return Err(VerifyError::UnsupportedFormat { found: format });
        }
        let count = r.u16("root count").map_err(container("header"))?;
        if count > MAX_ROOTS {
            return Err(VerifyError::Container {
                context: "header",
                source: crate::reader::ReadError::TooLong {
                    what: "root count",
                    offset: 10,
                    length: count.into(),
                    limit: MAX_ROOTS.into(),
                },
            });
        }
        let mut roots = Vec::with_capacity(count.into());
        for _ in 0..count {
            let root = r
                .bytes_u32(MAX_METADATA_BYTES, "root metadata")
                .map_err(container("root chain"))?;
            roots.push(root.to_vec());
        }
        let mut part = |what: &'static str| {
            r.bytes_u32(MAX_METADATA_BYTES, what)
                .map(<[u8]>::to_vec)
                .map_err(container("metadata"))
        };
        let timestamp = part("timestamp metadata")?;
        let snapshot = part("snapshot metadata")?;
        let targets = part("targets metadata")?;
        let payload = r
            .bytes_u64(limits.max_total_bytes, "bundle payload")
            .map_err(container("payload"))?
            .to_vec();
        r.finish("signed bundle").map_err(container("payload"))?;
        Ok(SignedBundle {
            roots,
            timestamp,
            snapshot,
            targets,
            payload,
        })
    }

    /// Reads a signed bundle file, refusing it on its size before reading it.
    pub fn read_file(path: &std::path::Path, limits: &Limits) -> Result<Vec<u8>, VerifyError> {
        let max = limits
            .max_total_bytes
            .saturating_add(u64::from(MAX_ROOTS + 3) * (MAX_METADATA_BYTES + 4) + 32);
        Ok(crate::bundle::read_limited(
            path,
            max,
            "signed bundle file",
        )?)
    }
}

/// Metadata versions and expiries for one signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOptions {
    pub timestamp_version: u64,
    pub snapshot_version: u64,
    pub targets_version: u64,
    pub timestamp_expires: UnixTime,
    pub snapshot_expires: UnixTime,
    pub targets_expires: UnixTime,
}

impl SignOptions {
    /// Targets and snapshot versions equal the content version (which only goes up); the
    /// timestamp version is `now` in seconds, so re-signing a timestamp later also goes up.
    /// Timestamp expires in 7 days, snapshot in 30, targets in 90.
    pub fn new(content_version: u64, now: UnixTime) -> Self {
        SignOptions {
            timestamp_version: now.0,
            snapshot_version: content_version,
            targets_version: content_version,
            timestamp_expires: now.plus_days(7),
            snapshot_expires: now.plus_days(30),
            targets_expires: now.plus_days(90),
        }
    }
}

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    #[error("signing {role} metadata: {detail}")]
    Metadata {
        role: metadata::Role,
        detail: String,
    },
    #[error("bundle payload is {size} bytes, limit is {limit}")]
    TooLarge { size: u64, limit: u64 },
}

/// Signs `bundle` with every role's key: targets names the payload, snapshot names targets,
/// timestamp names snapshot; the whole root chain goes along.
pub fn sign_bundle(
    bundle: &Bundle,
    keys: &KeySet,
    opts: &SignOptions,
) -> Result<SignedBundle, SignError> {
    let payload = bundle.encode();
    let meta = |role| move |detail| SignError::Metadata { role, detail };
    let mut targets = Targets {
        typ: "targets".into(),
        spec_version: SPEC_VERSION.into(),
        version: opts.targets_version,
        expires: opts.targets_expires.to_string(),
        targets: Default::default(),
    };
    targets.targets.insert(
        BUNDLE_TARGET.into(),
        TargetFile {
            length: payload.len() as u64,
            hashes: Hashes {
                sha256: sha256_hex(&payload),
            },
            custom: TargetCustom {
                content_version: bundle.content_version(),
                schema_version: bundle.schema().version,
                schema_fingerprint: bundle.schema().fingerprint.clone(),
            },
        },
    );
    let targets =
        metadata::sign(&targets, &[&keys.targets]).map_err(meta(metadata::Role::Targets))?;
    let snapshot = Snapshot {
        typ: "snapshot".into(),
        spec_version: SPEC_VERSION.into(),
        version: opts.snapshot_version,
        expires: opts.snapshot_expires.to_string(),
        meta: [(
            "targets.json".to_owned(),
            meta_file(opts.targets_version, &targets),
        )]
        .into(),
    };
    let snapshot =
        metadata::sign(&snapshot, &[&keys.snapshot]).map_err(meta(metadata::Role::Snapshot))?;
    let timestamp = timestamp_for(
        &snapshot,
        opts.snapshot_version,
        opts.timestamp_version,
        opts.timestamp_expires,
        keys,
    )?;
    Ok(SignedBundle {
        roots: keys.root_chain().to_vec(),
        timestamp,
        snapshot,
        targets,
        payload,
    })
}

/// A fresh timestamp for an existing signed bundle (to extend its life without rebuilding);
/// `version` must be above the previous timestamp's for agents that saw it.
pub fn refresh_timestamp(
    signed: &SignedBundle,
    keys: &KeySet,
    snapshot_version: u64,
    version: u64,
    expires: UnixTime,
) -> Result<SignedBundle, SignError> {
    let timestamp = timestamp_for(&signed.snapshot, snapshot_version, version, expires, keys)?;
    Ok(SignedBundle {
        timestamp,
        ..signed.clone()
    })
}

fn timestamp_for(
    snapshot: &[u8],
    snapshot_version: u64,
    version: u64,
    expires: UnixTime,
    keys: &KeySet,
) -> Result<Vec<u8>, SignError> {
    let timestamp = Timestamp {
        typ: "timestamp".into(),
        spec_version: SPEC_VERSION.into(),
        version,
        expires: expires.to_string(),
        meta: [(
            "snapshot.json".to_owned(),
            meta_file(snapshot_version, snapshot),
        )]
        .into(),
    };
    metadata::sign(&timestamp, &[&keys.timestamp]).map_err(|detail| SignError::Metadata {
        role: metadata::Role::Timestamp,
        detail,
    })
}

fn meta_file(version: u64, bytes: &[u8]) -> MetaFile {
    MetaFile {
        version,
        length: bytes.len() as u64,
        hashes: Hashes {
            sha256: sha256_hex(bytes),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SignedBundle {
        SignedBundle {
            roots: vec![b"r1".to_vec(), b"r2".to_vec()],
            timestamp: b"ts".to_vec(),
            snapshot: b"snap".to_vec(),
            targets: b"targets".to_vec(),
            payload: b"payload".to_vec(),
        }
    }

    #[test]
    fn container_round_trips_and_refuses_every_truncation() {
        let bytes = sample().encode();
        assert_eq!(
            SignedBundle::decode(&bytes, &Limits::default()).unwrap(),
            sample()
        );
        for len in 0..bytes.len() {
            let err = SignedBundle::decode(&bytes[..len], &Limits::default()).unwrap_err();
            assert!(
                matches!(err, VerifyError::Container { .. }),
                "cut at {len}: {err}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        let err = SignedBundle::decode(&long, &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("trailing data"), "{err}");
    }

    #[test]
    fn oversize_parts_are_refused_from_their_prefix() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&1u16.to_be_bytes());
        bytes.extend_from_slice(&0u16.to_be_bytes());
        bytes.extend_from_slice(&(u32::MAX).to_be_bytes());
        let err = SignedBundle::decode(&bytes, &Limits::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("timestamp metadata at offset 12 declares"),
            "{err}"
        );
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&1u16.to_be_bytes());
        bytes.extend_from_slice(&1000u16.to_be_bytes());
        let err = SignedBundle::decode(&bytes, &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("root count"), "{err}");
    }
}
