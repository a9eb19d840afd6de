//! Merging audit's execve records into the process connector's exec events.
//!
//! The process connector never misses an exec but only gives a pid; /proc then races the
//! process (a `/bin/true` is often gone before its arguments are read). Audit's records carry
//! the arguments, cwd and uid of the execve itself, but arrive a little later and over another
//! socket. [`ExecMerger`] holds an exec whose /proc read failed for up to `wait`, fills it from
//! the matching audit record (same pid), and releases events in their original order: anything
//! behind a held exec (its exit, say) waits with it, so the tree never sees an exit before its
//! exec. An exec that was complete already passes straight through, and its later audit record
//! is discarded. Audit's execve records are never output on their own; its other events
//! (connects) are ordinary events and pass through in order.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ringfence_event::{Event, EventKind, SourceKind};

struct Held {
    deadline: Instant,
    event: Event,
    waiting: bool,
}

/// See the module documentation.
pub struct ExecMerger {
    enabled: bool,
    wait: Duration,
    held: VecDeque<Held>,
    audit: HashMap<u32, (Instant, Event)>,
    recent: HashMap<u32, Instant>,
    /// Exec events filled from an audit record.
    pub merged: u64,
    /// Audit records that matched no exec event in time.
    pub unmatched: u64,
}

const MAP_LIMIT: usize = 65_536;

fn pid(e: &Event) -> u32 {
    e.process.as_ref().map_or(0, |p| p.pid)
}

fn is_exec(e: &Event) -> bool {
    e.kind == Some(EventKind::ProcessExec)
}

fn needs_audit(e: &Event) -> bool {
    e.partial
        || e.process
            .as_ref()
            .is_none_or(|p| p.args.is_empty() || p.executable.is_none())
}

/// Fill `event` from audit's record of the same execve.
pub fn merge(event: &mut Event, audit: &Event) {
    let (Some(p), Some(a)) = (event.process.as_mut(), audit.process.as_ref()) else {
        return;
    };
    if !a.args.is_empty() {
        p.args.clone_from(&a.args);
        p.command_line.clone_from(&a.command_line);
    }
    if p.executable.is_none() {
        p.executable.clone_from(&a.executable);
        p.name.clone_from(&a.name);
    }
    if p.working_directory.is_none() {
        p.working_directory.clone_from(&a.working_directory);
    }
    if p.parent.is_none() {
        p.parent.clone_from(&a.parent);
    }
    let u = &mut event.user;
    u.id = u.id.or(audit.user.id);
    u.effective_id = u.effective_id.or(audit.user.effective_id);
    u.group_id = u.group_id.or(audit.user.group_id);
    event.partial = p.executable.is_none() || p.args.is_empty();
}

impl ExecMerger {
    /// `enabled`: an audit source is running (otherwise everything passes straight through).
    pub fn new(enabled: bool, wait: Duration) -> ExecMerger {
        ExecMerger {
            enabled,
            wait,
            held: VecDeque::new(),
            audit: HashMap::new(),
            recent: HashMap::new(),
            merged: 0,
            unmatched: 0,
        }
    }

    /// Take one event from the sources; events ready to go on are appended to `ready`.
    pub fn push(&mut self, event: Event, now: Instant, ready: &mut Vec<Event>) {
        if !self.enabled {
            ready.push(event);
            return;
        }
        if event.source == Some(SourceKind::Audit) && is_exec(&event) {
            let p = pid(&event);
            if let Some(h) = self
                .held
                .iter_mut()
                .rev()
                .find(|h| h.waiting && pid(&h.event) == p && is_exec(&h.event))
            {
                merge(&mut h.event, &event);
                h.waiting = false;
                self.merged += 1;
            } else if self.recent.remove(&p).is_none() && self.audit.len() < MAP_LIMIT {
                self.audit.insert(p, (now + self.wait * 4, event));
            }
            self.release(now, false, ready);
            return;
        }
        let mut waiting = false;
        let mut event = event;
        if is_exec(&event) {
            let p = pid(&event);
            if let Some((_, a)) = self.audit.remove(&p) {
                if needs_audit(&event) {
                    merge(&mut event, &a);
                    self.merged += 1;
                }
            } else if needs_audit(&event) {
                waiting = true;
            } else if self.recent.len() < MAP_LIMIT {
                self.recent.insert(p, now + self.wait * 4);
            }
        }
        if waiting || !self.held.is_empty() {
            self.held.push_back(Held {
                deadline: now + self.wait,
                event,
                waiting,
            });
        } else {
            ready.push(event);
        }
        self.release(now, false, ready);
    }

    /// Release what no longer waits (everything when `all`); forget stale audit records.
    pub fn release(&mut self, now: Instant, all: bool, ready: &mut Vec<Event>) {
        while let Some(front) = self.held.front() {
            if all || !front.waiting || front.deadline <= now {
                if let Some(mut h) = self.held.pop_front() {
                    if h.waiting {
                        // Timed out: remember it so its late audit record is not "unmatched",
                        // and say the exec is incomplete (a source that left the arguments to
                        // audit did not mark it).
                        self.recent.insert(pid(&h.event), now + self.wait * 4);
                        h.event.partial = true;
                    }
                    ready.push(h.event);
                }
            } else {
                break;
            }
        }
        if !self.audit.is_empty() {
            let before = self.audit.len();
            self.audit.retain(|_, (deadline, _)| *deadline > now);
            if all {
                self.audit.clear();
            }
            self.unmatched += (before - self.audit.len()) as u64;
        }
        if self.recent.len() > 1024 || all {
            self.recent.retain(|_, deadline| *deadline > now && !all);
        }
    }

    /// When the oldest held event stops waiting for its audit record, if one is held.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.front().map(|h| h.deadline)
    }

    /// Events currently held.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_event::{Process, Timestamp};

    fn exec(source: SourceKind, pid: u32, args: &[&str]) -> Event {
        let mut e = Event::new(EventKind::ProcessExec, source, Timestamp(1));
        e.process = Some(Process {
            pid,
            executable: (!args.is_empty()).then(|| "/bin/x".to_owned()),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            command_line: (!args.is_empty()).then(|| args.join(" ")),
            ..Process::default()
        });
        e.partial = args.is_empty() && source != SourceKind::Audit;
        e
    }

    fn exit(pid: u32) -> Event {
        let mut e = Event::new(
            EventKind::ProcessExit,
            SourceKind::ProcConnector,
            Timestamp(2),
        );
        e.process = Some(Process {
            pid,
            ..Process::default()
        });
        e
    }

    #[test]
    fn partial_exec_waits_for_audit_and_keeps_order() {
        let mut m = ExecMerger::new(true, Duration::from_millis(100));
        let t = Instant::now();
        let mut out = Vec::new();
        m.push(exec(SourceKind::ProcConnector, 5, &[]), t, &mut out);
        m.push(exit(5), t, &mut out);
        assert!(out.is_empty(), "the exit waits behind its exec");
        m.push(
            exec(SourceKind::Audit, 5, &["/bin/x", "marker"]),
            t,
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].kind, Some(EventKind::ProcessExec));
        assert!(!out[0].partial);
        assert_eq!(out[0].process.as_ref().map(|p| p.args.len()), Some(2));
        assert_eq!(out[1].kind, Some(EventKind::ProcessExit));
        assert_eq!(m.merged, 1);
    }

    #[test]
    fn audit_first_then_exec_merges_immediately() {
        let mut m = ExecMerger::new(true, Duration::from_millis(100));
        let t = Instant::now();
        let mut out = Vec::new();
        m.push(exec(SourceKind::Audit, 9, &["/bin/x", "a"]), t, &mut out);
        assert!(out.is_empty(), "audit records are never output themselves");
        m.push(exec(SourceKind::ProcConnector, 9, &[]), t, &mut out);
        assert_eq!(out.len(), 1);
        assert!(!out[0].partial);
    }

    #[test]
    fn timeout_marks_an_exec_without_arguments_partial() {
        let mut m = ExecMerger::new(true, Duration::from_millis(100));
        let t = Instant::now();
        let mut out = Vec::new();
        // As the process connector sends it when audit is to supply the arguments.
        let mut e = exec(SourceKind::ProcConnector, 8, &[]);
        e.partial = false;
        m.push(e, t, &mut out);
        m.release(t + Duration::from_millis(150), false, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].partial, "{:?}", out[0]);
    }

    #[test]
    fn timeout_releases_partial_and_late_audit_is_not_unmatched() {
        let mut m = ExecMerger::new(true, Duration::from_millis(100));
        let t = Instant::now();
        let mut out = Vec::new();
        m.push(exec(SourceKind::ProcConnector, 7, &[]), t, &mut out);
        m.release(t + Duration::from_millis(150), false, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].partial);
        m.push(
            exec(SourceKind::Audit, 7, &["/bin/x"]),
            t + Duration::from_millis(160),
            &mut out,
        );
        m.release(t + Duration::from_secs(5), true, &mut out);
        assert_eq!(m.unmatched, 0);
        assert_eq!(m.held(), 0);
    }

    #[test]
    fn complete_exec_passes_straight_through() {
        let mut m = ExecMerger::new(true, Duration::from_millis(100));
        let t = Instant::now();
        let mut out = Vec::new();
        m.push(exec(SourceKind::ProcConnector, 3, &["/bin/x"]), t, &mut out);
        assert_eq!(out.len(), 1);
        m.push(exec(SourceKind::Audit, 3, &["/bin/x"]), t, &mut out);
        assert_eq!(out.len(), 1);
        m.release(t + Duration::from_secs(5), true, &mut out);
        assert_eq!(m.unmatched, 0);
    }

    #[test]
    fn audit_connect_is_output_in_order_not_swallowed() {
        let mut m = ExecMerger::new(true, Duration::from_millis(100));
        let t = Instant::now();
        let mut out = Vec::new();
        let mut connect = Event::new(EventKind::NetworkConnect, SourceKind::Audit, Timestamp(3));
        connect.process = Some(Process {
            pid: 5,
            ..Process::default()
        });
        m.push(connect.clone(), t, &mut out);
        assert_eq!(out.len(), 1, "nothing held: straight through");
        m.push(exec(SourceKind::ProcConnector, 6, &[]), t, &mut out);
        m.push(connect.clone(), t, &mut out);
        assert_eq!(out.len(), 1, "behind a held exec, it waits");
        m.push(exec(SourceKind::Audit, 6, &["/bin/x"]), t, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].kind, Some(EventKind::NetworkConnect));
        m.release(t + Duration::from_secs(5), true, &mut out);
        assert_eq!(m.unmatched, 0);
    }
}
