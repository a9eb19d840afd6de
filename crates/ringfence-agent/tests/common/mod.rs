//! What the agent's integration tests share: an in-memory output and a harness that runs an
//! agent on a thread until a sentinel exec shows it is watching.
#![allow(
    dead_code,
    reason = "each test binary uses its own part of the harness"
)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringfence_agent::{Agent, Config, Output, Summary};
use ringfence_event::{Event, EventKind};
use ringfence_sensor::StopSignal;

/// An output that keeps every line in memory.
#[derive(Clone, Default)]
pub struct Memory(pub Arc<Mutex<Vec<String>>>);

impl Output for Memory {
    fn name(&self) -> String {
        "memory".into()
    }
    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line.to_owned());
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One agent at a time: agents share host-wide state (the audit rule), as only one runs per host.
static ONE_AGENT: Mutex<()> = Mutex::new(());

/// Hold while an agent's sources are open outside a [`Harness`].
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AGENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub struct Harness {
    _serial: std::sync::MutexGuard<'static, ()>,
    lines: Memory,
    seen: usize,
    pub events: Vec<Event>,
    stop: StopSignal,
    handle: Option<JoinHandle<Summary>>,
}

impl Harness {
    pub fn start(mut config: Config) -> Harness {
        // The harness reads every line back as an event; posture findings are not events, and
        // these tests are about the event flow (tests/posture.rs covers posture in the agent).
        config.posture.enabled = false;
        let serial = serial();
        let lines = Memory::default();
        let stop = StopSignal::new();
        let agent = Agent::new(config).with_outputs(vec![Box::new(lines.clone())]);
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || agent.run(stop2));
        let mut h = Harness {
            _serial: serial,
            lines,
            seen: 0,
            events: Vec::new(),
            stop,
            handle: Some(handle),
        };
        // Ready once our own sentinel's exec comes through: every source was opened before any
        // event flows, so marks and subscriptions are in place from then on.
        let marker = format!("ringfence-ready-{}", std::process::id());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let _ = Command::new("/bin/true").arg(&marker).status();
            if h.wait_for(Duration::from_millis(500), |e| has_arg(e, &marker))
                .is_some()
            {
                break;
            }
            assert!(Instant::now() < deadline, "agent never reported an exec");
        }
        h
    }

    pub fn pull(&mut self) {
        let lines = self
            .lines
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for line in &lines[self.seen..] {
            match Event::from_ecs_line(line) {
                Ok(e) => self.events.push(e),
                Err(err) => {
                    panic!("the agent wrote a line that does not parse back: {err}: {line}")
                }
            }
        }
        self.seen = lines.len();
    }

    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            self.pull();
            if let Some(e) = self.events.iter().find(|e| pred(e)) {
                return Some(e.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn finish(mut self) -> (Summary, Vec<Event>) {
        self.stop.stop();
        let summary = match self.handle.take().map(JoinHandle::join) {
            Some(Ok(s)) => s,
            _ => panic!("agent thread failed"),
        };
        self.pull();
        (summary, std::mem::take(&mut self.events))
    }
}

pub fn has_arg(e: &Event, arg: &str) -> bool {
    e.kind == Some(EventKind::ProcessExec)
        && e.process
            .as_ref()
            .is_some_and(|p| p.args.iter().any(|a| a == arg))
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringfence-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    assert!(std::fs::create_dir_all(&d).is_ok());
    d
}
