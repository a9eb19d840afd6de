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
//!
//! Two things are not tamper. A signal from the agent's launcher (the parent of its outermost
//! process: the service manager, `ringfence up`, `timeout -s INT 5 ringfence agent run`), known
//! by pid and start time, is how an agent is stopped, as the BPF LSM guard also allows; a stop
//! signal (SIGSTOP and the like) is tamper from it too. And a
//! look at the agent's BPF objects by the system's `bpftool` (in `/usr/sbin` and the like)
//! listing them (`prog show`, `link list`, `map dump`: a descriptor by id, its info read,
//! closed) is one low finding
//! (`ringfence-tamper-bpf-look`), not a critical one per object; the pipeline folds the looks of
//! one process into one finding with a count (see [`crate::group`]). Any other descriptor
//! request by id stays critical (`ringfence-tamper-bpf`): the sensor reports the request, not
//! what is done with the descriptor after (a detach, a replace, a map write, keeping it), so a
//! request that is not a known read-only `bpftool` command is treated as the first step of one.

use ringfence_detect::{Finding, Format, RuleMeta};
use ringfence_event::{Event, EventKind, SourceKind, Timestamp};

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

/// `rule.ruleset` of tamper findings.
pub const RULESET: &str = "ringfence-tamper";

/// The process that launched the agent: its signals stop the agent, they do not tamper with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launcher {
    pub pid: u32,
    /// When it started, so a reused pid is not trusted.
    pub start: Timestamp,
}

impl Launcher {
    /// The parent of `pid` (the agent's outermost process), read from /proc; `None` when it
    /// cannot be read. Under systemd that is pid 1: `systemctl stop` is a stop, as the guard
    /// also allows.
    pub fn parent_of(pid: u32) -> Option<Launcher> {
        let clocks = ringfence_sensor::sys::Clocks::read();
        let ppid = ringfence_sensor::proc_info::read_process(pid, None, &clocks).ppid?;
        if ppid == 0 {
            return None;
        }
        let start = ringfence_sensor::proc_info::read_process(ppid, None, &clocks).start?;
        Some(Launcher { pid: ppid, start })
    }

    /// `event`'s actor is this launcher: same pid, and (when the event knows it) the same
    /// start, within the 10 ms of /proc's clock ticks and the rounding between clocks.
    fn is_actor_of(&self, event: &Event) -> bool {
        const SLACK_NS: u64 = 1_000_000_000;
        event.process.as_ref().is_some_and(|p| {
            p.pid == self.pid
                && p.start
                    .is_none_or(|s| s.as_nanos().abs_diff(self.start.as_nanos()) < SLACK_NS)
        })
    }
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
    /// Who launched the agent: its signals to the agent are a stop, not tamper.
    pub launcher: Option<Launcher>,
}

/// The detector.
pub struct TamperDetector {
    opts: TamperOptions,
    signal: RuleMeta,
    ptrace: RuleMeta,
    file: RuleMeta,
    bpf: RuleMeta,
    bpf_look: RuleMeta,
    killed: RuleMeta,
}

fn meta(id: &str, title: &str, description: &str) -> RuleMeta {
    RuleMeta {
        id: id.into(),
        title: title.into(),
        description: description.into(),
        level: "critical".into(),
        tags: vec!["attack.defense-evasion".into(), "attack.t1562.001".into()],
        file: RULESET.into(),
        ..RuleMeta::default()
    }
}

/// `bpftool` subcommands that only read (spelt out: bpftool also takes prefixes, and `d` is
/// `dump` for programs but `detach` for links).
const BPFTOOL_READ_VERBS: [&str; 5] = ["show", "list", "dump", "help", "tree"];

/// Where a distribution installs `bpftool` (Ubuntu's `/usr/sbin/bpftool` runs the one under
/// `/usr/lib/linux-tools/VERSION/`).
fn system_bpftool(executable: &str) -> bool {
    let Some(dir) = executable.strip_suffix("/bpftool") else {
        return false;
    };
    matches!(
        dir,
        "/usr/sbin" | "/usr/bin" | "/sbin" | "/bin" | "/usr/local/sbin" | "/usr/local/bin"
    ) || (dir.starts_with("/usr/lib/linux-tools") && !dir.contains("/."))
}

/// The event's actor is the system's `bpftool` running a read-only subcommand (`bpftool -j
/// prog show`, `bpftool link list`). Options are skipped; anything unexpected is not a look.
fn bpftool_look(event: &Event) -> bool {
    let Some(p) = event.process.as_ref() else {
        return false;
    };
    if !p.executable.as_deref().is_some_and(system_bpftool) {
        return false;
    }
    let mut words = p.args.iter().skip(1).filter(|a| !a.starts_with('-'));
    let (Some(object), Some(verb)) = (words.next(), words.next()) else {
        return false;
    };
    matches!(
        object.as_str(),
        "prog" | "map" | "link" | "btf" | "cgroup" | "net" | "perf" | "struct_ops"
    ) && BPFTOOL_READ_VERBS.contains(&verb.as_str())
}

/// Signals that do not stop, kill or pause a process.
fn harmless(signal: i64) -> bool {
    // 0: existence probe; SIGCHLD 17, SIGCONT 18, SIGURG 23, SIGWINCH 28.
    matches!(signal, 0 | 17 | 18 | 23 | 28)
}

/// A signal that freezes its target (SIGSTOP 19, SIGTSTP 20, SIGTTIN 21, SIGTTOU 22): it
/// blinds the agent with the service still up, so it is tamper even from the launcher (and the
/// BPF LSM guard refuses it).
fn freezes(signal: i64) -> bool {
    matches!(signal, 19..=22)
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
            bpf_look: RuleMeta {
                level: "low".into(),
                ..meta(
                    "ringfence-tamper-bpf-look",
                    "BPF Objects of the Ringfence Agent Listed",
                    "bpftool, running a read-only command (show, list, dump), took a descriptor \
                     to the agent's BPF programs, maps or links to read their information. The \
                     looks of one process are one finding with a count.",
                )
            },
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
                let launcher =
                    self.opts.launcher.is_some_and(|l| l.is_actor_of(event)) && !freezes(signal);
                (self.is_agent(target) && !harmless(signal) && !launcher).then_some(&self.signal)
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
            EventKind::BpfLoad => {
                let by_id = event
                    .detail
                    .as_ref()?
                    .bpf_command
                    .as_deref()
                    .is_some_and(|c| c.ends_with("_get_fd_by_id"));
                if !by_id {
                    None
                } else if bpftool_look(event) {
                    Some(&self.bpf_look)
                } else {
                    Some(&self.bpf)
                }
            }
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
            launcher: Some(Launcher {
                pid: 50,
                start: Timestamp::from_secs(1_800_000_000),
            }),
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

    fn bpf_by_id(actor: u32, executable: &str, args: &[&str]) -> Event {
        let mut e = event(EventKind::BpfLoad, actor);
        if let Some(p) = e.process.as_mut() {
            p.executable = Some(executable.into());
            p.args = args.iter().map(|a| (*a).to_string()).collect();
        }
        e.detail = Some(Box::new(Detail {
            bpf_command: Some("prog_get_fd_by_id".into()),
            ..Detail::default()
        }));
        e
    }

    #[test]
    fn bpftool_listing_the_agent_objects_is_a_low_look_and_the_rest_stays_critical() {
        let mut d = detector();
        for args in [
            &["bpftool", "prog", "show"][..],
            &["bpftool", "link", "list"],
            &["bpftool", "-j", "-p", "map", "dump", "id", "7"],
            &["bpftool", "--json", "prog", "list"],
        ] {
            for exe in [
                "/usr/sbin/bpftool",
                "/usr/lib/linux-tools/6.8.0-49-generic/bpftool",
            ] {
                let f = findings(&mut d, &bpf_by_id(4242, exe, args));
                assert_eq!(f.len(), 1, "{exe} {args:?}");
                assert_eq!(f[0]["rule"]["id"], "ringfence-tamper-bpf-look", "{args:?}");
            }
            let f = findings(&mut d, &bpf_by_id(4242, "/usr/sbin/bpftool", args));
            assert_eq!(f.len(), 1, "{args:?}");
            assert_eq!(f[0]["rule"]["id"], "ringfence-tamper-bpf-look", "{args:?}");
            assert_eq!(f[0]["ringfence"]["finding"]["level"], "low");
            assert_eq!(f[0]["rule"]["ruleset"], RULESET);
        }
        for (exe, args) in [
            (
                "/usr/sbin/bpftool",
                &["bpftool", "link", "detach", "id", "3"][..],
            ),
            (
                "/usr/sbin/bpftool",
                &["bpftool", "map", "update", "id", "3"],
            ),
            (
                "/usr/sbin/bpftool",
                &["bpftool", "prog", "pin", "id", "3", "/sys/fs/bpf/x"],
            ),
            // Prefixes are bpftool's too, and `link d` is a detach.
            ("/usr/sbin/bpftool", &["bpftool", "link", "d", "id", "3"]),
            (
                "/usr/sbin/bpftool",
                &["bpftool", "batch", "file", "/tmp/cmds"],
            ),
            ("/usr/sbin/bpftool", &["bpftool"]),
            ("/tmp/evil", &["bpftool", "prog", "show"]),
            // A copy outside the system's directories.
            ("/tmp/x/bpftool", &["bpftool", "prog", "show"]),
            (
                "/usr/lib/linux-tools/../../../tmp/bpftool",
                &["bpftool", "prog", "show"],
            ),
        ] {
            let f = findings(&mut d, &bpf_by_id(4242, exe, args));
            assert_eq!(f.len(), 1, "{exe} {args:?}");
            assert_eq!(f[0]["rule"]["id"], "ringfence-tamper-bpf", "{exe} {args:?}");
            assert_eq!(f[0]["ringfence"]["finding"]["level"], "critical");
        }
    }

    #[test]
    fn a_stop_by_the_agent_launcher_is_not_tamper() {
        let mut d = detector();
        let stop = |actor: u32, start: Option<Timestamp>| {
            let mut e = event(EventKind::Signal, actor);
            if let Some(p) = e.process.as_mut() {
                p.start = start;
            }
            e.target = Some(TargetProcess {
                pid: 100,
                executable: None,
            });
            e.detail = Some(Box::new(Detail {
                signal_number: Some(2),
                ..Detail::default()
            }));
            e
        };
        let launched = Timestamp::from_secs(1_800_000_000);
        // `timeout -s INT 5 ringfence agent run`: the parent stops its child.
        assert!(findings(&mut d, &stop(50, Some(launched))).is_empty());
        assert!(findings(&mut d, &stop(50, None)).is_empty());
        let close = Timestamp(launched.as_nanos() + 9_000_000);
        assert!(findings(&mut d, &stop(50, Some(close))).is_empty());
        // Its SIGKILL at the end of a stop timeout, or systemd-shutdown's, ends the agent too.
        let mut kill = stop(50, Some(launched));
        if let Some(detail) = kill.detail.as_mut() {
            detail.signal_number = Some(9);
        }
        assert!(findings(&mut d, &kill).is_empty());
        // A freeze is tamper even from the launcher: it blinds the agent, the service still up.
        let mut freeze = stop(50, Some(launched));
        if let Some(detail) = freeze.detail.as_mut() {
            detail.signal_number = Some(19);
        }
        assert_eq!(findings(&mut d, &freeze).len(), 1);
        // Anyone else, or the launcher's pid reused by a later process, is tamper.
        assert_eq!(findings(&mut d, &stop(51, Some(launched))).len(), 1);
        let reused = Timestamp::from_secs(1_800_000_500);
        assert_eq!(findings(&mut d, &stop(50, Some(reused))).len(), 1);
        // Without a known launcher, every stop is reported.
        let mut bare = TamperDetector::new(TamperOptions {
            agent_pids: vec![100],
            ..TamperOptions::default()
        });
        assert_eq!(findings(&mut bare, &stop(50, Some(launched))).len(), 1);
    }

    #[test]
    fn the_launcher_of_this_test_is_its_parent() {
        let me = std::process::id();
        let l = Launcher::parent_of(me);
        let parent = std::os::unix::process::parent_id();
        assert_eq!(l.map(|l| l.pid), Some(parent));
        assert!(l.is_some_and(|l| l.start.as_nanos() > 0));
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
