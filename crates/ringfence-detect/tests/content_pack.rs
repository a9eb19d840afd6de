//! The default content pack (`content/linux`) compiles in eBPF mode, every rule has a test
//! file with positive and negative events, and every test passes. SigmaHQ's Linux rules
//! (`../shared/sigma/rules-linux`) compile at 95% or better, and every refusal names a field
//! or a reason with a line.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

use std::path::{Path, PathBuf};

use ringfence_detect::{Options, RuleFile, compile, testing};
use ringfence_event::Mode;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yml") {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn default_pack_compiles_and_its_tests_pass() {
    let root = repo().join("content/linux");
    let rules = yaml_files(&root.join("rules"));
    let files: Vec<RuleFile<'_>> = rules
        .iter()
        .map(|(p, t)| RuleFile { path: p, text: t })
        .collect();
    let out = compile(&files, &Options::new(Mode::Ebpf));
    assert!(out.refusals.is_empty(), "refused: {:#?}", out.refusals);
    let tests: Vec<testing::ContentTest> = yaml_files(&root.join("tests"))
        .iter()
        .map(|(p, t)| testing::parse(p, t).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    // Every rule file has a test file with both kinds of case for each of its outputs tested.
    for (path, _) in &rules {
        let t = tests.iter().filter(|t| &t.file == path).collect::<Vec<_>>();
        assert!(!t.is_empty(), "{path} has no test file");
        for t in t {
            assert!(
                t.cases.iter().any(|c| c.expect_match),
                "{path}: no positive case"
            );
            assert!(
                t.cases.iter().any(|c| !c.expect_match),
                "{path}: no negative case"
            );
        }
    }
    let (run, failures) = testing::run(&out.engine, &tests);
    assert!(
        failures.is_empty(),
        "failures:\n{}",
        failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(run >= 2 * rules.len(), "only {run} cases");
}

#[test]
fn sigmahq_linux_rules_compile_at_95_percent() {
    let dir = repo().join("../shared/sigma/rules-linux");
    if !dir.exists() {
        eprintln!("{} missing: skipped", dir.display());
        return;
    }
    let rules = yaml_files(&dir);
    let files: Vec<RuleFile<'_>> = rules
        .iter()
        .map(|(p, t)| RuleFile { path: p, text: t })
        .collect();
    for mode in Mode::ALL {
        let out = compile(&files, &Options::new(mode));
        let compiled = out.engine.rules().len() + out.engine.correlations().len();
        assert!(
            compiled * 100 >= out.documents * 95,
            "{mode:?}: {compiled} of {} compiled; refused: {:#?}",
            out.documents,
            out.refusals
        );
        for r in &out.refusals {
            assert!(r.line.is_some(), "refusal without a line: {r}");
            assert!(r.rule_id.is_some(), "refusal without a rule id: {r}");
        }
    }
}
