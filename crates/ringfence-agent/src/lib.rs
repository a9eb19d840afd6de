//! Ringfence's daemon: sources → enrich → detect → outputs, and the agent's own health.
//!
//! [`Agent::run`] picks the mode ([`mode`]): in eBPF mode the eBPF sensor replaces the process
//! connector, audit and fanotify; in driverless mode those run. The log sources run in both, and
//! both feed the same enrichment, so an event looks the same whichever mode saw it (eBPF fills
//! more fields). A sensor that cannot load sends the agent driverless, with a `sensor-health`
//! event saying why; any other source that cannot open is skipped and reported as a health
//! finding ([`readiness`]); whether the agent should run at all with what opened is
//! [`Agent::readiness`]'s to say (no kernel source, or one refused for want of privileges, is
//! running blind). It seeds the [`tree::ProcessTree`] from a /proc snapshot taken *after* the
//! kernel sources started listening (so nothing falls between),
//! then runs one pipeline thread: each event is enriched from the tree, shown to the
//! [`detect::Detector`]s, and written as one ECS JSON line to every output, with the findings
//! (repeats folded into one with a count, [`group`]). Sources run on
//! their own threads and hand events over a bounded channel that drops (and counts) rather
//! than block the host.
//!
//! Every `stats_interval_secs` the agent logs events in, out and dropped per source and emits a
//! `sensor-health` event when a source lost anything; on stop it drains the queue, flushes the
//! outputs and returns a [`Summary`].
//!
//! Around that pipeline: [`tamper`] (built-in tamper detection, ahead of content), [`respond`]
//! (actions rules ask for, on their own thread behind guard rails) and [`fleet`] (enrollment,
//! check-ins, content delivery and findings upload to the console, on their own thread). None
//! of them can make the pipeline wait.
#![forbid(unsafe_code)]

pub mod config;
pub mod content;
pub mod cpu;
pub mod detect;
pub mod expiry;
pub mod fleet;
pub mod group;
pub mod merge;
pub mod mode;
pub mod outputs;
pub mod posture;
pub mod protect;
pub mod readiness;
pub mod respond;
pub mod scan;
pub mod tamper;
pub mod tree;
pub mod tuning;
pub mod users;
pub mod versions;
pub mod watch;

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use ringfence_event::{Event, EventKind, Health, Mode, SourceKind, Timestamp};
use ringfence_sensor::audit::{AuditOptions, AuditSource};
use ringfence_sensor::dns::{AskerWait, DNS_PORT, DnsOptions, DnsSource, DomainCache};
use ringfence_sensor::ebpf::EbpfSource;
use ringfence_sensor::fanotify::{FanotifyOptions, FanotifySource};
use ringfence_sensor::logs::LogSource;
use ringfence_sensor::privilege::Privileges;
use ringfence_sensor::proc_connector::{ProcConnectorOptions, ProcConnectorSource};
use ringfence_sensor::proc_info::{self, read_process};
use ringfence_sensor::sys::Clocks;
use ringfence_sensor::{CounterSnapshot, EventSender, Source, SourceCounters, StopSignal};

pub use config::{Config, ConfigError, ConfigErrors, ModeChoice, OutputSpec};
pub use detect::Detector;
pub use mode::{choose_mode, ebpf_support, resolve_mode};
pub use outputs::{Output, TextFormat};
use readiness::{FailedSource, Readiness};
use tree::ProcessTree;

/// The longest the pipeline sleeps with nothing due: how soon it notices a stop that came
/// while every source still runs.
const IDLE_TICK: Duration = Duration::from_millis(500);

/// The most events one turn of the pipeline takes from the queue before it handles them.
const TURN_BATCH: usize = 256;
/// How often the pipeline looks for the responder's decisions while actions are under way.
const RESPONSE_TICK: Duration = Duration::from_millis(20);

/// The host's name from the kernel.
pub fn kernel_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Ask `stop` to be raised on SIGINT or SIGTERM.
pub fn stop_on_signals(stop: &StopSignal) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let stop = stop.clone();
    std::thread::Builder::new()
        .name("ringfence-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(signal = sig, "stopping");
                stop.stop();
            }
        })?;
    Ok(())
}

/// How one source fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSummary {
    pub name: &'static str,
    pub counters: CounterSnapshot,
    /// Why it could not open, or why it died.
    pub error: Option<String>,
}

/// What a run did; returned by [`Agent::run`] and printed on exit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub mode: Option<Mode>,
    pub mode_reason: Option<String>,
    pub sources: Vec<SourceSummary>,
    pub events_written: u64,
    pub findings: u64,
    pub output_errors: u64,
    /// Findings the routed outputs (`[[outputs]]`) could not deliver.
    pub output_drops: u64,
    /// Matches silenced by local tuning (`[detect]` disabled rules and exceptions).
    pub findings_silenced: u64,
    pub partial_events: u64,
    /// Exec events, and those whose executable and arguments were read.
    pub exec_events: u64,
    pub exec_complete: u64,
    /// Exec events whose parent's executable was known.
    pub exec_with_parent_executable: u64,
    pub snapshot_processes: u64,
    /// Exec events completed from an audit record, and audit records that matched no exec.
    pub audit_merged: u64,
    pub audit_unmatched: u64,
    pub tree_evictions: u64,
    /// Files the YARA scanner scanned, and those it skipped (queue full, too large, past the
    /// time budget, unreadable).
    pub files_scanned: u64,
    pub scan_skipped: u64,
    /// Findings folded into a group's count rather than written ([`group`]), and groups
    /// closed early because the table was full.
    pub findings_folded: u64,
    pub finding_group_evictions: u64,
    /// eBPF mode: which hook each kind got (`network.connect: fentry (...)`), and the sources
    /// opened beside the sensor for kinds it has no hook for.
    pub sensor_hooks: Vec<String>,
    /// Rules of the content active at start that can never fire for want of a hook under the
    /// sensor's profile, and what would enable them.
    pub unhooked_rules: usize,
    pub unhooked_remedy: String,
}

impl Summary {
    /// Exec events fully enriched, as a fraction (1.0 when there were none).
    pub fn exec_completeness(&self) -> f64 {
        if self.exec_events == 0 {
            1.0
        } else {
            self.exec_complete as f64 / self.exec_events as f64
        }
    }

    /// A short human-readable report.
    pub fn render(&self) -> String {
        let mut s = format!(
            "ringfence agent summary: mode {}, {} events written, {} findings, {} partial, {} output errors\n",
            self.mode.map_or("none", Mode::as_str),
            self.events_written,
            self.findings,
            self.partial_events,
            self.output_errors
        );
        if let Some(r) = &self.mode_reason {
            s += &format!("  mode: {r}\n");
        }
        for h in &self.sensor_hooks {
            s += &format!("  hook {h}\n");
        }
        if self.unhooked_rules > 0 {
            s += &format!(
                "  content: {} rule{} can never fire, the sensor has no hook for their event kinds ({})\n",
                self.unhooked_rules,
                if self.unhooked_rules == 1 { "" } else { "s" },
                self.unhooked_remedy
            );
        }
        if self.findings_silenced > 0 {
            s += &format!(
                "  local tuning: {} matches silenced ([detect] disabled rules and exceptions)\n",
                self.findings_silenced
            );
        }
        if self.output_drops > 0 {
            s += &format!(
                "  routed outputs: {} findings dropped (receiver down, refused, or queue full)\n",
                self.output_drops
            );
        }
        if self.files_scanned > 0 || self.scan_skipped > 0 {
            s += &format!(
                "  YARA scanning: {} files scanned, {} skipped (queue full, too large, past the time budget, unreadable)\n",
                self.files_scanned, self.scan_skipped
            );
        }
        if self.findings_folded > 0 || self.finding_group_evictions > 0 {
            s += &format!(
                "  finding groups: {} repeats folded, {} groups closed early (table full)\n",
                self.findings_folded, self.finding_group_evictions
            );
        }
        s += &format!(
            "  exec enrichment: {}/{} complete ({:.1}%), {} with parent executable, {} completed from audit, {} audit records unmatched\n",
            self.exec_complete,
            self.exec_events,
            100.0 * self.exec_completeness(),
            self.exec_with_parent_executable,
            self.audit_merged,
            self.audit_unmatched
        );
        for src in &self.sources {
            let c = src.counters;
            s += &format!(
                "  source {:<15} in {} out {} dropped {} gaps {} errors {}{}\n",
                src.name,
                c.events_in,
                c.events_out,
                c.dropped,
                c.gaps,
                c.errors,
                src.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
        s
    }
}

struct Running {
    name: &'static str,
    kind: SourceKind,
    counters: Arc<SourceCounters>,
    handle: Option<JoinHandle<Result<(), ringfence_sensor::SourceError>>>,
    error: Option<String>,
    reported: CounterSnapshot,
}

/// The daemon. Build with [`Agent::new`], add detectors and outputs, then [`Agent::run`]
/// (after [`Agent::open`] when the detectors depend on the mode that really runs).
pub struct Agent {
    config: Config,
    mode_choice: ModeChoice,
    detectors: Vec<Box<dyn Detector>>,
    outputs: Option<Vec<Box<dyn Output>>>,
    format: TextFormat,
    extra_sources: Vec<(SourceKind, Box<dyn Source>)>,
    supervisor: Option<u32>,
    telemetry: Option<Arc<fleet::Telemetry>>,
    response: Option<respond::ResponseStage>,
    /// Sources opened by [`Agent::open`], and what their opening reported.
    opened: Option<(Opened, Summary)>,
    /// Parts that did not start, each raised as a health finding when the run starts.
    degraded: Vec<String>,
    /// eBPF mode: the event kinds that reach no rule (no hook under the profile, nothing beside
    /// the sensor), known once the sources are open.
    unhooked: Vec<ringfence_detect::hooked::Unhooked>,
    /// The active content's rules those kinds leave unable to fire, one line each.
    unhooked_rules: Vec<String>,
    /// eBPF mode: the profile and the hook per kind, for the console's check-ins.
    sensor_hooks: ringfence_wire::SensorHooks,
    /// The beat to the supervisor, sent from the pipeline loop.
    heartbeat: Option<content::heartbeat::Heartbeat>,
    /// The YARA scanner thread ([`scan`]), fed written and executed files.
    scanner: Option<scan::Running>,
}

/// The sensor's profile and the hook each kind got, as the check-in carries them: the hook
/// tier, or the source beside the sensor that fills the kind in, or `none`.
fn wire_hooks(
    config: &Config,
    sensor: &ringfence_sensor::ebpf::EbpfSensor,
    opened: &[(SourceKind, Box<dyn Source>)],
) -> ringfence_wire::SensorHooks {
    use ringfence_wire::Label;
    let mut kinds = Vec::new();
    for h in sensor.kind_hooks() {
        // The source opened beside the sensor that fills this kind in, if one is running.
        let beside = h
            .kinds
            .iter()
            .filter_map(|k| mode::filled_beside(*k))
            .find(|s| opened.iter().any(|(k, _)| k == s));
        let hook = match (h.tier, beside) {
            (Some(t), _) => t.as_str(),
            (None, _)
                if h.kinds.iter().all(|k| {
                    config
                        .ebpf
                        .kinds_off
                        .contains(&ringfence_sensor::ebpf::convert::event_kind(*k))
                }) =>
            {
                "switched off"
            }
            (None, Some(SourceKind::Fanotify)) => "fanotify (beside the sensor)",
            (None, Some(SourceKind::ProcConnector)) => "process connector (beside the sensor)",
            (None, _) => "none",
        };
        if let (Ok(kind), Ok(hook)) = (Label::try_from(h.label), Label::try_from(hook)) {
            kinds.push((kind, hook));
        }
    }
    kinds.truncate(ringfence_wire::limits::SENSOR_HOOKS);
    ringfence_wire::SensorHooks {
        profile: Label::try_from(sensor.profile().as_str()).ok(),
        kinds: ringfence_wire::KindHooks::try_from(kinds).unwrap_or_default(),
    }
}

/// The sources to run, and how the mode came out.
struct Opened {
    sources: Vec<(SourceKind, Box<dyn Source>)>,
    mode: Mode,
    /// Why the eBPF sensor did not load, when it was tried and failed.
    ebpf_failed: Option<String>,
    /// The eBPF sensor's programs, maps and links, for self-protection to guard.
    sensor_objects: Vec<ringfence_sensor::ebpf::guard::BpfObject>,
    /// The audit source receives execve records (its rules or others'), worth waiting for.
    audit_sees_execs: bool,
    /// The process connector reads each exec's /proc (its cgroup too) as it arrives.
    connector_places_execs: bool,
}

impl Agent {
    pub fn new(config: Config) -> Agent {
        let mode_choice = config.agent.mode;
        Agent {
            config,
            mode_choice,
            detectors: Vec::new(),
            outputs: None,
            format: TextFormat::Json,
            extra_sources: Vec::new(),
            supervisor: None,
            telemetry: None,
            response: None,
            opened: None,
            degraded: Vec::new(),
            unhooked: Vec::new(),
            unhooked_rules: Vec::new(),
            sensor_hooks: ringfence_wire::SensorHooks::default(),
            heartbeat: None,
            scanner: None,
        }
    }

    /// Beat to the supervisor from the pipeline loop (see [`content::heartbeat`]).
    pub fn with_heartbeat(mut self, heartbeat: content::heartbeat::Heartbeat) -> Agent {
        self.heartbeat = Some(heartbeat);
        self
    }

    /// Report a part of the agent that did not start (content, a guard) as a health finding
    /// (`rule.id: ringfence-health-degraded`) when the run starts.
    pub fn with_degraded(mut self, message: String) -> Agent {
        self.degraded.push(message);
        self
    }

    /// The event kinds that reach no rule in the mode that runs (eBPF mode: no hook under the
    /// sensor's profile and no source beside it), once [`Agent::open`] opened the sources.
    pub fn unhooked_kinds(&self) -> &[ringfence_detect::hooked::Unhooked] {
        &self.unhooked
    }

    /// Report the active content's rules that can never fire for want of a hook (from
    /// [`content::CompiledContent::unhooked_rules`]): their count goes in the summary and, when
    /// there are any, ONE health finding of level low names the count and the remedy.
    pub fn with_unhooked_rules(mut self, lines: Vec<String>) -> Agent {
        self.unhooked_rules = lines;
        self
    }

    /// The pid of the supervisor that started this agent: in eBPF mode its activity is
    /// ignored and signals aimed at it are reported, as for the agent itself.
    pub fn with_supervisor(mut self, pid: u32) -> Agent {
        self.supervisor = Some(pid);
        self
    }

    /// Count events, drops and findings into `telemetry`, and queue findings there for the
    /// fleet console ([`fleet::FleetLink`]).
    pub fn with_telemetry(mut self, telemetry: Arc<fleet::Telemetry>) -> Agent {
        self.telemetry = Some(telemetry);
        self
    }

    /// Carry out the responses rules ask for (see [`respond`]).
    pub fn with_response(mut self, stage: respond::ResponseStage) -> Agent {
        self.response = Some(stage);
        self
    }

    /// Feed written and executed files to a running YARA scanner; its findings join the
    /// stream (see [`scan`]).
    pub fn with_scanner(mut self, scanner: scan::Running) -> Agent {
        self.scanner = Some(scanner);
        self
    }

    /// Override the configured mode (the `--mode` flag).
    pub fn with_mode(mut self, mode: ModeChoice) -> Agent {
        self.mode_choice = mode;
        self
    }

    /// Add a detection stage.
    pub fn with_detector(mut self, detector: Box<dyn Detector>) -> Agent {
        self.detectors.push(detector);
        self
    }

    /// Use these outputs instead of the configured ones.
    pub fn with_outputs(mut self, outputs: Vec<Box<dyn Output>>) -> Agent {
        self.outputs = Some(outputs);
        self
    }

    /// How standard output prints (`--format text`: one readable line per finding).
    pub fn with_format(mut self, format: TextFormat) -> Agent {
        self.format = format;
        self
    }

    /// Run another source beside the configured ones (eBPF, replay, tests).
    pub fn with_source(mut self, kind: SourceKind, source: Box<dyn Source>) -> Agent {
        self.extra_sources.push((kind, source));
        self
    }

    /// Decide the mode and open the sources now rather than at the start of [`Agent::run`],
    /// and return the mode that will really run (driverless when the eBPF sensor did not load),
    /// so that content can be compiled for it. Calling it again returns the same mode.
    pub fn open(&mut self) -> Mode {
        if let Some((opened, _)) = &self.opened {
            return opened.mode;
        }
        let prepared = self.prepare();
        let mode = prepared.0.mode;
        self.opened = Some(prepared);
        mode
    }

    /// What [`Agent::open`] opened, against the privileges the failed sources lacked; `None`
    /// before it ran.
    pub fn readiness(&self) -> Option<Readiness> {
        self.opened
            .as_ref()
            .map(|(opened, summary)| readiness_of(opened, summary))
    }

    /// The eBPF sensor's BPF objects once [`Agent::open`] loaded it (empty otherwise).
    pub fn sensor_objects(&self) -> &[ringfence_sensor::ebpf::guard::BpfObject] {
        self.opened
            .as_ref()
            .map_or(&[], |(opened, _)| opened.sensor_objects.as_slice())
    }

    /// Resolve the mode and open its sources; what their opening reported is in the summary.
    fn prepare(&mut self) -> (Opened, Summary) {
        let mut summary = Summary::default();
        let (mode, reason) = resolve_mode(self.mode_choice);
        if let Some(r) = &reason {
            tracing::info!("{r}");
        }
        let opened = self.open_sources(mode, &mut summary);
        summary.mode = Some(opened.mode);
        summary.mode_reason = match &opened.ebpf_failed {
            Some(why) => Some(format!(
                "{}the eBPF sensor did not load ({why}); running driverless instead of refusing \
                 to run",
                reason.map(|r| format!("{r}; but ")).unwrap_or_default()
            )),
            None => reason,
        };
        tracing::info!(mode = opened.mode.as_str(), "sensor mode");
        (opened, summary)
    }

    /// Open the sources of `mode`. eBPF mode runs the eBPF sensor in place of the process
    /// connector, audit and fanotify; if the sensor does not load, the driverless sources run
    /// instead. The log sources run in both modes.
    fn open_sources(&mut self, mode: Mode, summary: &mut Summary) -> Opened {
        let mut opened = Opened {
            sources: std::mem::take(&mut self.extra_sources),
            mode,
            ebpf_failed: None,
            sensor_objects: Vec::new(),
            audit_sees_execs: false,
            connector_places_execs: false,
        };
        if mode == Mode::Ebpf {
            let options = mode::ebpf_options(&self.config, self.supervisor);
            match EbpfSource::open(&options) {
                Ok(src) => {
                    let attached = src.sensor().attached();
                    let skipped = attached.iter().filter(|a| a.skipped.is_some()).count();
                    tracing::info!(
                        programs = attached.len() - skipped,
                        skipped,
                        watched_prefixes = options.watched_prefixes.len(),
                        profile = options.profile.as_str(),
                        "eBPF sensor loaded"
                    );
                    for h in src.sensor().kind_hooks() {
                        tracing::info!(source = "ebpf", "hook {}", h.describe());
                    }
                    summary.sensor_hooks = src
                        .sensor()
                        .kind_hooks()
                        .iter()
                        .map(|h| h.describe())
                        .collect();
                    let fill_in =
                        self.open_beside_sensor(src.sensor(), &mut opened.sources, summary);
                    summary.sensor_hooks.extend(fill_in);
                    self.unhooked = mode::loaded_unhooked(&self.config, src.sensor());
                    self.sensor_hooks = wire_hooks(&self.config, src.sensor(), &opened.sources);
                    opened.sensor_objects = src.sensor().objects();
                    opened.sources.push((SourceKind::Ebpf, Box::new(src)));
                }
                Err(e) => {
                    let why = e.to_string();
                    tracing::warn!(
                        source = "ebpf",
                        error = %why,
                        "the eBPF sensor did not load; running driverless instead"
                    );
                    summary.sources.push(SourceSummary {
                        name: "ebpf",
                        counters: CounterSnapshot::default(),
                        error: Some(why.clone()),
                    });
                    opened.mode = Mode::Driverless;
                    opened.ebpf_failed = Some(why);
                }
            }
        }
        if opened.mode == Mode::Driverless {
            (opened.audit_sees_execs, opened.connector_places_execs) =
                self.open_driverless(&mut opened.sources, summary);
        }
        if self.config.sources.logs {
            opened.sources.push((
                SourceKind::AuthLog,
                Box::new(LogSource::new(&self.config.logs)),
            ));
        }
        if self.config.sources.dns {
            match DnsSource::open(&DnsOptions::default()) {
                Ok(src) => opened.sources.push((SourceKind::Dns, Box::new(src))),
                Err(e) => {
                    // Lookups go unseen (and `destination.domain` unfilled): a health
                    // finding, not only a log line.
                    let why = e.to_string();
                    tracing::error!(source = "dns", error = %why, "source not started: reported as a health finding");
                    self.degraded
                        .push(format!("the DNS source did not start: {why}"));
                    summary.sources.push(SourceSummary {
                        name: "dns",
                        counters: CounterSnapshot::default(),
                        error: Some(why),
                    });
                }
            }
        }
        opened
    }

    /// Beside the eBPF sensor: fanotify for the file kinds and the process connector for
    /// privilege changes and ptrace, where the sensor got no hook for them (the default profile
    /// on a kernel without BPF trampolines). Returns a line per source opened, for the summary.
    fn open_beside_sensor(
        &mut self,
        sensor: &ringfence_sensor::ebpf::EbpfSensor,
        opened: &mut Vec<(SourceKind, Box<dyn Source>)>,
        summary: &mut Summary,
    ) -> Vec<String> {
        use ringfence_sensor::ebpf::RecordKind as R;
        let mut lines = Vec::new();
        let s = &self.config.sources;
        let files_uncovered = [R::FileCreate, R::FileModify, R::FileDelete, R::FileRename]
            .into_iter()
            .any(|k| !sensor.covers(k));
        if s.fanotify && files_uncovered && !self.config.watched_prefixes().is_empty() {
            let options = FanotifyOptions {
                paths: self.config.fanotify.paths.clone(),
                write_only_paths: self.config.fanotify.write_only_paths.clone(),
                exec_open: false,
            };
            match FanotifySource::open(&options) {
                Ok(src) => {
                    lines.push("file.*: fanotify filesystem marks (beside the eBPF sensor)".into());
                    opened.push((SourceKind::Fanotify, Box::new(src)));
                }
                Err(e) => {
                    let why = e.to_string();
                    tracing::error!(source = "fanotify", error = %why, "file events unseen: the eBPF sensor has no file hook here and fanotify did not start");
                    self.degraded.push(format!(
                        "file events unseen: the eBPF sensor has no file hook on this kernel \
                         ([sensor] profile = \"default\") and fanotify did not start: {why}"
                    ));
                    summary.sources.push(SourceSummary {
                        name: "fanotify",
                        counters: CounterSnapshot::default(),
                        error: Some(why),
                    });
                }
            }
        }
        if s.proc_connector && (!sensor.covers(R::Privilege) || !sensor.covers(R::Ptrace)) {
            match ProcConnectorSource::open(ProcConnectorOptions {
                enrich_exec: false,
                privilege_only: true,
                hand_off: Some(Duration::from_millis(5)),
                ..ProcConnectorOptions::default()
            }) {
                Ok(src) => {
                    lines.push(
                        "privilege, ptrace: process connector (beside the eBPF sensor)".into(),
                    );
                    opened.push((SourceKind::ProcConnector, Box::new(src)));
                }
                Err(e) => {
                    let why = e.to_string();
                    tracing::error!(source = "proc_connector", error = %why, "privilege changes unseen: the eBPF sensor has no hook for them here and the process connector did not start");
                    self.degraded.push(format!(
                        "privilege changes and ptrace unseen: the eBPF sensor has no hook for \
                         them on this kernel ([sensor] profile = \"default\") and the process \
                         connector did not start: {why}"
                    ));
                    summary.sources.push(SourceSummary {
                        name: "proc_connector",
                        counters: CounterSnapshot::default(),
                        error: Some(why),
                    });
                }
            }
        }
        lines
    }

    /// The driverless kernel sources the configuration asks for. True when audit's execve
    /// records reach the agent.
    fn open_driverless(
        &self,
        opened: &mut Vec<(SourceKind, Box<dyn Source>)>,
        summary: &mut Summary,
    ) -> (bool, bool) {
        let s = &self.config.sources;
        let failed = |summary: &mut Summary, name: &'static str, e: String| {
            tracing::warn!(source = name, error = %e, "source not started");
            summary.sources.push(SourceSummary {
                name,
                counters: CounterSnapshot::default(),
                error: Some(e),
            });
        };
        // Whether audit's records cover every execve (its own rules are in place), and whether
        // any reach it at all.
        let mut audit_sees_all_execs = false;
        let mut audit_sees_execs = false;
        if s.audit {
            let options = AuditOptions {
                add_rules: self.config.audit.add_rules,
            };
            match AuditSource::open(options) {
                Ok(src) => {
                    audit_sees_all_execs = src.adds_rules();
                    audit_sees_execs = src.sees_execs();
                    opened.push((SourceKind::Audit, Box::new(src)));
                }
                Err(e) => failed(summary, "audit", e.to_string()),
            }
        }
        let mut connector_places_execs = false;
        if s.proc_connector {
            match ProcConnectorSource::open(ProcConnectorOptions {
                // With audit's rules, arguments come from its records: no /proc race to run,
                // and the connector can batch its wake-ups. Without them, read /proc at once,
                // and still hand the events over in bursts, every 5 ms at most: the eBPF
                // reader's bound too.
                enrich_exec: !audit_sees_all_execs,
                coalesce: audit_sees_all_execs.then_some(Duration::from_millis(10)),
                hand_off: (!audit_sees_all_execs).then_some(Duration::from_millis(5)),
                ..ProcConnectorOptions::default()
            }) {
                Ok(src) => {
                    connector_places_execs = !audit_sees_all_execs;
                    opened.push((SourceKind::ProcConnector, Box::new(src)));
                }
                Err(e) => failed(summary, "proc_connector", e.to_string()),
            }
        }
        if s.fanotify {
            let options = FanotifyOptions {
                paths: self.config.fanotify.paths.clone(),
                write_only_paths: self.config.fanotify.write_only_paths.clone(),
                exec_open: self.config.fanotify.exec_open,
            };
            match FanotifySource::open(&options) {
                Ok(src) => opened.push((SourceKind::Fanotify, Box::new(src))),
                Err(e) => failed(summary, "fanotify", e.to_string()),
            }
        }
        (audit_sees_execs, connector_places_execs)
    }

    /// Open the sources (unless [`Agent::open`] did), run until `stop` is raised; then drain,
    /// flush and report.
    pub fn run(mut self, stop: StopSignal) -> Summary {
        let (opened, mut summary) = match self.opened.take() {
            Some(prepared) => prepared,
            None => self.prepare(),
        };
        let readiness = readiness_of(&opened, &summary);
        let Opened {
            mut sources,
            mode: _,
            ebpf_failed,
            sensor_objects: _,
            audit_sees_execs,
            connector_places_execs,
        } = opened;
        // Sources added after `open`.
        sources.append(&mut self.extra_sources);
        let host: Option<Arc<str>> = self
            .config
            .agent
            .host_name
            .clone()
            .or_else(kernel_host_name)
            .map(Arc::from);
        let mut outputs = match self.outputs.take() {
            Some(o) => o,
            None => match outputs::build(&self.config.outputs(), &self.config.jsonl, self.format) {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(error = %e, "cannot open an output; writing to stdout instead");
                    vec![Box::new(outputs::Stdout::new()) as Box<dyn Output>]
                }
            },
        };
        for (i, route) in self.config.outputs.iter().enumerate() {
            match outputs::route(route) {
                Ok(q) => {
                    tracing::info!(output = route.label(), "routed output started");
                    outputs.push(Box::new(q));
                }
                Err(e) => {
                    let message = format!("outputs[{i}] ({}) did not start: {e}", route.label());
                    tracing::error!("{message}: reported as a health finding");
                    self.degraded.push(message);
                }
            }
        }
        let output_drops_reported = vec![0; outputs.len()];

        let clocks = Clocks::read();
        let mut tree = ProcessTree::new(
            self.config.process_tree.capacity,
            self.config.process_tree.max_depth,
        );
        let started = Instant::now();
        let (snapshot, unreadable) = proc_info::snapshot(&clocks);
        summary.snapshot_processes = snapshot.len() as u64;
        for info in &snapshot {
            tree.insert_info(info);
        }
        drop(snapshot);
        tracing::info!(
            processes = summary.snapshot_processes,
            unreadable,
            ms = started.elapsed().as_millis() as u64,
            "process snapshot taken"
        );

        let (tx, rx) = ringfence_sensor::source::channel(self.config.agent.queue_capacity);
        let mut running: Vec<Running> = Vec::new();
        for (kind, source) in sources {
            let name = source.name();
            let sender = EventSender::new(name, tx.clone());
            let counters = sender.counters();
            let stop2 = stop.clone();
            let handle = std::thread::Builder::new()
                .name(format!("rf-{name}"))
                .spawn(move || source.run(sender, stop2));
            match handle {
                Ok(h) => {
                    tracing::info!(source = name, "source started");
                    running.push(Running {
                        name,
                        kind,
                        counters,
                        handle: Some(h),
                        error: None,
                        reported: CounterSnapshot::default(),
                    });
                }
                Err(e) => {
                    tracing::warn!(source = name, error = %e, "cannot start a thread for the source");
                    summary.sources.push(SourceSummary {
                        name,
                        counters: CounterSnapshot::default(),
                        error: Some(e.to_string()),
                    });
                }
            }
        }
        drop(tx);
        if running.is_empty() {
            tracing::warn!("no source is running; the agent idles until stopped");
        }

        // Execs whose /proc read failed wait for audit's record only when one will come.
        let wait_for_audit =
            audit_sees_execs && running.iter().any(|r| r.kind == SourceKind::Audit);
        let mut merger = merge::ExecMerger::new(
            wait_for_audit,
            Duration::from_millis(self.config.audit.merge_wait_ms),
        );
        let mut ready = Vec::new();
        let mut pipe = Pipeline {
            tree,
            clocks,
            host,
            detectors: std::mem::take(&mut self.detectors),
            outputs,
            output_drops_reported,
            tuning: tuning::Tuning::new(&self.config.detect),
            users: users::UserNames::new("/etc/passwd"),
            summary,
            warned_output: false,
            findings_unflushed: false,
            unflushed: false,
            line: Vec::with_capacity(4096),
            telemetry: self.telemetry.take(),
            response: self.response.take(),
            groups: group::FindingGroups::new(&self.config.findings),
            posture_files: None,
            scan_queue: None,
            scan_reported_full: 0,
            domains: DomainCache::default(),
            askers: AskerWait::default(),
            admitted: Vec::new(),
            connector_places_execs,
        };
        if let Some(why) = ebpf_failed {
            // Say so where a person will see it: in the event stream, beside the log line.
            pipe.handle(Event::health_notice(
                SourceKind::Ebpf,
                format!(
                    "the eBPF sensor did not load ({why}); the agent runs driverless (process \
                     connector, audit, fanotify)"
                ),
            ));
        }
        // Every part that did not start, as a finding: the outputs and the console see the gap.
        let host = pipe.host.clone();
        for f in &readiness.failed {
            tracing::error!(source = f.name, error = %f.error, "source not running: reported as a health finding");
        }
        for finding in readiness.findings(host.as_deref()) {
            pipe.raise(finding);
        }
        for message in std::mem::take(&mut self.degraded) {
            tracing::error!("{message}: reported as a health finding");
            pipe.raise(readiness::health_finding(
                readiness::PART_RULE_ID,
                SourceKind::Agent,
                message,
                host.as_deref(),
            ));
        }
        if let Some(t) = &pipe.telemetry {
            t.set_sensor_hooks(std::mem::take(&mut self.sensor_hooks));
        }
        let unhooked = std::mem::take(&mut self.unhooked_rules);
        if !unhooked.is_empty() {
            let remedy = ringfence_detect::hooked::remedies(&self.unhooked);
            for line in &unhooked {
                tracing::info!(source = "ebpf", "rule without a hook: {line}");
            }
            let message = format!(
                "{} rule{} of the active content can never fire: the eBPF sensor has no hook \
                 for their event kinds under [sensor] profile = \"{}\"; {remedy}",
                unhooked.len(),
                if unhooked.len() == 1 { "" } else { "s" },
                self.config.sensor.profile.as_str(),
            );
            tracing::warn!("{message}: reported as a health finding");
            pipe.summary.unhooked_rules = unhooked.len();
            pipe.summary.unhooked_remedy = remedy;
            pipe.raise(readiness::health_finding(
                readiness::UNHOOKED_RULE_ID,
                SourceKind::Ebpf,
                message,
                host.as_deref(),
            ));
        }
        // Posture checks on their own idle thread; their findings join the stream here.
        let posture = if self.config.posture.enabled {
            match posture::spawn(
                self.config.posture.clone(),
                host.as_deref().map(str::to_owned),
                stop.clone(),
            ) {
                Ok(p) => {
                    pipe.posture_files.clone_from(&p.files);
                    Some(p)
                }
                Err(e) => {
                    let message = format!("the posture checks did not start: {e}");
                    tracing::error!("{message}: reported as a health finding");
                    pipe.raise(readiness::health_finding(
                        readiness::PART_RULE_ID,
                        SourceKind::Agent,
                        message,
                        host.as_deref(),
                    ));
                    None
                }
            }
        } else {
            None
        };
        let scanner = self.scanner.take();
        pipe.scan_queue = scanner.as_ref().map(|s| Arc::clone(&s.queue));
        let interval = Duration::from_secs(self.config.agent.stats_interval_secs.max(1));
        let mut next_stats = Instant::now() + interval;
        let mut next_flush = Instant::now() + Duration::from_millis(500);
        // One clock reading per turn, taken when the wait ends; the next wait is measured from
        // it (late by the time handling took, microseconds).
        let mut now = Instant::now();
        loop {
            // Sleep until the next thing that is due, not on a fixed tick: an idle agent wakes
            // twice a second, not fifty times.
            let mut due = next_stats.min(now + IDLE_TICK);
            if pipe.unflushed {
                due = due.min(next_flush);
            }
            if let Some(d) = merger.next_deadline() {
                due = due.min(d);
            }
            if let Some(d) = pipe.groups.next_deadline() {
                due = due.min(d);
            }
            if let Some(d) = pipe.askers.next_deadline() {
                due = due.min(d);
            }
            if pipe.response.as_ref().is_some_and(|r| r.in_flight() > 0) {
                due = due.min(now + RESPONSE_TICK);
            }
            let received = rx.recv_timeout(due.saturating_duration_since(now));
            now = Instant::now();
            match received {
                Ok(event) => {
                    merger.push(*event, now, &mut ready);
                    // What else is queued goes through this turn in one batch: the turn's own
                    // work (the merger, notices, posture and scan findings, groups) once per
                    // burst a source hands over, not once per event.
                    for _ in 1..TURN_BATCH {
                        let Ok(event) = rx.try_recv() else {
                            break;
                        };
                        merger.push(*event, now, &mut ready);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if stop.is_stopped() {
                        break;
                    }
                    // Every source has ended; idle until asked to stop (posture findings
                    // still come).
                    if let Some(p) = &posture {
                        while let Ok(f) = p.findings.try_recv() {
                            pipe.raise(f);
                        }
                        pipe.flush();
                    }
                    if let Some(s) = &scanner {
                        pipe.scan_findings(&s.findings);
                        pipe.flush();
                    }
                    stop.sleep(Duration::from_millis(200));
                    continue;
                }
            }
            if let Some(hb) = &mut self.heartbeat {
                hb.tick(now);
            }
            merger.release(now, false, &mut ready);
            pipe.handle_all(&mut ready, now, false);
            pipe.write_responses(false);
            // What the fleet link needs a person on the host to see (a console that keeps
            // failing, a refused order or offer): one atomic load when there is nothing.
            let notices = pipe
                .telemetry
                .as_ref()
                .map(|t| t.take_notices())
                .unwrap_or_default();
            for line in notices {
                pipe.handle(Event::health_notice(SourceKind::Agent, line));
            }
            if let Some(p) = &posture {
                while let Ok(f) = p.findings.try_recv() {
                    pipe.raise(f);
                }
            }
            if let Some(s) = &scanner {
                pipe.scan_findings(&s.findings);
            }
            pipe.close_groups(Some(now));
            // Findings leave at once; plain events are flushed in batches.
            if (now >= next_flush && pipe.unflushed) || std::mem::take(&mut pipe.findings_unflushed)
            {
                pipe.flush();
                next_flush = now + Duration::from_millis(500);
            }
            if now >= next_stats {
                pipe.report_scan_skips();
                pipe.report(&mut running, false);
                next_stats = now + interval;
            }
            if stop.is_stopped() {
                break;
            }
        }
        // Stop: let sources return, then take what they queued.
        stop.stop();
        if let Some(s) = scanner {
            pipe.scan_queue = None;
            if s.handle.join().is_err() {
                tracing::error!("the YARA scanner thread panicked");
            }
            pipe.scan_findings(&s.findings);
            let st = &s.queue.stats;
            let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                scanned = n(&st.scanned),
                matches = n(&st.matches),
                skipped_queue_full = n(&st.skipped_queue_full),
                skipped_too_large = n(&st.skipped_too_large),
                skipped_timeout = n(&st.skipped_timeout),
                skipped_unchanged = n(&st.skipped_unchanged),
                "YARA scanning"
            );
            pipe.summary.files_scanned = n(&st.scanned);
            pipe.summary.scan_skipped = n(&st.skipped_queue_full)
                .saturating_add(n(&st.skipped_too_large))
                .saturating_add(n(&st.skipped_timeout))
                .saturating_add(n(&st.skipped_unreadable));
        }
        if let Some(p) = posture {
            pipe.posture_files = None;
            if p.handle.join().is_err() {
                tracing::error!("the posture thread panicked");
            }
            while let Ok(f) = p.findings.try_recv() {
                pipe.raise(f);
            }
        }
        for r in &mut running {
            if let Some(h) = r.handle.take() {
                match h.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => r.error = Some(e.to_string()),
                    Err(_) => r.error = Some("source thread panicked".into()),
                }
            }
        }
        let end = Instant::now();
        while let Ok(event) = rx.try_recv() {
            merger.push(*event, end, &mut ready);
        }
        merger.release(end, true, &mut ready);
        pipe.handle_all(&mut ready, end, true);
        pipe.write_responses(true);
        pipe.close_groups(None);
        pipe.summary.audit_merged = merger.merged;
        pipe.summary.audit_unmatched = merger.unmatched;
        pipe.report(&mut running, true);
        pipe.flush();
        // The routed outputs get their drain time; what they could not send is counted.
        for o in &mut pipe.outputs {
            o.close();
        }
        pipe.summary.output_drops = pipe
            .outputs
            .iter()
            .map(|o| o.dropped())
            .fold(0u64, u64::saturating_add);
        let mut summary = pipe.summary;
        summary.tree_evictions = pipe.tree.evictions();
        summary.findings_folded = pipe.groups.folded;
        summary.findings_silenced = pipe.tuning.silenced;
        summary.finding_group_evictions = pipe.groups.evictions;
        for r in running {
            summary.sources.push(SourceSummary {
                name: r.name,
                counters: r.counters.snapshot(),
                error: r.error,
            });
        }
        summary
    }
}

/// What opening came to: the kernel sources open, the ones that failed (the eBPF sensor giving
/// way to driverless mode apart), and the privileges those lacked.
fn readiness_of(opened: &Opened, summary: &Summary) -> Readiness {
    let privileges = Privileges::current();
    let kernel = |kind: SourceKind| {
        matches!(
            kind,
            SourceKind::Ebpf | SourceKind::ProcConnector | SourceKind::Audit | SourceKind::Fanotify
        )
    };
    Readiness {
        privileges,
        kernel_sources: opened
            .sources
            .iter()
            .filter(|(kind, _)| kernel(*kind))
            .map(|(_, source)| source.name())
            .collect(),
        failed: summary
            .sources
            .iter()
            .filter(|s| s.name != "ebpf")
            .filter_map(|s| {
                Some(FailedSource {
                    name: s.name,
                    error: s.error.clone()?,
                    missing: privileges.missing_for(s.name),
                })
            })
            .collect(),
        ebpf_fallback: opened.ebpf_failed.clone(),
    }
}

struct Pipeline {
    tree: ProcessTree,
    clocks: Clocks,
    host: Option<Arc<str>>,
    detectors: Vec<Box<dyn Detector>>,
    outputs: Vec<Box<dyn Output>>,
    /// Each output's drops already reported as a health finding.
    output_drops_reported: Vec<u64>,
    /// Local tuning: matches it silences are no finding and no response.
    tuning: tuning::Tuning,
    users: users::UserNames,
    summary: Summary,
    warned_output: bool,
    /// A finding was written since the last flush: flush now, not at the next tick.
    findings_unflushed: bool,
    /// Anything was written since the last flush.
    unflushed: bool,
    /// The event line being written (kept to reuse its allocation).
    line: Vec<u8>,
    telemetry: Option<Arc<fleet::Telemetry>>,
    response: Option<respond::ResponseStage>,
    /// Repeated findings folded into one (see [`group`]).
    groups: group::FindingGroups,
    /// Where file events go to keep the file-integrity baseline current ([`posture`]).
    posture_files: Option<Arc<posture::LiveFiles>>,
    /// Where written and executed files go to be scanned ([`scan`]).
    scan_queue: Option<Arc<scan::ScanQueue>>,
    /// Queue-full skips of the scanner already reported.
    scan_reported_full: u64,
    /// Names processes looked up, for `destination.domain` of their connects.
    domains: DomainCache,
    /// DNS events waiting for the connect that names their asker.
    askers: AskerWait,
    /// [`Pipeline::handle_all`]'s buffer, kept between batches.
    admitted: Vec<Event>,
    /// The process connector's execs were placed from /proc as they arrived (see
    /// [`Opened::connector_places_execs`]).
    connector_places_execs: bool,
}

impl Pipeline {
    /// Handle `ready` in order, except DNS events whose asker is not known yet: they wait (a
    /// little) for the connect to their server that names it (see [`AskerWait`]); `all`
    /// releases every one still waiting.
    fn handle_all(&mut self, ready: &mut Vec<Event>, now: Instant, all: bool) {
        if ready.is_empty() && self.askers.next_deadline().is_none() {
            return;
        }
        // One buffer kept across batches: no allocation per batch.
        let mut out = std::mem::take(&mut self.admitted);
        for event in ready.drain(..) {
            if event.kind == Some(EventKind::NetworkConnect) {
                self.askers.on_connect(&event, DNS_PORT, &mut out);
            }
            self.askers.admit(event, now, &mut out);
        }
        self.askers.release(now, all, &mut out);
        for event in out.drain(..) {
            self.handle(event);
        }
        self.admitted = out;
    }

    fn handle(&mut self, mut event: Event) {
        // ── enrich ──────────────────────────────────────────────────────────────────────────
        if let Some(pid) = event.process.as_ref().map(|p| p.pid) {
            let is_lifecycle = matches!(
                event.kind,
                Some(EventKind::ProcessFork | EventKind::ProcessExec | EventKind::ProcessExit)
            );
            if !is_lifecycle && pid != 0 && !self.tree.contains(pid) {
                // A process the tree never saw (it predates us and the snapshot missed it, or
                // was evicted): one /proc read, and remember it.
                let info = read_process(pid, None, &self.clocks);
                if info.executable.is_some() {
                    self.tree.insert_info(&info);
                }
            }
            // A runtime moves its first process into the container's cgroup between fork and
            // exec, so an exec the source did not place is placed from /proc now; the tree
            // then carries it to the process's other events and its children. The eBPF source
            // places every exec it reports (from the cgroup id, or /proc where the id does not
            // tell): on a unified host a process outside every container costs no read here.
            // So does the process connector, which reads each exec's /proc as it arrives (a
            // second read here, later, could only find the process gone or its pid reused).
            let placed_by_source = match event.source {
                Some(SourceKind::Ebpf) => true,
                Some(SourceKind::ProcConnector) => self.connector_places_execs,
                _ => false,
            };
            if event.kind == Some(EventKind::ProcessExec)
                && event.container.is_none()
                && !placed_by_source
            {
                event.container = ringfence_sensor::container::of_pid(pid);
            }
            let known = self.tree.apply(&mut event);
            if !known && event.kind != Some(EventKind::ProcessFork) {
                event.partial = true;
            }
            if event.kind == Some(EventKind::ProcessExec) {
                let p = event.process.as_ref();
                self.summary.exec_events += 1;
                if !event.partial && p.is_some_and(|p| p.executable.is_some() && !p.args.is_empty())
                {
                    self.summary.exec_complete += 1;
                }
                if p.and_then(|p| p.parent.as_ref())
                    .is_some_and(|p| p.executable.is_some())
                {
                    self.summary.exec_with_parent_executable += 1;
                }
            }
        }
        match event.kind {
            Some(EventKind::Dns) => self.domains.learn(&event),
            Some(EventKind::NetworkConnect) => self.domains.fill(&mut event),
            _ => {}
        }
        if event.host_name.is_none() {
            event.host_name.clone_from(&self.host);
        }
        if event.process.is_some() && event.user.name.is_none() {
            let uid = event.user.id.and_then(|u| u32::try_from(u).ok());
            event.user.name = uid.and_then(|u| self.users.name(u)).map(str::to_owned);
        }
        if event.partial {
            self.summary.partial_events += 1;
        }

        if let (Some(live), Some(file)) = (&self.posture_files, &event.file)
            && matches!(
                event.kind,
                Some(
                    EventKind::FileCreate
                        | EventKind::FileModify
                        | EventKind::FileDelete
                        | EventKind::FileRename
                )
            )
        {
            live.offer(&file.path);
            if let Some(original) = &file.original_path {
                live.offer(original);
            }
        }

        if let Some(queue) = &self.scan_queue {
            offer_scan(queue, &event);
        }

        // ── detect ──────────────────────────────────────────────────────────────────────────
        // The detection engine plugs in here through `Detector` (see detect.rs).
        let mut findings: Vec<serde_json::Value> = Vec::new();
        for d in &mut self.detectors {
            d.on_event(&event, &mut |f| findings.push(f));
        }
        if !findings.is_empty() {
            let tuning = &mut self.tuning;
            findings.retain(|f| !tuning.silences(f));
        }

        // ── output ──────────────────────────────────────────────────────────────────────────
        // One buffer serves every event's line.
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        event.write_ecs_line(&mut line);
        self.write(std::str::from_utf8(&line).unwrap_or_default());
        self.line = line;
        self.summary.events_written += 1;
        if let Some(t) = &self.telemetry {
            t.event();
        }
        // Responses act on every match, folded or not.
        if let Some(r) = &mut self.response {
            for f in &findings {
                r.on_finding(f, &event);
            }
        }
        if findings.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut emitted = Vec::with_capacity(findings.len());
        for f in findings {
            self.groups.offer(f, event.timestamp, now, &mut emitted);
        }
        self.write_findings(emitted);
    }

    /// The scanner's findings so far: through tuning and the finding groups like any other.
    fn scan_findings(&mut self, rx: &crossbeam_channel::Receiver<serde_json::Value>) {
        let now = Instant::now();
        let mut emitted = Vec::new();
        while let Ok(f) = rx.try_recv() {
            if self.tuning.silences(&f) {
                continue;
            }
            self.groups.offer(f, Timestamp::now(), now, &mut emitted);
        }
        self.write_findings(emitted);
    }

    /// Files the scanner's full queue made it skip since the last report: a health notice,
    /// since those files went unscanned.
    fn report_scan_skips(&mut self) {
        let Some(q) = &self.scan_queue else {
            return;
        };
        let full = q
            .stats
            .skipped_queue_full
            .load(std::sync::atomic::Ordering::Relaxed);
        let new = full.saturating_sub(self.scan_reported_full);
        if new > 0 {
            self.scan_reported_full = full;
            self.handle(Event::health_notice(
                SourceKind::Agent,
                format!(
                    "YARA scanning: {new} written or executed files were not scanned (the scan \
                     queue was full; {full} since start)"
                ),
            ));
        }
    }

    /// Close the finding groups whose window ended by `now` (all of them when `None`) and
    /// write their summaries.
    fn close_groups(&mut self, now: Option<Instant>) {
        let mut summaries = Vec::new();
        match now {
            Some(now) => self.groups.expire(now, &mut summaries),
            None => self.groups.close_all(&mut summaries),
        }
        self.write_findings(summaries);
    }

    fn write_findings(&mut self, findings: Vec<serde_json::Value>) {
        if let Some(t) = &self.telemetry {
            // Detectors also emit health reports (a refused bundle, say): only alerts are
            // findings for the console.
            for f in findings.iter().filter(|f| f["event"]["kind"] == "alert") {
                t.finding(f);
            }
        }
        for f in findings {
            self.summary.findings += 1;
            self.findings_unflushed = true;
            self.write_finding(&f);
        }
    }

    /// Write a finding the agent raises about itself (its health) to the outputs and, with a
    /// console, up with the other findings.
    fn raise(&mut self, finding: serde_json::Value) {
        if let Some(t) = &self.telemetry {
            t.finding(&finding);
        }
        self.summary.findings += 1;
        self.findings_unflushed = true;
        self.write_finding(&finding);
    }

    /// Write the responder's decisions to the outputs (all of them, waiting, when `last`).
    fn write_responses(&mut self, last: bool) {
        let Some(r) = &mut self.response else { return };
        let decisions = if last { r.stop() } else { r.decisions() };
        for mut d in decisions {
            if let Some(host) = &self.host {
                d["host"] = serde_json::json!({ "name": host.as_ref() });
            }
            self.findings_unflushed = true;
            let line = d.to_string();
            self.write(&line);
        }
    }

    /// Write a finding to every output (the routed ones queue it).
    fn write_finding(&mut self, finding: &serde_json::Value) {
        self.unflushed = true;
        let line = finding.to_string();
        for o in &mut self.outputs {
            if let Err(e) = o.write_finding(finding, &line) {
                self.summary.output_errors += 1;
                if !self.warned_output {
                    self.warned_output = true;
                    tracing::error!(output = o.name(), error = %e, "output write failed; counting further failures");
                }
            }
        }
    }

    /// Write an event line to the outputs that take events.
    fn write(&mut self, line: &str) {
        self.unflushed = true;
        for o in self.outputs.iter_mut().filter(|o| o.wants_events()) {
            if let Err(e) = o.write_line(line) {
                self.summary.output_errors += 1;
                if !self.warned_output {
                    self.warned_output = true;
                    tracing::error!(output = o.name(), error = %e, "output write failed; counting further failures");
                }
            }
        }
    }

    fn flush(&mut self) {
        self.unflushed = false;
        for o in &mut self.outputs {
            if o.flush().is_err() {
                self.summary.output_errors += 1;
            }
        }
    }

    /// A health finding for each routed output that dropped findings since the last report,
    /// and the total in the check-in's telemetry.
    fn report_outputs(&mut self) {
        let mut total = 0u64;
        let mut raised = Vec::new();
        for (o, reported) in self
            .outputs
            .iter()
            .zip(self.output_drops_reported.iter_mut())
        {
            let dropped = o.dropped();
            total = total.saturating_add(dropped);
            let new = dropped.saturating_sub(*reported);
            if new > 0 {
                *reported = dropped;
                let why = o.last_error().map_or_else(
                    || "its queue was full".to_owned(),
                    |e| format!("last error: {e}"),
                );
                let message = format!(
                    "output {} dropped {new} findings ({dropped} since start); {why}",
                    o.name()
                );
                tracing::error!("{message}");
                raised.push(message);
            }
        }
        if let Some(t) = &self.telemetry {
            t.set_output_drops(total);
        }
        let host = self.host.clone();
        for message in raised {
            self.raise(readiness::health_finding(
                readiness::OUTPUT_RULE_ID,
                SourceKind::Agent,
                message,
                host.as_deref(),
            ));
        }
    }

    /// Log each source's counters; emit a health event for any new loss.
    fn report(&mut self, running: &mut [Running], last: bool) {
        self.report_outputs();
        if let Some(t) = &self.telemetry {
            let lost = running.iter().map(|r| {
                let c = r.counters.snapshot();
                c.dropped.saturating_add(c.gaps)
            });
            t.set_dropped(lost.fold(0u64, u64::saturating_add));
        }
        for r in running.iter_mut() {
            let c = r.counters.snapshot();
            tracing::info!(
                source = r.name,
                events_in = c.events_in,
                events_out = c.events_out,
                dropped = c.dropped,
                gaps = c.gaps,
                errors = c.errors,
                "{}",
                if last {
                    "source totals"
                } else {
                    "source counters"
                }
            );
            let dropped = c.dropped.saturating_sub(r.reported.dropped);
            let gaps = c.gaps.saturating_sub(r.reported.gaps);
            if dropped > 0 || gaps > 0 {
                let mut e = Event::new(EventKind::SensorHealth, r.kind, Timestamp::now());
                e.health = Some(Health {
                    dropped: i64::try_from(dropped).unwrap_or(i64::MAX),
                    gaps: i64::try_from(gaps).unwrap_or(i64::MAX),
                    message: Some(format!(
                        "source {} lost events: {dropped} dropped (agent queue full), {gaps} gaps (kernel)",
                        r.name
                    )),
                });
                e.host_name.clone_from(&self.host);
                let line = e.to_ecs_line();
                self.write(&line);
            }
            r.reported = c;
        }
    }
}

/// Offer a written file or an executable to the scanner (never waits).
fn offer_scan(queue: &scan::ScanQueue, event: &Event) {
    let process = || {
        event.process.as_ref().map(|p| scan::ProcessRef {
            pid: p.pid,
            executable: p.executable.clone(),
            name: p.name.clone(),
        })
    };
    match event.kind {
        // Modify is close-write; a rename moves a written file into place.
        Some(EventKind::FileModify | EventKind::FileRename) => {
            if let Some(f) = &event.file {
                queue.offer_with(&f.path, scan::Trigger::Write, process);
            }
        }
        Some(EventKind::ProcessExec) => {
            if let Some(exe) = event.process.as_ref().and_then(|p| p.executable.as_deref()) {
                queue.offer_with(exe, scan::Trigger::Exec, process);
            }
        }
        _ => {}
    }
}
