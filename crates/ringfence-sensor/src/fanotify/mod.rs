//! fanotify: file create, modify, delete, rename and exec-open under configured paths.
//!
//! One notification group with `FAN_REPORT_DFID_NAME`: the kernel reports the directory's file
//! handle and the entry name, so no file is opened for a plain event and deletes and renames are
//! seen at all. Directory handles are resolved with `open_by_handle_at` against a descriptor on
//! the watched path, and the result is cached, so the cost per event is one hash lookup and a
//! prefix check.
//!
//! Two kinds of mark, split by what each costs the host:
//! - **Entry events** (create, delete, rename) are events on the *directory*: they come from
//!   *inode* marks on every directory of the watched trees, placed by a walk at start that
//!   stays on the root's filesystem. A directory created in (or moved into) a watched tree is
//!   marked when its `FAN_CREATE`/`FAN_RENAME` with `FAN_ONDIR` arrives, and the files already in
//!   it by then are reported as creates (without a process: the kernel did not tell us who made
//!   them).
//! - **File events** (close-after-write, exec-open) are events on the file. They come from one
//!   *filesystem* mark per filesystem holding a watched tree, filtered here by path. They are
//!   not taken from the directory marks with `FAN_EVENT_ON_CHILD`: such a mark flags every
//!   entry of its directory as parent-watched, and then every open, read, write and close of
//!   any file there (reading `/etc/hostname`, appending to a log) takes a reference on the
//!   parent directory in the kernel's fsnotify path, whether or not the event is wanted. That
//!   measured 1.06× on a loop of open, stat and close in `/etc` (`benches/fsnotify_marks.rs`;
//!   1.01× with the marks laid out as here). The filesystem mark
//!   asks only for the two wanted events, so the kernel sends nothing for reads, and one event
//!   per written-and-closed file (or exec) on that filesystem, which costs one cached lookup
//!   here when it is outside the trees. A filesystem that refuses the filesystem mark gets the
//!   old `FAN_EVENT_ON_CHILD` directory marks instead, and the source says so.
//!
//! With more than [`MAX_DIR_MARKS`] directories the source falls back to one filesystem mark
//! with every event for that filesystem (filtered here by path), and says so. The trees are
//! walked a filesystem at a time before any is marked, so a filesystem watched whole carries
//! no directory marks beside its filesystem mark (each would pin its inode for nothing). The
//! walk and the marks are in `marks.rs`.
//!
//! Trees in [`FanotifyOptions::write_only_paths`] (the system binary and library trees) do not
//! report `FAN_OPEN_EXEC`: every command runs from them, and the process sensor reports each
//! exec anyway. A tree inside another one already watched with at least its events is not
//! marked twice (`/lib` is `/usr/lib` on a merged-/usr system).
//!
//! "Modify" is reported on `FAN_CLOSE_WRITE`, once per writing session rather than per
//! `write(2)`, which keeps a busy log file from flooding the agent. A queue overflow
//! (`FAN_Q_OVERFLOW`) is counted as a gap. Events caused by the agent itself are ignored.
#![allow(
    unsafe_code,
    reason = "fanotify_init/fanotify_mark/open_by_handle_at/fstatfs/poll FFI"
)]

mod marks;
pub mod parse;
pub mod permission;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ringfence_event::{Event, EventKind, File as FileRecord, Process, SourceKind, Timestamp};

use crate::source::{EventSender, Sent, Source, SourceError, StopSignal};
pub use marks::{MarkSummary, probe_filesystem_mark};
pub(crate) use marks::{mark, mark_raw};
use parse::{FidInfo, INFO_DFID_NAME, INFO_NEW_DFID_NAME, INFO_OLD_DFID_NAME, RawEvent};

const NAME: &str = "fanotify";

pub const FAN_CLOSE_WRITE: u64 = 0x0000_0008;
pub const FAN_CREATE: u64 = 0x0000_0100;
pub const FAN_DELETE: u64 = 0x0000_0200;
pub const FAN_OPEN_EXEC: u64 = 0x0000_1000;
pub const FAN_Q_OVERFLOW: u64 = 0x0000_4000;
pub const FAN_RENAME: u64 = 0x1000_0000;
pub const FAN_EVENT_ON_CHILD: u64 = 0x0800_0000;
pub const FAN_ONDIR: u64 = 0x4000_0000;

pub(crate) const FAN_CLOEXEC: u32 = 0x1;
const FAN_CLASS_NOTIF: u32 = 0;
const FAN_REPORT_DIR_FID: u32 = 0x400;
const FAN_REPORT_NAME: u32 = 0x800;
pub(crate) const FAN_MARK_ADD: u32 = 0x1;
pub(crate) const FAN_MARK_FILESYSTEM: u32 = 0x100;
pub(crate) const FAN_MARK_DONT_FOLLOW: u32 = 0x4;
pub(crate) const FAN_MARK_ONLYDIR: u32 = 0x8;

/// Directories marked one by one before falling back to a filesystem mark. Each inode mark
/// keeps its directory's inode cached; 30,000 marks took 2.8 MB of unreclaimable kernel memory
/// here. /usr/lib alone holds some 11,000 directories on a Debian server with Python and Perl.
pub const MAX_DIR_MARKS: usize = 32_768;

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FanotifyOptions {
    /// Directories whose subtrees are reported. Paths that do not exist are skipped (and said so).
    pub paths: Vec<PathBuf>,
    /// Directories whose subtrees are reported for writes only (create, modify, delete, rename;
    /// never `exec-open`). Missing ones are skipped, as for `paths`.
    pub write_only_paths: Vec<PathBuf>,
    /// Report `exec-open` of files under `paths`.
    pub exec_open: bool,
}

/// Open a reporting group: `Ok(fd)` or the errno. Used by `doctor` as well.
pub fn init_group() -> io::Result<OwnedFd> {
    let flags = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_REPORT_DIR_FID | FAN_REPORT_NAME;
    let event_flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE) as libc::c_uint;
    // SAFETY: plain syscall with integer arguments; the result is checked before use.
    let fd = unsafe { libc::fanotify_init(flags, event_flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The events a directory's own inode mark reports: changes to its entries.
const ENTRY_EVENTS: u64 = FAN_CREATE | FAN_DELETE | FAN_RENAME | FAN_ONDIR;
/// The events that happen to a file, not to its directory.
const FILE_EVENTS: u64 = FAN_CLOSE_WRITE | FAN_OPEN_EXEC;

fn fsid_of(fd: &File) -> io::Result<[i32; 2]> {
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid and writable; `fd` is an open descriptor.
    let rc = unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fsid_t is two c_ints (`__val: [c_int; 2]`, private in libc); same size and layout.
    Ok(unsafe { std::mem::transmute::<libc::fsid_t, [i32; 2]>(st.f_fsid) })
}

/// Resolve a file handle to a path through `mount_fd`.
fn resolve_handle(mount_fd: RawFd, handle_type: i32, handle: &[u8]) -> io::Result<PathBuf> {
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }, 8-aligned here.
    let mut words = vec![0u64; 1 + handle.len().div_ceil(8)];
    let bytes =
        u32::try_from(handle.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    {
        let header: &mut [u8] = bytemuck_words(&mut words);
        header[0..4].copy_from_slice(&bytes.to_ne_bytes());
        header[4..8].copy_from_slice(&handle_type.to_ne_bytes());
        header[8..8 + handle.len()].copy_from_slice(handle);
    }
    // SAFETY: `words` holds a correctly laid out, suitably aligned file_handle whose
    // handle_bytes matches the bytes that follow; it outlives the call.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount_fd,
            words.as_mut_ptr().cast::<libc::file_handle>(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor; OwnedFd closes it on drop.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    std::fs::read_link(format!("/proc/self/fd/{}", owned.as_raw_fd()))
}

fn bytemuck_words(words: &mut [u64]) -> &mut [u8] {
    let len = std::mem::size_of_val(words);
    // SAFETY: any u64 slice is a valid byte slice of 8× its length; lifetimes are tied.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) }
}

pub(crate) fn poll_readable(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    match rc {
        n if n > 0 => Ok(true),
        0 => Ok(false),
        _ => Err(io::Error::last_os_error()),
    }
}

/// The fanotify source. Opened (group created, marks placed) before `run`, so failures are known
/// when the agent starts.
#[derive(Debug)]
pub struct FanotifySource {
    group: File,
    /// Watched roots, canonical, with their filesystem id and a directory descriptor.
    roots: Vec<Root>,
    /// Directories by handle (see [`handle_key`]).
    cache: HashMap<Box<[u8]>, CachedDir>,
    /// The key being looked up, kept to reuse its allocation: every event is looked up, and
    /// most (written files anywhere on a marked filesystem) go no further.
    key: Vec<u8>,
    mask: u64,
    /// Inode marks placed (directories deleted since are subtracted when seen).
    dir_marks: usize,
    max_dir_marks: usize,
    /// Filesystems watched through a filesystem mark (the fallback).
    fs_marked: Vec<[i32; 2]>,
    /// Filesystems whose file events come from a filesystem mark, with the events marked.
    file_event_marks: Vec<([i32; 2], u64)>,
}

#[derive(Debug)]
struct Root {
    /// The tree's canonical path, as given to the walk and the marks.
    path: PathBuf,
    /// The same as text without a trailing `/`, for matching event paths.
    prefix: String,
    /// The events reported in this tree.
    mask: u64,
    /// Its directories' marks carry `FAN_EVENT_ON_CHILD` (its filesystem refused a filesystem
    /// mark for the file events).
    on_child: bool,
    fsid: [i32; 2],
    dev: u64,
    fd: File,
}

const CACHE_LIMIT: usize = 4096;

/// A directory handle, resolved.
#[derive(Debug)]
struct CachedDir {
    /// Its path; `None` when it could not be resolved (gone already).
    path: Option<String>,
    /// The file events its tree reports (0 outside the trees): a file event is in a tree
    /// exactly when its directory is, since the trees are directories.
    file_events: u64,
}

/// The path of entry `name` of directory `dir` (`dir` itself for no name or `.`).
fn join(dir: &str, name: Option<&[u8]>) -> String {
    let name = name.map(String::from_utf8_lossy).unwrap_or_default();
    match name.as_ref() {
        "" | "." => dir.to_owned(),
        n if dir.ends_with('/') => format!("{dir}{n}"),
        n => format!("{dir}/{n}"),
    }
}

/// The cache key of a handle record: filesystem id, handle type and handle, as bytes.
fn handle_key(info: &FidInfo<'_>, key: &mut Vec<u8>) {
    key.clear();
    for part in [info.fsid[0], info.fsid[1], info.handle_type] {
        key.extend_from_slice(&part.to_ne_bytes());
    }
    key.extend_from_slice(info.handle);
}

impl FanotifySource {
    pub fn open(options: &FanotifyOptions) -> Result<FanotifySource, SourceError> {
        Self::open_with_bound(options, MAX_DIR_MARKS)
    }

    /// [`FanotifySource::open`] with another bound on directory marks.
    pub fn open_with_bound(
        options: &FanotifyOptions,
        max_dir_marks: usize,
    ) -> Result<FanotifySource, SourceError> {
        use std::os::unix::fs::MetadataExt;
        let group = init_group().map_err(|e| SourceError::syscall(NAME, "fanotify_init", e))?;
        let writes = FAN_CREATE | FAN_DELETE | FAN_RENAME | FAN_CLOSE_WRITE | FAN_ONDIR;
        let all = if options.exec_open {
            writes | FAN_OPEN_EXEC
        } else {
            writes
        };
        let mut source = FanotifySource {
            group: File::from(group),
            roots: Vec::new(),
            cache: HashMap::new(),
            key: Vec::new(),
            mask: all,
            dir_marks: 0,
            max_dir_marks,
            fs_marked: Vec::new(),
            file_event_marks: Vec::new(),
        };
        let wanted = options
            .paths
            .iter()
            .map(|p| (p, all))
            .chain(options.write_only_paths.iter().map(|p| (p, writes)));
        for (path, mask) in wanted {
            let Ok(canon) = path.canonicalize() else {
                tracing::warn!(source = NAME, path = %path.display(), "watched path does not exist; skipped");
                continue;
            };
            let canon_str = canon.to_string_lossy();
            if source
                .root_of(&canon_str)
                .is_some_and(|r| r.mask & mask == mask)
            {
                tracing::debug!(source = NAME, path = %path.display(), "already watched");
                continue;
            }
            let fd = std::fs::OpenOptions::new()
                .read(true)
                // Not O_PATH: open_by_handle_at refuses O_PATH mount descriptors (EBADF).
                .custom_flags(libc::O_DIRECTORY)
                .open(&canon)
                .map_err(|e| SourceError::syscall(NAME, "open(O_DIRECTORY)", e))?;
            let fsid = fsid_of(&fd).map_err(|e| SourceError::syscall(NAME, "fstatfs", e))?;
            let dev = fd
                .metadata()
                .map_err(|e| SourceError::syscall(NAME, "fstat", e))?
                .dev();
            let on_child = match source.mark_file_events(fsid, mask & FILE_EVENTS, &canon) {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(
                        source = NAME,
                        path = %canon.display(),
                        error = %e,
                        "filesystem refused a filesystem mark; this tree's file events come \
                         from directory marks on children (every file access in it pays more)"
                    );
                    true
                }
            };
            source.roots.push(Root {
                prefix: canon.to_string_lossy().trim_end_matches('/').to_owned(),
                path: canon,
                mask,
                on_child,
                fsid,
                dev,
                fd,
            });
        }
        if source.roots.is_empty() {
            return Err(SourceError::unavailable(NAME, "no watched path exists"));
        }
        // Marked once every tree is known, a filesystem at a time.
        source
            .mark_trees()
            .map_err(|e| SourceError::syscall(NAME, "fanotify_mark", e))?;
        let m = source.marks();
        tracing::info!(
            source = NAME,
            trees = source.roots.len(),
            directory_marks = m.dir_marks,
            filesystem_marks = m.filesystem_marks,
            file_event_marks = m.file_event_marks,
            on_child_trees = m.on_child_trees,
            "watching"
        );
        Ok(source)
    }

    /// A directory appeared in a watched tree (created, or moved in): watch it, and for a new
    /// one report the files that were made in it before the mark took effect.
    fn watch_new_dir(&mut self, path: &str, created: bool, now: Timestamp, out: &mut Vec<Event>) {
        let marked = match self.mark_tree(Path::new(path)) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(source = NAME, path, error = %e, "new directory not marked");
                return;
            }
        };
        if !created {
            return;
        }
        // Everything below the new directory (subdirectories included; not the directory itself,
        // whose own FAN_CREATE brought us here).
        for dir in &marked {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let mut e = Event::new(EventKind::FileCreate, SourceKind::Fanotify, now);
                e.partial = true;
                e.file = Some(FileRecord {
                    path: entry.path().to_string_lossy().into_owned(),
                    ..FileRecord::default()
                });
                out.push(e);
            }
        }
    }

    /// The directory of a handle record, resolved once and cached.
    fn dir(&mut self, info: &FidInfo<'_>) -> Option<&CachedDir> {
        handle_key(info, &mut self.key);
        if !self.cache.contains_key(self.key.as_slice()) {
            let root = self.roots.iter().find(|r| r.fsid == info.fsid)?;
            let path = resolve_handle(root.fd.as_raw_fd(), info.handle_type, info.handle)
                .ok()
                .map(|p| p.to_string_lossy().into_owned());
            let file_events = path
                .as_deref()
                .and_then(|p| self.root_of(p))
                .map_or(0, |r| r.mask & FILE_EVENTS);
            if self.cache.len() >= CACHE_LIMIT {
                self.cache.clear();
            }
            let entry = CachedDir { path, file_events };
            self.cache.insert(self.key.as_slice().into(), entry);
        }
        self.cache.get(self.key.as_slice())
    }

    fn in_scope(&self, path: &str) -> bool {
        self.root_of(path).is_some()
    }

    /// The innermost watched tree holding `path`.
    fn root_of(&self, path: &str) -> Option<&Root> {
        self.roots
            .iter()
            .filter(|r| {
                path.strip_prefix(r.prefix.as_str()).is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with('/') || r.prefix.is_empty()
                })
            })
            .max_by_key(|r| r.prefix.len())
    }

    fn full_path(&mut self, info: &FidInfo<'_>) -> Option<String> {
        let dir = self.dir(info)?.path.as_deref()?;
        Some(join(dir, info.name))
    }

    /// The events one record becomes (one per reported action), and whether it was unresolved.
    fn events_for(&mut self, raw: &RawEvent<'_>, own_pid: i32, out: &mut Vec<Event>) -> bool {
        if raw.pid == own_pid {
            return false;
        }
        if raw.mask & FAN_ONDIR != 0 && raw.mask & (FAN_RENAME | FAN_DELETE) != 0 {
            // A directory moved or went: cached paths below it may be stale.
            self.cache.clear();
        }
        let now = Timestamp::now();
        let make = |kind, path: String, original: Option<String>| {
            let mut e = Event::new(kind, SourceKind::Fanotify, now);
            e.process = Some(Process {
                pid: u32::try_from(raw.pid).unwrap_or(0),
                ..Process::default()
            });
            e.file = Some(FileRecord {
                path,
                original_path: original,
                ..FileRecord::default()
            });
            e
        };
        if raw.mask & FAN_RENAME != 0 {
            let old = raw
                .infos
                .iter()
                .find(|i| i.info_type == INFO_OLD_DFID_NAME)
                .copied();
            let new = raw
                .infos
                .iter()
                .find(|i| i.info_type == INFO_NEW_DFID_NAME)
                .copied();
            let old = old.and_then(|i| self.full_path(&i));
            let new = new.and_then(|i| self.full_path(&i));
            match (old, new) {
                (Some(o), Some(n)) if self.in_scope(&o) || self.in_scope(&n) => {
                    if raw.mask & FAN_ONDIR != 0 && self.in_scope(&n) {
                        self.watch_new_dir(&n, false, now, out);
                    }
                    out.push(make(EventKind::FileRename, n, Some(o)));
                }
                (None, None) => return true,
                _ => {}
            }
        }
        let Some(info) = raw
            .infos
            .iter()
            .find(|i| i.info_type == INFO_DFID_NAME)
            .copied()
        else {
            return false;
        };
        // One lookup of the directory per record.
        let Some(CachedDir {
            path: Some(dir),
            file_events,
        }) = self.dir(&info)
        else {
            return true;
        };
        let entry_event = raw.mask & (FAN_CREATE | FAN_DELETE) != 0;
        // A filesystem mark reports file events from everywhere on it: keep those of the trees
        // that asked for them (a write-only tree reports no exec-open). Those outside the trees
        // go no further than the cache. A file's tree is its directory's, as trees are
        // directories; an entry may itself be a tree nested in its directory's.
        if !entry_event && file_events & raw.mask == 0 {
            return false;
        }
        let file_events = *file_events;
        let path = join(dir, info.name);
        let wanted = if entry_event {
            let Some(root) = self.root_of(&path) else {
                return false;
            };
            root.mask
        } else {
            file_events
        };
        for (bit, kind) in [
            (FAN_CREATE, EventKind::FileCreate),
            (FAN_CLOSE_WRITE, EventKind::FileModify),
            (FAN_OPEN_EXEC, EventKind::FileExecOpen),
            (FAN_DELETE, EventKind::FileDelete),
        ] {
            if raw.mask & wanted & bit != 0 {
                out.push(make(kind, path.clone(), None));
            }
        }
        if raw.mask & FAN_ONDIR != 0 {
            if raw.mask & FAN_CREATE != 0 {
                self.watch_new_dir(&path, true, now, out);
            } else if raw.mask & FAN_DELETE != 0 {
                // Its mark went with its inode.
                self.dir_marks = self.dir_marks.saturating_sub(1);
            }
        }
        false
    }
}

impl Source for FanotifySource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(mut self: Box<Self>, out: EventSender, stop: StopSignal) -> Result<(), SourceError> {
        let own_pid = i32::try_from(std::process::id()).unwrap_or(-1);
        let mut buf = vec![0u8; 64 * 1024];
        let mut events = Vec::new();
        let fd = self.group.as_raw_fd();
        // The last read filled most of the buffer: more is queued, read again at once.
        let mut behind = false;
        while !stop.is_stopped() {
            // Pausing between reads batches wake-ups (the kernel queue holds 16384 events
            // meanwhile), unless the queue is filling: the filesystem mark reports every
            // written file on its filesystem, and a build or an archive extraction writes
            // tens of thousands a second.
            if !behind && stop.sleep(std::time::Duration::from_millis(10)) {
                break;
            }
            match poll_readable(fd, 200) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SourceError::syscall(NAME, "poll", e)),
            }
            let n = match self.group.read(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    out.note_error();
                    tracing::warn!(source = NAME, error = %e, "read failed");
                    continue;
                }
            };
            behind = n > buf.len() / 2;
            let mut raws = Vec::new();
            if let Err(e) = parse::parse_events(&buf[..n.min(buf.len())], &mut raws) {
                out.note_error();
                tracing::warn!(source = NAME, error = %e, "malformed fanotify record");
            }
            for raw in &raws {
                if raw.mask & FAN_Q_OVERFLOW != 0 {
                    out.note_gap(1);
                    tracing::warn!(
                        source = NAME,
                        "fanotify queue overflowed; file events were lost"
                    );
                    continue;
                }
                if raw.fd >= 0 {
                    // Not expected with FID reporting, but never leak a descriptor.
                    // SAFETY: the kernel handed this descriptor to us with the event.
                    drop(unsafe { OwnedFd::from_raw_fd(raw.fd) });
                }
                if self.events_for(raw, own_pid, &mut events) {
                    out.note_error();
                }
                for e in events.drain(..) {
                    if out.send(e) == Sent::Closed {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn group_with_dfid_name_opens_as_root() {
        // This suite runs as root on a kernel with fanotify (see the integration tests); a
        // failure here is an environment problem worth seeing.
        assert!(init_group().is_ok());
    }

    #[test]
    fn missing_paths_make_the_source_unavailable() {
        let r = FanotifySource::open(&FanotifyOptions {
            paths: vec!["/nonexistent/ringfence".into()],
            write_only_paths: Vec::new(),
            exec_open: false,
        });
        assert!(matches!(r, Err(SourceError::Unavailable { .. })));
    }

    pub(super) fn tree(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("ringfence-fanmarks-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for sub in ["a/b", "c"] {
            assert!(std::fs::create_dir_all(d.join(sub)).is_ok());
        }
        // A symbolic link to a directory is not walked into.
        let _ = std::os::unix::fs::symlink("/usr", d.join("link"));
        d
    }

    fn opened(
        paths: Vec<PathBuf>,
        write_only_paths: Vec<PathBuf>,
        exec_open: bool,
    ) -> FanotifySource {
        let r = FanotifySource::open(&FanotifyOptions {
            paths,
            write_only_paths,
            exec_open,
        });
        match r {
            Ok(src) => src,
            Err(e) => panic!("fanotify source did not open: {e}"),
        }
    }

    /// The group's marks from `/proc/self/fdinfo`: (is an inode mark, mask).
    pub(super) fn marks_of(group: &File) -> Vec<(bool, u64)> {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", group.as_raw_fd()))
            .unwrap_or_default();
        info.lines()
            .filter(|l| l.starts_with("fanotify "))
            .filter_map(|l| {
                let mask = l.split(' ').find_map(|f| f.strip_prefix("mask:"))?;
                Some((l.contains(" ino:"), u64::from_str_radix(mask, 16).ok()?))
            })
            .collect()
    }

    /// Read what the group has queued into events, for `wait`.
    fn drain(src: &mut FanotifySource, wait: std::time::Duration) -> Vec<Event> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let until = std::time::Instant::now() + wait;
        while std::time::Instant::now() < until {
            if !poll_readable(src.group.as_raw_fd(), 100).unwrap_or(false) {
                continue;
            }
            let Ok(n) = src.group.read(&mut buf) else {
                continue;
            };
            let mut raws = Vec::new();
            assert!(parse::parse_events(&buf[..n], &mut raws).is_ok());
            for raw in &raws {
                if raw.fd >= 0 {
                    // SAFETY: the kernel handed this descriptor to us with the event.
                    drop(unsafe { OwnedFd::from_raw_fd(raw.fd) });
                }
                // Our own writes count here: no pid is -1.
                src.events_for(raw, -1, &mut out);
            }
        }
        out
    }

    #[test]
    fn file_events_come_from_a_filesystem_mark_and_stay_in_their_trees() {
        let d = tree("fsmark");
        let outside = d.with_extension("outside");
        assert!(std::fs::create_dir_all(&outside).is_ok());
        let mut src = opened(vec![d.join("a")], vec![d.join("c")], true);
        // No directory mark flags its entries as parent-watched: reading a file in a watched
        // tree costs the kernel nothing more than reading one anywhere else.
        let marks = marks_of(&src.group);
        assert!(marks.iter().any(|(inode, _)| *inode), "{marks:?}");
        for (inode, mask) in &marks {
            if *inode {
                assert_eq!(mask & FAN_EVENT_ON_CHILD, 0, "{marks:?}");
                assert_eq!(mask & FILE_EVENTS, 0, "{marks:?}");
            } else {
                assert_eq!(mask & FILE_EVENTS, FILE_EVENTS, "{marks:?}");
            }
        }
        // Written and closed: in the full tree, in the write-only tree, and outside both on the
        // same filesystem. Executed: a copy of `true` in each tree.
        let (inside, write_only, elsewhere) = (
            d.join("a/b/in.txt"),
            d.join("c/w.txt"),
            outside.join("out.txt"),
        );
        for f in [&inside, &write_only, &elsewhere] {
            assert!(std::fs::write(f, "x").is_ok());
        }
        let (run_inside, run_write_only) = (d.join("a/true"), d.join("c/true"));
        for f in [&run_inside, &run_write_only] {
            assert!(std::fs::copy("/bin/true", f).is_ok());
            assert!(
                std::process::Command::new(f)
                    .status()
                    .is_ok_and(|s| s.success())
            );
        }
        let events = drain(&mut src, std::time::Duration::from_millis(600));
        drop(src);
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&outside);
        let seen = |kind, path: &Path| {
            events.iter().any(|e| {
                e.kind == Some(kind) && e.file.as_ref().is_some_and(|f| Path::new(&f.path) == path)
            })
        };
        assert!(seen(EventKind::FileCreate, &inside), "{events:?}");
        assert!(seen(EventKind::FileModify, &inside), "{events:?}");
        assert!(seen(EventKind::FileModify, &write_only), "{events:?}");
        assert!(seen(EventKind::FileExecOpen, &run_inside), "{events:?}");
        assert!(
            !seen(EventKind::FileExecOpen, &run_write_only),
            "{events:?}"
        );
        assert!(
            !events.iter().any(|e| e
                .file
                .as_ref()
                .is_some_and(|f| Path::new(&f.path).starts_with(&outside))),
            "{events:?}"
        );
    }

    /// A flood of written files elsewhere on the filesystem (which the filesystem mark
    /// reports) must not overflow the queue and hide a write in a watched tree. A load test
    /// whose outcome depends on the machine's scheduling: run by hand
    /// (`cargo test -p ringfence-sensor --lib -- --ignored write_flood`).
    #[test]
    #[ignore = "a load test, run by hand"]
    fn a_write_flood_outside_the_trees_hides_no_write_inside() {
        use std::sync::atomic::Ordering;
        let d = tree("flood");
        let outside = d.with_extension("flood-outside");
        assert!(std::fs::create_dir_all(&outside).is_ok());
        let src = opened(vec![d.join("a")], Vec::new(), false);
        let (tx, rx) = crate::source::channel(1 << 16);
        let sender = EventSender::new(NAME, tx);
        let counters = sender.counters();
        let stop = StopSignal::new();
        let stop2 = stop.clone();
        let reader = std::thread::spawn(move || Box::new(src).run(sender, stop2));
        let flood: usize = std::env::var("RINGFENCE_FLOOD_FILES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        // From another process: the source ignores its own.
        let started = std::time::Instant::now();
        let inside = d.join("a/b/after-the-flood.txt");
        let script = format!(
            "i=0; while [ $i -lt {flood} ]; do : > \"$1/f$((i % 64))\"; i=$((i + 1)); done; : > \"$2\""
        );
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", &script, "flood"])
            .arg(&outside)
            .arg(&inside)
            .status();
        assert!(status.is_ok_and(|s| s.success()));
        let flood_ms = started.elapsed().as_millis();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut seen = false;
        while !seen && std::time::Instant::now() < until {
            if let Ok(e) = rx.recv_timeout(std::time::Duration::from_millis(100)) {
                seen = e.kind == Some(EventKind::FileModify)
                    && e.file
                        .as_ref()
                        .is_some_and(|f| Path::new(&f.path) == inside);
            }
        }
        stop.stop();
        let _ = reader.join();
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&outside);
        let gaps = counters.gaps.load(Ordering::Relaxed);
        eprintln!("{flood} files written and closed outside in {flood_ms} ms; gaps {gaps}");
        assert_eq!(gaps, 0, "the queue overflowed");
        assert!(seen, "the write inside the tree was not reported");
    }
}
