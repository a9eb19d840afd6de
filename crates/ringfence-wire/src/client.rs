//! A small async client for the console, used by the real agent and the fleet simulator.
//!
//! Built on `hyper` 1 and `hyper-util`'s pooled client rather than `reqwest`: the console
//! already compiles hyper for axum, so the client adds a few thousand lines instead of reqwest's
//! TLS stack, cookie, redirect, proxy and decompression layers, which an agent talking to one
//! known console needs none of. TLS is rustls through `hyper-rustls`, configured by
//! [`crate::tls`]: a client trusts a pinned console CA (or a CA file) and nothing else, and
//! plain `http://` is accepted only for a loopback address and only when asked for
//! ([`Trust::PlainLoopback`], for tests and drills). Every response body is read through a size
//! limit and every call has a timeout; every error names the console URL.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::tls::{Trust, client_config};
use crate::types::limits;
use crate::{
    CheckIn, CheckInResponse, Credential, EnrollRequest, EnrollResponse, FindingsAccepted,
    FindingsBatch, paths,
};

/// Why a call to the console failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("console URL {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("console {url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("cannot reach the console at {url}: {cause}")]
    Transport { url: String, cause: String },
    /// The connection reached something that failed the TLS checks: a certificate from
    /// another CA, out of date or for another name, a handshake that does not verify, or a
    /// record that does not decrypt. On a pinned link that is an interception (or a proxy
    /// that breaks TLS), never a network hiccup, so the agent reports it at once.
    #[error("the connection to the console at {url} {TLS_CHECKS_FAILED}: {cause}")]
    TlsRefused { url: String, cause: String },
    #[error("console {url}: the response is not what the protocol says: {cause}")]
    Decode { url: String, cause: String },
    #[error("console {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Words every [`ClientError::TlsRefused`] message carries.
pub const TLS_CHECKS_FAILED: &str = "failed its TLS checks";

impl ClientError {
    /// Whether the TLS checks refused what answered (see [`ClientError::TlsRefused`]).
    pub fn is_tls_refusal(&self) -> bool {
        matches!(self, ClientError::TlsRefused { .. })
    }

    /// The HTTP status, when the console answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A pooled HTTP/1.1 client bound to one console base URL. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

impl Client {
    /// A client for `base_url` (`https://host:port`, optionally with a path prefix) that
    /// trusts what `trust` says. `http://` only with [`Trust::PlainLoopback`] and a loopback
    /// host; `https://` never with it.
    pub fn new(base_url: &str, trust: &Trust) -> Result<Client, ClientError> {
        Client::with_identity(base_url, trust, None)
    }

    /// [`Client::new`], presenting an agent's client certificate (mutual TLS).
    pub fn with_identity(
        base_url: &str,
        trust: &Trust,
        identity: Option<&crate::tls::AgentIdentity>,
    ) -> Result<Client, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        check_url(&base, trust).map_err(|why| ClientError::BadUrl {
            url: base_url.to_owned(),
            why,
        })?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_config(trust, identity)?);
        let https = if matches!(trust, Trust::PlainLoopback) {
            builder.https_or_http()
        } else {
            builder.https_only()
        }
        .enable_http1()
        .wrap_connector(connector);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(512)
            .build(https);
        Ok(Client {
            http,
            base,
            timeout: Duration::from_secs(15),
        })
    }

    /// Change the per-call timeout (default 15 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Trade an enrollment token for a credential.
    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, ClientError> {
        self.post_json(paths::ENROLL, None, req).await
    }

    /// Report health; learn the content version this agent may run now.
    pub async fn check_in(
        &self,
        credential: &Credential,
        checkin: &CheckIn,
    ) -> Result<CheckInResponse, ClientError> {
        self.post_json(paths::CHECKIN, Some(credential.as_str()), checkin)
            .await
    }

    /// Renew the client certificate (over a connection that presents the current one).
    pub async fn renew(
        &self,
        credential: &Credential,
        req: &crate::RenewRequest,
    ) -> Result<crate::RenewResponse, ClientError> {
        self.post_json(paths::RENEW, Some(credential.as_str()), req)
            .await
    }

    /// Upload a batch of findings.
    pub async fn upload_findings(
        &self,
        credential: &Credential,
        batch: &FindingsBatch,
    ) -> Result<FindingsAccepted, ClientError> {
        self.post_json(paths::FINDINGS, Some(credential.as_str()), batch)
            .await
    }

    /// Fetch a content file named by a check-in response (relative path or absolute http URL),
    /// refusing anything larger than `max_bytes`.
    pub async fn fetch_content(&self, url: &str, max_bytes: usize) -> Result<Bytes, ClientError> {
        self.fetch_file(url, None, max_bytes).await
    }

    /// [`Self::fetch_content`] with the agent's credential (agent release files are served to
    /// enrolled agents only).
    pub async fn fetch_file(
        &self,
        url: &str,
        bearer: Option<&str>,
        max_bytes: usize,
    ) -> Result<Bytes, ClientError> {
        // Content comes from the console itself (a relative path) or, with the same trust, from
        // a mirror over https; the bundle's own signature is what the agent trusts either way.
        let uri = if url.starts_with("https://") && !self.base.starts_with("http://") {
            url.to_owned()
        } else if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            return Err(ClientError::BadUrl {
                url: url.to_owned(),
                why: "a content URL is a path on the console or an https:// URL".into(),
            });
        };
        let mut req = Request::builder().method(Method::GET).uri(&uri);
        if let Some(token) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| self.transport(e))?;
        let (status, body) = self.send(req, max_bytes).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(status_error(&uri, status, &body))
        }
    }

    /// `POST` JSON to an arbitrary path with an optional bearer token; used by the operator CLI.
    pub async fn post_json<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &B,
    ) -> Result<R, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Decode {
            url: format!("{}{path}", self.base),
            cause: e.to_string(),
        })?;
        self.request(
            Method::POST,
            path,
            bearer,
            Bytes::from(bytes),
            "application/json",
        )
        .await
    }

    /// `GET` JSON from an arbitrary path with an optional bearer token.
    pub async fn get_json<R: DeserializeOwned>(
        &self,
        path: &str,
        bearer: Option<&str>,
    ) -> Result<R, ClientError> {
        self.request(Method::GET, path, bearer, Bytes::new(), "application/json")
            .await
    }

    /// `PUT` raw bytes (a bundle upload) and decode a JSON answer.
    pub async fn put_bytes<R: DeserializeOwned>(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: Vec<u8>,
    ) -> Result<R, ClientError> {
        self.request(
            Method::PUT,
            path,
            bearer,
            Bytes::from(body),
            "application/octet-stream",
        )
        .await
    }

    /// Send raw bytes with any method and decode a JSON answer.
    pub async fn request<R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Bytes,
        content_type: &str,
    ) -> Result<R, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut builder = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = builder
            .body(Full::new(body))
            .map_err(|e| self.transport(e))?;
        let (status, body) = self.send(req, limits::RESPONSE_BYTES * 16).await?;
        if !status.is_success() {
            return Err(status_error(&url, status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            url,
            cause: e.to_string(),
        })
    }

    async fn send(
        &self,
        req: Request<Full<Bytes>>,
        max_bytes: usize,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let call = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), max_bytes)
                .collect()
                .await
                .map_err(|e| self.transport_error(&*e))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| ClientError::Timeout {
                url: self.base.clone(),
                timeout: self.timeout,
            })?
    }

    /// A failed exchange: [`ClientError::TlsRefused`] when a TLS check failed anywhere in
    /// the error's sources, else [`ClientError::Transport`].
    fn transport_error(&self, e: &(dyn std::error::Error + 'static)) -> ClientError {
        let cause = ErrorChain(e).to_string();
        if tls_refused(e) {
            ClientError::TlsRefused {
                url: self.base.clone(),
                cause,
            }
        } else {
            self.transport(cause)
        }
    }

    fn transport(&self, cause: impl std::fmt::Display) -> ClientError {
        ClientError::Transport {
            url: self.base.clone(),
            cause: cause.to_string(),
        }
    }
}

/// Whether a rustls error is among `e`'s sources. An `io::Error` hides the error it wraps
/// from `source()`, so each one is opened with `get_ref`.
fn tls_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    let mut depth = 0;
    while let Some(err) = next {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && tls_refused(inner)
        {
            return true;
        }
        depth += 1;
        if depth > 16 {
            return false;
        }
        next = err.source();
    }
    false
}

/// An error with its sources, `a: b: c`, so a TLS refusal deep in hyper's error reaches the
/// operator ("client error (Connect)" alone says nothing).
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        let mut last = self.0.to_string();
        while let Some(s) = source {
            let text = s.to_string();
            if !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            source = s.source();
        }
        Ok(())
    }
}

/// Why `base` may not be used with `trust`.
fn check_url(base: &str, trust: &Trust) -> Result<(), String> {
    let (scheme, rest) = base
        .split_once("://")
        .ok_or_else(|| "not a URL (https://host:port)".to_owned())?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err("no host".into());
    }
    match (scheme, trust) {
        ("https", Trust::PlainLoopback) => {
            Err("https:// with plain-HTTP trust; give a CA pin instead".into())
        }
        ("https", _) => Ok(()),
        ("http", Trust::PlainLoopback) if is_loopback_authority(authority) => Ok(()),
        ("http", Trust::PlainLoopback) => {
            Err("plain http:// is allowed only to a loopback address".into())
        }
        ("http", _) => Err(
            "plain http:// is refused: the console serves https:// (plain HTTP only on \
             loopback, with the explicit plain-HTTP option for tests)"
                .into(),
        ),
        _ => Err(format!("scheme {scheme:?} is not https")),
    }
}

/// `127.x.y.z[:port]`, `[::1][:port]` or `localhost[:port]`.
fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn status_error(url: &str, status: StatusCode, body: &[u8]) -> ClientError {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    ClientError::Status {
        url: url.to_owned(),
        status: status.as_u16(),
        message: crate::types::printable(&message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback_and_only_when_asked() {
        let pin = Trust::Pinned(vec![crate::tls::CaPin::of(b"ca")]);
        let plain = Trust::PlainLoopback;
        assert!(Client::new("http://127.0.0.1:8080/", &plain).is_ok());
        assert!(Client::new("http://[::1]:8080", &plain).is_ok());
        assert!(Client::new("http://localhost:8080", &plain).is_ok());
        assert!(Client::new("http://10.0.0.1:8080", &plain).is_err());
        assert!(Client::new("http://127.0.0.1:8080", &pin).is_err());
        assert!(Client::new("https://console:8650", &plain).is_err());
        assert!(Client::new("https://console:8650", &pin).is_ok());
        assert!(Client::new("https://", &pin).is_err());
        assert!(Client::new("ftp://x", &pin).is_err());
        let e = Client::new("http://10.0.0.1:8650", &pin)
            .unwrap_err()
            .to_string();
        assert!(e.contains("10.0.0.1") && e.contains("refused"), "{e}");
    }
}
