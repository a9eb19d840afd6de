//! Driverless mode's connector reader on two sockets: one gets only execs ([`exec_filter`]) and
//! is read as each arrives, to race /proc; the other gets process forks and exits and uid and
//! gid changes ([`rest_filter`]) and is read in batches. A short process is three messages (fork,
//! exec, exit); one socket woke the reader for each, and those wake-ups were about a third of
//! the agent's CPU in an exec storm. Here it wakes once per exec, and the rest wait in their
//! socket's buffer.
//!
//! Order is kept by the kernel's timestamps: before an exec is read, the rest socket is
//! drained, and what it held from before the exec (the process's fork, a uid change) goes first,
//! and is applied to the ids the exec is reported with ([`super::ids`]); what came after (its
//! exit) waits. When the rest socket is found empty, it is watched again,
//! so an idle host wakes the reader for nothing.
//!
//! The kernel's sequence numbers count every message of every socket, so a jump is no loss
//! here: a receive-buffer overflow (`ENOBUFS`) on either socket is counted as a gap.
//!
//! [`exec_filter`]: super::exec_filter
//! [`rest_filter`]: super::rest_filter

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proc_connector::{Error as PcError, ProcConnector, ProcEvent};
use ringfence_event::Event;
use rustix::event::{PollFd, PollFlags, Timespec};

use super::ids::{IdTracker, Ids};
use super::{IDLE_WAIT, ProcConnectorOptions, parse_datagram, to_event};
use crate::proc_info::read_process_with;
use crate::source::{BATCH, EventSender, Sent, SourceError};
use crate::sys::Clocks;

const NAME: &str = super::NAME;

/// How long forks, exits and uid changes may wait in their socket once one has been read: the
/// reader wakes for them at most this often while they keep coming.
pub(super) const REST_BATCH: Duration = Duration::from_millis(20);

/// More consecutive failed receives than this end the source.
const MAX_CONSECUTIVE_ERRORS: u32 = 100;

/// The events read and not yet handed to the agent.
struct Outbox<'a> {
    out: &'a EventSender,
    hand_off: Option<Duration>,
    /// Handed over in one burst when `due`.
    held: Vec<Event>,
    due: Option<Instant>,
    /// From the rest socket, with their kernel timestamps, oldest first: they go out before
    /// the first exec that is younger than them, and are applied to `ids` then. A message may
    /// have no event (a gid change).
    waiting: VecDeque<(u64, ProcEvent, Option<Event>)>,
    ids: IdTracker,
}

impl Outbox<'_> {
    /// Hand `event` on (now, or in the next burst). False once the agent is gone.
    fn emit(&mut self, event: Event) -> bool {
        match self.hand_off {
            Some(every) => {
                if self.held.is_empty() {
                    self.due = Some(Instant::now() + every);
                }
                self.held.push(event);
                if self.held.len() >= BATCH {
                    self.due = Some(Instant::now());
                }
                true
            }
            None => self.out.send(event) != Sent::Closed,
        }
    }

    /// Hand on what waits from before `until` (every waiting event when `None`), applying each
    /// message to the ids.
    fn release_waiting(&mut self, until: Option<u64>) -> bool {
        while self
            .waiting
            .front()
            .is_some_and(|(ts, _, _)| until.is_none_or(|until| *ts <= until))
        {
            let Some((_, msg, event)) = self.waiting.pop_front() else {
                break;
            };
            self.ids.apply(&msg);
            if let Some(event) = event
                && !self.emit(event)
            {
                return false;
            }
        }
        true
    }

    /// Send the burst if it is due. False once the agent is gone.
    fn hand_over_if_due(&mut self, now: Instant) -> bool {
        if self.due.is_some_and(|due| now >= due) {
            self.due = None;
            return self.out.send_all(&mut self.held) != Sent::Closed;
        }
        true
    }

    fn finish(mut self) {
        if self.release_waiting(None) {
            self.out.send_all(&mut self.held);
        }
    }
}

/// The two sockets and what reading them needs.
pub(super) struct SplitReader<'a> {
    pub execs: &'a ProcConnector,
    pub rest: &'a ProcConnector,
    pub options: ProcConnectorOptions,
    pub clocks: &'a Clocks,
}

/// What one receive gave.
enum Received {
    Message(ProcEvent),
    /// Nothing more to read now.
    Empty,
    /// A control message, or one that did not parse (counted): read on.
    Skip,
    /// The socket's buffer overflowed (counted as a gap): messages were lost.
    Lost,
}

impl SplitReader<'_> {
    pub(super) fn run(
        &self,
        out: &EventSender,
        stop: &crate::source::StopSignal,
    ) -> Result<(), SourceError> {
        let mut buf = vec![0u8; 16 * 1024];
        let mut errors = 0u32;
        let mut outbox = Outbox {
            out,
            hand_off: self.options.hand_off,
            held: Vec::new(),
            due: None,
            waiting: VecDeque::new(),
            ids: IdTracker::seeded(),
        };
        // When the rest socket is next drained; `None`: it is empty, and watched.
        let mut rest_due: Option<Instant> = None;
        while !stop.is_stopped() {
            let now = Instant::now();
            if !outbox.hand_over_if_due(now) {
                return Ok(());
            }
            if rest_due.is_some_and(|due| now >= due) {
                // Execs first: one older than what the rest socket holds goes before it.
                if !self.read_execs(&mut buf, &mut outbox, &mut errors)? {
                    return Ok(());
                }
                if !self.catch_up_rest(&mut buf, &mut outbox, &mut errors, &mut rest_due)? {
                    return Ok(());
                }
            }
            let mut wait = IDLE_WAIT;
            for at in [outbox.due, rest_due].into_iter().flatten() {
                wait = wait.min(at.saturating_duration_since(now));
            }
            let (execs_ready, rest_ready) = self.wait(wait, rest_due.is_none());
            if execs_ready && !self.read_execs(&mut buf, &mut outbox, &mut errors)? {
                return Ok(());
            }
            if rest_ready
                && !self.catch_up_rest(&mut buf, &mut outbox, &mut errors, &mut rest_due)?
            {
                return Ok(());
            }
        }
        outbox.finish();
        Ok(())
    }

    /// Read the rest socket dry and hand on everything it held, and set `rest_due`, when to read
    /// it next: in [`REST_BATCH`] if it had messages, or `None` when it was empty, so that it is
    /// watched again. False once the agent is gone.
    fn catch_up_rest(
        &self,
        buf: &mut [u8],
        outbox: &mut Outbox<'_>,
        errors: &mut u32,
        rest_due: &mut Option<Instant>,
    ) -> Result<bool, SourceError> {
        let got = self.drain_rest(buf, outbox, errors)?;
        if !outbox.release_waiting(None) {
            return Ok(false);
        }
        *rest_due = (got > 0).then(|| Instant::now() + REST_BATCH);
        if got == 0 {
            // Caught up: nothing waits, so a table read now is not undone by older messages.
            outbox.ids.reseed_if_stale();
        }
        Ok(true)
    }

    /// Wait up to `wait` for the exec socket, and for the rest socket too when `watch_rest`.
    /// Which are readable; on an error (EINTR), neither.
    fn wait(&self, wait: Duration, watch_rest: bool) -> (bool, bool) {
        let mut fds = [
            PollFd::new(self.execs, PollFlags::IN),
            PollFd::new(self.rest, PollFlags::IN),
        ];
        let timeout = Timespec {
            tv_sec: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        let watched = if watch_rest { 2 } else { 1 };
        let Some(fds) = fds.get_mut(..watched) else {
            return (false, false);
        };
        if rustix::event::poll(fds, Some(&timeout)).is_err() {
            return (false, false);
        }
        let ready = |fd: Option<&PollFd<'_>>| fd.is_some_and(|fd| !fd.revents().is_empty());
        (ready(fds.first()), ready(fds.get(1)))
    }

    /// One receive from `conn`; errors are counted, and too many in a row end the source.
    fn receive(
        conn: &ProcConnector,
        buf: &mut [u8],
        out: &EventSender,
        errors: &mut u32,
    ) -> Result<Received, SourceError> {
        let n = match conn.recv_raw(buf) {
            Ok(n) => n,
            Err(PcError::WouldBlock) => return Ok(Received::Empty),
            Err(PcError::Interrupted) => return Ok(Received::Skip),
            Err(PcError::Overrun) => {
                out.note_error();
                // No sequence to count them by: at least one was lost.
                out.note_gap(1);
                tracing::warn!(
                    source = NAME,
                    "receive buffer overflowed (ENOBUFS); counted as a gap"
                );
                return Ok(Received::Lost);
            }
            Err(e) => {
                out.note_error();
                *errors += 1;
                if *errors > MAX_CONSECUTIVE_ERRORS {
                    return Err(SourceError::Other {
                        source: NAME,
                        message: format!("receive keeps failing: {e}"),
                    });
                }
                // Read on later rather than spin on a failing socket.
                return Ok(Received::Empty);
            }
        };
        *errors = 0;
        match parse_datagram(buf.get(..n).unwrap_or_default()) {
            Ok(Some(msg)) => Ok(Received::Message(msg)),
            Ok(None) => Ok(Received::Skip),
            Err(_) => {
                out.note_error();
                Ok(Received::Skip)
            }
        }
    }

    /// Handle every exec queued on the exec socket, each with /proc read at once. False once
    /// the agent is gone.
    fn read_execs(
        &self,
        buf: &mut [u8],
        outbox: &mut Outbox<'_>,
        errors: &mut u32,
    ) -> Result<bool, SourceError> {
        loop {
            let msg = match Self::receive(self.execs, buf, outbox.out, errors)? {
                Received::Message(msg) => msg,
                Received::Skip | Received::Lost => continue,
                Received::Empty => return Ok(true),
            };
            // Only execs are taken from this socket: anything else came in before its filter
            // was attached, and the rest socket has it too.
            let ProcEvent::Exec {
                tgid, timestamp_ns, ..
            } = msg
            else {
                continue;
            };
            let Some(mut event) = to_event(&msg, self.clocks) else {
                continue;
            };
            // What the rest socket holds from before this exec goes first: its fork, and the
            // id changes that say who it runs as (a set-user-ID exec's comes before the exec's).
            // A receive or two, before /proc is raced.
            self.drain_rest(buf, outbox, errors)?;
            if !outbox.release_waiting(Some(timestamp_ns)) {
                return Ok(false);
            }
            if self.options.enrich_exec {
                let boot = self.clocks.monotonic_to_boottime(timestamp_ns);
                let known = outbox.ids.get(tgid);
                let mut info = read_process_with(tgid, Some(boot), self.clocks, known.is_none());
                // A reused pid is reported partial, with neither.
                match (known, info.uid, info.euid, info.gid) {
                    _ if info.reused => {}
                    (Some(ids), ..) => {
                        info.uid = Some(ids.uid);
                        info.euid = Some(ids.euid);
                        info.gid = Some(ids.gid);
                    }
                    (None, Some(uid), Some(euid), Some(gid)) => {
                        outbox.ids.learn(tgid, Ids { uid, euid, gid });
                    }
                    (None, ..) => {}
                }
                info.fill(&mut event);
                event.partial = !info.complete || info.reused;
            }
            if !outbox.emit(event) {
                return Ok(false);
            }
        }
    }

    /// Move every message queued on the rest socket to `outbox.waiting`; how many were read.
    fn drain_rest(
        &self,
        buf: &mut [u8],
        outbox: &mut Outbox<'_>,
        errors: &mut u32,
    ) -> Result<usize, SourceError> {
        let mut got = 0usize;
        loop {
            let msg = match Self::receive(self.rest, buf, outbox.out, errors)? {
                Received::Message(msg) => msg,
                Received::Skip => continue,
                Received::Lost => {
                    // A lost uid or gid change would leave an id wrong.
                    outbox.ids.lost();
                    continue;
                }
                Received::Empty => return Ok(got),
            };
            got += 1;
            // Execs are the exec socket's (this one had them only before its filter).
            if matches!(msg, ProcEvent::Exec { .. }) {
                continue;
            }
            let Some(ts) = super::timestamp_of(&msg) else {
                continue;
            };
            let event = to_event(&msg, self.clocks);
            outbox.waiting.push_back((ts, msg, event));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use ringfence_event::EventKind;

    use super::super::{ProcConnectorSource, open_rest};
    use super::*;
    use crate::source::{Source, StopSignal, channel};

    /// Every message queued on `conn` within `wait` of the last one.
    fn read_all(conn: &ProcConnector, wait: Duration) -> Vec<ProcEvent> {
        let mut buf = vec![0u8; 16 * 1024];
        let mut got = Vec::new();
        while let Ok(Some(n)) = conn.recv_raw_timeout(&mut buf, wait) {
            if let Ok(Some(ev)) = parse_datagram(buf.get(..n).unwrap_or_default()) {
                got.push(ev);
            }
        }
        got
    }

    /// Runs `program` to its end; its pid.
    fn spawn_and_wait(program: &str, args: &[&str]) -> u32 {
        let Ok(mut child) = Command::new(program).args(args).spawn() else {
            panic!("spawning {program}")
        };
        let pid = child.id();
        assert!(child.wait().is_ok_and(|s| s.success()), "{program} failed");
        pid
    }

    #[test]
    fn execs_and_the_rest_go_to_their_own_sockets_and_threads_to_none() {
        let Ok(execs) = ProcConnector::new() else {
            panic!("the process connector needs CAP_NET_ADMIN");
        };
        let rest = open_rest(&execs, 1 << 20);
        let Ok(rest) = rest else {
            panic!("attaching the split filters: {:?}", rest.err())
        };
        // What was queued before the filters passed none.
        read_all(&execs, Duration::ZERO);
        read_all(&rest, Duration::ZERO);
        let process = spawn_and_wait("/bin/true", &[]);
        let dropped = spawn_and_wait("setpriv", &["--reuid", "65534", "/bin/true"]);
        // A thread of this process: its fork and exit are no process's.
        let thread = std::thread::spawn(|| {
            let link = std::fs::read_link("/proc/thread-self").unwrap_or_default();
            link.file_name()
                .and_then(|tid| tid.to_str()?.parse::<u32>().ok())
                .unwrap_or(0)
        });
        let Ok(thread_tid) = thread.join() else {
            panic!("the thread panicked")
        };
        let exec_saw = read_all(&execs, Duration::from_millis(200));
        let rest_saw = read_all(&rest, Duration::from_millis(200));
        assert!(
            exec_saw
                .iter()
                .any(|ev| matches!(*ev, ProcEvent::Exec { tgid, .. } if tgid == process)),
            "{exec_saw:?}"
        );
        for ev in &exec_saw {
            assert!(
                matches!(
                    ev,
                    ProcEvent::Exec { .. } | ProcEvent::Unknown { what: 0, .. }
                ),
                "the exec socket got {ev:?}"
            );
        }
        let forked = |pid| {
            rest_saw
                .iter()
                .any(|ev| matches!(*ev, ProcEvent::Fork { child_tgid, .. } if child_tgid == pid))
        };
        let exited = |pid| {
            rest_saw
                .iter()
                .any(|ev| matches!(*ev, ProcEvent::Exit { tgid, .. } if tgid == pid))
        };
        assert!(forked(process) && exited(process), "{rest_saw:?}");
        assert!(
            rest_saw.iter().any(
                |ev| matches!(*ev, ProcEvent::Uid { tgid, ruid: 65534, .. } if tgid == dropped)
            ),
            "{rest_saw:?}"
        );
        for ev in &rest_saw {
            match *ev {
                ProcEvent::Fork {
                    child_pid,
                    child_tgid,
                    ..
                } => assert_eq!(child_pid, child_tgid, "a thread's fork: {ev:?}"),
                ProcEvent::Exit { pid, tgid, .. } => {
                    assert_eq!(pid, tgid, "a thread's exit: {ev:?}");
                }
                ProcEvent::Uid { .. }
                | ProcEvent::Gid { .. }
                | ProcEvent::Unknown { what: 0, .. } => {}
                _ => panic!("the rest socket got {ev:?}"),
            }
            if let ProcEvent::Fork { child_pid, .. } | ProcEvent::Exit { pid: child_pid, .. } = *ev
            {
                assert_ne!(child_pid, thread_tid, "the thread's own message: {ev:?}");
            }
        }
    }

    #[test]
    fn a_process_is_reported_forked_then_executed_then_exited_with_its_arguments() {
        let options = ProcConnectorOptions {
            hand_off: Some(Duration::from_millis(5)),
            ..ProcConnectorOptions::default()
        };
        let source = ProcConnectorSource::open(options);
        let Ok(source) = source else {
            panic!("the process connector needs CAP_NET_ADMIN")
        };
        assert!(
            source.rest.is_some(),
            "the default options split the sockets"
        );
        let (tx, rx) = channel(1 << 16);
        let stop = StopSignal::new();
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || Box::new(source).run(EventSender::new(NAME, tx), stop))
        };
        let mut pids = Vec::new();
        for i in 0..20 {
            // Alive long enough for its /proc to be read (the sleep is a child of its own).
            let script = "sleep 0.02; exit 0";
            pids.push(spawn_and_wait(
                "/bin/sh",
                &["-c", script, &format!("rf-split-{i}")],
            ));
        }
        // Who a process runs as comes from the kernel's messages, not /proc: one that drops to
        // nobody before its exec is reported as nobody, and the others as root.
        let script = "sleep 0.02; exit 0";
        let nobody = spawn_and_wait(
            "setpriv",
            &[
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "/bin/sh",
                "-c",
                script,
                "rf-split-nobody",
            ],
        );
        // Per pid: the last exec's uid, effective uid and gid.
        type Ids = (Option<i64>, Option<i64>, Option<i64>);
        let mut ids: std::collections::HashMap<u32, Ids> = Default::default();
        let mut kinds: std::collections::HashMap<u32, Vec<EventKind>> = Default::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        // setpriv: fork, its exec, the exec of sh, exit.
        let done = |kinds: &std::collections::HashMap<u32, Vec<EventKind>>| {
            pids.iter()
                .all(|pid| kinds.get(pid).is_some_and(|k| k.len() >= 3))
                && kinds.get(&nobody).is_some_and(|k| k.len() >= 4)
        };
        while Instant::now() < deadline && !done(&kinds) {
            let Ok(event) = rx.recv_timeout(Duration::from_millis(100)) else {
                continue;
            };
            let Some(pid) = event.process.as_ref().map(|p| p.pid) else {
                continue;
            };
            if event.kind() == EventKind::ProcessExec {
                let u = &event.user;
                ids.insert(pid, (u.id, u.effective_id, u.group_id));
                let args = event.process.as_ref().map(|p| p.args.clone());
                assert!(
                    args.is_some_and(|a| a.iter().any(|a| a.starts_with("rf-split-")))
                        || !pids.contains(&pid),
                    "exec of {pid} without its arguments: {event:?}"
                );
            }
            kinds.entry(pid).or_default().push(event.kind());
        }
        stop.stop();
        assert!(reader.join().is_ok_and(|r| r.is_ok()));
        let in_order = vec![
            EventKind::ProcessFork,
            EventKind::ProcessExec,
            EventKind::ProcessExit,
        ];
        for pid in &pids {
            assert_eq!(kinds.get(pid), Some(&in_order), "process {pid}");
            assert_eq!(
                ids.get(pid),
                Some(&(Some(0), Some(0), Some(0))),
                "process {pid}"
            );
        }
        // setpriv's own exec ran as root; the exec of sh after its drop, as nobody (the last
        // exec of that pid wins in the map).
        let nobody_ids = Some(65534);
        assert_eq!(
            ids.get(&nobody),
            Some(&(nobody_ids, nobody_ids, nobody_ids)),
            "the process that dropped to nobody"
        );
    }
}
