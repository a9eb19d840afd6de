//! Findings as JSON: the ECS form (the matched event with `event.kind: alert`, `rule.*`,
//! `threat.*` and `ringfence.finding`) and the OCSF Detection Finding form (class 2004).
//!
//! A finding may stand for several matches folded together ([`Repeat`]: the agent folds
//! repeats of the same rule, host, actor and target within a window). ECS has no count field:
//! the count is `ringfence.finding.count`, the first and last matches `event.start` and
//! `event.end`. OCSF has them all: `count`, `start_time`, `end_time`.

use ringfence_event::{Event, Timestamp};
use serde_json::{Map, Value as Json, json};

use crate::correlation::Firing;
use crate::rule::RuleMeta;

/// Which JSON form findings take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Ecs,
    Ocsf,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "ecs" => Some(Format::Ecs),
            "ocsf" => Some(Format::Ocsf),
            _ => None,
        }
    }
}

/// One detection, ready to print.
#[derive(Debug, Clone, Copy)]
pub struct Finding<'a> {
    pub meta: &'a RuleMeta,
    pub event: &'a Event,
    /// Set for correlation findings.
    pub correlation: Option<(&'a str, &'a Firing)>,
}

/// Matches folded into one finding: `count` of them, the first at `first`, the last at `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeat {
    pub count: u64,
    pub first: Timestamp,
    pub last: Timestamp,
}

impl Repeat {
    /// One match at `at`.
    pub fn once(at: Timestamp) -> Repeat {
        Repeat {
            count: 1,
            first: at,
            last: at,
        }
    }

    /// Fold one more match at `at` in (the count saturates).
    pub fn add(&mut self, at: Timestamp) {
        self.count = self.count.saturating_add(1);
        self.first = self.first.min(at);
        self.last = self.last.max(at);
    }

    /// Mark `doc`, a finding in `format`, as standing for these matches.
    pub fn apply(&self, format: Format, doc: &mut Json) {
        let Json::Object(doc) = doc else { return };
        match format {
            Format::Ecs => {
                let event = doc
                    .entry("event")
                    .or_insert_with(|| Json::Object(Map::new()));
                if let Json::Object(event) = event {
                    event.insert("start".into(), json!(self.first.to_string()));
                    event.insert("end".into(), json!(self.last.to_string()));
                }
                let rf = doc
                    .entry("ringfence")
                    .or_insert_with(|| Json::Object(Map::new()));
                if let Json::Object(rf) = rf {
                    let finding = rf
                        .entry("finding")
                        .or_insert_with(|| Json::Object(Map::new()));
                    if let Json::Object(finding) = finding {
                        finding.insert("count".into(), json!(self.count));
                    }
                }
            }
            Format::Ocsf => {
                doc.insert("count".into(), json!(self.count));
                doc.insert(
                    "start_time".into(),
                    json!(self.first.as_nanos() / 1_000_000),
                );
                doc.insert("end_time".into(), json!(self.last.as_nanos() / 1_000_000));
            }
        }
    }
}

/// ATT&CK techniques (`attack.t1059.004` → `T1059.004`) and tactics (`attack.execution`).
fn attack(tags: &[String]) -> (Vec<String>, Vec<String>) {
    let mut techniques = Vec::new();
    let mut tactics = Vec::new();
    for t in tags {
        let Some(rest) = t.strip_prefix("attack.") else {
            continue;
        };
        let bytes = rest.as_bytes();
        if bytes.first().is_some_and(|b| *b == b't' || *b == b'T')
            && bytes.get(1).is_some_and(u8::is_ascii_digit)
        {
            techniques.push(rest.to_ascii_uppercase());
        } else if !bytes.first().is_some_and(|b| *b == b'g' || *b == b's') || bytes.len() > 6 {
            tactics.push(rest.replace('-', "_"));
        }
    }
    (techniques, tactics)
}

fn severity(level: &str) -> (u8, &'static str) {
    match level {
        "informational" => (1, "Informational"),
        "low" => (2, "Low"),
        "medium" => (3, "Medium"),
        "high" => (4, "High"),
        "critical" => (5, "Critical"),
        _ => (0, "Unknown"),
    }
}

impl Finding<'_> {
    pub fn to_json(&self, format: Format) -> Json {
        match format {
            Format::Ecs => self.to_ecs(),
            Format::Ocsf => self.to_ocsf(),
        }
    }

    /// The finding standing for the matches `repeat` counts (this one the last of them).
    pub fn to_json_repeated(&self, format: Format, repeat: &Repeat) -> Json {
        let mut doc = self.to_json(format);
        repeat.apply(format, &mut doc);
        doc
    }

    /// The ECS form: the matched event's fields (process ancestry included) with the alert on top.
    pub fn to_ecs(&self) -> Json {
        let mut doc = match self.event.to_ecs() {
            Json::Object(m) => m,
            _ => Map::new(),
        };
        let action = self.event.kind.map(|k| k.action()).unwrap_or("unknown");
        let (techniques, tactics) = attack(&self.meta.tags);
        let (sev, _) = severity(&self.meta.level);
        if let Some(Json::Object(event)) = doc.get_mut("event") {
            event.insert("kind".into(), json!("alert"));
            event.insert("severity".into(), json!(sev));
            event.insert("action".into(), json!(action));
        }
        let mut rule = json!({
            "id": self.meta.id,
            "name": self.meta.title,
            "description": self.meta.description,
            "ruleset": self.meta.file,
            "reference": self.meta.references.first(),
        });
        if !self.meta.falsepositives.is_empty() {
            rule["falsepositives"] = json!(self.meta.falsepositives);
        }
        doc.insert("rule".into(), rule);
        doc.insert(
            "threat".into(),
            json!({
                "framework": "MITRE ATT&CK",
                "technique": {"id": techniques},
                "tactic": {"name": tactics},
            }),
        );
        let mut finding = json!({
            "level": self.meta.level,
            "tags": self.meta.tags,
            "rule_line": self.meta.line,
        });
        if !self.meta.response.is_empty() {
            finding["response"] = json!(self.meta.response);
        }
        if let Some(template) = &self.meta.output {
            finding["output"] = json!(template);
        }
        if let Some((kind, f)) = self.correlation {
            let group: Map<String, Json> = f
                .group
                .iter()
                .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                .collect();
            finding["correlation"] = json!({"type": kind, "group": group, "count": f.count});
        }
        match doc.get_mut("ringfence") {
            Some(Json::Object(rf)) => {
                rf.insert("finding".into(), finding);
            }
            _ => {
                doc.insert("ringfence".into(), json!({ "finding": finding }));
            }
        }
        Json::Object(doc)
    }

    /// OCSF 1.3 Detection Finding (class_uid 2004).
    pub fn to_ocsf(&self) -> Json {
        let (techniques, tactics) = attack(&self.meta.tags);
        let (sev_id, sev) = severity(&self.meta.level);
        let time_ms = self.event.timestamp.as_nanos() / 1_000_000;
        let attacks: Vec<Json> = techniques
            .iter()
            .map(|t| json!({"technique": {"uid": t}, "version": "15"}))
            .chain(
                tactics
                    .iter()
                    .map(|t| json!({"tactic": {"name": t}, "version": "15"})),
            )
            .collect();
        let mut evidence = Map::new();
        if let Some(p) = &self.event.process {
            let parent = p.parent.as_ref().map(|q| {
                json!({"pid": q.pid, "file": {"path": q.executable}, "cmd_line": q.command_line})
            });
            evidence.insert(
                "process".into(),
                json!({
                    "pid": p.pid,
                    "name": p.name,
                    "cmd_line": p.command_line,
                    "file": {"path": p.executable},
                    "parent_process": parent,
                    "lineage": p.ancestors.executables,
                }),
            );
        }
        if let Some(f) = &self.event.file {
            evidence.insert("file".into(), json!({"path": f.path, "name": f.name()}));
        }
        if let Some(n) = &self.event.network {
            evidence.insert(
                "dst_endpoint".into(),
                json!({"ip": n.destination_ip, "port": n.destination_port}),
            );
            evidence.insert(
                "src_endpoint".into(),
                json!({"ip": n.source_ip, "port": n.source_port}),
            );
        }
        let uid = format!(
            "{}:{}:{}",
            self.meta.id,
            self.event.timestamp.as_nanos(),
            self.event.process.as_ref().map_or(0, |p| p.pid)
        );
        json!({
            "class_uid": 2004,
            "class_name": "Detection Finding",
            "category_uid": 2,
            "category_name": "Findings",
            "activity_id": 1,
            "activity_name": "Create",
            "type_uid": 200401,
            "type_name": "Detection Finding: Create",
            "severity_id": sev_id,
            "severity": sev,
            "status_id": 1,
            "status": "New",
            "time": time_ms,
            "message": self.meta.title,
            "metadata": {
                "version": "1.3.0",
                "product": {"name": "Ringfence", "vendor_name": "Ringfence"},
            },
            "finding_info": {
                "uid": uid,
                "title": self.meta.title,
                "desc": self.meta.description,
                "types": [self.correlation.map_or("Sigma rule", |_| "Sigma correlation")],
                "analytic": {"uid": self.meta.id, "name": self.meta.title, "type_id": 1, "type": "Rule"},
                "attacks": attacks,
            },
            "evidences": [Json::Object(evidence)],
            "unmapped": {"event": self.event.to_ecs(), "tags": self.meta.tags},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_tags_split() {
        let tags = vec![
            "attack.execution".to_string(),
            "attack.t1059.004".to_string(),
            "attack.command-and-control".to_string(),
            "cve.2021-1".to_string(),
        ];
        let (t, a) = attack(&tags);
        assert_eq!(t, vec!["T1059.004"]);
        assert_eq!(a, vec!["execution", "command_and_control"]);
    }

    #[test]
    fn a_repeat_shows_its_count_and_times_in_ecs_and_ocsf() {
        use ringfence_event::{EventKind, SourceKind};
        let meta = RuleMeta {
            id: "r1".into(),
            title: "Rule".into(),
            level: "low".into(),
            ..RuleMeta::default()
        };
        let event = Event::new(
            EventKind::ProcessExec,
            SourceKind::Ebpf,
            Timestamp::from_secs(1_700_000_060),
        );
        let finding = Finding {
            meta: &meta,
            event: &event,
            correlation: None,
        };
        let mut repeat = Repeat::once(Timestamp::from_secs(1_700_000_000));
        repeat.add(Timestamp::from_secs(1_700_000_060));
        repeat.add(Timestamp::from_secs(1_700_000_030));
        let ecs = finding.to_json_repeated(Format::Ecs, &repeat);
        assert_eq!(ecs["ringfence"]["finding"]["count"], 3);
        assert_eq!(ecs["ringfence"]["finding"]["level"], "low");
        assert_eq!(ecs["event"]["start"], "2023-11-14T22:13:20.000000000Z");
        assert_eq!(ecs["event"]["end"], "2023-11-14T22:14:20.000000000Z");
        assert_eq!(ecs["event"]["kind"], "alert");
        let ocsf = finding.to_json_repeated(Format::Ocsf, &repeat);
        assert_eq!(ocsf["count"], 3);
        assert_eq!(ocsf["start_time"], 1_700_000_000_000_i64);
        assert_eq!(ocsf["end_time"], 1_700_000_060_000_i64);
        // A single finding carries no count.
        assert!(finding.to_json(Format::Ecs)["ringfence"]["finding"]["count"].is_null());
    }

    #[test]
    fn a_rules_false_positives_travel_in_the_finding_bounded() {
        use crate::{Options, RuleFile, compile};
        use ringfence_event::{Event, Mode};
        let long = "x".repeat(400);
        let rule = format!(
            "title: t\nid: rule-fp\nlogsource:\n  product: linux\n  category: process_creation\n\
             detection:\n  sel:\n    Image|endswith: /evil\n  condition: sel\n\
             falsepositives:\n  - Admins running evil on purpose\n  - Unknown\n  - {long}\nlevel: low\n"
        );
        let files = [RuleFile {
            path: "rules/fp.yml",
            text: &rule,
        }];
        let compiled = compile(&files, &Options::new(Mode::Ebpf));
        assert!(compiled.refusals.is_empty(), "{:?}", compiled.refusals);
        let engine = compiled.engine;
        let event = Event::from_ecs(&json!({
            "@timestamp": "2026-01-01T00:00:00Z",
            "event": {"action": "exec", "kind": "event", "category": ["process"], "type": ["start"]},
            "process": {"executable": "/tmp/evil", "pid": 9, "args": ["/tmp/evil"]},
        }))
        .unwrap();
        let mut state = engine.new_state();
        let mut hits = Vec::new();
        engine.evaluate(&event, &mut state, &mut |h| hits.push(h));
        assert_eq!(hits.len(), 1);
        let doc = engine
            .finding(&hits[0], &event)
            .unwrap()
            .to_json(Format::Ecs);
        let fps = doc["rule"]["falsepositives"].as_array().unwrap();
        assert_eq!(fps.len(), 2, "{fps:?}");
        assert_eq!(fps[0], "Admins running evil on purpose");
        assert_eq!(fps[1].as_str().unwrap().chars().count(), 300);
    }
}
