//! Asset inventory: what is installed, runs, listens and is scheduled on the host.
//!
//! Collected from files only (no commands run): Debian packages with versions
//! (/var/lib/dpkg/status), listening TCP sockets with their processes ([`services::listeners`]),
//! users and groups (/etc/passwd, /etc/group), kernel modules (/proc/modules), systemd unit
//! files and which are enabled (the `*.wants` links), and cron entries (/etc/crontab,
//! /etc/cron.d, the per-user spools). Every list is bounded by [`MAX_ITEMS`]. [`delta`] gives
//! what changed between two inventories, per section.
//!
//! [`services::listeners`]: super::services::listeners

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::Serialize;
use serde_json::{Value as Json, json};

use super::services;
use super::shadow::{parse_passwd, read_bounded};

/// Items per section at most.
pub const MAX_ITEMS: usize = 100_000;
/// Items a delta lists per section and direction (the counts are always whole).
pub const MAX_DELTA_ITEMS: usize = 100;
const INVENTORY_FILE: &str = "inventory.json";

/// Where the last pass's inventory is kept in `state_dir`.
pub fn file(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join(INVENTORY_FILE)
}

/// The inventory stored at the last pass in `state_dir` (`None`: none yet, or unreadable).
pub fn load(state_dir: &Path) -> Option<Inventory> {
    load_file(&file(state_dir))
}

/// An inventory stored as JSON at `path`, read within the posture files' size bound (`None`:
/// missing, too large or unreadable).
pub fn load_file(path: &Path) -> Option<Inventory> {
    let text = super::shadow::read_bounded(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Store `inv` in `state_dir` (0600, atomically); returns its size.
pub fn store(state_dir: &Path, inv: &Inventory) -> Result<u64, String> {
    super::store_private_json(state_dir, INVENTORY_FILE, inv)
}

/// One line on what a delta holds: `2 packages added, 1 user removed`.
pub fn summarize(delta: &Json) -> String {
    let mut parts = Vec::new();
    if let Json::Object(sections) = delta {
        // By name, whatever order the JSON map keeps (yara-x turns on serde_json's
        // insertion order for the whole build).
        let mut sections: Vec<(&String, &Json)> = sections.iter().collect();
        sections.sort_by(|a, b| a.0.cmp(b.0));
        for (name, d) in sections {
            for way in ["added", "removed"] {
                let n = d[format!("{way}_count")].as_u64().unwrap_or(0);
                if n > 0 {
                    parts.push(format!("{n} {} {way}", name.replace('_', " ")));
                }
            }
        }
    }
    parts.join(", ")
}

// The sections are the protocol's: the console stores and queries the same types.
pub use ringfence_wire::inventory::{CronEntry, Group, Inventory, Package, Socket, Unit, User};

/// Where to read (tests point these elsewhere).
#[derive(Debug, Clone)]
pub struct Sources<'a> {
    pub root: &'a Path,
    pub proc: &'a Path,
}

fn at(root: &Path, p: &str) -> std::path::PathBuf {
    root.join(p.trim_start_matches('/'))
}

/// Collect the inventory.
pub fn collect(src: &Sources<'_>) -> Inventory {
    let mut inv = Inventory {
        packages: packages(&at(src.root, "/var/lib/dpkg/status")),
        ..Inventory::default()
    };
    let mut listening: Vec<Socket> = services::listeners(src.proc)
        .into_iter()
        .map(|l| Socket {
            address: l.address.to_string(),
            pid: l.pid,
            process: l.process,
        })
        .collect();
    listening.sort();
    listening.dedup();
    listening.truncate(MAX_ITEMS);
    inv.listening = listening;
    if let Ok(text) = read_bounded(&at(src.root, "/etc/passwd")) {
        inv.users = parse_passwd(&text)
            .entries
            .into_iter()
            .take(MAX_ITEMS)
            .map(|e| User {
                name: e.user,
                uid: e.uid,
                gid: e.gid,
                home: e.home,
                shell: e.shell,
            })
            .collect();
    }
    if let Ok(text) = read_bounded(&at(src.root, "/etc/group")) {
        inv.groups = parse_group(&text);
    }
    if let Ok(text) = read_bounded(&src.proc.join("modules")) {
        inv.kernel_modules = text
            .lines()
            .take(MAX_ITEMS)
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        inv.kernel_modules.sort();
    }
    inv.systemd_units = units(src.root);
    inv.cron = cron(src.root);
    inv.canonicalize();
    inv
}

/// Installed packages from dpkg's status file.
pub fn packages(status: &Path) -> Vec<Package> {
    let Ok(text) = fs::read_to_string(status) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut name = None;
        let mut version = None;
        let mut arch = None;
        let mut installed = false;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Architecture: ") {
                arch = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if let (true, Some(n), Some(v)) = (installed, name, version) {
            out.push(Package {
                name: n.to_owned(),
                version: v.to_owned(),
                architecture: arch.unwrap_or("").to_owned(),
            });
            if out.len() >= MAX_ITEMS {
                break;
            }
        }
    }
    out.sort();
    out
}

fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .take(MAX_ITEMS)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let gid = f.get(2)?.parse().ok()?;
            Some(Group {
                name: (*f.first()?).to_owned(),
                gid,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

const UNIT_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/run/systemd/system",
];
const UNIT_SUFFIXES: [&str; 6] = [
    ".service", ".socket", ".timer", ".mount", ".path", ".target",
];

fn units(root: &Path) -> Vec<Unit> {
    let mut enabled: BTreeSet<String> = BTreeSet::new();
    let mut out: Vec<Unit> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for dir in UNIT_DIRS {
        let d = at(root, dir);
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.filter_map(Result::ok).take(MAX_ITEMS) {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.ends_with(".wants") || name.ends_with(".requires") {
                if let Ok(links) = fs::read_dir(&path) {
                    for l in links.filter_map(Result::ok).take(MAX_ITEMS) {
                        enabled.insert(l.file_name().to_string_lossy().into_owned());
                    }
                }
            } else if UNIT_SUFFIXES.iter().any(|s| name.ends_with(s)) && seen.insert(name.clone()) {
                // /dev/null links are masked units: listed, never enabled.
                out.push(Unit {
                    name,
                    path: path.to_string_lossy().into_owned(),
                    enabled: false,
                });
            }
        }
    }
    for u in &mut out {
        u.enabled = enabled.contains(&u.name);
    }
    out.sort();
    out.truncate(MAX_ITEMS);
    out
}

fn cron(root: &Path) -> Vec<CronEntry> {
    let mut files = vec![at(root, "/etc/crontab")];
    for dir in ["/etc/cron.d", "/var/spool/cron/crontabs", "/var/spool/cron"] {
        if let Ok(rd) = fs::read_dir(at(root, dir)) {
            let mut more: Vec<_> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            more.sort();
            files.extend(more);
        }
    }
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = read_bounded(&f) else { continue };
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            // Variable settings (`SHELL=/bin/sh`) are not entries.
            let first = t.split_whitespace().next().unwrap_or("");
            if first.contains('=') {
                continue;
            }
            out.push(CronEntry {
                file: f.to_string_lossy().into_owned(),
                line: i + 1,
                entry: t.to_owned(),
            });
            if out.len() >= MAX_ITEMS {
                return out;
            }
        }
    }
    out
}

/// What changed between two inventories, per section: `{section: {added: [...], removed:
/// [...]}}`, sections without changes left out.
pub fn delta(old: &Inventory, new: &Inventory) -> Json {
    fn items<T: Serialize>(v: &[T]) -> BTreeSet<String> {
        v.iter()
            .filter_map(|x| serde_json::to_string(x).ok())
            .collect()
    }
    fn section<T: Serialize>(
        out: &mut serde_json::Map<String, Json>,
        name: &str,
        a: &[T],
        b: &[T],
    ) {
        let (a, b) = (items(a), items(b));
        let added: Vec<Json> = b
            .difference(&a)
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect();
        let removed: Vec<Json> = a
            .difference(&b)
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect();
        if !added.is_empty() || !removed.is_empty() {
            // A finding carries at most MAX_DELTA_ITEMS each way, and the full counts.
            let (n_added, n_removed) = (added.len(), removed.len());
            let added: Vec<Json> = added.into_iter().take(MAX_DELTA_ITEMS).collect();
            let removed: Vec<Json> = removed.into_iter().take(MAX_DELTA_ITEMS).collect();
            out.insert(
                name.into(),
                json!({"added": added, "removed": removed, "added_count": n_added, "removed_count": n_removed}),
            );
        }
    }
    // A restarted server is the same socket: pids are left out.
    let sockets = |v: &[Socket]| -> Vec<Socket> {
        v.iter()
            .map(|s| Socket {
                pid: None,
                ..s.clone()
            })
            .collect()
    };
    let mut out = serde_json::Map::new();
    section(&mut out, "packages", &old.packages, &new.packages);
    section(
        &mut out,
        "listening",
        &sockets(&old.listening),
        &sockets(&new.listening),
    );
    section(&mut out, "users", &old.users, &new.users);
    section(&mut out, "groups", &old.groups, &new.groups);
    section(
        &mut out,
        "kernel_modules",
        &old.kernel_modules,
        &new.kernel_modules,
    );
    section(
        &mut out,
        "systemd_units",
        &old.systemd_units,
        &new.systemd_units,
    );
    section(&mut out, "cron", &old.cron, &new.cron);
    Json::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_tree_is_inventoried_and_deltas_name_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let w = |p: &str, text: &str| {
            let path = at(r, p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        };
        w(
            "/var/lib/dpkg/status",
            "Package: openssh-server\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:9.2p1-2+deb12u3\n\n\
             Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n",
        );
        w("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
        w("/etc/group", "sudo:x:27:alice,bob\n");
        w(
            "/etc/crontab",
            "SHELL=/bin/sh\n# m h\n17 * * * * root cd / && run-parts /etc/cron.hourly\n",
        );
        w("/etc/systemd/system/app.service", "[Unit]\n");
        w(
            "/etc/systemd/system/multi-user.target.wants/app.service",
            "",
        );
        w("/proc/modules", "nf_tables 1 0 - Live 0x0\n");
        let proc = at(r, "/proc");
        let inv = collect(&Sources {
            root: r,
            proc: &proc,
        });
        assert_eq!(inv.packages.len(), 1);
        assert_eq!(inv.packages[0].version, "1:9.2p1-2+deb12u3");
        assert_eq!(inv.groups[0].members, ["alice", "bob"]);
        assert_eq!(inv.cron.len(), 1);
        assert_eq!(inv.cron[0].line, 3);
        assert_eq!(inv.systemd_units.len(), 1);
        assert!(inv.systemd_units[0].enabled);
        assert_eq!(inv.kernel_modules, ["nf_tables"]);

        let mut next = inv.clone();
        next.kernel_modules.push("evil".into());
        next.listening.push(Socket {
            address: "0.0.0.0:6379".into(),
            pid: Some(1),
            process: Some("redis-server".into()),
        });
        let d = delta(&inv, &next);
        assert_eq!(
            d["kernel_modules"],
            json!({"added": ["evil"], "removed": [], "added_count": 1, "removed_count": 0})
        );
        assert_eq!(summarize(&d), "1 kernel modules added, 1 listening added");
        let state = r.join("state");
        store(&state, &next).unwrap();
        let back = load(&state).unwrap();
        // A restarted server (new pid) is no change.
        let mut restarted = back.clone();
        restarted.listening[0].pid = Some(2);
        assert_eq!(delta(&back, &restarted), json!({}));
    }
}
