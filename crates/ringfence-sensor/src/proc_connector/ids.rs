//! Who each process runs as (real and effective uid, real gid), kept from the process
//! connector's own messages, so an exec needs no read of `/proc/PID/status`: that file is the
//! costliest the reader opened for each exec (the kernel formats some 60 lines for it), and an
//! exec storm spent about a sixth of the agent's CPU on it.
//!
//! The kernel tells the connector every change: a fork copies the parent's ids, and every
//! change of credentials (setuid calls, and an exec of a set-user-ID program) sends a uid or gid
//! message before the syscall returns, so before the exec's own message. The split reader
//! applies the rest socket's messages up to an exec's timestamp before it looks the exec up
//! here. Processes that were running before the agent are read once, at start.
//!
//! Anything not known (a parent unknown at its child's fork, a lost message) is read from
//! /proc as before, and learnt. A receive-buffer overflow may have lost a change, so the table
//! is emptied at once ([`IdTracker::lost`]) and read again whole once the reader has caught up
//! ([`IdTracker::reseed_if_stale`]): reading every process while overflowing would only make the
//! reader fall further behind. The table is bounded ([`MAX_TRACKED`]); past that it starts over.

use std::collections::HashMap;

use proc_connector::ProcEvent;

use crate::proc_info::{pids, read_ids};

/// The most processes tracked; a host with more is read from /proc for the rest.
pub(super) const MAX_TRACKED: usize = 1 << 20;

/// A process's ids, as `/proc/PID/status` and the connector's messages give them (in the
/// initial user namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ids {
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
}

/// The ids of every process known, by tgid.
#[derive(Debug, Default)]
pub(super) struct IdTracker {
    by_tgid: HashMap<u32, Ids>,
    /// Messages were lost: the table was emptied and waits for a quiet moment to be read again.
    stale: bool,
}

impl IdTracker {
    /// A tracker holding every process running now (those whose status cannot be read are
    /// left out, and read when they exec).
    pub(super) fn seeded() -> IdTracker {
        let mut tracker = IdTracker::default();
        tracker.reseed();
        tracker
    }

    /// Messages were lost: forget everything now (what is not known is read from /proc), and
    /// read every process again at the next [`IdTracker::reseed_if_stale`].
    pub(super) fn lost(&mut self) {
        self.by_tgid.clear();
        self.stale = true;
    }

    /// After [`IdTracker::lost`], read every process again; call it when no message waits.
    pub(super) fn reseed_if_stale(&mut self) {
        if std::mem::take(&mut self.stale) {
            self.reseed();
        }
    }

    /// Forget everything and read every process again.
    fn reseed(&mut self) {
        self.by_tgid.clear();
        for pid in pids() {
            if let Some((uid, euid, gid)) = read_ids(pid) {
                self.learn(pid, Ids { uid, euid, gid });
            }
        }
    }

    pub(super) fn get(&self, tgid: u32) -> Option<Ids> {
        self.by_tgid.get(&tgid).copied()
    }

    /// Record what a read of /proc found for `tgid`.
    pub(super) fn learn(&mut self, tgid: u32, ids: Ids) {
        if self.by_tgid.len() >= MAX_TRACKED && !self.by_tgid.contains_key(&tgid) {
            self.by_tgid.clear();
        }
        self.by_tgid.insert(tgid, ids);
    }

    /// Apply one of the kernel's messages, in the order it sent them.
    pub(super) fn apply(&mut self, msg: &ProcEvent) {
        match *msg {
            ProcEvent::Fork {
                parent_tgid,
                child_pid,
                child_tgid,
                ..
            } if child_pid == child_tgid => {
                // The child's pid may have been another process's: what it held is gone.
                match self.get(parent_tgid) {
                    Some(ids) => self.learn(child_tgid, ids),
                    None => {
                        self.by_tgid.remove(&child_tgid);
                    }
                }
            }
            ProcEvent::Exit { pid, tgid, .. } if pid == tgid => {
                self.by_tgid.remove(&tgid);
            }
            ProcEvent::Uid {
                tgid, ruid, euid, ..
            } => {
                if let Some(ids) = self.by_tgid.get_mut(&tgid) {
                    ids.uid = ruid;
                    ids.euid = euid;
                }
            }
            ProcEvent::Gid { tgid, rgid, .. } => {
                if let Some(ids) = self.by_tgid.get_mut(&tgid) {
                    ids.gid = rgid;
                }
            }
            _ => {}
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_tgid.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fork(parent: u32, child: u32, tgid: u32) -> ProcEvent {
        ProcEvent::Fork {
            cpu: 0,
            seq: 0,
            parent_pid: parent,
            parent_tgid: parent,
            child_pid: child,
            child_tgid: tgid,
            timestamp_ns: 0,
        }
    }

    fn exit(pid: u32, tgid: u32) -> ProcEvent {
        ProcEvent::Exit {
            cpu: 0,
            seq: 0,
            pid,
            tgid,
            exit_code: 0,
            exit_signal: 17,
            parent_pid: 1,
            parent_tgid: 1,
            timestamp_ns: 0,
        }
    }

    fn uid(tgid: u32, ruid: u32, euid: u32) -> ProcEvent {
        ProcEvent::Uid {
            cpu: 0,
            seq: 0,
            pid: tgid,
            tgid,
            ruid,
            euid,
            timestamp_ns: 0,
        }
    }

    fn gid(tgid: u32, rgid: u32) -> ProcEvent {
        ProcEvent::Gid {
            cpu: 0,
            seq: 0,
            pid: tgid,
            tgid,
            rgid,
            egid: rgid,
            timestamp_ns: 0,
        }
    }

    const ROOT: Ids = Ids {
        uid: 0,
        euid: 0,
        gid: 0,
    };

    #[test]
    fn a_child_inherits_and_its_own_changes_are_its_own() {
        let mut t = IdTracker::default();
        t.learn(10, ROOT);
        t.apply(&fork(10, 11, 11));
        assert_eq!(t.get(11), Some(ROOT));
        // The child drops to nobody (setresuid, then setresgid), the parent stays root.
        t.apply(&uid(11, 65534, 65534));
        t.apply(&gid(11, 65534));
        let nobody = Ids {
            uid: 65534,
            euid: 65534,
            gid: 65534,
        };
        assert_eq!(t.get(11), Some(nobody));
        assert_eq!(t.get(10), Some(ROOT));
        // A set-user-ID program run by nobody: the effective uid changes, the real one stays.
        t.apply(&uid(11, 65534, 0));
        assert_eq!(t.get(11).map(|i| (i.uid, i.euid)), Some((65534, 0)));
        t.apply(&exit(11, 11));
        assert_eq!(t.get(11), None);
    }

    #[test]
    fn threads_are_not_processes_and_an_unknown_parent_leaves_its_child_unknown() {
        let mut t = IdTracker::default();
        t.learn(10, ROOT);
        // A thread of 10: no new process, and its exit does not end 10.
        t.apply(&fork(10, 12, 10));
        t.apply(&exit(12, 10));
        assert_eq!(t.get(12), None);
        assert_eq!(t.get(10), Some(ROOT));
        // Pid 13 once belonged to a root process; now an unknown parent forks a new 13.
        t.learn(13, ROOT);
        t.apply(&fork(99, 13, 13));
        assert_eq!(
            t.get(13),
            None,
            "a reused pid keeps nothing of its last process"
        );
        // A change to an unknown process teaches nothing (the other ids are not known).
        t.apply(&uid(13, 5, 5));
        assert_eq!(t.get(13), None);
    }

    #[test]
    fn a_loss_forgets_at_once_and_reads_again_when_asked() {
        let mut t = IdTracker::seeded();
        let me = std::process::id();
        assert!(t.get(me).is_some());
        t.lost();
        assert_eq!(t.len(), 0);
        t.reseed_if_stale();
        assert!(t.get(me).is_some());
        let after = t.len();
        t.by_tgid.clear();
        t.reseed_if_stale();
        assert_eq!(
            t.len(),
            0,
            "nothing was lost since: no second read ({after} before)"
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = IdTracker::default();
        for pid in 0..u32::try_from(MAX_TRACKED).unwrap_or(u32::MAX) {
            t.learn(pid, ROOT);
        }
        assert_eq!(t.len(), MAX_TRACKED);
        t.learn(u32::MAX, ROOT);
        assert_eq!(t.len(), 1, "past the bound it starts over");
    }

    #[test]
    fn the_seed_knows_this_process() {
        let t = IdTracker::seeded();
        use std::os::unix::fs::MetadataExt;
        let me = std::process::id();
        // /proc/self belongs to the effective uid.
        let euid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
        assert!(euid.is_some());
        assert_eq!(t.get(me).map(|i| i.euid), euid);
    }
}
