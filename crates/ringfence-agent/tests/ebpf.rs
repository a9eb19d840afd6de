//! eBPF mode against the real kernel: the agent's whole pipeline (sensor, process tree, user
//! names, outputs) must report what this test does, and `auto` must pick eBPF on a kernel that
//! loads the sensor. Needs root and BTF; without root the tests say so and pass vacuously.
//! Every wait is a generous timeout, never a fixed sleep.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Harness, Memory, has_arg, serial, temp_dir};
use ringfence_agent::{Agent, Config, ModeChoice, resolve_mode};
use ringfence_event::{Event, EventKind, Field, Mode, SourceKind};
use ringfence_sensor::ebpf::Profile;

fn root() -> bool {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    });
    if !root {
        eprintln!("skipped: eBPF mode needs root");
    }
    root
}

fn config(mode: ModeChoice, watched: Vec<PathBuf>) -> Config {
    let mut c = Config::default();
    c.agent.mode = mode;
    c.sources.logs = false;
    c.sources.fanotify = !watched.is_empty();
    c.fanotify.paths = watched;
    c.fanotify.write_only_paths = Vec::new();
    c.agent.stats_interval_secs = 1;
    c
}

fn pid_of(e: &Event) -> u32 {
    e.process.as_ref().map_or(0, |p| p.pid)
}

/// Every field `e` carries is listed in the schema's eBPF column for its kind.
fn assert_schema_lists(e: &Event) {
    let kind = e.kind.unwrap_or(EventKind::LogLine);
    for f in Field::ALL {
        if f.get(e).is_some() {
            assert!(
                f.spec().filled_in(Mode::Ebpf).contains(kind),
                "{} is filled but not listed for ebpf {kind:?}: {e:?}",
                f.name()
            );
        }
    }
}

#[test]
fn auto_picks_ebpf_on_this_kernel() {
    if !root() {
        return;
    }
    let (mode, why) = resolve_mode(ModeChoice::Auto);
    assert_eq!(mode, Mode::Ebpf, "{why:?}");
    assert_eq!(ringfence_agent::ebpf_support(), Ok(()));
}

#[test]
fn open_says_which_mode_will_really_run() {
    if !root() {
        return;
    }
    let _serial = serial();
    let mut agent = Agent::new(config(ModeChoice::Ebpf, vec![]));
    assert_eq!(agent.open(), Mode::Ebpf);
    assert_eq!(
        agent.open(),
        Mode::Ebpf,
        "a second call keeps the first answer"
    );
    drop(agent);
    let mut refused = config(ModeChoice::Ebpf, vec![]);
    refused.ebpf.poll_interval_ms = 0;
    assert_eq!(Agent::new(refused).open(), Mode::Driverless);
    assert_eq!(
        Agent::new(config(ModeChoice::Driverless, vec![])).open(),
        Mode::Driverless
    );
}

/// On this host (BPF trampolines refused) the default profile gives bpf() no hook: the built-in
/// pack's rule on it can never fire, and the running agent says so once, as a low health
/// finding naming the count and the remedy, and in its summary.
#[test]
fn rules_the_profile_gives_no_hook_raise_one_low_health_finding() {
    if !root() {
        return;
    }
    let _serial = serial();
    let lines = Memory::default();
    let mut config = config(ModeChoice::Ebpf, vec![]);
    config.posture.enabled = false;
    let mut agent = Agent::new(config).with_outputs(vec![Box::new(lines.clone())]);
    assert_eq!(agent.open(), Mode::Ebpf);
    let unhooked = agent.unhooked_kinds().to_vec();
    if !unhooked.iter().any(|u| u.kind == EventKind::BpfLoad) {
        eprintln!("skipped: bpf() has a hook here (trampolines allowed): {unhooked:?}");
        return;
    }
    let content = ringfence_agent::content::sigma::builtin(Mode::Ebpf).unwrap();
    let dead = ringfence_agent::content::CompiledContent::unhooked_rules(&*content, &unhooked);
    assert!(dead.iter().any(|l| l.contains("bpf-load")), "{dead:#?}");
    let agent = agent.with_unhooked_rules(dead.clone());
    let stop = ringfence_sensor::StopSignal::new();
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || agent.run(stop2));
    let rule = ringfence_agent::readiness::UNHOOKED_RULE_ID;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let found = loop {
        let found: Vec<String> = lines
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|l| l.contains(rule))
            .cloned()
            .collect();
        if !found.is_empty() || std::time::Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stop.stop();
    let Ok(summary) = handle.join() else {
        panic!("agent thread failed");
    };
    assert_eq!(found.len(), 1, "{found:#?}");
    let v: serde_json::Value = serde_json::from_str(&found[0]).unwrap();
    assert_eq!(v["rule"]["id"], rule);
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("{} rule", dead.len()))
            && message.contains("bpf-load")
            && message.contains("[sensor] profile = \"deep\" would hook "),
        "{v}"
    );
    assert_eq!(summary.unhooked_rules, dead.len(), "{}", summary.render());
    assert!(
        summary.render().contains("rule can never fire")
            || summary.render().contains("rules can never fire"),
        "{}",
        summary.render()
    );
}

#[test]
fn exec_with_its_arguments_and_exit_through_the_pipeline() {
    if !root() {
        return;
    }
    // `auto` here: it must come out as eBPF.
    let mut h = Harness::start(config(ModeChoice::Auto, vec![]));
    let marker = format!("ringfence-ebpf-marker-{}", std::process::id());
    let mut child = match Command::new("/bin/sh")
        .args(["-c", "exit 3", &marker, "second arg"])
        .current_dir("/tmp")
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("cannot spawn /bin/sh: {e}"),
    };
    let pid = child.id();
    let _ = child.wait();
    let Some(exec) = h.wait_for(Duration::from_secs(30), |e| has_arg(e, &marker)) else {
        let (summary, _) = h.finish();
        panic!("no exec event with {marker}\n{}", summary.render());
    };
    assert_eq!(exec.source, Some(SourceKind::Ebpf), "{exec:?}");
    assert!(!exec.partial, "{exec:?}");
    let p = exec.process.clone().unwrap_or_default();
    assert_eq!(p.pid, pid);
    assert_eq!(p.args, ["/bin/sh", "-c", "exit 3", &marker, "second arg"]);
    assert_eq!(
        p.command_line.as_deref(),
        Some(format!("/bin/sh -c exit 3 {marker} second arg").as_str())
    );
    let exe = p.executable.clone().unwrap_or_default();
    assert!(exe.starts_with('/') && exe.contains("sh"), "{exe}");
    assert_eq!(p.working_directory.as_deref(), Some("/tmp"));
    assert!(p.start.is_some());
    // The parent (this test) comes from the process tree seeded at start.
    let me = std::process::id();
    let parent = p.parent.clone().unwrap_or_default();
    assert_eq!(parent.pid, me);
    let own_exe = std::env::current_exe().and_then(|e| e.canonicalize()).ok();
    assert_eq!(
        parent.executable.as_deref().map(Path::new),
        own_exe.as_deref(),
        "{exec:?}"
    );
    assert_eq!(p.ancestors.pids.first(), Some(&i64::from(me)));
    // The same enrichment as driverless: user name and host name.
    assert_eq!(exec.user.id, Some(0));
    assert_eq!(exec.user.effective_id, Some(0));
    assert_eq!(exec.user.group_id, Some(0));
    assert_eq!(exec.user.name.as_deref(), Some("root"));
    assert!(exec.host_name.is_some());
    assert_schema_lists(&exec);

    let exit = h.wait_for(Duration::from_secs(30), |e| {
        e.kind == Some(EventKind::ProcessExit) && pid_of(e) == pid
    });
    let Some(exit) = exit else {
        panic!("no exit event for {pid}");
    };
    let xp = exit.process.clone().unwrap_or_default();
    assert_eq!(xp.exit_code, Some(3));
    assert_eq!(xp.args, p.args, "the exit carries the image from the tree");
    assert_schema_lists(&exit);

    let (summary, events) = h.finish();
    assert_eq!(summary.mode, Some(Mode::Ebpf), "{}", summary.render());
    assert!(
        summary
            .mode_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("auto:")),
        "{}",
        summary.render()
    );
    let names: Vec<&str> = summary.sources.iter().map(|s| s.name).collect();
    assert!(names.contains(&"ebpf"), "{names:?}");
    // The process connector runs beside the sensor only for the kinds it has no hook for here
    // (privilege, ptrace: the default profile without trampolines); audit never does.
    let beside = |what: &str| {
        summary
            .sensor_hooks
            .iter()
            .any(|h| h.contains(what) && h.contains("beside the eBPF sensor"))
    };
    assert!(!names.contains(&"audit"), "{names:?}");
    assert_eq!(
        names.contains(&"proc_connector"),
        beside("process connector"),
        "{}",
        summary.render()
    );
    assert!(
        summary
            .sensor_hooks
            .iter()
            .any(|h| h.starts_with("process.exec: tracepoint")),
        "{}",
        summary.render()
    );
    assert!(
        summary
            .sources
            .iter()
            .all(|s| s.error.is_none() && s.counters.dropped == 0),
        "{}",
        summary.render()
    );
    // The agent's own activity stays in the kernel.
    assert!(
        events
            .iter()
            .all(|e| e.source != Some(SourceKind::Ebpf) || pid_of(e) != me),
        "events of the agent's own process were reported"
    );
}

#[test]
fn file_events_under_the_watched_trees_only() {
    if !root() {
        return;
    }
    let dir = temp_dir("ebpf-files");
    let outside = temp_dir("ebpf-outside");
    // The deep profile: the sensor's own file programs, syscall tracepoints on this kernel.
    let mut c = config(ModeChoice::Ebpf, vec![dir.clone()]);
    c.sensor.profile = Profile::Deep;
    let mut h = Harness::start(c);
    let f = dir.join("payload.sh").display().to_string();
    let a = dir.join("a.txt").display().to_string();
    let b = dir.join("b.txt").display().to_string();
    let o = outside.join("ignored.txt").display().to_string();
    // From a child process: the agent ignores its own (this test's) activity.
    let script = format!(
        "printf a > {f} && printf b >> {f} && rm {f} && printf x > {a} && mv {a} {b} && printf y > {o}"
    );
    assert!(
        Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .status()
            .is_ok_and(|s| s.success())
    );
    for (kind, path) in [
        (EventKind::FileCreate, &f),
        (EventKind::FileModify, &f),
        (EventKind::FileDelete, &f),
        (EventKind::FileRename, &b),
    ] {
        let got = h.wait_for(Duration::from_secs(30), |e| {
            e.kind == Some(kind) && e.file.as_ref().is_some_and(|x| &x.path == path)
        });
        let Some(got) = got else {
            let (summary, events) = h.finish();
            panic!(
                "no {kind:?} for {path}; events: {events:?}\n{}",
                summary.render()
            );
        };
        assert_eq!(got.source, Some(SourceKind::Ebpf));
        let p = got.process.clone().unwrap_or_default();
        assert!(p.pid != 0, "{got:?}");
        // The subject's image comes from its exec, through the tree.
        assert!(p.executable.is_some() && !p.args.is_empty(), "{got:?}");
        if kind == EventKind::FileRename {
            let original = got.file.as_ref().and_then(|x| x.original_path.clone());
            assert_eq!(original.as_deref(), Some(a.as_str()));
        }
        assert_schema_lists(&got);
    }
    let (_, events) = h.finish();
    let dir_s = dir.display().to_string();
    assert!(
        events
            .iter()
            .filter(|e| e.file.is_some() && e.kind != Some(EventKind::MemfdCreate))
            .all(|e| e.file.as_ref().is_some_and(|x| x.path.starts_with(&dir_s))),
        "only watched paths are reported"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&outside);
}

#[test]
fn the_default_profile_takes_file_events_from_fanotify_where_the_sensor_has_no_file_hook() {
    if !root() {
        return;
    }
    let dir = temp_dir("ebpf-default-files");
    let mut h = Harness::start(config(ModeChoice::Ebpf, vec![dir.clone()]));
    let f = dir.join("dropped.sh").display().to_string();
    assert!(
        Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("printf a > {f}"))
            .status()
            .is_ok_and(|s| s.success())
    );
    let got = h.wait_for(Duration::from_secs(30), |e| {
        matches!(e.kind, Some(EventKind::FileCreate | EventKind::FileModify))
            && e.file.as_ref().is_some_and(|x| x.path == f)
    });
    let (summary, _) = h.finish();
    let Some(got) = got else {
        panic!("no file event for {f}\n{}", summary.render());
    };
    let sensor_files = summary
        .sensor_hooks
        .iter()
        .any(|h| h.starts_with("file.write: fentry"));
    let want = if sensor_files {
        SourceKind::Ebpf
    } else {
        SourceKind::Fanotify
    };
    assert_eq!(got.source, Some(want), "{}", summary.render());
    assert_eq!(summary.mode, Some(Mode::Ebpf));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_privilege_drop_is_reported_whichever_source_the_default_profile_gives_it() {
    if !root() {
        return;
    }
    let mut h = Harness::start(config(ModeChoice::Ebpf, vec![]));
    let child = Command::new("setpriv")
        .args([
            "--regid",
            "65534",
            "--reuid",
            "65534",
            "--clear-groups",
            "/bin/true",
        ])
        .spawn();
    let Ok(mut child) = child else {
        panic!("spawning setpriv (util-linux)");
    };
    let pid = child.id();
    assert!(child.wait().is_ok_and(|s| s.success()));
    let got = h.wait_for(Duration::from_secs(30), |e| {
        e.kind == Some(EventKind::PrivilegeChange)
            && pid_of(e) == pid
            && e.privilege
                .as_ref()
                .is_some_and(|p| p.new_uid == Some(65534))
    });
    let (summary, _) = h.finish();
    let Some(got) = got else {
        panic!("no privilege change for {pid}\n{}", summary.render());
    };
    // Without a hook of its own here the sensor leaves the kind to the process connector,
    // which sees only uid, gid and ptrace messages (its socket filter drops the rest).
    let beside = summary
        .sensor_hooks
        .iter()
        .any(|h| h.starts_with("privilege, ptrace: process connector"));
    let want = if beside {
        SourceKind::ProcConnector
    } else {
        SourceKind::Ebpf
    };
    assert_eq!(got.source, Some(want), "{}", summary.render());
    assert!(
        summary
            .sources
            .iter()
            .all(|s| s.error.is_none() && s.counters.gaps == 0),
        "{}",
        summary.render()
    );
}

#[test]
fn a_sensor_that_does_not_load_leaves_the_agent_running_driverless() {
    if !root() {
        return;
    }
    // Options the loader refuses (the config file check would catch this; built directly
    // here to make the load fail on a kernel where the sensor otherwise loads).
    let mut c = config(ModeChoice::Ebpf, vec![]);
    c.ebpf.poll_interval_ms = 0;
    let mut h = Harness::start(c);
    // Started means the driverless sources reported the sentinel exec.
    let health = h.wait_for(Duration::from_secs(30), |e| {
        e.kind == Some(EventKind::SensorHealth) && e.source == Some(SourceKind::Ebpf)
    });
    let Some(health) = health else {
        panic!("no sensor-health event for the eBPF sensor");
    };
    let message = health
        .health
        .as_ref()
        .and_then(|h| h.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("poll_interval_ms must be 1 to 1000, got 0")
            && message.contains("driverless"),
        "{message}"
    );
    assert!(health.host_name.is_some());
    let (summary, events) = h.finish();
    assert_eq!(summary.mode, Some(Mode::Driverless), "{}", summary.render());
    assert!(
        summary
            .mode_reason
            .as_deref()
            .is_some_and(|r| r.contains("poll_interval_ms")),
        "{}",
        summary.render()
    );
    let ebpf = summary.sources.iter().find(|s| s.name == "ebpf");
    assert!(
        ebpf.is_some_and(|s| s
            .error
            .as_deref()
            .is_some_and(|e| e.contains("poll_interval_ms"))),
        "{}",
        summary.render()
    );
    assert!(
        events.iter().any(|e| e.kind == Some(EventKind::ProcessExec)
            && e.source == Some(SourceKind::ProcConnector)),
        "driverless sources run instead"
    );
}
