//! Whether the agent can see the host once its sources are open, and what it says when it
//! cannot. An agent that sees nothing must not look like one that is running: with no kernel
//! event source open, or with sources refused for want of privileges (not root, or missing
//! capabilities), [`Readiness::refusal`] gives the reason the agent exits with; an intentional
//! partial run (`--allow-partial`) goes on anyway. Sources that failed while others run are
//! each reported as a health finding (`rule.id: ringfence-health-source`, level high) in the
//! event stream, so the gap reaches the outputs and the console, not only the log.

use ringfence_detect::{Finding, Format, RuleMeta};
use ringfence_event::{Event, SourceKind};
use ringfence_sensor::privilege::{self, Capability, Privileges};

/// The health rule a source that did not open raises.
pub const SOURCE_RULE_ID: &str = "ringfence-health-source";
/// The health rule any other missing part raises (content manager, exec guard).
pub const PART_RULE_ID: &str = "ringfence-health-degraded";
/// The health finding of a routed output that dropped findings (see [`crate::outputs`]).
pub const OUTPUT_RULE_ID: &str = "ringfence-health-output";
/// The health finding (level low) of active content with rules the sensor's profile gives no
/// hook to: they can never fire until the profile changes.
pub const UNHOOKED_RULE_ID: &str = "ringfence-health-unhooked-rules";

/// A source that did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedSource {
    pub name: &'static str,
    pub error: String,
    /// The capabilities it needs that this process lacks.
    pub missing: Vec<Capability>,
}

/// What opening the sources came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub privileges: Privileges,
    /// Kernel event sources open (eBPF, process connector, audit, fanotify).
    pub kernel_sources: Vec<&'static str>,
    /// Kernel sources that did not open.
    pub failed: Vec<FailedSource>,
    /// Why eBPF did not load, when the agent went driverless instead (not a failure by itself:
    /// the driverless sources take its place).
    pub ebpf_fallback: Option<String>,
}

impl Readiness {
    /// Why the agent would run blind, or `None` when it sees the host. Blind: no kernel source
    /// is open, or a source was refused for want of a privilege (the agent is not root or
    /// lacks a capability). `command` is the command line a person would rerun with `sudo`.
    pub fn refusal(&self, command: &str) -> Option<String> {
        let unprivileged: Vec<&FailedSource> = self
            .failed
            .iter()
            .filter(|f| !f.missing.is_empty())
            .collect();
        if self.kernel_sources.is_empty() || !unprivileged.is_empty() {
            let mut why = if self.kernel_sources.is_empty() {
                "no kernel event source started, so the agent would see nothing".to_owned()
            } else {
                format!(
                    "only {} started, the others lack privileges",
                    self.kernel_sources.join(", ")
                )
            };
            if !unprivileged.is_empty() {
                let needs: Vec<String> = unprivileged
                    .iter()
                    .map(|f| format!("{} needs {}", f.name, privilege::names(&f.missing)))
                    .collect();
                why += &format!(
                    ": it runs as {} without the capabilities its sources need ({}); run it as \
                     root (sudo {command})",
                    self.privileges.who(),
                    needs.join("; ")
                );
                if self.privileges.is_root() {
                    why += ", and give it those capabilities (a container or unit drops them)";
                }
            } else if self.failed.is_empty() && self.ebpf_fallback.is_none() {
                why += ": the configuration turns every kernel source off ([sources] \
                        proc_connector, audit, fanotify)";
            }
            let mut errors: Vec<String> = self
                .ebpf_fallback
                .iter()
                .map(|e| format!("ebpf: {e}"))
                .collect();
            errors.extend(self.failed.iter().map(|f| {
                // A source's errors usually name it already ("source audit: ...").
                if f.error.contains(f.name) {
                    f.error.clone()
                } else {
                    format!("{}: {}", f.name, f.error)
                }
            }));
            if !errors.is_empty() {
                why += &format!(". Sources: {}", errors.join("; "));
            }
            return Some(why);
        }
        None
    }

    /// One health finding per failed source (none when every source opened).
    pub fn findings(&self, host: Option<&str>) -> Vec<serde_json::Value> {
        self.failed
            .iter()
            .map(|f| {
                let mut message = format!(
                    "source {} did not start ({}); the agent runs without it: its events are \
                     not seen on this host",
                    f.name, f.error
                );
                if !f.missing.is_empty() {
                    message += &format!(
                        " (it needs {}, which the agent, running as {}, lacks)",
                        privilege::names(&f.missing),
                        self.privileges.who()
                    );
                }
                health_finding(SOURCE_RULE_ID, source_kind(f.name), message, host)
            })
            .collect()
    }
}

fn source_kind(name: &str) -> SourceKind {
    match name {
        "ebpf" => SourceKind::Ebpf,
        "proc_connector" => SourceKind::ProcConnector,
        "audit" => SourceKind::Audit,
        "fanotify" => SourceKind::Fanotify,
        _ => SourceKind::Agent,
    }
}

/// An ECS alert about the agent's own health: a `sensor-health` event carrying `message`, with
/// the rule `rule_id` (level high) on top.
pub fn health_finding(
    rule_id: &str,
    source: SourceKind,
    message: String,
    host: Option<&str>,
) -> serde_json::Value {
    let (title, description) = if rule_id == SOURCE_RULE_ID {
        (
            "Ringfence Agent Source Not Running",
            "An event source of the agent did not start: the events it sees are missed on \
             this host until it does.",
        )
    } else if rule_id == OUTPUT_RULE_ID {
        (
            "Ringfence Agent Output Dropped Findings",
            "A routed output (webhook, syslog, Splunk HEC, OCSF file) could not deliver some \
             findings: its receiver was down, refused them, or its queue was full. Those \
             findings never reached that receiver.",
        )
    } else if rule_id == UNHOOKED_RULE_ID {
        (
            "Ringfence Content Rules Without Sensor Hooks",
            "Rules of the active content run only on event kinds the sensor has no hook for \
             under its profile: they can never fire until the profile (or the kernel) changes.",
        )
    } else {
        (
            "Ringfence Agent Running Degraded",
            "A part of the agent did not start: the host is less protected than configured.",
        )
    };
    let meta = RuleMeta {
        id: rule_id.into(),
        title: title.into(),
        description: description.into(),
        level: if rule_id == UNHOOKED_RULE_ID {
            "low"
        } else {
            "high"
        }
        .into(),
        file: "ringfence-health".into(),
        ..RuleMeta::default()
    };
    let mut event = Event::health_notice(source, message);
    event.host_name = host.map(Into::into);
    Finding {
        meta: &meta,
        event: &event,
        correlation: None,
    }
    .to_json(Format::Ecs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOBODY: Privileges = Privileges {
        uid: 65534,
        effective: 0,
    };
    const ROOT: Privileges = Privileges {
        uid: 0,
        effective: u64::MAX,
    };

    fn failed(name: &'static str, p: &Privileges) -> FailedSource {
        FailedSource {
            name,
            error: format!("{name}: EPERM"),
            missing: p.missing_for(name),
        }
    }

    #[test]
    fn rules_without_hooks_are_a_low_finding_and_missing_parts_high() {
        let low = health_finding(UNHOOKED_RULE_ID, SourceKind::Ebpf, "3 rules".into(), None);
        assert_eq!(low["rule"]["id"], UNHOOKED_RULE_ID);
        assert_eq!(low["event"]["severity"], high_or_low("low"), "{low}");
        let high = health_finding(PART_RULE_ID, SourceKind::Agent, "x".into(), None);
        assert_eq!(high["event"]["severity"], high_or_low("high"), "{high}");
    }

    /// The ECS severity a finding of `level` carries.
    fn high_or_low(level: &str) -> serde_json::Value {
        let meta = RuleMeta {
            level: level.into(),
            ..RuleMeta::default()
        };
        let event = Event::health_notice(SourceKind::Agent, String::new());
        Finding {
            meta: &meta,
            event: &event,
            correlation: None,
        }
        .to_json(Format::Ecs)["event"]["severity"]
            .clone()
    }

    #[test]
    fn an_unprivileged_agent_with_no_source_is_told_to_run_as_root() {
        let r = Readiness {
            privileges: NOBODY,
            kernel_sources: vec![],
            failed: vec![failed("proc_connector", &NOBODY), failed("audit", &NOBODY)],
            ebpf_fallback: Some("tp_btf: EPERM".into()),
        };
        let why = r.refusal("ringfence agent run").unwrap();
        assert!(why.starts_with("no kernel event source started"), "{why}");
        assert!(why.contains("runs as uid 65534"), "{why}");
        assert!(why.contains("proc_connector needs CAP_NET_ADMIN"), "{why}");
        assert!(
            why.contains("audit needs CAP_AUDIT_READ, CAP_AUDIT_CONTROL"),
            "{why}"
        );
        assert!(
            why.contains("run it as root (sudo ringfence agent run)"),
            "{why}"
        );
        assert!(why.contains("ebpf: tp_btf: EPERM"), "{why}");
    }

    #[test]
    fn a_root_agent_missing_one_source_runs_and_reports_it() {
        let r = Readiness {
            privileges: ROOT,
            kernel_sources: vec!["proc_connector", "fanotify"],
            failed: vec![FailedSource {
                name: "audit",
                error: "bind(AUDIT_NLGRP_READLOG): EPROTONOSUPPORT".into(),
                missing: vec![],
            }],
            ebpf_fallback: None,
        };
        assert_eq!(r.refusal("x"), None);
        let f = r.findings(Some("h1"));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0]["event"]["kind"], "alert");
        assert_eq!(f[0]["rule"]["id"], SOURCE_RULE_ID);
        assert_eq!(f[0]["ringfence"]["finding"]["level"], "high");
        assert_eq!(f[0]["host"]["name"], "h1");
        let text = f[0].to_string();
        assert!(text.contains("source audit did not start"), "{text}");
    }

    #[test]
    fn a_root_agent_in_a_container_without_caps_is_refused_even_with_one_source() {
        let p = Privileges {
            uid: 0,
            effective: 1 << 12, // CAP_NET_ADMIN only
        };
        let r = Readiness {
            privileges: p,
            kernel_sources: vec!["proc_connector"],
            failed: vec![failed("fanotify", &p)],
            ebpf_fallback: None,
        };
        let why = r.refusal("ringfence agent run").unwrap();
        assert!(why.starts_with("only proc_connector started"), "{why}");
        assert!(why.contains("fanotify needs CAP_SYS_ADMIN"), "{why}");
        assert!(why.contains("give it those capabilities"), "{why}");
    }

    #[test]
    fn every_kernel_source_turned_off_is_blind_and_says_so() {
        let r = Readiness {
            privileges: ROOT,
            kernel_sources: vec![],
            failed: vec![],
            ebpf_fallback: None,
        };
        let why = r.refusal("x").unwrap();
        assert!(why.contains("turns every kernel source off"), "{why}");
        assert!(r.findings(None).is_empty());
    }
}
