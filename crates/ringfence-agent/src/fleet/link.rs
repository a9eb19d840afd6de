//! The fleet link's loop: enroll once, then check in, fetch offered content, upload findings.
//!
//! It runs on its own thread with a single-threaded async runtime, apart from the pipeline:
//! a console that is slow or away delays nothing but the link itself. Health goes up as the
//! difference from what the console last *acknowledged*, so a lost check-in loses nothing. An
//! offered content version above the one running is fetched, checked against the offer's size
//! and SHA-256, verified against the content root (signatures, and that it is the version
//! offered), and only then written atomically into the content directory as
//! `console-vN.bundle` and remembered; the content manager then verifies and activates it like
//! any other bundle — the link never decides what runs, it only delivers. A refused offer is
//! remembered as refused (a bounded set), so a forged "version u64::MAX" can neither freeze
//! content nor make the agent download forever. Response orders in the answer go to the
//! [`OrderRunner`](super::orders::OrderRunner), which checks their signatures; their results
//! ride up with later check-ins.
//!
//! An agent release offered in the answer ([`ReleaseOffer`]) that is not the version running is
//! fetched with the agent's credential (bounded by the offer's size, checked against its
//! SHA-256), verified against the content root's releases role and installed into the versions
//! directory on trial ([`crate::versions::VersionStore::install_offered`]); the supervisor sees
//! the switch and restarts the worker on it, and falls back by itself if it fails. A refused
//! release (bad signature, anti-rollback, marked bad here) is a health notice, and its SHA-256
//! is remembered so it is not fetched again while the console keeps offering it. An agent
//! whose running release or content metadata has expired keeps running it and raises a notice
//! naming the file and the expiry.
//!
//! What the console says is bounded before it is believed: the next check-in comes after
//! 1 s to 1 h whatever the answer asks ([`ringfence_wire::checkin_bounds`]); a findings upload
//! counts as delivered only when the console acknowledges exactly what was sent; a 401 or 403
//! keeps the identity (it is reported and retried with backoff, never forgotten); and check-ins
//! that keep failing for `alarm_after_secs` raise a health notice in the agent's own event
//! stream, so a blinded agent is visible on the host.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringfence_sensor::StopSignal;
use ringfence_wire::{
    CaPin, CheckIn, CheckInResponse, Client, ContentOffer, Count, CpuPercent, Findings,
    FindingsBatch, Health, Label, OrderResults, PROTOCOL, ReleaseOffer, Tags, limits,
};
use sha2::{Digest, Sha256};

use super::enrollment::{Enrollment, SupervisorCount};
use super::telemetry::{Counters, Telemetry};

/// Longest wait between two attempts when the console is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Findings waiting are sent at least this often, between check-ins.
const FINDINGS_EVERY: Duration = Duration::from_secs(5);
/// Offered versions remembered as refused (the oldest are forgotten past it).
const REFUSED_OFFERS: usize = 64;

/// The largest agent release file an agent fetches (the console serves no larger).
pub const MAX_RELEASE_BYTES: u64 = 256 * 1024 * 1024;

/// Where offered agent releases go.
#[derive(Debug, Clone)]
pub struct ReleaseDelivery {
    /// The versions directory ([`crate::versions`]).
    pub versions_dir: PathBuf,
    /// The package's binary (the supervisor's): a re-offer of it is a rollback, not a downgrade.
    pub base_binary: Option<PathBuf>,
    /// The largest release file fetched.
    pub max_bytes: u64,
}

/// Everything the link needs; built by [`super::FleetLink::start`].
pub struct LinkOptions {
    pub console: String,
    pub enroll_token: Option<String>,
    pub hostname: Label,
    pub agent_version: Label,
    pub tags: Tags,
    /// `fleet.json` in the content state directory.
    pub state_file: PathBuf,
    /// The watched content directory, where offered bundles are written.
    pub content_dir: PathBuf,
    pub max_bundle_bytes: u64,
    /// The content version the agent runs now (0: none).
    pub content_version: Box<dyn Fn() -> u64 + Send>,
    /// What content is active, in words, for every check-in.
    pub content_label: Box<dyn Fn() -> String + Send>,
    /// The supervisor's crash count when this worker started.
    pub supervisor_crashes: Option<SupervisorCount>,
    /// Last-known-good fallbacks to report (the supervisor rolled content back before this
    /// worker started).
    pub lkg_fallbacks: u64,
    /// Agent release fall-backs to report (the supervisor went back to the previous binary
    /// before this worker started).
    pub release_fallbacks: u64,
    /// Offered agent releases are installed here; `None`: releases are not taken (no versions
    /// directory).
    pub releases: Option<ReleaseDelivery>,
    /// Runs console response orders and keeps their results.
    pub orders: super::orders::OrderRunner,
    /// The CA pins the link trusts: the fleet's identity, kept with the enrollment.
    pub ca_pins: Vec<CaPin>,
    /// `[content]`: offered bundles are verified against its root before they are kept.
    pub content: crate::content::config::ContentSection,
    /// Raise a health notice after check-ins have failed this long.
    pub alarm_after: Duration,
    /// What the link trusts (to rebuild its client with the agent's own certificate).
    pub trust: ringfence_wire::Trust,
    /// What is tuned locally (`[detect]`), reported in each check-in.
    pub tuning: ringfence_wire::LocalTuning,
    /// Other consoles of the same fleet (same CA, same database), tried in turn after a failed
    /// cycle, with the same identity and findings queue.
    pub fallbacks: Vec<String>,
}

/// What the link did, for its last log line and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkReport {
    pub checkins: u64,
    pub failed_checkins: u64,
    pub bundles_delivered: u64,
    pub findings_uploaded: u64,
    pub orders_received: u64,
    /// Agent releases installed (switched to on trial).
    pub releases_installed: u64,
    /// Offers refused (unverifiable bundles) and uploads whose acknowledgement did not match.
    pub offers_refused: u64,
    pub uploads_unacknowledged: u64,
    /// Health notices raised for a link that kept failing.
    pub alarms: u64,
}

struct Link {
    opts: LinkOptions,
    client: Client,
    telemetry: std::sync::Arc<Telemetry>,
    enrollment: Option<Enrollment>,
    /// Counters and CPU time the console acknowledged last, and when.
    acked: Counters,
    acked_cpu: Duration,
    acked_at: Instant,
    lkg_pending: u64,
    release_fallbacks_pending: u64,
    /// SHA-256 of offered releases refused, or installed and waiting for the supervisor's
    /// switch: not fetched again.
    releases_done: BTreeSet<String>,
    /// Expired-metadata notices raised (each distinct line once).
    expiry_noticed: BTreeSet<String>,
    seq: u64,
    /// TLS refusals reported lately, by message (each at most once a minute; a few kept).
    tls_noticed: Vec<(String, Instant)>,
    /// Highest content version written to the content directory (after it verified).
    delivered: u64,
    /// Offered versions whose bundle did not verify: not fetched again.
    refused_offers: BTreeSet<u64>,
    /// Which console is in use: 0 is `opts.console`, `i` is `opts.fallbacks[i - 1]`.
    current: usize,
    report: LinkReport,
    rng: u64,
}

/// Runs the link until `stop` is raised.
pub async fn run(
    opts: LinkOptions,
    client: Client,
    telemetry: std::sync::Arc<Telemetry>,
    stop: StopSignal,
) -> LinkReport {
    let enrollment = match Enrollment::load(&opts.state_file) {
        // The identity belongs to the fleet (its CA), not to one console URL: another console
        // of the same fleet keeps it.
        Ok(Some(e)) if e.console == opts.console || e.same_fleet(&opts.ca_pins) => Some(e),
        Ok(Some(e)) => {
            tracing::warn!(
                was = %e.console,
                now = %opts.console,
                "enrolled with another fleet (another console CA); enrolling again"
            );
            None
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "saved enrollment unreadable; enrolling again");
            None
        }
    };
    let mut link = Link {
        lkg_pending: opts.lkg_fallbacks,
        release_fallbacks_pending: opts.release_fallbacks,
        releases_done: BTreeSet::new(),
        expiry_noticed: BTreeSet::new(),
        rng: seed(),
        opts,
        client,
        telemetry,
        enrollment,
        acked: Counters::default(),
        acked_cpu: own_cpu_time(),
        acked_at: Instant::now(),
        seq: 0,
        tls_noticed: Vec::new(),
        delivered: 0,
        refused_offers: BTreeSet::new(),
        current: 0,
        report: LinkReport::default(),
    };
    link.present_identity();
    let mut backoff = Duration::from_secs(1);
    let mut next_checkin = Instant::now();
    let mut next_findings = Instant::now() + FINDINGS_EVERY;
    let mut last_success = Instant::now();
    let mut last_alarm: Option<Instant> = None;
    while !stop.is_stopped() {
        let now = Instant::now();
        if now >= next_checkin {
            next_checkin = match link.cycle().await {
                Ok(wait) => {
                    backoff = Duration::from_secs(1);
                    last_success = Instant::now();
                    last_alarm = None;
                    now + wait
                }
                Err(e) => {
                    link.report.failed_checkins += 1;
                    link.notice_tls_refusal(&e);
                    let wait = backoff + Duration::from_millis(link.random(backoff.as_millis()));
                    tracing::warn!(error = %e, console = %link.url(), retry_in_ms = wait.as_millis() as u64, "fleet console");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    link.fail_over();
                    let failing = now.saturating_duration_since(last_success);
                    let alarm_due = last_alarm.is_none_or(|at| {
                        now.saturating_duration_since(at) >= link.opts.alarm_after
                    });
                    if failing >= link.opts.alarm_after && alarm_due {
                        link.report.alarms += 1;
                        last_alarm = Some(now);
                        link.telemetry.notice(format!(
                            "no check-in with the fleet console {} for {} s: content may be stale \
                             and findings wait on the host ({} queued); last error: {e}",
                            link.url(),
                            failing.as_secs(),
                            link.telemetry.pending()
                        ));
                    }
                    now + wait
                }
            };
            next_findings = Instant::now() + FINDINGS_EVERY;
        } else if now >= next_findings {
            if link.enrollment.is_some() && link.telemetry.pending() > 0 {
                link.upload_findings().await;
            }
            next_findings = now + FINDINGS_EVERY;
        }
        let until = next_checkin.min(next_findings);
        tokio::time::sleep(
            until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200)),
        )
        .await;
    }
    // A last try, so findings of the final seconds are not left behind.
    if link.enrollment.is_some() && link.telemetry.pending() > 0 {
        link.upload_findings().await;
    }
    link.report
}

impl Link {
    /// The console in use.
    fn url(&self) -> &str {
        match self.current.checked_sub(1) {
            Some(i) => self.opts.fallbacks.get(i).map_or(&self.opts.console, |u| u),
            None => &self.opts.console,
        }
    }

    /// Move to the next console of the fleet, if there is another.
    fn fail_over(&mut self) {
        if self.opts.fallbacks.is_empty() {
            return;
        }
        self.current = (self.current + 1) % (self.opts.fallbacks.len() + 1);
        tracing::warn!(console = %self.url(), "failing over to another console of the fleet");
        self.present_identity();
    }

    /// Connect to the console in use, with the agent's client certificate when it has one.
    fn present_identity(&mut self) {
        let identity = self.enrollment.as_ref().and_then(Enrollment::identity);
        if identity.is_none() && self.current == 0 && self.opts.fallbacks.is_empty() {
            return; // the client it started with
        }
        match Client::with_identity(self.url(), &self.opts.trust, identity.as_ref()) {
            Ok(c) => self.client = c,
            Err(e) => tracing::error!(error = %e, console = %self.url(),
                "cannot connect with the agent's client certificate"),
        }
    }

    /// Renew the client certificate in the second half of its life, over a connection that
    /// presents the current one. A failure is reported and tried again next cycle; the current
    /// certificate stays in use until it expires.
    async fn renew_if_due(&mut self) {
        let Some(enrollment) = self.enrollment.clone() else {
            return;
        };
        let (Some(tls), Some(identity)) = (enrollment.tls.clone(), enrollment.identity()) else {
            return;
        };
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        if !identity.wants_renewal(now) {
            return;
        }
        let renewed = async {
            let csr = ringfence_wire::tls::AgentIdentity::request_for(&tls.key_pem)
                .map_err(|e| e.to_string())?;
            let request = ringfence_wire::RenewRequest {
                protocol: PROTOCOL,
                agent_id: enrollment.agent_id.clone(),
                csr_pem: csr,
            };
            let answer = self
                .client
                .renew(&enrollment.credential, &request)
                .await
                .map_err(|e| e.to_string())?;
            ringfence_wire::tls::AgentIdentity::from_pem(&tls.key_pem, &answer.client_cert_pem)
                .map_err(|e| format!("the renewed certificate: {e}"))?;
            Ok::<String, String>(answer.client_cert_pem)
        }
        .await;
        match renewed {
            Ok(cert_pem) => {
                let mut saved = enrollment;
                saved.tls = Some(super::enrollment::TlsIdentity {
                    key_pem: tls.key_pem,
                    cert_pem,
                });
                if let Err(e) = saved.save(&self.opts.state_file) {
                    tracing::error!(error = %e, "cannot save the renewed client certificate");
                }
                self.enrollment = Some(saved);
                self.present_identity();
                tracing::info!("client certificate renewed");
            }
            Err(e) => {
                let line = format!(
                    "the agent's client certificate expires in {} h and could not be renewed: {e}",
                    identity.not_after().saturating_sub(now) / 3600
                );
                tracing::warn!("{line}");
                self.telemetry.notice(line);
            }
        }
    }

    /// Enroll if needed, check in, act on the answer. Returns the wait until the next check-in.
    async fn cycle(&mut self) -> Result<Duration, String> {
        if self.enrollment.is_none() {
            self.enroll().await?;
            self.present_identity();
        }
        self.renew_if_due().await;
        let Some(enrollment) = self.enrollment.clone() else {
            return Err("not enrolled".into());
        };
        let credential = enrollment.credential.clone();
        let counters = self.telemetry.counters();
        let cpu = own_cpu_time();
        let delta = counters.since(self.acked);
        let elapsed = self.acked_at.elapsed();
        let crashes = enrollment.unreported_crashes(self.opts.supervisor_crashes);
        let cpu_percent = 100.0 * cpu.saturating_sub(self.acked_cpu).as_secs_f64()
            / elapsed.as_secs_f64().max(1e-3);
        let count = |v: u64| Count::try_from(v).unwrap_or_default();
        let current = (self.opts.content_version)();
        self.seq += 1;
        let checkin = CheckIn {
            protocol: PROTOCOL,
            agent_id: enrollment.agent_id.clone(),
            seq: count(self.seq),
            agent_version: self.opts.agent_version.clone(),
            content_version: count(current),
            content: super::label_lossy(&(self.opts.content_label)()).ok(),
            health: Health {
                crashes: count(crashes),
                restarts: Count::ZERO,
                lkg_fallbacks: count(self.lkg_pending),
                cpu_percent: CpuPercent::try_from(cpu_percent.min(6400.0)).unwrap_or_default(),
                rss_bytes: count(
                    ringfence_sensor::proc_info::rss_bytes(std::process::id()).unwrap_or(0),
                ),
                events: count(delta.events),
                events_dropped: count(delta.dropped),
                findings: count(delta.findings),
                outputs_dropped: count(delta.output_drops),
                release_fallbacks: count(self.release_fallbacks_pending),
                interval_ms: count(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
            },
            tags: self.opts.tags.clone(),
            order_results: OrderResults::try_from(self.opts.orders.outgoing()).unwrap_or_default(),
            tuning: self.opts.tuning.clone(),
        };
        let response = match self.client.check_in(&enrollment.credential, &checkin).await {
            Ok(r) => r,
            Err(e) if matches!(e.status(), Some(401 | 403)) => {
                // Revoked, or a console that does not know this agent — or someone on the path
                // saying so. Forgetting the identity on one answer would let anyone blind the
                // agent; it is kept, reported, and retried with backoff. An operator who
                // revoked it enrolls the host again on purpose.
                return Err(format!(
                    "check-in refused ({e}); the agent keeps its identity {} and retries \
                     (if it was revoked, enroll this host again)",
                    enrollment.agent_id
                ));
            }
            Err(e) => return Err(format!("check-in: {e}")),
        };
        self.report.checkins += 1;
        self.opts.orders.acknowledged();
        if !response.orders.is_empty() {
            self.report.orders_received += response.orders.len() as u64;
            let refusals =
                self.opts
                    .orders
                    .submit(&response.orders, &enrollment.agent_id, unix_now());
            for line in refusals {
                self.telemetry.notice(line);
            }
        }
        self.acked = counters;
        self.acked_cpu = cpu;
        self.acked_at = Instant::now();
        self.lkg_pending = 0;
        self.release_fallbacks_pending = 0;
        if crashes > 0 {
            let mut saved = enrollment;
            saved.crashes_reported = self.opts.supervisor_crashes;
            if let Err(e) = saved.save(&self.opts.state_file) {
                tracing::warn!(error = %e, "cannot save the reported crash count");
            }
            self.enrollment = Some(saved);
        }
        self.take_offer(&response, current).await;
        if let Some(offer) = &response.release {
            self.take_release(offer, &credential).await;
        }
        self.notice_expired();
        self.upload_findings().await;
        let (interval, jitter) = response.bounded_interval();
        let jitter = self.random(u128::from(jitter));
        Ok(Duration::from_millis(interval.saturating_add(jitter)))
    }

    async fn enroll(&mut self) -> Result<(), String> {
        let Some(token) = self.opts.enroll_token.clone() else {
            return Err(format!(
                "not enrolled with {} and no enrollment token (`ringfence agent enroll`, \
                 --enroll-token-file or RINGFENCE_ENROLL_TOKEN)",
                self.url()
            ));
        };
        let who = super::enrollment::EnrollAs {
            console: self.url().to_owned(),
            ca_pins: self.opts.ca_pins.clone(),
            token,
            hostname: self.opts.hostname.clone(),
            agent_version: self.opts.agent_version.clone(),
            tags: self.opts.tags.clone(),
            state_file: self.opts.state_file.clone(),
            // Crashes before enrollment are this supervisor's business, not the console's.
            crashes_reported: self.opts.supervisor_crashes,
        };
        let enrollment = super::enrollment::enroll(&self.client, who).await?;
        tracing::info!(agent_id = %enrollment.agent_id, console = %self.url(), "enrolled");
        self.enrollment = Some(enrollment);
        Ok(())
    }

    /// Fetch and deliver the offered version when it is newer than what runs and was delivered.
    async fn take_offer(&mut self, response: &CheckInResponse, current: u64) {
        let Some(offer) = &response.content else {
            return;
        };
        if offer.version <= current.max(self.delivered)
            || self.refused_offers.contains(&offer.version)
        {
            return;
        }
        let path = self
            .opts
            .content_dir
            .join(format!("console-v{}.bundle", offer.version));
        if path.exists() {
            // Delivered by an earlier run; the content manager has it (or refused it).
            self.delivered = offer.version;
            return;
        }
        let fetched = match self.fetch(offer).await {
            Ok(bytes) => match self.verify_offer(offer.version, &bytes) {
                Ok(()) => Ok(bytes),
                Err(e) => {
                    self.refuse_offer(offer.version, &e);
                    return;
                }
            },
            Err(e) => Err(e),
        };
        match fetched {
            Ok(bytes) => match write_atomically(&path, &bytes) {
                Ok(()) => {
                    tracing::info!(
                        version = offer.version,
                        bytes = bytes.len(),
                        "content delivered"
                    );
                    self.delivered = offer.version;
                    self.report.bundles_delivered += 1;
                    prune_older(&self.opts.content_dir, current.min(offer.version));
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot write content")
                }
            },
            Err(e) => tracing::warn!(version = offer.version, error = %e, "content not fetched"),
        }
    }

    /// Install an offered agent release that is not the running version (see the module doc).
    async fn take_release(
        &mut self,
        offer: &ReleaseOffer,
        credential: &ringfence_wire::Credential,
    ) {
        let Some(delivery) = self.opts.releases.clone() else {
            return;
        };
        if offer.version == self.opts.agent_version
            || self
                .releases_done
                .contains(&offer.sha256.to_ascii_lowercase())
        {
            return;
        }
        let sha = offer.sha256.to_ascii_lowercase();
        let bytes = match self.fetch_release(offer, credential, &delivery).await {
            Ok(b) => b,
            Err(e) => {
                // Transport trouble is retried at the next check-in; a lying offer is refused.
                tracing::warn!(version = %offer.version, error = %e, "agent release not fetched");
                return;
            }
        };
        let installed = (|| {
            let root = crate::content::manager::current_root(&self.opts.content)
                .map_err(|e| format!("no trust root to verify it with: {e}"))?;
            let store = crate::versions::VersionStore::open(&delivery.versions_dir)
                .map_err(|e| e.to_string())?;
            let now = ringfence_content::UnixTime::now();
            let version = store
                .install_offered(&bytes, &root, now, false, delivery.base_binary.as_deref())
                .map_err(|e| e.to_string())?;
            if version != offer.version.as_str() {
                return Err(format!(
                    "the release is signed as version {version}, the offer said {}",
                    offer.version
                ));
            }
            store.activate(&version).map_err(|e| e.to_string())?;
            Ok(version)
        })();
        if self.releases_done.len() >= REFUSED_OFFERS {
            self.releases_done.pop_first();
        }
        self.releases_done.insert(sha);
        match installed {
            Ok(version) => {
                self.report.releases_installed += 1;
                tracing::warn!(
                    version = %version,
                    running = %self.opts.agent_version,
                    "agent release {version} installed on trial; the supervisor restarts the agent on it"
                );
            }
            Err(why) => {
                self.report.offers_refused += 1;
                let line = format!(
                    "agent release {} offered by the console {} refused: {why}; the agent keeps \
                     running {} and does not fetch it again",
                    offer.version, self.opts.console, self.opts.agent_version
                );
                tracing::error!("{line}");
                self.telemetry.notice(line);
            }
        }
    }

    async fn fetch_release(
        &self,
        offer: &ReleaseOffer,
        credential: &ringfence_wire::Credential,
        delivery: &ReleaseDelivery,
    ) -> Result<Vec<u8>, String> {
        if offer.size > delivery.max_bytes {
            return Err(format!(
                "offered release of {} bytes exceeds the {} an agent fetches",
                offer.size, delivery.max_bytes
            ));
        }
        let limit = usize::try_from(offer.size).unwrap_or(usize::MAX);
        let bytes = self
            .client
            .fetch_file(&offer.url, Some(credential.as_str()), limit)
            .await
            .map_err(|e| e.to_string())?;
        let digest = hex(&Sha256::digest(&bytes));
        if bytes.len() as u64 != offer.size || !digest.eq_ignore_ascii_case(&offer.sha256) {
            return Err(format!(
                "got {} bytes with SHA-256 {digest}, the offer said {} bytes, {}",
                bytes.len(),
                offer.size,
                offer.sha256
            ));
        }
        Ok(bytes.to_vec())
    }

    /// Raise each expired-metadata line once (the agent keeps running what it has).
    fn notice_expired(&mut self) {
        let now = ringfence_content::UnixTime::now();
        let state_dir = self.opts.content.state_dir();
        let lines = crate::expiry::expired(
            state_dir.as_deref(),
            self.opts
                .releases
                .as_ref()
                .map(|d| d.versions_dir.as_path()),
            now,
        );
        for line in lines {
            if self.expiry_noticed.insert(line.clone()) {
                tracing::error!("{line}");
                self.telemetry.notice(line);
            }
        }
    }

    /// Is `bytes` a bundle the content root vouches for, of the version offered?
    fn verify_offer(&self, version: u64, bytes: &[u8]) -> Result<(), String> {
        use ringfence_content::{SeenVersions, StructuralValidator, UnixTime, VerifyOptions};
        let root = crate::content::manager::current_root(&self.opts.content)
            .map_err(|e| format!("no content root to verify it with: {e}"))?;
        let verified = ringfence_content::verify_signed_bundle(
            bytes,
            &root,
            SeenVersions::default(),
            &VerifyOptions::new(UnixTime::now()),
            &StructuralValidator,
        )
        .map_err(|e| e.to_string())?;
        if verified.content_version != version {
            return Err(format!(
                "the bundle is version {}, the offer said {version}",
                verified.content_version
            ));
        }
        Ok(())
    }

    fn refuse_offer(&mut self, version: u64, why: &str) {
        self.report.offers_refused += 1;
        if self.refused_offers.len() >= REFUSED_OFFERS {
            self.refused_offers.pop_first();
        }
        self.refused_offers.insert(version);
        let line = format!(
            "content version {version} offered by the console {} refused: {why}; not fetched again",
            self.opts.console
        );
        tracing::error!("{line}");
        self.telemetry.notice(line);
    }

    async fn fetch(&self, offer: &ContentOffer) -> Result<Vec<u8>, String> {
        if offer.size > self.opts.max_bundle_bytes {
            return Err(format!(
                "offered bundle of {} bytes exceeds fleet.max_bundle_bytes ({})",
                offer.size, self.opts.max_bundle_bytes
            ));
        }
        let limit = usize::try_from(offer.size).unwrap_or(usize::MAX);
        let bytes = self
            .client
            .fetch_content(&offer.url, limit)
            .await
            .map_err(|e| e.to_string())?;
        if bytes.len() as u64 != offer.size {
            return Err(format!(
                "got {} bytes, the offer said {}",
                bytes.len(),
                offer.size
            ));
        }
        let digest = hex(&Sha256::digest(&bytes));
        if !digest.eq_ignore_ascii_case(&offer.sha256) {
            return Err(format!(
                "SHA-256 {digest} does not match the offer's {}",
                offer.sha256
            ));
        }
        Ok(bytes.to_vec())
    }

    /// Send waiting findings in batches until none are left or an upload fails.
    async fn upload_findings(&mut self) {
        let Some(enrollment) = self.enrollment.clone() else {
            return;
        };
        loop {
            let taken = self.telemetry.take_findings(limits::FINDINGS_PER_BATCH);
            if taken.is_empty() {
                return;
            }
            // Within the body limit, with room for the envelope; a finding too large to send
            // at all is counted as lost rather than retried forever.
            let mut batch = Vec::with_capacity(taken.len());
            let mut rest = Vec::new();
            let mut bytes = 1024usize;
            for f in taken {
                let size = serde_json::to_vec(&f).map_or(usize::MAX, |b| b.len() + 1);
                if size > limits::FINDING_BYTES {
                    self.telemetry.lost(1);
                } else if bytes + size > limits::FINDINGS_BYTES || !rest.is_empty() {
                    rest.push(f);
                } else {
                    bytes += size;
                    batch.push(f);
                }
            }
            if !rest.is_empty() {
                self.telemetry.return_findings(rest);
            }
            let n = batch.len() as u64;
            let findings = match Findings::try_from(batch) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(error = %e, "findings batch refused locally");
                    self.telemetry.lost(n);
                    continue;
                }
            };
            let upload = FindingsBatch {
                protocol: PROTOCOL,
                agent_id: enrollment.agent_id.clone(),
                findings,
            };
            match self
                .client
                .upload_findings(&enrollment.credential, &upload)
                .await
            {
                Ok(ack) if ack.accepted == n => self.report.findings_uploaded += n,
                Ok(ack) => {
                    // Not what was sent: keep them all (a duplicate upload is better than a
                    // finding dropped on a word nobody can check).
                    self.report.uploads_unacknowledged += 1;
                    tracing::warn!(
                        sent = n,
                        acknowledged = ack.accepted,
                        "findings upload acknowledged a different count; kept for later"
                    );
                    self.telemetry.return_findings(upload.findings.into());
                    return;
                }
                Err(e) => {
                    self.notice_tls_refusal(&e.to_string());
                    tracing::warn!(error = %e, findings = n, "findings upload failed; kept for later");
                    self.telemetry.return_findings(upload.findings.into());
                    return;
                }
            }
        }
    }

    /// A connection that failed its TLS checks is reported at once, not after
    /// `alarm_after`: on a pinned link it means something on the path is presenting another
    /// certificate or tampering with the stream. The same refusal at most once a minute.
    fn notice_tls_refusal(&mut self, error: &str) {
        if !error.contains(ringfence_wire::TLS_CHECKS_FAILED) {
            return;
        }
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        self.tls_noticed
            .retain(|(_, at)| now.saturating_duration_since(*at) < minute);
        if self.tls_noticed.iter().any(|(seen, _)| seen == error) {
            return;
        }
        if self.tls_noticed.len() >= 8 {
            self.tls_noticed.remove(0);
        }
        self.tls_noticed.push((error.to_owned(), now));
        self.telemetry.notice(format!(
            "possible interception of the fleet link: {error}; findings stay queued on the host \
             ({} waiting) and nothing from that connection was used",
            self.telemetry.pending()
        ));
    }

    /// A random number in `0..bound` (jitter; not for secrets).
    fn random(&mut self, bound: u128) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        u64::try_from(u128::from(z) % bound.max(1)).unwrap_or(0)
    }
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(nanos) ^ (u64::from(std::process::id()) << 32)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn own_cpu_time() -> Duration {
    ringfence_sensor::proc_info::cpu_time(std::process::id()).unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Write `bytes` to a hidden temporary file beside `path`, then rename it into place, so the
/// content manager never sees half a bundle.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.part"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Remove bundles this link delivered earlier that are older than `keep_from` (the content
/// store keeps its own copies of the active and last-known-good versions).
fn prune_older(dir: &Path, keep_from: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(version) = name
            .to_str()
            .and_then(|n| n.strip_prefix("console-v"))
            .and_then(|n| n.strip_suffix(".bundle"))
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        if version < keep_from {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_current_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "console-v1.bundle",
            "console-v2.bundle",
            "console-v3.bundle",
            "mine.bundle",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        prune_older(dir.path(), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["console-v2.bundle", "console-v3.bundle", "mine.bundle"]
        );
    }

    #[test]
    fn atomic_write_leaves_no_part_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console-v4.bundle");
        write_atomically(&path, b"bundle").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"bundle");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
