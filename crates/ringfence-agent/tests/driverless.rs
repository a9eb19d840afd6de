//! Driverless mode against the real kernel: the agent must see processes and files that this
//! test creates. Runs as root (the process connector and fanotify filesystem marks need it);
//! every wait is a generous timeout, never a fixed sleep.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Harness, has_arg, temp_dir};
use ringfence_agent::{Config, ModeChoice};
use ringfence_event::{Event, EventKind, Field, Mode, SourceKind};
use ringfence_sensor::audit::AddRules;

/// Driverless with audit's rules added (`[audit] add_rules = true`), so that even the shortest
/// process comes with its arguments and connect/bind/accept are seen.
fn config(fanotify_paths: Vec<PathBuf>) -> Config {
    let mut c = Config::default();
    c.agent.mode = ModeChoice::Driverless;
    c.audit.add_rules = AddRules::Always;
    c.sources.logs = false;
    c.sources.fanotify = !fanotify_paths.is_empty();
    c.fanotify.paths = fanotify_paths;
    c.fanotify.write_only_paths = Vec::new();
    c.agent.stats_interval_secs = 1;
    c
}

#[test]
fn exec_event_carries_marker_parent_pid_and_parent_executable() {
    let mut h = Harness::start(config(vec![]));
    let marker = format!("ringfence-marker-{}", std::process::id());
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("/bin/true {marker}"))
        .spawn();
    let Ok(mut child) = child else {
        panic!("cannot spawn /bin/sh");
    };
    let sh_pid = child.id();
    let _ = child.wait();
    let Some(exec) = h.wait_for(Duration::from_secs(30), |e| has_arg(e, &marker)) else {
        panic!("no exec event with {marker}");
    };
    let p = exec.process.clone().unwrap_or_default();
    assert_eq!(
        p.executable.as_deref(),
        Some("/usr/bin/true").or(p.executable.as_deref().filter(|x| x.ends_with("/true")))
    );
    assert_eq!(p.args, vec!["/bin/true".to_owned(), marker.clone()]);
    assert_eq!(
        p.command_line.as_deref(),
        Some(format!("/bin/true {marker}").as_str())
    );
    let parent = p.parent.clone().unwrap_or_default();
    // dash forks for the command; a shell that execs its last command directly keeps sh's pid,
    // and then the parent is this test.
    let expected_parent = if p.pid == sh_pid {
        std::process::id()
    } else {
        sh_pid
    };
    assert_eq!(parent.pid, expected_parent, "{exec:?}");
    assert!(
        parent.executable.is_some(),
        "parent executable missing: {exec:?}"
    );
    assert!(!p.ancestors.pids.is_empty());
    assert_eq!(p.ancestors.pids[0], i64::from(expected_parent));
    assert!(exec.host_name.is_some());
    assert_eq!(exec.source, Some(SourceKind::ProcConnector));
    // The exit of the same process follows, with its image from the tree.
    let exit = h.wait_for(Duration::from_secs(30), |e| {
        e.kind == Some(EventKind::ProcessExit) && e.process.as_ref().is_some_and(|x| x.pid == p.pid)
    });
    let exit = exit.and_then(|e| e.process).unwrap_or_default();
    assert_eq!(exit.exit_code, Some(0));
    assert!(exit.executable.is_some_and(|x| x.ends_with("/true")));
    let (summary, _) = h.finish();
    assert!(summary.exec_events > 0);
}

#[test]
fn file_create_modify_delete_under_a_watched_dir() {
    let dir = temp_dir("fan");
    let mut h = Harness::start(config(vec![dir.clone()]));
    let file = dir.join("payload.sh");
    let f = file.display().to_string();
    // The agent ignores its own file activity, and this test shares its process: act from a
    // child process, as an intruder would.
    let script = format!("printf a > {f} && printf b >> {f} && rm {f}");
    assert!(
        Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .status()
            .is_ok_and(|s| s.success())
    );
    for kind in [
        EventKind::FileCreate,
        EventKind::FileModify,
        EventKind::FileDelete,
    ] {
        let got = h.wait_for(Duration::from_secs(30), |e| {
            e.kind == Some(kind) && e.file.as_ref().is_some_and(|x| x.path == f)
        });
        let Some(got) = got else {
            let fan: Vec<String> = h
                .events
                .iter()
                .filter(|e| e.source == Some(SourceKind::Fanotify))
                .map(|e| format!("{e:?}"))
                .collect();
            let (summary, _) = h.finish();
            panic!(
                "no {kind:?} event for {f}; fanotify events: {fan:?}\n{}",
                summary.render()
            );
        };
        assert_eq!(got.source, Some(SourceKind::Fanotify));
        assert!(got.process.as_ref().is_some_and(|p| p.pid != 0));
    }
    // A rename reports both names.
    let a = dir.join("a.txt");
    let b = dir.join("b.txt");
    assert!(std::fs::write(&a, "x").is_ok());
    assert!(
        Command::new("/bin/mv")
            .arg(&a)
            .arg(&b)
            .status()
            .is_ok_and(|s| s.success())
    );
    let renamed = h.wait_for(Duration::from_secs(30), |e| {
        e.kind == Some(EventKind::FileRename)
    });
    let file = renamed.and_then(|e| e.file).unwrap_or_default();
    assert_eq!(Path::new(&file.path), b.as_path());
    assert_eq!(
        file.original_path.as_deref().map(Path::new),
        Some(a.as_path())
    );
    let (summary, events) = h.finish();
    assert!(
        events.iter().all(|e| e
            .file
            .as_ref()
            .is_none_or(|x| x.path.starts_with(&*dir.to_string_lossy()))),
        "only watched paths are reported"
    );
    assert!(
        summary
            .sources
            .iter()
            .any(|s| s.name == "fanotify" && s.error.is_none())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tcp_bind_connect_accept_on_localhost_are_reported_from_audit() {
    let mut h = Harness::start(config(vec![]));
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else {
        panic!("cannot listen on 127.0.0.1");
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let Ok(client) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        panic!("connect to 127.0.0.1:{port}");
    };
    let client_port = client.local_addr().map(|a| a.port()).unwrap_or(0);
    assert!(listener.accept().is_ok());
    let me = std::process::id();
    let got = h.wait_for(Duration::from_secs(30), |e| {
        e.kind == Some(EventKind::NetworkConnect)
            && e.network
                .as_ref()
                .is_some_and(|n| n.destination_port == Some(port))
    });
    let Some(got) = got else {
        let (summary, _) = h.finish();
        panic!("no connect event to 127.0.0.1:{port}\n{}", summary.render());
    };
    assert_eq!(got.source, Some(SourceKind::Audit));
    assert_eq!(got.syscall.as_deref(), Some("connect"));
    let n = got.network.clone().unwrap_or_default();
    assert_eq!(n.destination_ip, Some(std::net::Ipv4Addr::LOCALHOST.into()));
    assert_eq!(n.direction.as_deref(), Some("egress"));
    assert_eq!(n.transport, None, "audit does not say which transport");
    let p = got.process.clone().unwrap_or_default();
    assert_eq!(p.pid, me, "{got:?}");
    let exe = std::env::current_exe().ok();
    let exe = exe.and_then(|e| e.canonicalize().ok());
    assert_eq!(
        p.executable.as_deref().map(Path::new),
        exe.as_deref(),
        "{got:?}"
    );
    assert_eq!(got.user.id, Some(0), "the suite runs as root");
    // The schema's driverless column for connect is exact: every field present is listed, and
    // the network fields audit fills are present.
    for f in Field::ALL {
        let listed = f
            .spec()
            .filled_in(Mode::Driverless)
            .contains(EventKind::NetworkConnect);
        if f.get(&got).is_some() {
            assert!(
                listed,
                "{} is filled but not listed for driverless connect",
                f.name()
            );
        }
    }
    for f in [
        Field::DestinationIp,
        Field::DestinationPort,
        Field::NetworkDirection,
        Field::NetworkType,
        Field::Syscall,
    ] {
        assert!(f.get(&got).is_some(), "{} missing: {got:?}", f.name());
    }
    // The listener's bind (port 0: the kernel chose) and the accept, with the peer as source.
    let bind = h.wait_for(Duration::from_secs(30), |e| {
        e.kind == Some(EventKind::NetworkBind)
            && e.process.as_ref().is_some_and(|p| p.pid == me)
            && e.network.as_ref().is_some_and(|n| {
                n.destination_ip == Some(std::net::Ipv4Addr::LOCALHOST.into())
                    && n.destination_port == Some(0)
            })
    });
    let Some(bind) = bind else {
        panic!("no bind event for the listener");
    };
    assert_eq!(bind.syscall.as_deref(), Some("bind"));
    let accept = h.wait_for(Duration::from_secs(30), |e| {
        e.kind == Some(EventKind::NetworkAccept)
            && e.network
                .as_ref()
                .is_some_and(|n| n.source_port == Some(client_port))
    });
    let Some(accept) = accept else {
        panic!("no accept event from port {client_port}");
    };
    let n = accept.network.clone().unwrap_or_default();
    assert_eq!(n.source_ip, Some(std::net::Ipv4Addr::LOCALHOST.into()));
    assert_eq!(n.direction.as_deref(), Some("ingress"));
    assert!(matches!(
        accept.syscall.as_deref(),
        Some("accept" | "accept4")
    ));
    assert_eq!(accept.process.as_ref().map(|p| p.pid), Some(me));
    for e in [&bind, &accept] {
        let kind = e.kind.unwrap_or(EventKind::LogLine);
        for f in Field::ALL {
            if f.get(e).is_some() {
                assert!(
                    f.spec().filled_in(Mode::Driverless).contains(kind),
                    "{} is filled but not listed for driverless {kind:?}",
                    f.name()
                );
            }
        }
    }
    drop((listener, client));
    let (summary, _) = h.finish();
    assert!(
        summary
            .sources
            .iter()
            .any(|s| s.name == "audit" && s.error.is_none()),
        "{}",
        summary.render()
    );
}

#[test]
fn files_in_a_subdirectory_created_after_start_are_reported() {
    let dir = temp_dir("fansub");
    let mut h = Harness::start(config(vec![dir.clone()]));
    let sub = dir.join("new").join("deeper");
    let early = sub.join("early.txt");
    // The directories and a file at once, faster than the agent can mark the new directories:
    // the file is reported by the scan that follows the mark.
    let script = format!(
        "mkdir -p {} && printf x > {}",
        sub.display(),
        early.display()
    );
    assert!(
        Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .status()
            .is_ok_and(|s| s.success())
    );
    let path_is = |e: &Event, kind: EventKind, p: &Path| {
        e.kind == Some(kind) && e.file.as_ref().is_some_and(|f| Path::new(&f.path) == p)
    };
    let got = h.wait_for(Duration::from_secs(30), |e| {
        path_is(e, EventKind::FileCreate, &early)
    });
    assert!(got.is_some(), "no create for {}", early.display());
    let got = h.wait_for(Duration::from_secs(30), |e| {
        path_is(e, EventKind::FileCreate, &sub)
    });
    assert!(got.is_some(), "no create for {}", sub.display());
    // Once marked, a later file in the new subdirectory comes with its process.
    let later = sub.join("later.sh");
    let script = format!("printf y > {}", later.display());
    assert!(
        Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .status()
            .is_ok_and(|s| s.success())
    );
    for kind in [EventKind::FileCreate, EventKind::FileModify] {
        let got = h.wait_for(Duration::from_secs(30), |e| path_is(e, kind, &later));
        let Some(got) = got else {
            let (summary, events) = h.finish();
            let fan: Vec<_> = events
                .iter()
                .filter(|e| e.source == Some(SourceKind::Fanotify))
                .collect();
            panic!(
                "no {kind:?} for {}; fanotify events: {fan:?}\n{}",
                later.display(),
                summary.render()
            );
        };
        assert!(got.process.as_ref().is_some_and(|p| p.pid != 0), "{got:?}");
    }
    let (_, events) = h.finish();
    assert!(
        events.iter().all(|e| e
            .file
            .as_ref()
            .is_none_or(|x| x.path.starts_with(&*dir.to_string_lossy()))),
        "only watched paths are reported"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn storm_of_2000_processes_loses_no_exec() {
    // The default: no audit rules of our own on a host without any, so every exec is read from
    // /proc as it arrives and handed over in bursts.
    let mut c = config(vec![]);
    c.audit.add_rules = AddRules::default();
    let mut h = Harness::start(c);
    let marker = format!("ringfence-storm-{}", std::process::id());
    let spawners: Vec<_> = (0..4)
        .map(|t| {
            let marker = marker.clone();
            std::thread::spawn(move || {
                let mut pids = Vec::new();
                for i in 0..500 {
                    if let Ok(mut c) = Command::new("/bin/true")
                        .arg(&marker)
                        .arg(format!("{t}-{i}"))
                        .spawn()
                    {
                        pids.push(c.id());
                        let _ = c.wait();
                    }
                }
                pids
            })
        })
        .collect();
    let mut pids: Vec<u32> = spawners
        .into_iter()
        .flat_map(|s| s.join().unwrap_or_default())
        .collect();
    pids.sort_unstable();
    assert_eq!(pids.len(), 2000);
    // Matched by pid, not by marker: the process connector reports every exec, but a
    // `/bin/true` is often gone before its arguments can be read from /proc.
    let count = |h: &mut Harness| {
        h.pull();
        h.events
            .iter()
            .filter(|e| e.kind == Some(EventKind::ProcessExec))
            .filter(|e| {
                e.process
                    .as_ref()
                    .is_some_and(|p| pids.binary_search(&p.pid).is_ok())
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&mut h) < 2000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = count(&mut h);
    let (summary, events) = h.finish();
    let pc = summary.sources.iter().find(|s| s.name == "proc_connector");
    let counters = pc.map(|s| s.counters).unwrap_or_default();
    assert_eq!(counters.gaps, 0, "{}", summary.render());
    assert_eq!(counters.dropped, 0, "{}", summary.render());
    assert_eq!(seen, 2000, "{}", summary.render());
    // Every exec names its parent (this test) from the tree, enriched or not.
    let me = std::process::id();
    let execs = events
        .iter()
        .filter(|e| e.kind == Some(EventKind::ProcessExec))
        .filter(|e| {
            e.process
                .as_ref()
                .is_some_and(|p| pids.binary_search(&p.pid).is_ok())
        });
    for e in execs {
        let parent = e.process.as_ref().and_then(|p| p.parent.as_ref());
        assert_eq!(parent.map(|p| p.pid), Some(me), "{e:?}");
        assert!(parent.is_some_and(|p| p.executable.is_some()), "{e:?}");
        // An exec whose /proc read lost the race says so.
        let p = e.process.as_ref();
        if p.is_some_and(|p| p.args.is_empty()) {
            assert!(e.partial, "{e:?}");
        }
    }
    eprintln!("{}", summary.render());
}
