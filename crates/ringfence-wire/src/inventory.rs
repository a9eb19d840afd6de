//! A host's asset inventory as the agent and the console share it: the sections (packages,
//! listening sockets, users, groups, kernel modules, systemd units, cron entries), their
//! canonical form and digest, and the upload that carries them, whole or as a delta.
//!
//! **Canonical form.** Every section sorted and without duplicates ([`Inventory::canonicalize`]);
//! the digest is SHA-256 over its JSON ([`Inventory::sha256`]). Both ends compute it the same
//! way, so a delta is applied only to the very inventory it was made from.
//!
//! **Sync.** The agent keeps the last inventory the console acknowledged. When the host's
//! inventory changes it sends only what was added and removed, naming the digest of the base
//! and of the result ([`InventoryBody::Delta`]); the console applies it when its stored digest
//! is that base and the result has the announced digest, and answers 409 otherwise, after
//! which the agent sends the whole inventory ([`InventoryBody::Full`]). A typical delta (a
//! package upgrade) is a few hundred bytes against about 100 KB for a whole inventory.
//!
//! Bounded: the body is limited to [`limits::INVENTORY_BYTES`](crate::limits::INVENTORY_BYTES)
//! before parsing, and [`InventoryUpload::parse`] refuses more than [`MAX_ITEMS`] items in a
//! section (of the result too, for a delta) and a digest that is not 64 hex characters.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::types::{AgentId, limits};

/// Items per section at most.
pub const MAX_ITEMS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Socket {
    pub address: String,
    pub pid: Option<u32>,
    pub process: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Unit {
    pub name: String,
    pub path: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CronEntry {
    pub file: String,
    pub line: usize,
    pub entry: String,
}

/// Added and removed items of one section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct SectionDelta<T> {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<T>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<T>,
}

impl<T> Default for SectionDelta<T> {
    fn default() -> Self {
        SectionDelta {
            added: Vec::new(),
            removed: Vec::new(),
        }
    }
}

impl<T: Ord + Clone> SectionDelta<T> {
    fn between(old: &[T], new: &[T]) -> Self {
        let old: BTreeSet<&T> = old.iter().collect();
        let new: BTreeSet<&T> = new.iter().collect();
        SectionDelta {
            added: new.difference(&old).map(|t| (*t).clone()).collect(),
            removed: old.difference(&new).map(|t| (*t).clone()).collect(),
        }
    }

    fn apply(&self, base: &[T]) -> Vec<T> {
        let mut set: BTreeSet<T> = base.iter().cloned().collect();
        for t in &self.removed {
            set.remove(t);
        }
        set.extend(self.added.iter().cloned());
        set.into_iter().collect()
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    fn len(&self) -> usize {
        self.added.len().saturating_add(self.removed.len())
    }
}

/// The same code for every section, so a section added to [`Inventory`] cannot be left out of
/// the digest's canonical form, the delta or the bounds.
macro_rules! sections {
    ($($name:ident: $item:ty),+ $(,)?) => {
        /// One host's inventory.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Inventory {
            $(#[serde(default)] pub $name: Vec<$item>,)+
        }

        /// What changed between two inventories, per section.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct InventoryDelta {
            $(#[serde(default, skip_serializing_if = "SectionDelta::is_empty")]
            pub $name: SectionDelta<$item>,)+
        }

        impl Inventory {
            /// Sort every section and drop duplicates.
            pub fn canonicalize(&mut self) {
                $(self.$name.sort(); self.$name.dedup();)+
            }

            /// The largest section's length, and its name.
            pub fn largest_section(&self) -> (usize, &'static str) {
                let mut largest = (0, "");
                $(if self.$name.len() > largest.0 { largest = (self.$name.len(), stringify!($name)); })+
                largest
            }

            /// Items in every section together.
            pub fn len(&self) -> usize {
                0usize $(.saturating_add(self.$name.len()))+
            }

            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }
        }

        impl InventoryDelta {
            /// What turns `old` into `new` (both canonical).
            pub fn between(old: &Inventory, new: &Inventory) -> InventoryDelta {
                InventoryDelta { $($name: SectionDelta::between(&old.$name, &new.$name),)+ }
            }

            /// `base` with this delta applied, canonical.
            pub fn apply(&self, base: &Inventory) -> Inventory {
                Inventory { $($name: self.$name.apply(&base.$name),)+ }
            }

            pub fn is_empty(&self) -> bool {
                true $(&& self.$name.is_empty())+
            }

            /// Items added and removed, every section together.
            pub fn len(&self) -> usize {
                0usize $(.saturating_add(self.$name.len()))+
            }

            fn largest_section(&self) -> (usize, &'static str) {
                let mut largest = (0, "");
                $(if self.$name.len() > largest.0 { largest = (self.$name.len(), stringify!($name)); })+
                largest
            }
        }
    };
}

sections! {
    packages: Package,
    listening: Socket,
    users: User,
    groups: Group,
    kernel_modules: String,
    systemd_units: Unit,
    cron: CronEntry,
}

impl Inventory {
    /// SHA-256 of the JSON of this inventory, lowercase hex. Canonicalize first: both ends
    /// hash the canonical form.
    pub fn sha256(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }
}

/// `POST` [`paths::INVENTORY`](crate::paths::INVENTORY) with the agent's credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryUpload {
    pub protocol: u16,
    pub agent_id: AgentId,
    /// The digest of the inventory after this upload (canonical form).
    pub sha256: String,
    pub body: InventoryBody,
}

/// The whole inventory, or what changed since the one the console acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InventoryBody {
    Full {
        inventory: Inventory,
    },
    Delta {
        /// The digest of the inventory this delta applies to.
        base_sha256: String,
        delta: InventoryDelta,
    },
}

/// The console's answer: the digest it now holds for the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryAccepted {
    pub sha256: String,
}

fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl InventoryUpload {
    /// Parse an upload body: at most [`limits::INVENTORY_BYTES`], digests of 64 lowercase hex
    /// characters, at most [`MAX_ITEMS`] items per section.
    pub fn parse(body: &[u8]) -> Result<InventoryUpload, String> {
        if body.len() > limits::INVENTORY_BYTES {
            return Err(format!(
                "inventory body of {} bytes exceeds {}",
                body.len(),
                limits::INVENTORY_BYTES
            ));
        }
        let upload: InventoryUpload = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if !is_digest(&upload.sha256) {
            return Err("sha256 must be 64 lowercase hex characters".into());
        }
        let (items, section) = match &upload.body {
            InventoryBody::Full { inventory } => inventory.largest_section(),
            InventoryBody::Delta { base_sha256, delta } => {
                if !is_digest(base_sha256) {
                    return Err("base_sha256 must be 64 lowercase hex characters".into());
                }
                delta.largest_section()
            }
        };
        if items > MAX_ITEMS {
            return Err(format!(
                "section {section} has {items} items, more than {MAX_ITEMS}"
            ));
        }
        Ok(upload)
    }
}

/// Checks a delta's result against the upload: the base digest must be what the console holds
/// and the result must have the announced digest and stay within [`MAX_ITEMS`] per section.
pub fn apply_delta(
    held: &Inventory,
    held_sha256: &str,
    base_sha256: &str,
    delta: &InventoryDelta,
    announced_sha256: &str,
) -> Result<Inventory, String> {
    if held_sha256 != base_sha256 {
        return Err(format!(
            "delta is for inventory {base_sha256}, the console holds {held_sha256}"
        ));
    }
    let result = delta.apply(held);
    let (items, section) = result.largest_section();
    if items > MAX_ITEMS {
        return Err(format!(
            "section {section} would have {items} items, more than {MAX_ITEMS}"
        ));
    }
    let got = result.sha256();
    if got != announced_sha256 {
        return Err(format!(
            "delta result has digest {got}, the upload announced {announced_sha256}"
        ));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
        }
    }

    fn inventory(packages: &[(&str, &str)]) -> Inventory {
        let mut inv = Inventory {
            packages: packages.iter().map(|(n, v)| pkg(n, v)).collect(),
            kernel_modules: vec!["ext4".into(), "nf_tables".into()],
            ..Inventory::default()
        };
        inv.canonicalize();
        inv
    }

    #[test]
    fn a_delta_turns_the_old_inventory_into_the_new_one_with_the_same_digest() {
        let old = inventory(&[("openssh-server", "1:9.2p1-2"), ("curl", "7.88.1-10")]);
        let new = inventory(&[
            ("openssh-server", "1:9.2p1-2+deb12u3"),
            ("curl", "7.88.1-10"),
        ]);
        let delta = InventoryDelta::between(&old, &new);
        assert_eq!(delta.len(), 2, "{delta:?}");
        let applied = match apply_delta(&old, &old.sha256(), &old.sha256(), &delta, &new.sha256()) {
            Ok(i) => i,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(applied, new);
        let json = serde_json::to_string(&delta).unwrap_or_default();
        assert!(
            json.len() < 300 && !json.contains("kernel_modules"),
            "{json}"
        );
    }

    #[test]
    fn the_digest_does_not_depend_on_the_order_items_were_found_in() {
        let mut a = inventory(&[("a", "1"), ("b", "2")]);
        let mut b = Inventory {
            packages: vec![pkg("b", "2"), pkg("a", "1"), pkg("a", "1")],
            kernel_modules: vec!["nf_tables".into(), "ext4".into()],
            ..Inventory::default()
        };
        a.canonicalize();
        b.canonicalize();
        assert_eq!(a.sha256(), b.sha256());
    }

    #[test]
    fn a_delta_for_another_base_or_with_a_false_digest_is_refused() {
        let old = inventory(&[("a", "1")]);
        let new = inventory(&[("a", "2")]);
        let delta = InventoryDelta::between(&old, &new);
        let other = inventory(&[("z", "9")]);
        assert!(
            apply_delta(
                &other,
                &other.sha256(),
                &old.sha256(),
                &delta,
                &new.sha256()
            )
            .is_err()
        );
        assert!(apply_delta(&old, &old.sha256(), &old.sha256(), &delta, &other.sha256()).is_err());
    }

    #[test]
    fn uploads_out_of_bounds_are_refused_before_use() {
        let agent = AgentId::try_from("0123456789abcdef0123456789abcdef".to_owned())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut upload = InventoryUpload {
            protocol: 1,
            agent_id: agent,
            sha256: "AB".repeat(32),
            body: InventoryBody::Full {
                inventory: Inventory::default(),
            },
        };
        let body = serde_json::to_vec(&upload).unwrap_or_default();
        assert!(InventoryUpload::parse(&body).is_err(), "upper-case digest");
        upload.sha256 = "ab".repeat(32);
        upload.body = InventoryBody::Full {
            inventory: Inventory {
                kernel_modules: (0..=MAX_ITEMS).map(|i| i.to_string()).collect(),
                ..Inventory::default()
            },
        };
        let body = serde_json::to_vec(&upload).unwrap_or_default();
        assert!(body.len() < limits::INVENTORY_BYTES);
        match InventoryUpload::parse(&body) {
            Err(e) => assert!(e.contains("kernel_modules"), "{e}"),
            Ok(_) => panic!("accepted {} modules", MAX_ITEMS + 1),
        }
        let huge = vec![b' '; limits::INVENTORY_BYTES + 1];
        assert!(InventoryUpload::parse(&huge).is_err());
    }
}
