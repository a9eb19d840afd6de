//! The netlink process connector: fork, exec and exit of every process on the host, without
//! loading any code into the kernel.
//!
//! The kernel stamps each message with a per-CPU sequence number; [`GapTracker`] turns jumps in
//! it into a count of lost messages, and a receive-buffer overflow (`ENOBUFS`) is counted as an
//! error and logged, never fatal. Threads are filtered out: a fork whose child is not a thread
//! group leader, or the exit of a non-leader, is a thread and not a process.
//!
//! Exec events are enriched here, on the source thread, as soon as the message arrives: that is
//! the best chance to read /proc before a short-lived process is gone. An exec whose /proc read
//! fails or finds a reused pid is still sent, marked `partial`. In driverless mode the messages
//! are split over two sockets ([`split`]): execs on one read at once, the rest on one read in
//! batches, and who each process runs as is kept from the kernel's messages ([`ids`]) rather
//! than read from /proc for every exec.
//!
//! Beside the eBPF sensor the connector reports only privilege changes and ptrace attaches
//! ([`ProcConnectorOptions::privilege_only`]). A classic BPF filter on the socket
//! ([`privilege_filter`]) then drops every other message in the kernel, before it is queued:
//! the reader is not woken three times per process for messages it would discard (fork, exec
//! and exit were a third of the agent's CPU in an exec storm). The kernel's sequence numbers
//! count every message, so with the filter a jump is no loss; a receive-buffer overflow is
//! counted as a gap instead.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proc_connector::{Error as PcError, ProcConnector, ProcEvent};
use ringfence_event::{Event, EventKind, Parent, Privilege, Process, SourceKind};

use crate::proc_info::read_process;

mod filters;
mod ids;
mod split;

use crate::source::{BATCH, EventSender, Sent, Source, SourceError, StopSignal};
use crate::sys::{self, Clocks};
pub use filters::{exec_filter, privilege_filter, rest_filter};

const NAME: &str = "proc_connector";

/// Sequence-number gap detection, one counter per CPU.
#[derive(Debug, Default)]
pub struct GapTracker {
    last: HashMap<u32, u32>,
}

impl GapTracker {
    /// Record message `seq` from `cpu`; returns how many messages were skipped before it.
    pub fn observe(&mut self, cpu: u32, seq: u32) -> u64 {
        match self.last.insert(cpu, seq) {
            None => 0,
            Some(prev) => {
                let d = seq.wrapping_sub(prev);
                // d == 0: duplicate; d >= 2^31: went backwards (counter reset): not a loss.
                if d == 0 || d >= 1 << 31 {
                    0
                } else {
                    u64::from(d - 1)
                }
            }
        }
    }
}

/// Parse one datagram from the connector socket. `Ok(None)` for control messages.
pub fn parse_datagram(buf: &[u8]) -> Result<Option<ProcEvent>, PcError> {
    proc_connector::parse_netlink_message(buf, buf.len())
}

/// The sequence and CPU of a message, for gap tracking.
pub fn seq_of(ev: &ProcEvent) -> Option<(u32, u32)> {
    match *ev {
        ProcEvent::Exec { cpu, seq, .. }
        | ProcEvent::Fork { cpu, seq, .. }
        | ProcEvent::Exit { cpu, seq, .. }
        | ProcEvent::Uid { cpu, seq, .. }
        | ProcEvent::Gid { cpu, seq, .. }
        | ProcEvent::Sid { cpu, seq, .. }
        | ProcEvent::Ptrace { cpu, seq, .. }
        | ProcEvent::Comm { cpu, seq, .. }
        | ProcEvent::Coredump { cpu, seq, .. } => Some((cpu, seq)),
        ProcEvent::Unknown { .. } => None,
    }
}

/// The kernel's timestamp of a message (`CLOCK_MONOTONIC`, ns).
fn timestamp_of(ev: &ProcEvent) -> Option<u64> {
    match *ev {
        ProcEvent::Exec { timestamp_ns, .. }
        | ProcEvent::Fork { timestamp_ns, .. }
        | ProcEvent::Exit { timestamp_ns, .. }
        | ProcEvent::Uid { timestamp_ns, .. }
        | ProcEvent::Gid { timestamp_ns, .. }
        | ProcEvent::Sid { timestamp_ns, .. }
        | ProcEvent::Ptrace { timestamp_ns, .. }
        | ProcEvent::Comm { timestamp_ns, .. }
        | ProcEvent::Coredump { timestamp_ns, .. } => Some(timestamp_ns),
        ProcEvent::Unknown { .. } => None,
    }
}

/// The event for a connector message, before /proc enrichment; `None` for messages Ringfence
/// does not report (thread creation and exit, comm and sid changes, ...).
pub fn to_event(ev: &ProcEvent, clocks: &Clocks) -> Option<Event> {
    let process = |pid: u32| Process {
        pid,
        ..Process::default()
    };
    let (kind, ts, proc_) = match *ev {
        ProcEvent::Exec {
            tgid, timestamp_ns, ..
        } => (EventKind::ProcessExec, timestamp_ns, process(tgid)),
        ProcEvent::Fork {
            parent_tgid,
            child_pid,
            child_tgid,
            timestamp_ns,
            ..
        } if child_pid == child_tgid => {
            let mut p = process(child_tgid);
            p.parent = Some(Parent {
                pid: parent_tgid,
                ..Parent::default()
            });
            (EventKind::ProcessFork, timestamp_ns, p)
        }
        ProcEvent::Exit {
            pid,
            tgid,
            exit_code,
            parent_tgid,
            timestamp_ns,
            ..
        } if pid == tgid => {
            let mut p = process(tgid);
            // The kernel sends the wait status: exit code in bits 8..16, signal in 0..7.
            p.exit_code = Some(if exit_code & 0x7f == 0 {
                i64::from((exit_code >> 8) & 0xff)
            } else {
                128 + i64::from(exit_code & 0x7f)
            });
            if parent_tgid != 0 {
                p.parent = Some(Parent {
                    pid: parent_tgid,
                    ..Parent::default()
                });
            }
            (EventKind::ProcessExit, timestamp_ns, p)
        }
        ProcEvent::Uid {
            tgid,
            ruid,
            euid,
            timestamp_ns,
            ..
        } => {
            let mut e = Event::new(
                EventKind::PrivilegeChange,
                SourceKind::ProcConnector,
                clocks.from_monotonic(timestamp_ns),
            );
            e.process = Some(process(tgid));
            e.privilege = Some(Privilege {
                new_uid: Some(i64::from(ruid)),
                new_euid: Some(i64::from(euid)),
                ..Privilege::default()
            });
            return Some(e);
        }
        _ => return None,
    };
    let mut e = Event::new(kind, SourceKind::ProcConnector, clocks.from_monotonic(ts));
    e.process = Some(proc_);
    Some(e)
}

/// The event for a privilege change (uid, gid) or a ptrace attach, the connector's messages
/// that the eBPF sensor's default profile takes from it where those kinds have no hook off the
/// syscall path; `None` for every other message (and for a ptrace detach).
pub fn privilege_event(ev: &ProcEvent, clocks: &Clocks) -> Option<Event> {
    let process = |pid: u32| Process {
        pid,
        ..Process::default()
    };
    match *ev {
        ProcEvent::Uid { .. } => to_event(ev, clocks),
        ProcEvent::Gid {
            tgid,
            rgid,
            timestamp_ns,
            ..
        } => {
            let mut e = Event::new(
                EventKind::PrivilegeChange,
                SourceKind::ProcConnector,
                clocks.from_monotonic(timestamp_ns),
            );
            e.process = Some(process(tgid));
            e.privilege = Some(Privilege {
                new_gid: Some(i64::from(rgid)),
                ..Privilege::default()
            });
            Some(e)
        }
        ProcEvent::Ptrace {
            tgid,
            tracer_tgid,
            timestamp_ns,
            ..
        } if tracer_tgid != 0 => {
            let mut e = Event::new(
                EventKind::Ptrace,
                SourceKind::ProcConnector,
                clocks.from_monotonic(timestamp_ns),
            );
            e.process = Some(process(tracer_tgid));
            e.syscall = Some(std::borrow::Cow::Borrowed("ptrace"));
            e.target = Some(ringfence_event::TargetProcess {
                pid: tgid,
                executable: std::fs::read_link(format!("/proc/{tgid}/exe"))
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned()),
            });
            Some(e)
        }
        _ => None,
    }
}

/// Settings for the process connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcConnectorOptions {
    /// Read /proc for each exec on the source thread.
    pub enrich_exec: bool,
    /// Socket receive buffer, bytes.
    pub receive_buffer: usize,
    /// When set, drain the socket, then sleep this long before waiting again: one wake-up per
    /// batch instead of one per message (the buffer absorbs the burst meanwhile). Leave unset
    /// when exec enrichment from /proc must race the process.
    pub coalesce: Option<Duration>,
    /// When set, events reach the agent in bursts at most this often while the socket is still
    /// read (and /proc raced) as each message arrives: the agent's pipeline wakes once per burst
    /// instead of once per event. Each event waits at most this long.
    pub hand_off: Option<Duration>,
    /// Report only privilege changes and ptrace attaches ([`privilege_event`]): beside the eBPF
    /// sensor, which reports the processes.
    pub privilege_only: bool,
}

impl Default for ProcConnectorOptions {
    fn default() -> Self {
        ProcConnectorOptions {
            enrich_exec: true,
            // A fork, exec and exit of one short process are three messages of about 1 KiB of
            // buffer each, and the reader also races /proc for each exec. With 8 MiB a CI run
            // once lost one message in a 4-thread storm of 2,000 processes with two agents on
            // one CPU (an overflow, most likely; that run's log was not kept). The memory is
            // taken only while the reader is behind.
            receive_buffer: 32 << 20,
            coalesce: None,
            hand_off: None,
            privilege_only: false,
        }
    }
}

/// The process connector as a [`Source`].
pub struct ProcConnectorSource {
    conn: ProcConnector,
    options: ProcConnectorOptions,
    clocks: Clocks,
    /// [`privilege_filter`] is attached: sequence jumps are the filter's, not losses.
    filtered: bool,
    /// Driverless mode's second socket ([`split`]): `conn` then gets only execs, and this one
    /// the rest.
    rest: Option<ProcConnector>,
}

impl std::fmt::Debug for ProcConnectorSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcConnectorSource")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ProcConnectorSource {
    /// Open and subscribe. Events are buffered in the socket from here on, so open before
    /// taking the /proc snapshot to miss nothing in between.
    pub fn open(options: ProcConnectorOptions) -> Result<ProcConnectorSource, SourceError> {
        let conn = ProcConnector::new().map_err(|e| match e {
            PcError::Os(io) => SourceError::syscall(NAME, "socket/bind/subscribe", io),
            other => SourceError::unavailable(NAME, other.to_string()),
        })?;
        // A larger buffer rides out bursts; failure to grow it is not fatal.
        let _ = sys::grow_receive_buffer(conn.as_raw_fd(), options.receive_buffer);
        let filtered = options.privilege_only
            && match sys::attach_socket_filter(conn.as_raw_fd(), &mut privilege_filter()) {
                Ok(()) => true,
                Err(e) => {
                    // Still correct unfiltered, at the cost of a wake-up per message.
                    tracing::warn!(source = NAME, error = %e, "cannot filter the connector's messages; reading them all");
                    false
                }
            };
        // Execs raced against /proc, and nothing else batched: the rest can wait in a socket
        // of their own (see [`split`]).
        let rest = if options.enrich_exec && !options.privilege_only && options.coalesce.is_none() {
            match open_rest(&conn, options.receive_buffer) {
                Ok(rest) => Some(rest),
                Err(e) => {
                    // Still correct on one socket, at the cost of a wake-up per message.
                    tracing::warn!(source = NAME, error = %e, "cannot split the connector's messages over two sockets; reading them all on one");
                    None
                }
            }
        } else {
            None
        };
        Ok(ProcConnectorSource {
            conn,
            options,
            clocks: Clocks::read(),
            filtered,
            rest,
        })
    }
}

/// The rest socket of a split reader, with [`rest_filter`] attached, and `execs` given
/// [`exec_filter`]; both made non-blocking. The exec filter goes on last, so on any error
/// `execs` still gets every message and the one-socket reader (which takes a non-blocking
/// socket too) misses nothing.
fn open_rest(execs: &ProcConnector, receive_buffer: usize) -> std::io::Result<ProcConnector> {
    let io = |e: PcError| match e {
        PcError::Os(io) => io,
        other => std::io::Error::other(other.to_string()),
    };
    let rest = ProcConnector::new().map_err(io)?;
    let _ = sys::grow_receive_buffer(rest.as_raw_fd(), receive_buffer);
    sys::attach_socket_filter(rest.as_raw_fd(), &mut rest_filter())?;
    rest.set_nonblocking().map_err(io)?;
    execs.set_nonblocking().map_err(io)?;
    sys::attach_socket_filter(execs.as_raw_fd(), &mut exec_filter())?;
    Ok(rest)
}

impl Source for ProcConnectorSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Box<Self>, out: EventSender, stop: StopSignal) -> Result<(), SourceError> {
        if let Some(rest) = &self.rest {
            let reader = split::SplitReader {
                execs: &self.conn,
                rest,
                options: self.options,
                clocks: &self.clocks,
            };
            return reader.run(&out, &stop);
        }
        let mut buf = vec![0u8; 16 * 1024];
        let mut gaps = GapTracker::default();
        let mut consecutive_errors = 0u32;
        if self.options.coalesce.is_some() {
            let _ = self.conn.set_nonblocking();
        }
        // Events read but not yet handed to the agent, and when they are due.
        let mut held: Vec<Event> = Vec::new();
        let mut due: Option<Instant> = None;
        while !stop.is_stopped() {
            // Wake for the next message, or in time to hand over what is held.
            let mut wait = IDLE_WAIT;
            if let Some(at) = due {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    due = None;
                    if out.send_all(&mut held) == Sent::Closed {
                        return Ok(());
                    }
                } else {
                    wait = left.max(Duration::from_millis(1));
                }
            }
            let got = match self.options.coalesce {
                // Drain without blocking; when empty, let a batch build up, then wait.
                Some(pause) => match self.conn.recv_raw(&mut buf) {
                    Err(PcError::WouldBlock) => {
                        stop.sleep(pause);
                        self.conn.recv_raw_timeout(&mut buf, wait)
                    }
                    other => other.map(Some),
                },
                None => self.conn.recv_raw_timeout(&mut buf, wait),
            };
            let n = match got {
                Ok(Some(n)) => n,
                Ok(None) | Err(PcError::Interrupted) | Err(PcError::WouldBlock) => continue,
                Err(PcError::Overrun) => {
                    out.note_error();
                    if self.filtered {
                        // No sequence to count them by: at least one was lost.
                        out.note_gap(1);
                    }
                    tracing::warn!(
                        source = NAME,
                        "receive buffer overflowed (ENOBUFS); the lost messages show as gaps"
                    );
                    continue;
                }
                Err(e) => {
                    out.note_error();
                    consecutive_errors += 1;
                    if consecutive_errors > 100 {
                        return Err(SourceError::Other {
                            source: NAME,
                            message: format!("receive keeps failing: {e}"),
                        });
                    }
                    continue;
                }
            };
            consecutive_errors = 0;
            let msg = match parse_datagram(buf.get(..n).unwrap_or_default()) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(_) => {
                    out.note_error();
                    continue;
                }
            };
            if let Some((cpu, seq)) = seq_of(&msg).filter(|_| !self.filtered) {
                let lost = gaps.observe(cpu, seq);
                if lost > 0 {
                    out.note_gap(lost);
                }
            }
            let event = if self.options.privilege_only {
                privilege_event(&msg, &self.clocks)
            } else {
                to_event(&msg, &self.clocks)
            };
            let Some(mut event) = event else {
                continue;
            };
            if let ProcEvent::Exec {
                tgid, timestamp_ns, ..
            } = msg
                && self.options.enrich_exec
            {
                let boot = self.clocks.monotonic_to_boottime(timestamp_ns);
                let info = read_process(tgid, Some(boot), &self.clocks);
                info.fill(&mut event);
                event.partial = !info.complete || info.reused;
            }
            match self.options.hand_off {
                Some(every) => {
                    if held.is_empty() {
                        due = Some(Instant::now() + every);
                    }
                    held.push(event);
                    // A burst faster than the interval is handed over in slices.
                    if held.len() >= BATCH {
                        due = Some(Instant::now());
                    }
                }
                None => {
                    if out.send(event) == Sent::Closed {
                        break;
                    }
                }
            }
        }
        out.send_all(&mut held);
        Ok(())
    }
}

/// How long a read waits for a message when nothing is held: how soon a stop is noticed.
const IDLE_WAIT: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event one connector socket receives until `until` returns true for one of them
    /// (or 10 s pass).
    fn receive_until(conn: &ProcConnector, until: impl Fn(&ProcEvent) -> bool) -> Vec<ProcEvent> {
        let mut buf = vec![0u8; 16 * 1024];
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let Ok(Some(n)) = conn.recv_raw_timeout(&mut buf, Duration::from_millis(100)) else {
                continue;
            };
            if let Ok(Some(ev)) = parse_datagram(buf.get(..n).unwrap_or_default()) {
                let done = until(&ev);
                got.push(ev);
                if done {
                    break;
                }
            }
        }
        got
    }

    /// Discard what is queued on `conn` now.
    fn drain(conn: &ProcConnector) {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(Some(_)) = conn.recv_raw_timeout(&mut buf, Duration::ZERO) {}
    }

    #[test]
    fn the_privilege_filter_drops_process_messages_in_the_kernel() {
        let (Ok(filtered), Ok(plain)) = (ProcConnector::new(), ProcConnector::new()) else {
            panic!("the process connector needs CAP_NET_ADMIN");
        };
        assert!(sys::attach_socket_filter(filtered.as_raw_fd(), &mut privilege_filter()).is_ok());
        // What was queued between the subscription and the filter passed no filter.
        drain(&filtered);
        let mut spawned = Vec::new();
        for _ in 0..5 {
            let child = std::process::Command::new("/bin/true").spawn();
            let Ok(mut child) = child else {
                panic!("spawning /bin/true")
            };
            spawned.push(child.id());
            let _ = child.wait();
        }
        // A uid then a gid change (setpriv's order).
        let setpriv = std::process::Command::new("setpriv")
            .args([
                "--regid",
                "65534",
                "--reuid",
                "65534",
                "--clear-groups",
                "/bin/true",
            ])
            .spawn();
        let Ok(mut setpriv) = setpriv else {
            panic!("spawning setpriv (util-linux)")
        };
        let dropped = setpriv.id();
        assert!(setpriv.wait().is_ok_and(|s| s.success()));
        let is_drop = |ev: &ProcEvent| matches!(*ev, ProcEvent::Uid { tgid, ruid: 65534, .. } if tgid == dropped);
        let is_last = |ev: &ProcEvent| matches!(*ev, ProcEvent::Gid { tgid, rgid: 65534, .. } if tgid == dropped);
        let plain_saw = receive_until(&plain, is_last);
        let filtered_saw = receive_until(&filtered, is_last);
        // Unfiltered, the same socket would have been woken for every fork, exec and exit.
        assert!(
            plain_saw
                .iter()
                .any(|ev| matches!(*ev, ProcEvent::Exec { tgid, .. } if spawned.contains(&tgid)))
        );
        assert!(filtered_saw.iter().any(is_drop), "{filtered_saw:?}");
        assert!(filtered_saw.iter().any(is_last), "{filtered_saw:?}");
        for ev in &filtered_saw {
            assert!(
                matches!(
                    ev,
                    ProcEvent::Uid { .. }
                        | ProcEvent::Gid { .. }
                        | ProcEvent::Ptrace { .. }
                        | ProcEvent::Unknown { what: 0, .. }
                ),
                "the filter let through {ev:?}"
            );
        }
    }

    #[test]
    fn gaps_are_counted_per_cpu() {
        let mut g = GapTracker::default();
        assert_eq!(g.observe(0, 10), 0);
        assert_eq!(g.observe(1, 500), 0);
        assert_eq!(g.observe(0, 11), 0);
        assert_eq!(g.observe(0, 15), 3);
        assert_eq!(g.observe(1, 501), 0);
        assert_eq!(g.observe(0, 1000), 984);
        assert_eq!(g.observe(0, 10), 0, "backwards is a reset");
        assert_eq!(g.observe(0, 10), 0, "duplicate");
        assert_eq!(g.observe(0, u32::MAX), 0, "far backwards is a reset too");
        assert_eq!(
            g.observe(0, 1),
            1,
            "wrapping over zero counts what it skipped"
        );
    }

    #[test]
    fn threads_are_not_processes() {
        let c = Clocks::default();
        let thread = ProcEvent::Fork {
            cpu: 0,
            seq: 0,
            parent_pid: 10,
            parent_tgid: 10,
            child_pid: 12,
            child_tgid: 10,
            timestamp_ns: 0,
        };
        assert!(to_event(&thread, &c).is_none());
        let fork = ProcEvent::Fork {
            cpu: 0,
            seq: 0,
            parent_pid: 10,
            parent_tgid: 10,
            child_pid: 12,
            child_tgid: 12,
            timestamp_ns: 0,
        };
        let e = to_event(&fork, &c);
        let p = e.as_ref().and_then(|e| e.process.as_ref());
        assert_eq!(p.map(|p| p.pid), Some(12));
        assert_eq!(p.and_then(|p| p.parent.as_ref()).map(|p| p.pid), Some(10));
    }

    #[test]
    fn exit_status_is_decoded() {
        let c = Clocks::default();
        let exit = |code| ProcEvent::Exit {
            cpu: 0,
            seq: 0,
            pid: 5,
            tgid: 5,
            exit_code: code,
            exit_signal: 17,
            parent_pid: 1,
            parent_tgid: 1,
            timestamp_ns: 0,
        };
        let code = |raw| {
            to_event(&exit(raw), &c)
                .and_then(|e| e.process)
                .and_then(|p| p.exit_code)
        };
        assert_eq!(code(3 << 8), Some(3));
        assert_eq!(code(9), Some(137));
    }

    #[test]
    fn privilege_only_reports_id_changes_and_ptrace_attaches() {
        let c = Clocks::default();
        let ptrace = |tracer| ProcEvent::Ptrace {
            cpu: 0,
            seq: 0,
            pid: 7,
            tgid: 7,
            tracer_pid: tracer,
            tracer_tgid: tracer,
            timestamp_ns: 0,
        };
        let e = privilege_event(&ptrace(9), &c).expect("an attach is reported");
        assert_eq!(e.kind(), EventKind::Ptrace);
        assert_eq!(e.process.as_ref().map(|p| p.pid), Some(9));
        assert_eq!(e.target.as_ref().map(|t| t.pid), Some(7));
        assert!(privilege_event(&ptrace(0), &c).is_none(), "a detach is not");
        let gid = ProcEvent::Gid {
            cpu: 0,
            seq: 0,
            pid: 7,
            tgid: 7,
            rgid: 0,
            egid: 0,
            timestamp_ns: 0,
        };
        let e = privilege_event(&gid, &c).expect("a gid change is reported");
        assert_eq!(e.privilege.and_then(|p| p.new_gid), Some(0));
        let fork = ProcEvent::Fork {
            cpu: 0,
            seq: 0,
            parent_pid: 10,
            parent_tgid: 10,
            child_pid: 12,
            child_tgid: 12,
            timestamp_ns: 0,
        };
        assert!(
            privilege_event(&fork, &c).is_none(),
            "processes come from the sensor"
        );
    }

    #[test]
    fn garbage_does_not_panic() {
        for len in 0..64 {
            let buf = vec![0xffu8; len];
            let _ = parse_datagram(&buf);
        }
    }
}
