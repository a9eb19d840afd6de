//! Tamper detection that no content can switch off: signals and ptrace aimed at the agent,
//! changes to its binary and its state (content store, trusted root, fleet credential) by any
//! other process, and a worker that the supervisor found killed by a signal.
//!
//! It is a [`Detector`] the worker always runs ahead of content, so a bad or empty bundle cannot
//! blind it. Findings are ordinary ECS alerts (`rule.ruleset: ringfence-tamper`, level
//! critical, ATT&CK T1562.001) carrying the actor's process and ancestry from enrichment; they go
//! to the outputs and, with a console, up with the other findings. A SIGKILL cannot be reported
//! by the process it kills: the supervisor sees the death and tells the next worker, which
//! reports it at once; a killed supervisor is reported by the worker (in eBPF mode the kernel
//! reports signals aimed at either before they land).

use ringfence_detect::{Finding, Format, RuleMeta};
use ringfence_event::{Event, EventKind, SourceKind};

use ringfence_sensor::{EventSender, Source, SourceError, StopSignal};

use crate::detect::Detector;

/// A source of one event: this worker replaced one that a signal killed. It puts the news in
/// the event stream at once, so the tamper detector reports it even on a host where nothing
/// else happens.
pub struct RestartNotice {
    message: String,
}

impl RestartNotice {
    pub fn new(message: String) -> RestartNotice {
        RestartNotice { message }
    }
}

impl Source for RestartNotice {
    fn name(&self) -> &'static str {
        "restart_notice"
    }

    fn run(self: Box<Self>, out: EventSender, _stop: StopSignal) -> Result<(), SourceError> {
        out.send(restart_notice(self.message));
        Ok(())
    }
}

/// The `sensor-health` event a [`RestartNotice`] sends.
fn restart_notice(message: String) -> Event {
    Event::health_notice(SourceKind::Agent, message)
}

/// What the agent protects and who it is.
#[derive(Debug, Clone, Default)]
pub struct TamperOptions {
    /// The agent's own processes (worker, supervisor): their actions are not tampering.
    pub agent_pids: Vec<u32>,
    /// Files whose change is tampering (the agent's binary, its config).
    pub files: Vec<String>,
    /// Directories under which any change is tampering (the content store).
    pub dirs: Vec<String>,
    /// How the previous worker ended, when a signal killed it: reported when the
    /// [`RestartNotice`] carrying it comes through.
    pub previous_worker: Option<String>,
}

/// The detector.
pub struct TamperDetector {
    opts: TamperOptions,
    signal: RuleMeta,
    ptrace: RuleMeta,
    file: RuleMeta,
    bpf: RuleMeta,
    killed: RuleMeta,
}

fn meta(id: &str, title: &str, description: &str) -> RuleMeta {
    RuleMeta {
        id: id.into(),
        title: title.into(),
        description: description.into(),
        level: "critical".into(),
        tags: vec!["attack.defense-evasion".into(), "attack.t1562.001".into()],
        file: "ringfence-tamper".into(),
        ..RuleMeta::default()
    }
}

/// Signals that do not stop, kill or pause a process.
fn harmless(signal: i64) -> bool {
    // 0: existence probe; SIGCHLD 17, SIGCONT 18, SIGURG 23, SIGWINCH 28.
    matches!(signal, 0 | 17 | 18 | 23 | 28)
}

impl TamperDetector {
    pub fn new(opts: TamperOptions) -> TamperDetector {
        TamperDetector {
            opts,
            signal: meta(
                "ringfence-tamper-signal",
                "Signal Sent to the Ringfence Agent",
                "A process outside the agent sent a signal that stops, pauses or kills the agent.",
            ),
            ptrace: meta(
                "ringfence-tamper-ptrace",
                "Ptrace of the Ringfence Agent",
                "A process attached to or inspected the agent with ptrace.",
            ),
            file: meta(
                "ringfence-tamper-file",
                "Ringfence Agent Files Changed",
                "A process outside the agent changed the agent's binary, configuration or content store.",
            ),
            bpf: meta(
                "ringfence-tamper-bpf",
                "BPF Access to the Ringfence Agent",
                "A process outside the agent asked for a descriptor to one of the agent's BPF \
                 programs, maps or links: the first step of detaching or rewriting them. With \
                 the BPF LSM guard the request is refused (event.outcome: failure).",
            ),
            killed: meta(
                "ringfence-tamper-killed",
                "Ringfence Agent Worker Killed",
                "The agent's worker was killed by a signal; the supervisor restarted it.",
            ),
        }
    }

    fn is_agent(&self, pid: u32) -> bool {
        self.opts.agent_pids.contains(&pid)
    }

    fn protected_path(&self, path: &str) -> bool {
        self.opts.files.iter().any(|f| f == path)
            || self.opts.dirs.iter().any(|d| {
                path.strip_prefix(d.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
    }

    /// Which tamper rule `event` trips, if any.
    fn check(&self, event: &Event) -> Option<&RuleMeta> {
        let actor = event.process.as_ref().map(|p| p.pid);
        if actor.is_some_and(|pid| self.is_agent(pid)) {
            return None;
        }
        match event.kind? {
            EventKind::Signal => {
                let target = event.target.as_ref()?.pid;
                let signal = event.detail.as_ref()?.signal_number?;
                (self.is_agent(target) && !harmless(signal)).then_some(&self.signal)
            }
            EventKind::Ptrace => {
                let target = event.target.as_ref()?.pid;
                self.is_agent(target).then_some(&self.ptrace)
            }
            EventKind::FileCreate
            | EventKind::FileModify
            | EventKind::FileDelete
            | EventKind::FileRename => {
                let f = event.file.as_ref()?;
                (self.protected_path(&f.path)
                    || f.original_path
                        .as_deref()
                        .is_some_and(|p| self.protected_path(p)))
                .then_some(&self.file)
            }
            // A descriptor by id to one of the agent's BPF objects: the sensor reports no
            // other, and the guard reports the ones it refused. Program loads are content's
            // business.
            EventKind::BpfLoad => event
                .detail
                .as_ref()?
                .bpf_command
                .as_deref()
                .is_some_and(|c| c.ends_with("_get_fd_by_id"))
                .then_some(&self.bpf),
            _ => None,
        }
    }
}

impl Detector for TamperDetector {
    fn name(&self) -> &str {
        "tamper"
    }

    fn on_event(&mut self, event: &Event, emit: &mut dyn FnMut(serde_json::Value)) {
        let meta = if self.is_restart_notice(event) {
            self.opts.previous_worker = None;
            Some(&self.killed)
        } else {
            self.check(event)
        };
        if let Some(meta) = meta {
            emit(
                Finding {
                    meta,
                    event,
                    correlation: None,
                }
                .to_json(Format::Ecs),
            );
        }
    }
}

impl TamperDetector {
    /// The notice of the killed predecessor, the first time it comes through.
    fn is_restart_notice(&self, event: &Event) -> bool {
        event.kind == Some(EventKind::SensorHealth)
            && event.source == Some(SourceKind::Agent)
            && self.opts.previous_worker.is_some()
            && event.health.as_ref().and_then(|h| h.message.as_ref())
                == self.opts.previous_worker.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use ringfence_event::{Detail, File, Outcome, Process, TargetProcess, Timestamp};

    use super::*;

    fn detector() -> TamperDetector {
        TamperDetector::new(TamperOptions {
            agent_pids: vec![100, 101],
            files: vec!["/usr/bin/ringfence".into()],
            dirs: vec!["/var/lib/ringfence/content/.state".into()],
            previous_worker: None,
        })
    }

    fn event(kind: EventKind, actor: u32) -> Event {
        let mut e = Event::new(kind, SourceKind::Ebpf, Timestamp::now());
        e.process = Some(Process {
            pid: actor,
            ..Process::default()
        });
        e
    }

    fn findings(d: &mut TamperDetector, e: &Event) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        d.on_event(e, &mut |f| out.push(f));
        out
    }

    #[test]
    fn signals_and_ptrace_at_the_agent_from_others_are_tampering() {
        let mut d = detector();
        let mut kill = event(EventKind::Signal, 4242);
        kill.target = Some(TargetProcess {
            pid: 101,
            executable: None,
        });
        kill.detail = Some(Box::new(Detail {
            signal_number: Some(9),
            ..Detail::default()
        }));
        let f = findings(&mut d, &kill);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0]["rule"]["id"], "ringfence-tamper-signal");
        assert_eq!(f[0]["event"]["kind"], "alert");
        assert_eq!(f[0]["process"]["pid"], 4242);
        // SIGCONT, or the agent signalling itself, is not.
        kill.detail = Some(Box::new(Detail {
            signal_number: Some(18),
            ..Detail::default()
        }));
        assert!(findings(&mut d, &kill).is_empty());
        let mut own = kill.clone();
        own.process = Some(Process {
            pid: 100,
            ..Process::default()
        });
        assert!(findings(&mut d, &own).is_empty());
        let mut trace = event(EventKind::Ptrace, 4242);
        trace.target = Some(TargetProcess {
            pid: 100,
            executable: None,
        });
        assert_eq!(
            findings(&mut d, &trace)[0]["rule"]["id"],
            "ringfence-tamper-ptrace"
        );
    }

    #[test]
    fn changes_to_the_agent_files_are_tampering_and_others_are_not() {
        let mut d = detector();
        for (path, tampered) in [
            ("/usr/bin/ringfence", true),
            ("/var/lib/ringfence/content/.state/state.json", true),
            ("/var/lib/ringfence/content/.state", true),
            ("/var/lib/ringfence/content/.stateful", false),
            ("/usr/bin/ringfence2", false),
            ("/var/lib/ringfence/content/v2.bundle", false),
        ] {
            let mut e = event(EventKind::FileModify, 4242);
            e.file = Some(File {
                path: path.into(),
                ..File::default()
            });
            assert_eq!(findings(&mut d, &e).len(), usize::from(tampered), "{path}");
        }
    }

    #[test]
    fn bpf_access_by_id_is_tampering_and_program_loads_are_not() {
        let mut d = detector();
        let mut refused = event(EventKind::BpfLoad, 4242);
        refused.outcome = Some(Outcome::Failure);
        refused.detail = Some(Box::new(Detail {
            bpf_command: Some("link_get_fd_by_id".into()),
            ..Detail::default()
        }));
        let found = findings(&mut d, &refused);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["rule"]["id"], "ringfence-tamper-bpf");
        let mut load = event(EventKind::BpfLoad, 4242);
        load.detail = Some(Box::new(Detail {
            bpf_command: Some("prog_load".into()),
            ..Detail::default()
        }));
        assert!(findings(&mut d, &load).is_empty());
    }

    #[test]
    fn a_killed_worker_is_reported_once_by_the_next() {
        let mut d = TamperDetector::new(TamperOptions {
            previous_worker: Some("worker killed by signal 9".into()),
            ..TamperOptions::default()
        });
        assert!(findings(&mut d, &event(EventKind::ProcessExec, 7)).is_empty());
        let e = restart_notice("worker killed by signal 9".into());
        let f = findings(&mut d, &e);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0]["rule"]["id"], "ringfence-tamper-killed");
        assert!(f[0].to_string().contains("signal 9"));
        assert!(findings(&mut d, &e).is_empty());
    }
}
