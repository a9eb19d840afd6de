//! End to end with the real binary: an exceptions overlay in a signed bundle (`exceptions/` of
//! a content directory, entry kind 5, as the console publishes it) silences the matching
//! finding on a running agent and no other. Needs root for the process connector that
//! supplies the events. Nothing here asserts wall-clock times; the deadline only stops a hung
//! test.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking, as #[test] functions may (clippy.toml)"
)]

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");
/// `rules/process_creation/exec_from_temp_dir.yml`: a program run from /tmp.
const TEMP_EXEC_RULE: &str = "32dfa2ca-8d43-57be-919e-775948946ec2";

fn ringfence(args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ringfence {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[test]
fn a_bundle_exception_silences_its_match_on_a_running_agent_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).to_str().unwrap().to_owned();
    // Two copies of /bin/true under /tmp: the rule fires for both; the exception names one.
    let tmp = tempfile::Builder::new()
        .prefix("rf-exc-")
        .tempdir_in("/tmp")
        .unwrap();
    let silenced = tmp.path().join("silenced");
    let reported = tmp.path().join("reported");
    fs::copy("/bin/true", &silenced).unwrap();
    fs::copy("/bin/true", &reported).unwrap();

    let pack = dir.path().join("pack");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../content/linux"),
        &pack,
    );
    fs::create_dir_all(pack.join("exceptions")).unwrap();
    fs::write(
        pack.join("exceptions/console.toml"),
        format!(
            "[[exceptions]]\nrule = \"{TEMP_EXEC_RULE}\"\ncomment = \"our own helper\"\n\n\
             [exceptions.fields]\n\"process.executable\" = [\"{}\"]\n",
            silenced.display()
        ),
    )
    .unwrap();
    ringfence(&["content", "keys", "init", "--dir", &p("keys")]);
    fs::create_dir(dir.path().join("drop")).unwrap();
    let built = p("v2.bundle");
    let pack_dir = pack.to_str().unwrap().to_owned();
    ringfence(&[
        "content",
        "build",
        &pack_dir,
        "--version",
        "2",
        "--keys",
        &p("keys"),
        "-o",
        &built,
    ]);
    fs::write(
        p("agent.toml"),
        "[sources]\nproc_connector = true\naudit = false\nfanotify = false\nlogs = false\n\n\
         [content]\npoll_ms = 50\nshadow_secs = 1\nconfirm_secs = 1\n",
    )
    .unwrap();
    let log = fs::File::create(p("agent.log")).unwrap();
    let _agent = Running(
        Command::new(BIN)
            .args(["agent", "run", "--mode", "driverless", "--config"])
            .arg(p("agent.toml"))
            .arg("--output")
            .arg(format!("jsonl:{}", p("events.jsonl")))
            .arg("--content-dir")
            .arg(p("drop"))
            .arg("--root")
            .arg(p("keys"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    fs::copy(&built, dir.path().join("drop/.v2.part")).unwrap();
    fs::rename(
        dir.path().join("drop/.v2.part"),
        dir.path().join("drop/2.bundle"),
    )
    .unwrap();

    let findings_for = |exe: &Path| -> Vec<serde_json::Value> {
        fs::read_to_string(p("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["rule"]["id"] == TEMP_EXEC_RULE)
            .filter(|v| v["process"]["executable"] == exe.to_str().unwrap())
            .collect()
    };
    let state = || -> serde_json::Value {
        fs::read_to_string(p("drop/.state/state.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    // Wait for v2 to be active, then run both programs (the silenced one first) until the
    // reported one's finding arrives: the pipeline is in order, so the silenced one's finding
    // would have come before it.
    loop {
        assert!(
            Instant::now() < deadline,
            "timed out; state {}\nlog:\n{}",
            state(),
            fs::read_to_string(p("agent.log")).unwrap_or_default()
        );
        let active = state()["active"] == 2;
        let _ = Command::new("/bin/true").status();
        if active {
            let _ = Command::new(&silenced).status();
            let _ = Command::new(&reported).status();
            if !findings_for(&reported).is_empty() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        findings_for(&silenced).is_empty(),
        "the exception did not silence {}",
        silenced.display()
    );
    // The finding carries the rule's false-positive notes from its Sigma `falsepositives`.
    let finding = &findings_for(&reported)[0];
    assert_eq!(
        finding["rule"]["falsepositives"][0],
        "Installers that unpack and run helpers from /tmp"
    );
}
