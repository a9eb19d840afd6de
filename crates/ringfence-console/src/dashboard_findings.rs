//! The dashboard's findings pages: the list (filters, grouping, keyset pages, bulk triage),
//! one finding (what happened in a sentence, the process tree, ATT&CK, the rule, triage and its
//! history, the host's other findings around it, the raw event) and one host (versions, health
//! over a day, its findings, its orders). Triage forms send the same JSON API as the CLI, with
//! the session cookie and the CSRF header (the dashboard's script).

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;
use crate::clock::Millis;
use crate::dashboard::{Layout, ago, health_of, render, session, tags_of, utc};
use crate::finding_view::{self, Attack, Proc, RuleText};
use crate::findings::{self, CLOSE_REASONS, Finding, GroupBy, ListQuery, MAX_BULK, STATUSES};
use crate::svg;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/findings", get(findings_page))
        .route("/findings/{id}", get(finding_page))
        .route("/agents/{id}", get(host_page))
        .route("/exceptions", get(exceptions_page))
}

/// An exception as the exceptions page lists it.
struct ExceptionRow {
    id: i64,
    state: String,
    rule: String,
    finding: Option<i64>,
    on: String,
    when: String,
    comment: String,
    created_by: String,
    approved_by: Option<String>,
    published_version: Option<i64>,
}

#[derive(Template)]
#[template(path = "exceptions.html")]
struct ExceptionsPage {
    layout: Layout,
    rows: Vec<ExceptionRow>,
    approved: usize,
}

async fn exceptions_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let op = match session(&state, &headers).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let all = match crate::exceptions::list(&state, None).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let rows = all
        .into_iter()
        .map(|e| ExceptionRow {
            on: if e.hosts.is_empty() {
                "every host".into()
            } else {
                e.hosts.join(", ")
            },
            when: if e.fields.is_empty() {
                "always".into()
            } else {
                e.fields
                    .iter()
                    .map(|(k, v)| format!("{k} = {}", v.join(" | ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            },
            id: e.id,
            state: e.state,
            rule: e.rule,
            finding: e.finding,
            comment: e.comment,
            created_by: e.created_by,
            approved_by: e.approved_by,
            published_version: e.published_version,
        })
        .collect::<Vec<_>>();
    render(&ExceptionsPage {
        layout: Layout::new("Exceptions", "Exceptions", &op),
        approved: rows.iter().filter(|r| r.state == "approved").count(),
        rows,
    })
}

const HOUR: Millis = 3_600_000;
/// Rows per dashboard page.
const DASHBOARD_PAGE: i64 = 50;

/// A finding as a table row shows it.
struct Row {
    id: i64,
    agent_id: String,
    host: String,
    received: String,
    severity: &'static str,
    status: String,
    status_words: String,
    sentence: String,
    technique: String,
    assignee: String,
    rule: Option<String>,
}

fn status_words(f: &Finding) -> String {
    match &f.close_reason {
        Some(r) if f.status == "closed" => format!("closed · {}", r.replace('_', " ")),
        _ => f.status.clone(),
    }
}

fn row(f: &Finding) -> Row {
    let body: serde_json::Value = serde_json::from_str(&f.body).unwrap_or_default();
    let host = if f.hostname.is_empty() {
        f.agent_id.chars().take(12).collect()
    } else {
        f.hostname.clone()
    };
    Row {
        id: f.id,
        agent_id: f.agent_id.clone(),
        received: utc(f.received_at),
        severity: findings::severity_word(f.severity_rank()),
        status: f.status.clone(),
        status_words: status_words(f),
        sentence: finding_view::sentence(&body, &host),
        host,
        technique: f.technique.clone().unwrap_or_default(),
        assignee: f.assignee.clone().unwrap_or_default(),
        rule: f.rule.clone(),
    }
}

/// Percent-encode a query value.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query string that selects `q`'s filter (and grouping), plus `extra`.
fn query_string(q: &ListQuery, extra: &[(&str, String)]) -> String {
    let mut parts: Vec<String> = [
        ("status", &q.status),
        ("severity", &q.severity),
        ("rule", &q.rule),
        ("agent", &q.agent),
        ("host", &q.host),
        ("technique", &q.technique),
        ("since", &q.since),
        ("until", &q.until),
        ("last", &q.last),
        ("group", &q.group),
    ]
    .iter()
    .filter_map(|(k, v)| {
        v.as_deref()
            .filter(|v| !v.is_empty())
            .map(|v| format!("{k}={}", enc(v)))
    })
    .collect();
    for (k, v) in extra {
        parts.push(format!("{k}={}", enc(v)));
    }
    parts.join("&")
}

struct GroupRow {
    label: String,
    href: String,
    count: i64,
    matches: i64,
    first: String,
    last: String,
}

#[derive(Template)]
#[template(path = "findings.html")]
struct FindingsPage {
    layout: Layout,
    filter: findings::Filter,
    filter_json: String,
    statuses: [&'static str; 3],
    severities: [&'static str; 5],
    reasons: [&'static str; 4],
    lasts: [(&'static str, &'static str); 6],
    last: String,
    group: &'static str,
    groups: Vec<GroupRow>,
    rows: Vec<Row>,
    next_href: Option<String>,
    max_bulk: usize,
}

impl FindingsPage {
    fn sel_status(&self, s: &str) -> bool {
        self.filter.status.as_deref() == Some(s)
    }
    fn sel_severity(&self, s: &str) -> bool {
        self.filter.severity.as_deref() == Some(s)
    }
    fn sel_last(&self, s: &str) -> bool {
        self.last == s
    }
    fn sel_group(&self, s: &str) -> bool {
        self.group == s
    }
}

async fn findings_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let op = match session(&state, &headers).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let mut p = match q.parse(state.clock.now_ms()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if q.limit.is_none() {
        p.limit = DASHBOARD_PAGE;
    }
    let mut groups = Vec::new();
    let mut rows = Vec::new();
    let mut next_href = None;
    if let Some(by) = p.group {
        let found = match findings::groups(&state, by, &p.filter).await {
            Ok(g) => g,
            Err(e) => return e.into_response(),
        };
        for g in found {
            let key = match by {
                GroupBy::Rule => "rule",
                GroupBy::Host => "agent",
                GroupBy::Technique => "technique",
            };
            let mut narrowed = q.clone();
            narrowed.group = None;
            narrowed.cursor = None;
            let href = format!(
                "/findings?{}",
                query_string(&narrowed, &[(key, g.key.clone())])
            );
            let label = if g.label.is_empty() {
                if g.key.is_empty() {
                    "(none)".to_owned()
                } else {
                    g.key.clone()
                }
            } else {
                g.label.clone()
            };
            groups.push(GroupRow {
                label,
                href,
                count: g.count,
                matches: g.matches,
                first: utc(g.first_seen),
                last: utc(g.last_seen),
            });
        }
    } else {
        let (found, next) = match findings::page(&state, &p).await {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
        rows = found.iter().map(row).collect();
        next_href = next.map(|c| {
            format!(
                "/findings?{}",
                query_string(&q, &[("cursor", c.to_string())])
            )
        });
    }
    let filter_json = serde_json::to_string(&p.filter).unwrap_or_else(|_| "{}".into());
    render(&FindingsPage {
        layout: Layout::new("Findings", "Findings", &op),
        filter: p.filter,
        filter_json,
        statuses: STATUSES,
        severities: findings::SEVERITIES,
        reasons: CLOSE_REASONS,
        lasts: [
            ("", "any time"),
            ("1h", "last hour"),
            ("24h", "last 24 hours"),
            ("7d", "last 7 days"),
            ("30d", "last 30 days"),
            ("90d", "last 90 days"),
        ],
        last: q.last.clone().unwrap_or_default(),
        group: p.group.map_or("", GroupBy::as_str),
        groups,
        rows,
        next_href,
        max_bulk: MAX_BULK,
    })
}

struct HistoryRow {
    at: String,
    actor: String,
    decision: String,
    why: String,
}

#[derive(Template)]
#[template(path = "finding.html")]
struct FindingPage {
    layout: Layout,
    f: Row,
    close_reason: Option<String>,
    comment: Option<String>,
    tags: Vec<String>,
    event_time: Option<String>,
    count: u64,
    tree: Vec<Proc>,
    tree_svg: String,
    tactics: Vec<Attack>,
    techniques: Vec<Attack>,
    rule: RuleText,
    statuses: [&'static str; 3],
    reasons: [&'static str; 4],
    history: Vec<HistoryRow>,
    around: Vec<Row>,
    raw: String,
    draft: ExceptionDraft,
}

/// The "make an exception" form of a finding page, prefilled from the finding: its rule, its
/// host, and the fields an exception usually narrows on.
struct ExceptionDraft {
    rule: String,
    host: String,
    /// (field, value) the finding carries, each offered as a condition.
    fields: Vec<(&'static str, String)>,
}

/// Fields offered as conditions of an exception made from a finding.
const DRAFT_FIELDS: [&str; 4] = [
    "process.executable",
    "process.command_line",
    "user.name",
    "process.parent.executable",
];

fn draft(body: &serde_json::Value, host: &str) -> ExceptionDraft {
    let fields = DRAFT_FIELDS
        .iter()
        .filter_map(|f| {
            let v = finding_view::text(body, f)?;
            // A value an exception could not carry whole is not offered (it would never match).
            (v.len() <= crate::exceptions::MAX_VALUE_BYTES).then_some((*f, v))
        })
        .collect();
    ExceptionDraft {
        rule: finding_view::text(body, "rule.id").unwrap_or_default(),
        host: finding_view::text(body, "host.name").unwrap_or_else(|| host.to_owned()),
        fields,
    }
}

impl FindingPage {
    fn sel_status(&self, s: &str) -> bool {
        self.f.status == s
    }
    fn sel_reason(&self, s: &str) -> bool {
        self.close_reason.as_deref() == Some(s)
    }
}

async fn finding_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let op = match session(&state, &headers).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let f = match findings::get(&state, id).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let (history, around) = match (
        findings::history(&state, id).await,
        findings::around(&state, &f, HOUR).await,
    ) {
        (Ok(h), Ok(a)) => (h, a),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let body: serde_json::Value = serde_json::from_str(&f.body).unwrap_or_default();
    let tree = finding_view::ancestry(&body);
    let (tactics, techniques) = finding_view::attack(&body);
    let raw = serde_json::to_string_pretty(&body).unwrap_or_else(|_| f.body.clone());
    let history = history
        .iter()
        .map(|e| {
            let ev: serde_json::Value = serde_json::from_str(&e.evidence).unwrap_or_default();
            HistoryRow {
                at: utc(e.at),
                actor: e.actor.clone(),
                decision: e.decision.clone(),
                why: ev["why"].as_str().unwrap_or("").chars().take(500).collect(),
            }
        })
        .collect();
    let r = row(&f);
    render(&FindingPage {
        layout: Layout::new(format!("Finding {id}"), "Findings", &op),
        close_reason: f.close_reason.clone(),
        comment: f.comment.clone(),
        tags: f.tag_list().into_iter().map(str::to_owned).collect(),
        event_time: finding_view::text(&body, "@timestamp"),
        count: body["ringfence"]["finding"]["count"].as_u64().unwrap_or(1),
        tree_svg: svg::tree_svg(&tree),
        tree,
        tactics,
        techniques,
        rule: finding_view::rule(&body),
        statuses: STATUSES,
        reasons: CLOSE_REASONS,
        history,
        around: around.iter().map(row).collect(),
        raw,
        draft: draft(&body, &r.host),
        f: r,
    })
}

#[derive(Template)]
#[template(path = "host.html")]
struct HostPage {
    layout: Layout,
    a: crate::agents::AgentRow,
    health: &'static str,
    health_word: &'static str,
    last_seen: String,
    enrolled: String,
    tags: String,
    health_svg: String,
    checkins: Vec<[String; 9]>,
    findings_svg: String,
    findings: Vec<Row>,
    orders: Vec<[String; 6]>,
    /// What the agent reports tuned locally (agent.toml `[detect]`).
    local_tuning: ringfence_wire::LocalTuning,
    /// The exceptions its content's overlay applies on this host.
    content_exceptions: Vec<[String; 4]>,
    /// The eBPF sensor's profile and hook per kind, as its last check-in reported them.
    sensor_hooks: ringfence_wire::SensorHooks,
    /// Open posture findings of this host ([`crate::posture`]).
    posture: Vec<crate::posture::HostWeakness>,
    /// Its inventory as last sent ([`crate::inventory`]), summed up.
    inventory: Option<InventorySummary>,
}

/// A host's inventory on its page: when it came, what it counts, what listens, and the
/// packages (the whole list is `GET /api/v1/agents/{id}/inventory`).
struct InventorySummary {
    updated: String,
    counts: Vec<(&'static str, usize)>,
    listening: Vec<[String; 2]>,
    packages: Vec<String>,
}

/// Most listeners and packages the host page lists.
const INVENTORY_LISTED: usize = 200;

fn inventory_summary(h: crate::inventory::HostInventory) -> InventorySummary {
    let inv = h.inventory;
    InventorySummary {
        updated: utc(h.updated_at),
        counts: vec![
            ("packages", inv.packages.len()),
            ("listening sockets", inv.listening.len()),
            ("users", inv.users.len()),
            ("groups", inv.groups.len()),
            ("kernel modules", inv.kernel_modules.len()),
            ("systemd units", inv.systemd_units.len()),
            ("cron entries", inv.cron.len()),
        ],
        listening: inv
            .listening
            .iter()
            .take(INVENTORY_LISTED)
            .map(|s| [s.address.clone(), s.process.clone().unwrap_or_default()])
            .collect(),
        packages: inv
            .packages
            .iter()
            .take(INVENTORY_LISTED)
            .map(|p| format!("{} {}", p.name, p.version))
            .collect(),
    }
}

async fn host_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let op = match session(&state, &headers).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let now = state.clock.now_ms();
    let a = match agent(&state, &id).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return crate::error::AppError::NotFound(format!("no agent {id}")).into_response();
        }
        Err(e) => return e.into_response(),
    };
    let since = (now - now.rem_euclid(HOUR)) - 23 * HOUR;
    let page = findings::Page {
        filter: findings::Filter {
            agent: Some(a.id.clone()),
            ..findings::Filter::default()
        },
        cursor: None,
        limit: 20,
        group: None,
    };
    let (checkins, timeline, found, orders) = match (
        checkins_of(&state, &a.id, since).await,
        findings::timeline(&state, Some(&a.id), since, HOUR, 24).await,
        findings::page(&state, &page).await,
        crate::orders::list(&state, Some(&a.id), 50).await,
    ) {
        (Ok(c), Ok(t), Ok(f), Ok(o)) => (c, t, f.0, o),
        (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => {
            return e.into_response();
        }
    };
    let posture = match crate::posture::host(&state, &a.id).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let inventory = match crate::inventory::host(&state, &a.id).await {
        Ok(i) => i.map(inventory_summary),
        Err(e) => return e.into_response(),
    };
    let (health, health_word) = health_of(&a, now, 3 * state.config.checkin_interval_ms);
    let local_tuning = match local_tuning_of(&state, &a.id).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let sensor_hooks = match sensor_hooks_of(&state, &a.id).await {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let content_exceptions = crate::exceptions::carried_by(&state, a.content_version, &a.hostname)
        .await
        .into_iter()
        .map(|e| {
            let scope = if e.hosts.is_empty() {
                "every host".to_owned()
            } else {
                e.hosts.join(", ")
            };
            let when = if e.fields.is_empty() {
                "always".to_owned()
            } else {
                e.fields
                    .iter()
                    .map(|(k, v)| format!("{k} = {}", v.join(" | ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            [e.rule, scope, when, e.comment]
        })
        .collect();
    let points: Vec<svg::HealthPoint> = checkins
        .iter()
        .map(|c| svg::HealthPoint {
            at: c.0,
            cpu: c.2,
            crashes: c.6,
            lkg: c.7,
            drops: c.5,
        })
        .collect();
    render(&HostPage {
        layout: Layout::new(a.hostname.clone(), "Fleet", &op),
        health,
        health_word,
        last_seen: ago(now, a.last_seen),
        enrolled: utc(a.enrolled_at),
        tags: tags_of(&a),
        health_svg: svg::health_svg(since, 24 * HOUR, &points),
        checkins: checkins
            .iter()
            .take(30)
            .map(|c| {
                [
                    utc(c.0),
                    format!("v{}", c.1),
                    format!("{:.1}%", c.2),
                    format!("{:.0} MiB", c.3 as f64 / 1_048_576.0),
                    c.4.to_string(),
                    c.5.to_string(),
                    c.6.to_string(),
                    c.7.to_string(),
                    c.8.to_string(),
                ]
            })
            .collect(),
        findings_svg: svg::timeline_svg("findings per hour by severity", since, HOUR, &timeline),
        findings: found.iter().map(row).collect(),
        orders: orders
            .iter()
            .map(|o| {
                [
                    utc(o.created_at),
                    o.action.to_string(),
                    o.requested_by.clone(),
                    o.reason.clone(),
                    o.state.clone(),
                    o.detail.chars().take(300).collect(),
                ]
            })
            .collect(),
        local_tuning,
        content_exceptions,
        sensor_hooks,
        posture,
        inventory,
        a,
    })
}

/// What agent `id` last reported tuned locally (empty when nothing, or unreadable).
async fn local_tuning_of(
    state: &AppState,
    id: &str,
) -> crate::error::AppResult<ringfence_wire::LocalTuning> {
    let row: Option<(Option<String>,)> = crate::on_db!(&state.db, |pool| {
        sqlx::query_as("SELECT tuning FROM agent_state WHERE agent_id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?
    });
    Ok(row
        .and_then(|(t,)| t)
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

/// The sensor hooks agent `id` last reported (empty when none, or unreadable: parsing the
/// stored JSON bounds it again).
async fn sensor_hooks_of(
    state: &AppState,
    id: &str,
) -> crate::error::AppResult<ringfence_wire::SensorHooks> {
    let row: Option<(Option<String>,)> = crate::on_db!(&state.db, |pool| {
        sqlx::query_as("SELECT sensor_hooks FROM agent_state WHERE agent_id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?
    });
    Ok(row
        .and_then(|(t,)| t)
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

/// One agent as the fleet page lists it.
async fn agent(
    state: &AppState,
    id: &str,
) -> crate::error::AppResult<Option<crate::agents::AgentRow>> {
    Ok(crate::on_db!(&state.db, |pool| {
        sqlx::query_as::<_, crate::agents::AgentRow>(
            "SELECT a.id, a.hostname, a.enrolled_at, s.last_seen, s.agent_version, s.content_version, s.content, s.region, \
             s.industry, s.environment, s.custom_tags, s.tz_offset, s.cpu, s.rss, s.crashes_total, s.lkg_total, \
             s.drops_total, s.events_total, s.findings_total, s.checkins \
             FROM agents a JOIN agent_state s ON s.agent_id = a.id WHERE a.id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await?
    }))
}

/// An agent's check-ins since `since`, newest first (at most 1,500: a day at one a minute):
/// at, content version, cpu, rss, events, drops, crashes, fallbacks, findings.
type CheckinRow = (Millis, i64, f64, i64, i64, i64, i64, i64, i64);

async fn checkins_of(
    state: &AppState,
    agent: &str,
    since: Millis,
) -> crate::error::AppResult<Vec<CheckinRow>> {
    Ok(crate::on_db!(&state.db, |pool| {
        sqlx::query_as(
            "SELECT at, content_version, cpu, rss, events, drops, crashes + restarts, lkg, findings FROM checkins \
             WHERE agent_id = $1 AND at >= $2 ORDER BY at DESC LIMIT 1500",
        )
        .bind(agent)
        .bind(since)
        .fetch_all(pool)
        .await?
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(enc("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        let q = ListQuery {
            rule: Some("Shell & more".into()),
            status: Some(String::new()),
            ..ListQuery::default()
        };
        assert_eq!(
            query_string(&q, &[("cursor", "5.6".into())]),
            "rule=Shell%20%26%20more&cursor=5.6"
        );
    }
}
