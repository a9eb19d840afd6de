//! A finding as one line a person reads (`--format text`), as Falco prints its alerts.
//!
//! `TIME SEVERITY ` and then either the rule's `output` template (carried in the finding as
//! `ringfence.finding.output`) with each `%field.path` replaced by that ECS field of the
//! finding, or by default `rule title: command line (user, parent) on host`. Every value is
//! bounded and its control characters escaped, so a hostile command line cannot forge a
//! second line or hide the rest of this one; the whole line is bounded too.

use std::fmt::Write as _;

use serde_json::Value;

/// The longest value substituted into a line, in characters.
pub const MAX_VALUE_CHARS: usize = 256;
/// The longest line, in characters.
pub const MAX_LINE_CHARS: usize = 2048;

/// What a missing field prints as (Falco's choice).
const MISSING: &str = "<NA>";

/// The text line for `finding` (an ECS finding, or any ECS document).
pub fn line(finding: &Value) -> String {
    let time = field(finding, "@timestamp").unwrap_or_else(|| MISSING.to_owned());
    let mut out = format!("{time} {} ", severity(finding));
    match finding
        .pointer("/ringfence/finding/output")
        .and_then(Value::as_str)
    {
        Some(template) => out.push_str(&render(template, finding)),
        None => out.push_str(&default_text(finding)),
    }
    bound(out, MAX_LINE_CHARS)
}

/// The severity as a word: the rule's level, else ECS `event.severity` (1…5).
pub fn severity(finding: &Value) -> String {
    if let Some(level) = finding
        .pointer("/ringfence/finding/level")
        .and_then(Value::as_str)
    {
        let known = ["informational", "low", "medium", "high", "critical"];
        if known.contains(&level) {
            return level.to_ascii_uppercase();
        }
    }
    match finding.pointer("/event/severity").and_then(Value::as_i64) {
        Some(1) => "INFORMATIONAL",
        Some(2) => "LOW",
        Some(3) => "MEDIUM",
        Some(4) => "HIGH",
        Some(5) => "CRITICAL",
        _ => "UNKNOWN",
    }
    .to_owned()
}

/// `template` with each `%dotted.field` replaced by that field of `doc` (`<NA>` when absent)
/// and `%%` by `%`.
pub fn render(template: &str, doc: &Value) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '%' {
            push_escaped(&mut out, c);
            continue;
        }
        if chars.peek().is_some_and(|&(_, n)| n == '%') {
            chars.next();
            out.push('%');
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while let Some(&(j, n)) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' || n == '.' || n == '@' {
                end = j + n.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        // A trailing dot ends the sentence, not the field name.
        let mut name = template.get(start..end).unwrap_or("");
        let mut trailing_dot = false;
        if let Some(n) = name.strip_suffix('.') {
            name = n;
            trailing_dot = true;
        }
        if name.is_empty() {
            out.push('%');
        } else {
            out.push_str(&field(doc, name).unwrap_or_else(|| MISSING.to_owned()));
        }
        if trailing_dot {
            out.push('.');
        }
    }
    out
}

/// The default sentence: `title: command line (user, parent) on host`, with the file or
/// destination when the finding has no process command line.
fn default_text(f: &Value) -> String {
    let title = field(f, "rule.name").unwrap_or_else(|| MISSING.to_owned());
    let what = field(f, "process.command_line")
        .or_else(|| field(f, "process.executable"))
        .or_else(|| field(f, "file.path"))
        .or_else(|| field(f, "message"))
        .unwrap_or_else(|| MISSING.to_owned());
    let user = field(f, "user.name")
        .or_else(|| field(f, "user.id"))
        .unwrap_or_else(|| MISSING.to_owned());
    let parent = field(f, "process.parent.name")
        .or_else(|| field(f, "process.parent.executable"))
        .unwrap_or_else(|| MISSING.to_owned());
    let host = field(f, "host.name").unwrap_or_else(|| MISSING.to_owned());
    let mut s = format!("{title}: {what} (user {user}, parent {parent})");
    if let Some(dst) = field(f, "destination.ip") {
        let port = field(f, "destination.port").unwrap_or_default();
        let _ = write!(s, " to {dst}:{port}");
    }
    let _ = write!(s, " on {host}");
    s
}

/// The field at `dotted` in `doc`, as bounded, escaped text. Nested objects are walked one
/// key at a time; a key that itself holds dots (`"@timestamp"`) is tried whole first.
pub fn field(doc: &Value, dotted: &str) -> Option<String> {
    let value = lookup(doc, dotted)?;
    let raw = match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    let mut out = String::with_capacity(raw.len().min(MAX_VALUE_CHARS * 2));
    for c in raw.chars() {
        push_escaped(&mut out, c);
    }
    Some(bound(out, MAX_VALUE_CHARS))
}

/// The value at `dotted` in `doc` (nested objects walked, flat dotted keys tried whole).
pub fn lookup<'a>(doc: &'a Value, dotted: &str) -> Option<&'a Value> {
    if let Some(v) = doc.get(dotted) {
        return Some(v);
    }
    let mut here = doc;
    let mut rest = dotted;
    loop {
        let obj = here.as_object()?;
        // The longest prefix of `rest` that is a key (ECS keeps some dotted keys flat).
        let mut found = None;
        for (i, _) in rest
            .match_indices('.')
            .chain(std::iter::once((rest.len(), "")))
        {
            let key = rest.get(..i)?;
            if let Some(v) = obj.get(key) {
                found = Some((v, i));
            }
        }
        let (v, i) = found?;
        if i >= rest.len() {
            return Some(v);
        }
        here = v;
        rest = rest.get(i + 1..)?;
    }
}

/// `c`, with control characters written as escapes (`\n`, `\t`, `\u{1b}`).
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// `s` cut to `max` characters, marked with `…` when cut.
fn bound(s: String, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s,
        Some((cut, _)) => {
            let mut t = s;
            t.truncate(cut);
            // Never leave half an escape sequence at the end.
            if let Some(back) = t.rfind('\\')
                && t.len() - back < 10
            {
                t.truncate(back);
            }
            t.push('…');
            t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn finding() -> Value {
        json!({
            "@timestamp": "2026-12-06T07:00:00.000Z",
            "event": {"kind": "alert", "severity": 4},
            "host": {"name": "web-3"},
            "user": {"name": "www-data"},
            "process": {
                "command_line": "sh -c 'curl x | sh'",
                "parent": {"name": "nginx"}
            },
            "rule": {"name": "Shell Piped From Curl"},
            "ringfence": {"finding": {"level": "high"}}
        })
    }

    #[test]
    fn default_line_names_rule_command_user_parent_and_host() {
        assert_eq!(
            line(&finding()),
            "2026-12-06T07:00:00.000Z HIGH Shell Piped From Curl: sh -c 'curl x | sh' \
             (user www-data, parent nginx) on web-3"
        );
    }

    #[test]
    fn the_rules_output_template_is_filled_from_the_finding() {
        let mut f = finding();
        f["ringfence"]["finding"]["output"] = json!(
            "shell %process.command_line run by %user.name under %process.parent.name, \
             100%% (%process.pid) on %host.name."
        );
        assert_eq!(
            line(&f),
            "2026-12-06T07:00:00.000Z HIGH shell sh -c 'curl x | sh' run by www-data under \
             nginx, 100% (<NA>) on web-3."
        );
    }

    #[test]
    fn control_characters_are_escaped_and_values_bounded() {
        let mut f = finding();
        f["process"]["command_line"] = json!(format!("a\nFAKE LINE\u{1b}[2J{}", "x".repeat(5000)));
        let l = line(&f);
        assert!(!l.contains('\n') && !l.contains('\u{1b}'), "{l}");
        assert!(l.contains("a\\nFAKE LINE\\u{1b}[2J"), "{l}");
        assert!(l.chars().count() < MAX_VALUE_CHARS + 200, "{}", l.len());
        let mut f = finding();
        f["ringfence"]["finding"]["output"] = json!("%process.command_line ".repeat(100));
        f["process"]["command_line"] = json!("y".repeat(300));
        assert!(line(&f).chars().count() <= MAX_LINE_CHARS + 1);
    }

    #[test]
    fn fields_nested_or_flat_and_arrays() {
        let doc = json!({"a": {"b.c": {"d": 1}}, "tags": ["x", "y"], "n": null});
        assert_eq!(field(&doc, "a.b.c.d").as_deref(), Some("1"));
        assert_eq!(field(&doc, "tags").as_deref(), Some("x y"));
        assert_eq!(field(&doc, "n"), None);
        assert_eq!(field(&doc, "a.zz"), None);
        assert_eq!(render("%", &doc), "%");
        assert_eq!(render("%a.zz x", &doc), "<NA> x");
    }
}
