//! Self-protection: refusing, not only reporting, what an attacker with root does first to an
//! endpoint agent — kill or stop it, attach to it, rewrite or delete its binary, config and
//! content, detach its BPF programs.
//!
//! Where the kernel runs BPF LSM (eBPF mode), the [`Guard`] of `bpf/guard.bpf.c` refuses all of
//! it to every process that is not the agent; its refusals come back as events with
//! `event.outcome: failure`, which [`crate::tamper`] reports. Where BPF LSM is refused (this
//! project's 6.18 CI kernel blocks BPF trampolines), the fallback is fanotify permission
//! events refusing write-opens of the agent's files, the supervisor restarting a killed
//! worker, and tamper detection.
//!
//! The one authorised way past the guard is a maintenance token: a small JSON document signed
//! by the content trust root's *root* keys, naming this host, valid for at most a week
//! (`ringfence content maintenance-token`). Dropped at [`ProtectionSection::maintenance_token`],
//! it is verified within a second; a valid one switches protection off (and is consumed), a
//! forged, expired or foreign one is refused and reported. The service manager (or `ringfence
//! up`) that launched the supervisor may always signal the supervisor: that is how a host
//! shuts down and how an operator stops the service; the worker cannot be signalled by anyone
//! but the agent.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ringfence_content::maintenance::{MaintenanceAction, verify_maintenance_token};
use ringfence_content::time::UnixTime;
use ringfence_content::verify::TrustedRoot;
use ringfence_event::{Event, SourceKind};
use ringfence_sensor::ebpf::guard::{Guard, GuardOptions, GuardSource, GuardTick, Launcher};
use ringfence_sensor::fanotify::permission::{
    ExecDenyOptions, ExecScope, PermissionHandle, PermissionOptions, PermissionSource,
    permission_source,
};
use ringfence_sensor::{EventSender, Source, SourceError, StopSignal};
use serde::{Deserialize, Serialize};

use crate::content::manager::{ManagerError, current_root, read_small};
use crate::content::{CompiledContent, ContentSection};

/// Largest maintenance token read.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// `[protection]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtectionSection {
    /// Refuse kills, ptrace, file changes and BPF detaches aimed at the agent (BPF LSM where
    /// the kernel allows it; fanotify write-open refusal otherwise).
    pub self_protection: bool,
    /// Where an operator drops a signed maintenance token to switch self-protection off.
    pub maintenance_token: PathBuf,
    /// Executables (by SHA-256) no process on the host may run (fanotify permission events on
    /// the root filesystem, in both modes). Maintenance tokens do not lift this.
    pub deny_exec_sha256: Vec<Sha256>,
    /// A file of more SHA-256 hashes to deny, one per line (`#` comments), re-read within a
    /// second of a change (`ringfence respond deny-exec` appends to it).
    pub deny_exec_list: Option<PathBuf>,
    /// The filesystems (by a path on each) whose execs are checked; paths that do not exist
    /// are skipped, and two paths on one filesystem count once.
    pub deny_exec_scope: Vec<PathBuf>,
    /// Also refuse the hashes of the active content's IOC sets marked
    /// `# ringfence: deny-exec` (they arrive through the signed, staged rollout like rules).
    pub deny_exec_from_content: bool,
}

impl Default for ProtectionSection {
    fn default() -> Self {
        ProtectionSection {
            self_protection: true,
            maintenance_token: PathBuf::from("/run/ringfence/maintenance.token"),
            deny_exec_sha256: Vec::new(),
            deny_exec_list: None,
            deny_exec_scope: ["/", "/tmp", "/var/tmp", "/dev/shm", "/home", "/run"]
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            deny_exec_from_content: false,
        }
    }
}

impl ProtectionSection {
    /// Whether the exec guard runs.
    pub fn deny_exec(&self) -> bool {
        !self.deny_exec_sha256.is_empty()
            || self.deny_exec_list.is_some()
            || self.deny_exec_from_content
    }
}

/// A SHA-256 written as 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    pub fn parse(s: &str) -> Result<Sha256, String> {
        let s = s.trim();
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| format!("`{s}` is not a SHA-256 (64 hex digits)"))?;
        Ok(Sha256(out))
    }
}

impl std::fmt::Display for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Serialize for Sha256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Sha256, D::Error> {
        let s = String::deserialize(d)?;
        Sha256::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The hashes in a deny list: one per line, blank lines and `#` comments skipped. A bad line
/// is an error naming the file and line, and nothing of the file is used.
pub fn read_deny_list(path: &Path) -> Result<HashSet<[u8; 32]>, String> {
    let bytes = read_small(path, 64 << 20).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))?;
    parse_deny_list(&text, path)
}

/// The hashes in a deny list's text (`path` names it in errors).
pub fn parse_deny_list(text: &str, path: &Path) -> Result<HashSet<[u8; 32]>, String> {
    let mut out = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let h = Sha256::parse(line).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        out.insert(h.0);
    }
    Ok(out)
}

/// Something protection can be switched off on.
pub trait Disarm {
    fn disarm(&mut self) -> Result<(), String>;
}

impl Disarm for Guard {
    fn disarm(&mut self) -> Result<(), String> {
        Guard::disarm(self).map_err(|e| e.to_string())
    }
}

impl Disarm for PermissionHandle {
    fn disarm(&mut self) -> Result<(), String> {
        PermissionHandle::disarm(self);
        Ok(())
    }
}

/// What an accepted token asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceOutcome {
    pub action: MaintenanceAction,
    pub reason: String,
}

/// Verify `token` against `root` for `host` and, when it holds, switch `shield` off. Every
/// action (disarm, stop, uninstall) disarms; stopping and uninstalling are then the service
/// manager's ordinary work.
pub fn apply_maintenance_token(
    token: &[u8],
    root: &TrustedRoot,
    host: &str,
    shield: &mut dyn Disarm,
) -> Result<MaintenanceOutcome, String> {
    let claims = verify_maintenance_token(token, root, host, UnixTime::now())
        .map_err(|e| format!("maintenance token refused: {e}"))?;
    shield.disarm().map_err(|e| {
        format!("maintenance token accepted, but protection did not switch off: {e}")
    })?;
    Ok(MaintenanceOutcome {
        action: claims.action,
        reason: claims.reason,
    })
}

/// The trust root tokens are checked against: the one content is checked against now.
pub fn maintenance_root(content: &ContentSection) -> Result<TrustedRoot, String> {
    current_root(content).map_err(|e| match e {
        ManagerError::NoRoot(_) => {
            "no trust root: set content.root so maintenance tokens can be checked".to_owned()
        }
        other => other.to_string(),
    })
}

/// Watches the token path; see the module doc.
pub struct TokenWatch {
    path: PathBuf,
    content: ContentSection,
    host: String,
    /// The last token looked at, so a refused one is not re-read every second.
    seen: Option<Stamp>,
}

impl TokenWatch {
    pub fn new(path: PathBuf, content: ContentSection, host: String) -> TokenWatch {
        TokenWatch {
            path,
            content,
            host,
            seen: None,
        }
    }

    /// Look for a new token; apply it to `shield`. Returns what to report, if anything, and
    /// whether protection is now off.
    pub fn poll(&mut self, shield: &mut dyn Disarm) -> Option<(Event, bool)> {
        let modified = modified(&self.path);
        if modified.is_none() || modified == self.seen {
            return None;
        }
        self.seen = modified;
        let result = read_small(&self.path, MAX_TOKEN_BYTES)
            .map_err(|e| format!("{}: {e}", self.path.display()))
            .and_then(|token| {
                let root = maintenance_root(&self.content)?;
                apply_maintenance_token(&token, &root, &self.host, shield)
            });
        let accepted = result.is_ok();
        let message = match result {
            Ok(outcome) => {
                // Consumed: a token is used once (it also expires on its own).
                let _ = std::fs::remove_file(&self.path);
                tracing::warn!(
                    action = ?outcome.action,
                    reason = %outcome.reason,
                    "maintenance token accepted: self-protection is off until the agent restarts"
                );
                format!(
                    "maintenance token accepted ({:?}: {}): self-protection is off",
                    outcome.action, outcome.reason
                )
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "maintenance token refused");
                e
            }
        };
        Some((health_event(message), accepted))
    }
}

/// Watches for maintenance tokens on its own thread, for a shield that has no source of its
/// own to do it in (the fanotify fallback); stops once protection is off.
pub struct TokenSource<D> {
    watch: TokenWatch,
    shield: D,
}

impl<D: Disarm + Send> TokenSource<D> {
    pub fn new(watch: TokenWatch, shield: D) -> TokenSource<D> {
        TokenSource { watch, shield }
    }
}

impl<D: Disarm + Send> Source for TokenSource<D> {
    fn name(&self) -> &'static str {
        "maintenance"
    }

    fn run(mut self: Box<Self>, out: EventSender, stop: StopSignal) -> Result<(), SourceError> {
        loop {
            if let Some((event, accepted)) = self.watch.poll(&mut self.shield) {
                out.send(event);
                if accepted {
                    return Ok(());
                }
            }
            if stop.sleep(Duration::from_secs(1)) {
                return Ok(());
            }
        }
    }
}

/// Who the agent is and what it owns, for [`start_guard`].
#[derive(Debug, Clone, Default)]
pub struct ProtectOptions {
    pub agent_pids: Vec<u32>,
    pub supervisor: Option<u32>,
    /// The agent's binary, config, content directory and content store.
    pub paths: Vec<PathBuf>,
}

/// Load the BPF LSM guard for `options`, protect `sensor_objects` too, and wrap it as a source
/// that reports refusals and watches for maintenance tokens. `Err` carries the kernel's reason
/// (the caller falls back).
pub fn start_guard(
    options: &ProtectOptions,
    sensor_objects: &[ringfence_sensor::ebpf::guard::BpfObject],
    section: &ProtectionSection,
    content: &ContentSection,
    host: String,
) -> Result<GuardSource, String> {
    let guard_options = GuardOptions {
        agent_pids: options.agent_pids.clone(),
        supervisor: options.supervisor,
        launcher: options.supervisor.and_then(Launcher::parent_of),
        paths: options.paths.clone(),
    };
    let mut guard = Guard::load(&guard_options).map_err(|e| e.to_string())?;
    guard
        .protect_objects(sensor_objects)
        .map_err(|e| e.to_string())?;
    if let Err(e) = maintenance_root(content) {
        tracing::warn!(
            "{e}: until one is set, only the service manager can stop the protected agent"
        );
    }
    let mut watch = TokenWatch::new(section.maintenance_token.clone(), content.clone(), host);
    let tick: GuardTick = Box::new(move |guard: &mut Guard| {
        if !guard.armed() {
            return Vec::new();
        }
        watch.poll(guard).map(|(e, _)| e).into_iter().collect()
    });
    Ok(GuardSource::new(guard, Some(tick)))
}

/// The fallback where BPF LSM is refused: fanotify permission events refuse write-opens of
/// the agent's files to every other process (unlink and rename cannot be refused this way; tamper
/// detection reports them). Returns the listener and the source that watches for maintenance
/// tokens.
pub fn start_fanotify_shield(
    options: &ProtectOptions,
    section: &ProtectionSection,
    content: &ContentSection,
    host: String,
) -> Result<(PermissionSource, TokenSource<PermissionHandle>), String> {
    let (source, handle) = permission_source(PermissionOptions {
        protected_paths: options.paths.clone(),
        deny_exec: None,
    })
    .map_err(|e| format!("fanotify permission events: {e}"))?;
    let mut pids = options.agent_pids.clone();
    pids.extend(options.supervisor);
    handle.set_agent_pids(&pids);
    let watch = TokenWatch::new(section.maintenance_token.clone(), content.clone(), host);
    Ok((source, TokenSource::new(watch, handle)))
}

/// The exec guard: execs of files whose SHA-256 is denied (config and list file) are refused on
/// the root filesystem. Returns the listener and the source that keeps the list current.
pub fn start_exec_guard(
    section: &ProtectionSection,
    content: Option<ContentReader>,
) -> Result<(PermissionSource, DenyListSource), String> {
    let configured: HashSet<[u8; 32]> = section.deny_exec_sha256.iter().map(|h| h.0).collect();
    let mut sha256 = configured.clone();
    // The list's time before it is read: a change after this is applied by the source.
    let seen = section.deny_exec_list.as_deref().and_then(modified);
    let mut listed = HashSet::new();
    if let Some(list) = &section.deny_exec_list
        && list.exists()
    {
        listed = read_deny_list(list)?;
        sha256.extend(&listed);
    }
    let count = sha256.len();
    let mut devices = HashSet::new();
    let scope: Vec<ExecScope> = section
        .deny_exec_scope
        .iter()
        .filter(|p| {
            std::fs::metadata(p)
                .map(|m| devices.insert(std::os::unix::fs::MetadataExt::dev(&m)))
                .unwrap_or(false)
        })
        .map(|p| ExecScope::Filesystem(p.clone()))
        .collect();
    let (source, handle) = permission_source(PermissionOptions {
        protected_paths: Vec::new(),
        deny_exec: Some(ExecDenyOptions {
            scope,
            sha256,
            ..ExecDenyOptions::default()
        }),
    })
    .map_err(|e| format!("fanotify exec permission events: {e}"))?;
    tracing::info!(hashes = count, "exec guard: denied executables are refused");
    Ok((
        source,
        DenyListSource {
            list: section.deny_exec_list.clone(),
            configured,
            listed,
            handle,
            seen,
            content: content.filter(|_| section.deny_exec_from_content),
            content_version: None,
            from_content: HashSet::new(),
        },
    ))
}

/// Reads the active content (version and compiled content) from any thread.
pub type ContentReader =
    Box<dyn Fn() -> Option<(u64, Arc<dyn CompiledContent>)> + Send + Sync + 'static>;

/// What tells one version of a file from the next: its time, inode and size (a rewrite within
/// one timestamp tick, or a rename into place, still differs).
type Stamp = (SystemTime, u64, u64);

fn modified(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.ino(), m.len()))
}

/// Keeps the exec guard's deny set current: the configured hashes, the list file (re-read when
/// it changes; a bad file is reported with its line and the previous list stays) and, when
/// allowed, the active content's deny-exec IOC sets (re-read when the version changes).
pub struct DenyListSource {
    list: Option<PathBuf>,
    configured: HashSet<[u8; 32]>,
    listed: HashSet<[u8; 32]>,
    handle: PermissionHandle,
    seen: Option<Stamp>,
    content: Option<ContentReader>,
    content_version: Option<u64>,
    from_content: HashSet<[u8; 32]>,
}

impl DenyListSource {
    /// Check the list and the content once; what to report, if anything.
    fn poll(&mut self) -> Option<String> {
        let mut changed = false;
        let mut problem = None;
        if let Some(list) = &self.list {
            let stamp = modified(list);
            if stamp != self.seen {
                self.seen = stamp;
                match stamp.map(|_| read_deny_list(list)).transpose() {
                    Ok(l) => {
                        self.listed = l.unwrap_or_default();
                        changed = true;
                    }
                    Err(e) => problem = Some(format!("deny list not applied: {e}")),
                }
            }
        }
        if let Some(active) = self.content.as_ref().and_then(|read| read()) {
            let (version, content) = active;
            if self.content_version != Some(version) {
                self.content_version = Some(version);
                self.from_content = content.deny_exec_sha256();
                changed = true;
            }
        }
        if !changed {
            return problem;
        }
        let mut all = self.configured.clone();
        all.extend(&self.listed);
        all.extend(&self.from_content);
        let n = all.len();
        match self.handle.set_deny_sha256(all) {
            Ok(()) => {
                tracing::info!(
                    hashes = n,
                    from_list = self.listed.len(),
                    from_content = self.from_content.len(),
                    content_version = ?self.content_version,
                    "exec guard: deny set applied"
                );
                problem
            }
            Err(e) => Some(format!(
                "deny set applied, but a mark was not restored: {e}"
            )),
        }
    }
}

impl Source for DenyListSource {
    fn name(&self) -> &'static str {
        "deny_list"
    }

    fn run(mut self: Box<Self>, out: EventSender, stop: StopSignal) -> Result<(), SourceError> {
        loop {
            if let Some(problem) = self.poll() {
                tracing::error!("{problem}");
                out.send(health_event(problem));
            }
            if stop.sleep(Duration::from_secs(1)) {
                return Ok(());
            }
        }
    }
}

fn health_event(message: String) -> Event {
    Event::health_notice(SourceKind::Agent, message)
}

/// The agent's own files, which self-protection guards and tamper detection watches: its
/// binary, its config file, the content store (and, for fanotify's directory marks that cover
/// only direct children, each subdirectory: the store keeps bundles one level down) and the
/// configured trust root; those that exist, canonical. The content directory itself is not
/// included: operators and the fleet link drop signed bundles there, and the signature, not the
/// directory, is what makes content trusted.
pub fn agent_paths(config_file: Option<&Path>, content: &ContentSection) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::env::current_exe().into_iter().collect();
    paths.extend(config_file.map(Path::to_path_buf));
    if let Some(state) = content.state_dir() {
        let subdirs: Vec<PathBuf> = std::fs::read_dir(&state)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        paths.push(state);
        paths.extend(subdirs);
    }
    paths.extend(content.root.clone());
    let mut out: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Switch(bool);

    impl Disarm for Switch {
        fn disarm(&mut self) -> Result<(), String> {
            self.0 = false;
            Ok(())
        }
    }

    #[test]
    fn a_token_without_a_root_is_refused_and_reported_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("maintenance.token");
        std::fs::write(&token, b"{}").expect("write");
        let mut watch = TokenWatch::new(token.clone(), ContentSection::default(), "h".into());
        let mut shield = Switch(true);
        let (event, accepted) = watch.poll(&mut shield).expect("reported");
        assert!(!accepted);
        let message = event.health.and_then(|h| h.message).unwrap_or_default();
        assert!(message.contains("no trust root"), "{message}");
        assert!(shield.0, "still armed");
        assert!(
            watch.poll(&mut shield).is_none(),
            "the same token is not re-read"
        );
        assert!(
            token.exists(),
            "a refused token is left for the operator to see"
        );
    }

    #[test]
    fn a_signed_token_for_this_host_disarms_and_is_consumed_a_foreign_one_is_not() {
        use ringfence_content::keys::{KeysInitOptions, init_keys};
        use ringfence_content::maintenance::{MaintenanceClaims, sign_maintenance_token};
        let dir = tempfile::tempdir().expect("tempdir");
        let keys_dir = dir.path().join("keys");
        let now = UnixTime::now();
        let keys = init_keys(&keys_dir, &KeysInitOptions::new(now)).expect("keys");
        let content = ContentSection {
            root: Some(keys_dir),
            ..ContentSection::default()
        };
        let token_at = dir.path().join("maintenance.token");
        let token = |host: &str| {
            let claims =
                MaintenanceClaims::new(MaintenanceAction::Stop, host, now, 600, "upgrade to v2")
                    .expect("claims");
            sign_maintenance_token(&keys, &claims).expect("sign")
        };

        std::fs::write(&token_at, token("other-host")).expect("write");
        let mut watch = TokenWatch::new(token_at.clone(), content, "web-1".into());
        let mut shield = Switch(true);
        let (event, accepted) = watch.poll(&mut shield).expect("reported");
        let message = event.health.and_then(|h| h.message).unwrap_or_default();
        assert!(!accepted && shield.0, "{message}");
        assert!(message.contains("refused"), "{message}");

        // A new token (a new modification time) is read again.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&token_at, token("web-1")).expect("write");
        let (event, accepted) = watch.poll(&mut shield).expect("reported");
        let message = event.health.and_then(|h| h.message).unwrap_or_default();
        assert!(accepted && !shield.0, "{message}");
        assert!(message.contains("upgrade to v2"), "{message}");
        assert!(!token_at.exists(), "an accepted token is consumed");
    }

    #[test]
    fn no_token_no_event() {
        let mut watch = TokenWatch::new(
            PathBuf::from("/nonexistent/maintenance.token"),
            ContentSection::default(),
            "h".into(),
        );
        assert!(watch.poll(&mut Switch(true)).is_none());
    }
}
