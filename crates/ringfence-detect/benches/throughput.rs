//! Replay throughput on one core: every SigmaHQ Linux rule that compiles plus our pack, over
//! events recorded from the real agent (`benches/data/events.jsonl`), through Ringfence's engine
//! and, side by side on the same rules and events, through `rsigma-eval` 0.23.0.
//!
//! `cargo bench -p ringfence-detect --bench throughput`. `RINGFENCE_BENCH_SECONDS` sets the
//! time per engine (default 3); `RINGFENCE_BENCH_EVENTS` another recording. Prints figures; it
//! asserts nothing about speed.
//!
//! rsigma-eval gets each event in Sigma's taxonomy (`Image`, `CommandLine`, auditd `type` and
//! `a0`…, nested ECS objects for rules written with ECS names) built before timing, with the
//! event's logsource for its logsource pruning; it runs detection rules only (its correlation
//! engine needs a different driver), while Ringfence also feeds its correlations.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "benchmark: a failure is the benchmark failing"
)]

#[path = "../tests/support/corpus.rs"]
mod corpus;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringfence_detect::access::{Val, any_value};
use ringfence_detect::mapping::{self, Family, TABLE_NAMES};
use ringfence_detect::{Options, RuleFile, compile};
use ringfence_event::{Event, EventKind as K, Mode};
use rsigma_eval::event::JsonEvent;
use rsigma_parser::LogSource;
use serde_json::{Map, Value as Json};

fn seconds() -> Duration {
    let s = std::env::var("RINGFENCE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(s.max(0.1))
}

/// The recordings: `RINGFENCE_BENCH_EVENTS` (a path), or both committed ones.
fn recordings() -> Vec<PathBuf> {
    match std::env::var_os("RINGFENCE_BENCH_EVENTS") {
        Some(p) => vec![PathBuf::from(p)],
        None => ["server.jsonl", "build-host.jsonl"]
            .iter()
            .map(|f| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("benches/data")
                    .join(f)
            })
            .collect(),
    }
}

fn events(path: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Event::from_ecs_line(l).unwrap())
        .collect()
}

/// The logsource an event stands for and the field tables that name its values.
fn sigma_view(e: &Event) -> (LogSource, &'static [Family]) {
    let cat = |c: &str| LogSource {
        product: Some("linux".into()),
        category: Some(c.into()),
        ..LogSource::default()
    };
    match e.kind {
        Some(K::ProcessExec) => (
            cat("process_creation"),
            &[Family::ProcessCreation, Family::Auditd],
        ),
        Some(K::NetworkConnect | K::NetworkAccept) => (
            cat("network_connection"),
            &[Family::Network, Family::Auditd],
        ),
        Some(K::FileCreate | K::FileModify | K::FileRename) => {
            (cat("file_event"), &[Family::File, Family::Auditd])
        }
        Some(K::FileDelete) => (cat("file_delete"), &[Family::File, Family::Auditd]),
        Some(K::AuthSuccess | K::AuthFailure | K::LogLine) => (
            LogSource {
                product: Some("linux".into()),
                service: e.service_name.as_deref().map(str::to_owned),
                ..LogSource::default()
            },
            &[Family::Logs],
        ),
        Some(K::WebRequest) => (cat("webserver"), &[Family::Webserver]),
        Some(k) => (
            cat(&k.action().replace('-', "_")),
            &[Family::Kernel, Family::Auditd],
        ),
        None => (LogSource::default(), &[]),
    }
}

fn to_json(v: Val<'_>) -> Json {
    match v {
        Val::Str(s) => Json::from(s),
        Val::Int(i) => Json::from(i),
        Val::Ip(ip) => Json::from(ip.to_string()),
        Val::Bool(b) => Json::from(b),
    }
}

/// `e` as rsigma-eval sees it: the ECS document plus Sigma taxonomy names at the top level.
fn sigma_event(e: &Event) -> (Json, LogSource) {
    let (logsource, families) = sigma_view(e);
    let mut doc = e.to_ecs();
    let mut flat = Map::new();
    for &family in families {
        for name in TABLE_NAMES {
            if let Ok(acc) = mapping::field(family, name) {
                any_value(acc, e, |v| {
                    flat.insert((*name).to_owned(), to_json(v));
                    true
                });
            }
        }
        if family == Family::Auditd {
            if let Some(t) = e.kind.and_then(|k| mapping::audit_types(k).first()) {
                flat.insert("type".into(), Json::from(*t));
            }
            for (n, a) in e.process.iter().flat_map(|p| p.args.iter()).enumerate() {
                flat.insert(format!("a{n}"), Json::from(a.as_str()));
            }
        }
    }
    if let Some(obj) = doc.as_object_mut() {
        obj.extend(flat);
    }
    (doc, logsource)
}

fn rate(n: u64, t: Duration) -> f64 {
    n as f64 / t.as_secs_f64().max(1e-9)
}

/// Runs `f` over `events` until the budget is spent; (events, elapsed, matches).
fn timed<T>(events: &[T], budget: Duration, mut f: impl FnMut(&T) -> u64) -> (u64, Duration, u64) {
    let start = Instant::now();
    let (mut n, mut hits) = (0u64, 0u64);
    // Look at the clock every few thousand events, not after each pass over a short list.
    let passes = (4096 / events.len().max(1)).max(1);
    loop {
        for _ in 0..passes {
            for e in events {
                hits += f(e);
            }
        }
        n += (events.len() * passes) as u64;
        if events.is_empty() || start.elapsed() >= budget {
            break;
        }
    }
    (n, start.elapsed(), hits)
}

/// Throughput per event kind, on the events of that kind alone.
fn per_kind(engine: &ringfence_detect::Engine, events: &[Event]) {
    let mut kinds: Vec<K> = events.iter().filter_map(|e| e.kind).collect();
    kinds.sort_by_key(|k| k.index());
    kinds.dedup();
    for kind in kinds {
        let some: Vec<&Event> = events.iter().filter(|e| e.kind == Some(kind)).collect();
        let mut state = engine.new_state();
        let (n, t, _) = timed(&some, seconds() / 4, |e| {
            engine.evaluate(e, &mut state, &mut |_| {});
            0
        });
        println!(
            "  {:<14} {:>9.0} events/s, {:.1} rules evaluated per event",
            kind.action(),
            rate(n, t),
            state.evaluated as f64 / n.max(1) as f64
        );
    }
}

/// rsigma-eval loaded with the same rules, and how many it took and refused.
struct RsigmaEngine {
    engine: rsigma_eval::Engine,
    added: usize,
    failed: usize,
}

/// rsigma-eval over every rule file's documents but those Ringfence refused.
fn rsigma_engine(
    texts: &[(String, String)],
    refusals: &[ringfence_detect::Refusal],
) -> RsigmaEngine {
    let refused: HashSet<(&str, Option<&str>)> = refusals
        .iter()
        .map(|r| (r.file.as_str(), r.rule_id.as_deref()))
        .collect();
    let mut engine = rsigma_eval::Engine::new();
    let (mut added, mut failed) = (0usize, 0usize);
    for (path, text) in texts {
        let Ok(collection) = rsigma_parser::parse_sigma_yaml(text) else {
            failed += 1;
            continue;
        };
        for rule in &collection.rules {
            if refused.contains(&(path.as_str(), rule.id.as_deref())) {
                continue;
            }
            match engine.add_rule(rule) {
                Ok(()) => added += 1,
                Err(_) => failed += 1,
            }
        }
    }
    RsigmaEngine {
        engine,
        added,
        failed,
    }
}

/// Bytes of free text a matcher may scan in `e`.
fn text_bytes(e: &Event) -> usize {
    use ringfence_event::{Field, Value};
    [
        Field::ProcessCommandLine,
        Field::ParentCommandLine,
        Field::ProcessExecutable,
        Field::FilePath,
        Field::Message,
        Field::UrlOriginal,
    ]
    .iter()
    .map(|f| match f.get(e) {
        Some(Value::Str(s)) => s.len(),
        _ => 0,
    })
    .sum()
}

fn main() {
    let pack = corpus::yaml_files(&corpus::repo().join("content/linux/rules")).unwrap();
    // The pack ships SigmaHQ's rules (rules/sigmahq); the corpus is loaded only beside a pack
    // without them, so no rule is loaded twice.
    let sigma = if pack.iter().any(|(p, _)| p.starts_with("sigmahq/")) {
        Vec::new()
    } else {
        corpus::yaml_files(&corpus::sigma_dir()).unwrap_or_default()
    };
    let texts: Vec<(String, String)> = sigma
        .into_iter()
        .map(|(p, t)| (format!("sigma/{p}"), t))
        .chain(pack.into_iter().map(|(p, t)| (format!("pack/{p}"), t)))
        .collect();
    let files: Vec<RuleFile<'_>> = texts
        .iter()
        .map(|(p, t)| RuleFile { path: p, text: t })
        .collect();
    let started = Instant::now();
    let compiled = compile(&files, &Options::new(Mode::Ebpf));
    let compile_time = started.elapsed();
    let engine = compiled.engine;
    println!(
        "rules: {} rules + {} correlations compiled in {:.0} ms ({} refused)",
        engine.rules().len(),
        engine.correlations().len(),
        compile_time.as_secs_f64() * 1e3,
        compiled.refusals.len(),
    );
    let total: usize = engine
        .index_summary()
        .iter()
        .filter(|k| !k.shared)
        .map(|k| k.bytes)
        .sum();
    println!(
        "  prefilter automatons: {:.1} MiB over all kinds",
        total as f64 / (1 << 20) as f64
    );
    let mut theirs = (std::env::var("RINGFENCE_BENCH_SKIP_RSIGMA").as_deref() != Ok("1"))
        .then(|| rsigma_engine(&texts, &compiled.refusals));
    for path in recordings() {
        let events = events(&path);
        println!(
            "\n== {} ({} events)",
            path.file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
            events.len()
        );
        run_recording(&engine, theirs.as_mut(), &events);
    }
}

fn run_recording(
    engine: &ringfence_detect::Engine,
    theirs: Option<&mut RsigmaEngine>,
    events: &[Event],
) {
    for k in engine.index_summary() {
        let n = events.iter().filter(|e| e.kind == Some(k.kind)).count();
        if n == 0 {
            continue;
        }
        println!(
            "  {:<14} {:>4} rules, {:>3} without a literal, {:>2} prefiltered fields, {:>5} needles ({} KiB); {n} events",
            k.kind.action(),
            k.rules,
            k.always,
            k.prefilters,
            k.needles,
            k.bytes / 1024
        );
    }
    let text: usize = events.iter().map(text_bytes).sum();
    println!(
        "  text per event (command lines, paths, messages, URLs): {:.0} bytes",
        text as f64 / events.len().max(1) as f64
    );
    // Ours and theirs take turns, round by round, so a noisy neighbour on a shared machine
    // slows both alike; each reports the median of its rounds.
    let mut theirs = theirs.map(|t| {
        let docs: Vec<(Json, LogSource)> = events.iter().map(sigma_event).collect();
        (t, docs)
    });
    let budget = seconds() / ROUNDS as u32;
    let mut state = engine.new_state();
    let (mut ours, mut evaluated, mut ours_n) = (Vec::new(), 0u64, 0u64);
    let mut their_rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        state.evaluated = 0;
        let (n, t, _) = timed(events, budget, |e| {
            let mut hits = 0;
            engine.evaluate(e, &mut state, &mut |_| hits += 1);
            hits
        });
        ours.push(rate(n, t));
        evaluated += state.evaluated;
        ours_n += n;
        if let Some((RsigmaEngine { engine: theirs, .. }, docs)) = theirs.as_mut() {
            for (bloom, rates) in [false, true].into_iter().zip(their_rates.iter_mut()) {
                theirs.set_bloom_prefilter(bloom);
                let (n, t, _) = timed(docs, budget, |(doc, ls)| {
                    let ev = JsonEvent::borrow(doc);
                    theirs.evaluate_with_logsource(&ev, ls).len() as u64
                });
                rates.push(rate(n, t));
            }
        }
    }
    let (ours_median, ours_low, ours_high) = spread(&mut ours);
    println!(
        "ringfence-detect: {ours_median:.0} events/s, median of {ROUNDS} rounds (range {ours_low:.0}-{ours_high:.0}; {:.1} rules evaluated per event)",
        evaluated as f64 / ours_n.max(1) as f64
    );
    per_kind(engine, events);
    let mut by_rule: HashMap<String, usize> = HashMap::new();
    let mut state = engine.new_state();
    for e in events {
        engine.evaluate(e, &mut state, &mut |h| {
            if let Some(f) = engine.finding(&h, e) {
                *by_rule.entry(f.meta.title.clone()).or_default() += 1;
            }
        });
    }
    let mut top: Vec<(String, usize)> = by_rule.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    println!("  findings in one pass, by rule:");
    for (title, n) in top.iter().take(8) {
        println!("    {n:>5}  {title}");
    }
    let Some((RsigmaEngine { added, failed, .. }, _)) = theirs else {
        return;
    };
    let mut best = 0.0f64;
    for (bloom, rates) in ["off", "on"].into_iter().zip(their_rates.iter_mut()) {
        let (median, low, high) = spread(rates);
        best = best.max(median);
        println!(
            "rsigma-eval 0.23.0 ({added} rules, {failed} not loaded, bloom prefilter {bloom}): {median:.0} events/s, median of {ROUNDS} rounds (range {low:.0}-{high:.0})"
        );
    }
    println!(
        "ratio ringfence-detect / rsigma-eval (its best), medians: {:.2}×",
        ours_median / best.max(1e-9)
    );
}

/// Measured rounds per engine.
const ROUNDS: usize = 5;

/// (median, lowest, highest) of `rates`.
fn spread(rates: &mut [f64]) -> (f64, f64, f64) {
    rates.sort_by(f64::total_cmp);
    let at = |i: usize| rates.get(i).copied().unwrap_or(0.0);
    (
        at(rates.len() / 2),
        at(0),
        at(rates.len().saturating_sub(1)),
    )
}
