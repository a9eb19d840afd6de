//! Reading one process from /proc, safely against pid reuse, and the start-up snapshot.
//!
//! [`read_process`] opens `/proc/PID` once and reads everything through that directory handle,
//! so every file comes from the same process: if the pid is reused while we read, the old
//! handle fails instead of describing the newcomer. The start time in `stat` is compared with
//! the time the kernel reported the event: a process that started after its own event is a
//! different one, and nothing it says is used.
//!
//! Without audit, the process connector calls [`read_process`] for every exec, racing the
//! process's exit, so the reads are few and plain: one directory handle, three small files into
//! one buffer, two links, and only the fields Ringfence uses parsed out of `stat` and `status`.
//!
//! Nothing here fails the caller: whatever could not be read is left empty and `complete` says
//! so, and the event is sent `partial`.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::time::Duration;

use std::sync::Arc;

use ringfence_event::{Container, Event, Parent, Process, Timestamp, User};
use rustix::fs::{Mode, OFlags};

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
    /// The container the process runs in, from its cgroup path (see [`crate::container`]).
    pub container: Option<Arc<Container>>,
    /// Every field above that can be read was read.
    pub complete: bool,
    /// The pid belonged to another process than the one asked about.
    pub reused: bool,
}

/// The fields of `/proc/PID/stat` Ringfence uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The command name between the parentheses (it may itself hold spaces and parentheses).
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    /// User and system time, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// Parse the text of `/proc/PID/stat`. The fields after the command name are found from its
/// *last* `)`, so a name such as `a) R 1 (b` cannot shift them.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let comm = String::from_utf8_lossy(text.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    // After the command name: state(0) ppid(1) pgrp session tty tpgid flags minflt cminflt
    // majflt cmajflt utime(11) stime(12) cutime cstime priority nice threads itrealvalue
    // starttime(19).
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let mut fields = fields.skip(9);
    let utime = fields.next()?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    let start_ticks = fields.nth(6)?.parse().ok()?;
    Some(Stat {
        comm,
        state,
        ppid,
        utime,
        stime,
        start_ticks,
    })
}

/// The fields of `/proc/PID/status` Ringfence uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub ruid: Option<u32>,
    pub euid: Option<u32>,
    pub rgid: Option<u32>,
    /// Resident set size, KiB.
    pub vm_rss_kib: Option<u64>,
}

/// Parse the text of `/proc/PID/status`, line by line; lines Ringfence does not use are skipped
/// unread, and a malformed value leaves its field `None`.
pub fn parse_status(text: &[u8]) -> Status {
    let mut st = Status::default();
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, value) = line.split_at(colon);
        let mut values = std::str::from_utf8(value.get(1..).unwrap_or_default())
            .unwrap_or_default()
            .split_ascii_whitespace();
        let mut next = || values.next().and_then(|v| v.parse::<u64>().ok());
        match key {
            b"Uid" => {
                st.ruid = next().and_then(|v| u32::try_from(v).ok());
                st.euid = next().and_then(|v| u32::try_from(v).ok());
            }
            b"Gid" => st.rgid = next().and_then(|v| u32::try_from(v).ok()),
            b"VmRSS" => st.vm_rss_kib = next(),
            _ => {}
        }
    }
    st
}

/// The most read from one /proc file. A process chooses its own command line, and with a large
/// stack limit it can make it hundreds of megabytes; past this the arguments are cut.
const READ_LIMIT: usize = 1 << 20;

/// The least room offered to one read of a /proc file.
const READ_CHUNK: usize = 4096;

/// The directory `/proc/PID`, opened once (`O_PATH`): every file read through it belongs to the
/// process that had the pid when it was opened.
struct ProcDir(OwnedFd);

impl ProcDir {
    fn open(pid: u32) -> Option<ProcDir> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        rustix::fs::openat(
            rustix::fs::CWD,
            format!("/proc/{pid}"),
            flags,
            Mode::empty(),
        )
        .ok()
        .map(ProcDir)
    }

    /// Read the file `name` into `buf` (cleared first), up to [`READ_LIMIT`] bytes.
    ///
    /// A read that comes back short has everything: these files are made whole at each read
    /// (`stat`, `status` and `cgroup` are one seq_file record, and `cmdline` is copied until the
    /// argument area ends). So a small file takes one read, not a second one that returns 0;
    /// this runs for every exec in driverless mode.
    fn read(&self, name: &str, buf: &mut Vec<u8>) -> Option<()> {
        buf.clear();
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        let mut file =
            std::fs::File::from(rustix::fs::openat(&self.0, name, flags, Mode::empty()).ok()?);
        loop {
            let len = buf.len();
            // Room doubles what was read (a long command line), from READ_CHUNK.
            let room = READ_CHUNK.max(len).min(READ_LIMIT - len);
            if room == 0 {
                return Some(());
            }
            buf.resize(len + room, 0);
            let got = file.read(buf.get_mut(len..).unwrap_or_default());
            match got {
                Ok(n) => {
                    buf.truncate(len + n);
                    if n < room {
                        return Some(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.truncate(len),
                Err(_) => {
                    buf.truncate(len);
                    return None;
                }
            }
        }
    }

    /// The target of the link `name` (`exe`, `cwd`).
    fn link(&self, name: &str) -> Option<String> {
        let target = rustix::fs::readlinkat(&self.0, name, Vec::new()).ok()?;
        // Valid UTF-8 (nearly always) is taken as is; only other bytes are copied, replaced.
        Some(
            target.into_string().unwrap_or_else(|e| {
                String::from_utf8_lossy(e.into_cstring().as_bytes()).into_owned()
            }),
        )
    }

    fn stat(&self, buf: &mut Vec<u8>) -> Option<Stat> {
        self.read("stat", buf)?;
        parse_stat(buf)
    }

    /// The real and effective uid and the real gid (`status`).
    fn ids(&self, buf: &mut Vec<u8>) -> Option<(u32, u32, u32)> {
        self.read("status", buf)?;
        let st = parse_status(buf);
        Some((st.ruid?, st.euid?, st.rgid?))
    }
}

/// Every pid in /proc now (unreadable entries are skipped).
pub fn pids() -> Vec<u32> {
    let Ok(all) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    all.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// One clock tick of /proc start times, in nanoseconds (USER_HZ is 100 on Linux).
fn tick_ns() -> u64 {
    1_000_000_000 / rustix::param::clock_ticks_per_second().max(1)
}

/// The `stat` of `pid`, or `None` when it is gone or unreadable.
fn stat_of(pid: u32) -> Option<Stat> {
    ProcDir::open(pid)?.stat(&mut Vec::new())
}

/// CPU time `pid` has used so far, user plus system (`utime + stime` of `/proc/PID/stat`, all
/// threads). `None` when the process is gone or unreadable.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = stat_of(pid)?;
    let ticks = stat.utime.saturating_add(stat.stime);
    Some(Duration::from_nanos(ticks.saturating_mul(tick_ns())))
}

/// CPU time the live threads of `pid` have used so far, to the nanosecond (the first field of
/// each `/proc/PID/task/TID/schedstat`), where [`cpu_time`] counts 10 ms ticks. Threads that
/// already exited are not counted. `None` when the process is gone or unreadable.
pub fn threads_cpu_time(pid: u32) -> Option<Duration> {
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
    Some(Duration::from_nanos(ns))
}

/// The state letter of `pid` (`R`, `S`, `T` stopped, `t` traced, `Z`, ...).
pub fn state(pid: u32) -> Option<char> {
    Some(stat_of(pid)?.state)
}

/// The parent of `pid`, and that parent's start time in clock ticks after boot.
pub fn parent_with_start(pid: u32) -> Option<(u32, u64)> {
    let ppid = stat_of(pid)?.ppid;
    Some((ppid, stat_of(ppid)?.start_ticks))
}

/// Resident set size of `pid` now, in bytes (`VmRSS` of `/proc/PID/status`). `None` when the
/// process is gone or unreadable.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let mut buf = Vec::new();
    ProcDir::open(pid)?.read("status", &mut buf)?;
    Some(parse_status(&buf).vm_rss_kib?.saturating_mul(1024))
}

/// Read `pid` from /proc. `not_after_boot_ns`: the `CLOCK_BOOTTIME` of the event; a process
/// that started later than that (plus one tick of rounding) is a reused pid.
pub fn read_process(pid: u32, not_after_boot_ns: Option<u64>, clocks: &Clocks) -> ProcInfo {
    read_process_with(pid, not_after_boot_ns, clocks, true)
}

/// The real and effective uid and the real gid of `pid` (`/proc/PID/status`).
pub fn read_ids(pid: u32) -> Option<(u32, u32, u32)> {
    ProcDir::open(pid)?.ids(&mut Vec::with_capacity(4096))
}

/// [`read_process`]; `ids`: whether to read who the process runs as (`status`, the costliest of
/// the files: the process connector's reader knows it from the kernel's messages instead).
pub fn read_process_with(
    pid: u32,
    not_after_boot_ns: Option<u64>,
    clocks: &Clocks,
    ids: bool,
) -> ProcInfo {
    let mut info = ProcInfo {
        pid,
        ..ProcInfo::default()
    };
    let Some(dir) = ProcDir::open(pid) else {
        return info;
    };
    let mut complete = true;
    let mut buf = Vec::with_capacity(4096);
    // Most valuable and most perishable first: a short-lived process may be gone after the
    // first read. The pid-reuse check below still covers them: all reads go through one handle.
    let args = dir.read("cmdline", &mut buf).map(|()| split_args(&buf));
    let exe = dir.link("exe");
    match dir.stat(&mut buf) {
        Some(stat) => {
            let start = stat.start_ticks.saturating_mul(tick_ns());
            if let Some(limit) = not_after_boot_ns
                && start > limit.saturating_add(2 * tick_ns())
            {
                info.reused = true;
                return info;
            }
            info.start_boot_ns = Some(start);
            info.start = Some(clocks.from_boottime(start));
            // A process already released (it exited while we read) reports parent 0; only
            // init and kthreadd have no parent. Unknown, then: the tree knows it from the fork.
            if stat.ppid != 0 || pid <= 2 {
                info.ppid = Some(stat.ppid);
            } else {
                complete = false;
            }
            info.name = Some(stat.comm);
        }
        None => complete = false,
    }
    match exe {
        Some(exe) => info.executable = Some(exe),
        // Kernel threads have no executable; that is not a failure.
        None => complete &= info.ppid == Some(2) || pid == 2,
    }
    match args {
        Some(args) if !args.is_empty() || info.executable.is_none() => info.args = args,
        // An empty cmdline for a user process means it exited (or is a zombie) before we read.
        _ => complete = false,
    }
    match dir.link("cwd") {
        Some(cwd) => info.working_directory = Some(cwd),
        None => complete &= info.executable.is_none(),
    }
    if ids {
        match dir.ids(&mut buf) {
            Some((uid, euid, gid)) => {
                info.uid = Some(uid);
                info.euid = Some(euid);
                info.gid = Some(gid);
            }
            None => complete = false,
        }
    }
    // Outside a container this is no failure: most processes run in none.
    if dir.read("cgroup", &mut buf).is_some() {
        info.container = crate::container::of_cgroup_text(&buf);
    }
    info.complete = complete;
    info
}

/// The NUL-separated arguments of `cmdline`; empty ones are skipped.
fn split_args(cmdline: &[u8]) -> Vec<String> {
    cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
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
        if event.container.is_none() {
            event.container.clone_from(&self.container);
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
    let Ok(all) = std::fs::read_dir("/proc") else {
        return (out, 1);
    };
    for entry in all {
        let Ok(entry) = entry else {
            unreadable += 1;
            continue;
        };
        // Only the numeric entries are processes.
        if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            out.push(read_process(pid, None, clocks));
        }
    }
    (out, unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_the_last_parenthesis() {
        let text = b"42 (a) R 1 (b) S 7 42 42 0 -1 4194560 100 0 0 0 \
                     5 3 0 0 20 0 1 0 123456 1000 200";
        let st = parse_stat(text);
        assert_eq!(
            st,
            Some(Stat {
                comm: "a) R 1 (b".into(),
                state: 'S',
                ppid: 7,
                utime: 5,
                stime: 3,
                start_ticks: 123456,
            })
        );
        assert_eq!(parse_stat(b"42 (cut) S 7"), None);
        assert_eq!(parse_stat(b"no parentheses"), None);
        assert_eq!(parse_stat(b") before ("), None);
    }

    #[test]
    fn status_gives_ids_and_rss_and_ignores_the_rest() {
        let text = b"Name:\tbash\nUid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\n\
                     VmRSS:\t  5120 kB\nUid:x\n";
        let st = parse_status(text);
        assert_eq!(st.euid, None, "the last Uid line wins, and it is malformed");
        let st = parse_status(text.split_at(text.len() - 6).0);
        assert_eq!(
            st,
            Status {
                ruid: Some(1000),
                euid: Some(0),
                rgid: Some(100),
                vm_rss_kib: Some(5120),
            }
        );
        assert_eq!(
            parse_status(b"\xff\xfe:\n:::\nUid:\t99999999999\n"),
            Status::default()
        );
    }

    #[test]
    fn reads_ourselves_completely() {
        let c = Clocks::read();
        let me = read_process(std::process::id(), None, &c);
        assert!(me.complete, "{me:?}");
        assert!(me.executable.is_some());
        assert!(!me.args.is_empty());
        assert!(me.ppid.is_some());
        // /proc/self belongs to our effective uid; the tests do not run setuid.
        let owner =
            std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
        assert_eq!(me.euid, owner.ok());
        assert_eq!(
            me.working_directory,
            std::env::current_dir()
                .ok()
                .map(|d| d.display().to_string())
        );
        assert!(rss_bytes(std::process::id()).is_some_and(|b| b > 0));
        // The main thread (whose state stat shows) waits while a test thread runs.
        assert!(matches!(state(std::process::id()), Some('R' | 'S')));
    }

    /// What [`read_process`] reads of `sh -c "sleep 10" sh ARGS...` once it has exec'd (until
    /// then, /proc shows the forked test binary).
    fn read_sh_with(args: &[&str]) -> ProcInfo {
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 10", "sh"])
            .args(args)
            .spawn();
        let Ok(mut child) = child else {
            panic!("cannot spawn /bin/sh");
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut info = read_process(child.id(), None, &Clocks::read());
        while info.args.first().map(String::as_str) != Some("/bin/sh")
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
            info = read_process(child.id(), None, &Clocks::read());
        }
        let _ = child.kill();
        let _ = child.wait();
        info
    }

    #[test]
    fn a_huge_command_line_is_cut_at_the_read_limit() {
        let big = "x".repeat(100_000);
        let info = read_sh_with(&[big.as_str(); 15]);
        // The NUL-separated text as read: the cut falls inside the last argument kept.
        let bytes = info.args.join("\0").len();
        assert!(bytes <= 1 << 20, "{bytes}");
        assert!(bytes > 1_000_000, "{bytes}: the first megabyte is kept");
        assert_eq!(info.args.first().map(String::as_str), Some("/bin/sh"));
    }

    #[test]
    fn a_command_line_over_pages_is_read_whole() {
        // Arguments of 4095 bytes and one byte more: the reads end on a page edge and cross it.
        let args: Vec<String> = (0..5).map(|i| "y".repeat(4095 + i % 2)).collect();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let info = read_sh_with(&refs);
        assert_eq!(info.args.get(4..), Some(&args[..]));
        assert!(info.complete, "{info:?}");
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
        // Spin until the sum grows (bounded): other tests' threads may exit meanwhile, and a
        // thread that exited is no longer counted.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        let mut after = before;
        while after <= before && std::time::Instant::now() < deadline {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            after = threads_cpu_time(me).unwrap_or_default();
        }
        assert!(after > before, "{before:?} -> {after:?}");
        assert_eq!(threads_cpu_time(u32::MAX), None);
    }

    #[test]
    fn snapshot_sees_ourselves() {
        let (all, _) = snapshot(&Clocks::read());
        assert!(all.iter().any(|p| p.pid == std::process::id()));
    }
}
