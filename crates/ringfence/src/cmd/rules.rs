//! `ringfence rules check PATH...`: the Sigma compatibility report. Each rule is compiled for
//! both sensor modes against the field schema; the report says, per rule, where it compiled or
//! why it was refused (file, line, rule id, field), then the totals. A content pack's `tests/`
//! directory holds content tests, not rules: they are run against the compiled rules and each
//! failure is listed. A file rule whose path patterns all lie outside the agent's watched file
//! trees (the defaults, or `--config`'s) is warned about, with what the agent does about it;
//! the rule still counts as compiled. So is a rule whose every event kind the eBPF sensor has
//! no hook for under `--profile` (the `--config`'s `[sensor] profile`, else `default`) on a
//! kernel without BPF trampolines (unless `--trampolines`). Exit 1 when no rule was found, when none compiled, and with `--strict`
//! when any rule was refused or any test failed.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use ringfence_detect::hooked::Unhooked;
use ringfence_detect::{Options, Refusal, RuleFile, compile, coverage, hooked, testing};
use ringfence_event::Mode;
use ringfence_sensor::ebpf::{Profile, Trampolines};
use serde_json::json;

use crate::cmd::print_line;
use crate::{CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: RulesCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Compile rules for each mode and report every refusal with its reason.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Rule files or directories (searched for *.yml and *.yaml).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Check for one mode only: ebpf or driverless (default: both).
    #[arg(long)]
    pub mode: Option<String>,
    /// One JSON object per rule instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 if any rule is refused or any content test fails.
    #[arg(long)]
    pub strict: bool,
    /// Agent configuration whose watched file trees (`[fanotify]`) the path check uses
    /// (default: the agent's defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub hooks: HookArgs,
}

/// The sensor hooks content is checked against: rules whose every event kind gets no hook are
/// reported (they stay in: a profile change makes them live).
#[derive(Debug, Clone, clap::Args)]
pub struct HookArgs {
    /// The eBPF sensor's profile to assume: default or deep (default: the `--config`'s
    /// `[sensor] profile`, else default).
    #[arg(long, value_parser = parse_profile)]
    pub profile: Option<Profile>,
    /// Assume a kernel that allows BPF trampolines (fentry); by default, one that does not.
    #[arg(long)]
    pub trampolines: bool,
}

impl HookArgs {
    /// The kinds without a hook, and the words naming what lacks them.
    pub fn unhooked(&self, config: &ringfence_agent::Config) -> (Vec<Unhooked>, String) {
        let profile = self.profile.unwrap_or(config.sensor.profile);
        let (trampolines, kernel) = if self.trampolines {
            (Trampolines::Allowed, "with")
        } else {
            (Trampolines::Refused, "without")
        };
        (
            ringfence_agent::mode::planned_unhooked(config, profile, trampolines),
            format!(
                "the eBPF sensor's \"{}\" profile on a kernel {kernel} BPF trampolines",
                profile.as_str()
            ),
        )
    }
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    match s {
        "default" => Ok(Profile::Default),
        "deep" => Ok(Profile::Deep),
        other => Err(format!("{other}: expected default or deep")),
    }
}

/// The YAML files under some paths, `(path, text)`, sorted: Sigma rules, and the content
/// tests found in directories named `tests` (a content pack's layout).
#[derive(Debug, Default)]
pub struct ContentFiles {
    pub rules: Vec<(String, String)>,
    pub tests: Vec<(String, String)>,
}

/// Every *.yml / *.yaml under `paths`, sorted, read as text: those under a directory named
/// `tests` as content tests, the others as rules. Unreadable and non-UTF-8 files are errors.
pub fn read_rule_files(paths: &[PathBuf]) -> anyhow::Result<ContentFiles> {
    let (mut rules, mut tests) = (Vec::new(), Vec::new());
    for p in paths {
        let is_tests = p.is_dir() && p.file_name().is_some_and(|n| n == "tests");
        let mut found = Vec::new();
        collect(p, &mut found, &mut tests).with_context(|| format!("reading {}", p.display()))?;
        if is_tests {
            tests.append(&mut found);
        } else {
            rules.append(&mut found);
        }
    }
    let read = |mut files: Vec<PathBuf>| -> anyhow::Result<Vec<(String, String)>> {
        files.sort();
        files.dedup();
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            let bytes = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", f.display()))?;
            out.push((f.display().to_string(), text));
        }
        Ok(out)
    };
    Ok(ContentFiles {
        rules: read(rules)?,
        tests: read(tests)?,
    })
}

/// YAML files under `p` into `out`; those under a directory named `tests` into `tests`.
fn collect(p: &Path, out: &mut Vec<PathBuf>, tests: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(p)?;
    if meta.is_file() {
        out.push(p.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(p)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::path);
    for e in entries {
        let path = e.path();
        let ty = e.file_type()?;
        if ty.is_dir() && e.file_name() == "tests" {
            let mut found = Vec::new();
            collect(&path, &mut found, &mut Vec::new())?;
            tests.append(&mut found);
        } else if ty.is_dir() {
            collect(&path, out, tests)?;
        } else if path.extension().is_some_and(|x| x == "yml" || x == "yaml") {
            out.push(path);
        }
    }
    Ok(())
}

pub fn parse_mode(s: &str) -> Result<Mode, Failure> {
    match s {
        "ebpf" => Ok(Mode::Ebpf),
        "driverless" => Ok(Mode::Driverless),
        other => Err(Failure::refused(anyhow::anyhow!(
            "--mode {other}: expected ebpf or driverless"
        ))),
    }
}

/// One rule document's outcome across modes.
#[derive(Default)]
struct Row {
    title: String,
    compiled: Vec<&'static str>,
    refused: Vec<(&'static str, Refusal)>,
}

pub fn run(args: Args) -> CmdResult {
    let RulesCommand::Check(args) = args.command;
    let modes: Vec<Mode> = match &args.mode {
        Some(m) => vec![parse_mode(m)?],
        None => Mode::ALL.to_vec(),
    };
    let agent_config = match &args.config {
        Some(p) => ringfence_agent::Config::load(p)
            .map_err(|e| Failure::refused(anyhow::anyhow!("{e}")))?,
        None => ringfence_agent::Config::default(),
    };
    let trees: Vec<String> = agent_config
        .fanotify
        .all_paths()
        .map(|p| p.display().to_string())
        .collect();
    let mut warnings: Vec<String> = Vec::new();
    let found = read_rule_files(&args.paths).map_err(Failure::refused)?;
    let files = &found.rules;
    let rule_files: Vec<RuleFile<'_>> = files
        .iter()
        .map(|(p, t)| RuleFile { path: p, text: t })
        .collect();
    let mut tests = Vec::new();
    let mut test_failures: Vec<String> = Vec::new();
    for (path, text) in &found.tests {
        match testing::parse(path, text) {
            Ok(t) => tests.push(t),
            Err(f) => test_failures.push(f.to_string()),
        }
    }
    let mut cases = 0;
    let (mut tested, mut refused_ids) = (HashSet::new(), HashSet::new());
    // Key: (file, line of the document) so every document is one row.
    let mut rows: BTreeMap<(String, u32), Row> = BTreeMap::new();
    let mut documents = 0;
    for mode in &modes {
        let out = compile(&rule_files, &Options::new(*mode));
        documents = documents.max(out.documents);
        let widened = agent_config.fanotify.content_paths;
        let mut found = coverage::check(&out.engine, &rule_files, &trees, widened);
        if *mode == Mode::Ebpf {
            let (unhooked, under) = args.hooks.unhooked(&agent_config);
            found.extend(hooked::check(&out.engine, &unhooked, &under));
        }
        for w in found {
            let text = w.to_string();
            if !warnings.contains(&text) {
                warnings.push(text);
            }
        }
        // Each test runs in the modes that compiled its rule; a refused rule is reported as
        // such, not again through its tests.
        let applicable: Vec<testing::ContentTest> = tests
            .iter()
            .filter(|t| testing::output_matches(&out.engine, &t.rule, &[]).is_some())
            .cloned()
            .collect();
        let (run, failures) = testing::run(&out.engine, &applicable);
        cases += run;
        tested.extend(applicable.iter().map(|t| t.rule.clone()));
        refused_ids.extend(out.refusals.iter().filter_map(|r| r.rule_id.clone()));
        test_failures.extend(
            failures
                .iter()
                .map(|f| format!("{f} ({} mode)", mode.as_str())),
        );
        for r in out.engine.rules() {
            let row = rows.entry((r.meta.file.clone(), r.meta.line)).or_default();
            row.title.clone_from(&r.meta.title);
            row.compiled.push(mode.as_str());
        }
        for c in out.engine.correlations() {
            let row = rows.entry((c.meta.file.clone(), c.meta.line)).or_default();
            row.title.clone_from(&c.meta.title);
            row.compiled.push(mode.as_str());
        }
        for r in out.refusals {
            let line = doc_line(files, &r);
            let row = rows.entry((r.file.clone(), line)).or_default();
            if let Some(t) = &r.title {
                row.title.clone_from(t);
            }
            row.refused.push((mode.as_str(), r));
        }
    }
    for t in &tests {
        if !tested.contains(&t.rule) && !refused_ids.contains(&t.rule) {
            test_failures.push(format!(
                "{}: rule {}: tests a rule id no rule file defines",
                t.file, t.rule
            ));
        }
    }
    let (mut compiled, mut refused) = (0usize, 0usize);
    let mut per_mode: BTreeMap<&str, usize> = BTreeMap::new();
    for ((file, _), row) in &rows {
        for m in &row.compiled {
            *per_mode.entry(m).or_default() += 1;
        }
        let ok = !row.compiled.is_empty();
        if ok {
            compiled += 1;
        } else {
            refused += 1;
        }
        if args.json {
            let reasons: Vec<_> = row
                .refused
                .iter()
                .map(|(m, r)| json!({"mode": m, "line": r.line, "rule_id": r.rule_id, "field": r.field, "message": r.message}))
                .collect();
            print_line(
                &json!({"file": file, "title": row.title, "compiled": row.compiled, "refused": reasons})
                    .to_string(),
            )
            .context("writing")?;
            continue;
        }
        let mut line = if ok {
            format!("compiled  {file}  [{}]", row.compiled.join(", "))
        } else {
            format!("REFUSED   {file}")
        };
        if !row.title.is_empty() {
            line.push_str(&format!("  {}", row.title));
        }
        print_line(&line).context("writing")?;
        // A refusal in every mode is the reason; a refusal in one mode is a note.
        let mut seen = HashSet::new();
        for (m, r) in &row.refused {
            let text = format!("{r}");
            let modes_with_same: Vec<&str> = row
                .refused
                .iter()
                .filter(|(_, x)| format!("{x}") == text)
                .map(|(m, _)| *m)
                .collect();
            if !seen.insert(text.clone()) {
                continue;
            }
            let _ = m;
            print_line(&format!("    {} ({})", text, modes_with_same.join(", ")))
                .context("writing")?;
        }
    }
    for w in &warnings {
        if args.json {
            print_line(&json!({"warning": w}).to_string()).context("writing")?;
        } else {
            print_line(&format!("WARNING   {w}")).context("writing")?;
        }
    }
    for f in &test_failures {
        if args.json {
            print_line(&json!({"test_failed": f}).to_string()).context("writing")?;
        } else {
            print_line(&format!("TEST FAILED  {f}")).context("writing")?;
        }
    }
    if !args.json {
        let modes_text: Vec<String> = per_mode.iter().map(|(m, n)| format!("{m}: {n}")).collect();
        let tests_text = if found.tests.is_empty() {
            String::new()
        } else {
            format!(
                "; {} test files in tests/: {cases} cases run, {} failed",
                found.tests.len(),
                test_failures.len()
            )
        };
        let warnings_text = if warnings.is_empty() {
            String::new()
        } else {
            format!(
                "; {} warning{}",
                warnings.len(),
                if warnings.len() == 1 { "" } else { "s" }
            )
        };
        print_line(&format!(
            "{compiled} compiled, {refused} refused ({} documents; compiled per mode: {}{tests_text}{warnings_text})",
            documents.max(compiled + refused),
            modes_text.join(", ")
        ))
        .context("writing")?;
    }
    let paths: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
    if rows.is_empty() {
        return Err(Failure::refused(anyhow::anyhow!(
            "no rule found in {} (looked for *.yml and *.yaml outside tests/)",
            paths.join(", ")
        )));
    }
    if compiled == 0 {
        return Err(Failure::refused(anyhow::anyhow!(
            "no rule compiled: all {refused} refused"
        )));
    }
    if args.strict && (rows.values().any(|r| !r.refused.is_empty()) || !test_failures.is_empty()) {
        return Err(Failure::refused(anyhow::anyhow!(
            "--strict: {} rule(s) refused in some mode, {} content test failure(s)",
            rows.values().filter(|r| !r.refused.is_empty()).count(),
            test_failures.len()
        )));
    }
    Ok(())
}

/// The line of the document a refusal belongs to (refusals name the offending line).
fn doc_line(files: &[(String, String)], r: &Refusal) -> u32 {
    let Some((_, text)) = files.iter().find(|(p, _)| *p == r.file) else {
        return 0;
    };
    let line = r.line.unwrap_or(1);
    ringfence_detect::locate::documents(text)
        .iter()
        .rev()
        .find(|d| d.line <= line)
        .map_or(1, |d| d.line)
}
