//! Signing keys on disk (`content keys init`) and root rotation.
//!
//! A keys directory holds one Ed25519 key per role (root may have several, with a threshold),
//! the current trusted `root.json` and every root version under `roots/` (bundles carry that
//! chain so agents can follow rotations version by version):
//!
//! ```text
//! KEYS/root.json               current root metadata (what `content verify --root KEYS` trusts)
//! KEYS/roots/<N>.root.json     every root version, 1..=current
//! KEYS/root-<i>.key            root private keys          (0600)
//! KEYS/{targets,snapshot,timestamp}.key                   (0600)
//! KEYS/releases.key            agent releases (its own role; absent in older directories:
//!                              `ringfence release keys-add` adds it by a root rotation)
//! KEYS/maintenance.key         maintenance tokens (its own role; absent in older directories:
//!                              `content keys add-maintenance` adds it by a root rotation;
//!                              without it, the root keys sign tokens)
//! KEYS/retired/                root keys replaced by a rotation (0600)
//! ```
//! Private key files are JSON (`role`, `keyid`, hex `private` seed), created with
//! `O_CREAT|O_EXCL` and mode 0600; loading refuses a key file readable by group or others.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::error::VerifyError;
use crate::metadata::{self, PublicKey, Role, RoleKeys, Root, SPEC_VERSION};
use crate::time::UnixTime;
use crate::verify::TrustedRoot;

/// Why a keys directory could not be created, read or rotated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists: refusing to overwrite keys")]
    Exists { path: PathBuf },
    #[error("{path}: {detail}")]
    Malformed { path: PathBuf, detail: String },
    #[error("{path}: mode {mode:o} lets group or others read a private key; expected 0600")]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("{path}: key {keyid} is not a {role} key of root v{root_version}")]
    NotInRoot {
        path: PathBuf,
        keyid: String,
        role: Role,
        root_version: u64,
    },
    #[error("invalid option: {0}")]
    Options(String),
    #[error("no operating-system randomness for key generation: {0}")]
    Random(String),
    #[error("{path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: VerifyError,
    },
}

/// Options for [`init_keys`].
#[derive(Debug, Clone)]
pub struct KeysInitOptions {
    /// Number of root keys to create.
    pub root_keys: usize,
    /// How many of them must sign a root.
    pub root_threshold: u32,
    /// Expiry of root v1.
    pub root_expires: UnixTime,
}

impl KeysInitOptions {
    /// One root key, threshold 1, root valid for a year from `now`.
    pub fn new(now: UnixTime) -> Self {
        KeysInitOptions {
            root_keys: 1,
            root_threshold: 1,
            root_expires: now.plus_days(365),
        }
    }
}

/// Options for [`KeySet::rotate_root`].
#[derive(Debug, Clone)]
pub struct RotateOptions {
    pub new_root_keys: usize,
    pub new_threshold: u32,
    pub expires: UnixTime,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    role: Role,
    keytype: String,
    keyid: String,
    private: String,
}

/// The private keys of every role, with the current root and its history.
pub struct KeySet {
    dir: PathBuf,
    pub(crate) root_keys: Vec<SigningKey>,
    pub(crate) targets: SigningKey,
    pub(crate) snapshot: SigningKey,
    pub(crate) timestamp: SigningKey,
    /// The `releases` role's key, when the root has that role.
    pub(crate) releases: Option<SigningKey>,
    /// The `maintenance` role's key, when the root has that role.
    pub(crate) maintenance: Option<SigningKey>,
    /// Signed root metadata, v1 first, ascending, ending with `trusted`'s bytes.
    pub(crate) roots: Vec<Vec<u8>>,
    trusted: TrustedRoot,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print private keys.
        f.debug_struct("KeySet")
            .field("dir", &self.dir)
            .field("root_version", &self.trusted.version())
            .field("root_keys", &self.root_keys.len())
            .finish_non_exhaustive()
    }
}

/// Creates a keys directory: role keys, root v1 signed by all root keys, `roots/1.root.json`.
/// Refuses to touch a directory that already holds a `root.json` or any key file.
pub fn init_keys(dir: &Path, opts: &KeysInitOptions) -> Result<KeySet, KeyError> {
    if opts.root_keys == 0 || opts.root_threshold == 0 {
        return Err(KeyError::Options(
            "at least one root key and a threshold of at least 1 are needed".into(),
        ));
    }
    if opts.root_threshold as usize > opts.root_keys {
        return Err(KeyError::Options(format!(
            "root threshold {} is more than the {} root keys",
            opts.root_threshold, opts.root_keys
        )));
    }
    make_private_dir(dir)?;
    let root_json = dir.join("root.json");
    if root_json.exists() {
        return Err(KeyError::Exists { path: root_json });
    }
    let root_keys = (0..opts.root_keys)
        .map(|_| generate())
        .collect::<Result<Vec<_>, _>>()?;
    let targets = generate()?;
    let snapshot = generate()?;
    let timestamp = generate()?;
    let releases = generate()?;
    let maintenance = generate()?;
    for (i, key) in root_keys.iter().enumerate() {
        write_key(&dir.join(format!("root-{}.key", i + 1)), Role::Root, key)?;
    }
    write_key(&dir.join("targets.key"), Role::Targets, &targets)?;
    write_key(&dir.join("snapshot.key"), Role::Snapshot, &snapshot)?;
    write_key(&dir.join("timestamp.key"), Role::Timestamp, &timestamp)?;
    write_key(&dir.join("releases.key"), Role::Releases, &releases)?;
    write_key(
        &dir.join("maintenance.key"),
        Role::Maintenance,
        &maintenance,
    )?;
    let root = build_root(
        1,
        opts.root_expires,
        &root_keys.iter().collect::<Vec<_>>(),
        opts.root_threshold,
        [&targets, &snapshot, &timestamp],
        Some(&releases),
        Some(&maintenance),
    );
    let signed = sign_root(&root, &root_keys.iter().collect::<Vec<_>>(), dir)?;
    save_root(dir, 1, &signed)?;
    KeySet::load(dir)
}

impl KeySet {
    /// Loads every key and root of a keys directory and checks that each key belongs to its
    /// role in the current root.
    pub fn load(dir: &Path) -> Result<KeySet, KeyError> {
        KeySet::load_with(dir, true)
    }

    /// Loads the online keys of a keys directory: targets, snapshot and timestamp (and the
    /// root chain), without requiring any `root-<N>.key`. This is what a console needs to sign
    /// content (rollbacks, exception overlays): copy a keys directory there without its root
    /// keys, which stay offline. A set loaded so cannot rotate the root.
    pub fn load_online(dir: &Path) -> Result<KeySet, KeyError> {
        KeySet::load_with(dir, false)
    }

    fn load_with(dir: &Path, require_root: bool) -> Result<KeySet, KeyError> {
        let root_path = dir.join("root.json");
        let trusted_bytes = read(&root_path)?;
        let trusted = TrustedRoot::from_bytes(&trusted_bytes).map_err(|source| KeyError::Root {
            path: root_path.clone(),
            source,
        })?;
        let mut root_keys = Vec::new();
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(n) = name
                .strip_prefix("root-")
                .and_then(|n| n.strip_suffix(".key"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                names.push((n, path));
            }
        }
        names.sort();
        for (_, path) in &names {
            root_keys.push(read_key(path, Role::Root, &trusted)?);
        }
        if root_keys.is_empty() && require_root {
            return Err(KeyError::Malformed {
                path: dir.to_owned(),
                detail: "no root-<N>.key files".into(),
            });
        }
        let targets = read_key(&dir.join("targets.key"), Role::Targets, &trusted)?;
        let snapshot = read_key(&dir.join("snapshot.key"), Role::Snapshot, &trusted)?;
        let timestamp = read_key(&dir.join("timestamp.key"), Role::Timestamp, &trusted)?;
        let optional_key = |name: &str, role: Role| -> Result<Option<SigningKey>, KeyError> {
            let path = dir.join(name);
            if path.exists() {
                read_key(&path, role, &trusted).map(Some)
            } else {
                Ok(None)
            }
        };
        let releases = optional_key("releases.key", Role::Releases)?;
        let maintenance = optional_key("maintenance.key", Role::Maintenance)?;
        let mut roots = Vec::new();
        for version in 1..=trusted.version() {
            let path = dir.join("roots").join(format!("{version}.root.json"));
            roots.push(read(&path)?);
        }
        if roots.last() != Some(&trusted_bytes) {
            return Err(KeyError::Malformed {
                path: root_path,
                detail: format!("differs from roots/{}.root.json", trusted.version()),
            });
        }
        Ok(KeySet {
            dir: dir.to_owned(),
            root_keys,
            targets,
            snapshot,
            timestamp,
            releases,
            maintenance,
            roots,
            trusted,
        })
    }

    /// The keys directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current root, as an agent would trust it.
    pub fn trusted_root(&self) -> &TrustedRoot {
        &self.trusted
    }

    /// Every signed root version, v1 first.
    pub fn root_chain(&self) -> &[Vec<u8>] {
        &self.roots
    }

    /// The `releases` role's key, when this root has one.
    pub fn releases_key(&self) -> Option<&SigningKey> {
        self.releases.as_ref()
    }

    /// Gives a keys directory made before agent releases a `releases` role: a new key and
    /// root v(N+1) naming it, signed by the current root keys (agents follow the chain).
    pub fn add_releases_role(&mut self, expires: UnixTime) -> Result<(), KeyError> {
        self.add_optional_role(Role::Releases, expires)
    }

    /// The `maintenance` role's key, when this root has one.
    pub fn maintenance_key(&self) -> Option<&SigningKey> {
        self.maintenance.as_ref()
    }

    /// Gives a keys directory made before maintenance keys a `maintenance` role: a new key
    /// and root v(N+1) naming it, signed by the current root keys. Agents follow the root
    /// chain in the next bundle; from then on they accept maintenance tokens only from the
    /// new key, and the root keys can stay in the safe.
    pub fn add_maintenance_role(&mut self, expires: UnixTime) -> Result<(), KeyError> {
        self.add_optional_role(Role::Maintenance, expires)
    }

    /// A new key for `role` (one of [`Role::OPTIONAL`]), written as `<role>.key`, and root
    /// v(N+1) naming it beside every role the root has now, signed by the current root keys.
    fn add_optional_role(&mut self, role: Role, expires: UnixTime) -> Result<(), KeyError> {
        if self.root_keys.is_empty() {
            return Err(KeyError::Options(format!(
                "{} was loaded without root keys (online keys only): sign roots where the \
                 root keys are",
                self.dir.display()
            )));
        }
        let path = self.dir.join(format!("{role}.key"));
        let existing = match role {
            Role::Releases => &self.releases,
            Role::Maintenance => &self.maintenance,
            _ => return Err(KeyError::Options(format!("{role} is not an optional role"))),
        };
        if existing.is_some() || path.exists() {
            return Err(KeyError::Exists { path });
        }
        let key = generate()?;
        let pick = |r: Role, have: &Option<SigningKey>| {
            if r == role {
                Some(key.clone())
            } else {
                have.clone()
            }
        };
        let releases = pick(Role::Releases, &self.releases);
        let maintenance = pick(Role::Maintenance, &self.maintenance);
        let version = self.trusted.version() + 1;
        let root = build_root(
            version,
            expires,
            &self.root_keys.iter().collect::<Vec<_>>(),
            self.trusted
                .metadata()
                .roles
                .get(&Role::Root)
                .map_or(1, |r| r.threshold),
            [&self.targets, &self.snapshot, &self.timestamp],
            releases.as_ref(),
            maintenance.as_ref(),
        );
        let signed = sign_root(&root, &self.root_keys.iter().collect::<Vec<_>>(), &self.dir)?;
        write_key(&path, role, &key)?;
        save_root(&self.dir, version, &signed)?;
        let dir = self.dir.clone();
        *self = KeySet::load(&dir)?;
        Ok(())
    }

    /// Test support: the directory as it was before maintenance keys (root v(N+1) without the
    /// role, and no `maintenance.key`), so the root keys sign tokens.
    #[cfg(test)]
    pub(crate) fn drop_maintenance_role(&mut self) -> Result<(), KeyError> {
        let signers: Vec<&SigningKey> = self.root_keys.iter().collect();
        let root = build_root(
            self.trusted.version() + 1,
            UnixTime::now().plus_days(365),
            &signers,
            self.trusted
                .metadata()
                .roles
                .get(&Role::Root)
                .map_or(1, |r| r.threshold),
            [&self.targets, &self.snapshot, &self.timestamp],
            self.releases.as_ref(),
            None,
        );
        let signed = sign_root(&root, &signers, &self.dir)?;
        let key = self.dir.join("maintenance.key");
        fs::remove_file(&key).map_err(io(&key))?;
        save_root(&self.dir, root.version, &signed)?;
        let dir = self.dir.clone();
        *self = KeySet::load(&dir)?;
        Ok(())
    }

    /// Replaces the root keys: writes root v(N+1), signed by the current root keys *and* the
    /// new ones, moves the old root keys to `retired/` and makes the new root current.
    pub fn rotate_root(&mut self, opts: &RotateOptions) -> Result<(), KeyError> {
        if self.root_keys.is_empty() {
            return Err(KeyError::Options(format!(
                "{} was loaded without root keys (online keys only): sign roots where the \
                 root keys are",
                self.dir.display()
            )));
        }
        if opts.new_root_keys == 0
            || opts.new_threshold == 0
            || opts.new_threshold as usize > opts.new_root_keys
        {
            return Err(KeyError::Options(format!(
                "threshold {} with {} new root keys",
                opts.new_threshold, opts.new_root_keys
            )));
        }
        let dir = self.dir.clone();
        let new_keys = (0..opts.new_root_keys)
            .map(|_| generate())
            .collect::<Result<Vec<_>, _>>()?;
        let version = self.trusted.version() + 1;
        let root = build_root(
            version,
            opts.expires,
            &new_keys.iter().collect::<Vec<_>>(),
            opts.new_threshold,
            [&self.targets, &self.snapshot, &self.timestamp],
            self.releases.as_ref(),
            self.maintenance.as_ref(),
        );
        let signers: Vec<&SigningKey> = self.root_keys.iter().chain(new_keys.iter()).collect();
        let signed = sign_root(&root, &signers, &dir)?;
        let retired = dir.join("retired");
        make_private_dir(&retired)?;
        for i in 1..=self.root_keys.len() {
            let from = dir.join(format!("root-{i}.key"));
            let to = retired.join(format!("root-v{}-{i}.key", self.trusted.version()));
            fs::rename(&from, &to).map_err(io(&from))?;
        }
        for (i, key) in new_keys.iter().enumerate() {
            write_key(&dir.join(format!("root-{}.key", i + 1)), Role::Root, key)?;
        }
        save_root(&dir, version, &signed)?;
        *self = KeySet::load(&dir)?;
        Ok(())
    }
}

/// Root metadata with `root_keys` for root and one key for each other role.
pub(crate) fn build_root(
    version: u64,
    expires: UnixTime,
    root_keys: &[&SigningKey],
    threshold: u32,
    [targets, snapshot, timestamp]: [&SigningKey; 3],
    releases: Option<&SigningKey>,
    maintenance: Option<&SigningKey>,
) -> Root {
    let mut keys = BTreeMap::new();
    let mut ids = |signers: &[&SigningKey]| -> Vec<String> {
        let mut ids: Vec<String> = signers
            .iter()
            .map(|k| {
                let public = PublicKey::ed25519(&k.verifying_key());
                let id = public.keyid();
                keys.insert(id.clone(), public);
                id
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let mut roles = BTreeMap::new();
    roles.insert(
        Role::Root,
        RoleKeys {
            keyids: ids(root_keys),
            threshold,
        },
    );
    for (role, key) in [
        (Role::Targets, Some(targets)),
        (Role::Snapshot, Some(snapshot)),
        (Role::Timestamp, Some(timestamp)),
        (Role::Releases, releases),
        (Role::Maintenance, maintenance),
    ] {
        let Some(key) = key else {
            continue;
        };
        roles.insert(
            role,
            RoleKeys {
                keyids: ids(&[key]),
                threshold: 1,
            },
        );
    }
    Root {
        typ: "root".into(),
        spec_version: SPEC_VERSION.into(),
        version,
        expires: expires.to_string(),
        keys,
        roles,
    }
}

fn sign_root(root: &Root, signers: &[&SigningKey], dir: &Path) -> Result<Vec<u8>, KeyError> {
    metadata::sign(root, signers).map_err(|detail| KeyError::Malformed {
        path: dir.join("root.json"),
        detail,
    })
}

fn save_root(dir: &Path, version: u64, signed: &[u8]) -> Result<(), KeyError> {
    let roots = dir.join("roots");
    make_private_dir(&roots)?;
    let path = roots.join(format!("{version}.root.json"));
    write_new(&path, signed, 0o644)?;
    crate::store::atomic_write(&dir.join("root.json"), signed).map_err(io(&dir.join("root.json")))
}

/// A new Ed25519 key from the operating system's randomness.
pub(crate) fn generate() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn write_key(path: &Path, role: Role, key: &SigningKey) -> Result<(), KeyError> {
    let file = KeyFile {
        role,
        keytype: "ed25519".into(),
        keyid: PublicKey::ed25519(&key.verifying_key()).keyid(),
        private: hex::encode(key.to_bytes()),
    };
    let mut json = serde_json::to_vec_pretty(&file).map_err(|e| KeyError::Malformed {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    json.push(b'\n');
    write_new(path, &json, 0o600)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_owned(),
                }
            } else {
                KeyError::Io {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn read_key(path: &Path, role: Role, root: &TrustedRoot) -> Result<SigningKey, KeyError> {
    let mode = fs::metadata(path).map_err(io(path))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    let malformed = |detail: String| KeyError::Malformed {
        path: path.to_owned(),
        detail,
    };
    let bytes = read(path)?;
    let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
    if file.role != role || file.keytype != "ed25519" {
        return Err(malformed(format!(
            "holds a {} {} key, expected an ed25519 {role} key",
            file.keytype, file.role
        )));
    }
    let seed: [u8; 32] = hex::decode(&file.private)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| malformed("private is not 32 bytes of hex".into()))?;
    let key = SigningKey::from_bytes(&seed);
    let keyid = PublicKey::ed25519(&key.verifying_key()).keyid();
    if !root.keyids(role).contains(&keyid) {
        return Err(KeyError::NotInRoot {
            path: path.to_owned(),
            keyid,
            role,
            root_version: root.version(),
        });
    }
    Ok(key)
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    // Key and root files are small; 1 MiB is far above any real one.
    crate::bundle::read_limited(path, 1024 * 1024, "key file").map_err(|e| KeyError::Malformed {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

fn make_private_dir(dir: &Path) -> Result<(), KeyError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = UnixTime(1_800_000_000);

    #[test]
    fn init_creates_private_keys_and_a_self_signed_root() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let opts = KeysInitOptions {
            root_keys: 3,
            root_threshold: 2,
            root_expires: NOW.plus_days(365),
        };
        let keys = init_keys(&dir, &opts).unwrap();
        assert_eq!(keys.root_keys.len(), 3);
        assert_eq!(keys.trusted_root().version(), 1);
        for name in [
            "root-1.key",
            "root-2.key",
            "root-3.key",
            "targets.key",
            "snapshot.key",
            "timestamp.key",
        ] {
            let mode = fs::metadata(dir.join(name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // Refuses to overwrite.
        let err = init_keys(&dir, &opts).unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err}");
        // A world-readable key is refused on load, naming the file.
        fs::set_permissions(dir.join("targets.key"), fs::Permissions::from_mode(0o644)).unwrap();
        let err = KeySet::load(&dir).unwrap_err();
        assert!(err.to_string().contains("targets.key"), "{err}");
    }

    #[test]
    fn online_keys_sign_content_without_the_root_keys_and_cannot_touch_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        init_keys(tmp.path(), &KeysInitOptions::new(NOW)).unwrap();
        fs::remove_file(tmp.path().join("root-1.key")).unwrap();
        let err = KeySet::load(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("no root-<N>.key"), "{err}");
        let mut online = KeySet::load_online(tmp.path()).unwrap();
        assert!(online.root_keys.is_empty());
        let mut b = crate::BundleBuilder::new(
            2,
            crate::SchemaId {
                version: 1,
                fingerprint: "f".into(),
            },
            crate::Limits::default(),
        );
        b.add(
            crate::EntryKind::Rule,
            "rules/a.yml",
            b"title: a\n".to_vec(),
        )
        .unwrap();
        let signed = crate::sign_bundle(
            &b.build().unwrap(),
            &online,
            &crate::SignOptions::new(2, NOW),
        )
        .unwrap();
        crate::verify_signed_bundle(
            &signed.encode(),
            online.trusted_root(),
            crate::SeenVersions::default(),
            &crate::VerifyOptions::new(NOW),
            &crate::StructuralValidator,
        )
        .unwrap();
        let err = online
            .rotate_root(&RotateOptions {
                new_root_keys: 1,
                new_threshold: 1,
                expires: NOW.plus_days(30),
            })
            .unwrap_err();
        assert!(err.to_string().contains("without root keys"), "{err}");
    }

    #[test]
    fn a_key_of_another_role_is_refused_on_load() {
        let tmp = tempfile::tempdir().unwrap();
        init_keys(tmp.path(), &KeysInitOptions::new(NOW)).unwrap();
        let snapshot = fs::read(tmp.path().join("snapshot.key")).unwrap();
        let swapped = String::from_utf8(snapshot)
            .unwrap()
            .replace("\"snapshot\"", "\"targets\"");
        fs::remove_file(tmp.path().join("targets.key")).unwrap();
        write_new(&tmp.path().join("targets.key"), swapped.as_bytes(), 0o600).unwrap();
        let err = KeySet::load(tmp.path()).unwrap_err();
        assert!(
            matches!(
                err,
                KeyError::NotInRoot {
                    role: Role::Targets,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn rotation_writes_the_next_root_and_retires_old_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let mut keys = init_keys(tmp.path(), &KeysInitOptions::new(NOW)).unwrap();
        let old_root = keys.trusted_root().clone();
        keys.rotate_root(&RotateOptions {
            new_root_keys: 2,
            new_threshold: 2,
            expires: NOW.plus_days(100),
        })
        .unwrap();
        assert_eq!(keys.trusted_root().version(), 2);
        assert_eq!(keys.root_chain().len(), 2);
        assert_eq!(keys.root_keys.len(), 2);
        assert!(tmp.path().join("retired/root-v1-1.key").exists());
        // The old trusted root accepts the new one.
        let updated = old_root.update(&keys.root_chain()[1]).unwrap();
        assert_eq!(updated.version(), 2);
    }
}
