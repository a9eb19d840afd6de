//! `ringfence replay --rules PATH --events FILE.jsonl [--bench]`: detection over recorded ECS
//! events, findings as JSON lines. `--bench` times matching alone on one core and ends with
//! `<n> events in <t> s: <x> events/s`.

use std::io::BufRead;
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
    /// Finding form: ecs or ocsf (OCSF Detection Finding, class 2004).
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

/// Reads JSONL events; bad lines are reported with their number and skipped.
pub fn read_events(path: &PathBuf) -> anyhow::Result<(Vec<Event>, usize)> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    };
    let mut events = Vec::new();
    let mut bad = 0;
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match Event::from_ecs_line(&line) {
            Ok(e) => events.push(e),
            Err(e) => {
                bad += 1;
                if bad <= 20 {
                    eprintln!("{}:{}: skipped: {e}", path.display(), i + 1);
                }
            }
        }
    }
    Ok((events, bad))
}

pub fn run(args: Args) -> CmdResult {
    let mode = parse_mode(&args.mode)?;
    let format = Format::parse(&args.format).ok_or_else(|| {
        Failure::refused(anyhow::anyhow!(
            "--format {}: expected ecs or ocsf",
            args.format
        ))
    })?;
    let files = read_rule_files(&args.rules).map_err(Failure::refused)?;
    let rule_files: Vec<RuleFile<'_>> = files
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
    let (events, bad) = read_events(&args.events).map_err(Failure::refused)?;
    if bad > 0 {
        eprintln!("{bad} lines skipped");
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
                print_line(&f.to_json(format).to_string()).context("writing")?;
            }
        }
        for set in &iocs {
            for hit in set.matches(e) {
                count += 1;
                let mut doc = e.to_ecs();
                doc["event"]["kind"] = json!("alert");
                doc["threat"] = json!({"indicator": {"type": hit.kind, "name": hit.indicator, "description": hit.label}, "feed": {"name": set.name}});
                doc["rule"] = json!({"id": format!("ioc:{}", hit.kind), "name": format!("IOC match on {}", hit.field)});
                print_line(&doc.to_string()).context("writing")?;
            }
        }
    }
    eprintln!("{} events, {count} findings", events.len());
    Ok(())
}
