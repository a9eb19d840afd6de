//! Killing a process, or a process and every descendant.
//!
//! A tree is frozen before it is killed: each member gets SIGSTOP, the tree is walked again to
//! catch children forked in the meantime, and only then does everyone get SIGKILL. Members the
//! guard rails protect (a critical service started from the tree, say) are left running.

use std::collections::{HashMap, HashSet};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill as send_signal};
use nix::unistd::Pid;

use crate::guard::GuardRails;
use crate::procfs;

/// The descendants of `root` (not including it), from one pass over /proc.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in procfs::all_pids() {
        if let Some(info) = procfs::read(pid) {
            children.entry(info.ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut seen = HashSet::from([root]);
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            if seen.insert(c) {
                out.push(c);
                queue.push(c);
            }
        }
    }
    out
}

fn signal(pid: u32, sig: Signal) -> Result<(), Errno> {
    let raw = i32::try_from(pid).map_err(|_| Errno::ESRCH)?;
    match send_signal(Pid::from_raw(raw), sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(e),
    }
}

/// SIGKILL `pid` (and, with `tree`, its descendants). Returns the pids signalled.
/// The caller has already checked `pid` itself against the guard rails.
pub fn kill(pid: u32, tree: bool, guard: &GuardRails) -> Result<Vec<u32>, String> {
    if !tree {
        signal(pid, Signal::SIGKILL).map_err(|e| format!("kill({pid}, SIGKILL): {e}"))?;
        return Ok(vec![pid]);
    }
    let mut members = vec![pid];
    let mut frozen = HashSet::new();
    // Freeze until a walk finds nobody new (bounded: a fork bomb cannot keep us here).
    for _ in 0..8 {
        let mut found_new = false;
        for p in std::iter::once(pid).chain(descendants(pid)) {
            if frozen.contains(&p) || (p != pid && !guard.may_kill(p)) {
                continue;
            }
            found_new = true;
            let _ = signal(p, Signal::SIGSTOP);
            frozen.insert(p);
            if p != pid {
                members.push(p);
            }
        }
        if !found_new {
            break;
        }
    }
    let mut failures = Vec::new();
    for &p in &members {
        if let Err(e) = signal(p, Signal::SIGKILL) {
            failures.push(format!("{p}: {e}"));
        }
    }
    if failures.is_empty() {
        Ok(members)
    } else {
        Err(format!("kill failed for {}", failures.join(", ")))
    }
}
