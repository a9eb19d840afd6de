//! What fanotify marks cost every open in a watched tree: N × (open, fstat, stat, close) of
//! `/etc/hostname` with no marks, then with the file-event marks laid out two ways, then each
//! with the permission guard's marks beside them (on a directory elsewhere, as self-protection
//! places them), in interleaved rounds. Each figure is the median of its rounds' ratios to
//! the no-mark round beside them.
//!
//! - `children`: every directory of `/etc` marked with `FAN_EVENT_ON_CHILD` (the layout
//!   before the file events moved to a filesystem mark): each open and close of a file there
//!   walks to its parent in the kernel's fsnotify path.
//! - `source`: [`FanotifySource`] as the agent opens it: entry events on the directories, file
//!   events from one filesystem mark.
//!
//! `cargo bench -p ringfence-sensor --bench fsnotify_marks` as root. Environment:
//! `RINGFENCE_BENCH_OPENS` (default 200000), `RINGFENCE_BENCH_ROUNDS` (default 9).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unsafe_code,
    reason = "benchmark: a failure is the benchmark failing; fanotify_init/mark FFI"
)]

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use libc::{FAN_MARK_ADD, FAN_MARK_DONT_FOLLOW, FAN_MARK_ONLYDIR, FAN_REPORT_DFID_NAME};
use ringfence_sensor::fanotify::permission::{PermissionOptions, permission_source};
use ringfence_sensor::fanotify::{
    FAN_CLOSE_WRITE, FAN_CREATE, FAN_DELETE, FAN_EVENT_ON_CHILD, FAN_ONDIR, FAN_RENAME,
    FanotifyOptions, FanotifySource,
};

const TREE: &str = "/etc";
const TARGET: &str = "/etc/hostname";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    None,
    Children,
    Source,
    ChildrenAndGuard,
    SourceAndGuard,
}

impl Layout {
    const ALL: [Layout; 5] = [
        Layout::None,
        Layout::Children,
        Layout::Source,
        Layout::ChildrenAndGuard,
        Layout::SourceAndGuard,
    ];

    fn label(self) -> &'static str {
        match self {
            Layout::None => "no marks",
            Layout::Children => "children (FAN_EVENT_ON_CHILD per directory)",
            Layout::Source => "source (directory + filesystem marks)",
            Layout::ChildrenAndGuard => "children + permission guard",
            Layout::SourceAndGuard => "source + permission guard",
        }
    }
}

/// The marks of one layout; dropping it removes them.
#[derive(Default)]
struct Marks {
    _group: Option<OwnedFd>,
    _source: Option<FanotifySource>,
    _guard: Option<Box<dyn std::any::Any>>,
}

fn children_marks() -> OwnedFd {
    // SAFETY: plain syscall; checked.
    let fd = unsafe {
        libc::fanotify_init(
            libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | FAN_REPORT_DFID_NAME,
            libc::O_RDONLY as libc::c_uint,
        )
    };
    assert!(
        fd >= 0,
        "fanotify_init: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: just returned by the kernel, owned by nobody else.
    let group = unsafe { OwnedFd::from_raw_fd(fd) };
    let mask = FAN_CREATE | FAN_DELETE | FAN_RENAME | FAN_ONDIR | FAN_CLOSE_WRITE;
    let mut dirs = vec![PathBuf::from(TREE)];
    let mut next = 0;
    while next < dirs.len() {
        if let Ok(entries) = std::fs::read_dir(&dirs[next]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(e.path());
                }
            }
        }
        next += 1;
    }
    for d in &dirs {
        let c = CString::new(d.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid descriptor and a NUL-terminated path that outlives the call.
        unsafe {
            libc::fanotify_mark(
                fd,
                FAN_MARK_ADD | FAN_MARK_ONLYDIR | FAN_MARK_DONT_FOLLOW,
                mask | FAN_EVENT_ON_CHILD,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
    }
    group
}

fn marks(layout: Layout, guarded: &Path) -> Marks {
    let mut m = Marks::default();
    if matches!(layout, Layout::Children | Layout::ChildrenAndGuard) {
        m._group = Some(children_marks());
    }
    if matches!(layout, Layout::Source | Layout::SourceAndGuard) {
        let src = FanotifySource::open(&FanotifyOptions {
            paths: vec![PathBuf::from(TREE)],
            write_only_paths: Vec::new(),
            exec_open: false,
        });
        m._source = Some(src.expect("fanotify source"));
    }
    if matches!(layout, Layout::ChildrenAndGuard | Layout::SourceAndGuard) {
        let guard = permission_source(PermissionOptions {
            protected_paths: vec![guarded.to_path_buf()],
            deny_exec: None,
        })
        .expect("permission guard");
        m._guard = Some(Box::new(guard));
    }
    m
}

fn storm(n: usize) -> f64 {
    let target = CString::new(TARGET).unwrap();
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: a NUL-terminated path; stat buffers are plain old data written by the kernel.
        unsafe {
            let fd = libc::open(target.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            let mut st: libc::stat = std::mem::zeroed();
            libc::fstat(fd, &mut st);
            libc::stat(target.as_ptr(), &mut st);
            libc::close(fd);
        }
    }
    start.elapsed().as_secs_f64() * 1000.0
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env("RINGFENCE_BENCH_OPENS", 200_000);
    let rounds = env("RINGFENCE_BENCH_ROUNDS", 9).max(1);
    let guarded =
        std::env::temp_dir().join(format!("ringfence-bench-guard-{}", std::process::id()));
    std::fs::create_dir_all(&guarded).unwrap();
    std::fs::write(guarded.join("config.toml"), "x").unwrap();
    storm(n / 4);
    let mut times = vec![Vec::new(); Layout::ALL.len()];
    for round in 0..rounds {
        for i in 0..Layout::ALL.len() {
            let at = (i + round) % Layout::ALL.len();
            let m = marks(Layout::ALL[at], &guarded);
            times[at].push(storm(n));
            drop(m);
        }
    }
    let _ = std::fs::remove_dir_all(&guarded);
    println!(
        "fsnotify_marks: {n} × (open, fstat, stat, close) of {TARGET}, {rounds} interleaved rounds"
    );
    for (i, layout) in Layout::ALL.iter().enumerate() {
        let ratio = median(
            times[i]
                .iter()
                .zip(&times[0])
                .map(|(t, base)| t / base)
                .collect(),
        );
        println!(
            "{:<46} median {:>8.1} ms   ratio to no marks {:.3}×",
            layout.label(),
            median(times[i].clone()),
            ratio
        );
    }
}
