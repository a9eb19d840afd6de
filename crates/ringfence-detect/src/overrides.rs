//! Level overrides and building blocks for rules a pack ships but does not own (SigmaHQ's).
//!
//! A rule file may hold, instead of Sigma documents, one document whose top-level key is
//! `ringfence_overrides:`, a list of entries:
//!
//! ```yaml
//! ringfence_overrides:
//!   - id: 4e2f5868-08d4-413d-899f-dc2f1508627b   # the rule's Sigma id
//!     title: File Deletion                         # optional, for readers
//!     building_block: true                         # optional
//!     level: low                                   # optional
//!     reason: a single rm is housekeeping on a server; a signal for correlations
//! ```
//!
//! `level` replaces the rule's level; `building_block: true` keeps the rule compiled, tested
//! and feeding correlations while it raises no finding of its own (as a rule only a correlation
//! uses). Every entry needs a `reason`, and must name a rule of the set (compiled or refused in
//! this mode): a stale or misspelt id is refused, naming the file and line.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use crate::compile::{Refusal, refusal};
use crate::correlation::Correlation;
use crate::locate::{self, Doc};
use crate::rule::Rule;

/// The top-level key that marks an overrides document.
pub const KEY: &str = "ringfence_overrides";

/// Sigma's levels, lowest first.
pub const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

/// Longest `reason` accepted, in bytes.
const MAX_REASON_BYTES: usize = 1024;

/// One entry of an overrides document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub id: String,
    pub level: Option<String>,
    pub building_block: bool,
    pub reason: String,
    /// Where the entry is, for refusals.
    pub file: String,
    pub line: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    ringfence_overrides: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    building_block: bool,
    #[serde(default)]
    reason: String,
}

/// Whether `doc` is an overrides document rather than a Sigma one.
pub fn is_overrides(doc: &Doc<'_>) -> bool {
    doc.text.lines().any(|l| {
        l.strip_prefix(KEY)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    })
}

/// The entries of an overrides document, or a refusal per bad entry.
pub fn parse(doc: &Doc<'_>, file: &str) -> (Vec<Override>, Vec<Refusal>) {
    let parsed: Document = match yaml_serde::from_str(doc.text) {
        Ok(d) => d,
        Err(e) => {
            let msg = e.to_string();
            let line = locate::parser_line(doc, &msg).unwrap_or(doc.line);
            return (
                Vec::new(),
                vec![refusal(
                    file,
                    Some(line),
                    None,
                    None,
                    format!("{KEY}: {msg}"),
                )],
            );
        }
    };
    let mut out = Vec::new();
    let mut refusals = Vec::new();
    // Entry n starts at the n-th list item line.
    let starts: Vec<u32> = doc
        .text
        .lines()
        .zip(doc.line..)
        .filter(|(l, _)| l.trim_start().starts_with("- "))
        .map(|(_, n)| n)
        .collect();
    for (n, entry) in parsed.ringfence_overrides.into_iter().enumerate() {
        let line = starts.get(n).copied().unwrap_or(doc.line);
        let refuse = |msg: String| {
            refusal(
                file,
                Some(line),
                Some(entry.id.clone()),
                entry.title.clone(),
                msg,
            )
        };
        if entry.reason.trim().is_empty() {
            refusals.push(refuse("override without a `reason`".into()));
            continue;
        }
        if entry.reason.len() > MAX_REASON_BYTES {
            refusals.push(refuse(format!(
                "`reason` of {} bytes is over the {MAX_REASON_BYTES}-byte limit",
                entry.reason.len()
            )));
            continue;
        }
        if let Some(level) = &entry.level
            && !LEVELS.contains(&level.as_str())
        {
            refusals.push(refuse(format!(
                "`level: {level}` is not one of {}",
                LEVELS.join(", ")
            )));
            continue;
        }
        if entry.level.is_none() && !entry.building_block {
            refusals.push(refuse(
                "override changes nothing: give `level` or `building_block: true`".into(),
            ));
            continue;
        }
        out.push(Override {
            id: entry.id,
            level: entry.level,
            building_block: entry.building_block,
            reason: entry.reason,
            file: file.to_owned(),
            line,
        });
    }
    (out, refusals)
}

/// Applies `overrides` to the compiled rules and correlations. `known` holds the id of every
/// rule document of the set, compiled or refused in this mode; an entry naming anything else,
/// or an id a second time, is refused.
pub fn apply(
    overrides: &[Override],
    rules: &mut [Rule],
    correlations: &mut [Correlation],
    known: &HashSet<String>,
) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    let mut first: HashMap<&str, (&str, u32)> = HashMap::new();
    let rule_at: HashMap<String, usize> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.meta.id.clone(), i))
        .collect();
    let corr_at: HashMap<String, usize> = correlations
        .iter()
        .enumerate()
        .map(|(i, c)| (c.meta.id.clone(), i))
        .collect();
    for o in overrides {
        if let Some((file, line)) = first.get(o.id.as_str()) {
            refusals.push(refusal(
                &o.file,
                Some(o.line),
                Some(o.id.clone()),
                None,
                format!("a second override of this rule (the first is at {file}:{line})"),
            ));
            continue;
        }
        first.insert(&o.id, (&o.file, o.line));
        if let Some(r) = rule_at.get(&o.id).and_then(|&i| rules.get_mut(i)) {
            if let Some(level) = &o.level {
                r.meta.level.clone_from(level);
            }
            if o.building_block {
                r.generate = false;
            }
        } else if let Some(c) = corr_at.get(&o.id).and_then(|&i| correlations.get_mut(i)) {
            if let Some(level) = &o.level {
                c.meta.level.clone_from(level);
            }
            if o.building_block {
                c.generate = false;
            }
        } else if !known.contains(&o.id) {
            refusals.push(refusal(
                &o.file,
                Some(o.line),
                Some(o.id.clone()),
                None,
                "override of a rule id that no rule file of this set defines".into(),
            ));
        }
    }
    refusals
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use ringfence_event::{Event, EventKind, Mode};

    use crate::{Hit, Options, RuleFile, compile};

    const RULE: &str = "title: rm\nid: rule-rm\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    Image|endswith: /rm\n  condition: sel\nlevel: informational\n";
    const LOUD: &str = "title: shred\nid: rule-shred\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    Image|endswith: /shred\n  condition: sel\nlevel: high\n";
    const BURST: &str = "title: many rm\nid: corr-rm\ncorrelation:\n  type: event_count\n  rules:\n    - rule-rm\n  group-by:\n    - ParentProcessId\n  timespan: 1m\n  condition:\n    gte: 2\nlevel: medium\n";

    fn exec(image: &str, secs: i64) -> Event {
        let line = format!(
            r#"{{"@timestamp":"2026-11-22T10:00:{secs:02}Z","event":{{"action":"exec"}},"process":{{"pid":{},"executable":"{image}","parent":{{"pid":7}}}}}}"#,
            100 + secs
        );
        let e = Event::from_ecs_line(&line).unwrap();
        assert_eq!(e.kind, Some(EventKind::ProcessExec));
        e
    }

    fn run(files: &[(&str, &str)], events: &[Event]) -> (Vec<String>, Vec<String>) {
        let files: Vec<RuleFile<'_>> = files
            .iter()
            .map(|(p, t)| RuleFile { path: p, text: t })
            .collect();
        let out = compile(&files, &Options::new(Mode::Ebpf));
        let refusals = out.refusals.iter().map(ToString::to_string).collect();
        let engine = out.engine;
        let mut state = engine.new_state();
        let mut found = Vec::new();
        for e in events {
            engine.evaluate(e, &mut state, &mut |h| {
                let f = engine.finding(&h, e).unwrap();
                let kind = match h {
                    Hit::Rule(_) => "rule",
                    Hit::Correlation(_) => "correlation",
                };
                found.push(format!("{kind} {} {}", f.meta.id, f.meta.level));
            });
        }
        (found, refusals)
    }

    #[test]
    fn a_building_block_feeds_its_correlation_and_raises_nothing_itself() {
        let overrides = "ringfence_overrides:\n  - id: rule-rm\n    building_block: true\n    reason: a single rm is housekeeping\n  - id: rule-shred\n    level: medium\n    reason: shred of a temp file is common\n";
        let events = [
            exec("/usr/bin/rm", 1),
            exec("/usr/bin/rm", 2),
            exec("/usr/bin/shred", 3),
        ];
        // Without overrides, every rm is a finding.
        let (found, refusals) = run(&[("rm.yml", RULE), ("shred.yml", LOUD)], &events);
        assert!(refusals.is_empty(), "{refusals:?}");
        assert_eq!(
            found,
            [
                "rule rule-rm informational",
                "rule rule-rm informational",
                "rule rule-shred high"
            ]
        );
        // With them: rm is silent, shred is medium.
        let (found, refusals) = run(
            &[
                ("rm.yml", RULE),
                ("shred.yml", LOUD),
                ("overrides.yml", overrides),
            ],
            &events,
        );
        assert!(refusals.is_empty(), "{refusals:?}");
        assert_eq!(found, ["rule rule-shred medium"]);
        // A correlation over the building block still fires.
        let (found, refusals) = run(
            &[
                ("rm.yml", RULE),
                ("shred.yml", LOUD),
                ("burst.yml", BURST),
                ("overrides.yml", overrides),
            ],
            &events,
        );
        assert!(refusals.is_empty(), "{refusals:?}");
        assert_eq!(
            found,
            ["correlation corr-rm medium", "rule rule-shred medium"]
        );
    }

    #[test]
    fn bad_entries_are_refused_with_file_and_line() {
        let overrides = "ringfence_overrides:\n  - id: rule-rm\n    building_block: true\n  - id: no-such-rule\n    level: low\n    reason: stale\n  - id: rule-rm\n    level: loud\n    reason: typo\n  - id: rule-shred\n    reason: nothing asked\n";
        let (_, refusals) = run(
            &[("rm.yml", RULE), ("shred.yml", LOUD), ("o.yml", overrides)],
            &[],
        );
        assert_eq!(
            refusals,
            [
                "o.yml:2: rule rule-rm: override without a `reason`",
                "o.yml:7: rule rule-rm: `level: loud` is not one of informational, low, medium, high, critical",
                "o.yml:10: rule rule-shred: override changes nothing: give `level` or `building_block: true`",
                "o.yml:4: rule no-such-rule: override of a rule id that no rule file of this set defines",
            ]
        );
    }

    #[test]
    fn an_unknown_key_or_a_second_override_is_refused() {
        let typo =
            "ringfence_overrides:\n  - id: rule-rm\n    bulding_block: true\n    reason: x\n";
        let (_, refusals) = run(&[("rm.yml", RULE), ("o.yml", typo)], &[]);
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        assert!(refusals[0].contains("bulding_block"), "{refusals:?}");
        let twice = "ringfence_overrides:\n  - id: rule-rm\n    level: low\n    reason: x\n  - id: rule-rm\n    building_block: true\n    reason: y\n";
        let (_, refusals) = run(&[("rm.yml", RULE), ("o.yml", twice)], &[]);
        assert_eq!(
            refusals,
            ["o.yml:5: rule rule-rm: a second override of this rule (the first is at o.yml:2)"]
        );
    }
}
