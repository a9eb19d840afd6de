//! The default content pack (`content/linux`) compiles in eBPF mode, every rule has a test
//! file with positive and negative events, and every test passes. SigmaHQ's Linux rules
//! (`../shared/sigma/rules-linux`) compile at 95% or better, and every refusal names a field
//! or a reason with a line.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

use std::path::Path;

use ringfence_detect::{Options, RuleFile, compile, testing};
use ringfence_event::Mode;

#[path = "support/corpus.rs"]
mod corpus;

use corpus::repo;

fn yaml_files(dir: &std::path::Path) -> Vec<(String, String)> {
    corpus::yaml_files(dir).unwrap()
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
    let dir = corpus::sigma_dir();
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

/// The index (per-kind prefilters, items decided by the shared scan) finds exactly the rules
/// that evaluating every rule on its own finds, over both recorded event sets.
#[test]
fn the_index_finds_what_evaluating_every_rule_finds() {
    let mut rules = yaml_files(&repo().join("content/linux/rules"));
    let sigma = corpus::sigma_dir();
    if sigma.exists() {
        rules.extend(yaml_files(&sigma));
    }
    let files: Vec<RuleFile<'_>> = rules
        .iter()
        .map(|(p, t)| RuleFile { path: p, text: t })
        .collect();
    let engine = compile(&files, &Options::new(Mode::Ebpf)).engine;
    let mut checked = 0;
    for data in ["server.jsonl", "build-host.jsonl"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("benches/data")
            .join(data);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut state = engine.new_state();
        for line in text.lines() {
            let e = ringfence_event::Event::from_ecs_line(line).unwrap();
            let mut indexed = Vec::new();
            engine.evaluate(&e, &mut state, &mut |h| {
                if let ringfence_detect::Hit::Rule(r) = h {
                    indexed.push(r);
                }
            });
            let every: Vec<usize> = engine
                .rules()
                .iter()
                .enumerate()
                .filter(|(_, r)| r.generate && r.matches(&e))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(indexed, every, "{data}: {line}");
            checked += 1;
        }
    }
    assert!(checked > 1000);
}
