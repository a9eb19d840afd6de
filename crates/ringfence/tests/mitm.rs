//! A man in the middle of the fleet link, on a real network path: the console runs in a
//! network namespace of its own, behind a veth pair, and the agent's link (the real link
//! code, in this process) dials it by its address. An nftables rule on the host diverts that
//! traffic to a proxy the test controls, the way an attacker on a router or a compromised
//! gateway would. The proxy, in turn:
//! 1. terminates TLS itself with a certificate from another CA and answers with an unsigned
//!    kill order and a forged `{"accepted": N}`;
//! 2. relays honestly (the agent checks in and uploads its findings), recording the console's
//!    bytes;
//! 3. replays a recorded answer of the console to a new connection;
//! 4. relays the handshake and then injects its own answer (an unsigned order and a forged
//!    acknowledgement) into the encrypted stream;
//! 5. relays honestly again.
//!
//! Each attack must be refused and reported (the link's notices name the impostor's CA), no
//! order may reach the responder, and every finding must reach the console in the end.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ringfence_agent::fleet::enrollment::{EnrollAs, enroll};
use ringfence_agent::fleet::link::{self, LinkOptions};
use ringfence_agent::fleet::orders::{Acceptance, OrderRunner, STATE_FILE};
use ringfence_agent::fleet::{Enrollment, Telemetry};
use ringfence_sensor::StopSignal;
use ringfence_wire::tls::{ConsoleCa, ConsoleTls};
use ringfence_wire::{CaPin, Client, Label, OrderKey, Tags, Trust};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The console's port inside its namespace.
const CONSOLE_PORT: u16 = 8650;

/// What the proxy does with the next connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Impostor = 0,
    Relay = 1,
    Replay = 2,
    Inject = 3,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        match v {
            0 => Mode::Impostor,
            2 => Mode::Replay,
            3 => Mode::Inject,
            _ => Mode::Relay,
        }
    }
}

/// The proxy's state shared with the test.
struct Proxy {
    mode: AtomicU8,
    /// Told of every mode change: open connections close, so the next request meets the new
    /// mode (the link keeps its connection alive between check-ins).
    changed: tokio::sync::watch::Sender<u8>,
    /// Whether a connection already claimed the recording.
    recording: std::sync::atomic::AtomicBool,
    /// Connections handled, per mode.
    connections: [AtomicUsize; 4],
    /// The console's side of the first relayed connection: what a replay sends.
    recorded: std::sync::Mutex<Vec<u8>>,
    upstream: std::net::SocketAddr,
    impostor: Arc<ringfence_wire::tls::ServerConfig>,
}

impl Proxy {
    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
        self.changed.send_replace(mode as u8);
    }

    fn seen(&self, mode: Mode) -> usize {
        self.connections[mode as usize].load(Ordering::SeqCst)
    }
}

/// A check-in answer carrying an unsigned kill order, and a forged upload acknowledgement.
fn forged_answer() -> Vec<u8> {
    let body = serde_json::json!({
        "content": null, "next_checkin_ms": 1, "jitter_ms": 0, "accepted": 1_000_000,
        "orders": [{"id": 99, "requested_by": "mallory", "reason": "mitm",
                    "action": {"kind": "kill", "pid": 1}}]
    })
    .to_string();
    let mut r = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body.as_bytes());
    r
}

async fn run_proxy(listener: tokio::net::TcpListener, proxy: Arc<Proxy>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let mut changed = proxy.changed.subscribe();
            changed.mark_unchanged();
            let mode = Mode::from_u8(proxy.mode.load(Ordering::SeqCst));
            proxy.connections[mode as usize].fetch_add(1, Ordering::SeqCst);
            let serve = async {
                match mode {
                    Mode::Impostor => impostor(client, &proxy).await,
                    Mode::Relay | Mode::Inject => relay(client, &proxy, mode).await,
                    Mode::Replay => replay(client, &proxy).await,
                }
            };
            tokio::select! {
                () = serve => {}
                _ = changed.changed() => {}
            }
        });
    }
}

/// TLS with the impostor's own certificate, answering every request with the forged answer.
async fn impostor(client: TcpStream, proxy: &Proxy) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&proxy.impostor));
    let Ok(mut tls) = acceptor.accept(client).await else {
        return; // the agent refused the certificate: what should happen
    };
    let mut buf = vec![0_u8; 16 * 1024];
    while let Ok(n) = tls.read(&mut buf).await {
        if n == 0 || tls.write_all(&forged_answer()).await.is_err() {
            return;
        }
    }
}

/// Relay both ways, recording the console's side of the first connection. In `Inject` mode,
/// once the console's handshake flight has passed and the agent has sent its request, the
/// console's answer is replaced with the forged one, wrapped as a TLS application-data
/// record the attacker could not encrypt.
async fn relay(client: TcpStream, proxy: &Proxy, mode: Mode) {
    let Ok(upstream) = TcpStream::connect(proxy.upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let client_chunks = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&client_chunks);
    let up = async move {
        let mut buf = vec![0_u8; 16 * 1024];
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 || uw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            counted.fetch_add(1, Ordering::SeqCst);
        }
        let _ = uw.shutdown().await;
    };
    let record = mode == Mode::Relay && !proxy.recording.swap(true, Ordering::SeqCst);
    let down = async move {
        let mut buf = vec![0_u8; 16 * 1024];
        let mut server_chunks = 0;
        while let Ok(n) = ur.read(&mut buf).await {
            if n == 0 {
                break;
            }
            server_chunks += 1;
            if mode == Mode::Inject
                && server_chunks > 1
                && client_chunks.load(Ordering::SeqCst) >= 2
            {
                let forged = forged_answer();
                let mut record = vec![0x17, 0x03, 0x03];
                record.extend_from_slice(&(forged.len() as u16).to_be_bytes());
                record.extend_from_slice(&forged);
                let _ = cw.write_all(&record).await;
                break;
            }
            if record {
                proxy.recorded.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Answer a new connection with the console's recorded bytes.
async fn replay(mut client: TcpStream, proxy: &Proxy) {
    let recorded = proxy.recorded.lock().unwrap().clone();
    let mut buf = vec![0_u8; 16 * 1024];
    let _ = client.read(&mut buf).await;
    let _ = client.write_all(&recorded).await;
    let _ = client.read(&mut buf).await;
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (this test needs iproute2 and nftables, as scripts/test.sh installs)",
                args[0]
            )
        });
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespace, the veth pair and the diversion rule; removed on drop.
struct Path {
    netns: String,
    table: String,
    /// The address the agent dials (diverted) and the one the proxy and operator use.
    dialled: String,
    direct: String,
}

impl Path {
    fn build(proxy_port: u16) -> Path {
        let id = std::process::id();
        let net = 10 + (id % 200);
        let netns = format!("rfmitm{id}");
        let host_if = format!("rfh{id}");
        let ns_if = format!("rfn{id}");
        let path = Path {
            netns: netns.clone(),
            table: format!("rfmitm{id}"),
            dialled: format!("10.213.{net}.2"),
            direct: format!("10.213.{net}.3"),
        };
        sh(&["ip", "netns", "add", &netns]);
        sh(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        sh(&["ip", "link", "set", &ns_if, "netns", &netns]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("10.213.{net}.1/24"),
            "dev",
            &host_if,
        ]);
        sh(&["ip", "link", "set", &host_if, "up"]);
        let in_ns = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", &netns];
            all.extend_from_slice(args);
            sh(&all);
        };
        in_ns(&["ip", "link", "set", "lo", "up"]);
        in_ns(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", path.dialled),
            "dev",
            &ns_if,
        ]);
        in_ns(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", path.direct),
            "dev",
            &ns_if,
        ]);
        in_ns(&["ip", "link", "set", &ns_if, "up"]);
        // The attacker's diversion: locally made connections to the console's address go to
        // the proxy instead.
        let rules = format!(
            "table ip {table} {{\n chain out {{\n  type nat hook output priority -100;\n  \
             ip daddr {dialled} tcp dport {CONSOLE_PORT} redirect to :{proxy_port}\n }}\n}}\n",
            table = path.table,
            dialled = path.dialled,
        );
        let mut nft = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nft (nftables)");
        std::io::Write::write_all(nft.stdin.as_mut().unwrap(), rules.as_bytes()).unwrap();
        drop(nft.stdin.take());
        assert!(nft.wait().unwrap().success(), "nft refused {rules}");
        path
    }
}

impl Drop for Path {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .status();
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
    }
}

/// What the test needs from the console it started in the namespace.
struct ConsoleHandle {
    pin: CaPin,
    operator_token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ConsoleHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start the console on a thread that has entered the namespace: its listening socket, and
/// every connection it accepts, live there.
fn console_in_namespace(path: &Path, dir: &std::path::Path) -> ConsoleHandle {
    let netns = std::fs::File::open(format!("/run/netns/{}", path.netns)).unwrap();
    let names = vec![path.dialled.clone(), path.direct.clone()];
    let dir = dir.to_owned();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let tls_dir = dir.join("tls");
            let (tls, _) = ConsoleTls::load_or_create(&tls_dir, &names).unwrap();
            let ca = Arc::new(ConsoleCa::load(&tls_dir).unwrap());
            let db = ringfence_console::Db::open(&format!(
                "sqlite:{}",
                dir.join("console.db").display()
            ))
            .await
            .unwrap();
            let mut config = ringfence_console::Config::new(dir.join("content"));
            config.client_ca = Some(Arc::clone(&ca));
            config.checkin_interval_ms = 500;
            config.checkin_jitter_ms = 0;
            let state = ringfence_console::AppState::new(
                db,
                Arc::new(ringfence_console::SystemClock),
                config,
            )
            .await
            .unwrap();
            let token = ringfence_console::auth::create_operator(&state, "admin", "pw-not-used")
                .await
                .unwrap();
            let running = ringfence_console::serve_tls(
                state,
                format!("0.0.0.0:{CONSOLE_PORT}").parse().unwrap(),
                Duration::from_secs(5),
                tls.server_config(Some(ca.cert())).unwrap(),
            )
            .await
            .unwrap();
            ready_tx.send((tls.pin(), token)).unwrap();
            let _ = stop_rx.await;
            let _ = running.shutdown().await;
        });
    });
    let (pin, operator_token) = ready_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the console in the namespace did not start");
    ConsoleHandle {
        pin,
        operator_token,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// Wait until `done` holds, failing the test after a minute.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_man_in_the_middle_is_refused_reported_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let proxy_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = proxy_listener.local_addr().unwrap().port();
    let path = Path::build(proxy_port);
    let console = console_in_namespace(&path, &dir.path().join("console"));
    let console_url = format!("https://{}:{CONSOLE_PORT}", path.dialled);
    let trust = Trust::Pinned(vec![console.pin]);

    // The impostor: a console-looking certificate for the same address, from another CA.
    let (impostor_tls, _) = ConsoleTls::load_or_create(
        &dir.path().join("impostor"),
        std::slice::from_ref(&path.dialled),
    )
    .unwrap();
    let impostor_pin = impostor_tls.pin();
    let proxy = Arc::new(Proxy {
        mode: AtomicU8::new(Mode::Relay as u8),
        changed: tokio::sync::watch::Sender::new(Mode::Relay as u8),
        recording: std::sync::atomic::AtomicBool::new(false),
        connections: Default::default(),
        recorded: std::sync::Mutex::new(Vec::new()),
        upstream: format!("{}:{CONSOLE_PORT}", path.direct).parse().unwrap(),
        impostor: impostor_tls.server_config(None).unwrap(),
    });
    tokio::spawn(run_proxy(proxy_listener, Arc::clone(&proxy)));

    // The operator talks to the console over the path the attacker does not hold.
    let operator = Client::new(&format!("https://{}:{CONSOLE_PORT}", path.direct), &trust).unwrap();
    let minted: serde_json::Value = operator
        .post_json(
            "/api/v1/enrollment-tokens",
            Some(&console.operator_token),
            &serde_json::json!({"max_uses": 1}),
        )
        .await
        .unwrap();

    // The agent enrolls through the path while the proxy still relays honestly.
    let state_dir = dir.path().join("agent");
    let content_dir = state_dir.join("content");
    std::fs::create_dir_all(&content_dir).unwrap();
    let state_file = state_dir.join("fleet.json");
    let client = Client::new(&console_url, &trust).unwrap();
    let enrollment = enroll(
        &client,
        EnrollAs {
            console: console_url.clone(),
            ca_pins: vec![console.pin],
            token: minted["token"].as_str().unwrap().to_owned(),
            hostname: Label::try_from("web-1").unwrap(),
            agent_version: Label::try_from("0.1.0").unwrap(),
            tags: Tags::default(),
            state_file: state_file.clone(),
            crashes_reported: None,
        },
    )
    .await
    .unwrap();
    assert!(
        enrollment.tls.is_some(),
        "no client certificate at enrollment"
    );

    let telemetry = Arc::new(Telemetry::new(100));
    let finding = |i: usize| serde_json::json!({"rule": {"id": format!("mitm-finding-{i}")}});
    for i in 0..3 {
        telemetry.finding(&finding(i));
    }
    let audit_log = dir.path().join("response-audit.jsonl");
    let orders = OrderRunner::new(
        Acceptance {
            accept_orders: true,
            response_enabled: true,
            key: Some(OrderKey::generate().unwrap().pin()),
        },
        ringfence_response::ResponseConfig {
            dry_run: true,
            audit_log: audit_log.clone(),
            ..ringfence_response::ResponseConfig::default()
        },
        state_dir.join(STATE_FILE),
    );
    let opts = LinkOptions {
        console: console_url.clone(),
        enroll_token: None,
        hostname: Label::try_from("web-1").unwrap(),
        agent_version: Label::try_from("0.1.0").unwrap(),
        tags: Tags::default(),
        state_file: state_file.clone(),
        content_dir: content_dir.clone(),
        max_bundle_bytes: 1 << 20,
        content_version: Box::new(|| 0),
        content_label: Box::new(|| "none".to_owned()),
        supervisor_crashes: None,
        lkg_fallbacks: 0,
        release_fallbacks: 0,
        releases: None,
        orders,
        ca_pins: vec![console.pin],
        content: ringfence_agent::content::config::ContentSection::default(),
        alarm_after: Duration::from_secs(3600),
        trust: trust.clone(),
        fallbacks: Vec::new(),
        tuning: Default::default(),
    };

    // 1. The impostor first: the link starts against it.
    proxy.set(Mode::Impostor);
    let stop = StopSignal::new();
    let phases = async {
        until("the agent to meet the impostor twice", || {
            proxy.seen(Mode::Impostor) >= 2
        })
        .await;
        assert_eq!(
            telemetry.pending(),
            3,
            "findings left the queue for the impostor"
        );

        // 2. Honest relay: the agent checks in and its findings reach the console.
        proxy.set(Mode::Relay);
        until("the findings to reach the console", || {
            telemetry.pending() == 0
        })
        .await;
        until("a recorded answer", || {
            !proxy.recorded.lock().unwrap().is_empty()
        })
        .await;

        // 3. Replay and 4. injection, with new findings waiting.
        for i in 3..5 {
            telemetry.finding(&finding(i));
        }
        proxy.set(Mode::Replay);
        let before = proxy.seen(Mode::Replay);
        until("a replayed answer", || proxy.seen(Mode::Replay) > before).await;
        proxy.set(Mode::Inject);
        let before = proxy.seen(Mode::Inject);
        until("an injected answer", || proxy.seen(Mode::Inject) > before).await;
        // Let the injected connection fail before relaying honestly again.
        tokio::time::sleep(Duration::from_millis(500)).await;

        // 5. Honest again: everything queued arrives.
        proxy.set(Mode::Relay);
        until("the queued findings to reach the console", || {
            telemetry.pending() == 0
        })
        .await;
        stop.stop();
    };
    let (report, ()) = tokio::join!(
        link::run(opts, client, Arc::clone(&telemetry), stop.clone()),
        phases
    );

    // Refused: the impostor's certificate (named by its pin), the replay, the injection.
    assert!(report.failed_checkins >= 3, "{report:?}");
    let notices = telemetry.take_notices().join("\n");
    eprintln!("{report:?}\n{notices}");
    let interceptions: Vec<&str> = notices
        .lines()
        .filter(|l| l.contains("possible interception of the fleet link"))
        .collect();
    assert!(
        interceptions
            .iter()
            .any(|l| l.contains(&impostor_pin.to_string()) && l.contains("not pinned")),
        "the impostor's CA is not named: {notices}"
    );
    // The replay and the injection fail the same way (a record that does not decrypt, in the
    // handshake or after it, as the timing falls), and the same notice is given once a
    // minute: at least the impostor's and one tampering notice.
    assert!(
        interceptions.len() >= 2
            && interceptions.iter().any(|l| l.contains("decrypt")
                || l.contains("handshake")
                || l.contains("signature")),
        "the impostor and the tampering are reported: {notices}"
    );
    // No order reached the responder, and the identity was kept.
    assert!(!audit_log.exists(), "an order reached the responder");
    let kept = Enrollment::load(&state_file).unwrap().unwrap();
    assert_eq!(kept.agent_id, enrollment.agent_id);
    // Every finding reached the console, each exactly once.
    let stored: serde_json::Value = operator
        .get_json("/api/v1/findings", Some(&console.operator_token))
        .await
        .unwrap();
    let stored = stored.to_string();
    for i in 0..5 {
        let id = format!("mitm-finding-{i}");
        let row = format!("\"rule\":\"{id}\"");
        assert_eq!(stored.matches(&row).count(), 1, "{id} in {stored}");
    }
    drop(console);
    drop(path);
}
