//! Exceptions made on the console: "this rule, on these hosts, when these fields match", made
//! from a finding (the finding page prefills the rule, the host and the finding's process and
//! user fields), reviewed, and then delivered to agents **as content**.
//!
//! An exception is stored `pending` ([`create`]), then `approved` by an operator who may
//! publish content ([`approve`]). One with no host and no field would silence its rule on the
//! whole fleet: approving it is held for a second operator ([`crate::approvals`]), like any
//! action that can hurt the whole fleet at once. [`publish`] turns every approved (and every
//! earlier published) exception into an exceptions overlay: a new content version made of the
//! baseline's entries plus `exceptions/console.toml` (bundle entry kind 5), signed with the
//! console's online content keys ([`crate::content::Republisher::overlay`], which also
//! validates the overlay against the bundle's own rules and the sensor field schema, so an
//! exception for a rule the content does not define is refused at build), published, and
//! started as a normal content rollout through rings and gates. A bad exception is therefore
//! caught and rolled back like any content. A `withdrawn` exception is left out of the next
//! overlay. Every step is in the audit log, linked to the finding it was made from.

use crate::db::BeginWrite;
use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::agents::parse_json;
use crate::auth::Authed;
use crate::clock::Millis;
use crate::error::{AppError, AppResult};
use crate::roles::Need;
use crate::{AppState, on_db};

/// Longest rule id, host name, field name and comment; most hosts, fields and values.
pub const MAX_RULE_BYTES: usize = 256;
pub const MAX_HOSTS: usize = 64;
pub const MAX_FIELDS: usize = 16;
pub const MAX_VALUES: usize = 64;
pub const MAX_VALUE_BYTES: usize = 1024;
pub const MAX_COMMENT_BYTES: usize = 2000;
/// Most exceptions one overlay carries (the agent refuses more).
pub const MAX_ACTIVE: i64 = 1024;
/// Where the overlay sits in the bundle.
pub const OVERLAY_PATH: &str = "exceptions/console.toml";

/// What an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewException {
    pub rule: String,
    /// Host names (`host.name`) it applies on; empty for every host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// ECS field → accepted values; every field must match one of its values.
    #[serde(default)]
    pub fields: BTreeMap<String, Vec<String>>,
    /// Why: shown to the reviewer and kept in the overlay.
    pub comment: String,
    /// The finding it was made from.
    #[serde(default)]
    pub finding: Option<i64>,
}

fn text_ok(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.len() <= max && !s.chars().any(ringfence_wire::is_hidden_char)
}

impl NewException {
    /// Every bound, named by field; the rule and field names themselves are checked against
    /// the content when the overlay is built.
    pub fn check(&self) -> AppResult<()> {
        let bad = |m: String| Err(AppError::BadRequest(m));
        if !text_ok(&self.rule, MAX_RULE_BYTES) {
            return bad(format!(
                "rule: a rule id of 1…{MAX_RULE_BYTES} bytes of printable text"
            ));
        }
        if self.rule.starts_with("ringfence-tamper-") || self.rule.starts_with("ringfence-health-")
        {
            return bad(format!(
                "rule: {}: the agent's tamper and health rules cannot be tuned",
                self.rule
            ));
        }
        if self.hosts.len() > MAX_HOSTS || !self.hosts.iter().all(|h| text_ok(h, MAX_RULE_BYTES)) {
            return bad(format!(
                "hosts: at most {MAX_HOSTS} host names of 1…{MAX_RULE_BYTES} bytes"
            ));
        }
        if self.fields.len() > MAX_FIELDS {
            return bad(format!("fields: at most {MAX_FIELDS} fields"));
        }
        for (field, values) in &self.fields {
            let name_ok = text_ok(field, 128)
                && field
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._@".contains(&b));
            if !name_ok {
                return bad(format!(
                    "fields: {:?} is not an ECS field name",
                    ringfence_wire::printable(&field.chars().take(64).collect::<String>())
                ));
            }
            if values.is_empty()
                || values.len() > MAX_VALUES
                || values.iter().any(|v| {
                    v.is_empty()
                        || v.len() > MAX_VALUE_BYTES
                        || v.chars().any(ringfence_wire::is_hidden_char)
                })
            {
                return bad(format!(
                    "fields.{field}: 1…{MAX_VALUES} values of 1…{MAX_VALUE_BYTES} bytes"
                ));
            }
        }
        if !text_ok(&self.comment, MAX_COMMENT_BYTES) {
            return bad(format!(
                "comment: say why (1…{MAX_COMMENT_BYTES} bytes); the reviewer reads it"
            ));
        }
        Ok(())
    }

    /// No host and no field: it would silence the rule on the whole fleet.
    pub fn is_fleet_wide(&self) -> bool {
        self.hosts.is_empty() && self.fields.is_empty()
    }
}

/// One exception as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExceptionView {
    pub id: i64,
    pub rule: String,
    pub hosts: Vec<String>,
    pub fields: BTreeMap<String, Vec<String>>,
    pub comment: String,
    pub finding: Option<i64>,
    /// `pending`, `approved`, `published`, `withdrawn`.
    pub state: String,
    pub created_by: String,
    pub created_at: Millis,
    pub approved_by: Option<String>,
    pub approved_at: Option<Millis>,
    /// The content version whose overlay first carried it.
    pub published_version: Option<i64>,
    pub published_at: Option<Millis>,
    /// Silences the rule everywhere (approved only through a second operator).
    pub fleet_wide: bool,
}

type Row = (
    i64,
    String,
    String,
    String,
    String,
    Option<i64>,
    String,
    String,
    Millis,
    Option<String>,
    Option<Millis>,
    Option<i64>,
    Option<Millis>,
);

const COLS: &str = "id, rule, hosts, fields, comment, finding_id, state, created_by, created_at, \
                    approved_by, approved_at, published_version, published_at";

fn view(r: Row) -> ExceptionView {
    let hosts: Vec<String> = serde_json::from_str(&r.2).unwrap_or_default();
    let fields: BTreeMap<String, Vec<String>> = serde_json::from_str(&r.3).unwrap_or_default();
    ExceptionView {
        id: r.0,
        rule: r.1,
        fleet_wide: hosts.is_empty() && fields.is_empty(),
        hosts,
        fields,
        comment: r.4,
        finding: r.5,
        state: r.6,
        created_by: r.7,
        created_at: r.8,
        approved_by: r.9,
        approved_at: r.10,
        published_version: r.11,
        published_at: r.12,
    }
}

/// Record one exception decision in the audit log (linked to its finding, if any).
macro_rules! record {
    ($exec:expr, $now:expr, $actor:expr, $finding:expr, $decision:expr, $evidence:expr) => {
        sqlx::query(
            "INSERT INTO audit (at, actor, rollout_id, action, decision, evidence, finding_id) \
             VALUES ($1, $2, NULL, 'exception', $3, $4, $5)",
        )
        .bind($now)
        .bind($actor)
        .bind($decision)
        .bind(::serde_json::to_string($evidence).unwrap_or_else(|_| "{}".to_owned()))
        .bind($finding)
        .execute($exec)
    };
}

/// Exceptions, newest first (`state` narrows).
pub async fn list(state: &AppState, only: Option<&str>) -> AppResult<Vec<ExceptionView>> {
    let rows: Vec<Row> = on_db!(&state.db, |pool| {
        sqlx::query_as(&format!(
            "SELECT {COLS} FROM exceptions WHERE ($1 = '' OR state = $1) ORDER BY id DESC LIMIT 1000"
        ))
        .bind(only.unwrap_or(""))
        .fetch_all(pool)
        .await?
    });
    Ok(rows.into_iter().map(view).collect())
}

/// One exception.
pub async fn get(state: &AppState, id: i64) -> AppResult<ExceptionView> {
    let row: Option<Row> = on_db!(&state.db, |pool| {
        sqlx::query_as(&format!("SELECT {COLS} FROM exceptions WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?
    });
    row.map(view)
        .ok_or_else(|| AppError::NotFound(format!("no exception {id}")))
}

/// Store a pending exception.
pub async fn create(state: &AppState, actor: &str, e: &NewException) -> AppResult<ExceptionView> {
    e.check()?;
    if let Some(f) = e.finding {
        crate::findings::get(state, f).await?;
    }
    let now = state.clock.now_ms();
    let hosts = serde_json::to_string(&e.hosts).map_err(AppError::internal)?;
    let fields = serde_json::to_string(&e.fields).map_err(AppError::internal)?;
    let row: Row = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let row: Row = sqlx::query_as(&format!(
            "INSERT INTO exceptions (rule, hosts, fields, comment, finding_id, state, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7) RETURNING {COLS}"
        ))
        .bind(&e.rule)
        .bind(&hosts)
        .bind(&fields)
        .bind(&e.comment)
        .bind(e.finding)
        .bind(actor)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let evidence = serde_json::json!({"exception": row.0, "request": e});
        record!(
            &mut *tx,
            now,
            actor,
            e.finding,
            format!("exception {} created for rule {}", row.0, e.rule),
            &evidence
        )
        .await?;
        tx.commit().await?;
        row
    });
    Ok(view(row))
}

/// Approve pending exception `id` now (the caller has checked who may).
pub async fn approve_now(state: &AppState, actor: &str, id: i64) -> AppResult<ExceptionView> {
    let e = get(state, id).await?;
    let now = state.clock.now_ms();
    let changed = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query(
            "UPDATE exceptions SET state = 'approved', approved_by = $2, approved_at = $3 \
             WHERE id = $1 AND state = 'pending'",
        )
        .bind(id)
        .bind(actor)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            let evidence = serde_json::json!({"exception": id, "rule": e.rule,
                "hosts": e.hosts, "fields": e.fields, "fleet_wide": e.fleet_wide});
            record!(
                &mut *tx,
                now,
                actor,
                e.finding,
                format!("exception {id} approved"),
                &evidence
            )
            .await?;
        }
        tx.commit().await?;
        n
    });
    if changed != 1 {
        return Err(AppError::Conflict(format!(
            "exception {id} is {}, not pending",
            e.state
        )));
    }
    get(state, id).await
}

/// Approve exception `id` as `who`: at once when it is scoped to hosts or fields; held for a
/// second operator when it would silence its rule on the whole fleet.
pub async fn approve(state: &AppState, who: &Authed, id: i64) -> AppResult<Response> {
    let e = get(state, id).await?;
    if e.state != "pending" {
        return Err(AppError::Conflict(format!(
            "exception {id} is {}, not pending",
            e.state
        )));
    }
    if e.fleet_wide {
        let held = crate::approvals::ask(
            state,
            &who.name,
            crate::approvals::kind::EXCEPTION,
            &serde_json::json!({"exception": id}),
            format!(
                "approve exception {id}: silence rule {} on every host (no host, no field)",
                e.rule
            ),
            Need::Content,
            &e.comment,
        )
        .await?;
        let value = serde_json::to_value(&e).map_err(AppError::internal)?;
        return Ok(crate::approvals::held(held, Some(("exception", value))));
    }
    Ok(Json(approve_now(state, &who.name, id).await?).into_response())
}

/// Withdraw exception `id`: the next overlay leaves it out.
pub async fn withdraw(state: &AppState, actor: &str, id: i64) -> AppResult<ExceptionView> {
    let e = get(state, id).await?;
    let now = state.clock.now_ms();
    let changed = on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query(
            "UPDATE exceptions SET state = 'withdrawn' WHERE id = $1 AND state <> 'withdrawn'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            let evidence = serde_json::json!({"exception": id, "was": e.state});
            record!(
                &mut *tx,
                now,
                actor,
                e.finding,
                format!("exception {id} withdrawn (left out of the next overlay)"),
                &evidence
            )
            .await?;
        }
        tx.commit().await?;
        n
    });
    if changed != 1 {
        return Err(AppError::Conflict(format!(
            "exception {id} is already withdrawn"
        )));
    }
    get(state, id).await
}

/// The overlay file for `exceptions`: Falco-style `[[exceptions]]` tables, as the agent reads
/// them (`ringfence_agent::tuning::Exception`).
pub fn overlay_toml(exceptions: &[ExceptionView]) -> AppResult<String> {
    #[derive(Serialize)]
    struct Entry<'a> {
        rule: &'a str,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        hosts: &'a [String],
        comment: String,
        fields: &'a BTreeMap<String, Vec<String>>,
    }
    #[derive(Serialize)]
    struct File<'a> {
        exceptions: Vec<Entry<'a>>,
    }
    let file = File {
        exceptions: exceptions
            .iter()
            .map(|e| Entry {
                rule: &e.rule,
                hosts: &e.hosts,
                comment: format!("console exception {}: {}", e.id, e.comment),
                fields: &e.fields,
            })
            .collect(),
    };
    let head = "# Exceptions made on the Ringfence console (`ringfence exceptions list`).\n";
    Ok(format!(
        "{head}{}",
        toml::to_string(&file).map_err(AppError::internal)?
    ))
}

/// What [`publish`] did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    pub version: i64,
    pub base_version: i64,
    /// Exceptions the overlay carries (ids).
    pub exceptions: Vec<i64>,
    pub rollout: crate::rollout::RolloutView,
}

/// `POST /api/v1/exceptions/publish` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    #[serde(default)]
    pub reason: String,
    /// Rollout plan TOML; the default plan when absent.
    #[serde(default)]
    pub plan: Option<String>,
}

/// Build, sign and publish the overlay of every approved and published exception on top of
/// the fleet's baseline content, and start its rollout.
pub async fn publish(state: &AppState, actor: &str, req: &PublishRequest) -> AppResult<Published> {
    if crate::rollout::active(state, crate::rollout::payload::Kind::Content)
        .await?
        .is_some()
    {
        return Err(AppError::Conflict(
            "another content rollout is active; finish, roll back or wait for it first".into(),
        ));
    }
    let carried: Vec<ExceptionView> = {
        let mut all = list(state, Some("approved")).await?;
        if all.is_empty() {
            return Err(AppError::Conflict(
                "no approved exception waits to be published".into(),
            ));
        }
        all.extend(list(state, Some("published")).await?);
        all.sort_by_key(|e| e.id);
        all
    };
    if carried.len() as i64 > MAX_ACTIVE {
        return Err(AppError::Unprocessable(format!(
            "{} exceptions are active; an overlay carries at most {MAX_ACTIVE} (withdraw some)",
            carried.len()
        )));
    }
    state.reload_snapshot().await?;
    let snap = state.snapshot.get();
    let base = snap.baseline;
    if base == 0 {
        return Err(AppError::Conflict(
            "the fleet has no baseline content yet; publish one first".into(),
        ));
    }
    let latest = snap.content.keys().copied().max().unwrap_or(base);
    let version = latest
        .checked_add(1)
        .ok_or_else(|| AppError::internal("content version overflow"))?;
    let path = state
        .config
        .content_dir
        .join(crate::content::file_name(base));
    let base_bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| AppError::internal(format!("{}: {e}", path.display())))?;
    let overlay = overlay_toml(&carried)?;
    let republisher = state.republisher.clone();
    let overlay_bytes = overlay.clone().into_bytes();
    let built = tokio::task::spawn_blocking(move || {
        republisher.overlay(
            &base_bytes,
            base.unsigned_abs(),
            version.unsigned_abs(),
            &overlay_bytes,
        )
    })
    .await
    .map_err(AppError::internal)?;
    let ids: Vec<i64> = carried.iter().map(|e| e.id).collect();
    let now = state.clock.now_ms();
    let bytes = match built {
        Ok(b) => b,
        Err(why) => {
            let evidence = serde_json::json!({"exceptions": ids, "base": base, "reason": why});
            on_db!(&state.db, |pool| {
                record!(
                    pool,
                    now,
                    actor,
                    None::<i64>,
                    format!("refused: the overlay on v{base} did not build: {why}"),
                    &evidence
                )
                .await?;
            });
            return Err(AppError::Unprocessable(format!(
                "the exceptions overlay on content v{base} did not build: {why}"
            )));
        }
    };
    crate::content::publish(state, actor, version, &bytes, None).await?;
    let reason = if req.reason.trim().is_empty() {
        format!("exceptions {ids:?} on content v{base}")
    } else {
        req.reason.clone()
    };
    let rollout = crate::rollout::start(
        state,
        actor,
        &crate::rollout::StartRequest {
            version,
            agent_version: None,
            plan: req.plan.clone(),
            emergency: false,
            reason: reason.clone(),
        },
    )
    .await?;
    on_db!(&state.db, |pool| {
        let mut tx = pool.begin_write().await?;
        for e in carried.iter().filter(|e| e.state == "approved") {
            sqlx::query(
                "UPDATE exceptions SET state = 'published', published_version = $2, published_at = $3 \
                 WHERE id = $1 AND state = 'approved'",
            )
            .bind(e.id)
            .bind(version)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let evidence = serde_json::json!({"exception": e.id, "version": version,
                "base": base, "rollout": rollout.id, "reason": reason});
            record!(
                &mut *tx,
                now,
                actor,
                e.finding,
                format!(
                    "exception {} published in content v{version} (rollout {})",
                    e.id, rollout.id
                ),
                &evidence
            )
            .await?;
        }
        tx.commit().await?;
    });
    Ok(Published {
        version,
        base_version: base,
        exceptions: ids,
        rollout,
    })
}

/// One exception of a bundle's overlay, as the host page lists it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Carried {
    pub rule: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub comment: String,
}

/// The exceptions content version `version` carries that apply on `host`, read from the
/// published bundle itself (so a rollback's content shows what it really carries). Empty for
/// a version not published here or opaque content.
pub async fn carried_by(state: &AppState, version: i64, host: &str) -> Vec<Carried> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        exceptions: Vec<Carried>,
    }
    if version < 1 {
        return Vec::new();
    }
    let path = state
        .config
        .content_dir
        .join(crate::content::file_name(version));
    let Ok(bytes) = tokio::fs::read(&path).await else {
        return Vec::new();
    };
    let limits = ringfence_content::Limits::default();
    let Some(bundle) = ringfence_content::SignedBundle::decode(&bytes, &limits)
        .ok()
        .and_then(|s| ringfence_content::Bundle::decode(&s.payload, &limits).ok())
    else {
        return Vec::new();
    };
    bundle
        .exceptions()
        .filter_map(|(_, data)| std::str::from_utf8(data).ok())
        .filter_map(|text| toml::from_str::<File>(text).ok())
        .flat_map(|f| f.exceptions)
        .filter(|e| e.hosts.is_empty() || e.hosts.iter().any(|h| h == host))
        .take(1000)
        .collect()
}

/// `GET /api/v1/exceptions`.
pub async fn get_exceptions(State(state): State<AppState>) -> AppResult<Json<Vec<ExceptionView>>> {
    Ok(Json(list(&state, None).await?))
}

/// `POST /api/v1/exceptions`: store a pending exception.
pub async fn post_exception(
    State(state): State<AppState>,
    who: Authed,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<ExceptionView>> {
    let e: NewException = parse_json(body, 64 * 1024)?;
    Ok(Json(create(&state, &who.name, &e).await?))
}

/// `POST /api/v1/exceptions/{id}/approve`.
pub async fn post_approve(
    State(state): State<AppState>,
    who: Authed,
    Path(id): Path<i64>,
) -> AppResult<Response> {
    approve(&state, &who, id).await
}

/// `POST /api/v1/exceptions/{id}/withdraw`.
pub async fn post_withdraw(
    State(state): State<AppState>,
    who: Authed,
    Path(id): Path<i64>,
) -> AppResult<Json<ExceptionView>> {
    Ok(Json(withdraw(&state, &who.name, id).await?))
}

/// `POST /api/v1/exceptions/publish`.
pub async fn post_publish(
    State(state): State<AppState>,
    who: Authed,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<Published>> {
    let body = match body {
        Ok(b) if b.is_empty() => Bytes::from_static(b"{}"),
        other => other.map_err(|_| AppError::BadRequest("unreadable body".into()))?,
    };
    let req: PublishRequest = parse_json(Ok(body), 256 * 1024)?;
    Ok(Json(publish(&state, &who.name, &req).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(rule: &str) -> NewException {
        NewException {
            rule: rule.into(),
            hosts: vec![],
            fields: BTreeMap::new(),
            comment: "CI".into(),
            finding: None,
        }
    }

    #[test]
    fn bounds_and_the_fleet_wide_case_are_named() {
        assert!(new("r").check().is_ok());
        assert!(new("r").is_fleet_wide());
        let mut e = new("ringfence-tamper-signal");
        assert!(e.check().unwrap_err().to_string().contains("tamper"));
        e = new("r");
        e.comment = " ".into();
        assert!(e.check().unwrap_err().to_string().contains("comment"));
        e = new("r");
        e.fields.insert("process.executable".into(), vec![]);
        assert!(
            e.check()
                .unwrap_err()
                .to_string()
                .contains("fields.process")
        );
        e.fields
            .insert("process.executable".into(), vec!["/usr/bin/make".into()]);
        assert!(e.check().is_ok());
        assert!(!e.is_fleet_wide());
        e.fields.insert("a b".into(), vec!["x".into()]);
        assert!(e.check().unwrap_err().to_string().contains("ECS field"));
        e = new("r");
        e.hosts = (0..=MAX_HOSTS).map(|i| format!("h{i}")).collect();
        assert!(e.check().unwrap_err().to_string().contains("hosts"));
    }

    #[test]
    fn the_overlay_is_the_agents_exceptions_form() {
        let mut fields = BTreeMap::new();
        fields.insert(
            "process.executable".to_owned(),
            vec!["/usr/bin/make".to_owned()],
        );
        let v = ExceptionView {
            id: 3,
            rule: "rule-t".into(),
            hosts: vec!["build-1".into()],
            fields,
            comment: "the \"CI\" runs it".into(),
            finding: Some(9),
            state: "approved".into(),
            created_by: "alice".into(),
            created_at: 0,
            approved_by: None,
            approved_at: None,
            published_version: None,
            published_at: None,
            fleet_wide: false,
        };
        let text = overlay_toml(&[v]).unwrap();
        let back: toml::Value = toml::from_str(&text).unwrap();
        let e = &back["exceptions"][0];
        assert_eq!(e["rule"].as_str(), Some("rule-t"));
        assert_eq!(e["hosts"][0].as_str(), Some("build-1"));
        assert_eq!(
            e["fields"]["process.executable"][0].as_str(),
            Some("/usr/bin/make")
        );
        assert_eq!(
            e["comment"].as_str(),
            Some("console exception 3: the \"CI\" runs it")
        );
    }
}
