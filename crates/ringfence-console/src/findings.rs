//! Findings as operators work them: filters, keyset pages, grouping, the triage state (status,
//! close reason, assignee, tags, comment) and its audit trail, and the API over them.
//!
//! Pages are keyset pages on `(received_at, id)`, newest first: the cursor is the last row's
//! pair, so a page costs the same at the millionth finding as at the first, and a flooding agent
//! cannot push another's findings out of reach (filter by host, or page on). Every page size and
//! every bulk change is bounded. Every triage change is written to the audit log with who, when
//! and why, tied to its finding ([`history`]).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::auth::Operator;
use crate::clock::Millis;
use crate::error::{AppError, AppResult};
use crate::{AppState, on_db};

/// Triage statuses.
pub const STATUSES: [&str; 3] = ["open", "acknowledged", "closed"];
/// Why a closed finding was closed.
pub const CLOSE_REASONS: [&str; 4] = [
    "false_positive",
    "duplicate",
    "true_positive",
    "benign_positive",
];
/// Severity words, by rank (1 = informational … 5 = critical).
pub const SEVERITIES: [&str; 5] = ["informational", "low", "medium", "high", "critical"];
/// Rows per page unless asked otherwise, and the most a page holds.
pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 1000;
/// Most findings one bulk change touches; the answer says whether more matched.
pub const MAX_BULK: usize = 10_000;
/// Most groups a grouping answers with.
pub const MAX_GROUPS: i64 = 200;

const MAX_ASSIGNEE: usize = 64;
const MAX_TAGS: usize = 16;
const MAX_TAG: usize = 32;
const MAX_COMMENT: usize = 2000;
const MAX_WHY: usize = 500;
const MAX_FILTER_TEXT: usize = 256;

/// The rank of a stored severity (the agent's `event.severity` number or a Sigma level word),
/// 0 when unknown.
pub fn severity_rank(s: Option<&str>) -> u8 {
    match s.map(str::trim).unwrap_or("") {
        "1" | "informational" | "info" => 1,
        "2" | "low" => 2,
        "3" | "medium" => 3,
        "4" | "high" => 4,
        "5" | "critical" => 5,
        _ => 0,
    }
}

/// The word for a rank ("unknown" for 0).
pub fn severity_word(rank: u8) -> &'static str {
    usize::from(rank)
        .checked_sub(1)
        .and_then(|i| SEVERITIES.get(i))
        .copied()
        .unwrap_or("unknown")
}

/// Most matches one finding may say it folded together (`ringfence.finding.count`): sums over
/// any number of findings stay far from `i64::MAX`.
pub const MAX_FOLDED: i64 = 1_000_000_000;

/// How many matches an agent folded into `finding` (1 when it does not say), bounded by
/// [`MAX_FOLDED`].
pub fn folded_matches(finding: &serde_json::Map<String, serde_json::Value>) -> i64 {
    finding
        .get("ringfence")
        .and_then(|r| r.get("finding"))
        .and_then(|f| f.get("count"))
        .and_then(serde_json::Value::as_u64)
        .map_or(1, |n| {
            i64::try_from(n).unwrap_or(i64::MAX).clamp(1, MAX_FOLDED)
        })
}

/// One stored finding with its triage state.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Finding {
    pub id: i64,
    pub agent_id: String,
    /// The agent's host name at enrollment ("" for an agent no longer known).
    pub hostname: String,
    pub received_at: Millis,
    pub rule: Option<String>,
    pub severity: Option<String>,
    pub status: String,
    pub close_reason: Option<String>,
    pub assignee: Option<String>,
    /// Comma separated.
    pub tags: String,
    pub comment: Option<String>,
    pub technique: Option<String>,
    /// Matches the agent folded into it.
    pub matches: i64,
    pub body: String,
}

impl Finding {
    pub fn severity_rank(&self) -> u8 {
        severity_rank(self.severity.as_deref())
    }

    pub fn tag_list(&self) -> Vec<&str> {
        self.tags.split(',').filter(|t| !t.is_empty()).collect()
    }
}

const COLS: &str = "f.id, f.agent_id, COALESCE(a.hostname, '') AS hostname, f.received_at, f.rule, \
                    f.severity, f.status, f.close_reason, f.assignee, f.tags, f.comment, f.technique, f.matches, f.body";
const FROM: &str = "findings f LEFT JOIN agents a ON a.id = f.agent_id";

/// Which findings: every field optional, all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// A severity word; also matches the agent's number for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// An agent id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// A host name (every agent enrolled under it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// An ATT&CK technique id, `T1059.004`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technique: Option<String>,
    /// Received at or after (milliseconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Millis>,
    /// Received before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Millis>,
}

/// A filter, cursor and page size as a query string gives them: every field text, empty
/// meaning unset (what an HTML form sends), checked by [`ListQuery::parse`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    pub status: Option<String>,
    pub severity: Option<String>,
    pub rule: Option<String>,
    pub agent: Option<String>,
    pub host: Option<String>,
    pub technique: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// A duration back from now (`24h`, `7d`), instead of `since`.
    pub last: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<String>,
    /// Grouping: `rule`, `host` or `technique`.
    pub group: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn text_field(field: &str, v: &Option<String>) -> AppResult<Option<String>> {
    match given(v) {
        None => Ok(None),
        Some(s) if s.len() > MAX_FILTER_TEXT || s.chars().any(char::is_control) => {
            Err(AppError::BadRequest(format!(
                "{field}: at most {MAX_FILTER_TEXT} bytes, no control characters"
            )))
        }
        Some(s) => Ok(Some(s.to_owned())),
    }
}

fn ms_field(field: &str, v: &Option<String>) -> AppResult<Option<Millis>> {
    given(v)
        .map(|s| {
            s.parse::<Millis>().map_err(|_| {
                AppError::BadRequest(format!(
                    "{field}: {s:?} is not milliseconds since the epoch"
                ))
            })
        })
        .transpose()
}

/// A page position: the last row's `(received_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub received_at: Millis,
    pub id: i64,
}

impl Cursor {
    pub fn parse(s: &str) -> AppResult<Cursor> {
        let bad =
            || AppError::BadRequest(format!("cursor: {s:?} is not a cursor this console gave"));
        let (t, id) = s.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            received_at: t.parse().map_err(|_| bad())?,
            id: id.parse().map_err(|_| bad())?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.received_at, self.id)
    }
}

/// How to group findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Rule,
    Host,
    Technique,
}

impl GroupBy {
    pub fn parse(s: &str) -> AppResult<GroupBy> {
        match s {
            "rule" => Ok(GroupBy::Rule),
            "host" => Ok(GroupBy::Host),
            "technique" => Ok(GroupBy::Technique),
            other => Err(AppError::BadRequest(format!(
                "group: {other:?} is not rule, host or technique"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Rule => "rule",
            GroupBy::Host => "host",
            GroupBy::Technique => "technique",
        }
    }
}

/// A checked [`ListQuery`].
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub filter: Filter,
    pub cursor: Option<Cursor>,
    pub limit: i64,
    pub group: Option<GroupBy>,
}

impl ListQuery {
    pub fn parse(&self, now: Millis) -> AppResult<Page> {
        let status = text_field("status", &self.status)?;
        if let Some(s) = &status
            && !STATUSES.contains(&s.as_str())
        {
            return Err(AppError::BadRequest(format!(
                "status: {s:?} is not one of {}",
                STATUSES.join(", ")
            )));
        }
        let severity = text_field("severity", &self.severity)?;
        if let Some(s) = &severity
            && severity_rank(Some(s)) == 0
        {
            return Err(AppError::BadRequest(format!(
                "severity: {s:?} is not one of {}",
                SEVERITIES.join(", ")
            )));
        }
        let mut since = ms_field("since", &self.since)?;
        if let Some(last) = given(&self.last) {
            let d = crate::plan::parse_duration(last)
                .map_err(|e| AppError::BadRequest(format!("last: {e}")))?;
            since = Some(now.saturating_sub(d));
        }
        let limit = match given(&self.limit) {
            None => DEFAULT_PAGE,
            Some(s) => s
                .parse::<i64>()
                .map_err(|_| AppError::BadRequest(format!("limit: {s:?} is not a number")))?
                .clamp(1, MAX_PAGE),
        };
        Ok(Page {
            filter: Filter {
                status,
                severity,
                rule: text_field("rule", &self.rule)?,
                agent: text_field("agent", &self.agent)?,
                host: text_field("host", &self.host)?,
                technique: text_field("technique", &self.technique)?,
                since,
                until: ms_field("until", &self.until)?,
            },
            cursor: given(&self.cursor).map(Cursor::parse).transpose()?,
            limit,
            group: given(&self.group).map(GroupBy::parse).transpose()?,
        })
    }
}

/// A bound value.
#[derive(Debug, Clone)]
enum Arg {
    Int(i64),
    Text(String),
}

/// A `WHERE` clause with `$N` placeholders and its values.
#[derive(Debug, Default)]
struct Where {
    conds: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    fn of(f: &Filter) -> Where {
        let mut w = Where::default();
        if let Some(s) = &f.status {
            let p = w.arg(Arg::Text(s.clone()));
            w.conds.push(format!("f.status = {p}"));
        }
        if let Some(s) = &f.severity {
            let rank = severity_rank(Some(s));
            let (a, b) = (
                w.arg(Arg::Text(rank.to_string())),
                w.arg(Arg::Text(severity_word(rank).to_owned())),
            );
            w.conds.push(format!("f.severity IN ({a}, {b})"));
        }
        if let Some(s) = &f.rule {
            let p = w.arg(Arg::Text(s.clone()));
            w.conds.push(format!("f.rule = {p}"));
        }
        if let Some(s) = &f.agent {
            let p = w.arg(Arg::Text(s.clone()));
            w.conds.push(format!("f.agent_id = {p}"));
        }
        if let Some(s) = &f.host {
            let p = w.arg(Arg::Text(s.clone()));
            w.conds.push(format!(
                "f.agent_id IN (SELECT id FROM agents WHERE hostname = {p})"
            ));
        }
        if let Some(s) = &f.technique {
            let p = w.arg(Arg::Text(s.to_ascii_uppercase()));
            w.conds.push(format!("f.technique = {p}"));
        }
        if let Some(t) = f.since {
            let p = w.arg(Arg::Int(t));
            w.conds.push(format!("f.received_at >= {p}"));
        }
        if let Some(t) = f.until {
            let p = w.arg(Arg::Int(t));
            w.conds.push(format!("f.received_at < {p}"));
        }
        w
    }

    fn sql(&self) -> String {
        if self.conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conds.join(" AND "))
        }
    }
}

/// Bind every [`Arg`] of `$args` to `$q` in order.
macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Int(v) => q.bind(*v),
                Arg::Text(s) => q.bind(s.clone()),
            };
        }
        q
    }};
}

/// One page of findings, newest first, and the cursor of the next page if there is one.
pub async fn page(state: &AppState, p: &Page) -> AppResult<(Vec<Finding>, Option<Cursor>)> {
    let mut w = Where::of(&p.filter);
    if let Some(c) = p.cursor {
        let (t, id) = (w.arg(Arg::Int(c.received_at)), w.arg(Arg::Int(c.id)));
        // The first term bounds the index range on both engines (PostgreSQL does not range-scan
        // the OR alone: a page in the middle of a million findings took 230 ms, not 6).
        w.conds.push(format!(
            "f.received_at <= {t} AND (f.received_at < {t} OR f.id < {id})"
        ));
    }
    let limit = p.limit.clamp(1, MAX_PAGE);
    let lim = w.arg(Arg::Int(limit + 1));
    let sql = format!(
        "SELECT {COLS} FROM {FROM}{} ORDER BY f.received_at DESC, f.id DESC LIMIT {lim}",
        w.sql()
    );
    let mut rows: Vec<Finding> = on_db!(&state.db, |pool| {
        bind_args!(sqlx::query_as::<_, Finding>(&sql), &w.args)
            .fetch_all(pool)
            .await?
    });
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|f| Cursor {
            received_at: f.received_at,
            id: f.id,
        })
    } else {
        None
    };
    Ok((rows, next))
}

/// One finding.
pub async fn get(state: &AppState, id: i64) -> AppResult<Finding> {
    let sql = format!("SELECT {COLS} FROM {FROM} WHERE f.id = $1");
    let row: Option<Finding> = on_db!(&state.db, |pool| {
        sqlx::query_as::<_, Finding>(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await?
    });
    row.ok_or_else(|| AppError::NotFound(format!("no finding {id}")))
}

/// The other findings of the same agent within `window_ms` of `f`, newest first (at most 50).
pub async fn around(state: &AppState, f: &Finding, window_ms: Millis) -> AppResult<Vec<Finding>> {
    let sql = format!(
        "SELECT {COLS} FROM {FROM} WHERE f.agent_id = $1 AND f.received_at >= $2 AND f.received_at <= $3 \
         AND f.id <> $4 ORDER BY f.received_at DESC, f.id DESC LIMIT 50"
    );
    Ok(on_db!(&state.db, |pool| {
        sqlx::query_as::<_, Finding>(&sql)
            .bind(&f.agent_id)
            .bind(f.received_at.saturating_sub(window_ms))
            .bind(f.received_at.saturating_add(window_ms))
            .bind(f.id)
            .fetch_all(pool)
            .await?
    }))
}

/// One group of findings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    /// What the group filters on (`rule`, `agent` or `technique` value).
    pub key: String,
    /// What a person reads (the host name for a host group).
    pub label: String,
    /// Findings in the group.
    pub count: i64,
    /// Matches they stand for (the agent folds repeats into one finding).
    pub matches: i64,
    pub first_seen: Millis,
    pub last_seen: Millis,
}

/// Findings under `filter` grouped, largest groups first (at most [`MAX_GROUPS`]).
pub async fn groups(state: &AppState, by: GroupBy, filter: &Filter) -> AppResult<Vec<Group>> {
    let w = Where::of(filter);
    // Grouped on the bare column, so the (column, received_at, id) index answers the counts and
    // times without reading the findings themselves; agents are joined only for host names.
    let column = match by {
        GroupBy::Rule => "f.rule",
        GroupBy::Host => "f.agent_id",
        GroupBy::Technique => "f.technique",
    };
    let sql = format!(
        "SELECT COALESCE({column}, '') AS k, CAST(COUNT(*) AS BIGINT), CAST(SUM(f.matches) AS BIGINT), MIN(f.received_at), \
         MAX(f.received_at) FROM findings f{} GROUP BY {column} \
         ORDER BY COUNT(*) DESC, MAX(f.received_at) DESC LIMIT {MAX_GROUPS}",
        w.sql()
    );
    let rows: Vec<(String, i64, i64, Millis, Millis)> = on_db!(&state.db, |pool| {
        bind_args!(sqlx::query_as(&sql), &w.args)
            .fetch_all(pool)
            .await?
    });
    // Host names for a host grouping, looked up for the groups shown only.
    let mut names = std::collections::HashMap::new();
    if by == GroupBy::Host && !rows.is_empty() {
        let mut q = Where::default();
        let list: Vec<String> = rows.iter().map(|r| q.arg(Arg::Text(r.0.clone()))).collect();
        let sql = format!(
            "SELECT id, hostname FROM agents WHERE id IN ({})",
            list.join(", ")
        );
        let found: Vec<(String, String)> = on_db!(&state.db, |pool| {
            bind_args!(sqlx::query_as(&sql), &q.args)
                .fetch_all(pool)
                .await?
        });
        names.extend(found);
    }
    Ok(rows
        .into_iter()
        .map(|(key, count, matches, first_seen, last_seen)| Group {
            label: if by == GroupBy::Host {
                names.get(&key).cloned().unwrap_or_default()
            } else {
                key.clone()
            },
            key,
            count,
            matches,
            first_seen,
            last_seen,
        })
        .collect())
}

/// Findings received per `bucket_ms` from `since`, per severity rank (index 0 unknown … 5
/// critical): `buckets` rows.
pub async fn timeline(
    state: &AppState,
    agent: Option<&str>,
    since: Millis,
    bucket_ms: Millis,
    buckets: usize,
) -> AppResult<Vec<[i64; 6]>> {
    let bucket_ms = bucket_ms.max(1);
    let rows: Vec<(i64, Option<String>, i64)> = on_db!(&state.db, |pool| {
        sqlx::query_as(
            "SELECT (received_at - $1) / $2 AS b, severity, CAST(COUNT(*) AS BIGINT) FROM findings \
             WHERE received_at >= $1 AND ($3 IS NULL OR agent_id = $3) GROUP BY b, severity",
        )
        .bind(since)
        .bind(bucket_ms)
        .bind(agent)
        .fetch_all(pool)
        .await?
    });
    let mut out = vec![[0i64; 6]; buckets];
    for (b, sev, n) in rows {
        if let Some(slot) = usize::try_from(b).ok().and_then(|b| out.get_mut(b)) {
            let r = usize::from(severity_rank(sev.as_deref()));
            slot[r] = slot[r].saturating_add(n);
        }
    }
    Ok(out)
}

/// A triage change: the fields given are set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Needed when closing; cleared when a finding is opened or acknowledged again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
    /// An operator name; empty to unassign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// Replaces the tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Why: kept in the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

fn check_text(field: &str, s: &str, max: usize, newlines: bool) -> AppResult<()> {
    if s.chars().count() > max {
        return Err(AppError::BadRequest(format!(
            "{field}: at most {max} characters"
        )));
    }
    let refused =
        |c: char| !(newlines && c == '\n') && (c.is_control() || ringfence_wire::is_hidden_char(c));
    if s.chars().any(refused) {
        return Err(AppError::BadRequest(format!(
            "{field}: control, bidi and invisible characters are refused"
        )));
    }
    Ok(())
}

/// The state a change leads to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Triage {
    pub status: String,
    pub close_reason: Option<String>,
    pub assignee: Option<String>,
    pub tags: String,
    pub comment: Option<String>,
}

impl Change {
    /// Check every field; refuse a change that sets nothing.
    pub fn check(&self) -> AppResult<()> {
        if let Some(s) = &self.status
            && !STATUSES.contains(&s.as_str())
        {
            return Err(AppError::BadRequest(format!(
                "status: {s:?} is not one of {}",
                STATUSES.join(", ")
            )));
        }
        if let Some(r) = &self.close_reason {
            if !CLOSE_REASONS.contains(&r.as_str()) {
                return Err(AppError::BadRequest(format!(
                    "close_reason: {r:?} is not one of {}",
                    CLOSE_REASONS.join(", ")
                )));
            }
            if self.status.as_deref() != Some("closed") {
                return Err(AppError::BadRequest(
                    "close_reason: given only with status \"closed\"".into(),
                ));
            }
        }
        if self.status.as_deref() == Some("closed") && self.close_reason.is_none() {
            return Err(AppError::BadRequest(format!(
                "close_reason: closing needs one of {}",
                CLOSE_REASONS.join(", ")
            )));
        }
        if let Some(a) = &self.assignee {
            check_text("assignee", a, MAX_ASSIGNEE, false)?;
        }
        if let Some(tags) = &self.tags {
            if tags.len() > MAX_TAGS {
                return Err(AppError::BadRequest(format!("tags: at most {MAX_TAGS}")));
            }
            for t in tags {
                if t.is_empty()
                    || t.len() > MAX_TAG
                    || !t
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.:-/".contains(&b))
                {
                    return Err(AppError::BadRequest(format!(
                        "tags: {t:?} must be 1 to {MAX_TAG} of A-Z a-z 0-9 _ . : - /"
                    )));
                }
            }
        }
        if let Some(c) = &self.comment {
            check_text("comment", c, MAX_COMMENT, true)?;
        }
        if let Some(w) = &self.why {
            check_text("why", w, MAX_WHY, true)?;
        }
        if self.status.is_none()
            && self.assignee.is_none()
            && self.tags.is_none()
            && self.comment.is_none()
        {
            return Err(AppError::BadRequest(
                "nothing to change: give status, assignee, tags or comment".into(),
            ));
        }
        Ok(())
    }

    /// `from` with this change applied.
    pub fn apply(&self, from: &Triage) -> Triage {
        let mut to = from.clone();
        if let Some(s) = &self.status {
            to.status = s.clone();
            to.close_reason = self.close_reason.clone();
        }
        if let Some(a) = &self.assignee {
            to.assignee = (!a.trim().is_empty()).then(|| a.trim().to_owned());
        }
        if let Some(t) = &self.tags {
            let mut t = t.clone();
            t.sort();
            t.dedup();
            to.tags = t.join(",");
        }
        if let Some(c) = &self.comment {
            to.comment = (!c.trim().is_empty()).then(|| c.clone());
        }
        to
    }

    /// What the audit log's `decision` says.
    fn decision(&self, to: &Triage) -> String {
        let mut parts = Vec::new();
        if self.status.is_some() {
            parts.push(match &to.close_reason {
                Some(r) => format!("{} ({r})", to.status),
                None => to.status.clone(),
            });
        }
        if self.assignee.is_some() {
            parts.push(format!(
                "assigned to {}",
                to.assignee.as_deref().unwrap_or("nobody")
            ));
        }
        if self.tags.is_some() {
            parts.push(format!("tags [{}]", to.tags));
        }
        if self.comment.is_some() {
            parts.push("comment".into());
        }
        parts.join(", ")
    }
}

/// Apply `change` to finding `id` as `actor`, and audit it.
pub async fn triage(state: &AppState, id: i64, change: &Change, actor: &str) -> AppResult<Finding> {
    change.check()?;
    let now = state.clock.now_ms();
    on_db!(&state.db, |pool| {
        let mut tx = pool.begin().await?;
        let from: Option<Triage> = sqlx::query_as::<_, Triage>(
            "SELECT status, close_reason, assignee, tags, comment FROM findings WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(from) = from else {
            return Err(AppError::NotFound(format!("no finding {id}")));
        };
        let to = change.apply(&from);
        sqlx::query(
            "UPDATE findings SET status = $1, close_reason = $2, assignee = $3, tags = $4, comment = $5 WHERE id = $6",
        )
        .bind(&to.status)
        .bind(&to.close_reason)
        .bind(&to.assignee)
        .bind(&to.tags)
        .bind(&to.comment)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let evidence = serde_json::json!({"from": from, "to": to, "why": change.why});
        sqlx::query(
            "INSERT INTO audit (at, actor, rollout_id, action, decision, evidence, finding_id) VALUES ($1, $2, NULL, 'finding.triage', $3, $4, $5)",
        )
        .bind(now)
        .bind(actor)
        .bind(change.decision(&to))
        .bind(evidence.to_string())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    });
    get(state, id).await
}

/// What a bulk change did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulkResult {
    pub changed: u64,
    /// More findings matched than one bulk change touches ([`MAX_BULK`]): send it again.
    pub more: bool,
}

/// Apply `change` to the newest findings under `filter` (at most [`MAX_BULK`]), one audit entry
/// per finding.
pub async fn bulk(
    state: &AppState,
    filter: &Filter,
    change: &Change,
    actor: &str,
) -> AppResult<BulkResult> {
    change.check()?;
    let now = state.clock.now_ms();
    let w = Where::of(filter);
    let sql = format!(
        "SELECT f.id, f.status, f.close_reason, f.assignee, f.tags, f.comment FROM {FROM}{} \
         ORDER BY f.received_at DESC, f.id DESC LIMIT {}",
        w.sql(),
        MAX_BULK + 1
    );
    type Row = (
        i64,
        String,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
    );
    let changed = on_db!(&state.db, |pool| {
        let mut tx = pool.begin().await?;
        let mut rows: Vec<Row> = bind_args!(sqlx::query_as(&sql), &w.args)
            .fetch_all(&mut *tx)
            .await?;
        let more = rows.len() > MAX_BULK;
        rows.truncate(MAX_BULK);
        for (id, status, close_reason, assignee, tags, comment) in &rows {
            let from = Triage {
                status: status.clone(),
                close_reason: close_reason.clone(),
                assignee: assignee.clone(),
                tags: tags.clone(),
                comment: comment.clone(),
            };
            let to = change.apply(&from);
            if to == from {
                continue;
            }
            sqlx::query(
                "UPDATE findings SET status = $1, close_reason = $2, assignee = $3, tags = $4, comment = $5 WHERE id = $6",
            )
            .bind(&to.status)
            .bind(&to.close_reason)
            .bind(&to.assignee)
            .bind(&to.tags)
            .bind(&to.comment)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let evidence =
                serde_json::json!({"from": from, "to": to, "why": change.why, "bulk": filter});
            sqlx::query(
                "INSERT INTO audit (at, actor, rollout_id, action, decision, evidence, finding_id) VALUES ($1, $2, NULL, 'finding.triage', $3, $4, $5)",
            )
            .bind(now)
            .bind(actor)
            .bind(change.decision(&to))
            .bind(evidence.to_string())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        BulkResult {
            changed: rows.len() as u64,
            more,
        }
    });
    Ok(changed)
}

/// The audit entries of one finding, newest first.
pub async fn history(state: &AppState, id: i64) -> AppResult<Vec<crate::audit::AuditEntry>> {
    Ok(on_db!(&state.db, |pool| {
        sqlx::query_as::<_, crate::audit::AuditEntry>(
            "SELECT id, at, actor, rollout_id, action, decision, evidence FROM audit \
             WHERE finding_id = $1 ORDER BY id DESC LIMIT 200",
        )
        .bind(id)
        .fetch_all(pool)
        .await?
    }))
}

/// `GET /api/v1/findings`: one page, newest first. The next page's cursor is in the
/// `x-ringfence-next-cursor` header (absent on the last page).
pub async fn get_findings(
    State(state): State<AppState>,
    _op: Operator,
    Query(q): Query<ListQuery>,
) -> AppResult<Response> {
    let p = q.parse(state.clock.now_ms())?;
    let (rows, next) = page(&state, &p).await?;
    let mut resp = Json(rows).into_response();
    if let Some(c) = next
        && let Ok(v) = HeaderValue::from_str(&c.to_string())
    {
        resp.headers_mut().insert("x-ringfence-next-cursor", v);
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(resp)
}

/// `GET /api/v1/findings/groups?by=rule|host|technique` (and any filter).
pub async fn get_groups(
    State(state): State<AppState>,
    _op: Operator,
    Query(q): Query<GroupsQuery>,
) -> AppResult<Json<Vec<Group>>> {
    let p = q.filter.parse(state.clock.now_ms())?;
    let by = GroupBy::parse(q.by.as_deref().unwrap_or("rule"))?;
    Ok(Json(groups(&state, by, &p.filter).await?))
}

#[derive(Debug, Deserialize)]
pub struct GroupsQuery {
    pub by: Option<String>,
    #[serde(flatten)]
    pub filter: ListQuery,
}

/// `GET /api/v1/findings/{id}`: the finding and its triage history.
pub async fn get_finding(
    State(state): State<AppState>,
    _op: Operator,
    Path(id): Path<i64>,
) -> AppResult<Json<serde_json::Value>> {
    let f = get(&state, id).await?;
    let h = history(&state, id).await?;
    Ok(Json(serde_json::json!({"finding": f, "history": h})))
}

/// `PATCH /api/v1/findings/{id}`.
pub async fn patch_finding(
    State(state): State<AppState>,
    Operator(op): Operator,
    Path(id): Path<i64>,
    body: Result<Json<Change>, axum::extract::rejection::JsonRejection>,
) -> AppResult<Json<Finding>> {
    let Json(change) = body.map_err(|e| AppError::BadRequest(e.body_text()))?;
    Ok(Json(triage(&state, id, &change, &op).await?))
}

/// `POST /api/v1/findings/bulk` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    #[serde(default)]
    pub filter: Filter,
    pub change: Change,
}

/// `POST /api/v1/findings/bulk`.
pub async fn post_bulk(
    State(state): State<AppState>,
    Operator(op): Operator,
    body: Result<Json<BulkBody>, axum::extract::rejection::JsonRejection>,
) -> AppResult<Json<BulkResult>> {
    let Json(b) = body.map_err(|e| AppError::BadRequest(e.body_text()))?;
    for (field, v) in [
        ("filter.rule", &b.filter.rule),
        ("filter.agent", &b.filter.agent),
        ("filter.host", &b.filter.host),
        ("filter.technique", &b.filter.technique),
        ("filter.status", &b.filter.status),
        ("filter.severity", &b.filter.severity),
    ] {
        text_field(field, v)?;
    }
    Ok(Json(bulk(&state, &b.filter, &b.change, &op).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_read_as_words() {
        assert_eq!(severity_word(severity_rank(Some("4"))), "high");
        assert_eq!(severity_word(severity_rank(Some("critical"))), "critical");
        assert_eq!(severity_word(severity_rank(Some("9"))), "unknown");
        assert_eq!(severity_word(severity_rank(None)), "unknown");
    }

    #[test]
    fn folded_matches_are_bounded() {
        let count = |v: serde_json::Value| {
            let doc = serde_json::json!({"ringfence": {"finding": {"count": v}}});
            folded_matches(doc.as_object().unwrap())
        };
        assert_eq!(count(serde_json::json!(7)), 7);
        assert_eq!(count(serde_json::json!(0)), 1);
        assert_eq!(count(serde_json::json!(u64::MAX)), MAX_FOLDED);
        assert_eq!(count(serde_json::json!(-5)), 1);
        assert_eq!(count(serde_json::json!("many")), 1);
        assert_eq!(folded_matches(&serde_json::Map::new()), 1);
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = Cursor {
            received_at: 1_700_000_000_000,
            id: 42,
        };
        assert_eq!(Cursor::parse(&c.to_string()).unwrap(), c);
        assert!(Cursor::parse("x.1").is_err());
        assert!(Cursor::parse("12").is_err());
        assert!(Cursor::parse("1.2.3").is_err());
    }

    #[test]
    fn closing_needs_a_reason_from_the_list() {
        let close = |r: Option<&str>| Change {
            status: Some("closed".into()),
            close_reason: r.map(Into::into),
            ..Change::default()
        };
        assert!(close(None).check().is_err());
        assert!(close(Some("because")).check().is_err());
        assert!(close(Some("false_positive")).check().is_ok());
        assert!(Change::default().check().is_err());
        let reopen = Change {
            status: Some("open".into()),
            ..Change::default()
        };
        let closed = Triage {
            status: "closed".into(),
            close_reason: Some("duplicate".into()),
            assignee: None,
            tags: String::new(),
            comment: None,
        };
        assert_eq!(reopen.apply(&closed).close_reason, None);
    }

    #[test]
    fn hostile_text_is_refused() {
        let c = Change {
            assignee: Some("alice\u{202e}".into()),
            ..Change::default()
        };
        assert!(c.check().is_err());
        let c = Change {
            comment: Some("line one\nline two".into()),
            ..Change::default()
        };
        assert!(c.check().is_ok());
        let c = Change {
            tags: Some(vec!["<script>".into()]),
            ..Change::default()
        };
        assert!(c.check().is_err());
    }

    #[test]
    fn a_filter_query_parses_and_bounds_the_page() {
        let q = ListQuery {
            severity: Some("high".into()),
            status: Some(String::new()),
            last: Some("1h".into()),
            limit: Some("100000".into()),
            ..ListQuery::default()
        };
        let p = q.parse(10_000_000).unwrap();
        assert_eq!(p.limit, MAX_PAGE);
        assert_eq!(p.filter.since, Some(10_000_000 - 3_600_000));
        assert_eq!(p.filter.status, None);
        let bad = ListQuery {
            status: Some("done".into()),
            ..ListQuery::default()
        };
        assert!(bad.parse(0).is_err());
    }
}
