//! How the watched trees are marked: the walk of each tree's directories (bounded, on the
//! tree's filesystem), one inode mark per directory for the entry events, one filesystem mark
//! per filesystem for the file events, and one filesystem mark for everything where the trees
//! hold more directories than the bound (see the parent module for what each costs the host).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use super::{
    ENTRY_EVENTS, FAN_CREATE, FAN_DELETE, FAN_EVENT_ON_CHILD, FAN_MARK_ADD, FAN_MARK_DONT_FOLLOW,
    FAN_MARK_FILESYSTEM, FAN_MARK_ONLYDIR, FanotifySource, NAME,
};

/// How a source watches its paths (for tests and the start-up log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkSummary {
    pub dir_marks: usize,
    /// Filesystems watched whole (more directories than the bound).
    pub filesystem_marks: usize,
    /// Filesystems whose close-after-write and exec-open events come from a filesystem mark.
    pub file_event_marks: usize,
    /// Trees whose directory marks carry `FAN_EVENT_ON_CHILD` instead.
    pub on_child_trees: usize,
}

impl FanotifySource {
    /// How the paths are watched.
    pub fn marks(&self) -> MarkSummary {
        MarkSummary {
            dir_marks: self.dir_marks,
            filesystem_marks: self.fs_marked.len(),
            file_event_marks: self.file_event_marks.len(),
            on_child_trees: self.roots.iter().filter(|r| r.on_child).count(),
        }
    }

    /// Have the filesystem `fsid` (through `path` on it) report `events` (file events) to the
    /// group, adding to what it already reports.
    pub(super) fn mark_file_events(
        &mut self,
        fsid: [i32; 2],
        events: u64,
        path: &Path,
    ) -> io::Result<()> {
        if events == 0 {
            return Ok(());
        }
        let have = self
            .file_event_marks
            .iter()
            .find(|(f, _)| *f == fsid)
            .map_or(0, |(_, m)| *m);
        if have & events == events {
            return Ok(());
        }
        // FAN_EVENT_ON_CHILD here only asks the kernel for the parent and name with each event
        // (a filesystem mark flags no directory's entries).
        mark(
            self.group.as_raw_fd(),
            FAN_MARK_FILESYSTEM,
            have | events | FAN_EVENT_ON_CHILD,
            path,
        )?;
        match self.file_event_marks.iter_mut().find(|(f, _)| *f == fsid) {
            Some((_, m)) => *m |= events,
            None => self.file_event_marks.push((fsid, events)),
        }
        Ok(())
    }

    /// Mark the directories of every tree, one filesystem at a time. A filesystem whose trees
    /// hold more directories than the bound leaves gets one filesystem mark and no directory
    /// marks: marked first, they would only repeat what the filesystem mark reports, each
    /// holding its inode in memory.
    pub(super) fn mark_trees(&mut self) -> io::Result<()> {
        let mut filesystems: Vec<[i32; 2]> = Vec::new();
        for root in &self.roots {
            if !filesystems.contains(&root.fsid) {
                filesystems.push(root.fsid);
            }
        }
        for fsid in filesystems {
            let room = self.max_dir_marks.saturating_sub(self.dir_marks);
            let mut planned: Vec<(usize, Vec<PathBuf>)> = Vec::new();
            let mut count = 0usize;
            let mut over = None;
            for (i, root) in self.roots.iter().enumerate() {
                if root.fsid != fsid {
                    continue;
                }
                let dirs = walk_dirs(&root.path, root.dev, room.saturating_sub(count));
                count = count.saturating_add(dirs.len());
                if count > room {
                    over = Some(root.path.clone());
                    break;
                }
                planned.push((i, dirs));
            }
            if let Some(path) = over {
                self.watch_whole_filesystem(fsid, &path)?;
                continue;
            }
            for (i, dirs) in planned {
                let (mask, on_child) = (self.roots[i].mask, self.roots[i].on_child);
                self.mark_dirs(dirs, mask, on_child)?;
            }
        }
        Ok(())
    }

    /// The fallback past the bound: one filesystem mark with every event, through `path`.
    fn watch_whole_filesystem(&mut self, fsid: [i32; 2], path: &Path) -> io::Result<()> {
        tracing::warn!(
            source = NAME,
            path = %path.display(),
            bound = self.max_dir_marks,
            "too many directories to mark one by one; watching the whole filesystem instead"
        );
        mark(self.group.as_raw_fd(), FAN_MARK_FILESYSTEM, self.mask, path)?;
        self.fs_marked.push(fsid);
        Ok(())
    }

    /// Mark `dirs` (a tree's top first, then the directories below it) with `mask`. The top
    /// must take its mark; a directory below it may vanish mid-walk. Returns those marked.
    fn mark_dirs(
        &mut self,
        dirs: Vec<PathBuf>,
        mask: u64,
        on_child: bool,
    ) -> io::Result<Vec<PathBuf>> {
        let mut marked = Vec::with_capacity(dirs.len());
        for (i, d) in dirs.into_iter().enumerate() {
            match mark_directory(self.group.as_raw_fd(), mask, on_child, &d) {
                Ok(()) => {
                    self.dir_marks += 1;
                    marked.push(d);
                }
                Err(e) if i == 0 => return Err(e),
                Err(_) => {}
            }
        }
        Ok(marked)
    }

    /// Mark `dir`, new in a tree, and the directories below it on the same filesystem, within
    /// the bound, or fall back to a filesystem mark. Returns the directories newly marked.
    pub(super) fn mark_tree(&mut self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let dir_str = dir.to_string_lossy();
        let Some(root) = self.root_of(&dir_str) else {
            return Ok(Vec::new());
        };
        let (fsid, dev, mask, on_child) = (root.fsid, root.dev, root.mask, root.on_child);
        if self.fs_marked.contains(&fsid) {
            return Ok(Vec::new());
        }
        let room = self.max_dir_marks.saturating_sub(self.dir_marks);
        let dirs = walk_dirs(dir, dev, room);
        if dirs.len() > room {
            self.watch_whole_filesystem(fsid, dir)?;
            return Ok(Vec::new());
        }
        self.mark_dirs(dirs, mask, on_child)
    }
}

/// One directory's inode mark (never through a symbolic link). `on_child` adds
/// `FAN_EVENT_ON_CHILD` (the file events of the files in it, at the price the module explains).
fn mark_directory(group: RawFd, mask: u64, on_child: bool, path: &Path) -> io::Result<()> {
    let mask = if on_child {
        mask | FAN_EVENT_ON_CHILD
    } else {
        mask & ENTRY_EVENTS
    };
    mark(group, FAN_MARK_ONLYDIR | FAN_MARK_DONT_FOLLOW, mask, path)
}

pub(crate) fn mark(group: RawFd, flags: u32, mask: u64, path: &Path) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    mark_raw(group, FAN_MARK_ADD | flags, mask, libc::AT_FDCWD, Some(&c))
}

/// `fanotify_mark(2)` as it is: `path` relative to `dirfd`, or `dirfd` itself when `None`.
pub(crate) fn mark_raw(
    group: RawFd,
    flags: u32,
    mask: u64,
    dirfd: RawFd,
    path: Option<&std::ffi::CStr>,
) -> io::Result<()> {
    let p = path.map_or(std::ptr::null(), std::ffi::CStr::as_ptr);
    // SAFETY: `p` is null or a NUL-terminated string that outlives the call; the kernel checks
    // the descriptors.
    let rc = unsafe { libc::fanotify_mark(group, flags, mask, dirfd, p) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Try a filesystem mark on `/` with `group` (for `doctor`); the mark dies with the group.
pub fn probe_filesystem_mark(group: &OwnedFd) -> io::Result<()> {
    mark(
        group.as_raw_fd(),
        FAN_MARK_FILESYSTEM,
        FAN_CREATE | FAN_DELETE,
        Path::new("/"),
    )
}

/// Directories under `root` (itself first) on device `dev`, without following symbolic links;
/// stops after `limit` (so `limit + 1` entries mean "more than the limit").
fn walk_dirs(root: &Path, dev: u64, limit: usize) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut out = vec![root.to_path_buf()];
    let mut next = 0;
    while next < out.len() && out.len() <= limit {
        let Ok(entries) = std::fs::read_dir(&out[next]) else {
            next += 1;
            continue;
        };
        next += 1;
        for entry in entries.flatten() {
            // file_type() does not follow links; a mount point on another device is left out,
            // as a filesystem mark would leave it out.
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && entry.metadata().is_ok_and(|m| m.dev() == dev)
            {
                out.push(entry.path());
                if out.len() > limit {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{marks_of, tree};
    use super::super::{FAN_OPEN_EXEC, FanotifyOptions};
    use super::*;
    use crate::source::SourceError;

    /// The marks of trees whose file events come from one filesystem mark.
    fn summary(dir_marks: usize, filesystem_marks: usize) -> Option<MarkSummary> {
        Some(MarkSummary {
            dir_marks,
            filesystem_marks,
            file_event_marks: 1,
            on_child_trees: 0,
        })
    }

    /// A source on `paths` (no write-only trees, no exec-open) with `bound` directory marks.
    fn open_bounded(paths: Vec<PathBuf>, bound: usize) -> Result<FanotifySource, SourceError> {
        FanotifySource::open_with_bound(
            &FanotifyOptions {
                paths,
                write_only_paths: Vec::new(),
                exec_open: false,
            },
            bound,
        )
    }

    #[test]
    fn every_directory_of_the_tree_gets_an_inode_mark() {
        let d = tree("inode");
        let src = FanotifySource::open(&FanotifyOptions {
            paths: vec![d.clone()],
            write_only_paths: Vec::new(),
            exec_open: true,
        });
        let marks = src.as_ref().map(FanotifySource::marks).ok();
        drop(src);
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(marks, summary(4, 0));
    }

    #[test]
    fn a_tree_inside_a_watched_one_is_not_marked_twice() {
        let d = tree("nested");
        let src = FanotifySource::open(&FanotifyOptions {
            paths: vec![d.clone()],
            // Inside the tree above, which watches everything it would: nothing more to mark.
            write_only_paths: vec![d.join("a"), d.join("c")],
            exec_open: true,
        });
        let marks = src.as_ref().map(FanotifySource::marks).ok();
        let trees = src.as_ref().map(|s| s.roots.len()).ok();
        drop(src);
        // The other way round: a write-only tree, then a full one inside it, which adds
        // exec-open there (its two directories are marked again with the wider mask).
        let src = FanotifySource::open(&FanotifyOptions {
            paths: vec![d.join("a")],
            write_only_paths: vec![d.clone()],
            exec_open: true,
        });
        let widened = src.as_ref().map(FanotifySource::marks).ok();
        let mask_of_b = src
            .as_ref()
            .ok()
            .and_then(|s| s.root_of(&d.join("a/b").to_string_lossy()).map(|r| r.mask));
        drop(src);
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(trees, Some(1));
        assert_eq!(marks, summary(4, 0));
        assert_eq!(widened, summary(6, 0));
        assert!(mask_of_b.is_some_and(|m| m & FAN_OPEN_EXEC != 0));
    }

    #[test]
    fn past_the_bound_one_filesystem_mark_instead() {
        let d = tree("bound");
        let src = open_bounded(vec![d.clone()], 3);
        let marks = src.as_ref().map(FanotifySource::marks).ok();
        drop(src);
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(marks, summary(0, 1));
    }

    /// Two trees on one filesystem that fit the bound only apart: the filesystem is watched
    /// whole, and the first tree's directories carry no marks beside it. (Marked tree by tree,
    /// the first tree's four directories kept theirs, each pinning its inode.)
    #[test]
    fn a_filesystem_watched_whole_keeps_no_directory_marks() {
        let first = tree("whole-first");
        let second = tree("whole-second");
        let src = open_bounded(vec![first.clone(), second.clone()], 6);
        let marks = src.as_ref().map(FanotifySource::marks).ok();
        let inode_marks = src.as_ref().ok().map(|s| {
            marks_of(&s.group)
                .iter()
                .filter(|(inode, _)| *inode)
                .count()
        });
        drop(src);
        let _ = std::fs::remove_dir_all(&first);
        let _ = std::fs::remove_dir_all(&second);
        assert_eq!(marks, summary(0, 1));
        assert_eq!(inode_marks, Some(0), "the kernel holds no inode mark");
    }

    #[test]
    fn walk_is_bounded_and_stays_on_one_device() {
        use std::os::unix::fs::MetadataExt;
        let d = tree("walk");
        let dev = std::fs::metadata(&d).map(|m| m.dev()).unwrap_or(0);
        assert_eq!(walk_dirs(&d, dev, 100).len(), 4);
        assert_eq!(walk_dirs(&d, dev, 1).len(), 2, "limit + 1 means too many");
        assert_eq!(
            walk_dirs(&d, dev ^ 1, 100).len(),
            1,
            "other devices are left out"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
