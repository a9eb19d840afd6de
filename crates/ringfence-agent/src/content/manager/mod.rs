//! The content manager thread and its pipeline side.
//!
//! [`ContentManager::start`] loads the active bundle from the store (verifying it again: the
//! store is not trusted more than the network), then polls the content directory on its own
//! thread. [`ContentDetector`] is the pipeline's half: a [`crate::Detector`] holding an
//! `Arc` of the active content, which it replaces between two events when the manager
//! publishes a new generation (double buffer: the old content finishes the event it is on, the
//! new one starts with the next; no event is skipped or seen twice). It also keeps the ring
//! buffer of recent events probation replays, runs the candidate in shadow, and emits the
//! manager's health reports as `sensor-health` events.
//!
//! A panic while the manager loads content ends the worker process (exit 101) on purpose:
//! the "activating N" marker is already on disk, so the supervisor counts the death against
//! N and rolls back after K of them.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use ringfence_content::{ContentStore, Limits, SeenVersions, TrustedRoot};
use ringfence_event::{Event, SourceKind};
use ringfence_sensor::StopSignal;

use super::compiled::{CompiledContent, SharedContent};
use super::config::ContentSection;
use super::engine::{ContentEngine, agent_schema};
use super::probation::{Budgets, Probation};

mod watcher;

use watcher::Watcher;

/// Largest `root.json` read.
const MAX_ROOT_BYTES: u64 = 1024 * 1024;

/// What the manager needs.
#[derive(Debug)]
pub struct ManagerOptions {
    /// The watched directory.
    pub dir: PathBuf,
    /// The store directory.
    pub state_dir: PathBuf,
    pub section: ContentSection,
    pub engine: ContentEngine,
    pub limits: Limits,
    /// Reports to emit once at start (e.g. the supervisor's rollback).
    pub startup_reports: Vec<String>,
    /// Content to run while no bundle is active (the built-in pack).
    pub fallback: Option<SharedContent>,
    /// Event kinds the sensor has no hook for: a bundle activated with rules only on them
    /// says how many can never fire (see [`CompiledContent::unhooked_rules`]).
    pub unhooked: Vec<ringfence_detect::hooked::Unhooked>,
}

impl ManagerOptions {
    /// Options from the `[content]` section; `None` without a content directory.
    pub fn from_section(section: &ContentSection, engine: ContentEngine) -> Option<ManagerOptions> {
        Some(ManagerOptions {
            dir: section.dir.clone()?,
            state_dir: section.state_dir()?,
            section: section.clone(),
            engine,
            limits: Limits::default(),
            startup_reports: Vec::new(),
            fallback: None,
            unhooked: Vec::new(),
        })
    }
}

/// Why the manager could not start (the agent then runs without content, and says so).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    #[error("content store: {0}")]
    Store(#[from] ringfence_content::StoreError),
    #[error("trusted root {path}: {detail}")]
    Root { path: PathBuf, detail: String },
    #[error(
        "no trusted root: set content.root (or --root) to a root.json, or keep one in {0}/root.json"
    )]
    NoRoot(PathBuf),
    #[error("cannot start the content manager thread: {0}")]
    Thread(std::io::Error),
}

/// Compiled content with the rules probation disabled.
pub struct Loaded {
    pub version: u64,
    pub content: Arc<dyn CompiledContent>,
    pub disabled: Vec<bool>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("version", &self.version)
            .field("rules", &self.content.rules().len())
            .finish_non_exhaustive()
    }
}

/// New content running in shadow: evaluated on live events, findings discarded.
struct ShadowRun {
    content: Arc<dyn CompiledContent>,
    probation: Arc<Mutex<Probation>>,
    budgets: Budgets,
}

#[derive(Default)]
struct Slot {
    active: Option<Arc<Loaded>>,
    shadow: Option<Arc<ShadowRun>>,
}

/// Timings of the last activation, for reports and `bench content`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActivationTimings {
    pub version: u64,
    pub rules: usize,
    pub disabled: usize,
    pub sample_events: usize,
    /// Signature checks, payload decode and validation.
    pub verify: Duration,
    pub compile: Duration,
    pub sample_probation: Duration,
    pub shadow: Duration,
    /// From the file being seen in the directory to the swap.
    pub total: Duration,
}

struct Shared {
    generation: AtomicU64,
    slot: Mutex<Slot>,
    sample: Mutex<VecDeque<Event>>,
    sample_capacity: usize,
    pending_health: AtomicBool,
    health: Mutex<Vec<String>>,
    last_activation: Mutex<Option<ActivationTimings>>,
    /// The built-in pack, running while no bundle is active.
    fallback: Option<Arc<dyn CompiledContent>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn report(&self, message: String) {
        lock(&self.health).push(message);
        self.pending_health.store(true, Ordering::Release);
    }

    fn publish(&self, f: impl FnOnce(&mut Slot)) {
        f(&mut lock(&self.slot));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The rules running now (a bundle's enabled rules, else the built-in pack's) and what
    /// they are: "bundle v9, 12 rules", "the built-in pack, 31 rules".
    fn active(&self) -> (usize, String) {
        let slot = lock(&self.slot);
        match (&slot.active, &self.fallback) {
            (Some(a), _) => {
                let rules = a.disabled.iter().filter(|d| !**d).count();
                (
                    rules,
                    describe(&format!("bundle v{}", a.version), rules, &*a.content),
                )
            }
            (None, Some(f)) => (
                f.rules().len(),
                describe("the built-in pack", f.rules().len(), &**f),
            ),
            (None, None) => (0, "no content: nothing is detected".to_owned()),
        }
    }
}

/// "bundle v9, 12 rules" (and ", 40 IOCs" when it has indicators).
fn describe(what: &str, rules: usize, content: &dyn CompiledContent) -> String {
    let plural = if rules == 1 { "" } else { "s" };
    match content.indicators() {
        0 => format!("{what}, {rules} rule{plural}"),
        n => format!("{what}, {rules} rule{plural}, {n} IOCs"),
    }
}

/// The share of the active rules a new bundle may drop without saying so in its signed
/// metadata ([`ringfence_content::ALLOW_RULE_DROP`]): it must keep at least half of them.
pub const MAX_RULE_DROP_PERCENT: usize = 50;

/// Whether going from `active` rules to `new` drops more than [`MAX_RULE_DROP_PERCENT`].
pub fn drops_too_many(active: usize, new: usize) -> bool {
    let dropped = active.saturating_sub(new);
    dropped.saturating_mul(100) > active.saturating_mul(MAX_RULE_DROP_PERCENT)
}

/// The pipeline's half of the manager. Add it with [`crate::Agent::with_detector`].
pub struct ContentDetector {
    shared: Arc<Shared>,
    generation: u64,
    active: Option<Arc<Loaded>>,
    shadow: Option<Arc<ShadowRun>>,
    /// Runs while no bundle is active (the built-in pack).
    fallback: Option<Arc<dyn CompiledContent>>,
}

impl ContentDetector {
    /// The content version this detector runs now.
    pub fn active_version(&self) -> Option<u64> {
        self.active.as_ref().map(|a| a.version)
    }

    fn refresh(&mut self) {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation != self.generation {
            let slot = lock(&self.shared.slot);
            self.active = slot.active.clone();
            self.shadow = slot.shadow.clone();
            self.generation = generation;
        }
    }
}

impl crate::Detector for ContentDetector {
    fn name(&self) -> &str {
        "content"
    }

    fn on_event(&mut self, event: &Event, emit: &mut dyn FnMut(serde_json::Value)) {
        // The swap point: between two events.
        self.refresh();
        if self.shared.pending_health.swap(false, Ordering::AcqRel) {
            for message in lock(&self.shared.health).drain(..) {
                emit(health_event(&message));
            }
        }
        if let Some(active) = &self.active {
            active.content.evaluate_all(event, &active.disabled, emit);
        } else if let Some(fallback) = &self.fallback {
            fallback.evaluate_all(event, &[], emit);
        }
        if let Some(shadow) = &self.shadow {
            lock(&shadow.probation).run_event(&*shadow.content, event, &shadow.budgets);
        }
        if self.shared.sample_capacity > 0
            && let Ok(mut sample) = self.shared.sample.try_lock()
        {
            if sample.len() >= self.shared.sample_capacity {
                sample.pop_front();
            }
            sample.push_back(event.clone());
        }
    }
}

/// A `sensor-health` event (source `agent`) carrying `message`, as ECS JSON.
pub fn health_event(message: &str) -> serde_json::Value {
    Event::health_notice(SourceKind::Agent, message.to_owned()).to_ecs()
}

/// The manager thread's handle.
pub struct ContentManager {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl ContentManager {
    /// Opens the store, loads the active bundle (if any) and starts watching `opts.dir`.
    pub fn start(
        opts: ManagerOptions,
        stop: StopSignal,
    ) -> Result<(ContentManager, ContentDetector), ManagerError> {
        let fallback = opts.fallback.as_ref().map(|f| Arc::clone(&f.0));
        let store = ContentStore::open(&opts.state_dir)?;
        let (root, seen) = match store.load_trust()? {
            Some(trust) => trust,
            None => (
                configured_root(opts.section.root.as_deref(), &opts.state_dir)?,
                SeenVersions::default(),
            ),
        };
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            slot: Mutex::new(Slot::default()),
            sample: Mutex::new(VecDeque::new()),
            sample_capacity: opts.section.sample_events,
            pending_health: AtomicBool::new(false),
            health: Mutex::new(Vec::new()),
            last_activation: Mutex::new(None),
            fallback: fallback.clone(),
        });
        for r in &opts.startup_reports {
            tracing::error!("{r}");
            shared.report(r.clone());
        }
        let mut watcher = Watcher {
            store,
            root,
            seen,
            active: None,
            processed: HashMap::new(),
            candidates: BTreeMap::new(),
            pending_confirm: None,
            shared: Arc::clone(&shared),
            opts,
        };
        watcher.load_active();
        let mut detector = ContentDetector {
            shared: Arc::clone(&shared),
            generation: u64::MAX,
            active: None,
            shadow: None,
            fallback,
        };
        detector.refresh();
        let handle = std::thread::Builder::new()
            .name("rf-content".into())
            .spawn(move || {
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    watcher.run(&stop);
                }));
                if run.is_err() {
                    tracing::error!(
                        "the content manager panicked while handling content; exiting so the \
                         supervisor restarts the worker (and rolls back after repeated deaths)"
                    );
                    std::process::exit(101);
                }
            })
            .map_err(ManagerError::Thread)?;
        Ok((
            ContentManager {
                shared,
                handle: Some(handle),
            },
            detector,
        ))
    }

    /// The content version published to the pipeline now.
    pub fn active_version(&self) -> Option<u64> {
        lock(&self.shared.slot).active.as_ref().map(|a| a.version)
    }

    /// A handle that reads the active content from any thread (the exec guard takes its deny
    /// list from it).
    pub fn active_reader(
        &self,
    ) -> impl Fn() -> Option<(u64, Arc<dyn CompiledContent>)> + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || {
            lock(&shared.slot)
                .active
                .as_ref()
                .map(|a| (a.version, Arc::clone(&a.content)))
        }
    }

    /// What runs now, from any thread: "bundle v9, 12 rules", "the built-in pack, 31 rules"
    /// (for `doctor` and check-ins).
    pub fn content_reader(&self) -> impl Fn() -> String + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || shared.active().1
    }

    /// A handle that reads the active version from any thread (the fleet link reports it).
    pub fn version_reader(&self) -> impl Fn() -> Option<u64> + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || lock(&shared.slot).active.as_ref().map(|a| a.version)
    }

    /// Timings of the last activation.
    pub fn last_activation(&self) -> Option<ActivationTimings> {
        *lock(&self.shared.last_activation)
    }

    /// Waits for the thread (after the stop signal was raised).
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The root content is checked against now: the store's (rotated) root once a bundle was
/// accepted, else the configured `content.root`.
pub fn current_root(section: &ContentSection) -> Result<TrustedRoot, ManagerError> {
    let state_dir = section.state_dir();
    if let Some(dir) = &state_dir
        && let Some((root, _)) = ContentStore::open(dir)?.load_trust()?
    {
        return Ok(root);
    }
    configured_root(section.root.as_deref(), &state_dir.unwrap_or_default())
}

/// The out-of-band `content.root`: a `root.json`, or a keys directory holding one.
fn configured_root(root: Option<&Path>, state_dir: &Path) -> Result<TrustedRoot, ManagerError> {
    let Some(path) = root else {
        return Err(ManagerError::NoRoot(state_dir.to_owned()));
    };
    let path = if path.is_dir() {
        path.join("root.json")
    } else {
        path.to_owned()
    };
    let bytes = read_small(&path, MAX_ROOT_BYTES).map_err(|detail| ManagerError::Root {
        path: path.clone(),
        detail,
    })?;
    TrustedRoot::from_bytes(&bytes).map_err(|e| ManagerError::Root {
        path,
        detail: e.to_string(),
    })
}

/// Reads at most `limit` bytes of `path`; a longer file is refused, not truncated.
pub fn read_small(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Detector;
    use crate::content::engine::default_engine;
    use ringfence_content::{ALLOW_EMPTY, ALLOW_RULE_DROP, Bundle, UnixTime};
    use ringfence_content::{
        BuildOptions, KeySet, KeysInitOptions, build_signed_bundle, init_keys,
    };
    use ringfence_event::{EventKind, Timestamp};
    use std::time::Instant;

    /// A small real Sigma rule; `NAME` is replaced.
    const RULE: &str = "title: NAME\nid: rule-NAME\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    Image|endswith: /NAME\n  condition: sel\nlevel: low\n";

    struct Fixture {
        tmp: tempfile::TempDir,
        keys: KeySet,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let keys = init_keys(
                &tmp.path().join("keys"),
                &KeysInitOptions::new(UnixTime::now()),
            )
            .unwrap();
            std::fs::create_dir_all(tmp.path().join("drop")).unwrap();
            let rules = tmp.path().join("rules/rules");
            std::fs::create_dir_all(&rules).unwrap();
            std::fs::write(rules.join("a.yml"), RULE.replace("NAME", "a")).unwrap();
            std::fs::write(rules.join("b.yml"), RULE.replace("NAME", "b")).unwrap();
            Fixture { tmp, keys }
        }

        fn bundle(&self, version: u64) -> Vec<u8> {
            self.bundle_with(version, &[])
        }

        /// A bundle of the two rules with extra signed metadata.
        fn bundle_with(&self, version: u64, metadata: &[(&str, &str)]) -> Vec<u8> {
            let mut opts = BuildOptions::new(version, agent_schema(), UnixTime::now());
            for (k, v) in metadata {
                opts.metadata.insert((*k).to_owned(), (*v).to_owned());
            }
            let built = build_signed_bundle(
                &self.tmp.path().join("rules"),
                &opts,
                &self.keys,
                &ringfence_content::StructuralValidator,
            )
            .unwrap();
            built.signed.encode()
        }

        fn drop_file(&self, name: &str, bytes: &[u8]) {
            let tmp = self.tmp.path().join(format!(".{name}.tmp"));
            std::fs::write(&tmp, bytes).unwrap();
            std::fs::rename(&tmp, self.tmp.path().join("drop").join(name)).unwrap();
        }

        fn start(&self) -> (ContentManager, ContentDetector, StopSignal) {
            self.start_pinned(crate::content::Pin::Latest)
        }

        /// A manager that runs the built-in pack until a bundle is active, as the agent does.
        fn start_with_builtin(&self) -> (ContentManager, ContentDetector, StopSignal) {
            let section = ContentSection {
                dir: Some(self.tmp.path().join("drop")),
                root: Some(self.tmp.path().join("keys")),
                poll_ms: 10,
                shadow_secs: 0,
                confirm_secs: 0,
                ..ContentSection::default()
            };
            let mut opts = ManagerOptions::from_section(&section, default_engine()).unwrap();
            let builtin = crate::content::sigma::builtin(ringfence_event::Mode::Ebpf).unwrap();
            opts.fallback = Some(SharedContent(builtin));
            let stop = StopSignal::new();
            let (m, d) = ContentManager::start(opts, stop.clone()).unwrap();
            (m, d, stop)
        }

        fn start_pinned(
            &self,
            pin: crate::content::Pin,
        ) -> (ContentManager, ContentDetector, StopSignal) {
            let section = ContentSection {
                dir: Some(self.tmp.path().join("drop")),
                root: Some(self.tmp.path().join("keys")),
                poll_ms: 10,
                shadow_secs: 0,
                confirm_secs: 0,
                pin,
                ..ContentSection::default()
            };
            let opts = ManagerOptions::from_section(&section, default_engine()).unwrap();
            let stop = StopSignal::new();
            let (m, d) = ContentManager::start(opts, stop.clone()).unwrap();
            (m, d, stop)
        }
    }

    fn event() -> Event {
        Event::new(EventKind::ProcessExec, SourceKind::Replay, Timestamp::now())
    }

    #[test]
    fn an_activated_bundle_with_rules_the_sensor_cannot_hook_says_so_once() {
        let f = Fixture::new();
        let bpf = "title: bpf\nid: rule-bpf\nlogsource:\n  product: linux\n  category: bpf_load\n\
                   detection:\n  sel:\n    event.action: bpf-load\n  condition: sel\nlevel: low\n";
        std::fs::write(f.tmp.path().join("rules/rules/bpf.yml"), bpf).unwrap();
        let section = ContentSection {
            dir: Some(f.tmp.path().join("drop")),
            root: Some(f.tmp.path().join("keys")),
            poll_ms: 10,
            shadow_secs: 0,
            confirm_secs: 0,
            ..ContentSection::default()
        };
        let mut opts = ManagerOptions::from_section(&section, default_engine()).unwrap();
        opts.unhooked = vec![ringfence_detect::hooked::Unhooked {
            kind: EventKind::BpfLoad,
            remedy: "[sensor] profile = \"deep\"".into(),
        }];
        let stop = StopSignal::new();
        let (m, mut d) = ContentManager::start(opts, stop.clone()).unwrap();
        f.drop_file("v1.bundle", &f.bundle(1));
        let health = pump(&mut d, |d| d.active_version() == Some(1));
        let about: Vec<&String> = health.iter().filter(|h| h.contains("never fire")).collect();
        assert_eq!(
            about,
            [
                "content version 1: 1 rule can never fire, the eBPF sensor has no hook for \
                 their event kinds ([sensor] profile = \"deep\" would hook bpf-load): rule-bpf"
            ],
            "{health:?}"
        );
        stop.stop();
        m.join();
    }

    /// Feeds events until `done` or a timeout; returns the health messages emitted.
    fn pump(
        d: &mut ContentDetector,
        mut done: impl FnMut(&ContentDetector) -> bool,
    ) -> Vec<String> {
        let mut health = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(d) {
            assert!(
                Instant::now() < deadline,
                "timed out; health so far: {health:?}"
            );
            d.on_event(&event(), &mut |v| {
                if let Some(m) = v.pointer("/message").and_then(|m| m.as_str()) {
                    health.push(m.to_owned());
                }
            });
            std::thread::sleep(Duration::from_millis(5));
        }
        health
    }

    #[test]
    fn a_new_bundle_becomes_active_and_malformed_ones_leave_it_running() {
        let f = Fixture::new();
        let (m, mut d, stop) = f.start();
        assert_eq!(d.active_version(), None);
        f.drop_file("v1.bundle", &f.bundle(1));
        pump(&mut d, |d| d.active_version() == Some(1));
        let timings = m.last_activation().unwrap();
        assert_eq!((timings.version, timings.rules), (1, 2));
        assert!(timings.sample_events > 0);

        // Truncated, then a flipped byte (bad signature or hash): refused, v1 stays.
        let v2 = f.bundle(2);
        f.drop_file("v2-truncated.bundle", &v2[..v2.len() / 2]);
        let mut flipped = v2.clone();
        let mid = flipped.len() - 10;
        flipped[mid] ^= 0x01;
        f.drop_file("v2-flipped.bundle", &flipped);
        fn refused(h: &[String]) -> usize {
            h.iter().filter(|m| m.contains("refused")).count()
        }
        let mut all = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while refused(&all) < 2 && Instant::now() < deadline {
            d.on_event(&event(), &mut |v| {
                if let Some(msg) = v.pointer("/message").and_then(|m| m.as_str()) {
                    all.push(msg.to_owned());
                }
            });
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(refused(&all), 2, "{all:?}");
        assert!(
            all.iter().any(|m| m.contains("v2-truncated.bundle")),
            "{all:?}"
        );
        assert!(
            all.iter().all(|m| m.contains("keeping bundle v1, 2 rules")),
            "{all:?}"
        );
        assert_eq!(d.active_version(), Some(1));

        // The same version again is a no-op; a good v2 then becomes active, v1 last-known-good.
        f.drop_file("v1-again.bundle", &f.bundle(1));
        f.drop_file("v2.bundle", &v2);
        pump(&mut d, |d| d.active_version() == Some(2));
        stop.stop();
        m.join();
        let state = ContentStore::open(&f.tmp.path().join("drop/.state"))
            .unwrap()
            .state()
            .unwrap();
        assert_eq!((state.active, state.previous), (Some(2), Some(1)));
    }

    /// One rule that reports, for every event, which content version saw it.
    struct Tagged {
        version: u64,
        rules: Vec<crate::content::RuleInfo>,
    }

    impl CompiledContent for Tagged {
        fn rules(&self) -> &[crate::content::RuleInfo] {
            &self.rules
        }
        fn evaluate_rule(&self, _: usize, _: &Event, emit: &mut dyn FnMut(serde_json::Value)) {
            emit(serde_json::json!({ "content_version": self.version }));
        }
    }

    fn tagged(
        bundle: &Bundle,
        _: ringfence_event::Mode,
    ) -> Result<Box<dyn CompiledContent>, Vec<ringfence_content::ValidationError>> {
        Ok(Box::new(Tagged {
            version: bundle.content_version(),
            rules: vec![crate::content::RuleInfo {
                id: "tag".into(),
                file: "rules/a.yml".into(),
            }],
        }))
    }

    #[test]
    fn the_swap_happens_between_events_with_no_gap_and_no_overlap() {
        let f = Fixture::new();
        let section = ContentSection {
            dir: Some(f.tmp.path().join("drop")),
            root: Some(f.tmp.path().join("keys")),
            poll_ms: 5,
            shadow_secs: 1,
            confirm_secs: 0,
            ..ContentSection::default()
        };
        let mut engine = default_engine();
        engine.compile = tagged;
        let opts = ManagerOptions::from_section(&section, engine).unwrap();
        let stop = StopSignal::new();
        let (m, mut d) = ContentManager::start(opts, stop.clone()).unwrap();
        f.drop_file("v1.bundle", &f.bundle(1));
        pump(&mut d, |d| d.active_version() == Some(1));
        f.drop_file("v2.bundle", &f.bundle(2));
        // Every event is seen by exactly one content version, and versions never go back.
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while d.active_version() != Some(2) || seen.last() != Some(&2) {
            assert!(Instant::now() < deadline, "v2 never became active");
            let mut versions = Vec::new();
            d.on_event(&event(), &mut |v| {
                if let Some(n) = v["content_version"].as_u64() {
                    versions.push(n);
                }
            });
            assert_eq!(versions.len(), 1, "{versions:?}");
            seen.push(versions[0]);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert_eq!(seen.first(), Some(&1));
        stop.stop();
        m.join();
    }

    /// Rule `fast` reports every event; rule `slow` spins 3 ms per event.
    struct OneSlow {
        rules: Vec<crate::content::RuleInfo>,
    }

    impl CompiledContent for OneSlow {
        fn rules(&self) -> &[crate::content::RuleInfo] {
            &self.rules
        }
        fn evaluate_rule(&self, rule: usize, _: &Event, emit: &mut dyn FnMut(serde_json::Value)) {
            if rule == 0 {
                emit(serde_json::json!({ "rule": "fast" }));
            } else {
                crate::content::probation::CpuClock::spin(Duration::from_millis(3));
                emit(serde_json::json!({ "rule": "slow" }));
            }
        }
    }

    fn one_slow(
        _: &Bundle,
        _: ringfence_event::Mode,
    ) -> Result<Box<dyn CompiledContent>, Vec<ringfence_content::ValidationError>> {
        let rule = |id: &str| crate::content::RuleInfo {
            id: id.into(),
            file: format!("rules/{id}.yml"),
        };
        Ok(Box::new(OneSlow {
            rules: vec![rule("fast"), rule("slow")],
        }))
    }

    #[test]
    fn a_rule_over_its_cpu_budget_is_disabled_and_reported_and_the_content_still_activates() {
        let f = Fixture::new();
        let section = ContentSection {
            dir: Some(f.tmp.path().join("drop")),
            root: Some(f.tmp.path().join("keys")),
            poll_ms: 5,
            shadow_secs: 0,
            confirm_secs: 0,
            rule_cpu_budget_us: 1000,
            ..ContentSection::default()
        };
        let mut engine = default_engine();
        engine.compile = one_slow;
        let opts = ManagerOptions::from_section(&section, engine).unwrap();
        let stop = StopSignal::new();
        let (m, mut d) = ContentManager::start(opts, stop.clone()).unwrap();
        for _ in 0..8 {
            d.on_event(&event(), &mut |_| {});
        }
        f.drop_file("v1.bundle", &f.bundle(1));
        let mut health = pump(&mut d, |d| d.active_version() == Some(1));
        let mut findings = Vec::new();
        d.on_event(&event(), &mut |v| match v["rule"].as_str() {
            Some(r) => findings.push(r.to_owned()),
            None => health.extend(v["message"].as_str().map(str::to_owned)),
        });
        assert_eq!(findings, ["fast"]);
        assert!(
            health
                .iter()
                .any(|h| h.contains("rule slow disabled in probation: mean")),
            "{health:?}"
        );
        assert_eq!(m.last_activation().unwrap().disabled, 1);
        stop.stop();
        m.join();
    }

    /// Feeds events until a health message contains `needle`; returns all messages seen.
    fn pump_until(d: &mut ContentDetector, needle: &str) -> Vec<String> {
        let mut all = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !all.iter().any(|m: &String| m.contains(needle)) {
            assert!(Instant::now() < deadline, "no {needle:?} in {all:?}");
            d.on_event(&event(), &mut |v| {
                if let Some(m) = v.pointer("/message").and_then(|m| m.as_str()) {
                    all.push(m.to_owned());
                }
            });
            std::thread::sleep(Duration::from_millis(5));
        }
        all
    }

    #[test]
    fn an_empty_bundle_is_refused_and_the_built_in_pack_named_as_what_stays_active() {
        let f = Fixture::new();
        let (m, mut d, stop) = f.start_with_builtin();
        let builtin = crate::content::sigma::builtin(ringfence_event::Mode::Ebpf)
            .unwrap()
            .rules()
            .len();
        assert_eq!(
            m.content_reader()(),
            format!("the built-in pack, {builtin} rules")
        );
        // Signed by trusted keys but empty (as a builder without the build-time check would
        // sign it).
        let b = ringfence_content::BundleBuilder::new(9, agent_schema(), Limits::default());
        let signed = ringfence_content::sign_bundle(
            &b.build().unwrap(),
            &f.keys,
            &ringfence_content::SignOptions::new(9, UnixTime::now()),
        )
        .unwrap();
        f.drop_file("v9.bundle", &signed.encode());
        let health = pump_until(&mut d, "v9.bundle refused");
        let msg = health.iter().find(|m| m.contains("v9.bundle")).unwrap();
        assert!(msg.contains("detects nothing: 0 rules and 0 IOCs"), "{msg}");
        assert!(
            msg.ends_with(&format!("keeping the built-in pack, {builtin} rules")),
            "{msg}"
        );
        assert!(!msg.contains("version none"), "{msg}");
        assert_eq!(d.active_version(), None);

        // Signed as empty on purpose: it replaces the built-in pack (a drop it implies).
        let mut b = ringfence_content::BundleBuilder::new(10, agent_schema(), Limits::default());
        b.metadata(ALLOW_EMPTY, "retire all content on this ring")
            .unwrap();
        let signed = ringfence_content::sign_bundle(
            &b.build().unwrap(),
            &f.keys,
            &ringfence_content::SignOptions::new(10, UnixTime::now()),
        )
        .unwrap();
        f.drop_file("v10.bundle", &signed.encode());
        pump(&mut d, |d| d.active_version() == Some(10));
        assert_eq!(m.content_reader()(), "bundle v10, 0 rules");
        stop.stop();
        m.join();
    }

    #[test]
    fn a_bundle_dropping_most_active_rules_is_refused_unless_its_metadata_says_so() {
        let f = Fixture::new();
        let (m, mut d, stop) = f.start_with_builtin();
        let builtin = crate::content::sigma::builtin(ringfence_event::Mode::Ebpf)
            .unwrap()
            .rules()
            .len();
        // Two rules against the built-in pack's thirty-odd.
        f.drop_file("v1.bundle", &f.bundle(1));
        let health = pump_until(&mut d, "content version 1 refused");
        let msg = health
            .iter()
            .find(|m| m.contains("content version 1 refused"))
            .unwrap();
        assert!(
            msg.contains(&format!(
                "it has 2 rule(s) against {builtin} running now (the built-in pack, {builtin} \
                 rules): more than 50% would be dropped"
            )),
            "{msg}"
        );
        assert!(msg.contains("--allow-rule-drop REASON"), "{msg}");
        assert_eq!(d.active_version(), None);

        // The same rules, signed as an intended drop: active.
        f.drop_file(
            "v2.bundle",
            &f.bundle_with(
                2,
                &[(ALLOW_RULE_DROP, "test pack replaces the built-in pack")],
            ),
        );
        pump(&mut d, |d| d.active_version() == Some(2));
        assert_eq!(m.content_reader()(), "bundle v2, 2 rules");
        stop.stop();
        m.join();
    }

    #[test]
    fn the_rule_drop_threshold_is_more_than_half() {
        assert!(!drops_too_many(0, 0));
        assert!(!drops_too_many(30, 15));
        assert!(drops_too_many(30, 14));
        assert!(drops_too_many(1, 0));
        assert!(!drops_too_many(2, 40));
    }

    #[test]
    fn pin_n_minus_1_runs_one_behind_the_newest_verified_bundle() {
        let f = Fixture::new();
        let (m, mut d, stop) = f.start_pinned(crate::content::Pin::Previous);
        f.drop_file("v1.bundle", &f.bundle(1));
        f.drop_file("v2.bundle", &f.bundle(2));
        pump(&mut d, |d| d.active_version() == Some(1));
        f.drop_file("v3.bundle", &f.bundle(3));
        pump(&mut d, |d| d.active_version() == Some(2));
        stop.stop();
        m.join();
    }

    #[test]
    fn a_restarted_manager_loads_the_stored_active_content_before_any_event() {
        let f = Fixture::new();
        let (m, mut d, stop) = f.start();
        f.drop_file("v1.bundle", &f.bundle(1));
        pump(&mut d, |d| d.active_version() == Some(1));
        stop.stop();
        m.join();
        let (m, d, stop) = f.start();
        assert_eq!(d.active_version(), Some(1));
        assert_eq!(m.active_version(), Some(1));
        stop.stop();
        m.join();
    }
}
