//! `ringfence replay --rules PATH --events FILE.jsonl [--bench]`: detection over recorded ECS
//! events, findings as JSON lines. `--bench` times matching alone on one core and ends with
//! `<n> events in <t> s: <x> events/s`.
//!
//! The events may be the agent's own output: its alert lines (`event.kind: alert`) and
//! response decisions are its findings, not events, and are counted and left out. A line that
//! is not UTF-8 or not an event is reported with its file and line and skipped. Exit 1 when
//! nothing compiled and no IOC set was given: there would be nothing to match.

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use ringfence_detect::{Format, IocSet, Options, RuleFile, compile};
use ringfence_event::Event;
use serde_json::json;

use crate::cmd::print_line;
use crate::cmd::rules::{parse_mode, read_rule_files};
use crate::{CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rule files or directories.
    #[arg(long, required = true)]
    pub rules: Vec<PathBuf>,
    /// Recorded events, one ECS JSON object per line (`-` for stdin).
    #[arg(long)]
    pub events: PathBuf,
    /// The mode whose field schema the rules compile against.
    #[arg(long, default_value = "ebpf")]
    pub mode: String,
    /// Finding form: ecs, ocsf (OCSF Detection Finding, class 2004), or text (one readable
    /// line per finding, from the rule's `output` template when it has one).
    #[arg(long, default_value = "ecs")]
    pub format: String,
    /// IOC set files (hashes, addresses, ranges, domains).
    #[arg(long)]
    pub iocs: Vec<PathBuf>,
    /// Time matching instead of printing findings.
    #[arg(long)]
    pub bench: bool,
    /// With --bench: run the events again until this many seconds have passed.
    #[arg(long, default_value_t = 3.0)]
    pub bench_seconds: f64,
}

/// Longest line read; a longer one is skipped as bad, not buffered.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Bad lines reported one by one; beyond, only counted.
const MAX_REPORTED: usize = 20;

/// What [`read_events`] found.
#[derive(Debug, Default)]
pub struct ReadEvents {
    pub events: Vec<Event>,
    /// Lines skipped: not UTF-8, not JSON, or not an event of the schema.
    pub bad: usize,
    /// The agent's own findings and response decisions, left out.
    pub agent_output: usize,
}

/// Whether a JSON line is one the agent writes beside the events: a finding (`event.kind:
/// alert`) or a response decision (`ringfence.response`).
fn is_agent_output(doc: &serde_json::Value) -> bool {
    doc.pointer("/event/kind")
        .and_then(serde_json::Value::as_str)
        == Some("alert")
        || doc.pointer("/ringfence/response").is_some()
}

/// Reads JSONL events; bad lines are reported with their file and line and skipped.
pub fn read_events(path: &PathBuf) -> anyhow::Result<ReadEvents> {
    let mut reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    };
    let mut out = ReadEvents::default();
    let mut skip = |n: usize, why: &dyn std::fmt::Display| {
        out.bad += 1;
        if out.bad <= MAX_REPORTED {
            eprintln!("{}:{n}: skipped: {why}", path.display());
        }
    };
    let mut events = Vec::new();
    let mut agent_output = 0;
    let mut buf = Vec::new();
    let mut n = 0usize;
    loop {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            break;
        }
        n += 1;
        if buf.len() > MAX_LINE_BYTES && buf.last() != Some(&b'\n') {
            skip(n, &format_args!("longer than {MAX_LINE_BYTES} bytes"));
            // The rest of the long line.
            let mut rest = Vec::new();
            reader
                .read_until(b'\n', &mut rest)
                .with_context(|| format!("reading {}", path.display()))?;
            continue;
        }
        let line = match std::str::from_utf8(&buf) {
            Ok(l) => l,
            Err(e) => {
                skip(n, &format_args!("not UTF-8 at byte {}", e.valid_up_to()));
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let doc: serde_json::Value = match serde_json::from_str(line) {
            Ok(d) => d,
            Err(e) => {
                skip(n, &format_args!("invalid JSON: {e}"));
                continue;
            }
        };
        if is_agent_output(&doc) {
            agent_output += 1;
            continue;
        }
        match Event::from_ecs(&doc) {
            Ok(e) => events.push(e),
            Err(e) => skip(n, &e),
        }
    }
    out.events = events;
    out.agent_output = agent_output;
    Ok(out)
}

pub fn run(args: Args) -> CmdResult {
    let mode = parse_mode(&args.mode)?;
    let text = args.format == "text";
    let format = if text {
        Some(Format::Ecs)
    } else {
        Format::parse(&args.format)
    }
    .ok_or_else(|| {
        Failure::refused(anyhow::anyhow!(
            "--format {}: expected ecs, ocsf or text",
            args.format
        ))
    })?;
    let render = |doc: &serde_json::Value| {
        if text {
            ringfence_agent::outputs::text::line(doc)
        } else {
            doc.to_string()
        }
    };
    let found = read_rule_files(&args.rules).map_err(Failure::refused)?;
    if !found.tests.is_empty() {
        eprintln!(
            "{} content test file(s) under tests/ are not rules: not loaded",
            found.tests.len()
        );
    }
    let rule_files: Vec<RuleFile<'_>> = found
        .rules
        .iter()
        .map(|(p, t)| RuleFile { path: p, text: t })
        .collect();
    let compiled = compile(&rule_files, &Options::new(mode));
    for r in &compiled.refusals {
        eprintln!("refused: {r}");
    }
    let mut iocs = Vec::new();
    for p in &args.iocs {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))
            .map_err(Failure::refused)?;
        let (set, errors) = IocSet::parse(&p.display().to_string(), &text);
        for e in errors {
            eprintln!("{}: {e}", p.display());
        }
        iocs.push(set);
    }
    let engine = compiled.engine;
    eprintln!(
        "{} rules and {} correlations compiled for {} mode ({} refused)",
        engine.rules().len(),
        engine.correlations().len(),
        mode.as_str(),
        compiled.refusals.len()
    );
    if engine.rules().is_empty() && engine.correlations().is_empty() && iocs.is_empty() {
        let paths: Vec<String> = args.rules.iter().map(|p| p.display().to_string()).collect();
        return Err(Failure::refused(anyhow::anyhow!(
            "no rule compiled from {} ({} rule file(s), {} refused) and no --iocs: nothing to \
             replay the events against",
            paths.join(", "),
            found.rules.len(),
            compiled.refusals.len()
        )));
    }
    let ReadEvents {
        events,
        bad,
        agent_output,
    } = read_events(&args.events).map_err(Failure::refused)?;
    if bad > 0 {
        eprintln!("{bad} lines skipped");
    }
    if agent_output > 0 {
        eprintln!(
            "{agent_output} alert and response line(s) of the agent's own output left out \
             (findings, not events)"
        );
    }
    let mut state = engine.new_state();
    if args.bench {
        let mut findings = 0u64;
        let mut n = 0u64;
        let budget = Duration::from_secs_f64(args.bench_seconds.max(0.1));
        let start = Instant::now();
        loop {
            for e in &events {
                engine.evaluate(e, &mut state, &mut |_| findings += 1);
            }
            n += events.len() as u64;
            if events.is_empty() || start.elapsed() >= budget {
                break;
            }
        }
        let t = start.elapsed().as_secs_f64();
        print_line(&format!("{findings} findings")).context("writing")?;
        print_line(&format!(
            "{n} events in {t:.3} s: {:.0} events/s",
            n as f64 / t.max(1e-9)
        ))
        .context("writing")?;
        return Ok(());
    }
    let mut count = 0u64;
    for e in &events {
        let mut hits = Vec::new();
        engine.evaluate(e, &mut state, &mut |h| hits.push(h));
        for h in &hits {
            if let Some(f) = engine.finding(h, e) {
                count += 1;
                print_line(&render(&f.to_json(format))).context("writing")?;
            }
        }
        for set in &iocs {
            for hit in set.matches(e) {
                count += 1;
                let mut doc = e.to_ecs();
                doc["event"]["kind"] = json!("alert");
                doc["threat"] = json!({"indicator": {"type": hit.kind, "name": hit.indicator, "description": hit.label}, "feed": {"name": set.name}});
                doc["rule"] = json!({"id": format!("ioc:{}", hit.kind), "name": format!("IOC match on {}", hit.field)});
                print_line(&render(&doc)).context("writing")?;
            }
        }
    }
    eprintln!("{} events, {count} findings", events.len());
    Ok(())
}
