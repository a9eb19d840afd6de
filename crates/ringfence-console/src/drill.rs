//! Fleet drills: N simulated agents, each a tokio task with jittered check-ins, against a real
//! console over loopback HTTP, through a rollout of a deliberately faulty content version.
//!
//! The drill starts its own console on `127.0.0.1:0` with an accelerated clock (or uses one at
//! a given URL), enrolls the agents with an enrollment token, publishes a baseline and a bad
//! version, lets the fleet settle on the baseline, starts a rollout of the bad version with the
//! drill plan, and then only watches: no operator call is made after the start, so the report's
//! `manual steps: 0` is literal. The headline is the blast radius: how many agents activated
//! the bad version before the rollout stopped itself.
//!
//! Faults: `crash` (the agent crash-loops and falls back to last-known-good), `cpu` (CPU ×5),
//! `silent` (event drops ×10), `hang` (the agent stops checking in at all), `none`.
//!
//! Agent-release faults roll out a bad agent release instead (the rollout engine's `agent`
//! kind; the simulated agents fetch the release file with their credential like real ones):
//! `agent-crash` (the new binary crash-loops; the supervisor falls back to the previous one and
//! the agent reports crashes and a release fallback, and never takes it again),
//! `agent-hang` (the new binary goes silent), `agent-cpu` (CPU ×5), `agent-none` (healthy).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringfence_wire::{
    AgentId, CheckIn, Client, Count, CpuPercent, Credential, EnrollRequest, Health, Label,
    PROTOCOL, Tags, Trust, TzOffset,
};
use serde::Serialize;
use tokio::sync::{Semaphore, watch};

use crate::clock::{AcceleratedClock, Millis};
use crate::plan::format_duration;
use crate::rollout::{RolloutView, StartRequest};
use crate::{AppState, Config, Db};

/// What the bad version does to an agent that activates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    None,
    Crash,
    Cpu,
    Silent,
    Hang,
    #[serde(rename = "agent-crash")]
    AgentCrash,
    #[serde(rename = "agent-hang")]
    AgentHang,
    #[serde(rename = "agent-cpu")]
    AgentCpu,
    #[serde(rename = "agent-none")]
    AgentNone,
}

impl Fault {
    /// Is this a drill of an agent release (rather than of content)?
    pub fn is_agent(self) -> bool {
        matches!(
            self,
            Fault::AgentCrash | Fault::AgentHang | Fault::AgentCpu | Fault::AgentNone
        )
    }

    /// Does the new version do harm (the rollout is expected to roll back)?
    pub fn is_harmful(self) -> bool {
        !matches!(self, Fault::None | Fault::AgentNone)
    }
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Fault, String> {
        match s {
            "none" => Ok(Fault::None),
            "crash" => Ok(Fault::Crash),
            "cpu" => Ok(Fault::Cpu),
            "silent" => Ok(Fault::Silent),
            "hang" => Ok(Fault::Hang),
            "agent-crash" => Ok(Fault::AgentCrash),
            "agent-hang" => Ok(Fault::AgentHang),
            "agent-cpu" => Ok(Fault::AgentCpu),
            "agent-none" => Ok(Fault::AgentNone),
            other => Err(format!(
                "unknown fault {other:?}: crash, cpu, silent, hang, none, agent-crash, agent-hang, agent-cpu or agent-none"
            )),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fault::None => "none",
            Fault::Crash => "crash",
            Fault::Cpu => "cpu",
            Fault::Silent => "silent",
            Fault::Hang => "hang",
            Fault::AgentCrash => "agent-crash",
            Fault::AgentHang => "agent-hang",
            Fault::AgentCpu => "agent-cpu",
            Fault::AgentNone => "agent-none",
        })
    }
}

/// The plan drills use: the default canary 1% → 10% → 50% → 100%, with bake times of a few
/// check-in intervals so a whole rollout fits in a drill.
pub const DRILL_PLAN: &str = r#"[gates]
min_samples = 10

[[rings]]
name = "canary"
percent = 1
bake = "10m"

[[rings]]
name = "early"
percent = 10
bake = "10m"

[[rings]]
name = "half"
percent = 50
bake = "15m"

[[rings]]
name = "all"
percent = 100
bake = "15m"
"#;

/// Drill settings.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub agents: usize,
    pub fault: Fault,
    /// Clock speed-up; `None` picks one for the fleet size.
    pub speed: Option<f64>,
    /// Simulated check-in interval.
    pub checkin_interval_ms: Millis,
    /// Plan TOML; [`DRILL_PLAN`] when absent.
    pub plan: Option<String>,
    /// Use this console (URL, operator token) instead of starting one. Its clock must run at
    /// the drill's speed (`ringfence console serve --clock-speed`).
    pub console: Option<(String, String)>,
    /// What the drill trusts when it connects to `console` (a pinned CA); the drill's own
    /// in-process console is plain HTTP on loopback.
    pub trust: Trust,
    /// Database for the in-process console (a SQLite file in a temporary directory if absent).
    pub db_url: Option<String>,
    /// Give up after this much real time.
    pub timeout: Duration,
    /// Print progress lines.
    pub verbose: bool,
}

impl DrillOptions {
    pub fn new(agents: usize, fault: Fault) -> DrillOptions {
        DrillOptions {
            agents,
            fault,
            speed: None,
            checkin_interval_ms: 5 * 60_000,
            plan: None,
            console: None,
            trust: Trust::PlainLoopback,
            db_url: None,
            timeout: Duration::from_secs(300),
            verbose: false,
        }
    }

    /// The speed used: about 4000 check-ins per real second, at most 300× (so the engine's
    /// 200 ms tick stays within a simulated minute).
    pub fn effective_speed(&self) -> f64 {
        self.speed.unwrap_or_else(|| {
            let per_agent = 1000.0 / self.checkin_interval_ms.max(1) as f64;
            (4000.0 / (per_agent * self.agents.max(1) as f64))
                .round()
                .clamp(1.0, 300.0)
        })
    }
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub agents: usize,
    pub fault: Fault,
    /// `content` or `agent`: what the rollout delivered.
    pub kind: String,
    pub speed: f64,
    pub from_version: i64,
    pub bad_version: i64,
    pub rollback_version: Option<i64>,
    /// Agents that activated the new version (the blast radius when it is bad).
    pub activated: usize,
    pub blast_pct: f64,
    pub final_state: String,
    pub reason: String,
    /// Simulated time from rollout start to the halt (or completion).
    pub time_to_decision_ms: Millis,
    pub real_ms: u128,
    /// Agents that fell back to last-known-good by themselves.
    pub recovered_on_own: usize,
    /// Agents that moved to the rollback version.
    pub rolled_back: usize,
    /// Agents still running the bad version at the end.
    pub still_on_bad: usize,
    /// Agents that stopped checking in (the `hang` fault).
    pub stuck: usize,
    pub manual_steps: usize,
    pub checkins: u64,
    pub checkin_errors: u64,
}

impl DrillReport {
    /// The human report `ringfence fleet simulate` prints.
    pub fn lines(&self) -> Vec<String> {
        let v = |n: i64| {
            if self.fault.is_agent() {
                format!("release #{n}")
            } else {
                format!("v{n}")
            }
        };
        let mut out = vec![format!(
            "{} rollout {} -> {} ({} fault): {} — {}",
            self.kind,
            v(self.from_version),
            v(self.bad_version),
            self.fault,
            self.final_state,
            self.reason
        )];
        let what = if !self.fault.is_harmful() {
            "the new"
        } else {
            "the bad"
        };
        out.push(format!(
            "blast radius: {}/{} agents activated {what} version ({:.2}%)",
            self.activated, self.agents, self.blast_pct
        ));
        let label = if self.final_state == "completed" {
            "time to complete"
        } else {
            "time to halt"
        };
        out.push(format!(
            "{label}: {} simulated ({:.1}s real at {:.0}x)",
            format_duration(self.time_to_decision_ms),
            self.real_ms as f64 / 1000.0,
            self.speed
        ));
        if self.fault.is_harmful() {
            out.push(format!(
                "recovered on their own (fell back to {}): {}",
                if self.fault.is_agent() {
                    "the previous binary"
                } else {
                    "last-known-good"
                },
                self.recovered_on_own
            ));
            out.push(format!(
                "rolled back by the console{}: {}; still on the bad version: {}; stuck (no heartbeat): {}",
                self.rollback_version.map_or(String::new(), |r| format!(" ({} carrying {})", v(r), v(self.from_version))),
                self.rolled_back,
                self.still_on_bad,
                self.stuck
            ));
        }
        out.push(format!("manual steps: {}", self.manual_steps));
        out.push(format!(
            "check-ins: {} ({} refused or failed)",
            self.checkins, self.checkin_errors
        ));
        out
    }
}

/// Why a drill could not run.
#[derive(Debug, thiserror::Error)]
#[error("drill: {0}")]
pub struct DrillError(pub String);

fn err(e: impl std::fmt::Display) -> DrillError {
    DrillError(e.to_string())
}

/// A tiny deterministic PRNG (xorshift64*), one per simulated agent.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Default)]
struct Shared {
    activated: Vec<AtomicBool>,
    fell_back: Vec<AtomicBool>,
    stuck: Vec<AtomicBool>,
    current: Vec<AtomicU64>,
    /// Agent-release drills: the agent runs the bad release now.
    on_bad_release: Vec<AtomicBool>,
    checkins: AtomicU64,
    errors: AtomicU64,
    enrolled: AtomicU64,
}

struct AgentSim {
    idx: usize,
    client: Client,
    credential: Credential,
    id: AgentId,
    tags: Tags,
    agent_version: Label,
    bad: u64,
    /// Agent-release drills: the bad release's version label.
    bad_release: Option<Label>,
    fault: Fault,
    speed: f64,
    interval_ms: Millis,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
}

fn real(sim_ms: f64, speed: f64) -> Duration {
    Duration::from_secs_f64((sim_ms / speed / 1000.0).max(0.0))
}

impl AgentSim {
    async fn run(mut self) {
        let mut rng = Rng::new(self.idx as u64 + 1);
        let base_cpu = 1.5 + 1.5 * rng.unit();
        let base_rss = 40e6 + 40e6 * rng.unit();
        let mut current: u64 = 0;
        let mut refused_bad = false;
        let mut refused_release = false;
        let (mut crashes, mut restarts, mut lkg) = (0u32, 0u32, 0u32);
        let mut release_fallbacks = 0u32;
        let mut seq: u64 = 0;
        // Findings accrue linearly with time (0.1 a minute on average); whole ones are reported.
        let mut finding_debt = 0.0f64;
        let mut drop_debt = 0.0f64;
        let mut last_ack = Instant::now();
        let mut hung = false;
        // Agents do not all start at once.
        let first = real(rng.unit() * self.interval_ms as f64, self.speed);
        if self.sleep(first).await {
            return;
        }
        loop {
            if hung {
                // Stuck in a loop: no heartbeat, nothing sent, until the drill ends.
                let _ = self.stop.changed().await;
                return;
            }
            seq += 1;
            let elapsed_sim = (last_ack.elapsed().as_secs_f64() * 1000.0 * self.speed) as u64;
            let on_bad_release = self.bad_release.as_ref() == Some(&self.agent_version);
            let on_bad = current == self.bad || on_bad_release;
            let minutes = elapsed_sim as f64 / 60_000.0;
            let events = (minutes * 200.0 * (0.8 + 0.4 * rng.unit())) as u64;
            // Drops accrue like findings: 0.1% of events, ten times that on a silent fault.
            // (Truncating each check-in's share would hide a 10× rise in short intervals.)
            let drop_rate = if on_bad && self.fault == Fault::Silent {
                0.01
            } else {
                0.001
            };
            drop_debt += events as f64 * drop_rate * (0.5 + rng.unit());
            let drops = drop_debt.floor().max(0.0) as u64;
            drop_debt -= drops as f64;
            let mut cpu = base_cpu * (0.85 + 0.3 * rng.unit());
            if on_bad && matches!(self.fault, Fault::Cpu | Fault::AgentCpu) {
                cpu *= 5.0;
            }
            finding_debt += minutes * 0.1 * 2.0 * rng.unit();
            let findings = finding_debt.floor().max(0.0) as u64;
            finding_debt -= findings as f64;
            let health = Health {
                crashes: Count::from(crashes),
                restarts: Count::from(restarts),
                lkg_fallbacks: Count::from(lkg),
                release_fallbacks: Count::from(release_fallbacks),
                cpu_percent: CpuPercent::try_from(cpu.min(6400.0)).unwrap_or_default(),
                rss_bytes: Count::try_from((base_rss * (0.98 + 0.04 * rng.unit())) as u64)
                    .unwrap_or_default(),
                events: Count::try_from(events).unwrap_or_default(),
                events_dropped: Count::try_from(drops).unwrap_or_default(),
                findings: Count::try_from(findings).unwrap_or_default(),
                interval_ms: Count::try_from(elapsed_sim).unwrap_or_default(),
                ..Health::default()
            };
            let checkin = CheckIn {
                protocol: PROTOCOL,
                agent_id: self.id.clone(),
                seq: Count::try_from(seq).unwrap_or_default(),
                agent_version: self.agent_version.clone(),
                content_version: Count::try_from(current).unwrap_or_default(),
                content: None,
                health,
                tags: self.tags.clone(),
                order_results: Default::default(),
                tuning: Default::default(),
            };
            let next;
            match self.client.check_in(&self.credential, &checkin).await {
                Ok(resp) => {
                    self.shared.checkins.fetch_add(1, Ordering::Relaxed);
                    (crashes, restarts, lkg, release_fallbacks) = (0, 0, 0, 0);
                    if let Some(offer) = &resp.release
                        && offer.version != self.agent_version
                        && !(refused_release && Some(&offer.version) == self.bad_release.as_ref())
                    {
                        match self
                            .client
                            .fetch_file(&offer.url, Some(self.credential.as_str()), 1 << 20)
                            .await
                        {
                            Ok(_bytes) if Some(&offer.version) == self.bad_release.as_ref() => {
                                self.shared.activated[self.idx].store(true, Ordering::Relaxed);
                                match self.fault {
                                    Fault::AgentCrash => {
                                        // The new binary crash-loops on trial; the supervisor
                                        // falls back to the previous one, which marks the
                                        // release bad here and never takes it again.
                                        crashes += 3;
                                        restarts += 3;
                                        release_fallbacks += 1;
                                        refused_release = true;
                                        self.shared.fell_back[self.idx]
                                            .store(true, Ordering::Relaxed);
                                    }
                                    Fault::AgentHang => {
                                        self.agent_version = offer.version.clone();
                                        hung = true;
                                        self.shared.stuck[self.idx].store(true, Ordering::Relaxed);
                                    }
                                    _ => self.agent_version = offer.version.clone(),
                                }
                            }
                            Ok(_bytes) => self.agent_version = offer.version.clone(),
                            Err(_) => {
                                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        self.shared.on_bad_release[self.idx].store(
                            self.bad_release.as_ref() == Some(&self.agent_version),
                            Ordering::Relaxed,
                        );
                    }
                    last_ack = Instant::now();
                    next = resp.next_checkin_ms as f64 + rng.unit() * resp.jitter_ms as f64;
                    if let Some(offer) = resp.content {
                        let refused = offer.version == self.bad && refused_bad;
                        if offer.version > current && !refused {
                            match self.client.fetch_content(&offer.url, 1 << 20).await {
                                Ok(_bytes) => {
                                    if offer.version == self.bad {
                                        self.shared.activated[self.idx]
                                            .store(true, Ordering::Relaxed);
                                        match self.fault {
                                            Fault::Crash => {
                                                // Crash loop; the supervisor brings it back on
                                                // last-known-good and the agent will not retry.
                                                crashes += 3;
                                                restarts += 3;
                                                lkg += 1;
                                                refused_bad = true;
                                                self.shared.fell_back[self.idx]
                                                    .store(true, Ordering::Relaxed);
                                            }
                                            Fault::Hang => {
                                                current = offer.version;
                                                hung = true;
                                                self.shared.stuck[self.idx]
                                                    .store(true, Ordering::Relaxed);
                                            }
                                            _ => current = offer.version,
                                        }
                                    } else {
                                        current = offer.version;
                                    }
                                    self.shared.current[self.idx].store(current, Ordering::Relaxed);
                                }
                                Err(_) => {
                                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                }
                Err(_) => {
                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                    // Counters are kept for the next attempt; retry sooner.
                    next = self.interval_ms as f64 * (0.2 + 0.3 * rng.unit());
                }
            }
            if self.sleep(real(next, self.speed)).await {
                return;
            }
        }
    }

    /// Sleep; true when the drill is over.
    async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => *self.stop.borrow(),
            _ = self.stop.changed() => true,
        }
    }
}

fn tags_for(i: usize) -> Tags {
    const REGIONS: [(&str, i32); 4] = [
        ("eu-west", 60),
        ("us-east", -300),
        ("ap-south", 330),
        ("us-west", -480),
    ];
    const INDUSTRIES: [&str; 4] = ["finance", "retail", "health", "energy"];
    let (region, tz) = REGIONS[i % REGIONS.len()];
    let label = |s: &str| Label::try_from(s).ok();
    Tags {
        region: label(region),
        industry: label(INDUSTRIES[(i / 4) % INDUSTRIES.len()]),
        environment: label(if i.is_multiple_of(5) {
            "staging"
        } else {
            "prod"
        }),
        custom: Default::default(),
        tz_offset_minutes: TzOffset::try_from(tz).unwrap_or_default(),
    }
}

struct Console {
    url: String,
    token: String,
    running: Option<crate::Running>,
    dir: Option<PathBuf>,
    clock_now: Box<dyn Fn() -> Millis + Send + Sync>,
}

async fn start_console(opts: &DrillOptions, speed: f64) -> Result<Console, DrillError> {
    if let Some((url, token)) = &opts.console {
        let start = Instant::now();
        let base = crate::clock::SystemClock;
        let t0 = crate::clock::Clock::now_ms(&base);
        return Ok(Console {
            url: url.clone(),
            token: token.clone(),
            running: None,
            dir: None,
            clock_now: Box::new(move || {
                t0 + (start.elapsed().as_secs_f64() * 1000.0 * speed) as Millis
            }),
        });
    }
    let mut suffix = [0u8; 6];
    getrandom::getrandom(&mut suffix).map_err(err)?;
    let dir = std::env::temp_dir().join(format!("ringfence-drill-{}", hex::encode(suffix)));
    std::fs::create_dir_all(&dir).map_err(err)?;
    let db_url = opts
        .db_url
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", dir.join("console.db").display()));
    let db = Db::open(&db_url).await.map_err(err)?;
    let clock = Arc::new(AcceleratedClock::new(speed));
    let mut config = Config::new(dir.join("content"));
    config.checkin_interval_ms = opts.checkin_interval_ms;
    config.checkin_jitter_ms = opts.checkin_interval_ms / 10;
    let state = AppState::new(db, clock.clone(), config)
        .await
        .map_err(err)?;
    let token = crate::auth::create_operator(&state, "drill", "drill-password-not-used")
        .await
        .map_err(err)?;
    let running = crate::serve(
        state,
        "127.0.0.1:0".parse().map_err(err)?,
        Duration::from_millis(200),
    )
    .await
    .map_err(err)?;
    Ok(Console {
        url: running.url(),
        token,
        running: Some(running),
        dir: Some(dir),
        clock_now: Box::new(move || crate::clock::Clock::now_ms(clock.as_ref())),
    })
}

/// Run a drill.
pub async fn run(opts: DrillOptions) -> Result<DrillReport, DrillError> {
    let started = Instant::now();
    let speed = opts.effective_speed();
    let console = start_console(&opts, speed).await?;
    let result = drive(&opts, speed, &console, started).await;
    if let Some(running) = console.running {
        let state = running.state.clone();
        let _ = running.shutdown().await;
        state.db.close().await;
    }
    if let Some(dir) = console.dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

async fn drive(
    opts: &DrillOptions,
    speed: f64,
    console: &Console,
    started: Instant,
) -> Result<DrillReport, DrillError> {
    let say = |s: String| {
        if opts.verbose {
            eprintln!("drill: {s}");
        }
    };
    let trust = if console.running.is_some() {
        Trust::PlainLoopback
    } else {
        opts.trust.clone()
    };
    let client = Client::new(&console.url, &trust).map_err(err)?;
    let op = Some(console.token.as_str());
    let n = opts.agents;

    // Content: a baseline (unless the console has one) and the new version.
    let fleet: crate::agents::FleetSummary =
        client.get_json("/api/v1/fleet", op).await.map_err(err)?;
    let published: Vec<crate::content::ContentRow> =
        client.get_json("/api/v1/content", op).await.map_err(err)?;
    let mut next_version = published.iter().map(|c| c.version).max().unwrap_or(0) + 1;
    let baseline = if fleet.baseline == 0 {
        let v = next_version;
        next_version += 1;
        let _: crate::content::ContentRow = client
            .request(
                axum::http::Method::PUT,
                &format!("/api/v1/content/{v}?baseline=true"),
                op,
                axum::body::Bytes::from(format!("ringfence drill content v{v}: healthy")),
                "application/octet-stream",
            )
            .await
            .map_err(err)?;
        v
    } else {
        fleet.baseline
    };
    let bad = next_version;
    let _: crate::content::ContentRow = client
        .request(
            axum::http::Method::PUT,
            &format!("/api/v1/content/{bad}"),
            op,
            axum::body::Bytes::from(format!(
                "ringfence drill content v{bad}: fault {}",
                opts.fault
            )),
            "application/octet-stream",
        )
        .await
        .map_err(err)?;

    // Agent releases: a baseline every agent runs, and the new one (opaque bytes: the drill's
    // console verifies nothing, and simulated agents run nothing).
    let mut tag = [0u8; 3];
    getrandom::getrandom(&mut tag).map_err(err)?;
    let tag = hex::encode(tag);
    let base_label = format!("drill-{tag}-base");
    let bad_label = format!("drill-{tag}-{}", opts.fault);
    if opts.fault.is_agent() {
        let publish = |label: String, baseline: bool| {
            let client = client.clone();
            async move {
                client
                    .request::<crate::releases::ReleaseRow>(
                        axum::http::Method::PUT,
                        &format!(
                            "/api/v1/releases/{label}{}",
                            if baseline { "?baseline=true" } else { "" }
                        ),
                        op,
                        axum::body::Bytes::from(format!("ringfence drill agent release {label}")),
                        "application/octet-stream",
                    )
                    .await
            }
        };
        // A console that already has a baseline release refuses this one as the baseline
        // (409); its agents are then offered that baseline and take it.
        let _ = publish(base_label.clone(), true).await;
        publish(bad_label.clone(), false).await.map_err(err)?;
    }
    let bad_release = opts
        .fault
        .is_agent()
        .then(|| Label::try_from(bad_label.as_str()).ok())
        .flatten();
    let start_label = Label::try_from(base_label.as_str()).map_err(err)?;

    // Enroll.
    let token: crate::agents::EnrollmentToken = client
        .post_json(
            "/api/v1/enrollment-tokens",
            op,
            &serde_json::json!({"label": "drill", "max_uses": n}),
        )
        .await
        .map_err(err)?;
    let shared = Arc::new(Shared {
        activated: (0..n).map(|_| AtomicBool::new(false)).collect(),
        fell_back: (0..n).map(|_| AtomicBool::new(false)).collect(),
        stuck: (0..n).map(|_| AtomicBool::new(false)).collect(),
        current: (0..n).map(|_| AtomicU64::new(0)).collect(),
        on_bad_release: (0..n).map(|_| AtomicBool::new(false)).collect(),
        ..Shared::default()
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let enroll_gate = Arc::new(Semaphore::new(16));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let client = client.clone();
        let shared = shared.clone();
        let stop = stop_rx.clone();
        let gate = enroll_gate.clone();
        let token = token.token.clone();
        let fault = opts.fault;
        let interval_ms = opts.checkin_interval_ms;
        let bad_release = bad_release.clone();
        let agent_version = start_label.clone();
        tasks.push(tokio::spawn(async move {
            let tags = tags_for(i);
            let Ok(hostname) = Label::try_from(format!("drill-{i:05}")) else {
                return;
            };
            let req = EnrollRequest {
                protocol: PROTOCOL,
                token,
                hostname,
                agent_version: agent_version.clone(),
                tags: tags.clone(),
                csr_pem: None,
            };
            let enrolled = {
                let Ok(_permit) = gate.acquire().await else {
                    return;
                };
                let mut tries = 0;
                loop {
                    match client.enroll(&req).await {
                        Ok(e) => break e,
                        Err(_) if tries < 5 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(_) => {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            };
            shared.enrolled.fetch_add(1, Ordering::Relaxed);
            AgentSim {
                idx: i,
                client,
                credential: enrolled.credential,
                id: enrolled.agent_id,
                tags,
                agent_version,
                bad: bad.unsigned_abs(),
                bad_release,
                fault,
                speed,
                interval_ms,
                shared,
                stop,
            }
            .run()
            .await;
        }));
    }
    let deadline = started + opts.timeout;
    let count_on = |v: u64| {
        shared
            .current
            .iter()
            .filter(|c| c.load(Ordering::Relaxed) == v)
            .count()
    };
    // Settle on the baseline.
    loop {
        let on = count_on(baseline.unsigned_abs());
        if on * 100 >= n * 99 {
            break;
        }
        if Instant::now() > deadline {
            let _ = stop_tx.send(true);
            return Err(DrillError(format!(
                "only {on}/{n} agents reached the baseline before the timeout"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    say(format!(
        "{n} agents enrolled and on baseline v{baseline} after {:.1}s; letting the control group report",
        started.elapsed().as_secs_f64()
    ));
    tokio::time::sleep(real(opts.checkin_interval_ms as f64 * 1.5, speed)).await;

    // The rollout; from here on the drill only watches.
    let plan = opts.plan.clone().unwrap_or_else(|| DRILL_PLAN.to_owned());
    let start_sim = (console.clock_now)();
    let view: RolloutView = client
        .post_json(
            "/api/v1/rollouts",
            op,
            &StartRequest {
                version: if opts.fault.is_agent() { 0 } else { bad },
                agent_version: opts.fault.is_agent().then(|| bad_label.clone()),
                plan: Some(plan),
                emergency: false,
                reason: format!("fleet drill: {} fault", opts.fault),
            },
        )
        .await
        .map_err(err)?;
    say(format!(
        "rollout {} of {} started",
        view.id,
        view.describe(view.to_version)
    ));
    let mut last_state = view.state.clone();
    let mut last_ring = view.current_ring;
    // The engine halts on evidence from too few agents and rolls back by itself once enough
    // agents report: give it three check-in intervals to do so before calling it final.
    let mut engine_halted_at: Option<Instant> = None;
    let final_view = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let v: RolloutView = client
            .get_json(&format!("/api/v1/rollouts/{}", view.id), op)
            .await
            .map_err(err)?;
        if v.state != last_state || v.current_ring != last_ring {
            say(format!(
                "rollout {}: {} (ring {})",
                v.id, v.state, v.current_ring
            ));
            last_state = v.state.clone();
            last_ring = v.current_ring;
        }
        if v.state == "halted" && v.reason.starts_with("gate halted ring ") {
            let at = *engine_halted_at.get_or_insert_with(Instant::now);
            if at.elapsed() < real(opts.checkin_interval_ms as f64 * 3.0, speed) {
                continue;
            }
            break v;
        }
        if matches!(
            v.state.as_str(),
            "completed" | "rolled_back" | "paused" | "halted"
        ) {
            break v;
        }
        if Instant::now() > deadline {
            break v;
        }
    };
    let decided_sim = final_view.updated_at - start_sim;
    let on_bad = |i: usize| {
        if opts.fault.is_agent() {
            shared.on_bad_release[i].load(Ordering::Relaxed)
        } else {
            shared.current[i].load(Ordering::Relaxed) == bad.unsigned_abs()
        }
    };
    // Let agents that got the bad version pick up the rollback.
    if final_view.rollback_version.is_some() {
        let settle = Instant::now() + real(opts.checkin_interval_ms as f64 * 3.0, speed);
        while Instant::now() < settle && Instant::now() < deadline {
            let waiting = (0..n)
                .filter(|&i| {
                    shared.activated[i].load(Ordering::Relaxed)
                        && !shared.stuck[i].load(Ordering::Relaxed)
                        && on_bad(i)
                })
                .count();
            if waiting == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let flag = |v: &Vec<AtomicBool>| v.iter().filter(|b| b.load(Ordering::Relaxed)).count();
    let activated = flag(&shared.activated);
    let stuck = flag(&shared.stuck);
    let still_on_bad = (0..n).filter(|&i| on_bad(i)).count();
    let rolled_back = match final_view.rollback_version {
        None => 0,
        Some(rb) if !opts.fault.is_agent() => count_on(rb.unsigned_abs()),
        // Agents that ran the bad release and run the re-offered previous one now.
        Some(_) => (0..n)
            .filter(|&i| {
                shared.activated[i].load(Ordering::Relaxed)
                    && !shared.fell_back[i].load(Ordering::Relaxed)
                    && !on_bad(i)
            })
            .count(),
    };
    let reason = if final_view.state == "completed" {
        "every ring passed its gate".to_owned()
    } else {
        final_view.reason.clone()
    };
    Ok(DrillReport {
        agents: n,
        fault: opts.fault,
        kind: final_view.kind.clone(),
        speed,
        from_version: if opts.fault.is_agent() {
            final_view.from_version
        } else {
            baseline
        },
        bad_version: if opts.fault.is_agent() {
            final_view.to_version
        } else {
            bad
        },
        rollback_version: final_view.rollback_version,
        activated,
        blast_pct: activated as f64 * 100.0 / n.max(1) as f64,
        final_state: final_view.state,
        reason,
        time_to_decision_ms: decided_sim,
        real_ms: started.elapsed().as_millis(),
        recovered_on_own: flag(&shared.fell_back),
        rolled_back,
        still_on_bad: still_on_bad - stuck.min(still_on_bad),
        stuck,
        manual_steps: 0,
        checkins: shared.checkins.load(Ordering::Relaxed),
        checkin_errors: shared.errors.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse() {
        for f in [
            "none",
            "crash",
            "cpu",
            "silent",
            "hang",
            "agent-crash",
            "agent-hang",
            "agent-cpu",
            "agent-none",
        ] {
            assert_eq!(f.parse::<Fault>().unwrap().to_string(), f);
        }
        assert!("boom".parse::<Fault>().is_err());
    }

    #[test]
    fn drill_plan_parses_and_speed_is_bounded() {
        crate::plan::Plan::parse(DRILL_PLAN).unwrap();
        assert_eq!(
            DrillOptions::new(10_000, Fault::Crash).effective_speed(),
            120.0
        );
        assert_eq!(DrillOptions::new(10, Fault::Crash).effective_speed(), 300.0);
    }
}
