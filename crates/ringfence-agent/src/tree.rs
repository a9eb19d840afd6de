//! The process tree: what the agent remembers about every live process, so each event can
//! carry its parent and ancestors (`process.parent.*`, `process.ancestors.*`).
//!
//! Seeded from the /proc snapshot at start, then kept current by fork, exec and exit events.
//! Memory is bounded: beyond `capacity` entries the least recently used eighth is forgotten in
//! one pass (amortised O(1) per insert, no per-access bookkeeping beyond a counter). Exited
//! processes stay until evicted, so a short-lived shell still names its children's parent. A
//! fork or exec for a pid replaces whatever the tree held for it, which is how pid reuse is
//! handled.

use std::collections::HashMap;
use std::sync::Arc;

use ringfence_event::{Container, Event, EventKind, Parent, Timestamp};
use ringfence_sensor::proc_info::ProcInfo;

#[derive(Debug, Clone, Default)]
struct Node {
    ppid: u32,
    /// Shared: a fork runs its parent's image until it execs, so it takes a reference.
    image: Arc<Image>,
    start: Option<Timestamp>,
    uid: Option<i64>,
    /// The container the process runs in; a fork inherits its parent's.
    container: Option<Arc<Container>>,
    last_used: u64,
}

/// What a process runs, as its last exec (or /proc) said.
#[derive(Debug, Default)]
struct Image {
    executable: Option<String>,
    name: Option<String>,
    command_line: Option<String>,
    args: Vec<String>,
    working_directory: Option<String>,
}

/// Bounded map of pid → what is known about that process.
#[derive(Debug)]
pub struct ProcessTree {
    nodes: HashMap<u32, Node>,
    capacity: usize,
    max_depth: usize,
    clock: u64,
    evictions: u64,
}

impl ProcessTree {
    pub fn new(capacity: usize, max_depth: usize) -> ProcessTree {
        ProcessTree {
            nodes: HashMap::with_capacity(capacity.min(4096)),
            capacity: capacity.max(16),
            max_depth,
            clock: 0,
            evictions: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Entries forgotten to stay within capacity.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Remember a process read from /proc.
    pub fn insert_info(&mut self, info: &ProcInfo) {
        if info.reused {
            return;
        }
        let node = Node {
            ppid: info.ppid.unwrap_or(0),
            image: Arc::new(Image {
                executable: info.executable.clone(),
                name: info
                    .executable
                    .as_deref()
                    .and_then(|e| e.rsplit('/').next())
                    .map(str::to_owned)
                    .or_else(|| info.name.clone()),
                command_line: (!info.args.is_empty()).then(|| info.args.join(" ")),
                args: info.args.clone(),
                working_directory: info.working_directory.clone(),
            }),
            start: info.start,
            uid: info.uid.map(i64::from),
            container: info.container.clone(),
            last_used: 0,
        };
        self.put(info.pid, node);
    }

    fn put(&mut self, pid: u32, mut node: Node) {
        self.clock += 1;
        node.last_used = self.clock;
        self.nodes.insert(pid, node);
        if self.nodes.len() > self.capacity {
            self.evict();
        }
    }

    fn evict(&mut self) {
        let mut ages: Vec<u64> = self.nodes.values().map(|n| n.last_used).collect();
        let cut = (self.capacity / 8).max(1);
        if cut >= ages.len() {
            return;
        }
        let (_, &mut threshold, _) = ages.select_nth_unstable(cut);
        let before = self.nodes.len();
        self.nodes.retain(|_, n| n.last_used > threshold);
        self.evictions += (before - self.nodes.len()) as u64;
    }

    fn touch(&mut self, pid: u32) -> Option<&Node> {
        self.clock += 1;
        let clock = self.clock;
        let node = self.nodes.get_mut(&pid)?;
        node.last_used = clock;
        Some(node)
    }

    /// Whether the tree knows `pid`.
    pub fn contains(&self, pid: u32) -> bool {
        self.nodes.contains_key(&pid)
    }

    /// Update the tree from `event` and fill the event's process, parent and ancestry from it.
    /// Returns false when the event's own process was unknown to the tree and to the event.
    pub fn apply(&mut self, event: &mut Event) -> bool {
        let Some(proc_) = event.process.as_mut() else {
            return true;
        };
        let pid = proc_.pid;
        match event.kind {
            Some(EventKind::ProcessFork) => {
                let ppid = proc_.parent.as_ref().map_or(0, |p| p.pid);
                // A fork copies its parent's image.
                let mut node = self.nodes.get(&ppid).cloned().unwrap_or_default();
                node.ppid = ppid;
                node.start = Some(event.timestamp);
                self.put(pid, node);
            }
            Some(EventKind::ProcessExec) => {
                let old = self.nodes.get(&pid);
                let ppid = proc_
                    .parent
                    .as_ref()
                    .map(|p| p.pid)
                    .or(old.map(|n| n.ppid))
                    .unwrap_or(0);
                let node = Node {
                    ppid,
                    image: Arc::new(Image {
                        executable: proc_.executable.clone(),
                        name: proc_.name.clone(),
                        command_line: proc_.command_line.clone(),
                        args: proc_.args.clone(),
                        working_directory: proc_.working_directory.clone(),
                    }),
                    start: proc_.start.or(old.and_then(|n| n.start)),
                    uid: event.user.id.or(old.and_then(|n| n.uid)),
                    container: event
                        .container
                        .clone()
                        .or_else(|| old.and_then(|n| n.container.clone())),
                    last_used: 0,
                };
                self.put(pid, node);
            }
            _ => {}
        }
        let Some(proc_) = event.process.as_mut() else {
            return true;
        };
        // Fill what the event lacks from the node in place: no node is cloned per event.
        let known_ppid = match self.touch(pid) {
            Some(node) => {
                let image = &node.image;
                if proc_.executable.is_none() {
                    proc_.executable.clone_from(&image.executable);
                }
                if proc_.name.is_none() {
                    proc_.name.clone_from(&image.name);
                }
                if proc_.command_line.is_none() {
                    proc_.command_line.clone_from(&image.command_line);
                }
                if proc_.args.is_empty() {
                    proc_.args.clone_from(&image.args);
                }
                if proc_.working_directory.is_none() {
                    proc_.working_directory.clone_from(&image.working_directory);
                }
                if proc_.start.is_none() {
                    proc_.start = node.start;
                }
                if event.user.id.is_none() {
                    event.user.id = node.uid;
                }
                if event.container.is_none() {
                    event.container.clone_from(&node.container);
                }
                Some(node.ppid)
            }
            None => None,
        };
        let known = known_ppid.is_some();
        let ppid = proc_
            .parent
            .as_ref()
            .map(|p| p.pid)
            .or(known_ppid)
            .filter(|&p| p != 0);
        let Some(ppid) = ppid else {
            return known;
        };
        let mut pids = Vec::new();
        let mut exes = Vec::new();
        let mut cursor = Some(ppid);
        let mut parent = Parent {
            pid: ppid,
            ..Parent::default()
        };
        while let Some(p) = cursor {
            if pids.len() >= self.max_depth.max(1) || p == 0 || p == pid {
                break;
            }
            let node = self.touch(p);
            if pids.is_empty()
                && let Some(n) = node
            {
                parent.executable.clone_from(&n.image.executable);
                parent.name.clone_from(&n.image.name);
                parent.command_line.clone_from(&n.image.command_line);
                parent.start = n.start;
            }
            pids.push(i64::from(p));
            exes.push(
                node.and_then(|n| n.image.executable.clone())
                    .unwrap_or_default(),
            );
            cursor = node
                .map(|n| n.ppid)
                .filter(|&n| n != p && !pids.contains(&i64::from(n)));
        }
        proc_.parent = Some(parent);
        proc_.ancestors.pids = pids;
        proc_.ancestors.executables = exes;
        known
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_event::{Process, SourceKind};

    fn info(pid: u32, ppid: u32, exe: &str) -> ProcInfo {
        ProcInfo {
            pid,
            ppid: Some(ppid),
            executable: Some(exe.into()),
            args: vec![exe.into(), "-x".into()],
            complete: true,
            ..ProcInfo::default()
        }
    }

    fn event(kind: EventKind, pid: u32, ppid: Option<u32>) -> Event {
        let mut e = Event::new(kind, SourceKind::ProcConnector, Timestamp(5));
        e.process = Some(Process {
            pid,
            parent: ppid.map(|pid| Parent {
                pid,
                ..Parent::default()
            }),
            ..Process::default()
        });
        e
    }

    #[test]
    fn fork_exec_exit_fills_parent_and_ancestors() {
        let mut t = ProcessTree::new(100, 8);
        t.insert_info(&info(1, 0, "/sbin/init"));
        t.insert_info(&info(100, 1, "/usr/sbin/sshd"));
        t.insert_info(&info(200, 100, "/bin/bash"));
        let mut fork = event(EventKind::ProcessFork, 300, Some(200));
        assert!(t.apply(&mut fork));
        let p = fork.process.clone().unwrap_or_default();
        assert_eq!(
            p.executable.as_deref(),
            Some("/bin/bash"),
            "a fork runs its parent's image"
        );
        let mut exec = event(EventKind::ProcessExec, 300, None);
        if let Some(p) = exec.process.as_mut() {
            p.executable = Some("/usr/bin/curl".into());
        }
        t.apply(&mut exec);
        let p = exec.process.clone().unwrap_or_default();
        let parent = p.parent.clone().unwrap_or_default();
        assert_eq!(parent.pid, 200);
        assert_eq!(parent.executable.as_deref(), Some("/bin/bash"));
        assert_eq!(p.ancestors.pids, vec![200, 100, 1]);
        assert_eq!(
            p.ancestors.executables,
            vec!["/bin/bash", "/usr/sbin/sshd", "/sbin/init"]
        );
        let mut exit = event(EventKind::ProcessExit, 300, None);
        t.apply(&mut exit);
        let p = exit.process.unwrap_or_default();
        assert_eq!(p.executable.as_deref(), Some("/usr/bin/curl"));
        assert_eq!(p.parent.map(|p| p.pid), Some(200));
    }

    #[test]
    fn container_context_follows_execs_forks_and_later_events() {
        let mut t = ProcessTree::new(100, 8);
        t.insert_info(&info(1, 0, "/sbin/init"));
        let container = Arc::new(Container {
            id: "ab".repeat(32),
            runtime: "podman".into(),
            ..Container::default()
        });
        let mut exec = event(EventKind::ProcessExec, 50, Some(1));
        exec.container = Some(container.clone());
        t.apply(&mut exec);
        let mut fork = event(EventKind::ProcessFork, 51, Some(50));
        t.apply(&mut fork);
        assert_eq!(fork.container.as_ref(), Some(&container));
        // An exec the source could not place keeps what the fork inherited.
        let mut child_exec = event(EventKind::ProcessExec, 51, None);
        t.apply(&mut child_exec);
        let mut connect = event(EventKind::NetworkConnect, 51, None);
        t.apply(&mut connect);
        assert_eq!(connect.container.as_ref(), Some(&container));
        let mut host = event(EventKind::NetworkConnect, 1, None);
        t.apply(&mut host);
        assert_eq!(host.container, None);
    }

    #[test]
    fn capacity_is_respected_and_recent_entries_survive() {
        let mut t = ProcessTree::new(64, 4);
        t.insert_info(&info(1, 0, "/sbin/init"));
        for pid in 2..1000 {
            t.insert_info(&info(pid, 1, "/bin/true"));
            // Keep init warm, as real traffic does.
            let mut e = event(EventKind::FileCreate, 1, None);
            t.apply(&mut e);
        }
        assert!(t.len() <= 64);
        assert!(t.contains(1), "recently used entries are kept");
        assert!(t.contains(999));
        assert!(t.evictions() > 900);
    }

    #[test]
    fn cycles_and_depth_are_bounded() {
        let mut t = ProcessTree::new(64, 3);
        t.insert_info(&info(10, 11, "/a"));
        t.insert_info(&info(11, 10, "/b"));
        let mut e = event(EventKind::FileModify, 10, None);
        t.apply(&mut e);
        let p = e.process.unwrap_or_default();
        assert_eq!(p.ancestors.pids, vec![11]);
        for pid in 20..30 {
            t.insert_info(&info(pid, pid + 1, "/x"));
        }
        let mut e = event(EventKind::FileModify, 20, None);
        t.apply(&mut e);
        assert_eq!(e.process.unwrap_or_default().ancestors.pids.len(), 3);
    }

    #[test]
    fn unknown_process_is_reported() {
        let mut t = ProcessTree::new(64, 3);
        let mut e = event(EventKind::FileModify, 77, None);
        assert!(!t.apply(&mut e));
    }
}
