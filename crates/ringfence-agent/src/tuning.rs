//! Local tuning for hosts without a console: `[detect]` in agent.toml switches rules off
//! (`disabled_rules`) and silences a rule where listed fields match (`[[detect.exceptions]]`,
//! or `[[exceptions]]` tables in an `exceptions_file`), Falco's exception form. A silenced
//! match is no finding and no response; each is counted, and what is tuned is reported in the
//! check-in so the console can show what is tuned where. The agent's own tamper and health
//! rules cannot be tuned away.
//!
//! The same [`Exception`] and the same matcher serve exceptions that come from the console as
//! content: an exceptions overlay in a signed bundle (`exceptions/*.toml`, entry kind 5) is
//! read by [`parse_overlay`] when the bundle is validated (at `content build`, on the console
//! before signing, and on load), refusing an exception for a rule the bundle does not define
//! or a field outside the sensor field schema; the compiled content then drops the matches
//! it silences ([`overlay_silences`]) before they become findings. An overlay exception may
//! list no field (it silences the rule on its hosts, or everywhere: the console holds such an
//! exception for a second operator); a local one may not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most disabled rules, and most exceptions (config and file together).
pub const MAX_ENTRIES: usize = 1024;
/// Most fields in one exception, and values per field.
pub const MAX_FIELDS: usize = 16;
pub const MAX_VALUES: usize = 64;

/// `[detect]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSection {
    /// Rule ids whose matches are dropped on this host.
    pub disabled_rules: Vec<String>,
    /// A TOML file of `[[exceptions]]` tables, read at start.
    pub exceptions_file: Option<PathBuf>,
    pub exceptions: Vec<Exception>,
    /// The exceptions read from `exceptions_file` (filled by the config loader).
    #[serde(skip)]
    pub file_exceptions: Vec<Exception>,
}

/// "This rule, on these hosts, when these fields match": every listed field must equal one
/// of its values (exactly, as text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    pub rule: String,
    /// Host names it applies on; empty for every host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// ECS field (dotted) → accepted values.
    #[serde(default)]
    pub fields: BTreeMap<String, Vec<String>>,
    /// Why (shown to whoever reviews it).
    #[serde(default)]
    pub comment: String,
}

/// Rules the agent raises about itself: never tuned away.
fn protected(rule: &str) -> bool {
    rule.starts_with("ringfence-tamper-") || rule.starts_with("ringfence-health-")
}

impl Exception {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = self.bound_problems();
        if self.fields.is_empty() {
            out.push((
                "fields",
                "an exception needs at least one field (to silence a whole rule, use \
                 disabled_rules)"
                    .into(),
            ));
        }
        out
    }

    /// Problems shared by local and overlay exceptions: a rule id, not a protected one, and
    /// every list within its bound.
    fn bound_problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.rule.trim().is_empty() {
            out.push(("rule", "must name a rule id".into()));
        } else if protected(&self.rule) {
            out.push((
                "rule",
                format!(
                    "{}: the agent's tamper and health rules cannot be tuned",
                    self.rule
                ),
            ));
        }
        if self.hosts.len() > MAX_VALUES {
            out.push(("hosts", format!("at most {MAX_VALUES} hosts")));
        }
        if self.fields.len() > MAX_FIELDS {
            out.push(("fields", format!("at most {MAX_FIELDS} fields")));
        }
        for (field, values) in &self.fields {
            if values.is_empty() || values.len() > MAX_VALUES {
                out.push((
                    "fields",
                    format!("{field}: 1…{MAX_VALUES} values, got {}", values.len()),
                ));
            }
        }
        out
    }

    /// Whether this exception silences `finding` (its rule, its hosts, its fields).
    fn silences(&self, rule: &str, finding: &Value) -> bool {
        self.rule == rule && self.matches(finding)
    }

    fn matches(&self, finding: &Value) -> bool {
        if !self.hosts.is_empty() {
            let host = finding.pointer("/host/name").and_then(Value::as_str);
            if !host.is_some_and(|h| self.hosts.iter().any(|x| x == h)) {
                return false;
            }
        }
        self.fields.iter().all(|(field, values)| {
            let Some(v) = crate::outputs::text::lookup(finding, field) else {
                return false;
            };
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return false,
            };
            values.contains(&text)
        })
    }
}

/// `[[exceptions]]` of an exceptions file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionsFile {
    #[serde(default)]
    exceptions: Vec<Exception>,
}

impl DetectSection {
    /// Problems as (key, message, line-hint key) for agent.toml.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.disabled_rules.len() > MAX_ENTRIES {
            out.push((
                "disabled_rules".into(),
                format!(
                    "at most {MAX_ENTRIES} rules, got {}",
                    self.disabled_rules.len()
                ),
            ));
        }
        for r in &self.disabled_rules {
            if r.trim().is_empty() {
                out.push(("disabled_rules".into(), "an empty rule id".into()));
            } else if protected(r) {
                out.push((
                    "disabled_rules".into(),
                    format!("{r}: the agent's tamper and health rules cannot be disabled"),
                ));
            }
        }
        if self.exceptions.len() > MAX_ENTRIES {
            out.push((
                "exceptions".into(),
                format!("at most {MAX_ENTRIES} exceptions"),
            ));
        }
        for (i, e) in self.exceptions.iter().enumerate() {
            for (key, message) in e.problems() {
                out.push((format!("exceptions[{i}].{key}"), message));
            }
        }
        out
    }

    /// Read `exceptions_file`: its exceptions, or its problems as (line, key, message).
    pub fn read_file(path: &Path) -> Result<Vec<Exception>, Vec<(usize, String, String)>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![(0, String::new(), format!("cannot read: {e}"))])?;
        let parsed: ExceptionsFile = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(0, |s| {
                text.get(..s.start)
                    .map_or(0, |t| t.matches('\n').count() + 1)
            });
            vec![(line, String::new(), e.message().to_owned())]
        })?;
        if parsed.exceptions.len() > MAX_ENTRIES {
            return Err(vec![(
                0,
                "exceptions".into(),
                format!("at most {MAX_ENTRIES} exceptions"),
            )]);
        }
        let mut problems = Vec::new();
        for (i, e) in parsed.exceptions.iter().enumerate() {
            for (key, message) in e.problems() {
                let line = crate::outputs::config::line_of_table(&text, "exceptions", i, key);
                problems.push((line, format!("exceptions[{i}].{key}"), message));
            }
        }
        if problems.is_empty() {
            Ok(parsed.exceptions)
        } else {
            Err(problems)
        }
    }

    /// What the check-in reports.
    pub fn report(&self) -> ringfence_wire::LocalTuning {
        let label = |s: &str| crate::fleet::label_lossy(s).ok();
        let mut per_rule: BTreeMap<&str, u64> = BTreeMap::new();
        for e in self.exceptions.iter().chain(&self.file_exceptions) {
            *per_rule.entry(e.rule.as_str()).or_default() += 1;
        }
        ringfence_wire::LocalTuning {
            disabled_rules: self
                .disabled_rules
                .iter()
                .filter_map(|r| label(r))
                .collect(),
            exceptions: per_rule
                .into_iter()
                .filter_map(|(r, n)| Some((label(r)?, ringfence_wire::Count::try_from(n).ok()?)))
                .collect(),
        }
    }
}

/// The pipeline's filter.
#[derive(Debug, Default)]
pub struct Tuning {
    disabled: std::collections::HashSet<String>,
    exceptions: Vec<Exception>,
    /// Matches silenced so far.
    pub silenced: u64,
}

impl Tuning {
    pub fn new(s: &DetectSection) -> Tuning {
        Tuning {
            disabled: s.disabled_rules.iter().cloned().collect(),
            exceptions: s
                .exceptions
                .iter()
                .chain(&s.file_exceptions)
                .cloned()
                .collect(),
            silenced: 0,
        }
    }

    /// Whether `finding` is silenced here (and count it).
    pub fn silences(&mut self, finding: &Value) -> bool {
        if self.disabled.is_empty() && self.exceptions.is_empty() {
            return false;
        }
        let Some(rule) = finding.pointer("/rule/id").and_then(Value::as_str) else {
            return false;
        };
        if protected(rule) {
            return false;
        }
        let hit = self.disabled.contains(rule)
            || self.exceptions.iter().any(|e| e.silences(rule, finding));
        if hit {
            self.silenced = self.silenced.saturating_add(1);
        }
        hit
    }
}

/// Whether an exception of a bundle's overlay silences `finding` (never a tamper or health
/// finding). The same matcher as local tuning.
pub fn overlay_silences(exceptions: &[Exception], finding: &Value) -> bool {
    if exceptions.is_empty() {
        return false;
    }
    let Some(rule) = finding.pointer("/rule/id").and_then(Value::as_str) else {
        return false;
    };
    !protected(rule) && exceptions.iter().any(|e| e.silences(rule, finding))
}

/// Read a bundle's exceptions overlays (`path → text`): every exception, or every problem at
/// once, naming the file, the line of the table, the rule id and the field. `known_rule` says
/// whether the bundle defines a rule id.
pub fn parse_overlay(
    files: &[(&str, &str)],
    known_rule: &dyn Fn(&str) -> bool,
) -> Result<Vec<Exception>, Vec<ringfence_content::ValidationError>> {
    use ringfence_content::ValidationError;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (path, text) in files {
        let parsed: ExceptionsFile = match toml::from_str(text) {
            Ok(p) => p,
            Err(e) => {
                let line = e.span().map_or(0, |s| {
                    text.get(..s.start)
                        .map_or(0, |t| t.matches('\n').count() + 1)
                });
                errors.push(
                    ValidationError::new(*path, e.message().to_owned())
                        .with_line(u32::try_from(line).unwrap_or(u32::MAX)),
                );
                continue;
            }
        };
        for (i, e) in parsed.exceptions.into_iter().enumerate() {
            let mut problems: Vec<(&str, String)> = e.bound_problems();
            if !e.rule.trim().is_empty() && !protected(&e.rule) && !known_rule(&e.rule) {
                problems.push(("rule", "no rule of this bundle has this id".into()));
            }
            for field in e.fields.keys() {
                if ringfence_event::field::Field::from_name(field).is_none() {
                    problems.push((
                        "fields",
                        format!("{field} is not a field of the sensor field schema"),
                    ));
                }
            }
            if problems.is_empty() {
                out.push(e);
                continue;
            }
            for (key, message) in problems {
                let line = crate::outputs::config::line_of_table(text, "exceptions", i, key);
                let mut err =
                    ValidationError::new(*path, format!("exceptions[{i}].{key}: {message}"))
                        .with_line(u32::try_from(line).unwrap_or(u32::MAX));
                if !e.rule.is_empty() {
                    err = err.with_rule_id(e.rule.clone());
                }
                errors.push(err);
            }
        }
    }
    if out.len() > MAX_ENTRIES {
        errors.push(ringfence_content::ValidationError::new(
            files.first().map_or("exceptions", |(p, _)| *p),
            format!("at most {MAX_ENTRIES} exceptions in all, got {}", out.len()),
        ));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn finding(rule: &str, exe: &str, host: &str) -> Value {
        json!({"rule": {"id": rule}, "process": {"executable": exe, "pid": 7}, "host": {"name": host}})
    }

    #[test]
    fn disabled_rules_and_exceptions_silence_matches_but_never_tamper_rules() {
        let text = "[detect]\ndisabled_rules = [\"noisy\"]\n\n[[detect.exceptions]]\n\
                    rule = \"shell\"\nhosts = [\"build-1\"]\nfields = { \"process.executable\" = \
                    [\"/usr/bin/make\"], \"process.pid\" = [\"7\"] }\ncomment = \"CI\"\n";
        let c = match Config::parse(text, Path::new("agent.toml")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let mut t = Tuning::new(&c.detect);
        assert!(t.silences(&finding("noisy", "/x", "h")));
        assert!(t.silences(&finding("shell", "/usr/bin/make", "build-1")));
        assert!(!t.silences(&finding("shell", "/usr/bin/make", "web-1")));
        assert!(!t.silences(&finding("shell", "/usr/bin/curl", "build-1")));
        assert!(!t.silences(&finding("other", "/usr/bin/make", "build-1")));
        assert_eq!(t.silenced, 2);
        let r = c.detect.report();
        assert_eq!(r.disabled_rules.len(), 1);
        assert_eq!(r.exceptions.len(), 1);

        let bad = "[detect]\ndisabled_rules = [\"ringfence-tamper-signal\"]\n\n\
                   [[detect.exceptions]]\nrule = \"x\"\nfields = {}\n";
        let errs = match Config::parse(bad, Path::new("agent.toml")) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.0,
        };
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"detect.disabled_rules"), "{keys:?}");
        assert!(keys.contains(&"detect.exceptions[0].fields"), "{keys:?}");
    }

    #[test]
    fn an_exceptions_file_is_read_and_its_errors_name_its_line() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let file = dir.path().join("exceptions.toml");
        let good = "[[exceptions]]\nrule = \"shell\"\nfields = { \"user.name\" = [\"deploy\"] }\n";
        assert!(std::fs::write(&file, good).is_ok());
        let text = format!("[detect]\nexceptions_file = \"{}\"\n", file.display());
        let c = match Config::parse(&text, Path::new("agent.toml")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.detect.file_exceptions.len(), 1);
        let mut t = Tuning::new(&c.detect);
        assert!(t.silences(&json!({"rule": {"id": "shell"}, "user": {"name": "deploy"}})));

        let bad = "[[exceptions]]\nrule = \"shell\"\nfields = { \"user.name\" = [\"deploy\"] }\n\n\
                   [[exceptions]]\nrule = \"ringfence-health-source\"\nfields = { a = [\"b\"] }\n";
        assert!(std::fs::write(&file, bad).is_ok());
        let errs = match Config::parse(&text, Path::new("agent.toml")) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.0,
        };
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].file, file);
        assert_eq!(errs[0].line, 6);
        assert_eq!(errs[0].key, "exceptions[1].rule");
    }
}
