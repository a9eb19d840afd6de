//! File integrity: a baseline of watched paths, and what changed since.
//!
//! A pass walks the watched paths (without following symlinks, at most [`MAX_ENTRIES`]
//! entries, [`MAX_DEPTH`] levels) and records for each entry its type, SHA-256 (regular files
//! up to `max_hash_bytes`), symlink target, size, mode, owner, mtime and ctime, and the Debian
//! package that owns it. The baseline lives in `state_dir/fim-baseline.json` (directory 0700,
//! file 0600, written atomically, read back at most [`MAX_BASELINE_BYTES`]). At the agent's
//! start the stored baseline is compared with the disk, so what changed while the agent was
//! down is found; every later pass compares again and stores the new state.
//!
//! A change is content (hash, or size when the file is too big to hash), symlink target, type,
//! mode or owner; a new mtime or ctime alone (`touch`, a reinstall of the same bytes) is not.
//! Changes the package manager made are told apart and are not alerts:
//! - the file's MD5 is the one its package ships (`/var/lib/dpkg/info/*.md5sums`, conffiles in
//!   `status`);
//! - or the path belongs to a package that dpkg.log shows installed, upgraded or removed since
//!   the baseline (for removed files, the owner recorded in the baseline);
//! - or its ctime falls inside a dpkg run in dpkg.log (maintainer scripts, triggers such as
//!   ldconfig).
//!
//! Everything else is a finding with the state before and after. At most [`MAX_FINDINGS`] are
//! written per pass; the rest are summed up in one more.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2_fim::{Digest, Sha256};

use super::{CpuBudget, Level, PostureFinding};

/// The default watched paths (`~` is every home directory in /etc/passwd).
pub const DEFAULT_PATHS: [&str; 9] = [
    "/etc",
    "/usr/bin",
    "/usr/sbin",
    "/boot",
    "~/.ssh",
    "/var/spool/cron",
    "/usr/lib/systemd/system",
    "/usr/local/bin",
    "/usr/local/sbin",
];

pub const MAX_ENTRIES: usize = 1_000_000;
pub const MAX_DEPTH: usize = 64;
pub const MAX_BASELINE_BYTES: u64 = 512 << 20;
pub const MAX_FINDINGS: usize = 500;
const BASELINE_FILE: &str = "fim-baseline.json";
const BASELINE_VERSION: u32 = 1;

/// `~/x` for each home, other paths as they are; canonical, without duplicates or paths inside
/// another watched one.
pub fn expand_paths(paths: &[String], homes: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        if let Some(rest) = p.strip_prefix("~/") {
            out.extend(homes.iter().map(|h| h.join(rest)));
        } else {
            out.push(PathBuf::from(p));
        }
    }
    let mut out: Vec<PathBuf> = out
        .into_iter()
        .filter_map(|p| fs::canonicalize(&p).ok())
        .collect();
    out.sort();
    out.dedup();
    let all = out.clone();
    out.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    out
}

/// One path's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub ctime: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub package: Option<String>,
}

/// The stored baseline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Baseline {
    pub version: u32,
    /// Seconds since the epoch when it was taken.
    pub taken: i64,
    pub paths: Vec<PathBuf>,
    pub entries: BTreeMap<String, FileState>,
}

/// What a pass reads and where it keeps the baseline.
#[derive(Debug, Clone)]
pub struct Options {
    pub paths: Vec<PathBuf>,
    pub state_dir: PathBuf,
    pub dpkg_dir: PathBuf,
    pub dpkg_log: PathBuf,
    /// Regular files larger than this are compared by size, mode, owner and mtime only.
    pub max_hash_bytes: u64,
    /// Store the new state as the baseline (the agent does; the CLI only when asked).
    pub store: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            paths: Vec::new(),
            state_dir: PathBuf::from("/var/lib/ringfence/posture"),
            dpkg_dir: PathBuf::from("/var/lib/dpkg"),
            dpkg_log: PathBuf::from("/var/log/dpkg.log"),
            max_hash_bytes: 64 << 20,
            store: true,
        }
    }
}

/// Figures of one pass.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub entries: u64,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    pub walk_millis: u64,
    pub baseline_bytes: u64,
    /// No baseline was stored: this pass made the first.
    pub first_baseline: bool,
    pub changes: u64,
    pub package_changes: u64,
    pub alerts: u64,
    pub unreadable: u64,
}

/// Findings and figures of one pass.
#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<PostureFinding>,
    pub stats: Stats,
    /// The state the pass found (the new baseline).
    pub baseline: Baseline,
}

fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut n_total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        n_total = n_total.saturating_add(n as u64);
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), n_total))
}

fn md5_file(path: &Path) -> Option<String> {
    use md5::Md5;
    let mut f = File::open(path).ok()?;
    let mut h = <Md5 as md5::Digest>::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        md5::Digest::update(&mut h, &buf[..n]);
    }
    Some(hex::encode(md5::Digest::finalize(h)))
}

/// The state of `path` now (`None` when it cannot be read at all).
pub fn state_of(path: &Path, max_hash_bytes: u64, stats: &mut Stats) -> Option<FileState> {
    let md = fs::symlink_metadata(path).ok()?;
    let ft = md.file_type();
    let kind = if ft.is_file() {
        "file"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "other"
    };
    let mut s = FileState {
        kind: kind.into(),
        sha256: None,
        target: None,
        size: md.len(),
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: md.mtime(),
        ctime: md.ctime(),
        package: None,
    };
    if ft.is_file() && md.len() <= max_hash_bytes {
        match sha256_file(path) {
            Ok((h, n)) => {
                s.sha256 = Some(h);
                stats.files_hashed += 1;
                stats.bytes_hashed = stats.bytes_hashed.saturating_add(n);
            }
            Err(_) => stats.unreadable += 1,
        }
    } else if ft.is_symlink() {
        s.target = fs::read_link(path)
            .ok()
            .map(|t| t.to_string_lossy().into_owned());
    }
    Some(s)
}

/// Walk `paths` into a fresh baseline. An error when the budget ran out (the walk is then
/// incomplete and must not replace the stored one).
pub fn walk(opts: &Options, budget: &CpuBudget, stats: &mut Stats) -> Result<Baseline, String> {
    let started = Instant::now();
    let mut entries = BTreeMap::new();
    let mut stack: Vec<(PathBuf, usize)> = opts.paths.iter().map(|p| (p.clone(), 0)).collect();
    while let Some((path, depth)) = stack.pop() {
        if entries.len() >= MAX_ENTRIES {
            return Err(format!(
                "more than {MAX_ENTRIES} entries under the watched paths; narrow posture.fim_paths"
            ));
        }
        if !budget.charge() {
            return Err(format!(
                "the CPU budget ran out after {} entries; the baseline was not updated",
                entries.len()
            ));
        }
        let Some(state) = state_of(&path, opts.max_hash_bytes, stats) else {
            stats.unreadable += 1;
            continue;
        };
        if state.kind == "dir" && depth < MAX_DEPTH {
            if let Ok(rd) = fs::read_dir(&path) {
                for e in rd.filter_map(Result::ok) {
                    stack.push((e.path(), depth + 1));
                }
            } else {
                stats.unreadable += 1;
            }
        }
        entries.insert(path.to_string_lossy().into_owned(), state);
    }
    stats.entries = entries.len() as u64;
    stats.walk_millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(Baseline {
        version: BASELINE_VERSION,
        taken: chrono::Utc::now().timestamp(),
        paths: opts.paths.clone(),
        entries,
    })
}

/// Read the stored baseline; `Ok(None)` when there is none yet.
pub fn load(state_dir: &Path) -> Result<Option<Baseline>, String> {
    let path = state_dir.join(BASELINE_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut text = Vec::new();
    file.take(MAX_BASELINE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > MAX_BASELINE_BYTES {
        return Err(format!(
            "{}: larger than {MAX_BASELINE_BYTES} bytes",
            path.display()
        ));
    }
    let b: Baseline = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "{}: line {} column {}: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    if b.version != BASELINE_VERSION {
        return Err(format!(
            "{}: version {}, this agent reads {BASELINE_VERSION}",
            path.display(),
            b.version
        ));
    }
    Ok(Some(b))
}

/// Store `b` atomically (0600 in a 0700 directory); returns its size.
pub fn store(state_dir: &Path, b: &Baseline) -> Result<u64, String> {
    super::store_private_json(state_dir, BASELINE_FILE, b)
}

/// What dpkg knows: owners, shipped MD5s, and its runs from dpkg.log.
#[derive(Debug, Default)]
pub struct Dpkg {
    /// path → package (the first that lists it).
    pub owners: HashMap<String, String>,
    /// path → MD5 of the shipped file (md5sums and conffiles).
    pub md5: HashMap<String, String>,
    /// (seconds, package or "") of every dpkg.log line.
    pub log: Vec<(i64, String)>,
    /// dpkg runs: (first, last) line times of stretches of lines less than 30 s apart.
    pub runs: Vec<(i64, i64)>,
}

impl Dpkg {
    /// Read /var/lib/dpkg/info/*.list and *.md5sums, status's conffiles, and dpkg.log (and
    /// dpkg.log.1). What is missing is simply not known (not a Debian host).
    pub fn load(dpkg_dir: &Path, dpkg_log: &Path) -> Dpkg {
        let mut d = Dpkg::default();
        let info = dpkg_dir.join("info");
        if let Ok(rd) = fs::read_dir(&info) {
            let mut files: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
            files.sort();
            for f in files {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Some(pkg) = name.strip_suffix(".list") {
                    let pkg = pkg.split(':').next().unwrap_or(pkg).to_owned();
                    if let Ok(text) = super::shadow::read_bounded(&f) {
                        for line in text.lines() {
                            d.owners
                                .entry(line.to_owned())
                                .or_insert_with(|| pkg.clone());
                        }
                    }
                } else if name.ends_with(".md5sums")
                    && let Ok(text) = super::shadow::read_bounded(&f)
                {
                    for line in text.lines() {
                        if let Some((sum, path)) = line.split_once("  ") {
                            d.md5.insert(format!("/{path}"), sum.to_owned());
                        }
                    }
                }
            }
        }
        if let Ok(text) = read_large(&dpkg_dir.join("status")) {
            let mut in_conffiles = false;
            for line in text.lines() {
                if line.starts_with("Conffiles:") {
                    in_conffiles = true;
                } else if in_conffiles && line.starts_with(' ') {
                    let mut f = line.split_whitespace();
                    if let (Some(p), Some(sum)) = (f.next(), f.next()) {
                        d.md5.insert(p.to_owned(), sum.to_owned());
                    }
                } else {
                    in_conffiles = false;
                }
            }
        }
        let rotated = PathBuf::from(format!("{}.1", dpkg_log.display()));
        for log in [rotated.as_path(), dpkg_log] {
            if let Ok(text) = read_large(log) {
                d.log.extend(text.lines().filter_map(parse_dpkg_log_line));
            }
        }
        let mut times: Vec<i64> = d.log.iter().map(|(t, _)| *t).collect();
        times.sort_unstable();
        for t in times {
            match d.runs.last_mut() {
                Some((_, end)) if t - *end < 30 => *end = t,
                _ => d.runs.push((t, t)),
            }
        }
        d
    }

    /// Packages dpkg.log shows changed at or after `since`.
    fn touched_since(&self, since: i64) -> HashSet<&str> {
        self.log
            .iter()
            .filter(|(t, p)| *t >= since && !p.is_empty())
            .map(|(_, p)| p.as_str())
            .collect()
    }

    /// Whether `t` falls within a dpkg run that ended at or after `since` (with 1 s of slack at
    /// each end).
    fn in_dpkg_run(&self, t: i64, since: i64) -> bool {
        self.runs
            .iter()
            .any(|(start, end)| *end >= since && t >= start - 1 && t <= end + 1)
    }
}

fn read_large(path: &Path) -> io::Result<String> {
    let f = File::open(path)?;
    let mut s = String::new();
    f.take(64 << 20).read_to_string(&mut s)?;
    Ok(s)
}

/// `2025-06-24 14:36:25 upgrade libsystemd0:amd64 old new` → (epoch seconds, "libsystemd0").
/// dpkg writes local time.
pub fn parse_dpkg_log_line(line: &str) -> Option<(i64, String)> {
    use chrono::TimeZone;
    let ts = line.get(..19)?;
    let naive = chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S").ok()?;
    let t = chrono::Local
        .from_local_datetime(&naive)
        .earliest()?
        .timestamp();
    let rest: Vec<&str> = line.get(20..)?.split_whitespace().collect();
    let pkg = match rest.as_slice() {
        [
            "install" | "upgrade" | "remove" | "purge" | "configure" | "trigproc",
            pkg,
            ..,
        ] => pkg,
        ["status", _, pkg, ..] => pkg,
        _ => "",
    };
    Some((t, pkg.split(':').next().unwrap_or("").to_owned()))
}

/// How a change came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The package manager: `why` says how that was told.
    Package(&'static str),
    Unexplained,
}

/// Tell whether dpkg made the change of `path` from `before` to `after`.
pub fn cause(
    dpkg: &Dpkg,
    touched: &HashSet<&str>,
    since: i64,
    path: &str,
    before: Option<&FileState>,
    after: Option<&FileState>,
) -> Cause {
    if let Some(a) = after {
        if a.kind == "file"
            && dpkg
                .md5
                .get(path)
                .is_some_and(|sum| md5_file(Path::new(path)).as_deref() == Some(sum.as_str()))
        {
            return Cause::Package("its MD5 is the one its package ships");
        }
        if dpkg
            .owners
            .get(path)
            .is_some_and(|p| touched.contains(p.as_str()))
        {
            return Cause::Package("its package was installed or upgraded since the baseline");
        }
        if dpkg.in_dpkg_run(a.ctime, since) {
            return Cause::Package("changed during a dpkg run");
        }
    } else if let Some(b) = before {
        let owner = b
            .package
            .as_deref()
            .or(dpkg.owners.get(path).map(String::as_str));
        if owner.is_some_and(|p| touched.contains(p)) {
            return Cause::Package("its package was upgraded or removed since the baseline");
        }
    }
    Cause::Unexplained
}

/// The fields that differ between two states (the ones that count as a change).
pub fn differences(before: &FileState, after: &FileState) -> Vec<&'static str> {
    let mut d = Vec::new();
    if before.kind != after.kind {
        d.push("kind");
    }
    match (&before.sha256, &after.sha256) {
        (Some(x), Some(y)) if x != y => d.push("sha256"),
        (Some(_), Some(_)) => {}
        _ => {
            if before.kind == "file" && (before.size != after.size || before.mtime != after.mtime) {
                // Too big to hash: size and mtime stand in for the content.
                d.push("size_or_mtime");
            }
        }
    }
    if before.target != after.target {
        d.push("target");
    }
    if before.mode != after.mode {
        d.push("mode");
    }
    if before.uid != after.uid || before.gid != after.gid {
        d.push("owner");
    }
    d
}

fn sensitive(path: &str) -> bool {
    const AUTH: [&str; 8] = [
        "/etc/passwd",
        "/etc/shadow",
        "/etc/group",
        "/etc/gshadow",
        "/etc/sudoers",
        "/etc/ssh/sshd_config",
        "/etc/ld.so.preload",
        "/etc/pam.d/",
    ];
    AUTH.iter().any(|a| path.starts_with(a))
        || path.contains("/.ssh/")
        || path.contains("/bin/")
        || path.contains("/sbin/")
        || path.contains("/cron")
        || path.starts_with("/etc/sudoers.d/")
}

/// A path, its state before and after (`None`: absent), and what differs.
type Change<'a> = (
    &'a str,
    Option<&'a FileState>,
    Option<&'a FileState>,
    Vec<&'static str>,
);

/// Compare `old` with `new` and return the findings; figures go to `stats`.
pub fn compare(
    old: &Baseline,
    new: &mut Baseline,
    dpkg: &Dpkg,
    stats: &mut Stats,
) -> Vec<PostureFinding> {
    let mut findings = Vec::new();
    let mut more = 0u64;
    // Record owners in the new baseline, for removals found by the next pass.
    for (path, state) in &mut new.entries {
        state.package = dpkg.owners.get(path).cloned();
    }
    let mut changes: Vec<Change<'_>> = Vec::new();
    for (path, before) in &old.entries {
        match new.entries.get(path) {
            Some(after) => {
                let d = differences(before, after);
                if !d.is_empty() {
                    changes.push((path, Some(before), Some(after), d));
                }
            }
            None => {
                // A path outside what this pass watched is not a removal.
                if new.paths.iter().any(|p| Path::new(path).starts_with(p)) {
                    changes.push((path, Some(before), None, vec!["removed"]));
                }
            }
        }
    }
    for (path, after) in &new.entries {
        if !old.entries.contains_key(path)
            && old.paths.iter().any(|p| Path::new(path).starts_with(p))
        {
            changes.push((path, None, Some(after), vec!["added"]));
        }
    }
    let touched = dpkg.touched_since(old.taken);
    for (path, before, after, diff) in changes {
        stats.changes += 1;
        if let Cause::Package(_) = cause(dpkg, &touched, old.taken, path, before, after) {
            stats.package_changes += 1;
            continue;
        }
        stats.alerts += 1;
        if findings.len() >= MAX_FINDINGS {
            more += 1;
            continue;
        }
        let (rule_id, title, what) = match (before, after) {
            (None, _) => (
                "ringfence-posture-file-added",
                "Watched file added",
                "added",
            ),
            (_, None) => (
                "ringfence-posture-file-removed",
                "Watched file removed",
                "removed",
            ),
            _ => (
                "ringfence-posture-file-changed",
                "Watched file changed",
                "changed",
            ),
        };
        let level = if sensitive(path) {
            Level::High
        } else {
            Level::Medium
        };
        findings.push(PostureFinding {
            rule_id,
            title,
            level,
            subject: path.to_owned(),
            message: format!(
                "{path} {what} outside the package manager{}",
                if what == "changed" {
                    format!(" ({})", diff.join(", "))
                } else {
                    String::new()
                }
            ),
            details: json!({
                "path": path,
                "changed": diff,
                "before": before,
                "after": after,
                "baseline_taken": old.taken,
            }),
        });
    }
    if more > 0 {
        findings.push(PostureFinding {
            rule_id: "ringfence-posture-file-changed",
            title: "Watched files changed",
            level: Level::High,
            subject: "file integrity".into(),
            message: format!("{more} more watched files changed outside the package manager (not listed one by one)"),
            details: json!({"more": more}),
        });
    }
    findings
}

/// One pass: walk, compare with the stored baseline (if any), store the new one.
pub fn run(opts: &Options, budget: &CpuBudget) -> Result<Outcome, String> {
    let mut out = Outcome::default();
    let old = load(&opts.state_dir)?;
    let mut new = walk(opts, budget, &mut out.stats)?;
    match &old {
        None => {
            out.stats.first_baseline = true;
            let dpkg = Dpkg::load(&opts.dpkg_dir, &opts.dpkg_log);
            for (path, state) in &mut new.entries {
                state.package = dpkg.owners.get(path).cloned();
            }
        }
        Some(old) => {
            let dpkg = Dpkg::load(&opts.dpkg_dir, &opts.dpkg_log);
            out.findings = compare(old, &mut new, &dpkg, &mut out.stats);
        }
    }
    if opts.store {
        out.stats.baseline_bytes = store(&opts.state_dir, &new)?;
    } else {
        out.stats.baseline_bytes = serde_json::to_vec(&new).map_or(0, |v| v.len() as u64);
    }
    out.baseline = new;
    Ok(out)
}

/// Paths that file events said changed, checked against the baseline once the host has been
/// quiet for a while and no package manager runs (so a dpkg run is judged once it is logged).
#[derive(Debug, Default)]
pub struct Dirty {
    paths: std::collections::BTreeSet<PathBuf>,
    last: Option<Instant>,
    /// More paths came than [`Dirty::MAX`]: the next full pass must run now.
    pub overflowed: bool,
}

impl Dirty {
    pub const MAX: usize = 100_000;
    /// Quiet time before dirty paths are checked.
    pub const QUIET: std::time::Duration = std::time::Duration::from_secs(20);

    pub fn add(&mut self, path: PathBuf) {
        if self.paths.len() >= Self::MAX {
            self.overflowed = true;
        } else {
            self.paths.insert(path);
        }
        self.last = Some(Instant::now());
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Quiet long enough, and no dpkg or apt process running (looked for in `proc`).
    pub fn ready(&self, proc: &Path) -> bool {
        !self.paths.is_empty()
            && self.last.is_some_and(|t| t.elapsed() >= Self::QUIET)
            && !package_manager_running(proc)
    }
}

/// A dpkg, apt, apt-get, aptitude or unattended-upgrade process is running.
pub fn package_manager_running(proc: &Path) -> bool {
    let Ok(rd) = fs::read_dir(proc) else {
        return false;
    };
    rd.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .any(|e| {
            fs::read_to_string(e.path().join("comm")).is_ok_and(|c| {
                matches!(
                    c.trim(),
                    "dpkg" | "apt" | "apt-get" | "aptitude" | "unattended-upgr"
                )
            })
        })
}

/// Check the dirty paths against `baseline` (updated in place, and stored when `opts.store`).
pub fn check_dirty(
    opts: &Options,
    baseline: &mut Baseline,
    dirty: &mut Dirty,
) -> Result<Outcome, String> {
    let mut out = Outcome::default();
    let paths = std::mem::take(&mut dirty.paths);
    dirty.last = None;
    let mut old = Baseline {
        version: BASELINE_VERSION,
        taken: baseline.taken,
        paths: baseline.paths.clone(),
        entries: BTreeMap::new(),
    };
    let mut new = Baseline {
        version: BASELINE_VERSION,
        taken: chrono::Utc::now().timestamp(),
        paths: baseline.paths.clone(),
        entries: BTreeMap::new(),
    };
    for p in &paths {
        let key = p.to_string_lossy().into_owned();
        if let Some(s) = baseline.entries.get(&key) {
            old.entries.insert(key.clone(), s.clone());
        }
        if let Some(s) = state_of(p, opts.max_hash_bytes, &mut out.stats) {
            new.entries.insert(key, s);
        }
    }
    let dpkg = Dpkg::load(&opts.dpkg_dir, &opts.dpkg_log);
    out.findings = compare(&old, &mut new, &dpkg, &mut out.stats);
    for p in &paths {
        let key = p.to_string_lossy().into_owned();
        match new.entries.remove(&key) {
            Some(s) => {
                baseline.entries.insert(key, s);
            }
            None => {
                baseline.entries.remove(&key);
            }
        }
    }
    if opts.store {
        out.stats.baseline_bytes = store(&opts.state_dir, baseline)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    #[test]
    fn a_state_dir_that_exists_keeps_its_mode_and_a_new_one_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        store(&shared, &Baseline::default()).unwrap();
        assert_eq!(fs::metadata(&shared).unwrap().mode() & 0o7777, 0o1777);
        let new = dir.path().join("a/b");
        store(&new, &Baseline::default()).unwrap();
        assert_eq!(fs::metadata(&new).unwrap().mode() & 0o777, 0o700);
    }

    fn opts(dir: &Path, watched: &Path) -> Options {
        Options {
            paths: vec![watched.to_owned()],
            state_dir: dir.join("state"),
            dpkg_dir: dir.join("no-dpkg"),
            dpkg_log: dir.join("no-dpkg.log"),
            ..Options::default()
        }
    }

    #[test]
    fn changes_while_down_are_found_with_before_and_after() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("watched");
        fs::create_dir_all(w.join("sub")).unwrap();
        fs::write(w.join("a.conf"), "one\n").unwrap();
        fs::write(w.join("sub/gone"), "x").unwrap();
        fs::write(w.join("touched"), "same").unwrap();
        let o = opts(dir.path(), &w);
        let budget = CpuBudget::unlimited(Duration::from_secs(60));
        let first = run(&o, &budget).unwrap();
        assert!(first.stats.first_baseline);
        assert!(first.findings.is_empty());
        let stored = dir.path().join("state").join(BASELINE_FILE);
        assert_eq!(fs::metadata(&stored).unwrap().mode() & 0o777, 0o600);

        fs::write(w.join("a.conf"), "two\n").unwrap();
        fs::remove_file(w.join("sub/gone")).unwrap();
        fs::write(w.join("new"), "n").unwrap();
        fs::set_permissions(w.join("touched"), fs::Permissions::from_mode(0o4755)).unwrap();
        let second = run(&o, &budget).unwrap();
        let mut got: Vec<(&str, String)> = second
            .findings
            .iter()
            .map(|f| {
                (
                    f.rule_id,
                    f.subject.rsplit('/').next().unwrap_or("").to_owned(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("ringfence-posture-file-added", "new".to_owned()),
                ("ringfence-posture-file-changed", "a.conf".to_owned()),
                ("ringfence-posture-file-changed", "touched".to_owned()),
                ("ringfence-posture-file-removed", "gone".to_owned()),
            ]
        );
        let changed = second
            .findings
            .iter()
            .find(|f| f.subject.ends_with("a.conf"))
            .unwrap();
        assert_eq!(changed.details["changed"], json!(["sha256"]));
        assert_ne!(
            changed.details["before"]["sha256"],
            changed.details["after"]["sha256"]
        );
        let third = run(&o, &budget).unwrap();
        assert!(third.findings.is_empty(), "{:?}", third.findings);
    }

    #[test]
    fn file_events_between_passes_are_checked_and_keep_the_baseline_current() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("watched");
        fs::create_dir_all(&w).unwrap();
        fs::write(w.join("sudoers"), "root ALL=(ALL) ALL\n").unwrap();
        let o = opts(dir.path(), &w);
        let budget = CpuBudget::unlimited(Duration::from_secs(60));
        let mut baseline = run(&o, &budget).unwrap().baseline;
        fs::write(
            w.join("sudoers"),
            "root ALL=(ALL) ALL\nevil ALL=(ALL) NOPASSWD: ALL\n",
        )
        .unwrap();
        let mut dirty = Dirty::default();
        dirty.add(w.join("sudoers"));
        dirty.add(w.join("never-existed"));
        let out = check_dirty(&o, &mut baseline, &mut dirty).unwrap();
        assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        assert_eq!(out.findings[0].rule_id, "ringfence-posture-file-changed");
        assert!(dirty.is_empty());
        // The baseline took the new state, on disk too: the next pass does not report it again.
        let again = run(&o, &budget).unwrap();
        assert!(again.findings.is_empty(), "{:?}", again.findings);
    }

    #[test]
    fn a_touch_alone_is_not_a_change() {
        let a = FileState {
            kind: "file".into(),
            sha256: Some("aa".into()),
            target: None,
            size: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1,
            ctime: 1,
            package: None,
        };
        let b = FileState {
            mtime: 2,
            ctime: 2,
            ..a.clone()
        };
        assert!(differences(&a, &b).is_empty());
    }

    #[test]
    fn dpkg_log_lines_name_their_package() {
        let (_, p) = parse_dpkg_log_line(
            "2025-06-24 14:36:25 upgrade libsystemd0:amd64 252.36-1~deb12u1 252.38-1~deb12u1",
        )
        .unwrap();
        assert_eq!(p, "libsystemd0");
        let (_, p) =
            parse_dpkg_log_line("2025-06-24 14:36:25 status installed tree:amd64 2.1.0-1").unwrap();
        assert_eq!(p, "tree");
        let (_, p) = parse_dpkg_log_line("2025-06-24 14:36:25 startup archives unpack").unwrap();
        assert_eq!(p, "");
        assert!(parse_dpkg_log_line("garbage").is_none());
    }

    #[test]
    fn a_baseline_that_is_not_json_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(BASELINE_FILE), "{not json").unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(e.contains("fim-baseline.json: line 1"), "{e}");
    }
}
