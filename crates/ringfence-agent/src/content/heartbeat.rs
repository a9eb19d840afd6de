//! The worker's heartbeat to its supervisor: one byte a second on a datagram socket pair the
//! supervisor made for it ([`HEARTBEAT_ENV`] names the worker's end). It is sent from the
//! agent's pipeline loop ([`crate::Agent::run`]), so a beat means events are being handled,
//! not merely that the process exists.
//!
//! The supervisor uses the beats three ways: the first one tells systemd the service is ready
//! (`READY=1`), later ones keep the systemd watchdog fed, and a worker that stops beating for
//! the hang limit is killed and restarted (a hung worker answers no fanotify permission event
//! either). Without the variable (tests, `--no-supervisor`) nothing is sent.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};

/// Set for the worker: the descriptor number of its end of the heartbeat socket.
pub const HEARTBEAT_ENV: &str = "RINGFENCE_HEARTBEAT_FD";

/// How often the worker beats.
pub const BEAT_EVERY: Duration = Duration::from_secs(1);

/// The supervisor's end for one worker.
#[derive(Debug)]
pub struct HeartbeatReceiver {
    ours: OwnedFd,
    theirs: Option<OwnedFd>,
    /// When the last beat arrived.
    pub last: Option<Instant>,
}

impl HeartbeatReceiver {
    /// A fresh pair for the next worker.
    pub fn new() -> std::io::Result<HeartbeatReceiver> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )?;
        Ok(HeartbeatReceiver {
            ours,
            theirs: Some(theirs),
            last: None,
        })
    }

    /// An inheritable duplicate of the worker's end, for the environment (close it once the
    /// worker is spawned, see [`Self::spawned`]).
    pub fn inheritable(&self) -> Option<RawFd> {
        let theirs = self.theirs.as_ref()?;
        // dup(2) does not copy FD_CLOEXEC: this one survives the exec, the original does not.
        nix::unistd::dup(theirs.as_raw_fd()).ok()
    }

    /// The worker has its copy: ours goes, so no beat can come from anyone else.
    pub fn spawned(&mut self, inherited: Option<RawFd>) {
        if let Some(fd) = inherited {
            let _ = nix::unistd::close(fd);
        }
        self.theirs = None;
    }

    /// Take every beat waiting; true when there was at least one.
    pub fn drain(&mut self) -> bool {
        let mut buf = [0u8; 16];
        let mut got = false;
        // Bounded: a worker flooding the socket cannot keep the supervisor here.
        for _ in 0..1024 {
            match recv(self.ours.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(_) => got = true,
                Err(_) => break,
            }
        }
        if got {
            self.last = Some(Instant::now());
        }
        got
    }
}

/// The worker's end.
#[derive(Debug)]
pub struct Heartbeat {
    fd: RawFd,
    next: Instant,
}

impl Heartbeat {
    /// The socket named in [`HEARTBEAT_ENV`], made close-on-exec (no process the worker starts
    /// may beat for it); `None` without one.
    pub fn claim() -> Option<Heartbeat> {
        let fd: RawFd = std::env::var(HEARTBEAT_ENV).ok()?.parse().ok()?;
        let st = nix::sys::stat::fstat(fd).ok()?;
        if st.st_mode & S_IFMT != S_IFSOCK {
            return None;
        }
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
        Some(Heartbeat {
            fd,
            next: Instant::now(),
        })
    }

    /// Beat when one is due (at most once per [`BEAT_EVERY`]); never blocks.
    pub fn tick(&mut self, now: Instant) {
        if now < self.next {
            return;
        }
        self.next = now + BEAT_EVERY;
        let _ = send(self.fd, b"B", MsgFlags::MSG_DONTWAIT);
    }
}

const S_IFMT: u32 = 0o170000;
const S_IFSOCK: u32 = 0o140000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_arrive_and_are_drained() {
        let mut rx = HeartbeatReceiver::new().unwrap();
        assert!(!rx.drain());
        let fd = rx.inheritable().unwrap();
        let mut hb = Heartbeat {
            fd,
            next: Instant::now(),
        };
        let now = Instant::now();
        hb.tick(now);
        // Not due again within the second.
        hb.tick(now);
        assert!(rx.drain());
        assert!(rx.last.is_some());
        assert!(!rx.drain());
        rx.spawned(Some(fd));
    }
}
