//! Event kinds: what happened, and the ECS `event.*` classification each kind carries.
//!
//! A kind is the unit the field schema and the rule index are keyed on. Adding a kind means
//! adding it to [`EventKind::ALL`]; the schema tests then insist that every kind is classified.

use serde::{Deserialize, Serialize};

/// What an event reports. One value per `event.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    ProcessExec,
    ProcessFork,
    ProcessExit,
    NetworkConnect,
    NetworkAccept,
    NetworkBind,
    NetworkListen,
    FileCreate,
    FileModify,
    FileDelete,
    FileRename,
    FileExecOpen,
    AuthSuccess,
    AuthFailure,
    PrivilegeChange,
    Ptrace,
    ModuleLoad,
    BpfLoad,
    MemfdCreate,
    MemoryExec,
    Signal,
    WebRequest,
    LogLine,
    SensorHealth,
    /// A DNS query or its answer, seen on the wire.
    Dns,
}

/// ECS `event.category` values used by Ringfence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Process,
    Network,
    File,
    Authentication,
    Iam,
    Driver,
    Web,
    Host,
}

impl Category {
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Process => "process",
            Category::Network => "network",
            Category::File => "file",
            Category::Authentication => "authentication",
            Category::Iam => "iam",
            Category::Driver => "driver",
            Category::Web => "web",
            Category::Host => "host",
        }
    }
}

impl EventKind {
    /// Every kind, in a fixed order (the bit order of [`KindSet`]).
    pub const ALL: [EventKind; 25] = [
        EventKind::ProcessExec,
        EventKind::ProcessFork,
        EventKind::ProcessExit,
        EventKind::NetworkConnect,
        EventKind::NetworkAccept,
        EventKind::NetworkBind,
        EventKind::NetworkListen,
        EventKind::FileCreate,
        EventKind::FileModify,
        EventKind::FileDelete,
        EventKind::FileRename,
        EventKind::FileExecOpen,
        EventKind::AuthSuccess,
        EventKind::AuthFailure,
        EventKind::PrivilegeChange,
        EventKind::Ptrace,
        EventKind::ModuleLoad,
        EventKind::BpfLoad,
        EventKind::MemfdCreate,
        EventKind::MemoryExec,
        EventKind::Signal,
        EventKind::WebRequest,
        EventKind::LogLine,
        EventKind::SensorHealth,
        EventKind::Dns,
    ];

    /// Position in [`EventKind::ALL`]; also the bit in a [`KindSet`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// ECS `event.action`.
    pub const fn action(self) -> &'static str {
        match self {
            EventKind::ProcessExec => "exec",
            EventKind::ProcessFork => "fork",
            EventKind::ProcessExit => "exit",
            EventKind::NetworkConnect => "connect",
            EventKind::NetworkAccept => "accept",
            EventKind::NetworkBind => "bind",
            EventKind::NetworkListen => "listen",
            EventKind::FileCreate => "create",
            EventKind::FileModify => "modify",
            EventKind::FileDelete => "delete",
            EventKind::FileRename => "rename",
            EventKind::FileExecOpen => "exec-open",
            EventKind::AuthSuccess => "auth-success",
            EventKind::AuthFailure => "auth-failure",
            EventKind::PrivilegeChange => "privilege-change",
            EventKind::Ptrace => "ptrace",
            EventKind::ModuleLoad => "module-load",
            EventKind::BpfLoad => "bpf-load",
            EventKind::MemfdCreate => "memfd-create",
            EventKind::MemoryExec => "memory-exec",
            EventKind::Signal => "signal",
            EventKind::WebRequest => "web-request",
            EventKind::LogLine => "log",
            EventKind::SensorHealth => "sensor-health",
            EventKind::Dns => "dns",
        }
    }

    /// The kind whose `event.action` is `action`.
    pub fn from_action(action: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.action() == action)
    }

    /// ECS `event.kind`: `metric` for sensor health, `event` for everything observed.
    pub const fn ecs_kind(self) -> &'static str {
        match self {
            EventKind::SensorHealth => "metric",
            _ => "event",
        }
    }

    /// ECS `event.category`.
    pub const fn category(self) -> Category {
        use EventKind::*;
        match self {
            ProcessExec | ProcessFork | ProcessExit | Ptrace | MemfdCreate | MemoryExec
            | Signal => Category::Process,
            NetworkConnect | NetworkAccept | NetworkBind | NetworkListen | Dns => Category::Network,
            FileCreate | FileModify | FileDelete | FileRename | FileExecOpen => Category::File,
            AuthSuccess | AuthFailure => Category::Authentication,
            PrivilegeChange => Category::Iam,
            ModuleLoad | BpfLoad => Category::Driver,
            WebRequest => Category::Web,
            LogLine | SensorHealth => Category::Host,
        }
    }

    /// ECS `event.type`.
    pub const fn ecs_type(self) -> &'static str {
        use EventKind::*;
        match self {
            ProcessExec | ProcessFork => "start",
            ProcessExit => "end",
            NetworkConnect | NetworkAccept => "connection",
            NetworkBind | NetworkListen => "start",
            FileCreate | MemfdCreate => "creation",
            FileModify | FileRename => "change",
            FileDelete => "deletion",
            FileExecOpen | WebRequest => "access",
            AuthSuccess => "allowed",
            AuthFailure => "denied",
            PrivilegeChange => "change",
            ModuleLoad | BpfLoad => "start",
            Ptrace | Signal | MemoryExec | LogLine | SensorHealth => "info",
            Dns => "protocol",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.action())
    }
}

/// A set of event kinds, as a bit mask (const-constructible for the schema table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KindSet(u32);

impl KindSet {
    pub const EMPTY: KindSet = KindSet(0);

    pub const fn of(kinds: &[EventKind]) -> KindSet {
        let mut bits = 0u32;
        let mut i = 0;
        while i < kinds.len() {
            bits |= 1 << kinds[i].index();
            i += 1;
        }
        KindSet(bits)
    }

    pub const fn union(self, other: KindSet) -> KindSet {
        KindSet(self.0 | other.0)
    }

    pub const fn intersect(self, other: KindSet) -> KindSet {
        KindSet(self.0 & other.0)
    }

    pub const fn minus(self, other: KindSet) -> KindSet {
        KindSet(self.0 & !other.0)
    }

    pub const fn contains(self, kind: EventKind) -> bool {
        self.0 & (1 << kind.index()) != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn is_subset_of(self, other: KindSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = EventKind> {
        EventKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
}

impl FromIterator<EventKind> for KindSet {
    fn from_iter<I: IntoIterator<Item = EventKind>>(iter: I) -> Self {
        iter.into_iter()
            .fold(KindSet::EMPTY, |set, k| set.union(KindSet::of(&[k])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_declaration_order_and_actions_are_unique() {
        for (i, k) in EventKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{k:?}");
            assert_eq!(EventKind::from_action(k.action()), Some(*k));
        }
    }

    #[test]
    fn kind_set_operations() {
        let s = KindSet::of(&[EventKind::ProcessExec, EventKind::FileCreate]);
        assert!(s.contains(EventKind::ProcessExec));
        assert!(!s.contains(EventKind::ProcessExit));
        assert_eq!(s.iter().count(), 2);
        assert!(KindSet::of(&[EventKind::FileCreate]).is_subset_of(s));
        assert!(s.minus(s).is_empty());
    }
}
