//! Response actions against real processes, files and nftables rules (run as root).
//!
//! The firewall test builds two network namespaces joined by a veth pair, so the host's own
//! firewall is never touched, and proves a block with real TCP connects across the pair.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "tests fail by panicking"
)]

use std::fs::File;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use ringfence_response::guard::GuardConfig;
use ringfence_response::{Action, AuditRecord, Cause, Responder, ResponseConfig, Status};

fn temp(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ringfence-response-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn responder(dir: &Path, edit: impl FnOnce(&mut ResponseConfig)) -> Responder {
    let mut config = ResponseConfig {
        quarantine_dir: dir.join("quarantine"),
        audit_log: dir.join("audit.jsonl"),
        ..ResponseConfig::default()
    };
    edit(&mut config);
    Responder::new(config)
}

fn cause() -> Cause {
    Cause {
        rule_id: Some("test-rule".into()),
        requested_by: "tests".into(),
    }
}

fn audit_lines(dir: &Path) -> Vec<AuditRecord> {
    let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("audit line parses"))
        .collect()
}

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("1000")
        .spawn()
        .expect("spawn sleep")
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn wait_dead(pids: &[u32]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if pids.iter().all(|p| !alive(*p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn kills_a_real_process_and_audits_it() {
    let dir = temp("kill");
    let mut r = responder(&dir, |_| {});
    let mut child = sleeper();
    let record = r.execute(
        &Action::Kill {
            pid: child.id(),
            tree: false,
            start_ticks: None,
        },
        &cause(),
    );
    assert!(record.is_done(), "{record:?}");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(9));
    assert_eq!(audit_lines(&dir), vec![record]);
}

#[test]
fn kills_a_whole_tree() {
    let dir = temp("tree");
    let mut r = responder(&dir, |_| {});
    let mut root = Command::new("sh")
        .args(["-c", "sleep 1000 & sleep 1000 & sh -c 'sleep 1000' & wait"])
        .spawn()
        .expect("spawn sh");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut members = Vec::new();
    while Instant::now() < deadline && members.len() < 4 {
        members = ringfence_response::kill::descendants(root.id());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(members.len() >= 4, "tree formed: {members:?}");
    let record = r.execute(
        &Action::Kill {
            pid: root.id(),
            tree: true,
            start_ticks: None,
        },
        &cause(),
    );
    assert!(record.is_done(), "{record:?}");
    assert_eq!(root.wait().expect("wait").signal(), Some(9));
    assert!(wait_dead(&members), "descendants survived: {members:?}");
}

#[test]
fn guard_rails_refuse_and_leave_the_process_running() {
    let dir = temp("guard");
    let sleep_exe = std::fs::read_link("/proc/self/exe").ok();
    assert!(sleep_exe.is_some());
    let mut child = sleeper();
    let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).expect("exe");
    let mut r = responder(&dir, |c| {
        c.guard = GuardConfig {
            critical_executables: vec![exe.clone()],
            ..GuardConfig::default()
        }
    });
    let refused = r.execute(
        &Action::Kill {
            pid: child.id(),
            tree: false,
            start_ticks: None,
        },
        &cause(),
    );
    assert!(
        matches!(&refused.outcome, Status::Refused { reason } if reason.contains("critical service")),
        "{refused:?}"
    );
    for pid in [1, 2, std::process::id()] {
        let rec = r.execute(
            &Action::Kill {
                pid,
                tree: true,
                start_ticks: None,
            },
            &cause(),
        );
        assert!(
            matches!(rec.outcome, Status::Refused { .. }),
            "pid {pid}: {rec:?}"
        );
    }
    // A pid whose start time does not match the event's is a reused pid.
    let mut plain = responder(&dir, |_| {});
    let reused = plain.execute(
        &Action::Kill {
            pid: child.id(),
            tree: false,
            start_ticks: Some(1),
        },
        &cause(),
    );
    assert!(
        matches!(&reused.outcome, Status::Refused { reason } if reason.contains("reused")),
        "{reused:?}"
    );
    assert!(alive(child.id()));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn dry_run_and_rate_limit() {
    let dir = temp("dry");
    let mut child = sleeper();
    let mut dry = responder(&dir, |c| c.dry_run = true);
    let rec = dry.execute(
        &Action::Kill {
            pid: child.id(),
            tree: false,
            start_ticks: None,
        },
        &cause(),
    );
    assert_eq!(rec.outcome, Status::DryRun);
    assert!(alive(child.id()));
    let mut limited = responder(&dir, |c| c.max_per_minute = 1);
    let first = limited.execute(
        &Action::Kill {
            pid: child.id(),
            tree: false,
            start_ticks: None,
        },
        &cause(),
    );
    assert!(first.is_done());
    let _ = child.wait();
    let mut other = sleeper();
    let second = limited.execute(
        &Action::Kill {
            pid: other.id(),
            tree: false,
            start_ticks: None,
        },
        &cause(),
    );
    assert!(
        matches!(&second.outcome, Status::Refused { reason } if reason.contains("rate limit")),
        "{second:?}"
    );
    let _ = other.kill();
    let _ = other.wait();
    assert_eq!(audit_lines(&dir).len(), 3);
}

#[test]
fn quarantines_and_restores_through_the_responder() {
    let dir = temp("quarantine");
    let mut r = responder(&dir, |_| {});
    let file = dir.join("implant");
    std::fs::write(&file, b"\x7fELF fake").expect("write");
    let rec = r.execute(&Action::Quarantine { path: file.clone() }, &cause());
    let Status::Done { detail } = &rec.outcome else {
        panic!("{rec:?}")
    };
    assert!(!file.exists());
    let id = detail.trim_start_matches("quarantined as ").to_owned();
    let back = r.execute(&Action::Restore { id }, &cause());
    assert!(back.is_done(), "{back:?}");
    assert_eq!(std::fs::read(&file).ok(), Some(b"\x7fELF fake".to_vec()));
    let protected = r.execute(
        &Action::Quarantine {
            path: "/proc/self/status".into(),
        },
        &cause(),
    );
    assert!(matches!(protected.outcome, Status::Refused { .. }));
}

/// Two namespaces joined by veth, torn down on drop.
struct NetPair {
    a: String,
    b: String,
}

impl NetPair {
    fn new() -> NetPair {
        let id = std::process::id() % 100_000;
        let pair = NetPair {
            a: format!("rfa{id}"),
            b: format!("rfb{id}"),
        };
        let veth_a = format!("rfva{id}");
        let veth_b = format!("rfvb{id}");
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &pair.a],
            vec!["netns", "add", &pair.b],
            vec![
                "link", "add", &veth_a, "type", "veth", "peer", "name", &veth_b,
            ],
            vec!["link", "set", &veth_a, "netns", &pair.a],
            vec!["link", "set", &veth_b, "netns", &pair.b],
            vec![
                "-n",
                &pair.a,
                "addr",
                "add",
                "10.231.0.1/30",
                "dev",
                &veth_a,
            ],
            vec![
                "-n",
                &pair.b,
                "addr",
                "add",
                "10.231.0.2/30",
                "dev",
                &veth_b,
            ],
            vec!["-n", &pair.a, "link", "set", &veth_a, "up"],
            vec!["-n", &pair.b, "link", "set", &veth_b, "up"],
            vec!["-n", &pair.a, "link", "set", "lo", "up"],
            vec!["-n", &pair.b, "link", "set", "lo", "up"],
        ];
        for step in steps {
            let ok = Command::new("ip")
                .args(&step)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "ip {}", step.join(" "));
        }
        pair
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn enter(ns: &str) {
    let f = File::open(format!("/run/netns/{ns}")).expect("netns file");
    setns(f, CloneFlags::CLONE_NEWNET).expect("setns");
}

/// Connect from namespace `b` to `addr` in namespace `a`.
fn can_connect(b: &str, addr: SocketAddr) -> bool {
    let b = b.to_owned();
    std::thread::spawn(move || {
        enter(&b);
        TcpStream::connect_timeout(&addr, Duration::from_millis(700)).is_ok()
    })
    .join()
    .unwrap_or(false)
}

fn host_tables() -> String {
    Command::new("nft")
        .args(["list", "tables"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[test]
fn blocks_an_address_with_nftables_in_a_namespace() {
    let host_before = host_tables();
    let pair = NetPair::new();
    let addr: SocketAddr = "10.231.0.1:7777".parse().expect("addr");
    let a = pair.a.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter(&a);
        let listener = TcpListener::bind(addr).expect("bind in ns a");
        let _ = ready_tx.send(());
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("listener ready");
    assert!(can_connect(&pair.b, addr), "reachable before the block");

    let dir = temp("firewall");
    let mut r = responder(&dir, |c| c.netns = Some(pair.a.clone()));
    let peer: IpAddr = "10.231.0.2".parse().expect("ip");
    let rec = r.execute(
        &Action::BlockIp {
            ip: peer,
            ttl_secs: 300,
        },
        &cause(),
    );
    assert!(rec.is_done(), "{rec:?}");
    let fw = ringfence_response::firewall::Firewall::new(Some(pair.a.clone()));
    assert_eq!(fw.blocked().ok(), Some(vec!["10.231.0.2".to_owned()]));
    assert!(!can_connect(&pair.b, addr), "dropped while blocked");

    let rec = r.execute(&Action::UnblockIp { ip: peer }, &cause());
    assert!(rec.is_done(), "{rec:?}");
    assert!(can_connect(&pair.b, addr), "reachable after unblock");
    let loopback = r.execute(
        &Action::BlockIp {
            ip: "127.0.0.1".parse().expect("ip"),
            ttl_secs: 60,
        },
        &cause(),
    );
    assert!(matches!(loopback.outcome, Status::Refused { .. }));
    assert_eq!(
        host_tables(),
        host_before,
        "the host's firewall is untouched"
    );
}
