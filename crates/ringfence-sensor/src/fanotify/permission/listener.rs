//! The listener thread's half of the permission guard: it reads the group, decides each
//! permission event (the agent's own files against write-opens, execs against the deny set,
//! through the verdict cache), answers every one, and queues the denials it reports. The
//! safety rules in the parent module's documentation apply to everything here.
#![allow(unsafe_code, reason = "read/write on the fanotify group")]

use super::*;

/// The listener's state (owned by its thread).
pub(super) struct Listener {
    pub(super) shared: Arc<Shared>,
    pub(super) group: RawFd,
    pub(super) own_pid: i32,
    pub(super) cache: VerdictCache,
    pub(super) generation: u64,
    pub(super) buf: Vec<u8>,
}

/// What to answer, and the denial to report.
struct Decision {
    response: u32,
    event: Option<Event>,
}

impl Decision {
    fn allow() -> Decision {
        Decision {
            response: FAN_ALLOW,
            event: None,
        }
    }
}

impl Listener {
    fn decide(&mut self, raw: &RawEvent<'_>, file: &File) -> Decision {
        let tid = raw.pid;
        if !self.shared.armed.load(Ordering::SeqCst) || tid == self.own_pid {
            return Decision::allow();
        }
        if raw.mask & FAN_OPEN_EXEC_PERM != 0 {
            self.exec(tid, file)
        } else if raw.mask & FAN_OPEN_PERM != 0 {
            self.open(tid, file)
        } else {
            Decision::allow()
        }
    }

    /// Whether `tid` belongs to the guard's process or one of the agent's.
    fn is_agent(&self, tid: i32) -> bool {
        if tid == self.own_pid || is_thread_of(tid, "self") {
            return true;
        }
        let pids = self.shared.agent_pids();
        pids.iter().any(|&p| i64::from(p) == i64::from(tid))
            || pids.iter().any(|p| is_thread_of(tid, &p.to_string()))
    }

    fn open(&mut self, tid: i32, file: &File) -> Decision {
        if self.is_agent(tid) {
            return Decision::allow();
        }
        let (intent, nr) = opener::intent_of_thread(tid);
        let name = nr.and_then(opener::syscall_name);
        let syscall: std::borrow::Cow<'static, str> = match (intent, name, nr) {
            (Intent::Read | Intent::Exec, ..) => return Decision::allow(),
            (Intent::Write, Some(name), _) => name.into(),
            (_, Some(name), _) => format!("{name} (flags unreadable; denied)").into(),
            (_, None, Some(nr)) => format!("syscall {nr} (flags unknown; denied)").into(),
            (_, None, None) => "unknown (opener unreadable; denied)".into(),
        };
        let mut e = denial(EventKind::FileModify, tid, file);
        e.syscall = Some(syscall);
        Decision {
            response: FAN_DENY,
            event: Some(e),
        }
    }

    fn exec(&mut self, tid: i32, file: &File) -> Decision {
        let Some(limits) = self.shared.exec else {
            return Decision::allow();
        };
        let generation = self.shared.generation.load(Ordering::SeqCst);
        if generation != self.generation {
            self.cache.clear();
            self.generation = generation;
        }
        let key = match FileKey::of(file) {
            Ok(k) => k,
            Err(_) => {
                bump(&self.shared.counters.errors);
                return Decision::allow();
            }
        };
        let c = &self.shared.counters;
        let verdict = if let Some(v) = self.cache.get(&key) {
            bump(&c.cache_hits);
            v
        } else {
            // Our own threads' execs are not hashed (checked here rather than first: a cache
            // hit is cheaper than this /proc lookup).
            if is_thread_of(tid, "self") {
                return Decision::allow();
            }
            let deny = self.shared.deny_set();
            match exec_hash::verdict_for(file, &key, &deny, limits.max_hash_bytes, &mut self.buf) {
                Ok((v, hashed)) => {
                    if hashed {
                        bump(&c.hashed);
                    }
                    if v == Verdict::TooLarge {
                        bump(&c.too_large);
                    }
                    self.cache.insert(key, v);
                    v
                }
                Err(_) => {
                    bump(&c.errors);
                    return Decision::allow();
                }
            }
        };
        match verdict {
            Verdict::Deny(hash) => {
                if self.is_agent(tid) {
                    return Decision::allow();
                }
                let mut e = denial(EventKind::FileExecOpen, tid, file);
                if let Some(f) = e.file.as_mut() {
                    f.sha256 = Some(hex::encode(hash));
                }
                Decision {
                    response: FAN_DENY,
                    event: Some(e),
                }
            }
            Verdict::Allow | Verdict::TooLarge => {
                if limits.ignore_marks > 0 {
                    self.ignore(file, &key, generation, limits.ignore_marks);
                }
                Decision::allow()
            }
        }
    }

    /// Ask the kernel to stop reporting execs of this inode until it is modified.
    fn ignore(&self, file: &File, key: &FileKey, generation: u64, cap: usize) {
        let mut marks = self.shared.lock_marks();
        // A deny-set change since the verdict: the verdict may be stale, and the flush that
        // came with the change must not be undone.
        if self.shared.generation.load(Ordering::SeqCst) != generation
            || !self.shared.armed.load(Ordering::SeqCst)
        {
            return;
        }
        let id = (key.dev, key.ino);
        if !marks.ignored.contains(&id) && marks.ignored.len() >= cap {
            return;
        }
        // Without FAN_MARK_IGNORED_SURV_MODIFY: the first modification clears it.
        let r = mark_raw(
            self.group,
            FAN_MARK_ADD | FAN_MARK_IGNORED_MASK,
            FAN_OPEN_EXEC_PERM,
            file.as_raw_fd(),
            None,
        );
        match r {
            // Counted once per inode: an exec racing the first one re-marks the same inode.
            Ok(()) => {
                if marks.ignored.insert(id) {
                    bump(&self.shared.counters.ignore_marks);
                }
            }
            Err(_) => bump(&self.shared.counters.errors),
        }
    }

    /// Answer one event; `false` if the response could not be written.
    fn respond(&self, fd: RawFd, response: u32) -> bool {
        // struct fanotify_response { __s32 fd; __u32 response; }
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&fd.to_ne_bytes());
        msg[4..].copy_from_slice(&response.to_ne_bytes());
        // SAFETY: `msg` is 8 valid bytes for the duration of the call.
        let n = unsafe { libc::write(self.group, msg.as_ptr().cast(), msg.len()) };
        n == 8
    }
}

/// Whether `/proc/<pid>/task/<tid>` exists, i.e. thread `tid` belongs to process `pid`.
fn is_thread_of(tid: i32, pid: &str) -> bool {
    std::fs::symlink_metadata(format!("/proc/{pid}/task/{tid}")).is_ok()
}

/// A refusal as an event: the attempt's kind, `event.outcome: failure`, the opener's process
/// (tgid and name from /proc, if it is still there) and the file's path.
fn denial(kind: EventKind, tid: i32, file: &File) -> Event {
    let mut e = Event::new(kind, SourceKind::Fanotify, Timestamp::now());
    e.outcome = Some(Outcome::Failure);
    let (tgid, name) = tgid_and_name(tid);
    e.partial = tgid.is_none();
    e.process = Some(Process {
        pid: tgid.unwrap_or_else(|| u32::try_from(tid).unwrap_or(0)),
        name,
        ..Process::default()
    });
    let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    e.file = Some(FileRecord {
        path,
        ..FileRecord::default()
    });
    e
}

/// `Tgid:` and `Name:` of a thread, from `/proc/<tid>/status`.
fn tgid_and_name(tid: i32) -> (Option<u32>, Option<String>) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return (None, None);
    };
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_owned())
    };
    (field("Tgid:").and_then(|v| v.parse().ok()), field("Name:"))
}

impl Listener {
    /// Answer the group until `stop` is raised or the group fails.
    pub(super) fn listen(
        mut self,
        tx: &crossbeam_channel::Sender<Event>,
        stop: &AtomicBool,
    ) -> Result<(), SourceError> {
        let mut read_buf = vec![0u8; 32 * 1024];
        // Every exit path ends the thread; the source's drop then closes the group, and the
        // kernel allows all.
        while !stop.load(Ordering::SeqCst) {
            // No pause between reads: a permission event is a thread waiting for us.
            match poll_readable(self.group, 200) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SourceError::syscall(NAME, "poll", e)),
            }
            // SAFETY: `read_buf` is valid and writable for its length; the group descriptor is
            // open until `self` drops.
            let n = unsafe { libc::read(self.group, read_buf.as_mut_ptr().cast(), read_buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if !matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) {
                    // e.g. EMFILE: the kernel has answered that event itself (FAN_DENY).
                    bump(&self.shared.counters.errors);
                    tracing::warn!(source = NAME, error = %e, "read failed");
                }
                continue;
            }
            let n = usize::try_from(n).unwrap_or(0).min(read_buf.len());
            let mut raws = Vec::new();
            let parsed = parse::parse_events(&read_buf[..n], &mut raws);
            for raw in &raws {
                if raw.fd < 0 {
                    // Not a permission event with a descriptor (an overflow notice cannot
                    // happen with an unlimited queue): nothing to answer.
                    bump(&self.shared.counters.errors);
                    continue;
                }
                // SAFETY: the kernel handed this descriptor to us with the event; nothing else
                // owns it. It is closed when `file` drops, after the response.
                let file = File::from(unsafe { OwnedFd::from_raw_fd(raw.fd) });
                bump(&self.shared.counters.seen);
                let d = self.decide(raw, &file);
                let c = &self.shared.counters;
                bump(if d.response == FAN_DENY {
                    &c.denied
                } else {
                    &c.allowed
                });
                if !self.respond(raw.fd, d.response) {
                    bump(&c.errors);
                }
                drop(file);
                // Never wait on the agent: a full queue loses the report, not the answer.
                if let Some(e) = d.event
                    && tx.try_send(e).is_err()
                {
                    bump(&c.errors);
                }
            }
            if let Err(e) = parsed {
                // Events past this point cannot be found, so cannot be answered one by one:
                // give up the group (closing it allows them) rather than leave them waiting.
                bump(&self.shared.counters.errors);
                return Err(SourceError::Other {
                    source: NAME,
                    message: format!("unreadable permission record ({e}); guard stopped"),
                });
            }
        }
        Ok(())
    }
}
