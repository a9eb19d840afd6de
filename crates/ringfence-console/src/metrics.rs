//! The console's own counters, its `/metrics` page (Prometheus text format) and the
//! middleware that feeds them: check-ins served and refused, logins, quota refusals, open
//! connections, internal errors (logged here with their route and cause), engine ticks.
//!
//! `/metrics` takes an operator (API token or session), like the rest of the operator API: a
//! console behind a load balancer cannot tell a scraper on loopback from anyone else, and the
//! figures (fleet size, rollout state) are not for the public.
//!
//! Log lines an outsider can cause (a refused check-in, a failed login) go through a
//! [`LogLimiter`]: a flood costs a few lines and one "suppressed" count per window, never the
//! disk.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::Operator;
use crate::error::{AppResult, ErrorDetail};
use crate::{AppState, on_db};

/// Upper bounds (seconds) of the check-in latency histogram.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Statuses a refused check-in or findings upload is counted under (anything else is "other").
const REFUSAL_STATUSES: [u16; 9] = [400, 401, 403, 413, 422, 429, 500, 503, 0];

/// Counters shared by every handler and the accept loop. All monotonic except the gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    pub checkins_served: AtomicU64,
    checkins_refused: [AtomicU64; REFUSAL_STATUSES.len()],
    pub findings_uploads_served: AtomicU64,
    findings_uploads_refused: [AtomicU64; REFUSAL_STATUSES.len()],
    /// Gauge: check-ins being handled now (waiting on the writer's commit, mostly).
    pub checkins_in_flight: AtomicI64,
    checkin_latency: [AtomicU64; LATENCY_BUCKETS.len()],
    checkin_latency_count: AtomicU64,
    checkin_latency_micros: AtomicU64,
    pub quota_refusals_checkin: AtomicU64,
    pub quota_refusals_findings: AtomicU64,
    pub logins_ok: AtomicU64,
    pub logins_failed: AtomicU64,
    /// Refused before any password check: backoff after failures (429).
    pub logins_throttled: AtomicU64,
    /// Refused because too many logins were already waiting for a password check (503).
    pub logins_busy: AtomicU64,
    /// Argon2 verifications run, for known and unknown names alike.
    pub argon2_verifications: AtomicU64,
    /// Gauge: connections open.
    pub connections_open: AtomicI64,
    pub connections_accepted: AtomicU64,
    /// Connections closed at accept because [`crate::MAX_CONNECTIONS`] were open.
    pub connections_refused: AtomicU64,
    pub internal_errors: AtomicU64,
    pub engine_ticks: AtomicU64,
    pub engine_ticks_failed: AtomicU64,
    /// Log lines about refused agent requests.
    pub refusal_log: LogLimiter,
    /// Log lines about failed logins.
    pub login_log: LogLimiter,
}

fn status_slot(status: StatusCode) -> usize {
    let s = status.as_u16();
    REFUSAL_STATUSES
        .iter()
        .position(|&x| x == s)
        .unwrap_or(REFUSAL_STATUSES.len() - 1)
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    fn observe_checkin(&self, elapsed: Duration) {
        // One bucket per observation; the page adds them up.
        let secs = elapsed.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            bump(&self.checkin_latency[i]);
        }
        bump(&self.checkin_latency_count);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // Saturating: a counter that wraps would lie.
        let _ =
            self.checkin_latency_micros
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_add(micros))
                });
    }

    /// Check-ins refused with `status` so far (for tests and the page).
    pub fn checkins_refused(&self, status: u16) -> u64 {
        REFUSAL_STATUSES
            .iter()
            .position(|&x| x == status)
            .map_or(0, |i| self.checkins_refused[i].load(Ordering::Relaxed))
    }

    /// The counters in Prometheus' text exposition format.
    pub fn render(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let statuses = |arr: &[AtomicU64; REFUSAL_STATUSES.len()]| -> Vec<(String, u64)> {
            REFUSAL_STATUSES
                .iter()
                .zip(arr)
                .map(|(s, c)| {
                    let s = if *s == 0 {
                        "other".to_owned()
                    } else {
                        s.to_string()
                    };
                    (format!("{{status=\"{s}\"}}"), get(c))
                })
                .collect()
        };
        let refused = statuses(&self.checkins_refused);
        let uploads_refused = statuses(&self.findings_uploads_refused);
        let mut emit = |name: &str, help: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        emit(
            "ringfence_checkins_served_total",
            "Check-ins stored and answered.",
            vec![(String::new(), get(&self.checkins_served))],
        );
        emit(
            "ringfence_checkins_refused_total",
            "Check-ins refused, by HTTP status.",
            refused,
        );
        emit(
            "ringfence_findings_uploads_served_total",
            "Findings uploads stored.",
            vec![(String::new(), get(&self.findings_uploads_served))],
        );
        emit(
            "ringfence_findings_uploads_refused_total",
            "Findings uploads refused, by HTTP status.",
            uploads_refused,
        );
        emit(
            "ringfence_quota_refusals_total",
            "Agent requests refused with 429 by the per-agent quotas.",
            vec![
                (
                    "{kind=\"checkin\"}".into(),
                    get(&self.quota_refusals_checkin),
                ),
                (
                    "{kind=\"findings\"}".into(),
                    get(&self.quota_refusals_findings),
                ),
            ],
        );
        emit(
            "ringfence_logins_total",
            "Dashboard logins, by outcome (throttled: 429 after failures; busy: 503, too many waiting).",
            vec![
                ("{result=\"ok\"}".into(), get(&self.logins_ok)),
                ("{result=\"failed\"}".into(), get(&self.logins_failed)),
                ("{result=\"throttled\"}".into(), get(&self.logins_throttled)),
                ("{result=\"busy\"}".into(), get(&self.logins_busy)),
            ],
        );
        emit(
            "ringfence_argon2_verifications_total",
            "Password verifications run (known and unknown names alike).",
            vec![(String::new(), get(&self.argon2_verifications))],
        );
        emit(
            "ringfence_connections_accepted_total",
            "Connections accepted.",
            vec![(String::new(), get(&self.connections_accepted))],
        );
        emit(
            "ringfence_connections_refused_total",
            "Connections closed at accept: the connection cap was reached.",
            vec![(String::new(), get(&self.connections_refused))],
        );
        emit(
            "ringfence_internal_errors_total",
            "Requests answered 500 (each logged with its route and cause).",
            vec![(String::new(), get(&self.internal_errors))],
        );
        emit(
            "ringfence_engine_ticks_total",
            "Rollout engine ticks, by outcome.",
            vec![
                ("{result=\"ok\"}".into(), get(&self.engine_ticks)),
                ("{result=\"failed\"}".into(), get(&self.engine_ticks_failed)),
            ],
        );
        emit(
            "ringfence_log_lines_suppressed_total",
            "Log lines about refused agent requests and failed logins left out by the log rate limit.",
            vec![
                (
                    "{log=\"refusals\"}".into(),
                    self.refusal_log.suppressed_total(),
                ),
                ("{log=\"logins\"}".into(), self.login_log.suppressed_total()),
            ],
        );
        let _ = writeln!(
            out,
            "# HELP ringfence_connections_open Connections open now.\n# TYPE ringfence_connections_open gauge\n\
             ringfence_connections_open {}",
            self.connections_open.load(Ordering::Relaxed).max(0)
        );
        let _ = writeln!(
            out,
            "# HELP ringfence_checkins_in_flight Check-ins being handled now (mostly waiting for the writer's commit).\n\
             # TYPE ringfence_checkins_in_flight gauge\nringfence_checkins_in_flight {}",
            self.checkins_in_flight.load(Ordering::Relaxed).max(0)
        );
        let _ = writeln!(
            out,
            "# HELP ringfence_checkin_seconds Time to answer a check-in, commit of its sample included.\n\
             # TYPE ringfence_checkin_seconds histogram"
        );
        let mut cumulative = 0u64;
        for (bound, c) in LATENCY_BUCKETS.iter().zip(&self.checkin_latency) {
            cumulative = cumulative.saturating_add(get(c));
            let _ = writeln!(
                out,
                "ringfence_checkin_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = get(&self.checkin_latency_count);
        let _ = writeln!(
            out,
            "ringfence_checkin_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             ringfence_checkin_seconds_sum {:.6}\nringfence_checkin_seconds_count {count}",
            get(&self.checkin_latency_micros) as f64 / 1e6
        );
    }
}

/// At most `PER_WINDOW` lines per window; the rest are counted, and the count is reported by
/// the first line of the next window that has one.
#[derive(Debug, Default)]
pub struct LogLimiter {
    window: Mutex<(Option<Instant>, u32, u64)>,
    suppressed: AtomicU64,
}

/// Lines allowed per [`LOG_WINDOW`].
pub const LOG_LINES_PER_WINDOW: u32 = 20;
/// The log limiter's window.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

impl LogLimiter {
    /// Whether to write a line now; `Some(n)` with the lines suppressed since the last one
    /// written, `None` to stay silent.
    pub fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut w = match self.window.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (start, lines, pending) = &mut *w;
        if start.is_none_or(|s| now.duration_since(s) >= LOG_WINDOW) {
            *start = Some(now);
            *lines = 0;
        }
        if *lines < LOG_LINES_PER_WINDOW {
            *lines += 1;
            Some(std::mem::take(pending))
        } else {
            *pending = pending.saturating_add(1);
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    pub fn suppressed_total(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

/// Every route: a 500 is logged here with its method, route and cause (the client saw only
/// "internal error").
pub async fn log_internal_errors(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |m| m.as_str().to_owned());
    let resp = next.run(req).await;
    if let Some(ErrorDetail::Internal(detail)) = resp.extensions().get::<ErrorDetail>() {
        bump(&metrics.internal_errors);
        tracing::error!(%method, %route, cause = %detail, "request failed: internal error");
    }
    resp
}

/// Which agent endpoint a [`count_agent_requests`] layer watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentEndpoint {
    Checkin,
    Findings,
}

/// The agent endpoints: served and refused counts, check-in latency, and a rate-limited log
/// line for each refusal with its status and reason.
pub async fn count_agent_requests(
    State((m, endpoint)): State<(Arc<Metrics>, AgentEndpoint)>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Parsed only if the request is refused, for the log line.
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    if endpoint == AgentEndpoint::Checkin {
        m.checkins_in_flight.fetch_add(1, Ordering::Relaxed);
    }
    let resp = next.run(req).await;
    let status = resp.status();
    let (served, refused) = match endpoint {
        AgentEndpoint::Checkin => {
            m.checkins_in_flight.fetch_sub(1, Ordering::Relaxed);
            m.observe_checkin(started.elapsed());
            (&m.checkins_served, &m.checkins_refused)
        }
        AgentEndpoint::Findings => (&m.findings_uploads_served, &m.findings_uploads_refused),
    };
    if status.is_success() {
        bump(served);
        return resp;
    }
    bump(&refused[status_slot(status)]);
    if let Some(suppressed) = m.refusal_log.allow() {
        let claimed = authorization
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|c| ringfence_wire::Credential::try_from(c.trim().to_owned()).ok())
            .map(|c| c.agent_id().to_string());
        let reason = match resp.extensions().get::<ErrorDetail>() {
            Some(ErrorDetail::Refused(r)) => r.as_str(),
            Some(ErrorDetail::Internal(_)) => "internal error",
            None => "",
        };
        let what = match endpoint {
            AgentEndpoint::Checkin => "check-in refused",
            AgentEndpoint::Findings => "findings upload refused",
        };
        tracing::warn!(
            status = status.as_u16(),
            reason = %ringfence_wire::printable(reason),
            claimed_agent = claimed.as_deref().unwrap_or("-"),
            suppressed_before = suppressed,
            "{what}"
        );
    }
    resp
}

/// A rollout state and how many rollouts are in it.
type StateCount = (String, i64);
/// The active rollout: id, current ring, state.
type ActiveRollout = (i64, i64, String);

/// `GET /metrics`: the counters, the rollouts by state and the database's round-trip time.
pub async fn get_metrics(State(state): State<AppState>, _op: Operator) -> AppResult<Response> {
    let mut out = String::with_capacity(8 * 1024);
    state.metrics.render(&mut out);
    let ping = Instant::now();
    let (by_state, active): (Vec<StateCount>, Vec<ActiveRollout>) = on_db!(&state.db, |pool| {
        let by_state = sqlx::query_as("SELECT state, COUNT(*) FROM rollouts GROUP BY state")
            .fetch_all(pool)
            .await?;
        let active =
            sqlx::query_as("SELECT id, current_ring, state FROM rollouts WHERE active IS NOT NULL")
                .fetch_all(pool)
                .await?;
        (by_state, active)
    });
    let db_secs = ping.elapsed().as_secs_f64();
    let _ = writeln!(
        out,
        "# HELP ringfence_rollouts Rollouts by state.\n# TYPE ringfence_rollouts gauge"
    );
    for (s, n) in &by_state {
        let _ = writeln!(
            out,
            "ringfence_rollouts{{state=\"{}\"}} {n}",
            label_value(s)
        );
    }
    let _ = writeln!(
        out,
        "# HELP ringfence_rollout_active_ring The ring the active rollout is at.\n# TYPE ringfence_rollout_active_ring gauge"
    );
    for (id, ring, s) in &active {
        let _ = writeln!(
            out,
            "ringfence_rollout_active_ring{{rollout=\"{id}\",state=\"{}\"}} {ring}",
            label_value(s)
        );
    }
    let _ = writeln!(
        out,
        "# HELP ringfence_db_query_seconds Time of this scrape's two rollout queries (a database round-trip probe).\n\
         # TYPE ringfence_db_query_seconds gauge\nringfence_db_query_seconds {db_secs:.6}"
    );
    let mut resp = out.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// A label value with `\`, `"` and newlines escaped as the text format wants.
fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_counts_what_it_suppresses() {
        let l = LogLimiter::default();
        for _ in 0..LOG_LINES_PER_WINDOW {
            assert_eq!(l.allow(), Some(0));
        }
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        assert_eq!(l.suppressed_total(), 2);
    }

    #[test]
    fn render_is_prometheus_text() {
        let m = Metrics::default();
        m.observe_checkin(Duration::from_millis(3));
        bump(&m.checkins_refused[status_slot(StatusCode::TOO_MANY_REQUESTS)]);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("ringfence_checkins_refused_total{status=\"429\"} 1"));
        assert!(out.contains("ringfence_checkin_seconds_bucket{le=\"0.005\"} 1"));
        assert!(out.contains("ringfence_checkin_seconds_bucket{le=\"0.001\"} 0"));
        assert!(out.contains("ringfence_checkin_seconds_count 1"));
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap_or(("", "x"));
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
