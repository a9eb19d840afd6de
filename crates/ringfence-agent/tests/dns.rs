//! DNS events against a real DNS server: dnsmasq (from Debian) on a loopback address answers
//! for `ringfence.test`, `dig` looks names up, and the agent must report each query and answer
//! with the process that asked, in driverless and eBPF mode; a connect to an answered address
//! by the process that looked it up carries `destination.domain`.
//!
//! Needs root, dnsmasq and dig (scripts/test.sh installs them); without them the tests say so
//! and skip.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Harness;
use ringfence_agent::{Config, ModeChoice};
use ringfence_event::{Event, EventKind};
use ringfence_sensor::audit::AddRules;

/// Where the test's DNS server listens (port 53: the port the agent captures).
const SERVER: &str = "127.0.0.153";
/// What it answers for every name under `ringfence.test`: a loopback address, so the test can
/// connect to it.
const ANSWER: &str = "127.0.0.77";

/// dnsmasq in the foreground, killed when dropped.
struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_dnsmasq() -> Result<Dnsmasq, String> {
    let child = Command::new("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--pid-file",
            "--user=root",
            &format!("--listen-address={SERVER}"),
            "--port=53",
            &format!("--address=/ringfence.test/{ANSWER}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("dnsmasq (install dnsmasq-base): {e}"))?;
    let mut server = Dnsmasq(child);
    // Ready when it answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if lookup_here("ready.ringfence.test").is_some() {
            return Ok(server);
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = server.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!("dnsmasq exited with {status}: {}", err.trim()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("dnsmasq did not answer within 20 s".into())
}

/// One A query from this process's own UDP socket; the first address of the answer.
fn lookup_here(name: &str) -> Option<std::net::Ipv4Addr> {
    let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
    // Connected, as resolvers do.
    sock.connect((SERVER, 53)).ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let mut q = vec![0x77, 0x01, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).ok()?);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    sock.send(&q).ok()?;
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).ok()?;
    // The answer's A record ends the message (one question, one answer).
    let a: [u8; 4] = buf.get(n.checked_sub(4)?..n)?.try_into().ok()?;
    (n > q.len()).then_some(a.into())
}

fn config(mode: ModeChoice) -> Config {
    let mut c = Config::default();
    c.agent.mode = mode;
    c.audit.add_rules = AddRules::Always;
    c.sources.logs = false;
    c.sources.fanotify = false;
    c.agent.stats_interval_secs = 1;
    c
}

fn dns_event<'a>(events: &'a [Event], name: &str, message_type: &str) -> Option<&'a Event> {
    events.iter().find(|e| {
        e.kind == Some(EventKind::Dns)
            && e.dns
                .as_deref()
                .is_some_and(|d| d.question_name == name && d.message_type == message_type)
    })
}

/// One DNS server address and one packet capture at a time: the two modes' tests would
/// otherwise start two dnsmasqs on the same address, and the first to finish would take the
/// other's server away.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lookups_in(mode: ModeChoice) {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Err(why) = Command::new("dig").arg("-v").output() {
        eprintln!("skipped: no dig (install bind9-dnsutils): {why}");
        return;
    }
    if let Err(why) = Command::new("dnsmasq").arg("--version").output() {
        eprintln!("skipped: no dnsmasq (install dnsmasq-base): {why}");
        return;
    }
    let server = start_dnsmasq().unwrap_or_else(|why| panic!("{why}"));
    let mut h = Harness::start(config(mode));
    let tag = std::process::id();
    let mut asked = Vec::new();
    for n in 0..5 {
        let name = format!("host{n}-{tag}.ringfence.test");
        let mut dig = Command::new("dig")
            .args([
                &format!("@{SERVER}"),
                "-p",
                "53",
                "+short",
                "+tries=1",
                &name,
                "A",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("dig: {e}"));
        let pid = dig.id();
        let mut out = String::new();
        if let Some(mut o) = dig.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        let _ = dig.wait();
        assert_eq!(out.trim(), ANSWER, "dnsmasq's answer for {name}");
        asked.push((name, pid));
    }
    // A process looks a name up and connects to the answer: the connect names the domain.
    // (A child: the eBPF sensor does not report the agent's own process, this test.)
    let listener = TcpListener::bind((ANSWER, 0)).unwrap_or_else(|e| panic!("listen: {e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let web = format!("web-{tag}.ringfence.test");
    let helper = std::env::current_exe()
        .map(|exe| {
            Command::new(exe)
                .args(["--ignored", "--exact", "lookup_then_connect", "--nocapture"])
                .env(HELPER_ENV, format!("{web} {port}"))
                .stdout(Stdio::null())
                .status()
        })
        .unwrap_or_else(|e| panic!("cannot run the helper: {e}"));
    assert!(helper.is_ok_and(|s| s.success()), "the helper failed");

    let mut answered = 0;
    for (name, pid) in &asked {
        let Some(answer) = h.wait_for(Duration::from_secs(30), |e| {
            dns_event(std::slice::from_ref(e), name, "answer").is_some()
        }) else {
            let (summary, _) = h.finish();
            panic!("no answer event for {name}: {summary:?}");
        };
        let query = dns_event(&h.events, name, "query").cloned();
        let d = answer.dns.clone().unwrap_or_default();
        assert_eq!(d.question_type, "A");
        assert_eq!(d.response_code.as_deref(), Some("NOERROR"));
        assert_eq!(d.resolved_ip, vec![ANSWER.to_owned()]);
        let p = answer.process.clone().unwrap_or_default();
        if p.pid != *pid {
            for e in &h.events {
                if e.kind == Some(EventKind::Dns)
                    || e.network
                        .as_ref()
                        .is_some_and(|n| n.destination_port == Some(53))
                    || e.process.as_ref().is_some_and(|p| p.pid == *pid)
                {
                    eprintln!(
                        "{} {:?} {:?} {:?} {:?}",
                        e.timestamp.0,
                        e.kind,
                        e.process.as_ref().map(|p| (p.pid, p.args.get(6).cloned())),
                        e.network.as_ref().map(|n| (
                            n.source_port,
                            n.destination_ip,
                            n.destination_port
                        )),
                        e.dns.as_ref().map(|d| (&d.message_type, &d.question_name))
                    );
                }
            }
        }
        assert_eq!(p.pid, *pid, "the answer names dig as the asker: {answer:?}");
        assert!(
            p.executable.as_deref().is_some_and(|x| x.ends_with("/dig")),
            "{answer:?}"
        );
        let q = query.unwrap_or_else(|| panic!("no query event for {name}"));
        assert_eq!(q.process.map(|p| p.pid), Some(*pid));
        answered += 1;
    }
    let connect = h.wait_for(Duration::from_secs(30), |e| {
        e.kind == Some(EventKind::NetworkConnect)
            && e.network
                .as_ref()
                .is_some_and(|n| n.destination_port == Some(port))
    });
    let (_, events) = h.finish();
    drop(server);
    let web_events: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.dns.as_deref().is_some_and(|d| d.question_name == web)
                || e.network
                    .as_ref()
                    .is_some_and(|n| n.destination_port == Some(port))
        })
        .collect();
    eprintln!(
        "{mode:?}: DNS events for {answered} of {} lookups",
        asked.len()
    );
    let connect = connect.unwrap_or_else(|| panic!("no connect event to {ANSWER}:{port}"));
    assert_eq!(
        connect
            .network
            .and_then(|n| n.destination_domain)
            .as_deref(),
        Some(web.as_str()),
        "the lookup and the connect: {web_events:#?}"
    );
}

const HELPER_ENV: &str = "RINGFENCE_DNS_HELPER";

/// Run by the tests above as a child process (`NAME PORT` in [`HELPER_ENV`]): look `NAME` up
/// and connect to the answer on `PORT`. Does nothing when run otherwise.
#[test]
#[ignore = "a helper the DNS tests run as a child process"]
fn lookup_then_connect() {
    let Ok(job) = std::env::var(HELPER_ENV) else {
        return;
    };
    let (name, port) = job.split_once(' ').unwrap_or_default();
    let addr = lookup_here(name).unwrap_or_else(|| panic!("no answer for {name}"));
    let port: u16 = port.parse().unwrap_or_else(|e| panic!("port {port}: {e}"));
    TcpStream::connect((addr, port)).unwrap_or_else(|e| panic!("connect: {e}"));
}

#[test]
fn lookups_in_driverless_mode() {
    lookups_in(ModeChoice::Driverless);
}

#[test]
fn lookups_in_ebpf_mode() {
    if ringfence_agent::ebpf_support().is_err() {
        eprintln!("skipped: eBPF mode is not available on this kernel");
        return;
    }
    lookups_in(ModeChoice::Ebpf);
}
