//! The `Event` type: one observation from any source, in one shape for every mode.
//!
//! Sub-records (`network`, `file`, ...) are present only for the kinds that carry them, so an
//! event stays small. Field-level access for rules and serialization goes through
//! [`crate::Field`]; this module only holds the data.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::kind::EventKind;
use crate::time::Timestamp;

/// Which source produced an event (`ringfence.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SourceKind {
    Ebpf,
    ProcConnector,
    Audit,
    Fanotify,
    Procfs,
    AuthLog,
    AccessLog,
    Replay,
    Agent,
    /// DNS packets captured in user space (both modes).
    Dns,
}

impl SourceKind {
    pub const ALL: [SourceKind; 10] = [
        SourceKind::Ebpf,
        SourceKind::ProcConnector,
        SourceKind::Audit,
        SourceKind::Fanotify,
        SourceKind::Procfs,
        SourceKind::AuthLog,
        SourceKind::AccessLog,
        SourceKind::Replay,
        SourceKind::Agent,
        SourceKind::Dns,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            SourceKind::Ebpf => "ebpf",
            SourceKind::ProcConnector => "proc_connector",
            SourceKind::Audit => "audit",
            SourceKind::Fanotify => "fanotify",
            SourceKind::Procfs => "procfs",
            SourceKind::AuthLog => "auth_log",
            SourceKind::AccessLog => "access_log",
            SourceKind::Replay => "replay",
            SourceKind::Agent => "agent",
            SourceKind::Dns => "dns",
        }
    }

    pub fn parse(s: &str) -> Option<SourceKind> {
        SourceKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The sensor mode an agent runs in; the schema records which fields each mode fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Ebpf,
    Driverless,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Ebpf, Mode::Driverless];

    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Ebpf => "ebpf",
            Mode::Driverless => "driverless",
        }
    }
}

/// `event.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    Failure,
    Unknown,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            "unknown" => Some(Outcome::Unknown),
            _ => None,
        }
    }
}

/// One observation. Build with [`Event::new`] and fill the parts the source knows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub timestamp: Timestamp,
    pub kind: Option<EventKind>,
    pub source: Option<SourceKind>,
    /// Enrichment could not complete (e.g. the process exited before /proc was read).
    pub partial: bool,
    pub outcome: Option<Outcome>,
    /// The syscall behind the event where one is known (`setuid`, `mprotect`, `connect`).
    pub syscall: Option<Cow<'static, str>>,
    pub host_name: Option<Arc<str>>,
    pub process: Option<Process>,
    pub user: User,
    /// `container.*` and `orchestrator.*`: shared, as every event of a process carries the
    /// same context.
    pub container: Option<Arc<Container>>,
    pub network: Option<Network>,
    pub file: Option<File>,
    pub target: Option<TargetProcess>,
    pub privilege: Option<Privilege>,
    /// Boxed, as is `web`: few events carry them, and inline they would make every event
    /// too big for the allocator's per-thread cache (events travel boxed to the pipeline).
    pub detail: Option<Box<Detail>>,
    pub web: Option<Box<Web>>,
    pub dns: Option<Box<Dns>>,
    pub service_name: Option<Cow<'static, str>>,
    pub auth_method: Option<String>,
    pub log: Option<Log>,
    pub health: Option<Health>,
}

impl Event {
    pub fn new(kind: EventKind, source: SourceKind, timestamp: Timestamp) -> Event {
        Event {
            timestamp,
            kind: Some(kind),
            source: Some(source),
            ..Event::default()
        }
    }

    /// A `sensor-health` event stamped now, carrying a message and no loss counts: what the
    /// agent says about itself (a restart, a refused token, a rollback).
    pub fn health_notice(source: SourceKind, message: String) -> Event {
        let mut e = Event::new(EventKind::SensorHealth, source, Timestamp::now());
        e.health = Some(Health {
            dropped: 0,
            gaps: 0,
            message: Some(message),
        });
        e
    }

    /// The kind; events always have one once built by a source or parsed.
    pub fn kind(&self) -> EventKind {
        self.kind.unwrap_or(EventKind::LogLine)
    }

    pub fn process_mut(&mut self) -> &mut Process {
        self.process.get_or_insert_with(Process::default)
    }
}

/// The subject process (`process.*`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Process {
    pub pid: u32,
    pub executable: Option<String>,
    pub name: Option<String>,
    pub command_line: Option<String>,
    pub args: Vec<String>,
    pub working_directory: Option<String>,
    pub start: Option<Timestamp>,
    pub exit_code: Option<i64>,
    pub parent: Option<Parent>,
    /// Ancestors beyond nothing: parent first, then grandparent, up to the tree's depth limit.
    pub ancestors: Ancestry,
}

/// `process.parent.*`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parent {
    pub pid: u32,
    pub executable: Option<String>,
    pub name: Option<String>,
    pub command_line: Option<String>,
    pub start: Option<Timestamp>,
}

/// `process.ancestors.*`: parallel lists, parent first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ancestry {
    pub pids: Vec<i64>,
    pub executables: Vec<String>,
}

/// `user.*` and `group.*`: the acting credentials, or for authentication events the account.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct User {
    pub id: Option<i64>,
    pub name: Option<String>,
    pub effective_id: Option<i64>,
    pub group_id: Option<i64>,
}

/// `container.*` and `orchestrator.*`: the container a process runs in, from its cgroup path
/// and the runtime's own state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Container {
    /// The runtime's full container id (64 hex digits for docker, podman, containerd, CRI-O).
    pub id: String,
    /// `docker`, `containerd`, `cri-o` or `podman`.
    pub runtime: Cow<'static, str>,
    /// The image as the runtime names it (`docker.io/library/nginx:1.27`), when its state says.
    pub image_name: Option<String>,
    /// Kubernetes pod name and namespace, from the runtime's pod labels.
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
}

/// `dns.*`: one DNS message, a query or its answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dns {
    /// `query` or `answer`.
    pub message_type: Cow<'static, str>,
    pub question_name: String,
    /// `A`, `AAAA`, `TXT`, ... or the number for a type without a name.
    pub question_type: Cow<'static, str>,
    /// `NOERROR`, `NXDOMAIN`, ... (answers only).
    pub response_code: Option<Cow<'static, str>>,
    /// Addresses in the answer's A and AAAA records, as text.
    pub resolved_ip: Vec<String>,
}

/// `network.*`, `source.*`, `destination.*`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Network {
    pub transport: Option<Cow<'static, str>>,
    pub direction: Option<Cow<'static, str>>,
    pub source_ip: Option<IpAddr>,
    pub source_port: Option<u16>,
    pub destination_ip: Option<IpAddr>,
    pub destination_port: Option<u16>,
    pub destination_domain: Option<String>,
}

impl Network {
    /// `network.type`, derived from the addresses.
    pub fn ip_version(&self) -> Option<&'static str> {
        match self.destination_ip.or(self.source_ip)? {
            IpAddr::V4(_) => Some("ipv4"),
            IpAddr::V6(_) => Some("ipv6"),
        }
    }
}

/// `file.*`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct File {
    pub path: String,
    /// For renames: where the file was before.
    pub original_path: Option<String>,
    /// Octal permission string, e.g. `"4755"`.
    pub mode: Option<String>,
    pub sha256: Option<String>,
    pub size: Option<i64>,
}

impl File {
    /// `file.name`: the last path component.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// `file.directory`: everything before the last `/`.
    pub fn directory(&self) -> Option<&str> {
        match self.path.rfind('/') {
            Some(0) => Some("/"),
            Some(i) => Some(&self.path[..i]),
            None => None,
        }
    }

    /// `file.extension`: after the last `.` of the name, if the name is not a dotfile.
    pub fn extension(&self) -> Option<&str> {
        let name = self.name();
        match name.rfind('.') {
            Some(i) if i > 0 && i + 1 < name.len() => Some(&name[i + 1..]),
            _ => None,
        }
    }
}

/// `target.process.*`: the process acted on by ptrace or a signal.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TargetProcess {
    pub pid: u32,
    pub executable: Option<String>,
}

/// `ringfence.privilege.*`: the credentials asked for by a setuid-family call or capset.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Privilege {
    pub new_uid: Option<i64>,
    pub new_euid: Option<i64>,
    pub new_gid: Option<i64>,
    pub capabilities: Option<i64>,
}

/// Kind-specific details that are not worth a record of their own.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detail {
    pub ptrace_request: Option<i64>,
    pub signal_number: Option<i64>,
    pub module_name: Option<String>,
    pub bpf_command: Option<Cow<'static, str>>,
    pub bpf_program_type: Option<Cow<'static, str>>,
    pub bpf_program_name: Option<String>,
    /// `r`, `w`, `x` letters of the requested protection.
    pub memory_protection: Option<Cow<'static, str>>,
}

/// `url.*`, `http.*`, `user_agent.*`: one request from a web access log.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Web {
    pub url_original: String,
    pub url_path: Option<String>,
    pub url_query: Option<String>,
    pub method: Option<String>,
    pub status_code: Option<i64>,
    pub response_bytes: Option<i64>,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
}

/// `log.file.path` and `message`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Log {
    pub file_path: Option<String>,
    pub message: String,
}

/// `ringfence.health.*`: what a source lost.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Health {
    pub dropped: i64,
    pub gaps: i64,
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_directory_extension() {
        let f = File {
            path: "/var/www/shell.php".into(),
            ..File::default()
        };
        assert_eq!(f.name(), "shell.php");
        assert_eq!(f.directory(), Some("/var/www"));
        assert_eq!(f.extension(), Some("php"));
        let dot = File {
            path: "/root/.bashrc".into(),
            ..File::default()
        };
        assert_eq!(dot.extension(), None);
        assert_eq!(
            File {
                path: "/x".into(),
                ..File::default()
            }
            .directory(),
            Some("/")
        );
    }
}
