//! Guard rails: what a response may never touch, and how often it may act.
//!
//! Processes: pid 1, kernel threads, the agent and its ancestors, any pid listed as protected,
//! and any process whose executable is on the critical list (init, systemd, sshd — so operators'
//! sessions survive —, container runtimes, the kubelet) are refused. Files: anything under a
//! protected prefix (the agent's own files, system binaries, /proc, /sys, /dev) and anything
//! that is not a regular file. Addresses: loopback, unspecified, multicast, and allowlisted
//! networks (the console, the operators' networks).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::procfs;

/// Settings for the guard rails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// Executables never to kill (exact paths).
    #[serde(default = "default_critical")]
    pub critical_executables: Vec<PathBuf>,
    /// Pids never to kill besides the agent's own (e.g. the supervisor).
    #[serde(default)]
    pub protected_pids: Vec<u32>,
    /// Path prefixes never to quarantine.
    #[serde(default = "default_protected_paths")]
    pub protected_paths: Vec<PathBuf>,
    /// Networks never to block, as CIDR (`10.0.0.0/8`, `2001:db8::/32`) or single addresses.
    #[serde(default)]
    pub allow_networks: Vec<String>,
    /// Longest block allowed, in seconds.
    #[serde(default = "default_max_block")]
    pub max_block_secs: u64,
}

fn default_critical() -> Vec<PathBuf> {
    [
        "/sbin/init",
        "/usr/sbin/init",
        "/lib/systemd/systemd",
        "/usr/lib/systemd/systemd",
        "/usr/lib/systemd/systemd-journald",
        "/usr/lib/systemd/systemd-logind",
        "/usr/lib/systemd/systemd-udevd",
        "/usr/sbin/sshd",
        "/usr/lib/openssh/sshd-session",
        "/usr/bin/containerd",
        "/usr/bin/dockerd",
        "/usr/bin/kubelet",
        "/usr/sbin/dbus-daemon",
        "/usr/bin/dbus-daemon",
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

fn default_protected_paths() -> Vec<PathBuf> {
    [
        "/proc",
        "/sys",
        "/dev",
        "/boot",
        "/usr/lib/systemd",
        "/lib/systemd",
        "/etc/ringfence",
        "/var/lib/ringfence",
        "/usr/bin/ringfence",
        "/usr/local/bin/ringfence",
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

fn default_max_block() -> u64 {
    7 * 24 * 3600
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            critical_executables: default_critical(),
            protected_pids: Vec::new(),
            protected_paths: default_protected_paths(),
            allow_networks: Vec::new(),
            max_block_secs: default_max_block(),
        }
    }
}

/// Why the guard rails refused an action.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    InitProcess,
    KernelThread(u32),
    Agent(u32),
    ProtectedPid(u32),
    CriticalExecutable { pid: u32, exe: PathBuf },
    NoSuchProcess(u32),
    PidReused { pid: u32, expected: u64, found: u64 },
    ProtectedPath(PathBuf),
    NotARegularFile(PathBuf),
    RelativePath(PathBuf),
    ProtectedAddress { ip: IpAddr, why: String },
    BlockTooLong { asked: u64, max: u64 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::InitProcess => f.write_str("pid 1 (init) is never acted on"),
            Refusal::KernelThread(pid) => write!(f, "pid {pid} is a kernel thread"),
            Refusal::Agent(pid) => write!(f, "pid {pid} is the agent or one of its ancestors"),
            Refusal::ProtectedPid(pid) => write!(f, "pid {pid} is protected by configuration"),
            Refusal::CriticalExecutable { pid, exe } => {
                write!(f, "pid {pid} runs critical service {}", exe.display())
            }
            Refusal::NoSuchProcess(pid) => write!(f, "pid {pid} does not exist"),
            Refusal::PidReused {
                pid,
                expected,
                found,
            } => {
                write!(
                    f,
                    "pid {pid} was reused (start {found}, expected {expected})"
                )
            }
            Refusal::ProtectedPath(p) => write!(f, "{} is under a protected path", p.display()),
            Refusal::NotARegularFile(p) => write!(f, "{} is not a regular file", p.display()),
            Refusal::RelativePath(p) => write!(f, "{} is not an absolute path", p.display()),
            Refusal::ProtectedAddress { ip, why } => write!(f, "{ip} is never blocked: {why}"),
            Refusal::BlockTooLong { asked, max } => {
                write!(f, "block of {asked} s exceeds the maximum {max} s")
            }
        }
    }
}

impl std::error::Error for Refusal {}

/// The checks, with the agent's own pids resolved once.
#[derive(Debug, Clone)]
pub struct GuardRails {
    config: GuardConfig,
    agent_pids: Vec<u32>,
    allow: Vec<(IpAddr, u8)>,
}

impl GuardRails {
    pub fn new(config: GuardConfig) -> GuardRails {
        let me = std::process::id();
        let mut agent_pids = procfs::ancestors(me);
        agent_pids.push(me);
        let allow = config
            .allow_networks
            .iter()
            .filter_map(|n| parse_cidr(n))
            .collect();
        GuardRails {
            config,
            agent_pids,
            allow,
        }
    }

    /// May `pid` be killed? `start_ticks`, when known, must match (pid reuse).
    pub fn check_process(&self, pid: u32, start_ticks: Option<u64>) -> Result<(), Refusal> {
        if pid <= 1 {
            return Err(Refusal::InitProcess);
        }
        if self.agent_pids.contains(&pid) {
            return Err(Refusal::Agent(pid));
        }
        if self.config.protected_pids.contains(&pid) {
            return Err(Refusal::ProtectedPid(pid));
        }
        let info = procfs::read(pid).ok_or(Refusal::NoSuchProcess(pid))?;
        if info.is_kernel_thread() {
            return Err(Refusal::KernelThread(pid));
        }
        // One tick of slack: a start time carried as wall-clock nanoseconds and converted back
        // can land on either side of a tick boundary. A pid reused within 10 ms needs the pid
        // space to wrap in that time.
        if let Some(expected) = start_ticks.filter(|s| s.abs_diff(info.start_ticks) > 1) {
            return Err(Refusal::PidReused {
                pid,
                expected,
                found: info.start_ticks,
            });
        }
        if let Some(exe) = info
            .exe
            .filter(|e| self.config.critical_executables.contains(e))
        {
            return Err(Refusal::CriticalExecutable { pid, exe });
        }
        Ok(())
    }

    /// May the file at `path` be quarantined?
    pub fn check_path(&self, path: &Path) -> Result<(), Refusal> {
        if !path.is_absolute() {
            return Err(Refusal::RelativePath(path.to_owned()));
        }
        // Judge where the path really leads, so a symlink cannot smuggle in a protected file.
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        for candidate in [path, real.as_path()] {
            if self
                .config
                .protected_paths
                .iter()
                .any(|p| candidate.starts_with(p))
            {
                return Err(Refusal::ProtectedPath(candidate.to_owned()));
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_file() => Ok(()),
            _ => Err(Refusal::NotARegularFile(path.to_owned())),
        }
    }

    /// May `ip` be blocked for `ttl_secs`?
    pub fn check_ip(&self, ip: IpAddr, ttl_secs: u64) -> Result<(), Refusal> {
        let why = if ip.is_loopback() {
            Some("loopback".to_owned())
        } else if ip.is_unspecified() {
            Some("unspecified address".to_owned())
        } else if ip.is_multicast() {
            Some("multicast".to_owned())
        } else {
            self.allow
                .iter()
                .find(|(net, bits)| in_network(ip, *net, *bits))
                .map(|(net, bits)| format!("allowlisted network {net}/{bits}"))
        };
        if let Some(why) = why {
            return Err(Refusal::ProtectedAddress { ip, why });
        }
        if ttl_secs == 0 || ttl_secs > self.config.max_block_secs {
            return Err(Refusal::BlockTooLong {
                asked: ttl_secs,
                max: self.config.max_block_secs,
            });
        }
        Ok(())
    }

    /// Whether `pid` would pass [`GuardRails::check_process`]; used to spare protected
    /// processes inside a tree being killed.
    pub fn may_kill(&self, pid: u32) -> bool {
        self.check_process(pid, None).is_ok()
    }
}

/// `a.b.c.d/n`, `x::y/n` or a bare address (a host route).
pub fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a.parse::<IpAddr>().ok()?, b.parse::<u8>().ok()?),
        None => {
            let a: IpAddr = text.parse().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// At most `max` events per `window` for each key (a sliding window of timestamps).
#[derive(Debug)]
pub struct RateLimiter {
    max: u32,
    window: Duration,
    seen: HashMap<&'static str, Vec<Instant>>,
}

impl RateLimiter {
    pub fn new(max: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            max,
            window,
            seen: HashMap::new(),
        }
    }

    pub fn allow(&mut self, key: &'static str) -> bool {
        let now = Instant::now();
        let times = self.seen.entry(key).or_default();
        times.retain(|t| now.duration_since(*t) < self.window);
        if times.len() >= self.max as usize {
            return false;
        }
        times.push(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rails() -> GuardRails {
        GuardRails::new(GuardConfig {
            allow_networks: vec!["10.0.0.0/8".into(), "2001:db8::1".into()],
            ..GuardConfig::default()
        })
    }

    #[test]
    fn never_touches_init_kernel_threads_or_the_agent() {
        let g = rails();
        assert_eq!(g.check_process(1, None), Err(Refusal::InitProcess));
        assert_eq!(g.check_process(0, None), Err(Refusal::InitProcess));
        assert_eq!(g.check_process(2, None), Err(Refusal::KernelThread(2)));
        let me = std::process::id();
        assert_eq!(g.check_process(me, None), Err(Refusal::Agent(me)));
        assert_eq!(
            g.check_process(u32::MAX, None),
            Err(Refusal::NoSuchProcess(u32::MAX))
        );
    }

    #[test]
    fn addresses() {
        let g = rails();
        for ip in [
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "224.0.0.1",
            "10.1.2.3",
            "2001:db8::1",
        ] {
            assert!(
                g.check_ip(ip.parse().unwrap_or(IpAddr::from([127, 0, 0, 1])), 60)
                    .is_err(),
                "{ip}"
            );
        }
        let outside: IpAddr = "203.0.113.9"
            .parse()
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        assert_eq!(g.check_ip(outside, 60), Ok(()));
        assert!(matches!(
            g.check_ip(outside, 0),
            Err(Refusal::BlockTooLong { .. })
        ));
        assert!(matches!(
            g.check_ip(outside, 10 * 24 * 3600),
            Err(Refusal::BlockTooLong { .. })
        ));
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(parse_cidr("nonsense"), None);
    }

    #[test]
    fn paths() {
        let g = rails();
        assert!(matches!(
            g.check_path(Path::new("relative")),
            Err(Refusal::RelativePath(_))
        ));
        assert!(matches!(
            g.check_path(Path::new("/proc/self/status")),
            Err(Refusal::ProtectedPath(_))
        ));
        assert!(matches!(
            g.check_path(Path::new("/tmp")),
            Err(Refusal::NotARegularFile(_))
        ));
    }

    #[test]
    fn rate_limit_is_per_action() {
        let mut r = RateLimiter::new(2, Duration::from_secs(60));
        assert!(r.allow("kill") && r.allow("kill"));
        assert!(!r.allow("kill"));
        assert!(r.allow("block_ip"));
    }
}
