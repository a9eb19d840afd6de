//! Container context against real containers: podman (from Debian) runs an image built here from
//! busybox-static (no registry), and every process the test starts in a container must carry
//! the `container.id` that `podman inspect` reports, in driverless and in eBPF mode.
//!
//! Needs root, podman, runc and /bin/busybox (scripts/test.sh installs them). Where podman
//! cannot run a container at all on this host, the tests say why and skip.

mod common;

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::Harness;
use ringfence_agent::{Config, ModeChoice};
use ringfence_event::{Event, EventKind};

const IMAGE: &str = "localhost/ringfence-test-busybox";

/// `podman` with the options this host needs: runc, as crun refuses hybrid cgroup hosts, and
/// resource limits at or below the test's own, as podman's defaults (1M open files) need
/// CAP_SYS_RESOURCE, which a container host's root may lack.
fn podman() -> Command {
    let mut c = Command::new("podman");
    if Command::new("runc").arg("--version").output().is_ok() {
        c.args(["--runtime", "runc"]);
    }
    c
}

fn run_opts() -> [&'static str; 4] {
    [
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1000:1000",
    ]
}

fn output(c: &mut Command) -> Result<String, String> {
    let out = c.output().map_err(|e| format!("{c:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{c:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The test image, built once from busybox-static; `Err` names why podman cannot be used here.
fn image() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    == Some("0")
            });
            if !root {
                return Err("needs root".into());
            }
            output(Command::new("podman").arg("--version"))?;
            let dir = std::env::temp_dir().join(format!("ringfence-rootfs-{}", std::process::id()));
            let bin = dir.join("bin");
            std::fs::create_dir_all(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
            std::fs::copy("/bin/busybox", bin.join("busybox"))
                .map_err(|e| format!("/bin/busybox (install busybox-static): {e}"))?;
            for applet in ["sh", "sleep", "true"] {
                let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
            }
            let tar = output(Command::new("sh").arg("-c").arg(format!(
                "tar -C {} -c . | podman import - {IMAGE}",
                dir.display()
            )));
            let _ = std::fs::remove_dir_all(&dir);
            tar.map(|_| ())
        })
        .clone()
}

/// Run one container whose shell starts a child shell; both carry `marker` in their
/// arguments. Returns the container id podman reports.
fn run_container(marker: &str) -> Result<String, String> {
    // The child shell runs two commands, so it stays a shell (not exec'd into sleep) while
    // /proc is read.
    let script = "/bin/sh -c '/bin/sleep 1; /bin/true' \"$0-child\"; /bin/sleep 1";
    let id = output(
        podman()
            .args(["run", "-d"])
            .args(run_opts())
            .args([IMAGE, "/bin/sh", "-c", script, marker]),
    )?;
    let _ = output(podman().args(["wait", &id]));
    let inspected = output(podman().args(["inspect", "-f", "{{.Id}}", &id]))?;
    let _ = output(podman().args(["rm", "-f", &id]));
    Ok(inspected)
}

/// An exec of a shell in the container (not podman's own, whose arguments hold the marker too).
fn marked(e: &Event, marker: &str) -> bool {
    e.kind == Some(EventKind::ProcessExec)
        && e.process.as_ref().is_some_and(|p| {
            p.args.first().is_some_and(|a| a == "/bin/sh")
                && p.args.iter().any(|a| a.starts_with(marker))
        })
}

fn config(mode: ModeChoice) -> Config {
    let mut c = Config::default();
    c.agent.mode = mode;
    // Driverless as recommended: audit's records give even a short process its arguments.
    c.audit.add_rules = ringfence_sensor::audit::AddRules::Always;
    c.sources.logs = false;
    c.sources.fanotify = false;
    c.agent.stats_interval_secs = 1;
    c
}

/// Two containers, two marked execs in each: every one must carry its container's id, the
/// runtime and the image.
fn container_context_in(mode: ModeChoice) {
    if let Err(why) = image() {
        eprintln!("skipped: podman cannot build or run a container here: {why}");
        return;
    }
    let mut h = Harness::start(config(mode));
    let mut expected = Vec::new();
    for n in 0..2 {
        let marker = format!("rf-ctr-{}-{n}", std::process::id());
        match run_container(&marker) {
            Ok(id) => expected.push((marker, id)),
            Err(why) => {
                h.finish();
                panic!("podman could build the image but not run it: {why}");
            }
        }
    }
    let mut filled = 0;
    let mut total = 0;
    for (marker, id) in &expected {
        let child = format!("{marker}-child");
        let _ = h.wait_for(Duration::from_secs(30), |e| {
            marked(e, marker) && e.process.as_ref().is_some_and(|p| p.args.contains(&child))
        });
        let execs: Vec<Event> = h
            .events
            .iter()
            .filter(|e| marked(e, marker))
            .cloned()
            .collect();
        assert_eq!(
            execs.len(),
            2,
            "{marker}: the shell and its child: {execs:?}"
        );
        for e in execs {
            total += 1;
            let c = e.container.clone().unwrap_or_default();
            if c.id == *id {
                filled += 1;
            }
            assert_eq!(c.id, *id, "{e:?}");
            assert_eq!(c.runtime, "podman");
            assert_eq!(c.image_name.as_deref(), Some(&*format!("{IMAGE}:latest")));
        }
    }
    eprintln!("{mode:?}: container context filled for {filled} of {total} container processes");
    // The test itself runs in no container.
    let me = std::process::id();
    let (_, events) = h.finish();
    assert!(
        events
            .iter()
            .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == me))
            .all(|e| e.container.is_none())
    );
}

#[test]
fn container_context_in_driverless_mode() {
    container_context_in(ModeChoice::Driverless);
}

#[test]
fn container_context_in_ebpf_mode() {
    if ringfence_agent::ebpf_support().is_err() {
        eprintln!("skipped: eBPF mode is not available on this kernel");
        return;
    }
    container_context_in(ModeChoice::Ebpf);
}
