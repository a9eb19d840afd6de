//! Detection efficacy over recorded corpora (`ringfence eval`, the corpus tests in CI).
//!
//! An attack corpus is a manifest (`cases.json`: one case per Atomic Red Team test, with its
//! ATT&CK technique) and, per sensor mode, the events each case produced. A case is *observed*
//! in a mode when the sensors recorded any event of it and the manifest does not mark its
//! attack step `unobservable` (the step leaves no event any source records: a shell built-in
//! reading a file, CPU load), and *detected* when replaying its events alone, through fresh
//! state, raises a finding at medium or above; rates count detected cases among observed
//! ones. A benign corpus is
//! one session per mode; what matters there is the findings per hour by level.
//!
//! Pure functions of (engine, events): the callers read the files.

use std::collections::{BTreeMap, BTreeSet};

use ringfence_event::Event;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;

/// Sigma's levels, lowest first.
pub const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

/// Cases in one manifest, at most.
pub const MAX_CASES: usize = 10_000;

/// The rank of a level in [`LEVELS`] (unknown levels rank lowest).
pub fn level_rank(level: &str) -> usize {
    LEVELS.iter().position(|l| *l == level).unwrap_or(0)
}

/// Whether a finding at `level` is an alert: medium or above.
pub fn is_alert(level: &str) -> bool {
    level_rank(level) >= 2
}

/// One case of an attack corpus's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    /// `T1003.008-1`: the technique and the atomic's test number.
    pub id: String,
    /// The ATT&CK technique (`T1003.008`).
    pub technique: String,
    /// The Atomic Red Team test's GUID.
    #[serde(default)]
    pub atomic: String,
    pub name: String,
    /// How the case differs from the atomic, to run safely here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why the attack step leaves no event that any source records, and which source would
    /// record it; such a case is run and listed but not counted as observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unobservable: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// What the corpus is, for readers.
    #[serde(default, rename = "about")]
    _about: Option<String>,
    cases: Vec<CaseSpec>,
}

/// Parses a `cases.json` manifest (JSON, or the same in YAML); the error names what is wrong.
pub fn parse_manifest(text: &str) -> Result<Vec<CaseSpec>, String> {
    let m: Manifest = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
    if m.cases.len() > MAX_CASES {
        return Err(format!(
            "{} cases: more than the {MAX_CASES} accepted",
            m.cases.len()
        ));
    }
    let mut seen = BTreeSet::new();
    for c in &m.cases {
        if c.id.is_empty() || c.id.contains(['/', '\\']) || c.id.starts_with('.') {
            return Err(format!("case id `{}` is not a file name", c.id));
        }
        if !seen.insert(c.id.as_str()) {
            return Err(format!("case id `{}` appears twice", c.id));
        }
        if c.unobservable
            .as_deref()
            .is_some_and(|w| w.trim().is_empty())
        {
            return Err(format!("case {}: `unobservable` needs a reason", c.id));
        }
        if !c.technique.starts_with('T') {
            return Err(format!(
                "case {}: technique `{}` is not an ATT&CK id",
                c.id, c.technique
            ));
        }
    }
    Ok(m.cases)
}

/// A rule that raised a finding, with its level.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Raised {
    pub level: String,
    pub rule_id: String,
    pub title: String,
}

/// Replays `events` in order through fresh state; each rule or correlation that raised a
/// finding, once, at its level, highest first.
pub fn raised(engine: &Engine, events: &[Event]) -> Vec<Raised> {
    let mut state = engine.new_state();
    let mut out: BTreeMap<String, Raised> = BTreeMap::new();
    for e in events {
        engine.evaluate(e, &mut state, &mut |h| {
            if let Some(f) = engine.finding(&h, e) {
                out.entry(f.meta.id.clone()).or_insert_with(|| Raised {
                    level: f.meta.level.clone(),
                    rule_id: f.meta.id.clone(),
                    title: f.meta.title.clone(),
                });
            }
        });
    }
    let mut v: Vec<Raised> = out.into_values().collect();
    v.sort_by(|a, b| {
        level_rank(&b.level)
            .cmp(&level_rank(&a.level))
            .then_with(|| a.title.cmp(&b.title))
    });
    v
}

/// One case's result in one mode.
#[derive(Debug, Clone, Serialize)]
pub struct CaseOutcome {
    pub id: String,
    pub technique: String,
    pub events: usize,
    /// The manifest marks the attack step unobservable.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unobservable: bool,
    /// Findings at medium or above.
    pub detected: bool,
    pub raised: Vec<Raised>,
}

impl CaseOutcome {
    /// Events were recorded and the manifest does not mark the attack step unobservable.
    pub fn observed(&self) -> bool {
        self.events > 0 && !self.unobservable
    }

    /// Detected among the observed (what the rates count).
    pub fn counted_detected(&self) -> bool {
        self.observed() && self.detected
    }
}

/// Runs one case.
pub fn run_case(engine: &Engine, spec: &CaseSpec, events: &[Event]) -> CaseOutcome {
    let raised = raised(engine, events);
    CaseOutcome {
        id: spec.id.clone(),
        technique: spec.technique.clone(),
        events: events.len(),
        unobservable: spec.unobservable.is_some(),
        detected: raised.iter().any(|r| is_alert(&r.level)),
        raised,
    }
}

/// Totals of one mode over an attack corpus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rate {
    pub run: usize,
    pub observed: usize,
    pub detected: usize,
}

impl Rate {
    pub fn of(outcomes: &[CaseOutcome]) -> Rate {
        Rate {
            run: outcomes.len(),
            observed: outcomes.iter().filter(|o| o.observed()).count(),
            detected: outcomes.iter().filter(|o| o.counted_detected()).count(),
        }
    }

    /// Detected over observed, in percent.
    pub fn percent(&self) -> f64 {
        if self.observed == 0 {
            0.0
        } else {
            self.detected as f64 * 100.0 / self.observed as f64
        }
    }
}

/// One ATT&CK technique's row in one mode.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TechniqueRow {
    pub technique: String,
    pub rate: Rate,
    /// Titles of the rules that raised medium or above on its cases.
    pub rules: BTreeSet<String>,
}

/// Per-technique rows, by technique id.
pub fn by_technique(outcomes: &[CaseOutcome]) -> Vec<TechniqueRow> {
    let mut rows: BTreeMap<&str, TechniqueRow> = BTreeMap::new();
    for o in outcomes {
        let row = rows
            .entry(o.technique.as_str())
            .or_insert_with(|| TechniqueRow {
                technique: o.technique.clone(),
                ..TechniqueRow::default()
            });
        row.rate.run += 1;
        row.rate.observed += usize::from(o.observed());
        row.rate.detected += usize::from(o.counted_detected());
        for r in o.raised.iter().filter(|r| is_alert(&r.level)) {
            row.rules.insert(r.title.clone());
        }
    }
    rows.into_values().collect()
}

/// ATT&CK tactics in matrix order, with their technique prefixes (the atomic's technique, by
/// its parent id). A technique in no list goes to the last column.
pub const TACTICS: &[(&str, &[&str])] = &[
    ("Execution", &["T1059", "T1610", "T1609", "T1053", "T1569"]),
    (
        "Persistence",
        &["T1546", "T1543", "T1098", "T1136", "T1037", "T1547"],
    ),
    (
        "Privilege Escalation",
        &["T1548", "T1611", "T1078", "T1556"],
    ),
    (
        "Defense Evasion",
        &[
            "T1070", "T1685", "T1686", "T1562", "T1222", "T1564", "T1036", "T1140", "T1027",
            "T1574", "T1690",
        ],
    ),
    ("Credential Access", &["T1003", "T1552", "T1110", "T1555"]),
    (
        "Discovery",
        &[
            "T1082", "T1033", "T1057", "T1087", "T1049", "T1518", "T1083", "T1201", "T1007",
            "T1016", "T1614", "T1046", "T1069", "T1018", "T1652",
        ],
    ),
    ("Collection", &["T1560", "T1005", "T1074", "T1113", "T1115"]),
    (
        "C2 and Exfiltration",
        &["T1105", "T1071", "T1048", "T1567", "T1572", "T1090"],
    ),
    (
        "Impact",
        &["T1496", "T1485", "T1489", "T1486", "T1529", "T1531"],
    ),
];

/// The index in [`TACTICS`] of `technique`'s tactic (the last column when it is in no list).
pub fn tactic_of(technique: &str) -> usize {
    let parent = technique.split('.').next().unwrap_or(technique);
    TACTICS
        .iter()
        .position(|(_, ts)| ts.contains(&parent))
        .unwrap_or(TACTICS.len() - 1)
}

/// One mode's figures in a [`Coverage`] row or total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeRate {
    pub mode: String,
    pub run: usize,
    pub observed: usize,
    pub detected: usize,
}

/// One technique's row of a [`Coverage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageRow {
    pub technique: String,
    pub tactic: String,
    pub modes: Vec<ModeRate>,
    /// Titles of the rules that raised medium or above on its cases, in any mode.
    pub rules: Vec<String>,
}

/// A case marked unobservable, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unobservable {
    pub id: String,
    pub why: String,
}

/// An attack corpus's coverage in every recorded mode: what `ringfence eval` prints, as data
/// (`corpus/attack/coverage.json`, which the console's ATT&CK page shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub cases: usize,
    pub modes: Vec<ModeRate>,
    /// By tactic in [`TACTICS`] order, then technique.
    pub techniques: Vec<CoverageRow>,
    pub unobservable: Vec<Unobservable>,
}

fn mode_rate(mode: &str, r: &Rate) -> ModeRate {
    ModeRate {
        mode: mode.to_owned(),
        run: r.run,
        observed: r.observed,
        detected: r.detected,
    }
}

/// The coverage of `cases` from each mode's outcomes (`(mode name, outcomes)`, the outcomes in
/// `cases` order).
pub fn coverage(cases: &[CaseSpec], results: &[(String, Vec<CaseOutcome>)]) -> Coverage {
    let mut techniques: BTreeMap<(usize, String), CoverageRow> = BTreeMap::new();
    for (mode, outcomes) in results {
        for row in by_technique(outcomes) {
            let t = techniques
                .entry((tactic_of(&row.technique), row.technique.clone()))
                .or_insert_with(|| CoverageRow {
                    technique: row.technique.clone(),
                    tactic: TACTICS
                        .get(tactic_of(&row.technique))
                        .map(|(name, _)| (*name).to_owned())
                        .unwrap_or_default(),
                    modes: Vec::new(),
                    rules: Vec::new(),
                });
            t.modes.push(mode_rate(mode, &row.rate));
            for r in row.rules {
                if !t.rules.contains(&r) {
                    t.rules.push(r);
                }
            }
        }
    }
    let mut techniques: Vec<CoverageRow> = techniques.into_values().collect();
    for t in &mut techniques {
        t.rules.sort();
    }
    Coverage {
        cases: cases.len(),
        modes: results
            .iter()
            .map(|(mode, o)| mode_rate(mode, &Rate::of(o)))
            .collect(),
        techniques,
        unobservable: cases
            .iter()
            .filter_map(|c| {
                c.unobservable.as_ref().map(|why| Unobservable {
                    id: c.id.clone(),
                    why: why.clone(),
                })
            })
            .collect(),
    }
}

/// Findings of a benign session by level.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Noise {
    pub events: usize,
    /// First to last event.
    pub seconds: f64,
    /// Findings per level, every level present.
    pub findings: BTreeMap<String, u64>,
    /// Each alert (medium or above): its rule and how often.
    pub alerts: Vec<(Raised, u64)>,
}

impl Noise {
    /// Findings at `level` per hour of the session.
    pub fn per_hour(&self, level: &str) -> f64 {
        let n = self.findings.get(level).copied().unwrap_or(0);
        n as f64 * 3600.0 / self.seconds.max(1e-3)
    }
}

/// Replays a benign session and counts its findings.
pub fn run_benign(engine: &Engine, events: &[Event]) -> Noise {
    let mut state = engine.new_state();
    let mut findings: BTreeMap<String, u64> = LEVELS.iter().map(|l| ((*l).to_owned(), 0)).collect();
    let mut alerts: BTreeMap<Raised, u64> = BTreeMap::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for e in events {
        first = first.min(e.timestamp.as_nanos());
        last = last.max(e.timestamp.as_nanos());
        engine.evaluate(e, &mut state, &mut |h| {
            if let Some(f) = engine.finding(&h, e) {
                let n = findings.entry(f.meta.level.clone()).or_default();
                *n = n.saturating_add(1);
                if is_alert(&f.meta.level) {
                    let n = alerts
                        .entry(Raised {
                            level: f.meta.level.clone(),
                            rule_id: f.meta.id.clone(),
                            title: f.meta.title.clone(),
                        })
                        .or_default();
                    *n = n.saturating_add(1);
                }
            }
        });
    }
    let seconds = if events.is_empty() {
        0.0
    } else {
        (last.saturating_sub(first)).max(0) as f64 / 1e9
    };
    Noise {
        events: events.len(),
        seconds,
        findings,
        alerts: alerts.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use ringfence_event::{Event, Mode};

    use super::*;
    use crate::{Options, RuleFile, compile};

    const RULES: &str = "title: shadow read\nid: r-shadow\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    CommandLine|contains: /etc/shadow\n  condition: sel\nlevel: high\n---\ntitle: id run\nid: r-id\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    Image|endswith: /id\n  condition: sel\nlevel: low\n";

    fn exec(image: &str, args: &str, secs: u32) -> Event {
        let args_text = args;
        let args: Vec<String> = args.split(' ').map(|a| format!("\"{a}\"")).collect();
        let line = format!(
            r#"{{"@timestamp":"2026-11-22T10:00:{secs:02}Z","event":{{"action":"exec"}},"process":{{"pid":{},"executable":"{image}","command_line":"{cmd}","args":[{}]}}}}"#,
            100 + secs,
            args.join(","),
            cmd = args_text
        );
        Event::from_ecs_line(&line).unwrap()
    }

    fn engine() -> Engine {
        let files = [RuleFile {
            path: "r.yml",
            text: RULES,
        }];
        compile(&files, &Options::new(Mode::Ebpf)).engine
    }

    fn spec(id: &str, technique: &str) -> CaseSpec {
        CaseSpec {
            id: id.into(),
            technique: technique.into(),
            atomic: String::new(),
            name: id.into(),
            note: None,
            unobservable: None,
        }
    }

    #[test]
    fn cases_are_detected_at_medium_or_above_and_rows_group_by_technique() {
        let engine = engine();
        let shadow = [exec("/usr/bin/cat", "cat /etc/shadow", 1)];
        let id = [exec("/usr/bin/id", "id", 2)];
        let outcomes = [
            run_case(&engine, &spec("T1003.008-1", "T1003.008"), &shadow),
            run_case(&engine, &spec("T1033-2", "T1033"), &id),
            run_case(&engine, &spec("T1003.008-5", "T1003.008"), &[]),
        ];
        assert!(outcomes[0].detected);
        assert!(!outcomes[1].detected, "a low finding is not a detection");
        assert_eq!(outcomes[1].raised.len(), 1);
        assert!(!outcomes[2].observed());
        assert_eq!(
            Rate::of(&outcomes),
            Rate {
                run: 3,
                observed: 2,
                detected: 1
            }
        );
        let rows = by_technique(&outcomes);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].technique, "T1003.008");
        assert_eq!(
            rows[0].rate,
            Rate {
                run: 2,
                observed: 1,
                detected: 1
            }
        );
        assert_eq!(rows[0].rules.iter().collect::<Vec<_>>(), ["shadow read"]);
        assert!(rows[1].rules.is_empty());
    }

    #[test]
    fn unobservable_cases_are_run_but_not_counted() {
        let engine = engine();
        let mut builtin = spec("T1003.008-5", "T1003.008");
        builtin.unobservable = Some("a shell built-in reads the file".into());
        let shadow = [exec("/usr/bin/cat", "cat /etc/shadow", 1)];
        let write = [exec("/usr/bin/id", "id", 2)];
        let outcomes = [
            run_case(&engine, &spec("T1003.008-1", "T1003.008"), &shadow),
            run_case(&engine, &builtin, &write),
        ];
        assert!(outcomes[1].unobservable && !outcomes[1].observed());
        assert_eq!(
            Rate::of(&outcomes),
            Rate {
                run: 2,
                observed: 1,
                detected: 1
            }
        );
        // Detected though marked unobservable: not counted (the corpus test flags the mark).
        let marked_but_seen = run_case(&engine, &builtin, &shadow);
        assert!(marked_but_seen.detected && !marked_but_seen.counted_detected());
        assert_eq!(Rate::of(&[marked_but_seen]).detected, 0);
    }

    #[test]
    fn coverage_rows_follow_the_tactics_and_list_unobservable_cases() {
        let engine = engine();
        let mut builtin = spec("T1003.008-5", "T1003.008");
        builtin.unobservable = Some("a shell built-in reads the file".into());
        let cases = [
            spec("T1033-2", "T1033"),
            spec("T1003.008-1", "T1003.008"),
            builtin,
        ];
        let events = [
            vec![exec("/usr/bin/id", "id", 2)],
            vec![exec("/usr/bin/cat", "cat /etc/shadow", 1)],
            vec![exec("/usr/bin/id", "id", 3)],
        ];
        let outcomes: Vec<CaseOutcome> = cases
            .iter()
            .zip(&events)
            .map(|(c, e)| run_case(&engine, c, e))
            .collect();
        let c = coverage(&cases, &[("ebpf".into(), outcomes)]);
        assert_eq!(c.cases, 3);
        assert_eq!(
            c.modes,
            [ModeRate {
                mode: "ebpf".into(),
                run: 3,
                observed: 2,
                detected: 1
            }]
        );
        // Credential Access comes before Discovery in the matrix.
        let order: Vec<(&str, &str)> = c
            .techniques
            .iter()
            .map(|t| (t.tactic.as_str(), t.technique.as_str()))
            .collect();
        assert_eq!(
            order,
            [("Credential Access", "T1003.008"), ("Discovery", "T1033")]
        );
        assert_eq!(c.techniques[0].rules, ["shadow read"]);
        assert_eq!(c.techniques[0].modes[0].observed, 1);
        assert_eq!(c.unobservable.len(), 1);
        assert_eq!(c.unobservable[0].id, "T1003.008-5");
    }

    #[test]
    fn benign_noise_counts_findings_per_level_over_the_session() {
        let engine = engine();
        let events = [
            exec("/usr/bin/id", "id", 0),
            exec("/usr/bin/id", "id", 10),
            exec("/usr/bin/cat", "cat /etc/shadow", 36),
        ];
        let noise = run_benign(&engine, &events);
        assert_eq!(noise.seconds, 36.0);
        assert_eq!(noise.findings["low"], 2);
        assert_eq!(noise.findings["high"], 1);
        assert_eq!(noise.findings["critical"], 0);
        assert_eq!(noise.per_hour("low"), 200.0);
        assert_eq!(noise.alerts.len(), 1);
        assert_eq!(noise.alerts[0].1, 1);
    }

    #[test]
    fn manifests_with_bad_ids_or_unknown_keys_are_refused() {
        let ok = "cases:\n  - id: T1033-2\n    technique: T1033\n    name: users\n";
        assert_eq!(parse_manifest(ok).unwrap().len(), 1);
        let twice = "cases:\n  - id: a\n    technique: T1\n    name: x\n  - id: a\n    technique: T1\n    name: y\n";
        assert!(parse_manifest(twice).unwrap_err().contains("twice"));
        let path = "cases:\n  - id: ../x\n    technique: T1\n    name: x\n";
        assert!(parse_manifest(path).unwrap_err().contains("file name"));
        let typo = "cases:\n  - id: a\n    technique: T1\n    name: x\n    tecnique: T2\n";
        assert!(parse_manifest(typo).unwrap_err().contains("tecnique"));
        let no_reason =
            "cases:\n  - id: a\n    technique: T1\n    name: x\n    unobservable: ' '\n";
        assert!(parse_manifest(no_reason).unwrap_err().contains("reason"));
    }
}
