//! The attack-corpus replay (issue 25): Atomic Red Team Linux tests recorded from the live
//! agent in each mode (`content/linux/corpus/attack`, see its README) are replayed through the
//! default pack (`content/linux/rules`), one case at a time, as `ringfence eval` does. Every
//! case the recorded baseline (`baseline.json`) counts as detected at medium or above must
//! still be, so a content change that loses a detection fails here, naming the case. A case
//! the manifest marks `unobservable` that is detected fails too: the mark is stale.
//!
//! A change that detects more passes and prints the cases to add; rewrite the baseline with
//! `RINGFENCE_UPDATE_BASELINE=1 cargo test -p ringfence-detect --test attack_corpus`. The same
//! rewrites `coverage.json` (the coverage per technique and mode that the console's ATT&CK page
//! shows) and `heatmap.svg`, which must otherwise equal what the replay gives.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use ringfence_detect::eval::{self, CaseOutcome, Rate};
use ringfence_detect::{Options, RuleFile, compile};
use ringfence_event::{Event, Mode};

#[path = "support/corpus.rs"]
#[allow(dead_code, reason = "this test uses the pack's paths, not SigmaHQ's")]
mod corpus;

use corpus::repo;

fn events(path: &Path) -> Vec<Event> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(n, l)| {
            Event::from_ecs_line(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), n + 1))
        })
        .collect()
}

fn outcomes(mode: Mode) -> Vec<CaseOutcome> {
    let root = repo().join("content/linux");
    let rules = corpus::yaml_files(&root.join("rules")).unwrap();
    let files: Vec<RuleFile<'_>> = rules
        .iter()
        .map(|(p, t)| RuleFile { path: p, text: t })
        .collect();
    let engine = compile(&files, &Options::new(mode)).engine;
    let dir = root.join("corpus/attack");
    let cases =
        eval::parse_manifest(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    cases
        .iter()
        .map(|c| {
            let path = dir.join(mode.as_str()).join(format!("{}.jsonl.gz", c.id));
            eval::run_case(&engine, c, &events(&path))
        })
        .collect()
}

#[test]
fn no_recorded_detection_is_lost() {
    let dir = repo().join("content/linux/corpus/attack");
    let baseline_path = dir.join("baseline.json");
    let baseline: BTreeMap<String, Vec<String>> =
        serde_json::from_str(&std::fs::read_to_string(&baseline_path).unwrap()).unwrap();
    let mut now: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut lost = Vec::new();
    let mut per_mode = Vec::new();
    for mode in Mode::ALL {
        let outcomes = outcomes(mode);
        per_mode.push((mode.as_str().to_owned(), outcomes.clone()));
        let r = Rate::of(&outcomes);
        println!(
            "{} mode: {}/{} observed cases detected at medium or above ({:.0}%), {} run, {} unobservable",
            mode.as_str(),
            r.detected,
            r.observed,
            r.percent(),
            r.run,
            outcomes.iter().filter(|o| o.unobservable).count()
        );
        let detected: Vec<String> = outcomes
            .iter()
            .filter(|o| o.detected)
            .map(|o| o.id.clone())
            .collect();
        let before = baseline.get(mode.as_str()).cloned().unwrap_or_default();
        for id in &before {
            if !detected.contains(id) {
                let o = outcomes.iter().find(|o| &o.id == id);
                lost.push(format!(
                    "{} mode: {id} is no longer detected at medium or above (now: {:?})",
                    mode.as_str(),
                    o.map(|o| &o.raised)
                ));
            }
        }
        for o in outcomes.iter().filter(|o| o.unobservable && o.detected) {
            lost.push(format!(
                "{} mode: {} is marked unobservable in cases.json but is detected: remove the mark",
                mode.as_str(),
                o.id
            ));
        }
        for o in outcomes.iter().filter(|o| !o.detected) {
            let below: Vec<String> = o
                .raised
                .iter()
                .map(|r| format!("{} ({})", r.title, r.level))
                .collect();
            println!(
                "{} mode: missed {} ({} events; below medium: {below:?})",
                mode.as_str(),
                o.id,
                o.events
            );
        }
        let new: Vec<&String> = detected.iter().filter(|id| !before.contains(id)).collect();
        if !new.is_empty() {
            println!(
                "{} mode: detected now, not in the baseline: {new:?}",
                mode.as_str()
            );
        }
        now.insert(mode.as_str().to_owned(), detected);
    }
    let cases =
        eval::parse_manifest(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let mut coverage = serde_json::to_string_pretty(&eval::coverage(&cases, &per_mode)).unwrap();
    coverage.push('\n');
    let coverage_path = dir.join("coverage.json");
    let heatmap = ringfence_detect::heatmap::svg(&cases, &per_mode);
    let heatmap_path = dir.join("heatmap.svg");
    if std::env::var_os("RINGFENCE_UPDATE_BASELINE").is_some() {
        let mut text = serde_json::to_string_pretty(&now).unwrap();
        text.push('\n');
        std::fs::write(&baseline_path, text).unwrap();
        std::fs::write(&coverage_path, coverage).unwrap();
        std::fs::write(&heatmap_path, heatmap).unwrap();
        println!(
            "{}, {} and {} rewritten",
            baseline_path.display(),
            coverage_path.display(),
            heatmap_path.display()
        );
        return;
    }
    assert!(lost.is_empty(), "detections lost:\n{}", lost.join("\n"));
    assert_eq!(
        std::fs::read_to_string(&coverage_path).unwrap_or_default(),
        coverage,
        "{} (the console's ATT&CK page) is not what the corpus gives now: rewrite it with \
         RINGFENCE_UPDATE_BASELINE=1",
        coverage_path.display()
    );
    assert!(
        std::fs::read_to_string(&heatmap_path).unwrap_or_default() == heatmap,
        "{} (the README's and the console's heat map) is not what the corpus gives now: \
         rewrite it with RINGFENCE_UPDATE_BASELINE=1",
        heatmap_path.display()
    );
}
