//! The kernel matrix's guest program (`scripts/kernel-matrix.sh` boots it as part of an
//! initramfs under qemu on Debian's 6.1 and 6.12 cloud kernels; it runs on this host too).
//!
//! `kernel_check` checks, on the running kernel:
//! - the eBPF sensor: CO-RE relocation against this kernel's BTF, every program's attach, and an
//!   exec with arguments, a TCP connect and a file write under a watched prefix coming back as
//!   ECS events;
//! - the BPF LSM guard (where the kernel offers BPF LSM): a child that is not the agent is
//!   refused a kill, a ptrace attach, a write-open, a truncate, an unlink, a rename, a create
//!   and a descriptor to the guard's BPF link; then a signed maintenance token disarms the
//!   guard, and the same child may write, unlink and signal.
//!
//! It prints one `CHECK <name>: PASS|FAIL|SKIP <detail>` line per check and ends with
//! `KERNEL-CHECK PASS` or `KERNEL-CHECK FAIL`; the exit status follows. `kernel_check attack
//! ...` is the child's side and is not meant to be run by hand.
#![allow(
    unsafe_code,
    reason = "the attacker child drives kill, ptrace, truncate and bpf through libc"
)]
#![allow(clippy::print_stdout, reason = "a command-line check program")]

use std::ffi::CString;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ringfence_agent::protect::{MaintenanceOutcome, apply_maintenance_token};
use ringfence_event::{Event, EventKind};
use ringfence_sensor::ebpf::guard::{BpfObjectKind, Guard, GuardOptions};
use ringfence_sensor::ebpf::{EbpfOptions, EbpfSensor, HookTier, Profile, RecordKind, convert};

const WATCH: &str = "/tmp/rf-watch";
const PROTECTED: &str = "/tmp/rf-protected";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("attack") {
        std::process::exit(attack(&args[2..]));
    }
    if args.get(1).map(String::as_str) == Some("launcher") {
        std::process::exit(launcher_child());
    }
    if args.get(1).map(String::as_str) == Some("idle") {
        std::thread::sleep(Duration::from_secs(600));
        std::process::exit(0);
    }
    if args.get(1).map(String::as_str) == Some("storm") {
        std::process::exit(storm_child(&args[2..]));
    }
    let mut report = Report::default();
    sensor_checks(&mut report);
    hook_parity(&mut report);
    guard_checks(&mut report);
    let counts = std::env::var_os("RF_STORM_RUN_COUNTS").is_some();
    let ratios = std::env::var_os("RF_NO_STORMS").is_none();
    if counts || ratios {
        let choices = storm_choices(&mut report);
        if counts {
            run_counts(&mut report, &choices);
        }
        if ratios {
            storms(&mut report, &choices);
        }
    }
    descriptor_checks(&mut report);
    report.finish();
}

#[derive(Default)]
struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, name: &str, result: Result<String, String>) {
        match result {
            Ok(detail) => println!("CHECK {name}: PASS {detail}"),
            Err(detail) => {
                self.failed = true;
                println!("CHECK {name}: FAIL {detail}");
            }
        }
    }

    fn skip(&self, name: &str, why: &str) {
        println!("CHECK {name}: SKIP {why}");
    }

    fn finish(self) -> ! {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        if self.failed {
            println!("KERNEL-CHECK FAIL {}", kernel.trim());
            std::process::exit(1);
        }
        println!("KERNEL-CHECK PASS {}", kernel.trim());
        std::process::exit(0);
    }
}

// ---- the sensor -------------------------------------------------------------------------------

struct Watch {
    sensor: EbpfSensor,
    seen: Vec<Event>,
}

impl Watch {
    fn wait_for(&mut self, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(i) = self.seen.iter().position(&pred) {
                return Some(self.seen.remove(i));
            }
            if Instant::now() >= deadline {
                return None;
            }
            let clocks = *self.sensor.clocks();
            let seen = &mut self.seen;
            self.sensor.poll(|rec| {
                if let Ok(rec) = rec {
                    seen.push(convert::to_event(rec, &clocks));
                }
            });
        }
    }
}

/// The deep profile watching [`WATCH`]: every kind, each on the cheapest hook this kernel
/// takes, this process included. When it does not load, the check `check` fails with why.
fn deep_sensor(report: &mut Report, check: &str) -> Option<EbpfSensor> {
    let _ = std::fs::create_dir_all(WATCH);
    let options = EbpfOptions {
        watched_prefixes: vec![format!("{WATCH}/")],
        ignore_self: false,
        protect_self: false,
        profile: Profile::Deep,
        ..EbpfOptions::default()
    };
    EbpfSensor::load(&options)
        .map_err(|e| report.line(check, Err(e.to_string())))
        .ok()
}

fn sensor_checks(report: &mut Report) {
    let Some(sensor) = deep_sensor(report, "sensor-load") else {
        return;
    };
    // A tracepoint the kernel does not have (e.g. init_module without CONFIG_MODULES) is
    // skipped by design; any other refusal (a verifier or relocation error) is a failure.
    let describe = |a: &ringfence_sensor::ebpf::Attached| {
        a.skipped
            .as_ref()
            .map(|why| format!("{}: {why}", a.program))
    };
    let absent: Vec<String> = sensor
        .attached()
        .iter()
        .filter(|a| a.absent)
        .filter_map(describe)
        .collect();
    // Trampolines a hardened kernel refuses, and worse hooks not tried, are passed over.
    let refused: Vec<String> = sensor
        .attached()
        .iter()
        .filter(|a| !a.absent && !a.superseded)
        .filter_map(describe)
        .collect();
    let attached = sensor
        .attached()
        .iter()
        .filter(|a| a.skipped.is_none())
        .count();
    for h in sensor.kind_hooks() {
        println!("HOOK {}", h.describe());
    }
    let absent_note = if absent.is_empty() {
        String::new()
    } else {
        format!("; absent here: {}", absent.join("; "))
    };
    report.line(
        "sensor-load",
        if refused.is_empty() {
            Ok(format!(
                "{attached} programs attached (CO-RE against this kernel's BTF){absent_note}"
            ))
        } else {
            Err(format!(
                "{attached} attached, refused: {}",
                refused.join("; ")
            ))
        },
    );
    let mut watch = Watch {
        sensor,
        seen: Vec::new(),
    };

    let exec = Command::new("/bin/sh")
        .args(["-c", "exit 3", "rf-guest-arg"])
        .status()
        .map_err(|e| e.to_string());
    let seen = exec.and_then(|_| {
        watch
            .wait_for(|e| {
                e.kind() == EventKind::ProcessExec
                    && e.process
                        .as_ref()
                        .is_some_and(|p| p.args.iter().any(|a| a == "rf-guest-arg"))
            })
            .ok_or_else(|| "no exec event with its arguments".to_string())
    });
    report.line(
        "sensor-exec",
        seen.map(|e| {
            let p = e.process.unwrap_or_default();
            format!("{} {:?}", p.executable.unwrap_or_default(), p.args)
        }),
    );

    let connect = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| {
            let port = l.local_addr()?.port();
            TcpStream::connect(("127.0.0.1", port))?;
            Ok(port)
        })
        .map_err(|e| format!("loopback: {e}"));
    let seen = connect.and_then(|port| {
        watch
            .wait_for(|e| {
                e.kind() == EventKind::NetworkConnect
                    && e.network.as_ref().and_then(|n| n.destination_port) == Some(port)
            })
            .map(|_| format!("connect to 127.0.0.1:{port}"))
            .ok_or_else(|| format!("no connect event to port {port}"))
    });
    report.line("sensor-connect", seen);

    let file = Path::new(WATCH).join("written");
    let write = std::fs::write(&file, b"x").map_err(|e| e.to_string());
    let path = file.display().to_string();
    let seen = write.and_then(|()| {
        watch
            .wait_for(|e| {
                matches!(e.kind(), EventKind::FileCreate | EventKind::FileModify)
                    && e.file.as_ref().is_some_and(|f| f.path == path)
            })
            .map(|e| format!("{} {path}", e.kind().action()))
            .ok_or_else(|| format!("no file event for {path}"))
    });
    report.line("sensor-file", seen);
}

/// The ways into a descriptor that no open syscall shows, or that are no open: a write-open
/// through io_uring, and a dup. Run after the storms: the io_uring instance leaves kernel work
/// behind for a while, which moved the 6.12 guest's exec storm by three points.
fn descriptor_checks(report: &mut Report) {
    let Some(sensor) = deep_sensor(report, "sensor-descriptors") else {
        return;
    };
    let mut watch = Watch {
        sensor,
        seen: Vec::new(),
    };
    // A write-open through io_uring, which no open syscall carries: the fd_install hook sees it,
    // the syscall hooks cannot (an attacker's way past syscall-based sensors).
    let on_fd_install = watch
        .sensor
        .kind_hooks()
        .iter()
        .any(|h| h.label == "file.write" && h.detail.contains("fd_install"));
    let file = Path::new(WATCH).join("written-by-io-uring");
    let path = file.display().to_string();
    match open_for_write_by_io_uring(&file) {
        Err(e)
            if e.raw_os_error() == Some(libc::ENOSYS) || e.raw_os_error() == Some(libc::EPERM) =>
        {
            report.skip(
                "sensor-file-io-uring",
                &format!("io_uring refused here: {e}"),
            );
        }
        Err(e) => report.line("sensor-file-io-uring", Err(format!("io_uring openat: {e}"))),
        Ok(()) if !on_fd_install => report.skip(
            "sensor-file-io-uring",
            "file.write is not on fd_install here (the syscall hooks do not see io_uring)",
        ),
        Ok(()) => {
            let seen = watch
                .wait_for(|e| {
                    matches!(e.kind(), EventKind::FileCreate | EventKind::FileModify)
                        && e.file.as_ref().is_some_and(|f| f.path == path)
                })
                .map(|e| format!("{} {path} opened through io_uring", e.kind().action()))
                .ok_or_else(|| format!("no file event for {path} opened through io_uring"));
            report.line("sensor-file-io-uring", seen);
        }
    }

    // A duplicated descriptor is no new open: the file's one open gives one event, its dup
    // none (fd_install sees both; the syscall hooks only the open).
    let dup_path = Path::new(WATCH).join("duplicated");
    let marker = Path::new(WATCH).join("after-the-dup");
    let is_write_of = |e: &Event, p: &Path| {
        matches!(e.kind(), EventKind::FileCreate | EventKind::FileModify)
            && e.file.as_ref().is_some_and(|f| Path::new(&f.path) == p)
    };
    let result = std::fs::File::create(&dup_path)
        .map_err(|e| format!("create: {e}"))
        .and_then(|f| {
            watch
                .wait_for(|e| is_write_of(e, &dup_path))
                .ok_or_else(|| "no event for the open".to_string())?;
            drop(f.try_clone().map_err(|e| format!("dup: {e}"))?);
            std::fs::write(&marker, b"x").map_err(|e| format!("marker: {e}"))?;
            watch
                .wait_for(|e| is_write_of(e, &marker))
                .ok_or_else(|| "no event for the marker written after the dup".to_string())?;
            match watch
                .seen
                .iter()
                .filter(|e| is_write_of(e, &dup_path))
                .count()
            {
                0 => Ok("one event for the open, none for its dup".to_string()),
                n => Err(format!("{n} events for the dup of an open file")),
            }
        });
    report.line("sensor-file-dup", result);
}

/// Create `path` for writing with an io_uring `IORING_OP_OPENAT` (no open syscall), then close
/// it.
fn open_for_write_by_io_uring(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut ring = io_uring::IoUring::new(4)?;
    let open = io_uring::opcode::OpenAt::new(io_uring::types::Fd(libc::AT_FDCWD), name.as_ptr())
        .flags(libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC)
        .mode(0o600)
        .build();
    // SAFETY: the entry points at `name`, which lives until its completion is reaped below.
    unsafe { ring.submission().push(&open) }.map_err(|e| std::io::Error::other(e.to_string()))?;
    ring.submit_and_wait(1)?;
    let fd = ring
        .completion()
        .next()
        .map(|c| c.result())
        .ok_or_else(|| std::io::Error::other("no completion"))?;
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: `fd` is the descriptor the open just returned, owned here and closed once.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

// ---- the same events whatever the hook ---------------------------------------------------------

/// A sensor held to `tier` for every kind that has it: the deep profile with the cheaper hooks
/// skipped.
fn held_to(tier: HookTier, protected: u32) -> Result<EbpfSensor, String> {
    EbpfSensor::load(&EbpfOptions {
        watched_prefixes: vec![format!("{WATCH}/")],
        ignore_self: false,
        protect_self: false,
        protected_pids: vec![protected],
        profile: Profile::Deep,
        skip_hooks: HookTier::ALL.into_iter().filter(|t| *t < tier).collect(),
        ..EbpfOptions::default()
    })
    .map_err(|e| e.to_string())
}

/// The event's ECS document without what differs by nature between two readers of one action
/// (the event's id and times).
fn comparable(e: &Event) -> serde_json::Value {
    let mut v = e.to_ecs();
    if let Some(o) = v.as_object_mut() {
        o.remove("@timestamp");
        if let Some(ev) = o.get_mut("event").and_then(|x| x.as_object_mut()) {
            for k in ["id", "created", "ingested"] {
                ev.remove(k);
            }
        }
        if let Some(p) = o.get_mut("process").and_then(|x| x.as_object_mut()) {
            p.remove("start");
        }
    }
    v
}

/// One action per kind, seen by a sensor on each hook tier this kernel has for it: the ECS
/// fields must be identical.
fn hook_parity(report: &mut Report) {
    let mut target = match Command::new("sleep").arg("30").spawn() {
        Ok(c) => c,
        Err(e) => {
            report.line("hook-parity", Err(format!("spawn sleep: {e}")));
            return;
        }
    };
    let tid = target.id();
    let mut watches: Vec<(HookTier, Watch)> = Vec::new();
    for tier in HookTier::ALL {
        match held_to(tier, tid) {
            Ok(sensor) => watches.push((
                tier,
                Watch {
                    sensor,
                    seen: Vec::new(),
                },
            )),
            Err(e) => report.line(&format!("hook-parity-{}", tier_tag(tier)), Err(e)),
        }
    }
    let _ = std::fs::create_dir_all(WATCH);
    let me = std::process::id();
    let created = Path::new(WATCH).join("parity-created");
    let renamed = Path::new(WATCH).join("parity-renamed");
    let _ = std::fs::remove_file(&created);
    let _ = std::fs::remove_file(&renamed);
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| {
        let port = l.local_addr()?.port();
        TcpStream::connect(("127.0.0.1", port))?;
        Ok(port)
    });
    // A resolver's way: a UDP socket connected to its server.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|u| u.connect("127.0.0.1:53").map(|()| u));
    let _ = std::fs::write(&created, b"x");
    let _ = std::fs::rename(&created, &renamed);
    let _ = std::fs::remove_file(&renamed);
    let _ = Command::new("kill")
        .args(["-TERM", &tid.to_string()])
        .status();
    let _ = target.wait();
    let port = port.ok();
    drop(udp);
    let created_s = created.display().to_string();
    let renamed_s = renamed.display().to_string();
    type Pred<'a> = Box<dyn Fn(&Event) -> bool + 'a>;
    let mine = move |e: &Event| e.process.as_ref().is_some_and(|p| p.pid == me);
    let checks: Vec<(&str, RecordKind, Pred)> = vec![
        (
            "connect",
            RecordKind::Connect,
            Box::new(move |e: &Event| {
                e.kind() == EventKind::NetworkConnect
                    && mine(e)
                    && e.network.as_ref().and_then(|n| n.destination_port) == port
            }),
        ),
        (
            "udp-connect",
            RecordKind::Connect,
            Box::new(move |e: &Event| {
                e.kind() == EventKind::NetworkConnect
                    && mine(e)
                    && e.network.as_ref().and_then(|n| n.destination_port) == Some(53)
            }),
        ),
        (
            "bind",
            RecordKind::Bind,
            Box::new(move |e: &Event| {
                e.kind() == EventKind::NetworkBind
                    && mine(e)
                    && e.network.as_ref().and_then(|n| n.transport.as_deref()) == Some("tcp")
            }),
        ),
        (
            "file-create",
            RecordKind::FileCreate,
            Box::new(|e: &Event| {
                e.kind() == EventKind::FileCreate
                    && e.file.as_ref().is_some_and(|f| f.path == created_s)
            }),
        ),
        (
            "file-rename",
            RecordKind::FileRename,
            Box::new(|e: &Event| {
                e.kind() == EventKind::FileRename
                    && e.file.as_ref().is_some_and(|f| f.path == renamed_s)
            }),
        ),
        (
            "file-delete",
            RecordKind::FileDelete,
            Box::new(|e: &Event| {
                e.kind() == EventKind::FileDelete
                    && e.file.as_ref().is_some_and(|f| f.path == renamed_s)
            }),
        ),
        (
            "signal",
            RecordKind::Signal,
            Box::new(move |e: &Event| {
                e.kind() == EventKind::Signal && e.target.as_ref().map(|t| t.pid) == Some(tid)
            }),
        ),
    ];
    for (what, kind, pred) in &checks {
        let mut seen: Vec<(HookTier, serde_json::Value)> = Vec::new();
        for (tier, w) in &mut watches {
            let got = w
                .sensor
                .kind_hooks()
                .iter()
                .find(|h| h.kinds.contains(kind))
                .and_then(|h| h.tier);
            if got != Some(*tier) {
                continue; // this kernel has no such hook for the kind
            }
            // The socket state tracepoint sees TCP only: UDP connects are not its to compare.
            if *what == "udp-connect" && *tier == HookTier::Tracepoint {
                continue;
            }
            match w.wait_for(|e| pred(e)) {
                Some(e) => seen.push((*tier, comparable(&e))),
                None => seen.push((*tier, serde_json::Value::Null)),
            }
        }
        let tiers: Vec<&str> = seen.iter().map(|(t, _)| tier_tag(*t)).collect();
        let result = match seen.split_first() {
            None => Err("no hook for it here".to_owned()),
            Some((first, rest)) => {
                if first.1.is_null() || rest.iter().any(|(_, v)| v.is_null()) {
                    Err(format!("missing from one of {}", tiers.join(", ")))
                } else if let Some((t, v)) = rest.iter().find(|(_, v)| *v != first.1) {
                    Err(format!(
                        "{} gave {} but {} gave {}",
                        tier_tag(first.0),
                        first.1,
                        tier_tag(*t),
                        v
                    ))
                } else {
                    Ok(format!("identical from {}", tiers.join(", ")))
                }
            }
        };
        report.line(&format!("hook-parity-{what}"), result);
    }
}

fn tier_tag(t: HookTier) -> &'static str {
    match t {
        HookTier::Fentry => "fentry",
        HookTier::Cgroup => "cgroup",
        HookTier::Tracepoint => "tracepoint",
        HookTier::Syscall => "syscall-tp",
    }
}

// ---- what each hook choice costs ------------------------------------------------------------

/// N x (open, stat, close) of a small file in this process; the elapsed time.
fn syscall_storm_here(n: usize) -> Duration {
    let path = Path::new("/tmp/rf-storm-file");
    let _ = std::fs::write(path, b"x");
    let start = Instant::now();
    for _ in 0..n {
        if let Ok(f) = std::fs::File::open(path) {
            let _ = f.metadata();
        }
    }
    start.elapsed()
}

/// N x /bin/true, one after another, from this process; the elapsed time.
fn exec_storm_here(n: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let _ = Command::new("/bin/true").status();
    }
    start.elapsed()
}

/// N x (socket, close) of an unbound Unix datagram socket in this process; the elapsed time.
/// Every descriptor install runs file writes' `fd_install` program where it is hooked, which
/// stops at its first test for a socket.
fn socket_storm_here(n: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        drop(std::os::unix::net::UnixDatagram::unbound());
    }
    start.elapsed()
}

/// One storm of `kind` (`syscall`, `exec`, `socket`) in this process.
fn storm_here(kind: &str, n: usize) -> Option<Duration> {
    match kind {
        "syscall" => Some(syscall_storm_here(n)),
        "exec" => Some(exec_storm_here(n)),
        "socket" => Some(socket_storm_here(n)),
        _ => None,
    }
}

/// `kernel_check storm syscall|exec|socket N`: one storm; prints its nanoseconds.
fn storm_child(args: &[String]) -> i32 {
    let n = args.get(1).and_then(|n| n.parse().ok());
    match (args.first(), n) {
        (Some(kind), Some(n)) => match storm_here(kind, n) {
            Some(took) => {
                println!("{}", took.as_nanos());
                0
            }
            None => 2,
        },
        _ => 2,
    }
}

/// A storm run in a process of its own, as the host's other processes are: not in this one,
/// which holds the sensor's descriptors (a program and a link for each hook). Every fork copies
/// its parent's descriptor table and every exec closes the copies, so an exec storm from here
/// would pay for each hook loaded whether or not it ran: 0.4–0.8 µs per exec per trampoline
/// on 6.1, counted. A storm that cannot run apart fails its check: run here, it would measure
/// that bias again.
fn storm_apart(kind: &str, n: usize) -> Result<Duration, String> {
    let exe = std::env::current_exe().map_err(|e| format!("the {kind} storm: {e}"))?;
    let out = Command::new(exe)
        .args(["storm", kind, &n.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("the {kind} storm's process: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u64>()
        .map(Duration::from_nanos)
        .map_err(|_| format!("the {kind} storm's process gave no time ({})", out.status))
}

/// The sensor with a reader thread draining and converting its records (the agent's first
/// stage), for as long as it lives.
struct Running {
    /// How many kinds got each hook ([`hook_summary`]).
    hooks: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// `read`: whether the reader drains the ring at all (`run_counts` may leave it unread).
    fn start(options: EbpfOptions, read: bool) -> Result<Running, String> {
        let mut sensor = EbpfSensor::load(&options).map_err(|e| e.to_string())?;
        let hooks = hook_summary(&sensor);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        // RF_STORM_DECODE_ONLY=1: the reader decodes each record but builds no event, to
        // tell the conversion's share of the cost.
        let convert_each = std::env::var_os("RF_STORM_DECODE_ONLY").is_none();
        let thread = std::thread::spawn(move || {
            let clocks = *sensor.clocks();
            let mut n = 0u64;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if !read {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                sensor.poll(|rec| {
                    if let Ok(rec) = rec {
                        if convert_each {
                            let e = convert::to_event(rec, &clocks);
                            n = n.wrapping_add(u64::from(e.process.is_some()));
                        } else {
                            n = n.wrapping_add(u64::from(std::hint::black_box(rec).kind as u16));
                        }
                    }
                });
            }
            std::hint::black_box(n);
        });
        Ok(Running {
            hooks,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The pause after the sensor loads or unloads before anything is timed.
const SETTLE: Duration = Duration::from_millis(1500);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The sensor setups the storms price, each with its name: the default profile on the best
/// hooks, the default profile without trampolines (tracepoints off the syscall path), the deep
/// profile without trampolines (syscall tracepoints), and the default profile without each
/// `+`-separated group of kinds in `RF_STORM_KINDS_OFF` (`memory_exec,file_modify+signal`).
/// `RF_STORM_POLL_MS` sets the reader's pause between drains (the agent's default 5 ms).
fn storm_choices(report: &mut Report) -> Vec<(String, EbpfOptions)> {
    let watched = vec!["/etc/".to_owned(), "/tmp/rf-watch/".to_owned()];
    let mut choices: Vec<(String, Profile, Vec<HookTier>, Vec<EventKind>)> = vec![
        ("default".into(), Profile::Default, vec![], vec![]),
        (
            "default-no-fentry".into(),
            Profile::Default,
            vec![HookTier::Fentry],
            vec![],
        ),
        (
            "deep-no-fentry".into(),
            Profile::Deep,
            vec![HookTier::Fentry],
            vec![],
        ),
    ];
    for group in std::env::var("RF_STORM_KINDS_OFF")
        .unwrap_or_default()
        .split('+')
    {
        if group.is_empty() {
            continue;
        }
        // A kind misspelt would price the wrong hooks without a word: it fails the run.
        let off: Result<Vec<EventKind>, String> = group
            .split(',')
            .map(|k| {
                serde_json::from_value(serde_json::Value::String(k.into()))
                    .map_err(|_| format!("RF_STORM_KINDS_OFF: no event kind {k:?}"))
            })
            .collect();
        match off {
            Ok(off) => choices.push((
                format!("default-without-{group}"),
                Profile::Default,
                vec![],
                off,
            )),
            Err(e) => report.line("storm-kinds-off", Err(e)),
        }
    }
    let poll_interval_ms = env_usize("RF_STORM_POLL_MS", 5) as u64;
    choices
        .into_iter()
        .map(|(name, profile, skip_hooks, kinds_off)| {
            let options = EbpfOptions {
                watched_prefixes: watched.clone(),
                profile,
                skip_hooks,
                kinds_off,
                poll_interval_ms,
                ..EbpfOptions::default()
            };
            (name, options)
        })
        .collect()
}

/// Storm ratios (with the sensor / without), for each hook choice ([`storm_choices`]). Each
/// round runs both storms without the sensor and with it (loaded for the round, its reader
/// converting every record), alternating which side goes first; the ratio is of the medians.
/// One `STORM` line per choice.
fn storms(report: &mut Report, choices: &[(String, EbpfOptions)]) {
    let n_sys: usize = env_usize("RF_STORM_SYSCALLS", 20_000);
    let n_exec: usize = env_usize("RF_STORM_EXECS", 100);
    let rounds: usize = env_usize("RF_STORM_ROUNDS", 4);
    let both = || Ok::<_, String>((storm_apart("syscall", n_sys)?, storm_apart("exec", n_exec)?));
    let _ = (
        storm_apart("syscall", n_sys / 4),
        storm_apart("exec", n_exec / 4),
    ); // warm up
    for (name, options) in choices {
        let mut hooks = String::new();
        let (mut sys_with, mut sys_without, mut exec_with, mut exec_without) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut failed = None;
        for round in 0..rounds {
            // Loading and unloading leave work behind (freed BTF, trampolines and links go
            // after RCU grace periods, on kernel threads): let it finish before a side is timed.
            let mut with = || -> Result<(Duration, Duration), String> {
                let running = Running::start(options.clone(), true)?;
                if hooks.is_empty() {
                    hooks.clone_from(&running.hooks);
                }
                std::thread::sleep(SETTLE);
                let d = both();
                drop(running);
                std::thread::sleep(SETTLE);
                d
            };
            let (w, wo) = if round % 2 == 0 {
                let w = with();
                (w, both())
            } else {
                let wo = both();
                (with(), wo)
            };
            match (w, wo) {
                (Ok((s, e)), Ok((s0, e0))) => {
                    sys_with.push(s.as_secs_f64());
                    exec_with.push(e.as_secs_f64());
                    sys_without.push(s0.as_secs_f64());
                    exec_without.push(e0.as_secs_f64());
                }
                (Err(e), _) | (_, Err(e)) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            Some(e) => report.line(&format!("storm-{name}"), Err(e)),
            None => {
                let s = median(sys_with) / median(sys_without).max(1e-9);
                let e = median(exec_with) / median(exec_without).max(1e-9);
                println!("STORM {name} syscall-storm {s:.3} exec-storm {e:.3} hooks {hooks}");
                report.line(
                    &format!("storm-{name}"),
                    Ok(format!(
                        "syscall-storm {s:.3}x exec-storm {e:.3}x ({rounds} rounds of {n_sys} \
                         open/stat/close and {n_exec} execs)"
                    )),
                );
            }
        }
    }
}

/// Each loaded program's run count, by name (kernel statistics must be on).
fn program_runs() -> std::collections::BTreeMap<String, (u64, Duration)> {
    let mut out = std::collections::BTreeMap::new();
    for info in aya::programs::loaded_programs().flatten() {
        let name = info.name_as_str().unwrap_or("?").to_owned();
        let e = out.entry(name).or_insert((0u64, Duration::ZERO));
        e.0 = e.0.saturating_add(info.run_count());
        e.1 = e.1.saturating_add(info.run_time());
    }
    out
}

/// `RF_STORM_RUN_COUNTS=1`: for no sensor and each storm choice ([`storm_choices`]), how long
/// one step of each storm takes (the exec and syscall storms, and N socket-and-close), and
/// which programs ran how often in it and for how long (with the kernel's run statistics on
/// for the while, which adds two clock reads per run: this is a diagnosis, not a price). One `RUNS` line per storm, and per storm and program that ran.
/// `RF_STORM_NO_READER=1` leaves the ring unread (records are dropped once it is full), to tell
/// the kernel's share from the reader's.
fn run_counts(report: &mut Report, choices: &[(String, EbpfOptions)]) {
    let n_sys: usize = env_usize("RF_STORM_SYSCALLS", 20_000);
    let n_exec: usize = env_usize("RF_STORM_EXECS", 100);
    let _stats = match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
        Ok(fd) => fd,
        Err(e) => return report.line("run-counts", Err(e.to_string())),
    };
    let _ = (
        storm_apart("syscall", n_sys / 4),
        storm_apart("exec", n_exec / 4),
    ); // warm up
    let read = std::env::var_os("RF_STORM_NO_READER").is_none();
    let choices: Vec<_> = std::iter::once(None)
        .chain(choices.iter().cloned().map(Some))
        .collect();
    // RF_STORM_RUN_PASSES: how many times the list is run through (what one setup leaves
    // behind, the next may pay for).
    let passes = env_usize("RF_STORM_RUN_PASSES", 1);
    let choices: Vec<_> = (0..passes).flat_map(|_| choices.iter().cloned()).collect();
    for choice in choices {
        let (name, running) = match choice {
            None => ("none".to_owned(), None),
            Some((name, options)) => match Running::start(options, read) {
                Ok(r) => (name, Some(r)),
                Err(e) => return report.line("run-counts", Err(e)),
            },
        };
        std::thread::sleep(SETTLE);
        let storms = [("exec", n_exec), ("syscall", n_sys), ("socket", n_sys)];
        for (storm_name, steps) in storms {
            let before = program_runs();
            let took = match storm_apart(storm_name, steps) {
                Ok(took) => took,
                Err(e) => return report.line("run-counts", Err(e)),
            };
            println!(
                "RUNS {name} {storm_name} storm {steps} steps ({} ns each)",
                took.as_nanos() / steps.max(1) as u128
            );
            for (prog, (runs, time)) in program_runs() {
                let (b_runs, b_time) = before.get(&prog).copied().unwrap_or_default();
                let runs = runs.saturating_sub(b_runs);
                if runs > 0 {
                    let ns = time.saturating_sub(b_time).as_nanos() / u128::from(runs);
                    println!("RUNS {name} {storm_name} {prog} {runs} ({ns} ns each)");
                }
            }
        }
        drop(running);
        std::thread::sleep(SETTLE);
    }
    report.line(
        "run-counts",
        Ok(format!("{n_exec} execs, {n_sys} syscalls")),
    );
}

/// `fentry 14, cgroup 0, tracepoint 3, syscall-tp 0, none 0`: how many kinds got each hook.
fn hook_summary(s: &EbpfSensor) -> String {
    let count = |t: Option<HookTier>| s.kind_hooks().iter().filter(|h| h.tier == t).count();
    format!(
        "fentry {}, cgroup {}, tracepoint {}, syscall-tp {}, none {}",
        count(Some(HookTier::Fentry)),
        count(Some(HookTier::Cgroup)),
        count(Some(HookTier::Tracepoint)),
        count(Some(HookTier::Syscall)),
        count(None)
    )
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---- the guard --------------------------------------------------------------------------------

/// What the attacker child must see: refused while armed, allowed once disarmed.
const ARMED: &[&str] = &[
    "kill",
    "ptrace",
    "write-open",
    "truncate",
    "unlink",
    "rename",
    "create",
    "bpf-link",
];
const DISARMED: &[&str] = &["kill", "write-open", "unlink", "bpf-link"];

fn guard_checks(report: &mut Report) {
    let dir = PathBuf::from(PROTECTED);
    let _ = std::fs::create_dir_all(&dir);
    if let Err(e) = std::fs::write(dir.join("state"), b"agent state") {
        report.line("guard-setup", Err(format!("{}: {e}", dir.display())));
        return;
    }
    // The service manager's part: a launcher, and an agent process it started (its child).
    let mut launcher = match Launching::start() {
        Ok(l) => Some(l),
        Err(e) => {
            report.line("guard-launcher", Err(e));
            None
        }
    };
    let options = GuardOptions {
        paths: vec![dir.clone()],
        agent_pids: launcher.iter().map(|l| l.agent).collect(),
        launcher: launcher
            .as_ref()
            .and_then(|l| ringfence_sensor::ebpf::guard::Launcher::parent_of(l.agent)),
        ..GuardOptions::default()
    };
    let mut guard = match Guard::load(&options) {
        Ok(g) => g,
        Err(e) => {
            let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
            if lsm.split(',').any(|l| l.trim() == "bpf") {
                report.line("guard-load", Err(e.to_string()));
            } else {
                report.skip(
                    "guard",
                    &format!("BPF LSM is not active (lsm={}): {e}", lsm.trim()),
                );
            }
            return;
        }
    };
    report.line(
        "guard-load",
        Ok("12 LSM programs attached and armed".into()),
    );
    // SAFETY: SIG_IGN for SIGUSR1 installs no handler code; the disarmed child's kill must not
    // end this process.
    unsafe { libc::signal(libc::SIGUSR1, libc::SIG_IGN) };
    let link = guard
        .objects()
        .iter()
        .find(|o| o.kind == BpfObjectKind::Link)
        .map_or(0, |o| o.id);

    report.line("guard-armed", run_attacker(&dir, link, "armed", ARMED));
    if let Some(launcher) = launcher.as_mut() {
        report.line("guard-launcher", launcher.ends_but_cannot_freeze());
    }
    let denials = guard.drain_denials();
    let me = std::process::id();
    report.line(
        "guard-report",
        if denials.is_empty() {
            Err("no refusal came back through the ring".into())
        } else {
            let hooks: std::collections::BTreeSet<&str> =
                denials.iter().map(|d| d.hook.name()).collect();
            let named = denials
                .iter()
                .all(|d| d.actor_tgid != me && !d.comm.is_empty());
            if named {
                Ok(format!("{} refusals, hooks {hooks:?}", denials.len()))
            } else {
                Err(format!("refusals without their actor: {denials:?}"))
            }
        },
    );

    report.line("guard-stale", stale_inodes_leave(&dir, &mut guard));

    match maintenance_token(&dir) {
        Ok((root, token)) => {
            let outcome = apply_maintenance_token(&token, &root, &host_name(), &mut guard);
            match outcome {
                Ok(MaintenanceOutcome { action, .. }) => {
                    report.line("guard-token", Ok(format!("signed {action} token accepted")));
                    report.line(
                        "guard-disarmed",
                        run_attacker(&dir, link, "disarmed", DISARMED),
                    );
                }
                Err(e) => report.line("guard-token", Err(e)),
            }
        }
        Err(e) => report.line("guard-token", Err(e)),
    }
}

/// A file the agent itself deletes from a protected tree leaves the guard's set at the next
/// refresh: its inode number is free for any new file on the filesystem, whose writes would
/// otherwise be refused.
fn stale_inodes_leave(dir: &Path, guard: &mut Guard) -> Result<String, String> {
    let before = guard.refresh_paths().map_err(|e| e.to_string())?;
    let extra = dir.join("bundle-old");
    std::fs::write(&extra, b"old bundle").map_err(|e| format!("{}: {e}", extra.display()))?;
    let with = guard.refresh_paths().map_err(|e| e.to_string())?;
    std::fs::remove_file(&extra).map_err(|e| format!("{}: {e}", extra.display()))?;
    let after = guard.refresh_paths().map_err(|e| e.to_string())?;
    if with == before + 1 && after == before {
        Ok(format!("{before} -> {with} -> {after} protected inodes"))
    } else {
        Err(format!(
            "protected inodes {before} -> {with} (one file added) -> {after} (it deleted)"
        ))
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// A fresh trust root and a disarm token for this host, signed by its root keys.
fn maintenance_token(
    dir: &Path,
) -> Result<(ringfence_content::verify::TrustedRoot, Vec<u8>), String> {
    use ringfence_content::keys::{KeysInitOptions, init_keys};
    use ringfence_content::maintenance::{
        MaintenanceAction, MaintenanceClaims, sign_maintenance_token,
    };
    use ringfence_content::time::UnixTime;
    let keys_dir = std::env::temp_dir().join(format!("rf-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&keys_dir);
    let now = UnixTime::now();
    let keys = init_keys(&keys_dir, &KeysInitOptions::new(now)).map_err(|e| e.to_string())?;
    let claims = MaintenanceClaims::new(
        MaintenanceAction::Disarm,
        host_name(),
        now,
        600,
        format!("kernel matrix: disarm the guard over {}", dir.display()),
    )
    .map_err(|e| e.to_string())?;
    let token = sign_maintenance_token(&keys, &claims).map_err(|e| e.to_string())?;
    Ok((keys.trusted_root().clone(), token))
}

fn run_attacker(dir: &Path, link: u32, phase: &str, expect: &[&str]) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .arg("attack")
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(link.to_string())
        .arg(phase)
        .output()
        .map_err(|e| format!("attacker: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let wanted = if phase == "armed" {
        "denied"
    } else {
        "allowed"
    };
    let mut bad = Vec::new();
    for name in expect {
        let line = text
            .lines()
            .find(|l| l.split(':').next() == Some(name))
            .unwrap_or("");
        if !line.contains(wanted) {
            bad.push(format!("{name} not {wanted} ({})", line.trim()));
        }
    }
    if bad.is_empty() && out.status.success() {
        Ok(format!("{} {wanted}", expect.join(", ")))
    } else {
        Err(format!(
            "{}; attacker said: {}",
            bad.join("; "),
            text.trim()
        ))
    }
}

// ---- the attacker child -----------------------------------------------------------------------

fn attack(args: &[String]) -> i32 {
    let (Some(pid), Some(dir), Some(link), Some(phase)) = (
        args.first().and_then(|p| p.parse::<i32>().ok()),
        args.get(1).map(PathBuf::from),
        args.get(2).and_then(|l| l.parse::<u32>().ok()),
        args.get(3),
    ) else {
        eprintln!("usage: kernel_check attack PID DIR LINK_ID armed|disarmed");
        return 2;
    };
    let state = dir.join("state");
    let armed = phase == "armed";
    // While armed, SIGKILL is the real attempt; once disarmed, SIGUSR1 (ignored by the target)
    // shows the signal gets through without ending the check.
    let sig = if armed { libc::SIGKILL } else { libc::SIGUSR1 };
    // SAFETY: kill(2) with plain integers.
    say("kill", os(unsafe { libc::kill(pid, sig) }));
    if armed {
        // SAFETY: ptrace(2) with plain integers; a success is undone by the detach below.
        let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) };
        say("ptrace", os(rc as i32));
        if rc == 0 {
            // SAFETY: as above.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
        }
    }
    say("read-open", std::fs::File::open(&state).map(drop));
    say(
        "write-open",
        std::fs::OpenOptions::new()
            .append(true)
            .open(&state)
            .map(drop),
    );
    if armed {
        let c = CString::new(state.as_os_str().as_encoded_bytes()).unwrap_or_default();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        say("truncate", os(unsafe { libc::truncate(c.as_ptr(), 0) }));
        say("rename", std::fs::rename(&state, dir.join("moved")));
        say("create", std::fs::write(dir.join("planted"), b"x"));
    }
    say("unlink", std::fs::remove_file(&state));
    say("bpf-link", link_fd_by_id(link));
    0
}

/// A launcher child (`kernel_check launcher`) and the protected process it started, as systemd
/// and the agent's supervisor: the guard lets the launcher end the agent (systemd's SIGKILL at
/// the end of a stop timeout, systemd-shutdown's at shutdown) but not freeze it.
struct Launching {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    agent: u32,
}

impl Launching {
    fn start() -> Result<Launching, String> {
        use std::io::BufRead;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("launcher")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("launcher: {e}"))?;
        let Some(stdout) = child.stdout.take() else {
            return Err("launcher: no stdout".into());
        };
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let Some(agent) = first
            .strip_prefix("agent ")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            let _ = child.kill();
            return Err(format!("launcher: no agent started ({first:?})"));
        };
        Ok(Launching {
            child,
            lines,
            agent,
        })
    }

    /// Ask the launcher to send `signal` to its agent; what it said.
    fn signal(&mut self, signal: i32) -> String {
        use std::io::Write;
        let Some(stdin) = self.child.stdin.as_mut() else {
            return "launcher: no stdin".into();
        };
        if writeln!(stdin, "{signal}")
            .and_then(|()| stdin.flush())
            .is_err()
        {
            return "launcher: gone".into();
        }
        self.lines.next().and_then(Result::ok).unwrap_or_default()
    }

    fn ends_but_cannot_freeze(&mut self) -> Result<String, String> {
        let freeze = self.signal(libc::SIGSTOP);
        let kill = self.signal(libc::SIGKILL);
        let reaped = self.signal(0);
        if freeze.contains("denied") && kill.contains("allowed") && reaped.contains("signal 9") {
            Ok("the launcher's SIGSTOP refused, its SIGKILL ended the agent process".into())
        } else {
            Err(format!(
                "SIGSTOP: {freeze}; SIGKILL: {kill}; then: {reaped}"
            ))
        }
    }
}

impl Drop for Launching {
    fn drop(&mut self) {
        // The launcher ends at the end of its input, and takes its agent with it if it can.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// `kernel_check launcher`: starts an idle agent process (prints `agent PID`), then sends it
/// each signal number read from stdin, printing the outcome; 0 waits for it and prints how it
/// ended.
fn launcher_child() -> i32 {
    use std::io::BufRead;
    let Ok(exe) = std::env::current_exe() else {
        return 1;
    };
    let Ok(mut agent) = Command::new(exe).arg("idle").spawn() else {
        println!("agent none");
        return 1;
    };
    let pid = agent.id();
    println!("agent {pid}");
    for line in std::io::stdin().lock().lines() {
        let Ok(signal) = line.unwrap_or_default().trim().parse::<i32>() else {
            break;
        };
        if signal == 0 {
            // A kill the guard refused leaves it running: wait 5 s, not its 600.
            use std::os::unix::process::ExitStatusExt;
            let deadline = Instant::now() + Duration::from_secs(5);
            let ended = loop {
                match agent.try_wait() {
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    other => break other,
                }
            };
            match ended {
                Ok(Some(status)) => println!("ended by signal {}", status.signal().unwrap_or(0)),
                Ok(None) => println!("still running after 5 s"),
                Err(e) => println!("wait: {e}"),
            }
            continue;
        }
        let pid = i32::try_from(pid).unwrap_or(i32::MAX);
        // SAFETY: kill(2) with plain integers.
        say(
            &format!("kill-{signal}"),
            os(unsafe { libc::kill(pid, signal) }),
        );
    }
    let _ = agent.kill();
    let _ = agent.wait();
    0
}

/// `bpf(BPF_LINK_GET_FD_BY_ID)`: the first step of `bpftool link detach`.
fn link_fd_by_id(id: u32) -> std::io::Result<()> {
    const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
    let mut attr = [0u32; 4];
    attr[0] = id;
    // SAFETY: `attr` is a zeroed bpf_attr prefix of the size passed; the kernel only reads it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_GET_FD_BY_ID,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd >= 0 {
        // SAFETY: the kernel just returned this descriptor to us.
        unsafe { libc::close(fd as i32) };
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A libc return code as a result, with errno on failure.
fn os(rc: i32) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One line: `name: denied (EPERM)` or `name: allowed` or `name: failed (error)`.
fn say(name: &str, result: std::io::Result<()>) {
    match result {
        Ok(()) => println!("{name}: allowed"),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => println!("{name}: denied (EPERM)"),
        Err(e) => println!("{name}: failed ({e})"),
    }
}
