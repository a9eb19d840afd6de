//! The supervisor: `ringfence agent run` as a tiny parent that starts the worker (the same
//! binary, `agent worker ...`), restarts it when it dies with exponential backoff, forwards
//! SIGINT/SIGTERM, and rolls content back after a crash loop. A worker that refused to start
//! ([`REFUSED_EXIT_CODES`]) is not restarted: the supervisor exits with its code.
//!
//! It never parses content: the only thing it reads is the store's `state.json` (through
//! [`ContentStore::state`]). When the worker dies while the state says "activating N", the
//! death counts against N; after `crash_loop_restarts` (K) such deaths within
//! `crash_loop_window`, it calls [`ContentStore::roll_back`] (last-known-good becomes active, N
//! is marked bad on this host), logs it, and passes the report to the next worker in
//! [`ROLLBACK_ENV`] so it is emitted as a `sensor-health` event.
//!
//! The worker runs in its own process group, so a terminal's ^C reaches only the supervisor,
//! which forwards it once; the worker asks the kernel for SIGTERM if the supervisor dies.
//!
//! The worker beats once a second from its pipeline loop ([`super::heartbeat`]). Under systemd
//! (`Type=notify`, [`super::sd_notify`]) the supervisor says `READY=1` at the first beat and
//! `WATCHDOG=1` every half watchdog period while the worker beats (or is starting, or being
//! restarted); a worker silent for the hang limit is killed and restarted like a crashed one.
//!
//! With a versions directory ([`crate::versions`]), the worker runs the current agent version's
//! binary, and a version on trial that fails is replaced by the previous one ([`super::trial`]).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ringfence_content::ContentStore;

use super::heartbeat::{HEARTBEAT_ENV, HeartbeatReceiver};
use super::link_keeper::{LINK_KEEPER_ENV, LinkKeeper};
use super::sd_notify::{NOTIFY_VARS, SdNotify};
use super::trial::{VERSION_FALLBACK_ENV, VersionWatch};
use crate::versions::VersionStore;
use ringfence_sensor::StopSignal;

/// Environment variable carrying the supervisor's rollback report to the next worker.
pub const ROLLBACK_ENV: &str = "RINGFENCE_CONTENT_ROLLBACK";
/// Set for a worker started by the supervisor.
pub const SUPERVISED_ENV: &str = "RINGFENCE_SUPERVISED";

/// Set for the worker when the previous one was killed by a signal: how, and how fast it was
/// restarted (the new worker reports it as tampering).
pub const PREVIOUS_WORKER_ENV: &str = "RINGFENCE_PREVIOUS_WORKER";

/// Set for the worker when it runs an agent version from the versions directory: the version's
/// name, which it reports to the console (without it, the worker reports its own build's).
pub const AGENT_VERSION_ENV: &str = "RINGFENCE_AGENT_VERSION";

/// Set for the worker: how many workers this supervisor has seen die so far (the worker reports
/// the ones the console has not acknowledged yet).
pub const CRASHES_ENV: &str = "RINGFENCE_WORKER_CRASHES";

/// Worker exit codes that mean it refused to start: 1 refused input (a bad config or trust
/// root), 2 usage error, 4 it would run blind (no event source, missing privileges). Another
/// start would refuse again, so the supervisor exits with the same code instead.
pub const REFUSED_EXIT_CODES: [i32; 3] = [1, 2, 4];

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// A worker that ran this long was healthy: the backoff starts over.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// After forwarding a stop, how long the worker gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// How to run and watch the worker.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The content store, if a content directory is configured.
    pub state_dir: Option<PathBuf>,
    pub crash_loop_restarts: u32,
    pub crash_loop_window: Duration,
    pub max_backoff: Duration,
    /// systemd's notification socket and watchdog (the service runs `Type=notify`).
    pub notify: Option<SdNotify>,
    /// A worker that has not beaten for this long (counted from its start plus
    /// `startup_grace` until its first beat) is killed and restarted. `None`: never (workers
    /// that do not beat, tests).
    pub hang_limit: Option<Duration>,
    /// How long a worker may take to its first beat (loading eBPF, compiling content).
    pub startup_grace: Duration,
    /// Agent versions (`/var/lib/ringfence/versions`): the worker runs the current one.
    pub versions_dir: Option<PathBuf>,
    /// How long a new version's worker must beat before the version is kept.
    pub trial_healthy: Duration,
}

/// The agent's trial period for a new version.
pub const TRIAL_HEALTHY: Duration = Duration::from_secs(120);

/// The agent's hang limit: ten missed beats.
pub const HANG_LIMIT: Duration = Duration::from_secs(10);
/// The agent's startup grace: loading eBPF and compiling content took about a minute on an
/// emulated (TCG) guest; TimeoutStartSec in the unit is longer.
pub const STARTUP_GRACE: Duration = Duration::from_secs(180);

/// What the supervisor did, for its exit status and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SupervisorReport {
    /// The worker's exit code after a requested stop (or when it exited by itself).
    pub exit_code: i32,
    pub restarts: u32,
    /// One line per rollback.
    pub rollbacks: Vec<String>,
    /// Workers killed because they stopped beating.
    pub hangs: u32,
    /// Whether `READY=1` was sent.
    pub ready: bool,
    /// One line per agent version fall-back.
    pub version_fallbacks: Vec<String>,
}

/// The supervisor loop.
#[derive(Debug)]
pub struct Supervisor {
    opts: SupervisorOptions,
    /// Deaths while activating, as (version, when).
    deaths: VecDeque<(u64, Instant)>,
    /// The last `WATCHDOG=1`.
    last_ping: Option<Instant>,
    versions: Option<VersionWatch>,
}

impl Supervisor {
    pub fn new(opts: SupervisorOptions) -> Supervisor {
        let versions = opts
            .versions_dir
            .as_ref()
            .and_then(|dir| match VersionStore::open(dir) {
                Ok(store) => Some(VersionWatch::new(
                    store,
                    opts.program.clone(),
                    opts.crash_loop_restarts,
                    opts.trial_healthy,
                )),
                Err(e) => {
                    tracing::error!("agent versions unusable, running the package's binary: {e}");
                    None
                }
            });
        Supervisor {
            versions,
            opts,
            deaths: VecDeque::new(),
            last_ping: None,
        }
    }

    /// Runs workers until `stop` is raised and the worker has exited.
    pub fn run(mut self, stop: &StopSignal) -> std::io::Result<SupervisorReport> {
        let mut report = SupervisorReport::default();
        let mut backoff = FIRST_BACKOFF;
        let mut pending_report: Option<String> = None;
        let mut pending_fallback: Option<String> = None;
        // A worker killed by a signal: how, and when its death was seen.
        let mut killed: Option<(String, Instant)> = None;
        loop {
            let program = match &mut self.versions {
                Some(v) => v.next_program(),
                None => self.opts.program.clone(),
            };
            let mut cmd = Command::new(&program);
            cmd.args(&self.opts.args)
                .stdin(Stdio::null())
                .env(SUPERVISED_ENV, "1")
                .env(CRASHES_ENV, report.restarts.to_string())
                .process_group(0);
            match pending_report.take() {
                Some(r) => cmd.env(ROLLBACK_ENV, r),
                None => cmd.env_remove(ROLLBACK_ENV),
            };
            match self.versions.as_ref().and_then(|v| v.running()) {
                Some(v) => cmd.env(AGENT_VERSION_ENV, v),
                None => cmd.env_remove(AGENT_VERSION_ENV),
            };
            match pending_fallback.take() {
                Some(r) => cmd.env(VERSION_FALLBACK_ENV, r),
                None => cmd.env_remove(VERSION_FALLBACK_ENV),
            };
            match killed.take() {
                Some((how, seen)) => cmd.env(
                    PREVIOUS_WORKER_ENV,
                    format!("{how}; restarted {} ms after", seen.elapsed().as_millis()),
                ),
                None => cmd.env_remove(PREVIOUS_WORKER_ENV),
            };
            // The worker hands its tracepoint links to a keeper here, so its death does not wait
            // for their teardown (see `link_keeper`). Without one, it only restarts slower.
            let keeper = LinkKeeper::start().ok();
            let inherit = keeper.as_ref().and_then(|(_, end)| end.inheritable().ok());
            match inherit {
                Some(fd) => cmd.env(LINK_KEEPER_ENV, fd.to_string()),
                None => cmd.env_remove(LINK_KEEPER_ENV),
            };
            for var in NOTIFY_VARS {
                cmd.env_remove(var);
            }
            let mut heartbeat = HeartbeatReceiver::new()?;
            let beat_fd = heartbeat.inheritable();
            match beat_fd {
                Some(fd) => cmd.env(HEARTBEAT_ENV, fd.to_string()),
                None => cmd.env_remove(HEARTBEAT_ENV),
            };
            let started = Instant::now();
            let spawned = cmd.spawn();
            heartbeat.spawned(beat_fd);
            if let Some(fd) = inherit {
                let _ = nix::unistd::close(fd);
            }
            // Our copies of the worker's end go: its death then closes the socket, and the
            // keeper's thread lets the links go.
            drop(keeper);
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) => {
                    let why = format!("{} could not be started: {e}", program.display());
                    match self.version_failed(&why, true, &mut report) {
                        Some(line) => {
                            pending_fallback = Some(line);
                            continue;
                        }
                        None => return Err(e),
                    }
                }
            };
            tracing::info!(
                pid = child.id(),
                version = self
                    .versions
                    .as_ref()
                    .and_then(|v| v.running())
                    .unwrap_or("package"),
                "worker started"
            );
            let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
            let mut forwarded: Option<Instant> = None;
            let mut watchdog = Watchdog::default();
            let mut hung = false;
            let mut switching = false;
            let status: ExitStatus = loop {
                if let Some(status) = child.try_wait()? {
                    break status;
                }
                watchdog.check(pid);
                if heartbeat.drain() && !report.ready {
                    report.ready = true;
                    self.notify(&format!("READY=1\nSTATUS=worker {} running", child.id()));
                }
                let silent_since = heartbeat.last.unwrap_or(started + self.opts.startup_grace);
                let silent = Instant::now().saturating_duration_since(silent_since);
                if let Some(limit) = self.opts.hang_limit
                    && silent > limit
                    && !hung
                    && forwarded.is_none()
                {
                    tracing::error!(
                        pid = child.id(),
                        silent_ms = silent.as_millis() as u64,
                        "the worker stopped reporting (no heartbeat); killing it"
                    );
                    let _ = kill(pid, Signal::SIGKILL);
                    hung = true;
                    report.hangs += 1;
                }
                // systemd's watchdog guards the supervisor: fed once the service is ready,
                // while the worker beats or a restarted one is still starting.
                let healthy = report.ready
                    && !hung
                    && (heartbeat.last.is_some_and(|at| at.elapsed() <= HANG_LIMIT)
                        || started.elapsed() <= self.opts.startup_grace);
                if healthy {
                    self.feed_watchdog();
                }
                if let Some(v) = &mut self.versions {
                    v.check_healthy(started, heartbeat.last.is_some() && !hung);
                    if !switching && forwarded.is_none() && !stop.is_stopped() && v.switched() {
                        tracing::warn!("the current agent version changed; restarting the worker");
                        let _ = kill(pid, Signal::SIGTERM);
                        switching = true;
                    }
                }
                if stop.is_stopped() {
                    match forwarded {
                        None => {
                            self.notify("STOPPING=1");
                            let _ = kill(pid, Signal::SIGTERM);
                            forwarded = Some(Instant::now());
                        }
                        Some(at) if at.elapsed() > STOP_GRACE => {
                            tracing::error!("worker did not stop in time; killing it");
                            let _ = child.kill();
                        }
                        Some(_) => {}
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if stop.is_stopped() {
                report.exit_code = status.code().unwrap_or(1);
                return Ok(report);
            }
            if switching {
                backoff = FIRST_BACKOFF;
                continue;
            }
            // A version on trial that exits unasked, refuses to start or hangs has failed it.
            let at_once = match status.code() {
                Some(0) => Some("it exited with code 0 unasked".to_owned()),
                Some(c) if REFUSED_EXIT_CODES.contains(&c) => {
                    Some(format!("it refused to start, exit code {c}"))
                }
                _ if hung => Some("it stopped reporting: no heartbeat".to_owned()),
                _ => None,
            };
            if let Some(why) = at_once
                && let Some(line) = self.version_failed(&why, true, &mut report)
            {
                pending_fallback = Some(line);
                backoff = FIRST_BACKOFF;
                continue;
            }
            if status.success() {
                report.exit_code = 0;
                return Ok(report);
            }
            if let Some(code) = status.code().filter(|c| REFUSED_EXIT_CODES.contains(c)) {
                tracing::error!(
                    exit_code = code,
                    "the worker refused to start; not restarting it"
                );
                report.exit_code = code;
                return Ok(report);
            }
            let ran = started.elapsed();
            if let Some(sig) = status.signal().filter(|_| !hung) {
                killed = Some((
                    format!(
                        "the agent's worker (pid {}) was killed by signal {sig} after {} ms",
                        child.id(),
                        ran.as_millis()
                    ),
                    Instant::now(),
                ));
            }
            tracing::error!(
                status = %describe(status),
                ran_ms = ran.as_millis() as u64,
                "worker died"
            );
            if let Some(line) = self.version_failed(&describe(status), false, &mut report) {
                pending_fallback = Some(line);
                backoff = FIRST_BACKOFF;
                report.restarts += 1;
                continue;
            }
            if let Some(line) = self.after_death() {
                tracing::error!("{line}");
                report.rollbacks.push(line.clone());
                pending_report = Some(line);
            }
            if ran >= HEALTHY_RUN {
                backoff = FIRST_BACKOFF;
            }
            report.restarts += 1;
            tracing::info!(
                backoff_ms = backoff.as_millis() as u64,
                "restarting the worker"
            );
            if stop.sleep(backoff) {
                return Ok(report);
            }
            backoff = (backoff * 2).min(self.opts.max_backoff.max(FIRST_BACKOFF));
        }
    }

    /// A failure of a worker on a version on trial: the fall-back's report line, logged and
    /// kept in the report, when the version failed its trial.
    fn version_failed(
        &mut self,
        why: &str,
        at_once: bool,
        report: &mut SupervisorReport,
    ) -> Option<String> {
        let line = self.versions.as_mut()?.failed(why, at_once)?;
        tracing::error!("{line}");
        report.version_fallbacks.push(line.clone());
        Some(line)
    }

    /// `WATCHDOG=1` when half the watchdog period has passed since the last one.
    fn feed_watchdog(&mut self) {
        let Some(period) = self.opts.notify.as_ref().and_then(|n| n.watchdog) else {
            return;
        };
        if self.last_ping.is_some_and(|at| at.elapsed() < period / 2) {
            return;
        }
        self.last_ping = Some(Instant::now());
        self.notify("WATCHDOG=1");
    }

    fn notify(&self, message: &str) {
        if let Some(n) = &self.opts.notify
            && let Err(e) = n.send(message)
        {
            tracing::warn!(error = %e, "systemd notification not sent");
        }
    }

    /// Counts a death against the version being activated; rolls back after K in the window.
    fn after_death(&mut self) -> Option<String> {
        let dir = self.opts.state_dir.as_ref()?;
        let store = match ContentStore::open(dir) {
            Ok(s) => s,
            Err(e) => return Some(format!("supervisor: content store unusable: {e}")),
        };
        let state = match store.state() {
            Ok(s) => s,
            Err(e) => return Some(format!("supervisor: content state unreadable: {e}")),
        };
        let version = state.activating?;
        let now = Instant::now();
        self.deaths.push_back((version, now));
        let window = self.opts.crash_loop_window;
        self.deaths
            .retain(|&(v, at)| v == version && now.duration_since(at) <= window);
        let count = self.deaths.len();
        tracing::warn!(
            version,
            deaths = count,
            limit = self.opts.crash_loop_restarts,
            "worker died while activating content"
        );
        if count < self.opts.crash_loop_restarts as usize {
            return None;
        }
        self.deaths.clear();
        Some(match store.roll_back() {
            Ok(rb) => format!(
                "crash loop: worker died {count} times within {}s while activating content \
                 version {version}; version {} marked bad on this host, {}",
                window.as_secs(),
                rb.marked_bad,
                rb.active.map_or_else(
                    || "and no last-known-good bundle: the worker runs the built-in pack"
                        .to_owned(),
                    |v| format!("rolled back to last-known-good bundle v{v}")
                )
            ),
            Err(e) => {
                format!("crash loop on content version {version}, and the rollback failed: {e}")
            }
        })
    }
}

/// Keeps a frozen worker from freezing the host. The worker answers fanotify permission events
/// (opens of the agent's files; with the exec guard, every exec on the host); a worker held in
/// a stop answers nothing, and everything waiting on it waits with it. A job-control stop
/// (SIGSTOP, which only BPF LSM could refuse) is undone with SIGCONT; a ptrace stop, which
/// SIGCONT cannot end, kills the worker once it lasts past one more look: its death closes
/// the groups (the kernel then allows what waits) and the supervisor starts a new one.
#[derive(Debug, Default)]
struct Watchdog {
    last_look: Option<Instant>,
    traced_since: Option<Instant>,
}

const WATCHDOG_EVERY: Duration = Duration::from_millis(200);
const TRACED_LIMIT: Duration = Duration::from_millis(500);

impl Watchdog {
    fn check(&mut self, pid: Pid) {
        if self
            .last_look
            .is_some_and(|at| at.elapsed() < WATCHDOG_EVERY)
        {
            return;
        }
        self.last_look = Some(Instant::now());
        match process_state(pid) {
            Some('T') => {
                tracing::warn!(
                    pid = pid.as_raw(),
                    "worker stopped by a signal; continuing it"
                );
                let _ = kill(pid, Signal::SIGCONT);
                self.traced_since = None;
            }
            Some('t') => {
                let since = *self.traced_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= TRACED_LIMIT {
                    tracing::error!(
                        pid = pid.as_raw(),
                        "worker held in a ptrace stop; killing it so nothing waits on it"
                    );
                    let _ = kill(pid, Signal::SIGKILL);
                    self.traced_since = None;
                }
            }
            _ => self.traced_since = None,
        }
    }
}

/// The state letter of a process (`R`, `S`, `T` stopped, `t` traced, ...).
fn process_state(pid: Pid) -> Option<char> {
    ringfence_sensor::proc_info::state(u32::try_from(pid.as_raw()).ok()?)
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => status.to_string(),
    }
}

/// For a worker: ask the kernel to send SIGTERM when the supervisor dies. Returns false when
/// the supervisor is already gone.
pub fn die_with_supervisor() -> bool {
    let _ = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGTERM));
    nix::unistd::getppid() != Pid::from_raw(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &std::path::Path, script: &str) -> SupervisorOptions {
        SupervisorOptions {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            state_dir: Some(dir.to_owned()),
            crash_loop_restarts: 2,
            crash_loop_window: Duration::from_secs(60),
            max_backoff: Duration::from_millis(200),
            notify: None,
            hang_limit: None,
            startup_grace: STARTUP_GRACE,
            versions_dir: None,
            trial_healthy: TRIAL_HEALTHY,
        }
    }

    #[test]
    fn a_crash_loop_while_activating_rolls_back_and_a_clean_exit_ends_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ContentStore::open(tmp.path()).unwrap();
        for v in [1, 2] {
            store.stage(v, format!("bundle {v}").as_bytes()).unwrap();
            store.begin_activation(v).unwrap();
            store.commit_activation().unwrap();
            if v == 1 {
                store.confirm().unwrap();
            }
        }
        // The "worker" crashes while state.json says activating, and exits 0 once it no
        // longer does (the rollback cleared the marker).
        let state = tmp.path().join("state.json");
        let script = format!(
            "grep -q '\"activating\": 2' {} && exit 3; exit 0",
            state.display()
        );
        let report = Supervisor::new(opts(tmp.path(), &script))
            .run(&StopSignal::new())
            .unwrap();
        assert_eq!(report.exit_code, 0);
        assert_eq!(report.restarts, 2);
        assert_eq!(report.rollbacks.len(), 1, "{report:?}");
        assert!(
            report.rollbacks[0].contains("version 2 marked bad"),
            "{report:?}"
        );
        let state = store.state().unwrap();
        assert_eq!(state.active, Some(1));
        assert!(state.bad.contains(&2));
    }

    /// A notification socket in `dir`, and the notifier for it.
    fn notify_socket(dir: &std::path::Path) -> (std::os::unix::net::UnixDatagram, SdNotify) {
        let path = dir.join("notify");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let n = SdNotify::new(path.into_os_string(), Some(Duration::from_millis(200))).unwrap();
        (server, n)
    }

    fn next_message(server: &std::os::unix::net::UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..len]).into_owned()
    }

    #[test]
    fn a_beating_worker_makes_the_service_ready_and_feeds_the_watchdog() {
        let tmp = tempfile::tempdir().unwrap();
        let (server, notify) = notify_socket(tmp.path());
        let mut o = opts(tmp.path(), "");
        o.program = "/bin/bash".into();
        // Beat every 50 ms; the worker must not see systemd's variables.
        o.args = vec![
            "-c".into(),
            "[ -z \"$NOTIFY_SOCKET\" ] || exit 9; trap 'exit 0' TERM; \
             while :; do printf B >&\"$RINGFENCE_HEARTBEAT_FD\"; sleep 0.05; done"
                .into(),
        ];
        o.notify = Some(notify);
        o.hang_limit = Some(Duration::from_secs(5));
        let stop = StopSignal::new();
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || Supervisor::new(o).run(&stop2));
        let first = next_message(&server);
        assert!(first.starts_with("READY=1\n"), "{first}");
        let mut pings = 0;
        while pings < 2 {
            let m = next_message(&server);
            assert_eq!(m, "WATCHDOG=1");
            pings += 1;
        }
        stop.stop();
        let report = t.join().unwrap().unwrap();
        assert!(report.ready);
        assert_eq!(report.exit_code, 0);
        assert_eq!(next_message(&server), "STOPPING=1");
    }

    #[test]
    fn a_worker_that_stops_beating_is_killed_and_restarted() {
        let tmp = tempfile::tempdir().unwrap();
        let marker = tmp.path().join("runs");
        let mut o = opts(tmp.path(), "");
        o.program = "/bin/bash".into();
        // The first worker beats once and hangs; the second exits cleanly.
        o.args = vec![
            "-c".into(),
            format!(
                "echo x >> {m}; [ $(wc -l < {m}) -ge 2 ] && exit 0; \
                 printf B >&\"$RINGFENCE_HEARTBEAT_FD\"; exec sleep 30",
                m = marker.display()
            )
            .into(),
        ];
        o.hang_limit = Some(Duration::from_millis(300));
        let report = Supervisor::new(o).run(&StopSignal::new()).unwrap();
        assert_eq!(report.hangs, 1, "{report:?}");
        assert_eq!(report.restarts, 1);
        assert_eq!(report.exit_code, 0);
    }

    /// A versions store in `dir/versions` with `(version, script)` installed, the first
    /// confirmed and the last on trial, and options running it (the base is `base`).
    fn versions(dir: &std::path::Path, base: &str, list: &[(&str, &str)]) -> SupervisorOptions {
        let store = VersionStore::open(&dir.join("versions")).unwrap();
        for (i, (v, script)) in list.iter().enumerate() {
            store
                .install(v, format!("#!/bin/sh\n{script}\n").as_bytes())
                .unwrap();
            store.activate(v).unwrap();
            if i + 1 < list.len() {
                store.confirm().unwrap();
            }
        }
        let base_path = dir.join("base.sh");
        std::fs::write(&base_path, format!("#!/bin/sh\n{base}\n")).unwrap();
        std::fs::set_permissions(
            &base_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let mut o = opts(dir, "");
        o.program = base_path;
        o.args = Vec::new();
        o.versions_dir = Some(dir.join("versions"));
        o
    }

    #[test]
    fn a_crash_looping_version_falls_back_to_the_previous_one_which_is_told() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("log");
        let l = log.display();
        let o = versions(
            tmp.path(),
            "exit 7",
            &[
                (
                    "1.0",
                    &format!("echo \"1.0 $RINGFENCE_VERSION_FALLBACK\" >> {l}; exit 0"),
                ),
                ("2.0", &format!("echo 2.0 >> {l}; kill -SEGV $$")),
            ],
        );
        let report = Supervisor::new(o).run(&StopSignal::new()).unwrap();
        assert_eq!(report.exit_code, 0, "{report:?}");
        assert_eq!(report.version_fallbacks.len(), 1, "{report:?}");
        let line = &report.version_fallbacks[0];
        assert!(
            line.contains("agent version 2.0 failed its trial"),
            "{line}"
        );
        assert!(line.contains("back on version 1.0"), "{line}");
        let runs = std::fs::read_to_string(&log).unwrap();
        let runs: Vec<&str> = runs.lines().collect();
        assert_eq!(runs.len(), 3, "{runs:?}");
        assert_eq!(runs[..2], ["2.0", "2.0"]);
        assert!(
            runs[2].starts_with("1.0 agent version 2.0 failed"),
            "{runs:?}"
        );
        let store = VersionStore::open(&tmp.path().join("versions")).unwrap();
        assert_eq!(store.current().as_deref(), Some("1.0"));
        assert_eq!(store.state().unwrap().bad, ["2.0"]);
    }

    #[test]
    fn a_version_that_never_beats_falls_back_to_the_package_binary() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = versions(tmp.path(), "exit 0", &[("2.0", "exec sleep 30")]);
        o.hang_limit = Some(Duration::from_millis(100));
        o.startup_grace = Duration::from_millis(200);
        let report = Supervisor::new(o).run(&StopSignal::new()).unwrap();
        assert_eq!(report.exit_code, 0, "{report:?}");
        assert_eq!(report.hangs, 1);
        let line = &report.version_fallbacks[0];
        assert!(line.contains("no heartbeat"), "{line}");
        assert!(line.contains("back on the package's binary"), "{line}");
        let store = VersionStore::open(&tmp.path().join("versions")).unwrap();
        assert_eq!(store.current(), None);
    }

    #[test]
    fn a_version_that_refuses_its_configuration_falls_back_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let o = versions(
            tmp.path(),
            "exit 0",
            &[("1.0", "exit 0"), ("2.0", "exit 2")],
        );
        let report = Supervisor::new(o).run(&StopSignal::new()).unwrap();
        assert_eq!(report.exit_code, 0, "{report:?}");
        assert_eq!(report.version_fallbacks.len(), 1);
        assert!(report.version_fallbacks[0].contains("exit code 2"));
    }

    #[test]
    fn a_version_that_beats_through_its_trial_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = versions(
            tmp.path(),
            "exit 7",
            &[(
                "2.0",
                "i=0; while [ $i -lt 20 ]; do echo B >&\"$RINGFENCE_HEARTBEAT_FD\"; \
                 sleep 0.05; i=$((i+1)); done; exit 9",
            )],
        );
        o.trial_healthy = Duration::from_millis(300);
        o.crash_loop_restarts = 1;
        let stop = StopSignal::new();
        let stop2 = stop.clone();
        let store = VersionStore::open(&tmp.path().join("versions")).unwrap();
        let t = std::thread::spawn(move || Supervisor::new(o).run(&stop2));
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.state().unwrap().trial.is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Confirmed: its later crash (exit 9) is an ordinary restart, not a fall-back.
        assert_eq!(store.state().unwrap().trial, None);
        std::thread::sleep(Duration::from_millis(1500));
        stop.stop();
        let report = t.join().unwrap().unwrap();
        assert!(report.version_fallbacks.is_empty(), "{report:?}");
        assert_eq!(store.current().as_deref(), Some("2.0"));
    }

    #[test]
    fn a_worker_that_refuses_to_start_is_not_restarted() {
        let tmp = tempfile::tempdir().unwrap();
        let marker = tmp.path().join("runs");
        let script = format!("echo x >> {}; exit 4", marker.display());
        let report = Supervisor::new(opts(tmp.path(), &script))
            .run(&StopSignal::new())
            .unwrap();
        assert_eq!(report.exit_code, 4);
        assert_eq!(report.restarts, 0);
        assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1);
    }

    #[test]
    fn a_stopped_worker_is_continued() {
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        kill(pid, Signal::SIGSTOP).expect("stop");
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_state(pid) != Some('T') && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(process_state(pid), Some('T'));
        Watchdog::default().check(pid);
        while process_state(pid) == Some('T') && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_ne!(process_state(pid), Some('T'), "continued");
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn crashes_without_an_activation_only_restart_and_stop_is_forwarded() {
        let tmp = tempfile::tempdir().unwrap();
        let stop = StopSignal::new();
        let stop2 = stop.clone();
        let marker = tmp.path().join("runs");
        // Crash twice, then run until SIGTERM, then exit 0.
        let script = format!(
            "echo x >> {m}; [ $(wc -l < {m}) -le 2 ] && exit 9; \
             trap 'exit 0' TERM; while :; do sleep 0.05; done",
            m = marker.display()
        );
        let t = std::thread::spawn(move || Supervisor::new(opts(tmp.path(), &script)).run(&stop2));
        while std::fs::read_to_string(&marker).map_or(0, |s| s.lines().count()) < 3 {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        stop.stop();
        let report = t.join().unwrap().unwrap();
        assert_eq!(report.exit_code, 0);
        assert_eq!(report.restarts, 2);
        assert!(report.rollbacks.is_empty());
    }
}
