//! fanotify permission guard: refuses write-opens of the agent's files to other processes, and
//! execs of files whose SHA-256 is in a deny set, on kernels where BPF LSM is refused.
//!
//! It owns one `FAN_CLASS_CONTENT` group and the thread that answers it. Protected paths get
//! inode marks for `FAN_OPEN_PERM` (a directory with `FAN_EVENT_ON_CHILD`: the files directly in
//! it); the exec scope gets `FAN_OPEN_EXEC_PERM` marks (a filesystem mark, or directory inode
//! marks with `FAN_EVENT_ON_CHILD`). fanotify does not say what an open is *for*, so the group
//! reports thread ids (`FAN_REPORT_TID`) and the guard reads the blocked opener's flags from
//! `/proc/<tid>/syscall` (see `opener`). Execs are decided by hash, through a verdict cache
//! keyed by the file's identity (`exec_hash`); an allowed inode gets an *ignore mark* so the
//! kernel stops asking about it until it is written to.
//!
//! Rules the host's safety rests on: every permission event is answered (`FAN_ALLOW` on any
//! internal error) before its descriptor is closed; the listener thread never execs and never
//! opens a marked path (it reads files through the event descriptor, which the kernel opened
//! with `FMODE_NONOTIFY`, and otherwise opens only /proc), since any such event would wait for
//! the thread that is waiting for it; and the group descriptor is closed when the source stops
//! (or is dropped, or its thread unwinds), which makes the kernel allow everything pending.
//! Logging from the listener goes through `tracing`: the agent's subscriber must not open
//! files in a protected directory from the logging thread (a non-blocking writer is fine).
#![allow(
    unsafe_code,
    reason = "fanotify_init/fanotify_mark/read/write on the group, setrlimit"
)]

mod exec_hash;
mod listener;
mod opener;

use listener::Listener;

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use ringfence_event::{
    Event, EventKind, File as FileRecord, Outcome, Process, SourceKind, Timestamp,
};

use super::parse::{self, RawEvent};
use super::{
    FAN_CLOEXEC, FAN_EVENT_ON_CHILD, FAN_MARK_ADD, FAN_MARK_DONT_FOLLOW, FAN_MARK_FILESYSTEM,
    FAN_MARK_ONLYDIR, mark, mark_raw, poll_readable,
};
use crate::source::{EventSender, Sent, Source, SourceError, StopSignal};
use exec_hash::{FileKey, Verdict, VerdictCache};
use opener::Intent;

const NAME: &str = "fanotify_permission";

const FAN_CLASS_CONTENT: u32 = 0x4;
const FAN_UNLIMITED_QUEUE: u32 = 0x10;
const FAN_REPORT_TID: u32 = 0x100;
const FAN_MARK_IGNORED_MASK: u32 = 0x20;
const FAN_MARK_FLUSH: u32 = 0x80;
pub const FAN_OPEN_PERM: u64 = 0x0001_0000;
pub const FAN_OPEN_EXEC_PERM: u64 = 0x0004_0000;
const FAN_ALLOW: u32 = 0x01;
const FAN_DENY: u32 = 0x02;

/// What to guard.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PermissionOptions {
    /// Files, and directories (the directory and the files directly in it), that only the
    /// agent's processes may open for writing. Paths that do not exist are skipped (and said so).
    pub protected_paths: Vec<PathBuf>,
    /// Deny execs by hash; `None` for no exec guard.
    pub deny_exec: Option<ExecDenyOptions>,
}

/// Exec denial by SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecDenyOptions {
    /// Where execs are checked.
    pub scope: Vec<ExecScope>,
    /// Hashes whose files may not be executed.
    pub sha256: HashSet<[u8; 32]>,
    /// Larger files are allowed without hashing (and counted).
    pub max_hash_bytes: u64,
    /// Verdict cache size; 0 hashes every exec the kernel asks about.
    pub cache_entries: usize,
    /// Ignore marks (allowed inodes the kernel stops asking about) held at most; 0 for none.
    pub ignore_marks: usize,
}

impl Default for ExecDenyOptions {
    /// The whole root filesystem, 64 MiB hashing limit, 4096 cached verdicts and ignore marks.
    fn default() -> ExecDenyOptions {
        ExecDenyOptions {
            scope: vec![ExecScope::Filesystem(PathBuf::from("/"))],
            sha256: HashSet::new(),
            max_hash_bytes: 64 << 20,
            cache_entries: 4096,
            ignore_marks: 4096,
        }
    }
}

/// Where execs are checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExecScope {
    /// Every exec on the filesystem holding this path (`FAN_MARK_FILESYSTEM`).
    Filesystem(PathBuf),
    /// Execs of the files directly in this directory.
    Directory(PathBuf),
}

/// The guard's counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermissionCounters {
    /// Permission events read from the kernel.
    pub seen: u64,
    pub allowed: u64,
    pub denied: u64,
    /// Exec verdicts taken from the cache.
    pub cache_hits: u64,
    /// Files hashed.
    pub hashed: u64,
    /// Inodes given an ignore mark (cumulative; again after a flush).
    pub ignore_marks: u64,
    /// Execs allowed unhashed because the file was larger than `max_hash_bytes`.
    pub too_large: u64,
    /// Internal errors (each answered `FAN_ALLOW`), failed responses, unreadable records.
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    seen: AtomicU64,
    allowed: AtomicU64,
    denied: AtomicU64,
    cache_hits: AtomicU64,
    hashed: AtomicU64,
    ignore_marks: AtomicU64,
    too_large: AtomicU64,
    errors: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The group descriptor and the marks that can be flushed, behind one lock: placing an ignore
/// mark and replacing the deny set exclude each other.
#[derive(Debug)]
struct Marks {
    /// `None` once the source stopped (the descriptor is closed).
    group: Option<OwnedFd>,
    /// (dev, ino) of inodes holding an ignore mark.
    ignored: HashSet<(u64, u64)>,
}

#[derive(Debug, Clone, Copy)]
struct ExecLimits {
    max_hash_bytes: u64,
    cache_entries: usize,
    ignore_marks: usize,
}

#[derive(Debug)]
struct Shared {
    marks: Mutex<Marks>,
    /// Bumped (under `marks`) after every deny-set change, after the new set is stored.
    generation: AtomicU64,
    deny: RwLock<Arc<HashSet<[u8; 32]>>>,
    agent_pids: RwLock<Arc<[u32]>>,
    armed: AtomicBool,
    counters: Counters,
    /// Canonical protected paths: (path, is a directory).
    protected: Vec<(PathBuf, bool)>,
    /// Canonical exec directory scopes (inode marks, so flushed with the ignore marks).
    exec_dirs: Vec<PathBuf>,
    exec: Option<ExecLimits>,
}

impl Shared {
    fn lock_marks(&self) -> MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deny_set(&self) -> Arc<HashSet<[u8; 32]>> {
        Arc::clone(&self.deny.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn agent_pids(&self) -> Arc<[u32]> {
        Arc::clone(
            &self
                .agent_pids
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Place every inode mark the options ask for (at start, and again after a flush).
    fn place_inode_marks(&self, group: RawFd) -> io::Result<()> {
        let mut first_err = None;
        let mut note = |r: io::Result<()>, path: &Path| {
            if let Err(e) = r {
                tracing::warn!(source = NAME, path = %path.display(), error = %e, "fanotify_mark failed");
                first_err.get_or_insert_with(|| with_path(e, path));
            }
        };
        for (path, is_dir) in &self.protected {
            let (flags, mask) = if *is_dir {
                (FAN_MARK_ONLYDIR, FAN_OPEN_PERM | FAN_EVENT_ON_CHILD)
            } else {
                (0, FAN_OPEN_PERM)
            };
            note(mark(group, FAN_MARK_DONT_FOLLOW | flags, mask, path), path);
        }
        for dir in &self.exec_dirs {
            let r = mark(
                group,
                FAN_MARK_DONT_FOLLOW | FAN_MARK_ONLYDIR,
                FAN_OPEN_EXEC_PERM | FAN_EVENT_ON_CHILD,
                dir,
            );
            note(r, dir);
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// `fanotify_mark(group, FAN_MARK_FLUSH | kind, ...)`: removes every mark of that kind (inode
/// marks when `kind` is 0, filesystem marks with `FAN_MARK_FILESYSTEM`).
fn flush(group: RawFd, kind: u32) -> io::Result<()> {
    // The path must name an existing object though it is not used (fanotify_mark(2)).
    mark_raw(group, FAN_MARK_FLUSH | kind, 0, libc::AT_FDCWD, Some(c"/"))
}

/// Updates the running guard. Cheap to clone; usable from any thread.
#[derive(Debug, Clone)]
pub struct PermissionHandle {
    shared: Arc<Shared>,
}

impl PermissionHandle {
    /// The agent's processes (supervisor and worker tgids): their opens and execs are always
    /// allowed. The guard's own process is always included.
    pub fn set_agent_pids(&self, pids: &[u32]) {
        let new: Arc<[u32]> = pids.into();
        *self
            .shared
            .agent_pids
            .write()
            .unwrap_or_else(PoisonError::into_inner) = new;
    }

    /// Replace the exec deny set. Takes effect for every exec that starts after this returns:
    /// ignore marks are flushed (with every inode mark of the group, so protected paths and
    /// directory scopes are marked again right after, by path; between the two, a few system
    /// calls long, protected files are unguarded) and the verdict cache is dropped. An error
    /// names a path that could not be marked again (the others were).
    pub fn set_deny_sha256(&self, sha256: HashSet<[u8; 32]>) -> io::Result<()> {
        let mut marks = self.shared.lock_marks();
        *self
            .shared
            .deny
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(sha256);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        if marks.ignored.is_empty() {
            return Ok(());
        }
        marks.ignored.clear();
        let Some(group) = marks.group.as_ref().map(AsRawFd::as_raw_fd) else {
            return Ok(());
        };
        if !self.shared.armed.load(Ordering::SeqCst) {
            return Ok(());
        }
        flush(group, 0)?;
        self.shared.place_inode_marks(group)
    }

    /// Allow everything from now on (an authorised uninstall): every mark is removed, so the
    /// kernel stops asking, and anything already queued is allowed.
    pub fn disarm(&self) {
        self.shared.armed.store(false, Ordering::SeqCst);
        let mut marks = self.shared.lock_marks();
        marks.ignored.clear();
        if let Some(group) = marks.group.as_ref().map(AsRawFd::as_raw_fd) {
            for kind in [0, FAN_MARK_FILESYSTEM] {
                if let Err(e) = flush(group, kind) {
                    tracing::warn!(source = NAME, error = %e, "flushing marks on disarm failed");
                }
            }
        }
    }

    /// Whether the guard still refuses anything.
    pub fn is_armed(&self) -> bool {
        self.shared.armed.load(Ordering::SeqCst)
    }

    pub fn counters(&self) -> PermissionCounters {
        let c = &self.shared.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PermissionCounters {
            seen: l(&c.seen),
            allowed: l(&c.allowed),
            denied: l(&c.denied),
            cache_hits: l(&c.cache_hits),
            hashed: l(&c.hashed),
            ignore_marks: l(&c.ignore_marks),
            too_large: l(&c.too_large),
            errors: l(&c.errors),
        }
    }
}

/// The guard, as a [`Source`]: its events are the denials. The listener thread answering the
/// kernel starts with the group (an open of a protected file by any thread would otherwise wait
/// for a listener that is not there yet); `run` only forwards its denials. Dropping the source
/// (run or not) stops the listener, which closes the group.
#[derive(Debug)]
pub struct PermissionSource {
    shared: Arc<Shared>,
    denials: crossbeam_channel::Receiver<Event>,
    listener: Option<std::thread::JoinHandle<Result<(), SourceError>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for PermissionSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.listener.take() {
            let _ = h.join();
        }
        // Closing the group makes the kernel allow every pending and future event.
        drop(self.shared.lock_marks().group.take());
    }
}

/// Denials buffered between the listener and the agent; beyond it they are counted, not kept.
const DENIAL_QUEUE: usize = 4096;

/// Create the group and place every mark, so errors are known before the agent starts.
///
/// Needs `CAP_SYS_ADMIN`. Fails if the kernel refuses the group, if an exec scope cannot be
/// marked, or if there is nothing to guard.
pub fn permission_source(
    options: PermissionOptions,
) -> io::Result<(PermissionSource, PermissionHandle)> {
    raise_fd_limit();
    // FAN_UNLIMITED_QUEUE: on overflow the kernel drops a permission event *allowed*, so a
    // bounded queue could be overrun by many threads opening at once to slip a write or an exec
    // through. A queued permission event is a thread sleeping until we answer, so the queue is
    // bounded by the threads on the host anyway (each costs a kernel stack, far more than its
    // event). FAN_UNLIMITED_MARKS is not used: the default per-user mark limit
    // (fs.fanotify.max_user_marks, at least 8192) holds `ignore_marks` plus the scope.
    let flags = FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_REPORT_TID | FAN_UNLIMITED_QUEUE;
    let event_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as libc::c_uint;
    // SAFETY: plain syscall with integer arguments; the result is checked before use.
    let fd = unsafe { libc::fanotify_init(flags, event_flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    let group = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = group.as_raw_fd();

    let mut protected = Vec::new();
    for path in &options.protected_paths {
        match path
            .canonicalize()
            .and_then(|c| Ok((c.metadata()?.is_dir(), c)))
        {
            Ok((is_dir, canon)) => protected.push((canon, is_dir)),
            Err(e) => {
                tracing::warn!(source = NAME, path = %path.display(), error = %e, "protected path skipped");
            }
        }
    }
    let mut exec_dirs = Vec::new();
    let mut exec = None;
    let mut deny = HashSet::new();
    if let Some(d) = options.deny_exec {
        for scope in &d.scope {
            match scope {
                ExecScope::Filesystem(p) => {
                    mark(raw, FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM, p)
                        .map_err(|e| with_path(e, p))?;
                }
                ExecScope::Directory(p) => {
                    exec_dirs.push(p.canonicalize().map_err(|e| with_path(e, p))?);
                }
            }
        }
        exec = Some(ExecLimits {
            max_hash_bytes: d.max_hash_bytes,
            cache_entries: d.cache_entries,
            ignore_marks: d.ignore_marks,
        });
        deny = d.sha256;
    }
    if protected.is_empty() && exec.is_none() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no protected path exists and no exec guard was asked for",
        ));
    }
    let shared = Arc::new(Shared {
        marks: Mutex::new(Marks {
            group: None,
            ignored: HashSet::new(),
        }),
        generation: AtomicU64::new(0),
        deny: RwLock::new(Arc::new(deny)),
        agent_pids: RwLock::new(Arc::from(Vec::new())),
        armed: AtomicBool::new(true),
        counters: Counters::default(),
        protected,
        exec_dirs,
        exec,
    });
    shared.place_inode_marks(raw)?;
    shared.lock_marks().group = Some(group);
    tracing::info!(
        source = NAME,
        protected = shared.protected.len(),
        exec_directories = shared.exec_dirs.len(),
        exec_guard = shared.exec.is_some(),
        "permission guard armed"
    );
    let listener = Listener {
        shared: Arc::clone(&shared),
        group: raw,
        own_pid: i32::try_from(std::process::id()).unwrap_or(-1),
        cache: VerdictCache::new(shared.exec.map_or(0, |e| e.cache_entries)),
        generation: shared.generation.load(Ordering::SeqCst),
        buf: vec![0u8; 64 * 1024],
    };
    let (tx, denials) = crossbeam_channel::bounded(DENIAL_QUEUE);
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("rf-permission".into())
        .spawn(move || listener.listen(&tx, &thread_stop));
    let thread = match thread {
        Ok(t) => t,
        Err(e) => {
            drop(shared.lock_marks().group.take());
            return Err(e);
        }
    };
    Ok((
        PermissionSource {
            shared: Arc::clone(&shared),
            denials,
            listener: Some(thread),
            stop,
        },
        PermissionHandle { shared },
    ))
}

/// If creating an event's descriptor fails (EMFILE), the kernel answers that permission event
/// FAN_DENY itself: a host-wide refusal of execs. Lift our soft descriptor limit to the hard one.
fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 && r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: `r` is a valid rlimit; failure leaves the limit as it was.
        let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    }
}

impl Source for PermissionSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(mut self: Box<Self>, out: EventSender, stop: StopSignal) -> Result<(), SourceError> {
        use crossbeam_channel::RecvTimeoutError;
        while !stop.is_stopped() {
            match self
                .denials
                .recv_timeout(std::time::Duration::from_millis(200))
            {
                Ok(e) => {
                    if out.send(e) == Sent::Closed {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // The listener ended on its own: say why (dropping `self` closes the group).
                    out.note_error();
                    return match self.listener.take().map(std::thread::JoinHandle::join) {
                        Some(Ok(result)) => result,
                        _ => Err(SourceError::Other {
                            source: NAME,
                            message: "the listener thread panicked; guard stopped".into(),
                        }),
                    };
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::channel;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ringfence-perm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        assert!(std::fs::create_dir_all(&d).is_ok());
        d
    }

    /// The guard, or `None` (with the reason printed) where the kernel refuses a
    /// `FAN_CLASS_CONTENT` group.
    fn open_or_skip(options: PermissionOptions) -> Option<(PermissionSource, PermissionHandle)> {
        match permission_source(options) {
            Ok(s) => Some(s),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL)) => {
                println!("skipped: fanotify_init(FAN_CLASS_CONTENT) refused: {e}");
                None
            }
            Err(e) => panic!("permission_source: {e}"),
        }
    }

    /// A guard running on its own thread, stopped on drop.
    struct Running {
        handle: PermissionHandle,
        stop: StopSignal,
        thread: Option<std::thread::JoinHandle<Result<(), SourceError>>>,
        rx: crossbeam_channel::Receiver<Box<Event>>,
    }

    impl Running {
        fn start(options: PermissionOptions) -> Option<Running> {
            let (src, handle) = open_or_skip(options)?;
            let (tx, rx) = channel(64);
            let out = EventSender::new(NAME, tx);
            let stop = StopSignal::new();
            let s2 = stop.clone();
            let thread = std::thread::spawn(move || Box::new(src).run(out, s2));
            Some(Running {
                handle,
                stop,
                thread: Some(thread),
                rx,
            })
        }

        /// The denials sent so far (waiting briefly for `want` of them).
        fn events(&self, want: usize) -> Vec<Event> {
            let mut got = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(2);
            while got.len() < want && Instant::now() < deadline {
                if let Ok(e) = self.rx.recv_timeout(Duration::from_millis(50)) {
                    got.push(*e);
                }
            }
            got.extend(self.rx.try_iter().map(|e| *e));
            got
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.stop();
            if let Some(t) = self.thread.take() {
                let r = t.join();
                assert!(matches!(r, Ok(Ok(()))), "listener ended badly");
            }
        }
    }

    fn pid_of_child(cmd: &mut Command) -> (u32, bool) {
        let Ok(mut child) = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        else {
            panic!("spawn {cmd:?}");
        };
        let pid = child.id();
        (pid, child.wait().is_ok_and(|s| s.success()))
    }

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    /// This thread's id, from /proc/thread-self (`<pid>/task/<tid>`).
    fn gettid() -> i32 {
        std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name()?.to_str()?.parse().ok())
            .unwrap_or(-1)
    }

    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }

    fn openat2(path: &Path, flags: libc::c_int) -> bool {
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
            return false;
        };
        let how = OpenHow {
            flags: flags as u64,
            mode: 0,
            resolve: 0,
        };
        // SAFETY: `c` and `how` are valid for the call; the size passed is `how`'s.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                libc::AT_FDCWD,
                c.as_ptr(),
                &how as *const OpenHow,
                size_of::<OpenHow>(),
            )
        };
        if fd < 0 {
            return false;
        }
        // SAFETY: a descriptor openat2 just returned to us.
        drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        true
    }

    /// The approach the write guard rests on, checked against this kernel: with FAN_REPORT_TID
    /// the event names the opening *thread*, and its `/proc/<tid>/syscall` shows the open call
    /// and flags (openat2's through /proc/<tid>/mem) while it waits for our answer.
    #[test]
    fn blocked_openers_show_their_syscall() {
        let dir = tmp("syscall");
        let f = dir.join("f");
        assert!(std::fs::write(&f, b"x").is_ok());
        // A bare group of our own (the guard's listener would answer before we could look).
        let flags = FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_REPORT_TID;
        // SAFETY: plain syscall with integer arguments; the result is checked.
        let fd = unsafe { libc::fanotify_init(flags, libc::O_RDONLY as libc::c_uint) };
        if fd < 0 {
            eprintln!("skipped: no fanotify permission group here");
            return;
        }
        // SAFETY: the kernel just returned this descriptor to us.
        let group = unsafe { OwnedFd::from_raw_fd(fd) };
        assert!(mark(group.as_raw_fd(), 0, FAN_OPEN_PERM, &f).is_ok());
        type Opener = fn(&Path) -> bool;
        let cases: [(Opener, Intent, &str); 5] = [
            (
                |p| std::fs::OpenOptions::new().write(true).open(p).is_ok(),
                Intent::Write,
                "openat",
            ),
            (|p| File::open(p).is_ok(), Intent::Read, "openat"),
            (
                |p| openat2(p, libc::O_RDWR | libc::O_APPEND),
                Intent::Write,
                "openat2",
            ),
            (|p| openat2(p, libc::O_RDONLY), Intent::Read, "openat2"),
            (
                |p| {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .truncate(true)
                        .open(p)
                        .is_ok()
                },
                Intent::Write,
                "openat",
            ),
        ];
        let pid = i32::try_from(std::process::id()).unwrap_or(0);
        for (open, want, call) in cases {
            let (tx, rx) = std::sync::mpsc::channel();
            let path = f.clone();
            let t = std::thread::spawn(move || {
                let _ = tx.send(gettid());
                open(&path)
            });
            let tid = rx.recv().unwrap_or(-1);
            assert!(
                matches!(poll_readable(group.as_raw_fd(), 5000), Ok(true)),
                "no event for {call}"
            );
            let mut buf = [0u8; 4096];
            // SAFETY: `buf` is valid and writable for its length.
            let n = unsafe { libc::read(group.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            let mut raws = Vec::new();
            let parsed = parse::parse_events(&buf[..usize::try_from(n).unwrap_or(0)], &mut raws);
            assert!(parsed.is_ok() && raws.len() == 1, "one event expected");
            let raw = &raws[0];
            let (intent, nr) = opener::intent_of_thread(raw.pid);
            // Answer before asserting, so a failure does not leave the thread waiting.
            let mut msg = [0u8; 8];
            msg[..4].copy_from_slice(&raw.fd.to_ne_bytes());
            msg[4..].copy_from_slice(&FAN_ALLOW.to_ne_bytes());
            // SAFETY: `msg` is 8 valid bytes.
            let w = unsafe { libc::write(group.as_raw_fd(), msg.as_ptr().cast(), msg.len()) };
            // SAFETY: the event's descriptor, ours to close.
            drop(unsafe { OwnedFd::from_raw_fd(raw.fd) });
            assert_eq!(w, 8);
            assert!(
                matches!(t.join(), Ok(true)),
                "{call} failed after FAN_ALLOW"
            );
            assert_eq!(raw.mask, FAN_OPEN_PERM);
            assert_eq!(raw.pid, tid, "FAN_REPORT_TID reports the thread");
            assert_ne!(raw.pid, pid);
            assert_eq!(intent, want, "{call}");
            assert_eq!(nr.and_then(opener::syscall_name), Some(call));
        }
        drop(group);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every answer wakes every opener waiting on the group, and an awake opener's
    /// `/proc/<tid>/syscall` says `running`: concurrent read-opens by other processes used to be
    /// refused now and then as "opener unreadable". None may be.
    #[test]
    fn concurrent_reads_of_protected_files_are_never_refused() {
        let dir = tmp("concurrent");
        let file = dir.join("agent.toml");
        assert!(std::fs::write(&file, "original\n").is_ok());
        let Some(g) = Running::start(PermissionOptions {
            protected_paths: vec![file.clone()],
            deny_exec: None,
        }) else {
            return;
        };
        let script = format!(
            "for i in $(seq 300); do head -c 1 '{}' > /dev/null || echo refused; done",
            file.display()
        );
        let readers: Vec<_> = (0..4)
            .filter_map(|_| {
                Command::new("sh")
                    .args(["-c", &script])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .ok()
            })
            .collect();
        assert_eq!(readers.len(), 4);
        let refused: usize = readers
            .into_iter()
            .filter_map(|r| r.wait_with_output().ok())
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .sum();
        assert_eq!(refused, 0, "read-opens refused");
        assert!(g.events(0).is_empty());
        drop(g);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn write_opens_of_protected_files_are_denied_to_others() {
        let dir = tmp("protect");
        let file = dir.join("agent.toml");
        let inner = dir.join("store");
        assert!(std::fs::create_dir(&inner).is_ok());
        let in_dir = inner.join("state.db");
        assert!(std::fs::write(&file, "original\n").is_ok());
        assert!(std::fs::write(&in_dir, "state\n").is_ok());
        let Some(g) = Running::start(PermissionOptions {
            protected_paths: vec![file.clone(), inner.clone()],
            deny_exec: None,
        }) else {
            return;
        };
        let f = file.display().to_string();
        let (p1, ok1) = pid_of_child(&mut sh(&format!("echo x > '{f}'")));
        let (p2, ok2) = pid_of_child(&mut sh(&format!("echo x >> '{f}'")));
        let (p3, ok3) = pid_of_child(Command::new("truncate").args(["-s", "0", &f]));
        let (p4, ok4) = pid_of_child(&mut sh(&format!("echo x > '{}'", in_dir.display())));
        let cat = Command::new("cat").arg(&file).output();
        let cat_in = Command::new("cat").arg(&in_dir).output();
        assert_eq!((ok1, ok2, ok3, ok4), (false, false, false, false));
        assert!(
            cat.as_ref()
                .is_ok_and(|o| o.status.success() && o.stdout == b"original\n")
        );
        assert!(cat_in.as_ref().is_ok_and(|o| o.stdout == b"state\n"));
        assert_eq!(
            std::fs::read_to_string(&file).ok().as_deref(),
            Some("original\n")
        );
        assert_eq!(
            std::fs::read_to_string(&in_dir).ok().as_deref(),
            Some("state\n")
        );

        let events = g.events(4);
        let mut pids: Vec<u32> = events
            .iter()
            .map(|e| {
                assert_eq!(e.kind, Some(EventKind::FileModify));
                assert_eq!(e.outcome, Some(Outcome::Failure));
                e.process.as_ref().map_or(0, |p| p.pid)
            })
            .collect();
        pids.sort_unstable();
        let mut want = vec![p1, p2, p3, p4];
        want.sort_unstable();
        assert_eq!(pids, want, "one denial per writer, with its pid");
        let paths: Vec<&str> = events
            .iter()
            .filter_map(|e| e.file.as_ref().map(|f| f.path.as_str()))
            .collect();
        assert_eq!(paths.iter().filter(|p| **p == f).count(), 3);
        assert!(paths.contains(&in_dir.to_string_lossy().as_ref()));
        assert!(events.iter().all(|e| e.syscall.is_some()));

        // The agent (this process) still writes its own files.
        assert!(std::fs::write(&file, "mine\n").is_ok());
        assert_eq!(
            std::fs::read_to_string(&file).ok().as_deref(),
            Some("mine\n")
        );
        // Another agent pid: a child the handle names is allowed.
        let mut c = sh("sleep 0.3; echo y > \"$0\"");
        let Ok(mut child) = c.arg(&f).spawn() else {
            panic!("spawn sh");
        };
        g.handle.set_agent_pids(&[child.id()]);
        assert!(child.wait().is_ok_and(|s| s.success()));
        assert_eq!(std::fs::read_to_string(&file).ok().as_deref(), Some("y\n"));

        let c = g.handle.counters();
        assert_eq!(c.denied, 4);
        assert!(c.seen >= 8 && c.allowed >= 4, "{c:?}");
        assert_eq!((c.hashed, c.ignore_marks, c.errors), (0, 0, 0));
        drop(g);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn sha256(bytes: &[u8]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::digest(bytes).into()
    }

    /// Run `path`; `Err` with the spawn error (PermissionDenied when the exec was refused).
    fn run(path: &Path) -> io::Result<bool> {
        for _ in 0..20 {
            match Command::new(path).status() {
                // A concurrently spawned child of another test may briefly hold a write
                // descriptor to a file just written (ETXTBSY).
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => return r.map(|s| s.success()),
            }
        }
        Err(io::Error::from_raw_os_error(libc::ETXTBSY))
    }

    fn denied(r: io::Result<bool>) -> bool {
        matches!(r, Err(e) if e.kind() == io::ErrorKind::PermissionDenied)
    }

    #[test]
    fn execs_are_denied_by_hash() {
        let dir = tmp("exec");
        let (a, b) = (dir.join("a"), dir.join("b"));
        let Ok(bin) = std::fs::read("/bin/true") else {
            panic!("/bin/true unreadable");
        };
        assert!(std::fs::copy("/bin/true", &a).is_ok() && std::fs::copy("/bin/true", &b).is_ok());
        let mut other = bin.clone();
        other.push(0);
        assert!(std::fs::write(&b, &other).is_ok());
        let hash_a = sha256(&bin);
        let Some(g) = Running::start(PermissionOptions {
            protected_paths: Vec::new(),
            deny_exec: Some(ExecDenyOptions {
                scope: vec![ExecScope::Directory(dir.clone())],
                sha256: HashSet::from([hash_a]),
                max_hash_bytes: 16 << 20,
                cache_entries: 64,
                ignore_marks: 64,
            }),
        }) else {
            return;
        };
        let h = &g.handle;
        assert!(denied(run(&a)), "a is denied");
        assert!(matches!(run(&b), Ok(true)), "b runs");
        let c1 = h.counters();
        assert_eq!(
            (c1.hashed, c1.denied, c1.ignore_marks, c1.cache_hits),
            (2, 1, 1, 0)
        );
        assert!(matches!(run(&b), Ok(true)));
        assert_eq!(
            h.counters().seen,
            c1.seen,
            "b's ignore mark: the kernel did not ask"
        );
        assert!(denied(run(&a)));
        let c2 = h.counters();
        assert_eq!(
            (c2.hashed, c2.cache_hits, c2.denied),
            (2, 1, 2),
            "a's verdict was cached"
        );

        assert!(h.set_deny_sha256(HashSet::new()).is_ok());
        assert!(
            matches!(run(&a), Ok(true)),
            "a runs once the deny set is empty"
        );
        let c3 = h.counters();
        assert_eq!(
            (c3.hashed, c3.ignore_marks),
            (3, 2),
            "cache dropped with the set"
        );

        // Denied again: the flush removed a's ignore mark and the directory mark came back.
        assert!(h.set_deny_sha256(HashSet::from([hash_a])).is_ok());
        assert!(denied(run(&a)), "a is denied again after the set changed");
        assert!(matches!(run(&b), Ok(true)));
        let c4 = h.counters();
        assert_eq!((c4.hashed, c4.ignore_marks), (5, 3));

        // An allowed, ignore-marked file rewritten with denied content is checked again.
        assert!(std::fs::write(&b, &bin).is_ok());
        assert!(denied(run(&b)), "rewritten b is denied");
        assert_eq!(h.counters().hashed, 6);

        let events = g.events(4);
        assert_eq!(events.len(), 4, "one event per denial");
        let hex_a = hex::encode(hash_a);
        for e in &events {
            assert_eq!(e.kind, Some(EventKind::FileExecOpen));
            assert_eq!(e.outcome, Some(Outcome::Failure));
            let f = e.file.as_ref();
            assert_eq!(f.and_then(|f| f.sha256.as_deref()), Some(hex_a.as_str()));
            assert!(f.is_some_and(|f| f.path.ends_with("/a") || f.path.ends_with("/b")));
            assert!(
                e.process
                    .as_ref()
                    .is_some_and(|p| p.pid != std::process::id())
            );
        }
        assert_eq!(h.counters().errors, 0);
        drop(g);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn too_large_files_are_allowed_and_counted() {
        let dir = tmp("large");
        let a = dir.join("a");
        assert!(std::fs::copy("/bin/true", &a).is_ok());
        let hash = std::fs::read(&a).map(|b| sha256(&b)).unwrap_or([0; 32]);
        let Some(g) = Running::start(PermissionOptions {
            protected_paths: Vec::new(),
            deny_exec: Some(ExecDenyOptions {
                scope: vec![ExecScope::Directory(dir.clone())],
                sha256: HashSet::from([hash]),
                max_hash_bytes: 1024,
                cache_entries: 0,
                ignore_marks: 0,
            }),
        }) else {
            return;
        };
        assert!(matches!(run(&a), Ok(true)));
        assert!(matches!(run(&a), Ok(true)));
        let c = g.handle.counters();
        assert_eq!(
            (c.too_large, c.hashed, c.cache_hits, c.ignore_marks),
            (2, 0, 0, 0)
        );
        drop(g);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn disarm_allows_everything() {
        let dir = tmp("disarm");
        let (file, a) = (dir.join("config"), dir.join("a"));
        assert!(std::fs::write(&file, "original\n").is_ok());
        assert!(std::fs::copy("/bin/true", &a).is_ok());
        let hash = std::fs::read(&a).map(|b| sha256(&b)).unwrap_or([0; 32]);
        let Some(g) = Running::start(PermissionOptions {
            protected_paths: vec![file.clone()],
            deny_exec: Some(ExecDenyOptions {
                scope: vec![ExecScope::Directory(dir.clone())],
                sha256: HashSet::from([hash]),
                ..ExecDenyOptions::default()
            }),
        }) else {
            return;
        };
        let f = file.display().to_string();
        assert!(!pid_of_child(&mut sh(&format!("echo x > '{f}'"))).1);
        assert!(denied(run(&a)));
        assert!(g.handle.is_armed());
        g.handle.disarm();
        assert!(!g.handle.is_armed());
        assert!(pid_of_child(&mut sh(&format!("echo x > '{f}'"))).1);
        assert!(matches!(run(&a), Ok(true)));
        assert_eq!(std::fs::read_to_string(&file).ok().as_deref(), Some("x\n"));
        assert_eq!(g.handle.counters().denied, 2);
        drop(g);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn nothing_to_guard_is_an_error() {
        let r = permission_source(PermissionOptions {
            protected_paths: vec!["/nonexistent/ringfence".into()],
            deny_exec: None,
        });
        assert!(r.is_err());
    }

    #[test]
    fn the_listener_answers_before_run_and_dropping_lets_everything_through() {
        // Before `run`: a writer is answered (refused), not left waiting for a listener; the
        // agent's own threads open their files before the pipeline runs.
        let dir = tmp("dropped");
        let file = dir.join("f");
        assert!(std::fs::write(&file, "x").is_ok());
        let Some((src, _h)) = open_or_skip(PermissionOptions {
            protected_paths: vec![file.clone()],
            deny_exec: None,
        }) else {
            return;
        };
        let write = |f: &Path| {
            Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("echo y > '{}'", f.display()))
                .status()
                .is_ok_and(|s| s.success())
        };
        assert!(!write(&file), "refused before run");
        assert!(
            std::fs::write(&file, "ours").is_ok(),
            "our own write is allowed"
        );
        // Dropped without running: the group is closed and nothing is guarded any more.
        drop(src);
        assert!(write(&file), "let through once the guard is gone");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
