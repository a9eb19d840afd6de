//! The agent's TOML configuration: typed, with defaults, and checked all at once.
//!
//! [`Config::load`] reports every problem in one go, each naming the file, the line and the
//! key (`agent.toml:7: fanotify.paths: invalid type ...`). Every section is parsed on its own
//! from the original text, so one bad section does not hide the errors of the next, and serde
//! keeps the position of each error. Unknown keys are refused (`deny_unknown_fields`): a typo is
//! an error, not a silently ignored setting.

use std::fmt;
use std::path::{Path, PathBuf};

use ringfence_event::EventKind;
use ringfence_sensor::audit::AddRules;
use ringfence_sensor::ebpf::record::PREFIX_MAX;
use ringfence_sensor::logs::LogsConfig;
use serde::{Deserialize, Serialize};

use crate::cpu::CpuChoice;

/// Which sensor set to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ModeChoice {
    /// eBPF when it loads here, otherwise driverless (the reason is logged).
    #[default]
    Auto,
    Ebpf,
    Driverless,
}

impl ModeChoice {
    pub fn parse(s: &str) -> Option<ModeChoice> {
        match s {
            "auto" => Some(ModeChoice::Auto),
            "ebpf" => Some(ModeChoice::Ebpf),
            "driverless" => Some(ModeChoice::Driverless),
            _ => None,
        }
    }
}

/// Where events and findings go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    Stdout,
    Jsonl(PathBuf),
}

impl OutputSpec {
    /// `stdout` or `jsonl:PATH`.
    pub fn parse(s: &str) -> Result<OutputSpec, String> {
        match s.split_once(':') {
            None if s == "stdout" => Ok(OutputSpec::Stdout),
            Some(("jsonl", path)) if !path.is_empty() => Ok(OutputSpec::Jsonl(path.into())),
            _ => Err(format!("expected `stdout` or `jsonl:PATH`, got `{s}`")),
        }
    }
}

impl fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputSpec::Stdout => f.write_str("stdout"),
            OutputSpec::Jsonl(p) => write!(f, "jsonl:{}", p.display()),
        }
    }
}

/// `[agent]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSection {
    pub mode: ModeChoice,
    /// `host.name`; the kernel's hostname when absent.
    pub host_name: Option<String>,
    /// Events buffered between the sources and the pipeline; beyond it events are dropped and
    /// counted, never waited for.
    pub queue_capacity: usize,
    /// Seconds between health log lines.
    pub stats_interval_secs: u64,
    /// `stdout` and/or `jsonl:PATH`.
    pub outputs: Vec<String>,
    /// Report signals and ptrace aimed at the agent, and changes to its binary and content
    /// store by other processes (built in: content cannot switch it off).
    pub tamper_detection: bool,
    /// Where the agent's threads run: `"auto"` (all on one CPU, the last the agent may use),
    /// `"off"` (wherever the scheduler puts them), or a CPU number. See [`crate::cpu`].
    pub cpu: CpuChoice,
}

impl Default for AgentSection {
    fn default() -> Self {
        AgentSection {
            mode: ModeChoice::Auto,
            host_name: None,
            queue_capacity: 65_536,
            stats_interval_secs: 10,
            outputs: vec!["stdout".into()],
            tamper_detection: true,
            cpu: CpuChoice::Auto,
        }
    }
}

/// `[sources]`: which driverless sources run (`logs` runs in both modes; in eBPF mode
/// `fanotify = false` also turns off the sensor's file events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesSection {
    pub proc_connector: bool,
    /// Read Linux audit's execve and socket-call records (read-only multicast). Whether the
    /// agent adds rules of its own, and what they cost the host, is `[audit] add_rules`.
    pub audit: bool,
    pub fanotify: bool,
    pub logs: bool,
    /// DNS queries and answers captured in user space (an `AF_PACKET` socket filtered to UDP
    /// port 53; needs CAP_NET_RAW), in both modes.
    pub dns: bool,
}

impl Default for SourcesSection {
    fn default() -> Self {
        SourcesSection {
            proc_connector: true,
            audit: true,
            fanotify: true,
            logs: true,
            dns: true,
        }
    }
}

/// `[fanotify]`: the watched file trees, in both modes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FanotifySection {
    /// Directories whose files are watched (recursively). In eBPF mode they become the sensor's
    /// in-kernel path prefixes (`/etc` → `/etc/`), so at most 127 bytes each.
    pub paths: Vec<PathBuf>,
    /// Directories watched for writes only (create, modify, delete, rename; no exec-open): the
    /// system binary and library trees, where every command runs from.
    pub write_only_paths: Vec<PathBuf>,
    /// Also report files opened for execution under `paths`.
    pub exec_open: bool,
    /// Trees the agent adds from the active rules: a file rule whose path patterns all lie
    /// under a directory outside the watched trees gets that directory watched.
    pub content_paths: bool,
    /// At most this many trees in all (configured and added from content; 1 to 1024, the eBPF
    /// prefix map's size). Past it, the trees content asks for are not added, and the agent
    /// says which in a health finding.
    pub max_paths: usize,
}

/// Where attackers write on a server: configuration and cron, home directories (dotfiles,
/// `.ssh`), web roots, temporary and shared-memory directories.
pub const DEFAULT_WATCHED: &[&str] = &[
    "/etc",
    "/root",
    "/home",
    "/var/spool/cron",
    "/var/www",
    "/srv",
    "/tmp",
    "/var/tmp",
    "/dev/shm",
];

/// System binary, library, boot and add-on trees, and the system logs (their clearing and
/// truncation is what the default pack looks for): watched for writes only.
pub const DEFAULT_WRITE_ONLY: &[&str] = &[
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/local/lib",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/lib",
    "/lib64",
    "/boot",
    "/opt",
    "/var/log",
];

/// The largest `[fanotify] max_paths`: the eBPF sensor's prefix map holds 1024 entries.
pub const MAX_PATHS_LIMIT: usize = 1024;

impl Default for FanotifySection {
    fn default() -> Self {
        FanotifySection {
            paths: DEFAULT_WATCHED.iter().map(PathBuf::from).collect(),
            write_only_paths: DEFAULT_WRITE_ONLY.iter().map(PathBuf::from).collect(),
            exec_open: true,
            content_paths: true,
            max_paths: 64,
        }
    }
}

impl FanotifySection {
    /// Every watched tree, full and write-only, as configured.
    pub fn all_paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.paths.iter().chain(&self.write_only_paths)
    }
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// Add `ringfence`-keyed execve and socket-call rules while the agent runs (removed on
    /// exit). `"auto"` adds them only where audit is on and other exit rules (auditd's) are
    /// loaded: any such rule makes every syscall of every process collect the paths it looks up,
    /// so ours then cost only their records. `true` always adds them, switching audit on:
    /// complete arguments of the shortest-lived processes and connect/bind/accept events, for
    /// 1.4× on path-heavy syscalls host-wide. `false` never does. Without rules of its own the
    /// agent reads /proc for every exec and still merges whatever execve records others' rules
    /// produce.
    pub add_rules: AddRules,
    /// How long an exec whose /proc read failed waits for its audit record, in milliseconds.
    pub merge_wait_ms: u64,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            add_rules: AddRules::Auto,
            merge_wait_ms: 250,
        }
    }
}

/// `[sensor]`: which hooks the eBPF sensor may use. `default` never attaches a syscall
/// tracepoint (one attached puts every syscall on the host on the kernel's slow path): each kind
/// gets fentry where the kernel allows BPF trampolines, else a tracepoint off the syscall path,
/// and the agent takes file events from fanotify and privilege changes and ptrace from the
/// process connector where the sensor has no such hook. `deep` adds the syscall tracepoints for
/// the kinds nothing cheaper covers (memory made executable, memfd_create, bpf(), bind, accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensorSection {
    pub profile: ringfence_sensor::ebpf::Profile,
}

/// `[ebpf]`: the eBPF sensor (driver mode). Its file events follow `[fanotify] paths`; the
/// agent's own process is always ignored, and signals aimed at it are always reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EbpfSection {
    /// Processes (pids) whose activity the kernel drops, besides the agent's own.
    pub ignored_pids: Vec<u32>,
    /// Commands (comm, 1 to 15 bytes) whose activity the kernel drops.
    pub ignored_comms: Vec<String>,
    /// Event kinds not reported (their programs are not attached), e.g. `["memory_exec"]`.
    /// Which hook each kind gets follows `[sensor] profile`; in `deep`, while any syscall
    /// tracepoint is attached every syscall on the host takes the kernel's slow path (about
    /// 1.13× on a loop of open, stat and close here).
    pub kinds_off: Vec<EventKind>,
    /// How long the reader lets a batch gather once records flow, in milliseconds (1 to
    /// 1000): the latency bound under load. A lone record wakes the reader at once.
    pub poll_interval_ms: u64,
    /// A drain of the ring buffer that finds this many bytes drains again at once instead of
    /// resting a poll interval (at least 4096).
    pub wakeup_bytes: u64,
}

impl Default for EbpfSection {
    fn default() -> Self {
        EbpfSection {
            ignored_pids: Vec::new(),
            ignored_comms: Vec::new(),
            kinds_off: Vec::new(),
            poll_interval_ms: 5,
            wakeup_bytes: 512 * 1024,
        }
    }
}

/// `[process_tree]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TreeSection {
    /// Processes remembered; the least recently seen are forgotten beyond it.
    pub capacity: usize,
    /// Ancestors reported in `process.ancestors.*`.
    pub max_depth: usize,
}

impl Default for TreeSection {
    fn default() -> Self {
        TreeSection {
            capacity: 32_768,
            max_depth: 8,
        }
    }
}

/// `[jsonl]`: the file output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonlSection {
    /// Rotate when the file reaches this size.
    pub rotate_bytes: u64,
    /// Rotated files kept (`PATH.1` … `PATH.N`).
    pub keep: u32,
}

impl Default for JsonlSection {
    fn default() -> Self {
        JsonlSection {
            rotate_bytes: 100 * 1024 * 1024,
            keep: 5,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub agent: AgentSection,
    pub sources: SourcesSection,
    pub sensor: SensorSection,
    pub audit: AuditSection,
    pub fanotify: FanotifySection,
    pub ebpf: EbpfSection,
    pub process_tree: TreeSection,
    pub jsonl: JsonlSection,
    pub logs: LogsConfig,
    pub content: crate::content::ContentSection,
    pub fleet: crate::fleet::FleetSection,
    pub response: crate::respond::ResponseSection,
    pub protection: crate::protect::ProtectionSection,
    pub findings: crate::group::FindingsSection,
    pub posture: crate::posture::PostureSection,
    /// `[scan]`: YARA scanning of written and executed files.
    pub scan: crate::scan::ScanSection,
    /// `[detect]`: local tuning (disabled rules, exceptions).
    pub detect: crate::tuning::DetectSection,
    /// `[[outputs]]`: routed outputs (webhook, syslog, Splunk HEC, OCSF file).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<crate::outputs::RouteConfig>,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no position (the file could not be read).
    pub line: usize,
    /// Dotted key, e.g. `agent.queue_capacity`; empty when not known.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All the problems found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} problem{} in the configuration",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

const SECTIONS: [&str; 18] = [
    "agent",
    "sources",
    "sensor",
    "audit",
    "fanotify",
    "ebpf",
    "process_tree",
    "jsonl",
    "logs",
    "content",
    "fleet",
    "response",
    "protection",
    "findings",
    "posture",
    "scan",
    "outputs",
    "detect",
];

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .get(..offset.min(text.len()))
        .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
        + 1
}

/// Find the line where `key` is set inside `[section]`, for value errors found after parsing.
fn line_of_key(text: &str, section: &str, key: &str) -> usize {
    let mut in_section = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = t.trim_matches(|c| c == '[' || c == ']').trim() == section;
        } else if in_section && t.split('=').next().map(str::trim) == Some(key) {
            return i + 1;
        }
    }
    0
}

/// The key an error is about: toml's messages name an unknown or missing field; otherwise (a
/// value of the wrong type or refused by its parser) the key set on the line the error points
/// at (`line`, 1-based; 0 when unknown). The section is known from which pass failed.
fn key_from_error(section: &str, message: &str, text: &str, line: usize) -> String {
    for marker in ["unknown field `", "missing field `"] {
        if let Some(rest) = message.split(marker).nth(1)
            && let Some(field) = rest.split('`').next()
        {
            return format!("{section}.{field}");
        }
    }
    let line = line.checked_sub(1).and_then(|i| text.lines().nth(i));
    match line.and_then(|l| l.split_once('=')) {
        Some((key, _)) if !key.trim().is_empty() && !key.contains('[') => {
            format!("{section}.{}", key.trim().trim_matches('"'))
        }
        _ => section.to_owned(),
    }
}

/// After a section failed to parse as a whole (serde stops at its first error), each of its
/// keys on its own: every other bad key is reported too, and the good ones are kept so the
/// value checks still run on them. `reported` is the key of the error already reported.
fn section_by_key<T: serde::de::DeserializeOwned + Default>(
    table: &toml::Table,
    name: &str,
    text: &str,
    file: &Path,
    reported: &str,
    errors: &mut Vec<ConfigError>,
) -> T {
    let Some(toml::Value::Table(section)) = table.get(name) else {
        return T::default();
    };
    let mut good = toml::Table::new();
    for (key, value) in section {
        let mut one = toml::Table::new();
        one.insert(key.clone(), value.clone());
        match toml::Value::Table(one).try_into::<T>() {
            Ok(_) => {
                good.insert(key.clone(), value.clone());
            }
            Err(e) => {
                let dotted = format!("{name}.{key}");
                if dotted != reported {
                    errors.push(ConfigError {
                        file: file.to_path_buf(),
                        line: line_of_key(text, name, key),
                        key: dotted,
                        message: e.message().trim().to_owned(),
                    });
                }
            }
        }
    }
    toml::Value::Table(good).try_into::<T>().unwrap_or_default()
}

macro_rules! section_pass {
    ($text:expr, $table:expr, $file:expr, $errors:expr, $name:literal, $ty:ty) => {{
        #[derive(Deserialize)]
        struct Only {
            #[serde(default, rename = $name)]
            section: Option<$ty>,
        }
        match toml::from_str::<Only>($text) {
            Ok(only) => only.section.unwrap_or_default(),
            Err(e) => {
                let message = e.message().to_owned();
                let line = e.span().map_or(0, |s| line_of($text, s.start));
                let key = key_from_error($name, &message, $text, line);
                $errors.push(ConfigError {
                    file: $file.to_path_buf(),
                    line,
                    key: key.clone(),
                    message,
                });
                section_by_key::<$ty>($table, $name, $text, $file, &key, &mut $errors)
            }
        }
    }};
}

impl Config {
    /// Read and check `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: 0,
                key: String::new(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        Config::parse(&text, path)
    }

    /// Check `text`, reporting errors against `file`.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        // Syntax first: a document that is not TOML has no sections to check.
        let table = match text.parse::<toml::Table>() {
            Ok(t) => t,
            Err(e) => {
                return Err(ConfigErrors(vec![ConfigError {
                    file: file.to_path_buf(),
                    line: e.span().map_or(0, |s| line_of(text, s.start)),
                    key: String::new(),
                    message: e.message().to_owned(),
                }]));
            }
        };
        for key in table.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                let line = text
                    .lines()
                    .position(|l| {
                        let t = l.trim();
                        t.trim_start_matches('[').starts_with(key.as_str())
                    })
                    .map_or(0, |i| i + 1);
                errors.push(ConfigError {
                    file: file.to_path_buf(),
                    line,
                    key: key.clone(),
                    message: format!("unknown section, expected one of {}", SECTIONS.join(", ")),
                });
            }
        }
        let config = Config {
            agent: section_pass!(text, &table, file, errors, "agent", AgentSection),
            sources: section_pass!(text, &table, file, errors, "sources", SourcesSection),
            sensor: section_pass!(text, &table, file, errors, "sensor", SensorSection),
            audit: section_pass!(text, &table, file, errors, "audit", AuditSection),
            fanotify: section_pass!(text, &table, file, errors, "fanotify", FanotifySection),
            ebpf: section_pass!(text, &table, file, errors, "ebpf", EbpfSection),
            process_tree: section_pass!(text, &table, file, errors, "process_tree", TreeSection),
            jsonl: section_pass!(text, &table, file, errors, "jsonl", JsonlSection),
            logs: section_pass!(text, &table, file, errors, "logs", LogsConfig),
            content: section_pass!(
                text,
                &table,
                file,
                errors,
                "content",
                crate::content::ContentSection
            ),
            fleet: section_pass!(
                text,
                &table,
                file,
                errors,
                "fleet",
                crate::fleet::FleetSection
            ),
            response: section_pass!(
                text,
                &table,
                file,
                errors,
                "response",
                crate::respond::ResponseSection
            ),
            protection: section_pass!(
                text,
                &table,
                file,
                errors,
                "protection",
                crate::protect::ProtectionSection
            ),
            findings: section_pass!(
                text,
                &table,
                file,
                errors,
                "findings",
                crate::group::FindingsSection
            ),
            posture: section_pass!(
                text,
                &table,
                file,
                errors,
                "posture",
                crate::posture::PostureSection
            ),
            scan: section_pass!(text, &table, file, errors, "scan", crate::scan::ScanSection),
            detect: section_pass!(
                text,
                &table,
                file,
                errors,
                "detect",
                crate::tuning::DetectSection
            ),
            outputs: section_pass!(
                text,
                &table,
                file,
                errors,
                "outputs",
                Vec<crate::outputs::RouteConfig>
            ),
        };
        if config.outputs.len() > crate::outputs::config::MAX_OUTPUTS {
            errors.push(ConfigError {
                file: file.to_path_buf(),
                line: crate::outputs::config::line_of(
                    text,
                    crate::outputs::config::MAX_OUTPUTS,
                    "",
                ),
                key: "outputs".into(),
                message: format!(
                    "{} tables, at most {}",
                    config.outputs.len(),
                    crate::outputs::config::MAX_OUTPUTS
                ),
            });
        }
        for (key, message) in config.detect.problems() {
            let base = key.split(['.', '[']).next().unwrap_or("").to_owned();
            errors.push(ConfigError {
                file: file.to_path_buf(),
                line: line_of_key(text, "detect", &base),
                key: format!("detect.{key}"),
                message,
            });
        }
        let mut config = config;
        if let Some(path) = config.detect.exceptions_file.clone() {
            match crate::tuning::DetectSection::read_file(&path) {
                Ok(exceptions) => config.detect.file_exceptions = exceptions,
                Err(problems) => {
                    for (line, key, message) in problems {
                        errors.push(ConfigError {
                            file: path.clone(),
                            line,
                            key,
                            message,
                        });
                    }
                }
            }
        }
        for (i, route) in config.outputs.iter().enumerate() {
            for (key, message) in route.problems() {
                errors.push(ConfigError {
                    file: file.to_path_buf(),
                    line: crate::outputs::config::line_of(text, i, key),
                    key: format!("outputs[{i}].{key}"),
                    message,
                });
            }
        }
        let mut value_error = |section: &str, key: &str, message: String| {
            errors.push(ConfigError {
                file: file.to_path_buf(),
                line: line_of_key(text, section, key),
                key: format!("{section}.{key}"),
                message,
            });
        };
        for (key, message) in config.findings.problems() {
            value_error("findings", key, message);
        }
        for (key, message) in config.posture.problems() {
            value_error("posture", key, message);
        }
        for (key, message) in config.scan.problems() {
            value_error("scan", key, message);
        }
        let a = &config.agent;
        if a.queue_capacity == 0 {
            value_error("agent", "queue_capacity", "must be > 0, got 0".into());
        }
        if a.stats_interval_secs == 0 {
            value_error("agent", "stats_interval_secs", "must be > 0, got 0".into());
        }
        for o in &a.outputs {
            if let Err(m) = OutputSpec::parse(o) {
                value_error("agent", "outputs", m);
            }
        }
        if config.process_tree.capacity < 16 {
            value_error(
                "process_tree",
                "capacity",
                format!("must be >= 16, got {}", config.process_tree.capacity),
            );
        }
        if config.jsonl.rotate_bytes < 4096 {
            value_error(
                "jsonl",
                "rotate_bytes",
                format!("must be >= 4096, got {}", config.jsonl.rotate_bytes),
            );
        }
        let f = &config.fanotify;
        if !(1..=MAX_PATHS_LIMIT).contains(&f.max_paths) {
            value_error(
                "fanotify",
                "max_paths",
                format!("must be 1 to {MAX_PATHS_LIMIT}, got {}", f.max_paths),
            );
        } else if f.paths.len() + f.write_only_paths.len() > f.max_paths {
            value_error(
                "fanotify",
                "paths",
                format!(
                    "{} trees in paths and write_only_paths, more than max_paths = {}",
                    f.paths.len() + f.write_only_paths.len(),
                    f.max_paths
                ),
            );
        }
        let listed = f
            .paths
            .iter()
            .map(|p| ("paths", p))
            .chain(f.write_only_paths.iter().map(|p| ("write_only_paths", p)));
        for (key, p) in listed {
            if !p.is_absolute() {
                value_error(
                    "fanotify",
                    key,
                    format!("must be absolute, got `{}`", p.display()),
                );
            } else if watched_prefix(p).len() > PREFIX_MAX {
                value_error(
                    "fanotify",
                    key,
                    format!(
                        "must be at most {} bytes (the eBPF sensor matches prefixes of {PREFIX_MAX} \
                         bytes with a trailing `/`), got {} bytes: `{}`",
                        PREFIX_MAX - 1,
                        p.as_os_str().len(),
                        p.display()
                    ),
                );
            }
        }
        let e = &config.ebpf;
        for c in &e.ignored_comms {
            if c.is_empty() || c.len() > 15 {
                value_error(
                    "ebpf",
                    "ignored_comms",
                    format!("must be 1 to 15 bytes, got {} bytes: `{c}`", c.len()),
                );
            }
        }
        if !(1..=1000).contains(&e.poll_interval_ms) {
            value_error(
                "ebpf",
                "poll_interval_ms",
                format!("must be 1 to 1000, got {}", e.poll_interval_ms),
            );
        }
        if e.wakeup_bytes < 4096 {
            value_error(
                "ebpf",
                "wakeup_bytes",
                format!("must be >= 4096, got {}", e.wakeup_bytes),
            );
        }
        for (key, message) in config.content.problems() {
            value_error("content", key, message);
        }
        for (key, message) in config.fleet.problems() {
            value_error("fleet", key, message);
        }
        if let Some(message) = config.fleet_needs() {
            value_error("fleet", "console", message);
        }
        for (key, message) in config.response.problems() {
            value_error("response", key, message);
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            errors.sort_by_key(|e| e.line);
            Err(ConfigErrors(errors))
        }
    }

    /// Why the `[fleet]` link cannot run with this configuration, if it cannot: offered
    /// content is delivered into the content directory, so a console needs one.
    pub fn fleet_needs(&self) -> Option<String> {
        (self.fleet.console.is_some() && self.content.dir.is_none()).then(|| {
            "a console delivers content into the content directory: set content.dir \
             (or --content-dir) too"
                .to_owned()
        })
    }

    /// The eBPF sensor's in-kernel path prefixes: one per watched tree (none when the file
    /// source is off), through symbolic links (`/lib` is `/usr/lib/` on a merged-/usr system:
    /// the sensor sees the path the kernel resolved), each once.
    pub fn watched_prefixes(&self) -> Vec<String> {
        if !self.sources.fanotify {
            return Vec::new();
        }
        let mut out: Vec<String> = Vec::new();
        for p in self.fanotify.all_paths() {
            let resolved = p.canonicalize().unwrap_or_else(|_| p.clone());
            let prefix = watched_prefix(&resolved);
            if prefix.len() <= PREFIX_MAX && !out.contains(&prefix) {
                out.push(prefix);
            }
        }
        out
    }

    /// The parsed outputs (already checked by [`Config::parse`]; bad ones are skipped here).
    pub fn outputs(&self) -> Vec<OutputSpec> {
        self.agent
            .outputs
            .iter()
            .filter_map(|o| OutputSpec::parse(o).ok())
            .collect()
    }
}

/// `/etc` → `/etc/`, so the prefix matches files in the tree and not `/etcetera`.
fn watched_prefix(path: &Path) -> String {
    let mut s = path.to_string_lossy().into_owned();
    if !s.ends_with('/') {
        s.push('/');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(text, Path::new("agent.toml"))
    }

    /// The commented /etc/ringfence/agent.toml of the .deb: it loads, and sets nothing but the
    /// jsonl output (every other line shows a default, commented out).
    #[test]
    fn the_packaged_config_loads_and_shows_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/agent.toml");
        let config = Config::load(&path).unwrap();
        let mut expected = Config::default();
        expected.agent.outputs = vec!["jsonl:/var/log/ringfence/events.jsonl".into()];
        assert_eq!(config, expected);
    }

    /// The packaged agent.toml with every commented setting uncommented: `# key = value` lines,
    /// commented table headers and the continuation lines of a multi-line value.
    fn uncommented(text: &str) -> String {
        let mut out = String::new();
        let mut open_brackets = 0i32;
        for line in text.lines() {
            let body = line.strip_prefix("# ").unwrap_or("");
            let key = body.split(" = ").next().unwrap_or("");
            let is_setting = !key.is_empty()
                && body.contains(" = ")
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            let is_header = body.starts_with('[') && body.trim_end().ends_with(']');
            if open_brackets > 0 || is_setting || is_header {
                if !is_header {
                    open_brackets += body.matches('[').count() as i32;
                    open_brackets -= body.matches(']').count() as i32;
                }
                out += body;
            } else {
                out += line;
            }
            out.push('\n');
        }
        out
    }

    /// The section names `Config` accepts, as serde lists them when refusing an unknown one.
    fn config_sections() -> Vec<String> {
        let Err(e) = toml::from_str::<Config>("[no_such_section]\n") else {
            panic!("an unknown section was accepted");
        };
        let message = e.to_string();
        let expected = message.split("expected one of").nth(1).unwrap_or("");
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    /// Every section the agent accepts is documented in the packaged agent.toml, and every
    /// setting shown there (uncommented) is accepted: a new section cannot be forgotten.
    #[test]
    fn the_packaged_config_documents_every_section_and_every_shown_setting_is_accepted() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/agent.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let sections = config_sections();
        let (mut a, mut b) = (sections.clone(), SECTIONS.map(str::to_owned).to_vec());
        a.sort();
        b.sort();
        assert_eq!(a, b, "Config and SECTIONS disagree");
        for section in &sections {
            let shown = text.lines().any(|l| {
                let l = l.trim_start_matches("# ");
                l == format!("[{section}]") || l == format!("[[{section}]]")
            });
            assert!(shown, "packaging/agent.toml does not document [{section}]");
        }
        // Files must exist to be accepted (a console's CA for ca_file), and the order key is a
        // placeholder.
        let tls = tempfile::tempdir().unwrap();
        ringfence_wire::tls::ConsoleTls::load_or_create(tls.path(), &["localhost".into()]).unwrap();
        let ca = tls.path().join(ringfence_wire::tls::files::CA_CERT);
        let all = uncommented(&text)
            .replace("/etc/ringfence/exceptions.toml", "/dev/null")
            .replace("/etc/ringfence/console-ca.pem", &ca.display().to_string())
            .replace(
                "\"ed25519:...\"",
                &format!("\"ed25519:{}\"", "0".repeat(64)),
            );
        assert!(all.contains("\nprofile = \"default\"\n"), "{all}");
        let config = Config::parse(&all, &path).unwrap_or_else(|e| panic!("{e}\n{all}"));
        assert_eq!(config.outputs.len(), 1);
        assert_eq!(config.detect.exceptions.len(), 1);
        assert_eq!(config.logs.files.len(), 5);
    }

    #[test]
    fn default_round_trips_and_empty_is_default() {
        let text = toml::to_string(&Config::default()).unwrap_or_default();
        assert_eq!(parse(&text), Ok(Config::default()));
        assert_eq!(parse(""), Ok(Config::default()));
    }

    #[test]
    fn every_error_is_reported_with_file_line_and_key() {
        let text = "\
[agent]
queue_capacity = 0
colour = \"red\"

[fanotify]
paths = \"not-a-list\"

[process_tree]
capacity = 1

[nonsense]
x = 1
";
        let Err(ConfigErrors(errs)) = parse(text) else {
            panic!("expected errors");
        };
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let all = shown.join("\n");
        assert!(
            all.contains("agent.toml:3: agent.colour: unknown field"),
            "{all}"
        );
        assert!(
            all.contains("agent.toml:6: fanotify.paths: invalid type"),
            "{all}"
        );
        assert!(
            all.contains("agent.toml:9: process_tree.capacity: must be >= 16, got 1"),
            "{all}"
        );
        assert!(
            all.contains("agent.toml:11: nonsense: unknown section"),
            "{all}"
        );
        // The [agent] section failed to parse; its other keys were still checked one by one.
        assert!(
            all.contains("agent.toml:2: agent.queue_capacity: must be > 0, got 0"),
            "{all}"
        );
        assert_eq!(errs.len(), 5, "{all}");
    }

    #[test]
    fn every_bad_key_of_a_section_is_reported_not_only_the_first() {
        let text = "\
[agent]
colour = \"red\"
mode = \"fast\"
queue_capacity = \"many\"
stats_interval_secs = 0
host_name = \"web-01\"

[ebpf]
poll_interval_ms = \"soon\"
wakeup_bytes = 1
";
        let Err(ConfigErrors(errs)) = parse(text) else {
            panic!("expected errors");
        };
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let all = shown.join("\n");
        for (line, key) in [
            (2, "agent.colour"),
            (3, "agent.mode"),
            (4, "agent.queue_capacity"),
            (5, "agent.stats_interval_secs"),
            (9, "ebpf.poll_interval_ms"),
            (10, "ebpf.wakeup_bytes"),
        ] {
            assert!(
                errs.iter().any(|e| e.line == line && e.key == key),
                "no error for {key} at line {line}:\n{all}"
            );
        }
        assert_eq!(errs.len(), 6, "{all}");
    }

    #[test]
    fn value_errors_name_their_line() {
        let Err(ConfigErrors(errs)) =
            parse("[agent]\n\nqueue_capacity = 0\noutputs = [\"file:x\"]\n")
        else {
            panic!("expected errors");
        };
        assert_eq!(errs[0].line, 3);
        assert_eq!(errs[0].key, "agent.queue_capacity");
        assert_eq!(errs[1].key, "agent.outputs");
    }

    #[test]
    fn findings_section_sets_grouping_within_bounds() {
        let Ok(c) = parse("[findings]\ngroup_window_secs = 0\ngroup_capacity = 16\n") else {
            panic!("expected a config");
        };
        assert_eq!(c.findings.group_window_secs, 0);
        assert_eq!(c.findings.group_capacity, 16);
        let Err(ConfigErrors(errs)) =
            parse("[findings]\ngroup_window_secs = 7200\ngroup_capacity = 0\n")
        else {
            panic!("expected errors");
        };
        assert_eq!(errs.len(), 2);
        assert_eq!(
            (errs[0].line, errs[0].key.as_str()),
            (2, "findings.group_window_secs")
        );
        assert_eq!(
            (errs[1].line, errs[1].key.as_str()),
            (3, "findings.group_capacity")
        );
    }

    #[test]
    fn fleet_section_is_checked_and_needs_a_content_dir() {
        let Err(ConfigErrors(errs)) = parse(
            "[fleet]\nconsole = \"http://console:8650\"\nregion = \"\"\nfindings_queue = 0\n",
        ) else {
            panic!("expected errors");
        };
        let all: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let all = all.join("\n");
        assert!(
            all.contains("agent.toml:2: fleet.console: a console delivers content"),
            "{all}"
        );
        assert!(all.contains("fleet.tags: region"), "{all}");
        assert!(all.contains("agent.toml:4: fleet.findings_queue"), "{all}");
        let pin = "ab".repeat(32);
        let ok = parse(&format!("[content]\ndir = \"/var/lib/ringfence/content\"\n\n[fleet]\nconsole = \"https://console:8650\"\nca_sha256 = [\"{pin}\"]\n[fleet.tags]\nteam = \"web\"\n"))
            .unwrap();
        assert_eq!(ok.fleet.tags["team"], "web");
    }

    #[test]
    fn agent_cpu_is_a_word_or_a_number() {
        let c = parse("[agent]\ncpu = 1\n").expect("a number");
        assert_eq!(c.agent.cpu, CpuChoice::Cpu(1));
        let c = parse("[agent]\ncpu = \"off\"\n").expect("a word");
        assert_eq!(c.agent.cpu, CpuChoice::Off);
        let Err(ConfigErrors(errs)) = parse("[agent]\n\ncpu = \"all\"\n") else {
            panic!("expected errors");
        };
        let all: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(errs[0].line, 3, "{all:?}");
        assert_eq!(errs[0].key, "agent.cpu", "{all:?}");
        assert!(
            all[0].contains("expected \"auto\", \"off\" or a CPU number"),
            "{all:?}"
        );
    }

    #[test]
    fn audit_add_rules_is_auto_or_a_bool() {
        assert_eq!(
            parse("").map(|c| c.audit.add_rules).ok(),
            Some(AddRules::Auto)
        );
        for (text, want) in [
            ("\"auto\"", AddRules::Auto),
            ("true", AddRules::Always),
            ("false", AddRules::Never),
        ] {
            let c = parse(&format!("[audit]\nadd_rules = {text}\n"));
            assert_eq!(c.map(|c| c.audit.add_rules).ok(), Some(want), "{text}");
        }
        let Err(ConfigErrors(errs)) = parse("[audit]\nadd_rules = \"yes\"\n") else {
            panic!("expected errors");
        };
        assert_eq!((errs[0].line, errs[0].key.as_str()), (2, "audit.add_rules"));
        assert!(
            errs[0].to_string().contains("\"auto\", true or false"),
            "{errs:?}"
        );
    }

    #[test]
    fn syntax_error_names_the_line() {
        let Err(ConfigErrors(errs)) = parse("[agent]\nmode = \n") else {
            panic!("expected errors");
        };
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, 2);
    }

    #[test]
    fn ebpf_section_is_checked_and_paths_become_prefixes() {
        let long = format!("/{}", "d".repeat(130));
        let text = format!(
            "[fanotify]\npaths = [\"/etc\", \"/\", \"{long}\"]\n\n[ebpf]\nignored_comms = [\"\", \"sshd\"]\npoll_interval_ms = 0\nkinds_off = [\"memory_exec\"]\n"
        );
        let Err(ConfigErrors(errs)) = parse(&text) else {
            panic!("expected errors");
        };
        let all: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let all = all.join("\n");
        assert!(
            all.contains("agent.toml:2: fanotify.paths: must be at most 127 bytes"),
            "{all}"
        );
        assert!(
            all.contains("agent.toml:5: ebpf.ignored_comms: must be 1 to 15 bytes"),
            "{all}"
        );
        assert!(
            all.contains("agent.toml:6: ebpf.poll_interval_ms: must be 1 to 1000, got 0"),
            "{all}"
        );
        assert_eq!(errs.len(), 3, "{all}");

        let ok = parse(
            "[fanotify]\npaths = [\"/etc\", \"/\", \"/tmp/x/\"]\nwrite_only_paths = []\n[ebpf]\nkinds_off = [\"memory_exec\"]\n",
        );
        let Ok(c) = ok else {
            panic!("{ok:?}");
        };
        assert_eq!(c.watched_prefixes(), ["/etc/", "/", "/tmp/x/"]);
        assert_eq!(c.ebpf.kinds_off, [EventKind::MemoryExec]);
        let mut off = c.clone();
        off.sources.fanotify = false;
        assert!(off.watched_prefixes().is_empty());
    }

    #[test]
    fn watched_trees_are_bounded_and_become_prefixes_once() {
        let Err(ConfigErrors(errs)) = parse(
            "[fanotify]\npaths = [\"/etc\", \"/tmp\"]\nwrite_only_paths = [\"usr/bin\"]\nmax_paths = 2\n",
        ) else {
            panic!("expected errors");
        };
        let all: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let all = all.join("\n");
        assert!(
            all.contains(
                "fanotify.paths: 3 trees in paths and write_only_paths, more than max_paths = 2"
            ),
            "{all}"
        );
        assert!(
            all.contains("agent.toml:3: fanotify.write_only_paths: must be absolute"),
            "{all}"
        );
        let Err(ConfigErrors(errs)) = parse("[fanotify]\nmax_paths = 2000\n") else {
            panic!("expected errors");
        };
        assert!(
            errs[0].to_string().contains("must be 1 to 1024"),
            "{errs:?}"
        );
        // The defaults fit their bound; a tree named twice (or through a link to another) is
        // one prefix.
        let d = Config::default();
        assert!(d.fanotify.all_paths().count() <= d.fanotify.max_paths);
        let Ok(c) =
            parse("[fanotify]\npaths = [\"/etc\", \"/etc/\"]\nwrite_only_paths = [\"/etc\"]\n")
        else {
            panic!("parse");
        };
        assert_eq!(c.watched_prefixes(), ["/etc/"]);
    }

    #[test]
    fn output_specs() {
        assert_eq!(OutputSpec::parse("stdout"), Ok(OutputSpec::Stdout));
        assert_eq!(
            OutputSpec::parse("jsonl:/tmp/x.jsonl"),
            Ok(OutputSpec::Jsonl("/tmp/x.jsonl".into()))
        );
        assert!(OutputSpec::parse("jsonl:").is_err());
        assert!(OutputSpec::parse("syslog").is_err());
    }
}
