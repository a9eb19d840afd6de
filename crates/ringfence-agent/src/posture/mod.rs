//! Posture checks: what a server team asks every week, answered by the agent itself.
//!
//! - [`shadow`]: local accounts whose password is on a shipped list of common passwords (or is
//!   the user name), accounts with an empty password, and UID 0 duplicates;
//! - [`sshd`]: sshd's effective configuration (`sshd -T`, else the files): root login with a
//!   password, password authentication on a non-loopback address, empty passwords permitted;
//! - [`services`]: Redis, memcached, MySQL/MariaDB and PostgreSQL listening beyond loopback
//!   without authentication, each asked over loopback in its own protocol;
//! - [`fim`]: a file-integrity baseline of watched paths, compared at start and on every pass,
//!   kept current between passes from the pipeline's file events ([`LiveFiles`]), with
//!   package-manager changes told apart;
//! - [`inventory`]: packages, listening sockets, users, groups, kernel modules, systemd units
//!   and cron entries (`ringfence posture --inventory`).
//!
//! Results are [`PostureFinding`]s, a finding class of their own: ECS alerts with
//! `event.category: configuration`, `event.action: posture`, `rule.ruleset: ringfence-posture`
//! and `ringfence.finding.class: posture`, mapped to OCSF Compliance Finding (class_uid 2003,
//! carried as `ringfence.finding.ocsf_class_uid`). In the agent they go through the normal
//! finding path (outputs, then the console). The agent runs the checks on their own thread
//! ([`spawn`]) in the idle scheduling class with a CPU budget ([`CpuBudget`]): a short while
//! after start, then every `interval_secs`.

pub mod fim;
pub mod inventory;
pub mod services;
pub mod shadow;
pub mod sshd;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use ringfence_event::Timestamp;
use ringfence_sensor::StopSignal;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

/// The `rule.ruleset` of every posture finding.
pub const RULESET: &str = "ringfence-posture";
/// OCSF Compliance Finding.
pub const OCSF_CLASS_UID: u32 = 2003;

/// `[posture]` in the agent's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostureSection {
    /// Run the checks in the agent.
    pub enabled: bool,
    /// Seconds after start before the first pass (the host's own start-up goes first).
    pub start_delay_secs: u64,
    /// Seconds between passes.
    pub interval_secs: u64,
    /// Share of one CPU the checks may use while they run, in percent (1..=100). They run in
    /// the idle scheduling class besides, so any other work goes first.
    pub cpu_percent: u32,
    /// CPU seconds one pass may use in all; what is left unchecked is reported.
    pub max_cpu_secs_per_pass: u64,
    /// How many of the shipped common passwords each account is tried against (most common
    /// first; at most the list's length).
    pub common_passwords: usize,
    /// Where the file-integrity baseline is kept.
    pub state_dir: PathBuf,
    /// Paths the file-integrity baseline covers (`~` is each home directory in /etc/passwd).
    pub fim_paths: Vec<String>,
    /// Skip the checks by name: `weak-passwords`, `sshd`, `services`, `fim`, `inventory`.
    pub skip: Vec<String>,
    /// Store the file-integrity state as the new baseline after each pass (the CLI turns it
    /// off unless asked, so a look does not hide changes from the agent).
    #[serde(skip)]
    pub store_baseline: bool,
}

impl Default for PostureSection {
    fn default() -> Self {
        PostureSection {
            enabled: true,
            start_delay_secs: 60,
            interval_secs: 6 * 3600,
            cpu_percent: 25,
            max_cpu_secs_per_pass: 600,
            common_passwords: 100,
            state_dir: PathBuf::from("/var/lib/ringfence/posture"),
            fim_paths: fim::DEFAULT_PATHS.iter().map(|s| (*s).to_owned()).collect(),
            skip: Vec::new(),
            store_baseline: true,
        }
    }
}

impl PostureSection {
    /// Values out of range, as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(1..=100).contains(&self.cpu_percent) {
            out.push((
                "cpu_percent",
                format!("must be 1..=100, got {}", self.cpu_percent),
            ));
        }
        if self.interval_secs < 60 {
            out.push((
                "interval_secs",
                format!("must be at least 60, got {}", self.interval_secs),
            ));
        }
        if self.common_passwords > shadow::COMMON_PASSWORDS_MAX {
            out.push((
                "common_passwords",
                format!(
                    "must be at most {} (the shipped list), got {}",
                    shadow::COMMON_PASSWORDS_MAX,
                    self.common_passwords
                ),
            ));
        }
        for s in &self.skip {
            if !CHECKS.contains(&s.as_str()) {
                out.push((
                    "skip",
                    format!("unknown check `{s}`; known: {}", CHECKS.join(", ")),
                ));
            }
        }
        out
    }

    fn runs(&self, check: &str) -> bool {
        !self.skip.iter().any(|s| s == check)
    }

    /// The file the agent's posture passes keep the inventory in, when they collect one (the
    /// fleet link sends it to the console).
    pub fn inventory_file(&self) -> Option<std::path::PathBuf> {
        (self.enabled && self.runs("inventory")).then(|| inventory::file(&self.state_dir))
    }
}

/// The checks, by the names `skip` takes.
pub const CHECKS: [&str; 5] = ["weak-passwords", "sshd", "services", "fim", "inventory"];

/// How bad a posture finding is (the Sigma levels, so outputs treat it like any finding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    const fn severity(self) -> u8 {
        match self {
            Level::Informational => 1,
            Level::Low => 2,
            Level::Medium => 3,
            Level::High => 4,
            Level::Critical => 5,
        }
    }
}

/// One weakness or change found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostureFinding {
    /// `rule.id`, e.g. `ringfence-posture-weak-password`.
    pub rule_id: &'static str,
    pub title: &'static str,
    pub level: Level,
    /// What it is about: an account, a service address, a path.
    pub subject: String,
    pub message: String,
    /// Check-specific evidence (hash type, config line, before/after).
    pub details: Json,
}

impl PostureFinding {
    /// The finding as an ECS alert, the shape every output and the console take.
    pub fn to_json(&self, host: Option<&str>, at: Timestamp) -> Json {
        let mut doc = json!({
            "@timestamp": at.to_string(),
            "message": self.message,
            "event": {
                "kind": "alert",
                "category": ["configuration"],
                "type": ["info"],
                "action": "posture",
                "module": "ringfence",
                "dataset": "ringfence.posture",
                "severity": self.level.severity(),
            },
            "rule": {
                "id": self.rule_id,
                "name": self.title,
                "ruleset": RULESET,
            },
            "ringfence": {
                "source": "agent",
                "finding": {
                    "level": self.level.as_str(),
                    "class": "posture",
                    "ocsf_class_uid": OCSF_CLASS_UID,
                    "subject": self.subject,
                    "details": self.details,
                },
            },
        });
        if let Some(h) = host {
            doc["host"] = json!({ "name": h });
        }
        doc
    }

    /// One readable line.
    pub fn to_text(&self) -> String {
        format!(
            "{:<8} {:<36} {}: {}",
            self.level.as_str(),
            self.rule_id,
            self.subject,
            self.message
        )
    }
}

/// A share of one CPU for a thread: [`CpuBudget::charge`] sleeps as long as the thread has used
/// more than `percent` of the wall time since the budget started, and says when the pass has
/// used its whole allowance.
#[derive(Debug)]
pub struct CpuBudget {
    percent: u32,
    max_cpu: Duration,
    started_wall: Instant,
    started_cpu_ns: u64,
    stop: Option<StopSignal>,
}

impl CpuBudget {
    pub fn new(percent: u32, max_cpu: Duration, stop: Option<StopSignal>) -> CpuBudget {
        CpuBudget {
            percent: percent.clamp(1, 100),
            max_cpu,
            started_wall: Instant::now(),
            started_cpu_ns: ringfence_sensor::sys::thread_cpu_ns(),
            stop,
        }
    }

    /// No limit but the pass allowance (the CLI, run by a person waiting for it).
    pub fn unlimited(max_cpu: Duration) -> CpuBudget {
        CpuBudget::new(100, max_cpu, None)
    }

    /// CPU used since the budget started.
    pub fn used(&self) -> Duration {
        Duration::from_nanos(
            ringfence_sensor::sys::thread_cpu_ns().saturating_sub(self.started_cpu_ns),
        )
    }

    /// Account for the work done so far: sleep off any excess over the share. False when the
    /// pass must end (allowance spent, or the agent stopping).
    pub fn charge(&self) -> bool {
        if self.stop.as_ref().is_some_and(StopSignal::is_stopped) {
            return false;
        }
        let used = self.used();
        if used >= self.max_cpu {
            return false;
        }
        if self.percent < 100 {
            // Wall time the used CPU is allowed to take at this share.
            let allowed_wall = used.saturating_mul(100) / self.percent;
            let elapsed = self.started_wall.elapsed();
            if allowed_wall > elapsed {
                let pause = (allowed_wall - elapsed).min(Duration::from_secs(5));
                match &self.stop {
                    Some(s) => {
                        s.sleep(pause);
                    }
                    None => std::thread::sleep(pause),
                }
            }
        }
        !self.stop.as_ref().is_some_and(StopSignal::is_stopped)
    }
}

/// What one pass found, and what it could not do.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<PostureFinding>,
    /// Checks that could not run or finish, each with the reason (reported as health).
    pub incomplete: Vec<String>,
    pub shadow: Option<shadow::Stats>,
    pub fim: Option<fim::Stats>,
    /// The file state the pass found, kept current from file events between passes.
    #[serde(skip)]
    pub fim_baseline: Option<fim::Baseline>,
}

/// Where a pass reads the host from (tests point these at their own files).
#[derive(Debug, Clone)]
pub struct HostPaths {
    pub shadow: PathBuf,
    pub passwd: PathBuf,
    pub sshd_config: PathBuf,
    pub proc: PathBuf,
    pub dpkg_dir: PathBuf,
    pub dpkg_log: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            shadow: "/etc/shadow".into(),
            passwd: "/etc/passwd".into(),
            sshd_config: "/etc/ssh/sshd_config".into(),
            proc: "/proc".into(),
            dpkg_dir: "/var/lib/dpkg".into(),
            dpkg_log: "/var/log/dpkg.log".into(),
        }
    }
}

/// Run every check that `section` does not skip, once.
pub fn run_pass(section: &PostureSection, paths: &HostPaths, budget: &CpuBudget) -> Report {
    let mut report = Report::default();
    if section.runs("sshd") {
        match sshd::check(&paths.sshd_config) {
            Ok(mut found) => {
                // A configuration nothing serves is a weakness in waiting, not an open door.
                let running = services::listeners(&paths.proc)
                    .iter()
                    .any(|l| l.process.as_deref() == Some("sshd"));
                if !running {
                    for f in &mut found {
                        f.level = Level::Low;
                        f.message += " (sshd is not listening now)";
                    }
                }
                report.findings.extend(found);
            }
            Err(e) => report.incomplete.push(format!("sshd: {e}")),
        }
    }
    if section.runs("services") {
        let found = services::check(&paths.proc);
        report.findings.extend(found.findings);
        report.incomplete.extend(
            found
                .incomplete
                .into_iter()
                .map(|e| format!("services: {e}")),
        );
    }
    if section.runs("fim") {
        let homes = shadow::home_dirs(&paths.passwd);
        let watched = fim::expand_paths(&section.fim_paths, &homes);
        let opts = fim::Options {
            paths: watched,
            state_dir: section.state_dir.clone(),
            dpkg_dir: paths.dpkg_dir.clone(),
            dpkg_log: paths.dpkg_log.clone(),
            store: section.store_baseline,
            ..fim::Options::default()
        };
        match fim::run(&opts, budget) {
            Ok(out) => {
                report.findings.extend(out.findings);
                report.fim = Some(out.stats);
                report.fim_baseline = Some(out.baseline);
            }
            Err(e) => report.incomplete.push(format!("fim: {e}")),
        }
    }
    if section.runs("inventory") {
        let previous = inventory::load(&section.state_dir);
        let now = inventory::collect(&inventory::Sources {
            root: std::path::Path::new("/"),
            proc: &paths.proc,
        });
        if let Some(prev) = &previous {
            let delta = inventory::delta(prev, &now);
            if delta.as_object().is_some_and(|d| !d.is_empty()) {
                report.findings.push(PostureFinding {
                    rule_id: "ringfence-posture-inventory-changed",
                    title: "Host inventory changed",
                    level: Level::Informational,
                    subject: "inventory".into(),
                    message: format!("inventory changed: {}", inventory::summarize(&delta)),
                    details: delta,
                });
            }
        }
        if section.store_baseline
            && let Err(e) = inventory::store(&section.state_dir, &now)
        {
            report.incomplete.push(format!("inventory: {e}"));
        }
    }
    // Last: the slowest by design (yescrypt), and the one the budget most often cuts short.
    if section.runs("weak-passwords") {
        let opts = shadow::Options {
            shadow: paths.shadow.clone(),
            passwd: paths.passwd.clone(),
            common_passwords: section.common_passwords,
        };
        match shadow::check(&opts, budget) {
            Ok(out) => {
                report.findings.extend(out.findings);
                if out.stats.unchecked > 0 {
                    report.incomplete.push(format!(
                        "weak-passwords: {} account(s) not checked: the pass's CPU budget \
                         ({} s) ran out",
                        out.stats.unchecked, section.max_cpu_secs_per_pass
                    ));
                }
                report.shadow = Some(out.stats);
            }
            Err(e) => report.incomplete.push(format!("weak-passwords: {e}")),
        }
    }
    report
}

/// File events for the baseline: the pipeline offers the path of every file event, and those
/// under a watched path go to the posture thread (never waited for: when its queue is full the
/// path is dropped, counted, and the next full pass runs at once).
#[derive(Debug)]
pub struct LiveFiles {
    tx: Sender<PathBuf>,
    roots: Vec<PathBuf>,
    dropped: std::sync::atomic::AtomicU64,
}

impl LiveFiles {
    pub fn offer(&self, path: &str) {
        let p = std::path::Path::new(path);
        if self.roots.iter().any(|r| p.starts_with(r)) && self.tx.try_send(p.to_owned()).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The running posture thread, as the pipeline sees it.
pub struct Running {
    /// Findings, already in JSON.
    pub findings: Receiver<Json>,
    /// Where file events go (`None` when the file-integrity check is skipped).
    pub files: Option<std::sync::Arc<LiveFiles>>,
    pub handle: std::thread::JoinHandle<()>,
}

/// Start the posture thread: idle class, first pass after `start_delay_secs`, then every
/// `interval_secs`, until `stop`; between passes the baseline is kept current from file
/// events. Findings (and a health finding for each check that could not finish) come out of
/// [`Running::findings`]; when the pipeline falls behind they are dropped and counted in the
/// log, never waited for.
pub fn spawn(
    section: PostureSection,
    host: Option<String>,
    stop: StopSignal,
) -> std::io::Result<Running> {
    let (tx, rx) = crossbeam_channel::bounded(4096);
    let (files_tx, files_rx) = crossbeam_channel::bounded(65_536);
    let files = section.runs("fim").then(|| {
        let homes = shadow::home_dirs(&HostPaths::default().passwd);
        std::sync::Arc::new(LiveFiles {
            tx: files_tx,
            roots: fim::expand_paths(&section.fim_paths, &homes),
            dropped: std::sync::atomic::AtomicU64::new(0),
        })
    });
    let live = files.clone();
    let handle = std::thread::Builder::new()
        .name("rf-posture".into())
        .spawn(move || {
            posture_thread(
                &section,
                host.as_deref(),
                &stop,
                &tx,
                &files_rx,
                live.as_deref(),
            );
        })?;
    Ok(Running {
        findings: rx,
        files,
        handle,
    })
}

/// Hands findings to the pipeline; false once the pipeline is gone.
struct Sink<'a> {
    tx: &'a Sender<Json>,
    host: Option<&'a str>,
    dropped: u64,
}

impl Sink<'_> {
    fn send(&mut self, doc: Json) -> bool {
        match self.tx.try_send(doc) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped = self.dropped.saturating_add(1);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    fn findings(&mut self, findings: &[PostureFinding]) -> bool {
        let now = Timestamp::now();
        findings
            .iter()
            .all(|f| self.send(f.to_json(self.host, now)))
    }

    fn incomplete(&mut self, why: &str) -> bool {
        tracing::error!("posture check incomplete: {why}");
        let doc = crate::readiness::health_finding(
            crate::readiness::PART_RULE_ID,
            ringfence_event::SourceKind::Agent,
            format!("posture check incomplete: {why}"),
            self.host,
        );
        self.send(doc)
    }
}

fn posture_thread(
    section: &PostureSection,
    host: Option<&str>,
    stop: &StopSignal,
    tx: &Sender<Json>,
    files: &Receiver<PathBuf>,
    live: Option<&LiveFiles>,
) {
    if let Err(e) = ringfence_sensor::sys::set_thread_idle_priority() {
        tracing::warn!(error = %e, "posture: cannot enter the idle scheduling class; the CPU budget still holds");
    }
    stop.sleep(Duration::from_secs(section.start_delay_secs));
    let paths = HostPaths::default();
    let mut sink = Sink {
        tx,
        host,
        dropped: 0,
    };
    let mut baseline: Option<fim::Baseline> = None;
    let mut fold = PassFold::default();
    let fim_opts = |baseline_paths: Vec<PathBuf>| fim::Options {
        paths: baseline_paths,
        state_dir: section.state_dir.clone(),
        dpkg_dir: paths.dpkg_dir.clone(),
        dpkg_log: paths.dpkg_log.clone(),
        store: section.store_baseline,
        ..fim::Options::default()
    };
    while !stop.is_stopped() {
        // A pass in the middle of an upgrade would judge half-applied packages: wait it out
        // (an hour at most).
        let waited = Instant::now();
        while fim::package_manager_running(&paths.proc)
            && waited.elapsed() < Duration::from_secs(3600)
            && !stop.is_stopped()
        {
            stop.sleep(Duration::from_secs(5));
        }
        let started = Instant::now();
        let budget = CpuBudget::new(
            section.cpu_percent,
            Duration::from_secs(section.max_cpu_secs_per_pass),
            Some(stop.clone()),
        );
        let mut report = run_pass(section, &paths, &budget);
        // A weakness still there is not reported again at every pass.
        let fresh = fold.fresh(&report.findings);
        if !sink.findings(&fresh) {
            return;
        }
        for why in &report.incomplete {
            if !sink.incomplete(why) {
                return;
            }
        }
        tracing::info!(
            findings = report.findings.len(),
            new = fresh.len(),
            incomplete = report.incomplete.len(),
            cpu_ms = budget.used().as_millis() as u64,
            wall_ms = started.elapsed().as_millis() as u64,
            "posture pass done"
        );
        if let Some(b) = report.fim_baseline.take() {
            baseline = Some(b);
        }
        let mut dirty = fim::Dirty::default();
        // Between passes: file events keep the baseline current.
        let next = Instant::now() + Duration::from_secs(section.interval_secs);
        while Instant::now() < next && !stop.is_stopped() {
            match files.recv_timeout(Duration::from_secs(1)) {
                Ok(p) => {
                    dirty.add(p);
                    for p in files.try_iter().take(fim::Dirty::MAX) {
                        dirty.add(p);
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    stop.sleep(Duration::from_secs(1));
                }
            }
            if live.is_some_and(|l| l.dropped.swap(0, std::sync::atomic::Ordering::Relaxed) > 0) {
                dirty.overflowed = true;
            }
            if dirty.overflowed {
                tracing::warn!(
                    "posture: more file events than the queue holds; a full pass runs now"
                );
                break;
            }
            let Some(b) = baseline.as_mut() else { continue };
            if dirty.ready(&paths.proc) {
                match fim::check_dirty(&fim_opts(b.paths.clone()), b, &mut dirty) {
                    Ok(out) => {
                        if !sink.findings(&out.findings) {
                            return;
                        }
                    }
                    Err(e) => {
                        if !sink.incomplete(&format!("fim: {e}")) {
                            return;
                        }
                    }
                }
            }
        }
        if sink.dropped > 0 {
            tracing::error!(
                dropped = sink.dropped,
                "posture: findings dropped, the pipeline did not take them"
            );
            sink.dropped = 0;
        }
    }
}

/// Folds a pass's findings into those new since the previous pass: a weakness is reported
/// when it appears (first pass of a run, or it went away and came back), not at every pass.
#[derive(Debug, Default)]
pub struct PassFold {
    previous: std::collections::HashSet<(&'static str, String, String)>,
}

impl PassFold {
    /// The findings of this pass the previous pass did not have.
    pub fn fresh(&mut self, findings: &[PostureFinding]) -> Vec<PostureFinding> {
        let now: std::collections::HashSet<(&'static str, String, String)> = findings
            .iter()
            .map(|f| (f.rule_id, f.subject.clone(), f.message.clone()))
            .collect();
        let fresh = findings
            .iter()
            .filter(|f| {
                !self
                    .previous
                    .contains(&(f.rule_id, f.subject.clone(), f.message.clone()))
            })
            .cloned()
            .collect();
        self.previous = now;
        fresh
    }
}

/// Store `value` as JSON in `state_dir/file`, atomically (a 0600 temporary file renamed over
/// it; directories made here are 0700, one that exists keeps its mode); returns its size.
pub(crate) fn store_private_json<T: Serialize>(
    state_dir: &std::path::Path,
    file: &str,
    value: &T,
) -> Result<u64, String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(|e| format!("{}: {e}", state_dir.display()))?;
    let path = state_dir.join(file);
    let tmp = state_dir.join(format!("{file}.tmp"));
    let text = serde_json::to_vec(value).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weakness_is_reported_when_it_appears_not_at_every_pass() {
        let weak = |user: &str| PostureFinding {
            rule_id: "ringfence-posture-weak-password",
            title: "Weak password",
            level: Level::High,
            subject: format!("user {user}"),
            message: format!("{user}'s password is on the common list"),
            details: json!({}),
        };
        let mut fold = PassFold::default();
        let subjects =
            |v: Vec<PostureFinding>| v.into_iter().map(|f| f.subject).collect::<Vec<_>>();
        assert_eq!(
            subjects(fold.fresh(&[weak("a"), weak("b")])),
            ["user a", "user b"]
        );
        assert!(fold.fresh(&[weak("a"), weak("b")]).is_empty());
        assert_eq!(subjects(fold.fresh(&[weak("a"), weak("c")])), ["user c"]);
        // b went away and came back: reported again.
        assert!(fold.fresh(&[]).is_empty());
        assert_eq!(subjects(fold.fresh(&[weak("b")])), ["user b"]);
    }

    #[test]
    fn a_finding_is_an_ecs_alert_of_the_posture_class() {
        let f = PostureFinding {
            rule_id: "ringfence-posture-weak-password",
            title: "Weak password",
            level: Level::High,
            subject: "user alice".into(),
            message: "alice's password is on the common list".into(),
            details: json!({"hash_type": "sha512crypt"}),
        };
        let doc = f.to_json(Some("h1"), Timestamp::now());
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["event"]["action"], "posture");
        assert_eq!(doc["rule"]["id"], "ringfence-posture-weak-password");
        assert_eq!(doc["ringfence"]["finding"]["class"], "posture");
        assert_eq!(doc["ringfence"]["finding"]["ocsf_class_uid"], 2003);
        assert_eq!(doc["ringfence"]["finding"]["level"], "high");
        assert_eq!(doc["host"]["name"], "h1");
    }

    #[test]
    fn the_budget_ends_a_pass_when_the_allowance_is_spent() {
        let b = CpuBudget::unlimited(Duration::ZERO);
        assert!(!b.charge());
        let b = CpuBudget::unlimited(Duration::from_secs(3600));
        assert!(b.charge());
    }

    #[test]
    fn section_values_out_of_range_are_named() {
        let s = PostureSection {
            cpu_percent: 0,
            skip: vec!["yara".into()],
            ..PostureSection::default()
        };
        let keys: Vec<&str> = s.problems().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["cpu_percent", "skip"]);
    }
}
