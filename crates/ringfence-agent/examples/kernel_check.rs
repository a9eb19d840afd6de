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
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ringfence_agent::protect::{MaintenanceOutcome, apply_maintenance_token};
use ringfence_event::{Event, EventKind};
use ringfence_sensor::ebpf::guard::{BpfObjectKind, Guard, GuardOptions};
use ringfence_sensor::ebpf::{EbpfOptions, EbpfSensor, convert};

const WATCH: &str = "/tmp/rf-watch";
const PROTECTED: &str = "/tmp/rf-protected";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("attack") {
        std::process::exit(attack(&args[2..]));
    }
    let mut report = Report::default();
    sensor_checks(&mut report);
    guard_checks(&mut report);
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

fn sensor_checks(report: &mut Report) {
    let _ = std::fs::create_dir_all(WATCH);
    let options = EbpfOptions {
        watched_prefixes: vec![format!("{WATCH}/")],
        ignore_self: false,
        protect_self: false,
        ..EbpfOptions::default()
    };
    let sensor = match EbpfSensor::load(&options) {
        Ok(s) => s,
        Err(e) => {
            report.line("sensor-load", Err(e.to_string()));
            return;
        }
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
    let refused: Vec<String> = sensor
        .attached()
        .iter()
        .filter(|a| !a.absent)
        .filter_map(describe)
        .collect();
    let attached = sensor.attached().len() - absent.len() - refused.len();
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
    let options = GuardOptions {
        paths: vec![dir.clone()],
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
