//! `ringfence eval --corpus DIR [--content DIR] [--format text|json] [--svg FILE]`: replays a
//! recorded corpus through the built-in pack (or `--content`) and reports detection efficacy.
//!
//! An attack corpus (`cases.json` plus `MODE/<case>.jsonl[.gz]` per sensor mode it was recorded
//! in) gives a table per ATT&CK technique: cases run, observed (the sensors recorded any event
//! and the manifest does not mark the attack step unobservable) and detected at medium or
//! above, with the rules that did it, the detection rate per mode and the unobservable cases
//! with why. A benign corpus (`MODE.jsonl[.gz]`) gives the findings per hour by level over the
//! session's duration. Exit 1 when the corpus or content cannot be read.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ringfence_detect::eval::{self, CaseOutcome, CaseSpec, LEVELS, Noise, Rate};
use ringfence_detect::{Engine, Options, RuleFile, compile, heatmap};
use ringfence_event::{Event, Mode};
use serde_json::json;

use crate::cmd::print_line;
use crate::cmd::rules::read_rule_files;
use crate::{CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A recorded corpus: an attack corpus (cases.json and MODE/ directories) or a benign one
    /// (MODE.jsonl.gz files).
    #[arg(long)]
    pub corpus: PathBuf,
    /// Content pack directory (its rules/) or rule files; default: the built-in pack.
    #[arg(long)]
    pub content: Vec<PathBuf>,
    /// text or json.
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Also draw the attack corpus's coverage as an ATT&CK heat map (SVG) into this file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// Largest corpus file read (decompressed), in bytes.
const MAX_CORPUS_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// The rule texts to compile: `--content`, or the built-in pack.
fn content(args: &Args) -> anyhow::Result<(String, Vec<(String, String)>)> {
    if args.content.is_empty() {
        let files = ringfence_agent::content::sigma::builtin_files()
            .iter()
            .filter(|(p, _)| p.starts_with("rules/"))
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect();
        return Ok(("the built-in pack".into(), files));
    }
    let paths: Vec<PathBuf> = args
        .content
        .iter()
        .map(|p| {
            let rules = p.join("rules");
            if rules.is_dir() { rules } else { p.clone() }
        })
        .collect();
    let found = read_rule_files(&paths)?;
    let names: Vec<String> = args
        .content
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Ok((names.join(", "), found.rules))
}

/// Reads `path` (gzipped when it ends in `.gz`) as ECS event lines; the agent's own alerts are
/// left out. A bad line is refused with its file and line.
fn read_events(path: &Path) -> anyhow::Result<Vec<Event>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut text = String::new();
    let limited = file.take(MAX_CORPUS_FILE_BYTES);
    if path.extension().is_some_and(|x| x == "gz") {
        flate2::read::GzDecoder::new(limited)
            .take(MAX_CORPUS_FILE_BYTES)
            .read_to_string(&mut text)
    } else {
        let mut limited = limited;
        limited.read_to_string(&mut text)
    }
    .with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let doc: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: invalid JSON", path.display(), n + 1))?;
        if doc
            .pointer("/event/kind")
            .and_then(serde_json::Value::as_str)
            == Some("alert")
        {
            continue;
        }
        let e = Event::from_ecs(&doc)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
        out.push(e);
    }
    Ok(out)
}

/// `dir/name.jsonl.gz` or `dir/name.jsonl`, whichever exists.
fn events_file(dir: &Path, name: &str) -> Option<PathBuf> {
    [format!("{name}.jsonl.gz"), format!("{name}.jsonl")]
        .into_iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

fn engine_for(files: &[(String, String)], mode: Mode) -> Engine {
    let rule_files: Vec<RuleFile<'_>> = files
        .iter()
        .map(|(p, t)| RuleFile { path: p, text: t })
        .collect();
    compile(&rule_files, &Options::new(mode)).engine
}

pub fn run(args: Args) -> CmdResult {
    let json_out = match args.format.as_str() {
        "text" => false,
        "json" => true,
        other => {
            return Err(Failure::refused(anyhow::anyhow!(
                "--format {other}: expected text or json"
            )));
        }
    };
    let (content_name, files) = content(&args).map_err(Failure::refused)?;
    let manifest = args.corpus.join("cases.json");
    if manifest.is_file() {
        attack(&args, &manifest, &content_name, &files, json_out)
    } else if Mode::ALL
        .iter()
        .any(|m| events_file(&args.corpus, m.as_str()).is_some())
    {
        if args.svg.is_some() {
            return Err(Failure::refused(anyhow::anyhow!(
                "--svg: {} is a benign corpus; the heat map is drawn from an attack corpus",
                args.corpus.display()
            )));
        }
        benign(&args, &content_name, &files, json_out)
    } else {
        Err(Failure::refused(anyhow::anyhow!(
            "{}: not a corpus: no cases.json (attack corpus) and no ebpf.jsonl.gz or \
             driverless.jsonl.gz (benign corpus)",
            args.corpus.display()
        )))
    }
}

/// Per mode: the outcome of every case.
type Outcomes = Vec<(Mode, Vec<CaseOutcome>)>;

/// The outcomes by mode name, as ringfence-detect's coverage and heat map take them.
fn named(results: &Outcomes) -> Vec<(String, Vec<CaseOutcome>)> {
    results
        .iter()
        .map(|(m, o)| (m.as_str().to_owned(), o.clone()))
        .collect()
}

fn attack(
    args: &Args,
    manifest: &Path,
    content_name: &str,
    files: &[(String, String)],
    json_out: bool,
) -> CmdResult {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))
        .map_err(Failure::refused)?;
    let cases = eval::parse_manifest(&text)
        .map_err(|e| Failure::refused(anyhow::anyhow!("{}: {e}", manifest.display())))?;
    let mut results: Outcomes = Vec::new();
    for mode in Mode::ALL {
        let dir = args.corpus.join(mode.as_str());
        if !dir.is_dir() {
            continue;
        }
        let engine = engine_for(files, mode);
        let mut outcomes = Vec::with_capacity(cases.len());
        for c in &cases {
            let events = match events_file(&dir, &c.id) {
                Some(p) => read_events(&p).map_err(Failure::refused)?,
                None => Vec::new(),
            };
            outcomes.push(eval::run_case(&engine, c, &events));
        }
        results.push((mode, outcomes));
    }
    if results.is_empty() {
        return Err(Failure::refused(anyhow::anyhow!(
            "{}: no ebpf/ or driverless/ directory of recorded events beside cases.json",
            args.corpus.display()
        )));
    }
    if let Some(svg) = &args.svg {
        std::fs::write(svg, heatmap::svg(&cases, &named(&results)))
            .with_context(|| format!("writing {}", svg.display()))?;
    }
    if json_out {
        let modes: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|(mode, outcomes)| {
                (
                    mode.as_str().to_owned(),
                    json!({
                        "rate": Rate::of(outcomes),
                        "techniques": eval::by_technique(outcomes),
                        "cases": outcomes,
                    }),
                )
            })
            .collect();
        let doc = json!({
            "corpus": args.corpus.display().to_string(),
            "content": content_name,
            "cases": cases,
            "modes": modes,
        });
        print_line(&doc.to_string()).context("writing")?;
        return Ok(());
    }
    print_attack_text(args, content_name, &cases, &results).context("writing")?;
    Ok(())
}

fn print_attack_text(
    args: &Args,
    content_name: &str,
    cases: &[CaseSpec],
    results: &Outcomes,
) -> std::io::Result<()> {
    print_line(&format!(
        "{}: {} cases, content: {content_name}; detected = a finding at medium or above, \
         observed = the sensors recorded any event of the case and cases.json does not mark \
         its attack step unobservable",
        args.corpus.display(),
        cases.len()
    ))?;
    let mut header = format!("{:<12} {:>5}", "technique", "tests");
    for (mode, _) in results {
        header.push_str(&format!(" {:>18}", format!("{} det/obs", mode.as_str())));
    }
    header.push_str("  rules (medium or above)");
    print_line(&header)?;
    let rows: Vec<(Mode, Vec<eval::TechniqueRow>)> = results
        .iter()
        .map(|(m, o)| (*m, eval::by_technique(o)))
        .collect();
    let Some((_, first)) = rows.first() else {
        return Ok(());
    };
    for (i, row) in first.iter().enumerate() {
        let mut line = format!("{:<12} {:>5}", row.technique, row.rate.run);
        let mut rules = std::collections::BTreeSet::new();
        for (_, r) in &rows {
            if let Some(r) = r.get(i) {
                line.push_str(&format!(
                    " {:>18}",
                    format!("{}/{}", r.rate.detected, r.rate.observed)
                ));
                rules.extend(r.rules.iter().cloned());
            }
        }
        line.push_str("  ");
        line.push_str(&rules.into_iter().collect::<Vec<_>>().join("; "));
        print_line(line.trim_end())?;
    }
    print_line("")?;
    print_line("Detection rate at medium or above (detected / observed; run):")?;
    for (mode, outcomes) in results {
        let r = Rate::of(outcomes);
        print_line(&format!(
            "  {:<10} {}/{} = {:.0}% ({} run, {} not observed)",
            mode.as_str(),
            r.detected,
            r.observed,
            r.percent(),
            r.run,
            r.run - r.observed
        ))?;
    }
    for c in cases {
        if let Some(why) = &c.unobservable {
            print_line(&format!("Unobservable, not counted: {}: {why}", c.id))?;
        }
    }
    for (mode, outcomes) in results {
        let missed: Vec<String> = outcomes
            .iter()
            .filter(|o| o.observed() && !o.detected)
            .map(|o| {
                let low: Vec<&str> = o.raised.iter().map(|r| r.title.as_str()).collect();
                if low.is_empty() {
                    o.id.clone()
                } else {
                    format!("{} (low: {})", o.id, low.join("; "))
                }
            })
            .collect();
        if !missed.is_empty() {
            print_line(&format!(
                "Observed, not detected in {} mode: {}",
                mode.as_str(),
                missed.join(", ")
            ))?;
        }
    }
    // Where one mode detects what the other does not.
    if let [(a, ao), (b, bo)] = results.as_slice() {
        for (x, xo, y, yo) in [(a, ao, b, bo), (b, bo, a, ao)] {
            let only: Vec<&str> = xo
                .iter()
                .zip(yo)
                .filter(|(p, q)| p.detected && !q.detected)
                .map(|(p, _)| p.id.as_str())
                .collect();
            if !only.is_empty() {
                print_line(&format!(
                    "Detected in {} mode only, not {}: {}",
                    x.as_str(),
                    y.as_str(),
                    only.join(", ")
                ))?;
            }
        }
    }
    Ok(())
}

fn benign(
    args: &Args,
    content_name: &str,
    files: &[(String, String)],
    json_out: bool,
) -> CmdResult {
    let mut results: Vec<(Mode, Noise)> = Vec::new();
    for mode in Mode::ALL {
        let Some(path) = events_file(&args.corpus, mode.as_str()) else {
            continue;
        };
        let events = read_events(&path).map_err(Failure::refused)?;
        let engine = engine_for(files, mode);
        results.push((mode, eval::run_benign(&engine, &events)));
    }
    if json_out {
        let modes: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|(mode, n)| {
                let per_hour: BTreeMap<&str, f64> =
                    LEVELS.iter().map(|l| (*l, n.per_hour(l))).collect();
                (
                    mode.as_str().to_owned(),
                    json!({
                        "events": n.events,
                        "seconds": n.seconds,
                        "findings": n.findings,
                        "per_hour": per_hour,
                        "alerts": n.alerts.iter().map(|(r, c)| json!({"rule": r, "count": c})).collect::<Vec<_>>(),
                    }),
                )
            })
            .collect();
        let doc = json!({
            "corpus": args.corpus.display().to_string(),
            "content": content_name,
            "modes": modes,
        });
        print_line(&doc.to_string()).context("writing")?;
        return Ok(());
    }
    print_line(&format!(
        "{}: benign corpus, content: {content_name}; findings per hour of this workload, by level",
        args.corpus.display()
    ))
    .context("writing")?;
    for (mode, n) in &results {
        let levels: Vec<String> = LEVELS
            .iter()
            .map(|l| {
                format!(
                    "{l} {} ({:.0}/h)",
                    n.findings.get(*l).copied().unwrap_or(0),
                    n.per_hour(l)
                )
            })
            .collect();
        print_line(&format!(
            "  {:<10} {} events over {:.1} s: {}",
            mode.as_str(),
            n.events,
            n.seconds,
            levels.join(", ")
        ))
        .context("writing")?;
        for (r, count) in &n.alerts {
            print_line(&format!("    {} x{count}: {}", r.level, r.title)).context("writing")?;
        }
    }
    Ok(())
}
