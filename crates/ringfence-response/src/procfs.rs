//! The few facts about a process the guard rails need, read from /proc.
//!
//! `/proc/PID/stat` is parsed from the last `)` so a command name with spaces or parentheses
//! cannot shift the fields. Every read can fail (the process may be gone): callers get `None`.

use std::path::PathBuf;

/// `PF_KTHREAD` in the `flags` field of /proc/PID/stat.
const PF_KTHREAD: u64 = 0x0020_0000;

/// What /proc says about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub flags: u64,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
    pub exe: Option<PathBuf>,
}

impl ProcInfo {
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0 || self.pid == 2 || self.ppid == 2
    }
}

/// Parse the text of /proc/PID/stat: (ppid, flags, start_ticks).
pub fn parse_stat(text: &str) -> Option<(u32, u64, u64)> {
    let after = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command name: state(0) ppid(1) pgrp session tty tpgid flags(6) ... starttime(19).
    let ppid = fields.get(1)?.parse().ok()?;
    let flags = fields.get(6)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, flags, start))
}

/// Read a process's facts; `None` when it is gone or unreadable.
pub fn read(pid: u32) -> Option<ProcInfo> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (ppid, flags, start_ticks) = parse_stat(&text)?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    Some(ProcInfo {
        pid,
        ppid,
        flags,
        start_ticks,
        exe,
    })
}

/// Every pid currently in /proc.
pub fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// `pid`, its parent, grandparent, ... up to pid 1 (bounded, in case of a cycle while racing).
pub fn ancestors(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut cur = pid;
    while out.len() < 64 {
        let Some(info) = read(cur) else { break };
        if info.ppid == 0 || info.ppid == cur {
            break;
        }
        out.push(info.ppid);
        cur = info.ppid;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let line =
            "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 998877 0 0";
        assert_eq!(parse_stat(line), Some((17, 4_194_560, 998_877)));
        assert_eq!(parse_stat("1 (init"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn reads_this_process_and_kthreadd() {
        let me = read(std::process::id());
        assert!(
            me.as_ref()
                .is_some_and(|m| !m.is_kernel_thread() && m.exe.is_some()),
            "{me:?}"
        );
        assert!(read(2).is_some_and(|k| k.is_kernel_thread()));
        assert!(ancestors(std::process::id()).last().is_some());
    }
}
