//! YARA scanning of files as they are written (close-write) and executed, on a thread of its
//! own, and on demand (`ringfence scan`, a console's scan order).
//!
//! The pipeline offers the path of every written file and every executable it sees
//! ([`ScanQueue::offer`]); the offer never waits: when the bounded queue is full the file is
//! skipped and counted. The scanner thread runs in the idle scheduling class, reads each file
//! whole up to a size cap (never through a memory map: a file truncated while mapped would
//! raise SIGBUS), and gives yara-x a per-file time budget. A file already scanned unchanged
//! (same device, inode, size and mtime, same rules) is not scanned again, so an exec storm of
//! one binary costs one scan. A match is a finding (`rule.id: yara:<rule>`, the level from
//! the rule's meta, the file's path and sha256, the process), handed to the pipeline over a
//! bounded channel like posture findings.
//!
//! The rules are the active content's ([`crate::content::CompiledContent::yara`]), read
//! through a [`RulesReader`] at each file, so a new bundle's rules apply from the next file.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use ringfence_content::yara::{ScanFailure, YaraMatch, YaraRules};
use ringfence_event::Timestamp;
use ringfence_sensor::StopSignal;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

/// The `rule.ruleset` of every YARA finding.
pub const RULESET: &str = "ringfence-yara";
/// Files already scanned unchanged that are remembered (then forgotten all at once).
const SEEN_CAPACITY: usize = 16_384;

/// `[scan]` in the agent's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanSection {
    /// Scan written and executed files with the content's YARA rules.
    pub enabled: bool,
    /// Scan files when a process closes them after writing.
    pub on_write: bool,
    /// Scan executables when they are run.
    pub on_exec: bool,
    /// Files larger than this are skipped (and counted), in bytes.
    pub max_file_bytes: u64,
    /// Time budget of one file, in seconds (yara-x checks it about once a second).
    pub timeout_secs: u64,
    /// Files waiting to be scanned; beyond it they are skipped and counted.
    pub queue_capacity: usize,
    /// Paths (prefixes) never scanned: pseudo-filesystems and the agent's own content, whose
    /// rule texts hold the strings the rules look for.
    pub skip_paths: Vec<PathBuf>,
}

impl Default for ScanSection {
    fn default() -> Self {
        ScanSection {
            enabled: true,
            on_write: true,
            on_exec: true,
            max_file_bytes: 32 * 1024 * 1024,
            timeout_secs: 5,
            queue_capacity: 1024,
            skip_paths: [
                "/proc",
                "/sys",
                "/dev",
                "/run/ringfence",
                "/var/lib/ringfence",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
        }
    }
}

impl ScanSection {
    /// Values out of range, as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(1..=1024 * 1024 * 1024).contains(&self.max_file_bytes) {
            out.push((
                "max_file_bytes",
                format!("must be 1..=1073741824, got {}", self.max_file_bytes),
            ));
        }
        if !(1..=600).contains(&self.timeout_secs) {
            out.push((
                "timeout_secs",
                format!("must be 1..=600, got {}", self.timeout_secs),
            ));
        }
        if !(1..=1_000_000).contains(&self.queue_capacity) {
            out.push((
                "queue_capacity",
                format!("must be 1..=1000000, got {}", self.queue_capacity),
            ));
        }
        out
    }

    fn skipped(&self, path: &Path) -> bool {
        self.skip_paths.iter().any(|p| path.starts_with(p))
    }
}

/// What made a file be scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Write,
    Exec,
    /// A console's scan order or a command.
    Order,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Write => "write",
            Trigger::Exec => "exec",
            Trigger::Order => "order",
        }
    }
}

/// The process behind a write or an exec, for the finding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessRef {
    pub pid: u32,
    pub executable: Option<String>,
    pub name: Option<String>,
}

/// Counts of one scan order or one `ringfence scan` run (saturating).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanCounts {
    pub files: u64,
    pub bytes: u64,
    pub matches: u64,
    /// Files not scanned: too large, unreadable, not regular, past the time budget.
    pub skipped: u64,
    pub timeouts: u64,
}

enum Job {
    File {
        path: PathBuf,
        trigger: Trigger,
        process: Option<ProcessRef>,
    },
    /// Scan a tree (a console order); the counts go back on `reply`.
    Tree {
        root: PathBuf,
        max_files: u64,
        reply: Sender<ScanCounts>,
    },
}

/// Counters of the scanner, shared with the pipeline's stats.
#[derive(Debug, Default)]
pub struct ScanStats {
    pub scanned: AtomicU64,
    pub matches: AtomicU64,
    /// Offers dropped because the queue was full.
    pub skipped_queue_full: AtomicU64,
    pub skipped_too_large: AtomicU64,
    pub skipped_unreadable: AtomicU64,
    pub skipped_timeout: AtomicU64,
    /// Files seen unchanged since their last scan.
    pub skipped_unchanged: AtomicU64,
    /// Findings the pipeline could not take in time.
    pub findings_dropped: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Where the pipeline offers files. Never blocks.
pub struct ScanQueue {
    tx: Sender<Job>,
    section: ScanSection,
    pub stats: Arc<ScanStats>,
}

impl std::fmt::Debug for ScanQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanQueue").finish_non_exhaustive()
    }
}

impl ScanQueue {
    /// Offer one file; false when it was not queued (skipped by path, or the queue is full:
    /// counted).
    pub fn offer(&self, path: &str, trigger: Trigger, process: Option<ProcessRef>) -> bool {
        self.offer_with(path, trigger, || process)
    }

    /// [`ScanQueue::offer`] for the pipeline, once per write and exec event: the job (its path
    /// and the process's strings) is built only for a file that is wanted and has room, not for
    /// every event skipped by path or dropped on a full queue.
    pub fn offer_with(
        &self,
        path: &str,
        trigger: Trigger,
        process: impl FnOnce() -> Option<ProcessRef>,
    ) -> bool {
        let wanted = match trigger {
            Trigger::Write => self.section.on_write,
            Trigger::Exec => self.section.on_exec,
            Trigger::Order => true,
        };
        let p = Path::new(path);
        if !wanted || !p.is_absolute() || self.section.skipped(p) {
            return false;
        }
        if self.tx.is_full() {
            bump(&self.stats.skipped_queue_full);
            return false;
        }
        let job = Job::File {
            path: p.to_owned(),
            trigger,
            process: process(),
        };
        match self.tx.try_send(job) {
            Ok(()) => true,
            Err(_) => {
                bump(&self.stats.skipped_queue_full);
                false
            }
        }
    }

    /// Order a scan of the tree at `root` (at most `max_files` files); the counts come on the
    /// returned channel when it is done. `None` when the queue is full.
    pub fn order(&self, root: &Path, max_files: u64) -> Option<Receiver<ScanCounts>> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        let job = Job::Tree {
            root: root.to_owned(),
            max_files,
            reply,
        };
        self.tx.try_send(job).ok().map(|()| rx)
    }
}

/// Reads the rules to scan with now; `None` when the content has none.
pub type RulesReader = Box<dyn Fn() -> Option<Arc<YaraRules>> + Send + Sync + 'static>;

/// The running scanner, as the pipeline sees it.
pub struct Running {
    pub findings: Receiver<Json>,
    pub queue: Arc<ScanQueue>,
    pub handle: std::thread::JoinHandle<()>,
}

/// Start the scanner thread.
pub fn spawn(
    section: ScanSection,
    rules: RulesReader,
    host: Option<String>,
    stop: StopSignal,
) -> std::io::Result<Running> {
    let (tx, rx) = crossbeam_channel::bounded(section.queue_capacity.max(1));
    let (ftx, frx) = crossbeam_channel::bounded(1024);
    let stats = Arc::new(ScanStats::default());
    let queue = Arc::new(ScanQueue {
        tx,
        section: section.clone(),
        stats: Arc::clone(&stats),
    });
    let handle = std::thread::Builder::new()
        .name("rf-scan".into())
        .spawn(move || {
            if let Err(e) = ringfence_sensor::sys::set_thread_idle_priority() {
                tracing::warn!(error = %e, "scan: cannot enter the idle scheduling class");
            }
            let mut worker = Worker {
                section,
                stats,
                host,
                findings: ftx,
                seen: HashSet::new(),
                seen_rules: 0,
            };
            worker.run(&rx, &rules, &stop);
        })?;
    Ok(Running {
        findings: frx,
        queue,
        handle,
    })
}

/// Device, inode, size and mtime of a file.
pub type Stamp = (u64, u64, u64, i64, i64);

/// How long the scanner lets jobs gather after it has emptied its queue (a YARA finding is that
/// much later; the queue holds 1,024 jobs by default).
const GATHER: Duration = Duration::from_millis(20);

/// A file's stamp: device, inode, size and modification time.
fn stamp_of(meta: &std::fs::Metadata) -> Stamp {
    (
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
    )
}

struct Worker {
    section: ScanSection,
    stats: Arc<ScanStats>,
    host: Option<String>,
    findings: Sender<Json>,
    seen: HashSet<Stamp>,
    /// Address of the rules `seen` was filled with.
    seen_rules: usize,
}

impl Worker {
    fn run(&mut self, rx: &Receiver<Job>, rules: &RulesReader, stop: &StopSignal) {
        let tick = Duration::from_millis(500);
        let timeout = Duration::from_secs(self.section.timeout_secs.max(1));
        let same = |a: &Option<Arc<YaraRules>>, b: &Arc<YaraRules>| {
            a.as_ref().is_some_and(|a| Arc::ptr_eq(a, b))
        };
        while !stop.is_stopped() {
            let Some(current) = rules() else {
                // No rules: files are let go; an order is answered with nothing scanned.
                match rx.recv_timeout(tick) {
                    Ok(Job::Tree { reply, .. }) => {
                        let _ = reply.try_send(ScanCounts::default());
                    }
                    Ok(Job::File { .. }) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                continue;
            };
            let key = Arc::as_ptr(&current) as usize;
            if key != self.seen_rules {
                self.seen.clear();
                self.seen_rules = key;
            }
            // One scanner for as long as the rules stay the same.
            let mut scanner = Scanner::new(&current, timeout, self.section.max_file_bytes);
            while !stop.is_stopped() {
                match rx.recv_timeout(tick) {
                    Ok(job) => {
                        self.job(&mut scanner, job, stop);
                        // Take what else is queued, then let the next jobs gather in the queue
                        // for a moment: woken for each job, the scanner cost an exec storm two
                        // context switches per exec, for files it had mostly seen.
                        while !stop.is_stopped()
                            && let Ok(job) = rx.try_recv()
                        {
                            self.job(&mut scanner, job, stop);
                        }
                        stop.sleep(GATHER);
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                if !same(&rules(), &current) {
                    break;
                }
            }
        }
    }

    fn job(&mut self, scanner: &mut Scanner<'_>, job: Job, stop: &StopSignal) {
        let mut counts = ScanCounts::default();
        match job {
            Job::File {
                path,
                trigger,
                process,
            } => self.file(scanner, &path, trigger, process.as_ref(), &mut counts),
            Job::Tree {
                root,
                max_files,
                reply,
            } => {
                let section = self.section.clone();
                walk_each(&root, &section, max_files, &mut |f| {
                    self.file(scanner, f, Trigger::Order, None, &mut counts);
                    !stop.is_stopped()
                });
                let _ = reply.try_send(counts);
            }
        }
    }

    fn file(
        &mut self,
        scanner: &mut Scanner<'_>,
        path: &Path,
        trigger: Trigger,
        process: Option<&ProcessRef>,
        counts: &mut ScanCounts,
    ) {
        let seen = (trigger != Trigger::Order).then_some(&self.seen);
        match scanner.scan_path_unless_seen(path, seen) {
            Outcome::Unchanged => bump(&self.stats.skipped_unchanged),
            Outcome::Scanned {
                matches,
                sha256,
                size,
                stamp,
            } => {
                bump(&self.stats.scanned);
                counts.files = counts.files.saturating_add(1);
                counts.bytes = counts.bytes.saturating_add(size);
                if self.seen.len() >= SEEN_CAPACITY {
                    self.seen.clear();
                }
                self.seen.insert(stamp);
                for m in &matches {
                    bump(&self.stats.matches);
                    counts.matches = counts.matches.saturating_add(1);
                    let doc = finding(
                        m,
                        &path.display().to_string(),
                        &sha256,
                        size,
                        trigger,
                        process,
                        self.host.as_deref(),
                    );
                    if let Err(TrySendError::Full(_)) = self.findings.try_send(doc) {
                        bump(&self.stats.findings_dropped);
                    }
                }
            }
            Outcome::Skipped(why) => {
                counts.skipped = counts.skipped.saturating_add(1);
                match why {
                    Skip::TooLarge => bump(&self.stats.skipped_too_large),
                    Skip::Timeout => {
                        counts.timeouts = counts.timeouts.saturating_add(1);
                        bump(&self.stats.skipped_timeout);
                    }
                    Skip::Unreadable | Skip::NotRegular => bump(&self.stats.skipped_unreadable),
                }
            }
        }
    }
}

/// Why a file was not scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    TooLarge,
    Unreadable,
    NotRegular,
    Timeout,
}

/// What scanning one file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Scanned {
        matches: Vec<YaraMatch>,
        sha256: String,
        size: u64,
        stamp: Stamp,
    },
    Skipped(Skip),
    /// Scanned before with the same rules and not changed since.
    Unchanged,
}

/// A scanner with its buffer, for one thread (the agent's, or `ringfence scan`'s).
pub struct Scanner<'r> {
    inner: ringfence_content::yara::YaraScanner<'r>,
    max_bytes: u64,
    buf: Vec<u8>,
}

impl<'r> Scanner<'r> {
    pub fn new(rules: &'r YaraRules, timeout: Duration, max_bytes: u64) -> Scanner<'r> {
        Scanner {
            inner: rules.scanner(timeout),
            max_bytes,
            buf: Vec::new(),
        }
    }

    /// Reads `path` (not following a final symlink, not blocking on a FIFO) and scans it.
    pub fn scan_path(&mut self, path: &Path) -> Outcome {
        self.scan_path_unless_seen(path, None)
    }

    /// [`Scanner::scan_path`], unless the file's stamp is in `seen`.
    ///
    /// A file already seen is known by a stat of its path, without opening it: an exec storm
    /// runs the same few executables, and each open and close of one cost the agent more than
    /// the stat (a close releases the file, with its notifications, in the kernel). A stamp
    /// not yet seen is taken again from the opened file, which is what gets scanned.
    fn scan_path_unless_seen(&mut self, path: &Path, seen: Option<&HashSet<Stamp>>) -> Outcome {
        if let Some(seen) = seen
            && let Ok(meta) = std::fs::symlink_metadata(path)
            && meta.is_file()
            && seen.contains(&stamp_of(&meta))
        {
            return Outcome::Unchanged;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(path);
        let Ok(file) = file else {
            return Outcome::Skipped(Skip::Unreadable);
        };
        let Ok(meta) = file.metadata() else {
            return Outcome::Skipped(Skip::Unreadable);
        };
        if !meta.is_file() {
            return Outcome::Skipped(Skip::NotRegular);
        }
        if meta.len() > self.max_bytes {
            return Outcome::Skipped(Skip::TooLarge);
        }
        let stamp = stamp_of(&meta);
        if seen.is_some_and(|s| s.contains(&stamp)) {
            return Outcome::Unchanged;
        }
        self.buf.clear();
        if read_capped(file, self.max_bytes, &mut self.buf).is_err() {
            return Outcome::Skipped(Skip::Unreadable);
        }
        if self.buf.len() as u64 > self.max_bytes {
            return Outcome::Skipped(Skip::TooLarge);
        }
        match self.inner.scan(&self.buf) {
            Ok(matches) => {
                let sha256 = if matches.is_empty() {
                    String::new()
                } else {
                    hex::encode(Sha256::digest(&self.buf))
                };
                Outcome::Scanned {
                    matches,
                    sha256,
                    size: self.buf.len() as u64,
                    stamp,
                }
            }
            Err(ScanFailure::Timeout) => Outcome::Skipped(Skip::Timeout),
            Err(ScanFailure::Other(_)) => Outcome::Skipped(Skip::Unreadable),
        }
    }
}

fn read_capped(file: File, cap: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
    file.take(cap.saturating_add(1))
        .read_to_end(buf)
        .map(|_| ())
}

/// Regular files under `root` (or `root` itself), depth-first in name order, not following
/// symlinks nor going into skipped paths, at most `max_files`: each given to `visit`, which
/// says whether to go on. Only one directory's listing is held at a time per level.
pub fn walk_each(
    root: &Path,
    section: &ScanSection,
    max_files: u64,
    visit: &mut dyn FnMut(&Path) -> bool,
) {
    let mut stack = vec![root.to_owned()];
    let mut seen = 0u64;
    while let Some(p) = stack.pop() {
        if seen >= max_files {
            return;
        }
        if section.skipped(&p) && p != root {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_file() {
            seen += 1;
            if !visit(&p) {
                return;
            }
        } else if meta.is_dir()
            && let Ok(rd) = std::fs::read_dir(&p)
        {
            let mut children: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            children.sort();
            stack.extend(children.into_iter().rev());
        }
    }
}

/// [`walk_each`], collected.
pub fn walk(root: &Path, section: &ScanSection, max_files: u64, out: &mut Vec<PathBuf>) {
    walk_each(root, section, max_files, &mut |p| {
        out.push(p.to_owned());
        true
    });
}

/// A match as an ECS alert.
pub fn finding(
    m: &YaraMatch,
    path: &str,
    sha256: &str,
    size: u64,
    trigger: Trigger,
    process: Option<&ProcessRef>,
    host: Option<&str>,
) -> Json {
    let severity = match m.level.as_str() {
        "informational" => 1,
        "low" => 2,
        "medium" => 3,
        "high" => 4,
        _ => 5,
    };
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut doc = json!({
        "@timestamp": Timestamp::now().to_string(),
        "message": format!("YARA rule {} matched {path} ({})", m.rule,
            m.description.as_deref().unwrap_or("no description")),
        "event": {
            "kind": "alert",
            "category": ["malware", "file"],
            "type": ["info"],
            "action": "yara-match",
            "module": "ringfence",
            "dataset": "ringfence.yara",
            "severity": severity,
        },
        "rule": {
            "id": format!("yara:{}", m.rule),
            "name": m.rule,
            "description": m.description,
            "ruleset": RULESET,
        },
        "file": {
            "path": path,
            "name": name,
            "size": size,
            "hash": { "sha256": sha256 },
        },
        "ringfence": {
            "source": "agent",
            "finding": {
                "level": m.level,
                "class": "malware",
                "subject": path,
            },
            "yara": { "rule": m.rule, "trigger": trigger.as_str() },
        },
    });
    if let Some(p) = process {
        doc["process"] = json!({
            "pid": p.pid,
            "executable": p.executable,
            "name": p.name,
        });
    }
    if let Some(h) = host {
        doc["host"] = json!({ "name": h });
    }
    doc
}

/// Time-bounded wait for an order's counts.
pub fn wait(rx: &Receiver<ScanCounts>, limit: Duration) -> Option<ScanCounts> {
    let until = Instant::now() + limit;
    rx.recv_timeout(until.saturating_duration_since(Instant::now()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "rule test_marker {\n meta:\n  level = \"high\"\n strings:\n  $a = \"RINGFENCE-TEST-MARKER\"\n condition:\n  $a\n}\n";

    fn rules() -> Arc<YaraRules> {
        Arc::new(ringfence_content::yara::compile([("yara/t.yar", RULE.as_bytes())]).unwrap())
    }

    #[test]
    fn a_written_file_with_the_marker_is_a_finding_once() {
        let tmp = tempfile::tempdir().unwrap();
        let hit = tmp.path().join("hit.txt");
        std::fs::write(&hit, "x RINGFENCE-TEST-MARKER y").unwrap();
        let stop = StopSignal::new();
        let r = rules();
        let running = spawn(
            ScanSection::default(),
            Box::new(move || Some(Arc::clone(&r))),
            Some("h".into()),
            stop.clone(),
        )
        .unwrap();
        let proc_ref = ProcessRef {
            pid: 7,
            executable: Some("/usr/bin/tee".into()),
            name: Some("tee".into()),
        };
        assert!(running.queue.offer(
            hit.to_str().unwrap(),
            Trigger::Write,
            Some(proc_ref.clone())
        ));
        let f = running
            .findings
            .recv_timeout(Duration::from_secs(30))
            .unwrap();
        assert_eq!(f["rule"]["id"], "yara:test_marker");
        assert_eq!(f["ringfence"]["finding"]["level"], "high");
        assert_eq!(f["file"]["path"], hit.to_str().unwrap());
        assert_eq!(f["process"]["pid"], 7);
        assert_eq!(
            f["file"]["hash"]["sha256"],
            hex::encode(Sha256::digest(b"x RINGFENCE-TEST-MARKER y"))
        );
        // The same file unchanged is not scanned again; a tree order counts it anyway.
        assert!(
            running
                .queue
                .offer(hit.to_str().unwrap(), Trigger::Exec, None)
        );
        let counts = wait(
            &running.queue.order(tmp.path(), 100).unwrap(),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!((counts.files, counts.matches), (1, 1));
        assert_eq!(
            running
                .queue
                .stats
                .skipped_unchanged
                .load(Ordering::Relaxed),
            1
        );
        stop.stop();
        running.handle.join().unwrap();
    }

    #[test]
    fn a_full_queue_skips_and_counts_without_waiting() {
        let (tx, _rx) = crossbeam_channel::bounded(2);
        let queue = ScanQueue {
            tx,
            section: ScanSection::default(),
            stats: Arc::default(),
        };
        // Nobody takes from the queue: the third offer and on are skipped, none waits.
        let offered: Vec<bool> = (0..5)
            .map(|i| queue.offer(&format!("/tmp/f{i}"), Trigger::Write, None))
            .collect();
        assert_eq!(offered, [true, true, false, false, false]);
        assert_eq!(queue.stats.skipped_queue_full.load(Ordering::Relaxed), 3);
        assert!(queue.order(Path::new("/tmp"), 10).is_none());
        // Skipped paths and relative paths are not offered at all (and not counted).
        assert!(!queue.offer("/proc/1/exe", Trigger::Exec, None));
        assert!(!queue.offer("relative", Trigger::Exec, None));
        assert_eq!(queue.stats.skipped_queue_full.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn large_special_and_missing_files_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let big = tmp.path().join("big");
        std::fs::write(&big, vec![b'a'; 100]).unwrap();
        let r = rules();
        let mut s = Scanner::new(&r, Duration::from_secs(5), 10);
        assert_eq!(s.scan_path(&big), Outcome::Skipped(Skip::TooLarge));
        assert_eq!(s.scan_path(tmp.path()), Outcome::Skipped(Skip::NotRegular));
        assert_eq!(
            s.scan_path(&tmp.path().join("missing")),
            Outcome::Skipped(Skip::Unreadable)
        );
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&big, &link).unwrap();
        assert_eq!(s.scan_path(&link), Outcome::Skipped(Skip::Unreadable));
    }
}
