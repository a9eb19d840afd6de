//! `[[outputs]]` in agent.toml: the routed outputs (webhook, syslog, Splunk HEC, OCSF file),
//! each a table with a `type`, and the checks that name the field at fault.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Most routed outputs one agent runs.
pub const MAX_OUTPUTS: usize = 16;
/// Most findings one output's queue holds.
pub const MAX_QUEUE: usize = 1_000_000;

/// Which receiver an `[[outputs]]` table routes findings to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// An HTTPS POST of each finding as JSON, signed with HMAC-SHA256.
    Webhook,
    /// RFC 5424 over TCP, or TLS with `tls = true` (RFC 6587 octet counting).
    Syslog,
    /// Splunk's HTTP Event Collector.
    SplunkHec,
    /// OCSF 1.3 Detection Findings as JSON lines, rotated by size.
    OcsfFile,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Webhook => "webhook",
            RouteKind::Syslog => "syslog",
            RouteKind::SplunkHec => "splunk_hec",
            RouteKind::OcsfFile => "ocsf_file",
        }
    }
}

/// One `[[outputs]]` table. One flat table for every kind (serde cannot refuse unknown keys
/// through flattened parts); [`RouteConfig::problems`] says which keys a kind needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    #[serde(rename = "type")]
    pub kind: RouteKind,
    /// webhook, splunk_hec: `https://…`.
    #[serde(default)]
    pub url: Option<String>,
    /// webhook: file (mode 0600 or stricter) holding the HMAC secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// splunk_hec: file (mode 0600 or stricter) holding the HEC token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// splunk_hec: the index (default: the token's).
    #[serde(default)]
    pub index: Option<String>,
    /// splunk_hec: the sourcetype.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// syslog: `host:port`.
    #[serde(default)]
    pub address: Option<String>,
    /// syslog: TLS instead of plain TCP.
    #[serde(default)]
    pub tls: bool,
    /// syslog: accept plain TCP to a receiver that is not on this host. Off by default: such a
    /// link carries findings in clear text to a receiver nobody authenticated.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// syslog over TLS: the name checked against the receiver's certificate (default: the
    /// host of `address`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// syslog: facility number, 0…23 (default 16, local0).
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// syslog: `json` (the ECS finding) or `text` (the readable line) as the message.
    #[serde(default = "default_message")]
    pub message: String,
    /// ocsf_file: the file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// ocsf_file: rotate at this size, keeping `keep` old files.
    #[serde(default = "default_rotate")]
    pub rotate_bytes: u64,
    #[serde(default = "default_keep")]
    pub keep: u32,
    /// TLS receivers: a PEM file with the CA certificate(s) the receiver's chain leads to.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Or SHA-256 fingerprints of a CA certificate in the receiver's chain (hex).
    #[serde(default)]
    pub ca_sha256: Vec<String>,
    /// Findings waiting to be sent; one more is dropped (and counted).
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// First wait before a retry, milliseconds; it doubles up to `retry_max_ms`.
    #[serde(default = "default_retry_min")]
    pub retry_min_ms: u64,
    #[serde(default = "default_retry_max")]
    pub retry_max_ms: u64,
    /// A batch still failing after this long is dropped (and counted), seconds.
    #[serde(default = "default_give_up")]
    pub give_up_secs: u64,
    /// Per attempt (connect, send, answer), seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_sourcetype() -> String {
    "ringfence:finding".into()
}
fn default_facility() -> u8 {
    16
}
fn default_message() -> String {
    "json".into()
}
fn default_rotate() -> u64 {
    100 * 1024 * 1024
}
fn default_keep() -> u32 {
    5
}
fn default_queue() -> usize {
    10_000
}
fn default_retry_min() -> u64 {
    500
}
fn default_retry_max() -> u64 {
    30_000
}
fn default_give_up() -> u64 {
    300
}
fn default_timeout() -> u64 {
    10
}

impl RouteConfig {
    /// A table of `kind` with every default (tests and code fill in the rest).
    pub fn new(kind: RouteKind) -> RouteConfig {
        RouteConfig {
            kind,
            url: None,
            secret_file: None,
            token_file: None,
            index: None,
            sourcetype: default_sourcetype(),
            address: None,
            tls: false,
            allow_plaintext: false,
            server_name: None,
            facility: default_facility(),
            message: default_message(),
            path: None,
            rotate_bytes: default_rotate(),
            keep: default_keep(),
            ca_file: None,
            ca_sha256: Vec::new(),
            queue: default_queue(),
            retry_min_ms: default_retry_min(),
            retry_max_ms: default_retry_max(),
            give_up_secs: default_give_up(),
            timeout_secs: default_timeout(),
        }
    }

    /// A name for logs and health findings: `webhook https://…`.
    pub fn label(&self) -> String {
        let target = match self.kind {
            RouteKind::Webhook | RouteKind::SplunkHec => self.url.clone().unwrap_or_default(),
            RouteKind::Syslog => format!(
                "{}{}",
                if self.tls { "tls://" } else { "tcp://" },
                self.address.as_deref().unwrap_or_default()
            ),
            RouteKind::OcsfFile => self
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        };
        format!("{} {target}", self.kind.as_str())
    }

    /// Problems with its values, as (field, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(1..=MAX_QUEUE).contains(&self.queue) {
            out.push((
                "queue",
                format!("must be 1…{MAX_QUEUE}, got {}", self.queue),
            ));
        }
        if self.retry_min_ms == 0 || self.retry_min_ms > self.retry_max_ms {
            out.push((
                "retry_min_ms",
                format!(
                    "must be > 0 and <= retry_max_ms ({}), got {}",
                    self.retry_max_ms, self.retry_min_ms
                ),
            ));
        }
        if self.retry_max_ms > 3_600_000 {
            out.push((
                "retry_max_ms",
                format!("must be <= 3600000 (an hour), got {}", self.retry_max_ms),
            ));
        }
        if !(1..=86_400).contains(&self.give_up_secs) {
            out.push((
                "give_up_secs",
                format!("must be 1…86400, got {}", self.give_up_secs),
            ));
        }
        if !(1..=300).contains(&self.timeout_secs) {
            out.push((
                "timeout_secs",
                format!("must be 1…300, got {}", self.timeout_secs),
            ));
        }
        let kind = self.kind.as_str();
        let need = |out: &mut Vec<(&'static str, String)>, field: &'static str, set: bool| {
            if !set {
                out.push((field, format!("type = \"{kind}\" needs {field}")));
            }
        };
        let tls = match self.kind {
            RouteKind::Webhook | RouteKind::SplunkHec => {
                match &self.url {
                    Some(url) => {
                        if let Err(e) = super::http::check_url(url) {
                            out.push(("url", e));
                        }
                    }
                    None => need(&mut out, "url", false),
                }
                if self.kind == RouteKind::Webhook {
                    need(&mut out, "secret_file", self.secret_file.is_some());
                } else {
                    need(&mut out, "token_file", self.token_file.is_some());
                    if self.sourcetype.is_empty() || self.sourcetype.len() > 256 {
                        out.push(("sourcetype", "must be 1…256 bytes".into()));
                    }
                }
                true
            }
            RouteKind::Syslog => {
                match self
                    .address
                    .as_deref()
                    .map(|a| (a, super::syslog::split_address(a)))
                {
                    Some((a, None)) => {
                        out.push(("address", format!("expected host:port, got {a:?}")));
                    }
                    Some((a, Some((host, _)))) => {
                        if !self.tls && !self.allow_plaintext && !is_loopback_host(&host) {
                            out.push((
                                "tls",
                                format!(
                                    "plain TCP to {a} would carry findings in clear text to a \
                                     receiver nobody authenticated: set tls = true with ca_file \
                                     or ca_sha256, or allow_plaintext = true to accept that"
                                ),
                            ));
                        }
                    }
                    None => need(&mut out, "address", false),
                }
                if self.facility > 23 {
                    out.push(("facility", format!("must be 0…23, got {}", self.facility)));
                }
                if self.message != "json" && self.message != "text" {
                    out.push((
                        "message",
                        format!("expected \"json\" or \"text\", got {:?}", self.message),
                    ));
                }
                self.tls
            }
            RouteKind::OcsfFile => {
                match &self.path {
                    Some(p) if p.as_os_str().is_empty() => {
                        out.push(("path", "must not be empty".into()));
                    }
                    Some(_) => {}
                    None => need(&mut out, "path", false),
                }
                if self.rotate_bytes < 4096 {
                    out.push((
                        "rotate_bytes",
                        format!("must be >= 4096, got {}", self.rotate_bytes),
                    ));
                }
                if self.keep > 1000 {
                    out.push(("keep", format!("must be <= 1000, got {}", self.keep)));
                }
                false
            }
        };
        if tls {
            if self.ca_file.is_none() && self.ca_sha256.is_empty() {
                out.push((
                    "ca_file",
                    "a TLS receiver needs ca_file (PEM) or ca_sha256 (CA fingerprints)".into(),
                ));
            }
            for pin in &self.ca_sha256 {
                if let Err(e) = ringfence_wire::CaPin::parse(pin) {
                    out.push(("ca_sha256", e.to_string()));
                }
            }
        }
        out
    }
}

/// Whether `host` names this machine: `localhost` or a loopback address. Only such a receiver
/// may be reached over plain TCP without `allow_plaintext`.
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The 1-based line of `key` inside the `index`-th `[[outputs]]` table of `text` (the table's
/// header line when the key is not set there; 0 when there is no such table).
pub fn line_of(text: &str, index: usize, key: &str) -> usize {
    line_of_table(text, "outputs", index, key)
}

/// [`line_of`] for the `index`-th `[[table]]`.
pub fn line_of_table(text: &str, table: &str, index: usize, key: &str) -> usize {
    let header_text = format!("[[{table}]]");
    let mut seen = 0usize;
    let mut header = 0usize;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            if header > 0 {
                return header;
            }
            if t.replace(' ', "") == header_text {
                seen += 1;
                if seen == index + 1 {
                    header = i + 1;
                }
            }
        } else if header > 0 && t.split('=').next().map(str::trim) == Some(key) {
            return i + 1;
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn outputs_tables_parse_and_bad_values_name_their_field_and_line() {
        let good = "[[outputs]]\ntype = \"syslog\"\naddress = \"127.0.0.1:6514\"\ntls = true\n\
                    ca_file = \"/etc/ringfence/syslog-ca.pem\"\n\n[[outputs]]\ntype = \"ocsf_file\"\n\
                    path = \"/var/log/ringfence/ocsf.jsonl\"\n";
        let c = match Config::parse(good, Path::new("agent.toml")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.outputs.len(), 2);
        assert_eq!(c.outputs[0].label(), "syslog tls://127.0.0.1:6514");

        let bad = "[agent]\nqueue_capacity = 10\n\n[[outputs]]\ntype = \"webhook\"\n\
                   url = \"http://hooks.example/x\"\nqueue = 0\n\n[[outputs]]\ntype = \"syslog\"\n\
                   address = \"nowhere\"\ntls = true\n";
        let errs = match Config::parse(bad, Path::new("agent.toml")) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.0,
        };
        let keys: Vec<(&str, usize)> = errs.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert!(keys.contains(&("outputs[0].url", 6)), "{keys:?}");
        assert!(keys.contains(&("outputs[0].queue", 7)), "{keys:?}");
        assert!(keys.contains(&("outputs[0].secret_file", 4)), "{keys:?}");
        assert!(keys.contains(&("outputs[0].ca_file", 4)), "{keys:?}");
        assert!(keys.contains(&("outputs[1].address", 11)), "{keys:?}");

        let remote_plain = "[[outputs]]\ntype = \"syslog\"\naddress = \"logs.example:514\"\n";
        let errs = match Config::parse(remote_plain, Path::new("agent.toml")) {
            Ok(_) => panic!("plain TCP to a remote receiver accepted"),
            Err(e) => e.0,
        };
        assert!(
            errs.iter().any(|e| e.key == "outputs[0].tls"),
            "{:?}",
            errs.iter().map(|e| e.key.as_str()).collect::<Vec<_>>()
        );
        for ok in [
            "[[outputs]]\ntype = \"syslog\"\naddress = \"logs.example:514\"\nallow_plaintext = true\n",
            "[[outputs]]\ntype = \"syslog\"\naddress = \"[::1]:514\"\n",
            "[[outputs]]\ntype = \"syslog\"\naddress = \"localhost:514\"\n",
        ] {
            if let Err(e) = Config::parse(ok, Path::new("agent.toml")) {
                panic!("{ok}: {e}");
            }
        }

        let unknown = "[[outputs]]\ntype = \"webhook\"\nsecret = \"in the config\"\n";
        let errs = match Config::parse(unknown, Path::new("agent.toml")) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.0,
        };
        assert!(
            errs.iter()
                .any(|e| e.message.contains("unknown field `secret`")),
            "{errs:?}"
        );
    }
}
