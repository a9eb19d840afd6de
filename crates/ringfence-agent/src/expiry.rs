//! Expired update metadata. Signed metadata expires so that a replayed, stale update cannot be
//! passed off as current; it must not take hosts down (FleetDM, Wazuh and Velociraptor each had
//! fleet-wide outages from expired update metadata or roots). An agent whose active content
//! bundle's metadata (timestamp, snapshot, targets) or running agent release has expired keeps
//! running it — the content manager reloads its own accepted bundle without enforcing expiry,
//! and the supervisor runs whatever `current` names — and says so: each line here names the
//! file and the expiry, and becomes a health finding (the fleet link) and a `ringfence doctor`
//! line.

use std::path::Path;

use ringfence_content::metadata::Role;
use ringfence_content::{ContentStore, Limits, SignedBundle, UnixTime};

use crate::versions::VersionStore;

/// The largest active bundle read to look at its metadata.
const MAX_BUNDLE_BYTES: u64 = 256 * 1024 * 1024;

/// Every expired-metadata line for the content store in `content_state` and the versions
/// directory `versions`, at `now`. Unreadable stores say nothing here (they are reported where
/// they are used).
pub fn expired(
    content_state: Option<&Path>,
    versions: Option<&Path>,
    now: UnixTime,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(dir) = content_state
        && let Some(line) = expired_content(dir, now)
    {
        out.push(line);
    }
    if let Some(dir) = versions
        && dir.is_dir()
        && let Ok(store) = VersionStore::open(dir)
        && let Some(line) = store.expired(now)
    {
        out.push(line);
    }
    out
}

/// A line when the active bundle's timestamp, snapshot or targets metadata has expired.
pub fn expired_content(state_dir: &Path, now: UnixTime) -> Option<String> {
    if !state_dir.join("state.json").exists() {
        return None;
    }
    let store = ContentStore::open(state_dir).ok()?;
    let version = store.state().ok()?.active?;
    let path = store.bundle_path(version);
    let bytes = store.read_bundle(version, MAX_BUNDLE_BYTES).ok()?;
    let signed = SignedBundle::decode(&bytes, &Limits::default()).ok()?;
    let earliest = [
        (Role::Timestamp, &signed.timestamp),
        (Role::Snapshot, &signed.snapshot),
        (Role::Targets, &signed.targets),
    ]
    .into_iter()
    .filter_map(|(role, raw)| {
        // The agent's own accepted bundle: its metadata verified when it was accepted.
        let env: serde_json::Value = serde_json::from_slice(raw).ok()?;
        let at = UnixTime::parse(env.get("signed")?.get("expires")?.as_str()?)?;
        Some((at, role))
    })
    .min_by_key(|(at, _)| *at)?;
    let (at, role) = earliest;
    (at <= now).then(|| {
        format!(
            "{}: the active content bundle v{version}'s {role} metadata expired at {at} (now \
             {now}); the agent keeps running it, but a fresh bundle is overdue (`ringfence \
             content build`, then a rollout)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_said_without_stores() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(
            expired(
                Some(tmp.path()),
                Some(&tmp.path().join("none")),
                UnixTime(0)
            )
            .is_empty()
        );
        assert!(expired(None, None, UnixTime(0)).is_empty());
    }
}
