//! The default watched file trees against the real kernel, in both modes: a PHP file written
//! under a web root, a binary dropped in /var/tmp and an `authorized_keys` written under a home
//! directory's `.ssh` are each reported, with the default `[fanotify]` section unchanged. The
//! directories are made for the test (under the default trees) and removed after. Needs root;
//! every wait is a generous timeout, never a fixed sleep.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Harness;
use ringfence_agent::{Config, ModeChoice};
use ringfence_event::{Event, EventKind, Mode};

fn root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Directories made for the test; removed (deepest first) when dropped, including a missing
/// parent such as /var/www that the test had to create.
struct Made(Vec<PathBuf>);

impl Made {
    fn dir(&mut self, path: &Path) {
        let mut missing = Vec::new();
        let mut p = Some(path);
        while let Some(d) = p.filter(|d| !d.exists()) {
            missing.push(d.to_path_buf());
            p = d.parent();
        }
        assert!(std::fs::create_dir_all(path).is_ok(), "{}", path.display());
        // Outermost first, so Drop removes the whole made tree at once.
        missing.reverse();
        self.0.extend(missing);
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        if let Some(outer) = self.0.first() {
            let _ = std::fs::remove_dir_all(outer);
        }
        for d in &self.0[1.min(self.0.len())..] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn config(mode: ModeChoice) -> Config {
    let mut c = Config::default();
    c.agent.mode = mode;
    c.sources.logs = false;
    c.agent.stats_interval_secs = 1;
    c
}

fn written(e: &Event, path: &str) -> bool {
    matches!(e.kind, Some(EventKind::FileCreate | EventKind::FileModify))
        && e.file.as_ref().is_some_and(|f| f.path == path)
}

/// One test at a time: each may create (and then removes) /var/www.
static ONE_TREE_SET: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn attacker_writes_are_seen(mode: ModeChoice) -> Option<Mode> {
    let _one = ONE_TREE_SET
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let tag = format!("ringfence-{}-{mode:?}", std::process::id()).to_lowercase();
    // Made before the agent starts: a default tree that does not exist is skipped.
    let mut made = Made(Vec::new());
    let web = PathBuf::from("/var/www").join(&tag).join("html");
    let ssh = PathBuf::from("/home").join(&tag).join(".ssh");
    made.dir(&web);
    made.dir(&ssh);
    let dropped = PathBuf::from("/var/tmp").join(format!("{tag}.bin"));

    let mut h = Harness::start(config(mode));
    let shell = web.join("shell.php");
    let keys = ssh.join("authorized_keys");
    // From a child process, as an intruder would (the agent ignores its own activity).
    let script = format!(
        "printf '<?php system($_GET[c]); ?>' > {shell} && cp /bin/true {dropped} && \
         chmod +x {dropped} && printf 'ssh-ed25519 AAAA test' > {keys}",
        shell = shell.display(),
        dropped = dropped.display(),
        keys = keys.display(),
    );
    assert!(
        Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .status()
            .is_ok_and(|s| s.success())
    );
    let mut missing = Vec::new();
    for path in [&shell, &dropped, &keys] {
        let p = path.display().to_string();
        if h.wait_for(Duration::from_secs(30), |e| written(e, &p))
            .is_none()
        {
            missing.push(p);
        }
    }
    let (summary, events) = h.finish();
    let _ = std::fs::remove_file(&dropped);
    drop(made);
    let files: Vec<String> = events
        .iter()
        .filter_map(|e| e.file.as_ref().map(|f| format!("{:?} {}", e.kind, f.path)))
        .filter(|l| l.contains("ringfence-"))
        .collect();
    assert!(
        missing.is_empty(),
        "{mode:?}: no create/modify event for {missing:?}; file events: {files:?}\n{}",
        summary.render()
    );
    summary.mode
}

#[test]
fn driverless_sees_a_webshell_a_dropped_binary_and_authorized_keys() {
    if !root() {
        eprintln!("skipped: fanotify needs root");
        return;
    }
    assert_eq!(
        attacker_writes_are_seen(ModeChoice::Driverless),
        Some(Mode::Driverless)
    );
}

#[test]
fn ebpf_sees_a_webshell_a_dropped_binary_and_authorized_keys() {
    if !root() {
        eprintln!("skipped: eBPF mode needs root");
        return;
    }
    if let Err(why) = ringfence_agent::ebpf_support() {
        eprintln!("skipped: the eBPF sensor cannot run here: {why}");
        return;
    }
    assert_eq!(attacker_writes_are_seen(ModeChoice::Ebpf), Some(Mode::Ebpf));
}
