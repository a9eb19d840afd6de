//! A read-only snapshot of what the check-in path needs to answer "which content may this agent
//! run now": the fleet baseline, published content, rollback pins, and the active rollout's
//! ring memberships and windows; and the same for agent releases (their own baseline, pins and
//! active rollout: content and agent versions are governed separately).
//!
//! The snapshot is a cache of database rows, not state: every change bumps `fleet.revision` in
//! the same transaction, the console that made the change reloads at once, and every console
//! polls the revision (one single-row read a second) and reloads when it moved. So several
//! consoles behind a load balancer converge within a second, and a check-in costs no reads.

use std::collections::HashMap;
use std::sync::Arc;

use ringfence_wire::{ContentOffer, Label, ReleaseOffer};

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

impl ActiveRollout {
    /// Should `agent` get this rollout's version now? Only ring members, and only while the
    /// rollout delivers in the member's ring window (or the emergency flag is set); a member
    /// that already has it keeps it.
    fn delivers_to(&self, agent: &str, tz_offset_min: i64, has_it: bool, now: Millis) -> bool {
        let Some(&ring) = self.members.get(agent) else {
            return false;
        };
        let window_open = self
            .windows
            .get(ring)
            .copied()
            .flatten()
            .is_none_or(|w| w.is_open(now, tz_offset_min));
        has_it || (self.delivering && (self.emergency || window_open))
    }
}

/// Everything the check-in path reads.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub revision: i64,
    pub baseline: i64,
    pub content: HashMap<i64, ContentOffer>,
    pub pins: HashMap<String, i64>,
    pub rollout: Option<ActiveRollout>,
    /// The agent release (by `releases.seq`) every agent may run outside rollouts; 0: none
    /// (agents run their packages' binaries).
    pub release_baseline: i64,
    pub releases: HashMap<i64, ReleaseOffer>,
    /// Releases as published (not rollback re-offers), by version label.
    pub release_labels: HashMap<String, i64>,
    /// Per-agent release pins: (seq, hold). A pin replaces the baseline: rollback pins point at a
    /// re-offer of the previous release, hold pins keep a plan's `[[pin]]` group on it.
    pub release_pins: HashMap<String, (i64, bool)>,
    pub agent_rollout: Option<ActiveRollout>,
}

impl Snapshot {
    /// The sequence number of the release published as `label`.
    pub fn release_seq(&self, label: &str) -> Option<i64> {
        self.release_labels.get(label).copied()
    }

    /// The agent release this agent should run now (`None`: keep what runs).
    pub fn offer_release(
        &self,
        agent: &str,
        tz_offset_min: i64,
        running: &str,
        now: Millis,
    ) -> Option<&ReleaseOffer> {
        let mut v = self
            .release_pins
            .get(agent)
            .map_or(self.release_baseline, |(seq, _)| *seq);
        if let Some(r) = &self.agent_rollout {
            let has_it = self
                .releases
                .get(&r.to_version)
                .is_some_and(|o| o.version.as_str() == running);
            if r.delivers_to(agent, tz_offset_min, has_it, now) {
                v = r.to_version;
            }
        }
        self.releases.get(&v)
    }

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
            && r.delivers_to(agent, tz_offset_min, current >= r.to_version, now)
        {
            v = v.max(r.to_version);
        }
        self.content.get(&v)
    }

    /// Load from the database.
    pub async fn load(db: &Db) -> AppResult<Snapshot> {
        type ReleaseRow = (i64, String, String, String, i64, Option<i64>);
        let (revision, baseline, content, pins, rollouts, members, releases) = on_db!(db, |pool| {
            let (revision, baseline, release_baseline): (i64, i64, i64) = sqlx::query_as(
                "SELECT revision, baseline_version, release_baseline FROM fleet WHERE id = 1",
            )
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
            let rollouts: Vec<(i64, i64, String, i64, String, i64)> = sqlx::query_as(
                "SELECT id, to_version, state, emergency, plan, active FROM rollouts WHERE active IS NOT NULL",
            )
            .fetch_all(pool)
            .await?;
            let mut members: HashMap<i64, Vec<(String, i64)>> = HashMap::new();
            for (id, ..) in &rollouts {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT agent_id, ring FROM ring_members WHERE rollout_id = $1 AND role = 'ring'",
                )
                .bind(id)
                .fetch_all(pool)
                .await?;
                members.insert(*id, rows);
            }
            let releases: Vec<ReleaseRow> =
                sqlx::query_as("SELECT seq, version, file, sha256, size, carries FROM releases")
                    .fetch_all(pool)
                    .await?;
            let release_pins: Vec<(String, i64, i64)> =
                sqlx::query_as("SELECT agent_id, seq, hold FROM release_pins")
                    .fetch_all(pool)
                    .await?;
            (
                revision,
                baseline,
                content,
                pins,
                rollouts,
                members,
                (release_baseline, releases, release_pins),
            )
        });
        let (release_baseline, release_rows, release_pins) = releases;
        let mut release_labels = HashMap::new();
        let mut releases = HashMap::new();
        for (seq, version, file, sha256, size, carries) in release_rows {
            let Ok(label) = Label::try_from(version) else {
                continue;
            };
            if carries.is_none() {
                release_labels.insert(label.to_string(), seq);
            }
            releases.insert(
                seq,
                ReleaseOffer {
                    version: label,
                    url: format!("/releases/{file}"),
                    sha256,
                    size: size.unsigned_abs(),
                },
            );
        }
        let mut members = members;
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
        let mut rollout = None;
        let mut agent_rollout = None;
        for (id, to_version, st, emergency, plan, slot) in rollouts {
            // A stored plan was parsed before it was stored; if it no longer parses, deliver
            // in no window rather than everywhere.
            let windows = match Plan::parse(&plan) {
                Ok(p) => p.rings.iter().map(|r| r.window).collect(),
                Err(_) => Vec::new(),
            };
            let parsed_ok = !windows.is_empty();
            let active = ActiveRollout {
                id,
                to_version,
                delivering: st == state::RUNNING && parsed_ok,
                emergency: emergency != 0,
                windows,
                members: members
                    .remove(&id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(a, ring)| (a, usize::try_from(ring).unwrap_or(usize::MAX)))
                    .collect(),
            };
            if slot == crate::rollout::Kind::Agent.slot() {
                agent_rollout = Some(active);
            } else {
                rollout = Some(active);
            }
        }
        Ok(Snapshot {
            revision,
            baseline,
            content,
            pins: pins.into_iter().collect(),
            rollout,
            release_baseline,
            releases,
            release_labels,
            release_pins: release_pins
                .into_iter()
                .map(|(a, seq, hold)| (a, (seq, hold != 0)))
                .collect(),
            agent_rollout,
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
            ..Snapshot::default()
        }
    }

    fn release(seq: i64, label: &str) -> (i64, ReleaseOffer) {
        (
            seq,
            ReleaseOffer {
                version: Label::try_from(label).unwrap(),
                url: format!("/releases/{seq}.release"),
                sha256: String::new(),
                size: 1,
            },
        )
    }

    #[test]
    fn agent_releases_roll_out_apart_from_content() {
        let mut s = snap();
        s.release_baseline = 1;
        s.releases = [
            release(1, "0.2.0"),
            release(2, "0.3.0"),
            release(3, "0.2.0"),
        ]
        .into();
        s.agent_rollout = Some(ActiveRollout {
            id: 2,
            to_version: 2,
            delivering: true,
            emergency: false,
            windows: vec![None],
            members: [("b".to_owned(), 0)].into(),
        });
        let v = |s: &Snapshot, a: &str, running: &str| {
            s.offer_release(a, 0, running, 0)
                .map(|o| o.version.to_string())
        };
        // `a` is in the content ring only, `b` in the agent ring only.
        assert_eq!(v(&s, "a", "0.2.0").as_deref(), Some("0.2.0"));
        assert_eq!(v(&s, "b", "0.2.0").as_deref(), Some("0.3.0"));
        assert_eq!(s.offer("a", 0, 1, 0).unwrap().version, 2);
        assert_eq!(s.offer("b", 0, 1, 0).unwrap().version, 1);
        // A halted agent rollout offers nothing new; a member that has it keeps it until a
        // rollback pin re-offers the previous release.
        s.agent_rollout.as_mut().unwrap().delivering = false;
        assert_eq!(v(&s, "b", "0.2.0").as_deref(), Some("0.2.0"));
        assert_eq!(v(&s, "b", "0.3.0").as_deref(), Some("0.3.0"));
        s.agent_rollout = None;
        s.release_pins.insert("b".into(), (3, false));
        assert_eq!(
            s.offer_release("b", 0, "0.3.0", 0).unwrap().url,
            "/releases/3.release"
        );
        // No baseline and no rollout: nothing is offered (agents keep their packages' binary).
        assert_eq!(Snapshot::default().offer_release("a", 0, "0.1.0", 0), None);
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
