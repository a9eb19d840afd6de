//! End to end with the real binary, no agent and no root: what `content build`, `content
//! verify`, `rules check` and `replay` say, and their exit codes, when the input is wrong in
//! the ways a new user gets it wrong (a directory one level too deep, a typo in a rule, a
//! failing content test, the wrong keys, a content pack given to `rules check`, damaged or
//! agent-written events).
#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking, as #[test] functions may (clippy.toml)"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

fn pack() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../content/linux")
}

/// Exit code, stdout and stderr of `ringfence args`.
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A keys directory in `dir/name`.
fn keys(dir: &Path, name: &str) -> PathBuf {
    let k = dir.join(name);
    let (code, _, err) = run(&["content", "keys", "init", "--dir", s(&k)]);
    assert_eq!(code, 0, "{err}");
    k
}

const RULE: &str = "title: NAME\nid: rule-NAME\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    Image|endswith: /NAME\n  condition: sel\nlevel: low\n";

fn exec_event(executable: &str) -> String {
    format!(
        "{{\"event\": {{\"action\": \"exec\"}}, \"process\": {{\"pid\": 42, \"executable\": \"{executable}\"}}}}"
    )
}

#[test]
fn a_build_one_directory_too_deep_is_refused_unless_allowed_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let k = keys(tmp.path(), "keys");
    let out = tmp.path().join("x.bundle");
    let rules = pack().join("rules");
    let (code, stdout, err) = run(&[
        "content",
        "build",
        s(&rules),
        "--version",
        "9",
        "--keys",
        s(&k),
        "-o",
        s(&out),
    ]);
    assert_eq!(code, 1, "{stdout}{err}");
    assert!(
        err.contains("no rules and no IOCs: the bundle would detect nothing"),
        "{err}"
    );
    assert!(err.contains("it is inside the pack"), "{err}");
    assert!(err.contains("--allow-empty REASON"), "{err}");
    assert!(!out.exists(), "no bundle is written");

    // On purpose, with a reason: built, and `verify` accepts it.
    let (code, _, err) = run(&[
        "content",
        "build",
        s(&rules),
        "--version",
        "9",
        "--keys",
        s(&k),
        "-o",
        s(&out),
        "--allow-empty",
        "retire all content on the canary ring",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, stdout, err) = run(&["content", "verify", s(&out), "--root", s(&k)]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("0 rules compiled"), "{stdout}");
}

#[test]
fn build_lists_every_error_with_file_line_rule_and_test() {
    let tmp = tempfile::tempdir().unwrap();
    let k = keys(tmp.path(), "keys");
    let dir = tmp.path().join("pack");
    fs::create_dir_all(dir.join("rules")).unwrap();
    fs::create_dir_all(dir.join("tests")).unwrap();
    // A typo'd modifier, and a rule whose test expects a match it does not get.
    fs::write(
        dir.join("rules/typo.yml"),
        RULE.replace("NAME", "typo").replace("endswith", "endswiht"),
    )
    .unwrap();
    fs::write(dir.join("rules/good.yml"), RULE.replace("NAME", "good")).unwrap();
    fs::write(
        dir.join("tests/good.yml"),
        format!(
            "rule: rule-good\nmatch:\n  - {}\n  - {}\n",
            exec_event("/bin/good"),
            exec_event("/bin/other")
        ),
    )
    .unwrap();
    let out = tmp.path().join("x.bundle");
    let (code, stdout, err) = run(&[
        "content",
        "build",
        s(&dir),
        "--version",
        "1",
        "--keys",
        s(&k),
        "-o",
        s(&out),
    ]);
    assert_eq!(code, 1, "{stdout}{err}");
    assert!(
        err.contains("content validation failed with 3 error(s):"),
        "{err}"
    );
    assert!(err.contains("rules/typo.yml:8 rule rule-typo"), "{err}");
    assert!(err.contains("endswiht"), "{err}");
    for mode in ["ebpf", "driverless"] {
        assert!(
            err.contains(&format!(
                "tests/good.yml:4 rule rule-good: test `match` case 2: expected a match, got none ({mode} mode)"
            )),
            "{err}"
        );
    }
}

#[test]
fn verify_lists_every_validation_error_and_names_untrusted_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let k = keys(tmp.path(), "keys");
    let other = keys(tmp.path(), "other-keys");

    // Signed by keys the root does not trust.
    let out = tmp.path().join("other.bundle");
    let (code, _, err) = run(&[
        "content",
        "build",
        s(&pack()),
        "--version",
        "3",
        "--keys",
        s(&other),
        "-o",
        s(&out),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["content", "verify", s(&out), "--root", s(&k)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "refused: timestamp metadata is signed by keys this root does not trust: expected \
             timestamp keys (key "
        ),
        "{err}"
    );
    assert!(err.contains("seen key "), "{err}");

    // Signed by the right keys but failing validation (signed without the compiler, as an
    // older or foreign builder could): every error is listed.
    let dir = tmp.path().join("pack");
    fs::create_dir_all(dir.join("rules")).unwrap();
    for name in ["a", "b"] {
        fs::write(
            dir.join(format!("rules/{name}.yml")),
            RULE.replace("NAME", name).replace("Image", "Imaeg"),
        )
        .unwrap();
    }
    let keyset = ringfence_content::KeySet::load(&k).unwrap();
    let opts = ringfence_content::BuildOptions::new(
        4,
        ringfence_agent::content::engine::agent_schema(),
        ringfence_content::UnixTime::now(),
    );
    let built = ringfence_content::build_signed_bundle(
        &dir,
        &opts,
        &keyset,
        &ringfence_content::StructuralValidator,
    )
    .unwrap();
    let out = tmp.path().join("bad.bundle");
    fs::write(&out, built.signed.encode()).unwrap();
    let (code, _, err) = run(&["content", "verify", s(&out), "--root", s(&k)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("content validation failed with 2 error(s):"),
        "{err}"
    );
    assert!(err.contains("\n  rules/a.yml:8 rule rule-a"), "{err}");
    assert!(err.contains("\n  rules/b.yml:8 rule rule-b"), "{err}");
}

#[test]
fn rules_check_knows_a_packs_tests_and_fails_when_nothing_compiles() {
    let (code, stdout, err) = run(&["rules", "check", s(&pack())]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(!stdout.contains("REFUSED"), "{stdout}");
    assert!(!stdout.contains("/tests/"), "{stdout}");
    assert!(stdout.contains("test files in tests/"), "{stdout}");
    assert!(stdout.contains(", 0 failed"), "{stdout}");

    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let (code, _, err) = run(&["rules", "check", s(&empty)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no rule found in"), "{err}");

    let bad = tmp.path().join("bad");
    fs::create_dir(&bad).unwrap();
    fs::write(
        bad.join("a.yml"),
        RULE.replace("NAME", "a").replace("Image", "Imaeg"),
    )
    .unwrap();
    let (code, stdout, err) = run(&["rules", "check", s(&bad)]);
    assert_eq!(code, 1, "{stdout}{err}");
    assert!(stdout.contains("REFUSED   "), "{stdout}");
    assert!(err.contains("no rule compiled: all 1 refused"), "{err}");

    // One good, one refused: 0 without --strict, 1 with it.
    fs::write(bad.join("b.yml"), RULE.replace("NAME", "b")).unwrap();
    let (code, _, err) = run(&["rules", "check", s(&bad)]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["rules", "check", "--strict", s(&bad)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--strict: 1 rule(s) refused"), "{err}");
}

#[test]
fn replay_refuses_empty_rules_and_skips_damaged_and_agent_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.jsonl");
    let matching = exec_event("/usr/bin/ringfence-evil").replace(' ', "");
    fs::write(&events, format!("{matching}\n")).unwrap();

    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let (code, _, err) = run(&["replay", "--rules", s(&empty), "--events", s(&events)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no rule compiled from"), "{err}");

    let rules = tmp.path().join("rules");
    fs::create_dir(&rules).unwrap();
    fs::write(
        rules.join("evil.yml"),
        RULE.replace("NAME", "ringfence-evil"),
    )
    .unwrap();
    let (code, findings, err) = run(&["replay", "--rules", s(&rules), "--events", s(&events)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(findings.lines().count(), 1, "{findings}{err}");

    // The agent's own output: an event, its alert line; then a line that is not UTF-8.
    let mut damaged = format!("{matching}\n{findings}").into_bytes();
    damaged.extend_from_slice(b"{\"event\": \xff}\n");
    damaged.extend_from_slice(format!("{matching}\n").as_bytes());
    fs::write(&events, &damaged).unwrap();
    let (code, out, err) = run(&["replay", "--rules", s(&rules), "--events", s(&events)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}{err}");
    assert!(!err.contains("unknown field"), "{err}");
    assert!(
        err.contains(&format!(
            "{}:3: skipped: not UTF-8 at byte 10",
            events.display()
        )),
        "{err}"
    );
    assert!(err.contains("1 alert and response line(s)"), "{err}");
    assert!(err.contains("2 events, 2 findings"), "{err}");
}

#[test]
fn replay_prints_one_readable_line_per_finding_with_format_text() {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.jsonl");
    let hostile = "{\"@timestamp\": \"2026-12-06T07:00:00Z\", \"event\": {\"action\": \"exec\"}, \
                   \"process\": {\"pid\": 42, \"executable\": \"/usr/bin/ringfence-evil\", \
                   \"command_line\": \"ringfence-evil\\nFORGED\"}, \"user\": {\"name\": \"www-data\"}}";
    fs::write(&events, format!("{hostile}\n")).unwrap();
    let rules = tmp.path().join("rules");
    fs::create_dir(&rules).unwrap();
    fs::write(
        rules.join("evil.yml"),
        RULE.replace("NAME", "ringfence-evil"),
    )
    .unwrap();
    fs::write(
        rules.join("templated.yml"),
        RULE.replace("NAME", "ringfence-evil")
            .replace("rule-ringfence-evil", "rule-templated")
            + "output: \"evil %process.command_line by %user.name (pid %process.pid)\"\n",
    )
    .unwrap();
    let (code, out, err) = run(&[
        "replay",
        "--rules",
        s(&rules),
        "--events",
        s(&events),
        "--format",
        "text",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}{err}");
    assert!(
        lines.contains(&"2026-12-06T07:00:00.000000000Z LOW ringfence-evil: ringfence-evil\\nFORGED (user www-data, parent <NA>) on <NA>"),
        "{out}"
    );
    assert!(
        lines.contains(
            &"2026-12-06T07:00:00.000000000Z LOW evil ringfence-evil\\nFORGED by www-data (pid 42)"
        ),
        "{out}"
    );
    let (code, _, err) = run(&[
        "replay",
        "--rules",
        s(&rules),
        "--events",
        s(&events),
        "--format",
        "yaml",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("expected ecs, ocsf or text"), "{err}");
}

/// `eval` on the recorded corpora: the attack corpus's table, rates per mode and heat map; the
/// benign corpus's findings per hour with no high or critical; a directory that is no corpus,
/// a damaged event line and a bad `--format` refused with exit 1 naming the file.
#[test]
fn eval_reports_detection_per_technique_and_mode_and_benign_noise() {
    let tmp = tempfile::tempdir().unwrap();
    let attack = pack().join("corpus/attack");
    let svg = tmp.path().join("map.svg");
    let (code, out, err) = run(&["eval", "--corpus", s(&attack), "--svg", s(&svg)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("T1003.008"), "{out}");
    assert!(out.contains("Detection rate at medium or above"), "{out}");
    assert!(fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let (code, out, err) = run(&["eval", "--corpus", s(&attack), "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    for mode in ["ebpf", "driverless"] {
        let rate = &doc["modes"][mode]["rate"];
        assert!(rate["detected"].as_u64().unwrap() > 0, "{mode}: {rate}");
        assert!(rate["observed"].as_u64() <= rate["run"].as_u64(), "{rate}");
    }

    let benign = pack().join("corpus/benign");
    let (code, out, err) = run(&["eval", "--corpus", s(&benign), "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    for mode in ["ebpf", "driverless"] {
        let findings = &doc["modes"][mode]["findings"];
        assert_eq!(findings["high"], 0, "{mode}: {findings}");
        assert_eq!(findings["critical"], 0, "{mode}: {findings}");
    }

    let (code, _, err) = run(&["eval", "--corpus", s(tmp.path())]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a corpus"), "{err}");
    let damaged = tmp.path().join("damaged");
    fs::create_dir_all(&damaged).unwrap();
    fs::write(
        damaged.join("ebpf.jsonl"),
        "{\"event\": {\"action\": \"exec\"}}\nnot json\n",
    )
    .unwrap();
    let (code, _, err) = run(&["eval", "--corpus", s(&damaged)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ebpf.jsonl:2"), "{err}");
    let (code, _, err) = run(&["eval", "--corpus", s(&benign), "--format", "xml"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--format xml"), "{err}");
}
