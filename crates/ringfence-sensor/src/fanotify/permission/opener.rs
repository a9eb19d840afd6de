//! What a thread blocked in a fanotify permission event is opening the file *for*.
//!
//! fanotify does not report the opener's flags. With `FAN_REPORT_TID` the event names the
//! thread, and that thread sleeps inside its `open`-family system call until the group answers,
//! so `/proc/<tid>/syscall` (the syscall number, then six arguments in hex) is stable while we
//! read it, but for the moments it is woken by an answer to another event (then it reads
//! `running`, and we look again). Verified on Linux 6.18 x86_64
//! (`tests::blocked_openers_show_their_syscall` in `permission.rs`): glibc's `open()` shows as
//! `openat` (257) with the flags in the third argument, `creat` as 85, `openat2` as 437 with a
//! pointer to `struct open_how` (whose first `u64` is the flags, read with `pread` on
//! `/proc/<tid>/mem`), and an exec as `execve` (59).
//! Anything else (io_uring's `IORING_OP_OPENAT` runs in a kernel worker, `open_by_handle_at`,
//! an unknown architecture) is [`Intent::Unknown`], which the caller treats as a write.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// Why the file is being opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intent {
    Read,
    /// `O_WRONLY`, `O_RDWR`, `O_TRUNC` or `O_CREAT`.
    Write,
    /// `execve`/`execveat` (the binary or its interpreter).
    Exec,
    /// The flags could not be found (another system call, or /proc unreadable).
    Unknown,
}

/// The open-family system calls of this architecture: (number, name, where the flags are).
#[derive(Debug, Clone, Copy)]
enum Flags {
    /// In argument `n`.
    Arg(usize),
    /// In the first `u64` of the `struct open_how` argument `n` points to.
    OpenHow(usize),
    /// Always a write (`creat`).
    Write,
    Exec,
}

#[cfg(target_arch = "x86_64")]
const CALLS: &[(i64, &str, Flags)] = &[
    (2, "open", Flags::Arg(1)),
    (257, "openat", Flags::Arg(2)),
    (85, "creat", Flags::Write),
    (437, "openat2", Flags::OpenHow(2)),
    (59, "execve", Flags::Exec),
    (322, "execveat", Flags::Exec),
];

#[cfg(target_arch = "aarch64")]
const CALLS: &[(i64, &str, Flags)] = &[
    (56, "openat", Flags::Arg(2)),
    (437, "openat2", Flags::OpenHow(2)),
    (221, "execve", Flags::Exec),
    (281, "execveat", Flags::Exec),
];

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const CALLS: &[(i64, &str, Flags)] = &[];

/// The name of syscall `nr` if it is one of the open family, for events.
pub(crate) fn syscall_name(nr: i64) -> Option<&'static str> {
    CALLS.iter().find(|c| c.0 == nr).map(|c| c.1)
}

/// Parse `/proc/<tid>/syscall`: `NR ARG0 .. ARG5 SP PC` (args in hex). `None` for `running`,
/// `-1 SP PC` (blocked outside a syscall) or anything malformed.
pub(crate) fn parse_syscall(text: &str) -> Option<(i64, [u64; 6])> {
    let mut it = text.split_ascii_whitespace();
    let nr: i64 = it.next()?.parse().ok()?;
    if nr < 0 {
        return None;
    }
    let mut args = [0u64; 6];
    for a in &mut args {
        let s = it.next()?;
        *a = u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()?;
    }
    Some((nr, args))
}

/// How long a thread that reads as `running` gets to sleep again. Every answer the group
/// writes wakes every thread waiting on it (one wait queue per group); each checks whether its
/// own event was answered and sleeps again, and while it is awake `/proc/<tid>/syscall` says
/// `running`. Without this, an open racing an answer to another open was refused.
const RUNNING_PATIENCE: Duration = Duration::from_millis(50);

/// `/proc/<tid>/syscall` once the thread is asleep in its system call again (or the last
/// reading after [`RUNNING_PATIENCE`]); `None` when it cannot be read (the thread is gone).
fn blocked_syscall(tid: i32) -> Option<String> {
    let deadline = Instant::now() + RUNNING_PATIENCE;
    loop {
        let mut text = String::new();
        File::open(format!("/proc/{tid}/syscall"))
            .and_then(|mut f| f.read_to_string(&mut text))
            .ok()?;
        if !text.starts_with("running") || Instant::now() >= deadline {
            return Some(text);
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Classify open flags.
pub(crate) fn intent_of_flags(flags: u64) -> Intent {
    let f = flags as i64 as libc::c_int;
    let acc = f & libc::O_ACCMODE;
    if acc == libc::O_WRONLY || acc == libc::O_RDWR || f & (libc::O_TRUNC | libc::O_CREAT) != 0 {
        Intent::Write
    } else {
        Intent::Read
    }
}

/// What thread `tid` (blocked in a permission event) is opening for, and the system call it
/// is blocked in (`None` when `/proc/<tid>/syscall` could not be read or parsed).
pub(crate) fn intent_of_thread(tid: i32) -> (Intent, Option<i64>) {
    let Some(text) = blocked_syscall(tid) else {
        return (Intent::Unknown, None);
    };
    let Some((nr, args)) = parse_syscall(&text) else {
        return (Intent::Unknown, None);
    };
    let Some(&(_, _, how)) = CALLS.iter().find(|c| c.0 == nr) else {
        return (Intent::Unknown, Some(nr));
    };
    let intent = match how {
        Flags::Arg(n) => intent_of_flags(args[n]),
        Flags::Write => Intent::Write,
        Flags::Exec => Intent::Exec,
        Flags::OpenHow(n) => {
            let mut flags = [0u8; 8];
            let got = File::open(format!("/proc/{tid}/mem"))
                .and_then(|mem| mem.read_exact_at(&mut flags, args[n]));
            match got {
                Ok(()) => intent_of_flags(u64::from_ne_bytes(flags)),
                Err(_) => Intent::Unknown,
            }
        }
    };
    (intent, Some(nr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_lines_parse() {
        let l = "257 0xffffff9c 0x562dd664700d 0x201 0x0 0x0 0x7fe3df1d7740 0x7ffe9835d460 0x7fe3df2d2011\n";
        assert_eq!(
            parse_syscall(l),
            Some((
                257,
                [0xffff_ff9c, 0x562d_d664_700d, 0x201, 0, 0, 0x7fe3_df1d_7740]
            ))
        );
        assert_eq!(parse_syscall("running\n"), None);
        assert_eq!(parse_syscall("-1 0x7ffe 0x7fe3\n"), None);
        assert_eq!(parse_syscall("257 0x1 0x2\n"), None);
        assert_eq!(parse_syscall(""), None);
    }

    #[test]
    fn flags_classify() {
        let f = |x: libc::c_int| intent_of_flags(x as u64);
        assert_eq!(f(libc::O_RDONLY), Intent::Read);
        assert_eq!(f(libc::O_RDONLY | libc::O_CLOEXEC), Intent::Read);
        assert_eq!(f(libc::O_WRONLY | libc::O_TRUNC), Intent::Write);
        assert_eq!(f(libc::O_RDWR | libc::O_APPEND), Intent::Write);
        assert_eq!(f(libc::O_RDONLY | libc::O_TRUNC), Intent::Write);
        assert_eq!(f(libc::O_RDONLY | libc::O_CREAT), Intent::Write);
    }
}
