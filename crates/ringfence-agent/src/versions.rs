//! Agent versions on disk: one directory per version, an atomic switch, the previous version
//! kept, and the state of a version on trial. The supervisor ([`crate::content::supervisor`])
//! is the watcher: it runs the current version's binary as its worker and, when a version on
//! trial crash-loops, never beats, or stops beating, switches back with [`VersionStore::fall_back`].
//!
//! ```text
//! /var/lib/ringfence/versions/
//!   0.3.0/ringfence        the worker binary of that version (0755, written then renamed in)
//!   current -> 0.3.0       what the supervisor runs; absent: the package's /usr/bin/ringfence
//!   previous -> 0.2.0      what a fall-back returns to; absent: the package's binary
//!   state.json             {"trial": "0.3.0" | null, "bad": ["0.2.9", ...]}
//! ```
//! The .deb supplies the base version (`/usr/bin/ringfence`, which is also the supervisor);
//! versions a console rolls out are added here, so the package manager and the console never
//! write the same file. A switch writes a new symlink beside the old and renames it over
//! (`rename(2)` is atomic): a crash at any point leaves either the old or the new link.
//!
//! # Anti-rollback, and rollbacks
//! A release issued before the newest one this host accepted is refused (`Older`): whoever
//! can replay an old signed release must not be able to bring back an old, vulnerable binary.
//! A console cannot sign a new release to roll back (the releases key stays offline), so its
//! rollback re-offers the previous release as it was signed. That re-offer is accepted when its
//! binary is one this host already has and trusts — the bytes of an installed version not
//! marked bad (the one kept as `previous` among them), or the package's own binary — because
//! nothing new runs: the host goes back to what it ran before. An older release with any other
//! binary is still refused, and a version marked bad here is never run again.
//!
//! Each installed version keeps its release's `issued` and `expires` in `release.json` beside
//! its binary, so an agent running a release whose signature has expired can say so (it keeps
//! running it: an expired signature on a binary that runs is no reason to stop protecting the
//! host; see [`VersionStore::expired`]).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ringfence_content::release::{ReleaseError, verify_release};
use ringfence_content::time::UnixTime;
use ringfence_content::verify::TrustedRoot;
use serde::{Deserialize, Serialize};

/// The binary's name inside a version directory.
pub const BINARY: &str = "ringfence";
/// The largest state file read.
const MAX_STATE_BYTES: u64 = 64 * 1024;
/// Versions remembered as bad on this host, at most (the oldest are forgotten).
const MAX_BAD: usize = 64;

/// Why a version could not be stored or switched to.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("version `{0}`: expected 1 to 64 of [0-9A-Za-z.+-], not starting with `.`")]
    BadName(String),
    #[error("version {0} is not installed")]
    Missing(String),
    #[error("version {0} failed on this host before (versions/state.json `bad`)")]
    KnownBad(String),
    #[error("{path}: {detail}")]
    State { path: PathBuf, detail: String },
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(
        "release {version} was issued {issued}, before the newest release this host accepted \
         ({newest}), and its binary is none this host has: refused (anti-rollback)"
    )]
    Older {
        version: String,
        issued: UnixTime,
        newest: UnixTime,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VersionError + '_ {
    move |source| VersionError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VersionState {
    /// The version switched to and not yet confirmed healthy.
    pub trial: Option<String>,
    /// Versions that failed their trial here: never switched to again.
    pub bad: Vec<String>,
    /// `issued` of the newest release accepted (Unix seconds): older ones are refused.
    pub newest_issued: Option<u64>,
}

/// `release.json` in a version's directory: what the release it came from said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub version: String,
    pub issued: u64,
    pub expires: u64,
}

/// The release file beside a version's binary.
pub const RELEASE_INFO: &str = "release.json";

/// What a fall-back did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallBack {
    /// The version that failed.
    pub failed: String,
    /// What runs now: a version, or `None` for the package's binary.
    pub now: Option<String>,
}

/// The versions directory.
#[derive(Debug, Clone)]
pub struct VersionStore {
    dir: PathBuf,
}

impl VersionStore {
    /// The store in `dir` (created, 0700, when missing).
    pub fn open(dir: &Path) -> Result<VersionStore, VersionError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        Ok(VersionStore {
            dir: dir.to_owned(),
        })
    }

    /// The store in `dir` if it exists (nothing is created).
    pub fn open_existing(dir: &Path) -> Result<VersionStore, VersionError> {
        if !dir.is_dir() {
            return Err(VersionError::Io {
                path: dir.to_owned(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        Ok(VersionStore {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds `version` with its binary (already verified by the caller): written to a
    /// temporary directory, synced, then renamed into place. An installed version is kept
    /// as it is (versions are immutable).
    pub fn install(&self, version: &str, binary: &[u8]) -> Result<PathBuf, VersionError> {
        self.install_with(version, binary, None)
    }

    fn install_with(
        &self,
        version: &str,
        binary: &[u8],
        info: Option<&ReleaseInfo>,
    ) -> Result<PathBuf, VersionError> {
        check_name(version)?;
        let target = self.dir.join(version);
        if target.join(BINARY).is_file() {
            return Ok(target.join(BINARY));
        }
        let tmp = self
            .dir
            .join(format!(".tmp-{version}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(io(&tmp))?;
        let file = tmp.join(BINARY);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&file)
            .map_err(io(&file))?;
        f.write_all(binary).map_err(io(&file))?;
        f.sync_all().map_err(io(&file))?;
        drop(f);
        if let Some(info) = info {
            let path = tmp.join(RELEASE_INFO);
            let text = serde_json::to_vec(info).map_err(|e| VersionError::State {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            fs::write(&path, text).map_err(io(&path))?;
        }
        let _ = fs::remove_dir_all(&target);
        fs::rename(&tmp, &target).map_err(io(&target))?;
        sync_dir(&self.dir);
        Ok(target.join(BINARY))
    }

    /// Verifies a release file against `root` at `now` (signature by the releases role,
    /// expiry, binary hash, not older than the newest accepted) and adds its version; with
    /// `activate`, switches to it on trial. Returns the version.
    pub fn install_release(
        &self,
        bytes: &[u8],
        root: &TrustedRoot,
        now: UnixTime,
        activate: bool,
    ) -> Result<String, VersionError> {
        self.install_offered(bytes, root, now, activate, None)
    }

    /// [`Self::install_release`], also accepting an older release whose binary this host
    /// already has (an installed version not marked bad, or `base`, the package's binary): a
    /// console's rollback re-offer (see the module doc).
    pub fn install_offered(
        &self,
        bytes: &[u8],
        root: &TrustedRoot,
        now: UnixTime,
        activate: bool,
        base: Option<&Path>,
    ) -> Result<String, VersionError> {
        let release = verify_release(bytes, root, now)?;
        let mut state = self.state()?;
        if let Some(newest) = state.newest_issued
            && release.issued.0 < newest
            && !self.has_binary(release.binary, &state, base)
        {
            return Err(VersionError::Older {
                version: release.version,
                issued: release.issued,
                newest: UnixTime(newest),
            });
        }
        if state.bad.contains(&release.version) {
            return Err(VersionError::KnownBad(release.version));
        }
        let info = ReleaseInfo {
            version: release.version.clone(),
            issued: release.issued.0,
            expires: release.expires.0,
        };
        self.install_with(&release.version, release.binary, Some(&info))?;
        // Never lowered: accepting a re-offer does not reopen the door to older releases.
        state.newest_issued = Some(state.newest_issued.unwrap_or(0).max(release.issued.0));
        self.save_state(&state)?;
        if activate {
            self.activate(&release.version)?;
        }
        Ok(release.version)
    }

    /// Is `binary` the bytes of an installed version not marked bad, or of `base`?
    fn has_binary(&self, binary: &[u8], state: &VersionState, base: Option<&Path>) -> bool {
        use sha2::{Digest, Sha256};
        let want = Sha256::digest(binary);
        let same = |path: &Path| {
            fs::metadata(path).is_ok_and(|m| m.len() == binary.len() as u64)
                && fs::read(path).is_ok_and(|b| Sha256::digest(&b) == want)
        };
        if base.is_some_and(same) {
            return true;
        }
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|v| check_name(v).is_ok() && !state.bad.contains(v))
            .any(|v| same(&self.dir.join(&v).join(BINARY)))
    }

    /// The release the current version came from, as installed (`None`: the package's binary,
    /// or a version installed without one).
    pub fn current_release(&self) -> Option<ReleaseInfo> {
        let v = self.current()?;
        let path = self.dir.join(&v).join(RELEASE_INFO);
        let file = fs::File::open(&path).ok()?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_STATE_BYTES), &mut text)
            .ok()?;
        serde_json::from_str(&text).ok()
    }

    /// A line naming the file and the expiry when the current version's release has expired
    /// at `now`. The agent keeps running it (an expired signature is no reason to stop
    /// protecting the host); the line is a health finding and `ringfence doctor` prints it.
    pub fn expired(&self, now: UnixTime) -> Option<String> {
        let info = self.current_release()?;
        (info.expires <= now.0).then(|| {
            format!(
                "{}: the running agent release {} expired at {} (now {}); the agent keeps running \
                 it, but a new release is overdue (`ringfence release build`, then a rollout)",
                self.dir.join(&info.version).join(RELEASE_INFO).display(),
                info.version,
                UnixTime(info.expires),
                now
            )
        })
    }

    /// The version a link (`current`, `previous`) points at, if it points at an installed one.
    fn link(&self, name: &str) -> Option<String> {
        let target = fs::read_link(self.dir.join(name)).ok()?;
        let version = target.to_str()?.to_owned();
        check_name(&version).ok()?;
        self.dir
            .join(&version)
            .join(BINARY)
            .is_file()
            .then_some(version)
    }

    /// The version `current` names (`None`: the package's binary runs).
    pub fn current(&self) -> Option<String> {
        self.link("current")
    }

    /// The version `previous` names.
    pub fn previous(&self) -> Option<String> {
        self.link("previous")
    }

    /// The worker binary to run: the current version's, or `base` (the package's).
    pub fn binary(&self, base: &Path) -> PathBuf {
        match self.current() {
            Some(v) => self.dir.join(v).join(BINARY),
            None => base.to_owned(),
        }
    }

    /// Switches to `version` and puts it on trial; what ran before becomes `previous`.
    pub fn activate(&self, version: &str) -> Result<(), VersionError> {
        check_name(version)?;
        if !self.dir.join(version).join(BINARY).is_file() {
            return Err(VersionError::Missing(version.to_owned()));
        }
        let mut state = self.state()?;
        if state.bad.iter().any(|b| b == version) {
            return Err(VersionError::KnownBad(version.to_owned()));
        }
        let before = self.current();
        if before.as_deref() == Some(version) {
            return Ok(());
        }
        match &before {
            Some(v) => self.set_link("previous", Some(v))?,
            None => self.set_link("previous", None)?,
        }
        state.trial = Some(version.to_owned());
        self.save_state(&state)?;
        self.set_link("current", Some(version))
    }

    /// The version on trial passed: it is kept.
    pub fn confirm(&self) -> Result<(), VersionError> {
        let mut state = self.state()?;
        if state.trial.take().is_some() {
            self.save_state(&state)?;
        }
        Ok(())
    }

    /// The version on trial failed: back to `previous` (or the package's binary), and the
    /// failed version is marked bad on this host. `None` when no version is on trial.
    pub fn fall_back(&self) -> Result<Option<FallBack>, VersionError> {
        let mut state = self.state()?;
        let Some(failed) = state.trial.take() else {
            return Ok(None);
        };
        let now = self.previous().filter(|p| *p != failed);
        self.set_link("current", now.as_deref())?;
        self.set_link("previous", None)?;
        if !state.bad.contains(&failed) {
            state.bad.push(failed.clone());
        }
        if state.bad.len() > MAX_BAD {
            let extra = state.bad.len() - MAX_BAD;
            state.bad.drain(..extra);
        }
        self.save_state(&state)?;
        Ok(Some(FallBack { failed, now }))
    }

    /// `state.json` (default when absent).
    pub fn state(&self) -> Result<VersionState, VersionError> {
        let path = self.dir.join("state.json");
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(VersionState::default());
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(file, MAX_STATE_BYTES + 1),
            &mut text,
        )
        .map_err(io(&path))?;
        if text.len() as u64 > MAX_STATE_BYTES {
            return Err(VersionError::State {
                path,
                detail: format!("larger than {MAX_STATE_BYTES} bytes"),
            });
        }
        serde_json::from_str(&text).map_err(|e| VersionError::State {
            path,
            detail: e.to_string(),
        })
    }

    fn save_state(&self, state: &VersionState) -> Result<(), VersionError> {
        let path = self.dir.join("state.json");
        let tmp = self.dir.join(".state.json.tmp");
        let text = serde_json::to_string_pretty(state).map_err(|e| VersionError::State {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(&self.dir);
        Ok(())
    }

    /// Points `name` at `version` (relative link), or removes it: a new link beside the old,
    /// renamed over it.
    fn set_link(&self, name: &str, version: Option<&str>) -> Result<(), VersionError> {
        let path = self.dir.join(name);
        match version {
            Some(v) => {
                let tmp = self.dir.join(format!(".{name}.tmp"));
                let _ = fs::remove_file(&tmp);
                std::os::unix::fs::symlink(v, &tmp).map_err(io(&tmp))?;
                fs::rename(&tmp, &path).map_err(io(&path))?;
            }
            None => match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            },
        }
        sync_dir(&self.dir);
        Ok(())
    }
}

/// What self-protection guards of a versions directory: the directory (no link switched, no
/// version added by another process) and every version in it.
pub fn protected_paths(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    out.extend(
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path()),
    );
    out
}

/// A version name is a directory name: `[0-9A-Za-z.+-]{1,64}`, not starting with `.`.
pub fn check_name(version: &str) -> Result<(), VersionError> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && !version.starts_with('.')
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(VersionError::BadName(version.chars().take(80).collect()))
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activate_keeps_the_previous_and_fall_back_returns_to_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = VersionStore::open(tmp.path()).unwrap();
        let base = Path::new("/usr/bin/ringfence");
        assert_eq!(store.binary(base), base);
        store.install("0.2.0", b"two").unwrap();
        store.install("0.3.0", b"three").unwrap();
        store.activate("0.2.0").unwrap();
        store.confirm().unwrap();
        store.activate("0.3.0").unwrap();
        assert_eq!(store.current().as_deref(), Some("0.3.0"));
        assert_eq!(store.previous().as_deref(), Some("0.2.0"));
        assert_eq!(store.state().unwrap().trial.as_deref(), Some("0.3.0"));
        assert_eq!(store.binary(base), tmp.path().join("0.3.0").join(BINARY));
        let fb = store.fall_back().unwrap().unwrap();
        assert_eq!(fb.failed, "0.3.0");
        assert_eq!(fb.now.as_deref(), Some("0.2.0"));
        assert_eq!(store.current().as_deref(), Some("0.2.0"));
        assert_eq!(store.state().unwrap().bad, vec!["0.3.0".to_owned()]);
        // A bad version is never switched to again; nothing on trial, nothing to undo.
        assert!(matches!(
            store.activate("0.3.0"),
            Err(VersionError::KnownBad(_))
        ));
        assert_eq!(store.fall_back().unwrap(), None);
    }

    #[test]
    fn signed_releases_install_and_older_ones_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let now = UnixTime::parse("2026-12-01T00:00:00Z").unwrap();
        let keys = ringfence_content::init_keys(
            &tmp.path().join("keys"),
            &ringfence_content::KeysInitOptions::new(now),
        )
        .unwrap();
        let root = keys.trusted_root();
        let sign = |v: &str, issued: UnixTime| {
            ringfence_content::release::sign_release(&keys, b"bin", v, issued, now.plus_days(30))
                .unwrap()
        };
        let store = VersionStore::open(&tmp.path().join("versions")).unwrap();
        let v2 = sign("0.2.0", now);
        assert_eq!(
            store.install_release(&v2, root, now, true).unwrap(),
            "0.2.0"
        );
        assert_eq!(store.current().as_deref(), Some("0.2.0"));
        // An older release of a binary this host never had (the same bytes as an installed
        // version would be a rollback re-offer, accepted).
        let older = ringfence_content::release::sign_release(
            &keys,
            b"old bin",
            "0.1.9",
            UnixTime(now.0 - 60),
            now.plus_days(30),
        )
        .unwrap();
        assert!(matches!(
            store.install_release(&older, root, now, true),
            Err(VersionError::Older { .. })
        ));
        let mut forged = sign("0.3.0", now);
        *forged.last_mut().unwrap() ^= 1;
        assert!(matches!(
            store.install_release(&forged, root, now, true),
            Err(VersionError::Release(ReleaseError::HashMismatch { .. }))
        ));
        assert_eq!(store.current().as_deref(), Some("0.2.0"));
    }

    #[test]
    fn a_re_offer_of_a_binary_this_host_has_is_accepted_and_unknown_older_ones_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        let now = UnixTime::parse("2026-12-01T00:00:00Z").unwrap();
        let keys = ringfence_content::init_keys(
            &tmp.path().join("keys"),
            &ringfence_content::KeysInitOptions::new(now),
        )
        .unwrap();
        let root = keys.trusted_root();
        let sign = |bin: &[u8], v: &str, issued: UnixTime| {
            ringfence_content::release::sign_release(&keys, bin, v, issued, now.plus_days(30))
                .unwrap()
        };
        let base = tmp.path().join("usr-bin-ringfence");
        std::fs::write(&base, b"package 0.1.0").unwrap();
        let store = VersionStore::open(&tmp.path().join("versions")).unwrap();
        let v2 = sign(b"two", "0.2.0", now);
        let v3 = sign(b"three", "0.3.0", now.plus_secs(60));
        store
            .install_offered(&v2, root, now, true, Some(&base))
            .unwrap();
        store.confirm().unwrap();
        store
            .install_offered(&v3, root, now, true, Some(&base))
            .unwrap();
        assert_eq!(store.previous().as_deref(), Some("0.2.0"));
        // The console's rollback: 0.2.0's own release again, issued before 0.3.0.
        assert_eq!(
            store
                .install_offered(&v2, root, now, true, Some(&base))
                .unwrap(),
            "0.2.0"
        );
        assert_eq!(store.current().as_deref(), Some("0.2.0"));
        assert_eq!(
            store.state().unwrap().newest_issued,
            Some(now.plus_secs(60).0)
        );
        // The package's binary, released under its own name, is accepted back too.
        let package = sign(b"package 0.1.0", "0.1.0", UnixTime(now.0 - 600));
        assert_eq!(
            store
                .install_offered(&package, root, now, false, Some(&base))
                .unwrap(),
            "0.1.0"
        );
        // An older release with a binary this host never had is still refused.
        let unknown = sign(b"old and vulnerable", "0.1.5", UnixTime(now.0 - 60));
        assert!(matches!(
            store.install_offered(&unknown, root, now, true, Some(&base)),
            Err(VersionError::Older { .. })
        ));
        // A version marked bad is not accepted back, even re-offered.
        store.activate("0.3.0").unwrap();
        store.fall_back().unwrap();
        assert!(matches!(
            store.install_offered(&v3, root, now, true, Some(&base)),
            Err(VersionError::KnownBad(_))
        ));
    }

    #[test]
    fn an_expired_running_release_is_named_with_its_file_and_expiry() {
        let tmp = tempfile::tempdir().unwrap();
        let now = UnixTime::parse("2026-12-01T00:00:00Z").unwrap();
        let keys = ringfence_content::init_keys(
            &tmp.path().join("keys"),
            &ringfence_content::KeysInitOptions::new(now),
        )
        .unwrap();
        let file =
            ringfence_content::release::sign_release(&keys, b"bin", "0.3.0", now, now.plus_days(1))
                .unwrap();
        let store = VersionStore::open(&tmp.path().join("versions")).unwrap();
        store
            .install_release(&file, keys.trusted_root(), now, true)
            .unwrap();
        assert_eq!(store.expired(now), None);
        let line = store.expired(now.plus_days(2)).unwrap();
        assert!(line.contains("0.3.0/release.json"), "{line}");
        assert!(line.contains("expired at 2026-12-02"), "{line}");
        // It still runs.
        assert_eq!(store.current().as_deref(), Some("0.3.0"));
    }

    #[test]
    fn the_first_version_falls_back_to_the_package_binary() {
        let tmp = tempfile::tempdir().unwrap();
        let store = VersionStore::open(tmp.path()).unwrap();
        store.install("0.3.0", b"three").unwrap();
        store.activate("0.3.0").unwrap();
        let fb = store.fall_back().unwrap().unwrap();
        assert_eq!(fb.now, None);
        assert_eq!(
            store.binary(Path::new("/usr/bin/ringfence")),
            Path::new("/usr/bin/ringfence")
        );
    }

    #[test]
    fn names_that_are_not_plain_directory_names_are_refused() {
        for bad in ["", "..", ".hidden", "a/b", "0.3.0\n", &"9".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let store = VersionStore::open(tmp.path()).unwrap();
        assert!(store.install("../escape", b"x").is_err());
        assert!(matches!(
            store.activate("0.9.0"),
            Err(VersionError::Missing(_))
        ));
        // A link pointing outside the store is not followed.
        std::os::unix::fs::symlink("/usr/bin", tmp.path().join("current")).unwrap();
        assert_eq!(store.current(), None);
    }
}
