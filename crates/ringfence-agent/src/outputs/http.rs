//! The HTTPS outputs: a webhook (each finding POSTed as JSON with an
//! `X-Ringfence-Signature: sha256=HEX` HMAC-SHA256 of the body under a shared secret) and
//! Splunk's HTTP Event Collector (`Authorization: Splunk TOKEN`, findings batched as HEC
//! events). TLS trusts only the configured CA (a file or pins, as the console link does);
//! the secret and the token are read from files that only their owner may read.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sha2::Sha256;

use super::config::RouteConfig;
use super::queue::{SendError, Sink};

/// The signature header of the webhook.
pub const SIGNATURE_HEADER: &str = "x-ringfence-signature";
/// Most bytes of a receiver's answer read (the rest is not needed).
const ANSWER_BYTES: usize = 64 * 1024;
/// Most bytes of a secret or token file.
const SECRET_BYTES: u64 = 4096;
/// Findings in one HEC request.
const HEC_BATCH: usize = 100;

/// `url` is `https://` with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("{url:?}: must be https://"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?}: no host"));
    }
    Ok(())
}

/// Read a secret from `path`: a regular file no one but its owner can read or write, not
/// empty, at most 4 KiB; surrounding whitespace trimmed.
pub fn read_secret(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: mode {mode:o} lets others read it; chmod 600",
            path.display()
        ));
    }
    let mut text = String::new();
    file.take(SECRET_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > SECRET_BYTES {
        return Err(format!(
            "{}: longer than {SECRET_BYTES} bytes",
            path.display()
        ));
    }
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!("{}: empty", path.display()));
    }
    if secret.chars().any(char::is_control) {
        return Err(format!("{}: holds control characters", path.display()));
    }
    Ok(secret.to_owned())
}

/// `sha256=HEX` of HMAC-SHA256(`secret`, `body`).
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The trust of a TLS receiver, from `ca_file` or `ca_sha256`.
pub fn trust_of(c: &RouteConfig) -> Result<ringfence_wire::Trust, String> {
    if let Some(file) = &c.ca_file {
        return ringfence_wire::Trust::from_ca_file(file).map_err(|e| e.to_string());
    }
    let pins = c
        .ca_sha256
        .iter()
        .map(|p| ringfence_wire::CaPin::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca_sha256: {e}"))?;
    if pins.is_empty() {
        return Err("ca_file or ca_sha256 is needed".into());
    }
    Ok(ringfence_wire::Trust::Pinned(pins))
}

/// One HTTPS receiver: a runtime for the thread, a pooled client, the URL.
struct Https {
    rt: tokio::runtime::Runtime,
    client: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: String,
    timeout: Duration,
}

impl Https {
    fn new(c: &RouteConfig) -> Result<Https, String> {
        let url = c.url.clone().ok_or("url is needed")?;
        check_url(&url)?;
        let tls =
            ringfence_wire::tls::client_config(&trust_of(c)?, None).map_err(|e| e.to_string())?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(Duration::from_secs(c.timeout_secs)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(connector);
        let client = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(https);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("async runtime: {e}"))?;
        Ok(Https {
            rt,
            client,
            url,
            timeout: Duration::from_secs(c.timeout_secs),
        })
    }

    /// POST `body` with `headers`; a 2xx is delivered, 408, 429 and 5xx are retried, any
    /// other answer is a refusal.
    fn post(&self, body: Bytes, headers: &[(&str, &str)]) -> Result<(), SendError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(&self.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "ringfence-agent");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| SendError::Refused(format!("{}: {e}", self.url)))?;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| SendError::Retry(format!("{}: {}", self.url, chain(&e))))?;
            let status = resp.status();
            let answer = Limited::new(resp.into_body(), ANSWER_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, SendError>((status, answer))
        };
        let (status, answer) = self
            .rt
            .block_on(async { tokio::time::timeout(self.timeout, call).await })
            .map_err(|_| {
                SendError::Retry(format!("{}: no answer in {:?}", self.url, self.timeout))
            })??;
        if status.is_success() {
            return Ok(());
        }
        let text: String = String::from_utf8_lossy(&answer)
            .chars()
            .take(200)
            .filter(|c| !c.is_control())
            .collect();
        let why = format!("{} answered {status}: {text}", self.url);
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(SendError::Retry(why))
        } else {
            Err(SendError::Refused(why))
        }
    }
}

/// An error with its causes (hyper's outer errors say little: "client error (Connect)").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// The webhook: one finding per request.
pub struct Webhook {
    https: Https,
    secret: String,
}

impl Webhook {
    pub fn new(c: &RouteConfig) -> Result<Webhook, String> {
        let file = c.secret_file.as_deref().ok_or("secret_file is needed")?;
        Ok(Webhook {
            https: Https::new(c)?,
            secret: read_secret(file).map_err(|e| format!("secret_file {e}"))?,
        })
    }
}

impl Sink for Webhook {
    fn send(&mut self, batch: &[Value]) -> Result<(), SendError> {
        for finding in batch {
            let body = Bytes::from(finding.to_string());
            let sig = signature(self.secret.as_bytes(), &body);
            self.https.post(body, &[(SIGNATURE_HEADER, &sig)])?;
        }
        Ok(())
    }
}

/// Splunk HEC: up to 100 findings per request, as concatenated HEC event objects.
pub struct SplunkHec {
    https: Https,
    authorization: String,
    index: Option<String>,
    sourcetype: String,
}

impl SplunkHec {
    pub fn new(c: &RouteConfig) -> Result<SplunkHec, String> {
        let file = c.token_file.as_deref().ok_or("token_file is needed")?;
        let token = read_secret(file).map_err(|e| format!("token_file {e}"))?;
        Ok(SplunkHec {
            https: Https::new(c)?,
            authorization: format!("Splunk {token}"),
            index: c.index.clone(),
            sourcetype: c.sourcetype.clone(),
        })
    }

    /// The HEC body for `batch`.
    pub fn body(&self, batch: &[Value]) -> String {
        let mut body = String::new();
        for f in batch {
            let mut e = json!({
                "source": "ringfence",
                "sourcetype": self.sourcetype,
                "event": f,
            });
            if let Some(t) = f
                .get("@timestamp")
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            {
                e["time"] = json!(t.timestamp_millis() as f64 / 1000.0);
            }
            if let Some(h) = f.pointer("/host/name") {
                e["host"] = h.clone();
            }
            if let Some(i) = &self.index {
                e["index"] = json!(i);
            }
            body.push_str(&e.to_string());
        }
        body
    }
}

impl Sink for SplunkHec {
    fn send(&mut self, batch: &[Value]) -> Result<(), SendError> {
        let body = Bytes::from(self.body(batch));
        let auth = self.authorization.clone();
        self.https
            .post(body, &[(header::AUTHORIZATION.as_str(), &auth)])
    }

    fn max_batch(&self) -> usize {
        HEC_BATCH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn secrets_others_can_read_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let Ok(dir) = dir else { panic!("tempdir") };
        let path = dir.path().join("secret");
        assert!(std::fs::write(&path, "s3cret\n").is_ok());
        assert!(std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).is_ok());
        let e = read_secret(&path).err().unwrap_or_default();
        assert!(e.contains("chmod 600"), "{e}");
        assert!(std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).is_ok());
        assert_eq!(read_secret(&path).as_deref(), Ok("s3cret"));
        assert!(std::fs::write(&path, "\n").is_ok());
        assert!(read_secret(&path).is_err());
    }

    #[test]
    fn urls_must_be_https_with_a_host() {
        assert!(check_url("https://hooks.example:8443/x").is_ok());
        assert!(check_url("http://hooks.example/x").is_err());
        assert!(check_url("https:///x").is_err());
        assert!(check_url("not a url").is_err());
    }
}
