//! Reading one process from /proc, safely against pid reuse, and the start-up snapshot.
//!
//! [`read_process`] opens `/proc/PID` once and reads everything through that directory handle,
//! so every file comes from the same process: if the pid is reused while we read, the old
//! handle fails instead of describing the newcomer. The start time in `stat` is compared with
//! the time the kernel reported the event: a process that started after its own event is a
//! different one, and nothing it says is used.
//!
//! Nothing here fails the caller: whatever could not be read is left empty and `complete` says
//! so, and the event is sent `partial`.

use procfs::process::Process as ProcProcess;
use ringfence_event::{Event, Parent, Process, Timestamp, User};

use crate::sys::Clocks;

/// What /proc told us about one process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub executable: Option<String>,
    /// `comm`, or the last component of the executable.
    pub name: Option<String>,
    pub args: Vec<String>,
    pub working_directory: Option<String>,
    /// Start time on `CLOCK_BOOTTIME`, nanoseconds.
    pub start_boot_ns: Option<u64>,
    pub start: Option<Timestamp>,
    pub uid: Option<u32>,
    pub euid: Option<u32>,
    pub gid: Option<u32>,
    /// Every field above that can be read was read.
    pub complete: bool,
    /// The pid belonged to another process than the one asked about.
    pub reused: bool,
}

/// One clock tick of /proc start times, in nanoseconds (USER_HZ is 100 on Linux).
fn tick_ns() -> u64 {
    1_000_000_000 / procfs::ticks_per_second().max(1)
}

/// CPU time `pid` has used so far, user plus system (`utime + stime` of `/proc/PID/stat`, all
/// threads). `None` when the process is gone or unreadable.
pub fn cpu_time(pid: u32) -> Option<std::time::Duration> {
    let stat = ProcProcess::new(i32::try_from(pid).ok()?)
        .ok()?
        .stat()
        .ok()?;
    let ticks = stat.utime.saturating_add(stat.stime);
    Some(std::time::Duration::from_nanos(
        ticks.saturating_mul(tick_ns()),
    ))
}

/// CPU time the live threads of `pid` have used so far, to the nanosecond (the first field of
/// each `/proc/PID/task/TID/schedstat`), where [`cpu_time`] counts 10 ms ticks. Threads that
/// already exited are not counted. `None` when the process is gone or unreadable.
pub fn threads_cpu_time(pid: u32) -> Option<std::time::Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns = 0u64;
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue; // the thread just exited
        };
        let on_cpu = text
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok());
        ns = ns.saturating_add(on_cpu.unwrap_or(0));
    }
    Some(std::time::Duration::from_nanos(ns))
}

/// The state letter of `pid` (`R`, `S`, `T` stopped, `t` traced, `Z`, ...).
pub fn state(pid: u32) -> Option<char> {
    Some(
        ProcProcess::new(i32::try_from(pid).ok()?)
            .ok()?
            .stat()
            .ok()?
            .state,
    )
}

/// The parent of `pid`, and that parent's start time in clock ticks after boot.
pub fn parent_with_start(pid: u32) -> Option<(u32, u64)> {
    let ppid = ProcProcess::new(i32::try_from(pid).ok()?)
        .ok()?
        .stat()
        .ok()?
        .ppid;
    let start = ProcProcess::new(ppid).ok()?.stat().ok()?.starttime;
    Some((u32::try_from(ppid).ok()?, start))
}

/// Resident set size of `pid` now, in bytes (`VmRSS` of `/proc/PID/status`). `None` when the
/// process is gone or unreadable.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = ProcProcess::new(i32::try_from(pid).ok()?)
        .ok()?
        .status()
        .ok()?;
    status.vmrss.map(|kib| kib.saturating_mul(1024))
}

/// Read `pid` from /proc. `not_after_boot_ns`: the `CLOCK_BOOTTIME` of the event; a process
/// that started later than that (plus one tick of rounding) is a reused pid.
pub fn read_process(pid: u32, not_after_boot_ns: Option<u64>, clocks: &Clocks) -> ProcInfo {
    let mut info = ProcInfo {
        pid,
        ..ProcInfo::default()
    };
    let Ok(p) = i32::try_from(pid)
        .map_err(|_| ())
        .and_then(|p| ProcProcess::new(p).map_err(|_| ()))
    else {
        return info;
    };
    let mut complete = true;
    // Most valuable and most perishable first: a short-lived process may be gone after the
    // first read. The pid-reuse check below still covers them: all reads go through one handle.
    let args = p.cmdline();
    let exe = p.exe();
    match p.stat() {
        Ok(stat) => {
            let start = stat.starttime.saturating_mul(tick_ns());
            if let Some(limit) = not_after_boot_ns
                && start > limit.saturating_add(2 * tick_ns())
            {
                info.reused = true;
                return info;
            }
            info.start_boot_ns = Some(start);
            info.start = Some(clocks.from_boottime(start));
            info.ppid = u32::try_from(stat.ppid).ok();
            info.name = Some(stat.comm);
        }
        Err(_) => complete = false,
    }
    match exe {
        Ok(exe) => info.executable = Some(exe.to_string_lossy().into_owned()),
        // Kernel threads have no executable; that is not a failure.
        Err(_) => complete &= info.ppid == Some(2) || pid == 2,
    }
    match args {
        Ok(args) if !args.is_empty() || info.executable.is_none() => info.args = args,
        // An empty cmdline for a user process means it exited (or is a zombie) before we read.
        _ => complete = false,
    }
    match p.cwd() {
        Ok(cwd) => info.working_directory = Some(cwd.to_string_lossy().into_owned()),
        Err(_) => complete &= info.executable.is_none(),
    }
    match p.status() {
        Ok(st) => {
            info.uid = Some(st.ruid);
            info.euid = Some(st.euid);
            info.gid = Some(st.rgid);
        }
        Err(_) => complete = false,
    }
    info.complete = complete;
    info
}

impl ProcInfo {
    /// Fill `event`'s process and user from what was read. Fields already set are kept.
    pub fn fill(&self, event: &mut Event) {
        let proc_ = event.process.get_or_insert_with(|| Process {
            pid: self.pid,
            ..Process::default()
        });
        fill_if_none(&mut proc_.executable, &self.executable);
        let name = self
            .executable
            .as_deref()
            .and_then(|e| e.rsplit('/').next())
            .map(str::to_owned)
            .or_else(|| self.name.clone());
        fill_if_none(&mut proc_.name, &name);
        if proc_.args.is_empty() && !self.args.is_empty() {
            proc_.args = self.args.clone();
        }
        if proc_.command_line.is_none() && !proc_.args.is_empty() {
            proc_.command_line = Some(proc_.args.join(" "));
        }
        fill_if_none(&mut proc_.working_directory, &self.working_directory);
        if proc_.start.is_none() {
            proc_.start = self.start;
        }
        if proc_.parent.is_none()
            && let Some(ppid) = self.ppid
        {
            proc_.parent = Some(Parent {
                pid: ppid,
                ..Parent::default()
            });
        }
        let user: &mut User = &mut event.user;
        if user.id.is_none() {
            user.id = self.uid.map(i64::from);
        }
        if user.effective_id.is_none() {
            user.effective_id = self.euid.map(i64::from);
        }
        if user.group_id.is_none() {
            user.group_id = self.gid.map(i64::from);
        }
    }
}

fn fill_if_none(slot: &mut Option<String>, value: &Option<String>) {
    if slot.is_none() {
        slot.clone_from(value);
    }
}

/// Every process on the host now (pid order is not guaranteed). Unreadable entries are skipped
/// and counted in the second value.
pub fn snapshot(clocks: &Clocks) -> (Vec<ProcInfo>, u64) {
    let mut out = Vec::new();
    let mut unreadable = 0;
    let Ok(all) = procfs::process::all_processes() else {
        return (out, 1);
    };
    for p in all {
        match p {
            Ok(p) => match u32::try_from(p.pid()) {
                Ok(pid) => out.push(read_process(pid, None, clocks)),
                Err(_) => unreadable += 1,
            },
            Err(_) => unreadable += 1,
        }
    }
    (out, unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ourselves_completely() {
        let c = Clocks::read();
        let me = read_process(std::process::id(), None, &c);
        assert!(me.complete, "{me:?}");
        assert!(me.executable.is_some());
        assert!(!me.args.is_empty());
        assert!(me.ppid.is_some());
    }

    #[test]
    fn a_process_younger_than_its_event_is_a_reused_pid() {
        let c = Clocks::read();
        let me = read_process(std::process::id(), Some(0), &c);
        assert!(me.reused);
        assert!(me.executable.is_none());
    }

    #[test]
    fn missing_pid_is_incomplete_not_an_error() {
        let info = read_process(u32::MAX - 1, None, &Clocks::read());
        assert!(!info.complete);
        let mut e = Event::default();
        info.fill(&mut e);
        assert_eq!(e.process.map(|p| p.pid), Some(u32::MAX - 1));
    }

    #[test]
    fn cpu_time_of_ourselves_grows() {
        let me = std::process::id();
        let before = cpu_time(me);
        assert!(before.is_some());
        // Spin until the kernel has charged us another tick (bounded, in case it never does).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut x = 0u64;
        while cpu_time(me) <= before && std::time::Instant::now() < deadline {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        assert!(cpu_time(me) > before);
        assert_eq!(cpu_time(u32::MAX), None);
    }

    #[test]
    fn threads_cpu_time_counts_nanoseconds() {
        let me = std::process::id();
        let before = threads_cpu_time(me).unwrap_or_default();
        let mut x = 0u64;
        for _ in 0..1_000_000 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = threads_cpu_time(me).unwrap_or_default();
        assert!(after > before, "{before:?} -> {after:?}");
        assert_eq!(threads_cpu_time(u32::MAX), None);
    }

    #[test]
    fn snapshot_sees_ourselves() {
        let (all, _) = snapshot(&Clocks::read());
        assert!(all.iter().any(|p| p.pid == std::process::id()));
    }
}
