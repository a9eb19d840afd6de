//! Content tests: each rule file has a test file (`rule: <id>`, `match:` and `no_match:` lists
//! of ECS events; for a correlation an entry is a list of events in order). Running them is
//! part of validating content, at build time and again on load.

use ringfence_event::Event;
use serde_json::Value as Json;

use crate::engine::{Engine, Hit};

/// One parsed test file.
#[derive(Debug, Clone)]
pub struct ContentTest {
    pub file: String,
    pub rule: String,
    pub cases: Vec<Case>,
}

/// One `match` or `no_match` entry.
#[derive(Debug, Clone)]
pub struct Case {
    pub expect_match: bool,
    pub events: Vec<Event>,
    pub line: u32,
}

/// A test file that could not be read, or a case that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFailure {
    pub file: String,
    pub line: Option<u32>,
    pub rule: Option<String>,
    pub message: String,
}

impl std::fmt::Display for TestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(r) = &self.rule {
            write!(f, ": rule {r}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Lines of the entries of the top-level list `key`.
fn entry_lines(text: &str, key: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if !line.starts_with(' ') && !line.starts_with('-') && !line.trim().is_empty() {
            inside = line.trim_end() == format!("{key}:");
            continue;
        }
        if inside
            && line.trim_start().starts_with("- ")
            && line.len() - line.trim_start().len() <= 2
        {
            out.push(n);
        }
    }
    out
}

/// Parses a test file.
pub fn parse(file: &str, text: &str) -> Result<ContentTest, TestFailure> {
    let fail = |line: Option<u32>, message: String| TestFailure {
        file: file.to_owned(),
        line,
        rule: None,
        message,
    };
    let doc: Json = yaml_serde::from_str(text).map_err(|e| fail(None, format!("not YAML: {e}")))?;
    let rule = doc
        .get("rule")
        .and_then(Json::as_str)
        .ok_or_else(|| fail(Some(1), "missing `rule: <id>`".into()))?
        .to_owned();
    let mut cases = Vec::new();
    for (key, expect_match) in [("match", true), ("no_match", false)] {
        let lines = entry_lines(text, key);
        let entries = match doc.get(key) {
            None | Some(Json::Null) => continue,
            Some(Json::Array(a)) => a,
            Some(_) => return Err(fail(None, format!("`{key}` must be a list"))),
        };
        for (i, entry) in entries.iter().enumerate() {
            let line = lines.get(i).copied();
            let list: Vec<&Json> = match entry {
                Json::Array(events) => events.iter().collect(),
                one => vec![one],
            };
            let mut events = Vec::with_capacity(list.len());
            for ev in list {
                let e = Event::from_ecs(ev)
                    .map_err(|e| fail(line, format!("`{key}` entry {}: {e}", i + 1)))?;
                events.push(e);
            }
            cases.push(Case {
                expect_match,
                events,
                line: line.unwrap_or(0),
            });
        }
    }
    Ok(ContentTest {
        file: file.to_owned(),
        rule,
        cases,
    })
}

/// Whether the output named `rule` (a rule or correlation id or name) matches across `events`.
pub fn output_matches(engine: &Engine, rule: &str, events: &[Event]) -> Option<bool> {
    let named = |id: &str, name: Option<&String>| id == rule || name.is_some_and(|n| n == rule);
    if let Some(r) = engine
        .rules()
        .iter()
        .find(|r| named(&r.meta.id, r.meta.name.as_ref()))
    {
        return Some(events.iter().any(|e| r.matches(e)));
    }
    let c = engine
        .correlations()
        .iter()
        .position(|c| named(&c.meta.id, c.meta.name.as_ref()))?;
    let mut state = engine.new_state();
    let mut hit = false;
    for e in events {
        engine.evaluate_inner(e, &mut state, &|_| true, true, &mut |h| {
            if let Hit::Correlation(f) = h
                && f.correlation == c
            {
                hit = true;
            }
        });
    }
    Some(hit)
}

/// Runs every case; returns the number of cases run and the failures.
pub fn run(engine: &Engine, tests: &[ContentTest]) -> (usize, Vec<TestFailure>) {
    let mut failures = Vec::new();
    let mut run = 0;
    for t in tests {
        for case in &t.cases {
            run += 1;
            let fail = |message: String| TestFailure {
                file: t.file.clone(),
                line: Some(case.line),
                rule: Some(t.rule.clone()),
                message,
            };
            match output_matches(engine, &t.rule, &case.events) {
                None => failures.push(fail("no compiled rule has this id".into())),
                Some(m) if m != case.expect_match => failures.push(fail(if case.expect_match {
                    "expected a match, got none".into()
                } else {
                    "expected no match, got one".into()
                })),
                Some(_) => {}
            }
        }
    }
    (run, failures)
}
