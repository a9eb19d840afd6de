//! The agent's enrollment, kept in its state directory as `fleet.json` (mode 0600): the console
//! it enrolled with, its id and credential, and how many of the supervisor's crash counts the
//! console has already acknowledged. Written by replacing the file, so a crash mid-write leaves
//! the old one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ringfence_wire::{AgentId, CaPin, Client, Credential, EnrollRequest, Label, PROTOCOL, Tags};
use serde::{Deserialize, Serialize};

use crate::content::manager::read_small;

/// File name inside the state directory.
pub const FILE_NAME: &str = "fleet.json";

/// What the agent keeps between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// The console's base URL at enrollment.
    pub console: String,
    /// The CA pins trusted at enrollment: the fleet's identity. A console of the same fleet
    /// (another URL, same CA) keeps the enrollment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_pins: Vec<CaPin>,
    pub agent_id: AgentId,
    pub credential: Credential,
    /// Worker crashes the console has acknowledged, as counted by the supervisor with this pid
    /// (a new supervisor starts counting at zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crashes_reported: Option<SupervisorCount>,
    /// The agent's own TLS key and the client certificate the console issued for it (mutual
    /// TLS), PEM. The key was made on this host and never left it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsIdentity>,
}

/// An agent's key and client certificate, PEM (kept only in the 0600 state file).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsIdentity {
    pub key_pem: String,
    pub cert_pem: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity(..)")
    }
}

/// Who is enrolling, with what, and where the result is kept.
#[derive(Debug, Clone)]
pub struct EnrollAs {
    pub console: String,
    pub ca_pins: Vec<CaPin>,
    pub token: String,
    pub hostname: Label,
    pub agent_version: Label,
    pub tags: Tags,
    pub state_file: std::path::PathBuf,
    pub crashes_reported: Option<SupervisorCount>,
}

/// Trade the enrollment token for an identity and keep it (0600) in `state_file`. The token
/// itself is not kept.
pub async fn enroll(client: &Client, who: EnrollAs) -> Result<Enrollment, String> {
    // Over TLS the agent makes its own key and asks for a client certificate on it.
    let key = if who.ca_pins.is_empty() {
        None
    } else {
        Some(ringfence_wire::tls::AgentIdentity::new_key().map_err(|e| e.to_string())?)
    };
    let request = EnrollRequest {
        protocol: PROTOCOL,
        token: who.token,
        hostname: who.hostname,
        agent_version: who.agent_version,
        tags: who.tags,
        csr_pem: key.as_ref().map(|(_, csr)| csr.clone()),
    };
    let response = client
        .enroll(&request)
        .await
        .map_err(|e| format!("enrollment: {e}"))?;
    let tls = match (key, response.client_cert_pem) {
        (Some((key_pem, _)), Some(cert_pem)) => Some(TlsIdentity { key_pem, cert_pem }),
        _ => None,
    };
    let enrollment = Enrollment {
        console: who.console,
        ca_pins: who.ca_pins,
        agent_id: response.agent_id,
        credential: response.credential,
        crashes_reported: who.crashes_reported,
        tls,
    };
    enrollment.save(&who.state_file).map_err(|e| {
        format!(
            "enrolled, but cannot save the credential to {}: {e}",
            who.state_file.display()
        )
    })?;
    Ok(enrollment)
}

/// A supervisor's running count of worker crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorCount {
    pub supervisor_pid: u32,
    pub crashes: u64,
}

impl Enrollment {
    /// The saved enrollment; `Ok(None)` when there is none. A file that cannot be read or
    /// parsed is an error naming it (the caller enrolls again if it has a token).
    pub fn load(path: &Path) -> Result<Option<Enrollment>, String> {
        if !path.exists() {
            return Ok(None);
        }
        let bytes = read_small(path, 64 * 1024).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Replace the saved enrollment.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// The agent's TLS identity, when it has one that parses.
    pub fn identity(&self) -> Option<ringfence_wire::tls::AgentIdentity> {
        let t = self.tls.as_ref()?;
        match ringfence_wire::tls::AgentIdentity::from_pem(&t.key_pem, &t.cert_pem) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(error = %e, "the agent's client certificate is unreadable");
                None
            }
        }
    }

    /// Does a link trusting `pins` talk to the fleet this agent enrolled with?
    pub fn same_fleet(&self, pins: &[CaPin]) -> bool {
        self.ca_pins.iter().any(|p| pins.contains(p))
    }

    /// Crashes to report now, given the supervisor's count at this worker's start.
    pub fn unreported_crashes(&self, current: Option<SupervisorCount>) -> u64 {
        match (current, self.crashes_reported) {
            (Some(now), Some(done)) if now.supervisor_pid == done.supervisor_pid => {
                now.crashes.saturating_sub(done.crashes)
            }
            (Some(now), _) => now.crashes,
            (None, _) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enrollment() -> Enrollment {
        let id = AgentId::try_from("0123456789abcdef0123456789abcdef".to_owned()).unwrap();
        Enrollment {
            console: "https://127.0.0.1:8650".into(),
            ca_pins: vec![CaPin::of(b"ca")],
            credential: Credential::new(&id, &"ab".repeat(32)).unwrap(),
            agent_id: id,
            crashes_reported: None,
            tls: None,
        }
    }

    #[test]
    fn saves_privately_and_loads_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(Enrollment::load(&path), Ok(None));
        let e = enrollment();
        e.save(&path).unwrap();
        assert_eq!(Enrollment::load(&path), Ok(Some(e)));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, b"{\"console\": 3}").unwrap();
        let err = Enrollment::load(&path).unwrap_err();
        assert!(err.contains(FILE_NAME), "{err}");
    }

    #[test]
    fn crashes_count_from_what_this_supervisor_already_reported() {
        let mut e = enrollment();
        let now = |crashes| {
            Some(SupervisorCount {
                supervisor_pid: 7,
                crashes,
            })
        };
        assert_eq!(e.unreported_crashes(now(3)), 3);
        e.crashes_reported = now(2);
        assert_eq!(e.unreported_crashes(now(3)), 1);
        // Another supervisor: its count starts over.
        e.crashes_reported = Some(SupervisorCount {
            supervisor_pid: 6,
            crashes: 9,
        });
        assert_eq!(e.unreported_crashes(now(3)), 3);
        assert_eq!(e.unreported_crashes(None), 0);
    }
}
