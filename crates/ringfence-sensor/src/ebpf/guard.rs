//! Self-protection with BPF LSM: loads `bpf/guard.bpf.c`, tells it who the agent is (its tgids,
//! the launcher that may end it), what it owns (files and directories by inode, and
//! its BPF programs, maps and links by id), and reads back who was refused.
//!
//! The programs refuse signals, ptrace attach, write-opens, truncation, unlinks, renames and
//! creates, and descriptors to the agent's BPF objects, to every process that is not the agent;
//! see the object's header for the hooks. Loading fails cleanly where the kernel refuses BPF LSM
//! (`lsm` missing from the active LSMs, or BPF trampolines blocked): the caller then falls back
//! to fanotify permission events and tamper detection. [`Guard::disarm`] switches every check
//! off at once, for an authorised uninstall; dropping the guard detaches it.

use std::collections::HashMap as StdHashMap;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use aya::Ebpf;
use aya::maps::{Array, MapData, RingBuf};
use aya::programs::Lsm;
use ringfence_event::{
    Detail, Event, EventKind, File as FileRecord, Outcome, Process, SourceKind, TargetProcess,
};

use super::record::{Reader, c_string};
use super::{EbpfError, fill_set, load_object, map_err, release_loader_memory};
use crate::source::{EventSender, Sent, Source, SourceError, StopSignal};
use crate::sys::Clocks;

/// The guard object, built from `bpf/guard.bpf.c`.
pub static GUARD_OBJECT: &[u8] = aya::include_bytes_aligned!("../../../../bpf/obj/guard.bpf.o");

/// Every program of the object and its LSM hook.
const PROGRAMS: &[(&str, &str)] = &[
    ("guard_task_kill", "task_kill"),
    ("guard_ptrace", "ptrace_access_check"),
    ("guard_file_open", "file_open"),
    ("guard_path_truncate", "path_truncate"),
    ("guard_inode_unlink", "inode_unlink"),
    ("guard_inode_rmdir", "inode_rmdir"),
    ("guard_inode_rename", "inode_rename"),
    ("guard_inode_create", "inode_create"),
    ("guard_inode_link", "inode_link"),
    ("guard_inode_symlink", "inode_symlink"),
    ("guard_inode_mknod", "inode_mknod"),
    ("guard_bpf", "bpf"),
];

/// At most this many files are protected under one directory (the object's map holds 4096).
pub const MAX_PROTECTED_INODES: usize = 4000;

/// What a refusal was about (`enum guard_hook` in the object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuardHook {
    Signal,
    Ptrace,
    WriteOpen,
    Truncate,
    Unlink,
    Rename,
    Create,
    Bpf,
}

impl GuardHook {
    pub const ALL: [GuardHook; 8] = [
        GuardHook::Signal,
        GuardHook::Ptrace,
        GuardHook::WriteOpen,
        GuardHook::Truncate,
        GuardHook::Unlink,
        GuardHook::Rename,
        GuardHook::Create,
        GuardHook::Bpf,
    ];

    fn from_index(i: u32) -> Option<GuardHook> {
        GuardHook::ALL.get(usize::try_from(i).ok()?).copied()
    }

    /// `signal`, `ptrace`, `write-open`, ...
    pub fn name(self) -> &'static str {
        match self {
            GuardHook::Signal => "signal",
            GuardHook::Ptrace => "ptrace",
            GuardHook::WriteOpen => "write-open",
            GuardHook::Truncate => "truncate",
            GuardHook::Unlink => "unlink",
            GuardHook::Rename => "rename",
            GuardHook::Create => "create",
            GuardHook::Bpf => "bpf",
        }
    }
}

/// Kinds of BPF object (their id spaces are separate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BpfObjectKind {
    Program = 1,
    Map = 2,
    Link = 3,
}

/// One BPF object by kind and kernel id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BpfObject {
    pub kind: BpfObjectKind,
    pub id: u32,
}

/// The programs of `ebpf`, the maps they use and the links attaching them, by kernel id.
pub fn objects_of(ebpf: &Ebpf) -> Vec<BpfObject> {
    let mut out = Vec::new();
    let mut programs = std::collections::HashSet::new();
    for (_, program) in ebpf.programs() {
        let Ok(info) = program.info() else { continue };
        programs.insert(info.id());
        out.push(BpfObject {
            kind: BpfObjectKind::Program,
            id: info.id(),
        });
        for map in info.map_ids().ok().flatten().unwrap_or_default() {
            out.push(BpfObject {
                kind: BpfObjectKind::Map,
                id: map,
            });
        }
    }
    for link in aya::programs::loaded_links().flatten() {
        if programs.contains(&link.program_id()) {
            out.push(BpfObject {
                kind: BpfObjectKind::Link,
                id: link.id(),
            });
        }
    }
    out.sort_by_key(|o| (o.kind as u32, o.id));
    out.dedup();
    out
}

/// The process allowed to end the agent (any signal but a stop): its service manager or
/// `ringfence up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launcher {
    pub tgid: u32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22), so a reused pid is
    /// not trusted.
    pub start_ticks: u64,
}

impl Launcher {
    /// The parent of `pid`, read from /proc.
    pub fn parent_of(pid: u32) -> Option<Launcher> {
        let (tgid, start_ticks) = crate::proc_info::parent_with_start(pid)?;
        Some(Launcher { tgid, start_ticks })
    }
}

/// One refusal read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub hook: GuardHook,
    pub actor_tgid: u32,
    pub actor_tid: u32,
    pub comm: String,
    /// `CLOCK_BOOTTIME` in ns.
    pub boot_ns: u64,
    /// The target tgid (signal, ptrace), inode number (files) or object id (bpf).
    pub detail: u64,
    /// The signal number, the bpf command, or the inode's device (kernel encoding).
    pub arg: i32,
    /// For file refusals: the protected path with that inode, when known.
    pub path: Option<PathBuf>,
}

impl Denial {
    /// The refused attempt as an event of the kind it would have been (`signal`, `ptrace`,
    /// file `modify`/`delete`/`rename`/`create`, `bpf`), with `event.outcome: failure`, the
    /// actor as the subject process and the agent's process as the target. Enrichment adds the
    /// actor's executable and ancestry; tamper detection turns it into a finding.
    pub fn to_event(&self, clocks: &Clocks) -> Event {
        let kind = match self.hook {
            GuardHook::Signal => EventKind::Signal,
            GuardHook::Ptrace => EventKind::Ptrace,
            GuardHook::WriteOpen | GuardHook::Truncate => EventKind::FileModify,
            GuardHook::Unlink => EventKind::FileDelete,
            GuardHook::Rename => EventKind::FileRename,
            GuardHook::Create => EventKind::FileCreate,
            GuardHook::Bpf => EventKind::BpfLoad,
        };
        let mut e = Event::new(kind, SourceKind::Ebpf, clocks.from_boottime(self.boot_ns));
        e.outcome = Some(Outcome::Failure);
        e.syscall = Some(format!("lsm/{}", self.hook.name()).into());
        e.process = Some(Process {
            pid: self.actor_tgid,
            name: Some(self.comm.clone()),
            ..Process::default()
        });
        match self.hook {
            GuardHook::Signal | GuardHook::Ptrace => {
                e.target = Some(TargetProcess {
                    pid: u32::try_from(self.detail).unwrap_or(0),
                    executable: None,
                });
                if self.hook == GuardHook::Signal {
                    e.detail = Some(Box::new(Detail {
                        signal_number: Some(i64::from(self.arg)),
                        ..Detail::default()
                    }));
                }
            }
            GuardHook::Bpf => {
                let cmd = u32::try_from(self.arg).unwrap_or(0);
                e.detail = Some(Box::new(Detail {
                    bpf_command: super::convert::bpf_get_fd_command(cmd).map(Into::into),
                    ..Detail::default()
                }));
            }
            _ => {
                let path = self.path.as_ref().map_or_else(
                    || format!("inode:{}", self.detail),
                    |p| p.to_string_lossy().into_owned(),
                );
                e.file = Some(FileRecord {
                    path,
                    ..FileRecord::default()
                });
            }
        }
        e
    }
}

/// Decode one `struct guard_denial`; `None` when it is short or names no known hook.
fn decode_denial(b: &[u8]) -> Option<Denial> {
    let mut r = Reader::new(b);
    let boot_ns = r.u64("denial").ok()?;
    let detail = r.u64("denial").ok()?;
    let hook = GuardHook::from_index(r.u32("denial").ok()?)?;
    let actor_tgid = r.u32("denial").ok()?;
    let actor_tid = r.u32("denial").ok()?;
    let arg = r.i32("denial").ok()?;
    let comm = c_string(r.take(16, "denial comm").ok()?);
    Some(Denial {
        hook,
        actor_tgid,
        actor_tid,
        comm,
        boot_ns,
        detail,
        arg,
        path: None,
    })
}

/// `struct guard_config`.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
struct GuardConfig {
    armed: u32,
    launcher_tgid: u32,
    launcher_start: u64,
}

// SAFETY: GuardConfig is repr(C) plain old data with no padding (4 + 4 + 8 bytes), matching the
// object.
unsafe impl aya::Pod for GuardConfig {}

/// `struct guard_inode`: an inode by number and the kernel's encoding of its device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(C)]
struct InodeKey {
    ino: u64,
    dev: u32,
    pad: u32,
}

// SAFETY: InodeKey is repr(C) plain old data with explicit padding, matching the object.
unsafe impl aya::Pod for InodeKey {}

impl InodeKey {
    fn of(meta: &std::fs::Metadata) -> InodeKey {
        // The kernel's dev_t is MAJOR << 20 | MINOR; stat(2) returns the "new" user encoding.
        let dev = meta.dev();
        let kernel_dev = (libc::major(dev) << 20) | (libc::minor(dev) & 0xf_ffff);
        InodeKey {
            ino: meta.ino(),
            dev: kernel_dev,
            pad: 0,
        }
    }
}

/// `struct guard_inode_val`: the generation the filesystem gave a protected inode, when it
/// reports one (`known` 0: match by number alone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
struct InodeValue {
    generation: u32,
    known: u32,
}

// SAFETY: InodeValue is repr(C) plain old data without padding, matching the object.
unsafe impl aya::Pod for InodeValue {}

impl InodeValue {
    fn of(generation: Option<u32>) -> InodeValue {
        InodeValue {
            generation: generation.unwrap_or(0),
            known: u32::from(generation.is_some()),
        }
    }
}

/// `FS_IOC_GETVERSION`: `_IOR('v', 1, long)`.
const FS_IOC_GETVERSION: libc::c_ulong = 0x8008_7601;

/// The generation the filesystem gave the inode at `path` (a regular file or a directory, not
/// followed if a link), where the filesystem reports one (ext4, XFS, btrfs; not tmpfs).
fn generation_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    // Filesystems write an int here; the buffer is a long, as the request's size says.
    let mut generation: libc::c_long = 0;
    // SAFETY: FS_IOC_GETVERSION writes at most a long into `generation`, which lives for the
    // call; the descriptor is open for the call.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            FS_IOC_GETVERSION as _,
            &mut generation,
        )
    };
    (rc == 0).then_some(generation as u32)
}

/// Whether `path` (not followed if a link) still names the inode `key`.
fn still_names(path: &Path, key: InodeKey) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| InodeKey::of(&m) == key)
}

/// A protected inode as the walk found it.
#[derive(Debug, Clone, PartialEq)]
struct Protected {
    path: PathBuf,
    value: InodeValue,
}

/// `struct guard_bpf_id`.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
struct ObjectKey {
    kind: u32,
    id: u32,
}

// SAFETY: ObjectKey is repr(C) plain old data without padding, matching the object.
unsafe impl aya::Pod for ObjectKey {}

/// Who the agent is and what it owns.
#[derive(Debug, Clone, Default)]
pub struct GuardOptions {
    /// The agent's processes (tgids); the loading process is always added.
    pub agent_pids: Vec<u32>,
    /// The supervisor (protected like `agent_pids`).
    pub supervisor: Option<u32>,
    pub launcher: Option<Launcher>,
    /// Files and directories; a directory's files are protected too (up to
    /// [`MAX_PROTECTED_INODES`] in all). Missing paths are skipped.
    pub paths: Vec<PathBuf>,
}

/// The loaded, attached and armed guard.
pub struct Guard {
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
    config: GuardConfig,
    /// Protected inodes, the path each was found at (for reporting refusals by path) and its
    /// generation.
    inodes: StdHashMap<InodeKey, Protected>,
    paths: Vec<PathBuf>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("armed", &(self.config.armed != 0))
            .field("inodes", &self.inodes.len())
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// Load and attach every program, fill the maps from `options`, protect the guard's own
    /// BPF objects, and arm it. Fails (with the kernel's reason) where BPF LSM is refused.
    pub fn load(options: &GuardOptions) -> Result<Guard, EbpfError> {
        let loaded = Self::load_and_attach(options);
        release_loader_memory();
        loaded
    }

    fn load_and_attach(options: &GuardOptions) -> Result<Guard, EbpfError> {
        let (mut ebpf, btf) = load_object("guard.bpf.o", GUARD_OBJECT)?;
        for (name, hook) in PROGRAMS {
            let program: &mut Lsm = ebpf
                .program_mut(name)
                .ok_or_else(|| program_err(name, "missing from the object".into()))?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| program_err(name, e.to_string()))?;
            program
                .load(hook, &btf)
                .map_err(|e| program_err(name, format!("lsm/{hook}: {}", describe("load", &e))))?;
            program.attach().map_err(|e| {
                program_err(name, format!("lsm/{hook}: {}", describe("attach", &e)))
            })?;
        }
        let ring_map = ebpf.take_map("guard_ring").ok_or(EbpfError::Map {
            map: "guard_ring",
            message: "missing from the object".into(),
        })?;
        let ring = RingBuf::try_from(ring_map).map_err(map_err("guard_ring"))?;
        let mut guard = Guard {
            ebpf,
            ring,
            config: GuardConfig::default(),
            inodes: StdHashMap::new(),
            paths: options.paths.clone(),
        };
        let mut pids = options.agent_pids.clone();
        pids.push(std::process::id());
        pids.extend(options.supervisor);
        guard.protect_pids(&pids)?;
        let own = objects_of(&guard.ebpf);
        guard.protect_objects(&own)?;
        guard.refresh_paths()?;
        guard.config = GuardConfig {
            armed: 1,
            launcher_tgid: options.launcher.map_or(0, |l| l.tgid),
            launcher_start: options.launcher.map_or(0, |l| l.start_ticks),
        };
        guard.write_config()?;
        Ok(guard)
    }

    fn write_config(&mut self) -> Result<(), EbpfError> {
        let map = self.ebpf.map_mut("guard_cfg").ok_or(EbpfError::Map {
            map: "guard_cfg",
            message: "missing from the object".into(),
        })?;
        let mut cfg: Array<_, GuardConfig> = Array::try_from(map).map_err(map_err("guard_cfg"))?;
        cfg.set(0, self.config, 0).map_err(map_err("guard_cfg"))
    }

    /// Add agent processes (tgids): nothing they do is refused, and they cannot be signalled.
    pub fn protect_pids(&mut self, pids: &[u32]) -> Result<(), EbpfError> {
        fill_set(&mut self.ebpf, "guard_pids", pids.iter().copied())
    }

    /// Protect BPF objects (the sensor's, from [`objects_of`]) against descriptors by id.
    pub fn protect_objects(&mut self, objects: &[BpfObject]) -> Result<(), EbpfError> {
        let keys = objects.iter().map(|o| ObjectKey {
            kind: o.kind as u32,
            id: o.id,
        });
        fill_set(&mut self.ebpf, "guard_bpf_ids", keys)
    }

    /// Protect the configured paths again: files the agent has created under its directories
    /// since the last call join the protected set. Returns how many inodes are protected.
    pub fn refresh_paths(&mut self) -> Result<usize, EbpfError> {
        let mut found = Vec::new();
        for root in &self.paths {
            collect_inodes(root, &mut found, MAX_PROTECTED_INODES);
        }
        // An inode the agent itself deleted or replaced (a bundle swapped, state written
        // through a rename) is free for the filesystem to give to any new file: left in the
        // set, that file's writes would be refused (a file in /tmp could not be written, seen
        // in the Debian guest drill). Two defences: the object compares the inode's generation
        // where the filesystem reports one, which closes the window until this walk; and an
        // entry the walk did not find again leaves when its path no longer names it (the walk
        // may stop at its bound or skip an unreadable directory, so not being found alone is
        // no proof; only those entries cost a second stat).
        let seen: std::collections::HashSet<InodeKey> = found.iter().map(|(k, _, _)| *k).collect();
        let stale: Vec<InodeKey> = self
            .inodes
            .iter()
            .filter(|(key, p)| {
                !seen.contains(*key)
                    && std::fs::metadata(&p.path).map_or(true, |m| InodeKey::of(&m) != **key)
            })
            .map(|(key, _)| *key)
            .collect();
        remove_inodes(&mut self.ebpf, &stale)?;
        for key in &stale {
            self.inodes.remove(key);
        }
        // New entries, and known numbers that now name another inode (a new generation: the
        // agent deleted a file and made another that got its number).
        let mut changed = Vec::new();
        for (key, path, openable) in found {
            let generation = if openable { generation_of(&path) } else { None };
            let value = InodeValue::of(generation);
            if self.inodes.get(&key).is_some_and(|p| p.value == value) {
                continue;
            }
            // The file may have gone, or been replaced through a rename, since the walk saw it
            // (the agent's state and content files are written that way): its number is then
            // free, or the generation read is another inode's. Put in the set, a number with no
            // generation refused writes to whatever new file got it, anywhere on the filesystem,
            // until the next walk (a CI run's drill saw a file in /tmp refused just after a
            // content update). The next walk finds what the path names now.
            if !still_names(&path, key) {
                continue;
            }
            changed.push((key, Protected { path, value }));
        }
        set_inodes(
            &mut self.ebpf,
            changed.iter().map(|(key, p)| (*key, p.value)),
        )?;
        self.inodes.extend(changed);
        Ok(self.inodes.len())
    }

    /// Switch every check off (an authorised uninstall or stop). The programs stay attached
    /// until the guard is dropped.
    pub fn disarm(&mut self) -> Result<(), EbpfError> {
        self.config.armed = 0;
        self.write_config()
    }

    /// Whether the checks are on.
    pub fn armed(&self) -> bool {
        self.config.armed != 0
    }

    /// The refusals written since the last call, oldest first, with the path of a refused file
    /// when it is one the guard protects.
    pub fn drain_denials(&mut self) -> Vec<Denial> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            if let Some(mut d) = decode_denial(&item) {
                if matches!(
                    d.hook,
                    GuardHook::WriteOpen
                        | GuardHook::Truncate
                        | GuardHook::Unlink
                        | GuardHook::Rename
                        | GuardHook::Create
                ) {
                    let key = InodeKey {
                        ino: d.detail,
                        dev: d.arg.cast_unsigned(),
                        pad: 0,
                    };
                    d.path = self.inodes.get(&key).map(|p| p.path.clone());
                }
                out.push(d);
            }
        }
        out
    }

    /// The guard's own programs, maps and links.
    pub fn objects(&self) -> Vec<BpfObject> {
        objects_of(&self.ebpf)
    }
}

/// Work the guard's owner does on its own schedule (about once a second): the agent checks for
/// a maintenance token here. What it returns is sent as events.
pub type GuardTick = Box<dyn FnMut(&mut Guard) -> Vec<Event> + Send>;

/// The guard as a source: refusals become events (about every 100 ms), `tick` runs about
/// every second, and the protected paths are walked again every 10 s so files the agent creates
/// are protected too. Dropping it (when the agent stops) detaches the guard.
pub struct GuardSource {
    guard: Guard,
    tick: Option<GuardTick>,
}

impl GuardSource {
    pub fn new(guard: Guard, tick: Option<GuardTick>) -> GuardSource {
        GuardSource { guard, tick }
    }
}

impl Source for GuardSource {
    fn name(&self) -> &'static str {
        "guard"
    }

    fn run(mut self: Box<Self>, out: EventSender, stop: StopSignal) -> Result<(), SourceError> {
        let clocks = Clocks::read();
        let mut last_tick = Instant::now();
        let mut last_refresh = Instant::now();
        loop {
            let mut events: Vec<Event> = self
                .guard
                .drain_denials()
                .iter()
                .map(|d| d.to_event(&clocks))
                .collect();
            if last_tick.elapsed() >= Duration::from_secs(1) {
                last_tick = Instant::now();
                if let Some(tick) = self.tick.as_mut() {
                    events.extend(tick(&mut self.guard));
                }
            }
            if last_refresh.elapsed() >= Duration::from_secs(10) {
                last_refresh = Instant::now();
                if let Err(e) = self.guard.refresh_paths() {
                    tracing::warn!(error = %e, "guard: protected paths not refreshed");
                    out.note_error();
                }
            }
            for e in events {
                if out.send(e) == Sent::Closed {
                    return Ok(());
                }
            }
            if stop.sleep(Duration::from_millis(100)) {
                return Ok(());
            }
        }
    }
}

fn program_err(program: &'static str, message: String) -> EbpfError {
    EbpfError::Program { program, message }
}

/// A program error with its errno spelled out (`EPERM (Operation not permitted) at load`).
fn describe(step: &'static str, e: &aya::programs::ProgramError) -> String {
    super::probe::refusal(step, e).describe()
}

/// The object's protected-inode map.
fn inode_map(
    ebpf: &mut Ebpf,
) -> Result<aya::maps::HashMap<&mut MapData, InodeKey, InodeValue>, EbpfError> {
    const NAME: &str = "guard_inodes";
    let map = ebpf.map_mut(NAME).ok_or(EbpfError::Map {
        map: NAME,
        message: "missing from the object".into(),
    })?;
    aya::maps::HashMap::try_from(map).map_err(map_err(NAME))
}

/// Remove protected inodes (a key already gone is not an error).
fn remove_inodes(ebpf: &mut Ebpf, keys: &[InodeKey]) -> Result<(), EbpfError> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut m = inode_map(ebpf)?;
    for key in keys {
        match m.remove(key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(map_err("guard_inodes")(e)),
        }
    }
    Ok(())
}

/// Insert or update protected inodes with their values.
fn set_inodes(
    ebpf: &mut Ebpf,
    entries: impl IntoIterator<Item = (InodeKey, InodeValue)>,
) -> Result<(), EbpfError> {
    let mut m = inode_map(ebpf)?;
    for (key, value) in entries {
        m.insert(key, value, 0).map_err(map_err("guard_inodes"))?;
    }
    Ok(())
}

/// `root` and, for a directory, everything below it on the same device (not following links),
/// up to `limit` entries in `out`: each inode, its path, and whether it is a regular file or a
/// directory (one whose generation can be asked for).
fn collect_inodes(root: &Path, out: &mut Vec<(InodeKey, PathBuf, bool)>, limit: usize) {
    // A protected path given through a link (e.g. /proc/self/exe) protects its target.
    let Ok(meta) = std::fs::metadata(root) else {
        return;
    };
    let openable = |m: &std::fs::Metadata| m.is_file() || m.is_dir();
    // The root is asked for through its resolved path, a link's target.
    let resolved = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    out.push((InodeKey::of(&meta), resolved, openable(&meta)));
    if !meta.is_dir() {
        return;
    }
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if out.len() >= limit {
                return;
            }
            let Ok(m) = entry.metadata() else { continue };
            if m.dev() != meta.dev() {
                continue;
            }
            out.push((InodeKey::of(&m), entry.path(), openable(&m)));
            if m.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sizeof(struct guard_denial)`.
    const DENIAL_LEN: usize = 48;

    #[test]
    fn denials_decode_and_short_records_do_not() {
        let mut b = [0u8; DENIAL_LEN];
        b[0..8].copy_from_slice(&5u64.to_ne_bytes());
        b[8..16].copy_from_slice(&1234u64.to_ne_bytes());
        b[16..20].copy_from_slice(&0u32.to_ne_bytes());
        b[20..24].copy_from_slice(&77u32.to_ne_bytes());
        b[24..28].copy_from_slice(&78u32.to_ne_bytes());
        b[28..32].copy_from_slice(&9i32.to_ne_bytes());
        b[32..36].copy_from_slice(b"kill");
        let d = decode_denial(&b).expect("a full record");
        assert_eq!(d.hook, GuardHook::Signal);
        assert_eq!(
            (d.actor_tgid, d.actor_tid, d.detail, d.arg),
            (77, 78, 1234, 9)
        );
        assert_eq!(d.comm, "kill");
        assert!(decode_denial(&b[..40]).is_none());
        b[16..20].copy_from_slice(&99u32.to_ne_bytes());
        assert!(decode_denial(&b).is_none(), "unknown hook");
    }

    #[test]
    fn the_guard_arms_or_names_the_refused_hook_and_errno() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: loading BPF LSM programs needs root");
            return;
        }
        let lsm_active = std::fs::read_to_string("/sys/kernel/security/lsm")
            .is_ok_and(|l| l.split(',').any(|m| m.trim() == "bpf"));
        match Guard::load(&GuardOptions::default()) {
            Ok(mut g) => {
                assert!(g.armed());
                assert!(g.objects().iter().any(|o| o.kind == BpfObjectKind::Link));
                g.disarm().expect("disarm");
                assert!(!g.armed());
            }
            Err(e) => {
                let why = e.to_string();
                assert!(why.contains("lsm/"), "the hook is named: {why}");
                assert!(
                    !lsm_active || why.contains("EPERM"),
                    "BPF LSM is active, so only a blocked trampoline explains: {why}"
                );
            }
        }
    }

    #[test]
    fn launcher_is_the_parent_with_its_start_time() {
        let me = Launcher::parent_of(std::process::id()).expect("our parent");
        assert_eq!(me.tgid, std::os::unix::process::parent_id());
        assert!(me.start_ticks > 0 || me.tgid == 1);
    }

    /// A directory of this test run under `target/` (an ext4 or similar filesystem, with
    /// generations, where /tmp may be a tmpfs).
    fn test_dir(name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target")
            .join(format!("rf-guard-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("test dir");
        dir
    }

    /// A file the walk saw, then renamed over another or deleted before its generation was
    /// read (the agent writes its state that way), is no longer what its path names: it is not
    /// put in the set.
    #[test]
    fn a_file_renamed_or_deleted_after_the_walk_no_longer_names_its_inode() {
        let dir = test_dir("names");
        let tmp = dir.join("state.json.tmp");
        let fin = dir.join("state.json");
        std::fs::write(&tmp, b"new").expect("write");
        let key = InodeKey::of(&std::fs::symlink_metadata(&tmp).expect("stat"));
        assert!(still_names(&tmp, key));
        std::fs::rename(&tmp, &fin).expect("rename");
        assert!(!still_names(&tmp, key), "the temporary name is gone");
        assert!(still_names(&fin, key), "the final name names the inode");
        std::fs::remove_file(&fin).expect("remove");
        std::fs::write(&fin, b"replaced").expect("write");
        let now = InodeKey::of(&std::fs::symlink_metadata(&fin).expect("stat"));
        assert_eq!(
            still_names(&fin, key),
            now == key,
            "a new file may reuse the number"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file made after another was deleted may get its inode number, never its generation
    /// (where the filesystem reports one): what tells the object a reused number is not the
    /// agent's file. On a filesystem without generations (tmpfs) there is none to compare.
    #[test]
    fn a_new_file_has_a_new_generation_where_the_filesystem_reports_one() {
        let dir = test_dir("gen");
        let path = dir.join("state.json");
        std::fs::write(&path, b"1").expect("write");
        let first = generation_of(&path);
        let first_ino = std::fs::metadata(&path).expect("stat").ino();
        let mut reused = 0;
        for _ in 0..50 {
            std::fs::remove_file(&path).expect("remove");
            std::fs::write(&path, b"2").expect("write");
            let again = generation_of(&path);
            if std::fs::metadata(&path).expect("stat").ino() == first_ino {
                reused += 1;
                if first.is_some() {
                    assert_ne!(again, first, "a reused inode number kept its generation");
                }
            }
            assert_eq!(again.is_some(), first.is_some());
        }
        // Directories have one too; links are not followed; a missing path has none.
        assert_eq!(generation_of(&dir).is_some(), first.is_some());
        std::os::unix::fs::symlink(&path, dir.join("link")).expect("symlink");
        assert_eq!(generation_of(&dir.join("link")), None);
        assert_eq!(generation_of(&dir.join("missing")), None);
        eprintln!(
            "generation {first:?}; the inode number came back {reused} times in 50 (filesystem: {})",
            if first.is_some() {
                "reports generations"
            } else {
                "none"
            }
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn inodes_of_a_tree_stay_on_its_device_and_respect_the_limit() {
        let dir = std::env::temp_dir().join(format!("rf-guard-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("temp dir");
        std::fs::write(dir.join("a"), b"a").expect("write");
        std::fs::write(dir.join("sub/b"), b"b").expect("write");
        let mut out = Vec::new();
        collect_inodes(&dir, &mut out, 100);
        assert_eq!(out.len(), 4, "{out:?}");
        let mut few = Vec::new();
        collect_inodes(&dir, &mut few, 2);
        assert_eq!(few.len(), 2);
        let mut none = Vec::new();
        collect_inodes(&dir.join("missing"), &mut none, 100);
        assert!(none.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
