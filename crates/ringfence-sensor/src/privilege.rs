//! The privileges the sources need: this process's effective uid and capabilities (read from
//! `/proc/self/status`), and which capabilities each source asks the kernel for. The agent uses
//! it to refuse to run blind with a reason a person can act on ("run as root"), and `doctor`
//! to say so at the top instead of an EPERM on every line.

use std::fmt;

/// A Linux capability a source needs (the numbers are the kernel's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    NetAdmin = 12,
    SysAdmin = 21,
    AuditControl = 30,
    AuditRead = 37,
    Perfmon = 38,
    Bpf = 39,
}

impl Capability {
    /// Every capability any source needs, in the order they are named.
    pub const ALL: [Capability; 6] = [
        Capability::Bpf,
        Capability::Perfmon,
        Capability::SysAdmin,
        Capability::NetAdmin,
        Capability::AuditRead,
        Capability::AuditControl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Capability::NetAdmin => "CAP_NET_ADMIN",
            Capability::SysAdmin => "CAP_SYS_ADMIN",
            Capability::AuditControl => "CAP_AUDIT_CONTROL",
            Capability::AuditRead => "CAP_AUDIT_READ",
            Capability::Perfmon => "CAP_PERFMON",
            Capability::Bpf => "CAP_BPF",
        }
    }

    fn bit(self) -> u64 {
        1u64 << (self as u32)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who this process is to the kernel's permission checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Privileges {
    /// The effective uid.
    pub uid: u32,
    /// The effective capability set (`CapEff`), one bit per capability number.
    pub effective: u64,
}

impl Privileges {
    /// This process's, from `/proc/self/status`. When that cannot be read or parsed, the
    /// process is taken to have no privileges at all (uid unknown as `u32::MAX`): the
    /// sources' own errors then say what failed.
    pub fn current() -> Privileges {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| Privileges::parse(&s))
            .unwrap_or(Privileges {
                uid: u32::MAX,
                effective: 0,
            })
    }

    /// Parses the `Uid:` and `CapEff:` lines of a `/proc/PID/status` text.
    pub fn parse(status: &str) -> Option<Privileges> {
        let mut uid = None;
        let mut effective = None;
        for line in status.lines() {
            if let Some(rest) = line.strip_prefix("Uid:") {
                // Real, effective, saved, filesystem.
                uid = rest.split_whitespace().nth(1).and_then(|u| u.parse().ok());
            } else if let Some(rest) = line.strip_prefix("CapEff:") {
                effective = u64::from_str_radix(rest.trim(), 16).ok();
            }
        }
        Some(Privileges {
            uid: uid?,
            effective: effective?,
        })
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    pub fn has(&self, cap: Capability) -> bool {
        self.effective & cap.bit() != 0
    }

    /// The capabilities `source` needs that this process lacks (empty when it has them all, or
    /// for a source that needs none). eBPF needs `CAP_BPF` and `CAP_PERFMON`, or
    /// `CAP_SYS_ADMIN` alone; the process connector `CAP_NET_ADMIN`; audit `CAP_AUDIT_READ`
    /// for its read-only multicast and `CAP_AUDIT_CONTROL` for its status query (and rules);
    /// fanotify's filesystem marks `CAP_SYS_ADMIN`.
    pub fn missing_for(&self, source: &str) -> Vec<Capability> {
        let needs: &[Capability] = match source {
            "ebpf" if self.has(Capability::SysAdmin) => &[],
            "ebpf" => &[Capability::Bpf, Capability::Perfmon],
            "proc_connector" => &[Capability::NetAdmin],
            "audit" => &[Capability::AuditRead, Capability::AuditControl],
            "fanotify" => &[Capability::SysAdmin],
            _ => &[],
        };
        needs.iter().copied().filter(|&c| !self.has(c)).collect()
    }

    /// The capabilities of [`Capability::ALL`] this process lacks.
    pub fn missing(&self) -> Vec<Capability> {
        Capability::ALL
            .into_iter()
            .filter(|&c| !self.has(c))
            .collect()
    }

    /// "uid 65534" or "root".
    pub fn who(&self) -> String {
        match self.uid {
            0 => "root".to_owned(),
            u32::MAX => "an unknown uid".to_owned(),
            uid => format!("uid {uid}"),
        }
    }
}

/// Capabilities as a comma-separated list of their names.
pub fn names(caps: &[Capability]) -> String {
    caps.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "Name:\tcat\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n\
                        CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                        CapEff:\t000001ffffffffff\n";
    const NOBODY: &str = "Name:\tcat\nUid:\t65534\t65534\t65534\t65534\n\
                          CapEff:\t0000000000000000\n";

    #[test]
    fn root_has_every_capability_and_nobody_none() {
        let root = Privileges::parse(ROOT).unwrap();
        assert!(root.is_root());
        assert!(root.missing().is_empty());
        assert!(root.missing_for("fanotify").is_empty());
        let nobody = Privileges::parse(NOBODY).unwrap();
        assert_eq!(nobody.uid, 65534);
        assert_eq!(nobody.who(), "uid 65534");
        assert_eq!(nobody.missing().len(), Capability::ALL.len());
        assert_eq!(nobody.missing_for("proc_connector"), [Capability::NetAdmin]);
        assert_eq!(names(&nobody.missing_for("ebpf")), "CAP_BPF, CAP_PERFMON");
        assert!(nobody.missing_for("logs").is_empty());
    }

    #[test]
    fn sys_admin_alone_is_enough_for_ebpf_and_audit_needs_control_too() {
        // CAP_SYS_ADMIN (21) and CAP_AUDIT_READ (37) only: a container's root, say.
        let p = Privileges {
            uid: 0,
            effective: (1 << 21) | (1 << 37),
        };
        assert!(p.missing_for("ebpf").is_empty());
        assert_eq!(p.missing_for("audit"), [Capability::AuditControl]);
        assert_eq!(p.missing_for("proc_connector"), [Capability::NetAdmin]);
    }

    #[test]
    fn a_status_without_the_lines_is_not_parsed_and_this_process_reads_its_own() {
        assert_eq!(Privileges::parse("Name:\tx\n"), None);
        assert_eq!(Privileges::parse("Uid:\tx\nCapEff:\tzz\n"), None);
        let me = Privileges::current();
        assert_ne!(me.uid, u32::MAX);
    }
}
