//! `ringfence bench exec-storm` and `syscall-storm`: what the agent costs the host. Runs N ×
//! `/bin/true` (or N × open, stat and close of small files, in-process: the per-syscall tax that
//! syscall tracepoints and audit rules lay on every process) without and with an agent (a child
//! `ringfence agent run --no-supervisor`), in interleaved rounds that alternate which side goes
//! first, so drift in the machine's load hits both sides alike, and prints the ratio of the
//! medians, the agent's CPU time per 1000 execs or rounds (its threads' `schedstat`, to the
//! nanosecond, from just before the storm until its events are written), its RSS at idle and
//! after the storm, the mode it really ran in, how many of the storm's execs it reported (and
//! complete), and what it lost.
//!
//! The agent child never outlives the bench: it is stopped after each round, and killed if it
//! does not become ready or anything fails while it runs.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use ringfence_event::{Event, EventKind};
use ringfence_sensor::proc_info::{rss_bytes, threads_cpu_time};

use crate::CmdResult;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Exec-storm overhead: N × /bin/true with and without the agent.
    ExecStorm(StormArgs),
    /// Syscall-storm overhead: N × (open, stat, close) of small files, in this process, with and
    /// without the agent: what its hooks cost every syscall on the host (default N 200000).
    SyscallStorm(StormArgs),
    /// Content: bundle landing to active (verify, compile, probation) and worker restart time.
    Content(crate::cmd::content::BenchArgs),
    /// Event→finding latency in the live agent: execs that match a rule, timed from the
    /// kernel's event time to the finding's arrival on the agent's stdout.
    FindingLatency(crate::cmd::bench_latency::LatencyArgs),
}

#[derive(Debug, clap::Args)]
pub struct StormArgs {
    #[arg(long, default_value = "driverless", value_parser = ["auto", "ebpf", "driverless"])]
    pub mode: String,
    /// Processes per exec storm (default 2000), or open/stat/close rounds per syscall storm
    /// (default 200000).
    #[arg(long)]
    pub count: Option<usize>,
    /// Rounds of each (with and without), interleaved.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Agent configuration file (defaults otherwise).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Keep every CPU busy with idle-priority spinners (`chrt --idle 0`), on both sides of
    /// every round: a loaded host, where the agent's CPU is no longer free. On an idle host
    /// the agent works on a core the storm leaves idle, and the ratio hides most of its cost.
    #[arg(long)]
    pub busy: bool,
}

/// What one storm runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// `/bin/true MARKER`, one after another.
    Exec,
    /// open, stat and close of small files, in this process.
    Syscalls,
}

impl Workload {
    fn default_count(self) -> usize {
        match self {
            Workload::Exec => 2000,
            Workload::Syscalls => 200_000,
        }
    }
}

/// Run `count` of `workload`; the elapsed time, and the pids of the processes it started.
fn storm(workload: Workload, count: usize, marker: &str) -> anyhow::Result<(Duration, Vec<u32>)> {
    match workload {
        Workload::Exec => exec_storm(count, marker),
        Workload::Syscalls => syscall_storm(count).map(|t| (t, Vec::new())),
    }
}

fn exec_storm(count: usize, marker: &str) -> anyhow::Result<(Duration, Vec<u32>)> {
    let mut pids = Vec::with_capacity(count);
    let start = Instant::now();
    for _ in 0..count {
        let mut c = Command::new("/bin/true")
            .arg(marker)
            .spawn()
            .context("spawning /bin/true")?;
        pids.push(c.id());
        c.wait().context("waiting for /bin/true")?;
    }
    Ok((start.elapsed(), pids))
}

/// `count` × (open and close a file, stat another): path lookups a watched directory (`/etc`)
/// and an unwatched one, the way a busy service's syscalls look.
fn syscall_storm(count: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for _ in 0..count {
        drop(std::fs::File::open("/etc/hostname").context("opening /etc/hostname")?);
        std::fs::metadata("/usr/bin/env").context("stat of /usr/bin/env")?;
    }
    Ok(start.elapsed())
}

/// Idle-priority spinners, one per CPU, for `--busy`: the scheduler runs them only when
/// nothing else wants the CPU, so they take no time from the storm or the agent, but no core
/// sits idle. Killed when dropped.
struct Spinners(Vec<Child>);

impl Spinners {
    fn start(count: usize) -> anyhow::Result<Spinners> {
        let mut spinners = Spinners(Vec::with_capacity(count));
        for _ in 0..count {
            let child = Command::new("chrt")
                .args(["--idle", "0", "/bin/sh", "-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting an idle-priority spinner (chrt, from util-linux)")?;
            spinners.0.push(child);
        }
        Ok(spinners)
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn read_events(path: &Path) -> Vec<Event> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| Event::from_ecs_line(&l).ok())
        .collect()
}

/// A running agent child. Dropping it kills the agent if it was not stopped.
pub(super) struct AgentChild {
    pub(super) child: Child,
    log: PathBuf,
    reaped: bool,
}

/// The last `n` lines of the agent's log, to show why it failed.
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl AgentChild {
    /// Start `ringfence agent run --no-supervisor` writing to `out`, and wait until it reports.
    fn start(args: &StormArgs, out: &Path, log: &Path) -> anyhow::Result<AgentChild> {
        let exe = std::env::current_exe().context("finding the ringfence binary")?;
        let mut cmd = Command::new(exe);
        cmd.args(["agent", "run", "--no-supervisor", "--mode", &args.mode])
            .arg("--output")
            .arg(format!("jsonl:{}", out.display()));
        if let Some(c) = &args.config {
            cmd.arg("--config").arg(c);
        }
        let _ = std::fs::remove_file(out);
        let mut agent = AgentChild::spawn(cmd, log)?;
        agent.wait_ready(out, Duration::from_secs(60))?;
        Ok(agent)
    }

    /// Run `cmd` as the agent: stdout discarded, stderr to `log`.
    fn spawn(cmd: Command, log: &Path) -> anyhow::Result<AgentChild> {
        AgentChild::spawn_with(cmd, Stdio::null(), log)
    }

    /// Run `cmd` as the agent with `stdout`, stderr to `log`.
    pub(super) fn spawn_with(
        mut cmd: Command,
        stdout: Stdio,
        log: &Path,
    ) -> anyhow::Result<AgentChild> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("creating the agent log {}", log.display()))?;
        cmd.stdout(stdout).stderr(log_file);
        let child = cmd.spawn().context("starting the agent")?;
        Ok(AgentChild {
            child,
            log: log.to_path_buf(),
            reaped: false,
        })
    }

    /// Wait until a sentinel exec shows up in the JSON lines file `out`.
    fn wait_ready(&mut self, out: &Path, patience: Duration) -> anyhow::Result<()> {
        self.wait_until_seen(patience, |marker| {
            std::thread::sleep(Duration::from_millis(300));
            std::fs::read_to_string(out).is_ok_and(|t| t.contains(marker))
        })
    }

    /// Run a sentinel exec until `seen` (given its marker, allowed ~300 ms to look) finds it
    /// in the agent's output. On failure the agent is killed (never left running) and the
    /// error quotes the end of its log.
    pub(super) fn wait_until_seen(
        &mut self,
        patience: Duration,
        mut seen: impl FnMut(&str) -> bool,
    ) -> anyhow::Result<()> {
        let marker = format!("ringfence-bench-ready-{}", std::process::id());
        let deadline = Instant::now() + patience;
        loop {
            let _ = Command::new("/bin/true").arg(&marker).status();
            if seen(&marker) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                self.reaped = true;
                bail!(
                    "the agent exited ({status}) before it reported events; its log ends:\n{}",
                    log_tail(&self.log, 20)
                );
            }
            if Instant::now() > deadline {
                self.kill();
                bail!(
                    "the agent did not report events within {} s (killed it); its log ends:\n{}",
                    patience.as_secs(),
                    log_tail(&self.log, 20)
                );
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn kill(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
    }

    pub(super) fn stop(mut self) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id()).context("agent pid")?;
        // SIGTERM through kill(1): the binary keeps unsafe out of the CLI.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.child.try_wait()?.is_some() {
                self.reaped = true;
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                bail!("the agent did not exit within 30 s of SIGTERM (killed it)");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AgentChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The mode the agent reported in its exit summary (`ringfence agent summary: mode X, ...`).
fn ran_mode(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|l| {
        let rest = l.split("ringfence agent summary: mode ").nth(1)?;
        Some(rest.split(',').next()?.to_owned())
    })
}

/// The value at quantile `q` (0 to 1) of `sorted`: the one `len × q` places in (the upper
/// median for an even count); `None` when empty.
pub(crate) fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let at = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(at).copied()
}

/// The distribution-free 95% confidence interval of the median of `n` values, as 0-based
/// places `(low, high)` in their sorted order: the widest symmetric pair of order statistics
/// that a true median falls outside of at most 5% of the time, whatever the noise's shape
/// (the binomial count of values below the median). `None` under 6 values, too few for 95%.
pub(crate) fn median_interval(n: usize) -> Option<(usize, usize)> {
    // Add up P(exactly i of n fall below the median) = C(n, i) / 2^n in logarithms, so that a
    // large n neither overflows C(n, i) nor underflows 2^-n to zero before the sum matters.
    let nf = n as f64;
    let mut ln_p = -nf * std::f64::consts::LN_2;
    let mut below = 0.0f64;
    let mut k = 0usize;
    // The interval [x_k, x_(n-1-k)] misses the median when k or fewer values are below it,
    // or k or fewer above: probability 2 × P(B <= k). Take the largest k where that is <= 5%.
    while k < n / 2 {
        below += ln_p.exp();
        if 2.0 * below > 0.05 {
            break;
        }
        let i = k as f64;
        ln_p += ((nf - i) / (i + 1.0)).ln();
        k += 1;
    }
    // k values below is the first count the interval may not miss; k = 0 means none fits.
    let low = k.checked_sub(1)?;
    Some((low, n - 1 - low))
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    quantile(v, 0.5).unwrap_or_default()
}

pub fn run(args: Args) -> CmdResult {
    let (args, workload) = match args.command {
        BenchCommand::ExecStorm(a) => (a, Workload::Exec),
        BenchCommand::SyscallStorm(a) => (a, Workload::Syscalls),
        BenchCommand::Content(a) => return crate::cmd::content::bench(&a),
        BenchCommand::FindingLatency(a) => return crate::cmd::bench_latency::run(&a),
    };
    let count = args.count.unwrap_or(workload.default_count());
    if count == 0 || args.rounds == 0 {
        return Err(crate::Failure::refused(anyhow!(
            "--count and --rounds must be > 0"
        )));
    }
    let out = std::env::temp_dir().join(format!("ringfence-bench-{}.jsonl", std::process::id()));
    let log = std::env::temp_dir().join(format!("ringfence-bench-{}.log", std::process::id()));
    let marker = format!("ringfence-bench-storm-{}", std::process::id());
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut idle_rss = None;
    let mut after_rss = None;
    let mut cpu = Duration::ZERO;
    let mut cpu_known = true;
    let mut idle_cpu = None;
    let (mut seen, mut complete, mut total) = (0usize, 0usize, 0usize);
    let (mut dropped, mut gaps) = (0i64, 0i64);
    let mut modes: Vec<String> = Vec::new();
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let spinners = if args.busy {
        Some(Spinners::start(cpus)?)
    } else {
        None
    };
    // Warm the page cache and the fork path once.
    storm(workload, count.min(200), "warmup")?;
    for round in 0..args.rounds {
        // Every other round runs its agent storm first (A B B A ...), so whatever a storm
        // inherits from the step before it (an agent just stopped, a file just parsed) falls on
        // both sides alike.
        let agent_first = round % 2 == 1;
        if !agent_first {
            without.push(storm(workload, count, &marker)?.0);
        }
        let agent = AgentChild::start(&args, &out, &log)?;
        if round == 0 {
            let before = threads_cpu_time(agent.pid());
            std::thread::sleep(Duration::from_secs(1));
            idle_rss = rss_bytes(agent.pid()).map(|b| b / 1024);
            idle_cpu = before
                .zip(threads_cpu_time(agent.pid()))
                .map(|(b, a)| a.saturating_sub(b));
        }
        let cpu_before = threads_cpu_time(agent.pid());
        let (t, pids) = storm(workload, count, &marker)?;
        with.push(t);
        // Give the agent a moment to write what it saw, then measure and stop it.
        std::thread::sleep(Duration::from_secs(1));
        match (cpu_before, threads_cpu_time(agent.pid())) {
            (Some(b), Some(a)) => cpu += a.saturating_sub(b),
            _ => cpu_known = false,
        }
        after_rss = rss_bytes(agent.pid()).map(|b| b / 1024).or(after_rss);
        agent.stop()?;
        if agent_first {
            without.push(storm(workload, count, &marker)?.0);
        }
        modes.push(ran_mode(&log).unwrap_or_else(|| "unknown".into()));
        let pids: HashSet<u32> = pids.into_iter().collect();
        for e in read_events(&out) {
            if e.kind == Some(EventKind::SensorHealth) {
                if let Some(h) = &e.health {
                    dropped += h.dropped;
                    gaps += h.gaps;
                }
                continue;
            }
            if e.kind != Some(EventKind::ProcessExec) {
                continue;
            }
            let Some(p) = &e.process else { continue };
            if !pids.contains(&p.pid) {
                continue;
            }
            seen += 1;
            if !e.partial && p.executable.is_some() && p.args.iter().any(|a| a == &marker) {
                complete += 1;
            }
        }
        total += count;
        eprintln!(
            "round {}: without {:.1} ms, with {:.1} ms",
            round + 1,
            without[round].as_secs_f64() * 1e3,
            with[round].as_secs_f64() * 1e3
        );
    }
    drop(spinners);
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&log);
    // Each round's pair ran back to back, so its ratio is the least touched by drift.
    let mut pair_ratios: Vec<f64> = with
        .iter()
        .zip(&without)
        .map(|(w, o)| w.as_secs_f64() / o.as_secs_f64().max(1e-9))
        .collect();
    pair_ratios.sort_by(f64::total_cmp);
    let ratio_at = |q| quantile(&pair_ratios, q).unwrap_or(1.0);
    let (q1, pair_ratio, q3) = (ratio_at(0.25), ratio_at(0.5), ratio_at(0.75));
    let interval = median_interval(pair_ratios.len()).map_or_else(
        || "too few rounds (6 or more give one)".to_owned(),
        |(low, high)| {
            let at = |i: usize| pair_ratios.get(i).copied().unwrap_or(1.0);
            format!("{:.3}× to {:.3}×", at(low), at(high))
        },
    );
    let (mw, mo) = (median(&mut with), median(&mut without));
    let ratio = mw.as_secs_f64() / mo.as_secs_f64().max(1e-9);
    let pct = |n: usize| 100.0 * n as f64 / total.max(1) as f64;
    let kib = |v: Option<u64>| {
        v.map_or("unknown".to_owned(), |k| {
            format!("{:.1} MiB", k as f64 / 1024.0)
        })
    };
    let cpu_per_1000 = if cpu_known {
        format!(
            "{:.1} ms",
            cpu.as_secs_f64() * 1e3 * 1000.0 / total.max(1) as f64
        )
    } else {
        "unknown (the agent's /proc/PID/task was unreadable)".to_owned()
    };
    modes.dedup();
    let (what, unit) = match workload {
        Workload::Exec => (format!("exec-storm: {count} × /bin/true"), "execs"),
        Workload::Syscalls => (
            format!("syscall-storm: {count} × (open, stat, close)"),
            "rounds",
        ),
    };
    let load = if args.busy {
        format!(", every CPU busy ({cpus} idle-priority spinners)")
    } else {
        String::new()
    };
    let mut text = format!(
        "{what}, {} interleaved rounds, mode {} (agent ran: {}){load}\n\
         median without agent: {:.1} ms\n\
         median with agent:    {:.1} ms\n\
         overhead ratio:       {ratio:.3}× (median of the rounds' own ratios: {pair_ratio:.3}×)\n\
         rounds' ratios:       {q1:.3}× to {q3:.3}× (middle half: the spread of this machine's noise)\n\
         ratio's 95% interval: {interval} (of the median of the rounds' own ratios, whatever the noise's shape)\n\
         agent CPU per 1000 {unit}: {cpu_per_1000} (user + system, storm and the 1 s after)\n\
         agent CPU idle:       {} per second\n\
         agent RSS idle:       {}\n\
         agent RSS after:      {}\n",
        args.rounds,
        args.mode,
        modes.join(", "),
        mo.as_secs_f64() * 1e3,
        mw.as_secs_f64() * 1e3,
        idle_cpu.map_or("unknown".to_owned(), |d| format!(
            "{:.2} ms",
            d.as_secs_f64() * 1e3
        )),
        kib(idle_rss),
        kib(after_rss),
    );
    if workload == Workload::Exec {
        text.push_str(&format!(
            "execs reported:       {seen}/{total} ({:.1}%)\n\
             execs complete:       {complete}/{total} ({:.1}%) (executable and arguments, not partial)\n",
            pct(seen),
            pct(complete),
        ));
    }
    text.push_str(&format!(
        "events lost:          {dropped} dropped (agent queue), {gaps} gaps (kernel)"
    ));
    super::print_line(&text).context("writing the report")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        // A reaped child has no /proc entry (a zombie would still have one).
        Path::new(&format!("/proc/{pid}")).exists()
    }

    fn paths(tag: &str) -> (PathBuf, PathBuf) {
        let d = std::env::temp_dir();
        let id = std::process::id();
        (
            d.join(format!("rf-bench-test-{tag}-{id}.jsonl")),
            d.join(format!("rf-bench-test-{tag}-{id}.log")),
        )
    }

    #[test]
    fn quartiles_and_median_of_the_rounds() {
        let rounds: Vec<u32> = (100..115).collect();
        assert_eq!(quantile(&rounds, 0.25), Some(103));
        assert_eq!(quantile(&rounds, 0.5), Some(107));
        assert_eq!(quantile(&rounds, 0.75), Some(111));
        assert_eq!(quantile::<f64>(&[], 0.5), None);
        let mut even = [4, 1, 3, 2].map(Duration::from_millis);
        assert_eq!(
            median(&mut even),
            Duration::from_millis(3),
            "the upper median"
        );
    }

    #[test]
    fn the_medians_interval_is_the_binomial_order_statistics() {
        // Known pairs from the binomial tables (0-based): n = 6 is the first with 95% cover.
        assert_eq!(median_interval(5), None);
        assert_eq!(median_interval(6), Some((0, 5)));
        assert_eq!(median_interval(11), Some((1, 9)));
        assert_eq!(median_interval(31), Some((9, 21)));
        assert_eq!(median_interval(100), Some((39, 60)));
        // A huge count neither overflows nor loses the interval to underflow.
        let (low, high) = median_interval(100_000).unwrap_or_default();
        assert!(low > 49_500 && high < 50_500 && low + high == 99_999);
        assert_eq!(median_interval(0), None);
    }

    /// `--busy` keeps every CPU busy in the idle scheduling class, and nothing outlives it.
    #[test]
    fn busy_spinners_run_in_the_idle_class_and_die_with_the_bench() {
        // The scheduling policy is field 41 of /proc/PID/stat; 5 is SCHED_IDLE.
        let policy = |pid: u32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after_comm.split_whitespace().nth(38).map(str::to_owned)
        };
        let spinners = match Spinners::start(2) {
            Ok(s) => s,
            Err(e) => panic!("spinners did not start: {e:#}"),
        };
        let pids: Vec<u32> = spinners.0.iter().map(Child::id).collect();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && !pids.iter().all(|&p| policy(p).as_deref() == Some("5")) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let policies: Vec<Option<String>> = pids.iter().map(|&p| policy(p)).collect();
        drop(spinners);
        assert!(
            policies.iter().all(|p| p.as_deref() == Some("5")),
            "{policies:?}"
        );
        assert!(
            pids.iter().all(|&p| !alive(p)),
            "a spinner outlived the bench"
        );
    }

    #[test]
    fn an_agent_that_never_reports_is_killed() {
        let (out, log) = paths("silent");
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo starting >&2; exec sleep 1000"]);
        let Ok(mut agent) = AgentChild::spawn(cmd, &log) else {
            panic!("cannot spawn sh");
        };
        let pid = agent.pid();
        let Err(e) = agent.wait_ready(&out, Duration::from_millis(500)) else {
            panic!("a silent agent was taken as ready");
        };
        let e = e.to_string();
        assert!(e.contains("killed it") && e.contains("starting"), "{e}");
        assert!(!alive(pid), "the agent was left running");
        drop(agent);
        let _ = std::fs::remove_file(&log);
    }

    #[test]
    fn an_agent_dropped_on_an_error_path_is_killed() {
        let (_, log) = paths("dropped");
        let mut cmd = Command::new("sleep");
        cmd.arg("1000");
        let Ok(agent) = AgentChild::spawn(cmd, &log) else {
            panic!("cannot spawn sleep");
        };
        let pid = agent.pid();
        assert!(alive(pid));
        drop(agent);
        assert!(!alive(pid), "the agent outlived its handle");
        let _ = std::fs::remove_file(&log);
    }

    #[test]
    fn the_summary_line_names_the_mode_that_ran() {
        let (_, log) = paths("mode");
        let text = "INFO sensor mode\nringfence agent summary: mode driverless, 3 events written\n";
        assert!(std::fs::write(&log, text).is_ok());
        assert_eq!(ran_mode(&log).as_deref(), Some("driverless"));
        let _ = std::fs::remove_file(&log);
    }
}
