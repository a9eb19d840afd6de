//! A small async client for the console, used by the real agent and the fleet simulator.
//!
//! Built on `hyper` 1 and `hyper-util`'s pooled client rather than `reqwest`: the console
//! already compiles hyper for axum, so the client adds a few thousand lines instead of reqwest's
//! TLS stack, cookie, redirect, proxy and decompression layers, which an agent talking to one
//! known console needs none of. Plain `http://` only for now (loopback, or behind a TLS
//! terminating proxy); HTTPS would plug a rustls connector in here without changing callers.
//! Every response body is read through a size limit and every call has a timeout.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::limits;
use crate::{
    CheckIn, CheckInResponse, Credential, EnrollRequest, EnrollResponse, FindingsAccepted,
    FindingsBatch, paths,
};

/// Why a call to the console failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("console URL {0:?} is not an http:// URL")]
    BadUrl(String),
    #[error("console answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("talking to the console: {0}")]
    Transport(String),
    #[error("console response is not what the protocol says: {0}")]
    Decode(String),
    #[error("console did not answer within {0:?}")]
    Timeout(Duration),
}

impl ClientError {
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
    http: HyperClient<HttpConnector, Full<Bytes>>,
    base: String,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

impl Client {
    /// A client for `base_url` (`http://host:port`, optionally with a path prefix).
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(ClientError::BadUrl(base_url.to_owned()));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(512)
            .build(connector);
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
        let uri = if url.starts_with("http://") {
            url.to_owned()
        } else if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            return Err(ClientError::BadUrl(url.to_owned()));
        };
        let req = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let (status, body) = self.send(req, max_bytes).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(status_error(status, &body))
        }
    }

    /// `POST` JSON to an arbitrary path with an optional bearer token; used by the operator CLI.
    pub async fn post_json<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &B,
    ) -> Result<R, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?;
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
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, content_type)
            .header(header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = builder
            .body(Full::new(body))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let (status, body) = self.send(req, limits::RESPONSE_BYTES * 16).await?;
        if !status.is_success() {
            return Err(status_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
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
                .map_err(|e| ClientError::Transport(format!("{e:#}")))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), max_bytes)
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }
}

fn status_error(status: StatusCode, body: &[u8]) -> ClientError {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    ClientError::Status {
        status: status.as_u16(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls() {
        assert!(Client::new("http://127.0.0.1:8080/").is_ok());
        assert!(Client::new("https://x").is_err());
        assert!(Client::new("http://").is_err());
        assert!(Client::new("ftp://x").is_err());
    }
}
