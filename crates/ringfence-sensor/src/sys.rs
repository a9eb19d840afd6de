//! Small libc wrappers the sources share: clocks and socket options.
//!
//! Kernel timestamps come on different clocks (the process connector stamps events with
//! `CLOCK_MONOTONIC`, /proc start times count from boot on `CLOCK_BOOTTIME`). [`Clocks`] reads
//! each clock next to `CLOCK_REALTIME` once, so sources convert with one addition.
#![allow(
    unsafe_code,
    reason = "clock_gettime and setsockopt FFI; each block says why it is sound"
)]

use std::io;
use std::os::fd::RawFd;

use ringfence_event::Timestamp;

fn clock_ns(clock: libc::clockid_t) -> Option<i64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(
        ts.tv_sec
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec),
    )
}

/// Offsets from the kernel's clocks to wall-clock time, read once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clocks {
    /// Realtime minus monotonic, in nanoseconds.
    pub monotonic_to_wall: i64,
    /// Realtime minus boottime, in nanoseconds.
    pub boot_to_wall: i64,
}

impl Clocks {
    pub fn read() -> Clocks {
        let wall = clock_ns(libc::CLOCK_REALTIME).unwrap_or(0);
        let mono = clock_ns(libc::CLOCK_MONOTONIC).unwrap_or(0);
        let boot = clock_ns(libc::CLOCK_BOOTTIME).unwrap_or(mono);
        Clocks {
            monotonic_to_wall: wall - mono,
            boot_to_wall: wall - boot,
        }
    }

    /// Wall-clock time of a `CLOCK_MONOTONIC` reading.
    pub fn from_monotonic(&self, ns: u64) -> Timestamp {
        Timestamp(
            i64::try_from(ns)
                .unwrap_or(i64::MAX)
                .saturating_add(self.monotonic_to_wall),
        )
    }

    /// Wall-clock time of a `CLOCK_BOOTTIME` reading.
    pub fn from_boottime(&self, ns: u64) -> Timestamp {
        Timestamp(
            i64::try_from(ns)
                .unwrap_or(i64::MAX)
                .saturating_add(self.boot_to_wall),
        )
    }

    /// `CLOCK_BOOTTIME` for a `CLOCK_MONOTONIC` reading (they differ by time spent suspended).
    pub fn monotonic_to_boottime(&self, ns: u64) -> u64 {
        let delta = self.monotonic_to_wall - self.boot_to_wall;
        u64::try_from(i64::try_from(ns).unwrap_or(i64::MAX).saturating_add(delta)).unwrap_or(0)
    }
}

/// `setsockopt(fd, SOL_SOCKET, opt, value)`, with `value` passed as its own bytes. The kernel
/// reads at most `size_of::<T>()` bytes from it; a pointer inside it (a filter program) that
/// is not valid gives `EFAULT`, never a write here.
fn set_socket_option<T>(fd: RawFd, opt: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live reference for the call and the length passed is its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            std::ptr::from_ref(value).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `setsockopt(fd, SOL_SOCKET, opt, value)` for an int option.
pub fn set_socket_int(fd: RawFd, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    set_socket_option(fd, opt, &value)
}

/// Grow a socket's receive buffer to `bytes`, past `rmem_max` when privileged.
pub fn grow_receive_buffer(fd: RawFd, bytes: usize) -> io::Result<()> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_socket_int(fd, libc::SO_RCVBUFFORCE, bytes)
        .or_else(|_| set_socket_int(fd, libc::SO_RCVBUF, bytes))
}

/// Attach a classic BPF program to a socket (`SO_ATTACH_FILTER`): what it rejects is dropped
/// by the kernel before it is queued, so the reader is not woken for it.
pub fn attach_socket_filter(fd: RawFd, program: &mut [libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "filter program too long"))?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_mut_ptr(),
    };
    // The kernel copies the program during the call; `program` outlives it.
    set_socket_option(fd, libc::SO_ATTACH_FILTER, &prog)
}

/// This process's id.
pub fn own_pid() -> u32 {
    std::process::id()
}

/// Put the calling thread in the idle scheduling class (`SCHED_IDLE`): it runs only when no
/// other thread wants the CPU. For background work such as the posture checks.
pub fn set_thread_idle_priority() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param that outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// CPU time the calling thread has used, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_convert_to_now() {
        let c = Clocks::read();
        let mono = clock_ns(libc::CLOCK_MONOTONIC).unwrap_or(0);
        let wall = Timestamp::now().as_nanos();
        let got = c
            .from_monotonic(u64::try_from(mono).unwrap_or(0))
            .as_nanos();
        assert!((got - wall).abs() < 1_000_000_000, "{got} vs {wall}");
    }
}
