//! The field schema: every field an event can carry, its type, the kinds that carry it and the
//! kinds each sensor mode actually fills.
//!
//! This table is the contract between sensors and content. Rules are compiled against it, and
//! a rule naming a field that the agent's mode never fills for the rule's event kinds is refused
//! before it ships. [`Field::get`] reads a field out of an [`Event`] without allocating, and is
//! exhaustive over the table, so the schema and the data cannot drift apart silently.

use std::net::IpAddr;

use serde::Serialize;

use crate::event::{Event, Mode};
use crate::kind::{EventKind, KindSet};
use crate::time::Timestamp;

/// Bumped whenever a field is added, removed, or changes type or coverage.
pub const SCHEMA_VERSION: u32 = 2;

/// The value type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Keyword,
    Long,
    Ip,
    Boolean,
    Date,
    KeywordList,
    LongList,
}

/// One row of the schema.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FieldSpec {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub ty: FieldType,
    #[serde(serialize_with = "ser_kinds")]
    pub kinds: KindSet,
    #[serde(serialize_with = "ser_kinds")]
    pub ebpf: KindSet,
    #[serde(serialize_with = "ser_kinds")]
    pub driverless: KindSet,
    /// Computed from other fields (e.g. `file.name`); ignored when parsing recorded events.
    pub derived: bool,
    pub description: &'static str,
}

impl FieldSpec {
    /// The kinds that `mode` fills this field for.
    pub const fn filled_in(&self, mode: Mode) -> KindSet {
        match mode {
            Mode::Ebpf => self.ebpf,
            Mode::Driverless => self.driverless,
        }
    }
}

fn ser_kinds<S: serde::Serializer>(set: &KindSet, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(set.iter().map(EventKind::action))
}

/// A field's value borrowed from an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Ip(IpAddr),
    Bool(bool),
    Time(Timestamp),
    StrList(&'a [String]),
    IntList(&'a [i64]),
}

use EventKind as K;

const PROCESS: KindSet = KindSet::of(&[K::ProcessExec, K::ProcessFork, K::ProcessExit]);
const NETWORK: KindSet = KindSet::of(&[
    K::NetworkConnect,
    K::NetworkAccept,
    K::NetworkBind,
    K::NetworkListen,
]);
const FILE: KindSet = KindSet::of(&[
    K::FileCreate,
    K::FileModify,
    K::FileDelete,
    K::FileRename,
    K::FileExecOpen,
]);
const AUTH: KindSet = KindSet::of(&[K::AuthSuccess, K::AuthFailure]);
/// Kinds an attempt on the agent may take; self-protection reports the ones it refused with
/// `event.outcome: failure` (BPF LSM in eBPF mode, fanotify permission events in driverless).
const GUARDED: KindSet = KindSet::of(&[
    K::Signal,
    K::Ptrace,
    K::FileCreate,
    K::FileModify,
    K::FileDelete,
    K::FileRename,
    K::FileExecOpen,
    K::BpfLoad,
]);
const DRIVERLESS_GUARDED: KindSet = KindSet::of(&[K::FileModify, K::FileExecOpen]);
/// Kinds observed only through eBPF programs.
const KERNEL_ONLY: KindSet = KindSet::of(&[
    K::PrivilegeChange,
    K::Ptrace,
    K::ModuleLoad,
    K::BpfLoad,
    K::MemfdCreate,
    K::MemoryExec,
    K::Signal,
]);
/// DNS messages, captured in user space in both modes; the asking process where found.
const DNS: KindSet = KindSet::of(&[K::Dns]);
/// Kinds with a subject process.
const SUBJECT: KindSet = PROCESS
    .union(NETWORK)
    .union(FILE)
    .union(KERNEL_ONLY)
    .union(DNS);
/// Kinds read from logs; both modes run the log sources.
const LOGS: KindSet = AUTH.union(KindSet::of(&[K::WebRequest, K::LogLine]));
const ALL: KindSet = SUBJECT.union(LOGS).union(KindSet::of(&[K::SensorHealth]));

/// What the eBPF mode emits: everything but exec-open (fanotify's).
const EBPF_KINDS: KindSet = ALL.minus(KindSet::of(&[K::FileExecOpen]));
/// What driverless mode emits: the process connector (fork, exec, exit, uid changes), audit
/// (completing execs; connect, bind, accept with IPv4/IPv6 addresses), fanotify (files), logs
/// and health.
const DRIVERLESS_KINDS: KindSet = PROCESS
    .union(FILE)
    .union(LOGS)
    .union(KindSet::of(&[K::SensorHealth, K::PrivilegeChange]))
    .union(DRIVERLESS_NETWORK)
    .union(DNS);
/// Network kinds audit reports in driverless mode (no socket type; `listen` has no address).
const DRIVERLESS_NETWORK: KindSet =
    KindSet::of(&[K::NetworkConnect, K::NetworkBind, K::NetworkAccept]);
/// Audit logs the one address a call passes: the remote end of a connect, the local end of a
/// bind (destination), the peer of an accept (source).
const DRIVERLESS_DESTINATION: KindSet = KindSet::of(&[K::NetworkConnect, K::NetworkBind]);
const DRIVERLESS_SUBJECT: KindSet = SUBJECT.intersect(DRIVERLESS_KINDS);
const EBPF_SUBJECT: KindSet = SUBJECT.intersect(EBPF_KINDS);
const EBPF_FILE: KindSet = FILE.intersect(EBPF_KINDS);
/// Kernel-only kinds that carry a `file.path` (the module file, `memfd:NAME`), and so every
/// field derived from it.
const FILE_LIKE: KindSet = KindSet::of(&[K::ModuleLoad, K::MemfdCreate]);

macro_rules! schema {
    ($( $variant:ident = $name:literal, $ty:ident, $kinds:expr, ebpf $ebpf:expr, driverless $dl:expr, derived $derived:literal, $doc:literal; )*) => {
        /// A field of the schema. `Field::ALL` lists them in table order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Field { $( #[doc = $doc] $variant, )* }

        static SPECS: &[FieldSpec] = &[ $( FieldSpec {
            name: $name, ty: FieldType::$ty, kinds: $kinds, ebpf: $ebpf, driverless: $dl,
            derived: $derived, description: $doc,
        }, )* ];

        impl Field {
            /// Every field, in table order.
            pub const ALL: &'static [Field] = &[ $( Field::$variant, )* ];
        }
    };
}

schema! {
    Timestamp = "@timestamp", Date, ALL, ebpf EBPF_KINDS, driverless DRIVERLESS_KINDS, derived false, "When the event happened (UTC).";
    EventKindField = "event.kind", Keyword, ALL, ebpf EBPF_KINDS, driverless DRIVERLESS_KINDS, derived true, "ECS event.kind: `event`, or `metric` for sensor health.";
    EventCategory = "event.category", Keyword, ALL, ebpf EBPF_KINDS, driverless DRIVERLESS_KINDS, derived true, "ECS event.category (process, network, file, authentication, iam, driver, web, host).";
    EventType = "event.type", Keyword, ALL, ebpf EBPF_KINDS, driverless DRIVERLESS_KINDS, derived true, "ECS event.type (start, end, connection, creation, change, deletion, ...).";
    EventAction = "event.action", Keyword, ALL, ebpf EBPF_KINDS, driverless DRIVERLESS_KINDS, derived false, "What happened: exec, fork, exit, connect, create, ... (one per event kind).";
    EventOutcome = "event.outcome", Keyword, AUTH.union(GUARDED), ebpf AUTH.union(GUARDED.intersect(EBPF_KINDS)), driverless AUTH.union(DRIVERLESS_GUARDED), derived false, "success or failure of an authentication; failure when the agent's self-protection refused the action (a signal, ptrace, file change or BPF access aimed at the agent, or an exec denied by hash).";
    Source = "ringfence.source", Keyword, ALL, ebpf EBPF_KINDS, driverless DRIVERLESS_KINDS, derived false, "The source that observed the event (ebpf, proc_connector, audit, fanotify, ...).";
    Partial = "ringfence.partial", Boolean, ALL, ebpf EBPF_KINDS, driverless DRIVERLESS_KINDS, derived false, "True when enrichment could not complete; the fields present are still right.";
    Syscall = "ringfence.syscall", Keyword, NETWORK.union(KERNEL_ONLY), ebpf NETWORK.union(KERNEL_ONLY), driverless DRIVERLESS_NETWORK, derived false, "The system call behind the event (connect, setuid, mprotect, finit_module, ...).";
    HostName = "host.name", Keyword, ALL, ebpf EBPF_KINDS, driverless DRIVERLESS_KINDS, derived false, "The host's name.";
    ProcessPid = "process.pid", Long, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Process id (thread-group id).";
    ProcessExecutable = "process.executable", Keyword, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Absolute path of the process's executable.";
    ProcessName = "process.name", Keyword, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Process name (comm, or the executable's file name).";
    ProcessCommandLine = "process.command_line", Keyword, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "The full command line, arguments joined by spaces.";
    ProcessArgs = "process.args", KeywordList, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "The argument vector, argv[0] first.";
    ProcessArgsCount = "process.args_count", Long, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived true, "Number of arguments.";
    ProcessWorkingDirectory = "process.working_directory", Keyword, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Current working directory.";
    ProcessStart = "process.start", Date, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "When the process started.";
    ProcessExitCode = "process.exit_code", Long, KindSet::of(&[K::ProcessExit]), ebpf KindSet::of(&[K::ProcessExit]), driverless KindSet::of(&[K::ProcessExit]), derived false, "Exit code (or 128 + signal) of an exited process.";
    ParentPid = "process.parent.pid", Long, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Parent process id.";
    ParentExecutable = "process.parent.executable", Keyword, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Parent's executable path.";
    ParentName = "process.parent.name", Keyword, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Parent's name.";
    ParentCommandLine = "process.parent.command_line", Keyword, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Parent's command line.";
    ParentStart = "process.parent.start", Date, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "When the parent started.";
    AncestorPids = "process.ancestors.pid", LongList, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Ancestor pids, parent first, bounded depth.";
    AncestorExecutables = "process.ancestors.executable", KeywordList, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Ancestor executables, parent first, bounded depth.";
    UserId = "user.id", Long, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Real user id of the process.";
    UserName = "user.name", Keyword, SUBJECT.union(AUTH), ebpf EBPF_SUBJECT.union(AUTH), driverless DRIVERLESS_SUBJECT.union(AUTH), derived false, "User name of the process, or the account an authentication was for.";
    UserEffectiveId = "user.effective.id", Long, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Effective user id.";
    GroupId = "group.id", Long, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Real group id.";
    ContainerId = "container.id", Keyword, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Container id from the cgroup path (docker, containerd, CRI-O, podman), when the process runs in one.";
    ContainerRuntime = "container.runtime", Keyword, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "The container runtime, from the cgroup path: docker, containerd, cri-o or podman.";
    ContainerImageName = "container.image.name", Keyword, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "The container's image, from the runtime's state on disk, where it says.";
    OrchestratorNamespace = "orchestrator.namespace", Keyword, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Kubernetes namespace of the container's pod, from the runtime's pod labels.";
    OrchestratorResourceName = "orchestrator.resource.name", Keyword, SUBJECT, ebpf EBPF_SUBJECT, driverless DRIVERLESS_SUBJECT, derived false, "Kubernetes pod name of the container, from the runtime's pod labels.";
    NetworkTransport = "network.transport", Keyword, NETWORK.union(DNS), ebpf NETWORK.union(DNS), driverless DNS, derived false, "tcp or udp.";
    NetworkType = "network.type", Keyword, NETWORK.union(AUTH).union(KindSet::of(&[K::WebRequest])).union(DNS), ebpf NETWORK.union(AUTH).union(KindSet::of(&[K::WebRequest])).union(DNS), driverless DRIVERLESS_NETWORK.union(AUTH).union(KindSet::of(&[K::WebRequest])).union(DNS), derived true, "ipv4 or ipv6.";
    NetworkDirection = "network.direction", Keyword, NETWORK, ebpf NETWORK, driverless DRIVERLESS_NETWORK, derived false, "egress (connect), ingress (accept) or listening (bind, listen).";
    SourceIp = "source.ip", Ip, NETWORK.union(AUTH).union(KindSet::of(&[K::WebRequest])).union(DNS), ebpf KindSet::of(&[K::NetworkAccept]).union(AUTH).union(KindSet::of(&[K::WebRequest])).union(DNS), driverless KindSet::of(&[K::NetworkAccept]).union(AUTH).union(KindSet::of(&[K::WebRequest])).union(DNS), derived false, "Local address of a connection, the peer of an accept, the client of a log-in or web request, or the asker of a DNS lookup.";
    SourcePort = "source.port", Long, NETWORK.union(AUTH).union(DNS), ebpf KindSet::of(&[K::NetworkAccept]).union(AUTH).union(DNS), driverless KindSet::of(&[K::NetworkAccept]).union(AUTH).union(DNS), derived false, "Port belonging to source.ip.";
    DestinationIp = "destination.ip", Ip, NETWORK.union(DNS), ebpf NETWORK.union(DNS), driverless DRIVERLESS_DESTINATION.union(DNS), derived false, "Remote address of a connect, the local address bound or listened on, or the DNS server asked.";
    DestinationPort = "destination.port", Long, NETWORK.union(DNS), ebpf NETWORK.union(DNS), driverless DRIVERLESS_DESTINATION.union(DNS), derived false, "Port belonging to destination.ip.";
    DestinationDomain = "destination.domain", Keyword, KindSet::of(&[K::NetworkConnect]), ebpf KindSet::of(&[K::NetworkConnect]), driverless KindSet::of(&[K::NetworkConnect]), derived false, "Host name of the destination: the name the same process looked up in DNS and got this address for.";
    DnsType = "dns.type", Keyword, DNS, ebpf DNS, driverless DNS, derived false, "query or answer.";
    DnsQuestionName = "dns.question.name", Keyword, DNS, ebpf DNS, driverless DNS, derived false, "The name asked for, without the trailing dot, lower case.";
    DnsQuestionType = "dns.question.type", Keyword, DNS, ebpf DNS, driverless DNS, derived false, "The record type asked for (A, AAAA, TXT, ...).";
    DnsResponseCode = "dns.response_code", Keyword, DNS, ebpf DNS, driverless DNS, derived false, "The answer's code (NOERROR, NXDOMAIN, SERVFAIL, ...).";
    DnsResolvedIp = "dns.resolved_ip", KeywordList, DNS, ebpf DNS, driverless DNS, derived false, "Addresses in the answer's A and AAAA records.";
    FilePath = "file.path", Keyword, FILE.union(FILE_LIKE), ebpf EBPF_FILE.union(FILE_LIKE), driverless FILE, derived false, "Full path of the file (the new path for a rename; `memfd:NAME` for memfd_create).";
    FileName = "file.name", Keyword, FILE.union(FILE_LIKE), ebpf EBPF_FILE.union(FILE_LIKE), driverless FILE, derived true, "Last component of file.path.";
    FileDirectory = "file.directory", Keyword, FILE.union(FILE_LIKE), ebpf EBPF_FILE.union(FILE_LIKE), driverless FILE, derived true, "file.path without its last component (`memfd:` paths have one only when the name holds a `/`).";
    FileExtension = "file.extension", Keyword, FILE.union(FILE_LIKE), ebpf EBPF_FILE.union(FILE_LIKE), driverless FILE, derived true, "Extension of file.name, without the dot (`zst` for `nf_tables.ko.zst`).";
    FileOriginalPath = "file.original.path", Keyword, KindSet::of(&[K::FileRename]), ebpf KindSet::of(&[K::FileRename]), driverless KindSet::of(&[K::FileRename]), derived false, "For a rename: the path before.";
    FileMode = "file.mode", Keyword, FILE, ebpf KindSet::EMPTY, driverless KindSet::EMPTY, derived false, "Octal permissions (e.g. 4755) read after the event.";
    FileSha256 = "file.hash.sha256", Keyword, KindSet::of(&[K::FileExecOpen, K::ProcessExec]), ebpf KindSet::EMPTY, driverless KindSet::EMPTY, derived false, "SHA-256 of the file, where hashing is enabled.";
    FileSize = "file.size", Long, FILE, ebpf KindSet::EMPTY, driverless KindSet::EMPTY, derived false, "Size in bytes read after the event.";
    TargetPid = "target.process.pid", Long, KindSet::of(&[K::Ptrace, K::Signal]), ebpf KindSet::of(&[K::Ptrace, K::Signal]), driverless KindSet::EMPTY, derived false, "The process acted on by ptrace or a signal.";
    TargetExecutable = "target.process.executable", Keyword, KindSet::of(&[K::Ptrace, K::Signal]), ebpf KindSet::of(&[K::Ptrace, K::Signal]), driverless KindSet::EMPTY, derived false, "Executable of target.process.pid.";
    PrivilegeNewUid = "ringfence.privilege.new_uid", Long, KindSet::of(&[K::PrivilegeChange]), ebpf KindSet::of(&[K::PrivilegeChange]), driverless KindSet::of(&[K::PrivilegeChange]), derived false, "Real uid asked for by setuid/setreuid/setresuid.";
    PrivilegeNewEuid = "ringfence.privilege.new_euid", Long, KindSet::of(&[K::PrivilegeChange]), ebpf KindSet::of(&[K::PrivilegeChange]), driverless KindSet::of(&[K::PrivilegeChange]), derived false, "Effective uid asked for.";
    PrivilegeNewGid = "ringfence.privilege.new_gid", Long, KindSet::of(&[K::PrivilegeChange]), ebpf KindSet::of(&[K::PrivilegeChange]), driverless KindSet::EMPTY, derived false, "Group id asked for by setgid/setregid/setresgid.";
    PrivilegeCapabilities = "ringfence.privilege.capabilities", Long, KindSet::of(&[K::PrivilegeChange]), ebpf KindSet::of(&[K::PrivilegeChange]), driverless KindSet::EMPTY, derived false, "Effective capability mask asked for by capset.";
    PtraceRequest = "ringfence.ptrace.request", Long, KindSet::of(&[K::Ptrace]), ebpf KindSet::of(&[K::Ptrace]), driverless KindSet::EMPTY, derived false, "ptrace request number (16 = PTRACE_ATTACH).";
    SignalNumber = "ringfence.signal.number", Long, KindSet::of(&[K::Signal]), ebpf KindSet::of(&[K::Signal]), driverless KindSet::EMPTY, derived false, "Signal number sent.";
    ModuleName = "ringfence.kernel_module.name", Keyword, KindSet::of(&[K::ModuleLoad]), ebpf KindSet::of(&[K::ModuleLoad]), driverless KindSet::EMPTY, derived false, "Name of the kernel module being loaded.";
    BpfCommand = "ringfence.bpf.command", Keyword, KindSet::of(&[K::BpfLoad]), ebpf KindSet::of(&[K::BpfLoad]), driverless KindSet::EMPTY, derived false, "bpf() command (prog_load, ...).";
    BpfProgramType = "ringfence.bpf.program_type", Keyword, KindSet::of(&[K::BpfLoad]), ebpf KindSet::of(&[K::BpfLoad]), driverless KindSet::EMPTY, derived false, "Program type being loaded (kprobe, tracepoint, ...).";
    BpfProgramName = "ringfence.bpf.program_name", Keyword, KindSet::of(&[K::BpfLoad]), ebpf KindSet::of(&[K::BpfLoad]), driverless KindSet::EMPTY, derived false, "Program name being loaded.";
    MemoryProtection = "ringfence.memory.protection", Keyword, KindSet::of(&[K::MemoryExec]), ebpf KindSet::of(&[K::MemoryExec]), driverless KindSet::EMPTY, derived false, "Requested protection as letters (rwx).";
    UrlOriginal = "url.original", Keyword, KindSet::of(&[K::WebRequest]), ebpf KindSet::of(&[K::WebRequest]), driverless KindSet::of(&[K::WebRequest]), derived false, "The request target as logged (path and query).";
    UrlPath = "url.path", Keyword, KindSet::of(&[K::WebRequest]), ebpf KindSet::of(&[K::WebRequest]), driverless KindSet::of(&[K::WebRequest]), derived false, "Path part of the request target.";
    UrlQuery = "url.query", Keyword, KindSet::of(&[K::WebRequest]), ebpf KindSet::of(&[K::WebRequest]), driverless KindSet::of(&[K::WebRequest]), derived false, "Query part of the request target, without `?`.";
    HttpMethod = "http.request.method", Keyword, KindSet::of(&[K::WebRequest]), ebpf KindSet::of(&[K::WebRequest]), driverless KindSet::of(&[K::WebRequest]), derived false, "HTTP method.";
    HttpStatus = "http.response.status_code", Long, KindSet::of(&[K::WebRequest]), ebpf KindSet::of(&[K::WebRequest]), driverless KindSet::of(&[K::WebRequest]), derived false, "HTTP status code.";
    HttpResponseBytes = "http.response.body.bytes", Long, KindSet::of(&[K::WebRequest]), ebpf KindSet::of(&[K::WebRequest]), driverless KindSet::of(&[K::WebRequest]), derived false, "Response body size.";
    HttpReferrer = "http.request.referrer", Keyword, KindSet::of(&[K::WebRequest]), ebpf KindSet::of(&[K::WebRequest]), driverless KindSet::of(&[K::WebRequest]), derived false, "Referer header.";
    UserAgent = "user_agent.original", Keyword, KindSet::of(&[K::WebRequest]), ebpf KindSet::of(&[K::WebRequest]), driverless KindSet::of(&[K::WebRequest]), derived false, "User-Agent header.";
    ServiceName = "service.name", Keyword, AUTH.union(KindSet::of(&[K::LogLine])), ebpf AUTH.union(KindSet::of(&[K::LogLine])), driverless AUTH.union(KindSet::of(&[K::LogLine])), derived false, "The logging program (sshd, sudo, su, nginx, ...).";
    AuthMethod = "ringfence.auth.method", Keyword, AUTH, ebpf AUTH, driverless AUTH, derived false, "Authentication method (password, publickey, keyboard-interactive).";
    LogFilePath = "log.file.path", Keyword, LOGS, ebpf LOGS, driverless LOGS, derived false, "The log file a log-derived event was read from.";
    Message = "message", Keyword, LOGS.union(KindSet::of(&[K::SensorHealth])), ebpf LOGS.union(KindSet::of(&[K::SensorHealth])), driverless LOGS.union(KindSet::of(&[K::SensorHealth])), derived false, "The raw log line, or a health explanation.";
    HealthDropped = "ringfence.health.dropped", Long, KindSet::of(&[K::SensorHealth]), ebpf KindSet::of(&[K::SensorHealth]), driverless KindSet::of(&[K::SensorHealth]), derived false, "Events the source lost since its last health event.";
    HealthGaps = "ringfence.health.gaps", Long, KindSet::of(&[K::SensorHealth]), ebpf KindSet::of(&[K::SensorHealth]), driverless KindSet::of(&[K::SensorHealth]), derived false, "Sequence gaps the source saw since its last health event.";
}

impl Field {
    pub fn spec(self) -> &'static FieldSpec {
        // The table and the enum come from one macro, in the same order.
        &SPECS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn ty(self) -> FieldType {
        self.spec().ty
    }

    /// The field with the ECS name `name`.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// Read this field from `event`. `None` when the event does not carry it.
    pub fn get(self, e: &Event) -> Option<Value<'_>> {
        use Field as F;
        use Value as V;
        let p = e.process.as_ref();
        let parent = p.and_then(|p| p.parent.as_ref());
        let net = e.network.as_ref();
        let file = e.file.as_ref();
        let detail = e.detail.as_ref();
        let web = e.web.as_ref();
        let dns = e.dns.as_deref();
        let privilege = e.privilege.as_ref();
        fn s(o: Option<&String>) -> Option<Value<'_>> {
            o.map(|v| Value::Str(v.as_str()))
        }
        match self {
            F::Timestamp => Some(V::Time(e.timestamp)),
            F::EventKindField => e.kind.map(|k| V::Str(k.ecs_kind())),
            F::EventCategory => e.kind.map(|k| V::Str(k.category().as_str())),
            F::EventType => e.kind.map(|k| V::Str(k.ecs_type())),
            F::EventAction => e.kind.map(|k| V::Str(k.action())),
            F::EventOutcome => e.outcome.map(|o| V::Str(o.as_str())),
            F::Source => e.source.map(|s| V::Str(s.as_str())),
            F::Partial => Some(V::Bool(e.partial)),
            F::Syscall => e.syscall.as_deref().map(V::Str),
            F::HostName => e.host_name.as_deref().map(V::Str),
            F::ProcessPid => p.map(|p| V::Int(i64::from(p.pid))),
            F::ProcessExecutable => s(p.and_then(|p| p.executable.as_ref())),
            F::ProcessName => s(p.and_then(|p| p.name.as_ref())),
            F::ProcessCommandLine => s(p.and_then(|p| p.command_line.as_ref())),
            F::ProcessArgs => p
                .filter(|p| !p.args.is_empty())
                .map(|p| V::StrList(&p.args)),
            F::ProcessArgsCount => p
                .filter(|p| !p.args.is_empty())
                .map(|p| V::Int(p.args.len() as i64)),
            F::ProcessWorkingDirectory => s(p.and_then(|p| p.working_directory.as_ref())),
            F::ProcessStart => p.and_then(|p| p.start).map(V::Time),
            F::ProcessExitCode => p.and_then(|p| p.exit_code).map(V::Int),
            F::ParentPid => parent.map(|q| V::Int(i64::from(q.pid))),
            F::ParentExecutable => s(parent.and_then(|q| q.executable.as_ref())),
            F::ParentName => s(parent.and_then(|q| q.name.as_ref())),
            F::ParentCommandLine => s(parent.and_then(|q| q.command_line.as_ref())),
            F::ParentStart => parent.and_then(|q| q.start).map(V::Time),
            F::AncestorPids => p
                .filter(|p| !p.ancestors.pids.is_empty())
                .map(|p| V::IntList(&p.ancestors.pids)),
            F::AncestorExecutables => p
                .filter(|p| !p.ancestors.executables.is_empty())
                .map(|p| V::StrList(&p.ancestors.executables)),
            F::UserId => e.user.id.map(V::Int),
            F::UserName => s(e.user.name.as_ref()),
            F::UserEffectiveId => e.user.effective_id.map(V::Int),
            F::GroupId => e.user.group_id.map(V::Int),
            F::ContainerId => e.container.as_deref().map(|c| V::Str(&c.id)),
            F::ContainerRuntime => e.container.as_deref().map(|c| V::Str(&c.runtime)),
            F::ContainerImageName => s(e.container.as_deref().and_then(|c| c.image_name.as_ref())),
            F::OrchestratorNamespace => s(e
                .container
                .as_deref()
                .and_then(|c| c.pod_namespace.as_ref())),
            F::OrchestratorResourceName => {
                s(e.container.as_deref().and_then(|c| c.pod_name.as_ref()))
            }
            F::NetworkTransport => net.and_then(|n| n.transport.as_deref()).map(V::Str),
            F::NetworkType => net.and_then(|n| n.ip_version()).map(V::Str),
            F::NetworkDirection => net.and_then(|n| n.direction.as_deref()).map(V::Str),
            F::SourceIp => net.and_then(|n| n.source_ip).map(V::Ip),
            F::SourcePort => net
                .and_then(|n| n.source_port)
                .map(|v| V::Int(i64::from(v))),
            F::DestinationIp => net.and_then(|n| n.destination_ip).map(V::Ip),
            F::DestinationPort => net
                .and_then(|n| n.destination_port)
                .map(|v| V::Int(i64::from(v))),
            F::DestinationDomain => s(net.and_then(|n| n.destination_domain.as_ref())),
            F::DnsType => dns.map(|d| V::Str(&d.message_type)),
            F::DnsQuestionName => dns.map(|d| V::Str(&d.question_name)),
            F::DnsQuestionType => dns.map(|d| V::Str(&d.question_type)),
            F::DnsResponseCode => dns.and_then(|d| d.response_code.as_deref()).map(V::Str),
            F::DnsResolvedIp => dns
                .filter(|d| !d.resolved_ip.is_empty())
                .map(|d| V::StrList(&d.resolved_ip)),
            F::FilePath => file.map(|f| V::Str(&f.path)),
            F::FileName => file.map(|f| V::Str(f.name())),
            F::FileDirectory => file.and_then(|f| f.directory()).map(V::Str),
            F::FileExtension => file.and_then(|f| f.extension()).map(V::Str),
            F::FileOriginalPath => s(file.and_then(|f| f.original_path.as_ref())),
            F::FileMode => s(file.and_then(|f| f.mode.as_ref())),
            F::FileSha256 => s(file.and_then(|f| f.sha256.as_ref())),
            F::FileSize => file.and_then(|f| f.size).map(V::Int),
            F::TargetPid => e.target.as_ref().map(|t| V::Int(i64::from(t.pid))),
            F::TargetExecutable => s(e.target.as_ref().and_then(|t| t.executable.as_ref())),
            F::PrivilegeNewUid => privilege.and_then(|v| v.new_uid).map(V::Int),
            F::PrivilegeNewEuid => privilege.and_then(|v| v.new_euid).map(V::Int),
            F::PrivilegeNewGid => privilege.and_then(|v| v.new_gid).map(V::Int),
            F::PrivilegeCapabilities => privilege.and_then(|v| v.capabilities).map(V::Int),
            F::PtraceRequest => detail.and_then(|d| d.ptrace_request).map(V::Int),
            F::SignalNumber => detail.and_then(|d| d.signal_number).map(V::Int),
            F::ModuleName => s(detail.and_then(|d| d.module_name.as_ref())),
            F::BpfCommand => detail.and_then(|d| d.bpf_command.as_deref()).map(V::Str),
            F::BpfProgramType => detail
                .and_then(|d| d.bpf_program_type.as_deref())
                .map(V::Str),
            F::BpfProgramName => s(detail.and_then(|d| d.bpf_program_name.as_ref())),
            F::MemoryProtection => detail
                .and_then(|d| d.memory_protection.as_deref())
                .map(V::Str),
            F::UrlOriginal => web.map(|w| V::Str(&w.url_original)),
            F::UrlPath => s(web.and_then(|w| w.url_path.as_ref())),
            F::UrlQuery => s(web.and_then(|w| w.url_query.as_ref())),
            F::HttpMethod => s(web.and_then(|w| w.method.as_ref())),
            F::HttpStatus => web.and_then(|w| w.status_code).map(V::Int),
            F::HttpResponseBytes => web.and_then(|w| w.response_bytes).map(V::Int),
            F::HttpReferrer => s(web.and_then(|w| w.referrer.as_ref())),
            F::UserAgent => s(web.and_then(|w| w.user_agent.as_ref())),
            F::ServiceName => e.service_name.as_deref().map(V::Str),
            F::AuthMethod => s(e.auth_method.as_ref()),
            F::LogFilePath => s(e.log.as_ref().and_then(|l| l.file_path.as_ref())),
            F::Message => match (&e.log, &e.health) {
                (Some(l), _) => Some(V::Str(&l.message)),
                (None, Some(h)) => s(h.message.as_ref()),
                (None, None) => None,
            },
            F::HealthDropped => e.health.as_ref().map(|h| V::Int(h.dropped)),
            F::HealthGaps => e.health.as_ref().map(|h| V::Int(h.gaps)),
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The whole schema, as printed by `ringfence schema`.
#[derive(Debug, Serialize)]
pub struct Schema {
    pub schema_version: u32,
    /// A hash of the table: two agents with the same fingerprint accept the same content.
    pub fingerprint: String,
    pub kinds: Vec<KindInfo>,
    pub fields: &'static [FieldSpec],
}

/// One event kind's ECS classification, as printed in the schema.
#[derive(Debug, Serialize)]
pub struct KindInfo {
    pub action: &'static str,
    pub kind: &'static str,
    pub category: &'static str,
    #[serde(rename = "type")]
    pub ty: &'static str,
}

impl Schema {
    pub fn current() -> Schema {
        Schema {
            schema_version: SCHEMA_VERSION,
            fingerprint: fingerprint(),
            kinds: EventKind::ALL
                .iter()
                .map(|k| KindInfo {
                    action: k.action(),
                    kind: k.ecs_kind(),
                    category: k.category().as_str(),
                    ty: k.ecs_type(),
                })
                .collect(),
            fields: SPECS,
        }
    }
}

/// FNV-1a over the canonical text of the table (names, types, coverage), as 16 hex digits.
pub fn fingerprint() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for k in EventKind::ALL {
        eat(k.action().as_bytes());
        eat(b";");
    }
    for spec in SPECS {
        let line = format!(
            "{}|{:?}|{:?}|{:?}|{:?};",
            spec.name, spec.ty, spec.kinds, spec.ebpf, spec.driverless
        );
        eat(line.as_bytes());
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn table_and_enum_agree() {
        assert_eq!(Field::ALL.len(), SPECS.len());
        for (i, f) in Field::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
            assert_eq!(Field::from_name(f.name()), Some(*f));
        }
        let names: HashSet<_> = SPECS.iter().map(|s| s.name).collect();
        assert_eq!(names.len(), SPECS.len(), "duplicate field names");
    }

    #[test]
    fn mode_coverage_is_within_the_kinds_that_carry_a_field() {
        for spec in SPECS {
            assert!(
                spec.ebpf.is_subset_of(spec.kinds),
                "{}: ebpf fills kinds that do not carry it",
                spec.name
            );
            assert!(
                spec.driverless.is_subset_of(spec.kinds),
                "{}: driverless fills kinds that do not carry it",
                spec.name
            );
            assert!(
                spec.ebpf.is_subset_of(EBPF_KINDS),
                "{}: ebpf fills a kind it never emits",
                spec.name
            );
            assert!(
                spec.driverless.is_subset_of(DRIVERLESS_KINDS),
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn schema_serializes_with_kind_names() {
        let json = serde_json::to_value(Schema::current()).unwrap_or_default();
        let first = &json["fields"][0];
        assert_eq!(first["name"], "@timestamp");
        assert_eq!(first["type"], "date");
        assert!(
            first["kinds"]
                .as_array()
                .is_some_and(|k| k.iter().any(|v| v == "exec"))
        );
        assert_eq!(fingerprint().len(), 16);
    }
}
