//! YARA rules as content: a content directory's `yara/*.yar`, compiled with yara-x (the
//! maintained Rust implementation of YARA, by VirusTotal) at `content build` and again at
//! load, every rule tested on its own samples and timed on the sample corpus.
//!
//! Each rule names its finding level in its meta (`level = "high"`, Sigma's five levels) and
//! may give a `description`. Its samples live beside it, in `yara/<stem>.tests`, one per line:
//!
//! ```text
//! # a comment
//! match php_eval_post: <?php @eval(base64_decode($_POST['c'])); ?>
//! no_match php_eval_post: <?php echo base64_encode($data); ?>
//! ```
//!
//! The sample after `: ` is text with the escapes `\n`, `\r`, `\t`, `\0`, `\\` and `\xHH`.
//! Every rule needs at least one `match` and one `no_match` sample. A rule file that does
//! not compile, a rule without a valid level or without both samples, a sample that fails,
//! and a rule file that runs past [`SCAN_BUDGET`] on the corpus (every sample plus
//! [`FILLER_BYTES`] of pseudo-random filler) are refused, each naming its file and line.
//! `include` is refused: a rule file reads nothing but itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::bundle::Bundle;
use crate::validate::ValidationError;

/// The levels a rule's `level` meta may take (Sigma's).
pub const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];
/// Longest a rule file may scan the sample corpus for; a rule past it is refused.
pub const SCAN_BUDGET: Duration = Duration::from_secs(2);
/// Pseudo-random filler added to the samples to make the timing corpus.
pub const FILLER_BYTES: usize = 1 << 20;
/// Matches kept per pattern and scan: a rule matching a string a million times in a file
/// costs memory, not findings.
const MAX_MATCHES_PER_PATTERN: usize = 1000;
/// Longest sample line, in bytes.
const MAX_SAMPLE_BYTES: usize = 64 * 1024;

/// Compiled YARA rules, shareable between threads.
pub struct YaraRules {
    rules: yara_x::Rules,
    names: Vec<String>,
}

impl fmt::Debug for YaraRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YaraRules")
            .field("rules", &self.names.len())
            .finish_non_exhaustive()
    }
}

/// One rule that matched a scanned buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YaraMatch {
    /// The rule's identifier; its finding's rule id is `yara:<rule>`.
    pub rule: String,
    /// From the rule's `level` meta.
    pub level: String,
    /// From the rule's `description` meta, if any.
    pub description: Option<String>,
}

/// Why a scan gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanFailure {
    #[error("scan past its time budget")]
    Timeout,
    #[error("scan failed: {0}")]
    Other(String),
}

/// A scanner over [`YaraRules`]; one per thread, reused between buffers.
pub struct YaraScanner<'r> {
    scanner: yara_x::Scanner<'r>,
}

impl YaraRules {
    /// Rules compiled.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The rules' identifiers, in compile order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// A scanner that gives up on a buffer after `timeout` (yara-x checks about once a second).
    pub fn scanner(&self, timeout: Duration) -> YaraScanner<'_> {
        let mut scanner = yara_x::Scanner::new(&self.rules);
        scanner
            .set_timeout(timeout)
            .max_matches_per_pattern(MAX_MATCHES_PER_PATTERN);
        YaraScanner { scanner }
    }
}

impl YaraScanner<'_> {
    /// The rules matching `data`, sorted by name.
    pub fn scan(&mut self, data: &[u8]) -> Result<Vec<YaraMatch>, ScanFailure> {
        let results = self.scanner.scan(data).map_err(|e| match e {
            yara_x::errors::ScanError::Timeout => ScanFailure::Timeout,
            other => ScanFailure::Other(other.to_string()),
        })?;
        let mut out: Vec<YaraMatch> = results
            .matching_rules()
            .map(|r| {
                let mut m = YaraMatch {
                    rule: r.identifier().to_owned(),
                    level: "medium".to_owned(),
                    description: None,
                };
                for (key, value) in r.metadata() {
                    if let yara_x::MetaValue::String(s) = value {
                        match key {
                            "level" => s.clone_into(&mut m.level),
                            "description" => m.description = Some(s.to_owned()),
                            _ => {}
                        }
                    }
                }
                m
            })
            .collect();
        out.sort_by(|a, b| a.rule.cmp(&b.rule));
        Ok(out)
    }
}

/// Is this bundle path a YARA rule file (as opposed to a sample file)?
fn is_rule_file(path: &str) -> bool {
    path.ends_with(".yar")
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> u32 {
    let end = offset.min(text.len());
    let newlines = text.as_bytes().get(..end).unwrap_or_default();
    let n = newlines.iter().filter(|b| **b == b'\n').count();
    u32::try_from(n.saturating_add(1)).unwrap_or(u32::MAX)
}

/// Where `rule NAME` is declared: (file, line).
fn declaration<'a>(files: &[(&'a str, &'a str)], name: &str) -> Option<(&'a str, u32)> {
    for (path, text) in files {
        let mut from = 0;
        while let Some(at) = text.get(from..).and_then(|t| t.find(name)) {
            let start = from + at;
            let end = start + name.len();
            let before = text.get(..start).unwrap_or_default().trim_end();
            let after = text.get(end..).and_then(|t| t.chars().next());
            let word_end = after.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            if before.ends_with("rule") && word_end {
                return Some((path, line_of(text, start)));
            }
            from = end;
        }
    }
    None
}

/// Compiles the rule files (`*.yar`) among `files` (bundle path, bytes); every error names
/// its file and line. A rule without a valid `level` meta compiles (its matches are
/// `medium`); [`validate`] refuses it.
pub fn compile<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<YaraRules, Vec<ValidationError>> {
    let mut errors = Vec::new();
    let mut texts: Vec<(&str, &str)> = Vec::new();
    for (path, bytes) in files {
        if !is_rule_file(path) {
            continue;
        }
        match std::str::from_utf8(bytes) {
            Ok(t) => texts.push((path, t)),
            Err(e) => errors.push(ValidationError::new(
                path,
                format!("not UTF-8 at byte {}", e.valid_up_to()),
            )),
        }
    }
    let mut compiler = yara_x::Compiler::new();
    compiler.enable_includes(false);
    for (path, text) in &texts {
        // Every error is collected below from `errors()`; the first is returned here too.
        let _ = compiler.add_source(yara_x::SourceCode::from(*text).with_origin(*path));
    }
    for e in compiler.errors() {
        let label = e.labels().next();
        let file = label
            .as_ref()
            .and_then(|l| l.origin().map(str::to_owned))
            .unwrap_or_else(|| "yara".to_owned());
        let mut message = e.title().to_owned();
        let mut err = ValidationError::new(file.clone(), String::new());
        if let Some(l) = &label {
            if !l.text().is_empty() && l.text() != e.title() {
                message = format!("{message}: {}", l.text());
            }
            if let Some((_, text)) = texts.iter().find(|(p, _)| *p == file) {
                err = err.with_line(line_of(text, l.span().start()));
            }
        }
        err.message = format!("yara {}: {message}", e.code());
        errors.push(err);
    }
    // yara-x compiles the rules to WebAssembly and wasmtime to machine code; where the process
    // may not make memory executable (a MemoryDenyWriteExecute sandbox) it panics. A content
    // fault must never crash the agent: that becomes a refusal naming the cause.
    let rules = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compiler.build())) {
        Ok(rules) => rules,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown cause".into());
            let file = texts.first().map_or("yara", |(p, _)| *p);
            errors.push(ValidationError::new(
                file,
                format!(
                    "yara: the YARA engine could not build the rules ({why}); it needs memory it \
                     can make executable"
                ),
            ));
            return Err(errors);
        }
    };
    let names = rules.iter().map(|r| r.identifier().to_owned()).collect();
    if errors.is_empty() {
        Ok(YaraRules { rules, names })
    } else {
        Err(errors)
    }
}

/// Every rule whose `level` meta is missing or not one of [`LEVELS`].
fn level_errors(rules: &YaraRules, texts: &[(&str, &str)]) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    for rule in rules.rules.iter() {
        let name = rule.identifier();
        let level = rule.metadata().find_map(|(k, v)| match (k, v) {
            ("level", yara_x::MetaValue::String(s)) => Some(s),
            _ => None,
        });
        if level.is_some_and(|l| LEVELS.contains(&l)) {
            continue;
        }
        let (file, line) = declaration(texts, name).unwrap_or(("yara", 0));
        let mut e = ValidationError::new(
            file,
            format!(
                "meta `level` must be one of {}, got {}",
                LEVELS.join(", "),
                level.map_or_else(|| "none".to_owned(), |l| format!("{l:?}"))
            ),
        )
        .with_rule_id(format!("yara:{name}"))
        .with_field("level");
        if line > 0 {
            e = e.with_line(line);
        }
        errors.push(e);
    }
    errors
}

/// One sample line of a `.tests` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub file: String,
    pub line: u32,
    pub rule: String,
    pub expect_match: bool,
    pub data: Vec<u8>,
}

/// Parses a `.tests` file; every malformed line is an error naming it.
pub fn parse_samples(path: &str, text: &str) -> Result<Vec<Sample>, Vec<ValidationError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = u32::try_from(i.saturating_add(1)).unwrap_or(u32::MAX);
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let err = |m: String| ValidationError::new(path, m).with_line(line);
        let (expect_match, rest) = if let Some(r) = trimmed.strip_prefix("match ") {
            (true, r)
        } else if let Some(r) = trimmed.strip_prefix("no_match ") {
            (false, r)
        } else {
            errors.push(err(
                "expected `match RULE: sample` or `no_match RULE: sample`".into(),
            ));
            continue;
        };
        let Some((rule, sample)) = rest.split_once(": ") else {
            errors.push(err("expected `RULE: sample` after the verb".into()));
            continue;
        };
        let rule = rule.trim();
        if rule.is_empty() || !rule.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            errors.push(err(format!("{rule:?} is not a YARA rule identifier")));
            continue;
        }
        match unescape(sample) {
            Ok(data) if data.len() <= MAX_SAMPLE_BYTES => out.push(Sample {
                file: path.to_owned(),
                line,
                rule: rule.to_owned(),
                expect_match,
                data,
            }),
            Ok(data) => errors.push(err(format!(
                "sample is {} bytes, limit is {MAX_SAMPLE_BYTES}",
                data.len()
            ))),
            Err(m) => errors.push(err(m)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('t') => out.push(b'\t'),
            Some('0') => out.push(0),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = u8::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 2)
                    .ok_or_else(|| format!("bad escape \\x{hex}: two hex digits expected"))?;
                out.push(byte);
            }
            Some(other) => return Err(format!("unknown escape \\{other}")),
            None => return Err("trailing backslash".into()),
        }
    }
    Ok(out)
}

/// Deterministic pseudo-random bytes (xorshift), so the timing corpus is the same everywhere.
fn filler(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// What [`validate`] checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct YaraReport {
    pub rules: usize,
    pub samples: usize,
}

/// Compiles a bundle's YARA rules, runs every sample and times each rule file on the corpus.
/// Returns every error at once.
pub fn validate(bundle: &Bundle) -> Result<YaraReport, Vec<ValidationError>> {
    let files: Vec<(&str, &[u8])> = bundle.yara().collect();
    validate_files(&files)
}

/// [`validate`] over (bundle path, bytes) pairs (the built-in pack has no [`Bundle`]).
pub fn validate_files(files: &[(&str, &[u8])]) -> Result<YaraReport, Vec<ValidationError>> {
    if files.is_empty() {
        return Ok(YaraReport::default());
    }
    let rules = compile(files.iter().copied())?;
    let mut errors = Vec::new();
    let mut samples = Vec::new();
    for (path, bytes) in files.iter().filter(|(p, _)| !is_rule_file(p)) {
        let Ok(text) = std::str::from_utf8(bytes) else {
            errors.push(ValidationError::new(*path, "not UTF-8"));
            continue;
        };
        match parse_samples(path, text) {
            Ok(mut s) => samples.append(&mut s),
            Err(mut e) => errors.append(&mut e),
        }
    }
    let texts: Vec<(&str, &str)> = files
        .iter()
        .filter(|(p, _)| is_rule_file(p))
        .filter_map(|(p, b)| std::str::from_utf8(b).ok().map(|t| (*p, t)))
        .collect();
    errors.extend(level_errors(&rules, &texts));
    let known: BTreeSet<&str> = rules.names().iter().map(String::as_str).collect();
    let mut covered: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    let mut scanner = rules.scanner(SCAN_BUDGET);
    for s in &samples {
        let err = || {
            ValidationError::new(s.file.clone(), String::new())
                .with_line(s.line)
                .with_rule_id(format!("yara:{}", s.rule))
        };
        if !known.contains(s.rule.as_str()) {
            let mut e = err();
            e.message = "sample for a rule no .yar file defines".into();
            errors.push(e);
            continue;
        }
        let entry = covered.entry(s.rule.as_str()).or_default();
        if s.expect_match {
            entry.0 = true;
        } else {
            entry.1 = true;
        }
        match scanner.scan(&s.data) {
            Ok(found) => {
                let matched = found.iter().any(|m| m.rule == s.rule);
                if matched != s.expect_match {
                    let mut e = err();
                    e.message = if s.expect_match {
                        "expected a match, got none".into()
                    } else {
                        "expected no match, got one".into()
                    };
                    errors.push(e);
                }
            }
            Err(f) => {
                let mut e = err();
                e.message = format!("sample: {f}");
                errors.push(e);
            }
        }
    }
    for name in rules.names() {
        let (pos, neg) = covered.get(name.as_str()).copied().unwrap_or_default();
        if !(pos && neg) {
            let (file, line) = declaration(&texts, name).unwrap_or(("yara", 0));
            let missing = match (pos, neg) {
                (false, false) => "a `match` and a `no_match` sample",
                (false, true) => "a `match` sample",
                _ => "a `no_match` sample",
            };
            let mut e = ValidationError::new(file, format!("rule has no {missing}"))
                .with_rule_id(format!("yara:{name}"));
            if line > 0 {
                e = e.with_line(line);
            }
            errors.push(e);
        }
    }
    errors.extend(over_budget(&rules, &texts, &samples));
    if errors.is_empty() {
        Ok(YaraReport {
            rules: rules.len(),
            samples: samples.len(),
        })
    } else {
        Err(errors)
    }
}

/// Scans the corpus with all rules within [`SCAN_BUDGET`]; when that fails, each rule file
/// alone, to name the ones past it.
fn over_budget(
    rules: &YaraRules,
    texts: &[(&str, &str)],
    samples: &[Sample],
) -> Vec<ValidationError> {
    let mut corpus = filler(FILLER_BYTES);
    for s in samples {
        corpus.extend_from_slice(&s.data);
        corpus.push(b'\n');
    }
    if !matches!(
        rules.scanner(SCAN_BUDGET).scan(&corpus),
        Err(ScanFailure::Timeout)
    ) {
        return Vec::new();
    }
    let mut errors = Vec::new();
    for (path, text) in texts {
        let Ok(alone) = compile([(*path, text.as_bytes())]) else {
            continue;
        };
        if matches!(
            alone.scanner(SCAN_BUDGET).scan(&corpus),
            Err(ScanFailure::Timeout)
        ) {
            let line = alone
                .names()
                .first()
                .and_then(|n| declaration(&[(*path, *text)], n))
                .map_or(1, |(_, l)| l);
            errors.push(
                ValidationError::new(
                    *path,
                    format!(
                        "runs past its scan-time budget of {} s on the sample corpus ({} bytes)",
                        SCAN_BUDGET.as_secs(),
                        corpus.len()
                    ),
                )
                .with_line(line),
            );
        }
    }
    if errors.is_empty() {
        errors.push(ValidationError::new(
            "yara",
            format!(
                "the rules together run past the scan-time budget of {} s on the sample corpus",
                SCAN_BUDGET.as_secs()
            ),
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "rule php_eval_post {\n  meta:\n    level = \"high\"\n    description = \"eval of POST data\"\n  strings:\n    $a = \"eval(\"\n    $b = \"$_POST\"\n  condition:\n    all of them\n}\n";
    const SAMPLES: &str = "# ours\nmatch php_eval_post: <?php eval($_POST['c']); ?>\nno_match php_eval_post: <?php echo 1;\\n ?>\n";

    fn files<'a>(rule: &'a str, samples: &'a str) -> Vec<(&'a str, &'a [u8])> {
        vec![
            ("yara/php.tests", samples.as_bytes()),
            ("yara/php.yar", rule.as_bytes()),
        ]
    }

    #[test]
    fn a_rule_with_its_samples_validates_and_scans() {
        let report = validate_files(&files(RULE, SAMPLES)).unwrap();
        assert_eq!(
            report,
            YaraReport {
                rules: 1,
                samples: 2
            }
        );
        let rules = compile(files(RULE, SAMPLES)).unwrap();
        let found = rules
            .scanner(SCAN_BUDGET)
            .scan(b"x eval( y $_POST z")
            .unwrap();
        assert_eq!(
            found,
            [YaraMatch {
                rule: "php_eval_post".into(),
                level: "high".into(),
                description: Some("eval of POST data".into()),
            }]
        );
    }

    #[test]
    fn a_rule_that_does_not_compile_is_refused_with_file_and_line() {
        let broken = "rule ok {\n  meta:\n    level = \"low\"\n  condition:\n    true\n}\n\nrule broken {\n  meta:\n    level = \"low\"\n  condition:\n    $missing\n}\n";
        let errors = compile([("yara/broken.yar", broken.as_bytes())]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].file, "yara/broken.yar");
        assert_eq!(errors[0].line, Some(12), "{}", errors[0]);
        assert!(
            errors[0]
                .to_string()
                .starts_with("yara/broken.yar:12: yara E"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn level_and_both_samples_are_required() {
        let no_level = RULE.replace("level = \"high\"", "level = \"severe\"");
        assert!(compile(files(&no_level, SAMPLES)).is_ok());
        let errors = validate_files(&files(&no_level, SAMPLES)).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "yara/php.yar:1 rule yara:php_eval_post field level: meta `level` must be one of \
             informational, low, medium, high, critical, got \"severe\""
        );
        let only_positive = "match php_eval_post: eval( $_POST\n";
        let errors = validate_files(&files(RULE, only_positive)).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "yara/php.yar:1 rule yara:php_eval_post: rule has no a `no_match` sample"
        );
    }

    #[test]
    fn a_failing_sample_names_its_line() {
        let wrong = "match php_eval_post: eval( $_POST\nno_match php_eval_post: eval( and $_POST\n";
        let errors = validate_files(&files(RULE, wrong)).unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["yara/php.tests:2 rule yara:php_eval_post: expected no match, got one"]
        );
    }

    #[test]
    fn the_default_pack_rules_go_in_the_bundle_and_validate() {
        use crate::bundle::{BundleBuilder, Limits, SchemaId};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../content/linux");
        let schema = SchemaId {
            version: 1,
            fingerprint: "f".into(),
        };
        let mut b = BundleBuilder::new(1, schema, Limits::default());
        b.add_dir(&dir).unwrap();
        let bundle = b.build().unwrap();
        let back = Bundle::decode(&bundle.encode(), &Limits::default()).unwrap();
        let paths: Vec<&str> = back.yara().map(|(p, _)| p).collect();
        assert!(paths.contains(&"yara/webshell_php.yar"), "{paths:?}");
        assert!(paths.contains(&"yara/webshell_php.tests"), "{paths:?}");
        let report = validate(&back).unwrap_or_else(|e| {
            panic!(
                "{}",
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert_eq!(report.rules, 11);
        assert!(report.samples >= 2 * report.rules, "{report:?}");
    }

    #[test]
    fn includes_are_refused() {
        let inc = "include \"/etc/passwd\"\nrule x { meta: level = \"low\" condition: true }\n";
        let errors = compile([("yara/inc.yar", inc.as_bytes())]).unwrap_err();
        assert_eq!(errors[0].line, Some(1), "{}", errors[0]);
    }

    #[test]
    fn sample_lines_parse_with_escapes_and_refuse_garbage() {
        let s = parse_samples("t.tests", "match a_b: x\\x41\\n\\\\\n").unwrap();
        assert_eq!(s[0].data, b"xA\n\\");
        let errors = parse_samples(
            "t.tests",
            "\nmatch: x\nmaybe r: y\nmatch r: \\q\nmatch r: \\x4\n",
        )
        .unwrap_err();
        let lines: Vec<Option<u32>> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(2), Some(3), Some(4), Some(5)]);
    }
}
