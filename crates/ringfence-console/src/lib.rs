//! Ringfence's fleet console: enrollment, check-ins, signed content as static files, grayscale
//! rollouts with health gates and automatic rollback, and a server-rendered dashboard.
//!
//! [`app`] builds the whole HTTP surface from an [`AppState`]; tests drive it with `oneshot`
//! and [`serve`] runs it on a socket. The process keeps no state of its own beyond caches of
//! database rows ([`snapshot`], the agent credential cache), so several consoles can share one
//! PostgreSQL behind a load balancer: check-ins go to any of them, and the rollout engine's
//! state changes are guarded by a revision so that exactly one console acts on each decision.
//!
//! Time comes from a [`clock::Clock`], so tests step it by hand and fleet drills ([`drill`])
//! run hours of bake time in seconds.
#![forbid(unsafe_code)]

pub mod agents;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod content;
pub mod dashboard;
pub mod dashboard_findings;
pub mod db;
pub mod drill;
pub mod error;
pub mod finding_view;
pub mod findings;
pub mod gate;
pub mod ingest;
pub mod metrics;
pub mod mtls;
pub mod operators;
pub mod orders;
pub mod plan;
pub mod quota;
pub mod releases;
pub mod retention;
pub mod revoke;
pub mod roles;
pub mod rollout;
pub mod snapshot;
pub mod stats;
pub mod svg;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

pub use crate::clock::{AcceleratedClock, Clock, ManualClock, SharedClock, SystemClock};
pub use crate::db::Db;
pub use crate::error::{AppError, AppResult};

use crate::agents::CredentialCache;
use crate::content::{OpaqueCopy, Republisher};
use crate::ingest::Ingest;
use crate::snapshot::{Snapshot, SnapshotCell};
use ringfence_wire::OrderKey;

/// Console settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where signed bundles are kept and served from.
    pub content_dir: PathBuf,
    /// How often agents are told to check in (clock milliseconds).
    pub checkin_interval_ms: clock::Millis,
    /// Random extra delay agents add, up to this.
    pub checkin_jitter_ms: clock::Millis,
    /// Dashboard session lifetime.
    pub session_ttl_ms: clock::Millis,
    /// Mark the session cookie `Secure` (behind HTTPS).
    pub secure_cookies: bool,
    /// Signs response orders; a console without one makes an ephemeral key (tests, drills),
    /// which no agent has pinned.
    pub order_key: Option<Arc<OrderKey>>,
    /// Issues agents' client certificates (mutual TLS); none on a plain-HTTP console.
    pub client_ca: Option<Arc<ringfence_wire::tls::ConsoleCa>>,
    /// Per-agent check-in quota ([`quota`]).
    pub checkin_quota: quota::Quota,
    /// Per-agent findings quota, in findings ([`quota`]).
    pub findings_quota: quota::Quota,
    /// What is kept, and for how long ([`retention`]).
    pub retention: retention::Retention,
}

impl Config {
    pub fn new(content_dir: impl Into<PathBuf>) -> Config {
        Config {
            content_dir: content_dir.into(),
            checkin_interval_ms: 60_000,
            checkin_jitter_ms: 6_000,
            session_ttl_ms: 12 * 3_600_000,
            secure_cookies: false,
            order_key: None,
            client_ca: None,
            checkin_quota: quota::Quota::CHECKINS,
            findings_quota: quota::Quota::FINDINGS,
            retention: retention::Retention::default(),
        }
    }
}

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub clock: SharedClock,
    pub config: Arc<Config>,
    pub snapshot: Arc<SnapshotCell>,
    pub credentials: Arc<CredentialCache>,
    pub ingest: Ingest,
    pub republisher: Arc<dyn Republisher>,
    /// Agents with pending response orders (see [`orders`]).
    pub orders: Arc<orders::PendingOrders>,
    /// Signs the orders check-in responses carry.
    pub order_key: Arc<OrderKey>,
    /// The console's counters (`/metrics`).
    pub metrics: Arc<metrics::Metrics>,
    /// Per-agent token buckets.
    pub quotas: Arc<quota::AgentQuotas>,
    /// Login verifiers and backoff.
    pub logins: Arc<auth::LoginLimits>,
    /// Operator API tokens checked recently (dropped when `fleet.revision` moves).
    pub operator_tokens: Arc<auth::TokenCache>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("db", &self.db.engine())
            .field("config", &self.config)
            .finish()
    }
}

impl AppState {
    /// Build the state on an open database and load the first snapshot. Starts the check-in
    /// writer task, so call it inside a tokio runtime.
    pub async fn new(db: Db, clock: SharedClock, config: Config) -> AppResult<AppState> {
        let order_key = match &config.order_key {
            Some(k) => k.clone(),
            None => Arc::new(OrderKey::generate().map_err(AppError::internal)?),
        };
        let quotas = Arc::new(quota::AgentQuotas::new(
            config.checkin_quota,
            config.findings_quota,
            config.checkin_interval_ms,
        ));
        let state = AppState {
            order_key,
            ingest: Ingest::start(db.clone()),
            db,
            clock,
            config: Arc::new(config),
            snapshot: Arc::new(SnapshotCell::default()),
            credentials: Arc::new(CredentialCache::default()),
            republisher: Arc::new(OpaqueCopy),
            orders: Arc::new(orders::PendingOrders::default()),
            metrics: Arc::new(metrics::Metrics::default()),
            quotas,
            logins: Arc::new(auth::LoginLimits::default()),
            operator_tokens: Arc::new(auth::TokenCache::default()),
        };
        state.reload_snapshot().await?;
        state.orders.reload(&state.db).await?;
        Ok(state)
    }

    /// Use another way to republish content on rollback (re-signing with the content keys).
    pub fn with_republisher(mut self, r: Arc<dyn Republisher>) -> AppState {
        self.republisher = r;
        self
    }

    /// Keep findings, check-ins and the audit log as `r` says.
    pub fn with_retention(mut self, r: retention::Retention) -> AppState {
        Arc::make_mut(&mut self.config).retention = r;
        self
    }

    /// Reload the check-in snapshot from the database.
    pub async fn reload_snapshot(&self) -> AppResult<()> {
        let s = Snapshot::load(&self.db).await?;
        self.snapshot.set(s);
        Ok(())
    }

    /// Reload the snapshot (and the agents with pending orders) if another console changed
    /// something.
    pub async fn refresh_if_changed(&self) -> AppResult<()> {
        let (rev, orders_rev): (i64, i64) = on_db!(&self.db, |pool| {
            sqlx::query_as("SELECT revision, orders_revision FROM fleet WHERE id = 1")
                .fetch_one(pool)
                .await?
        });
        if rev != self.snapshot.get().revision {
            self.reload_snapshot().await?;
            // The revision also moves when an agent or an operator token is revoked, or an
            // operator's role changes: look every credential up again.
            self.credentials.clear();
            self.operator_tokens.clear();
        }
        if orders_rev != self.orders.revision() {
            self.orders.reload(&self.db).await?;
        }
        Ok(())
    }
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    use axum::middleware::from_fn_with_state;
    use metrics::AgentEndpoint;
    use ringfence_wire::{limits, paths};
    let counted = |endpoint| {
        from_fn_with_state(
            (state.metrics.clone(), endpoint),
            metrics::count_agent_requests,
        )
    };
    let agent_api = Router::new()
        .route(paths::ENROLL, post(agents::enroll))
        .route(paths::RENEW, post(mtls::renew))
        .merge(
            Router::new()
                .route(paths::CHECKIN, post(agents::checkin))
                .layer(counted(AgentEndpoint::Checkin)),
        )
        .layer(DefaultBodyLimit::max(
            limits::CHECKIN_BYTES.max(limits::ENROLL_BYTES),
        ))
        .merge(
            Router::new()
                .route(paths::FINDINGS, post(agents::findings))
                .layer(counted(AgentEndpoint::Findings))
                .layer(DefaultBodyLimit::max(limits::FINDINGS_BYTES)),
        );
    let operator_api = Router::new()
        .route(
            "/api/v1/enrollment-tokens",
            post(agents::post_enrollment_token).get(revoke::get_tokens),
        )
        .route(
            "/api/v1/enrollment-tokens/{id}/revoke",
            post(revoke::post_token_revoke),
        )
        .route("/api/v1/agents", get(agents::get_agents))
        .route(
            "/api/v1/agents/{agent_id}/revoke",
            post(revoke::post_agent_revoke),
        )
        .route("/api/v1/agents/{agent_id}/orders", post(orders::post_order))
        .route(
            "/api/v1/agents/{agent_id}/tags",
            put(agents::put_agent_tags),
        )
        .route(
            "/api/v1/orders",
            get(orders::get_orders).post(approvals::post_fleet_order),
        )
        .route("/api/v1/approvals", get(approvals::get_approvals))
        .route(
            "/api/v1/approvals/{id}/approve",
            post(approvals::post_approve),
        )
        .route(
            "/api/v1/approvals/{id}/reject",
            post(approvals::post_reject),
        )
        .route(
            "/api/v1/operators",
            get(operators::get_operators).post(operators::post_operator),
        )
        .route("/api/v1/operators/{name}/role", post(operators::post_role))
        .route(
            "/api/v1/tokens",
            get(operators::get_tokens).post(operators::post_token),
        )
        .route(
            "/api/v1/tokens/{id}/revoke",
            post(operators::post_token_revoke),
        )
        .route("/api/v1/fleet", get(agents::get_fleet))
        .route("/api/v1/findings", get(findings::get_findings))
        .route("/api/v1/findings/groups", get(findings::get_groups))
        .route("/api/v1/findings/bulk", post(findings::post_bulk))
        .route(
            "/api/v1/findings/{id}",
            get(findings::get_finding).patch(findings::patch_finding),
        )
        .route("/api/v1/content", get(content::get_content_list))
        .route(
            "/api/v1/rollouts",
            get(rollout::get_rollouts).post(rollout::post_rollout),
        )
        .route("/api/v1/rollouts/{id}", get(rollout::get_rollout))
        .route("/api/v1/rollouts/{id}/{action}", post(rollout::post_action))
        .route("/api/v1/audit", get(audit::get_audit))
        .route("/metrics", get(metrics::get_metrics))
        .layer(DefaultBodyLimit::max(256 * 1024))
        .route("/api/v1/releases", get(releases::get_releases))
        .merge(
            Router::new()
                .route("/api/v1/content/{version}", put(content::put_content))
                .layer(DefaultBodyLimit::max(content::MAX_BUNDLE_BYTES)),
        )
        .merge(
            Router::new()
                .route("/api/v1/releases/{version}", put(releases::put_release))
                .layer(DefaultBodyLimit::max(releases::MAX_RELEASE_BYTES)),
        );
    Router::new()
        .merge(agent_api)
        .merge(operator_api)
        .route("/content/{file}", get(content::serve_file))
        .route("/releases/{file}", get(releases::serve_file))
        .route("/healthz", get(|| async { "ok" }))
        .merge(dashboard::router())
        // Every route's role, checked in one place (see `roles`).
        .layer(from_fn_with_state(state.clone(), roles::enforce))
        .layer(from_fn_with_state(
            state.metrics.clone(),
            metrics::log_internal_errors,
        ))
        .with_state(state)
}

/// Run the rollout engine: one [`rollout::tick`] every `period` of real time, plus the
/// snapshot refresh that lets several consoles share a database. Returns when `stop` fires.
pub async fn run_engine(
    state: AppState,
    period: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut swept_at: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        if swept_at.is_none_or(|t| t.elapsed() >= retention::EVERY) {
            swept_at = Some(std::time::Instant::now());
            match retention::enforce(&state, &state.config.retention).await {
                Ok(swept) if swept != retention::Swept::default() => {
                    tracing::info!(?swept, "retention deleted old rows");
                }
                Ok(_) => {}
                // Loud: without retention the database grows until the disk is full.
                Err(e) => tracing::error!(error = %e, "retention pass failed: old rows are kept"),
            }
        }
        if let Err(e) = state.refresh_if_changed().await {
            tracing::error!(error = %e, "snapshot refresh failed: check-ins answer from the last one");
        }
        let m = &state.metrics;
        match rollout::tick(&state).await {
            Ok(rollout::TickOutcome::Idle | rollout::TickOutcome::Waiting { .. }) => {
                m.engine_ticks
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(outcome) => {
                m.engine_ticks
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(?outcome, "rollout engine decided");
            }
            Err(e) => {
                m.engine_ticks_failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Loud: a rollout whose gates are not evaluated neither advances nor rolls back.
                tracing::error!(error = %e, "rollout engine tick failed: rollouts are not evaluated");
            }
        }
    }
}

/// A console running on a socket.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    /// Whether it serves HTTPS.
    pub tls: bool,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    engine: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Base URL, `https://addr` (or `http://addr` for a plain loopback console).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stop serving and stop the engine; waits for in-flight requests.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        let _ = self.engine.await;
        match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Connections served at once; one more is closed at accept (a flood of idle sockets cannot
/// take the console's memory or file descriptors).
pub const MAX_CONNECTIONS: usize = 8192;
/// Time a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's headers once it starts, and the longest a kept-alive
/// connection may sit idle before its next request.
const HEADER_TIMEOUT: Duration = Duration::from_secs(15);

/// Bind `listen` and serve [`app`] over plain HTTP with the engine ticking every
/// `engine_period`. Only on a loopback address: tests, drills and benchmarks.
pub async fn serve(
    state: AppState,
    listen: SocketAddr,
    engine_period: Duration,
) -> std::io::Result<Running> {
    if !listen.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("plain HTTP is served only on a loopback address, not {listen}"),
        ));
    }
    serve_with(state, listen, engine_period, None).await
}

/// Bind `listen` and serve [`app`] over HTTPS with `tls` ([`ringfence_wire::tls::ConsoleTls`]).
pub async fn serve_tls(
    state: AppState,
    listen: SocketAddr,
    engine_period: Duration,
    tls: Arc<ringfence_wire::tls::ServerConfig>,
) -> std::io::Result<Running> {
    serve_with(state, listen, engine_period, Some(tls)).await
}

async fn serve_with(
    state: AppState,
    listen: SocketAddr,
    engine_period: Duration,
    tls: Option<Arc<ringfence_wire::tls::ServerConfig>>,
) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let engine = tokio::spawn(run_engine(state.clone(), engine_period, stop_rx.clone()));
    let router = app(state.clone());
    let is_tls = tls.is_some();
    let acceptor = tls.map(ringfence_wire::tls::TlsAcceptor::from);
    tracing::info!(
        %addr,
        tls = is_tls,
        database = state.db.engine(),
        max_connections = MAX_CONNECTIONS,
        engine_period_ms = u64::try_from(engine_period.as_millis()).unwrap_or(u64::MAX),
        "console listening"
    );
    let server = tokio::spawn(accept_loop(
        listener,
        router,
        acceptor,
        stop_rx,
        state.metrics.clone(),
    ));
    Ok(Running {
        addr,
        state,
        tls: is_tls,
        stop,
        server,
        engine,
    })
}

/// Accept connections until `stop`, each on its own task, at most [`MAX_CONNECTIONS`] at once;
/// then let the open ones finish their requests (10 s at most).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<ringfence_wire::tls::TlsAcceptor>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    metrics: Arc<metrics::Metrics>,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics
                .connections_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(suppressed) = metrics.refusal_log.allow() {
                tracing::warn!(
                    max = MAX_CONNECTIONS,
                    suppressed_before = suppressed,
                    "connection refused: too many open"
                );
            }
            continue;
        };
        let slot = ConnectionSlot::open(permit, metrics.clone());
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let watcher = graceful.watcher();
        match tls.clone() {
            Some(acceptor) => {
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            // The agent a verified client certificate names, for every request
                            // on this connection.
                            let agent = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(ringfence_wire::tls::agent_in_cert);
                            let tls_peer = mtls::Peer::Tls { agent };
                            serve_connection(stream, peer, tls_peer, router, watcher).await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
            None => {
                tokio::spawn(async move {
                    let _slot = slot;
                    serve_connection(tcp, peer, mtls::Peer::Plain, router, watcher).await;
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => {}
    }
    Ok(())
}

/// One open connection: its place under the cap, counted in the metrics while it lives.
struct ConnectionSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    metrics: Arc<metrics::Metrics>,
}

impl ConnectionSlot {
    fn open(permit: tokio::sync::OwnedSemaphorePermit, metrics: Arc<metrics::Metrics>) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        metrics.connections_accepted.fetch_add(1, Relaxed);
        metrics.connections_open.fetch_add(1, Relaxed);
        ConnectionSlot {
            _permit: permit,
            metrics,
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.metrics
            .connections_open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    tls_peer: mtls::Peer,
    router: Router,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Each request carries the client's address (login backoff keys on it) and what its
    // client certificate says (agents' mutual TLS).
    let tower = hyper_util::service::TowerToHyperService::new(router);
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            req.extensions_mut().insert(tls_peer.clone());
            hyper::service::Service::call(&tower, req)
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
