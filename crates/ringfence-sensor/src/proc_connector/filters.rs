//! The classic BPF programs attached to connector sockets: each drops, in the kernel and
//! before it is queued, every message its socket's reader would discard, so the reader is not
//! woken for it.
//!
//! - [`privilege_filter`]: beside the eBPF sensor, only privilege changes and ptrace.
//! - [`exec_filter`] and [`rest_filter`]: driverless mode's two sockets. Execs go to a socket
//!   read at once (the reader races /proc for each); process forks and exits, and uid and gid
//!   changes, to one read in batches; thread forks and exits, and the messages nothing uses
//!   (comm, sid, coredump and ptrace), go nowhere.
//!
//! A connector datagram is the netlink header (16 bytes), the connector header (20), then the
//! event: `what`, `cpu`, `timestamp_ns` (16 bytes), then the event's own fields. Absolute loads
//! read network byte order and the fields are in the host's, so constants are swapped with
//! [`host`]; two fields compared with each other need no swap.

use proc_connector::{
    PROC_EVENT_EXEC, PROC_EVENT_EXIT, PROC_EVENT_FORK, PROC_EVENT_GID, PROC_EVENT_NONE,
    PROC_EVENT_PTRACE, PROC_EVENT_UID, SIZE_CN_MSG, SIZE_NLMSGHDR,
};

/// Where a connector datagram holds its `what` (the event type).
pub(crate) const WHAT_OFFSET: u32 = (SIZE_NLMSGHDR + SIZE_CN_MSG) as u32;
/// Where the event's own fields start, after `what`, `cpu` and `timestamp_ns`.
const DATA_OFFSET: u32 = WHAT_OFFSET + 16;
/// A fork's child pid and child tgid.
const FORK_CHILD_PID: u32 = DATA_OFFSET + 8;
const FORK_CHILD_TGID: u32 = DATA_OFFSET + 12;
/// An exit's pid and tgid.
const EXIT_PID: u32 = DATA_OFFSET;
const EXIT_TGID: u32 = DATA_OFFSET + 4;

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JEQ_X: u16 = 0x1d;
const TAX: u16 = 0x07;
const RET_K: u16 = 0x06;
/// What an accepting filter returns: the bytes of the datagram to keep (all of it).
const ACCEPT: u32 = 0x0004_0000;

fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// A host-order constant as an absolute load sees it.
fn host(value: u32) -> u32 {
    u32::from_be_bytes(value.to_ne_bytes())
}

/// Passes only what `privilege_event` reports: uid, gid and ptrace messages, and the
/// subscription's acknowledgement (`what` 0). Everything else, and a datagram too short to hold
/// `what`, is dropped.
pub fn privilege_filter() -> Vec<libc::sock_filter> {
    // Indexes: 5 accepts, 6 rejects; jumps are relative to the next instruction.
    vec![
        op(LD_W_ABS, 0, 0, WHAT_OFFSET),          // 0: A = what
        op(JEQ_K, 3, 0, host(PROC_EVENT_UID)),    // 1
        op(JEQ_K, 2, 0, host(PROC_EVENT_GID)),    // 2
        op(JEQ_K, 1, 0, host(PROC_EVENT_PTRACE)), // 3
        op(JEQ_K, 0, 1, host(PROC_EVENT_NONE)),   // 4: else reject
        op(RET_K, 0, 0, ACCEPT),                  // 5: accept
        op(RET_K, 0, 0, 0),                       // 6: reject
    ]
}

/// Passes exec messages and the acknowledgement, for the socket read as each message arrives.
pub fn exec_filter() -> Vec<libc::sock_filter> {
    vec![
        op(LD_W_ABS, 0, 0, WHAT_OFFSET),        // 0: A = what
        op(JEQ_K, 1, 0, host(PROC_EVENT_EXEC)), // 1
        op(JEQ_K, 0, 1, host(PROC_EVENT_NONE)), // 2: else reject
        op(RET_K, 0, 0, ACCEPT),                // 3: accept
        op(RET_K, 0, 0, 0),                     // 4: reject
    ]
}

/// Passes what driverless mode needs besides execs, for the socket read in batches: the fork
/// of a process (its child is a thread group's leader), the exit of a process (a leader), uid
/// and gid changes (reported, and who each process runs as is kept from them), and the
/// acknowledgement.
pub fn rest_filter() -> Vec<libc::sock_filter> {
    vec![
        op(LD_W_ABS, 0, 0, WHAT_OFFSET),        // 0: A = what
        op(JEQ_K, 5, 0, host(PROC_EVENT_FORK)), // 1: to 7
        op(JEQ_K, 8, 0, host(PROC_EVENT_EXIT)), // 2: to 11
        op(JEQ_K, 11, 0, host(PROC_EVENT_UID)), // 3: to 15
        op(JEQ_K, 10, 0, host(PROC_EVENT_GID)), // 4: to 15
        op(JEQ_K, 9, 0, host(PROC_EVENT_NONE)), // 5: to 15
        op(RET_K, 0, 0, 0),                     // 6: reject
        op(LD_W_ABS, 0, 0, FORK_CHILD_TGID),    // 7: fork: X = child tgid
        op(TAX, 0, 0, 0),                       // 8
        op(LD_W_ABS, 0, 0, FORK_CHILD_PID),     // 9: A = child pid
        op(JEQ_X, 4, 5, 0),                     // 10: a leader to 15, a thread to 16
        op(LD_W_ABS, 0, 0, EXIT_TGID),          // 11: exit: X = tgid
        op(TAX, 0, 0, 0),                       // 12
        op(LD_W_ABS, 0, 0, EXIT_PID),           // 13: A = pid
        op(JEQ_X, 0, 1, 0),                     // 14: a leader to 15, a thread to 16
        op(RET_K, 0, 0, ACCEPT),                // 15: accept
        op(RET_K, 0, 0, 0),                     // 16: reject
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a filter over `packet` with the instructions these filters use, as the kernel
    /// would: an absolute load past the end rejects, and so does running off the program.
    fn run(filter: &[libc::sock_filter], packet: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        while let Some(ins) = filter.get(pc) {
            pc += 1;
            match ins.code {
                LD_W_ABS => {
                    let at = ins.k as usize;
                    let Some(word) = packet.get(at..at + 4) else {
                        return 0;
                    };
                    a = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
                }
                TAX => x = a,
                JEQ_K | JEQ_X => {
                    let other = if ins.code == JEQ_K { ins.k } else { x };
                    pc += usize::from(if a == other { ins.jt } else { ins.jf });
                }
                RET_K => return ins.k,
                other => panic!("instruction {other:#x} not modelled"),
            }
        }
        0
    }

    /// A connector datagram of event `what` whose first four fields are `fields`.
    fn datagram(what: u32, fields: [u32; 4]) -> Vec<u8> {
        let mut out = vec![0u8; WHAT_OFFSET as usize];
        out.extend(what.to_ne_bytes());
        out.extend([0u8; 12]); // cpu, timestamp
        for f in fields {
            out.extend(f.to_ne_bytes());
        }
        out.extend([0u8; 8]);
        out
    }

    fn fork(pid: u32, tgid: u32) -> Vec<u8> {
        datagram(PROC_EVENT_FORK, [1, 1, pid, tgid])
    }

    fn exit(pid: u32, tgid: u32) -> Vec<u8> {
        datagram(PROC_EVENT_EXIT, [pid, tgid, 0, 0])
    }

    #[test]
    fn the_exec_socket_gets_execs_only() {
        let f = exec_filter();
        assert_eq!(run(&f, &datagram(PROC_EVENT_EXEC, [5, 5, 0, 0])), ACCEPT);
        assert_eq!(run(&f, &datagram(PROC_EVENT_NONE, [0; 4])), ACCEPT);
        for what in [
            PROC_EVENT_FORK,
            PROC_EVENT_EXIT,
            PROC_EVENT_UID,
            PROC_EVENT_GID,
        ] {
            assert_eq!(run(&f, &datagram(what, [5, 5, 5, 5])), 0, "{what:#x}");
        }
        assert_eq!(run(&f, &[0u8; 20]), 0, "too short to hold what");
    }

    #[test]
    fn the_rest_socket_gets_processes_and_id_changes_not_threads() {
        let f = rest_filter();
        assert_eq!(run(&f, &fork(12, 12)), ACCEPT, "a process's fork");
        assert_eq!(run(&f, &fork(13, 12)), 0, "a thread's");
        assert_eq!(run(&f, &exit(12, 12)), ACCEPT, "a process's exit");
        assert_eq!(run(&f, &exit(13, 12)), 0, "a thread's");
        assert_eq!(run(&f, &datagram(PROC_EVENT_UID, [5, 5, 0, 0])), ACCEPT);
        assert_eq!(run(&f, &datagram(PROC_EVENT_GID, [5, 5, 0, 0])), ACCEPT);
        assert_eq!(run(&f, &datagram(PROC_EVENT_NONE, [0; 4])), ACCEPT);
        for what in [
            PROC_EVENT_EXEC,
            PROC_EVENT_PTRACE,
            proc_connector::PROC_EVENT_COMM,
            proc_connector::PROC_EVENT_SID,
            proc_connector::PROC_EVENT_COREDUMP,
        ] {
            assert_eq!(run(&f, &datagram(what, [5, 5, 5, 5])), 0, "{what:#x}");
        }
        let mut cut = fork(12, 12);
        cut.truncate(FORK_CHILD_TGID as usize);
        assert_eq!(run(&f, &cut), 0, "a fork too short to hold its child");
    }

    #[test]
    fn the_privilege_filter_keeps_ids_and_ptrace() {
        let f = privilege_filter();
        for what in [
            PROC_EVENT_UID,
            PROC_EVENT_GID,
            PROC_EVENT_PTRACE,
            PROC_EVENT_NONE,
        ] {
            assert_eq!(run(&f, &datagram(what, [5, 5, 0, 0])), ACCEPT, "{what:#x}");
        }
        for what in [PROC_EVENT_FORK, PROC_EVENT_EXEC, PROC_EVENT_EXIT] {
            assert_eq!(run(&f, &datagram(what, [5, 5, 5, 5])), 0, "{what:#x}");
        }
    }
}
