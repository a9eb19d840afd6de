//! The host's inventory sent to the console: whole the first time, then only what changed.
//!
//! The posture thread collects the inventory and stores it (`inventory.json` in its state
//! directory, see [`crate::posture::inventory`]); this side only reads that file. When the
//! file's digest differs from the one the console last acknowledged, the link sends the delta
//! from the acknowledged inventory, kept in `inventory.acked.json` beside the enrollment (0600),
//! so a restart does not resend everything. A console that holds another base answers 409,
//! and the next upload is the whole inventory. Failures are retried at the next check-in;
//! an inventory is information, never a reason to hold up check-ins or findings.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ringfence_wire::inventory::{Inventory, InventoryBody, InventoryDelta, InventoryUpload};
use ringfence_wire::{AgentId, PROTOCOL};

const ACKED_FILE: &str = "inventory.acked.json";

/// What the link keeps between check-ins.
pub struct InventorySync {
    /// Posture's `inventory.json` (`None`: the inventory check is off).
    source: Option<PathBuf>,
    /// Where the acknowledged inventory is kept.
    state_dir: PathBuf,
    /// The acknowledged inventory and its digest.
    acked: Option<(Inventory, String)>,
    /// The source's modification time when it was last read and found sent.
    seen: Option<SystemTime>,
    /// Send the whole inventory next (the console holds another base).
    send_full: bool,
}

/// What one upload carried, for the link's report and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Full { items: usize },
    Delta { items: usize },
}

impl InventorySync {
    pub fn new(source: Option<PathBuf>, state_dir: &Path) -> InventorySync {
        let acked =
            crate::posture::inventory::load_file(&state_dir.join(ACKED_FILE)).map(|mut inv| {
                inv.canonicalize();
                let sha = inv.sha256();
                (inv, sha)
            });
        InventorySync {
            source,
            state_dir: state_dir.to_owned(),
            acked,
            seen: None,
            send_full: false,
        }
    }

    /// The upload due now, if the inventory changed since the console acknowledged it.
    pub fn due(&mut self, agent_id: &AgentId) -> Option<(InventoryUpload, Inventory)> {
        let source = self.source.as_ref()?;
        let modified = std::fs::metadata(source).and_then(|m| m.modified()).ok()?;
        if self.seen == Some(modified) && !self.send_full {
            return None;
        }
        let mut now = crate::posture::inventory::load_file(source)?;
        now.canonicalize();
        let sha = now.sha256();
        let body = match &self.acked {
            Some((_, acked_sha)) if *acked_sha == sha => {
                self.seen = Some(modified);
                return None;
            }
            Some((acked, acked_sha)) if !self.send_full => InventoryBody::Delta {
                base_sha256: acked_sha.clone(),
                delta: InventoryDelta::between(acked, &now),
            },
            _ => InventoryBody::Full {
                inventory: now.clone(),
            },
        };
        let upload = InventoryUpload {
            protocol: PROTOCOL,
            agent_id: agent_id.clone(),
            sha256: sha,
            body,
        };
        Some((upload, now))
    }

    /// The console took `upload` (its answer named `held`, the digest it now holds).
    pub fn accepted(&mut self, upload: &InventoryUpload, inventory: Inventory, held: &str) -> Sent {
        let sent = match &upload.body {
            InventoryBody::Full { inventory } => Sent::Full {
                items: inventory.len(),
            },
            InventoryBody::Delta { delta, .. } => Sent::Delta { items: delta.len() },
        };
        if held != upload.sha256 {
            // Not what was sent: start again from the whole inventory.
            self.send_full = true;
            return sent;
        }
        if let Err(e) = crate::posture::store_private_json(&self.state_dir, ACKED_FILE, &inventory)
        {
            tracing::warn!(error = %e, "keeping the acknowledged inventory; the next upload is whole");
        }
        self.acked = Some((inventory, upload.sha256.clone()));
        self.send_full = false;
        self.seen = self
            .source
            .as_ref()
            .and_then(|s| std::fs::metadata(s).and_then(|m| m.modified()).ok());
        sent
    }

    /// The console holds another base (409): the next upload is the whole inventory.
    pub fn conflict(&mut self) {
        self.send_full = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_wire::inventory::Package;

    fn write(path: &Path, packages: &[(&str, &str)]) {
        let inv = Inventory {
            packages: packages
                .iter()
                .map(|(n, v)| Package {
                    name: (*n).into(),
                    version: (*v).into(),
                    architecture: "amd64".into(),
                })
                .collect(),
            ..Inventory::default()
        };
        std::fs::write(path, serde_json::to_vec(&inv).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        // A later write must look newer than the one before.
        let later = SystemTime::now() + std::time::Duration::from_secs(1);
        let f = std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("{e}"));
        f.set_modified(later).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn whole_first_then_deltas_and_whole_again_after_a_conflict_or_restart_keeps_the_base() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let source = dir.path().join("inventory.json");
        let agent = AgentId::try_from("0123456789abcdef0123456789abcdef".to_owned())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut sync = InventorySync::new(Some(source.clone()), dir.path());
        assert!(sync.due(&agent).is_none(), "no inventory yet");
        write(&source, &[("curl", "1"), ("openssh-server", "1:9.2p1-2")]);
        let (up, inv) = sync.due(&agent).unwrap_or_else(|| panic!("nothing due"));
        assert!(matches!(up.body, InventoryBody::Full { .. }));
        let sha = up.sha256.clone();
        assert_eq!(sync.accepted(&up, inv, &sha), Sent::Full { items: 2 });
        assert!(sync.due(&agent).is_none(), "unchanged");

        write(
            &source,
            &[("curl", "1"), ("openssh-server", "1:9.2p1-2+deb12u3")],
        );
        let (up, inv) = sync.due(&agent).unwrap_or_else(|| panic!("nothing due"));
        assert!(matches!(up.body, InventoryBody::Delta { .. }), "{up:?}");
        sync.conflict();
        let (again, _) = sync.due(&agent).unwrap_or_else(|| panic!("nothing due"));
        assert!(matches!(again.body, InventoryBody::Full { .. }));
        let sha = up.sha256.clone();
        assert_eq!(sync.accepted(&up, inv, &sha), Sent::Delta { items: 2 });

        // A restart keeps the acknowledged base: the next change is a delta again.
        let mut restarted = InventorySync::new(Some(source.clone()), dir.path());
        assert!(restarted.due(&agent).is_none(), "what the console holds");
        write(
            &source,
            &[("curl", "2"), ("openssh-server", "1:9.2p1-2+deb12u3")],
        );
        let (up, _) = restarted
            .due(&agent)
            .unwrap_or_else(|| panic!("nothing due"));
        assert!(matches!(up.body, InventoryBody::Delta { .. }), "{up:?}");
    }
}
