//! Hands the worker's eBPF tracepoint links to the supervisor, so a killed worker is back in a
//! fraction of a second instead of after the kernel's teardown.
//!
//! Detaching a tracepoint link waits for an RCU grace period (some 70 ms each on the test
//! machine), and a worker that dies holding ~35 of them spends over two seconds in `exit` before
//! the supervisor can even see it is gone. So the worker sends duplicates of those link
//! descriptors over a socket the supervisor made for it (`SCM_RIGHTS`); when the worker dies its
//! own references go at once, and the supervisor lets the kept ones go on a background thread
//! while the next worker is already loading. LSM links are not handed over: an old guard left
//! attached would refuse the new worker, whose pid it does not know.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::thread::JoinHandle;

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};

/// Set for the worker: the descriptor number of its end of the keeper socket.
pub const LINK_KEEPER_ENV: &str = "RINGFENCE_LINK_KEEPER_FD";

/// Most descriptors in one message (the kernel's `SCM_MAX_FD`).
const PER_MESSAGE: usize = 253;

/// The supervisor's side for one worker: a thread that collects the descriptors the worker
/// sends, and lets them go once the worker's end closes (it exited); their teardown then runs
/// on that thread, never in the way of the next worker.
#[derive(Debug)]
pub struct LinkKeeper {
    keeper: JoinHandle<usize>,
}

/// The worker's end, to pass in its environment (inheritable only while it is spawned).
#[derive(Debug)]
pub struct WorkerEnd(OwnedFd);

impl WorkerEnd {
    /// An inheritable duplicate for the child to get (close it once the child is spawned),
    /// and the environment value naming it.
    pub fn inheritable(&self) -> nix::Result<RawFd> {
        // dup(2) does not copy FD_CLOEXEC: this one survives the exec, the original does not.
        nix::unistd::dup(self.0.as_raw_fd())
    }
}

impl LinkKeeper {
    /// A socket pair: the keeper's thread reads one end; the worker gets the other.
    pub fn start() -> std::io::Result<(LinkKeeper, WorkerEnd)> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let keeper = std::thread::Builder::new()
            .name("rf-link-keeper".into())
            .spawn(move || {
                let fds = receive_all(&ours);
                let n = fds.len();
                close_all(fds);
                n
            })?;
        Ok((LinkKeeper { keeper }, WorkerEnd(theirs)))
    }

    /// Wait until the worker's end closed and its links were let go; how many there were
    /// (tests; the supervisor just drops the keeper).
    pub fn join(self) -> usize {
        self.keeper.join().unwrap_or(0)
    }
}

/// Collect descriptors until end of file (the worker's end closed: it exited).
fn receive_all(sock: &OwnedFd) -> Vec<RawFd> {
    let mut kept = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; PER_MESSAGE]);
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        };
        let mut got_any = false;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    got_any |= !fds.is_empty();
                    kept.extend(fds);
                }
            }
        }
        if msg.bytes == 0 && !got_any {
            break;
        }
    }
    kept
}

fn close_all(fds: Vec<RawFd>) {
    for fd in fds {
        let _ = nix::unistd::close(fd);
    }
}

/// The worker's side: send `links` to the supervisor named in [`LINK_KEEPER_ENV`], if any, and
/// keep the socket open for the worker's life (its closing tells the supervisor the worker is
/// gone). Returns how many were handed over.
pub fn hand_over(links: &[RawFd]) -> std::io::Result<usize> {
    let Some(sock) = keeper_socket() else {
        return Ok(0);
    };
    for chunk in links.chunks(PER_MESSAGE) {
        let iov = [IoSlice::new(b"L")];
        let cmsg = [ControlMessage::ScmRights(chunk)];
        sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::empty(), None)?;
    }
    Ok(links.len())
}

/// Call first thing in the worker: the inherited keeper socket is made close-on-exec, so no
/// process the worker starts holds it (the supervisor learns of the worker's death from its
/// closing).
pub fn claim() {
    if let Some(fd) = keeper_socket() {
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
}

/// The socket from the environment, checked to be a socket (never write to a stray fd).
fn keeper_socket() -> Option<RawFd> {
    let fd: RawFd = std::env::var(LINK_KEEPER_ENV).ok()?.parse().ok()?;
    let st = nix::sys::stat::fstat(fd).ok()?;
    let is_socket = st.st_mode & S_IFMT == S_IFSOCK;
    is_socket.then_some(fd)
}

const S_IFMT: u32 = 0o170000;
const S_IFSOCK: u32 = 0o140000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_sent_are_kept_until_release() {
        let (keeper, end) = LinkKeeper::start().expect("socket pair");
        // Two pipe ends stand in for links: sent, then closed here, they stay open in the
        // keeper (the write end still works through the keeper's copy).
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let iov = [IoSlice::new(b"L")];
        let fds = [w.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(end.0.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).expect("send");
        drop(w);
        drop(end);
        assert_eq!(keeper.join(), 1);
        // The keeper closed its copy of the write end: the reader now sees end of file.
        let mut reader = std::fs::File::from(r);
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut buf).expect("read to EOF");
        assert!(buf.is_empty());
    }

    #[test]
    fn without_a_keeper_nothing_is_sent() {
        // The variable is not set in tests.
        assert_eq!(hand_over(&[0, 1, 2]).ok(), Some(0));
    }
}
