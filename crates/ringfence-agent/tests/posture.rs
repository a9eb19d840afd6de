//! Posture checks against real parts: hashes made by openssl and mkpasswd, sshd's own `-T`,
//! Redis, memcached, MariaDB and PostgreSQL servers started here on free ports, and a real
//! package install and removal for the file-integrity baseline. A test whose server package is
//! absent says SKIP loudly on stderr (scripts/test.sh installs them all).
#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking, as #[test] functions may (clippy.toml)"
)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringfence_agent::posture::{self, CpuBudget, PostureFinding, fim, services, shadow, sshd};
use ringfence_agent::{Agent, Config, ModeChoice};
use ringfence_sensor::StopSignal;

mod common;

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn have(binary: &str) -> bool {
    let found = Path::new(binary).exists();
    if !found {
        eprintln!("SKIP: {binary} is not installed (scripts/test.sh installs it)");
    }
    found
}

#[test]
fn weak_empty_and_uid0_accounts_are_found_in_real_hashes() {
    if !have("/usr/bin/mkpasswd") || !have("/usr/bin/openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let openssl = |kind: &str, pw: &str| run_ok(Command::new("openssl").args(["passwd", kind, pw]));
    let yescrypt = |pw: &str| run_ok(Command::new("mkpasswd").args(["-m", "yescrypt", pw]));
    let strong = "Tr0ub4dor&3-correct-horse";
    let accounts = [
        ("alice", openssl("-6", "password")),
        ("bob", yescrypt("123456")),
        ("carol", openssl("-5", "qwerty")),
        ("dave", openssl("-1", "letmein")),
        ("gina", openssl("-6", "gina")),
        ("erin", openssl("-6", strong)),
        ("frank", yescrypt(strong)),
        ("hal", openssl("-5", strong)),
        ("ivan", openssl("-1", strong)),
        ("nopass", String::new()),
        ("locked", "!".to_owned() + &openssl("-6", "password")),
    ];
    let shadow_text: String = accounts
        .iter()
        .map(|(u, h)| format!("{u}:{h}:19000:0:99999:7:::\n"))
        .collect();
    let passwd_text = "root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n\
                       alice:x:1000:1000::/home/alice:/bin/bash\n";
    std::fs::write(dir.path().join("shadow"), shadow_text).unwrap();
    std::fs::write(dir.path().join("passwd"), passwd_text).unwrap();
    let opts = shadow::Options {
        shadow: dir.path().join("shadow"),
        passwd: dir.path().join("passwd"),
        common_passwords: 100,
    };
    let out = shadow::check(&opts, &CpuBudget::unlimited(Duration::from_secs(600))).unwrap();
    let mut got: Vec<(&str, String)> = out
        .findings
        .iter()
        .map(|f| (f.rule_id, f.subject.clone()))
        .collect();
    got.sort();
    let want: Vec<(&str, String)> = [
        ("ringfence-posture-empty-password", "user nopass"),
        ("ringfence-posture-uid0-duplicate", "user toor"),
        ("ringfence-posture-weak-password", "user alice"),
        ("ringfence-posture-weak-password", "user bob"),
        ("ringfence-posture-weak-password", "user carol"),
        ("ringfence-posture-weak-password", "user dave"),
        ("ringfence-posture-weak-password", "user gina"),
    ]
    .iter()
    .map(|(r, s)| (*r, (*s).to_owned()))
    .collect();
    assert_eq!(got, want);
    let bob = out
        .findings
        .iter()
        .find(|f| f.subject == "user bob")
        .unwrap();
    assert_eq!(bob.details["hash_type"], "yescrypt");
    assert_eq!(bob.details["list_rank"], 1);
    // The password itself is never in a finding.
    for f in &out.findings {
        let text = f
            .to_json(None, ringfence_event::Timestamp::now())
            .to_string();
        assert!(
            !text.contains("\"password\"") && !text.contains("qwerty"),
            "{text}"
        );
    }
    assert_eq!(out.stats.checked, 9);
    assert_eq!(out.stats.unchecked, 0);
    // Time per account (user name + 100 common passwords), from the strong accounts that try
    // every candidate: printed for the README.
    let strong_only: String = accounts
        .iter()
        .filter(|(u, _)| ["erin", "frank", "hal", "ivan"].contains(u))
        .map(|(u, h)| format!("{u}:{h}:19000:0:99999:7:::\n"))
        .collect();
    std::fs::write(dir.path().join("shadow"), strong_only).unwrap();
    let timed = shadow::check(&opts, &CpuBudget::unlimited(Duration::from_secs(600))).unwrap();
    assert!(timed.findings.len() == 1, "{:?}", timed.findings); // toor, from passwd
    for (kind, s) in &timed.stats.per_kind {
        eprintln!(
            "FIGURE weak-password check: {kind}: {} ms per account ({} candidates)",
            s.millis_per_account(),
            s.candidates_tried / s.accounts.max(1)
        );
    }
}

#[test]
fn the_cpu_budget_stops_the_check_and_counts_what_is_left() {
    if !have("/usr/bin/mkpasswd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let h = run_ok(Command::new("mkpasswd").args(["-m", "yescrypt", "not-on-any-list-42"]));
    let text: String = (0..5)
        .map(|i| format!("u{i}:{h}:1:0:99999:7:::\n"))
        .collect();
    std::fs::write(dir.path().join("shadow"), text).unwrap();
    std::fs::write(dir.path().join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    let opts = shadow::Options {
        shadow: dir.path().join("shadow"),
        passwd: dir.path().join("passwd"),
        common_passwords: 100,
    };
    // 50 ms of CPU: less than one account's 101 yescrypt verifications.
    let out = shadow::check(&opts, &CpuBudget::unlimited(Duration::from_millis(50))).unwrap();
    assert!(out.stats.unchecked >= 4, "{:?}", out.stats);
    assert_eq!(out.stats.checked + out.stats.unchecked, 5);
}

#[test]
fn sshd_effective_configuration_from_sshd_itself() {
    if !have("/usr/sbin/sshd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("host_ed25519");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
    );
    let config = dir.path().join("sshd_config");
    // Privilege separation needs /run/sshd; a host without a running sshd may lack it.
    std::fs::create_dir_all("/run/sshd").unwrap();
    std::fs::write(
        &config,
        format!(
            "HostKey {}\nPermitRootLogin yes\nPasswordAuthentication yes\nPermitEmptyPasswords yes\n",
            key.display()
        ),
    )
    .unwrap();
    let cfg = sshd::sshd_t(Path::new("/usr/sbin/sshd"), &config).unwrap();
    assert_eq!(cfg.source, "sshd -T");
    let mut ids: Vec<&str> = sshd::findings(&cfg).iter().map(|f| f.rule_id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "ringfence-posture-ssh-empty-passwords",
            "ringfence-posture-ssh-password-exposed",
            "ringfence-posture-ssh-root-password"
        ]
    );
    std::fs::write(
        &config,
        format!(
            "HostKey {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nListenAddress 127.0.0.1\n",
            key.display()
        ),
    )
    .unwrap();
    let cfg = sshd::sshd_t(Path::new("/usr/sbin/sshd"), &config).unwrap();
    assert!(sshd::findings(&cfg).is_empty());
}

/// A server started by a test, killed when dropped.
struct Server(Child, &'static str);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    match TcpListener::bind("0.0.0.0:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("no free port: {e}"),
    }
}

fn wait_listening(port: u16, server: &mut Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("{} exited before listening on {port}: {status}", server.1);
        }
        assert!(
            Instant::now() < deadline,
            "{} never listened on {port}",
            server.1
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn(name: &'static str, cmd: &mut Command) -> Server {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    Server(child, name)
}

fn findings_on(port: u16) -> Vec<PostureFinding> {
    let out = services::check(Path::new("/proc"));
    out.findings
        .into_iter()
        .filter(|f| {
            f.details["listen"]
                .as_str()
                .is_some_and(|l| l.ends_with(&format!(":{port}")))
        })
        .collect()
}

/// A temporary directory other users can enter (servers drop root).
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    if let Err(e) = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)) {
        panic!("{}: {e}", dir.path().display());
    }
    dir
}

#[test]
fn redis_without_requirepass_is_found_and_with_it_is_not() {
    if !have("/usr/bin/redis-server") {
        return;
    }
    let dir = open_tempdir();
    let (open, locked) = (free_port(), free_port());
    let redis = |port: u16, extra: &[&str]| {
        let mut c = Command::new("/usr/bin/redis-server");
        c.args([
            "--port",
            &port.to_string(),
            "--bind",
            "0.0.0.0",
            "--save",
            "",
            "--dir",
        ])
        .arg(dir.path())
        .args(["--protected-mode", "no"])
        .args(extra);
        let mut s = spawn("redis-server", &mut c);
        wait_listening(port, &mut s);
        s
    };
    let protected = free_port();
    let _a = redis(open, &[]);
    let _b = redis(locked, &["--requirepass", "s3cret-enough"]);
    let _c = redis(protected, &["--protected-mode", "yes"]);
    let found = findings_on(open);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].details["service"], "redis");
    assert_eq!(found[0].level, posture::Level::Critical);
    assert!(findings_on(locked).is_empty());
    // Protected mode refuses remote clients while no password is set: a weakness in waiting.
    let found = findings_on(protected);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].level, posture::Level::Medium);
}

#[test]
fn memcached_answering_stats_is_found() {
    if !have("/usr/bin/memcached") {
        return;
    }
    let port = free_port();
    let mut s = spawn(
        "memcached",
        Command::new("/usr/bin/memcached")
            .args(["-u", "memcache", "-l", "0.0.0.0", "-U", "0", "-p"])
            .arg(port.to_string()),
    );
    wait_listening(port, &mut s);
    let found = findings_on(port);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].details["service"], "memcached");
}

#[test]
fn mariadb_root_without_password_is_found_and_with_one_is_not() {
    if !have("/usr/sbin/mariadbd") {
        return;
    }
    let dir = open_tempdir();
    let data = dir.path().join("data");
    run_ok(
        Command::new("/usr/bin/mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=mysql",
                "--auth-root-authentication-method=normal",
            ])
            .arg(format!("--datadir={}", data.display()))
            .stdin(Stdio::null()),
    );
    let port = free_port();
    // In the data directory: mariadbd runs as mysql, which owns it.
    let sock = data.join("sock");
    let mut s = spawn(
        "mariadbd",
        Command::new("/usr/sbin/mariadbd")
            .args([
                "--no-defaults",
                "--user=mysql",
                "--bind-address=0.0.0.0",
                "--skip-log-bin",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--pid-file={}", data.join("pid").display()))
            .arg(format!("--port={port}")),
    );
    wait_listening(port, &mut s);
    let found = findings_on(port);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].details["service"], "mysql");
    assert_eq!(found[0].level, posture::Level::Critical);
    // Give root a password (every root account), and the finding goes.
    run_ok(
        Command::new("/usr/bin/mariadb")
            .arg(format!("--socket={}", sock.display()))
            .args(["-uroot", "-e"])
            .arg(
                "ALTER USER IF EXISTS 'root'@'localhost' IDENTIFIED BY 'pw-9f3k'; \
                 ALTER USER IF EXISTS 'root'@'127.0.0.1' IDENTIFIED BY 'pw-9f3k'; \
                 ALTER USER IF EXISTS 'root'@'::1' IDENTIFIED BY 'pw-9f3k'; \
                 ALTER USER IF EXISTS 'root'@'%' IDENTIFIED BY 'pw-9f3k'; FLUSH PRIVILEGES;",
            ),
    );
    assert!(findings_on(port).is_empty());
}

fn postgres_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

#[test]
fn postgres_trust_lines_are_found_and_the_server_confirms_them() {
    let Some(bin) = postgres_bin() else {
        eprintln!("SKIP: PostgreSQL is not installed (scripts/postgres.sh installs it)");
        return;
    };
    let dir = open_tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    run_ok(Command::new("chown").arg("postgres:").arg(&data));
    run_ok(
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data),
    );
    let hba = data.join("pg_hba.conf");
    let mut text = std::fs::read_to_string(&hba).unwrap();
    text.push_str("host all all 0.0.0.0/0 trust\n");
    std::fs::write(&hba, text).unwrap();
    let port = free_port();
    let mut s = spawn(
        "postgres",
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=*", "-c"])
            .arg(format!("unix_socket_directories={}", data.display()))
            .arg("-p")
            .arg(port.to_string()),
    );
    wait_listening(port, &mut s);
    let mut found = findings_on(port);
    found.sort_by_key(|f| f.level);
    let levels: Vec<posture::Level> = found.iter().map(|f| f.level).collect();
    assert_eq!(
        levels,
        [posture::Level::Low, posture::Level::Critical],
        "{found:?}"
    );
    let evidence = found[1].details["evidence"].as_str().unwrap_or("");
    assert!(evidence.contains("AuthenticationOk"), "{evidence}");
    assert!(
        found[1].message.contains("pg_hba.conf"),
        "{}",
        found[1].message
    );
}

/// Held by the test that runs apt and by the agent's: the agent's posture passes wait while a
/// package manager runs.
static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn apt(args: &[&str]) -> bool {
    let status = Command::new("apt-get")
        .args(["-y", "-q", "-o", "DPkg::Lock::Timeout=600"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status();
    status.is_ok_and(|s| s.success())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).ends_with(" installed"))
}

/// A real `apt-get install` and `remove` of a small package between passes: the baseline sees
/// its files come and go, and none of it is an alert.
#[test]
fn package_installs_and_removals_are_not_alerts() {
    let _apt = APT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    const PKG: &str = "tree";
    if installed(PKG) && !apt(&["remove", PKG]) {
        eprintln!("SKIP: cannot remove {PKG} to start clean");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = fim::Options {
        paths: vec!["/usr/bin".into(), "/etc".into(), "/usr/share/doc".into()],
        state_dir: dir.path().join("state"),
        // Bigger files are compared by size and mtime: keeps the five passes short.
        max_hash_bytes: 1 << 20,
        ..fim::Options::default()
    };
    let budget = CpuBudget::unlimited(Duration::from_secs(600));
    let first = fim::run(&opts, &budget).unwrap();
    assert!(first.stats.first_baseline);
    eprintln!("FIGURE fim: {:?}", first.stats);
    if !apt(&["install", "--no-install-recommends", PKG]) {
        eprintln!("SKIP: apt-get install {PKG} failed (no package source?)");
        return;
    }
    let after_install = fim::run(&opts, &budget).unwrap();
    assert!(
        after_install.stats.package_changes >= 2,
        "{:?}",
        after_install.stats
    );
    assert!(
        after_install.findings.is_empty(),
        "alerts after apt-get install: {:#?}",
        after_install.findings
    );
    assert!(apt(&["install", "--reinstall", PKG]));
    let after_reinstall = fim::run(&opts, &budget).unwrap();
    assert!(
        after_reinstall.findings.is_empty(),
        "{:#?}",
        after_reinstall.findings
    );
    assert!(apt(&["remove", PKG]));
    let after_remove = fim::run(&opts, &budget).unwrap();
    assert!(
        after_remove.stats.package_changes >= 2,
        "{:?}",
        after_remove.stats
    );
    assert!(
        after_remove.findings.is_empty(),
        "alerts after apt-get remove: {:#?}",
        after_remove.findings
    );
    eprintln!(
        "FIGURE fim apt: install {} package changes, remove {} package changes, 0 alerts",
        after_install.stats.package_changes, after_remove.stats.package_changes
    );
    // A change no package made is still an alert, even right after a dpkg run (a second past
    // its last line: runs are told by their dpkg.log lines, with one second of slack).
    std::thread::sleep(Duration::from_secs(2));
    let planted = Path::new("/usr/bin/ringfence-posture-test-planted");
    std::fs::write(planted, "#!/bin/sh\n").unwrap();
    let planted_run = fim::run(&opts, &budget);
    std::fs::remove_file(planted).unwrap();
    let planted_run = planted_run.unwrap();
    assert!(
        planted_run
            .findings
            .iter()
            .any(|f| f.subject == planted.to_string_lossy()
                && f.rule_id == "ringfence-posture-file-added"),
        "{:#?}",
        planted_run.findings
    );
}

/// In the agent: a file changed while it was down is a finding at its start, through the normal
/// finding path (the outputs), with before and after.
#[test]
fn the_agent_reports_what_changed_while_it_was_down() {
    let _apt = APT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("etc");
    std::fs::create_dir(&watched).unwrap();
    std::fs::write(watched.join("app.conf"), "listen = 127.0.0.1\n").unwrap();
    let state = dir.path().join("state");
    let opts = fim::Options {
        paths: vec![watched.canonicalize().unwrap()],
        state_dir: state.clone(),
        ..fim::Options::default()
    };
    fim::run(&opts, &CpuBudget::unlimited(Duration::from_secs(60))).unwrap();
    // The agent is down; someone edits the file.
    std::fs::write(watched.join("app.conf"), "listen = 0.0.0.0\n").unwrap();

    let mut config = Config::default();
    config.agent.mode = ModeChoice::Driverless;
    config.sources.proc_connector = false;
    config.sources.audit = false;
    config.sources.fanotify = false;
    config.sources.logs = false;
    config.agent.tamper_detection = false;
    config.posture.start_delay_secs = 0;
    config.posture.skip = vec!["weak-passwords".into(), "sshd".into(), "services".into()];
    config.posture.fim_paths = vec![watched.to_string_lossy().into_owned()];
    config.posture.state_dir = state;
    let lines = common::Memory::default();
    let agent = Agent::new(config).with_outputs(vec![Box::new(lines.clone())]);
    let stop = StopSignal::new();
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || agent.run(stop2));
    let deadline = Instant::now() + Duration::from_secs(60);
    let finding = loop {
        let found = lines
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("ringfence-posture-file-changed"))
            .cloned();
        if let Some(f) = found {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "no posture finding from the agent"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    stop.stop();
    let summary = handle.join().unwrap();
    assert!(summary.findings >= 1);
    let doc: serde_json::Value = serde_json::from_str(&finding).unwrap();
    assert_eq!(doc["event"]["kind"], "alert");
    assert_eq!(doc["ringfence"]["finding"]["class"], "posture");
    let d = &doc["ringfence"]["finding"]["details"];
    assert_eq!(d["changed"], serde_json::json!(["sha256"]));
    assert_ne!(d["before"]["sha256"], d["after"]["sha256"]);
}

/// Build a .deb of `ringfence-posture-test` at `version`: a program, a conffile, and a
/// postinst that writes a file no package owns (as maintainer scripts do).
fn test_deb(dir: &Path, version: &str) -> PathBuf {
    let root = dir.join(format!("pkg-{version}"));
    let w = |p: &str, text: &str, mode: u32| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    w(
        "DEBIAN/control",
        &format!(
            "Package: ringfence-posture-test\nVersion: {version}\nArchitecture: all\n\
             Maintainer: Ringfence tests <tests@ringfence.invalid>\nDescription: posture test\n"
        ),
        0o644,
    );
    w(
        "DEBIAN/conffiles",
        "/etc/ringfence-posture-test.conf\n",
        0o644,
    );
    w(
        "DEBIAN/postinst",
        &format!("#!/bin/sh\necho {version} > /etc/ringfence-posture-test.generated\n"),
        0o755,
    );
    w(
        "usr/bin/ringfence-posture-test",
        &format!("#!/bin/sh\necho {version}\n"),
        0o755,
    );
    w(
        "etc/ringfence-posture-test.conf",
        &format!("version = {version}\n"),
        0o644,
    );
    let deb = dir.join(format!("ringfence-posture-test_{version}_all.deb"));
    run_ok(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&root)
            .arg(&deb),
    );
    deb
}

/// A real dpkg upgrade (new program, new conffile, a maintainer script writing /etc) between
/// passes is no alert; the package's purge is none either.
#[test]
fn a_package_upgrade_is_not_an_alert() {
    if !have("/usr/bin/dpkg-deb") {
        return;
    }
    let _apt = APT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (test_deb(dir.path(), "1.0"), test_deb(dir.path(), "2.0"));
    let dpkg = |args: &[&str], deb: Option<&Path>| {
        let mut c = Command::new("dpkg");
        c.args(["--force-confnew"]).args(args);
        if let Some(d) = deb {
            c.arg(d);
        }
        run_ok(&mut c);
    };
    dpkg(&["-i"], Some(&v1));
    let opts = fim::Options {
        paths: vec!["/usr/bin".into(), "/etc".into()],
        state_dir: dir.path().join("state"),
        max_hash_bytes: 1 << 20,
        ..fim::Options::default()
    };
    let budget = CpuBudget::unlimited(Duration::from_secs(600));
    fim::run(&opts, &budget).unwrap();
    dpkg(&["-i"], Some(&v2));
    let upgraded = fim::run(&opts, &budget).unwrap();
    dpkg(&["--purge", "ringfence-posture-test"], None);
    // The postinst's file stays after the purge: no package owns it.
    let _ = std::fs::remove_file("/etc/ringfence-posture-test.generated");
    assert!(upgraded.stats.package_changes >= 3, "{:?}", upgraded.stats);
    assert!(
        upgraded.findings.is_empty(),
        "alerts after a dpkg upgrade: {:#?}",
        upgraded.findings
    );
    eprintln!(
        "FIGURE fim dpkg upgrade: {} package changes, {} alerts",
        upgraded.stats.package_changes,
        upgraded.findings.len()
    );
}
