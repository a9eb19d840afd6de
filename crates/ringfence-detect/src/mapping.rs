//! Sigma's taxonomy mapped onto Ringfence's fields: which event kinds a `logsource` stands for,
//! and which field (or derived value) each Sigma field name reads. A logsource or field with no
//! mapping is an error the compiler reports; nothing here guesses.

use ringfence_event::{EventKind as K, Field, KindSet};
use rsigma_parser::LogSource;

/// What a Sigma field name reads from an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accessor {
    /// A schema field, by its ECS name.
    Field(Field),
    /// auditd `a0`, `a1`, ...: the n-th argument of an exec (EXECVE record).
    Arg(usize),
    /// auditd `type`: the audit record types the event stands for (EXECVE, SYSCALL, PATH, ...).
    AuditType,
    /// auditd `SYSCALL`: the system call behind the event (`execve` for an exec).
    AuditSyscall,
    /// Sigma `Initiated`: `true` when this host opened the connection.
    Initiated,
    /// auditd `nametype` of a PATH record: CREATE, DELETE or NORMAL, from the file event kind.
    AuditNameType,
}

impl Accessor {
    /// The schema field whose filling decides where this accessor has a value.
    pub fn backing_field(self) -> Field {
        match self {
            Accessor::Field(f) => f,
            Accessor::Arg(_) => Field::ProcessArgs,
            Accessor::AuditType => Field::EventAction,
            Accessor::AuditSyscall => Field::Syscall,
            Accessor::Initiated => Field::NetworkDirection,
            Accessor::AuditNameType => Field::FilePath,
        }
    }

    /// The name shown in reports.
    pub fn describe(self) -> String {
        match self {
            Accessor::Field(f) => f.name().to_owned(),
            Accessor::Arg(n) => format!("process.args[{n}]"),
            Accessor::AuditType => "audit record type (from event.action)".into(),
            Accessor::AuditSyscall => "ringfence.syscall (execve for an exec)".into(),
            Accessor::Initiated => "network.direction == egress".into(),
            Accessor::AuditNameType => "audit PATH name type (from event.action)".into(),
        }
    }
}

/// Audit record types an event can stand for. A rule asking for another type would never match.
pub const AUDIT_TYPES: &[&str] = &["EXECVE", "SYSCALL", "PATH", "SOCKADDR", "CWD", "PROCTITLE"];

/// The audit record types `kind` stands for.
pub fn audit_types(kind: K) -> &'static [&'static str] {
    match kind {
        K::ProcessExec => &["EXECVE", "SYSCALL", "CWD", "PROCTITLE"],
        K::FileCreate | K::FileModify | K::FileDelete | K::FileRename | K::FileExecOpen => {
            &["PATH", "SYSCALL"]
        }
        K::NetworkConnect | K::NetworkAccept | K::NetworkBind | K::NetworkListen => {
            &["SOCKADDR", "SYSCALL"]
        }
        K::ProcessFork
        | K::ProcessExit
        | K::PrivilegeChange
        | K::Ptrace
        | K::ModuleLoad
        | K::BpfLoad
        | K::MemfdCreate
        | K::MemoryExec
        | K::Signal => &["SYSCALL"],
        _ => &[],
    }
}

/// Which logsource family a rule belongs to; decides the field table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    ProcessCreation,
    Network,
    File,
    Auditd,
    Webserver,
    /// Log lines and authentication events (sshd, syslog, auth, sudo, cron, ...).
    Logs,
    /// Ringfence's own categories (module_load, bpf_load, ptrace, ...): ECS names only.
    Kernel,
    /// DNS lookups (`dns_query`, Sysmon's taxonomy; `dns`, Zeek's).
    Dns,
}

/// A resolved logsource.
#[derive(Debug, Clone)]
pub struct Source {
    pub family: Family,
    /// Event kinds the rule runs on.
    pub kinds: KindSet,
    /// For log services: the `service.name` values (lowercase) the rule is limited to.
    pub services: &'static [&'static str],
}

const FILE_EVENT: KindSet = KindSet::of(&[K::FileCreate, K::FileModify, K::FileRename]);
const SUBJECT: KindSet = KindSet::of(&[
    K::ProcessExec,
    K::ProcessFork,
    K::ProcessExit,
    K::NetworkConnect,
    K::NetworkAccept,
    K::NetworkBind,
    K::NetworkListen,
    K::FileCreate,
    K::FileModify,
    K::FileDelete,
    K::FileRename,
    K::FileExecOpen,
    K::PrivilegeChange,
    K::Ptrace,
    K::ModuleLoad,
    K::BpfLoad,
    K::MemfdCreate,
    K::MemoryExec,
    K::Signal,
]);
const LOGS: KindSet = KindSet::of(&[K::AuthSuccess, K::AuthFailure, K::LogLine]);

/// Resolves a rule's logsource, or says why no source provides it.
pub fn resolve(ls: &LogSource) -> Result<Source, String> {
    let product = ls.product.as_deref().map(str::to_ascii_lowercase);
    if let Some(p) = product.as_deref()
        && p != "linux"
    {
        return Err(format!(
            "logsource product `{p}`: Ringfence observes Linux hosts only"
        ));
    }
    let category = ls.category.as_deref().map(str::to_ascii_lowercase);
    let service = ls.service.as_deref().map(str::to_ascii_lowercase);
    let src = |family, kinds, services| {
        Ok(Source {
            family,
            kinds,
            services,
        })
    };
    match (category.as_deref(), service.as_deref()) {
        (Some("process_creation"), None) => {
            src(Family::ProcessCreation, KindSet::of(&[K::ProcessExec]), &[])
        }
        (Some("network_connection"), None) => src(
            Family::Network,
            KindSet::of(&[K::NetworkConnect, K::NetworkAccept]),
            &[],
        ),
        (Some("file_event" | "file_creation"), None) => src(Family::File, FILE_EVENT, &[]),
        (Some("file_change"), None) => src(Family::File, KindSet::of(&[K::FileModify]), &[]),
        (Some("file_delete"), None) => src(Family::File, KindSet::of(&[K::FileDelete]), &[]),
        (Some("file_rename"), None) => src(Family::File, KindSet::of(&[K::FileRename]), &[]),
        (Some("file_access" | "file_exec"), None) => {
            src(Family::File, KindSet::of(&[K::FileExecOpen]), &[])
        }
        (Some("webserver"), None) => src(Family::Webserver, KindSet::of(&[K::WebRequest]), &[]),
        (Some("dns_query" | "dns"), None) => src(Family::Dns, KindSet::of(&[K::Dns]), &[]),
        (Some("module_load"), None) => src(Family::Kernel, KindSet::of(&[K::ModuleLoad]), &[]),
        (Some("bpf_load"), None) => src(Family::Kernel, KindSet::of(&[K::BpfLoad]), &[]),
        (Some("ptrace" | "process_access"), None) => {
            src(Family::Kernel, KindSet::of(&[K::Ptrace]), &[])
        }
        (Some("privilege_change"), None) => {
            src(Family::Kernel, KindSet::of(&[K::PrivilegeChange]), &[])
        }
        (Some("memory_exec"), None) => src(Family::Kernel, KindSet::of(&[K::MemoryExec]), &[]),
        (Some("memfd_create"), None) => src(Family::Kernel, KindSet::of(&[K::MemfdCreate]), &[]),
        (Some("signal"), None) => src(Family::Kernel, KindSet::of(&[K::Signal]), &[]),
        (Some("process_termination"), None) => {
            src(Family::ProcessCreation, KindSet::of(&[K::ProcessExit]), &[])
        }
        (None, Some("auditd")) => src(Family::Auditd, SUBJECT, &[]),
        (None, Some("sshd")) => src(Family::Logs, LOGS, &["sshd"]),
        (None, Some("sudo")) => src(Family::Logs, LOGS, &["sudo"]),
        (None, Some("su")) => src(Family::Logs, LOGS, &["su"]),
        (None, Some("cron")) => src(Family::Logs, LOGS, &["cron", "crond", "anacron"]),
        (None, Some("vsftpd")) => src(Family::Logs, LOGS, &["vsftpd"]),
        (None, Some("clamav")) => src(Family::Logs, LOGS, &["clamd", "freshclam", "clamav"]),
        (None, Some("guacamole")) => src(Family::Logs, LOGS, &["guacd", "guacamole"]),
        (None, Some("syslog" | "auth")) | (None, None) if category.is_none() => {
            src(Family::Logs, LOGS, &[])
        }
        // Kinds Sigma has no category for: the kind's `event.action`, `-` written `_`.
        (Some(c), None) if K::from_action(&c.replace('_', "-")).is_some() => {
            let kind = K::from_action(&c.replace('_', "-"));
            src(
                Family::Kernel,
                kind.map_or(KindSet::EMPTY, |k| KindSet::of(&[k])),
                &[],
            )
        }
        _ => Err(format!(
            "logsource {}: no Ringfence source provides it",
            describe(ls)
        )),
    }
}

/// `category: x, service: y` as written.
pub fn describe(ls: &LogSource) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("product", &ls.product),
        ("category", &ls.category),
        ("service", &ls.service),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}: {v}"));
        }
    }
    if parts.is_empty() {
        "(empty)".into()
    } else {
        parts.join(", ")
    }
}

/// Maps a Sigma field name for `family` to an accessor, or says why it cannot.
///
/// ECS names from the schema are accepted verbatim everywhere.
pub fn field(family: Family, name: &str) -> Result<Accessor, String> {
    if let Some(f) = Field::from_name(name) {
        return Ok(Accessor::Field(f));
    }
    if let Some(a) = table(family, name) {
        return a;
    }
    // Sigma field names are case-sensitive in principle; rules in the wild mix `User`/`USER`.
    let lower = name.to_ascii_lowercase();
    if let Some(f) = Field::ALL
        .iter()
        .copied()
        .find(|f| f.name().eq_ignore_ascii_case(&lower))
    {
        return Ok(Accessor::Field(f));
    }
    for candidate in TABLE_NAMES {
        if candidate.eq_ignore_ascii_case(name)
            && let Some(a) = table(family, candidate)
        {
            return a;
        }
    }
    Err(format!(
        "field `{name}` has no mapping for this logsource (use a Sigma taxonomy name or an ECS field from `ringfence schema`)"
    ))
}

/// The Sigma taxonomy field names the tables know (their case-insensitive fallback).
pub const TABLE_NAMES: &[&str] = &[
    "Image",
    "CommandLine",
    "ParentImage",
    "ParentCommandLine",
    "User",
    "CurrentDirectory",
    "ProcessId",
    "ParentProcessId",
    "TargetFilename",
    "DestinationIp",
    "DestinationPort",
    "DestinationHostname",
    "QueryName",
    "QueryResults",
    "QueryType",
    "query",
    "answer",
    "record_type",
    "SourceIp",
    "SourcePort",
    "Initiated",
    "Protocol",
    "type",
    "SYSCALL",
    "exe",
    "comm",
    "uid",
    "euid",
    "gid",
    "pid",
    "ppid",
    "cwd",
    "name",
    "nametype",
    "cs-uri-query",
    "cs-uri-stem",
    "cs-uri",
    "cs-method",
    "sc-status",
    "c-ip",
    "cs-user-agent",
    "cs-referer",
    "cs-bytes",
    "sc-bytes",
];

fn ok(f: Field) -> Option<Result<Accessor, String>> {
    Some(Ok(Accessor::Field(f)))
}

fn no(why: &str) -> Option<Result<Accessor, String>> {
    Some(Err(why.to_owned()))
}

fn process_common(name: &str) -> Option<Result<Accessor, String>> {
    match name {
        "Image" => ok(Field::ProcessExecutable),
        "CommandLine" => ok(Field::ProcessCommandLine),
        "ParentImage" => ok(Field::ParentExecutable),
        "ParentCommandLine" => ok(Field::ParentCommandLine),
        "User" => ok(Field::UserName),
        "CurrentDirectory" => ok(Field::ProcessWorkingDirectory),
        "ProcessId" => ok(Field::ProcessPid),
        "ParentProcessId" => ok(Field::ParentPid),
        "LogonId" => no(
            "field `LogonId`: Ringfence events carry no logon session id (audit login uid) on Linux",
        ),
        _ => None,
    }
}

fn table(family: Family, name: &str) -> Option<Result<Accessor, String>> {
    match family {
        Family::ProcessCreation => process_common(name),
        Family::Network => match name {
            "DestinationIp" => ok(Field::DestinationIp),
            "DestinationPort" => ok(Field::DestinationPort),
            "DestinationHostname" => ok(Field::DestinationDomain),
            "SourceIp" => ok(Field::SourceIp),
            "SourcePort" => ok(Field::SourcePort),
            "Protocol" => ok(Field::NetworkTransport),
            "Initiated" => Some(Ok(Accessor::Initiated)),
            _ => process_common(name),
        },
        Family::File => match name {
            "TargetFilename" => ok(Field::FilePath),
            _ => process_common(name),
        },
        Family::Auditd => match name {
            "type" => Some(Ok(Accessor::AuditType)),
            "SYSCALL" | "syscall" => Some(Ok(Accessor::AuditSyscall)),
            "exe" => ok(Field::ProcessExecutable),
            "comm" => ok(Field::ProcessName),
            "uid" => ok(Field::UserId),
            "euid" => ok(Field::UserEffectiveId),
            "gid" => ok(Field::GroupId),
            "pid" => ok(Field::ProcessPid),
            "ppid" => ok(Field::ParentPid),
            "cwd" => ok(Field::ProcessWorkingDirectory),
            "name" => ok(Field::FilePath),
            "key" => no(
                "field `key`: audit rule keys belong to the host's audit rules, which Ringfence does not read",
            ),
            "nametype" => Some(Ok(Accessor::AuditNameType)),
            "unit" => no("field `unit`: Ringfence does not observe systemd service records"),
            _ => match name.strip_prefix('a').map(str::parse::<usize>) {
                Some(Ok(n)) if n < 64 => Some(Ok(Accessor::Arg(n))),
                _ => None,
            },
        },
        Family::Webserver => match name {
            "cs-uri-query" => ok(Field::UrlQuery),
            "cs-uri-stem" => ok(Field::UrlPath),
            "cs-uri" => ok(Field::UrlOriginal),
            "cs-method" => ok(Field::HttpMethod),
            "sc-status" => ok(Field::HttpStatus),
            "c-ip" => ok(Field::SourceIp),
            "cs-user-agent" => ok(Field::UserAgent),
            "cs-referer" => ok(Field::HttpReferrer),
            "sc-bytes" => ok(Field::HttpResponseBytes),
            _ => None,
        },
        Family::Logs => match name {
            "User" | "USER" => ok(Field::UserName),
            _ => None,
        },
        Family::Dns => match name {
            "QueryName" | "query" => ok(Field::DnsQuestionName),
            "QueryResults" | "answer" => ok(Field::DnsResolvedIp),
            "record_type" | "QueryType" => ok(Field::DnsQuestionType),
            "QueryStatus" => no(
                "field `QueryStatus`: Windows DNS status codes; Ringfence has dns.response_code (NOERROR, NXDOMAIN, ...)",
            ),
            _ => process_common(name),
        },
        Family::Kernel => match name {
            "Image" => ok(Field::ProcessExecutable),
            "CommandLine" => ok(Field::ProcessCommandLine),
            "ParentImage" => ok(Field::ParentExecutable),
            "User" => ok(Field::UserName),
            _ => None,
        },
    }
}

/// What keyword (field-less) values search, per family.
pub fn keywords(family: Family) -> Result<Accessor, String> {
    match family {
        Family::Logs => Ok(Accessor::Field(Field::Message)),
        Family::ProcessCreation => Ok(Accessor::Field(Field::ProcessCommandLine)),
        Family::Webserver => Ok(Accessor::Field(Field::UrlOriginal)),
        // An EXECVE record's text is the exec's arguments: keywords search the command line.
        Family::Auditd => Ok(Accessor::Field(Field::ProcessCommandLine)),
        Family::Network | Family::File | Family::Kernel | Family::Dns => {
            Err("keyword search: this logsource has no free-text field".into())
        }
    }
}
