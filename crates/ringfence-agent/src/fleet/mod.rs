//! The agent's side of the fleet console: `[fleet]` in the configuration, and the link thread
//! that enrolls, checks in, delivers offered content and uploads findings.
//!
//! With `fleet.console` set the agent enrolls once with an enrollment token (the credential
//! is kept in `fleet.json` in the content state directory), then checks in every interval the
//! console asks for with its health: content version, crashes the supervisor counted,
//! last-known-good fallbacks, CPU, RSS, events, drops and findings since the last acknowledged
//! check-in, and its tags. The console answers with the content version this agent may run
//! now; the link writes that bundle into the watched content directory, where the content
//! manager verifies and activates it as it would any bundle. Findings go up in batches.
//!
//! Every link is HTTPS to a console whose CA is pinned (`ca_sha256`, or `ca_file`); plain HTTP
//! only to loopback with `plain_http = true`, for tests and drills. The agent believes no more
//! of the console than it can check: intervals are clamped, upload acknowledgements must match
//! what was sent, an offered bundle is verified against the content root before it is written
//! or remembered, a refusal (401/403) never makes it forget its identity, and a link that keeps
//! failing raises a health notice.
//!
//! A check-in response may also carry response orders an operator placed in the console. Each
//! is signed by the console's order key and bound to this agent, with an id that only grows,
//! an expiry and, for a kill, the target's start time ([`ringfence_wire::signed_order`]). The
//! link runs them through the agent's responder ([`orders`]) only when the order key is pinned
//! (`order_key`), `[response] enabled = true` and `accept_orders` is on; every refusal is a
//! health notice and a `refused` result in the next check-in.
//!
//! The link is best effort by design: the agent detects and writes its outputs the same with
//! the console down, and the pipeline never waits on the network.

pub mod enrollment;
pub mod link;
pub mod orders;
pub mod telemetry;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use ringfence_sensor::StopSignal;
use ringfence_wire::{CaPin, Client, CustomTags, Label, OrderKeyPin, Tags, Trust, TzOffset};
use serde::{Deserialize, Serialize};

pub use enrollment::{EnrollAs, Enrollment, SupervisorCount, enroll};
pub use link::{LinkOptions, LinkReport};
pub use telemetry::{Counters, Telemetry};

/// `[fleet]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetSection {
    /// The console's base URL (`https://host:port`); `--console` overrides. No link without it.
    pub console: Option<String>,
    /// More consoles of the same fleet (same CA and database) to fail over to, in turn, when
    /// the one in use does not answer; the identity and findings queue go with the agent.
    pub consoles: Vec<String>,
    /// SHA-256 fingerprints of the console's CA (`ringfence console serve` prints it), one or
    /// more (two while a CA is rotated). `--ca-sha256` adds to them.
    pub ca_sha256: Vec<String>,
    /// Or a PEM file holding the console's CA certificate.
    pub ca_file: Option<PathBuf>,
    /// Plain `http://` to a console on a loopback address (tests and drills only).
    pub plain_http: bool,
    /// The console's order key (`ed25519:…`, printed by `console serve`). Without it no response
    /// order runs, whatever `accept_orders` says.
    pub order_key: Option<String>,
    /// Raise a health notice when check-ins have failed for this long (seconds), and again
    /// every such period while they keep failing.
    pub alarm_after_secs: u64,
    /// Enrollment token, used once while the agent has no credential. `--enroll-token` or
    /// `RINGFENCE_ENROLL_TOKEN` keep it out of the file.
    pub enroll_token: Option<String>,
    pub region: Option<String>,
    pub industry: Option<String>,
    pub environment: Option<String>,
    /// Custom tags rollout rings can select on.
    pub tags: BTreeMap<String, String>,
    /// Local UTC offset in minutes for maintenance windows; the host's own when absent.
    pub tz_offset_minutes: Option<i32>,
    /// Findings kept for upload while the console is away; beyond it the oldest are dropped
    /// (and counted). They are in the outputs either way.
    pub findings_queue: usize,
    /// Largest content bundle fetched from the console.
    pub max_bundle_bytes: u64,
    /// Run response actions the console orders (through `[response]`'s guard rails, rate
    /// limits, dry-run and audit log), when they are signed by the pinned `order_key` and
    /// `[response] enabled = true`. When false, orders are answered `refused`.
    pub accept_orders: bool,
}

impl Default for FleetSection {
    fn default() -> Self {
        FleetSection {
            console: None,
            consoles: Vec::new(),
            ca_sha256: Vec::new(),
            ca_file: None,
            plain_http: false,
            order_key: None,
            alarm_after_secs: 15 * 60,
            enroll_token: None,
            region: None,
            industry: None,
            environment: None,
            tags: BTreeMap::new(),
            tz_offset_minutes: None,
            findings_queue: 10_000,
            max_bundle_bytes: 64 * 1024 * 1024,
            accept_orders: true,
        }
    }
}

impl FleetSection {
    /// Problems with the values, as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(url) = &self.console {
            match self.trust() {
                Ok(trust) => {
                    if let Err(e) = Client::new(url, &trust) {
                        out.push(("console", e.to_string()));
                    }
                    for other in &self.consoles {
                        if let Err(e) = Client::new(other, &trust) {
                            out.push(("consoles", e.to_string()));
                        }
                    }
                }
                Err((key, e)) => out.push((key, e)),
            }
        }
        if let Err(e) = self.order_key_pin() {
            out.push(("order_key", e));
        }
        if self.alarm_after_secs < 60 {
            out.push((
                "alarm_after_secs",
                format!("must be >= 60, got {}", self.alarm_after_secs),
            ));
        }
        if let Err(e) = self.tags() {
            out.push(("tags", e));
        }
        if self.findings_queue == 0 {
            out.push(("findings_queue", "must be > 0, got 0".into()));
        }
        if self.max_bundle_bytes < 1024 {
            out.push((
                "max_bundle_bytes",
                format!("must be >= 1024, got {}", self.max_bundle_bytes),
            ));
        }
        out
    }

    /// What the link trusts: the pinned CA, a CA file, or (for tests) plain loopback HTTP.
    pub fn trust(&self) -> Result<Trust, (&'static str, String)> {
        if self.plain_http {
            return Ok(Trust::PlainLoopback);
        }
        if let Some(file) = &self.ca_file {
            return Trust::from_ca_file(file).map_err(|e| ("ca_file", e.to_string()));
        }
        if self.ca_sha256.is_empty() {
            return Err((
                "ca_sha256",
                "the console's CA is not pinned: set fleet.ca_sha256 (or --ca-sha256) to the pin \
                 `ringfence console serve` prints, or fleet.ca_file"
                    .into(),
            ));
        }
        let pins = self
            .ca_sha256
            .iter()
            .map(|p| CaPin::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ("ca_sha256", e.to_string()))?;
        Ok(Trust::Pinned(pins))
    }

    /// The pinned order key, if any.
    pub fn order_key_pin(&self) -> Result<Option<OrderKeyPin>, String> {
        self.order_key
            .as_deref()
            .map(OrderKeyPin::parse)
            .transpose()
    }

    /// The tags sent with enrollment and every check-in.
    pub fn tags(&self) -> Result<Tags, String> {
        let label =
            |what: &str, v: &str| Label::try_from(v).map_err(|e| format!("{what} {v:?}: {e}"));
        let opt = |what: &str, v: &Option<String>| v.as_deref().map(|v| label(what, v)).transpose();
        let mut custom = BTreeMap::new();
        for (k, v) in &self.tags {
            custom.insert(label("tag name", k)?, label("tag value", v)?);
        }
        let minutes = self
            .tz_offset_minutes
            .unwrap_or_else(local_utc_offset_minutes);
        Ok(Tags {
            region: opt("region", &self.region)?,
            industry: opt("industry", &self.industry)?,
            environment: opt("environment", &self.environment)?,
            custom: CustomTags::try_from(custom).map_err(|e| e.to_string())?,
            tz_offset_minutes: TzOffset::try_from(minutes)
                .map_err(|e| format!("tz_offset_minutes {minutes}: {e}"))?,
        })
    }
}

/// This host's offset from UTC now, in minutes.
fn local_utc_offset_minutes() -> i32 {
    chrono::Local::now().offset().local_minus_utc() / 60
}

/// A `Label` from any host name or version: control characters removed, cut to the label
/// limit at a character boundary, `unknown` when nothing is left.
pub fn label_lossy(s: &str) -> Result<Label, String> {
    let clean: String = s
        .chars()
        .filter(|c| !ringfence_wire::is_hidden_char(*c))
        .collect();
    let cut = ringfence_wire::truncate_at_char(&clean, ringfence_wire::limits::LABEL_BYTES).trim();
    Label::try_from(if cut.is_empty() { "unknown" } else { cut }).map_err(|e| format!("{s:?}: {e}"))
}

/// What the worker knows when it starts the link.
pub struct FleetStart {
    pub section: FleetSection,
    pub host_name: String,
    pub state_dir: PathBuf,
    pub content_dir: PathBuf,
    pub content_version: Box<dyn Fn() -> u64 + Send>,
    /// What content is active, in words ("the built-in pack, 31 rules").
    pub content_label: Box<dyn Fn() -> String + Send>,
    pub supervisor_crashes: Option<SupervisorCount>,
    pub lkg_fallbacks: u64,
    /// Agent release fall-backs the supervisor reported to this worker.
    pub release_fallbacks: u64,
    /// Where offered agent releases go (`None`: no versions directory, releases not taken).
    pub releases: Option<link::ReleaseDelivery>,
    /// The agent version this worker runs (the supervisor's versions directory names it);
    /// `None`: this build's own version.
    pub running_version: Option<String>,
    /// The responder's settings for console orders (`[response]`'s `responder_config()`).
    pub response: ringfence_response::ResponseConfig,
    /// `[response] enabled`: without it no console order runs.
    pub response_enabled: bool,
    /// `[content]`, to verify offered bundles against the content root before keeping them.
    pub content: crate::content::config::ContentSection,
    /// What is tuned locally (`[detect]`), reported in each check-in.
    pub tuning: ringfence_wire::LocalTuning,
}

/// The running link thread.
pub struct FleetLink {
    handle: JoinHandle<LinkReport>,
}

impl FleetLink {
    /// Starts the link thread; `telemetry` is the one given to the agent's pipeline.
    pub fn start(
        start: FleetStart,
        telemetry: Arc<Telemetry>,
        stop: StopSignal,
    ) -> Result<FleetLink, String> {
        let console = start
            .section
            .console
            .clone()
            .ok_or("fleet.console is not set")?;
        let trust = start
            .section
            .trust()
            .map_err(|(key, e)| format!("fleet.{key}: {e}"))?;
        let client = Client::new(&console, &trust).map_err(|e| format!("fleet.console: {e}"))?;
        let order_key = start
            .section
            .order_key_pin()
            .map_err(|e| format!("fleet.order_key: {e}"))?;
        let tags = start
            .section
            .tags()
            .map_err(|e| format!("fleet.tags: {e}"))?;
        std::fs::create_dir_all(&start.state_dir)
            .map_err(|e| format!("creating {}: {e}", start.state_dir.display()))?;
        let opts = LinkOptions {
            console,
            enroll_token: start.section.enroll_token.clone(),
            hostname: label_lossy(&start.host_name)?,
            agent_version: label_lossy(
                start
                    .running_version
                    .as_deref()
                    .unwrap_or(env!("CARGO_PKG_VERSION")),
            )?,
            tags,
            state_file: start.state_dir.join(enrollment::FILE_NAME),
            content_dir: start.content_dir,
            max_bundle_bytes: start.section.max_bundle_bytes,
            content_version: start.content_version,
            content_label: start.content_label,
            supervisor_crashes: start.supervisor_crashes,
            lkg_fallbacks: start.lkg_fallbacks,
            release_fallbacks: start.release_fallbacks,
            releases: start.releases,
            orders: orders::OrderRunner::new(
                orders::Acceptance {
                    accept_orders: start.section.accept_orders,
                    response_enabled: start.response_enabled,
                    key: order_key,
                },
                start.response,
                start.state_dir.join(orders::STATE_FILE),
            ),
            ca_pins: trust.pins(),
            trust: trust.clone(),
            fallbacks: start.section.consoles.clone(),
            content: start.content,
            alarm_after: std::time::Duration::from_secs(start.section.alarm_after_secs),
            tuning: start.tuning,
        };
        let handle = std::thread::Builder::new()
            .name("rf-fleet".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "fleet link: cannot start its runtime");
                        return LinkReport::default();
                    }
                };
                runtime.block_on(link::run(opts, client, telemetry, stop))
            })
            .map_err(|e| format!("cannot start the fleet link thread: {e}"))?;
        Ok(FleetLink { handle })
    }

    /// Waits for the link to finish (after the stop signal was raised).
    pub fn join(self) -> LinkReport {
        self.handle.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked_and_named() {
        let mut s = FleetSection {
            region: Some("eu-west".into()),
            tz_offset_minutes: Some(60),
            ..FleetSection::default()
        };
        s.tags.insert("team".into(), "web".into());
        let t = s.tags().unwrap();
        assert_eq!(t.region.unwrap().as_str(), "eu-west");
        assert_eq!(t.tz_offset_minutes.minutes(), 60);
        s.region = Some("x".repeat(100));
        assert!(s.tags().unwrap_err().starts_with("region"));
        s.region = None;
        s.tz_offset_minutes = Some(5000);
        assert!(s.problems().iter().any(|(k, _)| *k == "tags"));
        s.console = Some("https://console:8650".into());
        assert!(
            s.problems().iter().any(|(k, _)| *k == "ca_sha256"),
            "no pin"
        );
        s.ca_sha256 = vec!["ab".repeat(32)];
        assert!(!s.problems().iter().any(|(k, _)| *k == "ca_sha256"));
        s.console = Some("http://console:8650".into());
        assert!(
            s.problems().iter().any(|(k, _)| *k == "console"),
            "plain http"
        );
        s.plain_http = true;
        assert!(
            s.problems().iter().any(|(k, _)| *k == "console"),
            "not loopback"
        );
        s.console = Some("http://127.0.0.1:8650".into());
        assert!(!s.problems().iter().any(|(k, _)| *k == "console"));
    }

    #[test]
    fn accept_orders_defaults_on_and_parses() {
        assert!(FleetSection::default().accept_orders);
        let s: FleetSection = toml::from_str("accept_orders = false").unwrap();
        assert!(!s.accept_orders);
        assert!(toml::from_str::<FleetSection>("accept_order = false").is_err());
    }

    #[test]
    fn long_host_names_are_cut_not_refused() {
        assert_eq!(label_lossy(&"h".repeat(200)).unwrap().as_str().len(), 64);
        assert_eq!(label_lossy("web-01").unwrap().as_str(), "web-01");
        assert_eq!(label_lossy("\n").unwrap().as_str(), "unknown");
    }
}
