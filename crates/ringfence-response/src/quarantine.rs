//! The quarantine store: files moved out of reach, with enough metadata to put them back.
//!
//! A quarantined file lives as `<id>.bin` (mode 0400, so it can no longer run) next to
//! `<id>.json` (original path, mode, owner, size, SHA-256, time) in a root-only directory.
//! Moving is a rename when the store shares the file system, else copy, fsync, then unlink.
//! Restoring refuses to overwrite anything that has since appeared at the original path.

use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ringfence_event::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Metadata kept beside a quarantined file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub original_path: PathBuf,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub sha256: String,
    pub quarantined_at: String,
}

/// A quarantine failure, naming the file.
#[derive(Debug)]
pub struct QuarantineError {
    pub path: PathBuf,
    pub what: &'static str,
    pub error: io::Error,
}

impl fmt::Display for QuarantineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.what, self.path.display(), self.error)
    }
}

impl std::error::Error for QuarantineError {}

fn err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> QuarantineError + 'a {
    move |error| QuarantineError {
        path: path.to_owned(),
        what,
        error,
    }
}

/// The store in one directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_owned(),
        }
    }

    fn ensure_dir(&self) -> Result<(), QuarantineError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(err(&self.dir, "creating quarantine dir"))?;
        fs::set_permissions(&self.dir, Permissions::from_mode(0o700))
            .map_err(err(&self.dir, "securing quarantine dir"))
    }

    fn blob(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.bin"))
    }

    fn meta(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Move `path` into the store.
    pub fn quarantine(&self, path: &Path) -> Result<Entry, QuarantineError> {
        self.ensure_dir()?;
        let meta = fs::symlink_metadata(path).map_err(err(path, "reading"))?;
        let sha256 = sha256_file(path).map_err(err(path, "hashing"))?;
        let now = Timestamp::now();
        let id = format!("{}-{}", sha256.get(..16).unwrap_or(&sha256), now.as_nanos());
        let blob = self.blob(&id);
        move_file(path, &blob).map_err(err(path, "moving"))?;
        fs::set_permissions(&blob, Permissions::from_mode(0o400))
            .map_err(err(&blob, "securing"))?;
        let entry = Entry {
            id,
            original_path: path.to_owned(),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.len(),
            sha256,
            quarantined_at: now.to_string(),
        };
        let json = serde_json::to_vec_pretty(&entry).map_err(|e| QuarantineError {
            path: path.to_owned(),
            what: "recording",
            error: io::Error::other(e),
        })?;
        write_atomic(&self.meta(&entry.id), &json).map_err(err(path, "recording"))?;
        Ok(entry)
    }

    /// Every entry in the store.
    pub fn list(&self) -> Vec<Entry> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<Entry> = dir
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&fs::read(e.path()).ok()?).ok())
            .collect();
        out.sort_by(|a, b| a.quarantined_at.cmp(&b.quarantined_at));
        out
    }

    /// Put entry `id` back where it came from, with its mode and owner.
    pub fn restore(&self, id: &str) -> Result<Entry, QuarantineError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(QuarantineError {
                path: self.dir.join(id),
                what: "restoring",
                error: io::Error::new(io::ErrorKind::InvalidInput, "not a quarantine id"),
            });
        }
        let meta_path = self.meta(id);
        let bytes = fs::read(&meta_path).map_err(err(&meta_path, "reading"))?;
        let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| QuarantineError {
            path: meta_path.clone(),
            what: "parsing",
            error: io::Error::other(e),
        })?;
        if entry.original_path.symlink_metadata().is_ok() {
            return Err(QuarantineError {
                path: entry.original_path.clone(),
                what: "restoring",
                error: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "something exists at the original path",
                ),
            });
        }
        let blob = self.blob(id);
        move_file(&blob, &entry.original_path).map_err(err(&entry.original_path, "restoring"))?;
        fs::set_permissions(&entry.original_path, Permissions::from_mode(entry.mode))
            .map_err(err(&entry.original_path, "setting mode"))?;
        std::os::unix::fs::chown(&entry.original_path, Some(entry.uid), Some(entry.gid))
            .map_err(err(&entry.original_path, "setting owner"))?;
        fs::remove_file(&meta_path).map_err(err(&meta_path, "removing"))?;
        Ok(entry)
    }
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn move_file(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(18) => {
            // EXDEV: another file system. Copy, make it durable, then remove the original.
            let mut src = File::open(from)?;
            let mut dst = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode_600()
                .open(to)?;
            io::copy(&mut src, &mut dst)?;
            dst.sync_all()?;
            fs::remove_file(from)
        }
        Err(e) => Err(e),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode_600()
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

trait Mode600 {
    fn mode_600(&mut self) -> &mut Self;
}

impl Mode600 for OpenOptions {
    fn mode_600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_and_restore_round_trip() {
        let base = std::env::temp_dir().join(format!("ringfence-q-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        assert!(fs::create_dir_all(&base).is_ok());
        let victim = base.join("dropper.sh");
        assert!(fs::write(&victim, b"#!/bin/sh\necho pwned\n").is_ok());
        assert!(fs::set_permissions(&victim, Permissions::from_mode(0o755)).is_ok());
        let store = Store::new(&base.join("store"));

        let entry = store.quarantine(&victim);
        let entry = match entry {
            Ok(e) => e,
            Err(e) => panic!("quarantine failed: {e}"),
        };
        assert!(!victim.exists());
        assert_eq!(entry.mode, 0o755);
        assert_eq!(entry.sha256.len(), 64);
        let blob_mode = fs::metadata(store.blob(&entry.id))
            .map(|m| m.mode() & 0o777)
            .ok();
        assert_eq!(blob_mode, Some(0o400), "stored without exec bits");
        let dir_mode = fs::metadata(base.join("store"))
            .map(|m| m.mode() & 0o777)
            .ok();
        assert_eq!(dir_mode, Some(0o700));
        assert_eq!(store.list(), vec![entry.clone()]);

        // Something new at the original path is never overwritten.
        assert!(fs::write(&victim, b"new").is_ok());
        assert!(store.restore(&entry.id).is_err());
        assert!(fs::remove_file(&victim).is_ok());

        let restored = store.restore(&entry.id).map(|e| e.original_path);
        assert_eq!(restored.ok(), Some(victim.clone()));
        assert_eq!(
            fs::read(&victim).ok(),
            Some(b"#!/bin/sh\necho pwned\n".to_vec())
        );
        assert_eq!(
            fs::metadata(&victim).map(|m| m.mode() & 0o777).ok(),
            Some(0o755)
        );
        assert!(store.list().is_empty());
        assert!(
            store.restore("../../etc/passwd").is_err(),
            "ids cannot walk out of the store"
        );
        let _ = fs::remove_dir_all(&base);
    }
}
