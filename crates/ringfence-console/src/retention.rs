//! Retention: how long findings, check-ins and the audit log are kept, enforced by a periodic
//! bounded delete ([`enforce`], run by the engine loop once a minute).
//!
//! Findings go when older than their maximum age, when one agent holds more than its share
//! (so a flooding agent only pushes out its own findings), and when the whole table holds more
//! than its maximum count (the oldest first). Each pass deletes in batches of [`BATCH`] rows and
//! at most [`MAX_PER_PASS`] rows per rule, so a pass never holds the database for long; the
//! next pass goes on where it stopped.

use serde::{Deserialize, Serialize};

use crate::plan::parse_duration;

use crate::clock::Millis;
use crate::db::Db;
use crate::error::AppResult;
use crate::{AppState, on_db};

/// How often the engine loop runs a pass.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// Rows per `DELETE`.
pub const BATCH: i64 = 5_000;
/// Most rows one pass deletes per rule.
pub const MAX_PER_PASS: i64 = 200_000;
const DAY: Millis = 86_400_000;

/// What is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Findings older than this go (milliseconds).
    pub findings_max_age_ms: Millis,
    /// Most findings kept; the oldest go first.
    pub findings_max_count: i64,
    /// Most findings kept per agent; that agent's oldest go first.
    pub findings_per_agent_max: i64,
    /// Check-ins older than this go (the gates read the last days at most).
    pub checkins_max_age_ms: Millis,
    /// Audit entries older than this go.
    pub audit_max_age_ms: Millis,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            findings_max_age_ms: 90 * DAY,
            findings_max_count: 1_000_000,
            findings_per_agent_max: 100_000,
            checkins_max_age_ms: 30 * DAY,
            audit_max_age_ms: 400 * DAY,
        }
    }
}

/// The console's settings file (`console serve --settings FILE`): a `[retention]` table.
///
/// ```toml
/// [retention]
/// findings_max_age = "90d"
/// findings_max_count = 1000000
/// findings_per_agent_max = 100000
/// checkins_max_age = "30d"
/// audit_max_age = "400d"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    #[serde(default)]
    retention: RetentionFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionFile {
    findings_max_age: Option<String>,
    findings_max_count: Option<i64>,
    findings_per_agent_max: Option<i64>,
    checkins_max_age: Option<String>,
    audit_max_age: Option<String>,
}

impl Retention {
    /// Read the `[retention]` table of a settings file; the error names the field.
    pub fn from_settings(text: &str) -> Result<Retention, String> {
        let file: SettingsFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let f = file.retention;
        let mut r = Retention::default();
        let age = |field: &str, v: &Option<String>, min: Millis, default: Millis| match v {
            None => Ok(default),
            Some(s) => {
                let ms = parse_duration(s).map_err(|e| format!("retention.{field}: {e}"))?;
                if ms < min {
                    Err(format!(
                        "retention.{field}: {s:?} is shorter than {}",
                        crate::plan::format_duration(min)
                    ))
                } else {
                    Ok(ms)
                }
            }
        };
        let count = |field: &str, v: Option<i64>, default: i64| match v {
            None => Ok(default),
            Some(n) if n >= 1 => Ok(n),
            Some(n) => Err(format!("retention.{field}: {n} is not a positive count")),
        };
        r.findings_max_age_ms = age(
            "findings_max_age",
            &f.findings_max_age,
            3_600_000,
            r.findings_max_age_ms,
        )?;
        // The gates read the check-ins of the last bake windows: a day at least.
        r.checkins_max_age_ms = age(
            "checkins_max_age",
            &f.checkins_max_age,
            DAY,
            r.checkins_max_age_ms,
        )?;
        r.audit_max_age_ms = age("audit_max_age", &f.audit_max_age, DAY, r.audit_max_age_ms)?;
        r.findings_max_count = count(
            "findings_max_count",
            f.findings_max_count,
            r.findings_max_count,
        )?;
        r.findings_per_agent_max = count(
            "findings_per_agent_max",
            f.findings_per_agent_max,
            r.findings_per_agent_max,
        )?;
        Ok(r)
    }
}

/// Rows one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    pub findings_aged: i64,
    pub findings_over_agent: i64,
    pub findings_over_count: i64,
    pub checkins: i64,
    pub audit: i64,
}

/// Delete `DELETE … WHERE id IN (select LIMIT BATCH)` batches until one deletes less than a
/// batch or [`MAX_PER_PASS`] rows went.
async fn batched(db: &Db, sql: &str, args: &[i64]) -> AppResult<i64> {
    let mut total: i64 = 0;
    while total < MAX_PER_PASS {
        let n = on_db!(db, |pool| {
            let mut q = sqlx::query(sql);
            for a in args {
                q = q.bind(*a);
            }
            q.bind(BATCH).execute(pool).await?.rows_affected()
        });
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        total = total.saturating_add(n);
        if n < BATCH {
            break;
        }
    }
    Ok(total)
}

/// One retention pass under `r`, at the state's clock.
pub async fn enforce(state: &AppState, r: &Retention) -> AppResult<Swept> {
    let now = state.clock.now_ms();
    let db = &state.db;
    let mut swept = Swept {
        findings_aged: batched(
            db,
            "DELETE FROM findings WHERE id IN (SELECT id FROM findings WHERE received_at < $1 \
             ORDER BY received_at, id LIMIT $2)",
            &[now.saturating_sub(r.findings_max_age_ms)],
        )
        .await?,
        ..Swept::default()
    };

    // Agents over their share, each trimmed to it, oldest first.
    let per_agent = r.findings_per_agent_max.max(1);
    let over: Vec<(String,)> = on_db!(db, |pool| {
        sqlx::query_as(
            "SELECT agent_id FROM findings GROUP BY agent_id HAVING COUNT(*) > $1 LIMIT 100",
        )
        .bind(per_agent)
        .fetch_all(pool)
        .await?
    });
    for (agent,) in over {
        let cut: Option<(Millis, i64)> = on_db!(db, |pool| {
            sqlx::query_as(
                "SELECT received_at, id FROM findings WHERE agent_id = $1 \
                 ORDER BY received_at DESC, id DESC LIMIT 1 OFFSET $2",
            )
            .bind(&agent)
            .bind(per_agent - 1)
            .fetch_optional(pool)
            .await?
        });
        if let Some((t, id)) = cut {
            let mut total = 0i64;
            while total < MAX_PER_PASS {
                let n = on_db!(db, |pool| {
                    sqlx::query(
                        "DELETE FROM findings WHERE id IN (SELECT id FROM findings WHERE agent_id = $1 \
                         AND (received_at < $2 OR (received_at = $2 AND id < $3)) LIMIT $4)",
                    )
                    .bind(&agent)
                    .bind(t)
                    .bind(id)
                    .bind(BATCH)
                    .execute(pool)
                    .await?
                    .rows_affected()
                });
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                total = total.saturating_add(n);
                if n < BATCH {
                    break;
                }
            }
            swept.findings_over_agent = swept.findings_over_agent.saturating_add(total);
        }
    }

    // The whole table over its count: the oldest go.
    let max = r.findings_max_count.max(1);
    let cut: Option<(Millis, i64)> = on_db!(db, |pool| {
        sqlx::query_as(
            "SELECT received_at, id FROM findings ORDER BY received_at DESC, id DESC LIMIT 1 OFFSET $1",
        )
        .bind(max - 1)
        .fetch_optional(pool)
        .await?
    });
    if let Some((t, id)) = cut {
        swept.findings_over_count = batched(
            db,
            "DELETE FROM findings WHERE id IN (SELECT id FROM findings WHERE received_at < $1 \
             OR (received_at = $1 AND id < $2) LIMIT $3)",
            &[t, id],
        )
        .await?;
    }

    let checkins_before = now.saturating_sub(r.checkins_max_age_ms);
    swept.checkins = match db {
        Db::Sqlite(_) => {
            batched(
                db,
                "DELETE FROM checkins WHERE rowid IN (SELECT rowid FROM checkins WHERE at < $1 LIMIT $2)",
                &[checkins_before],
            )
            .await?
        }
        Db::Postgres(_) => {
            batched(
                db,
                "DELETE FROM checkins WHERE ctid IN (SELECT ctid FROM checkins WHERE at < $1 LIMIT $2)",
                &[checkins_before],
            )
            .await?
        }
    };
    swept.audit = batched(
        db,
        "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < $1 ORDER BY id LIMIT $2)",
        &[now.saturating_sub(r.audit_max_age_ms)],
    )
    .await?;
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_keep_ninety_days_and_a_million_findings() {
        let r = Retention::default();
        assert_eq!(r.findings_max_age_ms, 90 * DAY);
        assert_eq!(r.findings_max_count, 1_000_000);
        let parsed = Retention::from_settings(
            "[retention]\nfindings_max_count = 5\nfindings_max_age = \"7d\"",
        )
        .unwrap();
        assert_eq!(parsed.findings_max_count, 5);
        assert_eq!(parsed.findings_max_age_ms, 7 * DAY);
        assert_eq!(parsed.checkins_max_age_ms, 30 * DAY);
        assert_eq!(Retention::from_settings("").unwrap(), Retention::default());
        for (bad, field) in [
            ("[retention]\nfindings_max_cuont = 5", "findings_max_cuont"),
            (
                "[retention]\nfindings_max_count = 0",
                "retention.findings_max_count",
            ),
            (
                "[retention]\ncheckins_max_age = \"1h\"",
                "retention.checkins_max_age",
            ),
            (
                "[retention]\naudit_max_age = \"soon\"",
                "retention.audit_max_age",
            ),
        ] {
            let e = Retention::from_settings(bad).unwrap_err();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }
}
