//! Capability probes for the driverless sources, for `ringfence doctor`. (BPF program types are
//! probed by `ebpf::probe`.)
//!
//! Each probe opens what its source would open and closes it again at once: nothing on the
//! host is changed (no audit rule, no mark outlives the probe's own short-lived group).

use crate::audit;
use crate::fanotify;

/// One line of the doctor's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
}

fn probe_fanotify() -> Probe {
    match fanotify::init_group() {
        Ok(group) => {
            let detail = match fanotify::probe_filesystem_mark(&group) {
                Ok(()) => "FAN_REPORT_DFID_NAME group and filesystem mark work".to_owned(),
                Err(e) => format!("group opens, but a filesystem mark is refused: {e}"),
            };
            Probe {
                name: "fanotify",
                available: detail.starts_with("FAN_"),
                detail,
            }
        }
        Err(e) => Probe {
            name: "fanotify",
            available: false,
            detail: format!("fanotify_init(FAN_REPORT_DFID_NAME) failed: {e}"),
        },
    }
}

fn probe_proc_connector() -> Probe {
    match proc_connector::ProcConnector::new() {
        Ok(_) => Probe {
            name: "proc connector",
            available: true,
            detail: "netlink CN_IDX_PROC subscription accepted".into(),
        },
        Err(e) => Probe {
            name: "proc connector",
            available: false,
            detail: format!("subscription refused: {e}"),
        },
    }
}

fn probe_audit() -> Probe {
    let p = audit::probe();
    let rules = match &p.rules {
        Ok(r) if r.exit_rules > 0 => format!(
            "{} syscall rule(s) loaded, so every syscall already pays for audit: the agent adds \
             its execve and socket rules",
            r.exit_rules
        ),
        Ok(_) => "no syscall rules loaded: the agent adds none unless `[audit] add_rules = true`"
            .to_owned(),
        Err(e) => format!("rules unreadable: {e}"),
    };
    let (available, detail) = match (&p.readlog_group, &p.enabled) {
        (Ok(()), Ok(state)) => (
            true,
            format!(
                "read-only multicast group joins; audit is {}",
                match state {
                    0 => "disabled; the agent adds no rules unless `[audit] add_rules = true` \
                          (then it enables audit while it runs)"
                        .to_owned(),
                    1 => format!("enabled; {rules}"),
                    _ => "locked (existing rules only)".to_owned(),
                }
            ),
        ),
        (Ok(()), Err(e)) => (
            true,
            format!("multicast group joins; status unreadable: {e}"),
        ),
        (Err(e), _) => (false, format!("cannot join AUDIT_NLGRP_READLOG: {e}")),
    };
    Probe {
        name: "audit",
        available,
        detail,
    }
}

/// Probe every driverless source.
pub fn driverless() -> Vec<Probe> {
    vec![probe_proc_connector(), probe_audit(), probe_fanotify()]
}
