//! Blocking addresses with nftables, in a table of our own, with expiry done by the kernel.
//!
//! Everything lives in table `inet ringfence`: two sets of addresses with the `timeout` flag
//! (so a block lifts itself when its time is up, even if the agent is gone) and two chains that
//! drop traffic from and to them. Nothing outside that table is touched; deleting the table
//! removes every trace. With a network namespace configured, `nft` runs inside it.

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The table name, shared with tests and `doctor`.
pub const TABLE: &str = "ringfence";

/// An `nft` failure with its stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallError(pub String);

impl fmt::Display for FirewallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nft: {}", self.0)
    }
}

impl std::error::Error for FirewallError {}

/// Drives `nft`.
#[derive(Debug, Clone)]
pub struct Firewall {
    netns: Option<String>,
}

fn set_for(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "blocked_v4"
    } else {
        "blocked_v6"
    }
}

impl Firewall {
    pub fn new(netns: Option<String>) -> Firewall {
        Firewall { netns }
    }

    fn command(&self) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nft"]);
                c
            }
            None => Command::new("nft"),
        }
    }

    /// Run an nft script given on stdin.
    fn run_script(&self, script: &str) -> Result<(), FirewallError> {
        let mut child = self
            .command()
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| FirewallError(format!("cannot run nft: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| FirewallError(e.to_string()))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| FirewallError(e.to_string()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(FirewallError(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ))
        }
    }

    /// Create the table, sets and chains if they are missing (idempotent).
    pub fn ensure_table(&self) -> Result<(), FirewallError> {
        self.run_script(&format!(
            "table inet {TABLE} {{
  set blocked_v4 {{ type ipv4_addr; flags timeout; }}
  set blocked_v6 {{ type ipv6_addr; flags timeout; }}
  chain input {{ type filter hook input priority -10; policy accept;
    ip saddr @blocked_v4 drop
    ip6 saddr @blocked_v6 drop
  }}
  chain output {{ type filter hook output priority -10; policy accept;
    ip daddr @blocked_v4 drop
    ip6 daddr @blocked_v6 drop
  }}
}}
"
        ))
    }

    /// Block `ip` for `ttl` (at least one second). Blocking again refreshes the expiry.
    pub fn block(&self, ip: IpAddr, ttl: Duration) -> Result<(), FirewallError> {
        self.ensure_table()?;
        let set = set_for(ip);
        let secs = ttl.as_secs().max(1);
        // delete-then-add refreshes the timeout; the delete may fail when absent, so it is
        // a separate, tolerated step.
        let _ = self.run_script(&format!("delete element inet {TABLE} {set} {{ {ip} }}\n"));
        self.run_script(&format!(
            "add element inet {TABLE} {set} {{ {ip} timeout {secs}s }}\n"
        ))
    }

    /// Lift the block on `ip`.
    pub fn unblock(&self, ip: IpAddr) -> Result<(), FirewallError> {
        self.run_script(&format!(
            "delete element inet {TABLE} {} {{ {ip} }}\n",
            set_for(ip)
        ))
    }

    /// The addresses currently blocked (as nft prints them).
    pub fn blocked(&self) -> Result<Vec<String>, FirewallError> {
        let mut out = Vec::new();
        for set in ["blocked_v4", "blocked_v6"] {
            let o = self
                .command()
                .args(["list", "set", "inet", TABLE, set])
                .output()
                .map_err(|e| FirewallError(format!("cannot run nft: {e}")))?;
            if !o.status.success() {
                continue;
            }
            let text = String::from_utf8_lossy(&o.stdout);
            if let Some(elements) = text
                .split_once("elements = {")
                .map(|(_, r)| r.split('}').next().unwrap_or(""))
            {
                out.extend(
                    elements
                        .split(',')
                        .filter_map(|e| e.split_whitespace().next())
                        .map(str::to_owned),
                );
            }
        }
        Ok(out)
    }

    /// Remove the whole table.
    pub fn remove_table(&self) -> Result<(), FirewallError> {
        self.run_script(&format!("delete table inet {TABLE}\n"))
    }
}
