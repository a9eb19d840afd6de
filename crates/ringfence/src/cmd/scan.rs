//! `ringfence scan PATH... [--rules DIR]`: the agent's YARA scan on demand, over files and
//! trees, with the built-in pack's rules or those of a content directory.
//!
//! Each match is printed as it is found (one line, or an ECS finding with `--json`); a
//! progress line on stderr (when it is a terminal) and a summary at the end: files, bytes,
//! MB/s, matches, skips. Exit status like clamscan's: 0 nothing found, 1 something matched,
//! 2 a usage error or rules that do not compile (each error names its file and line), 3 a
//! PATH that cannot be read at all.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use ringfence_agent::content::sigma;
use ringfence_agent::scan::{self, Outcome, ScanSection, Skip, Trigger};
use ringfence_content::yara::{self, YaraRules};

use crate::cmd::print_line;
use crate::{CmdResult, Failure};

/// Files one run looks at, at most.
const MAX_FILES: u64 = 10_000_000;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories to scan (directories recursively, not following symlinks).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// YARA rules: a content directory (its `yara/`) or a directory of `.yar` files. Default:
    /// the built-in pack's.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Skip files larger than this many bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_file_bytes: u64,
    /// Time budget of one file, in seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
    /// Print each match as an ECS finding (JSON line) instead of a readable line.
    #[arg(long)]
    pub json: bool,
}

/// A usage error: exit 2.
fn usage(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

/// The rule files of `dir` (or of `dir/yara`), as (path, bytes).
fn read_rules(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, Failure> {
    let yara_dir = if dir.join("yara").is_dir() {
        dir.join("yara")
    } else {
        dir.to_owned()
    };
    let entries = std::fs::read_dir(&yara_dir)
        .map_err(|e| usage(anyhow!("--rules {}: {e}", yara_dir.display())))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| usage(anyhow!("--rules {}: {e}", yara_dir.display())))?
            .path();
        if path.extension().is_some_and(|x| x == "yar" || x == "yara") {
            let bytes =
                std::fs::read(&path).map_err(|e| usage(anyhow!("{}: {e}", path.display())))?;
            // Compiled as `.yar` whatever the extension, named as the user gave it.
            let mut name = path.display().to_string();
            if !name.ends_with(".yar") {
                name.push_str(".yar");
            }
            out.push((name, bytes));
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(usage(anyhow!(
            "--rules {}: no .yar files there",
            yara_dir.display()
        )));
    }
    Ok(out)
}

fn load_rules(dir: Option<&Path>) -> Result<YaraRules, Failure> {
    let compiled = match dir {
        Some(dir) => {
            let files = read_rules(dir)?;
            yara::compile(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())))
        }
        None => yara::compile(
            sigma::builtin_yara_files()
                .iter()
                .map(|(p, t)| (*p, t.as_bytes())),
        ),
    };
    compiled.map_err(|errors| {
        usage(anyhow!(
            "the YARA rules do not compile ({} error(s)):{}",
            errors.len(),
            errors
                .iter()
                .map(|e| format!("\n  {e}"))
                .collect::<String>()
        ))
    })
}

#[derive(Default)]
struct Tally {
    files: u64,
    bytes: u64,
    matched_files: u64,
    matches: u64,
    too_large: u64,
    unreadable: u64,
    timeouts: u64,
}

pub fn run(args: Args) -> CmdResult {
    let rules = load_rules(args.rules.as_deref())?;
    if args.timeout_secs == 0 || args.max_file_bytes == 0 {
        return Err(usage(anyhow!(
            "--timeout-secs and --max-file-bytes must be > 0"
        )));
    }
    let section = ScanSection {
        skip_paths: ["/proc", "/sys", "/dev"]
            .iter()
            .map(PathBuf::from)
            .collect(),
        ..ScanSection::default()
    };
    let mut files = Vec::new();
    for p in &args.paths {
        if std::fs::symlink_metadata(p).is_err() {
            return Err(Failure::environment(anyhow!(
                "{}: cannot be read",
                p.display()
            )));
        }
        let left = MAX_FILES.saturating_sub(files.len() as u64);
        scan::walk(p, &section, left, &mut files);
    }
    let total = files.len();
    let progress = std::io::stderr().is_terminal();
    let mut scanner = scan::Scanner::new(
        &rules,
        Duration::from_secs(args.timeout_secs),
        args.max_file_bytes,
    );
    let mut t = Tally::default();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    for (i, f) in files.iter().enumerate() {
        match scanner.scan_path(f) {
            Outcome::Scanned {
                matches,
                sha256,
                size,
                ..
            } => {
                t.files += 1;
                t.bytes = t.bytes.saturating_add(size);
                if !matches.is_empty() {
                    t.matched_files += 1;
                }
                for m in &matches {
                    t.matches += 1;
                    let path = f.display().to_string();
                    let line = if args.json {
                        scan::finding(m, &path, &sha256, size, Trigger::Order, None, None)
                            .to_string()
                    } else {
                        format!(
                            "{path}: yara:{} ({}) {}",
                            m.rule,
                            m.level,
                            m.description.as_deref().unwrap_or("")
                        )
                    };
                    if progress {
                        eprint!("\r\x1b[K");
                    }
                    print_line(&line).map_err(|e| anyhow!("writing to stdout: {e}"))?;
                }
            }
            Outcome::Skipped(Skip::TooLarge) => t.too_large += 1,
            Outcome::Skipped(Skip::Timeout) => t.timeouts += 1,
            Outcome::Skipped(_) | Outcome::Unchanged => t.unreadable += 1,
        }
        if progress && last_progress.elapsed() >= Duration::from_millis(200) {
            last_progress = Instant::now();
            eprint!(
                "\r\x1b[K[{:>3}%] {}/{} files, {:.1} MB, {} matches",
                (i + 1) * 100 / total.max(1),
                i + 1,
                total,
                t.bytes as f64 / 1e6,
                t.matches
            );
            let _ = std::io::stderr().flush();
        }
    }
    if progress {
        eprint!("\r\x1b[K");
    }
    let secs = started.elapsed().as_secs_f64();
    let skipped = t.too_large + t.unreadable + t.timeouts;
    eprintln!(
        "scanned {} files, {:.1} MB in {:.1} s ({:.1} MB/s) with {} rules: {} matches in {} \
         files; {} skipped ({} too large, {} unreadable, {} past the time budget)",
        t.files,
        t.bytes as f64 / 1e6,
        secs,
        t.bytes as f64 / 1e6 / secs.max(1e-9),
        rules.len(),
        t.matches,
        t.matched_files,
        skipped,
        t.too_large,
        t.unreadable,
        t.timeouts
    );
    if t.matches > 0 {
        return Err(Failure::refused(anyhow!(
            "{} file(s) matched YARA rules",
            t.matched_files
        )));
    }
    Ok(())
}
