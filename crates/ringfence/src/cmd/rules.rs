//! `ringfence rules check PATH...`: the Sigma compatibility report. Each rule is compiled for
//! both sensor modes against the field schema; the report says, per rule, where it compiled or
//! why it was refused (file, line, rule id, field), then the totals.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ringfence_detect::{Options, Refusal, RuleFile, compile};
use ringfence_event::Mode;
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
    /// Exit 1 if any rule is refused.
    #[arg(long)]
    pub strict: bool,
}

/// Every *.yml / *.yaml under `paths`, sorted, read as text. Unreadable files are errors.
pub fn read_rule_files(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files).with_context(|| format!("reading {}", p.display()))?;
    }
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
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
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
        if ty.is_dir() {
            collect(&path, out)?;
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
    let files = read_rule_files(&args.paths).map_err(Failure::refused)?;
    let rule_files: Vec<RuleFile<'_>> = files
        .iter()
        .map(|(p, t)| RuleFile { path: p, text: t })
        .collect();
    // Key: (file, line of the document) so every document is one row.
    let mut rows: BTreeMap<(String, u32), Row> = BTreeMap::new();
    let mut documents = 0;
    for mode in &modes {
        let out = compile(&rule_files, &Options::new(*mode));
        documents = documents.max(out.documents);
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
            let line = doc_line(&files, &r);
            let row = rows.entry((r.file.clone(), line)).or_default();
            if let Some(t) = &r.title {
                row.title.clone_from(t);
            }
            row.refused.push((mode.as_str(), r));
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
        let mut seen = std::collections::HashSet::new();
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
    if !args.json {
        let modes_text: Vec<String> = per_mode.iter().map(|(m, n)| format!("{m}: {n}")).collect();
        print_line(&format!(
            "{compiled} compiled, {refused} refused ({} documents; compiled per mode: {})",
            documents.max(compiled + refused),
            modes_text.join(", ")
        ))
        .context("writing")?;
    }
    if args.strict && rows.values().any(|r| !r.refused.is_empty()) {
        return Err(Failure::refused(anyhow::anyhow!("some rules were refused")));
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
