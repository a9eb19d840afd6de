//! Group commit for check-ins.
//!
//! Handlers hand each parsed check-in to one writer task and wait for its acknowledgement. The
//! writer takes whatever has queued up while the previous transaction committed (up to
//! [`MAX_BATCH`]) and writes it in one transaction: one multi-row `INSERT` into `checkins` and
//! one multi-row upsert into `agent_state`. An agent's check-in is acknowledged only after its
//! transaction committed, so a response means "stored", and a failed transaction stores none of
//! its check-ins (nothing half-way). The queue is bounded: when it is full the handler answers
//! 503 at once and the agent retries at its next interval with its counters intact.
//!
//! Totals saturate at `i64::MAX`, in Rust and in SQL. Ring-selecting tags are not taken from
//! check-ins: they are fixed at enrollment (see [`crate::agents::enroll`]), so a check-in cannot
//! move its agent between rings; only the timezone offset follows the agent.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use crate::clock::Millis;
use crate::db::Db;
use crate::on_db;

/// Most check-ins in one transaction.
pub const MAX_BATCH: usize = 4096;
/// Rows per statement (SQLite allows 32766 bound parameters; 19 columns × 1000 stays below).
const ROWS_PER_STATEMENT: usize = 1000;
/// Queue length before check-ins are refused with 503.
pub const QUEUE: usize = 32 * 1024;

/// One stored check-in.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub agent_id: String,
    pub at: Millis,
    pub seq: i64,
    pub agent_version: String,
    pub content_version: i64,
    /// What the agent says is active, in words.
    pub content: Option<String>,
    pub crashes: i64,
    pub restarts: i64,
    pub lkg: i64,
    /// Agent release fall-backs (the supervisor went back to the previous binary).
    pub release_fallbacks: i64,
    pub cpu: f64,
    pub rss: i64,
    pub events: i64,
    pub drops: i64,
    pub findings: i64,
    pub interval_ms: i64,
    pub region: Option<String>,
    pub industry: Option<String>,
    pub environment: Option<String>,
    pub custom_tags: String,
    pub tz_offset: i64,
}

type Job = (Sample, oneshot::Sender<bool>);

/// Handle to the writer task.
#[derive(Debug, Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Job>,
}

/// Why a check-in was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestError {
    /// The queue is full: come back later.
    Busy,
    /// The writer failed or stopped.
    Failed,
}

impl Ingest {
    /// Start the writer on `db`.
    pub fn start(db: Db) -> Ingest {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(db, rx));
        Ingest { tx }
    }

    /// Queue a sample and wait until it is committed.
    pub async fn store(&self, sample: Sample) -> Result<(), IngestError> {
        let (ack, done) = oneshot::channel();
        self.tx.try_send((sample, ack)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => IngestError::Busy,
            mpsc::error::TrySendError::Closed(_) => IngestError::Failed,
        })?;
        match done.await {
            Ok(true) => Ok(()),
            _ => Err(IngestError::Failed),
        }
    }
}

async fn writer(db: Db, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let ok = match write_batch(&db, batch.iter().map(|(s, _)| s)).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, rows = batch.len(), "check-in batch not stored");
                false
            }
        };
        for (_, ack) in batch.drain(..) {
            let _ = ack.send(ok);
        }
    }
}

/// `agent_state.<column> + excluded.<column>`, saturating at `i64::MAX` on both engines: SQLite
/// would turn an overflowing sum into a REAL (and every later read of the row fails), and
/// PostgreSQL would fail the whole batch. Both operands are non-negative, so the subtraction
/// cannot overflow.
fn saturating_add(column: &str) -> String {
    format!(
        "CASE WHEN agent_state.{column} > {max} - excluded.{column} THEN {max} \
         ELSE agent_state.{column} + excluded.{column} END",
        max = i64::MAX
    )
}

/// Write samples in one transaction. Public for the benchmark and tests.
pub async fn write_batch<'a>(
    db: &Db,
    samples: impl Iterator<Item = &'a Sample> + Clone,
) -> Result<(), sqlx::Error> {
    // Latest state per agent; counters summed over the batch, saturating.
    let mut state: HashMap<&str, (Sample, i64)> = HashMap::new();
    for s in samples.clone() {
        state
            .entry(s.agent_id.as_str())
            .and_modify(|(acc, n)| {
                let (c, l, d, e, f) = (
                    acc.crashes
                        .saturating_add(acc.restarts)
                        .saturating_add(s.crashes)
                        .saturating_add(s.restarts),
                    acc.lkg.saturating_add(s.lkg),
                    acc.drops.saturating_add(s.drops),
                    acc.events.saturating_add(s.events),
                    acc.findings.saturating_add(s.findings),
                );
                *acc = s.clone();
                acc.crashes = c;
                acc.restarts = 0;
                acc.lkg = l;
                acc.drops = d;
                acc.events = e;
                acc.findings = f;
                *n = n.saturating_add(1);
            })
            .or_insert_with(|| {
                let mut first = s.clone();
                first.crashes = first.crashes.saturating_add(first.restarts);
                first.restarts = 0;
                (first, 1)
            });
    }
    let all: Vec<&Sample> = samples.collect();
    let states: Vec<&(Sample, i64)> = state.values().collect();
    on_db!(db, |pool| {
        let mut tx = pool.begin().await?;
        for chunk in all.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO checkins (agent_id, at, seq, content_version, crashes, restarts, lkg, cpu, rss, events, drops, findings, interval_ms, agent_version, release_fallbacks) ",
            );
            q.push_values(chunk, |mut b, s| {
                b.push_bind(&s.agent_id)
                    .push_bind(s.at)
                    .push_bind(s.seq)
                    .push_bind(s.content_version)
                    .push_bind(s.crashes)
                    .push_bind(s.restarts)
                    .push_bind(s.lkg)
                    .push_bind(s.cpu)
                    .push_bind(s.rss)
                    .push_bind(s.events)
                    .push_bind(s.drops)
                    .push_bind(s.findings)
                    .push_bind(s.interval_ms)
                    .push_bind(&s.agent_version)
                    .push_bind(s.release_fallbacks);
            });
            q.build().execute(&mut *tx).await?;
        }
        for chunk in states.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO agent_state (agent_id, last_seen, seq, agent_version, content_version, content, region, industry, environment, custom_tags, tz_offset, cpu, rss, crashes_total, lkg_total, drops_total, events_total, findings_total, checkins) ",
            );
            q.push_values(chunk, |mut b, (s, n)| {
                b.push_bind(&s.agent_id)
                    .push_bind(s.at)
                    .push_bind(s.seq)
                    .push_bind(&s.agent_version)
                    .push_bind(s.content_version)
                    .push_bind(&s.content)
                    .push_bind(&s.region)
                    .push_bind(&s.industry)
                    .push_bind(&s.environment)
                    .push_bind(&s.custom_tags)
                    .push_bind(s.tz_offset)
                    .push_bind(s.cpu)
                    .push_bind(s.rss)
                    .push_bind(s.crashes)
                    .push_bind(s.lkg)
                    .push_bind(s.drops)
                    .push_bind(s.events)
                    .push_bind(s.findings)
                    .push_bind(*n);
            });
            q.push(format!(
                " ON CONFLICT (agent_id) DO UPDATE SET last_seen = excluded.last_seen, seq = excluded.seq, \
                 agent_version = excluded.agent_version, content_version = excluded.content_version, \
                 content = excluded.content, \
                 tz_offset = excluded.tz_offset, cpu = excluded.cpu, rss = excluded.rss, \
                 crashes_total = {}, lkg_total = {}, drops_total = {}, events_total = {}, findings_total = {}, checkins = {}",
                saturating_add("crashes_total"),
                saturating_add("lkg_total"),
                saturating_add("drops_total"),
                saturating_add("events_total"),
                saturating_add("findings_total"),
                saturating_add("checkins"),
            ));
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await
    })
}
