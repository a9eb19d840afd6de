//! ECS JSON: writing an [`Event`] as one nested JSON object, and reading one back.
//!
//! Both directions walk the field schema, so what is written is exactly what the schema lists.
//! Reading is for recorded events (replay, content tests) and treats its input as untrusted:
//! an unknown field, a wrong type or an out-of-range number is refused with the field named.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use serde_json::{Map, Value as Json};

use crate::event::{Event, Outcome, SourceKind};
use crate::field::{Field, FieldType, Value};
use crate::kind::EventKind;
use crate::time::Timestamp;

/// Why a recorded event was refused. Names the field when one is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EcsError {
    NotAnObject,
    Json(String),
    UnknownField(String),
    WrongType {
        field: &'static str,
        expected: FieldType,
    },
    BadValue {
        field: &'static str,
        reason: String,
    },
    MissingAction,
}

impl fmt::Display for EcsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EcsError::NotAnObject => f.write_str("an event must be a JSON object"),
            EcsError::Json(e) => write!(f, "invalid JSON: {e}"),
            EcsError::UnknownField(name) => {
                write!(f, "unknown field `{name}` (see `ringfence schema`)")
            }
            EcsError::WrongType { field, expected } => {
                write!(f, "field `{field}`: expected {expected:?}")
            }
            EcsError::BadValue { field, reason } => write!(f, "field `{field}`: {reason}"),
            EcsError::MissingAction => f.write_str("field `event.action` is missing"),
        }
    }
}

impl std::error::Error for EcsError {}

/// Nesting deeper than this is refused before it is walked.
const MAX_DEPTH: usize = 8;

impl Event {
    /// The event as a nested ECS JSON object.
    pub fn to_ecs(&self) -> Json {
        let mut root = Map::new();
        for field in Field::ALL {
            if let Some(v) = field.get(self) {
                insert_path(&mut root, field.name(), to_json(v));
            }
        }
        Json::Object(root)
    }

    /// The event as one line of JSON (no trailing newline): the same text as serializing
    /// [`Event::to_ecs`], written straight from the fields without building the tree (this is
    /// the agent's per-event cost on the output path).
    pub fn to_ecs_line(&self) -> String {
        let mut out = Vec::with_capacity(1024);
        self.write_ecs_line(&mut out);
        // Only valid UTF-8 was written: field names, escaped strings, numbers.
        String::from_utf8(out).unwrap_or_default()
    }

    /// [`Event::to_ecs_line`] appended to `out`, so a caller can reuse one buffer for every
    /// event. Only valid UTF-8 is appended.
    pub fn write_ecs_line(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        // The object path currently open, and whether the innermost object has a member yet.
        let mut open: &[&str] = &[];
        let mut first = true;
        for (field, parts) in line_order() {
            let Some(value) = field.get(self) else {
                continue;
            };
            let Some((leaf, parents)) = parts.split_last() else {
                continue;
            };
            let common = open.iter().zip(parents).take_while(|(a, b)| a == b).count();
            if common < open.len() {
                out.extend(std::iter::repeat_n(b'}', open.len() - common));
                first = false;
            }
            for part in &parents[common..] {
                if !first {
                    out.push(b',');
                }
                write_key(out, part);
                out.push(b'{');
                first = true;
            }
            open = parents;
            if !first {
                out.push(b',');
            }
            first = false;
            write_key(out, leaf);
            write_value(out, &value);
        }
        out.extend(std::iter::repeat_n(b'}', open.len() + 1));
    }

    /// Parse one JSON line written by [`Event::to_ecs_line`] (or by hand, for tests).
    pub fn from_ecs_line(line: &str) -> Result<Event, EcsError> {
        let json: Json = serde_json::from_str(line).map_err(|e| EcsError::Json(e.to_string()))?;
        Event::from_ecs(&json)
    }

    /// Parse a nested ECS object. Derived fields (`file.name`, `event.category`, ...) are
    /// accepted and ignored; everything else must be in the schema.
    pub fn from_ecs(json: &Json) -> Result<Event, EcsError> {
        let Json::Object(map) = json else {
            return Err(EcsError::NotAnObject);
        };
        let mut leaves = Vec::new();
        collect_leaves(map, &mut String::new(), 0, &mut leaves)?;
        let mut event = Event::default();
        for (name, value) in leaves {
            let field = Field::from_name(&name).ok_or(EcsError::UnknownField(name))?;
            if field.spec().derived || value.is_null() {
                continue;
            }
            set(&mut event, field, value)?;
        }
        // `message` sorts before `ringfence.health.*`, so a health event's explanation was
        // read into `log` before its health was known: it belongs to `health`.
        if event.kind == Some(EventKind::SensorHealth)
            && let Some(log) = event.log.take_if(|l| l.file_path.is_none())
        {
            event.health.get_or_insert_with(Default::default).message = Some(log.message);
        }
        if event.kind.is_none() {
            return Err(EcsError::MissingAction);
        }
        Ok(event)
    }
}

/// Every field with its object keys (outermost first; `@timestamp` is one key), in the order
/// a tree of sorted maps serializes them: key by key, level by level. Computed once.
fn line_order() -> &'static [(Field, Vec<&'static str>)] {
    static ORDER: std::sync::OnceLock<Vec<(Field, Vec<&'static str>)>> = std::sync::OnceLock::new();
    ORDER.get_or_init(|| {
        let mut order: Vec<(Field, Vec<&'static str>)> = Field::ALL
            .iter()
            .map(|f| {
                let name = f.name();
                let parts = if name.starts_with('@') {
                    vec![name]
                } else {
                    name.split('.').collect()
                };
                (*f, parts)
            })
            .collect();
        order.sort_by(|a, b| a.1.cmp(&b.1));
        order
    })
}

/// `"key":` for a schema name part (letters, digits, `_`, `@`: nothing to escape).
fn write_key(out: &mut Vec<u8>, key: &str) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Most values need no escaping: copy them. Otherwise serde_json's own escaping, so the
    // text matches a serialized tree byte for byte (it escapes exactly `"`, `\\` and controls).
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn write_value(out: &mut Vec<u8>, v: &Value<'_>) {
    use std::io::Write;
    match v {
        Value::Str(s) => write_str(out, s),
        Value::Int(i) => write_int(out, *i),
        Value::Ip(ip) => {
            let _ = write!(out, "\"{ip}\"");
        }
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Time(t) => {
            out.push(b'"');
            t.write_rfc3339(out);
            out.push(b'"');
        }
        Value::StrList(l) => write_list(out, l, |out, s| write_str(out, s)),
        Value::IntList(l) => write_list(out, l, |out, n| write_int(out, *n)),
    }
}

fn write_int(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `[a,b,...]`, each item written by `item`.
fn write_list<T>(out: &mut Vec<u8>, items: &[T], mut item: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item(out, x);
    }
    out.push(b']');
}

fn to_json(v: Value<'_>) -> Json {
    match v {
        Value::Str(s) => Json::String(s.to_owned()),
        Value::Int(i) => Json::from(i),
        Value::Ip(ip) => Json::String(ip.to_string()),
        Value::Bool(b) => Json::Bool(b),
        Value::Time(t) => Json::String(t.to_string()),
        Value::StrList(l) => Json::Array(l.iter().map(|s| Json::String(s.clone())).collect()),
        Value::IntList(l) => Json::Array(l.iter().map(|i| Json::from(*i)).collect()),
    }
}

fn insert_path(root: &mut Map<String, Json>, path: &str, value: Json) {
    if path.starts_with('@') {
        root.insert(path.to_owned(), value);
        return;
    }
    let mut node = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            node.insert(part.to_owned(), value);
            return;
        }
        let child = node
            .entry(part.to_owned())
            .or_insert_with(|| Json::Object(Map::new()));
        if !child.is_object() {
            *child = Json::Object(Map::new());
        }
        let Json::Object(next) = child else { return };
        node = next;
    }
}

fn collect_leaves<'a>(
    map: &'a Map<String, Json>,
    prefix: &mut String,
    depth: usize,
    out: &mut Vec<(String, &'a Json)>,
) -> Result<(), EcsError> {
    if depth > MAX_DEPTH {
        return Err(EcsError::UnknownField(format!(
            "{prefix}... (nested deeper than {MAX_DEPTH})"
        )));
    }
    for (key, value) in map {
        let len = prefix.len();
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(key);
        match value {
            Json::Object(inner) => collect_leaves(inner, prefix, depth + 1, out)?,
            _ => out.push((prefix.clone(), value)),
        }
        prefix.truncate(len);
    }
    Ok(())
}

fn bad(field: Field, reason: impl Into<String>) -> EcsError {
    EcsError::BadValue {
        field: field.name(),
        reason: reason.into(),
    }
}

fn wrong(field: Field) -> EcsError {
    EcsError::WrongType {
        field: field.name(),
        expected: field.ty(),
    }
}

fn text(field: Field, v: &Json) -> Result<String, EcsError> {
    v.as_str().map(str::to_owned).ok_or_else(|| wrong(field))
}

fn long(field: Field, v: &Json) -> Result<i64, EcsError> {
    v.as_i64().ok_or_else(|| wrong(field))
}

fn ranged<T: TryFrom<i64>>(field: Field, v: &Json) -> Result<T, EcsError> {
    let n = long(field, v)?;
    T::try_from(n).map_err(|_| bad(field, format!("{n} is out of range")))
}

fn ip(field: Field, v: &Json) -> Result<IpAddr, EcsError> {
    let s = v.as_str().ok_or_else(|| wrong(field))?;
    s.parse()
        .map_err(|_| bad(field, format!("`{s}` is not an IP address")))
}

fn time(field: Field, v: &Json) -> Result<Timestamp, EcsError> {
    let s = v.as_str().ok_or_else(|| wrong(field))?;
    Timestamp::parse_rfc3339(s).ok_or_else(|| bad(field, format!("`{s}` is not an RFC 3339 time")))
}

fn texts(field: Field, v: &Json) -> Result<Vec<String>, EcsError> {
    let items = v.as_array().ok_or_else(|| wrong(field))?;
    items.iter().map(|i| text(field, i)).collect()
}

fn longs(field: Field, v: &Json) -> Result<Vec<i64>, EcsError> {
    let items = v.as_array().ok_or_else(|| wrong(field))?;
    items.iter().map(|i| long(field, i)).collect()
}

fn set(e: &mut Event, field: Field, v: &Json) -> Result<(), EcsError> {
    use Field as F;
    match field {
        F::Timestamp => e.timestamp = time(field, v)?,
        F::EventAction => {
            let a = text(field, v)?;
            e.kind = Some(
                EventKind::from_action(&a)
                    .ok_or_else(|| bad(field, format!("unknown action `{a}`")))?,
            );
        }
        F::EventOutcome => {
            let o = text(field, v)?;
            e.outcome = Some(
                Outcome::parse(&o).ok_or_else(|| bad(field, format!("unknown outcome `{o}`")))?,
            );
        }
        F::Source => {
            let s = text(field, v)?;
            e.source = Some(
                SourceKind::parse(&s).ok_or_else(|| bad(field, format!("unknown source `{s}`")))?,
            );
        }
        F::Partial => e.partial = v.as_bool().ok_or_else(|| wrong(field))?,
        F::Syscall => e.syscall = Some(Cow::Owned(text(field, v)?)),
        F::HostName => e.host_name = Some(text(field, v)?.into()),
        F::ProcessPid => e.process_mut().pid = ranged(field, v)?,
        F::ProcessExecutable => e.process_mut().executable = Some(text(field, v)?),
        F::ProcessName => e.process_mut().name = Some(text(field, v)?),
        F::ProcessCommandLine => e.process_mut().command_line = Some(text(field, v)?),
        F::ProcessArgs => e.process_mut().args = texts(field, v)?,
        F::ProcessWorkingDirectory => e.process_mut().working_directory = Some(text(field, v)?),
        F::ProcessStart => e.process_mut().start = Some(time(field, v)?),
        F::ProcessExitCode => e.process_mut().exit_code = Some(long(field, v)?),
        F::ParentPid => parent(e).pid = ranged(field, v)?,
        F::ParentExecutable => parent(e).executable = Some(text(field, v)?),
        F::ParentName => parent(e).name = Some(text(field, v)?),
        F::ParentCommandLine => parent(e).command_line = Some(text(field, v)?),
        F::ParentStart => parent(e).start = Some(time(field, v)?),
        F::AncestorPids => e.process_mut().ancestors.pids = longs(field, v)?,
        F::AncestorExecutables => e.process_mut().ancestors.executables = texts(field, v)?,
        F::UserId => e.user.id = Some(long(field, v)?),
        F::UserName => e.user.name = Some(text(field, v)?),
        F::UserEffectiveId => e.user.effective_id = Some(long(field, v)?),
        F::GroupId => e.user.group_id = Some(long(field, v)?),
        F::ContainerId => container(e).id = text(field, v)?,
        F::ContainerRuntime => container(e).runtime = Cow::Owned(text(field, v)?),
        F::ContainerImageName => container(e).image_name = Some(text(field, v)?),
        F::OrchestratorNamespace => container(e).pod_namespace = Some(text(field, v)?),
        F::OrchestratorResourceName => container(e).pod_name = Some(text(field, v)?),
        F::DnsType => dns(e).message_type = Cow::Owned(text(field, v)?),
        F::DnsQuestionName => dns(e).question_name = text(field, v)?,
        F::DnsQuestionType => dns(e).question_type = Cow::Owned(text(field, v)?),
        F::DnsResponseCode => dns(e).response_code = Some(Cow::Owned(text(field, v)?)),
        F::DnsResolvedIp => dns(e).resolved_ip = texts(field, v)?,
        F::NetworkTransport => net(e).transport = Some(Cow::Owned(text(field, v)?)),
        F::NetworkDirection => net(e).direction = Some(Cow::Owned(text(field, v)?)),
        F::SourceIp => net(e).source_ip = Some(ip(field, v)?),
        F::SourcePort => net(e).source_port = Some(ranged(field, v)?),
        F::DestinationIp => net(e).destination_ip = Some(ip(field, v)?),
        F::DestinationPort => net(e).destination_port = Some(ranged(field, v)?),
        F::DestinationDomain => net(e).destination_domain = Some(text(field, v)?),
        F::FilePath => file(e).path = text(field, v)?,
        F::FileOriginalPath => file(e).original_path = Some(text(field, v)?),
        F::FileMode => file(e).mode = Some(text(field, v)?),
        F::FileSha256 => file(e).sha256 = Some(text(field, v)?),
        F::FileSize => file(e).size = Some(long(field, v)?),
        F::TargetPid => e.target.get_or_insert_with(Default::default).pid = ranged(field, v)?,
        F::TargetExecutable => {
            e.target.get_or_insert_with(Default::default).executable = Some(text(field, v)?)
        }
        F::PrivilegeNewUid => privilege(e).new_uid = Some(long(field, v)?),
        F::PrivilegeNewEuid => privilege(e).new_euid = Some(long(field, v)?),
        F::PrivilegeNewGid => privilege(e).new_gid = Some(long(field, v)?),
        F::PrivilegeCapabilities => privilege(e).capabilities = Some(long(field, v)?),
        F::PtraceRequest => detail(e).ptrace_request = Some(long(field, v)?),
        F::SignalNumber => detail(e).signal_number = Some(long(field, v)?),
        F::ModuleName => detail(e).module_name = Some(text(field, v)?),
        F::BpfCommand => detail(e).bpf_command = Some(Cow::Owned(text(field, v)?)),
        F::BpfProgramType => detail(e).bpf_program_type = Some(Cow::Owned(text(field, v)?)),
        F::BpfProgramName => detail(e).bpf_program_name = Some(text(field, v)?),
        F::MemoryProtection => detail(e).memory_protection = Some(Cow::Owned(text(field, v)?)),
        F::UrlOriginal => web(e).url_original = text(field, v)?,
        F::UrlPath => web(e).url_path = Some(text(field, v)?),
        F::UrlQuery => web(e).url_query = Some(text(field, v)?),
        F::HttpMethod => web(e).method = Some(text(field, v)?),
        F::HttpStatus => web(e).status_code = Some(long(field, v)?),
        F::HttpResponseBytes => web(e).response_bytes = Some(long(field, v)?),
        F::HttpReferrer => web(e).referrer = Some(text(field, v)?),
        F::UserAgent => web(e).user_agent = Some(text(field, v)?),
        F::ServiceName => e.service_name = Some(Cow::Owned(text(field, v)?)),
        F::AuthMethod => e.auth_method = Some(text(field, v)?),
        F::LogFilePath => {
            e.log.get_or_insert_with(Default::default).file_path = Some(text(field, v)?)
        }
        F::Message => {
            let m = text(field, v)?;
            match (&mut e.health, &mut e.log) {
                (Some(h), None) => h.message = Some(m),
                (_, log) => log.get_or_insert_with(Default::default).message = m,
            }
        }
        F::HealthDropped => e.health.get_or_insert_with(Default::default).dropped = long(field, v)?,
        F::HealthGaps => e.health.get_or_insert_with(Default::default).gaps = long(field, v)?,
        // Derived fields are skipped by the caller.
        F::EventKindField
        | F::EventCategory
        | F::EventType
        | F::ProcessArgsCount
        | F::NetworkType
        | F::FileName
        | F::FileDirectory
        | F::FileExtension => {}
    }
    Ok(())
}

fn parent(e: &mut Event) -> &mut crate::event::Parent {
    e.process_mut().parent.get_or_insert_with(Default::default)
}
fn net(e: &mut Event) -> &mut crate::event::Network {
    e.network.get_or_insert_with(Default::default)
}
fn file(e: &mut Event) -> &mut crate::event::File {
    e.file.get_or_insert_with(Default::default)
}
fn privilege(e: &mut Event) -> &mut crate::event::Privilege {
    e.privilege.get_or_insert_with(Default::default)
}
fn detail(e: &mut Event) -> &mut crate::event::Detail {
    e.detail.get_or_insert_with(Default::default)
}
fn web(e: &mut Event) -> &mut crate::event::Web {
    e.web.get_or_insert_with(Default::default)
}
fn dns(e: &mut Event) -> &mut crate::event::Dns {
    e.dns.get_or_insert_with(Default::default)
}
fn container(e: &mut Event) -> &mut crate::event::Container {
    std::sync::Arc::make_mut(e.container.get_or_insert_with(Default::default))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Ancestry, File, Network, Parent, Process};

    fn exec_event() -> Event {
        let mut e = Event::new(
            EventKind::ProcessExec,
            SourceKind::ProcConnector,
            Timestamp::from_secs(1_721_362_140),
        );
        e.host_name = Some("web-1".into());
        e.process = Some(Process {
            pid: 4242,
            executable: Some("/usr/bin/curl".into()),
            name: Some("curl".into()),
            command_line: Some("curl -s http://x".into()),
            args: vec!["curl".into(), "-s".into(), "http://x".into()],
            working_directory: Some("/tmp".into()),
            start: Some(Timestamp::from_secs(1_721_362_139)),
            exit_code: None,
            parent: Some(Parent {
                pid: 1,
                executable: Some("/bin/sh".into()),
                ..Parent::default()
            }),
            ancestors: Ancestry {
                pids: vec![1],
                executables: vec!["/bin/sh".into()],
            },
        });
        e.user.id = Some(0);
        e.user.name = Some("root".into());
        e
    }

    #[test]
    fn the_direct_line_is_the_serialized_tree_byte_for_byte() {
        let mut events = vec![exec_event()];
        // Every kind the recorded corpora hold (exec, fork, exit, network, file, auth, logs,
        // health, ...), as the real agent wrote them.
        for name in ["server.jsonl", "build-host.jsonl"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../ringfence-detect/benches/data")
                .join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            events.extend(text.lines().filter_map(|l| Event::from_ecs_line(l).ok()));
        }
        assert!(events.len() > 4000, "{}", events.len());
        let mut odd = exec_event();
        if let Some(p) = odd.process.as_mut() {
            p.command_line = Some("quote \" back\\slash \u{1} tab\t del\u{7f} é 🦀".into());
        }
        events.push(odd);
        for e in &events {
            assert_eq!(e.to_ecs_line(), sorted(&e.to_ecs()).to_string());
        }
    }

    /// The tree with every object's keys in byte order, whatever order serde_json's map keeps
    /// (a build with yara-x has its `preserve_order` on).
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                serde_json::Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }

    #[test]
    fn schema_names_need_no_escaping() {
        // write_key copies name parts as they are.
        for (_, parts) in line_order() {
            for p in parts {
                assert!(
                    p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'@'),
                    "{p}"
                );
            }
        }
    }

    #[test]
    fn round_trips_through_ecs_json() {
        let mut e = exec_event();
        assert_eq!(Event::from_ecs_line(&e.to_ecs_line()), Ok(e.clone()));
        e.kind = Some(EventKind::FileRename);
        e.file = Some(File {
            path: "/etc/cron.d/x".into(),
            original_path: Some("/tmp/x".into()),
            ..File::default()
        });
        e.network = Some(Network {
            destination_ip: "::1".parse().ok(),
            destination_port: Some(443),
            ..Network::default()
        });
        assert_eq!(Event::from_ecs_line(&e.to_ecs_line()), Ok(e.clone()));
        e.container = Some(std::sync::Arc::new(crate::event::Container {
            id: "ab".repeat(32),
            runtime: "podman".into(),
            image_name: Some("localhost/base:latest".into()),
            pod_name: Some("web-0".into()),
            pod_namespace: Some("shop".into()),
        }));
        e.kind = Some(EventKind::Dns);
        e.dns = Some(Box::new(crate::event::Dns {
            message_type: "answer".into(),
            question_name: "pool.example.org".into(),
            question_type: "A".into(),
            response_code: Some("NOERROR".into()),
            resolved_ip: vec!["192.0.2.7".into()],
        }));
        let json = e.to_ecs();
        assert_eq!(json["container"]["image"]["name"], "localhost/base:latest");
        assert_eq!(json["orchestrator"]["resource"]["name"], "web-0");
        assert_eq!(json["dns"]["question"]["name"], "pool.example.org");
        assert_eq!(json["event"]["category"], "network");
        assert_eq!(Event::from_ecs_line(&e.to_ecs_line()), Ok(e));
    }

    #[test]
    fn health_events_keep_their_message() {
        let mut e = Event::new(EventKind::SensorHealth, SourceKind::Ebpf, Timestamp(5));
        e.health = Some(crate::event::Health {
            dropped: 0,
            gaps: 3,
            message: Some("ring buffer full".into()),
        });
        assert_eq!(Event::from_ecs_line(&e.to_ecs_line()), Ok(e));
    }

    #[test]
    fn writes_nested_ecs_names() {
        let json = exec_event().to_ecs();
        assert_eq!(json["@timestamp"], "2024-07-19T04:09:00.000000000Z");
        assert_eq!(json["event"]["action"], "exec");
        assert_eq!(json["event"]["category"], "process");
        assert_eq!(json["process"]["parent"]["pid"], 1);
        assert_eq!(json["process"]["args_count"], 3);
        assert_eq!(json["ringfence"]["source"], "proc_connector");
    }

    #[test]
    fn refuses_bad_input_naming_the_field() {
        let cases = [
            (
                r#"{"event":{"action":"exec"},"process":{"pid":-1}}"#,
                "process.pid",
            ),
            (
                r#"{"event":{"action":"exec"},"process":{"pidd":1}}"#,
                "process.pidd",
            ),
            (
                r#"{"event":{"action":"exec"},"destination":{"ip":"999.1.1.1"}}"#,
                "destination.ip",
            ),
            (
                r#"{"event":{"action":"exec"},"process":{"args":"x"}}"#,
                "process.args",
            ),
            (r#"{"event":{"action":"teleport"}}"#, "event.action"),
            (
                r#"{"@timestamp":"yesterday","event":{"action":"exec"}}"#,
                "@timestamp",
            ),
        ];
        for (line, field) in cases {
            let err = Event::from_ecs_line(line)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(field), "{line}: {err}");
        }
        assert_eq!(Event::from_ecs_line("{}"), Err(EcsError::MissingAction));
        assert_eq!(Event::from_ecs_line("[]"), Err(EcsError::NotAnObject));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}1{}", r#"{"a":"#.repeat(64), "}".repeat(64));
        assert!(matches!(
            Event::from_ecs_line(&deep),
            Err(EcsError::UnknownField(_))
        ));
    }
}
