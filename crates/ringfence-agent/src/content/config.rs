//! `[content]`: where bundles arrive, what to trust, the pinning policy, probation budgets and
//! the crash-loop rule.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `content.pin`: which of the verified bundles the agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pin {
    /// The newest verified version.
    #[default]
    Latest,
    /// One behind the newest verified version (a slower ring of one host).
    Previous,
    /// Exactly this content version, nothing else.
    Version(u64),
}

impl Pin {
    /// `latest`, `n-1` or a content version.
    pub fn parse(s: &str) -> Result<Pin, String> {
        match s.trim() {
            "latest" => Ok(Pin::Latest),
            "n-1" => Ok(Pin::Previous),
            v => v
                .parse::<u64>()
                .ok()
                .filter(|&v| v > 0)
                .map(Pin::Version)
                .ok_or_else(|| {
                    format!("expected \"latest\", \"n-1\" or a content version > 0, got {s:?}")
                }),
        }
    }

    /// The version to run among the verified `available` ones (ascending, not marked bad).
    pub fn choose(self, available: &std::collections::BTreeSet<u64>) -> Option<u64> {
        match self {
            Pin::Latest => available.last().copied(),
            Pin::Previous => available.iter().rev().nth(1).copied(),
            Pin::Version(v) => available.contains(&v).then_some(v),
        }
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::Latest => f.write_str("latest"),
            Pin::Previous => f.write_str("n-1"),
            Pin::Version(v) => write!(f, "{v}"),
        }
    }
}

impl Serialize for Pin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Pin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pin, D::Error> {
        let s = String::deserialize(d)?;
        Pin::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `[content]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentSection {
    /// Directory watched for `*.bundle` files; `--content-dir` overrides. No content manager
    /// runs without one.
    pub dir: Option<PathBuf>,
    /// The agent's content store (active, last-known-good, bad list, trusted root);
    /// `<dir>/.state` when absent.
    pub state_dir: Option<PathBuf>,
    /// The out-of-band trusted `root.json` (or a keys directory holding one). Once a bundle
    /// was accepted, the store's rotated root is used instead.
    pub root: Option<PathBuf>,
    pub pin: Pin,
    /// How often the directory is scanned.
    pub poll_ms: u64,
    /// Recent events kept for probation.
    pub sample_events: usize,
    /// How long new content runs in shadow beside the active content before the swap.
    pub shadow_secs: u64,
    /// How long after the swap the "activating" marker stays (a crash loop then rolls back).
    pub confirm_secs: u64,
    /// A rule whose mean cost exceeds this many microseconds per event is disabled.
    pub rule_cpu_budget_us: u64,
    /// A rule whose state exceeds this many bytes is disabled.
    pub rule_memory_budget_bytes: u64,
    /// Worker deaths while activating a version that make the supervisor roll back (K).
    pub crash_loop_restarts: u32,
    /// The window those deaths must fall in.
    pub crash_loop_window_secs: u64,
    /// Cap of the supervisor's exponential restart backoff.
    pub max_backoff_ms: u64,
}

impl Default for ContentSection {
    fn default() -> Self {
        ContentSection {
            dir: None,
            state_dir: None,
            root: None,
            pin: Pin::Latest,
            poll_ms: 1000,
            sample_events: 4096,
            shadow_secs: 30,
            confirm_secs: 60,
            rule_cpu_budget_us: 200,
            rule_memory_budget_bytes: 16 * 1024 * 1024,
            crash_loop_restarts: 2,
            crash_loop_window_secs: 300,
            max_backoff_ms: 4000,
        }
    }
}

impl ContentSection {
    /// The store directory: `state_dir`, or `<dir>/.state`.
    pub fn state_dir(&self) -> Option<PathBuf> {
        self.state_dir
            .clone()
            .or_else(|| self.dir.as_ref().map(|d| d.join(".state")))
    }

    /// Value problems as (key, message), for [`crate::Config::parse`].
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.poll_ms == 0 {
            out.push(("poll_ms", "must be > 0, got 0".to_owned()));
        }
        if self.crash_loop_restarts == 0 {
            out.push(("crash_loop_restarts", "must be > 0, got 0".to_owned()));
        }
        if self.rule_cpu_budget_us == 0 {
            out.push(("rule_cpu_budget_us", "must be > 0, got 0".to_owned()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn pin_parses_and_chooses() {
        assert_eq!(Pin::parse("latest"), Ok(Pin::Latest));
        assert_eq!(Pin::parse("n-1"), Ok(Pin::Previous));
        assert_eq!(Pin::parse("7"), Ok(Pin::Version(7)));
        assert!(Pin::parse("0").is_err());
        assert!(Pin::parse("newest").unwrap_err().contains("newest"));
        let avail: BTreeSet<u64> = [3, 5, 9].into();
        assert_eq!(Pin::Latest.choose(&avail), Some(9));
        assert_eq!(Pin::Previous.choose(&avail), Some(5));
        assert_eq!(Pin::Version(3).choose(&avail), Some(3));
        assert_eq!(Pin::Version(4).choose(&avail), None);
        assert_eq!(Pin::Previous.choose(&[9].into()), None);
    }

    #[test]
    fn section_round_trips() {
        let s = ContentSection {
            pin: Pin::Version(4),
            ..ContentSection::default()
        };
        let text = toml::to_string(&s).unwrap();
        assert_eq!(toml::from_str::<ContentSection>(&text).unwrap(), s);
        let err = toml::from_str::<ContentSection>("pin = \"oldest\"").unwrap_err();
        assert!(err.to_string().contains("oldest"), "{err}");
    }
}
