//! TUF-style role metadata (root, targets, snapshot, timestamp): the JSON shapes, key ids,
//! and the two primitives everything else is made of: sign a `signed` object, and count the
//! valid signatures of one role's keys over it.
//!
//! The shapes follow the TUF specification closely (`_type`, `version`, `expires`, `keys`,
//! `roles`, `meta`, `targets` with `length`/`hashes`) so the design is recognisable, but the
//! files are not meant to interoperate with other TUF clients. Every struct refuses unknown
//! fields. Signatures cover the canonical JSON (see [`crate::canonical`]) of `signed`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ed25519_dalek::{Signature as DalekSignature, Signer, SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::canonical::to_canonical;
use crate::error::VerifyError;

/// The `spec_version` this crate writes and accepts.
pub const SPEC_VERSION: &str = "ringfence-tuf-1";
/// The name of the one target every targets metadata carries: the bundle payload.
pub const BUNDLE_TARGET: &str = "bundle";

/// The four TUF roles, and two optional ones whose keys no content role may share:
/// `releases`, which signs agent binaries ([`crate::release`]), and `maintenance`, which signs
/// the tokens that disarm, stop or uninstall a protected agent ([`crate::maintenance`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Root,
    Targets,
    Snapshot,
    Timestamp,
    Releases,
    Maintenance,
}

impl Role {
    /// The roles every root has, in TUF's order of trust.
    pub const ALL: [Role; 4] = [Role::Root, Role::Targets, Role::Snapshot, Role::Timestamp];
    /// Every role a root may name.
    pub const EVERY: [Role; 6] = [
        Role::Root,
        Role::Targets,
        Role::Snapshot,
        Role::Timestamp,
        Role::Releases,
        Role::Maintenance,
    ];
    /// The roles a root may leave out.
    pub const OPTIONAL: [Role; 2] = [Role::Releases, Role::Maintenance];

    /// The lower-case name, as in metadata and file names.
    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Targets => "targets",
            Role::Snapshot => "snapshot",
            Role::Timestamp => "timestamp",
            Role::Releases => "releases",
            Role::Maintenance => "maintenance",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One signature in an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub keyid: String,
    /// Hex of the 64-byte Ed25519 signature.
    pub sig: String,
}

/// A public key as it appears in root metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKey {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyVal,
}

/// The public half, hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyVal {
    pub public: String,
}

impl PublicKey {
    /// The metadata form of an Ed25519 verifying key.
    pub fn ed25519(key: &VerifyingKey) -> PublicKey {
        PublicKey {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: KeyVal {
                public: hex::encode(key.as_bytes()),
            },
        }
    }

    /// TUF key id: hex SHA-256 of the key's canonical JSON.
    pub fn keyid(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        hex::encode(Sha256::digest(to_canonical(&value).unwrap_or_default()))
    }

    fn verifying_key(&self) -> Option<VerifyingKey> {
        if self.keytype != "ed25519" || self.scheme != "ed25519" {
            return None;
        }
        let bytes: [u8; 32] = hex::decode(&self.keyval.public).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    }
}

/// Which keys may sign for a role, and how many must.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u32,
}

/// `signed` of root metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    #[serde(rename = "_type")]
    pub typ: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
    pub keys: BTreeMap<String, PublicKey>,
    pub roles: BTreeMap<Role, RoleKeys>,
}

/// Length and hash of another metadata file or of a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaFile {
    pub version: u64,
    pub length: u64,
    pub hashes: Hashes,
}

/// Hashes of a file; SHA-256 only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hashes {
    pub sha256: String,
}

/// `signed` of timestamp metadata: names the one current snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timestamp {
    #[serde(rename = "_type")]
    pub typ: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
    pub meta: BTreeMap<String, MetaFile>,
}

/// `signed` of snapshot metadata: names the one current targets metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    #[serde(rename = "_type")]
    pub typ: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
    pub meta: BTreeMap<String, MetaFile>,
}

/// A target: the bundle payload's length and hash, and what it claims to contain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: Hashes,
    pub custom: TargetCustom,
}

/// Facts about the bundle, signed by the targets role and checked against the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetCustom {
    pub content_version: u64,
    pub schema_version: u32,
    pub schema_fingerprint: String,
}

/// `signed` of targets metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    #[serde(rename = "_type")]
    pub typ: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
    pub targets: BTreeMap<String, TargetFile>,
}

/// The parts every role's `signed` shares.
pub(crate) trait Signed: Serialize + DeserializeOwned {
    const ROLE: Role;
    fn typ(&self) -> &str;
    fn spec_version(&self) -> &str;
}

macro_rules! signed_impl {
    ($t:ty, $role:expr) => {
        impl Signed for $t {
            const ROLE: Role = $role;
            fn typ(&self) -> &str {
                &self.typ
            }
            fn spec_version(&self) -> &str {
                &self.spec_version
            }
        }
    };
}
signed_impl!(Root, Role::Root);
signed_impl!(Timestamp, Role::Timestamp);
signed_impl!(Snapshot, Role::Snapshot);
signed_impl!(Targets, Role::Targets);

/// The envelope as read from untrusted bytes: signatures, and `signed` still untyped.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    signatures: Vec<Signature>,
    signed: Value,
}

/// Envelope whose signatures have not been checked yet.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    pub role: Role,
    pub signatures: Vec<Signature>,
    pub signed: Value,
    /// Canonical bytes of `signed`: what the signatures cover.
    pub canonical: Vec<u8>,
}

impl Envelope {
    /// Parses the JSON envelope of `role`'s metadata. Signatures are not checked here.
    pub fn parse(role: Role, bytes: &[u8]) -> Result<Envelope, VerifyError> {
        let raw: RawEnvelope =
            serde_json::from_slice(bytes).map_err(|e| VerifyError::Malformed {
                role,
                detail: e.to_string(),
            })?;
        let canonical = to_canonical(&raw.signed).map_err(|e| VerifyError::Malformed {
            role,
            detail: e.to_string(),
        })?;
        Ok(Envelope {
            role,
            signatures: raw.signatures,
            signed: raw.signed,
            canonical,
        })
    }

    /// Turns `signed` into `T`, checking `_type` and `spec_version`. Call only after the
    /// signatures were verified.
    pub fn typed<T: Signed>(&self) -> Result<T, VerifyError> {
        let role = self.role;
        let typed: T =
            serde_json::from_value(self.signed.clone()).map_err(|e| VerifyError::Malformed {
                role,
                detail: e.to_string(),
            })?;
        if typed.typ() != T::ROLE.name() {
            return Err(VerifyError::WrongType {
                role,
                expected: T::ROLE.name(),
                found: typed.typ().to_owned(),
            });
        }
        if typed.spec_version() != SPEC_VERSION {
            return Err(VerifyError::Malformed {
                role,
                detail: format!(
                    "spec_version is {:?}, expected {SPEC_VERSION:?}",
                    typed.spec_version()
                ),
            });
        }
        Ok(typed)
    }
}

/// Signs `signed` with every key given and returns the envelope's canonical JSON bytes.
pub(crate) fn sign<T: Serialize>(signed: &T, keys: &[&SigningKey]) -> Result<Vec<u8>, String> {
    let value = serde_json::to_value(signed).map_err(|e| e.to_string())?;
    let canonical = to_canonical(&value).map_err(|e| e.to_string())?;
    let mut signatures: Vec<Signature> = keys
        .iter()
        .map(|k| Signature {
            keyid: PublicKey::ed25519(&k.verifying_key()).keyid(),
            sig: hex::encode(k.sign(&canonical).to_bytes()),
        })
        .collect();
    signatures.sort_by(|a, b| a.keyid.cmp(&b.keyid));
    signatures.dedup_by(|a, b| a.keyid == b.keyid);
    let envelope = serde_json::json!({ "signatures": signatures, "signed": value });
    to_canonical(&envelope).map_err(|e| e.to_string())
}

/// Checks a root's internal consistency: all four roles (and `releases` and `maintenance`
/// when present), thresholds between 1 and the number of (distinct, listed) keys, every key id
/// equal to its key's computed id, and no `releases` or `maintenance` key shared with a
/// content role (targets, snapshot, timestamp): content signers, whose keys sit online on the
/// console, can neither ship binaries nor switch agents off.
pub(crate) fn check_root(root: &Root) -> Result<(), VerifyError> {
    let invalid = |detail: String| VerifyError::InvalidRoot {
        version: root.version,
        detail,
    };
    for (keyid, key) in &root.keys {
        if key.verifying_key().is_none() {
            return Err(invalid(format!("key {keyid} is not a valid ed25519 key")));
        }
        let computed = key.keyid();
        if *keyid != computed {
            return Err(invalid(format!(
                "key id {keyid} does not match its key (computed {computed})"
            )));
        }
    }
    for role in Role::EVERY {
        let Some(keys) = root.roles.get(&role) else {
            if Role::OPTIONAL.contains(&role) {
                continue;
            }
            return Err(invalid(format!("role {role} is missing")));
        };
        let distinct: BTreeSet<&String> = keys.keyids.iter().collect();
        if distinct.len() != keys.keyids.len() {
            return Err(invalid(format!("role {role} lists a key id twice")));
        }
        if let Some(unknown) = keys.keyids.iter().find(|id| !root.keys.contains_key(*id)) {
            return Err(invalid(format!("role {role} names unknown key {unknown}")));
        }
        if keys.threshold == 0 || keys.threshold as usize > keys.keyids.len() {
            return Err(invalid(format!(
                "role {role} threshold {} with {} keys",
                keys.threshold,
                keys.keyids.len()
            )));
        }
    }
    for (optional, power) in [
        (Role::Releases, "ship binaries"),
        (Role::Maintenance, "switch agents off"),
    ] {
        let Some(own) = root.roles.get(&optional) else {
            continue;
        };
        for role in [Role::Targets, Role::Snapshot, Role::Timestamp] {
            let content = root.roles.get(&role).map(|k| &k.keyids);
            if let Some(shared) = own
                .keyids
                .iter()
                .find(|id| content.is_some_and(|c| c.contains(id)))
            {
                return Err(invalid(format!(
                    "key {} signs for both {optional} and {role}: content signers cannot \
                     {power}",
                    short_keyid(shared)
                )));
            }
        }
    }
    Ok(())
}

/// Which keys are being counted, for error messages ("root v3 keys", "timestamp keys").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeysOf<'a> {
    pub root: &'a Root,
    pub role: Role,
}

/// Verifies that at least `threshold` distinct keys of `keys.role` in `keys.root` signed
/// `envelope`. When they did not, the error names the most telling cause: a bad signature
/// from one of the role's keys, a signature by a key of another role, or too few signatures.
pub(crate) fn verify_threshold(envelope: &Envelope, keys: KeysOf<'_>) -> Result<(), VerifyError> {
    let role = envelope.role;
    let Some(role_keys) = keys.root.roles.get(&keys.role) else {
        return Err(VerifyError::InvalidRoot {
            version: keys.root.version,
            detail: format!("role {} is missing", keys.role),
        });
    };
    let mut valid = BTreeSet::new();
    let mut bad = None;
    let mut wrong_role = None;
    let mut untrusted = BTreeSet::new();
    for sig in &envelope.signatures {
        if !keys.root.keys.contains_key(&sig.keyid) {
            untrusted.insert(short_keyid(&sig.keyid));
            continue;
        }
        if !role_keys.keyids.contains(&sig.keyid) {
            if wrong_role.is_none() {
                wrong_role = Role::EVERY
                    .into_iter()
                    .find(|r| {
                        keys.root
                            .roles
                            .get(r)
                            .is_some_and(|rk| rk.keyids.contains(&sig.keyid))
                    })
                    .map(|r| (sig.keyid.clone(), r));
            }
            continue;
        }
        let ok = keys
            .root
            .keys
            .get(&sig.keyid)
            .and_then(PublicKey::verifying_key)
            .zip(decode_signature(&sig.sig))
            .is_some_and(|(key, s)| key.verify_strict(&envelope.canonical, &s).is_ok());
        if ok {
            valid.insert(sig.keyid.as_str());
        } else if bad.is_none() {
            bad = Some(sig.keyid.clone());
        }
    }
    if valid.len() >= role_keys.threshold as usize {
        return Ok(());
    }
    if let Some(keyid) = bad {
        return Err(VerifyError::BadSignature {
            role,
            keyid,
            signer: keys.describe(),
        });
    }
    if let Some((keyid, key_role)) = wrong_role {
        return Err(VerifyError::SignedByWrongRole {
            role,
            keyid,
            key_role,
            expected: keys.describe(),
        });
    }
    if !untrusted.is_empty() {
        let expected: Vec<&str> = role_keys.keyids.iter().map(|k| short_keyid(k)).collect();
        let plural = |n: usize| if n == 1 { "key" } else { "keys" };
        return Err(VerifyError::UntrustedKeys {
            role,
            signer: keys.describe(),
            expected: format!("{} {}", plural(expected.len()), expected.join(", ")),
            seen: format!(
                "{} {}",
                plural(untrusted.len()),
                untrusted.into_iter().collect::<Vec<_>>().join(", ")
            ),
            valid: valid.len(),
            threshold: role_keys.threshold,
        });
    }
    Err(VerifyError::ThresholdNotMet {
        role,
        signer: keys.describe(),
        valid: valid.len(),
        threshold: role_keys.threshold,
    })
}

impl KeysOf<'_> {
    fn describe(&self) -> String {
        if self.role == Role::Root {
            format!("root v{} keys", self.root.version)
        } else {
            format!("{} keys", self.role)
        }
    }
}

/// The first 16 hex digits of a key id: enough to tell keys apart in a message and to find
/// the key in a `root.json`. An id shorter than that (malformed) is shown whole.
pub(crate) fn short_keyid(keyid: &str) -> &str {
    keyid.get(..16).unwrap_or(keyid)
}

fn decode_signature(hex_sig: &str) -> Option<DalekSignature> {
    let bytes: [u8; 64] = hex::decode(hex_sig).ok()?.try_into().ok()?;
    Some(DalekSignature::from_bytes(&bytes))
}

/// Hex SHA-256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn root_with(keys: &[(&SigningKey, Role)], threshold: u32) -> Root {
        let mut root = Root {
            typ: "root".into(),
            spec_version: SPEC_VERSION.into(),
            version: 1,
            expires: "2030-01-01T00:00:00Z".into(),
            keys: BTreeMap::new(),
            roles: BTreeMap::new(),
        };
        for (k, role) in keys {
            let public = PublicKey::ed25519(&k.verifying_key());
            let id = public.keyid();
            root.keys.insert(id.clone(), public);
            root.roles
                .entry(*role)
                .or_insert(RoleKeys {
                    keyids: vec![],
                    threshold,
                })
                .keyids
                .push(id);
        }
        root
    }

    #[test]
    fn threshold_counts_distinct_valid_keys_of_the_role_only() {
        let (r1, r2, t) = (key(1), key(2), key(3));
        let root = root_with(
            &[
                (&r1, Role::Root),
                (&r2, Role::Root),
                (&t, Role::Targets),
                (&t, Role::Snapshot),
                (&t, Role::Timestamp),
            ],
            2,
        );
        let root = Root {
            roles: root
                .roles
                .into_iter()
                .map(|(r, mut k)| {
                    if r != Role::Root {
                        k.threshold = 1;
                    }
                    (r, k)
                })
                .collect(),
            ..root
        };
        check_root(&root).unwrap();
        let keys = KeysOf {
            root: &root,
            role: Role::Root,
        };
        let both = sign(&root, &[&r1, &r2]).unwrap();
        verify_threshold(&Envelope::parse(Role::Root, &both).unwrap(), keys).unwrap();
        // The same key twice counts once.
        let twice = sign(&root, &[&r1]).unwrap();
        let mut env = Envelope::parse(Role::Root, &twice).unwrap();
        env.signatures.push(env.signatures[0].clone());
        let err = verify_threshold(&env, keys).unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::ThresholdNotMet {
                    valid: 1,
                    threshold: 2,
                    ..
                }
            ),
            "{err}"
        );
        // A targets key is named as the wrong role.
        let by_targets = sign(&root, &[&r1, &t]).unwrap();
        let err =
            verify_threshold(&Envelope::parse(Role::Root, &by_targets).unwrap(), keys).unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::SignedByWrongRole {
                    key_role: Role::Targets,
                    ..
                }
            ),
            "{err}"
        );
        // A tampered `signed` makes both signatures bad.
        let mut env = Envelope::parse(Role::Root, &both).unwrap();
        env.canonical.push(b' ');
        let err = verify_threshold(&env, keys).unwrap_err();
        assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn keys_the_root_never_listed_are_named_with_the_keys_expected() {
        let (r, stranger) = (key(1), key(9));
        let mut root = root_with(&[(&r, Role::Root)], 1);
        for role in [Role::Targets, Role::Snapshot, Role::Timestamp] {
            root.roles.insert(role, root.roles[&Role::Root].clone());
        }
        let keys = KeysOf {
            root: &root,
            role: Role::Timestamp,
        };
        let by_stranger = sign(&root, &[&stranger]).unwrap();
        let err = verify_threshold(
            &Envelope::parse(Role::Timestamp, &by_stranger).unwrap(),
            keys,
        )
        .unwrap_err();
        let expected = PublicKey::ed25519(&r.verifying_key()).keyid();
        let seen = PublicKey::ed25519(&stranger.verifying_key()).keyid();
        assert_eq!(
            err.to_string(),
            format!(
                "timestamp metadata is signed by keys this root does not trust: expected \
                 timestamp keys (key {}, threshold 1), seen key {}; 0 valid signature(s) from \
                 trusted keys (was it built with another keys directory?)",
                &expected[..16],
                &seen[..16]
            )
        );
        // No signature at all is still a threshold not met.
        let mut env = Envelope::parse(Role::Timestamp, &by_stranger).unwrap();
        env.signatures.clear();
        let err = verify_threshold(&env, keys).unwrap_err();
        assert!(
            matches!(err, VerifyError::ThresholdNotMet { valid: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn root_consistency_is_checked() {
        let k = key(1);
        let mut root = root_with(&[(&k, Role::Root)], 1);
        let err = check_root(&root).unwrap_err();
        assert!(err.to_string().contains("role targets is missing"), "{err}");
        for role in [Role::Targets, Role::Snapshot, Role::Timestamp] {
            root.roles.insert(role, root.roles[&Role::Root].clone());
        }
        check_root(&root).unwrap();
        root.roles.get_mut(&Role::Snapshot).unwrap().threshold = 2;
        let err = check_root(&root).unwrap_err();
        assert!(err.to_string().contains("threshold 2 with 1 keys"), "{err}");
        root.roles.get_mut(&Role::Snapshot).unwrap().threshold = 1;
        let (id, public) = root.keys.pop_first().unwrap();
        root.keys.insert(format!("{id}00"), public);
        let err = check_root(&root).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn envelope_and_type_are_checked() {
        let k = key(1);
        let root = root_with(&[(&k, Role::Root)], 1);
        let bytes = sign(&root, &[&k]).unwrap();
        let env = Envelope::parse(Role::Timestamp, &bytes).unwrap();
        let err = env.typed::<Timestamp>().unwrap_err();
        assert!(matches!(
            err,
            VerifyError::Malformed { .. } | VerifyError::WrongType { .. }
        ));
        let err =
            Envelope::parse(Role::Root, b"{\"signatures\":[],\"signed\":{},\"x\":1}").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = Envelope::parse(Role::Root, b"{\"signatures\":[],\"signed\":1.5}").unwrap_err();
        assert!(err.to_string().contains("floating"), "{err}");
    }
}
