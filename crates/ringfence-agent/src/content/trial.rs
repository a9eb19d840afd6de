//! The supervisor's watch over agent versions ([`crate::versions`]): which binary the next
//! worker runs, when a version on trial has proved itself, and when it has failed and the
//! store falls back to the previous one.
//!
//! A version is on trial from its switch until its worker has beaten for `healthy_for`. It
//! fails its trial when its workers die `restarts_limit` times, or at once when one cannot be
//! started, refuses to start (exit 1, 2 or 4: a configuration it no longer reads), exits 0
//! unasked, or never beats or stops beating (the supervisor's hang limit). The fall-back is
//! reported like a content rollback: logged, kept in the supervisor's report, and handed to
//! the next worker in [`VERSION_FALLBACK_ENV`], which raises it as a health finding.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::versions::VersionStore;

/// Environment variable carrying a version fall-back report to the next worker.
pub const VERSION_FALLBACK_ENV: &str = "RINGFENCE_VERSION_FALLBACK";

/// How often `current` is looked at for a switch made while a worker runs.
const SWITCH_CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct VersionWatch {
    store: VersionStore,
    /// The package's binary: what runs when no version is current.
    base: PathBuf,
    restarts_limit: u32,
    healthy_for: Duration,
    /// The running worker's version (`None`: the package's binary).
    running: Option<String>,
    /// The running version, while it is on trial.
    trial: Option<String>,
    deaths: u32,
    last_switch_check: Option<Instant>,
}

impl VersionWatch {
    pub fn new(
        store: VersionStore,
        base: PathBuf,
        restarts_limit: u32,
        healthy_for: Duration,
    ) -> VersionWatch {
        VersionWatch {
            store,
            base,
            restarts_limit: restarts_limit.max(1),
            healthy_for,
            running: None,
            trial: None,
            deaths: 0,
            last_switch_check: None,
        }
    }

    /// The binary the next worker runs; remembers its version and whether it is on trial.
    pub fn next_program(&mut self) -> PathBuf {
        let current = self.store.current();
        if current != self.running {
            self.deaths = 0;
        }
        self.running = current;
        self.trial = match self.store.state() {
            Ok(s) => s.trial.filter(|t| Some(t) == self.running.as_ref()),
            Err(e) => {
                tracing::error!("agent versions: {e}");
                None
            }
        };
        if let Some(v) = &self.trial {
            tracing::warn!(version = %v, "starting agent version {v} on trial");
        }
        self.store.binary(&self.base)
    }

    /// The version the running worker runs, for logs.
    pub fn running(&self) -> Option<&str> {
        self.running.as_deref()
    }

    /// While the worker runs: a version on trial whose worker has beaten for `healthy_for`
    /// since it started is confirmed.
    pub fn check_healthy(&mut self, started: Instant, beating: bool) {
        if self.trial.is_none() || !beating || started.elapsed() < self.healthy_for {
            return;
        }
        match self.store.confirm() {
            Ok(()) => {
                let v = self.trial.take().unwrap_or_default();
                tracing::info!(version = %v, "agent version {v} passed its trial");
                self.deaths = 0;
            }
            Err(e) => tracing::error!("agent versions: confirming the trial: {e}"),
        }
    }

    /// Whether `current` names another version than the running worker's (looked at once
    /// a second): the worker is then stopped and the new version started.
    pub fn switched(&mut self) -> bool {
        if self
            .last_switch_check
            .is_some_and(|at| at.elapsed() < SWITCH_CHECK_EVERY)
        {
            return false;
        }
        self.last_switch_check = Some(Instant::now());
        self.store.current() != self.running
    }

    /// A failure of the running worker, and why. `at_once`: the version fails its trial now;
    /// otherwise after `restarts_limit` failures. Returns the report line of a fall-back.
    pub fn failed(&mut self, why: &str, at_once: bool) -> Option<String> {
        let trial = self.trial.clone()?;
        self.deaths = self.deaths.saturating_add(1);
        if !at_once && self.deaths < self.restarts_limit {
            return None;
        }
        let deaths = std::mem::take(&mut self.deaths);
        self.trial = None;
        Some(match self.store.fall_back() {
            Ok(Some(fb)) => format!(
                "agent version {} failed its trial ({why}; {deaths} failure(s)): marked bad on \
                 this host, back on {}",
                fb.failed,
                fb.now.map_or_else(
                    || "the package's binary".to_owned(),
                    |v| format!("version {v}")
                )
            ),
            Ok(None) => return None,
            Err(e) => {
                format!(
                    "agent version {trial} failed its trial ({why}), and the fall-back failed: {e}"
                )
            }
        })
    }
}
