//! `ringfence bench exec-storm`: what the agent costs the host. Runs N × `/bin/true` without
//! and with an agent (a child `ringfence agent run`), in interleaved rounds so drift in the
//! machine's load hits both sides alike, and prints the ratio of the medians, the agent's RSS
//! at idle and after the storm, and how many of the storm's execs the agent reported complete.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use ringfence_event::{Event, EventKind};

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
    /// Content: bundle landing to active (verify, compile, probation) and worker restart time.
    Content(crate::cmd::content::BenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct StormArgs {
    #[arg(long, default_value = "driverless", value_parser = ["auto", "ebpf", "driverless"])]
    pub mode: String,
    /// Processes per storm.
    #[arg(long, default_value_t = 2000)]
    pub count: usize,
    /// Rounds of each (with and without), interleaved.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Agent configuration file (defaults otherwise).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

fn storm(count: usize, marker: &str) -> anyhow::Result<(Duration, Vec<u32>)> {
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

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
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

struct AgentChild {
    child: Child,
    out: PathBuf,
}

impl AgentChild {
    fn start(args: &StormArgs, out: &Path) -> anyhow::Result<AgentChild> {
        let _ = std::fs::remove_file(out);
        let exe = std::env::current_exe().context("finding the ringfence binary")?;
        let mut cmd = Command::new(exe);
        cmd.args(["agent", "run", "--no-supervisor", "--mode", &args.mode])
            .arg("--output")
            .arg(format!("jsonl:{}", out.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(c) = &args.config {
            cmd.arg("--config").arg(c);
        }
        let child = cmd.spawn().context("starting the agent")?;
        let agent = AgentChild {
            child,
            out: out.to_path_buf(),
        };
        // Ready when a sentinel exec shows up in its output.
        let marker = format!("ringfence-bench-ready-{}", std::process::id());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let _ = Command::new("/bin/true").arg(&marker).status();
            std::thread::sleep(Duration::from_millis(300));
            let seen = std::fs::read_to_string(&agent.out).is_ok_and(|t| t.contains(&marker));
            if seen {
                return Ok(agent);
            }
            if Instant::now() > deadline {
                bail!("the agent did not report events within 60 s");
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id()).context("agent pid")?;
        // SIGTERM through kill(1): the binary keeps unsafe out of the CLI.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("the agent did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub fn run(args: Args) -> CmdResult {
    let args = match args.command {
        BenchCommand::ExecStorm(a) => a,
        BenchCommand::Content(a) => return crate::cmd::content::bench(&a),
    };
    if args.count == 0 || args.rounds == 0 {
        return Err(crate::Failure::refused(anyhow!(
            "--count and --rounds must be > 0"
        )));
    }
    let out = std::env::temp_dir().join(format!("ringfence-bench-{}.jsonl", std::process::id()));
    let marker = format!("ringfence-bench-storm-{}", std::process::id());
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut idle_rss = None;
    let mut after_rss = None;
    let (mut seen, mut complete, mut total) = (0usize, 0usize, 0usize);
    // Warm the page cache and the fork path once.
    storm(args.count.min(200), "warmup")?;
    for round in 0..args.rounds {
        let (t, _) = storm(args.count, &marker)?;
        without.push(t);
        let agent = AgentChild::start(&args, &out)?;
        if round == 0 {
            std::thread::sleep(Duration::from_secs(1));
            idle_rss = rss_kib(agent.pid());
        }
        let (t, pids) = storm(args.count, &marker)?;
        with.push(t);
        // Give the agent a moment to write what it saw, then measure and stop it.
        std::thread::sleep(Duration::from_secs(1));
        after_rss = rss_kib(agent.pid()).or(after_rss);
        agent.stop()?;
        let pids: HashSet<u32> = pids.into_iter().collect();
        for e in read_events(&out) {
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
        total += args.count;
        eprintln!(
            "round {}: without {:.1} ms, with {:.1} ms",
            round + 1,
            without[round].as_secs_f64() * 1e3,
            with[round].as_secs_f64() * 1e3
        );
    }
    let _ = std::fs::remove_file(&out);
    let (mw, mo) = (median(&mut with), median(&mut without));
    let ratio = mw.as_secs_f64() / mo.as_secs_f64().max(1e-9);
    let pct = |n: usize| 100.0 * n as f64 / total.max(1) as f64;
    let kib = |v: Option<u64>| {
        v.map_or("unknown".to_owned(), |k| {
            format!("{:.1} MiB", k as f64 / 1024.0)
        })
    };
    let text = format!(
        "exec-storm: {} × /bin/true, {} interleaved rounds, mode {}\n\
         median without agent: {:.1} ms\n\
         median with agent:    {:.1} ms\n\
         overhead ratio:       {ratio:.3}×\n\
         agent RSS idle:       {}\n\
         agent RSS after:      {}\n\
         execs reported:       {seen}/{total} ({:.1}%)\n\
         execs complete:       {complete}/{total} ({:.1}%) (executable and arguments, not partial)",
        args.count,
        args.rounds,
        args.mode,
        mo.as_secs_f64() * 1e3,
        mw.as_secs_f64() * 1e3,
        kib(idle_rss),
        kib(after_rss),
        pct(seen),
        pct(complete),
    );
    super::print_line(&text).context("writing the report")?;
    Ok(())
}
