//! Driver mode: the eBPF sensor. Loads the committed programs of `bpf/` (embedded at build
//! time), fills their filter maps, attaches them, and reads their ring buffer.
//!
//! Each kind gets the cheapest hook this kernel allows and the [`Profile`] permits (see
//! [`hooks`]): fentry/fexit where BPF trampolines are allowed, else a tracepoint off the syscall
//! path, else (in the `deep` profile only) a syscall tracepoint; no kprobe is used. What each
//! kind got is in [`EbpfSensor::kind_hooks`]; see [`probe`] for what `ringfence doctor` checks.
//! Filtering happens in the kernel: kinds switched off are never attached or never copied, ignored pids
//! and comms are dropped first, and file events are reported only under the watched prefixes
//! (an LPM trie on the first [`record::PREFIX_MAX`] bytes of the path).
//!
//! Wake-ups are rationed. Every record is written with `BPF_RB_NO_WAKEUP`; the reader drains
//! the ring, and if it found records it sleeps [`EbpfOptions::poll_interval_ms`] (5 ms by
//! default) to let the next batch gather. If it found none it *parks*: it sets a flag in the
//! `rf_cfg` map, then blocks in `poll(2)`. The first record written after that sees the flag,
//! clears it and wakes the reader (one wake-up per burst). The flag is read after the record is
//! committed and `poll(2)` looks at the ring after the flag is set, so one side always sees the
//! other: no record waits behind a sleeping reader. A lone event reaches user space at once, a
//! busy ring is read in batches at most one poll interval late, and an idle agent does not wake
//! at all (but for a housekeeping look every [`IDLE_WAIT`]). Records written while the reader is
//! awake cost no interrupt on the writing CPU (on a virtual machine, several VM exits).
//!
//! Records the ring could not take are counted per kind in a per-CPU map; the source reports
//! them as gaps (they reach the agent's stats line and sensor-health events).
//!
//! Minimum kernel: 5.8 (ring buffer), BTF (`/sys/kernel/btf/vmlinux`) for CO-RE and tp_btf,
//! 5.17 for `bpf_find_vma` (the mprotect program). Built and tested on 6.18.
#![allow(
    unsafe_code,
    reason = "poll(2), setrlimit(2) and malloc_trim(3) on the ring buffer and the process; each \
              block says why"
)]

pub mod convert;
pub mod guard;
pub mod hooks;
pub mod probe;
pub mod record;

use std::collections::HashMap as StdHashMap;
use std::fmt;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::{Btf, Ebpf, EbpfLoader};
use ringfence_event::EventKind;
use serde::{Deserialize, Serialize};

use crate::container::Placement;
use crate::source::{BATCH, EventSender, Sent, Source, SourceError, StopSignal};
use crate::sys::Clocks;
pub use hooks::{HookTier, KindHook, Profile, Trampolines, planned_uncovered, uncovered_here};
pub use record::{DecodeError, Record, RecordKind, decode};

const NAME: &str = "ebpf";

/// The sensor object, built from `bpf/sensor.bpf.c` (`make -C bpf`; checked by
/// `scripts/bpf-check.sh`).
pub static SENSOR_OBJECT: &[u8] = aya::include_bytes_aligned!("../../../../bpf/obj/sensor.bpf.o");

/// What the eBPF sensor watches and ignores. Every field has a default; unknown fields are
/// refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EbpfOptions {
    /// File events are reported under these byte prefixes only (e.g. `/etc/`); none means no
    /// file events. At most [`record::PREFIX_MAX`] bytes each.
    pub watched_prefixes: Vec<String>,
    /// Processes (tgids) whose activity is dropped in the kernel.
    pub ignored_pids: Vec<u32>,
    /// Commands (comm, at most 15 bytes) whose activity is dropped in the kernel.
    pub ignored_comms: Vec<String>,
    /// Pids and tids whose signals are reported (tamper detection).
    pub protected_pids: Vec<u32>,
    /// Event kinds switched off: their programs are not attached (or drop them first thing).
    pub kinds_off: Vec<EventKind>,
    /// Which hooks may be used: `default` never attaches a syscall tracepoint, `deep` does for
    /// the kinds nothing cheaper covers (see [`hooks`]).
    pub profile: Profile,
    /// Hooks not to try even where the kernel has them (to measure or compare the others).
    pub skip_hooks: Vec<HookTier>,
    /// Ignore the agent's own activity.
    pub ignore_self: bool,
    /// Report signals aimed at the agent's own threads.
    pub protect_self: bool,
    /// A drain that finds this many bytes drains again at once instead of sleeping a poll
    /// interval: the ring is filling fast.
    pub wakeup_bytes: u64,
    /// How long the reader lets a batch gather after a drain that found records,
    /// milliseconds: the latency bound while records flow.
    pub poll_interval_ms: u64,
}

impl Default for EbpfOptions {
    fn default() -> Self {
        EbpfOptions {
            watched_prefixes: Vec::new(),
            ignored_pids: Vec::new(),
            ignored_comms: Vec::new(),
            protected_pids: Vec::new(),
            kinds_off: Vec::new(),
            profile: Profile::Default,
            skip_hooks: Vec::new(),
            ignore_self: true,
            protect_self: true,
            wakeup_bytes: default_wakeup_bytes(),
            poll_interval_ms: default_poll_interval_ms(),
        }
    }
}

fn default_wakeup_bytes() -> u64 {
    512 * 1024
}

fn default_poll_interval_ms() -> u64 {
    5
}

/// The longest the reader blocks on an empty ring before it looks again anyway: its
/// housekeeping (drop counts, new agent threads to protect) and the stop signal wait this long
/// at most. A record into the empty ring wakes it at once.
pub const IDLE_WAIT: Duration = Duration::from_millis(250);

/// What one drain of the ring found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    pub records: usize,
    pub bytes: u64,
}

/// Why the sensor could not load. Each variant names the step and the thing that failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum EbpfError {
    /// A problem with the options, found before touching the kernel.
    Options(String),
    /// The kernel's BTF could not be read.
    Btf(String),
    /// Tracefs is not mounted and could not be mounted.
    Tracefs(String),
    /// The object (`sensor.bpf.o`, `guard.bpf.o`) or one of its maps was refused.
    Load {
        object: &'static str,
        message: String,
    },
    /// A map the object should have is missing or could not be set.
    Map { map: &'static str, message: String },
    /// A program every mode needs did not load or attach.
    Program {
        program: &'static str,
        message: String,
    },
}

impl fmt::Display for EbpfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EbpfError::Options(m) => write!(f, "ebpf options: {m}"),
            EbpfError::Btf(m) => write!(f, "kernel BTF: {m}"),
            EbpfError::Tracefs(m) => write!(f, "tracefs: {m}"),
            EbpfError::Load { object, message } => write!(f, "loading {object}: {message}"),
            EbpfError::Map { map, message } => write!(f, "map {map}: {message}"),
            EbpfError::Program { program, message } => {
                write!(f, "program {program}: {message}")
            }
        }
    }
}

impl std::error::Error for EbpfError {}

/// What became of one program at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub program: &'static str,
    /// `tracepoint/syscalls/sys_enter_connect`, `tp_btf/sched_process_exec`.
    pub hook: String,
    /// `None` when attached; otherwise why not (switched off, absent, or the kernel's refusal).
    pub skipped: Option<String>,
    /// This kernel has no such hook (a syscall it was built without): skipped by design, not
    /// refused.
    pub absent: bool,
    /// The kind of hook.
    pub tier: HookTier,
    /// A better hook was refused or absent here and the kind fell back to another one, or
    /// this program is a worse hook never tried (or not allowed by the profile) because a
    /// better one attached: not a failure.
    pub superseded: bool,
}

/// One program's kernel-side cost (see [`EbpfSensor::program_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramStats {
    pub program: &'static str,
    pub run_count: u64,
    pub run_time: Duration,
}

/// Mount tracefs at /sys/kernel/tracing when no tracefs is mounted (aya finds tracepoint ids
/// there).
fn ensure_tracefs() -> Result<(), EbpfError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split(' ').nth(2) == Some("tracefs"))
    {
        return Ok(());
    }
    let target = Path::new("/sys/kernel/tracing");
    let status = std::process::Command::new("mount")
        .args(["-t", "tracefs", "nodev"])
        .arg(target)
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(EbpfError::Tracefs(format!(
            "not mounted, and `mount -t tracefs nodev {}` exited with {s}",
            target.display()
        ))),
        Err(e) => Err(EbpfError::Tracefs(format!(
            "not mounted, and mount(8) could not run: {e}"
        ))),
    }
}

/// This process's descriptors of tracepoint and raw tracepoint BPF links (the sensor's; LSM
/// links are `tracing` links and are left out). Detaching each costs the kernel an RCU grace
/// period, so the agent hands them to its supervisor to let go of in the background.
pub fn tracepoint_link_fds() -> Vec<std::os::fd::RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<std::os::fd::RawFd>().ok())
        .filter(|fd| {
            std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .is_ok_and(|t| t.as_os_str() == "anon_inode:bpf_link")
        })
        .filter(|fd| {
            std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).is_ok_and(|info| {
                info.lines().any(|l| {
                    l.strip_prefix("link_type:").is_some_and(|t| {
                        matches!(t.trim(), "perf" | "perf_event" | "raw_tracepoint")
                    })
                })
            })
        })
        .collect()
}

/// Load one of the embedded objects, relocated (CO-RE) against this kernel's BTF; the BTF is
/// returned for the programs' own loads.
fn load_object(object: &'static str, bytes: &[u8]) -> Result<(Ebpf, Btf), EbpfError> {
    raise_memlock();
    let btf = Btf::from_sys_fs().map_err(|e| EbpfError::Btf(e.to_string()))?;
    let ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .load(bytes)
        .map_err(|e| EbpfError::Load {
            object,
            message: e.to_string(),
        })?;
    Ok((ebpf, btf))
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; lift it (harmless later).
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `lim` is a valid rlimit for the duration of the call.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}

/// Give the heap the loader no longer needs back to the system: parsing the kernel's BTF and
/// relocating the object take some 15 MiB that glibc would otherwise keep mapped.
pub(crate) fn release_loader_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it takes no pointers.
    let _ = unsafe { libc::malloc_trim(0) };
}

fn comm_key(comm: &str) -> Result<[u8; 16], EbpfError> {
    let b = comm.as_bytes();
    if b.is_empty() || b.len() > 15 {
        return Err(EbpfError::Options(format!(
            "ignored_comms: `{comm}` must be 1 to 15 bytes"
        )));
    }
    let mut k = [0u8; 16];
    for (d, s) in k.iter_mut().zip(b) {
        *d = *s;
    }
    Ok(k)
}

fn prefix_key(prefix: &str) -> Result<Key<[u8; record::PREFIX_MAX]>, EbpfError> {
    let b = prefix.as_bytes();
    if b.is_empty() || b.len() > record::PREFIX_MAX || !prefix.starts_with('/') {
        return Err(EbpfError::Options(format!(
            "watched_prefixes: `{prefix}` must be an absolute path of at most {} bytes",
            record::PREFIX_MAX
        )));
    }
    let mut data = [0u8; record::PREFIX_MAX];
    for (d, s) in data.iter_mut().zip(b) {
        *d = *s;
    }
    let bits = u32::try_from(b.len() * 8).unwrap_or(u32::MAX);
    Ok(Key::new(bits, data))
}

fn kinds_off_mask(kinds: &[EventKind]) -> u64 {
    kinds
        .iter()
        .flat_map(|k| convert::record_kinds(*k))
        .fold(0u64, |m, k| m | 1u64 << k.index())
}

/// The threads of this process (for protecting the agent's own pids).
fn own_tids() -> Vec<u32> {
    let mut tids: Vec<u32> = std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.push(std::process::id());
    tids
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> EbpfError {
    move |e| EbpfError::Map {
        map,
        message: e.to_string(),
    }
}

/// The loaded and attached sensor. Dropping it detaches and unloads everything.
pub struct EbpfSensor {
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
    cfg: ReaderConfig,
    attached: Vec<Attached>,
    kind_hooks: Vec<KindHook>,
    profile: Profile,
    poll_interval: Duration,
    wakeup_bytes: u64,
    clocks: Clocks,
}

impl fmt::Debug for EbpfSensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EbpfSensor")
            .field("attached", &self.attached)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl EbpfSensor {
    /// Load the embedded object, fill the filter maps from `options`, and attach every program
    /// whose kinds are not all switched off. Fails only when the object, its maps or a process
    /// program (exec, fork, exit) cannot be set up; other refusals are in [`Self::attached`].
    pub fn load(options: &EbpfOptions) -> Result<EbpfSensor, EbpfError> {
        let loaded = Self::load_and_attach(options);
        release_loader_memory();
        loaded
    }

    fn load_and_attach(options: &EbpfOptions) -> Result<EbpfSensor, EbpfError> {
        // Check every option before touching the kernel, and report all problems at once.
        let mut problems = Vec::new();
        let comms: Vec<[u8; 16]> = options
            .ignored_comms
            .iter()
            .filter_map(|c| comm_key(c).map_err(|e| problems.push(e.to_string())).ok())
            .collect();
        let prefixes: Vec<_> = options
            .watched_prefixes
            .iter()
            .filter_map(|p| prefix_key(p).map_err(|e| problems.push(e.to_string())).ok())
            .collect();
        if options.poll_interval_ms == 0 || options.poll_interval_ms > 1000 {
            problems.push(format!(
                "poll_interval_ms must be 1 to 1000, got {}",
                options.poll_interval_ms
            ));
        }
        if !problems.is_empty() {
            return Err(EbpfError::Options(problems.join("; ")));
        }

        ensure_tracefs()?;
        let (mut ebpf, btf) = load_object("sensor.bpf.o", SENSOR_OBJECT)?;

        let kinds_off = kinds_off_mask(&options.kinds_off);
        let cfg = ebpf.take_map("rf_cfg").ok_or(EbpfError::Map {
            map: "rf_cfg",
            message: "missing from the object".into(),
        })?;
        let cfg = ReaderConfig::new(cfg, kinds_off)?;
        let mut ignored = options.ignored_pids.clone();
        if options.ignore_self {
            ignored.push(std::process::id());
        }
        fill_set(&mut ebpf, "ignored_pids", ignored)?;
        let mut protected = options.protected_pids.clone();
        if options.protect_self {
            protected.extend(own_tids());
        }
        fill_set(&mut ebpf, "protected_pids", protected)?;
        fill_set(&mut ebpf, "ignored_comms", comms)?;
        {
            let map = ebpf.map_mut("watched_prefixes").ok_or(EbpfError::Map {
                map: "watched_prefixes",
                message: "missing from the object".into(),
            })?;
            let mut m: LpmTrie<_, [u8; record::PREFIX_MAX], u8> =
                LpmTrie::try_from(map).map_err(map_err("watched_prefixes"))?;
            for k in &prefixes {
                m.insert(k, 1, 0).map_err(map_err("watched_prefixes"))?;
            }
        }

        let (attached, kind_hooks) = attach_all(&mut ebpf, &btf, options, kinds_off)?;

        // Once attached, the sensor's own programs, maps and links are known by id: a
        // descriptor asked for to any of them is reported (tamper detection).
        let own = guard::objects_of(&ebpf)
            .into_iter()
            .map(|o| [o.kind as u32, o.id]);
        fill_set(&mut ebpf, "protected_objects", own)?;

        let ring = ebpf.take_map("events").ok_or(EbpfError::Map {
            map: "events",
            message: "missing from the object".into(),
        })?;
        let ring = RingBuf::try_from(ring).map_err(map_err("events"))?;
        Ok(EbpfSensor {
            ebpf,
            ring,
            cfg,
            attached,
            kind_hooks,
            profile: options.profile,
            poll_interval: Duration::from_millis(options.poll_interval_ms),
            wakeup_bytes: options.wakeup_bytes.max(4096),
            clocks: Clocks::read(),
        })
    }

    /// What each program did at start-up.
    pub fn attached(&self) -> &[Attached] {
        &self.attached
    }

    /// Which hook each kind got (or why none), in the order of [`hooks`]' table.
    pub fn kind_hooks(&self) -> &[KindHook] {
        &self.kind_hooks
    }

    /// Whether the sensor reports records of `kind` (a hook attached and it is not off).
    pub fn covers(&self, kind: RecordKind) -> bool {
        self.kind_hooks
            .iter()
            .any(|h| h.tier.is_some() && h.kinds.contains(&kind))
    }

    /// The profile the sensor was loaded with.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Records lost because the ring was full, per kind since load (summed over CPUs).
    pub fn drops(&self) -> Result<StdHashMap<RecordKind, u64>, EbpfError> {
        let map = self.ebpf.map("drops").ok_or(EbpfError::Map {
            map: "drops",
            message: "missing from the object".into(),
        })?;
        let drops: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err("drops"))?;
        let mut out = StdHashMap::new();
        for k in RecordKind::ALL {
            let index = u32::try_from(k.index()).unwrap_or(0);
            let per_cpu = drops.get(&index, 0).map_err(map_err("drops"))?;
            let n: u64 = per_cpu.iter().copied().sum();
            if n > 0 {
                out.insert(k, n);
            }
        }
        Ok(out)
    }

    /// Run count and total run time of each attached program, as the kernel keeps them while
    /// `kernel.bpf_stats_enabled` is 1 (zero otherwise).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.attached
            .iter()
            .filter(|a| a.skipped.is_none())
            .filter_map(|a| {
                let info = self.ebpf.program(a.program)?.info().ok()?;
                Some(ProgramStats {
                    program: a.program,
                    run_count: info.run_count(),
                    run_time: info.run_time(),
                })
            })
            .collect()
    }

    /// The sensor's programs, maps and links by kernel id (for the guard to protect).
    pub fn objects(&self) -> Vec<guard::BpfObject> {
        guard::objects_of(&self.ebpf)
    }

    /// Add pids (or tids) whose signals are reported.
    pub fn protect_pids(&mut self, pids: &[u32]) -> Result<(), EbpfError> {
        fill_set(&mut self.ebpf, "protected_pids", pids.iter().copied())
    }

    /// Add processes whose activity the kernel drops.
    pub fn ignore_pids(&mut self, pids: &[u32]) -> Result<(), EbpfError> {
        fill_set(&mut self.ebpf, "ignored_pids", pids.iter().copied())
    }

    /// The clocks records are converted with.
    pub fn clocks(&self) -> &Clocks {
        &self.clocks
    }

    /// Hand every record now in the ring to `f` (decoded, or why not); returns how many.
    pub fn drain(&mut self, f: impl FnMut(Result<Record, DecodeError>)) -> usize {
        self.drain_counting(f).records
    }

    /// [`Self::drain`], also counting the bytes read (for [`Self::rest`]).
    pub fn drain_counting(&mut self, mut f: impl FnMut(Result<Record, DecodeError>)) -> Drained {
        let mut d = Drained::default();
        while let Some(item) = self.ring.next() {
            d.bytes += item.len() as u64;
            f(decode(&item));
            d.records += 1;
        }
        d
    }

    /// Wait after a drain: one poll interval to let the next batch gather if it found records
    /// (none if it found a full `wakeup_bytes`: the ring is filling fast), or until the kernel
    /// wakes the reader (at most [`IDLE_WAIT`]) if it found none. Hand on what the drain found
    /// before resting, or it waits a poll interval longer.
    pub fn rest(&mut self, drained: Drained) {
        if drained.records == 0 {
            self.wait(IDLE_WAIT);
        } else if drained.bytes < self.wakeup_bytes {
            std::thread::sleep(self.poll_interval);
        }
    }

    /// Park and wait: until the next record wakes the reader or `timeout` passes, whichever
    /// first. Returns at once if records are already waiting. The flag is set on every park,
    /// whatever the kernel did with it since: one syscall per idle wait buys that no stale
    /// state of ours can leave the reader asleep.
    pub fn wait(&mut self, timeout: Duration) {
        if self.cfg.park().is_err() {
            // Without the flag no record wakes the reader: look again after a poll interval.
            std::thread::sleep(self.poll_interval.min(timeout));
            return;
        }
        let mut pfd = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `pfd` is one valid pollfd for the duration of the call; the fd is the ring's,
        // open as long as `self`.
        let _ = unsafe { libc::poll(&mut pfd, 1, ms) };
    }

    /// One turn of the reader: [`Self::drain`], then [`Self::rest`].
    pub fn poll(&mut self, f: impl FnMut(Result<Record, DecodeError>)) -> usize {
        let drained = self.drain_counting(f);
        self.rest(drained);
        drained.records
    }
}

/// The `rf_cfg` map, which the reader keeps: the kinds switched off, and the flag that says
/// the reader is parked (blocked, or about to block, on an empty ring) and the next record
/// must wake it. The kernel clears the flag when it does.
struct ReaderConfig {
    map: Array<MapData, [u64; 2]>,
    kinds_off: u64,
}

impl ReaderConfig {
    /// Take the map and write the kinds switched off, not parked.
    fn new(map: aya::maps::Map, kinds_off: u64) -> Result<ReaderConfig, EbpfError> {
        let mut cfg = ReaderConfig {
            map: Array::try_from(map).map_err(map_err("rf_cfg"))?,
            kinds_off,
        };
        cfg.write(0)?;
        Ok(cfg)
    }

    /// Set the flag. The syscall is a full barrier before the reader's poll(2) looks at the
    /// ring.
    fn park(&mut self) -> Result<(), EbpfError> {
        self.write(1)
    }

    /// Write the whole entry (an array map update is one copy under no lock: the kernel reads
    /// either value, both valid).
    fn write(&mut self, parked: u64) -> Result<(), EbpfError> {
        self.map
            .set(0, [self.kinds_off, parked], 0)
            .map_err(map_err("rf_cfg"))
    }
}

/// Add `keys` to the hash map `name` used as a set (value 1): pids, comms, object ids, inodes.
fn fill_set<K: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    keys: impl IntoIterator<Item = K>,
) -> Result<(), EbpfError> {
    let map = ebpf.map_mut(name).ok_or(EbpfError::Map {
        map: name,
        message: "missing from the object".into(),
    })?;
    let mut m: HashMap<_, K, u8> = HashMap::try_from(map).map_err(map_err(name))?;
    for k in keys {
        m.insert(k, 1, 0).map_err(map_err(name))?;
    }
    Ok(())
}

/// Attach each kind's cheapest hook the profile allows and the kernel takes (see [`hooks`]).
/// Fails only when a process kind (exec, fork, exit) gets none.
fn attach_all(
    ebpf: &mut Ebpf,
    btf: &Btf,
    options: &EbpfOptions,
    kinds_off: u64,
) -> Result<(Vec<Attached>, Vec<KindHook>), EbpfError> {
    use hooks::AttachError;
    let mut attached = Vec::new();
    let mut kind_hooks = Vec::with_capacity(hooks::SLOTS.len());
    // Once the kernel refused one trampoline for want of permission, it refuses them all.
    let mut trampolines_refused: Option<String> = None;
    for slot in hooks::SLOTS {
        let all_off = slot.kinds.iter().all(|k| kinds_off & (1 << k.index()) != 0);
        let mut chosen: Option<(HookTier, Vec<String>)> = None;
        let mut passed_over = Vec::new();
        let mut last_refusal = None;
        for choice in slot.choices {
            let programs = choice.programs;
            let skip = |why: String, superseded: bool, attached: &mut Vec<Attached>| {
                for p in programs {
                    attached.push(Attached {
                        program: p.name,
                        hook: p.hook.describe(),
                        skipped: Some(why.clone()),
                        absent: false,
                        tier: choice.tier,
                        superseded,
                    });
                }
            };
            if all_off {
                skip("switched off".into(), false, &mut attached);
                continue;
            }
            if chosen.is_some() {
                skip(
                    format!(
                        "{} attached instead",
                        chosen.as_ref().map_or("", |c| c.0.as_str())
                    ),
                    true,
                    &mut attached,
                );
                continue;
            }
            if let Some(why) = trampolines_refused
                .as_ref()
                .filter(|_| choice.tier == HookTier::Fentry)
            {
                passed_over.push(format!("fentry: {why}"));
                skip(why.clone(), true, &mut attached);
                continue;
            }
            // The process kinds have one hook each: nothing to skip to.
            if options.skip_hooks.contains(&choice.tier) && !slot.required {
                passed_over.push(format!("{}: skipped by the options", choice.tier));
                skip("skipped by the options".into(), true, &mut attached);
                continue;
            }
            if choice.tier == HookTier::Syscall && options.profile == Profile::Default {
                skip(
                    "the default profile attaches no syscall tracepoint".into(),
                    true,
                    &mut attached,
                );
                continue;
            }
            // Attach every program of this hook, or none.
            let mut links = Vec::new();
            let mut rows = Vec::new();
            let mut refused = None;
            for p in programs {
                match hooks::attach(ebpf, p, btf) {
                    Ok(link) => {
                        links.push((p.name, link));
                        rows.push((p, None, false));
                    }
                    Err(AttachError::Absent(why)) => rows.push((p, Some(why), true)),
                    Err(failure) => {
                        if choice.tier == HookTier::Fentry
                            && let Some(all) = failure.trampolines_refused()
                        {
                            trampolines_refused = Some(all);
                        }
                        let why = failure.reason();
                        refused = Some(format!("{}: {why}", p.name));
                        rows.push((p, Some(why), false));
                        break;
                    }
                }
            }
            let took = refused.is_none() && !links.is_empty();
            if !took {
                for (name, link) in links {
                    hooks::detach(ebpf, name, link);
                }
                let why = refused.unwrap_or_else(|| "this kernel has none of its hooks".into());
                passed_over.push(format!("{}: {why}", choice.tier));
                last_refusal = Some(why.clone());
            }
            // Trampolines refused (hardened kernels block them) are passed over, not failed;
            // a refused tracepoint is a fault of the program and stays one.
            let superseded = !took && choice.tier == HookTier::Fentry;
            for (p, why, absent) in rows {
                attached.push(Attached {
                    program: p.name,
                    hook: p.hook.describe(),
                    skipped: if took {
                        why
                    } else {
                        why.or_else(|| Some("detached: its hook fell back".into()))
                    },
                    absent,
                    tier: choice.tier,
                    superseded,
                });
            }
            if took {
                let hooks_used: Vec<String> = attached
                    .iter()
                    .rev()
                    .take(programs.len())
                    .filter(|a| a.skipped.is_none())
                    .map(|a| a.hook.clone())
                    .collect();
                chosen = Some((choice.tier, hooks_used));
            }
        }
        let (tier, detail) = match chosen {
            Some((tier, mut used)) => {
                used.reverse();
                (Some(tier), used.join(", "))
            }
            None if all_off => (None, "switched off".into()),
            None => {
                let syscall_only = slot.choices.iter().any(|c| c.tier == HookTier::Syscall)
                    && options.profile == Profile::Default;
                let why = if syscall_only {
                    "no hook off the syscall path here; the deep profile adds its syscall tracepoints".to_owned()
                } else {
                    last_refusal
                        .clone()
                        .unwrap_or_else(|| "no hook available".into())
                };
                (None, why)
            }
        };
        if slot.required && tier.is_none() && !all_off {
            return Err(EbpfError::Program {
                program: slot
                    .choices
                    .first()
                    .and_then(|c| c.programs.first())
                    .map_or(slot.label, |p| p.name),
                message: detail,
            });
        }
        // Two choices of one tier passed over for one reason (trampolines refused) say it once.
        passed_over.dedup();
        kind_hooks.push(KindHook {
            label: slot.label,
            kinds: slot.kinds,
            tier,
            detail,
            passed_over,
        });
    }
    Ok((attached, kind_hooks))
}

/// The eBPF sensor as a [`Source`].
#[derive(Debug)]
pub struct EbpfSource {
    sensor: EbpfSensor,
    protect_self: bool,
}

impl EbpfSource {
    /// Load and attach (see [`EbpfSensor::load`]). Refusals of optional programs are logged.
    pub fn open(options: &EbpfOptions) -> Result<EbpfSource, SourceError> {
        let sensor = EbpfSensor::load(options).map_err(|e| SourceError::Unavailable {
            source: NAME,
            reason: e.to_string(),
        })?;
        for a in sensor.attached() {
            if let Some(why) = &a.skipped {
                tracing::info!(source = NAME, program = a.program, hook = %a.hook, "not attached: {why}");
            }
        }
        Ok(EbpfSource {
            sensor,
            protect_self: options.protect_self,
        })
    }

    pub fn sensor(&self) -> &EbpfSensor {
        &self.sensor
    }

    pub fn sensor_mut(&mut self) -> &mut EbpfSensor {
        &mut self.sensor
    }
}

impl Source for EbpfSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Box<Self>, out: EventSender, stop: StopSignal) -> Result<(), SourceError> {
        let EbpfSource {
            mut sensor,
            protect_self,
        } = *self;
        let clocks = *sensor.clocks();
        let mut last_drops: StdHashMap<RecordKind, u64> = StdHashMap::new();
        let mut last_check = Instant::now();
        let mut closed = false;
        // One drain's events go to the pipeline together: converted first, then sent in a
        // burst, so the pipeline wakes once per drain instead of racing the reader event by
        // event (a context switch each time it catches up and parks).
        // At most BATCH events wait, so a ring that never empties still flows.
        let mut batch: Vec<ringfence_event::Event> = Vec::with_capacity(BATCH);
        // Container context from the cgroup id every record carries.
        let mut cgroups = crate::container::CgroupIds::new();
        while !stop.is_stopped() && !closed {
            let drained = sensor.drain_counting(|rec| match rec {
                Ok(rec) => {
                    let cgroup = rec.header.cgroup_id;
                    let mut event = convert::to_event(rec, &clocks);
                    if let Some(pid) = event.process.as_ref().map(|p| p.pid) {
                        event.container = match cgroups.place(cgroup) {
                            Placement::Container(c) => Some(c),
                            Placement::Host => None,
                            // A runtime moves its first process into the container's cgroup
                            // between fork and exec: an exec the tree cannot place is placed
                            // from /proc now, and the agent's process tree carries it on.
                            Placement::Unknown if event.kind == Some(EventKind::ProcessExec) => {
                                crate::container::of_pid(pid)
                            }
                            Placement::Unknown => None,
                        };
                    }
                    batch.push(event);
                    if batch.len() >= BATCH {
                        closed |= out.send_all(&mut batch) == Sent::Closed;
                    }
                }
                Err(e) => {
                    out.note_error();
                    tracing::debug!(source = NAME, "undecodable record: {e}");
                }
            });
            closed |= out.send_all(&mut batch) == Sent::Closed;
            sensor.rest(drained);
            if last_check.elapsed() >= Duration::from_secs(1) {
                last_check = Instant::now();
                // New agent threads are protected too.
                if protect_self {
                    let _ = sensor.protect_pids(&own_tids());
                }
                match sensor.drops() {
                    Ok(now) => {
                        let mut lost = 0;
                        let mut by_kind = Vec::new();
                        for (k, n) in &now {
                            let d = n.saturating_sub(last_drops.get(k).copied().unwrap_or(0));
                            if d > 0 {
                                lost += d;
                                by_kind.push(format!("{d} {:?}", k));
                            }
                        }
                        if lost > 0 {
                            out.note_gap(lost);
                            tracing::warn!(
                                source = NAME,
                                lost,
                                "ring buffer full, records dropped in the kernel: {}",
                                by_kind.join(", ")
                            );
                        }
                        last_drops = now;
                    }
                    Err(e) => {
                        out.note_error();
                        tracing::debug!(source = NAME, "reading drops: {e}");
                    }
                }
            }
        }
        Ok(())
    }
}
