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
    // Every rule file of ours has a test file with both kinds of case for each of its outputs
    // tested. SigmaHQ's rules (`sigmahq/`) come without tests; their overrides are checked in
    // `sigmahq_rules_ship_with_their_licence_and_overrides`.
    for (path, _) in rules.iter().filter(|(p, _)| !p.starts_with("sigmahq/")) {
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
    let ours = rules
        .iter()
        .filter(|(p, _)| !p.starts_with("sigmahq/"))
        .count();
    assert!(run >= 2 * ours, "only {run} cases");
}

/// The SigmaHQ rules in the default pack (`content/linux/rules/sigmahq`) are SigmaHQ's files
/// unchanged, with their licence beside them; every one compiles in some mode; every override
/// names a SigmaHQ rule and says why; building blocks raise no finding of their own.
#[test]
fn sigmahq_rules_ship_with_their_licence_and_overrides() {
    let root = repo().join("content/linux/rules/sigmahq");
    assert!(root.join("LICENSE-SigmaHQ.md").is_file(), "licence missing");
    let rules = yaml_files(&root);
    let files: Vec<RuleFile<'_>> = rules
        .iter()
        .map(|(p, t)| RuleFile { path: p, text: t })
        .collect();
    let ebpf = compile(&files, &Options::new(Mode::Ebpf));
    let driverless = compile(&files, &Options::new(Mode::Driverless));
    assert!(ebpf.refusals.is_empty(), "refused: {:#?}", ebpf.refusals);
    assert!(
        driverless.refusals.is_empty(),
        "refused: {:#?}",
        driverless.refusals
    );
    let shipped = ebpf.engine.rules().len();
    let blocks = ebpf.engine.rules().iter().filter(|r| !r.generate).count();
    println!("SigmaHQ: {shipped} rules shipped, {blocks} building blocks");
    assert_eq!(shipped, rules.len() - 1, "one file is the overrides");
    // Unchanged: the same text as the SigmaHQ corpus, where it is present.
    let upstream = corpus::sigma_dir();
    if upstream.exists() {
        for (path, text) in rules.iter().filter(|(p, _)| p.as_str() != "overrides.yml") {
            let original = std::fs::read_to_string(upstream.join(path)).unwrap();
            assert_eq!(&original, text, "{path} differs from SigmaHQ's");
        }
    }
    let overrides = rules
        .iter()
        .find(|(p, _)| p == "overrides.yml")
        .map(|(_, t)| t)
        .expect("overrides.yml");
    let doc: serde_json::Value = yaml_serde::from_str(overrides).unwrap();
    let entries = doc["ringfence_overrides"].as_array().unwrap();
    assert!(entries.len() >= blocks, "{} entries", entries.len());
    let readme = std::fs::read_to_string(repo().join("content/linux/README.md")).unwrap();
    for e in entries {
        let id = e["id"].as_str().unwrap();
        assert!(
            readme.contains(id),
            "content/linux/README.md does not list the override of {id}"
        );
        let rule = ebpf.engine.rules().iter().find(|r| r.meta.id == id);
        let rule = rule.unwrap_or_else(|| panic!("override of {id}, not a SigmaHQ rule here"));
        assert_eq!(e["title"].as_str(), Some(rule.meta.title.as_str()), "{id}");
        if e["building_block"].as_bool() == Some(true) {
            assert!(!rule.generate, "{id} should be a building block");
        }
        if let Some(level) = e["level"].as_str() {
            assert_eq!(rule.meta.level, level, "{id}");
        }
    }
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
    // The pack, SigmaHQ's rules included (rules/sigmahq).
    let rules = yaml_files(&repo().join("content/linux/rules"));
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
