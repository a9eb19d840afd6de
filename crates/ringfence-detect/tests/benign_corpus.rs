//! The benign-workload replay (issues 20 and 25): an admin, build and database-maintenance
//! session recorded from the live agent in each mode (`content/linux/corpus/benign`, see its
//! README) is replayed through the default pack (`content/linux/rules`) as `ringfence replay`
//! does, and must raise no high or critical finding. Each such finding is printed with its rule
//! and event; the findings per hour by level, over the corpus's own duration, are printed too
//! (`cargo test -p ringfence-detect --test benign_corpus -- --nocapture`).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

use std::collections::BTreeMap;
use std::io::Read;

use ringfence_detect::{Format, Options, RuleFile, compile};
use ringfence_event::{Event, Mode};

#[path = "support/corpus.rs"]
#[allow(dead_code, reason = "this test uses the pack's paths, not SigmaHQ's")]
mod corpus;

use corpus::repo;

/// Levels in the order they are printed.
const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

/// Replays `<mode>.jsonl.gz` and returns the high or critical findings as printable lines.
fn replay(mode: Mode) -> Vec<String> {
    let root = repo().join("content/linux");
    let rules = corpus::yaml_files(&root.join("rules")).unwrap();
    let files: Vec<RuleFile<'_>> = rules
        .iter()
        .map(|(p, t)| RuleFile { path: p, text: t })
        .collect();
    let compiled = compile(&files, &Options::new(mode));
    let engine = compiled.engine;
    assert!(!engine.rules().is_empty(), "no rule compiled");

    let path = root
        .join("corpus/benign")
        .join(format!("{}.jsonl.gz", mode.as_str()));
    let gz = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));

    let mut state = engine.new_state();
    let mut per_level: BTreeMap<&str, u64> = BTreeMap::new();
    let mut loud = Vec::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let mut events = 0u64;
    for (n, line) in text.lines().enumerate() {
        let e = Event::from_ecs_line(line)
            .unwrap_or_else(|err| panic!("{}:{}: {err}", path.display(), n + 1));
        events += 1;
        first = first.min(e.timestamp.as_nanos());
        last = last.max(e.timestamp.as_nanos());
        let mut hits = Vec::new();
        engine.evaluate(&e, &mut state, &mut |h| hits.push(h));
        for h in &hits {
            let Some(f) = engine.finding(h, &e) else {
                continue;
            };
            let level = LEVELS
                .iter()
                .find(|l| **l == f.meta.level)
                .copied()
                .unwrap_or("unknown");
            *per_level.entry(level).or_default() += 1;
            if level == "medium" {
                println!(
                    "{} mode: medium {} ({}) at line {}",
                    mode.as_str(),
                    f.meta.title,
                    f.meta.file,
                    n + 1
                );
            }
            if level == "high" || level == "critical" {
                loud.push(format!(
                    "{}:{}: {level} {} ({}, {}:{}): {}",
                    path.display(),
                    n + 1,
                    f.meta.id,
                    f.meta.title,
                    f.meta.file,
                    f.meta.line,
                    f.to_json(Format::Ecs)
                ));
            }
        }
    }
    assert!(events > 0, "{}: no events", path.display());
    let hours = ((last - first).max(1) as f64) / 3.6e12;
    println!(
        "{} mode: {events} events over {:.1} s; findings per hour of this workload, by level:",
        mode.as_str(),
        hours * 3600.0
    );
    for level in LEVELS {
        let n = per_level.get(level).copied().unwrap_or(0);
        println!("  {level:>13}: {n:>3} ({:.0}/h)", n as f64 / hours);
    }
    let total: u64 = per_level.values().sum();
    println!(
        "  {:>13}: {total:>3} ({:.0}/h)",
        "total",
        total as f64 / hours
    );
    loud
}

fn assert_quiet(mode: Mode) {
    let loud = replay(mode);
    assert!(
        loud.is_empty(),
        "{} high or critical finding(s) on the benign corpus:\n{}",
        loud.len(),
        loud.join("\n")
    );
}

#[test]
fn benign_ebpf_corpus_raises_no_high_or_critical_finding() {
    assert_quiet(Mode::Ebpf);
}

#[test]
fn benign_driverless_corpus_raises_no_high_or_critical_finding() {
    assert_quiet(Mode::Driverless);
}
