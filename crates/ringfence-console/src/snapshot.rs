//! A read-only snapshot of what the check-in path needs to answer "which content may this agent
//! run now": the fleet baseline, published content, rollback pins, and the active rollout's
//! ring memberships and windows.
//!
//! The snapshot is a cache of database rows, not state: every change bumps `fleet.revision` in
//! the same transaction, the console that made the change reloads at once, and every console
//! polls the revision (one single-row read a second) and reloads when it moved. So several
//! consoles behind a load balancer converge within a second, and a check-in costs no reads.

use std::collections::HashMap;
use std::sync::Arc;

use ringfence_wire::ContentOffer;

use crate::clock::Millis;
use crate::error::AppResult;
use crate::plan::{Plan, Window};
use crate::{db::Db, on_db};

/// Rollout states.
pub mod state {
    pub const RUNNING: &str = "running";
    pub const PAUSED: &str = "paused";
    pub const HALTED: &str = "halted";
    pub const ROLLED_BACK: &str = "rolled_back";
    pub const COMPLETED: &str = "completed";
}

/// The active rollout as the check-in path sees it.
#[derive(Debug, Clone, Default)]
pub struct ActiveRollout {
    pub id: i64,
    pub to_version: i64,
    /// Only a running rollout delivers to new agents; paused and halted ones keep what they
    /// delivered but deliver nothing more.
    pub delivering: bool,
    pub emergency: bool,
    pub windows: Vec<Option<Window>>,
    /// Ring index of every ring member (controls are not here: they stay on the old version).
    pub members: HashMap<String, usize>,
}

/// Everything the check-in path reads.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub revision: i64,
    pub baseline: i64,
    pub content: HashMap<i64, ContentOffer>,
    pub pins: HashMap<String, i64>,
    pub rollout: Option<ActiveRollout>,
}

impl Snapshot {
    /// The content this agent may run now.
    pub fn offer(
        &self,
        agent: &str,
        tz_offset_min: i64,
        current: i64,
        now: Millis,
    ) -> Option<&ContentOffer> {
        let mut v = self.baseline;
        if let Some(&pin) = self.pins.get(agent) {
            v = v.max(pin);
        }
        if let Some(r) = &self.rollout
            && let Some(&ring) = r.members.get(agent)
        {
            let has_it = current >= r.to_version;
            let window_open = r
                .windows
                .get(ring)
                .copied()
                .flatten()
                .is_none_or(|w| w.is_open(now, tz_offset_min));
            if has_it || (r.delivering && (r.emergency || window_open)) {
                v = v.max(r.to_version);
            }
        }
        self.content.get(&v)
    }

    /// Load from the database.
    pub async fn load(db: &Db) -> AppResult<Snapshot> {
        let (revision, baseline, content, pins, rollout, members) = on_db!(db, |pool| {
            let (revision, baseline): (i64, i64) =
                sqlx::query_as("SELECT revision, baseline_version FROM fleet WHERE id = 1")
                    .fetch_one(pool)
                    .await?;
            let content: Vec<(i64, String, String, i64)> =
                sqlx::query_as("SELECT version, file, sha256, size FROM content")
                    .fetch_all(pool)
                    .await?;
            let pins: Vec<(String, i64)> =
                sqlx::query_as("SELECT agent_id, version FROM agent_pins")
                    .fetch_all(pool)
                    .await?;
            let rollout: Option<(i64, i64, String, i64, String)> = sqlx::query_as(
                "SELECT id, to_version, state, emergency, plan FROM rollouts WHERE active = 1",
            )
            .fetch_optional(pool)
            .await?;
            let members: Vec<(String, i64)> = match &rollout {
                Some((id, ..)) => {
                    sqlx::query_as(
                        "SELECT agent_id, ring FROM ring_members WHERE rollout_id = $1 AND role = 'ring'",
                    )
                    .bind(id)
                    .fetch_all(pool)
                    .await?
                }
                None => Vec::new(),
            };
            (revision, baseline, content, pins, rollout, members)
        });
        let content = content
            .into_iter()
            .map(|(version, file, sha256, size)| {
                (
                    version,
                    ContentOffer {
                        version: version.unsigned_abs(),
                        url: format!("/content/{file}"),
                        sha256,
                        size: size.unsigned_abs(),
                    },
                )
            })
            .collect();
        let rollout = rollout.map(|(id, to_version, st, emergency, plan)| {
            // A stored plan was parsed before it was stored; if it no longer parses, deliver
            // in no window rather than everywhere.
            let windows = match Plan::parse(&plan) {
                Ok(p) => p.rings.iter().map(|r| r.window).collect(),
                Err(_) => Vec::new(),
            };
            let parsed_ok = !windows.is_empty();
            ActiveRollout {
                id,
                to_version,
                delivering: st == state::RUNNING && parsed_ok,
                emergency: emergency != 0,
                windows,
                members: members
                    .into_iter()
                    .map(|(a, ring)| (a, usize::try_from(ring).unwrap_or(usize::MAX)))
                    .collect(),
            }
        });
        Ok(Snapshot {
            revision,
            baseline,
            content,
            pins: pins.into_iter().collect(),
            rollout,
        })
    }
}

/// Shared, swappable snapshot.
#[derive(Debug, Default)]
pub struct SnapshotCell(std::sync::RwLock<Arc<Snapshot>>);

impl SnapshotCell {
    pub fn get(&self) -> Arc<Snapshot> {
        match self.0.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn set(&self, s: Snapshot) {
        let s = Arc::new(s);
        match self.0.write() {
            Ok(mut g) => *g = s,
            Err(poisoned) => *poisoned.into_inner() = s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(v: i64) -> ContentOffer {
        ContentOffer {
            version: v.unsigned_abs(),
            url: format!("/content/{v}.bundle"),
            sha256: String::new(),
            size: 1,
        }
    }

    fn snap() -> Snapshot {
        Snapshot {
            revision: 1,
            baseline: 1,
            content: [(1, offer(1)), (2, offer(2)), (3, offer(3))].into(),
            pins: HashMap::new(),
            rollout: Some(ActiveRollout {
                id: 1,
                to_version: 2,
                delivering: true,
                emergency: false,
                windows: vec![
                    None,
                    Some(Window {
                        start_min: 60,
                        end_min: 300,
                    }),
                ],
                members: [("a".to_owned(), 0), ("b".to_owned(), 1)].into(),
            }),
        }
    }

    #[test]
    fn members_get_the_new_version_in_their_window_only() {
        let s = snap();
        let noon = 86_400_000 * 100 + 12 * 3_600_000;
        assert_eq!(s.offer("a", 0, 1, noon).unwrap().version, 2);
        assert_eq!(s.offer("b", 0, 1, noon).unwrap().version, 1);
        // 02:00 local for an agent at UTC-10.
        assert_eq!(s.offer("b", -600, 1, noon).unwrap().version, 2);
        // Already has it: never told to go back.
        assert_eq!(s.offer("b", 0, 2, noon).unwrap().version, 2);
        assert_eq!(s.offer("c", 0, 1, noon).unwrap().version, 1);
    }

    #[test]
    fn halted_rollouts_deliver_nothing_new_and_pins_win() {
        let mut s = snap();
        if let Some(r) = s.rollout.as_mut() {
            r.delivering = false;
        }
        assert_eq!(s.offer("a", 0, 1, 0).unwrap().version, 1);
        assert_eq!(s.offer("a", 0, 2, 0).unwrap().version, 2);
        s.pins.insert("a".into(), 3);
        assert_eq!(s.offer("a", 0, 2, 0).unwrap().version, 3);
    }

    #[test]
    fn emergency_overrides_windows() {
        let mut s = snap();
        if let Some(r) = s.rollout.as_mut() {
            r.emergency = true;
        }
        assert_eq!(s.offer("b", 0, 1, 12 * 3_600_000).unwrap().version, 2);
    }
}
