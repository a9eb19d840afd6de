//! Serde types of the protocol, each parsed into its bounds on the way in.
//!
//! Newtypes ([`AgentId`], [`Credential`], [`Label`], [`TzOffset`], [`CpuPercent`], [`Count`],
//! [`CustomTags`], [`Findings`]) refuse out-of-range input in `Deserialize`, so the rest of the
//! console never sees an unbounded string, a NaN, or a counter that overflows a database column.
//! Unknown fields are ignored, so a newer agent can add fields without breaking older consoles.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Body-size bounds. The console enforces them before parsing; the client before sending.
pub mod limits {
    /// Largest enrollment request body.
    pub const ENROLL_BYTES: usize = 8 * 1024;
    /// Largest check-in body.
    pub const CHECKIN_BYTES: usize = 16 * 1024;
    /// Largest findings batch body.
    pub const FINDINGS_BYTES: usize = 1024 * 1024;
    /// Most findings in one batch.
    pub const FINDINGS_PER_BATCH: usize = 1000;
    /// Largest single finding, serialized.
    pub const FINDING_BYTES: usize = 64 * 1024;
    /// Most custom tags on one agent.
    pub const CUSTOM_TAGS: usize = 16;
    /// Longest label (tag, hostname, version string), in bytes.
    pub const LABEL_BYTES: usize = 64;
    /// Largest response the client reads (check-in responses are small; content is separate).
    pub const RESPONSE_BYTES: usize = 64 * 1024;
    /// Most response orders in one check-in response, and most order results in one check-in.
    pub const ORDERS: usize = 32;
    /// Longest path in a quarantine order, in bytes.
    pub const ORDER_PATH_BYTES: usize = 1024;
    /// Longest order reason or result detail, in bytes.
    pub const ORDER_TEXT_BYTES: usize = 512;
    /// Longest block a console order may ask for (the agent's guard may allow less).
    pub const ORDER_MAX_BLOCK_SECS: u64 = 30 * 24 * 3600;
}

/// Why a value was refused while parsing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("agent id must be 32 lowercase hex characters")]
    AgentId,
    #[error("credential must look like rfa1.<agent id>.<64 hex characters>")]
    Credential,
    #[error("label must be 1..={max} bytes without control characters", max = limits::LABEL_BYTES)]
    Label,
    #[error("timezone offset must be within -840..=840 minutes, got {0}")]
    TzOffset(i32),
    #[error("cpu percent must be finite and within 0..=6400, got {0}")]
    CpuPercent(f64),
    #[error("counter {0} does not fit a signed 64-bit integer")]
    Count(u64),
    #[error("at most {max} custom tags, got {0}", max = limits::CUSTOM_TAGS)]
    CustomTags(usize),
    #[error("at most {max} findings per batch, got {0}", max = limits::FINDINGS_PER_BATCH)]
    TooManyFindings(usize),
    #[error("finding {0} is larger than {max} bytes", max = limits::FINDING_BYTES)]
    FindingTooLarge(usize),
    #[error("at most {max} orders or order results, got {0}", max = limits::ORDERS)]
    TooManyOrders(usize),
    #[error("{field}: {reason}")]
    OrderAction { field: &'static str, reason: String },
    #[error("{field} longer than {max} bytes", max = limits::ORDER_TEXT_BYTES)]
    OrderText { field: &'static str },
    #[error("health.{field} = {value} is beyond what one check-in can hold (at most {max})")]
    HealthBound {
        field: &'static str,
        value: i64,
        max: i64,
    },
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An agent's identity: 32 lowercase hex characters (128 random bits), minted by the console.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

impl AgentId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AgentId {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        if is_lower_hex(&s, 32) {
            Ok(AgentId(s))
        } else {
            Err(ParseError::AgentId)
        }
    }
}

impl From<AgentId> for String {
    fn from(id: AgentId) -> String {
        id.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A per-agent credential, `rfa1.<agent id>.<secret>`: sent as `Authorization: Bearer …`.
/// The console stores only a hash of it. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Credential(String);

impl Credential {
    /// Build from an agent id and a 64-hex-character secret.
    pub fn new(agent: &AgentId, secret_hex: &str) -> Result<Credential, ParseError> {
        Credential::try_from(format!("rfa1.{agent}.{secret_hex}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The agent this credential belongs to.
    pub fn agent_id(&self) -> AgentId {
        // Parsing checked the layout: "rfa1." + 32 hex + "." + 64 hex.
        AgentId(self.0[5..37].to_owned())
    }
}

impl TryFrom<String> for Credential {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        let ok = s.len() == 5 + 32 + 1 + 64
            && s.starts_with("rfa1.")
            && is_lower_hex(&s[5..37], 32)
            && &s[37..38] == "."
            && is_lower_hex(&s[38..], 64);
        if ok {
            Ok(Credential(s))
        } else {
            Err(ParseError::Credential)
        }
    }
}

impl From<Credential> for String {
    fn from(c: Credential) -> String {
        c.0
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({}…)", &self.0[..37])
    }
}

/// A short human string: a tag value, hostname or version. 1..=64 bytes, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label(String);

impl Label {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Label {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        if !s.is_empty() && s.len() <= limits::LABEL_BYTES && !s.chars().any(is_hidden_char) {
            Ok(Label(s))
        } else {
            Err(ParseError::Label)
        }
    }
}

impl TryFrom<&str> for Label {
    type Error = ParseError;
    fn try_from(s: &str) -> Result<Self, ParseError> {
        Label::try_from(s.to_owned())
    }
}

impl From<Label> for String {
    fn from(l: Label) -> String {
        l.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The agent's local UTC offset in minutes (maintenance windows are in agent local time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i32", into = "i32")]
pub struct TzOffset(i16);

impl TzOffset {
    pub fn minutes(self) -> i16 {
        self.0
    }
}

impl TryFrom<i32> for TzOffset {
    type Error = ParseError;
    fn try_from(m: i32) -> Result<Self, ParseError> {
        if (-840..=840).contains(&m) {
            // In range, so the narrowing cannot lose anything.
            Ok(TzOffset(
                i16::try_from(m).map_err(|_| ParseError::TzOffset(m))?,
            ))
        } else {
            Err(ParseError::TzOffset(m))
        }
    }
}

impl From<TzOffset> for i32 {
    fn from(t: TzOffset) -> i32 {
        i32::from(t.0)
    }
}

/// CPU use of the agent over the interval, in percent of one core (so up to 6400 on 64 cores).
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct CpuPercent(f64);

impl CpuPercent {
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for CpuPercent {
    type Error = ParseError;
    fn try_from(v: f64) -> Result<Self, ParseError> {
        if v.is_finite() && (0.0..=6400.0).contains(&v) {
            Ok(CpuPercent(v))
        } else {
            Err(ParseError::CpuPercent(v))
        }
    }
}

impl From<CpuPercent> for f64 {
    fn from(c: CpuPercent) -> f64 {
        c.0
    }
}

/// A non-negative counter that fits a signed 64-bit database column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Count(i64);

impl Count {
    pub const ZERO: Count = Count(0);

    pub fn get(self) -> i64 {
        self.0
    }

    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

impl TryFrom<u64> for Count {
    type Error = ParseError;
    fn try_from(v: u64) -> Result<Self, ParseError> {
        i64::try_from(v)
            .map(Count)
            .map_err(|_| ParseError::Count(v))
    }
}

impl From<u32> for Count {
    fn from(v: u32) -> Count {
        Count(i64::from(v))
    }
}

impl From<Count> for u64 {
    fn from(c: Count) -> u64 {
        c.0.unsigned_abs()
    }
}

/// Free-form `key = value` tags, at most [`limits::CUSTOM_TAGS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<Label, Label>", into = "BTreeMap<Label, Label>")]
pub struct CustomTags(BTreeMap<Label, Label>);

impl CustomTags {
    pub fn get(&self, key: &str) -> Option<&Label> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Label, &Label)> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<BTreeMap<Label, Label>> for CustomTags {
    type Error = ParseError;
    fn try_from(m: BTreeMap<Label, Label>) -> Result<Self, ParseError> {
        if m.len() <= limits::CUSTOM_TAGS {
            Ok(CustomTags(m))
        } else {
            Err(ParseError::CustomTags(m.len()))
        }
    }
}

impl From<CustomTags> for BTreeMap<Label, Label> {
    fn from(t: CustomTags) -> Self {
        t.0
    }
}

/// Where an agent runs: rollout rings select on these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tags {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Label>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<Label>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Label>,
    #[serde(default, skip_serializing_if = "CustomTags::is_empty")]
    pub custom: CustomTags,
    /// Local UTC offset in minutes; maintenance windows are evaluated in it.
    #[serde(default)]
    pub tz_offset_minutes: TzOffset,
}

/// `POST /api/v1/agents/enroll`: trade an enrollment token for a credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub protocol: u16,
    /// The operator's enrollment token (bounded like a label, but longer).
    pub token: String,
    pub hostname: Label,
    pub agent_version: Label,
    #[serde(default)]
    pub tags: Tags,
    /// A certificate request (PEM) for the key the agent made: a console serving TLS answers
    /// with a client certificate for it, and from then on requires it (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr_pem: Option<String>,
}

/// The console's answer to a successful enrollment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub agent_id: AgentId,
    /// Keep it secret; send it as `Authorization: Bearer <credential>`.
    pub credential: Credential,
    /// Check in after about this long (the first check-in may be immediate).
    pub checkin_interval_ms: u64,
    /// The client certificate for the request's key (PEM), when one was asked for and the
    /// console issues them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_pem: Option<String>,
}

/// `POST /api/v1/agents/renew`: a new client certificate on the agent's key, over a
/// connection that presents the current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    pub protocol: u16,
    pub agent_id: AgentId,
    pub csr_pem: String,
}

/// The renewed certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewResponse {
    pub client_cert_pem: String,
    /// Unix seconds.
    pub not_after: i64,
}

/// Health over the interval since the last *acknowledged* check-in. The agent resets its
/// counters only when a check-in response arrives, so a lost check-in loses nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Agent process crashes (the supervisor restarted it).
    #[serde(default)]
    pub crashes: Count,
    /// Restarts for any other reason (watchdog, upgrade, operator).
    #[serde(default)]
    pub restarts: Count,
    /// Times the content manager fell back to last-known-good content.
    #[serde(default)]
    pub lkg_fallbacks: Count,
    /// Mean CPU over the interval, percent of one core.
    #[serde(default)]
    pub cpu_percent: CpuPercent,
    /// Resident set size now, bytes.
    #[serde(default)]
    pub rss_bytes: Count,
    /// Events seen by the pipeline.
    #[serde(default)]
    pub events: Count,
    /// Events dropped (queue full, source gap).
    #[serde(default)]
    pub events_dropped: Count,
    /// Findings produced.
    #[serde(default)]
    pub findings: Count,
    /// Findings the agent's routed outputs (webhook, syslog, Splunk HEC, OCSF file) could
    /// not deliver. Absent from older agents.
    #[serde(default, skip_serializing_if = "Count::is_zero")]
    pub outputs_dropped: Count,
    /// Times the supervisor fell back from an agent release on trial to the previous binary.
    /// Absent from older agents.
    #[serde(default, skip_serializing_if = "Count::is_zero")]
    pub release_fallbacks: Count,
    /// Length of the interval these counters cover, milliseconds.
    #[serde(default)]
    pub interval_ms: Count,
}

impl Health {
    /// Longest interval one check-in may cover (an agent up that long without a check-in).
    pub const MAX_INTERVAL_MS: i64 = 400 * 86_400_000;
    /// Most crashes plus restarts in one check-in. The supervisor restarts a worker after at
    /// least 100 ms, backing off to seconds, and its count is carried over outages, so this is
    /// days of a crash loop, not one interval's worth.
    pub const MAX_CRASHES: i64 = 100_000;
    /// Most last-known-good fallbacks in one check-in: an agent reports one per worker start.
    pub const MAX_LKG_FALLBACKS: i64 = 16;
    /// Most events (seen, or dropped) per second of interval.
    pub const MAX_EVENTS_PER_SEC: i64 = 5_000_000;
    /// Most findings per second of interval.
    pub const MAX_FINDINGS_PER_SEC: i64 = 100_000;
    /// Largest resident set size: 1 TiB.
    pub const MAX_RSS_BYTES: i64 = 1 << 40;

    /// Checks each counter against what is physically possible over `interval_ms` (plus one
    /// second of slack for rounding). The first counter out of bounds is the error.
    pub fn check_bounds(&self) -> Result<(), ParseError> {
        let over = |field, value: i64, max: i64| {
            if value > max {
                Err(ParseError::HealthBound { field, value, max })
            } else {
                Ok(())
            }
        };
        let interval = self.interval_ms.get();
        over("interval_ms", interval, Self::MAX_INTERVAL_MS)?;
        let seconds = interval / 1000 + 1;
        over("crashes", self.crashes.get(), Self::MAX_CRASHES)?;
        over("restarts", self.restarts.get(), Self::MAX_CRASHES)?;
        over(
            "crashes + restarts",
            self.crashes.get().saturating_add(self.restarts.get()),
            Self::MAX_CRASHES,
        )?;
        over(
            "lkg_fallbacks",
            self.lkg_fallbacks.get(),
            Self::MAX_LKG_FALLBACKS,
        )?;
        over(
            "release_fallbacks",
            self.release_fallbacks.get(),
            Self::MAX_LKG_FALLBACKS,
        )?;
        over("rss_bytes", self.rss_bytes.get(), Self::MAX_RSS_BYTES)?;
        let events_max = seconds.saturating_mul(Self::MAX_EVENTS_PER_SEC);
        over("events", self.events.get(), events_max)?;
        over("events_dropped", self.events_dropped.get(), events_max)?;
        over(
            "outputs_dropped",
            self.outputs_dropped.get(),
            seconds.saturating_mul(Self::MAX_FINDINGS_PER_SEC),
        )?;
        over(
            "findings",
            self.findings.get(),
            seconds.saturating_mul(Self::MAX_FINDINGS_PER_SEC),
        )
    }
}

/// `POST /api/v1/agents/checkin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckIn {
    pub protocol: u16,
    pub agent_id: AgentId,
    /// Increments with every check-in the agent sends since it started.
    pub seq: Count,
    pub agent_version: Label,
    /// The content version the agent runs now (0: none).
    pub content_version: Count,
    /// What content is active, in words ("the built-in pack, 31 rules", "bundle v9, 12
    /// rules"), so an operator sees an agent that fell back to its built-in pack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Label>,
    pub health: Health,
    #[serde(default)]
    pub tags: Tags,
    /// Results of response orders not yet acknowledged (sent again until a check-in response
    /// arrives). Absent from older agents.
    #[serde(default, skip_serializing_if = "OrderResults::is_empty")]
    pub order_results: OrderResults,
    /// What is tuned locally on the host (agent.toml `[detect]`). Absent from older agents.
    #[serde(default, skip_serializing_if = "LocalTuning::is_empty")]
    pub tuning: LocalTuning,
}

/// An agent's local tuning: rules switched off, and rules with exceptions (how many each).
/// The check-in body's size limit bounds both lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalTuning {
    #[serde(default)]
    pub disabled_rules: Vec<Label>,
    #[serde(default)]
    pub exceptions: Vec<(Label, Count)>,
}

impl LocalTuning {
    pub fn is_empty(&self) -> bool {
        self.disabled_rules.is_empty() && self.exceptions.is_empty()
    }
}

impl CheckIn {
    /// Parse a check-in body. Bounded: refuses bodies over [`limits::CHECKIN_BYTES`].
    pub fn parse(body: &[u8]) -> Result<CheckIn, String> {
        if body.len() > limits::CHECKIN_BYTES {
            return Err(format!(
                "check-in body of {} bytes exceeds {}",
                body.len(),
                limits::CHECKIN_BYTES
            ));
        }
        serde_json::from_slice(body).map_err(|e| e.to_string())
    }
}

/// The content an agent may run, and where to fetch it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentOffer {
    /// The content version this agent may run now. Agents never go below their current
    /// version; a rollback arrives as a higher version carrying older content.
    pub version: u64,
    /// Path (relative to the console base URL) or absolute URL of the signed bundle.
    pub url: String,
    /// SHA-256 of the file, lowercase hex; the bundle's own signature is what the agent trusts.
    pub sha256: String,
    pub size: u64,
}

/// The agent release an agent may run, and where to fetch it. The release file's signature
/// (by the trust root's releases role) is what the agent trusts; the hash and size only bound
/// the download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseOffer {
    /// The agent version (the release's signed `version`, its directory name on the host).
    pub version: Label,
    /// Path (relative to the console base URL) or absolute URL of the release file.
    pub url: String,
    /// SHA-256 of the release file, lowercase hex.
    pub sha256: String,
    pub size: u64,
}

/// The console's answer to a check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInResponse {
    /// `None` until any content is published.
    pub content: Option<ContentOffer>,
    /// The agent release this agent should run; `None`: keep what runs. Older consoles never
    /// send it, and older agents ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseOffer>,
    /// Call again after `next_checkin_ms` plus a random delay in `0..jitter_ms`.
    pub next_checkin_ms: u64,
    pub jitter_ms: u64,
    /// Response actions an operator ordered for this agent, oldest first, each signed by the
    /// console's order key ([`crate::signed_order`]). Older consoles never send it.
    #[serde(default, skip_serializing_if = "SignedOrders::is_empty")]
    pub orders: SignedOrders,
}

/// Bounds an agent puts on what a check-in response asks of it: a console (or anyone on the
/// path) cannot stop check-ins with a huge interval or make them a flood with a tiny one.
pub mod checkin_bounds {
    /// Shortest wait between check-ins an agent honours, ms.
    pub const MIN_INTERVAL_MS: u64 = 1_000;
    /// Longest, ms (an hour).
    pub const MAX_INTERVAL_MS: u64 = 3_600_000;
    /// Largest jitter honoured, ms (five minutes).
    pub const MAX_JITTER_MS: u64 = 300_000;
}

impl CheckInResponse {
    /// The wait before the next check-in the response asks for, and its jitter bound, both
    /// clamped to [`checkin_bounds`].
    pub fn bounded_interval(&self) -> (u64, u64) {
        (
            self.next_checkin_ms.clamp(
                checkin_bounds::MIN_INTERVAL_MS,
                checkin_bounds::MAX_INTERVAL_MS,
            ),
            self.jitter_ms.min(checkin_bounds::MAX_JITTER_MS),
        )
    }
}

/// A response action ordered from the console. The agent runs it through its own responder,
/// so its guard rails, rate limits, dry-run and audit log apply as to any other response.
///
/// Tagged by `kind`: `{"kind": "kill", "pid": 4242, "tree": true}`,
/// `{"kind": "quarantine", "path": "/tmp/x"}`, `{"kind": "restore", "id": "…"}`,
/// `{"kind": "block_ip", "ip": "203.0.113.7", "ttl_secs": 3600}`,
/// `{"kind": "unblock_ip", "ip": "203.0.113.7"}`. Parsing checks the bounds (pid > 0, an
/// absolute path without NUL, a quarantine id of letters, digits and `-`, a block of
/// 1..=[`limits::ORDER_MAX_BLOCK_SECS`] seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", try_from = "RawOrderAction")]
pub enum OrderAction {
    /// SIGKILL a process, or it and its descendants. `start_ticks` (the process start time in
    /// clock ticks since boot, as `/proc/PID/stat` has it) guards against pid reuse.
    Kill {
        pid: u32,
        #[serde(default)]
        tree: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_ticks: Option<u64>,
    },
    /// Move a file into the agent's quarantine store.
    Quarantine { path: String },
    /// Put a quarantined file back.
    Restore { id: String },
    /// Drop traffic to and from an address for `ttl_secs`.
    BlockIp { ip: std::net::IpAddr, ttl_secs: u64 },
    /// Lift a block early.
    UnblockIp { ip: std::net::IpAddr },
}

/// [`OrderAction`] before its bounds are checked.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawOrderAction {
    Kill {
        pid: u32,
        #[serde(default)]
        tree: bool,
        #[serde(default)]
        start_ticks: Option<u64>,
    },
    Quarantine {
        path: String,
    },
    Restore {
        id: String,
    },
    BlockIp {
        ip: std::net::IpAddr,
        ttl_secs: u64,
    },
    UnblockIp {
        ip: std::net::IpAddr,
    },
}

impl TryFrom<RawOrderAction> for OrderAction {
    type Error = ParseError;
    fn try_from(raw: RawOrderAction) -> Result<Self, ParseError> {
        let bad = |field: &'static str, reason: String| ParseError::OrderAction { field, reason };
        Ok(match raw {
            RawOrderAction::Kill {
                pid,
                tree,
                start_ticks,
            } => {
                if pid == 0 {
                    return Err(bad("pid", "must be > 0, got 0".into()));
                }
                OrderAction::Kill {
                    pid,
                    tree,
                    start_ticks,
                }
            }
            RawOrderAction::Quarantine { path } => {
                if !path.starts_with('/') {
                    return Err(bad("path", format!("must be absolute, got {path:?}")));
                }
                if path.len() > limits::ORDER_PATH_BYTES {
                    return Err(bad(
                        "path",
                        format!(
                            "longer than {} bytes ({})",
                            limits::ORDER_PATH_BYTES,
                            path.len()
                        ),
                    ));
                }
                if path.contains('\0') {
                    return Err(bad("path", "contains a NUL byte".into()));
                }
                OrderAction::Quarantine { path }
            }
            RawOrderAction::Restore { id } => {
                let ok = !id.is_empty()
                    && id.len() <= 128
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !ok {
                    return Err(bad(
                        "id",
                        format!("must be 1..=128 letters, digits or '-', got {id:?}"),
                    ));
                }
                OrderAction::Restore { id }
            }
            RawOrderAction::BlockIp { ip, ttl_secs } => {
                if ttl_secs == 0 || ttl_secs > limits::ORDER_MAX_BLOCK_SECS {
                    return Err(bad(
                        "ttl_secs",
                        format!(
                            "must be within 1..={}, got {ttl_secs}",
                            limits::ORDER_MAX_BLOCK_SECS
                        ),
                    ));
                }
                OrderAction::BlockIp { ip, ttl_secs }
            }
            RawOrderAction::UnblockIp { ip } => OrderAction::UnblockIp { ip },
        })
    }
}

impl OrderAction {
    /// The action's name as the response audit log spells it.
    pub fn name(&self) -> &'static str {
        match self {
            OrderAction::Kill { tree: false, .. } => "kill",
            OrderAction::Kill { tree: true, .. } => "kill_tree",
            OrderAction::Quarantine { .. } => "quarantine",
            OrderAction::Restore { .. } => "restore",
            OrderAction::BlockIp { .. } => "block_ip",
            OrderAction::UnblockIp { .. } => "unblock_ip",
        }
    }
}

/// `s` made safe to print on an operator's terminal or page: control characters (escape
/// sequences included) and Unicode format and bidi controls, which can make one name look like
/// another, are written as `\u{…}`.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_hidden_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Control characters, and the format characters that reorder or hide text (bidi embeddings,
/// overrides and isolates, zero-width joiners and spaces, the BOM, soft hyphen).
pub fn is_hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00ad}' | '\u{061c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn truncate_at_char(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Bounded text of an order or result: at most [`limits::ORDER_TEXT_BYTES`].
fn check_text(field: &'static str, s: &str) -> Result<(), ParseError> {
    if s.len() > limits::ORDER_TEXT_BYTES {
        Err(ParseError::OrderText { field })
    } else {
        Ok(())
    }
}

/// One response action ordered from the console, with who asked and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawResponseOrder")]
pub struct ResponseOrder {
    /// The console's id for the order; the result names it.
    pub id: u64,
    pub action: OrderAction,
    /// The operator who ordered it.
    pub requested_by: Label,
    pub reason: String,
}

#[derive(Deserialize)]
struct RawResponseOrder {
    id: u64,
    action: OrderAction,
    requested_by: Label,
    reason: String,
}

impl TryFrom<RawResponseOrder> for ResponseOrder {
    type Error = ParseError;
    fn try_from(r: RawResponseOrder) -> Result<Self, ParseError> {
        check_text("reason", &r.reason)?;
        Ok(ResponseOrder {
            id: r.id,
            action: r.action,
            requested_by: r.requested_by,
            reason: r.reason,
        })
    }
}

/// A list of at most `MAX` items, checked when it is parsed or built: orders in a check-in
/// response, results in a check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "Vec<T>",
    into = "Vec<T>",
    bound(
        serialize = "T: Clone + Serialize",
        deserialize = "T: Deserialize<'de>"
    )
)]
pub struct BoundedList<T, const MAX: usize>(Vec<T>);

/// Orders in one check-in response, at most [`limits::ORDERS`].
pub type Orders = BoundedList<ResponseOrder, { limits::ORDERS }>;
/// Signed orders in one check-in response, at most [`limits::ORDERS`].
pub type SignedOrders = BoundedList<crate::signed_order::SignedOrder, { limits::ORDERS }>;
/// Order results in one check-in, at most [`limits::ORDERS`].
pub type OrderResults = BoundedList<OrderResult, { limits::ORDERS }>;

impl<T, const MAX: usize> Default for BoundedList<T, MAX> {
    fn default() -> Self {
        BoundedList(Vec::new())
    }
}

impl<T, const MAX: usize> BoundedList<T, MAX> {
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T, const MAX: usize> TryFrom<Vec<T>> for BoundedList<T, MAX> {
    type Error = ParseError;
    fn try_from(v: Vec<T>) -> Result<Self, ParseError> {
        if v.len() > MAX {
            Err(ParseError::TooManyOrders(v.len()))
        } else {
            Ok(BoundedList(v))
        }
    }
}

impl<T, const MAX: usize> From<BoundedList<T, MAX>> for Vec<T> {
    fn from(l: BoundedList<T, MAX>) -> Self {
        l.0
    }
}

/// What became of an order on the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderStatus {
    /// Carried out.
    Done,
    /// Allowed by the guard rails, but the agent's responder is in dry-run: nothing changed.
    DryRun,
    /// Refused: guard rails, rate limit, or `fleet.accept_orders = false`.
    Refused,
    /// Attempted and failed.
    Failed,
}

impl OrderStatus {
    /// The name stored in the console's `response_orders.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Done => "done",
            OrderStatus::DryRun => "dry-run",
            OrderStatus::Refused => "refused",
            OrderStatus::Failed => "failed",
        }
    }
}

/// The result of one order, reported in the next check-ins until acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawOrderResult")]
pub struct OrderResult {
    pub id: u64,
    pub status: OrderStatus,
    /// What was done, or why not.
    #[serde(default)]
    pub detail: String,
}

#[derive(Deserialize)]
struct RawOrderResult {
    id: u64,
    status: OrderStatus,
    #[serde(default)]
    detail: String,
}

impl TryFrom<RawOrderResult> for OrderResult {
    type Error = ParseError;
    fn try_from(r: RawOrderResult) -> Result<Self, ParseError> {
        check_text("detail", &r.detail)?;
        Ok(OrderResult {
            id: r.id,
            status: r.status,
            detail: r.detail,
        })
    }
}

impl OrderResult {
    /// A result with `detail` cut to the protocol's bound at a character boundary.
    pub fn new(id: u64, status: OrderStatus, detail: &str) -> OrderResult {
        OrderResult {
            id,
            status,
            detail: truncate_at_char(detail, limits::ORDER_TEXT_BYTES).to_owned(),
        }
    }
}

/// Findings in one upload: each a JSON object, at most [`limits::FINDINGS_PER_BATCH`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    try_from = "Vec<serde_json::Map<String, serde_json::Value>>",
    into = "Vec<serde_json::Map<String, serde_json::Value>>"
)]
pub struct Findings(Vec<serde_json::Map<String, serde_json::Value>>);

impl Findings {
    pub fn iter(&self) -> impl Iterator<Item = &serde_json::Map<String, serde_json::Value>> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Vec<serde_json::Map<String, serde_json::Value>>> for Findings {
    type Error = ParseError;
    fn try_from(v: Vec<serde_json::Map<String, serde_json::Value>>) -> Result<Self, ParseError> {
        if v.len() > limits::FINDINGS_PER_BATCH {
            return Err(ParseError::TooManyFindings(v.len()));
        }
        for (i, f) in v.iter().enumerate() {
            let size = serde_json::to_vec(f).map(|b| b.len()).unwrap_or(usize::MAX);
            if size > limits::FINDING_BYTES {
                return Err(ParseError::FindingTooLarge(i));
            }
        }
        Ok(Findings(v))
    }
}

impl From<Findings> for Vec<serde_json::Map<String, serde_json::Value>> {
    fn from(f: Findings) -> Self {
        f.0
    }
}

/// `POST /api/v1/agents/findings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingsBatch {
    pub protocol: u16,
    pub agent_id: AgentId,
    pub findings: Findings,
}

/// The console's answer to a findings upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingsAccepted {
    pub accepted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> AgentId {
        AgentId::try_from("0123456789abcdef0123456789abcdef".to_owned()).unwrap()
    }

    fn checkin_json() -> serde_json::Value {
        serde_json::json!({
            "protocol": 1,
            "agent_id": "0123456789abcdef0123456789abcdef",
            "seq": 3,
            "agent_version": "0.1.0",
            "content_version": 7,
            "health": {"crashes": 0, "restarts": 1, "lkg_fallbacks": 0, "cpu_percent": 2.5,
                       "rss_bytes": 40000000, "events": 1000, "events_dropped": 2,
                       "findings": 1, "interval_ms": 60000},
            "tags": {"region": "eu-west", "industry": "finance", "environment": "prod",
                     "custom": {"team": "payments"}, "tz_offset_minutes": 60}
        })
    }

    #[test]
    fn local_tuning_and_output_drops_are_optional_and_round_trip() {
        let body = serde_json::to_vec(&checkin_json()).unwrap();
        let c = CheckIn::parse(&body).unwrap();
        assert!(c.tuning.is_empty());
        assert!(c.health.outputs_dropped.is_zero());
        let text = serde_json::to_string(&c).unwrap();
        assert!(
            !text.contains("tuning") && !text.contains("outputs_dropped"),
            "{text}"
        );
        let mut v = checkin_json();
        v["tuning"] =
            serde_json::json!({"disabled_rules": ["noisy-rule"], "exceptions": [["shell", 2]]});
        v["health"]["outputs_dropped"] = serde_json::json!(5);
        let c = CheckIn::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(c.tuning.disabled_rules[0].as_str(), "noisy-rule");
        assert_eq!(c.tuning.exceptions[0].1.get(), 2);
        assert_eq!(c.health.outputs_dropped.get(), 5);
        v["health"]["outputs_dropped"] = serde_json::json!(i64::MAX);
        let c = CheckIn::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(c.health.check_bounds().is_err());
    }

    #[test]
    fn checkin_round_trips() {
        let body = serde_json::to_vec(&checkin_json()).unwrap();
        let c = CheckIn::parse(&body).unwrap();
        assert_eq!(c.agent_id, id());
        assert_eq!(c.content_version.get(), 7);
        assert_eq!(c.tags.tz_offset_minutes.minutes(), 60);
        assert_eq!(c.tags.custom.get("team").unwrap().as_str(), "payments");
        let again = CheckIn::parse(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn checkin_refuses_out_of_bounds_values() {
        let cases: Vec<(&str, serde_json::Value)> = vec![
            ("/agent_id", serde_json::json!("XYZ")),
            ("/health/cpu_percent", serde_json::json!(-1.0)),
            ("/health/rss_bytes", serde_json::json!(u64::MAX)),
            ("/health/crashes", serde_json::json!(-3)),
            ("/tags/tz_offset_minutes", serde_json::json!(900)),
            ("/tags/region", serde_json::json!("")),
            ("/tags/region", serde_json::json!("x".repeat(65))),
            ("/tags/region", serde_json::json!("a\nb")),
            ("/agent_version", serde_json::json!(null)),
        ];
        for (pointer, value) in cases {
            let mut v = checkin_json();
            *v.pointer_mut(pointer).unwrap() = value.clone();
            let body = serde_json::to_vec(&v).unwrap();
            assert!(
                CheckIn::parse(&body).is_err(),
                "{pointer} = {value} accepted"
            );
        }
        let mut v = checkin_json();
        let custom: serde_json::Map<String, serde_json::Value> = (0..17)
            .map(|i| (format!("k{i}"), serde_json::json!("v")))
            .collect();
        *v.pointer_mut("/tags/custom").unwrap() = serde_json::Value::Object(custom);
        assert!(CheckIn::parse(&serde_json::to_vec(&v).unwrap()).is_err());
        assert!(CheckIn::parse(&vec![b' '; limits::CHECKIN_BYTES + 1]).is_err());
    }

    #[test]
    fn health_is_bounded_by_its_interval() {
        let health = |pointer: &str, value: serde_json::Value| {
            let mut v = checkin_json();
            v["health"]["release_fallbacks"] = serde_json::json!(0);
            *v.pointer_mut(pointer).unwrap() = value;
            CheckIn::parse(&serde_json::to_vec(&v).unwrap())
                .unwrap()
                .health
                .check_bounds()
        };
        assert_eq!(health("/health/crashes", serde_json::json!(3)), Ok(()));
        for (pointer, value, field) in [
            ("/health/crashes", i64::MAX, "crashes"),
            ("/health/lkg_fallbacks", 17, "lkg_fallbacks"),
            ("/health/release_fallbacks", 17, "release_fallbacks"),
            // 60 s at 5 M/s is 305 M with the second of slack.
            ("/health/events", 400_000_000, "events"),
            ("/health/events_dropped", i64::MAX, "events_dropped"),
            ("/health/findings", 10_000_000, "findings"),
            ("/health/interval_ms", i64::MAX, "interval_ms"),
            ("/health/rss_bytes", i64::MAX, "rss_bytes"),
        ] {
            match health(pointer, serde_json::json!(value)) {
                Err(ParseError::HealthBound { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{pointer} = {value}: {other:?}"),
            }
        }
        let mut v = checkin_json();
        *v.pointer_mut("/health/crashes").unwrap() = serde_json::json!(60_000);
        *v.pointer_mut("/health/restarts").unwrap() = serde_json::json!(60_000);
        let c = CheckIn::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(
            c.health
                .check_bounds()
                .unwrap_err()
                .to_string()
                .contains("crashes + restarts")
        );
    }

    #[test]
    fn credential_names_its_agent_and_hides_its_secret() {
        let c = Credential::new(&id(), &"ab".repeat(32)).unwrap();
        assert_eq!(c.agent_id(), id());
        assert!(!format!("{c:?}").contains(&"ab".repeat(32)));
        assert!(Credential::try_from("rfa1.x".to_owned()).is_err());
        assert!(Credential::new(&id(), "zz").is_err());
    }

    #[test]
    fn findings_batch_is_bounded() {
        let one = serde_json::json!({"rule": {"name": "reverse shell"}});
        let ok = serde_json::json!({"protocol": 1, "agent_id": id(), "findings": [one]});
        let batch: FindingsBatch = serde_json::from_value(ok).unwrap();
        assert_eq!(batch.findings.len(), 1);
        let many = vec![serde_json::json!({}); limits::FINDINGS_PER_BATCH + 1];
        let bad = serde_json::json!({"protocol": 1, "agent_id": id(), "findings": many});
        assert!(serde_json::from_value::<FindingsBatch>(bad).is_err());
        let not_objects = serde_json::json!({"protocol": 1, "agent_id": id(), "findings": [1]});
        assert!(serde_json::from_value::<FindingsBatch>(not_objects).is_err());
    }

    #[test]
    fn release_offers_and_fallbacks_are_optional_on_the_wire() {
        // An older console's answer has no `release`; ours omits it when there is none.
        let old = serde_json::json!({"content": null, "next_checkin_ms": 1000, "jitter_ms": 0});
        let r: CheckInResponse = serde_json::from_value(old).unwrap();
        assert_eq!(r.release, None);
        assert!(!serde_json::to_string(&r).unwrap().contains("release"));
        let offer = serde_json::json!({"content": null, "next_checkin_ms": 1000, "jitter_ms": 0,
            "release": {"version": "0.3.0", "url": "/releases/3.release", "sha256": "ab", "size": 9}});
        let r: CheckInResponse = serde_json::from_value(offer).unwrap();
        assert_eq!(r.release.unwrap().version.as_str(), "0.3.0");
        let h = Health::default();
        assert!(
            !serde_json::to_string(&h)
                .unwrap()
                .contains("release_fallbacks")
        );
    }

    #[test]
    fn a_console_cannot_stop_or_flood_check_ins_with_its_interval() {
        let answer = |next: u64, jitter: u64| CheckInResponse {
            content: None,
            release: None,
            next_checkin_ms: next,
            jitter_ms: jitter,
            orders: SignedOrders::default(),
        };
        assert_eq!(
            answer(u64::MAX, u64::MAX).bounded_interval(),
            (
                checkin_bounds::MAX_INTERVAL_MS,
                checkin_bounds::MAX_JITTER_MS
            )
        );
        assert_eq!(
            answer(0, 0).bounded_interval(),
            (checkin_bounds::MIN_INTERVAL_MS, 0)
        );
        assert_eq!(answer(60_000, 6_000).bounded_interval(), (60_000, 6_000));
    }

    #[test]
    fn labels_refuse_what_would_hide_or_reorder_text() {
        for bad in [
            "web-1\u{202e}",
            "web\u{200b}-1",
            "a\u{2066}b",
            "x\u{1b}[31m",
            "\u{feff}web",
        ] {
            assert!(Label::try_from(bad).is_err(), "{bad:?}");
        }
        assert!(Label::try_from("wëb-1.example").is_ok());
        assert_eq!(printable("ok\u{1b}[2J\u{202e}"), "ok\\u{1b}[2J\\u{202e}");
    }

    #[test]
    fn orders_parse_into_bounds_and_old_peers_still_parse() {
        // An old console's response and an old agent's check-in have no orders.
        let old: CheckInResponse = serde_json::from_value(
            serde_json::json!({"content": null, "next_checkin_ms": 1, "jitter_ms": 0}),
        )
        .unwrap();
        assert!(old.orders.is_empty());
        assert!(!serde_json::to_string(&old).unwrap().contains("orders"));
        let c = CheckIn::parse(&serde_json::to_vec(&checkin_json()).unwrap()).unwrap();
        assert!(c.order_results.is_empty());

        // Orders travel signed: a body of signed text and its signature.
        let order = serde_json::json!({"body": "{}", "sig": "00".repeat(64)});
        let resp: CheckInResponse = serde_json::from_value(serde_json::json!({
            "content": null, "next_checkin_ms": 1, "jitter_ms": 0, "orders": [order]}))
        .unwrap();
        assert_eq!(resp.orders.len(), 1);
        let unsigned = serde_json::json!({"id": 7, "requested_by": "admin", "reason": "ir-42",
            "action": {"kind": "block_ip", "ip": "203.0.113.7", "ttl_secs": 3600}});
        assert!(
            serde_json::from_value::<CheckInResponse>(serde_json::json!({
                "content": null, "next_checkin_ms": 1, "jitter_ms": 0, "orders": [unsigned]}))
            .is_err(),
            "an unsigned order does not even parse"
        );
        let again: CheckInResponse =
            serde_json::from_str(&serde_json::to_string(&resp).unwrap()).unwrap();
        assert_eq!(again, resp);

        let bad = [
            (serde_json::json!({"kind": "kill", "pid": 0}), "pid"),
            (
                serde_json::json!({"kind": "quarantine", "path": "tmp/x"}),
                "path",
            ),
            (serde_json::json!({"kind": "restore", "id": "../x"}), "id"),
            (
                serde_json::json!({"kind": "block_ip", "ip": "1.2.3.4", "ttl_secs": 0}),
                "ttl_secs",
            ),
            (
                serde_json::json!({"kind": "block_ip", "ip": "nope", "ttl_secs": 1}),
                "address",
            ),
            (serde_json::json!({"kind": "reboot"}), "unknown variant"),
            (
                serde_json::json!({"kind": "kill", "pid": 1, "signal": 9}),
                "unknown field",
            ),
        ];
        for (action, needle) in bad {
            let e = serde_json::from_value::<OrderAction>(action.clone()).unwrap_err();
            assert!(e.to_string().contains(needle), "{action}: {e}");
        }
        let kill: OrderAction =
            serde_json::from_value(serde_json::json!({"kind": "kill", "pid": 9})).unwrap();
        assert_eq!(
            kill,
            OrderAction::Kill {
                pid: 9,
                tree: false,
                start_ticks: None
            }
        );

        let many = vec![serde_json::json!({"id": 1, "status": "done"}); limits::ORDERS + 1];
        let mut v = checkin_json();
        v["order_results"] = serde_json::json!(many);
        assert!(CheckIn::parse(&serde_json::to_vec(&v).unwrap()).is_err());
        v["order_results"] = serde_json::json!([{"id": 1, "status": "dry-run", "detail": "ok"}]);
        let c = CheckIn::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(
            c.order_results.iter().next().unwrap().status,
            OrderStatus::DryRun
        );
        v["order_results"] = serde_json::json!([{"id": 1, "status": "maybe"}]);
        assert!(CheckIn::parse(&serde_json::to_vec(&v).unwrap()).is_err());
        let long = OrderResult::new(1, OrderStatus::Failed, &"é".repeat(600));
        assert!(long.detail.len() <= limits::ORDER_TEXT_BYTES);
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// The parser never panics on arbitrary bytes.
            #[test]
            fn parse_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                let _ = CheckIn::parse(&bytes);
            }

            /// Anything that parses re-serializes and parses to the same value.
            #[test]
            fn parsed_checkins_round_trip(
                seq in 0u64..=i64::MAX as u64,
                cpu in 0.0f64..6400.0,
                tz in -840i32..=840,
                region in "[a-z0-9-]{1,64}",
                dropped in any::<u32>(),
            ) {
                let v = serde_json::json!({
                    "protocol": 1, "agent_id": "0123456789abcdef0123456789abcdef",
                    "seq": seq, "agent_version": "1", "content_version": 1,
                    "health": {"cpu_percent": cpu, "events_dropped": dropped},
                    "tags": {"region": region, "tz_offset_minutes": tz}
                });
                let c = CheckIn::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
                let again = CheckIn::parse(&serde_json::to_vec(&c).unwrap()).unwrap();
                prop_assert_eq!(again, c);
            }

            /// Mutating one byte of a valid check-in either parses into bounds or is refused.
            #[test]
            fn mutated_checkins_stay_in_bounds(pos in 0usize..400, byte in any::<u8>()) {
                let mut body = serde_json::to_vec(&super::checkin_json()).unwrap();
                let i = pos % body.len();
                body[i] = byte;
                if let Ok(c) = CheckIn::parse(&body) {
                    prop_assert!(c.health.cpu_percent.get().is_finite());
                    prop_assert!(c.tags.custom.len() <= limits::CUSTOM_TAGS);
                    prop_assert!((-840..=840).contains(&c.tags.tz_offset_minutes.minutes()));
                }
            }
        }
    }
}
