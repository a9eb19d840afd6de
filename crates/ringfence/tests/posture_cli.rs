//! `ringfence posture` with the real binary: a baseline made, a change found with before and
//! after (and found again, since a look does not replace the baseline), the inventory as JSON,
//! and the exit codes of a bad configuration and an unknown check.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking, as #[test] functions may (clippy.toml)"
)]

use std::fs;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn posture_reports_a_change_against_the_baseline_without_replacing_it() {
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("etc");
    fs::create_dir(&watched).unwrap();
    fs::write(watched.join("app.conf"), "a\n").unwrap();
    let config = dir.path().join("agent.toml");
    fs::write(
        &config,
        format!(
            "[posture]\nfim_paths = [\"{}\"]\nstate_dir = \"{}\"\nskip = [\"weak-passwords\", \"services\", \"sshd\", \"inventory\"]\n",
            watched.display(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let (code, out, err) = run(&[
        "posture",
        "--config",
        c,
        "--update-baseline",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["fim"]["first_baseline"], true);
    fs::write(watched.join("app.conf"), "b\n").unwrap();
    for _ in 0..2 {
        let (code, out, err) = run(&["posture", "--config", c, "--format", "json"]);
        assert_eq!(code, 0, "{err}");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let findings = doc["findings"].as_array().unwrap();
        assert_eq!(findings.len(), 1, "{out}");
        assert_eq!(findings[0]["rule"]["id"], "ringfence-posture-file-changed");
        let d = &findings[0]["ringfence"]["finding"]["details"];
        assert_ne!(d["before"]["sha256"], d["after"]["sha256"]);
    }
    let (code, out, _) = run(&["posture", "--config", c]);
    assert_eq!(code, 0);
    assert!(out.contains("ringfence-posture-file-changed"), "{out}");
}

#[test]
fn bad_posture_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    fs::write(&config, "[posture]\ncpu_percent = 0\n").unwrap();
    let (code, _, err) = run(&["posture", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("agent.toml:2: posture.cpu_percent"), "{err}");
    let (code, _, err) = run(&["posture", "--skip", "yara"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown check `yara`"), "{err}");
}

#[test]
fn the_inventory_is_json() {
    let (code, out, err) = run(&["posture", "--inventory", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    for section in [
        "packages",
        "listening",
        "users",
        "groups",
        "kernel_modules",
        "systemd_units",
        "cron",
    ] {
        assert!(doc[section].is_array(), "{section}: {out}");
    }
    assert!(
        doc["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == "root")
    );
}
