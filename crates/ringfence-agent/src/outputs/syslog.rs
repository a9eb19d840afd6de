//! Syslog: each finding as an RFC 5424 message, framed by octet counting (RFC 6587 §3.4.1:
//! `LEN SP MSG`) over TCP, or over TLS (RFC 5425) trusting only the configured CA. The
//! message is the ECS finding as JSON (or its text line), with the rule and severity also in
//! structured data; every header field is cut to RFC 5424's printable-ASCII limits.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use serde_json::Value;

use super::config::RouteConfig;
use super::queue::{SendError, Sink};
use super::text;

/// A private enterprise number for the structured data (32473: reserved for documentation,
/// RFC 5612).
const SD_ID: &str = "ringfence@32473";
/// Findings written per batch.
const BATCH: usize = 200;
/// Most bytes of one message's body.
const MAX_MSG_BYTES: usize = 64 * 1024;

/// `host:port` split (a bracketed IPv6 host too), the port not 0.
pub fn split_address(a: &str) -> Option<(String, u16)> {
    let (host, port) = a.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    Some((host.to_owned(), port))
}

/// RFC 5424 severity for a rule level.
fn severity(finding: &Value) -> u8 {
    match text::severity(finding).as_str() {
        "CRITICAL" => 2,
        "HIGH" => 3,
        "MEDIUM" => 4,
        "LOW" => 5,
        _ => 6,
    }
}

/// A header field: printable US-ASCII, at most `max` characters, `-` when empty.
fn header_field(s: Option<&str>, max: usize) -> String {
    let v: String = s
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() { "-".into() } else { v }
}

/// An SD-PARAM value: `"`, `\` and `]` escaped (RFC 5424 §6.3.3), bounded.
fn sd_value(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().filter(|c| !c.is_control()).take(256) {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The RFC 5424 message for `finding` (no framing).
pub fn message(finding: &Value, facility: u8, text_body: bool) -> String {
    let pri = u16::from(facility.min(23)) * 8 + u16::from(severity(finding));
    let time = header_field(finding.get("@timestamp").and_then(Value::as_str), 64);
    let host = header_field(finding.pointer("/host/name").and_then(Value::as_str), 255);
    let rule_id = finding
        .pointer("/rule/id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let level = text::severity(finding).to_ascii_lowercase();
    let mut body = if text_body {
        text::line(finding)
    } else {
        finding.to_string()
    };
    if body.len() > MAX_MSG_BYTES {
        let mut cut = MAX_MSG_BYTES;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    format!(
        "<{pri}>1 {time} {host} ringfence {} finding [{SD_ID} rule_id=\"{}\" severity=\"{}\"] \u{feff}{body}",
        std::process::id(),
        sd_value(rule_id),
        sd_value(&level),
    )
}

/// `msg` framed by octet counting.
pub fn frame(msg: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg.as_bytes());
}

enum Conn {
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(b).and_then(|()| s.flush()),
            Conn::Tls(s) => s.write_all(b).and_then(|()| s.flush()),
        }
    }
}

/// A syslog receiver over TCP or TLS. Reconnects after any failure.
pub struct Syslog {
    host: String,
    port: u16,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    facility: u8,
    text_body: bool,
    timeout: Duration,
    conn: Option<Conn>,
    buf: Vec<u8>,
}

impl Syslog {
    pub fn new(c: &RouteConfig) -> Result<Syslog, String> {
        let address = c.address.as_deref().ok_or("address is needed")?;
        let (host, port) =
            split_address(address).ok_or_else(|| format!("address {address:?}: not host:port"))?;
        let tls = if c.tls {
            let trust = super::http::trust_of(c)?;
            let config =
                ringfence_wire::tls::client_config(&trust, None).map_err(|e| e.to_string())?;
            let name = c.server_name.clone().unwrap_or_else(|| host.clone());
            let name = ServerName::try_from(name.clone())
                .map_err(|e| format!("server_name {name:?}: {e}"))?;
            Some((Arc::new(config), name))
        } else {
            None
        };
        Ok(Syslog {
            host,
            port,
            tls,
            facility: c.facility,
            text_body: c.message == "text",
            timeout: Duration::from_secs(c.timeout_secs),
            conn: None,
            buf: Vec::new(),
        })
    }

    fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "tls" } else { "tcp" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    fn connect(&self) -> Result<Conn, String> {
        let addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("{}: {e}", self.url()))?;
        let mut last = format!("{}: no address", self.url());
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    let _ = s.set_write_timeout(Some(self.timeout));
                    let _ = s.set_read_timeout(Some(self.timeout));
                    let _ = s.set_nodelay(true);
                    return match &self.tls {
                        None => Ok(Conn::Tcp(s)),
                        Some((config, name)) => {
                            let conn = ClientConnection::new(config.clone(), name.clone())
                                .map_err(|e| format!("{}: {e}", self.url()))?;
                            let mut stream = StreamOwned::new(conn, s);
                            // Finish the handshake now, so a bad certificate is this
                            // attempt's error and not a later write's.
                            while stream.conn.is_handshaking() {
                                stream
                                    .conn
                                    .complete_io(&mut stream.sock)
                                    .map_err(|e| format!("{}: TLS: {e}", self.url()))?;
                            }
                            Ok(Conn::Tls(Box::new(stream)))
                        }
                    };
                }
                Err(e) => last = format!("{}: {e}", self.url()),
            }
        }
        Err(last)
    }
}

impl Sink for Syslog {
    fn send(&mut self, batch: &[Value]) -> Result<(), SendError> {
        self.buf.clear();
        for f in batch {
            frame(&message(f, self.facility, self.text_body), &mut self.buf);
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect().map_err(SendError::Retry)?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(SendError::Retry(format!("{}: not connected", self.url())));
        };
        if let Err(e) = conn.write_all(&self.buf) {
            self.conn = None;
            return Err(SendError::Retry(format!("{}: {e}", self.url())));
        }
        Ok(())
    }

    fn max_batch(&self) -> usize {
        BATCH
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_message_is_rfc5424_with_escaped_structured_data() {
        let f = json!({
            "@timestamp": "2026-12-06T07:00:00.000Z",
            "host": {"name": "web 3\n"},
            "rule": {"id": "r\"]1"},
            "ringfence": {"finding": {"level": "high"}},
        });
        let m = message(&f, 16, false);
        let pid = std::process::id();
        assert!(
            m.starts_with(&format!(
                "<131>1 2026-12-06T07:00:00.000Z web3 ringfence {pid} finding \
                 [ringfence@32473 rule_id=\"r\\\"\\]1\" severity=\"high\"] \u{feff}{{"
            )),
            "{m}"
        );
        let mut out = Vec::new();
        frame("abc", &mut out);
        assert_eq!(out, b"3 abc");
    }

    #[test]
    fn addresses() {
        assert_eq!(
            split_address("127.0.0.1:6514"),
            Some(("127.0.0.1".into(), 6514))
        );
        assert_eq!(split_address("[::1]:514"), Some(("::1".into(), 514)));
        assert_eq!(split_address("host"), None);
        assert_eq!(split_address("host:0"), None);
        assert_eq!(split_address(":514"), None);
    }
}
