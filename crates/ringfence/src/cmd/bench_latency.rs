//! `ringfence bench finding-latency`: how long a detection takes to come out of the live
//! agent. Runs a child `ringfence agent run --no-supervisor --output stdout`, then N harmless
//! execs that the default pack's base64-decode-to-shell rule matches
//! (`sh -c 'echo | base64 -d | sh # MARKER'`), one every 20 ms, and times each finding from
//! its event's `@timestamp` (the kernel's clock for eBPF, the sensor's for driverless) to the
//! moment its line arrives on the agent's stdout. Prints p50, p99 and max.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use ringfence_event::Timestamp;
use serde_json::Value as Json;

use super::bench::AgentChild;
use crate::CmdResult;

#[derive(Debug, clap::Args)]
pub struct LatencyArgs {
    #[arg(long, default_value = "auto", value_parser = ["auto", "ebpf", "driverless"])]
    pub mode: String,
    /// Matching execs to time.
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// Agent configuration file (defaults otherwise).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// A line from the agent and when it arrived.
type Arrival = (Timestamp, String);

/// The finding's latency in nanoseconds, when `line` is an alert on an exec carrying `marker`.
fn latency(arrived: Timestamp, line: &str, marker: &str) -> Option<i64> {
    let doc: Json = serde_json::from_str(line).ok()?;
    if doc.pointer("/event/kind")?.as_str()? != "alert" {
        return None;
    }
    let command_line = doc.pointer("/process/command_line")?.as_str()?;
    if !command_line.contains(marker) {
        return None;
    }
    let at = Timestamp::parse_rfc3339(doc.get("@timestamp")?.as_str()?)?;
    Some(arrived.as_nanos().saturating_sub(at.as_nanos()))
}

/// The value at quantile `q` of sorted `v`, in milliseconds.
fn quantile_ms(v: &[i64], q: f64) -> f64 {
    super::bench::quantile(v, q).map_or(0.0, |ns| ns as f64 / 1e6)
}

pub fn run(args: &LatencyArgs) -> CmdResult {
    if args.count == 0 {
        return Err(crate::Failure::refused(anyhow!("--count must be > 0")));
    }
    let pid = std::process::id();
    let log = std::env::temp_dir().join(format!("ringfence-latency-{pid}.log"));
    let exe = std::env::current_exe().context("finding the ringfence binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["agent", "run", "--no-supervisor", "--mode", &args.mode])
        .args(["--output", "stdout"]);
    if let Some(c) = &args.config {
        cmd.arg("--config").arg(c);
    }
    let mut agent = AgentChild::spawn_with(cmd, Stdio::piped(), &log)?;
    let stdout = agent
        .child
        .stdout
        .take()
        .context("the agent's stdout was not piped")?;
    let (tx, rx) = mpsc::channel::<Arrival>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((Timestamp::now(), line)).is_err() {
                break;
            }
        }
    });
    agent.wait_until_seen(Duration::from_secs(60), |marker| {
        let until = Instant::now() + Duration::from_millis(300);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok((_, line)) if line.contains(marker) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    })?;

    let marker = format!("ringfence-latency-{pid}");
    let script = format!("echo | base64 -d | sh # {marker}");
    let mut latencies = Vec::with_capacity(args.count);
    // What arrives within `wait` of the previous line.
    let take = |latencies: &mut Vec<i64>, wait: Duration| {
        while let Ok((at, line)) = rx.recv_timeout(wait) {
            latencies.extend(latency(at, &line, &marker));
        }
    };
    for _ in 0..args.count {
        Command::new("/bin/sh")
            .args(["-c", &script])
            .status()
            .context("running the trigger")?;
        take(&mut latencies, Duration::from_millis(20));
    }
    let settle = Instant::now() + Duration::from_secs(3);
    while latencies.len() < args.count && Instant::now() < settle {
        take(&mut latencies, Duration::from_millis(100));
    }
    agent.stop()?;
    let _ = std::fs::remove_file(&log);
    if latencies.is_empty() {
        return Err(anyhow!(
            "none of {} matching execs produced a finding: is the default pack (its \
             base64-decode-to-shell rule) in the agent's content?",
            args.count
        )
        .into());
    }
    latencies.sort_unstable();
    let text = format!(
        "finding-latency: mode {}, {} of {} matching execs found\n\
         event -> finding: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        args.mode,
        latencies.len(),
        args.count,
        quantile_ms(&latencies, 0.5),
        quantile_ms(&latencies, 0.99),
        quantile_ms(&latencies, 1.0),
    );
    super::print_line(&text).context("writing the report")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_alerts_on_the_marked_exec_count() {
        let at = Timestamp::parse_rfc3339("2026-12-03T16:00:00.010Z").unwrap_or_default();
        let alert = r#"{"@timestamp":"2026-12-03T16:00:00.000Z","event":{"kind":"alert"},"process":{"command_line":"sh -c x # m1"}}"#;
        assert_eq!(latency(at, alert, "m1"), Some(10_000_000));
        assert_eq!(latency(at, alert, "m2"), None);
        let plain = alert.replace("alert", "event");
        assert_eq!(latency(at, &plain, "m1"), None);
        assert_eq!(latency(at, "not json", "m1"), None);
    }

    #[test]
    fn quantiles_of_sorted_nanoseconds() {
        let v: Vec<i64> = (1..=100).map(|ms| ms * 1_000_000).collect();
        assert_eq!(quantile_ms(&v, 0.5), 51.0);
        assert_eq!(quantile_ms(&v, 0.99), 100.0);
        assert_eq!(quantile_ms(&v, 1.0), 100.0);
        assert_eq!(quantile_ms(&[], 0.5), 0.0);
    }
}
