//! Alert storms through the real pipeline: `bpftool prog show; bpftool link list` ten times
//! while the agent runs. The sensor reports one descriptor request per agent BPF object (257
//! for the pair, as on a real host); the agent must report one low finding per bpftool process
//! at once and one summary with the count, not 2,570 critical findings. A detach stays
//! critical.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringfence_agent::tamper::{TamperDetector, TamperOptions};
use ringfence_agent::{Agent, Config, ModeChoice, Output};
use ringfence_event::{Detail, Event, EventKind, Process, SourceKind, Timestamp};
use ringfence_sensor::{EventSender, Source, SourceError, StopSignal};
use serde_json::Value as Json;

/// The agent's BPF programs and links on the host the storm was seen on (257 together).
const PROGRAMS: u32 = 129;
const LINKS: u32 = 128;
/// Pids no live process has (above the kernel's largest pid_max), so the tree knows them only
/// from the exec events below.
const FIRST_PID: u32 = 4_200_000;

/// What the eBPF sensor reports for `bpftool ARGS` run as pid `pid`: its exec, then one
/// `*_get_fd_by_id` per agent object.
fn bpftool_run(pid: u32, args: &[&str], out: &mut Vec<Event>) {
    let mut exec = Event::new(EventKind::ProcessExec, SourceKind::Ebpf, Timestamp::now());
    exec.process = Some(Process {
        pid,
        executable: Some("/usr/sbin/bpftool".into()),
        name: Some("bpftool".into()),
        command_line: Some(args.join(" ")),
        args: args.iter().map(|a| (*a).to_string()).collect(),
        start: Some(Timestamp::now()),
        ..Process::default()
    });
    out.push(exec);
    let (command, objects) = if args.get(1) == Some(&"link") {
        ("link_get_fd_by_id", LINKS)
    } else {
        ("prog_get_fd_by_id", PROGRAMS)
    };
    for _ in 0..objects {
        let mut e = Event::new(EventKind::BpfLoad, SourceKind::Ebpf, Timestamp::now());
        e.process = Some(Process {
            pid,
            ..Process::default()
        });
        e.syscall = Some("bpf".into());
        e.detail = Some(Box::new(Detail {
            bpf_command: Some(command.into()),
            ..Detail::default()
        }));
        out.push(e);
    }
}

/// An output keeping every line.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn lines(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Output for Lines {
    fn name(&self) -> String {
        "lines".into()
    }
    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        self.lines().push(line.to_owned());
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A source replaying recorded sensor events, then ending.
struct Replay(Vec<Event>);

impl Source for Replay {
    fn name(&self) -> &'static str {
        "replay"
    }

    fn run(self: Box<Self>, out: EventSender, _stop: StopSignal) -> Result<(), SourceError> {
        for e in self.0 {
            out.send(e);
        }
        Ok(())
    }
}

/// Run an agent (no host source, only `events`, tamper detection on, findings grouped within
/// `window_secs`) until it has written `expect_alerts` alerts at once, stop it, and return
/// every alert it wrote and its summary.
fn run_agent(
    events: Vec<Event>,
    window_secs: u64,
    expect_alerts: usize,
) -> (Vec<Json>, ringfence_agent::Summary) {
    let _serial = common::serial();
    let mut config = Config::default();
    config.findings.group_window_secs = window_secs;
    config.agent.mode = ModeChoice::Driverless;
    config.sources.proc_connector = false;
    config.sources.audit = false;
    config.sources.fanotify = false;
    config.sources.logs = false;
    let lines = Lines::default();
    let tamper = TamperDetector::new(TamperOptions {
        agent_pids: vec![std::process::id()],
        ..TamperOptions::default()
    });
    let total = events.len();
    let agent = Agent::new(config)
        .with_outputs(vec![Box::new(lines.clone())])
        .with_detector(Box::new(tamper))
        .with_source(SourceKind::Ebpf, Box::new(Replay(events)));
    let stop = StopSignal::new();
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || agent.run(stop2));
    let alerts = |lines: &Lines| -> Vec<Json> {
        lines
            .lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Json>(l).ok())
            .filter(|j| j["event"]["kind"] == "alert")
            .collect()
    };
    let written = |lines: &Lines| lines.lines().len();
    // Every event written (its own line) means every finding due at once was written too.
    let deadline = Instant::now() + Duration::from_secs(60);
    while written(&lines) < total + expect_alerts {
        assert!(
            Instant::now() < deadline,
            "the agent did not write every event"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        alerts(&lines).len(),
        expect_alerts,
        "findings written at once"
    );
    stop.stop();
    let summary = match handle.join() {
        Ok(s) => s,
        Err(_) => panic!("agent thread panicked"),
    };
    (alerts(&lines), summary)
}

fn levels(alerts: &[Json]) -> (usize, usize, usize) {
    let of = |level: &str| {
        alerts
            .iter()
            .filter(|a| a["ringfence"]["finding"]["level"] == level)
            .count()
    };
    (of("low"), of("high"), of("critical"))
}

#[test]
fn ten_bpftool_listings_are_one_low_finding_and_one_summary_per_process() {
    let mut events = Vec::new();
    for run in 0..10 {
        bpftool_run(
            FIRST_PID + 2 * run,
            &["bpftool", "prog", "show"],
            &mut events,
        );
        bpftool_run(
            FIRST_PID + 2 * run + 1,
            &["bpftool", "link", "list"],
            &mut events,
        );
    }
    // Without grouping, one finding per object looked at.
    let (ungrouped, _) = run_agent(events.clone(), 0, 2570);
    assert_eq!(levels(&ungrouped), (2570, 0, 0));
    // 20 bpftool processes: each one's first look leaves at once.
    let (alerts, summary) = run_agent(events, 60, 20);
    // On stop, each group's summary: 20 more, each counting its process's 257 looks.
    assert_eq!(alerts.len(), 40, "{alerts:#?}");
    assert_eq!(levels(&alerts), (40, 0, 0));
    assert!(
        alerts
            .iter()
            .all(|a| a["rule"]["id"] == "ringfence-tamper-bpf-look")
    );
    let summaries: Vec<&Json> = alerts
        .iter()
        .filter(|a| !a["ringfence"]["finding"]["count"].is_null())
        .collect();
    assert_eq!(summaries.len(), 20);
    for s in &summaries {
        let objects = if s["ringfence"]["bpf"]["command"] == "link_get_fd_by_id" {
            LINKS
        } else {
            PROGRAMS
        };
        assert_eq!(s["ringfence"]["finding"]["count"], objects);
        assert!(s["event"]["start"].is_string() && s["event"]["end"].is_string());
        assert_eq!(s["process"]["executable"], "/usr/sbin/bpftool");
    }
    assert_eq!(summary.findings, 40);
    assert_eq!(
        summary.findings_folded,
        10 * u64::from(PROGRAMS - 1 + LINKS - 1)
    );
    assert_eq!(summary.finding_group_evictions, 0);
    eprintln!(
        "bpftool prog show; bpftool link list, 10 times: {} findings (low {}, high {}, critical {}), {} folded",
        alerts.len(),
        levels(&alerts).0,
        levels(&alerts).1,
        levels(&alerts).2,
        summary.findings_folded
    );
}

#[test]
fn a_detach_stays_critical_and_is_grouped_per_process() {
    let mut events = Vec::new();
    bpftool_run(
        FIRST_PID + 100,
        &["bpftool", "link", "detach", "id", "7"],
        &mut events,
    );
    let (alerts, _) = run_agent(events, 60, 1);
    assert_eq!(alerts.len(), 2);
    assert_eq!(levels(&alerts), (0, 0, 2));
    assert!(
        alerts
            .iter()
            .all(|a| a["rule"]["id"] == "ringfence-tamper-bpf")
    );
    assert_eq!(alerts[1]["ringfence"]["finding"]["count"], LINKS);
}
