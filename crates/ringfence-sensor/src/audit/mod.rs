//! Linux audit, read-only multicast: the complete `execve` (arguments, cwd, uid, in one group of
//! records that cannot race with the process exiting), without taking auditd's place.
//!
//! The agent binds to the `AUDIT_NLGRP_READLOG` multicast group, which any number of readers
//! (and auditd) can share. The kernel only writes records for syscalls a rule asks for, so the
//! source can add exit rules, keyed `ringfence`, for `execve`/`execveat` and for `connect`,
//! `bind`, `accept` and `accept4` on the native architecture, and remove them when it stops
//! (stale ones left by a crash are removed at the next start). If audit was disabled it is
//! enabled for the agent's lifetime and the previous state restored.
//!
//! Those rules are not free, and the cost falls on the whole host, not on exec alone: while audit
//! is on and any syscall exit rule exists, every syscall of every process collects the names and
//! inodes it looks up, whatever syscalls the rules name (measured here: 1.40–1.45× on a loop of
//! open, stat and close; 1.08–1.11× on an exec storm, with no reader at all). So by default
//! ([`AddRules::Auto`]) the source adds its rules only where the host already pays that cost:
//! audit is on and someone else's exit rules are loaded (auditd's). Then ours only add the
//! records of execs and socket calls. Elsewhere it adds none and reads whatever records others'
//! rules produce. Without auditd running the kernel also copies records to the kernel log,
//! rate-limited (`printk_ratelimit`).
//!
//! Records are assembled by serial number ([`parse::Assembler`]). An execve is sent as an `exec`
//! event with source `audit`; the agent merges it into the process connector's exec of the same
//! pid. Socket calls with an IPv4/IPv6 address (their SOCKADDR record; AF_UNIX and netlink are
//! skipped) become network events with the syscall, and pid, executable and credentials from
//! the SYSCALL record:
//! - `connect` that succeeded or is in progress (`EINPROGRESS`): `connect`, the destination
//!   address and port, direction `egress`;
//! - `bind` that succeeded: `bind`, the local address and port asked for (port 0 when the
//!   kernel is to choose) as the destination, direction `listening`;
//! - `accept`/`accept4` that succeeded and asked for the peer's address (the kernel logs it only
//!   then): `accept`, the peer as the source, direction `ingress`. The local end is not logged.
//!
//! Audit does not log the socket's type, so `network.transport` is left out rather than
//! guessed; `listen` carries no address and is not watched.
#![allow(
    unsafe_code,
    reason = "netlink socket/bind/sendto/recv/poll FFI for NETLINK_AUDIT"
)]

pub mod parse;

use std::borrow::Cow;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use ringfence_event::{Event, EventKind, Network, Parent, Process, SourceKind, Timestamp};

use crate::source::{EventSender, Sent, Source, SourceError, StopSignal};
use parse::{Assembler, AuditExec, AuditNet, AuditRecord};

const NAME: &str = "audit";
const NETLINK_AUDIT: libc::c_int = 9;
const AUDIT_NLGRP_READLOG: u32 = 1;
const AUDIT_GET: u16 = 1000;
const AUDIT_SET: u16 = 1001;
const AUDIT_ADD_RULE: u16 = 1011;
const AUDIT_DEL_RULE: u16 = 1012;
const AUDIT_LIST_RULES: u16 = 1013;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const AUDIT_STATUS_ENABLED: u32 = 1;
const AUDIT_FILTER_EXIT: u32 = 0x04;
const AUDIT_FILTER_PREPEND: u32 = 0x10;
const AUDIT_ALWAYS: u32 = 2;
const AUDIT_ARCH: u32 = 11;
const AUDIT_FILTERKEY: u32 = 210;
const AUDIT_EQUAL: u32 = 0x4000_0000;

/// Pause between batches of records.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(10);

/// The key on the rules this source adds.
pub const RULE_KEY: &str = "ringfence";

#[cfg(target_arch = "x86_64")]
const ARCH: Option<(u32, &[u32])> = Some((0xC000_003E, &[59, 322]));
#[cfg(target_arch = "aarch64")]
const ARCH: Option<(u32, &[u32])> = Some((0xC000_00B7, &[221, 281]));
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH: Option<(u32, &[u32])> = None;

/// A socket call this source reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NetCall {
    Connect,
    Bind,
    Accept,
    Accept4,
}

/// The native socket calls' numbers.
#[cfg(target_arch = "x86_64")]
const NET_CALLS: &[(u32, NetCall)] = &[
    (42, NetCall::Connect),
    (43, NetCall::Accept),
    (49, NetCall::Bind),
    (288, NetCall::Accept4),
];
#[cfg(target_arch = "aarch64")]
const NET_CALLS: &[(u32, NetCall)] = &[
    (200, NetCall::Bind),
    (202, NetCall::Accept),
    (203, NetCall::Connect),
    (242, NetCall::Accept4),
];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const NET_CALLS: &[(u32, NetCall)] = &[];

const EINPROGRESS: i64 = 115;

fn netlink_socket(groups: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_AUDIT,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor from the kernel, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain old data; all-zero is valid.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    sa.nl_groups = groups;
    // SAFETY: `sa` is a valid sockaddr_nl and the length is its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sa).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn send_request(fd: RawFd, msg_type: u16, seq: u32, payload: &[u8]) -> io::Result<()> {
    let len = 16 + payload.len();
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    buf.extend_from_slice(&msg_type.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(payload);
    // SAFETY: sockaddr_nl is plain old data; all-zero addresses the kernel.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `buf` and `sa` are valid for the given lengths during the call.
    let rc = unsafe {
        libc::sendto(
            fd,
            buf.as_ptr().cast::<libc::c_void>(),
            buf.len(),
            0,
            (&raw const sa).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Receive without waiting: `Ok(None)` when nothing is queued.
fn recv_nowait(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: `buf` is valid and writable for its length.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast::<libc::c_void>(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(e)
        };
    }
    Ok(Some(usize::try_from(n).unwrap_or(0)))
}

fn recv_timeout(fd: RawFd, buf: &mut [u8], timeout_ms: i32) -> io::Result<Option<usize>> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if rc == 0 {
        return Ok(None);
    }
    // SAFETY: `buf` is valid and writable for its length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast::<libc::c_void>(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Some(usize::try_from(n).unwrap_or(0)))
}

/// An `NLMSG_ERROR` message's verdict: error 0 is the kernel's acknowledgement.
fn acknowledged(payload: &[u8]) -> io::Result<()> {
    let errno = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, i32::from_ne_bytes);
    if errno == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(-errno))
    }
}

/// Send a request and wait for its acknowledgement (and, for AUDIT_GET, the reply).
fn request(fd: RawFd, msg_type: u16, seq: u32, payload: &[u8]) -> io::Result<Option<Vec<u8>>> {
    send_request(fd, msg_type, seq, payload)?;
    let mut buf = vec![0u8; 8192];
    let mut reply = None;
    for _ in 0..8 {
        let Some(n) = recv_timeout(fd, &mut buf, 1000)? else {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        };
        for m in parse::netlink_messages(&buf[..n]) {
            if m.msg_type == NLMSG_ERROR {
                acknowledged(m.payload)?;
                if msg_type != AUDIT_GET || reply.is_some() {
                    return Ok(reply);
                }
            } else if m.msg_type == msg_type {
                reply = Some(m.payload.to_vec());
                return Ok(reply);
            }
        }
    }
    Ok(reply)
}

/// `enabled` from AUDIT_GET: 0 off, 1 on, 2 locked.
pub fn audit_enabled(fd: RawFd) -> io::Result<u32> {
    let reply = request(fd, AUDIT_GET, 1, &[])?.unwrap_or_default();
    reply
        .get(4..8)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
}

fn set_enabled(fd: RawFd, enabled: u32) -> io::Result<()> {
    let mut status = [0u8; 40];
    status[0..4].copy_from_slice(&AUDIT_STATUS_ENABLED.to_ne_bytes());
    status[4..8].copy_from_slice(&enabled.to_ne_bytes());
    request(fd, AUDIT_SET, 2, &status).map(|_| ())
}

/// The always,exit rules the kernel holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCensus {
    pub exit_rules: usize,
    /// One of them names a native execve syscall.
    pub execve: bool,
}

/// List the kernel's rules. The answer ends with `NLMSG_DONE`; the request's acknowledgement
/// may come before or after the list, and both are read so that neither is left queued for the
/// next request.
fn rule_census(fd: RawFd) -> io::Result<RuleCensus> {
    send_request(fd, AUDIT_LIST_RULES, 6, &[])?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut census = RuleCensus::default();
    let (mut done, mut acked) = (false, false);
    // Bounded: a rule is about 1 KiB, and the kernel holds at most a few thousand.
    for _ in 0..16_384 {
        if done && acked {
            return Ok(census);
        }
        let Some(n) = recv_timeout(fd, &mut buf, 1000)? else {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        };
        for m in parse::netlink_messages(buf.get(..n).unwrap_or_default()) {
            match m.msg_type {
                NLMSG_DONE => done = true,
                NLMSG_ERROR => {
                    acknowledged(m.payload)?;
                    acked = true;
                }
                AUDIT_LIST_RULES => census.count(m.payload),
                _ => {}
            }
        }
    }
    Err(io::Error::from(io::ErrorKind::InvalidData))
}

impl RuleCensus {
    /// Count one `struct audit_rule_data` if it is on the exit list with action `always`.
    fn count(&mut self, rule: &[u8]) {
        let word = |at: usize| {
            rule.get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
        };
        // The list number, with the flag of a rule added first (`auditctl -A`) taken off.
        let list = word(0).map(|w| w & !AUDIT_FILTER_PREPEND);
        if list != Some(AUDIT_FILTER_EXIT) || word(4) != Some(AUDIT_ALWAYS) {
            return;
        }
        self.exit_rules += 1;
        // The syscall mask: 64 words from byte 12, bit `nr % 32` of word `nr / 32`.
        let (_, execs) = ARCH.unwrap_or((0, &[]));
        self.execve |= execs.iter().any(|&nr| {
            word(12 + 4 * (nr as usize / 32)).is_some_and(|w| w & (1 << (nr % 32)) != 0)
        });
    }
}

/// `struct audit_rule_data` for an always,exit rule on the native execve syscalls.
fn exec_rule() -> Option<Vec<u8>> {
    let (arch, syscalls) = ARCH?;
    Some(rule_for(arch, syscalls))
}

/// The rule for the native socket calls.
fn net_rule() -> Option<Vec<u8>> {
    let (arch, _) = ARCH?;
    let numbers: Vec<u32> = NET_CALLS.iter().map(|&(nr, _)| nr).collect();
    (!numbers.is_empty()).then(|| rule_for(arch, &numbers))
}

/// `struct audit_rule_data` for an always,exit rule on `syscalls` of `arch`, keyed [`RULE_KEY`].
fn rule_for(arch: u32, syscalls: &[u32]) -> Vec<u8> {
    let key = RULE_KEY.as_bytes();
    let mut b = vec![0u8; 1040];
    let put = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    put(&mut b, 0, AUDIT_FILTER_EXIT);
    put(&mut b, 4, AUDIT_ALWAYS);
    put(&mut b, 8, 2);
    for &nr in syscalls {
        let word = 12 + 4 * (nr as usize / 32);
        let cur = u32::from_ne_bytes([b[word], b[word + 1], b[word + 2], b[word + 3]]);
        put(&mut b, word, cur | 1 << (nr % 32));
    }
    let (fields, values, flags) = (268, 524, 780);
    put(&mut b, fields, AUDIT_ARCH);
    put(&mut b, values, arch);
    put(&mut b, flags, AUDIT_EQUAL);
    put(&mut b, fields + 4, AUDIT_FILTERKEY);
    put(&mut b, values + 4, u32::try_from(key.len()).unwrap_or(0));
    put(&mut b, flags + 4, AUDIT_EQUAL);
    put(&mut b, 1036, u32::try_from(key.len()).unwrap_or(0));
    b.extend_from_slice(key);
    b
}

/// What `doctor` reports about audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditProbe {
    pub readlog_group: Result<(), String>,
    pub enabled: Result<u32, String>,
    /// The syscall rules loaded now (a running agent's own included).
    pub rules: Result<RuleCensus, String>,
}

/// Probe without changing anything: can we join the read-only group, is audit on, and which
/// syscall rules are loaded?
pub fn probe() -> AuditProbe {
    let readlog_group = netlink_socket(AUDIT_NLGRP_READLOG)
        .map(|_| ())
        .map_err(|e| e.to_string());
    let enabled = netlink_socket(0)
        .and_then(|fd| audit_enabled(fd.as_raw_fd()))
        .map_err(|e| e.to_string());
    AuditProbe {
        readlog_group,
        enabled,
        rules: loaded_rules().map_err(|e| e.to_string()),
    }
}

/// The always,exit rules loaded in the kernel now, whoever added them.
pub fn loaded_rules() -> io::Result<RuleCensus> {
    let fd = netlink_socket(0)?;
    rule_census(fd.as_raw_fd())
}

/// When the source adds (and on stop removes) its `ringfence`-keyed execve and socket rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddRules {
    /// Only where audit is on and others' exit rules are loaded: every syscall already pays for
    /// audit, and ours add only their records.
    #[default]
    Auto,
    /// Always, switching audit on if it is off: complete execve arguments and socket calls, at
    /// the cost described in the module documentation.
    Always,
    /// Never: read the records others' rules produce.
    Never,
}

/// Written `"auto"`, `true` or `false`.
impl serde::Serialize for AddRules {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AddRules::Auto => s.serialize_str("auto"),
            AddRules::Always => s.serialize_bool(true),
            AddRules::Never => s.serialize_bool(false),
        }
    }
}

impl<'de> serde::Deserialize<'de> for AddRules {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AddRules, D::Error> {
        struct Choice;
        impl serde::de::Visitor<'_> for Choice {
            type Value = AddRules;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"auto\", true or false")
            }

            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<AddRules, E> {
                Ok(if b { AddRules::Always } else { AddRules::Never })
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<AddRules, E> {
                match s {
                    "auto" => Ok(AddRules::Auto),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }
        }
        d.deserialize_any(Choice)
    }
}

/// Settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOptions {
    pub add_rules: AddRules,
}

/// The audit source.
#[derive(Debug)]
pub struct AuditSource {
    mcast: OwnedFd,
    control: OwnedFd,
    /// Rules this source added, removed on stop.
    rules: Vec<Vec<u8>>,
    restore_enabled: Option<u32>,
    /// Others' rules (auditd's) already ask for execve records.
    others_see_execs: bool,
}

impl AuditSource {
    pub fn open(options: AuditOptions) -> Result<AuditSource, SourceError> {
        let control = netlink_socket(0)
            .map_err(|e| SourceError::syscall(NAME, "socket(NETLINK_AUDIT)", e))?;
        let mcast = netlink_socket(AUDIT_NLGRP_READLOG)
            .map_err(|e| SourceError::syscall(NAME, "bind(AUDIT_NLGRP_READLOG)", e))?;
        let _ = crate::sys::grow_receive_buffer(mcast.as_raw_fd(), 8 << 20);
        let enabled = audit_enabled(control.as_raw_fd())
            .map_err(|e| SourceError::syscall(NAME, "AUDIT_GET", e))?;
        let mut source = AuditSource {
            mcast,
            control,
            rules: Vec::new(),
            restore_enabled: None,
            others_see_execs: false,
        };
        let rules: Vec<Vec<u8>> = [exec_rule(), net_rule()].into_iter().flatten().collect();
        if rules.is_empty() {
            return Ok(source);
        }
        if enabled == 2 {
            tracing::warn!(
                source = NAME,
                "audit configuration is locked; reading existing rules only"
            );
            return Ok(source);
        }
        let fd = source.control.as_raw_fd();
        // Rules left by an agent that crashed: remove them first (absent is fine). They are
        // ours whatever `add_rules` says now, and they cost the host.
        for rule in &rules {
            let _ = request(fd, AUDIT_DEL_RULE, 3, rule);
        }
        // What others' rules already cost and cover (ours were just removed).
        let census = if enabled == 1 {
            rule_census(fd).unwrap_or_else(|e| {
                tracing::warn!(source = NAME, error = %e, "could not list the audit rules");
                RuleCensus::default()
            })
        } else {
            RuleCensus::default()
        };
        source.others_see_execs = census.execve;
        let add = match options.add_rules {
            AddRules::Never => false,
            AddRules::Always => true,
            AddRules::Auto if census.exit_rules == 0 => {
                tracing::info!(
                    source = NAME,
                    "no audit syscall rules are active on this host; adding none (each would \
                     cost every syscall of every process): execve arguments come from /proc. \
                     `[audit] add_rules = true` adds them"
                );
                false
            }
            AddRules::Auto => {
                tracing::info!(
                    source = NAME,
                    rules = census.exit_rules,
                    "audit syscall rules are active; adding the execve and socket rules costs \
                     only their records"
                );
                true
            }
        };
        if !add {
            return Ok(source);
        }
        if enabled == 0 {
            set_enabled(fd, 1)
                .map_err(|e| SourceError::syscall(NAME, "AUDIT_SET(enabled=1)", e))?;
            source.restore_enabled = Some(0);
        }
        for rule in rules {
            // On failure `source` drops, which removes the rules added so far.
            request(fd, AUDIT_ADD_RULE, 4, &rule)
                .map_err(|e| SourceError::syscall(NAME, "AUDIT_ADD_RULE", e))?;
            source.rules.push(rule);
        }
        Ok(source)
    }

    /// Whether this source added its rules, so that every execve reaches it.
    pub fn adds_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Whether execve records reach this source at all: its own rules, or others' that name
    /// execve (which may filter some processes out).
    pub fn sees_execs(&self) -> bool {
        self.adds_rules() || self.others_see_execs
    }

    fn cleanup(&mut self) {
        let fd = self.control.as_raw_fd();
        for rule in std::mem::take(&mut self.rules) {
            if let Err(e) = request(fd, AUDIT_DEL_RULE, 5, &rule) {
                tracing::warn!(source = NAME, error = %e, "could not remove a ringfence audit rule");
            }
        }
        if let Some(state) = self.restore_enabled.take()
            && let Err(e) = set_enabled(fd, state)
        {
            tracing::warn!(source = NAME, error = %e, "could not restore the audit enabled state");
        }
    }
}

impl Drop for AuditSource {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The event for an assembled execve.
pub fn to_event(x: &AuditExec) -> Event {
    let mut e = Event::new(
        EventKind::ProcessExec,
        SourceKind::Audit,
        Timestamp(x.time_ns),
    );
    let command_line = (!x.args.is_empty()).then(|| x.args.join(" "));
    e.process = Some(Process {
        pid: x.pid.unwrap_or(0),
        executable: x.executable.clone(),
        name: x
            .executable
            .as_deref()
            .and_then(|p| p.rsplit('/').next())
            .map(str::to_owned),
        command_line,
        args: x.args.clone(),
        working_directory: x.cwd.clone(),
        parent: x.ppid.map(|pid| Parent {
            pid,
            ..Parent::default()
        }),
        ..Process::default()
    });
    e.user.id = x.uid.map(i64::from);
    e.user.effective_id = x.euid.map(i64::from);
    e.user.group_id = x.gid.map(i64::from);
    e
}

/// The event for a socket call, or `None` when it is not one this source reports: only the
/// native calls of [`NET_CALLS`] (by the record's arch and syscall number, whoever's rule
/// logged it), and only when they succeeded (or, for `connect`, are in progress).
pub fn net_event(x: &AuditNet) -> Option<Event> {
    let (arch, _) = ARCH?;
    if x.arch != Some(arch) {
        return None;
    }
    let call = NET_CALLS
        .iter()
        .find(|&&(nr, _)| Some(nr) == x.syscall)
        .map(|&(_, c)| c)?;
    let in_progress = call == NetCall::Connect && x.exit == Some(-EINPROGRESS);
    if x.success != Some(true) && !in_progress {
        return None;
    }
    let (kind, syscall, direction) = match call {
        NetCall::Connect => (EventKind::NetworkConnect, "connect", "egress"),
        NetCall::Bind => (EventKind::NetworkBind, "bind", "listening"),
        NetCall::Accept => (EventKind::NetworkAccept, "accept", "ingress"),
        NetCall::Accept4 => (EventKind::NetworkAccept, "accept4", "ingress"),
    };
    let mut e = Event::new(kind, SourceKind::Audit, Timestamp(x.time_ns));
    e.syscall = Some(Cow::Borrowed(syscall));
    e.process = Some(Process {
        pid: x.pid?,
        executable: x.executable.clone(),
        name: x
            .executable
            .as_deref()
            .and_then(|p| p.rsplit('/').next())
            .map(str::to_owned),
        parent: x.ppid.map(|pid| Parent {
            pid,
            ..Parent::default()
        }),
        ..Process::default()
    });
    e.user.id = x.uid.map(i64::from);
    e.user.effective_id = x.euid.map(i64::from);
    e.user.group_id = x.gid.map(i64::from);
    let (ip, port) = (Some(x.addr.ip()), Some(x.addr.port()));
    e.network = Some(match call {
        NetCall::Connect | NetCall::Bind => Network {
            direction: Some(Cow::Borrowed(direction)),
            destination_ip: ip,
            destination_port: port,
            ..Network::default()
        },
        NetCall::Accept | NetCall::Accept4 => Network {
            direction: Some(Cow::Borrowed(direction)),
            source_ip: ip,
            source_port: port,
            ..Network::default()
        },
    });
    Some(e)
}

impl Source for AuditSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(mut self: Box<Self>, out: EventSender, stop: StopSignal) -> Result<(), SourceError> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut asm = Assembler::default();
        let mut done = Vec::new();
        let fd = self.mcast.as_raw_fd();
        while !stop.is_stopped() {
            // Drain what is queued; when empty, let a batch build up (one wake-up per batch
            // instead of one per record: an execve is 5 to 7 records), then wait.
            let got = match recv_nowait(fd, &mut buf) {
                Ok(None) => {
                    stop.sleep(COALESCE);
                    recv_timeout(fd, &mut buf, 200)
                }
                other => other,
            };
            let n = match got {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    out.note_gap(1);
                    tracing::warn!(
                        source = NAME,
                        "audit receive buffer overflowed; records were lost"
                    );
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.note_error();
                    tracing::warn!(source = NAME, error = %e, "receive failed");
                    stop.sleep(std::time::Duration::from_millis(100));
                    continue;
                }
            };
            for m in parse::netlink_messages(&buf[..n.min(buf.len())]) {
                asm.push(m, &mut done);
            }
            for x in done.drain(..) {
                let event = match x {
                    AuditRecord::Exec(x) if x.success != Some(false) => to_event(&x),
                    AuditRecord::Net(x) => match net_event(&x) {
                        Some(e) => e,
                        None => continue,
                    },
                    AuditRecord::Exec(_) => continue,
                };
                if out.send(event) == Sent::Closed {
                    self.cleanup();
                    return Ok(());
                }
            }
        }
        self.cleanup();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_layout() {
        let Some(r) = exec_rule() else { return };
        assert_eq!(r.len(), 1040 + RULE_KEY.len());
        assert_eq!(&r[1040..], RULE_KEY.as_bytes());
        let Some(c) = net_rule() else { return };
        assert_eq!(c.len(), r.len());
        // Same fields (arch, key), another syscall mask.
        assert_eq!(c[..12], r[..12]);
        assert_ne!(c[12..268], r[12..268]);
        assert_eq!(c[268..], r[268..]);
    }

    #[test]
    fn the_census_counts_exit_rules_and_sees_execve() {
        let (Some(exec), Some(net)) = (exec_rule(), net_rule()) else {
            return;
        };
        let mut census = RuleCensus::default();
        census.count(&net);
        assert_eq!(
            census,
            RuleCensus {
                exit_rules: 1,
                execve: false
            }
        );
        census.count(&exec);
        assert_eq!(
            census,
            RuleCensus {
                exit_rules: 2,
                execve: true
            }
        );
        // A rule added at the head of the list (`auditctl -A`) carries a flag in the list word.
        let mut first = net.clone();
        first[0..4].copy_from_slice(&(AUDIT_FILTER_EXIT | AUDIT_FILTER_PREPEND).to_ne_bytes());
        census.count(&first);
        assert_eq!(census.exit_rules, 3);
        // A never,exit rule, a task rule and a cut-short record are not counted.
        let mut never = exec.clone();
        never[4..8].copy_from_slice(&1u32.to_ne_bytes());
        let mut task = exec.clone();
        task[0..4].copy_from_slice(&1u32.to_ne_bytes());
        let mut other = RuleCensus::default();
        for rule in [&never[..], &task[..], &exec[..6], &[][..]] {
            other.count(rule);
        }
        assert_eq!(other, RuleCensus::default());
    }

    #[test]
    fn auto_adds_rules_only_where_others_are_loaded_and_always_removes_its_own() {
        let Ok(before) = loaded_rules() else { return };
        let Ok(enabled) = netlink_socket(0).and_then(|fd| audit_enabled(fd.as_raw_fd())) else {
            return;
        };
        if enabled == 2 {
            return; // locked: nothing can be added
        }
        let auto = AuditSource::open(AuditOptions {
            add_rules: AddRules::Auto,
        });
        let Ok(auto) = auto else {
            panic!("audit source: {auto:?}");
        };
        assert_eq!(auto.adds_rules(), enabled == 1 && before.exit_rules > 0);
        drop(auto);
        let always = AuditSource::open(AuditOptions {
            add_rules: AddRules::Always,
        });
        let Ok(always) = always else {
            panic!("audit source: {always:?}");
        };
        assert!(always.adds_rules() && always.sees_execs());
        let during = loaded_rules().map(|r| r.exit_rules).ok();
        assert_eq!(during, Some(before.exit_rules + 2));
        drop(always);
        assert_eq!(loaded_rules().ok(), Some(before));
        let enabled_after = netlink_socket(0).and_then(|fd| audit_enabled(fd.as_raw_fd()));
        assert_eq!(
            enabled_after.ok(),
            Some(enabled),
            "the enabled state is restored"
        );
    }

    #[test]
    fn the_kernel_lists_its_rules_and_leaves_no_reply_queued() {
        let Ok(fd) = netlink_socket(0) else { return };
        let fd = fd.as_raw_fd();
        for _ in 0..3 {
            assert!(rule_census(fd).is_ok());
            // The acknowledgement was read with the list: nothing is left for the next request.
            let mut buf = [0u8; 4096];
            assert!(matches!(recv_nowait(fd, &mut buf), Ok(None)));
        }
    }

    fn net(syscall: u32, success: bool, exit: i64) -> AuditNet {
        AuditNet {
            serial: 1,
            time_ns: 5,
            arch: ARCH.map(|(a, _)| a),
            syscall: Some(syscall),
            exit: Some(exit),
            success: Some(success),
            pid: Some(77),
            ppid: Some(1),
            uid: Some(1000),
            euid: Some(0),
            gid: Some(100),
            executable: Some("/usr/bin/curl".into()),
            key: Some(RULE_KEY.into()),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }

    fn nr(call: NetCall) -> Option<u32> {
        NET_CALLS.iter().find(|c| c.1 == call).map(|c| c.0)
    }

    #[test]
    fn bind_and_accept_events() {
        let (Some(b), Some(a), Some(a4)) =
            (nr(NetCall::Bind), nr(NetCall::Accept), nr(NetCall::Accept4))
        else {
            return;
        };
        let Some(e) = net_event(&net(b, true, 0)) else {
            panic!("bind not reported");
        };
        assert_eq!(e.kind, Some(EventKind::NetworkBind));
        assert_eq!(e.syscall.as_deref(), Some("bind"));
        let n = e.network.clone().unwrap_or_default();
        assert_eq!(n.direction.as_deref(), Some("listening"));
        assert_eq!(n.destination_port, Some(8080));
        assert_eq!(n.source_ip, None);
        for (call, name) in [(a, "accept"), (a4, "accept4")] {
            let Some(e) = net_event(&net(call, true, 6)) else {
                panic!("{name} not reported");
            };
            assert_eq!(e.kind, Some(EventKind::NetworkAccept));
            assert_eq!(e.syscall.as_deref(), Some(name));
            let n = e.network.clone().unwrap_or_default();
            assert_eq!(n.direction.as_deref(), Some("ingress"));
            assert_eq!(n.source_ip, Some([127, 0, 0, 1].into()));
            assert_eq!(n.source_port, Some(8080));
            assert_eq!(n.destination_ip, None, "the local end is not logged");
            // A non-blocking accept with nothing queued, or a refused bind.
            assert!(net_event(&net(call, false, -11)).is_none());
        }
        assert!(net_event(&net(b, false, -98)).is_none());
        assert!(net_event(&net(b, false, -EINPROGRESS)).is_none());
    }

    #[test]
    fn connect_becomes_an_egress_event() {
        let Some(nr) = nr(NetCall::Connect) else {
            return;
        };
        for (success, exit) in [(true, 0), (false, -EINPROGRESS)] {
            let Some(e) = net_event(&net(nr, success, exit)) else {
                panic!("connect ({success}, {exit}) not reported");
            };
            assert_eq!(e.kind, Some(EventKind::NetworkConnect));
            assert_eq!(e.source, Some(SourceKind::Audit));
            assert_eq!(e.syscall.as_deref(), Some("connect"));
            let n = e.network.clone().unwrap_or_default();
            assert_eq!(n.direction.as_deref(), Some("egress"));
            assert_eq!(n.destination_ip, Some([127, 0, 0, 1].into()));
            assert_eq!(n.destination_port, Some(8080));
            assert_eq!(n.transport, None, "audit does not say tcp or udp");
            assert_eq!(n.source_ip, None);
            let p = e.process.clone().unwrap_or_default();
            assert_eq!(p.pid, 77);
            assert_eq!(p.executable.as_deref(), Some("/usr/bin/curl"));
            assert_eq!(p.name.as_deref(), Some("curl"));
            assert_eq!(e.user.id, Some(1000));
            assert_eq!(e.user.effective_id, Some(0));
        }
    }

    #[test]
    fn failed_foreign_and_other_arch_calls_are_not_connects() {
        let Some(nr) = nr(NetCall::Connect) else {
            return;
        };
        // Refused, another syscall (an admin's sendto rule), a 32-bit caller, no pid.
        assert!(net_event(&net(nr, false, -111)).is_none());
        assert!(net_event(&net(44, true, 0)).is_none());
        let mut compat = net(nr, true, 0);
        compat.arch = Some(0x4000_0003);
        assert!(net_event(&compat).is_none());
        let mut nopid = net(nr, true, 0);
        nopid.pid = None;
        assert!(net_event(&nopid).is_none());
    }
}
