//! The agent's content store on disk: the active, previous (last-known-good) and staged
//! signed bundles, the "activating version N" marker, the versions marked bad on this host,
//! and the trusted root with the metadata versions last seen.
//!
//! Bundle files are immutable and named by version (`bundles/<N>.bundle`); which one is
//! active, previous or staged, the marker and the bad list all live in one small
//! `state.json`. Every transition is therefore a single atomic replace of that file (write a
//! temporary, fsync, rename, fsync the directory): a crash at any instant leaves either the
//! old state or the new one, never a half-swapped pair. The supervisor reads and rolls back
//! this state without parsing any content.
//!
//! One writer at a time: the worker while it runs, the supervisor only when the worker is
//! down. Pure `std::fs`.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::{BundleError, read_limited};
use crate::error::VerifyError;
use crate::verify::{SeenVersions, TrustedRoot};

const STATE_FILE: &str = "state.json";
const TRUST_FILE: &str = "trust.json";
const ROOT_FILE: &str = "root.json";
const MAX_STATE_BYTES: u64 = 1024 * 1024;

/// Why the store could not be read or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{0}")]
    Read(#[from] BundleError),
    #[error("{path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: VerifyError,
    },
    #[error("content version {version} is marked bad on this host")]
    MarkedBad { version: u64 },
    #[error("cannot {action}: {reason}")]
    InvalidTransition {
        action: &'static str,
        reason: String,
    },
}

/// Which versions fill which slot, the activation marker and the bad list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreState {
    pub active: Option<u64>,
    /// The last-known-good bundle, kept while `active` is on probation and after.
    pub previous: Option<u64>,
    pub staged: Option<u64>,
    /// "Activating version N": set before activation, cleared when it is confirmed healthy.
    pub activating: Option<u64>,
    /// Versions refused on this host after they crashed or failed probation.
    pub bad: BTreeSet<u64>,
}

/// What [`ContentStore::roll_back`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RollBack {
    /// The version now marked bad.
    pub marked_bad: u64,
    /// The version now active (the last-known-good), if any.
    pub active: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    seen: SeenVersions,
}

/// A content directory.
#[derive(Debug, Clone)]
pub struct ContentStore {
    dir: PathBuf,
}

impl ContentStore {
    /// Opens (creating, mode 0700) a content store directory.
    pub fn open(dir: &Path) -> Result<ContentStore, StoreError> {
        let bundles = dir.join("bundles");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&bundles)
            .map_err(io(&bundles))?;
        Ok(ContentStore {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current state; an empty state if none was written yet.
    pub fn state(&self) -> Result<StoreState, StoreError> {
        let path = self.dir.join(STATE_FILE);
        if !path.exists() {
            return Ok(StoreState::default());
        }
        let bytes = read_limited(&path, MAX_STATE_BYTES, "store state")?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path,
            detail: e.to_string(),
        })
    }

    fn save(&self, state: &StoreState) -> Result<(), StoreError> {
        let path = self.dir.join(STATE_FILE);
        let mut bytes = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        bytes.push(b'\n');
        atomic_write(&path, &bytes).map_err(io(&path))?;
        self.collect_garbage(state)
    }

    /// Path of the stored bundle file for `version` (whether or not it exists).
    pub fn bundle_path(&self, version: u64) -> PathBuf {
        self.dir.join("bundles").join(format!("{version}.bundle"))
    }

    /// Reads the stored signed bundle of `version`, at most `limit` bytes.
    pub fn read_bundle(&self, version: u64, limit: u64) -> Result<Vec<u8>, StoreError> {
        Ok(read_limited(
            &self.bundle_path(version),
            limit,
            "stored bundle",
        )?)
    }

    /// Writes a verified signed bundle as the staged one (replacing any staged bundle).
    pub fn stage(&self, version: u64, signed_bundle: &[u8]) -> Result<(), StoreError> {
        let mut state = self.state()?;
        if state.bad.contains(&version) {
            return Err(StoreError::MarkedBad { version });
        }
        if state.activating.is_some() && state.staged != Some(version) {
            return Err(StoreError::InvalidTransition {
                action: "stage",
                reason: format!(
                    "version {} is being activated",
                    state.activating.unwrap_or_default()
                ),
            });
        }
        let path = self.bundle_path(version);
        atomic_write(&path, signed_bundle).map_err(io(&path))?;
        state.staged = Some(version);
        self.save(&state)
    }

    /// Persists "activating version N" for the staged bundle. Call before swapping it in.
    pub fn begin_activation(&self, version: u64) -> Result<(), StoreError> {
        let mut state = self.state()?;
        if state.staged != Some(version) {
            return Err(StoreError::InvalidTransition {
                action: "begin activation",
                reason: format!("staged version is {:?}, not {version}", state.staged),
            });
        }
        state.activating = Some(version);
        self.save(&state)
    }

    /// Makes the staged bundle active and the active one previous (last-known-good). The
    /// marker stays until [`ContentStore::confirm`].
    pub fn commit_activation(&self) -> Result<(), StoreError> {
        let mut state = self.state()?;
        let (Some(staged), Some(activating)) = (state.staged, state.activating) else {
            return Err(StoreError::InvalidTransition {
                action: "commit activation",
                reason: "no staged bundle being activated".into(),
            });
        };
        if staged != activating {
            return Err(StoreError::InvalidTransition {
                action: "commit activation",
                reason: format!("staged {staged} is not the activating version {activating}"),
            });
        }
        if state.active.is_some() && state.active != Some(staged) {
            state.previous = state.active;
        }
        state.active = Some(staged);
        state.staged = None;
        self.save(&state)
    }

    /// The active bundle survived its probation: clear the marker.
    pub fn confirm(&self) -> Result<(), StoreError> {
        let mut state = self.state()?;
        state.activating = None;
        self.save(&state)
    }

    /// Marks a version bad on this host; a bad version is never staged again.
    pub fn mark_bad(&self, version: u64) -> Result<(), StoreError> {
        let mut state = self.state()?;
        state.bad.insert(version);
        if state.staged == Some(version) {
            state.staged = None;
        }
        self.save(&state)
    }

    /// For the supervisor after a crash loop, or an operator's rollback: marks the version
    /// being activated (or, without a marker, the active one) bad and makes the previous
    /// bundle active again. Needs no parsing of content.
    pub fn roll_back(&self) -> Result<RollBack, StoreError> {
        let mut state = self.state()?;
        let Some(bad) = state.activating.or(state.active) else {
            return Err(StoreError::InvalidTransition {
                action: "roll back",
                reason: "nothing is active or being activated".into(),
            });
        };
        if state.active == Some(bad) {
            let Some(previous) = state.previous else {
                return Err(StoreError::InvalidTransition {
                    action: "roll back",
                    reason: format!("version {bad} is active and there is no last-known-good"),
                });
            };
            state.active = Some(previous);
            state.previous = None;
        }
        if state.staged == Some(bad) {
            state.staged = None;
        }
        state.activating = None;
        state.bad.insert(bad);
        self.save(&state)?;
        Ok(RollBack {
            marked_bad: bad,
            active: state.active,
        })
    }

    /// Persists the trusted root and the metadata versions a verification returned.
    pub fn save_trust(&self, root: &TrustedRoot, seen: SeenVersions) -> Result<(), StoreError> {
        let root_path = self.dir.join(ROOT_FILE);
        atomic_write(&root_path, root.bytes()).map_err(io(&root_path))?;
        let path = self.dir.join(TRUST_FILE);
        let bytes = serde_json::to_vec(&TrustFile { seen }).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        atomic_write(&path, &bytes).map_err(io(&path))
    }

    /// The trusted root and seen versions saved last, or `None` if none were saved yet (the
    /// agent then starts from its configured root and zero versions).
    pub fn load_trust(&self) -> Result<Option<(TrustedRoot, SeenVersions)>, StoreError> {
        let root_path = self.dir.join(ROOT_FILE);
        if !root_path.exists() {
            return Ok(None);
        }
        let bytes = read_limited(&root_path, MAX_STATE_BYTES, "trusted root")?;
        let root = TrustedRoot::from_bytes(&bytes).map_err(|source| StoreError::Root {
            path: root_path,
            source,
        })?;
        let path = self.dir.join(TRUST_FILE);
        let seen = if path.exists() {
            let bytes = read_limited(&path, MAX_STATE_BYTES, "trust state")?;
            let file: TrustFile =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    path,
                    detail: e.to_string(),
                })?;
            file.seen
        } else {
            SeenVersions::default()
        };
        Ok(Some((root, seen)))
    }

    /// Removes bundle files no slot refers to (left by a crash between write and state save).
    fn collect_garbage(&self, state: &StoreState) -> Result<(), StoreError> {
        let dir = self.dir.join("bundles");
        let keep: BTreeSet<u64> = [state.active, state.previous, state.staged]
            .into_iter()
            .flatten()
            .collect();
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            let version = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".bundle"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(version) = version
                && !keep.contains(&version)
            {
                fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }
}

/// Replaces `path` atomically: write `.<name>.tmp` (0600), fsync it, rename it over `path`,
/// fsync the directory.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| std::io::Error::other("path has no UTF-8 file name"))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let tmp = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&tmp.path().join("content")).unwrap();
        (tmp, store)
    }

    fn activate(store: &ContentStore, version: u64) {
        store
            .stage(version, format!("bundle {version}").as_bytes())
            .unwrap();
        store.begin_activation(version).unwrap();
        store.commit_activation().unwrap();
    }

    #[test]
    fn activation_keeps_the_previous_bundle_as_last_known_good() {
        let (_tmp, store) = store();
        assert_eq!(store.state().unwrap(), StoreState::default());
        activate(&store, 1);
        store.confirm().unwrap();
        activate(&store, 2);
        let state = store.state().unwrap();
        assert_eq!(state.active, Some(2));
        assert_eq!(state.previous, Some(1));
        assert_eq!(state.activating, Some(2));
        assert_eq!(store.read_bundle(1, 100).unwrap(), b"bundle 1");
        assert_eq!(store.read_bundle(2, 100).unwrap(), b"bundle 2");
        store.confirm().unwrap();
        activate(&store, 3);
        store.confirm().unwrap();
        // Only active and previous are kept.
        assert!(!store.bundle_path(1).exists());
        assert!(store.bundle_path(2).exists());
        // The state survives reopening.
        let again = ContentStore::open(store.dir()).unwrap();
        assert_eq!(again.state().unwrap().active, Some(3));
    }

    #[test]
    fn roll_back_after_a_crash_loop_restores_last_known_good_and_marks_bad() {
        let (_tmp, store) = store();
        activate(&store, 1);
        store.confirm().unwrap();
        activate(&store, 2);
        // The worker died on version 2 before confirming it.
        let rb = store.roll_back().unwrap();
        assert_eq!(
            rb,
            RollBack {
                marked_bad: 2,
                active: Some(1)
            }
        );
        let state = store.state().unwrap();
        assert_eq!(state.active, Some(1));
        assert_eq!(state.activating, None);
        assert!(state.bad.contains(&2));
        assert_eq!(store.read_bundle(1, 100).unwrap(), b"bundle 1");
        // Version 2 is never staged again.
        let err = store.stage(2, b"bundle 2").unwrap_err();
        assert!(matches!(err, StoreError::MarkedBad { version: 2 }), "{err}");
    }

    #[test]
    fn roll_back_of_a_bundle_that_died_before_commit_keeps_the_active_one() {
        let (_tmp, store) = store();
        activate(&store, 1);
        store.confirm().unwrap();
        store.stage(2, b"bundle 2").unwrap();
        store.begin_activation(2).unwrap();
        let rb = store.roll_back().unwrap();
        assert_eq!(rb.marked_bad, 2);
        assert_eq!(rb.active, Some(1));
        let state = store.state().unwrap();
        assert_eq!((state.staged, state.previous), (None, None));
        assert!(!store.bundle_path(2).exists());
    }

    #[test]
    fn roll_back_with_nothing_to_return_to_is_refused() {
        let (_tmp, store) = store();
        let err = store.roll_back().unwrap_err();
        assert!(err.to_string().contains("nothing is active"), "{err}");
        activate(&store, 1);
        let err = store.roll_back().unwrap_err();
        assert!(err.to_string().contains("no last-known-good"), "{err}");
    }

    #[test]
    fn transitions_out_of_order_are_refused() {
        let (_tmp, store) = store();
        let err = store.begin_activation(1).unwrap_err();
        assert!(matches!(err, StoreError::InvalidTransition { .. }), "{err}");
        let err = store.commit_activation().unwrap_err();
        assert!(matches!(err, StoreError::InvalidTransition { .. }), "{err}");
        store.stage(1, b"x").unwrap();
        store.begin_activation(1).unwrap();
        let err = store.stage(2, b"y").unwrap_err();
        assert!(err.to_string().contains("being activated"), "{err}");
    }

    #[test]
    fn corrupt_state_is_reported_with_its_path_and_orphans_are_collected() {
        let (_tmp, store) = store();
        fs::write(store.bundle_path(9), b"orphan").unwrap();
        store.stage(1, b"x").unwrap();
        assert!(!store.bundle_path(9).exists());
        fs::write(store.dir().join("state.json"), b"{\"active\": \"one\"}").unwrap();
        let err = store.state().unwrap_err();
        assert!(err.to_string().contains("state.json"), "{err}");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f"]);
    }
}
