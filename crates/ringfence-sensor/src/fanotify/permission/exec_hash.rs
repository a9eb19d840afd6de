//! Exec verdicts by SHA-256: the file identity read from the event descriptor, a bounded
//! verdict cache keyed by it, and streaming hashing through that descriptor.
//!
//! The key is (device, inode, size, mtime, ctime): any write or truncation changes mtime/ctime,
//! so a rewritten file is hashed again, and a file replaced by rename has another inode. The
//! cache is cleared when full (cheaper than LRU bookkeeping on every exec, and a cleared cache
//! costs one hash per distinct binary) and whenever the deny set changes. Hashing reads with
//! `pread` on the event descriptor, which the kernel opened with `FMODE_NONOTIFY`, so it raises
//! no event of its own and cannot block on our group.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use sha2::{Digest, Sha256};

/// The identity of one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl FileKey {
    pub(crate) fn of(file: &File) -> io::Result<FileKey> {
        let m = file.metadata()?;
        Ok(FileKey {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// What to answer for one file version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// Its hash is in the deny set.
    Deny([u8; 32]),
    /// Larger than the hashing limit: allowed unhashed.
    TooLarge,
}

/// Hash `file` from offset 0 to its end, at most `limit` bytes; `Ok(None)` past the limit (also
/// when the file grew beyond it while being read).
pub(crate) fn sha256_of(file: &File, limit: u64, buf: &mut [u8]) -> io::Result<Option<[u8; 32]>> {
    let mut h = Sha256::new();
    let mut off = 0u64;
    loop {
        let n = match file.read_at(buf, off) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        off += n as u64;
        if off > limit {
            return Ok(None);
        }
        h.update(&buf[..n]);
    }
    Ok(Some(h.finalize().into()))
}

/// Decide for one file, without the cache.
pub(crate) fn verdict_for(
    file: &File,
    key: &FileKey,
    deny: &HashSet<[u8; 32]>,
    limit: u64,
    buf: &mut [u8],
) -> io::Result<(Verdict, bool)> {
    if key.size > limit {
        return Ok((Verdict::TooLarge, false));
    }
    Ok(match sha256_of(file, limit, buf)? {
        None => (Verdict::TooLarge, true),
        Some(h) if deny.contains(&h) => (Verdict::Deny(h), true),
        Some(_) => (Verdict::Allow, true),
    })
}

/// A verdict cache cleared when full. Capacity 0 disables it.
#[derive(Debug)]
pub(crate) struct VerdictCache {
    map: HashMap<FileKey, Verdict>,
    capacity: usize,
}

impl VerdictCache {
    pub(crate) fn new(capacity: usize) -> VerdictCache {
        VerdictCache {
            map: HashMap::with_capacity(capacity.min(4096)),
            capacity,
        }
    }

    pub(crate) fn get(&self, key: &FileKey) -> Option<Verdict> {
        self.map.get(key).copied()
    }

    pub(crate) fn insert(&mut self, key: FileKey, verdict: Verdict) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity {
            self.map.clear();
        }
        self.map.insert(key, verdict);
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> FileKey {
        FileKey {
            dev: 1,
            ino,
            size: 0,
            mtime: (0, 0),
            ctime: (0, 0),
        }
    }

    #[test]
    fn cache_clears_when_full_and_zero_disables() {
        let mut c = VerdictCache::new(2);
        c.insert(key(1), Verdict::Allow);
        c.insert(key(2), Verdict::TooLarge);
        assert_eq!(c.get(&key(2)), Some(Verdict::TooLarge));
        c.insert(key(3), Verdict::Allow);
        assert_eq!((c.len(), c.get(&key(1))), (1, None));
        let mut off = VerdictCache::new(0);
        off.insert(key(1), Verdict::Allow);
        assert_eq!(off.get(&key(1)), None);
    }

    #[test]
    fn hashes_match_sha256_and_respect_the_limit() {
        let p = std::env::temp_dir().join(format!("ringfence-hash-{}", std::process::id()));
        assert!(std::fs::write(&p, b"abc").is_ok());
        let f = File::open(&p);
        let _ = std::fs::remove_file(&p);
        let Ok(f) = f else {
            panic!("temp file vanished");
        };
        let mut buf = [0u8; 2];
        let h = sha256_of(&f, 100, &mut buf).ok().flatten();
        assert_eq!(
            h.map(hex::encode).as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(sha256_of(&f, 2, &mut buf).ok(), Some(None));
    }
}
