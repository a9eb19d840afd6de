//! `ringfence scan` with the real binary: its exit codes (0 nothing found, 1 a match, 2 rules
//! that do not compile, named by file and line, 3 a path that cannot be read), the match line
//! and the summary, with the built-in pack's rules and with `--rules`.
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
fn scan_exits_0_when_clean_and_1_on_a_match() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("index.php"), "<?php echo 'hello'; ?>\n").unwrap();
    fs::write(dir.path().join("notes.txt"), "nothing to see\n").unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = run(&["scan", d]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("scanned 2 files"), "{err}");
    assert!(err.contains("0 matches"), "{err}");

    let shell = dir.path().join("sub/up.php");
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(&shell, "<?php @eval(base64_decode($_POST['z0'])); ?>\n").unwrap();
    let (code, out, err) = run(&["scan", d]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.starts_with(&format!(
            "{}: yara:php_eval_request_decode (high)",
            shell.display()
        )),
        "{out}"
    );
    assert!(err.contains("scanned 3 files"), "{err}");
    assert!(err.contains("1 matches in 1 files"), "{err}");

    // --json: one ECS finding per match.
    let (code, out, _) = run(&["scan", "--json", shell.to_str().unwrap()]);
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(doc["rule"]["id"], "yara:php_eval_request_decode");
    assert_eq!(
        doc["file"]["hash"]["sha256"].as_str().map(str::len),
        Some(64)
    );
}

#[test]
fn scan_refuses_rules_that_do_not_compile_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    fs::create_dir(&rules).unwrap();
    fs::write(
        rules.join("mine.yar"),
        "rule mine {\n  meta:\n    level = \"low\"\n  condition:\n    $nope\n}\n",
    )
    .unwrap();
    let (code, _, err) = run(&[
        "scan",
        "--rules",
        rules.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{}:5: yara E", rules.join("mine.yar").display())),
        "{err}"
    );

    // The same directory with a rule that compiles is used instead of the pack's.
    fs::write(
        rules.join("mine.yar"),
        "rule mine {\n  meta:\n    level = \"low\"\n  strings:\n    $a = \"MARKER-42\"\n  condition:\n    $a\n}\n",
    )
    .unwrap();
    fs::write(dir.path().join("x.txt"), "a MARKER-42 b").unwrap();
    let (code, out, err) = run(&[
        "scan",
        "--rules",
        rules.to_str().unwrap(),
        dir.path().join("x.txt").to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("yara:mine (low)"), "{out}");

    let (code, _, err) = run(&["scan", "/nonexistent/ringfence-scan-test"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("/nonexistent/ringfence-scan-test"), "{err}");
}
