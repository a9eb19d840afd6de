//! Rollout plans: ordered rings, each with a selector, a bake time and a maintenance window,
//! plus the health-gate thresholds. Written in TOML, parsed into [`Plan`] with every problem
//! reported at once.
//!
//! ```toml
//! [gates]
//! min_samples = 10          # agents with data, per group, before any verdict
//! hard_stop_min_agents = 3  # distinct agents a rollback needs (fewer halt the ring) ...
//! hard_stop_min_share = 0.05 # ... or this share of the live ring, if more
//! release_install = "15m"   # agent rollouts: time to fetch and start a release
//!
//! [[rings]]
//! name = "canary"
//! percent = 1               # cumulative share of the (matching) fleet once this ring is in
//! bake = "30m"
//! window = "01:00-05:00"    # agent local time; omit for any time
//! region = ["eu-west"]      # optional: region, industry, environment, tags, ids
//! ```
//!
//! An agent-release plan may hold a group of agents back on the release the fleet ran before
//! (N-1), by a custom tag: `tag = "KEY=VALUE"`, or `tag = "KEY"` for any value. Pinned agents
//! never join a ring of an agent rollout (they may serve in control groups, which stay on the
//! old version anyway); when the rollout completes they are held on the previous release.
//! Content rollouts ignore pins (content and agent versions are governed separately).
//!
//! ```toml
//! [[pin]]
//! tag = "role=db"           # or "db": any agent carrying the custom tag `db`
//! agent = "previous"        # the only choice: the release before this rollout's
//! ```
//!
//! `percent` is cumulative: rings at 1, 10, 50, 100 bring the rollout to 1%, 10%, 50% and all of
//! the matching fleet, each ring taking the next agents of the *remaining* fleet in stable-hash
//! order. `ids` picks agents by id and ignores `percent`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// A parsed, checked plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub rings: Vec<Ring>,
    pub gates: Gates,
    /// Tag groups an agent rollout leaves on the previous release.
    pub pins: Vec<Pin>,
}

/// A tag group held on the previous agent release (`[[pin]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pin {
    pub key: String,
    /// `None`: any value.
    pub value: Option<String>,
}

impl Pin {
    /// Does an agent with these custom tags belong to the pinned group?
    pub fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        tags.get(&self.key)
            .is_some_and(|v| self.value.as_ref().is_none_or(|want| want == v))
    }

    fn parse(tag: &str) -> Result<Pin, String> {
        let (key, value) = match tag.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().to_owned())),
            None => (tag.trim(), None),
        };
        let ok = |t: &str| !t.is_empty() && t.len() <= 64;
        if !ok(key) || value.as_deref().is_some_and(|v| !ok(v)) {
            return Err(format!(
                "tag {tag:?}: expected KEY or KEY=VALUE, each 1..=64 characters"
            ));
        }
        Ok(Pin {
            key: key.to_owned(),
            value,
        })
    }
}

impl Plan {
    /// Is this agent (by its custom tags) held back by a `[[pin]]`?
    pub fn pinned(&self, tags: &BTreeMap<String, String>) -> bool {
        self.pins.iter().any(|p| p.matches(tags))
    }
}

/// One ring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ring {
    pub name: String,
    pub selector: Selector,
    pub bake_ms: Millis,
    pub window: Option<Window>,
}

/// Which agents a ring takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Selector {
    /// Cumulative percent of the matching fleet, 0 < p <= 100.
    pub percent: f64,
    pub region: Vec<String>,
    pub industry: Vec<String>,
    pub environment: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub ids: Vec<String>,
}

/// Agent attributes a selector looks at.
#[derive(Debug, Clone)]
pub struct AgentAttrs<'a> {
    pub id: &'a str,
    pub region: Option<&'a str>,
    pub industry: Option<&'a str>,
    pub environment: Option<&'a str>,
    pub tags: &'a BTreeMap<String, String>,
}

impl Selector {
    /// Does the agent match the selector's filters (everything but `percent`)?
    pub fn matches(&self, a: &AgentAttrs<'_>) -> bool {
        fn any_of(list: &[String], v: Option<&str>) -> bool {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x == v))
        }
        if !self.ids.is_empty() {
            return self.ids.iter().any(|x| x == a.id);
        }
        any_of(&self.region, a.region)
            && any_of(&self.industry, a.industry)
            && any_of(&self.environment, a.environment)
            && self
                .tags
                .iter()
                .all(|(k, v)| a.tags.get(k).is_some_and(|x| x == v))
    }
}

/// A daily maintenance window in agent local time, minutes after midnight; may wrap midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub start_min: u16,
    pub end_min: u16,
}

impl Window {
    /// Is the window open at `now` for an agent `tz_offset_min` minutes east of UTC?
    pub fn is_open(&self, now: Millis, tz_offset_min: i64) -> bool {
        let local = (now.div_euclid(60_000) + tz_offset_min).rem_euclid(1440);
        let (s, e) = (i64::from(self.start_min), i64::from(self.end_min));
        if s <= e {
            (s..e).contains(&local)
        } else {
            local >= s || local < e
        }
    }

    /// The first time at or after `from` when the window is open for this agent.
    pub fn next_open(&self, from: Millis, tz_offset_min: i64) -> Millis {
        if self.is_open(from, tz_offset_min) {
            return from;
        }
        let local = (from.div_euclid(60_000) + tz_offset_min).rem_euclid(1440);
        let wait_min = (i64::from(self.start_min) - local).rem_euclid(1440);
        // Round down to the minute, then add the wait.
        from - from.rem_euclid(60_000) + wait_min * 60_000
    }

    fn parse(s: &str) -> Result<Window, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("window must be HH:MM-HH:MM, got {s:?}"))?;
        let hm = |t: &str| -> Result<u16, String> {
            let (h, m) = t
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("time must be HH:MM, got {t:?}"))?;
            let h: u16 = h.parse().map_err(|_| format!("bad hour in {t:?}"))?;
            let m: u16 = m.parse().map_err(|_| format!("bad minute in {t:?}"))?;
            if h > 24 || m > 59 || (h == 24 && m != 0) {
                return Err(format!("time out of range: {t:?}"));
            }
            Ok(h * 60 + m)
        };
        let (start_min, end_min) = (hm(a)?, hm(b)?);
        if start_min == end_min {
            return Err(format!("window {s:?} is empty"));
        }
        Ok(Window {
            start_min: start_min % 1440,
            end_min: if end_min == 1440 { 1440 } else { end_min },
        })
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start_min / 60,
            self.start_min % 60,
            self.end_min / 60,
            self.end_min % 60
        )
    }
}

/// Health-gate thresholds. Defaults are the ones in [`Gates::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gates {
    /// Agents with data, per group (ring and control), before any statistical verdict.
    pub min_samples: usize,
    /// One-sided significance for a failure (Mann-Whitney U, or the pooled Poisson rate test).
    pub alpha: f64,
    /// Significance below which, with a large effect, the result is inconclusive rather than a
    /// pass: the ring keeps baking up to `max_bake_factor` × bake, then pauses.
    pub alpha_inconclusive: f64,
    pub max_bake_factor: f64,
    /// Fail when ring / control mean exceeds these (and the difference exceeds the floors).
    pub cpu_ratio: f64,
    pub rss_ratio: f64,
    pub drop_ratio: f64,
    pub crash_ratio: f64,
    /// Finding rate anomaly, either direction.
    pub finding_ratio: f64,
    /// A member is missing when it has not checked in for this many check-in intervals.
    pub heartbeat_intervals: f64,
    /// Fail when the ring's missing share exceeds the control's by more than this.
    pub max_missing_share: f64,
    /// Agent rollouts only: how long a ring agent that keeps checking in may take to fetch,
    /// verify and start an offered agent release (tens of megabytes over the host's link, then
    /// a restart) before it counts as missing. A duration (`15m`), at most a day. Content is
    /// small and swapped in process, so a content ring waits `heartbeat_intervals` only. An
    /// agent that stops checking in is missing after `heartbeat_intervals` either way.
    pub release_install: String,
    /// A failure (fallbacks, missing agents, a metric) needs evidence from at least this many
    /// distinct agents, or `hard_stop_min_share` of the live ring if that is more; never more
    /// than the live ring, never fewer than two. Less evidence halts the ring for an operator.
    pub hard_stop_min_agents: usize,
    pub hard_stop_min_share: f64,
}

impl Default for Gates {
    fn default() -> Gates {
        Gates {
            min_samples: 10,
            alpha: 0.01,
            alpha_inconclusive: 0.05,
            max_bake_factor: 2.0,
            cpu_ratio: 1.5,
            rss_ratio: 1.5,
            drop_ratio: 2.0,
            crash_ratio: 2.0,
            finding_ratio: 3.0,
            heartbeat_intervals: 3.0,
            max_missing_share: 0.1,
            release_install: DEFAULT_RELEASE_INSTALL.to_owned(),
            hard_stop_min_agents: 3,
            hard_stop_min_share: 0.05,
        }
    }
}

/// [`Gates::release_install`] by default, as written and in milliseconds (a test keeps the two
/// equal).
const DEFAULT_RELEASE_INSTALL: &str = "15m";
const DEFAULT_RELEASE_INSTALL_MS: Millis = 15 * 60_000;
/// The longest [`Gates::release_install`] a plan may give.
const MAX_RELEASE_INSTALL_MS: Millis = 86_400_000;

impl Gates {
    /// [`Gates::release_install`] in milliseconds (a plan that parsed has a valid one; the
    /// default otherwise).
    pub fn release_install_ms(&self) -> Millis {
        parse_duration(&self.release_install)
            .ok()
            .filter(|ms| *ms <= MAX_RELEASE_INSTALL_MS)
            .unwrap_or(DEFAULT_RELEASE_INSTALL_MS)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    #[serde(default)]
    gates: Gates,
    #[serde(default)]
    rings: Vec<RawRing>,
    #[serde(default)]
    pin: Vec<RawPin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPin {
    tag: String,
    agent: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRing {
    name: String,
    #[serde(default)]
    percent: Option<f64>,
    bake: String,
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    region: Vec<String>,
    #[serde(default)]
    industry: Vec<String>,
    #[serde(default)]
    environment: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    ids: Vec<String>,
}

/// Parse `30m`, `1h30m`, `45s`, `2d`, `500ms` into milliseconds.
pub fn parse_duration(s: &str) -> Result<Millis, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: Millis = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("duration {s:?}: expected a number"));
        }
        let n: Millis = rest[..digits]
            .parse()
            .map_err(|_| format!("duration {s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            other => {
                return Err(format!(
                    "duration {s:?}: unknown unit {other:?} (ms, s, m, h, d)"
                ));
            }
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {s:?} too large"))?;
    }
    Ok(total)
}

/// Format milliseconds as a short duration.
pub fn format_duration(ms: Millis) -> String {
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        _ if s < 60 => format!("{s}s"),
        _ if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

impl Plan {
    /// The default plan: canary 1% → 10% → 50% → 100%, any time of day.
    pub fn default_plan() -> Plan {
        let ring = |name: &str, percent: f64, bake_ms: Millis| Ring {
            name: name.into(),
            selector: Selector {
                percent,
                ..Selector::default()
            },
            bake_ms,
            window: None,
        };
        Plan {
            rings: vec![
                ring("canary", 1.0, 30 * 60_000),
                ring("early", 10.0, 60 * 60_000),
                ring("half", 50.0, 2 * 3_600_000),
                ring("all", 100.0, 2 * 3_600_000),
            ],
            gates: Gates::default(),
            pins: Vec::new(),
        }
    }

    /// The default plan as TOML, for `rollout start` without `--plan` and for the docs.
    pub fn default_toml() -> &'static str {
        DEFAULT_TOML
    }

    /// Parse TOML, reporting every problem at once.
    pub fn parse(text: &str) -> Result<Plan, Vec<String>> {
        let raw: RawPlan = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut errors = Vec::new();
        let mut rings = Vec::new();
        if raw.rings.is_empty() {
            errors.push("a plan needs at least one [[rings]] entry".to_owned());
        }
        let g = &raw.gates;
        if !(g.alpha > 0.0 && g.alpha < 0.5) {
            errors.push(format!("gates.alpha must be in (0, 0.5), got {}", g.alpha));
        }
        let alpha_ok = g.alpha > 0.0 && g.alpha < 0.5;
        if alpha_ok && !(g.alpha_inconclusive >= g.alpha && g.alpha_inconclusive < 0.5) {
            errors.push(format!(
                "gates.alpha_inconclusive must be in [alpha, 0.5), got {}",
                g.alpha_inconclusive
            ));
        }
        if g.min_samples < 1 {
            errors.push("gates.min_samples must be >= 1, got 0".to_owned());
        }
        for (name, v) in [
            ("cpu_ratio", g.cpu_ratio),
            ("rss_ratio", g.rss_ratio),
            ("drop_ratio", g.drop_ratio),
            ("crash_ratio", g.crash_ratio),
            ("finding_ratio", g.finding_ratio),
            ("max_bake_factor", g.max_bake_factor),
        ] {
            if !(v.is_finite() && v >= 1.0) {
                errors.push(format!("gates.{name} must be >= 1, got {v}"));
            }
        }
        if !(g.heartbeat_intervals.is_finite() && g.heartbeat_intervals >= 1.0) {
            errors.push(format!(
                "gates.heartbeat_intervals must be >= 1, got {}",
                g.heartbeat_intervals
            ));
        }
        if !(0.0..1.0).contains(&g.max_missing_share) {
            errors.push(format!(
                "gates.max_missing_share must be in [0, 1), got {}",
                g.max_missing_share
            ));
        }
        if g.hard_stop_min_agents < 2 {
            errors.push(format!(
                "gates.hard_stop_min_agents must be >= 2 (one agent never rolls a ring back alone), got {}",
                g.hard_stop_min_agents
            ));
        }
        if !(0.0..=1.0).contains(&g.hard_stop_min_share) {
            errors.push(format!(
                "gates.hard_stop_min_share must be in [0, 1], got {}",
                g.hard_stop_min_share
            ));
        }
        match parse_duration(&g.release_install) {
            Ok(ms) if ms > MAX_RELEASE_INSTALL_MS => errors.push(format!(
                "gates.release_install must be at most 1d, got {:?}",
                g.release_install
            )),
            Ok(_) => {}
            Err(e) => errors.push(format!("gates.release_install: {e}")),
        }
        let mut last_percent = 0.0;
        for (i, r) in raw.rings.into_iter().enumerate() {
            let at = format!("rings[{i}] ({:?})", r.name);
            let bake_ms = parse_duration(&r.bake).unwrap_or_else(|e| {
                errors.push(format!("{at}.bake: {e}"));
                0
            });
            let window = r.window.as_deref().and_then(|w| {
                Window::parse(w)
                    .map_err(|e| errors.push(format!("{at}.window: {e}")))
                    .ok()
            });
            let percent = match (r.percent, r.ids.is_empty()) {
                (Some(p), _) if !(p > 0.0 && p <= 100.0) => {
                    errors.push(format!("{at}.percent must be in (0, 100], got {p}"));
                    0.0
                }
                (Some(p), true) => p,
                (Some(_), false) => {
                    errors.push(format!("{at}: give either ids or percent, not both"));
                    0.0
                }
                (None, false) => 100.0,
                (None, true) => {
                    errors.push(format!("{at}: needs percent or ids"));
                    0.0
                }
            };
            let filtered = !(r.region.is_empty()
                && r.industry.is_empty()
                && r.environment.is_empty()
                && r.tags.is_empty()
                && r.ids.is_empty());
            if !filtered && percent < last_percent {
                errors.push(format!(
                    "{at}.percent {percent} is below the previous ring's {last_percent}; percent is cumulative"
                ));
            }
            if !filtered {
                last_percent = percent;
            }
            if r.name.is_empty() || r.name.len() > 64 {
                errors.push(format!("{at}.name must be 1..=64 characters"));
            }
            rings.push(Ring {
                name: r.name,
                selector: Selector {
                    percent,
                    region: r.region,
                    industry: r.industry,
                    environment: r.environment,
                    tags: r.tags,
                    ids: r.ids,
                },
                bake_ms,
                window,
            });
        }
        let mut pins = Vec::new();
        for (i, p) in raw.pin.iter().enumerate() {
            if p.agent != "previous" {
                errors.push(format!(
                    "pin[{i}].agent must be \"previous\" (the release before this rollout's), got {:?}",
                    p.agent
                ));
            }
            match Pin::parse(&p.tag) {
                Ok(pin) => pins.push(pin),
                Err(e) => errors.push(format!("pin[{i}].{e}")),
            }
        }
        if errors.is_empty() {
            Ok(Plan {
                rings,
                gates: raw.gates,
                pins,
            })
        } else {
            Err(errors)
        }
    }
}

const DEFAULT_TOML: &str = r#"# Default rollout plan: canary 1% -> 10% -> 50% -> 100% of the fleet.
[gates]
min_samples = 10
# Agent rollouts: how long a ring agent still checking in may take to fetch and start the
# release before it counts as missing.
release_install = "15m"

[[rings]]
name = "canary"
percent = 1
bake = "30m"

[[rings]]
name = "early"
percent = 10
bake = "1h"

[[rings]]
name = "half"
percent = 50
bake = "2h"

[[rings]]
name = "all"
percent = 100
bake = "2h"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_hold_a_tag_group_on_the_previous_release() {
        let text = format!(
            "{DEFAULT_TOML}\n[[pin]]\ntag = \"role=db\"\nagent = \"previous\"\n\n[[pin]]\ntag = \"legacy\"\nagent = \"previous\"\n"
        );
        let plan = Plan::parse(&text).unwrap();
        let tags = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(plan.pinned(&tags("role", "db")));
        assert!(!plan.pinned(&tags("role", "web")));
        assert!(plan.pinned(&tags("legacy", "yes")));
        assert!(!Plan::default_plan().pinned(&tags("role", "db")));
        let bad = format!("{DEFAULT_TOML}\n[[pin]]\ntag = \"=x\"\nagent = \"0.1.0\"\n");
        let errors = Plan::parse(&bad).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("pin[0].agent"), "{errors:?}");
    }

    #[test]
    fn default_toml_is_the_default_plan() {
        assert_eq!(Plan::parse(DEFAULT_TOML).unwrap(), Plan::default_plan());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m").unwrap(), 1_800_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500);
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn windows_in_local_time() {
        let w = Window::parse("01:00-05:00").unwrap();
        let midnight_utc = 86_400_000 * 20_000;
        assert!(!w.is_open(midnight_utc, 0));
        assert!(w.is_open(midnight_utc + 2 * 3_600_000, 0));
        // 00:30 UTC is 01:30 at UTC+1.
        assert!(w.is_open(midnight_utc + 30 * 60_000, 60));
        // 02:00 UTC is 21:00 the day before at UTC-5.
        assert!(!w.is_open(midnight_utc + 2 * 3_600_000, -300));
        let wrap = Window::parse("22:00-02:00").unwrap();
        assert!(wrap.is_open(midnight_utc + 23 * 3_600_000, 0));
        assert!(wrap.is_open(midnight_utc + 3_600_000, 0));
        assert!(!wrap.is_open(midnight_utc + 12 * 3_600_000, 0));
        let next = w.next_open(midnight_utc + 12 * 3_600_000, 0);
        assert_eq!(next, midnight_utc + 25 * 3_600_000);
        assert!(Window::parse("05:00-05:00").is_err());
        assert!(Window::parse("25:00-05:00").is_err());
    }

    #[test]
    fn one_agent_can_never_be_enough_evidence() {
        let plan = |gates: &str| {
            Plan::parse(&format!(
                "[gates]\n{gates}\n[[rings]]\nname='x'\nbake='1m'\npercent=1"
            ))
        };
        let p = plan("hard_stop_min_agents = 5\nhard_stop_min_share = 0.2").unwrap();
        assert_eq!(p.gates.hard_stop_min_agents, 5);
        assert_eq!(plan("").unwrap().gates.hard_stop_min_agents, 3);
        let errors = plan("hard_stop_min_agents = 1\nhard_stop_min_share = 1.5").unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].contains("hard_stop_min_agents"), "{errors:#?}");
    }

    #[test]
    fn release_install_is_a_bounded_duration() {
        let plan = |gates: &str| {
            Plan::parse(&format!(
                "[gates]\n{gates}\n[[rings]]\nname='x'\nbake='1m'\npercent=1"
            ))
        };
        assert_eq!(
            parse_duration(DEFAULT_RELEASE_INSTALL),
            Ok(DEFAULT_RELEASE_INSTALL_MS)
        );
        assert_eq!(plan("").unwrap().gates.release_install_ms(), 15 * 60_000);
        let p = plan("release_install = '1h'").unwrap();
        assert_eq!(p.gates.release_install_ms(), 3_600_000);
        for bad in ["'2d'", "'soon'", "''"] {
            let errors = plan(&format!("release_install = {bad}")).unwrap_err();
            assert!(errors[0].contains("release_install"), "{errors:#?}");
        }
    }

    #[test]
    fn plan_reports_every_error_at_once() {
        let bad = r#"
            [gates]
            alpha = 2.0
            [[rings]]
            name = "a"
            percent = 50
            bake = "5q"
            window = "1-2"
            [[rings]]
            name = "b"
            percent = 10
            bake = "1h"
        "#;
        let errors = Plan::parse(bad).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(Plan::parse("[[rings]]\nname='x'\nbake='1m'\npercent=1\nbogus=1").is_err());
    }

    #[test]
    fn selectors() {
        let tags: BTreeMap<String, String> = [("team".to_owned(), "pay".to_owned())].into();
        let a = AgentAttrs {
            id: "a1",
            region: Some("eu"),
            industry: Some("bank"),
            environment: None,
            tags: &tags,
        };
        let mut s = Selector {
            percent: 100.0,
            region: vec!["eu".into()],
            ..Selector::default()
        };
        assert!(s.matches(&a));
        s.environment = vec!["prod".into()];
        assert!(!s.matches(&a));
        s.environment.clear();
        s.tags.insert("team".into(), "pay".into());
        assert!(s.matches(&a));
        s.ids = vec!["b2".into()];
        assert!(!s.matches(&a));
    }
}
