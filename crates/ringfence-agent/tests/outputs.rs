//! The routed outputs against real receivers: a local HTTPS server (hyper + rustls) for the
//! webhook and Splunk HEC, checking the signature, the token and the body, and Debian's
//! rsyslogd for syslog over TCP and TLS. Each receiver also goes away for a while: the output
//! retries, counts what it drops, and delivers again once the receiver is back.
//!
//! The syslog tests need `rsyslogd` (packages rsyslog and rsyslog-gnutls; scripts/test.sh
//! installs them).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use ringfence_agent::outputs::{self, Output, RouteConfig, RouteKind};
use serde_json::{Value, json};

/// A CA and a server certificate for 127.0.0.1 and localhost, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    cert_pem: String,
    key_pem: String,
}

fn pki(dir: &Path) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test receivers CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let p = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    std::fs::write(&p.ca, ca_cert.pem()).unwrap();
    std::fs::write(&p.cert, &p.cert_pem).unwrap();
    std::fs::write(&p.key, &p.key_pem).unwrap();
    p
}

fn secret_file(dir: &Path, name: &str, value: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn finding(n: usize) -> Value {
    json!({
        "@timestamp": "2026-12-06T07:00:00.000Z",
        "event": {"kind": "alert", "severity": 4},
        "host": {"name": "web-3"},
        "user": {"name": "www-data"},
        "process": {"pid": 4242, "command_line": format!("sh -c 'curl x | sh' #{n}"),
                    "parent": {"name": "nginx"}},
        "rule": {"id": "rule-1", "name": "Shell Piped From Curl"},
        "ringfence": {"finding": {"level": "high"}},
        "n": n,
    })
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ── a small HTTPS receiver ─────────────────────────────────────────────────────────────────

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    /// The status it answers (503 while "down").
    status: Arc<AtomicU16>,
    _rt: tokio::runtime::Runtime,
}

fn https_receiver(pki: &Pki) -> Receiver {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The chain holds the CA too, so a pinned client finds its pin (as the console serves).
    let ca_pem = std::fs::read_to_string(&pki.ca).unwrap();
    let certs = vec![
        rustls::pki_types::CertificateDer::from(rustls_pem_cert(&pki.cert_pem)),
        rustls::pki_types::CertificateDer::from(rustls_pem_cert(&ca_pem)),
    ];
    let key = rustls::pki_types::PrivateKeyDer::try_from(rustls_pem_key(&pki.key_pem)).unwrap();
    #[allow(
        deprecated,
        reason = "ring, as the agent's TLS uses (see ringfence-wire's tls.rs)"
    )]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let status = Arc::new(AtomicU16::new(200));
    let (got2, status2) = (got.clone(), status.clone());
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let (got, status) = (got2.clone(), status2.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (got, status) = (got.clone(), status.clone());
                        async move {
                            let path = req.uri().path().to_owned();
                            let headers = req.headers().clone();
                            let body = req.into_body().collect().await?.to_bytes().to_vec();
                            let code = status.load(Ordering::Acquire);
                            if code == 200 {
                                got.lock().unwrap().push(Got {
                                    path,
                                    headers,
                                    body,
                                });
                            }
                            Ok::<_, hyper::Error>(
                                hyper::Response::builder()
                                    .status(code)
                                    .body(Full::new(bytes::Bytes::from_static(
                                        b"{\"text\":\"Success\",\"code\":0}",
                                    )))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Receiver {
        addr,
        got,
        status,
        _rt: rt,
    }
}

fn rustls_pem_cert(pem: &str) -> Vec<u8> {
    pem_der(pem, "CERTIFICATE")
}

fn rustls_pem_key(pem: &str) -> Vec<u8> {
    pem_der(pem, "PRIVATE KEY")
}

/// The DER inside the first PEM block labelled `label`.
fn pem_der(pem: &str, label: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    match label {
        "CERTIFICATE" => rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec(),
        _ => rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .secret_pkcs8_der()
            .to_vec(),
    }
}

fn small_retries(c: &mut RouteConfig) {
    c.retry_min_ms = 20;
    c.retry_max_ms = 100;
    c.timeout_secs = 5;
}

#[test]
fn webhook_posts_signed_findings_retries_while_down_and_counts_drops() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let rx = https_receiver(&pki);
    let mut c = RouteConfig::new(RouteKind::Webhook);
    c.url = Some(format!("https://127.0.0.1:{}/hook", rx.addr.port()));
    c.secret_file = Some(secret_file(dir.path(), "hook.secret", "s3cret"));
    c.ca_file = Some(pki.ca.clone());
    c.queue = 10;
    small_retries(&mut c);
    assert!(c.problems().is_empty(), "{:?}", c.problems());
    let mut out = outputs::route(&c).unwrap();

    for n in 0..3 {
        out.write_finding(&finding(n), "").unwrap();
    }
    wait_until("3 webhook posts", Duration::from_secs(20), || {
        rx.got.lock().unwrap().len() == 3
    });
    for (n, g) in rx.got.lock().unwrap().iter().enumerate() {
        assert_eq!(g.path, "/hook");
        let sig = g.headers["x-ringfence-signature"].to_str().unwrap();
        assert_eq!(sig, outputs::http::signature(b"s3cret", &g.body));
        let body: Value = serde_json::from_slice(&g.body).unwrap();
        assert_eq!(body, finding(n));
        assert_eq!(g.headers["content-type"], "application/json");
    }

    // Down: 503s. The first finding is retried, the queue fills, the rest are dropped.
    rx.status.store(503, Ordering::Release);
    let counters = out.counters();
    out.write_finding(&finding(100), "").unwrap();
    wait_until("retries", Duration::from_secs(20), || {
        counters.retries.load(Ordering::Relaxed) >= 2
    });
    for n in 101..=130 {
        out.write_finding(&finding(n), "").unwrap();
    }
    assert_eq!(out.dropped(), 20, "1 in flight + 10 queued kept");
    assert!(out.last_error().unwrap_or_default().contains("503"));

    // Back: what was kept arrives, in order.
    rx.status.store(200, Ordering::Release);
    wait_until("recovery", Duration::from_secs(20), || {
        rx.got.lock().unwrap().len() == 3 + 11
    });
    let got = rx.got.lock().unwrap();
    let ns: Vec<u64> = got[3..]
        .iter()
        .map(|g| {
            serde_json::from_slice::<Value>(&g.body).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, (100..=110).collect::<Vec<_>>());
    drop(got);
    out.close();
    assert_eq!(out.dropped(), 20);
}

#[test]
fn webhook_refuses_a_wrong_ca_and_a_readable_secret() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let other = tempfile::tempdir().unwrap();
    let other_pki = self::pki(other.path());
    let rx = https_receiver(&pki);
    let mut c = RouteConfig::new(RouteKind::Webhook);
    c.url = Some(format!("https://127.0.0.1:{}/hook", rx.addr.port()));
    c.secret_file = Some(secret_file(dir.path(), "hook.secret", "s3cret"));
    c.ca_file = Some(other_pki.ca.clone());
    c.give_up_secs = 1;
    small_retries(&mut c);
    let mut out = outputs::route(&c).unwrap();
    out.write_finding(&finding(0), "").unwrap();
    wait_until("the drop", Duration::from_secs(20), || out.dropped() == 1);
    assert!(rx.got.lock().unwrap().is_empty());
    let e = out.last_error().unwrap_or_default();
    assert!(e.contains("certificate") || e.contains("issuer"), "{e}");

    use std::os::unix::fs::PermissionsExt;
    let secret = c.secret_file.clone().unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = outputs::route(&c).err().unwrap_or_default();
    assert!(e.contains("secret_file") && e.contains("chmod 600"), "{e}");
}

#[test]
fn splunk_hec_batches_events_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let rx = https_receiver(&pki);
    let mut c = RouteConfig::new(RouteKind::SplunkHec);
    c.url = Some(format!(
        "https://localhost:{}/services/collector/event",
        rx.addr.port()
    ));
    c.token_file = Some(secret_file(dir.path(), "hec.token", "11111111-2222"));
    c.index = Some("security".into());
    c.ca_sha256 = vec![
        ringfence_wire::CaPin::of(&pem_der(
            &std::fs::read_to_string(&pki.ca).unwrap(),
            "CERTIFICATE",
        ))
        .to_string(),
    ];
    small_retries(&mut c);
    assert!(c.problems().is_empty(), "{:?}", c.problems());
    let mut out = outputs::route(&c).unwrap();
    for n in 0..250 {
        out.write_finding(&finding(n), "").unwrap();
    }
    let events = || -> Vec<Value> {
        rx.got
            .lock()
            .unwrap()
            .iter()
            .flat_map(|g| {
                serde_json::Deserializer::from_slice(&g.body)
                    .into_iter::<Value>()
                    .map(Result::unwrap)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    wait_until("250 HEC events", Duration::from_secs(30), || {
        events().len() == 250
    });
    let got = rx.got.lock().unwrap().clone();
    assert!(got.len() >= 3, "batched by 100 at most: {}", got.len());
    for g in &got {
        assert_eq!(g.path, "/services/collector/event");
        assert_eq!(g.headers["authorization"], "Splunk 11111111-2222");
    }
    let all = events();
    assert_eq!(all[7]["event"], finding(7));
    assert_eq!(all[7]["index"], "security");
    assert_eq!(all[7]["host"], "web-3");
    assert_eq!(all[7]["sourcetype"], "ringfence:finding");
    assert_eq!(all[7]["time"], 1_796_540_400.0);
    assert_eq!(out.dropped(), 0);
}

// ── rsyslogd ──────────────────────────────────────────────────────────────────────────────

struct Rsyslog {
    child: Child,
    out: PathBuf,
}

impl Rsyslog {
    fn start(dir: &Path, port: u16, tls: Option<&Pki>) -> Rsyslog {
        let out = dir.join("received.log");
        let conf = dir.join("rsyslog.conf");
        let pid = dir.join("rsyslog.pid");
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let mut text = format!("global(workDirectory=\"{}\"", work.display());
        if let Some(p) = tls {
            text += &format!(
                " defaultNetstreamDriver=\"gtls\" defaultNetstreamDriverCAFile=\"{}\" \
                 defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\"",
                p.ca.display(),
                p.cert.display(),
                p.key.display()
            );
        }
        text += ")\n";
        if tls.is_some() {
            text += "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" \
                     streamDriver.authMode=\"anon\")\n";
        } else {
            text += "module(load=\"imtcp\")\n";
        }
        text += &format!(
            "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\n\
             template(name=\"t\" type=\"string\" \
             string=\"%pri% %hostname% %app-name% %msgid% %structured-data% %msg%\\n\")\n\
             *.* action(type=\"omfile\" file=\"{}\" template=\"t\")\n",
            out.display()
        );
        std::fs::write(&conf, text).unwrap();
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(&pid)
            .spawn()
            .expect("rsyslogd (apt-get install rsyslog rsyslog-gnutls)");
        let r = Rsyslog { child, out };
        wait_until("rsyslogd listening", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        r
    }

    fn stop(&mut self) {
        let _ = nix_kill(self.child.id());
        let _ = self.child.wait();
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn nix_kill(pid: u32) -> std::io::Result<()> {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("kill failed"))
    }
}

fn have_rsyslogd() -> bool {
    Command::new("rsyslogd").arg("-v").output().is_ok()
}

fn syslog_round_trip(tls: bool) {
    assert!(
        have_rsyslogd(),
        "rsyslogd is needed: apt-get install rsyslog rsyslog-gnutls (scripts/test.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let port = free_port();
    let mut rsyslog = Rsyslog::start(dir.path(), port, tls.then_some(&pki));
    let mut c = RouteConfig::new(RouteKind::Syslog);
    c.address = Some(format!("127.0.0.1:{port}"));
    c.tls = tls;
    if tls {
        c.ca_file = Some(pki.ca.clone());
    }
    c.queue = 50;
    small_retries(&mut c);
    assert!(c.problems().is_empty(), "{:?}", c.problems());
    let mut out = outputs::route(&c).unwrap();
    let mut hostile = finding(0);
    hostile["process"]["command_line"] = json!("evil\n<13>1 - forged - - - - injected");
    out.write_finding(&hostile, "").unwrap();
    for n in 1..10 {
        out.write_finding(&finding(n), "").unwrap();
    }
    wait_until("10 syslog lines", Duration::from_secs(20), || {
        rsyslog.lines().len() >= 10
    });
    let lines = rsyslog.lines();
    assert_eq!(lines.len(), 10, "{lines:#?}");
    // local0.err = 16*8+3; the hostile newline stayed inside the JSON string.
    assert!(
        lines[0].starts_with(
            "131 web-3 ringfence finding [ringfence@32473 rule_id=\"rule-1\" severity=\"high\"]"
        ),
        "{}",
        lines[0]
    );
    let json_at = lines[3].find('{').unwrap();
    let body: Value = serde_json::from_str(&lines[3][json_at..]).unwrap();
    assert_eq!(body, finding(3));

    // Down for a while: retries, then the queue fills and drops are counted.
    rsyslog.stop();
    let counters = out.counters();
    let before = counters.retries.load(Ordering::Relaxed);
    // A write or two after the stop still go into the dead socket's buffer (TCP syslog has no
    // acknowledgement, RFC 6587); the next ones fail and are retried.
    let mut n = 100;
    wait_until("retries while down", Duration::from_secs(20), || {
        out.write_finding(&finding(n), "").unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(20));
        counters.retries.load(Ordering::Relaxed) >= before + 2
    });
    let dropped_before = out.dropped();
    for n in 1000..1100 {
        out.write_finding(&finding(n), "").unwrap();
    }
    assert!(
        out.dropped() >= dropped_before + 50,
        "dropped {}",
        out.dropped()
    );
    assert!(out.last_error().is_some());

    // Back: delivery resumes.
    std::fs::remove_file(&rsyslog.out).ok();
    let mut again = Rsyslog::start(dir.path(), port, tls.then_some(&pki));
    wait_until("delivery after recovery", Duration::from_secs(30), || {
        again.lines().len() >= 40
    });
    out.write_finding(&finding(9999), "").unwrap();
    wait_until("the newest finding", Duration::from_secs(20), || {
        again.lines().iter().any(|l| l.contains("#9999"))
    });
    assert!(out.last_error().is_none());
    again.stop();
}

#[test]
fn syslog_over_tcp_reaches_rsyslogd_and_recovers() {
    syslog_round_trip(false);
}

#[test]
fn syslog_over_tls_reaches_rsyslogd_and_recovers() {
    syslog_round_trip(true);
}

#[test]
fn ocsf_file_writes_detection_findings_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ocsf/findings.jsonl");
    let mut c = RouteConfig::new(RouteKind::OcsfFile);
    c.path = Some(path.clone());
    c.rotate_bytes = 64 * 1024;
    c.keep = 2;
    assert!(c.problems().is_empty(), "{:?}", c.problems());
    let mut out = outputs::route(&c).unwrap();
    for n in 0..200 {
        out.write_finding(&finding(n), "").unwrap();
    }
    out.close();
    assert_eq!(out.dropped(), 0);
    let first = std::fs::read_to_string(&path).unwrap();
    let line: Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_eq!(line["class_uid"], 2004);
    assert_eq!(line["metadata"]["version"], "1.3.0");
    assert!(path.with_extension("jsonl.1").exists());
    assert!(path.with_extension("jsonl.2").exists());
    assert!(!path.with_extension("jsonl.3").exists());
    for p in [path.clone(), path.with_extension("jsonl.1")] {
        assert!(std::fs::metadata(&p).unwrap().len() <= 64 * 1024);
    }
}

// ── through the agent's pipeline ──────────────────────────────────────────────────────────

mod common;

/// A detector that makes every event a finding.
struct EveryEvent;

impl ringfence_agent::Detector for EveryEvent {
    fn name(&self) -> &str {
        "every-event"
    }
    fn on_event(&mut self, e: &ringfence_event::Event, emit: &mut dyn FnMut(Value)) {
        let pid = e.process.as_ref().map_or(0, |p| p.pid);
        let mut f = e.to_ecs();
        f["event"]["kind"] = json!("alert");
        f["rule"] = json!({"id": format!("every-{pid}"), "name": "Every Event"});
        f["ringfence"] = json!({"finding": {"level": "medium"}});
        emit(f);
    }
}

struct Replay(Vec<ringfence_event::Event>);

impl ringfence_sensor::Source for Replay {
    fn name(&self) -> &'static str {
        "replay"
    }
    fn run(
        self: Box<Self>,
        out: ringfence_sensor::EventSender,
        stop: ringfence_sensor::StopSignal,
    ) -> Result<(), ringfence_sensor::SourceError> {
        for e in self.0 {
            out.send(e);
        }
        // Stay, as a host source does: an agent whose sources all ended only idles.
        while !stop.is_stopped() {
            stop.sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Output for Lines {
    fn name(&self) -> String {
        "lines".into()
    }
    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        self.0.lock().unwrap().push(line.to_owned());
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_agent_routes_findings_and_reports_an_outputs_drops_as_a_health_finding() {
    use ringfence_event::{Event, EventKind, Process, SourceKind, Timestamp};
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let ocsf = dir.path().join("findings.ocsf.jsonl");
    let dead_port = free_port();
    let pki = pki(dir.path());
    let secret = secret_file(dir.path(), "hook.secret", "s3cret");
    let toml = format!(
        "[agent]\nmode = \"driverless\"\nstats_interval_secs = 1\n\n\
         [sources]\nproc_connector = false\naudit = false\nfanotify = false\nlogs = false\n\n\
         [findings]\ngroup_window_secs = 0\n\n\
         [[outputs]]\ntype = \"ocsf_file\"\npath = \"{}\"\n\n\
         [[outputs]]\ntype = \"webhook\"\nurl = \"https://127.0.0.1:{dead_port}/hook\"\n\
         secret_file = \"{}\"\nca_file = \"{}\"\nqueue = 2\nretry_min_ms = 20\n\
         retry_max_ms = 50\ngive_up_secs = 1\n",
        ocsf.display(),
        secret.display(),
        pki.ca.display()
    );
    let config = ringfence_agent::Config::parse(&toml, Path::new("agent.toml")).unwrap();
    let events: Vec<Event> = (0..20)
        .map(|i| {
            let mut e = Event::new(EventKind::ProcessExec, SourceKind::Ebpf, Timestamp::now());
            e.process = Some(Process {
                pid: 4_200_000 + i,
                executable: Some("/usr/bin/true".into()),
                command_line: Some(format!("true {i}")),
                ..Process::default()
            });
            e
        })
        .collect();
    let lines = Lines::default();
    let agent = ringfence_agent::Agent::new(config)
        .with_outputs(vec![Box::new(lines.clone())])
        .with_detector(Box::new(EveryEvent))
        .with_source(SourceKind::Ebpf, Box::new(Replay(events)));
    let stop = ringfence_sensor::StopSignal::new();
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || agent.run(stop2));
    let found = || {
        lines
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("ringfence-health-output"))
    };
    let end = Instant::now() + Duration::from_secs(30);
    while !found() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    if !found() {
        stop.stop();
        let summary = handle.join().unwrap();
        panic!(
            "no output health finding: {}\n{:#?}",
            summary.render(),
            lines.0.lock().unwrap()
        );
    }
    stop.stop();
    let summary = handle.join().unwrap();
    let health: Vec<Value> = lines
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("ringfence-health-output"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let message = health[0].to_string();
    assert!(
        message.contains(&format!("webhook https://127.0.0.1:{dead_port}/hook"))
            && message.contains("dropped"),
        "{}",
        health[0]
    );
    assert!(summary.output_drops >= 17, "{}", summary.render());
    // The OCSF file has every finding (and the health findings after them).
    let written = std::fs::read_to_string(&ocsf).unwrap();
    let ocsf_rules: Vec<String> = written
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| {
            v["finding_info"]["analytic"]["uid"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    for i in 0..20 {
        assert!(
            ocsf_rules.contains(&format!("every-{}", 4_200_000 + i)),
            "{ocsf_rules:?}"
        );
    }
    assert!(ocsf_rules.iter().any(|r| r == "ringfence-health-output"));
}

// ── figures (run by hand: `cargo test -p ringfence-agent --test outputs measure -- --ignored --nocapture`) ──

/// Push `n` findings into `out` and return findings/s until `arrived` says all of them did.
fn throughput(out: &mut outputs::Queued, n: usize, arrived: impl Fn() -> usize) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        out.write_finding(&finding(i), "").unwrap();
    }
    wait_until("all findings to arrive", Duration::from_secs(300), || {
        arrived() >= n
    });
    assert_eq!(out.dropped(), 0);
    n as f64 / start.elapsed().as_secs_f64()
}

#[test]
#[ignore = "figures for the README; takes about a minute"]
fn measure_output_throughput_and_a_receiver_down() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let rx = https_receiver(&pki);
    let big = |c: &mut RouteConfig| c.queue = 1_000_000;

    let mut c = RouteConfig::new(RouteKind::Webhook);
    c.url = Some(format!("https://127.0.0.1:{}/hook", rx.addr.port()));
    c.secret_file = Some(secret_file(dir.path(), "hook.secret", "s3cret"));
    c.ca_file = Some(pki.ca.clone());
    big(&mut c);
    let mut out = outputs::route(&c).unwrap();
    let webhook = throughput(&mut out, 5_000, || rx.got.lock().unwrap().len());
    drop(out);
    println!("webhook: {webhook:.0} findings/s (one HTTPS request each, keep-alive)");

    rx.got.lock().unwrap().clear();
    let mut c = RouteConfig::new(RouteKind::SplunkHec);
    c.url = Some(format!(
        "https://127.0.0.1:{}/services/collector/event",
        rx.addr.port()
    ));
    c.token_file = Some(secret_file(dir.path(), "hec.token", "t"));
    c.ca_file = Some(pki.ca.clone());
    big(&mut c);
    let mut out = outputs::route(&c).unwrap();
    // Counted by the output (a 2xx from the receiver), not by re-reading every body per poll.
    let counters = out.counters();
    let hec = throughput(&mut out, 50_000, || {
        counters.sent.load(Ordering::Relaxed) as usize
    });
    drop(out);
    println!("splunk_hec: {hec:.0} findings/s (100 per request)");

    for tls in [false, true] {
        let sub = dir.path().join(if tls { "tls" } else { "tcp" });
        std::fs::create_dir_all(&sub).unwrap();
        let port = free_port();
        let rsyslog = Rsyslog::start(&sub, port, tls.then_some(&pki));
        let mut c = RouteConfig::new(RouteKind::Syslog);
        c.address = Some(format!("127.0.0.1:{port}"));
        c.tls = tls;
        c.ca_file = Some(pki.ca.clone());
        big(&mut c);
        let mut out = outputs::route(&c).unwrap();
        let rate = throughput(&mut out, 50_000, || rsyslog.lines().len());
        println!(
            "syslog {}: {rate:.0} findings/s (into rsyslogd, counted in its output file)",
            if tls { "TLS" } else { "TCP" }
        );
    }

    let mut c = RouteConfig::new(RouteKind::OcsfFile);
    let path = dir.path().join("ocsf.jsonl");
    c.path = Some(path.clone());
    big(&mut c);
    let mut out = outputs::route(&c).unwrap();
    let counters = out.counters();
    let ocsf = throughput(&mut out, 50_000, || {
        counters.sent.load(Ordering::Relaxed) as usize
    });
    println!("ocsf_file: {ocsf:.0} findings/s");

    // A receiver down for 10 s (a minute scaled by 1/6, the queue too: 10,000 → 1,666) while
    // findings come at 500/s; then up again.
    rx.got.lock().unwrap().clear();
    let mut c = RouteConfig::new(RouteKind::Webhook);
    c.url = Some(format!("https://127.0.0.1:{}/hook", rx.addr.port()));
    c.secret_file = Some(secret_file(dir.path(), "hook2.secret", "s3cret"));
    c.ca_file = Some(pki.ca.clone());
    c.queue = 1_666;
    let mut out = outputs::route(&c).unwrap();
    let counters = out.counters();
    rx.status.store(503, Ordering::Release);
    let start = Instant::now();
    let mut pushed = 0usize;
    let mut blocked_max = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(10) {
        for _ in 0..50 {
            let t = Instant::now();
            out.write_finding(&finding(pushed), "").unwrap();
            blocked_max = blocked_max.max(t.elapsed());
            pushed += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let retries = counters.retries.load(Ordering::Relaxed);
    let dropped_down = out.dropped();
    rx.status.store(200, Ordering::Release);
    let up = Instant::now();
    wait_until("the backlog to drain", Duration::from_secs(120), || {
        rx.got.lock().unwrap().len() as u64 + out.dropped() >= pushed as u64
    });
    println!(
        "webhook down 10 s at 500 findings/s, queue 1,666: {pushed} pushed, {dropped_down} dropped \
         (queue full), {retries} retries (backoff 0.5 s doubling to 30 s), {} delivered; backlog \
         delivered {:.1} s after the receiver came back; longest hand-over to the queue {:?}",
        rx.got.lock().unwrap().len(),
        up.elapsed().as_secs_f64(),
        blocked_max
    );
}
