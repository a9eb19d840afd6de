//! The same action seen through each hook a kind can get gives the same event. Two sensors run
//! side by side, one held to each hook, and the ECS fields of their events are compared. On a
//! kernel that refuses trampolines (this host) the hooks compared are the tracepoints off the
//! syscall path against the syscall tracepoints; the kernel matrix's guests compare fentry too
//! (crates/ringfence-agent/examples/kernel_check.rs).
//!
//! Needs root and a kernel with BTF; without root the tests say so and pass vacuously.
#![allow(unsafe_code, reason = "geteuid(2) to skip without root")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on failure"
)]

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use ringfence_event::{Event, EventKind};
use ringfence_sensor::ebpf::{EbpfOptions, EbpfSensor, HookTier, Profile, RecordKind, convert};
use ringfence_sensor::sys::Clocks;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: the eBPF tests need root");
    }
    root
}

/// A sensor held to `tier` for every kind that has it (the deep profile, the cheaper hooks
/// skipped).
fn held_to(tier: HookTier, protected: Vec<u32>) -> EbpfSensor {
    let skip_hooks = HookTier::ALL.into_iter().filter(|t| *t < tier).collect();
    EbpfSensor::load(&EbpfOptions {
        ignore_self: false,
        protect_self: false,
        protected_pids: protected,
        profile: Profile::Deep,
        skip_hooks,
        ..EbpfOptions::default()
    })
    .expect("sensor loads")
}

fn tier_of(sensor: &EbpfSensor, kind: RecordKind) -> Option<HookTier> {
    sensor
        .kind_hooks()
        .iter()
        .find(|h| h.kinds.contains(&kind))
        .and_then(|h| h.tier)
}

/// A sensor and the events read from it so far (a wait keeps what it read past the one it
/// wanted).
struct Watch {
    sensor: EbpfSensor,
    seen: Vec<Event>,
}

impl Watch {
    /// The first event matching `pred`, within five seconds; times converted with `clocks` (one
    /// snapshot for both sensors, or their wall-clock times differ by the moments each read
    /// the clocks).
    fn first(&mut self, what: &str, clocks: &Clocks, pred: &dyn Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(i) = self.seen.iter().position(pred) {
                return self.seen.remove(i);
            }
            assert!(Instant::now() < deadline, "no {what} event within 5 s");
            let seen = &mut self.seen;
            self.sensor.poll(|rec| {
                if let Ok(rec) = rec {
                    seen.push(convert::to_event(rec, clocks));
                }
            });
        }
    }
}

/// The event's ECS document without what differs by nature between two readers of one action:
/// the event's own id and its time (each program stamps its own).
fn comparable(e: &Event) -> serde_json::Value {
    let mut v = e.to_ecs();
    if let Some(o) = v.as_object_mut() {
        o.remove("@timestamp");
        if let Some(ev) = o.get_mut("event").and_then(|x| x.as_object_mut()) {
            ev.remove("id");
            ev.remove("created");
            ev.remove("ingested");
        }
    }
    v
}

fn pid_of(e: &Event) -> u32 {
    e.process.as_ref().map_or(0, |p| p.pid)
}

#[test]
fn connect_bind_and_signal_are_the_same_off_the_syscall_path() {
    if !root() {
        return;
    }
    let mut target = Command::new("sleep").arg("30").spawn().expect("sleep");
    let tid = target.id();
    let mut off_path = Watch {
        sensor: held_to(HookTier::Cgroup, vec![tid]),
        seen: Vec::new(),
    };
    let mut syscall = Watch {
        sensor: held_to(HookTier::Syscall, vec![tid]),
        seen: Vec::new(),
    };
    for kind in [RecordKind::Connect, RecordKind::Bind, RecordKind::Signal] {
        assert_eq!(
            tier_of(&syscall.sensor, kind),
            Some(HookTier::Syscall),
            "{kind:?}"
        );
        // A kernel without trampolines gives these kinds a cgroup socket hook or a tracepoint
        // off the syscall path; one with them gives fentry (compared in the kernel matrix).
        let t = tier_of(&off_path.sensor, kind);
        assert!(
            matches!(
                t,
                Some(HookTier::Cgroup | HookTier::Tracepoint | HookTier::Fentry)
            ),
            "{kind:?}: {t:?}"
        );
    }
    let clocks = *off_path.sensor.clocks();
    let me = std::process::id();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // A resolver's way: a UDP socket connected to its server (the DNS asker comes from this).
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    udp.connect("127.0.0.1:53").expect("udp connect");
    let status = Command::new("kill")
        .args(["-TERM", &tid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let _ = target.wait();

    let connect = |e: &Event| {
        e.kind() == EventKind::NetworkConnect
            && pid_of(e) == me
            && e.network.as_ref().and_then(|n| n.destination_port) == Some(port)
    };
    let udp_connect = |e: &Event| {
        e.kind() == EventKind::NetworkConnect
            && pid_of(e) == me
            && e.network.as_ref().and_then(|n| n.destination_port) == Some(53)
    };
    let bind = |e: &Event| {
        e.kind() == EventKind::NetworkBind
            && pid_of(e) == me
            && e.network.as_ref().and_then(|n| n.transport.as_deref()) == Some("tcp")
    };
    let signal =
        |e: &Event| e.kind() == EventKind::Signal && e.target.as_ref().map(|t| t.pid) == Some(tid);
    for (what, pred) in [
        ("connect", &connect as &dyn Fn(&Event) -> bool),
        ("udp connect", &udp_connect),
        ("bind", &bind),
        ("signal", &signal),
    ] {
        let a = off_path.first(&format!("{what} (off the syscall path)"), &clocks, pred);
        let b = syscall.first(what, &clocks, pred);
        assert_eq!(comparable(&a), comparable(&b), "{what}");
    }
}

#[test]
fn the_default_profile_attaches_no_syscall_tracepoint() {
    if !root() {
        return;
    }
    let sensor = EbpfSensor::load(&EbpfOptions::default()).expect("sensor loads");
    assert_eq!(sensor.profile(), Profile::Default);
    for a in sensor.attached() {
        if a.skipped.is_none() {
            assert!(
                !a.hook.starts_with("tracepoint/syscalls/"),
                "{} on {}",
                a.program,
                a.hook
            );
        }
    }
    for h in sensor.kind_hooks() {
        assert_ne!(h.tier, Some(HookTier::Syscall), "{}", h.describe());
    }
    // The process kinds always have a hook; the report says what each kind got.
    assert!(sensor.covers(RecordKind::Exec) && sensor.covers(RecordKind::Exit));
    for h in sensor.kind_hooks() {
        eprintln!("{}", h.describe());
        // file.write has two trampoline choices: one refusal says it once.
        let mut once = h.passed_over.clone();
        once.dedup();
        assert_eq!(once, h.passed_over, "{}", h.describe());
    }
}
