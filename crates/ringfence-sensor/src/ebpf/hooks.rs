//! Which hook each event kind gets. Every kind has its hooks listed from the cheapest: a BPF
//! trampoline (fentry/fexit on the syscall's own entry function `__x64_sys_<name>`, which costs
//! only the calls of that function; file writes first try one fentry on `fd_install`, which
//! every open passes through, io_uring's included, before one fexit per open syscall), then a
//! cgroup socket hook on the cgroup2 root (connect and
//! bind, TCP and UDP), then a tracepoint off the syscall path (`sched:*`,
//! `sock:inet_sock_set_state` for TCP connects, `signal:signal_generate`, `module:module_load`), then the syscall
//! tracepoints. One attached syscall tracepoint puts every task of the host on the kernel's
//! syscall slow path (1.12-1.15x on a loop of open, stat and close, measured on 6.18), so the
//! `default` profile never attaches them; `deep` does, for the kinds nothing cheaper covers.
//!
//! The loader tries each kind's hooks in order and keeps the first whose programs all load and
//! attach (a program whose hook this kernel does not have is skipped); a refusal (`EPERM` for
//! trampolines on hardened kernels) detaches what that hook had attached and moves on. It never
//! fails the sensor for a preferred hook: what each kind got, and why, is in [`KindHook`].

use std::fmt;

use aya::programs::{
    BtfTracePoint, CgroupAttachMode, CgroupSockAddr, FEntry, FExit, ProgramError, TracePoint,
    cgroup_sock_addr::CgroupSockAddrLinkId, fentry::FEntryLinkId, fexit::FExitLinkId,
    tp_btf::BtfTracePointLinkId, trace_point::TracePointLinkId,
};
use aya::{Btf, BtfError, Ebpf};
use serde::{Deserialize, Serialize};

use super::record::RecordKind;

/// Which hooks the sensor may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Never a syscall tracepoint: kinds with no cheaper hook on this kernel are not covered by
    /// the eBPF sensor (the agent covers file, privilege and ptrace events from fanotify and the
    /// process connector instead).
    #[default]
    Default,
    /// The syscall tracepoints too, for the kinds nothing cheaper covers here (memory made
    /// executable, memfd_create, bpf(), bind, accept, ...): full coverage at the cost of the
    /// syscall slow path for every task.
    Deep,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Deep => "deep",
        }
    }
}

/// The kind of hook, from the cheapest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookTier {
    /// fentry/fexit on a kernel function (a BPF trampoline).
    Fentry,
    /// A cgroup socket hook on the cgroup2 root (connect, bind): no trampoline, no tracepoint.
    Cgroup,
    /// A tracepoint off the syscall path (sched, sock, signal, module).
    Tracepoint,
    /// A syscall tracepoint (the syscall slow path for every task while attached).
    Syscall,
}

impl HookTier {
    pub const ALL: [HookTier; 4] = [
        HookTier::Fentry,
        HookTier::Cgroup,
        HookTier::Tracepoint,
        HookTier::Syscall,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HookTier::Fentry => "fentry",
            HookTier::Cgroup => "cgroup socket hook",
            HookTier::Tracepoint => "tracepoint",
            HookTier::Syscall => "syscall tracepoint",
        }
    }
}

impl fmt::Display for HookTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hook {
    /// `tracepoint/<category>/<name>`
    Tp(&'static str, &'static str),
    /// `tp_btf/<name>`
    TpBtf(&'static str),
    /// `fentry/<function>`
    FEntry(&'static str),
    /// `fexit/<function>`
    FExit(&'static str),
    /// `cgroup/<attach point>` (connect4, bind6, ...) on the cgroup2 root.
    CgroupSockAddr(&'static str),
}

impl Hook {
    pub(crate) fn describe(self) -> String {
        match self {
            Hook::Tp(cat, name) => format!("tracepoint/{cat}/{name}"),
            Hook::TpBtf(name) => format!("tp_btf/{name}"),
            Hook::FEntry(f) => format!("fentry/{f}"),
            Hook::FExit(f) => format!("fexit/{f}"),
            Hook::CgroupSockAddr(a) => format!("cgroup/{a}"),
        }
    }
}

/// One program of the object and its hook.
pub(crate) struct Prog {
    pub name: &'static str,
    pub hook: Hook,
}

/// One way to hook a kind: its programs (those whose hook this kernel lacks are skipped).
pub(crate) struct Choice {
    pub tier: HookTier,
    pub programs: &'static [Prog],
}

/// The kinds one set of programs reports, and their hooks from the cheapest.
pub(crate) struct Slot {
    /// `process.exec`, `network.connect`, `file.write`, ...
    pub label: &'static str,
    pub kinds: &'static [RecordKind],
    /// The sensor is not worth running without it (the process kinds).
    pub required: bool,
    pub choices: &'static [Choice],
}

const fn sys(name: &'static str, tracepoint: &'static str) -> Prog {
    Prog {
        name,
        hook: Hook::Tp("syscalls", tracepoint),
    }
}
const fn fe(name: &'static str, function: &'static str) -> Prog {
    Prog {
        name,
        hook: Hook::FEntry(function),
    }
}
const fn fx(name: &'static str, function: &'static str) -> Prog {
    Prog {
        name,
        hook: Hook::FExit(function),
    }
}
const fn btf(name: &'static str, tracepoint: &'static str) -> Prog {
    Prog {
        name,
        hook: Hook::TpBtf(tracepoint),
    }
}
const fn cg(name: &'static str, attach: &'static str) -> Prog {
    Prog {
        name,
        hook: Hook::CgroupSockAddr(attach),
    }
}
const fn cgroup(programs: &'static [Prog]) -> Choice {
    Choice {
        tier: HookTier::Cgroup,
        programs,
    }
}
const fn fentry(programs: &'static [Prog]) -> Choice {
    Choice {
        tier: HookTier::Fentry,
        programs,
    }
}
const fn tracepoint(programs: &'static [Prog]) -> Choice {
    Choice {
        tier: HookTier::Tracepoint,
        programs,
    }
}
const fn syscall(programs: &'static [Prog]) -> Choice {
    Choice {
        tier: HookTier::Syscall,
        programs,
    }
}
const fn slot(
    label: &'static str,
    kinds: &'static [RecordKind],
    choices: &'static [Choice],
) -> Slot {
    Slot {
        label,
        kinds,
        required: false,
        choices,
    }
}
const fn process(
    label: &'static str,
    kind: &'static [RecordKind],
    choices: &'static [Choice],
) -> Slot {
    Slot {
        label,
        kinds: kind,
        required: true,
        choices,
    }
}

use RecordKind as R;

/// Every program of `sensor.bpf.c`, by the kinds it reports.
pub(crate) const SLOTS: &[Slot] = &[
    process(
        "process.exec",
        &[R::Exec],
        &[tracepoint(&[btf("rf_exec", "sched_process_exec")])],
    ),
    process(
        "process.fork",
        &[R::Fork],
        &[tracepoint(&[btf("rf_fork", "sched_process_fork")])],
    ),
    process(
        "process.exit",
        &[R::Exit],
        &[tracepoint(&[btf("rf_exit", "sched_process_exit")])],
    ),
    slot(
        "network.connect",
        &[R::Connect],
        &[
            fentry(&[fe("rf_connect_fe", "__x64_sys_connect")]),
            cgroup(&[
                cg("rf_cg_connect4", "connect4"),
                cg("rf_cg_connect6", "connect6"),
            ]),
            tracepoint(&[btf("rf_sock_connect", "inet_sock_set_state")]),
            syscall(&[sys("rf_connect", "sys_enter_connect")]),
        ],
    ),
    slot(
        "network.listen",
        &[R::Listen],
        &[
            fentry(&[fe("rf_listen_fe", "__x64_sys_listen")]),
            syscall(&[sys("rf_listen", "sys_enter_listen")]),
        ],
    ),
    slot(
        "network.accept",
        &[R::Accept],
        &[
            fentry(&[
                fx("rf_accept4_fx", "__x64_sys_accept4"),
                fx("rf_accept_fx", "__x64_sys_accept"),
            ]),
            syscall(&[
                sys("rf_accept4", "sys_exit_accept4"),
                sys("rf_accept", "sys_exit_accept"),
            ]),
        ],
    ),
    slot(
        "network.bind",
        &[R::Bind],
        &[
            fentry(&[fe("rf_bind_fe", "__x64_sys_bind")]),
            cgroup(&[cg("rf_cg_bind4", "bind4"), cg("rf_cg_bind6", "bind6")]),
            syscall(&[sys("rf_bind", "sys_enter_bind")]),
        ],
    ),
    slot(
        "file.write",
        &[R::FileCreate, R::FileModify],
        &[
            // One trampoline on entry for every open (io_uring's too), before one on the
            // return of each open syscall.
            fentry(&[fe("rf_fd_install_fe", "fd_install")]),
            fentry(&[
                fx("rf_openat_fx", "__x64_sys_openat"),
                fx("rf_openat2_fx", "__x64_sys_openat2"),
                fx("rf_open_fx", "__x64_sys_open"),
                fx("rf_creat_fx", "__x64_sys_creat"),
            ]),
            syscall(&[
                sys("rf_openat", "sys_exit_openat"),
                sys("rf_openat2", "sys_exit_openat2"),
                sys("rf_open", "sys_exit_open"),
                sys("rf_creat", "sys_exit_creat"),
            ]),
        ],
    ),
    slot(
        "file.delete",
        &[R::FileDelete],
        &[
            fentry(&[
                fe("rf_unlinkat_fe", "__x64_sys_unlinkat"),
                fe("rf_unlink_fe", "__x64_sys_unlink"),
                fe("rf_rmdir_fe", "__x64_sys_rmdir"),
            ]),
            syscall(&[
                sys("rf_unlinkat", "sys_enter_unlinkat"),
                sys("rf_unlink", "sys_enter_unlink"),
                sys("rf_rmdir", "sys_enter_rmdir"),
            ]),
        ],
    ),
    slot(
        "file.rename",
        &[R::FileRename],
        &[
            fentry(&[
                fe("rf_renameat2_fe", "__x64_sys_renameat2"),
                fe("rf_renameat_fe", "__x64_sys_renameat"),
                fe("rf_rename_fe", "__x64_sys_rename"),
            ]),
            syscall(&[
                sys("rf_renameat2", "sys_enter_renameat2"),
                sys("rf_renameat", "sys_enter_renameat"),
                sys("rf_rename", "sys_enter_rename"),
            ]),
        ],
    ),
    slot(
        "privilege",
        &[R::Privilege],
        &[
            fentry(&[
                fe("rf_setuid_fe", "__x64_sys_setuid"),
                fe("rf_setgid_fe", "__x64_sys_setgid"),
                fe("rf_setreuid_fe", "__x64_sys_setreuid"),
                fe("rf_setregid_fe", "__x64_sys_setregid"),
                fe("rf_setresuid_fe", "__x64_sys_setresuid"),
                fe("rf_setresgid_fe", "__x64_sys_setresgid"),
                fe("rf_capset_fe", "__x64_sys_capset"),
            ]),
            syscall(&[
                sys("rf_setuid", "sys_enter_setuid"),
                sys("rf_setgid", "sys_enter_setgid"),
                sys("rf_setreuid", "sys_enter_setreuid"),
                sys("rf_setregid", "sys_enter_setregid"),
                sys("rf_setresuid", "sys_enter_setresuid"),
                sys("rf_setresgid", "sys_enter_setresgid"),
                sys("rf_capset", "sys_enter_capset"),
            ]),
        ],
    ),
    slot(
        "ptrace",
        &[R::Ptrace],
        &[
            fentry(&[fe("rf_ptrace_fe", "__x64_sys_ptrace")]),
            syscall(&[sys("rf_ptrace", "sys_enter_ptrace")]),
        ],
    ),
    slot(
        "module.load",
        &[R::Module],
        &[
            fentry(&[
                fe("rf_init_module_fe", "__x64_sys_init_module"),
                fe("rf_finit_module_fe", "__x64_sys_finit_module"),
            ]),
            tracepoint(&[btf("rf_module_load", "module_load")]),
            syscall(&[
                sys("rf_init_module", "sys_enter_init_module"),
                sys("rf_finit_module", "sys_enter_finit_module"),
            ]),
        ],
    ),
    slot(
        "bpf",
        &[R::Bpf],
        &[
            fentry(&[fe("rf_bpf_fe", "__x64_sys_bpf")]),
            syscall(&[sys("rf_bpf", "sys_enter_bpf")]),
        ],
    ),
    slot(
        "memfd",
        &[R::Memfd],
        &[
            fentry(&[fe("rf_memfd_create_fe", "__x64_sys_memfd_create")]),
            syscall(&[sys("rf_memfd_create", "sys_enter_memfd_create")]),
        ],
    ),
    slot(
        "memory.exec",
        &[R::MemExec],
        &[
            fentry(&[
                fe("rf_mmap_fe", "__x64_sys_mmap"),
                fe("rf_mprotect_fe", "__x64_sys_mprotect"),
            ]),
            syscall(&[
                sys("rf_mmap", "sys_enter_mmap"),
                sys("rf_mprotect", "sys_enter_mprotect"),
            ]),
        ],
    ),
    slot(
        "signal",
        &[R::Signal],
        &[
            fentry(&[
                fe("rf_kill_fe", "__x64_sys_kill"),
                fe("rf_tkill_fe", "__x64_sys_tkill"),
                fe("rf_tgkill_fe", "__x64_sys_tgkill"),
            ]),
            tracepoint(&[btf("rf_signal_generate", "signal_generate")]),
            syscall(&[
                sys("rf_kill", "sys_enter_kill"),
                sys("rf_tkill", "sys_enter_tkill"),
                sys("rf_tgkill", "sys_enter_tgkill"),
            ]),
        ],
    ),
];

/// Whether a kernel can host BPF trampolines (fentry/fexit), for [`planned_uncovered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trampolines {
    Allowed,
    /// Refused (`EPERM` on hardened kernels, as on this project's 6.18 host) or absent.
    Refused,
}

/// The kinds the sensor would leave without a hook under `profile` on a kernel whose
/// trampolines are as said and which has the cgroup2 hierarchy and the tracepoints off the
/// syscall path (every kernel the sensor runs on), each with its label and what would hook it.
/// A plan, made without loading anything (for `content build` and `rules check`); what a loaded
/// sensor got is in its [`KindHook`]s.
pub fn planned_uncovered(
    profile: Profile,
    trampolines: Trampolines,
) -> Vec<(&'static str, RecordKind, &'static str)> {
    let allowed = |tier: HookTier| match tier {
        HookTier::Fentry => trampolines == Trampolines::Allowed,
        HookTier::Cgroup | HookTier::Tracepoint => true,
        HookTier::Syscall => profile == Profile::Deep,
    };
    let mut out = Vec::new();
    for slot in SLOTS {
        if slot.choices.iter().any(|c| allowed(c.tier)) {
            continue;
        }
        for &kind in slot.kinds {
            out.push((slot.label, kind, remedy(kind, profile)));
        }
    }
    out
}

/// What would give `kind` a hook when `profile` left it without one: the `deep` profile where
/// a syscall tracepoint exists for it, else a kernel that allows BPF trampolines.
pub fn remedy(kind: RecordKind, profile: Profile) -> &'static str {
    remedy_with(kind, profile, |_| true)
}

/// [`remedy`] on this kernel: a syscall tracepoint counts only where tracefs lists it, and a
/// kind none of whose hooks this kernel has (module loads on a kernel built without modules)
/// has no remedy but another kernel.
pub fn remedy_here(kind: RecordKind, profile: Profile) -> &'static str {
    remedy_with(kind, profile, |h| present_here(h, Trampolines::Allowed))
}

fn remedy_with(kind: RecordKind, profile: Profile, present: impl Fn(Hook) -> bool) -> &'static str {
    let choices = || {
        SLOTS
            .iter()
            .filter(|s| s.kinds.contains(&kind))
            .flat_map(|s| s.choices.iter())
    };
    let has = |tier: HookTier| {
        choices()
            .filter(|c| c.tier == tier)
            .any(|c| c.programs.iter().any(|p| present(p.hook)))
    };
    if profile == Profile::Default && has(HookTier::Syscall) {
        "[sensor] profile = \"deep\""
    } else if has(HookTier::Fentry) {
        "a kernel that allows BPF trampolines (fentry)"
    } else {
        "another kernel (this one has none of its hooks)"
    }
}

/// Whether this kernel has `hook`: tracefs lists its tracepoint, a cgroup2 hierarchy is
/// mounted, trampolines as said. Where tracefs cannot be read, a tracepoint is taken as there.
fn present_here(hook: Hook, trampolines: Trampolines) -> bool {
    let events = [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .into_iter()
    .map(std::path::Path::new)
    .find(|p| p.join("sched").is_dir());
    match hook {
        Hook::Tp(cat, name) => events.is_none() || tracepoint_exists(cat, name),
        Hook::TpBtf(name) => events.is_none_or(|dir| {
            std::fs::read_dir(dir).is_ok_and(|categories| {
                categories
                    .filter_map(Result::ok)
                    .any(|c| c.path().join(name).is_dir())
            })
        }),
        // A syscall's entry function is built with the syscall, whose tracepoints tracefs
        // lists (a kernel without modules has neither init_module's).
        Hook::FEntry(f) | Hook::FExit(f) => {
            trampolines == Trampolines::Allowed
                && f.strip_prefix("__x64_sys_").is_none_or(|name| {
                    events.is_none_or(|dir| {
                        !dir.join("syscalls").is_dir()
                            || dir
                                .join("syscalls")
                                .join(format!("sys_enter_{name}"))
                                .is_dir()
                    })
                })
        }
        Hook::CgroupSockAddr(_) => cgroup2_root().is_some(),
    }
}

/// [`planned_uncovered`] on this kernel: a hook counts only where [`present_here`] finds it
/// (for `ringfence doctor`, which then agrees with the agent it checks for).
pub fn uncovered_here(
    profile: Profile,
    trampolines: Trampolines,
) -> Vec<(&'static str, RecordKind, &'static str)> {
    let allowed = |tier: HookTier| tier != HookTier::Syscall || profile == Profile::Deep;
    let mut out = Vec::new();
    for slot in SLOTS {
        let covered = slot.choices.iter().any(|c| {
            allowed(c.tier) && c.programs.iter().any(|p| present_here(p.hook, trampolines))
        });
        if covered {
            continue;
        }
        for &kind in slot.kinds {
            let remedy = if trampolines == Trampolines::Allowed {
                remedy_with(kind, profile, |h| present_here(h, trampolines))
            } else {
                remedy_here(kind, profile)
            };
            out.push((slot.label, kind, remedy));
        }
    }
    out
}

/// What one kind (or set of kinds sharing programs) got at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindHook {
    /// `process.exec`, `network.connect`, `file.write`, ...
    pub label: &'static str,
    pub kinds: &'static [RecordKind],
    /// The hook attached, or `None` when the kind is not covered.
    pub tier: Option<HookTier>,
    /// The hooks attached (`fentry/__x64_sys_connect`), or why none is.
    pub detail: String,
    /// The better hooks tried first and why each was passed over.
    pub passed_over: Vec<String>,
}

impl KindHook {
    /// `network.connect: fentry (fentry/__x64_sys_connect)`, or `memfd: not covered (...)`.
    pub fn describe(&self) -> String {
        let mut s = match self.tier {
            Some(t) => format!("{}: {t} ({})", self.label, self.detail),
            None => format!("{}: not covered ({})", self.label, self.detail),
        };
        if !self.passed_over.is_empty() {
            s += &format!("; passed over: {}", self.passed_over.join("; "));
        }
        s
    }
}

/// An attached program's link, to detach it again when a kind falls back to another hook.
pub(crate) enum Link {
    Tp(TracePointLinkId),
    TpBtf(BtfTracePointLinkId),
    FEntry(FEntryLinkId),
    FExit(FExitLinkId),
    Cgroup(CgroupSockAddrLinkId),
}

/// Why a program did not attach.
#[derive(Debug)]
pub(crate) enum AttachError {
    /// This kernel has no such hook (a syscall it was built without, a function not in BTF).
    Absent(String),
    /// The kernel refused the load or the attach (with the errno when there was one).
    Refused(String, Option<i32>),
    /// The verifier rejected the program: a fault of this program on this kernel, which says
    /// nothing about whether the kernel allows its kind of hook.
    Rejected(String),
}

impl AttachError {
    /// When a trampoline program's failure means the kernel refuses every trampoline (lockdown's
    /// EPERM, an LSM's EACCES before the verifier, none on this architecture), what to say of
    /// the later ones. A verifier rejection is the program's own and refuses nothing else.
    pub(crate) fn trampolines_refused(&self) -> Option<String> {
        match self {
            AttachError::Refused(
                why,
                Some(errno @ (libc::EPERM | libc::EACCES | libc::ENOTSUP | 524)),
            ) => Some(format!(
                "this kernel refuses BPF trampolines ({} at {})",
                super::probe::errno_name(*errno),
                why.split(':').next().unwrap_or("load")
            )),
            _ => None,
        }
    }

    /// Why, in words.
    pub(crate) fn reason(self) -> String {
        match self {
            AttachError::Absent(why)
            | AttachError::Refused(why, _)
            | AttachError::Rejected(why) => why,
        }
    }
}

/// Whether tracefs lists the tracepoint (a syscall the kernel does not build has none).
fn tracepoint_exists(cat: &str, name: &str) -> bool {
    std::path::Path::new(&format!("/sys/kernel/tracing/events/{cat}/{name}")).exists()
        || std::path::Path::new(&format!("/sys/kernel/debug/tracing/events/{cat}/{name}")).exists()
}

/// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a
/// hybrid host): its root holds every process.
fn cgroup2_root() -> Option<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .find(|l| l.split(' ').nth(2) == Some("cgroup2"))
        .and_then(|l| l.split(' ').nth(1))
        .map(std::path::PathBuf::from)
}

fn absent_or_refused(step: &str, hook: Hook, e: &ProgramError) -> AttachError {
    if matches!(e, ProgramError::Btf(BtfError::UnknownBtfTypeName { .. })) {
        return AttachError::Absent(format!("this kernel has no {}", hook.describe()));
    }
    // The verifier answers EACCES or EINVAL with its reasons in the log; a refusal of the hook
    // itself (lockdown's EPERM, an LSM's EACCES before the verifier runs, no trampolines on
    // this architecture) leaves the log empty.
    if let ProgramError::LoadError {
        io_error,
        verifier_log,
    } = e
        && matches!(io_error.raw_os_error(), Some(libc::EACCES | libc::EINVAL))
        && !verifier_log.to_string().trim().is_empty()
    {
        return AttachError::Rejected(program_error(step, e));
    }
    AttachError::Refused(program_error(step, e), super::probe::errno_of(e))
}

/// Load and attach one program.
pub(crate) fn attach(ebpf: &mut Ebpf, p: &Prog, btf: &Btf) -> Result<Link, AttachError> {
    if let Hook::Tp(cat, name) = p.hook
        && !tracepoint_exists(cat, name)
    {
        return Err(AttachError::Absent(format!(
            "this kernel has no {}",
            p.hook.describe()
        )));
    }
    let prog = ebpf
        .program_mut(p.name)
        .ok_or_else(|| AttachError::Refused("missing from the object".to_owned(), None))?;
    let refused = |e: ProgramError| AttachError::Refused(format!("{e}"), None);
    Ok(match p.hook {
        Hook::Tp(cat, name) => {
            let tp: &mut TracePoint = prog.try_into().map_err(refused)?;
            tp.load()
                .map_err(|e| absent_or_refused("load", p.hook, &e))?;
            Link::Tp(
                tp.attach(cat, name)
                    .map_err(|e| absent_or_refused("attach", p.hook, &e))?,
            )
        }
        Hook::TpBtf(name) => {
            let tp: &mut BtfTracePoint = prog.try_into().map_err(refused)?;
            tp.load(name, btf)
                .map_err(|e| absent_or_refused("load", p.hook, &e))?;
            Link::TpBtf(
                tp.attach()
                    .map_err(|e| absent_or_refused("attach", p.hook, &e))?,
            )
        }
        Hook::FEntry(f) => {
            let fe: &mut FEntry = prog.try_into().map_err(refused)?;
            fe.load(f, btf)
                .map_err(|e| absent_or_refused("load", p.hook, &e))?;
            Link::FEntry(
                fe.attach()
                    .map_err(|e| absent_or_refused("attach", p.hook, &e))?,
            )
        }
        Hook::CgroupSockAddr(_) => {
            let root = cgroup2_root()
                .ok_or_else(|| AttachError::Absent("no cgroup2 hierarchy is mounted".to_owned()))?;
            let dir = std::fs::File::open(&root).map_err(|e| {
                AttachError::Refused(format!("opening {}: {e}", root.display()), e.raw_os_error())
            })?;
            let cg: &mut CgroupSockAddr = prog.try_into().map_err(refused)?;
            cg.load()
                .map_err(|e| absent_or_refused("load", p.hook, &e))?;
            Link::Cgroup(
                // A BPF link (kernels from 5.7; the sensor needs 5.8) always runs beside other
                // programs on the cgroup; the kernel refuses any mode flag on a link (EINVAL).
                cg.attach(&dir, CgroupAttachMode::Single)
                    .map_err(|e| absent_or_refused("attach", p.hook, &e))?,
            )
        }
        Hook::FExit(f) => {
            let fx: &mut FExit = prog.try_into().map_err(refused)?;
            fx.load(f, btf)
                .map_err(|e| absent_or_refused("load", p.hook, &e))?;
            Link::FExit(
                fx.attach()
                    .map_err(|e| absent_or_refused("attach", p.hook, &e))?,
            )
        }
    })
}

/// Detach a program attached by [`attach`] (best effort: it stays loaded, unattached).
pub(crate) fn detach(ebpf: &mut Ebpf, name: &str, link: Link) {
    let Some(prog) = ebpf.program_mut(name) else {
        return;
    };
    match link {
        Link::Tp(l) => {
            if let Ok(p) = <&mut TracePoint>::try_from(prog) {
                let _ = p.detach(l);
            }
        }
        Link::TpBtf(l) => {
            if let Ok(p) = <&mut BtfTracePoint>::try_from(prog) {
                let _ = p.detach(l);
            }
        }
        Link::FEntry(l) => {
            if let Ok(p) = <&mut FEntry>::try_from(prog) {
                let _ = p.detach(l);
            }
        }
        Link::FExit(l) => {
            if let Ok(p) = <&mut FExit>::try_from(prog) {
                let _ = p.detach(l);
            }
        }
        Link::Cgroup(l) => {
            if let Ok(p) = <&mut CgroupSockAddr>::try_from(prog) {
                let _ = p.detach(l);
            }
        }
    }
}

/// A program error with its whole cause chain (the verifier log is in the load error).
pub(crate) fn program_error(step: &str, e: &ProgramError) -> String {
    let mut s = format!("{step}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(&format!(": {cause}"));
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_rejection_is_no_refusal_of_the_hook() {
        let load_error = |errno: i32, log: &str| ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(errno),
            verifier_log: aya_obj::VerifierLog::new(log.to_owned()),
        };
        let hook = Hook::FEntry("fd_install");
        let rejected = absent_or_refused(
            "load",
            hook,
            &load_error(libc::EACCES, "R1 invalid mem access 'scalar'\n"),
        );
        assert!(matches!(rejected, AttachError::Rejected(_)), "{rejected:?}");
        assert_eq!(rejected.trampolines_refused(), None);
        // Lockdown's EPERM, and an EACCES that came before the verifier (no log): refusals.
        for (errno, log) in [(libc::EPERM, ""), (libc::EACCES, ""), (libc::EPERM, "x")] {
            let refused = absent_or_refused("load", hook, &load_error(errno, log));
            assert!(
                matches!(refused, AttachError::Refused(_, Some(n)) if n == errno),
                "{refused:?}"
            );
            let all = refused.trampolines_refused().unwrap_or_default();
            assert!(
                all.starts_with("this kernel refuses BPF trampolines (E"),
                "{all}"
            );
        }
    }

    #[test]
    fn every_kind_has_exactly_one_slot_and_no_program_serves_two() {
        for k in RecordKind::ALL {
            let n = SLOTS.iter().filter(|s| s.kinds.contains(&k)).count();
            assert_eq!(n, 1, "{k:?}");
        }
        let mut names: Vec<&str> = SLOTS
            .iter()
            .flat_map(|s| {
                s.choices
                    .iter()
                    .flat_map(|c| c.programs.iter().map(|p| p.name))
            })
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "a program listed twice");
    }

    #[test]
    fn the_default_profile_without_trampolines_leaves_the_syscall_only_kinds_unhooked() {
        let kinds = |p, t| -> Vec<RecordKind> {
            planned_uncovered(p, t)
                .into_iter()
                .map(|(_, k, _)| k)
                .collect()
        };
        let default = kinds(Profile::Default, Trampolines::Refused);
        for k in [
            R::Memfd,
            R::Bpf,
            R::MemExec,
            R::Accept,
            R::Listen,
            R::FileCreate,
        ] {
            assert!(default.contains(&k), "{k:?}");
        }
        for k in [R::Exec, R::Connect, R::Bind, R::Module, R::Signal] {
            assert!(!default.contains(&k), "{k:?}");
        }
        assert!(
            planned_uncovered(Profile::Default, Trampolines::Refused)
                .iter()
                .all(|(_, _, remedy)| *remedy == "[sensor] profile = \"deep\"")
        );
        assert!(kinds(Profile::Deep, Trampolines::Refused).is_empty());
        assert!(kinds(Profile::Default, Trampolines::Allowed).is_empty());
    }

    /// On this project's host (6.18, trampolines refused, no modules): what doctor and the
    /// agent say. Elsewhere only what holds on every kernel is checked.
    #[test]
    fn on_this_kernel_a_kind_with_none_of_its_hooks_has_no_profile_remedy() {
        let here = uncovered_here(Profile::Default, Trampolines::Refused);
        let remedy_of = |k: RecordKind| here.iter().find(|(_, x, _)| *x == k).map(|(_, _, r)| *r);
        assert_eq!(remedy_of(R::Exec), None);
        if std::path::Path::new("/sys/kernel/tracing/events/syscalls/sys_enter_bpf").is_dir() {
            assert_eq!(remedy_of(R::Bpf), Some("[sensor] profile = \"deep\""));
        }
        let tracefs = std::path::Path::new("/sys/kernel/tracing/events/syscalls");
        if tracefs.is_dir() && !tracefs.join("sys_enter_init_module").is_dir() {
            assert_eq!(
                remedy_of(R::Module),
                Some("another kernel (this one has none of its hooks)")
            );
            assert_eq!(
                remedy_here(R::Module, Profile::Default),
                "another kernel (this one has none of its hooks)"
            );
        }
        assert!(uncovered_here(Profile::Deep, Trampolines::Refused).len() <= 1);
    }

    #[test]
    fn hooks_are_listed_from_the_cheapest() {
        for s in SLOTS {
            let tiers: Vec<HookTier> = s.choices.iter().map(|c| c.tier).collect();
            // Tiers in order; one tier may hold more than one choice, the cheaper first.
            let mut sorted = tiers.clone();
            sorted.sort();
            assert_eq!(tiers, sorted, "{}", s.label);
            // Only syscall tracepoints sit on the syscall path.
            for c in s.choices {
                for p in c.programs {
                    let on_syscall_path = matches!(p.hook, Hook::Tp("syscalls", _));
                    assert_eq!(on_syscall_path, c.tier == HookTier::Syscall, "{}", p.name);
                }
            }
        }
    }
}
