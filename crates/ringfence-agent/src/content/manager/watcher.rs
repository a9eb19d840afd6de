//! The manager's own thread: it polls the content directory, verifies each new file against
//! the trusted root, keeps verified bundles as candidates until the pin picks one, and takes
//! the picked one through compile, probation and shadow to the swap (or refuses it, saying
//! why). Everything it publishes goes through the [`super::Shared`] state the pipeline reads.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ringfence_content::{
    ALLOW_EMPTY, ALLOW_RULE_DROP, Bundle, ContentStore, Outcome, SeenVersions, SignedBundle,
    TrustedRoot, UnixTime, VerifyOptions, verify_signed_bundle,
};
use ringfence_sensor::StopSignal;

use super::*;

/// A verified bundle waiting for the pin to pick it.
pub(super) struct Candidate {
    bytes: Vec<u8>,
    bundle: Bundle,
    root: TrustedRoot,
    seen: SeenVersions,
    verify: Duration,
    seen_at: Instant,
}

/// Files already looked at: (length, modification time).
type FileKey = (u64, Option<SystemTime>);

pub(super) struct Watcher {
    pub(super) opts: ManagerOptions,
    pub(super) store: ContentStore,
    pub(super) root: TrustedRoot,
    pub(super) seen: SeenVersions,
    pub(super) active: Option<u64>,
    pub(super) processed: HashMap<PathBuf, FileKey>,
    pub(super) candidates: BTreeMap<u64, Candidate>,
    pub(super) pending_confirm: Option<Instant>,
    pub(super) shared: Arc<Shared>,
}

impl Watcher {
    fn report(&self, message: String) {
        tracing::warn!("{message}");
        self.shared.report(message);
    }

    fn budgets(&self) -> Budgets {
        Budgets {
            cpu_per_event: Duration::from_micros(self.opts.section.rule_cpu_budget_us),
            memory_bytes: self.opts.section.rule_memory_budget_bytes,
        }
    }

    /// Loads the store's active bundle; falls back to last-known-good if it cannot.
    pub(super) fn load_active(&mut self) {
        for _ in 0..2 {
            let state = match self.store.state() {
                Ok(s) => s,
                Err(e) => {
                    self.report(format!(
                        "content store unreadable, running without content: {e}"
                    ));
                    return;
                }
            };
            let Some(version) = state.active else {
                let (rules, what) = self.shared.active();
                if rules == 0 {
                    self.report(format!(
                        "no bundle active yet and {what}; waiting for a bundle"
                    ));
                } else {
                    tracing::info!("no bundle active yet: running {what}; waiting for a bundle");
                }
                return;
            };
            match self.load_stored(version) {
                Ok(loaded) => {
                    self.active = Some(version);
                    self.shared.publish(|s| s.active = Some(Arc::new(loaded)));
                    tracing::info!(version, content = %self.shared.active().1, "content loaded");
                    if state.activating == Some(version) {
                        // Swapped in but not confirmed before the last exit: keep probation.
                        self.pending_confirm = Some(
                            Instant::now() + Duration::from_secs(self.opts.section.confirm_secs),
                        );
                    }
                    return;
                }
                Err(e) => {
                    self.report(format!(
                        "stored active content version {version} refused: {e}; trying \
                         last-known-good (running {} meanwhile)",
                        self.shared.active().1
                    ));
                    match self.store.roll_back() {
                        Ok(rb) => self.report(format!(
                            "content version {} marked bad; {}",
                            rb.marked_bad,
                            rb.active.map_or_else(
                                || "no last-known-good bundle to restore".to_owned(),
                                |v| format!("last-known-good bundle v{v} restored")
                            )
                        )),
                        Err(e) => {
                            self.report(format!("no last-known-good to restore: {e}"));
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Verifies and compiles a bundle from the store (an own, already accepted bundle: signed
    /// by a root we trusted, so no expiry and no version floor).
    fn load_stored(&self, version: u64) -> Result<Loaded, String> {
        let bytes = self
            .store
            .read_bundle(version, self.opts.limits.max_total_bytes)
            .map_err(|e| e.to_string())?;
        let mut opts = VerifyOptions::new(UnixTime::now());
        opts.limits = self.opts.limits;
        opts.enforce_expiry = false;
        let verified = verify_signed_bundle(
            &bytes,
            &self.root,
            SeenVersions::default(),
            &opts,
            &*self.opts.engine.validator,
        )
        .map_err(|e| e.to_string())?;
        let Outcome::New { bundle, .. } = verified.outcome else {
            return Err("stored bundle verified as unchanged".into());
        };
        if bundle.content_version() != version {
            return Err(format!(
                "stored as version {version} but holds version {}",
                bundle.content_version()
            ));
        }
        self.compile(&bundle)
    }

    /// Compiles a verified bundle. This is "load": the test fault switch fires here.
    fn compile(&self, bundle: &Bundle) -> Result<Loaded, String> {
        fault_injection(bundle);
        let schema = agent_schema();
        if bundle.schema() != &schema {
            return Err(format!(
                "built for field schema v{} ({}), this agent has v{} ({})",
                bundle.schema().version,
                bundle.schema().fingerprint,
                schema.version,
                schema.fingerprint
            ));
        }
        let content =
            (self.opts.engine.compile)(bundle, self.opts.engine.mode).map_err(|errors| {
                let shown: Vec<String> = errors.iter().take(3).map(ToString::to_string).collect();
                format!("{} compile error(s): {}", errors.len(), shown.join("; "))
            })?;
        let rules = content.rules().len();
        if rules == 0 && content.indicators() == 0 {
            match bundle.allowed_empty() {
                None => {
                    return Err(format!(
                        "it detects nothing in {} mode: 0 rules and 0 IOCs compiled, and its \
                         signed metadata has no `{ALLOW_EMPTY}` (build it with --allow-empty \
                         REASON if that is intended)",
                        self.opts.engine.mode.as_str()
                    ));
                }
                Some(reason) => tracing::warn!(
                    version = bundle.content_version(),
                    "content with 0 rules and 0 IOCs, allowed by its signed metadata: {reason}"
                ),
            }
        }
        Ok(Loaded {
            version: bundle.content_version(),
            content: Arc::from(content),
            disabled: vec![false; rules],
        })
    }

    pub(super) fn run(&mut self, stop: &StopSignal) {
        let poll = Duration::from_millis(self.opts.section.poll_ms.max(1));
        loop {
            if let Some(due) = self.pending_confirm {
                if Instant::now() >= due {
                    match self.store.confirm() {
                        Ok(()) => {
                            tracing::info!(version = ?self.active, "content confirmed");
                            self.pending_confirm = None;
                        }
                        Err(e) => self.report(format!("cannot confirm content: {e}")),
                    }
                }
            } else {
                self.scan();
                self.activate_pinned(stop);
            }
            if stop.sleep(poll) {
                return;
            }
        }
    }

    /// Verifies every bundle file not looked at yet.
    fn scan(&mut self) {
        let entries = match std::fs::read_dir(&self.opts.dir) {
            Ok(e) => e,
            Err(e) => {
                let key = (u64::MAX, None);
                if self.processed.insert(self.opts.dir.clone(), key) != Some(key) {
                    self.report(format!(
                        "content directory {}: {e}",
                        self.opts.dir.display()
                    ));
                }
                return;
            }
        };
        self.processed.remove(&self.opts.dir);
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "bundle") && p.is_file())
            .collect();
        files.sort();
        for path in files {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let key = (meta.len(), meta.modified().ok());
            if self.processed.get(&path) == Some(&key) {
                continue;
            }
            self.processed.insert(path.clone(), key);
            self.verify_file(&path);
        }
    }

    fn verify_file(&mut self, path: &Path) {
        let seen_at = Instant::now();
        let bad = match self.store.state() {
            Ok(s) => s.bad,
            Err(e) => {
                self.report(format!("content store unreadable: {e}"));
                return;
            }
        };
        let mut opts = VerifyOptions::new(UnixTime::now());
        opts.limits = self.opts.limits;
        opts.current_content_version = self.active;
        opts.bad_versions = bad;
        let result = SignedBundle::read_file(path, &self.opts.limits).and_then(|bytes| {
            verify_signed_bundle(
                &bytes,
                &self.root,
                self.seen,
                &opts,
                &*self.opts.engine.validator,
            )
            .map(|v| (bytes, v))
        });
        match result {
            Ok((bytes, verified)) => match verified.outcome {
                Outcome::Unchanged => tracing::info!(
                    file = %path.display(),
                    version = verified.content_version,
                    "bundle has the active content version: nothing to do"
                ),
                Outcome::New { bundle, .. } => {
                    tracing::info!(file = %path.display(), version = verified.content_version, "bundle verified");
                    self.candidates.insert(
                        verified.content_version,
                        Candidate {
                            bytes,
                            bundle,
                            root: verified.root,
                            seen: verified.seen,
                            verify: seen_at.elapsed(),
                            seen_at,
                        },
                    );
                    // Keep memory bounded: the pin never needs more than the newest two.
                    while self.candidates.len() > 2 {
                        self.candidates.pop_first();
                    }
                }
                _ => {}
            },
            Err(e) => self.report(format!(
                "content bundle {} refused: {e}; keeping {}",
                path.display(),
                self.shared.active().1
            )),
        }
    }

    fn activate_pinned(&mut self, stop: &StopSignal) {
        let mut available: BTreeSet<u64> = self.candidates.keys().copied().collect();
        available.extend(self.active);
        let Some(target) = self.opts.section.pin.choose(&available) else {
            return;
        };
        if Some(target) == self.active || self.active.is_some_and(|a| target < a) {
            return;
        }
        let Some(candidate) = self.candidates.remove(&target) else {
            return;
        };
        // Older candidates can never be picked once `target` is active.
        self.candidates.retain(|&v, _| v > target);
        self.activate(target, candidate, stop);
    }

    /// stage → "activating N" → compile → probation (sample, shadow) → swap → commit.
    fn activate(&mut self, version: u64, c: Candidate, stop: &StopSignal) {
        let mut timings = ActivationTimings {
            version,
            verify: c.verify,
            ..ActivationTimings::default()
        };
        if let Err(e) = self.store.stage(version, &c.bytes) {
            self.report(format!("cannot stage content version {version}: {e}"));
            return;
        }
        if let Err(e) = self.store.begin_activation(version) {
            self.report(format!(
                "cannot mark content version {version} activating: {e}"
            ));
            return;
        }
        let started = Instant::now();
        let mut loaded = match self.compile(&c.bundle) {
            Ok(l) => l,
            Err(e) => return self.refuse(version, &format!("does not compile: {e}")),
        };
        timings.compile = started.elapsed();
        timings.rules = loaded.content.rules().len();
        let (active_rules, active) = self.shared.active();
        if drops_too_many(active_rules, timings.rules) {
            // Content signed as empty on purpose drops the rules on purpose too.
            match c.bundle.allowed_rule_drop().or(c.bundle.allowed_empty()) {
                None => {
                    return self.refuse(
                        version,
                        &format!(
                            "it has {} rule(s) against {active_rules} running now ({active}): \
                             more than {MAX_RULE_DROP_PERCENT}% would be dropped, and its signed \
                             metadata has no `{ALLOW_RULE_DROP}` (build it with \
                             --allow-rule-drop REASON if that is intended)",
                            timings.rules
                        ),
                    );
                }
                Some(reason) => tracing::warn!(
                    version,
                    rules = timings.rules,
                    "content drops most of the active rules ({active}), allowed by its signed \
                     metadata: {reason}"
                ),
            }
        }

        // Probation 1: the stored sample of recent real events.
        let started = Instant::now();
        let budgets = self.budgets();
        let sample: Vec<Event> = lock(&self.shared.sample).iter().cloned().collect();
        timings.sample_events = sample.len();
        let mut probation = Probation::new(timings.rules);
        for event in &sample {
            probation.run_event(&*loaded.content, event, &budgets);
        }
        drop(sample);
        probation.enforce(&*loaded.content, &budgets);
        timings.sample_probation = started.elapsed();

        // Probation 2: shadow beside the active content on live events.
        let started = Instant::now();
        if self.opts.section.shadow_secs > 0 {
            let probation_shared = Arc::new(Mutex::new(probation));
            let shadow = Arc::new(ShadowRun {
                content: Arc::clone(&loaded.content),
                probation: Arc::clone(&probation_shared),
                budgets,
            });
            self.shared.publish(|s| s.shadow = Some(shadow));
            let stopped = stop.sleep(Duration::from_secs(self.opts.section.shadow_secs));
            self.shared.publish(|s| s.shadow = None);
            if stopped {
                tracing::info!(
                    version,
                    "stopped during shadow probation; will resume next start"
                );
                return;
            }
            probation = lock(&probation_shared).clone();
            probation.enforce(&*loaded.content, &budgets);
        }
        timings.shadow = started.elapsed();
        let disabled = probation.disabled_rules();
        for (rule, reason) in &disabled {
            let id = loaded
                .content
                .rules()
                .get(*rule)
                .map_or("?", |r| r.id.as_str());
            self.report(format!(
                "content version {version}: rule {id} disabled in probation: {reason}"
            ));
            if let Some(d) = loaded.disabled.get_mut(*rule) {
                *d = true;
            }
        }
        timings.disabled = disabled.len();
        if timings.rules > 0 && disabled.len() == timings.rules {
            return self.refuse(version, "every rule was over budget in probation");
        }

        // Rules the sensor's hooks never feed: said once, with the swap (they stay in: a
        // profile change makes them live).
        let dead = loaded.content.unhooked_rules(&self.opts.unhooked);
        if !dead.is_empty() {
            let ids: Vec<&str> = dead
                .iter()
                .filter_map(|l| l.split(": rule ").nth(1)?.split(':').next())
                .collect();
            self.report(format!(
                "content version {version}: {} rule{} can never fire, the eBPF sensor has no \
                 hook for their event kinds ({}): {}",
                dead.len(),
                if dead.len() == 1 { "" } else { "s" },
                ringfence_detect::hooked::remedies(&self.opts.unhooked),
                ids.join(", ")
            ));
        }

        // Swap: the pipeline picks the new Arc up before its next event.
        let loaded = Arc::new(loaded);
        timings.total = c.seen_at.elapsed();
        *lock(&self.shared.last_activation) = Some(timings);
        self.shared
            .publish(|s| s.active = Some(Arc::clone(&loaded)));
        if let Err(e) = self.store.commit_activation() {
            self.report(format!(
                "content version {version} active but not recorded: {e}"
            ));
        }
        if let Err(e) = self.store.save_trust(&c.root, c.seen) {
            self.report(format!("cannot save the trusted root: {e}"));
        }
        self.root = c.root;
        self.seen = c.seen;
        self.active = Some(version);
        self.pending_confirm =
            Some(Instant::now() + Duration::from_secs(self.opts.section.confirm_secs));
        tracing::info!(
            version,
            content = %self.shared.active().1,
            rules = timings.rules,
            disabled = timings.disabled,
            sample_events = timings.sample_events,
            verify_ms = timings.verify.as_millis() as u64,
            compile_ms = timings.compile.as_millis() as u64,
            probation_ms = (timings.sample_probation + timings.shadow).as_millis() as u64,
            total_ms = timings.total.as_millis() as u64,
            "content active"
        );
    }

    /// Probation refused `version`: mark it bad, stay on the current content.
    fn refuse(&mut self, version: u64, why: &str) {
        if let Err(e) = self.store.roll_back() {
            tracing::warn!(error = %e, "clearing the activation marker");
        }
        self.report(format!(
            "content version {version} refused: {why}; keeping {}",
            self.shared.active().1
        ));
    }
}

/// The test-only fault switch: compiled in only with the `fault-injection` feature.
#[cfg(feature = "fault-injection")]
fn fault_injection(bundle: &Bundle) {
    if bundle
        .metadata()
        .any(|(k, v)| k == crate::content::FAULT_METADATA_KEY && v == "panic-on-load")
    {
        panic!(
            "test fault: content version {} asked to panic on load",
            bundle.content_version()
        );
    }
}

#[cfg(not(feature = "fault-injection"))]
fn fault_injection(_bundle: &Bundle) {}
