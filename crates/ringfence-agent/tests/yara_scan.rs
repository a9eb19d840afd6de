//! YARA scanning in a real agent (driverless mode): a PHP webshell written under a web root by
//! another process is scanned on close-write with the default pack's rules, and raises a
//! `yara:` finding naming the file, its sha256 and the writing process. Needs root (fanotify);
//! every wait is a generous timeout, never a fixed sleep.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Memory;
use ringfence_agent::content::{CompiledContent, sigma};
use ringfence_agent::scan::{self, ScanSection};
use ringfence_agent::{Agent, Config, ModeChoice};
use ringfence_event::Mode;
use ringfence_sensor::StopSignal;

fn root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

fn lines_with(mem: &Memory, needle: &str) -> Vec<serde_json::Value> {
    mem.0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|l| l.contains(needle))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_webshell_written_under_a_web_root_is_a_yara_finding() {
    if !root() {
        eprintln!("skipped: fanotify needs root");
        return;
    }
    let _one = common::serial();
    let tag = format!("ringfence-yara-{}", std::process::id());
    // Under a default watched tree, made before the agent starts (a missing tree is skipped).
    let www_existed = std::path::Path::new("/var/www").exists();
    let web = PathBuf::from("/var/www").join(&tag);
    std::fs::create_dir_all(&web).unwrap();

    let mut config = Config::default();
    config.agent.mode = ModeChoice::Driverless;
    config.sources.logs = false;
    config.posture.enabled = false;
    let stop = StopSignal::new();
    let yara = sigma::builtin(Mode::Driverless).unwrap().yara();
    assert!(yara.is_some(), "the default pack ships YARA rules");
    let rules: scan::RulesReader = Box::new(move || yara.clone());
    let scanner = scan::spawn(ScanSection::default(), rules, None, stop.clone()).unwrap();
    let queue = Arc::clone(&scanner.queue);
    let mem = Memory::default();
    let agent = Agent::new(config)
        .with_outputs(vec![Box::new(mem.clone())])
        .with_scanner(scanner);
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || agent.run(stop2));

    // Write the shell again until the agent, once watching, scans it (each write is a new
    // file: the scanner skips a file it already scanned unchanged).
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut found = Vec::new();
    let mut n = 0;
    while found.is_empty() && Instant::now() < deadline {
        n += 1;
        let shell = web.join(format!("up{n}.php"));
        let script = format!(
            "printf '%s' '<?php if(isset($_GET[\"c\"])){{ system($_GET[\"c\"]); }} ?>' > {}",
            shell.display()
        );
        assert!(
            Command::new("/bin/sh")
                .arg("-c")
                .arg(&script)
                .status()
                .is_ok_and(|s| s.success())
        );
        let wait_until = Instant::now() + Duration::from_secs(5);
        while found.is_empty() && Instant::now() < wait_until {
            found = lines_with(&mem, "yara:php_exec_request");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    stop.stop();
    let summary = handle.join().unwrap();
    let _ = std::fs::remove_dir_all(&web);
    if !www_existed {
        let _ = std::fs::remove_dir("/var/www");
    }
    let f = found.first().unwrap_or_else(|| {
        panic!(
            "no YARA finding after {n} writes; scanned {}, queue full {}\n{}",
            queue
                .stats
                .scanned
                .load(std::sync::atomic::Ordering::Relaxed),
            queue
                .stats
                .skipped_queue_full
                .load(std::sync::atomic::Ordering::Relaxed),
            summary.render()
        )
    });
    assert_eq!(f["rule"]["id"], "yara:php_exec_request");
    assert_eq!(f["ringfence"]["finding"]["level"], "high");
    assert_eq!(f["ringfence"]["yara"]["trigger"], "write");
    let path = f["file"]["path"].as_str().unwrap();
    assert!(path.starts_with(&web.display().to_string()), "{path}");
    assert_eq!(f["file"]["hash"]["sha256"].as_str().map(str::len), Some(64));
    // The writer: the shell that ran the redirection.
    assert!(f["process"]["pid"].as_u64().is_some_and(|p| p > 0), "{f}");
    assert!(summary.files_scanned >= 1);
}
