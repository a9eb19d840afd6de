//! The detection engine behind the content seam: [`SigmaValidator`] compiles a bundle's rules
//! for both sensor modes, parses its IOC sets and runs its content tests (at `content build`
//! and again on load); [`SigmaContent`] is compiled content the pipeline runs for this agent's
//! mode, emitting findings as ECS JSON. [`builtin`] is the default pack compiled into the
//! binary, active until a signed bundle replaces it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ringfence_content::yara::YaraRules;
use ringfence_content::{Bundle, ContentValidator, ValidationError, ValidationReport};
use ringfence_detect::{
    Engine, Format, Hit, IocSet, Options, Refusal, RuleFile, State, compile, testing,
};
use ringfence_event::{Event, Mode};
use serde_json::json;

use super::compiled::{CompiledContent, RuleInfo};

mod pack {
    include!(concat!(env!("OUT_DIR"), "/builtin_pack.rs"));
}

fn refusal_error(r: &Refusal) -> ValidationError {
    let mut e = ValidationError::new(r.file.clone(), r.message.clone());
    if let Some(l) = r.line {
        e = e.with_line(l);
    }
    if let Some(id) = &r.rule_id {
        e = e.with_rule_id(id.clone());
    }
    if let Some(f) = &r.field {
        e = e.with_field(f.clone());
    }
    e
}

/// Text of a bundle's files, or an error per non-UTF-8 file.
fn texts<'a>(
    entries: impl Iterator<Item = (&'a str, &'a [u8])>,
    errors: &mut Vec<ValidationError>,
) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::new();
    for (path, bytes) in entries {
        match std::str::from_utf8(bytes) {
            Ok(t) => out.push((path, t)),
            Err(e) => errors.push(ValidationError::new(
                path,
                format!("not UTF-8 at byte {}", e.valid_up_to()),
            )),
        }
    }
    out
}

/// Compiles, tests and checks content for both modes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SigmaValidator;

/// Validation of rule, IOC and test texts, shared by bundles and the built-in pack.
pub fn validate_texts(
    rules: &[(&str, &str)],
    iocs: &[(&str, &str)],
    tests: &[(&str, &str)],
    exceptions: &[(&str, &str)],
) -> Result<ValidationReport, Vec<ValidationError>> {
    let mut errors = Vec::new();
    let files: Vec<RuleFile<'_>> = rules
        .iter()
        .map(|(p, t)| RuleFile { path: p, text: t })
        .collect();
    let ebpf = compile(&files, &Options::new(Mode::Ebpf));
    let driverless = compile(&files, &Options::new(Mode::Driverless));
    let mut notes = Vec::new();
    // A rule is an error when no mode can run it; a note when one mode cannot.
    for r in &ebpf.refusals {
        if driverless
            .refusals
            .iter()
            .any(|d| d.rule_id == r.rule_id && d.file == r.file)
        {
            errors.push(refusal_error(r));
        } else {
            notes.push(format!("driverless mode only: {r}"));
        }
    }
    for r in &driverless.refusals {
        if !ebpf
            .refusals
            .iter()
            .any(|e| e.rule_id == r.rule_id && e.file == r.file)
        {
            notes.push(format!("eBPF mode only (driverless: {r})"));
        }
    }
    let mut indicators = 0usize;
    for (path, text) in iocs {
        let (set, errs) = IocSet::parse(path, text);
        indicators = indicators.saturating_add(set.len());
        for e in errs {
            errors.push(
                ValidationError::new(*path, e.message.clone())
                    .with_line(u32::try_from(e.line).unwrap_or(u32::MAX)),
            );
        }
    }
    let mut parsed = Vec::new();
    for (path, text) in tests {
        match testing::parse(path, text) {
            Ok(t) => parsed.push(t),
            Err(f) => errors.push(test_error(&f)),
        }
    }
    let mut cases = 0;
    for (mode, engine) in [
        (Mode::Ebpf, &ebpf.engine),
        (Mode::Driverless, &driverless.engine),
    ] {
        // Each test runs in the modes whose compile has its rule.
        let applicable: Vec<testing::ContentTest> = parsed
            .iter()
            .filter(|t| {
                engine.rules().iter().any(|r| r.meta.id == t.rule)
                    || engine.correlations().iter().any(|c| c.meta.id == t.rule)
            })
            .cloned()
            .collect();
        let (run, failures) = testing::run(engine, &applicable);
        cases += run;
        for f in failures {
            let mut e = test_error(&f);
            e.message = format!(
                "{}{} ({} mode)",
                case_name(&parsed, &f),
                e.message,
                mode.as_str()
            );
            errors.push(e);
        }
    }
    // Exceptions overlays: every exception names a rule this content defines (in either mode)
    // and fields of the sensor field schema.
    let defines = |id: &str| {
        [&ebpf.engine, &driverless.engine].iter().any(|e| {
            e.rules().iter().any(|r| r.meta.id == id)
                || e.correlations().iter().any(|c| c.meta.id == id)
        })
    };
    if let Err(mut more) = crate::tuning::parse_overlay(exceptions, &defines) {
        errors.append(&mut more);
    }
    for t in &parsed {
        let known = [&ebpf.engine, &driverless.engine].iter().any(|e| {
            e.rules().iter().any(|r| r.meta.id == t.rule)
                || e.correlations().iter().any(|c| c.meta.id == t.rule)
        });
        if !known && !errors.iter().any(|e| e.rule_id.as_deref() == Some(&t.rule)) {
            errors.push(
                ValidationError::new(t.file.clone(), "tests a rule id no rule file defines")
                    .with_rule_id(t.rule.clone()),
            );
        }
    }
    if errors.is_empty() {
        Ok(ValidationReport::new(
            ebpf.engine
                .output_count()
                .max(driverless.engine.output_count()),
            cases,
            notes,
        )
        .with_iocs(indicators))
    } else {
        Err(errors)
    }
}

/// The rules of `rules` (path, text) that can never fire in eBPF mode because the sensor has no
/// hook for any of their event kinds (`unhooked`), one line each (see
/// `ringfence_detect::hooked`): what `content build` and `rules check` report for a profile.
/// `under` names what lacks the hooks.
pub fn unhooked_in(
    rules: &[(&str, &str)],
    unhooked: &[ringfence_detect::hooked::Unhooked],
    under: &str,
) -> Vec<String> {
    if unhooked.is_empty() {
        return Vec::new();
    }
    let files: Vec<RuleFile<'_>> = rules
        .iter()
        .map(|(p, t)| RuleFile { path: p, text: t })
        .collect();
    let compiled = compile(&files, &Options::new(Mode::Ebpf));
    ringfence_detect::hooked::check(&compiled.engine, unhooked, under)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// "test `match` case 2: " for the failed case of a content test, from its file and line.
fn case_name(tests: &[testing::ContentTest], f: &testing::TestFailure) -> String {
    let Some(test) = tests.iter().find(|t| t.file == f.file) else {
        return String::new();
    };
    let Some(case) = test.cases.iter().find(|c| Some(c.line) == f.line) else {
        return String::new();
    };
    let number = test
        .cases
        .iter()
        .filter(|c| c.expect_match == case.expect_match)
        .take_while(|c| c.line != case.line)
        .count()
        + 1;
    let list = if case.expect_match {
        "match"
    } else {
        "no_match"
    };
    format!("test `{list}` case {number}: ")
}

fn test_error(f: &testing::TestFailure) -> ValidationError {
    let mut e = ValidationError::new(f.file.clone(), f.message.clone());
    if let Some(l) = f.line {
        e = e.with_line(l);
    }
    if let Some(r) = &f.rule {
        e = e.with_rule_id(r.clone());
    }
    e
}

impl ContentValidator for SigmaValidator {
    fn validate(&self, bundle: &Bundle) -> Result<ValidationReport, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let rules = texts(bundle.rules(), &mut errors);
        let iocs = texts(bundle.iocs(), &mut errors);
        let tests = texts(bundle.tests(), &mut errors);
        let exceptions = texts(bundle.exceptions(), &mut errors);
        // YARA rules compile and run their samples beside the Sigma rules (see
        // `ringfence_content::yara`).
        let yara = ringfence_content::yara::validate(bundle).map_err(|mut e| errors.append(&mut e));
        match validate_texts(&rules, &iocs, &tests, &exceptions) {
            Ok(report) if errors.is_empty() => {
                let y = yara.unwrap_or_default();
                Ok(report.with_yara(y.rules, y.samples))
            }
            Ok(_) => Err(errors),
            Err(mut more) => {
                errors.append(&mut more);
                Err(errors)
            }
        }
    }
}

/// Compiled content for one mode.
pub struct SigmaContent {
    engine: Engine,
    /// The content's YARA rules, for the scanner thread ([`crate::scan`]).
    yara: Option<Arc<YaraRules>>,
    iocs: Vec<IocSet>,
    infos: Vec<RuleInfo>,
    state: Mutex<State>,
    mode: Mode,
    /// The bundle's exceptions overlay: matches it silences are no finding.
    exceptions: Vec<crate::tuning::Exception>,
    /// Matches the overlay silenced so far.
    silenced: std::sync::atomic::AtomicU64,
    /// Why the built-in pack's YARA rules could not be built (its Sigma rules run regardless).
    yara_refused: Option<String>,
}

impl std::fmt::Debug for SigmaContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigmaContent")
            .field("rules", &self.infos.len())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl SigmaContent {
    /// Compiles texts for `mode`. Rules this mode cannot run are left out (the validator
    /// already reported them); only a set where nothing at all compiles is an error.
    pub fn from_texts(
        rules: &[(&str, &str)],
        iocs: &[(&str, &str)],
        mode: Mode,
    ) -> Result<SigmaContent, Vec<ValidationError>> {
        let files: Vec<RuleFile<'_>> = rules
            .iter()
            .map(|(p, t)| RuleFile { path: p, text: t })
            .collect();
        let compiled = compile(&files, &Options::new(mode));
        if compiled.engine.output_count() == 0 && !compiled.refusals.is_empty() {
            return Err(compiled.refusals.iter().map(refusal_error).collect());
        }
        for r in &compiled.refusals {
            tracing::info!(mode = mode.as_str(), "rule not loaded in this mode: {r}");
        }
        let engine = compiled.engine;
        let mut infos: Vec<RuleInfo> = engine
            .rules()
            .iter()
            .map(|r| RuleInfo {
                id: r.meta.id.clone(),
                file: r.meta.file.clone(),
            })
            .collect();
        infos.extend(engine.correlations().iter().map(|c| RuleInfo {
            id: c.meta.id.clone(),
            file: c.meta.file.clone(),
        }));
        let iocs = iocs.iter().map(|(p, t)| IocSet::parse(p, t).0).collect();
        let state = Mutex::new(engine.new_state());
        Ok(SigmaContent {
            engine,
            yara: None,
            iocs,
            infos,
            state,
            mode,
            exceptions: Vec::new(),
            silenced: std::sync::atomic::AtomicU64::new(0),
            yara_refused: None,
        })
    }

    /// Why the built-in pack's YARA rules could not be built, if they could not: the agent
    /// raises it as a health finding (files go unscanned) while its Sigma rules run.
    pub fn yara_refused(&self) -> Option<&str> {
        self.yara_refused.as_deref()
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The same content with a bundle's exceptions overlay applied.
    pub fn with_exceptions(mut self, exceptions: Vec<crate::tuning::Exception>) -> SigmaContent {
        self.exceptions = exceptions;
        self
    }

    /// Matches the exceptions overlay silenced so far.
    pub fn silenced(&self) -> u64 {
        self.silenced.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Emit `finding` unless the exceptions overlay silences it (then count it).
    fn emit_unless_excepted(
        &self,
        finding: serde_json::Value,
        emit: &mut dyn FnMut(serde_json::Value),
    ) {
        if crate::tuning::overlay_silences(&self.exceptions, &finding) {
            self.silenced
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            emit(finding);
        }
    }

    /// The same content with YARA rules for the scanner.
    pub fn with_yara(mut self, yara: Option<Arc<YaraRules>>) -> Self {
        self.yara = yara;
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit_hit(&self, hit: &Hit, event: &Event, emit: &mut dyn FnMut(serde_json::Value)) {
        if let Some(f) = self.engine.finding(hit, event) {
            self.emit_unless_excepted(f.to_json(Format::Ecs), emit);
        }
    }

    fn emit_iocs(&self, event: &Event, emit: &mut dyn FnMut(serde_json::Value)) {
        for set in &self.iocs {
            for hit in set.matches(event) {
                let mut doc = event.to_ecs();
                doc["event"]["kind"] = json!("alert");
                doc["rule"] = json!({
                    "id": format!("ioc:{}", hit.kind),
                    "name": format!("IOC match on {}", hit.field),
                    "ruleset": set.name,
                });
                doc["threat"] = json!({
                    "indicator": {"type": hit.kind, "name": hit.indicator, "description": hit.label},
                    "feed": {"name": set.name},
                });
                self.emit_unless_excepted(doc, emit);
            }
        }
    }
}

/// Compiles a bundle for `mode`.
pub fn compile_bundle(
    bundle: &Bundle,
    mode: Mode,
) -> Result<Box<dyn CompiledContent>, Vec<ValidationError>> {
    let mut errors = Vec::new();
    let rules = texts(bundle.rules(), &mut errors);
    let iocs = texts(bundle.iocs(), &mut errors);
    let overlays = texts(bundle.exceptions(), &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let content = SigmaContent::from_texts(&rules, &iocs, mode)?;
    // The validator checked the overlay against both modes' rules; here every rule id the
    // bundle defines in any mode is accepted, so a rule this mode left out is no error.
    let exceptions = crate::tuning::parse_overlay(&overlays, &|_| true)?;
    if !exceptions.is_empty() {
        tracing::info!(
            exceptions = exceptions.len(),
            "the content's exceptions overlay is active"
        );
    }
    let yara = compile_yara(bundle.yara())?;
    Ok(Box::new(
        content.with_exceptions(exceptions).with_yara(yara),
    ))
}

/// YARA rules of (bundle path, bytes) pairs; `None` when there are none.
fn compile_yara<'a>(
    files: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Result<Option<Arc<YaraRules>>, Vec<ValidationError>> {
    let files: Vec<(&str, &[u8])> = files.collect();
    if !files.iter().any(|(p, _)| p.ends_with(".yar")) {
        return Ok(None);
    }
    ringfence_content::yara::compile(files).map(|r| Some(Arc::new(r)))
}

/// The default pack's YARA files (rules and samples), as the build embedded them.
pub fn builtin_yara_files() -> &'static [(&'static str, &'static str)] {
    pack::YARA
}

/// The default pack compiled into this binary, for `mode`.
pub fn builtin(mode: Mode) -> Result<Arc<SigmaContent>, Vec<ValidationError>> {
    let rules: Vec<(&str, &str)> = pack::FILES
        .iter()
        .copied()
        .filter(|(p, _)| p.starts_with("rules/"))
        .collect();
    let mut content = SigmaContent::from_texts(&rules, &[], mode)?;
    // The YARA engine can fail where the Sigma rules cannot (it needs executable memory): that
    // loses the scanning, never the built-in pack's detection.
    match compile_yara(pack::YARA.iter().map(|(p, t)| (*p, t.as_bytes()))) {
        Ok(yara) => content = content.with_yara(yara),
        Err(errors) => {
            content.yara_refused = Some(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
    }
    Ok(Arc::new(content))
}

/// The default pack's files (rules and tests), as the build embedded them.
pub fn builtin_files() -> &'static [(&'static str, &'static str)] {
    pack::FILES
}

impl CompiledContent for SigmaContent {
    fn yara(&self) -> Option<Arc<YaraRules>> {
        self.yara.clone()
    }

    fn deny_exec_sha256(&self) -> std::collections::HashSet<[u8; 32]> {
        self.iocs
            .iter()
            .filter(|set| set.deny_exec)
            .flat_map(IocSet::sha256s)
            .copied()
            .collect()
    }

    fn rules(&self) -> &[RuleInfo] {
        &self.infos
    }

    fn unhooked_rules(&self, unhooked: &[ringfence_detect::hooked::Unhooked]) -> Vec<String> {
        ringfence_detect::hooked::check(&self.engine, unhooked, "the eBPF sensor")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn indicators(&self) -> usize {
        self.iocs.iter().map(IocSet::len).sum()
    }

    fn evaluate_rule(&self, rule: usize, event: &Event, emit: &mut dyn FnMut(serde_json::Value)) {
        let mut hits = Vec::new();
        {
            let mut state = self.state();
            self.engine
                .evaluate_output(rule, event, &mut state, &mut |h| hits.push(h));
        }
        for h in &hits {
            self.emit_hit(h, event, emit);
        }
    }

    fn evaluate_all(
        &self,
        event: &Event,
        disabled: &[bool],
        emit: &mut dyn FnMut(serde_json::Value),
    ) {
        let mut hits: Vec<Hit> = Vec::new();
        {
            let mut state = self.state();
            let rules = self.engine.rules().len();
            let enabled = |r: usize| !disabled.get(r).copied().unwrap_or(false);
            self.engine
                .evaluate_filtered(event, &mut state, &enabled, &mut |h| match &h {
                    Hit::Correlation(f) => {
                        if !disabled
                            .get(rules + f.correlation)
                            .copied()
                            .unwrap_or(false)
                        {
                            hits.push(h);
                        }
                    }
                    Hit::Rule(_) => hits.push(h),
                });
        }
        for h in &hits {
            self.emit_hit(h, event, emit);
        }
        self.emit_iocs(event, emit);
    }

    fn rule_memory(&self, rule: usize) -> usize {
        let rules = self.engine.rules().len();
        rule.checked_sub(rules)
            .map_or(0, |c| self.state().correlation_bytes(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_pack_validates_and_compiles_for_both_modes() {
        let rules: Vec<(&str, &str)> = builtin_files()
            .iter()
            .copied()
            .filter(|(p, _)| p.starts_with("rules/"))
            .collect();
        let tests: Vec<(&str, &str)> = builtin_files()
            .iter()
            .copied()
            .filter(|(p, _)| p.starts_with("tests/"))
            .collect();
        assert!(rules.len() >= 20, "{} rule files", rules.len());
        let report = validate_texts(&rules, &[], &tests, &[]).unwrap_or_else(|e| {
            panic!(
                "{}",
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert!(report.tests >= 2 * rules.len(), "{report:?}");
        for mode in Mode::ALL {
            let content = builtin(mode).unwrap();
            assert!(content.yara().is_some_and(|y| y.len() >= 10));
        }
        let yara: Vec<(&str, &[u8])> = builtin_yara_files()
            .iter()
            .map(|(p, t)| (*p, t.as_bytes()))
            .collect();
        let report = ringfence_content::yara::validate_files(&yara).unwrap_or_else(|e| {
            panic!(
                "{}",
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert!(report.samples >= 2 * report.rules, "{report:?}");
    }

    #[test]
    fn a_failing_content_test_names_its_file_line_rule_case_and_expectation() {
        let rule = "title: t\nid: rule-t\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    Image|endswith: /evil\n  condition: sel\nlevel: low\n";
        let test = "rule: rule-t\nmatch:\n  - {\"event\": {\"action\": \"exec\"}, \"process\": {\"executable\": \"/bin/evil\"}}\n  - {\"event\": {\"action\": \"exec\"}, \"process\": {\"executable\": \"/bin/good\"}}\n";
        let errors = validate_texts(&[("rules/t.yml", rule)], &[], &[("tests/t.yml", test)], &[])
            .unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "tests/t.yml:4 rule rule-t: test `match` case 2: expected a match, got none (ebpf mode)",
                "tests/t.yml:4 rule rule-t: test `match` case 2: expected a match, got none (driverless mode)"
            ]
        );
    }

    #[test]
    fn the_builtin_packs_bpf_rule_is_reported_when_bpf_has_no_hook() {
        use ringfence_detect::hooked::Unhooked;
        let content = builtin(Mode::Ebpf).unwrap();
        assert!(content.unhooked_rules(&[]).is_empty());
        let unhooked = [Unhooked {
            kind: ringfence_event::EventKind::BpfLoad,
            remedy: "[sensor] profile = \"deep\"".into(),
        }];
        let lines = content.unhooked_rules(&unhooked);
        assert!(!lines.is_empty());
        assert!(
            lines.iter().any(|l| l.contains("unexpected_bpf_loader.yml")
                && l.contains("bpf-load")
                && l.ends_with("[sensor] profile = \"deep\" would enable it")),
            "{lines:#?}"
        );
    }

    #[test]
    fn indicators_count_as_content() {
        let report = validate_texts(&[], &[("iocs/ips.txt", "203.0.113.7\n")], &[], &[]).unwrap();
        assert_eq!((report.rules, report.iocs), (0, 1));
        assert!(!report.detects_nothing());
        assert!(
            validate_texts(&[], &[], &[], &[])
                .unwrap()
                .detects_nothing()
        );
    }

    const EVIL_RULE: &str = "title: t\nid: rule-t\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    Image|endswith: /evil\n  condition: sel\nlevel: low\n";

    fn bundle_with(overlay: &str) -> Bundle {
        let mut b = ringfence_content::BundleBuilder::new(
            2,
            super::super::engine::agent_schema(),
            ringfence_content::Limits::default(),
        );
        b.add(
            ringfence_content::EntryKind::Rule,
            "rules/t.yml",
            EVIL_RULE.as_bytes().to_vec(),
        )
        .unwrap();
        b.add(
            ringfence_content::EntryKind::Exceptions,
            "exceptions/console.toml",
            overlay.as_bytes().to_vec(),
        )
        .unwrap();
        b.build().unwrap()
    }

    fn exec(exe: &str, user: &str, host: &str) -> Event {
        Event::from_ecs(&json!({
            "@timestamp": "2026-01-01T00:00:00Z",
            "event": {"action": "exec", "kind": "event", "category": ["process"], "type": ["start"]},
            "process": {"executable": exe, "pid": 7, "args": [exe]},
            "user": {"name": user},
            "host": {"name": host},
        }))
        .unwrap()
    }

    #[test]
    fn an_overlay_exception_for_an_unknown_rule_or_field_is_refused_at_build_and_load() {
        let overlay = "[[exceptions]]\nrule = \"rule-nope\"\nfields = { \"user.name\" = [\"ci\"] }\n\n\
                       [[exceptions]]\nrule = \"rule-t\"\nfields = { \"process.colour\" = [\"red\"] }\n\n\
                       [[exceptions]]\nrule = \"ringfence-tamper-signal\"\n";
        let errors = SigmaValidator.validate(&bundle_with(overlay)).unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "exceptions/console.toml:2 rule rule-nope: exceptions[0].rule: no rule of this bundle has this id",
                "exceptions/console.toml:7 rule rule-t: exceptions[1].fields: process.colour is not a field of the sensor field schema",
                "exceptions/console.toml:10 rule ringfence-tamper-signal: exceptions[2].rule: ringfence-tamper-signal: the agent's tamper and health rules cannot be tuned",
            ],
            "{shown:#?}"
        );
        // Bad TOML names its line too.
        let errors = SigmaValidator
            .validate(&bundle_with("[[exceptions]]\nrule = \n"))
            .unwrap_err();
        assert_eq!(errors[0].file, "exceptions/console.toml");
        assert_eq!(errors[0].line, Some(2), "{errors:?}");
    }

    #[test]
    fn an_overlay_exception_silences_its_matches_and_nothing_else() {
        let overlay = "[[exceptions]]\nrule = \"rule-t\"\nhosts = [\"build-1\"]\n\
                       fields = { \"user.name\" = [\"ci\"] }\ncomment = \"the CI runs it\"\n";
        let bundle = bundle_with(overlay);
        SigmaValidator.validate(&bundle).unwrap();
        for mode in Mode::ALL {
            let content = compile_bundle(&bundle, mode).unwrap();
            let count = |e: &Event| {
                let mut n = 0;
                content.evaluate_all(e, &[], &mut |_| n += 1);
                n
            };
            assert_eq!(count(&exec("/tmp/evil", "ci", "build-1")), 0, "{mode:?}");
            assert_eq!(count(&exec("/tmp/evil", "root", "build-1")), 1, "{mode:?}");
            assert_eq!(count(&exec("/tmp/evil", "ci", "web-1")), 1, "{mode:?}");
            assert_eq!(count(&exec("/tmp/good", "ci", "build-1")), 0, "{mode:?}");
        }
        // An overlay exception with no field silences the rule on its hosts.
        let bundle = bundle_with("[[exceptions]]\nrule = \"rule-t\"\nhosts = [\"build-1\"]\n");
        let content = compile_bundle(&bundle, Mode::Ebpf).unwrap();
        let mut n = 0;
        content.evaluate_all(&exec("/tmp/evil", "x", "build-1"), &[], &mut |_| n += 1);
        content.evaluate_all(&exec("/tmp/evil", "x", "web-1"), &[], &mut |_| n += 1);
        assert_eq!(n, 1);
    }
}
